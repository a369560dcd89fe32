"""Test plumbing in one place: processes and servers that are always stopped, and test data.

- Processes: `running_process` (any command, polled until ready), `exporter_process`
  (`python -m exporter`), `prometheus_process`, `alertmanager_process`.
- Servers in this process: `FakeApi` (a scriptable 8x8 API), `InProcessExporter` (the real
  exporter on a loopback socket, its callback listener too), `WebhookReceiver` (Alertmanager
  notifications), `CallbackReceiver` (the exporter's 8x8 callback receiver on its own).
- Data: `number`/`numbers_body` (API records), `vnu`/`vnu_number`/`vss` (8x8 callbacks),
  `parse_samples`/`value` (expositions), `fast_rules`, `query`, `make_pki` (test
  certificates), `self_signed_certificate`, `bcrypt_hash`.
- Containers: `container_env`, `podman`, `running_container` (always removed), the stand-in
  and exporter image builds (the session fixtures in tests/conftest.py use them).

Everything listens on 127.0.0.1 and a free port; readiness is polled, never slept for.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import requests
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from prometheus_client.parser import text_string_to_metric_families

from exporter.app import Exporter, build_exporter
from exporter.config.flags import build_parser
from exporter.config.settings import settings_from_flags
from exporter.polling.scraper import SYSTEM_CLOCK, Clock
from exporter.pushing.receiver import WebhookReceiver as CallbackApp
from exporter.pushing.state import WebhookState
from exporter.web.routes import ExporterApp
from exporter.web.server import ExporterServer, make_server, serve_in_thread

REPO = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() == "true"
# How often in-process servers look for shutdown(): each stop waits up to this long.
POLL_INTERVAL = 0.02

# Debian installs Alertmanager as prometheus-alertmanager; upstream tarballs call it alertmanager.
_TOOL_ALIASES = {"alertmanager": ("prometheus-alertmanager", "alertmanager")}


def find_tool(name: str) -> str:
    """Path of an external tool; skip locally when missing, fail under CI=true."""
    for candidate in _TOOL_ALIASES.get(name, (name,)):
        path = shutil.which(candidate)
        if path:
            return path
    message = (
        f"{name} not found: install it with "
        "'apt-get update && apt-get install -y prometheus prometheus-alertmanager' "
        "(or run .ci/run, which does)"
    )
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(
    condition: Callable[[], object],
    timeout: float = 30.0,
    interval: float = 0.1,
    what: str = "",
    *,
    process: subprocess.Popen | None = None,
    log_path: Path | None = None,
) -> object:
    """Poll until condition() is truthy; a readiness check, never a fixed sleep.

    With `process`, a process that has exited fails the wait at once, with its exit code and
    the tail of its output (`log_path`, or its stderr pipe): waiting on would only hide why.
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(
                f"{process.args[0] if isinstance(process.args, list) else process.args} exited "
                f"with {process.returncode} while waiting for {what or condition}: "
                f"{_output_tail(process, log_path)}"
            )
        try:
            result = condition()
        except Exception as exc:  # noqa: BLE001 - any failure means "not yet"
            last_error = exc
        else:
            if result:
                return result
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout}s waiting for {what or condition}: {last_error}"
    )


def _output_tail(process: subprocess.Popen, log_path: Path | None) -> str:
    if log_path is not None:
        return log_path.read_text(errors="replace")[-2000:]
    if process.stderr is not None:
        data = process.stderr.read()
        return (data.decode(errors="replace") if isinstance(data, bytes) else data)[-2000:]
    return "(output not captured)"


def http_ok(url: str, **kwargs: object) -> bool:
    return requests.get(url, timeout=2, **kwargs).status_code == 200


@contextmanager
def running_process(
    argv: Sequence[str],
    ready_url: str | None = None,
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 60.0,
    log_path: Path | None = None,
) -> Iterator[subprocess.Popen]:
    """Start a process, wait for ready_url to answer 200, always stop it afterwards."""
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(
        list(argv), env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
    )
    try:
        if ready_url:
            wait_until(
                lambda: http_ok(ready_url),
                timeout=timeout,
                what=f"{argv[0]} at {ready_url}",
                process=proc,
                log_path=log_path,
            )
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if log_path:
            log.close()


# --- A scriptable 8x8 API ------------------------------------------------------------------------


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    reset_after: int | None = None  # send this many body bytes, then reset the connection
    hang: bool = False  # never answer (until the server stops)
    length: bool = True  # False: no Content-Length; the body ends when the connection closes

    @classmethod
    def json(cls, doc: Any, status: int = 200, **kwargs: Any) -> Reply:
        headers = {"Content-Type": "application/json", **kwargs.pop("headers", {})}
        return cls(status, json.dumps(doc).encode(), headers, **kwargs)


def number(msisdn: str = "+6531234567", **overrides: Any) -> dict[str, Any]:
    """One well-formed record, as the reference page documents it."""
    record = {
        "msisdn": msisdn,
        "dateCreated": "2024-07-01T05:50:23.550Z",
        "dateUpdated": "2024-07-01T05:50:23.550Z",
        "countryCode": "SG",
        "operationalStatus": "Active",
        "referenceId": "range-1",
        "rentalPrice": 5.0,
        "incomingRate": 0.05,
        "billingUnit": 60,
        "uri": f"https://voice.8x8.com/api/v1/subaccounts/acme-prod/numbers/{msisdn}",
        "numberHealthCheckEnabled": True,
        "billingCurrency": "USD",
        "numberType": "Mobile",
        "numberHealth": {
            "isHealthy": True,
            "status": "Healthy",
            "lastCheckedTime": "2024-07-01T05:50:23.550Z",
        },
    }
    record.update(overrides)
    return record


def numbers_body(records: list[Any], total: int | None = None, **extra: Any) -> dict[str, Any]:
    doc = {
        "totalNumbers": len(records) if total is None else total,
        "lastUpdatedAt": "2024-07-01T05:50:23.550Z",
        "numbers": records,
        "statusCode": 0,
        "statusMessage": "OK",
    }
    doc.update(extra)
    return doc


class _BusyServer(ThreadingHTTPServer):
    # A scrape of many subaccounts connects 128 at a time: the default backlog of 5 would
    # drop connections and stall them for a second each.
    request_queue_size = 1024
    daemon_threads = True


class FakeApi:
    """Threaded HTTP server on a free loopback port; use as a context manager."""

    def __init__(self, reply: Reply | Callable[[str, dict[str, str]], Reply] | None = None):
        self.reply = reply or Reply.json(numbers_body([number()]))
        self.requests: list[tuple[str, dict[str, str]]] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                headers = dict(self.headers.items())
                with fake._lock:
                    fake.requests.append((self.path, headers))
                reply = fake.reply(self.path, headers) if callable(fake.reply) else fake.reply
                fake._answer(self, reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = _BusyServer(("127.0.0.1", 0), Handler)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    def _answer(self, handler: BaseHTTPRequestHandler, reply: Reply) -> None:
        if reply.hang:
            self._stopping.wait(60)
            return
        if reply.delay:
            time.sleep(reply.delay)
        handler.send_response(reply.status)
        for name, value in reply.headers.items():
            handler.send_header(name, value)
        if not reply.length:
            handler.send_header("Connection", "close")
            handler.close_connection = True
        elif "Content-Length" not in reply.headers:
            handler.send_header("Content-Length", str(len(reply.body)))
        handler.end_headers()
        if reply.reset_after is not None:
            handler.wfile.write(reply.body[: reply.reset_after])
            handler.wfile.flush()
            handler.connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
            handler.connection.close()
            handler.close_connection = True
            return
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            handler.wfile.write(reply.body)

    def __enter__(self) -> FakeApi:
        self._thread = serve_in_thread(self._server, POLL_INTERVAL)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


# --- Exporters: in this process or as processes --------------------------------------------------

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse_samples(text: str) -> Samples:
    """Every sample of an exposition, keyed by (name, labels); fails on unparseable text."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def names(samples: Samples) -> set[str]:
    return {name for name, _ in samples}


class InProcessExporter:
    """The exporter's WSGI app behind its own threaded server, on 127.0.0.1 and a free port.

    With --webhook.listen-address, its callback listener is served too (`callback_url`).
    """

    def __init__(
        self,
        argv: Sequence[str],
        api_key: str = "k",
        clock: Clock = SYSTEM_CLOCK,
        env: dict[str, str] | None = None,
    ) -> None:
        args = build_parser().parse_args([*argv, "--web.listen-address", "127.0.0.1:0"])
        env = {"EIGHTBYEIGHT_API_KEY": api_key, **(env or {})}
        self.settings = settings_from_flags(args, env)
        # A reload re-reads the files of the same flags, as the command line does.
        self.built: Exporter = build_exporter(
            self.settings, clock, lambda: settings_from_flags(args, env)
        )
        self.app: ExporterApp = self.built.app
        self.server: ExporterServer = self.built.server

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def callback_url(self) -> str:
        url = self.built.callback_url
        assert url is not None, "no --webhook.listen-address"
        return url

    def get(self, path: str = "/metrics", **kwargs: object) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        return requests.get(self.url + path, **kwargs)

    def __enter__(self) -> InProcessExporter:
        serve_in_thread(self.server, POLL_INTERVAL)
        if self.built.callbacks is not None:
            serve_in_thread(self.built.callbacks, POLL_INTERVAL)
        return self

    def __exit__(self, *exc: object) -> None:
        for server in (self.server, self.built.callbacks):
            if server is not None:
                server.shutdown()
                server.server_close()
        # Its workers end once the fetches queued now are done; nothing waits for a hanging one.
        self.app.pool.close(timeout=0)


@contextmanager
def exporter_process(
    argv: Sequence[str],
    env: dict[str, str],
    log_path: Path,
    *,
    scheme: str = "http",
    ready: Callable[[str], bool] | None = None,
) -> Iterator[tuple[str, int]]:
    """`python -m exporter` on a free loopback port; yields (base URL, pid); always stopped.

    Readiness is /-/healthy answering 200 over plain HTTP, or `ready(url)` (e.g. over TLS).
    """
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("EIGHTBYEIGHT_")}
    full_env.update(env)
    command = [
        sys.executable,
        "-m",
        "exporter",
        "--web.listen-address",
        f"127.0.0.1:{port}",
        *argv,
    ]
    url = f"{scheme}://127.0.0.1:{port}"
    plain_ready = f"{url}/-/healthy" if ready is None else None
    with running_process(command, plain_ready, env=full_env, cwd=REPO, log_path=log_path) as proc:
        if ready is not None:
            wait_until(
                lambda: ready(url),
                timeout=30,
                what=f"exporter at {url}",
                process=proc,
                log_path=log_path,
            )
        yield url, proc.pid


class FakeClock:
    """Monotonic and wall time that move only when a test says so (see exporter.polling.scraper.Clock).

    It also counts, per thread, how often the time was read: a test can wait until a thread
    has reached a given point of a scrape without sleeping.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self._reads: dict[int, int] = {}
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        ident = threading.get_ident()
        with self._lock:
            self._reads[ident] = self._reads.get(ident, 0) + 1
        return self.now

    def time(self) -> float:
        return 1_700_000_000.0 + self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def reads_by(self, thread: threading.Thread) -> int:
        with self._lock:
            return self._reads.get(thread.ident or -1, 0)


def rss_kib(pid: int) -> int:
    """Resident set size of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def self_signed_certificate(directory: Path, name: str) -> tuple[Path, Path]:
    """(certificate, key) files of a self-signed certificate for 127.0.0.1, named `name`."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


# --- The monitoring stack: Prometheus, Alertmanager, webhook receiver ----------------------------

RULES_DIR = REPO / "prometheus" / "rules"


@contextmanager
def exporter_reading(tmp_path: Path, base_url: str, api_key: str, *args: str) -> Iterator[str]:
    """The exporter as a subprocess reading the API at `base_url`; yields its base URL."""
    argv = ["--api.base-url", base_url, *args]
    env = {"EIGHTBYEIGHT_API_KEY": api_key}
    with exporter_process(argv, env, tmp_path / "exporter.log") as (url, _pid):
        yield url


def fast_rules(tmp_path: Path, for_duration: str = "5s") -> list[Path]:
    """Copies of the shipped rule files with every `for:` shortened, for tests in seconds."""
    out = []
    for rule_file in sorted(RULES_DIR.glob("*.yml")):
        text = re.sub(r"(?m)^(\s+for:\s*)\S+\s*$", rf"\g<1>{for_duration}", rule_file.read_text())
        copy = tmp_path / f"rules-{rule_file.name}"
        copy.write_text(text)
        out.append(copy)
    return out


@contextmanager
def prometheus_process(
    tmp_path: Path,
    exporter_url: str,
    rule_files: list[Path] = (),
    alertmanager_url: str | None = None,
    interval: str = "1s",
) -> Iterator[str]:
    """A real Prometheus scraping the exporter as job `eightbyeight`; yields its URL."""
    binary = find_tool("prometheus")
    port = free_port()
    config: dict[str, Any] = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [
            {
                "job_name": "eightbyeight",
                "scrape_timeout": interval,
                "static_configs": [{"targets": [exporter_url.removeprefix("http://")]}],
            }
        ],
    }
    if alertmanager_url:
        config["alerting"] = {
            "alertmanagers": [
                {"static_configs": [{"targets": [alertmanager_url.removeprefix("http://")]}]}
            ]
        }
    config_path = tmp_path / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config))
    url = f"http://127.0.0.1:{port}"
    argv = [
        binary,
        f"--config.file={config_path}",
        f"--storage.tsdb.path={tmp_path / 'prometheus-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    with running_process(argv, f"{url}/-/ready", log_path=tmp_path / "prometheus.log"):
        yield url


@contextmanager
def alertmanager_process(tmp_path: Path, config: dict[str, Any]) -> Iterator[str]:
    """A real Alertmanager (clustering off) with the given configuration; yields its URL."""
    binary = find_tool("alertmanager")
    port = free_port()
    config_path = tmp_path / "alertmanager.yml"
    config_path.write_text(yaml.safe_dump(config))
    url = f"http://127.0.0.1:{port}"
    argv = [
        binary,
        f"--config.file={config_path}",
        f"--storage.path={tmp_path / 'alertmanager-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
        "--log.level=warn",
    ]
    with running_process(argv, f"{url}/-/ready", log_path=tmp_path / "alertmanager.log"):
        yield url


def query(prometheus_url: str, expr: str) -> list[dict[str, Any]]:
    """An instant query; raises on a query error."""
    response = requests.get(f"{prometheus_url}/api/v1/query", params={"query": expr}, timeout=10)
    body = response.json()
    if body.get("status") != "success":
        raise AssertionError(f"query {expr!r} failed: {body.get('error')}")
    return body["data"]["result"]


class WebhookReceiver:
    """Collects Alertmanager webhook notifications on 127.0.0.1."""

    def __init__(self) -> None:
        self.notifications: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                payload = json.loads(self.rfile.read(length))
                payload["_path"] = self.path
                with receiver._lock:
                    receiver.notifications.append(payload)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def alerts(self) -> list[tuple[str, dict[str, Any]]]:
        """Every alert delivered so far, with the path (receiver) it was sent to."""
        with self._lock:
            return [(n["_path"], a) for n in self.notifications for a in n["alerts"]]

    def __enter__(self) -> WebhookReceiver:
        self._thread = serve_in_thread(self._server, POLL_INTERVAL)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


# --- Certificates and password hashes ------------------------------------------------------------


@dataclass
class Pki:
    """PEM files of the test certificates (see `make_pki`)."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_cert: Path
    rogue_key: Path
    other_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(subject, issuer, public_key, signing_key, *, ca=False, usage=None, san=None):
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False),
            critical=True,
        )
    if usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(signing_key, hashes.SHA256())


def _write(path: Path, cert=None, key=None) -> Path:
    if cert is not None:
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    else:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return path


def make_pki(d: Path) -> Pki:
    """A test CA, a server certificate for 127.0.0.1/localhost, a client certificate signed by
    the CA, one signed by another CA, and a spare key: PEM files in `d`."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate(_name("test CA"), _name("test CA"), ca_key.public_key(), ca_key, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _certificate(
        _name("127.0.0.1"),
        ca.subject,
        server_key.public_key(),
        ca_key,
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        san=[x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")],
    )
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _certificate(
        _name("scraper"),
        ca.subject,
        client_key.public_key(),
        ca_key,
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
    )
    rogue_ca_key = ec.generate_private_key(ec.SECP256R1())
    rogue_key = ec.generate_private_key(ec.SECP256R1())
    rogue = _certificate(
        _name("scraper"),
        _name("rogue CA"),
        rogue_key.public_key(),
        rogue_ca_key,
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
    )
    return Pki(
        ca=_write(d / "ca.crt", cert=ca),
        server_cert=_write(d / "server.crt", cert=server),
        server_key=_write(d / "server.key", key=server_key),
        client_cert=_write(d / "client.crt", cert=client),
        client_key=_write(d / "client.key", key=client_key),
        rogue_cert=_write(d / "rogue.crt", cert=rogue),
        rogue_key=_write(d / "rogue.key", key=rogue_key),
        other_key=_write(d / "other.key", key=ec.generate_private_key(ec.SECP256R1())),
    )


def bcrypt_hash(password: str) -> str:
    # Cost 4 keeps the tests fast; production hashes use 10 or more.
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()


# --- Containers (podman) ------------------------------------------------------------------------
# Every container is named `ebe-test-<pid>-<what>` and removed by that name, also on failure;
# ports are published on 127.0.0.1 only, on free ports. See docs/validation.md for why podman
# and stand-in base images.

IMAGE = "localhost/eightbyeight-exporter:local"
STAND_INS = REPO / ".ci" / "container-images"
CONF_SCRIPT = REPO / ".ci" / "containers-conf"
PREFIX = f"ebe-test-{os.getpid()}"

# (seconds) what the first image build took in this run, for the report in the test output.
BUILD_SECONDS: dict[str, float] = {}


def container_env(directory: Path) -> dict[str, str]:
    """The environment podman runs with: a containers.conf of the tests' own, docker format."""
    for tool in ("podman", "buildah", "mmdebstrap", "runc"):
        find_tool(tool)
    conf = subprocess.run(
        [str(CONF_SCRIPT), str(directory / "containers.conf")],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.strip()
    # HEALTHCHECK exists only in the docker image format; podman-compose builds through this.
    return {**os.environ, "CONTAINERS_CONF": conf, "BUILDAH_FORMAT": "docker"}


def podman(
    env: dict[str, str], *args: str, timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["podman", *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed: {result.stderr.strip()[-2000:]}")
    return result


def build_stand_ins(env: dict[str, str]) -> None:
    """The stand-in base, Prometheus and Alertmanager images (kept when they exist)."""
    subprocess.run([str(STAND_INS)], env=env, check=True, timeout=1200)


def build_exporter_image(env: dict[str, str]) -> float:
    """Build the Dockerfile unchanged as IMAGE; returns the seconds it took."""
    started = time.monotonic()
    podman(
        env,
        "build",
        "--format",
        "docker",
        "--network",
        "host",
        "--tag",
        IMAGE,
        "--file",
        str(REPO / "Dockerfile"),
        str(REPO),
        timeout=900,
    )
    return time.monotonic() - started


@contextmanager
def running_container(
    env: dict[str, str], what: str, run_args: Sequence[str], image: str, args: Sequence[str] = ()
) -> Iterator[str]:
    """`podman run -d` a container; yields its name; always `podman rm -f` it."""
    name = f"{PREFIX}-{what}"
    podman(env, "rm", "-f", "--ignore", name)
    try:
        podman(env, "run", "-d", "--name", name, *run_args, image, *args)
        yield name
    finally:
        podman(env, "rm", "-f", "--ignore", "--time", "5", name, check=False)


def container_logs(env: dict[str, str], name: str) -> str:
    result = podman(env, "logs", name, check=False)
    return (result.stdout + result.stderr)[-3000:]


# --- 8x8 callbacks (webhooks) to the exporter's receiver -----------------------------------------

CALLBACK_AUTH = "Bearer wh-test-secret-7d1f0c"
CALLBACK_PATH = "/webhooks/8x8"


def vnu(sub: str = "acme-prod", kind: str = "UPDATES", numbers: list | None = None) -> dict:
    """A VIRTUAL_NUMBER_UPDATE callback (SNAPSHOT or UPDATES)."""
    numbers = (
        numbers
        if numbers is not None
        else [vnu_number("+6531234567", "Active", "2026-01-01T00:00:00Z")]
    )
    return {
        "namespace": "VOICE",
        "eventType": "VIRTUAL_NUMBER_UPDATE",
        "description": "Status of account virtual number(s) updated",
        "payload": {
            "subAccountId": sub,
            "totalNumbers": len(numbers),
            "updateEventType": kind,
            "virtualNumbers": numbers,
        },
    }


def vnu_number(msisdn: str, status: str, updated: str, country: str = "SG") -> dict:
    """One number of a VNU callback (not the API's record: see `number`)."""
    return {
        "msisdn": msisdn,
        "updatedTimestamp": updated,
        "countryCode": country,
        "operationalStatus": status,
        "referenceId": "range-1",
        "rentalPrice": 5.0,
        "incomingRate": 0.05,
        "billingUnit": 60,
        "billingCurrency": "USD",
        "numberHealthCheckEnabled": True,
        "updateStatus": "UPDATED",
    }


def call_leg(
    direction: str, source: str, destination: str, status: str = "COMPLETED", **quality: float
) -> dict:
    out: dict[str, Any] = {
        "callId": "c-" + source + destination,
        "callDirection": direction,
        "callType": "PSTN",
        "source": source,
        "destination": destination,
        "sourceCountryCode": "US" if direction == "INBOUND" else "SG",
        "destinationCountryCode": "SG",
        "callStatus": status,
        "callDuration": 13,
    }
    if quality:
        out["callQuality"] = quality
    return out


def vss(
    sub: str = "acme-prod",
    session: str = "s-1",
    status: str = "COMPLETED",
    virtual: str = "+6531234567",
    mos: float = 4.4,
    error: int | None = None,
) -> dict:
    """A SESSION_SUMMARY callback: an inbound leg to `virtual`, an outbound leg from it."""
    payload: dict[str, Any] = {
        "sessionId": session,
        "subAccountId": sub,
        "sessionStatus": status,
        "startTime": "2026-01-01T00:00:00Z",
        "endTime": "2026-01-01T00:00:20Z",
        "lastAction": "MAKE_CALL",
        "callCount": 2,
        "details": {
            "callA": call_leg(
                "INBOUND", "+12314377870", virtual, mos=mos, packetLossRate=0.01, jitter=20
            ),
            "callB": call_leg(
                "OUTBOUND", virtual, "+6591178965", mos=mos, packetLossRate=0, jitter=19
            ),
        },
    }
    if error is not None:
        payload["errorDetails"] = {"errorCode": error, "errorMsg": "No coverage"}
    return {
        "namespace": "VOICE",
        "eventType": "SESSION_SUMMARY",
        "description": "Summary of a completed call session",
        "payload": payload,
    }


def post_callback(url: str, body: Any, auth: str | None = CALLBACK_AUTH) -> requests.Response:
    """POST a callback (a document, or raw bytes) as 8x8 would."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if auth is not None:
        headers["Authorization"] = auth
    return requests.post(url, data=data, headers=headers, timeout=30)


class CallbackReceiver:
    """The exporter's callback receiver alone, with its state, on 127.0.0.1 and a free port."""

    def __init__(self, allowed: Sequence[str] = ("acme-prod",), **options: Any) -> None:
        self.state = WebhookState(allowed)
        self.app = CallbackApp(self.state, CALLBACK_AUTH, **options)
        self.server = make_server("127.0.0.1:0", self.app)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{CALLBACK_PATH}"

    def post(self, body: Any, auth: str | None = CALLBACK_AUTH) -> requests.Response:
        return post_callback(self.url, body, auth)

    def __enter__(self) -> CallbackReceiver:
        serve_in_thread(self.server, POLL_INTERVAL)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
