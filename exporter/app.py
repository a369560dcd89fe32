"""The composition root: `Settings` in, a ready-to-serve exporter out.

Everything the exporter is made of is built here, once: an API client per subaccount, a
scraper per subaccount (in `Scrapers`), the self-metrics, the WSGI application behind the web
config's basic auth and headers, and the HTTP server with the web config's TLS context.
`exporter/cli.py` turns flags into settings, calls `build_exporter` and serves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from exporter.client import ApiClient
from exporter.config import Settings
from exporter.memory import limit_malloc_arenas
from exporter.scraper import SYSTEM_CLOCK, Clock, NumbersClient, Scrapers, SubaccountScraper
from exporter.selfmetrics import SelfMetrics
from exporter.server import ExporterServer, make_server
from exporter.web import ExporterApp
from exporter.webconfig import WsgiApp, wrap_app

ClientFactory = Callable[[str], NumbersClient | None]


@dataclass(frozen=True)
class Exporter:
    """The built exporter: `server` serves `wsgi`, which is `app` behind the web config."""

    settings: Settings
    app: ExporterApp
    wsgi: WsgiApp
    server: ExporterServer


def api_client_factory(settings: Settings) -> ClientFactory:
    """Builds the API client of a subaccount (None when no key reaches it)."""

    def new_client(subaccount: str) -> ApiClient | None:
        config = settings.subaccount_config(subaccount)
        if config.api_key is None:
            return None
        return ApiClient(
            config.base_url,
            config.api_key,
            timeout=settings.api_timeout,
            max_response_bytes=settings.max_response_bytes,
            retries=settings.api_retries,
        )

    return new_client


def build_scrapers(
    settings: Settings,
    metrics: SelfMetrics,
    new_client: ClientFactory | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> Scrapers:
    """One scraper per configured subaccount, and the means to add probed ones."""
    new_client = new_client or api_client_factory(settings)

    def new_scraper(subaccount: str) -> SubaccountScraper:
        return SubaccountScraper(
            subaccount,
            new_client(subaccount),
            metrics,
            per_number=settings.per_number,
            cache_ttl=settings.cache_ttl,
            serve_stale_for=settings.serve_stale_for,
            clock=clock,
        )

    configured = [config.subaccount for config in settings.subaccounts]
    for subaccount in configured:
        metrics.start_at_zero(subaccount)
    return Scrapers(configured, new_scraper)


def build_app(
    settings: Settings,
    new_client: ClientFactory | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> ExporterApp:
    """The WSGI application with its scrapers and self-metrics (no web config, no socket)."""
    metrics = SelfMetrics()
    return ExporterApp(settings, build_scrapers(settings, metrics, new_client, clock), metrics)


def build_exporter(settings: Settings, clock: Clock = SYSTEM_CLOCK) -> Exporter:
    """Everything, bound to the listen address; ConfigError if the address cannot be used."""
    limit_malloc_arenas()
    app = build_app(settings, clock=clock)
    web = settings.web_config
    wsgi = wrap_app(app, web) if web is not None else app
    tls = web.tls_context if web is not None else None
    server = make_server(settings.listen_address, wsgi, ssl_context=tls)
    return Exporter(settings, app, wsgi, server)
