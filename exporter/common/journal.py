"""The last scrapes and their log lines, for the status page (`/` and `/logs?id=`).

Every /metrics or /probe request opens an entry (`ScrapeJournal.begin`); while it runs, each
`log_event` of that request, whatever the log level, is also written into the entry as a
logfmt line, so an operator can read one scrape's debug log without running the exporter at
debug level (what blackbox_exporter's per-probe logs give). The entry follows the request into
the fetch workers through a context variable.

Memory is bounded: the journal keeps the last `size` entries, each at most MAX_LINES lines of
at most MAX_LINE_CHARS characters; lines past the limit are only counted. Every line goes
through the redaction of the configured keys and webhook auth values before it is kept.
"""

from __future__ import annotations

import contextvars
import itertools
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from exporter.common.redact import redact_and_cut

DEFAULT_SIZE = 20
MAX_LINES = 200
MAX_LINE_CHARS = 1000

_CURRENT: contextvars.ContextVar[ScrapeEntry | None] = contextvars.ContextVar(
    "scrape_entry", default=None
)


@dataclass(slots=True)
class ScrapeEntry:
    """One scrape: what was asked, how it went, and its log lines."""

    id: int
    started: float  # Unix time
    request: str  # e.g. "/metrics" or "/probe?target=acme-prod"
    secrets: tuple[str, ...]
    lines: list[str] = field(default_factory=list)
    dropped: int = 0
    seconds: float | None = None  # None while it runs
    outcome: str = ""  # e.g. "2/3 up, openmetrics, gzip"
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def full(self) -> bool:
        """True once MAX_LINES are kept: later lines are only counted (and never formatted)."""
        return len(self.lines) >= MAX_LINES

    def add(self, line: str) -> None:
        with self._lock:
            if len(self.lines) >= MAX_LINES:
                self.dropped += 1
                return
        line = redact_and_cut(line, self.secrets, MAX_LINE_CHARS)
        with self._lock:
            self.lines.append(line)

    def log(self) -> list[str]:
        """The lines kept, and how many were not."""
        with self._lock:
            lines = list(self.lines)
            dropped = self.dropped
        if dropped:
            lines.append(f"... {dropped} more lines not kept (at most {MAX_LINES} per scrape)")
        return lines


class ScrapeJournal:
    """The last `size` scrapes, newest first; safe across threads."""

    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        self._entries: deque[ScrapeEntry] = deque(maxlen=size)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._secrets: tuple[str, ...] = ()

    def learn(self, secrets: Iterable[str]) -> None:
        """Redact these from every later line (the keys and auth values of a configuration)."""
        known = {*self._secrets, *(s for s in secrets if s)}
        self._secrets = tuple(sorted(known, key=len, reverse=True))

    @contextmanager
    def begin(self, request: str, secrets: Iterable[str] = ()) -> Iterator[ScrapeEntry]:
        """An entry for the scrape run inside the `with`; its log_event lines go into it,
        redacted of `secrets` (the keys of the configuration it runs with) and those learnt."""
        known = {*self._secrets, *(s for s in secrets if s)}
        redacted = tuple(sorted(known, key=len, reverse=True))
        with self._lock:
            entry = ScrapeEntry(next(self._ids), time.time(), request, redacted)
            self._entries.appendleft(entry)
        started = time.monotonic()
        token = _CURRENT.set(entry)
        try:
            yield entry
        finally:
            _CURRENT.reset(token)
            entry.seconds = time.monotonic() - started

    def entries(self) -> list[ScrapeEntry]:
        with self._lock:
            return list(self._entries)

    def find(self, entry_id: int) -> ScrapeEntry | None:
        with self._lock:
            return next((e for e in self._entries if e.id == entry_id), None)


def current_entry() -> ScrapeEntry | None:
    """The scrape the running code works for, if any."""
    return _CURRENT.get()
