"""8x8 callbacks (webhooks) to the exporter's receiver."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import requests

from exporter.pushing.events import decode_envelope, decode_number_update, decode_session_summary
from exporter.pushing.receiver import WebhookReceiver as CallbackApp
from exporter.pushing.state import WebhookState
from exporter.web.server import make_server, serve_in_thread
from tests.support.exporters import parse_samples
from tests.support.processes import POLL_INTERVAL

# --- 8x8 callbacks (webhooks) to the exporter's receiver -----------------------------------------

CALLBACK_AUTH = "Bearer wh-test-secret-7d1f0c"
CALLBACK_PATH = "/webhooks/8x8"


def vnu(sub: str = "acme-prod", kind: str = "UPDATES", numbers: list | None = None) -> dict:
    """A VIRTUAL_NUMBER_UPDATE callback (SNAPSHOT or UPDATES)."""
    numbers = (
        numbers
        if numbers is not None
        else [vnu_number("+6531234567", "Active", "2026-01-01T00:00:00Z")]
    )
    return {
        "namespace": "VOICE",
        "eventType": "VIRTUAL_NUMBER_UPDATE",
        "description": "Status of account virtual number(s) updated",
        "payload": {
            "subAccountId": sub,
            "totalNumbers": len(numbers),
            "updateEventType": kind,
            "virtualNumbers": numbers,
        },
    }


def vnu_number(msisdn: str, status: str, updated: str, country: str = "SG") -> dict:
    """One number of a VNU callback (not the API's record: see `number`)."""
    return {
        "msisdn": msisdn,
        "updatedTimestamp": updated,
        "countryCode": country,
        "operationalStatus": status,
        "referenceId": "range-1",
        "rentalPrice": 5.0,
        "incomingRate": 0.05,
        "billingUnit": 60,
        "billingCurrency": "USD",
        "numberHealthCheckEnabled": True,
        "updateStatus": "UPDATED",
    }


def call_leg(
    direction: str, source: str, destination: str, status: str = "COMPLETED", **quality: float
) -> dict:
    out: dict[str, Any] = {
        "callId": "c-" + source + destination,
        "callDirection": direction,
        "callType": "PSTN",
        "source": source,
        "destination": destination,
        "sourceCountryCode": "US" if direction == "INBOUND" else "SG",
        "destinationCountryCode": "SG",
        "callStatus": status,
        "callDuration": 13,
    }
    if quality:
        out["callQuality"] = quality
    return out


def vss(
    sub: str = "acme-prod",
    session: str = "s-1",
    status: str = "COMPLETED",
    virtual: str = "+6531234567",
    mos: float = 4.4,
    error: int | None = None,
) -> dict:
    """A SESSION_SUMMARY callback: an inbound leg to `virtual`, an outbound leg from it."""
    payload: dict[str, Any] = {
        "sessionId": session,
        "subAccountId": sub,
        "sessionStatus": status,
        "startTime": "2026-01-01T00:00:00Z",
        "endTime": "2026-01-01T00:00:20Z",
        "lastAction": "MAKE_CALL",
        "callCount": 2,
        "details": {
            "callA": call_leg(
                "INBOUND", "+12314377870", virtual, mos=mos, packetLossRate=0.01, jitter=20
            ),
            "callB": call_leg(
                "OUTBOUND", virtual, "+6591178965", mos=mos, packetLossRate=0, jitter=19
            ),
        },
    }
    if error is not None:
        payload["errorDetails"] = {"errorCode": error, "errorMsg": "No coverage"}
    return {
        "namespace": "VOICE",
        "eventType": "SESSION_SUMMARY",
        "description": "Summary of a completed call session",
        "payload": payload,
    }


def post_callback(url: str, body: Any, auth: str | None = CALLBACK_AUTH) -> requests.Response:
    """POST a callback (a document, or raw bytes) as 8x8 would."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if auth is not None:
        headers["Authorization"] = auth
    return requests.post(url, data=data, headers=headers, timeout=30)


class CallbackReceiver:
    """The exporter's callback receiver alone, with its state, on 127.0.0.1 and a free port."""

    def __init__(self, allowed: Sequence[str] = ("acme-prod",), **options: Any) -> None:
        self.state = WebhookState(allowed)
        self.app = CallbackApp(self.state, CALLBACK_AUTH, **options)
        self.server = make_server("127.0.0.1:0", self.app)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{CALLBACK_PATH}"

    def post(self, body: Any, auth: str | None = CALLBACK_AUTH) -> requests.Response:
        return post_callback(self.url, body, auth)

    def __enter__(self) -> CallbackReceiver:
        serve_in_thread(self.server, POLL_INTERVAL)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- A callback straight into the state, without HTTP ------------------------------------------


def apply_event(state: WebhookState, event: dict) -> None:
    """Decode `event` as the receiver does and apply it to `state`."""
    envelope = decode_envelope(json.dumps(event).encode())
    if envelope.eventType == "VIRTUAL_NUMBER_UPDATE":
        state.apply_number_update(decode_number_update(envelope))
    else:
        state.apply_session_summary(decode_session_summary(envelope))


def state_samples(state: WebhookState) -> dict:
    """The state's series, parsed: {(name, labels): value}."""
    return parse_samples(state.exposition().decode())
