"""docs/metrics.md is generated from the metric catalogue and kept current; the worst-case
series counts it gives are what the exporter really makes."""

from __future__ import annotations

import subprocess
import sys

from exporter.metrics import catalogue as c
from exporter.metrics.reference import render
from exporter.metrics.selfmetrics import SelfMetrics
from exporter.pushing.state import WebhookState
from tests.support.exporters import parse_samples
from tests.support.processes import REPO

PAGE = REPO / "docs" / "metrics.md"
COMMAND = "python -m exporter.metrics.reference > docs/metrics.md"


def test_the_reference_page_is_current():
    assert PAGE.read_text(encoding="utf-8") == render(), f"stale: run `{COMMAND}`"


def test_the_page_names_every_family_and_label():
    page = render()
    for family in c.FAMILIES:
        for name in family.sample_names():
            if not name.endswith("_created"):
                assert f"`{name}`" in page, name
        assert family.help in page
    for label in {label for family in c.FAMILIES for label in family.labels}:
        assert f"| `{label}` |" in page, label


def test_every_label_is_described_once():
    used = {label for family in c.FAMILIES for label in family.labels}
    assert used == set(c.LABELS)


def test_the_generator_imports_nothing_above_the_metrics_layer():
    code = (
        "import sys, exporter.metrics.reference\n"
        "print(' '.join(m for m in sys.modules if m.startswith('exporter')))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    layers = {module.split(".")[1] for module in loaded if "." in module}
    assert layers <= {"common", "metrics"}, loaded


def series_of(text: str, subaccount: str) -> dict[str, int]:
    """Series per family of one subaccount, by catalogue family."""
    family_of = {name: family.name for family in c.FAMILIES for name in family.sample_names()}
    counts: dict[str, int] = {}
    for name, labels in parse_samples(text):
        if name in family_of and ("subaccount", subaccount) in labels:
            counts[family_of[name]] = counts.get(family_of[name], 0) + 1
    return counts


def test_a_configured_subaccounts_api_series_reach_their_worst_case_at_start():
    metrics = SelfMetrics(clock=lambda: 1.0)
    metrics.start_at_zero("acme-prod")
    counts = series_of(metrics.exposition(openmetrics=True).decode(), "acme-prod")
    for family in (c.API_REQUESTS, c.API_REQUEST_FAILURES, c.API_REQUEST_DURATION_SECONDS):
        assert counts[family.name] == c.worst_case_series(family)[0], family.name


def test_an_allowed_subaccounts_event_counters_reach_their_worst_case_but_other():
    state = WebhookState(allowed={"acme-prod"}, clock=lambda: 1.0)
    counts = series_of(state.exposition().decode(), "acme-prod")
    assert counts[c.WEBHOOK_EVENTS.name] == c.worst_case_series(c.WEBHOOK_EVENTS)[0]
    # "other" appears only once a VNU has an unknown updateEventType.
    worst = c.worst_case_series(c.VNU_EVENTS)[0]
    assert counts[c.VNU_EVENTS.name] == worst - c.VNU_EVENTS.samples_per_series()
