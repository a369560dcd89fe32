"""Renderer edges: a label value with a newline, per-number series switched off at render time,
a health check stamped in the future."""

from __future__ import annotations

import json

import pytest
from prometheus_client.utils import floatToGoString

from exporter.metrics.encoding import plain_body
from exporter.polling.exposition import (
    RenderedInventory,
    SubaccountScrape,
    render_inventory,
    render_scrapes,
)
from exporter.polling.model import parse_inventory
from tests.harness import number, numbers_body, parse_samples, value

SUB = "acme-prod"
CHECKED = 1719813023.55  # 2024-07-01T05:50:23.550Z, the helper record's lastCheckedTime


def text_of(records, per_number: bool = True, now: float = CHECKED + 60) -> str:
    body = json.dumps(numbers_body(records)).encode()
    inventory = render_inventory(parse_inventory(body, True), SUB, per_number)
    scrape = SubaccountScrape(SUB, True, 0.0, inventory, now)
    return b"".join(plain_body(render_scrapes([scrape], now))).decode()


def test_a_newline_in_a_label_value_is_escaped():
    text = text_of([number(referenceId="line1\nline2")])
    assert 'reference_id="line1\\nline2"' in text


def test_render_time_per_number_off_drops_the_number_series():
    text = text_of([number()], per_number=False)
    assert "eightbyeight_number_info{" not in text
    assert "eightbyeight_virtual_numbers_listed{" in text


def test_a_health_check_in_the_future_is_zero_seconds_old():
    samples = parse_samples(text_of([number()], now=CHECKED - 30))
    assert (
        value(
            samples,
            "eightbyeight_health_check_age_seconds",
            subaccount=SUB,
            country="SG",
            number_type="Mobile",
        )
        == 0
    )
    samples = parse_samples(text_of([number()], now=CHECKED + 30))
    assert value(
        samples,
        "eightbyeight_health_check_age_seconds",
        subaccount=SUB,
        country="SG",
        number_type="Mobile",
    ) == pytest.approx(30, abs=0.01)


@pytest.mark.parametrize(
    "ages",
    [
        [0.0, 1e-7, 5e-5, 0.25, 1.0, 212.4, 86400.0, 999999.9999],  # each printed as its repr
        [0.0, 3.5, 1e6, 123456789.125, float("inf")],  # beyond: floatToGoString's exponents
        [-5.0, 7.0],  # a check in the future is 0 seconds old
    ],
)
def test_check_ages_print_as_float_to_go_string(ages):
    now = 1_764_170_000.5
    prefix = (
        'eightbyeight_health_check_age_seconds{country="SG",number_type="Mobile",subaccount="s"} '
    )
    inventory = RenderedInventory({}, tuple((prefix, now - age) for age in ages), 0)
    text = b"".join(plain_body(render_scrapes([SubaccountScrape("s", True, 0.1, inventory)], now)))
    expected = "".join(f"{prefix}{floatToGoString(max(0.0, now - (now - age)))}\n" for age in ages)
    assert expected.encode() in text
