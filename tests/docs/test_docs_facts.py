"""Facts the documentation states that the code decides: the flags table of
docs/configuration.md lists exactly the exporter's flags."""

from __future__ import annotations

import re

from exporter.config.flags import build_parser
from tests.support.processes import REPO

CONFIGURATION = REPO / "docs" / "configuration.md"


def documented_flags() -> set[str]:
    """The flags named in the first column of the table under `## Flags`."""
    text = CONFIGURATION.read_text(encoding="utf-8")
    section = text[text.index("\n## Flags\n") : text.index("\n## Environment\n")]
    flags: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `--"):
            flags.update(re.findall(r"`(--[\w.-]+)", line.split(" | ")[0]))
    return flags


def parser_flags() -> set[str]:
    return {
        option
        for action in build_parser()._actions
        for option in action.option_strings
        if option.startswith("--") and option != "--help"
    }


def test_the_flags_table_lists_every_flag_and_no_other():
    documented, defined = documented_flags(), parser_flags()
    assert not defined - documented, f"flags missing from {CONFIGURATION.name}"
    assert not documented - defined, f"{CONFIGURATION.name} lists flags the exporter lacks"


def test_a_flag_missing_from_the_table_is_noticed(tmp_path, monkeypatch):
    text = CONFIGURATION.read_text(encoding="utf-8")
    row = next(line for line in text.splitlines() if line.startswith("| `--cache.ttl`"))
    page = tmp_path / "configuration.md"
    page.write_text(text.replace(row + "\n", ""))
    monkeypatch.setattr(f"{__name__}.CONFIGURATION", page)
    assert parser_flags() - documented_flags() == {"--cache.ttl"}
