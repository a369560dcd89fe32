"""One /metrics scrape of many subaccounts: one deadline for the whole scrape, always kept.

The fast tests drive `scrape_all` with fake clients on the real clock: each fetch gets only the
time left, the answer never waits for a fetch past the deadline, and what could not be fetched
is `up 0` counted as a `timeout`. The slow tests prove the same over loopback HTTP against an
API with real latency, at sizes with large headroom: they check behaviour (every subaccount
once, stuck ones `up 0` with a timeout, the rest served, the answer at the deadline rather than
when the stuck ones end), never how fast this machine is. The speed targets (1,000 subaccounts at 200 ms, 100 at
3 s) are the benchmark's: `python -m bench`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import types

import pytest

from bench.many import THREAD_BOUND, measure_many
from exporter.app import build_app
from exporter.config.settings import Settings, SubaccountConfig
from exporter.config.values import Secret
from exporter.metrics.selfmetrics import SelfMetrics
from exporter.polling.scraper import (
    ANSWER_RESERVE_SECONDS,
    FetchPool,
    SubaccountScraper,
    scrape_all,
)
from exporter.web import routes
from exporter.web.routes import ANSWER_SECONDS_PER_SUBACCOUNT
from tests.support.exporters import InProcessExporter, parse_samples, value
from tests.support.fake_api import FakeApi, Reply, number, numbers_body
from tests.support.processes import wait_until

BODY = json.dumps(numbers_body([number()])).encode()
SUB = "acme-prod"
HEADER = "X-Prometheus-Scrape-Timeout-Seconds"


class SlowClient:
    """Takes `takes` real seconds per fetch, or, with `hold`, until `release` is set.

    `hold` ignores the timeout it is given, as a stuck parser or a misbehaving client would.
    """

    def __init__(self, takes: float = 0.0, hold: bool = False) -> None:
        self.takes = takes
        self.hold = hold
        self.release = threading.Event()
        self.ended = threading.Event()
        self.given: list[float | None] = []

    def fetch_numbers(self, subaccount: str, timeout: float | None = None) -> bytes:
        self.given.append(timeout)
        try:
            if self.hold:
                assert self.release.wait(30), "the test never released the fetch"
            else:
                time.sleep(self.takes)
            return BODY
        finally:
            self.ended.set()


def timeouts_counted(metrics: SelfMetrics, subaccount: str) -> float | None:
    samples = parse_samples(metrics.exposition().decode())
    return value(
        samples, "eightbyeight_api_request_failures_total", subaccount=subaccount, reason="timeout"
    )


@pytest.fixture
def one_worker():
    pool = FetchPool(1, name="one-fetch")
    yield pool
    pool.close(timeout=10)


def test_each_fetch_gets_only_what_is_left_of_the_one_deadline(one_worker):
    metrics = SelfMetrics()
    clients = [SlowClient(takes=0.05) for _ in range(3)]
    scrapers = [SubaccountScraper(f"acme-{i}", client, metrics) for i, client in enumerate(clients)]
    samples = scrape_all(scrapers, 20.0, pool=one_worker)
    assert [s.up for s in samples] == [True, True, True]
    [first], [second], [third] = (client.given for client in clients)
    assert first <= 20.0 - ANSWER_RESERVE_SECONDS
    # The second waited in line behind the first, the third behind both: each got less.
    assert second <= first - 0.04
    assert third <= second - 0.04


def test_the_answer_never_waits_for_a_fetch_past_the_deadline():
    metrics = SelfMetrics()
    stuck, quick = SlowClient(hold=True), SlowClient()
    scrapers = [
        SubaccountScraper("acme-stuck", stuck, metrics),
        SubaccountScraper("acme-quick", quick, metrics),
    ]
    try:
        # The stuck fetch is released only after the answer: a scrape that waited for it
        # would fail the client's own assertion instead of answering. 3 s: ample for the quick
        # one on a busy machine (it failed once at 0.5 s beside seven other jobs).
        samples = scrape_all(scrapers, 3.0)
        still_stuck = not stuck.ended.is_set()
    finally:
        stuck.release.set()
    assert still_stuck
    assert [s.up for s in samples] == [False, True]
    assert timeouts_counted(metrics, "acme-stuck") == 1
    # The stuck fetch ends later (with a body, even): it is not counted a second time.
    assert stuck.ended.wait(5)
    wait_until(lambda: scrapers[0]._flight is None, timeout=5, interval=0.01, what="the fetch")
    assert timeouts_counted(metrics, "acme-stuck") == 1
    assert timeouts_counted(metrics, "acme-quick") is None


def test_subaccounts_never_fetched_before_the_deadline_are_timeouts_in_one_log_line(
    one_worker, caplog
):
    metrics = SelfMetrics()
    stuck = SlowClient(hold=True)
    waiting = [SlowClient(), SlowClient()]
    scrapers = [SubaccountScraper("acme-stuck", stuck, metrics)] + [
        SubaccountScraper(f"acme-{i}", client, metrics) for i, client in enumerate(waiting)
    ]
    try:
        with caplog.at_level(logging.WARNING, logger="exporter.polling.scraper"):
            samples = scrape_all(scrapers, 0.4, pool=one_worker)
    finally:
        stuck.release.set()
    assert [s.up for s in samples] == [False, False, False]
    assert [client.given for client in waiting] == [[], []]  # never asked the API
    assert [timeouts_counted(metrics, s.subaccount) for s in scrapers] == [1, 1, 1]
    [line] = [r for r in caplog.records if "before these subaccounts" in r.getMessage()]
    assert line.fields["count"] == 2
    assert line.fields["subaccounts"] == "acme-0,acme-1"


@pytest.mark.slow
def test_seventeen_slow_subaccounts_are_fetched_at_once():
    """Fetches run side by side: each answer of the API waits until all 17 requests are in."""
    subaccounts = [f"acme-{i:02d}" for i in range(17)]
    all_in = threading.Barrier(len(subaccounts))

    def reply(path: str, headers: dict[str, str]) -> Reply:
        try:
            all_in.wait(timeout=15)
        except threading.BrokenBarrierError:
            return Reply(503, b"{}", {"Content-Type": "application/json"})
        return Reply(200, BODY, {"Content-Type": "application/json"})

    with FakeApi(reply) as api:
        argv = ["--api.base-url", api.base_url, "--api.timeout", "30s", "--api.retries", "0"]
        for subaccount in subaccounts:
            argv += ["--subaccount", subaccount]
        with InProcessExporter(argv) as exp:
            answer = exp.get("/metrics", headers={HEADER: "25"})
    assert answer.status_code == 200
    samples = parse_samples(answer.text)
    assert [value(samples, "eightbyeight_up", subaccount=s) for s in subaccounts] == [1] * 17


@pytest.mark.slow
def test_many_subaccounts_each_once_the_stuck_ones_timed_out_the_rest_served(tmp_path):
    """200 subaccounts at 200 ms, 20 of which never answer in time, in one scrape with
    Prometheus' 10 s timeout (a tenth of the subaccounts the benchmark's target scrapes).

    `--web.timeout-offset=3s`, the documented knob for a slow machine: the fetches stop at 7 s,
    which leaves a busy machine three seconds to answer. With the default 0.5 s the answer once
    took 10.16 s beside a full CI run and two other test jobs. Whether it comes before
    Prometheus' 10 s is the benchmark's figure; here, that it does not wait for the stuck ones,
    which would take the 120 s API timeout (they hang for 300 s): never half of that."""
    subaccounts, stuck = 200, 20
    result = measure_many(
        subaccounts,
        100,
        0.2,
        tmp_path,
        stuck=stuck,
        keep_text=True,
        extra_flags=("--web.timeout-offset", "3s", "--api.timeout", "120s"),
    )
    for seconds, text in (
        (result["first"], result["texts"][0]),
        (result["second"], result["texts"][1]),
    ):
        assert seconds < 60.0, (result["first"], result["second"])
        samples = parse_samples(text.decode())
        ups = {
            dict(labels)["subaccount"]: v
            for (name, labels), v in samples.items()
            if name == "eightbyeight_up"
        }
        names = [f"bench-{i:04d}" for i in range(subaccounts)]
        assert sorted(ups) == names  # every subaccount, once
        assert [ups[n] for n in names[-stuck:]] == [0] * stuck
        # On a starved machine (a busy loop beside the suite) a body can come too late to be
        # read by the deadline: that subaccount is up 0 as a timeout (checked below). How many
        # make it in time is the benchmark's figure, not a verdict here.
        served = [n for n in names[:-stuck] if ups[n] == 1]
        assert served, "no subaccount served"
        for name in served:  # a subaccount fetched is served, whole
            assert value(samples, "eightbyeight_virtual_numbers_listed", subaccount=name) == 100
    # The process never had more threads than its configuration allows (it used to start one
    # per fetch, and a deadline timer per fetch beside it).
    assert result["threads_peak"] <= THREAD_BOUND, result["threads_peak"]
    samples = parse_samples(result["texts"][1].decode())
    for name in names[-stuck:]:
        assert (
            value(
                samples,
                "eightbyeight_api_request_failures_total",
                subaccount=name,
                reason="timeout",
            )
            == 2
        )
    for name in names[:-stuck]:
        # Never fetched twice in one scrape; a live subaccount fails only by the deadline.
        assert (value(samples, "eightbyeight_api_requests_total", subaccount=name) or 0) <= 2
        reasons = {
            dict(labels)["reason"]
            for (metric, labels), count in samples.items()
            if metric == "eightbyeight_api_request_failures_total"
            and dict(labels)["subaccount"] == name
            and count
        }
        assert reasons <= {"timeout"}, (name, reasons)


def test_metrics_keeps_back_what_its_last_answer_took(monkeypatch):
    settings = Settings(
        subaccounts=tuple(
            SubaccountConfig(f"acme-{i:04d}", Secret("k"), "http://x") for i in range(600)
        ),
        api_key=Secret("k"),
    )
    app = build_app(settings, lambda subaccount: SlowClient())
    # Before any answer: twice a guess from the number of subaccounts.
    assert app.answer_reserve(9.5) == pytest.approx(2 * 600 * ANSWER_SECONDS_PER_SUBACCOUNT)
    app.answer_seconds = 1.5
    assert app.answer_reserve(9.5) == pytest.approx(3.0)
    assert app.answer_reserve(4.0) == 2.0  # never more than half the budget
    app.answer_seconds = 0.001
    assert app.answer_reserve(9.5) == ANSWER_RESERVE_SECONDS  # never less than the least


class AnswerClock:
    """Stands in for the `time` module of exporter.web.routes: every answer takes `took` s.

    Each read of the monotonic clock moves it on by `took`, so the two that time an answer are
    that far apart, however long the machine really took.
    """

    def __init__(self, took: float) -> None:
        self.took = took
        self.now = 1000.0

    def monotonic(self) -> float:
        value = self.now
        self.now += self.took
        return value

    def time(self) -> float:
        return time.time()


def test_a_slower_answer_raises_the_reserve_at_once_and_a_faster_one_by_halves(monkeypatch):
    settings = Settings(subaccounts=(SubaccountConfig(SUB, Secret("k"), "http://x"),))
    app = build_app(settings, lambda subaccount: SlowClient())
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/metrics"}
    clock = AnswerClock(took=0.2)
    monkeypatch.setattr(
        routes, "time", types.SimpleNamespace(monotonic=clock.monotonic, time=clock.time)
    )
    app.answer_seconds = 10.0
    b"".join(app(environ, lambda status, headers: None))
    assert app.answer_seconds == pytest.approx(5.1)  # a faster answer: halfway down
    app.answer_seconds = 0.0
    b"".join(app(environ, lambda status, headers: None))
    assert app.answer_seconds == pytest.approx(0.2)  # a slower one: all the way up at once
