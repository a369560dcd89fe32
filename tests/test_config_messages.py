"""Configuration errors word for word, and the small helpers behind them: the one line an operator
reads must name the file, the place in it and the problem."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from exporter.config import values as config_module
from exporter.config.settings import Settings, SubaccountConfig, load_config_file
from exporter.config.values import (
    ConfigError,
    Secret,
    describe_yaml_error,
    quote_value,
    read_key_file,
    read_yaml_mapping,
)


def error_of(call, *args: object) -> str:
    with pytest.raises(ConfigError) as raised:
        call(*args)
    return str(raised.value)


def write(tmp_path: Path, text: str, name: str = "exporter.yml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_secret_shows_only_a_fixed_placeholder():
    secret = Secret("k-123")
    assert repr(secret) == str(secret) == "Secret('<redacted>')"


def test_secret_equals_only_a_secret_with_the_same_value():
    assert Secret("k") == Secret("k")
    assert Secret("k") != Secret("j")
    assert Secret("k") != "k"
    assert Secret("k") != object()


def test_subaccount_config_is_the_configured_one_or_built_from_defaults():
    own = SubaccountConfig("acme-dev", Secret("dev"), "http://127.0.0.1:2")
    settings = Settings(
        base_url="http://127.0.0.1:9",
        api_key=Secret("default"),
        subaccounts=(SubaccountConfig("acme-prod", None, "http://127.0.0.1:1"), own),
    )
    assert settings.subaccount_config("acme-dev") is own
    assert settings.subaccount_config("acme-ops") == SubaccountConfig(
        "acme-ops", Secret("default"), "http://127.0.0.1:9"
    )


@pytest.mark.parametrize(("length", "shown"), [(58, None), (59, 57)])
def test_quote_value_shortens_past_sixty_characters(length, shown):
    value = "x" * length
    text = repr(value)
    expected = text if shown is None else text[:shown] + "..."
    assert quote_value(value) == expected
    assert len(quote_value(value)) == 60


def test_yaml_error_names_line_column_and_problem(tmp_path):
    path = write(tmp_path, "a: b\n  c: d\n")
    assert error_of(read_yaml_mapping, path) == (
        f"config file {path} is not valid YAML at line 2, column 4: "
        "mapping values are not allowed here"
    )


def test_yaml_error_without_a_place_or_problem():
    assert describe_yaml_error(yaml.YAMLError("x")) == ": invalid YAML"


def test_yaml_file_that_is_a_directory_or_not_utf8(tmp_path):
    assert error_of(read_yaml_mapping, tmp_path) == (
        f"config file {tmp_path} cannot be read: Is a directory"
    )
    path = tmp_path / "bad.yml"
    path.write_bytes(b"a: \xff\xfe\n")
    assert error_of(read_yaml_mapping, path, "web config file") == (
        f"web config file {path} cannot be read: not UTF-8 text"
    )


def test_unknown_key_lists_every_allowed_key(tmp_path):
    path = write(tmp_path, "base_url: http://127.0.0.1:1\nzzz: 1\n")
    assert error_of(load_config_file, path) == (
        f"{path}: unknown key 'zzz' (allowed: api_key_file, base_url, probe, subaccounts)"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("subaccounts: [7]\n", "subaccounts[0] must be a mapping with an 'id'"),
        (
            "subaccounts: [{id: acme-prod, key: x}]\n",
            "subaccounts[0]: unknown key 'key' (allowed: api_key_file, base_url, id)",
        ),
        (
            "subaccounts: [acme-prod, {id: acme-dev, base_url: ftp://x}]\n",
            "subaccounts[1]: invalid API base URL 'ftp://x': expected http(s)://host[:port]",
        ),
        ("probe: [acme-prod]\n", "'probe' must be a mapping"),
        (
            "probe: {allowed: [acme-prod]}\n",
            "probe: unknown key 'allowed' (allowed: allowed_subaccounts)",
        ),
        (
            "probe: {allowed_subaccounts: [acme-prod, x]}\n",
            "probe: invalid subaccount ID 'x': must match ^[A-Za-z0-9\\-._&]{3,50}$",
        ),
    ],
)
def test_config_file_errors_name_the_place(tmp_path, text, message):
    path = write(tmp_path, text)
    assert error_of(load_config_file, path) == f"{path}: {message}"


def test_key_file_under_a_file_cannot_be_read(tmp_path):
    path = write(tmp_path, "k", "key") / "inner"
    assert error_of(read_key_file, path) == f"API key file {path} cannot be read: Not a directory"


def test_key_file_that_stat_may_not_see(tmp_path, monkeypatch):
    path = write(tmp_path, "k", "key")
    real_stat = os.stat

    def refusing_stat(target, *args, **kwargs):
        if str(target) == str(path):
            raise PermissionError(13, "Permission denied")
        return real_stat(target, *args, **kwargs)

    monkeypatch.setattr(config_module.os, "stat", refusing_stat)
    assert error_of(read_key_file, path) == (
        f"API key file {path} is not readable (permission denied)"
    )


@pytest.mark.parametrize(
    ("raised", "problem"),
    [
        (FileNotFoundError(2, "No such file or directory"), "does not exist"),
        (IsADirectoryError(21, "Is a directory"), "is a directory"),
        (PermissionError(13, "Permission denied"), "is not readable (permission denied)"),
        (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), "is not UTF-8 text"),
        (OSError(5, "Input/output error"), "cannot be read: Input/output error"),
    ],
)
def test_key_file_changing_between_check_and_read(tmp_path, monkeypatch, raised, problem):
    # The file is checked with stat, then read: it may be replaced or vanish in between.
    path = write(tmp_path, "k", "key")

    def failing_read(self, *args, **kwargs):
        raise raised

    monkeypatch.setattr(config_module.Path, "read_text", failing_read)
    assert error_of(read_key_file, path) == f"API key file {path} {problem}"


def test_key_file_is_read_as_utf8(tmp_path):
    path = tmp_path / "key"
    path.write_bytes("kéy-ü".encode())
    assert read_key_file(path) == Secret("kéy-ü")
