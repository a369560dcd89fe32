"""HTTP client for 8x8's "Get My Virtual Numbers" endpoint.

It returns the raw body of one subaccount's list, or raises `FetchError` with a reason. Every
fetch is bounded by a deadline (connection, retries and body together), by a size cap that is
enforced while reading, and retries only what is safe to retry (connection errors, 429, 5xx)
with urllib3's own `Retry`, never waiting past the deadline.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import socket
import threading
import time
from types import TracebackType
from typing import Any
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter
from urllib3 import BaseHTTPResponse
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import ConnectionPool, HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import InvalidHeader, MaxRetryError, ResponseError
from urllib3.response import HTTPResponse
from urllib3.util.retry import Retry
from urllib3.util.timeout import Timeout

from exporter import __version__
from exporter.config import Secret
from exporter.errors import FetchError, reason_for_status
from exporter.redact import redact_and_cut

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# urllib3 logs a "Retrying (Retry(...)) after connection broken by ..." warning per retry: internal
# class names, no subaccount. This client reports its retries itself, folded into the one
# FetchError of a fetch (`retries`), so urllib3's own lines are not wanted.
logging.getLogger("urllib3").setLevel(logging.ERROR)
_READ_CHUNK_BYTES = 1 << 16
_ERROR_BODY_PEEK = 1 << 14
_JITTER = random.SystemRandom()  # spreads retries; not a security use


class DeadlineRetry(Retry):
    """urllib3 Retry that gives up instead of sleeping past the scrape deadline.

    `Retry-After` is honoured when present; a wait that would end after the deadline ends the
    retries at once, and the last answer (e.g. the 429) is what the caller sees.
    """

    def __init__(self, *args: object, deadline: float = math.inf, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.deadline = deadline
        # Shared by every copy urllib3 makes of this policy during one fetch.
        self.made = RetriesMade()

    def new(self, **kwargs: object) -> DeadlineRetry:
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
            raise MaxRetryError(_pool, url, error or ResponseError("no time left to retry"))
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


class ApiClient:
    """Reads one subaccount's virtual numbers from one 8x8 API base URL with one key."""

    def __init__(
        self,
        base_url: str,
        api_key: Secret,
        *,
        timeout: float = 10.0,
        max_response_bytes: int = 256 * 2**20,
        retries: int = 2,
        backoff_factor: float = 0.2,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes
        self._retries = retries
        self._backoff = backoff_factor
        self._api_key = api_key
        self._session = requests.Session()
        self._session.trust_env = False  # never route the key through an ambient proxy setting
        self._adapter = _CuttableAdapter(pool_connections=1, pool_maxsize=4)
        self._session.mount("http://", self._adapter)
        self._session.mount("https://", self._adapter)
        self._lock = threading.Lock()

    def numbers_url(self, subaccount: str) -> str:
        return f"{self.base_url}/api/v1/subaccounts/{quote(subaccount, safe='')}/numbers"

    def webhooks_url(self, subaccount: str) -> str:
        return f"{self.base_url}/api/v1/subaccounts/{quote(subaccount, safe='')}/webhooks"

    def fetch_numbers(self, subaccount: str, timeout: float | None = None) -> bytearray:
        """The raw JSON body of the subaccount's list; FetchError on any failure."""
        return self._fetch(self.numbers_url(subaccount), timeout)

    def fetch_webhooks(self, subaccount: str, timeout: float | None = None) -> bytearray:
        """The raw JSON body of the subaccount's webhook list (--collector.webhooks)."""
        return self._fetch(self.webhooks_url(subaccount), timeout)

    def _fetch(self, url: str, timeout: float | None) -> bytearray:
        budget = self.timeout if timeout is None else min(timeout, self.timeout)
        deadline = time.monotonic() + max(budget, 0.001)
        # One fetch at a time per client: the adapter's retry policy is set per fetch.
        with self._lock, _DeadlineCutter(deadline):
            policy = self._adapter.max_retries = self._retry_policy(deadline)
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
        headers = {
            "Authorization": f"Bearer {self._api_key.reveal()}",
            "Accept": "application/json",
            "User-Agent": f"eightbyeight-exporter/{__version__}",
        }
        try:
            return self._session.get(
                url,
                headers=headers,
                timeout=DeadlineTimeout(deadline),
                stream=True,
                allow_redirects=False,
            )
        except requests.Timeout:
            raise FetchError("timeout", "no answer before the deadline") from None
        except requests.exceptions.RetryError as exc:
            raise FetchError("connection_error", _cause(exc)) from None
        except requests.ConnectionError as exc:
            if _is_timeout(exc) or time.monotonic() >= deadline:
                raise FetchError("timeout", "no answer before the deadline") from None
            raise FetchError("connection_error", _cause(exc)) from None
        except requests.RequestException as exc:
            raise FetchError("connection_error", _cause(exc)) from None

    def _status_error(self, response: requests.Response) -> FetchError:
        status = response.status_code
        detail = f"HTTP {status}"
        message = _error_message(response, self._api_key.reveal())
        if message:
            detail = f"{detail}: {message}"
        if 300 <= status < 400:
            return FetchError("invalid_response", f"unexpected redirect ({detail})", status)
        return FetchError(reason_for_status(status), detail, status)

    def _read_body(self, response: requests.Response, deadline: float) -> bytearray:
        cap = self.max_response_bytes
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > cap:
            raise FetchError(
                "invalid_response", f"body of {declared} bytes exceeds the {cap}-byte cap", 200
            )
        body = bytearray()
        try:
            for chunk in response.iter_content(_READ_CHUNK_BYTES):
                body += chunk
                if len(body) > cap:
                    raise FetchError("invalid_response", f"body exceeds the {cap}-byte cap", 200)
                if time.monotonic() > deadline:
                    raise FetchError("timeout", "body not read before the deadline", 200)
        except (requests.RequestException, OSError, AttributeError, ValueError) as exc:
            # AttributeError/ValueError: urllib3 reading from a connection that was cut.
            if time.monotonic() >= deadline:
                raise FetchError("timeout", "body not read before the deadline", 200) from None
            raise FetchError("connection_error", f"body cut off: {_cause(exc)}", 200) from None
        if time.monotonic() >= deadline:
            # A socket cut at the deadline can look like a short, complete body.
            raise FetchError("timeout", "body not read before the deadline", 200)
        return body


_ACTIVE = threading.local()


class _DeadlineCutter:
    """Shuts down the sockets of the fetch in progress when its deadline passes.

    A socket timeout bounds each read, not the whole answer: a peer that sends a byte now and
    then, in the headers or the body, would otherwise hold a fetch (and the scrape waiting on
    it) far past the deadline. Shutting the socket down wakes the blocked read at once.
    """

    def __init__(self, deadline: float) -> None:
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._cut = False
        self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self.cut)
        self._timer.daemon = True

    def __enter__(self) -> _DeadlineCutter:
        _ACTIVE.cutter = self
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        _ACTIVE.cutter = None

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


class _CuttableHTTPConnection(HTTPConnection):
    def getresponse(self) -> HTTPResponse:
        _watch(self.sock)
        return super().getresponse()


class _CuttableHTTPSConnection(HTTPSConnection):
    def getresponse(self) -> HTTPResponse:
        _watch(self.sock)
        return super().getresponse()


class _CuttableHTTPPool(HTTPConnectionPool):
    ConnectionCls = _CuttableHTTPConnection


class _CuttableHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _CuttableHTTPSConnection


class _CuttableAdapter(HTTPAdapter):
    """requests' adapter, with connections whose sockets a `_DeadlineCutter` can reach."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _CuttableHTTPPool,
            "https": _CuttableHTTPSPool,
        }


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
