"""Flags into settings, word for word: every refused flag names itself, keys and subaccounts are
merged without duplicates, and the settings carry exactly what the flags said."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.config.flags import build_parser
from exporter.config.settings import settings_from_flags
from exporter.config.values import (
    ConfigError,
    Secret,
    parse_duration,
    parse_listen_address,
    parse_size,
    validate_base_url,
)

ENV = {"EIGHTBYEIGHT_API_KEY": "default-key"}


def settings(*argv: str, env: dict[str, str] | None = None):
    return settings_from_flags(build_parser().parse_args(list(argv)), ENV if env is None else env)


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
