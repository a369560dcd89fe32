"""The exporter against the simulator over real HTTP: healthy data, every fault, recovery.

One simulator and one exporter process serve every case; each case sets a fault, scrapes, and
checks what the exporter reports, then clears the fault and checks that the next scrape is good.
"""

import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from exporter.simulator import Simulator
from tests.support.stack import exporter_reading

pytestmark = pytest.mark.slow

SUB = "acme-prod"
KEY = "simulated-key-27182818"
NUMBERS = 40


@pytest.fixture(scope="module")
def sim():
    # The numbers stand still: they evolve every 5 s on the real clock, and a case compares the
    # simulator's snapshot, or an earlier scrape, with a later scrape.
    frozen = time.time()
    with Simulator(
        subaccounts={SUB: NUMBERS}, api_key=KEY, seed=5, clock=lambda: frozen
    ) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def exporter_url(sim, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("exporter")
    # 15 s: a 10,000-number body must be read and parsed in time on a busy machine (2 s was not,
    # beside a busy loop); the fault cases shorten their own budget with Prometheus' header.
    args = ("--subaccount", SUB, "--api.timeout", "15s", "--api.retries", "0")
    with exporter_reading(tmp, sim.base_url, KEY, *args) as url:
        yield url


def scrape(url, scrape_timeout: str | None = None):
    """The parsed /metrics; with `scrape_timeout`, sent as Prometheus sends its own."""
    headers = {"X-Prometheus-Scrape-Timeout-Seconds": scrape_timeout} if scrape_timeout else {}
    text = requests.get(f"{url}/metrics", headers=headers, timeout=30).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def one(parsed, name, **labels):
    return parsed.get((name, frozenset({"subaccount": SUB, **labels}.items())))


def total(parsed, name):
    return sum(
        v for (n, labels), v in parsed.items() if n == name and ("subaccount", SUB) in labels
    )


def failures(parsed, reason):
    return one(parsed, "eightbyeight_api_request_failures_total", reason=reason) or 0


@pytest.fixture
def clean(sim, exporter_url):
    sim.clear_faults()
    yield
    sim.clear_faults()
    after = scrape(exporter_url)
    assert one(after, "eightbyeight_up") == 1, "no recovery after the fault was cleared"
    assert one(after, "eightbyeight_invalid_records") == 0


def test_healthy_data_matches_the_simulator(sim, exporter_url, clean):
    snapshot = sim.snapshot(SUB)
    parsed = scrape(exporter_url)
    assert one(parsed, "eightbyeight_up") == 1
    assert one(parsed, "eightbyeight_virtual_numbers") == snapshot["totalNumbers"] == NUMBERS
    records = snapshot["numbers"]
    expiring = sum(r["operationalStatus"] == "Expiring" for r in records)
    assert total(parsed, "eightbyeight_virtual_numbers_expiring") == expiring > 0
    known = [r for r in records if r.get("numberHealthCheckEnabled") and r.get("numberHealth")]
    unhealthy = sum(not r["numberHealth"]["isHealthy"] for r in known)
    assert total(parsed, "eightbyeight_virtual_numbers_unhealthy") == unhealthy
    assert total(parsed, "eightbyeight_virtual_numbers_healthy") == len(known) - unhealthy
    disabled = sum(r.get("numberHealthCheckEnabled") is False for r in records)
    assert total(parsed, "eightbyeight_virtual_numbers_health_check_disabled") == disabled > 0
    cost = sum(r["rentalPrice"] for r in records)
    assert total(parsed, "eightbyeight_monthly_rental_cost") == pytest.approx(cost)
    first = records[0]
    assert (
        one(
            parsed,
            "eightbyeight_number_rental_price",
            msisdn=first["msisdn"],
            currency=first["billingCurrency"],
        )
        == first["rentalPrice"]
    )


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ({"status": 400}, "bad_request"),
        ({"status": 401}, "unauthorized"),
        ({"status": 403, "envelope": "platform"}, "forbidden"),
        ({"status": 404}, "not_found"),
        ({"status": 422}, "bad_request"),
        ({"status": 429, "retry_after": 1}, "rate_limited"),
        ({"status": 500}, "server_error"),
        ({"status": 503, "envelope": "platform"}, "server_error"),
        ({"html": True}, "server_error"),
        ({"invalid_json": True}, "invalid_response"),
        ({"truncated_json": True}, "invalid_response"),
        ({"empty_body": True}, "invalid_response"),
        ({"latency_seconds": 3}, "timeout"),
    ],
    ids=repr,
)
def test_fault_is_up_0_with_its_reason(sim, exporter_url, clean, fault, reason):
    before = failures(scrape(exporter_url), reason)
    sim.set_faults(fault)
    # A 2 s fetch budget (2.5 s less the default 0.5 s offset): the 3 s latency is a timeout.
    parsed = scrape(exporter_url, scrape_timeout="2.5")
    assert one(parsed, "eightbyeight_up") == 0
    assert one(parsed, "eightbyeight_virtual_numbers") is None
    assert failures(parsed, reason) == before + 1


def test_malformed_records_are_skipped_and_counted(sim, exporter_url, clean):
    sim.set_faults({"malformed_records": {"count": 4}})
    parsed = scrape(exporter_url)
    assert one(parsed, "eightbyeight_up") == 1
    assert one(parsed, "eightbyeight_invalid_records") == 4
    assert one(parsed, "eightbyeight_virtual_numbers_listed") == NUMBERS - 4


def test_data_faults_show_in_the_inventory(sim, exporter_url, clean):
    victim = sim.snapshot(SUB)["numbers"][1]["msisdn"]
    sim.set_faults({"unhealthy": [victim], "remove": 5, "total_numbers": 50})
    parsed = scrape(exporter_url)
    assert one(parsed, "eightbyeight_number_healthy", msisdn=victim) == 0
    assert one(parsed, "eightbyeight_virtual_numbers") == 50
    assert one(parsed, "eightbyeight_virtual_numbers_listed") == NUMBERS - 5


def test_expiring_fault(sim, exporter_url, clean):
    before = total(scrape(exporter_url), "eightbyeight_virtual_numbers_expiring")
    victims = [
        r["msisdn"] for r in sim.snapshot(SUB)["numbers"] if r["operationalStatus"] == "Active"
    ]
    sim.set_faults({"expiring": victims[:3]})
    assert total(scrape(exporter_url), "eightbyeight_virtual_numbers_expiring") == before + 3


def test_large_subaccount(sim, exporter_url, clean):
    sim.set_faults({"numbers": 10_000})
    parsed = scrape(exporter_url)
    assert one(parsed, "eightbyeight_up") == 1
    assert one(parsed, "eightbyeight_virtual_numbers_listed") == 10_000
