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


# --- 2. leg outcomes ------------------------------------------------------------------------

# The field lists of 8x8's VNU and VSS pages (docs/webhooks-limits.md names the source).
VNU_PAYLOAD = {"subAccountId", "totalNumbers", "updateEventType", "virtualNumbers"}
VNU_RECORD = {
    "msisdn", "updatedTimestamp", "countryCode", "operationalStatus", "referenceId",
    "rentalPrice", "incomingRate", "billingUnit", "billingCurrency",
    "numberHealthCheckEnabled", "updateStatus",
}  # fmt: skip
VSS_PAYLOAD_REQUIRED = {
    "sessionId", "subAccountId", "sessionStatus", "startTime", "endTime", "lastAction",
    "callCount", "details",
}  # fmt: skip
VSS_PAYLOAD = VSS_PAYLOAD_REQUIRED | {"errorDetails"}
LEG_REQUIRED = {
    "callId", "callDirection", "callType", "initiatedTimestamp", "disconnectedTimestamp",
    "source", "destination", "sourceCountryCode", "destinationCountryCode", "callStatus",
    "callDuration",
}  # fmt: skip
# connectedTimestamp only when connected, callQuality only when measured; the Ref ID by
# direction; sourceFormat/destinationFormat as in the VSS page's example.
LEG = LEG_REQUIRED | {
    "connectedTimestamp", "callQuality", "sourceRefId", "destinationRefId",
    "sourceFormat", "destinationFormat",
}  # fmt: skip
QUALITY = {"mos", "packetLossRate", "jitter"}
ENVELOPE = {"namespace", "eventType", "description", "payload"}
STATUSES = {"COMPLETED", "NO_ANSWER", "BUSY", "CANCELED", "FAILED", "ERROR"}


def simulated_sessions(count: int = 400) -> list[dict]:
    from exporter.simulator.push import PushFaults, PushSender

    numbers = [{"msisdn": "+6531234567", "countryCode": "SG", "operationalStatus": "Active",
                "referenceId": "range-1"}]  # fmt: skip
    sender = PushSender([SUB], lambda s: {}, "http://127.0.0.1:9/", "x", clock=lambda: 1.7e9)
    return [sender._session(SUB, numbers, PushFaults()) for _ in range(count)]


def test_simulated_sessions_have_the_documented_fields():
    for event in simulated_sessions():
        assert set(event) <= ENVELOPE
        payload = event["payload"]
        assert VSS_PAYLOAD_REQUIRED <= set(payload) <= VSS_PAYLOAD, set(payload)
        assert payload["sessionStatus"] in STATUSES
        assert payload["callCount"] == len(payload["details"])
        for name, leg in payload["details"].items():
            assert name in ("callA", "callB")
            assert LEG_REQUIRED <= set(leg) <= LEG, set(leg) ^ LEG
            assert set(leg.get("callQuality", {})) <= QUALITY
            ref = "destinationRefId" if leg["callDirection"] == "INBOUND" else "sourceRefId"
            assert ref in leg
            assert ("connectedTimestamp" in leg) == (leg["callStatus"] == "COMPLETED")
        if "errorDetails" in payload:
            assert set(payload["errorDetails"]) == {"errorCode", "errorMsg"}
            assert -2010 <= payload["errorDetails"]["errorCode"] <= -2001


def test_simulated_vnu_has_the_documented_fields():
    from exporter.simulator.push import PushSender

    numbers = [{"msisdn": "+6531234567", "countryCode": "SG", "operationalStatus": "Active",
                "referenceId": "range-1", "rentalPrice": 5.0, "incomingRate": 0.05,
                "billingUnit": 60, "billingCurrency": "USD", "numberHealthCheckEnabled": True,
                "dateUpdated": "2026-01-01T00:00:00Z"}]  # fmt: skip
    sender = PushSender([SUB], lambda s: {}, "http://127.0.0.1:9/", "x", clock=lambda: 1.7e9)
    event = sender._number_update(SUB, numbers)
    assert set(event) <= ENVELOPE
    assert set(event["payload"]) == VNU_PAYLOAD
    assert set(event["payload"]["virtualNumbers"][0]) == VNU_RECORD


def test_the_simulator_sends_masking_shapes_with_the_outcome_on_leg_b():
    seen = set()
    for event in simulated_sessions():
        payload = event["payload"]
        status, legs = payload["sessionStatus"], payload["details"]
        if status in ("BUSY", "NO_ANSWER", "FAILED"):
            assert legs["callA"]["callStatus"] == "COMPLETED"
            assert legs["callB"]["callStatus"] == status
            assert "callQuality" not in legs["callB"]
            seen.add(status)
        elif status == "COMPLETED":
            assert {leg["callStatus"] for leg in legs.values()} == {"COMPLETED"}
            assert len(legs) == 2
        else:
            assert list(legs) == ["callA"]
    assert seen == {"BUSY", "NO_ANSWER", "FAILED"}


def masked(session: str, status: str) -> dict:
    event = vss(session=session, status=status)
    leg_b = event["payload"]["details"]["callB"]
    leg_b["callStatus"] = status
    leg_b.pop("callQuality")
    return event


@pytest.mark.parametrize(
    ("status", "outcome"), [("BUSY", "unanswered"), ("NO_ANSWER", "unanswered"),
                            ("FAILED", "failed")]
)  # fmt: skip
def test_a_masked_failure_counts_once_as_the_outcome_leg_b_carries(status, outcome):
    from tests.harness import vnu

    state = WebhookState([SUB])
    apply(state, vnu(kind="SNAPSHOT"))
    apply(state, masked("m-1", status))
    apply(state, vss(session="ok-1"))
    per = series(state, "eightbyeight_number_call_legs_total")
    counts = {dict(labels)["outcome"]: v for labels, v in per.items()}
    # One failure and one success: a 50 % failure ratio, not 33 % from counting legs.
    assert counts == {"answered": 1, "failed": 1 if outcome == "failed" else 0,
                      "unanswered": 1 if outcome == "unanswered" else 0}  # fmt: skip


def test_the_simulators_failure_ratio_matches_its_session_statuses():
    from tests.harness import vnu

    state = WebhookState([SUB])
    apply(state, vnu(kind="SNAPSHOT"))
    events = simulated_sessions()
    for event in events:
        event["payload"]["details"]["callA"]["destination"] = "+6531234567"
        if "callB" in event["payload"]["details"]:
            event["payload"]["details"]["callB"]["source"] = "+6531234567"
        apply(state, event)
    per = series(state, "eightbyeight_number_call_legs_total")
    counts = {dict(labels)["outcome"]: v for labels, v in per.items()}
    statuses = [e["payload"]["sessionStatus"] for e in events]
    assert counts["answered"] == statuses.count("COMPLETED")
    assert counts["failed"] == statuses.count("FAILED") + statuses.count("ERROR")
    assert sum(counts.values()) == len(events)
