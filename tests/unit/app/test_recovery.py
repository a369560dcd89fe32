"""Recovery: the API times out, then answers 500, then 429, then comes back; the first scrape
after it is back reports eightbyeight_up 1 with fresh data, and the exporter's connection pool
and counters come through the outage intact."""

from __future__ import annotations

import time

import pytest
import requests

from tests.support.exporters import exporter_process, parse_samples, value
from tests.support.fake_api import FakeApi, Reply, number, numbers_body

pytestmark = pytest.mark.slow

KEY = "recovery-key-51c0e7a2-never-shown"
SUB = "acme-prod"
HEADER = {"X-Prometheus-Scrape-Timeout-Seconds": "2"}
# A scrape's deadline is 1.5 s; what it must not wait for (a hung or slow API) lasts a minute,
# within a longer API timeout. Half of that is out of reach of any machine that keeps to the
# deadline, and in reach of none that waits.
BOUND = 30.0
API_TIMEOUT = ("--api.timeout", "120s")

BEFORE = Reply.json(numbers_body([number("+6531234567"), number("+6531234568")]))
AFTER = Reply.json(
    numbers_body([number("+6531234567"), number("+6531234568"), number("+6531234569")])
)
OUTAGE = [
    ("timeout", Reply(hang=True)),
    ("timeout", Reply(200, b"", delay=60.0)),
    ("connection_error", Reply(200, b'{"numbers": [' + b" " * 5000, reset_after=100)),
    ("server_error", Reply.json({"statusCode": 500, "statusMessage": "Internal"}, 500)),
    ("server_error", Reply(503, b"<html>maintenance</html>", {"Content-Type": "text/html"})),
    ("rate_limited", Reply(429, b"", {"Retry-After": "30"})),
    ("rate_limited", Reply.json({"statusCode": 429}, 429)),
]


def scrape(url: str) -> tuple[dict, float]:
    started = time.monotonic()
    answer = requests.get(url + "/metrics", headers=HEADER, timeout=2 * BOUND)
    elapsed = time.monotonic() - started
    assert answer.status_code == 200
    assert KEY not in answer.text
    return parse_samples(answer.text), elapsed


def up(samples: dict) -> float | None:
    return value(samples, "eightbyeight_up", subaccount=SUB)


def listed(samples: dict) -> float | None:
    return value(samples, "eightbyeight_virtual_numbers_listed", subaccount=SUB)


def last_success(samples: dict) -> float | None:
    return value(samples, "eightbyeight_last_success_timestamp_seconds", subaccount=SUB)


@pytest.mark.parametrize(
    "flags",
    [
        pytest.param([], id="plain"),
        pytest.param(["--cache.ttl", "1s", "--cache.serve-stale-for", "10m"], id="cache-and-stale"),
    ],
)
def test_first_scrape_after_the_outage_is_up(tmp_path, flags):
    stale = "--cache.serve-stale-for" in flags
    with FakeApi(BEFORE) as api:
        argv = ["--api.base-url", api.base_url, "--subaccount", SUB, "--api.retries", "1"]
        argv += [*API_TIMEOUT, *flags]
        env = {"EIGHTBYEIGHT_API_KEY": KEY}
        with exporter_process(argv, env, tmp_path / "exporter.log") as (url, _):
            samples, _ = scrape(url)
            assert up(samples) == 1
            assert listed(samples) == 2
            first_success = last_success(samples)
            if stale:
                time.sleep(1.1)  # let the 1 s cache lapse, so that the outage is really seen

            for reason, reply in OUTAGE:
                api.reply = reply
                samples, elapsed = scrape(url)
                assert up(samples) == 0, reason
                assert elapsed < BOUND, f"{reason} took {elapsed:.2f}s"
                assert last_success(samples) == first_success
                # Stale serving keeps the old inventory visible; without it, it is gone.
                assert listed(samples) == (2 if stale else None)

            api.reply = AFTER
            samples, _ = scrape(url)
            assert up(samples) == 1
            assert listed(samples) == 3
            assert last_success(samples) > first_success
            assert value(samples, "eightbyeight_invalid_records", subaccount=SUB) == 0

            failures = {
                reason: value(
                    samples,
                    "eightbyeight_api_request_failures_total",
                    subaccount=SUB,
                    reason=reason,
                )
                for reason in ("timeout", "connection_error", "server_error", "rate_limited")
            }
            assert failures == {
                "timeout": 2,
                "connection_error": 1,
                "server_error": 2,
                "rate_limited": 2,
            }
        log = (tmp_path / "exporter.log").read_text()
    assert KEY not in log
    assert "Traceback" not in log


def test_recovery_while_many_scrapers_wait(tmp_path):
    """Scrapes that were waiting on a hung request all end at their deadline; the next is up."""
    from concurrent.futures import ThreadPoolExecutor

    with FakeApi(Reply(hang=True)) as api:
        # A worker for each of the twenty (beyond --web.workers, requests wait their turn).
        argv = ["--api.base-url", api.base_url, "--subaccount", SUB, "--web.workers", "20"]
        argv += API_TIMEOUT
        env = {"EIGHTBYEIGHT_API_KEY": KEY}
        with exporter_process(argv, env, tmp_path / "exporter.log") as (url, _):
            with ThreadPoolExecutor(max_workers=20) as pool:
                results = list(pool.map(lambda _: scrape(url), range(20)))
            assert all(up(samples) == 0 for samples, _ in results)
            assert max(elapsed for _, elapsed in results) < BOUND
            assert api.count == 1  # one shared request, not twenty
            api.reply = BEFORE
            samples, _ = scrape(url)
            assert up(samples) == 1
