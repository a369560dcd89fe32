"""The renderer's exposition, asserted on the text a scrape returns.

Also here: Renderer edges: a label value_edges with a newline, per-number series switched off at render time,
a health check stamped in the future."""

from __future__ import annotations

import json

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

from exporter.metrics.encoding import plain_body
from exporter.polling.exposition import (
    RenderedInventory,
    SubaccountScrape,
    render_inventory,
    render_scrapes,
)
from exporter.polling.model import parse_inventory
from tests.support.exporters import parse_samples
from tests.support.exporters import value as value_edges
from tests.support.fake_api import number, numbers_body

NOW = 1719820000.0  # 2024-07-01T07:46:40Z


def exposition(records, subaccount="acme-prod", per_number=True, up=True, **body):
    inv = parse_inventory(json.dumps(numbers_body(records, **body)).encode(), per_number)
    rendered = render_inventory(inv, subaccount, per_number)
    sample = SubaccountScrape(subaccount, up, 0.25, rendered if up else None, NOW - 5)
    return b"".join(plain_body(render_scrapes([sample], NOW))).decode()


def samples(text):
    """{(name, frozenset(labels)): value} from exposition text, via the library's own parser."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in out, f"duplicate series {key}"
            out[key] = s.value
    return out


def value(parsed, name, **labels):
    return parsed[(name, frozenset(labels.items()))]


SUB = {"subaccount": "acme-prod"}
SG = {"country": "SG", "number_type": "Mobile", **SUB}


def test_inventory_values_match_payload():
    text = exposition(
        [
            number("+6531230001"),
            number(
                "+6531230002",
                operationalStatus="Expiring",
                numberHealth={
                    "isHealthy": False,
                    "status": "Unreachable",
                    "lastCheckedTime": "2024-07-01T07:40:00Z",
                },
            ),
            number("+6531230003", numberHealthCheckEnabled=False, rentalPrice=7.25),
        ],
        total=4,
    )
    p = samples(text)
    assert value(p, "eightbyeight_up", **SUB) == 1
    assert value(p, "eightbyeight_scrape_duration_seconds", **SUB) == 0.25
    assert value(p, "eightbyeight_invalid_records", **SUB) == 0
    assert value(p, "eightbyeight_virtual_numbers", **SUB) == 4
    assert value(p, "eightbyeight_virtual_numbers_listed", **SUB) == 3
    assert value(p, "eightbyeight_last_updated_timestamp_seconds", **SUB) == 1719813023.55
    assert value(p, "eightbyeight_last_success_timestamp_seconds", **SUB) == NOW - 5
    by_status = "eightbyeight_virtual_numbers_by_status"
    assert value(p, by_status, operational_status="active", **SG) == 2
    assert value(p, by_status, operational_status="expiring", **SG) == 1
    assert value(p, by_status, operational_status="inactive", **SG) == 0
    assert value(p, by_status, operational_status="unhealthy", **SG) == 0
    assert value(p, "eightbyeight_virtual_numbers_expiring", **SG) == 1
    assert value(p, "eightbyeight_virtual_numbers_healthy", **SG) == 1
    assert value(p, "eightbyeight_virtual_numbers_unhealthy", **SG) == 1
    assert value(p, "eightbyeight_virtual_numbers_health_unknown", **SG) == 1
    assert value(p, "eightbyeight_virtual_numbers_health_check_disabled", **SG) == 1
    # Oldest enabled check: 2024-07-01T05:50:23.550Z
    assert value(p, "eightbyeight_health_check_age_seconds", **SG) == NOW - 1719813023.55
    assert value(p, "eightbyeight_monthly_rental_cost", currency="USD", **SG) == 17.25


def test_per_number_series():
    p = samples(
        exposition(
            [
                number("+6531230001"),
                number("+6531230002", numberHealth={"isHealthy": False, "status": "Down"}),
                number("+6531230003", numberHealth=None, billingCurrency="SGD"),
            ]
        )
    )
    info = {
        "msisdn": "+6531230002",
        "country": "SG",
        "number_type": "Mobile",
        "operational_status": "active",
        "health_status": "down",
        "reference_id": "range-1",
        "currency": "USD",
        **SUB,
    }
    assert value(p, "eightbyeight_number_info", **info) == 1
    m1, m2, m3 = ({"msisdn": f"+653123000{i}", **SUB} for i in (1, 2, 3))
    assert value(p, "eightbyeight_number_healthy", **m1) == 1
    assert value(p, "eightbyeight_number_healthy", **m2) == 0
    assert ("eightbyeight_number_healthy", frozenset(m3.items())) not in p  # unknown: absent
    assert value(p, "eightbyeight_number_health_check_enabled", **m3) == 1
    assert value(p, "eightbyeight_number_health_last_checked_timestamp_seconds", **m1) == (
        1719813023.55
    )
    assert value(p, "eightbyeight_number_rental_price", currency="SGD", **m3) == 5.0
    assert value(p, "eightbyeight_number_incoming_rate_per_minute", currency="USD", **m1) == 0.05
    assert value(p, "eightbyeight_number_billing_increment_seconds", **m1) == 60


def test_zero_fill_for_every_pair_seen():
    p = samples(exposition([number("+6531230001"), number("+14155550100", countryCode="US")]))
    us = {"country": "US", "number_type": "Mobile", **SUB}
    for status in ("active", "expiring", "inactive", "unhealthy"):
        assert (
            "eightbyeight_virtual_numbers_by_status",
            frozenset({**us, "operational_status": status}.items()),
        ) in p
    assert value(p, "eightbyeight_virtual_numbers_expiring", **us) == 0
    assert value(p, "eightbyeight_virtual_numbers_unhealthy", **us) == 0
    assert value(p, "eightbyeight_virtual_numbers_health_unknown", **us) == 0


def test_failed_scrape_has_health_series_only():
    p = samples(exposition([number()], up=False))
    names = {name for name, _ in p}
    assert names == {
        "eightbyeight_up",
        "eightbyeight_scrape_duration_seconds",
        "eightbyeight_invalid_records",
        "eightbyeight_last_success_timestamp_seconds",
    }
    assert value(p, "eightbyeight_up", **SUB) == 0


def test_no_per_number_series_when_switched_off():
    text = exposition([number()], per_number=False)
    assert "eightbyeight_number_" not in text
    assert "eightbyeight_virtual_numbers_healthy" in text


def test_hostile_label_values_are_escaped():
    odd = 'Mo"bi\\le\nx'
    p = samples(exposition([number('+65"1', numberType=odd, referenceId="ü-\\")]))
    assert value(p, "eightbyeight_virtual_numbers_healthy", country="SG", number_type=odd, **SUB)
    assert value(p, "eightbyeight_number_healthy", msisdn='+65"1', **SUB) == 1


def test_two_subaccounts_share_each_family_header():
    inv = parse_inventory(json.dumps(numbers_body([number()])).encode())
    a = SubaccountScrape("acme-a", True, 0.1, render_inventory(inv, "acme-a"), NOW)
    b = SubaccountScrape("acme-b", True, 0.1, render_inventory(inv, "acme-b"), NOW)
    text = b"".join(plain_body(render_scrapes([a, b], NOW))).decode()
    assert text.count("# TYPE eightbyeight_up gauge") == 1
    p = samples(text)
    assert value(p, "eightbyeight_up", subaccount="acme-a") == 1
    assert value(p, "eightbyeight_up", subaccount="acme-b") == 1


def test_check_age_follows_the_clock_without_rerendering():
    inv = parse_inventory(json.dumps(numbers_body([number()])).encode())
    rendered = render_inventory(inv, "acme-prod")
    sample = SubaccountScrape("acme-prod", True, 0.1, rendered, NOW)
    first = samples(b"".join(plain_body(render_scrapes([sample], NOW))).decode())
    later = samples(b"".join(plain_body(render_scrapes([sample], NOW + 60))).decode())
    name = "eightbyeight_health_check_age_seconds"
    assert value(later, name, **SG) - value(first, name, **SG) == 60


def test_numbers_by_health_status_per_group_even_without_per_number_series():
    records = [
        number("+6531230001"),
        number("+6531230002", numberHealth={"isHealthy": False, "status": "NoAnswer"}),
        number("+6531230003", numberHealth={"isHealthy": False, "status": "NoAnswer"}),
        number("+6531230004", numberHealthCheckEnabled=False),
        number("+6531230005", numberHealth=None),
    ]
    for per_number in (True, False):
        p = samples(exposition(records, per_number=per_number))
        name = "eightbyeight_virtual_numbers_by_health_status"
        assert value(p, name, health_status="healthy", **SG) == 1
        assert value(p, name, health_status="noanswer", **SG) == 2
        assert value(p, name, health_status="unknown", **SG) == 2  # disabled, or no health data
        assert sum(v for (n, _), v in p.items() if n == name) == 5


# --- Renderer edges: a label value_edges with a newline, per-number series switched off at render time, ----------

SUB_EDGES = "acme-prod"
CHECKED = 1719813023.55  # 2024-07-01T05:50:23.550Z, the helper record's lastCheckedTime


def text_of(records, per_number: bool = True, now: float = CHECKED + 60) -> str:
    body = json.dumps(numbers_body(records)).encode()
    inventory = render_inventory(parse_inventory(body, True), SUB_EDGES, per_number)
    scrape = SubaccountScrape(SUB_EDGES, True, 0.0, inventory, now)
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
        value_edges(
            samples,
            "eightbyeight_health_check_age_seconds",
            subaccount=SUB_EDGES,
            country="SG",
            number_type="Mobile",
        )
        == 0
    )
    samples = parse_samples(text_of([number()], now=CHECKED + 30))
    assert value_edges(
        samples,
        "eightbyeight_health_check_age_seconds",
        subaccount=SUB_EDGES,
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


def test_per_number_text_is_deflated_a_chunk_at_a_time_as_it_is_made(monkeypatch):
    from exporter.common.memory import MMAP_THRESHOLD
    from exporter.metrics import encoding
    from exporter.polling import exposition as module

    records = [
        number(f"+65{9000000 + i}", referenceId=f"ref-{i:06d}-" + "x" * 40)
        for i in range(3 * module.LINES_PER_CHUNK + 5)
    ]
    inventory = parse_inventory(json.dumps(numbers_body(records)).encode())
    made: list[int] = []  # sizes of the chunks, in the order they were made
    pieces: list[list[int]] = []  # for each piece, what had been made when it began
    real_lines, real_piece = module._line_chunks, encoding.Piece.of.__func__

    def counted_lines(*args, **kwargs):
        for chunk in real_lines(*args, **kwargs):
            made.append(len(chunk))
            yield chunk

    def noted_piece(cls, chunks, compressor=None):
        pieces.append(list(made))
        return real_piece(cls, chunks, compressor)

    monkeypatch.setattr(module, "_line_chunks", counted_lines)
    monkeypatch.setattr(encoding.Piece, "of", classmethod(noted_piece))
    rendered = render_inventory(inventory, "acme-prod")

    info = rendered.samples["eightbyeight_number_info"]
    assert info.deflated_alone()
    assert info._chunks is None  # kept only deflated from the start
    # No chunk was made before the piece that deflates it began: each family's first piece
    # starts before its chunks exist, so they are never all held as text at once.
    assert all(len(before) < len(made) for before in pieces)
    assert len(made) >= 7 * 4  # seven per-number families, four chunks each
    assert max(made) < MMAP_THRESHOLD  # each chunk's memory is reused by the next
    text = b"".join(
        plain_body(render_scrapes([SubaccountScrape("acme-prod", True, 0.1, rendered)], NOW))
    )
    assert text.count(b"eightbyeight_number_info{") == len(records)
