"""The receiver's answers, called as a WSGI app in this process: framing, chunked bodies and
their limits, the in-flight cap, the health path, its defaults and the catch-all 500.

docs/webhooks.md ("How callbacks are answered") is the table these follow; the hostile cases
over a real socket are in test_webhook_security.py.
"""

from __future__ import annotations

import io
import json
import logging

import pytest

from exporter.pushing import receiver as receiver_module
from exporter.pushing.receiver import (
    CONTENT_LENGTHS,
    CallbackAccess,
    LogGate,
    WebhookReceiver,
)
from exporter.pushing.state import WebhookState
from tests.support.callbacks import vnu, vss
from tests.support.exporters import parse_samples

SUB = "acme-prod"
AUTH = "Bearer right"
PATH = "/webhooks/8x8"
GOOD = json.dumps(vss(session="good")).encode()


def call(
    app: WebhookReceiver,
    body: bytes = GOOD,
    *,
    method: str = "POST",
    path: str = PATH,
    auth: str | None = AUTH,
    stream: object = None,
    **environ: object,
) -> tuple[str, dict[str, str], bytes]:
    env: dict[str, object] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": stream if stream is not None else io.BytesIO(body),
    }
    if auth is not None:
        env["HTTP_AUTHORIZATION"] = auth
    env.update(environ)
    answer: list[tuple[str, list]] = []
    text = b"".join(app(env, lambda s, h, exc_info=None: answer.append((s, h))))
    status, headers = answer[0]
    return status, dict(headers), text


def chunked_call(app: WebhookReceiver, raw: bytes, **environ: object) -> tuple[str, bytes]:
    environ.setdefault("HTTP_TRANSFER_ENCODING", "chunked")
    environ.setdefault("CONTENT_LENGTH", "")
    status, _, text = call(app, stream=io.BytesIO(raw), **environ)
    return status, text


def chunks(data: bytes, size: int = 100, end: bytes = b"0\r\n\r\n") -> bytes:
    out = b""
    for i in range(0, len(data), size):
        piece = data[i : i + size]
        out += f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    return out + end


def outcomes(app: WebhookReceiver) -> dict[str, float]:
    got = parse_samples(app.state.exposition().decode())
    return {
        dict(labels)["outcome"]: v
        for (name, labels), v in got.items()
        if name == "eightbyeight_webhook_requests_total" and v
    }


@pytest.fixture
def app() -> WebhookReceiver:
    return WebhookReceiver(WebhookState([SUB]), AUTH, max_body=4096)


# --- defaults and paths -----------------------------------------------------------------------


def test_the_documented_defaults():
    app = WebhookReceiver(WebhookState([SUB]), AUTH)
    assert app.path == "/webhooks/8x8"
    assert app.max_body == 32 * 1024 * 1024
    assert app.read_timeout == 10.0
    assert receiver_module.MAX_IN_FLIGHT == 64  # "more than 64 callbacks in progress: 503"
    assert receiver_module.LOG_INTERVAL == 60.0
    assert LogGate().interval == 60.0
    assert app.access == CallbackAccess(AUTH.encode(), frozenset([SUB]))
    assert call(app)[0] == "200 OK"


def test_an_authorization_value_is_required():
    with pytest.raises(ValueError, match="Authorization value is required"):
        CallbackAccess.of("")
    assert CallbackAccess.of("x").allowed is None
    assert CallbackAccess.of("x", [SUB, SUB]).allowed == frozenset([SUB])
    assert CallbackAccess.of("x", []).allowed == frozenset()


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_the_health_path_answers_without_credentials(app, method):
    status, _, text = call(app, b"", method=method, path="/-/healthy", auth=None)
    assert (status, text) == ("200 OK", b"OK\n")
    assert outcomes(app) == {}


def test_only_the_callback_path_takes_callbacks(app):
    assert call(app, path="/-/healthy")[0].startswith("404")
    assert call(app, path=PATH + "/")[0].startswith("404")
    status, headers, text = call(app, method="PUT")
    assert status.startswith("405")
    assert headers["Allow"] == "POST"
    assert text == b"method_not_allowed\n"
    assert outcomes(app) == {"not_found": 2, "method_not_allowed": 1}


def test_a_custom_path():
    app = WebhookReceiver(WebhookState([SUB]), AUTH, path="/cb")
    assert call(app, path="/cb")[0] == "200 OK"
    assert call(app)[0].startswith("404")


@pytest.mark.parametrize("auth", [None, "", "Bearer righ", "Bearer right ", "bearer right",
                                  "Bearer r\u00efght", "Bearer \u2603"])  # fmt: skip
def test_only_the_exact_authorization_value_is_taken(app, auth):
    status, _, text = call(app, auth=auth)
    assert (status, text) == ("401 Unauthorized", b"unauthorized\n")
    assert outcomes(app) == {"unauthorized": 1}


def test_a_latin1_authorization_value_matches_byte_for_byte():
    app = WebhookReceiver(WebhookState([SUB]), "Bearer caf\u00e9")
    # WSGI hands the header's bytes over as latin-1 text: UTF-8 é arrives as two characters.
    assert call(app, auth="Bearer caf\u00c3\u00a9")[0] == "200 OK"
    assert call(app, auth="Bearer caf\u00e9")[0].startswith("401")


def test_answer_judges_by_the_access_it_is_given(app):
    other = CallbackAccess.of("Bearer other", ["acme-test"])
    env = {"REQUEST_METHOD": "POST", "PATH_INFO": PATH, "HTTP_AUTHORIZATION": "Bearer other",
           "CONTENT_LENGTH": str(len(GOOD)), "wsgi.input": io.BytesIO(GOOD)}  # fmt: skip
    answer: list[str] = []
    b"".join(app.answer(other, env, lambda s, h, exc_info=None: answer.append(s)))
    assert answer == ["403 Forbidden"]  # acme-prod is not in that access's allow-list


# --- outcomes ----------------------------------------------------------------------------------


def test_each_outcome_is_answered_and_counted(app):
    assert call(app)[::2] == ("200 OK", b"accepted\n")
    assert call(app)[2] == b"duplicate\n"
    other_session = json.dumps(vss(session="good", sub="acme-test")).encode()
    assert call(app, other_session)[0] == "403 Forbidden"
    unknown = json.dumps({"eventType": "NUMBER_PORTED", "payload": {}}).encode()
    assert call(app, unknown)[:3:2] == ("200 OK", b"unknown_event_type\n")
    update = json.dumps(vnu()).encode()
    assert call(app, update)[2] == b"accepted\n"
    assert call(app, update)[2] == b"duplicate\n"
    assert call(app, update + b" ")[2] == b"accepted\n"  # not byte-identical: not a duplicate
    other_update = json.dumps(vnu(sub="acme-test")).encode()
    assert call(app, other_update)[0] == "403 Forbidden"
    assert outcomes(app) == {
        "accepted": 3,
        "duplicate": 2,
        "subaccount_not_allowed": 2,
        "unknown_event_type": 1,
    }


def test_a_refused_subaccount_is_not_remembered_as_delivered():
    state = WebhookState(None)
    app = WebhookReceiver(state, AUTH)
    for i in range(64):
        assert call(app, json.dumps(vss(session="s", sub=f"sub-{i:02}")).encode())[0] == "200 OK"
    late = json.dumps(vss(session="s", sub="sub-64")).encode()
    assert call(app, late)[0] == "403 Forbidden"
    assert call(app, late)[0] == "403 Forbidden"  # refused again, not a 200 duplicate


def test_an_unexpected_failure_is_a_500_and_one_log_line(app, monkeypatch, caplog):
    def boom(summary: object) -> None:
        raise RuntimeError("secret detail")

    monkeypatch.setattr(app.state, "apply_session_summary", boom)
    caplog.set_level(logging.ERROR, logger="exporter.webhooks")
    status, _, text = call(app)
    assert (status, text) == ("500 Internal Server Error", b"internal error\n")
    lines = [r for r in caplog.records if r.getMessage() == "callback failed"]
    assert len(lines) == 1
    assert lines[0].levelno == logging.ERROR
    assert lines[0].fields == {"err": "RuntimeError"}
    assert "secret detail" not in caplog.text
    assert not [r for r in caplog.records if r.exc_info]


def test_a_refusals_detail_is_logged_cut_to_200_characters(app, caplog):
    caplog.set_level(logging.WARNING, logger="exporter.webhooks")
    body = json.dumps({"eventType": "E" * 129}).encode()
    assert call(app, body)[0].startswith("422")
    (line,) = [r for r in caplog.records if r.getMessage() == "callback refused"]
    assert line.fields["reason"] == "invalid_event"
    assert line.fields["suppressed"] == 0
    assert 0 < len(line.fields["detail"]) <= 200


def test_a_refusal_is_logged_with_what_was_wrong(caplog):
    caplog.set_level(logging.WARNING, logger="exporter.webhooks")
    bad_number = vnu(numbers=[{"msisdn": "+65abc", "operationalStatus": "Active"}])
    refused = [
        (json.dumps(bad_number).encode(), "invalid_event", "msisdn"),
        (json.dumps(vss(sub="acme-test")).encode(), "subaccount_not_allowed", "subaccount"),
        (b"{", "malformed_json", "JSON"),
        (b'{"eventType": 7}', "invalid_event", "eventType"),
        (
            json.dumps({"eventType": "SESSION_SUMMARY", "payload": {}}).encode(),
            "invalid_event",
            "sessionId",
        ),
        (b'{"payload": ' + b"[" * 100_000, "malformed_json", "nested"),
    ]
    for body, reason, named in refused:
        caplog.clear()
        call(WebhookReceiver(WebhookState([SUB]), AUTH), body)  # its own log allowance
        (line,) = [r for r in caplog.records if r.getMessage() == "callback refused"]
        assert line.fields["reason"] == reason
        assert named in line.fields["detail"], line.fields


def test_the_log_gate_lets_one_line_per_reason_per_interval():
    now = [100.0]
    gate = LogGate(interval=10.0, clock=lambda: now[0])
    assert gate.admit("a") == 0
    assert gate.admit("a") is None
    assert gate.admit("b") == 0
    now[0] = 109.5
    assert gate.admit("a") is None
    now[0] = 110.0
    assert gate.admit("a") == 2
    assert gate.admit("a") is None
    now[0] = 120.0
    assert gate.admit("a") == 1
    assert gate.admit("b") == 0


# --- in flight ---------------------------------------------------------------------------------


class _Reentrant(io.BytesIO):
    """A body whose first read sends another callback to the same receiver meanwhile."""

    def __init__(self, body: bytes, app: WebhookReceiver, seen: list[str]) -> None:
        super().__init__(body)
        self.app, self.seen = app, seen

    def read(self, size: int = -1) -> bytes:
        if not self.seen:
            self.seen.append(call(self.app)[0])
        return super().read(size)

    read1 = read


def test_callbacks_past_the_in_flight_cap_are_503_and_the_slot_comes_back():
    app = WebhookReceiver(WebhookState([SUB]), AUTH, max_in_flight=1)
    seen: list[str] = []
    assert call(app, stream=_Reentrant(GOOD, app, seen))[0] == "200 OK"
    assert seen == ["503 Service Unavailable"]
    two = WebhookReceiver(WebhookState([SUB]), AUTH, max_in_flight=2)
    seen = []
    assert call(two, stream=_Reentrant(GOOD, two, seen))[0] == "200 OK"
    assert seen == ["200 OK"]
    # Refused and failed callbacks give their slot back too.
    for _ in range(3):
        assert call(app, b"nope")[0].startswith("400")
    assert call(app, json.dumps(vss(session="later")).encode())[0] == "200 OK"
    assert outcomes(app) == {"accepted": 2, "overloaded": 1, "malformed_json": 3}


# --- framing with Content-Length ------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "status", "reason"),
    [
        ({CONTENT_LENGTHS: [str(len(GOOD))] * 2}, "200", "accepted"),
        ({CONTENT_LENGTHS: [str(len(GOOD)), "5"]}, "400", "bad_framing"),
        ({"HTTP_TRANSFER_ENCODING": "chunked"}, "400", "bad_framing"),
        ({"HTTP_TRANSFER_ENCODING": "gzip", "CONTENT_LENGTH": ""}, "400", "bad_framing"),
        ({"CONTENT_LENGTH": "ten"}, "400", "malformed_json"),
        ({"CONTENT_LENGTH": "-1"}, "400", "malformed_json"),
        ({"CONTENT_LENGTH": "4097"}, "413", "body_too_large"),
    ],
)
def test_framing_is_refused_when_it_is_ambiguous_or_wrong(app, environ, status, reason):
    got, _, text = call(app, **environ)
    assert got.startswith(status)
    assert text == f"{reason}\n".encode()
    assert outcomes(app) == {reason: 1}


def test_a_transfer_encoding_alongside_a_content_length_is_refused(app):
    # Well-formed chunks, but which framing a proxy in front used is a guess: refused.
    status, _ = chunked_call(app, chunks(GOOD), **{CONTENT_LENGTHS: ["12"]})
    assert status.startswith("400")
    status, text = chunked_call(app, chunks(GOOD), CONTENT_LENGTH="12")
    assert (status, text) == ("400 Bad Request", b"bad_framing\n")


def test_a_body_of_exactly_the_cap_is_read():
    body = GOOD + b" " * (4096 - len(GOOD))
    app = WebhookReceiver(WebhookState([SUB]), AUTH, max_body=4096)
    assert call(app, body)[0] == "200 OK"
    assert call(app, body + b" ")[0].startswith("413")


def test_no_content_length_is_an_empty_body(app):
    assert call(app, CONTENT_LENGTH="")[2] == b"malformed_json\n"
    env_without = call(app, stream=io.BytesIO(GOOD), CONTENT_LENGTH=None)
    assert env_without[2] == b"malformed_json\n"
    # Nothing announced, nothing sent: an empty body at once, not a wait for one.
    assert call(app, stream=io.BytesIO(b""), CONTENT_LENGTH=None)[2] == b"malformed_json\n"


class _Pieces:
    """A stream that hands out a body in the given pieces, then `end` (b'' or an exception)."""

    def __init__(self, pieces: list[bytes], end: object = b"") -> None:
        self.pieces, self.end, self.asked = list(pieces), end, []

    def read(self, size: int = -1) -> bytes:
        self.asked.append(size)
        if self.pieces:
            piece = self.pieces.pop(0)
            assert len(piece) <= size
            return piece
        if isinstance(self.end, BaseException):
            raise self.end
        return self.end


def test_a_body_in_small_pieces_is_put_together_in_order(app):
    stream = _Pieces([GOOD[:7], GOOD[7:8], GOOD[8:]])
    assert call(app, stream=stream)[2] == b"accepted\n"
    assert stream.asked == [len(GOOD), len(GOOD) - 7, len(GOOD) - 8]


def test_a_large_body_is_asked_for_64_kib_at_a_time():
    body = json.dumps(vnu(numbers=[])).encode()
    body += b" " * (200_000 - len(body))
    stream = _Pieces([body[:65_536], body[65_536:131_072], body[131_072:196_608],
                      body[196_608:]])  # fmt: skip
    app = WebhookReceiver(WebhookState([SUB]), AUTH)
    assert call(app, body, stream=stream)[0] == "200 OK"
    assert stream.asked == [65_536, 65_536, 65_536, 200_000 - 196_608]


@pytest.mark.parametrize("end", [b"", TimeoutError("slow"), OSError("reset")])
def test_a_body_that_stops_short_is_a_timeout(app, end):
    status, _, text = call(app, stream=_Pieces([GOOD[:10]], end=end))
    assert (status, text) == ("408 Request Timeout", b"body_timeout\n")


def test_a_body_slower_than_the_read_timeout_is_a_timeout():
    app = WebhookReceiver(WebhookState([SUB]), AUTH, read_timeout=-1.0)
    assert call(app)[2] == b"body_timeout\n"
    assert chunked_call(app, chunks(GOOD))[1] == b"body_timeout\n"
    # An empty body needs no time.
    assert call(app, b"")[2] == b"malformed_json\n"


# --- chunked bodies ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        chunks(GOOD),
        chunks(GOOD, size=1),
        chunks(GOOD).replace(b"\r\n", b"\n"),  # bare LF line ends
        chunks(GOOD).replace(b"64\r\n", b"64;name=value\r\n"),  # chunk extensions
        chunks(GOOD).replace(b"64\r\n", b"64 ;a=1;b\r\n"),
        chunks(GOOD).replace(b"64\r\n", b"00064\r\n"),
        chunks(GOOD, size=171).replace(b"ab\r\n", b"AB\r\n"),  # upper-case hex
        chunks(GOOD, end=b"0\r\nX-Trailer: 1\r\n\r\n"),
        chunks(GOOD, end=b"0\r\n" + b"X-T: 1\r\n" * 31 + b"\r\n"),
        chunks(GOOD, end=b"0\r\n"),  # the connection ends after the last chunk: no trailers
        chunks(GOOD, end=b"0\r\n\n"),
        # The body ends at the empty line; what follows on the connection is not read.
        chunks(GOOD, end=b"0\n\n" + b"X-Next: request\n" * 40),
        chunks(GOOD).replace(b"64\r\n", b"00000064\r\n"),  # eight hex digits at most
    ],
)
def test_chunked_bodies_are_accepted(app, raw):
    status, text = chunked_call(app, raw)
    assert (status, text) == ("200 OK", b"accepted\n")


@pytest.mark.parametrize(
    "encoding", ["Chunked", " chunked ", "CHUNKED"]
)  # header values arrive as sent
def test_the_chunked_coding_is_named_in_any_case(app, encoding):
    assert chunked_call(app, chunks(GOOD), HTTP_TRANSFER_ENCODING=encoding)[0] == "200 OK"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (chunks(GOOD).replace(b"64\r\n", b"zz\r\n", 1), "bad_framing"),
        (chunks(GOOD).replace(b"64\r\n", b"6X\r\n", 1), "bad_framing"),
        (chunks(GOOD).replace(b"64\r\n", b"\r\n", 1), "bad_framing"),
        (chunks(GOOD).replace(b"64\r\n", b";ext\r\n", 1), "bad_framing"),
        (chunks(GOOD).replace(b"64\r\n", b"000000064\r\n", 1), "bad_framing"),
        (chunks(GOOD).replace(b"64\r\n", b"-64\r\n", 1), "bad_framing"),
        (chunks(GOOD).replace(b"64\r\n", b"64;" + b"x" * 1021 + b"\r\n", 1), "bad_framing"),
        (chunks(GOOD, size=1000).replace(b"\r\n0\r\n", b"XX0\r\n"), "bad_framing"),
        (chunks(GOOD, end=b"0\r\n" + b"X-T: 1\r\n" * 32 + b"\r\n"), "bad_framing"),
        (chunks(GOOD)[:50], "body_timeout"),
        (chunks(GOOD, end=b""), "body_timeout"),
        (chunks(GOOD, end=b"0"), "bad_framing"),
        (b"fff\r\n" + b" " * 100, "body_timeout"),
        (b"1001\r\n" + b" " * 4097 + b"\r\n0\r\n\r\n", "body_too_large"),
        (chunks(b" " * 4000 + GOOD, size=1000), "body_too_large"),
    ],
)
def test_bad_chunked_bodies_are_refused(app, raw, reason):
    status, text = chunked_call(app, raw)
    assert text == f"{reason}\n".encode(), status
    assert outcomes(app) == {reason: 1}


def test_a_chunk_line_of_1024_bytes_is_read():
    line = b"64;" + b"x" * 1019 + b"\r\n"
    assert len(line) == 1024
    app = WebhookReceiver(WebhookState([SUB]), AUTH, max_body=4096)
    raw = chunks(GOOD).replace(b"64\r\n", line, 1)
    assert chunked_call(app, raw)[1] == b"accepted\n"


def test_a_chunked_body_of_exactly_the_cap_is_read():
    body = GOOD + b" " * (4096 - len(GOOD))
    app = WebhookReceiver(WebhookState([SUB]), AUTH, max_body=4096)
    assert chunked_call(app, chunks(body, size=1000))[1] == b"accepted\n"
    assert chunked_call(app, chunks(body + b" ", size=1000))[1] == b"body_too_large\n"


class _ChunkedFailing(io.BytesIO):
    def __init__(self, raw: bytes, exc: BaseException, after_lines: int) -> None:
        super().__init__(raw)
        self.exc, self.lines = exc, after_lines

    def readline(self, size: int | None = -1) -> bytes:
        if self.lines == 0:
            raise self.exc
        self.lines -= 1
        return super().readline(size)


@pytest.mark.parametrize("exc", [TimeoutError("slow"), OSError("reset")])
def test_a_chunked_body_whose_connection_fails_is_a_timeout(app, exc):
    stream = _ChunkedFailing(chunks(GOOD), exc, after_lines=2)
    _, _, text = call(app, stream=stream, CONTENT_LENGTH="", HTTP_TRANSFER_ENCODING="chunked")
    assert text == b"body_timeout\n"


class _LineBound(io.BytesIO):
    """Records how much each readline may take: a chunk line is never read unbounded."""

    def __init__(self, raw: bytes) -> None:
        super().__init__(raw)
        self.limits: list[int | None] = []

    def readline(self, size: int | None = -1) -> bytes:
        self.limits.append(size)
        return super().readline(size)


def test_chunk_lines_are_read_at_most_1025_bytes_at_a_time(app):
    # A hostile endless chunk-size line is cut at 1 KiB, never buffered whole.
    for raw in (chunks(GOOD), b"64;" + b"x" * 5000 + b"\r\n"):
        stream = _LineBound(raw)
        call(app, stream=stream, CONTENT_LENGTH="", HTTP_TRANSFER_ENCODING="chunked")
        assert stream.limits
        assert all(limit is not None and 0 < limit <= 1025 for limit in stream.limits)
