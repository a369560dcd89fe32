"""Logging in the two formats Prometheus components use: logfmt and JSON, one line per event.

A filter replaces every configured API key with `<redacted>` (see exporter.redact), so that even
a message built from an upstream error that echoed the key, whole or cut short, cannot leak it.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterable

from exporter.redact import redact

LEVELS = ("debug", "info", "warn", "error")
FORMATS = ("logfmt", "json")
_LEVEL_NAMES = {"DEBUG": "debug", "INFO": "info", "WARNING": "warn", "ERROR": "error"}


class RedactSecrets(logging.Filter):
    """Replaces secret strings in the rendered message and its fields."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._secrets = tuple(s for s in secrets if s)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        record.msg, record.args = redact(record.getMessage(), self._secrets), None
        fields = getattr(record, "fields", None)
        if fields:
            record.fields = {k: self._clean(v) for k, v in fields.items()}
        return True

    def _clean(self, value: object) -> object:
        return redact(str(value), self._secrets)


def _one_line(value: object) -> str:
    return " ".join(str(value).split())


def _logfmt_value(value: object) -> str:
    text = _one_line(value)
    if text and not any(c in text for c in ' ="\\'):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _timestamp(record: logging.LogRecord) -> str:
    millis = int(record.created * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{millis:03d}Z"


def _pairs(record: logging.LogRecord) -> list[tuple[str, object]]:
    pairs: list[tuple[str, object]] = [
        ("ts", _timestamp(record)),
        ("level", _LEVEL_NAMES.get(record.levelname, record.levelname.lower())),
        ("msg", record.getMessage()),
    ]
    pairs.extend(getattr(record, "fields", {}).items())
    if record.exc_info and record.exc_info[1] is not None:
        # One line, never a traceback: the exception type and text are enough to act on.
        exc = record.exc_info[1]
        pairs.append(("err", f"{type(exc).__name__}: {exc}"))
    return pairs


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{k}={_logfmt_value(v)}" for k, v in _pairs(record))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({k: _one_line(v) for k, v in _pairs(record)}, ensure_ascii=False)


def setup_logging(level: str, fmt: str, secrets: Iterable[str] = ()) -> None:
    """Configure the root logger: one handler on stderr, the chosen format, secrets redacted."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    handler.addFilter(RedactSecrets(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel({"warn": "WARNING"}.get(level, level.upper()))


def log_event(logger: logging.Logger, level: int, msg: str, **fields: object) -> None:
    """Log `msg` with structured key=value fields."""
    logger.log(level, msg, extra={"fields": fields})
