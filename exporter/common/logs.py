"""Logging in the two formats Prometheus components use: logfmt and JSON, one line per event.

A filter replaces every configured API key with `<redacted>` (see exporter.common.redact), so that even
a message built from an upstream error that echoed the key, whole or cut short, cannot leak it.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterable

from exporter.common.journal import current_entry
from exporter.common.redact import redact

_LEVEL_NAMES = {"DEBUG": "debug", "INFO": "info", "WARNING": "warn", "ERROR": "error"}


class RedactSecrets(logging.Filter):
    """Replaces secret strings in the rendered message and its fields."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._secrets: tuple[str, ...] = ()
        self.learn(secrets)

    def learn(self, secrets: Iterable[str]) -> None:
        """Redact these too (keys of a reload); the ones already known stay redacted."""
        known = self._secrets
        # Longest first, so a key that contains another is replaced whole.
        self._secrets = tuple(sorted({*known, *(s for s in secrets if s)}, key=len, reverse=True))

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = self._secrets  # one snapshot: a reload may add keys meanwhile
        if not secrets:
            return True
        record.msg, record.args = redact(record.getMessage(), secrets), None
        fields = getattr(record, "fields", None)
        if fields:
            record.fields = {k: _clean(v, secrets) for k, v in fields.items()}
        return True


def _clean(value: object, secrets: tuple[str, ...]) -> object:
    # None stays None: the JSON format writes it as null.
    return None if value is None else redact(str(value), secrets)


def _one_line(value: object) -> str:
    return " ".join(str(value).split())


def _logfmt_value(value: object) -> str:
    if value is None:
        return "none"  # logfmt has no null
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
        return json.dumps(
            {k: None if v is None else _one_line(v) for k, v in _pairs(record)},
            ensure_ascii=False,
        )


def setup_logging(level: str, fmt: str, secrets: Iterable[str] = ()) -> RedactSecrets:
    """Configure the root logger: one handler on stderr, the chosen format, secrets redacted.

    Returns the redacting filter, so that keys read later (a reload) can be added to it.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    redact = RedactSecrets(secrets)
    handler.addFilter(redact)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel({"warn": "WARNING"}.get(level, level.upper()))
    return redact


_JOURNAL_FORMAT = LogfmtFormatter()


def log_event(logger: logging.Logger, level: int, msg: str, **fields: object) -> None:
    """Log `msg` with structured key=value fields; during a scrape, into its journal entry
    too, whatever the log level (see exporter.common.journal)."""
    logger.log(level, msg, extra={"fields": fields})
    entry = current_entry()
    if entry is not None:
        if entry.full:
            entry.add("")  # only counted
            return
        rec = logger.makeRecord(logger.name, level, "", 0, msg, (), None)
        rec.fields = fields
        entry.add(_JOURNAL_FORMAT.format(rec))
