"""The exporter's flags, in one table: name, default, check, help and environment variable.

From `FLAGS` come the argument parser (`build_parser`, `add_flags`), the defaults of `Settings`
and of the listeners, clients and pools (`default`), and the reference page docs/flags.md
(`reference_page`; rewrite it with `python -m exporter.config.flags > docs/flags.md`).
A default is written here once, as an operator would type it ("10s", "256MiB"); everything
else reads it back through `default(dest)`, parsed by the flag's own check.

This module imports nothing heavier than argparse: the container's health check reads the
running exporter's command line with `build_parser`, every 30 s.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple, NoReturn

from exporter.config.values import (
    MAX_CONNECTIONS,
    MAX_WORKERS,
    ConfigError,
    bounded,
    parse_duration,
    parse_listen_address,
    parse_size,
    positive,
    validate_base_url,
)

PROG = "eightbyeight-exporter"
KEY_FLAG = "--api.key"
LEVELS = ("debug", "info", "warn", "error")
FORMATS = ("logfmt", "json")
MAX_PARALLEL_FETCHES = 512
MAX_RETRIES = 10
DESCRIPTION = (
    "Prometheus exporter for 8x8 virtual numbers and their Number Health. The API key comes "
    "from $EIGHTBYEIGHT_API_KEY, or a file named by --api.key-file or $EIGHTBYEIGHT_API_KEY_FILE."
)

# (value as given, flag name) -> the value the settings hold; ConfigError naming the flag.
Check = Callable[[Any, str], Any]


def positive_duration(value: str | float, name: str) -> float:
    return positive(parse_duration(value, name), name)


def between(least: int, most: int) -> Check:
    """A check that refuses numbers outside least..most, naming the flag and the range."""

    def check(value: int, name: str) -> int:
        return bounded(value, name, least, most)

    return check


def listen_address(value: str, name: str) -> str:
    parse_listen_address(value)
    return value


def base_url(value: str, name: str) -> str:
    return validate_base_url(value)


def telemetry_path(value: str, name: str) -> str:
    """The metrics path: absolute, not / nor /probe, and not under /-/ (the exporter's own
    pages there, /-/healthy among them, answer without credentials)."""
    url_path("/probe", "/")(value, name)
    if value.startswith("/-/"):
        raise ConfigError(
            f"invalid {name} {value!r}: paths under /-/ are reserved "
            "(/-/healthy answers without credentials)"
        )
    return value


def url_path(*reserved: str) -> Check:
    """A check for a path of this exporter's own: absolute, and none of `reserved`."""

    def check(value: str, name: str) -> str:
        if not value.startswith("/") or value in reserved:
            raise ConfigError(f"invalid {name} {value!r}")
        return value

    return check


class Flag(NamedTuple):
    """One flag (a NamedTuple: dataclasses would import inspect, a cost on every health check).

    `kind` says how argparse reads it:
    value: one string; int: one integer; switch: present or not; toggle: `--x` and `--no-x`;
    repeated: may be given many times, a list.
    """

    name: str
    dest: str
    help: str
    default: Any = None  # as typed on the command line; None: not set
    check: Check | None = None
    kind: str = "value"
    env: str | None = None  # read when the flag is not given
    choices: tuple[str, ...] | None = None
    metavar: str | None = None
    # Said after the default in --help and the reference: "(default 0s: call on every scrape)".
    default_note: str = ""
    # The parsed flag stays None when not given, so that the config file can set it; the
    # default applies after the file (--api.base-url).
    file_first: bool = False

    @property
    def parsed_default(self) -> Any:
        """The default as the settings hold it: parsed and checked."""
        if self.check is None or self.default is None:
            return self.default
        return self.check(self.default, self.name)

    @property
    def shown_default(self) -> str | None:
        if self.kind == "switch" or self.default is None:
            return None
        if self.kind == "toggle":
            return "on" if self.default else "off"
        return str(self.default)

    @property
    def full_help(self) -> str:
        shown = self.shown_default
        return self.help if shown is None else f"{self.help} (default {shown}{self.default_note})"


CLIENT_AUTH_TYPES = ("NoClientCert", "VerifyClientCertIfGiven", "RequireAndVerifyClientCert")
MIN_BALANCE_INTERVAL = 60.0


def client_auth_type(value: str, name: str) -> str:
    if value not in CLIENT_AUTH_TYPES:
        raise ConfigError(f"invalid {name} {value!r}: one of " + ", ".join(CLIENT_AUTH_TYPES))
    return value


def balance_interval(value: str | float, name: str) -> float:
    seconds = parse_duration(value, name)
    if seconds < MIN_BALANCE_INTERVAL:
        raise ConfigError(f"{name} must be at least 1m")
    return seconds


_FD_NOTE = "well below a 1,024 file-descriptor limit"

FLAGS: tuple[Flag, ...] = (
    Flag(
        "--web.listen-address",
        "listen_address",
        "address to listen on",
        default=":9881",
        check=listen_address,
    ),
    Flag(
        "--web.telemetry-path",
        "telemetry_path",
        "path of the metrics endpoint",
        default="/metrics",
        check=telemetry_path,
    ),
    Flag(
        "--web.config.file",
        "web_config_file",
        "TLS and basic auth configuration (exporter-toolkit format)",
    ),
    Flag(
        "--web.timeout-offset",
        "timeout_offset",
        "subtracted from Prometheus' scrape timeout to get the fetch deadline",
        default="0.5s",
        check=parse_duration,
    ),
    Flag(
        "--web.shutdown-grace",
        "shutdown_grace",
        "on SIGTERM, how long requests in flight may take to finish",
        default="10s",
        check=parse_duration,
    ),
    Flag(
        "--web.read-timeout",
        "web_read_timeout",
        "longest a request, line, headers and body, may take to arrive from its connection; "
        "slower or idle connections are closed",
        default="10s",
        check=positive_duration,
    ),
    # Each listener's threads and open connections (exporter/web/server.py). A connection is a
    # file descriptor: both listeners' defaults (256 + 128) and the API connections stay well
    # below a 1,024 limit; the maxima keep a typo from asking for more than any limit allows.
    Flag(
        "--web.workers",
        "web_workers",
        "threads answering /metrics, /probe and the other pages; more requests wait their turn",
        default=8,
        check=between(1, MAX_WORKERS),
        kind="int",
    ),
    Flag(
        "--web.max-connections",
        "web_max_connections",
        "open connections the listener keeps, each a file descriptor; more are closed at once",
        default=256,
        check=between(1, MAX_CONNECTIONS),
        kind="int",
        default_note=f": with --webhook.max-connections and the API connections {_FD_NOTE}",
    ),
    Flag(
        "--api.base-url",
        "base_url",
        "8x8 API base URL",
        default="https://voice.8x8.com",
        check=base_url,
        file_first=True,
    ),
    Flag(
        "--api.timeout",
        "api_timeout",
        "longest a fetch may take, connection, retries and body together",
        default="10s",
        check=positive_duration,
    ),
    Flag(
        "--api.key-file",
        "key_file",
        "file holding the API key (else $EIGHTBYEIGHT_API_KEY_FILE, else $EIGHTBYEIGHT_API_KEY)",
        env="EIGHTBYEIGHT_API_KEY_FILE",
    ),
    Flag(
        "--api.retries",
        "api_retries",
        "retries on connection errors, 429 and 5xx, within the deadline",
        default=2,
        check=between(0, MAX_RETRIES),
        kind="int",
    ),
    # The API's latency, not the exporter's CPU, bounds a scrape of many subaccounts: 64 at a
    # time read 1,000 subaccounts at 200 ms in about 3 s of waiting, and a bound keeps a large
    # configuration from opening a connection per subaccount at once (the API's per-IP limits
    # are not documented).
    Flag(
        "--api.parallel-fetches",
        "parallel_fetches",
        "fetches from the API at once, for all scrapes together: one thread each",
        default=64,
        check=between(1, MAX_PARALLEL_FETCHES),
        kind="int",
    ),
    Flag(
        "--api.max-response-size",
        "max_response_bytes",
        "largest API response accepted",
        default="256MiB",
        check=parse_size,
    ),
    Flag(
        "--subaccount",
        "subaccounts",
        "subaccount to export on /metrics (repeatable; else $EIGHTBYEIGHT_SUBACCOUNTS, "
        "comma-separated)",
        kind="repeated",
        metavar="ID",
        env="EIGHTBYEIGHT_SUBACCOUNTS",
    ),
    Flag(
        "--config.file",
        "config_file",
        "YAML file with subaccounts, their key files and base URLs",
    ),
    Flag(
        "--config.check",
        "config_check",
        "validate the configuration and exit 0 (valid) or 1 (invalid)",
        default=False,
        kind="switch",
    ),
    Flag(
        "--collector.per-number",
        "per_number",
        "export one series per number and attribute",
        default=True,
        kind="toggle",
        default_note="; --no-collector.per-number for aggregates only",
    ),
    Flag(
        "--collector.webhooks",
        "collector_webhooks",
        "also read each configured subaccount's webhook list from the 8x8 API on scrape and "
        "export whether VNU and VSS are enabled (off by default)",
        default=False,
        kind="switch",
    ),
    Flag(
        "--cache.ttl",
        "cache_ttl",
        "serve the last good response for this long without calling the API",
        default="0s",
        check=parse_duration,
        default_note=": call on every scrape",
    ),
    Flag(
        "--cache.serve-stale-for",
        "serve_stale_for",
        "when the API fails, keep serving the last good data this long, with eightbyeight_up 0",
        default="0s",
        check=parse_duration,
        default_note=": off",
    ),
    Flag(
        "--probe.allowed-subaccounts",
        "probe_allowed",
        "comma-separated subaccounts /probe may ask for (default: any valid ID)",
        metavar="IDS",
    ),
    Flag(
        "--log.level",
        "log_level",
        "debug, info, warn or error",
        default="info",
        choices=LEVELS,
    ),
    Flag(
        "--log.format",
        "log_format",
        "logfmt or json",
        default="logfmt",
        choices=FORMATS,
    ),
    Flag(
        "--demo",
        "demo",
        "run against a built-in simulator of the 8x8 API on loopback "
        "(no account needed; never contacts 8x8)",
        default=False,
        kind="switch",
    ),
    Flag(
        "--webhook.listen-address",
        "webhook_listen_address",
        "address of a second listener receiving 8x8 callbacks (VNU, VSS); off by default",
        check=listen_address,
    ),
    Flag(
        "--webhook.path",
        "webhook_path",
        "path 8x8 POSTs callbacks to",
        default="/webhooks/8x8",
        check=url_path("/", "/-/healthy"),
    ),
    Flag(
        "--webhook.auth-header-file",
        "webhook_auth_file",
        "file holding the Authorization value registered at 8x8 as httpAuthHeader "
        "(else $EIGHTBYEIGHT_WEBHOOK_AUTH_HEADER_FILE, else $EIGHTBYEIGHT_WEBHOOK_AUTH_HEADER)",
        env="EIGHTBYEIGHT_WEBHOOK_AUTH_HEADER_FILE",
    ),
    Flag(
        "--webhook.max-body-size",
        "webhook_max_body",
        "largest callback body accepted",
        default="32MiB",
        check=parse_size,
        default_note=": a SNAPSHOT of 100,000 numbers",
    ),
    Flag(
        "--webhook.read-timeout",
        "webhook_read_timeout",
        "longest a callback request, headers and body, may take to arrive from its connection",
        default="10s",
        check=positive_duration,
    ),
    Flag(
        "--webhook.workers",
        "webhook_workers",
        "threads answering callbacks, apart from /metrics'",
        default=4,
        check=between(1, MAX_WORKERS),
        kind="int",
    ),
    Flag(
        "--webhook.max-connections",
        "webhook_max_connections",
        "open connections the callback listener keeps; more are closed at once",
        default=128,
        check=between(1, MAX_CONNECTIONS),
        kind="int",
        default_note=f": with --web.max-connections {_FD_NOTE}",
    ),
    Flag(
        "--webhook.tls-client-auth",
        "webhook_tls_client_auth",
        "client certificates the callback listener asks for when --web.config.file sets TLS: "
        "NoClientCert (8x8 sends none), VerifyClientCertIfGiven or RequireAndVerifyClientCert "
        "(against the web config's client_ca_file); the web config's client_auth_type applies "
        "to /metrics only",
        default="NoClientCert",
        check=client_auth_type,
    ),
    Flag(
        "--balance.account-id",
        "balance_account_id",
        "8x8 account ID (UUID) whose prepaid balance to export; off by default",
    ),
    Flag(
        "--balance.base-url",
        "balance_base_url",
        "base URL of the balance API (regional: https://sms.us.8x8.com, https://sms.8x8.uk, "
        "https://sms.8x8.id)",
        default="https://sms.8x8.com",
        check=base_url,
    ),
    Flag(
        "--balance.interval",
        "balance_interval",
        "read the balance at most this often, whatever the scrape interval",
        default="5m",
        check=balance_interval,
        default_note=", at least 1m",
    ),
)

BY_DEST: dict[str, Flag] = {flag.dest: flag for flag in FLAGS}

# Environment variables that stand for no flag: secrets are never flags, so that they never show
# in the process list.
SECRET_ENVIRONMENT: tuple[tuple[str, str], ...] = (
    ("EIGHTBYEIGHT_API_KEY", "the API key, when no key file is named"),
    (
        "EIGHTBYEIGHT_WEBHOOK_AUTH_HEADER",
        "the Authorization value 8x8 sends with callbacks, when no file is named",
    ),
)
ENV_API_KEY = SECRET_ENVIRONMENT[0][0]
ENV_WEBHOOK_AUTH = SECRET_ENVIRONMENT[1][0]


def flag(dest: str) -> Flag:
    return BY_DEST[dest]


def default(dest: str) -> Any:
    """The default of the flag whose parsed value is `dest`, as the settings hold it."""
    return BY_DEST[dest].parsed_default


def env_of(dest: str) -> str:
    """The environment variable that stands for this flag when it is not given."""
    name = BY_DEST[dest].env
    if name is None:
        raise KeyError(f"{BY_DEST[dest].name} has no environment variable")
    return name


def checked(args: argparse.Namespace, dest: str) -> Any:
    """The parsed flag's value through the flag's own check; ConfigError naming the flag."""
    entry = BY_DEST[dest]
    raw = getattr(args, dest)
    return raw if entry.check is None or raw is None else entry.check(raw, entry.name)


def _argparse_options(entry: Flag, given_only: bool) -> dict[str, Any]:
    options: dict[str, Any] = {"dest": entry.dest, "help": entry.full_help}
    if entry.kind == "switch":
        options["action"] = "store_true"
    elif entry.kind == "toggle":
        options["action"] = argparse.BooleanOptionalAction
    elif entry.kind == "repeated":
        options["action"] = "append"
    elif entry.kind == "int":
        options["type"] = int
    if entry.choices is not None:
        options["choices"] = entry.choices
    if entry.metavar is not None:
        options["metavar"] = entry.metavar
    if given_only:
        options["default"] = argparse.SUPPRESS
    else:
        options["default"] = None if entry.file_first else entry.default
    return options


def add_flags(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    flags: Iterable[Flag] = FLAGS,
    given_only: bool = False,
) -> None:
    """Add the table's flags. `given_only`: only flags on the command line set a value, so that
    a subcommand's parser does not overwrite what was given before the subcommand's name."""
    for entry in flags:
        parser.add_argument(entry.name, **_argparse_options(entry, given_only))


class FlagParser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line, never echoing a value that may be a key."""

    _words: Sequence[str] = ()

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        self._words = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        given = [w.partition("=")[0] for w in self._words if w.startswith("-")]
        prefix = "unrecognized arguments: "
        if KEY_FLAG in given:
            message = (
                f"{KEY_FLAG} is not a flag, so that the key never shows in the process list: "
                "put the key in $EIGHTBYEIGHT_API_KEY, or in a file named by "
                "--api.key-file or $EIGHTBYEIGHT_API_KEY_FILE"
            )
        elif message.startswith(prefix):
            # The words after an unknown flag may be a secret typed where it does not belong:
            # name the unknown flags, never echo their values.
            words = message[len(prefix) :].split()
            flags = [w.partition("=")[0] for w in words if w.startswith("-")]
            message = prefix + (" ".join(flags) if flags else "(values not shown)")
        elif message.startswith("argument command: invalid choice"):
            # A stray word where a command may stand, e.g. the value of an unknown flag.
            message = "unrecognized arguments: " + (
                " ".join(w for w in given if not self._known(w)) or "(values not shown)"
            )
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")

    def _known(self, word: str) -> bool:
        return word in self._option_string_actions


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The parser of the exporter's own flags (`eightbyeight-exporter run`)."""
    parser = FlagParser(
        prog=prog,
        allow_abbrev=False,  # `--api.key` must not silently mean --api.key-file
        description=DESCRIPTION,
    )
    add_flags(parser)
    add_version(parser)
    return parser


def add_version(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", action=_Version, help="show the version and exit")


class _Version(argparse.Action):
    """--version, reading the version only when asked: finding it costs the health check."""

    def __init__(self, option_strings: Sequence[str], dest: str, help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> NoReturn:
        from exporter import __version__

        sys.stdout.write(f"{PROG} {__version__}\n")
        parser.exit()


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _reference_row(entry: Flag) -> str:
    name = f"`{entry.name}`"
    if entry.kind == "toggle":
        name += f", `--no-{entry.name[2:]}`"
    shown = "off" if entry.kind == "switch" else entry.shown_default
    description = entry.help
    if entry.default_note:
        description += f" (`{shown}`{entry.default_note})"
    environment = f"`${entry.env}`" if entry.env else ""
    return f"| {name} | {f'`{shown}`' if shown else ''} | {environment} | {_cell(description)} |"


def reference_page() -> str:
    """docs/flags.md: every flag, its default and environment variable, from the table."""
    lines = [
        "# Flags",
        "",
        "<!-- Generated from exporter/config/flags.py by "
        "`python -m exporter.config.flags > docs/flags.md`; do not edit. -->",
        "",
        f"`{PROG} [run] [FLAGS]` serves the exporter; `run` is the command when none is given.",
        f"`{PROG} healthcheck` asks a running exporter's `/-/healthy` (the container's health "
        f"check), `{PROG} simulate` runs the stand-in 8x8 API. Each lists its own flags with "
        "`--help`.",
        "",
        "Durations are written as Prometheus writes them (`500ms`, `10s`, `1m30s`, `1h`), sizes "
        "with a unit (`1MiB`, `10MB`) or in bytes. A flag that is given wins over its "
        "environment variable.",
        "",
        "| Flag | Default | Environment | Description |",
        "| --- | --- | --- | --- |",
    ]
    lines += [_reference_row(entry) for entry in FLAGS]
    lines += [
        "",
        "## Environment variables without a flag",
        "",
        "Secrets are never flags, so that they never show in the process list.",
        "",
        "| Environment | Description |",
        "| --- | --- |",
        *(f"| `${name}` | {_cell(text)} |" for name, text in SECRET_ENVIRONMENT),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(reference_page())
