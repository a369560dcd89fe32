"""The receiver's own listener, next to the one serving /metrics (built by exporter/app.py)."""

from __future__ import annotations

import ssl
from typing import Any

from exporter.config.webhooks import WebhookSettings
from exporter.pushing.receiver import CONTENT_LENGTHS, WebhookReceiver
from exporter.pushing.state import WebhookState
from exporter.web.server import ExporterServer, _QuietHandler, make_server


def _handler(read_timeout: float) -> type[_QuietHandler]:
    class _CallbackHandler(_QuietHandler):
        # 8x8 sends small bodies at once: a peer silent for --webhook.read-timeout is dropped;
        # the server's deadline bounds the head and a trickled body together to that, too.
        timeout = read_timeout

        def get_environ(self) -> dict[str, Any]:
            environ = super().get_environ()
            # wsgiref keeps the first Content-Length only: the receiver refuses conflicting ones.
            environ[CONTENT_LENGTHS] = tuple(
                value.strip() for value in self.headers.get_all("Content-Length") or ()
            )
            return environ

    return _CallbackHandler


def bridge(state: WebhookState) -> Any:
    """A collector that serves the state's registry from another registry (/metrics)."""

    class _Bridge:
        def collect(self) -> Any:
            return state.registry.collect()

    return _Bridge()


def make_receiver_server(
    settings: WebhookSettings, state: WebhookState, tls: ssl.SSLContext | None = None
) -> ExporterServer:
    """Bind the callback listener (TLS when given); ConfigError if the address cannot be used.

    The caller serves it (exporter/cli/main.py `serve`, or a test's thread) and closes it.
    """
    app = WebhookReceiver(
        state,
        settings.auth_header.reveal(),
        path=settings.path,
        max_body=settings.max_body,
        read_timeout=settings.read_timeout,
    )
    server = make_server(
        settings.listen_address,
        app,
        ssl_context=tls,
        workers=settings.workers,
        max_connections=settings.max_connections,
        read_timeout=settings.read_timeout,
        name="webhook",
    )
    server.RequestHandlerClass = _handler(settings.read_timeout)
    return server
