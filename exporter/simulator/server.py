"""The simulator's HTTP servers and the in-process `Simulator` handle.

One threaded listener serves the API; the admin API (`/admin/...`) is answered on the same
listener to loopback clients only (others get a plain 404), or, when an admin address is
given, on a separate listener of its own that answers anyone able to reach it. Keep-alive
connections are tracked so that `stop()` closes them and joins the serving thread.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from exporter.config.values import SUBACCOUNT_PATTERN, host_port, loopback_for
from exporter.simulator import faults as faultlib
from exporter.simulator import inventory
from exporter.simulator.push import PushFaults, PushSender, PushStats
from exporter.simulator.scenario import load_scenario_file
from exporter.simulator.service import (
    Response,
    SimulatorService,
    base_url_for,
    json_response,
)

log = logging.getLogger("exporter.simulator")

DEFAULT_SUBACCOUNT = "demo"
DEFAULT_NUMBERS = 60
_MAX_DISCARDED_BODY = 1 << 20


def is_loopback(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "eightbyeight-simulator"
    timeout = 60  # idle keep-alive connections end after this many seconds
    # The headers and the body are two writes: with Nagle's algorithm on, the body's last
    # segment waits for the client's delayed ACK of the headers, 40 ms on every kept-alive fetch.
    disable_nagle_algorithm = True
    server: _Server

    def version_string(self) -> str:
        return self.server_version

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_OPTIONS(self) -> None:
        self._dispatch("OPTIONS")

    def _dispatch(self, method: str) -> None:
        target = self.path
        if target.startswith(("http://", "https://")):
            split = urlsplit(target)
            target = split.path + ("?" + split.query if split.query else "")
        path, _, query = target.partition("?")
        body = self._read_body()
        if body is None:
            return
        service = self.server.service
        if self._is_admin_path(path) and self._admin_allowed():
            response = service.handle_admin(method, path, query, body)
        elif self.server.serve_api:
            base = base_url_for(self.headers.get("Host"), self.server.base_url)
            response = service.handle_api(method, path, self.headers, base)
        else:
            response = json_response(404, {"error": f"no admin endpoint {path}"})
        self._send(method, response)

    @staticmethod
    def _is_admin_path(path: str) -> bool:
        return path == "/admin" or path.startswith("/admin/")

    def _admin_allowed(self) -> bool:
        if not self.server.serve_admin:
            return False
        return self.server.admin_any_client or is_loopback(self.client_address[0])

    def _read_body(self) -> bytes | None:
        """The request body; None when the connection cannot continue."""
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            self._send("GET", json_response(411, {"error": "send a Content-Length"}))
            return None
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > _MAX_DISCARDED_BODY:
            self.close_connection = True
            self._send("GET", json_response(413, {"error": "request body too large"}))
            return None
        return self.rfile.read(length) if length else b""

    def _send(self, method: str, response: Response) -> None:
        content_type = response.content_type
        if content_type.startswith("text/"):
            content_type += "; charset=utf-8"
        try:
            self.send_response(response.status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(response.body)))
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.end_headers()
            if method != "HEAD" and response.body:
                self.wfile.write(response.body)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if log.isEnabledFor(logging.DEBUG):
            path = self.path.split("?", 1)[0]
            log.debug(
                "request",
                extra={"fields": {"method": self.command, "path": path, "status": code}},
            )

    def log_message(self, format: str, *args: Any) -> None:
        log.debug(format % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client closing a kept-alive connection (an exporter that stops with its pool of
        # connections open) resets it: that is how such connections end, not worth a traceback.
        kind = sys.exc_info()[0]
        log.debug("connection ended: %s", kind.__name__ if kind else "unknown")

    def __init__(
        self,
        address: tuple[str, int],
        service: SimulatorService,
        *,
        serve_api: bool,
        serve_admin: bool,
        admin_any_client: bool,
    ) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.service = service
        self.serve_api = serve_api
        self.serve_admin = serve_admin
        self.admin_any_client = admin_any_client
        self.base_url = ""
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)
        self.base_url = f"http://{host_port(loopback_for(address[0]), self.server_address[1])}"

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the FQDN of the bind address, which can stall on DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


def _normalise_subaccounts(subaccounts: Mapping[str, int] | Sequence[str] | None) -> dict:
    if subaccounts is None:
        return {DEFAULT_SUBACCOUNT: DEFAULT_NUMBERS}
    if isinstance(subaccounts, str):
        raise ValueError("subaccounts must be a mapping of ID to number count or a list of IDs")
    if not isinstance(subaccounts, Mapping):
        subaccounts = dict.fromkeys(subaccounts, DEFAULT_NUMBERS)
    result: dict[str, int] = {}
    for name, count in subaccounts.items():
        if not isinstance(name, str) or not SUBACCOUNT_PATTERN.match(name):
            raise ValueError(f"subaccount ID {name!r} must match {SUBACCOUNT_PATTERN.pattern}")
        if isinstance(count, bool) or not isinstance(count, int):
            raise ValueError(f"number count of {name} must be an integer, got {count!r}")
        if not 0 <= count <= faultlib.MAX_NUMBERS:
            raise ValueError(f"number count of {name} must be 0-{faultlib.MAX_NUMBERS}")
        result[name] = count
    return result


def _scenario_document(
    scenario: Mapping[str, Any] | str | os.PathLike | None,
) -> faultlib.FaultDocument:
    if scenario is None:
        return faultlib.FaultDocument()
    if isinstance(scenario, str | os.PathLike):
        return load_scenario_file(Path(scenario))
    return faultlib.parse_fault_document(scenario, "scenario")


class Simulator:
    """The simulated 8x8 Virtual Numbers API on loopback, for tests and the demo.

    `with Simulator(subaccounts={"acme-prod": 60}, api_key="k") as sim:` serves
    `sim.base_url`; the clock (Unix seconds) can be injected to control evolution.
    """

    def __init__(
        self,
        subaccounts: Mapping[str, int] | Sequence[str] | None = None,
        api_key: str = "",
        seed: int = 1,
        clock: Callable[[], float] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        scenario: Mapping[str, Any] | str | os.PathLike | None = None,
        admin_host: str | None = None,
        admin_port: int = 0,
        tick_seconds: float = inventory.TICK_SECONDS,
    ) -> None:
        if not isinstance(api_key, str) or not api_key.strip():
            raise ValueError("an API key is required")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        if not tick_seconds > 0:
            raise ValueError("tick_seconds must be positive")
        self._service = SimulatorService(
            _normalise_subaccounts(subaccounts),
            api_key.strip(),
            seed,
            clock or time.time,
            _scenario_document(scenario),
            tick_seconds,
        )
        self._address = (host, port)
        self._admin_address = (admin_host, admin_port) if admin_host is not None else None
        self._servers: list[_Server] = []
        self._threads: list[threading.Thread] = []
        self._started = False
        self._push: PushSender | None = None

    # ---- lifecycle ----

    def start(self) -> Simulator:
        """Bind the listener(s) and serve in background threads; raises OSError on bind errors."""
        if self._started:
            raise RuntimeError("a Simulator can be started once")
        self._started = True
        separate_admin = self._admin_address is not None
        try:
            self._servers.append(
                _Server(
                    self._address,
                    self._service,
                    serve_api=True,
                    serve_admin=not separate_admin,
                    admin_any_client=False,
                )
            )
            if self._admin_address is not None:
                self._servers.append(
                    _Server(
                        self._admin_address,
                        self._service,
                        serve_api=False,
                        serve_admin=True,
                        admin_any_client=True,
                    )
                )
        except OSError:
            self._close_servers()
            raise
        for server in self._servers:
            thread = threading.Thread(
                target=server.serve_forever,
                # stop() waits for the loop's next poll; tests start and stop hundreds.
                kwargs={"poll_interval": 0.02},
                name=f"simulator-{server.server_address[1]}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop serving, close open connections and join the serving threads."""
        self._service.stopping.set()
        if self._push is not None:
            self._push.stop()
        for server in self._servers:
            server.shutdown()
        self._close_servers()
        for thread in self._threads:
            thread.join(timeout=10)
        self._threads = []

    def _close_servers(self) -> None:
        for server in self._servers:
            server.server_close()
            server.close_connections()

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ---- addresses ----

    @property
    def base_url(self) -> str:
        """http://HOST:PORT of the API (the port chosen by the OS when port=0)."""
        if not self._servers:
            raise RuntimeError("the Simulator is not started")
        return self._servers[0].base_url

    @property
    def admin_url(self) -> str:
        """Base of the admin API, e.g. http://127.0.0.1:PORT/admin."""
        if not self._servers:
            raise RuntimeError("the Simulator is not started")
        return self._servers[-1].base_url + "/admin"

    @property
    def subaccounts(self) -> dict[str, int]:
        return dict(self._service.subaccounts)

    # ---- faults, stats, state ----

    def set_faults(self, faults: Mapping[str, Any], subaccount: str | None = None) -> None:
        """Replace the whole fault document (subaccount=None) or one subaccount's fault set.

        Takes the JSON of PUT /admin/faults; raises ValueError (FaultError) when invalid.
        """
        if subaccount is None:
            self._service.replace_faults(faultlib.parse_fault_document(faults))
        else:
            where = f"faults.subaccounts.{subaccount}"
            self._service.replace_subaccount_faults(
                subaccount, faultlib.parse_fault_set(faults, where)
            )

    def clear_faults(self, subaccount: str | None = None) -> None:
        if subaccount is None:
            self._service.replace_faults(faultlib.FaultDocument())
        else:
            self._service.replace_subaccount_faults(subaccount, {})

    def faults(self) -> dict[str, Any]:
        """The fault document in force, as GET /admin/faults returns it."""
        return self._service.faults().to_json()

    def request_count(self, subaccount: str) -> int:
        """GETs of the list endpoint for that subaccount since start or the last stats reset."""
        return self._service.list_request_count(subaccount)

    def stats(self) -> dict[str, Any]:
        return self._service.stats()

    def reset_stats(self) -> None:
        self._service.reset_stats()

    def snapshot(self, subaccount: str) -> dict[str, Any]:
        """The exact JSON object the list endpoint would serve now (data faults included)."""
        if subaccount not in self._service.subaccounts:
            raise KeyError(f"unknown subaccount {subaccount!r}")
        return self._service.snapshot(subaccount, self.base_url)

    # ---- callbacks (webhooks) ----

    def start_push(
        self,
        url: str,
        auth_header: str,
        *,
        interval: float = 1.0,
        sessions_per_interval: int = 2,
    ) -> PushSender:
        """Send VNU and VSS callbacks to `url` with `auth_header` (see exporter/simulator/push.py)."""
        if self._push is not None:
            raise RuntimeError("callbacks are already being pushed")
        for subaccount in self._service.subaccounts:
            # As a user would have done at 8x8 with POST .../webhooks, one per type.
            self.set_webhooks(
                subaccount,
                [
                    {"type": kind, "url": url, "enabled": True, "httpAuthHeaderAvailable": True}
                    for kind in ("VNU", "VSS")
                ],
            )
        self._push = PushSender(
            list(self._service.subaccounts),
            self.snapshot,
            url,
            auth_header,
            seed=self._service.seed,
            interval=interval,
            sessions_per_interval=sessions_per_interval,
            clock=self._service.clock,
        )
        return self._push.start()

    def set_balance(
        self, balance: float | None, currency: str = "USD", fault: int | None = None
    ) -> None:
        """What GET /api/v1/accounts/{id}/balance answers (see SimulatedApi.set_balance)."""
        self._service.set_balance(balance, currency, fault)

    def set_webhooks(self, subaccount: str, hooks: list[dict[str, Any]]) -> None:
        """Replace what GET /api/v1/subaccounts/{id}/webhooks lists for the subaccount."""
        self._service.set_webhooks(subaccount, hooks)

    def set_push_faults(self, **faults: object) -> None:
        """Replace the callback faults: wrong_auth, malformed, duplicate, burst, bad_quality,
        failing, unhealthy=[msisdn, ...]; no arguments clears them."""
        if self._push is None:
            raise RuntimeError("callbacks are not being pushed: call start_push first")
        self._push.set_faults(**faults)

    def push_faults(self) -> PushFaults:
        if self._push is None:
            return PushFaults()
        return self._push.faults()

    def push_stats(self) -> PushStats:
        return self._push.stats if self._push is not None else PushStats()
