"""Every range, length and cap the callback decoder applies, at its edge and just past it.

docs/webhooks-limits.md states the ranges of call quality and duration; the other caps bound
what one callback may carry. Each is checked where it holds and one step beyond, so that a cap
moved or a `<=` turned into `<` fails here.
"""

from __future__ import annotations

import json

import msgspec
import pytest

from exporter.pushing.events import (
    Envelope,
    EventError,
    decode_envelope,
    decode_number_update,
    decode_session_summary,
    pushed_numbers,
    read_session,
)
from exporter.pushing.state import WebhookState
from tests.support.callbacks import call_leg, vnu, vnu_number, vss
from tests.support.exporters import parse_samples, value

SUB = "acme-prod"


def summary_of(event: dict):
    return decode_session_summary(decode_envelope(json.dumps(event).encode()))


def session_with_leg_a(**changes: object):
    """The session read from `vss()` with leg A's fields changed."""
    event = vss(session="edge")
    event["payload"]["details"]["callA"].update(changes)
    return read_session(summary_of(event))


def quality_of_leg_a(**quality: object):
    return session_with_leg_a(callQuality=quality)


def reason_of(event: dict, decode) -> str:
    with pytest.raises(EventError) as caught:
        decode(decode_envelope(json.dumps(event).encode()))
    return caught.value.reason


# --- call quality and duration: the documented ranges -------------------------------------


@pytest.mark.parametrize(
    ("field", "attribute", "taken", "refused", "name"),
    [
        ("mos", "mos", [1.0, 1, 3.1, 5.0, 5], [0.99, 5.01, -1, "4.0", True], "mos"),
        ("packetLossRate", "loss", [0.0, 0, 0.5, 1.0, 1], [-0.01, 1.01, False],
         "packet_loss_rate"),
        ("jitter", "jitter_seconds", [0, 20, 60_000], [-0.5, 60_000.5, "20"], "jitter"),
    ],
)  # fmt: skip
def test_quality_values_are_taken_within_the_documented_range_only(
    field, attribute, taken, refused, name
):
    for number in taken:
        session = quality_of_leg_a(**{field: number})
        got = getattr(session.legs[0], attribute)
        expected = number / 1000 if field == "jitter" else float(number)
        assert got == pytest.approx(expected), (field, number)
        assert session.invalid == ()
    for number in refused:
        session = quality_of_leg_a(**{field: number})
        assert getattr(session.legs[0], attribute) is None, (field, number)
        assert session.invalid == (name,), (field, number)


def test_jitter_arrives_in_milliseconds_and_is_exported_in_seconds():
    state = WebhookState([SUB])
    event = vss(session="jitter")
    event["payload"]["details"]["callA"]["callQuality"]["jitter"] = 250
    event["payload"]["details"]["callB"]["callQuality"]["jitter"] = 4
    state.apply_session_summary(summary_of(event))
    got = parse_samples(state.exposition().decode())
    where = {"subaccount": SUB, "country": "SG"}
    assert value(got, "eightbyeight_call_jitter_seconds_sum", **where) == pytest.approx(0.254)
    # 4 ms is in the 5 ms bucket, 250 ms only from the 0.5 s one on.
    assert value(got, "eightbyeight_call_jitter_seconds_bucket", le="0.005", **where) == 1
    assert value(got, "eightbyeight_call_jitter_seconds_bucket", le="0.2", **where) == 1
    assert value(got, "eightbyeight_call_jitter_seconds_bucket", le="0.5", **where) == 2


@pytest.mark.parametrize(
    ("duration", "invalid"),
    [(0, ()), (13.5, ()), (7 * 86_400, ()), (None, ()), (-1, ("call_duration",)),
     (7 * 86_400 + 1, ("call_duration",)), ("13", ("call_duration",)),
     (True, ("call_duration",))],
)  # fmt: skip
def test_call_duration_is_zero_to_seven_days(duration, invalid):
    assert session_with_leg_a(callDuration=duration).invalid == invalid


def test_quality_that_is_not_an_object_is_one_invalid_field_and_null_is_none():
    assert quality_of_leg_a().invalid == ()
    assert session_with_leg_a(callQuality=None).invalid == ()
    for odd in ("good", [4.2], 4.2):
        session = session_with_leg_a(callQuality=odd)
        assert session.invalid == ("call_quality",)
        leg = session.legs[0]
        assert (leg.mos, leg.loss, leg.jitter_seconds) == (None, None, None)


def test_every_odd_value_of_a_session_is_named_once_in_order():
    event = vss(session="many")
    event["payload"]["sessionStatus"] = None
    leg = event["payload"]["details"]["callA"]
    leg.update(callDirection="up", callStatus=5, callDuration=-1)
    leg["callQuality"] = {"mos": 9, "packetLossRate": 2, "jitter": -3}
    session = read_session(summary_of(event))
    assert session.invalid == (
        "session_status",
        "call_direction",
        "call_status",
        "call_duration",
        "mos",
        "packet_loss_rate",
        "jitter",
    )
    assert session.status is None
    assert session.legs[0].direction is None
    assert session.legs[0].status is None
    # Leg B is untouched.
    assert session.legs[1].direction == "outbound"
    assert session.legs[1].mos == 4.4


# --- statuses and directions -------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "label"),
    [
        ("COMPLETED", "completed"),
        ("  completed\t", "completed"),
        ("No-Answer", "no_answer"),
        ("no_answer", "no_answer"),
        ("NO ANSWER", "no_answer"),
        ("NOANSWER", "no_answer"),
        ("Cancelled", "canceled"),
        ("canceled", "canceled"),
        ("Busy", "busy"),
        ("failed", "failed"),
        ("ERROR", "error"),
        ("VOICEMAIL", "other"),
        ("X" * 128, "other"),
        ("X" * 129, None),
        ("   ", None),
        ("", None),
        (None, None),
        (3, None),
    ],
)
def test_a_status_is_a_documented_word_other_or_dropped(status, label):
    session = read_session(summary_of(vss(session="word", status=status)))
    assert session.status == label
    assert session.invalid == (() if label else ("session_status",))


@pytest.mark.parametrize(
    ("direction", "label"),
    [("INBOUND", "inbound"), (" outbound ", "outbound"), ("In-Bound", None),
     ("SIDEWAYS", None), (1, None), ("", None)],
)  # fmt: skip
def test_a_direction_is_one_of_two(direction, label):
    session = session_with_leg_a(callDirection=direction)
    assert session.legs[0].direction == label
    assert ("call_direction" in session.invalid) is (label is None)


def test_the_own_number_is_the_callee_inbound_and_the_caller_outbound():
    inbound = call_leg("INBOUND", "+12314377870", "+6531234567")
    inbound.update(sourceCountryCode="US", destinationCountryCode="SG")
    outbound = call_leg("OUTBOUND", "+6531234567", "+6591178965")
    outbound.update(sourceCountryCode="SG", destinationCountryCode="MY")
    event = vss(session="own")
    event["payload"]["details"] = {"callA": inbound, "callB": outbound}
    legs = read_session(summary_of(event)).legs
    assert (legs[0].virtual_number, legs[0].country) == ("+6531234567", "SG")
    assert (legs[1].virtual_number, legs[1].country) == ("+6531234567", "SG")
    unknown = call_leg("SIDEWAYS", "+12314377870", "+6531234567")
    event["payload"]["details"] = {"callA": unknown}
    leg = read_session(summary_of(event)).legs[0]
    assert (leg.virtual_number, leg.country) == (None, None)


def test_an_error_code_is_read_as_text_whether_sent_as_number_or_string():
    for sent, code in ((-2004, "-2004"), ("-2004", "-2004"), (None, None)):
        event = vss(session="code")
        event["payload"]["errorDetails"] = {"errorCode": sent, "errorMsg": "No coverage"}
        assert read_session(summary_of(event)).error_code == code
    assert read_session(summary_of(vss(session="none"))).error_code is None


# --- sizes and caps of the decoded shapes ----------------------------------------------------


def test_an_envelope_without_a_payload_is_an_invalid_event():
    body = json.dumps({"eventType": "VIRTUAL_NUMBER_UPDATE"}).encode()
    envelope = decode_envelope(body)
    with pytest.raises(EventError) as caught:
        decode_number_update(envelope)
    assert caught.value.reason == "invalid_event"
    with pytest.raises(EventError) as caught:
        decode_session_summary(envelope)
    assert caught.value.reason == "invalid_event"


def test_json_nested_too_deeply_is_malformed_in_the_envelope_and_in_a_payload():
    deep = b"[" * 100_000 + b"]" * 100_000
    body = b'{"eventType": "SESSION_SUMMARY", "payload": {"sessionId": ' + deep + b"}}"
    with pytest.raises(EventError) as caught:
        decode_envelope(body)
    assert caught.value.reason == "malformed_json"
    # A payload handed over on its own (the envelope's check comes first in the receiver).
    payloads = {
        decode_session_summary: b'{"sessionId": "s", "subAccountId": "acme", "sessionStatus": ',
        decode_number_update: b'{"subAccountId": "acme", "updateEventType": "U", "virtualNumbers": ',
    }
    for decode, start in payloads.items():
        with pytest.raises(EventError) as caught:
            decode(Envelope("E", msgspec.Raw(start + deep + b"}")))
        assert caught.value.reason == "malformed_json"


def test_short_text_fields_hold_128_characters():
    event = vss(session="s" * 128)
    assert summary_of(event).session_id == "s" * 128
    assert reason_of(vss(session="s" * 129), decode_session_summary) == "invalid_event"
    envelope = decode_envelope(json.dumps({"eventType": "E" * 128, "payload": {}}).encode())
    assert envelope.eventType == "E" * 128
    with pytest.raises(EventError) as caught:
        decode_envelope(json.dumps({"eventType": "E" * 129}).encode())
    assert caught.value.reason == "invalid_event"


@pytest.mark.parametrize(("total", "taken"), [(0, True), (10_000_000, True), (-1, False),
                                              (10_000_001, False)])  # fmt: skip
def test_total_numbers_is_zero_to_ten_million(total, taken):
    event = vnu()
    event["payload"]["totalNumbers"] = total
    if taken:
        assert decode_number_update(decode_envelope(json.dumps(event).encode())).total_numbers == (
            total
        )
    else:
        assert reason_of(event, decode_number_update) == "invalid_event"


@pytest.mark.parametrize(("count", "taken"), [(0, True), (1000, True), (-1, False),
                                              (1001, False)])  # fmt: skip
def test_call_count_is_zero_to_a_thousand(count, taken):
    event = vss()
    event["payload"]["callCount"] = count
    if taken:
        assert summary_of(event).call_count == count
    else:
        assert reason_of(event, decode_session_summary) == "invalid_event"


def test_a_session_has_at_most_16_legs():
    event = vss()
    leg = event["payload"]["details"]["callA"]
    event["payload"]["details"] = {f"call{i}": leg for i in range(16)}
    assert len(read_session(summary_of(event)).legs) == 16
    event["payload"]["details"]["call16"] = leg
    assert reason_of(event, decode_session_summary) == "invalid_event"


def test_an_error_message_holds_4096_characters():
    event = vss(error=-2004)
    event["payload"]["errorDetails"]["errorMsg"] = "m" * 4096
    assert summary_of(event).error_details.error_msg == "m" * 4096
    event["payload"]["errorDetails"]["errorMsg"] = "m" * 4097
    assert reason_of(event, decode_session_summary) == "invalid_event"


@pytest.mark.parametrize(
    ("msisdn", "taken"),
    [("+123456", True), ("123456", True), ("+123456789012345", True), ("+12345", False),
     ("+1234567890123456", False), ("++123456", False), ("+65 3123 4567", False)],
)  # fmt: skip
def test_a_pushed_msisdn_is_6_to_15_digits(msisdn, taken):
    update = decode_number_update(
        decode_envelope(json.dumps(vnu(numbers=[vnu_number(msisdn, "Active", "")])).encode())
    )
    if taken:
        assert next(pushed_numbers(update, 1)).msisdn == msisdn
    else:
        with pytest.raises(EventError) as caught:
            next(pushed_numbers(update, 1))
        assert caught.value.reason == "invalid_event"


def test_pushed_numbers_stop_at_the_limit_and_decode_one_at_a_time():
    numbers = [vnu_number(f"+65312345{i:02}", "Active", "") for i in range(5)]
    numbers.append({"msisdn": "bad"})
    update = decode_number_update(decode_envelope(json.dumps(vnu(numbers=numbers)).encode()))
    assert [n.msisdn for n in pushed_numbers(update, 3)] == ["+6531234500", "+6531234501",
                                                             "+6531234502"]  # fmt: skip
    assert len(list(pushed_numbers(update, 5))) == 5
    read = pushed_numbers(update, 6)
    assert len([next(read) for _ in range(5)]) == 5  # the bad record is not read before its turn
    with pytest.raises(EventError):
        next(read)
