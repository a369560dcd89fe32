"""Facts the documentation states that the code decides: the flags are described in one place,
the generated docs/flags.md, and docs/configuration.md points there instead of keeping a copy."""

from __future__ import annotations

import re

from exporter.config.flags import build_parser
from exporter.metrics.catalogue import REQUEST_OUTCOMES
from tests.support.processes import REPO

CONFIGURATION = REPO / "docs" / "configuration.md"
FLAG_ROW = re.compile(r"^\| `--[\w.-]+", re.M)


def flag_rows(text: str) -> list[str]:
    """Table rows that start with a flag: a second flags table."""
    return FLAG_ROW.findall(text)


def parser_flags() -> set[str]:
    return {
        option
        for action in build_parser()._actions
        for option in action.option_strings
        if option.startswith("--") and option != "--help"
    }


def test_the_configuration_page_points_at_the_generated_flags_page_and_keeps_no_copy():
    text = CONFIGURATION.read_text(encoding="utf-8")
    assert "(flags.md)" in text
    assert flag_rows(text) == []


def test_a_copied_flags_table_is_noticed():
    assert flag_rows("| flag | default |\n| `--cache.ttl` | `0s` | ... |\n") == ["| `--cache.ttl"]


def test_the_flags_the_configuration_page_names_exist():
    """Of `run`'s flags: the paragraph on the health check names its own `--timeout`."""
    text = CONFIGURATION.read_text(encoding="utf-8")
    section = text[text.index("\n## Flags\n") : text.index("\n## Environment\n")]
    named = set(re.findall(r"`(--[\w.-]+)", section)) - {"--timeout"}
    assert named
    assert named <= parser_flags(), named - parser_flags()


WEBHOOKS = REPO / "docs" / "webhooks.md"
OUTCOME_CELL = re.compile(r"\| `(\w+)`(?: / `(\w+)`)? \|$", re.M)


def outcomes_in_answer_table(text: str) -> set[str]:
    """The `outcome` values the "How callbacks are answered" table names, in its last column."""
    section = text.split("## How callbacks are answered", 1)[1].split("\n## ", 1)[0]
    return {name for pair in OUTCOME_CELL.findall(section) for name in pair if name}


def test_the_callback_answer_table_names_every_outcome_the_receiver_counts():
    assert outcomes_in_answer_table(WEBHOOKS.read_text(encoding="utf-8")) == set(REQUEST_OUTCOMES)


def test_a_refusal_said_to_count_nothing_is_noticed():
    table = "## How callbacks are answered\n| x | 401 | nothing |\n| y | 404 / 405 | `a` / `b` |\n"
    assert outcomes_in_answer_table(table) == {"a", "b"}
