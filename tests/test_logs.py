"""Log lines: one per event, logfmt or JSON, never a key."""

import json
import logging

import pytest

from exporter.common.logs import JsonFormatter, LogfmtFormatter, RedactSecrets, log_event

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
