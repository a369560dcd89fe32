"""The response model: one list body of the 8x8 API becomes an `Inventory`.

Parsing is strict per record and tolerant per response: a record that is not an object, has no
`msisdn`, or holds a string where a number belongs (or the reverse) is skipped and counted; the
rest of the response still counts. Anything wrong with the response as a whole raises
`ResponseError("invalid_response", ...)`.

Records are decoded from `msgspec.Raw` slices of the body straight into typed structs, a batch
at a time, and folded into per-group counters and per-number columns with C-level map/zip/Counter
calls rather than Python code per record; the decoded structs of only one batch live at once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import attrgetter

import msgspec

from exporter.errors import ResponseError, reason_for_status
from exporter.memo import Memo

KNOWN_STATUSES = ("active", "expiring", "inactive")
UNKNOWN = "unknown"


class NumberHealth(msgspec.Struct, gc=False):
    isHealthy: bool | None = None  # noqa: N815 - the API's field names
    status: str | None = None
    lastCheckedTime: str | None = None  # noqa: N815


class VirtualNumber(msgspec.Struct, gc=False):
    """One element of `numbers[]`, as documented; unknown fields are ignored."""

    msisdn: str
    countryCode: str | None = None  # noqa: N815
    operationalStatus: str | None = None  # noqa: N815
    referenceId: str | None = None  # noqa: N815
    rentalPrice: float | None = None  # noqa: N815
    incomingRate: float | None = None  # noqa: N815
    billingUnit: float | None = None  # noqa: N815
    numberHealthCheckEnabled: bool | None = None  # noqa: N815
    billingCurrency: str | None = None  # noqa: N815
    numberType: str | None = None  # noqa: N815
    numberHealth: NumberHealth | None = None  # noqa: N815
    dateCreated: str | None = None  # noqa: N815
    dateUpdated: str | None = None  # noqa: N815
    uri: str | None = None


class NumbersResponse(msgspec.Struct, gc=False):
    """The list response; `numbers` stays raw so each record is decoded on its own."""

    totalNumbers: int | float | None = None  # noqa: N815
    lastUpdatedAt: str | None = None  # noqa: N815
    numbers: list[msgspec.Raw] | None = None
    statusCode: int | str | None = None  # noqa: N815
    statusMessage: str | None = None  # noqa: N815
    code: int | str | None = None
    message: str | None = None


_RESPONSE = msgspec.json.Decoder(NumbersResponse)
# What decoding one bad record can raise; invalid UTF-8 in a string surfaces as the last.
_BAD_RECORD = (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError)
_RECORD = msgspec.json.Decoder(VirtualNumber)


@dataclass(slots=True)
class NumberColumns:
    """The per-number data, one list per attribute, all of the same length.

    A per-number label's values are the field named like the label (see exporter.catalogue).

    Columns rather than one tuple per number: they are filled and rendered with C-level
    map/slice/join calls instead of a Python loop per number, and hold 13 list objects for the
    garbage collector to track instead of one per number.
    """

    msisdn: list[str] = field(default_factory=list)
    country: list[str] = field(default_factory=list)
    number_type: list[str] = field(default_factory=list)
    operational_status: list[str] = field(default_factory=list)
    health_status: list[str] = field(default_factory=list)
    reference_id: list[str] = field(default_factory=list)
    currency: list[str] = field(default_factory=list)
    healthy: list[bool | None] = field(default_factory=list)
    check_enabled: list[bool | None] = field(default_factory=list)
    last_checked: list[float | None] = field(default_factory=list)
    rental_price: list[float | None] = field(default_factory=list)
    incoming_rate: list[float | None] = field(default_factory=list)
    billing_unit: list[float | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.msisdn)


@dataclass(slots=True)
class GroupStats:
    """Counters for one (country, number_type) pair."""

    statuses: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KNOWN_STATUSES, 0))
    healthy: int = 0
    unhealthy: int = 0
    health_unknown: int = 0
    check_disabled: int = 0
    oldest_check: float | None = None
    monthly_rental_cost: dict[str, float] = field(default_factory=dict)


@dataclass(slots=True)
class Inventory:
    """Everything one good response says, ready to be rendered."""

    total_numbers: float | None
    last_updated: float | None
    listed: int
    invalid_records: int
    groups: dict[tuple[str, str], GroupStats]
    columns: NumberColumns


def parse_timestamp(value: str | None) -> float | None:
    """Unix seconds from an RFC 3339 time (any fraction digits, Z or offset); None if unreadable."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        try:
            # RFC 3339 allows lower-case 't' and 'z', which fromisoformat does not.
            parsed = datetime.fromisoformat(value.upper())
        except ValueError:
            return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.timestamp()
    except (OverflowError, OSError, ValueError):
        return None


def parse_inventory(body: bytes | bytearray, per_number: bool = True) -> Inventory:
    """Decode a list body; raise ResponseError('invalid_response' or an envelope's reason)."""
    response = _decode_response(body)
    _raise_if_error_envelope(response)
    raws = response.numbers
    if raws is None:
        _raise_unless_empty_account(response)
        raws = []
    return _fold_records(response, raws, per_number)


def _decode_response(body: bytes | bytearray) -> NumbersResponse:
    try:
        return _RESPONSE.decode(body)
    except msgspec.ValidationError as exc:
        raise ResponseError("invalid_response", f"unexpected JSON: {exc}") from None
    except UnicodeDecodeError:
        raise ResponseError("invalid_response", "a string is not valid UTF-8") from None
    except msgspec.DecodeError as exc:
        if not body.strip():
            raise ResponseError("invalid_response", "empty body") from None
        head = bytes(body[:64]).lstrip()
        if head.startswith(b"<"):
            raise ResponseError("invalid_response", "HTML instead of JSON") from None
        raise ResponseError("invalid_response", f"invalid JSON: {exc}") from None


# Error codes of the 8x8 platform's own envelope ({"code": 1200, "message": ...}).
PLATFORM_ERRORS = {1200: "unauthorized", 1201: "forbidden", 1300: "not_found", 2000: "server_error"}
# Success as other Voice endpoints say it: 0/"ok" (webhooks), 1/"Created" (call flows), 200.
_SUCCESS_WORDS = frozenset({"ok", "success", "created"})


def _codes(response: NumbersResponse) -> list[int | str]:
    return [code for code in (response.statusCode, response.code) if code not in (None, "")]


def _is_success(code: int | str) -> bool:
    if isinstance(code, str) and code.strip().lower() in _SUCCESS_WORDS:
        return True
    number = _code_number(code)
    return number is not None and 0 <= number < 300


def _code_number(code: int | str) -> int | None:
    try:
        return int(code)
    except ValueError:
        return None


def _raise_if_error_envelope(response: NumbersResponse) -> None:
    """A 200 whose statusCode or code is not a success is that error, whatever else it holds."""
    for code in _codes(response):
        if _is_success(code):
            continue
        message = response.statusMessage or response.message or ""
        number = _code_number(code)
        if number in PLATFORM_ERRORS:
            reason = PLATFORM_ERRORS[number]
        elif number is not None and 400 <= number <= 599:
            reason = reason_for_status(number)
        else:
            reason = "invalid_response"
        raise ResponseError(reason, f"error envelope {code}: {message}")


def _raise_unless_empty_account(response: NumbersResponse) -> None:
    """No list is fine from an account with no numbers, if the body says it is a success."""
    if response.totalNumbers is None and not _codes(response):
        raise ResponseError("invalid_response", "no 'numbers' list in the response")


def _fold_records(
    response: NumbersResponse, raws: list[msgspec.Raw], per_number: bool
) -> Inventory:
    fold = _Fold(per_number)
    for start in range(0, len(raws), _RECORDS_PER_BATCH):
        fold.add(raws[start : start + _RECORDS_PER_BATCH])
    return Inventory(
        total_numbers=_finite(response.totalNumbers),
        last_updated=parse_timestamp(response.lastUpdatedAt),
        listed=len(fold.seen),
        invalid_records=fold.invalid,
        groups=fold.groups(),
        columns=fold.columns,
    )


# Records are decoded and folded a batch at a time: large enough that the Python work per batch
# vanishes next to the C-level work per record, small enough that one batch of decoded structs
# weighs little (decoding all 100,000 records of a large account at once would hold ~100 MB).
_RECORDS_PER_BATCH = 2048

_MSISDN = attrgetter("msisdn")
_COUNTRY = attrgetter("countryCode")
_TYPE = attrgetter("numberType")
_STATUS = attrgetter("operationalStatus")
_CURRENCY = attrgetter("billingCurrency")
_REFERENCE = attrgetter("referenceId")
_ENABLED = attrgetter("numberHealthCheckEnabled")
_HEALTH = attrgetter("numberHealth")
_RENTAL = attrgetter("rentalPrice")
_INCOMING = attrgetter("incomingRate")
_BILLING = attrgetter("billingUnit")
_IS_HEALTHY = attrgetter("isHealthy")
_HEALTH_STATUS = attrgetter("status")
_CHECKED = attrgetter("lastCheckedTime")
_TZINFO = attrgetter("tzinfo")
_NO_HEALTH = NumberHealth()  # stands in for health that is missing or switched off
_INF = float("inf")


# Label values repeat a lot: each distinct one is stored once. Missing or empty means unknown.
_UNKNOWNS = ((None, UNKNOWN), ("", UNKNOWN))


def _same(value: str) -> str:
    return value


class _Fold:
    """Folds batches of raw records into group counters and per-number columns."""

    def __init__(self, per_number: bool) -> None:
        self.per_number = per_number
        self.columns = NumberColumns()
        self.seen: set[str] = set()
        self.invalid = 0
        # (country, number_type, status, healthy, check_enabled) -> numbers; a few hundred keys.
        self.combos: Counter[tuple[str, str, str, bool | None, bool | None]] = Counter()
        self.rental: dict[tuple[str, str, str], float] = {}
        self.oldest: dict[tuple[str, str], float] = {}
        self.shared = Memo(_same, _UNKNOWNS)  # the first copy of each value, shared by the rest
        self.lowered = Memo(str.lower, _UNKNOWNS)

    def add(self, raws: list[msgspec.Raw]) -> None:
        records = self._decode(raws)
        records, msisdns = self._usable(records)
        if not records:
            return
        shared = self.shared.__getitem__
        lowered = self.lowered.__getitem__
        country = list(map(shared, map(_COUNTRY, records)))
        number_type = list(map(shared, map(_TYPE, records)))
        status = list(map(lowered, map(_STATUS, records)))
        currency = list(map(shared, map(_CURRENCY, records)))
        enabled = list(map(_ENABLED, records))
        health = list(map(_HEALTH, records))
        if False in enabled or None in health:
            health = [
                _NO_HEALTH if h is None or e is False else h
                for h, e in zip(health, enabled, strict=True)
            ]
        healthy = list(map(_IS_HEALTHY, health))
        checked = _timestamps(list(map(_CHECKED, health)))
        prices = list(map(_RENTAL, records))

        self.combos.update(zip(country, number_type, status, healthy, enabled, strict=True))
        self._add_rental(zip(country, number_type, currency, strict=True), prices)
        self._add_oldest(zip(country, number_type, strict=True), checked)
        if self.per_number:
            columns = self.columns
            columns.msisdn += msisdns
            columns.country += country
            columns.number_type += number_type
            columns.operational_status += status
            columns.health_status += map(lowered, map(_HEALTH_STATUS, health))
            columns.reference_id += map(shared, map(_REFERENCE, records))
            columns.currency += currency
            columns.healthy += healthy
            columns.check_enabled += enabled
            columns.last_checked += checked
            columns.rental_price += prices
            columns.incoming_rate += map(_INCOMING, records)
            columns.billing_unit += map(_BILLING, records)

    def _decode(self, raws: list[msgspec.Raw]) -> list[VirtualNumber]:
        try:
            return list(map(_RECORD.decode, raws))
        except _BAD_RECORD:
            pass  # some record of this batch is bad: decode one at a time to skip just those
        records = []
        for raw in raws:
            try:
                records.append(_RECORD.decode(raw))
            except _BAD_RECORD:
                self.invalid += 1
        return records

    def _usable(self, records: list[VirtualNumber]) -> tuple[list[VirtualNumber], list[str]]:
        """Drop records whose msisdn is empty or seen before (the first one counts)."""
        msisdns = list(map(_MSISDN, records))
        batch = set(msisdns)
        if len(batch) == len(msisdns) and "" not in batch and self.seen.isdisjoint(batch):
            self.seen |= batch
            return records, msisdns
        kept = []
        for record in records:
            msisdn = record.msisdn
            if not msisdn or msisdn in self.seen:
                self.invalid += 1
                continue
            self.seen.add(msisdn)
            kept.append(record)
        return kept, list(map(_MSISDN, kept))

    def _add_rental(self, keys: Iterable[tuple[str, str, str]], prices: list[float | None]) -> None:
        # Added one by one in record order, so the sums are exactly those of a plain loop.
        rental = self.rental
        get = rental.get
        for key, price in zip(keys, prices, strict=True):
            if price is not None:
                rental[key] = get(key, 0.0) + price

    def _add_oldest(self, keys: Iterable[tuple[str, str]], checked: list[float | None]) -> None:
        oldest = self.oldest
        get = oldest.get
        for key, when in zip(keys, checked, strict=True):
            if when is not None and when < get(key, _INF):
                oldest[key] = when

    def groups(self) -> dict[tuple[str, str], GroupStats]:
        """GroupStats per (country, number_type), in order of first appearance."""
        groups: dict[tuple[str, str], GroupStats] = {}
        # A combo's first record is never later than its group's first: order is preserved.
        for (country, number_type, status, healthy, enabled), count in self.combos.items():
            group = groups.get((country, number_type))
            if group is None:
                group = groups[(country, number_type)] = GroupStats()
            group.statuses[status] = group.statuses.get(status, 0) + count
            if healthy is None:
                group.health_unknown += count
            elif healthy:
                group.healthy += count
            else:
                group.unhealthy += count
            if enabled is False:
                group.check_disabled += count
        for (country, number_type, currency), total in self.rental.items():
            groups[(country, number_type)].monthly_rental_cost[currency] = total
        for key, when in self.oldest.items():
            groups[key].oldest_check = when
        return groups


# Standing in for a missing time so a whole batch can go through fromisoformat at once.
_FILLER = {None: "1970-01-01T00:00:00+00:00"}


def _timestamps(texts: list[str | None]) -> list[float | None]:
    """parse_timestamp of each text; a batch of aware RFC 3339 times takes a C-level path."""
    # _FILLER.get(text, text): the filler for None, any other text unchanged.
    filled = list(map(_FILLER.get, texts, texts)) if None in texts else texts
    try:
        parsed = list(map(datetime.fromisoformat, filled))
        if None in map(_TZINFO, parsed):
            raise ValueError("a time without offset")
        times: list[float | None] = list(map(datetime.timestamp, parsed))
    except (TypeError, ValueError, OverflowError, OSError):
        return list(map(parse_timestamp, texts))
    if filled is not texts:
        times = [None if text is None else when for text, when in zip(texts, times, strict=True)]
    return times


def _finite(value: float | None) -> float | None:
    """A reported count as a float; None when absent or beyond what a float holds."""
    if value is None:
        return None
    try:
        return float(value)
    except OverflowError:
        return None
