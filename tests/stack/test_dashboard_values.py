"""Every dashboard panel computes the right number from known series, on a real Prometheus.

Known series (gauges held constant, counters rising at known rates, histograms with known
buckets) are written as OpenMetrics, turned into TSDB blocks by `promtool tsdb
create-blocks-from openmetrics`, and served by a real Prometheus. Each panel target of the
generated dashboards (grafana/dashboards), with the variables on "All" and $__rate_interval at
1m as tests/stack/test_dashboards.py substitutes them, is evaluated at the time of the last
sample and compared with the number the panel must show, per series: a sum that doubled, a
ratio turned upside down, a wrong quantile or a dropped label fails here, where a test that a
query returns data would pass.
"""

from __future__ import annotations

import math
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.stack import test_dashboards as dashboards
from tests.support.processes import find_tool
from tests.support.stack import prometheus_with_config

pytestmark = pytest.mark.e2e

STEP = 15  # seconds between samples
SPAN = 3600  # one hour of samples before the evaluation time
TARGET = {"job": "eightbyeight", "instance": "exporter:9881"}
SG = {"subaccount": "acme-sg"}
AU = {"subaccount": "acme-au"}
SG_MOBILE = {**SG, "country": "SG", "number_type": "mobile"}
AU_LOCAL = {**AU, "country": "AU", "number_type": "local"}
# Labels that tell the series of a panel apart; job and instance are the same for all.
KEY_LABELS = frozenset(
    {"subaccount", "reason", "version", "outcome", "event_type", "currency", "country"}
    | {"number_type", "operational_status", "session_status", "msisdn", "error_code"}
)
BALANCE_SPEND = 0.01  # per second
BALANCE_AT_END = 864.0  # 864 / 0.01 per second = 86,400 s: one day left


class Series:
    """One input series: a gauge (constant or a function of time) or a counter (a rate)."""

    def __init__(self, name: str, labels: dict[str, str], value: float = 0.0, rate: float = 0.0):
        self.name, self.labels, self.value, self.rate = name, {**TARGET, **labels}, value, rate

    def at(self, offset: float) -> float:
        """The value `offset` seconds after the first sample."""
        return self.value + self.rate * offset


def gauge(name: str, value: float, **labels: str) -> Series:
    return Series(name, labels, value=value)


def counter(name: str, rate: float, **labels: str) -> Series:
    return Series(name, labels, rate=rate)


def buckets(name: str, rates: dict[str, float], **labels: str) -> list[Series]:
    """A histogram's cumulative buckets, each rising at its rate per second."""
    return [counter(f"{name}_bucket", rate, le=le, **labels) for le, rate in rates.items()]


def input_series(end: float) -> list[Series]:
    """The known input: two subaccounts, acme-sg (read) and acme-au (failing)."""
    series = [
        gauge("eightbyeight_up", 1, **SG),
        gauge("eightbyeight_up", 0, **AU),
        counter("eightbyeight_api_requests_total", 0.5, **SG),
        counter("eightbyeight_api_requests_total", 0.25, **AU),
        counter("eightbyeight_api_request_failures_total", 0.05, reason="server_error", **SG),
        counter("eightbyeight_api_request_failures_total", 0.25, reason="timeout", **AU),
        *buckets(
            "eightbyeight_api_request_duration_seconds",
            {"0.1": 0, "0.5": 1, "+Inf": 1},
            **SG,
        ),
        gauge("eightbyeight_invalid_records", 3, **SG),
        gauge("eightbyeight_invalid_records", 0, **AU),
        gauge("eightbyeight_last_success_timestamp_seconds", end - 30, **SG),
        gauge("eightbyeight_last_success_timestamp_seconds", end - 600, **AU),
        gauge("eightbyeight_exporter_build_info", 1, version="1.2.3"),
        gauge("eightbyeight_scrape_duration_seconds", 0.25, **SG),
        gauge("eightbyeight_scrape_duration_seconds", 1.5, **AU),
        gauge("eightbyeight_virtual_numbers", 12, **SG),
        gauge("eightbyeight_virtual_numbers", 5, **AU),
        gauge("eightbyeight_virtual_numbers_listed", 11, **SG),
        gauge("eightbyeight_virtual_numbers_listed", 5, **AU),
        counter("eightbyeight_webhook_requests_total", 2, outcome="accepted"),
        counter("eightbyeight_webhook_requests_total", 0.5, outcome="unauthorized"),
        gauge("eightbyeight_webhook_last_event_timestamp_seconds", end - 90, event_type="vnu", **SG),
        gauge("eightbyeight_webhook_last_event_timestamp_seconds", end - 45, event_type="vss", **SG),
        Series(
            "eightbyeight_account_balance",
            {"currency": "USD"},
            value=BALANCE_AT_END + BALANCE_SPEND * SPAN,
            rate=-BALANCE_SPEND,
        ),
        # The inventory: 10 SG mobile numbers, 4 AU local ones.
        gauge("eightbyeight_virtual_numbers_healthy", 6, **SG_MOBILE),
        gauge("eightbyeight_virtual_numbers_unhealthy", 2, **SG_MOBILE),
        gauge("eightbyeight_virtual_numbers_health_unknown", 1, **SG_MOBILE),
        gauge("eightbyeight_virtual_numbers_health_check_disabled", 1, **SG_MOBILE),
        gauge("eightbyeight_virtual_numbers_expiring", 1, **SG_MOBILE),
        gauge("eightbyeight_virtual_numbers_by_status", 8, operational_status="active", **SG_MOBILE),
        gauge(
            "eightbyeight_virtual_numbers_by_status", 1, operational_status="unhealthy", **SG_MOBILE
        ),
        gauge(
            "eightbyeight_virtual_numbers_by_status", 1, operational_status="expiring", **SG_MOBILE
        ),
        gauge("eightbyeight_health_check_age_seconds", 7200, **SG_MOBILE),
        gauge("eightbyeight_monthly_rental_cost", 30, currency="SGD", **SG_MOBILE),
        gauge("eightbyeight_virtual_numbers_healthy", 4, **AU_LOCAL),
        gauge("eightbyeight_virtual_numbers_unhealthy", 0, **AU_LOCAL),
        gauge("eightbyeight_virtual_numbers_health_unknown", 0, **AU_LOCAL),
        gauge("eightbyeight_virtual_numbers_health_check_disabled", 0, **AU_LOCAL),
        gauge("eightbyeight_virtual_numbers_expiring", 0, **AU_LOCAL),
        gauge("eightbyeight_virtual_numbers_by_status", 4, operational_status="active", **AU_LOCAL),
        gauge("eightbyeight_health_check_age_seconds", 3600, **AU_LOCAL),
        gauge("eightbyeight_monthly_rental_cost", 12, currency="AUD", **AU_LOCAL),
        # Three SG numbers: 1 unhealthy, 2 expiring, 3 fine.
        *number("+6500000001", "active", healthy=0, checked=end - 7200),
        *number("+6500000002", "expiring", healthy=1, checked=end - 300),
        *number("+6500000003", "active", healthy=1, checked=end - 60),
        # Pushed call data.
        counter("eightbyeight_call_mos_sum", 3.5, country="SG", **SG),
        counter("eightbyeight_call_mos_count", 1, country="SG", **SG),
        counter("eightbyeight_call_mos_sum", 8.6, country="AU", **SG),
        counter("eightbyeight_call_mos_count", 2, country="AU", **SG),
        *buckets(
            "eightbyeight_call_mos",
            {"3.1": 0, "3.6": 1, "4.0": 1, "4.3": 1, "+Inf": 1},
            country="SG",
            **SG,
        ),
        *buckets(
            "eightbyeight_call_mos",
            {"3.1": 0, "3.6": 0, "4.0": 0, "4.3": 2, "+Inf": 2},
            country="AU",
            **SG,
        ),
        counter("eightbyeight_call_packet_loss_ratio_sum", 0.02, country="SG", **SG),
        counter("eightbyeight_call_packet_loss_ratio_count", 1, country="SG", **SG),
        counter("eightbyeight_call_packet_loss_ratio_sum", 0, country="AU", **SG),
        counter("eightbyeight_call_packet_loss_ratio_count", 2, country="AU", **SG),
        counter("eightbyeight_call_jitter_seconds_sum", 0.03, country="SG", **SG),
        counter("eightbyeight_call_jitter_seconds_count", 1, country="SG", **SG),
        counter("eightbyeight_call_jitter_seconds_sum", 0.01, country="AU", **SG),
        counter("eightbyeight_call_jitter_seconds_count", 2, country="AU", **SG),
        counter("eightbyeight_call_sessions_total", 0.6, country="SG", session_status="completed", **SG),
        counter("eightbyeight_call_sessions_total", 0.3, country="SG", session_status="failed", **SG),
        counter("eightbyeight_call_sessions_total", 0.1, country="SG", session_status="error", **SG),
        counter("eightbyeight_call_sessions_total", 1, country="AU", session_status="completed", **SG),
        counter("eightbyeight_number_call_legs_total", 0.2, msisdn="+6500000001", outcome="failed", **SG),
        counter("eightbyeight_number_call_legs_total", 0.6, msisdn="+6500000001", outcome="completed", **SG),
        counter("eightbyeight_number_call_legs_total", 0.5, msisdn="+6500000002", outcome="completed", **SG),
        counter("eightbyeight_number_call_mos_sum", 2.4, msisdn="+6500000001", **SG),
        counter("eightbyeight_number_call_mos_count", 0.8, msisdn="+6500000001", **SG),
        counter("eightbyeight_number_call_mos_sum", 2.0, msisdn="+6500000002", **SG),
        counter("eightbyeight_number_call_mos_count", 0.5, msisdn="+6500000002", **SG),
        gauge("eightbyeight_pushed_virtual_numbers_by_status", 2, operational_status="active", **SG),
        gauge("eightbyeight_pushed_virtual_numbers_by_status", 1, operational_status="unhealthy", **SG),
        counter("eightbyeight_call_session_errors_total", 0.1, error_code="-2004", **SG),
        counter("eightbyeight_call_session_errors_total", 0.05, error_code="-2010", **SG),
    ]  # fmt: skip
    return series


def number(msisdn: str, status: str, healthy: int, checked: float) -> list[Series]:
    labels = {**SG_MOBILE, "msisdn": msisdn}
    return [
        gauge("eightbyeight_number_info", 1, operational_status=status, **labels),
        gauge("eightbyeight_number_healthy", healthy, **SG, msisdn=msisdn),
        gauge("eightbyeight_number_health_last_checked_timestamp_seconds", checked, **SG, msisdn=msisdn),
    ]  # fmt: skip


def key(**labels: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


ONE = key()
# (panel title, refId) -> {series key (KEY_LABELS of the result): the number it must show}.
EXPECTED: dict[tuple[str, str], dict[tuple[tuple[str, str], ...], float]] = {
    # The exporter dashboard.
    ("8x8 API reachable", "A"): {key(**SG): 1, key(**AU): 0},
    ("API failure ratio", "A"): {ONE: 0.30 / 0.75},
    ("Invalid records", "A"): {ONE: 3},
    ("Since last success", "A"): {ONE: 600},
    ("Exporter version", "A"): {key(version="1.2.3"): 1},
    ("8x8 API reachable over time", "A"): {key(**SG): 1, key(**AU): 0},
    ("Scrape duration", "A"): {key(**SG): 0.25, key(**AU): 1.5},
    ("API requests", "A"): {key(**SG): 0.5, key(**AU): 0.25},
    ("API failures by reason", "A"): {
        key(reason="server_error", **SG): 0.05,
        key(reason="timeout", **AU): 0.25,
    },
    ("API latency", "A"): {key(**SG): 0.1 + 0.4 * 0.5},
    ("API latency", "B"): {key(**SG): 0.1 + 0.4 * 0.99},
    ("Invalid records over time", "A"): {key(**SG): 3, key(**AU): 0},
    ("Numbers reported vs listed", "A"): {key(**SG): 12, key(**AU): 5},
    ("Numbers reported vs listed", "B"): {key(**SG): 11, key(**AU): 5},
    ("Time since last successful fetch", "A"): {key(**SG): 30, key(**AU): 600},
    ("Webhook callbacks by outcome", "A"): {key(outcome="accepted"): 2, key(outcome="unauthorized"): 0.5},
    ("Time since last callback", "A"): {key(event_type="vnu", **SG): 90, key(event_type="vss", **SG): 45},
    ("Prepaid balance", "A"): {key(currency="USD"): BALANCE_AT_END},
    ("Prepaid balance: days left", "A"): {key(currency="USD"): 1.0},
    # The overview dashboard.
    ("Numbers", "A"): {ONE: 14},
    ("Healthy share", "A"): {ONE: 10 / 12},
    ("Unhealthy", "A"): {ONE: 2},
    ("Expiring", "A"): {ONE: 1},
    ("Status Unhealthy", "A"): {ONE: 1},
    ("Health unknown", "A"): {ONE: 1},
    ("Oldest health check", "A"): {ONE: 7200},
    ("Monthly rental cost", "A"): {key(currency="SGD"): 30, key(currency="AUD"): 12},
    ("Subaccounts failing", "A"): {ONE: 1},
    ("Unhealthy or expiring numbers", "A"): {
        key(msisdn="+6500000001", operational_status="active", **SG_MOBILE): 1,
        key(msisdn="+6500000002", operational_status="expiring", **SG_MOBILE): 1,
    },
    ("Unhealthy or expiring numbers", "B"): {
        key(msisdn="+6500000001", **SG): 7200,
        key(msisdn="+6500000002", **SG): 300,
    },
    ("Healthy share by country and type", "A"): {
        key(country="SG", number_type="mobile"): 0.75,
        key(country="AU", number_type="local"): 1.0,
    },
    ("Unhealthy numbers by country and type", "A"): {
        key(country="SG", number_type="mobile"): 2,
        key(country="AU", number_type="local"): 0,
    },
    ("Numbers by health state", "A"): {ONE: 10},
    ("Numbers by health state", "B"): {ONE: 2},
    ("Numbers by health state", "C"): {ONE: 1},
    ("Numbers by health state", "D"): {ONE: 1},
    ("Numbers by operational status", "A"): {
        key(operational_status="active"): 12,
        key(operational_status="unhealthy"): 1,
        key(operational_status="expiring"): 1,
    },
    ("Health-check age by country and type", "A"): {
        key(country="SG", number_type="mobile"): 7200,
        key(country="AU", number_type="local"): 3600,
    },
    ("Monthly rental cost by country and type", "A"): {
        key(country="SG", number_type="mobile", currency="SGD"): 30,
        key(country="AU", number_type="local", currency="AUD"): 12,
    },
    ("Mean MOS by country", "A"): {key(country="SG"): 3.5, key(country="AU"): 4.3},
    ("Low MOS (10th percentile) by country", "A"): {
        key(country="SG"): 3.1 + 0.5 * 0.1,
        key(country="AU"): 4.0 + 0.3 * 0.1,
    },
    ("Packet loss by country", "A"): {key(country="SG"): 0.02, key(country="AU"): 0},
    ("Jitter by country", "A"): {key(country="SG"): 0.03, key(country="AU"): 0.005},
    ("Call sessions by outcome and country", "A"): {
        key(country="SG", session_status="completed"): 0.6,
        key(country="SG", session_status="failed"): 0.3,
        key(country="SG", session_status="error"): 0.1,
        key(country="AU", session_status="completed"): 1,
    },
    # AU has no failed or error series at all: the division has no AU sample, and the panel
    # shows nothing for it rather than 0.
    ("Call failure ratio by country", "A"): {key(country="SG"): 0.4},
    # +6500000002 has no failed legs series: no failed share (not 0), as above.
    ("Calls and quality per number", "A"): {key(msisdn="+6500000001", **SG): 0.25},
    ("Calls and quality per number", "B"): {
        key(msisdn="+6500000001", **SG): 3.0,
        key(msisdn="+6500000002", **SG): 4.0,
    },
    ("Numbers by pushed status", "A"): {
        key(operational_status="active"): 2,
        key(operational_status="unhealthy"): 1,
    },
    ("Session errors by 8x8 error code", "A"): {
        key(error_code="-2004"): 0.1,
        key(error_code="-2010"): 0.05,
    },
}  # fmt: skip


def panel_targets() -> Iterator[tuple[tuple[str, str], str, dict[str, Any]]]:
    for dashboard in dashboards.load_dashboards().values():
        for panel in dashboards.iter_panels(dashboard):
            for target in panel.get("targets", []):
                yield (panel["title"], target["refId"]), target["expr"], dashboard


def openmetrics(series: list[Series], start: float) -> str:
    """The series as OpenMetrics text, one family at a time, samples every STEP seconds."""
    lines: list[str] = []
    for name in dict.fromkeys(s.name for s in series):
        lines.append(f"# TYPE {name} unknown")
        for one in (s for s in series if s.name == name):
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(one.labels.items()))
            for offset in range(0, SPAN + 1, STEP):
                lines.append(f"{name}{{{labels}}} {one.at(offset)!r} {start + offset}")
    return "\n".join([*lines, "# EOF"]) + "\n"


def write_blocks(tmp_path: Path, series: list[Series], start: float) -> Path:
    source = tmp_path / "input.om"
    source.write_text(openmetrics(series, start), encoding="utf-8")
    data = tmp_path / "prometheus-data"
    result = subprocess.run(
        [
            find_tool("promtool"),
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            str(source),
            str(data),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return data


def instant(prom_url: str, expr: str, at: float) -> list[dict[str, Any]]:
    answer = requests.get(
        f"{prom_url}/api/v1/query", params={"query": expr, "time": at}, timeout=30
    ).json()
    assert answer["status"] == "success", f"{expr}: {answer.get('error')}"
    return answer["data"]["result"]


def shown(result: list[dict[str, Any]]) -> dict[tuple[tuple[str, str], ...], float]:
    found: dict[tuple[tuple[str, str], ...], float] = {}
    for series in result:
        labels = {k: v for k, v in series["metric"].items() if k in KEY_LABELS}
        found[key(**labels)] = float(series["value"][1])
    return found


def differences(
    got: dict[tuple[tuple[str, str], ...], float], want: dict[tuple[tuple[str, str], ...], float]
) -> list[str]:
    problems = [f"missing {k}" for k in want if k not in got]
    problems += [f"unexpected {k}={v:g}" for k, v in got.items() if k not in want]
    problems += [
        f"{k}: {got[k]!r}, expected {v!r}"
        for k, v in want.items()
        if k in got and not math.isclose(got[k], v, rel_tol=1e-6, abs_tol=1e-9)
    ]
    return problems


def test_every_panel_target_has_an_expected_value():
    targets = {where for where, _expr, _dashboard in panel_targets()}
    assert targets == set(EXPECTED), (
        f"no expectation: {sorted(targets - set(EXPECTED))}; "
        f"no such target: {sorted(set(EXPECTED) - targets)}"
    )


def test_panels_the_demo_leaves_empty_are_checked_here():
    titles = {title for title, _ref in EXPECTED}
    assert titles >= dashboards.NOT_IN_THE_DEMO


def test_differences_catch_a_wrong_value_a_missing_and_an_extra_series():
    want = {key(country="SG"): 0.4, key(country="AU"): 0.0}
    assert differences({key(country="SG"): 0.4, key(country="AU"): 0.0}, want) == []
    assert len(differences({key(country="SG"): 0.8, key(country="JP"): 0.0}, want)) == 3


def test_every_panel_shows_the_number_its_input_gives(tmp_path):
    end = float(int(time.time()) // STEP * STEP - 300)
    start = end - SPAN
    write_blocks(tmp_path, input_series(end), start)
    config = {"global": {"scrape_interval": "15s", "evaluation_interval": "15s"}}
    with prometheus_with_config(tmp_path, config) as prom_url:
        problems = []
        for where, expr, dashboard in panel_targets():
            promql = dashboards.substitute_variables(expr, dashboard)
            wrong = differences(shown(instant(prom_url, promql, end)), EXPECTED[where])
            problems += [f"{where[0]} / {where[1]}: {p}" for p in wrong]
        assert problems == [], "\n".join(problems)
