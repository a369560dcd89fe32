"""The exporter's own API series, rendered by hand, against prometheus_client.

`ApiSeries` replaced prometheus_client Counters and a Histogram because `generate_latest` cost a
third of a large scrape's CPU. These tests prove the replacement equivalent: the same operations
on both give the same families with the same lines (byte-equal text when subaccounts are added
in one order and never removed, as configured ones are; in general prometheus_client orders a
family's lines by when each labelled child was made, `ApiSeries` by subaccount), and its own
`collect()` renders through `generate_latest` to the same bytes. Text 0.0.4 is compared without
the `_created` gauges prometheus_client adds there (the exporter leaves them out); OpenMetrics,
with its `_created` samples, against prometheus_client's OpenMetrics `generate_latest`.
"""

from __future__ import annotations

import random

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest

from exporter.common.errors import REASONS
from exporter.metrics.catalogue import (
    API_REQUEST_DURATION_SECONDS,
    API_REQUEST_FAILURES,
    API_REQUESTS,
)
from exporter.metrics.selfmetrics import ApiSeries, SelfMetrics, WithoutCreated

# The reference is written out here, apart from the catalogue's builders, so that a change to
# how those build instruments cannot hide a difference.
REQUESTS, REQUESTS_HELP = API_REQUESTS.name, API_REQUESTS.help
FAILURES, FAILURES_HELP = API_REQUEST_FAILURES.name, API_REQUEST_FAILURES.help
DURATION, DURATION_HELP = API_REQUEST_DURATION_SECONDS.name, API_REQUEST_DURATION_SECONDS.help
BUCKETS = API_REQUEST_DURATION_SECONDS.buckets

NOW = 1_764_633_600.25


class Reference:
    """The same series through prometheus_client, as the exporter kept them before."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(REQUESTS, REQUESTS_HELP, ["subaccount"], registry=self.registry)
        self.failures = Counter(
            FAILURES, FAILURES_HELP, ["subaccount", "reason"], registry=self.registry
        )
        self.duration = Histogram(
            DURATION, DURATION_HELP, ["subaccount"], buckets=BUCKETS, registry=self.registry
        )

    def start(self, sub: str) -> None:
        self.requests.labels(sub)
        self.duration.labels(sub)
        for reason in REASONS:
            self.failures.labels(sub, reason)

    def request(self, sub: str) -> None:
        self.requests.labels(sub).inc()

    def failure(self, sub: str, reason: str) -> None:
        self.failures.labels(sub, reason).inc()

    def observe(self, sub: str, seconds: float) -> None:
        self.duration.labels(sub).observe(seconds)

    def remove(self, sub: str) -> None:
        for metric in (self.requests, self.duration):
            if (sub,) in metric._metrics:
                metric.remove(sub)
        for reason in REASONS:
            if (sub, reason) in self.failures._metrics:
                self.failures.remove(sub, reason)


@pytest.fixture
def frozen(monkeypatch):
    monkeypatch.setattr("prometheus_client.metrics.time.time", lambda: NOW)


@pytest.mark.parametrize("seed", range(20))
def test_any_sequence_renders_byte_equal_to_prometheus_client(frozen, seed):
    rng = random.Random(seed)
    mine, theirs = ApiSeries(clock=lambda: NOW), Reference()
    subs = ["acme-prod", "acme-dev", 'we"ird\\one', "probe&1", "x.y-z_0"]
    for _ in range(rng.randrange(1, 80)):
        sub, op = rng.choice(subs), rng.randrange(5)
        if op == 0:
            mine.start(sub), theirs.start(sub)
        elif op == 1:
            mine.request(sub), theirs.request(sub)
        elif op == 2:
            reason = rng.choice(REASONS)
            mine.failure(sub, reason), theirs.failure(sub, reason)
        elif op == 3:
            seconds = rng.choice([0.0, 0.05, 0.051, 1.0, 29.9, 30.0, 31.0, rng.random() * 40])
            mine.duration(sub, seconds), theirs.observe(sub, seconds)
        else:
            mine.remove(sub), theirs.remove(sub)
        assert same_exposition(mine.render(), text_of(theirs.registry))
        om = mine.render(openmetrics=True) + "# EOF\n"
        assert same_exposition(om, openmetrics_latest(theirs.registry).decode())


def text_of(registry: CollectorRegistry) -> str:
    """prometheus_client's text 0.0.4, less the `_created` gauges the exporter leaves out."""
    return generate_latest(WithoutCreated(registry)).decode()


def same_exposition(mine: str, theirs: str) -> bool:
    """The same families in the same order, each with the same lines in any order."""
    return _families(mine) == _families(theirs)


def _families(text: str) -> list[tuple[str, list[str]]]:
    out: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("# HELP"):
            out.append((line, []))
        else:
            out[-1][1].append(line)
    return [(help_line, sorted(lines)) for help_line, lines in out]


def test_configured_subaccounts_render_byte_equal_to_prometheus_client(frozen):
    mine, theirs = ApiSeries(clock=lambda: NOW), Reference()
    for sub in ("acme-prod", "acme-dev", "acme-eu"):
        mine.start(sub), theirs.start(sub)
    for sub, seconds in (("acme-dev", 0.2), ("acme-prod", 7.5), ("acme-dev", 40.0)):
        mine.request(sub), theirs.request(sub)
        mine.duration(sub, seconds), theirs.observe(sub, seconds)
    mine.failure("acme-eu", "timeout"), theirs.failure("acme-eu", "timeout")
    assert mine.render() == text_of(theirs.registry)
    assert mine.render(openmetrics=True) + "# EOF\n" == openmetrics_latest(theirs.registry).decode()


def test_the_comparison_sees_a_changed_value(frozen):
    mine, theirs = ApiSeries(clock=lambda: NOW), Reference()
    mine.start("acme-prod"), theirs.start("acme-prod")
    mine.request("acme-prod")
    assert not same_exposition(mine.render(), text_of(theirs.registry))


def test_collect_gives_the_families_that_render_prints(frozen):
    series = ApiSeries(clock=lambda: NOW)
    series.start("acme-prod")
    series.request("acme-prod")
    series.duration("acme-prod", 0.3)
    series.failure("acme-probed", "timeout")
    registry = CollectorRegistry(auto_describe=True)
    registry.register(series)
    assert text_of(registry) == series.render()
    assert openmetrics_latest(registry).decode() == series.render(openmetrics=True) + "# EOF\n"
    assert "acme-probed" in series.render()


def test_the_failure_lines_are_kept_until_the_next_failure():
    series = ApiSeries(clock=lambda: NOW)
    series.start("acme-prod")
    before = series.render()
    series.request("acme-prod")
    assert series.render() != before
    series.failure("acme-prod", "timeout")
    assert 'reason="timeout",subaccount="acme-prod"} 1.0' in series.render()


def test_self_metrics_serve_the_api_series_after_the_registry():
    metrics = SelfMetrics()
    metrics.start_at_zero("acme-prod")
    metrics.target("acme-prod").request()
    text = metrics.exposition().decode()
    assert text.index("eightbyeight_exporter_build_info") < text.index(REQUESTS)
    assert metrics.sample_value(f"{REQUESTS}_total", {"subaccount": "acme-prod"}) == 1.0
    assert metrics.sample_value("eightbyeight_config_last_reload_successful") is not None
