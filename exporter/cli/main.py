"""Command line: flags in Prometheus style → `Settings` → the built exporter → serving.

Settings are assembled in exporter/config/settings.py, everything else is built in exporter/app.py.

`eightbyeight-exporter simulate ...` runs the 8x8 API simulator instead (see
exporter/simulator/cli.py).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import secrets
import signal
import sys
import threading
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import replace
from typing import TYPE_CHECKING

from exporter import __version__
from exporter.app import (
    Exporter,
    SettingsLoader,
    build_exporter,
    push_demo_callbacks,
    thread_bound,
)
from exporter.common.logs import log_event, setup_logging
from exporter.config.flags import PROG, build_parser
from exporter.config.settings import (
    ENV_API_KEY,
    ENV_API_KEY_FILE,
    ENV_SUBACCOUNTS,
    Settings,
    settings_from_flags,
)
from exporter.config.values import ConfigError, environment, host_port, loopback_for
from exporter.config.webhooks import ENV_AUTH
from exporter.web.server import ExporterServer, serve_in_thread

log = logging.getLogger("exporter")

if TYPE_CHECKING:
    from exporter.simulator import Simulator

DEMO_SUBACCOUNTS = {"demo-apac": 60, "demo-emea": 40}
# Flags --demo replaces with its own simulator's values (attribute of the parsed flags, flag).
DEMO_REPLACES = (
    ("subaccounts", "--subaccount"),
    ("base_url", "--api.base-url"),
    ("config_file", "--config.file"),
    ("key_file", "--api.key-file"),
)
DEMO_IGNORES_ENV = (ENV_API_KEY, ENV_API_KEY_FILE, ENV_SUBACCOUNTS)


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
        from exporter.cli.healthcheck import main as healthcheck

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


def _revealed(settings: Settings) -> list[str]:
    return [key.reveal() for key in settings.secrets]


def serve(exporter: Exporter, demo_url: str | None = None) -> int:
    """Log where the exporter listens, then serve until SIGTERM or Ctrl-C."""
    settings, server, web = exporter.settings, exporter.server, exporter.settings.web_config
    host, port = str(server.server_address[0]), server.server_address[1]
    subs = ",".join(s.subaccount for s in settings.subaccounts) or "none (/probe only)"
    log_event(
        log,
        logging.INFO,
        "listening",
        address=host_port(host, port),
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
            f"demo mode: metrics at http://{host_port(loopback_for(host), port)}"
            f"{settings.telemetry_path}",
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
    host, port = str(callbacks.server_address[0]), callbacks.server_address[1]
    log_event(
        log,
        logging.INFO,
        "receiving 8x8 callbacks",
        address=host_port(host, port),
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
