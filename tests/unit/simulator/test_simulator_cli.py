"""The standalone simulator (`python -m exporter.simulator`, `cli.main`): starts, serves, takes
faults from a scenario file and the admin API, stops cleanly on SIGTERM; bad flags give one
clean line and a non-zero exit, never a traceback or the API key."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import requests

from exporter.simulator import list_body
from exporter.simulator.cli import main
from tests.support.processes import REPO, free_port, running_process

PROG = "python -m exporter.simulator"
KEY = "cli-secret-key-9f2"


def simulator_argv(*flags: str) -> list[str]:
    return [sys.executable, "-m", "exporter.simulator", *flags]


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EIGHTBYEIGHT_")}
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


@pytest.mark.slow
def test_standalone_serves_scenario_and_admin_then_stops_cleanly(tmp_path):
    port = free_port()
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text("subaccounts:\n  acme-prod:\n    remove: 5\n")
    log_path = tmp_path / "simulator.log"
    base = f"http://127.0.0.1:{port}"
    argv = simulator_argv(
        f"--web.listen-address=127.0.0.1:{port}",
        "--subaccount=acme-prod=30",
        "--subaccount=a&b",
        "--numbers=20",
        f"--api-key-file={key_file}",
        f"--scenario.file={scenario}",
        "--seed=3",
        "--log.level=debug",
    )
    auth = {"Authorization": f"Bearer {KEY}"}
    with running_process(
        argv, f"{base}/admin/healthy", env=child_env(), cwd=REPO, log_path=log_path
    ) as proc:
        prod = requests.get(
            f"{base}/api/v1/subaccounts/acme-prod/numbers", headers=auth, timeout=10
        )
        assert prod.status_code == 200
        assert prod.json()["totalNumbers"] == 25
        expected = list_body(3, "acme-prod", 30, 0, base)["numbers"][:25]
        assert [r["msisdn"] for r in prod.json()["numbers"]] == [r["msisdn"] for r in expected]
        amp = requests.get(f"{base}/api/v1/subaccounts/a%26b/numbers", headers=auth, timeout=10)
        assert amp.json()["totalNumbers"] == 20
        wrong = requests.get(f"{base}/api/v1/subaccounts/acme-prod/numbers", timeout=10)
        assert wrong.status_code == 401
        put = requests.put(f"{base}/admin/faults", json={"status": 503}, timeout=10)
        assert put.status_code == 200
        faulted = requests.get(f"{base}/api/v1/subaccounts/a%26b/numbers", headers=auth, timeout=10)
        assert faulted.status_code == 503
        stats = requests.get(f"{base}/admin/stats", timeout=10).json()
        assert stats["subaccounts"]["acme-prod"]["list"] == 2
    assert proc.returncode == 0
    log = log_path.read_text()
    assert "simulator listening" in log
    assert "simulator stopped" in log
    assert "level=debug" in log
    assert "Traceback" not in log
    assert KEY not in log


@pytest.mark.slow
def test_key_from_environment_and_separate_admin_listener(tmp_path):
    port, admin_port = free_port(), free_port()
    argv = simulator_argv(
        f"--web.listen-address=127.0.0.1:{port}", f"--admin.listen-address=127.0.0.1:{admin_port}"
    )
    admin = f"http://127.0.0.1:{admin_port}/admin"
    with running_process(
        argv,
        f"{admin}/healthy",
        env=child_env(EIGHTBYEIGHT_API_KEY=KEY),
        cwd=REPO,
        log_path=tmp_path / "log",
    ):
        url = f"http://127.0.0.1:{port}/api/v1/subaccounts/demo/numbers"
        body = requests.get(url, headers={"Authorization": f"Bearer {KEY}"}, timeout=10).json()
        assert body["totalNumbers"] == 60
        assert requests.get(f"http://127.0.0.1:{port}/admin/healthy", timeout=10).status_code == 404
        assert requests.get(f"{admin}/faults", timeout=10).json() == {
            "global": {},
            "subaccounts": {},
        }


def bad_cases(tmp_path):
    empty_key = tmp_path / "empty-key"
    empty_key.write_text("\n")
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("global: [unclosed\n")
    bad_fault = tmp_path / "bad-fault.yaml"
    bad_fault.write_text("global:\n  status: 200\n")
    key = f"--api-key={KEY}"
    return {
        "unknown-flag": ([key, "--web.listen"], "unrecognized arguments"),
        "bad-address": ([key, "--web.listen-address=localhost"], "--web.listen-address"),
        "bad-port": ([key, "--web.listen-address=127.0.0.1:99999"], "--web.listen-address"),
        "bad-subaccount": ([key, "--subaccount=a b"], "--subaccount"),
        "bad-count": ([key, "--subaccount=acme=lots"], "--subaccount"),
        "bad-numbers": ([key, "--numbers=many"], "--numbers"),
        "negative-numbers": ([key, "--numbers=-1"], "--numbers"),
        "no-key": ([], "an API key is required"),
        "both-keys": ([key, f"--api-key-file={empty_key}"], "only one of"),
        "missing-key-file": ([f"--api-key-file={tmp_path / 'nope'}"], "cannot read"),
        "empty-key-file": ([f"--api-key-file={empty_key}"], "is empty"),
        "missing-scenario": ([key, f"--scenario.file={tmp_path / 'nope.yaml'}"], "cannot read"),
        "invalid-yaml": ([key, f"--scenario.file={bad_yaml}"], "invalid YAML at line"),
        "invalid-fault": ([key, f"--scenario.file={bad_fault}"], "scenario.global.status"),
        "bad-log-level": ([key, "--log.level=loud"], "--log.level"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "unknown-flag",
        "bad-address",
        "bad-port",
        "bad-subaccount",
        "bad-count",
        "bad-numbers",
        "negative-numbers",
        "no-key",
        "both-keys",
        "missing-key-file",
        "empty-key-file",
        "missing-scenario",
        "invalid-yaml",
        "invalid-fault",
        "bad-log-level",
    ],
)
def test_bad_flags_give_one_line_and_exit_2(case, tmp_path, capsys, monkeypatch):
    for name in [k for k in os.environ if k.startswith("EIGHTBYEIGHT_")]:
        monkeypatch.delenv(name)
    argv, mention = bad_cases(tmp_path)[case]
    assert main(argv, prog=PROG) == 2
    out, err = capsys.readouterr()
    assert_one_line_error(err, mention)
    assert out == ""


@pytest.mark.slow
@pytest.mark.parametrize("case", ["unknown-flag", "invalid-fault"])
def test_a_real_process_gives_one_line_and_exit_2(case, tmp_path):
    argv, mention = bad_cases(tmp_path)[case]
    result = subprocess.run(
        simulator_argv(*argv),
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(),
        cwd=REPO,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert_one_line_error(result.stderr, mention)
    assert result.stdout == ""


def assert_one_line_error(stderr: str, mention: str) -> None:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"{PROG}: error: ")
    assert mention in lines[0]
    assert KEY not in stderr


def test_address_in_use_gives_one_line_and_exit_1():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            simulator_argv(f"--web.listen-address=127.0.0.1:{port}", f"--api-key={KEY}"),
            capture_output=True,
            text=True,
            timeout=60,
            env=child_env(),
            cwd=REPO,
            check=False,
        )
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "cannot listen" in lines[0]
    assert "Traceback" not in result.stderr


def test_main_as_called_by_the_exporter_cli(capsys):
    assert main(["--help"]) == 0
    assert "--web.listen-address" in capsys.readouterr().out
    assert main(["--numbers=x", f"--api-key={KEY}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("eightbyeight-exporter simulate: error: ")
    assert err.count("\n") == 1
