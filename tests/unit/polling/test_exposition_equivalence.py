"""Proof that the hand-written exposition is what prometheus_client would print.

A reference collector yields the same families from the same `Inventory` through
prometheus_client's `Metric` and `generate_latest` (family names, help, types and label names
from the catalogue; values computed here on their own); the exporter's `render_scrapes` output
must be equal byte for byte, parse with the library's own parser, and its gzip form must
inflate to the same bytes. The body is deliberately varied (several countries, types, statuses including unknown
ones, missing fields, quotes, backslashes, newlines, control characters and unicode in label
values, odd numbers and times) and large enough to cross the model's batches and the renderer's
chunks. The columnar fold of the model is also checked against a plain per-record fold.

One deliberate difference from what generate_latest would print for the raw API strings: the
model replaces control characters other than the newline (and U+2028, U+2029) with U+FFFD,
where generate_latest would print them as they are. The reference collector is fed the model's
values, so the comparison is of the rendering; the plain fold below checks the replacement.
"""

from __future__ import annotations

import gzip
import json
import math
import random
import unicodedata
from collections import namedtuple
from dataclasses import fields
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

from exporter.common.eightbyeight import NUMBER_STATUSES
from exporter.metrics import catalogue as c
from exporter.metrics.encoding import gzip_body, plain_body
from exporter.polling import exposition
from exporter.polling.exposition import SubaccountScrape, render_inventory, render_scrapes
from exporter.polling.model import Inventory, parse_inventory

NOW = 1_764_170_000.25

# --- a varied body -------------------------------------------------------------------------

ODD = 'Mo"bi\\le\nx'  # every character the text format escapes
CONTROL = "S\rG\x00\x1b[31m\t\x7f\x85\u2028"  # replaced by U+FFFD in label values
COUNTRIES = ["SG", "US", "GB", "日本", ODD, CONTROL, "", None]
TYPES = ["Mobile", "Local", "TollFree", ODD, "ünïcode", "", None, "absent"]
STATUSES = [
    "Active",
    "EXPIRING",
    "inactive",
    "Unhealthy",
    "Porting",
    "ACTIVE",
    CONTROL,
    None,
    "absent",
]
CURRENCIES = ["USD", "SGD", "JPY", "€", None, "absent"]
TIMES = [
    "2025-11-26T15:10:03.123Z",
    "2025-11-26T15:10:03Z",  # a whole second: a float ending in .0
    "2025-11-26T15:00:00Z",
    "2020-12-22T05:52:01.85Z",
    "2021-01-01T00:00:00.123456789Z",
    "2025-11-26T23:10:03.5+08:00",
    "2025-11-26t15:10:03z",
    "2025-11-26T15:10:03",  # no offset: UTC
    "not a time",
    "",
    None,
]
# Unix times outside 1e9..1e10 send the whole slice they are in down the slow formatting path:
# only the second, smaller body has them, so the first one exercises the fast path.
ODD_TIMES = [
    "1999-12-31T23:59:59.999Z",  # before 2001: nine integer digits
    "2300-01-01T00:00:00Z",  # after 2286: eleven
]
PRICES = [5, 5.0, 0.05, 0, 0.0, -0.0, 1e-7, 123456789.5, 1e20, 7.25, 1234567.0, -3.5, None]
HEALTH_STATUSES = ["Reachable", "Unreachable", "NoAnswer", "OK", ODD, CONTROL, "", None]


def _maybe(record: dict, key: str, value: object) -> None:
    if value != "absent":
        record[key] = value


def varied_record(rng: random.Random, index: int, times: list[str | None]) -> object:
    msisdn = f"+65{6000000 + index}"
    if index % 997 == 13:
        msisdn += '"\\\n'  # a label value that needs escaping in the msisdn column too
    if index % 991 == 5:
        msisdn += "\r\x00"  # and one with control characters
    record: dict[str, object] = {
        "msisdn": msisdn,
        "dateCreated": "2024-07-01T05:50:23.550Z",
        "dateUpdated": "2024-07-01T05:50:23.550Z",
        "referenceId": rng.choice([f"range-{index // 50}", "ü-\\", ODD, CONTROL, ""]),
        "uri": f"https://voice.8x8.com/api/v1/subaccounts/x/numbers/{index}",
    }
    _maybe(record, "countryCode", rng.choice(COUNTRIES))
    _maybe(record, "numberType", rng.choice(TYPES))
    _maybe(record, "operationalStatus", rng.choice(STATUSES))
    _maybe(record, "billingCurrency", rng.choice(CURRENCIES))
    for key in ("rentalPrice", "incomingRate", "billingUnit"):
        _maybe(record, key, rng.choice([*PRICES, "absent"]))
    enabled = rng.choice([True, True, True, False, None, "absent"])
    _maybe(record, "numberHealthCheckEnabled", enabled)
    health_kind = rng.random()
    if health_kind < 0.7:
        health: dict[str, object] = {}
        _maybe(health, "isHealthy", rng.choice([True, True, False, None, "absent"]))
        _maybe(health, "status", rng.choice([*HEALTH_STATUSES, "absent"]))
        _maybe(health, "lastCheckedTime", rng.choice([*times, "absent"]))
        record["numberHealth"] = health
    elif health_kind < 0.85:
        record["numberHealth"] = None
    return record


def varied_body(count: int = 5000, seed: int = 7, odd_times: bool = False) -> bytes:
    rng = random.Random(seed)
    times = [*TIMES, *ODD_TIMES] if odd_times else TIMES
    records: list[object] = [varied_record(rng, i, times) for i in range(count)]
    # Malformed and duplicate records, spread over several of the model's batches.
    middle, late = count * 2 // 5, count * 6 // 7
    records[3] = "not an object"
    records[middle] = {"countryCode": "SG"}  # no msisdn
    records[middle + 1] = dict(records[middle - 100], rentalPrice="5.00")  # type: ignore[arg-type]
    records[late] = dict(records[10])  # type: ignore[arg-type]  # a duplicate msisdn
    records[late + 1] = {"msisdn": ""}
    doc = {
        "totalNumbers": count + 3,
        "lastUpdatedAt": "2025-11-26T15:10:03.987Z",
        "numbers": records,
        "statusCode": 0,
        "statusMessage": "OK",
    }
    return json.dumps(doc, ensure_ascii=False).encode()


def number_rows(inventory: Inventory) -> list:
    """The inventory's per-number columns as one named row per number, for assertions."""
    names = [f.name for f in fields(inventory.columns)]
    row = namedtuple("NumberRow", names)
    return [
        row(*values) for values in zip(*(getattr(inventory.columns, n) for n in names), strict=True)
    ]


# --- the reference collector ---------------------------------------------------------------


def reference_exposition(
    targets: list[tuple[SubaccountScrape, Inventory | None]], now: float, openmetrics: bool = False
) -> bytes:
    """generate_latest (text, or OpenMetrics) over Metric families built from the model."""
    families = {f.name: Metric(f.name, f.help, f.type) for f in c.POLL_FAMILIES}

    def add(family: c.Family, values: dict[str, str], value: float) -> None:
        """A sample with the family's labels (as the catalogue lists them) taken from values."""
        labels = {name: values[name] for name in family.labels}
        families[family.name].add_sample(family.name, labels, value)

    for target, inventory in targets:
        sub = {"subaccount": target.subaccount}
        add(c.UP, sub, 1.0 if target.up else 0.0)
        add(c.SCRAPE_DURATION_SECONDS, sub, target.duration)
        invalid = inventory.invalid_records if (inventory and target.up) else 0
        add(c.INVALID_RECORDS, sub, invalid)
        if target.last_success is not None:
            add(c.LAST_SUCCESS_TIMESTAMP_SECONDS, sub, target.last_success)
        if inventory is None:
            continue
        per_number = target.inventory is not None and c.NUMBER_INFO.name in target.inventory.samples
        _reference_inventory(add, inventory, sub, now, per_number)

    registry = CollectorRegistry(auto_describe=False)

    class Reference:
        def collect(self):  # the families that have samples, in exposition order
            return [family for family in families.values() if family.samples]

    registry.register(Reference())
    return openmetrics_latest(registry) if openmetrics else generate_latest(registry)


def _reference_inventory(add, inventory: Inventory, sub: dict, now: float, per_number: bool):
    if inventory.total_numbers is not None:
        add(c.VIRTUAL_NUMBERS, sub, inventory.total_numbers)
    add(c.VIRTUAL_NUMBERS_LISTED, sub, inventory.listed)
    if inventory.last_updated is not None:
        add(c.LAST_UPDATED_TIMESTAMP_SECONDS, sub, inventory.last_updated)
    for (country, number_type), group in inventory.groups.items():
        pair = {"country": country, "number_type": number_type, **sub}
        for status in sorted(set(group.statuses) | set(NUMBER_STATUSES)):
            count = group.statuses.get(status, 0)
            add(c.VIRTUAL_NUMBERS_BY_STATUS, {**pair, "operational_status": status}, count)
        add(c.VIRTUAL_NUMBERS_EXPIRING, pair, group.statuses["expiring"])
        add(c.VIRTUAL_NUMBERS_HEALTHY, pair, group.healthy)
        add(c.VIRTUAL_NUMBERS_UNHEALTHY, pair, group.unhealthy)
        add(c.VIRTUAL_NUMBERS_HEALTH_UNKNOWN, pair, group.health_unknown)
        add(c.VIRTUAL_NUMBERS_HEALTH_CHECK_DISABLED, pair, group.check_disabled)
        for health_status in sorted(group.health_statuses):
            count = group.health_statuses[health_status]
            add(c.VIRTUAL_NUMBERS_BY_HEALTH_STATUS, {**pair, "health_status": health_status}, count)
        if group.oldest_check is not None:
            add(c.HEALTH_CHECK_AGE_SECONDS, pair, max(0.0, now - group.oldest_check))
        for currency in sorted(group.monthly_rental_cost):
            cost = group.monthly_rental_cost[currency]
            add(c.MONTHLY_RENTAL_COST, {**pair, "currency": currency}, cost)
    if not per_number:
        return
    for row in number_rows(inventory):
        values = {**row._asdict(), **sub}  # a label's value is the row's field of the same name
        add(c.NUMBER_INFO, values, 1)
        if row.healthy is not None:
            add(c.NUMBER_HEALTHY, values, 1 if row.healthy else 0)
        if row.check_enabled is not None:
            add(c.NUMBER_HEALTH_CHECK_ENABLED, values, 1 if row.check_enabled else 0)
        if row.last_checked is not None:
            add(c.NUMBER_HEALTH_LAST_CHECKED_TIMESTAMP_SECONDS, values, row.last_checked)
        if row.rental_price is not None:
            add(c.NUMBER_RENTAL_PRICE, values, row.rental_price)
        if row.incoming_rate is not None:
            add(c.NUMBER_INCOMING_RATE_PER_MINUTE, values, row.incoming_rate)
        if row.billing_unit is not None:
            add(c.NUMBER_BILLING_INCREMENT_SECONDS, values, row.billing_unit)


# --- tests ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def body() -> bytes:
    return varied_body()


def scrape_outcomes(
    body: bytes, per_number: bool
) -> list[tuple[SubaccountScrape, Inventory | None]]:
    """Four subaccounts: two up, one down with nothing, one down serving stale data."""
    inventory = parse_inventory(body, per_number)
    other = parse_inventory(varied_body(300, seed=11, odd_times=True), per_number)
    outcomes = []
    for sub, up, inv, last_success in (
        ("acme-prod", True, inventory, NOW - 5),
        ('we"ird\\sub', True, other, NOW - 1.5),
        ("acme-down", False, None, None),
        ("acme-stale", False, other, NOW - 600),
    ):
        rendered = render_inventory(inv, sub, per_number) if inv is not None else None
        outcomes.append((SubaccountScrape(sub, up, 0.125, rendered, last_success), inv))
    return outcomes


@pytest.mark.parametrize("per_number", [True, False], ids=["per-number", "aggregates-only"])
def test_exposition_is_byte_for_byte_generate_latest(body, per_number):
    outcomes = scrape_outcomes(body, per_number)
    ours = b"".join(plain_body(render_scrapes([sample for sample, _ in outcomes], NOW)))
    reference = reference_exposition(outcomes, NOW)
    assert ours == reference
    # The body really is varied: escaped values, unknowns and both kinds of times made it in.
    needles = [rb"Mo\"bi\\le\nx", "日本".encode(), b'number_type="unknown"', b"e+09"]
    needles.append('country="S\ufffdG\ufffd\ufffd[31m\ufffd\ufffd\ufffd\ufffd"'.encode())
    assert not any(byte in ours for byte in (b"\r", b"\x00", b"\x1b", b"\t"))
    if per_number:
        needles += [b" -0.0\n", b" 1e+20\n", b" 1e-07\n", rb'msisdn="+656000013\"\\\n"']
    for needle in needles:
        assert needle in ours


def test_exposition_parses_with_the_library_parser(body):
    outcomes = scrape_outcomes(body, True)
    text = b"".join(plain_body(render_scrapes([sample for sample, _ in outcomes], NOW))).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert set(families) == {family.name for family in c.POLL_FAMILIES}
    listed = int(parse_inventory(body).listed)
    info = [
        s
        for s in families["eightbyeight_number_info"].samples
        if s.labels["subaccount"] == "acme-prod"
    ]
    assert len(info) == listed == 4995  # 5000 records, 5 malformed or duplicate
    weird = [s for s in info if s.labels["msisdn"].endswith('"\\\n')]
    assert weird
    assert all(s.value == 1 for s in weird)


@pytest.mark.parametrize("per_number", [True, False], ids=["per-number", "aggregates-only"])
def test_gzip_response_inflates_to_the_plain_one(body, per_number):
    samples = [sample for sample, _ in scrape_outcomes(body, per_number)]
    head = b"# the exporter's own metrics come first\n"
    plain = b"".join(plain_body(render_scrapes(samples, NOW, head=head)))
    first = b"".join(gzip_body(render_scrapes(samples, NOW, head=head)))
    again = b"".join(gzip_body(render_scrapes(samples, NOW, head=head)))
    assert gzip.decompress(first) == plain  # checks the combined CRC-32 and the length too
    assert again == first
    # Once deflated, the text is kept only deflated: the plain form comes from inflating it.
    assert b"".join(plain_body(render_scrapes(samples, NOW, head=head))) == plain
    later = b"".join(gzip_body(render_scrapes(samples, NOW + 60)))
    assert gzip.decompress(later) == b"".join(plain_body(render_scrapes(samples, NOW + 60)))


def test_check_age_is_rendered_per_scrape_from_cached_pieces(body):
    samples = [sample for sample, _ in scrape_outcomes(body, True)]
    name = b"eightbyeight_health_check_age_seconds{"

    def ages(now: float) -> list[float]:
        text = gzip.decompress(b"".join(gzip_body(render_scrapes(samples, now))))
        return [
            float(line.rsplit(b" ", 1)[1]) for line in text.splitlines() if line.startswith(name)
        ]

    first, later = ages(NOW), ages(NOW + 90)
    assert first
    assert [round(b - a, 6) for a, b in zip(first, later, strict=True)] == [90.0] * len(first)


# --- the model's columnar fold against a plain per-record fold -----------------------------


def plain_fold(body: bytes) -> tuple[dict, list[tuple], int, int]:
    """What the model documents, one record at a time: groups, rows, listed, invalid."""
    doc = json.loads(body)
    groups: dict[tuple[str, str], dict] = {}
    rows, seen, invalid = [], set(), 0

    def label(value: object) -> str:
        return printable(value) if isinstance(value, str) and value else "unknown"

    def valid(record: object) -> bool:
        if not isinstance(record, dict) or not isinstance(record.get("msisdn"), str):
            return False
        text_fields = ("countryCode", "operationalStatus", "referenceId", "billingCurrency")
        if any(not isinstance(record.get(k), str | None) for k in (*text_fields, "numberType")):
            return False
        for key in ("rentalPrice", "incomingRate", "billingUnit"):
            value = record.get(key)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float)
            ):
                return False
        return True

    for record in doc["numbers"]:
        if not valid(record) or not record["msisdn"] or printable(record["msisdn"]) in seen:
            invalid += 1
            continue
        seen.add(printable(record["msisdn"]))
        key = (label(record.get("countryCode")), label(record.get("numberType")))
        status = label(record.get("operationalStatus")).lower()
        enabled = record.get("numberHealthCheckEnabled")
        health = record.get("numberHealth")
        if health is None or enabled is False:
            healthy, health_status, checked = None, "unknown", None
        else:
            healthy = health.get("isHealthy")
            health_status = label(health.get("status")).lower()
            checked = _reference_time(health.get("lastCheckedTime"))
        group = groups.setdefault(
            key,
            {
                "statuses": dict.fromkeys(NUMBER_STATUSES, 0),
                "healthy": 0,
                "unhealthy": 0,
                "health_unknown": 0,
                "check_disabled": 0,
                "health_statuses": {},
                "oldest_check": None,
                "monthly_rental_cost": {},
            },
        )
        group["statuses"][status] = group["statuses"].get(status, 0) + 1
        group["health_unknown" if healthy is None else "healthy" if healthy else "unhealthy"] += 1
        group["check_disabled"] += enabled is False
        by_health = group["health_statuses"]
        by_health[health_status] = by_health.get(health_status, 0) + 1
        if checked is not None and (
            group["oldest_check"] is None or checked < group["oldest_check"]
        ):
            group["oldest_check"] = checked
        currency = label(record.get("billingCurrency"))
        price = record.get("rentalPrice")
        if price is not None:
            costs = group["monthly_rental_cost"]
            costs[currency] = costs.get(currency, 0.0) + price
        as_float = [
            None if record.get(k) is None else float(record[k])
            for k in ("rentalPrice", "incomingRate", "billingUnit")
        ]
        rows.append(
            (
                printable(record["msisdn"]),
                *key,
                status,
                health_status,
                label(record.get("referenceId")),
                currency,
                healthy,
                enabled,
                checked,
                *as_float,
            )
        )
    return groups, rows, len(seen), invalid


def printable(text: str) -> str:
    """The text with control characters but the newline, and line/paragraph separators, as U+FFFD."""
    return "".join(
        "\ufffd" if unicodedata.category(char) in ("Cc", "Zl", "Zp") and char != "\n" else char
        for char in text
    )


def _reference_time(text: object) -> float | None:
    if not isinstance(text, str) or not text:
        return None
    for candidate in (text, text.upper()):
        try:
            parsed = datetime.fromisoformat(candidate)
        except ValueError:
            continue
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    return None


def test_columnar_fold_matches_a_plain_per_record_fold(body):
    inventory = parse_inventory(body)
    groups, rows, listed, invalid = plain_fold(body)
    assert (inventory.listed, inventory.invalid_records) == (listed, invalid)
    assert list(inventory.groups) == list(groups)  # same groups in the same order
    for key, expected in groups.items():
        got = inventory.groups[key]
        assert {field: getattr(got, field) for field in expected} == expected
    assert [tuple(row) for row in number_rows(inventory)] == rows
    # Sums are added in record order, exactly (not merely approximately) as the plain loop does.
    assert all(
        math.copysign(1, a) == math.copysign(1, b)
        for key in groups
        for a, b in zip(
            inventory.groups[key].monthly_rental_cost.values(),
            groups[key]["monthly_rental_cost"].values(),
            strict=True,
        )
    )


# --- Go float formatting of many values at once --------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.floats(min_value=1e9, max_value=1e10, exclude_max=True),
            st.integers(min_value=10**9, max_value=10**10 - 1).map(float),
            st.floats(allow_nan=False),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_vectorised_float_formatting_is_float_to_go_string(values):
    assert exposition._go_float_lines(values) == [f"{floatToGoString(v)}\n" for v in values]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=1_000_000_000_000, max_value=9_999_999_999_999), max_size=30))
def test_unix_times_in_milliseconds_format_like_float_to_go_string(millis):
    values = [m / 1000 for m in millis]
    assert exposition._go_float_lines(values) == [f"{floatToGoString(v)}\n" for v in values]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.integers(min_value=10**15, max_value=2**32 * 10**6 - 1),
            st.integers(min_value=10**9, max_value=2**32 - 1).map(lambda s: s * 10**6),
            st.sampled_from([b * 10**15 for b in range(1, 5)]),  # whole billions: "2e+09"
        ),
        min_size=1,
        max_size=40,
    )
)
def test_unix_times_in_microseconds_take_the_integer_path(micros):
    values = [m / 1e6 for m in micros]
    expected = [f"{floatToGoString(v)}\n" for v in values]
    assert exposition._micro_time_lines(values) == expected
    assert exposition._go_float_lines(values) == expected


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(min_value=10**15, max_value=2**32 * 10**6 - 1), min_size=1, max_size=20),
    st.floats(min_value=1e9, max_value=2.0**32, exclude_max=True),
)
def test_a_time_between_microseconds_is_left_to_repr(micros, odd):
    values = [m / 1e6 for m in micros] + [odd]
    if round(odd * 1e6) / 1e6 != odd:
        assert exposition._micro_time_lines(values) is None
    assert exposition._go_float_lines(values) == [f"{floatToGoString(v)}\n" for v in values]


def test_times_from_2_to_the_32_take_the_repr_path():
    # From 2**32 rounding time * 1e6 may miss the nearest microsecond (4360770368.633777), and
    # from 2**33 a float may be the nearest to two multiples of a microsecond, of which repr
    # picks the shorter: 8598366900.83529, whose microseconds rounded would print ...835291.
    values = [2.0**32, 4_360_770_368_633_777 / 1e6, 2.0**33, 2.0**33 + 0.5]
    values += [8_598_366_900_835_290 / 1e6, 9_999_999_999.999]
    assert exposition._go_float_lines(values) == [f"{floatToGoString(v)}\n" for v in values]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.floats(min_value=0.0, max_value=1e6),
            st.floats(min_value=1e6, max_value=1e17),
            st.integers(min_value=0, max_value=10**12).map(float),
            st.floats(),
            st.just(-0.0),
        ),
        max_size=40,
    )
)
def test_many_ages_format_like_float_to_go_string(values):
    assert exposition.go_strings(values) == [floatToGoString(v) for v in values]
