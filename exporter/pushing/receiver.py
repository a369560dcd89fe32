"""The webhook receiver: a WSGI app answering 8x8's callbacks on one path.

One path takes every event type (VNU and VSS are registered at 8x8 with the same URL) and
dispatches on `eventType`, so a new type 8x8 starts sending is counted and answered 200
instead of 404 (which 8x8 would retry). Order of checks, cheapest and least trusting first:

1. path other than the callback path: 404; method other than POST: 405 (not counted);
2. `Authorization` not exactly the configured value (constant-time compare): 401, nothing
   counted, nothing read, nothing logged about the value;
3. too many callbacks in progress: 503 (`overloaded`);
4. Content-Length over the cap, or a body that grows past it: 413 (`body_too_large`); a body
   that does not arrive within the read timeout: 408 (`body_timeout`);
5. not JSON, or nested too deeply: 400 (`malformed_json`); fields of the wrong type or out of
   range: 422 (`invalid_event`); a subaccount outside the allowed set: 403
   (`subaccount_not_allowed`);
6. an `eventType` other than VNU or VSS: 200 (`unknown_event_type`); an event already
   delivered: 200 (`duplicate`); else the event is applied: 200 (`accepted`).
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections.abc import Iterable
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
_STATUS_OF = {
    "malformed_json": "400 Bad Request",
    "invalid_event": "422 Unprocessable Entity",
    "subaccount_not_allowed": "403 Forbidden",
    "body_too_large": "413 Content Too Large",
    "body_timeout": "408 Request Timeout",
    "overloaded": "503 Service Unavailable",
}


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
    ) -> None:
        self.state = state
        self.access = CallbackAccess.of(auth_header, state.allowed)
        self.path = path
        self.max_body = max_body
        self.read_timeout = read_timeout
        self._slots = threading.BoundedSemaphore(max_in_flight)

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
            return text_response(start_response, "404 Not Found", "not found\n")
        if environ.get("REQUEST_METHOD") != "POST":
            return text_response(
                start_response, "405 Method Not Allowed", "only POST\n", [("Allow", "POST")]
            )
        if not _authorised(access, environ.get("HTTP_AUTHORIZATION")):
            return text_response(start_response, "401 Unauthorized", "unauthorized\n")
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

    def _read_body(self, environ: dict[str, Any]) -> bytes:
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
        chunks: list[bytes] = []
        remaining = length
        while remaining > 0:
            if time.monotonic() > deadline:
                raise _BodyError("body_timeout")
            try:
                # The socket's own timeout bounds one read; the deadline bounds them all.
                chunk = read(min(remaining, _CHUNK))
            except (TimeoutError, OSError):
                raise _BodyError("body_timeout") from None
            if not chunk:
                raise _BodyError("body_timeout")  # the client stopped sending early
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)

    def _apply(self, access: CallbackAccess, body: bytes) -> str:
        envelope = decode_envelope(body)
        state = self.state
        if envelope.eventType == VNU:
            update = decode_number_update(envelope)
            self._check_subaccount(access, update.sub_account_id)
            if not state.first_delivery(state.body_key(body)):
                return "duplicate"
            state.apply_number_update(update)
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

    def _refuse(self, start_response: StartResponse, reason: str, detail: str) -> Iterable[bytes]:
        self.state.requests.labels(reason).inc()
        # The detail names the problem (msgspec's path to the bad field), never the secret,
        # which is only ever in a header this code does not log.
        log_event(log, logging.DEBUG, "callback refused", reason=reason, detail=detail[:200])
        return text_response(start_response, _STATUS_OF[reason], f"{reason}\n")


def _authorised(access: CallbackAccess, header: str | None) -> bool:
    # WSGI hands headers over as latin-1 text: encoding back gives the bytes that came in.
    given = (header or "").encode("latin-1", "replace")
    return hmac.compare_digest(given, access.authorization)
