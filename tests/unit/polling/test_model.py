"""The response model: what counts, what is skipped, what fails the whole response.

Also here: A 200 body that is an error envelope, or has no list, is read exactly as what it says."""

from __future__ import annotations

import json
import time
from collections import namedtuple
from dataclasses import fields
from datetime import UTC, datetime

import pytest

from exporter.common.errors import ResponseError
from exporter.polling import model
from exporter.polling.model import parse_inventory, parse_timestamp
from tests.support.fake_api import number, numbers_body


def parse(doc, **kwargs):
    return parse_inventory(json.dumps(doc).encode(), **kwargs)


def number_rows(inventory) -> list:
    """The inventory's per-number columns as one named row per number, for assertions."""
    names = [f.name for f in fields(inventory.columns)]
    row = namedtuple("NumberRow", names)
    return [
        row(*values) for values in zip(*(getattr(inventory.columns, n) for n in names), strict=True)
    ]


def test_good_response_is_folded_into_groups_and_rows():
    inv = parse(
        numbers_body(
            [
                number("+6531234567"),
                number("+6531234568", operationalStatus="Expiring"),
                number("+14155550100", countryCode="US", numberType="TollFree", rentalPrice=2.5),
            ]
        )
    )
    assert inv.total_numbers == 3
    assert inv.listed == 3
    assert inv.invalid_records == 0
    sg = inv.groups[("SG", "Mobile")]
    assert sg.statuses == {"active": 1, "expiring": 1, "inactive": 0, "unhealthy": 0}
    assert sg.healthy == 2
    assert sg.monthly_rental_cost == {"USD": 10.0}
    assert inv.groups[("US", "TollFree")].monthly_rental_cost == {"USD": 2.5}
    assert [row.msisdn for row in number_rows(inv)] == [
        "+6531234567",
        "+6531234568",
        "+14155550100",
    ]
    assert inv.last_updated == datetime(2024, 7, 1, 5, 50, 23, 550000, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    "bad",
    [
        "not an object",
        42,
        None,
        [],
        {"countryCode": "SG"},  # no msisdn
        {"msisdn": ""},
        {"msisdn": 6531234567},  # a number where a string belongs
        number(rentalPrice="5.00"),  # a string where a number belongs
        number(billingUnit="60"),
        number(numberHealthCheckEnabled="true"),
        number(numberHealth={"isHealthy": "yes"}),
        number(numberHealth="healthy"),
        number(countryCode=65),
        number(rentalPrice=True),
    ],
    ids=repr,
)
def test_malformed_record_is_skipped_and_counted(bad):
    inv = parse(numbers_body([number("+6531230000"), bad]))
    assert inv.invalid_records == 1
    assert inv.listed == 1
    assert number_rows(inv)[0].msisdn == "+6531230000"


def test_duplicate_msisdn_counts_once_and_is_invalid():
    inv = parse(numbers_body([number("+6531230000"), number("+6531230000")]))
    assert (inv.listed, inv.invalid_records) == (1, 1)


@pytest.mark.parametrize(
    "health",
    [{"numberHealth": None}, {"numberHealth": "absent"}, {"numberHealthCheckEnabled": False}],
    ids=["null", "missing", "disabled"],
)
def test_missing_or_disabled_health_is_unknown_not_invalid(health):
    record = number(**health)
    if health.get("numberHealth") == "absent":
        del record["numberHealth"]
    inv = parse(numbers_body([record]))
    row = number_rows(inv)[0]
    assert inv.invalid_records == 0
    assert row.healthy is None
    assert row.health_status == "unknown"
    assert inv.groups[("SG", "Mobile")].health_unknown == 1


def test_disabled_checks_are_counted_and_ignored_for_check_age():
    inv = parse(
        numbers_body(
            [
                number("+6531230001", numberHealthCheckEnabled=False),
                number(
                    "+6531230002",
                    numberHealth={"isHealthy": False, "lastCheckedTime": "2024-07-01T06:00:00Z"},
                ),
            ]
        )
    )
    group = inv.groups[("SG", "Mobile")]
    assert group.check_disabled == 1
    assert group.unhealthy == 1
    assert group.oldest_check == datetime(2024, 7, 1, 6, tzinfo=UTC).timestamp()


def test_labels_are_normalised():
    inv = parse(
        numbers_body(
            [
                number(
                    "+6531230001",
                    operationalStatus="UNHEALTHY",
                    numberType=None,
                    numberHealth={"isHealthy": True, "status": "OK"},
                ),
                number("+6531230002", operationalStatus=None, billingCurrency=None),
            ]
        )
    )
    first, second = number_rows(inv)
    assert first.operational_status == "unhealthy"  # statuses are lower-cased
    assert first.number_type == "unknown"
    assert first.health_status == "ok"
    assert second.operational_status == "unknown"
    assert second.currency == "unknown"
    assert inv.groups[("SG", "unknown")].statuses["unhealthy"] == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2023-02-17T05:10:14.760Z", "2023-02-17T05:10:14.760+00:00"),
        ("2020-12-22T05:52:01.85Z", "2020-12-22T05:52:01.850+00:00"),
        ("2021-01-01T00:00:00Z", "2021-01-01T00:00:00+00:00"),
        ("2021-01-01T08:00:00+08:00", "2021-01-01T00:00:00+00:00"),
        ("2021-01-01T00:00:00.123456789Z", "2021-01-01T00:00:00.123456+00:00"),
        ("2021-01-01t00:00:00z", "2021-01-01T00:00:00+00:00"),
        ("2021-01-01T00:00:00", "2021-01-01T00:00:00+00:00"),
    ],
)
def test_rfc3339_times(text, expected):
    assert parse_timestamp(text) == datetime.fromisoformat(expected).timestamp()


@pytest.mark.parametrize("text", ["", "yesterday", "2021-13-01T00:00:00Z", "12:00", None])
def test_unreadable_time_is_unknown(text):
    assert parse_timestamp(text) is None


def test_unparseable_time_makes_only_that_field_unknown():
    record = number(numberHealth={"isHealthy": True, "lastCheckedTime": "not a time"})
    inv = parse(numbers_body([record], lastUpdatedAt="garbage"))
    assert inv.invalid_records == 0
    assert number_rows(inv)[0].last_checked is None
    assert number_rows(inv)[0].healthy is True
    assert inv.last_updated is None


def test_total_numbers_may_disagree_with_the_list():
    inv = parse(numbers_body([number()], total=7))
    assert (inv.total_numbers, inv.listed) == (7, 1)


def test_empty_account_is_valid():
    inv = parse({"totalNumbers": 0, "lastUpdatedAt": "2024-07-01T05:50:23Z", "statusCode": 0})
    assert (inv.total_numbers, inv.listed, inv.groups) == (0, 0, {})


def test_per_number_rows_can_be_skipped():
    inv = parse(numbers_body([number()]), per_number=False)
    assert number_rows(inv) == []
    assert inv.listed == 1


@pytest.mark.parametrize(
    ("body", "reason", "words"),
    [
        (b"", "invalid_response", "empty body"),
        (b"   \n ", "invalid_response", "empty body"),
        (b"<html><body>502 Bad Gateway</body></html>", "invalid_response", "HTML"),
        (b'{"totalNumbers": 1, "numbers": [', "invalid_response", "invalid JSON"),
        (b"[1, 2, 3]", "invalid_response", "unexpected JSON"),
        (b'"numbers"', "invalid_response", "unexpected JSON"),
        (b'{"numbers": {"msisdn": "+1"}}', "invalid_response", "numbers"),
        (b'{"hello": "world"}', "invalid_response", "no 'numbers'"),
        (
            b'{"statusCode": 401, "statusMessage": "Authentication header not found"}',
            "unauthorized",
            "Authentication",
        ),
        (
            b'{"code": 1200, "message": "Invalid request", "errorId": "x"}',
            "unauthorized",
            "1200",
        ),
        (b'{"statusCode": "1001", "statusMessage": "Invalid"}', "bad_request", "1001"),
    ],
)
def test_bad_response_fails_whole(body, reason, words):
    with pytest.raises(ResponseError) as caught:
        parse_inventory(body)
    assert caught.value.reason == reason
    assert words in caught.value.detail


@pytest.mark.parametrize(
    ("envelope", "reason"),
    [
        ({"statusCode": 401, "statusMessage": "Authentication header not found"}, "unauthorized"),
        ({"statusCode": "401", "statusMessage": "token invalid"}, "unauthorized"),
        ({"statusCode": 403, "statusMessage": "Forbidden"}, "forbidden"),
        ({"statusCode": 500, "statusMessage": "Internal error"}, "server_error"),
        ({"statusCode": 0, "code": 500, "message": "Internal error"}, "server_error"),
        ({"statusCode": 1200, "statusMessage": "Unauthorized"}, "unauthorized"),
        ({"code": 1200, "message": "Unauthorized", "statusCode": None}, "unauthorized"),
        ({"code": 1201, "message": "Forbidden", "statusCode": None}, "forbidden"),
        ({"code": "1300", "message": "Not found", "statusCode": None}, "not_found"),
        ({"code": 2000, "message": "Internal error", "statusCode": None}, "server_error"),
        ({"statusCode": "1001", "statusMessage": "Invalid"}, "bad_request"),
    ],
    ids=repr,
)
@pytest.mark.parametrize("with_numbers", [True, False], ids=["with-numbers", "without-numbers"])
def test_a_200_with_an_error_code_is_that_error_whatever_else_it_holds(
    envelope, reason, with_numbers
):
    doc = numbers_body([number()] if with_numbers else [], **envelope)
    if not with_numbers:
        del doc["numbers"]
    with pytest.raises(ResponseError) as caught:
        parse(doc)
    assert caught.value.reason == reason
    code = envelope.get("statusCode") or envelope.get("code")
    assert f"error envelope {code}" in caught.value.detail


@pytest.mark.parametrize(
    "envelope",
    [
        {"statusCode": 0, "statusMessage": "OK"},
        {"statusCode": 200, "statusMessage": "OK"},
        {"statusCode": "0", "statusMessage": "ok"},
        {"statusCode": "OK", "statusMessage": "ok"},
        {"statusCode": 1, "statusMessage": "Created"},
        {"statusCode": None, "code": 0, "message": "ok"},
        {"statusCode": None, "statusMessage": None},
    ],
    ids=repr,
)
def test_success_codes_are_not_errors(envelope):
    inv = parse(numbers_body([number()], **envelope))
    assert (inv.listed, inv.invalid_records) == (1, 0)


@pytest.mark.parametrize(
    ("field", "wrong", "lost"),
    [
        ("lastUpdatedAt", 1719813023550, "last_updated"),  # epoch milliseconds
        ("lastUpdatedAt", {"at": "2024-07-01T05:50:23Z"}, "last_updated"),
        ("totalNumbers", "2", "total_numbers"),
        ("totalNumbers", True, "total_numbers"),
        ("totalNumbers", None, "total_numbers"),
        ("statusMessage", 42, None),
        ("statusMessage", ["OK"], None),
        ("message", {"text": "OK"}, None),
        ("statusCode", True, None),
        ("statusCode", 0.0, None),
    ],
    ids=repr,
)
def test_a_wrong_typed_response_field_costs_only_that_field(field, wrong, lost):
    inv = parse(numbers_body([number(), number("+6531234568")], **{field: wrong}))
    assert (inv.listed, inv.invalid_records) == (2, 0)
    if lost is not None:
        assert getattr(inv, lost) is None


def test_a_total_beyond_a_float_costs_only_that_field():
    inv = parse_inventory(b'{"totalNumbers": 1e400, "numbers": [{"msisdn": "+1"}]}')
    assert (inv.total_numbers, inv.listed) == (None, 1)


@pytest.mark.parametrize(
    "unused",
    [
        {"uri": 42},
        {"uri": None},
        {"dateCreated": 1719813023550},
        {"dateUpdated": {"at": ["2024"]}},
        {"dateCreated": [1, 2, 3], "dateUpdated": False, "uri": {"href": "x"}},
    ],
    ids=repr,
)
def test_unused_record_fields_of_any_type_leave_the_record_valid(unused):
    inv = parse(numbers_body([number(**unused)]))
    assert (inv.listed, inv.invalid_records) == (1, 0)


@pytest.mark.parametrize("depth", [1000, 5000, 100_000])
@pytest.mark.parametrize("field", ["uri", "referenceId", "numberHealth"])
def test_deep_nesting_inside_one_record_costs_that_record(field, depth):
    good = json.dumps(numbers_body([number("+6531234567"), number("+6531234569")]))
    deep = json.dumps(number("+6531234568", **{field: "DEEP"})).replace(
        '"DEEP"', "[" * depth + "]" * depth
    )
    body = good.replace('"numbers": [', '"numbers": [' + deep + ", ", 1).encode()
    inv = parse_inventory(body)
    assert (inv.listed, inv.invalid_records) == (2, 1)
    assert [row.msisdn for row in number_rows(inv)] == ["+6531234567", "+6531234569"]


def test_a_lone_surrogate_in_one_record_costs_that_record():
    good = json.dumps(numbers_body([number("+6531234567")]))
    bad = json.dumps(number("+6531234568", referenceId="SURROGATE"))
    bad = bad.replace("SURROGATE", "x\\ud800y")
    body = good.replace('"numbers": [', '"numbers": [' + bad + ", ", 1).encode()
    inv = parse_inventory(body)
    assert (inv.listed, inv.invalid_records) == (1, 1)


def test_deep_nesting_outside_the_records_fails_the_response():
    body = b'{"statusMessage": ' + b"[" * 5000 + b"]" * 5000 + b', "numbers": []}'
    with pytest.raises(ResponseError) as caught:
        parse_inventory(body)
    assert caught.value.reason == "invalid_response"


@pytest.mark.parametrize(
    ("leap", "same_as"),
    [
        ("2016-12-31T23:59:60Z", "2017-01-01T00:00:00Z"),
        ("2016-12-31T23:59:60.5Z", "2017-01-01T00:00:00.5Z"),
        ("2017-01-01T07:59:60+08:00", "2017-01-01T00:00:00Z"),
        ("2015-06-30t23:59:60.123z", "2015-07-01T00:00:00.123Z"),
    ],
)
def test_a_leap_second_is_read_as_the_next_second(leap, same_as):
    assert parse_timestamp(leap) == parse_timestamp(same_as)
    inv = parse(
        numbers_body(
            [number(numberHealth={"isHealthy": True, "lastCheckedTime": leap})],
            lastUpdatedAt=leap,
        )
    )
    assert inv.last_updated == parse_timestamp(same_as)
    assert number_rows(inv)[0].last_checked == parse_timestamp(same_as)


@pytest.mark.parametrize("text", ["2016-12-31T23:59:61Z", "2016-12-31T23:60:00Z"])
def test_only_second_60_is_a_leap_second(text):
    assert parse_timestamp(text) is None


# --- the API key is never a label value ------------------------------------------------------

KEY = "sk-model-5b2e9d0c41f7a3e8-never-shown"
LABEL_FIELDS = [
    "msisdn",
    "countryCode",
    "numberType",
    "operationalStatus",
    "referenceId",
    "billingCurrency",
    "numberHealth.status",
]


def with_field(record: dict, field: str, value: object) -> dict:
    if field == "numberHealth.status":
        return {**record, "numberHealth": {**record["numberHealth"], "status": value}}
    return {**record, field: value}


def label_values(inv) -> set[str]:
    """Every string of the inventory that becomes a label value."""
    values = {text for column in fields(inv.columns) for text in getattr(inv.columns, column.name)}
    for (country, number_type), group in inv.groups.items():
        values |= {country, number_type, *group.statuses, *group.monthly_rental_cost}
    return {value for value in values if isinstance(value, str)}


@pytest.mark.parametrize("field", LABEL_FIELDS)
@pytest.mark.parametrize("echo", [KEY, f"token {KEY} rejected", f"{KEY.upper()}{KEY}"])
def test_a_record_holding_the_key_in_a_label_field_is_skipped_and_counted(field, echo):
    records = [number("+6531230001"), with_field(number("+6531230002"), field, echo)]
    inv = parse(numbers_body(records), secrets=[KEY])
    assert (inv.listed, inv.invalid_records) == (1, 1)
    assert [row.msisdn for row in number_rows(inv)] == ["+6531230001"]
    assert not any(KEY in value for value in label_values(inv))


def test_the_key_is_caught_in_every_batch_and_only_where_it_is():
    # Far more records than one batch holds; a key value once seen is caught again later.
    records = [
        number(f"+65{6000000 + i}", referenceId=f"ref {KEY}" if i % 1000 == 7 else "range-1")
        for i in range(5000)
    ]
    inv = parse(numbers_body(records), secrets=[KEY])
    assert (inv.listed, inv.invalid_records) == (4995, 5)
    assert not any(KEY in value for value in label_values(inv))
    assert sum(inv.groups[("SG", "Mobile")].statuses.values()) == 4995


def test_the_key_where_it_is_no_label_leaves_the_record_valid():
    records = [
        number("+6531230001", uri=KEY, dateCreated=KEY),
        number(
            "+6531230002",
            numberHealthCheckEnabled=False,  # a disabled check's status is not shown
            numberHealth={"isHealthy": True, "status": KEY},
        ),
    ]
    inv = parse(numbers_body(records), secrets=[KEY])
    assert (inv.listed, inv.invalid_records) == (2, 0)


def test_without_per_number_metrics_only_aggregate_labels_are_checked():
    records = [
        number("+6531230001", referenceId=KEY),  # not a label without per-number metrics
        number("+6531230002", countryCode=KEY),
        number(KEY),
    ]
    inv = parse(numbers_body(records), per_number=False, secrets=[KEY])
    assert (inv.listed, inv.invalid_records) == (2, 1)
    assert not any(KEY in value for value in label_values(inv))


def test_the_key_in_an_error_envelope_is_redacted_from_the_error():
    body = {"statusCode": 401, "statusMessage": f"{'x' * 180} token {KEY} is not valid"}
    with pytest.raises(ResponseError) as caught:
        parse(body, secrets=[KEY])
    assert caught.value.reason == "unauthorized"
    assert KEY[:4] not in caught.value.detail


# --- label values are printable --------------------------------------------------------------

UNPRINTABLE = [chr(c) for c in (*range(0x20), *range(0x7F, 0xA0)) if c != 0x0A] + [
    "\u2028",
    "\u2029",
]


@pytest.mark.parametrize("char", UNPRINTABLE, ids=lambda char: f"U+{ord(char):04X}")
def test_control_characters_in_label_values_become_the_replacement_character(char):
    odd = f"a{char}b{char}"
    record = number(
        f"+65{char}1",
        countryCode=odd,
        numberType=odd,
        operationalStatus=odd,
        referenceId=odd,
        billingCurrency=odd,
        numberHealth={"isHealthy": True, "status": odd},
    )
    inv = parse(numbers_body([record]))
    (row,) = number_rows(inv)
    assert row.msisdn == "+65\ufffd1"
    assert {row.country, row.number_type, row.reference_id, row.currency} == {"a\ufffdb\ufffd"}
    assert row.operational_status == row.health_status == "a\ufffdb\ufffd"
    assert all(value.isprintable() for value in label_values(inv))


def test_newlines_stay_for_the_exposition_to_escape():
    inv = parse(numbers_body([number(referenceId="a\nb", countryCode="S\u00e9\u2603 G")]))
    (row,) = number_rows(inv)
    assert (row.reference_id, row.country) == ("a\nb", "S\u00e9\u2603 G")


def test_msisdns_that_differ_only_by_control_characters_are_one_number():
    inv = parse(numbers_body([number("+651\r"), number("+651\x00"), number("+652")]))
    assert (inv.listed, inv.invalid_records) == (2, 1)
    assert [row.msisdn for row in number_rows(inv)] == ["+651\ufffd", "+652"]


def test_the_four_documented_statuses_are_always_counted():
    inv = parse(numbers_body([number(operationalStatus="Porting")]))
    assert inv.groups[("SG", "Mobile")].statuses == {
        "active": 0,
        "expiring": 0,
        "inactive": 0,
        "unhealthy": 0,
        "porting": 1,
    }


# --- A 200 body that is an error envelope, or has no list, is read exactly as what it says. ----------


def parse_envelopes(doc: dict) -> object:
    return parse_inventory(json.dumps(doc).encode(), True)


@pytest.mark.parametrize(
    ("doc", "reason", "detail"),
    [
        ({"statusCode": 401, "message": "bad key"}, "unauthorized", "error envelope 401: bad key"),
        ({"code": 450}, "client_error", "error envelope 450: "),
        ({"statusCode": 400, "statusMessage": "x"}, "bad_request", "error envelope 400: x"),
        ({"statusCode": "599", "statusMessage": "m"}, "server_error", "error envelope 599: m"),
        ({"statusCode": 600, "statusMessage": "m"}, "invalid_response", "error envelope 600: m"),
        (
            {"statusCode": 1001, "statusMessage": "failed"},
            "bad_request",
            "error envelope 1001: failed",
        ),
        ({"code": 1500}, "invalid_response", "error envelope 1500: "),
        ({}, "invalid_response", "no 'numbers' list in the response"),
        ({"lastUpdatedAt": None}, "invalid_response", "no 'numbers' list in the response"),
    ],
)
def test_error_envelope(doc, reason, detail):
    with pytest.raises(ResponseError) as caught:
        parse_envelopes(doc)
    assert (caught.value.reason, caught.value.detail) == (reason, detail)


@pytest.mark.parametrize(
    "doc",
    [
        {"totalNumbers": 0},
        {"statusCode": 200},
        {"statusCode": 0, "statusMessage": "OK"},
        {"statusCode": "OK"},  # a code that is not a number is no error
    ],
)
def test_an_account_without_numbers_may_omit_the_list(doc):
    inventory = parse_envelopes(doc)
    assert inventory is not None


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b'{"statusMessage": "\xff", "numbers": []}', "a string is not valid UTF-8"),
        (b" \n\t ", "empty body"),
        (b"  \n<html><body>503</body></html>", "HTML instead of JSON"),
    ],
)
def test_unreadable_body(body, detail):
    with pytest.raises(ResponseError) as caught:
        parse_inventory(body, True)
    assert (caught.value.reason, caught.value.detail) == ("invalid_response", detail)
    assert "\n" not in caught.value.detail


def test_a_time_without_offset_is_utc_whatever_the_local_zone(monkeypatch):
    monkeypatch.setenv("TZ", "Asia/Singapore")
    time.tzset()
    try:
        assert parse_timestamp("2024-07-01T05:50:23") == 1719813023.0
    finally:
        monkeypatch.undo()
        time.tzset()


def test_a_body_decoded_whole_or_a_batch_at_a_time_gives_the_same_inventory(monkeypatch):
    # Records over several batches, some of them varying what the fold looks at.
    records = [
        number(
            f"+65{6000000 + i}",
            countryCode=["SG", "US", None][i % 3],
            rentalPrice=None if i % 7 == 0 else 1.25 * (i % 5),
            numberHealth={
                "isHealthy": i % 2 == 0,
                "lastCheckedTime": f"2026-11-{1 + i % 28:02}T10:00:00.{i % 1000:03}Z",
            },
        )
        for i in range(5000)
    ]
    body = json.dumps(numbers_body(records)).encode()
    decoded_whole = []
    decode_whole = model._decode_whole
    monkeypatch.setattr(
        model, "_decode_whole", lambda b: decoded_whole.append(1) or decode_whole(b)
    )
    whole = parse_inventory(body)
    monkeypatch.setattr(model, "DECODE_WHOLE_UP_TO", len(body) - 1)
    batched = parse_inventory(body)
    assert decoded_whole == [1]  # the first time only: the body is above the second bound
    assert (whole.listed, whole.invalid_records) == (batched.listed, batched.invalid_records)
    assert (whole.listed, whole.invalid_records) == (5000, 0)
    assert whole.groups == batched.groups
    assert number_rows(whole) == number_rows(batched)
