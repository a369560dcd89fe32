"""deploy/systemd: the unit passes `systemd-analyze verify` without a warning, its hardening
scores as `systemd-analyze security` "OK", and its command line with the shipped environment
file is a valid exporter configuration."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from exporter.app import thread_bound
from exporter.config.flags import build_parser
from exporter.config.settings import settings_from_flags
from tests.support.processes import REPO, find_tool

UNIT = REPO / "deploy" / "systemd" / "eightbyeight-exporter.service"
ENV_FILE = REPO / "deploy" / "systemd" / "eightbyeight-exporter.env"
INSTALLED = "/opt/eightbyeight-exporter/bin/eightbyeight-exporter"
# `systemd-analyze security` scale: 0 (locked down) to 10 (exposed); below 2 is "OK".
MAX_EXPOSURE = 2.0


def installed_unit(tmp_path: Path, text: str | None = None) -> Path:
    """The unit with ExecStart pointing at this checkout's installed entry point (verify
    checks that the program exists)."""
    entry_point = Path(sys.executable).parent / "eightbyeight-exporter"
    assert entry_point.exists(), "install the project first (pip install -e .)"
    unit = tmp_path / UNIT.name
    unit.write_text((text or UNIT.read_text()).replace(INSTALLED, str(entry_point)))
    return unit


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [find_tool("systemd-analyze"), *args], capture_output=True, text=True, timeout=60
    )


def unit_settings() -> list[tuple[str, str]]:
    return [
        tuple(line.split("=", 1))
        for line in UNIT.read_text().splitlines()
        if line and not line.startswith(("#", "[")) and "=" in line
    ]


def test_unit_verifies_without_warnings(tmp_path):
    result = analyze("verify", str(installed_unit(tmp_path)))
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""


@pytest.mark.parametrize(
    ("change", "expect_failure"),
    [
        ((INSTALLED, "/nonexistent/eightbyeight-exporter"), True),
        (("ExecStart=/", "ExecStart=relative/"), True),
        (("UMask=", "UMsk="), False),  # a warning, which the test above would catch
    ],
)
def test_verify_catches_a_broken_unit(tmp_path, change, expect_failure):
    unit = installed_unit(tmp_path, UNIT.read_text().replace(*change))
    result = analyze("verify", str(unit))
    assert (result.returncode != 0) is expect_failure
    assert result.stderr != ""


def test_hardening_exposure_is_ok(tmp_path):
    result = analyze("security", "--offline=true", str(installed_unit(tmp_path)))
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", result.stdout)
    assert match, result.stdout[-2000:] + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout
    assert match.group(2) == "OK"


def test_runs_unprivileged_with_no_capabilities():
    settings = unit_settings()
    for key, value in [
        ("DynamicUser", "yes"),
        ("NoNewPrivileges", "yes"),
        ("CapabilityBoundingSet", ""),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
    ]:
        assert (key, value) in settings, key


def test_the_key_comes_from_a_credential_not_the_environment_file():
    settings = dict(unit_settings())
    assert settings["LoadCredential"] == "api-key:/etc/eightbyeight-exporter/api-key"
    assert settings["Environment"] == "EIGHTBYEIGHT_API_KEY_FILE=%d/api-key"
    assert "EIGHTBYEIGHT_API_KEY=" not in ENV_FILE.read_text()


def env_file_values() -> dict[str, str]:
    values = {}
    for line in ENV_FILE.read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = shlex.split(value)[0] if value.startswith('"') else value
    return values


def test_exec_start_with_the_shipped_environment_is_a_valid_configuration(tmp_path):
    exec_start = dict(unit_settings())["ExecStart"].split()
    assert exec_start[0] == INSTALLED
    values = env_file_values()
    argv = []
    for word in exec_start[1:]:
        # systemd splits an unbraced $VAR on whitespace.
        argv += values[word[1:]].split() if word.startswith("$") else [word]
    key = tmp_path / "api-key"
    key.write_text("a-key\n")
    env = {
        "EIGHTBYEIGHT_SUBACCOUNTS": values["EIGHTBYEIGHT_SUBACCOUNTS"],
        "EIGHTBYEIGHT_API_KEY_FILE": str(key),  # what %d/api-key becomes
    }
    result = subprocess.run(
        [sys.executable, "-m", "exporter", *argv, "--config.check"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "configuration is valid (2 subaccounts)" in result.stdout


def documented_webhook_setup() -> tuple[str, list[str]]:
    """The commented EXPORTER_ARGS with the callback listener, and the drop-in's lines."""
    text = ENV_FILE.read_text()
    args = re.search(r'(?m)^#EXPORTER_ARGS="([^"]*)"$', text)
    assert args, "the environment file documents EXPORTER_ARGS with --webhook.listen-address"
    drop_in = re.findall(r"(?m)^#\s+((?:LoadCredential|Environment)=\S+)$", text)
    return args.group(1), drop_in


def test_environment_file_documents_the_webhook_options():
    text = ENV_FILE.read_text()
    args, drop_in = documented_webhook_setup()
    assert "--webhook.listen-address=:9884" in args.split()
    for flag in ("--webhook.path", "--webhook.max-body-size", "--webhook.read-timeout"):
        assert flag in text, flag
    # The value travels as a credential, like the API key; never in this file.
    assert drop_in == [
        "LoadCredential=webhook-auth:/etc/eightbyeight-exporter/webhook-auth",
        "Environment=EIGHTBYEIGHT_WEBHOOK_AUTH_HEADER_FILE=%d/webhook-auth",
    ]
    assert "EIGHTBYEIGHT_WEBHOOK_AUTH_HEADER=" not in text
    assert "webhook" not in UNIT.read_text().lower(), "the shipped unit stays as it was"


def test_unit_with_the_webhook_drop_in_verifies_and_stays_locked_down(tmp_path):
    # Credentials and Environment= accumulate, so lines appended to [Service] act as the
    # drop-in does.
    _, drop_in = documented_webhook_setup()
    text = UNIT.read_text().replace("\n[Install]", "\n" + "\n".join(drop_in) + "\n\n[Install]")
    unit = installed_unit(tmp_path, text)
    verified = analyze("verify", str(unit))
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout + verified.stderr == ""
    security = analyze("security", "--offline=true", str(unit))
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", security.stdout)
    assert match, security.stdout[-2000:] + security.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE


@pytest.mark.parametrize("with_value", [True, False])
def test_exec_start_with_the_webhook_options_is_a_valid_configuration(tmp_path, with_value):
    args, _ = documented_webhook_setup()
    key, auth = tmp_path / "api-key", tmp_path / "webhook-auth"
    key.write_text("a-key\n")
    auth.write_text("Bearer a-callback-value\n")
    env = {
        "EIGHTBYEIGHT_SUBACCOUNTS": env_file_values()["EIGHTBYEIGHT_SUBACCOUNTS"],
        "EIGHTBYEIGHT_API_KEY_FILE": str(key),
    }
    if with_value:
        env["EIGHTBYEIGHT_WEBHOOK_AUTH_HEADER_FILE"] = str(auth)  # what %d/webhook-auth becomes
    result = subprocess.run(
        [sys.executable, "-m", "exporter", *args.split(), "--config.check"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    if with_value:
        assert result.returncode == 0, result.stderr
        assert "configuration is valid (2 subaccounts)" in result.stdout
    else:
        # Without the drop-in the exporter refuses to start, in one line naming what is missing.
        assert result.returncode != 0
        assert "EIGHTBYEIGHT_WEBHOOK_AUTH_HEADER_FILE" in result.stderr
        assert "Traceback" not in result.stderr


@pytest.mark.parametrize("with_webhooks", [False, True])
def test_tasks_max_holds_the_threads_the_exporter_can_have(with_webhooks, tmp_path):
    """Under the unit's TasksMax, the exporter with the shipped arguments (or the documented
    ones with the callback listener) can start every thread it may ever need."""
    documented = re.search(r'(?m)^#EXPORTER_ARGS="([^"]*)"$', ENV_FILE.read_text()).group(1)
    args = documented if with_webhooks else env_file_values()["EXPORTER_ARGS"]
    auth = tmp_path / "webhook-auth"
    auth.write_text("Basic dGVzdDp0ZXN0\n")
    env = {"EIGHTBYEIGHT_API_KEY": "k", "EIGHTBYEIGHT_WEBHOOK_AUTH_HEADER_FILE": str(auth)}
    settings = settings_from_flags(build_parser().parse_args(shlex.split(args)), env)
    assert (settings.webhooks is not None) == with_webhooks
    [tasks_max] = [int(value) for key, value in unit_settings() if key == "TasksMax"]
    assert thread_bound(settings) <= tasks_max


def test_the_documented_sizing_formula_is_the_exporters_bound(tmp_path):
    """The thread formula of docs/scaling.md and its two figures are what the exporter computes."""
    text = " ".join((REPO / "docs" / "scaling.md").read_text().split())
    formula = "`parallel fetches + web workers + 1 + (webhook workers + 1) + 3`"
    assert formula in text
    auth = tmp_path / "webhook-auth"
    auth.write_text("Basic dGVzdDp0ZXN0\n")
    env = {"EIGHTBYEIGHT_API_KEY": "k", "EIGHTBYEIGHT_WEBHOOK_AUTH_HEADER_FILE": str(auth)}
    plain = settings_from_flags(build_parser().parse_args([]), env)
    hooks = ["--webhook.listen-address", "127.0.0.1:0"]
    with_hooks = settings_from_flags(build_parser().parse_args(hooks), env)
    by_formula = [
        s.parallel_fetches + s.web_workers + 1 + (s.webhooks.workers + 1 if s.webhooks else 0) + 3
        for s in (plain, with_hooks)
    ]
    assert by_formula == [thread_bound(plain), thread_bound(with_hooks)]
    stated = f"threads: {by_formula[0]} with the defaults, {by_formula[1]} with the callback"
    assert stated in text


# --- checked before installation, documented where it is installed, restarted after crashes --

VERIFY = REPO / "deploy" / "systemd" / "verify"
GUIDE = REPO / "deploy" / "systemd" / "README.md"


def entry_point() -> str:
    path = Path(sys.executable).parent / "eightbyeight-exporter"
    assert path.exists(), "install the project first (pip install -e .)"
    return str(path)


def run_verify(script: Path, *args: str, path: str | None = None) -> subprocess.CompletedProcess:
    find_tool("systemd-analyze")
    env = {"PATH": path if path is not None else f"{Path(sys.executable).parent}:/usr/bin:/bin"}
    return subprocess.run(
        [str(script), *args], capture_output=True, text=True, timeout=60, env=env, check=False
    )


def test_the_verify_script_passes_the_shipped_unit_before_installation():
    named = run_verify(VERIFY, entry_point())
    assert (named.returncode, named.stdout + named.stderr) == (0, "")
    # Without an argument it takes the eightbyeight-exporter on PATH.
    found = run_verify(VERIFY)
    assert (found.returncode, found.stdout + found.stderr) == (0, "")


def test_the_verify_script_fails_on_a_broken_unit(tmp_path):
    (tmp_path / "verify").write_bytes(VERIFY.read_bytes())
    (tmp_path / "verify").chmod(0o755)
    (tmp_path / UNIT.name).write_text(UNIT.read_text().replace("ExecStart=/", "ExecStart=rel/"))
    result = run_verify(tmp_path / "verify", entry_point())
    assert result.returncode != 0
    assert "ExecStart" in result.stderr or "executable" in result.stderr


def test_the_verify_script_says_how_when_no_program_is_found():
    result = run_verify(VERIFY, path="/usr/bin:/bin")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "pip install" in result.stderr


def test_documentation_points_at_the_guide_the_install_steps_install():
    documentation = dict(unit_settings())["Documentation"]
    assert documentation.startswith("file:///")
    target = documentation.removeprefix("file://")
    block = re.search(r"## Install[^\n]*\n\n```sh\n(.*?)```", GUIDE.read_text(), re.S)
    assert block, "deploy/systemd/README.md has the install steps"
    installs = [
        shlex.split(line) for line in block.group(1).splitlines() if line.startswith("install ")
    ]
    sources = [words[-2] for words in installs if words[-1] == target]
    assert sources == ["deploy/systemd/README.md"]
    assert (REPO / sources[0]).is_file()
    # The steps verify the unit before it is installed.
    steps = block.group(1).splitlines()
    verify = steps.index("deploy/systemd/verify")
    assert verify < next(i for i, s in enumerate(steps) if "/etc/systemd/system" in s)


def test_restarts_after_a_crash_and_not_after_a_configuration_error():
    from exporter.cli.run import EXIT_CONFIG

    settings = dict(unit_settings())
    assert settings["Restart"] == "on-failure"
    assert settings["RestartPreventExitStatus"].split() == [str(EXIT_CONFIG)]
    # What the guide says matches.
    assert f"RestartPreventExitStatus={EXIT_CONFIG}" in GUIDE.read_text()


def _exit_status(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", **env},
        cwd=REPO,
        timeout=60,
        check=False,
    )


@pytest.mark.slow
def test_a_configuration_error_exits_2_and_a_crash_exits_otherwise():
    """Real processes: a bad flag value and a missing key exit with the status the unit does not
    restart; an uncaught exception inside the exporter exits 1, which the unit restarts."""
    start = "import sys; from exporter.cli.main import main; sys.exit(main({argv!r}))"
    bad_value = _exit_status(
        start.format(argv=["--subaccount", "no way"]), {"EIGHTBYEIGHT_API_KEY": "k"}
    )
    no_key = _exit_status(start.format(argv=["--subaccount", "acme-prod"]), {})
    crash = _exit_status(
        "import sys, exporter.cli.main as m\n"
        "def broken(*args, **kwargs):\n"
        "    raise RuntimeError('an internal fault')\n"
        "m.build_exporter = broken\n"
        "sys.exit(m.main(['--subaccount', 'acme-prod', '--web.listen-address', '127.0.0.1:0']))\n",
        {"EIGHTBYEIGHT_API_KEY": "k"},
    )
    assert (bad_value.returncode, no_key.returncode) == (2, 2), bad_value.stderr + no_key.stderr
    assert bad_value.stderr.count("\n") == no_key.stderr.count("\n") == 1
    assert crash.returncode == 1, crash.stderr
    assert "an internal fault" in crash.stderr
