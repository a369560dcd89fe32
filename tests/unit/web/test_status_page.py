"""The status page on `/` and each scrape's log on `/logs?id=`, rendered in headless Chromium.

A simulator serves three subaccounts: a healthy one (with unhealthy and expiring numbers
forced), a failing one (500 from the start, its error message echoing the API key) and a stale
one (good, then 503, served stale with --cache.serve-stale-for). The exporter runs behind web
config basic auth with the webhook receiver on; a callback arrives for the healthy one. The
page is opened in Debian's chromium (through Playwright, with none of Playwright's own
browsers), screenshots are written to the test's tmp dir (the path is printed), and the
rendered page is checked. Neither the API key, the webhook auth value nor the basic auth
password may appear on any page.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from exporter.common.journal import MAX_LINES, ScrapeEntry, ScrapeJournal, current_entry
from exporter.common.logs import log_event
from exporter.polling.scraper import FetchPool, ScraperStatus
from exporter.simulator import Simulator
from exporter.web.status import (
    StatusPage,
    SubaccountRow,
    render_log_page,
    render_status_page,
)
from tests.support.callbacks import vss
from tests.support.exporters import InProcessExporter
from tests.support.pki import bcrypt_hash
from tests.support.processes import IN_CI

KEY = "statuspage-key-7f3a9c1e-never-shown"
CALLBACK_AUTH = "Bearer callback-value-5d2b8e47-never-shown"
USER, PASSWORD = "operator", "status-pass-1c9e2a-never-shown"
HEALTHY, FAILING, STALE = "acme-healthy", "acme-failing", "acme-stale"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
NEVER_SHOWN = (KEY, CALLBACK_AUTH, CALLBACK_AUTH.split()[1], PASSWORD)


def chromium_path() -> str:
    path = shutil.which("chromium")
    if path is None:
        message = "chromium not found: 'apt-get install -y chromium' (.ci/run does)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


@contextmanager
def browser(tmp_path: Path) -> Iterator[Any]:
    """A headless Chromium page with the basic auth credentials, on a fresh profile."""
    sync_api = pytest.importorskip("playwright.sync_api")
    profile = tmp_path / "chromium-profile"
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=chromium_path(),
            headless=True,
            args=CHROMIUM_FLAGS,
            http_credentials={"username": USER, "password": PASSWORD},
            viewport={"width": 1400, "height": 900},
        )
        try:
            yield context.new_page()
        finally:
            context.close()


@pytest.fixture
def scene(tmp_path: Path) -> Iterator[tuple[InProcessExporter, Simulator]]:
    web_config = tmp_path / "web.yml"
    web_config.write_text(f"basic_auth_users:\n  {USER}: '{bcrypt_hash(PASSWORD)}'\n")
    auth_file = tmp_path / "callback-auth"
    auth_file.write_text(CALLBACK_AUTH + "\n")
    subaccounts = {HEALTHY: 40, FAILING: 10, STALE: 25}
    # The simulated numbers stand still: they evolve every few seconds on the real clock, and
    # the page must show what the first scrape counted, however long the scrapes after it take.
    frozen = time.time()
    with Simulator(subaccounts=subaccounts, api_key=KEY, seed=7, clock=lambda: frozen) as sim:
        sim.set_faults({"unhealthy": 3, "expiring": 2}, HEALTHY)
        sim.set_faults({"status": 500, "message": f"internal error for key {KEY}"}, FAILING)
        argv = ["--api.base-url", sim.base_url, "--cache.serve-stale-for", "1h"]
        argv += [arg for sub in subaccounts for arg in ("--subaccount", sub)]
        argv += ["--web.config.file", str(web_config)]
        argv += ["--webhook.listen-address", "127.0.0.1:0"]
        argv += ["--webhook.auth-header-file", str(auth_file)]
        with InProcessExporter(argv, api_key=KEY) as exporter:
            yield exporter, sim


def scrape(exporter: InProcessExporter, path: str = "/metrics") -> requests.Response:
    response = exporter.get(path, auth=(USER, PASSWORD))
    assert response.status_code == 200, response.text
    return response


def set_the_scene(exporter: InProcessExporter, sim: Simulator) -> dict[str, int]:
    """One good scrape of the stale subaccount, then it fails; a callback; a probe.

    Returns the healthy subaccount's unhealthy and expiring counts, as /metrics has them.
    """
    families = text_string_to_metric_families(scrape(exporter).text)
    counts = dict.fromkeys(("unhealthy", "expiring"), 0)
    for family in families:
        kind = family.name.removeprefix("eightbyeight_virtual_numbers_")
        if kind in counts:
            counts[kind] = int(
                sum(s.value for s in family.samples if s.labels["subaccount"] == HEALTHY)
            )
    sim.set_faults({"status": 503}, STALE)
    scrape(exporter)
    callback = requests.post(
        exporter.callback_url,
        json=vss(sub=HEALTHY),
        headers={"Authorization": CALLBACK_AUTH},
        timeout=10,
    )
    assert callback.status_code == 200
    scrape(exporter, f"/probe?target={HEALTHY}")
    return counts


def row_cells(page: Any, subaccount: str) -> list[str]:
    return page.locator(f'tr[data-subaccount="{subaccount}"] td').all_inner_texts()


def test_status_page_in_chromium(scene, tmp_path, record_property):
    exporter, sim = scene
    counts = set_the_scene(exporter, sim)
    assert counts["unhealthy"] >= 3
    assert counts["expiring"] >= 2
    with browser(tmp_path) as page:
        answer = page.goto(exporter.url + "/")
        assert answer.status == 200
        shot = tmp_path / "status-page.png"
        page.screenshot(path=str(shot), full_page=True)
        print(f"status page screenshot: {shot}")
        record_property("status_page_screenshot", str(shot))
        assert page.title() == "8x8 Number Health exporter"
        assert page.locator("#demo-banner").count() == 0
        headers = page.locator("#subaccounts th").all_inner_texts()
        assert headers[-1] == "Last callback"

        healthy = row_cells(page, HEALTHY)
        assert healthy[1] == "up"
        assert "UTC" in healthy[2]
        assert healthy[3:6] == ["40", str(counts["unhealthy"]), str(counts["expiring"])]
        assert healthy[6] == "none"
        assert healthy[8].startswith("vss at ")

        failing = row_cells(page, FAILING)
        assert failing[1] == "down"
        assert failing[2] == "never"
        assert failing[3] == "-"
        assert failing[6].startswith("server_error")
        assert "UTC" in failing[7]
        assert failing[8] == "none yet"

        stale = row_cells(page, STALE)
        assert stale[1] == "stale"
        assert "UTC" in stale[2]
        assert stale[3] == "25"
        assert stale[6].startswith("server_error")

        scrapes = page.locator("#scrapes tr[data-scrape]")
        assert scrapes.count() == 3
        first = scrapes.nth(0).inner_text()  # newest first: the probe
        assert f"/probe?target={HEALTHY}" in first
        assert "1/1 up" in first
        assert "2/3 up" in scrapes.nth(2).inner_text()  # the first /metrics scrape
        assert "1/3 up" in scrapes.nth(1).inner_text()
        html = page.content()

        # The second /metrics scrape's log: the stale subaccount's failure, at warn.
        scrapes.nth(1).locator("a").first.click()
        page.wait_for_selector("#log")
        log_shot = tmp_path / "scrape-log.png"
        page.screenshot(path=str(log_shot), full_page=True)
        print(f"scrape log screenshot: {log_shot}")
        log = page.inner_text("#log")
        assert "scrape started" in log
        assert "fetching the numbers" in log
        assert f'msg="reading virtual numbers failed" subaccount={STALE}' in log
        assert "scrape answered" in log
        assert "<redacted>" in log  # the failing subaccount's error echoed the key
        pages = [html, page.content()]

    for entry in exporter.app.journal.entries():
        pages.append(scrape(exporter, f"/logs?id={entry.id}").text)
    for text in pages:
        for secret in NEVER_SHOWN:
            assert secret not in text


def test_demo_mode_has_a_banner(scene, tmp_path):
    exporter, _ = scene
    exporter.app.demo = True
    with browser(tmp_path) as page:
        page.goto(exporter.url + "/")
        assert "Demo mode" in page.inner_text("#demo-banner")
        assert page.locator("#demo-banner").is_visible()


@pytest.mark.parametrize("path", ["/", "/logs?id=1"])
def test_status_and_logs_need_the_same_auth_as_metrics(scene, path):
    exporter, _ = scene
    scrape(exporter)
    assert exporter.get(path).status_code == 401
    assert exporter.get(path, auth=(USER, "wrong")).status_code == 401
    assert exporter.get(path, auth=(USER, PASSWORD)).status_code == 200


@pytest.mark.parametrize(
    ("query", "status"),
    [("", 400), ("id=abc", 400), ("id=1&id=2", 400), ("id=99999", 404), ("id=1", 200)],
)
def test_logs_query_is_checked(scene, query, status):
    exporter, _ = scene
    scrape(exporter)
    response = exporter.get(f"/logs?{query}", auth=(USER, PASSWORD))
    assert response.status_code == status
    if status != 200:
        assert len(response.text.strip().splitlines()) == 1


# --- the journal ---------------------------------------------------------------------------

log = logging.getLogger("tests.status")


def test_journal_keeps_the_last_scrapes_only():
    journal = ScrapeJournal(size=20)
    for n in range(25):
        with journal.begin(f"/metrics #{n}"):
            log_event(log, logging.DEBUG, "hello", n=n)
    entries = journal.entries()
    assert len(entries) == 20
    assert [e.id for e in entries] == list(range(25, 5, -1))
    assert journal.find(5) is None
    assert journal.find(6) is not None
    assert entries[0].lines[0].endswith("msg=hello n=24")


def test_journal_lines_are_bounded_and_redacted():
    journal = ScrapeJournal()
    journal.learn([KEY])
    with journal.begin("/metrics") as entry:
        log_event(log, logging.WARNING, "echo", detail=f"the key is {KEY}", long="x" * 5000)
        for _ in range(MAX_LINES + 50):
            log_event(log, logging.DEBUG, "line")
    lines = entry.log()
    assert len(lines) == MAX_LINES + 1
    assert lines[-1].startswith("... 51 more lines")
    assert KEY not in lines[0]
    assert "<redacted>" in lines[0]
    assert len(lines[0]) <= 1000
    assert current_entry() is None  # nothing is written once the scrape is over
    log_event(log, logging.DEBUG, "after")
    assert len(entry.log()) == MAX_LINES + 1


def test_journal_entry_follows_the_scrape_into_the_fetch_workers():
    journal = ScrapeJournal()
    pool = FetchPool(2, name="journal-test")
    try:
        with journal.begin("/metrics") as entry:
            futures = [
                pool.submit(lambda i=i: log_event(log, logging.DEBUG, "worker", i=i))
                for i in range(4)
            ]
            for future in futures:
                future.result(timeout=30)
        # A call submitted outside any scrape writes nowhere.
        pool.submit(lambda: log_event(log, logging.DEBUG, "outside")).result(timeout=30)
    finally:
        pool.close(timeout=5)
    assert sorted(line.partition(" ")[2] for line in entry.lines) == [
        f"level=debug msg=worker i={i}" for i in range(4)
    ]


def test_page_escapes_everything():
    odd = '<script>alert("x")</script>&'
    status = ScraperStatus(up=False, failure_reason=odd, failure_detail=odd, failure_time=1.0)
    entry = ScrapeEntry(1, 1.0, f"/probe?target={odd}", ())
    page = StatusPage(
        "/metrics", [SubaccountRow(odd, False, status)], [entry], {odd: (odd, 2.0)}, False, []
    )
    text = render_status_page(page, now=10.0).decode()
    assert "<script>" not in text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;" in text


def test_ages_are_counted_from_the_time_the_page_is_given():
    status = ScraperStatus(up=False, failure_reason="timeout", failure_time=1_000.0)
    page = StatusPage("/metrics", [SubaccountRow("acme-a", True, status)], [], None, False, [])
    text = render_status_page(page, now=1_045.0).decode()
    assert "(45 s ago)" in text
    # A failure without a detail shows its reason and nothing after it.
    assert "<b>timeout</b>: <td>" in text


def test_a_scrapes_log_page_shows_its_duration_outcome_and_age():
    entry = ScrapeEntry(7, 1_000.0, "/metrics", ())
    entry.add("level=debug msg=hello")
    entry.seconds, entry.outcome = 1.2346, "2/3 up, openmetrics, gzip"
    text = render_log_page(entry, now=1_000.0 + 7_200).decode()
    assert "<h1>Scrape #7</h1>" in text
    assert "1,235 ms &middot; 2/3 up, openmetrics, gzip</p>" in text
    assert "(2 h ago)" in text
    assert "level=debug msg=hello" in text
    running = ScrapeEntry(8, 1_000.0, "/metrics", ())
    assert "still running" in render_log_page(running, now=1_001.0).decode()
