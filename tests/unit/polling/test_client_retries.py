"""The API client's retry policy: what it retries, how often, how long it waits, and when not.

The policy decisions are checked with the `responses` mock (it drives urllib3's Retry the way a
real connection pool does, without sleeping); everything that involves real waiting, real
sockets or real connection errors is checked against FakeApi or a refused port on 127.0.0.1.

No verdict here depends on how fast the machine is: how long the client chose to wait is read
from urllib3's sleeps (`retry_waits`), and where a deadline must cut a real hang, the hang
lasts at least 30 times the deadline, and the bound is half the hang.
"""

from __future__ import annotations

import itertools
import socket
import threading
import time

import pytest
import responses
import urllib3.util.connection
import urllib3.util.retry

from exporter.common.errors import FetchError
from exporter.config.values import Secret
from exporter.polling.client import ApiClient, DeadlineRetry
from tests.support.exporters import self_signed_certificate
from tests.support.fake_api import FakeApi, Reply, number, numbers_body
from tests.support.processes import free_port

KEY = "test-key-4c1f9a7e-never-shown"
BASE = "http://api.test"
URL = f"{BASE}/api/v1/subaccounts/acme-prod/numbers"
GOOD = b'{"totalNumbers": 1, "numbers": [{"msisdn": "+6531234567"}]}'


def client(base: str = BASE, **kwargs: object) -> ApiClient:
    kwargs.setdefault("timeout", 5.0)
    return ApiClient(base, Secret(KEY), **kwargs)


def fetch_error(api: ApiClient, timeout: float | None = None) -> FetchError:
    with pytest.raises(FetchError) as caught:
        api.fetch_numbers("acme-prod", timeout)
    assert KEY not in str(caught.value)
    return caught.value


class RetrySleeps:
    """Stands in for the `time` module urllib3's Retry sleeps with: notes every wait it asks
    for, and sleeps it for real only when `real` (else a refused wait is not a slow test)."""

    def __init__(self, real: bool) -> None:
        self.real = real
        self.waits: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        if self.real:
            time.sleep(seconds)

    def __getattr__(self, name: str) -> object:
        return getattr(time, name)


@pytest.fixture
def retry_waits(monkeypatch) -> list[float]:
    """The waits urllib3 was asked to sleep before a retry, none of them slept."""
    sleeps = RetrySleeps(real=False)
    monkeypatch.setattr(urllib3.util.retry, "time", sleeps)
    return sleeps.waits


@pytest.fixture
def slept_retry_waits(monkeypatch) -> list[float]:
    """The waits urllib3 slept before a retry, each slept for real."""
    sleeps = RetrySleeps(real=True)
    monkeypatch.setattr(urllib3.util.retry, "time", sleeps)
    return sleeps.waits


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
@responses.activate
def test_retryable_status_then_200_succeeds(status):
    responses.add(responses.GET, URL, status=status, json={"statusCode": status})
    responses.add(responses.GET, URL, status=200, body=GOOD)
    assert client().fetch_numbers("acme-prod") == GOOD
    assert len(responses.calls) == 2


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (400, "bad_request"),
        (401, "unauthorized"),
        (403, "forbidden"),
        (404, "not_found"),
        (410, "not_found"),
        (422, "bad_request"),
        (426, "client_error"),
        (501, "server_error"),
    ],
)
@responses.activate
def test_no_retry_on_answers_that_will_not_change(status, reason):
    responses.add(
        responses.GET,
        URL,
        status=status,
        json={"statusCode": status, "statusMessage": "Authentication header not found"},
    )
    responses.add(responses.GET, URL, status=200, body=GOOD)
    error = fetch_error(client())
    assert (error.reason, error.status) == (reason, status)
    assert len(responses.calls) == 1


@responses.activate
def test_request_carries_the_key_only_in_the_authorization_header():
    responses.add(responses.GET, URL, status=200, body=GOOD)
    client().fetch_numbers("acme-prod")
    request = responses.calls[0].request
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert KEY not in request.url
    assert all(
        KEY not in value for name, value in request.headers.items() if name != "Authorization"
    )


@pytest.mark.parametrize("retries", [0, 1, 2, 4])
@responses.activate
def test_retries_are_bounded(retries):
    responses.add(responses.GET, URL, status=503, json={"statusCode": 503})
    api = client(retries=retries, backoff_factor=0.0)
    error = fetch_error(api)
    assert (error.reason, error.status) == ("server_error", 503)
    assert len(responses.calls) == retries + 1


@responses.activate
def test_retry_after_past_the_deadline_is_refused_at_once(retry_waits):
    responses.add(responses.GET, URL, status=429, headers={"Retry-After": "30"})
    responses.add(responses.GET, URL, status=200, body=GOOD)
    error = fetch_error(client(timeout=2.0))
    assert retry_waits == []  # neither the 30 s asked for nor what is left of the 2 s
    assert (error.reason, error.status) == ("rate_limited", 429)
    assert len(responses.calls) == 1


@responses.activate
def test_retry_after_http_date_past_the_deadline_is_refused():
    later = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 120))
    responses.add(responses.GET, URL, status=503, headers={"Retry-After": later})
    error = fetch_error(client(timeout=2.0))
    assert error.reason == "server_error"
    assert len(responses.calls) == 1


@pytest.mark.parametrize("value", ["soon", "-5", "1.5e9", "", "\u00e9"])
@responses.activate
def test_unreadable_retry_after_falls_back_to_backoff(value):
    responses.add(responses.GET, URL, status=429, headers={"Retry-After": value})
    api = client(retries=2, backoff_factor=0.0)
    error = fetch_error(api)
    assert (error.reason, error.status) == ("rate_limited", 429)
    assert len(responses.calls) == 3


@responses.activate
def test_backoff_longer_than_the_deadline_ends_the_retries(retry_waits):
    responses.add(responses.GET, URL, status=503)
    api = client(timeout=0.5, retries=5, backoff_factor=1.0)
    error = fetch_error(api)
    assert retry_waits == []
    assert error.reason == "server_error"
    assert len(responses.calls) == 1


def test_backoff_grows_and_is_jittered_from_the_first_retry():
    policy = DeadlineRetry(total=5, backoff_factor=0.2, backoff_jitter=0.2)
    assert policy.get_backoff_time() == 0.0  # nothing has failed yet
    first = policy.increment("GET", "/", error=urllib3.exceptions.NewConnectionError(None, "x"))
    waits = {first.get_backoff_time() for _ in range(50)}
    assert all(0.2 <= wait <= 0.4 for wait in waits)
    assert len(waits) > 1, "no jitter"
    second = first.increment("GET", "/", error=urllib3.exceptions.NewConnectionError(None, "x"))
    assert all(0.4 <= second.get_backoff_time() <= 0.6 for _ in range(50))
    assert second.planned_wait(None) == pytest.approx(0.6)


class Recorder:
    """A FakeApi reply that answers from a script and notes when each request arrived."""

    def __init__(self, *replies: Reply) -> None:
        self.replies = list(replies)
        self.times: list[float] = []
        self._lock = threading.Lock()

    def __call__(self, path: str, headers: dict[str, str]) -> Reply:
        with self._lock:
            self.times.append(time.monotonic())
            return self.replies[min(len(self.times), len(self.replies)) - 1]

    def gaps(self) -> list[float]:
        return [b - a for a, b in zip(self.times, self.times[1:], strict=False)]


GOOD_REPLY = Reply.json(numbers_body([number()]))


@pytest.mark.slow
def test_retry_after_is_honoured_on_a_real_connection():
    script = Recorder(
        Reply.json({"statusCode": 429}, 429, headers={"Retry-After": "1"}), GOOD_REPLY
    )
    with FakeApi(script) as api:
        body = client(api.base_url, timeout=5.0).fetch_numbers("acme-prod")
    assert b"+6531234567" in body
    assert len(script.times) == 2
    assert script.gaps()[0] >= 0.95


def test_retry_after_past_the_deadline_returns_fast_on_a_real_connection(retry_waits):
    script = Recorder(Reply.json({"statusCode": 429}, 429, headers={"Retry-After": "60"}))
    with FakeApi(script) as api:
        error = fetch_error(client(api.base_url, timeout=3.0))
    assert error.reason == "rate_limited"
    assert retry_waits == []  # answered without waiting, not even for what is left of the 3 s
    assert len(script.times) == 1


@pytest.mark.slow
def test_retries_are_spaced_by_backoff_on_a_real_connection(slept_retry_waits):
    script = Recorder(Reply.json({"statusCode": 503}, 503))
    with FakeApi(script) as api:
        error = fetch_error(client(api.base_url, timeout=5.0, retries=2, backoff_factor=0.2))
    assert error.reason == "server_error"
    assert len(script.times) == 3
    # What the client chose to wait (backoff plus jitter); the server saw at least that gap.
    first_wait, second_wait = slept_retry_waits
    assert 0.2 <= first_wait <= 0.4
    assert 0.4 <= second_wait <= 0.6
    first, second = script.gaps()
    assert first >= first_wait
    assert second >= second_wait


def test_connection_error_is_retried_then_reported(monkeypatch):
    attempts: list[tuple[str, int]] = []
    real = urllib3.util.connection.create_connection

    def counting(address, *args, **kwargs):
        attempts.append(address)
        return real(address, *args, **kwargs)

    monkeypatch.setattr(urllib3.util.connection, "create_connection", counting)
    refused = f"http://127.0.0.1:{free_port()}"
    error = fetch_error(client(refused, retries=2, backoff_factor=0.05))
    assert error.reason == "connection_error"
    assert error.detail == "connection refused"
    assert len(attempts) == 3


@pytest.mark.slow
def test_server_that_never_answers_times_out_within_the_budget():
    # The scrape's 1 s, not the API timeout's 60 s: only the 60 s could reach the bound.
    with FakeApi(Reply(hang=True)) as api:
        started = time.monotonic()
        error = fetch_error(client(api.base_url, timeout=60.0), timeout=1.0)
        elapsed = time.monotonic() - started
    assert error.reason == "timeout"
    assert 0.9 <= elapsed < 30.0


@pytest.mark.slow
def test_api_timeout_caps_a_longer_scrape_budget():
    with FakeApi(Reply(hang=True)) as api:
        started = time.monotonic()
        error = fetch_error(client(api.base_url, timeout=1.0), timeout=60.0)
        elapsed = time.monotonic() - started
    assert error.reason == "timeout"
    assert 0.9 <= elapsed < 30.0


@pytest.mark.slow
def test_retries_never_extend_the_deadline():
    # Each attempt takes the server 0.6 s; within the 1.5 s budget at most three can start
    # (at 0, 0.6 and 1.2 s, later on a slower machine), of the eleven the retries would allow.
    script = Recorder(Reply(503, b"", delay=0.6))
    with FakeApi(script) as api:
        error = fetch_error(client(api.base_url, retries=10, backoff_factor=0.0), timeout=1.5)
    assert error.reason in ("server_error", "timeout")
    assert 1 <= len(script.times) <= 3


class RawServer:
    """A loopback server whose every connection is handled by `talk(conn, stop)`, raw bytes."""

    def __init__(self, talk) -> None:
        self.talk = talk
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def _serve(self) -> None:
        self._sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        try:
            conn.recv(65536)
            self.talk(conn, self._stop)
        except OSError:
            pass
        finally:
            conn.close()

    def __enter__(self) -> RawServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()


HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
# A dripping peer keeps going this long: 60 times the 1 s deadline the drip tests set, so only
# a fetch that is not cut can come near their bound of half of it, however slow the machine.
DRIP_SECONDS = 60.0
DRIP_BOUND = DRIP_SECONDS / 2


def drip(conn: socket.socket, stop: threading.Event, first: bytes, then: bytes) -> None:
    """Sends `first`, then `then` over and over, a byte every 0.2 s: never a read timeout."""
    until = time.monotonic() + DRIP_SECONDS
    for byte in itertools.chain(first, itertools.cycle(then)):
        if stop.wait(0.2) or time.monotonic() > until:
            return
        conn.sendall(bytes([byte]))


def drip_body(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(HEAD)
    drip(conn, stop, b"", b" ")


def drip_headers(conn: socket.socket, stop: threading.Event) -> None:
    # A header line that never ends, so the headers outlast the drip.
    drip(conn, stop, b"HTTP/1.1 200 OK\r\nX-Drip: ", b"x")


@pytest.mark.slow
def test_body_dripped_byte_by_byte_is_cut_at_the_deadline():
    with RawServer(drip_body) as server:
        started = time.monotonic()
        error = fetch_error(client(server.base_url), timeout=1.0)
        elapsed = time.monotonic() - started
    assert error.reason == "timeout"
    assert elapsed < DRIP_BOUND


@pytest.mark.slow
def test_headers_dripped_byte_by_byte_are_cut_at_the_deadline():
    with RawServer(drip_headers) as server:
        started = time.monotonic()
        error = fetch_error(client(server.base_url), timeout=1.0)
        elapsed = time.monotonic() - started
    assert error.reason == "timeout"
    assert elapsed < DRIP_BOUND


CAP = 100_000


def json_of_size(size: int) -> bytes:
    """A valid numbers document of exactly `size` bytes."""
    head, tail = b'{"totalNumbers": 1, "numbers": [{"msisdn": "+6531234567"}], "note": "', b'"}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


def answer_without_length(framing: str, body: bytes) -> bytes:
    """A whole 200 answer whose length only the reading tells: chunked or until close."""
    if framing == "chunked":
        pieces = [body[i : i + 0x4000] for i in range(0, len(body), 0x4000)]
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces)
        return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"
    return b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + body


def serving(answer: bytes):
    def talk(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(answer)
        conn.shutdown(socket.SHUT_WR)

    return talk


@pytest.mark.parametrize("framing", ["chunked", "until-close"])
def test_valid_body_of_exactly_the_cap_is_read(framing):
    body = json_of_size(CAP)
    with RawServer(serving(answer_without_length(framing, body))) as server:
        got = client(server.base_url, max_response_bytes=CAP).fetch_numbers("acme-prod")
    assert bytes(got) == body


@pytest.mark.parametrize("framing", ["chunked", "until-close"])
def test_valid_body_one_byte_over_the_cap_is_refused_while_reading(framing):
    body = json_of_size(CAP + 1)
    with RawServer(serving(answer_without_length(framing, body))) as server:
        error = fetch_error(client(server.base_url, max_response_bytes=CAP))
    assert error.reason == "invalid_response"
    assert error.status == 200
    assert f"{CAP}-byte cap" in error.detail


@pytest.fixture
def small_receive_buffer(monkeypatch):
    """The client's sockets get a small, fixed receive buffer (no autotuning to megabytes), so
    what a server has managed to send is at most what the client read plus a few KiB."""
    real = urllib3.util.connection.create_connection

    def small(address, *args, socket_options=None, **kwargs):
        options = [*(socket_options or []), (socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)]
        return real(address, *args, socket_options=options, **kwargs)

    monkeypatch.setattr(urllib3.util.connection, "create_connection", small)


@pytest.mark.parametrize("framing", ["chunked", "until-close"])
def test_body_over_the_cap_is_refused_while_streaming(framing, small_receive_buffer):
    # No Content-Length, and a valid JSON document that never ends: the cap has to be enforced
    # while reading, and reading has to stop near it (the client reads 64 KiB at a time).
    sent: list[int] = []

    def endless(conn: socket.socket, stop: threading.Event) -> None:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
        record = b'{"msisdn": "+6531234567"}, '
        start = b'{"totalNumbers": 1, "numbers": ['
        if framing == "chunked":
            conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            conn.sendall(b"%x\r\n%s\r\n" % (len(start), start))
            piece = b"%x\r\n%s\r\n" % (len(record) * 600, record * 600)
        else:
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + start)
            piece = record * 600
        total = 0
        while not stop.is_set() and total < 50_000_000:
            conn.sendall(piece)
            total += len(piece)
            sent[:] = [total]

    with RawServer(endless) as server:
        error = fetch_error(client(server.base_url, max_response_bytes=CAP))
        print(f"sent {sent[0]} bytes for a {CAP}-byte cap")
    assert error.reason == "invalid_response"
    assert f"{CAP}-byte cap" in error.detail
    # At most one 64 KiB read past the cap, plus what the two 16 KiB socket buffers held
    # (measured: 130-146 kB sent); reading on to twice the cap must not pass.
    assert sent[0] < CAP + 65536 + 32768, f"the server sent {sent[0]} bytes; cap {CAP}"


def test_declared_length_over_the_cap_is_refused_before_reading():
    with FakeApi(Reply(200, b" " * 200_000)) as api:
        error = fetch_error(client(api.base_url, max_response_bytes=100_000))
    assert error.reason == "invalid_response"
    assert "200000" in error.detail


def test_no_proxy_from_the_environment_sees_the_key(monkeypatch):
    # trust_env is off: a proxy variable must not reroute the request (and the key) anywhere.
    with FakeApi() as api:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")
        monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{free_port()}")
        assert b"+6531234567" in client(api.base_url).fetch_numbers("acme-prod")


def test_session_survives_a_failure():
    with FakeApi(Reply(500, b"oops")) as api:
        api_client = client(api.base_url, retries=0)
        session = api_client._session
        assert fetch_error(api_client).reason == "server_error"
        api.reply = GOOD_REPLY
        assert b"+6531234567" in api_client.fetch_numbers("acme-prod")
    # The same session, with its pool, its cuttable adapter and trust_env off, serves on: a
    # failure must not leave the client to a fresh default session.
    assert api_client._session is session


@pytest.mark.slow
@pytest.mark.parametrize("talk", [drip_headers, drip_body], ids=["headers", "body"])
def test_dripping_https_peer_is_cut_at_the_deadline(tmp_path, talk):
    import ssl

    cert, key = self_signed_certificate(tmp_path, "api")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)

    def over_tls(conn: socket.socket, stop: threading.Event) -> None:
        with context.wrap_socket(conn, server_side=True) as tls:
            tls.recv(65536)
            talk(tls, stop)

    class TlsServer(RawServer):
        def _handle(self, conn: socket.socket) -> None:
            try:
                self.talk(conn, self._stop)
            except OSError:
                pass
            finally:
                conn.close()

    with TlsServer(over_tls) as server:
        api = client(server.base_url.replace("http://", "https://"))
        api._session.verify = cert
        started = time.monotonic()
        error = fetch_error(api, timeout=1.0)
        elapsed = time.monotonic() - started
    assert error.reason == "timeout"
    assert elapsed < DRIP_BOUND
