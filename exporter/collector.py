"""Collector: renders inventories and scrape outcomes as Prometheus text exposition 0.0.4.

A few lines of what it produces::

    # HELP eightbyeight_up 1 if the last read of the subaccount's numbers from the 8x8 API ...
    # TYPE eightbyeight_up gauge
    eightbyeight_up{subaccount="acme-prod"} 1.0
    eightbyeight_virtual_numbers_by_status{country="SG",number_type="Mobile",operational_status="active",subaccount="acme-prod"} 41.0
    eightbyeight_health_check_age_seconds{country="SG",number_type="Mobile",subaccount="acme-prod"} 212.4
    eightbyeight_number_healthy{msisdn="+6531234567",subaccount="acme-prod"} 1.0

The text is written here rather than through prometheus_client's registry because a large
subaccount has hundreds of thousands of per-number samples (see bench/). Labels are sorted and
values formatted with the library's own `floatToGoString`, so the output is byte-for-byte what
`generate_latest` prints for the same families; tests/test_exposition_equivalence.py proves it.
Everything that depends only on the API response is rendered once per response
(`render_inventory`); only the few series that depend on the clock are rendered per scrape
(`render_targets`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from prometheus_client.utils import floatToGoString

from exporter.model import KNOWN_STATUSES, Inventory, NumberRow


@dataclass(frozen=True, slots=True)
class Family:
    """A gauge family: its name and what it means to an operator."""

    name: str
    help: str

    def header(self) -> str:
        return f"# HELP {self.name} {self.help}\n# TYPE {self.name} gauge\n"


UP = Family(
    "eightbyeight_up",
    "1 if the last read of the subaccount's numbers from the 8x8 API succeeded and parsed, else 0.",
)
SCRAPE_DURATION = Family(
    "eightbyeight_scrape_duration_seconds",
    "Seconds this scrape spent getting the subaccount's data (API call, or cache).",
)
INVALID_RECORDS = Family(
    "eightbyeight_invalid_records",
    "Records in the last API response that were skipped because they could not be read.",
)
LAST_SUCCESS = Family(
    "eightbyeight_last_success_timestamp_seconds",
    "Unix time of the last successful read of the subaccount from the 8x8 API; with "
    "--cache.ttl or --cache.serve-stale-for the data shown may be this old.",
)
VIRTUAL_NUMBERS = Family(
    "eightbyeight_virtual_numbers",
    "Virtual numbers assigned to the subaccount, as reported by the API (totalNumbers).",
)
LISTED = Family(
    "eightbyeight_virtual_numbers_listed",
    "Virtual numbers read from the API's list (valid records); may differ from totalNumbers.",
)
LAST_UPDATED = Family(
    "eightbyeight_last_updated_timestamp_seconds",
    "Unix time of the last status update to any of the subaccount's numbers (lastUpdatedAt).",
)
BY_STATUS = Family(
    "eightbyeight_virtual_numbers_by_status",
    "Virtual numbers by operational status (active, expiring, inactive, or as reported).",
)
EXPIRING = Family(
    "eightbyeight_virtual_numbers_expiring",
    "Virtual numbers whose rental is expiring.",
)
HEALTHY = Family(
    "eightbyeight_virtual_numbers_healthy",
    "Virtual numbers whose last health check found them reachable.",
)
UNHEALTHY = Family(
    "eightbyeight_virtual_numbers_unhealthy",
    "Virtual numbers whose last health check found them unreachable.",
)
HEALTH_UNKNOWN = Family(
    "eightbyeight_virtual_numbers_health_unknown",
    "Virtual numbers with no health verdict (health checks disabled, or no health data yet).",
)
CHECK_DISABLED = Family(
    "eightbyeight_virtual_numbers_health_check_disabled",
    "Virtual numbers on which Number Health checks are turned off.",
)
CHECK_AGE = Family(
    "eightbyeight_health_check_age_seconds",
    "Seconds since the oldest last health check among the group's numbers with checks enabled.",
)
RENTAL_COST = Family(
    "eightbyeight_monthly_rental_cost",
    "Sum of the monthly rental fees of the group's numbers, in the billing currency.",
)
NUMBER_INFO = Family(
    "eightbyeight_number_info",
    "One series per virtual number carrying its attributes as labels; the value is always 1.",
)
NUMBER_HEALTHY = Family(
    "eightbyeight_number_healthy",
    "1 if the number's last health check found it reachable, 0 if not; absent when unknown.",
)
NUMBER_CHECK_ENABLED = Family(
    "eightbyeight_number_health_check_enabled",
    "1 if Number Health checks are enabled for the number, else 0.",
)
NUMBER_LAST_CHECKED = Family(
    "eightbyeight_number_health_last_checked_timestamp_seconds",
    "Unix time of the number's last health check.",
)
NUMBER_RENTAL = Family(
    "eightbyeight_number_rental_price",
    "The number's recurring monthly rental fee, in the billing currency.",
)
NUMBER_INCOMING = Family(
    "eightbyeight_number_incoming_rate_per_minute",
    "The number's fee per minute of inbound call, in the billing currency.",
)
NUMBER_BILLING = Family(
    "eightbyeight_number_billing_increment_seconds",
    "The billing increment applied to inbound calls to the number, in seconds.",
)

# Exposition order. Within a family, subaccounts appear in configuration order.
FAMILIES: tuple[Family, ...] = (
    UP,
    SCRAPE_DURATION,
    INVALID_RECORDS,
    LAST_SUCCESS,
    VIRTUAL_NUMBERS,
    LISTED,
    LAST_UPDATED,
    BY_STATUS,
    EXPIRING,
    HEALTHY,
    UNHEALTHY,
    HEALTH_UNKNOWN,
    CHECK_DISABLED,
    CHECK_AGE,
    RENTAL_COST,
    NUMBER_INFO,
    NUMBER_HEALTHY,
    NUMBER_CHECK_ENABLED,
    NUMBER_LAST_CHECKED,
    NUMBER_RENTAL,
    NUMBER_INCOMING,
    NUMBER_BILLING,
)
_HEADERS = {family.name: family.header().encode() for family in FAMILIES}


def escape_label_value(value: str) -> str:
    """Escape as the text format requires: backslash, double quote and newline."""
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


class _Escaped(dict):
    """Escaped label values, computed once per distinct value."""

    def __missing__(self, value: str) -> str:
        escaped = self[value] = escape_label_value(value)
        return escaped


class _GoFloat(dict):
    """floatToGoString, computed once per distinct value (prices and units repeat a lot)."""

    def __missing__(self, value: float) -> str:
        text = self[value] = floatToGoString(value)
        return text


@dataclass(frozen=True, slots=True)
class RenderedInventory:
    """The sample lines of one good response, rendered once and reused while it is served."""

    samples: dict[str, bytes]
    check_times: tuple[tuple[str, float], ...]
    invalid_records: int


@dataclass(frozen=True, slots=True)
class TargetSample:
    """What one scrape of one subaccount produced."""

    subaccount: str
    up: bool
    duration: float
    inventory: RenderedInventory | None = None
    last_success: float | None = None


def render_inventory(
    inventory: Inventory, subaccount: str, per_number: bool = True
) -> RenderedInventory:
    """Render every series that depends only on the API response."""
    sub = escape_label_value(subaccount)
    esc = _Escaped()
    go = _GoFloat()
    lines: dict[str, list[str]] = {}

    def add(family: Family, text: str) -> None:
        lines.setdefault(family.name, []).append(text)

    if inventory.total_numbers is not None:
        add(
            VIRTUAL_NUMBERS,
            f'{VIRTUAL_NUMBERS.name}{{subaccount="{sub}"}} {go[inventory.total_numbers]}\n',
        )
    add(LISTED, f'{LISTED.name}{{subaccount="{sub}"}} {go[float(inventory.listed)]}\n')
    if inventory.last_updated is not None:
        add(
            LAST_UPDATED,
            f'{LAST_UPDATED.name}{{subaccount="{sub}"}} {go[inventory.last_updated]}\n',
        )

    check_times = []
    for (country, number_type), group in inventory.groups.items():
        pair = f'country="{esc[country]}",number_type="{esc[number_type]}"'
        where = f'{{{pair},subaccount="{sub}"}} '
        statuses = sorted(set(group.statuses) | set(KNOWN_STATUSES))
        for status in statuses:
            count = group.statuses.get(status, 0)
            add(
                BY_STATUS,
                f'{BY_STATUS.name}{{{pair},operational_status="{esc[status]}",subaccount="{sub}"}} {go[float(count)]}\n',
            )
        add(EXPIRING, f"{EXPIRING.name}{where}{go[float(group.statuses['expiring'])]}\n")
        add(HEALTHY, f"{HEALTHY.name}{where}{go[float(group.healthy)]}\n")
        add(UNHEALTHY, f"{UNHEALTHY.name}{where}{go[float(group.unhealthy)]}\n")
        add(HEALTH_UNKNOWN, f"{HEALTH_UNKNOWN.name}{where}{go[float(group.health_unknown)]}\n")
        add(CHECK_DISABLED, f"{CHECK_DISABLED.name}{where}{go[float(group.check_disabled)]}\n")
        if group.oldest_check is not None:
            check_times.append((where, group.oldest_check))
        for currency in sorted(group.rental_cost):
            labels = (
                f'country="{esc[country]}",currency="{esc[currency]}",'
                f'number_type="{esc[number_type]}",subaccount="{sub}"'
            )
            add(RENTAL_COST, f"{RENTAL_COST.name}{{{labels}}} {go[group.rental_cost[currency]]}\n")

    samples = {name: "".join(texts).encode() for name, texts in lines.items()}
    if per_number and inventory.numbers:
        samples.update(_render_numbers(inventory.numbers, sub, esc, go))
    return RenderedInventory(samples, tuple(check_times), inventory.invalid_records)


def _render_numbers(
    rows: list[NumberRow], sub: str, esc: _Escaped, go: _GoFloat
) -> dict[str, bytes]:
    """Per-number families, one pass per family so only one family's lines live at a time."""
    tail = f',subaccount="{sub}"}} '
    msisdns = [esc[row.msisdn] if _needs_escape(row.msisdn) else row.msisdn for row in rows]
    pairs = list(zip(msisdns, rows, strict=True))
    out: dict[str, bytes] = {}

    heads: dict[tuple[str, str, str], str] = {}
    tails: dict[tuple[str, str, str], str] = {}
    info = []
    for msisdn, row in pairs:
        head_key = (row.country, row.currency, row.health_status)
        head = heads.get(head_key)
        if head is None:
            head = heads[head_key] = (
                f'{NUMBER_INFO.name}{{country="{esc[row.country]}",currency="{esc[row.currency]}",'
                f'health_status="{esc[row.health_status]}",msisdn="'
            )
        tail_key = (row.number_type, row.operational_status, row.reference_id)
        info_tail = tails.get(tail_key)
        if info_tail is None:
            info_tail = tails[tail_key] = (
                f'",number_type="{esc[row.number_type]}",'
                f'operational_status="{esc[row.operational_status]}",'
                f'reference_id="{esc[row.reference_id]}",subaccount="{sub}"}} 1.0\n'
            )
        info.append(head + msisdn + info_tail)
    out[NUMBER_INFO.name] = "".join(info).encode()
    del info

    out[NUMBER_HEALTHY.name] = _join(
        f'{NUMBER_HEALTHY.name}{{msisdn="{m}"{tail}{"1.0" if r.healthy else "0.0"}\n'
        for m, r in pairs
        if r.healthy is not None
    )
    out[NUMBER_CHECK_ENABLED.name] = _join(
        f'{NUMBER_CHECK_ENABLED.name}{{msisdn="{m}"{tail}{"1.0" if r.check_enabled else "0.0"}\n'
        for m, r in pairs
        if r.check_enabled is not None
    )
    out[NUMBER_LAST_CHECKED.name] = _join(
        f'{NUMBER_LAST_CHECKED.name}{{msisdn="{m}"{tail}{floatToGoString(r.last_checked)}\n'
        for m, r in pairs
        if r.last_checked is not None
    )
    out[NUMBER_RENTAL.name] = _join(
        f'{NUMBER_RENTAL.name}{{currency="{esc[r.currency]}",msisdn="{m}"{tail}{go[r.rental_price]}\n'
        for m, r in pairs
        if r.rental_price is not None
    )
    out[NUMBER_INCOMING.name] = _join(
        f'{NUMBER_INCOMING.name}{{currency="{esc[r.currency]}",msisdn="{m}"{tail}{go[r.incoming_rate]}\n'
        for m, r in pairs
        if r.incoming_rate is not None
    )
    out[NUMBER_BILLING.name] = _join(
        f'{NUMBER_BILLING.name}{{msisdn="{m}"{tail}{go[r.billing_unit]}\n'
        for m, r in pairs
        if r.billing_unit is not None
    )
    return {name: text for name, text in out.items() if text}


def _needs_escape(value: str) -> bool:
    return "\\" in value or '"' in value or "\n" in value


def _join(lines: Iterable[str]) -> bytes:
    return "".join(lines).encode()


def render_targets(targets: Sequence[TargetSample], now: float) -> list[bytes]:
    """Exposition chunks for the given scrape outcomes; the clock-dependent series use `now`."""
    chunks: dict[str, list[bytes]] = {}

    def add(family: Family, text: str) -> None:
        chunks.setdefault(family.name, []).append(text.encode())

    for target in targets:
        sub = escape_label_value(target.subaccount)
        label = f'{{subaccount="{sub}"}} '
        add(UP, f"{UP.name}{label}{'1.0' if target.up else '0.0'}\n")
        add(SCRAPE_DURATION, f"{SCRAPE_DURATION.name}{label}{floatToGoString(target.duration)}\n")
        inventory = target.inventory
        invalid = inventory.invalid_records if (inventory and target.up) else 0
        add(INVALID_RECORDS, f"{INVALID_RECORDS.name}{label}{floatToGoString(invalid)}\n")
        if target.last_success is not None:
            add(LAST_SUCCESS, f"{LAST_SUCCESS.name}{label}{floatToGoString(target.last_success)}\n")
        if inventory is None:
            continue
        for where, oldest in inventory.check_times:
            add(CHECK_AGE, f"{CHECK_AGE.name}{where}{floatToGoString(max(0.0, now - oldest))}\n")
        for name, text in inventory.samples.items():
            chunks.setdefault(name, []).append(text)

    out: list[bytes] = []
    for family in FAMILIES:
        parts = chunks.get(family.name)
        if parts:
            out.append(_HEADERS[family.name])
            out.extend(parts)
    return out
