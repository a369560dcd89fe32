"""Fault sets: parsing, validation, merging, and applying them to responses.

A fault document is `{"global": {...}, "subaccounts": {"<id>": {...}}}`; a bare fault set
(`{"status": 503}`) means `{"global": {...}}`. A request for subaccount S gets the global set
overlaid key by key with S's set. Every fault applies to every matching request until cleared:
nothing here is random. Kinds (all optional):

    latency_seconds   number 0-300: delay before answering
    status            int 400-599: answer with this status and an error body
    envelope          "voice" (default) | "platform": the error body's shape
    message           string: the error message (default: the status' usual text)
    retry_after       int >= 0 or null: Retry-After header (429 gets 1 unless null is given)
    html              bool: an HTML error page (text/html); status defaults to 502
    empty_body        bool: no body (with `status`/`html`, else on successful answers)
    invalid_json      bool: a body that is not JSON (idem)
    truncated_json    bool: the real body cut in the middle (idem)
    malformed_records int count | float fraction in (0,1] | {"count"|"fraction", "kinds"}
    numbers           int 0-1000000: number count of the subaccount
    total_numbers     int >= 0: the totalNumbers reported, whatever the list holds
    unhealthy         [msisdn, ...] or int N (the first N numbers): forced unhealthy
    expiring          [msisdn, ...] or int N: forced operationalStatus Expiring
    remove            int >= 0: numbers dropped from the end of the list and from totalNumbers
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeGuard

MALFORMED_KINDS = ("not_object", "missing_msisdn", "string_for_number", "number_for_string")
BODY_KINDS = ("html", "empty_body", "invalid_json", "truncated_json")  # in order of precedence
DATA_KINDS = ("malformed_records", "numbers", "total_numbers", "unhealthy", "expiring", "remove")
FAULT_KINDS = (
    "latency_seconds",
    "status",
    "envelope",
    "message",
    "retry_after",
    *BODY_KINDS,
    *DATA_KINDS,
)
MAX_NUMBERS = 1_000_000
_MSISDN = re.compile(r"^\+?[0-9]{6,15}$")


class FaultError(ValueError):
    """An invalid fault document; the message names the offending key."""


@dataclass(frozen=True)
class Malformed:
    count: int | None
    fraction: float | None
    kinds: tuple[str, ...]

    def indices(self, length: int) -> list[int]:
        """Which records to break: spread evenly over the list, deterministic."""
        wanted = (
            self.count if self.count is not None else math.ceil((self.fraction or 0.0) * length)
        )
        wanted = min(wanted, length)
        return [j * length // wanted for j in range(wanted)] if wanted else []

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kinds": list(self.kinds)}
        if self.count is not None:
            out["count"] = self.count
        else:
            out["fraction"] = self.fraction
        return out


@dataclass(frozen=True)
class FaultDocument:
    global_: dict[str, Any] = field(default_factory=dict)
    subaccounts: dict[str, dict[str, Any]] = field(default_factory=dict)

    def for_subaccount(self, subaccount: str | None) -> dict[str, Any]:
        merged = dict(self.global_)
        if subaccount is not None:
            merged.update(self.subaccounts.get(subaccount, {}))
        return merged

    def to_json(self) -> dict[str, Any]:
        return {
            "global": fault_set_to_json(self.global_),
            "subaccounts": {k: fault_set_to_json(v) for k, v in self.subaccounts.items()},
        }


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _int_in(where: str, value: object, low: int, high: int | None = None) -> int:
    if not _is_int(value) or value < low or (high is not None and value > high):
        upper = f"-{high}" if high is not None else " or more"
        raise FaultError(f"{where}: must be an integer {low}{upper}, got {value!r}")
    return value


def _bool(where: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise FaultError(f"{where}: must be true or false, got {value!r}")
    return value


def _malformed(where: str, value: object) -> Malformed:
    if _is_int(value):
        return Malformed(_int_in(where, value, 0), None, MALFORMED_KINDS)
    if isinstance(value, float):
        return Malformed(None, _fraction(where, value), MALFORMED_KINDS)
    if not isinstance(value, Mapping):
        raise FaultError(f"{where}: must be a count, a fraction or an object, got {value!r}")
    unknown = set(value) - {"count", "fraction", "kinds"}
    if unknown:
        raise FaultError(f"{where}: unknown key {sorted(unknown)[0]!r}")
    if ("count" in value) == ("fraction" in value):
        raise FaultError(f"{where}: give exactly one of 'count' and 'fraction'")
    kinds = value.get("kinds", list(MALFORMED_KINDS))
    if not isinstance(kinds, list) or not kinds or any(k not in MALFORMED_KINDS for k in kinds):
        raise FaultError(f"{where}.kinds: must be a non-empty list of {', '.join(MALFORMED_KINDS)}")
    if "count" in value:
        return Malformed(_int_in(f"{where}.count", value["count"], 0), None, tuple(kinds))
    return Malformed(None, _fraction(f"{where}.fraction", value["fraction"]), tuple(kinds))


def _fraction(where: str, value: object) -> float:
    if not _is_number(value) or not 0 < value <= 1:
        raise FaultError(f"{where}: a fraction must be a number in (0, 1], got {value!r}")
    return float(value)


def _msisdns(where: str, value: object) -> tuple[str, ...] | int:
    if _is_int(value):
        return _int_in(where, value, 0)
    if not isinstance(value, list):
        raise FaultError(f"{where}: must be a list of E.164 numbers or a count, got {value!r}")
    for item in value:
        if not isinstance(item, str) or not _MSISDN.match(item):
            raise FaultError(f"{where}: {item!r} is not an E.164 number such as +6561234567")
    return tuple("+" + item.lstrip("+") for item in value)


def _validate_kind(where: str, key: str, value: object) -> object:
    if key == "latency_seconds":
        if not _is_number(value) or not 0 <= value <= 300:
            raise FaultError(f"{where}: must be a number of seconds 0-300, got {value!r}")
        return float(value)
    if key == "status":
        return _int_in(where, value, 400, 599)
    if key == "envelope":
        if value not in ("voice", "platform"):
            raise FaultError(f"{where}: must be 'voice' or 'platform', got {value!r}")
        return value
    if key == "message":
        if not isinstance(value, str):
            raise FaultError(f"{where}: must be a string, got {value!r}")
        return value
    if key == "retry_after":
        return None if value is None else _int_in(where, value, 0, 86_400)
    if key in BODY_KINDS:
        return _bool(where, value)
    if key == "malformed_records":
        return _malformed(where, value)
    if key == "numbers":
        return _int_in(where, value, 0, MAX_NUMBERS)
    if key in ("total_numbers", "remove"):
        return _int_in(where, value, 0)
    return _msisdns(where, value)  # unhealthy, expiring


def parse_fault_set(value: object, where: str = "faults") -> dict[str, Any]:
    """Validate one fault set; returns the normalised set (only the keys given)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise FaultError(f"{where}: must be an object of faults, got {type(value).__name__}")
    faults: dict[str, Any] = {}
    for key, item in value.items():
        if key not in FAULT_KINDS:
            raise FaultError(f"{where}: unknown fault {key!r} (known: {', '.join(FAULT_KINDS)})")
        faults[key] = _validate_kind(f"{where}.{key}", key, item)
    body_faults = [k for k in BODY_KINDS if faults.get(k)]
    if len(body_faults) > 1:
        raise FaultError(f"{where}: {' and '.join(body_faults)} cannot be combined")
    return faults


def parse_fault_document(value: object, where: str = "faults") -> FaultDocument:
    """A whole document, or a bare fault set taken as the global set."""
    if value is None:
        return FaultDocument()
    if not isinstance(value, Mapping):
        raise FaultError(f"{where}: must be an object, got {type(value).__name__}")
    if not set(value) <= {"global", "subaccounts"}:
        return FaultDocument(parse_fault_set(value, where))
    subaccounts = value.get("subaccounts") or {}
    if not isinstance(subaccounts, Mapping):
        raise FaultError(f"{where}.subaccounts: must map subaccount IDs to fault sets")
    parsed: dict[str, dict[str, Any]] = {}
    for name, faults in subaccounts.items():
        if not isinstance(name, str) or not 1 <= len(name) <= 200:
            raise FaultError(f"{where}.subaccounts: {name!r} is not a subaccount ID")
        parsed[name] = parse_fault_set(faults, f"{where}.subaccounts.{name}")
    return FaultDocument(parse_fault_set(value.get("global"), f"{where}.global"), parsed)


def fault_set_to_json(faults: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in faults.items():
        if isinstance(value, Malformed):
            out[key] = value.to_json()
        elif isinstance(value, tuple):
            out[key] = list(value)
        else:
            out[key] = value
    return out


def data_fingerprint(faults: Mapping[str, Any]) -> tuple:
    """What in a fault set changes the list body: part of the body cache key."""
    return tuple((k, faults[k]) for k in DATA_KINDS if k in faults)


def body_fault(faults: Mapping[str, Any]) -> str | None:
    """The body fault in force, by precedence html > empty_body > invalid_json > truncated."""
    return next((k for k in BODY_KINDS if faults.get(k)), None)


def malform(record: Any, kind: str) -> Any:
    """Break one record in a documented way; record is a dict of the record's fields."""
    if kind == "not_object":
        return record.get("msisdn", "")
    if kind == "missing_msisdn":
        record.pop("msisdn", None)
    elif kind == "string_for_number":
        record["rentalPrice"] = f"{record['rentalPrice']:.2f}"
    elif kind == "number_for_string":
        record["msisdn"] = int(record["msisdn"].lstrip("+"))
    return record
