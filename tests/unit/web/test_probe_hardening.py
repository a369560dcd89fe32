"""/probe and the HTTP front door under hostile input: only valid (and, if configured, allowed)
subaccount IDs reach the API; anything else, of any length or encoding, gets a 4xx, never a 500,
never a traceback, and the exporter keeps serving."""

from __future__ import annotations

import contextlib
import re
import socket
import textwrap
import threading
import time
from pathlib import Path

import pytest
import requests

import exporter.web.server
from tests.support.exporters import InProcessExporter, exporter_process, parse_samples, value
from tests.support.fake_api import FakeApi

KEY = "probe-key-8d1e55b0-never-shown"


@pytest.fixture(scope="module")
def api():
    with FakeApi() as fake:
        yield fake


@pytest.fixture(scope="module")
def exp(api):
    with InProcessExporter(["--api.base-url", api.base_url], api_key=KEY) as exporter:
        yield exporter


def probe_status(exp: InProcessExporter, query: str) -> int:
    return exp.get("/probe?" + query).status_code


def test_valid_target_is_probed(exp, api):
    before = api.count
    answer = exp.get("/probe?target=acme-prod")
    assert answer.status_code == 200
    assert value(parse_samples(answer.text), "eightbyeight_up", subaccount="acme-prod") == 1
    assert api.count == before + 1
    # /probe carries the target's series only, never the exporter's own.
    assert "eightbyeight_api_requests_total" not in answer.text
    assert "process_cpu_seconds_total" not in answer.text


def test_ampersand_ids_are_percent_encoded_upstream(exp, api):
    answer = exp.get("/probe", params={"target": "a&b.c_d-e"})
    assert answer.status_code == 200
    assert api.requests[-1][0] == "/api/v1/subaccounts/a%26b.c_d-e/numbers"


@pytest.mark.parametrize(
    "query",
    [
        "",
        "target=",
        "target",
        "target=ab",
        "target=" + "a" * 51,
        "target=acme%20prod",
        "target=acme+prod",
        "target=acme/prod",
        "target=..%2F..%2Fetc",
        "target=acme%0A",
        "target=acme-prod%0A",
        "target=acme%00prod",
        "target=%C3%A1cme",
        "target=%ff%fe%fd",
        "target=%zz%",
        "target=acme-prod&target=acme-dev",
        "TARGET=acme-prod",
        "target=acme%3Fprod",
        "target=acme%23prod",
        "target=acme%2Fprod",
        "target=" + "%" * 3000,
        "target=x&" + "&".join(f"k{i}=v" for i in range(5000)),
        "target=" + "a" * 60_000,
    ],
)
def test_invalid_targets_get_400_and_no_api_call(exp, api, query):
    before = api.count
    assert probe_status(exp, query) == 400
    assert api.count == before


def test_not_allowed_targets_get_403_and_no_api_call(api):
    flags = ["--api.base-url", api.base_url, "--probe.allowed-subaccounts", "acme-prod,acme-dev"]
    with InProcessExporter(flags, api_key=KEY) as exporter:
        before = api.count
        assert probe_status(exporter, "target=acme-stage") == 403
        assert probe_status(exporter, "target=ACME-PROD") == 403
        assert api.count == before
        assert probe_status(exporter, "target=acme-dev") == 200
        assert api.count == before + 1


def test_allow_list_from_the_config_file(api, tmp_path: Path):
    config = tmp_path / "config.yml"
    config.write_text(
        textwrap.dedent(
            f"""
            base_url: {api.base_url}
            probe:
              allowed_subaccounts: [acme-prod]
            """
        )
    )
    with InProcessExporter(["--config.file", str(config)], api_key=KEY) as exporter:
        assert probe_status(exporter, "target=acme-dev") == 403
        assert probe_status(exporter, "target=acme-prod") == 200


@pytest.mark.slow
def test_probed_targets_are_bounded(exp):
    for i in range(300):
        assert probe_status(exp, f"target=bulk-{i:04d}") == 200
    assert exp.app.scrapers.probed_count <= 256


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"])
def test_other_methods_get_405(exp, method):
    answer = requests.request(method, exp.url + "/probe?target=acme-prod", timeout=10)
    assert answer.status_code == 405


@pytest.mark.parametrize("path", ["/metrics/", "/probe/", "/-/reloads", "/%ff", "/" + "x" * 30_000])
def test_unknown_paths_get_404(exp, path):
    assert exp.get(path).status_code == 404


# --- Raw bytes over a socket, against the exporter as a real process ------------------------


@pytest.fixture(scope="module")
def process(api, tmp_path_factory):
    log = tmp_path_factory.mktemp("probe") / "exporter.log"
    env = {"EIGHTBYEIGHT_API_KEY": KEY}
    argv = ["--api.base-url", api.base_url, "--subaccount", "acme-prod", "--log.level", "debug"]
    with exporter_process(argv, env, log) as (url, pid):
        yield url, pid, log


def raw_exchange(url: str, payload: bytes, timeout: float = 10.0) -> bytes:
    """Send raw bytes (from a second thread, so that an early answer to an oversized request
    is read while the rest is still being sent), half-close, and read the whole answer."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:

        def send() -> None:
            # The server may answer and close before it has read everything: that is fine.
            with contextlib.suppress(OSError):
                sock.sendall(payload)
                sock.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send)
        sender.start()
        chunks = []
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        sender.join(timeout)
    return b"".join(chunks)


def status_of(answer: bytes) -> int:
    match = re.match(rb"HTTP/1\.[01] (\d{3}) ", answer)
    assert match, f"no HTTP status line in {answer[:200]!r}"
    return int(match.group(1))


def request(target: bytes, *headers: bytes, method: bytes = b"GET") -> bytes:
    lines = [method + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1", *headers, b"", b""]
    return b"\r\n".join(lines)


RAW_CASES = {
    "huge request line": request(b"/probe?target=" + b"a" * 200_000),
    "request line just under the limit": request(b"/probe?target=" + b"a" * 65_000),
    "bad percent-encoding": request(b"/probe?target=%zz%g%"),
    "non-UTF-8 query": request(b"/probe?target=\xff\xfe\xfdabc"),
    "non-UTF-8 path": request(b"/pr\xffobe?target=acme-prod"),
    "overlong UTF-8": request(b"/probe?target=%c0%af%c0%afabc"),
    "NUL in the query": request(b"/probe?target=acme\x00prod"),
    "200 headers": request(b"/probe?target=acme-prod", *(b"X-H%d: v" % i for i in range(200))),
    "one 100 KB header": request(b"/probe?target=acme-prod", b"X-Big: " + b"v" * 100_000),
    "non-UTF-8 header": request(
        b"/probe?target=x", b"X-Prometheus-Scrape-Timeout-Seconds: \xff\xfe"
    ),
    "header without a colon": request(b"/probe?target=acme-prod", b"NoColonHere"),
    "garbage request line": b"GARBAGE\r\n\r\n",
    "HTTP/2 preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "TLS hello on a plain port": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,
    "unsupported version": b"GET /probe?target=acme-prod HTTP/9.9\r\n\r\n",
    "absolute URI": request(b"http://evil.test/probe?target=ab"),
    "backslashes": request(b"/probe\\..\\..\\?target=acme-prod"),
    "CONNECT": request(b"evil.test:443", method=b"CONNECT"),
    "bad method token": request(b"/probe?target=acme-prod", method=b"G\xffT"),
    "invalid target bytes": request(b"/probe?target=<script>alert(1)</script>"),
}


# An HTTP version the server does not speak is answered 505, the one deliberate 5xx.
VERSION_CASES = {"HTTP/2 preface", "unsupported version"}


@pytest.mark.parametrize("case", sorted(RAW_CASES))
def test_raw_hostile_requests_get_4xx(process, case):
    url, _, _ = process
    status = status_of(raw_exchange(url, RAW_CASES[case]))
    if case in VERSION_CASES:
        assert status == 505
    else:
        assert 400 <= status < 500


@pytest.mark.slow
def test_an_idle_client_is_dropped(monkeypatch, exp):
    monkeypatch.setattr(exporter.web.server._QuietHandler, "timeout", 0.5)
    host, port = exp.url.removeprefix("http://").split(":")
    # The client waits a minute for the server to hang up; dropped after its 0.5 s, it never
    # waits half of that, however slow the machine.
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\n")  # ...and never the rest
        started = time.monotonic()
        assert sock.recv(1024) == b""
        assert time.monotonic() - started < 30
    assert exp.get("/-/healthy").status_code == 200


def test_a_client_that_sends_half_a_request_and_leaves(process):
    url, _, _ = process
    host, port = url.removeprefix("http://").split(":")
    for _ in range(20):
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(b"GET /probe?target=acme-")
    assert requests.get(url + "/-/healthy", timeout=5).status_code == 200


@pytest.mark.slow
def test_process_survives_and_logs_no_traceback_or_key(process):
    url, pid, log = process
    for payload in RAW_CASES.values():
        raw_exchange(url, payload)
    answer = requests.get(url + "/metrics", timeout=10)
    assert answer.status_code == 200
    assert value(parse_samples(answer.text), "eightbyeight_up", subaccount="acme-prod") == 1
    text = log.read_text(errors="replace")
    assert Path(f"/proc/{pid}").exists()
    assert "Traceback" not in text
    assert KEY not in text
    for line in text.splitlines():
        assert line.startswith("ts="), f"not a logfmt line: {line[:200]!r}"
