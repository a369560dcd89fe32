"""prometheus_client instruments and families made from catalogue entries.

Whoever emits a family through prometheus_client builds it here from its `Family`, so its name,
help, label names and buckets are written once, in `exporter.metrics.catalogue`. Label names
are in the catalogue's (sorted) order: call `.labels()` with keywords.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    SummaryMetricFamily,
)

from exporter.metrics.catalogue import Family


def _expect(family: Family, *kinds: str) -> None:
    if family.kind not in kinds:
        raise ValueError(f"{family.name} is a {family.kind}, not a {' or '.join(kinds)}")


def counter(family: Family, registry: CollectorRegistry) -> Counter:
    """A counter (its samples end in _total and have _created) for a catalogue counter."""
    _expect(family, "counter")
    return Counter(family.name, family.help, family.labels, registry=registry)


def histogram(family: Family, registry: CollectorRegistry) -> Histogram:
    _expect(family, "histogram")
    return Histogram(
        family.name, family.help, family.labels, buckets=family.buckets, registry=registry
    )


def gauge(family: Family, registry: CollectorRegistry) -> Gauge:
    """A gauge for a catalogue gauge or info family (the text format prints both as gauge)."""
    _expect(family, "gauge", "info")
    return Gauge(family.name, family.help, family.labels, registry=registry)


def gauge_family(family: Family) -> GaugeMetricFamily:
    """An empty family for a custom collector; `add_metric` takes label values in its order."""
    _expect(family, "gauge", "info")
    return GaugeMetricFamily(family.name, family.help, labels=list(family.labels))


def counter_family(family: Family) -> CounterMetricFamily:
    _expect(family, "counter")
    return CounterMetricFamily(family.name, family.help, labels=list(family.labels))


def summary_family(family: Family) -> SummaryMetricFamily:
    _expect(family, "summary")
    return SummaryMetricFamily(family.name, family.help, labels=list(family.labels))


def header(family: Family, suffix: str = "", kind: str | None = None) -> str:
    """The `# HELP` and `# TYPE` lines of a sample name, as prometheus_client prints them."""
    help_text = family.help.replace("\\", r"\\").replace("\n", r"\n")
    name = family.name + suffix
    return f"# HELP {name} {help_text}\n# TYPE {name} {kind or family.type}\n"
