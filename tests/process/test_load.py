"""Load: 200 concurrent scrapers hammer the exporter (a real process) for LOAD_TEST_SECONDS
(default 30) while it reads a 200-number subaccount from the simulator, all on loopback.

Every scrape must succeed with eightbyeight_up 1; the upstream must see exactly the requests
that the cache TTL and single flight predict; the exporter's memory must stop growing.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from exporter.simulator import Simulator
from tests.support.exporters import exporter_process, parse_samples, rss_kib, value

SECONDS = float(os.environ.get("LOAD_TEST_SECONDS", "30"))
SCRAPERS = int(os.environ.get("LOAD_TEST_SCRAPERS", "200"))
PROCESSES = 4
SUB = "acme-prod"
KEY = "load-key-9e4b07d1-never-shown"
WORKER = Path(__file__).with_name("load_worker.py")

pytestmark = pytest.mark.load


@dataclass
class LoadResult:
    seconds: float
    ok: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    rss_kib: list[tuple[float, int]] = field(default_factory=list)

    def summary(self) -> str:
        lat = sorted(self.latencies) or [0.0]
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        rss = [r for _, r in self.rss_kib]
        return (
            f"{self.ok} scrapes ok, {self.failed} failed, {self.ok / self.seconds:.0f}/s, "
            f"latency p50 {statistics.median(lat) * 1000:.0f} ms p99 {p99 * 1000:.0f} ms "
            f"max {lat[-1] * 1000:.0f} ms, RSS KiB first/max/last {rss[0]}/{max(rss)}/{rss[-1]}"
        )


def hammer(url: str, pid: int, seconds: float, scrapers: int) -> LoadResult:
    """`scrapers` scrapers in PROCESSES processes scrape /metrics back to back for `seconds`,
    all starting at the same moment; the exporter's RSS is sampled meanwhile."""
    result = LoadResult(seconds)
    per_process = [scrapers // PROCESSES + (i < scrapers % PROCESSES) for i in range(PROCESSES)]
    workers = [
        subprocess.Popen(
            [sys.executable, str(WORKER), url, str(seconds), str(n), SUB],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in per_process
        if n
    ]
    try:
        for worker in workers:  # each says "ready" once imported
            assert worker.stdout.readline().strip() == "ready", "a load worker did not start"
        start_at = time.time() + 0.2  # every worker's threads start together
        for worker in workers:
            worker.stdin.write(f"{start_at}\n")
            worker.stdin.flush()
        time.sleep(max(0.0, start_at - time.time()))
        began = time.monotonic()
        while (now := time.monotonic()) - began < seconds:
            result.rss_kib.append((now - began, rss_kib(pid)))
            time.sleep(0.5)
        for worker in workers:
            out, _ = worker.communicate(timeout=60)
            assert worker.returncode == 0, "a load worker failed"
            report = json.loads(out)
            result.ok += report["ok"]
            result.failed += report["failed"]
            result.failures += report["failures"]
            result.latencies += report["latencies"]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait(timeout=10)
    return result


def assert_rss_stops_growing(result: LoadResult) -> None:
    """After the first third (warm-up), the peak of the last third is no higher than the peak
    of the middle third, give or take allocator noise."""
    third = len(result.rss_kib) // 3
    middle = max(r for _, r in result.rss_kib[third : 2 * third])
    last = max(r for _, r in result.rss_kib[2 * third :])
    assert last <= middle * 1.05 + 4096, f"RSS still growing: middle {middle} KiB, last {last} KiB"


def exporter_counter(url: str) -> float:
    samples = parse_samples(requests.get(url + "/metrics", timeout=10).text)
    return value(samples, "eightbyeight_api_requests_total", subaccount=SUB)


@pytest.mark.timeout(int(SECONDS * 2) + 120)
def test_load_with_cache_and_single_flight(tmp_path):
    ttl = 5.0
    with Simulator(subaccounts={SUB: 200}, api_key=KEY) as sim:
        argv = ["--api.base-url", sim.base_url, "--subaccount", SUB, "--cache.ttl", f"{ttl}s"]
        env = {"EIGHTBYEIGHT_API_KEY": KEY}
        with exporter_process(argv, env, tmp_path / "exporter.log") as (url, pid):
            result = hammer(url, pid, SECONDS, SCRAPERS)
            counted = exporter_counter(url)
            upstream = sim.request_count(SUB)
        log = (tmp_path / "exporter.log").read_text()
    predicted = math.ceil(SECONDS / ttl)
    print(
        f"\ncache {ttl}s: {result.summary()}; upstream requests {upstream} (predicted {predicted})"
    )
    assert (result.failed, result.failures) == (0, [])
    assert result.ok >= SCRAPERS  # every scraper got through at least once
    # One request when the load starts, then one each time the TTL lapses (under load a
    # scrape arrives at once); the final /metrics read above may add the last one.
    assert predicted <= upstream <= predicted + 2
    assert counted == upstream
    assert_rss_stops_growing(result)
    assert "level=warn" not in log
    assert "level=error" not in log
    assert KEY not in log


@pytest.mark.timeout(int(SECONDS * 2) + 120)
def test_load_without_cache_is_single_flight(tmp_path):
    seconds = max(5.0, SECONDS / 3)
    with Simulator(subaccounts={SUB: 200}, api_key=KEY) as sim:
        argv = ["--api.base-url", sim.base_url, "--subaccount", SUB]
        env = {"EIGHTBYEIGHT_API_KEY": KEY}
        with exporter_process(argv, env, tmp_path / "exporter.log") as (url, pid):
            result = hammer(url, pid, seconds, SCRAPERS)
            upstream = sim.request_count(SUB)
            samples = parse_samples(requests.get(url + "/metrics", timeout=10).text)
    fetch_sum = value(samples, "eightbyeight_api_request_duration_seconds_sum", subaccount=SUB)
    print(
        f"\nno cache: {result.summary()}; upstream requests {upstream}, "
        f"{result.ok / max(upstream, 1):.1f} scrapes per request, time in fetches "
        f"{fetch_sum:.1f} s of {seconds:.0f} s"
    )
    assert (result.failed, result.failures) == (0, [])
    # Single flight: fetches never overlap, so together they fit in the wall time (200
    # independent fetches would add up to far more), and each one serves several scrapes.
    assert fetch_sum <= seconds + 1
    assert result.ok >= 1.5 * upstream
    assert_rss_stops_growing(result)
