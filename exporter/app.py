"""The composition root: `Settings` in, a ready-to-serve exporter out.

Everything the exporter is made of is built here, once: an API client per subaccount, a
scraper per subaccount (in `Scrapers`), the self-metrics, the WSGI application behind the web
config's basic auth and headers, and the HTTP server with the web config's TLS context; with
--webhook.listen-address, the callback listener and the state its metrics come from; with
--collector.webhooks, the reader of each configured subaccount's webhook list.
`exporter/cli.py` turns flags into settings, calls `build_exporter` and serves.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from exporter.client import ApiClient
from exporter.config import ConfigError, Settings
from exporter.scraper import SYSTEM_CLOCK, Clock, NumbersClient, Scrapers, SubaccountScraper
from exporter.selfmetrics import SelfMetrics
from exporter.server import ExporterServer, make_server
from exporter.web import ExporterApp
from exporter.webconfig import WsgiApp, wrap_app
from exporter.webhooks.configured import WebhookConfigCollector, WebhooksClient
from exporter.webhooks.listener import bridge, make_receiver_server
from exporter.webhooks.state import WebhookState

if TYPE_CHECKING:
    from exporter.simulator import Simulator

ClientFactory = Callable[[str], NumbersClient | None]


@dataclass(frozen=True)
class Exporter:
    """The built exporter: `server` serves `wsgi`, which is `app` behind the web config.

    `callbacks` is the webhook receiver's listener (None unless --webhook.listen-address);
    its events reach /metrics through `webhook_state`.
    """

    settings: Settings
    app: ExporterApp
    wsgi: WsgiApp
    server: ExporterServer
    callbacks: ExporterServer | None = None
    webhook_state: WebhookState | None = None

    @property
    def callback_url(self) -> str | None:
        """Where the callback listener is reached on this host (e.g. by the demo simulator)."""
        if self.callbacks is None or self.settings.webhooks is None:
            return None
        host, port = self.callbacks.server_address[:2]
        if not host or ipaddress.ip_address(host).is_unspecified:
            host = "127.0.0.1"
        elif ":" in str(host):
            host = f"[{host}]"
        scheme = "https" if self.callbacks.base_environ.get("HTTPS") == "on" else "http"
        return f"{scheme}://{host}:{port}{self.settings.webhooks.path}"


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
    webhook_lists: WebhookConfigCollector | None = None,
) -> Scrapers:
    """One scraper per configured subaccount, and the means to add probed ones.

    With `webhook_lists` (--collector.webhooks), each configured subaccount's scraper reads
    its webhook list after every good fetch; probed subaccounts never do.
    """
    new_client = new_client or api_client_factory(settings)
    configured = [config.subaccount for config in settings.subaccounts]
    reads_webhooks = frozenset(configured) if webhook_lists is not None else frozenset()

    def new_scraper(subaccount: str) -> SubaccountScraper:
        client = new_client(subaccount)
        after_fetch = None
        if (
            webhook_lists is not None
            and subaccount in reads_webhooks
            and isinstance(client, WebhooksClient)
        ):
            after_fetch = webhook_lists.reader(client)
        return SubaccountScraper(
            subaccount,
            client,
            metrics,
            per_number=settings.per_number,
            cache_ttl=settings.cache_ttl,
            serve_stale_for=settings.serve_stale_for,
            clock=clock,
            after_fetch=after_fetch,
        )

    for subaccount in configured:
        metrics.start_at_zero(subaccount)
    return Scrapers(configured, new_scraper)


def build_app(
    settings: Settings,
    new_client: ClientFactory | None = None,
    clock: Clock = SYSTEM_CLOCK,
    webhook_state: WebhookState | None = None,
) -> ExporterApp:
    """The WSGI application with its scrapers and self-metrics (no web config, no socket).

    The self-metrics registry also serves the pushed events of `webhook_state` and, with
    --collector.webhooks, the webhook lists read on scrape.
    """
    metrics = SelfMetrics()
    webhook_lists = None
    if settings.collector_webhooks:
        webhook_lists = WebhookConfigCollector()
        metrics.registry.register(webhook_lists)
    if webhook_state is not None:
        metrics.registry.register(bridge(webhook_state))
    scrapers = build_scrapers(settings, metrics, new_client, clock, webhook_lists)
    return ExporterApp(settings, scrapers, metrics)


def build_webhook_state(settings: Settings, clock: Clock = SYSTEM_CLOCK) -> WebhookState | None:
    """What pushed events are remembered in, when the receiver is on."""
    hooks = settings.webhooks
    if hooks is None:
        return None
    return WebhookState(hooks.allowed, per_number=hooks.per_number, clock=clock.time)


def build_exporter(settings: Settings, clock: Clock = SYSTEM_CLOCK) -> Exporter:
    """Everything, bound to its addresses; ConfigError if an address cannot be used."""
    webhook_state = build_webhook_state(settings, clock)
    app = build_app(settings, clock=clock, webhook_state=webhook_state)
    web = settings.web_config
    wsgi = wrap_app(app, web) if web is not None else app
    tls = web.tls_context if web is not None else None
    server = make_server(settings.listen_address, wsgi, ssl_context=tls)
    callbacks = None
    if settings.webhooks is not None and webhook_state is not None:
        # The web config's TLS serves the callbacks too; its basic auth does not (8x8 sends
        # the registered Authorization value instead).
        callback_tls = tls if settings.webhooks.web_tls else None
        try:
            callbacks = make_receiver_server(settings.webhooks, webhook_state, callback_tls)
        except ConfigError:
            server.server_close()
            raise
    return Exporter(settings, app, wsgi, server, callbacks, webhook_state)


def push_demo_callbacks(exporter: Exporter, simulator: Simulator) -> None:
    """--demo: the simulator sends VNU and VSS callbacks to the exporter's own receiver."""
    url, hooks = exporter.callback_url, exporter.settings.webhooks
    if url is not None and hooks is not None:
        simulator.start_push(url, hooks.auth_header.reveal())
