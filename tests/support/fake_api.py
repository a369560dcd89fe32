"""A scriptable 8x8 API on loopback, and the records it serves."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from exporter.web.server import serve_in_thread
from tests.support.processes import POLL_INTERVAL

# --- A scriptable 8x8 API ------------------------------------------------------------------------


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    reset_after: int | None = None  # send this many body bytes, then reset the connection
    hang: bool = False  # never answer (until the server stops)
    length: bool = True  # False: no Content-Length; the body ends when the connection closes

    @classmethod
    def json(cls, doc: Any, status: int = 200, **kwargs: Any) -> Reply:
        headers = {"Content-Type": "application/json", **kwargs.pop("headers", {})}
        return cls(status, json.dumps(doc).encode(), headers, **kwargs)


def number(msisdn: str = "+6531234567", **overrides: Any) -> dict[str, Any]:
    """One well-formed record, as the reference page documents it."""
    record = {
        "msisdn": msisdn,
        "dateCreated": "2024-07-01T05:50:23.550Z",
        "dateUpdated": "2024-07-01T05:50:23.550Z",
        "countryCode": "SG",
        "operationalStatus": "Active",
        "referenceId": "range-1",
        "rentalPrice": 5.0,
        "incomingRate": 0.05,
        "billingUnit": 60,
        "uri": f"https://voice.8x8.com/api/v1/subaccounts/acme-prod/numbers/{msisdn}",
        "numberHealthCheckEnabled": True,
        "billingCurrency": "USD",
        "numberType": "Mobile",
        "numberHealth": {
            "isHealthy": True,
            "status": "Healthy",
            "lastCheckedTime": "2024-07-01T05:50:23.550Z",
        },
    }
    record.update(overrides)
    return record


def numbers_body(records: list[Any], total: int | None = None, **extra: Any) -> dict[str, Any]:
    doc = {
        "totalNumbers": len(records) if total is None else total,
        "lastUpdatedAt": "2024-07-01T05:50:23.550Z",
        "numbers": records,
        "statusCode": 0,
        "statusMessage": "OK",
    }
    doc.update(extra)
    return doc


class _BusyServer(ThreadingHTTPServer):
    # A scrape of many subaccounts connects 128 at a time: the default backlog of 5 would
    # drop connections and stall them for a second each.
    request_queue_size = 1024
    daemon_threads = True


class FakeApi:
    """Threaded HTTP server on a free loopback port; use as a context manager."""

    def __init__(self, reply: Reply | Callable[[str, dict[str, str]], Reply] | None = None):
        self.reply = reply or Reply.json(numbers_body([number()]))
        self.requests: list[tuple[str, dict[str, str]]] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                headers = dict(self.headers.items())
                with fake._lock:
                    fake.requests.append((self.path, headers))
                reply = fake.reply(self.path, headers) if callable(fake.reply) else fake.reply
                fake._answer(self, reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = _BusyServer(("127.0.0.1", 0), Handler)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    def _answer(self, handler: BaseHTTPRequestHandler, reply: Reply) -> None:
        if reply.hang:
            self._stopping.wait(60)
            return
        if reply.delay:
            time.sleep(reply.delay)
        handler.send_response(reply.status)
        for name, value in reply.headers.items():
            handler.send_header(name, value)
        if not reply.length:
            handler.send_header("Connection", "close")
            handler.close_connection = True
        elif "Content-Length" not in reply.headers:
            handler.send_header("Content-Length", str(len(reply.body)))
        handler.end_headers()
        if reply.reset_after is not None:
            handler.wfile.write(reply.body[: reply.reset_after])
            handler.wfile.flush()
            handler.connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
            handler.connection.close()
            handler.close_connection = True
            return
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            handler.wfile.write(reply.body)

    def __enter__(self) -> FakeApi:
        self._thread = serve_in_thread(self._server, POLL_INTERVAL)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
