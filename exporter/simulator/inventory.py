"""The simulated inventory: a pure function of (seed, subaccount, number count, time).

`Catalog` holds what never changes for a number (msisdn, range, prices, check schedule,
lifecycle). `list_records(catalog, t, base_url)` derives what changes with time:

- health checks run every 60-300 s per number at a fixed phase, so `lastCheckedTime` advances
  and is never older than one interval; each check reads an outage schedule (4 h windows, a
  20% chance of one 5-50 min outage per window), so numbers turn unhealthy and recover;
- operational status cycles per number: Active for weeks, Expiring for 6 h to 3 days, then
  renewed (Active) or, for a quarter of numbers, Inactive for 1-4 days first; 2% of numbers
  stay Inactive; `dateUpdated` is the last status change;
- `lastUpdatedAt` is the newest `dateUpdated` or `lastCheckedTime` of any number.

Subaccounts of at least 20 numbers always show one Expiring number, one number with the
operational status Unhealthy, one number with health checks disabled and one unhealthy number
(a role that moves to another number every 30 min),
so dashboards on demo data are never empty. Time is quantised to ticks (5 s by default): every
value is computed at the start of the tick, which is what lets the server cache the body.
"""

from __future__ import annotations

import datetime
import random
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from threading import Lock
from typing import TypeVar
from urllib.parse import quote

import msgspec

from exporter.simulator.numbering import PLANS, TYPE_WEIGHTS, CountryPlan, draw_block

T = TypeVar("T")

GUARANTEE_MIN_NUMBERS = 20
TICK_SECONDS = 5.0
HEALTHY_STATUS = "Reachable"
UNHEALTHY_STATUSES = ("Unreachable", "Unreachable", "NoAnswer", "CallFailed")
FORCED_UNHEALTHY_STATUS = "Unreachable"

_DAY = 86_400
_OUTAGE_WINDOW = 4 * 3_600
_OUTAGE_CHANCE = 0.20
_ROLE_SLOT = 1_800
_ROLE_OVERLAP = 600  # > longest check interval, so the role holder is checked inside its slot
_CREATED_FROM = int(datetime.datetime(2019, 1, 1, tzinfo=datetime.UTC).timestamp())
_CREATED_TO = int(datetime.datetime(2025, 6, 30, tzinfo=datetime.UTC).timestamp())
_CHECK_INTERVALS = (60, 90, 120, 180, 240, 300)
_MASK = (1 << 64) - 1

# Lifecycle kinds.
_CYCLING, _INACTIVE, _EXPIRING, _UNHEALTHY = 0, 1, 2, 3


class NumberHealth(msgspec.Struct, rename="camel"):
    is_healthy: bool
    status: str
    last_checked_time: str


class NumberRecord(msgspec.Struct, rename="camel", omit_defaults=True):
    """One element of `numbers`; encoded with the API's camelCase names, in documented order."""

    msisdn: str
    date_created: str
    date_updated: str
    country_code: str
    operational_status: str
    reference_id: str
    rental_price: float
    incoming_rate: float
    billing_unit: int
    uri: str
    number_health_check_enabled: bool
    billing_currency: str
    number_type: str
    # UNSET leaves the key out (some disabled numbers); None sends null (the others).
    number_health: NumberHealth | msgspec.UnsetType | None = msgspec.UNSET


_day_prefixes: dict[int, str] = {}


def format_ms(ms: int) -> str:
    """RFC 3339 UTC with milliseconds and Z, e.g. 2026-11-26T14:00:03.123Z (fast path)."""
    seconds, millis = divmod(ms, 1000)
    day, second_of_day = divmod(seconds, _DAY)
    prefix = _day_prefixes.get(day)
    if prefix is None:
        prefix = (datetime.date(1970, 1, 1) + datetime.timedelta(days=day)).isoformat()
        _day_prefixes[day] = prefix
    hours, rest = divmod(second_of_day, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{prefix}T{hours:02d}:{minutes:02d}:{secs:02d}.{millis:03d}Z"


def tick_start(now: float, tick_seconds: float = TICK_SECONDS) -> int:
    """Unix seconds at the start of the tick holding `now`: the time every value is computed at."""
    return int(now // tick_seconds * tick_seconds)


def mix64(value: int) -> int:
    """splitmix64 finaliser: a fast, well-spread deterministic hash of an integer."""
    value = (value + 0x9E3779B97F4A7C15) & _MASK
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK
    return value ^ (value >> 31)


@dataclass(frozen=True)
class _Range:
    reference_id: str
    country: str
    number_type: str
    currency: str
    rental_price: float
    incoming_rate: float
    billing_unit: int
    created: int


@dataclass
class Catalog:
    """Static part of a subaccount's inventory; rows are tuples for a fast per-tick loop."""

    seed: int
    subaccount: str
    count: int
    # (msisdn, digits, range, created_ms, created_str, enabled, health_absent, interval_ms,
    #  offset_ms, health_key, health_phase, kind, cycle, expiring_len, inactive_len, phase,
    #  fixed_since_ms)
    rows: list[tuple] = field(default_factory=list)
    account_created_ms: int = 0
    role_key: int = 0
    role_candidates: list[int] = field(default_factory=list)
    _index: dict[str, int] | None = None
    _uris: OrderedDict[str, list[str]] = field(default_factory=OrderedDict)
    _lock: Lock = field(default_factory=Lock)

    def index_of(self, msisdn: str) -> int | None:
        """Row index of a number given with or without '+'."""
        if self._index is None:
            self._index = {row[1]: i for i, row in enumerate(self.rows)}
        return self._index.get(msisdn.lstrip("+"))

    def uris(self, base_url: str) -> list[str]:
        """Per-number single-number URIs under base_url (a few bases are kept)."""
        with self._lock:
            cached = self._uris.get(base_url)
            if cached is None:
                prefix = f"{base_url}/api/v1/subaccounts/{quote(self.subaccount, safe='')}/numbers/"
                cached = [prefix + row[1] for row in self.rows]
                self._uris[base_url] = cached
                while len(self._uris) > 4:
                    self._uris.popitem(last=False)
            else:
                self._uris.move_to_end(base_url)
            return cached


def _weighted(rng: random.Random, options: Mapping[T, int] | Sequence[tuple[T, int]]) -> T:
    items = list(options.items()) if isinstance(options, Mapping) else options
    total = sum(weight for _, weight in items)
    pick = rng.randrange(total)
    for value, weight in items:
        pick -= weight
        if pick < 0:
            return value
    raise AssertionError("unreachable")


def _price(rng: random.Random, number_type: str, factor: float, currency: str) -> tuple:
    rental_usd = {"Local": (3, 8), "Mobile": (5, 15), "TollFree": (10, 25)}[number_type]
    rate_usd = {"Local": (0.004, 0.02), "Mobile": (0.01, 0.04), "TollFree": (0.02, 0.06)}
    low, high = rate_usd[number_type]
    digits = 0 if currency == "JPY" else 2
    rental = round(rng.uniform(*rental_usd) * factor, digits)
    rate = round(rng.uniform(low, high) * factor, 2 if currency == "JPY" else 4)
    return float(rental), float(rate)


def _draw_range(rng: random.Random) -> tuple[_Range, CountryPlan]:
    plan = _weighted(rng, [(p, p.weight) for p in PLANS])
    types = {t: w for t, w in TYPE_WEIGHTS.items() if t in plan.patterns}
    number_type = _weighted(rng, types)
    local = rng.random() < 0.3 and plan.local_currency != "USD"
    currency = plan.local_currency if local else "USD"
    rental, rate = _price(rng, number_type, plan.currency_per_usd if local else 1.0, currency)
    created = rng.randrange(_CREATED_FROM, _CREATED_TO)
    reference = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    billing_unit = 60 if rng.random() < 0.7 else 1
    info = _Range(
        reference, plan.country, number_type, currency, rental, rate, billing_unit, created
    )
    return info, plan


def _lifecycle(rng: random.Random, created_ms: int) -> tuple[int, int, int, int, int, int]:
    """(kind, cycle, expiring_len, inactive_len, phase, fixed_since_ms) in seconds."""
    if rng.random() < 0.02:
        return _INACTIVE, 0, 0, 0, 0, created_ms + rng.randrange(30, 400) * _DAY * 1000
    cycle = rng.randrange(10 * _DAY, 40 * _DAY)
    expiring = rng.randrange(6 * 3_600, 3 * _DAY)
    inactive = rng.randrange(_DAY, 4 * _DAY) if rng.random() < 0.25 else 0
    return _CYCLING, cycle, expiring, inactive, rng.randrange(cycle), 0


def build_catalog(seed: int, subaccount: str, count: int) -> Catalog:
    """Generate the static inventory; deterministic for (seed, subaccount, count)."""
    rng = random.Random(f"8x8-simulator:{seed}:{subaccount}")  # noqa: S311 - made-up data
    catalog = Catalog(seed=seed, subaccount=subaccount, count=count)
    catalog.account_created_ms = _CREATED_FROM * 1000 - rng.randrange(365) * _DAY * 1000
    catalog.role_key = rng.getrandbits(64)
    used_blocks: set[str] = set()
    per_range_max = max(2, min(200, count // 60))
    while len(catalog.rows) < count:
        info, plan = _draw_range(rng)
        block = plan.calling_code + draw_block(plan, info.number_type, rng)
        if block in used_blocks:
            continue
        used_blocks.add(block)
        take = min(rng.randint(1, per_range_max), count - len(catalog.rows))
        for suffix in sorted(rng.sample(range(1000), take)):
            catalog.rows.append(_number_row(rng, info, f"{block}{suffix:03d}"))
    _assign_guarantees(rng, catalog)
    return catalog


def _number_row(rng: random.Random, info: _Range, digits: str) -> tuple:
    created_ms = (info.created + rng.randrange(0, 60 * _DAY)) * 1000 + rng.randrange(1000)
    enabled = rng.random() < 0.9
    interval = rng.choice(_CHECK_INTERVALS) * 1000
    return (
        "+" + digits,
        digits,
        info,
        created_ms,
        format_ms(created_ms),
        enabled,
        rng.random() < 0.5,  # when disabled: leave numberHealth out instead of null
        interval,
        rng.randrange(interval),
        rng.getrandbits(64),
        rng.randrange(_OUTAGE_WINDOW),
        *_lifecycle(rng, created_ms),
    )


def _assign_guarantees(rng: random.Random, catalog: Catalog) -> None:
    rows = catalog.rows
    if len(rows) < GUARANTEE_MIN_NUMBERS:
        catalog.role_candidates = []
        return
    # The first two picks are those of a sample of two: adding the third changed no other data.
    disabled, expiring, unhealthy = rng.sample(range(len(rows)), 3)
    row = rows[disabled]
    rows[disabled] = (*row[:5], False, *row[6:])
    row = rows[expiring]
    rows[expiring] = (*row[:11], _EXPIRING, 0, 0, 0, 0, row[3] + 90 * _DAY * 1000)
    row = rows[unhealthy]
    rows[unhealthy] = (*row[:11], _UNHEALTHY, 0, 0, 0, 0, row[3] + 120 * _DAY * 1000)
    catalog.role_candidates = [i for i, r in enumerate(rows) if r[5] and i != expiring]


def _status_at(t: int, row: tuple) -> tuple[str, int]:
    """(operationalStatus, ms of the change that set it) at Unix second t."""
    kind, cycle, expiring, inactive, phase, fixed_since = row[11:17]
    if kind == _INACTIVE:
        return "Inactive", fixed_since
    if kind == _EXPIRING:
        return "Expiring", fixed_since
    if kind == _UNHEALTHY:
        return "Unhealthy", fixed_since
    position = (t + phase) % cycle
    active = cycle - expiring - inactive
    if position < active:
        status, since = "Active", t - position
    elif position < active + expiring:
        status, since = "Expiring", t - (position - active)
    else:
        status, since = "Inactive", t - (position - active - expiring)
    # A change lands at a millisecond just before the second boundary, never after t.
    return status, since * 1000 - 1 - (row[9] & 0x3FF) % 1000


def last_check_ms(t: int, row: tuple) -> int:
    """The newest scheduled health check strictly before Unix second t."""
    interval, offset = row[7], row[8]
    return offset + (t * 1000 - 1 - offset) // interval * interval


def _health_at(check_ms: int, row: tuple) -> tuple[bool, str]:
    shifted = check_ms // 1000 + row[10]
    window = shifted // _OUTAGE_WINDOW
    h = mix64(row[9] + window)
    if (h & 0xFFFF) < _OUTAGE_CHANCE * 0x10000:
        start = (h >> 16) % (_OUTAGE_WINDOW - 3_600)
        duration = 300 + (h >> 32) % 2_700
        position = shifted - window * _OUTAGE_WINDOW
        if start <= position < start + duration:
            return False, UNHEALTHY_STATUSES[(h >> 48) & 3]
    return True, HEALTHY_STATUS


def _role_covers(catalog: Catalog, t: int) -> dict[int, list[tuple[int, int]]]:
    """Rotating unhealthy role: row index -> check-time spans (ms) in which it is unhealthy."""
    covers: dict[int, list[tuple[int, int]]] = {}
    candidates = catalog.role_candidates
    if not candidates:
        return covers
    first = (t - 2 * _ROLE_SLOT) // _ROLE_SLOT
    for slot in range(first, t // _ROLE_SLOT + 1):
        holder = candidates[mix64(catalog.role_key ^ slot) % len(candidates)]
        span = (
            (slot * _ROLE_SLOT - _ROLE_OVERLAP) * 1000,
            ((slot + 1) * _ROLE_SLOT + _ROLE_OVERLAP) * 1000,
        )
        covers.setdefault(holder, []).append(span)
    return covers


def list_records(catalog: Catalog, t: int, base_url: str) -> tuple[list[NumberRecord], int]:
    """The `numbers` list at Unix second t, and lastUpdatedAt in ms."""
    uris = catalog.uris(base_url)
    covers = _role_covers(catalog, t)
    records: list[NumberRecord] = []
    append = records.append
    newest = catalog.account_created_ms
    for i, row in enumerate(catalog.rows):
        info = row[2]
        status, since_ms = _status_at(t, row)
        updated_ms = max(row[3], since_ms)
        if row[5]:
            check_ms = last_check_ms(t, row)
            healthy, health_status = _health_at(check_ms, row)
            if healthy and i in covers and any(lo <= check_ms < hi for lo, hi in covers[i]):
                healthy, health_status = False, FORCED_UNHEALTHY_STATUS
            health: NumberHealth | msgspec.UnsetType | None = NumberHealth(
                healthy, health_status, format_ms(check_ms)
            )
            newest = max(newest, check_ms, updated_ms)
        else:
            health = msgspec.UNSET if row[6] else None
            newest = max(newest, updated_ms)
        append(
            NumberRecord(
                row[0],
                row[4],
                format_ms(updated_ms),
                info.country,
                status,
                info.reference_id,
                info.rental_price,
                info.incoming_rate,
                info.billing_unit,
                uris[i],
                row[5],
                info.currency,
                info.number_type,
                health,
            )
        )
    return records, newest


def force_unhealthy(records: list[NumberRecord], catalog: Catalog, t: int, index: int) -> None:
    """Make one number unhealthy as of its latest check (enabling checks if they were off)."""
    record = records[index]
    record.number_health_check_enabled = True
    check_ms = last_check_ms(t, catalog.rows[index])
    record.number_health = NumberHealth(False, FORCED_UNHEALTHY_STATUS, format_ms(check_ms))


def list_body(seed: int, subaccount: str, count: int, now: float, base_url: str) -> dict:
    """The unfaulted list response as the API would serve it at `now` (for tests and tools)."""
    catalog = build_catalog(seed, subaccount, count)
    t = tick_start(now)
    records, newest = list_records(catalog, t, base_url)
    body = list_response(records, len(records), newest)
    return msgspec.json.decode(msgspec.json.encode(body))


def list_response(numbers: list, total: int, last_updated_ms: int) -> dict:
    return {
        "totalNumbers": total,
        "lastUpdatedAt": format_ms(last_updated_ms),
        "numbers": numbers,
        "statusCode": 0,
        "statusMessage": "OK",
    }
