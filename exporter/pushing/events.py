"""The callbacks 8x8 POSTs: their JSON shapes as msgspec structs, and one decode function.

Two event types are read: `VIRTUAL_NUMBER_UPDATE` (VNU, a number's status changed, or the
whole pool as a snapshot) and `SESSION_SUMMARY` (VSS, one finished call session with its legs
and call quality). Only the fields the metrics use are declared; others are ignored, so 8x8
adding a field never breaks the receiver. A field of the wrong type, a missing required field
or an out-of-range value is an `EventError` with a reason the receiver counts by.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec

from exporter.config.values import SUBACCOUNT_PATTERN
from exporter.metrics.catalogue import DIRECTIONS, OTHER, SESSION_STATUSES

VNU = "VIRTUAL_NUMBER_UPDATE"
VSS = "SESSION_SUMMARY"

_Short = Annotated[str, msgspec.Meta(max_length=128)]
_Subaccount = Annotated[str, msgspec.Meta(pattern=SUBACCOUNT_PATTERN.pattern)]
_Msisdn = Annotated[str, msgspec.Meta(pattern=r"^\+?[0-9]{6,15}$")]

# Other pages of 8x8's docs spell two statuses differently; both name the same outcome.
_MAX_WORD = 128  # a status longer than this is not a status
_SPELLINGS = {"cancelled": "canceled", "noanswer": "no_answer"}
# The ranges 8x8 documents: MOS 1.0 to 5.0, packet loss a ratio, jitter whole milliseconds.
MOS_RANGE = (1.0, 5.0)
LOSS_RANGE = (0.0, 1.0)
JITTER_RANGE_MS = (0.0, 60_000.0)
DURATION_RANGE = (0.0, 7 * 86_400.0)


class EventError(ValueError):
    """A callback that cannot be used; `reason` is a metric label value."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class Envelope(msgspec.Struct):
    """What every callback has: the type to dispatch on; the payload is decoded per type."""

    eventType: _Short  # noqa: N815 - the API's field name
    payload: msgspec.Raw = msgspec.Raw(b"null")
    namespace: _Short | None = None


class PushedNumber(msgspec.Struct, rename="camel"):
    msisdn: _Msisdn
    operational_status: _Short
    updated_timestamp: _Short | None = None
    country_code: _Short | None = None
    reference_id: _Short | None = None
    update_status: _Short | None = None


class NumberUpdate(msgspec.Struct, rename="camel"):
    """VNU payload: SNAPSHOT carries the whole pool, UPDATES the changed numbers.

    The records stay raw (views into the body) and are decoded one at a time by
    `pushed_numbers`: a 100,000-number SNAPSHOT never exists as 100,000 structs at once.
    """

    sub_account_id: _Subaccount
    update_event_type: _Short
    virtual_numbers: list[msgspec.Raw] = []
    total_numbers: Annotated[int, msgspec.Meta(ge=0, le=10_000_000)] | None = None


class CallLeg(msgspec.Struct, rename="camel"):
    call_direction: Any = None
    call_status: Any = None
    source: _Short | None = None
    destination: _Short | None = None
    source_country_code: _Short | None = None
    destination_country_code: _Short | None = None
    call_duration: Any = None
    # Any JSON value, here and in the two fields above: one odd value is dropped and counted
    # (`read_session`), never the whole session. The body cap bounds how large it can be.
    call_quality: Any = None  # {mos, packetLossRate, jitter (milliseconds)}

    @property
    def direction(self) -> str | None:
        """'inbound', 'outbound', or None when missing or not one of 8x8's two."""
        return _closed(self.call_direction, DIRECTIONS)

    @property
    def virtual_number(self) -> str | None:
        """The subaccount's own number: INBOUND legs call it, OUTBOUND legs show it as caller."""
        direction = self.direction
        if direction == "inbound":
            return self.destination
        if direction == "outbound":
            return self.source
        return None

    @property
    def virtual_number_country(self) -> str | None:
        direction = self.direction
        if direction == "inbound":
            return self.destination_country_code
        if direction == "outbound":
            return self.source_country_code
        return None


class ErrorDetails(msgspec.Struct, rename="camel"):
    # Documented as a string, shown as a negative integer in the examples: both are accepted.
    error_code: int | _Short | None = None
    error_msg: Annotated[str, msgspec.Meta(max_length=4096)] | None = None


class SessionSummary(msgspec.Struct, rename="camel"):
    """VSS payload: one finished call session."""

    session_id: _Short
    sub_account_id: _Subaccount
    session_status: Any = None
    details: Annotated[dict[_Short, CallLeg], msgspec.Meta(max_length=16)] = {}
    error_details: ErrorDetails | None = None
    start_time: _Short | None = None
    end_time: _Short | None = None
    call_count: Annotated[int, msgspec.Meta(ge=0, le=1000)] | None = None


_envelope = msgspec.json.Decoder(Envelope)
_number_update = msgspec.json.Decoder(NumberUpdate)
_session_summary = msgspec.json.Decoder(SessionSummary)
_pushed_number = msgspec.json.Decoder(PushedNumber)


def decode_envelope(body: bytes | bytearray) -> Envelope:
    """The envelope of a callback; EventError('malformed_json' or 'invalid_event')."""
    try:
        return _envelope.decode(body)
    except RecursionError:
        # msgspec refuses deep nesting itself, at once, before building anything.
        raise EventError("malformed_json", "JSON nested too deeply") from None
    except msgspec.ValidationError as exc:
        raise EventError("invalid_event", f"invalid event: {exc}") from None
    except msgspec.DecodeError as exc:
        raise EventError("malformed_json", f"not JSON: {exc}") from None


def decode_number_update(envelope: Envelope) -> NumberUpdate:
    return _decode_payload(_number_update, envelope)


def pushed_numbers(update: NumberUpdate, limit: int) -> Iterator[PushedNumber]:
    """The update's first `limit` records, decoded one at a time; EventError for a bad one."""
    for raw in update.virtual_numbers[:limit]:
        try:
            yield _pushed_number.decode(raw)
        except msgspec.ValidationError as exc:
            raise EventError("invalid_event", f"invalid virtualNumbers record: {exc}") from None
        except msgspec.DecodeError as exc:  # cannot happen for Raw taken from valid JSON
            raise EventError("malformed_json", f"not JSON: {exc}") from None


def decode_session_summary(envelope: Envelope) -> SessionSummary:
    return _decode_payload(_session_summary, envelope)


def _decode_payload(decoder: msgspec.json.Decoder, envelope: Envelope) -> Any:
    try:
        return decoder.decode(envelope.payload)
    except RecursionError:
        raise EventError("malformed_json", "JSON nested too deeply") from None
    except msgspec.ValidationError as exc:
        raise EventError("invalid_event", f"invalid {envelope.eventType} payload: {exc}") from None
    except msgspec.DecodeError as exc:  # cannot happen for Raw taken from valid JSON
        raise EventError("malformed_json", f"not JSON: {exc}") from None


def _closed(value: object, known: tuple[str, ...]) -> str | None:
    """The value as one of `known` (any case, space or dash for underscore), else None."""
    if not isinstance(value, str):
        return None
    word = value.strip().lower().replace(" ", "_").replace("-", "_")
    word = _SPELLINGS.get(word, word)
    return word if word in known else None


def status_label(value: object) -> str | None:
    """A session or leg status as a label: one of SESSION_STATUSES, 'other' for another word
    (Voice Messaging adds its own), None when missing or not text (an invalid field)."""
    if not isinstance(value, str) or not value.strip() or len(value) > _MAX_WORD:
        return None
    return _closed(value, SESSION_STATUSES) or OTHER


def in_range(value: object, bounds: tuple[float, float]) -> float | None:
    """A JSON number within the documented bounds, else None (booleans are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    low, high = bounds
    return number if low <= number <= high else None


@dataclass(frozen=True)
class Leg:
    """One call leg as the metrics use it; a value 8x8 sent wrong or not at all is None."""

    direction: str | None
    status: str | None
    virtual_number: str | None
    country: str | None
    mos: float | None
    loss: float | None
    jitter_seconds: float | None


@dataclass(frozen=True)
class Session:
    """A session summary with every unusable value dropped; `invalid` names what was dropped."""

    subaccount: str
    status: str | None
    legs: tuple[Leg, ...]
    error_code: str | None
    invalid: tuple[str, ...]


def read_session(summary: SessionSummary) -> Session:
    """The summary's usable values; each odd field is dropped alone and named in `invalid`."""
    invalid: list[str] = []
    status = status_label(summary.session_status)
    if status is None:
        invalid.append("session_status")
    legs = tuple(_read_leg(leg, invalid) for leg in summary.details.values())
    error = summary.error_details
    code = None if error is None or error.error_code is None else str(error.error_code)
    return Session(summary.sub_account_id, status, legs, code, tuple(invalid))


def _read_leg(leg: CallLeg, invalid: list[str]) -> Leg:
    direction = leg.direction
    if direction is None:
        invalid.append("call_direction")
    status = status_label(leg.call_status)
    if status is None:
        invalid.append("call_status")
    if leg.call_duration is not None and in_range(leg.call_duration, DURATION_RANGE) is None:
        invalid.append("call_duration")
    quality = leg.call_quality
    mos = loss = jitter = None
    if isinstance(quality, dict):
        mos = _optional(quality.get("mos"), MOS_RANGE, "mos", invalid)
        loss = _optional(quality.get("packetLossRate"), LOSS_RANGE, "packet_loss_rate", invalid)
        jitter_ms = _optional(quality.get("jitter"), JITTER_RANGE_MS, "jitter", invalid)
        jitter = None if jitter_ms is None else jitter_ms / 1000.0
    elif quality is not None:
        invalid.append("call_quality")
    return Leg(direction, status, leg.virtual_number, leg.virtual_number_country, mos, loss, jitter)


def _optional(
    value: object, bounds: tuple[float, float], name: str, invalid: list[str]
) -> float | None:
    """Quality is optional (only when the carrier measures it): absent is fine, odd is counted."""
    if value is None:
        return None
    number = in_range(value, bounds)
    if number is None:
        invalid.append(name)
    return number
