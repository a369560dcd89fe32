"""Exposition: inventories and scrape outcomes as Prometheus text format 0.0.4 or OpenMetrics
1.0.0, as text parts.

A few lines of what it produces::

    # HELP eightbyeight_up 1 if the last read of the subaccount's numbers from the 8x8 API ...
    # TYPE eightbyeight_up gauge
    eightbyeight_up{subaccount="acme-prod"} 1.0
    eightbyeight_virtual_numbers_by_status{country="SG",number_type="Mobile",operational_status="active",subaccount="acme-prod"} 41.0
    eightbyeight_health_check_age_seconds{country="SG",number_type="Mobile",subaccount="acme-prod"} 212.4
    eightbyeight_number_healthy{msisdn="+6531234567",subaccount="acme-prod"} 1.0

Which families exist and which labels they carry is declared in `exporter.metrics.catalogue`; the line
templates below are derived from it at import. The text is written here rather than through
prometheus_client's registry because a large subaccount has hundreds of thousands of per-number
samples (see bench/). Labels are sorted and values formatted with the library's own
`floatToGoString`, so the output is byte-for-byte what `generate_latest` prints for the same
families; tests/unit/polling/test_exposition_equivalence.py proves it.

Everything that depends only on the API response is rendered once per response
(`render_inventory`); only the few series that depend on the clock are rendered per scrape
(`render_scrapes`). Text that lives as long as the response is kept in `SampleText`, which
`exporter.metrics.encoding` may deflate once for every later gzip response.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from enum import Enum
from itertools import chain, compress, repeat
from operator import attrgetter, is_not, itemgetter, methodcaller, mul, truediv
from typing import TypeVar

from prometheus_client.utils import floatToGoString

from exporter.common.eightbyeight import NUMBER_STATUSES
from exporter.common.memo import Memo
from exporter.metrics import catalogue as c
from exporter.metrics.catalogue import POLL_FAMILIES as FAMILIES
from exporter.metrics.catalogue import SUBACCOUNT, Family
from exporter.metrics.encoding import SampleText, TextPart
from exporter.polling.model import GroupStats, Inventory, NumberColumns

# --- label values -----------------------------------------------------------------------------


def needs_escape(value: str) -> bool:
    """True if the text format requires escaping in a label value: backslash, quote, newline."""
    return "\\" in value or '"' in value or "\n" in value


def escape_label_value(value: str) -> str:
    """The value as it goes between the quotes of a label."""
    if needs_escape(value):
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


# --- line templates, derived from the catalogue once -------------------------------------------


def _header(family: Family, openmetrics: bool = False) -> bytes:
    help_text = family.help.replace("\\", r"\\").replace("\n", r"\n")
    if openmetrics:  # OpenMetrics escapes quotes in HELP too
        help_text = help_text.replace('"', r"\"")
    return f"# HELP {family.name} {help_text}\n# TYPE {family.name} {family.type}\n".encode()


def _prefix(family: Family) -> tuple[str, Callable[[dict[str, str]], tuple[str, ...] | str]]:
    """`name{label="%s",...} ` and what picks its escaped label values, in order, from a dict.

    `template % values_of(labels)` fills it in (printf-style: several times faster than
    str.format_map, and these lines are rendered per group and per scrape). With one label,
    itemgetter returns the value itself, which `%` takes as the single argument.
    """
    fields = ",".join(f'{label}="%s"' for label in family.labels)
    return f"{family.name}{{{fields}}} ", itemgetter(*family.labels)


@dataclass(frozen=True, slots=True)
class NumberLine:
    """A per-number family's sample line, as the text between its label values.

    `texts[i]` stands before the value of `labels[i]`, and `texts[-1]` after the last one, up
    to the sample value. The subaccount is the same on every line: it is written into the text
    around it at render time (in place of SUB_MARK), so only the labels that vary per number
    are columns.
    """

    family: Family
    labels: tuple[str, ...]
    texts: tuple[str, ...]


# Where the subaccount goes in a NumberLine's texts: a character no name or label text holds.
SUB_MARK = "\x00"


def _number_line(family: Family) -> NumberLine:
    for label in family.labels:
        if label not in _NUMBER_FIELDS:
            raise ValueError(f"{family.name}: label {label!r} has no NumberColumns field")
    labels: list[str] = []
    texts: list[str] = []
    text = family.name + "{"
    for position, label in enumerate(family.labels):
        text += ("," if position else "") + f'{label}="'
        if label == SUBACCOUNT:
            text += SUB_MARK + '"'
            continue
        labels.append(label)
        texts.append(text)
        text = '"'
    texts.append(text + "} ")
    return NumberLine(family, tuple(labels), tuple(texts))


_NUMBER_FIELDS = {field.name for field in fields(NumberColumns)} | {SUBACCOUNT}
_HEADERS = {family.name: SampleText([_header(family)]) for family in FAMILIES}
# Every family is a gauge, whose lines are the same in both formats: only a help text with a
# quote in it gets a header of its own in OpenMetrics.
_OPENMETRICS_HEADERS = {
    family.name: (
        _HEADERS[family.name]
        if _header(family, openmetrics=True) == _header(family)
        else SampleText([_header(family, openmetrics=True)])
    )
    for family in FAMILIES
}
OPENMETRICS_EOF = b"# EOF\n"
if any(family.type != "gauge" for family in FAMILIES):
    raise ValueError("the OpenMetrics rendering assumes gauges only: counters and info differ")
PREFIXES = {family.name: _prefix(family) for family in FAMILIES if not family.per_number}
NUMBER_LINES = {family.name: _number_line(family) for family in FAMILIES if family.per_number}
# The per-number label columns any family prints.
_NUMBER_LABELS = sorted({label for line in NUMBER_LINES.values() for label in line.labels})


class ValueKind(Enum):
    """How a per-number family's sample value is printed."""

    ONE = "always 1"
    FLAG = "a bool, as 1 or 0"
    TIME = "a Unix time (nearly all distinct)"
    AMOUNT = "a float that repeats (prices, units)"


# The value of each per-number family: the NumberColumns field it comes from, and its kind.
# A per-number label's values come from the NumberColumns field named like the label.
NUMBER_VALUES: dict[str, tuple[str | None, ValueKind]] = {
    c.NUMBER_INFO.name: (None, ValueKind.ONE),
    c.NUMBER_HEALTHY.name: ("healthy", ValueKind.FLAG),
    c.NUMBER_HEALTH_CHECK_ENABLED.name: ("check_enabled", ValueKind.FLAG),
    c.NUMBER_HEALTH_LAST_CHECKED_TIMESTAMP_SECONDS.name: ("last_checked", ValueKind.TIME),
    c.NUMBER_RENTAL_PRICE.name: ("rental_price", ValueKind.AMOUNT),
    c.NUMBER_INCOMING_RATE_PER_MINUTE.name: ("incoming_rate", ValueKind.AMOUNT),
    c.NUMBER_BILLING_INCREMENT_SECONDS.name: ("billing_unit", ValueKind.AMOUNT),
}
if set(NUMBER_VALUES) != set(NUMBER_LINES):
    raise ValueError(
        f"per-number families without a value: {set(NUMBER_LINES) ^ set(NUMBER_VALUES)}"
    )

_FLAGS = {True: "1.0\n", False: "0.0\n"}

# --- what is rendered ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RenderedInventory:
    """The sample lines of one good response, rendered once and reused while it is served.

    `check_ages` holds, per group with health checks, the line prefix of its
    eightbyeight_health_check_age_seconds sample and the time of its oldest check.
    """

    samples: dict[str, SampleText]
    check_ages: tuple[tuple[str, float], ...]
    invalid_records: int
    # For the status page: numbers listed, and how many are unhealthy or expiring.
    listed: int = 0
    unhealthy: int = 0
    expiring: int = 0


@dataclass(frozen=True, slots=True)
class SubaccountScrape:
    """What one scrape of one subaccount produced."""

    subaccount: str
    up: bool
    duration: float
    inventory: RenderedInventory | None = None
    last_success: float | None = None


# Label values, prices and counts repeat across subaccounts and responses: formatted once for the
# process, in memos bounded so that no run of distinct values makes them grow for ever.
_MEMO_LIMIT = 1 << 16
_ESCAPED: Memo[str, str] = Memo(escape_label_value, limit=_MEMO_LIMIT)
_GO: Memo[float, str] = Memo(floatToGoString, limit=_MEMO_LIMIT)
# Counts are ints, never -0.0, so their zero (the most frequent count) may be kept.
_COUNTS: Memo[int, str] = Memo(floatToGoString, ((0, "0.0"),), limit=_MEMO_LIMIT)
# A per-number amount (price, rate, increment) as it ends its line.
_GO_LINES: Memo[float, str] = Memo(lambda value: f"{floatToGoString(value)}\n", limit=_MEMO_LIMIT)


def render_inventory(
    inventory: Inventory, subaccount: str, per_number: bool = True
) -> RenderedInventory:
    """Render every series that depends only on the API response."""
    sub = escape_label_value(subaccount)
    go, counts = _GO, _COUNTS
    lines: dict[str, list[str]] = {}

    def add(family: Family, labels: dict[str, str], value: str) -> None:
        template, values_of = PREFIXES[family.name]
        try:
            line = f"{template % values_of(labels)}{value}\n"
        except KeyError as missing:
            raise KeyError(f"{family.name}: no value for label {missing}") from None
        lines.setdefault(family.name, []).append(line)

    own = {SUBACCOUNT: sub}
    if inventory.total_numbers is not None:
        add(c.VIRTUAL_NUMBERS, own, go[inventory.total_numbers])
    add(c.VIRTUAL_NUMBERS_LISTED, own, counts[inventory.listed])
    if inventory.last_updated is not None:
        add(c.LAST_UPDATED_TIMESTAMP_SECONDS, own, go[inventory.last_updated])

    samples = {
        name: SampleText(["".join(texts).encode()]) for name, texts in lines.items() if texts
    }
    check_ages: tuple[tuple[str, float], ...] = ()
    if inventory.groups:
        check_ages = _render_groups(inventory.groups, sub, samples)
    if per_number and len(inventory.columns):
        samples.update(_render_numbers(inventory.columns, sub))
    groups = inventory.groups.values()
    return RenderedInventory(
        samples,
        check_ages,
        inventory.invalid_records,
        listed=int(inventory.listed),
        unhealthy=sum(map(_UNHEALTHY, groups)),
        expiring=sum(map(_EXPIRING, map(_STATUSES, groups))),
    )


# --- per-group families ---------------------------------------------------------------------------

# Stand in for a row's label values while a family's line template is filled in, so the text
# between them can be cut out: characters no name, help or escaped label value holds here.
_COLUMN_MARKS = ("\x01", "\x02", "\x03")
_MARK_SPLIT = re.compile("([\x01\x02\x03])")


def _row_texts(
    key: tuple[str, str, tuple[str, ...]],
) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """For (family name, its template, row label names): the text before, between and after
    the row labels' values (the subaccount as SUB_MARK), and the position of each in `labels`."""
    name, template, labels = key
    marks = {SUBACCOUNT: SUB_MARK, **dict(zip(labels, _COLUMN_MARKS, strict=False))}
    try:
        filled = template % PREFIXES[name][1](marks)
    except KeyError as missing:
        raise KeyError(f"{name}: no value for label {missing}") from None
    pieces = _MARK_SPLIT.split(filled)
    return tuple(pieces[0::2]), tuple(_COLUMN_MARKS.index(mark) for mark in pieces[1::2])


# Keyed by family and labels, not by subaccount: as many entries as there are families.
_ROW_TEXTS: Memo[tuple[str, str, tuple[str, ...]], tuple[tuple[str, ...], tuple[int, ...]]]
_ROW_TEXTS = Memo(_row_texts, limit=_MEMO_LIMIT)


def _rows(family: Family, sub: str, columns: dict[str, list[str]]) -> list[str | list[str]]:
    """The family's lines up to the sample value, as text and label columns for `_lines`:
    one row per entry of the columns, which are named by label and escaped."""
    labels = tuple(columns)
    texts, order = _ROW_TEXTS[(family.name, PREFIXES[family.name][0], labels)]
    parts: list[str | list[str]] = []
    for text, position in zip(texts, order, strict=False):
        parts += [text.replace(SUB_MARK, sub), columns[labels[position]]]
    parts.append(texts[-1].replace(SUB_MARK, sub))
    return parts


# A count as it ends its line: counts are ints, never -0.0, so their zero may be kept.
_COUNT_LINES: Memo[int, str] = Memo(
    lambda count: f"{floatToGoString(count)}\n", ((0, "0.0\n"),), limit=_MEMO_LIMIT
)
_KNOWN = frozenset(NUMBER_STATUSES)
_KNOWN_ZEROS = dict.fromkeys(NUMBER_STATUSES, 0)
_FIRST, _SECOND = itemgetter(0), itemgetter(1)
_STATUSES = attrgetter("statuses")
_HEALTH_STATUSES = attrgetter("health_statuses")
_UNHEALTHY = attrgetter("unhealthy")
_COSTS = attrgetter("monthly_rental_cost")
_EXPIRING = methodcaller("get", "expiring", 0)
_GROUP_COUNTS = (
    (c.VIRTUAL_NUMBERS_HEALTHY, attrgetter("healthy")),
    (c.VIRTUAL_NUMBERS_UNHEALTHY, _UNHEALTHY),
    (c.VIRTUAL_NUMBERS_HEALTH_UNKNOWN, attrgetter("health_unknown")),
    (c.VIRTUAL_NUMBERS_HEALTH_CHECK_DISABLED, attrgetter("check_disabled")),
)


def _render_groups(
    groups: dict[tuple[str, str], GroupStats], sub: str, samples: dict[str, SampleText]
) -> tuple[tuple[str, float], ...]:
    """Add the per-group families to `samples`; return the check ages' prefixes and times.

    Column by column, like the per-number families: a family is one `_lines` join over the
    groups, with no Python code per line. A family with more than one line per group (status,
    health status, currency) repeats the group's labels for each of its lines.
    """
    esc = _ESCAPED.__getitem__
    counts = _COUNT_LINES.__getitem__
    stats = list(groups.values())
    country = list(map(esc, map(_FIRST, groups)))
    number_type = list(map(esc, map(_SECOND, groups)))
    per_group = {"country": country, "number_type": number_type}

    def add(family: Family, columns: dict[str, list[str]], values: list[str]) -> None:
        samples[family.name] = SampleText(_lines([*_rows(family, sub, columns), values]))

    status_counts = list(map(_STATUSES, stats))
    if not all(map(_KNOWN.issubset, status_counts)):  # the documented statuses always show
        status_counts = [{**_KNOWN_ZEROS, **counted} for counted in status_counts]
    # map(sorted, ...) rather than a function of ours per group: no Python frame per group.
    statuses = list(map(sorted, map(dict.items, status_counts)))
    add(c.VIRTUAL_NUMBERS_BY_STATUS, *_expanded(per_group, statuses, "operational_status", counts))
    expiring = list(map(counts, map(_EXPIRING, map(_STATUSES, stats))))
    add(c.VIRTUAL_NUMBERS_EXPIRING, per_group, expiring)
    for family, count_of in _GROUP_COUNTS:
        add(family, per_group, list(map(counts, map(count_of, stats))))
    health_statuses = list(map(sorted, map(dict.items, map(_HEALTH_STATUSES, stats))))
    if any(health_statuses):
        add(
            c.VIRTUAL_NUMBERS_BY_HEALTH_STATUS,
            *_expanded(per_group, health_statuses, "health_status", counts),
        )
    costs = list(map(sorted, map(dict.items, map(_COSTS, stats))))
    if any(costs):
        add(c.MONTHLY_RENTAL_COST, *_expanded(per_group, costs, "currency", _GO_LINES.__getitem__))

    dated = [index for index, group in enumerate(stats) if group.oldest_check is not None]
    if not dated:
        return ()
    if len(dated) < len(stats):
        per_group = {label: [column[i] for i in dated] for label, column in per_group.items()}
    parts = _rows(c.HEALTH_CHECK_AGE_SECONDS, sub, per_group)
    interleaved = [repeat(part) if isinstance(part, str) else part for part in parts]
    prefixes = map("".join, zip(*interleaved, strict=False))
    times = [stats[i].oldest_check for i in dated]
    return tuple(zip(prefixes, times, strict=False))  # type: ignore[arg-type]


_V = TypeVar("_V")


def _expanded(
    per_group: dict[str, list[str]],
    items: list[list[tuple[str, _V]]],
    label: str,
    value_line: Callable[[_V], str],
) -> tuple[dict[str, list[str]], list[str]]:
    """Columns with a row per (group, item): the group's labels repeated, the item's key as
    `label`; and the items' values as line ends."""
    sizes = list(map(len, items))
    flat = list(chain.from_iterable(items))
    columns = {
        name: list(chain.from_iterable(map(repeat, column, sizes)))
        for name, column in per_group.items()
    }
    columns[label] = list(map(_ESCAPED.__getitem__, map(_FIRST, flat)))
    return columns, list(map(value_line, map(_SECOND, flat)))


# Per-number lines are joined this many at a time, and each chunk is deflated before the next
# is made: a family's text never exists whole (~20 MB at 100,000 numbers), and a chunk (at most
# ~120 kB) stays below glibc's mmap threshold (exporter.common.memory), so the next chunk reuses
# its memory instead of mapping fresh pages (measured: 60,000 page faults a 100,000-number scrape
# with 4,096 lines a chunk, deflated after the whole inventory was rendered).
LINES_PER_CHUNK = 512


def _render_numbers(columns: NumberColumns, sub: str) -> dict[str, SampleText]:
    """Per-number families, each line assembled from its columns by C-level joins, deflated as
    they are made.

    A chunk of lines is one `str.join` over the label columns interleaved with the text between
    them: no Python code runs per line.
    """
    # Each label column escaped once, for every family that carries it.
    escaped = {label: _escaped(getattr(columns, label)) for label in _NUMBER_LABELS}
    out = {}
    for name, template in NUMBER_LINES.items():
        value_field, kind = NUMBER_VALUES[name]
        chunks = _render_number_family(template, value_field, kind, columns, escaped, sub)
        text = SampleText.deflated(chunks)
        if text.size:
            out[name] = text
    return out


def _render_number_family(
    template: NumberLine,
    value_field: str | None,
    kind: ValueKind,
    columns: NumberColumns,
    escaped: dict[str, list[str]],
    sub: str,
) -> Iterator[bytes]:
    """One per-number family's lines, as chunks of bytes made one at a time; `escaped` holds
    the label columns."""
    labels = [escaped[label] for label in template.labels]
    values: list = []
    if value_field is not None:  # numbers without a value have no sample
        values, *labels = _without_none(getattr(columns, value_field), *labels)
    parts: list[str | list[str]] = []
    for text, column in zip(template.texts, labels, strict=False):
        parts += [text.replace(SUB_MARK, sub), column]
    end = template.texts[-1].replace(SUB_MARK, sub)
    if kind is ValueKind.ONE:
        return _line_chunks([*parts, end + "1.0\n"])
    if kind is ValueKind.TIME:  # nearly all distinct: formatted in bulk, a chunk at a time
        return _line_chunks([*parts, end], times=values)
    if kind is ValueKind.FLAG:
        texts = {value: f"{end}{text}" for value, text in _FLAGS.items()}
        return _line_chunks([*parts, list(map(texts.__getitem__, values))])
    return _line_chunks([*parts, end, list(map(_GO_LINES.__getitem__, values))])


def _escaped(column: list[str]) -> list[str]:
    """The label values as they go between quotes; the column itself when none needs escaping
    (one C-level scan), so unique values such as msisdns cost no lookup each."""
    if needs_escape("".join(column)):
        return list(map(_ESCAPED.__getitem__, column))
    return column


def _without_none(values: list, *others: list) -> tuple[list, ...]:
    """The values and other columns of the numbers whose value is not None."""
    if None not in values:
        return (values, *others)
    keep = list(map(is_not, values, repeat(None)))  # value is not None, per number
    return tuple(list(compress(column, keep)) for column in (values, *others))


def _lines(columns: list[str | list[str]]) -> list[bytes]:
    """The lines of `_line_chunks`, all made at once."""
    return list(_line_chunks(columns))


def _line_chunks(
    columns: list[str | list[str]], times: list[float] | None = None
) -> Iterator[bytes]:
    """Per number, its entry of each column in turn (a str column is the same on every line),
    then its time formatted, if given; joined LINES_PER_CHUNK lines to a chunk of bytes, made
    as they are asked for."""
    count = max(map(len, [column for column in columns if not isinstance(column, str)]))
    width = len(columns) + (times is not None)
    for start in range(0, count, LINES_PER_CHUNK):
        stop = min(start + LINES_PER_CHUNK, count)
        parts: list[str | None] = [None] * (width * (stop - start))
        # Interleave: parts[i::width] is the i-th column's slice, so parts reads line by line.
        for i, column in enumerate(columns):
            parts[i::width] = (
                [column] * (stop - start) if isinstance(column, str) else column[start:stop]
            )
        if times is not None:
            parts[width - 1 :: width] = _go_float_lines(times[start:stop])
        yield "".join(parts).encode()  # type: ignore[arg-type]


def _go_float_lines(values: list[float]) -> list[str]:
    """floatToGoString(value) + newline for each value, with shortcuts for Unix times.

    A float from 1e9 to 1e10 (times from 2001 to 2286) has a repr of ten integer digits and a
    fraction without trailing zeros, except for a whole number ("...0.0"); floatToGoString moves
    the point behind the first digit and appends e+09. Times of whole microseconds (the API
    writes milliseconds) take `_micro_time_lines`; any others, one repr() of the list, much
    cheaper than one per value. go_strings covers any value of at least 0, but costs ~1.5 times
    the repr() path on per-number times.
    """
    if values and min(values) >= 1e9 and (latest := max(values)) < 1e10:
        if latest < _MICRO_TIMES_BELOW:
            lines = _micro_time_lines(values)
            if lines is not None:
                return lines
        return [
            f"{text[0]}.{text[1:10]}{text[11:]}e+09\n"
            if text[-1] != "0"
            else f"{floatToGoString(float(text))}\n"
            for text in repr(values)[1:-1].split(", ")
        ]
    return [f"{floatToGoString(value)}\n" for value in values]


# Below 2**32 (the year 2106) two multiples of a microsecond are always more than one float apart,
# and `round(time * 1e6)` is always the nearest whole microsecond: the time is within 0.24 us of
# it and the product rounds by at most 0.25 more. From 2**32 the two add up past half a
# microsecond, and a time could be refused (or, from 2**33, printed wrong).
_MICRO_TIMES_BELOW = float(2**32)


def _micro_time_lines(times: list[float]) -> list[str] | None:
    """_go_float_lines of times from 1e9 to 2**32 s, if each is a whole number of microseconds
    (the float nearest to one); None if one is not.

    Such a time's repr is its microseconds' digits with the point after the tenth and the
    trailing zeros cut (no shorter decimal is as near: below 2**32 the multiples of a
    microsecond lie more than a float apart), so formatting an int (str) replaces the shortest
    float-to-decimal search of repr (dtoa), which costs several times as much.
    """
    micros = list(map(round, map(mul, times, repeat(1e6))))
    if list(map(truediv, micros, repeat(1e6))) != times:
        return None
    return [
        f"{digits[0]}.{fraction}e+09\n"
        if (fraction := digits[1:].rstrip("0"))
        else f"{digits[0]}e+09\n"
        for digits in map(str, micros)
    ]


# The families rendered per scrape; the first four have one line per subaccount.
_PER_SCRAPE = (
    c.UP,
    c.SCRAPE_DURATION_SECONDS,
    c.INVALID_RECORDS,
    c.LAST_SUCCESS_TIMESTAMP_SECONDS,
    c.HEALTH_CHECK_AGE_SECONDS,
)


def _own_texts(family: Family) -> tuple[str, str]:
    """The text before and after the subaccount in the line prefix of a per-subaccount series."""
    template, values_of = PREFIXES[family.name]
    before, after = (template % values_of({SUBACCOUNT: SUB_MARK})).split(SUB_MARK)
    return before, after


def go_strings(values: list[float]) -> list[str]:
    """floatToGoString of each value, for many values at once.

    For finite values of at least 0, floatToGoString is the repr, except that from 1e6 up
    (seven digits before the point and no exponent in the repr) Go writes an exponent: the
    digits around the point run together, trailing zeros and the point dropped. One repr() of
    the list and a comprehension cost much less than a call per value.
    """
    texts = repr(values)[1:-1]
    # "inf" and "nan" hold an n, and no finite value's repr does.
    if not values or "n" in texts or min(values) < 0.0:
        return list(map(floatToGoString, values))
    return [
        text
        if (dot := text.find(".")) < 7
        else f"{(text[0] + '.' + text[1:dot] + text[dot + 1 :]).rstrip('0.')}e+{dot - 1:02d}"
        for text in texts.split(", ")
    ]


def _age_lines(checks: list[tuple[str, float]], now: float) -> str:
    """The lines of eightbyeight_health_check_age_seconds: each prefix, the age of its check."""
    ages = list(map(max, repeat(0.0), map(now.__sub__, map(_SECOND, checks))))
    texts = go_strings(ages)
    parts = [""] * (3 * len(ages))
    parts[0::3] = map(_FIRST, checks)
    parts[1::3] = texts
    parts[2::3] = repeat("\n", len(ages))
    return "".join(parts)


def _own_lines(texts: tuple[str, str], subs: list[str], values: list[float]) -> list[str]:
    """A per-subaccount family's lines: its text around each subaccount, then the value."""
    before, after = texts
    return [
        f"{before}{sub}{after}{text}\n" for sub, text in zip(subs, go_strings(values), strict=True)
    ]


def render_scrapes(
    scrapes: Sequence[SubaccountScrape],
    now: float,
    *,
    head: bytes = b"",
    openmetrics: bool = False,
) -> list[TextPart]:
    """The exposition text for the given scrape outcomes, after `head`, as parts in order.

    The clock-dependent series use `now`; everything else comes from the rendered inventories.
    `exporter.metrics.encoding` turns the parts into a plain or gzip body. With `openmetrics`
    the text is OpenMetrics 1.0.0: the same sample lines (every family is a gauge, whose lines
    the two formats write alike), so the inventories' deflated pieces serve both, and `# EOF`.
    """
    parts_of: dict[str, list[TextPart]] = {}
    up: list[str] = []
    invalid: list[str] = []
    subs: list[str] = []
    durations: list[float] = []
    succeeded: list[str] = []  # the subaccounts with a last success, and its time
    success_times: list[float] = []
    checks: list[tuple[str, float]] = []  # every group's age prefix and oldest check
    up_text, duration_text, invalid_text, success_text = map(_own_texts, _PER_SCRAPE[:4])
    for scrape in scrapes:
        sub = escape_label_value(scrape.subaccount)
        subs.append(sub)
        durations.append(scrape.duration)
        inventory = scrape.inventory
        up.append(f"{up_text[0]}{sub}{up_text[1]}{'1.0' if scrape.up else '0.0'}\n")
        count = inventory.invalid_records if (inventory and scrape.up) else 0
        invalid.append(f"{invalid_text[0]}{sub}{invalid_text[1]}{_COUNTS[count]}\n")
        if scrape.last_success is not None:
            succeeded.append(sub)
            success_times.append(scrape.last_success)
        if inventory is None:
            continue
        checks += inventory.check_ages
        for name, text in inventory.samples.items():
            parts_of.setdefault(name, []).append(text)
    # The lines of the families rendered per scrape, one list per family, joined below.
    lines = (
        up,
        _own_lines(duration_text, subs, durations),
        invalid,
        _own_lines(success_text, succeeded, success_times),
        [_age_lines(checks, now)] if checks else [],
    )
    for family, family_lines in zip(_PER_SCRAPE, lines, strict=True):
        if family_lines:
            parts_of.setdefault(family.name, []).insert(0, "".join(family_lines).encode())

    headers = _OPENMETRICS_HEADERS if openmetrics else _HEADERS
    parts: list[TextPart] = [head] if head else []
    for family in FAMILIES:
        family_parts = parts_of.get(family.name)
        if family_parts:
            parts.append(headers[family.name])
            parts.extend(family_parts)
    if openmetrics:
        parts.append(OPENMETRICS_EOF)
    return parts
