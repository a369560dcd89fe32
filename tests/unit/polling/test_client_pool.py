"""The client's shared machinery on real loopback connections: one watchdog thread for every
fetch deadline, one connection pool for every client of a configuration, and fetches that leave
nothing behind for the cyclic garbage collector.

Every wait here is on a condition (a request arrived, a connection closed), never a sleep that
stands in for one, so a busy machine makes the tests slower, not flaky.
"""

from __future__ import annotations

import contextlib
import gc
import socket
import threading
import types
import weakref
from collections.abc import Callable

import pytest
import requests

from exporter.app import api_client_factory
from exporter.common.errors import FetchError
from exporter.config.flags import default
from exporter.config.settings import Settings, SubaccountConfig
from exporter.config.values import Secret
from exporter.polling import client as client_module
from exporter.polling.client import ApiClient, Transport
from tests.support.processes import free_port, wait_until

DEFAULT_PARALLEL_FETCHES = default("parallel_fetches")
GOOD = b'{"totalNumbers": 0, "numbers": []}'


class KeepAliveServer:
    """A loopback HTTP/1.1 server that keeps connections open, counts them and notes each
    request's headers (names lower-cased). Paths choose the answer: `/missing/` 404, `/busy/`
    503, `/trickle/` a body sent a byte at a time until the server stops, else 200 with GOOD.

    With `hold`, answers wait until `release` is set; `held` counts the requests waiting.
    Its threads are named `keepalive-*`, so they are told apart from the client's.
    """

    def __init__(self, *, hold: bool = False, set_cookie: str | None = None) -> None:
        self.hold = hold
        self.set_cookie = set_cookie
        self.release = threading.Event()
        self.accepted = 0
        self.closed = 0
        self.held = 0
        self.requests: list[dict[str, str]] = []
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._listener = socket.create_server(("127.0.0.1", 0))

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def count(self, what: Callable[[], int]) -> int:
        with self._cond:
            return what()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:  # the listener was closed: stopping
                return
            with self._cond:
                self.accepted += 1
                self._conns.append(conn)
                thread = threading.Thread(
                    target=self._talk, args=(conn,), name=f"keepalive-conn-{self.accepted}"
                )
                self._threads.append(thread)
            thread.start()

    def _talk(self, conn: socket.socket) -> None:
        buffered = b""
        try:
            while True:
                while b"\r\n\r\n" not in buffered:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffered += data
                head, buffered = buffered.split(b"\r\n\r\n", 1)
                request_line, *lines = head.decode("latin-1").split("\r\n")
                headers = {
                    name.strip().lower(): value.strip()
                    for name, value in (line.split(":", 1) for line in lines)
                }
                with self._cond:
                    self.requests.append(headers)
                    if self.hold:
                        self.held += 1
                        self._cond.notify_all()
                if self.hold:
                    self.release.wait()
                if self._answer(conn, request_line.split(" ")[1], headers):
                    return
        except OSError:
            return
        finally:
            with self._cond:
                self.closed += 1
            conn.close()

    def _answer(self, conn: socket.socket, path: str, headers: dict[str, str]) -> bool:
        """Sends the answer; True when the connection is done with."""
        if "/trickle/" in path:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
            while not self._stop.wait(0.05):
                conn.sendall(b" ")
            return True
        status, body = b"200 OK", GOOD
        if "/missing/" in path:
            status, body = b"404 Not Found", b'{"message": "no such subaccount"}'
        elif "/busy/" in path:
            status, body = b"503 Service Unavailable", b"{}"
        extra = b""
        if self.set_cookie and "cookie" not in headers:
            extra = f"Set-Cookie: {self.set_cookie}; Path=/\r\n".encode()
        conn.sendall(
            b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\n" + extra
            + f"Content-Length: {len(body)}\r\n\r\n".encode() + body
        )  # fmt: skip
        return False

    def __enter__(self) -> KeepAliveServer:
        thread = threading.Thread(target=self._accept, name="keepalive-accept")
        self._threads.append(thread)
        thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.release.set()
        # Wakes accept() and every recv() (the pooled client connections stay open otherwise).
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._cond:
            conns, threads = list(self._conns), list(self._threads)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(10)


@pytest.fixture
def own_watchdog(monkeypatch):
    """Fetches in this test use a watchdog of their own, not one shared with earlier tests
    (whose abandoned fetches may still be pending); its thread is stopped afterwards."""
    watchdog = client_module._Watchdog("test-fetch-deadlines")
    monkeypatch.setattr(client_module, "_WATCHDOG", watchdog)
    yield watchdog
    watchdog.stop()


def test_concurrent_fetches_start_no_thread_but_the_one_watchdog():
    transport = Transport(pool_maxsize=16)
    keys = [f"key-{n}" for n in range(16)]
    clients = [ApiClient("", Secret(key), transport=transport) for key in keys]
    bodies: list[bytes] = []
    before = {thread.ident for thread in threading.enumerate()}
    with KeepAliveServer(hold=True) as server:
        for api in clients:
            api.base_url = server.base_url
        fetchers = [
            threading.Thread(
                target=lambda api=api: bodies.append(api.fetch_numbers("acme", 60.0)),
                name=f"fetcher-{n}",
            )
            for n, api in enumerate(clients)
        ]
        for fetcher in fetchers:
            fetcher.start()
        try:
            wait_until(lambda: server.count(lambda: server.held) == 16, what="16 held requests")
            during = threading.enumerate()
        finally:
            server.release.set()
            for fetcher in fetchers:
                fetcher.join(30)
    assert bodies == [GOOD] * 16
    assert sorted(request["authorization"] for request in server.requests) == sorted(
        f"Bearer {key}" for key in keys
    )
    names = [thread.name for thread in during]
    assert names.count("fetch-deadlines") == 1
    started = {
        thread.name
        for thread in during
        if thread.ident not in before and not thread.name.startswith(("fetcher-", "keepalive-"))
    }
    assert started <= {"fetch-deadlines"}, f"threads started by the fetches: {started}"


def test_clients_of_two_subaccounts_reuse_one_connection_with_their_own_keys():
    transport = Transport()
    with KeepAliveServer() as server:
        first = ApiClient(server.base_url, Secret("first-key"), transport=transport)
        second = ApiClient(server.base_url, Secret("second-key"), transport=transport)
        assert first.fetch_numbers("one") == GOOD
        assert second.fetch_numbers("two") == GOOD
        assert first.fetch_numbers("one") == GOOD
        assert server.count(lambda: server.accepted) == 1
    assert [request["authorization"] for request in server.requests] == [
        "Bearer first-key",
        "Bearer second-key",
        "Bearer first-key",
    ]


def test_a_cookie_set_for_one_subaccount_is_never_sent_for_another():
    transport = Transport()
    with KeepAliveServer(set_cookie="session=first-only") as server:
        first = ApiClient(server.base_url, Secret("first-key"), transport=transport)
        second = ApiClient(server.base_url, Secret("second-key"), transport=transport)
        first.fetch_numbers("one")  # the server sets the cookie here
        second.fetch_numbers("two")
        first.fetch_numbers("one")
    assert [request.get("cookie") for request in server.requests] == [
        None,
        None,
        "session=first-only",
    ]


def test_a_fetch_sends_what_a_session_would_and_prepares_each_url_once(monkeypatch):
    prepared: list[str] = []
    real_prepare = ApiClient._request

    def counted(self, url):
        if url not in self._prepared:
            prepared.append(url)
        return real_prepare(self, url)

    monkeypatch.setattr(ApiClient, "_request", counted)
    with KeepAliveServer() as server:
        api = ApiClient(server.base_url, Secret("the-key"))
        for _ in range(3):
            assert api.fetch_numbers("one") == GOOD
        api.fetch_numbers("two")
        with requests.Session() as session:
            session.get(f"{server.base_url}/by-a-session", headers={"Accept": "application/json"})
    assert prepared == [api.numbers_url("one"), api.numbers_url("two")]
    fetched, by_session = server.requests[0], server.requests[-1]
    assert fetched["authorization"] == "Bearer the-key"
    assert fetched["user-agent"].startswith("eightbyeight-exporter/")
    assert sorted(fetched) == sorted(by_session | {"authorization": ""})
    for name in ("accept", "accept-encoding", "connection"):
        assert fetched[name] == by_session[name]


def factory_settings(
    base_url: str = "http://127.0.0.1:1", parallel_fetches: int = DEFAULT_PARALLEL_FETCHES
) -> types.SimpleNamespace:
    """What api_client_factory reads of Settings: every subaccount on one base URL."""

    def subaccount_config(subaccount: str) -> types.SimpleNamespace:
        return types.SimpleNamespace(base_url=base_url, api_key=Secret(f"key-of-{subaccount}"))

    return types.SimpleNamespace(
        subaccount_config=subaccount_config,
        api_timeout=5.0,
        max_response_bytes=1 << 20,
        api_retries=0,
        parallel_fetches=parallel_fetches,
    )


def test_the_clients_of_one_factory_share_one_pool_sized_for_a_scrape():
    new_client = api_client_factory(factory_settings())
    first, second = new_client("one"), new_client("two")
    assert first._adapter is second._adapter
    assert first._session is not second._session  # cookies stay per subaccount
    assert first._session.get_adapter("https://x/") is first._adapter
    assert first._session.trust_env is False
    pool_options = first._adapter.poolmanager.connection_pool_kw
    assert (pool_options["maxsize"], pool_options["block"]) == (DEFAULT_PARALLEL_FETCHES, False)
    assert api_client_factory(factory_settings())("one")._adapter is not first._adapter
    sized = api_client_factory(factory_settings(parallel_fetches=7))
    assert sized("one")._adapter._pool_maxsize == 7


def test_the_pool_closes_when_its_last_client_is_gone_without_the_cyclic_gc():
    with KeepAliveServer() as server:
        new_client = api_client_factory(factory_settings(server.base_url))
        first, second = new_client("one"), new_client("two")
        first.fetch_numbers("one")
        transport = weakref.ref(first._transport)
        gc.disable()
        try:
            del new_client, first  # e.g. a reload replaced the factory: a kept client remains
            assert transport() is not None
            assert server.count(lambda: server.closed) == 0
            del second
            assert transport() is None
        finally:
            gc.enable()
        wait_until(lambda: server.count(lambda: server.closed) == 1, what="the pool closed")


def test_many_fetches_leave_no_entry_in_the_watchdog(own_watchdog):
    with KeepAliveServer() as server:
        api = ApiClient(server.base_url, Secret("k"), retries=0)
        for _ in range(200):
            api.fetch_numbers("acme")
            with pytest.raises(FetchError):
                api.fetch_numbers("missing")
    assert (own_watchdog.pending(), own_watchdog.entries()) == (0, 0)


FETCH_PATH = ("exporter", "requests", "urllib3", "http.client")
FETCH_FILES = ("exporter/polling/client.py", "/requests/", "/urllib3/", "/http/client.py")


def made_by_the_fetch_path(thing: object) -> bool:
    """Objects of the client, requests, urllib3 and http.client, and their frames."""
    if isinstance(thing, types.TracebackType):
        thing = thing.tb_frame
    if isinstance(thing, types.FrameType):
        return any(part in thing.f_code.co_filename for part in FETCH_FILES)
    module = type(thing).__module__ or ""
    return module == "http.client" or module.split(".")[0] in FETCH_PATH


def test_fetches_leave_nothing_for_the_cyclic_gc(own_watchdog):
    refused = ApiClient(f"http://127.0.0.1:{free_port()}", Secret("k"), retries=1, timeout=5.0)
    with KeepAliveServer() as server:
        api = ApiClient(server.base_url, Secret("k"), retries=1, backoff_factor=0.01)
        api.fetch_numbers("warm-up")  # imports and one-off caches are not the fetches' garbage
        gc.collect()
        # Held, so that only what is made from here on can turn into garbage: a cycle of an
        # earlier test whose last outside reference goes now (a thread of its ending) is not
        # this test's to find.
        existing = gc.get_objects()
        gc.disable()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            reasons = []
            for _ in range(3):
                api.fetch_numbers("acme")
                for subaccount, timeout in (("missing", None), ("busy", None), ("trickle", 0.3)):
                    try:
                        api.fetch_numbers(subaccount, timeout)
                    except FetchError as error:
                        reasons.append(error.reason)
                try:
                    refused.fetch_numbers("acme")
                except FetchError as error:
                    reasons.append(error.reason)
            gc.collect()
            found = [thing for thing in gc.garbage if made_by_the_fetch_path(thing)]
            left = sorted(
                {f"{type(thing).__module__}.{type(thing).__qualname__}" for thing in found}
            )
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()
            del existing
    assert reasons == ["not_found", "server_error", "timeout", "connection_error"] * 3
    assert left == []


def test_every_client_of_the_factory_gets_the_configured_timeout_retries_and_body_cap():
    settings = Settings(
        subaccounts=(SubaccountConfig("acme-a", Secret("k"), "http://127.0.0.1:1"),),
        api_timeout=3.5,
        api_retries=5,
        max_response_bytes=12_345,
    )
    client = api_client_factory(settings)("acme-a")
    assert client is not None
    assert (client.timeout, client._retries, client.max_response_bytes) == (3.5, 5, 12_345)
