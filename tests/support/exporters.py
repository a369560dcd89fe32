"""The exporter in this process or as a process, and reading its expositions."""

from __future__ import annotations

import datetime
import ipaddress
import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from prometheus_client.parser import text_string_to_metric_families

from exporter.app import Exporter, build_exporter
from exporter.config.flags import build_parser
from exporter.config.settings import settings_from_flags
from exporter.polling.scraper import SYSTEM_CLOCK, Clock
from exporter.web.routes import ExporterApp
from exporter.web.server import ExporterServer, serve_in_thread
from tests.support.processes import (
    POLL_INTERVAL,
    REPO,
    free_port,
    http_ok,
    owns_listener,
    running_process,
    wait_until,
)

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


# A port that another process took between free_port() and the exporter's bind is lost this
# often at most before a test gives up.
PORT_ATTEMPTS = 3


@contextmanager
def exporter_process(
    argv: Sequence[str],
    env: dict[str, str],
    log_path: Path,
    *,
    scheme: str = "http",
    ready: Callable[[str], bool] | None = None,
    ready_timeout: float = 30.0,
) -> Iterator[tuple[str, int]]:
    """`python -m exporter` on a free loopback port; yields (base URL, pid); always stopped.

    Readiness is the exporter itself listening on that port (not another process that took it
    meanwhile) and /-/healthy answering 200 over plain HTTP within 60 s, or `ready(url)` (e.g.
    over TLS) within `ready_timeout` seconds. A port lost to another process is tried again with a new
    one, up to PORT_ATTEMPTS times.
    """
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("EIGHTBYEIGHT_")}
    full_env.update(env)
    for attempt in range(1, PORT_ATTEMPTS + 1):
        port = free_port()
        url = f"{scheme}://127.0.0.1:{port}"
        command = [sys.executable, "-m", "exporter", "--web.listen-address", f"127.0.0.1:{port}"]
        with running_process([*command, *argv], env=full_env, cwd=REPO, log_path=log_path) as proc:
            try:
                wait_until(
                    partial(_started, proc.pid, port, url, ready),
                    timeout=60.0 if ready is None else ready_timeout,
                    what=f"exporter at {url}",
                    process=proc,
                    log_path=log_path,
                )
            except AssertionError:
                if attempt < PORT_ATTEMPTS and _lost_port(log_path):
                    continue
                raise
            yield url, proc.pid
            return


def _started(pid: int, port: int, url: str, ready: Callable[[str], bool] | None) -> bool:
    if not owns_listener(pid, port):
        return False
    return http_ok(f"{url}/-/healthy") if ready is None else ready(url)


def _lost_port(log_path: Path) -> bool:
    return "Address already in use" in log_path.read_text(errors="replace")


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
