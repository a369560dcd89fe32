"""`eightbyeight-exporter healthcheck`: ask a running exporter's /-/healthy, for container
health checks.

The listen address and web config (TLS) are those the exporter itself was started with: read
from its command line in /proc (PID 1 in a container, else the first exporter process found),
unless --web.listen-address is given here. So one HEALTHCHECK in the image holds whatever port
and TLS the operator chose. Outside a container, give the flags: another exporter may run.
Exit status 0 when /-/healthy answers 200, else 1 with one line on stderr.
"""

from __future__ import annotations

import argparse
import http.client
import ssl
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from exporter.config.settings import DEFAULT_LISTEN_ADDRESS
from exporter.config.values import (
    ConfigError,
    host_port,
    loopback_for,
    parse_duration,
    parse_listen_address,
)
from exporter.config.webconfig import load_web_config

PROG = "eightbyeight-exporter healthcheck"
HEALTH_PATH = "/-/healthy"
PROC = Path("/proc")
# Subcommands that share the executable but do not serve the exporter's endpoints.
_NOT_SERVING = {"simulate", "healthcheck"}


class HealthcheckError(Exception):
    """Why the check failed, in one line."""


@dataclass(frozen=True)
class Endpoint:
    """Where and how to reach the exporter's health endpoint."""

    host: str
    port: int
    tls: bool

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{host_port(self.host, self.port)}{HEALTH_PATH}"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog=PROG,
        allow_abbrev=False,
        description="Exit 0 when the running exporter answers 200 on /-/healthy, else 1. "
        "Address and TLS come from the running exporter's command line unless given here.",
    )
    p.add_argument("--web.listen-address", dest="listen_address", default=None)
    p.add_argument("--web.config.file", dest="web_config_file", default=None)
    p.add_argument("--timeout", default="4s", help="how long to wait for the answer (default 4s)")
    return p


def exporter_args(cmdline: Sequence[str]) -> list[str] | None:
    """The exporter's own arguments in a process command line, or None if it is not one."""
    for index, word in enumerate(cmdline):
        if Path(word).name == "eightbyeight-exporter":
            args = list(cmdline[index + 1 :])
        elif word == "-m" and index + 1 < len(cmdline) and cmdline[index + 1] == "exporter":
            args = list(cmdline[index + 2 :])
        else:
            continue
        return None if args and args[0] in _NOT_SERVING else args
    return None


def running_exporter_args(proc: Path = PROC) -> list[str] | None:
    """Arguments of the exporter process: PID 1 first (a container), then any other."""
    found = running_exporter(proc)
    return found[0] if found else None


def running_exporter(proc: Path = PROC) -> tuple[list[str], Path | None] | None:
    """(arguments, working directory) of the exporter process, PID 1 first."""
    pids = sorted((int(p.name) for p in proc.iterdir() if p.name.isdigit()), key=lambda n: n != 1)
    for pid in pids:
        try:
            raw = (proc / str(pid) / "cmdline").read_bytes()
        except OSError:
            continue  # gone, or not ours to read
        args = exporter_args([w.decode(errors="replace") for w in raw.split(b"\0") if w])
        if args is not None:
            try:
                cwd: Path | None = (proc / str(pid) / "cwd").resolve(strict=True)
            except OSError:
                cwd = None
            return args, cwd
    return None


def served_flags(args: Sequence[str]) -> tuple[str, str | None]:
    """(listen address, web config file) that the exporter's arguments select."""
    from exporter.config.flags import build_parser as exporter_parser

    try:
        parsed, _ = exporter_parser().parse_known_args(list(args))
    except SystemExit:
        # The exporter started, so its flags parsed; whatever this is, assume the defaults.
        return DEFAULT_LISTEN_ADDRESS, None
    return parsed.listen_address, parsed.web_config_file


def endpoint(listen_address: str, web_config_file: str | None) -> Endpoint:
    """The address to ask: a wildcard listen address is asked on loopback."""
    host, port = parse_listen_address(listen_address)
    tls = False
    if web_config_file:
        # The exporter serves TLS exactly when its web config yields a TLS context.
        tls = load_web_config(web_config_file).tls_context is not None
    return Endpoint(loopback_for(host), port, tls)


def check(target: Endpoint, timeout: float) -> None:
    """Raise HealthcheckError unless GET /-/healthy answers 200."""
    if target.tls:
        # The exporter's own certificate is issued for the names clients use, not for
        # loopback: this asks whether the local process serves, not who it is.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            target.host, target.port, timeout=timeout, context=context
        )
    else:
        conn = http.client.HTTPConnection(target.host, target.port, timeout=timeout)
    try:
        conn.request("GET", HEALTH_PATH, headers={"User-Agent": "eightbyeight-healthcheck"})
        status = conn.getresponse().status
    except (OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise HealthcheckError(f"{target.url}: {reason}") from None
    finally:
        conn.close()
    if status != 200:
        raise HealthcheckError(f"{target.url}: HTTP {status}")


def main(argv: Sequence[str]) -> int:
    options = build_parser().parse_args(list(argv))
    try:
        timeout = parse_duration(options.timeout, "--timeout")
        if timeout <= 0:
            raise ConfigError("--timeout must be greater than 0")
        listen, web_config = options.listen_address, options.web_config_file
        if listen is None:
            # Given an address, the caller knows which exporter it means; otherwise it is the
            # one running here (in a container, the only one).
            args, cwd = running_exporter() or ([], None)
            listen, found_config = served_flags(args)
            if found_config and cwd is not None:
                found_config = str(cwd / found_config)  # relative to the exporter, not to us
            web_config = found_config if web_config is None else web_config
        target = endpoint(listen, web_config)
        check(target, timeout)
    except (ConfigError, HealthcheckError) as exc:
        print(f"{PROG}: unhealthy: {exc}", file=sys.stderr)
        return 1
    print(f"{PROG}: healthy: {target.url}")
    return 0
