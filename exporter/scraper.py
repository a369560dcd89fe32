"""Scraping one subaccount: fetch, parse and render, shared and cached.

`SubaccountScraper.scrape()` is what every /metrics or /probe request calls for a subaccount.
Concurrent scrapes share one upstream request (single flight); within `--cache.ttl` the last
good response is served without a request; when the API fails, the last good data may be
served for `--cache.serve-stale-for` with `eightbyeight_up 0`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

from exporter.client import ApiClient
from exporter.collector import RenderedInventory, TargetSample, render_inventory
from exporter.errors import FetchError
from exporter.logs import log_event
from exporter.model import parse_inventory
from exporter.selfmetrics import SelfMetrics

log = logging.getLogger("exporter.scraper")


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
        client: ApiClient | None,
        metrics: SelfMetrics,
        *,
        per_number: bool = True,
        cache_ttl: float = 0.0,
        serve_stale_for: float = 0.0,
    ) -> None:
        self.subaccount = subaccount
        self.client = client
        self.metrics = metrics
        self.per_number = per_number
        self.cache_ttl = cache_ttl
        self.serve_stale_for = serve_stale_for
        self._lock = threading.Lock()
        self._flight: Future[_Fetched] | None = None
        self._last_good: _Fetched | None = None
        self._last_success: float | None = None
        # --collector.webhooks: called after a good read with (client, subaccount, seconds
        # left), inside the single flight, so it shares the scrape's deadline.
        self.after_fetch: Callable[[ApiClient, str, float], None] | None = None

    def scrape(self, timeout: float) -> TargetSample:
        """One scrape of this subaccount, answered within `timeout` seconds."""
        started = time.monotonic()
        with self._lock:
            cached = self._fresh_cache(started)
            if cached is not None:
                return self._sample(True, started, cached.inventory)
            flight = self._flight
            leader = flight is None
            if leader:
                flight = self._flight = Future()
        if leader:
            fetched = self._fetch(timeout)
            self._run_after_fetch(fetched, started, timeout)
            with self._lock:
                self._flight = None
                self._remember(fetched)
            flight.set_result(fetched)
        else:
            try:
                fetched = flight.result(timeout=max(0.0, timeout - (time.monotonic() - started)))
            except FutureTimeout:
                return self._failed_sample(started)
        if fetched.error is None:
            return self._sample(True, started, fetched.inventory)
        return self._failed_sample(started)

    def _run_after_fetch(self, fetched: _Fetched, started: float, timeout: float) -> None:
        left = timeout - (time.monotonic() - started)
        if self.after_fetch is None or self.client is None or fetched.error is not None:
            return
        if left > 0:
            try:
                self.after_fetch(self.client, self.subaccount, left)
            except Exception as exc:  # noqa: BLE001 - an optional collector never fails a scrape
                log_event(
                    log, logging.WARNING, "after-fetch collector failed", err=type(exc).__name__
                )

    def _fresh_cache(self, now: float) -> _Fetched | None:
        good = self._last_good
        if good is not None and self.cache_ttl > 0 and now - good.monotonic_time < self.cache_ttl:
            return good
        return None

    def _remember(self, fetched: _Fetched) -> None:
        if fetched.error is None:
            self._last_success = fetched.wall_time
            if self.cache_ttl > 0 or self.serve_stale_for > 0:
                self._last_good = fetched

    def _failed_sample(self, started: float) -> TargetSample:
        good = self._last_good
        stale = None
        if (
            good is not None
            and self.serve_stale_for > 0
            and time.monotonic() - good.monotonic_time < self.serve_stale_for
        ):
            stale = good.inventory
        return self._sample(False, started, stale)

    def _sample(
        self, up: bool, started: float, inventory: RenderedInventory | None
    ) -> TargetSample:
        return TargetSample(
            self.subaccount,
            up,
            time.monotonic() - started,
            inventory,
            self._last_success,
        )

    def _fetch(self, timeout: float) -> _Fetched:
        sub = self.subaccount
        if self.client is None:
            error = FetchError("unauthorized", "no API key configured for this subaccount")
            self._count_failure(error)
            return _Fetched(None, error, time.time(), time.monotonic())
        self.metrics.api_requests.labels(sub).inc()
        started = time.monotonic()
        status = None
        try:
            try:
                body = self.client.fetch_numbers(sub, timeout)
            finally:
                self.metrics.api_duration.labels(sub).observe(time.monotonic() - started)
            status = 200  # the body arrived; whatever fails from here on is in its content
            parsed = parse_inventory(body, self.per_number)
            # The raw JSON (~50 MB at 100,000 numbers) is not needed while rendering: free it.
            del body
            inventory = render_inventory(parsed, sub, self.per_number)
        except FetchError as error:
            self._count_failure(error)
            return _Fetched(None, _detached(error), time.time(), time.monotonic())
        except Exception as exc:  # noqa: BLE001 - upstream data must never crash a scrape
            error = FetchError(
                "invalid_response", f"unexpected {type(exc).__name__} while reading", status
            )
            self._count_failure(error)
            return _Fetched(None, error, time.time(), time.monotonic())
        return _Fetched(inventory, None, time.time(), time.monotonic())

    def _count_failure(self, error: FetchError) -> None:
        self.metrics.api_failures.labels(self.subaccount, error.reason).inc()
        log_event(
            log,
            logging.WARNING,
            "reading virtual numbers failed",
            subaccount=self.subaccount,
            status=error.status if error.status is not None else "none",
            reason=error.reason,
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
