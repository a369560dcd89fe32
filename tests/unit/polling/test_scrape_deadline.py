"""The scrape deadline: Prometheus' X-Prometheus-Scrape-Timeout-Seconds less --web.timeout-offset,
capped by --api.timeout, bounds the whole upstream call, and /metrics still answers 200.

The first tests check, in milliseconds, which deadline the app hands the API client for each
header: the budget less the little kept back to answer in time, less the moment it took to
start the fetch. The tests marked slow prove on the real clock that a hanging API is cut off
by it: the deadline that must win is a second or two, the one that must lose (a header or
offset ignored, the API timeout) is 60 s or more, and the bound between them is 30 s, so no
machine is slow enough to reach it with the right deadline nor fast enough to pass with the
wrong one.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import pytest

from exporter.app import build_app
from exporter.config.flags import build_parser
from exporter.config.settings import settings_from_flags
from exporter.polling.scraper import ANSWER_RESERVE_SECONDS, least_reserve
from exporter.web.routes import ExporterApp
from tests.support.exporters import InProcessExporter, parse_samples, value
from tests.support.fake_api import FakeApi, Reply, number, numbers_body

SUB = "acme-prod"
HEADER = "X-Prometheus-Scrape-Timeout-Seconds"
UNUSABLE = ["abc", "-1", "0", "nan", "NaN", "inf", "-inf", "1e999", "1 2", "10s", "1" * 5000]


class RecordingClient:
    """Records the deadline each fetch is given, and answers with an empty list."""

    def __init__(self) -> None:
        self.timeouts: list[float | None] = []
        self.called_at: list[float] = []

    def fetch_numbers(self, subaccount: str, timeout: float | None = None) -> bytes:
        self.timeouts.append(timeout)
        self.called_at.append(time.monotonic())
        return json.dumps(numbers_body([])).encode()


class ForTheFetch:
    """What the fetch gets of a scrape budget: all but the time kept back to answer.

    Compared with a `Given`: the request started at `started`, the exporter fixed its deadline
    at some moment after that, and the client was called at `called_at`. So the timeout the
    client got, plus the time from the start to the call, lies between the fetch's budget and
    that budget plus the time from the start to the call, however busy the machine is.
    """

    def __init__(self, budget: float) -> None:
        self.budget = budget - min(ANSWER_RESERVE_SECONDS, budget / 10)

    def __eq__(self, given: object) -> bool:
        if not isinstance(given, Given):
            return NotImplemented
        total = given.timeout + given.to_call
        return self.budget - 0.02 <= total <= self.budget + given.to_call + 0.02

    def __repr__(self) -> str:
        return f"a fetch budget of {self.budget:.3f} s"


def for_the_fetch(budget: float) -> ForTheFetch:
    return ForTheFetch(budget)


@dataclass(frozen=True)
class Given:
    timeout: float
    to_call: float  # seconds from the request's start to the client's call


def deadline_given(header: str | None, *flags: str, path: str = "/metrics") -> Given:
    """The timeout the API client gets for one request with `header` (None: no header), and
    how long after the request's start the client was called."""
    argv = ["--subaccount", SUB, *flags]
    settings = settings_from_flags(build_parser().parse_args(argv), {"EIGHTBYEIGHT_API_KEY": "k"})
    client = RecordingClient()
    app = build_app(settings, lambda subaccount: client)
    target, _, query = path.partition("?")
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": target, "QUERY_STRING": query}
    if header is not None:
        environ["HTTP_X_PROMETHEUS_SCRAPE_TIMEOUT_SECONDS"] = header
    statuses: list[str] = []
    started = time.monotonic()
    b"".join(app(environ, lambda status, headers: statuses.append(status)))
    assert statuses == ["200 OK"]
    [timeout] = client.timeouts
    [called_at] = client.called_at
    app.pool.close(timeout=5)
    assert timeout is not None
    return Given(timeout, called_at - started)


@pytest.mark.parametrize(
    ("header", "offset", "expected"),
    [("2", "0.5s", 1.5), ("3", "1s", 2.0), ("6", "1500ms", 4.5)],
)
def test_the_deadline_is_the_header_less_the_offset(header, offset, expected):
    flags = ("--api.timeout", "30s", "--web.timeout-offset", offset)
    assert deadline_given(header, *flags) == for_the_fetch(expected)


def test_the_api_timeout_caps_a_longer_header():
    assert deadline_given("60", "--api.timeout", "4s") == for_the_fetch(4.0)


def test_without_the_header_the_api_timeout_is_the_deadline():
    assert deadline_given(None, "--api.timeout", "7s") == for_the_fetch(7.0)


@pytest.mark.parametrize("header", UNUSABLE)
def test_an_unusable_header_means_the_api_timeout(header):
    assert deadline_given(header, "--api.timeout", "7s") == for_the_fetch(7.0)


def test_a_header_shorter_than_the_offset_leaves_a_token_deadline():
    # The rule itself, not a fetch: 50 ms is less than a busy machine takes to start one.
    argv = ["--subaccount", SUB, "--api.timeout", "10s"]
    settings = settings_from_flags(build_parser().parse_args(argv), {"EIGHTBYEIGHT_API_KEY": "k"})
    header = {"HTTP_X_PROMETHEUS_SCRAPE_TIMEOUT_SECONDS": "0.3"}
    assert ExporterApp.scrape_timeout(settings, header) == 0.05


def test_probe_takes_its_deadline_from_the_header_too():
    path = "/probe?target=acme-dev"
    assert deadline_given("4.5", "--api.timeout", "30s", path=path) == for_the_fetch(4.0)


def timed_scrape(exp: InProcessExporter, path: str = "/metrics", **headers: str):
    started = time.monotonic()
    answer = exp.get(path, headers={k.replace("_", "-"): v for k, v in headers.items()})
    return answer, time.monotonic() - started


@pytest.fixture
def hanging_api():
    with FakeApi(Reply(hang=True)) as api:
        yield api


def hanging_exporter(api: FakeApi, *flags: str) -> InProcessExporter:
    return InProcessExporter(["--api.base-url", api.base_url, "--subaccount", SUB, *flags])


# Beyond any machine's slowness, and short of the 60 s the header alone would allow.
BOUND = 30.0


# Real time: the offset is most of the header, so a deadline that ignored it (60 s) passes the
# bound, and one that counted it twice (the 0.05 s floor) falls short of the lower one.
@pytest.mark.slow
@pytest.mark.parametrize(
    ("header", "offset", "expected"),
    [("60", "58.5s", 1.5), ("62", "1m", 2.0), ("61", "60000ms", 1.0)],
)
def test_scrape_timeout_header_less_offset_bounds_the_fetch(hanging_api, header, offset, expected):
    flags = ("--api.timeout", "120s", "--web.timeout-offset", offset)
    with hanging_exporter(hanging_api, *flags) as exp:
        answer, elapsed = timed_scrape(exp, **{HEADER: header})
        samples = parse_samples(answer.text)
    assert answer.status_code == 200
    # The scrape answers by its deadline less what it keeps back to render the answer.
    assert expected - least_reserve(expected) - 0.05 <= elapsed < BOUND
    assert value(samples, "eightbyeight_up", subaccount=SUB) == 0
    assert (
        value(samples, "eightbyeight_api_request_failures_total", subaccount=SUB, reason="timeout")
        == 1
    )


@pytest.mark.slow
def test_api_timeout_caps_a_longer_scrape_timeout(hanging_api):
    with hanging_exporter(hanging_api, "--api.timeout", "1s") as exp:
        answer, elapsed = timed_scrape(exp, **{HEADER: "60"})
    assert answer.status_code == 200
    assert 0.9 <= elapsed < BOUND


@pytest.mark.slow
def test_without_the_header_api_timeout_is_the_deadline(hanging_api):
    # The API never answers: only a deadline ends the scrape (which one: the fast test above).
    with hanging_exporter(hanging_api, "--api.timeout", "1s") as exp:
        answer, elapsed = timed_scrape(exp)
    assert answer.status_code == 200
    assert 0.9 <= elapsed < BOUND


@pytest.mark.slow
@pytest.mark.parametrize("header", ["nan"])
def test_unusable_header_falls_back_to_api_timeout(hanging_api, header):
    with hanging_exporter(hanging_api, "--api.timeout", "1s") as exp:
        answer, elapsed = timed_scrape(exp, **{HEADER: header})
    assert answer.status_code == 200
    assert 1.0 - least_reserve(1.0) - 0.05 <= elapsed < BOUND
    assert value(parse_samples(answer.text), "eightbyeight_up", subaccount=SUB) == 0


@pytest.mark.slow
def test_header_shorter_than_the_offset_still_answers(hanging_api):
    # The deadline is the 0.05 s floor (the rule: the fast test above), not the 60 s API
    # timeout a header it cannot use would fall back to.
    with hanging_exporter(hanging_api, "--api.timeout", "60s") as exp:
        answer, elapsed = timed_scrape(exp, **{HEADER: "0.3"})
    assert answer.status_code == 200
    assert 0.05 - least_reserve(0.05) - 0.01 <= elapsed < BOUND
    assert value(parse_samples(answer.text), "eightbyeight_up", subaccount=SUB) == 0


@pytest.mark.slow
def test_probe_honours_the_header_too(hanging_api):
    argv = ["--api.base-url", hanging_api.base_url, "--api.timeout", "60s"]
    with InProcessExporter(argv) as exp:
        answer, elapsed = timed_scrape(exp, "/probe?target=acme-dev", **{HEADER: "1.5"})
    assert answer.status_code == 200
    # 1.5 s less the default 0.5 s offset, less what the scrape keeps back to answer; ignoring
    # the header would wait for the 60 s API timeout.
    assert 1.0 - least_reserve(1.0) - 0.05 <= elapsed < BOUND
    assert value(parse_samples(answer.text), "eightbyeight_up", subaccount="acme-dev") == 0


@pytest.mark.slow
def test_slow_retries_end_at_the_deadline():
    # 503 after 0.4 s, for ever: retries happen, but never past the deadline (about 1.4 s), so
    # at most four attempts start of the eleven the retries allow. Counted once the fetch has
    # ended (its worker joined), so an attempt made after the answer counts too.
    with FakeApi(Reply(503, b"", delay=0.4)) as api:
        flags = ("--api.retries", "10", "--api.timeout", "30s")
        with hanging_exporter(api, *flags) as exp:
            answer, _ = timed_scrape(exp, **{HEADER: "2"})
            exp.app.pool.close(timeout=60)
        assert answer.status_code == 200
        assert 2 <= api.count <= 4


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.4, 1.0])
def test_scrape_duration_is_the_time_the_slow_api_took(delay):
    with (
        FakeApi(Reply.json(numbers_body([number()]), delay=delay)) as api,
        hanging_exporter(api, "--api.timeout", "10s") as exp,
    ):
        answer, elapsed = timed_scrape(exp)
    samples = parse_samples(answer.text)
    assert value(samples, "eightbyeight_up", subaccount=SUB) == 1
    duration = value(samples, "eightbyeight_scrape_duration_seconds", subaccount=SUB)
    # At least the API's delay, at most the whole request around it: the fetch, not a deadline.
    assert delay <= duration <= elapsed


@pytest.mark.slow
def test_scrape_duration_of_a_timed_out_scrape_is_the_deadline(hanging_api):
    with hanging_exporter(hanging_api, "--api.timeout", "1s") as exp:
        answer, elapsed = timed_scrape(exp)
    duration = value(
        parse_samples(answer.text), "eightbyeight_scrape_duration_seconds", subaccount=SUB
    )
    # The deadline is --api.timeout less what the scrape keeps back to answer in time; the
    # duration is no more than the request around it.
    deadline = 1.0 - least_reserve(1.0)
    assert deadline - 0.05 <= duration <= elapsed
