"""The HTTP interface as a WSGI application: / (the status page), /logs, /metrics, /probe,
/-/healthy, /-/ready and /discovery/probe-targets.

Request handling never raises: a bad request gets a 4xx with a one-line reason, and anything
unexpected a 500 with a one-line log entry, never a traceback.
"""

from __future__ import annotations

import functools
import html
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs, quote

from exporter.common.journal import ScrapeEntry, ScrapeJournal
from exporter.common.logs import log_event
from exporter.common.wsgi import StartResponse, WsgiApp, text_response, whole_response
from exporter.config.settings import Settings
from exporter.config.values import SUBACCOUNT_PATTERN, ConfigError
from exporter.metrics.encoding import gzip_body, plain_body, plain_size
from exporter.metrics.selfmetrics import SelfMetrics
from exporter.polling.exposition import SubaccountScrape, render_scrapes
from exporter.polling.scraper import FetchPool, Scrapers, least_reserve, scrape_all
from exporter.pushing.state import WebhookState
from exporter.web.discovery import DISCOVERY_PATH, serve_discovery
from exporter.web.generation import Configured
from exporter.web.negotiation import CONTENT_TYPES, GZIP, OPENMETRICS, choose_coding, choose_format
from exporter.web.status import StatusPage, SubaccountRow, render_log_page, render_status_page

log = logging.getLogger("exporter.web.routes")

CONTENT_TYPE_LATEST = CONTENT_TYPES["text"]
SCRAPE_TIMEOUT_HEADER = "HTTP_X_PROMETHEUS_SCRAPE_TIMEOUT_SECONDS"
# Before the first /metrics answer is timed, answering is guessed to take this long per
# configured subaccount (the exporter's own series dominate: ~0.75 ms each measured on an idle
# 2-core host, ~1 ms on a busy one). Kept back twice, as every answer time is: a larger guess
# cut an idle host's first scrape of 1,000 subaccounts short (fetching them takes 5-6 s there).
ANSWER_SECONDS_PER_SUBACCOUNT = 0.001


# What a form on another site can make a browser POST without asking first (no preflight).
# `curl -X POST` sends no Content-Type. (text/plain is what wsgiref reports when none was
# sent, so it cannot be told apart here; browsers send Origin with such a POST.)
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def cross_site_refusal(environ: dict[str, Any]) -> str | None:
    """Why a POST that changes state looks sent by a browser for another site, or None.

    Without basic auth a form on any web page could otherwise reload the exporter from a
    browser inside the network: refuse what browsers mark as cross-site (`Sec-Fetch-Site`),
    an `Origin` other than this host, and the content types a cross-site form can send.
    """
    site = environ.get("HTTP_SEC_FETCH_SITE", "").strip().lower()
    if site and site not in ("same-origin", "none"):
        return f"cross-site request refused (Sec-Fetch-Site: {site[:20]})"
    origin = environ.get("HTTP_ORIGIN", "").strip()
    if origin:
        host = environ.get("HTTP_HOST", "").strip().lower()
        if origin == "null" or origin.lower().split("://", 1)[-1] != host:
            return "cross-site request refused (Origin is not this host)"
    kind = environ.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower()
    if kind in _FORM_TYPES:
        return f"request refused: POST /-/reload without a body, not as {kind}"
    return None


class ExporterApp:
    """WSGI application serving the exporter's endpoints (built by exporter/app.py).

    Every request answers from one `Configured` (settings and scrapers), read once at its
    start: `current` gives it (exporter/app.py points it at the live generation), and `bound`
    is the app answering from a given one (a generation's front).

    `reload` is what `POST /-/reload` calls (set by exporter/app.py): it raises ConfigError
    with the reason when the new configuration cannot be used.
    """

    def __init__(
        self,
        settings: Settings,
        scrapers: Scrapers,
        metrics: SelfMetrics,
        pool: FetchPool | None = None,
        journal: ScrapeJournal | None = None,
    ) -> None:
        first = Configured(settings, scrapers)
        self.current: Callable[[], Configured] = lambda: first
        self.metrics = metrics
        # Every scrape's fetches, /metrics and /probe alike, share these workers.
        self.pool = pool or FetchPool(settings.parallel_fetches)
        # How long a /metrics answer takes to render once the fetches are in: it follows a
        # slower answer at once and a faster one by halves, as the load on the host varies.
        self.answer_seconds = ANSWER_SECONDS_PER_SUBACCOUNT * len(scrapers.configured)
        self.reload: Callable[[], object] | None = None
        # /-/ready: set once the configuration is loaded and the listeners are bound (by
        # exporter/app.py), cleared when shutdown begins. /-/healthy only says the process
        # answers, so a liveness probe never restarts an exporter that is starting or draining.
        self.ready = threading.Event()
        # The status page: the last scrapes with their logs, the receiver's state (set by
        # exporter/app.py when the receiver is on) and whether this is --demo.
        self.journal = journal or ScrapeJournal()
        self.webhook_state: WebhookState | None = None
        self.demo = False

    @property
    def settings(self) -> Settings:
        return self.current().settings

    @property
    def scrapers(self) -> Scrapers:
        return self.current().scrapers

    def bound(self, configured: Configured) -> WsgiApp:
        """This app answering every request from `configured`."""
        return functools.partial(self.answer, configured)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        return self.answer(self.current(), environ, start_response)

    def answer(
        self, configured: Configured, environ: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        """One request, answered wholly from `configured`."""
        try:
            return self._route(configured, environ, start_response)
        except Exception as exc:  # noqa: BLE001 - one log line and a 500, never a traceback
            log_event(
                log,
                logging.ERROR,
                "request failed",
                path=environ.get("PATH_INFO", ""),
                err=type(exc).__name__,
            )
            return text_response(start_response, "500 Internal Server Error", "internal error\n")

    def _route(
        self, configured: Configured, environ: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        settings = configured.settings
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "/")
        if path == "/-/reload":
            return self._reload(method, start_response, environ)
        if method not in ("GET", "HEAD"):
            return text_response(
                start_response,
                "405 Method Not Allowed",
                "only GET is supported\n",
                [("Allow", "GET, HEAD")],
            )
        if path in (settings.telemetry_path, "/probe") and not _acceptable(environ):
            # Refused before any scrape, so an unservable request costs no API call.
            return text_response(
                start_response,
                "406 Not Acceptable",
                "Accept-Encoding excludes both gzip and identity\n",
                [("Vary", "Accept-Encoding")],
            )
        if path == settings.telemetry_path:
            return self._metrics(configured, environ, start_response)
        if path == "/probe":
            return self._probe(configured, environ, start_response)
        if path == "/-/healthy":
            return text_response(start_response, "200 OK", "OK\n")
        if path == "/-/ready":
            if self.ready.is_set():
                return text_response(start_response, "200 OK", "Ready\n")
            return text_response(start_response, "503 Service Unavailable", "Not ready\n")
        if path == DISCOVERY_PATH:
            return serve_discovery(settings, environ, start_response)
        if path == "/":
            return self._status(configured, environ, start_response)
        if path == "/logs":
            return self._logs(environ, start_response)
        return text_response(start_response, "404 Not Found", "not found\n")

    @staticmethod
    def scrape_timeout(settings: Settings, environ: dict[str, Any]) -> float:
        """Seconds a scrape may take: Prometheus' own timeout less the offset, capped."""
        budget = settings.api_timeout
        header = environ.get(SCRAPE_TIMEOUT_HEADER)
        if header:
            try:
                scrape_timeout = float(header)
            except ValueError:
                scrape_timeout = math.nan
            if math.isfinite(scrape_timeout) and scrape_timeout > 0:
                budget = min(budget, scrape_timeout - settings.timeout_offset)
        return max(budget, 0.05)

    def answer_reserve(self, timeout: float) -> float:
        """Time kept back from a /metrics scrape to answer: twice what answers take, at least
        the scrapers' least reserve, at most half the budget."""
        return min(timeout / 2, max(least_reserve(timeout), 2 * self.answer_seconds))

    def _metrics(
        self, configured: Configured, environ: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        settings = configured.settings
        with self.journal.begin(settings.telemetry_path, _secrets_of(settings)) as entry:
            timeout = self.scrape_timeout(settings, environ)
            scrapers = configured.scrapers.configured
            _log_scrape_start(environ, timeout, len(scrapers))
            samples = scrape_all(scrapers, timeout, self.answer_reserve(timeout), self.pool)
            started = time.monotonic()
            head = self.metrics.exposition(_wants_openmetrics(environ))
            answer = _exposition(environ, start_response, samples, head)
            took = time.monotonic() - started
            self.answer_seconds = max(took, (self.answer_seconds + took) / 2)
            _log_scrape_end(entry, environ, samples)
        return answer

    def _probe(
        self, configured: Configured, environ: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        query = parse_qs(environ.get("QUERY_STRING", ""), errors="replace")
        # Prometheus names the probed thing `target`; here it is a subaccount.
        requested = query.get("target", [])
        if len(requested) != 1 or not requested[0]:
            return text_response(
                start_response, "400 Bad Request", "exactly one 'target' is required\n"
            )
        subaccount = requested[0]
        if not SUBACCOUNT_PATTERN.fullmatch(subaccount):
            return text_response(
                start_response,
                "400 Bad Request",
                f"invalid target: must match {SUBACCOUNT_PATTERN.pattern}\n",
            )
        allowed = configured.settings.probe_allowed
        if allowed is not None and subaccount not in allowed:
            return text_response(
                start_response, "403 Forbidden", "target is not an allowed subaccount\n"
            )
        scraper = configured.scrapers.for_probe(subaccount)
        secrets = _secrets_of(configured.settings)
        with self.journal.begin(f"/probe?target={subaccount}", secrets) as entry:
            timeout = self.scrape_timeout(configured.settings, environ)
            _log_scrape_start(environ, timeout, 1)
            samples = scrape_all([scraper], timeout, pool=self.pool)
            answer = _exposition(environ, start_response, samples)
            _log_scrape_end(entry, environ, samples)
        return answer

    @staticmethod
    def _probe_help(settings: Settings, environ: dict[str, Any]) -> str:
        allowed = sorted(settings.probe_allowed or ())
        target = allowed[0] if allowed else "your-subaccount-id"
        host = environ.get("HTTP_HOST") or "eightbyeight-exporter:9881"
        return _probe_help_html(target, host)

    def _reload(
        self, method: str, start_response: StartResponse, environ: dict[str, Any]
    ) -> Iterable[bytes]:
        if method != "POST":
            return text_response(
                start_response,
                "405 Method Not Allowed",
                "only POST is supported\n",
                [("Allow", "POST")],
            )
        refusal = cross_site_refusal(environ)
        if refusal is not None:
            return text_response(start_response, "403 Forbidden", f"{refusal}\n")
        if self.reload is None:
            return text_response(start_response, "404 Not Found", "reloading is not available\n")
        try:
            self.reload()
        except ConfigError as exc:
            return text_response(
                start_response, "500 Internal Server Error", f"failed to reload config: {exc}\n"
            )
        return text_response(start_response, "200 OK", "OK\n")

    def _status(
        self, configured: Configured, environ: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        settings = configured.settings
        names = {scraper.subaccount for scraper in configured.scrapers.configured}
        rows = [
            SubaccountRow(scraper.subaccount, scraper.subaccount in names, scraper.status)
            for scraper in configured.scrapers.every()
        ]
        state = self.webhook_state
        page = StatusPage(
            telemetry_path=settings.telemetry_path,
            subaccounts=rows,
            scrapes=self.journal.entries(),
            callbacks=state.last_callbacks() if state is not None else None,
            demo=self.demo,
            secrets=_secrets_of(settings),
            extra_html="" if names else self._probe_help(settings, environ),
        )
        return _html(start_response, render_status_page(page))

    def _logs(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        query = parse_qs(environ.get("QUERY_STRING", ""), errors="replace")
        wanted = query.get("id", [])
        if len(wanted) != 1 or not wanted[0].isdigit() or len(wanted[0]) > 18:
            return text_response(start_response, "400 Bad Request", "exactly one numeric 'id'\n")
        entry = self.journal.find(int(wanted[0]))
        if entry is None:
            return text_response(
                start_response, "404 Not Found", "no such scrape: only the last ones are kept\n"
            )
        return _html(start_response, render_log_page(entry))


def _html(start_response: StartResponse, body: bytes) -> Iterable[bytes]:
    # Never cached: the page is the state of now.
    return whole_response(
        start_response,
        "200 OK",
        body,
        "text/html; charset=utf-8",
        [("Cache-Control", "no-store")],
    )


def _secrets_of(settings: Settings) -> list[str]:
    """The configured keys and webhook auth values: never shown on the status page."""
    return [secret.reveal() for secret in settings.secrets]


def _log_scrape_start(environ: dict[str, Any], timeout: float, subaccounts: int) -> None:
    log_event(
        log,
        logging.DEBUG,
        "scrape started",
        subaccounts=subaccounts,
        timeout_seconds=round(timeout, 3),
        accept=environ.get("HTTP_ACCEPT"),
        accept_encoding=environ.get("HTTP_ACCEPT_ENCODING"),
    )


def _log_scrape_end(
    entry: ScrapeEntry, environ: dict[str, Any], samples: list[SubaccountScrape]
) -> None:
    up = sum(1 for sample in samples if sample.up)
    exposition_format = choose_format(environ.get("HTTP_ACCEPT"))
    coding = choose_coding(environ.get("HTTP_ACCEPT_ENCODING"))
    entry.outcome = f"{up}/{len(samples)} up, {exposition_format}, {coding}"
    log_event(
        log,
        logging.DEBUG,
        "scrape answered",
        up=up,
        subaccounts=len(samples),
        format=exposition_format,
        coding=coding,
    )


PROBE_SCRAPE_CONFIG = """scrape_configs:
  - job_name: eightbyeight-probe
    metrics_path: /probe
    static_configs:
      - targets: [{target}]      # subaccount IDs
    relabel_configs:
      - source_labels: [__address__]
        target_label: __param_target
      - source_labels: [__param_target]
        target_label: instance
      - target_label: __address__
        replacement: {host}
"""


def _probe_help_html(target: str, host: str) -> str:
    """How to use /probe, for the landing page of an exporter with no subaccount configured."""
    url = f"/probe?target={quote(target, safe='')}"
    config = PROBE_SCRAPE_CONFIG.format(target=target, host=host)
    return (
        "<h2>Probing subaccounts</h2>"
        "<p>No subaccount is configured for the metrics page: ask for one subaccount at a time "
        "with <code>/probe?target=SUBACCOUNT-ID</code>, for example "
        f'<a href="{html.escape(url)}">{html.escape(url)}</a>.</p>'
        "<p>A Prometheus scrape configuration for it:</p>"
        f"<pre>{html.escape(config)}</pre>"
    )


def _wants_openmetrics(environ: dict[str, Any]) -> bool:
    return choose_format(environ.get("HTTP_ACCEPT")) == OPENMETRICS


def _acceptable(environ: dict[str, Any]) -> bool:
    return choose_coding(environ.get("HTTP_ACCEPT_ENCODING")) is not None


def _exposition(
    environ: dict[str, Any],
    start_response: StartResponse,
    samples: list[SubaccountScrape],
    head: bytes = b"",
) -> Iterable[bytes]:
    coding = choose_coding(environ.get("HTTP_ACCEPT_ENCODING"))
    exposition_format = choose_format(environ.get("HTTP_ACCEPT"))
    headers = [
        ("Content-Type", CONTENT_TYPES[exposition_format]),
        ("Vary", "Accept, Accept-Encoding"),
    ]
    openmetrics = exposition_format == OPENMETRICS
    parts = render_scrapes(samples, time.time(), head=head, openmetrics=openmetrics)
    chunks: Iterable[bytes]
    if coding == GZIP:
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
