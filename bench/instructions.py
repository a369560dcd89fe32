"""Instructions per subaccount: the exporter's work on one body against the floor's, counted.

    python -m bench.instructions [--subaccounts 100] [--numbers 100] [--stages]

Seconds of CPU move by half as much again from one hour to the next on a shared VM; the number
of instructions a piece of work runs does not. This counts them with valgrind's callgrind for
two programs, each run in a fresh interpreter against the simulator (which runs here, outside
valgrind):

- the floor: a `requests.Session` fetching a subaccount's body and `json.loads`-ing it;
- the exporter's work on one subaccount, in one thread: its API client's fetch,
  `parse_inventory`, `render_inventory` and `deflate_all`, as the scraper calls them.

Each program warms up on ten subaccounts (imports, connections, memos), then fetches N of them;
it is counted with N = 0 and with N = the subaccounts, and the difference over N is what one
subaccount costs. With `--stages`, each program is also counted up to each of its stages (the
floor: fetch, then `json.loads`; the exporter: fetch, parse, the per-group families, the
per-number families, `deflate_all`), and what each stage adds is printed. The hash seed is
fixed and what the warm-up left is frozen out of the cyclic GC, so that the counts repeat from
run to run. What the whole process adds (threads taking turns at the GIL, the answer, page
faults) is not in these counts: `python -m bench` measures that in seconds. Prints one JSON
object.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from exporter.simulator import Simulator

API_KEY = "bench-key"
SEED = 8
WARM_UP = 10
_COLLECTED = re.compile(r"Collected : (\d+)")
# glibc's thresholds for string instructions (rep movsb, rep stosb), set beyond any block size.
_REP_OPS = ("movsb", "stosb")
_NEVER = "0x7fffffffffffffff"
REPO = Path(__file__).resolve().parent.parent


# What each program does to one subaccount, stage by stage: a run up to stage k does stages 1 to
# k, so the counts of two runs differ by what stage k costs.
FLOOR_STAGES = ("fetch (Session.get)", "json.loads")
EXPORTER_STAGES = (
    "fetch (ApiClient)",
    "parse_inventory",
    "render per group",
    "render per number, deflated as written",
    "deflate_all",
)
STAGES = {"floor": FLOOR_STAGES, "exporter": EXPORTER_STAGES}


def run_child(mode: str, count: int, base_url: str, names: list[str], stages: int = 0) -> None:
    """The measured program: warm up, then `count` fetches (and the exporter's work on each),
    the first `stages` stages of it only if given."""
    # No automatic collection before the counted part: where one lands in the imports and the
    # warm-up differs from run to run, and a full one costs as much as dozens of fetches.
    gc.disable()
    one = program(mode, base_url, names, stages)
    for name in names[:WARM_UP]:
        one(name)
    # What the interpreter holds by now (modules, connections, memos) is left out of the cyclic
    # GC's collections from here on, as in a long-running process whose old objects rarely are.
    gc.collect()
    gc.freeze()
    gc.enable()
    for index in range(count):
        one(names[index % len(names)])


def program(mode: str, base_url: str, names: list[str], stages: int = 0) -> Callable[[str], None]:
    """What the program of `mode` ("floor" or "exporter") does to one subaccount of `names`,
    the first `stages` stages of it only if given; built before it is called, imports included."""
    stages = stages or len(STAGES[mode])
    return _floor(base_url, stages) if mode == "floor" else _exporter(base_url, names, stages)


def _floor(base_url: str, stages: int) -> Callable[[str], None]:
    import requests

    session = requests.Session()
    session.trust_env = False

    def one(name: str) -> None:
        response = session.get(
            f"{base_url}/api/v1/subaccounts/{name}/numbers",
            headers={"Authorization": f"Bearer {API_KEY}"},
            timeout=60,
        )
        body = response.content
        if stages > 1:
            json.loads(body)

    return one


def _exporter(base_url: str, names: list[str], stages: int) -> Callable[[str], None]:
    from exporter.config.values import Secret
    from exporter.metrics.encoding import deflate_all
    from exporter.polling.client import ApiClient, Transport
    from exporter.polling.exposition import render_inventory
    from exporter.polling.model import parse_inventory

    transport = Transport()
    clients = {name: ApiClient(base_url, Secret(API_KEY), transport=transport) for name in names}

    def one(name: str) -> None:
        body = clients[name].fetch_numbers(name, 60)
        if stages < 2:
            return
        inventory = parse_inventory(body, True, [API_KEY])
        if stages < 3:
            return
        rendered = render_inventory(inventory, name, per_number=stages > 3)
        if stages > 4:
            deflate_all(rendered.samples.values())

    return one


def instructions(
    valgrind: str, mode: str, count: int, base_url: str, names: list[str], stages: int = 0
) -> int:
    """Instructions callgrind counts for the whole child program."""
    argv = [
        valgrind,
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        "-m",
        "bench.instructions",
        "--child",
        mode,
        str(count),
        str(stages),
        base_url,
        *names,
    ]
    # pymalloc's arenas are opaque to valgrind; the system allocator is what it can follow.
    # A fixed hash seed: the same dict and set layouts, so the same instructions, every run.
    # No bytecode written: else the first run compiles every module and the second does not.
    # glibc copies and clears blocks of a few kB and more with `rep movsb` / `rep stosb`, which
    # valgrind counts as one instruction per byte (a 10 MB memset: 10.2 M instructions), although
    # the CPU moves 32 bytes and more a cycle. Pushing those thresholds out of reach makes glibc
    # use its vector loops, which it counts as the CPU runs them (the same memset: 0.46 M).
    env = {
        "GLIBC_TUNABLES": ":".join(f"glibc.cpu.x86_rep_{op}_threshold={_NEVER}" for op in _REP_OPS),
        "PYTHONMALLOC": "malloc",
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PATH": "/usr/bin:/bin",
    }
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    found = _COLLECTED.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"callgrind run failed: {done.stderr.strip()[-800:]}")
    return int(found.group(1))


def measure(subaccounts: int, numbers: int, by_stage: bool = False) -> dict[str, Any]:
    """Instructions per subaccount of the floor and of the exporter's work, and their ratio;
    with `by_stage`, also what each stage of each adds (twice as many runs per stage)."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")
    names = [f"bench-{i:04d}" for i in range(max(subaccounts, WARM_UP))]
    frozen = 1_700_000_000.0
    out: dict[str, Any] = {"subaccounts": subaccounts, "numbers": numbers}
    with Simulator(dict.fromkeys(names, numbers), API_KEY, seed=SEED, clock=lambda: frozen) as sim:

        def per_subaccount(mode: str, stages: int) -> float:
            base = instructions(valgrind, mode, 0, sim.base_url, names, stages)
            full = instructions(valgrind, mode, subaccounts, sim.base_url, names, stages)
            return (full - base) / subaccounts

        for mode, stages in STAGES.items():
            if not by_stage:
                out[mode] = per_subaccount(mode, len(stages))
                continue
            counts = [per_subaccount(mode, upto) for upto in range(1, len(stages) + 1)]
            out[mode] = counts[-1]
            steps = [later - earlier for earlier, later in itertools.pairwise([0.0, *counts])]
            out.setdefault("stages", {})[mode] = dict(zip(stages, steps, strict=True))
    out["ratio"] = out["exporter"] / out["floor"]
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--child"]:
        mode, count, stages, base_url, *names = args[1:]
        run_child(mode, int(count), base_url, names, int(stages))
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__)
    parser.add_argument("--subaccounts", type=int, default=100, help="subaccounts counted")
    parser.add_argument("--numbers", type=int, default=100, help="numbers per subaccount")
    parser.add_argument(
        "--stages", action="store_true", help="also count what each stage adds (slower)"
    )
    options = parser.parse_args(args)
    json.dump(measure(options.subaccounts, options.numbers, options.stages), sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
