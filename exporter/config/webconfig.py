"""--web.config.file: TLS and basic auth, in the file format of Prometheus' exporter-toolkit.

```yaml
tls_server_config:
  cert_file: server.crt                 # paths are relative to this file
  key_file: server.key
  client_auth_type: RequireAndVerifyClientCert   # optional; needs client_ca_file
  client_ca_file: clients-ca.crt
  min_version: TLS12                    # TLS10, TLS11, TLS12 (default), TLS13
  max_version: TLS13                    # optional
http_server_config:
  headers:                              # optional security headers on every response
    Strict-Transport-Security: max-age=31536000
basic_auth_users:
  prometheus: $2b$12$...                # bcrypt hashes (htpasswd -nBC 12 "" | tr -d ':')
```

Everything is checked when the file is loaded; any problem is a `ConfigError` of one line. Basic
auth covers every path except /-/healthy, so liveness probes need no credentials.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exporter.config.values import ConfigError, quote_value, read_yaml_mapping, reject_unknown_keys

UNAUTHENTICATED_PATHS = frozenset({"/-/healthy", "/-/ready"})
REALM = "eightbyeight-exporter"

_TOP_KEYS = {"tls_server_config", "http_server_config", "basic_auth_users"}
_TLS_KEYS = {
    "cert_file",
    "key_file",
    "client_auth_type",
    "client_ca_file",
    "min_version",
    "max_version",
    "prefer_server_cipher_suites",
}
# Keys of the exporter-toolkit format this exporter cannot honour: refused, never ignored,
# because silently weaker TLS than the operator asked for is worse than not starting.
_TLS_UNSUPPORTED = {"cipher_suites", "curve_preferences", "client_allowed_sans", "cert", "key"}
_HTTP_KEYS = {"http2", "headers"}
_ALLOWED_HEADERS = {
    "strict-transport-security": "Strict-Transport-Security",
    "x-content-type-options": "X-Content-Type-Options",
    "x-frame-options": "X-Frame-Options",
    "x-xss-protection": "X-XSS-Protection",
    "content-security-policy": "Content-Security-Policy",
}
_TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
_CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
# Go's TLS can request a client certificate without verifying it; Python's ssl module cannot,
# and accepting unverified certificates would be no protection anyway.
_CLIENT_AUTH_UNSUPPORTED = {"RequestClientCert", "RequireAnyClientCert", "RequireClientCert"}
_BCRYPT_HASH = re.compile(r"^\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}$")


@dataclass(frozen=True)
class TlsSettings:
    """Where the server's certificate is and how clients are checked."""

    cert_file: Path
    key_file: Path
    client_auth: ssl.VerifyMode = ssl.CERT_NONE
    client_ca_file: Path | None = None
    min_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2
    max_version: ssl.TLSVersion | None = None
    prefer_server_ciphers: bool = False


@dataclass(frozen=True)
class WebConfig:
    """A validated --web.config.file."""

    tls: TlsSettings | None = None
    users: dict[str, bytes] = field(default_factory=dict, repr=False)
    headers: tuple[tuple[str, str], ...] = ()
    # Built once from `tls` when the file is loaded: the server wraps its socket with it.
    tls_context: ssl.SSLContext | None = field(default=None, repr=False, compare=False)

    @property
    def needs_middleware(self) -> bool:
        return bool(self.users or self.headers)


def load_web_config(path: str | Path) -> WebConfig:
    """Read, validate and check --web.config.file; ConfigError (one line) on any problem."""
    path = Path(path)
    doc = read_yaml_mapping(path, "web config file")
    where = f"web config {path}"
    reject_unknown_keys(doc, _TOP_KEYS, where)
    tls = _tls_settings(doc.get("tls_server_config"), path.parent, f"{where}: tls_server_config")
    headers = _headers(doc.get("http_server_config"), f"{where}: http_server_config")
    users = _users(doc.get("basic_auth_users"), f"{where}: basic_auth_users")
    # Unreadable or mismatched certificates fail now, not on the first scrape.
    context = ssl_context(tls, f"{where}: tls_server_config") if tls is not None else None
    return WebConfig(tls, users, headers, context)


def ssl_context(tls: TlsSettings, where: str = "TLS") -> ssl.SSLContext:
    """A server-side SSLContext for the settings; ConfigError (prefixed `where`) if a file
    cannot be used."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = tls.min_version
    if tls.max_version is not None:
        context.maximum_version = tls.max_version
    if tls.prefer_server_ciphers:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    try:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    except FileNotFoundError as exc:
        raise ConfigError(f"{where}: {exc.filename} does not exist") from None
    except ssl.SSLError as exc:
        raise ConfigError(
            f"{where}: cannot use cert_file {tls.cert_file} with key_file {tls.key_file}: "
            f"{_ssl_reason(exc)}"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read {exc.filename}: {exc.strerror}") from None
    context.verify_mode = tls.client_auth
    if tls.client_ca_file is not None:
        try:
            context.load_verify_locations(cafile=tls.client_ca_file)
        except FileNotFoundError:
            raise ConfigError(
                f"{where}: client_ca_file {tls.client_ca_file} does not exist"
            ) from None
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                f"{where}: client_ca_file {tls.client_ca_file} holds no usable CA certificate: "
                f"{_ssl_reason(exc)}"
            ) from None
    return context


def _tls_settings(raw: Any, base: Path, where: str) -> TlsSettings | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping")
    for key in raw:
        if key in _TLS_UNSUPPORTED:
            raise ConfigError(f"{where}: {key} is not supported by this exporter")
    reject_unknown_keys(raw, _TLS_KEYS, where)
    if not raw.get("cert_file") and not raw.get("key_file"):
        raise ConfigError(f"{where}: cert_file and key_file are required")
    cert = _path(raw, "cert_file", base, where)
    key = _path(raw, "key_file", base, where)
    auth_name = raw.get("client_auth_type") or "NoClientCert"
    if auth_name in _CLIENT_AUTH_UNSUPPORTED:
        raise ConfigError(
            f"{where}: client_auth_type {auth_name} is not supported (client certificates are "
            "always verified here); use VerifyClientCertIfGiven or RequireAndVerifyClientCert"
        )
    if auth_name not in _CLIENT_AUTH:
        raise ConfigError(
            f"{where}: invalid client_auth_type {quote_value(auth_name)} "
            f"(one of {', '.join(_CLIENT_AUTH)})"
        )
    ca = _path(raw, "client_ca_file", base, where) if raw.get("client_ca_file") else None
    if ca is not None and auth_name == "NoClientCert":
        raise ConfigError(f"{where}: client_ca_file is set but client_auth_type is NoClientCert")
    if ca is None and auth_name != "NoClientCert":
        raise ConfigError(f"{where}: client_auth_type {auth_name} needs client_ca_file")
    min_version = _tls_version(raw.get("min_version", "TLS12"), "min_version", where)
    max_version = (
        _tls_version(raw["max_version"], "max_version", where) if raw.get("max_version") else None
    )
    if max_version is not None and max_version < min_version:
        raise ConfigError(f"{where}: max_version is lower than min_version")
    prefer = raw.get("prefer_server_cipher_suites", False)
    if not isinstance(prefer, bool):
        raise ConfigError(f"{where}: prefer_server_cipher_suites must be true or false")
    return TlsSettings(cert, key, _CLIENT_AUTH[auth_name], ca, min_version, max_version, prefer)


def _path(raw: dict[str, Any], key: str, base: Path, where: str) -> Path:
    value = raw.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: {key} is required and must be a file path")
    path = base / value  # relative paths are relative to the web config file
    if not path.is_file():
        raise ConfigError(f"{where}: {key} {path} does not exist or is not a file")
    return path


def _tls_version(value: Any, key: str, where: str) -> ssl.TLSVersion:
    if value not in _TLS_VERSIONS:
        raise ConfigError(
            f"{where}: invalid {key} {quote_value(value)} (one of {', '.join(_TLS_VERSIONS)})"
        )
    return _TLS_VERSIONS[value]


def _headers(raw: Any, where: str) -> tuple[tuple[str, str], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping")
    reject_unknown_keys(raw, _HTTP_KEYS, where)
    if not isinstance(raw.get("http2", True), bool):
        raise ConfigError(f"{where}: http2 must be true or false")
    headers = raw.get("headers") or {}
    if not isinstance(headers, dict):
        raise ConfigError(f"{where}: headers must be a mapping")
    out = []
    for name, value in headers.items():
        canonical = _ALLOWED_HEADERS.get(str(name).lower())
        if canonical is None:
            raise ConfigError(
                f"{where}: header {quote_value(name)} is not allowed "
                f"(allowed: {', '.join(_ALLOWED_HEADERS.values())})"
            )
        if not isinstance(value, str) or not value or any(c in value for c in "\r\n\0"):
            raise ConfigError(f"{where}: header {canonical} needs a one-line text value")
        out.append((canonical, value))
    return tuple(out)


def _users(raw: Any, where: str) -> dict[str, bytes]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping of user name to bcrypt hash")
    users = {}
    for name, hashed in raw.items():
        if not isinstance(name, str) or not name or ":" in name:
            raise ConfigError(f"{where}: user name {quote_value(name)} is empty or holds ':'")
        if not isinstance(hashed, str) or not _BCRYPT_HASH.match(hashed):
            # The value is never shown: it may be a password pasted where the hash belongs.
            raise ConfigError(
                f"{where}: the value for user {quote_value(name)} is not a bcrypt hash"
            )
        users[name] = hashed.encode("ascii")
    return users


def _ssl_reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None)
    return str(reason or type(exc).__name__).replace("_", " ").lower()
