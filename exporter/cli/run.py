"""`eightbyeight-exporter [run]`: parsed flags → `Settings` → the built exporter → serving.

Settings are assembled in exporter/config/settings.py, everything else is built in exporter/app.py.
The command line itself (which command, which flags) is exporter/cli/main.py.
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
from exporter.config.flags import PROG
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

# Exit status of a configuration the exporter refuses (flags, environment, files): the status
# argparse gives a bad flag, so that one status means "fix the configuration". An uncaught
# exception exits 1: systemd's RestartPreventExitStatus names this one only, so a crash is
# restarted and a bad configuration is not retried in a loop.
EXIT_CONFIG = 2
DEMO_SUBACCOUNTS = {"demo-apac": 60, "demo-emea": 40}
# Flags --demo replaces with its own simulator's values (attribute of the parsed flags, flag).
DEMO_REPLACES = (
    ("subaccounts", "--subaccount"),
    ("base_url", "--api.base-url"),
    ("config_file", "--config.file"),
    ("key_file", "--api.key-file"),
)
DEMO_IGNORES_ENV = (ENV_API_KEY, ENV_API_KEY_FILE, ENV_SUBACCOUNTS)
# --demo serves made-up data with no auth: this host only, unless --web.listen-address says
# otherwise (a container publishing the port gives ":9881").
DEMO_LISTEN_ADDRESS = "127.0.0.1:9881"
LISTEN_FLAG = "--web.listen-address"


def _demo_conflicts(args: argparse.Namespace) -> None:
    """ConfigError naming the flags given with --demo that it would silently replace."""
    given = [flag for attribute, flag in DEMO_REPLACES if getattr(args, attribute) is not None]
    if given:
        raise ConfigError(
            f"--demo runs against its own simulator and cannot be combined with {', '.join(given)}"
        )


def listen_address_given(argv: Sequence[str]) -> bool:
    """Whether the command line names --web.listen-address (abbreviations are refused)."""
    return any(arg == LISTEN_FLAG or arg.startswith(f"{LISTEN_FLAG}=") for arg in argv)


def demo_flags(
    args: argparse.Namespace, base_url: str, *, listen_given: bool = False
) -> argparse.Namespace:
    """The flags as given, with --demo's own simulator and receiver in place of the API's, and
    loopback to listen on unless `listen_given`.

    A new value: the parsed flags stay what the operator typed.
    """
    listen = {} if listen_given else {"listen_address": DEMO_LISTEN_ADDRESS}
    return argparse.Namespace(
        **{
            **vars(args),
            **listen,
            "base_url": base_url,
            "subaccounts": list(DEMO_SUBACCOUNTS),
            "config_file": None,
            "key_file": None,
            "webhook_listen_address": args.webhook_listen_address or "127.0.0.1:0",
            "webhook_auth_file": None,
        }
    )


def _demo_settings(
    args: argparse.Namespace, stack: ExitStack, *, listen_given: bool = False
) -> tuple[SettingsLoader, Simulator]:
    """Start the simulator in-process; settings that point the exporter at it, listening on
    loopback unless `listen_given`.

    Its callbacks go to a receiver on loopback with a fresh Authorization value, over plain
    HTTP even with --web.config.file: the simulator trusts no CA.
    """
    from exporter.simulator import Simulator

    _demo_conflicts(args)
    key = secrets.token_urlsafe(24)
    simulator = stack.enter_context(Simulator(subaccounts=DEMO_SUBACCOUNTS, api_key=key, seed=8))
    demo = demo_flags(args, simulator.base_url, listen_given=listen_given)
    env = {ENV_API_KEY: key, ENV_AUTH: "Bearer " + secrets.token_urlsafe(24)}

    def load() -> Settings:
        settings = settings_from_flags(demo, env)
        if settings.webhooks is not None:
            settings = replace(settings, webhooks=replace(settings.webhooks, web_tls=False))
        return settings

    return load, simulator


def _settings_loader(args: argparse.Namespace) -> SettingsLoader:
    """Settings from these flags and the environment, files read anew at every call."""
    return lambda: settings_from_flags(args, environment())


def run(args: argparse.Namespace, *, listen_given: bool = False) -> int:
    """Serve with these parsed flags until stopped; EXIT_CONFIG with one line on a bad
    configuration. `listen_given`: the command line named --web.listen-address."""
    with ExitStack() as stack:
        simulator = None
        try:
            if args.demo:
                load_settings, simulator = _demo_settings(args, stack, listen_given=listen_given)
            else:
                load_settings = _settings_loader(args)
            settings = load_settings()
        except ConfigError as exc:
            print(f"{PROG}: error: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        if args.config_check:
            count = len(settings.subaccounts)
            print(f"{PROG}: configuration is valid ({_plural(count, 'subaccount')})")
            return 0
        redact = setup_logging(settings.log_level, settings.log_format, _revealed(settings))
        try:
            exporter = build_exporter(settings, load_settings=load_settings)
        except ConfigError as exc:
            print(f"{PROG}: error: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        # Rotated keys are redacted from the moment they are read; old ones stay redacted.
        exporter.reload_listeners.append(lambda new: redact.learn(_revealed(new)))
        if simulator is not None:
            exporter.app.demo = True  # the status page says so
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
        exporter.app.ready.clear()
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
