"""The HTTP server: a fixed pool of WSGI workers behind a selector that waits for whole heads.

Every listener (the one serving /metrics, the webhook receiver's) has its own `ExporterServer`:
its serving loop accepts connections and holds each in a selector, reading non-blockingly (and
doing the TLS handshake non-blockingly) until the request line and headers have all arrived;
only then does one of its `workers` threads, created when serving starts, run the handler, with
the bytes already read replayed ahead of the socket. A silent, trickling or idle client costs a
file descriptor and a few bytes, never a thread; the request's deadline (`read_timeout`, from
the moment of accepting) closes it, and bounds the body the worker reads as well. Connections
over `max_connections` are turned away at once. So a process's threads stay bounded whatever its
clients do (`max_threads`), and one listener's clients cannot starve the other's.
"""

from __future__ import annotations

import contextlib
import heapq
import io
import itertools
import logging
import queue
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from socketserver import BaseServer, TCPServer
from typing import TYPE_CHECKING, Any, ClassVar
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from exporter.config.flags import default
from exporter.config.values import ConfigError, parse_listen_address
from exporter.config.webconfig import client_san_allowed

if TYPE_CHECKING:
    from wsgiref.types import ErrorStream

log = logging.getLogger("exporter.web.server")
socket_server_bind = TCPServer.server_bind

# wsgiref takes a request line of up to 64 KiB; a head this much longer is refused unread.
MAX_HEAD = 80 * 1024
# How often, at most, connections refused over the cap are logged (they come in floods).
REFUSED_LOG_INTERVAL = 10.0
_CHUNK = 64 * 1024
_BUSY = (
    b"HTTP/1.0 503 Service Unavailable\r\nConnection: close\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 21\r\n\r\ntoo many connections\n"
)


def _answer(status: bytes) -> bytes:
    return b"HTTP/1.0 %s\r\nConnection: close\r\nContent-Length: 0\r\n\r\n" % status


class _Discard:
    """Where wsgiref would print a traceback (e.g. a client that stopped reading): nowhere."""

    def write(self, text: str) -> int:
        return len(text)

    def writelines(self, lines: list[str]) -> None:
        pass

    def flush(self) -> None:
        pass


class _RequestReader(io.RawIOBase):
    """The connection's bytes: first those the selector read, then the socket's, until the
    request's deadline; each socket read is bounded by the per-operation timeout as well."""

    def __init__(
        self, sock: socket.socket, head: bytes, deadline: float | None, timeout: float | None
    ) -> None:
        super().__init__()
        self._sock = sock
        self._head = memoryview(head)
        self._deadline = deadline
        self._timeout = timeout

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._head:
            count = min(len(buffer), len(self._head))
            buffer[:count] = self._head[:count]
            self._head = self._head[count:]
            return count
        if self._deadline is None:
            return self._sock.recv_into(buffer)
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request did not arrive within its deadline")
        # A client trickling a byte at a time resets a per-read timeout for ever: the deadline
        # shortens the last one. Writes get the per-operation timeout back.
        self._sock.settimeout(left if self._timeout is None else min(left, self._timeout))
        try:
            return self._sock.recv_into(buffer)
        finally:
            self._sock.settimeout(self._timeout)


@dataclass(eq=False)
class _Accepted:
    """A connection whose head has arrived, on its way to a worker."""

    sock: socket.socket
    address: Any
    head: bytes
    deadline: float


@dataclass(eq=False)
class _Pending:
    """A connection in the selector: its head so far and when it must be complete."""

    sock: socket.socket
    address: Any
    deadline: float
    last: float
    head: bytearray = field(default_factory=bytearray)
    handshaken: bool = False
    events: int = selectors.EVENT_READ
    done: bool = False


class _QuietHandler(WSGIRequestHandler):
    """Access lines at debug level instead of stderr prints; malformed requests get a 4xx."""

    # A client silent (or not reading) for this long is dropped. It bounds each socket
    # operation; the server's read_timeout bounds the whole request.
    timeout: ClassVar[float | None] = 30
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

    def get_stderr(self) -> ErrorStream:
        return _Discard()

    def setup(self) -> None:
        accepted = self.request
        head, deadline = b"", None
        if isinstance(accepted, _Accepted):
            self.request = accepted.sock
            head, deadline = accepted.head, accepted.deadline
        super().setup()
        if self.timeout is None:
            self.connection.setblocking(True)  # the selector left it non-blocking
        # The selector has read the head already (TLS handshake included): the handler reads
        # it again from memory, then the body from the socket under the request's deadline.
        self.rfile.close()
        self.rfile = io.BufferedReader(
            _RequestReader(self.connection, head, deadline, self.timeout)
        )

    def handle(self) -> None:
        try:
            super().handle()
        except (ConnectionError, TimeoutError, OSError) as exc:
            log.debug("connection ended early: %s", type(exc).__name__)


class ExporterServer(WSGIServer):
    """WSGI server with a fixed pool of worker threads and a selector for incoming heads.

    With `ssl_context` set, every accepted connection is wrapped in TLS with it. With
    `tls_source` set instead, the context is asked for at every accept, so a reload changes the
    certificate of the next connection without closing the listening socket.
    """

    request_queue_size = 1024
    allow_reuse_address = True
    ssl_context: ssl.SSLContext | None = None
    tls_source: Callable[[], ssl.SSLContext | None] | None = None

    def __init__(
        self,
        server_address: Any,
        RequestHandlerClass: Any,  # noqa: N803 - socketserver's name
        bind_and_activate: bool = True,
        *,
        workers: int = default("web_workers"),
        max_connections: int = default("web_max_connections"),
        read_timeout: float = default("web_read_timeout"),
        name: str = "web",
    ) -> None:
        if workers < 1 or max_connections < 1 or read_timeout <= 0:
            raise ValueError("workers, max_connections and read_timeout must be positive")
        self.workers = workers
        self.max_connections = max_connections
        self.read_timeout = read_timeout
        self.name = name
        self._connections = 0
        self._idle = threading.Condition()
        self._jobs: queue.SimpleQueue[_Accepted | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.RLock()  # the selector and the pending connections
        self._pending: dict[socket.socket, _Pending] = {}
        self._expiries: list[tuple[float, int, _Pending]] = []
        self._order = itertools.count()
        self._refused = 0
        self._refused_logged = -REFUSED_LOG_INTERVAL
        self._shutdown_request = False
        self._is_shut_down = threading.Event()
        self._serving = False
        self._closed = False
        self._wake_read, self._wake_write = socket.socketpair()
        self._wake_read.setblocking(False)
        self._wake_write.setblocking(False)
        self._selector = selectors.DefaultSelector()
        try:
            super().__init__(server_address, RequestHandlerClass, bind_and_activate)
        except BaseException:
            self._selector.close()
            self._wake_read.close()
            self._wake_write.close()
            raise
        # Accepting never blocks the loop: a client gone before accept() is just skipped.
        self.socket.setblocking(False)
        self._selector.register(self.socket, selectors.EVENT_READ, "listener")
        self._selector.register(self._wake_read, selectors.EVENT_READ, "wake")

    @property
    def max_threads(self) -> int:
        """The most threads this server ever uses: its workers and its serving loop's."""
        return self.workers + 1

    @property
    def connections(self) -> int:
        """Connections open now: waiting for their head, queued or being answered."""
        with self._idle:
            return self._connections

    def wait_until_idle(self, timeout: float) -> int:
        """Wait up to `timeout` seconds for every connection to finish; how many are left."""
        with self._idle:
            self._idle.wait_for(lambda: self._connections == 0, timeout)
            return self._connections

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Accept and read heads until shutdown(); workers answer, so this never blocks."""
        self._is_shut_down.clear()
        try:
            with self._lock:
                if self._closed:
                    return
                self._serving = True
                self._start_workers()
            while not self._shutdown_request and not self._closed:
                ready = self._selector.select(self._next_wait(poll_interval))
                with self._lock:
                    if self._closed:
                        break
                    for key, mask in ready:
                        self._on_ready(key.data, mask)
                    self._expire(time.monotonic())
                self.service_actions()
        finally:
            with self._lock:
                self._serving = False
                if self._closed:
                    self._close_pending()
            self._shutdown_request = False
            self._is_shut_down.set()

    def shutdown(self) -> None:
        """Stop serve_forever() and wait until it has returned (from another thread)."""
        self._shutdown_request = True
        self._wake()
        self._is_shut_down.wait()

    def server_close(self) -> None:
        """No new connections; those waiting for their head are closed, the queued answered."""
        super().server_close()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if not self._serving:
                self._close_pending()
            for _ in self._threads:
                self._jobs.put(None)  # after the queued connections: they are answered first
        self._wake()

    def _close_pending(self) -> None:
        for pending in list(self._pending.values()):
            self._drop(pending)
        with self._lock:
            self._selector.close()
        self._wake_read.close()
        self._wake_write.close()

    def _wake(self) -> None:
        # Already awake (buffer full) or closed: either way nothing waits.
        with contextlib.suppress(OSError):
            self._wake_write.send(b"x")

    def _next_wait(self, poll_interval: float) -> float:
        with self._lock:
            if not self._expiries:
                return poll_interval
            return max(0.0, min(poll_interval, self._expiries[0][0] - time.monotonic()))

    def _start_workers(self) -> None:
        if self._threads:
            return
        for number in range(1, self.workers + 1):
            thread = threading.Thread(
                target=self._work, name=f"{self.name}-worker-{number}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                # The handler reads the socket and the head already read from the _Accepted.
                self.finish_request(job, job.address)  # type: ignore[arg-type]
            except Exception:  # noqa: BLE001 - as socketserver: one debug line, next request
                self.handle_error(job.sock, job.address)
            finally:
                self.shutdown_request(job.sock)
                self._connection_done()

    def _on_ready(self, what: Any, mask: int) -> None:
        if what == "listener":
            # socketserver's own step (get_request, then process_request), unlisted in its hints.
            self._handle_request_noblock()  # type: ignore[attr-defined]
        elif what == "wake":
            with contextlib.suppress(OSError):
                while self._wake_read.recv(512):
                    pass
        elif not what.done:
            self._read_head(what)

    def get_request(self) -> tuple[socket.socket, Any]:
        connection, address = self.socket.accept()
        connection.setblocking(False)
        context = self.tls_source() if self.tls_source is not None else self.ssl_context
        if context is not None:
            # The handshake runs later, non-blockingly, in the selector (see _read_head).
            connection = context.wrap_socket(
                connection, server_side=True, do_handshake_on_connect=False
            )
        return connection, address

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._idle:
            admitted = self._connections < self.max_connections
            if admitted:
                self._connections += 1
        if not admitted:
            self._refuse(request)
            return
        now = time.monotonic()
        pending = _Pending(request, client_address, now + self.read_timeout, now)
        with self._lock:
            self._pending[request] = pending
            self._selector.register(request, selectors.EVENT_READ, pending)
            self._schedule(pending)

    def _refuse(self, sock: socket.socket) -> None:
        if not isinstance(sock, ssl.SSLSocket):
            # One non-blocking send costs no worker; a TLS client just sees the connection close.
            with contextlib.suppress(OSError):
                sock.send(_BUSY)
        sock.close()
        self._refused += 1
        now = time.monotonic()
        if now - self._refused_logged >= REFUSED_LOG_INTERVAL:
            log.debug(
                "%s listener refused %d connections over its cap of %d",
                self.name,
                self._refused,
                self.max_connections,
            )
            self._refused, self._refused_logged = 0, now

    def _schedule(self, pending: _Pending) -> None:
        timeout = getattr(self.RequestHandlerClass, "timeout", None)
        expiry = (
            pending.deadline if timeout is None else min(pending.deadline, pending.last + timeout)
        )
        heapq.heappush(self._expiries, (expiry, next(self._order), pending))

    def _expire(self, now: float) -> None:
        while self._expiries and self._expiries[0][0] <= now:
            _, _, pending = heapq.heappop(self._expiries)
            if pending.done:
                continue
            timeout = getattr(self.RequestHandlerClass, "timeout", None)
            idle = timeout is not None and now - pending.last >= timeout
            if now >= pending.deadline or idle:
                log.debug("%s: no complete request head in time, closed", pending.address[0])
                self._drop(pending)
            else:
                self._schedule(pending)  # bytes came since: its idle time starts later

    def _read_head(self, pending: _Pending) -> None:
        sock = pending.sock
        try:
            if not pending.handshaken and isinstance(sock, ssl.SSLSocket):
                sock.do_handshake()
                if not client_san_allowed(sock):
                    # The toolkit fails the handshake itself; here it has just completed.
                    log.debug("client certificate of %s has no allowed SAN", pending.address[0])
                    self._drop(pending)
                    return
            pending.handshaken = True
            # Read until the socket has nothing more: a TLS socket may hold decrypted bytes
            # (SSLSocket.pending()) that the selector cannot see, so stopping early could
            # leave a complete head waiting for bytes that never come.
            while True:
                chunk = sock.recv(_CHUNK)
                if not chunk:
                    # The client sent all it will: the handler answers what there is (a 400).
                    self._hand_over(pending) if pending.head else self._drop(pending)
                    return
                pending.head += chunk
                pending.last = time.monotonic()
                if _head_complete(pending.head, len(pending.head) - len(chunk)):
                    self._hand_over(pending)
                    return
                if len(pending.head) > MAX_HEAD:
                    too_long = b"\n" not in pending.head
                    self._drop(
                        pending,
                        _answer(
                            b"414 URI Too Long"
                            if too_long
                            else b"431 Request Header Fields Too Large"
                        ),
                    )
                    return
        except (BlockingIOError, ssl.SSLWantReadError):
            self._want(pending, selectors.EVENT_READ)
        except ssl.SSLWantWriteError:
            self._want(pending, selectors.EVENT_WRITE)
        except OSError as exc:  # ssl.SSLError included: a plain client on a TLS port
            log.debug("connection from %s ended early: %s", pending.address[0], type(exc).__name__)
            self._drop(pending)

    def _want(self, pending: _Pending, events: int) -> None:
        if pending.events != events:
            pending.events = events
            self._selector.modify(pending.sock, events, pending)

    def _forget(self, pending: _Pending) -> None:
        pending.done = True
        del self._pending[pending.sock]
        self._selector.unregister(pending.sock)

    def _hand_over(self, pending: _Pending) -> None:
        self._forget(pending)
        self._jobs.put(
            _Accepted(pending.sock, pending.address, bytes(pending.head), pending.deadline)
        )

    def _drop(self, pending: _Pending, answer: bytes = b"") -> None:
        self._forget(pending)
        if answer:
            with contextlib.suppress(OSError):  # best effort: the client is dropped anyway
                pending.sock.send(answer)
        pending.sock.close()
        self._connection_done()

    def _connection_done(self) -> None:
        with self._idle:
            self._connections -= 1
            self._idle.notify_all()

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup of the bound host; skip it.
        socket_server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)
        self.setup_environ()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("request from %s failed", client_address[0] if client_address else "?")


def _head_complete(head: bytearray, start: int) -> bool:
    """Whether the head has its empty line, as http.server reads it (CRLF or bare LF lines)."""
    start = max(0, start - 2)
    return head.find(b"\n\r\n", start) >= 0 or head.find(b"\n\n", start) >= 0


class _ExporterServer6(ExporterServer):
    address_family = socket.AF_INET6


def make_server(
    address: str,
    app: Any,
    ssl_context: ssl.SSLContext | None = None,
    *,
    workers: int = default("web_workers"),
    max_connections: int = default("web_max_connections"),
    read_timeout: float = default("web_read_timeout"),
    name: str = "web",
    tls_source: Callable[[], ssl.SSLContext | None] | None = None,
) -> ExporterServer:
    """Bind the server to a Prometheus-style listen address; ConfigError if it cannot.

    With an SSLContext, every connection speaks TLS (see exporter/config/webconfig.py); with
    `tls_source`, every connection speaks TLS with the context it gives at that moment (TLS is
    on or off for the server's whole life: it serves HTTPS if the source gives one now). `name`
    prefixes its worker threads' names (web-worker-1, ...).
    """
    host, port = parse_listen_address(address)
    server_class = _ExporterServer6 if ":" in host else ExporterServer
    try:
        server = server_class(
            # ':port' means every interface, as in every Prometheus exporter.
            (host or "0.0.0.0", port),  # noqa: S104  # nosec B104
            _QuietHandler,
            workers=workers,
            max_connections=max_connections,
            read_timeout=read_timeout,
            name=name,
        )
    except OSError as exc:
        raise ConfigError(f"cannot listen on {address}: {exc.strerror or exc}") from None
    server.ssl_context, server.tls_source = ssl_context, tls_source
    if (tls_source() if tls_source is not None else ssl_context) is not None:
        server.base_environ["HTTPS"] = "on"
    server.set_app(app)
    return server


def serve_in_thread(server: BaseServer, poll_interval: float = 0.5) -> threading.Thread:
    """Serve in a daemon thread (used by tests); stop with server.shutdown().

    shutdown() wakes the serving loop at once; `poll_interval` is how often it runs
    service_actions() when nothing happens.
    """
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": poll_interval},
        name="exporter-http",
        daemon=True,
    )
    thread.start()
    return thread
