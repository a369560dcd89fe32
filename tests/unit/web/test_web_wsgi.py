"""The WSGI application's answers to the byte: status lines, headers, bodies, for every route.

Called in-process with a plain environ and a fake API client, so every case takes milliseconds;
the same routes over real HTTP are in tests/unit/web/test_server.py and tests/unit/web/test_probe_hardening.py.
"""

from __future__ import annotations

import gzip
import json
import logging
from types import SimpleNamespace
from typing import Any

import pytest

from exporter import __version__
from exporter.app import build_app
from exporter.config.settings import Settings, SubaccountConfig
from exporter.config.values import Secret
from exporter.web import routes as web_module
from exporter.web.routes import CONTENT_TYPE_LATEST
from tests.support.exporters import FakeClock, parse_samples, value
from tests.support.fake_api import number, numbers_body

SUB = "acme-prod"
ODD = "a&b.c"  # allowed by the subaccount pattern, yet needs escaping in HTML and URLs
BODY = json.dumps(numbers_body([number("+6531234567")])).encode()
TEXT = "text/plain; charset=utf-8"


class Client:
    def __init__(self) -> None:
        self.calls: list[tuple[str, float | None]] = []

    def fetch_numbers(self, subaccount: str, timeout: float | None = None) -> bytes:
        self.calls.append((subaccount, timeout))
        return BODY


def make_app(**overrides: Any):
    settings = Settings(
        subaccounts=(
            SubaccountConfig(SUB, Secret("k"), "http://127.0.0.1:1"),
            SubaccountConfig(ODD, Secret("k"), "http://127.0.0.1:1"),
        ),
        api_key=Secret("k"),
        **overrides,
    )
    client = Client()
    # A fake clock: scrape durations are 0, so two answers to the same request are equal.
    return build_app(settings, lambda subaccount: client, FakeClock()), client


def call(app, path: str, query: str | None = None, method: str = "GET", **extra: str):
    environ: dict[str, Any] = {"REQUEST_METHOD": method, "PATH_INFO": path, **extra}
    if query is not None:
        environ["QUERY_STRING"] = query
    seen: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen.append((status, headers))

    body = b"".join(app(environ, start_response))
    [(status, headers)] = seen
    return status, headers, body


def text_answer(status: str, text: str) -> tuple[str, list[tuple[str, str]], bytes]:
    body = text.encode()
    return status, [("Content-Type", TEXT), ("Content-Length", str(len(body)))], body


def test_status_page_headers_and_links():
    app, _ = make_app()
    status, headers, body = call(app, "/")
    assert status == "200 OK"
    assert headers == [
        ("Content-Type", "text/html; charset=utf-8"),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
    ]
    page = body.decode()
    assert page.startswith("<!DOCTYPE html>")
    assert "<h1>8x8 Number Health exporter</h1>" in page
    assert f"Version {__version__}" in page
    for link in (
        '<a href="/metrics">Metrics</a>',
        '<a href="/-/healthy">Health</a>',
        '<a href="/probe?target=acme-prod">/probe?target=acme-prod</a>',
        '<a href="/probe?target=a%26b.c">/probe?target=a&amp;b.c</a>',
    ):
        assert link in page
    assert '<tr data-subaccount="a&amp;b.c">' in page
    assert "<script" not in page


def test_landing_page_links_the_configured_telemetry_path():
    app, _ = make_app(telemetry_path="/x&y")
    assert b'<a href="/x&amp;y">Metrics</a>' in call(app, "/")[2]


def test_metrics_answer_has_exact_headers_and_self_metrics():
    app, client = make_app()
    status, headers, body = call(app, "/metrics")
    assert status == "200 OK"
    assert headers == [
        ("Content-Type", CONTENT_TYPE_LATEST),
        ("Vary", "Accept, Accept-Encoding"),
        ("Content-Length", str(len(body))),
    ]
    samples = parse_samples(body.decode())
    assert value(samples, "eightbyeight_exporter_build_info", version=__version__) == 1
    assert value(samples, "eightbyeight_up", subaccount=SUB) == 1
    assert value(samples, "eightbyeight_up", subaccount=ODD) == 1
    assert sorted(sub for sub, _ in client.calls) == [ODD, SUB]


def test_metrics_gzip_when_accepted():
    app, _ = make_app()
    status, headers, body = call(app, "/metrics", HTTP_ACCEPT_ENCODING="deflate, gzip")
    assert status == "200 OK"
    assert headers == [
        ("Content-Type", CONTENT_TYPE_LATEST),
        ("Vary", "Accept, Accept-Encoding"),
        ("Content-Encoding", "gzip"),
        ("Content-Length", str(len(body))),
    ]
    samples = parse_samples(gzip.decompress(body).decode())
    assert value(samples, "eightbyeight_up", subaccount=SUB) == 1


def test_metrics_plain_without_gzip_in_accept_encoding():
    app, _ = make_app()
    _, headers, body = call(app, "/metrics", HTTP_ACCEPT_ENCODING="identity")
    assert ("Content-Encoding", "gzip") not in headers
    assert body.startswith(b"# HELP")


def test_head_has_the_length_of_get_but_no_body(monkeypatch):
    # The wall time is rendered too: frozen, the two answers are the same length.
    monkeypatch.setattr(web_module, "time", SimpleNamespace(time=lambda: 1_700_000_000.0))
    app, _ = make_app()
    _, get_headers, get_body = call(app, "/probe", f"target={SUB}")
    status, headers, body = call(app, "/probe", f"target={SUB}", method="HEAD")
    assert status == "200 OK"
    assert body == b""
    assert (
        headers
        == get_headers
        == [
            ("Content-Type", CONTENT_TYPE_LATEST),
            ("Vary", "Accept, Accept-Encoding"),
            ("Content-Length", str(len(get_body))),
        ]
    )


def test_probe_answers_the_target_only_without_self_metrics():
    app, client = make_app()
    _, _, body = call(app, "/probe", f"target={SUB}")
    samples = parse_samples(body.decode())
    assert value(samples, "eightbyeight_up", subaccount=SUB) == 1
    assert value(samples, "eightbyeight_up", subaccount=ODD) is None
    assert "eightbyeight_exporter_build_info" not in body.decode()
    assert [sub for sub, _ in client.calls] == [SUB]


@pytest.mark.parametrize("query", [None, "", "target=", "target=a&target=b", "XXXX", "other=x"])
def test_probe_needs_exactly_one_target(query):
    app, client = make_app()
    assert call(app, "/probe", query) == text_answer(
        "400 Bad Request", "exactly one 'target' is required\n"
    )
    assert client.calls == []


def test_probe_rejects_an_invalid_target():
    app, _ = make_app()
    assert call(app, "/probe", "target=no") == text_answer(
        "400 Bad Request", "invalid target: must match ^[A-Za-z0-9\\-._&]{3,50}$\n"
    )


def test_probe_refuses_a_target_not_allowed():
    app, client = make_app(probe_allowed=frozenset({SUB}))
    assert call(app, "/probe", "target=acme-dev") == text_answer(
        "403 Forbidden", "target is not an allowed subaccount\n"
    )
    assert client.calls == []
    assert call(app, "/probe", f"target={SUB}")[0] == "200 OK"


def test_probe_target_is_percent_decoded():
    app, client = make_app()
    assert call(app, "/probe", "target=a%26b.c")[0] == "200 OK"
    assert [sub for sub, _ in client.calls] == [ODD]


@pytest.mark.parametrize(
    ("path", "method", "expected"),
    [
        ("/-/healthy", "GET", text_answer("200 OK", "OK\n")),
        ("/nothing", "GET", text_answer("404 Not Found", "not found\n")),
    ],
)
def test_plain_text_answers(path, method, expected):
    app, _ = make_app()
    assert call(app, path, method=method) == expected


def test_other_methods_are_refused_with_allow():
    app, _ = make_app()
    status, headers, body = call(app, "/metrics", method="POST")
    assert status == "405 Method Not Allowed"
    assert body == b"only GET is supported\n"
    assert headers == [
        ("Content-Type", TEXT),
        ("Content-Length", str(len(body))),
        ("Allow", "GET, HEAD"),
    ]


def test_an_unexpected_failure_is_a_500_and_one_log_line(monkeypatch, caplog):
    app, _ = make_app()

    def broken(*args):
        raise RuntimeError("boom")

    monkeypatch.setattr(app, "_metrics", broken)
    with caplog.at_level(logging.ERROR, "exporter.web.routes"):
        assert call(app, "/metrics") == text_answer("500 Internal Server Error", "internal error\n")
    [record] = caplog.records
    assert record.getMessage() == "request failed"
    assert record.fields == {"path": "/metrics", "err": "RuntimeError"}


def test_an_environ_without_method_or_path_is_a_get_of_the_landing_page():
    app, _ = make_app()
    seen = []
    body = b"".join(app({}, lambda status, headers: seen.append(status)))
    assert seen == ["200 OK"]
    assert body.startswith(b"<!DOCTYPE html>")


def test_a_failure_without_a_path_logs_an_empty_path(monkeypatch, caplog):
    app, _ = make_app()

    def broken(*args):
        raise KeyError("x")

    monkeypatch.setattr(app, "_status", broken)
    with caplog.at_level(logging.ERROR, "exporter.web.routes"):
        b"".join(app({}, lambda status, headers: None))
    assert caplog.records[-1].fields == {"path": "", "err": "KeyError"}
