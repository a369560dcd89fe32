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
separate families, side by side, each with its own time.

Ordering: per-number update times decide. The newer status by 8x8's `updatedTimestamp` wins:
an older or redelivered VNU never overwrites a newer one. A SNAPSHOT is taken as of its latest
`updatedTimestamp`; a number it lacks is removed unless that number's own update is newer
(an older snapshot delivered late never erases a newer update). An `updatedTimestamp` more
than `MAX_CLOCK_SKEW` after the receiver's clock is refused and counted
(`eightbyeight_webhook_invalid_fields_total{field="updated_timestamp"}`).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.exposition import generate_latest

from exporter.common.countries import UNKNOWN, country_label
from exporter.common.eightbyeight import NUMBER_STATUSES, parse_timestamp
from exporter.metrics import catalogue as c
from exporter.metrics.catalogue import (
    CALL_OUTCOMES,
    CAPS,
    ERROR_CODES,
    EVENT_TYPES,
    INVALID_FIELDS,
    OTHER,
    REQUEST_OUTCOMES,
    UPDATE_EVENT_TYPES,
)
from exporter.metrics.instruments import (
    counter,
    counter_family,
    gauge_family,
    histogram,
    summary_family,
)
from exporter.pushing.events import (
    Leg,
    NumberUpdate,
    Session,
    SessionSummary,
    pushed_numbers,
    read_session,
)

_FAILED = {"failed", "error"}
_ANSWERED = {"completed"}

MAX_NUMBERS_PER_SUBACCOUNT = 100_000
MAX_SUBACCOUNTS = 64  # when no allow-list is configured
# Per-number series (--collector.per-number) for at most this many pushed numbers per
# subaccount, first come first served; a SNAPSHOT that drops a number frees its place.
MAX_NUMBER_SERIES = c.PER_NUMBER_SERIES_CAP
# An updatedTimestamp later than the receiver's clock plus this is refused: 8x8's and this
# host's clocks may differ a little, but a far-future time would pin a status for good.
MAX_CLOCK_SKEW = 300.0
DEDUPE_WINDOW = 10_000


def _known(value: str | None, known: Iterable[str]) -> str:
    lowered = (value or "").lower()
    return lowered if lowered in known else OTHER


def carrying_status(legs: Iterable[Leg], session_status: str | None) -> str | None:
    """The status that tells how a session went for a number: the first leg that did not
    complete carries it; all completed is completed; no leg status at all is the session's."""
    statuses = [leg.status for leg in legs if leg.status is not None]
    for status in statuses:
        if status != "completed":
            return status
    return statuses[0] if statuses else session_status


def _outcome(status: str) -> str:
    if status in _ANSWERED:
        return "answered"
    return "failed" if status in _FAILED else "unanswered"


def _snapshot_time(incoming: dict[str, _Number], now: float) -> float:
    """When a SNAPSHOT was taken: its latest update time (8x8 sends no time of its own), or
    the time it arrived when no record has one."""
    times = [number.updated for number in incoming.values() if number.updated is not None]
    return max(times) if times else now


def _country(value: str | None) -> str:
    return country_label(value)


@dataclass(slots=True)  # 100,000 of them per subaccount: no per-instance __dict__
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
    series: set[str] = field(default_factory=set)  # numbers with per-number series
    total_numbers: int | None = None
    last_event: dict[str, float] = field(default_factory=dict)
    # A SNAPSHOT in parts: the numbers its parts listed so far, and the latest time they carry.
    parts: set[str] = field(default_factory=set)
    parts_taken: float = 0.0


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
        self.over_cap = counter(c.WEBHOOK_NUMBERS_OVER_CAP, r)
        self.invalid_fields = counter(c.WEBHOOK_INVALID_FIELDS, r)
        for name in INVALID_FIELDS:
            self.invalid_fields.labels(field=name)

    def start_at_zero(self, subaccounts: Iterable[str]) -> None:
        """Counters of known subaccounts exist from the start, so increase() sees the first
        event (those of a subaccount a reload allows, from then on)."""
        for sub in sorted(subaccounts):
            for event_type in EVENT_TYPES:
                self.events.labels(event_type=event_type, subaccount=sub)
            for kind in UPDATE_EVENT_TYPES:
                self.vnu_events.labels(subaccount=sub, update_event_type=kind)
            for cap in CAPS:
                self.over_cap.labels(cap=cap, subaccount=sub)

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

    def forget(self, key: bytes) -> None:
        """Take back a `first_delivery` whose event was refused after all."""
        with self._lock:
            self._seen.pop(key, None)

    @staticmethod
    def body_key(body: bytes | bytearray) -> bytes:
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
        """Apply a VNU: per-number update times decide (see the module's docstring)."""
        sub = update.sub_account_id
        kind = _known(update.update_event_type, UPDATE_EVENT_TYPES)
        now = self.clock()
        incoming, refused = self._pushed_numbers(update, now)
        # Records past the cap are never read: not kept, so counted like any number over it.
        unread = max(0, len(update.virtual_numbers) - MAX_NUMBERS_PER_SUBACCOUNT)
        over = {"numbers": unread, "series": 0}
        with self._lock:
            state = self._sub(sub)
            state.last_event["vnu"] = now
            if update.total_numbers is not None:
                state.total_numbers = update.total_numbers
            if kind == "snapshot":
                self._take_snapshot(state, update, incoming, now)
            for msisdn, number in incoming.items():
                cap = self._upsert(state, msisdn, number)
                if cap:
                    over[cap] += 1
        for cap, count in over.items():
            if count:
                self.over_cap.labels(cap=cap, subaccount=sub).inc(count)
        if refused:
            self.invalid_fields.labels(field="updated_timestamp").inc(refused)
        self.events.labels(event_type="vnu", subaccount=sub).inc()
        self.vnu_events.labels(subaccount=sub, update_event_type=kind).inc()

    def _take_snapshot(
        self, state: _Subaccount, update: NumberUpdate, incoming: dict[str, _Number], now: float
    ) -> None:
        """A whole SNAPSHOT drops the numbers it lacks at once. One that lists fewer numbers
        than its `totalNumbers` is a part: its numbers are applied, and the numbers no part
        listed are dropped only once the parts together reach `totalNumbers`. Parts that never
        complete drop nothing (a stale number stays until the next whole snapshot)."""
        taken = _snapshot_time(incoming, now)
        total = update.total_numbers
        if total is None or len(update.virtual_numbers) >= total:
            state.parts, state.parts_taken = set(), 0.0
            self._drop_missing(state, incoming, taken)
            return
        if len(state.parts) < MAX_NUMBERS_PER_SUBACCOUNT:
            state.parts.update(incoming)
        state.parts_taken = max(state.parts_taken, taken)
        if len(state.parts) >= min(total, MAX_NUMBERS_PER_SUBACCOUNT):
            listed, state.parts = state.parts, set()
            self._drop_missing(state, listed, state.parts_taken)
            state.parts_taken = 0.0

    @staticmethod
    def _drop_missing(state: _Subaccount, incoming: Collection[str], taken: float) -> None:
        """A SNAPSHOT lists the whole pool as of `taken`: a number it lacks is gone, unless an
        update newer than the snapshot says otherwise (a snapshot delivered late)."""
        for msisdn in set(state.numbers) - set(incoming):
            updated = state.numbers[msisdn].updated
            if updated is not None and updated > taken:
                continue
            del state.numbers[msisdn]
            state.calls.pop(msisdn, None)
            state.series.discard(msisdn)

    @staticmethod
    def _pushed_numbers(update: NumberUpdate, now: float) -> tuple[dict[str, _Number], int]:
        """The update's numbers, and how many were refused for an update time in the future."""
        out: dict[str, _Number] = {}
        refused = 0
        latest = now + MAX_CLOCK_SKEW
        for pushed in pushed_numbers(update, MAX_NUMBERS_PER_SUBACCOUNT):
            updated = parse_timestamp(pushed.updated_timestamp)
            if updated is not None and updated > latest:
                refused += 1  # it would pin the number's status until that time
                continue
            msisdn = "+" + pushed.msisdn.lstrip("+")
            out[msisdn] = _Number(
                _known(pushed.operational_status, NUMBER_STATUSES),
                updated,
                _country(pushed.country_code),
            )
        return out, refused

    def _upsert(self, state: _Subaccount, msisdn: str, number: _Number) -> str | None:
        """Apply one pushed number; the cap that refused part of it ('numbers', 'series')."""
        current = state.numbers.get(msisdn)
        if current is None:
            if len(state.numbers) >= MAX_NUMBERS_PER_SUBACCOUNT:
                return "numbers"
            state.numbers[msisdn] = number
            if not self.per_number:
                return None
            if len(state.series) >= MAX_NUMBER_SERIES:
                return "series"
            state.series.add(msisdn)
            return None
        if (
            current.updated is not None
            and number.updated is not None
            and number.updated < current.updated
        ):
            return None  # an older status arriving late: the newer one stays
        state.numbers[msisdn] = number
        return None

    # ---- VSS ----

    def apply_session_summary(self, summary: SessionSummary) -> None:
        session = read_session(summary)
        sub = session.subaccount
        for name in session.invalid:
            self.invalid_fields.labels(name).inc()
        country = next(
            (_country(leg.country) for leg in session.legs if leg.country),
            "unknown",
        )
        status = session.status or UNKNOWN
        self.sessions.labels(country=country, session_status=status, subaccount=sub).inc()
        if session.error_code is not None:
            code = self._error_label(session.error_code)
            self.errors.labels(error_code=code, subaccount=sub).inc()
        for leg in session.legs:
            self._count_leg(sub, country, leg)
        with self._lock:
            self._sub(sub).last_event["vss"] = self.clock()
            if self.per_number:
                self._attribute(self._sub(sub), session)
        self.events.labels(event_type="vss", subaccount=sub).inc()

    @staticmethod
    def _error_label(code: str) -> str:
        code = code.strip()
        return code if code in ERROR_CODES else OTHER

    def _count_leg(self, sub: str, session_country: str, leg: Leg) -> None:
        direction, status = leg.direction or UNKNOWN, leg.status or UNKNOWN
        self.legs.labels(call_status=status, direction=direction, subaccount=sub).inc()
        country = _country(leg.country) if leg.country else session_country
        where = {"country": country, "subaccount": sub}
        if leg.mos is not None:
            self.mos.labels(**where).observe(leg.mos)
        if leg.loss is not None:
            self.packet_loss.labels(**where).observe(leg.loss)
        if leg.jitter_seconds is not None:
            self.jitter.labels(**where).observe(leg.jitter_seconds)

    @staticmethod
    def _attribute(state: _Subaccount, session: Session) -> None:
        """Per owned number: one outcome per session, from the leg that carries it, and the
        quality of every leg. In number masking leg A completes (the caller reached 8x8) and
        leg B carries BUSY, NO_ANSWER or FAILED: counting legs would halve the failure ratio.
        """
        legs_of: dict[str, list[Leg]] = {}
        for leg in session.legs:
            if leg.virtual_number:
                msisdn = "+" + leg.virtual_number.lstrip("+")
                if msisdn in state.series:  # a number VNU says it owns, within the cap
                    legs_of.setdefault(msisdn, []).append(leg)
        for msisdn, legs in legs_of.items():
            calls = state.calls.get(msisdn)
            if calls is None:
                calls = state.calls[msisdn] = _NumberCalls()
            status = carrying_status(legs, session.status)
            if status is not None:  # nothing says how it went: the quality still counts
                calls.outcomes[_outcome(status)] += 1
            for leg in legs:
                for name, value in (
                    ("mos", leg.mos),
                    ("loss", leg.loss),
                    ("jitter", leg.jitter_seconds),
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
                        set(state.series) if self.per_number else set(),
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
            for msisdn in sorted(state.series):
                number = state.numbers[msisdn]
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
