"""The mixin built multi-cluster, proved on a real Prometheus.

Two demo exporters (`--demo`), one per cluster, each scraped under two job names: four targets,
told apart only by `cluster` (a static target label, as external labels or relabelling give it
where one Prometheus, Thanos or Mimir holds several clusters) and `job`. Every target's
`instance` is relabelled to the same value, as when each cluster runs the same Service, so that
only the cluster label keeps the series apart. The mixin is built with a job selector naming
these jobs (not the default names), the cluster variable shown, and every `for:` at 1s.

- Every dashboard query (panels, annotations, variables), with the variables substituted for
  one cluster and one job, returns data, and every series it returns that carries a `cluster`
  or `job` label carries the chosen one; the inventory stats equal what the one exporter of
  that cluster serves (not the sum of two clusters or two jobs).
- The alerts fire in both clusters, each with its own cluster label, the same alerts in each
  (the two demos serve the same data), and every rule evaluates without error (a join that
  dropped the cluster would fail with many-to-many matching on these targets).
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Any

import pytest
import requests

from mixin import build
from tests.stack import test_dashboards as dashboards
from tests.support.exporters import exporter_process, parse_samples
from tests.support.processes import find_tool, wait_until
from tests.support.stack import prometheus_with_config, query, rule_errors

pytestmark = pytest.mark.e2e

CLUSTERS = ("a", "b")
JOBS = ("numbers-east", "numbers-west")
INSTANCE = "exporter:9881"
INTERVAL = "2s"
# Four scrapes of two exporters every 2 s on a shared machine: the cache answers the second
# job's scrape from the first's read, so that no scrape waits on the simulator.
DEMO = ["--demo", "--cache.ttl", "5s"]
OVERRIDES: dict[str, Any] = {
    "eightbyeightSelector": f'job=~"{"|".join(JOBS)}"',
    "showMultiCluster": True,
    "forDurations": dict.fromkeys(build.evaluate()["config"]["forDurations"], "1s"),
}
# Panels that add up the inventory of the chosen targets, and the exporter's own series whose
# sum over one exporter they must equal.
INVENTORY_STATS = {
    "Numbers": "eightbyeight_virtual_numbers_by_status",
    "Unhealthy": "eightbyeight_virtual_numbers_unhealthy",
    "Expiring": "eightbyeight_virtual_numbers_expiring",
    "Health unknown": "eightbyeight_virtual_numbers_health_unknown",
}


def built_mixin(tmp_path: Path) -> tuple[list[Path], dict[str, dict[str, Any]]]:
    """The rule files (written to tmp_path) and the dashboards of the multi-cluster build."""
    files = build.render(OVERRIDES)
    rule_files = []
    for path, text in files.items():
        if path.parent == build.RULES:
            copy = tmp_path / path.name
            copy.write_text(text, encoding="utf-8")
            rule_files.append(copy)
    built = build.evaluate(OVERRIDES)
    return rule_files, built["dashboards"]


def prometheus_config(exporters: dict[str, str], rule_files: list[Path]) -> dict[str, Any]:
    return {
        "global": {"scrape_interval": INTERVAL, "evaluation_interval": INTERVAL},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [
            {
                "job_name": job,
                "scrape_timeout": INTERVAL,
                "static_configs": [
                    {"targets": [url.removeprefix("http://")], "labels": {"cluster": cluster}}
                    for cluster, url in exporters.items()
                ],
                "relabel_configs": [{"target_label": "instance", "replacement": INSTANCE}],
            }
            for job in JOBS
        ],
    }


def for_one(expr: str, dashboard: dict[str, Any], cluster: str, job: str) -> str:
    """The query as Grafana sends it with this cluster and job chosen, everything else "All"."""
    chosen = expr.replace("$cluster", cluster).replace("${cluster}", cluster)
    chosen = chosen.replace("$job", job).replace("${job}", job)
    return dashboards.substitute_variables(chosen, dashboard)


def every_query(built: dict[str, dict[str, Any]]) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(dashboard, where, query as written, dashboard) of every panel, annotation and variable."""
    found = []
    for name, dashboard in built.items():
        for where, expr in dashboards.raw_exprs(dashboard):
            selector = re.fullmatch(r"label_values\((.+), \w+\)", expr)
            found.append((name, where, selector.group(1) if selector else expr, dashboard))
    return found


class Evidence:
    """What the dashboard queries returned over the polls: which (query, cluster, job) ever
    had data, and every series that ever came back from another cluster or job. A poll can
    catch a target between scrapes of a loaded machine (a missed scrape leaves a gap), so data
    is needed once; mixing is never allowed."""

    def __init__(self, built: dict[str, dict[str, Any]]) -> None:
        self.queries = every_query(built)
        self.with_data: set[tuple[str, str, str, str, int]] = set()
        self.mixed: list[str] = []
        self.errors: list[str] = []

    def missing(self) -> list[str]:
        return [
            f"{name} / {where}: no data for cluster {cluster}, job {job}"
            for cluster in CLUSTERS
            for job in JOBS
            for index, (name, where, _expr, _dashboard) in enumerate(self.queries)
            if (name, where, cluster, job, index) not in self.with_data
            and where not in dashboards.NOT_IN_THE_DEMO
        ]

    def poll(self, prom_url: str) -> bool:
        for cluster in CLUSTERS:
            for job in JOBS:
                self._poll_one(prom_url, cluster, job)
        return not self.missing()

    def _poll_one(self, prom_url: str, cluster: str, job: str) -> None:
        for index, (name, where, expr, dashboard) in enumerate(self.queries):
            promql = for_one(expr, dashboard, cluster, job)
            try:
                result = query(prom_url, promql)
            except AssertionError as exc:
                self.errors.append(f"{name} / {where}: {exc}")
                continue
            if result:
                self.with_data.add((name, where, cluster, job, index))
            # The cluster variable lists every cluster, the job variable every job of one.
            chosen = {
                "variable cluster": {},
                "variable job": {"cluster": cluster},
            }.get(where, {"cluster": cluster, "job": job})
            for series in result:
                labels = series["metric"]
                if any(labels.get(label, value) != value for label, value in chosen.items()):
                    self.mixed.append(f"{name} / {where}: mixed in {labels} ({promql})")


def exporter_sum(exporter_url: str, metric: str) -> float:
    samples = parse_samples(requests.get(f"{exporter_url}/metrics", timeout=30).text)
    return sum(value for (name, _labels), value in samples.items() if name == metric)


def stat_value(prom_url: str, dashboard: dict[str, Any], title: str, cluster: str, job: str):
    [panel] = [p for p in dashboards.iter_panels(dashboard) if p["title"] == title]
    result = query(prom_url, for_one(panel["targets"][0]["expr"], dashboard, cluster, job))
    return [float(series["value"][1]) for series in result]


def firing_by_cluster(prom_url: str) -> dict[str, set[tuple[tuple[str, str], ...]]]:
    """Firing alerts' labels (less cluster), by cluster."""
    found: dict[str, set[tuple[tuple[str, str], ...]]] = {}
    for series in query(prom_url, 'ALERTS{alertstate="firing"}'):
        labels = dict(series["metric"])
        cluster = labels.pop("cluster", "(none)")
        found.setdefault(cluster, set()).add(tuple(sorted(labels.items())))
    return found


def test_two_clusters_and_two_jobs_stay_apart(tmp_path):
    find_tool("prometheus")
    rule_files, built = built_mixin(tmp_path)
    with contextlib.ExitStack() as stack:
        exporters = {
            cluster: stack.enter_context(
                exporter_process(DEMO, {}, tmp_path / f"exporter-{cluster}.log")
            )[0]
            for cluster in CLUSTERS
        }
        prom_url = stack.enter_context(
            prometheus_with_config(tmp_path, prometheus_config(exporters, rule_files))
        )

        # Every query, for every cluster and job: data, and only that cluster's and job's.
        # Rates need two scrapes, pushed call data the demo's first callbacks, alerts a rule
        # evaluation past `for`: poll until every query has had data.
        evidence = Evidence(built)
        with contextlib.suppress(AssertionError):
            wait_until(lambda: evidence.poll(prom_url), timeout=180, interval=2, what="data")
        assert evidence.errors == [], "\n".join(evidence.errors[:20])
        assert evidence.mixed == [], "\n".join(evidence.mixed[:20])
        assert evidence.missing() == [], "\n".join(evidence.missing())

        # The inventory stats are one exporter's numbers, not two clusters' or two jobs'
        # (which would be twice as many). Each must match once, read at the same moment as the
        # exporter's own figure: a scrape missed under load leaves a poll without data.
        overview = built["eightbyeight-overview.json"]
        matched: set[tuple[str, str, str]] = set()
        seen: list[str] = []

        def stats_match() -> bool:
            for title, metric in INVENTORY_STATS.items():
                for cluster, url in exporters.items():
                    expected = exporter_sum(url, metric)
                    for job in JOBS:
                        got = stat_value(prom_url, overview, title, cluster, job)
                        seen.append(f"{title} for {cluster}/{job}: {got}, exporter {expected}")
                        if expected > 0 and got == [expected]:
                            matched.add((title, cluster, job))
            return len(matched) == len(INVENTORY_STATS) * len(CLUSTERS) * len(JOBS)

        with contextlib.suppress(AssertionError):
            wait_until(stats_match, timeout=90, interval=2, what="inventory stats")
        assert len(matched) == len(INVENTORY_STATS) * len(CLUSTERS) * len(JOBS), "\n".join(
            seen[-32:]
        )

        # Alerts: every one carries its cluster; both clusters fire the same alerts (same demo
        # data), for both jobs; no rule fails (a join without the cluster would, here). With
        # every `for:` at 1 s, a read that fails under load fires an alert in one cluster for a
        # moment: wait until the two clusters agree.
        last: dict[str, dict[str, set[tuple[tuple[str, str], ...]]]] = {}

        def alerts_agree() -> bool:
            firing = last["firing"] = firing_by_cluster(prom_url)
            jobs = {dict(labels)["job"] for labels in firing.get("a", set())}
            return set(firing) == set(CLUSTERS) and firing["a"] == firing["b"] and jobs == set(JOBS)

        agreed = False
        with contextlib.suppress(AssertionError):
            agreed = bool(wait_until(alerts_agree, timeout=90, interval=2, what="same alerts"))
        assert agreed, last.get("firing")
        assert all(last["firing"][cluster] for cluster in CLUSTERS)
        assert rule_errors(prom_url) == []
