"""The scrape deadline: Prometheus' X-Prometheus-Scrape-Timeout-Seconds less --web.timeout-offset,
capped by --api.timeout, bounds the whole upstream call, and /metrics still answers 200."""

from __future__ import annotations

import time

import pytest
from fakeapi import FakeApi, Reply, number, numbers_body
from reliability_support import InProcessExporter, parse_samples, value

from exporter.config import Settings
from exporter.web import ExporterApp

SUB = "acme-prod"
HEADER = "X-Prometheus-Scrape-Timeout-Seconds"


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


@pytest.mark.parametrize(
    ("header", "offset", "api_timeout", "expected"),
    [
        ("2", 0.5, 30.0, 1.5),
        ("3", 1.0, 30.0, 2.0),
        ("1.2", 0.2, 30.0, 1.0),
        ("1.2", 0.0, 30.0, 1.2),
        ("60", 0.5, 1.0, 1.0),  # --api.timeout caps it
        ("2.5", 0.5, 2.0, 2.0),
        (None, 0.5, 7.0, 7.0),  # no header: --api.timeout
        ("0.3", 0.5, 10.0, 0.05),  # less than the offset: the floor
        ("0.5", 0.5, 10.0, 0.05),
        ("0.6", 0.5, 10.0, 0.1),
        ("abc", 0.5, 3.0, 3.0),
        ("0", 0.5, 3.0, 3.0),
        ("-1", 0.5, 3.0, 3.0),
        ("inf", 0.5, 3.0, 3.0),
        ("nan", 0.5, 3.0, 3.0),
    ],
)
def test_scrape_timeout_is_header_less_offset_capped_and_floored(
    header, offset, api_timeout, expected
):
    app = ExporterApp(Settings(api_timeout=api_timeout, timeout_offset=offset))
    environ = {} if header is None else {"HTTP_X_PROMETHEUS_SCRAPE_TIMEOUT_SECONDS": header}
    assert app.scrape_timeout(environ) == pytest.approx(expected)


# Real time: each window is narrower than the offset on both sides, so a deadline that ignored
# the offset (or counted it twice) lands outside it.
@pytest.mark.parametrize(
    ("header", "offset", "expected"),
    [("2", "0.5s", 1.5), ("3", "1s", 2.0), ("1.6", "600ms", 1.0)],
)
def test_scrape_timeout_header_less_offset_bounds_the_fetch(hanging_api, header, offset, expected):
    flags = ("--api.timeout", "30s", "--web.timeout-offset", offset)
    with hanging_exporter(hanging_api, *flags) as exp:
        answer, elapsed = timed_scrape(exp, **{HEADER: header})
        samples = parse_samples(answer.text)
    assert answer.status_code == 200
    assert expected - 0.05 <= elapsed < expected + 0.4
    assert value(samples, "eightbyeight_up", subaccount=SUB) == 0
    assert (
        value(samples, "eightbyeight_api_request_failures_total", subaccount=SUB, reason="timeout")
        == 1
    )


def test_api_timeout_caps_a_longer_scrape_timeout(hanging_api):
    with hanging_exporter(hanging_api, "--api.timeout", "1s") as exp:
        answer, elapsed = timed_scrape(exp, **{HEADER: "60"})
    assert answer.status_code == 200
    assert 0.9 <= elapsed < 1.6


def test_without_the_header_api_timeout_is_the_deadline(hanging_api):
    with hanging_exporter(hanging_api, "--api.timeout", "1s") as exp:
        answer, elapsed = timed_scrape(exp)
    assert answer.status_code == 200
    assert 0.9 <= elapsed < 1.6


@pytest.mark.parametrize(
    "header", ["abc", "-1", "0", "nan", "NaN", "inf", "-inf", "1e999", "1 2", "10s", "1" * 5000]
)
def test_unusable_header_falls_back_to_api_timeout(hanging_api, header):
    with hanging_exporter(hanging_api, "--api.timeout", "1s") as exp:
        answer, elapsed = timed_scrape(exp, **{HEADER: header})
    assert answer.status_code == 200
    assert elapsed < 1.6
    assert value(parse_samples(answer.text), "eightbyeight_up", subaccount=SUB) == 0


def test_header_shorter_than_the_offset_still_answers(hanging_api):
    # The deadline is the 0.05 s floor: well under what a 0.5 s floor would take.
    with hanging_exporter(hanging_api, "--api.timeout", "10s") as exp:
        answer, elapsed = timed_scrape(exp, **{HEADER: "0.3"})
    assert answer.status_code == 200
    assert 0.05 <= elapsed < 0.4
    assert value(parse_samples(answer.text), "eightbyeight_up", subaccount=SUB) == 0


def test_probe_honours_the_header_too(hanging_api):
    with InProcessExporter(["--api.base-url", hanging_api.base_url, "--api.timeout", "30s"]) as exp:
        answer, elapsed = timed_scrape(exp, "/probe?target=acme-dev", **{HEADER: "1.5"})
    assert answer.status_code == 200
    assert 0.95 <= elapsed < 1.4  # 1.5 s less the default 0.5 s offset
    assert value(parse_samples(answer.text), "eightbyeight_up", subaccount="acme-dev") == 0


def test_slow_retries_end_at_the_deadline():
    # 503 after 0.4 s, for ever: retries happen, but never past the deadline.
    with FakeApi(Reply(503, b"", delay=0.4)) as api:
        flags = ("--api.retries", "10", "--api.timeout", "30s")
        with hanging_exporter(api, *flags) as exp:
            answer, elapsed = timed_scrape(exp, **{HEADER: "2"})
        assert answer.status_code == 200
        assert elapsed < 2.1
        assert 2 <= api.count <= 4


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
    assert delay <= duration < delay + 0.3
    assert duration <= elapsed


def test_scrape_duration_of_a_timed_out_scrape_is_the_deadline(hanging_api):
    with hanging_exporter(hanging_api, "--api.timeout", "1s") as exp:
        answer, elapsed = timed_scrape(exp)
    duration = value(
        parse_samples(answer.text), "eightbyeight_scrape_duration_seconds", subaccount=SUB
    )
    assert 0.95 <= duration < 1.3
    assert duration <= elapsed
