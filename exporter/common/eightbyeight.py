"""What 8x8 sends, read alike by the poll (exporter/polling/) and the callbacks (exporter/pushing/).

The subaccount ID pattern is a configuration value too, so it lives in exporter/config/values.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

# The documented operationalStatus values of a virtual number, lower-cased: their counts are
# always present, on the polled and the pushed families alike.
NUMBER_STATUSES = ("active", "expiring", "inactive", "unhealthy")


def parse_timestamp(value: str | None) -> float | None:
    """Unix seconds from an RFC 3339 time (any fraction digits, Z or offset, upper- or
    lower-case T and Z); None if unreadable. A time without offset is read as UTC.

    A leap second (23:59:60) is read as the second after 23:59:59, as POSIX time counts it.
    """
    if not value:
        return None
    parsed = _parse_datetime(value)
    if parsed is None and value[16:19] == ":60":
        parsed = _parse_datetime(f"{value[:17]}59{value[19:]}")
        parsed = parsed + timedelta(seconds=1) if parsed is not None else None
    if parsed is None:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.timestamp()
    except (OverflowError, OSError, ValueError):
        return None


def _parse_datetime(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        try:
            # RFC 3339 allows lower-case 't' and 'z', which fromisoformat does not.
            return datetime.fromisoformat(value.upper())
        except ValueError:
            return None
