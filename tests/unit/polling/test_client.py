"""The HTTP client, with `responses` standing in for the network.

Also here: What the API client says about a failure, word for word: the error body's message, the
innermost cause of a connection failure, the retry back-off. In-process and without a socket;
the same failures over real HTTP are in tests/unit/polling/test_client.py and tests/unit/polling/test_client_retries.py.

Also here: The client's deadline machinery, unit by unit: no network, no real-time waits.

The retry policy is driven with urllib3's own objects and a fake clock; the socket cutter with a
`socket.socketpair()`, whose ends show at once (non-blocking) whether they were shut down."""

from __future__ import annotations

import gzip
import http.client
import io
import json
import math
import socket
import threading
import time
import types

import pytest
import requests
import responses
import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import MaxRetryError, ResponseError
from urllib3.response import HTTPResponse

from exporter.common.errors import FetchError
from exporter.config.values import Secret
from exporter.polling import client as client_module
from exporter.polling.client import (
    RETRY_STATUSES,
    ApiClient,
    DeadlineRetry,
    RetriesMade,
    _CuttableHTTPConnection,
    _CuttableHTTPPool,
    _CuttableHTTPSConnection,
    _CuttableHTTPSPool,
    _DeadlineCutter,
)
from tests.support.fake_api import number, numbers_body

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


# --- What the API client says about a failure, word for word: the error body's message, the ----------

KEY_MESSAGES = "client-msg-key-4242"


def response(body: bytes, status: int = 500, headers: dict[str, str] | None = None):
    resp = requests.Response()
    resp.status_code = status
    resp.raw = urllib3.HTTPResponse(
        body=io.BytesIO(body), headers=headers or {}, status=status, preload_content=False
    )
    return resp


def message(body: bytes, **kwargs: object) -> str:
    return client_module._error_message(response(body, **kwargs), KEY_MESSAGES)


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
    assert message(envelope(f"token {KEY_MESSAGES} invalid")) == "token <redacted> invalid"


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
    assert client_module._error_message(resp, KEY_MESSAGES) == ""


@pytest.mark.parametrize(
    ("status", "body", "reason", "detail"),
    [
        (300, envelope("moved"), "invalid_response", "unexpected redirect (HTTP 300: moved)"),
        (399, b"", "invalid_response", "unexpected redirect (HTTP 399: empty body)"),
        (500, b"[]", "server_error", "HTTP 500"),
        (
            401,
            envelope(f"key {KEY_MESSAGES} rejected"),
            "unauthorized",
            "HTTP 401: key <redacted> rejected",
        ),
    ],
)
def test_status_error(status, body, reason, detail):
    client = ApiClient("http://127.0.0.1:1", Secret(KEY_MESSAGES))
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
    """A streamed response: headers and the chunks `iter_content` yields, then `then`; with a
    Content-Length, its `raw.read` gives them all at once (or raises `then`)."""

    def __init__(self, chunks, length: str | None = None, then: BaseException | None = None):
        self.headers = requests.structures.CaseInsensitiveDict()
        if length is not None:
            self.headers["Content-Length"] = length
        self.chunks = chunks
        self.then = then
        self.raw = types.SimpleNamespace(read=self._read_raw)
        self.raw_reads: list[tuple[int, bool]] = []

    def iter_content(self, size):
        yield from self.chunks
        if self.then is not None:
            raise self.then

    def _read_raw(self, amount, decode_content=True):
        self.raw_reads.append((amount, decode_content))
        if self.then is not None:
            raise self.then
        return b"".join(self.chunks)[:amount]


def read_error(body: Body, deadline_in: float = 30.0, cap: int = 100) -> tuple:
    client = ApiClient("http://127.0.0.1:1", Secret(KEY_MESSAGES), max_response_bytes=cap)
    with pytest.raises(FetchError) as caught:
        client._read_body(body, time.monotonic() + deadline_in)
    return caught.value.reason, caught.value.detail, caught.value.status


def test_body_up_to_the_cap_is_read():
    client = ApiClient("http://127.0.0.1:1", Secret(KEY_MESSAGES), max_response_bytes=4)
    declared = Body([b"ab", b"cd"], "4")
    assert client._read_body(declared, time.monotonic() + 30) == b"abcd"
    assert declared.raw_reads == [(4, False)]  # one read of the declared length, as sent
    assert client._read_body(Body([b"ab", b"cd"]), time.monotonic() + 30) == b"abcd"


@pytest.mark.parametrize(
    ("header", "value"), [("Content-Encoding", "gzip"), ("transfer-encoding", "chunked")]
)
def test_an_encoded_body_is_read_decoded_a_chunk_at_a_time(header, value):
    client = ApiClient("http://127.0.0.1:1", Secret(KEY_MESSAGES), max_response_bytes=4)
    body = Body([b"ab", b"cd"], "2")
    body.headers[header] = value
    assert client._read_body(body, time.monotonic() + 30) == b"abcd"
    assert body.raw_reads == []


def test_body_shorter_than_declared_or_cut_while_read_at_once_names_the_cause():
    assert read_error(Body([b"abc"], "5")) == (
        "connection_error",
        "body cut off: incomplete body",
        200,
    )
    protocol = urllib3.exceptions.ProtocolError(
        "Connection broken", ConnectionResetError(104, "reset")
    )
    assert read_error(Body([], "5", then=protocol)) == (
        "connection_error",
        "body cut off: connection reset by peer",
        200,
    )
    assert read_error(Body([], "5", then=http.client.IncompleteRead(b"ab", 3))) == (
        "connection_error",
        "body cut off: incomplete body",
        200,
    )


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
    client = ApiClient("http://127.0.0.1:1", Secret(KEY_MESSAGES))

    def failing_send(*args, **kwargs):
        raise raised

    monkeypatch.setattr(client._adapter, "send", failing_send)
    with pytest.raises(FetchError) as caught:
        client.fetch_numbers("acme-prod", 5)
    assert (caught.value.reason, caught.value.detail, caught.value.status) == (reason, detail, None)


@pytest.mark.parametrize(
    ("timeout", "budget"), [(None, 10.0), (0.5, 0.5), (0.0, 0.001), (60, 10.0)]
)
def test_fetch_deadline_is_the_shorter_of_scrape_and_api_timeout(
    monkeypatch, clock, timeout, budget
):
    client = ApiClient("http://127.0.0.1:1", Secret(KEY_MESSAGES), timeout=10.0)
    deadlines: list[float] = []

    def recording_send(subaccount, deadline):
        deadlines.append(deadline)
        raise FetchError("timeout", "stop here")

    monkeypatch.setattr(client, "_send", recording_send)
    with pytest.raises(FetchError):
        client.fetch_numbers("acme-prod", timeout)
    assert deadlines == [pytest.approx(NOW + budget)]  # on the client's clock, standing still


def test_cause_follows_a_reason_then_its_arguments():
    assert client_module._cause(wrapped_by_reason(Exception(KeyError("k")))) == "KeyError"


def test_client_defaults_and_retry_policy():
    client = ApiClient("http://127.0.0.1:1/aX/", Secret(KEY_MESSAGES))
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
    client = ApiClient("http://127.0.0.1:1", Secret(KEY_MESSAGES))
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


def test_each_attempt_gets_only_the_time_left(clock):
    timeout = client_module.DeadlineTimeout(NOW + 5)
    attempt = timeout.clone()
    assert (attempt.connect_timeout, attempt.read_timeout) == (5, 5)
    late = client_module.DeadlineTimeout(NOW - 5).clone()
    assert (late.connect_timeout, late.read_timeout) == (0.001, 0.001)


# --- The client's deadline machinery, unit by unit: no network, no real-time waits. ----------

NOW = 1000.0


@pytest.fixture
def clock(monkeypatch):
    """The client's clock stands still at NOW."""
    monkeypatch.setattr(client_module, "time", types.SimpleNamespace(monotonic=lambda: NOW))


@pytest.fixture
def pair():
    ends = socket.socketpair()
    for end in ends:
        end.setblocking(False)
    yield ends
    for end in ends:
        end.close()


def is_shut_down(sock: socket.socket) -> bool:
    """True when the socket's read side was shut down: recv sees end-of-file at once."""
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False


def answer(status: int, **headers: str) -> HTTPResponse:
    return HTTPResponse(body=b"", status=status, headers=headers, preload_content=False)


def policy(deadline: float, **kwargs) -> DeadlineRetry:
    kwargs.setdefault("backoff_factor", 0.0)
    return DeadlineRetry(
        total=3,
        status=3,
        status_forcelist=RETRY_STATUSES,
        raise_on_status=False,
        respect_retry_after_header=True,
        deadline=deadline,
        **kwargs,
    )


# --- DeadlineRetry ----------------------------------------------------------------------------


def test_retry_policy_has_no_deadline_and_no_retries_made_by_default():
    retry = DeadlineRetry(total=1)
    assert retry.deadline == math.inf
    assert retry.made.count == 0
    assert RetriesMade().count == 0


def test_each_retry_granted_is_counted_once_in_the_count_every_copy_shares(clock):
    first = policy(NOW + 100)
    second = first.increment(method="GET", url="/x", response=answer(503))
    third = second.increment(method="GET", url="/x", response=answer(503))
    assert first.made is second.made is third.made
    assert first.made.count == 2
    assert (second.deadline, third.deadline) == (NOW + 100, NOW + 100)


def test_a_retry_granted_returns_the_renewed_policy(clock):
    renewed = policy(NOW + 100).increment(method="GET", url="/x", response=answer(503))
    assert isinstance(renewed, DeadlineRetry)
    assert renewed.total == 2
    assert [entry.status for entry in renewed.history] == [503]


def test_a_retry_granted_records_the_request_it_follows(clock):
    renewed = policy(NOW + 100).increment(method="GET", url="/x", response=answer(503))
    assert [(entry.method, entry.url) for entry in renewed.history] == [("GET", "/x")]


def test_retries_used_up_name_the_pool_they_were_made_for(clock):
    pool = object()
    with pytest.raises(MaxRetryError) as raised:
        DeadlineRetry(total=0, deadline=NOW + 100).increment(
            method="GET", url="/x", error=ConnectionResetError(), _pool=pool
        )
    assert raised.value.pool is pool


def test_a_retry_after_that_ends_past_the_deadline_ends_the_retries_at_once(clock):
    retry = policy(NOW + 3)
    pool = object()
    with pytest.raises(MaxRetryError) as raised:
        retry.increment(
            method="GET", url="/x", response=answer(429, **{"Retry-After": "5"}), _pool=pool
        )
    assert raised.value.pool is pool
    assert raised.value.url == "/x"
    assert isinstance(raised.value.reason, ResponseError)
    assert str(raised.value.reason) == "no time left to retry"
    assert retry.made.count == 0


def test_a_retry_after_that_ends_before_the_deadline_is_granted(clock):
    retry = policy(NOW + 6)
    retry.increment(method="GET", url="/x", response=answer(429, **{"Retry-After": "5"}))
    assert retry.made.count == 1


def test_a_retry_due_exactly_at_the_deadline_is_refused(clock):
    # The first retry is immediate (no backoff, no jitter): it would start at the deadline itself.
    with pytest.raises(MaxRetryError):
        policy(NOW).increment(method="GET", url="/x", response=answer(503))


def test_a_refused_retry_after_a_connection_error_keeps_that_error_as_the_reason(clock):
    error = ConnectionResetError(104, "reset")
    with pytest.raises(MaxRetryError) as raised:
        policy(NOW).increment(method="GET", url="/x", error=error)
    assert raised.value.reason is error


# --- _DeadlineCutter --------------------------------------------------------------------------


@pytest.fixture
def watchdog():
    """A watchdog without its thread: the test calls `run_once()` when it means to."""
    return client_module._Watchdog("test-deadlines", autostart=False)


def test_cutter_is_the_active_one_and_registered_only_inside_its_block(watchdog):
    cutter = _DeadlineCutter(time.monotonic() + 60, watchdog)
    with cutter as entered:
        assert entered is cutter
        assert client_module._ACTIVE.cutter is cutter
        assert watchdog.pending() == 1
    assert client_module._ACTIVE.cutter is None
    assert (watchdog.pending(), watchdog.entries()) == (0, 0)
    assert cutter._entry is None  # and the entry no longer holds the cutter: no cycle left


def test_the_watchdog_cuts_a_fetch_whose_deadline_has_come(clock, watchdog, pair):
    with _DeadlineCutter(NOW - 1, watchdog) as cutter:
        cutter.watch(pair[0])
        assert watchdog.run_once() is True
        assert cutter._cut is True
        assert is_shut_down(pair[0])
        assert (watchdog.pending(), watchdog.entries()) == (0, 0)
    assert watchdog.entries() == 0  # leaving after the cut unregisters nothing twice


def test_the_watchdog_leaves_a_fetch_alone_before_its_deadline(clock, watchdog, pair):
    # The clock stands still: the short real wait ends with the deadline still ahead.
    with _DeadlineCutter(NOW + 0.01, watchdog) as cutter:
        cutter.watch(pair[0])
        watchdog.run_once()
        assert cutter._cut is False
        assert not is_shut_down(pair[0])
        assert watchdog.pending() == 1


def test_the_watchdog_cuts_in_deadline_order_and_skips_ended_fetches(clock, watchdog):
    late = _DeadlineCutter(NOW - 1, watchdog).__enter__()
    early = _DeadlineCutter(NOW - 3, watchdog).__enter__()
    ended = _DeadlineCutter(NOW - 5, watchdog)
    ended.__enter__()
    ended.__exit__(None, None, None)
    watchdog.run_once()
    assert (early._cut, late._cut, ended._cut) == (True, False, False)
    watchdog.run_once()
    assert late._cut is True
    for cutter in (late, early):
        cutter.__exit__(None, None, None)
    assert watchdog.entries() == 0


def test_the_heap_does_not_grow_with_the_fetches_made(watchdog):
    # One long fetch at the top keeps ended entries from being dropped there: compaction must.
    with _DeadlineCutter(time.monotonic() + 3600, watchdog):
        for n in range(20_000):
            with _DeadlineCutter(time.monotonic() + 7200 + n, watchdog):
                pass
            assert watchdog.entries() <= 2 * (watchdog._COMPACT_MIN + 1)
        assert watchdog.pending() == 1
    assert watchdog.entries() == 0


def test_a_cut_that_fails_does_not_end_the_watchdog_thread(clock, watchdog, monkeypatch, caplog):
    calls = iter([RuntimeError("boom"), True, False])

    def run_once():
        outcome = next(calls)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    monkeypatch.setattr(watchdog, "run_once", run_once)
    client_module._watch_deadlines(watchdog)  # returns once run_once says the thread stops
    assert next(calls, "all used") == "all used"
    assert "cutting a fetch at its deadline failed" in caplog.text


def test_a_stopped_watchdog_thread_ends():
    watchdog = client_module._Watchdog("test-deadlines-stop")
    with _DeadlineCutter(time.monotonic() + 3600, watchdog):
        [thread] = [t for t in threading.enumerate() if t.name == "test-deadlines-stop"]
        assert thread.daemon is True
    watchdog.stop()
    thread.join(10)
    assert not thread.is_alive()


def test_cut_shuts_down_every_watched_socket(pair):
    other_pair = socket.socketpair()
    try:
        cutter = _DeadlineCutter(1e12)
        cutter.watch(pair[0])
        cutter.watch(other_pair[0])
        assert not is_shut_down(pair[0])
        cutter.cut()
        assert cutter._cut is True
        assert is_shut_down(pair[0])
        other_pair[0].setblocking(False)
        assert is_shut_down(other_pair[0])
    finally:
        for end in other_pair:
            end.close()


def test_a_socket_watched_after_the_cut_is_shut_down_at_once(pair):
    cutter = _DeadlineCutter(1e12)
    cutter.cut()
    cutter.watch(pair[0])
    assert is_shut_down(pair[0])


def test_watching_no_socket_is_a_no_op():
    cutter = _DeadlineCutter(1e12)
    cutter.watch(None)
    assert cutter._sockets == []
    cutter.cut()  # nothing to shut down, and no error


def test_shutdown_closes_both_directions(pair):
    client_module._shutdown(pair[0])
    assert is_shut_down(pair[0])
    with pytest.raises(BrokenPipeError):
        pair[0].send(b"x")
    assert pair[1].recv(1) == b""  # the peer sees the end too


def test_shutdown_of_a_closed_socket_is_ignored():
    sock = socket.socket()
    sock.close()
    client_module._shutdown(sock)


def test_watch_registers_with_the_active_cutter(monkeypatch, pair):
    cutter = _DeadlineCutter(1e12)
    monkeypatch.setattr(client_module._ACTIVE, "cutter", cutter, raising=False)
    client_module._watch(pair[0])
    assert cutter._sockets == [pair[0]]


def test_watch_without_an_active_cutter_does_nothing(monkeypatch, pair):
    monkeypatch.setattr(client_module._ACTIVE, "cutter", None, raising=False)
    client_module._watch(pair[0])
    monkeypatch.delattr(client_module._ACTIVE, "cutter")
    client_module._watch(pair[0])
    assert not is_shut_down(pair[0])


# --- the cuttable connections -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("connection_class", "base"),
    [(_CuttableHTTPConnection, HTTPConnection), (_CuttableHTTPSConnection, HTTPSConnection)],
)
def test_a_connection_hands_its_socket_to_the_cutter_before_reading_the_answer(
    monkeypatch, pair, connection_class, base
):
    cutter = _DeadlineCutter(1e12)
    monkeypatch.setattr(client_module._ACTIVE, "cutter", cutter, raising=False)
    watched_when_read: list[list[socket.socket]] = []

    def read_answer(self):
        watched_when_read.append(list(cutter._sockets))
        return "the answer"

    monkeypatch.setattr(base, "getresponse", read_answer)
    connection = connection_class("127.0.0.1", 1)
    connection.sock = pair[0]
    assert connection.getresponse() == "the answer"
    assert watched_when_read == [[pair[0]]]


def test_pools_make_cuttable_connections():
    assert _CuttableHTTPPool.ConnectionCls is _CuttableHTTPConnection
    assert _CuttableHTTPSPool.ConnectionCls is _CuttableHTTPSConnection


def test_the_client_adapter_uses_the_cuttable_pools_for_both_schemes():
    adapter = ApiClient("http://127.0.0.1:1", Secret("k"))._adapter
    assert adapter.poolmanager.pool_classes_by_scheme == {
        "http": _CuttableHTTPPool,
        "https": _CuttableHTTPSPool,
    }
    pool = adapter.poolmanager.connection_from_url("http://127.0.0.1:1/")
    assert isinstance(pool, _CuttableHTTPPool)


def test_the_adapter_keeps_the_pool_options_it_is_given():
    adapter = client_module._CuttableAdapter(pool_connections=3, pool_maxsize=5, pool_block=True)
    assert adapter.poolmanager.connection_pool_kw["maxsize"] == 5
    assert adapter.poolmanager.connection_pool_kw["block"] is True


def test_retry_policy_takes_positional_arguments_like_urllib3s():
    assert DeadlineRetry(1).total == 1


# --- the request ------------------------------------------------------------------------------


def test_each_request_is_bounded_by_a_timeout_that_tracks_the_deadline(monkeypatch):
    api = ApiClient("http://127.0.0.1:1", Secret("k"))
    sent: list[dict] = []

    answer = requests.Response()

    def record(request, **kwargs):
        sent.append({"url": request.url, **kwargs})
        return answer

    # The adapter, not the session, sends: it never follows a redirect.
    monkeypatch.setattr(api._adapter, "send", record)
    assert api._send("http://127.0.0.1:1/x", 1234.5) is answer
    timeout = sent[0]["timeout"]
    assert isinstance(timeout, client_module.DeadlineTimeout)
    assert timeout.deadline == 1234.5
    assert sent[0]["stream"] is True
    assert (sent[0]["url"], sent[0]["proxies"]) == ("http://127.0.0.1:1/x", {})


def test_a_body_cut_short_as_incomplete_is_named_so():
    # urllib3's ProtocolError text: "Response ended prematurely" / "... incomplete ...".
    assert client_module._cause(Exception(OSError("read incomplete: 3 of 9 bytes"))) == (
        "incomplete body"
    )


def test_webhooks_are_fetched_with_the_scrape_timeout_given(monkeypatch):
    api = ApiClient("http://127.0.0.1:1", Secret("k"))
    calls: list[tuple] = []
    monkeypatch.setattr(api, "_fetch", lambda url, timeout: calls.append((url, timeout)))
    api.fetch_webhooks("acme", 2.5)
    assert calls == [("http://127.0.0.1:1/api/v1/subaccounts/acme/webhooks", 2.5)]
