"""The composition root: `Settings` in, a ready-to-serve exporter out.

Everything the exporter is made of is built here: an API client per subaccount, a scraper per
subaccount (in `Scrapers`), the self-metrics, the WSGI application behind the web config's
basic auth and headers, and the HTTP server with the web config's TLS context; with
--webhook.listen-address, the callback listener and the state its metrics come from; with
--collector.webhooks, the reader of each configured subaccount's webhook list.
`exporter/cli/run.py` turns flags into settings, calls `build_exporter` and serves.

`Exporter.reload()` (SIGHUP, `POST /-/reload`) assembles the settings again from the same flags
and environment, which re-reads the config file, the key files, the web config file and the
webhook Authorization file, and builds a new `Generation` (exporter/web/generation.py) from them
whole: settings, scrapers, the web front behind basic auth and headers, both listeners' TLS
contexts, and who may call back. Only then is it swapped in, in one assignment; every request
reads the generation once, so it answers wholly from one configuration, and requests in flight
finish with what they started with.

- a subaccount whose key and base URL are unchanged keeps its scraper, so its cache, stale
  data and in-flight fetch (single flight) carry on; a subaccount whose key or base URL changed
  gets a new scraper and client (its cache is dropped: it belonged to the old key); probed
  subaccounts are treated alike and stay in the probe cache;
- basic auth users, security headers and the TLS certificate, key, CA and versions apply to the
  next request or connection, on the callback listener too (its TLS is the web config's);
- the receiver takes callbacks of the subaccounts configured now, with the Authorization value
  of the file now; what it remembers of earlier callbacks stays;
- the self-metrics (counters, histograms) carry on;
- the prepaid balance (--balance.account-id) is read with the API key of now: a reload that
  changes the key (its file, or the config file's `api_key_file`) hands the reader a new
  client, which reads at the next scrape; its last value and failure counts carry on.

What flags alone decide (listen addresses, telemetry and callback paths, timeouts, cache,
logging) cannot change, as the flags are the same; turning TLS on or off needs a restart too,
since the scheme Prometheus scrapes would change. A reload that fails for any reason changes
nothing.
"""

from __future__ import annotations

import dataclasses
import logging
import ssl
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from exporter.common.logs import log_event
from exporter.common.memory import limit_malloc_arenas
from exporter.common.wsgi import WsgiApp
from exporter.config.settings import Settings
from exporter.config.values import ConfigError, Secret, host_port, loopback_for
from exporter.config.webconfig import ssl_context
from exporter.metrics.selfmetrics import SelfMetrics
from exporter.polling.balance import BalanceCollector
from exporter.polling.client import ApiClient, Transport
from exporter.polling.configured import WebhookConfigCollector, WebhooksClient
from exporter.polling.scraper import SYSTEM_CLOCK, Clock, NumbersClient, Scrapers, SubaccountScraper
from exporter.pushing.receiver import CallbackAccess
from exporter.pushing.state import WebhookState
from exporter.web.auth import wrap_app
from exporter.web.generation import Configured, Generation, Live
from exporter.web.listener import bridge, make_receiver_server
from exporter.web.routes import ExporterApp
from exporter.web.server import ExporterServer, make_server

if TYPE_CHECKING:
    from prometheus_client.core import Metric

    from exporter.simulator import Simulator

log = logging.getLogger("exporter")

ClientFactory = Callable[[str], NumbersClient | None]


SettingsLoader = Callable[[], Settings]
ReloadListener = Callable[[Settings], None]


class Exporter:
    """The built exporter: `server` serves the live generation's front; `reload()` re-reads.

    `load_settings` assembles the settings again (from the flags and environment of start-up);
    without it, reloading is not available. `reload_listeners` see the new settings before they
    are used (the log filter learns rotated keys there).

    `callbacks` is the webhook receiver's listener (None unless --webhook.listen-address); its
    events reach /metrics through `webhook_state`. Who may call back, and with which
    certificate, follow reloads like the rest; its flags (address, path, limits) need a restart.
    """

    def __init__(
        self,
        app: ExporterApp,
        live: Live,
        server: ExporterServer,
        load_settings: SettingsLoader | None = None,
        clock: Clock = SYSTEM_CLOCK,
        *,
        callbacks: ExporterServer | None = None,
        webhook_state: WebhookState | None = None,
        webhook_lists: WebhookConfigCollector | None = None,
        balance: BalanceSlot | None = None,
    ) -> None:
        self.app = app
        self.balance = balance
        self.live = live
        self.server = server
        self.callbacks = callbacks
        self.webhook_state = webhook_state
        self.webhook_lists = webhook_lists
        self.reload_listeners: list[ReloadListener] = []
        self._load_settings = load_settings
        self._clock = clock
        self._reload_lock = threading.Lock()
        if load_settings is not None:
            app.reload = self.reload
        app.metrics.configuration_loaded(clock.time())
        app.ready.set()

    @property
    def generation(self) -> Generation:
        return self.live.generation

    @property
    def settings(self) -> Settings:
        return self.live.generation.settings

    @property
    def callback_url(self) -> str | None:
        """Where the callback listener is reached on this host (e.g. by the demo simulator)."""
        hooks = self.settings.webhooks
        if self.callbacks is None or hooks is None:
            return None
        host, port = self.callbacks.server_address[:2]
        scheme = "https" if self.callbacks.base_environ.get("HTTPS") == "on" else "http"
        return f"{scheme}://{host_port(loopback_for(str(host)), port)}{hooks.path}"

    def reload(self) -> Settings:
        """Re-read the configuration and swap it in; ConfigError (nothing changed) on failure."""
        with self._reload_lock:
            old = self.live.generation
            try:
                settings = self._reloaded_settings(old.settings)
                scrapers = build_scrapers(
                    settings,
                    self.app.metrics,
                    clock=self._clock,
                    webhook_lists=self.webhook_lists,
                    kept=_unchanged(old, settings),
                )
                new = build_generation(self.app, settings, scrapers)
                follow_balance = (
                    self.balance.prepare(settings) if self.balance is not None else lambda: None
                )
                for listener in self.reload_listeners:
                    listener(settings)
            except Exception as exc:  # noqa: BLE001 - a failed reload keeps what runs now
                reason = str(exc) if isinstance(exc, ConfigError) else _unexpected(exc)
                self.app.metrics.configuration_failed()
                log_event(log, logging.ERROR, "reloading the configuration failed", err=reason)
                raise ConfigError(reason) from None
            self.live.generation = new  # the one swap: both listeners, every route
            follow_balance()
            _start_at_zero(new, self.app.metrics, self.webhook_state)
            self.app.metrics.configuration_loaded(self._clock.time())
            log_event(
                log, logging.INFO, "configuration reloaded", **_changes(old.settings, settings)
            )
            return settings

    def _reloaded_settings(self, old: Settings) -> Settings:
        if self._load_settings is None:
            raise ConfigError("reloading is not available")
        new = self._load_settings()
        if (_tls_context(old) is None) != (_tls_context(new) is None):
            raise ConfigError("turning TLS on or off needs a restart")
        return new


def build_generation(app: ExporterApp, settings: Settings, scrapers: Scrapers) -> Generation:
    """Everything one load of the configuration serves, complete before it serves.

    The web config's certificate serves the callbacks too; its basic auth and its
    client-certificate check do not (8x8 sends the registered Authorization value instead).
    """
    configured = Configured(settings, scrapers)
    tls = _tls_context(settings)
    hooks = settings.webhooks
    return Generation(
        configured=configured,
        front=_behind_web_config(app.bound(configured), settings),
        tls=tls,
        callbacks=(
            CallbackAccess.of(hooks.auth_header.reveal(), hooks.allowed)
            if hooks is not None
            else None
        ),
        callback_tls=callback_tls_context(settings)
        if hooks is not None and hooks.web_tls
        else None,
    )


def _start_at_zero(
    generation: Generation, metrics: SelfMetrics, webhook_state: WebhookState | None
) -> None:
    """The series of the generation's subaccounts exist from when it serves, at zero."""
    for config in generation.settings.subaccounts:
        metrics.start_at_zero(config.subaccount)
    access = generation.callbacks
    if webhook_state is not None and access is not None and access.allowed is not None:
        webhook_state.start_at_zero(access.allowed)


# Threads of the exporter's own beyond its workers: the main thread, the fetch-deadline watchdog,
# and one reload or shutdown thread at a time.
OWN_THREADS = 3


def thread_bound(settings: Settings) -> int:
    """The most threads the exporter can ever have with these settings (the demo's simulator
    aside): the fetch workers, each listener's workers and serving loop, and its own.

    The systemd unit's TasksMax and the README's sizing formula are checked against it.
    """
    listeners = settings.web_workers + 1
    if settings.webhooks is not None:
        listeners += settings.webhooks.workers + 1
    return settings.parallel_fetches + listeners + OWN_THREADS


def _behind_web_config(app: WsgiApp, settings: Settings) -> WsgiApp:
    web = settings.web_config
    return wrap_app(app, web) if web is not None else app


def _tls_context(settings: Settings) -> ssl.SSLContext | None:
    web = settings.web_config
    return web.tls_context if web is not None else None


_VERIFY_MODES = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}


def callback_tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The web config's certificate for the callback listener, with the listener's own
    client-certificate setting (--webhook.tls-client-auth), never the one for /metrics."""
    web, hooks = settings.web_config, settings.webhooks
    if web is None or web.tls is None or hooks is None:
        return None
    mode = _VERIFY_MODES[hooks.client_auth]
    tls = web.tls
    if mode != ssl.CERT_NONE and tls.client_ca_file is None and tls.client_ca_pem is None:
        raise ConfigError(
            f"--webhook.tls-client-auth {hooks.client_auth} needs client_ca_file in the web "
            "config's tls_server_config"
        )
    return ssl_context(dataclasses.replace(tls, client_auth=mode), "webhook listener TLS")


def _unchanged(old: Generation, new: Settings) -> list[SubaccountScraper]:
    """The scrapers whose subaccount is reached with the same key and base URL as before."""
    return [
        scraper
        for scraper in old.scrapers.every()
        if old.settings.subaccount_config(scraper.subaccount)
        == new.subaccount_config(scraper.subaccount)
    ]


def _changes(old: Settings, new: Settings) -> dict[str, object]:
    """What a reload changed, for its log line (never a key, only whether one changed)."""
    before = {c.subaccount: c for c in old.subaccounts}
    after = {c.subaccount: c for c in new.subaccounts}
    changed = [s for s in after if s in before and before[s] != after[s]]
    return {
        "subaccounts": len(after),
        "added": ",".join(s for s in after if s not in before) or None,
        "removed": ",".join(s for s in before if s not in after) or None,
        "changed": ",".join(changed) or None,
    }


def _unexpected(exc: Exception) -> str:
    return f"unexpected {type(exc).__name__}"


def api_client_factory(settings: Settings) -> ClientFactory:
    """Builds the API client of a subaccount (None when no key reaches it).

    Every client of one factory (one configuration load) shares one connection pool, sized for
    the fetches one scrape runs at once. The factory keeps the pool alive; so do the clients,
    which may outlive it (a reload keeps the scrapers of unchanged subaccounts): the pool is
    closed when the last of them is gone.
    """
    transport = Transport(pool_maxsize=settings.parallel_fetches)

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
            transport=transport,
        )

    return new_client


def build_scrapers(
    settings: Settings,
    metrics: SelfMetrics,
    new_client: ClientFactory | None = None,
    clock: Clock = SYSTEM_CLOCK,
    webhook_lists: WebhookConfigCollector | None = None,
    kept: Sequence[SubaccountScraper] = (),
) -> Scrapers:
    """One scraper per configured subaccount, and the means to add probed ones.

    With `webhook_lists` (--collector.webhooks), each configured subaccount's scraper reads
    its webhook list after every good fetch; probed subaccounts never do. `kept` are scrapers
    of the configuration before a reload that serve on unchanged. Building them changes nothing
    outside them (a reload may still fail and throw them away).
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
            secrets=_keys_of(settings, subaccount),
        )

    return Scrapers(configured, new_scraper, kept=kept)


def _keys_of(settings: Settings, subaccount: str) -> tuple[Secret, ...]:
    key = settings.subaccount_config(subaccount).api_key
    return (key,) if key is not None else ()


def build_app(
    settings: Settings,
    new_client: ClientFactory | None = None,
    clock: Clock = SYSTEM_CLOCK,
    webhook_state: WebhookState | None = None,
    webhook_lists: WebhookConfigCollector | None = None,
    balance: BalanceSlot | None = None,
) -> ExporterApp:
    """The WSGI application with its scrapers and self-metrics (no web config, no socket).

    The self-metrics registry also serves the pushed events of `webhook_state` and, with
    --collector.webhooks, the webhook lists read on scrape.
    """
    metrics = SelfMetrics()
    if webhook_lists is None and settings.collector_webhooks:
        webhook_lists = WebhookConfigCollector()
    if webhook_lists is not None:
        metrics.registry.register(webhook_lists)
    metrics.registry.register(balance if balance is not None else BalanceSlot(settings))
    if webhook_state is not None:
        metrics.registry.register(bridge(webhook_state))
    scrapers = build_scrapers(settings, metrics, new_client, clock, webhook_lists=webhook_lists)
    for config in settings.subaccounts:
        metrics.start_at_zero(config.subaccount)
    app = ExporterApp(settings, scrapers, metrics)
    app.webhook_state = webhook_state  # the status page shows its last callbacks
    return app


def balance_key(settings: Settings) -> Secret | None:
    """The key the balance is read with: the default key, else the first subaccount's."""
    return settings.api_key or next((s.api_key for s in settings.subaccounts if s.api_key), None)


def _balance_client(settings: Settings) -> ApiClient | None:
    config, key = settings.balance, balance_key(settings)
    if config is None or key is None:
        return None
    return ApiClient(
        config.base_url,
        key,
        timeout=config.timeout,
        retries=settings.api_retries,
        max_response_bytes=1 << 20,
    )


def build_balance(settings: Settings, client: ApiClient | None = None) -> BalanceCollector | None:
    """--balance.account-id: the prepaid balance, read on its own schedule with the API key
    (through `client` when one is built already)."""
    config, client = settings.balance, client or _balance_client(settings)
    if config is None or client is None:
        return None
    return BalanceCollector(client, config.account_id, config.interval, config.timeout)


class BalanceSlot:
    """The balance reader of the configuration serving now, registered once in the self-metrics.

    A reload that changes what it reads with (the key; the flags stay those of start-up) hands
    the running reader a new client, so its last value, schedule and failure counts carry on;
    one that gives a key where there was none builds the reader.
    """

    def __init__(self, settings: Settings) -> None:
        self.reader = build_balance(settings)
        self._source = (settings.balance, balance_key(settings))

    def prepare(self, settings: Settings) -> Callable[[], None]:
        """What to apply once the reload's generation serves (nothing here can fail then)."""
        source = (settings.balance, balance_key(settings))
        if source == self._source:
            return lambda: None
        reader, client = self.reader, _balance_client(settings)
        # A reader is built only where there was none; the client is the one built above.
        replacement = build_balance(settings, client) if reader is None and client else None

        def apply() -> None:
            if reader is not None and client is not None:
                reader.use_client(client)
            else:
                self.reader = replacement
            self._source = source

        return apply

    def collect(self) -> Iterator[Metric]:
        reader = self.reader
        return reader.collect() if reader is not None else iter(())

    def describe(self) -> list[Metric]:
        return []


def build_webhook_state(settings: Settings, clock: Clock = SYSTEM_CLOCK) -> WebhookState | None:
    """What pushed events are remembered in, when the receiver is on."""
    hooks = settings.webhooks
    if hooks is None:
        return None
    return WebhookState(hooks.allowed, per_number=hooks.per_number, clock=clock.time)


def build_exporter(
    settings: Settings,
    clock: Clock = SYSTEM_CLOCK,
    load_settings: SettingsLoader | None = None,
) -> Exporter:
    """Everything, bound to its addresses; ConfigError if an address cannot be used.

    `load_settings` assembles the settings again on reload (see `Exporter.reload`).
    """
    limit_malloc_arenas()
    webhook_state = build_webhook_state(settings, clock)
    webhook_lists = WebhookConfigCollector() if settings.collector_webhooks else None
    balance = BalanceSlot(settings)
    app = build_app(
        settings,
        clock=clock,
        webhook_state=webhook_state,
        webhook_lists=webhook_lists,
        balance=balance,
    )
    live = Live(build_generation(app, settings, app.scrapers))
    app.current = live.configured
    server = make_server(
        settings.listen_address,
        live.serve_web,
        workers=settings.web_workers,
        max_connections=settings.web_max_connections,
        read_timeout=settings.web_read_timeout,
        tls_source=live.web_tls,
    )
    callbacks = None
    if settings.webhooks is not None and webhook_state is not None:
        try:
            callbacks = make_receiver_server(settings.webhooks, webhook_state, live)
        except ConfigError:
            server.server_close()
            raise
    return Exporter(
        app,
        live,
        server,
        load_settings,
        clock,
        callbacks=callbacks,
        webhook_state=webhook_state,
        webhook_lists=webhook_lists,
        balance=balance,
    )


def push_demo_callbacks(exporter: Exporter, simulator: Simulator) -> None:
    """--demo: the simulator sends VNU and VSS callbacks to the exporter's own receiver."""
    url, hooks = exporter.callback_url, exporter.settings.webhooks
    if url is not None and hooks is not None:
        simulator.start_push(url, hooks.auth_header.reveal())
