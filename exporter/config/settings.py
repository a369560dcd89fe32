"""Configuration: flags, environment and the YAML files become one validated `Settings`.

`settings_from_flags` is the one place where they are read and checked, the web config file
included; `Settings` holds the parsed result, so nothing downstream reads a file again.
Every problem is raised as `ConfigError` with a single line naming it; API keys are wrapped in
`Secret` so that no repr, log line or error message can show them.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

from exporter.config.balance import BalanceSettings, balance_settings
from exporter.config.values import (
    MAX_CONNECTIONS,
    MAX_WORKERS,
    ConfigError,
    Secret,
    bounded,
    in_context,
    parse_duration,
    parse_listen_address,
    parse_size,
    positive,
    read_key_file,
    read_yaml_mapping,
    reject_unknown_keys,
    validate_base_url,
    validate_subaccount,
)
from exporter.config.webconfig import WebConfig, load_web_config
from exporter.config.webhooks import WebhookSettings, webhook_settings

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

# Each listener's threads and open connections (exporter/web/server.py). A connection is a file
# descriptor: both listeners' defaults (256 + 128) and the API connections stay well below a
# 1,024 limit; the maxima keep a typo from asking for more than any such limit allows.
DEFAULT_WEB_WORKERS = 8
DEFAULT_WEB_MAX_CONNECTIONS = 256


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
    balance: BalanceSettings | None = None  # the prepaid balance read, when enabled
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

    `args` are the parsed flags of exporter/cli/main.py. The web config file is read and checked
    here (TLS files, bcrypt hashes), once, and its parsed form is part of the settings; so are
    the webhook receiver's flags and its Authorization value.
    """
    # Both build on this module's helpers.
    parse_listen_address(args.listen_address)
    if not args.telemetry_path.startswith("/") or args.telemetry_path in ("/probe", "/"):
        raise ConfigError(f"invalid --web.telemetry-path {args.telemetry_path!r}")
    if args.telemetry_path.startswith("/-/"):
        # /-/healthy is served without basic auth; /-/ paths are the exporter's own.
        raise ConfigError(
            f"invalid --web.telemetry-path {args.telemetry_path!r}: paths under /-/ are "
            "reserved (/-/healthy answers without credentials)"
        )
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
        api_timeout=positive(parse_duration(args.api_timeout, "--api.timeout"), "--api.timeout"),
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
        web_read_timeout=positive(
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
        balance=balance_settings(args),
        collector_webhooks=args.collector_webhooks,
        log_level=args.log_level,
        log_format=args.log_format,
        secrets=tuple(keys),
    )


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
        sub = in_context(where, validate_subaccount, entry["id"])
        if sub in seen:
            raise ConfigError(f"{where}: subaccount {sub} is listed twice")
        seen.add(sub)
        key = read_key_file(entry["api_key_file"]) if entry.get("api_key_file") else None
        url = (
            in_context(where, validate_base_url, entry["base_url"]) if "base_url" in entry else None
        )
        subaccounts.append((sub, key, url))
    probe = doc.get("probe") or {}
    if not isinstance(probe, dict):
        raise ConfigError(f"{path}: 'probe' must be a mapping")
    reject_unknown_keys(probe, _PROBE_KEYS, f"{path}: probe")
    allowed = probe.get("allowed_subaccounts")
    if allowed is not None:
        if not isinstance(allowed, list):
            raise ConfigError(f"{path}: probe.allowed_subaccounts must be a list")
        allowed = tuple(in_context(f"{path}: probe", validate_subaccount, a) for a in allowed)
    return FileConfig(base_url, api_key, tuple(subaccounts), allowed)
