"""Configuration values and their checks: durations, sizes, addresses, subaccount IDs, secrets and
YAML files, each refused with a one-line `ConfigError` that names the problem."""

from __future__ import annotations

import ipaddress
import os
import re
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import yaml

SUBACCOUNT_PATTERN = re.compile(r"^[A-Za-z0-9\-._&]{3,50}$")


MAX_WORKERS = 256


MAX_CONNECTIONS = 65536


# Prometheus' duration format: whole numbers of units from the largest down, each at most once
# (1y2w3d4h5m6s7ms); a lone number with a fraction and one unit (1.5s) or none (seconds) too.
_DURATION_UNITS = {
    "y": 365 * 86400.0,
    "w": 7 * 86400.0,
    "d": 86400.0,
    "h": 3600.0,
    "m": 60.0,
    "s": 1.0,
    "ms": 0.001,
}


_COMPOUND_DURATION = re.compile(
    "".join(rf"(?:(?P<{'ms_' if u == 'ms' else u}>\d+){u})?" for u in _DURATION_UNITS)
)


_DECIMAL_DURATION = re.compile(r"(\d+(?:\.\d+)?)(y|w|d|h|m|s|ms)?")


_SIZE = re.compile(r"^(\d+)\s*(B|KB|KiB|MB|MiB|GB|GiB)?$")


_SIZE_UNITS = {
    None: 1,
    "B": 1,
    "KB": 10**3,
    "KiB": 2**10,
    "MB": 10**6,
    "MiB": 2**20,
    "GB": 10**9,
    "GiB": 2**30,
}


class ConfigError(Exception):
    """A configuration problem, worded for the operator in one line."""


class Secret:
    """An API key that refuses to show itself anywhere but in the Authorization header."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('<redacted>')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def positive(value: float, what: str) -> float:
    if value <= 0:
        raise ConfigError(f"{what} must be greater than 0")
    return value


def bounded(value: int, what: str, least: int, most: int) -> int:
    """`value` if least <= value <= most, else ConfigError naming the flag and the range."""
    if not least <= value <= most:
        raise ConfigError(f"{what} must be between {least} and {most}")
    return value


def parse_listen_address(address: str) -> tuple[str, int]:
    """(host, port) from ':9881', '0.0.0.0:9881', '[::]:9881' or 'localhost:9881'."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"invalid listen address {address!r}: expected [host]:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def url_host(host: str) -> str:
    """The host as a URL writes it: IPv6 addresses in brackets ([::1])."""
    return f"[{host}]" if ":" in host else host


def host_port(host: str, port: int | str) -> str:
    """host:port as a listen address or URL authority: IPv6 hosts in brackets ([::1]:9881)."""
    return f"{url_host(host)}:{port}"


def loopback_for(host: str) -> str:
    """The address to reach a listener bound to `host` from this host.

    A wildcard bind is reached on the loopback address of its own family: '' (every IPv4
    interface, as the exporter binds ':port') and '0.0.0.0' on 127.0.0.1, '::' on ::1, which
    also answers when the IPv6 socket takes no IPv4. Any other host is itself.
    """
    if not host:
        return "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host  # a name, e.g. localhost
    if not address.is_unspecified:
        return host
    return "::1" if address.version == 6 else "127.0.0.1"


def validate_subaccount(value: str) -> str:
    if not isinstance(value, str) or not SUBACCOUNT_PATTERN.fullmatch(value):
        raise ConfigError(
            f"invalid subaccount ID {quote_value(value)}: must match {SUBACCOUNT_PATTERN.pattern}"
        )
    return value


def validate_base_url(value: str) -> str:
    if not isinstance(value, str) or not re.match(r"^https?://[^\s/]+(/[^\s]*)?$", value):
        raise ConfigError(
            f"invalid API base URL {quote_value(value)}: expected http(s)://host[:port]"
        )
    return value.rstrip("/")


def parse_duration(value: str | float | int, what: str) -> float:
    """Seconds from '10s', '500ms', '1m30s', '1h', '1d', '1.5' or a number."""
    if isinstance(value, bool):
        raise ConfigError(f"invalid duration for {what}: {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        parsed = _duration_seconds(str(value).strip())
        if parsed is None:
            raise ConfigError(
                f"invalid duration for {what}: {quote_value(value)} "
                "(examples: 10s, 500ms, 1m30s, 1h, 1d)"
            )
        seconds = parsed
    if seconds < 0:
        raise ConfigError(f"invalid duration for {what}: must not be negative")
    return seconds


def _duration_seconds(text: str) -> float | None:
    decimal = _DECIMAL_DURATION.fullmatch(text)
    if decimal:
        return float(decimal.group(1)) * _DURATION_UNITS.get(decimal.group(2) or "s", 1.0)
    compound = _COMPOUND_DURATION.fullmatch(text) if text else None
    if compound is None:
        return None
    return sum(
        int(count) * _DURATION_UNITS[unit.replace("ms_", "ms")]
        for unit, count in compound.groupdict().items()
        if count is not None
    )


def parse_size(value: str | int, what: str) -> int:
    """Bytes from '256MiB', '10MB' or a plain number of bytes."""
    match = _SIZE.match(str(value).strip())
    if not match or int(match.group(1)) <= 0:
        raise ConfigError(
            f"invalid size for {what}: {quote_value(value)} (examples: 64MiB, 10000000)"
        )
    return int(match.group(1)) * _SIZE_UNITS[match.group(2)]


_NOT_REGULAR = (
    (stat.S_ISDIR, "is a directory"),
    (stat.S_ISFIFO, "is a named pipe, not a regular file"),
    (stat.S_ISSOCK, "is a socket, not a regular file"),
    (stat.S_ISCHR, "is a device, not a regular file"),
    (stat.S_ISBLK, "is a device, not a regular file"),
)


def read_key_file(path: str | Path) -> Secret:
    # Checked before opening: opening a named pipe would wait for a writer, for ever.
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise ConfigError(f"API key file {path} does not exist") from None
    except PermissionError:
        raise ConfigError(f"API key file {path} is not readable (permission denied)") from None
    except OSError as exc:
        raise ConfigError(f"API key file {path} cannot be read: {exc.strerror}") from None
    for is_kind, problem in _NOT_REGULAR:
        if is_kind(mode):
            raise ConfigError(f"API key file {path} {problem}")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"API key file {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"API key file {path} is a directory") from None
    except PermissionError:
        raise ConfigError(f"API key file {path} is not readable (permission denied)") from None
    except UnicodeDecodeError:
        raise ConfigError(f"API key file {path} is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"API key file {path} cannot be read: {exc.strerror}") from None
    key = text.strip()
    if not key:
        raise ConfigError(f"API key file {path} is empty")
    if any(ch.isspace() for ch in key):
        raise ConfigError(f"API key file {path} holds more than one word")
    return Secret(key)


def read_yaml_mapping(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """The YAML file at `path` as a mapping ({} when empty); ConfigError naming `what`."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not UTF-8 text"
        raise ConfigError(f"{what} {path} cannot be read: {reason}") from None
    import yaml  # here, not above: the health check reads no YAML unless given a web config file

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {path} is not valid YAML{describe_yaml_error(exc)}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ConfigError(f"{what} {path} must be a YAML mapping at the top level")
    return doc


def describe_yaml_error(exc: yaml.YAMLError) -> str:
    """' at line L, column C: problem' for a YAML error, on one line."""
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    return f"{where}: {getattr(exc, 'problem', None) or 'invalid YAML'}"


def reject_unknown_keys(doc: dict[Any, Any], allowed: set[str], where: str) -> None:
    """ConfigError naming the first key of `doc` that is not in `allowed`."""
    unknown = sorted(str(k) for k in doc if k not in allowed)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key {quote_value(unknown[0])} (allowed: {', '.join(sorted(allowed))})"
        )


def in_context(where: str, check: Any, value: Any) -> Any:
    try:
        return check(value)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def quote_value(value: object) -> str:
    """repr() of a value for an error message, shortened so one line stays one line."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def environment() -> dict[str, str]:
    return dict(os.environ)
