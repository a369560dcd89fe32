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

from exporter.config import flags
from exporter.config.balance import BalanceSettings, balance_settings
from exporter.config.flags import checked, default
from exporter.config.values import (
    ConfigError,
    Secret,
    in_context,
    read_key_file,
    read_yaml_mapping,
    reject_unknown_keys,
    validate_base_url,
    validate_subaccount,
)
from exporter.config.webconfig import WebConfig, load_web_config
from exporter.config.webhooks import WebhookSettings, webhook_settings

ENV_API_KEY = flags.ENV_API_KEY
ENV_API_KEY_FILE = flags.env_of("key_file")
ENV_SUBACCOUNTS = flags.env_of("subaccounts")


@dataclass(frozen=True)
class SubaccountConfig:
    """One subaccount to scrape, with the key and API base URL that reach it."""

    subaccount: str
    api_key: Secret | None
    base_url: str


@dataclass(frozen=True)
class Settings:
    """Everything the exporter needs, validated."""

    listen_address: str = default("listen_address")
    telemetry_path: str = default("telemetry_path")
    base_url: str = default("base_url")
    api_timeout: float = default("api_timeout")
    api_key: Secret | None = None
    subaccounts: tuple[SubaccountConfig, ...] = ()
    per_number: bool = default("per_number")
    cache_ttl: float = default("cache_ttl")
    serve_stale_for: float = default("serve_stale_for")
    timeout_offset: float = default("timeout_offset")
    shutdown_grace: float = default("shutdown_grace")
    web_workers: int = default("web_workers")
    web_max_connections: int = default("web_max_connections")
    web_read_timeout: float = default("web_read_timeout")
    max_response_bytes: int = default("max_response_bytes")
    api_retries: int = default("api_retries")
    parallel_fetches: int = default("parallel_fetches")
    probe_allowed: frozenset[str] | None = None
    web_config: WebConfig | None = None
    webhooks: WebhookSettings | None = None  # the callback listener, when enabled
    balance: BalanceSettings | None = None  # the prepaid balance read, when enabled
    collector_webhooks: bool = default("collector_webhooks")
    log_level: str = default("log_level")
    log_format: str = default("log_format")
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

    `args` are the parsed flags (exporter/config/flags.py). The web config file is read and checked
    here (TLS files, bcrypt hashes), once, and its parsed form is part of the settings; so are
    the webhook receiver's flags and its Authorization value.
    """
    listen_address = checked(args, "listen_address")
    telemetry_path = checked(args, "telemetry_path")
    api_retries = checked(args, "api_retries")
    file_config = load_config_file(args.config_file) if args.config_file else None
    base_url = validate_base_url(
        args.base_url
        or (file_config.base_url if file_config else None)
        or flags.flag("base_url").default
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
        listen_address=listen_address,
        telemetry_path=telemetry_path,
        base_url=base_url,
        api_timeout=checked(args, "api_timeout"),
        api_key=api_key,
        subaccounts=tuple(subaccounts),
        per_number=args.per_number,
        cache_ttl=checked(args, "cache_ttl"),
        serve_stale_for=checked(args, "serve_stale_for"),
        timeout_offset=checked(args, "timeout_offset"),
        shutdown_grace=checked(args, "shutdown_grace"),
        web_workers=checked(args, "web_workers"),
        web_max_connections=checked(args, "web_max_connections"),
        web_read_timeout=checked(args, "web_read_timeout"),
        max_response_bytes=checked(args, "max_response_bytes"),
        api_retries=api_retries,
        parallel_fetches=checked(args, "parallel_fetches"),
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
