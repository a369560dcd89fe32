"""Process-wide memory settings, applied once before the exporter starts its threads.

glibc gives threads their own malloc arenas (up to 8 per core). A scrape parses in one thread
and answers in another, and a new thread may land on any arena: the ~100 MB a large subaccount
needs is then freed into one arena and allocated afresh in the next, and the peak RSS grows
by that much (measured: 176 MB instead of 124 MB above idle at 100,000 numbers). Two arenas
keep the freed memory where the next scrape finds it; the GIL serialises most allocation anyway.
"""

from __future__ import annotations

import ctypes
import os

_M_ARENA_MAX = -8  # glibc's mallopt parameter number
ARENAS = 2


def limit_malloc_arenas(environ: dict[str, str] | None = None) -> bool:
    """Cap glibc's malloc arenas at ARENAS, unless MALLOC_ARENA_MAX is set; True if applied."""
    env = os.environ if environ is None else environ
    if "MALLOC_ARENA_MAX" in env:
        return False  # the operator's own setting, already read by glibc
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False  # not glibc: its allocator has no arenas to cap
    return bool(mallopt(_M_ARENA_MAX, ARENAS))
