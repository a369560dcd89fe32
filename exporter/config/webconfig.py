"""--web.config.file: TLS, HTTP headers, basic auth and rate limiting, in the file format of
Prometheus' exporter-toolkit, with the toolkit's meaning for every key of its current schema.

```yaml
tls_server_config:
  cert_file: server.crt             # or cert: inline PEM; paths are relative to this file
  key_file: server.key              # or key: inline PEM
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: clients-ca.crt    # or client_ca: inline PEM; none: the system's CAs
  client_allowed_sans: [prometheus.example]   # a client certificate must carry one of these
  min_version: TLS12                # TLS10, TLS11, TLS12 (default), TLS13
  max_version: TLS13
  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]   # Go's names; TLS 1.2 and below
  curve_preferences: [X25519]       # one curve (Python's TLS sets one)
  prefer_server_cipher_suites: true
http_server_config:
  http2: false                      # HTTP/1.1 is what this server speaks
  headers:
    Strict-Transport-Security: max-age=31536000
basic_auth_users:
  prometheus: $2b$12$...            # bcrypt hashes (htpasswd -nBC 12 "" | tr -d ':')
rate_limit:
  interval: 1s                      # one request more per interval...
  burst: 10                         # ...up to this many at once; 429 beyond
```

Everything is checked when the file is loaded; any problem is a `ConfigError` of one line, and
so is a key this exporter cannot honour (it says which and why): `http2: true` (the server
speaks HTTP/1.1), `client_auth_type: RequireAnyClientCert` (Python's TLS verifies every client
certificate it accepts), TLS 1.3 names in `cipher_suites` (TLS 1.3 suites cannot be chosen),
more than one curve, and a cipher the local OpenSSL does not offer. Basic auth and the rate
limit cover every path except /-/healthy and /-/ready, so probes need no credentials and are
never turned away.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import ssl
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exporter.config.values import ConfigError, quote_value, read_yaml_mapping, reject_unknown_keys

UNAUTHENTICATED_PATHS = frozenset({"/-/healthy", "/-/ready"})
REALM = "eightbyeight-exporter"

_TOP_KEYS = {"tls_server_config", "http_server_config", "basic_auth_users", "rate_limit"}
# The keys that turn TLS on: a tls_server_config without any of them means plain HTTP, as in
# the toolkit.
_TLS_PRESENCE_KEYS = {
    "cert_file",
    "cert",
    "key_file",
    "key",
    "client_ca_file",
    "client_ca",
    "client_auth_type",
}
_TLS_KEYS = _TLS_PRESENCE_KEYS | {
    "client_allowed_sans",
    "min_version",
    "max_version",
    "cipher_suites",
    "curve_preferences",
    "prefer_server_cipher_suites",
}
_HTTP_KEYS = {"http2", "headers"}
_RATE_LIMIT_KEYS = {"interval", "burst"}
# The toolkit's configurable headers, and the values it allows for those it restricts.
_ALLOWED_HEADERS: dict[str, tuple[str, ...] | None] = {
    "Strict-Transport-Security": None,
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": None,
    "Content-Security-Policy": None,
}
_TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
# RequestClientCert asks for a certificate it neither requires nor verifies: every client is
# let in either way, which CERT_NONE gives (Python cannot take a certificate unverified).
_CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "RequestClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
_CLIENT_AUTH_REFUSED = {
    "RequireAnyClientCert": "it takes any client certificate unverified, and Python's TLS "
    "verifies every certificate it accepts: use RequireAndVerifyClientCert with client_ca_file",
}
# Go's cipher suite names (crypto/tls, secure and insecure lists) and OpenSSL's.
_CIPHERS = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256": "ECDHE-ECDSA-AES128-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256": "ECDHE-RSA-AES128-SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256": "AES128-SHA256",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA": "DES-CBC3-SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA": "ECDHE-RSA-DES-CBC3-SHA",
    "TLS_RSA_WITH_RC4_128_SHA": "RC4-SHA",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA": "ECDHE-ECDSA-RC4-SHA",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA": "ECDHE-RSA-RC4-SHA",
}
# Go accepts these names but cannot configure them (TLS 1.3 suites are always on), nor can
# OpenSSL's cipher list: refused rather than silently ignored.
_TLS13_CIPHERS = {
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
}
_CURVES = {
    "CurveP256": "prime256v1",
    "CurveP384": "secp384r1",
    "CurveP521": "secp521r1",
    "X25519": "X25519",
}
_BCRYPT_HASH = re.compile(r"^\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}$")
# Go's time.ParseDuration, as the toolkit reads rate_limit.interval.
_GO_DURATION = re.compile(r"^(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+$")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


class ToolkitSSLContext(ssl.SSLContext):
    """A server SSLContext that also carries client_allowed_sans (checked after the handshake
    by exporter/web/server.py, as the toolkit's VerifyPeerCertificate does during it)."""

    allowed_sans: frozenset[str] = frozenset()


def client_san_allowed(sock: ssl.SSLSocket) -> bool:
    """Whether the peer of a handshaken socket may go on: always, unless its context lists
    client_allowed_sans, and then only with a verified certificate carrying one of them."""
    allowed: frozenset[str] = getattr(sock.context, "allowed_sans", frozenset())
    if not allowed:
        return True
    certificate = sock.getpeercert()
    if not certificate:
        return False
    return any(value in allowed for value in _san_values(certificate))


def _san_values(certificate: dict[str, Any]) -> Iterator[str]:
    """DNS names, e-mail addresses, IP addresses and URIs, written as Go writes them."""
    for kind, value in certificate.get("subjectAltName", ()):
        if kind == "IP Address":
            with contextlib.suppress(ValueError):
                yield str(ipaddress.ip_address(value.strip()))
        elif kind in ("DNS", "email", "URI"):
            yield value


@dataclass(frozen=True)
class RateLimit:
    """rate_limit: a token bucket of `burst` requests, refilled one per `interval` seconds."""

    interval: float
    burst: int


@dataclass(frozen=True)
class TlsSettings:
    """Where the server's certificate is (a file, or inline PEM) and how clients are checked."""

    cert_file: Path | None
    key_file: Path | None
    client_auth: ssl.VerifyMode = ssl.CERT_NONE
    client_ca_file: Path | None = None
    min_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2
    max_version: ssl.TLSVersion | None = None
    prefer_server_ciphers: bool = False
    cert_pem: str | None = field(default=None, repr=False)
    key_pem: str | None = field(default=None, repr=False)
    client_ca_pem: str | None = field(default=None, repr=False)
    client_allowed_sans: tuple[str, ...] = ()
    ciphers: tuple[str, ...] = ()  # OpenSSL names
    curve: str | None = None  # OpenSSL name


@dataclass(frozen=True)
class WebConfig:
    """A validated --web.config.file."""

    tls: TlsSettings | None = None
    users: dict[str, bytes] = field(default_factory=dict, repr=False)
    headers: tuple[tuple[str, str], ...] = ()
    # Built once from `tls` when the file is loaded: the server wraps its socket with it.
    tls_context: ssl.SSLContext | None = field(default=None, repr=False, compare=False)
    rate_limit: RateLimit | None = None

    @property
    def needs_middleware(self) -> bool:
        return bool(self.users or self.headers or self.rate_limit)


def load_web_config(path: str | Path) -> WebConfig:
    """Read, validate and check --web.config.file; ConfigError (one line) on any problem."""
    path = Path(path)
    doc = read_yaml_mapping(path, "web config file")
    where = f"web config {path}"
    reject_unknown_keys(doc, _TOP_KEYS, where)
    tls = _tls_settings(doc.get("tls_server_config"), path.parent, f"{where}: tls_server_config")
    headers = _headers(doc.get("http_server_config"), f"{where}: http_server_config")
    users = _users(doc.get("basic_auth_users"), f"{where}: basic_auth_users")
    rate_limit = _rate_limit(doc.get("rate_limit"), f"{where}: rate_limit")
    # Unreadable or mismatched certificates fail now, not on the first scrape.
    context = ssl_context(tls, f"{where}: tls_server_config") if tls is not None else None
    return WebConfig(tls, users, headers, context, rate_limit)


def ssl_context(tls: TlsSettings, where: str = "TLS") -> ssl.SSLContext:
    """A server-side SSLContext for the settings; ConfigError (prefixed `where`) if a file
    cannot be used."""
    context = ToolkitSSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = tls.min_version
    if tls.max_version is not None:
        context.maximum_version = tls.max_version
    if tls.prefer_server_ciphers:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    if tls.ciphers:
        context.set_ciphers(":".join(tls.ciphers))  # each was tried alone when read
    if tls.curve is not None:
        context.set_ecdh_curve(tls.curve)
    _load_certificate(context, tls, where)
    context.verify_mode = tls.client_auth
    if tls.client_auth != ssl.CERT_NONE:
        _load_client_cas(context, tls, where)
    context.allowed_sans = frozenset(tls.client_allowed_sans)
    return context


def _load_certificate(context: ssl.SSLContext, tls: TlsSettings, where: str) -> None:
    cert_name = str(tls.cert_file) if tls.cert_file else "cert (inline)"
    key_name = str(tls.key_file) if tls.key_file else "key (inline)"
    try:
        with (
            _pem_path(tls.cert_file, tls.cert_pem) as cert,
            _pem_path(tls.key_file, tls.key_pem) as key,
        ):
            context.load_cert_chain(cert, key)
    except FileNotFoundError as exc:
        raise ConfigError(f"{where}: {exc.filename} does not exist") from None
    except ssl.SSLError as exc:
        raise ConfigError(
            f"{where}: cannot use {'cert_file ' if tls.cert_file else ''}{cert_name} with "
            f"{'key_file ' if tls.key_file else ''}{key_name}: {_ssl_reason(exc)}"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read {exc.filename}: {exc.strerror}") from None


def _load_client_cas(context: ssl.SSLContext, tls: TlsSettings, where: str) -> None:
    if tls.client_ca_file is None and tls.client_ca_pem is None:
        # As Go does without ClientCAs: the system's certificate authorities.
        context.load_default_certs(ssl.Purpose.CLIENT_AUTH)
        return
    name = f"client_ca_file {tls.client_ca_file}" if tls.client_ca_file else "client_ca"
    try:
        if tls.client_ca_file is not None:
            context.load_verify_locations(cafile=tls.client_ca_file)
        else:
            context.load_verify_locations(cadata=tls.client_ca_pem)
    except FileNotFoundError:
        raise ConfigError(f"{where}: {name} does not exist") from None
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise ConfigError(
            f"{where}: {name} holds no usable CA certificate: {_ssl_reason(exc)}"
        ) from None


@contextlib.contextmanager
def _pem_path(path: Path | None, pem: str | None) -> Iterator[Path]:
    """A path OpenSSL can read: the file itself, or inline PEM in memory (a memfd on Linux,
    else a private temporary file removed at once)."""
    if path is not None:
        yield path
        return
    data = (pem or "").encode("utf-8")
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("eightbyeight-exporter-pem", os.MFD_CLOEXEC)
        try:
            os.write(fd, data)
            yield Path(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)
        return
    with tempfile.TemporaryDirectory() as directory:
        file = Path(directory) / "pem"
        file.touch(mode=0o600)
        file.write_bytes(data)
        yield file


def _tls_settings(raw: Any, base: Path, where: str) -> TlsSettings | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping")
    reject_unknown_keys(raw, _TLS_KEYS, where)
    given = {key for key, value in raw.items() if value not in (None, "", [], False)}
    if not given & _TLS_PRESENCE_KEYS:
        if given:
            # The toolkit would serve plain HTTP here; a TLS option with no certificate is
            # more likely a mistake than a wish for no TLS.
            raise ConfigError(
                f"{where}: {sorted(given)[0]} is set but no certificate (cert_file or cert): "
                "TLS would be off"
            )
        return None
    cert_file, cert_pem = _file_or_inline(raw, "cert_file", "cert", base, where)
    key_file, key_pem = _file_or_inline(raw, "key_file", "key", base, where)
    auth_name = raw.get("client_auth_type") or "NoClientCert"
    if auth_name in _CLIENT_AUTH_REFUSED:
        raise ConfigError(
            f"{where}: client_auth_type {auth_name} is not supported: "
            f"{_CLIENT_AUTH_REFUSED[auth_name]}"
        )
    if auth_name not in _CLIENT_AUTH:
        names = [*_CLIENT_AUTH, *_CLIENT_AUTH_REFUSED]
        raise ConfigError(
            f"{where}: invalid client_auth_type {quote_value(auth_name)} (one of {', '.join(names)})"
        )
    ca_file, ca_pem = _file_or_inline(
        raw, "client_ca_file", "client_ca", base, where, required=False
    )
    if (ca_file or ca_pem) and auth_name == "NoClientCert":
        raise ConfigError(
            f"{where}: client_ca_file or client_ca is set but client_auth_type is NoClientCert"
        )
    sans = _allowed_sans(raw.get("client_allowed_sans"), auth_name, where)
    min_version = _tls_version(raw.get("min_version") or "TLS12", "min_version", where)
    max_version = (
        _tls_version(raw["max_version"], "max_version", where) if raw.get("max_version") else None
    )
    if max_version is not None and max_version < min_version:
        raise ConfigError(f"{where}: max_version is lower than min_version")
    prefer = raw.get("prefer_server_cipher_suites", False)
    if not isinstance(prefer, bool):
        raise ConfigError(f"{where}: prefer_server_cipher_suites must be true or false")
    return TlsSettings(
        cert_file,
        key_file,
        _CLIENT_AUTH[auth_name],
        ca_file,
        min_version,
        max_version,
        prefer,
        cert_pem=cert_pem,
        key_pem=key_pem,
        client_ca_pem=ca_pem,
        client_allowed_sans=sans,
        ciphers=_cipher_suites(raw.get("cipher_suites"), where),
        curve=_curve(raw.get("curve_preferences"), where),
    )


def _file_or_inline(
    raw: dict[str, Any],
    file_key: str,
    inline_key: str,
    base: Path,
    where: str,
    *,
    required: bool = True,
) -> tuple[Path | None, str | None]:
    """The file or the inline PEM of one item; exactly one of them, as the toolkit wants."""
    has_file, has_inline = bool(raw.get(file_key)), bool(raw.get(inline_key))
    if has_file and has_inline:
        raise ConfigError(f"{where}: at most one of {inline_key} and {file_key} may be set")
    if has_inline:
        pem = raw[inline_key]
        if not isinstance(pem, str) or "-----BEGIN " not in pem:
            raise ConfigError(f"{where}: {inline_key} must be PEM text (-----BEGIN ...)")
        return None, pem
    if has_file:
        return _path(raw, file_key, base, where), None
    if required:
        raise ConfigError(f"{where}: {file_key} or {inline_key} is required")
    return None, None


def _allowed_sans(raw: Any, auth_name: str, where: str) -> tuple[str, ...]:
    if raw is None or raw == []:
        return ()
    if not isinstance(raw, list) or not all(isinstance(s, str) and s for s in raw):
        raise ConfigError(f"{where}: client_allowed_sans must be a list of names")
    if _CLIENT_AUTH[auth_name] == ssl.CERT_NONE:
        raise ConfigError(
            f"{where}: client_allowed_sans needs client_auth_type VerifyClientCertIfGiven or "
            f"RequireAndVerifyClientCert (with {auth_name} no certificate is checked)"
        )
    return tuple(raw)


def _cipher_suites(raw: Any, where: str) -> tuple[str, ...]:
    if raw is None or raw == []:
        return ()
    if not isinstance(raw, list):
        raise ConfigError(f"{where}: cipher_suites must be a list of Go cipher suite names")
    names = []
    for name in raw:
        if name in _TLS13_CIPHERS:
            raise ConfigError(
                f"{where}: cipher_suites {name} is a TLS 1.3 suite, which cannot be chosen "
                "(TLS 1.3 suites are always on); list TLS 1.2 suites only"
            )
        openssl_name = _CIPHERS.get(name) if isinstance(name, str) else None
        if openssl_name is None:
            raise ConfigError(f"{where}: unknown cipher suite {quote_value(name)} (Go's names)")
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).set_ciphers(openssl_name)
        except ssl.SSLError:
            raise ConfigError(
                f"{where}: cipher_suites {name} is not offered by this system's OpenSSL "
                f"({ssl.OPENSSL_VERSION})"
            ) from None
        names.append(openssl_name)
    return tuple(names)


def _curve(raw: Any, where: str) -> str | None:
    if raw is None or raw == []:
        return None
    if not isinstance(raw, list) or not all(isinstance(c, str) for c in raw):
        raise ConfigError(f"{where}: curve_preferences must be a list of Go curve names")
    for name in raw:
        if name not in _CURVES:
            raise ConfigError(
                f"{where}: unknown curve {quote_value(name)} (one of {', '.join(_CURVES)})"
            )
    if len(raw) > 1:
        raise ConfigError(
            f"{where}: curve_preferences lists {len(raw)} curves; Python's TLS can restrict "
            "the handshake to one curve only: list one"
        )
    return _CURVES[raw[0]]


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
    http2 = raw.get("http2", False)
    if not isinstance(http2, bool):
        raise ConfigError(f"{where}: http2 must be true or false")
    if http2:
        raise ConfigError(
            f"{where}: http2: true cannot be honoured: this server speaks HTTP/1.1 only "
            "(set http2: false or leave it out)"
        )
    headers = raw.get("headers") or {}
    if not isinstance(headers, dict):
        raise ConfigError(f"{where}: headers must be a mapping")
    canonical_names = {name.lower(): name for name in _ALLOWED_HEADERS}
    out = []
    for name, value in headers.items():
        canonical = canonical_names.get(str(name).lower())
        if canonical is None:
            raise ConfigError(
                f"{where}: header {quote_value(name)} is not allowed "
                f"(allowed: {', '.join(_ALLOWED_HEADERS)})"
            )
        if not isinstance(value, str) or not value or any(c in value for c in "\r\n\0"):
            raise ConfigError(f"{where}: header {canonical} needs a one-line text value")
        allowed_values = _ALLOWED_HEADERS[canonical]
        if allowed_values is not None and value.lower() not in allowed_values:
            raise ConfigError(
                f"{where}: invalid value {quote_value(value)} for header {canonical} "
                f"(one of {', '.join(allowed_values)})"
            )
        out.append((canonical, value))
    return tuple(out)


def _rate_limit(raw: Any, where: str) -> RateLimit | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping with interval and burst")
    reject_unknown_keys(raw, _RATE_LIMIT_KEYS, where)
    interval = _go_duration(raw.get("interval", "0s"), f"{where}: interval")
    burst = raw.get("burst", 0)
    if isinstance(burst, bool) or not isinstance(burst, int) or burst < 0:
        raise ConfigError(f"{where}: burst must be a whole number, 0 or more")
    if interval == 0:
        return None  # the toolkit's meaning: no rate limit
    if burst == 0:
        raise ConfigError(f"{where}: burst 0 with an interval would refuse every request")
    return RateLimit(interval, burst)


def _go_duration(value: Any, where: str) -> float:
    """Seconds from a Go duration ('1s', '250ms', '1m30s'); '0' is zero."""
    if value == 0 and not isinstance(value, bool):
        return 0.0  # YAML's 0, or "0": Go reads both as no duration
    text = str(value).strip() if isinstance(value, str) else None
    if text == "0":
        return 0.0
    if text is None or not _GO_DURATION.match(text):
        raise ConfigError(
            f"{where}: invalid duration {quote_value(value)} (a Go duration such as 1s, 250ms, 1m30s)"
        )
    return sum(
        float(number) * _GO_UNITS[unit]
        for number, unit in re.findall(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)", text)
    )


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
