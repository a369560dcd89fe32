"""--web.config.file: TLS (with and without client certificates) and bcrypt basic auth, in
exporter-toolkit's format, checked at start-up and applied to every endpoint but /-/healthy.

Certificates are generated per test session with `cryptography`; the exporter runs as a real
process serving HTTPS on 127.0.0.1.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
import textwrap
from pathlib import Path

import bcrypt
import pytest
import requests

import exporter.web.auth
from exporter.cli.main import main
from exporter.config.values import ConfigError
from exporter.config.webconfig import load_web_config
from exporter.web.auth import BasicAuth
from tests.support.exporters import exporter_process, parse_samples, value
from tests.support.fake_api import FakeApi
from tests.support.pki import Pki, basic_authorization, bcrypt_hash
from tests.support.processes import REPO

KEY = "webcfg-key-0b7d2c91-never-shown"
USER, PASSWORD = "prometheus", "s3cret-scraper-password"
OTHER_USER, OTHER_PASSWORD = "grafana", "another: password with spaces and ü"


@pytest.fixture(scope="session")
def hashes_yaml() -> str:
    return (
        f"basic_auth_users:\n  {USER}: '{bcrypt_hash(PASSWORD)}'\n"
        f"  {OTHER_USER}: '{bcrypt_hash(OTHER_PASSWORD)}'\n"
    )


def write_config(directory: Path, text: str, name: str = "web.yml") -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text))
    return path


# --- Loading and validation ------------------------------------------------------------------


def test_empty_file_means_plain_http_without_auth(tmp_path):
    config = load_web_config(write_config(tmp_path, ""))
    assert config.tls is None
    assert config.users == {}
    assert not config.needs_middleware


def test_full_config_loads_with_paths_relative_to_the_file(pki, hashes_yaml, tmp_path):
    path = write_config(
        pki.ca.parent,
        textwrap.dedent("""
        tls_server_config:
          cert_file: server.crt
          key_file: server.key
          client_auth_type: RequireAndVerifyClientCert
          client_ca_file: ca.crt
          min_version: TLS13
        http_server_config:
          http2: false
          headers:
            X-Frame-Options: deny
        """)
        + hashes_yaml,
        name="full.yml",
    )
    config = load_web_config(path)
    assert config.tls.cert_file == pki.server_cert
    assert config.tls.client_auth == ssl.CERT_REQUIRED
    assert config.tls.min_version == ssl.TLSVersion.TLSv1_3
    assert set(config.users) == {USER, OTHER_USER}
    assert config.headers == (("X-Frame-Options", "deny"),)
    assert "$2b$" not in repr(config)


def bad_configs(pki: Pki) -> dict[str, tuple[str, str]]:
    """name -> (file text, what the one-line error must mention)."""
    tls = f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {pki.server_key}\n"
    return {
        "not YAML": ("tls_server_config: [unclosed\n", "not valid YAML at line"),
        "a list": ("- a\n- b\n", "must be a YAML mapping"),
        "unknown top key": ("tls_config: {}\n", "unknown key 'tls_config'"),
        "tls not a mapping": ("tls_server_config: yes\n", "must be a mapping"),
        "tls without files": (
            "tls_server_config:\n  min_version: TLS12\n",
            "min_version is set but no certificate (cert_file or cert)",
        ),
        "cert without key": (
            f"tls_server_config:\n  cert_file: {pki.server_cert}\n",
            "key_file or key is required",
        ),
        "missing cert file": (
            f"tls_server_config:\n  cert_file: /nonexistent/s.crt\n  key_file: {pki.server_key}\n",
            "/nonexistent/s.crt does not exist",
        ),
        "key of another certificate": (
            f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {pki.other_key}\n",
            "cannot use cert_file",
        ),
        "certificate that is not PEM": (
            f"tls_server_config:\n  cert_file: {pki.ca.parent / 'junk.crt'}\n"
            f"  key_file: {pki.server_key}\n",
            "cannot use cert_file",
        ),
        "bad client_auth_type": (
            tls + "  client_auth_type: Sometimes\n",
            "invalid client_auth_type",
        ),
        "unverifiable client certs": (
            tls + f"  client_auth_type: RequireAnyClientCert\n  client_ca_file: {pki.ca}\n",
            "RequireAnyClientCert is not supported",
        ),
        "CA without a client auth type": (
            tls + f"  client_ca_file: {pki.ca}\n",
            "client_ca_file or client_ca is set but client_auth_type is NoClientCert",
        ),
        "CA file that is not a certificate": (
            tls
            + f"  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: {pki.server_key}\n",
            "holds no usable CA certificate",
        ),
        "bad min_version": (tls + "  min_version: TLS1.2\n", "invalid min_version"),
        "max below min": (tls + "  min_version: TLS13\n  max_version: TLS12\n", "lower than"),
        "cipher suites": (
            tls + "  cipher_suites: [TLS_AES_128_GCM_SHA256]\n",
            "cipher_suites TLS_AES_128_GCM_SHA256 is a TLS 1.3 suite, which cannot be chosen",
        ),
        "prefer_server_cipher_suites not a bool": (
            tls + "  prefer_server_cipher_suites: maybe\n",
            "must be true or false",
        ),
        "users as a list": ("basic_auth_users: [a, b]\n", "mapping of user name to bcrypt hash"),
        "plain password instead of a hash": (
            "basic_auth_users:\n  alice: hunter2-plaintext\n",
            "not a bcrypt hash",
        ),
        "truncated hash": (
            "basic_auth_users:\n  alice: $2b$10$tooshort\n",
            "not a bcrypt hash",
        ),
        "user name with a colon": (
            f"basic_auth_users:\n  'a:b': '{bcrypt_hash('x')}'\n",
            "holds ':'",
        ),
        "header not allowed": (
            "http_server_config:\n  headers:\n    Set-Cookie: a=b\n",
            "header 'Set-Cookie' is not allowed",
        ),
        "http2 not a bool": ("http_server_config:\n  http2: sure\n", "http2 must be true or false"),
        "unknown http key": ("http_server_config:\n  keepalive: 1\n", "unknown key 'keepalive'"),
        # Unknown keys after known ones, and several at once: every key is checked.
        "unknown top key after a known one": (
            "http_server_config: {}\ntls_config: {}\n",
            "unknown key 'tls_config'",
        ),
        "several unknown top keys": (
            "http_server_config: {}\ntls: {}\nusers: {}\n",
            "unknown key 'tls'",
        ),
        "unknown tls key after known ones": (tls + "  ciphers: strong\n", "unknown key 'ciphers'"),
        "unknown http key after a known one": (
            "http_server_config:\n  http2: false\n  keepalive: 1\n  timeout: 2\n",
            "unknown key 'keepalive'",
        ),
    }


BAD_NAMES = sorted(
    bad_configs(
        Pki(*(Path("/x"),) * 8)  # names only; the real paths come from the fixture
    )
)


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_web_config_is_one_clear_line(pki, tmp_path, name):
    (pki.ca.parent / "junk.crt").write_text("this is not a certificate\n")
    text, expected = bad_configs(pki)[name]
    path = write_config(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_web_config(path)
    message = str(caught.value)
    assert expected in message
    assert "\n" not in message
    assert "hunter2-plaintext" not in message


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_web_config(tmp_path / "nope.yml")
    with pytest.raises(ConfigError, match="cannot be read"):
        load_web_config(tmp_path)
    binary = tmp_path / "binary.yml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_web_config(binary)


@pytest.mark.parametrize("name", ["plain password instead of a hash", "key of another certificate"])
def test_config_check_rejects_bad_web_config(pki, tmp_path, monkeypatch, capsys, name):
    monkeypatch.setenv("EIGHTBYEIGHT_API_KEY", KEY)
    text, expected = bad_configs(pki)[name]
    path = write_config(tmp_path, text)
    code = main(["--subaccount", "acme-prod", "--web.config.file", str(path), "--config.check"])
    err = capsys.readouterr().err
    assert code == 2
    assert expected in err
    assert err.count("\n") == 1
    assert KEY not in err
    assert "hunter2-plaintext" not in err


def test_config_check_accepts_a_good_web_config(pki, hashes_yaml, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EIGHTBYEIGHT_API_KEY", KEY)
    path = write_config(
        tmp_path,
        f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {pki.server_key}\n"
        + hashes_yaml,
    )
    code = main(["--subaccount", "acme-prod", "--web.config.file", str(path), "--config.check"])
    assert code == 0, capsys.readouterr().err


def test_bad_web_config_stops_the_process_at_start_up(tmp_path):
    path = write_config(tmp_path, "basic_auth_users:\n  alice: hunter2-plaintext\n")
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "--web.config.file", str(path), "--subaccount", "abc"],
        env={"EIGHTBYEIGHT_API_KEY": KEY, "PATH": "/usr/bin:/bin"},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "not a bcrypt hash" in result.stderr
    assert "Traceback" not in result.stderr
    assert "hunter2-plaintext" not in result.stderr


# --- Basic auth, in-process ------------------------------------------------------------------


@pytest.fixture
def counted_bcrypt(monkeypatch):
    calls = []
    real = bcrypt.checkpw

    def counting(password, hashed):
        calls.append(password)
        return real(password, hashed)

    monkeypatch.setattr(exporter.web.auth.bcrypt, "checkpw", counting)
    return calls


def test_verified_credentials_are_remembered(counted_bcrypt):
    auth = BasicAuth({USER: bcrypt_hash(PASSWORD).encode()})
    for _ in range(20):
        assert auth.check(basic_authorization(f"{USER}:{PASSWORD}"))
    assert len(counted_bcrypt) == 1


def test_wrong_passwords_are_never_remembered(counted_bcrypt):
    auth = BasicAuth({USER: bcrypt_hash(PASSWORD).encode()})
    assert auth.check(basic_authorization(f"{USER}:{PASSWORD}"))
    for _ in range(3):
        assert not auth.check(basic_authorization(f"{USER}:{PASSWORD}x"))
    assert not auth.check(basic_authorization(f"{USER}:"))
    assert len(counted_bcrypt) == 5


def test_unknown_users_cost_a_bcrypt_check_too(counted_bcrypt):
    auth = BasicAuth({USER: bcrypt_hash(PASSWORD).encode()})
    assert not auth.check(basic_authorization(f"mallory:{PASSWORD}"))
    assert len(counted_bcrypt) == 1


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Basic",
        "Basic ",
        "Basic !!!not-base64!!!",
        "Basic " + "QUJD" * 2000,
        "Basic dXNlcm5vY29sb24=",  # "usernocolon"
        "Bearer " + PASSWORD,
        "Digest username=prometheus",
        "Basic \u00ff\u00fe",
        basic_authorization(f"{USER.upper()}:{PASSWORD}"),
        basic_authorization(f"{USER}:{PASSWORD.upper()}"),
        basic_authorization(f"{USER}:{PASSWORD}\0"),
    ],
)
def test_malformed_or_wrong_credentials_are_refused(header):
    auth = BasicAuth({USER: bcrypt_hash(PASSWORD).encode()})
    assert not auth.check(header)


def test_long_passwords_follow_bcrypt_semantics():
    long_password = "p" * 100
    auth = BasicAuth({USER: bcrypt.hashpw(long_password.encode()[:72], bcrypt.gensalt(4))})
    assert auth.check(basic_authorization(f"{USER}:{long_password}"))
    assert not auth.check(basic_authorization(f"{USER}:{'q' * 100}"))


def test_two_y_and_two_a_hashes_from_htpasswd_work():
    hashed = bcrypt_hash(PASSWORD)
    for prefix in ("$2y$", "$2a$"):
        auth = BasicAuth({USER: (prefix + hashed[4:]).encode()})
        assert auth.check(basic_authorization(f"{USER}:{PASSWORD}"))


# --- A real exporter over TLS ----------------------------------------------------------------


@pytest.fixture(scope="module")
def api():
    with FakeApi() as fake:
        yield fake


def run_exporter(api: FakeApi, web_config: Path, log: Path, ready):
    env = {"EIGHTBYEIGHT_API_KEY": KEY}
    argv = ["--api.base-url", api.base_url, "--subaccount", "acme-prod", "--web.config.file"]
    return exporter_process([*argv, str(web_config)], env, log, scheme="https", ready=ready)


@pytest.fixture(scope="module")
def tls_auth_exporter(api, pki, hashes_yaml, tmp_path_factory):
    d = tmp_path_factory.mktemp("tls-auth")
    path = write_config(
        d,
        textwrap.dedent(f"""
        tls_server_config:
          cert_file: {pki.server_cert}
          key_file: {pki.server_key}
          min_version: TLS12
        http_server_config:
          headers:
            Strict-Transport-Security: max-age=31536000
            X-Content-Type-Options: nosniff
        """)
        + hashes_yaml,
    )

    def ready(url: str) -> bool:
        return requests.get(url + "/-/healthy", verify=pki.ca, timeout=2).status_code == 200

    with run_exporter(api, path, d / "exporter.log", ready) as (url, pid):
        yield url, pid, d / "exporter.log"


def test_right_credentials_over_tls(tls_auth_exporter, pki):
    url, _, _ = tls_auth_exporter
    # Credentials travel as UTF-8 bytes, as Prometheus sends them (RFC 7617, charset UTF-8).
    for user, password in ((USER, PASSWORD), (OTHER_USER, OTHER_PASSWORD)):
        auth = (user.encode(), password.encode())
        answer = requests.get(url + "/metrics", auth=auth, verify=pki.ca, timeout=10)
        assert answer.status_code == 200
        assert value(parse_samples(answer.text), "eightbyeight_up", subaccount="acme-prod") == 1
        assert answer.headers["Strict-Transport-Security"] == "max-age=31536000"
        assert answer.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("path", ["/metrics", "/probe?target=acme-dev", "/", "/nowhere"])
@pytest.mark.parametrize(
    "auth", [None, (USER, "wrong"), ("mallory", PASSWORD), (USER, ""), ("", "")]
)
def test_missing_or_wrong_credentials_get_401_everywhere(tls_auth_exporter, pki, path, auth):
    url, _, _ = tls_auth_exporter
    answer = requests.get(url + path, auth=auth, verify=pki.ca, timeout=10)
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"].startswith("Basic realm=")
    assert "eightbyeight_" not in answer.text


def test_healthy_needs_no_credentials(tls_auth_exporter, pki):
    url, _, _ = tls_auth_exporter
    answer = requests.get(url + "/-/healthy", verify=pki.ca, timeout=10)
    assert answer.status_code == 200
    assert answer.headers["X-Content-Type-Options"] == "nosniff"


def test_plain_http_on_the_tls_port_is_refused_and_harmless(tls_auth_exporter, pki):
    url, _, _ = tls_auth_exporter
    plain = url.replace("https://", "http://")
    with pytest.raises(requests.ConnectionError):
        requests.get(plain + "/metrics", auth=(USER, PASSWORD), timeout=5)
    assert requests.get(url + "/-/healthy", verify=pki.ca, timeout=10).status_code == 200


def test_untrusted_server_certificate_is_rejected_by_clients(tls_auth_exporter):
    url, _, _ = tls_auth_exporter
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(url + "/-/healthy", timeout=10)  # the system CAs do not know our test CA


def test_tls_exporter_log_is_clean(tls_auth_exporter, pki):
    url, _, log = tls_auth_exporter
    requests.get(url + "/metrics", auth=(USER, "wrong"), verify=pki.ca, timeout=10)
    requests.get(url + "/metrics", auth=(USER, PASSWORD), verify=pki.ca, timeout=10)
    text = log.read_text()
    assert "tls=on" in text
    assert "basic_auth=on" in text
    assert "Traceback" not in text
    for secret in (KEY, PASSWORD, OTHER_PASSWORD):
        assert secret not in text


@pytest.fixture(scope="module")
def mtls_exporter(api, pki, tmp_path_factory):
    d = tmp_path_factory.mktemp("mtls")
    path = write_config(
        d,
        f"""
        tls_server_config:
          cert_file: {pki.server_cert}
          key_file: {pki.server_key}
          client_auth_type: RequireAndVerifyClientCert
          client_ca_file: {pki.ca}
          min_version: TLS13
        """,
    )

    def ready(url: str) -> bool:
        answer = requests.get(
            url + "/-/healthy",
            verify=pki.ca,
            cert=(pki.client_cert, pki.client_key),
            timeout=2,
        )
        return answer.status_code == 200

    with run_exporter(api, path, d / "exporter.log", ready) as (url, pid):
        yield url, pid


def test_client_certificate_from_the_ca_is_accepted(mtls_exporter, pki):
    url, _ = mtls_exporter
    answer = requests.get(
        url + "/metrics", verify=pki.ca, cert=(pki.client_cert, pki.client_key), timeout=10
    )
    assert answer.status_code == 200
    assert value(parse_samples(answer.text), "eightbyeight_up", subaccount="acme-prod") == 1


@pytest.mark.parametrize("client", ["none", "rogue"])
def test_missing_or_foreign_client_certificate_is_refused(mtls_exporter, pki, client):
    url, _ = mtls_exporter
    cert = (pki.rogue_cert, pki.rogue_key) if client == "rogue" else None
    with pytest.raises(requests.exceptions.RequestException):
        requests.get(url + "/metrics", verify=pki.ca, cert=cert, timeout=10)
    # ...and the server keeps serving clients that do present a good certificate.
    good = requests.get(
        url + "/-/healthy", verify=pki.ca, cert=(pki.client_cert, pki.client_key), timeout=10
    )
    assert good.status_code == 200


def tls_handshake(url: str, context: ssl.SSLContext) -> None:
    host, port = url.removeprefix("https://").split(":")
    with (
        socket.create_connection((host, int(port)), timeout=10) as sock,
        context.wrap_socket(sock, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(b"GET /-/healthy HTTP/1.0\r\n\r\n")
        tls.recv(1024)


def test_tls_below_min_version_is_refused(mtls_exporter, pki):
    url, _ = mtls_exporter
    context = ssl.create_default_context(cafile=str(pki.ca))
    context.load_cert_chain(pki.client_cert, pki.client_key)
    tls_handshake(url, context)  # TLS 1.3 works...
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(ssl.SSLError):
        tls_handshake(url, context)  # ...TLS 1.2 is below min_version
