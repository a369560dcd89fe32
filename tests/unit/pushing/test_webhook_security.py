"""Hostile callbacks against a running exporter's webhook receiver.

One exporter process with --webhook.listen-address, logging at debug level. For every case
the receiver answers the documented status within a bounded time, counts the documented
outcome (or nothing, for 401/404/405), stays alive with bounded memory, and the
Authorization value appears in no log line and no response.

The same matrix runs in this process too (`test_hostile_callback_in_process`, in the fast
loop, so mutation runs see it); the process runs are slow tests.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from exporter.simulator import Simulator
from tests.support.callbacks import CALLBACK_PATH, vnu, vnu_number, vss
from tests.support.exporters import InProcessExporter, exporter_process, parse_samples, rss_kib
from tests.support.pki import bcrypt_hash
from tests.support.processes import free_port

SECRET = "Bearer wh-9c41e7b2-never-logged"
# The scraper's basic-auth credentials in the web config (the `pki` fixture is in conftest).
USER, PASSWORD = "prometheus", "s3cret-scraper-password"
KEY = "sk-8x8-webhook-security-key"
SUB = "acme-prod"
MAX_BODY = 64 * 1024
READ_TIMEOUT = 1.0
RSS_LIMIT_KIB = 300 * 1024
# A hostile sender holds on for a minute (a stalled body, a trickle, a client that waits for
# an answer): a receiver that kept to its 1 s read timeout answers long before half of that
# on any machine, one that waited for the sender never does.
HOLD = 60.0
BOUND = HOLD / 2


@dataclass
class Case:
    request: bytes | list[tuple[bytes, float]]  # bytes, or (chunk, pause after) pieces
    status: int
    counted: str | None  # outcome counted in eightbyeight_webhook_requests_total
    waits: bool = False  # answered only once the read timeout has passed (slow tests only)
    # Delivered just before `request` (answered 200, whatever it counts): a replay carries its
    # own first delivery, so it holds whichever worker and order the case runs in.
    first: bytes | None = None


def raw(
    body: bytes = b"",
    auth: bytes | None = SECRET.encode(),
    *,
    method: bytes = b"POST",
    path: bytes = CALLBACK_PATH.encode(),
    length: int | None = None,
    extra: tuple[bytes, ...] = (),
) -> bytes:
    headers = [b"Host: 127.0.0.1", b"Content-Type: application/json", *extra]
    if auth is not None:
        headers.append(b"Authorization: " + auth)
    headers.append(b"Content-Length: %d" % (len(body) if length is None else length))
    return b"\r\n".join([method + b" " + path + b" HTTP/1.1", *headers, b"", b""]) + body


def js(doc: object) -> bytes:
    return json.dumps(doc).encode()


def mutated(event: dict, change) -> bytes:
    change(event)
    return js(event)


GOOD = js(vss(session="good-1"))
FIRST_VSS = js(vss(session="first"))
FIRST_VNU = js(vnu(numbers=[vnu_number("+6531234598", "Active", "2026-01-01T00:00:00Z")]))
REPLAY_VSS = js(vss(session="replayed"))
REPLAY_VNU = js(vnu(numbers=[vnu_number("+6531234599", "Active", "2026-01-01T00:00:00Z")]))

CASES: dict[str, Case] = {
    # Authentication: never counted, never read further.
    "no Authorization": Case(raw(GOOD, None), 401, "unauthorized"),
    "wrong Authorization": Case(raw(GOOD, b"Bearer guessed"), 401, "unauthorized"),
    "Authorization lower-cased": Case(raw(GOOD, SECRET.lower().encode()), 401, "unauthorized"),
    "Authorization upper-cased": Case(raw(GOOD, SECRET.upper().encode()), 401, "unauthorized"),
    "Authorization scheme only": Case(raw(GOOD, b"Bearer"), 401, "unauthorized"),
    "Authorization with a suffix": Case(raw(GOOD, SECRET.encode() + b"x"), 401, "unauthorized"),
    "Authorization truncated": Case(raw(GOOD, SECRET.encode()[:-1]), 401, "unauthorized"),
    "Authorization as Basic": Case(raw(GOOD, b"Basic d2g6c2VjcmV0"), 401, "unauthorized"),
    "Authorization non-ASCII": Case(raw(GOOD, b"Bearer \xff\xfe"), 401, "unauthorized"),
    "no auth and a huge body": Case(raw(b"", None, length=10**10), 401, "unauthorized"),
    # Not the callback endpoint.
    "GET on the callback path": Case(raw(method=b"GET"), 405, "method_not_allowed"),
    "PUT on the callback path": Case(raw(GOOD, method=b"PUT"), 405, "method_not_allowed"),
    "another path": Case(raw(GOOD, path=b"/metrics"), 404, "not_found"),
    "path traversal": Case(
        raw(GOOD, path=CALLBACK_PATH.encode() + b"/../../etc/passwd"), 404, "not_found"
    ),
    # Size and time.
    "declared 10 GB": Case(raw(b"", length=10**10), 413, "body_too_large"),
    "body one byte over the cap": Case(raw(b" " * (MAX_BODY + 1)), 413, "body_too_large"),
    "negative Content-Length": Case(raw(b"", length=-5), 400, "malformed_json"),
    "body that stops half-way": Case(
        [(raw(b"", length=1000) + b'{"eventType": ', HOLD)], 408, "body_timeout", waits=True
    ),
    "body trickled a byte at a time": Case(
        [(raw(b"", length=1000), 0.0)] + [(b" ", 0.3)] * int(HOLD / 0.3),
        408,
        "body_timeout",
        waits=True,
    ),
    # Content.
    "empty body": Case(raw(b""), 400, "malformed_json"),
    "not JSON": Case(raw(b"<xml>hello</xml>"), 400, "malformed_json"),
    "invalid UTF-8": Case(raw(b'{"eventType": "\xff\xfe"}'), 400, "malformed_json"),
    "NaN literal": Case(
        raw(b'{"eventType": "SESSION_SUMMARY", "payload": NaN}'), 400, "malformed_json"
    ),
    "deep nesting": Case(
        raw(b'{"eventType": "SESSION_SUMMARY", "payload": ' + b"[" * 30_000 + b"]" * 30_000 + b"}"),
        400,
        "malformed_json",
    ),
    "top-level array": Case(raw(b"[1, 2, 3]"), 422, "invalid_event"),
    "eventType a number": Case(raw(js({"eventType": 7, "payload": {}})), 422, "invalid_event"),
    "payload null": Case(
        raw(js({"eventType": "SESSION_SUMMARY", "payload": None})), 422, "invalid_event"
    ),
    "virtualNumbers a string": Case(
        raw(mutated(vnu(), lambda e: e["payload"].update(virtualNumbers="all"))),
        422,
        "invalid_event",
    ),
    "msisdn with letters": Case(
        raw(mutated(vnu(), lambda e: e["payload"]["virtualNumbers"][0].update(msisdn="+65abc"))),
        422,
        "invalid_event",
    ),
    "mos a string": Case(
        raw(
            mutated(
                vss(session="m1"),
                lambda e: e["payload"]["details"]["callA"]["callQuality"].update(mos="high"),
            )
        ),
        200,  # the value is dropped and counted; the session still counts
        "accepted",
    ),
    "mos out of range": Case(
        raw(
            mutated(
                vss(session="m2"),
                lambda e: e["payload"]["details"]["callA"]["callQuality"].update(mos=50),
            )
        ),
        200,
        "accepted",
    ),
    "500 call legs": Case(
        raw(
            mutated(
                vss(session="m3"),
                lambda e: e["payload"].update(
                    details={
                        f"call{i}": {"callDirection": "INBOUND", "callStatus": "X"}
                        for i in range(500)
                    }
                ),
            )
        ),
        422,
        "invalid_event",
    ),
    "100 KB string field": Case(
        raw(mutated(vss(session="m4"), lambda e: e["payload"].update(sessionStatus="X" * 60_000))),
        200,  # the status is dropped and counted; the session still counts
        "accepted",
    ),
    "subaccount path-like": Case(
        raw(mutated(vss(session="m5"), lambda e: e["payload"].update(subAccountId="../../etc"))),
        422,
        "invalid_event",
    ),
    # Well-formed but not for us, or not new.
    "another subaccount": Case(
        raw(js(vss(sub="someone-else", session="o1"))), 403, "subaccount_not_allowed"
    ),
    "unknown eventType": Case(
        raw(js({"eventType": "CALL_STATUS", "payload": {"x": 1}})), 200, "unknown_event_type"
    ),
    "VSS first delivery": Case(raw(FIRST_VSS), 200, "accepted"),
    "VSS replayed": Case(raw(REPLAY_VSS), 200, "duplicate", first=raw(REPLAY_VSS)),
    "VNU first delivery": Case(raw(FIRST_VNU), 200, "accepted"),
    "VNU replayed": Case(raw(REPLAY_VNU), 200, "duplicate", first=raw(REPLAY_VNU)),
}


@pytest.fixture(scope="module")
def receiver(tmp_path_factory) -> Iterator[tuple[str, str, int, Path]]:
    tmp = tmp_path_factory.mktemp("webhook-security")
    log = tmp / "exporter.log"
    port = free_port()
    with Simulator(subaccounts={SUB: 20}, api_key=KEY, seed=2) as sim:
        argv = [
            "--api.base-url", sim.base_url,
            "--subaccount", SUB,
            "--webhook.listen-address", f"127.0.0.1:{port}",
            "--webhook.max-body-size", str(MAX_BODY),
            "--webhook.read-timeout", f"{READ_TIMEOUT}s",
            "--log.level", "debug",
        ]  # fmt: skip
        env = {"EIGHTBYEIGHT_API_KEY": KEY, "EIGHTBYEIGHT_WEBHOOK_AUTH_HEADER": SECRET}
        with exporter_process(argv, env, log) as (url, pid):
            yield url, f"127.0.0.1:{port}", pid, log


def exchange(address: str, request: bytes | list[tuple[bytes, float]], timeout: float) -> bytes:
    host, port = address.split(":")
    pieces = [(request, 0.0)] if isinstance(request, bytes) else request
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        with contextlib.suppress(OSError):
            for chunk, pause in pieces:
                sock.sendall(chunk)
                if pause:
                    # Stop sending as soon as the server has answered and closed.
                    sock.settimeout(pause)
                    with contextlib.suppress(TimeoutError):
                        first = sock.recv(65536, socket.MSG_PEEK)
                        if first:
                            break
                    sock.settimeout(timeout)
        sock.settimeout(timeout)
        chunks = []
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                chunks.append(chunk)
    return b"".join(chunks)


def outcomes(url: str) -> dict[str, float]:
    return outcomes_in(requests.get(url + "/metrics", timeout=10).text)


def outcomes_in(text: str) -> dict[str, float]:
    samples = parse_samples(text)
    return {
        dict(labels)["outcome"]: v
        for (name, labels), v in samples.items()
        if name == "eightbyeight_webhook_requests_total"
    }


def test_the_matrix_is_broad_enough():
    assert len(CASES) >= 25
    assert {c.status for c in CASES.values()} >= {200, 400, 401, 403, 404, 405, 408, 413, 422}


@pytest.fixture(scope="module")
def in_process() -> Iterator[tuple[str, str]]:
    port = free_port()
    argv = [
        "--api.base-url", "http://127.0.0.1:1",
        "--subaccount", SUB,
        "--webhook.listen-address", f"127.0.0.1:{port}",
        "--webhook.max-body-size", str(MAX_BODY),
        "--webhook.read-timeout", f"{READ_TIMEOUT}s",
    ]  # fmt: skip
    env = {"EIGHTBYEIGHT_WEBHOOK_AUTH_HEADER": SECRET}
    with InProcessExporter(argv, api_key=KEY, env=env) as exporter:
        yield exporter.url, f"127.0.0.1:{port}"


@pytest.mark.parametrize("name", [name for name, case in CASES.items() if not case.waits])
def test_hostile_callback_in_process(in_process, name):
    url, address = in_process
    case = CASES[name]
    if case.first:
        assert re.match(rb"HTTP/1\.[01] 200 ", exchange(address, case.first, timeout=10))
    before = outcomes(url)
    answer = exchange(address, case.request, timeout=30)
    match = re.match(rb"HTTP/1\.[01] (\d{3}) ", answer)
    assert match, f"no status line: {answer[:200]!r}"
    assert int(match.group(1)) == case.status, answer[:300]
    assert SECRET.encode() not in answer
    after = outcomes(url)
    changed = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    assert changed == ({case.counted: 1} if case.counted else {}), changed


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_hostile_callback(receiver, name):
    url, address, pid, _ = receiver
    case = CASES[name]
    if case.first:
        assert re.match(rb"HTTP/1\.[01] 200 ", exchange(address, case.first, timeout=10))
    before = outcomes(url)
    started = time.monotonic()
    answer = exchange(address, case.request, timeout=HOLD)
    elapsed = time.monotonic() - started
    match = re.match(rb"HTTP/1\.[01] (\d{3}) ", answer)
    assert match, f"no status line: {answer[:200]!r}"
    assert int(match.group(1)) == case.status, answer[:300]
    assert elapsed < BOUND, f"answered after {elapsed:.1f}s"
    assert SECRET.encode() not in answer
    after = outcomes(url)
    changed = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    assert changed == ({case.counted: 1} if case.counted else {}), changed
    assert rss_kib(pid) < RSS_LIMIT_KIB


@pytest.mark.slow
def test_process_alive_healthy_and_secret_never_logged(receiver):
    url, address, pid, log = receiver
    for case in CASES.values():
        # Not the first deliveries: their own cases count them as new, in any order.
        if not case.waits and case.counted != "accepted":
            exchange(address, case.request, timeout=10)
    assert requests.get(f"http://{address}/-/healthy", timeout=5).status_code == 200
    metrics = requests.get(url + "/metrics", timeout=10)
    assert metrics.status_code == 200
    assert SECRET not in metrics.text
    assert Path(f"/proc/{pid}").exists()
    assert rss_kib(pid) < RSS_LIMIT_KIB
    text = log.read_text(errors="replace")
    assert "callback refused" in text, "debug logging should show the refusals"
    assert "Traceback" not in text
    for secret in (SECRET, SECRET.split()[1], KEY):
        assert secret not in text
    for line in text.splitlines():
        assert line.startswith("ts="), f"not a logfmt line: {line[:200]!r}"


@pytest.mark.slow
def test_callbacks_over_the_web_config_tls_without_its_basic_auth(pki, tmp_path):
    """--web.config.file's TLS serves the callback listener too; its basic auth does not."""
    web = tmp_path / "web.yml"
    web.write_text(
        f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {pki.server_key}\n"
        f"basic_auth_users:\n  {USER}: '{bcrypt_hash(PASSWORD)}'\n"
    )
    port = free_port()
    with Simulator(subaccounts={SUB: 20}, api_key=KEY, seed=2) as sim:
        argv = [
            "--api.base-url", sim.base_url,
            "--subaccount", SUB,
            "--web.config.file", str(web),
            "--webhook.listen-address", f"127.0.0.1:{port}",
        ]  # fmt: skip
        env = {"EIGHTBYEIGHT_API_KEY": KEY, "EIGHTBYEIGHT_WEBHOOK_AUTH_HEADER": SECRET}

        def ready(url: str) -> bool:
            return requests.get(url + "/-/healthy", verify=pki.ca, timeout=2).status_code == 200

        log = tmp_path / "exporter.log"
        with exporter_process(argv, env, log, scheme="https", ready=ready) as (url, _):
            hook = f"https://127.0.0.1:{port}{CALLBACK_PATH}"
            body = js(vss(session="over-tls"))
            sent = requests.post(hook, data=body, headers={"Authorization": SECRET}, verify=pki.ca)
            assert sent.status_code == 200
            basic = requests.post(hook, data=body, auth=(USER, PASSWORD), verify=pki.ca)
            assert basic.status_code == 401
            assert requests.get(url + "/metrics", verify=pki.ca, timeout=10).status_code == 401
            metrics = requests.get(url + "/metrics", auth=(USER, PASSWORD), verify=pki.ca)
            counted = outcomes_in(metrics.text)
            assert counted["accepted"] == 1
