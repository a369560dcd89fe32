"""Every dashboard query, evaluated on a real Prometheus that scraped the demo exporter.

Grafana cannot run here, so this is the proof that the panels show data: each panel,
annotation and variable query (template variables on "All") must run without error and return
at least one series. Alerts are evaluated from the shipped rules with `for:` shortened, so the
alert panels have firing alerts to show.
"""

import contextlib

import pytest

from tests import test_dashboards as dashboards
from tests.harness import (
    exporter_process,
    fast_rules,
    find_tool,
    prometheus_process,
    query,
    wait_until,
)

pytestmark = pytest.mark.e2e


def every_query():
    return [
        (name, where, expr)
        for name, dashboard in dashboards.load_dashboards().items()
        for where, expr in dashboards.all_queries(dashboard)
    ]


def test_there_are_queries_to_check():
    assert len(every_query()) >= 20


def test_every_dashboard_query_returns_data_from_the_demo(tmp_path):
    find_tool("prometheus")
    with (
        exporter_process(["--demo"], {}, tmp_path / "exporter.log") as (exporter_url, _),
        prometheus_process(tmp_path, exporter_url, fast_rules(tmp_path, "1s")) as prom_url,
    ):
        queries = every_query()

        def failures():
            failed = []
            for name, where, expr in queries:
                try:
                    if not query(prom_url, expr):
                        failed.append(f"{name} / {where}: no data: {expr}")
                except AssertionError as exc:
                    failed.append(f"{name} / {where}: {exc}")
            return failed

        # Rates need two scrapes and alerts an evaluation past their `for`: poll until all
        # queries have data, then report whatever still has none.
        with contextlib.suppress(AssertionError):
            wait_until(lambda: not failures(), timeout=90, interval=2, what="every query")
        assert failures() == []
