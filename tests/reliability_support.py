"""Helpers shared by the reliability and security tests: exporters in-process or as processes.

`InProcessExporter` serves the real WSGI app on a real loopback socket (for tests that need to
reach into the scrapers); `exporter_process` runs `python -m exporter` as a subprocess (for
tests about what a deployed exporter does: its logs, its memory, its survival).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families
from support import REPO, free_port, running_process, wait_until

from exporter.cli import build_parser, settings_from_args
from exporter.server import ExporterServer, make_server, serve_in_thread
from exporter.web import ExporterApp

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
    """The exporter's WSGI app behind its own threaded server, on 127.0.0.1 and a free port."""

    def __init__(self, argv: Sequence[str], api_key: str = "k") -> None:
        args = build_parser().parse_args([*argv, "--web.listen-address", "127.0.0.1:0"])
        self.settings = settings_from_args(args, {"EIGHTBYEIGHT_API_KEY": api_key})
        self.app = ExporterApp(self.settings)
        self.server: ExporterServer = make_server(self.settings.listen_address, self.app)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def get(self, path: str = "/metrics", **kwargs: object) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        return requests.get(self.url + path, **kwargs)

    def __enter__(self) -> InProcessExporter:
        serve_in_thread(self.server)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


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


def rss_kib(pid: int) -> int:
    """Resident set size of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")
