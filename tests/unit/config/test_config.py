"""Configuration file, key files, durations and sizes.

Also here: Configuration errors word for word, and the small helpers behind them: the one line an operator
reads must name the file, the place in it and the problem."""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

import pytest
import yaml

from exporter.config import values as config_module
from exporter.config.settings import Settings, SubaccountConfig, load_config_file
from exporter.config.values import (
    ConfigError,
    Secret,
    describe_yaml_error,
    parse_duration,
    parse_size,
    quote_value,
    read_key_file,
    read_yaml_mapping,
    validate_subaccount,
)


@pytest.fixture
def key_file(tmp_path):
    path = tmp_path / "key"
    path.write_text("file-key-123\n")
    return path


def write(tmp_path, text, name="config.yml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_full_config_file(tmp_path, key_file):
    path = write(
        tmp_path,
        f"""
base_url: https://voice.example.test/
api_key_file: {key_file}
subaccounts:
  - id: acme-prod
    api_key_file: {key_file}
    base_url: http://127.0.0.1:9882
  - id: acme&dev
  - acme.test
probe:
  allowed_subaccounts: [acme-prod]
""",
    )
    config = load_config_file(path)
    assert config.base_url == "https://voice.example.test"
    assert config.api_key == Secret("file-key-123")
    assert config.subaccounts == (
        ("acme-prod", Secret("file-key-123"), "http://127.0.0.1:9882"),
        ("acme&dev", None, None),
        ("acme.test", None, None),
    )
    assert config.probe_allowed == ("acme-prod",)


def test_empty_config_file_is_valid(tmp_path):
    assert load_config_file(write(tmp_path, "")).subaccounts == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("subaccounts: [", "not valid YAML at line"),
        ("- a\n- b\n", "must be a YAML mapping"),
        ("subaccount: []", "unknown key 'subaccount'"),
        ("subaccounts: acme", "'subaccounts' must be a list"),
        ("subaccounts: [{key_file: x}]", "unknown key 'key_file'"),
        ("subaccounts: [{base_url: http://x}]", "has no 'id'"),
        ("subaccounts: [{id: 'a b'}]", "invalid subaccount ID 'a b'"),
        ("subaccounts: [{id: ab}]", "invalid subaccount ID 'ab'"),
        ("subaccounts: [acme-prod, acme-prod]", "listed twice"),
        ("subaccounts: [{id: acme-prod, base_url: 'ftp://x'}]", "invalid API base URL"),
        ("subaccounts: [{id: acme-prod, api_key_file: /nonexistent/key}]", "does not exist"),
        ("probe: {allowed_subaccounts: acme}", "must be a list"),
        ("probe: {allowed: [acme]}", "unknown key 'allowed'"),
        # Unknown keys after known ones: every key is checked, not the first.
        ("base_url: https://x.test\nsubaccount: []", "unknown key 'subaccount'"),
        ("subaccounts: [{id: acme-prod, key_file: x}]", "unknown key 'key_file'"),
        ("probe: {allowed_subaccounts: [acme-prod], allowed: [x]}", "unknown key 'allowed'"),
    ],
)
def test_bad_config_file_names_the_problem(tmp_path, text, message):
    with pytest.raises(ConfigError) as caught:
        load_config_file(write(tmp_path, text))
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "unknown"),
    [
        ("base_url: https://x.test\nzeta: 1\nsubaccounts: []\nalpha: 2", {"zeta", "alpha"}),
        ("subaccounts: [{id: acme-prod, url: x, key: y}]", {"url", "key"}),
        ("probe: {allowed_subaccounts: [acme-prod], deny: [a], allow: [b]}", {"deny", "allow"}),
    ],
)
def test_several_unknown_keys_are_refused(tmp_path, text, unknown):
    with pytest.raises(ConfigError) as caught:
        load_config_file(write(tmp_path, text))
    named = re.search(r"unknown key '(\w+)'", str(caught.value))
    assert named is not None, str(caught.value)
    assert named.group(1) in unknown, str(caught.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config_file(tmp_path / "nope.yml")


def test_key_file_problems(tmp_path):
    empty = write(tmp_path, "  \n", "empty")
    with pytest.raises(ConfigError, match="is empty"):
        read_key_file(empty)
    with pytest.raises(ConfigError, match="is a directory"):
        read_key_file(tmp_path)
    two = write(tmp_path, "one two", "two")
    with pytest.raises(ConfigError, match="more than one word"):
        read_key_file(two)
    with pytest.raises(ConfigError, match="is a device, not a regular file"):
        read_key_file("/dev/null")


def test_key_file_that_is_a_named_pipe_is_refused_without_waiting(tmp_path):
    # Opening a FIFO blocks until a writer comes: the file must be refused before it is opened.
    fifo = tmp_path / "key"
    os.mkfifo(fifo)
    outcome: list[BaseException | object] = []

    def read() -> None:
        try:
            outcome.append(read_key_file(fifo))
        except ConfigError as exc:
            outcome.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=5)
    if reader.is_alive():
        # Release the blocked reader: a writer that opens and closes the pipe at once.
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        reader.join(timeout=5)
        pytest.fail("read_key_file blocked on a named pipe")
    assert len(outcome) == 1
    assert isinstance(outcome[0], ConfigError), outcome
    message = str(outcome[0])
    assert message == f"API key file {fifo} is a named pipe, not a regular file"


def test_unreadable_key_file_is_named(tmp_path, monkeypatch):
    # Root reads any file whatever its mode (and CI runs as root): the refusal the kernel gives
    # a non-root reader is made here for every user, so the case never goes untested.
    locked = write(tmp_path, "k", "locked")
    locked.chmod(0)
    real_read_text = Path.read_text

    def refuse(self, *args, **kwargs):
        if self == locked:
            raise PermissionError(13, "Permission denied", str(self))
        return real_read_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", refuse)
    with pytest.raises(ConfigError) as caught:
        read_key_file(locked)
    assert str(caught.value) == f"API key file {locked} is not readable (permission denied)"


def test_secret_never_shows_itself():
    secret = Secret("hunter2-key")
    assert "hunter2" not in repr(secret)
    assert "hunter2" not in str(secret)
    assert "hunter2" not in f"{secret} {[secret]}"
    assert secret.reveal() == "hunter2-key"


@pytest.mark.parametrize(
    ("text", "seconds"), [("10s", 10), ("500ms", 0.5), ("1m", 60), ("1.5", 1.5), (3, 3)]
)
def test_durations(text, seconds):
    assert parse_duration(text, "x") == seconds


@pytest.mark.parametrize("text", ["ten", "-1s", "10 parsecs", "", True])
def test_bad_durations(text):
    with pytest.raises(ConfigError, match="invalid duration for x"):
        parse_duration(text, "x")


@pytest.mark.parametrize(
    ("text", "size"), [("256MiB", 256 * 2**20), ("10MB", 10**7), ("1000", 1000)]
)
def test_sizes(text, size):
    assert parse_size(text, "x") == size


@pytest.mark.parametrize("text", ["0", "lots", "-5MiB", "1.5GiB"])
def test_bad_sizes(text):
    with pytest.raises(ConfigError, match="invalid size"):
        parse_size(text, "x")


@pytest.mark.parametrize("good", ["abc", "a&b", "A-Z.0_9", "x" * 50])
def test_valid_subaccounts(good):
    assert validate_subaccount(good) == good


@pytest.mark.parametrize("bad", ["ab", "x" * 51, "a b", "a/b", "a%26b", "ä-b-c", "", "abc\n"])
def test_invalid_subaccounts(bad):
    with pytest.raises(ConfigError, match="invalid subaccount ID"):
        validate_subaccount(bad)


# --- Configuration errors word for word, and the small helpers behind them: the one line an operator ----------


def error_of(call, *args: object) -> str:
    with pytest.raises(ConfigError) as raised:
        call(*args)
    return str(raised.value)


def write_messages(tmp_path: Path, text: str, name: str = "exporter.yml") -> Path:
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
    path = write_messages(tmp_path, "a: b\n  c: d\n")
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
    path = write_messages(tmp_path, "base_url: http://127.0.0.1:1\nzzz: 1\n")
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
    path = write_messages(tmp_path, text)
    assert error_of(load_config_file, path) == f"{path}: {message}"


def test_key_file_under_a_file_cannot_be_read(tmp_path):
    path = write_messages(tmp_path, "k", "key") / "inner"
    assert error_of(read_key_file, path) == f"API key file {path} cannot be read: Not a directory"


def test_key_file_that_stat_may_not_see(tmp_path, monkeypatch):
    path = write_messages(tmp_path, "k", "key")
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
    path = write_messages(tmp_path, "k", "key")

    def failing_read(self, *args, **kwargs):
        raise raised

    monkeypatch.setattr(config_module.Path, "read_text", failing_read)
    assert error_of(read_key_file, path) == f"API key file {path} {problem}"


def test_key_file_is_read_as_utf8(tmp_path):
    path = tmp_path / "key"
    path.write_bytes("kéy-ü".encode())
    assert read_key_file(path) == Secret("kéy-ü")
