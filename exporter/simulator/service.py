"""Request handling of the simulated API and its admin API, independent of the socket layer.

API order of checks (as a gateway in front of the service would do it): unknown path -> 404,
method other than GET -> 405, latency fault, status/html fault, Authorization -> 401,
subaccount ID pattern -> 400, unknown subaccount -> 404, then the answer (with body faults
empty/invalid/truncated applied to successful answers only). The list body is encoded once per
(state tick, number count, base URL, data faults) and cached, so repeated GETs of an unchanged
state only cost the send; concurrent GETs of a new state wait for one build (single flight).
"""

from __future__ import annotations

import hmac
import http
import json
import re
import threading
import uuid
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote

import msgspec

from exporter.config.values import SUBACCOUNT_PATTERN
from exporter.simulator import faults as faultlib
from exporter.simulator import inventory

NUMBER_PARAM = re.compile(r"^\+?[0-9]{6,15}$")
JSON = "application/json"
AUTH_MESSAGE = "Authentication header not found or token invalid"
_MAX_ADMIN_BODY = 1 << 20
_MAX_PATHS = 10_000
_HOST = re.compile(r"^[A-Za-z0-9.\-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")
_MESSAGES = {
    401: AUTH_MESSAGE,
    422: "Unprocessable Entity",
    426: "Upgrade Required",
    429: "Too many requests",
    500: "Internal server error",
}
_ENCODER = msgspec.json.Encoder()


class RequestHeaders(Protocol):
    """A request's headers: a mapping in tests, an email.message.Message from http.server."""

    def get(self, name: str, default: None = None) -> str | None: ...


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = JSON
    headers: dict[str, str] = field(default_factory=dict)


def json_response(status: int, obj: object, headers: dict[str, str] | None = None) -> Response:
    return Response(status, _ENCODER.encode(obj), JSON, headers or {})


def status_message(status: int) -> str:
    if status in _MESSAGES:
        return _MESSAGES[status]
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"


@dataclass
class _Stats:
    total: int = 0
    by_path: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    by_status: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    list_gets: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    single_gets: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    in_flight: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    max_in_flight: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def to_json(self) -> dict[str, Any]:
        names = sorted(set(self.list_gets) | set(self.single_gets))
        return {
            "requests_total": self.total,
            "subaccounts": {
                name: {
                    "list": self.list_gets.get(name, 0),
                    "single": self.single_gets.get(name, 0),
                    "max_in_flight": self.max_in_flight.get(name, 0),
                }
                for name in names
            },
            "paths": dict(self.by_path),
            "statuses": dict(self.by_status),
        }


@dataclass
class _CachedBody:
    key: tuple
    body: bytes


class SimulatorService:
    """State shared by every connection: inventory, faults, stats and the body cache."""

    def __init__(
        self,
        subaccounts: Mapping[str, int],
        api_key: str,
        seed: int,
        clock: Callable[[], float],
        faults: faultlib.FaultDocument,
        tick_seconds: float = inventory.TICK_SECONDS,
    ) -> None:
        self.subaccounts = dict(subaccounts)
        self.seed = seed
        self.clock = clock
        self.tick_seconds = tick_seconds
        self.stopping = threading.Event()
        self._api_key = api_key.encode()
        self._faults = faults
        self._stats = _Stats()
        self._lock = threading.Lock()
        self._build_locks: dict[str, threading.Lock] = {}
        self._bodies: dict[str, _CachedBody] = {}
        self._catalogs: dict[tuple[str, int], inventory.Catalog] = {}
        self._webhooks: dict[str, list[dict[str, Any]]] = {}
        self._balance: tuple[float | None, str, int | None] = (100.0, "USD", None)

    # ---- faults and stats (admin) ----

    def faults(self) -> faultlib.FaultDocument:
        with self._lock:
            return self._faults

    def replace_faults(self, document: faultlib.FaultDocument) -> None:
        with self._lock:
            self._faults = document

    def replace_subaccount_faults(self, subaccount: str, faults: dict[str, Any]) -> None:
        with self._lock:
            others = dict(self._faults.subaccounts)
            if faults:
                others[subaccount] = faults
            else:
                others.pop(subaccount, None)
            self._faults = faultlib.FaultDocument(self._faults.global_, others)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return self._stats.to_json()

    def reset_stats(self) -> None:
        with self._lock:
            self._stats = _Stats()

    def list_request_count(self, subaccount: str) -> int:
        with self._lock:
            return self._stats.list_gets.get(subaccount, 0)

    # ---- state ----

    def catalog(self, subaccount: str, count: int) -> inventory.Catalog:
        """The static inventory, built once per (subaccount, count)."""
        key = (subaccount, count)
        with self._build_lock("catalog:" + subaccount):
            catalog = self._catalogs.get(key)
            if catalog is None:
                catalog = inventory.build_catalog(self.seed, subaccount, count)
                with self._lock:
                    # Keep only the latest count per subaccount: 100k catalogs are large.
                    for old in [k for k in self._catalogs if k[0] == subaccount]:
                        del self._catalogs[old]
                    self._catalogs[key] = catalog
            return catalog

    def _build_lock(self, name: str) -> threading.Lock:
        """One lock per build target, so concurrent requests for a new state build it once."""
        with self._lock:
            return self._build_locks.setdefault(name, threading.Lock())

    def _count(self, subaccount: str, faults: Mapping[str, Any]) -> int:
        return faults.get("numbers", self.subaccounts[subaccount])

    def list_body(self, subaccount: str, base_url: str) -> bytes:
        """The encoded list response for now; cached per state version."""
        faults = self.faults().for_subaccount(subaccount)
        count = self._count(subaccount, faults)
        t = inventory.tick_start(self.clock(), self.tick_seconds)
        key = (t, count, base_url, faultlib.data_fingerprint(faults))
        cached = self._bodies.get(subaccount)
        if cached is not None and cached.key == key:
            return cached.body
        with self._build_lock(subaccount):
            cached = self._bodies.get(subaccount)
            if cached is not None and cached.key == key:
                return cached.body
            body = self._encode_list(subaccount, count, t, base_url, faults)
            self._bodies[subaccount] = _CachedBody(key, body)
            return body

    def _encode_list(
        self, subaccount: str, count: int, t: int, base_url: str, faults: Mapping[str, Any]
    ) -> bytes:
        catalog = self.catalog(subaccount, count)
        records, newest = inventory.list_records(catalog, t, base_url)
        numbers: list[Any] = records
        for index in _selected(catalog, faults.get("expiring")):
            records[index].operational_status = "Expiring"
        for index in _selected(catalog, faults.get("unhealthy")):
            inventory.force_unhealthy(records, catalog, t, index)
        remove = faults.get("remove", 0)
        if remove:
            numbers = records[: max(0, len(records) - remove)]
        malformed = faults.get("malformed_records")
        if malformed is not None:
            for j, index in enumerate(malformed.indices(len(numbers))):
                record = msgspec.to_builtins(numbers[index])
                kind = malformed.kinds[j % len(malformed.kinds)]
                numbers[index] = faultlib.malform(record, kind)
        total = faults.get("total_numbers", len(numbers))
        return _ENCODER.encode(inventory.list_response(numbers, total, newest))

    def snapshot(self, subaccount: str, base_url: str) -> dict[str, Any]:
        return msgspec.json.decode(self.list_body(subaccount, base_url))

    def _visible_index(self, subaccount: str, number: str, faults: Mapping[str, Any]) -> tuple:
        count = self._count(subaccount, faults)
        catalog = self.catalog(subaccount, count)
        index = catalog.index_of(number)
        if index is None or index >= count - faults.get("remove", 0):
            return catalog, None
        return catalog, index

    # ---- request handling ----

    def now_text(self) -> str:
        return inventory.format_ms(int(self.clock() * 1000))

    def handle_api(
        self, method: str, path: str, headers: RequestHeaders, base_url: str
    ) -> Response:
        """Answer one API request; base_url prefixes the `uri` of each number."""
        account = _balance_route(path)
        if account is not None:
            return self._balance_answer(method, unquote(account), headers)
        webhooks_of = _webhooks_route(path)
        if webhooks_of is not None:
            return self._webhooks_answer(method, unquote(webhooks_of), headers)
        route = _api_route(path)
        if route is None:
            return self._not_found()
        raw_id, number = route
        subaccount = unquote(raw_id)
        self._count_request(path, subaccount, method, number)
        in_flight_key = subaccount if method == "GET" and number is None else None
        if in_flight_key is not None:
            self._enter(in_flight_key)
        try:
            response = self._answer(method, subaccount, number, headers, base_url)
        finally:
            if in_flight_key is not None:
                self._leave(in_flight_key)
        with self._lock:
            self._stats.by_status[str(response.status)] += 1
        return response

    def _answer(
        self,
        method: str,
        subaccount: str,
        number: str | None,
        headers: RequestHeaders,
        base_url: str,
    ) -> Response:
        if method != "GET":
            message = f"Request method '{method}' not supported"
            return json_response(
                405, {"statusCode": 405, "statusMessage": message}, {"Allow": "GET"}
            )
        faults = self.faults().for_subaccount(subaccount)
        delay = faults.get("latency_seconds", 0.0)
        if delay and self.stopping.wait(delay):
            return json_response(503, {"statusCode": 503, "statusMessage": "Shutting down"})
        if "status" in faults or faults.get("html"):
            return self._fault_response(faults)
        if not self._authorised(headers.get("Authorization")):
            return json_response(401, {"statusCode": 401, "statusMessage": AUTH_MESSAGE})
        if not SUBACCOUNT_PATTERN.match(subaccount):
            message = f"subAccountId must match {SUBACCOUNT_PATTERN.pattern}"
            return json_response(400, {"statusCode": 400, "statusMessage": message})
        if subaccount not in self.subaccounts:
            message = f"SubAccount not found by Id : {subaccount}"
            return json_response(404, {"statusCode": 404, "statusMessage": message})
        if number is None:
            body = self.list_body(subaccount, base_url)
            return _corrupt(Response(200, body), faults)
        return _corrupt(self._single(subaccount, unquote(number), faults), faults)

    def _single(self, subaccount: str, number: str, faults: Mapping[str, Any]) -> Response:
        if not NUMBER_PARAM.match(number):
            message = "number must be a phone number in E.164 format"
            return json_response(400, {"statusCode": 400, "statusMessage": message})
        catalog, index = self._visible_index(subaccount, number, faults)
        if index is None:
            body = {
                "statusCode": 404,
                "statusMessage": f"Virtual Number not found : {number}",
                "timestamp": self.now_text(),
            }
            return json_response(404, body)
        row = catalog.rows[index]
        payload = {
            "referenceId": row[2].reference_id,
            "msisdn": row[0],
            "countryCode": row[2].country,
        }
        return json_response(
            200,
            {
                "statusCode": 0,
                "statusMessage": "OK",
                "timestamp": self.now_text(),
                "payload": payload,
            },
        )

    # ---- webhooks registered at "8x8" (GET .../webhooks) ----

    def set_webhooks(self, subaccount: str, hooks: list[dict[str, Any]]) -> None:
        """What GET /api/v1/subaccounts/{id}/webhooks lists: {type, url, enabled,
        httpAuthHeaderAvailable} per webhook."""
        with self._lock:
            self._webhooks[subaccount] = [dict(hook) for hook in hooks]

    def _webhooks_answer(self, method: str, subaccount: str, headers: RequestHeaders) -> Response:
        if method != "GET":
            message = f"Request method '{method}' not supported"
            return json_response(405, {"statusCode": 405, "statusMessage": message})
        if not self._authorised(headers.get("Authorization")):
            return json_response(401, {"statusCode": 401, "statusMessage": AUTH_MESSAGE})
        if subaccount not in self.subaccounts:
            message = f"SubAccount not found by Id : {subaccount}"
            return json_response(404, {"statusCode": 404, "statusMessage": message})
        with self._lock:
            hooks = list(self._webhooks.get(subaccount, []))
        body = {
            "subAccountId": subaccount,
            "count": len(hooks),
            "webhooks": hooks,
            "statusCode": 0,
            "statusMessage": "ok",
        }
        return json_response(200, body)

    # ---- the prepaid balance (GET /api/v1/accounts/{accountId}/balance) ----

    def set_balance(
        self, balance: float | None, currency: str = "USD", fault: int | None = None
    ) -> None:
        """What the balance endpoint answers: `balance` in `currency`; None for an account not
        in prepaid mode (403, code 1201); `fault` an HTTP status to answer instead."""
        with self._lock:
            self._balance = (balance, currency, fault)

    def _balance_answer(self, method: str, account: str, headers: RequestHeaders) -> Response:
        with self._lock:
            self._stats.total += 1
            balance, currency, fault = self._balance
        if method != "GET":
            message = f"Request method '{method}' not supported"
            return json_response(405, {"code": 405, "message": message})
        if not self._authorised(headers.get("Authorization")):
            return json_response(401, {"code": 1200, "message": "Unauthorized"})
        if fault is not None:
            return self._fault_response({"status": fault, "envelope": "platform"})
        if balance is None:
            return json_response(403, {"code": 1201, "message": "Account not in prepaid mode"})
        return json_response(200, {"balance": balance, "currency": currency})

    def _authorised(self, header: str | None) -> bool:
        if not header:
            return False
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(token.strip().encode(), self._api_key)

    def _fault_response(self, faults: Mapping[str, Any]) -> Response:
        status = faults.get("status", 502)
        message = faults.get("message") or status_message(status)
        headers: dict[str, str] = {}
        retry_after = faults.get("retry_after", 1 if status == 429 else None)
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        if status == 426:
            headers["Upgrade"] = "TLS/1.3"
        if faults.get("html"):
            return Response(status, _html_page(status), "text/html", headers)
        if faults.get("envelope") == "platform":
            envelope: dict[str, Any] = {
                "code": status,
                "message": message,
                "errorId": str(uuid.uuid4()),
                "timestamp": self.now_text(),
            }
        elif status == 422:
            envelope = {
                "statusCode": "1001",
                "statusMessage": message,
                "errorId": str(uuid.uuid4()),
            }
        else:
            envelope = {"statusCode": status, "statusMessage": message}
        response = json_response(status, envelope, headers)
        return _corrupt(response, faults)

    def _not_found(self) -> Response:
        with self._lock:
            self._stats.total += 1
            self._stats.by_status["404"] += 1
        return json_response(404, {"statusCode": 404, "statusMessage": "Not Found"})

    def _count_request(self, path: str, subaccount: str, method: str, number: str | None) -> None:
        with self._lock:
            stats = self._stats
            stats.total += 1
            if path in stats.by_path or len(stats.by_path) < _MAX_PATHS:
                stats.by_path[path] += 1
            if method == "GET":
                target = stats.list_gets if number is None else stats.single_gets
                target[subaccount] += 1

    def _enter(self, subaccount: str) -> None:
        with self._lock:
            self._stats.in_flight[subaccount] += 1
            current = self._stats.in_flight[subaccount]
            self._stats.max_in_flight[subaccount] = max(
                current, self._stats.max_in_flight[subaccount]
            )

    def _leave(self, subaccount: str) -> None:
        with self._lock:
            self._stats.in_flight[subaccount] -= 1

    # ---- admin API ----

    def handle_admin(self, method: str, path: str, query: str, body: bytes) -> Response:
        route = (method, path.rstrip("/"))
        params = parse_qs(query)
        subaccount = params.get("subaccount", [None])[0]
        try:
            if route == ("GET", "/admin/healthy"):
                return Response(200, b"OK\n", "text/plain")
            if route == ("GET", "/admin/faults"):
                return json_response(200, self.faults().to_json())
            if route == ("PUT", "/admin/faults"):
                self._put_faults(body, subaccount)
                return json_response(200, self.faults().to_json())
            if route == ("DELETE", "/admin/faults"):
                if subaccount is None:
                    self.replace_faults(faultlib.FaultDocument())
                else:
                    self.replace_subaccount_faults(subaccount, {})
                return json_response(200, self.faults().to_json())
            if route == ("GET", "/admin/stats"):
                return json_response(200, self.stats())
            if route == ("POST", "/admin/stats/reset"):
                self.reset_stats()
                return json_response(200, self.stats())
        except faultlib.FaultError as exc:
            return json_response(400, {"error": str(exc)})
        known = {"/admin/healthy", "/admin/faults", "/admin/stats", "/admin/stats/reset"}
        if route[1] in known:
            return json_response(405, {"error": f"method {method} not allowed on {route[1]}"})
        return json_response(404, {"error": f"no admin endpoint {path}"})

    def _put_faults(self, body: bytes, subaccount: str | None) -> None:
        if len(body) > _MAX_ADMIN_BODY:
            raise faultlib.FaultError("faults: body too large")
        try:
            document = json.loads(body or b"{}")
        except ValueError as exc:
            raise faultlib.FaultError(f"faults: invalid JSON: {exc}") from None
        if subaccount is None:
            self.replace_faults(faultlib.parse_fault_document(document))
        else:
            faults = faultlib.parse_fault_set(document, f"faults.subaccounts.{subaccount}")
            self.replace_subaccount_faults(subaccount, faults)


def _selected(catalog: inventory.Catalog, chosen: tuple[str, ...] | int | None) -> list[int]:
    if chosen is None:
        return []
    if isinstance(chosen, int):
        return list(range(min(chosen, len(catalog.rows))))
    found = (catalog.index_of(msisdn) for msisdn in chosen)
    return [index for index in found if index is not None]


def _api_route(path: str) -> tuple[str, str | None] | None:
    """(raw subaccount segment, raw number segment or None) for the two API paths."""
    parts = path.split("/")
    if len(parts) not in (6, 7) or parts[:4] != ["", "api", "v1", "subaccounts"]:
        return None
    if parts[5] != "numbers" or not parts[4]:
        return None
    if len(parts) == 7:
        return (parts[4], parts[6]) if parts[6] else None
    return parts[4], None


def _balance_route(path: str) -> str | None:
    """The raw account segment of /api/v1/accounts/{accountId}/balance, else None."""
    parts = path.split("/")
    if len(parts) == 6 and parts[:4] == ["", "api", "v1", "accounts"] and parts[4]:
        return parts[4] if parts[5] == "balance" else None
    return None


def _webhooks_route(path: str) -> str | None:
    """The raw subaccount segment of /api/v1/subaccounts/{id}/webhooks, else None."""
    parts = path.split("/")
    if len(parts) == 6 and parts[:4] == ["", "api", "v1", "subaccounts"] and parts[4]:
        return parts[4] if parts[5] == "webhooks" else None
    return None


def _corrupt(response: Response, faults: Mapping[str, Any]) -> Response:
    """Apply empty/invalid/truncated body faults to an answer."""
    kind = faultlib.body_fault(faults)
    if kind == "empty_body":
        response.body = b""
    elif kind == "invalid_json":
        response.body = b'{"statusCode": 0, "statusMessage": "OK", "numbers": [{msisdn: +65}'
    elif kind == "truncated_json":
        response.body = response.body[: len(response.body) // 2]
    return response


def _html_page(status: int) -> bytes:
    title = f"{status} {status_message(status)}"
    return (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n<hr><center>proxy</center>\r\n"
        "</body>\r\n</html>\r\n"
    ).encode()


def base_url_for(host_header: str | None, fallback: str) -> str:
    """http://<Host> when the header is a plain host[:port], else the server's own base URL."""
    if host_header and _HOST.match(host_header):
        return f"http://{host_header}"
    return fallback
