"""One configuration as both listeners serve it, and the one place the current one is kept.

A `Generation` is built whole from one load of the configuration (exporter/app.py) and never
changes: the settings, the scrapers built from them, the web front (the routes bound to those
two, behind the web config's basic auth and headers), the TLS context of each listener, and who
may call back. `Live` holds the one serving now; a reload replaces it in one assignment. Each
request reads it once and answers wholly from what it read; each connection takes the TLS
context of the generation current when it is accepted. So no request sees the settings of one
configuration and the scrapers, users or allow-list of another, and a reload that fails to
build its generation changes nothing.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from exporter.common.wsgi import StartResponse, WsgiApp
from exporter.config.settings import Settings
from exporter.polling.scraper import Scrapers
from exporter.pushing.receiver import CallbackAccess


@dataclass(frozen=True)
class Configured:
    """One configuration's settings and the scrapers built from them: what routes answer from."""

    settings: Settings
    scrapers: Scrapers


@dataclass(frozen=True)
class Generation:
    """Everything a reload changes, built completely before it serves."""

    configured: Configured
    # The routes bound to `configured`, behind the web config's basic auth and headers.
    front: WsgiApp
    tls: ssl.SSLContext | None
    # None while the webhook receiver is off.
    callbacks: CallbackAccess | None = None
    callback_tls: ssl.SSLContext | None = None

    @property
    def settings(self) -> Settings:
        return self.configured.settings

    @property
    def scrapers(self) -> Scrapers:
        return self.configured.scrapers


class Live:
    """The generation serving now. Replaced whole (`generation = ...`), read once per use."""

    def __init__(self, first: Generation) -> None:
        self.generation = first

    def configured(self) -> Configured:
        return self.generation.configured

    def serve_web(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """The web listener's WSGI app: the current generation's front."""
        return self.generation.front(environ, start_response)

    def web_tls(self) -> ssl.SSLContext | None:
        """The TLS context for a connection the web listener accepts now."""
        return self.generation.tls

    def callback_tls(self) -> ssl.SSLContext | None:
        """The TLS context for a connection the callback listener accepts now."""
        return self.generation.callback_tls
