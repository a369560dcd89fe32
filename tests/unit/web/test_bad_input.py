"""The bad-input matrix: one exporter process, scripted hostile answers from the upstream.

For every case, /metrics over real HTTP answers 200 by the scrape's deadline rather than
when the upstream is done (which, for a server that never answers, is a minute), with the
right eightbyeight_up and eightbyeight_invalid_records; the process lives; its memory stays
bounded; a failure is logged as exactly one line naming the subaccount, the HTTP status and the
reason; and the API key appears in no log line and no response.
"""

from __future__ import annotations

import gc
import gzip
import json
import subprocess
import time
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.exporters import (
    InProcessExporter,
    exporter_process,
    parse_samples,
    rss_kib,
    value,
)
from tests.support.fake_api import FakeApi, Reply, number, numbers_body

pytestmark = pytest.mark.slow

KEY = "sk-8x8-matrix-7f3a9c2e51d04b6b-never-shown"
HALF_KEY = KEY[: len(KEY) // 2]  # half the key is as much a leak as the whole
SUB = "acme-prod"
SCRAPE_TIMEOUT = 3.0  # what Prometheus would send; the exporter's deadline is 0.5 s less
# A server that never answers holds for a minute (FakeApi's hang), within a longer API timeout:
# an answer that waited for it takes that long, one that kept to the deadline never half of it.
HANG = 60.0
BOUND = HANG / 2
CAP = 16 * 2**20
RSS_LIMIT_KIB = 300 * 1024


def body(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def ok(records: list[Any], **extra: Any) -> Reply:
    return Reply.json(numbers_body(records, **extra))


VOICE_401 = {"statusCode": 401, "statusMessage": "Authentication header not found or token invalid"}
PLATFORM_500 = {
    "code": 1500,
    "message": "Internal error",
    "errorId": "0f9ad2b4-1c55-4b4e-9f51-3c1d63a0b1c2",
    "timestamp": "2024-07-01T05:50:23.550Z",
}
# Every control character but the newline, and the line and paragraph separators.
CONTROL = "".join(chr(c) for c in (*range(0x20), *range(0x7F, 0xA0)) if c != 0x0A) + "\u2028\u2029"
HTML = b"<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1></body></html>"


@dataclass
class Case:
    reply: Reply
    up: int
    reason: str | None = None  # the failure reason logged (None: success, nothing logged)
    status: str = "none"  # the status field of the log line
    invalid: int = 0
    checks: dict[tuple[str, tuple[tuple[str, str], ...]], float | None] = field(
        default_factory=dict
    )


def metric(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, tuple(sorted({"subaccount": SUB, **labels}.items()))


def fail(reply: Reply, reason: str, status: int | str = "none") -> Case:
    return Case(reply, 0, reason, str(status))


def envelope(status: int, doc: dict[str, Any], **kwargs: Any) -> Reply:
    return Reply.json(doc, status, **kwargs)


def gzip_bomb(size: int) -> Reply:
    """A small gzip body that inflates past the cap into valid JSON (padded with whitespace)."""
    doc = body(numbers_body(two()))
    packed = gzip.compress(doc[:-1] + b" " * size + b"}", compresslevel=9)
    return Reply(200, packed, {"Content-Type": "application/json", "Content-Encoding": "gzip"})


def inventory_over(size: int) -> Reply:
    """A valid inventory of distinct numbers, just over `size` bytes, sent without a
    Content-Length: only the cap enforced while reading can refuse it."""
    record = len(body(number("+6500000000"))) + 2
    records = [number(f"+65{i:08d}") for i in range(size // record + 1)]
    doc = body(numbers_body(records))
    while len(doc) <= size:
        records.append(number(f"+66{len(records):08d}"))
        doc = body(numbers_body(records))
    return Reply(200, doc, {"Content-Type": "application/json"}, length=False)


def two(**overrides: Any) -> list[dict[str, Any]]:
    return [number("+6531234567", **overrides), number("+6531234568")]


CASES: dict[str, Case] = {
    # Every error status the 8x8 platform documents, in both envelopes and none.
    "400 voice envelope": fail(
        envelope(400, {"statusCode": 400, "statusMessage": "Bad request"}), "bad_request", 400
    ),
    "401 voice envelope": fail(envelope(401, VOICE_401), "unauthorized", 401),
    "401 echoing the key": fail(
        envelope(401, {"statusCode": 401, "statusMessage": f"token {KEY} is not valid"}),
        "unauthorized",
        401,
    ),
    "403 platform envelope": fail(
        envelope(403, {**PLATFORM_500, "code": 1403, "message": "IP not allowed"}), "forbidden", 403
    ),
    "404 subaccount not found": fail(
        envelope(
            404, {"statusCode": 404, "statusMessage": "SubAccount not found by Id : acme-prod"}
        ),
        "not_found",
        404,
    ),
    "410 gone": fail(envelope(410, {"statusCode": 410, "statusMessage": "Gone"}), "not_found", 410),
    "422 with errorId": fail(
        envelope(422, {"statusCode": "1001", "statusMessage": "Invalid", "errorId": "e-1"}),
        "bad_request",
        422,
    ),
    "426 upgrade required": fail(
        Reply(426, b"", {"Upgrade": "TLS/1.3", "Connection": "Upgrade"}), "client_error", 426
    ),
    "429 retry after 1s": fail(
        envelope(
            429, {"statusCode": 429, "statusMessage": "Too many"}, headers={"Retry-After": "1"}
        ),
        "rate_limited",
        429,
    ),
    "429 retry after an hour": fail(Reply(429, b"", {"Retry-After": "3600"}), "rate_limited", 429),
    "429 unreadable retry after": fail(
        Reply(429, b"", {"Retry-After": "tomorrow-ish"}), "rate_limited", 429
    ),
    "500 platform envelope": fail(envelope(500, PLATFORM_500), "server_error", 500),
    "502 HTML from a proxy": fail(
        Reply(502, HTML, {"Content-Type": "text/html"}), "server_error", 502
    ),
    "503 empty body": fail(Reply(503, b""), "server_error", 503),
    "504 gateway timeout": fail(Reply(504, b"upstream timed out"), "server_error", 504),
    "302 redirect elsewhere": fail(
        Reply(302, b"", {"Location": "http://127.0.0.1:9/steal"}), "invalid_response", 302
    ),
    # 200 answers that are not what they should be.
    "200 HTML": fail(Reply(200, HTML, {"Content-Type": "text/html"}), "invalid_response", 200),
    "200 empty body": fail(Reply(200, b""), "invalid_response", 200),
    "200 truncated JSON": fail(
        Reply(200, body(numbers_body(two()))[:-40]), "invalid_response", 200
    ),
    "200 invalid JSON": fail(Reply(200, b'{"numbers": [1, 2,}'), "invalid_response", 200),
    "200 NaN and Infinity literals": fail(
        Reply(
            200, b'{"totalNumbers": NaN, "numbers": [{"msisdn": "+1", "rentalPrice": Infinity}]}'
        ),
        "invalid_response",
        200,
    ),
    "200 top-level array": fail(Reply(200, body([number()])), "invalid_response", 200),
    "200 top-level string": fail(Reply(200, b'"numbers"'), "invalid_response", 200),
    "200 top-level null": fail(Reply(200, b"null"), "invalid_response", 200),
    "200 top-level number": fail(Reply(200, b"42"), "invalid_response", 200),
    "200 numbers is an object": fail(Reply(200, body({"numbers": {}})), "invalid_response", 200),
    # A response field of the wrong type costs that field only.
    "200 totalNumbers is a string": Case(
        ok(two(), totalNumbers="2"),
        1,
        checks={
            metric("eightbyeight_virtual_numbers"): None,
            metric("eightbyeight_virtual_numbers_listed"): 2,
        },
    ),
    "200 totalNumbers beyond a float": Case(
        Reply(200, b'{"totalNumbers": 1e400, "numbers": []}'),
        1,
        checks={metric("eightbyeight_virtual_numbers"): None},
    ),
    "200 lastUpdatedAt in epoch milliseconds": Case(
        ok(two(), lastUpdatedAt=1719813023550),
        1,
        checks={
            metric("eightbyeight_last_updated_timestamp_seconds"): None,
            metric("eightbyeight_virtual_numbers"): 2,
        },
    ),
    "200 statusMessage is a number": Case(
        ok(two(), statusMessage=200), 1, checks={metric("eightbyeight_virtual_numbers"): 2}
    ),
    "200 voice error envelope": fail(Reply.json(VOICE_401), "unauthorized", 200),
    "200 platform error envelope": fail(Reply.json(PLATFORM_500), "invalid_response", 200),
    "200 error statusCode next to a numbers list": fail(
        ok(two(), statusCode=401, statusMessage="token invalid"), "unauthorized", 200
    ),
    "200 error 500 next to a numbers list": fail(
        ok(two(), statusCode="500", statusMessage="Internal error"), "server_error", 200
    ),
    **{
        f"200 platform code {code}": fail(Reply.json({**PLATFORM_500, "code": code}), reason, 200)
        for code, reason in (
            (1200, "unauthorized"),
            (1201, "forbidden"),
            (1300, "not_found"),
            (2000, "server_error"),
        )
    },
    "200 platform code 1201 next to a numbers list": fail(
        ok(two(), statusCode=None, code=1201, message="Forbidden"), "forbidden", 200
    ),
    "200 nested 100000 deep": fail(
        Reply(200, b"[" * 100_000 + b"]" * 100_000), "invalid_response", 200
    ),
    "200 invalid UTF-8 in the envelope": fail(
        Reply(200, b'{"totalNumbers": 0, "statusMessage": "\xff\xfe", "numbers": []}'),
        "invalid_response",
        200,
    ),
    "200 byte order mark": fail(
        Reply(200, b"\xef\xbb\xbf" + body(numbers_body(two()))), "invalid_response", 200
    ),
    "200 10 MB of whitespace": fail(
        Reply(200, b" \n\t\r" * (10 * 2**20 // 4)), "invalid_response", 200
    ),
    "200 body over the cap": fail(inventory_over(CAP), "invalid_response", 200),
    "200 gzip bomb over the cap": fail(gzip_bomb(200 * 2**20), "invalid_response", 200),
    "connection reset mid-body": fail(
        Reply(200, body(numbers_body(two())), reset_after=30), "connection_error", 200
    ),
    "server that never answers": fail(Reply(hang=True), "timeout"),
    # Record-level problems: the response still counts, bad records are skipped and counted.
    "huge numbers": Case(
        ok(
            [
                number("+6531234567", rentalPrice=1e308, billingUnit=10**30),
                number("+6531234568", rentalPrice=1.7976931348623157e308),
            ],
            totalNumbers=10**30,
        ),
        1,
        checks={metric("eightbyeight_virtual_numbers"): 1e30},
    ),
    "number beyond a float in a record": Case(
        Reply(
            200,
            b'{"totalNumbers": 2, "numbers": [{"msisdn": "+1", "rentalPrice": 1e400},'
            b' {"msisdn": "+2", "rentalPrice": 1.5}]}',
        ),
        1,
        invalid=1,
        checks={metric("eightbyeight_virtual_numbers_listed"): 1},
    ),
    "negative prices": Case(ok(two(rentalPrice=-5.0, incomingRate=-0.01)), 1),
    "nulls in every field": Case(
        ok([{k: None for k in number()}, {**{k: None for k in number()}, "msisdn": "+6531234567"}]),
        1,
        invalid=1,
        checks={metric("eightbyeight_virtual_numbers_listed"): 1},
    ),
    "null health object and fields": Case(
        ok(
            [
                number(numberHealth=None),
                number(
                    "+6531234568",
                    numberHealth={k: None for k in ("isHealthy", "status", "lastCheckedTime")},
                ),
            ]
        ),
        1,
    ),
    "strings where numbers belong": Case(
        ok(
            [
                number(rentalPrice="5.0"),
                number("+6531234568", billingUnit="60"),
                number("+6531234569"),
            ]
        ),
        1,
        invalid=2,
        checks={metric("eightbyeight_virtual_numbers_listed"): 1},
    ),
    "wrong types in records": Case(
        ok(
            [
                {"msisdn": 6531234567},
                number("+6531234568", numberHealth="healthy"),
                number("+6531234569", numberHealthCheckEnabled="yes"),
                number("+6531234570", numberHealth={"isHealthy": "yes"}),
                1,
                "record",
                None,
                [],
                number("+6531234571"),
            ]
        ),
        1,
        invalid=8,
        checks={metric("eightbyeight_virtual_numbers_listed"): 1},
    ),
    "unused record fields of any type": Case(
        ok(
            [
                number(uri=42, dateCreated=1719813023550, dateUpdated={"at": [1, 2]}),
                number("+6531234568", uri=None, dateCreated=False, dateUpdated=[]),
            ]
        ),
        1,
        checks={metric("eightbyeight_virtual_numbers_listed"): 2},
    ),
    "one record nested 1000 deep": Case(
        Reply(
            200,
            body(
                numbers_body([number(uri="DEEP"), number("+6531234568"), number("+6531234569")])
            ).replace(b'"DEEP"', b"[" * 1000 + b"]" * 1000),
        ),
        1,
        invalid=1,
        checks={metric("eightbyeight_virtual_numbers_listed"): 2},
    ),
    "a lone surrogate in one record": Case(
        Reply(
            200,
            body(
                numbers_body(
                    [number(referenceId="HALF"), number("+6531234568"), number("+6531234569")]
                )
            ).replace(b"HALF", b"\\ud800"),
        ),
        1,
        invalid=1,
        checks={metric("eightbyeight_virtual_numbers_listed"): 2},
    ),
    "leap second": Case(
        ok(
            [number(numberHealth={"isHealthy": True, "lastCheckedTime": "2016-12-31T23:59:60Z"})],
            lastUpdatedAt="2016-12-31T23:59:60.5Z",
        ),
        1,
        checks={
            metric("eightbyeight_last_updated_timestamp_seconds"): 1483228800.5,
            metric(
                "eightbyeight_number_health_last_checked_timestamp_seconds", msisdn="+6531234567"
            ): 1483228800.0,
        },
    ),
    "the key echoed in label fields": Case(
        ok(
            [
                number("+6531234567"),
                number(KEY),
                number("+6531234568", countryCode=KEY),
                number("+6531234569", numberType=f"type {KEY}"),
                number("+6531234570", operationalStatus=KEY),
                number("+6531234571", referenceId=f"{KEY}/range"),
                number("+6531234572", billingCurrency=KEY),
                number("+6531234573", numberHealth={"isHealthy": True, "status": KEY}),
            ]
        ),
        1,
        invalid=7,
        checks={metric("eightbyeight_virtual_numbers_listed"): 1},
    ),
    "200 error envelope echoing the key": fail(
        Reply.json({"statusCode": 401, "statusMessage": f"{'x' * 190} {KEY} invalid"}),
        "unauthorized",
        200,
    ),
    "control characters in label fields": Case(
        ok(
            [
                number(
                    f"+65{CONTROL}1",
                    countryCode=CONTROL,
                    numberType=CONTROL,
                    operationalStatus=f"Active{CONTROL}",
                    referenceId=CONTROL,
                    billingCurrency=CONTROL,
                    numberHealth={"isHealthy": True, "status": CONTROL},
                ),
                number("+6531234568"),
            ]
        ),
        1,
        checks={metric("eightbyeight_virtual_numbers_listed"): 2},
    ),
    "duplicate msisdns": Case(
        ok([number(), number(), number("+6531234568")]),
        1,
        invalid=1,
        checks={metric("eightbyeight_virtual_numbers_listed"): 2},
    ),
    "unknown enum values": Case(
        ok(
            [
                number(operationalStatus="Suspended"),
                number("+6531234568", operationalStatus="ACTIVE", numberType="SPACE_PHONE"),
                number("+6531234569", numberHealth={"isHealthy": False, "status": "???"}),
            ]
        ),
        1,
        checks={
            metric(
                "eightbyeight_virtual_numbers_by_status",
                country="SG",
                number_type="Mobile",
                operational_status="suspended",
            ): 1,
            metric(
                "eightbyeight_virtual_numbers_by_status",
                country="SG",
                number_type="SPACE_PHONE",
                operational_status="active",
            ): 1,
        },
    ),
    "odd but valid RFC 3339 times": Case(
        ok(
            [
                number(
                    numberHealth={"isHealthy": True, "lastCheckedTime": "2024-07-01t05:50:23.5z"}
                ),
                number(
                    "+6531234568",
                    numberHealth={
                        "isHealthy": True,
                        "lastCheckedTime": "2024-07-01T05:50:23.123456789Z",
                    },
                ),
                number(
                    "+6531234569",
                    numberHealth={
                        "isHealthy": True,
                        "lastCheckedTime": "2024-07-01T13:50:23+08:00",
                    },
                ),
            ],
            lastUpdatedAt="2024-07-01T13:50:23.550+08:00",
        ),
        1,
        checks={
            metric("eightbyeight_last_updated_timestamp_seconds"): 1719813023.55,
            metric(
                "eightbyeight_number_health_last_checked_timestamp_seconds", msisdn="+6531234569"
            ): 1719813023.0,
        },
    ),
    "invalid times": Case(
        ok(
            [
                number(numberHealth={"isHealthy": True, "lastCheckedTime": "yesterday"}),
                number(
                    "+6531234568",
                    numberHealth={"isHealthy": True, "lastCheckedTime": "2024-13-45T99:99:99Z"},
                ),
                number("+6531234569", numberHealth={"isHealthy": True, "lastCheckedTime": ""}),
            ],
            lastUpdatedAt="not a time",
        ),
        1,
        checks={
            metric("eightbyeight_last_updated_timestamp_seconds"): None,
            metric(
                "eightbyeight_number_health_last_checked_timestamp_seconds", msisdn="+6531234567"
            ): None,
        },
    ),
    "totalNumbers disagrees with the list": Case(
        ok(two(), totalNumbers=10),
        1,
        checks={
            metric("eightbyeight_virtual_numbers"): 10,
            metric("eightbyeight_virtual_numbers_listed"): 2,
        },
    ),
    "no numbers key on an empty account": Case(
        Reply.json({"totalNumbers": 0, "statusCode": 0, "statusMessage": "OK"}),
        1,
        checks={metric("eightbyeight_virtual_numbers"): 0},
    ),
    "label values needing escapes": Case(
        ok([number(countryCode='S"G\\\n', referenceId='a"b\\c\nd', numberType="\u00e9\u2603")]),
        1,
    ),
    "one megabyte label value": Case(ok([number(referenceId="r" * 2**20)]), 1),
    "slow but in time": Case(Reply.json(numbers_body(two()), delay=1.0), 1),
}


@pytest.fixture(scope="module")
def api():
    with FakeApi() as fake:
        yield fake


@pytest.fixture(scope="module")
def exporter(api, tmp_path_factory):
    log = tmp_path_factory.mktemp("matrix") / "exporter.log"
    argv = [
        "--api.base-url",
        api.base_url,
        "--subaccount",
        SUB,
        "--api.max-response-size",
        "16MiB",
        "--api.retries",
        "1",
        "--api.timeout",
        "120s",
    ]
    with exporter_process(argv, {"EIGHTBYEIGHT_API_KEY": KEY}, log) as (url, pid):
        yield Exporter(url, pid, log)


@dataclass
class Exporter:
    url: str
    pid: int
    log: Path
    offset: int = 0
    peak_rss_kib: int = 0

    def new_log_lines(self) -> list[str]:
        data = self.log.read_bytes()
        fresh, self.offset = data[self.offset :], len(data)
        return fresh.decode("utf-8", "replace").splitlines()

    def alive(self) -> bool:
        status = Path(f"/proc/{self.pid}/status")
        return status.exists() and "State:\tZ" not in status.read_text()


def scrape(exp: Exporter) -> tuple[requests.Response, float]:
    started = time.monotonic()
    answer = requests.get(
        exp.url + "/metrics",
        headers={"X-Prometheus-Scrape-Timeout-Seconds": str(SCRAPE_TIMEOUT)},
        timeout=2 * HANG,
    )
    return answer, time.monotonic() - started


def test_the_matrix_is_broad_enough():
    assert len(CASES) >= 30
    statuses = {case.reply.status for case in CASES.values()}
    assert {400, 401, 403, 404, 410, 422, 426, 429, 500, 502, 503, 504} <= statuses


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_answer(api, exporter, name):
    case = CASES[name]
    exporter.new_log_lines()  # forget what earlier cases logged
    api.reply = case.reply
    answer, elapsed = scrape(exporter)

    assert answer.status_code == 200
    assert elapsed < BOUND, f"answered after {elapsed:.2f}s"
    text = answer.content.decode()
    samples = parse_samples(text)
    assert all(line.isprintable() for line in text.split("\n"))
    checked = subprocess.run(
        ["promtool", "check", "metrics"], input=answer.content, capture_output=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert value(samples, "eightbyeight_up", subaccount=SUB) == case.up
    assert value(samples, "eightbyeight_invalid_records", subaccount=SUB) == case.invalid
    for (metric_name, labels), expected in case.checks.items():
        got = samples.get((metric_name, frozenset(labels)))
        if expected is None:
            assert got is None, f"{metric_name}{dict(labels)} should be absent"
        else:
            assert got == pytest.approx(expected), f"{metric_name}{dict(labels)}"
    assert HALF_KEY not in answer.text

    assert exporter.alive()
    rss = rss_kib(exporter.pid)
    exporter.peak_rss_kib = max(exporter.peak_rss_kib, rss)
    assert rss < RSS_LIMIT_KIB, f"RSS {rss} KiB"

    lines = exporter.new_log_lines()
    assert all(HALF_KEY not in line for line in lines)
    assert all(line.startswith("ts=") for line in lines), lines
    failures = [line for line in lines if "reading virtual numbers failed" in line]
    if case.reason is None:
        assert failures == []
    else:
        assert len(failures) == 1, lines
        line = failures[0]
        assert "level=warn" in line
        assert f"subaccount={SUB}" in line
        assert f"status={case.status}" in line
        assert f"reason={case.reason}" in line


def test_upstream_saw_the_key_only_in_the_authorization_header(api, exporter):
    api.reply = CASES["slow but in time"].reply
    scrape(exporter)
    path, headers = api.requests[-1]
    assert headers["Authorization"] == f"Bearer {KEY}"
    assert KEY not in path
    assert all(KEY not in v for k, v in headers.items() if k != "Authorization")


def test_redirects_are_not_followed(api, exporter):
    before = api.count
    api.reply = Reply(307, b"", {"Location": api.base_url + "/elsewhere"})
    answer, _ = scrape(exporter)
    assert value(parse_samples(answer.text), "eightbyeight_up", subaccount=SUB) == 0
    assert api.count == before + 1
    assert api.requests[-1][0] == f"/api/v1/subaccounts/{SUB}/numbers"


def test_exporter_counts_failures_by_reason_and_stays_healthy(api, exporter):
    api.reply = Reply(503, b"")
    scrape(exporter)
    answer, _ = scrape(exporter)
    samples = parse_samples(answer.text)
    assert (
        value(
            samples,
            "eightbyeight_api_request_failures_total",
            subaccount=SUB,
            reason="server_error",
        )
        >= 2
    )
    api.reply = CASES["slow but in time"].reply
    answer, _ = scrape(exporter)
    assert value(parse_samples(answer.text), "eightbyeight_up", subaccount=SUB) == 1
    assert requests.get(exporter.url + "/-/healthy", timeout=5).status_code == 200
    assert KEY not in exporter.log.read_text(errors="replace")


BIG = ["200 10 MB of whitespace", "200 body over the cap", "200 gzip bomb over the cap"]


def test_repeated_big_bodies_do_not_grow_memory(api, exporter):
    """Once warm, more big bodies must leave RSS flat but for a rare allocator step (glibc
    keeps a freed heap for reuse): a retained body, 10-16 MB each time, would show as a climb
    or a sawtooth far wider than that."""
    after_round = []
    for _ in range(12):
        for name in BIG:
            api.reply = CASES[name].reply
            answer, _ = scrape(exporter)
            assert answer.status_code == 200
        after_round.append(rss_kib(exporter.pid))
    print(
        f"RSS after rounds of big bodies (KiB): {after_round}; matrix peak {exporter.peak_rss_kib}"
    )
    assert max(after_round) < RSS_LIMIT_KIB
    settled = after_round[6:]
    assert max(settled) - min(settled) < 24 * 1024, after_round


def test_failed_scrapes_leave_no_cycles_holding_the_body():
    """A failure's traceback reaches the frames holding the body; it must not be kept."""
    big = Reply(200, b" " * (4 * 2**20))
    with (
        FakeApi(big) as fake,
        InProcessExporter(
            ["--api.base-url", fake.base_url, "--subaccount", SUB, "--api.retries", "0"],
            api_key=KEY,
        ) as exp,
    ):
        gc.collect()
        gc.disable()
        try:
            for _ in range(3):
                assert exp.get().status_code == 200
            gc.set_debug(gc.DEBUG_SAVEALL)
            gc.collect()
            holders = [
                frame.f_code.co_name
                for frame in gc.garbage
                if isinstance(frame, types.FrameType)
                and any(
                    isinstance(v, bytes | bytearray) and len(v) >= 2**20
                    for v in frame.f_locals.values()
                )
            ]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()
    assert holders == []
