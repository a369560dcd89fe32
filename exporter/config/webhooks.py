"""Flags and environment of the webhook receiver, validated into `WebhookSettings`.

The flags are in exporter/config/flags.py; exporter/config/settings.py (`settings_from_flags`) calls
`webhook_settings`, so the result is part of `Settings`; exporter/app.py builds the listener.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from exporter.config.flags import ENV_WEBHOOK_AUTH, checked, default, env_of
from exporter.config.values import ConfigError, Secret

ENV_AUTH = ENV_WEBHOOK_AUTH
ENV_AUTH_FILE = env_of("webhook_auth_file")
MAX_AUTH_LENGTH = 4096


@dataclass(frozen=True)
class WebhookSettings:
    """The callback listener's settings: `Settings.webhooks`, None while it is off."""

    listen_address: str
    auth_header: Secret
    path: str = default("webhook_path")
    max_body: int = default("webhook_max_body")
    read_timeout: float = default("webhook_read_timeout")
    allowed: frozenset[str] | None = None
    per_number: bool = default("per_number")
    workers: int = default("webhook_workers")
    max_connections: int = default("webhook_max_connections")
    # The listener speaks --web.config.file's TLS, if any; the demo's stays plain HTTP.
    web_tls: bool = True
    # Its own client-certificate check (--webhook.tls-client-auth), never the web config's:
    # 8x8 presents no client certificate, so Prometheus' mutual TLS must not apply here.
    client_auth: str = default("webhook_tls_client_auth")


def read_auth_file(path: str | Path) -> Secret:
    """The Authorization value: the file's text without the line break; may hold spaces."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not UTF-8 text"
        raise ConfigError(f"webhook auth header file {path} cannot be read: {reason}") from None
    return _validated(text.strip("\r\n"), f"webhook auth header file {path}")


def _validated(value: str, where: str) -> Secret:
    if not value.strip():
        raise ConfigError(f"{where} is empty")
    if len(value) > MAX_AUTH_LENGTH or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ConfigError(f"{where} is not a valid header value (control characters or too long)")
    if value != value.strip():
        raise ConfigError(f"{where} starts or ends with spaces, which HTTP drops")
    return Secret(value)


def webhook_settings(
    args: argparse.Namespace,
    env: dict[str, str],
    subaccounts: tuple[str, ...],
    probe_allowed: frozenset[str] | None,
    per_number: bool,
) -> WebhookSettings | None:
    """Settings of the receiver, or None when --webhook.listen-address is not given."""
    if not args.webhook_listen_address:
        return None
    listen_address = checked(args, "webhook_listen_address")
    path = checked(args, "webhook_path")
    auth_file = args.webhook_auth_file or env.get(ENV_AUTH_FILE)
    if auth_file:
        auth = read_auth_file(auth_file)
    elif env.get(ENV_AUTH, "").strip():
        auth = _validated(env[ENV_AUTH].strip(), f"${ENV_AUTH}")
    else:
        raise ConfigError(
            f"--webhook.listen-address needs the Authorization value registered at 8x8: "
            f"--webhook.auth-header-file, ${ENV_AUTH_FILE} or ${ENV_AUTH}"
        )
    read_timeout = checked(args, "webhook_read_timeout")
    allowed = frozenset(subaccounts) | (probe_allowed or frozenset())
    workers = checked(args, "webhook_workers")
    max_connections = checked(args, "webhook_max_connections")
    client_auth = checked(args, "webhook_tls_client_auth")
    return WebhookSettings(
        listen_address=listen_address,
        auth_header=auth,
        path=path,
        max_body=checked(args, "webhook_max_body"),
        read_timeout=read_timeout,
        allowed=allowed or None,
        per_number=per_number,
        workers=workers,
        max_connections=max_connections,
        client_auth=client_auth,
    )
