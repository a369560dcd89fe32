"""End to end: a fault in the simulated 8x8 API becomes an alert delivered by Alertmanager.

Simulator -> exporter -> real Prometheus (shipped rules, `for:` shortened) -> real Alertmanager
(shipped configuration, receivers pointed at this test's webhook) -> webhook receiver.
"""

import time

import pytest

from exporter.simulator import Simulator
from tests.support.processes import find_tool, wait_until
from tests.support.stack import (
    WebhookReceiver,
    alertmanager_alerts,
    alertmanager_config,
    alertmanager_process,
    exporter_reading,
    fast_rules,
    last_rule_evaluation,
    prometheus_process,
    query,
)

pytestmark = pytest.mark.e2e

SUB = "acme-prod"
KEY = "e2e-alerting-key-31415"


def latest(receiver, alertname, **labels):
    """The newest delivered state of the alert matching the labels, or None."""
    found = None
    for path, alert in receiver.alerts():
        if alert["labels"].get("alertname") == alertname and all(
            alert["labels"].get(k) == v for k, v in labels.items()
        ):
            found = (path, alert)
    return found


def wait_for_status(receiver, status, alertname, timeout=120, **labels):
    def arrived():
        hit = latest(receiver, alertname, **labels)
        return hit if hit and hit[1]["status"] == status else None

    return wait_until(arrived, timeout=timeout, interval=0.5, what=f"{alertname} {status}")


def test_faults_become_alerts_and_resolve(tmp_path):
    find_tool("prometheus")
    find_tool("alertmanager")
    # The numbers stand still: on the real clock the victim, healthy in the snapshot read
    # first, could start a simulated outage (or take the moving unhealthy role) before the
    # exporter's later reads, and its alert would never resolve.
    frozen = time.time()
    with (
        Simulator(subaccounts={SUB: 20}, api_key=KEY, seed=3, clock=lambda: frozen) as sim,
        exporter_reading(tmp_path, sim.base_url, KEY, "--subaccount", SUB) as exporter_url,
        WebhookReceiver() as receiver,
        alertmanager_process(tmp_path, alertmanager_config(receiver.url)) as am_url,
        prometheus_process(tmp_path, exporter_url, fast_rules(tmp_path, "2s"), am_url) as prom_url,
    ):
        wait_until(
            lambda: query(prom_url, f'eightbyeight_up{{subaccount="{SUB}"}} == 1'),
            timeout=60,
            what="Prometheus scraping the exporter",
        )
        healthy = [
            n["msisdn"]
            for n in sim.snapshot(SUB)["numbers"]
            if n.get("numberHealthCheckEnabled") and (n.get("numberHealth") or {}).get("isHealthy")
        ]
        victim = healthy[0]

        # A number turns unhealthy: a warning for that number, naming it, reaches the tickets.
        sim.set_faults({"unhealthy": [victim]})
        path, alert = wait_for_status(
            receiver, "firing", "EightByEightNumberUnhealthy", msisdn=victim, subaccount=SUB
        )
        assert path == "/team-tickets"
        assert alert["labels"]["severity"] == "warning"
        assert victim in alert["annotations"]["summary"] + alert["annotations"]["description"]
        assert alert["annotations"]["runbook_url"].endswith("#eightbyeightnumberunhealthy")

        sim.clear_faults()
        wait_for_status(
            receiver, "resolved", "EightByEightNumberUnhealthy", msisdn=victim, subaccount=SUB
        )

        # The API rejects the key: a critical authentication alert pages, not a plain outage.
        sim.set_faults({"status": 401})
        path, alert = wait_for_status(
            receiver, "firing", "EightByEightApiAuthenticationFailed", subaccount=SUB
        )
        assert path == "/oncall-pager"
        assert alert["labels"]["severity"] == "critical"
        assert SUB in alert["annotations"]["description"]
        assert "401" in alert["annotations"]["description"]
        # A wrongly firing ApiDown must not slip in later. Its expression needs only
        # eightbyeight_up == 0, which holds no later than the auth alert's, and both have the
        # same shortened `for:`, so it would fire at the same evaluation or earlier and reach
        # Alertmanager then. Wait for two more rule evaluations plus group_wait (1 s) to cover
        # evaluation jitter and the webhook's grouping delay, then ask Alertmanager's alerts API
        # (which also lists inhibited alerts), Prometheus (pending or firing) and the webhook.
        settled = time.time() + 2 * 1.0 + 1.0
        wait_until(
            lambda: last_rule_evaluation(prom_url, "EightByEightApiDown") > settled,
            timeout=30,
            what="two more rule evaluations and group_wait",
        )
        assert alertmanager_alerts(am_url, "EightByEightApiDown") == []
        api_down = f'ALERTS{{alertname="EightByEightApiDown",subaccount="{SUB}"}}'
        assert query(prom_url, api_down) == []
        assert latest(receiver, "EightByEightApiDown", subaccount=SUB) is None

        sim.clear_faults()
        wait_for_status(receiver, "resolved", "EightByEightApiAuthenticationFailed", subaccount=SUB)
        assert query(prom_url, f'eightbyeight_up{{subaccount="{SUB}"}} == 1')


def test_a_low_prepaid_balance_becomes_a_delivered_alert(tmp_path):
    """Simulator balance endpoint -> exporter (--balance.account-id) -> Prometheus with the
    shipped rules -> Alertmanager -> the tickets receiver."""
    find_tool("prometheus")
    find_tool("alertmanager")
    account = "5f0c2a51-3b9e-4c7d-9a61-0e2f8b7c4d13"
    with Simulator(subaccounts={SUB: 5}, api_key=KEY, seed=3) as sim:
        sim.set_balance(7.5, "USD")
        args = ["--subaccount", SUB, "--balance.account-id", account,
                "--balance.base-url", sim.base_url, "--balance.interval", "1m"]  # fmt: skip
        with (
            exporter_reading(tmp_path, sim.base_url, KEY, *args) as exporter_url,
            WebhookReceiver() as receiver,
            alertmanager_process(tmp_path, alertmanager_config(receiver.url)) as am_url,
            prometheus_process(
                tmp_path, exporter_url, fast_rules(tmp_path, "2s"), am_url
            ) as prom_url,
        ):
            wait_until(
                lambda: query(prom_url, "eightbyeight_account_balance_up == 1"),
                timeout=60,
                what="Prometheus scraping the balance",
            )
            path, alert = wait_for_status(receiver, "firing", "EightByEightBalanceLow")
            assert path == "/team-tickets"
            assert alert["labels"]["severity"] == "warning"
            assert alert["labels"]["currency"] == "USD"
            assert alert["annotations"]["summary"] == "The 8x8 prepaid balance is low."
            assert "(7.50 now)" in alert["annotations"]["description"]
            assert alert["annotations"]["runbook_url"].endswith("#eightbyeightbalancelow")
            # The numbers are read as ever: the balance has its own up.
            assert query(prom_url, f'eightbyeight_up{{subaccount="{SUB}"}} == 1')
