"""Scraping subaccounts: fetch, parse and render, shared and cached.

`SubaccountScraper.scrape()` is what every /metrics or /probe request calls for a subaccount.
Concurrent scrapes share one upstream request (single flight); within `--cache.ttl` the last
good response is served without a request; when the API fails, the last good data may be
served for `--cache.serve-stale-for` with `eightbyeight_up 0`. The clock and the API client
are handed in, so tests drive all of this with a fake clock and a fake client.

`Scrapers` holds one scraper per configured subaccount and a bounded set for probed ones.

`scrape_all` scrapes many subaccounts against one deadline: fetches run in a bounded pool of
threads, each gets only the time left, and the answer never waits past the deadline; whatever
is not done by then is `eightbyeight_up 0`, counted as a `timeout`.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future, wait
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, replace
from functools import partial
from queue import Empty, SimpleQueue
from typing import Protocol, TypeVar

from exporter.common.errors import FetchError, ResponseError
from exporter.common.logs import log_event
from exporter.config.flags import default
from exporter.config.values import Secret
from exporter.metrics.encoding import deflate_all
from exporter.metrics.selfmetrics import SelfMetrics, TargetSeries
from exporter.polling.exposition import RenderedInventory, SubaccountScrape, render_inventory
from exporter.polling.model import parse_inventory

log = logging.getLogger("exporter.polling.scraper")

MAX_PROBED_SUBACCOUNTS = 256
HTTP_OK = 200  # a body that fails to parse arrived with this status
# With less than this left before the deadline a fetch is not started: it could not finish.
MIN_FETCH_SECONDS = 0.01
# Time kept back from the deadline to render and send the answer, at the least: a tenth of
# the budget, at most 100 ms. /metrics keeps back more when its answers take longer (see
# exporter/web/routes.py: the exporter's own series of 1,000 subaccounts alone take ~1 s to render).
ANSWER_RESERVE_SECONDS = 0.1


# One body is parsed, rendered and deflated at a time, whatever the number of fetches in flight:
# that work holds the GIL, and 64 threads taking turns at it cost half as much CPU again in
# switches (1,000 subaccounts of 100 numbers: 9.4 s of CPU a scrape, 7.1 s with this lock).
# The fetches themselves, which wait on the network, still run side by side.
CPU_WORK = threading.Lock()


def least_reserve(timeout: float) -> float:
    """The time kept back from a scrape of `timeout` seconds to answer, at the least."""
    return min(ANSWER_RESERVE_SECONDS, timeout / 10)


class Clock(Protocol):
    """Monotonic time for deadlines and ages, wall time for timestamps."""

    def monotonic(self) -> float: ...

    def time(self) -> float: ...


class NumbersClient(Protocol):
    """What a scraper needs of the API client (exporter.polling.client.ApiClient in production)."""

    def fetch_numbers(self, subaccount: str, timeout: float | None = None) -> bytes | bytearray: ...


# Called after a good fetch with (subaccount, seconds left of the scrape's deadline).
AfterFetch = Callable[[str, float], None]

# The `time` module has exactly the two functions of a Clock.
SYSTEM_CLOCK: Clock = time


@dataclass(slots=True)
class _Flight:
    """A fetch in progress; `reported` once its failure has been counted and logged."""

    result: Future[_Fetched]
    deadline: float
    reported: bool = False


@dataclass(frozen=True, slots=True)
class ScraperStatus:
    """How a subaccount's scrapes went, for the status page (Unix times; None: never)."""

    up: bool | None = None  # the last scrape's verdict
    stale: bool = False  # the last scrape failed and served the last good data
    last_scrape: float | None = None
    last_success: float | None = None
    numbers: int | None = None  # of the last good response
    unhealthy: int | None = None
    expiring: int | None = None
    failure_reason: str | None = None  # the last failure, however long ago
    failure_detail: str | None = None
    failure_time: float | None = None


@dataclass(frozen=True, slots=True)
class _Fetched:
    """The result of one upstream fetch, shared by every scrape that waited for it."""

    inventory: RenderedInventory | None
    error: FetchError | None
    wall_time: float
    monotonic_time: float


class SubaccountScraper:
    """Owns one subaccount's client, its in-flight fetch and its last good response."""

    def __init__(
        self,
        subaccount: str,
        client: NumbersClient | None,
        metrics: SelfMetrics,
        *,
        per_number: bool = True,
        cache_ttl: float = 0.0,
        serve_stale_for: float = 0.0,
        clock: Clock = SYSTEM_CLOCK,
        after_fetch: AfterFetch | None = None,
        secrets: Sequence[Secret] = (),
    ) -> None:
        self.subaccount = subaccount
        self.clock = clock
        self.client = client
        self.metrics = metrics
        self.series: TargetSeries = metrics.target(subaccount)
        self.per_number = per_number
        self.cache_ttl = cache_ttl
        self.serve_stale_for = serve_stale_for
        self._secrets = tuple(secrets)  # the keys an answer must not carry into a metric
        self._lock = threading.Lock()
        self._flight: _Flight | None = None
        self._last_good: _Fetched | None = None
        self._last_success: float | None = None
        self.status = ScraperStatus()
        self._status_lock = threading.Lock()
        # e.g. --collector.webhooks: runs inside the single flight, so it shares the scrape's
        # deadline and happens once per upstream fetch, not once per waiting scrape.
        self.after_fetch = after_fetch

    def scrape(self, timeout: float) -> SubaccountScrape:
        """One scrape of this subaccount, answered within `timeout` seconds."""
        return self.scrape_until(self.clock.monotonic() + timeout)

    def scrape_until(self, deadline: float) -> SubaccountScrape:
        """One scrape of this subaccount, answered by `deadline` (on the scraper's clock)."""
        started = self.clock.monotonic()
        with self._lock:
            cached = self._fresh_cache(started)
            if cached is not None:
                age = started - cached.monotonic_time
                log_event(
                    log,
                    logging.DEBUG,
                    "served from the cache",
                    subaccount=self.subaccount,
                    age_seconds=round(age, 3),
                )
                return self._sample(True, started, cached.inventory)
            flight = self._flight
            leader = flight is None
            if flight is None:
                flight = self._flight = _Flight(Future(), deadline)
        if leader:
            fetched = self._fetch(deadline)
            self._run_after_fetch(fetched, deadline)
            with self._lock:
                self._flight = None
                self._remember(fetched)
                # A failure the deadline already counted as a timeout is not counted again.
                report = fetched.error if not flight.reported else None
                flight.reported = True
                if report is not None:
                    self.series.failure(report.reason)
            if report is not None:
                self._log_failure(report)
            if fetched.error is not None:
                self._note_failure(fetched.error, fetched.wall_time)
            flight.result.set_result(fetched)
        else:
            log_event(
                log, logging.DEBUG, "waiting for the fetch in flight", subaccount=self.subaccount
            )
            try:
                waited = self.clock.monotonic() - started
                fetched = flight.result.result(timeout=max(0.0, deadline - started - waited))
            except FutureTimeout:
                return self._failed_sample(started)
        if fetched.error is None:
            return self._sample(True, started, fetched.inventory)
        return self._failed_sample(started)

    def _run_after_fetch(self, fetched: _Fetched, deadline: float) -> None:
        if self.after_fetch is None or fetched.error is not None:
            return
        left = deadline - self.clock.monotonic()
        if left > 0:
            try:
                self.after_fetch(self.subaccount, left)
            except Exception as exc:  # noqa: BLE001 - an optional collector never fails a scrape
                log_event(
                    log, logging.WARNING, "after-fetch collector failed", err=type(exc).__name__
                )

    def not_started(self, started: float) -> SubaccountScrape:
        """The sample of a scrape that never started before the deadline: up 0, a `timeout`.

        There was no fetch to log it; the caller logs all such subaccounts in one line.
        """
        self.series.failure("timeout")
        self._note_failure(
            FetchError("timeout", "not started before the scrape deadline"), self.clock.time()
        )
        return self._failed_sample(started)

    def missed(self, started: float, deadline: float) -> SubaccountScrape:
        """The sample of a scrape still running at `deadline`: up 0.

        Its fetch (this scrape's, or the one it waits for), when it had no later deadline, has
        failed: it is counted and logged as a `timeout` here, once; the fetch does not count
        it again when it ends, even if a body arrives after all (it is still cached).
        """
        with self._lock:
            flight = self._flight
            report = flight is not None and not flight.reported and flight.deadline <= deadline
            if flight is not None and report:
                flight.reported = True
                self.series.failure("timeout")
        if report:
            error = FetchError("timeout", "no answer before the scrape deadline")
            self._log_failure(error)
            self._note_failure(error, self.clock.time())
        return self._failed_sample(started)

    def retire(self) -> None:
        """This scraper is no longer used: its own series leave /metrics."""
        self.series.drop()

    def _fresh_cache(self, now: float) -> _Fetched | None:
        good = self._last_good
        if good is not None and self.cache_ttl > 0 and now - good.monotonic_time < self.cache_ttl:
            return good
        return None

    def _note_failure(self, error: FetchError, wall_time: float) -> None:
        self._update_status(
            failure_reason=error.reason, failure_detail=error.detail, failure_time=wall_time
        )

    def _update_status(self, **changes: object) -> None:
        with self._status_lock:
            self.status = replace(self.status, **changes)  # type: ignore[arg-type]

    def _remember(self, fetched: _Fetched) -> None:
        if fetched.error is None:
            self._last_success = fetched.wall_time
            inventory = fetched.inventory
            if inventory is not None:
                self._update_status(
                    last_success=fetched.wall_time,
                    numbers=inventory.listed,
                    unhealthy=inventory.unhealthy,
                    expiring=inventory.expiring,
                )
            if self.cache_ttl > 0 or self.serve_stale_for > 0:
                self._last_good = fetched

    def _failed_sample(self, started: float) -> SubaccountScrape:
        good = self._last_good
        stale = None
        if (
            good is not None
            and self.serve_stale_for > 0
            and self.clock.monotonic() - good.monotonic_time < self.serve_stale_for
        ):
            stale = good.inventory
        return self._sample(False, started, stale)

    def _sample(
        self, up: bool, started: float, inventory: RenderedInventory | None
    ) -> SubaccountScrape:
        self._update_status(
            up=up, stale=not up and inventory is not None, last_scrape=self.clock.time()
        )
        return SubaccountScrape(
            self.subaccount,
            up,
            self.clock.monotonic() - started,
            inventory,
            self._last_success,
        )

    def _fetch(self, deadline: float) -> _Fetched:
        sub = self.subaccount
        if self.client is None:
            return self._failed(
                FetchError("unauthorized", "no API key configured for this subaccount")
            )
        started = self.clock.monotonic()
        if deadline - started < MIN_FETCH_SECONDS:
            return self._failed(FetchError("timeout", "no time left before the scrape deadline"))
        self.series.request()
        log_event(
            log,
            logging.DEBUG,
            "fetching the numbers",
            subaccount=sub,
            seconds_left=round(deadline - started, 3),
        )
        body_arrived = False
        try:
            try:
                body = self.client.fetch_numbers(sub, deadline - started)
            finally:
                self.series.duration(self.clock.monotonic() - started)
            body_arrived = True  # whatever fails from here on is in the body's content
            if not CPU_WORK.acquire(timeout=max(0.0, deadline - self.clock.monotonic())):
                raise FetchError("timeout", "no time left to read the body", HTTP_OK)
            try:
                keys = [secret.reveal() for secret in self._secrets]
                parsed = parse_inventory(body, self.per_number, keys)
                # The raw JSON (~50 MB at 100,000 numbers) is not needed while rendering.
                del body
                inventory = render_inventory(parsed, sub, self.per_number)
                # Deflate now, within the deadline, rather than in the answer after it:
                # Prometheus always asks for gzip.
                deflate_all(inventory.samples.values())
            finally:
                CPU_WORK.release()
        except FetchError as error:
            return self._failed(_detached(error))
        except ResponseError as error:
            return self._failed(FetchError(error.reason, error.detail, HTTP_OK))
        except Exception as exc:  # noqa: BLE001 - upstream data must never crash a scrape
            detail = f"unexpected {type(exc).__name__} while reading"
            return self._failed(
                FetchError("invalid_response", detail, HTTP_OK if body_arrived else None)
            )
        log_event(
            log,
            logging.DEBUG,
            "numbers read",
            subaccount=sub,
            numbers=inventory.listed,
            invalid_records=inventory.invalid_records,
            seconds=round(self.clock.monotonic() - started, 3),
        )
        return _Fetched(inventory, None, self.clock.time(), self.clock.monotonic())

    def _failed(self, error: FetchError) -> _Fetched:
        return _Fetched(None, error, self.clock.time(), self.clock.monotonic())

    def _log_failure(self, error: FetchError) -> None:
        log_event(
            log,
            logging.WARNING,
            "reading virtual numbers failed",
            subaccount=self.subaccount,
            status=error.status,  # None when no answer came: logfmt none, JSON null
            reason=error.reason,
            retries=error.retries,
            detail=error.detail,
        )


def _detached(error: FetchError) -> FetchError:
    """The error without its traceback and chained exceptions.

    Those reach the frames that raised it, and through them the response body (up to
    --api.max-response-size) in a reference cycle that only the cyclic GC would free: a few
    failed scrapes of a large body in a row would each keep a copy alive until then.
    """
    error.__traceback__ = None
    error.__context__ = None
    error.__cause__ = None
    return error


class Scrapers:
    """The scrapers: one per configured subaccount, plus a bounded LRU set for probed ones.

    `new_scraper` builds the scraper of a subaccount (see exporter/app.py); every scraper is
    built once and kept, so its cache and its in-flight fetch are shared by every request.
    `kept` are scrapers carried over from before a reload: they serve their subaccount again
    (configured or probed), with their cache and in-flight fetch. A probed scraper pushed out of
    the LRU takes its own series off /metrics with it.
    """

    def __init__(
        self,
        configured: Sequence[str],
        new_scraper: Callable[[str], SubaccountScraper],
        max_probed: int = MAX_PROBED_SUBACCOUNTS,
        kept: Sequence[SubaccountScraper] = (),
    ) -> None:
        self._new = new_scraper
        self._max_probed = max_probed
        reuse = {scraper.subaccount: scraper for scraper in kept}
        self.configured = [
            reuse.pop(sub) if sub in reuse else new_scraper(sub) for sub in configured
        ]
        self._by_id = {scraper.subaccount: scraper for scraper in self.configured}
        self._probed: OrderedDict[str, SubaccountScraper] = OrderedDict(
            list(reuse.items())[-max_probed:] if max_probed > 0 else ()
        )
        self._lock = threading.Lock()

    def every(self) -> list[SubaccountScraper]:
        """The configured scrapers, then the probed ones from least to most recently used."""
        with self._lock:
            return [*self.configured, *self._probed.values()]

    def for_probe(self, subaccount: str) -> SubaccountScraper:
        """The scraper for a probed subaccount; unconfigured ones are kept in a bounded LRU."""
        configured = self._by_id.get(subaccount)
        if configured is not None:
            return configured
        with self._lock:
            scraper = self._probed.get(subaccount)
            if scraper is None:
                scraper = self._probed[subaccount] = self._new(subaccount)
                while len(self._probed) > self._max_probed:
                    _, evicted = self._probed.popitem(last=False)
                    evicted.retire()
            else:
                self._probed.move_to_end(subaccount)
            return scraper

    @property
    def probed_count(self) -> int:
        with self._lock:
            return len(self._probed)


def scrape_all(
    scrapers: Sequence[SubaccountScraper],
    timeout: float,
    reserve: float | None = None,
    pool: FetchPool | None = None,
) -> list[SubaccountScrape]:
    """Scrape subaccounts in parallel against one deadline, `timeout` seconds from now.

    Waiting ends `reserve` seconds (default: `least_reserve`) before the deadline, whatever
    the API does, to leave the time to answer: a subaccount whose scrape is not done by then,
    or never started because the pool (default: `default_pool()`) was busy, is `up 0` and
    counted as a `timeout`. Its fetch, if one is running, ends on its own at the same time (the
    API client cuts it off); nothing waits for it.
    """
    if not scrapers:
        return []
    clock = scrapers[0].clock
    started = clock.monotonic()
    deadline = started + timeout - (least_reserve(timeout) if reserve is None else reserve)
    pool = pool or default_pool()
    futures = [pool.submit(partial(scraper.scrape_until, deadline)) for scraper in scrapers]
    wait(futures, timeout=max(0.0, deadline - clock.monotonic()))
    samples = []
    never_started = []
    for scraper, future in zip(scrapers, futures, strict=True):
        if future.cancel():  # still queued: no worker will start it now
            never_started.append(scraper.subaccount)
            samples.append(scraper.not_started(started))
        elif future.done():
            samples.append(future.result())
        else:
            samples.append(scraper.missed(started, deadline))
    if never_started:
        log_event(
            log,
            logging.WARNING,
            "scrape deadline passed before these subaccounts were fetched",
            count=len(never_started),
            subaccounts=",".join(never_started[:10]) + (",..." if len(never_started) > 10 else ""),
        )
    return samples


T = TypeVar("T")


# A worker with nothing to do for this long ends; the next scrape starts it again.
IDLE_WORKER_SECONDS = 300.0


class FetchPool:
    """At most `workers` named daemon threads that run the fetches of every scrape.

    One pool for the process, so the thread count never grows with the number of subaccounts
    or of scrapes at once: two Prometheus servers scraping together queue for the same workers.
    A worker starts when a call finds none idle and ends after IDLE_WORKER_SECONDS without work.
    Not a ThreadPoolExecutor: the interpreter waits for its threads at exit, so a fetch still
    waiting on a hanging API would hold up the exporter's exit after SIGTERM. `close()` stops
    the workers once the work queued before it is done.
    """

    def __init__(
        self,
        workers: int = default("parallel_fetches"),
        name: str = "fetch",
        idle_seconds: float = IDLE_WORKER_SECONDS,
    ) -> None:
        if workers < 1:
            raise ValueError("a fetch pool needs at least one worker")
        self.workers = workers
        self._name = name
        self._idle_seconds = idle_seconds
        self._queue: SimpleQueue[_Job | None] = SimpleQueue()
        self._lock = threading.Lock()
        self._threads: set[threading.Thread] = set()
        self._idle = 0  # workers waiting for a call that no call has claimed yet
        self._closed = False
        self._started = 0

    def submit(self, call: Callable[[], T]) -> Future[T]:
        """Run `call` on a worker; a future cancelled before a worker takes it is skipped."""
        future: Future[T] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the fetch pool is closed")
            if self._idle:
                self._idle -= 1
            elif len(self._threads) < self.workers:
                self._start()
        # The caller's context goes with the call: a scrape's journal entry follows its fetches.
        self._queue.put((partial(contextvars.copy_context().run, call), future))  # type: ignore[arg-type]
        return future

    def _start(self) -> None:
        thread = threading.Thread(
            target=self._work, name=f"{self._name}-{self._started}", daemon=True
        )
        self._started += 1
        self._threads.add(thread)
        thread.start()

    def _work(self) -> None:
        queue = self._queue
        while True:
            try:
                job = queue.get(timeout=self._idle_seconds)
            except Empty:
                with self._lock:
                    if not self._idle:  # every idle worker is claimed: this one too
                        continue
                    self._idle -= 1
                    self._threads.discard(threading.current_thread())
                return
            if job is None:
                return
            _run(job)
            del job
            with self._lock:
                self._idle += 1

    def close(self, timeout: float | None = None) -> None:
        """Stop the workers once the queued work is done; wait up to `timeout` for each."""
        with self._lock:
            self._closed = True
            threads, self._threads = self._threads, set()
        for _ in threads:
            self._queue.put(None)
        for thread in threads:
            thread.join(timeout)


_Job = tuple[Callable[[], object], Future[object]]


def _run(job: _Job) -> None:
    call, future = job
    if future.set_running_or_notify_cancel():
        try:
            future.set_result(call())
        except Exception as exc:  # noqa: BLE001 - handed to whoever waits on the future
            future.set_exception(exc)


_DEFAULT_POOL: FetchPool | None = None
_DEFAULT_POOL_LOCK = threading.Lock()


def default_pool() -> FetchPool:
    """The process's pool, as many workers as --api.parallel-fetches' default, for callers that
    bring none (tests, tools): the exporter sizes its own from --api.parallel-fetches."""
    global _DEFAULT_POOL
    with _DEFAULT_POOL_LOCK:
        if _DEFAULT_POOL is None:
            _DEFAULT_POOL = FetchPool(default("parallel_fetches"))
        return _DEFAULT_POOL
