"""The response model: one list body of the 8x8 API becomes an `Inventory`.

Parsing is strict per record and tolerant per response: a record that is not an object, has no
`msisdn`, or holds a string where a number belongs (or the reverse) is skipped and counted; the
rest of the response still counts. Fields the exporter does not use are not read at all. Around
the list, a field of the wrong type reads as absent (see `Envelope`). Anything wrong with the
response as a whole raises `ResponseError("invalid_response", ...)`, an error envelope its own
reason.

Records are decoded from `msgspec.Raw` slices of the body straight into typed structs, a batch
at a time, and folded into per-group counters and per-number columns with C-level map/zip/Counter
calls rather than Python code per record; the decoded structs of only one batch live at once.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from operator import attrgetter
from typing import cast

import msgspec

from exporter.common.eightbyeight import NUMBER_STATUSES, parse_timestamp
from exporter.common.errors import ResponseError, reason_for_status
from exporter.common.memo import Memo
from exporter.common.redact import redact_and_cut

UNKNOWN = "unknown"


class NumberHealth(msgspec.Struct, gc=False):
    isHealthy: bool | None = None  # noqa: N815 - the API's field names
    status: str | None = None
    lastCheckedTime: str | None = None  # noqa: N815


class VirtualNumber(msgspec.Struct, gc=False):
    """One element of `numbers[]`, as documented; fields not used here are ignored."""

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
    # dateCreated, dateUpdated and uri are not used: left out, any type of theirs is fine.


_ABSENT = msgspec.Raw()


class NumbersResponse(msgspec.Struct, gc=False):
    """The list response. `numbers` stays raw so each record is decoded on its own; so do the
    other fields, so that one of them of the wrong type costs only itself (see `Envelope`)."""

    numbers: list[msgspec.Raw] | None = None
    totalNumbers: msgspec.Raw = _ABSENT  # noqa: N815
    lastUpdatedAt: msgspec.Raw = _ABSENT  # noqa: N815
    statusCode: msgspec.Raw = _ABSENT  # noqa: N815
    statusMessage: msgspec.Raw = _ABSENT  # noqa: N815
    code: msgspec.Raw = _ABSENT
    message: msgspec.Raw = _ABSENT


_RESPONSE = msgspec.json.Decoder(NumbersResponse)


class DecodedResponse(msgspec.Struct, gc=False):
    """The list response with every record decoded in the same call: what a body whose records
    are all good decodes to, in one C-level pass instead of one decode per record."""

    numbers: list[VirtualNumber] | None = None
    totalNumbers: msgspec.Raw = _ABSENT  # noqa: N815
    lastUpdatedAt: msgspec.Raw = _ABSENT  # noqa: N815
    statusCode: msgspec.Raw = _ABSENT  # noqa: N815
    statusMessage: msgspec.Raw = _ABSENT  # noqa: N815
    code: msgspec.Raw = _ABSENT
    message: msgspec.Raw = _ABSENT


_DECODED = msgspec.json.Decoder(DecodedResponse)
# Bodies up to this size are first decoded whole. That skips the scan that cuts the body into
# raw records, a sixth of the parse at 10,000 numbers (51 against 59 ms at best), but holds every
# decoded record at once: about as many bytes again as the body. Above it the extra peak would
# outweigh the saving (at 100,000 numbers, 49 MB more for a 51 MB body).
DECODE_WHOLE_UP_TO = 8 << 20
# What decoding one bad record can raise; invalid UTF-8 in a string surfaces as the
# UnicodeDecodeError, nesting deeper than the interpreter's recursion limit as the RecursionError.
_BAD_RECORD = (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError, RecursionError)
_RECORD = msgspec.json.Decoder(VirtualNumber)


@dataclass(frozen=True, slots=True)
class Envelope:
    """The response's fields around the list; a field of the wrong type reads as absent."""

    total_numbers: float | None
    last_updated: float | None
    status_code: int | str | None
    code: int | str | None
    message: str

    @classmethod
    def read(cls, response: NumbersResponse | DecodedResponse) -> Envelope:
        total = _json_value(response.totalNumbers)
        updated = _json_value(response.lastUpdatedAt)
        messages = (_json_value(response.statusMessage), _json_value(response.message))
        return cls(
            total_numbers=_finite(cast(float, total)) if type(total) in (int, float) else None,
            last_updated=parse_timestamp(updated) if isinstance(updated, str) else None,
            status_code=_code(_json_value(response.statusCode)),
            code=_code(_json_value(response.code)),
            message=next((" ".join(m.split()) for m in messages if isinstance(m, str) and m), ""),
        )


def _json_value(raw: msgspec.Raw) -> object:
    """The decoded field; None when absent or unreadable (such as a number beyond a float).

    Invalid UTF-8 is not JSON at all, whatever the field: the whole response is refused.
    """
    if not raw:
        return None
    text = bytes(raw)
    try:
        text.decode()
    except UnicodeDecodeError:
        raise ResponseError("invalid_response", "a string is not valid UTF-8") from None
    try:
        return msgspec.json.decode(text)
    except (msgspec.DecodeError, RecursionError):
        return None


def _code(value: object) -> int | str | None:
    return value if type(value) in (int, str) and value != "" else None  # type: ignore[return-value]


@dataclass(slots=True)
class NumberColumns:
    """The per-number data, one list per attribute, all of the same length.

    A per-number label's values are the field named like the label (see exporter.metrics.catalogue).

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

    statuses: dict[str, int] = field(default_factory=lambda: dict.fromkeys(NUMBER_STATUSES, 0))
    health_statuses: dict[str, int] = field(default_factory=dict)
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


def parse_inventory(
    body: bytes | bytearray, per_number: bool = True, secrets: Collection[str] = ()
) -> Inventory:
    """Decode a list body; raise ResponseError('invalid_response' or an envelope's reason).

    `secrets` are the API keys the body must not carry into a label value or an error: a
    record that would is skipped and counted invalid. They are not kept in the result.
    """
    whole = _decode_whole(body) if len(body) <= DECODE_WHOLE_UP_TO else None
    response = whole or _decode_response(body)
    envelope = Envelope.read(response)
    _raise_if_error_envelope(envelope, secrets)
    raws = response.numbers
    if raws is None:
        _raise_unless_empty_account(envelope)
        raws = []
    return _fold_records(envelope, raws, per_number, secrets)


def _decode_whole(body: bytes | bytearray) -> DecodedResponse | None:
    """The body with its records decoded, if every one of them is good; else None, and the
    body is decoded a record at a time (which skips and counts the bad ones)."""
    try:
        return _DECODED.decode(body)
    except (*_BAD_RECORD, ValueError):
        return None


def _decode_response(body: bytes | bytearray) -> NumbersResponse:
    try:
        return _RESPONSE.decode(body)
    except RecursionError:
        return _decode_around_bad_records(body, "JSON nested too deep")
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
        if _SURROGATE_ESCAPE.search(body):
            return _decode_around_bad_records(body, f"invalid JSON: {exc}")
        raise ResponseError("invalid_response", f"invalid JSON: {exc}") from None


# msgspec refuses a whole body for what should cost one record: nesting deeper than the
# recursion limit, or a \u escape of half a surrogate pair. Such a body is split into its
# records by a scan of its strings and brackets, and each record is decoded on its own.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_TOKENS = re.compile(rb'"(?:[^"\\]++|\\.)*+"|[\[\]{},]', re.DOTALL)
_OPEN, _CLOSE, _QUOTE, _COMMA = b"[{", b"]}", ord('"'), ord(",")


def _decode_around_bad_records(body: bytes | bytearray, problem: str) -> NumbersResponse:
    split = _split_numbers(body)
    if split is None:
        raise ResponseError("invalid_response", problem)
    start, end, records = split
    try:
        response = _RESPONSE.decode(bytes(body[:start]) + b"[]" + bytes(body[end:]))
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        raise ResponseError("invalid_response", problem) from None
    response.numbers = records
    return response


def _split_numbers(body: bytes | bytearray) -> tuple[int, int, list[msgspec.Raw]] | None:
    """Where the top-level `numbers` list starts and ends, and its elements, raw; None if the
    body has no such list or ends inside it."""
    view = memoryview(body)
    depth = 0
    key_end = -1  # just after a "numbers" key of the top-level object
    start = -1  # the numbers list's opening bracket, once found
    element = -1  # where the current element of the list begins
    records: list[msgspec.Raw] = []
    for token in _TOKENS.finditer(body):
        at, after = token.span()
        first = body[at]
        if first == _QUOTE:
            if depth == 1 and after - at == 9 and body[at:after] == b'"numbers"':
                key_end = after
            continue
        if first in _OPEN:
            depth += 1
            if (
                depth == 2
                and start < 0
                and first == _OPEN[0]
                and key_end >= 0
                and bytes(body[key_end:at]).strip() == b":"
            ):
                start, element = at, after
            key_end = -1
        elif first in _CLOSE:
            if depth == 2 and element >= 0:
                if bytes(body[element:at]).strip():
                    records.append(msgspec.Raw(view[element:at]))
                return start, after, records
            depth -= 1
        elif first == _COMMA and depth == 2 and element >= 0:
            records.append(msgspec.Raw(view[element:at]))
            element = after
    return None


# Error codes of the 8x8 platform's own envelope ({"code": 1200, "message": ...}).
# 1001 is the validation error of the webhooks API's 422 (a string "1001" with an errorId).
PLATFORM_ERRORS = {
    1001: "bad_request",
    1200: "unauthorized",
    1201: "forbidden",
    1300: "not_found",
    2000: "server_error",
}
# Success as other Voice endpoints say it: 0/"ok" (webhooks), 1/"Created" (call flows), 200.
_SUCCESS_WORDS = frozenset({"ok", "success", "created"})


def _codes(envelope: Envelope) -> list[int | str]:
    return [code for code in (envelope.status_code, envelope.code) if code is not None]


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


def error_reason(code: int | str | None) -> str | None:
    """The failure reason an envelope's statusCode or code stands for; None for success/none."""
    if code is None or _is_success(code):
        return None
    number = _code_number(code)
    if number in PLATFORM_ERRORS:
        return PLATFORM_ERRORS[number]
    if number is not None and 400 <= number <= 599:
        return reason_for_status(number)
    return "invalid_response"


def _raise_if_error_envelope(envelope: Envelope, secrets: Collection[str]) -> None:
    """A 200 whose statusCode or code is not a success is that error, whatever else it holds."""
    for code in _codes(envelope):
        reason = error_reason(code)
        if reason is None:
            continue
        message = redact_and_cut(envelope.message, secrets, 200)
        raise ResponseError(reason, f"error envelope {code}: {message}")


def _raise_unless_empty_account(envelope: Envelope) -> None:
    """No list is fine from an account with no numbers, if the body says it is a success."""
    if envelope.total_numbers is None and not _codes(envelope):
        raise ResponseError("invalid_response", "no 'numbers' list in the response")


def _fold_records(
    envelope: Envelope,
    raws: list[msgspec.Raw] | list[VirtualNumber],
    per_number: bool,
    secrets: Collection[str],
) -> Inventory:
    """Fold the records, raw (decoded here a batch at a time) or decoded already."""
    fold = _Fold(per_number, secrets)
    for start in range(0, len(raws), _RECORDS_PER_BATCH):
        fold.add(raws[start : start + _RECORDS_PER_BATCH])
    return Inventory(
        total_numbers=envelope.total_numbers,
        last_updated=envelope.last_updated,
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


# What a label value must not carry: control characters but the newline (which the text format
# escapes), line and paragraph separators, and lone surrogates. The format has no escape for them;
# Prometheus accepts them, but they reach terminals through curl, split lines for tools that also
# end lines there, and show as nothing on a dashboard. Each becomes U+FFFD.
_UNPRINTABLE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
REPLACEMENT_CHARACTER = "\ufffd"


def printable(value: str) -> str:
    """The value with every character a label value must not carry replaced by U+FFFD."""
    return value if value.isprintable() else _UNPRINTABLE.sub(REPLACEMENT_CHARACTER, value)


# Keys shorter than this (test keys such as "k") would match ordinary label values; a real 8x8
# API key is far longer.
MIN_KEY_LENGTH = 8


class _KeyInLabelError(Exception):
    """A label value of the batch holds an API key: its records are checked one by one."""


def _checked_label(secrets: tuple[str, ...], value: str) -> str:
    """A label value, printable; _KeyInLabelError if it holds a key (so it is never memoised)."""
    for secret in secrets:
        if secret in value:
            raise _KeyInLabelError
    return printable(value)


class _Fold:
    """Folds batches of raw records into group counters and per-number columns.

    A record that would put an API key into a label value is skipped and counted as invalid.
    Each distinct label value is checked once, as the label memos first meet it: a batch without
    the key costs nothing more, a batch with it is folded again without the records that hold it.
    """

    def __init__(self, per_number: bool, secrets: Collection[str] = ()) -> None:
        self.per_number = per_number
        self.secrets = tuple(secret for secret in secrets if len(secret) >= MIN_KEY_LENGTH)
        self.columns = NumberColumns()
        self.seen: set[str] = set()
        self.invalid = 0
        # (country, number_type, status, healthy, check_enabled, health_status) -> numbers; a
        # few hundred keys.
        self.combos: Counter[tuple[str, str, str, bool | None, bool | None, str]] = Counter()
        self.rental: dict[tuple[str, str, str], float] = {}
        self.oldest: dict[tuple[str, str], float] = {}
        # Not a bound method of the fold: a memo holding one would make a reference cycle that
        # keeps every column of the response alive until the cyclic GC happens to run.
        label = partial(_checked_label, self.secrets)
        # The first copy of each label value, shared by the rest; and the lower-cased ones.
        # Missing values (None) are among the memos' preset entries, so label never sees one.
        self.shared: Memo[str | None, str] = Memo(label, _UNKNOWNS)
        self.lowered: Memo[str | None, str] = Memo(
            lambda value: label(value).lower(),  # type: ignore[arg-type]
            _UNKNOWNS,
        )

    def add(self, raws: list[msgspec.Raw] | list[VirtualNumber]) -> None:
        records = raws if raws and type(raws[0]) is VirtualNumber else self._decode(raws)  # type: ignore[arg-type]
        try:
            self._fold(records)
        except _KeyInLabelError:
            self._fold(self._without_key(records))

    def _fold(self, records: list[VirtualNumber]) -> None:
        """Fold the records; everything that may raise _KeyInLabelError comes before any change."""
        msisdns = list(map(_MSISDN, records))
        joined = "".join(msisdns)  # one look at the whole batch for what is rare
        if not joined.isprintable():
            msisdns = list(map(printable, msisdns))
        records, msisdns, fresh, repeated = self._usable(records, msisdns)
        per_number = self.per_number
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
        health_status = list(map(lowered, map(_HEALTH_STATUS, health)))
        if per_number:
            self._check_msisdns(joined, msisdns)
            reference = self._distinct_labels(list(map(_REFERENCE, records)))

        self.seen |= fresh
        self.invalid += repeated
        if not records:
            return
        healthy = list(map(_IS_HEALTHY, health))
        checked = _timestamps(list(map(_CHECKED, health)))
        prices = list(map(_RENTAL, records))
        self.combos.update(
            zip(country, number_type, status, healthy, enabled, health_status, strict=True)
        )
        self._add_rental(zip(country, number_type, currency, strict=True), prices)
        self._add_oldest(zip(country, number_type, strict=True), checked)
        if per_number:
            columns = self.columns
            columns.msisdn += msisdns
            columns.country += country
            columns.number_type += number_type
            columns.operational_status += status
            columns.health_status += health_status
            columns.reference_id += reference
            columns.currency += currency
            columns.healthy += healthy
            columns.check_enabled += enabled
            columns.last_checked += checked
            columns.rental_price += prices
            columns.incoming_rate += map(_INCOMING, records)
            columns.billing_unit += map(_BILLING, records)

    def _distinct_labels(self, values: list[str | None]) -> list[str]:
        """A column of label values that are mostly distinct (reference IDs), as the memo would
        give them, but checked a batch at a time: a memo would meet nearly every value once.
        _KeyInLabelError if one holds a key."""
        if None in values or "" in values:
            values = [value or UNKNOWN for value in values]
        joined = "".join(values)  # type: ignore[arg-type]
        for secret in self.secrets:  # a hit in `joined` may span two values: it is checked
            if secret in joined and any(secret in value for value in values):  # type: ignore[operator]
                raise _KeyInLabelError
        if not joined.isprintable():
            return list(map(printable, values))  # type: ignore[arg-type]
        return values  # type: ignore[return-value]

    def _check_msisdns(self, joined: str, msisdns: list[str]) -> None:
        """_KeyInLabelError if an msisdn holds a key; `joined` is the batch's msisdns as one."""
        for secret in self.secrets:  # a hit in `joined` may span two msisdns: it is checked
            if secret in joined and any(secret in msisdn for msisdn in msisdns):
                raise _KeyInLabelError

    def _without_key(self, records: list[VirtualNumber]) -> list[VirtualNumber]:
        """The records that put no key into a label value; the others are counted invalid."""
        kept = [record for record in records if not self._holds_key(record)]
        self.invalid += len(records) - len(kept)
        return kept

    def _holds_key(self, record: VirtualNumber) -> bool:
        """Whether any field of the record that becomes a label value holds a key."""
        texts = [
            record.countryCode,
            record.numberType,
            record.operationalStatus,
            record.billingCurrency,
        ]
        health = record.numberHealth
        if health is not None and record.numberHealthCheckEnabled is not False:
            texts.append(health.status)
        if self.per_number:
            texts += [record.msisdn, record.referenceId]
        return any(secret in text for text in texts if text for secret in self.secrets)

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

    def _usable(
        self, records: list[VirtualNumber], msisdns: list[str]
    ) -> tuple[list[VirtualNumber], list[str], set[str], int]:
        """The records whose msisdn (as given, printable) is neither empty nor seen before (the
        first one counts), their msisdns, those as a set, and how many records were dropped;
        nothing is changed."""
        batch = set(msisdns)
        if len(batch) == len(msisdns) and "" not in batch and self.seen.isdisjoint(batch):
            return records, msisdns, batch, 0
        seen = self.seen
        fresh: set[str] = set()
        kept, kept_msisdns = [], []
        for record, msisdn in zip(records, msisdns, strict=True):
            if not msisdn or msisdn in seen or msisdn in fresh:
                continue
            fresh.add(msisdn)
            kept.append(record)
            kept_msisdns.append(msisdn)
        return kept, kept_msisdns, fresh, len(records) - len(kept)

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
        for combo, count in self.combos.items():
            country, number_type, status, healthy, enabled, health_status = combo
            group = groups.get((country, number_type))
            if group is None:
                group = groups[(country, number_type)] = GroupStats()
            group.statuses[status] = group.statuses.get(status, 0) + count
            group.health_statuses[health_status] = (
                group.health_statuses.get(health_status, 0) + count
            )
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
_FILLER: dict[str | None, str] = {None: "1970-01-01T00:00:00+00:00"}


def _timestamps(texts: list[str | None]) -> list[float | None]:
    """parse_timestamp of each text; a batch of aware RFC 3339 times takes a C-level path."""
    # _FILLER.get(text, text): the filler for None, any other text unchanged.
    filled = cast("list[str]", list(map(_FILLER.get, texts, texts)) if None in texts else texts)
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
