"""The scrape deadline: Prometheus' X-Prometheus-Scrape-Timeout-Seconds less --web.timeout-offset,
capped by --api.timeout, bounds the whole upstream call, and /metrics still answers 200."""

from __future__ import annotations

import time

import pytest

from tests.harness import FakeApi, InProcessExporter, Reply, parse_samples, value

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
    ("header", "offset", "expected"),
    [("2", "0.5s", 1.5), ("3", "1s", 2.0), ("1.2", "200ms", 1.0)],
)
def test_scrape_timeout_header_less_offset_bounds_the_fetch(hanging_api, header, offset, expected):
    flags = ("--api.timeout", "30s", "--web.timeout-offset", offset)
    with hanging_exporter(hanging_api, *flags) as exp:
        answer, elapsed = timed_scrape(exp, **{HEADER: header})
        samples = parse_samples(answer.text)
    assert answer.status_code == 200
    assert expected - 0.1 <= elapsed < expected + 0.6
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
    with hanging_exporter(hanging_api, "--api.timeout", "10s") as exp:
        answer, elapsed = timed_scrape(exp, **{HEADER: "0.3"})
    assert answer.status_code == 200
    assert elapsed < 0.6


def test_probe_honours_the_header_too(hanging_api):
    with InProcessExporter(["--api.base-url", hanging_api.base_url, "--api.timeout", "30s"]) as exp:
        answer, elapsed = timed_scrape(exp, "/probe?target=acme-dev", **{HEADER: "1.5"})
    assert answer.status_code == 200
    assert 0.9 <= elapsed < 1.6
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
