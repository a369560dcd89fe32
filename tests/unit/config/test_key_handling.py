"""The API key: read only from the environment or a file, sent only in the Authorization header,
and never shown: not in a log line (at any level, in either format), a metric, an HTTP response,
an error message or a command-line complaint, even when the upstream echoes it back."""

from __future__ import annotations

import subprocess
import sys

import pytest
import requests

from exporter.cli.main import main
from exporter.common.errors import FetchError
from exporter.config.flags import build_parser
from exporter.config.settings import ENV_API_KEY as ENV_KEY
from exporter.config.settings import settings_from_flags
from exporter.config.values import Secret
from exporter.polling.client import ApiClient
from tests.support.exporters import InProcessExporter, exporter_process, parse_samples, value
from tests.support.fake_api import FakeApi, Reply, number, numbers_body
from tests.support.processes import REPO

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


@pytest.mark.slow  # a real process per case: what a user's shell sees
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
    assert main(["--subaccount", "x", "--config.check"]) == 2
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


# Several keys at once: the default key (environment) and one key file per subaccount in the
# config file. (Keys rotated by a reload do not exist yet: the exporter reads keys at start-up.)
DEFAULT_KEY = "sk-default-5b2e8f1c9a7d4e3b-never-shown"
FILE_KEYS = {
    "acme-prod": "sk-prod-0e4a7c2d9f1b8e6a-never-shown",
    "acme-dev": "sk-dev-7d1f3b9e2c5a8d4f-never-shown",
}
ALL_KEYS = (DEFAULT_KEY, *FILE_KEYS.values())


def config_with_key_files(tmp_path) -> str:
    lines = ["subaccounts:"]
    for sub, key in FILE_KEYS.items():
        key_file = tmp_path / f"{sub}.key"
        key_file.write_text(key + "\n")
        lines += [f"  - id: {sub}", f"    api_key_file: {key_file}"]
    lines.append("  - id: acme-test")  # the default key
    path = tmp_path / "config.yml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def echo_the_key(path: str, headers: dict[str, str]) -> Reply:
    """An upstream that quotes back whatever token it was sent, in its error message."""
    token = headers.get("Authorization", "").removeprefix("Bearer ")
    return Reply.json({"statusCode": 401, "statusMessage": f"token {token} is not valid"}, 401)


def test_every_key_is_redacted_from_the_clients_errors(tmp_path):
    with FakeApi(echo_the_key) as api:
        argv = ["--api.base-url", api.base_url, "--config.file", config_with_key_files(tmp_path)]
        settings = settings_from_flags(build_parser().parse_args(argv), {ENV_KEY: DEFAULT_KEY})
        # The log filter is given every key, not only the default one.
        assert {k.reveal() for k in settings.secrets} == set(ALL_KEYS)
        for sub in settings.subaccounts:
            with pytest.raises(FetchError) as caught:
                ApiClient(sub.base_url, sub.api_key, retries=0).fetch_numbers(sub.subaccount)
            assert "<redacted>" in caught.value.detail, sub.subaccount
            for key in ALL_KEYS:
                assert key not in str(caught.value), sub.subaccount
    sent = {headers["Authorization"] for _, headers in api.requests}
    assert sent == {f"Bearer {key}" for key in ALL_KEYS}  # each key was really used


@pytest.mark.slow
@pytest.mark.parametrize("log_format", ["logfmt", "json"])
def test_no_log_line_or_metric_shows_any_of_several_keys(tmp_path, log_format):
    log = tmp_path / "exporter.log"
    with FakeApi(echo_the_key) as api:
        argv = [
            "--api.base-url",
            api.base_url,
            "--config.file",
            config_with_key_files(tmp_path),
            "--log.level",
            "debug",
            "--log.format",
            log_format,
            "--api.retries",
            "0",
        ]
        with exporter_process(argv, {ENV_KEY: DEFAULT_KEY}, log) as (url, _):
            answers = [requests.get(url + "/metrics", timeout=30)]
            answers.append(requests.get(url + "/probe?target=acme-other", timeout=30))
            # Request lines are logged at debug level: a key in one must be redacted too.
            answers += [requests.get(f"{url}/metrics?token={key}", timeout=30) for key in ALL_KEYS]
    samples = parse_samples(answers[0].text)
    for sub in (*FILE_KEYS, "acme-test"):
        assert value(samples, "eightbyeight_up", subaccount=sub) == 0
    sent = {headers["Authorization"] for _, headers in api.requests}
    assert sent == {f"Bearer {key}" for key in ALL_KEYS}
    text = log.read_text()
    assert text.count("reading virtual numbers failed") >= 4
    assert text.count("<redacted>") >= 4 + len(ALL_KEYS)
    for key in ALL_KEYS:
        assert key not in text, f"key {key[:7]}... logged"
        for answer in answers:
            assert key not in answer.text
