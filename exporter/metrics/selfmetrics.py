"""The exporter's own metrics, served on /metrics only (never on /probe).

Process, platform, build and reload series go through a prometheus_client registry (so do the
webhook families, registered on it by exporter/app.py). The per-subaccount API series are kept
by `ApiSeries`, which renders its text itself: with 1,000 subaccounts they are ~40,000 lines,
and `generate_latest` spent about a third of a scrape's CPU on them. Its output is byte-equal
to what `generate_latest` prints for the same families (`ApiSeries.collect` gives those
families; tests/test_selfmetrics.py compares the two).

A configured subaccount's series live as long as the process; a probed one's are dropped when
its scraper leaves the bounded set of probed scrapers (`TargetSeries.drop`), so /metrics
cannot grow with every ID ever probed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from itertools import accumulate

from prometheus_client import (
    CollectorRegistry,
    Gauge,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from exporter import __version__
from exporter.common.errors import REASONS
from exporter.common.memo import Memo

REQUESTS = "eightbyeight_api_requests"
REQUESTS_HELP = (
    "Requests made to the 8x8 Virtual Numbers API (one per fetch; retries included in that one)."
)
FAILURES = "eightbyeight_api_request_failures"
FAILURES_HELP = (
    "Fetches from the 8x8 API that failed, by reason (unauthorized, forbidden, not_found, "
    "bad_request, rate_limited, server_error, client_error, timeout, connection_error, "
    "invalid_response)."
)
DURATION = "eightbyeight_api_request_duration_seconds"
DURATION_HELP = "Seconds taken to fetch a subaccount's numbers from the 8x8 API, body included."
BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_LE = (*map(floatToGoString, BUCKETS), "+Inf")


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _header(name: str, kind: str, help_text: str) -> str:
    return f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n"


@dataclass(slots=True)
class _Subaccount:
    """One subaccount's API series: counts and sums, and its labels and creation time as text."""

    label: str  # the escaped subaccount
    created: float
    created_text: str  # floatToGoString(created), printed on every _created line
    # None until the series exists: like prometheus_client's labelled children, each series
    # appears on its first use (or at 0 for every configured subaccount, from `start`).
    requests: float | None = None
    failures: dict[str, float] = field(default_factory=dict)
    buckets: list[int] | None = None
    count: int = 0
    total: float = 0.0
    failure_text: str | None = None  # the failure lines, until the next failure
    failure_created: str | None = None  # their _created lines, made with them
    text: _SubaccountText | None = None  # what of its lines never changes, made on first use


@dataclass(frozen=True, slots=True)
class _SubaccountText:
    """The parts of a subaccount's lines that never change: prefixes and _created lines."""

    requests: str
    requests_created: str
    buckets: tuple[str, ...]
    count: str
    total: str
    duration_created: str

    @classmethod
    def of(cls, label: str, created: str) -> _SubaccountText:
        own = f'{{subaccount="{label}"}} '
        return cls(
            requests=f"{REQUESTS}_total{own}",
            requests_created=f"{REQUESTS}_created{own}{created}\n",
            buckets=tuple(f'{DURATION}_bucket{{le="{le}",subaccount="{label}"}} ' for le in _LE),
            count=f"{DURATION}_count{own}",
            total=f"{DURATION}_sum{own}",
            duration_created=f"{DURATION}_created{own}{created}\n",
        )


# Counts repeat across subaccounts and scrapes: formatted once, in a bounded memo (sums, nearly
# all distinct, are not kept).
_GO: Memo[float, str] = Memo(floatToGoString, limit=1 << 14)


class ApiSeries:
    """Requests, failures by reason and request durations per subaccount.

    A few lines of what it renders::

        eightbyeight_api_requests_total{subaccount="acme-prod"} 12.0
        eightbyeight_api_request_failures_total{reason="timeout",subaccount="acme-prod"} 1.0
        eightbyeight_api_request_duration_seconds_bucket{le="0.25",subaccount="acme-prod"} 11.0
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._subs: dict[str, _Subaccount] = {}

    def _get(self, subaccount: str) -> _Subaccount:
        sub = self._subs.get(subaccount)
        if sub is None:
            created = self._clock()
            sub = _Subaccount(_escape(subaccount), created, floatToGoString(created))
            self._subs[subaccount] = sub
        return sub

    def start(self, subaccount: str) -> None:
        """The subaccount's series at 0, so increase() sees its first request and failure."""
        with self._lock:
            sub = self._get(subaccount)
            if sub.requests is None:
                sub.requests = 0.0
            if sub.buckets is None:
                sub.buckets = [0] * len(BUCKETS)
            for reason in REASONS:
                sub.failures.setdefault(reason, 0.0)
            sub.failure_text = None

    def request(self, subaccount: str) -> None:
        with self._lock:
            sub = self._get(subaccount)
            sub.requests = (sub.requests or 0.0) + 1

    def failure(self, subaccount: str, reason: str) -> None:
        with self._lock:
            sub = self._get(subaccount)
            sub.failures[reason] = sub.failures.get(reason, 0.0) + 1
            sub.failure_text = None

    def duration(self, subaccount: str, seconds: float) -> None:
        with self._lock:
            sub = self._get(subaccount)
            if sub.buckets is None:
                sub.buckets = [0] * len(BUCKETS)
            for index, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    sub.buckets[index] += 1
                    break
            sub.count += 1
            sub.total += seconds

    def remove(self, subaccount: str) -> None:
        with self._lock:
            self._subs.pop(subaccount, None)

    def render(self) -> str:
        """The exposition text of every subaccount's series, as generate_latest prints it."""
        with self._lock:
            subs = list(self._subs.values())
            for sub in subs:
                if sub.text is None:
                    sub.text = _SubaccountText.of(sub.label, sub.created_text)
                if sub.failures and sub.failure_text is None:
                    self._failure_lines(sub)
            asked = [(s.text, s.requests) for s in subs if s.requests is not None]
            failed = [(s.failure_text, s.failure_created) for s in subs if s.failures]
            timed = [
                (s.text, list(s.buckets), s.count, s.total) for s in subs if s.buckets is not None
            ]
        go = _GO.__getitem__
        # Each family's header is there even with no series, as prometheus_client prints it.
        out = [_header(f"{REQUESTS}_total", "counter", REQUESTS_HELP)]
        out += [f"{text.requests}{go(n)}\n" for text, n in asked]  # type: ignore[union-attr]
        if asked:
            out.append(_header(f"{REQUESTS}_created", "gauge", REQUESTS_HELP))
            out += [text.requests_created for text, _ in asked]  # type: ignore[union-attr]
        out.append(_header(f"{FAILURES}_total", "counter", FAILURES_HELP))
        out += [lines for lines, _ in failed]  # type: ignore[misc]
        if failed:
            out.append(_header(f"{FAILURES}_created", "gauge", FAILURES_HELP))
            out += [created for _, created in failed]  # type: ignore[misc]
        out.append(_header(DURATION, "histogram", DURATION_HELP))
        for text, buckets, count, total in timed:
            buckets.append(count - sum(buckets))  # +Inf: what no bound holds
            for prefix, cumulative in zip(text.buckets, accumulate(buckets), strict=True):  # type: ignore[union-attr]
                out.append(f"{prefix}{go(float(cumulative))}\n")
            out.append(f"{text.count}{go(float(count))}\n")  # type: ignore[union-attr]
            out.append(f"{text.total}{floatToGoString(total)}\n")  # type: ignore[union-attr]
        if timed:
            out.append(_header(f"{DURATION}_created", "gauge", DURATION_HELP))
            out += [text.duration_created for text, *_ in timed]  # type: ignore[union-attr]
        return "".join(out)

    @staticmethod
    def _failure_lines(sub: _Subaccount) -> None:
        """Called with the lock held: the lines are kept until the next failure."""
        sub.failure_text = "".join(
            f'{FAILURES}_total{{reason="{_escape(reason)}",subaccount="{sub.label}"}} '
            f"{floatToGoString(count)}\n"
            for reason, count in sub.failures.items()
        )
        sub.failure_created = "".join(
            f'{FAILURES}_created{{reason="{_escape(reason)}",subaccount="{sub.label}"}} '
            f"{sub.created_text}\n"
            for reason in sub.failures
        )

    def collect(self) -> Iterator[Metric]:
        """The same series as prometheus_client families (for tests and generic consumers)."""
        with self._lock:
            subs = [
                (name, replace(s, failures=dict(s.failures), buckets=s.buckets and list(s.buckets)))
                for name, s in self._subs.items()
            ]
        requests = CounterMetricFamily(REQUESTS, REQUESTS_HELP, labels=["subaccount"])
        failures = CounterMetricFamily(FAILURES, FAILURES_HELP, labels=["reason", "subaccount"])
        durations = HistogramMetricFamily(DURATION, DURATION_HELP, labels=["subaccount"])
        for name, sub in subs:
            if sub.requests is not None:
                requests.add_metric([name], sub.requests, created=sub.created)
            for reason, times in sub.failures.items():
                failures.add_metric([reason, name], times, created=sub.created)
            if sub.buckets is None:
                continue
            cumulative, pairs = 0, []
            for le, in_bucket in zip(_LE, [*sub.buckets, 0], strict=True):
                cumulative += in_bucket
                pairs.append((le, float(sub.count if le == "+Inf" else cumulative)))
            durations.add_metric([name], pairs, sub.total)
            created = Sample(f"{DURATION}_created", {"subaccount": name}, sub.created)
            durations.samples.append(created)
        yield from (requests, failures, durations)


class SelfMetrics:
    """API call counters, failures by reason, latency and build info."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.api = ApiSeries(clock)
        build = Gauge(
            "eightbyeight_exporter_build_info",
            "Version of the exporter; the value is always 1.",
            ["version"],
            registry=self.registry,
        )
        build.labels(__version__).set(1)
        self.reload_successful = Gauge(
            "eightbyeight_config_last_reload_successful",
            "1 if the last load of the configuration (start-up or reload) succeeded, else 0.",
            registry=self.registry,
        )
        self.reload_success_time = Gauge(
            "eightbyeight_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful load of the configuration (start-up or reload).",
            registry=self.registry,
        )

    def configuration_loaded(self, wall_time: float) -> None:
        self.reload_successful.set(1)
        self.reload_success_time.set(wall_time)

    def configuration_failed(self) -> None:
        self.reload_successful.set(0)

    def start_at_zero(self, subaccount: str) -> None:
        """Create the subaccount's counters at 0, so increase() sees their first failure."""
        self.api.start(subaccount)

    def exposition(self) -> bytes:
        return generate_latest(self.registry) + self.api.render().encode()

    def sample_value(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        """One sample's value, from the registry or the API series (for tests)."""
        found = self.registry.get_sample_value(name, labels)
        if found is not None:
            return found
        for family in self.api.collect():
            for sample in family.samples:
                if sample.name == name and sample.labels == (labels or {}):
                    return sample.value
        return None

    def target(self, subaccount: str) -> TargetSeries:
        """The series of one subaccount, through which its scraper records its fetches."""
        return TargetSeries(self.api, subaccount)


class TargetSeries:
    """One subaccount's request, failure and latency series, until they are dropped.

    After `drop()` nothing is recorded any more: a fetch still in flight when its scraper was
    evicted would otherwise bring the series back, and nothing would remove them again.
    """

    def __init__(self, api: ApiSeries, subaccount: str) -> None:
        self._api = api
        self._subaccount = subaccount
        self._lock = threading.Lock()
        self._dropped = False

    def request(self) -> None:
        with self._lock:
            if not self._dropped:
                self._api.request(self._subaccount)

    def duration(self, seconds: float) -> None:
        with self._lock:
            if not self._dropped:
                self._api.duration(self._subaccount, seconds)

    def failure(self, reason: str) -> None:
        with self._lock:
            if not self._dropped:
                self._api.failure(self._subaccount, reason)

    def drop(self) -> None:
        """Remove the series from /metrics and record nothing from now on."""
        with self._lock:
            self._dropped = True
            self._api.remove(self._subaccount)
