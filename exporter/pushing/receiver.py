"""The webhook receiver: a WSGI app answering 8x8's callbacks on one path.

One path takes every event type (VNU and VSS are registered at 8x8 with the same URL) and
dispatches on `eventType`, so a new type 8x8 starts sending is counted and answered 200
instead of 404 (which 8x8 would retry). Order of checks, cheapest and least trusting first:

1. path other than the callback path: 404 (`not_found`); method other than POST: 405
   (`method_not_allowed`);
2. `Authorization` not exactly the configured value (constant-time compare): 401
   (`unauthorized`), nothing read, nothing logged about the value;
3. too many callbacks in progress: 503 (`overloaded`);
4. two different Content-Length values, Content-Length with Transfer-Encoding, or broken
   chunks: 400 (`bad_framing`); Content-Length over the cap, or a body (chunked or not) that
   grows past it: 413 (`body_too_large`); a body that does not arrive within the read
   timeout: 408 (`body_timeout`);
5. not JSON, or nested too deeply: 400 (`malformed_json`); fields of the wrong type or out of
   range: 422 (`invalid_event`); a subaccount outside the allowed set: 403
   (`subaccount_not_allowed`);
6. an `eventType` other than VNU or VSS: 200 (`unknown_event_type`); an event already
   delivered: 200 (`duplicate`); else the event is applied: 200 (`accepted`).

Every answer is counted by its outcome in `eightbyeight_webhook_requests_total`; refusals are
logged at warning level, one line per reason per `LOG_INTERVAL` (`LogGate`).
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from exporter.common.logs import log_event
from exporter.common.wsgi import StartResponse, text_response
from exporter.config.flags import default
from exporter.pushing.events import (
    VNU,
    VSS,
    EventError,
    decode_envelope,
    decode_number_update,
    decode_session_summary,
)
from exporter.pushing.state import WebhookState

log = logging.getLogger("exporter.webhooks")

MAX_IN_FLIGHT = 64
_CHUNK = 64 * 1024
_MAX_CHUNK_LINE = 1024  # a chunk-size line with its extensions
_MAX_TRAILERS = 32
# Set by the callback listener (exporter/web/listener.py): every Content-Length value the
# request carried; the WSGI environ's CONTENT_LENGTH keeps only the first.
CONTENT_LENGTHS = "exporter.content_lengths"
_STATUS_OF = {
    "unauthorized": "401 Unauthorized",
    "not_found": "404 Not Found",
    "method_not_allowed": "405 Method Not Allowed",
    "malformed_json": "400 Bad Request",
    "bad_framing": "400 Bad Request",
    "invalid_event": "422 Unprocessable Entity",
    "subaccount_not_allowed": "403 Forbidden",
    "body_too_large": "413 Content Too Large",
    "body_timeout": "408 Request Timeout",
    "overloaded": "503 Service Unavailable",
}


# One "callback refused" line per reason at most this often; the lines between are counted
# (`suppressed=` on the next line) and every refusal is in eightbyeight_webhook_requests_total.
LOG_INTERVAL = 60.0


class LogGate:
    """Lets one log line per reason through every `interval` seconds, counting the rest."""

    def __init__(
        self, interval: float = LOG_INTERVAL, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval = interval
        self.clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def admit(self, reason: str) -> int | None:
        """None to stay silent; else how many lines of this reason were held back since."""
        now = self.clock()
        with self._lock:
            last = self._last.get(reason)
            if last is not None and now - last < self.interval:
                self._suppressed[reason] = self._suppressed.get(reason, 0) + 1
                return None
            self._last[reason] = now
            return self._suppressed.pop(reason, 0)


@dataclass(frozen=True)
class CallbackAccess:
    """Who may call back, as one configuration says: the Authorization value registered at 8x8
    and the subaccounts whose events are taken (None: the first `MAX_SUBACCOUNTS` that come).

    A reload replaces it whole (exporter/app.py); a callback is judged by one of them only.
    """

    authorization: bytes
    allowed: frozenset[str] | None = None

    @classmethod
    def of(cls, auth_header: str, allowed: Iterable[str] | None = None) -> CallbackAccess:
        if not auth_header:
            raise ValueError("an Authorization value is required")
        return cls(auth_header.encode("utf-8"), frozenset(allowed) if allowed is not None else None)


class _BodyError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class WebhookReceiver:
    """WSGI app for 8x8 callbacks; applies accepted events to a `WebhookState`.

    Called as a WSGI app, it judges callbacks by the value and allow-list it was built with;
    `answer` judges one by the `CallbackAccess` given (the callback listener passes the current
    configuration's, see exporter/web/listener.py).
    """

    def __init__(
        self,
        state: WebhookState,
        auth_header: str,
        *,
        path: str = default("webhook_path"),
        max_body: int = default("webhook_max_body"),
        read_timeout: float = default("webhook_read_timeout"),
        max_in_flight: int = MAX_IN_FLIGHT,
        log_gate: LogGate | None = None,
    ) -> None:
        self.state = state
        self.access = CallbackAccess.of(auth_header, state.allowed)
        self.path = path
        self.max_body = max_body
        self.read_timeout = read_timeout
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._log_gate = log_gate or LogGate()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        return self.answer(self.access, environ, start_response)

    def answer(
        self, access: CallbackAccess, environ: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        """Answer one callback, judged by `access` from start to end."""
        try:
            return self._route(access, environ, start_response)
        except Exception as exc:  # noqa: BLE001 - one log line and a 500, never a traceback
            log_event(log, logging.ERROR, "callback failed", err=type(exc).__name__)
            return text_response(start_response, "500 Internal Server Error", "internal error\n")

    def _route(
        self, access: CallbackAccess, environ: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/-/healthy" and environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            return text_response(start_response, "200 OK", "OK\n")
        if path != self.path:
            return self._refuse(start_response, "not_found", "not the callback path")
        if environ.get("REQUEST_METHOD") != "POST":
            return self._refuse(
                start_response, "method_not_allowed", "not a POST", [("Allow", "POST")]
            )
        if not _authorised(access, environ.get("HTTP_AUTHORIZATION")):
            # Counted and logged by reason only: the value received is never read further.
            return self._refuse(start_response, "unauthorized", "Authorization does not match")
        if not self._slots.acquire(blocking=False):
            return self._refuse(start_response, "overloaded", "too many callbacks in progress")
        try:
            return self._callback(access, environ, start_response)
        finally:
            self._slots.release()

    def _callback(
        self, access: CallbackAccess, environ: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        try:
            body = self._read_body(environ)
        except _BodyError as exc:
            return self._refuse(start_response, exc.reason, "request body refused")
        try:
            outcome = self._apply(access, body)
        except EventError as exc:
            return self._refuse(start_response, exc.reason, str(exc))
        self.state.requests.labels(outcome).inc()
        return text_response(start_response, "200 OK", f"{outcome}\n")

    def _read_body(self, environ: dict[str, Any]) -> bytearray:
        lengths = set(environ.get(CONTENT_LENGTHS) or ())
        encoding = environ.get("HTTP_TRANSFER_ENCODING", "").strip().lower()
        if len(lengths) > 1 or (encoding and (lengths or environ.get("CONTENT_LENGTH"))):
            # Two lengths, or a length and chunks: which one frames the body is a guess a
            # proxy in front may make differently (request smuggling). Refuse.
            raise _BodyError("bad_framing")
        if encoding:
            if encoding != "chunked":
                raise _BodyError("bad_framing")
            return self._read_chunked(environ["wsgi.input"])
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            raise _BodyError("malformed_json") from None
        if length < 0:
            raise _BodyError("malformed_json")
        if length > self.max_body:
            raise _BodyError("body_too_large")
        stream = environ["wsgi.input"]
        read = stream.read1 if hasattr(stream, "read1") else stream.read
        deadline = time.monotonic() + self.read_timeout
        # One buffer of the announced size, filled in place: a 30 MB snapshot costs 30 MB,
        # not twice that for the pieces and their join.
        body = bytearray(length)
        view = memoryview(body)
        received = 0
        while received < length:
            if time.monotonic() > deadline:
                raise _BodyError("body_timeout")
            try:
                # The socket's own timeout bounds one read; the deadline bounds them all.
                chunk = read(min(length - received, _CHUNK))
            except (TimeoutError, OSError):
                raise _BodyError("body_timeout") from None
            if not chunk:
                raise _BodyError("body_timeout")  # the client stopped sending early
            view[received : received + len(chunk)] = chunk
            received += len(chunk)
        view.release()
        return body

    def _read_chunked(self, stream: Any) -> bytearray:
        """A `Transfer-Encoding: chunked` body, within the same size cap and deadline."""
        deadline = time.monotonic() + self.read_timeout
        body = bytearray()
        try:
            while True:
                size = self._chunk_size(stream.readline(_MAX_CHUNK_LINE + 1))
                if size == 0:
                    break
                if len(body) + size > self.max_body:
                    raise _BodyError("body_too_large")
                while size > 0:
                    if time.monotonic() > deadline:
                        raise _BodyError("body_timeout")
                    piece = stream.read(min(size, _CHUNK))
                    if not piece:
                        raise _BodyError("body_timeout")
                    body += piece
                    size -= len(piece)
                if stream.readline(_MAX_CHUNK_LINE + 1) not in (b"\r\n", b"\n"):
                    raise _BodyError("bad_framing")
            # Trailer fields, if any, up to the empty line: read and ignored, a bounded number.
            for _ in range(_MAX_TRAILERS):
                if stream.readline(_MAX_CHUNK_LINE + 1) in (b"\r\n", b"\n", b""):
                    return body
        except (TimeoutError, OSError):
            raise _BodyError("body_timeout") from None
        raise _BodyError("bad_framing")

    @staticmethod
    def _chunk_size(line: bytes) -> int:
        if not line.endswith(b"\n") or len(line) > _MAX_CHUNK_LINE:
            raise _BodyError("bad_framing" if line else "body_timeout")
        text = line.split(b";", 1)[0].strip()
        if not text or len(text) > 8 or not all(c in b"0123456789abcdefABCDEF" for c in text):
            raise _BodyError("bad_framing")
        return int(text, 16)

    def _apply(self, access: CallbackAccess, body: bytes | bytearray) -> str:
        envelope = decode_envelope(body)
        state = self.state
        if envelope.eventType == VNU:
            update = decode_number_update(envelope)
            self._check_subaccount(access, update.sub_account_id)
            key = state.body_key(body)
            if not state.first_delivery(key):
                return "duplicate"
            try:
                state.apply_number_update(update)
            except EventError:
                state.forget(key)  # refused, not delivered: a corrected resend is not a duplicate
                raise
            return "accepted"
        if envelope.eventType == VSS:
            summary = decode_session_summary(envelope)
            self._check_subaccount(access, summary.sub_account_id)
            if not state.first_delivery(state.session_key(summary)):
                return "duplicate"
            state.apply_session_summary(summary)
            return "accepted"
        return "unknown_event_type"

    def _check_subaccount(self, access: CallbackAccess, subaccount: str) -> None:
        if not self.state.admit(subaccount, access.allowed):
            raise EventError("subaccount_not_allowed", "subaccount not allowed")

    def _refuse(
        self,
        start_response: StartResponse,
        reason: str,
        detail: str,
        headers: list[tuple[str, str]] | None = None,
    ) -> Iterable[bytes]:
        self.state.requests.labels(reason).inc()
        # The detail names the problem (msgspec's path to the bad field), never the secret,
        # which is only ever in a header this code does not log.
        suppressed = self._log_gate.admit(reason)
        if suppressed is not None:
            log_event(
                log,
                logging.WARNING,
                "callback refused",
                reason=reason,
                detail=detail[:200],
                suppressed=suppressed,
            )
        return text_response(start_response, _STATUS_OF[reason], f"{reason}\n", headers)


def _authorised(access: CallbackAccess, header: str | None) -> bool:
    # WSGI hands headers over as latin-1 text: encoding back gives the bytes that came in.
    given = (header or "").encode("latin-1", "replace")
    return hmac.compare_digest(given, access.authorization)
