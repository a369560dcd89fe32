"""Start-up: every configuration problem is one line on stderr and a non-zero exit.

The command line runs in this process (`main(argv)` with its own environment and captured
output); the tests marked slow run `python -m exporter` to show a real process does the same.
"""

import io
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from unittest import mock

import pytest

from exporter.cli.main import main
from exporter.config.flags import FLAGS, build_parser
from exporter.config.settings import settings_from_flags

KEY = "cli-test-key-0123456789"


def clean_env(env: dict[str, str] | None) -> dict[str, str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("EIGHTBYEIGHT_")}
    full_env.update(env or {})
    return full_env


def run(*args, env=None):
    """`eightbyeight-exporter ARGS` in this process: its exit code, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with (
        mock.patch.dict(os.environ, clean_env(env), clear=True),
        redirect_stdout(out),
        redirect_stderr(err),
    ):
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse: bad flags, --help
            code = exc.code
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


def run_process(*args, env=None, timeout=30):
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args],
        capture_output=True,
        text=True,
        env=clean_env(env),
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def assert_one_line_error(result, *words):
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert KEY not in result.stderr + result.stdout
    for word in words:
        assert word in lines[0]


@pytest.mark.parametrize(
    ("args", "env", "words"),
    [
        (["--no-such-flag"], {}, ["unrecognized arguments: --no-such-flag"]),
        (["--subaccount", "a b"], {"EIGHTBYEIGHT_API_KEY": KEY}, ["invalid subaccount ID 'a b'"]),
        ([], {"EIGHTBYEIGHT_SUBACCOUNTS": "ok-one,x", "EIGHTBYEIGHT_API_KEY": KEY}, ["'x'"]),
        (["--subaccount", "acme-prod"], {}, ["no API key", "EIGHTBYEIGHT_API_KEY"]),
        (
            ["--subaccount", "acme-prod", "--api.key-file", "/nonexistent/key"],
            {},
            ["does not exist"],
        ),
        (["--api.timeout", "soon"], {"EIGHTBYEIGHT_API_KEY": KEY}, ["--api.timeout"]),
        (["--api.timeout", "0s"], {"EIGHTBYEIGHT_API_KEY": KEY}, ["greater than 0"]),
        (["--web.listen-address", "nowhere"], {"EIGHTBYEIGHT_API_KEY": KEY}, ["listen address"]),
        (["--api.base-url", "voice.8x8.com"], {"EIGHTBYEIGHT_API_KEY": KEY}, ["base URL"]),
        (["--log.level", "loud"], {}, ["--log.level"]),
        (["--config.file", "/nonexistent.yml"], {"EIGHTBYEIGHT_API_KEY": KEY}, ["does not exist"]),
        (["--api.max-response-size", "big"], {"EIGHTBYEIGHT_API_KEY": KEY}, ["invalid size"]),
    ],
)
def test_startup_errors_are_one_clear_line(args, env, words):
    assert_one_line_error(run(*args, env=env), *words)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "env", "words"),
    [
        (["--no-such-flag"], {}, ["unrecognized arguments: --no-such-flag"]),
        (["--subaccount", "acme-prod"], {}, ["no API key", "EIGHTBYEIGHT_API_KEY"]),
    ],
)
def test_a_real_process_reports_start_up_errors_in_one_line(args, env, words):
    assert_one_line_error(run_process(*args, env=env), *words)


def test_unreadable_key_file(tmp_path):
    assert_one_line_error(
        run("--subaccount", "acme-prod", "--api.key-file", str(tmp_path)), "is a directory"
    )


def test_key_file_from_environment(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text(KEY)
    result = run(
        "--config.check",
        env={"EIGHTBYEIGHT_API_KEY_FILE": str(key_file), "EIGHTBYEIGHT_SUBACCOUNTS": "a-1,b-2"},
    )
    assert result.returncode == 0, result.stderr
    assert "configuration is valid (2 subaccounts)" in result.stdout


def test_config_check_fails_on_a_bad_file(tmp_path):
    path = tmp_path / "c.yml"
    path.write_text("subaccounts: [{id: 'no way'}]")
    result = run("--config.file", str(path), "--config.check", env={"EIGHTBYEIGHT_API_KEY": KEY})
    assert result.returncode == 2
    assert_one_line_error(result, "subaccounts[0]", "invalid subaccount ID")


def test_config_file_targets_get_their_own_keys(tmp_path):
    own = tmp_path / "own"
    own.write_text("own-key-abc")
    path = tmp_path / "c.yml"
    path.write_text(
        f"subaccounts:\n  - id: acme-prod\n    api_key_file: {own}\n"
        "    base_url: http://127.0.0.1:1\n  - acme-dev\n"
    )
    args = build_parser().parse_args(["--config.file", str(path), "--subaccount", "acme-ops"])
    settings = settings_from_flags(args, {"EIGHTBYEIGHT_API_KEY": KEY})
    prod, dev, ops = settings.subaccounts
    assert (prod.subaccount, prod.api_key.reveal(), prod.base_url) == (
        "acme-prod",
        "own-key-abc",
        "http://127.0.0.1:1",
    )
    assert (dev.api_key.reveal(), dev.base_url) == (KEY, "https://voice.8x8.com")
    assert ops.subaccount == "acme-ops"
    assert KEY not in repr(settings)


def test_flags_override_environment_subaccounts():
    args = build_parser().parse_args(["--subaccount", "flag-sub"])
    env = {"EIGHTBYEIGHT_API_KEY": KEY, "EIGHTBYEIGHT_SUBACCOUNTS": "env-sub"}
    assert [t.subaccount for t in settings_from_flags(args, env).subaccounts] == ["flag-sub"]


def test_no_subaccounts_is_allowed_for_probe_only():
    args = build_parser().parse_args([])
    assert settings_from_flags(args, {"EIGHTBYEIGHT_API_KEY": KEY}).subaccounts == ()


def test_help_lists_every_flag_of_the_table_and_the_commands():
    result = run("--help")
    assert result.returncode == 0
    for entry in FLAGS:
        assert entry.name in result.stdout
        if entry.kind == "toggle":
            assert f"--no-{entry.name[2:]}" in result.stdout
    for command in ("run", "healthcheck", "simulate"):
        assert f"    {command} " in result.stdout
    assert "--version" in result.stdout
