"""Property-based tests: whatever the API sends, parsing ends in an Inventory or a ResponseError,
and whatever parses renders to an exposition that Prometheus' own parser accepts."""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from exporter.common.errors import REASONS, ResponseError
from exporter.config.values import SUBACCOUNT_PATTERN
from exporter.metrics.encoding import gzip_body, plain_body
from exporter.polling.exposition import SubaccountScrape, render_inventory, render_scrapes
from exporter.polling.model import Inventory, parse_inventory

# Hypothesis runs hundreds of generated bodies per test: seconds of CPU, so not in the inner loop.
pytestmark = pytest.mark.slow

# A 200 body can only fail as invalid_response or as the reason of an error envelope it holds.
BODY_REASONS = set(REASONS) - {"timeout", "connection_error"}

FIELDS = {
    "msisdn",
    "dateCreated",
    "dateUpdated",
    "countryCode",
    "operationalStatus",
    "referenceId",
    "rentalPrice",
    "incomingRate",
    "billingUnit",
    "uri",
    "numberHealthCheckEnabled",
    "billingCurrency",
    "numberType",
    "numberHealth",
}

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=25,
)
times = st.one_of(
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.sampled_from(
        [
            "2024-07-01T05:50:23.550Z",
            "2020-12-22T05:52:01.85Z",
            "2021-01-01T00:00:00Z",
            "2024-07-01t05:50:23z",
            "2024-07-01T05:50:23.123456789Z",
            "2024-13-45T99:99:99Z",
            "yesterday",
            "",
        ]
    ),
    st.text(max_size=30),
)
numbers_ = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False), st.integers(-(10**20), 10**20)
)
labels = st.one_of(
    st.sampled_from(["SG", "US", "Active", "Expiring", "Inactive", "Mobile", "USD", ""]),
    st.text(max_size=15),
)


def maybe(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly well-typed values, sometimes null, sometimes any JSON at all."""
    return st.one_of(valid, valid, valid, st.none(), json_values)


health = st.fixed_dictionaries(
    {},
    optional={
        "isHealthy": maybe(st.booleans()),
        "status": maybe(labels),
        "lastCheckedTime": maybe(times),
    },
)
record = st.fixed_dictionaries(
    {"msisdn": maybe(st.from_regex(r"\+[0-9]{6,15}", fullmatch=True) | st.text(max_size=12))},
    optional={
        "countryCode": maybe(labels),
        "operationalStatus": maybe(labels),
        "referenceId": maybe(labels),
        "rentalPrice": maybe(numbers_),
        "incomingRate": maybe(numbers_),
        "billingUnit": maybe(numbers_),
        "numberHealthCheckEnabled": maybe(st.booleans()),
        "billingCurrency": maybe(labels),
        "numberType": maybe(labels),
        "numberHealth": maybe(health),
        "dateCreated": maybe(times),
        "uri": maybe(st.text(max_size=20)),
    },
)
records = st.lists(st.one_of(record, record, record, json_values), max_size=12)
responses_ = st.fixed_dictionaries(
    {"numbers": st.one_of(records, records, records, json_values)},
    optional={
        "totalNumbers": maybe(st.integers(0, 10**6)),
        "lastUpdatedAt": maybe(times),
        "statusCode": maybe(st.sampled_from([0, 200, 401, 404, 429, 500, "1001"])),
        "statusMessage": maybe(st.text(max_size=20)),
        "code": maybe(st.integers()),
        "message": maybe(st.text(max_size=20)),
    },
)
subaccounts = st.from_regex(SUBACCOUNT_PATTERN, fullmatch=True)


def outcome(body: bytes) -> Inventory | ResponseError:
    try:
        return parse_inventory(body)
    except ResponseError as error:
        return error


def assert_parsed_or_clean_error(body: bytes) -> Inventory | ResponseError:
    result = outcome(body)
    if isinstance(result, ResponseError):
        assert result.reason in BODY_REASONS
        assert "\n" not in str(result)
    else:
        assert isinstance(result, Inventory)
        assert result.listed >= 0
        assert result.invalid_records >= 0
    return result


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_any_json_value_parses_or_fails_cleanly(doc):
    assert_parsed_or_clean_error(json.dumps(doc).encode())


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_parse_or_fail_cleanly(raw):
    assert_parsed_or_clean_error(raw)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=60), st.integers(0, 200))
def test_corrupted_good_responses_parse_or_fail_cleanly(noise, where):
    good = json.dumps({"totalNumbers": 1, "numbers": [{"msisdn": "+6531234567"}]}).encode()
    where = min(where, len(good))
    assert_parsed_or_clean_error(good[:where] + noise + good[where:])


@settings(max_examples=300, deadline=None)
@given(responses_)
def test_response_shaped_json_parses_or_fails_cleanly(doc):
    result = assert_parsed_or_clean_error(json.dumps(doc).encode())
    numbers = doc["numbers"]
    if isinstance(result, Inventory) and isinstance(numbers, list):
        # Every record is either read or counted as skipped.
        assert result.listed + result.invalid_records == len(numbers)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(responses_, subaccounts, st.booleans(), st.floats(0, 2e9))
def test_rendered_output_parses_with_prometheus_parser(doc, subaccount, per_number, now):
    try:
        inventory = parse_inventory(json.dumps(doc).encode(), per_number)
    except ResponseError:
        return
    rendered = render_inventory(inventory, subaccount, per_number)
    target = SubaccountScrape(subaccount, True, 0.25, rendered, 1.7e9)
    text = b"".join(plain_body(render_scrapes([target], now))).decode("utf-8")

    seen: dict[tuple[str, frozenset], float] = {}
    info_msisdns = set()
    for family in text_string_to_metric_families(text):
        assert family.name.startswith("eightbyeight_")
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in seen, f"duplicate series {key}"
            seen[key] = sample.value
            assert sample.labels["subaccount"] == subaccount
            if sample.name == "eightbyeight_number_info":
                info_msisdns.add(sample.labels["msisdn"])
    own = frozenset({("subaccount", subaccount)})
    assert seen[("eightbyeight_up", own)] == 1
    assert seen[("eightbyeight_virtual_numbers_listed", own)] == inventory.listed
    assert seen[("eightbyeight_invalid_records", own)] == inventory.invalid_records
    if per_number:
        assert len(info_msisdns) == inventory.listed
        assert info_msisdns == set(inventory.columns.msisdn)
    else:
        assert not info_msisdns

    # The gzip response carries exactly the same bytes.
    zipped = b"".join(gzip_body(render_scrapes([target], now)))
    assert gzip.decompress(zipped).decode("utf-8") == text


@settings(max_examples=100, deadline=None)
@given(subaccounts, st.booleans(), st.one_of(st.none(), st.floats(0, 2e9)))
def test_failed_scrape_renders_parseable_output(subaccount, up, last_success):
    text = b"".join(
        plain_body(render_scrapes([SubaccountScrape(subaccount, up, 0.1, None, last_success)], 0))
    )
    families = {f.name: f for f in text_string_to_metric_families(text.decode())}
    assert families["eightbyeight_up"].samples[0].value == (1.0 if up else 0.0)
    assert ("eightbyeight_last_success_timestamp_seconds" in families) == (last_success is not None)


def test_invalid_utf8_inside_a_record_is_one_invalid_record():
    body = b'{"numbers": [{"msisdn": "+6531234567", "countryCode": "S\xff"}, {"msisdn": "+2"}]}'
    inventory = parse_inventory(body)
    assert (inventory.listed, inventory.invalid_records) == (1, 1)


def test_invalid_utf8_in_the_envelope_is_invalid_response():
    body = b'{"totalNumbers": 0, "statusMessage": "\xff", "numbers": []}'
    with pytest.raises(ResponseError) as caught:
        parse_inventory(body)
    assert caught.value.reason == "invalid_response"
