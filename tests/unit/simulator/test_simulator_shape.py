"""The simulator answers in the documented shapes: list and single-number bodies, field types,
valid E.164 numbers per country, RFC 3339 millisecond times, both error envelopes, auth and ID
validation. Real HTTP on 127.0.0.1."""

from __future__ import annotations

import datetime
import http.client
import re
import socket
import struct
import uuid

import pytest
import requests

from exporter.simulator import Simulator, list_body
from exporter.simulator.server import is_loopback
from tests.support.processes import wait_until

KEY = "test-key-123"
AUTH = {"Authorization": f"Bearer {KEY}"}
NOW = 1_795_000_000.0  # 2026-11-18, fixed so every run sees the same inventory
TIME_FORMAT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

# Written from the national numbering plans, independently of the generator's own table:
# calling code and the allowed lengths of the national significant number.
E164_PLANS = {
    "SG": ("65", {8, 11}),
    "US": ("1", {10}),
    "GB": ("44", {9, 10}),
    "DE": ("49", set(range(7, 12))),
    "AU": ("61", {9, 10}),
    "PH": ("63", {9, 10}),
    "ID": ("62", set(range(9, 13))),
    "JP": ("81", {9, 10}),
    "HK": ("852", {8, 9}),
    "FR": ("33", {9}),
}

RECORD_TYPES = {
    "msisdn": str,
    "dateCreated": str,
    "dateUpdated": str,
    "countryCode": str,
    "operationalStatus": str,
    "referenceId": str,
    "rentalPrice": (int, float),
    "incomingRate": (int, float),
    "billingUnit": int,
    "uri": str,
    "numberHealthCheckEnabled": bool,
    "billingCurrency": str,
    "numberType": str,
}


@pytest.fixture(scope="module")
def sim():
    with Simulator(
        subaccounts={"acme-prod": 60, "acme-dev": 25, "a&b.c_d-1": 20},
        api_key=KEY,
        seed=7,
        clock=lambda: NOW,
    ) as simulator:
        yield simulator


def list_url(sim: Simulator, raw_id: str) -> str:
    return f"{sim.base_url}/api/v1/subaccounts/{raw_id}/numbers"


def get_list(sim: Simulator, raw_id: str = "acme-prod", **kwargs) -> requests.Response:
    kwargs.setdefault("headers", AUTH)
    return requests.get(list_url(sim, raw_id), timeout=10, **kwargs)


def parse_time(text: str) -> datetime.datetime:
    assert TIME_FORMAT.match(text), text
    parsed = datetime.datetime.fromisoformat(text)
    assert parsed.utcoffset() == datetime.timedelta(0)
    return parsed


def test_list_top_level_fields_and_types(sim):
    response = get_list(sim)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert list(body) == ["totalNumbers", "lastUpdatedAt", "numbers", "statusCode", "statusMessage"]
    assert body["totalNumbers"] == 60 == len(body["numbers"])
    assert type(body["totalNumbers"]) is int
    assert body["statusCode"] == 0
    assert type(body["statusCode"]) is int
    assert body["statusMessage"] == "OK"
    assert parse_time(body["lastUpdatedAt"]).timestamp() <= NOW


def test_every_record_field_has_its_documented_type(sim):
    numbers = get_list(sim).json()["numbers"]
    for record in numbers:
        for name, kind in RECORD_TYPES.items():
            assert isinstance(record[name], kind), (name, record)
            if kind is int:
                assert not isinstance(record[name], bool)
        assert set(record) - set(RECORD_TYPES) <= {"numberHealth"}
        health = record.get("numberHealth")
        if record["numberHealthCheckEnabled"]:
            assert isinstance(health, dict)
            assert set(health) == {"isHealthy", "status", "lastCheckedTime"}
            assert isinstance(health["isHealthy"], bool)
            assert isinstance(health["status"], str)
            assert health["status"]
            parse_time(health["lastCheckedTime"])
        else:
            assert health is None  # null or left out


def test_disabled_numbers_send_null_or_leave_health_out(sim):
    served = get_list(sim, "acme-prod").json()["numbers"]
    assert any(not r["numberHealthCheckEnabled"] for r in served)
    numbers = list_body(7, "acme-big", 2_000, NOW, "http://sim")["numbers"]
    disabled = [r for r in numbers if not r["numberHealthCheckEnabled"]]
    assert any("numberHealth" not in r for r in disabled)
    assert any("numberHealth" in r and r["numberHealth"] is None for r in disabled)
    assert all(
        r.get("numberHealth") is None
        for r in disabled + served
        if not r["numberHealthCheckEnabled"]
    )


def test_values_are_plausible(sim):
    numbers = get_list(sim).json()["numbers"]
    assert {r["operationalStatus"] for r in numbers} <= {
        "Active",
        "Expiring",
        "Inactive",
        "Unhealthy",
    }
    assert {r["billingUnit"] for r in numbers} <= {1, 60}
    for record in numbers:
        assert re.fullmatch(r"[A-Z]{3}", record["billingCurrency"])
        assert record["rentalPrice"] > 0
        assert record["incomingRate"] > 0
        assert record["numberType"] in {"Local", "Mobile", "TollFree"}
        uuid.UUID(record["referenceId"])
        created, updated = parse_time(record["dateCreated"]), parse_time(record["dateUpdated"])
        assert created <= updated
        assert updated.timestamp() <= NOW
    assert len({r["msisdn"] for r in numbers}) == len(numbers)


def test_msisdns_are_valid_e164_for_their_country(sim):
    numbers = []
    for raw_id in ("acme-prod", "acme-dev"):
        numbers += get_list(sim, raw_id).json()["numbers"]
    # A large inventory reaches every country and number type of the plan.
    numbers += list_body(7, "acme-big", 5_000, NOW, "http://sim")["numbers"]
    for record in numbers:
        check_e164(record)
    assert len({r["countryCode"] for r in numbers}) >= 8
    assert {r["numberType"] for r in numbers} == {"Local", "Mobile", "TollFree"}


def check_e164(record: dict) -> None:
    msisdn, country = record["msisdn"], record["countryCode"]
    assert re.fullmatch(r"\+[1-9][0-9]{6,14}", msisdn), msisdn
    calling_code, lengths = E164_PLANS[country]
    assert msisdn.startswith("+" + calling_code), (country, msisdn)
    national = msisdn[1 + len(calling_code) :]
    assert len(national) in lengths, (country, msisdn)
    assert national[0] != "0", msisdn  # the trunk prefix never appears in E.164
    if country == "US":
        area, exchange = national[:3], national[3:6]
        assert re.fullmatch(r"[2-9][0-8][0-9]", area), msisdn
        assert re.fullmatch(r"[2-9][0-9][0-9]", exchange), msisdn
        assert exchange[1:] != "11", msisdn


def test_uri_points_at_the_single_number_endpoint(sim):
    record = get_list(sim).json()["numbers"][3]
    assert record["uri"] == f"{sim.base_url}/api/v1/subaccounts/acme-prod/numbers/" + record[
        "msisdn"
    ].lstrip("+")
    response = requests.get(record["uri"], headers=AUTH, timeout=10)
    assert response.status_code == 200
    body = response.json()
    assert list(body) == ["statusCode", "statusMessage", "timestamp", "payload"]
    assert body["statusCode"] == 0
    assert body["statusMessage"] == "OK"
    parse_time(body["timestamp"])
    assert body["payload"] == {
        "referenceId": record["referenceId"],
        "msisdn": record["msisdn"],
        "countryCode": record["countryCode"],
    }


def test_single_number_accepts_plus_and_reports_unknown_numbers(sim):
    msisdn = get_list(sim).json()["numbers"][0]["msisdn"]
    with_plus = requests.get(
        list_url(sim, "acme-prod") + "/%2B" + msisdn[1:], headers=AUTH, timeout=10
    )
    assert with_plus.status_code == 200
    assert with_plus.json()["payload"]["msisdn"] == msisdn
    unknown = requests.get(list_url(sim, "acme-prod") + "/6500000000", headers=AUTH, timeout=10)
    assert unknown.status_code == 404
    body = unknown.json()
    assert body["statusCode"] == 404
    assert "not found" in body["statusMessage"]
    parse_time(body["timestamp"])
    bad = requests.get(list_url(sim, "acme-prod") + "/not-a-number", headers=AUTH, timeout=10)
    assert bad.status_code == 400


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": KEY},
        {"Authorization": f"Basic {KEY}"},
        {"Authorization": "Bearer "},
    ],
    ids=["missing", "wrong-key", "no-scheme", "basic", "empty-token"],
)
def test_unauthorised_requests_get_401_voice_envelope(sim, headers):
    response = get_list(sim, headers=headers)
    assert response.status_code == 401
    assert response.json() == {
        "statusCode": 401,
        "statusMessage": "Authentication header not found or token invalid",
    }


def test_bearer_scheme_is_case_insensitive(sim):
    assert get_list(sim, headers={"Authorization": f"bearer {KEY}"}).status_code == 200


def test_unknown_subaccount_gets_404_voice_envelope(sim):
    response = get_list(sim, "acme-unknown")
    assert response.status_code == 404
    assert response.json() == {
        "statusCode": 404,
        "statusMessage": "SubAccount not found by Id : acme-unknown",
    }


@pytest.mark.parametrize(
    "raw_id",
    ["ab", "a" * 51, "acme%20prod", "acme%2Fprod", "acme%24", "%C3%A9t%C3%A9"],
    ids=["too-short", "too-long", "space", "slash", "dollar", "non-ascii"],
)
def test_ids_failing_the_pattern_get_400(sim, raw_id):
    response = get_list(sim, raw_id)
    assert response.status_code == 400
    body = response.json()
    assert body["statusCode"] == 400
    assert "subAccountId" in body["statusMessage"]


def test_ampersand_in_an_id_works_percent_encoded(sim):
    response = get_list(sim, "a%26b.c_d-1")
    assert response.status_code == 200
    body = response.json()
    assert body["totalNumbers"] == 20
    assert "/subaccounts/a%26b.c_d-1/numbers/" in body["numbers"][0]["uri"]
    assert sim.request_count("a&b.c_d-1") >= 1


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/api/v1/subaccounts/acme-prod",
        "/api/v1/subaccounts/acme-prod/numbers/",
        "/api/v2/x",
        "/metrics",
    ],
)
def test_unknown_paths_get_404(sim, path):
    response = requests.get(sim.base_url + path, headers=AUTH, timeout=10)
    assert response.status_code == 404
    assert response.json()["statusCode"] == 404


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_methods_other_than_get_get_405(sim, method):
    response = requests.request(method, list_url(sim, "acme-prod"), headers=AUTH, timeout=10)
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET"
    assert response.json()["statusCode"] == 405


def test_head_gets_405_without_body(sim):
    response = requests.head(list_url(sim, "acme-prod"), headers=AUTH, timeout=10)
    assert response.status_code == 405
    assert response.content == b""


def test_keep_alive_connection_serves_many_requests(sim):
    with requests.Session() as session:
        for _ in range(5):
            assert session.get(list_url(sim, "acme-dev"), headers=AUTH, timeout=10).ok


def test_loopback_detection_for_the_admin_api():
    assert is_loopback("127.0.0.1")
    assert is_loopback("127.8.9.1")
    assert is_loopback("::1")
    assert is_loopback("::ffff:127.0.0.1")
    assert not is_loopback("10.0.0.1")
    assert not is_loopback("192.168.1.5")
    assert not is_loopback("not-an-ip")


def test_admin_healthy_answers_on_loopback(sim):
    response = requests.get(sim.admin_url + "/healthy", timeout=10)
    assert response.status_code == 200
    assert response.text == "OK\n"


def test_a_client_resetting_a_kept_alive_connection_prints_no_traceback(sim, capfd):
    """An exporter that stops with its pooled connections open resets them."""
    port = int(sim.base_url.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(
        "GET", "/api/v1/subaccounts/acme-dev/numbers", headers={"Authorization": f"Bearer {KEY}"}
    )
    response = conn.getresponse()
    assert response.status == 200
    response.read()  # the whole answer: the server now waits for the next request
    # Close with a reset (linger 0), as a process that exits does.
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()
    # Once the server has let go of the reset connection, its thread has handled the reset.
    server = sim._servers[0]
    wait_until(lambda: not server._connections, timeout=10, interval=0.01, what="the reset")
    assert "Traceback" not in capfd.readouterr().err


def test_kept_alive_answers_are_sent_without_waiting_for_an_ack(sim):
    """Headers and body are two writes: with Nagle's algorithm on, every kept-alive fetch
    waited 40 ms for the client's delayed ACK. The server's side of the connection has it off."""
    port = int(sim.base_url.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        for _ in range(2):
            conn.request("GET", "/api/v1/subaccounts/acme-dev/numbers", headers=AUTH)
            response = conn.getresponse()
            assert response.status == 200
            response.read()
        server = sim._servers[0]
        with server._connections_lock:
            connections = list(server._connections)
        assert len(connections) == 1
        assert connections[0].getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        conn.close()
