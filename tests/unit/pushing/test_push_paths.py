"""Issue 21: 8x8's real shapes on the push path. Everything here runs in this process.

Sections follow the issue's numbered defects: tolerant call summaries and vocabulary (1),
leg outcomes (2), bounded cardinality (3), ordering (4), big snapshots (5), refused callbacks
(6), the webhook-list read's own budget (7), the listener (8) and the prepaid balance (9).
"""

from __future__ import annotations

import json

import pytest

from exporter.metrics.catalogue import MOS_BUCKETS
from exporter.polling.configured import WebhookConfigCollector
from exporter.polling.model import PLATFORM_ERRORS
from exporter.pushing.state import WebhookState
from tests.support.callbacks import apply_event, state_samples, vnu, vnu_number, vss
from tests.support.exporters import parse_samples, value

SUB = "acme-prod"


def series(state: WebhookState, name: str) -> dict[tuple, float]:
    return {labels: v for (n, labels), v in state_samples(state).items() if n == name}


def invalid(state: WebhookState, field: str) -> float:
    return value(state_samples(state), "eightbyeight_webhook_invalid_fields_total", field=field)


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
    apply_event(state, event)
    assert sessions(state, subaccount=SUB) == 1
    assert invalid(state, field) == 1
    others = series(state, "eightbyeight_webhook_invalid_fields_total")
    assert sum(others.values()) == 1, others
    # The other leg's quality still counts (callB always carries a good MOS here).
    mos_count = value(
        state_samples(state), "eightbyeight_call_mos_count", subaccount=SUB, country="SG"
    )
    assert mos_count == (1 if field == "mos" or field == "call_quality" else 2)


def test_missing_quality_is_not_an_invalid_field():
    state = WebhookState([SUB])
    event = vss(session="no-quality")
    del leg_a(event)["callQuality"]
    leg_a(event)["callQuality"] = {"mos": None}
    apply_event(state, event)
    assert sum(series(state, "eightbyeight_webhook_invalid_fields_total").values()) == 0
    assert sessions(state) == 1


def test_a_dropped_direction_or_status_shows_as_unknown_on_the_leg():
    state = WebhookState([SUB])
    event = vss(session="no-direction")
    leg_a(event)["callDirection"] = None
    leg_a(event).pop("callStatus")
    apply_event(state, event)
    legs = series(state, "eightbyeight_call_legs_total")
    assert value(state_samples(state), "eightbyeight_call_legs_total", subaccount=SUB,
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
    apply_event(state, event)
    assert sessions(state, session_status=label) == 1
    assert value(state_samples(state), "eightbyeight_call_legs_total", subaccount=SUB,
                 direction="inbound", call_status=label) == 1  # fmt: skip


def test_mos_buckets_sit_on_8x8s_band_edges():
    # Bad below 3.1, poor 3.1-3.6, fair 3.6-4.0, good 4.0-4.3, excellent 4.3-5.0.
    for edge in (3.1, 3.6, 4.0, 4.3, 5.0):
        assert edge in MOS_BUCKETS
    assert 3.5 not in MOS_BUCKETS
    state = WebhookState([SUB])
    apply_event(state, vss(session="edges", mos=3.6))
    s = state_samples(state)
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
    assert value(s, "eightbyeight_webhook_enabled", subaccount=SUB, event_type="vss") == 1
    assert value(s, "eightbyeight_webhook_enabled", subaccount=SUB, event_type="vnu") == 0


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
    assert value(s, "eightbyeight_webhook_configured", subaccount=SUB, event_type="vnu") == 0


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

    state = WebhookState([SUB])
    apply_event(state, vnu(kind="SNAPSHOT"))
    apply_event(state, masked("m-1", status))
    apply_event(state, vss(session="ok-1"))
    per = series(state, "eightbyeight_number_call_legs_total")
    counts = {dict(labels)["outcome"]: v for labels, v in per.items()}
    # One failure and one success: a 50 % failure ratio, not 33 % from counting legs.
    assert counts == {"answered": 1, "failed": 1 if outcome == "failed" else 0,
                      "unanswered": 1 if outcome == "unanswered" else 0}  # fmt: skip


def test_the_simulators_failure_ratio_matches_its_session_statuses():

    state = WebhookState([SUB])
    apply_event(state, vnu(kind="SNAPSHOT"))
    events = simulated_sessions()
    for event in events:
        event["payload"]["details"]["callA"]["destination"] = "+6531234567"
        if "callB" in event["payload"]["details"]:
            event["payload"]["details"]["callB"]["source"] = "+6531234567"
        apply_event(state, event)
    per = series(state, "eightbyeight_number_call_legs_total")
    counts = {dict(labels)["outcome"]: v for labels, v in per.items()}
    statuses = [e["payload"]["sessionStatus"] for e in events]
    assert counts["answered"] == statuses.count("COMPLETED")
    assert counts["failed"] == statuses.count("FAILED") + statuses.count("ERROR")
    assert sum(counts.values()) == len(events)


# --- 3. bounded cardinality -----------------------------------------------------------------


def test_country_codes_are_the_assigned_iso_list():
    from exporter.common.countries import ASSIGNED, country_label

    assert len(ASSIGNED) == 249
    assert {"SG", "US", "GB", "AX", "SS", "BQ", "CW"} <= ASSIGNED
    assert not {"UK", "EU", "XK", "ZZ", "AA"} & ASSIGNED
    assert country_label("SG") == "SG"
    assert country_label("sg") == "SG"
    assert country_label("ZZ") == "other"
    assert country_label("S") == "other"
    assert country_label(None) == "unknown"
    assert country_label("") == "unknown"


def test_two_letters_that_name_no_country_add_no_series():
    from itertools import product

    state = WebhookState([SUB])
    for i, (a, b) in enumerate(product("ABCDEFGHIJKLMNOPQRSTUVWXYZ", repeat=2)):
        event = vss(session=f"c{i}")
        leg_a(event)["destinationCountryCode"] = a + b
        event["payload"]["details"]["callB"]["sourceCountryCode"] = a + b
        apply_event(state, event)
    countries = {
        dict(labels)["country"] for labels in series(state, "eightbyeight_call_sessions_total")
    }
    from exporter.common.countries import ASSIGNED

    assert countries <= ASSIGNED | {"other"}
    assert "other" in countries
    assert len(countries) == 250


def test_error_codes_come_from_the_documented_list():
    state = WebhookState([SUB])
    for i, code in enumerate([-2004, "-2010", -9999, -2011, -3000, "x" * 50, 12345678901]):
        apply_event(state, vss(session=f"e{i}", status="ERROR", error=code))
    codes = {
        dict(labels)["error_code"]: v
        for labels, v in series(state, "eightbyeight_call_session_errors_total").items()
    }
    assert codes == {"-2004": 1, "-2010": 1, "-9999": 1, "other": 4}


def test_pushed_per_number_series_stop_at_the_cap_and_count_the_overflow(monkeypatch):
    from exporter.pushing import state as state_module

    monkeypatch.setattr(state_module, "MAX_NUMBER_SERIES", 3)
    state = WebhookState([SUB])
    numbers = [vnu_number(f"+65312345{i:02d}", "Active", "2026-01-01T00:00:00Z") for i in range(5)]
    apply_event(state, vnu(kind="SNAPSHOT", numbers=numbers))
    apply_event(state, vnu(kind="SNAPSHOT", numbers=numbers))  # counted once, when first pushed
    s = state_samples(state)
    msisdns = {
        dict(labels)["msisdn"] for labels in series(state, "eightbyeight_number_pushed_status")
    }
    assert len(msisdns) == 3
    assert (
        value(s, "eightbyeight_webhook_numbers_over_cap_total", subaccount=SUB, cap="series") == 2
    )
    assert value(s, "eightbyeight_pushed_virtual_numbers_by_status", subaccount=SUB,
                 operational_status="active") == 5  # fmt: skip
    # A snapshot without the first number frees its place for the next one.
    apply_event(state, vnu(kind="SNAPSHOT", numbers=numbers[1:]))
    apply_event(state, vnu(kind="UPDATES", numbers=[vnu_number("+6531234599", "Active",
                                                         "2026-01-01T00:00:00Z")]))  # fmt: skip
    msisdns = {
        dict(labels)["msisdn"] for labels in series(state, "eightbyeight_number_pushed_status")
    }
    assert "+6531234500" not in msisdns
    assert len(msisdns) == 3


def worst_case_samples(per_number_cap: int) -> int:
    """The catalogue's bound (docs/metrics.md): the samples one subaccount can have at most."""
    from exporter.metrics import catalogue as c

    fixed, per_number = c.worst_case_per_subaccount(c.RECEIVER)
    return fixed + per_number_cap * per_number


def test_worst_case_samples_per_subaccount_match_the_documented_figure(monkeypatch):
    from pathlib import Path

    from exporter.common.countries import ASSIGNED
    from exporter.pushing import state as state_module

    cap = 20
    monkeypatch.setattr(state_module, "MAX_NUMBER_SERIES", cap)
    state = WebhookState([SUB])
    statuses = ["Active", "Expiring", "Inactive", "Unhealthy"]
    numbers = [
        vnu_number(f"+653123{i:04d}", statuses[i % 4] if i < cap else "Weird",
                   "2026-01-01T00:00:00Z", "SG")
        for i in range(cap + 10)
    ]  # fmt: skip
    errors = [*range(-2010, -2000), -9999, -1]
    apply_event(state, vnu(kind="SNAPSHOT", numbers=numbers))
    apply_event(state, vnu(kind="OTHER", numbers=numbers[:1]))
    apply_event(state, vnu(kind="UPDATES", numbers=numbers[:1]))
    countries = [*sorted(ASSIGNED), "ZZ", None]
    session_statuses = ["COMPLETED", "NO_ANSWER", "BUSY", "CANCELED", "FAILED", "ERROR",
                        "OPTED_OUT", None]  # fmt: skip
    n = 0
    for country in countries:
        for status in session_statuses:
            n += 1
            number = numbers[n % cap]["msisdn"]
            event = vss(session=f"w{n}", status=status or "", virtual=number,
                        error=errors[n % len(errors)])  # fmt: skip
            if status is None:
                event["payload"].pop("sessionStatus")
            for leg in event["payload"]["details"].values():
                leg["sourceCountryCode"] = leg["destinationCountryCode"] = country
            leg_a(event)["callStatus"] = status
            leg_a(event)["callDirection"] = ["INBOUND", "OUTBOUND", None][n % 3]
            apply_event(state, event)
    text = state.exposition().decode()
    mine = [
        line for line in text.splitlines()
        if line and not line.startswith("#") and f'subaccount="{SUB}"' in line
    ]  # fmt: skip
    assert len(mine) == worst_case_samples(cap)
    assert worst_case_samples(0) == 13_899  # the figures docs/webhooks-limits.md states
    assert worst_case_samples(10_000) == 153_899
    docs = Path(__file__).resolve().parents[3] / "docs"
    for page in ("metrics.md", "webhooks-limits.md"):
        text = (docs / page).read_text()
        assert f"{worst_case_samples(10_000):,}" in text, page
        assert f"{worst_case_samples(0):,}" in text, page


# --- 4. ordering ------------------------------------------------------------------------------

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def at(offset: float) -> str:
    import datetime

    moment = datetime.datetime.fromtimestamp(NOW + offset, tz=datetime.UTC)
    return moment.isoformat().replace("+00:00", "Z")


def pushed_status(state: WebhookState, msisdn: str) -> str | None:
    for labels, v in series(state, "eightbyeight_number_pushed_status").items():
        if dict(labels)["msisdn"] == msisdn and v == 1:
            return dict(labels)["operational_status"]
    return None


def test_a_late_older_snapshot_never_erases_a_newer_update():
    state = WebhookState([SUB], clock=lambda: NOW)
    apply_event(
        state, vnu(kind="SNAPSHOT", numbers=[vnu_number("+6531234501", "Active", at(-600))])
    )
    apply_event(
        state, vnu(kind="UPDATES", numbers=[vnu_number("+6531234502", "Unhealthy", at(-60))])
    )
    # The snapshot 8x8 took before that update arrives only now: it lacks +...502.
    apply_event(
        state, vnu(kind="SNAPSHOT", numbers=[vnu_number("+6531234501", "Active", at(-300))])
    )
    assert pushed_status(state, "+6531234502") == "unhealthy"
    # A snapshot taken after the update does remove it.
    apply_event(state, vnu(kind="SNAPSHOT", numbers=[vnu_number("+6531234501", "Active", at(-30))]))
    assert pushed_status(state, "+6531234502") is None


def test_an_older_status_never_overwrites_a_newer_one():
    state = WebhookState([SUB], clock=lambda: NOW)
    apply_event(state, vnu(numbers=[vnu_number("+6531234501", "Unhealthy", at(-10))]))
    apply_event(state, vnu(kind="SNAPSHOT", numbers=[vnu_number("+6531234501", "Active", at(-20))]))
    assert pushed_status(state, "+6531234501") == "unhealthy"
    apply_event(
        state, vnu(numbers=[vnu_number("+6531234501", "Active", at(-10))])
    )  # same time: applies
    assert pushed_status(state, "+6531234501") == "active"


@pytest.mark.parametrize(("offset", "refused"), [(299, False), (300, False), (301, True),
                                                 (86_400 * 365 * 50, True)])  # fmt: skip
def test_update_times_beyond_the_skew_are_refused_and_counted(offset, refused):
    from exporter.pushing.state import MAX_CLOCK_SKEW

    assert MAX_CLOCK_SKEW == 300
    state = WebhookState([SUB], clock=lambda: NOW)
    apply_event(state, vnu(numbers=[vnu_number("+6531234501", "Unhealthy", at(offset))]))
    assert invalid(state, "updated_timestamp") == (1 if refused else 0)
    assert pushed_status(state, "+6531234501") == (None if refused else "unhealthy")
    # A far-future time never pins the status: the next real update applies.
    apply_event(state, vnu(numbers=[vnu_number("+6531234501", "Active", at(0))]))
    assert pushed_status(state, "+6531234501") == ("active" if refused else "unhealthy")


# --- 5. big snapshots ------------------------------------------------------------------------


def post_in_process(app, body: bytes, auth: str = "Bearer x") -> str:
    import io

    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/webhooks/8x8",
        "HTTP_AUTHORIZATION": auth,
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }
    answer: list[str] = []
    b"".join(app(environ, lambda status, headers, exc_info=None: answer.append(status)))
    return answer[0]


def snapshot_body(count: int) -> bytes:
    numbers = [vnu_number(f"+65{80_000_000 + i}", "Active", at(-60)) for i in range(count)]
    return json.dumps(vnu(kind="SNAPSHOT", numbers=numbers)).encode()


def peak_bytes_per_1000(count: int) -> float:
    """Peak memory traced while the receiver, at its defaults, takes a SNAPSHOT of `count`."""
    import gc
    import tracemalloc

    from exporter.pushing.receiver import WebhookReceiver

    body = snapshot_body(count)
    state = WebhookState([SUB], clock=lambda: NOW)
    receiver = WebhookReceiver(state, "Bearer x")  # every limit at its default
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        status = post_in_process(receiver, body)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert status == "200 OK"
    assert value(state_samples(state), "eightbyeight_pushed_virtual_numbers_by_status",
                 subaccount=SUB, operational_status="active") == count  # fmt: skip
    return peak / (count / 1000)


def test_a_100000_number_snapshot_fits_the_default_body_limit():
    from exporter.config.flags import default

    max_body = default("webhook_max_body")

    one = len(snapshot_body(1))
    two = len(snapshot_body(2))
    assert one + (two - one) * (100_000 - 1) <= max_body


def test_snapshot_memory_per_1000_numbers_is_bounded():
    # Measured 701 kB per 1,000 numbers: the body (297 kB), the remembered numbers (290 kB)
    # and the parse. Reading the body in pieces and decoding every record at once was 1.1 MB.
    assert peak_bytes_per_1000(3_000) < 850_000


@pytest.mark.slow
def test_a_100000_number_snapshot_is_taken_by_default_with_bounded_memory():
    assert peak_bytes_per_1000(100_000) < 850_000


def test_a_snapshot_in_parts_drops_missing_numbers_only_once_complete():
    state = WebhookState([SUB], clock=lambda: NOW)
    old = vnu_number("+6531234599", "Active", at(-3600))
    apply_event(state, vnu(kind="SNAPSHOT", numbers=[old]))
    parts = [vnu_number(f"+653123450{i}", "Active", at(-60)) for i in range(3)]
    first = vnu(kind="SNAPSHOT", numbers=parts[:1])
    first["payload"]["totalNumbers"] = 3
    apply_event(state, first)
    # The first part is not the whole pool: nothing it lacks is dropped yet.
    assert pushed_status(state, "+6531234599") == "active"
    assert pushed_status(state, "+6531234500") == "active"
    second = vnu(kind="SNAPSHOT", numbers=parts[1:])
    second["payload"]["totalNumbers"] = 3
    apply_event(state, second)
    assert pushed_status(state, "+6531234599") is None
    assert {pushed_status(state, n["msisdn"]) for n in parts} == {"active"}


def test_a_bad_record_refuses_the_whole_update_and_its_resend_is_not_a_duplicate():
    from exporter.pushing.receiver import WebhookReceiver

    state = WebhookState([SUB], clock=lambda: NOW)
    receiver = WebhookReceiver(state, "Bearer x")
    event = vnu(kind="SNAPSHOT", numbers=[vnu_number("+6531234501", "Active", at(-1))])
    event["payload"]["virtualNumbers"].append({"msisdn": "+65abc", "operationalStatus": "Active"})
    body = json.dumps(event).encode()
    assert post_in_process(receiver, body).startswith("422")
    assert post_in_process(receiver, body).startswith("422")
    assert pushed_status(state, "+6531234501") is None


# --- 6. refused callbacks -------------------------------------------------------------------


def test_a_status_too_long_to_be_one_is_an_invalid_field():
    state = WebhookState([SUB])
    apply_event(state, vss(session="long", status="X" * 129))
    assert invalid(state, "session_status") == 1
    assert sessions(state, session_status="unknown") == 1


@pytest.mark.parametrize(
    ("path", "method", "auth", "status", "reason"),
    [
        ("/webhooks/8x8", "POST", "Bearer guessed-value-123", "401", "unauthorized"),
        ("/webhooks/8x8", "POST", None, "401", "unauthorized"),
        ("/webhooks/8x8", "GET", "Bearer x", "405", "method_not_allowed"),
        ("/elsewhere", "POST", "Bearer x", "404", "not_found"),
    ],
)
def test_every_refusal_is_counted_by_reason(path, method, auth, status, reason):
    import io

    from exporter.pushing.receiver import WebhookReceiver

    state = WebhookState([SUB])
    receiver = WebhookReceiver(state, "Bearer x")
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "CONTENT_LENGTH": "2",
               "wsgi.input": io.BytesIO(b"{}")}  # fmt: skip
    if auth is not None:
        environ["HTTP_AUTHORIZATION"] = auth
    answer: list[str] = []
    b"".join(receiver(environ, lambda s, h, exc_info=None: answer.append(s)))
    assert answer[0].startswith(status)
    counted = {
        dict(labels)["outcome"]: v
        for labels, v in series(state, "eightbyeight_webhook_requests_total").items()
        if v
    }
    assert counted == {reason: 1}


def test_refusals_are_logged_at_a_bounded_rate_without_the_value(caplog):
    import logging

    from exporter.pushing.receiver import LOG_INTERVAL, LogGate, WebhookReceiver

    assert LOG_INTERVAL == 60
    now = [1000.0]
    state = WebhookState([SUB])
    receiver = WebhookReceiver(state, "Bearer right", log_gate=LogGate(clock=lambda: now[0]))
    guessed = "Bearer wrong-guess-must-never-be-logged"
    caplog.set_level(logging.WARNING, logger="exporter.webhooks")
    for _ in range(100):
        assert post_in_process(receiver, b"{}", auth=guessed).startswith("401")
    now[0] += 59.9
    post_in_process(receiver, b"{}", auth=guessed)
    lines = [r for r in caplog.records if r.getMessage() == "callback refused"]
    assert len(lines) == 1
    now[0] += 0.1
    post_in_process(receiver, b"{}", auth=guessed)
    lines = [r for r in caplog.records if r.getMessage() == "callback refused"]
    assert len(lines) == 2
    assert lines[-1].fields["suppressed"] == 100
    assert lines[-1].fields["reason"] == "unauthorized"
    assert lines[-1].levelno == logging.WARNING
    # Another reason has its own allowance.
    assert post_in_process(receiver, b"nope", auth="Bearer right").startswith("400")
    assert len([r for r in caplog.records if r.getMessage() == "callback refused"]) == 3
    text = caplog.text + "".join(str(getattr(r, "fields", "")) for r in caplog.records)
    assert "wrong-guess" not in text
    assert "right" not in text
    assert value(state_samples(state), "eightbyeight_webhook_requests_total",
                 outcome="unauthorized") == 102  # fmt: skip
    assert "Bearer right" not in text


# --- 7. the webhook-list read has its own budget --------------------------------------------


class _HangingLists:
    """Numbers at once; the webhook list only when the test lets it go."""

    def __init__(self) -> None:
        import threading

        from tests.support.fake_api import number, numbers_body

        self.body = json.dumps(numbers_body([number("+6531234567")])).encode()
        self.release = threading.Event()
        self.asked = threading.Event()
        self.reads = 0

    def fetch_numbers(self, subaccount: str, timeout: float | None = None) -> bytes:
        return self.body

    def fetch_webhooks(self, subaccount: str, timeout: float | None = None) -> bytes:
        self.reads += 1
        self.asked.set()
        assert self.release.wait(60), "the test never released the webhook list"
        return b'{"webhooks": [{"type": "VNU", "url": "https://h/x"}]}'


def test_a_hanging_webhook_list_never_fails_or_delays_the_scrape():
    from exporter.metrics.selfmetrics import SelfMetrics
    from exporter.polling.scraper import SubaccountScraper, scrape_all

    client = _HangingLists()
    collector = WebhookConfigCollector(interval=0.0)
    scraper = SubaccountScraper(SUB, client, SelfMetrics(), after_fetch=collector.reader(client))
    try:
        # Three scrapes while the list hangs: each is up with the numbers it read.
        for _ in range(3):
            (sample,) = scrape_all([scraper], 30.0)
            assert sample.up
        assert client.asked.wait(30)
        assert client.reads == 1  # one read at a time per subaccount
    finally:
        client.release.set()
    from tests.support.processes import wait_until

    wait_until(lambda: config_up(collector) == 1, timeout=30, what="the list read")


def config_up(collector: WebhookConfigCollector) -> float | None:
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    registry.register(collector)
    s = parse_samples(generate_latest(registry).decode())
    return value(s, "eightbyeight_webhook_config_up", subaccount=SUB)


def test_the_webhook_list_is_read_at_most_once_per_interval():
    from exporter.polling.configured import READ_INTERVAL, READ_TIMEOUT

    assert (READ_TIMEOUT, READ_INTERVAL) == (10.0, 60.0)
    now = [0.0]
    collector = WebhookConfigCollector(clock=lambda: now[0])
    client = _HangingLists()
    client.release.set()
    first = collector.start_read(client, SUB)
    assert first is not None
    first.join(30)
    now[0] = 59.9
    assert collector.start_read(client, SUB) is None
    now[0] = 60.0
    second = collector.start_read(client, SUB)
    assert second is not None
    second.join(30)
    assert client.reads == 2


# --- 8. the listener ------------------------------------------------------------------------

HOOK_SECRET = "Bearer listener-secret"


@pytest.fixture(scope="module")
def listener():
    from tests.support.exporters import InProcessExporter
    from tests.support.processes import free_port

    port = free_port()
    argv = ["--api.base-url", "http://127.0.0.1:1", "--subaccount", SUB,
            "--webhook.listen-address", f"127.0.0.1:{port}",
            "--webhook.max-body-size", "4096"]  # fmt: skip
    env = {"EIGHTBYEIGHT_WEBHOOK_AUTH_HEADER": HOOK_SECRET}
    with InProcessExporter(argv, env=env) as exporter:
        yield exporter, port


def test_the_callback_listeners_workers_are_named_as_the_docs_say(listener):
    import threading

    _, port = listener
    assert send(port, [b"Content-Length: 2"], b"{}").startswith(b"HTTP/1.0 422 ")  # answered
    names = [t.name for t in threading.enumerate() if t.name.startswith("webhook-")]
    assert names
    assert all(name.startswith("webhook-worker-") for name in names), names


def send(port: int, head: list[bytes], body: bytes = b"") -> bytes:
    import socket

    request = (
        b"\r\n".join(
            [
                b"POST /webhooks/8x8 HTTP/1.1",
                b"Host: 127.0.0.1",
                b"Authorization: " + HOOK_SECRET.encode(),
                *head,
                b"",
                b"",
            ]
        )
        + body
    )
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def chunked(data: bytes, size: int = 100) -> bytes:
    pieces = [data[i : i + size] for i in range(0, len(data), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


def test_a_chunked_callback_is_accepted(listener):
    _, port = listener
    body = json.dumps(vss(session="chunked-1")).encode()
    answer = send(port, [b"Transfer-Encoding: chunked"], chunked(body))
    assert answer.startswith(b"HTTP/1.0 200") or answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert answer.endswith(b"accepted\n")


@pytest.mark.parametrize(
    ("head", "body", "status", "reason"),
    [
        ([b"Transfer-Encoding: chunked"], b"%x\r\n" % 5000 + b" " * 5000 + b"\r\n0\r\n\r\n",
         413, b"body_too_large"),
        ([b"Transfer-Encoding: chunked"], b"zz\r\n{}\r\n0\r\n\r\n", 400, b"bad_framing"),
        ([b"Transfer-Encoding: chunked"], b"2\r\n{}XX0\r\n\r\n", 400, b"bad_framing"),
        ([b"Transfer-Encoding: gzip"], b"{}", 400, b"bad_framing"),
        ([b"Transfer-Encoding: chunked", b"Content-Length: 7"], b"2\r\n{}\r\n0\r\n\r\n", 400,
         b"bad_framing"),
        ([b"Content-Length: 2", b"Content-Length: 40"], b"{}", 400, b"bad_framing"),
    ],
)  # fmt: skip
def test_bad_framing_is_refused(listener, head, body, status, reason):
    _, port = listener
    answer = send(port, head, body)
    assert answer.split(b" ", 2)[1] == str(status).encode(), answer[:200]
    assert answer.endswith(reason + b"\n")


def test_the_same_content_length_twice_is_fine(listener):
    _, port = listener
    body = json.dumps(vss(session="twice-1")).encode()
    length = b"Content-Length: %d" % len(body)
    answer = send(port, [length, length], body)
    assert answer.endswith(b"accepted\n"), answer[:200]


@pytest.mark.parametrize(
    ("headers", "refused"),
    [
        ({}, False),
        ({"Sec-Fetch-Site": "same-origin"}, False),
        ({"Sec-Fetch-Site": "cross-site"}, True),
        ({"Sec-Fetch-Site": "same-site"}, True),
        ({"Origin": "https://evil.example"}, True),
        ({"Origin": "null"}, True),
        ({"Content-Type": "application/x-www-form-urlencoded"}, True),
        ({"Content-Type": "multipart/form-data; boundary=x"}, True),
        ({"Content-Type": "text/plain", "Origin": "https://evil.example"}, True),
        ({"Content-Type": "application/json"}, False),
    ],
)
def test_reload_refuses_cross_site_requests(listener, headers, refused):
    import requests

    exporter, _ = listener
    answer = requests.post(exporter.url + "/-/reload", headers=headers, timeout=30)
    # (A multipart type without its body is refused even earlier, as a malformed head: 400.)
    assert answer.status_code in ((400, 403) if refused else (200,)), answer.text


def test_reload_from_the_same_origin_is_fine(listener):
    import requests

    exporter, _ = listener
    host = exporter.url.split("://", 1)[1]
    answer = requests.post(exporter.url + "/-/reload", headers={"Origin": f"http://{host}"},
                           timeout=30)  # fmt: skip
    assert answer.status_code == 200


@pytest.mark.parametrize("path", ["/-/healthy", "/-/reload", "/-/metrics"])
def test_a_telemetry_path_under_the_reserved_prefix_is_refused_at_start_up(path):
    from exporter.config.flags import build_parser
    from exporter.config.settings import settings_from_flags
    from exporter.config.values import ConfigError

    args = build_parser().parse_args(["--subaccount", SUB, "--web.telemetry-path", path])
    with pytest.raises(ConfigError, match="reserved"):
        settings_from_flags(args, {"EIGHTBYEIGHT_API_KEY": "k"})


def test_the_callback_listener_has_its_own_client_certificate_setting(pki, tmp_path):
    import requests

    from tests.support.exporters import InProcessExporter
    from tests.support.processes import free_port

    web = tmp_path / "web.yml"
    web.write_text(
        f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {pki.server_key}\n"
        f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {pki.ca}\n"
    )
    port = free_port()
    argv = [
        "--api.base-url",
        "http://127.0.0.1:1",
        "--subaccount",
        SUB,
        "--web.config.file",
        str(web),
        "--webhook.listen-address",
        f"127.0.0.1:{port}",
    ]
    env = {"EIGHTBYEIGHT_WEBHOOK_AUTH_HEADER": HOOK_SECRET}  # fmt: skip
    body = json.dumps(vss(session="tls-1")).encode()
    hook = f"https://127.0.0.1:{port}/webhooks/8x8"
    with InProcessExporter(argv, env=env) as exporter:
        # 8x8 presents no client certificate: the callback is taken all the same.
        sent = requests.post(hook, data=body, headers={"Authorization": HOOK_SECRET},
                             verify=pki.ca, timeout=30)  # fmt: skip
        assert sent.status_code == 200
        # Prometheus' side still demands one.
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(exporter.url.replace("http:", "https:") + "/metrics", verify=pki.ca,
                         timeout=30)  # fmt: skip
    # Asked for on the listener too, it is required there.
    argv += ["--webhook.tls-client-auth", "RequireAndVerifyClientCert"]
    port2 = free_port()
    argv[argv.index(f"127.0.0.1:{port}")] = f"127.0.0.1:{port2}"
    with InProcessExporter(argv, env=env):
        hook = f"https://127.0.0.1:{port2}/webhooks/8x8"
        with pytest.raises(requests.exceptions.SSLError):
            requests.post(hook, data=body, headers={"Authorization": HOOK_SECRET}, verify=pki.ca,
                          timeout=30)  # fmt: skip
        sent = requests.post(
            hook,
            data=body,
            headers={"Authorization": HOOK_SECRET},
            verify=pki.ca,
            cert=(pki.client_cert, pki.client_key),
            timeout=30,
        )
        assert sent.status_code == 200


def test_a_verifying_listener_needs_the_web_configs_client_ca(pki, tmp_path):
    from exporter.config.values import ConfigError
    from tests.support.exporters import InProcessExporter
    from tests.support.processes import free_port

    web = tmp_path / "web.yml"
    web.write_text(
        f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {pki.server_key}\n"
    )
    argv = ["--api.base-url", "http://127.0.0.1:1", "--subaccount", SUB,
            "--web.config.file", str(web),
            "--webhook.listen-address", f"127.0.0.1:{free_port()}",
            "--webhook.tls-client-auth", "VerifyClientCertIfGiven"]  # fmt: skip
    with pytest.raises(ConfigError, match="needs client_ca_file"):
        InProcessExporter(argv, env={"EIGHTBYEIGHT_WEBHOOK_AUTH_HEADER": HOOK_SECRET})


# --- 9. the prepaid balance -------------------------------------------------------------------

ACCOUNT = "5f0c2a51-3b9e-4c7d-9a61-0e2f8b7c4d13"


def balance_args(*extra: str):
    from exporter.config.flags import build_parser

    return build_parser().parse_args(["--subaccount", SUB, *extra])


def test_the_balance_is_off_unless_an_account_id_is_given():
    from exporter.config.settings import settings_from_flags

    assert settings_from_flags(balance_args(), {"EIGHTBYEIGHT_API_KEY": "k"}).balance is None
    on = settings_from_flags(balance_args("--balance.account-id", ACCOUNT),
                             {"EIGHTBYEIGHT_API_KEY": "k"})  # fmt: skip
    assert on.balance is not None
    assert (on.balance.base_url, on.balance.interval) == ("https://sms.8x8.com", 300.0)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--balance.account-id", "acme-prod"], "expected the account's UUID"),
        (["--balance.account-id", ACCOUNT + "0"], "expected the account's UUID"),
        (["--balance.account-id", ACCOUNT, "--balance.interval", "59s"], "at least 1m"),
        (["--balance.account-id", ACCOUNT, "--balance.base-url", "ftp://x"], "invalid API base"),
    ],
)
def test_bad_balance_flags_are_one_line_errors(extra, message):
    from exporter.config.settings import settings_from_flags
    from exporter.config.values import ConfigError

    with pytest.raises(ConfigError, match=message) as caught:
        settings_from_flags(balance_args(*extra), {"EIGHTBYEIGHT_API_KEY": "k"})
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"code": 1201, "message": "Account not in prepaid mode"}', "forbidden"),
        (b'{"balance": "lots", "currency": "USD"}', "invalid_response"),
        (b'{"balance": 12.5}', "invalid_response"),
        (b'{"currency": "USD"}', "invalid_response"),
        (b'{"balance": 12.5, "currency": "dollars"}', "invalid_response"),
        (b"<html>", "invalid_response"),
    ],
)
def test_odd_balance_answers_have_a_reason(body, reason):
    from exporter.common.errors import ResponseError
    from exporter.polling.balance import read_balance

    with pytest.raises(ResponseError) as caught:
        read_balance(body)
    assert caught.value.reason == reason


def balance_samples(collector) -> dict:
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    registry.register(collector)
    return parse_samples(generate_latest(registry).decode())


def test_the_balance_is_read_from_the_simulator_once_per_interval_with_its_own_up():
    from exporter.config.values import Secret
    from exporter.polling.balance import BalanceCollector
    from exporter.polling.client import ApiClient
    from exporter.simulator import Simulator

    now = [0.0]
    with Simulator(subaccounts={SUB: 5}, api_key="k", seed=1) as sim:
        sim.set_balance(123.45, "SGD")
        client = ApiClient(sim.base_url, Secret("k"), retries=0)
        collector = BalanceCollector(client, ACCOUNT, 300.0, 10.0, clock=lambda: now[0])
        collector.start_read().join(30)
        s = balance_samples(collector)  # collecting starts no read: the interval has not passed
        assert value(s, "eightbyeight_account_balance", currency="SGD") == 123.45
        assert value(s, "eightbyeight_account_balance_up") == 1
        total = sim.stats()["requests_total"]
        balance_samples(collector)
        assert sim.stats()["requests_total"] == total  # at most once per interval
        # Not a prepaid account: 403, code 1201. The last value stays; up says it failed.
        sim.set_balance(None)
        now[0] = 300.0
        collector.start_read().join(30)
        s = balance_samples(collector)
        assert value(s, "eightbyeight_account_balance_up") == 0
        assert value(s, "eightbyeight_account_balance", currency="SGD") == 123.45
        assert value(s, "eightbyeight_account_balance_read_failures_total", reason="forbidden") == 1
        sim.set_balance(5.0, fault=500)
        now[0] = 600.0
        collector.start_read().join(30)
        s = balance_samples(collector)
        assert value(s, "eightbyeight_account_balance_read_failures_total",
                     reason="server_error") == 1  # fmt: skip
        sim.set_balance(5.0)
        now[0] = 900.0
        collector.start_read().join(30)
        s = balance_samples(collector)
        assert value(s, "eightbyeight_account_balance", currency="USD") == 5.0
        assert value(s, "eightbyeight_account_balance_up") == 1


def test_the_exporter_serves_the_balance_beside_the_numbers():
    from exporter.simulator import Simulator
    from tests.support.exporters import InProcessExporter
    from tests.support.processes import wait_until

    with Simulator(subaccounts={SUB: 5}, api_key="k", seed=1) as sim:
        sim.set_balance(42.0, "USD", fault=503)
        argv = [
            "--api.base-url",
            sim.base_url,
            "--subaccount",
            SUB,
            "--balance.account-id",
            ACCOUNT,
            "--balance.base-url",
            sim.base_url,
        ]
        with InProcessExporter(argv) as exporter:  # fmt: skip
            s = wait_until(
                lambda: (
                    (s := parse_samples(exporter.get().text))
                    and value(s, "eightbyeight_account_balance_up") is not None
                    and s
                ),
                timeout=30,
                what="the first balance read",
            )
            # A failing balance read never changes the numbers' up.
            assert value(s, "eightbyeight_account_balance_up") == 0
            assert value(s, "eightbyeight_up", subaccount=SUB) == 1


def test_the_balance_is_read_within_its_own_timeout():
    from exporter.polling.balance import BalanceCollector

    asked: list[tuple[str, float | None]] = []

    class Recording:
        def fetch_balance(self, account_id: str, timeout: float | None = None) -> bytes:
            asked.append((account_id, timeout))
            return b'{"balance": 1.5, "currency": "SGD"}'

    collector = BalanceCollector(Recording(), ACCOUNT, 300.0, 4.5)
    collector.start_read().join(30)
    assert asked == [(ACCOUNT, 4.5)]
    s = balance_samples(collector)
    assert value(s, "eightbyeight_account_balance", currency="SGD") == 1.5
