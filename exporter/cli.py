"""Command line: flags and environment in Prometheus style, start-up checks, serving.

`eightbyeight-exporter simulate ...` runs the 8x8 API simulator instead (see
exporter/simulator/cli.py).
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import secrets
import signal
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import NoReturn

from exporter import __version__
from exporter.config import (
    DEFAULT_BASE_URL,
    DEFAULT_LISTEN_ADDRESS,
    ConfigError,
    Settings,
    Target,
    default_api_key,
    environment,
    load_config_file,
    parse_duration,
    parse_size,
    subaccounts_from_env,
    validate_base_url,
    validate_subaccount,
)
from exporter.logs import FORMATS, LEVELS, log_event, setup_logging
from exporter.server import make_server, parse_listen_address
from exporter.web import ExporterApp
from exporter.webconfig import load_web_config, ssl_context, wrap_app
from exporter.webhooks.config import ENV_AUTH, WebhookSettings, add_webhook_flags, webhook_settings

PROG = "eightbyeight-exporter"
log = logging.getLogger("exporter")

DEMO_SUBACCOUNTS = {"demo-apac": 60, "demo-emea": 40}


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line instead of the usage block."""

    def error(self, message: str) -> NoReturn:
        prefix = "unrecognized arguments: "
        if message.startswith(prefix):
            # The words after an unknown flag may be a secret typed where it does not belong
            # (`--api.key <key>`): name the unknown flags, never echo their values.
            words = message[len(prefix) :].split()
            flags = [w.partition("=")[0] for w in words if w.startswith("-")]
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
        "--api.max-response-size",
        dest="max_response_size",
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


def settings_from_args(args: argparse.Namespace, env: dict[str, str]) -> Settings:
    """Validate flags, environment and config file into Settings; ConfigError on any problem."""
    parse_listen_address(args.listen_address)
    if not args.telemetry_path.startswith("/") or args.telemetry_path in ("/probe", "/"):
        raise ConfigError(f"invalid --web.telemetry-path {args.telemetry_path!r}")
    if args.api_retries < 0 or args.api_retries > 10:
        raise ConfigError("--api.retries must be between 0 and 10")
    file_config = load_config_file(args.config_file) if args.config_file else None
    base_url = validate_base_url(
        args.base_url or (file_config.base_url if file_config else None) or DEFAULT_BASE_URL
    )
    api_key = default_api_key(args.key_file, env)
    if api_key is None and file_config is not None:
        api_key = file_config.api_key

    targets: list[Target] = []
    seen: set[str] = set()
    for sub, key, url in file_config.targets if file_config else ():
        targets.append(Target(sub, key or api_key, url or base_url))
        seen.add(sub)
    flag_subs = args.subaccounts if args.subaccounts is not None else subaccounts_from_env(env)
    for sub in flag_subs:
        sub = validate_subaccount(sub)
        if sub not in seen:
            targets.append(Target(sub, api_key, base_url))
            seen.add(sub)
    missing = [t.subaccount for t in targets if t.api_key is None]
    if missing or (not targets and api_key is None):
        which = f" for subaccount {missing[0]}" if missing else ""
        raise ConfigError(
            f"no API key{which}: set EIGHTBYEIGHT_API_KEY, EIGHTBYEIGHT_API_KEY_FILE or "
            "--api.key-file"
        )

    probe_allowed = None
    if args.probe_allowed is not None:
        probe_allowed = frozenset(
            validate_subaccount(s.strip()) for s in args.probe_allowed.split(",") if s.strip()
        )
    elif file_config is not None and file_config.probe_allowed is not None:
        probe_allowed = frozenset(file_config.probe_allowed)

    web_config = Path(args.web_config_file) if args.web_config_file else None
    if web_config is not None:
        load_web_config(web_config)  # TLS files and bcrypt hashes are checked at start-up
    keys = {t.api_key for t in targets if t.api_key} | ({api_key} if api_key else set())
    return Settings(
        listen_address=args.listen_address,
        telemetry_path=args.telemetry_path,
        base_url=base_url,
        api_timeout=_positive(parse_duration(args.api_timeout, "--api.timeout"), "--api.timeout"),
        api_key=api_key,
        targets=tuple(targets),
        per_number=args.per_number,
        cache_ttl=parse_duration(args.cache_ttl, "--cache.ttl"),
        serve_stale_for=parse_duration(args.serve_stale_for, "--cache.serve-stale-for"),
        timeout_offset=parse_duration(args.timeout_offset, "--web.timeout-offset"),
        max_response_bytes=parse_size(args.max_response_size, "--api.max-response-size"),
        api_retries=args.api_retries,
        probe_allowed=probe_allowed,
        web_config_file=web_config,
        log_level=args.log_level,
        log_format=args.log_format,
        secrets=tuple(keys),
    )


def _positive(value: float, what: str) -> float:
    if value <= 0:
        raise ConfigError(f"{what} must be greater than 0")
    return value


def _demo_settings(args: argparse.Namespace, stack: ExitStack) -> Settings:
    """Start the simulator in-process and point the exporter at it."""
    from exporter.simulator import Simulator

    key = secrets.token_urlsafe(24)
    simulator = stack.enter_context(Simulator(subaccounts=DEMO_SUBACCOUNTS, api_key=key, seed=8))
    args.base_url = simulator.base_url
    args.subaccounts = list(DEMO_SUBACCOUNTS)
    args.config_file = None
    args.key_file = None
    args.demo_simulator = simulator
    return settings_from_args(args, {"EIGHTBYEIGHT_API_KEY": key})


def _demo_webhook_env(args: argparse.Namespace) -> dict[str, str]:
    """The demo's simulator pushes callbacks to a receiver on loopback, with a fresh secret."""
    if not args.webhook_listen_address:
        args.webhook_listen_address = "127.0.0.1:0"
    args.webhook_auth_file = None
    return {ENV_AUTH: "Bearer " + secrets.token_urlsafe(24)}


def _webhook_settings(
    args: argparse.Namespace, settings: Settings, env: dict[str, str]
) -> WebhookSettings | None:
    return webhook_settings(
        args,
        env,
        tuple(t.subaccount for t in settings.targets),
        settings.probe_allowed,
        settings.per_number,
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "simulate":
        from exporter.simulator.cli import main as simulate

        return simulate(argv[1:])
    args = build_parser().parse_args(argv)
    with ExitStack() as stack:
        try:
            env = _demo_webhook_env(args) if args.demo else environment()
            settings = _demo_settings(args, stack) if args.demo else settings_from_args(args, env)
            webhooks = _webhook_settings(args, settings, env)
        except ConfigError as exc:
            print(f"{PROG}: error: {exc}", file=sys.stderr)
            return 1
        if args.config_check:
            print(f"{PROG}: configuration is valid ({len(settings.targets)} subaccounts)")
            return 0
        hidden = [k.reveal() for k in settings.secrets]
        if webhooks is not None:
            hidden.append(webhooks.auth_header.reveal())
        setup_logging(settings.log_level, settings.log_format, hidden)
        simulator = getattr(args, "demo_simulator", None)
        return _serve(
            settings,
            demo_url=settings.base_url if args.demo else None,
            webhooks=webhooks,
            simulator=simulator,
            collect_webhooks=args.collector_webhooks,
        )
    return 0


def _serve(
    settings: Settings,
    demo_url: str | None,
    webhooks: WebhookSettings | None = None,
    simulator: object | None = None,
    collect_webhooks: bool = False,
) -> int:
    try:
        web = load_web_config(settings.web_config_file) if settings.web_config_file else None
        tls = ssl_context(web.tls) if web is not None and web.tls is not None else None
        app = ExporterApp(settings)
        server = make_server(
            settings.listen_address, wrap_app(app, web) if web else app, ssl_context=tls
        )
        if webhooks is not None:
            # The demo's receiver stays plain HTTP on loopback: its simulator trusts no CA.
            _start_webhooks(webhooks, app, None if simulator else tls, simulator)
        if collect_webhooks:
            _collect_webhooks(app)
    except ConfigError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    host, port = server.server_address[:2]
    shown = "localhost" if not host or ipaddress.ip_address(host).is_unspecified else host
    subs = ",".join(t.subaccount for t in settings.targets) or "none (/probe only)"
    log_event(
        log,
        logging.INFO,
        "listening",
        address=f"{host}:{port}",
        version=__version__,
        subaccounts=subs,
        tls="on" if tls else "off",
        basic_auth="on" if web is not None and web.users else "off",
    )
    if demo_url:
        log_event(
            log,
            logging.INFO,
            f"demo mode: metrics at http://{shown}:{port}{settings.telemetry_path}",
            simulator=demo_url,
        )

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        log_event(log, logging.INFO, "shutting down")
    finally:
        server.server_close()
    return 0


def _start_webhooks(
    webhooks: WebhookSettings, app: ExporterApp, tls: object, simulator: object | None
) -> None:
    """The callback listener; its metrics join /metrics; the demo simulator pushes to it."""
    from exporter.webhooks.listener import bridge, start_receiver
    from exporter.webhooks.state import WebhookState

    state = WebhookState(webhooks.allowed, per_number=webhooks.per_number)
    receiver = start_receiver(webhooks, state, tls)  # type: ignore[arg-type]
    app.metrics.registry.register(bridge(state))
    host, port = receiver.server_address[:2]
    scheme = "https" if tls is not None else "http"
    log_event(
        log,
        logging.INFO,
        "receiving 8x8 callbacks",
        address=f"{host}:{port}",
        path=webhooks.path,
        tls="on" if tls else "off",
    )
    if simulator is not None:
        shown = "127.0.0.1" if not host or ipaddress.ip_address(host).is_unspecified else host
        simulator.start_push(  # type: ignore[attr-defined]
            f"{scheme}://{shown}:{port}{webhooks.path}", webhooks.auth_header.reveal()
        )


def _collect_webhooks(app: ExporterApp) -> None:
    """--collector.webhooks: read each configured subaccount's webhook list on scrape."""
    from exporter.webhooks.configured import WebhookConfigCollector

    collector = WebhookConfigCollector()
    app.metrics.registry.register(collector)
    for scraper in app.targets.configured:
        scraper.after_fetch = collector.read
