"""glibc's malloc arenas are capped before the exporter starts its threads.

A scrape parses on a pool thread and answers on the request thread; with an arena per thread,
memory freed after one scrape sat in an arena the next scrape did not use, and the peak RSS of
back-to-back cold scrapes of a 100,000-number subaccount climbed by half (124 to 176 MB above
idle). How much depends on which thread lands on which arena, so the figure is checked by the
benchmark's peak-RSS target, not by a test here.
"""

from __future__ import annotations

from exporter import memory
from exporter.memory import limit_malloc_arenas


def test_an_operators_malloc_arena_max_is_left_alone():
    assert limit_malloc_arenas({"MALLOC_ARENA_MAX": "8"}) is False


def test_the_cap_is_applied_with_glibc():
    assert limit_malloc_arenas({}) is True  # this machine runs glibc, as the image does


class FakeLibc:
    """Records the mallopt calls glibc would get; answers as glibc does (1 on success)."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, ...]] = []

    def mallopt(self, *args: int) -> int:
        self.calls.append(args)
        return 1


def test_glibc_is_asked_for_two_arenas_by_m_arena_max(monkeypatch):
    libc = FakeLibc()
    monkeypatch.setattr(memory.ctypes, "CDLL", lambda name: libc)
    assert limit_malloc_arenas({}) is True
    assert libc.calls == [(-8, 2)]  # M_ARENA_MAX in glibc's malloc.h, then the cap


def test_an_allocator_without_mallopt_is_not_capped(monkeypatch):
    monkeypatch.setattr(memory.ctypes, "CDLL", lambda name: object())
    assert limit_malloc_arenas({}) is False
