"""The API key: read only from the environment or a file, sent only in the Authorization header,
and never shown: not in a log line (at any level, in either format), a metric, an HTTP response,
an error message or a command-line complaint, even when the upstream echoes it back."""

from __future__ import annotations

import subprocess
import sys

import pytest
import requests

from exporter.cli import build_parser, main
from exporter.config import Secret, settings_from_flags
from tests.harness import (
    REPO,
    FakeApi,
    InProcessExporter,
    Reply,
    exporter_process,
    number,
    numbers_body,
    parse_samples,
    value,
)

KEY = "sk-live-3f9c1d7e8a2b4c6d-never-shown"
SUB = "acme-prod"


def run_cli(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "exporter", *argv],
        env={"PATH": "/usr/bin:/bin", **(env or {})},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["--api.key", KEY],
        [f"--api.key={KEY}"],
        ["--api-key", KEY],
        ["--key", KEY],
        [KEY],
        ["--subaccount", SUB, "--token", KEY],
    ],
)
def test_a_key_on_the_command_line_is_refused_without_echoing_it(argv):
    result = run_cli(*argv)
    assert result.returncode == 2
    assert KEY not in result.stderr + result.stdout
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr


def test_key_file_flag_is_not_abbreviable():
    # With abbreviations, `--api.key KEY` would be read as --api.key-file and the key printed
    # back as a missing file name.
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--api.key", KEY])


def test_key_from_the_environment_reaches_only_the_authorization_header():
    with (
        FakeApi() as api,
        InProcessExporter(
            ["--api.base-url", api.base_url, "--subaccount", SUB], api_key=KEY
        ) as exp,
    ):
        answer = exp.get()
        landing = exp.get("/")
        probe = exp.get("/probe?target=acme-dev")
    path, headers = api.requests[0]
    assert headers["Authorization"] == f"Bearer {KEY}"
    assert KEY not in path
    for text in (answer.text, landing.text, probe.text):
        assert KEY not in text


def test_key_from_a_file_is_read_and_trimmed(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text(f"  {KEY}\n")
    with FakeApi() as api:
        args = build_parser().parse_args(
            ["--api.base-url", api.base_url, "--subaccount", SUB, "--api.key-file", str(key_file)]
        )
        settings = settings_from_flags(args, {})
        assert settings.api_key == Secret(KEY)
        assert KEY not in repr(settings)
        assert KEY not in str(settings.api_key)


def test_config_check_never_prints_the_key(capsys, monkeypatch):
    monkeypatch.setenv("EIGHTBYEIGHT_API_KEY", KEY)
    assert main(["--subaccount", SUB, "--config.check"]) == 0
    assert main(["--subaccount", "x", "--config.check"]) == 1
    out = capsys.readouterr()
    assert KEY not in out.out + out.err


@pytest.mark.slow
@pytest.mark.parametrize("log_format", ["logfmt", "json"])
def test_debug_logs_and_responses_never_carry_the_key(tmp_path, log_format):
    echo = f"Bearer {KEY} is not a valid token"
    replies = [
        Reply.json(numbers_body([number()])),
        Reply.json({"statusCode": 401, "statusMessage": echo}, 401),
        Reply.json({"statusCode": 401, "statusMessage": echo}),  # an error envelope in a 200
        Reply.json({"code": 1403, "message": echo}, 403),
        Reply(500, f"<html>{echo}</html>".encode()),
        Reply(200, f'{{"numbers": [{{"msisdn": "{KEY}"'.encode(), reset_after=20),
        Reply.json(numbers_body([number()]), delay=3),
    ]
    log = tmp_path / "exporter.log"
    with FakeApi() as api:
        argv = [
            "--api.base-url",
            api.base_url,
            "--subaccount",
            SUB,
            "--log.level",
            "debug",
            "--log.format",
            log_format,
            "--api.retries",
            "1",
        ]
        with exporter_process(argv, {"EIGHTBYEIGHT_API_KEY": KEY}, log) as (url, _):
            for reply in replies:
                api.reply = reply
                for path in ("/metrics", "/probe?target=acme-dev", "/", "/-/healthy"):
                    answer = requests.get(
                        url + path,
                        headers={"X-Prometheus-Scrape-Timeout-Seconds": "1.5"},
                        timeout=10,
                    )
                    assert KEY not in answer.text
                    assert all(KEY not in v for v in answer.headers.values())
            api.reply = replies[0]  # the last reply above answers late on purpose
            samples = parse_samples(requests.get(url + "/metrics", timeout=10).text)
    assert value(samples, "eightbyeight_up", subaccount=SUB) is not None
    text = log.read_text()
    assert "reading virtual numbers failed" in text  # the failures were logged...
    assert "<redacted>" in text  # ...with the echoed key replaced
    assert KEY not in text
    assert KEY[:12] not in text  # not even a recognisable piece of it
