"""What the receiver remembers between callbacks, and the metrics it is rendered as.

Kept in memory only, lost at restart (counters restart at 0, which `rate()` handles):

- per subaccount, the numbers 8x8 last pushed (status, 8x8's `updatedTimestamp`, country),
  at most `MAX_NUMBERS_PER_SUBACCOUNT` each. A SNAPSHOT replaces the set; UPDATES change it.
  This set is "the numbers actually owned": per-number call series exist only for them, so
  callbacks naming other numbers cannot grow the exposition;
- per owned number, call counts by outcome and quality sums (when --collector.per-number);
- the keys of the last `DEDUPE_WINDOW` accepted events, so a redelivered event counts once;
- counters and histograms of events, sessions, legs and call quality.

A push never changes what the poll shows and the other way round: the numbers list
(`eightbyeight_number_info`, `..._by_status`) and the pushed status
(`eightbyeight_number_pushed_status`, `eightbyeight_pushed_virtual_numbers_by_status`) are
separate families, side by side, each with its own time. Between pushes, the newer status by
8x8's `updatedTimestamp` wins: an older or redelivered VNU never overwrites a newer one.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.exposition import generate_latest

from exporter.common.eightbyeight import NUMBER_STATUSES, parse_timestamp
from exporter.metrics import catalogue as c
from exporter.metrics.catalogue import (
    CALL_OUTCOMES,
    CALL_STATUSES,
    DIRECTIONS,
    EVENT_TYPES,
    MAX_ERROR_CODES,
    OTHER,
    REQUEST_OUTCOMES,
    SESSION_STATUSES,
    UPDATE_EVENT_TYPES,
)
from exporter.metrics.instruments import (
    counter,
    counter_family,
    gauge_family,
    histogram,
    summary_family,
)
from exporter.pushing.events import CallLeg, NumberUpdate, SessionSummary

_FAILED = {"failed", "error"}
_ANSWERED = {"completed"}

MAX_NUMBERS_PER_SUBACCOUNT = 100_000
MAX_SUBACCOUNTS = 64  # when no allow-list is configured
DEDUPE_WINDOW = 10_000

_COUNTRY = re.compile(r"^[A-Z]{2}$")
_ERROR_CODE = re.compile(r"^-?[0-9]{1,6}$")


def _known(value: str | None, known: Iterable[str]) -> str:
    lowered = (value or "").lower()
    return lowered if lowered in known else OTHER


def _country(value: str | None) -> str:
    return value if value and _COUNTRY.match(value) else "unknown"


@dataclass
class _Number:
    status: str
    updated: float | None
    country: str


@dataclass
class _NumberCalls:
    outcomes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CALL_OUTCOMES, 0))
    # name -> [sum, count]
    quality: dict[str, list[float]] = field(
        default_factory=lambda: {"mos": [0.0, 0], "loss": [0.0, 0], "jitter": [0.0, 0]}
    )


@dataclass
class _Subaccount:
    numbers: dict[str, _Number] = field(default_factory=dict)
    calls: dict[str, _NumberCalls] = field(default_factory=dict)
    total_numbers: int | None = None
    last_event: dict[str, float] = field(default_factory=dict)


class WebhookState:
    """Applies decoded events; renders them on its own registry. Safe across threads.

    `allowed` is the allow-list at start: its subaccounts' counters start at zero, and a
    receiver built on this state alone judges by it. Which subaccounts are admitted is the
    caller's to say (`admit`), so a reload can change it without touching what is remembered.
    """

    def __init__(
        self,
        allowed: Iterable[str] | None = None,
        per_number: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.allowed = frozenset(allowed) if allowed is not None else None
        self.per_number = per_number
        self.clock = clock
        self._lock = threading.Lock()
        self._subaccounts: dict[str, _Subaccount] = {}
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        self._error_codes: set[str] = set()
        self.registry = CollectorRegistry(auto_describe=True)
        self._instruments()
        self.registry.register(_StateCollector(self))
        self.start_at_zero(self.allowed or ())

    def _instruments(self) -> None:
        r = self.registry
        self.requests = counter(c.WEBHOOK_REQUESTS, r)
        for outcome in REQUEST_OUTCOMES:
            self.requests.labels(outcome=outcome)
        self.events = counter(c.WEBHOOK_EVENTS, r)
        self.vnu_events = counter(c.VNU_EVENTS, r)
        self.sessions = counter(c.CALL_SESSIONS, r)
        self.legs = counter(c.CALL_LEGS, r)
        self.errors = counter(c.CALL_SESSION_ERRORS, r)
        self.mos = histogram(c.CALL_MOS, r)
        self.packet_loss = histogram(c.CALL_PACKET_LOSS_RATIO, r)
        self.jitter = histogram(c.CALL_JITTER_SECONDS, r)

    def start_at_zero(self, subaccounts: Iterable[str]) -> None:
        """Counters of known subaccounts exist from the start, so increase() sees the first
        event (those of a subaccount a reload allows, from then on)."""
        for sub in sorted(subaccounts):
            for event_type in EVENT_TYPES:
                self.events.labels(event_type=event_type, subaccount=sub)
            for kind in UPDATE_EVENT_TYPES:
                self.vnu_events.labels(subaccount=sub, update_event_type=kind)

    # ---- admission and de-duplication ----

    def admit(self, subaccount: str, allowed: AbstractSet[str] | None) -> bool:
        """Whether events of this subaccount are taken: those of the allow-list, without one
        a bounded first-come set."""
        if allowed is not None:
            return subaccount in allowed
        with self._lock:
            if subaccount in self._subaccounts:
                return True
            if len(self._subaccounts) >= MAX_SUBACCOUNTS:
                return False
            self._subaccounts[subaccount] = _Subaccount()
        self.start_at_zero([subaccount])
        return True

    def first_delivery(self, key: bytes) -> bool:
        """False for a key already seen among the last DEDUPE_WINDOW events."""
        with self._lock:
            if key in self._seen:
                self._seen.move_to_end(key)
                return False
            self._seen[key] = None
            while len(self._seen) > DEDUPE_WINDOW:
                self._seen.popitem(last=False)
            return True

    @staticmethod
    def body_key(body: bytes) -> bytes:
        return hashlib.sha256(body).digest()

    @staticmethod
    def session_key(summary: SessionSummary) -> bytes:
        text = f"vss\0{summary.sub_account_id}\0{summary.session_id}"
        return hashlib.sha256(text.encode()).digest()

    def _sub(self, subaccount: str) -> _Subaccount:
        state = self._subaccounts.get(subaccount)
        if state is None:
            state = self._subaccounts[subaccount] = _Subaccount()
        return state

    # ---- VNU ----

    def apply_number_update(self, update: NumberUpdate) -> None:
        sub = update.sub_account_id
        kind = _known(update.update_event_type, UPDATE_EVENT_TYPES)
        now = self.clock()
        with self._lock:
            state = self._sub(sub)
            state.last_event["vnu"] = now
            if update.total_numbers is not None:
                state.total_numbers = update.total_numbers
            incoming = self._pushed_numbers(update)
            if kind == "snapshot":
                for msisdn in set(state.numbers) - set(incoming):
                    del state.numbers[msisdn]
                    state.calls.pop(msisdn, None)
            for msisdn, number in incoming.items():
                self._upsert(state, msisdn, number)
        self.events.labels(event_type="vnu", subaccount=sub).inc()
        self.vnu_events.labels(subaccount=sub, update_event_type=kind).inc()

    @staticmethod
    def _pushed_numbers(update: NumberUpdate) -> dict[str, _Number]:
        out: dict[str, _Number] = {}
        for pushed in update.virtual_numbers[:MAX_NUMBERS_PER_SUBACCOUNT]:
            msisdn = "+" + pushed.msisdn.lstrip("+")
            out[msisdn] = _Number(
                _known(pushed.operational_status, NUMBER_STATUSES),
                parse_timestamp(pushed.updated_timestamp),
                _country(pushed.country_code),
            )
        return out

    @staticmethod
    def _upsert(state: _Subaccount, msisdn: str, number: _Number) -> None:
        current = state.numbers.get(msisdn)
        if current is None:
            if len(state.numbers) < MAX_NUMBERS_PER_SUBACCOUNT:
                state.numbers[msisdn] = number
            return
        if (
            current.updated is not None
            and number.updated is not None
            and number.updated < current.updated
        ):
            return  # an older status arriving late: the newer one stays
        state.numbers[msisdn] = number

    # ---- VSS ----

    def apply_session_summary(self, summary: SessionSummary) -> None:
        sub = summary.sub_account_id
        legs = list(summary.details.values())
        country = next(
            (_country(leg.virtual_number_country) for leg in legs if leg.virtual_number_country),
            "unknown",
        )
        status = _known(summary.session_status, SESSION_STATUSES)
        self.sessions.labels(country=country, session_status=status, subaccount=sub).inc()
        error = summary.error_details
        if error is not None and error.error_code is not None:
            code = self._error_label(str(error.error_code))
            self.errors.labels(error_code=code, subaccount=sub).inc()
        for leg in legs:
            self._count_leg(sub, country, leg)
        with self._lock:
            self._sub(sub).last_event["vss"] = self.clock()
            if self.per_number:
                for leg in legs:
                    self._attribute(self._sub(sub), leg)
        self.events.labels(event_type="vss", subaccount=sub).inc()

    def _error_label(self, code: str) -> str:
        if not _ERROR_CODE.match(code):
            return OTHER
        with self._lock:
            if code in self._error_codes or len(self._error_codes) < MAX_ERROR_CODES:
                self._error_codes.add(code)
                return code
        return OTHER

    def _count_leg(self, sub: str, session_country: str, leg: CallLeg) -> None:
        direction = _known(leg.call_direction, DIRECTIONS)
        status = _known(leg.call_status, CALL_STATUSES)
        self.legs.labels(call_status=status, direction=direction, subaccount=sub).inc()
        quality = leg.call_quality
        if quality is None:
            return
        country = _country(leg.virtual_number_country) if leg.virtual_number_country else None
        country = country or session_country
        where = {"country": country, "subaccount": sub}
        if quality.mos is not None:
            self.mos.labels(**where).observe(quality.mos)
        if quality.packet_loss_rate is not None:
            self.packet_loss.labels(**where).observe(quality.packet_loss_rate)
        if quality.jitter is not None:
            self.jitter.labels(**where).observe(quality.jitter / 1000.0)

    @staticmethod
    def _attribute(state: _Subaccount, leg: CallLeg) -> None:
        number = leg.virtual_number
        if not number:
            return
        msisdn = "+" + number.lstrip("+")
        if msisdn not in state.numbers:
            return  # not a number this subaccount owns (as far as VNU told): no new series
        calls = state.calls.get(msisdn)
        if calls is None:
            calls = state.calls[msisdn] = _NumberCalls()
        status = (leg.call_status or "").lower()
        outcome = (
            "answered" if status in _ANSWERED else "failed" if status in _FAILED else "unanswered"
        )
        calls.outcomes[outcome] += 1
        quality = leg.call_quality
        if quality is None:
            return
        for name, value in (
            ("mos", quality.mos),
            ("loss", quality.packet_loss_rate),
            ("jitter", None if quality.jitter is None else quality.jitter / 1000.0),
        ):
            if value is not None:
                pair = calls.quality[name]
                pair[0] += value
                pair[1] += 1

    # ---- rendering ----

    def last_callbacks(self) -> dict[str, tuple[str, float]]:
        """Per subaccount, the type and Unix time of the last event accepted (status page)."""
        out: dict[str, tuple[str, float]] = {}
        with self._lock:
            for sub, state in self._subaccounts.items():
                if state.last_event:
                    kind = max(state.last_event, key=state.last_event.__getitem__)
                    out[sub] = (kind, state.last_event[kind])
        return out

    def snapshot(self) -> list[tuple[str, _Subaccount]]:
        """A consistent copy of the per-subaccount state, for rendering outside the lock."""
        with self._lock:
            return [
                (
                    sub,
                    _Subaccount(
                        dict(state.numbers),
                        {
                            m: _NumberCalls(
                                dict(c.outcomes), {k: list(v) for k, v in c.quality.items()}
                            )
                            for m, c in state.calls.items()
                        }
                        if self.per_number
                        else {},
                        state.total_numbers,
                        dict(state.last_event),
                    ),
                )
                for sub, state in sorted(self._subaccounts.items())
            ]

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _StateCollector:
    """The families derived from the remembered state, built at scrape time."""

    def __init__(self, state: WebhookState) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        snapshot = self.state.snapshot()
        last = gauge_family(c.WEBHOOK_LAST_EVENT_TIMESTAMP_SECONDS)
        total = gauge_family(c.PUSHED_VIRTUAL_NUMBERS)
        by_status = gauge_family(c.PUSHED_VIRTUAL_NUMBERS_BY_STATUS)
        for sub, state in snapshot:
            for event_type, when in sorted(state.last_event.items()):
                last.add_metric([event_type, sub], when)
            if state.total_numbers is not None:
                total.add_metric([sub], state.total_numbers)
            counts = dict.fromkeys(NUMBER_STATUSES, 0)
            for number in state.numbers.values():
                counts[number.status] = counts.get(number.status, 0) + 1
            for status, count in counts.items():
                by_status.add_metric([status, sub], count)
        yield from (last, total, by_status)
        if self.state.per_number:
            yield from self._per_number(snapshot)

    @staticmethod
    def _per_number(snapshot: list[tuple[str, _Subaccount]]) -> Iterator[Metric]:
        status = gauge_family(c.NUMBER_PUSHED_STATUS)
        updated = gauge_family(c.NUMBER_PUSHED_STATUS_TIMESTAMP_SECONDS)
        calls = counter_family(c.NUMBER_CALL_LEGS)
        summaries = {
            "mos": summary_family(c.NUMBER_CALL_MOS),
            "loss": summary_family(c.NUMBER_CALL_PACKET_LOSS_RATIO),
            "jitter": summary_family(c.NUMBER_CALL_JITTER_SECONDS),
        }
        for sub, state in snapshot:
            for msisdn, number in sorted(state.numbers.items()):
                statuses = NUMBER_STATUSES if number.status in NUMBER_STATUSES else (number.status,)
                for name in statuses:
                    status.add_metric([msisdn, name, sub], 1.0 if name == number.status else 0.0)
                if number.updated is not None:
                    updated.add_metric([msisdn, sub], number.updated)
            for msisdn, counts in sorted(state.calls.items()):
                for outcome, count in counts.outcomes.items():
                    calls.add_metric([msisdn, outcome, sub], count)
                for name, (total, observed) in counts.quality.items():
                    if observed:
                        summaries[name].add_metric([msisdn, sub], int(observed), total)
        yield from (status, updated, calls, *summaries.values())
