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
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from exporter.config import flags
from exporter.config.values import (
    ConfigError,
    host_port,
    loopback_for,
    parse_duration,
    parse_listen_address,
)

PROG = "eightbyeight-exporter healthcheck"
HEALTH_PATH = "/-/healthy"
PROC = Path("/proc")
MAX_STATUS_LINE = 1024
# Commands that share the executable but do not serve the exporter's endpoints.
_NOT_SERVING = {"simulate", "healthcheck"}
DESCRIPTION = (
    "Exit 0 when the running exporter answers 200 on /-/healthy, else 1. Address and TLS come "
    "from the running exporter's command line unless given here."
)


class HealthcheckError(Exception):
    """Why the check failed, in one line."""


class Endpoint(NamedTuple):
    """Where and how to reach the exporter's health endpoint.

    A NamedTuple, not a dataclass: dataclasses imports inspect, a cost on every check."""

    host: str
    port: int
    tls: bool

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{host_port(self.host, self.port)}{HEALTH_PATH}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The health check's flags, on its own parser or on the `healthcheck` command's."""
    parser.add_argument(
        "--web.listen-address",
        dest="listen_address",
        default=None,
        help="address the exporter listens on (default: the running exporter's)",
    )
    parser.add_argument(
        "--web.config.file",
        dest="web_config_file",
        default=None,
        help="the exporter's web config file, for its TLS (default: the running exporter's)",
    )
    parser.add_argument(
        "--timeout", default="4s", help="how long to wait for the answer (default 4s)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = flags.FlagParser(prog=PROG, allow_abbrev=False, description=DESCRIPTION)
    add_arguments(parser)
    return parser


def exporter_args(cmdline: Sequence[str]) -> list[str] | None:
    """The exporter's own arguments in a process command line, or None if it is not one."""
    for index, word in enumerate(cmdline):
        if Path(word).name == "eightbyeight-exporter":
            args = list(cmdline[index + 1 :])
        elif word == "-m" and index + 1 < len(cmdline) and cmdline[index + 1] == "exporter":
            args = list(cmdline[index + 2 :])
        else:
            continue
        if args and args[0] in _NOT_SERVING:
            return None
        return args[1:] if args and args[0] == "run" else args
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
    # Only the two flags that matter: the others, known or not, are left over either way.
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    flags.add_flags(parser, (flags.flag("listen_address"), flags.flag("web_config_file")))
    try:
        parsed, _ = parser.parse_known_args(list(args))
    except SystemExit:
        # The exporter started, so its flags parsed; whatever this is, assume the defaults.
        return flags.default("listen_address"), None
    return parsed.listen_address, parsed.web_config_file


def endpoint(listen_address: str, web_config_file: str | None) -> Endpoint:
    """The address to ask: a wildcard listen address is asked on loopback."""
    host, port = parse_listen_address(listen_address)
    tls = False
    if web_config_file:
        # The exporter serves TLS exactly when its web config yields a TLS context. Imported
        # here: reading it needs YAML, which a check without one does without.
        from exporter.config.webconfig import load_web_config

        tls = load_web_config(web_config_file).tls_context is not None
    return Endpoint(loopback_for(host), port, tls)


def check(target: Endpoint, timeout: float) -> None:
    """Raise HealthcheckError unless GET /-/healthy answers 200.

    One request on a socket and its status line read back, rather than http.client: that
    module imports ssl and the email parser whatever the scheme, and this runs every 30 s.
    """
    try:
        with _connect(target, timeout) as conn, conn.makefile("rb") as answer:
            conn.sendall(_request(target))
            status_line = answer.readline(MAX_STATUS_LINE)
    except OSError as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise HealthcheckError(f"{target.url}: {reason}") from None
    status = _status(status_line)
    if status is None:
        raise HealthcheckError(f"{target.url}: no HTTP answer")
    if status != 200:
        raise HealthcheckError(f"{target.url}: HTTP {status}")


def _connect(target: Endpoint, timeout: float) -> socket.socket:
    conn = socket.create_connection((target.host, target.port), timeout=timeout)
    if not target.tls:
        return conn
    import ssl  # only for TLS: it is the largest import of a check

    # The exporter's own certificate is issued for the names clients use, not for loopback:
    # this asks whether the local process serves, not who it is.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        return context.wrap_socket(conn, server_hostname=target.host)
    except BaseException:
        conn.close()
        raise


def _request(target: Endpoint) -> bytes:
    return (
        f"GET {HEALTH_PATH} HTTP/1.1\r\nHost: {host_port(target.host, target.port)}\r\n"
        "User-Agent: eightbyeight-healthcheck\r\nConnection: close\r\n\r\n"
    ).encode("ascii")


def _status(line: bytes) -> int | None:
    """The status code of an HTTP/1.x status line ('HTTP/1.1 200 OK'), else None."""
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        return None
    return int(parts[1])


def main(argv: Sequence[str]) -> int:
    return check_command(build_parser().parse_args(list(argv)))


def check_command(options: argparse.Namespace) -> int:
    """Ask the exporter the parsed flags point at; 0 when healthy, else 1 and one line."""
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
