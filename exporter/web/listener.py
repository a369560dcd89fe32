"""The receiver's own listener, next to the one serving /metrics (built by exporter/app.py)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from exporter.common.wsgi import StartResponse, text_response
from exporter.config.webhooks import WebhookSettings
from exporter.pushing.receiver import CONTENT_LENGTHS, WebhookReceiver
from exporter.pushing.state import WebhookState
from exporter.web.generation import Live
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


class CallbackFront:
    """The callback listener's WSGI app: each callback judged by the access of the generation
    current when it arrives (its Authorization value, its allow-list), from start to end."""

    def __init__(self, receiver: WebhookReceiver, live: Live) -> None:
        self.receiver = receiver
        self.live = live

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        access = self.live.generation.callbacks
        if access is None:  # the receiver is off: this listener is never built then
            return text_response(start_response, "404 Not Found", "not found\n")
        return self.receiver.answer(access, environ, start_response)


def make_receiver_server(
    settings: WebhookSettings, state: WebhookState, live: Live
) -> ExporterServer:
    """Bind the callback listener, judging by and with the TLS of `live`'s generation;
    ConfigError if the address cannot be used.

    The caller serves it (exporter/cli/run.py `serve`, or a test's thread) and closes it.
    """
    receiver = WebhookReceiver(
        state,
        settings.auth_header.reveal(),
        path=settings.path,
        max_body=settings.max_body,
        read_timeout=settings.read_timeout,
    )
    server = make_server(
        settings.listen_address,
        CallbackFront(receiver, live),
        workers=settings.workers,
        max_connections=settings.max_connections,
        read_timeout=settings.read_timeout,
        name="webhook",
        tls_source=live.callback_tls,
    )
    server.RequestHandlerClass = _handler(settings.read_timeout)
    return server
