"""The exporter's own metrics, served on /metrics only (never on /probe).

In text 0.0.4 they carry no `_created` series (prometheus_client adds one gauge family per
counter and histogram there); in OpenMetrics, counters and histograms have their `_created`
samples as that format defines them.

Process, platform, build and reload series go through a prometheus_client registry (so do the
webhook families, registered on it by exporter/app.py). The per-subaccount API series are kept
by `ApiSeries`, which renders its text itself: with 1,000 subaccounts they are ~40,000 lines,
and `generate_latest` spent about a third of a scrape's CPU on them. Its output is byte-equal
to what `generate_latest` prints for the same families (`ApiSeries.collect` gives those
families; tests/unit/metrics/test_selfmetrics.py compares the two).

A configured subaccount's series live as long as the process; a probed one's are dropped when
its scraper leaves the bounded set of probed scrapers (`TargetSeries.drop`), so /metrics
cannot grow with every ID ever probed.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

from prometheus_client import (
    CollectorRegistry,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from exporter import __version__
from exporter.common.errors import REASONS
from exporter.metrics import catalogue as c
from exporter.metrics.instruments import counter_family, gauge

REQUESTS = c.API_REQUESTS.name
FAILURES = c.API_REQUEST_FAILURES.name
DURATION = c.API_REQUEST_DURATION_SECONDS.name
BUCKETS = c.API_REQUEST_DURATION_SECONDS.buckets
_LE = (*map(floatToGoString, BUCKETS), "+Inf")
_API = (c.API_REQUESTS, c.API_REQUEST_FAILURES, c.API_REQUEST_DURATION_SECONDS)


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _header(name: str, kind: str, help_text: str) -> str:
    return f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n"


def _help(help_text: str, openmetrics: bool) -> str:
    """The help as written: OpenMetrics escapes quotes too (the helps here have none today)."""
    escaped = help_text.replace("\\", r"\\").replace("\n", r"\n")
    return escaped.replace('"', r"\"") if openmetrics else escaped


def _counter_header(name: str, help_text: str, openmetrics: bool) -> str:
    """Text names a counter family by its `_total` samples; OpenMetrics by the bare name."""
    if openmetrics:
        return _header(name, "counter", _help(help_text, True))
    return _header(f"{name}_total", "counter", _help(help_text, False))


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
    failure_om: str | None = None  # the same in OpenMetrics, with their _created lines


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
            sub.failure_text = sub.failure_om = None

    def request(self, subaccount: str) -> None:
        with self._lock:
            sub = self._get(subaccount)
            sub.requests = (sub.requests or 0.0) + 1

    def failure(self, subaccount: str, reason: str) -> None:
        with self._lock:
            sub = self._get(subaccount)
            sub.failures[reason] = sub.failures.get(reason, 0.0) + 1
            sub.failure_text = sub.failure_om = None

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

    def render(self, openmetrics: bool = False) -> str:
        """The exposition text of every subaccount's series, as prometheus_client prints it:
        text 0.0.4 without the `_created` series, or OpenMetrics with them (no `# EOF`)."""
        with self._lock:
            subs = list(self._subs.values())
            asked = [(s.label, s.requests, s.created_text) for s in subs if s.requests is not None]
            failed = [s for s in subs if s.failures]
            if openmetrics:
                failures = [s.failure_om or self._failure_lines(s, True) for s in failed]
            else:
                failures = [s.failure_text or self._failure_lines(s, False) for s in failed]
            timed = [s for s in subs if s.buckets is not None]
            durations = [
                (s.label, list(s.buckets or ()), s.count, s.total, s.created_text) for s in timed
            ]
        go = floatToGoString
        # Each family's header is there even with no series, as prometheus_client prints it.
        out = [_counter_header(REQUESTS, c.API_REQUESTS.help, openmetrics)]
        for label, n, created in asked:
            out.append(f'{REQUESTS}_total{{subaccount="{label}"}} {go(n)}\n')
            if openmetrics:
                out.append(f'{REQUESTS}_created{{subaccount="{label}"}} {created}\n')
        out.append(_counter_header(FAILURES, c.API_REQUEST_FAILURES.help, openmetrics))
        out += failures
        out.append(
            _header(DURATION, "histogram", _help(c.API_REQUEST_DURATION_SECONDS.help, openmetrics))
        )
        for label, buckets, count, total, created in durations:
            cumulative = 0
            for le, in_bucket in zip(_LE, [*buckets, 0], strict=True):
                cumulative += in_bucket
                value = go(float(count if le == "+Inf" else cumulative))
                out.append(f'{DURATION}_bucket{{le="{le}",subaccount="{label}"}} {value}\n')
            out.append(f'{DURATION}_count{{subaccount="{label}"}} {go(float(count))}\n')
            out.append(f'{DURATION}_sum{{subaccount="{label}"}} {go(total)}\n')
            if openmetrics:
                out.append(f'{DURATION}_created{{subaccount="{label}"}} {created}\n')
        return "".join(out)

    @staticmethod
    def _failure_lines(sub: _Subaccount, openmetrics: bool) -> str:
        """Called with the lock held: the lines are kept until the next failure."""
        lines = []
        for reason, count in sub.failures.items():
            labels = f'{{reason="{_escape(reason)}",subaccount="{sub.label}"}}'
            lines.append(f"{FAILURES}_total{labels} {floatToGoString(count)}\n")
            if openmetrics:
                lines.append(f"{FAILURES}_created{labels} {sub.created_text}\n")
        text = "".join(lines)
        if openmetrics:
            sub.failure_om = text
        else:
            sub.failure_text = text
        return text

    def collect(self) -> Iterator[Metric]:
        """The same series as prometheus_client families (for tests and generic consumers)."""
        with self._lock:
            subs = [
                (name, replace(s, failures=dict(s.failures), buckets=s.buckets and list(s.buckets)))
                for name, s in self._subs.items()
            ]
        requests = counter_family(c.API_REQUESTS)
        failures = counter_family(c.API_REQUEST_FAILURES)
        durations = HistogramMetricFamily(
            DURATION, c.API_REQUEST_DURATION_SECONDS.help, labels=["subaccount"]
        )
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


OPENMETRICS_EOF = b"# EOF\n"
# The families whose samples include `_created` (prometheus_client's counters, histograms and
# summaries): OpenMetrics defines it, text 0.0.4 has it only as an extra gauge per family.
_WITH_CREATED = frozenset({"counter", "histogram", "summary"})


class WithoutCreated:
    """A registry's families without their `_created` samples, for text 0.0.4."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        for metric in self._registry.collect():
            if metric.type in _WITH_CREATED:
                created = f"{metric.name}_created"
                kept = [sample for sample in metric.samples if sample.name != created]
                if len(kept) != len(metric.samples):
                    metric = copy.copy(metric)  # a collector may hand out the same family again
                    metric.samples = kept
            yield metric


class SelfMetrics:
    """API call counters, failures by reason, latency and build info."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.api = ApiSeries(clock)
        build = gauge(c.EXPORTER_BUILD_INFO, self.registry)
        build.labels(version=__version__).set(1)
        self.reload_successful = gauge(c.CONFIG_LAST_RELOAD_SUCCESSFUL, self.registry)
        self.reload_success_time = gauge(
            c.CONFIG_LAST_RELOAD_SUCCESS_TIMESTAMP_SECONDS, self.registry
        )

    def configuration_loaded(self, wall_time: float) -> None:
        self.reload_successful.set(1)
        self.reload_success_time.set(wall_time)

    def configuration_failed(self) -> None:
        self.reload_successful.set(0)

    def start_at_zero(self, subaccount: str) -> None:
        """Create the subaccount's counters at 0, so increase() sees their first failure."""
        self.api.start(subaccount)

    def exposition(self, openmetrics: bool = False) -> bytes:
        """The registry's families, then the API series: text 0.0.4 without `_created`
        series, or OpenMetrics without its closing `# EOF` (the inventories follow)."""
        if openmetrics:
            text = openmetrics_latest(self.registry)
            if text.endswith(OPENMETRICS_EOF):
                text = text[: -len(OPENMETRICS_EOF)]
            return text + self.api.render(openmetrics=True).encode()
        return generate_latest(WithoutCreated(self.registry)) + self.api.render().encode()

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
