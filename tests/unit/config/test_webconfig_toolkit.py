"""--web.config.file holds every key of exporter-toolkit's current schema with the toolkit's
meaning, or refuses the key in one line that says why.

Real TLS handshakes and requests on 127.0.0.1, with certificates made here (CA, server, clients
with and without the allowed SANs); rate limiting proved by counting 429s in a burst, with an
interval long enough (an hour) that no token comes back during the test however slow the
machine.
"""

from __future__ import annotations

import http.client
import ipaddress
import ssl
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from exporter.config.values import ConfigError
from exporter.config.webconfig import RateLimit, load_web_config
from exporter.web.auth import TokenBucket
from tests.support.exporters import InProcessExporter, exporter_process
from tests.support.fake_api import FakeApi
from tests.support.pki import _certificate, _name, _write, bcrypt_hash

USER, PASSWORD = "prometheus", "toolkit-parity-password"
ALLOWED_SAN = "prometheus.example"


@dataclass(frozen=True)
class Certs:
    ca: Path
    server_cert: Path
    server_key: Path
    allowed_cert: Path  # client, SANs include ALLOWED_SAN
    allowed_key: Path
    ip_cert: Path  # client, SAN 10.0.0.7 only
    ip_key: Path
    other_cert: Path  # client, SAN intruder.example only
    other_key: Path


def _client(d: Path, name: str, ca, ca_key, san: list[x509.GeneralName]) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _certificate(
        _name(name),
        ca.subject,
        key.public_key(),
        ca_key,
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
        san=san,
    )
    return _write(d / f"{name}.crt", cert=cert), _write(d / f"{name}.key", key=key)


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Certs:
    d = tmp_path_factory.mktemp("toolkit-pki")
    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca = _certificate(
        _name("toolkit CA"), _name("toolkit CA"), ca_key.public_key(), ca_key, ca=True
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _certificate(
        _name("127.0.0.1"),
        ca.subject,
        server_key.public_key(),
        ca_key,
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        san=[x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
    )
    allowed = _client(
        d,
        "allowed",
        ca,
        ca_key,
        [
            x509.DNSName("scraper.internal"),
            x509.DNSName(ALLOWED_SAN),
            x509.RFC822Name("ops@example.org"),
        ],
    )
    by_ip = _client(d, "by-ip", ca, ca_key, [x509.IPAddress(ipaddress.ip_address("10.0.0.7"))])
    other = _client(d, "other", ca, ca_key, [x509.DNSName("intruder.example")])
    return Certs(
        _write(d / "ca.crt", cert=ca),
        _write(d / "server.crt", cert=server),
        _write(d / "server.key", key=server_key),
        *allowed,
        *by_ip,
        *other,
    )


def write(d: Path, text: str) -> Path:
    path = d / "web.yml"
    path.write_text(textwrap.dedent(text))
    return path


def tls_lines(certs: Certs, **extra: str) -> str:
    lines = [f"  cert_file: {certs.server_cert}", f"  key_file: {certs.server_key}"]
    lines += [f"  {key}: {value}" for key, value in extra.items()]
    return "tls_server_config:\n" + "\n".join(lines) + "\n"


@pytest.fixture
def serve(tmp_path) -> Iterator:
    """serve(web config text) -> an in-process exporter behind it, reading a fake API."""
    with FakeApi() as api:
        started: list[InProcessExporter] = []

        def start(text: str) -> InProcessExporter:
            path = write(tmp_path, text)
            exporter = InProcessExporter(
                [
                    "--subaccount=acme-prod",
                    f"--api.base-url={api.base_url}",
                    f"--web.config.file={path}",
                ]
            ).__enter__()
            started.append(exporter)
            return exporter

        yield start
        for exporter in started:
            exporter.__exit__(None, None, None)


def https(exporter: InProcessExporter) -> str:
    return exporter.url.replace("http://", "https://")


def client_context(
    certs: Certs,
    cert: Path | None = None,
    key: Path | None = None,
    *,
    maximum: ssl.TLSVersion | None = None,
    minimum: ssl.TLSVersion | None = None,
    ciphers: str | None = None,
    curve: str | None = None,
) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(certs.ca))
    if cert is not None:
        context.load_cert_chain(cert, key)
    if maximum is not None:
        context.maximum_version = maximum
    if minimum is not None:
        context.minimum_version = minimum
    if ciphers is not None:
        context.set_ciphers(ciphers)
    if curve is not None:
        context.set_ecdh_curve(curve)
    return context


def status(
    exporter: InProcessExporter, context: ssl.SSLContext, path: str = "/-/healthy"
) -> int | str:
    """The HTTP status over TLS with this client context, or 'refused' when the handshake or
    the connection fails."""
    port = exporter.server.server_address[1]
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    except (ssl.SSLError, ConnectionError, http.client.RemoteDisconnected, OSError):
        return "refused"
    finally:
        connection.close()


# --- the whole schema in one file --------------------------------------------------------------


def node_exporter_style_file(certs: Certs) -> str:
    """Every key of the toolkit's schema, with values node_exporter accepts."""
    return tls_lines(
        certs,
        client_auth_type="VerifyClientCertIfGiven",
        client_ca_file=str(certs.ca),
        min_version="TLS12",
        max_version="TLS13",
        cipher_suites="[TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]",
        curve_preferences="[CurveP256]",
        prefer_server_cipher_suites="true",
        client_allowed_sans=f"[{ALLOWED_SAN}, 10.0.0.7]",
    ) + textwrap.dedent(f"""\
        http_server_config:
          http2: false
          headers:
            Strict-Transport-Security: max-age=31536000; includeSubDomains
            X-Content-Type-Options: nosniff
            X-Frame-Options: deny
            X-XSS-Protection: 1; mode=block
            Content-Security-Policy: default-src 'self'
        basic_auth_users:
          {USER}: '{bcrypt_hash(PASSWORD)}'
        rate_limit:
          interval: 1h
          burst: 50
        """)


@pytest.mark.slow
def test_a_file_with_every_toolkit_key_starts_a_real_exporter(certs, tmp_path):
    path = write(tmp_path, node_exporter_style_file(certs))

    def ready(url: str) -> bool:
        return requests.get(
            f"{url}/-/healthy",
            verify=str(certs.ca),
            timeout=2,
            cert=(str(certs.allowed_cert), str(certs.allowed_key)),
        ).ok

    with (
        FakeApi() as api,
        exporter_process(
            [
                "--subaccount=acme-prod",
                f"--api.base-url={api.base_url}",
                f"--web.config.file={path}",
            ],
            {"EIGHTBYEIGHT_API_KEY": "k"},
            tmp_path / "exporter.log",
            scheme="https",
            ready=ready,
        ) as (url, _),
    ):
        scraped = requests.get(
            f"{url}/metrics",
            verify=str(certs.ca),
            cert=(str(certs.allowed_cert), str(certs.allowed_key)),
            auth=(USER, PASSWORD),
            timeout=30,
        )
        other = requests.Session()
        other.verify = str(certs.ca)
        other.cert = (str(certs.other_cert), str(certs.other_key))
        with pytest.raises(requests.exceptions.ConnectionError):
            other.get(f"{url}/-/healthy", timeout=10)
    assert scraped.status_code == 200
    assert "eightbyeight_up" in scraped.text
    assert scraped.headers["X-Frame-Options"] == "deny"
    assert scraped.headers["Content-Security-Policy"] == "default-src 'self'"


def test_every_key_of_the_schema_is_read(certs, tmp_path):
    config = load_web_config(write(tmp_path, node_exporter_style_file(certs)))
    tls = config.tls
    assert tls.client_auth == ssl.CERT_OPTIONAL
    assert tls.client_allowed_sans == (ALLOWED_SAN, "10.0.0.7")
    assert tls.ciphers == ("ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384")
    assert tls.curve == "prime256v1"
    assert tls.prefer_server_ciphers is True
    assert (tls.min_version, tls.max_version) == (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3)
    assert len(config.headers) == 5
    assert set(config.users) == {USER}
    assert (config.rate_limit.interval, config.rate_limit.burst) == (3600.0, 50)


# --- keys refused, each in one line that says why ----------------------------------------------


def refused(certs: Certs) -> dict[str, tuple[str, str]]:
    tls = tls_lines(certs)
    return {
        "http2 true": (
            "http_server_config:\n  http2: true\n",
            "http2: true cannot be honoured: this server speaks HTTP/1.1 only "
            "(set http2: false or leave it out)",
        ),
        "RequireAnyClientCert": (
            tls + "  client_auth_type: RequireAnyClientCert\n",
            "client_auth_type RequireAnyClientCert is not supported: it takes any client certificate unverified",
        ),
        "TLS 1.3 cipher suite": (
            tls + "  cipher_suites: [TLS_CHACHA20_POLY1305_SHA256]\n",
            "cipher_suites TLS_CHACHA20_POLY1305_SHA256 is a TLS 1.3 suite, which cannot be chosen",
        ),
        "cipher this OpenSSL lacks": (
            tls + "  cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]\n",
            "cipher_suites TLS_RSA_WITH_RC4_128_SHA is not offered by this system's OpenSSL",
        ),
        "two curves": (
            tls + "  curve_preferences: [X25519, CurveP256]\n",
            "curve_preferences lists 2 curves; Python's TLS can restrict the handshake to one curve only",
        ),
        "cert and cert_file": (
            tls
            + f"  cert: |\n    {certs.server_cert.read_text().replace(chr(10), chr(10) + '    ')}\n",
            "at most one of cert and cert_file may be set",
        ),
        "SANs without verification": (
            tls + f"  client_allowed_sans: [{ALLOWED_SAN}]\n",
            "client_allowed_sans needs client_auth_type VerifyClientCertIfGiven or RequireAndVerifyClientCert",
        ),
        "X-Frame-Options value": (
            "http_server_config:\n  headers:\n    X-Frame-Options: allow-all\n",
            "invalid value 'allow-all' for header X-Frame-Options (one of deny, sameorigin)",
        ),
        "X-Content-Type-Options value": (
            "http_server_config:\n  headers:\n    X-Content-Type-Options: sniff\n",
            "for header X-Content-Type-Options (one of nosniff)",
        ),
        "rate limit burst 0": (
            "rate_limit:\n  interval: 1s\n  burst: 0\n",
            "burst 0 with an interval would refuse every request",
        ),
        "rate limit without a unit": (
            "rate_limit:\n  interval: 5\n  burst: 1\n",
            "rate_limit: interval: invalid duration 5 (a Go duration",
        ),
        "cert_file not a path": (
            "tls_server_config:\n  cert_file: 5\n  key_file: server.key\n",
            "tls_server_config: cert_file is required and must be a file path",
        ),
        "cert_file blank": (
            'tls_server_config:\n  cert_file: "  "\n  key_file: server.key\n',
            "tls_server_config: cert_file is required and must be a file path",
        ),
        "rate limit unknown key": (
            "rate_limit:\n  interval: 1s\n  bursts: 1\n",
            "unknown key 'bursts'",
        ),
        "unknown curve": (tls + "  curve_preferences: [P-256]\n", "unknown curve 'P-256'"),
    }


REFUSED = [
    "http2 true",
    "RequireAnyClientCert",
    "TLS 1.3 cipher suite",
    "cipher this OpenSSL lacks",
    "two curves",
    "cert and cert_file",
    "SANs without verification",
    "X-Frame-Options value",
    "X-Content-Type-Options value",
    "rate limit burst 0",
    "rate limit without a unit",
    "cert_file not a path",
    "cert_file blank",
    "rate limit unknown key",
    "unknown curve",
]


@pytest.mark.parametrize("name", REFUSED)
def test_a_key_that_cannot_be_honoured_is_refused_in_one_line(certs, tmp_path, name):
    text, expected = refused(certs)[name]
    with pytest.raises(ConfigError) as caught:
        load_web_config(write(tmp_path, text))
    message = str(caught.value)
    assert expected in message
    assert "\n" not in message


# --- client certificates: the five client_auth_type values and client_allowed_sans ------------


@pytest.mark.parametrize(
    ("auth_type", "without", "with_good", "with_rogue"),
    [
        ("NoClientCert", 200, 200, 200),
        # Asked for nothing, verifies nothing: every client is let in, as with the toolkit.
        ("RequestClientCert", 200, 200, 200),
        ("VerifyClientCertIfGiven", 200, 200, "refused"),
        ("RequireAndVerifyClientCert", "refused", 200, "refused"),
    ],
)
def test_client_auth_types_let_in_whom_the_toolkit_lets_in(
    certs, serve, tmp_path, auth_type, without, with_good, with_rogue
):
    extra = {"client_auth_type": auth_type}
    if auth_type in ("VerifyClientCertIfGiven", "RequireAndVerifyClientCert"):
        extra["client_ca_file"] = str(certs.ca)
    exporter = serve(tls_lines(certs, **extra))
    rogue_dir = tmp_path / "rogue"
    rogue_dir.mkdir()
    # A client certificate from another CA.
    rogue_key = ec.generate_private_key(ec.SECP256R1())
    rogue_cert = _certificate(
        _name("rogue"),
        _name("rogue"),
        rogue_key.public_key(),
        rogue_key,
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
    )
    rogue = (
        _write(rogue_dir / "r.crt", cert=rogue_cert),
        _write(rogue_dir / "r.key", key=rogue_key),
    )
    assert status(exporter, client_context(certs)) == without
    assert (
        status(exporter, client_context(certs, certs.allowed_cert, certs.allowed_key)) == with_good
    )
    assert status(exporter, client_context(certs, *rogue)) == with_rogue


def test_client_allowed_sans_admit_only_certificates_carrying_one(certs, serve):
    exporter = serve(
        tls_lines(
            certs,
            client_auth_type="RequireAndVerifyClientCert",
            client_ca_file=str(certs.ca),
            client_allowed_sans=f"[{ALLOWED_SAN}, 10.0.0.7]",
        )
    )
    assert status(exporter, client_context(certs, certs.allowed_cert, certs.allowed_key)) == 200
    # An IP address SAN matches as Go writes it.
    assert status(exporter, client_context(certs, certs.ip_cert, certs.ip_key)) == 200
    # Signed by the same CA, but without an allowed SAN.
    assert status(exporter, client_context(certs, certs.other_cert, certs.other_key)) == "refused"


def test_allowed_sans_refuse_a_client_without_a_certificate_when_certificates_are_optional(
    certs, serve
):
    exporter = serve(
        tls_lines(
            certs,
            client_auth_type="VerifyClientCertIfGiven",
            client_ca_file=str(certs.ca),
            client_allowed_sans=f"[{ALLOWED_SAN}]",
        )
    )
    assert status(exporter, client_context(certs)) == "refused"
    assert status(exporter, client_context(certs, certs.allowed_cert, certs.allowed_key)) == 200


def test_inline_certificate_key_and_client_ca(certs, serve):
    def block(path: Path) -> str:
        return "|\n" + textwrap.indent(path.read_text(), "    ")

    exporter = serve(
        "tls_server_config:\n"
        f"  cert: {block(certs.server_cert)}"
        f"  key: {block(certs.server_key)}"
        "  client_auth_type: RequireAndVerifyClientCert\n"
        f"  client_ca: {block(certs.ca)}"
    )
    assert status(exporter, client_context(certs, certs.allowed_cert, certs.allowed_key)) == 200
    assert status(exporter, client_context(certs)) == "refused"


def test_inline_key_is_never_in_an_error(certs, tmp_path):
    key_text = certs.allowed_key.read_text()  # a key that does not match the certificate
    text = f"tls_server_config:\n  cert_file: {certs.server_cert}\n  key: |\n" + textwrap.indent(
        key_text, "    "
    )
    with pytest.raises(ConfigError) as caught:
        load_web_config(write(tmp_path, text))
    assert "cannot use cert_file" in str(caught.value)
    assert "key (inline)" in str(caught.value)
    assert key_text.splitlines()[1] not in str(caught.value)


# --- versions, ciphers, curves --------------------------------------------------------------


def test_min_and_max_version_bound_the_handshake(certs, serve):
    only_12 = serve(tls_lines(certs, max_version="TLS12"))
    assert status(only_12, client_context(certs, minimum=ssl.TLSVersion.TLSv1_3)) == "refused"
    assert status(only_12, client_context(certs, maximum=ssl.TLSVersion.TLSv1_2)) == 200
    only_13 = serve(tls_lines(certs, min_version="TLS13"))
    assert status(only_13, client_context(certs, maximum=ssl.TLSVersion.TLSv1_2)) == "refused"
    assert status(only_13, client_context(certs, minimum=ssl.TLSVersion.TLSv1_3)) == 200


def test_cipher_suites_restrict_tls12(certs, serve):
    exporter = serve(
        tls_lines(
            certs, max_version="TLS12", cipher_suites="[TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]"
        )
    )
    tls12 = ssl.TLSVersion.TLSv1_2
    assert (
        status(
            exporter, client_context(certs, maximum=tls12, ciphers="ECDHE-ECDSA-AES256-GCM-SHA384")
        )
        == 200
    )
    assert (
        status(
            exporter, client_context(certs, maximum=tls12, ciphers="ECDHE-ECDSA-AES128-GCM-SHA256")
        )
        == "refused"
    )


def test_curve_preferences_restrict_the_key_exchange(certs, serve):
    # TLS 1.3: there the group of the key exchange is apart from the certificate's curve (in
    # TLS 1.2 a client offering only P-384 would also refuse the server's P-256 certificate).
    exporter = serve(tls_lines(certs, curve_preferences="[CurveP384]"))
    both = {"minimum": ssl.TLSVersion.TLSv1_3, "maximum": ssl.TLSVersion.TLSv1_3}
    assert status(exporter, client_context(certs, curve="secp384r1", **both)) == 200
    assert status(exporter, client_context(certs, curve="prime256v1", **both)) == "refused"


# --- rate_limit -----------------------------------------------------------------------------


def test_a_burst_beyond_the_limit_gets_429s_and_probes_stay_open(serve, tmp_path):
    # An hour per token: no token comes back during the test, however slow the machine.
    exporter = serve("rate_limit:\n  interval: 1h\n  burst: 5\n")
    statuses = [exporter.get("/", timeout=30).status_code for _ in range(12)]
    assert statuses.count(200) == 5
    assert statuses.count(429) == 7
    assert statuses[:5] == [200] * 5  # the bucket starts full
    assert exporter.get("/-/healthy").status_code == 200
    assert exporter.get("/-/ready").status_code == 200
    limited = exporter.get("/metrics")
    assert (limited.status_code, limited.text) == (429, "Too Many Requests\n")


def test_the_rate_limit_comes_before_basic_auth(serve):
    exporter = serve(
        f"basic_auth_users:\n  {USER}: '{bcrypt_hash(PASSWORD)}'\n"
        "rate_limit:\n  interval: 1h\n  burst: 2\n"
    )
    assert [exporter.get("/", auth=("x", "wrong")).status_code for _ in range(3)] == [401, 401, 429]
    assert exporter.get("/", auth=(USER, PASSWORD)).status_code == 429


def test_the_bucket_refills_one_token_per_interval():
    now = [0.0]
    bucket = TokenBucket(RateLimit(interval=10.0, burst=2), clock=lambda: now[0])
    assert [bucket.allow() for _ in range(3)] == [True, True, False]
    now[0] = 9.9
    assert bucket.allow() is False
    now[0] = 10.0
    assert [bucket.allow(), bucket.allow()] == [True, False]
    now[0] = 1000.0  # never more than the burst
    assert [bucket.allow() for _ in range(3)] == [True, True, False]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1s", 1.0), ("250ms", 0.25), ("1m30s", 90.0), ("1.5h", 5400.0), ("0", None), ("0s", None)],
)
def test_rate_limit_interval_takes_go_durations(tmp_path, text, seconds):
    config = load_web_config(write(tmp_path, f"rate_limit:\n  interval: {text}\n  burst: 3\n"))
    if seconds is None:
        assert config.rate_limit is None  # an interval of 0 turns the limit off, as in Go
    else:
        assert config.rate_limit.interval == pytest.approx(seconds)


def test_an_empty_tls_server_config_means_plain_http(tmp_path):
    assert load_web_config(write(tmp_path, "tls_server_config: {}\n")).tls is None
    assert load_web_config(write(tmp_path, "tls_server_config:\n")).tls is None


def test_verified_client_auth_without_a_ca_uses_the_systems(certs, tmp_path):
    config = load_web_config(
        write(tmp_path, tls_lines(certs, client_auth_type="RequireAndVerifyClientCert"))
    )
    assert config.tls_context.verify_mode == ssl.CERT_REQUIRED
