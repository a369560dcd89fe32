"""Judge mutmut's mutants one by one against chosen test files, faster than `mutmut run`.

    .venv/bin/python tools/judge_mutants.py NAMES_FILE RESULTS.jsonl TEST_FILE... \
        [--mutants mutants] [--cut-off 60] [--until EPOCH_SECONDS]

NAMES_FILE holds one mutant name a line (`mutmut results` prints them). Run it after `mutmut
run` has written `mutants/`. mutmut's trampolines read MUTANT_UNDER_TEST on every call, so one
warm process can judge mutant after mutant: it imports the code and the test files once, then
forks a child per mutant that sets the variable and runs `pytest -x` on the test files, with
mutmut's own options from pyproject.toml. A child still running after the cut-off is killed
and the mutant counted killed (a test that hangs has found it). Each result is a JSON line
`{"name", "exit", "seconds"}` (exit 1: killed, 0: alive, "cut off"); names already in RESULTS
are skipped, so a stopped run picks up where it was.

Why not `mutmut run`: it runs every fast test that reaches a function, up to ~180 for the
scraper (~110 s a survivor on 2 shared cores), and its map of tests to functions misses code
run on server threads, so some mutants count alive that a listener test kills.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import signal
import sys
import time
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def pytest_args(files: list[str]) -> list[str]:
    """mutmut's own pytest options (`[tool.mutmut]` in pyproject.toml: the fast tests in one
    process, less those that cannot judge a mutant), stopping at the first failure."""
    mutmut = tomllib.loads(PYPROJECT.read_text())["tool"]["mutmut"]
    quiet = ["--rootdir=.", "--tb=no", "-q", "-p", "no:randomly"]
    return [*quiet, *mutmut["pytest_add_cli_args"], "-x", *files]


def judge(name: str, args: list[str], cut_off: float) -> tuple[int | str, float]:
    """Run the tests with one mutant on, in a forked child: its exit code and seconds."""
    import pytest

    started = time.monotonic()
    pid = os.fork()
    if pid == 0:
        os.environ["MUTANT_UNDER_TEST"] = name
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        os._exit(int(pytest.main(list(args))))
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status), time.monotonic() - started
        if time.monotonic() - started > cut_off:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return "cut off", time.monotonic() - started
        time.sleep(0.02)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("names", type=Path)
    parser.add_argument("results", type=Path)
    parser.add_argument("tests", nargs="+")
    parser.add_argument("--mutants", type=Path, default=Path("mutants"))
    parser.add_argument("--cut-off", type=float, default=60.0)
    parser.add_argument("--until", type=float, default=float("inf"))
    options = parser.parse_args(argv)
    names = [line.strip() for line in options.names.read_text().splitlines() if line.strip()]
    results = options.results.resolve()
    done = set()
    if results.exists():
        done = {json.loads(line)["name"] for line in results.read_text().splitlines()}
    os.chdir(options.mutants)
    sys.path.insert(0, os.getcwd())
    import pytest

    args = pytest_args(options.tests)
    # Collect only: the children inherit the imports. Running a test here could leave threads
    # (a pool's workers) that a forked child would count on but not have.
    with contextlib.redirect_stdout(io.StringIO()):
        pytest.main([*args, "--collect-only"])
    if judge("", args, options.cut_off)[0] != 0:
        print("the tests fail without a mutant: fix them first", file=sys.stderr)
        return 2
    with results.open("a") as out:
        for name in names:
            if name in done:
                continue
            if time.time() > options.until:
                print("stopped at --until", file=sys.stderr)
                break
            code, seconds = judge(name, args, options.cut_off)
            out.write(json.dumps({"name": name, "exit": code, "seconds": round(seconds, 2)}))
            out.write("\n")
            out.flush()
            print(name, code, round(seconds, 2), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
