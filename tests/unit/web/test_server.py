"""The real exporter process, started on a free port and scraped over HTTP."""

import json
from contextlib import contextmanager
from types import SimpleNamespace

import pytest
import requests

from tests.support.exporters import exporter_process, parse_samples, value
from tests.support.fake_api import FakeApi, Reply, number, numbers_body

pytestmark = pytest.mark.slow

KEY = "server-test-key-9f8e7d6c"


@contextmanager
def exporter(tmp_path, *args, env=None):
    log = tmp_path / "exporter.log"
    with exporter_process(args, {"EIGHTBYEIGHT_API_KEY": KEY, **(env or {})}, log) as (url, _):
        yield SimpleNamespace(url=url, log=log)


def metrics(url, path="/metrics", **kwargs):
    response = requests.get(url + path, timeout=10, **kwargs)
    assert response.status_code == 200, response.text
    return response, parse_samples(response.text)


get = value


@pytest.fixture
def api():
    records = [
        number("+6531230001"),
        number("+6531230002", numberHealth={"isHealthy": False, "status": "Unreachable"}),
        number("+14155550100", countryCode="US", numberType="Local", rentalPrice=1.5),
    ]
    with FakeApi(Reply.json(numbers_body(records))) as fake:
        yield fake


def test_metrics_over_http_match_the_payload(tmp_path, api):
    with exporter(tmp_path, "--api.base-url", api.base_url, "--subaccount", "acme-prod") as proc:
        assert api.count == 0, "start-up must not call the API"
        response, p = metrics(proc.url)
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        sub = {"subaccount": "acme-prod"}
        assert get(p, "eightbyeight_up", **sub) == 1
        assert get(p, "eightbyeight_virtual_numbers", **sub) == 3
        sg = {"country": "SG", "number_type": "Mobile", **sub}
        assert get(p, "eightbyeight_virtual_numbers_unhealthy", **sg) == 1
        assert get(p, "eightbyeight_virtual_numbers_healthy", **sg) == 1
        us = {"country": "US", "number_type": "Local", "currency": "USD", **sub}
        assert get(p, "eightbyeight_monthly_rental_cost", **us) == 1.5
        assert get(p, "eightbyeight_number_healthy", msisdn="+6531230002", **sub) == 0
        assert get(p, "eightbyeight_api_requests_total", **sub) == 1
        assert get(p, "eightbyeight_api_request_duration_seconds_count", **sub) == 1
        assert any(name == "eightbyeight_exporter_build_info" for name, _ in p)
        assert api.count == 1
        path, headers = api.requests[0]
        assert path == "/api/v1/subaccounts/acme-prod/numbers"
        assert headers["Authorization"] == f"Bearer {KEY}"


def test_probe_returns_only_that_subaccount(tmp_path, api):
    with exporter(tmp_path, "--api.base-url", api.base_url, "--subaccount", "acme-prod") as proc:
        _, p = metrics(proc.url, "/probe?target=other-sub")
        subs = {dict(labels).get("subaccount") for _, labels in p}
        assert subs == {"other-sub"}
        assert get(p, "eightbyeight_up", subaccount="other-sub") == 1
        assert not any(name.startswith("eightbyeight_api_") for name, _ in p)
        assert api.requests[-1][0] == "/api/v1/subaccounts/other-sub/numbers"


@pytest.mark.parametrize(
    "query",
    ["", "?target=", "?target=ab", "?target=a%2Fb-c", "?target=x&target=y", "?target=%ff%fe"],
)
def test_invalid_probe_target_is_400_without_upstream_call(tmp_path, api, query):
    with exporter(tmp_path, "--api.base-url", api.base_url) as proc:
        response = requests.get(f"{proc.url}/probe{query}", timeout=10)
        assert response.status_code == 400
        assert api.count == 0


def test_probe_with_ampersand_target(tmp_path, api):
    with exporter(tmp_path, "--api.base-url", api.base_url) as proc:
        _, p = metrics(proc.url, "/probe?target=a%26b-c")
        assert get(p, "eightbyeight_up", subaccount="a&b-c") == 1
        assert api.requests[-1][0] == "/api/v1/subaccounts/a%26b-c/numbers"


def test_without_subaccounts_metrics_has_only_exporter_series(tmp_path, api):
    with exporter(tmp_path, "--api.base-url", api.base_url) as proc:
        _, p = metrics(proc.url)
        assert not any(name == "eightbyeight_up" for name, _ in p)
        assert any(name == "eightbyeight_exporter_build_info" for name, _ in p)
        assert api.count == 0


def test_upstream_failure_is_up_0_counted_and_logged_once(tmp_path):
    envelope = {
        "statusCode": 401,
        "statusMessage": "Authentication header not found or token invalid",
    }
    with (
        FakeApi(Reply.json(envelope, status=401)) as api,
        exporter(tmp_path, "--api.base-url", api.base_url, "--subaccount", "acme-prod") as proc,
    ):
        response, p = metrics(proc.url)
        sub = {"subaccount": "acme-prod"}
        assert get(p, "eightbyeight_up", **sub) == 0
        assert get(p, "eightbyeight_virtual_numbers", **sub) is None
        reason = {"reason": "unauthorized", **sub}
        assert get(p, "eightbyeight_api_request_failures_total", **reason) == 1
        assert KEY not in response.text
    lines = [
        line for line in proc.log.read_text().splitlines() if "reading virtual numbers" in line
    ]
    assert len(lines) == 1
    assert "subaccount=acme-prod" in lines[0]
    assert "status=401" in lines[0]
    assert "reason=unauthorized" in lines[0]
    assert KEY not in proc.log.read_text()


def test_per_number_series_can_be_switched_off(tmp_path, api):
    args = (
        "--api.base-url",
        api.base_url,
        "--subaccount",
        "acme-prod",
        "--no-collector.per-number",
    )
    with exporter(tmp_path, *args) as proc:
        response, p = metrics(proc.url)
        assert "eightbyeight_number_" not in response.text
        assert get(p, "eightbyeight_virtual_numbers", subaccount="acme-prod") == 3


def test_json_logs(tmp_path, api):
    with exporter(tmp_path, "--api.base-url", api.base_url, "--log.format", "json") as proc:
        pass
    lines = proc.log.read_text().splitlines()
    assert lines
    for line in lines:
        entry = json.loads(line)
        assert {"ts", "level", "msg"} <= entry.keys()


def test_landing_health_and_errors(tmp_path, api):
    with exporter(tmp_path, "--api.base-url", api.base_url, "--subaccount", "acme-prod") as proc:
        landing = requests.get(proc.url + "/", timeout=5)
        assert landing.status_code == 200
        assert 'href="/metrics"' in landing.text
        assert 'href="/probe?target=acme-prod"' in landing.text
        assert requests.get(proc.url + "/-/healthy", timeout=5).text == "OK\n"
        assert requests.get(proc.url + "/nope", timeout=5).status_code == 404
        assert requests.post(proc.url + "/metrics", timeout=5).status_code == 405
        assert api.count == 0


def test_gzip_when_asked(tmp_path, api):
    with exporter(tmp_path, "--api.base-url", api.base_url, "--subaccount", "acme-prod") as proc:
        response = requests.get(
            proc.url + "/metrics", headers={"Accept-Encoding": "gzip"}, timeout=5
        )
        assert response.headers["Content-Encoding"] == "gzip"
        assert 'eightbyeight_up{subaccount="acme-prod"} 1.0' in response.text  # decoded
        plain = requests.get(
            proc.url + "/metrics", headers={"Accept-Encoding": "identity"}, timeout=5
        )
        assert "Content-Encoding" not in plain.headers


def test_custom_telemetry_path(tmp_path, api):
    args = ("--api.base-url", api.base_url, "--web.telemetry-path", "/x/metrics")
    with exporter(tmp_path, *args) as proc:
        assert requests.get(proc.url + "/x/metrics", timeout=5).status_code == 200
        assert requests.get(proc.url + "/metrics", timeout=5).status_code == 404


def test_failure_counters_start_at_zero_for_configured_subaccounts(tmp_path, api):
    with exporter(tmp_path, "--api.base-url", api.base_url, "--subaccount", "acme-prod") as proc:
        _, p = metrics(proc.url)
        for reason in ("unauthorized", "forbidden", "timeout", "invalid_response"):
            labels = {"subaccount": "acme-prod", "reason": reason}
            assert get(p, "eightbyeight_api_request_failures_total", **labels) == 0
