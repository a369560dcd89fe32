"""Configuration: flags, environment and the YAML files become one validated `Settings`.

`settings_from_flags` is the one place where they are read and checked, the web config file
included; `Settings` holds the parsed result, so nothing downstream reads a file again.
Every problem is raised as `ConfigError` with a single line naming it; API keys are wrapped in
`Secret` so that no repr, log line or error message can show them.
"""

from __future__ import annotations

import argparse
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from exporter.webconfig import WebConfig
    from exporter.webhooks.config import WebhookSettings

SUBACCOUNT_PATTERN = re.compile(r"^[A-Za-z0-9\-._&]{3,50}$")
DEFAULT_BASE_URL = "https://voice.8x8.com"
DEFAULT_LISTEN_ADDRESS = ":9881"
# Fetches in flight at once, each on a thread of its own. The API's latency, not the exporter's
# CPU, bounds a scrape of many subaccounts: 64 at a time read 1,000 subaccounts at 200 ms in
# about 3 s of waiting, and a bound keeps a large configuration from opening a connection per
# subaccount at once (the API's per-IP limits are not documented).
DEFAULT_PARALLEL_FETCHES = 64
MAX_PARALLEL_FETCHES = 512

ENV_API_KEY = "EIGHTBYEIGHT_API_KEY"
ENV_API_KEY_FILE = "EIGHTBYEIGHT_API_KEY_FILE"
ENV_SUBACCOUNTS = "EIGHTBYEIGHT_SUBACCOUNTS"

# Each listener's threads and open connections (exporter/server.py). A connection is a file
# descriptor: both listeners' defaults (256 + 128) and the API connections stay well below a
# 1,024 limit; the maxima keep a typo from asking for more than any such limit allows.
DEFAULT_WEB_WORKERS = 8
DEFAULT_WEB_MAX_CONNECTIONS = 256
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


@dataclass(frozen=True)
class SubaccountConfig:
    """One subaccount to scrape, with the key and API base URL that reach it."""

    subaccount: str
    api_key: Secret | None
    base_url: str


@dataclass(frozen=True)
class Settings:
    """Everything the exporter needs, validated."""

    listen_address: str = DEFAULT_LISTEN_ADDRESS
    telemetry_path: str = "/metrics"
    base_url: str = DEFAULT_BASE_URL
    api_timeout: float = 10.0
    api_key: Secret | None = None
    subaccounts: tuple[SubaccountConfig, ...] = ()
    per_number: bool = True
    cache_ttl: float = 0.0
    serve_stale_for: float = 0.0
    timeout_offset: float = 0.5
    shutdown_grace: float = 10.0
    web_workers: int = DEFAULT_WEB_WORKERS
    web_max_connections: int = DEFAULT_WEB_MAX_CONNECTIONS
    web_read_timeout: float = 10.0
    max_response_bytes: int = 256 * 2**20
    api_retries: int = 2
    parallel_fetches: int = DEFAULT_PARALLEL_FETCHES
    probe_allowed: frozenset[str] | None = None
    web_config: WebConfig | None = None
    webhooks: WebhookSettings | None = None  # the callback listener, when enabled
    collector_webhooks: bool = False
    log_level: str = "info"
    log_format: str = "logfmt"
    # Every value the logs must never show: API keys and the webhook Authorization value.
    secrets: tuple[Secret, ...] = field(default=(), repr=False)

    def subaccount_config(self, subaccount: str) -> SubaccountConfig:
        """The configured subaccount, or one built from the defaults for a probed subaccount."""
        for config in self.subaccounts:
            if config.subaccount == subaccount:
                return config
        return SubaccountConfig(subaccount, self.api_key, self.base_url)


def settings_from_flags(args: argparse.Namespace, env: dict[str, str]) -> Settings:
    """Validate flags, environment and config files into Settings; ConfigError on any problem.

    `args` are the parsed flags of exporter/cli.py. The web config file is read and checked
    here (TLS files, bcrypt hashes), once, and its parsed form is part of the settings; so are
    the webhook receiver's flags and its Authorization value.
    """
    # Both build on this module's helpers.
    from exporter.webconfig import load_web_config
    from exporter.webhooks.config import webhook_settings

    parse_listen_address(args.listen_address)
    if not args.telemetry_path.startswith("/") or args.telemetry_path in ("/probe", "/"):
        raise ConfigError(f"invalid --web.telemetry-path {args.telemetry_path!r}")
    if args.api_retries < 0 or args.api_retries > 10:
        raise ConfigError("--api.retries must be between 0 and 10")
    file_config = load_config_file(args.config_file) if args.config_file else None
    base_url = validate_base_url(
        args.base_url or (file_config.base_url if file_config else None) or DEFAULT_BASE_URL
    )
    api_key = default_api_key(args.key_file, env)
    if api_key is None and file_config is not None:
        api_key = file_config.api_key

    subaccounts: list[SubaccountConfig] = []
    seen: set[str] = set()
    for sub, key, url in file_config.subaccounts if file_config else ():
        subaccounts.append(SubaccountConfig(sub, key or api_key, url or base_url))
        seen.add(sub)
    flag_subs = args.subaccounts if args.subaccounts is not None else subaccounts_from_env(env)
    for sub in flag_subs:
        sub = validate_subaccount(sub)
        if sub not in seen:
            subaccounts.append(SubaccountConfig(sub, api_key, base_url))
            seen.add(sub)
    missing = [s.subaccount for s in subaccounts if s.api_key is None]
    if missing or (not subaccounts and api_key is None):
        which = f" for subaccount {missing[0]}" if missing else ""
        raise ConfigError(
            f"no API key{which}: set EIGHTBYEIGHT_API_KEY, EIGHTBYEIGHT_API_KEY_FILE or "
            "--api.key-file"
        )

    probe_allowed = None
    if args.probe_allowed is not None:
        probe_allowed = frozenset(
            validate_subaccount(s.strip()) for s in args.probe_allowed.split(",") if s.strip()
        )
    elif file_config is not None and file_config.probe_allowed is not None:
        probe_allowed = frozenset(file_config.probe_allowed)

    web_config = load_web_config(args.web_config_file) if args.web_config_file else None
    webhooks = webhook_settings(
        args, env, tuple(s.subaccount for s in subaccounts), probe_allowed, args.per_number
    )
    keys = {s.api_key for s in subaccounts if s.api_key} | ({api_key} if api_key else set())
    if webhooks is not None:
        keys.add(webhooks.auth_header)
    return Settings(
        listen_address=args.listen_address,
        telemetry_path=args.telemetry_path,
        base_url=base_url,
        api_timeout=_positive(parse_duration(args.api_timeout, "--api.timeout"), "--api.timeout"),
        api_key=api_key,
        subaccounts=tuple(subaccounts),
        per_number=args.per_number,
        cache_ttl=parse_duration(args.cache_ttl, "--cache.ttl"),
        serve_stale_for=parse_duration(args.serve_stale_for, "--cache.serve-stale-for"),
        timeout_offset=parse_duration(args.timeout_offset, "--web.timeout-offset"),
        shutdown_grace=parse_duration(args.shutdown_grace, "--web.shutdown-grace"),
        web_workers=bounded(args.web_workers, "--web.workers", 1, MAX_WORKERS),
        web_max_connections=bounded(
            args.web_max_connections, "--web.max-connections", 1, MAX_CONNECTIONS
        ),
        web_read_timeout=_positive(
            parse_duration(args.web_read_timeout, "--web.read-timeout"), "--web.read-timeout"
        ),
        max_response_bytes=parse_size(args.max_response_bytes, "--api.max-response-size"),
        api_retries=args.api_retries,
        parallel_fetches=bounded(
            args.parallel_fetches, "--api.parallel-fetches", 1, MAX_PARALLEL_FETCHES
        ),
        probe_allowed=probe_allowed,
        web_config=web_config,
        webhooks=webhooks,
        collector_webhooks=args.collector_webhooks,
        log_level=args.log_level,
        log_format=args.log_format,
        secrets=tuple(keys),
    )


def _positive(value: float, what: str) -> float:
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


def validate_subaccount(value: str) -> str:
    if not isinstance(value, str) or not SUBACCOUNT_PATTERN.fullmatch(value):
        raise ConfigError(
            f"invalid subaccount ID {quote_value(value)}: must match ^[A-Za-z0-9\\-._&]{{3,50}}$"
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
        seconds = _duration_seconds(str(value).strip())
        if seconds is None:
            raise ConfigError(
                f"invalid duration for {what}: {quote_value(value)} "
                "(examples: 10s, 500ms, 1m30s, 1h, 1d)"
            )
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


def default_api_key(key_file: str | None, env: dict[str, str]) -> Secret | None:
    """The default key: --api.key-file, $EIGHTBYEIGHT_API_KEY_FILE, then $EIGHTBYEIGHT_API_KEY."""
    path = key_file or env.get(ENV_API_KEY_FILE)
    if path:
        return read_key_file(path)
    value = env.get(ENV_API_KEY, "").strip()
    return Secret(value) if value else None


def subaccounts_from_env(env: dict[str, str]) -> list[str]:
    raw = env.get(ENV_SUBACCOUNTS, "")
    return [part.strip() for part in raw.split(",") if part.strip()]


@dataclass(frozen=True)
class FileConfig:
    """What the YAML file (--config.file) says."""

    base_url: str | None = None
    api_key: Secret | None = None
    subaccounts: tuple[tuple[str, Secret | None, str | None], ...] = ()
    probe_allowed: tuple[str, ...] | None = None


_FILE_KEYS = {"base_url", "api_key_file", "subaccounts", "probe"}
_SUBACCOUNT_KEYS = {"id", "api_key_file", "base_url"}
_PROBE_KEYS = {"allowed_subaccounts"}


def load_config_file(path: str | Path) -> FileConfig:
    """Read and validate the YAML configuration file.

    ```yaml
    base_url: https://voice.8x8.com        # optional
    api_key_file: /run/secrets/8x8-key     # optional default key
    subaccounts:
      - id: acme-prod
        api_key_file: /run/secrets/acme-prod-key   # optional, overrides the default
        base_url: https://voice.8x8.com            # optional
      - id: acme-dev
    probe:
      allowed_subaccounts: [acme-prod, acme-dev]   # optional /probe allow-list
    ```
    """
    doc = read_yaml_mapping(path)
    reject_unknown_keys(doc, _FILE_KEYS, f"{path}")
    base_url = validate_base_url(doc["base_url"]) if "base_url" in doc else None
    api_key = read_key_file(doc["api_key_file"]) if doc.get("api_key_file") else None
    entries = doc.get("subaccounts") or []
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: 'subaccounts' must be a list")
    subaccounts = []
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        where = f"{path}: subaccounts[{index}]"
        if isinstance(entry, str):
            entry = {"id": entry}
        if not isinstance(entry, dict):
            raise ConfigError(f"{where} must be a mapping with an 'id'")
        reject_unknown_keys(entry, _SUBACCOUNT_KEYS, where)
        if "id" not in entry:
            raise ConfigError(f"{where} has no 'id'")
        sub = _in(where, validate_subaccount, entry["id"])
        if sub in seen:
            raise ConfigError(f"{where}: subaccount {sub} is listed twice")
        seen.add(sub)
        key = read_key_file(entry["api_key_file"]) if entry.get("api_key_file") else None
        url = _in(where, validate_base_url, entry["base_url"]) if "base_url" in entry else None
        subaccounts.append((sub, key, url))
    probe = doc.get("probe") or {}
    if not isinstance(probe, dict):
        raise ConfigError(f"{path}: 'probe' must be a mapping")
    reject_unknown_keys(probe, _PROBE_KEYS, f"{path}: probe")
    allowed = probe.get("allowed_subaccounts")
    if allowed is not None:
        if not isinstance(allowed, list):
            raise ConfigError(f"{path}: probe.allowed_subaccounts must be a list")
        allowed = tuple(_in(f"{path}: probe", validate_subaccount, a) for a in allowed)
    return FileConfig(base_url, api_key, tuple(subaccounts), allowed)


def read_yaml_mapping(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """The YAML file at `path` as a mapping ({} when empty); ConfigError naming `what`."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not UTF-8 text"
        raise ConfigError(f"{what} {path} cannot be read: {reason}") from None
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


def _in(where: str, check: Any, value: Any) -> Any:
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
