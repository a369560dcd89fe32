"""HTTP client for 8x8's "Get My Virtual Numbers" endpoint.

It returns the raw body of one subaccount's list, or raises `FetchError` with a reason. Every
fetch is bounded by a deadline (connection, retries and body together), by a size cap that is
enforced while reading, and retries only what is safe to retry (connection errors, 429, 5xx)
with urllib3's own `Retry`, never waiting past the deadline.
"""

from __future__ import annotations

import contextlib
import heapq
import http.client
import itertools
import json
import logging
import math
import os
import random
import socket
import threading
import time
import traceback
import weakref
from types import TracebackType
from typing import Any
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter
from urllib3 import BaseHTTPResponse
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import ConnectionPool, HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import HTTPError, InvalidHeader, MaxRetryError, ResponseError
from urllib3.response import HTTPResponse
from urllib3.util.retry import Retry
from urllib3.util.timeout import Timeout

from exporter import __version__
from exporter.common.errors import FetchError, reason_for_status
from exporter.common.logs import log_event
from exporter.common.redact import redact_and_cut
from exporter.config.flags import default
from exporter.config.values import Secret

log = logging.getLogger("exporter.polling.client")

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# urllib3 logs a "Retrying (Retry(...)) after connection broken by ..." warning per retry: internal
# class names, no subaccount. This client reports its retries itself, folded into the one
# FetchError of a fetch (`retries`), so urllib3's own lines are not wanted.
logging.getLogger("urllib3").setLevel(logging.ERROR)
_READ_CHUNK_BYTES = 1 << 16
# At most this many distinct URLs' requests are kept prepared per client (it asks for two or three).
_PREPARED_URLS = 8
_ERROR_BODY_PEEK = 1 << 14
# What reading a body may raise besides what requests wraps: a raw read is urllib3's and
# http.client's own.
_READ_ERRORS = (requests.RequestException, HTTPError, http.client.HTTPException, OSError)
# A body sent with one of these headers is not its Content-Length of bytes as they arrive.
_ENCODED = ("Content-Encoding", "Transfer-Encoding")
_JITTER = random.SystemRandom()  # spreads retries; not a security use


class DeadlineRetry(Retry):
    """urllib3 Retry that gives up instead of sleeping past the scrape deadline.

    `Retry-After` is honoured when present; a wait that would end after the deadline ends the
    retries at once, and the last answer (e.g. the 429) is what the caller sees.
    """

    def __init__(self, *args: Any, deadline: float = math.inf, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deadline = deadline
        # Shared by every copy urllib3 makes of this policy during one fetch.
        self.made = RetriesMade()

    def new(self, **kwargs: Any) -> DeadlineRetry:
        renewed = super().new(**kwargs)
        renewed.deadline = self.deadline
        renewed.made = self.made
        return renewed

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: BaseHTTPResponse | None = None,
        error: Exception | None = None,
        _pool: ConnectionPool | None = None,
        _stacktrace: TracebackType | None = None,
    ) -> DeadlineRetry:
        renewed = super().increment(method, url, response, error, _pool, _stacktrace)
        wait = renewed.planned_wait(response)
        if time.monotonic() + wait >= self.deadline:
            # As urllib3 itself does: the pool it was given, None included.
            raise MaxRetryError(_pool, url, error or ResponseError("no time left to retry"))  # type: ignore[arg-type]
        self.made.count += 1
        return renewed

    def planned_wait(self, response: BaseHTTPResponse | None) -> float:
        """Longest the next sleep may take: Retry-After, else backoff plus all of its jitter."""
        if response is not None and self.respect_retry_after_header:
            retry_after = self.get_retry_after(response)
            if retry_after:  # urllib3 sleeps the backoff instead when Retry-After is 0
                return retry_after
        return min(self.backoff_max, self._exponential_backoff() + self.backoff_jitter)

    def get_retry_after(self, response: BaseHTTPResponse) -> float | None:
        # A Retry-After that is neither seconds nor an HTTP date means "no advice", not a
        # failure of its own: the answer is still the 429/503 it came with.
        try:
            return super().get_retry_after(response)
        except InvalidHeader:
            return None

    def get_backoff_time(self) -> float:
        # urllib3 retries the first failure at once and without jitter; against a rate-limited
        # API, two exporters (an HA pair) would then retry immediately and in lockstep.
        if not self.history:
            return 0.0
        jitter = _JITTER.uniform(0.0, self.backoff_jitter) if self.backoff_jitter else 0.0
        return min(self.backoff_max, self._exponential_backoff() + jitter)

    def _exponential_backoff(self) -> float:
        failures = len(self.history)
        return self.backoff_factor * (2 ** (failures - 1)) if failures else 0.0


class RetriesMade:
    """How many retries one fetch made."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0


class DeadlineTimeout(Timeout):
    """A urllib3 Timeout whose every attempt gets only the time left before the deadline.

    urllib3 clones the Timeout for each attempt, including retries; cloning here recomputes the
    budget, so a retry can never start with the full timeout again.
    """

    def __init__(self, deadline: float) -> None:
        super().__init__(total=None, connect=None, read=None)
        self.deadline = deadline

    def clone(self) -> Timeout:
        remaining = max(0.001, self.deadline - time.monotonic())
        return Timeout(connect=remaining, read=remaining)


class Transport:
    """The connection pool shared by the `ApiClient`s of one configuration.

    One urllib3 pool manager for every subaccount: clients on the same base URL reuse each
    other's idle connections instead of each opening (and keeping) its own. Requests never share
    anything but the socket: each client keeps its own `requests.Session` (cookies, `verify`)
    and sends its own key, and each fetch its own retry policy (see `_CuttableAdapter`).

    `pool_maxsize` is how many idle connections per host are kept for reuse; it does not block:
    a fetch beyond it opens a connection of its own, which is closed after use. The pool is
    closed once nothing refers to the transport any more (its clients are gone, e.g. after a
    reload replaced them), or by `close()`.
    """

    def __init__(
        self, pool_maxsize: int = default("parallel_fetches"), pool_connections: int = 10
    ) -> None:
        self.adapter = _CuttableAdapter(
            pool_connections=pool_connections, pool_maxsize=pool_maxsize, pool_block=False
        )
        # The finalizer holds the adapter, not the transport, so it does not keep it alive.
        self._closer = weakref.finalize(self, self.adapter.close)

    def close(self) -> None:
        """Closes every pooled connection now (idempotent)."""
        self._closer()


class ApiClient:
    """Reads one subaccount's virtual numbers from one 8x8 API base URL with one key.

    Without `transport` the client has a small pool of its own; `api_client_factory` passes one
    `Transport` to every client it builds, so they share connections.
    """

    def __init__(
        self,
        base_url: str,
        api_key: Secret,
        *,
        timeout: float = default("api_timeout"),
        max_response_bytes: int = default("max_response_bytes"),
        retries: int = default("api_retries"),
        backoff_factor: float = 0.2,
        transport: Transport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes
        self._retries = retries
        self._backoff = backoff_factor
        self._api_key = api_key
        # Held so the shared pool lives (and is not closed) as long as one of its clients does.
        if transport is None:
            transport = Transport(pool_maxsize=4, pool_connections=1)
        self._transport = transport
        self._adapter = self._transport.adapter
        # A session per client, though the pool is shared: a session's cookie jar would
        # otherwise carry one subaccount's cookies into another's requests.
        self._session = requests.Session()
        self._session.trust_env = False  # never route the key through an ambient proxy setting
        self._session.mount("http://", self._adapter)
        self._session.mount("https://", self._adapter)
        # The request of each URL, prepared once (see _send): url -> PreparedRequest.
        self._prepared: dict[str, requests.PreparedRequest] = {}

    def numbers_url(self, subaccount: str) -> str:
        return f"{self.base_url}/api/v1/subaccounts/{quote(subaccount, safe='')}/numbers"

    def webhooks_url(self, subaccount: str) -> str:
        return f"{self.base_url}/api/v1/subaccounts/{quote(subaccount, safe='')}/webhooks"

    def fetch_numbers(self, subaccount: str, timeout: float | None = None) -> bytes | bytearray:
        """The raw JSON body of the subaccount's list; FetchError on any failure."""
        return self._fetch(self.numbers_url(subaccount), timeout)

    def fetch_webhooks(self, subaccount: str, timeout: float | None = None) -> bytes | bytearray:
        """The raw JSON body of the subaccount's webhook list (--collector.webhooks)."""
        return self._fetch(self.webhooks_url(subaccount), timeout)

    def fetch_balance(self, account_id: str, timeout: float | None = None) -> bytes | bytearray:
        """The raw JSON body of the account's prepaid balance (--balance.account-id)."""
        url = f"{self.base_url}/api/v1/accounts/{quote(account_id, safe='')}/balance"
        return self._fetch(url, timeout)

    def _fetch(self, url: str, timeout: float | None) -> bytes | bytearray:
        budget = self.timeout if timeout is None else min(timeout, self.timeout)
        deadline = time.monotonic() + max(budget, 0.001)
        policy = self._retry_policy(deadline)
        # No per-client lock: the retry policy is this thread's own (the adapter is shared),
        # so fetches of one client may run at once; the scraper's single flight already
        # serialises a subaccount's numbers and webhook list.
        with _DeadlineCutter(deadline), self._adapter.retrying(policy):
            try:
                response = self._send(url, deadline)
                try:
                    if response.status_code != 200:
                        raise self._status_error(response)
                    return self._read_body(response, deadline)
                finally:
                    response.close()
            except FetchError as error:
                error.retries = policy.made.count
                raise

    def _retry_policy(self, deadline: float) -> DeadlineRetry:
        return DeadlineRetry(
            total=self._retries,
            connect=self._retries,
            read=0,
            status=self._retries,
            other=0,
            redirect=0,
            allowed_methods=frozenset({"GET"}),
            status_forcelist=RETRY_STATUSES,
            backoff_factor=self._backoff,
            backoff_jitter=self._backoff,
            respect_retry_after_header=True,
            raise_on_status=False,
            raise_on_redirect=False,
            deadline=deadline,
        )

    def _send(self, url: str, deadline: float) -> requests.Response:
        try:
            # Straight to the adapter with a request prepared once per URL: what Session.get
            # would send (the session's headers and cookies), without preparing it and merging
            # settings again at every fetch, which cost a third of the client's time per fetch.
            request = self._request(url)
            response = self._adapter.send(
                request,
                stream=True,
                # requests hands a urllib3 Timeout to urllib3 unchanged; its hints know only floats.
                timeout=DeadlineTimeout(deadline),  # type: ignore[arg-type]
                verify=self._session.verify,
                cert=self._session.cert,
                proxies={},
            )
            self._keep_cookies(request, response)
            return response
        except requests.RequestException as exc:
            error = _send_error(exc, deadline)
            _drop_tracebacks(exc)
        # Raised out here, not in the handler, so the FetchError does not carry the requests
        # exception (and all it refers to) along as its __context__; and the local dropped, as
        # error -> traceback -> this frame -> error would be a cycle.
        try:
            raise error
        finally:
            del error

    def _request(self, url: str) -> requests.PreparedRequest:
        """The GET of `url` as the session prepares it: its headers, this client's key and
        cookies. A copy of the one prepared before, since a send may change what it is given."""
        prepared = self._prepared.get(url)
        if prepared is None:
            headers = {
                "Authorization": f"Bearer {self._api_key.reveal()}",
                "Accept": "application/json",
                "User-Agent": f"eightbyeight-exporter/{__version__}",
            }
            prepared = self._session.prepare_request(requests.Request("GET", url, headers))
            if len(self._prepared) < _PREPARED_URLS:
                self._prepared[url] = prepared
        return prepared.copy()

    def _keep_cookies(self, request: requests.PreparedRequest, response: requests.Response) -> None:
        """Keep what the answer set in this client's jar (as Session.send would), for its later
        requests; they are prepared again with it."""
        if "set-cookie" in response.headers:
            requests.cookies.extract_cookies_to_jar(self._session.cookies, request, response.raw)
            self._prepared.clear()

    def _status_error(self, response: requests.Response) -> FetchError:
        status = response.status_code
        detail = f"HTTP {status}"
        message = _error_message(response, self._api_key.reveal())
        if message:
            detail = f"{detail}: {message}"
        if 300 <= status < 400:
            return FetchError("invalid_response", f"unexpected redirect ({detail})", status)
        return FetchError(reason_for_status(status), detail, status)

    def _read_body(self, response: requests.Response, deadline: float) -> bytes | bytearray:
        cap = self.max_response_bytes
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > cap:
            raise FetchError(
                "invalid_response", f"body of {declared} bytes exceeds the {cap}-byte cap", 200
            )
        body: bytes | bytearray
        try:
            if declared.isdigit() and not any(name in response.headers for name in _ENCODED):
                body = self._read_declared(response, int(declared))
            else:
                body = self._read_chunks(response, cap, deadline)
        except (*_READ_ERRORS, AttributeError, ValueError) as exc:
            # AttributeError/ValueError: urllib3 reading from a connection that was cut.
            if time.monotonic() >= deadline:
                raise FetchError("timeout", "body not read before the deadline", 200) from None
            raise FetchError("connection_error", f"body cut off: {_cause(exc)}", 200) from None
        if time.monotonic() >= deadline:
            # A socket cut at the deadline can look like a short, complete body.
            raise FetchError("timeout", "body not read before the deadline", 200)
        return body

    @staticmethod
    def _read_declared(response: requests.Response, length: int) -> bytes:
        """A body of known length, within the cap, in one read: the deadline's watchdog cuts a
        read that takes too long, so it need not be read a chunk at a time to be checked."""
        body = response.raw.read(length, decode_content=False)
        if len(body) < length:
            raise http.client.IncompleteRead(body, length - len(body))
        return body

    @staticmethod
    def _read_chunks(response: requests.Response, cap: int, deadline: float) -> bytearray:
        """A body of unknown length (or compressed), decoded a chunk at a time up to the cap."""
        body = bytearray()
        for chunk in response.iter_content(_READ_CHUNK_BYTES):
            body += chunk
            if len(body) > cap:
                raise FetchError("invalid_response", f"body exceeds the {cap}-byte cap", 200)
            if time.monotonic() > deadline:
                raise FetchError("timeout", "body not read before the deadline", 200)
        return body


_ACTIVE = threading.local()


class _Watchdog:
    """One thread that cuts every fetch whose deadline passes, instead of a timer per fetch.

    Fetches register a `_DeadlineCutter` on entry and unregister it on exit. The pending
    cutters sit in a heap of `[deadline, sequence, cutter]` entries; unregistering only blanks
    the entry's cutter (removing from the middle of a heap costs O(n)), and blank entries are
    dropped when they reach the top or, once they outnumber the live ones, all at once, so the
    heap stays as large as the fetches in flight, not as the fetches ever made.

    A cut runs under the watchdog's lock, so once `unregister` returns the fetch's sockets can
    no longer be cut: they go back to the shared pool, where another fetch may pick them up.
    """

    # Below this many entries a compaction would save nothing worth its cost.
    _COMPACT_MIN = 64

    def __init__(self, name: str = "fetch-deadlines", *, autostart: bool = True) -> None:
        self.name = name
        # Without autostart nothing cuts until `run_once()` is called (unit tests drive it).
        self._autostart = autostart
        self._reset()

    def _reset(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[list[Any]] = []
        self._blank = 0  # entries in the heap whose fetch has ended
        self._order = itertools.count()  # ties: equal deadlines never compare cutters
        self._started = False
        self._stopping = False

    def pending(self) -> int:
        """Fetches in progress that have not been cut (yet)."""
        with self._cond:
            return len(self._heap) - self._blank

    def entries(self) -> int:
        """Entries in the heap, blank ones included (what the heap's memory grows with)."""
        with self._cond:
            return len(self._heap)

    def register(self, deadline: float, cutter: _DeadlineCutter) -> list[Any]:
        entry = [deadline, next(self._order), cutter]
        with self._cond:
            if self._autostart and not self._started:
                # Lazily, so importing the module (or a process that never fetches) starts
                # nothing. The thread is not kept: it refers to this watchdog, which would
                # make a cycle, and nothing needs to join it (it is a daemon).
                threading.Thread(
                    target=_watch_deadlines, args=(self,), name=self.name, daemon=True
                ).start()
                self._started = True
            heapq.heappush(self._heap, entry)
            if self._heap[0] is entry:  # earlier than what the thread sleeps until
                self._cond.notify()
        return entry

    def unregister(self, entry: list[Any]) -> None:
        with self._cond:
            if entry[2] is None:  # cut already: the thread dropped it from the heap
                return
            entry[2] = None  # and the entry no longer keeps the cutter (nor its sockets)
            self._blank += 1
            self._drop_blank_top()
            if self._blank > self._COMPACT_MIN and self._blank * 2 > len(self._heap):
                self._heap = [live for live in self._heap if live[2] is not None]
                heapq.heapify(self._heap)
                self._blank = 0

    def _drop_blank_top(self) -> None:
        while self._heap and self._heap[0][2] is None:
            heapq.heappop(self._heap)
            self._blank -= 1

    def stop(self) -> None:
        """Ends the thread (for tests: the process-wide watchdog runs as long as the process)."""
        with self._cond:
            self._stopping = True
            self._cond.notify()

    def run_once(self) -> bool:
        """Waits for the earliest deadline (or a new earlier one) and cuts what is due.

        False once `stop()` was called.
        """
        with self._cond:
            if self._stopping:
                return False
            self._drop_blank_top()
            if not self._heap:
                self._cond.wait()
                return True
            wait = self._heap[0][0] - time.monotonic()
            if wait > 0:
                self._cond.wait(wait)
                return True
            entry = heapq.heappop(self._heap)
            cutter, entry[2] = entry[2], None  # marks it as dropped for `unregister`
            cutter.cut()
            return True


def _watch_deadlines(watchdog: _Watchdog) -> None:
    while True:
        try:
            if not watchdog.run_once():
                return
        except Exception as exc:  # noqa: BLE001 - one failed cut must not end every later one
            log_event(log, logging.ERROR, "cutting a fetch at its deadline failed", err=repr(exc))


_WATCHDOG = _Watchdog()
# A forked child has no watchdog thread, and the lock may have been held by one at the fork.
os.register_at_fork(after_in_child=_WATCHDOG._reset)


class _DeadlineCutter:
    """Shuts down the sockets of the fetch in progress when its deadline passes.

    A socket timeout bounds each read, not the whole answer: a peer that sends a byte now and
    then, in the headers or the body, would otherwise hold a fetch (and the scrape waiting on
    it) far past the deadline. Shutting the socket down wakes the blocked read at once. The
    shared `_Watchdog` decides when; the cutter only knows the sockets.
    """

    def __init__(self, deadline: float, watchdog: _Watchdog | None = None) -> None:
        self.deadline = deadline
        self._watchdog = watchdog or _WATCHDOG
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._cut = False
        self._entry: list[Any] | None = None

    def __enter__(self) -> _DeadlineCutter:
        _ACTIVE.cutter = self
        # entry -> cutter -> entry is a cycle only while the fetch runs: __exit__ breaks it.
        self._entry = self._watchdog.register(self.deadline, self)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._entry is not None:
            self._watchdog.unregister(self._entry)
            self._entry = None
        _ACTIVE.cutter = None
        self._sockets.clear()  # the pool owns them from here on

    def watch(self, sock: socket.socket | None) -> None:
        if sock is None:
            return
        with self._lock:
            self._sockets.append(sock)
            if self._cut:
                _shutdown(sock)

    def cut(self) -> None:
        with self._lock:
            self._cut = True
            for sock in self._sockets:
                _shutdown(sock)


def _shutdown(sock: socket.socket) -> None:
    # The plain socket's shutdown, also for TLS: SSLSocket.shutdown would drop the SSL state
    # under the thread that is reading from it.
    with contextlib.suppress(OSError):  # already closed: nothing left to cut
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _watch(sock: socket.socket | None) -> None:
    cutter = getattr(_ACTIVE, "cutter", None)
    if cutter is not None:
        cutter.watch(sock)


# urllib3's connections answer with urllib3's HTTPResponse, not http.client's (as urllib3's own
# hints admit with the same ignore).
class _CuttableHTTPConnection(HTTPConnection):
    def getresponse(self) -> HTTPResponse:  # type: ignore[override]
        _watch(self.sock)
        return super().getresponse()


class _CuttableHTTPSConnection(HTTPSConnection):
    def getresponse(self) -> HTTPResponse:  # type: ignore[override]
        _watch(self.sock)
        return super().getresponse()


class _CuttableHTTPPool(HTTPConnectionPool):
    ConnectionCls = _CuttableHTTPConnection


class _CuttableHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _CuttableHTTPSConnection


class _CuttableAdapter(HTTPAdapter):
    """requests' adapter, with connections whose sockets a `_DeadlineCutter` can reach.

    One adapter (one pool) serves many clients at once, each fetch with its own retry policy:
    `max_retries`, which `send()` reads, is the policy the calling thread set with `retrying()`,
    else the adapter's own.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._per_thread = threading.local()
        self._default_retries: Retry = Retry(0, read=False)
        super().__init__(*args, **kwargs)

    @property
    def max_retries(self) -> Retry:
        policy = getattr(self._per_thread, "policy", None)
        return self._default_retries if policy is None else policy

    @max_retries.setter
    def max_retries(self, policy: Retry) -> None:
        # HTTPAdapter.__init__ (and unpickling) set the adapter's own policy.
        self._default_retries = policy

    def retrying(self, policy: Retry) -> _ThreadRetries:
        """A context in which `policy` is this thread's `max_retries`."""
        return _ThreadRetries(self._per_thread, policy)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _CuttableHTTPPool,
            "https": _CuttableHTTPSPool,
        }


class _ThreadRetries:
    """Sets a thread's retry policy for the duration of one fetch.

    A plain class, not a @contextmanager generator: a generator's frame would join a fetch's
    exception and traceback in a reference cycle.
    """

    __slots__ = ("_per_thread", "_policy")

    def __init__(self, per_thread: threading.local, policy: Retry) -> None:
        self._per_thread = per_thread
        self._policy = policy

    def __enter__(self) -> None:
        self._per_thread.policy = self._policy

    def __exit__(self, *exc: object) -> None:
        # Not kept past the fetch: a policy's history holds the errors it retried.
        self._per_thread.policy = None


def _error_message(response: requests.Response, secret: str) -> str:
    """A short, single-line description of an error body: envelope text, HTML or empty.

    An upstream that echoes the key gets it replaced before the text is trimmed, so neither
    the key nor a recognisable piece of it can reach a log line or an error.
    """
    try:
        raw = response.raw.read(_ERROR_BODY_PEEK, decode_content=True) or b""
    except Exception:  # noqa: BLE001 - the status alone is enough to report
        return ""
    text = raw.decode("utf-8", "replace").strip()
    if not text:
        return "empty body"
    if text.startswith("<"):
        return "HTML error page"
    try:
        doc = json.loads(text)
    except ValueError:
        return "body is not JSON"
    if isinstance(doc, dict):
        for field in ("statusMessage", "message", "error"):
            value = doc.get(field)
            if isinstance(value, str) and value.strip():
                return redact_and_cut(" ".join(value.split()), (secret,), 200)
    return ""


def _send_error(exc: requests.RequestException, deadline: float) -> FetchError:
    if isinstance(exc, requests.Timeout):
        return FetchError("timeout", "no answer before the deadline")
    if isinstance(exc, requests.exceptions.RetryError):
        return FetchError("connection_error", _cause(exc))
    if isinstance(exc, requests.ConnectionError) and (
        _is_timeout(exc) or time.monotonic() >= deadline
    ):
        return FetchError("timeout", "no answer before the deadline")
    return FetchError("connection_error", _cause(exc))


def _drop_tracebacks(exc: BaseException) -> None:
    """Frees the frames of a failed request at once rather than at the next cyclic GC.

    urllib3's `urlopen` keeps the connection error it caught in a local (`new_e`, `err`) of the
    very frame that error's traceback refers to: error -> traceback -> frame -> error, a cycle
    per failed attempt (connection refused, reset, ...) that only the cyclic GC would free.
    Clearing the locals of every finished frame in the chain, and the tracebacks, breaks them.
    """
    pending: list[BaseException] = [exc]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        traceback.clear_frames(current.__traceback__)  # skips frames still running
        current.__traceback__ = None
        linked = (current.__cause__, current.__context__, getattr(current, "reason", None))
        pending.extend(e for e in (*linked, *current.args) if isinstance(e, BaseException))


def _is_timeout(exc: BaseException) -> bool:
    text = repr(exc).lower()
    return "timeout" in text or "timed out" in text


def _cause(exc: BaseException) -> str:
    """The innermost useful reason, without URLs or object addresses."""
    inner: BaseException | None = exc
    while inner is not None:
        reason = getattr(inner, "reason", None)
        if isinstance(reason, BaseException):
            inner = reason
            continue
        args = getattr(inner, "args", ())
        if args and isinstance(args[0], BaseException):
            inner = args[0]
            continue
        break
    text = str(inner) if inner is not None else str(exc)
    if "Connection refused" in text:
        return "connection refused"
    if "Name or service not known" in text or "NameResolutionError" in text:
        return "host name not resolved"
    if "reset" in text.lower():
        return "connection reset by peer"
    if "IncompleteRead" in text or "incomplete" in text.lower():
        return "incomplete body"
    return type(inner).__name__ if inner is not None else type(exc).__name__
