"""Every fault kind, set through the constructor scenario, a YAML scenario file, the admin
endpoint and `set_faults`; clearing restores healthy answers; the admin API and its stats."""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
import uuid

import pytest
import requests
import yaml

from exporter.simulator import FaultError, ScenarioError, Simulator, list_body

KEY = "k-faults"
AUTH = {"Authorization": f"Bearer {KEY}"}
SEED = 5
T0 = 1_795_000_000.0
SUBACCOUNTS = {"acme-prod": 60, "acme-dev": 25}
BASELINE = list_body(SEED, "acme-prod", 60, T0, "http://any")["numbers"]
DISABLED = next(r["msisdn"] for r in BASELINE if not r["numberHealthCheckEnabled"])
HEALTHY = [
    r["msisdn"] for r in BASELINE if r.get("numberHealth") and r["numberHealth"]["isHealthy"]
]
ACTIVE = next(r["msisdn"] for r in BASELINE if r["operationalStatus"] == "Active")


def clock() -> float:
    return T0


def url(sim: Simulator, subaccount: str = "acme-prod", suffix: str = "") -> str:
    return f"{sim.base_url}/api/v1/subaccounts/{subaccount}/numbers{suffix}"


def get(sim: Simulator, subaccount: str = "acme-prod", **kwargs) -> requests.Response:
    kwargs.setdefault("headers", AUTH)
    return requests.get(url(sim, subaccount), timeout=30, **kwargs)


@contextlib.contextmanager
def simulator_with(route: str, document: dict, tmp_path):
    """A running simulator whose faults were set through `route`."""
    kwargs = {"seed": SEED, "clock": clock}
    if route == "constructor":
        sim = Simulator(SUBACCOUNTS, KEY, scenario=document, **kwargs)
    elif route == "yaml-file":
        path = tmp_path / "scenario.yaml"
        path.write_text(yaml.safe_dump(document))
        sim = Simulator(SUBACCOUNTS, KEY, scenario=path, **kwargs)
    else:
        sim = Simulator(SUBACCOUNTS, KEY, **kwargs)
    with sim:
        if route == "admin":
            response = requests.put(sim.admin_url + "/faults", json=document, timeout=10)
            assert response.status_code == 200, response.text
        elif route == "set_faults":
            sim.set_faults(document)
        yield sim


LATENCY = 0.1  # long enough to measure, short enough for the inner loop


def check_latency(sim):
    started = time.monotonic()
    response = get(sim)
    assert time.monotonic() - started >= LATENCY
    assert response.status_code == 200


def check_voice_503(sim):
    response = get(sim)
    assert response.status_code == 503
    assert response.json() == {"statusCode": 503, "statusMessage": "Service Unavailable"}
    assert "Retry-After" not in response.headers
    assert get(sim, "acme-dev").status_code == 200  # scoped to acme-prod


def check_429_default_retry_after(sim):
    response = get(sim)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "1"
    assert response.json()["statusCode"] == 429


def check_retry_after(sim):
    response = get(sim)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "30"


def check_429_without_retry_after(sim):
    response = get(sim)
    assert response.status_code == 429
    assert "Retry-After" not in response.headers


def check_platform_envelope(sim):
    response = get(sim)
    assert response.status_code == 500
    body = response.json()
    assert list(body) == ["code", "message", "errorId", "timestamp"]
    assert body["code"] == 500
    assert body["message"] == "boom"
    uuid.UUID(body["errorId"])
    assert body["timestamp"].endswith("Z")


def check_voice_422(sim):
    response = get(sim)
    assert response.status_code == 422
    body = response.json()
    assert body["statusCode"] == "1001"
    assert isinstance(body["statusMessage"], str)
    uuid.UUID(body["errorId"])


def check_html_502(sim):
    response = get(sim)
    assert response.status_code == 502
    assert response.headers["Content-Type"].startswith("text/html")
    assert "<html>" in response.text
    assert "502 Bad Gateway" in response.text


def check_html_504(sim):
    response = get(sim)
    assert response.status_code == 504
    assert response.headers["Content-Type"].startswith("text/html")


def check_empty_200(sim):
    response = get(sim)
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["Content-Length"] == "0"


def check_empty_503(sim):
    response = get(sim)
    assert response.status_code == 503
    assert response.content == b""


def check_invalid_json(sim):
    response = get(sim)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)


def check_truncated_json(sim):
    truncated = get(sim).content
    sim.clear_faults()
    full = get(sim).content
    assert truncated == full[: len(full) // 2]
    with pytest.raises(json.JSONDecodeError):
        json.loads(truncated)


def check_malformed_each_kind(sim):
    body = get(sim).json()
    assert body["totalNumbers"] == 60
    numbers = body["numbers"]
    assert len(numbers) == 60
    broken = [r for r in numbers if not isinstance(r, dict)]
    assert len(broken) == 1
    assert isinstance(broken[0], str)
    dicts = [r for r in numbers if isinstance(r, dict)]
    assert sum("msisdn" not in r for r in dicts) == 1
    assert sum(isinstance(r.get("rentalPrice"), str) for r in dicts) == 1
    assert sum(isinstance(r.get("msisdn"), int) for r in dicts) == 1


def count_broken(numbers: list) -> int:
    return sum(
        not isinstance(r, dict)
        or "msisdn" not in r
        or not isinstance(r["msisdn"], str)
        or not isinstance(r["rentalPrice"], float | int)
        for r in numbers
    )


def check_malformed_fraction(sim):
    numbers = get(sim).json()["numbers"]
    assert count_broken(numbers) == 6


def check_malformed_chosen_kind(sim):
    numbers = get(sim).json()["numbers"]
    assert sum("msisdn" not in r for r in numbers) == 3
    assert count_broken(numbers) == 3


def check_numbers(sim):
    body = get(sim).json()
    assert body["totalNumbers"] == 1_000
    assert len(body["numbers"]) == 1_000
    assert len({r["msisdn"] for r in body["numbers"]}) == 1_000


def check_unhealthy_list(sim):
    numbers = {r["msisdn"]: r for r in get(sim).json()["numbers"]}
    for msisdn in (HEALTHY[0], DISABLED):
        record = numbers[msisdn]
        assert record["numberHealthCheckEnabled"] is True
        assert record["numberHealth"]["isHealthy"] is False
        assert record["numberHealth"]["status"] == "Unreachable"
    assert numbers[HEALTHY[1]]["numberHealth"]["isHealthy"] is True


def check_unhealthy_count(sim):
    numbers = get(sim).json()["numbers"]
    assert all(r["numberHealth"]["isHealthy"] is False for r in numbers[:3])


def check_expiring(sim):
    numbers = {r["msisdn"]: r for r in get(sim).json()["numbers"]}
    assert numbers[ACTIVE]["operationalStatus"] == "Expiring"


def check_remove(sim):
    body = get(sim).json()
    assert body["totalNumbers"] == 57
    assert [r["msisdn"] for r in body["numbers"]] == [r["msisdn"] for r in BASELINE[:57]]
    gone = BASELINE[-1]["msisdn"].lstrip("+")
    assert requests.get(url(sim, suffix="/" + gone), headers=AUTH, timeout=10).status_code == 404


def check_total_numbers(sim):
    body = get(sim).json()
    assert body["totalNumbers"] == 99
    assert len(body["numbers"]) == 60


def only(subaccount_faults: dict) -> dict:
    return {"subaccounts": {"acme-prod": subaccount_faults}}


FAULT_CASES = {
    "latency": ({"global": {"latency_seconds": LATENCY}}, check_latency),
    "status-voice": (only({"status": 503}), check_voice_503),
    "status-429": ({"status": 429}, check_429_default_retry_after),
    "retry-after": (only({"status": 503, "retry_after": 30}), check_retry_after),
    "retry-after-null": (only({"status": 429, "retry_after": None}), check_429_without_retry_after),
    "platform": (
        only({"status": 500, "envelope": "platform", "message": "boom"}),
        check_platform_envelope,
    ),
    "voice-422": (only({"status": 422}), check_voice_422),
    "html": (only({"html": True}), check_html_502),
    "html-status": (only({"html": True, "status": 504}), check_html_504),
    "empty-body": (only({"empty_body": True}), check_empty_200),
    "empty-body-status": (only({"empty_body": True, "status": 503}), check_empty_503),
    "invalid-json": (only({"invalid_json": True}), check_invalid_json),
    "truncated-json": (only({"truncated_json": True}), check_truncated_json),
    "malformed-count": (only({"malformed_records": 4}), check_malformed_each_kind),
    "malformed-fraction": (only({"malformed_records": 0.1}), check_malformed_fraction),
    "malformed-kind": (
        only({"malformed_records": {"count": 3, "kinds": ["missing_msisdn"]}}),
        check_malformed_chosen_kind,
    ),
    "numbers": (only({"numbers": 1_000}), check_numbers),
    "unhealthy-list": (
        only({"unhealthy": [HEALTHY[0], DISABLED.lstrip("+")]}),
        check_unhealthy_list,
    ),
    "unhealthy-count": (only({"unhealthy": 3}), check_unhealthy_count),
    "expiring": (only({"expiring": [ACTIVE]}), check_expiring),
    "remove": (only({"remove": 3}), check_remove),
    "total-numbers": (only({"total_numbers": 99}), check_total_numbers),
}


@pytest.mark.parametrize("route", ["constructor", "yaml-file", "admin", "set_faults"])
@pytest.mark.parametrize("case", list(FAULT_CASES))
def test_fault_kind(route, case, tmp_path):
    document, check = FAULT_CASES[case]
    with simulator_with(route, document, tmp_path) as sim:
        check(sim)
        sim.clear_faults()
        response = get(sim)
        assert response.status_code == 200
        assert (
            response.json()["numbers"]
            == list_body(SEED, "acme-prod", 60, T0, sim.base_url)["numbers"]
        )


def test_snapshot_includes_data_faults():
    with Simulator(SUBACCOUNTS, KEY, seed=SEED, clock=clock) as sim:
        sim.set_faults({"remove": 10, "expiring": [ACTIVE]}, subaccount="acme-prod")
        snapshot = sim.snapshot("acme-prod")
        assert snapshot == get(sim).json()
        assert snapshot["totalNumbers"] == 50
        assert sim.snapshot("acme-dev")["totalNumbers"] == 25


def test_status_faults_answer_before_auth_and_body_faults_spare_errors():
    with Simulator(SUBACCOUNTS, KEY, seed=SEED, clock=clock) as sim:
        sim.set_faults({"status": 503})
        assert get(sim, headers={}).status_code == 503
        sim.set_faults({"empty_body": True})
        unauthorised = get(sim, headers={})
        assert unauthorised.status_code == 401
        assert unauthorised.json()["statusCode"] == 401


def test_faults_apply_to_the_single_number_endpoint():
    with Simulator(SUBACCOUNTS, KEY, seed=SEED, clock=clock) as sim:
        single = url(sim, suffix="/" + BASELINE[0]["msisdn"].lstrip("+"))
        sim.set_faults({"status": 500}, subaccount="acme-prod")
        assert requests.get(single, headers=AUTH, timeout=10).status_code == 500
        sim.set_faults({"truncated_json": True}, subaccount="acme-prod")
        with pytest.raises(requests.JSONDecodeError):
            requests.get(single, headers=AUTH, timeout=10).json()


def test_global_and_subaccount_faults_merge_key_by_key():
    with Simulator(SUBACCOUNTS, KEY, seed=SEED, clock=clock) as sim:
        sim.set_faults(
            {
                "global": {"status": 503, "retry_after": 7},
                "subaccounts": {"acme-dev": {"status": 429}},
            }
        )
        prod, dev = get(sim), get(sim, "acme-dev")
        assert (prod.status_code, prod.headers["Retry-After"]) == (503, "7")
        assert (dev.status_code, dev.headers["Retry-After"]) == (429, "7")


def test_admin_fault_document_round_trip_and_partial_updates():
    with Simulator(SUBACCOUNTS, KEY, seed=SEED, clock=clock) as sim:
        admin = sim.admin_url + "/faults"
        assert requests.get(admin, timeout=10).json() == {"global": {}, "subaccounts": {}}
        flat = requests.put(admin, json={"latency_seconds": 0.1}, timeout=10).json()
        assert flat == {"global": {"latency_seconds": 0.1}, "subaccounts": {}}
        requests.put(admin + "?subaccount=acme-dev", json={"status": 500}, timeout=10)
        requests.put(admin + "?subaccount=acme-prod", json={"malformed_records": 2}, timeout=10)
        document = requests.get(admin, timeout=10).json()
        assert document["global"] == {"latency_seconds": 0.1}
        assert document["subaccounts"]["acme-dev"] == {"status": 500}
        assert document["subaccounts"]["acme-prod"] == {
            "malformed_records": {"kinds": list_kinds(), "count": 2}
        }
        assert sim.faults() == document
        cleared = requests.delete(admin + "?subaccount=acme-dev", timeout=10).json()
        assert "acme-dev" not in cleared["subaccounts"]
        assert requests.delete(admin, timeout=10).json() == {"global": {}, "subaccounts": {}}
        assert get(sim).status_code == 200


def list_kinds() -> list[str]:
    return ["not_object", "missing_msisdn", "string_for_number", "number_for_string"]


@pytest.mark.parametrize(
    ("document", "mentions"),
    [
        ({"fail_rate": 0.5}, "unknown fault 'fail_rate'"),
        ({"status": 200}, "faults.status"),
        ({"status": "503"}, "faults.status"),
        ({"latency_seconds": -1}, "faults.latency_seconds"),
        ({"envelope": "soap"}, "faults.envelope"),
        ({"html": True, "empty_body": True}, "cannot be combined"),
        ({"malformed_records": 1.5}, "faults.malformed_records"),
        ({"malformed_records": {"count": 1, "kinds": ["bad"]}}, "kinds"),
        ({"unhealthy": ["65 1234"]}, "faults.unhealthy"),
        ({"numbers": 2_000_000}, "faults.numbers"),
        ({"subaccounts": {"acme-prod": {"remove": -1}}}, "faults.subaccounts.acme-prod.remove"),
        ({"subaccounts": ["acme-prod"]}, "faults.subaccounts"),
        (["status"], "must be an object"),
    ],
)
def test_invalid_fault_documents_are_rejected_with_one_line(document, mentions):
    with Simulator(SUBACCOUNTS, KEY, seed=SEED, clock=clock) as sim:
        response = requests.put(sim.admin_url + "/faults", json=document, timeout=10)
        assert response.status_code == 400
        error = response.json()["error"]
        assert mentions in error
        assert "\n" not in error
        with pytest.raises(FaultError, match="faults"):
            sim.set_faults(document)
        assert sim.faults() == {"global": {}, "subaccounts": {}}


def test_admin_rejects_invalid_json_and_unknown_endpoints():
    with Simulator(SUBACCOUNTS, KEY, seed=SEED, clock=clock) as sim:
        bad = requests.put(sim.admin_url + "/faults", data=b"{not json", timeout=10)
        assert bad.status_code == 400
        assert "invalid JSON" in bad.json()["error"]
        assert requests.get(sim.admin_url + "/nothing", timeout=10).status_code == 404
        assert requests.post(sim.admin_url + "/faults", json={}, timeout=10).status_code == 405


def test_stats_count_requests_per_subaccount_path_and_status():
    with Simulator(SUBACCOUNTS, KEY, seed=SEED, clock=clock) as sim:
        for _ in range(3):
            get(sim)
        get(sim, "acme-dev", headers={})
        requests.get(url(sim, suffix="/" + BASELINE[0]["msisdn"][1:]), headers=AUTH, timeout=10)
        requests.post(url(sim), headers=AUTH, timeout=10)
        stats = requests.get(sim.admin_url + "/stats", timeout=10).json()
        assert stats["requests_total"] == 6
        assert stats["subaccounts"]["acme-prod"]["list"] == 3
        assert stats["subaccounts"]["acme-prod"]["single"] == 1
        assert stats["subaccounts"]["acme-dev"]["list"] == 1
        assert stats["paths"]["/api/v1/subaccounts/acme-prod/numbers"] == 4
        assert stats["statuses"] == {"200": 4, "401": 1, "405": 1}
        assert sim.request_count("acme-prod") == 3
        assert sim.request_count("acme-none") == 0
        reset = requests.post(sim.admin_url + "/stats/reset", timeout=10).json()
        assert reset["requests_total"] == 0
        assert sim.request_count("acme-prod") == 0


@pytest.mark.slow
def test_stats_record_concurrent_requests_in_flight():
    with Simulator(SUBACCOUNTS, KEY, seed=SEED, clock=clock) as sim:
        sim.set_faults({"latency_seconds": 0.5})
        threads = [threading.Thread(target=get, args=(sim,)) for _ in range(5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sim.stats()["subaccounts"]["acme-prod"]["max_in_flight"] == 5
        sim.reset_stats()
        get(sim)
        assert sim.stats()["subaccounts"]["acme-prod"]["max_in_flight"] == 1


def test_stop_does_not_wait_for_injected_latency():
    sim = Simulator(SUBACCOUNTS, KEY, seed=SEED, clock=clock).start()
    sim.set_faults({"latency_seconds": 60})
    outcome = []

    def slow_request():
        try:
            outcome.append(get(sim).status_code)
        except requests.RequestException as exc:
            outcome.append(type(exc).__name__)

    thread = threading.Thread(target=slow_request)
    thread.start()
    deadline = time.monotonic() + 10
    while sim.stats()["requests_total"] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    sim.stop()
    thread.join(timeout=60)
    # Waiting for the request would take the minute of latency; not waiting, never half of it.
    assert time.monotonic() - started < 30
    assert not thread.is_alive()
    assert outcome


def test_separate_admin_listener():
    with Simulator(SUBACCOUNTS, KEY, seed=SEED, clock=clock, admin_host="127.0.0.1") as sim:
        assert not sim.admin_url.startswith(sim.base_url)
        assert requests.get(sim.base_url + "/admin/faults", timeout=10).status_code == 404
        assert requests.put(sim.admin_url + "/faults", json={"status": 500}, timeout=10).ok
        assert get(sim).status_code == 500
        api_on_admin = (
            sim.admin_url.removesuffix("/admin") + "/api/v1/subaccounts/acme-prod/numbers"
        )
        assert requests.get(api_on_admin, headers=AUTH, timeout=10).status_code == 404


def test_scenario_file_errors_are_one_line(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("global:\n  status: [503\n")
    with pytest.raises(ScenarioError, match=r"invalid YAML at line \d+") as caught:
        Simulator(SUBACCOUNTS, KEY, scenario=broken)
    assert "\n" not in str(caught.value)
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("subaccounts:\n  acme-prod:\n    explode: true\n")
    with pytest.raises(
        ScenarioError, match=re.escape("scenario.subaccounts.acme-prod: unknown fault 'explode'")
    ):
        Simulator(SUBACCOUNTS, KEY, scenario=unknown)
    with pytest.raises(ScenarioError, match="cannot read"):
        Simulator(SUBACCOUNTS, KEY, scenario=tmp_path / "missing.yaml")
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with Simulator(SUBACCOUNTS, KEY, scenario=empty) as sim:
        assert sim.faults() == {"global": {}, "subaccounts": {}}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"subaccounts": {"ab": 5}, "api_key": KEY}, "must match"),
        ({"subaccounts": {"acme": -1}, "api_key": KEY}, "number count"),
        ({"subaccounts": {"acme": 5}, "api_key": ""}, "API key"),
        ({"subaccounts": {"acme": 5}, "api_key": KEY, "seed": "1"}, "seed"),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Simulator(**kwargs)
