"""The documentation holds together: every relative link and `#anchor` in the README, the
CHANGELOG and docs/*.md resolves (anchors as GitHub slugs its headings), the README stays a
front door of at most 300 lines, and its test command is the one `.ci/run` runs."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
PAGES = [README, REPO / "CHANGELOG.md", *sorted((REPO / "docs").glob("*.md"))]
README_MAX_LINES = 300

FENCE = re.compile(r"^(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
# [text](target) and ![alt](target); the target stops at whitespace or the closing bracket.
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_DEFINITION = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
HTML_ANCHOR = re.compile(r"""<a\s+(?:name|id)=["']([^"']+)["']""")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text without markup, lower-cased, with every character
    but letters, digits, `-`, `_` and spaces dropped and spaces turned into `-`."""
    text = CODE_SPAN.sub(lambda m: m.group(2), heading)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link keeps its text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    kept = [char for char in text.lower() if char in " -" or _kept_category(char)]
    return "".join(kept).replace(" ", "-")


def _kept_category(char: str) -> bool:
    """Letters, marks, numbers and connector punctuation (`_`) stay in a slug."""
    category = unicodedata.category(char)
    return category[0] in "LMN" or category == "Pc"


def outside_code(text: str) -> Iterator[str]:
    """The lines of a Markdown page that are not inside a fenced code block."""
    fenced = None
    for line in text.splitlines():
        marker = FENCE.match(line.lstrip())
        if marker:
            if fenced is None:
                fenced = marker.group(1)
            elif marker.group(1) == fenced:
                fenced = None
            continue
        if fenced is None:
            yield line


def anchors(text: str) -> set[str]:
    """Every anchor a page offers: its headings' slugs, numbered as GitHub numbers repeats
    (`name`, `name-1`, ...), and explicit `<a name=...>` / `<a id=...>`."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for line in outside_code(text):
        found.update(HTML_ANCHOR.findall(line))
        heading = HEADING.match(line)
        if not heading:
            continue
        base = slug(heading.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(text: str) -> Iterator[str]:
    """Every link target of a page, outside code blocks and code spans."""
    for line in outside_code(text):
        definition = REFERENCE_DEFINITION.match(line)
        if definition:
            yield definition.group(1)
            continue
        yield from INLINE_LINK.findall(CODE_SPAN.sub("", line))


def broken_link(page: Path, target: str) -> str | None:
    """Why `target`, linked from `page`, does not resolve; None when it does or is external."""
    parts = urlsplit(target)
    if parts.scheme or target.startswith("//"):
        return None  # http(s), mailto: not this test's business
    path, fragment = unquote(parts.path), unquote(parts.fragment)
    destination = (page.parent / path).resolve() if path else page
    if REPO not in destination.parents and destination != REPO:
        return f"{target}: points outside the repository"
    if not destination.exists():
        return f"{target}: {path} does not exist"
    if fragment:
        if destination.is_dir() or destination.suffix != ".md":
            return f"{target}: an anchor into a file that is not Markdown"
        if fragment not in anchors(destination.read_text(encoding="utf-8")):
            return f"{target}: {destination.name} has no heading for #{fragment}"
    return None


def page_id(page: Path) -> str:
    return str(page.relative_to(REPO))


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_relative_link_and_anchor_resolves(page):
    problems = [
        problem
        for target in links(page.read_text(encoding="utf-8"))
        if (problem := broken_link(page, target))
    ]
    assert not problems, f"{page_id(page)}: broken links:\n" + "\n".join(problems)


def test_the_readme_is_a_front_door():
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines, at most {README_MAX_LINES}"


def test_every_docs_page_is_linked_from_the_readme():
    targets = set(links(README.read_text(encoding="utf-8")))
    for page in PAGES[2:]:
        assert f"docs/{page.name}" in targets, f"README.md has no link to docs/{page.name}"


def test_the_readme_test_command_is_the_one_ci_runs():
    readme = README.read_text(encoding="utf-8")
    quick_start = readme[readme.index("## Quick start") :]
    ci_command = (REPO / ".ci" / "run").read_text().strip().splitlines()[-1].strip()
    ci_command = re.sub(r"pip install -q ", "pip install ", ci_command)
    assert ci_command in quick_start, f"the Quick start does not show `{ci_command}`"


# --- the checker itself, on made-up pages -----------------------------------------------------


@pytest.mark.parametrize(
    ("heading", "expected"),
    [
        ("Quick start", "quick-start"),
        ("TLS and basic auth (`--web.config.file`)", "tls-and-basic-auth---webconfigfile"),
        (
            "When to switch to `/probe` and service discovery",
            "when-to-switch-to-probe-and-service-discovery",
        ),
        ("1. Run the receiver", "1-run-the-receiver"),
        (
            "The stack: exporter, simulator, Prometheus, Alertmanager, Grafana",
            "the-stack-exporter-simulator-prometheus-alertmanager-grafana",
        ),
        ("Sharding with `hashmod`", "sharding-with-hashmod"),
        ("EightByEightApiDown", "eightbyeightapidown"),
        ("What `/probe` accepts", "what-probe-accepts"),
        ("**Bold** and [a link](x.md)", "bold-and-a-link"),
        ("snake_case_name", "snake_case_name"),
        ("Größe & Maß", "größe--maß"),
    ],
)
def test_slug_is_githubs(heading, expected):
    assert slug(heading) == expected


def test_repeated_headings_are_numbered():
    assert anchors("# A\n## Notes\n## Notes\n## Notes\n") == {"a", "notes", "notes-1", "notes-2"}


def test_headings_and_links_inside_code_blocks_are_not_counted():
    text = "# Real\n```sh\n# not a heading\n[x](missing.md)\n```\n"
    assert anchors(text) == {"real"}
    assert list(links(text)) == []


def test_links_inside_code_spans_are_not_counted():
    assert list(links("run `[x](missing.md)` then [y](here.md)")) == ["here.md"]


def test_the_checker_finds_a_missing_file_and_a_missing_anchor(tmp_path, monkeypatch):
    monkeypatch.setattr(f"{__name__}.REPO", tmp_path)
    (tmp_path / "docs").mkdir()
    target = tmp_path / "docs" / "target.md"
    target.write_text("# Target\n## A section\n")
    page = tmp_path / "README.md"
    page.write_text("x\n")
    assert broken_link(page, "docs/target.md") is None
    assert broken_link(page, "docs/target.md#a-section") is None
    assert broken_link(page, "https://example.com/nowhere#x") is None
    assert "does not exist" in broken_link(page, "docs/missing.md")
    assert "no heading for #b-section" in broken_link(page, "docs/target.md#b-section")
    assert "no heading for #nowhere" in broken_link(page, "#nowhere")
    assert "outside the repository" in broken_link(target, "../../outside.md")


def test_the_checker_fails_a_page_with_a_broken_link(tmp_path, monkeypatch):
    monkeypatch.setattr(f"{__name__}.REPO", tmp_path)
    page = tmp_path / "page.md"
    page.write_text("# Page\nSee [there](#page) and [gone](other.md#top).\n")
    problems = [p for t in links(page.read_text()) if (p := broken_link(page, t))]
    assert problems == ["other.md#top: other.md does not exist"]
