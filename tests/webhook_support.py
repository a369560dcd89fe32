"""Callback bodies and a receiver on a loopback socket, shared by the webhook tests."""

from __future__ import annotations

import json
from typing import Any

import requests

from exporter.server import make_server, serve_in_thread
from exporter.webhooks.receiver import WebhookReceiver
from exporter.webhooks.state import WebhookState

AUTH = "Bearer wh-test-secret-7d1f0c"
PATH = "/webhooks/8x8"


def vnu(sub: str = "acme-prod", kind: str = "UPDATES", numbers: list | None = None) -> dict:
    numbers = (
        numbers
        if numbers is not None
        else [number("+6531234567", "Active", "2026-01-01T00:00:00Z")]
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


def number(msisdn: str, status: str, updated: str, country: str = "SG") -> dict:
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


def leg(direction: str, source: str, destination: str, status: str = "COMPLETED", **quality):
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
    payload: dict[str, Any] = {
        "sessionId": session,
        "subAccountId": sub,
        "sessionStatus": status,
        "startTime": "2026-01-01T00:00:00Z",
        "endTime": "2026-01-01T00:00:20Z",
        "lastAction": "MAKE_CALL",
        "callCount": 2,
        "details": {
            "callA": leg(
                "INBOUND", "+12314377870", virtual, mos=mos, packetLossRate=0.01, jitter=20
            ),
            "callB": leg("OUTBOUND", virtual, "+6591178965", mos=mos, packetLossRate=0, jitter=19),
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


class LiveReceiver:
    """A WebhookReceiver on 127.0.0.1 and a free port, with its state."""

    def __init__(self, allowed=("acme-prod",), **options: Any) -> None:
        self.state = WebhookState(allowed)
        self.app = WebhookReceiver(self.state, AUTH, **options)
        self.server = make_server("127.0.0.1:0", self.app)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{PATH}"

    @property
    def address(self) -> tuple[str, int]:
        return "127.0.0.1", self.server.server_address[1]

    def post(self, body: Any, auth: str | None = AUTH, **kwargs: Any) -> requests.Response:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if auth is not None:
            headers["Authorization"] = auth
        return requests.post(self.url, data=data, headers=headers, timeout=30, **kwargs)

    def __enter__(self) -> LiveReceiver:
        serve_in_thread(self.server)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
