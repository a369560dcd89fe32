"""The exporter's own per-target series are bounded like the probed scrapers: an evicted
target's request, failure and latency series leave /metrics; configured subaccounts keep theirs.

The fast tests use fake clients; the slow one probes 3,000 distinct IDs of a real exporter
process and checks that /metrics and the RSS stop growing once the bound is reached.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from exporter.common.errors import FetchError
from exporter.metrics.selfmetrics import SelfMetrics
from exporter.polling.scraper import MAX_PROBED_SUBACCOUNTS, Scrapers, SubaccountScraper
from tests.support.exporters import exporter_process, rss_kib
from tests.support.fake_api import FakeApi, Reply, number, numbers_body

BODY = json.dumps(numbers_body([number()])).encode()
CONFIGURED = "acme-prod"


class Client:
    """Answers at once, with a body or (for IDs ending in 'x') a 404; or waits for `gate`."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Event()

    def fetch_numbers(self, subaccount: str, timeout: float | None = None) -> bytes:
        self.started.set()
        assert self.gate.wait(10)
        if subaccount.endswith("x"):
            raise FetchError("not_found", "HTTP 404", 404)
        return BODY


def series_subaccounts(metrics: SelfMetrics) -> set[str]:
    """Every subaccount that has any series of the exporter's own on /metrics."""
    text = metrics.exposition().decode()
    return {
        line.split('subaccount="', 1)[1].split('"', 1)[0]
        for line in text.splitlines()
        if 'subaccount="' in line
    }


def scrapers_of(metrics: SelfMetrics, client: Client, max_probed: int) -> Scrapers:
    def new_scraper(subaccount: str) -> SubaccountScraper:
        return SubaccountScraper(subaccount, client, metrics)

    metrics.start_at_zero(CONFIGURED)
    return Scrapers([CONFIGURED], new_scraper, max_probed=max_probed)


def test_an_evicted_probe_target_takes_its_series_off_metrics():
    metrics, client = SelfMetrics(), Client()
    scrapers = scrapers_of(metrics, client, max_probed=2)
    for target in ("probe-1", "probe-2x", "probe-3", "probe-4x", CONFIGURED):
        assert scrapers.for_probe(target).scrape(5) is not None
    assert series_subaccounts(metrics) == {CONFIGURED, "probe-3", "probe-4x"}
    text = metrics.exposition().decode()
    # The configured subaccount keeps all its series, started at zero, whatever is probed.
    assert text.count(f'subaccount="{CONFIGURED}"') > 10


def test_a_fetch_in_flight_when_its_target_is_evicted_does_not_bring_its_series_back():
    metrics, client = SelfMetrics(), Client()
    scrapers = scrapers_of(metrics, client, max_probed=1)
    client.gate.clear()
    evicted = scrapers.for_probe("probe-slowx")
    fetch = threading.Thread(target=evicted.scrape, args=(5,), daemon=True)
    fetch.start()
    assert client.started.wait(5)
    scrapers.for_probe("probe-next")  # pushes the one in flight out
    client.gate.set()
    fetch.join(5)
    assert not fetch.is_alive()
    assert "probe-slowx" not in series_subaccounts(metrics)


def test_the_bound_is_the_probe_scraper_bound():
    metrics, client = SelfMetrics(), Client()
    scrapers = scrapers_of(metrics, client, max_probed=MAX_PROBED_SUBACCOUNTS)
    for i in range(MAX_PROBED_SUBACCOUNTS + 50):
        scrapers.for_probe(f"probe-{i:04d}").scrape(5)
    assert len(series_subaccounts(metrics)) == MAX_PROBED_SUBACCOUNTS + 1


def probe_all(url: str, targets: list[str]) -> None:
    def probe(target: str) -> None:
        assert requests.get(f"{url}/probe", params={"target": target}, timeout=30).ok

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(probe, targets))


@pytest.mark.slow
def test_metrics_and_rss_stop_growing_whatever_ids_are_probed(tmp_path):
    def reply(path: str, headers: dict[str, str]) -> Reply:
        return Reply(404, b"{}") if "x/" in path else Reply(200, BODY)

    with FakeApi(reply) as api:
        argv = ["--api.base-url", api.base_url, "--subaccount", CONFIGURED]
        env = {"EIGHTBYEIGHT_API_KEY": "k"}
        with exporter_process(argv, env, tmp_path / "exporter.log") as (url, pid):
            # Past the bound first: from here on every new ID evicts one.
            probe_all(url, [f"warm-{i:04d}{'x' if i % 2 else ''}" for i in range(600)])
            size_before = len(requests.get(f"{url}/metrics", timeout=30).content)
            rss_before = rss_kib(pid)
            probe_all(url, [f"more-{i:04d}{'x' if i % 2 else ''}" for i in range(2_400)])
            size_after = len(requests.get(f"{url}/metrics", timeout=30).content)
            rss_after = rss_kib(pid)
    # The same number of targets' series (the names are as long): only values differ.
    assert abs(size_after - size_before) < 0.02 * size_before, (size_before, size_after)
    assert rss_after - rss_before < 8 * 1024, (rss_before, rss_after)
