"""What the API client says about a failure, word for word: the error body's message, the
innermost cause of a connection failure, the retry back-off. In-process and without a socket;
the same failures over real HTTP are in tests/test_client.py and tests/test_client_retries.py."""

from __future__ import annotations

import gzip
import io
import json

import pytest
import requests
import urllib3

from exporter import client as client_module
from exporter.client import ApiClient, DeadlineRetry
from exporter.config import Secret

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
