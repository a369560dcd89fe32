"""Log lines to the character: timestamp, level names, quoting, redaction marker, the root logger
set-up. Pinned exactly because operators' log pipelines parse them."""

from __future__ import annotations

import io
import json
import logging

import pytest

from exporter.common.logs import JsonFormatter, LogfmtFormatter, RedactSecrets, setup_logging

KEY = "log-exact-key-7777"
# 2026-11-30T08:15:56.789Z
CREATED = 1796026556.789


def record(msg: str, level: int = logging.WARNING, **fields: object) -> logging.LogRecord:
    rec = logging.LogRecord("exporter.test", level, __file__, 1, msg, None, None)
    rec.created = CREATED
    if fields:
        rec.fields = fields
    return rec


def test_logfmt_line_is_exact():
    line = LogfmtFormatter().format(record("scrape failed", subaccount="acme", status=401))
    assert (
        line
        == 'ts=2026-11-30T08:15:56.789Z level=warn msg="scrape failed" subaccount=acme status=401'
    )


def test_timestamp_milliseconds_are_the_fraction_of_the_second():
    rec = record("x")
    rec.created = 1796026556.007
    assert LogfmtFormatter().format(rec).startswith("ts=2026-11-30T08:15:56.007Z ")


@pytest.mark.parametrize(
    ("level", "name"),
    [
        (logging.DEBUG, "debug"),
        (logging.INFO, "info"),
        (logging.WARNING, "warn"),
        (logging.ERROR, "error"),
        (logging.CRITICAL, "critical"),
    ],
)
def test_level_names(level, name):
    assert json.loads(JsonFormatter().format(record("x", level=level)))["level"] == name


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("XyzX", "XyzX"),
        ("a b", '"a b"'),
        ("a=b", '"a=b"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("C:\\dir", '"C:\\\\dir"'),
        ("", '""'),
    ],
)
def test_logfmt_quotes_only_what_needs_quoting(value, shown):
    line = LogfmtFormatter().format(record("m", v=value))
    assert line.endswith(f" v={shown}")


def test_json_keeps_non_ascii_text_as_is():
    line = JsonFormatter().format(record("Zürich nümber"))
    assert '"msg": "Zürich nümber"' in line


def test_redaction_replaces_the_key_with_the_marker_only():
    rec = record(f"token {KEY} rejected", detail=f"[{KEY}]")
    RedactSecrets([KEY]).filter(rec)
    assert rec.getMessage() == "token <redacted> rejected"
    assert rec.fields == {"detail": "[<redacted>]"}


def test_redaction_handles_records_without_fields():
    rec = record(f"token {KEY}")
    assert RedactSecrets([KEY]).filter(rec) is True
    assert rec.getMessage() == "token <redacted>"


def test_with_no_secrets_the_filter_keeps_every_record():
    assert RedactSecrets([]).filter(record("x")) is True
    assert RedactSecrets(["", ""]).filter(record("x")) is True


def test_exception_without_traceback_is_still_shown():
    rec = record("failed")
    rec.exc_info = (ValueError, ValueError("bad"), None)
    assert LogfmtFormatter().format(rec).endswith(' err="ValueError: bad"')


@pytest.fixture
def root_logger():
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    yield root
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)


@pytest.mark.parametrize(
    ("fmt", "level", "root_level"),
    [("json", "warn", logging.WARNING), ("logfmt", "debug", logging.DEBUG)],
)
def test_setup_logging_installs_one_redacting_handler(root_logger, fmt, level, root_level):
    setup_logging(level, fmt, [KEY])
    assert root_logger.level == root_level
    [handler] = root_logger.handlers
    assert isinstance(handler.formatter, JsonFormatter if fmt == "json" else LogfmtFormatter)
    handler.stream = io.StringIO()
    logging.getLogger("exporter.test").error("key %s", KEY)
    out = handler.stream.getvalue()
    assert out.count("\n") == 1
    assert "key <redacted>" in out
    assert KEY not in out


def test_setup_logging_writes_to_stderr(root_logger, capsys):
    setup_logging("info", "logfmt")
    logging.getLogger("exporter.test").info("hello")
    assert "msg=hello" in capsys.readouterr().err
