"""The webhook state's rules, each at its edge: duplicates and how long they are remembered,
which clock each exported time comes from, snapshots whole and in parts, the caps and their
overflow counters, and how a session's outcome and quality reach a number.

docs/webhooks.md and docs/webhooks-limits.md state these rules; a test per rule here fails when
one moves.
"""

from __future__ import annotations

import json

import pytest

from exporter.pushing import state as state_module
from exporter.pushing.events import decode_envelope, decode_session_summary
from exporter.pushing.state import WebhookState, carrying_status
from tests.support.callbacks import apply_event, call_leg, state_samples, vnu, vnu_number, vss
from tests.support.exporters import value

SUB = "acme-prod"
NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z
OWN = "+6531234567"


def at(offset: float) -> str:
    import datetime

    moment = datetime.datetime.fromtimestamp(NOW + offset, tz=datetime.UTC)
    return moment.isoformat().replace("+00:00", "Z")


def family(state: WebhookState, name: str) -> dict[frozenset, float]:
    return {frozenset(labels): v for (n, labels), v in state_samples(state).items() if n == name}


def statuses(state: WebhookState) -> dict[str, str]:
    """msisdn -> the pushed status whose series is 1."""
    return {
        dict(labels)["msisdn"]: dict(labels)["operational_status"]
        for labels, v in family(state, "eightbyeight_number_pushed_status").items()
        if v == 1
    }


def snapshot(*numbers: dict, total: int | None = None) -> dict:
    event = vnu(kind="SNAPSHOT", numbers=list(numbers))
    if total is None:
        del event["payload"]["totalNumbers"]
    else:
        event["payload"]["totalNumbers"] = total
    return event


def number(msisdn: str, offset: float = -60, status: str = "Active") -> dict:
    return vnu_number(msisdn, status, at(offset))


# --- duplicates ---------------------------------------------------------------------------


def test_the_documented_limits():
    # docs/webhooks.md and docs/webhooks-limits.md state each of these.
    assert state_module.DEDUPE_WINDOW == 10_000
    assert state_module.MAX_SUBACCOUNTS == 64
    assert state_module.MAX_NUMBERS_PER_SUBACCOUNT == 100_000
    assert state_module.MAX_NUMBER_SERIES == 10_000
    assert state_module.MAX_CLOCK_SKEW == 300


def test_duplicates_are_remembered_for_the_last_10000_events():
    state = WebhookState([SUB])
    keys = [state.body_key(str(i).encode()) for i in range(10_001)]
    assert all(state.first_delivery(key) for key in keys[:10_000])
    assert not state.first_delivery(keys[0])  # 9,999 events later: still a duplicate...
    assert state.first_delivery(keys[10_000])  # ...and now the newest: keys[1] is the oldest
    assert state.first_delivery(keys[1])  # pushed out by the 10,001st
    assert not state.first_delivery(keys[0])
    state.forget(keys[0])
    assert state.first_delivery(keys[0])
    state.forget(b"never seen")  # nothing to take back: no error


def test_what_makes_two_callbacks_the_same_event():
    state = WebhookState([SUB])
    assert state.body_key(b"{}") == state.body_key(bytearray(b"{}"))
    assert state.body_key(b"{}") != state.body_key(b"{ }")  # a VNU: byte-identical bodies only

    def key(event: dict) -> bytes:
        return state.session_key(decode_session_summary(decode_envelope(json.dumps(event))))

    # A VSS: the same session of the same subaccount, whatever else differs.
    assert key(vss(session="s-1")) == key(vss(session="s-1", status="BUSY", mos=1.5))
    assert key(vss(session="s-1")) != key(vss(session="s-2"))
    assert key(vss(session="s-1")) != key(vss(session="s-1", sub="acme-test"))
    # The parts cannot run into each other.
    assert key(vss(session="1-s", sub="acme")) != key(vss(session="s", sub="acme-1"))


# --- admission ----------------------------------------------------------------------------


def test_subaccounts_without_an_allow_list_are_the_first_64_and_start_at_zero():
    state = WebhookState(None)
    assert all(state.admit(f"sub-{i:03d}", None) for i in range(64))
    assert not state.admit("sub-064", None)
    assert state.admit("sub-063", None)  # one already taken stays taken
    events = family(state, "eightbyeight_webhook_events_total")
    assert events[frozenset({("subaccount", "sub-000"), ("event_type", "vnu")})] == 0
    assert events[frozenset({("subaccount", "sub-063"), ("event_type", "vss")})] == 0
    assert not [k for k in events if ("subaccount", "sub-064") in k]


def test_with_an_allow_list_only_its_subaccounts_are_admitted_and_start_at_zero():
    state = WebhookState([SUB, "acme-test"])
    assert state.admit(SUB, frozenset([SUB]))
    assert not state.admit("acme-test", frozenset([SUB]))
    assert not state.admit("acme-other", frozenset([SUB]))
    got = state_samples(state)
    for sub in (SUB, "acme-test"):
        for event_type in ("vnu", "vss"):
            assert value(got, "eightbyeight_webhook_events_total", subaccount=sub,
                         event_type=event_type) == 0  # fmt: skip
        for kind in ("snapshot", "updates"):
            assert value(got, "eightbyeight_vnu_events_total", subaccount=sub,
                         update_event_type=kind) == 0  # fmt: skip
        for cap in ("numbers", "series"):
            assert value(got, "eightbyeight_webhook_numbers_over_cap_total", subaccount=sub,
                         cap=cap) == 0  # fmt: skip
    assert value(got, "eightbyeight_webhook_requests_total", outcome="accepted") == 0
    assert value(got, "eightbyeight_webhook_invalid_fields_total", field="mos") == 0


# --- clocks -------------------------------------------------------------------------------


def test_last_event_times_come_from_the_receivers_clock_not_from_8x8():
    clock = [NOW]
    state = WebhookState([SUB], clock=lambda: clock[0])
    apply_event(state, vnu(numbers=[number(OWN, offset=-3600)]))
    clock[0] = NOW + 10
    apply_event(state, vss(session="a"))  # its start and end times are 2026-01-01T00:00:00/20Z
    last = "eightbyeight_webhook_last_event_timestamp_seconds"
    got = state_samples(state)
    assert value(got, last, subaccount=SUB, event_type="vnu") == NOW
    assert value(got, last, subaccount=SUB, event_type="vss") == NOW + 10
    assert state.last_callbacks() == {SUB: ("vss", NOW + 10)}
    clock[0] = NOW + 20
    apply_event(state, vnu(numbers=[number(OWN, offset=-30)]))
    assert state.last_callbacks() == {SUB: ("vnu", NOW + 20)}
    # A number's own time is 8x8's updatedTimestamp.
    got = state_samples(state)
    assert value(got, "eightbyeight_number_pushed_status_timestamp_seconds", subaccount=SUB,
                 msisdn=OWN) == NOW - 30  # fmt: skip


def test_a_number_without_an_update_time_has_no_time_series_and_any_update_replaces_it():
    state = WebhookState([SUB], clock=lambda: NOW)
    untimed = vnu_number(OWN, "Unhealthy", "")
    apply_event(state, vnu(numbers=[untimed]))
    assert statuses(state) == {OWN: "unhealthy"}
    assert not family(state, "eightbyeight_number_pushed_status_timestamp_seconds")
    apply_event(state, vnu(numbers=[number(OWN, offset=-3600)]))
    assert statuses(state) == {OWN: "active"}
    apply_event(state, vnu(numbers=[vnu_number(OWN, "Inactive", "")]))
    assert statuses(state) == {OWN: "inactive"}


# --- numbers ------------------------------------------------------------------------------


def test_pushed_numbers_are_counted_by_status_kind_and_total():
    state = WebhookState([SUB], clock=lambda: NOW)
    event = vnu(kind="Snapshot", numbers=[number("+6531234501"),
                                          number("6531234502", status="UNHEALTHY"),
                                          number("+6531234503", status="Retired")])  # fmt: skip
    event["payload"]["totalNumbers"] = 3
    apply_event(state, event)
    got = state_samples(state)
    by_status = "eightbyeight_pushed_virtual_numbers_by_status"
    assert {dict(k)["operational_status"]: v
            for k, v in family(state, by_status).items()} == {
        "active": 1, "expiring": 0, "inactive": 0, "unhealthy": 1, "other": 1}  # fmt: skip
    assert value(got, "eightbyeight_pushed_virtual_numbers", subaccount=SUB) == 3
    assert value(got, "eightbyeight_vnu_events_total", subaccount=SUB,
                 update_event_type="snapshot") == 1  # fmt: skip
    assert value(got, "eightbyeight_webhook_events_total", subaccount=SUB, event_type="vnu") == 1
    # The number sent without its + is the same number.
    assert statuses(state) == {"+6531234501": "active", "+6531234502": "unhealthy",
                               "+6531234503": "other"}  # fmt: skip
    # An unknown status has its one series, not four zeros.
    other = [dict(k) for k in family(state, "eightbyeight_number_pushed_status")
             if dict(k)["msisdn"] == "+6531234503"]  # fmt: skip
    assert [o["operational_status"] for o in other] == ["other"]
    # An update without totalNumbers keeps the last total; an unknown kind counts as other.
    later = vnu(kind="REFRESH", numbers=[number("+6531234501", offset=-1)])
    del later["payload"]["totalNumbers"]
    apply_event(state, later)
    got = state_samples(state)
    assert value(got, "eightbyeight_pushed_virtual_numbers", subaccount=SUB) == 3
    assert value(got, "eightbyeight_vnu_events_total", subaccount=SUB,
                 update_event_type="other") == 1  # fmt: skip


def test_a_snapshot_drops_a_number_updated_at_its_own_time_and_keeps_a_newer_one():
    state = WebhookState([SUB], clock=lambda: NOW)
    apply_event(state, vnu(numbers=[number("+6531234501", offset=-100),
                              number("+6531234502", offset=-50),
                              number("+6531234503", offset=-49)]))  # fmt: skip
    apply_event(state, snapshot(number("+6531234509", offset=-50)))
    # Taken as of -50: a number last updated then is gone, one updated after it stays.
    assert set(statuses(state)) == {"+6531234509", "+6531234503"}


def test_a_snapshot_without_update_times_is_taken_as_of_its_arrival():
    clock = [NOW]
    state = WebhookState([SUB], clock=lambda: clock[0])
    apply_event(
        state, vnu(numbers=[number("+6531234501", offset=-1), number("+6531234502", offset=5)])
    )
    apply_event(state, snapshot(vnu_number("+6531234509", "Active", "")))
    assert set(statuses(state)) == {"+6531234509", "+6531234502"}


def test_a_whole_snapshot_starts_the_parts_afresh():
    state = WebhookState([SUB], clock=lambda: NOW)
    apply_event(state, snapshot(number("+6531234501", offset=-300)))
    # A part of three that never completes...
    apply_event(state, snapshot(number("+6531234502"), number("+6531234503"), total=3))
    # ...then a whole snapshot of two: what it lacks goes, the parts' numbers included.
    apply_event(state, snapshot(number("+6531234503", -10), number("+6531234504", -10), total=2))
    assert set(statuses(state)) == {"+6531234503", "+6531234504"}
    # Its parts are forgotten: a new part of two is not completed by the old one.
    apply_event(state, snapshot(number("+6531234505", -5), total=2))
    assert set(statuses(state)) == {"+6531234503", "+6531234504", "+6531234505"}
    apply_event(state, snapshot(number("+6531234506", -5), total=2))
    assert set(statuses(state)) == {"+6531234505", "+6531234506"}


def test_parts_are_taken_as_of_the_latest_time_any_part_carries():
    state = WebhookState([SUB], clock=lambda: NOW)
    apply_event(state, vnu(numbers=[number("+6531234501", offset=-30)]))
    apply_event(state, snapshot(number("+6531234502", offset=-10), total=2))
    apply_event(state, snapshot(number("+6531234503", offset=-60), total=2))
    # The parts together are as of -10: the update at -30 is older and goes.
    assert set(statuses(state)) == {"+6531234502", "+6531234503"}
    # The next parts start from no time at all: an update at -30 is newer than a part at -40.
    apply_event(state, vnu(numbers=[number("+6531234501", offset=-30)]))
    apply_event(state, snapshot(number("+6531234502", offset=-40), total=2))
    apply_event(state, snapshot(number("+6531234503", offset=-40), total=2))
    assert set(statuses(state)) == {"+6531234501", "+6531234502", "+6531234503"}


def test_the_numbers_cap_refuses_new_numbers_and_counts_them(monkeypatch):
    monkeypatch.setattr(state_module, "MAX_NUMBERS_PER_SUBACCOUNT", 2)
    state = WebhookState([SUB], clock=lambda: NOW)
    over = {"subaccount": SUB, "cap": "numbers"}
    apply_event(state, vnu(numbers=[number("+6531234500")]))
    apply_event(state, vnu(numbers=[number("+6531234501"), number("+6531234502")]))
    assert set(statuses(state)) == {"+6531234500", "+6531234501"}
    assert value(state_samples(state), "eightbyeight_webhook_numbers_over_cap_total", **over) == 1
    # One callback listing more than the cap: those past it are not read, and are counted.
    apply_event(state, vnu(numbers=[number(f"+65312345{i:02}", offset=-1) for i in range(5)]))
    assert set(statuses(state)) == {"+6531234500", "+6531234501"}
    got = state_samples(state)
    assert value(got, "eightbyeight_webhook_numbers_over_cap_total", **over) == 4
    assert value(got, "eightbyeight_webhook_numbers_over_cap_total", subaccount=SUB,
                 cap="series") == 0  # fmt: skip
    # Two new numbers in one callback, both within what is read: two over the cap.
    apply_event(state, vnu(numbers=[number("+6531234505", offset=-1), number("+6531234506", -1)]))
    assert value(state_samples(state), "eightbyeight_webhook_numbers_over_cap_total", **over) == 6
    # Numbers it already has are still updated.
    apply_event(state, vnu(numbers=[number("+6531234501", offset=-1, status="Unhealthy")]))
    assert statuses(state)["+6531234501"] == "unhealthy"
    # A snapshot of 4 in parts completes once its parts reach the cap, not its total. Its
    # first part found the state full (and was counted); the completed parts made room.
    apply_event(state, snapshot(number("+6531234507", 0), total=4))
    apply_event(state, snapshot(number("+6531234508", 0), total=4))
    assert set(statuses(state)) == {"+6531234508"}
    assert value(state_samples(state), "eightbyeight_webhook_numbers_over_cap_total", **over) == 7


def test_the_series_cap_is_first_come_and_a_snapshot_frees_places(monkeypatch):
    monkeypatch.setattr(state_module, "MAX_NUMBER_SERIES", 1)
    state = WebhookState([SUB], clock=lambda: NOW)
    apply_event(state, vnu(numbers=[number("+6531234501"), number("+6531234502")]))
    assert set(statuses(state)) == {"+6531234501"}
    apply_event(state, snapshot(number("+6531234502", -1), number("+6531234503", -1)))
    # The place +...501 held goes to the first number new to the state: +...502 came past
    # the cap and was counted then; it stays without series.
    assert set(statuses(state)) == {"+6531234503"}
    apply_event(state, vnu(numbers=[number("+6531234504", -1)]))
    assert set(statuses(state)) == {"+6531234503"}
    assert value(state_samples(state), "eightbyeight_webhook_numbers_over_cap_total", subaccount=SUB,
                 cap="series") == 2  # fmt: skip


# --- sessions -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("legs", "session", "carried"),
    [
        (["completed", "busy"], "busy", "busy"),
        (["no_answer", "failed"], "failed", "no_answer"),
        (["completed", "completed"], "busy", "completed"),
        ([None, "completed"], "busy", "completed"),
        ([None, None], "busy", "busy"),
        ([], None, None),
    ],
)
def test_the_leg_that_did_not_complete_carries_the_outcome(legs, session, carried):
    from exporter.pushing.events import Leg

    made = [Leg("inbound", s, OWN, "SG", None, None, None) for s in legs]
    assert carrying_status(made, session) == carried


@pytest.mark.parametrize(
    ("status", "outcome"),
    [("COMPLETED", "answered"), ("FAILED", "failed"), ("ERROR", "failed"),
     ("BUSY", "unanswered"), ("NO_ANSWER", "unanswered"), ("CANCELED", "unanswered"),
     ("VOICEMAIL", "unanswered")],
)  # fmt: skip
def test_each_status_is_one_outcome_per_number(status, outcome):
    state = WebhookState([SUB], clock=lambda: NOW)
    apply_event(state, vnu(numbers=[number(OWN)]))
    event = vss(session="o", status=status)
    for leg in event["payload"]["details"].values():
        leg["callStatus"] = status
    apply_event(state, event)
    counts = {dict(k)["outcome"]: v
              for k, v in family(state, "eightbyeight_number_call_legs_total").items()}  # fmt: skip
    assert counts == {o: (1 if o == outcome else 0) for o in ("answered", "failed", "unanswered")}


def test_a_session_without_any_status_still_adds_its_quality_to_the_number():
    state = WebhookState([SUB], clock=lambda: NOW)
    apply_event(state, vnu(numbers=[number(OWN)]))
    event = vss(session="q", mos=3.0)
    event["payload"].pop("sessionStatus")
    for leg in event["payload"]["details"].values():
        leg.pop("callStatus")
    apply_event(state, event)
    got = state_samples(state)
    assert sum(family(state, "eightbyeight_number_call_legs_total").values()) == 0
    assert value(got, "eightbyeight_number_call_mos_count", subaccount=SUB, msisdn=OWN) == 2
    assert value(got, "eightbyeight_number_call_mos_sum", subaccount=SUB, msisdn=OWN) == 6.0
    assert value(got, "eightbyeight_call_sessions_total", subaccount=SUB, country="SG",
                 session_status="unknown") == 1  # fmt: skip


def test_quality_per_number_sums_each_value_it_has():
    state = WebhookState([SUB], clock=lambda: NOW)
    apply_event(state, vnu(numbers=[number("6531234567")]))  # owned, sent without its +
    event = vss(session="q")
    leg_a, leg_b = event["payload"]["details"].values()
    leg_a["callQuality"] = {"mos": 4.0, "packetLossRate": 0.25, "jitter": 30}
    leg_b["callQuality"] = {"mos": 3.0}
    leg_b["source"] = "6531234567"
    apply_event(state, event)
    got = state_samples(state)
    where = {"subaccount": SUB, "msisdn": OWN}
    assert value(got, "eightbyeight_number_call_mos_count", **where) == 2
    assert value(got, "eightbyeight_number_call_mos_sum", **where) == 7.0
    assert value(got, "eightbyeight_number_call_packet_loss_ratio_count", **where) == 1
    assert value(got, "eightbyeight_number_call_packet_loss_ratio_sum", **where) == 0.25
    assert value(got, "eightbyeight_number_call_jitter_seconds_count", **where) == 1
    assert value(got, "eightbyeight_number_call_jitter_seconds_sum", **where) == 0.03
    # One session, one outcome, though both legs name the number.
    assert value(got, "eightbyeight_number_call_legs_total", outcome="answered", **where) == 1


def test_a_number_without_quality_has_no_summary_and_its_calls_go_with_it():
    state = WebhookState([SUB], clock=lambda: NOW)
    apply_event(state, vnu(numbers=[number(OWN)]))
    event = vss(session="nq")
    for leg in event["payload"]["details"].values():
        leg.pop("callQuality")
    apply_event(state, event)
    assert not family(state, "eightbyeight_number_call_mos_count")
    assert sum(family(state, "eightbyeight_number_call_legs_total").values()) == 1
    apply_event(state, snapshot(number("+6531234599", offset=-1)))
    assert not [k for k in family(state, "eightbyeight_number_call_legs_total")
                if ("msisdn", OWN) in k]  # fmt: skip


def test_a_sessions_country_is_its_first_legs_and_a_leg_keeps_its_own():
    state = WebhookState([SUB], clock=lambda: NOW)
    event = vss(session="c")
    inbound = call_leg("INBOUND", "+12314377870", OWN, mos=4.0)
    inbound["destinationCountryCode"] = None
    outbound = call_leg("OUTBOUND", OWN, "+6591178965", mos=3.0)
    outbound["sourceCountryCode"] = "MY"
    event["payload"]["details"] = {"callA": inbound, "callB": outbound}
    apply_event(state, event)
    got = state_samples(state)
    assert value(got, "eightbyeight_call_sessions_total", subaccount=SUB, country="MY",
                 session_status="completed") == 1  # fmt: skip
    # Leg A has no country of its own: it takes the session's.
    assert value(got, "eightbyeight_call_mos_count", subaccount=SUB, country="MY") == 2
    no_country = vss(session="none")
    for leg in no_country["payload"]["details"].values():
        leg["sourceCountryCode"] = leg["destinationCountryCode"] = None
    apply_event(state, no_country)
    assert value(state_samples(state), "eightbyeight_call_sessions_total", subaccount=SUB,
                 country="unknown", session_status="completed") == 1  # fmt: skip


def test_error_codes_are_read_with_spaces_around_them():
    state = WebhookState([SUB])
    event = vss(session="e")
    event["payload"]["errorDetails"] = {"errorCode": " -2004 "}
    apply_event(state, event)
    event = vss(session="f")
    event["payload"]["errorDetails"] = {"errorCode": "-9999"}
    apply_event(state, event)
    errors = {dict(k)["error_code"]: v
              for k, v in family(state, "eightbyeight_call_session_errors_total").items()}  # fmt: skip
    assert errors == {"-2004": 1, "-9999": 1}


def test_without_per_number_series_no_number_is_remembered_for_calls():
    state = WebhookState([SUB], per_number=False, clock=lambda: NOW)
    apply_event(state, vnu(numbers=[number(OWN)]))
    apply_event(state, vss(session="p"))
    assert state.snapshot()[0][1].calls == {}
    assert state.snapshot()[0][1].series == set()
    assert not family(state, "eightbyeight_number_call_legs_total")
    assert value(state_samples(state), "eightbyeight_webhook_events_total", subaccount=SUB,
                 event_type="vss") == 1  # fmt: skip


def test_a_session_is_counted_in_every_aggregate_family():
    state = WebhookState([SUB], clock=lambda: NOW)
    apply_event(state, vss(session="all"))
    got = state_samples(state)
    where = {"subaccount": SUB, "country": "SG"}
    assert value(got, "eightbyeight_call_sessions_total", session_status="completed", **where) == 1
    for direction in ("inbound", "outbound"):
        assert value(got, "eightbyeight_call_legs_total", subaccount=SUB, direction=direction,
                     call_status="completed") == 1  # fmt: skip
    for family_name in ("mos", "packet_loss_ratio", "jitter_seconds"):
        assert value(got, f"eightbyeight_call_{family_name}_count", **where) == 2, family_name
    assert value(got, "eightbyeight_call_packet_loss_ratio_sum", **where) == 0.01


def test_every_future_update_time_in_a_callback_is_counted():
    state = WebhookState([SUB], clock=lambda: NOW)
    apply_event(state, vnu(numbers=[number("+6531234501", offset=301), number("+6531234502", 900),
                              number("+6531234503", offset=0)]))  # fmt: skip
    assert value(state_samples(state), "eightbyeight_webhook_invalid_fields_total",
                 field="updated_timestamp") == 2  # fmt: skip
    assert set(statuses(state)) == {"+6531234503"}


def test_legs_without_a_status_take_the_sessions_outcome_and_keep_their_country():
    state = WebhookState([SUB], clock=lambda: NOW)
    apply_event(state, vnu(numbers=[number(OWN)]))
    event = vss(session="b", status="BUSY")
    leg_a, leg_b = event["payload"]["details"].values()
    leg_a.pop("callStatus")
    leg_b.pop("callStatus")
    leg_b["sourceCountryCode"] = "MY"  # leg A is SG, so is the session
    apply_event(state, event)
    got = state_samples(state)
    assert value(got, "eightbyeight_number_call_legs_total", subaccount=SUB, msisdn=OWN,
                 outcome="unanswered") == 1  # fmt: skip
    assert value(got, "eightbyeight_call_mos_count", subaccount=SUB, country="MY") == 1
    assert value(got, "eightbyeight_call_mos_count", subaccount=SUB, country="SG") == 1
