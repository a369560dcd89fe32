"""Process-wide memory settings, applied once before the exporter starts its threads.

glibc gives threads their own malloc arenas (up to 8 per core). A scrape parses in one thread
and answers in another, and a new thread may land on any arena: the ~100 MB a large subaccount
needs is then freed into one arena and allocated afresh in the next, and the peak RSS grows
by that much (measured: 176 MB instead of 124 MB above idle at 100,000 numbers). Two arenas
keep the freed memory where the next scrape finds it; the GIL serialises most allocation anyway.

glibc also raises its mmap threshold each time it frees a block it had mmapped (up to 32 MB):
after the first scrape, the text and column blocks that had come from mmap and gone back to the
system come from the heap instead, where they fragment it, and the second scrape's peak RSS
was 40 MB higher at 100,000 numbers (152 against 111 MB above idle, flat after that). A fixed
threshold keeps them on mmap: 108 then 112 MB (`python -m bench`, ten cold scrapes).
"""

from __future__ import annotations

import ctypes
import os

# glibc's mallopt parameter numbers (malloc.h), and the values set with them.
_M_ARENA_MAX = -8
_M_MMAP_THRESHOLD = -3
ARENAS = 2
MMAP_THRESHOLD = 128 * 1024  # glibc's own starting value, fixed from now on


def limit_malloc_arenas(environ: dict[str, str] | None = None) -> bool:
    """Cap glibc's malloc arenas at ARENAS and fix its mmap threshold at MMAP_THRESHOLD, each
    unless the operator set it (MALLOC_ARENA_MAX, MALLOC_MMAP_THRESHOLD_); True if any applied."""
    env = os.environ if environ is None else environ
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False  # not glibc: its allocator has no arenas to cap
    applied = False
    # An operator's own setting was already read by glibc at start.
    if "MALLOC_ARENA_MAX" not in env:
        applied = bool(mallopt(_M_ARENA_MAX, ARENAS))
    if "MALLOC_MMAP_THRESHOLD_" not in env:
        applied = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) or applied
    return applied
