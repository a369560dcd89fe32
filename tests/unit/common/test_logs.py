"""Log lines: one per event, logfmt or JSON, never a key.

Also here: Log lines to the character: timestamp, level names, quoting, redaction marker, the root logger
set-up. Pinned exactly because operators' log pipelines parse them."""

from __future__ import annotations

import io
import json
import logging

import pytest

from exporter.common.logs import (
    JsonFormatter,
    LogfmtFormatter,
    RedactSecrets,
    log_event,
    setup_logging,
)

KEY = "log-test-key-5555"


def record(msg, **fields):
    rec = logging.LogRecord("exporter.test", logging.WARNING, __file__, 1, msg, None, None)
    rec.fields = fields
    return rec


def test_logfmt_quotes_and_flattens():
    line = LogfmtFormatter().format(record("reading failed", detail='HTTP 500: "oops"\nnext'))
    assert "\n" not in line
    assert 'level=warn msg="reading failed" detail="HTTP 500: \\"oops\\" next"' in line


def test_json_is_one_object_per_line():
    line = JsonFormatter().format(record("x", subaccount="acme-prod", status=401))
    assert json.loads(line)["subaccount"] == "acme-prod"
    assert json.loads(line)["status"] == "401"


@pytest.mark.parametrize("formatter", [LogfmtFormatter(), JsonFormatter()])
def test_secrets_are_redacted_in_message_and_fields(formatter):
    rec = record(f"token {KEY} rejected", detail=f"echo: Bearer {KEY}")
    assert RedactSecrets([KEY]).filter(rec)
    line = formatter.format(rec)
    assert KEY not in line
    assert line.count("<redacted>") == 2


def test_exception_is_one_line_not_a_traceback(caplog):
    logger = logging.getLogger("exporter.test")
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        logger.error("failed", exc_info=True)
    line = LogfmtFormatter().format(caplog.records[-1])
    assert "Traceback" not in line
    assert 'err="ValueError: bad thing"' in line


def test_log_event_carries_fields(caplog):
    with caplog.at_level(logging.INFO):
        log_event(logging.getLogger("exporter.test"), logging.INFO, "hello", a=1)
    assert caplog.records[-1].fields == {"a": 1}


@pytest.mark.parametrize("cut", [4, 9, len(KEY) - 1])
@pytest.mark.parametrize("formatter", [LogfmtFormatter(), JsonFormatter()])
def test_a_prefix_of_the_key_left_at_the_end_by_a_cut_is_redacted(formatter, cut):
    rec = record(f"token {KEY[:cut]}", detail=f"HTTP 401: {'x' * 50} Bearer {KEY[:cut]}")
    assert RedactSecrets([KEY]).filter(rec)
    line = formatter.format(rec)
    assert KEY[:cut] not in line
    assert line.count("<redacted>") == 2


def test_short_endings_and_prefixes_in_the_middle_are_left_alone():
    # Three characters say nothing about the key, and would match ordinary words.
    rec = record(f"ends in {KEY[:3]}", detail=f"{KEY[:8]} then more")
    RedactSecrets([KEY]).filter(rec)
    assert rec.getMessage() == f"ends in {KEY[:3]}"
    assert rec.fields["detail"] == f"{KEY[:8]} then more"


# --- Log lines to the character: timestamp, level names, quoting, redaction marker, the root logger ----------

KEY_EXACT = "log-exact-key-7777"
# 2026-11-30T08:15:56.789Z
CREATED = 1796026556.789


def record_exact(msg: str, level: int = logging.WARNING, **fields: object) -> logging.LogRecord:
    rec = logging.LogRecord("exporter.test", level, __file__, 1, msg, None, None)
    rec.created = CREATED
    if fields:
        rec.fields = fields
    return rec


def test_logfmt_line_is_exact():
    line = LogfmtFormatter().format(record_exact("scrape failed", subaccount="acme", status=401))
    assert (
        line
        == 'ts=2026-11-30T08:15:56.789Z level=warn msg="scrape failed" subaccount=acme status=401'
    )


def test_timestamp_milliseconds_are_the_fraction_of_the_second():
    rec = record_exact("x")
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
    assert json.loads(JsonFormatter().format(record_exact("x", level=level)))["level"] == name


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
    line = LogfmtFormatter().format(record_exact("m", v=value))
    assert line.endswith(f" v={shown}")


def test_json_keeps_non_ascii_text_as_is():
    line = JsonFormatter().format(record_exact("Zürich nümber"))
    assert '"msg": "Zürich nümber"' in line


def test_redaction_replaces_the_key_with_the_marker_only():
    rec = record_exact(f"token {KEY_EXACT} rejected", detail=f"[{KEY_EXACT}]")
    RedactSecrets([KEY_EXACT]).filter(rec)
    assert rec.getMessage() == "token <redacted> rejected"
    assert rec.fields == {"detail": "[<redacted>]"}


def test_redaction_handles_records_without_fields():
    rec = record_exact(f"token {KEY_EXACT}")
    assert RedactSecrets([KEY_EXACT]).filter(rec) is True
    assert rec.getMessage() == "token <redacted>"


def test_with_no_secrets_the_filter_keeps_every_record():
    assert RedactSecrets([]).filter(record_exact("x")) is True
    assert RedactSecrets(["", ""]).filter(record_exact("x")) is True


def test_exception_without_traceback_is_still_shown():
    rec = record_exact("failed")
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
    setup_logging(level, fmt, [KEY_EXACT])
    assert root_logger.level == root_level
    [handler] = root_logger.handlers
    assert isinstance(handler.formatter, JsonFormatter if fmt == "json" else LogfmtFormatter)
    handler.stream = io.StringIO()
    logging.getLogger("exporter.test").error("key %s", KEY_EXACT)
    out = handler.stream.getvalue()
    assert out.count("\n") == 1
    assert "key <redacted>" in out
    assert KEY_EXACT not in out


def test_setup_logging_writes_to_stderr(root_logger, capsys):
    setup_logging("info", "logfmt")
    logging.getLogger("exporter.test").info("hello")
    assert "msg=hello" in capsys.readouterr().err
