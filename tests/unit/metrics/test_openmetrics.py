"""OpenMetrics 1.0.0 for the scrapers that ask for it, text 0.0.4 (without `_created`) for the rest.

The inventory's hand-rendered OpenMetrics is byte-equal to prometheus_client's OpenMetrics
`generate_latest` on the same families and passes its strict parser; the exporter's own series
too; a whole /metrics answer, plain and gzip, parses strictly; and a real Prometheus scrapes
both formats: OpenMetrics as it asks by default, text when it asks for text only.
"""

from __future__ import annotations

import gzip
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as strict_families,
)

from exporter.common.errors import REASONS
from exporter.metrics import catalogue as c
from exporter.metrics.catalogue import (
    API_REQUEST_DURATION_SECONDS,
    API_REQUEST_FAILURES,
    API_REQUESTS,
)
from exporter.metrics.encoding import gzip_body, plain_body
from exporter.metrics.selfmetrics import ApiSeries, SelfMetrics
from exporter.polling.exposition import render_scrapes
from exporter.pushing.state import WebhookState
from exporter.web.listener import bridge
from exporter.web.negotiation import OPENMETRICS, TEXT, choose_format
from exporter.web.server import serve_in_thread
from tests.support.exporters import InProcessExporter
from tests.support.fake_api import FakeApi, Reply, number, numbers_body
from tests.support.processes import find_tool, free_port, running_process, wait_until
from tests.support.stack import query
from tests.unit.polling.test_exposition_equivalence import (
    NOW,
    reference_exposition,
    scrape_outcomes,
    varied_body,
)

# The reference is written out here, apart from the catalogue's builders.
REQUESTS, REQUESTS_HELP = API_REQUESTS.name, API_REQUESTS.help
FAILURES, FAILURES_HELP = API_REQUEST_FAILURES.name, API_REQUEST_FAILURES.help
DURATION, DURATION_HELP = API_REQUEST_DURATION_SECONDS.name, API_REQUEST_DURATION_SECONDS.help
BUCKETS = API_REQUEST_DURATION_SECONDS.buckets

OPENMETRICS_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"
TEXT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# What Prometheus sends: 2.x by default, 3.x by default, 3.x with native histograms (protobuf
# first), and 3.x with `scrape_protocols: [PrometheusText0.0.4]`.
PROMETHEUS_2 = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
PROMETHEUS_3 = (
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,"
    "application/openmetrics-text;version=0.0.1;q=0.4,"
    "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1"
)
PROMETHEUS_3_PROTOBUF = (
    "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;"
    "q=0.5,application/openmetrics-text;version=1.0.0;q=0.4,text/plain;version=0.0.4;q=0.3,"
    "*/*;q=0.2"
)
PROMETHEUS_3_TEXT_ONLY = "text/plain;version=0.0.4;q=0.5,*/*;q=0.4"


# --- negotiation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (PROMETHEUS_2, OPENMETRICS),
        (PROMETHEUS_3, OPENMETRICS),
        (PROMETHEUS_3_PROTOBUF, OPENMETRICS),
        (PROMETHEUS_3_TEXT_ONLY, TEXT),
        (None, TEXT),
        ("", TEXT),
        ("*/*", TEXT),
        ("text/plain", TEXT),
        ("application/json", TEXT),  # neither format named: text, never a 406
        ("application/openmetrics-text", OPENMETRICS),
        ("Application/OpenMetrics-Text; Version=1.0.0", OPENMETRICS),
        ('application/openmetrics-text; version="1.0.0"', OPENMETRICS),
        ("application/openmetrics-text;version=0.0.1", TEXT),  # a version not answered here
        ("application/openmetrics-text;version=1.0.0;q=0", TEXT),
        ("application/openmetrics-text;version=1.0.0;q=abc", TEXT),  # unreadable: ignored
        ("text/plain;q=0.5, application/openmetrics-text;version=1.0.0;q=0.4", TEXT),
        ("text/plain;q=0.4, application/openmetrics-text;version=1.0.0;q=0.5", OPENMETRICS),
        ("text/*;q=0.9, application/openmetrics-text;q=0.8", TEXT),
    ],
)
def test_format_follows_the_accept_header(header, expected):
    assert choose_format(header) == expected


# --- the inventory: byte-equal to prometheus_client's OpenMetrics ----------------------------


@pytest.fixture(scope="module")
def body() -> bytes:
    return varied_body()


@pytest.mark.parametrize("per_number", [True, False], ids=["per-number", "aggregates-only"])
def test_inventory_is_byte_for_byte_openmetrics_generate_latest(body, per_number):
    outcomes = scrape_outcomes(body, per_number)
    samples = [sample for sample, _ in outcomes]
    ours = b"".join(plain_body(render_scrapes(samples, NOW, openmetrics=True)))
    assert ours == reference_exposition(outcomes, NOW, openmetrics=True)
    assert ours.endswith(b"\n# EOF\n")
    names = {family.name for family in strict_families(ours.decode())}
    assert names == {f.name for f in c.POLL_FAMILIES if per_number or not f.per_number}
    # The text form is the same sample lines: only `# EOF` tells them apart.
    text = b"".join(plain_body(render_scrapes(samples, NOW)))
    assert ours == text + b"# EOF\n"


def test_openmetrics_gzip_reuses_the_pieces_of_text(body):
    samples = [sample for sample, _ in scrape_outcomes(body, True)]
    text_gzip = b"".join(gzip_body(render_scrapes(samples, NOW)))  # deflates every inventory
    parts = render_scrapes(samples, NOW, openmetrics=True)
    openmetrics = gzip.decompress(b"".join(gzip_body(parts)))
    assert openmetrics == gzip.decompress(text_gzip) + b"# EOF\n"
    # The inventories' pieces were deflated by the text answer and are shared, not redone.
    inventory = samples[0].inventory
    assert inventory is not None
    assert all(text in parts for text in inventory.samples.values())


def test_the_strict_parser_refuses_text_without_eof(body):
    samples = [sample for sample, _ in scrape_outcomes(body, False)]
    text = b"".join(plain_body(render_scrapes(samples, NOW))).decode()
    with pytest.raises(ValueError, match="EOF"):
        list(strict_families(text))


# --- the exporter's own series ---------------------------------------------------------------


class Reference:
    """The API series through prometheus_client's Counter and Histogram."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(REQUESTS, REQUESTS_HELP, ["subaccount"], registry=self.registry)
        self.failures = Counter(
            FAILURES, FAILURES_HELP, ["reason", "subaccount"], registry=self.registry
        )
        self.duration = Histogram(
            DURATION, DURATION_HELP, ["subaccount"], buckets=BUCKETS, registry=self.registry
        )


@pytest.fixture
def frozen(monkeypatch):
    monkeypatch.setattr("prometheus_client.metrics.time.time", lambda: NOW)


def test_api_series_render_byte_equal_to_openmetrics_generate_latest(frozen):
    mine, theirs = ApiSeries(clock=lambda: NOW), Reference()
    for sub in ("acme-prod", 'we"ird\\one'):
        mine.start(sub)
        theirs.requests.labels(sub)
        theirs.duration.labels(sub)
        for reason in REASONS:
            theirs.failures.labels(reason, sub)
    for sub, seconds in (("acme-prod", 0.2), ('we"ird\\one', 7.5), ("acme-prod", 40.0)):
        mine.request(sub), theirs.requests.labels(sub).inc()
        mine.duration(sub, seconds), theirs.duration.labels(sub).observe(seconds)
    mine.failure("acme-prod", "timeout"), theirs.failures.labels("timeout", "acme-prod").inc()
    ours = mine.render(openmetrics=True) + "# EOF\n"
    assert ours == openmetrics_latest(theirs.registry).decode()
    families = {f.name: f for f in strict_families(ours)}
    assert families[REQUESTS].type == "counter"
    names = {s.name for s in families[REQUESTS].samples}
    assert names == {f"{REQUESTS}_total", f"{REQUESTS}_created"}
    assert f"{DURATION}_created" in {s.name for s in families[DURATION].samples}
    # Text 0.0.4 has no _created at all.
    assert "_created" not in mine.render()


def test_text_has_no_created_series_and_openmetrics_has_them_all(frozen):
    metrics = SelfMetrics()
    state = WebhookState(["acme-prod"])
    metrics.registry.register(bridge(state))  # counters and histograms of the receiver too
    metrics.start_at_zero("acme-prod")
    metrics.target("acme-prod").request()
    text = metrics.exposition().decode()
    assert "_created" not in text
    assert f"{REQUESTS}_total" in text
    om = metrics.exposition(openmetrics=True).decode()
    assert not om.endswith("# EOF\n")  # the inventories follow it
    families = list(strict_families(om + "# EOF\n"))
    with_created = set()
    for family in families:
        if family.type == "counter":
            created = [s for s in family.samples if s.name.endswith("_created")]
            totals = [s for s in family.samples if s.name.endswith("_total")]
            # Every child made by a Counter has its creation time (the process collector's
            # CPU counter, which knows none, has none).
            assert len(created) in (0, len(totals)), family.name
            if created:
                with_created.add(family.name)
    assert {REQUESTS, FAILURES, "eightbyeight_webhook_requests"} <= with_created


# --- over HTTP -------------------------------------------------------------------------------

SUB = "acme-prod"


@pytest.fixture(scope="module")
def exporter() -> Iterator[InProcessExporter]:
    body = numbers_body([number(msisdn=f"+65{6000000 + i}") for i in range(25)])
    with (
        FakeApi(Reply.json(body)) as api,
        InProcessExporter(["--api.base-url", api.base_url, "--subaccount", SUB]) as exp,
    ):
        yield exp


@pytest.mark.parametrize("path", ["/metrics", f"/probe?target={SUB}"])
@pytest.mark.parametrize("coding", ["gzip", "identity"])
def test_openmetrics_answer_parses_strictly(exporter, path, coding):
    response = exporter.get(path, headers={"Accept": PROMETHEUS_2, "Accept-Encoding": coding})
    assert response.status_code == 200
    assert response.headers["Content-Type"] == OPENMETRICS_TYPE
    assert response.headers["Vary"] == "Accept, Accept-Encoding"
    assert response.headers.get("Content-Encoding", "identity") == coding
    families = {f.name: f for f in strict_families(response.text)}
    assert families["eightbyeight_up"].samples[0].value == 1
    assert len(families["eightbyeight_number_info"].samples) == 25
    if path == "/metrics":
        assert families[REQUESTS].type == "counter"
        assert f"{REQUESTS}_created" in {s.name for s in families[REQUESTS].samples}


def test_text_answer_has_no_created_series(exporter):
    response = exporter.get(headers={"Accept": PROMETHEUS_3_TEXT_ONLY})
    assert response.headers["Content-Type"] == TEXT_TYPE
    assert "_created" not in response.text
    assert "# EOF" not in response.text
    assert f"\n{REQUESTS}_total" in response.text


# --- real Prometheus -------------------------------------------------------------------------


def _prometheus_version(binary: str) -> tuple[int, ...]:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    found = re.search(r"version (\d+)\.(\d+)", out.stdout + out.stderr)
    return tuple(map(int, found.groups())) if found else (0, 0)


class _TextOnlyRelay:
    """Forwards scrapes to the exporter asking for text 0.0.4 only, body untouched.

    For a Prometheus older than 2.49, which has no `scrape_protocols` and always asks for
    OpenMetrics first: what it parses is still the exporter's own answer.
    """

    def __init__(self, upstream: str) -> None:
        relay = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                headers["Accept"] = PROMETHEUS_3_TEXT_ONLY
                answer = requests.get(
                    upstream + self.path, headers=headers, stream=True, timeout=30
                )
                body = answer.raw.read(decode_content=False)
                relay.content_types.append(answer.headers.get("Content-Type", ""))
                self.send_response(answer.status_code)
                for name in ("Content-Type", "Content-Encoding"):
                    if name in answer.headers:
                        self.send_header(name, answer.headers[name])
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.content_types: list[str] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> _TextOnlyRelay:
        serve_in_thread(self.server, 0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def prometheus_scraping(tmp_path: Path, target: str, protocols: list[str] | None) -> Iterator[str]:
    binary = find_tool("prometheus")
    port = free_port()
    job: dict[str, Any] = {
        "job_name": "eightbyeight",
        "scrape_interval": "1s",
        "scrape_timeout": "1s",
        "static_configs": [{"targets": [target.removeprefix("http://")]}],
    }
    if protocols:
        job["scrape_protocols"] = protocols
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({"scrape_configs": [job]}))
    url = f"http://127.0.0.1:{port}"
    argv = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp_path / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    with running_process(argv, f"{url}/-/ready", log_path=tmp_path / "prometheus.log"):
        yield url


def _healthy_target(prometheus: str) -> dict[str, Any] | None:
    targets = requests.get(f"{prometheus}/api/v1/targets", timeout=10).json()["data"]
    active = targets["activeTargets"]
    if active and active[0]["health"] == "up" and query(prometheus, "eightbyeight_up"):
        return active[0]
    return None


def _assert_scraped(prometheus: str) -> None:
    target = wait_until(lambda: _healthy_target(prometheus), timeout=60, what="a good scrape")
    assert target["lastError"] == ""  # type: ignore[index]
    assert query(prometheus, f'eightbyeight_up{{subaccount="{SUB}"}} == 1')
    assert len(query(prometheus, "eightbyeight_number_info")) == 25
    assert query(prometheus, f"{REQUESTS}_total")


def test_prometheus_scrapes_openmetrics_by_default(exporter, tmp_path):
    with prometheus_scraping(tmp_path, exporter.url, None) as prometheus:
        _assert_scraped(prometheus)
        # Only the OpenMetrics answer carries _created samples: Prometheus read that one.
        assert query(prometheus, f"{REQUESTS}_created")


def test_prometheus_scrapes_text_when_it_asks_for_text_only(exporter, tmp_path):
    binary = find_tool("prometheus")
    if _prometheus_version(binary) >= (2, 49):
        with prometheus_scraping(tmp_path, exporter.url, ["PrometheusText0.0.4"]) as prometheus:
            _assert_scraped(prometheus)
            assert not query(prometheus, f"{REQUESTS}_created")
        return
    with (
        _TextOnlyRelay(exporter.url) as relay,
        prometheus_scraping(tmp_path, relay.url, None) as prometheus,
    ):
        _assert_scraped(prometheus)
        assert not query(prometheus, f"{REQUESTS}_created")
        assert set(relay.content_types) == {TEXT_TYPE}
