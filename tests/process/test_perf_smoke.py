"""Keeps a small subaccount's scrape from regressing by an order of magnitude.

No absolute times: the exporter's work on a 2,000-number body is compared with `json.loads` of
the same body, measured in the same test, best of several runs each, the two taking turns. Today the ratio is about 3,
gzip deflate included (bench/ measures it properly: `python -m bench`); the bound is generous
so that only a real regression (a Python loop per sample, a quadratic step) trips it, not a busy
machine.
"""

from __future__ import annotations

import gc
import gzip
import json
import time
from collections.abc import Callable

import pytest

from exporter.metrics.encoding import gzip_body
from exporter.polling.exposition import SubaccountScrape, render_inventory, render_scrapes
from exporter.polling.model import parse_inventory
from exporter.simulator import list_body

# Times a 2,000-number scrape against json.loads.
pytestmark = pytest.mark.slow

NUMBERS = 2_000
RUNS = 7
BOUND = 10.0  # exporter work / json.loads


def best_in_turns(runs: int, *works: Callable[[], object]) -> list[float]:
    """The best time of each work, the works taking turns run after run, so that the machine
    slowing down or speeding up (another job beside it) weighs on all of them alike."""
    times: list[list[float]] = [[] for _ in works]
    for _ in range(runs):
        for work, taken in zip(works, times, strict=True):
            gc.collect()
            started = time.perf_counter()
            work()
            taken.append(time.perf_counter() - started)
    return [min(taken) for taken in times]


def scrape(body: bytes, now: float) -> list[bytes]:
    """What one cold scrape of a client accepting gzip costs the exporter, network aside."""
    rendered = render_inventory(parse_inventory(body), "perf-smoke")
    sample = SubaccountScrape("perf-smoke", True, 0.1, rendered, now)
    return gzip_body(render_scrapes([sample], now))


def test_scrape_of_2000_numbers_stays_within_an_order_of_magnitude_of_json_loads():
    now = time.time()
    body = json.dumps(list_body(3, "perf-smoke", NUMBERS, now, "http://127.0.0.1:9")).encode()
    text = gzip.decompress(b"".join(scrape(body, now)))
    assert text.count(b"\neightbyeight_number_info{") == NUMBERS  # the work really was done

    floor, work = best_in_turns(RUNS, lambda: json.loads(body), lambda: scrape(body, now))
    assert work < BOUND * floor, f"scrape {work * 1e3:.1f} ms vs json.loads {floor * 1e3:.1f} ms"
