"""End to end: simulated 8x8 callbacks become alerts delivered by Alertmanager, then resolve.

Simulator (API and callbacks) -> exporter with its webhook receiver (a process) -> real
Prometheus (shipped rules, `for:` shortened) -> real Alertmanager (shipped configuration,
receivers pointed at this test's webhook). One number pushed Unhealthy, and one run of calls
with poor quality.
"""

import time

import pytest

from exporter.simulator import Simulator
from tests.stack.test_alerting_e2e import latest, wait_for_status
from tests.support.callbacks import CALLBACK_PATH
from tests.support.processes import find_tool, free_port, wait_until
from tests.support.stack import (
    WebhookReceiver,
    alertmanager_config,
    alertmanager_process,
    exporter_reading,
    fast_rules,
    prometheus_process,
    query,
)

pytestmark = pytest.mark.e2e

SUB = "acme-calls"
KEY = "e2e-webhooks-key-27182"
AUTH = "Bearer e2e-webhooks-auth-16180"


def firing_countries(receiver, alertname):
    """Countries whose alert is firing according to the newest notification of each."""
    newest = {}
    for _, alert in receiver.alerts():
        labels = alert["labels"]
        if labels.get("alertname") == alertname and labels.get("subaccount") == SUB:
            newest[labels["country"]] = alert["status"]
    return {country for country, status in newest.items() if status == "firing"}


def test_pushed_unhealthy_and_poor_calls_become_alerts_and_resolve(tmp_path):
    find_tool("prometheus")
    find_tool("alertmanager")
    port = free_port()
    auth_file = tmp_path / "webhook-auth"
    auth_file.write_text(AUTH + "\n")
    # The numbers stand still (the pushes still go out every 0.2 s): on the real clock the
    # victim could turn unhealthy by itself before it is pushed healthy again, and a number
    # turning unhealthy later would make its country's calls poor after `already_poor` was read.
    frozen = time.time()
    with (
        Simulator(subaccounts={SUB: 20}, api_key=KEY, seed=4, clock=lambda: frozen) as sim,
        exporter_reading(
            tmp_path,
            sim.base_url,
            KEY,
            "--subaccount",
            SUB,
            "--webhook.listen-address",
            f"127.0.0.1:{port}",
            "--webhook.auth-header-file",
            str(auth_file),
        ) as exporter_url,
        WebhookReceiver() as receiver,
        alertmanager_process(tmp_path, alertmanager_config(receiver.url)) as am_url,
        prometheus_process(tmp_path, exporter_url, fast_rules(tmp_path), am_url) as prom_url,
    ):
        sim.start_push(
            f"http://127.0.0.1:{port}{CALLBACK_PATH}", AUTH, interval=0.2, sessions_per_interval=12
        )
        wait_until(
            lambda: query(prom_url, f'eightbyeight_call_mos_count{{subaccount="{SUB}"}} > 0'),
            timeout=60,
            what="Prometheus scraping pushed call quality",
        )
        # Good calls fill the rate window before the bad ones come.
        wait_until(
            lambda: query(
                prom_url,
                f'sum(increase(eightbyeight_call_mos_count{{subaccount="{SUB}"}}[15m])) > 300',
            ),
            timeout=90,
            what="a baseline of good calls",
        )

        # 1. 8x8 pushes one number as Unhealthy: the alert names it, then resolves.
        pushed = query(
            prom_url,
            f'eightbyeight_number_pushed_status{{subaccount="{SUB}", operational_status="active"}}'
            " == 1",
        )
        victim = pushed[0]["metric"]["msisdn"]
        sim.set_push_faults(unhealthy=[victim])
        path, alert = wait_for_status(
            receiver, "firing", "EightByEightNumberPushedUnhealthy", msisdn=victim, subaccount=SUB
        )
        assert path == "/team-tickets"
        assert alert["labels"]["severity"] == "warning"
        assert victim in alert["annotations"]["description"]
        assert alert["annotations"]["runbook_url"].endswith("#eightbyeightnumberpushedunhealthy")
        sim.set_push_faults()
        wait_for_status(
            receiver, "resolved", "EightByEightNumberPushedUnhealthy", msisdn=victim, subaccount=SUB
        )

        # 2. A run of calls with poor quality: MOS degraded fires, then resolves on good calls.
        # The simulated subaccount has numbers whose calls are always poor (a failing health
        # check, status Unhealthy): a country they drag below the threshold alerts with or
        # without the run, so only the countries the run itself pushed below are followed.
        already_poor = {
            row["metric"]["country"]
            for row in query(
                prom_url,
                f'sum by (country) (rate(eightbyeight_call_mos_sum{{subaccount="{SUB}"}}[15m]))'
                f' / sum by (country) (rate(eightbyeight_call_mos_count{{subaccount="{SUB}"}}[15m]))'
                " < 3.7",
            )
        }

        def run_firing() -> set[str]:
            return firing_countries(receiver, "EightByEightCallQualityDegraded") - already_poor

        sim.set_push_faults(bad_quality=True)
        wait_until(
            run_firing, timeout=180, interval=0.5, what="EightByEightCallQualityDegraded firing"
        )
        _, alert = latest(receiver, "EightByEightCallQualityDegraded", subaccount=SUB)
        assert alert["labels"]["severity"] == "warning"
        assert "Mean Opinion Score" in alert["annotations"]["description"]
        fired = set()

        def all_resolved():
            fired.update(run_firing())
            return not run_firing()

        # Keep the run going until the rate window is clearly poor everywhere it fired...
        wait_until(
            lambda: query(
                prom_url,
                f'ALERTS{{alertname="EightByEightCallQualityDegraded", subaccount="{SUB}",'
                ' alertstate="firing"}',
            ),
            timeout=60,
            what="the alert firing in Prometheus",
        )
        # Good calls at three times the rate: the window's mean recovers three times sooner.
        sim.set_push_faults(burst=24)
        wait_until(all_resolved, timeout=180, interval=0.5, what="every MOS alert resolved")
        assert fired
        resolved = [
            alert
            for _, alert in receiver.alerts()
            if alert["labels"].get("alertname") == "EightByEightCallQualityDegraded"
            and alert["status"] == "resolved"
        ]
        assert {a["labels"]["country"] for a in resolved} >= fired
        assert sim.push_stats().sent > 0
