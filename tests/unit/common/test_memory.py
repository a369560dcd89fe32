"""Memory: glibc's malloc arenas are capped before the exporter starts its threads, and a
scrape leaves nothing for the cyclic GC.

A scrape parses on a pool thread and answers on the request thread; with an arena per thread,
memory freed after one scrape sat in an arena the next scrape did not use, and the peak RSS of
back-to-back cold scrapes of a 100,000-number subaccount climbed by half (124 to 176 MB above
idle). How much depends on which thread lands on which arena, so the figure is checked by the
benchmark's peak-RSS target, not by a test here.
"""

from __future__ import annotations

import gc

from exporter.common import memory
from exporter.common.memory import limit_malloc_arenas
from exporter.config.values import Secret
from exporter.metrics.encoding import gzip_body, plain_body, plain_size
from exporter.metrics.selfmetrics import SelfMetrics
from exporter.polling.client import ApiClient
from exporter.polling.exposition import render_scrapes
from exporter.polling.scraper import FetchPool, SubaccountScraper, scrape_all
from exporter.simulator import Simulator

SUB = "acme-big"
KEY = "memory-test-key"


def test_an_operators_malloc_settings_are_left_alone(monkeypatch):
    libc = FakeLibc()
    monkeypatch.setattr(memory.ctypes, "CDLL", lambda name: libc)
    both = {"MALLOC_ARENA_MAX": "8", "MALLOC_MMAP_THRESHOLD_": "65536"}
    assert limit_malloc_arenas(both) is False
    assert libc.calls == []
    assert limit_malloc_arenas({"MALLOC_ARENA_MAX": "8"}) is True
    assert libc.calls == [(-3, 128 * 1024)]


def test_the_cap_is_applied_with_glibc():
    assert limit_malloc_arenas({}) is True  # this machine runs glibc, as the image does


class FakeLibc:
    """Records the mallopt calls glibc would get; answers as glibc does (1 on success)."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, ...]] = []

    def mallopt(self, *args: int) -> int:
        self.calls.append(args)
        return 1


def test_glibc_is_asked_for_two_arenas_and_a_fixed_mmap_threshold(monkeypatch):
    libc = FakeLibc()
    monkeypatch.setattr(memory.ctypes, "CDLL", lambda name: libc)
    assert limit_malloc_arenas({}) is True
    # M_ARENA_MAX in glibc's malloc.h, then the cap; M_MMAP_THRESHOLD, then glibc's default
    # starting value, which setting it keeps from rising.
    assert libc.calls == [(-8, 2), (-3, 128 * 1024)]


def test_an_allocator_without_mallopt_is_not_capped(monkeypatch):
    monkeypatch.setattr(memory.ctypes, "CDLL", lambda name: object())
    assert limit_malloc_arenas({}) is False


# --- No reference cycles on the scrape path ---------------------------------------------------


def cyclic_garbage_of_scrapes(scrapes: int, numbers: int) -> list[str]:
    """What the cyclic GC finds after `scrapes` scrapes through the real client, pool, parser,
    renderer and both encodings, with it disabled meanwhile: each found object's type, for the
    objects of the exporter's own modules (or of a frame or function running their code)."""
    with Simulator({SUB: numbers}, KEY, seed=3, clock=lambda: 1_700_000_000.0) as sim:
        metrics = SelfMetrics()
        scraper = SubaccountScraper(SUB, ApiClient(sim.base_url, Secret(KEY)), metrics)
        pool = FetchPool(2, name="gc-fetch")
        try:
            assert scrape_all([scraper], 30, pool=pool)[0].up  # the threads and imports exist
            gc.collect()
            gc.disable()
            gc.set_debug(gc.DEBUG_SAVEALL)
            try:
                for _ in range(scrapes):
                    samples = scrape_all([scraper], 30, pool=pool)
                    assert samples[0].up
                    parts = render_scrapes(samples, 1_700_000_000.0, head=metrics.exposition())
                    assert gzip_body(parts)
                    assert sum(map(len, plain_body(parts))) == plain_size(parts)
                    del samples, parts
                gc.collect()
                found = list(gc.garbage)
                gc.garbage.clear()
            finally:
                gc.set_debug(0)
                gc.enable()
        finally:
            pool.close(timeout=10)
    return sorted({_origin(obj) for obj in found} - {None})


def _origin(obj: object) -> str | None:
    code = getattr(obj, "f_code", None) or getattr(obj, "__code__", None)
    if code is not None:
        return f"code {code.co_name}" if "/exporter/" in code.co_filename else None
    kind = type(obj)
    return kind.__qualname__ if kind.__module__.startswith("exporter") else None


def test_scrapes_leave_nothing_for_the_cyclic_gc():
    """Each parse used to leave its columns in a cycle (fold -> memo -> bound method -> fold),
    and each fetch its deadline timer: freed only when the cyclic GC happened to run, so the
    peak RSS of a large subaccount climbed scrape after scrape."""
    assert cyclic_garbage_of_scrapes(scrapes=3, numbers=5_000) == []
