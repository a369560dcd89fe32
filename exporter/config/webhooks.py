"""Flags and environment of the webhook receiver, validated into `WebhookSettings`.

exporter/cli/main.py adds the flags; exporter/config/settings.py (`settings_from_flags`) calls
`webhook_settings`, so the result is part of `Settings`; exporter/app.py builds the listener.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from exporter.config.values import (
    MAX_CONNECTIONS,
    MAX_WORKERS,
    ConfigError,
    Secret,
    bounded,
    parse_duration,
    parse_listen_address,
    parse_size,
)

DEFAULT_PATH = "/webhooks/8x8"
# A VNU SNAPSHOT of 100,000 numbers is about 29 MB (289 bytes a record): taken by default.
DEFAULT_MAX_BODY = 32 << 20
DEFAULT_READ_TIMEOUT = 10.0
ENV_AUTH = "EIGHTBYEIGHT_WEBHOOK_AUTH_HEADER"
ENV_AUTH_FILE = "EIGHTBYEIGHT_WEBHOOK_AUTH_HEADER_FILE"
MAX_AUTH_LENGTH = 4096
DEFAULT_WEBHOOK_WORKERS = 4
# With --web.max-connections' 256, well below a 1,024 file-descriptor limit (see --help).
DEFAULT_WEBHOOK_MAX_CONNECTIONS = 128


@dataclass(frozen=True)
class WebhookSettings:
    """The callback listener's settings: `Settings.webhooks`, None while it is off."""

    listen_address: str
    auth_header: Secret
    path: str = DEFAULT_PATH
    max_body: int = DEFAULT_MAX_BODY
    read_timeout: float = DEFAULT_READ_TIMEOUT
    allowed: frozenset[str] | None = None
    per_number: bool = True
    workers: int = DEFAULT_WEBHOOK_WORKERS
    max_connections: int = DEFAULT_WEBHOOK_MAX_CONNECTIONS
    # The listener speaks --web.config.file's TLS, if any; the demo's stays plain HTTP.
    web_tls: bool = True
    # Its own client-certificate check (--webhook.tls-client-auth), never the web config's:
    # 8x8 presents no client certificate, so Prometheus' mutual TLS must not apply here.
    client_auth: str = "NoClientCert"


def add_webhook_flags(parser: argparse.ArgumentParser) -> None:
    """The receiver's flags; all off until --webhook.listen-address is given."""
    parser.add_argument(
        "--webhook.listen-address",
        dest="webhook_listen_address",
        default=None,
        help="address of a second listener receiving 8x8 callbacks (VNU, VSS); off by default",
    )
    parser.add_argument(
        "--collector.webhooks",
        dest="collector_webhooks",
        action="store_true",
        help="also read each configured subaccount's webhook list from the 8x8 API on scrape "
        "and export whether VNU and VSS are enabled (off by default)",
    )
    parser.add_argument(
        "--webhook.path",
        dest="webhook_path",
        default=DEFAULT_PATH,
        help=f"path 8x8 POSTs callbacks to (default {DEFAULT_PATH})",
    )
    parser.add_argument(
        "--webhook.auth-header-file",
        dest="webhook_auth_file",
        default=None,
        help=f"file holding the Authorization value registered at 8x8 as httpAuthHeader "
        f"(else ${ENV_AUTH_FILE}, else ${ENV_AUTH})",
    )
    parser.add_argument(
        "--webhook.max-body-size",
        dest="webhook_max_body",
        default="32MiB",
        help="largest callback body accepted (default 32MiB: a SNAPSHOT of 100,000 numbers)",
    )
    parser.add_argument(
        "--webhook.read-timeout",
        dest="webhook_read_timeout",
        default="10s",
        help="longest a callback request, headers and body, may take to arrive from its "
        "connection (default 10s)",
    )
    parser.add_argument(
        "--webhook.tls-client-auth",
        dest="webhook_tls_client_auth",
        default="NoClientCert",
        help="client certificates the callback listener asks for when --web.config.file sets "
        "TLS: NoClientCert (default: 8x8 sends none), VerifyClientCertIfGiven or "
        "RequireAndVerifyClientCert (against the web config's client_ca_file); the web "
        "config's client_auth_type applies to /metrics only",
    )
    parser.add_argument(
        "--webhook.workers",
        dest="webhook_workers",
        type=int,
        default=DEFAULT_WEBHOOK_WORKERS,
        help=f"threads answering callbacks, apart from /metrics' "
        f"(default {DEFAULT_WEBHOOK_WORKERS})",
    )
    parser.add_argument(
        "--webhook.max-connections",
        dest="webhook_max_connections",
        type=int,
        default=DEFAULT_WEBHOOK_MAX_CONNECTIONS,
        help=f"open connections the callback listener keeps; more are closed at once "
        f"(default {DEFAULT_WEBHOOK_MAX_CONNECTIONS}: with --web.max-connections well below "
        "a 1,024 file-descriptor limit)",
    )


CLIENT_AUTH_TYPES = ("NoClientCert", "VerifyClientCertIfGiven", "RequireAndVerifyClientCert")


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
    parse_listen_address(args.webhook_listen_address)
    if not args.webhook_path.startswith("/") or args.webhook_path in ("/", "/-/healthy"):
        raise ConfigError(f"invalid --webhook.path {args.webhook_path!r}")
    path = args.webhook_auth_file or env.get(ENV_AUTH_FILE)
    if path:
        auth = read_auth_file(path)
    elif env.get(ENV_AUTH, "").strip():
        auth = _validated(env[ENV_AUTH].strip(), f"${ENV_AUTH}")
    else:
        raise ConfigError(
            f"--webhook.listen-address needs the Authorization value registered at 8x8: "
            f"--webhook.auth-header-file, ${ENV_AUTH_FILE} or ${ENV_AUTH}"
        )
    read_timeout = parse_duration(args.webhook_read_timeout, "--webhook.read-timeout")
    if read_timeout <= 0:
        raise ConfigError("--webhook.read-timeout must be greater than 0")
    allowed = frozenset(subaccounts) | (probe_allowed or frozenset())
    workers = bounded(args.webhook_workers, "--webhook.workers", 1, MAX_WORKERS)
    max_connections = bounded(
        args.webhook_max_connections, "--webhook.max-connections", 1, MAX_CONNECTIONS
    )
    client_auth = getattr(args, "webhook_tls_client_auth", "NoClientCert")
    if client_auth not in CLIENT_AUTH_TYPES:
        raise ConfigError(
            f"invalid --webhook.tls-client-auth {client_auth!r}: one of "
            + ", ".join(CLIENT_AUTH_TYPES)
        )
    return WebhookSettings(
        listen_address=args.webhook_listen_address,
        auth_header=auth,
        path=args.webhook_path,
        max_body=parse_size(args.webhook_max_body, "--webhook.max-body-size"),
        read_timeout=read_timeout,
        allowed=allowed or None,
        per_number=per_number,
        workers=workers,
        max_connections=max_connections,
        client_auth=client_auth,
    )
