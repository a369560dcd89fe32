"""One /metrics scrape of many subaccounts behind a slow API, as Prometheus makes it.

The simulator serves `subaccounts` subaccounts of `numbers` numbers each on loopback, every
answer delayed by `latency` seconds; the exporter (a fresh process) has them all configured
and is scraped with Prometheus' headers and a 10 s scrape timeout. The figures: how long the
scrape took, how many subaccounts were `up 1`, and the exporter's memory and threads.
"""

from __future__ import annotations

import re
import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.host import Stolen
from bench.scrape import ExporterProcess
from exporter.app import thread_bound
from exporter.config.settings import Settings
from exporter.simulator import Simulator

API_KEY = "bench-key"
SEED = 8
SCRAPE_TIMEOUT = 10.0  # Prometheus' default, sent in X-Prometheus-Scrape-Timeout-Seconds
TARGET_SECONDS = 9.5  # the timeout less the default --web.timeout-offset
_UP = re.compile(rb'^eightbyeight_up\{subaccount="[^"]*"\} (\S+)$', re.MULTILINE)

# The most threads the exporter may have with its default flags (what it logs at start-up).
THREAD_BOUND = thread_bound(Settings())

# (subaccounts, numbers each, upstream latency in seconds): the cases the README promises.
CASES = ((1_000, 100, 0.2), (100, 100, 3.0))


def _warm(base_url: str, subaccounts: list[str]) -> None:
    """Fetch every body once, so the simulator's encoding is not part of the measurement."""

    def fetch(subaccount: str) -> None:
        request = urllib.request.Request(
            f"{base_url}/api/v1/subaccounts/{subaccount}/numbers",
            headers={"Authorization": f"Bearer {API_KEY}"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:  # loopback only
            response.read()

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(fetch, subaccounts))


def _threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0


class ThreadPeak:
    """The most threads a process had while the block ran, read from /proc every 10 ms."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.most = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="thread-peak", daemon=True)

    def _watch(self) -> None:
        while not self._stop.wait(0.01):
            self.most = max(self.most, _threads(self.pid))

    def __enter__(self) -> ThreadPeak:
        self.most = _threads(self.pid)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.most = max(self.most, _threads(self.pid))


def measure_many(
    subaccounts: int,
    numbers: int,
    latency: float,
    logs: Path,
    stuck: int = 0,
    keep_text: bool = False,
    extra_flags: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Two scrapes (new connections, then kept-alive ones) of all subaccounts at once.

    The last `stuck` subaccounts never answer in time (the simulator waits 300 s). With
    `keep_text`, the two answers' texts are in the result too (`texts`). `extra_flags` go to
    the exporter as they are.
    """
    names = [f"bench-{i:04d}" for i in range(subaccounts)]
    frozen = 1_700_000_000.0
    with Simulator(dict.fromkeys(names, numbers), API_KEY, seed=SEED, clock=lambda: frozen) as sim:
        _warm(sim.base_url, names)
        sim.set_faults({"latency_seconds": latency})
        for name in names[subaccounts - stuck :]:
            sim.set_faults({"latency_seconds": 300}, subaccount=name)
        flags = ["--log.level", "error", *extra_flags]
        for name in names[1:]:
            flags += ["--subaccount", name]
        log = logs / f"many-{subaccounts}x{numbers}-{latency}s.log"
        with ExporterProcess(sim.base_url, API_KEY, names[0], flags, log) as proc:
            idle = proc.memory()["VmRSS"]
            with ThreadPeak(proc.pid) as peak, Stolen() as stolen:
                first = proc.scrape()
                second = proc.scrape()
            memory = proc.memory()
            threads = _threads(proc.pid)
            ups = [float(v) for v in _UP.findall(first.text())]
            ups_second = [float(v) for v in _UP.findall(second.text())]
    return {
        "subaccounts": subaccounts,
        "numbers": numbers,
        "latency": latency,
        "first": first.seconds,
        "second": second.seconds,
        "up": int(sum(ups)),
        "up_second": int(sum(ups_second)),
        "gzip_bytes": len(first.body),
        "rss": {"idle": idle, "peak": memory["VmHWM"], "after": memory["VmRSS"]},
        "threads_after": threads,
        "threads_peak": peak.most,
        "stolen_share": stolen.share,
        **({"texts": (first.text(), second.text())} if keep_text else {}),
    }
