"""Scrapes over HTTP: the exporter as a subprocess, pointed at the simulator on loopback.

Each `ExporterProcess` is a fresh `python -m exporter`, so the peak RSS (VmHWM) of one size and
configuration never mixes with another's. Requests carry what Prometheus sends: its Accept
header, `Accept-Encoding: gzip` and the scrape timeout (10 s, the default).
"""

from __future__ import annotations

import gc
import gzip
import http.client
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

REPO = Path(__file__).resolve().parent.parent
PROMETHEUS_HEADERS = {
    "Accept": "application/openmetrics-text;version=1.0.0;q=0.5,"
    "text/plain;version=0.0.4;q=0.4,*/*;q=0.1",
    "Accept-Encoding": "gzip",
    "X-Prometheus-Scrape-Timeout-Seconds": "10",
}
# What a Prometheus configured with `scrape_protocols: [PrometheusText0.0.4]` asks for.
TEXT_ONLY_ACCEPT = "text/plain;version=0.0.4;q=0.5,*/*;q=0.4"
# Cold scrapes in a row whose peak RSS is compared with the first's.
COLD_SCRAPES = 10
_AGE = re.compile(rb"^eightbyeight_health_check_age_seconds\{[^}]*\} (\S+)$", re.MULTILINE)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class Scrape:
    seconds: float
    body: bytes  # as received

    def text(self) -> bytes:
        return gzip.decompress(self.body) if self.body[:2] == b"\x1f\x8b" else self.body


class ExporterProcess:
    """`python -m exporter` for one subaccount at `base_url`; always stopped on exit."""

    def __init__(
        self, base_url: str, api_key: str, subaccount: str, flags: list[str], log: Path
    ) -> None:
        self.port = free_port()
        self.subaccount = subaccount
        self._argv = [
            sys.executable,
            "-m",
            "exporter",
            "--web.listen-address",
            f"127.0.0.1:{self.port}",
            "--api.base-url",
            base_url,
            "--subaccount",
            subaccount,
            "--api.timeout",
            "60s",
            "--log.level",
            "warn",
            *flags,
        ]
        self._env = {**os.environ, "EIGHTBYEIGHT_API_KEY": api_key}
        self._log_path = log
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ExporterProcess:
        self._log = self._log_path.open("wb")
        self._proc = subprocess.Popen(
            self._argv,
            env=self._env,
            cwd=REPO,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while not self._healthy():
            if self._proc.poll() is not None:
                raise RuntimeError(f"exporter exited: {self._log_path.read_text()[-500:]}")
            if time.monotonic() > deadline:
                raise RuntimeError("exporter not ready after 30 s")
            time.sleep(0.05)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self._log.close()

    def _healthy(self) -> bool:
        try:
            return self._get("/-/healthy", {})[0] == 200
        except OSError:
            return False

    def _get(self, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def cpu_seconds(self) -> float:
        """CPU time the process's threads have used so far, to the nanosecond (the scheduler's
        own count, /proc/PID/task/*/schedstat): /proc/PID/stat counts 10 ms ticks, too coarse
        for scrapes of a few tens of milliseconds. A thread that ended takes its time along;
        the exporter's threads live for minutes."""
        assert self._proc is not None
        total = 0
        for task in Path(f"/proc/{self._proc.pid}/task").iterdir():
            try:
                total += int((task / "schedstat").read_text().split()[0])
            except (FileNotFoundError, ProcessLookupError):
                continue  # the thread ended meanwhile
        return total / 1e9

    def timed_scrape(self, **kwargs: bool) -> tuple[Scrape, float]:
        """A scrape and the exporter's CPU seconds for it (what a loaded host distorts least)."""
        before = self.cpu_seconds()
        scrape = self.scrape(**kwargs)
        return scrape, self.cpu_seconds() - before

    def memory(self) -> dict[str, int]:
        """VmRSS and VmHWM (peak RSS) of the process, in bytes."""
        assert self._proc is not None
        out = {}
        for line in Path(f"/proc/{self._proc.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
        return out

    def scrape(self, gzip: bool = True, text_only: bool = False) -> Scrape:
        """A /metrics scrape as Prometheus asks (OpenMetrics first), or for text only."""
        headers = dict(PROMETHEUS_HEADERS)
        if not gzip:
            headers["Accept-Encoding"] = "identity"
        if text_only:
            headers["Accept"] = TEXT_ONLY_ACCEPT
        started = time.perf_counter()
        status, body = self._get("/metrics", headers)
        seconds = time.perf_counter() - started
        if status != 200:
            raise RuntimeError(f"/metrics answered {status}")
        return Scrape(seconds, body)

    def check(self, scrape: Scrape, numbers: int | None) -> None:
        """The scrape is a success with every number in it (when per-number series are on)."""
        text = scrape.text()
        if f'eightbyeight_up{{subaccount="{self.subaccount}"}} 1.0\n'.encode() not in text:
            raise RuntimeError("scrape did not succeed: " + self._log_path.read_text()[-500:])
        if numbers is not None and text.count(b"\neightbyeight_number_info{") != numbers:
            raise RuntimeError("scrape does not hold every number")


def check_ages(scrape: Scrape) -> list[float]:
    return [float(value) for value in _AGE.findall(scrape.text())]


def json_loads_seconds(body: bytes) -> float:
    """Wall time of one `json.loads` of the body, as in a fresh interpreter: what this process
    already holds (the simulator's inventories) is frozen out of the cyclic GC's collections
    meanwhile, so they cost what they cost there (bench/inprocess.py) and no more."""
    gc.collect()
    gc.freeze()
    try:
        started = time.perf_counter()
        json.loads(body)
        return time.perf_counter() - started
    finally:
        gc.unfreeze()


def summary(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    return {"best": ordered[0], "median": ordered[len(ordered) // 2], "runs": len(ordered)}


def _format_pair(
    proc: ExporterProcess, openmetrics_first: bool
) -> tuple[tuple[Scrape, float], tuple[Scrape, float]]:
    """An OpenMetrics and a text scrape, in the order asked; returned as (OpenMetrics, text)."""
    if openmetrics_first:
        openmetrics = proc.timed_scrape()
        return openmetrics, proc.timed_scrape(text_only=True)
    text = proc.timed_scrape(text_only=True)
    return proc.timed_scrape(), text


def measure_http(
    base_url: str,
    api_key: str,
    subaccount: str,
    numbers: int,
    repeat: int,
    cached_repeat: int,
    request_count: Callable[[], int],
    logs: Path,
    body: bytes = b"",
    *,
    format_pairs: int,
) -> dict[str, object]:
    """Cold scrapes, cached scrapes and memory, each configuration in a fresh process.

    With the API's `body`, each cold scrape takes turns with a `json.loads` of it here (the
    floor of the cold scrapes' target), so that a change in the host's speed weighs on both.
    OpenMetrics and text are compared over `format_pairs` pairs of scrapes (`repeat` if more).
    """
    out: dict[str, object] = {}
    name = f"{subaccount}-{numbers}"

    with ExporterProcess(base_url, api_key, subaccount, [], logs / f"{name}-cold.log") as proc:
        idle = proc.memory()["VmRSS"]
        first = proc.scrape()
        proc.check(first, numbers)
        peak_after_first = proc.memory()["VmHWM"]
        # Ten cold scrapes at the least: the peak RSS must not climb from one to the next.
        runs, floors = [], []
        for _ in range(max(repeat, COLD_SCRAPES - 1)):
            if body:
                floors.append(json_loads_seconds(body))
            runs.append(proc.scrape())
        proc.check(runs[-1], numbers)
        memory = proc.memory()
        out["cold"] = {
            **summary([run.seconds for run in runs]),
            "floor_turns": summary(floors) if floors else None,
            "first": first.seconds,
            "peak_after_first": peak_after_first,
            "peak_after_all": memory["VmHWM"],
            "scrapes": len(runs) + 1,
        }
        # The same without gzip, to weigh what compressing costs a cold scrape.
        plain = [proc.scrape(gzip=False) for _ in range(max(3, repeat // 2))]
        proc.check(plain[-1], numbers)
        out["cold_identity"] = summary([run.seconds for run in plain])
        # OpenMetrics (what Prometheus asks for first) against text, scrapes taking turns so
        # that a change in the host's load weighs on both alike, and which goes first changing
        # from pair to pair, so that neither always follows the other. Wall time is noisy on a
        # shared host, so the exporter's CPU time is compared too: pair by pair, the median of
        # the ratios, which a burst of load in one pair does not move.
        pairs = [
            _format_pair(proc, openmetrics_first=turn % 2 == 0)
            for turn in range(max(repeat, format_pairs))
        ]
        for (openmetrics, _), (text, _) in pairs[-1:]:
            proc.check(openmetrics, numbers)
            proc.check(text, numbers)
            if not openmetrics.text().endswith(b"# EOF\n") or b"# EOF" in text.text():
                raise RuntimeError("the formats were not told apart")
        om_runs = summary([om.seconds for (om, _), _ in pairs])
        text_runs = summary([text.seconds for _, (text, _) in pairs])
        om_cpu = sum(cpu for (_, cpu), _ in pairs)
        text_cpu = sum(cpu for _, (_, cpu) in pairs)
        cpu_ratios = [om / text for (_, om), (_, text) in pairs if text > 0]
        out["cold_formats"] = {
            "openmetrics": {**om_runs, "cpu_total": om_cpu},
            "text": {**text_runs, "cpu_total": text_cpu},
            "openmetrics_over_text": om_runs["best"] / text_runs["best"],
            "median_openmetrics_over_text": om_runs["median"] / text_runs["median"],
            "cpu_openmetrics_over_text": statistics.median(cpu_ratios),
            "cpu_total_openmetrics_over_text": om_cpu / text_cpu,
        }
        out["response_gzip_bytes"] = len(first.body)
        out["rss"] = {
            "idle": idle,
            "peak": memory["VmHWM"],
            "after": memory["VmRSS"],
            "peak_above_idle": memory["VmHWM"] - idle,
        }

    flags = ["--cache.ttl", "1h"]
    with ExporterProcess(base_url, api_key, subaccount, flags, logs / f"{name}-cached.log") as proc:
        proc.check(proc.scrape(), numbers)
        before = request_count()
        runs = [proc.scrape() for _ in range(cached_repeat)]
        if request_count() != before:
            raise RuntimeError("a cached scrape called the API")
        proc.check(runs[-1], numbers)
        first_ages, last_ages = check_ages(runs[0]), check_ages(runs[-1])
        out["cached"] = {
            **summary([run.seconds for run in runs]),
            # The age is rendered per scrape: it must grow between cached scrapes.
            "check_age_advances": bool(first_ages)
            and all(b > a for a, b in zip(first_ages, last_ages, strict=True)),
            "rss_after": proc.memory()["VmRSS"],
        }

    flags = ["--no-collector.per-number"]
    with ExporterProcess(base_url, api_key, subaccount, flags, logs / f"{name}-aggr.log") as proc:
        idle = proc.memory()["VmRSS"]
        proc.check(proc.scrape(), None)
        runs = [proc.scrape() for _ in range(repeat)]
        memory = proc.memory()
        out["aggregates_only_cold"] = {
            **summary([run.seconds for run in runs]),
            "response_gzip_bytes": len(runs[-1].body),
            "peak_above_idle": memory["VmHWM"] - idle,
        }
    return out
