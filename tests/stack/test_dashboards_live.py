"""Every dashboard query, evaluated on a real Prometheus that scraped the demo exporter.

Grafana cannot run here, so this is the proof that the panels show data: each panel,
annotation and variable query (template variables on "All") must run without error and return
at least one series. Alerts are evaluated from the shipped rules with `for:` shortened, so the
alert panels have firing alerts to show.
"""

import contextlib

import pytest

from tests.stack import test_dashboards as dashboards
from tests.support.exporters import exporter_process
from tests.support.processes import find_tool, wait_until
from tests.support.stack import fast_rules, prometheus_process, query

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
        answered: set[int] = set()
        errors: list[str] = []

        def all_answered() -> bool:
            for index, (name, where, expr) in enumerate(queries):
                if index in answered:
                    continue
                try:
                    if query(prom_url, expr):
                        answered.add(index)
                except AssertionError as exc:
                    errors.append(f"{name} / {where}: {exc}")
            return len(answered) == len(queries)

        # Rates need two scrapes and alerts an evaluation past their `for`: poll until every
        # query has returned data once (on a loaded machine a 1 s scrape can miss, leaving a
        # gap in one series for one poll), then report whatever never had any.
        with contextlib.suppress(AssertionError):
            wait_until(all_answered, timeout=90, interval=2, what="every query")
        assert errors == []
        never = [
            f"{name} / {where}: no data: {expr}"
            for index, (name, where, expr) in enumerate(queries)
            if index not in answered and where not in dashboards.NOT_IN_THE_DEMO
        ]
        assert never == []
