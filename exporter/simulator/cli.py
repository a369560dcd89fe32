"""Command line of the standalone simulator: `python -m exporter.simulator` and
`eightbyeight-exporter simulate` (which calls `main(argv)`).

Bad flags or files give one `<prog>: error: ...` line on stderr and exit status 2; a listen
address that cannot be bound gives exit status 1. SIGTERM or SIGINT stops it cleanly (0).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from exporter.config.values import SUBACCOUNT_PATTERN
from exporter.simulator.faults import MAX_NUMBERS, FaultDocument, FaultError
from exporter.simulator.scenario import ScenarioError, load_scenario_file
from exporter.simulator.server import DEFAULT_NUMBERS, DEFAULT_SUBACCOUNT, Simulator

DEFAULT_LISTEN = "127.0.0.1:9882"
KEY_ENV = "EIGHTBYEIGHT_API_KEY"
KEY_FILE_ENV = "EIGHTBYEIGHT_API_KEY_FILE"
PUSH_AUTH_ENV = "EIGHTBYEIGHT_WEBHOOK_AUTH_HEADER"
LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING}
LOG_LEVELS["error"] = logging.ERROR

log = logging.getLogger("exporter.simulator")


class UsageError(Exception):
    """A bad flag or file; printed as one line."""


class _Exit(Exception):  # noqa: N818 - control flow, not an error
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            sys.stderr.write(message)
        raise _Exit(status)


@dataclass(frozen=True)
class Settings:
    listen: tuple[str, int]
    admin_listen: tuple[str, int] | None
    subaccounts: dict[str, int]
    seed: int
    api_key: str
    faults: FaultDocument
    log_level: str
    log_format: str
    push_url: str | None = None
    push_auth: str | None = None
    push_interval: float = 1.0


def _parser(prog: str) -> _Parser:
    parser = _Parser(
        prog=prog,
        allow_abbrev=False,
        description="Simulate the 8x8 Virtual Numbers API (GET /api/v1/subaccounts/{id}/numbers) "
        "with made-up numbers that evolve with time, and inject faults.",
    )
    parser.add_argument(
        "--web.listen-address",
        dest="listen",
        default=DEFAULT_LISTEN,
        metavar="HOST:PORT",
        help=f"address of the API (default {DEFAULT_LISTEN}; ':9882' for every interface)",
    )
    parser.add_argument(
        "--admin.listen-address",
        dest="admin_listen",
        default="",
        metavar="HOST:PORT",
        help="separate address for the /admin/ API; by default /admin/ is answered on the API "
        "address to loopback clients only",
    )
    parser.add_argument(
        "--subaccount",
        dest="subaccounts",
        action="append",
        default=[],
        metavar="ID[=N]",
        help=f"a subaccount to serve, with N numbers (repeatable; default {DEFAULT_SUBACCOUNT})",
    )
    parser.add_argument(
        "--numbers",
        type=int,
        default=DEFAULT_NUMBERS,
        metavar="N",
        help=f"numbers per subaccount without =N (default {DEFAULT_NUMBERS})",
    )
    parser.add_argument("--seed", type=int, default=1, help="generation seed (default 1)")
    parser.add_argument(
        "--api-key", dest="api_key", metavar="KEY", help=f"accepted Bearer key (or ${KEY_ENV})"
    )
    parser.add_argument(
        "--api-key-file",
        dest="api_key_file",
        metavar="PATH",
        help=f"file holding the accepted Bearer key (or ${KEY_FILE_ENV})",
    )
    parser.add_argument(
        "--scenario.file",
        dest="scenario_file",
        metavar="PATH",
        help="YAML fault document applied at start (same format as PUT /admin/faults)",
    )
    parser.add_argument(
        "--push.url",
        dest="push_url",
        metavar="URL",
        help="send VNU and VSS callbacks (webhooks) to this URL, e.g. "
        "http://127.0.0.1:9883/webhooks/8x8",
    )
    parser.add_argument(
        "--push.auth-header-file",
        dest="push_auth_file",
        metavar="PATH",
        help=f"file holding the Authorization value sent with callbacks (or ${PUSH_AUTH_ENV})",
    )
    parser.add_argument(
        "--push.interval",
        dest="push_interval",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="seconds between rounds of callbacks (default 1)",
    )
    parser.add_argument("--log.level", dest="log_level", default="info", choices=sorted(LOG_LEVELS))
    parser.add_argument(
        "--log.format", dest="log_format", default="logfmt", choices=["json", "logfmt"]
    )
    return parser


def parse_listen_address(flag: str, value: str) -> tuple[str, int]:
    """'host:port', ':port' or '[v6]:port' -> (host, port)."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit() or int(port_text) > 65535:
        raise UsageError(f"{flag}: {value!r} is not HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise UsageError(f"{flag}: {value!r}: write IPv6 addresses as [ADDRESS]:PORT")
    return host, int(port_text)


def _subaccounts(values: Sequence[str], default_count: int) -> dict[str, int]:
    if not 0 <= default_count <= MAX_NUMBERS:
        raise UsageError(f"--numbers: must be 0-{MAX_NUMBERS}, got {default_count}")
    result: dict[str, int] = {}
    for value in values or [DEFAULT_SUBACCOUNT]:
        name, sep, count_text = value.partition("=")
        if not SUBACCOUNT_PATTERN.match(name):
            raise UsageError(
                f"--subaccount: {name!r} is not a subaccount ID (3-50 of A-Z a-z 0-9 - . _ &)"
            )
        count = default_count
        if sep:
            if not count_text.isdigit() or int(count_text) > MAX_NUMBERS:
                raise UsageError(f"--subaccount {value}: N must be an integer 0-{MAX_NUMBERS}")
            count = int(count_text)
        result[name] = count
    return result


def _read_key_file(source: str, path: str) -> str:
    try:
        key = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
        raise UsageError(f"{source}: cannot read {path}: {reason}") from None
    if not key:
        raise UsageError(f"{source}: {path} is empty")
    return key


def _api_key(options: argparse.Namespace) -> str:
    if options.api_key is not None and options.api_key_file is not None:
        raise UsageError("give only one of --api-key and --api-key-file")
    if options.api_key is not None:
        key = options.api_key.strip()
    elif options.api_key_file is not None:
        key = _read_key_file("--api-key-file", options.api_key_file)
    elif os.environ.get(KEY_ENV, "").strip():
        key = os.environ[KEY_ENV].strip()
    elif os.environ.get(KEY_FILE_ENV):
        key = _read_key_file(KEY_FILE_ENV, os.environ[KEY_FILE_ENV])
    else:
        raise UsageError(
            f"an API key is required: --api-key, --api-key-file, ${KEY_ENV} or ${KEY_FILE_ENV}"
        )
    if not key or any(c.isspace() for c in key):
        raise UsageError("the API key must be non-empty and contain no whitespace")
    return key


def parse_settings(argv: Sequence[str], prog: str) -> Settings:
    """Validated settings from the command line and environment; raises UsageError."""
    options = _parser(prog).parse_args(list(argv))
    listen = parse_listen_address("--web.listen-address", options.listen)
    admin = None
    if options.admin_listen:
        admin = parse_listen_address("--admin.listen-address", options.admin_listen)
    try:
        faults = load_scenario_file(Path(options.scenario_file)) if options.scenario_file else None
    except ScenarioError as exc:
        raise UsageError(str(exc)) from None
    return Settings(
        listen=listen,
        admin_listen=admin,
        subaccounts=_subaccounts(options.subaccounts, options.numbers),
        seed=options.seed,
        api_key=_api_key(options),
        faults=faults or FaultDocument(),
        log_level=options.log_level,
        log_format=options.log_format,
        **_push_settings(options),
    )


def _push_settings(options: argparse.Namespace) -> dict[str, Any]:
    if not options.push_url:
        return {}
    if not options.push_url.startswith(("http://", "https://")):
        raise UsageError(f"--push.url: {options.push_url!r} is not an http(s) URL")
    if not 0.05 <= options.push_interval <= 3600:
        raise UsageError("--push.interval: must be between 0.05 and 3600 seconds")
    if options.push_auth_file:
        auth = Path(options.push_auth_file)
        try:
            value = auth.read_text(encoding="utf-8").strip("\r\n")
        except (OSError, UnicodeDecodeError):
            raise UsageError(f"--push.auth-header-file: cannot read {auth}") from None
    else:
        value = os.environ.get(PUSH_AUTH_ENV, "")
    if not value.strip():
        raise UsageError(
            f"--push.url needs the Authorization value: --push.auth-header-file or ${PUSH_AUTH_ENV}"
        )
    return {
        "push_url": options.push_url,
        "push_auth": value,
        "push_interval": options.push_interval,
    }


class _Formatter(logging.Formatter):
    def __init__(self, fmt: str) -> None:
        super().__init__()
        self._json = fmt == "json"

    def format(self, record: logging.LogRecord) -> str:
        millis = int(record.created * 1000) % 1000
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        level = {"WARNING": "warn"}.get(record.levelname, record.levelname.lower())
        pairs: dict[str, Any] = {"ts": f"{stamp}.{millis:03d}Z", "level": level}
        pairs["msg"] = " ".join(record.getMessage().split())
        pairs.update(getattr(record, "fields", {}))
        if self._json:
            return json.dumps({k: str(v) for k, v in pairs.items()})
        return " ".join(f"{k}={_logfmt(v)}" for k, v in pairs.items())


def _logfmt(value: object) -> str:
    text = str(value)
    if text and not any(c in text for c in ' ="\\'):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _setup_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(fmt))
    log.handlers[:] = [handler]
    log.setLevel(LOG_LEVELS[level])
    log.propagate = False


class _StopFlag:
    """Set from a signal handler; plain attribute, no locks (handlers interrupt any code)."""

    def __init__(self) -> None:
        self.raised = False

    def __call__(self, signum: int, frame: object) -> None:
        self.raised = True


def _serve_until_signalled(sim: Simulator) -> None:
    flag = _StopFlag()
    previous: dict[signal.Signals, Any] = {}
    for signum in (signal.SIGTERM, signal.SIGINT):
        try:
            previous[signum] = signal.signal(signum, flag)
        except ValueError:  # not the main thread: the caller owns signal handling
            break
    try:
        while not flag.raised:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def main(argv: list[str], *, prog: str = "eightbyeight-exporter simulate") -> int:
    """Run the simulator until SIGTERM/SIGINT; returns the process exit status."""
    try:
        settings = parse_settings(argv, prog)
    except _Exit as exc:
        return exc.code
    except UsageError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    _setup_logging(settings.log_level, settings.log_format)
    try:
        sim = Simulator(
            settings.subaccounts,
            settings.api_key,
            settings.seed,
            host=settings.listen[0],
            port=settings.listen[1],
            scenario=settings.faults.to_json(),
            admin_host=settings.admin_listen[0] if settings.admin_listen else None,
            admin_port=settings.admin_listen[1] if settings.admin_listen else 0,
        )
    except (ValueError, FaultError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    try:
        sim.start()
    except OSError as exc:
        print(f"{prog}: error: cannot listen: {exc.strerror or exc}", file=sys.stderr)
        return 1
    log.info(
        "simulator listening",
        extra={
            "fields": {
                "address": sim.base_url,
                "admin": sim.admin_url,
                "subaccounts": ",".join(f"{k}={v}" for k, v in settings.subaccounts.items()),
                "seed": settings.seed,
            }
        },
    )
    if settings.push_url and settings.push_auth:
        sim.start_push(settings.push_url, settings.push_auth, interval=settings.push_interval)
        log.info("pushing callbacks", extra={"fields": {"url": settings.push_url}})
    try:
        _serve_until_signalled(sim)
    finally:
        sim.stop()
        log.info("simulator stopped")
    return 0
