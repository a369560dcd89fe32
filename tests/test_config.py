"""Configuration file, key files, durations and sizes."""

import os
import re
import threading
from pathlib import Path

import pytest

from exporter.config.settings import load_config_file
from exporter.config.values import (
    ConfigError,
    Secret,
    parse_duration,
    parse_size,
    read_key_file,
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
