"""Every alert's words against its expression: the numbers cannot drift apart.

For each alert of the generated rule file, the thresholds (numbers compared against, other
than the structural 0 and 1) and the windows (`for:`, range selectors, offsets, and those of
the recording rules it reads) are read from the expression. Then:

- the description states every threshold and every window of the expression (the hold time
  may be left to the runbook), and neither it nor the summary states a number the expression
  does not have;
- the alert's runbook section states every threshold, window and hold time; its
  **Threshold.** paragraph and its row of the runbook's overview table state no other, and the
  row's "Holds for" is the alert's `for:`;
- the windows that only bridge failed reads (`last_over_time(...[1h])` beside
  `eightbyeight_up == 1`) are stated in the runbook's section on gaps instead.

The summaries and descriptions are built from the mixin's _config (jsonnet string formatting),
so a changed threshold changes them too; the runbook is written by hand, and this test is what
fails when a threshold or hold time changes and the runbook does not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from tests.stack.test_rules import RUNBOOK, alert_rules, recording_rules

SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
WORD_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 604800}
# Comparisons with 0 and 1 are structure (a gauge that is 0, a flag that is 1, "any"), not a
# threshold an operator sets.
STRUCTURAL = frozenset({0.0, 1.0})

_SELECTOR = re.compile(r"\{[^{}]*\}")
_COMPARISON = re.compile(
    r"(?:==|!=|>=|<=|>|<)\s*(?:bool\s+)?(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)(?![\w.(\[])"
)
_PROM_DURATION = re.compile(r"(\d+)(ms|[smhdwy])")
_RANGE = re.compile(r"\[([0-9smhdwy]+)(?::[0-9smhdwy]*)?\]")
_OFFSET = re.compile(r"\boffset\s+([0-9smhdwy]+)")
_RECORDED = re.compile(r"\b[a-z_]+:[a-z0-9_]+:[a-z0-9_]+\b")
_BRIDGE_MARK = re.compile(r"eightbyeight_up\s*==\s*1")

_TEMPLATE = re.compile(r"\{\{.*?\}\}", re.S)
_UNIT = r"(second|minute|hour|day|week)s?\b"
_ANY_UNIT = r"(?:second|minute|hour|day|week)s?\b"
_WORD_DURATION = re.compile(r"(\d+(?:\.\d+)?)[\s-]+" + _UNIT)
_ONE_DURATION = re.compile(r"\b(?:an|one|last)\s+" + _UNIT)
_SHORT_DURATION = re.compile(r"(?<![\w.])(\d+)([smhdw])\b")
_PERCENT = re.compile(r"(\d+(?:\.\d+)?)\s?%")
_NUMBER = re.compile(r"(?<![\w.%/-])(\d+(?:\.\d+)?)(?![\w.%/]|\s?%|[\s-]+" + _ANY_UNIT + ")")
_COMPARING = r"\b(?:below|above|under|over|more than|less than|fewer than|at least|at most)\s+"
_COMPARATIVE = re.compile(
    _COMPARING + r"(\d+(?:\.\d+)?)(?!\d|\.\d|[\s-]*(?:%|[smhdw]\b|" + _ANY_UNIT + "))", re.I
)
_COMPARATIVE_PERCENT = re.compile(_COMPARING + r"(\d+(?:\.\d+)?)\s?%", re.I)


def prometheus_seconds(duration: str) -> float:
    parts = _PROM_DURATION.findall(duration)
    assert "".join(n + u for n, u in parts) == duration, f"not a duration: {duration}"
    return sum(int(number) * SECONDS[unit] for number, unit in parts)


# --- what the expression says -------------------------------------------------------------------


@dataclass(frozen=True)
class ExpressionFacts:
    thresholds: frozenset[float]
    windows: frozenset[float]  # seconds: ranges and offsets that decide the alert
    bridges: frozenset[float]  # seconds: ranges that only carry values over failed reads
    hold: float  # seconds: `for:`

    def durations(self) -> frozenset[float]:
        """Every duration the texts may state: windows, the hold, seconds thresholds, and a
        window plus the hold (how long steady trouble takes to fire)."""
        sums = {window + self.hold for window in self.windows}
        return self.windows | {self.hold} | self.thresholds | sums


def closing_paren(text: str, opening: int) -> int:
    depth = 0
    for index in range(opening, len(text)):
        depth += {"(": 1, ")": -1}.get(text[index], 0)
        if depth == 0:
            return index
    raise AssertionError(f"unbalanced parentheses in {text!r}")


def bridge_windows(expr: str) -> list[str]:
    """The range of each last_over_time() whose result only stands in for failed reads."""
    if not _BRIDGE_MARK.search(expr):
        return []
    found = []
    for match in re.finditer(r"\blast_over_time\s*\(", expr):
        inner = expr[match.end() - 1 : closing_paren(expr, match.end() - 1) + 1]
        ranges = _RANGE.findall(inner)
        if ranges:
            found.append(ranges[-1])
    return found


def expression_facts(expr: str, hold: str, recorded: dict[str, str]) -> ExpressionFacts:
    bare = _SELECTOR.sub("", expr)
    thresholds = {float(n) for n in _COMPARISON.findall(bare)} - STRUCTURAL
    ranges = _RANGE.findall(bare) + _OFFSET.findall(bare)
    for name in _RECORDED.findall(bare):
        inner = _SELECTOR.sub("", recorded[name])
        ranges += _RANGE.findall(inner) + _OFFSET.findall(inner)
    bridges = bridge_windows(bare)
    for bridge in bridges:
        ranges.remove(bridge)
    return ExpressionFacts(
        thresholds=frozenset(thresholds),
        windows=frozenset(prometheus_seconds(r) for r in ranges),
        bridges=frozenset(prometheus_seconds(r) for r in bridges),
        hold=prometheus_seconds(hold),
    )


# --- what a text says ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TextFacts:
    numbers: frozenset[float]  # plain numbers, without a unit
    percents: frozenset[float]  # as ratios: 10% is 0.1
    durations: frozenset[float]  # seconds
    compared: frozenset[float]  # plain numbers after "below", "more than", "at least"...
    compared_percents: frozenset[float]

    def states(self, value: float) -> bool:
        """The value appears as a number, a percentage or a duration in seconds."""
        return any(
            close(value, stated) for stated in (*self.numbers, *self.percents, *self.durations)
        )


def close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


def text_facts(text: str) -> TextFacts:
    text = _TEMPLATE.sub(" ", text).replace("8x8", "eight-by-eight")
    durations = {float(n) * WORD_SECONDS[unit] for n, unit in _WORD_DURATION.findall(text)}
    durations |= {float(WORD_SECONDS[unit]) for unit in _ONE_DURATION.findall(text)}
    durations |= {float(n) * SECONDS[unit] for n, unit in _SHORT_DURATION.findall(text)}
    compared = _COMPARATIVE.findall(text)
    return TextFacts(
        numbers=frozenset(float(n) for n in _NUMBER.findall(text)),
        percents=frozenset(float(n) / 100 for n in _PERCENT.findall(text)),
        durations=frozenset(durations),
        compared=frozenset(float(n) for n in compared),
        compared_percents=frozenset(float(n) / 100 for n in _COMPARATIVE_PERCENT.findall(text)),
    )


def spoken(seconds: float) -> str:
    for word, size in sorted(WORD_SECONDS.items(), key=lambda item: -item[1]):
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return f"{count} {word}{'s' if count != 1 else ''}"
    return f"{seconds:g} seconds"


def missing(expected: ExpressionFacts, text: TextFacts, *, hold: bool, bridges: bool) -> list[str]:
    """What the expression has that the text does not state."""
    problems = [f"threshold {v:g}" for v in sorted(expected.thresholds) if not text.states(v)]
    problems += [
        f"window {spoken(w)}"
        for w in sorted(expected.windows)
        if not any(close(w, d) for d in text.durations)
    ]
    if hold and not any(close(expected.hold, d) for d in text.durations):
        problems.append(f"for: {spoken(expected.hold)}")
    if bridges:
        problems += [
            f"bridging window {spoken(w)}"
            for w in sorted(expected.bridges)
            if not any(close(w, d) for d in text.durations)
        ]
    return problems


def foreign(expected: ExpressionFacts, text: TextFacts, *, all_percents: bool) -> list[str]:
    """Numbers the text states that the expression does not have."""
    durations = expected.durations()
    problems = [f"duration {spoken(d)}" for d in sorted(text.durations) if not in_set(d, durations)]
    percents = text.percents if all_percents else text.compared_percents
    problems += [f"{p * 100:g}%" for p in sorted(percents) if not in_set(p, expected.thresholds)]
    problems += [
        f"number {n:g}" for n in sorted(text.compared) if not in_set(n, expected.thresholds)
    ]
    return problems


def in_set(value: float, values: frozenset[float]) -> bool:
    return any(close(value, v) for v in values)


# --- the runbook --------------------------------------------------------------------------------


def runbook_text() -> str:
    return RUNBOOK.read_text(encoding="utf-8")


def runbook_section(text: str, heading: str) -> str:
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, f"docs/runbook.md has no section '## {heading}'"
    return match.group(1)


def threshold_paragraph(section: str) -> str:
    match = re.search(r"\*\*Threshold\.\*\*(.*?)(?:\n\n|\Z)", section, re.S)
    assert match, "the section has no **Threshold.** paragraph"
    return match.group(1)


def overview_row(text: str, name: str) -> tuple[str, str]:
    """The "Fires when" and "Holds for" cells of the alert's row in the overview table."""
    rows = [line for line in text.splitlines() if line.startswith(f"| {name} |")]
    assert len(rows) == 1, f"{name}: {len(rows)} rows in the runbook's overview table"
    cells = [cell.strip() for cell in rows[0].strip("|").split("|")]
    return cells[-2], cells[-1]


# --- the alerts ---------------------------------------------------------------------------------


def recorded_exprs() -> dict[str, str]:
    return {rule["record"]: rule["expr"] for rule in recording_rules()}


def alerts_by_name() -> dict[str, list[dict]]:
    """The alerting rules by name: the tiers of one alert share a runbook section."""
    found: dict[str, list[dict]] = {}
    for rule in alert_rules():
        found.setdefault(rule["alert"], []).append(rule)
    return found


def merged_facts(rules: list[dict]) -> ExpressionFacts:
    facts = [expression_facts(r["expr"], r["for"], recorded_exprs()) for r in rules]
    holds = {f.hold for f in facts}
    assert len(holds) == 1, "the tiers of one alert hold for different times"
    return ExpressionFacts(
        thresholds=frozenset().union(*(f.thresholds for f in facts)),
        windows=frozenset().union(*(f.windows for f in facts)),
        bridges=frozenset().union(*(f.bridges for f in facts)),
        hold=holds.pop(),
    )


ALERTS = alerts_by_name()
RULES = [rule for rules in ALERTS.values() for rule in rules]


def rule_id(rule: dict) -> str:
    return f"{rule['alert']}-{rule['labels']['severity']}"


@pytest.mark.parametrize("rule", RULES, ids=rule_id)
def test_description_states_the_thresholds_and_windows(rule: dict):
    facts = expression_facts(rule["expr"], rule["for"], recorded_exprs())
    stated = text_facts(rule["annotations"]["description"])
    assert missing(facts, stated, hold=False, bridges=False) == []


@pytest.mark.parametrize("rule", RULES, ids=rule_id)
@pytest.mark.parametrize("annotation", ["summary", "description"])
def test_annotation_states_no_other_number(rule: dict, annotation: str):
    facts = expression_facts(rule["expr"], rule["for"], recorded_exprs())
    stated = text_facts(rule["annotations"][annotation])
    assert foreign(facts, stated, all_percents=True) == []


@pytest.mark.parametrize("name", sorted(ALERTS))
def test_runbook_section_states_the_thresholds_windows_and_hold(name: str):
    facts = merged_facts(ALERTS[name])
    section = text_facts(runbook_section(runbook_text(), name))
    assert missing(facts, section, hold=True, bridges=False) == []


@pytest.mark.parametrize("name", sorted(ALERTS))
def test_runbook_threshold_paragraph_states_no_other_number(name: str):
    facts = merged_facts(ALERTS[name])
    paragraph = threshold_paragraph(runbook_section(runbook_text(), name))
    assert foreign(facts, text_facts(paragraph), all_percents=False) == []


@pytest.mark.parametrize("name", sorted(ALERTS))
def test_runbook_overview_row_matches_the_rule(name: str):
    facts = merged_facts(ALERTS[name])
    fires_when, holds_for = overview_row(runbook_text(), name)
    assert prometheus_seconds(holds_for) == facts.hold, f"Holds for {holds_for}"
    stated = text_facts(fires_when)
    assert foreign(facts, stated, all_percents=True) == []
    assert [p for p in missing(facts, stated, hold=False, bridges=False) if "threshold" in p] == []


def test_bridging_windows_are_stated_in_the_section_on_gaps():
    bridges = frozenset().union(*(merged_facts(rules).bridges for rules in ALERTS.values()))
    assert bridges, "no alert bridges failed reads: the carry-over clause is gone"
    gaps = text_facts(runbook_section(runbook_text(), "How the alerts treat gaps in the data"))
    unstated = [spoken(w) for w in sorted(bridges) if not in_set(w, gaps.durations)]
    assert unstated == []


# --- the reader itself --------------------------------------------------------------------------


def test_reader_finds_thresholds_windows_and_bridges():
    expr = """
      (x{job=~"a|b", le="0.5"} > 0.25)
      or
      (last_over_time(x{job="a"}[1h]) > 0.25 unless on (job) eightbyeight_up{job="a"} == 1)
      and on (job) sum(increase(y[15m])) >= 10 and z:w:increase5m > 0
    """
    facts = expression_facts(expr, "10m", {"z:w:increase5m": "increase(w[5m]) or w offset 5m"})
    assert facts.thresholds == {0.25, 10.0}
    assert facts.windows == {900.0, 300.0}
    assert facts.bridges == {3600.0}
    assert facts.hold == 600.0


def test_reader_finds_numbers_in_words():
    facts = text_facts(
        "Below 3.6 over the last 15 minutes in each 5-minute window, more than 20% of "
        '{{ $value | printf "%.2f" }} calls (at least 10 legs), for an hour; 401/403 in 6h, '
        "8x8 says 2 days."
    )
    assert facts.compared == {3.6, 10.0}
    assert facts.compared_percents == {0.2}
    assert facts.durations == {900.0, 300.0, 3600.0, 21600.0, 172800.0}
    assert facts.numbers == {3.6, 10.0}


def test_a_stale_number_in_a_text_is_caught():
    facts = expression_facts("x > 0.15 and rate(y[10m]) > 0", "15m", {})
    stale = text_facts("More than 10% over the last 15 minutes, held 15 minutes.")
    assert missing(facts, stale, hold=True, bridges=False) == [
        "threshold 0.15",
        "window 10 minutes",
    ]
    assert foreign(facts, stale, all_percents=True) == ["10%"]
    fresh = text_facts("More than 15% over the last 10 minutes, held 15 minutes.")
    assert missing(facts, fresh, hold=True, bridges=False) == []
    assert foreign(facts, fresh, all_percents=True) == []
