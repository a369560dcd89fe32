"""The mixin's alerts fire per cluster on a real Prometheus and reach a real Alertmanager.

One simulator and one exporter (a process) per cluster, scraped by ONE Prometheus as clusters
`a` and `b` (a static target label) under two job names each: four targets, `instance`
relabelled to one value, so that only `cluster` tells the two exporters apart. Both simulators
serve the same inventory (same seed and subaccounts, a clock frozen at the start), so every
difference between the clusters is a fault the test set, on the same subaccount names:

    subaccount  cluster a                       cluster b
    acme-prod   one number forced unhealthy     the API answers 401
                -> EightByEightNumberUnhealthy  -> EightByEightApiAuthenticationFailed
    acme-ops    the API answers 503             the API answers 401
                -> EightByEightApiDown          -> EightByEightApiAuthenticationFailed
    acme-lab    one number forced Expiring      the same
                -> EightByEightNumbersExpiring  -> EightByEightNumbersExpiring

A rule that matched or aggregated without the cluster label would mix them: a's outage of
acme-ops would read as b's authentication failure (AuthenticationFailed in a, no ApiDown), and
an Alertmanager inhibition without it would let b's failure on acme-prod hold back a's
unhealthy number. The rules are built from the mixin (mixin/build.py, gojsonnet) with a job
selector naming these jobs and `for:` shortened; Alertmanager runs the shipped configuration
(prometheus/alertmanager.yml) with its receivers sent to this test's webhook. Each alert fires
exactly once per (cluster, job) it should, and nowhere else: in Prometheus, in Alertmanager
(active, not inhibited) and at the webhook (at its severity's receiver), each time with its
`cluster` and `job`; no rule evaluates with an error. acme-lab, the same in both clusters, fires the same alerts
in each.

With the cluster label off (one exporter with cluster a's faults, no cluster label, the
mixin's showMultiCluster off), the same rules fire, once per job, with no `cluster` label in
Prometheus, in Alertmanager or at the webhook.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from exporter.simulator import Simulator
from mixin import build
from tests.support.exporters import exporter_process
from tests.support.processes import find_tool, wait_until
from tests.support.stack import (
    WebhookReceiver,
    alertmanager_alerts,
    alertmanager_config,
    alertmanager_process,
    last_rule_evaluation,
    prometheus_with_config,
    query,
    rule_errors,
)

pytestmark = pytest.mark.e2e

KEY = "clusters-alerting-key-27182"
PROD, OPS, LAB = "acme-prod", "acme-ops", "acme-lab"
# Fewer than 20 numbers: the simulator's guaranteed roles (an unhealthy number that moves to
# another every 30 min, ...) stay out; with the clock frozen, nothing changes but the faults.
NUMBERS = 8
SEED = 7
JOBS = ("numbers-east", "numbers-west")
INSTANCE = "exporter:9881"
INTERVAL_SECONDS = 2
GROUP_WAIT_SECONDS = 1  # alertmanager_config's group_wait

UNHEALTHY = "EightByEightNumberUnhealthy"
AUTH_FAILED = "EightByEightApiAuthenticationFailed"
API_DOWN = "EightByEightApiDown"
EXPIRING = "EightByEightNumbersExpiring"
RECEIVERS = {
    UNHEALTHY: "/team-tickets",
    AUTH_FAILED: "/oncall-pager",
    API_DOWN: "/team-tickets",
    EXPIRING: "/team-tickets",
}

# An alert: its name and the labels that say what it is about.
Alert = tuple[str, tuple[tuple[str, str], ...]]
# Where alerts are: (cluster, job) pairs; cluster None where there is no cluster label.
Places = set[tuple[str | None, str]]


def mixin_overrides(multi_cluster: bool) -> dict[str, Any]:
    """The test's _config: these jobs, the multi-cluster switch, every `for:` at 1 s but
    ExporterDown's.

    ExporterDown keeps its own duration: on a busy machine one scrape may time out, and an
    ExporterDown firing for it would inhibit the alerts under test in Alertmanager.
    """
    durations = build.evaluate()["config"]["forDurations"]
    fast = {name: "1s" for name in durations if name != "EightByEightExporterDown"}
    return {
        "eightbyeightSelector": f'job=~"{"|".join(JOBS)}"',
        "showMultiCluster": multi_cluster,
        "forDurations": {**durations, **fast},
    }


def mixin_rules(multi_cluster: bool) -> dict[str, str]:
    """The rule files the mixin builds with the test's _config: file name -> text."""
    built = build.render(mixin_overrides(multi_cluster))
    return {path.name: text for path, text in built.items() if path.parent == build.RULES}


def written(directory: Path, files: dict[str, str]) -> list[Path]:
    for name, text in files.items():
        (directory / name).write_text(text, encoding="utf-8")
    return [directory / name for name in files]


def prometheus_config(
    exporters: dict[str | None, str], rule_files: list[Path], alertmanager_url: str
) -> dict[str, Any]:
    """Every exporter under every job; `cluster` from the key unless it is None."""
    interval = f"{INTERVAL_SECONDS}s"
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(path) for path in rule_files],
        "alerting": {
            "alertmanagers": [
                {"static_configs": [{"targets": [alertmanager_url.removeprefix("http://")]}]}
            ]
        },
        "scrape_configs": [
            {
                "job_name": job,
                "scrape_timeout": interval,
                "static_configs": [
                    {
                        "targets": [url.removeprefix("http://")],
                        "labels": {} if cluster is None else {"cluster": cluster},
                    }
                    for cluster, url in exporters.items()
                ],
                "relabel_configs": [{"target_label": "instance", "replacement": INSTANCE}],
            }
            for job in JOBS
        ],
    }


@dataclass(frozen=True)
class Inventory:
    """The numbers the faults are set on, from the simulators' (identical) data."""

    victim: str  # a healthy acme-prod number, forced unhealthy
    expiring: str  # an Active acme-lab number, forced Expiring
    expiring_group: tuple[tuple[str, str], ...]  # its country and number_type labels

    @classmethod
    def of(cls, sim: Simulator) -> Inventory:
        healthy = [
            n["msisdn"]
            for n in sim.snapshot(PROD)["numbers"]
            if n.get("numberHealthCheckEnabled") and (n.get("numberHealth") or {}).get("isHealthy")
        ]
        active = [n for n in sim.snapshot(LAB)["numbers"] if n["operationalStatus"] == "Active"]
        assert healthy, "no healthy acme-prod number: choose another seed"
        assert active, "no Active acme-lab number: choose another seed"
        chosen = active[0]
        group = (("country", chosen["countryCode"]), ("number_type", chosen["numberType"]))
        return cls(healthy[0], chosen["msisdn"], group)


def faults(cluster: str | None, inventory: Inventory) -> dict[str, Any]:
    """Cluster b's API rejects the key; the others (a, or no cluster) have an outage on
    acme-ops and an unhealthy number on acme-prod. acme-lab is the same everywhere."""
    if cluster == "b":
        prod, ops = {"status": 401}, {"status": 401}
    else:
        prod, ops = {"unhealthy": [inventory.victim]}, {"status": 503}
    lab = {"expiring": [inventory.expiring]}
    return {"subaccounts": {PROD: prod, OPS: ops, LAB: lab}}


def expected_alerts(clusters: tuple[str | None, ...], inventory: Inventory) -> dict[Alert, Places]:
    """Where each alert under test must fire (and nowhere else): an empty set, nowhere."""
    rejected = {c for c in clusters if c == "b"}
    others = {c for c in clusters if c != "b"}
    in_clusters = {
        (UNHEALTHY, (("msisdn", inventory.victim), ("subaccount", PROD))): others,
        (AUTH_FAILED, (("subaccount", PROD),)): rejected,
        (AUTH_FAILED, (("subaccount", OPS),)): rejected,
        (API_DOWN, (("subaccount", OPS),)): others,
        (API_DOWN, (("subaccount", PROD),)): set(),
        (EXPIRING, (*inventory.expiring_group, ("subaccount", LAB))): set(clusters),
    }
    return {
        alert: {(c, job) for c in where for job in JOBS} for alert, where in in_clusters.items()
    }


def alert_of(labels: dict[str, str], expected: dict[Alert, Places]) -> Alert | None:
    """Which alert under test these labels are, if any."""
    for name, about in expected:
        if labels.get("alertname") == name and all(labels.get(k) == v for k, v in about):
            return (name, about)
    return None


def places(found: list[dict[str, str]], expected: dict[Alert, Places]) -> dict[Alert, Places]:
    """The (cluster, job) of every alert under test among the label sets found."""
    out: dict[Alert, Places] = {alert: set() for alert in expected}
    for labels in found:
        alert = alert_of(labels, expected)
        if alert is not None:
            out[alert].add((labels.get("cluster"), labels["job"]))
    return out


def twice(found: list[dict[str, str]], expected: dict[Alert, Places]) -> dict[Alert, Places]:
    """The (cluster, job) where an alert under test is more than one series."""
    out: dict[Alert, Places] = {alert: set() for alert in expected}
    counted: dict[tuple[Alert, str | None, str], int] = {}
    for labels in found:
        alert = alert_of(labels, expected)
        if alert is not None:
            key = (alert, labels.get("cluster"), labels["job"])
            counted[key] = counted.get(key, 0) + 1
            if counted[key] > 1:
                out[alert].add(key[1:])
    return out


def in_prometheus(prom_url: str) -> list[dict[str, str]]:
    """Labels of every alert that fired in the last few evaluations: one missed scrape on a busy
    machine resolves an alert on `up` for an evaluation or two, and must not hide it (nor a
    wrong one). Pending alerts are left out: before the recording rules have a value, ApiDown
    may be pending where the key is rejected, and `for:` is what keeps that from firing."""
    recent = f"{5 * INTERVAL_SECONDS}s"
    firing = f'last_over_time(ALERTS{{alertstate="firing"}}[{recent}])'
    return [series["metric"] for series in query(prom_url, firing)]


def in_alertmanager(am_url: str, expected: dict[Alert, Places], state: str) -> list[dict[str, str]]:
    """Labels of the alerts under test that Alertmanager holds in `state`: "active", or
    "suppressed" (inhibited or silenced)."""
    found = []
    for name in sorted({name for name, _about in expected}):
        for alert in alertmanager_alerts(am_url, name):
            if alert["status"]["state"] == state and alert_of(alert["labels"], expected):
                found.append(alert["labels"])
    return found


def delivered(receiver: WebhookReceiver, expected: dict[Alert, Places]) -> list[dict[str, str]]:
    """Labels of every firing notification of an alert under test; fails on one sent to
    another receiver than its severity's."""
    found = []
    for path, alert in receiver.alerts():
        under_test = alert_of(alert["labels"], expected)
        if under_test is not None and alert["status"] == "firing":
            assert path == RECEIVERS[under_test[0]], (path, alert["labels"])
            found.append(alert["labels"])
    return found


@dataclass
class Stack:
    prom_url: str
    am_url: str
    receiver: WebhookReceiver
    expected: dict[Alert, Places]


@contextlib.contextmanager
def alerting_stack(tmp_path: Path, clusters: tuple[str | None, ...]) -> Iterator[Stack]:
    """Simulators with their faults, their exporters, the webhook, Alertmanager, Prometheus."""
    find_tool("prometheus")
    find_tool("alertmanager")
    rule_files = written(tmp_path, mixin_rules(multi_cluster=clusters != (None,)))
    frozen = time.time()
    with contextlib.ExitStack() as stack:
        sims = {
            cluster: stack.enter_context(
                Simulator({PROD: NUMBERS, OPS: NUMBERS, LAB: NUMBERS}, KEY, SEED, lambda: frozen)
            )
            for cluster in clusters
        }
        inventory = Inventory.of(sims[clusters[0]])
        exporters = {}
        for cluster, sim in sims.items():
            sim.set_faults(faults(cluster, inventory))
            argv = ["--api.base-url", sim.base_url]
            argv += [arg for sub in (PROD, OPS, LAB) for arg in ("--subaccount", sub)]
            log = tmp_path / f"exporter-{cluster or 'single'}.log"
            exporters[cluster] = stack.enter_context(
                exporter_process(argv, {"EIGHTBYEIGHT_API_KEY": KEY}, log)
            )[0]
        receiver = stack.enter_context(WebhookReceiver())
        am_url = stack.enter_context(
            alertmanager_process(tmp_path, alertmanager_config(receiver.url))
        )
        prom_url = stack.enter_context(
            prometheus_with_config(tmp_path, prometheus_config(exporters, rule_files, am_url))
        )
        yield Stack(prom_url, am_url, receiver, expected_alerts(clusters, inventory))


def observed(stack: Stack) -> dict[str, dict[Alert, Places]]:
    """Where each alert under test is now, as each part of the stack sees it. The sources
    marked "(none)" must hold nothing."""
    firing = in_prometheus(stack.prom_url)
    return {
        "Prometheus": places(firing, stack.expected),
        "Prometheus, more than once (none)": twice(firing, stack.expected),
        "Alertmanager": places(
            in_alertmanager(stack.am_url, stack.expected, "active"), stack.expected
        ),
        "Alertmanager, held back (none)": places(
            in_alertmanager(stack.am_url, stack.expected, "suppressed"), stack.expected
        ),
        "webhook": places(delivered(stack.receiver, stack.expected), stack.expected),
    }


def differences(view: dict[str, dict[Alert, Places]], expected: dict[Alert, Places]) -> list[str]:
    """Each alert under test found where it must not be, or missing where it must be."""
    out = []
    for source, found in view.items():
        for alert, where in expected.items():
            want = set() if source.endswith("(none)") else where
            for verdict, wrong in (
                ("unexpected", found[alert] - want),
                ("missing", want - found[alert]),
            ):
                out += [
                    f"{source}: {alert} {verdict} in cluster {c}, job {j}"
                    for c, j in sorted(wrong, key=str)
                ]
    return sorted(out, key=lambda problem: " missing " in problem)  # the wrong ones first


def wait_for_every_alert(stack: Stack) -> list[str]:
    """Until every part of the stack holds each alert under test in every (cluster, job) it
    should, or one turns up where it must not (no need to wait longer to fail). Returns the
    differences seen last: none when all went well."""
    seen: dict[str, list[str]] = {}

    def settled() -> bool:
        problems = seen["last"] = differences(observed(stack), stack.expected)
        return all(" missing " not in problem for problem in problems) or any(
            " unexpected " in problem for problem in problems
        )

    with contextlib.suppress(AssertionError):
        wait_until(settled, timeout=90, interval=0.5, what="every alert under test")
    return seen["last"]


def wait_two_more_evaluations(stack: Stack) -> None:
    """Long enough for an alert that should not fire to show itself: two more evaluations of
    the alerting rules (a `for:` needs two) and Alertmanager's group_wait."""
    settled = time.time() + 2 * INTERVAL_SECONDS + GROUP_WAIT_SECONDS
    wait_until(
        lambda: (
            min(last_rule_evaluation(stack.prom_url, name) for name in (UNHEALTHY, API_DOWN))
            > settled
        ),
        timeout=60,
        what="two more rule evaluations and group_wait",
    )


def assert_exactly_where_expected(stack: Stack) -> list[dict[str, str]]:
    """Prometheus (firing, one series each), Alertmanager (active, none held back) and the
    webhook (firing) hold each alert under test in exactly its (cluster, job) places. Returns
    every alert firing in Prometheus."""
    problems = wait_for_every_alert(stack)
    assert problems == [], "\n".join(problems)
    wait_two_more_evaluations(stack)
    # Again, once a wrong alert has had time to fire: it would be there now.
    problems = wait_for_every_alert(stack)
    assert problems == [], "\n".join(problems)
    return in_prometheus(stack.prom_url)


def clusters_per_notification(receiver: WebhookReceiver) -> list[set[str | None]]:
    """The clusters of the alerts in each notification the webhook received."""
    return [{a["labels"].get("cluster") for a in n["alerts"]} for n in list(receiver.notifications)]


def test_each_alert_fires_in_its_own_cluster_and_reaches_the_receiver(tmp_path):
    with alerting_stack(tmp_path, ("a", "b")) as stack:
        alerts = assert_exactly_where_expected(stack)
        assert rule_errors(stack.prom_url) == []

        # Alertmanager groups by cluster: no notification speaks of both.
        assert all(len(clusters) == 1 for clusters in clusters_per_notification(stack.receiver))
        # Every alert at all carries one of the two clusters and one of the two jobs.
        assert {(a.get("cluster"), a["job"]) for a in alerts} <= {
            (cluster, job) for cluster in ("a", "b") for job in JOBS
        }
        # acme-lab is the same in both clusters: so are its alerts.
        lab: dict[str, set[tuple[tuple[str, str], ...]]] = {"a": set(), "b": set()}
        for labels in alerts:
            if labels.get("subaccount") == LAB:
                lab[labels["cluster"]].add(
                    tuple(sorted((k, v) for k, v in labels.items() if k != "cluster"))
                )
        assert lab["a"] == lab["b"]


def test_the_same_alerts_fire_without_a_cluster_label(tmp_path):
    # The switch changes the dashboards only: the rules keep the label, empty where absent.
    assert mixin_rules(multi_cluster=False) == mixin_rules(multi_cluster=True)
    with alerting_stack(tmp_path, (None,)) as stack:
        alerts = assert_exactly_where_expected(stack)
        assert rule_errors(stack.prom_url) == []
        assert all("cluster" not in labels for labels in alerts)
        assert all(clusters == {None} for clusters in clusters_per_notification(stack.receiver))
