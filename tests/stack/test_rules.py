"""Prometheus rules, their unit tests, the runbook and the example Alertmanager configuration.

promtool and amtool do the checking where they can; the conventions of the monitoring mixins
(names, severities, annotations, runbook sections) are checked here with PyYAML.
"""

from __future__ import annotations

import json
import re
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
import yaml

from tests.stack.test_dashboards import (
    METRIC_LABELS,
    PROMETHEUS_SERIES,
    TARGET_LABELS,
    analyse,
    known_labels,
    metric_problems,
)
from tests.support.processes import REPO, find_tool, free_port, running_process, wait_until

PROMETHEUS_DIR = REPO / "prometheus"
RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
TEST_FILES = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))
ALERTMANAGER_CONFIG = PROMETHEUS_DIR / "alertmanager.yml"
RUNBOOK = REPO / "docs" / "runbook.md"
# mixin/config.libsonnet's runbookURLPattern: the runbook's path in this repository.
RUNBOOK_URL = "docs/runbook.md#"

SEVERITIES = {"critical", "warning", "info"}
ALERT_NAME = re.compile(r"^EightByEight(?:[A-Z][a-z0-9]*)+$")
ALERT_MENTION = re.compile(r"\bEightByEight[A-Z][A-Za-z0-9]*")
RECORD_NAME = re.compile(r"^eightbyeight(?:_[a-z0-9]+)*:[a-z0-9_]+:[a-z0-9_]+$")
# The e2e test shortens these by rewriting their `for:` lines in a copy.
E2E_ALERTS = {
    "EightByEightApiDown",
    "EightByEightApiAuthenticationFailed",
    "EightByEightNumberUnhealthy",
}
# Alerts over inventory series, which vanish while the API cannot be read.
CARRY_CLAUSE = re.compile(
    r"unless on \(cluster, job, instance, subaccount\) eightbyeight_up\{[^}]*\} == 1"
)
INVENTORY_GROUP = "eightbyeight.numbers"
COUNT_ALERT = "EightByEightNumbersDisappeared"


def run_tool(argv: list[str], cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def tool_output(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def rule_groups() -> list[dict]:
    return [group for path in RULE_FILES for group in load_yaml(path)["groups"]]


def alert_rules() -> list[dict]:
    return [rule for group in rule_groups() for rule in group["rules"] if "alert" in rule]


def recording_rules() -> list[dict]:
    return [rule for group in rule_groups() for rule in group["rules"] if "record" in rule]


def alert_names() -> set[str]:
    return {rule["alert"] for rule in alert_rules()}


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading (before de-duplication)."""
    slug = heading.strip().lower()
    slug = re.sub(r"[^\w\- ]", "", slug)
    return slug.replace(" ", "-")


def runbook_anchors() -> set[str]:
    text = RUNBOOK.read_text(encoding="utf-8")
    in_code = False
    anchors: set[str] = set()
    for line in text.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and (match := re.match(r"^#{1,6}\s+(.+?)\s*#*\s*$", line)):
            anchors.add(github_anchor(match.group(1)))
    return anchors


def alert_test_cases() -> list[dict]:
    return [
        case
        for path in TEST_FILES
        for test in load_yaml(path)["tests"]
        for case in test.get("alert_rule_test", [])
    ]


def expr_test_exprs() -> list[str]:
    return [
        case["expr"]
        for path in TEST_FILES
        for test in load_yaml(path)["tests"]
        for case in test.get("promql_expr_test", [])
    ]


# --- promtool / amtool -----------------------------------------------------------------------


def test_rule_and_test_files_exist():
    assert [p.name for p in RULE_FILES] == ["eightbyeight.alerts.yml", "eightbyeight.recording.yml"]
    assert TEST_FILES, "no promtool unit tests in prometheus/tests/"


@pytest.mark.parametrize("rule_file", RULE_FILES, ids=lambda p: p.name)
def test_promtool_check_rules(rule_file: Path):
    result = run_tool([find_tool("promtool"), "check", "rules", str(rule_file)])
    assert result.returncode == 0, tool_output(result)
    assert "SUCCESS" in result.stdout, tool_output(result)


@pytest.mark.parametrize("test_file", TEST_FILES, ids=lambda p: p.name)
def test_promtool_unit_tests(test_file: Path):
    result = run_tool([find_tool("promtool"), "test", "rules", str(test_file)])
    assert result.returncode == 0, tool_output(result)
    assert "SUCCESS" in result.stdout, tool_output(result)


def test_promtool_unit_tests_can_fail(tmp_path: Path):
    """A wrong expectation must make promtool fail, or the passing runs above prove nothing."""
    (tmp_path / "rules").mkdir()
    for rule_file in RULE_FILES:
        (tmp_path / "rules" / rule_file.name).write_text(rule_file.read_text(encoding="utf-8"))
    original = (PROMETHEUS_DIR / "tests" / "numbers.test.yml").read_text(encoding="utf-8")
    broken = original.replace("A virtual number is unhealthy.", "Wrong summary.", 1)
    assert broken != original
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "numbers.test.yml").write_text(broken, encoding="utf-8")
    result = run_tool([find_tool("promtool"), "test", "rules", "tests/numbers.test.yml"], tmp_path)
    assert result.returncode != 0, tool_output(result)
    assert "Wrong summary." in result.stdout + result.stderr, tool_output(result)


def test_amtool_check_config():
    result = run_tool([find_tool("amtool"), "check-config", str(ALERTMANAGER_CONFIG)])
    assert result.returncode == 0, tool_output(result)
    assert "SUCCESS" in result.stdout, tool_output(result)


@pytest.mark.parametrize(
    ("alertname", "severity", "receiver"),
    [
        ("EightByEightApiAuthenticationFailed", "critical", "oncall-pager"),
        ("EightByEightNumbersUnhealthyShareHigh", "critical", "oncall-pager"),
        ("EightByEightNumberUnhealthy", "warning", "team-tickets"),
        ("EightByEightHealthCheckDisabled", "info", "team-tickets"),
    ],
)
def test_amtool_routes_by_severity(alertname: str, severity: str, receiver: str):
    result = run_tool(
        [
            find_tool("amtool"),
            "config",
            "routes",
            "test",
            f"--config.file={ALERTMANAGER_CONFIG}",
            f"--verify.receivers={receiver}",
            f"alertname={alertname}",
            f"severity={severity}",
            "subaccount=acme-sg",
        ]
    )
    assert result.returncode == 0, tool_output(result)
    assert result.stdout.strip() == receiver, tool_output(result)


def test_amtool_route_verification_can_fail():
    result = run_tool(
        [
            find_tool("amtool"),
            "config",
            "routes",
            "test",
            f"--config.file={ALERTMANAGER_CONFIG}",
            "--verify.receivers=team-tickets",
            "alertname=EightByEightExporterDown",
            "severity=critical",
        ]
    )
    assert result.returncode != 0, tool_output(result)


# --- conventions -----------------------------------------------------------------------------


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: f"{r['alert']}-{r['labels']}")
def test_alert_follows_conventions(rule: dict):
    name = rule["alert"]
    assert ALERT_NAME.match(name), f"{name}: not CamelCase with the EightByEight prefix"
    assert rule.get("labels", {}).get("severity") in SEVERITIES, f"{name}: bad severity"
    annotations = rule.get("annotations", {})
    for key in ("summary", "description", "runbook_url"):
        assert annotations.get(key, "").strip(), f"{name}: missing {key}"
    assert "{{ $labels." in annotations["description"], name
    url = annotations["runbook_url"]
    assert url.startswith(RUNBOOK_URL), f"{name}: runbook_url {url}"
    anchor = url.removeprefix(RUNBOOK_URL)
    assert anchor == name.lower(), f"{name}: anchor {anchor} is not the alert's section"
    assert anchor in runbook_anchors(), f"{name}: docs/runbook.md has no heading for #{anchor}"


def test_runbook_mentions_only_existing_alerts():
    mentioned = set(ALERT_MENTION.findall(RUNBOOK.read_text(encoding="utf-8")))
    assert mentioned, "the runbook mentions no alert"
    assert mentioned <= alert_names(), f"unknown alerts in the runbook: {mentioned - alert_names()}"
    assert alert_names() <= mentioned


def test_runbook_links_within_itself_resolve():
    links = re.findall(r"\]\(#([^)]+)\)", RUNBOOK.read_text(encoding="utf-8"))
    assert set(links) <= runbook_anchors(), set(links) - runbook_anchors()


def test_every_alert_has_its_own_runbook_section():
    headings = {
        line[3:].strip()
        for line in RUNBOOK.read_text(encoding="utf-8").splitlines()
        if line.startswith("## ")
    }
    assert alert_names() <= headings, alert_names() - headings


def test_recording_rules_are_named_level_metric_operations():
    names = [rule["record"] for rule in recording_rules()]
    assert names, "no recording rules"
    for name in names:
        assert RECORD_NAME.match(name), f"{name}: not level:metric:operations"
    assert len(names) == len(set(names))


def test_for_durations_sit_on_their_own_lines():
    """The e2e test rewrites `for:` lines in a copy, so each alert needs exactly one."""
    text = (PROMETHEUS_DIR / "rules" / "eightbyeight.alerts.yml").read_text(encoding="utf-8")
    for_lines = re.findall(r"^ +for: \d+[smhdwy]$", text, flags=re.MULTILINE)
    alerts = alert_rules()
    assert all("for" in rule for rule in alerts)
    assert len(for_lines) == len(alerts)
    assert alert_names() >= E2E_ALERTS


def test_inventory_alerts_bridge_failed_reads():
    for group in rule_groups():
        if group["name"] != INVENTORY_GROUP:
            continue
        for rule in group["rules"]:
            if rule["alert"] != COUNT_ALERT:
                assert CARRY_CLAUSE.search(rule["expr"]), f"{rule['alert']}: flaps on failed reads"


def test_every_alert_is_unit_tested_firing_and_silent():
    cases = alert_test_cases()
    fired = {c["alertname"] for c in cases if c.get("exp_alerts")}
    silent = {c["alertname"] for c in cases if not c.get("exp_alerts")}
    assert alert_names() <= fired, f"never tested firing: {alert_names() - fired}"
    assert alert_names() <= silent, f"never tested silent: {alert_names() - silent}"


def test_every_unit_tested_alert_checks_labels_and_annotations():
    for case in alert_test_cases():
        for alert in case.get("exp_alerts") or []:
            assert alert.get("exp_labels", {}).get("severity"), case["alertname"]
            assert set(alert.get("exp_annotations", {})) == {
                "summary",
                "description",
                "runbook_url",
            }, case["alertname"]


def test_every_recording_rule_value_is_unit_tested():
    tested = set(expr_test_exprs())
    for rule in recording_rules():
        assert rule["record"] in tested, f"{rule['record']} has no promql_expr_test"


# --- Alertmanager inhibition, with a real Alertmanager ----------------------------------------


def alert_payload(**labels: str) -> dict:
    now = datetime.now(UTC)
    return {
        "labels": labels,
        "annotations": {"summary": "test"},
        "startsAt": now.isoformat(),
        "endsAt": (now + timedelta(hours=1)).isoformat(),
    }


def alert_states(base_url: str) -> dict[str, str]:
    """Alert state ('active' or 'suppressed') keyed by a readable label string."""
    alerts = requests.get(f"{base_url}/api/v2/alerts", timeout=5).json()
    return {json.dumps(a["labels"], sort_keys=True): a["status"]["state"] for a in alerts}


def key(payload: dict) -> str:
    return json.dumps(payload["labels"], sort_keys=True)


@pytest.mark.e2e
def test_alertmanager_inhibits_as_documented(tmp_path: Path):
    binary = find_tool("alertmanager")
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    target = {"job": "eightbyeight", "instance": "acme-sg", "subaccount": "acme-sg"}
    exporter_down = alert_payload(
        alertname="EightByEightExporterDown",
        severity="critical",
        job="eightbyeight",
        instance="acme-au",
    )
    api_down = alert_payload(alertname="EightByEightApiDown", severity="warning", **target)
    sg_unhealthy = alert_payload(
        alertname="EightByEightNumberUnhealthy",
        severity="warning",
        msisdn="+6531234567",
        **target,
    )
    au_unhealthy = alert_payload(
        alertname="EightByEightNumberUnhealthy",
        severity="warning",
        msisdn="+61212345678",
        job="eightbyeight",
        instance="acme-au",
        subaccount="acme-au",
    )
    nz = {"job": "eightbyeight", "instance": "acme-nz", "subaccount": "acme-nz"}
    share = {"alertname": "EightByEightNumbersUnhealthyShareHigh", **nz}
    share_critical = alert_payload(severity="critical", country="NZ", number_type="mobile", **share)
    share_warning = alert_payload(severity="warning", country="NZ", number_type="mobile", **share)
    other_country = alert_payload(severity="warning", country="AU", number_type="mobile", **share)
    alerts = [
        exporter_down,
        api_down,
        sg_unhealthy,
        au_unhealthy,
        share_critical,
        share_warning,
        other_country,
    ]
    expected = {
        key(exporter_down): "active",
        key(api_down): "active",
        key(sg_unhealthy): "suppressed",  # API down for acme-sg
        key(au_unhealthy): "suppressed",  # exporter target acme-au down
        key(share_critical): "active",
        key(share_warning): "suppressed",  # its critical variant fires
        key(other_country): "active",  # another country: not inhibited
    }
    argv = [
        binary,
        f"--config.file={ALERTMANAGER_CONFIG}",
        f"--storage.path={tmp_path / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]
    with running_process(argv, f"{base_url}/-/ready", log_path=tmp_path / "alertmanager.log"):
        response = requests.post(f"{base_url}/api/v2/alerts", json=alerts, timeout=5)
        assert response.status_code == 200, response.text
        try:
            wait_until(
                lambda: alert_states(base_url) == expected, timeout=30, what="inhibition states"
            )
        except AssertionError:
            pytest.fail(f"states {alert_states(base_url)}\nexpected {expected}")


# --- the rules against the metric catalogue ----------------------------------------------------


def recorded_names() -> set[str]:
    return {rule["record"] for rule in recording_rules()}


def rule_id(rule: dict) -> str:
    return rule.get("alert") or rule["record"]


# Series Prometheus makes for every target it scrapes.
SCRAPE_SERIES = frozenset({"up"})


@pytest.mark.parametrize("rule", alert_rules() + recording_rules(), ids=rule_id)
def test_every_metric_and_label_a_rule_uses_is_exposed(rule: dict):
    """Names and labels come from the catalogue (tests/stack/test_dashboards.py METRIC_LABELS)."""
    assert not metric_problems(rule["expr"], recorded_names() | SCRAPE_SERIES)


@pytest.mark.parametrize("rule", alert_rules(), ids=rule_id)
def test_annotations_name_labels_the_alert_has(rule: dict):
    """`{{ $labels.x }}` names a label of a metric the expression selects (or a target label)."""
    available = set(TARGET_LABELS)
    for metric, _ in analyse(rule["expr"]).selectors:
        labels = known_labels(metric)
        if labels is None:
            return  # a recording rule's output: its labels are checked where it is recorded
        available |= labels
    text = json.dumps(rule.get("annotations", {}))
    used = set(re.findall(r"\$labels\.(\w+)", text))
    assert used <= available, f"no such label(s): {sorted(used - available)}"


_SERIES = re.compile(r"^\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?:\{(.*)\})?\s*$")


def input_series() -> list[tuple[str, str]]:
    return [
        (path.name, series["series"])
        for path in TEST_FILES
        for test in load_yaml(path)["tests"]
        for series in test.get("input_series", [])
    ]


@pytest.mark.parametrize(("file", "series"), input_series())
def test_rule_unit_tests_feed_series_the_exporter_exposes(file: str, series: str):
    """Each input series has the name and exactly the labels the exporter gives it."""
    match = _SERIES.match(series)
    assert match, series
    name, labels = match[1], match[2] or ""
    if ":" in name or name in PROMETHEUS_SERIES | SCRAPE_SERIES:
        return  # a recording rule's output or Prometheus' own
    given = set(re.findall(r"(\w+)\s*=", labels)) - TARGET_LABELS
    assert name in METRIC_LABELS, f"{name} is not exposed"
    assert given == set(METRIC_LABELS[name]), f"{name}: {sorted(given)}, exposed with " + str(
        sorted(METRIC_LABELS[name])
    )


def _minutes(duration: str) -> float:
    units = {"s": 1 / 60, "m": 1, "h": 60, "d": 1440}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([smhd])", duration))


def for_edges() -> dict[str, set[float]]:
    """Per alert, the times where one test has it silent a minute before and firing at them."""
    edges: dict[str, set[float]] = {}
    for path in TEST_FILES:
        for test in load_yaml(path)["tests"]:
            cases = test.get("alert_rule_test", [])
            silent = {
                (c["alertname"], _minutes(c["eval_time"])) for c in cases if not c["exp_alerts"]
            }
            for case in cases:
                at = _minutes(case["eval_time"])
                if case["exp_alerts"] and (case["alertname"], at - 1) in silent:
                    edges.setdefault(case["alertname"], set()).add(at)
    return edges


def test_every_alert_is_tested_at_the_edge_of_its_for():
    """Silent one evaluation (1m) before and firing at the moment its `for:` has passed: a
    changed hold time, or a condition true a minute later than meant, fails a promtool test."""
    edges = for_edges()
    assert alert_names() - set(edges) == set(), "no silent-then-firing pair a minute apart"
