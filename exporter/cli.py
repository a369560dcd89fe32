"""Command line: flags in Prometheus style → `Settings` → the built exporter → serving.

Settings are assembled in exporter/config.py, everything else is built in exporter/app.py.

`eightbyeight-exporter simulate ...` runs the 8x8 API simulator instead (see
exporter/simulator/cli.py).
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import logging
import os
import secrets
import signal
import sys
import threading
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import replace
from typing import TYPE_CHECKING, NoReturn

from exporter import __version__
from exporter.app import (
    Exporter,
    SettingsLoader,
    build_exporter,
    push_demo_callbacks,
    thread_bound,
)
from exporter.config import (
    DEFAULT_BASE_URL,
    DEFAULT_LISTEN_ADDRESS,
    DEFAULT_PARALLEL_FETCHES,
    DEFAULT_WEB_MAX_CONNECTIONS,
    DEFAULT_WEB_WORKERS,
    ENV_API_KEY,
    ENV_API_KEY_FILE,
    ENV_SUBACCOUNTS,
    ConfigError,
    Settings,
    environment,
    settings_from_flags,
)
from exporter.logs import FORMATS, LEVELS, log_event, setup_logging
from exporter.server import ExporterServer, serve_in_thread
from exporter.webhooks.config import ENV_AUTH, add_webhook_flags

PROG = "eightbyeight-exporter"
log = logging.getLogger("exporter")

if TYPE_CHECKING:
    from exporter.simulator import Simulator

DEMO_SUBACCOUNTS = {"demo-apac": 60, "demo-emea": 40}
KEY_FLAG = "--api.key"
# Flags --demo replaces with its own simulator's values (attribute of the parsed flags, flag).
DEMO_REPLACES = (
    ("subaccounts", "--subaccount"),
    ("base_url", "--api.base-url"),
    ("config_file", "--config.file"),
    ("key_file", "--api.key-file"),
)
DEMO_IGNORES_ENV = (ENV_API_KEY, ENV_API_KEY_FILE, ENV_SUBACCOUNTS)


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line instead of the usage block."""

    def error(self, message: str) -> NoReturn:
        prefix = "unrecognized arguments: "
        if message.startswith(prefix):
            # The words after an unknown flag may be a secret typed where it does not belong
            # (`--api.key <key>`): name the unknown flags, never echo their values.
            words = message[len(prefix) :].split()
            flags = [w.partition("=")[0] for w in words if w.startswith("-")]
            if KEY_FLAG in flags:
                message = (
                    f"{KEY_FLAG} is not a flag, so that the key never shows in the process list: "
                    "put the key in $EIGHTBYEIGHT_API_KEY, or in a file named by "
                    "--api.key-file or $EIGHTBYEIGHT_API_KEY_FILE"
                )
            else:
                message = prefix + (" ".join(flags) if flags else "(values not shown)")
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog=PROG,
        allow_abbrev=False,  # `--api.key` must not silently mean --api.key-file
        description="Prometheus exporter for 8x8 virtual numbers and their Number Health. "
        f"The API key comes from $EIGHTBYEIGHT_API_KEY, or a file named by --api.key-file or "
        f"$EIGHTBYEIGHT_API_KEY_FILE. Run '{PROG} simulate --help' for the API simulator.",
    )
    p.add_argument(
        "--web.listen-address",
        dest="listen_address",
        default=DEFAULT_LISTEN_ADDRESS,
        help=f"address to listen on (default {DEFAULT_LISTEN_ADDRESS})",
    )
    p.add_argument(
        "--web.telemetry-path",
        dest="telemetry_path",
        default="/metrics",
        help="path of the metrics endpoint (default /metrics)",
    )
    p.add_argument(
        "--web.config.file",
        dest="web_config_file",
        default=None,
        help="TLS and basic auth configuration (exporter-toolkit format)",
    )
    p.add_argument(
        "--web.timeout-offset",
        dest="timeout_offset",
        default="0.5s",
        help="subtracted from Prometheus' scrape timeout to get the fetch deadline (default 0.5s)",
    )
    p.add_argument(
        "--web.shutdown-grace",
        dest="shutdown_grace",
        default="10s",
        help="on SIGTERM, how long requests in flight may take to finish (default 10s)",
    )
    p.add_argument(
        "--web.read-timeout",
        dest="web_read_timeout",
        default="10s",
        help="longest a request, line, headers and body, may take to arrive from its "
        "connection; slower or idle connections are closed (default 10s)",
    )
    p.add_argument(
        "--web.workers",
        dest="web_workers",
        type=int,
        default=DEFAULT_WEB_WORKERS,
        help=f"threads answering /metrics, /probe and the other pages; more requests wait "
        f"their turn (default {DEFAULT_WEB_WORKERS})",
    )
    p.add_argument(
        "--web.max-connections",
        dest="web_max_connections",
        type=int,
        default=DEFAULT_WEB_MAX_CONNECTIONS,
        help=f"open connections the listener keeps, each a file descriptor; more are closed "
        f"at once (default {DEFAULT_WEB_MAX_CONNECTIONS}: with --webhook.max-connections "
        "and the API connections well below a 1,024 file-descriptor limit)",
    )
    p.add_argument(
        "--api.base-url",
        dest="base_url",
        default=None,
        help=f"8x8 API base URL (default {DEFAULT_BASE_URL})",
    )
    p.add_argument(
        "--api.timeout",
        dest="api_timeout",
        default="10s",
        help="longest a fetch may take, connection, retries and body together (default 10s)",
    )
    p.add_argument(
        "--api.key-file",
        dest="key_file",
        default=None,
        help="file holding the API key (else $EIGHTBYEIGHT_API_KEY_FILE, "
        "else $EIGHTBYEIGHT_API_KEY)",
    )
    p.add_argument(
        "--api.retries",
        dest="api_retries",
        type=int,
        default=2,
        help="retries on connection errors, 429 and 5xx, within the deadline (default 2)",
    )
    p.add_argument(
        "--api.parallel-fetches",
        dest="parallel_fetches",
        type=int,
        default=DEFAULT_PARALLEL_FETCHES,
        help="fetches from the API at once, for all scrapes together: one thread each "
        f"(default {DEFAULT_PARALLEL_FETCHES})",
    )
    p.add_argument(
        "--api.max-response-size",
        dest="max_response_bytes",
        default="256MiB",
        help="largest API response accepted (default 256MiB)",
    )
    p.add_argument(
        "--subaccount",
        dest="subaccounts",
        action="append",
        default=None,
        metavar="ID",
        help="subaccount to export on /metrics (repeatable; else "
        "$EIGHTBYEIGHT_SUBACCOUNTS, comma-separated)",
    )
    p.add_argument(
        "--config.file",
        dest="config_file",
        default=None,
        help="YAML file with subaccounts, their key files and base URLs",
    )
    p.add_argument(
        "--config.check",
        dest="config_check",
        action="store_true",
        help="validate the configuration and exit 0 (valid) or 1 (invalid)",
    )
    p.add_argument(
        "--collector.per-number",
        dest="per_number",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="export one series per number and attribute (default on; "
        "--no-collector.per-number for aggregates only)",
    )
    p.add_argument(
        "--cache.ttl",
        dest="cache_ttl",
        default="0s",
        help="serve the last good response for this long without calling the API "
        "(default 0s: call on every scrape)",
    )
    p.add_argument(
        "--cache.serve-stale-for",
        dest="serve_stale_for",
        default="0s",
        help="when the API fails, keep serving the last good data this long, with "
        "eightbyeight_up 0 (default 0s: off)",
    )
    p.add_argument(
        "--probe.allowed-subaccounts",
        dest="probe_allowed",
        default=None,
        metavar="IDS",
        help="comma-separated subaccounts /probe may ask for (default: any valid ID)",
    )
    p.add_argument(
        "--log.level",
        dest="log_level",
        choices=LEVELS,
        default="info",
        help="debug, info, warn or error (default info)",
    )
    p.add_argument(
        "--log.format",
        dest="log_format",
        choices=FORMATS,
        default="logfmt",
        help="logfmt or json (default logfmt)",
    )
    p.add_argument(
        "--demo",
        action="store_true",
        help="run against a built-in simulator of the 8x8 API on loopback "
        "(no account needed; never contacts 8x8)",
    )
    add_webhook_flags(p)
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    return p


def _demo_conflicts(args: argparse.Namespace) -> None:
    """ConfigError naming the flags given with --demo that it would silently replace."""
    given = [flag for attribute, flag in DEMO_REPLACES if getattr(args, attribute) is not None]
    if given:
        raise ConfigError(
            f"--demo runs against its own simulator and cannot be combined with {', '.join(given)}"
        )


def _demo_settings(args: argparse.Namespace, stack: ExitStack) -> tuple[SettingsLoader, Simulator]:
    """Start the simulator in-process; settings that point the exporter at it.

    Its callbacks go to a receiver on loopback with a fresh Authorization value, over plain
    HTTP even with --web.config.file: the simulator trusts no CA.
    """
    from exporter.simulator import Simulator

    _demo_conflicts(args)
    key = secrets.token_urlsafe(24)
    simulator = stack.enter_context(Simulator(subaccounts=DEMO_SUBACCOUNTS, api_key=key, seed=8))
    args.base_url = simulator.base_url
    args.subaccounts = list(DEMO_SUBACCOUNTS)
    args.config_file = None
    args.key_file = None
    args.webhook_listen_address = args.webhook_listen_address or "127.0.0.1:0"
    args.webhook_auth_file = None
    env = {"EIGHTBYEIGHT_API_KEY": key, ENV_AUTH: "Bearer " + secrets.token_urlsafe(24)}

    def load() -> Settings:
        settings = settings_from_flags(args, env)
        if settings.webhooks is not None:
            settings = replace(settings, webhooks=replace(settings.webhooks, web_tls=False))
        return settings

    return load, simulator


def _settings_loader(args: argparse.Namespace) -> SettingsLoader:
    """Settings from these flags and the environment, files read anew at every call."""
    return lambda: settings_from_flags(args, environment())


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "simulate":
        from exporter.simulator.cli import main as simulate

        return simulate(argv[1:])
    if argv and argv[0] == "healthcheck":
        from exporter.healthcheck import main as healthcheck

        return healthcheck(argv[1:])
    args = build_parser().parse_args(argv)
    with ExitStack() as stack:
        simulator = None
        try:
            if args.demo:
                load_settings, simulator = _demo_settings(args, stack)
            else:
                load_settings = _settings_loader(args)
            settings = load_settings()
        except ConfigError as exc:
            print(f"{PROG}: error: {exc}", file=sys.stderr)
            return 1
        if args.config_check:
            count = len(settings.subaccounts)
            print(f"{PROG}: configuration is valid ({_plural(count, 'subaccount')})")
            return 0
        redact = setup_logging(settings.log_level, settings.log_format, _revealed(settings))
        try:
            exporter = build_exporter(settings, load_settings=load_settings)
        except ConfigError as exc:
            print(f"{PROG}: error: {exc}", file=sys.stderr)
            return 1
        # Rotated keys are redacted from the moment they are read; old ones stay redacted.
        exporter.reload_listeners.append(lambda new: redact.learn(_revealed(new)))
        if simulator is not None:
            push_demo_callbacks(exporter, simulator)
        return serve(exporter, demo_url=settings.base_url if args.demo else None)
    return 0


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def shown_address(host: str, port: int) -> str:
    """host:port as a listen address or URL authority: IPv6 hosts in brackets ([::1]:9881)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _revealed(settings: Settings) -> list[str]:
    return [key.reveal() for key in settings.secrets]


def serve(exporter: Exporter, demo_url: str | None = None) -> int:
    """Log where the exporter listens, then serve until SIGTERM or Ctrl-C."""
    settings, server, web = exporter.settings, exporter.server, exporter.settings.web_config
    host, port = server.server_address[:2]
    shown = "localhost" if not host or ipaddress.ip_address(host).is_unspecified else host
    subs = ",".join(s.subaccount for s in settings.subaccounts) or "none (/probe only)"
    log_event(
        log,
        logging.INFO,
        "listening",
        address=shown_address(host, port),
        version=__version__,
        subaccounts=subs,
        tls="on" if web is not None and web.tls_context is not None else "off",
        basic_auth="on" if web is not None and web.users else "off",
        threads_max=thread_bound(settings),
    )
    if demo_url:
        log_event(
            log,
            logging.INFO,
            f"demo mode: metrics at http://{shown_address(shown, port)}{settings.telemetry_path}",
            simulator=demo_url,
        )
        ignored = [name for name in DEMO_IGNORES_ENV if os.environ.get(name)]
        if ignored:
            log_event(log, logging.WARNING, "demo mode ignores", environment=",".join(ignored))

    callbacks = exporter.callbacks
    if callbacks is not None:
        _serve_callbacks(exporter, callbacks)

    stopping = threading.Event()

    def stop(signum: int, frame: object) -> None:
        if stopping.is_set():
            raise KeyboardInterrupt  # a second SIGTERM or Ctrl-C: stop without waiting
        stopping.set()
        # shutdown() waits for serve_forever() to return, so it cannot run in this thread.
        threading.Thread(target=server.shutdown, name="shutdown", daemon=True).start()

    def reload(signum: int, frame: object) -> None:
        # Off the signal handler: a reload reads files and may take a while.
        threading.Thread(
            target=_reload_quietly, args=(exporter,), name="reload", daemon=True
        ).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, reload)
    try:
        server.serve_forever()
        server.server_close()  # no new connections from here on
        _drain(server, settings.shutdown_grace)
    except KeyboardInterrupt:
        log_event(log, logging.INFO, "stopped without waiting for requests in flight")
    finally:
        if callbacks is not None:
            callbacks.shutdown()
            callbacks.server_close()
        server.server_close()
    return 0


def _serve_callbacks(exporter: Exporter, callbacks: ExporterServer) -> None:
    """The webhook receiver's listener, in its own thread next to /metrics."""
    host, port = callbacks.server_address[:2]
    log_event(
        log,
        logging.INFO,
        "receiving 8x8 callbacks",
        address=f"{host}:{port}",
        path=exporter.settings.webhooks.path if exporter.settings.webhooks else "",
        tls="on" if callbacks.base_environ.get("HTTPS") == "on" else "off",
    )
    serve_in_thread(callbacks)


def _drain(server: ExporterServer, grace: float) -> None:
    """Let the requests in flight finish, for at most `grace` seconds."""
    log_event(
        log,
        logging.INFO,
        "shutting down",
        in_flight=server.connections,
        grace=f"{grace:g}s",
    )
    left = server.wait_until_idle(grace)
    if left:
        log_event(log, logging.WARNING, "shutdown grace ran out", unfinished=left)


def _reload_quietly(exporter: Exporter) -> None:
    """SIGHUP: reload; a failure is already logged and counted, and the old settings stay."""
    with contextlib.suppress(ConfigError):
        exporter.reload()
