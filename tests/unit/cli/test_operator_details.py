"""Operator details: durations, --demo with flags it would ignore, the probe-only landing page,
singular counts, null in JSON logs, IPv6 addresses in logs, web config TLS errors naming the file,
and `--api.key` typed on the command line."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from contextlib import ExitStack

import pytest
import requests
import yaml

from exporter.cli.main import main
from exporter.cli.run import _demo_settings, listen_address_given
from exporter.common.logs import JsonFormatter, LogfmtFormatter
from exporter.config.flags import build_parser
from exporter.config.settings import settings_from_flags
from exporter.config.values import ConfigError, host_port, loopback_for
from exporter.config.webconfig import load_web_config
from exporter.simulator import Simulator
from tests.deployment.test_compose_stack import SERVICES
from tests.support.callbacks import CALLBACK_AUTH, post_callback, vss
from tests.support.exporters import InProcessExporter, exporter_process, self_signed_certificate
from tests.support.fake_api import FakeApi
from tests.support.pki import bcrypt_hash
from tests.support.processes import REPO, free_port, running_process, wait_until

KEY = "operator-details-key-31415"


def settings(flag: str, value: str):
    # flag=value, so that a value starting with '-' stays a value.
    args = build_parser().parse_args([f"{flag}={value}"])
    return settings_from_flags(args, {"EIGHTBYEIGHT_API_KEY": KEY})


@pytest.fixture
def clean_env(monkeypatch):
    for name in list(os.environ):
        if name.startswith("EIGHTBYEIGHT_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("EIGHTBYEIGHT_API_KEY", KEY)


# --- Durations ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1m30s", 90),
        ("1h", 3600),
        ("1d", 86400),
        ("1w", 7 * 86400),
        ("1y", 365 * 86400),
        ("500ms", 0.5),
        ("1h30m", 5400),
        ("2d12h", 216000),
        ("1m0s500ms", 60.5),
        ("10s", 10),
        ("1.5s", 1.5),
        ("45", 45),
        ("0s", 0),
    ],
)
def test_durations_take_prometheus_forms(text, seconds):
    assert settings("--cache.ttl", text).cache_ttl == seconds


@pytest.mark.parametrize("text", ["", "1m1m", "30s1m", "1x", "1.5m30s", "ms", "-1s", "1 m", "1e3"])
def test_junk_durations_are_one_line_errors(text):
    with pytest.raises(ConfigError) as caught:
        settings("--cache.ttl", text)
    message = str(caught.value)
    assert "invalid duration for --cache.ttl" in message
    assert "1m30s" in message  # the examples show the compound form
    assert "\n" not in message


# --- --demo -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--subaccount", "acme-prod"], ["--subaccount"]),
        (["--api.base-url", "http://127.0.0.1:1"], ["--api.base-url"]),
        (["--config.file", "exporter.yml"], ["--config.file"]),
        (["--api.key-file", "key"], ["--api.key-file"]),
        (
            ["--subaccount", "acme-prod", "--config.file", "x.yml"],
            ["--subaccount", "--config.file"],
        ),
    ],
)
def test_demo_refuses_flags_it_would_ignore(clean_env, capsys, flags, named):
    assert main(["--demo", *flags]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "--demo" in err
    for flag in named:
        assert flag in err


# --- Landing page -------------------------------------------------------------------------


def test_probe_only_landing_page_shows_how_to_probe():
    with FakeApi() as api, InProcessExporter(["--api.base-url", api.base_url]) as exp:
        page = exp.get("/").text
        assert 'href="/probe?target=your-subaccount-id"' in page
        assert "metrics_path: /probe" in page
        assert "target_label: __param_target" in page
        assert f"replacement: 127.0.0.1:{exp.server.server_address[1]}" in page
        assert api.count == 0


def test_probe_only_landing_page_uses_an_allowed_subaccount():
    flags = ["--probe.allowed-subaccounts", "acme-prod,acme-dev"]
    with FakeApi() as api, InProcessExporter(["--api.base-url", api.base_url, *flags]) as exp:
        assert 'href="/probe?target=acme-dev"' in exp.get("/").text


def test_landing_page_with_subaccounts_lists_them_without_probe_help():
    with (
        FakeApi() as api,
        InProcessExporter(["--api.base-url", api.base_url, "--subaccount", "acme-prod"]) as exp,
    ):
        page = exp.get("/").text
        assert 'href="/probe?target=acme-prod"' in page
        assert "metrics_path" not in page


# --- --config.check -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subaccounts", "said"),
    [
        ([], "(0 subaccounts)"),
        (["acme-prod"], "(1 subaccount)"),
        (["a-1", "b-2"], "(2 subaccounts)"),
    ],
)
def test_config_check_counts_in_words(clean_env, capsys, subaccounts, said):
    flags = [arg for sub in subaccounts for arg in ("--subaccount", sub)]
    assert main(["--config.check", *flags]) == 0
    assert capsys.readouterr().out.strip().endswith(f"configuration is valid {said}")


# --- Logs ---------------------------------------------------------------------------------


def record(**fields: object) -> logging.LogRecord:
    rec = logging.LogRecord("exporter.test", logging.WARNING, __file__, 1, "failed", None, None)
    rec.fields = fields
    return rec


def test_json_logs_write_null_and_logfmt_none():
    assert json.loads(JsonFormatter().format(record(status=None)))["status"] is None
    assert json.loads(JsonFormatter().format(record(status=401)))["status"] == "401"
    assert " status=none" in LogfmtFormatter().format(record(status=None))


def test_a_fetch_without_an_answer_logs_a_null_status(caplog):
    refused = f"http://127.0.0.1:{free_port()}"
    flags = ["--api.base-url", refused, "--subaccount", "acme-prod", "--api.retries", "0"]
    with InProcessExporter(flags) as exp, caplog.at_level(logging.WARNING):
        exp.get()
    (failure,) = [r for r in caplog.records if r.name == "exporter.polling.scraper"]
    assert json.loads(JsonFormatter().format(failure))["status"] is None


def test_ipv6_addresses_are_shown_in_brackets():
    assert host_port("::1", 9881) == "[::1]:9881"
    assert host_port("::", 9881) == "[::]:9881"
    assert host_port("127.0.0.1", 9881) == "127.0.0.1:9881"


@pytest.mark.parametrize(
    ("bound", "reached"),
    [
        ("", "127.0.0.1"),  # ':9881' binds every IPv4 interface
        ("0.0.0.0", "127.0.0.1"),
        ("::", "::1"),
        ("0:0::0", "::1"),
        ("127.0.0.2", "127.0.0.2"),
        ("::1", "::1"),
        ("fe80::1", "fe80::1"),
        ("localhost", "localhost"),
        ("exporter.example", "exporter.example"),
    ],
)
def test_a_wildcard_bind_is_reached_on_the_loopback_of_its_family(bound, reached):
    assert loopback_for(bound) == reached


def test_the_callback_url_of_a_wildcard_ipv6_listener_is_on_ipv6_loopback():
    env = {"EIGHTBYEIGHT_WEBHOOK_AUTH_HEADER": CALLBACK_AUTH}
    argv = ["--subaccount", "acme-prod", "--webhook.listen-address", "[::]:0"]
    with InProcessExporter(argv, env=env) as exp:
        port = exp.built.callbacks.server_address[1]
        assert exp.callback_url == f"http://[::1]:{port}/webhooks/8x8"
        assert post_callback(exp.callback_url, vss()).status_code == 200


@pytest.mark.parametrize(("bound", "reached"), [("0.0.0.0", "127.0.0.1"), ("::", "[::1]")])
def test_the_simulator_on_a_wildcard_address_names_its_loopback_url(bound, reached):
    with Simulator(subaccounts={"acme-prod": 1}, api_key=KEY, host=bound) as sim:
        assert sim.base_url.startswith(f"http://{reached}:")
        assert requests.get(sim.base_url + "/", timeout=10).status_code < 500


@pytest.mark.slow
@pytest.mark.parametrize(("bound", "reached"), [("", "127.0.0.1"), ("[::]", "[::1]")])
def test_the_demo_line_names_the_loopback_of_a_wildcard_address(tmp_path, bound, reached):
    port = free_port()
    log = tmp_path / "exporter.log"
    argv = [sys.executable, "-m", "exporter", "--demo", "--web.listen-address", f"{bound}:{port}"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("EIGHTBYEIGHT_")}
    url = f"http://{reached}:{port}"
    with running_process(argv, f"{url}/-/healthy", env=env, cwd=REPO, log_path=log):
        wait_until(lambda: "demo mode" in log.read_text(), timeout=10, what="demo log line")
    assert f"demo mode: metrics at {url}/metrics" in log.read_text()


@pytest.mark.slow
def test_the_listening_line_brackets_an_ipv6_address(tmp_path):
    port = free_port()
    log = tmp_path / "exporter.log"
    argv = [sys.executable, "-m", "exporter", "--web.listen-address", f"[::1]:{port}"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("EIGHTBYEIGHT_")}
    env["EIGHTBYEIGHT_API_KEY"] = KEY
    with running_process(argv, f"http://[::1]:{port}/-/healthy", env=env, cwd=REPO, log_path=log):
        assert requests.get(f"http://[::1]:{port}/-/healthy", timeout=5).status_code == 200
    assert f"address=[::1]:{port}" in log.read_text()


# --- The web config -----------------------------------------------------------------------


def test_a_certificate_that_does_not_match_its_key_names_the_web_config(tmp_path):
    first_cert, _ = self_signed_certificate(tmp_path, "first")
    _, second_key = self_signed_certificate(tmp_path, "second")
    web = tmp_path / "web.yml"
    web.write_text(f"tls_server_config:\n  cert_file: {first_cert}\n  key_file: {second_key}\n")
    with pytest.raises(ConfigError) as caught:
        load_web_config(web)
    message = str(caught.value)
    assert message.startswith(f"web config {web}: tls_server_config: cannot use cert_file")
    assert str(second_key) in message


# --- --api.key ----------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [["--api.key", KEY], [f"--api.key={KEY}"]])
def test_api_key_flag_says_where_the_key_goes(clean_env, capsys, argv):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert KEY not in err
    assert "EIGHTBYEIGHT_API_KEY" in err
    assert "--api.key-file" in err
    assert "EIGHTBYEIGHT_API_KEY_FILE" in err


@pytest.mark.slow
def test_a_real_process_refuses_api_key_without_echoing_it():
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "--api.key", KEY],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 2
    assert KEY not in result.stderr + result.stdout
    assert "EIGHTBYEIGHT_API_KEY" in result.stderr


@pytest.mark.slow
def test_demo_says_which_environment_it_ignores(tmp_path):
    log = tmp_path / "demo.log"
    env = {"EIGHTBYEIGHT_SUBACCOUNTS": "acme-prod", "EIGHTBYEIGHT_API_KEY": KEY}
    with exporter_process(["--demo"], env, log):
        wait_until(lambda: "demo mode ignores" in log.read_text(), timeout=10)
    line = next(line for line in log.read_text().splitlines() if "demo mode ignores" in line)
    assert "environment=EIGHTBYEIGHT_API_KEY,EIGHTBYEIGHT_SUBACCOUNTS" in line
    assert KEY not in log.read_text()


# --- Readiness apart from liveness --------------------------------------------------------


def test_ready_once_built_and_not_ready_once_shutdown_begins(tmp_path):
    """/-/ready answers 200 when the exporter is built (configuration loaded, listeners bound)
    and 503 from the start of a shutdown, while /-/healthy stays 200: Kubernetes stops routing
    to a draining pod without its liveness probe restarting it. Both stay open behind basic
    auth, as the kubelet's probes carry no credentials."""
    web_config = tmp_path / "web.yml"
    web_config.write_text(f"basic_auth_users:\n  alice: '{bcrypt_hash('s3cret-pw')}'\n")
    with (
        FakeApi() as api,
        InProcessExporter(
            [
                "--subaccount=acme-prod",
                f"--api.base-url={api.base_url}",
                f"--web.config.file={web_config}",
            ]
        ) as exporter,
    ):
        assert exporter.get("/metrics").status_code == 401
        assert exporter.get("/-/ready").status_code == 200
        exporter.app.ready.clear()  # what the SIGTERM handler does first
        not_ready = exporter.get("/-/ready")
        healthy = exporter.get("/-/healthy")
    assert (not_ready.status_code, not_ready.text) == (503, "Not ready\n")
    assert healthy.status_code == 200


def test_an_app_without_its_configuration_in_place_is_not_ready():
    from exporter.app import build_app

    args = build_parser().parse_args(["--subaccount=acme-prod"])
    app = build_app(settings_from_flags(args, {"EIGHTBYEIGHT_API_KEY": KEY}))
    statuses: list[str] = []
    body = app({"PATH_INFO": "/-/ready", "REQUEST_METHOD": "GET"}, lambda s, h: statuses.append(s))
    app.pool.close(timeout=0)
    assert statuses == ["503 Service Unavailable"]
    assert b"".join(body) == b"Not ready\n"


# --- The demo binds loopback unless told otherwise ------------------------------------------


@pytest.mark.parametrize(
    ("argv", "address"),
    [
        (["--demo"], "127.0.0.1:9881"),
        (["--demo", "--web.listen-address=:9881"], ":9881"),
        (["--demo", "--web.listen-address", "0.0.0.0:9000"], "0.0.0.0:9000"),
        # The default value given explicitly still wins.
        (["--web.listen-address", ":9881", "--demo"], ":9881"),
    ],
)
def test_demo_listens_on_loopback_unless_told_otherwise(clean_env, argv, address):
    args = build_parser().parse_args(argv)
    with ExitStack() as stack:
        load, _ = _demo_settings(args, stack, listen_given=listen_address_given(argv))
        settings = load()
    assert settings.listen_address == address


# --- Key files made inside the clone are ignored by git -----------------------------------

SECRET_IN_CLONE = re.compile(r"(?:\./|\$PWD/)(8x8-[\w.-]+)")


def test_key_files_the_docs_create_in_the_clone_are_ignored_by_git():
    texts = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    named = sorted(
        {m.group(1) for p in texts for m in SECRET_IN_CLONE.finditer(p.read_text("utf-8"))}
    )
    assert {"8x8-api-key", "8x8-webhook-auth"} <= set(named)
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", *named],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    assert ignored == named
    # The committed demo values stay tracked.
    demo = subprocess.run(
        ["git", "check-ignore", "--no-index", "deploy/demo-api-key", "deploy/demo-webhook-auth"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert demo.stdout == ""


# --- The compose stack without a registry -------------------------------------------------


def test_offline_guide_brings_up_the_services_this_test_brings_up():
    """docs/deployment-offline.md's command starts exactly the services tested here, and
    every one of them (but not grafana) is a service of the compose file."""
    text = (REPO / "docs" / "deployment-offline.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- offline: compose up -->\s*```sh\n(.*?)```", text, re.DOTALL)
    assert match, "docs/deployment-offline.md has no block marked 'offline: compose up'"
    words = match.group(1).split()
    services = words[words.index("--build") + 1 :]
    assert services == SERVICES
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))
    assert set(SERVICES) < set(compose["services"])
    assert "grafana" in compose["services"]
    assert "grafana" not in services
