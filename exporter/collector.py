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
(`render_targets`). For a client that accepts gzip, the response's text is deflated once, on the
first such scrape, and later gzip responses reuse the deflated pieces (see `SampleText`).
"""

from __future__ import annotations

import struct
import threading
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import compress, repeat
from operator import is_not

from prometheus_client.utils import floatToGoString

from exporter.model import KNOWN_STATUSES, Inventory, NumberColumns


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
        text = floatToGoString(value)
        if value:  # 0.0 == -0.0 as keys, but they print differently: never cache a zero
            self[value] = text
        return text


class _Lines(dict):
    """Sample-line endings per distinct value: `<labels>} <value>\\n`, as for _GoFloat."""

    def __init__(self, labels: str) -> None:
        super().__init__()
        self.labels = labels

    def __missing__(self, value: float) -> str:
        text = f"{self.labels} {floatToGoString(value)}\n"
        if value:
            self[value] = text
        return text


class _Formatted(dict):
    """Strings made from a key tuple by a format string, computed once per distinct key."""

    def __init__(self, template: str, esc: _Escaped) -> None:
        super().__init__()
        self.template = template
        self.esc = esc

    def __missing__(self, key: tuple[str, ...]) -> str:
        text = self[key] = self.template.format(*map(self.esc.__getitem__, key))
        return text


# --- gzip without recompressing ---------------------------------------------------------------
# A gzip response is assembled from pieces deflated once per API response; only the few
# clock-dependent lines are compressed per scrape. Pieces deflated on their own concatenate into
# one DEFLATE stream when each ends on a byte boundary (a sync flush) and the later ones never
# refer back past their own start; the CRC-32 of the whole is combined from the pieces' CRCs
# (zlib's crc32_combine), so the uncompressed text is not needed at scrape time.

_CRC_POLY = 0xEDB88320


def _crc_multiply(a: int, b: int) -> int:
    """a * b modulo the CRC-32 polynomial (zlib's multmodp); a is never 0."""
    product = 0
    bit = 1 << 31
    while bit:
        if a & bit:
            product ^= b
            if not a & (bit - 1):
                break
        bit >>= 1
        b = (b >> 1) ^ _CRC_POLY if b & 1 else b >> 1
    return product


_X_POW_2N = [1 << 30]  # x^(2^n) modulo the polynomial, for n = 0..31
for _ in range(31):
    _X_POW_2N.append(_crc_multiply(_X_POW_2N[-1], _X_POW_2N[-1]))


def crc_shift(length: int) -> int:
    """x^(8 * length) modulo the CRC-32 polynomial: what appending `length` bytes does to a CRC."""
    product = 1 << 31
    k = 3
    while length:
        if length & 1:
            product = _crc_multiply(_X_POW_2N[k & 31], product)
        length >>= 1
        k += 1
    return product


def crc_combine(crc: int, piece: Piece) -> int:
    """CRC-32 of the bytes so far followed by the piece's bytes."""
    return _crc_multiply(piece.shift, crc) ^ piece.crc


# Deflated pieces up to this size also keep their text, so plain responses need no inflating.
_KEEP_TEXT_UP_TO = 1 << 16


@dataclass(frozen=True, slots=True)
class Piece:
    """Text deflated at level 1 into raw DEFLATE blocks that end on a byte boundary."""

    deflated: bytes
    crc: int
    size: int
    shift: int
    text: bytes | None = None

    @classmethod
    def of(cls, chunks: Iterable[bytes]) -> Piece:
        compressor = zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS)
        out = []
        crc = size = 0
        kept = []
        for chunk in chunks:
            crc = zlib.crc32(chunk, crc)
            size += len(chunk)
            out.append(compressor.compress(chunk))
            if size <= _KEEP_TEXT_UP_TO:
                kept.append(chunk)
        out.append(compressor.flush(zlib.Z_SYNC_FLUSH))
        text = b"".join(kept) if size <= _KEEP_TEXT_UP_TO else None
        return cls(b"".join(out), crc, size, crc_shift(size), text)

    def inflate(self) -> bytes:
        if self.text is not None:
            return self.text
        return zlib.decompressobj(-zlib.MAX_WBITS).decompress(self.deflated)


class SampleText:
    """The sample lines of one family for one subaccount, rendered once per API response.

    Kept as text until a client that accepts gzip (Prometheus always does) asks for it; then
    deflated once and kept only deflated, as per-number text shrinks ~20 times. A client
    without gzip then gets it inflated.
    """

    __slots__ = ("_chunks", "_lock", "_piece")

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks: list[bytes] | None = chunks
        self._piece: Piece | None = None
        self._lock = threading.Lock()

    def chunks(self) -> list[bytes]:
        chunks = self._chunks
        if chunks is not None:
            return chunks
        assert self._piece is not None  # set before the text is dropped
        return [self._piece.inflate()]

    def piece(self) -> Piece:
        piece = self._piece
        if piece is None:
            with self._lock:
                piece = self._piece
                if piece is None:
                    assert self._chunks is not None
                    piece = self._piece = Piece.of(self._chunks)
                    self._chunks = None
        return piece


_HEADERS = {family.name: SampleText([family.header().encode()]) for family in FAMILIES}
# gzip member header: deflate, no name, no mtime, "fastest" flag (XFL 4), unknown OS.
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x04\xff"


@dataclass(frozen=True, slots=True)
class RenderedInventory:
    """The sample lines of one good response, rendered once and reused while it is served."""

    samples: dict[str, SampleText]
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

    samples = {name: SampleText(["".join(texts).encode()]) for name, texts in lines.items()}
    if per_number and len(inventory.columns):
        samples.update(_render_numbers(inventory.columns, sub, esc))
    return RenderedInventory(samples, tuple(check_times), inventory.invalid_records)


# Per-number lines are joined this many numbers at a time: a family is kept as a list of such
# chunks, never joined into one more copy of ~20 MB at 100,000 numbers.
_SLICE = 4096


def _render_numbers(columns: NumberColumns, sub: str, esc: _Escaped) -> dict[str, SampleText]:
    """Per-number families, each line assembled from cached parts by C-level joins.

    A line is `<head><msisdn><end>`: the head holds the family name and the labels sorted
    before msisdn, the end the labels after it and the value. Heads and ends repeat, so each
    distinct one is formatted once, and a slice of lines is one `str.join` over the columns
    interleaved: no Python code runs per line.
    """
    msisdns = columns.msisdn
    if _needs_escape("".join(msisdns)):
        msisdns = list(map(esc.__getitem__, msisdns))
    tail = f',subaccount="{sub}"}}'
    info_heads = _Formatted(
        NUMBER_INFO.name + '{{country="{}",currency="{}",health_status="{}",msisdn="', esc
    )
    info_ends = _Formatted(
        '",number_type="{}",operational_status="{}",reference_id="{}"'
        + tail.replace("{", "{{").replace("}", "}}")
        + " 1.0\n",
        esc,
    )
    flags = {True: f'"{tail} 1.0\n', False: f'"{tail} 0.0\n'}
    out: dict[str, list[bytes]] = {}

    heads = list(
        map(
            info_heads.__getitem__,
            zip(columns.country, columns.currency, columns.health_status, strict=True),
        )
    )
    ends = list(
        map(
            info_ends.__getitem__,
            zip(columns.number_type, columns.operational_status, columns.reference_id, strict=True),
        )
    )
    out[NUMBER_INFO.name] = _lines(msisdns, heads, ends)
    del heads, ends
    for family, values in (
        (NUMBER_HEALTHY, columns.healthy),
        (NUMBER_CHECK_ENABLED, columns.check_enabled),
    ):
        kept, values = _without_none(msisdns, values)
        out[family.name] = _lines(kept, f'{family.name}{{msisdn="', list(map(flags.get, values)))
    kept, values = _without_none(msisdns, columns.last_checked)
    out[NUMBER_LAST_CHECKED.name] = _lines(
        kept, f'{NUMBER_LAST_CHECKED.name}{{msisdn="', f'"{tail} ', values
    )
    for family, values in (
        (NUMBER_RENTAL, columns.rental_price),
        (NUMBER_INCOMING, columns.incoming_rate),
    ):
        currency_heads = _Formatted(family.name + '{{currency="{}",msisdn="', esc)
        kept, values, currencies = _without_none(msisdns, values, columns.currency)
        out[family.name] = _lines(
            kept,
            list(map(currency_heads.__getitem__, zip(currencies))),
            list(map(_Lines(f'"{tail}').__getitem__, values)),
        )
    kept, values = _without_none(msisdns, columns.billing_unit)
    out[NUMBER_BILLING.name] = _lines(
        kept,
        f'{NUMBER_BILLING.name}{{msisdn="',
        list(map(_Lines(f'"{tail}').__getitem__, values)),
    )
    return {name: SampleText(chunks) for name, chunks in out.items() if chunks}


def _without_none(msisdns: list[str], values: list, *others: list) -> tuple[list, ...]:
    """The msisdns, values and other columns of the numbers whose value is not None."""
    if None not in values:
        return (msisdns, values, *others)
    keep = list(map(is_not, values, repeat(None)))
    return tuple(list(compress(column, keep)) for column in (msisdns, values, *others))


def _lines(
    msisdns: list[str],
    heads: str | list[str],
    ends: str | list[str],
    values: list[float] | None = None,
) -> list[bytes]:
    """`head + msisdn + end` per msisdn (then the value formatted and a newline, if given).

    A head or end given as a str is the same on every line, a list has one per msisdn.
    """
    chunks = []
    width = 3 if values is None else 4
    for start in range(0, len(msisdns), _SLICE):
        stop = start + _SLICE
        part = msisdns[start:stop]
        parts: list[str | None] = [None] * (width * len(part))
        parts[1::width] = part
        parts[0::width] = [heads] * len(part) if isinstance(heads, str) else heads[start:stop]
        parts[2::width] = [ends] * len(part) if isinstance(ends, str) else ends[start:stop]
        if values is not None:
            parts[3::width] = _go_float_lines(values[start:stop])
        chunks.append("".join(parts).encode())  # type: ignore[arg-type]
    return chunks


def _go_float_lines(values: list[float]) -> list[str]:
    """floatToGoString(value) + newline for each value, with a shortcut for Unix times.

    A float from 1e9 to 1e10 (times from 2001 to 2286) has a repr of ten integer digits and a
    fraction without trailing zeros, except for a whole number ("...0.0"); floatToGoString moves
    the point behind the first digit and appends e+09. One repr() of the list is much cheaper
    than one per value.
    """
    if values and min(values) >= 1e9 and max(values) < 1e10:
        return [
            f"{text[0]}.{text[1:10]}{text[11:]}e+09\n"
            if text[-1] != "0"
            else f"{floatToGoString(float(text))}\n"
            for text in repr(values)[1:-1].split(", ")
        ]
    return [f"{floatToGoString(value)}\n" for value in values]


def _needs_escape(value: str) -> bool:
    return "\\" in value or '"' in value or "\n" in value


def render_targets(
    targets: Sequence[TargetSample], now: float, *, head: bytes = b"", gzip: bool = False
) -> list[bytes]:
    """The exposition for the given scrape outcomes, after `head`; as one gzip member if asked.

    The clock-dependent series use `now`; everything else comes from the rendered inventories.
    """
    chunks: dict[str, list[bytes | SampleText]] = {}

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

    parts: list[bytes | SampleText] = [head] if head else []
    for family in FAMILIES:
        family_parts = chunks.get(family.name)
        if family_parts:
            parts.append(_HEADERS[family.name])
            parts.extend(family_parts)
    if gzip:
        return _gzip_member(parts)
    out: list[bytes] = []
    for part in parts:
        if isinstance(part, SampleText):
            out.extend(part.chunks())
        else:
            out.append(part)
    return out


def _gzip_member(parts: list[bytes | SampleText]) -> list[bytes]:
    """One gzip member: deflated pieces as they are, the bytes between them compressed now."""
    out = [_GZIP_HEADER]
    compressor = zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS)
    crc = size = 0
    for part in parts:
        if isinstance(part, SampleText):
            piece = part.piece()
            # A full flush ends the bytes so far on a byte boundary with no references past it.
            out.append(compressor.flush(zlib.Z_FULL_FLUSH))
            out.append(piece.deflated)
            crc = crc_combine(crc, piece)
            size += piece.size
        else:
            out.append(compressor.compress(part))
            crc = zlib.crc32(part, crc)
            size += len(part)
    out.append(compressor.flush())
    out.append(struct.pack("<II", crc, size & 0xFFFFFFFF))
    return [chunk for chunk in out if chunk]
