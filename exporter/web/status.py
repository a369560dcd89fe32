"""The status page on `/` and each scrape's log on `/logs?id=`: server-rendered HTML.

What an operator opening the exporter wants to know: is every subaccount read, since when not,
how many numbers are unhealthy or expiring, why the last failure happened; the last scrapes,
each with its log; the webhook receiver's last callback per subaccount. No script: the page is
plain HTML and a little CSS. Every value from outside (subaccount IDs, failure details, log
lines) is escaped, and details and log lines are redacted of every configured key and webhook
auth value before they get here.
"""

from __future__ import annotations

import html
import time
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote

from exporter import __version__
from exporter.common.journal import ScrapeEntry
from exporter.common.redact import redact_and_cut
from exporter.polling.scraper import ScraperStatus

TITLE = "8x8 Number Health exporter"
_DETAIL_CHARS = 200

_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em 2em;color:#1d2330;background:#f7f8fa}
h1{font-size:1.5em;margin:0 0 .2em}h2{font-size:1.15em;margin:1.6em 0 .5em}
.meta{color:#5b6473;margin:0 0 1em}.meta a{margin-right:1em}
table{border-collapse:collapse;background:#fff;box-shadow:0 1px 2px #0002;font-size:.92em}
th,td{padding:.4em .8em;border-bottom:1px solid #e3e6eb;text-align:left;vertical-align:top}
th{background:#eef1f5;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}
.state{font-weight:600;padding:.1em .5em;border-radius:.3em;white-space:nowrap}
.up{background:#d9f2e0;color:#11632b}.down{background:#fbdada;color:#8a1313}
.stale{background:#fdf0c8;color:#7a5400}.unknown{background:#e6e8ec;color:#4a5160}
.banner{background:#2f5bd3;color:#fff;padding:.6em 1em;border-radius:.3em;margin:0 0 1em}
.muted{color:#7a8292}pre{background:#fff;padding:1em;box-shadow:0 1px 2px #0002;
white-space:pre-wrap;word-break:break-all;font-size:.88em}
"""


@dataclass(frozen=True, slots=True)
class SubaccountRow:
    """One subaccount on the page: its ID, whether it is configured or probed, its status."""

    subaccount: str
    configured: bool
    status: ScraperStatus


@dataclass(frozen=True, slots=True)
class StatusPage:
    """Everything the status page shows; `callbacks` is None when the receiver is off."""

    telemetry_path: str
    subaccounts: Sequence[SubaccountRow]
    scrapes: Sequence[ScrapeEntry]
    callbacks: dict[str, tuple[str, float]] | None
    demo: bool
    secrets: Sequence[str]
    extra_html: str = ""  # trusted HTML from the caller (the /probe help)


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def when(unix_time: float | None, now: float) -> str:
    """`2026-12-02 02:14:56 UTC (12 s ago)`, or an em dash for never."""
    if unix_time is None:
        return '<span class="muted">never</span>'
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(unix_time))
    return f'{stamp} <span class="muted">({_ago(now - unix_time)})</span>'


def _ago(seconds: float) -> str:
    if seconds < 0:
        return "in the future"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"


def _state(status: ScraperStatus) -> str:
    if status.up is None:
        return '<span class="state unknown">not scraped yet</span>'
    if status.up:
        return '<span class="state up">up</span>'
    if status.stale:
        return '<span class="state stale">stale</span>'
    return '<span class="state down">down</span>'


def _count(value: int | None) -> str:
    return '<span class="muted">-</span>' if value is None else f"{value:,}"


def _subaccount_table(page: StatusPage, now: float) -> str:
    if not page.subaccounts:
        return '<p class="muted">No subaccount has been scraped yet.</p>'
    callbacks = page.callbacks
    head = [
        "Subaccount",
        "State",
        "Last success",
        "Numbers",
        "Unhealthy",
        "Expiring",
        "Last failure",
        "Failed at",
    ]
    if callbacks is not None:
        head.append("Last callback")
    rows = []
    for row in page.subaccounts:
        status = row.status
        sub = _e(row.subaccount) + (
            "" if row.configured else ' <span class="muted">(probed)</span>'
        )
        if status.failure_reason is None:
            failure = '<span class="muted">none</span>'
        else:
            detail = redact_and_cut(status.failure_detail or "", page.secrets, _DETAIL_CHARS)
            failure = f"<b>{_e(status.failure_reason)}</b>: {_e(detail)}"
        cells = [
            sub,
            _state(status),
            when(status.last_success, now),
            f'<td class="num">{_count(status.numbers)}',
            f'<td class="num">{_count(status.unhealthy)}',
            f'<td class="num">{_count(status.expiring)}',
            failure,
            when(status.failure_time, now)
            if status.failure_time
            else '<span class="muted">-</span>',
        ]
        if callbacks is not None:
            last = callbacks.get(row.subaccount)
            cells.append(
                f"{_e(last[0])} at {when(last[1], now)}"
                if last
                else '<span class="muted">none yet</span>'
            )
        rows.append(
            f'<tr data-subaccount="{_e(row.subaccount)}">'
            + "".join(c if c.startswith("<td") else f"<td>{c}" for c in cells)
            + "</tr>"
        )
    header = "".join(f"<th>{name}</th>" for name in head)
    return f'<table id="subaccounts"><tr>{header}</tr>{"".join(rows)}</table>'


def _scrape_table(page: StatusPage, now: float) -> str:
    if not page.scrapes:
        return '<p class="muted">No scrape yet.</p>'
    rows = []
    for entry in page.scrapes:
        took = "running" if entry.seconds is None else f"{entry.seconds * 1000:,.0f} ms"
        rows.append(
            f'<tr data-scrape="{entry.id}"><td><a href="/logs?id={entry.id}">#{entry.id}</a></td>'
            f"<td>{when(entry.started, now)}</td><td><code>{_e(entry.request)}</code></td>"
            f'<td>{_e(entry.outcome) or "-"}</td><td class="num">{took}</td>'
            f'<td><a href="/logs?id={entry.id}">log ({len(entry.lines)} lines)</a></td></tr>'
        )
    head = "<tr><th>Scrape</th><th>Started</th><th>Request</th><th>Outcome</th>"
    head += "<th>Took</th><th>Debug log</th></tr>"
    return f'<table id="scrapes">{head}{"".join(rows)}</table>'


def _document(title: str, body: str) -> bytes:
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>{body}</body></html>\n"
    ).encode()


def render_status_page(page: StatusPage, now: float | None = None) -> bytes:
    """The whole page, as bytes of UTF-8 HTML."""
    now = time.time() if now is None else now
    path = _e(page.telemetry_path)
    banner = (
        '<div class="banner" id="demo-banner">Demo mode: the numbers come from the built-in '
        "simulator of the 8x8 API, not from 8x8.</div>"
        if page.demo
        else ""
    )
    callbacks = ""
    if page.callbacks is not None:
        callbacks = (
            '<p class="muted">The webhook receiver is on: the last callback accepted per '
            "subaccount is in the last column.</p>"
        )
    probes = "".join(
        f'<a href="/probe?target={quote(row.subaccount, safe="")}">'
        f"/probe?target={_e(row.subaccount)}</a> "
        for row in page.subaccounts
        if row.configured
    )
    body = (
        f"{banner}<h1>{TITLE}</h1>"
        f'<p class="meta">Version {_e(__version__)} &middot; '
        f'<a href="{path}">Metrics</a><a href="/-/healthy">Health</a></p>'
        f"<h2>Subaccounts</h2>{callbacks}{_subaccount_table(page, now)}"
        f"<h2>Last {len(page.scrapes)} scrapes</h2>{_scrape_table(page, now)}"
        + (f'<h2>Probe one subaccount</h2><p class="meta">{probes}</p>' if probes else "")
        + page.extra_html
    )
    return _document(TITLE, body)


def render_log_page(entry: ScrapeEntry, now: float | None = None) -> bytes:
    """One scrape's log lines (already redacted), escaped."""
    now = time.time() if now is None else now
    lines = "\n".join(entry.log()) or "(no log lines)"
    took = "still running" if entry.seconds is None else f"{entry.seconds * 1000:,.0f} ms"
    body = (
        f'<p class="meta"><a href="/">&larr; Status</a></p><h1>Scrape #{entry.id}</h1>'
        f'<p class="meta"><code>{_e(entry.request)}</code> &middot; {when(entry.started, now)}'
        f" &middot; {_e(took)} &middot; {_e(entry.outcome)}</p>"
        f'<pre id="log">{_e(lines)}</pre>'
    )
    return _document(f"Scrape #{entry.id} - {TITLE}", body)
