"""The callbacks 8x8 POSTs: their JSON shapes as msgspec structs, and one decode function.

Two event types are read: `VIRTUAL_NUMBER_UPDATE` (VNU, a number's status changed, or the
whole pool as a snapshot) and `SESSION_SUMMARY` (VSS, one finished call session with its legs
and call quality). Only the fields the metrics use are declared; others are ignored, so 8x8
adding a field never breaks the receiver. A field of the wrong type, a missing required field
or an out-of-range value is an `EventError` with a reason the receiver counts by.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from exporter.config.values import SUBACCOUNT_PATTERN

VNU = "VIRTUAL_NUMBER_UPDATE"
VSS = "SESSION_SUMMARY"

_Short = Annotated[str, msgspec.Meta(max_length=128)]
_Subaccount = Annotated[str, msgspec.Meta(pattern=SUBACCOUNT_PATTERN.pattern)]
_Msisdn = Annotated[str, msgspec.Meta(pattern=r"^\+?[0-9]{6,15}$")]
_Mos = Annotated[float, msgspec.Meta(ge=1.0, le=5.0)]
_NonNegative = Annotated[float, msgspec.Meta(ge=0.0, le=1e6)]


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
    """VNU payload: SNAPSHOT carries the whole pool, UPDATES the changed numbers."""

    sub_account_id: _Subaccount
    update_event_type: _Short
    virtual_numbers: list[PushedNumber] = []
    total_numbers: Annotated[int, msgspec.Meta(ge=0, le=10_000_000)] | None = None


class CallQuality(msgspec.Struct, rename="camel"):
    mos: _Mos | None = None
    packet_loss_rate: _NonNegative | None = None
    jitter: _NonNegative | None = None  # milliseconds


class CallLeg(msgspec.Struct, rename="camel"):
    call_direction: _Short
    call_status: _Short
    source: _Short | None = None
    destination: _Short | None = None
    source_country_code: _Short | None = None
    destination_country_code: _Short | None = None
    call_duration: _NonNegative | None = None
    call_quality: CallQuality | None = None

    @property
    def virtual_number(self) -> str | None:
        """The subaccount's own number: INBOUND legs call it, OUTBOUND legs show it as caller."""
        direction = self.call_direction.upper()
        if direction == "INBOUND":
            return self.destination
        if direction == "OUTBOUND":
            return self.source
        return None

    @property
    def virtual_number_country(self) -> str | None:
        direction = self.call_direction.upper()
        if direction == "INBOUND":
            return self.destination_country_code
        if direction == "OUTBOUND":
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
    session_status: _Short
    details: Annotated[dict[_Short, CallLeg], msgspec.Meta(max_length=16)] = {}
    error_details: ErrorDetails | None = None
    start_time: _Short | None = None
    end_time: _Short | None = None
    call_count: Annotated[int, msgspec.Meta(ge=0, le=1000)] | None = None


_envelope = msgspec.json.Decoder(Envelope)
_number_update = msgspec.json.Decoder(NumberUpdate)
_session_summary = msgspec.json.Decoder(SessionSummary)


def decode_envelope(body: bytes) -> Envelope:
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
