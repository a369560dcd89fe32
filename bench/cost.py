"""CPU per /metrics scrape of many subaccounts, against a floor measured in the same run.

The floor is what any exporter of this API must do at the least: one process fetching the
same bodies sequentially over one `requests.Session` and `json.loads`-ing each. The exporter (a
fresh process, all subaccounts configured) is scraped with Prometheus' headers, 1 +
STEADY_SCRAPES times: the first scrape also starts its threads and connections; each of the
others follows a run of the floor, so that both are measured while the host runs alike, and
the best of each is compared (the exporter's median is recorded too). Its CPU time is read as
every other exporter figure of the benchmark is (`ExporterProcess.timed_scrape`). With
`profile=True`, py-spy samples the thread holding the GIL during a third scrape, and the
samples are folded into shares by area.

Each turn also times the exporter's work alone, in a process of its own: what the scraper does
for each subaccount (the program `bench.instructions` counts: its API client's fetch, parse,
render, deflate), one after the other in one thread, with no threads, server or answer. Its
ratio to the floor is the least that any change to how the work is scheduled or served could
bring the exporter's ratio down to.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench import instructions
from bench.scrape import ExporterProcess
from exporter.simulator import Simulator

API_KEY = "bench-key"
# The exporter's steady scrapes after its first, each after a run of the floor: the best of
# each is compared, the same kind of figure on both sides, taken while the host ran alike.
STEADY_SCRAPES = 4
SEED = 8

# Where a sampled frame belongs: the first area whose marker is in its file path wins, looked
# for from the innermost frame outwards.
AREAS = (
    ("prometheus_client (generic exposition)", ("prometheus_client/",)),
    ("deflate (encoding)", ("exporter/metrics/encoding.py",)),
    (
        "HTTP client (its API client, requests, urllib3, http.client, ssl, socket)",
        (
            "exporter/polling/client.py",
            "requests/",
            "urllib3/",
            "http/client.py",
            "ssl.py",
            "socket.py",
        ),
    ),
    ("parsing (model)", ("exporter/polling/model.py", "msgspec")),
    (
        "rendering (exposition, selfmetrics)",
        (
            "exporter/polling/exposition.py",
            "exporter/metrics/selfmetrics.py",
            "exporter/common/memo.py",
        ),
    ),
    # The scraper's own lines (its single flight, the deadline, the status it keeps): before
    # this area they fell through to the thread's outermost frame and read as threads.
    ("scrape bookkeeping (scraper)", ("exporter/polling/scraper.py",)),
    (
        "HTTP server (exporter/web, wsgiref)",
        ("exporter/web/", "wsgiref/", "socketserver.py"),
    ),
    ("threads and waits", ("threading.py", "concurrent/", "queue.py", "selectors.py")),
)


def floor_cpu(base_url: str, names: list[str]) -> float:
    """CPU of a process of its own fetching every body sequentially over one Session and
    `json.loads`-ing each (not this one's: the simulator serving the bodies runs here)."""
    return _child_cpu("floor", base_url, names)


def work_alone_cpu(base_url: str, names: list[str]) -> float:
    """CPU of a process of its own doing the exporter's work on every subaccount, one after the
    other in one thread."""
    return _child_cpu("exporter", base_url, names)


def _child_cpu(mode: str, base_url: str, names: list[str]) -> float:
    code = (
        "import sys; from bench.cost import run_sequentially; "
        "print(run_sequentially(sys.argv[1], sys.argv[2], sys.argv[3:]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, mode, base_url, *names],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        check=True,
    )
    return float(done.stdout)


def run_sequentially(mode: str, base_url: str, names: list[str]) -> float:
    """The work of `bench.instructions`' program of `mode` on every subaccount, one after the
    other in this thread: its CPU time, from after the session or the API clients are built."""
    one = instructions.program(mode, base_url, names)
    started = time.process_time()
    for name in names:
        one(name)
    return time.process_time() - started


def _area(stack: list[str]) -> str:
    for frame in reversed(stack):  # py-spy's raw stacks are outermost first
        for name, markers in AREAS:
            if any(marker in frame for marker in markers):
                return name
    return "other"


def profile_shares(raw: Path) -> list[tuple[str, float]]:
    """py-spy's raw (collapsed) output folded into shares of the samples by area."""
    counts: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if count.isdigit():
            counts[_area(stack.split(";"))] += int(count)
    total = sum(counts.values()) or 1
    return [(area, counts[area] / total) for area, _ in counts.most_common()]


def measure_cost(
    subaccounts: int, numbers: int, logs: Path, profile: bool = False
) -> dict[str, Any]:
    """The floor's and the exporter's CPU for one scrape of all subaccounts."""
    names = [f"bench-{i:04d}" for i in range(subaccounts)]
    frozen = 1_700_000_000.0
    with Simulator(dict.fromkeys(names, numbers), API_KEY, seed=SEED, clock=lambda: frozen) as sim:
        floor_cpu(sim.base_url, names[: min(50, subaccounts)])  # warms the simulator's bodies
        floor_cpu(sim.base_url, names)  # and every other body, so both read the same cache
        flags = ["--log.level", "error"]
        for name in names[1:]:
            flags += ["--subaccount", name]
        log = logs / f"cost-{subaccounts}x{numbers}.log"
        floors, alone, cpu, seconds = [], [], [], []
        with ExporterProcess(sim.base_url, API_KEY, names[0], flags, log) as proc:
            for turn in range(1 + STEADY_SCRAPES):
                if turn:  # the floor and the work alone take turns with the steady scrapes
                    floors.append(floor_cpu(sim.base_url, names))
                    alone.append(work_alone_cpu(sim.base_url, names))
                scrape, used = proc.timed_scrape()
                seconds.append(scrape.seconds)
                cpu.append(used)
            shares = _profiled_scrape(proc) if profile else []
    floor, work_alone = min(floors), min(alone)
    steady = min(cpu[1:])
    return {
        "subaccounts": subaccounts,
        "numbers": numbers,
        "floor_cpu": floor,
        "first_cpu": cpu[0],
        "exporter_cpu": steady,
        "exporter_cpu_median": statistics.median(cpu[1:]),
        "ratio": steady / floor if floor else float("inf"),
        "work_alone_cpu": work_alone,
        "work_alone_ratio": work_alone / floor if floor else float("inf"),
        "scrape_seconds": seconds,
        "profile": shares,
    }


def _profiled_scrape(proc: ExporterProcess) -> list[tuple[str, float]]:
    beside = Path(sys.executable).with_name("py-spy")
    spy = str(beside) if beside.exists() else shutil.which("py-spy")
    if spy is None:
        return []
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp, "raw.txt")
        sampler = subprocess.Popen(
            [
                spy,
                "record",
                "--pid",
                str(proc.pid),
                "--format",
                "raw",
                "--rate",
                "200",
                "--gil",
                "--nonblocking",
                "--output",
                str(raw),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(0.5)  # py-spy attaches before the scrape starts
            proc.scrape()
        finally:
            sampler.send_signal(2)
            sampler.wait(timeout=30)
        return profile_shares(raw) if raw.exists() else []
