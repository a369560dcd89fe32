"""Issue 21: 8x8's real shapes on the push path. Everything here runs in this process.

Sections follow the issue's numbered defects: tolerant call summaries and vocabulary (1),
leg outcomes (2), bounded cardinality (3), ordering (4), big snapshots (5), refused callbacks
(6), the webhook-list read's own budget (7), the listener (8) and the prepaid balance (9).
"""

from __future__ import annotations

import json

import pytest

from exporter.polling.configured import WebhookConfigCollector
from exporter.polling.model import PLATFORM_ERRORS
from exporter.pushing.events import decode_envelope, decode_number_update, decode_session_summary
from exporter.pushing.state import MOS_BUCKETS, WebhookState
from tests.harness import parse_samples, value, vss

SUB = "acme-prod"


def apply(state: WebhookState, event: dict) -> None:
    envelope = decode_envelope(json.dumps(event).encode())
    if envelope.eventType == "VIRTUAL_NUMBER_UPDATE":
        state.apply_number_update(decode_number_update(envelope))
    else:
        state.apply_session_summary(decode_session_summary(envelope))


def samples(state: WebhookState) -> dict:
    return parse_samples(state.exposition().decode())


def series(state: WebhookState, name: str) -> dict[tuple, float]:
    return {labels: v for (n, labels), v in samples(state).items() if n == name}


def invalid(state: WebhookState, field: str) -> float:
    return value(samples(state), "eightbyeight_webhook_invalid_fields_total", field=field)


def sessions(state: WebhookState, **labels: str) -> float:
    return sum(
        v
        for labels_, v in series(state, "eightbyeight_call_sessions_total").items()
        if all(dict(labels_).get(k) == w for k, w in labels.items())
    )


def leg_a(event: dict) -> dict:
    return event["payload"]["details"]["callA"]


# --- 1. tolerant call summaries, vocabulary ----------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda e: leg_a(e)["callQuality"].update(mos=0), "mos"),
        (lambda e: leg_a(e)["callQuality"].update(mos=5.01), "mos"),
        (lambda e: leg_a(e)["callQuality"].update(mos="high"), "mos"),
        (lambda e: leg_a(e)["callQuality"].update(jitter=-1), "jitter"),
        (lambda e: leg_a(e)["callQuality"].update(packetLossRate=1.5), "packet_loss_rate"),
        (lambda e: leg_a(e)["callQuality"].update(packetLossRate=True), "packet_loss_rate"),
        (lambda e: leg_a(e).update(callQuality="none"), "call_quality"),
        (lambda e: leg_a(e).update(callDirection=None), "call_direction"),
        (lambda e: leg_a(e).update(callDirection="SIDEWAYS"), "call_direction"),
        (lambda e: leg_a(e).pop("callStatus"), "call_status"),
        (lambda e: leg_a(e).update(callDuration=-3), "call_duration"),
        (lambda e: e["payload"].pop("sessionStatus"), "session_status"),
        (lambda e: e["payload"].update(sessionStatus=7), "session_status"),
    ],
)
def test_one_odd_field_is_dropped_and_counted_and_the_session_still_counts(change, field):
    state = WebhookState([SUB])
    event = vss(session="odd")
    change(event)
    apply(state, event)
    assert sessions(state, subaccount=SUB) == 1
    assert invalid(state, field) == 1
    others = series(state, "eightbyeight_webhook_invalid_fields_total")
    assert sum(others.values()) == 1, others
    # The other leg's quality still counts (callB always carries a good MOS here).
    mos_count = value(samples(state), "eightbyeight_call_mos_count", subaccount=SUB, country="SG")
    assert mos_count == (1 if field == "mos" or field == "call_quality" else 2)


def test_missing_quality_is_not_an_invalid_field():
    state = WebhookState([SUB])
    event = vss(session="no-quality")
    del leg_a(event)["callQuality"]
    leg_a(event)["callQuality"] = {"mos": None}
    apply(state, event)
    assert sum(series(state, "eightbyeight_webhook_invalid_fields_total").values()) == 0
    assert sessions(state) == 1


def test_a_dropped_direction_or_status_shows_as_unknown_on_the_leg():
    state = WebhookState([SUB])
    event = vss(session="no-direction")
    leg_a(event)["callDirection"] = None
    leg_a(event).pop("callStatus")
    apply(state, event)
    legs = series(state, "eightbyeight_call_legs_total")
    assert value(samples(state), "eightbyeight_call_legs_total", subaccount=SUB,
                 direction="unknown", call_status="unknown") == 1  # fmt: skip
    assert sum(legs.values()) == 2


@pytest.mark.parametrize(
    ("spelling", "label"),
    [
        ("NO_ANSWER", "no_answer"),
        ("NO ANSWER", "no_answer"),
        ("no answer", "no_answer"),
        ("CANCELED", "canceled"),
        ("CANCELLED", "canceled"),
        ("BUSY", "busy"),
        ("OPTED_OUT", "other"),
    ],
)
def test_status_spellings_are_normalised(spelling, label):
    state = WebhookState([SUB])
    event = vss(session="spelled", status=spelling)
    leg_a(event)["callStatus"] = spelling
    apply(state, event)
    assert sessions(state, session_status=label) == 1
    assert value(samples(state), "eightbyeight_call_legs_total", subaccount=SUB,
                 direction="inbound", call_status=label) == 1  # fmt: skip


def test_mos_buckets_sit_on_8x8s_band_edges():
    # Bad below 3.1, poor 3.1-3.6, fair 3.6-4.0, good 4.0-4.3, excellent 4.3-5.0.
    for edge in (3.1, 3.6, 4.0, 4.3, 5.0):
        assert edge in MOS_BUCKETS
    assert 3.5 not in MOS_BUCKETS
    state = WebhookState([SUB])
    apply(state, vss(session="edges", mos=3.6))
    s = samples(state)
    bucket = {
        dict(labels)["le"]: v
        for (name, labels), v in s.items()
        if name == "eightbyeight_call_mos_bucket"
    }
    assert bucket["3.6"] == 2
    assert bucket["3.1"] == 0


class _Lists:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def fetch_webhooks(self, subaccount: str, timeout: float | None = None) -> bytes:
        return self.body


def config_samples(body: bytes) -> dict:
    collector = WebhookConfigCollector()
    collector.read(_Lists(body), SUB, 1.0)
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    registry.register(collector)
    return parse_samples(generate_latest(registry).decode())


def test_a_webhook_without_enabled_is_enabled():
    body = json.dumps(
        {"subAccountId": SUB, "count": 1, "webhooks": [{"type": "VSS", "url": "https://x/y"}]}
    ).encode()
    s = config_samples(body)
    assert value(s, "eightbyeight_webhook_config_up", subaccount=SUB) == 1
    assert value(s, "eightbyeight_webhook_enabled", subaccount=SUB, type="VSS") == 1
    assert value(s, "eightbyeight_webhook_enabled", subaccount=SUB, type="VNU") == 0


@pytest.mark.parametrize(
    "body",
    [
        b'{"subAccountId": "acme-prod", "count": 0}',
        b'{"statusCode": "1001", "errorId": "e-1", "statusMessage": "invalid"}',
        b'{"code": 1200, "message": "unauthorized"}',
    ],
)
def test_a_200_without_a_webhook_list_is_not_nothing_configured(body):
    s = config_samples(body)
    assert value(s, "eightbyeight_webhook_config_up", subaccount=SUB) == 0
    assert not any(name == "eightbyeight_webhook_configured" for name, _ in s)


def test_an_empty_list_is_nothing_configured():
    s = config_samples(b'{"subAccountId": "acme-prod", "count": 0, "webhooks": []}')
    assert value(s, "eightbyeight_webhook_config_up", subaccount=SUB) == 1
    assert value(s, "eightbyeight_webhook_configured", subaccount=SUB, type="VNU") == 0


def test_platform_code_1001_is_a_validation_error():
    assert PLATFORM_ERRORS[1001] == "bad_request"
