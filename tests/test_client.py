"""The HTTP client, with `responses` standing in for the network."""

import json

import pytest
import requests
import responses

from exporter.common.errors import FetchError
from exporter.config.values import Secret
from exporter.polling.client import ApiClient
from tests.harness import number, numbers_body

BASE = "https://voice.example.test"
KEY = "s3cr3t-key-value"
URL = f"{BASE}/api/v1/subaccounts/acme-prod/numbers"


def client(**kwargs):
    kwargs.setdefault("retries", 0)
    return ApiClient(BASE, Secret(KEY), **kwargs)


@responses.activate
def test_fetch_sends_bearer_key_and_returns_body():
    body = json.dumps(numbers_body([number()])).encode()
    responses.get(URL, body=body, content_type="application/json")
    assert client().fetch_numbers("acme-prod") == body
    sent = responses.calls[0].request
    assert sent.headers["Authorization"] == f"Bearer {KEY}"
    assert sent.headers["Accept"] == "application/json"
    assert sent.headers["User-Agent"].startswith("eightbyeight-exporter/")


@responses.activate
def test_ampersand_in_subaccount_is_percent_encoded():
    responses.get(f"{BASE}/api/v1/subaccounts/a%26b.c-d_e/numbers", body=b"{}")
    assert client().fetch_numbers("a&b.c-d_e") == b"{}"


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (400, "bad_request"),
        (401, "unauthorized"),
        (403, "forbidden"),
        (404, "not_found"),
        (410, "not_found"),
        (422, "bad_request"),
        (426, "client_error"),
        (429, "rate_limited"),
        (500, "server_error"),
        (503, "server_error"),
    ],
)
@responses.activate
def test_http_errors_map_to_reasons(status, reason):
    responses.get(URL, status=status, json={"statusCode": status, "statusMessage": "Nope"})
    with pytest.raises(FetchError) as caught:
        client().fetch_numbers("acme-prod")
    assert caught.value.reason == reason
    assert caught.value.status == status
    assert caught.value.detail == f"HTTP {status}: Nope"


@responses.activate
def test_platform_envelope_and_html_are_described():
    responses.get(URL, status=404, json={"code": 1404, "message": "SubAccount not found by Id : x"})
    with pytest.raises(FetchError) as caught:
        client().fetch_numbers("acme-prod")
    assert caught.value.detail == "HTTP 404: SubAccount not found by Id : x"
    responses.replace(responses.GET, URL, status=502, body=b"<html>Bad gateway</html>")
    with pytest.raises(FetchError) as caught:
        client().fetch_numbers("acme-prod")
    assert caught.value.detail == "HTTP 502: HTML error page"


@responses.activate
def test_redirect_is_not_followed():
    responses.get(URL, status=302, headers={"Location": "https://elsewhere.test/"})
    with pytest.raises(FetchError) as caught:
        client().fetch_numbers("acme-prod")
    assert caught.value.reason == "invalid_response"
    assert len(responses.calls) == 1


@responses.activate
def test_declared_body_over_the_cap_is_refused():
    responses.get(URL, body=b"x" * 2000, headers={"Content-Length": "2000"})
    with pytest.raises(FetchError) as caught:
        client(max_response_bytes=1000).fetch_numbers("acme-prod")
    assert caught.value.reason == "invalid_response"
    assert "cap" in caught.value.detail


@responses.activate
def test_connection_error_and_timeout_have_their_reasons():
    responses.get(URL, body=requests.ConnectionError("Connection refused"))
    with pytest.raises(FetchError) as caught:
        client().fetch_numbers("acme-prod")
    assert caught.value.reason == "connection_error"
    responses.replace(responses.GET, URL, body=requests.ReadTimeout("read timed out"))
    with pytest.raises(FetchError) as caught:
        client().fetch_numbers("acme-prod")
    assert caught.value.reason == "timeout"


@pytest.mark.parametrize(
    "echo",
    [
        {"statusMessage": f"token {KEY} invalid"},
        {"message": f"Bearer {KEY}"},
        {"error": "x" * 185 + f" {KEY}"},  # the key must go before the text is trimmed
    ],
)
@responses.activate
def test_key_never_appears_in_errors(echo):
    responses.get(URL, status=401, json=echo)
    with pytest.raises(FetchError) as caught:
        client().fetch_numbers("acme-prod")
    error = caught.value
    assert error.reason == "unauthorized"
    assert "<redacted>" in error.detail
    for text in (error.detail, str(error), repr(error), *map(str, error.args)):
        assert KEY not in text
        assert KEY[:8] not in text


@pytest.mark.parametrize("before", [150, 186, 190, 195, 199])
@responses.activate
def test_key_across_the_200_character_cut_is_redacted_before_the_cut(before):
    text = "x" * before + KEY + " is not a valid token"
    responses.get(URL, status=401, json={"statusMessage": text})
    with pytest.raises(FetchError) as caught:
        client().fetch_numbers("acme-prod")
    detail = caught.value.detail
    assert not any(KEY[:n] in detail for n in range(4, len(KEY) + 1)), detail
    assert detail.startswith("HTTP 401: xxx")


@responses.activate
def test_key_prefix_left_at_the_end_by_an_upstream_cut_is_redacted():
    responses.get(URL, status=401, json={"statusMessage": f"token {KEY[:9]}"})
    with pytest.raises(FetchError) as caught:
        client().fetch_numbers("acme-prod")
    assert caught.value.detail == "HTTP 401: token <redacted>"
