"""What the API client says about a failure, word for word: the error body's message, the
innermost cause of a connection failure, the retry back-off. In-process and without a socket;
the same failures over real HTTP are in tests/test_client.py and tests/test_client_retries.py."""

from __future__ import annotations

import gzip
import io
import json
import time

import pytest
import requests
import urllib3

from exporter.common.errors import FetchError
from exporter.config.values import Secret
from exporter.polling import client as client_module
from exporter.polling.client import ApiClient, DeadlineRetry

KEY = "client-msg-key-4242"


def response(body: bytes, status: int = 500, headers: dict[str, str] | None = None):
    resp = requests.Response()
    resp.status_code = status
    resp.raw = urllib3.HTTPResponse(
        body=io.BytesIO(body), headers=headers or {}, status=status, preload_content=False
    )
    return resp


def message(body: bytes, **kwargs: object) -> str:
    return client_module._error_message(response(body, **kwargs), KEY)


def envelope(text: str) -> bytes:
    return json.dumps({"statusCode": 1, "statusMessage": text}).encode()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"", "empty body"),
        (b"  \n ", "empty body"),
        (b"<html>oops</html>", "HTML error page"),
        (b"oops", "body is not JSON"),
        (b"[1, 2]", ""),
        (b'{"other": "x"}', ""),
        (b'{"statusMessage": "  "}', ""),
        (b'{"message": "rate  limited\\nslow down"}', "rate limited slow down"),
        (b'{"error": "forbidden"}', "forbidden"),
        (b'{"statusMessage": "bad \xff byte"}', "bad \ufffd byte"),
    ],
)
def test_error_body_message(body, expected):
    assert message(body) == expected


def test_error_body_message_echoing_the_key_is_redacted_exactly():
    assert message(envelope(f"token {KEY} invalid")) == "token <redacted> invalid"


def test_error_body_message_is_cut_at_200_characters():
    assert message(envelope("x" * 300)) == "x" * 200


def test_error_body_is_read_only_up_to_its_peek_size():
    # A long body is cut at 16 KiB before it is parsed: it is no longer JSON.
    body = envelope("y" * 20_000)
    assert message(body) == "body is not JSON"


def test_gzip_error_body_is_decoded():
    body = gzip.compress(envelope("gzipped message"))
    assert message(body, headers={"Content-Encoding": "gzip"}) == "gzipped message"


def test_unreadable_error_body_gives_no_message():
    class Broken(io.RawIOBase):
        def readinto(self, buffer):
            raise OSError("connection lost")

    resp = requests.Response()
    resp.status_code = 500
    resp.raw = urllib3.HTTPResponse(body=Broken(), status=500, preload_content=False)
    assert client_module._error_message(resp, KEY) == ""


@pytest.mark.parametrize(
    ("status", "body", "reason", "detail"),
    [
        (300, envelope("moved"), "invalid_response", "unexpected redirect (HTTP 300: moved)"),
        (399, b"", "invalid_response", "unexpected redirect (HTTP 399: empty body)"),
        (500, b"[]", "server_error", "HTTP 500"),
        (401, envelope(f"key {KEY} rejected"), "unauthorized", "HTTP 401: key <redacted> rejected"),
    ],
)
def test_status_error(status, body, reason, detail):
    client = ApiClient("http://127.0.0.1:1", Secret(KEY))
    error = client._status_error(response(body, status=status))
    assert (error.reason, error.detail, error.status) == (reason, detail, status)


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (TimeoutError(), True),
        (OSError("connect timed out"), True),
        (ValueError("x"), False),
    ],
)
def test_is_timeout(exc, expected):
    assert client_module._is_timeout(exc) is expected


def wrapped_by_reason(inner: BaseException) -> Exception:
    outer = Exception("outer text")
    outer.reason = inner
    return outer


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (
            wrapped_by_reason(ConnectionRefusedError(111, "Connection refused")),
            "connection refused",
        ),
        (
            Exception(ConnectionResetError(104, "Connection reset by peer")),
            "connection reset by peer",
        ),
        (Exception(OSError("[Errno -2] Name or service not known")), "host name not resolved"),
        (Exception("NameResolutionError: no such host"), "host name not resolved"),
        (Exception(wrapped_by_reason(OSError("IncompleteRead(3 bytes read)"))), "incomplete body"),
        (Exception(ValueError("x")), "ValueError"),
        (wrapped_by_reason(KeyError("k")), "KeyError"),
        (RuntimeError("plain"), "RuntimeError"),
    ],
)
def test_cause_is_the_innermost_reason(exc, expected):
    assert client_module._cause(exc) == expected


def test_cause_skips_a_reason_that_is_not_an_exception():
    exc = ValueError(KeyError("k"))
    exc.reason = "a string"
    assert client_module._cause(exc) == "KeyError"


def test_backoff_grows_from_the_second_failure_with_no_jitter_configured():
    retry = DeadlineRetry(total=5, backoff_factor=0.5, backoff_jitter=0.0)
    assert retry._exponential_backoff() == 0.0
    assert retry.get_backoff_time() == 0.0
    once = retry.increment(method="GET", url="/x", error=ConnectionResetError())
    assert once._exponential_backoff() == 0.5
    assert once.get_backoff_time() == 0.5
    twice = once.increment(method="GET", url="/x", error=ConnectionResetError())
    assert twice.get_backoff_time() == 1.0


class Body:
    """A streamed response: headers and the chunks `iter_content` yields, then `then`."""

    def __init__(self, chunks, length: str | None = None, then: BaseException | None = None):
        self.headers = requests.structures.CaseInsensitiveDict()
        if length is not None:
            self.headers["Content-Length"] = length
        self.chunks = chunks
        self.then = then

    def iter_content(self, size):
        yield from self.chunks
        if self.then is not None:
            raise self.then


def read_error(body: Body, deadline_in: float = 30.0, cap: int = 100) -> tuple:
    client = ApiClient("http://127.0.0.1:1", Secret(KEY), max_response_bytes=cap)
    with pytest.raises(FetchError) as caught:
        client._read_body(body, time.monotonic() + deadline_in)
    return caught.value.reason, caught.value.detail, caught.value.status


def test_body_up_to_the_cap_is_read():
    client = ApiClient("http://127.0.0.1:1", Secret(KEY), max_response_bytes=4)
    assert client._read_body(Body([b"ab", b"cd"], "4"), time.monotonic() + 30) == b"abcd"


def test_declared_length_over_the_cap_is_refused():
    assert read_error(Body([], "101")) == (
        "invalid_response",
        "body of 101 bytes exceeds the 100-byte cap",
        200,
    )


def test_streamed_body_over_the_cap_is_refused():
    assert read_error(Body([b"x" * 60, b"x" * 41])) == (
        "invalid_response",
        "body exceeds the 100-byte cap",
        200,
    )


def test_body_still_arriving_after_the_deadline_is_a_timeout():
    timeout = ("timeout", "body not read before the deadline", 200)
    assert read_error(Body([b"x"]), deadline_in=-1) == timeout
    assert read_error(Body([], then=requests.ConnectionError("cut")), deadline_in=-1) == timeout
    assert read_error(Body([]), deadline_in=-1) == timeout


def test_body_cut_off_before_the_deadline_names_the_cause():
    cut = requests.ConnectionError(ConnectionResetError(104, "Connection reset by peer"))
    assert read_error(Body([b"x"], then=cut)) == (
        "connection_error",
        "body cut off: connection reset by peer",
        200,
    )


@pytest.mark.parametrize(
    ("raised", "reason", "detail"),
    [
        (requests.Timeout("slow"), "timeout", "no answer before the deadline"),
        (
            requests.exceptions.RetryError(ConnectionRefusedError(111, "Connection refused")),
            "connection_error",
            "connection refused",
        ),
        (requests.ConnectionError("read timed out"), "timeout", "no answer before the deadline"),
        (
            requests.ConnectionError(ConnectionResetError(104, "Connection reset by peer")),
            "connection_error",
            "connection reset by peer",
        ),
        (requests.RequestException(ValueError("x")), "connection_error", "ValueError"),
    ],
)
def test_request_failures(monkeypatch, raised, reason, detail):
    client = ApiClient("http://127.0.0.1:1", Secret(KEY))

    def failing_get(*args, **kwargs):
        raise raised

    monkeypatch.setattr(client._session, "get", failing_get)
    with pytest.raises(FetchError) as caught:
        client.fetch_numbers("acme-prod", 5)
    assert (caught.value.reason, caught.value.detail, caught.value.status) == (reason, detail, None)


@pytest.mark.parametrize(
    ("timeout", "budget"), [(None, 10.0), (0.5, 0.5), (0.0, 0.001), (60, 10.0)]
)
def test_fetch_deadline_is_the_shorter_of_scrape_and_api_timeout(monkeypatch, timeout, budget):
    client = ApiClient("http://127.0.0.1:1", Secret(KEY), timeout=10.0)
    deadlines: list[float] = []

    def recording_send(subaccount, deadline):
        deadlines.append(deadline - time.monotonic())
        raise FetchError("timeout", "stop here")

    monkeypatch.setattr(client, "_send", recording_send)
    with pytest.raises(FetchError):
        client.fetch_numbers("acme-prod", timeout)
    assert budget - 0.2 < deadlines[0] <= budget


def test_cause_follows_a_reason_then_its_arguments():
    assert client_module._cause(wrapped_by_reason(Exception(KeyError("k")))) == "KeyError"


def test_client_defaults_and_retry_policy():
    client = ApiClient("http://127.0.0.1:1/aX/", Secret(KEY))
    assert client.base_url == "http://127.0.0.1:1/aX"
    assert client.timeout == 10.0
    policy = client._retry_policy(123.0)
    assert isinstance(policy, DeadlineRetry)
    assert (policy.total, policy.connect, policy.read, policy.status) == (2, 2, 0, 2)
    assert (policy.other, policy.redirect) == (0, 0)
    assert policy.allowed_methods == frozenset({"GET"})
    assert policy.status_forcelist == client_module.RETRY_STATUSES
    assert (policy.backoff_factor, policy.backoff_jitter) == (0.2, 0.2)
    assert policy.respect_retry_after_header is True
    assert (policy.raise_on_status, policy.raise_on_redirect) == (False, False)
    assert policy.deadline == 123.0
    assert policy.new(total=1).deadline == 123.0


def test_client_session_uses_the_cuttable_pools():
    client = ApiClient("http://127.0.0.1:1", Secret(KEY))
    assert client._session.trust_env is False
    for url in ("http://127.0.0.1:1/x", "https://127.0.0.1:1/x"):
        assert client._session.get_adapter(url) is client._adapter
    assert (client._adapter._pool_connections, client._adapter._pool_maxsize) == (1, 4)
    manager = client._adapter.poolmanager
    assert manager.pool_classes_by_scheme == {
        "http": client_module._CuttableHTTPPool,
        "https": client_module._CuttableHTTPSPool,
    }
    assert manager.connection_pool_kw["maxsize"] == 4


def test_each_attempt_gets_only_the_time_left():
    timeout = client_module.DeadlineTimeout(time.monotonic() + 5)
    attempt = timeout.clone()
    assert 4 < attempt.connect_timeout <= 5
    assert 4 < attempt.read_timeout <= 5
    late = client_module.DeadlineTimeout(time.monotonic() - 5).clone()
    assert (late.connect_timeout, late.read_timeout) == (0.001, 0.001)
