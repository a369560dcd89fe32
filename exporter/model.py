"""The response model: one list body of the 8x8 API becomes an `Inventory`.

Parsing is strict per record and tolerant per response: a record that is not an object, has no
`msisdn`, or holds a string where a number belongs (or the reverse) is skipped and counted; the
rest of the response still counts. Anything wrong with the response as a whole raises
`FetchError("invalid_response", ...)`.

Records are decoded one at a time from `msgspec.Raw` slices of the body, straight into typed
structs, and folded into per-group counters and compact per-number rows as they go, so the
decoded records never all live at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import NamedTuple

import msgspec

from exporter.errors import FetchError, reason_for_status

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
_RECORD = msgspec.json.Decoder(VirtualNumber)


class NumberRow(NamedTuple):
    """What the per-number series need of one number, with label values normalised."""

    msisdn: str
    country: str
    number_type: str
    operational_status: str
    health_status: str
    reference_id: str
    currency: str
    healthy: bool | None
    check_enabled: bool | None
    last_checked: float | None
    rental_price: float | None
    incoming_rate: float | None
    billing_unit: float | None


@dataclass(slots=True)
class GroupStats:
    """Counters for one (country, number_type) pair."""

    statuses: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KNOWN_STATUSES, 0))
    healthy: int = 0
    unhealthy: int = 0
    health_unknown: int = 0
    check_disabled: int = 0
    oldest_check: float | None = None
    rental_cost: dict[str, float] = field(default_factory=dict)


@dataclass(slots=True)
class Inventory:
    """Everything one good response says, ready to be rendered."""

    total_numbers: float | None
    last_updated: float | None
    listed: int
    invalid_records: int
    groups: dict[tuple[str, str], GroupStats]
    numbers: list[NumberRow]


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
    """Decode a list body; raise FetchError('invalid_response' or an envelope's reason)."""
    response = _decode_response(body)
    raws = response.numbers
    if raws is None:
        _raise_if_error_envelope(response)
        raws = []
    return _fold_records(response, raws, per_number)


def _decode_response(body: bytes | bytearray) -> NumbersResponse:
    try:
        return _RESPONSE.decode(body)
    except msgspec.ValidationError as exc:
        raise FetchError("invalid_response", f"unexpected JSON: {exc}", 200) from None
    except msgspec.DecodeError as exc:
        if not body.strip():
            raise FetchError("invalid_response", "empty body", 200) from None
        head = bytes(body[:64]).lstrip()
        if head.startswith(b"<"):
            raise FetchError("invalid_response", "HTML instead of JSON", 200) from None
        raise FetchError("invalid_response", f"invalid JSON: {exc}", 200) from None


def _raise_if_error_envelope(response: NumbersResponse) -> None:
    """A 200 that carries an error envelope instead of a list is that error."""
    code = response.statusCode if response.statusCode is not None else response.code
    message = response.statusMessage or response.message or ""
    try:
        status = int(code) if code is not None else 0
    except ValueError:
        status = 0
    if status in (0, 200) and (response.totalNumbers is not None or code is not None):
        return  # an account with no numbers may omit the list
    if 400 <= status <= 599:
        raise FetchError(reason_for_status(status), f"error envelope {status}: {message}", 200)
    if code is not None and status not in (0, 200):
        raise FetchError("invalid_response", f"error envelope {code}: {message}", 200)
    raise FetchError("invalid_response", "no 'numbers' list in the response", 200)


def _fold_records(
    response: NumbersResponse, raws: list[msgspec.Raw], per_number: bool
) -> Inventory:
    groups: dict[tuple[str, str], GroupStats] = {}
    rows: list[NumberRow] = []
    seen: set[str] = set()
    invalid = 0
    # Label values repeat across records; one shared string per distinct value saves memory.
    shared: dict[str | None, str] = {None: UNKNOWN, "": UNKNOWN}
    lowered: dict[str | None, str] = {None: UNKNOWN, "": UNKNOWN}
    decode = _RECORD.decode
    for raw in raws:
        try:
            record = decode(raw)
        except (msgspec.ValidationError, msgspec.DecodeError):
            invalid += 1
            continue
        msisdn = record.msisdn
        if not msisdn or msisdn in seen:
            invalid += 1
            continue
        seen.add(msisdn)

        country = shared.get(record.countryCode) or shared.setdefault(
            record.countryCode, record.countryCode
        )
        number_type = shared.get(record.numberType) or shared.setdefault(
            record.numberType, record.numberType
        )
        status = lowered.get(record.operationalStatus) or lowered.setdefault(
            record.operationalStatus, record.operationalStatus.lower()
        )
        currency = shared.get(record.billingCurrency) or shared.setdefault(
            record.billingCurrency, record.billingCurrency
        )

        enabled = record.numberHealthCheckEnabled
        health = record.numberHealth
        if health is None or enabled is False:
            healthy = None
            health_status = UNKNOWN
            checked = None
        else:
            healthy = health.isHealthy
            health_status = lowered.get(health.status) or lowered.setdefault(
                health.status, health.status.lower()
            )
            checked = parse_timestamp(health.lastCheckedTime)

        group = groups.get((country, number_type))
        if group is None:
            group = groups[(country, number_type)] = GroupStats()
        statuses = group.statuses
        statuses[status] = statuses.get(status, 0) + 1
        if healthy is None:
            group.health_unknown += 1
        elif healthy:
            group.healthy += 1
        else:
            group.unhealthy += 1
        if enabled is False:
            group.check_disabled += 1
        if checked is not None and (group.oldest_check is None or checked < group.oldest_check):
            group.oldest_check = checked
        price = record.rentalPrice
        if price is not None:
            group.rental_cost[currency] = group.rental_cost.get(currency, 0.0) + price

        if per_number:
            reference = shared.get(record.referenceId) or shared.setdefault(
                record.referenceId, record.referenceId
            )
            rows.append(
                NumberRow(
                    msisdn,
                    country,
                    number_type,
                    status,
                    health_status,
                    reference,
                    currency,
                    healthy,
                    enabled,
                    checked,
                    price,
                    record.incomingRate,
                    record.billingUnit,
                )
            )

    return Inventory(
        total_numbers=_finite(response.totalNumbers),
        last_updated=parse_timestamp(response.lastUpdatedAt),
        listed=len(seen),
        invalid_records=invalid,
        groups=groups,
        numbers=rows,
    )


def _finite(value: float | None) -> float | None:
    """A reported count as a float; None when absent or beyond what a float holds."""
    if value is None:
        return None
    try:
        return float(value)
    except OverflowError:
        return None
