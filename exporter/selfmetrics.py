"""The exporter's own metrics, served on /metrics only (never on /probe).

These are direct instrumentation through prometheus_client: counters and a histogram, unlike
the target series, which are rebuilt from each API response. A configured subaccount's series
live as long as the process; a probed one's are dropped when its scraper leaves the bounded set
of probed scrapers (`TargetSeries.drop`), so /metrics cannot grow with every ID ever probed.
"""

from __future__ import annotations

import threading

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

from exporter import __version__
from exporter.errors import REASONS


class SelfMetrics:
    """API call counters, failures by reason, latency and build info, on their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.api_requests = Counter(
            "eightbyeight_api_requests",
            "Requests made to the 8x8 Virtual Numbers API (one per fetch; retries included "
            "in that one).",
            ["subaccount"],
            registry=self.registry,
        )
        self.api_failures = Counter(
            "eightbyeight_api_request_failures",
            "Fetches from the 8x8 API that failed, by reason (unauthorized, forbidden, "
            "not_found, bad_request, rate_limited, server_error, client_error, timeout, "
            "connection_error, invalid_response).",
            ["subaccount", "reason"],
            registry=self.registry,
        )
        self.api_duration = Histogram(
            "eightbyeight_api_request_duration_seconds",
            "Seconds taken to fetch a subaccount's numbers from the 8x8 API, body included.",
            ["subaccount"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=self.registry,
        )
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
        self.api_requests.labels(subaccount)
        self.api_duration.labels(subaccount)
        for reason in REASONS:
            self.api_failures.labels(subaccount, reason)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def target(self, subaccount: str) -> TargetSeries:
        """The series of one subaccount, through which its scraper records its fetches."""
        return TargetSeries(self, subaccount)


class TargetSeries:
    """One subaccount's request, failure and latency series, until they are dropped.

    After `drop()` nothing is recorded any more: a fetch still in flight when its scraper was
    evicted would otherwise bring the series back, and nothing would remove them again.
    """

    def __init__(self, metrics: SelfMetrics, subaccount: str) -> None:
        self._metrics = metrics
        self._subaccount = subaccount
        self._lock = threading.Lock()
        self._dropped = False

    def request(self) -> None:
        with self._lock:
            if not self._dropped:
                self._metrics.api_requests.labels(self._subaccount).inc()

    def duration(self, seconds: float) -> None:
        with self._lock:
            if not self._dropped:
                self._metrics.api_duration.labels(self._subaccount).observe(seconds)

    def failure(self, reason: str) -> None:
        with self._lock:
            if not self._dropped:
                self._metrics.api_failures.labels(self._subaccount, reason).inc()

    def drop(self) -> None:
        """Remove the series from /metrics and record nothing from now on."""
        metrics, subaccount = self._metrics, self._subaccount
        with self._lock:
            self._dropped = True
            metrics.api_requests.remove(subaccount)
            metrics.api_duration.remove(subaccount)
            for reason in REASONS:
                metrics.api_failures.remove(subaccount, reason)
