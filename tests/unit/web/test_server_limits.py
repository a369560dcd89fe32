"""The server's limits: a fixed pool of named workers per listener, heads read in a selector (so
idle, trickling and silent TLS clients take no worker), a whole-request deadline, a connection
cap per listener, and the flags that set them."""

from __future__ import annotations

import contextlib
import http.client
import resource
import select
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from bench.connections import measure_idle_connections
from exporter.config.flags import build_parser
from exporter.config.settings import settings_from_flags
from exporter.config.values import ConfigError
from exporter.config.webhooks import webhook_settings
from exporter.web.server import ExporterServer, _RequestReader, make_server, serve_in_thread
from tests.support.exporters import self_signed_certificate
from tests.support.processes import wait_until

SAFETY = 20.0  # only ever reached when the server fails to do its part
ENV = {"EIGHTBYEIGHT_API_KEY": "k", "EIGHTBYEIGHT_WEBHOOK_AUTH_HEADER": "Bearer x"}


class App:
    """Answers 200; a POST's body is read whole, and a body that does not arrive is a 408."""

    def __init__(self) -> None:
        self.calls = 0
        self.timeouts = 0

    def __call__(self, environ, start_response):
        self.calls += 1
        status = "200 OK"
        if environ["REQUEST_METHOD"] == "POST":
            try:
                length = int(environ.get("CONTENT_LENGTH") or 0)
                environ["wsgi.input"].read(length)
            except TimeoutError:
                self.timeouts += 1
                status = "408 Request Timeout"
        start_response(status, [("Content-Type", "text/plain"), ("Content-Length", "3")])
        return [b"ok\n"]


@contextmanager
def serving(server: ExporterServer) -> Iterator[ExporterServer]:
    thread = serve_in_thread(server, poll_interval=0.05)
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(SAFETY)


def listener(app=None, tls=None, **limits) -> ExporterServer:
    return make_server("127.0.0.1:0", app or App(), ssl_context=tls, **limits)


def port_of(server: ExporterServer) -> int:
    return server.server_address[1]


def workers_of(server: ExporterServer) -> list[str]:
    prefix = f"{server.name}-worker-"
    return sorted(t.name for t in threading.enumerate() if t.name.startswith(prefix))


def get_status(port: int, path: str = "/", context: ssl.SSLContext | None = None) -> int:
    if context is None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=SAFETY)
    else:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=SAFETY, context=context)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


@contextmanager
def idle_connections(port: int, count: int) -> Iterator[list[socket.socket]]:
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=SAFETY))
        yield socks
    finally:
        for sock in socks:
            sock.close()


def read_until_closed(sock: socket.socket, timeout: float = SAFETY) -> bytes:
    """Everything the server sends until it closes; fails if it has not closed by `timeout`."""
    sock.settimeout(timeout)
    chunks = []
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def trickle_until_closed(sock: socket.socket, data: bytes, every: float) -> tuple[bool, bytes]:
    """Send `data` a byte every `every` s; (closed by the server, what it answered)."""
    stop = time.monotonic() + SAFETY
    answer = b""
    for byte in data:
        if time.monotonic() > stop:
            break
        try:
            sock.sendall(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            return True, answer
        readable, _, _ = select.select([sock], [], [], every)
        if readable:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                return True, answer
            if not chunk:
                return True, answer
            answer += chunk
    return False, answer


# --- workers ------------------------------------------------------------------------------------


def test_workers_are_named_and_as_many_as_configured():
    server = listener(workers=3, name="web")
    assert server.max_threads == 4
    with serving(server):
        wait_until(lambda: len(workers_of(server)) == 3, timeout=SAFETY, what="workers")
        assert workers_of(server) == ["web-worker-1", "web-worker-2", "web-worker-3"]
        assert get_status(port_of(server)) == 200
        assert len(workers_of(server)) == 3  # the same threads answer, none is added
    wait_until(lambda: not workers_of(server), timeout=SAFETY, what="workers gone after close")


def test_idle_connections_take_no_worker_and_no_thread():
    web, hooks = listener(workers=2, name="web"), listener(workers=2, name="webhook")
    with serving(web), serving(hooks):
        wait_until(lambda: len(workers_of(web)) == len(workers_of(hooks)) == 2, timeout=SAFETY)
        threads = threading.active_count()
        with idle_connections(port_of(hooks), 6), idle_connections(port_of(web), 6):
            wait_until(lambda: web.connections == hooks.connections == 6, timeout=SAFETY)
            assert get_status(port_of(web), "/metrics") == 200
            assert threading.active_count() == threads
            # The idle ones are still open, waiting; the answered one is closed.
            wait_until(lambda: web.connections == 6, timeout=SAFETY)


def test_silent_tls_clients_take_no_worker(tmp_path):
    cert, key = self_signed_certificate(tmp_path, "server")
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    client = ssl.create_default_context(cafile=str(cert))
    server = listener(tls=tls, workers=1)
    with serving(server), idle_connections(port_of(server), 3):
        wait_until(lambda: server.connections == 3, timeout=SAFETY)
        assert get_status(port_of(server), context=client) == 200


# --- deadlines ----------------------------------------------------------------------------------


def test_a_read_past_the_requests_deadline_times_out_without_a_per_read_timeout():
    """In-process, for the fast loop: the slow tests below trickle real requests."""
    ours, theirs = socket.socketpair()
    with ours, theirs:
        reader = _RequestReader(ours, b"GET", time.monotonic() + 0.2, None)
        buffer = bytearray(16)
        assert reader.readinto(buffer) == 3  # the head the selector read comes first
        timed_out: list[TimeoutError] = []

        def read() -> None:
            try:
                reader.readinto(buffer)
            except TimeoutError as exc:
                timed_out.append(exc)

        thread = threading.Thread(target=read, daemon=True)
        thread.start()
        thread.join(30)
        assert not thread.is_alive(), "a silent client held the read past the deadline"
        assert timed_out
        with pytest.raises(TimeoutError, match="did not arrive within its deadline"):
            reader.readinto(buffer)


@pytest.mark.slow
def test_a_trickled_head_is_cut_at_the_deadline():
    app = App()
    server = listener(app, workers=1, read_timeout=1.0)
    # Timed from before connecting: the deadline runs from the server's accept, which may come
    # before create_connection returns here.
    started = time.monotonic()
    with serving(server), socket.create_connection(("127.0.0.1", port_of(server))) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n")
        closed, answer = trickle_until_closed(sock, b"X-Slow: " + b"y" * 1000, every=0.2)
        assert closed, "a head trickled a byte per 0.2 s was never cut off"
        assert time.monotonic() - started >= 1.0
        assert answer == b""
        assert app.calls == 0
        wait_until(lambda: server.connections == 0, timeout=SAFETY)


@pytest.mark.slow
def test_a_trickled_body_is_cut_at_the_deadline():
    app = App()
    server = listener(app, workers=1, read_timeout=1.0)
    started = time.monotonic()  # before connecting, as above
    with serving(server), socket.create_connection(("127.0.0.1", port_of(server))) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
        closed, answer = trickle_until_closed(sock, b"z" * 1000, every=0.2)
        answer += read_until_closed(sock) if not closed else b""
        assert answer.startswith(b"HTTP/1.0 408 "), answer[:100]
        assert time.monotonic() - started >= 1.0
        assert app.timeouts == 1
        wait_until(lambda: server.connections == 0, timeout=SAFETY)


# --- the connection cap -------------------------------------------------------------------------


def test_over_the_cap_a_connection_is_closed_without_a_worker():
    app = App()
    server = listener(app, workers=1, max_connections=3)
    with serving(server):
        wait_until(lambda: len(workers_of(server)) == 1, timeout=SAFETY)
        threads = threading.active_count()
        with idle_connections(port_of(server), 3) as waiting:
            wait_until(lambda: server.connections == 3, timeout=SAFETY)
            with socket.create_connection(("127.0.0.1", port_of(server)), timeout=SAFETY) as extra:
                answer = read_until_closed(extra)
            assert answer in (b"",) or answer.startswith(b"HTTP/1.0 503 "), answer[:100]
            assert b"Connection: close" in answer or answer == b""
            assert app.calls == 0
            assert server.connections == 3
            assert threading.active_count() == threads
            for sock in waiting:
                sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
            for sock in waiting:
                assert read_until_closed(sock).startswith(b"HTTP/1.0 200 ")
        assert app.calls == 3


# --- 3,000 idle connections on the webhook port -------------------------------------------------


@contextmanager
def file_limit(wanted: int) -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            pytest.skip(f"needs {wanted} file descriptors, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.slow
def test_3000_idle_webhook_connections_leave_metrics_answering():
    with file_limit(3_000 + 1_024):
        result = measure_idle_connections(3_000)
    assert result["metrics_status"] == 200
    assert result["idle_connections"] == 3_000
    # The exporter's own threads (workers of both listeners, serving loops) and the process's
    # others that were there before: nothing per connection.
    assert result["threads_added"] <= result["max_threads"]
    assert result["webhook_connections_open"] <= result["webhook_max_connections"]


# --- flags --------------------------------------------------------------------------------------


def settings(*argv: str):
    return settings_from_flags(build_parser().parse_args(list(argv)), ENV)


def test_limits_default_and_flags_carry_into_settings():
    default = settings()
    assert (default.web_workers, default.web_max_connections) == (8, 256)
    assert default.web_read_timeout == 10.0
    given = settings(
        "--web.workers", "3", "--web.max-connections", "40", "--web.read-timeout", "1m30s"
    )
    assert (given.web_workers, given.web_max_connections, given.web_read_timeout) == (3, 40, 90)
    flags = ["--webhook.listen-address", ":0", "--webhook.workers", "2"]
    flags += ["--webhook.max-connections", "9"]
    hooks = webhook_settings(build_parser().parse_args(flags), ENV, (), None, True)
    assert hooks is not None
    assert (hooks.workers, hooks.max_connections) == (2, 9)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--web.workers", "0"], "--web.workers must be between 1 and 256"),
        (["--web.workers", "257"], "--web.workers must be between 1 and 256"),
        (["--web.max-connections", "0"], "--web.max-connections must be between 1 and 65536"),
        (["--web.read-timeout", "0s"], "--web.read-timeout must be greater than 0"),
        (
            ["--web.read-timeout", "soon"],
            "invalid duration for --web.read-timeout: 'soon' (examples: 10s, 500ms, 1m30s, 1h, 1d)",
        ),
        (
            ["--webhook.listen-address", ":0", "--webhook.workers", "0"],
            "--webhook.workers must be between 1 and 256",
        ),
        (
            ["--webhook.listen-address", ":0", "--webhook.max-connections", "70000"],
            "--webhook.max-connections must be between 1 and 65536",
        ),
        (["--api.parallel-fetches", "0"], "--api.parallel-fetches must be between 1 and 512"),
        (["--api.parallel-fetches", "513"], "--api.parallel-fetches must be between 1 and 512"),
    ],
)
def test_bad_limits_are_one_line_errors(flags, message):
    with pytest.raises(ConfigError) as caught:
        settings(*flags)
    assert str(caught.value) == message
