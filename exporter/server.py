"""The HTTP server: a threaded WSGI server that never prints a traceback for a bad request."""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from socketserver import BaseServer, TCPServer, ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from exporter.config import ConfigError, parse_listen_address

log = logging.getLogger("exporter.server")
socket_server_bind = TCPServer.server_bind


class _Discard:
    """Where wsgiref would print a traceback (e.g. a client that stopped reading): nowhere."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


class _QuietHandler(WSGIRequestHandler):
    """Access lines at debug level instead of stderr prints; malformed requests get a 4xx."""

    # A client silent (or not reading) for this long is dropped, so idle and trickling
    # connections cannot pile up threads. It bounds each socket operation, not a whole scrape.
    timeout = 30
    # Error answers to requests too broken to name an HTTP version still get a status line.
    default_request_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        if self.headers.defects:
            # e.g. a header line without a colon: refuse rather than guess what was meant.
            self.send_error(400, "Malformed header line")
            return False
        return True

    def get_stderr(self) -> _Discard:
        return _Discard()

    def setup(self) -> None:
        super().setup()
        if isinstance(self.connection, ssl.SSLSocket):
            # The TLS handshake runs here, in the connection's own thread and under its
            # timeout, so a slow or broken client never holds up the accepting thread.
            self.connection.do_handshake()

    def handle(self) -> None:
        try:
            super().handle()
        except (ConnectionError, TimeoutError, OSError) as exc:
            log.debug("connection ended early: %s", type(exc).__name__)


class ExporterServer(ThreadingMixIn, WSGIServer):
    """Threaded WSGI server; one thread per connection, large listen backlog.

    With `ssl_context` set, every accepted connection is wrapped in TLS with the context of
    that moment, so a reload can swap certificates without closing the listening socket.
    """

    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True
    ssl_context: ssl.SSLContext | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._connections = 0
        self._idle = threading.Condition()
        super().__init__(*args, **kwargs)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._idle:
            self._connections += 1
        try:
            super().process_request(request, client_address)  # hands over to a new thread
        except BaseException:
            self._connection_done()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._connection_done()

    def _connection_done(self) -> None:
        with self._idle:
            self._connections -= 1
            self._idle.notify_all()

    @property
    def connections(self) -> int:
        """Connections being served now (each answers one request)."""
        with self._idle:
            return self._connections

    def wait_until_idle(self, timeout: float) -> int:
        """Wait up to `timeout` seconds for every connection to finish; how many are left."""
        with self._idle:
            self._idle.wait_for(lambda: self._connections == 0, timeout)
            return self._connections

    def get_request(self) -> tuple[socket.socket, Any]:
        connection, address = self.socket.accept()
        context = self.ssl_context
        if context is not None:
            # The handshake runs later, in the connection's thread (see _QuietHandler.setup).
            connection = context.wrap_socket(
                connection, server_side=True, do_handshake_on_connect=False
            )
        return connection, address

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup of the bound host; skip it.
        socket_server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)
        self.setup_environ()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("request from %s failed", client_address[0] if client_address else "?")


class _ExporterServer6(ExporterServer):
    address_family = socket.AF_INET6


def make_server(
    address: str, app: Any, ssl_context: ssl.SSLContext | None = None
) -> ExporterServer:
    """Bind the server to a Prometheus-style listen address; ConfigError if it cannot.

    With an SSLContext, every connection speaks TLS (see exporter/webconfig.py).
    """
    host, port = parse_listen_address(address)
    server_class = _ExporterServer6 if ":" in host else ExporterServer
    try:
        # ':port' means every interface, as in every Prometheus exporter.
        server = server_class((host or "0.0.0.0", port), _QuietHandler)  # noqa: S104  # nosec B104
    except OSError as exc:
        raise ConfigError(f"cannot listen on {address}: {exc.strerror or exc}") from None
    if ssl_context is not None:
        server.ssl_context = ssl_context
        server.base_environ["HTTPS"] = "on"
    server.set_app(app)
    return server


def serve_in_thread(server: BaseServer, poll_interval: float = 0.5) -> threading.Thread:
    """Serve in a daemon thread (used by tests); stop with server.shutdown().

    shutdown() waits until the serving loop next polls: tests poll often to stop quickly.
    """
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": poll_interval},
        name="exporter-http",
        daemon=True,
    )
    thread.start()
    return thread
