"""The HTTP interface as a WSGI application: /, /metrics, /probe and /-/healthy.

Request handling never raises: a bad request gets a 4xx with a one-line reason, and anything
unexpected a 500 with a one-line log entry, never a traceback.
"""

from __future__ import annotations

import html
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qs, quote

from exporter import __version__
from exporter.client import ApiClient
from exporter.config import SUBACCOUNT_PATTERN, Settings
from exporter.encoding import gzip_body, plain_body
from exporter.exposition import SubaccountScrape, render_scrapes
from exporter.logs import log_event
from exporter.scraper import SubaccountScraper
from exporter.selfmetrics import SelfMetrics

log = logging.getLogger("exporter.web")

CONTENT_TYPE_LATEST = "text/plain; version=0.0.4; charset=utf-8"
SCRAPE_TIMEOUT_HEADER = "HTTP_X_PROMETHEUS_SCRAPE_TIMEOUT_SECONDS"
MAX_PROBED_TARGETS = 256

StartResponse = Callable[..., Any]


class Targets:
    """The scrapers: one per configured subaccount, plus a bounded set for probed ones."""

    def __init__(self, settings: Settings, metrics: SelfMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.configured = [self._new(target.subaccount) for target in settings.targets]
        for target in settings.targets:
            metrics.start_at_zero(target.subaccount)
        self._by_id = {scraper.subaccount: scraper for scraper in self.configured}
        self._probed: OrderedDict[str, SubaccountScraper] = OrderedDict()
        self._lock = threading.Lock()

    def _new(self, subaccount: str) -> SubaccountScraper:
        s = self.settings
        target = s.target_for(subaccount)
        client = None
        if target.api_key is not None:
            client = ApiClient(
                target.base_url,
                target.api_key,
                timeout=s.api_timeout,
                max_response_bytes=s.max_response_bytes,
                retries=s.api_retries,
            )
        return SubaccountScraper(
            subaccount,
            client,
            self.metrics,
            per_number=s.per_number,
            cache_ttl=s.cache_ttl,
            serve_stale_for=s.serve_stale_for,
        )

    def for_probe(self, subaccount: str) -> SubaccountScraper:
        """The scraper for a probed subaccount; unconfigured ones are kept in a bounded LRU."""
        configured = self._by_id.get(subaccount)
        if configured is not None:
            return configured
        with self._lock:
            scraper = self._probed.get(subaccount)
            if scraper is None:
                scraper = self._probed[subaccount] = self._new(subaccount)
                while len(self._probed) > MAX_PROBED_TARGETS:
                    self._probed.popitem(last=False)
            else:
                self._probed.move_to_end(subaccount)
            return scraper


def scrape_all(scrapers: list[SubaccountScraper], timeout: float) -> list[SubaccountScrape]:
    """Scrape subaccounts in parallel; one subaccount is scraped in the calling thread."""
    if len(scrapers) <= 1:
        return [scraper.scrape(timeout) for scraper in scrapers]
    with ThreadPoolExecutor(max_workers=min(len(scrapers), 16)) as pool:
        return list(pool.map(lambda scraper: scraper.scrape(timeout), scrapers))


class ExporterApp:
    """WSGI application serving the exporter's endpoints."""

    def __init__(self, settings: Settings, metrics: SelfMetrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or SelfMetrics()
        self.targets = Targets(settings, self.metrics)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        try:
            return self._route(environ, start_response)
        except Exception as exc:  # noqa: BLE001 - one log line and a 500, never a traceback
            log_event(
                log,
                logging.ERROR,
                "request failed",
                path=environ.get("PATH_INFO", ""),
                err=type(exc).__name__,
            )
            return _text(start_response, "500 Internal Server Error", "internal error\n")

    def _route(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "/")
        if method not in ("GET", "HEAD"):
            return _text(
                start_response,
                "405 Method Not Allowed",
                "only GET is supported\n",
                [("Allow", "GET, HEAD")],
            )
        if path == self.settings.telemetry_path:
            return self._metrics(environ, start_response)
        if path == "/probe":
            return self._probe(environ, start_response)
        if path == "/-/healthy":
            return _text(start_response, "200 OK", "OK\n")
        if path == "/":
            return self._landing(start_response)
        return _text(start_response, "404 Not Found", "not found\n")

    def scrape_timeout(self, environ: dict[str, Any]) -> float:
        """Seconds a scrape may take: Prometheus' own timeout less the offset, capped."""
        budget = self.settings.api_timeout
        header = environ.get(SCRAPE_TIMEOUT_HEADER)
        if header:
            try:
                scrape_timeout = float(header)
            except ValueError:
                scrape_timeout = math.nan
            if math.isfinite(scrape_timeout) and scrape_timeout > 0:
                budget = min(budget, scrape_timeout - self.settings.timeout_offset)
        return max(budget, 0.05)

    def _metrics(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        samples = scrape_all(self.targets.configured, self.scrape_timeout(environ))
        return _exposition(environ, start_response, samples, self.metrics.exposition())

    def _probe(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        query = parse_qs(environ.get("QUERY_STRING", ""), errors="replace")
        targets = query.get("target", [])
        if len(targets) != 1 or not targets[0]:
            return _text(start_response, "400 Bad Request", "exactly one 'target' is required\n")
        target = targets[0]
        if not SUBACCOUNT_PATTERN.fullmatch(target):
            return _text(
                start_response,
                "400 Bad Request",
                "invalid target: must match ^[A-Za-z0-9\\-._&]{3,50}$\n",
            )
        allowed = self.settings.probe_allowed
        if allowed is not None and target not in allowed:
            return _text(start_response, "403 Forbidden", "target is not an allowed subaccount\n")
        sample = self.targets.for_probe(target).scrape(self.scrape_timeout(environ))
        return _exposition(environ, start_response, [sample])

    def _landing(self, start_response: StartResponse) -> Iterable[bytes]:
        path = html.escape(self.settings.telemetry_path)
        items = "".join(
            f'<li><a href="/probe?target={quote(s.subaccount, safe="")}">'
            f"/probe?target={html.escape(s.subaccount)}</a></li>"
            for s in self.targets.configured
        )
        page = (
            "<!DOCTYPE html><html><head><title>8x8 Number Health exporter</title></head><body>"
            "<h1>8x8 Number Health exporter</h1>"
            f"<p>Version {html.escape(__version__)}</p>"
            f'<ul><li><a href="{path}">Metrics</a></li>{items}'
            '<li><a href="/-/healthy">Health</a></li></ul></body></html>\n'
        )
        body = page.encode()
        start_response(
            "200 OK",
            [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body)))],
        )
        return [body]


def _exposition(
    environ: dict[str, Any],
    start_response: StartResponse,
    samples: list[SubaccountScrape],
    head: bytes = b"",
) -> Iterable[bytes]:
    headers = [("Content-Type", CONTENT_TYPE_LATEST)]
    parts = render_scrapes(samples, time.time(), head=head)
    if "gzip" in environ.get("HTTP_ACCEPT_ENCODING", ""):
        # gzip reuses the inventory's pieces, compressed once per API response (level 1).
        chunks = gzip_body(parts)
        headers.append(("Content-Encoding", "gzip"))
    else:
        chunks = plain_body(parts)
    headers.append(("Content-Length", str(sum(len(c) for c in chunks))))
    start_response("200 OK", headers)
    if environ.get("REQUEST_METHOD") == "HEAD":
        return []
    return chunks


def _text(
    start_response: StartResponse,
    status: str,
    text: str,
    extra: list[tuple[str, str]] | None = None,
) -> Iterable[bytes]:
    body = text.encode()
    start_response(
        status,
        [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(body))),
            *(extra or []),
        ],
    )
    return [body]
