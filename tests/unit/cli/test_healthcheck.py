"""`eightbyeight-exporter healthcheck`: finding the running exporter's address and TLS, and
asking its /-/healthy: exporters in this process for the fast tests, real exporter processes
(plain and TLS) for the slow ones, all on free loopback ports."""

from __future__ import annotations

import subprocess
import sys

import pytest
import requests

from exporter.cli.healthcheck import (
    Endpoint,
    endpoint,
    exporter_args,
    running_exporter,
    running_exporter_args,
    served_flags,
)
from exporter.cli.main import main
from tests.support.exporters import InProcessExporter, exporter_process
from tests.support.processes import free_port


@pytest.mark.parametrize(
    ("cmdline", "expected"),
    [
        (["/usr/local/bin/python", "/usr/local/bin/eightbyeight-exporter", "--demo"], ["--demo"]),
        (["eightbyeight-exporter"], []),
        (["eightbyeight-exporter", "run", "--demo"], ["--demo"]),
        (
            ["python3", "-m", "exporter", "--web.listen-address=:9443"],
            ["--web.listen-address=:9443"],
        ),
        (["python", "/usr/local/bin/eightbyeight-exporter", "simulate", "--seed=1"], None),
        (["python", "/usr/local/bin/eightbyeight-exporter", "healthcheck"], None),
        (["/usr/bin/prometheus", "--config.file=x"], None),
        (["python3", "-m", "exporter.simulator"], None),
    ],
)
def test_exporter_args_recognises_only_a_serving_exporter(cmdline, expected):
    assert exporter_args(cmdline) == expected


def test_running_exporter_args_prefers_pid_1(tmp_path):
    for pid, words in {
        "1": ["python", "/usr/local/bin/eightbyeight-exporter", "--web.listen-address=:1111"],
        "7": ["python", "/usr/local/bin/eightbyeight-exporter", "--web.listen-address=:7777"],
        "self": ["ignored"],
    }.items():
        (tmp_path / pid).mkdir()
        (tmp_path / pid / "cmdline").write_bytes(b"\0".join(w.encode() for w in words) + b"\0")
    assert running_exporter_args(tmp_path) == ["--web.listen-address=:1111"]


def test_running_exporter_args_finds_it_behind_an_init_process(tmp_path):
    for pid, words in {
        "1": ["/sbin/tini", "--"],
        "12": ["eightbyeight-exporter", "--demo"],
    }.items():
        (tmp_path / pid).mkdir()
        (tmp_path / pid / "cmdline").write_bytes(b"\0".join(w.encode() for w in words))
    (tmp_path / "30").mkdir()  # a process that exited between listing and reading
    assert running_exporter_args(tmp_path) == ["--demo"]
    assert running_exporter_args(tmp_path / "30") is None


def test_running_exporter_reports_its_working_directory(tmp_path):
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "cmdline").write_bytes(b"eightbyeight-exporter\0--web.config.file=w.yml\0")
    (tmp_path / "1" / "cwd").symlink_to(tmp_path)
    (tmp_path / "2").mkdir()
    (tmp_path / "2" / "cmdline").write_bytes(b"eightbyeight-exporter\0")
    assert running_exporter(tmp_path) == (["--web.config.file=w.yml"], tmp_path)
    (tmp_path / "1" / "cwd").unlink()  # not ours to see
    assert running_exporter(tmp_path) == (["--web.config.file=w.yml"], None)


def test_served_flags_parse_like_the_exporter():
    assert served_flags(["--demo"]) == (":9881", None)
    assert served_flags(["--web.listen-address", "[::]:9443", "--web.config.file=/w.yml"]) == (
        "[::]:9443",
        "/w.yml",
    )
    assert served_flags([]) == (":9881", None)


@pytest.mark.parametrize(
    ("listen", "url"),
    [
        (":9881", "http://127.0.0.1:9881/-/healthy"),
        ("0.0.0.0:9000", "http://127.0.0.1:9000/-/healthy"),
        ("[::]:9000", "http://[::1]:9000/-/healthy"),
        ("10.1.2.3:9000", "http://10.1.2.3:9000/-/healthy"),
        ("localhost:9000", "http://localhost:9000/-/healthy"),
    ],
)
def test_a_wildcard_listen_address_is_asked_on_loopback(listen, url):
    assert endpoint(listen, None).url == url


def test_a_web_config_with_tls_means_https(pki, tmp_path):
    web = tmp_path / "web.yml"
    web.write_text(
        f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {pki.server_key}\n"
    )
    assert endpoint(":9443", str(web)) == Endpoint("127.0.0.1", 9443, tls=True)
    basic_only = tmp_path / "basic.yml"
    basic_only.write_text("basic_auth_users: {}\n")
    assert endpoint(":9881", str(basic_only)).tls is False


def healthcheck(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", "healthcheck", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


def run_healthcheck(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """The subcommand as `eightbyeight-exporter healthcheck` dispatches it, in this process."""
    returncode = main(["healthcheck", *args])
    out, err = capsys.readouterr()
    return returncode, out, err


def test_healthy_on_plain_http_and_on_tls(pki, tmp_path, capsys):
    web = tmp_path / "web.yml"
    web.write_text(
        f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {pki.server_key}\n"
    )
    with InProcessExporter(["--subaccount=acme-prod"]) as plain:
        address = plain.url.removeprefix("http://")
        returncode, out, err = run_healthcheck(capsys, f"--web.listen-address={address}")
    assert returncode == 0, err
    assert out == f"eightbyeight-exporter healthcheck: healthy: http://{address}/-/healthy\n"
    with InProcessExporter(["--subaccount=acme-prod", f"--web.config.file={web}"]) as tls:
        address = tls.url.removeprefix("http://")
        returncode, out, err = run_healthcheck(
            capsys, f"--web.listen-address={address}", f"--web.config.file={web}"
        )
        plain_to_tls = run_healthcheck(
            capsys, f"--web.listen-address={address}", "--web.config.file="
        )
    assert returncode == 0, err
    assert out == f"eightbyeight-exporter healthcheck: healthy: https://{address}/-/healthy\n"
    assert plain_to_tls[0] == 1  # plain HTTP to a TLS port is no answer


@pytest.mark.slow
def test_healthy_exporter_on_plain_http(tmp_path):
    with exporter_process(["--demo"], {}, tmp_path / "exporter.log") as (url, _):
        result = healthcheck(f"--web.listen-address={url.removeprefix('http://')}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("eightbyeight-exporter healthcheck: healthy: http://127.0.0.1:")


@pytest.mark.slow
def test_healthy_exporter_on_tls(pki, tmp_path):
    web = tmp_path / "web.yml"
    web.write_text(
        f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {pki.server_key}\n"
    )

    def ready(url: str) -> bool:
        return requests.get(f"{url}/-/healthy", timeout=2, verify=str(pki.ca)).status_code == 200

    argv = ["--demo", f"--web.config.file={web}"]
    log = tmp_path / "exporter.log"
    with exporter_process(argv, {}, log, scheme="https", ready=ready) as (url, _):
        address = url.removeprefix("https://")
        tls = healthcheck(f"--web.listen-address={address}", f"--web.config.file={web}")
        plain = healthcheck(f"--web.listen-address={address}", "--web.config.file=")
    assert tls.returncode == 0, tls.stderr
    assert "https://127.0.0.1" in tls.stdout
    assert plain.returncode == 1  # plain HTTP to a TLS port is no answer


# What a check may load, and no more: it runs every 30 s in the container.
CHECK_MODULES = {
    "exporter",
    "exporter.cli",
    "exporter.cli.main",
    "exporter.cli.healthcheck",
    "exporter.config",
    "exporter.config.values",
    "exporter.config.flags",
}
# Third-party packages, and the app's own dependencies a check has no use for.
NEVER_LOADED = {"prometheus_client", "requests", "urllib3", "bcrypt", "importlib.metadata"}


def packages(modules: set[str]) -> set[str]:
    return modules | {m.split(".")[0] for m in modules}


def imported_by_check(*args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """A check in a process of its own, and every module it imported (-X importtime)."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "exporter", "healthcheck", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    modules = {
        line.rpartition("|")[2].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    assert "exporter.cli.healthcheck" in modules, result.stderr  # the report was read
    return result, modules


def test_a_plain_check_loads_only_what_it_needs():
    with InProcessExporter(["--subaccount=acme-prod"]) as plain:
        address = plain.url.removeprefix("http://")
        result, modules = imported_by_check(f"--web.listen-address={address}")
    assert result.returncode == 0, result.stderr
    assert {m for m in modules if m.split(".")[0] == "exporter"} == CHECK_MODULES
    assert not packages(modules) & (NEVER_LOADED | {"yaml", "ssl", "http", "email"})


def test_a_tls_check_adds_only_the_web_config_reader(pki, tmp_path):
    web = tmp_path / "web.yml"
    web.write_text(
        f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {pki.server_key}\n"
    )
    with InProcessExporter(["--subaccount=acme-prod", f"--web.config.file={web}"]) as tls:
        address = tls.url.removeprefix("http://")
        result, modules = imported_by_check(
            f"--web.listen-address={address}", f"--web.config.file={web}"
        )
    assert result.returncode == 0, result.stderr
    exporter_modules = {m for m in modules if m.split(".")[0] == "exporter"}
    assert exporter_modules == CHECK_MODULES | {"exporter.config.webconfig"}
    assert {"yaml", "ssl"} <= modules
    assert not packages(modules) & NEVER_LOADED


def test_unhealthy_when_nothing_listens(capsys):
    returncode, out, err = run_healthcheck(
        capsys, f"--web.listen-address=127.0.0.1:{free_port()}", "--web.config.file="
    )
    assert returncode == 1
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("eightbyeight-exporter healthcheck: unhealthy: http://127.0.0.1:")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--timeout=0s"], "--timeout must be greater than 0"),
        (["--web.listen-address=nonsense"], "invalid listen address"),
        (["--web.config.file=/nonexistent/web.yml"], "does not exist"),
    ],
)
def test_bad_flags_are_one_line(args, message, capsys):
    returncode, out, err = run_healthcheck(capsys, "--web.listen-address=:1", *args)
    assert returncode == 1
    assert out == ""
    assert len(err.splitlines()) == 1
    assert message in err
    assert "Traceback" not in err
