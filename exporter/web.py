"""The HTTP interface as a WSGI application: /, /metrics, /probe and /-/healthy.

Request handling never raises: a bad request gets a 4xx with a one-line reason, and anything
unexpected a 500 with a one-line log entry, never a traceback.
"""

from __future__ import annotations

import html
import logging
import math
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs, quote

from exporter import __version__
from exporter.config import SUBACCOUNT_PATTERN, Settings
from exporter.encoding import gzip_body, plain_body, plain_size
from exporter.exposition import SubaccountScrape, render_scrapes
from exporter.logs import log_event
from exporter.scraper import Scrapers, least_reserve, scrape_all
from exporter.selfmetrics import SelfMetrics

log = logging.getLogger("exporter.web")

CONTENT_TYPE_LATEST = "text/plain; version=0.0.4; charset=utf-8"
SCRAPE_TIMEOUT_HEADER = "HTTP_X_PROMETHEUS_SCRAPE_TIMEOUT_SECONDS"
# Before the first /metrics answer is timed, answering is guessed to take this long per
# configured subaccount (the exporter's own series dominate: ~1 ms each on a busy 2-core
# host; twice that leaves room for a host busier still).
ANSWER_SECONDS_PER_SUBACCOUNT = 0.002

StartResponse = Callable[..., Any]


class ExporterApp:
    """WSGI application serving the exporter's endpoints (built by exporter/app.py)."""

    def __init__(self, settings: Settings, scrapers: Scrapers, metrics: SelfMetrics) -> None:
        self.settings = settings
        self.scrapers = scrapers
        self.metrics = metrics
        # How long a /metrics answer takes to render once the fetches are in: it follows a
        # slower answer at once and a faster one by halves, as the load on the host varies.
        self.answer_seconds = ANSWER_SECONDS_PER_SUBACCOUNT * len(scrapers.configured)

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

    def answer_reserve(self, timeout: float) -> float:
        """Time kept back from a /metrics scrape to answer: twice what answers take, at least
        the scrapers' least reserve, at most half the budget."""
        return min(timeout / 2, max(least_reserve(timeout), 2 * self.answer_seconds))

    def _metrics(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        timeout = self.scrape_timeout(environ)
        samples = scrape_all(self.scrapers.configured, timeout, self.answer_reserve(timeout))
        started = time.monotonic()
        answer = _exposition(environ, start_response, samples, self.metrics.exposition())
        took = time.monotonic() - started
        self.answer_seconds = max(took, (self.answer_seconds + took) / 2)
        return answer

    def _probe(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        query = parse_qs(environ.get("QUERY_STRING", ""), errors="replace")
        # Prometheus names the probed thing `target`; here it is a subaccount.
        requested = query.get("target", [])
        if len(requested) != 1 or not requested[0]:
            return _text(start_response, "400 Bad Request", "exactly one 'target' is required\n")
        subaccount = requested[0]
        if not SUBACCOUNT_PATTERN.fullmatch(subaccount):
            return _text(
                start_response,
                "400 Bad Request",
                "invalid target: must match ^[A-Za-z0-9\\-._&]{3,50}$\n",
            )
        allowed = self.settings.probe_allowed
        if allowed is not None and subaccount not in allowed:
            return _text(start_response, "403 Forbidden", "target is not an allowed subaccount\n")
        scraper = self.scrapers.for_probe(subaccount)
        samples = scrape_all([scraper], self.scrape_timeout(environ))
        return _exposition(environ, start_response, samples)

    def _landing(self, start_response: StartResponse) -> Iterable[bytes]:
        path = html.escape(self.settings.telemetry_path)
        items = "".join(
            f'<li><a href="/probe?target={quote(s.subaccount, safe="")}">'
            f"/probe?target={html.escape(s.subaccount)}</a></li>"
            for s in self.scrapers.configured
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
    chunks: Iterable[bytes]
    if "gzip" in environ.get("HTTP_ACCEPT_ENCODING", ""):
        # gzip reuses the inventory's pieces, compressed once per API response (level 1).
        gzipped = gzip_body(parts)
        headers.append(("Content-Encoding", "gzip"))
        headers.append(("Content-Length", str(sum(map(len, gzipped)))))
        chunks = gzipped
    else:
        # Streamed: text kept only deflated is inflated while it is sent, never whole.
        headers.append(("Content-Length", str(plain_size(parts))))
        chunks = plain_body(parts)
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
