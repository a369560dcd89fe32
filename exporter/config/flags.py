"""The exporter's flags: the argument parser and its defaults."""

from __future__ import annotations

import argparse
from typing import NoReturn

from exporter import __version__
from exporter.config.balance import add_balance_flags
from exporter.config.settings import (
    DEFAULT_BASE_URL,
    DEFAULT_LISTEN_ADDRESS,
    DEFAULT_PARALLEL_FETCHES,
    DEFAULT_WEB_MAX_CONNECTIONS,
    DEFAULT_WEB_WORKERS,
)
from exporter.config.webhooks import add_webhook_flags

LEVELS = ("debug", "info", "warn", "error")
FORMATS = ("logfmt", "json")

PROG = "eightbyeight-exporter"


KEY_FLAG = "--api.key"


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
    add_balance_flags(p)
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    return p
