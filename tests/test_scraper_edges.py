"""The scraper at its edges: sub-second cache and stale windows, what a failure is counted and
logged as, the deadline a waiting scrape keeps, and parallel scrapes. Fake clock and client;
milliseconds each (see tests/test_scraper.py for the main behaviour)."""

from __future__ import annotations

import json
import logging
import threading
import time

import pytest

from exporter.common.errors import FetchError
from exporter.metrics.encoding import plain_body
from exporter.metrics.selfmetrics import SelfMetrics
from exporter.polling import scraper as scraper_module
from exporter.polling.exposition import render_scrapes
from exporter.polling.scraper import SubaccountScraper, least_reserve, scrape_all
from tests.harness import FakeClock, number, numbers_body, parse_samples, value, wait_until

SUB = "acme-prod"
BODY = json.dumps(numbers_body([number("+6531234567")])).encode()


class Client:
    def __init__(self, clock: FakeClock, answer: bytes | BaseException = BODY) -> None:
        self.clock = clock
        self.answer = answer
        self.takes = 0.0
        self.gate = threading.Event()
        self.gate.set()
        self.timeouts: list[float | None] = []

    def fetch_numbers(self, subaccount: str, timeout: float | None = None) -> bytes:
        self.timeouts.append(timeout)
        assert self.gate.wait(10)
        self.clock.advance(self.takes)
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer


def scraper_with(client, clock, metrics=None, **kwargs) -> SubaccountScraper:
    return SubaccountScraper(SUB, client, metrics or SelfMetrics(), clock=clock, **kwargs)


def metric(metrics: SelfMetrics, name: str, **labels: str) -> float | None:
    return metrics.sample_value(name, labels)


def test_a_half_second_cache_ttl_still_caches():
    clock = FakeClock()
    client = Client(clock)
    scraper = scraper_with(client, clock, cache_ttl=0.5)
    scraper.scrape(5)
    clock.advance(0.4)
    assert scraper.scrape(5).up
    assert len(client.timeouts) == 1
    clock.advance(0.2)
    scraper.scrape(5)
    assert len(client.timeouts) == 2


def test_a_half_second_stale_window_serves_stale_data():
    clock = FakeClock()
    client = Client(clock)
    scraper = scraper_with(client, clock, serve_stale_for=0.5)
    assert scraper.scrape(5).inventory is not None
    client.answer = FetchError("server_error", "HTTP 500", 500)
    clock.advance(0.4)
    stale = scraper.scrape(5)
    assert not stale.up
    assert stale.inventory is not None
    clock.advance(0.2)
    assert scraper.scrape(5).inventory is None


def test_api_request_count_and_duration_are_per_subaccount():
    clock = FakeClock()
    client = Client(clock)
    client.takes = 2.0
    metrics = SelfMetrics()
    scraper_with(client, clock, metrics).scrape(5)
    assert metric(metrics, "eightbyeight_api_requests_total", subaccount=SUB) == 1
    assert metric(metrics, "eightbyeight_api_request_duration_seconds_sum", subaccount=SUB) == 2.0
    assert metric(metrics, "eightbyeight_api_request_duration_seconds_count", subaccount=SUB) == 1


def failure_fields(caplog) -> dict[str, object]:
    [record] = [r for r in caplog.records if r.getMessage() == "reading virtual numbers failed"]
    return record.fields


def test_no_key_is_counted_and_logged_as_unauthorized(caplog):
    clock = FakeClock()
    metrics = SelfMetrics()
    with caplog.at_level(logging.WARNING, "exporter.polling.scraper"):
        assert not scraper_with(None, clock, metrics).scrape(5).up
    assert failure_fields(caplog) == {
        "subaccount": SUB,
        "status": None,
        "reason": "unauthorized",
        "detail": "no API key configured for this subaccount",
        "retries": 0,
    }
    assert (
        metric(
            metrics,
            "eightbyeight_api_request_failures_total",
            subaccount=SUB,
            reason="unauthorized",
        )
        == 1
    )


def test_an_unexpected_error_before_the_body_has_no_status(caplog):
    clock = FakeClock()
    metrics = SelfMetrics()
    client = Client(clock, RuntimeError("boom"))
    with caplog.at_level(logging.WARNING, "exporter.polling.scraper"):
        assert not scraper_with(client, clock, metrics).scrape(5).up
    assert failure_fields(caplog) == {
        "subaccount": SUB,
        "status": None,
        "reason": "invalid_response",
        "detail": "unexpected RuntimeError while reading",
        "retries": 0,
    }
    assert (
        metric(
            metrics,
            "eightbyeight_api_request_failures_total",
            subaccount=SUB,
            reason="invalid_response",
        )
        == 1
    )


def test_an_unexpected_error_after_the_body_arrived_has_status_200(caplog, monkeypatch):
    def broken_render(*args, **kwargs):
        raise KeyError("x")

    monkeypatch.setattr(scraper_module, "render_inventory", broken_render)
    clock = FakeClock()
    with caplog.at_level(logging.WARNING, "exporter.polling.scraper"):
        assert not scraper_with(Client(clock), clock).scrape(5).up
    fields = failure_fields(caplog)
    assert (fields["status"], fields["detail"]) == (200, "unexpected KeyError while reading")


@pytest.mark.parametrize("per_number", [True, False])
def test_per_number_series_follow_the_setting(per_number):
    clock = FakeClock()
    sample = scraper_with(Client(clock), clock, per_number=per_number).scrape(5)
    text = b"".join(plain_body(render_scrapes([sample], clock.time()))).decode()
    samples = parse_samples(text)
    assert value(samples, "eightbyeight_virtual_numbers_listed", subaccount=SUB) == 1
    shown = value(
        samples, "eightbyeight_number_health_check_enabled", subaccount=SUB, msisdn="+6531234567"
    )
    assert shown == (1 if per_number else None)


class SteppingClock(FakeClock):
    """Every read of the monotonic clock moves it on by one second."""

    def monotonic(self) -> float:
        value = super().monotonic()
        self.now += 1.0
        return value


def test_a_waiting_scrape_gives_up_at_its_own_deadline_less_the_time_already_spent():
    clock = SteppingClock()
    client = Client(clock)
    client.gate.clear()
    scraper = scraper_with(client, clock)
    leader = threading.Thread(target=scraper.scrape, args=(30,))
    leader.start()
    try:
        wait_until(lambda: client.timeouts, timeout=10, interval=0.005)
        # The waiter has used one (fake) second of its 1.05 before it starts to wait: it may
        # wait 0.05 s more, not 1 s and not 2.05 s.
        started = time.monotonic()
        waited = scraper.scrape(1.05)
        elapsed = time.monotonic() - started
    finally:
        client.gate.set()
        leader.join(10)
    assert not waited.up
    assert elapsed < 0.9


def test_scrape_all_scrapes_in_parallel_with_the_deadline():
    clock = FakeClock()
    both = threading.Barrier(2, timeout=5)

    class Meeting(Client):
        def fetch_numbers(self, subaccount, timeout=None):
            both.wait()  # only returns when the other scrape is in flight at the same time
            return super().fetch_numbers(subaccount, timeout)

    clients = [Meeting(clock), Meeting(clock)]
    scrapers = [
        SubaccountScraper(name, c, SelfMetrics(), clock=clock)
        for name, c in zip(["acme-a", "acme-b"], clients, strict=True)
    ]
    samples = scrape_all(scrapers, 7.5)
    assert [s.up for s in samples] == [True, True]
    assert [s.subaccount for s in samples] == ["acme-a", "acme-b"]
    # One deadline for both: 7.5 s less what the scrape keeps back to answer.
    assert [c.timeouts for c in clients] == [[pytest.approx(7.5 - least_reserve(7.5))]] * 2


def test_per_number_series_are_on_by_default():
    clock = FakeClock()
    sample = SubaccountScraper(SUB, Client(clock), SelfMetrics(), clock=clock).scrape(5)
    text = b"".join(plain_body(render_scrapes([sample], clock.time()))).decode()
    assert "eightbyeight_number_info{" in text
