"""Upstream economy: concurrent scrapes share one request, the cache answers within its TTL, and
the last good data is served (with eightbyeight_up 0) while the API is down.

Every test counts the requests that really reached a FakeApi on 127.0.0.1, through the real
exporter. Clock-dependent behaviour over minutes is checked with a fake clock handed to the
exporter; the tests marked slow prove single flight, the TTL and deadlines on the real clock.
The same behaviour at the scraper alone, in milliseconds: tests/unit/polling/test_scraper.py.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.support.exporters import FakeClock, InProcessExporter, parse_samples, value
from tests.support.fake_api import FakeApi, Reply, number, numbers_body
from tests.support.processes import wait_until

SUB = "acme-prod"
GOOD = Reply.json(numbers_body([number("+6531234567"), number("+6531234568")]))


# Simultaneous scrapes share a fetch only while they are in the exporter together: a worker each
# (--web.workers; beyond them, requests queue and come after the shared fetch has ended).
ALL_AT_ONCE = ("--web.workers", "64")


def exporter_for(api: FakeApi, *flags: str, clock: FakeClock | None = None) -> InProcessExporter:
    argv = ["--api.base-url", api.base_url, "--subaccount", SUB, *ALL_AT_ONCE, *flags]
    return InProcessExporter(argv, clock=clock) if clock else InProcessExporter(argv)


class AllIn:
    """Holds the fake API's answers until `count` requests are inside the exporter's app.

    Single flight shares a fetch among the requests that arrive while it runs: on a busy machine
    50 requests can take longer to get in than any fixed API delay, so the API waits for them
    (then `delay` more, for the last one to reach its scraper) instead of the test betting on
    the machine's speed.
    """

    def __init__(self, count: int, reply: Reply) -> None:
        self.count = count
        self.reply = reply
        self.entered = 0
        self._lock = threading.Lock()
        self._all_in = threading.Event()

    def answer(self, path: str, headers: dict[str, str]) -> Reply:
        assert self._all_in.wait(30), f"only {self.entered} of {self.count} requests got in"
        return self.reply

    def watch(self, exp: InProcessExporter) -> None:
        """Count the requests that reach the exporter's app (behind its web config)."""
        inner = exp.server.get_app()

        def counting(environ, start_response):
            with self._lock:
                self.entered += 1
                if self.entered >= self.count:
                    self._all_in.set()
            return inner(environ, start_response)

        exp.server.set_app(counting)


def concurrent_gets(url: str, count: int, **kwargs: object) -> list[requests.Response]:
    """`count` GETs released at the same instant by a barrier."""
    barrier = threading.Barrier(count)

    def one(_: int) -> requests.Response:
        barrier.wait()
        return requests.get(url, timeout=30, **kwargs)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(one, range(count)))


@pytest.mark.slow
def test_fifty_simultaneous_scrapes_make_one_request():
    all_in = AllIn(50, Reply.json(numbers_body([number()]), delay=1.0))
    with FakeApi(all_in.answer) as api, exporter_for(api) as exp:
        all_in.watch(exp)
        answers = concurrent_gets(exp.url + "/metrics", 50)
        assert api.count == 1
        for answer in answers:
            assert answer.status_code == 200
            assert value(parse_samples(answer.text), "eightbyeight_up", subaccount=SUB) == 1
        requests_total = value(
            parse_samples(exp.get().text), "eightbyeight_api_requests_total", subaccount=SUB
        )
    # The 51st scrape above came after the shared fetch ended, so it fetched on its own.
    assert requests_total == 2
    assert api.count == 2


@pytest.mark.slow
def test_fifty_simultaneous_probes_make_one_request():
    all_in = AllIn(50, Reply.json(numbers_body([number()]), delay=1.0))
    with (
        FakeApi(all_in.answer) as api,
        InProcessExporter(["--api.base-url", api.base_url, *ALL_AT_ONCE]) as exp,
    ):
        all_in.watch(exp)
        answers = concurrent_gets(exp.url + "/probe", 50, params={"target": "acme-dev"})
        assert [a.status_code for a in answers] == [200] * 50
        assert api.count == 1
        assert api.requests[0][0] == "/api/v1/subaccounts/acme-dev/numbers"


@pytest.mark.slow
def test_single_flight_shares_failures_too():
    all_in = AllIn(20, Reply(503, b'{"statusCode": 503}', delay=0.5))
    with (
        FakeApi(all_in.answer) as api,
        exporter_for(api, "--api.retries", "0") as exp,
    ):
        all_in.watch(exp)
        answers = concurrent_gets(exp.url + "/metrics", 20)
        assert api.count == 1
        for answer in answers:
            assert value(parse_samples(answer.text), "eightbyeight_up", subaccount=SUB) == 0


@pytest.mark.slow
def test_separate_subaccounts_do_not_share_a_flight():
    with (
        FakeApi(Reply.json(numbers_body([number()]), delay=0.5)) as api,
        exporter_for(api, "--subaccount", "acme-dev") as exp,
    ):
        answers = concurrent_gets(exp.url + "/metrics", 10)
        assert all(a.status_code == 200 for a in answers)
        paths = sorted({path for path, _ in api.requests})
    assert paths == [
        "/api/v1/subaccounts/acme-dev/numbers",
        "/api/v1/subaccounts/acme-prod/numbers",
    ]
    assert api.count == 2


def test_without_cache_every_scrape_asks_the_api():
    with FakeApi(GOOD) as api, exporter_for(api) as exp:
        for _ in range(3):
            exp.get()
        assert api.count == 3


@pytest.mark.slow
def test_within_the_ttl_scrapes_are_answered_from_the_cache():
    with FakeApi(GOOD) as api, exporter_for(api, "--cache.ttl", "1s") as exp:
        first = parse_samples(exp.get().text)
        second = parse_samples(exp.get().text)
        assert api.count == 1
        for samples in (first, second):
            assert value(samples, "eightbyeight_up", subaccount=SUB) == 1
            assert value(samples, "eightbyeight_virtual_numbers", subaccount=SUB) == 2
        # Past the TTL the next scrape asks again.
        wait_until(lambda: exp.get() and api.count == 2, timeout=5, what="TTL expiry")


def test_cache_help_text_says_data_may_be_cached():
    with FakeApi(GOOD) as api, exporter_for(api, "--cache.ttl", "60s") as exp:
        text = exp.get().text
    help_lines = [line for line in text.splitlines() if line.startswith("# HELP eightbyeight_")]
    cached = [line for line in help_lines if "cache" in line]
    assert any("eightbyeight_last_success_timestamp_seconds" in line for line in cached)
    assert any("eightbyeight_scrape_duration_seconds" in line for line in cached)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_ha_pair_every_15s_with_a_60s_ttl_makes_one_request_a_minute(clock):
    """Two Prometheus servers, 7 s apart, each scraping every 15 s, for ten minutes."""
    with FakeApi(GOOD) as api, exporter_for(api, "--cache.ttl", "60s", clock=clock) as exp:
        start = clock.now
        scrape_times = sorted(
            [start + 15 * i for i in range(40)] + [start + 7 + 15 * i for i in range(40)]
        )
        for at in scrape_times:
            clock.now = at
            samples = parse_samples(exp.get().text)
            assert value(samples, "eightbyeight_up", subaccount=SUB) == 1
        assert len(scrape_times) == 80
        assert api.count == 10


def test_failures_are_not_cached(clock):
    with (
        FakeApi(Reply(500, b"oops")) as api,
        exporter_for(api, "--cache.ttl", "60s", "--api.retries", "0", clock=clock) as exp,
    ):
        for step in range(3):
            clock.now += 1
            samples = parse_samples(exp.get().text)
            assert value(samples, "eightbyeight_up", subaccount=SUB) == 0
            assert api.count == step + 1


def test_stale_data_is_served_with_up_0_for_the_configured_time(clock):
    with (
        FakeApi(GOOD) as api,
        exporter_for(
            api, "--cache.serve-stale-for", "5m", "--api.retries", "0", clock=clock
        ) as exp,
    ):
        good = parse_samples(exp.get().text)
        success_time = value(good, "eightbyeight_last_success_timestamp_seconds", subaccount=SUB)
        assert success_time == clock.time()
        api.reply = Reply(503, b'{"statusCode": 503, "statusMessage": "maintenance"}')

        clock.now += 290
        stale = parse_samples(exp.get().text)
        assert value(stale, "eightbyeight_up", subaccount=SUB) == 0
        assert value(stale, "eightbyeight_virtual_numbers", subaccount=SUB) == 2
        assert value(stale, "eightbyeight_number_info", **_info_labels("+6531234568")) == 1
        assert (
            value(stale, "eightbyeight_last_success_timestamp_seconds", subaccount=SUB)
            == success_time
        )

        clock.now += 20  # 310 s after the last success: past the 5 minutes
        expired = parse_samples(exp.get().text)
        assert value(expired, "eightbyeight_up", subaccount=SUB) == 0
        assert value(expired, "eightbyeight_virtual_numbers", subaccount=SUB) is None
        assert not [key for key in expired if key[0] == "eightbyeight_number_info"]
        assert (
            value(expired, "eightbyeight_last_success_timestamp_seconds", subaccount=SUB)
            == success_time
        )

        api.reply = GOOD
        clock.now += 1
        back = parse_samples(exp.get().text)
        assert value(back, "eightbyeight_up", subaccount=SUB) == 1
        assert value(back, "eightbyeight_last_success_timestamp_seconds", subaccount=SUB) == (
            clock.time()
        )


def test_without_stale_serving_a_failure_hides_the_inventory():
    with FakeApi(GOOD) as api, exporter_for(api, "--api.retries", "0") as exp:
        exp.get()
        api.reply = Reply(500, b"")
        samples = parse_samples(exp.get().text)
    assert value(samples, "eightbyeight_up", subaccount=SUB) == 0
    assert value(samples, "eightbyeight_virtual_numbers", subaccount=SUB) is None
    assert value(samples, "eightbyeight_last_success_timestamp_seconds", subaccount=SUB) is not None


def test_last_success_is_absent_before_the_first_success():
    with FakeApi(Reply(401, b'{"statusCode": 401}')) as api, exporter_for(api) as exp:
        samples = parse_samples(exp.get().text)
    assert value(samples, "eightbyeight_up", subaccount=SUB) == 0
    assert value(samples, "eightbyeight_last_success_timestamp_seconds", subaccount=SUB) is None


def test_cache_and_stale_serving_together(clock):
    with FakeApi(GOOD) as api:
        flags = ("--cache.ttl", "60s", "--cache.serve-stale-for", "10m", "--api.retries", "0")
        with exporter_for(api, *flags, clock=clock) as exp:
            exp.get()
            api.reply = Reply(500, b"")
            clock.now += 30
            assert value(parse_samples(exp.get().text), "eightbyeight_up", subaccount=SUB) == 1
            assert api.count == 1  # still within the TTL: no request, no failure seen
            clock.now += 40
            samples = parse_samples(exp.get().text)
            assert api.count == 2
            assert value(samples, "eightbyeight_up", subaccount=SUB) == 0
            assert value(samples, "eightbyeight_virtual_numbers", subaccount=SUB) == 2


@pytest.mark.slow
def test_slow_leader_does_not_hold_followers_past_their_deadline():
    # The leader's fetch is held until the follower has its answer (a minute at most), within
    # a 120 s API timeout: a follower that waited for the leader would take that minute, one
    # that kept to its own 1 s deadline cannot come near half of it.
    release = threading.Event()

    def held(path: str, headers: dict[str, str]) -> Reply:
        release.wait(60)
        return Reply.json(numbers_body([number()]))

    with FakeApi(held) as api, exporter_for(api, "--api.timeout", "120s") as exp:
        leader = threading.Thread(target=exp.get)
        leader.start()
        try:
            wait_until(lambda: api.count == 1, timeout=5, what="the leader's request")
            started = time.monotonic()
            follower = exp.get(headers={"X-Prometheus-Scrape-Timeout-Seconds": "1.5"})
            elapsed = time.monotonic() - started
        finally:
            release.set()
            leader.join(timeout=10)
        assert api.count == 1
    assert follower.status_code == 200
    assert value(parse_samples(follower.text), "eightbyeight_up", subaccount=SUB) == 0
    assert elapsed < 30.0


def _info_labels(msisdn: str) -> dict[str, str]:
    return {
        "country": "SG",
        "currency": "USD",
        "health_status": "healthy",
        "msisdn": msisdn,
        "number_type": "Mobile",
        "operational_status": "active",
        "reference_id": "range-1",
        "subaccount": SUB,
    }
