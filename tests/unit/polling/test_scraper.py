"""The scraper's single flight, cache, stale serving and deadline, in milliseconds.

A fake clock stands in for monotonic and wall time and a fake client for the API, so minutes of
scraping take no time and a fetch in progress is held open by an event, never by a sleep. The
same behaviour over real HTTP and the real clock is in tests/unit/polling/test_singleflight_cache.py and
tests/unit/polling/test_scrape_deadline.py.

Also here: The scraper at its edges: sub-second cache and stale windows, what a failure is counted and
logged as, the deadline a waiting scrape keeps, and parallel scrapes. Fake clock and client;
milliseconds each (see tests/unit/polling/test_scraper.py for the main behaviour)."""

from __future__ import annotations

import contextvars
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from exporter.app import build_app
from exporter.common.errors import FetchError
from exporter.config.settings import Settings, SubaccountConfig
from exporter.config.values import Secret
from exporter.metrics.encoding import plain_body
from exporter.metrics.selfmetrics import SelfMetrics
from exporter.polling import scraper as scraper_module
from exporter.polling.exposition import render_scrapes
from exporter.polling.scraper import (
    CPU_WORK,
    FetchPool,
    Scrapers,
    ScraperStatus,
    SubaccountScraper,
    least_reserve,
    scrape_all,
)
from tests.support.exporters import FakeClock, parse_samples, value
from tests.support.fake_api import number, numbers_body
from tests.support.processes import wait_until

SUB = "acme-prod"
BODY = json.dumps(numbers_body([number("+6531234567"), number("+6531234568")])).encode()


class FakeClient:
    """Answers `fetch_numbers` with `answer` (a body, or a FetchError to raise).

    While `gate` is closed every fetch waits for it, so a test can hold a fetch in flight.
    """

    def __init__(self, clock: FakeClock, answer: bytes | FetchError = BODY) -> None:
        self.clock = clock
        self.answer = answer
        self.takes = 0.0  # fake seconds each fetch lasts
        self.gate = threading.Event()
        self.gate.set()
        self.calls: list[tuple[str, float | None]] = []
        self._lock = threading.Lock()

    def fetch_numbers(self, subaccount: str, timeout: float | None = None) -> bytes:
        with self._lock:
            self.calls.append((subaccount, timeout))
        assert self.gate.wait(10), "the test never opened the gate"
        self.clock.advance(self.takes)
        if isinstance(self.answer, FetchError):
            raise self.answer
        return self.answer

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.calls)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def client(clock: FakeClock) -> FakeClient:
    return FakeClient(clock)


@pytest.fixture
def metrics() -> SelfMetrics:
    return SelfMetrics()


def scraper_with(
    client: FakeClient | None, clock: FakeClock, metrics: SelfMetrics, **options: float
) -> SubaccountScraper:
    return SubaccountScraper(SUB, client, metrics, clock=clock, **options)


def in_threads(
    count: int, work: Callable[[], object], results: list | None = None
) -> tuple[list[threading.Thread], list]:
    """Start `count` threads running `work`; each appends its result to `results`."""
    results = [] if results is None else results
    lock = threading.Lock()

    def run() -> None:
        result = work()
        with lock:
            results.append(result)

    threads = [threading.Thread(target=run, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    return threads, results


def join_all(threads: list[threading.Thread]) -> None:
    for thread in threads:
        thread.join(timeout=10)
        assert not thread.is_alive(), "a scrape did not end"


def start_leader_and_followers(
    scraper: SubaccountScraper, client: FakeClient, clock: FakeClock, followers: int, timeout=10.0
) -> tuple[list[threading.Thread], list]:
    """A leader whose fetch is held open, and followers that have all joined its flight."""
    client.gate.clear()
    leader, results = in_threads(1, lambda: scraper.scrape(timeout))
    wait_until(lambda: client.count == 1, timeout=5, interval=0.001, what="the leader's fetch")
    threads, _ = in_threads(followers, lambda: scraper.scrape(timeout), results)
    # A follower reads the clock twice before it waits on the flight (start, time left).
    wait_until(
        lambda: all(clock.reads_by(t) >= 2 for t in threads),
        timeout=5,
        interval=0.001,
        what="followers waiting on the flight",
    )
    return leader + threads, results


def test_concurrent_scrapes_share_one_fetch(client, clock, metrics):
    scraper = scraper_with(client, clock, metrics)
    threads, results = start_leader_and_followers(scraper, client, clock, followers=20)
    client.gate.set()
    join_all(threads)
    assert client.count == 1
    assert len(results) == 21
    assert all(sample.up and sample.inventory is not None for sample in results)


def test_a_shared_fetch_shares_its_failure(client, clock, metrics):
    client.answer = FetchError("server_error", "HTTP 503", 503)
    scraper = scraper_with(client, clock, metrics)
    threads, results = start_leader_and_followers(scraper, client, clock, followers=10)
    client.gate.set()
    join_all(threads)
    assert client.count == 1
    assert [sample.up for sample in results] == [False] * 11
    failures = parse_samples(metrics.exposition().decode())
    assert (
        value(
            failures,
            "eightbyeight_api_request_failures_total",
            subaccount=SUB,
            reason="server_error",
        )
        == 1
    )


def test_after_a_flight_ends_the_next_scrape_fetches_again(client, clock, metrics):
    scraper = scraper_with(client, clock, metrics)
    for expected in (1, 2, 3):
        assert scraper.scrape(10).up
        assert client.count == expected


def test_separate_subaccounts_do_not_share_a_flight(client, clock, metrics):
    scrapers = [SubaccountScraper(sub, client, metrics, clock=clock) for sub in ("acme-dev", SUB)]
    samples = scrape_all(scrapers, 10)
    assert [s.up for s in samples] == [True, True]
    assert sorted(sub for sub, _ in client.calls) == ["acme-dev", SUB]


def test_the_fetch_gets_the_scrape_timeout(client, clock, metrics):
    scraper_with(client, clock, metrics).scrape(2.5)
    assert client.calls == [(SUB, 2.5)]


def test_a_follower_leaves_at_its_own_deadline(client, clock, metrics):
    scraper = scraper_with(client, clock, metrics)
    client.gate.clear()
    leader, _ = in_threads(1, lambda: scraper.scrape(10))
    wait_until(lambda: client.count == 1, timeout=5, interval=0.001, what="the leader's fetch")
    follower = scraper.scrape(0.01)  # waits 10 ms of real time on the flight, then gives up
    assert not follower.up
    assert follower.inventory is None
    assert client.count == 1  # it did not fetch on its own either
    client.gate.set()
    join_all(leader)


def test_a_follower_whose_deadline_passed_gets_the_stale_data(client, clock, metrics):
    scraper = scraper_with(client, clock, metrics, serve_stale_for=300)
    assert scraper.scrape(10).up
    client.gate.clear()
    leader, _ = in_threads(1, lambda: scraper.scrape(10))
    wait_until(lambda: client.count == 2, timeout=5, interval=0.001, what="the leader's fetch")
    follower = scraper.scrape(0.0)
    assert not follower.up
    assert follower.inventory is not None
    client.gate.set()
    join_all(leader)


def test_the_scrape_duration_is_measured_on_the_clock(client, clock, metrics):
    client.takes = 2.5
    sample = scraper_with(client, clock, metrics).scrape(10)
    assert sample.duration == 2.5


def test_within_the_ttl_the_cache_answers(client, clock, metrics):
    scraper = scraper_with(client, clock, metrics, cache_ttl=60)
    first = scraper.scrape(10)
    clock.advance(59.9)
    second = scraper.scrape(10)
    assert client.count == 1
    assert first.up
    assert second.up
    assert second.inventory is first.inventory
    clock.advance(0.1)  # exactly the TTL: too old
    assert scraper.scrape(10).up
    assert client.count == 2


def test_ha_pair_every_15s_with_a_60s_ttl_makes_one_request_a_minute(client, clock, metrics):
    """Two Prometheus servers, 7 s apart, each scraping every 15 s, for ten minutes."""
    scraper = scraper_with(client, clock, metrics, cache_ttl=60)
    start = clock.now
    times = sorted([start + 15 * i for i in range(40)] + [start + 7 + 15 * i for i in range(40)])
    for at in times:
        clock.now = at
        assert scraper.scrape(10).up
    assert client.count == 10


def test_failures_are_not_cached(client, clock, metrics):
    client.answer = FetchError("server_error", "HTTP 500", 500)
    scraper = scraper_with(client, clock, metrics, cache_ttl=60)
    for step in range(1, 4):
        clock.advance(1)
        assert not scraper.scrape(10).up
        assert client.count == step


def test_stale_data_is_served_with_up_0_for_the_configured_time(client, clock, metrics):
    scraper = scraper_with(client, clock, metrics, serve_stale_for=300)
    good = scraper.scrape(10)
    success_time = clock.time()
    assert good.last_success == success_time
    client.answer = FetchError("server_error", "HTTP 503: maintenance", 503)

    clock.advance(299.9)
    stale = scraper.scrape(10)
    assert not stale.up
    assert stale.inventory is good.inventory
    assert stale.last_success == success_time

    clock.advance(0.1)  # 300 s after the last success: no longer served
    expired = scraper.scrape(10)
    assert not expired.up
    assert expired.inventory is None
    assert expired.last_success == success_time

    client.answer = BODY
    clock.advance(1)
    back = scraper.scrape(10)
    assert back.up
    assert back.last_success == clock.time()


def test_without_stale_serving_a_failure_hides_the_inventory(client, clock, metrics):
    scraper = scraper_with(client, clock, metrics)
    assert scraper.scrape(10).inventory is not None
    client.answer = FetchError("server_error", "HTTP 500", 500)
    failed = scraper.scrape(10)
    assert not failed.up
    assert failed.inventory is None
    assert failed.last_success is not None


def test_last_success_is_absent_before_the_first_success(client, clock, metrics):
    client.answer = FetchError("unauthorized", "HTTP 401", 401)
    sample = scraper_with(client, clock, metrics).scrape(10)
    assert not sample.up
    assert sample.last_success is None


def test_cache_and_stale_serving_together(client, clock, metrics):
    scraper = scraper_with(client, clock, metrics, cache_ttl=60, serve_stale_for=600)
    assert scraper.scrape(10).up
    client.answer = FetchError("server_error", "HTTP 500", 500)
    clock.advance(30)
    assert scraper.scrape(10).up  # within the TTL: no request, no failure seen
    assert client.count == 1
    clock.advance(40)
    sample = scraper.scrape(10)
    assert client.count == 2
    assert not sample.up
    assert sample.inventory is not None


def test_without_a_key_the_scrape_fails_as_unauthorized(clock, metrics):
    sample = scraper_with(None, clock, metrics).scrape(10)
    assert not sample.up
    samples = parse_samples(metrics.exposition().decode())
    assert (
        value(
            samples,
            "eightbyeight_api_request_failures_total",
            subaccount=SUB,
            reason="unauthorized",
        )
        == 1
    )


def failure_fields(caplog: pytest.LogCaptureFixture) -> dict[str, object]:
    [record] = [r for r in caplog.records if r.getMessage() == "reading virtual numbers failed"]
    return record.fields


@pytest.mark.parametrize(
    ("body", "reason", "detail"),
    [
        (b"<html>oops</html>", "invalid_response", "HTML instead of JSON"),
        (b'{"statusCode": 401, "statusMessage": "bad key"}', "unauthorized", "bad key"),
    ],
)
def test_a_body_that_fails_to_parse_is_logged_with_status_200(
    client, clock, metrics, caplog, body, reason, detail
):
    client.answer = body
    with caplog.at_level(logging.WARNING, logger="exporter.polling.scraper"):
        assert not scraper_with(client, clock, metrics).scrape(10).up
    fields = failure_fields(caplog)
    assert fields["status"] == 200
    assert fields["reason"] == reason
    assert detail in str(fields["detail"])


def test_a_fetch_that_got_no_answer_is_logged_without_a_status(client, clock, metrics, caplog):
    client.answer = FetchError("timeout", "no answer before the deadline")
    with caplog.at_level(logging.WARNING, logger="exporter.polling.scraper"):
        scraper_with(client, clock, metrics).scrape(10)
    # None: logfmt writes it as none, JSON as null (tests/unit/cli/test_operator_details.py).
    assert failure_fields(caplog)["status"] is None


def test_probed_scrapers_are_kept_in_a_bounded_lru(client, clock, metrics):
    built: list[str] = []

    def new_scraper(subaccount: str) -> SubaccountScraper:
        built.append(subaccount)
        return SubaccountScraper(subaccount, client, metrics, clock=clock)

    scrapers = Scrapers([SUB], new_scraper, max_probed=2)
    assert scrapers.for_probe(SUB) is scrapers.configured[0]
    first = scrapers.for_probe("probe-1")
    scrapers.for_probe("probe-2")
    assert scrapers.for_probe("probe-1") is first  # kept, and now the most recent
    scrapers.for_probe("probe-3")  # evicts probe-2
    assert scrapers.probed_count == 2
    assert scrapers.for_probe("probe-1") is first
    scrapers.for_probe("probe-2")
    assert built == [SUB, "probe-1", "probe-2", "probe-3", "probe-2"]


def test_the_app_builds_one_scraper_per_subaccount_with_its_own_client(clock):
    settings = Settings(
        subaccounts=(
            SubaccountConfig(SUB, Secret("k1"), "http://127.0.0.1:1"),
            SubaccountConfig("acme-dev", None, "http://127.0.0.1:2"),
        ),
        api_key=Secret("default"),
        cache_ttl=60,
    )
    asked: list[str] = []

    def new_client(subaccount: str) -> FakeClient | None:
        asked.append(subaccount)
        return FakeClient(clock) if subaccount == SUB else None

    app = build_app(settings, new_client, clock)
    assert [s.subaccount for s in app.scrapers.configured] == [SUB, "acme-dev"]
    assert asked == [SUB, "acme-dev"]
    configured = app.scrapers.configured[0]
    assert configured.cache_ttl == 60
    assert configured.clock is clock
    app.scrapers.for_probe("acme-ops")
    assert asked == [SUB, "acme-dev", "acme-ops"]


# --- after_fetch (e.g. --collector.webhooks) -------------------------------------------------


def test_after_fetch_runs_once_per_flight_with_what_is_left_of_the_deadline(client, clock, metrics):
    calls: list[tuple[str, float]] = []
    client.takes = 0.75
    scraper = scraper_with(client, clock, metrics)
    scraper.after_fetch = lambda subaccount, left: calls.append((subaccount, left))
    threads, results = start_leader_and_followers(scraper, client, clock, followers=5, timeout=2.0)
    client.gate.set()
    join_all(threads)
    assert [sample.up for sample in results] == [True] * 6
    assert calls == [(SUB, 1.25)], "one call per upstream fetch, with the time left"


def test_after_fetch_is_skipped_after_a_failed_fetch_or_a_spent_deadline(client, clock, metrics):
    calls: list[float] = []
    scraper = SubaccountScraper(
        SUB, client, metrics, clock=clock, after_fetch=lambda _sub, left: calls.append(left)
    )
    client.answer = FetchError("server_error", "HTTP 503", 503)
    assert not scraper.scrape(2.0).up
    client.answer = BODY
    client.takes = 2.0
    assert scraper.scrape(2.0).up
    assert calls == []


def test_a_failing_after_fetch_never_fails_the_scrape(client, clock, metrics, caplog):
    def broken(subaccount: str, left: float) -> None:
        raise RuntimeError("boom")

    scraper = SubaccountScraper(SUB, client, metrics, clock=clock, after_fetch=broken)
    with caplog.at_level(logging.WARNING, logger="exporter.polling.scraper"):
        assert scraper.scrape(2.0).up
    assert "after-fetch collector failed" in caplog.text


@pytest.fixture
def pool() -> Iterator[FetchPool]:
    made = FetchPool(2, name="test-fetch")
    yield made
    made.close(timeout=5)


def test_parallel_scrapes_run_on_daemon_threads_so_a_hanging_fetch_never_holds_up_exit(pool):
    release = threading.Event()
    seen: list[bool] = []

    def hang() -> str:
        seen.append(threading.current_thread().daemon)
        release.wait(5)
        return "late"

    futures = [pool.submit(hang), pool.submit(lambda: "quick")]
    assert futures[1].result(timeout=5) == "quick"
    assert not futures[0].done()
    assert seen == [True]
    release.set()
    assert futures[0].result(timeout=5) == "late"


def test_a_call_cancelled_before_a_worker_reaches_it_never_runs_and_errors_reach_the_future():
    one = FetchPool(1, name="test-fetch")
    release = threading.Event()
    ran: list[str] = []

    def first() -> None:
        release.wait(5)
        raise ValueError("bad answer")

    try:
        futures = [one.submit(first), one.submit(lambda: ran.append("second"))]
        assert futures[1].cancel()
        release.set()
        with pytest.raises(ValueError, match="bad answer"):
            futures[0].result(timeout=5)
        assert one.submit(lambda: "after").result(timeout=5) == "after"
    finally:
        one.close(timeout=5)
    assert ran == []


def test_the_pool_has_its_named_workers_and_no_more_however_many_calls_wait(pool):
    """The thread count is bounded by configuration, not by subaccounts or scrapes at once."""
    release = threading.Event()
    futures = [pool.submit(lambda: release.wait(5)) for _ in range(50)]
    names = sorted(t.name for t in threading.enumerate() if t.name.startswith("test-fetch-"))
    assert names == ["test-fetch-0", "test-fetch-1"]
    release.set()
    assert all(f.result(timeout=5) for f in futures)


def test_a_closed_pool_stops_its_workers_and_takes_no_more_calls():
    made = FetchPool(3, name="closing-fetch")
    assert made.submit(lambda: 1).result(timeout=5) == 1
    made.close(timeout=5)
    assert not [t for t in threading.enumerate() if t.name.startswith("closing-fetch-")]
    with pytest.raises(RuntimeError, match="closed"):
        made.submit(lambda: 2)


def test_a_body_waits_its_turn_to_be_read_but_never_past_the_deadline(caplog):
    """Bodies are parsed one at a time; one that cannot get its turn before the deadline is a
    `timeout`, with its fetch counted as made."""
    metrics = SelfMetrics()
    clock = FakeClock()
    scraper = SubaccountScraper(SUB, FakeClient(clock), metrics, clock=clock)
    with caplog.at_level(logging.WARNING, logger="exporter.polling.scraper"), CPU_WORK:
        sample = scraper.scrape(0.2)  # another body is being read, and stays so
    assert not sample.up
    fields = failure_fields(caplog)
    assert (fields["status"], fields["detail"]) == (200, "no time left to read the body")
    exposition = parse_samples(metrics.exposition().decode())
    assert value(exposition, "eightbyeight_api_requests_total", subaccount=SUB) == 1
    reason = {"subaccount": SUB, "reason": "timeout"}
    assert value(exposition, "eightbyeight_api_request_failures_total", **reason) == 1
    assert scraper.scrape(5).up  # its turn comes once the other is done


# --- The scraper at its edges: sub-second cache and stale windows, what a failure is counted and ----------

BODY_EDGES = json.dumps(numbers_body([number("+6531234567")])).encode()


class Client:
    def __init__(self, clock: FakeClock, answer: bytes | BaseException = BODY_EDGES) -> None:
        self.clock = clock
        self.answer = answer
        self.takes = 0.0
        self.gate = threading.Event()
        self.gate.set()
        self.hold = 10.0  # longest a closed gate holds a fetch
        self.timeouts: list[float | None] = []

    def fetch_numbers(self, subaccount: str, timeout: float | None = None) -> bytes:
        self.timeouts.append(timeout)
        assert self.gate.wait(self.hold)
        self.clock.advance(self.takes)
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer


def scraper_with_edges(client, clock, metrics=None, **kwargs) -> SubaccountScraper:
    return SubaccountScraper(SUB, client, metrics or SelfMetrics(), clock=clock, **kwargs)


def metric(metrics: SelfMetrics, name: str, **labels: str) -> float | None:
    return metrics.sample_value(name, labels)


def test_a_half_second_cache_ttl_still_caches():
    clock = FakeClock()
    client = Client(clock)
    scraper = scraper_with_edges(client, clock, cache_ttl=0.5)
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
    scraper = scraper_with_edges(client, clock, serve_stale_for=0.5)
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
    scraper_with_edges(client, clock, metrics).scrape(5)
    assert metric(metrics, "eightbyeight_api_requests_total", subaccount=SUB) == 1
    assert metric(metrics, "eightbyeight_api_request_duration_seconds_sum", subaccount=SUB) == 2.0
    assert metric(metrics, "eightbyeight_api_request_duration_seconds_count", subaccount=SUB) == 1


def test_no_key_is_counted_and_logged_as_unauthorized(caplog):
    clock = FakeClock()
    metrics = SelfMetrics()
    with caplog.at_level(logging.WARNING, "exporter.polling.scraper"):
        assert not scraper_with_edges(None, clock, metrics).scrape(5).up
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
        assert not scraper_with_edges(client, clock, metrics).scrape(5).up
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
        assert not scraper_with_edges(Client(clock), clock).scrape(5).up
    fields = failure_fields(caplog)
    assert (fields["status"], fields["detail"]) == (200, "unexpected KeyError while reading")


@pytest.mark.parametrize("per_number", [True, False])
def test_per_number_series_follow_the_setting(per_number):
    clock = FakeClock()
    sample = scraper_with_edges(Client(clock), clock, per_number=per_number).scrape(5)
    text = b"".join(plain_body(render_scrapes([sample], clock.time()))).decode()
    samples = parse_samples(text)
    assert value(samples, "eightbyeight_virtual_numbers_listed", subaccount=SUB) == 1
    shown = value(
        samples,
        "eightbyeight_number_health_check_enabled",
        subaccount=SUB,
        msisdn="+6531234567",
    )
    assert shown == (1 if per_number else None)


class SteppingClock(FakeClock):
    """Every read of the monotonic clock moves it on by `step` seconds."""

    def __init__(self, step: float) -> None:
        super().__init__()
        self.step = step

    def monotonic(self) -> float:
        value = super().monotonic()
        self.now += self.step
        return value


def test_a_waiting_scrape_gives_up_at_its_own_deadline_less_the_time_already_spent():
    clock = SteppingClock(step=60.0)
    client = Client(clock)
    client.gate.clear()
    client.hold = 120.0
    scraper = scraper_with_edges(client, clock)
    leader = threading.Thread(target=scraper.scrape, args=(3600,))
    leader.start()
    # Ends the leader's fetch after a minute: a waiter that waited for it, or for more than
    # what is left of its budget, takes that long; one that kept to its deadline, no time.
    release = threading.Timer(60.0, client.gate.set)
    try:
        wait_until(lambda: client.timeouts, timeout=10, interval=0.005)
        release.start()
        # Each read of the clock takes a (fake) minute: the waiter has used one when its
        # scrape starts and another when it starts to wait, so 0.05 s is left of its 120.05 s;
        # not the 60.05 s left had it not counted the second minute, nor the leader's time.
        started = time.monotonic()
        waited = scraper.scrape(120.05)
        elapsed = time.monotonic() - started
    finally:
        release.cancel()
        client.gate.set()
        leader.join(10)
    assert elapsed < 30.0
    assert not waited.up


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


# --- What the status page and the answer's reserve are built from -----------------------------


def test_the_answer_reserve_is_a_tenth_of_a_short_scrape_and_100_ms_at_most():
    assert least_reserve(0.5) == pytest.approx(0.05)
    assert least_reserve(1.0) == pytest.approx(0.1)
    assert least_reserve(30.0) == pytest.approx(0.1)


def test_a_scrape_never_started_is_a_timeout_on_the_status_page_too(client, clock, metrics):
    scraper = scraper_with(client, clock, metrics)
    sample = scraper.not_started(clock.monotonic())
    assert not sample.up
    assert client.count == 0
    status = scraper.status
    assert (status.failure_reason, status.failure_detail, status.failure_time) == (
        "timeout",
        "not started before the scrape deadline",
        clock.time(),
    )
    samples = parse_samples(metrics.exposition().decode())
    assert (
        value(samples, "eightbyeight_api_request_failures_total", subaccount=SUB, reason="timeout")
        == 1
    )


def pool_threads(prefix: str) -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(prefix)]


def test_an_idle_worker_ends_and_the_next_call_starts_another():
    made = FetchPool(1, name="idle-fetch", idle_seconds=0.05)
    try:
        assert made.submit(lambda: 1).result(timeout=5) == 1
        wait_until(
            lambda: not pool_threads("idle-fetch-"),
            timeout=5,
            interval=0.01,
            what="the idle worker to end",
        )
        assert made.submit(lambda: 2).result(timeout=5) == 2
    finally:
        made.close(timeout=5)


def test_a_fetch_counted_as_a_timeout_at_the_deadline_is_not_counted_again_when_it_fails(
    client, clock, metrics
):
    client.answer = FetchError("server_error", "HTTP 503", 503)
    scraper = scraper_with(client, clock, metrics)
    client.gate.clear()
    leader, _ = in_threads(1, lambda: scraper.scrape(10))
    wait_until(lambda: client.count == 1, timeout=5, interval=0.001, what="the leader's fetch")
    deadline = clock.monotonic() + 10
    assert not scraper.missed(clock.monotonic(), deadline).up
    client.gate.set()
    join_all(leader)
    samples = parse_samples(metrics.exposition().decode())
    failures = "eightbyeight_api_request_failures_total"
    assert value(samples, failures, subaccount=SUB, reason="timeout") == 1
    assert value(samples, failures, subaccount=SUB, reason="server_error") is None


def test_the_status_page_sees_each_scrape_its_last_success_and_its_last_failure(clock, metrics):
    unhealthy = number(
        "+6531234569",
        numberHealth={"isHealthy": False, "status": "Unhealthy", "lastCheckedTime": None},
    )
    body = json.dumps(numbers_body([number("+6531234567"), unhealthy])).encode()
    client = FakeClient(clock, body)
    client.takes = 1.5
    scraper = scraper_with(client, clock, metrics, serve_stale_for=300)
    assert scraper.status == ScraperStatus()
    good = scraper.scrape(10)
    success_time = clock.time()
    assert scraper.status == ScraperStatus(
        up=True,
        stale=False,
        last_scrape=success_time,
        last_success=success_time,
        numbers=2,
        unhealthy=1,
        expiring=0,
    )
    assert good.inventory is not None

    client.answer = FetchError("server_error", "HTTP 503: maintenance", 503)
    clock.advance(10)
    assert scraper.scrape(10).inventory is good.inventory  # stale
    failure_time = clock.time()
    assert scraper.status == ScraperStatus(
        up=False,
        stale=True,
        last_scrape=failure_time,
        last_success=success_time,
        numbers=2,
        unhealthy=1,
        expiring=0,
        failure_reason="server_error",
        failure_detail="HTTP 503: maintenance",
        failure_time=failure_time,
    )


def test_after_fetch_runs_with_under_a_second_left_and_its_failure_is_logged_by_type(
    client, clock, metrics, caplog
):
    calls: list[float] = []

    def broken(subaccount: str, left: float) -> None:
        calls.append(left)
        raise RuntimeError("boom")

    client.takes = 1.5
    scraper = SubaccountScraper(SUB, client, metrics, clock=clock, after_fetch=broken)
    with caplog.at_level(logging.WARNING, logger="exporter.polling.scraper"):
        assert scraper.scrape(2.0).up
    assert calls == [0.5]
    [record] = [r for r in caplog.records if r.getMessage() == "after-fetch collector failed"]
    assert record.fields == {"err": "RuntimeError"}


def test_with_under_10_ms_left_no_fetch_starts_and_the_scrape_is_a_timeout(metrics):
    clock = FakeClock(start=0.0)  # 0.01 - 0.0 is exactly 10 ms in floating point
    client = FakeClient(clock)
    scraper = scraper_with(client, clock, metrics)
    assert scraper.scrape(0.01).up  # exactly 10 ms left: still fetched
    assert client.calls == [(SUB, 0.01)]
    clock.advance(1000)
    assert not scraper.scrape(0.005).up
    assert client.count == 1
    status = scraper.status
    assert (status.failure_reason, status.failure_detail) == (
        "timeout",
        "no time left before the scrape deadline",
    )
    samples = parse_samples(metrics.exposition().decode())
    failures = "eightbyeight_api_request_failures_total"
    assert value(samples, failures, subaccount=SUB, reason="timeout") == 1


# --- A reload's scrapers, the pool's workers and the deadline's log line ----------------------


def test_a_reload_keeps_the_scrapers_it_is_handed_and_the_most_recent_probed_ones(
    client, clock, metrics
):
    def made(subaccount: str) -> SubaccountScraper:
        return SubaccountScraper(subaccount, client, metrics, clock=clock)

    before = {sub: made(sub) for sub in ("acme-a", "probe-1", "probe-2", "probe-3")}
    kept = list(before.values())  # the probed ones from least to most recently used
    built: list[str] = []

    def new_scraper(subaccount: str) -> SubaccountScraper:
        built.append(subaccount)
        return made(subaccount)

    scrapers = Scrapers(["acme-a", "acme-b"], new_scraper, max_probed=2, kept=kept)
    assert scrapers.configured[0] is before["acme-a"]
    assert built == ["acme-b"]
    assert [s.subaccount for s in scrapers.every()] == ["acme-a", "acme-b", "probe-2", "probe-3"]
    assert scrapers.for_probe("probe-3") is before["probe-3"]
    fewer = Scrapers(["acme-a"], new_scraper, max_probed=1, kept=kept)
    assert [s.subaccount for s in fewer.every()] == ["acme-a", "probe-3"]
    none = Scrapers(["acme-a"], new_scraper, max_probed=0, kept=kept)
    assert [s.subaccount for s in none.every()] == ["acme-a"]


def test_scrape_all_keeps_back_the_reserve_it_is_given():
    clock = FakeClock()
    client = Client(clock)
    scraper = SubaccountScraper("acme-a", client, SelfMetrics(), clock=clock)
    assert scrape_all([scraper], 7.5, reserve=2.0)[0].up
    assert client.timeouts == [pytest.approx(5.5)]


def test_the_pool_names_its_workers_fetch_n_as_the_docs_say():
    made = FetchPool(1)
    try:
        assert made.submit(lambda: threading.current_thread().name).result(timeout=5) == "fetch-0"
    finally:
        made.close(timeout=5)


def test_a_call_runs_in_the_context_of_the_scrape_that_submitted_it(pool):
    scrape = contextvars.ContextVar("scrape", default="none")
    scrape.set("scrape-1")
    assert pool.submit(scrape.get).result(timeout=5) == "scrape-1"


def test_idle_workers_take_the_next_calls_and_a_new_worker_starts_only_when_none_is_idle():
    made = FetchPool(4, name="reuse-fetch")
    release, running = threading.Event(), threading.Semaphore(0)

    def held() -> bool:
        running.release()
        return release.wait(10)

    try:
        first = [made.submit(held) for _ in range(2)]
        release.set()
        assert all(f.result(timeout=10) for f in first)
        # Private, but the one sign that both workers are back and waiting for a call.
        wait_until(lambda: made._idle == 2, timeout=10, interval=0.001, what="two idle workers")
        release.clear()
        second = [made.submit(held) for _ in range(2)]
        for _ in range(2):
            assert running.acquire(timeout=10), "an idle worker did not take a call"
        assert sorted(pool_threads("reuse-fetch-")) == ["reuse-fetch-0", "reuse-fetch-1"]
        third = made.submit(held)  # both workers are busy: a third one starts
        assert running.acquire(timeout=10), "no worker started for a call none was idle for"
        assert sorted(pool_threads("reuse-fetch-")) == [f"reuse-fetch-{i}" for i in range(3)]
        release.set()
        assert all(f.result(timeout=10) for f in [*second, third])
    finally:
        release.set()
        made.close(timeout=5)


@pytest.mark.parametrize(("count", "suffix"), [(10, ""), (11, ",...")])
def test_subaccounts_never_started_are_logged_in_one_line_naming_the_first_ten(
    caplog, count, suffix
):
    clock = FakeClock()
    one = FetchPool(1, name="busy-fetch")
    release = threading.Event()
    names = [f"acme-{i:02d}" for i in range(count)]
    scrapers = [SubaccountScraper(n, Client(clock), SelfMetrics(), clock=clock) for n in names]
    try:
        one.submit(lambda: release.wait(10))  # the only worker stays busy past the deadline
        with caplog.at_level(logging.WARNING, logger="exporter.polling.scraper"):
            samples = scrape_all(scrapers, 0.2, reserve=0.1, pool=one)
    finally:
        release.set()
        one.close(timeout=5)
    assert not any(s.up for s in samples)
    message = "scrape deadline passed before these subaccounts were fetched"
    [record] = [r for r in caplog.records if r.getMessage() == message]
    assert record.fields == {"count": count, "subaccounts": ",".join(names[:10]) + suffix}


def test_a_key_an_error_envelope_echoes_is_redacted_from_the_failure_it_logs(metrics, caplog):
    clock = FakeClock()
    key = "sk-live-0123456789"
    body = json.dumps({"statusCode": 401, "statusMessage": f"bad key {key}"}).encode()
    scraper = SubaccountScraper(
        SUB, Client(clock, body), metrics, clock=clock, secrets=[Secret(key)]
    )
    with caplog.at_level(logging.WARNING, logger="exporter.polling.scraper"):
        assert not scraper.scrape(5).up
    fields = failure_fields(caplog)
    assert fields["reason"] == "unauthorized"
    assert "bad key" in str(fields["detail"])
    assert key not in caplog.text
    assert key not in str(scraper.status.failure_detail)
