"""The flag table (exporter/config/flags.py) and the command line built from it: the parser,
the defaults of `Settings` and of the webhook settings, docs/flags.md, and the commands
`run` (also without its name), `healthcheck` and `simulate`.

Also here: Flags into settings, word for word: every refused flag names itself, keys and subaccounts are
merged without duplicates, and the settings carry exactly what the flags said."""

from __future__ import annotations

import argparse
import dataclasses
import io
import os
from contextlib import ExitStack, redirect_stderr, redirect_stdout
from pathlib import Path
from unittest import mock

import pytest

from exporter.cli.main import build_parser as command_parser
from exporter.cli.main import main
from exporter.cli.run import _demo_settings, demo_flags
from exporter.config import flags
from exporter.config.flags import FLAGS, build_parser, default, reference_page
from exporter.config.settings import Settings, settings_from_flags
from exporter.config.values import (
    ConfigError,
    Secret,
    parse_duration,
    parse_listen_address,
    parse_size,
    validate_base_url,
)
from exporter.config.webhooks import WebhookSettings, webhook_settings

REPO = Path(__file__).resolve().parents[3]
KEY = "flags-test-key-0123456789"
ENV = {"EIGHTBYEIGHT_API_KEY": KEY}


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EIGHTBYEIGHT_")}
    with mock.patch.dict(os.environ, clean, clear=True), redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as exc:
            code = exc.code
    return code, out.getvalue(), err.getvalue()


def test_reference_page_is_up_to_date():
    # Rewrite with: python -m exporter.config.flags > docs/flags.md
    assert (REPO / "docs" / "flags.md").read_text() == reference_page()


def test_reference_page_names_every_flag_default_and_variable():
    page = reference_page()
    for entry in FLAGS:
        assert f"`{entry.name}`" in page
        if entry.env:
            assert f"`${entry.env}`" in page
        if entry.shown_default is not None:
            assert f"`{entry.shown_default}`" in page
    for name, _ in flags.SECRET_ENVIRONMENT:
        assert f"`${name}`" in page


def test_each_flag_is_once_in_the_table():
    assert len({e.name for e in FLAGS}) == len({e.dest for e in FLAGS}) == len(FLAGS)


def test_flags_are_prometheus_style():
    for entry in FLAGS:
        assert entry.name.startswith("--"), entry.name
        assert entry.name == entry.name.lower(), entry.name
        assert "_" not in entry.name, entry.name


def test_settings_without_flags_hold_the_table_defaults():
    given = settings_from_flags(build_parser().parse_args([]), ENV)
    declared = Settings()
    for field in dataclasses.fields(Settings):
        if field.name in flags.BY_DEST and default(field.name) is not None:
            expected = default(field.name)
            assert getattr(declared, field.name) == expected, field.name
            assert getattr(given, field.name) == expected, field.name


def test_webhook_settings_without_flags_hold_the_table_defaults():
    args = build_parser().parse_args(["--webhook.listen-address=127.0.0.1:0"])
    given = webhook_settings(args, {"EIGHTBYEIGHT_WEBHOOK_AUTH_HEADER": "Bearer x"}, (), None, True)
    assert given is not None
    declared = WebhookSettings(listen_address="127.0.0.1:0", auth_header=given.auth_header)
    for field, dest in [
        ("path", "webhook_path"),
        ("max_body", "webhook_max_body"),
        ("read_timeout", "webhook_read_timeout"),
        ("workers", "webhook_workers"),
        ("max_connections", "webhook_max_connections"),
    ]:
        assert getattr(given, field) == getattr(declared, field) == default(dest), field


def test_defaults_are_parsed_by_the_flags_own_check():
    assert default("api_timeout") == 10.0
    assert default("max_response_bytes") == 256 * 2**20
    assert default("webhook_max_body") == 32 * 2**20
    assert default("timeout_offset") == 0.5
    assert default("per_number") is True
    assert default("demo") is False
    assert flags.flag("api_timeout").default == "10s"  # as an operator types it


def test_help_shows_each_default_once_as_the_table_writes_it():
    text = build_parser().format_help()
    for entry in FLAGS:
        if entry.shown_default is not None:
            assert f"(default {entry.shown_default}" in " ".join(text.split()), entry.name


@pytest.mark.parametrize(
    "argv",
    [
        ["--web.listen-address=:1", "--log.level=debug"],
        ["run", "--web.listen-address=:1", "--log.level=debug"],
        ["--web.listen-address=:1", "run", "--log.level=debug"],
        ["--log.level=debug", "--web.listen-address=:9", "run", "--web.listen-address=:1"],
    ],
)
def test_run_is_the_command_when_none_is_given(argv):
    args = command_parser().parse_args(argv)
    assert args.command in (None, "run")
    assert (args.listen_address, args.log_level) == (":1", "debug")
    # Every other flag keeps its default, given before `run`, after it, or without it.
    assert args.api_timeout == flags.flag("api_timeout").default
    assert args.per_number is True
    assert args.subaccounts is None


def test_the_same_flags_give_the_same_settings_with_or_without_run():
    plain = settings_from_flags(command_parser().parse_args(["--subaccount=acme-1"]), ENV)
    named = settings_from_flags(command_parser().parse_args(["run", "--subaccount=acme-1"]), ENV)
    assert plain == named


def test_help_lists_the_commands():
    code, out, _ = run("--help")
    assert code == 0
    assert "{run,healthcheck,simulate}" in out
    for command in ("run", "healthcheck", "simulate"):
        assert f"    {command} " in out


def test_each_command_has_its_own_help():
    code, out, _ = run("run", "--help")
    assert code == 0
    assert "usage: eightbyeight-exporter run" in out
    assert "--webhook.path" in out
    code, out, _ = run("healthcheck", "--help")
    assert code == 0
    assert "usage: eightbyeight-exporter healthcheck" in out
    assert "--timeout" in out
    # The simulator's flags are its own parser's, passed through untouched.
    code, out, _ = run("simulate", "--help")
    assert code == 0
    assert "usage: eightbyeight-exporter simulate" in out
    assert "--admin.listen-address" in out


def test_a_run_flag_after_healthcheck_is_the_health_checks_own():
    args = command_parser().parse_args(["healthcheck", "--web.listen-address=127.0.0.1:1"])
    assert (args.command, args.listen_address, args.timeout) == ("healthcheck", "127.0.0.1:1", "4s")


@pytest.mark.parametrize(
    "argv",
    [
        ["--api.key", KEY],
        ["run", "--api.key", KEY],
        [KEY],
        ["--token", KEY],
        ["run", KEY],
    ],
)
def test_a_stray_word_is_refused_without_echoing_it(argv):
    code, out, err = run(*argv)
    assert code == 2
    assert KEY not in out + err
    assert err.count("\n") == 1
    assert err.startswith("eightbyeight-exporter")
    if "--api.key" in argv:
        assert "--api.key is not a flag" in err


def test_unknown_command_like_word_is_named_as_unrecognised():
    code, _, err = run("serve")
    assert code == 2
    assert "unrecognized arguments: (values not shown)" in err


def test_version():
    code, out, _ = run("--version")
    assert code == 0
    assert out.startswith("eightbyeight-exporter ")


def test_demo_flags_are_a_new_value_and_the_parsed_flags_stay_as_given():
    args = build_parser().parse_args(["--demo", "--log.level=debug"])
    before = dict(vars(args))
    demo = demo_flags(args, "http://127.0.0.1:9")
    assert vars(args) == before
    assert demo is not args
    assert (demo.base_url, demo.subaccounts) == ("http://127.0.0.1:9", ["demo-apac", "demo-emea"])
    assert demo.webhook_listen_address == "127.0.0.1:0"
    assert demo.log_level == "debug"


def test_demo_settings_leave_the_parsed_flags_alone():
    args = build_parser().parse_args(["--demo"])
    before = dict(vars(args))
    with ExitStack() as stack:
        load, simulator = _demo_settings(args, stack)
        settings = load()
        assert settings.base_url == simulator.base_url
    assert vars(args) == before


def test_demo_refuses_the_flags_it_would_replace():
    args = build_parser().parse_args(["--demo", "--subaccount=acme-1", "--config.file=x.yml"])
    with ExitStack() as stack, pytest.raises(ConfigError) as caught:
        _demo_settings(args, stack)
    assert str(caught.value) == (
        "--demo runs against its own simulator and cannot be combined with --subaccount, "
        "--config.file"
    )


def test_a_given_only_parser_sets_nothing_not_given():
    parser = argparse.ArgumentParser()
    flags.add_flags(parser, given_only=True)
    assert vars(parser.parse_args(["--cache.ttl=1m"])) == {"cache_ttl": "1m"}


# --- Flags into settings, word for word: every refused flag names itself, keys and subaccounts are ----------

ENV_EXACT = {"EIGHTBYEIGHT_API_KEY": "default-key"}


def settings(*argv: str, env: dict[str, str] | None = None):
    return settings_from_flags(
        build_parser().parse_args(list(argv)), ENV_EXACT if env is None else env
    )


def refused(*argv: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        settings(*argv, env=env)
    return str(caught.value)


@pytest.mark.parametrize("path", ["/probe", "/", "metrics"])
def test_telemetry_path_refused(path):
    assert refused("--web.telemetry-path", path) == f"invalid --web.telemetry-path {path!r}"


def test_telemetry_path_accepted():
    assert settings("--web.telemetry-path", "/x").telemetry_path == "/x"


@pytest.mark.parametrize(
    ("retries", "ok"), [("-1", False), ("0", True), ("10", True), ("11", False)]
)
def test_api_retries_bounds(retries, ok):
    if ok:
        assert settings("--api.retries", retries).api_retries == int(retries)
    else:
        assert refused("--api.retries", retries) == "--api.retries must be between 0 and 10"


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        (
            "--api.timeout",
            "x",
            "invalid duration for --api.timeout: 'x' (examples: 10s, 500ms, 1m30s, 1h, 1d)",
        ),
        ("--api.timeout", "0s", "--api.timeout must be greater than 0"),
        (
            "--cache.ttl",
            "x",
            "invalid duration for --cache.ttl: 'x' (examples: 10s, 500ms, 1m30s, 1h, 1d)",
        ),
        (
            "--cache.serve-stale-for",
            "x",
            "invalid duration for --cache.serve-stale-for: 'x' (examples: 10s, 500ms, 1m30s, 1h, 1d)",
        ),
        (
            "--web.timeout-offset",
            "x",
            "invalid duration for --web.timeout-offset: 'x' (examples: 10s, 500ms, 1m30s, 1h, 1d)",
        ),
        (
            "--api.max-response-size",
            "x",
            "invalid size for --api.max-response-size: 'x' (examples: 64MiB, 10000000)",
        ),
    ],
)
def test_bad_values_name_their_flag(flag, value, message):
    assert refused(flag, value, "--subaccount", "acme-prod") == message


def test_settings_carry_what_the_flags_said():
    s = settings(
        "--subaccount",
        "acme-prod",
        "--api.timeout",
        "3s",
        "--cache.ttl",
        "1m",
        "--cache.serve-stale-for",
        "2m",
        "--web.timeout-offset",
        "250ms",
        "--api.max-response-size",
        "1KiB",
        "--log.level",
        "debug",
        "--log.format",
        "json",
    )
    assert (s.api_timeout, s.cache_ttl, s.serve_stale_for, s.timeout_offset) == (3, 60, 120, 0.25)
    assert s.max_response_bytes == 1024
    assert (s.log_level, s.log_format, s.web_config) == ("debug", "json", None)


def test_no_key_at_all_is_refused_even_without_subaccounts():
    assert refused(env={}) == (
        "no API key: set EIGHTBYEIGHT_API_KEY, EIGHTBYEIGHT_API_KEY_FILE or --api.key-file"
    )


def test_no_key_for_a_subaccount_names_it():
    assert refused("--subaccount", "acme-prod", env={}) == (
        "no API key for subaccount acme-prod: set EIGHTBYEIGHT_API_KEY, "
        "EIGHTBYEIGHT_API_KEY_FILE or --api.key-file"
    )


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_file_settings_fill_in_what_the_flags_leave_out(tmp_path):
    key = write(tmp_path, "key", "file-key")
    config = write(
        tmp_path,
        "exporter.yml",
        f"base_url: http://127.0.0.1:7\napi_key_file: {key}\nsubaccounts: [acme-prod]\n",
    )
    s = settings(
        "--config.file",
        str(config),
        "--subaccount",
        "acme-prod",
        "--subaccount",
        "acme-dev",
        env={},
    )
    assert s.base_url == "http://127.0.0.1:7"
    assert s.api_key == Secret("file-key")
    assert [(c.subaccount, c.api_key) for c in s.subaccounts] == [
        ("acme-prod", Secret("file-key")),
        ("acme-dev", Secret("file-key")),
    ]


def test_a_subaccount_named_twice_is_scraped_once():
    s = settings("--subaccount", "acme-prod", "--subaccount", "acme-prod")
    assert [c.subaccount for c in s.subaccounts] == ["acme-prod"]


def test_secrets_hold_every_key_and_only_keys(tmp_path):
    own = write(tmp_path, "own", "own-key")
    config = write(
        tmp_path, "exporter.yml", f"subaccounts: [{{id: acme-prod, api_key_file: {own}}}]\n"
    )
    with_default = settings("--config.file", str(config))
    assert set(with_default.secrets) == {Secret("own-key"), Secret("default-key")}
    without_default = settings("--config.file", str(config), env={})
    assert list(without_default.secrets) == [Secret("own-key")]


@pytest.mark.parametrize(
    ("address", "parsed"),
    [
        (":9881", ("", 9881)),
        ("[::1]:9881", ("::1", 9881)),
        ("localhost:65535", ("localhost", 65535)),
        ("[::]:0", ("::", 0)),
        ("a]:1", ("a]", 1)),  # only a bracketed host loses its brackets
    ],
)
def test_listen_address(address, parsed):
    assert parse_listen_address(address) == parsed


@pytest.mark.parametrize("address", ["9881", "a:", "x:abc", ":65536", "[::1]"])
def test_bad_listen_address(address):
    with pytest.raises(ConfigError) as caught:
        parse_listen_address(address)
    assert str(caught.value) == f"invalid listen address {address!r}: expected [host]:port"


def test_base_url_loses_only_trailing_slashes():
    assert validate_base_url("http://127.0.0.1:1/pathX//") == "http://127.0.0.1:1/pathX"


def test_negative_duration_message():
    with pytest.raises(ConfigError) as caught:
        parse_duration(-1, "--x")
    assert str(caught.value) == "invalid duration for --x: must not be negative"


def test_one_byte_is_a_size():
    assert parse_size("1", "--x") == 1


def test_per_number_and_web_config_reach_the_settings(tmp_path):
    web = write(tmp_path, "web.yml", "http_server_config:\n  headers:\n    X-Frame-Options: deny\n")
    s = settings("--no-collector.per-number", "--web.config.file", str(web))
    assert s.per_number is False
    assert s.web_config is not None
    assert settings().per_number is True
