"""The compose stack brought up with podman-compose: simulator, exporter, Prometheus and
Alertmanager (Grafana cannot run here; its provisioning is checked in test_dashboards.py).

Run from a copy of the files the stack mounts, with the alert rules' `for:` shortened (as in
tests/stack/test_alerting_e2e.py) so that an alert fires in seconds, and every host port moved to a
free one through the STACK_*_PORT variables of .env.example. Prometheus and Alertmanager are the
stand-ins from .ci/container-images under the tags the compose file names.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from tests.support.containers import BUILD_SECONDS, container_logs, podman
from tests.support.processes import IN_CI, REPO, free_port, wait_until
from tests.support.stack import query

# A first run builds the stand-in and exporter images inside the fixtures: minutes.
pytestmark = [pytest.mark.container, pytest.mark.slow, pytest.mark.timeout(900)]

SERVICES = ["simulator", "exporter", "prometheus", "alertmanager"]
# What the stack mounts or builds from; copied so the rules can be shortened.
STACK_FILES = [
    "docker-compose.yml",
    "Dockerfile",
    ".dockerignore",
    "pyproject.toml",
    "README.md",
    "LICENSE",
    "requirements.lock",
    "exporter",
    "prometheus",
    "grafana",
    "deploy/demo-api-key",
    "deploy/demo-webhook-auth",
]
PORTS = {
    "exporter": ("STACK_EXPORTER_PORT", 9881),
    "webhooks": ("STACK_WEBHOOK_PORT", 9884),
    "simulator": ("STACK_SIMULATOR_PORT", 9882),
    "simulator-admin": ("STACK_SIMULATOR_ADMIN_PORT", 9883),
    "prometheus": ("STACK_PROMETHEUS_PORT", 9090),
    "alertmanager": ("STACK_ALERTMANAGER_PORT", 9093),
    "grafana": ("STACK_GRAFANA_PORT", 3000),
}


def copy_stack(target: Path) -> Path:
    for name in STACK_FILES:
        source, destination = REPO / name, target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, destination, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, destination)
    for rule_file in (target / "prometheus" / "rules").glob("*.yml"):
        text = re.sub(r"(?m)^(\s+for:\s*)\S+\s*$", r"\g<1>5s", rule_file.read_text())
        rule_file.write_text(text)
    shorten_intervals(target / "prometheus" / "prometheus.yml")
    return target


def shorten_intervals(config: Path) -> None:
    """Every scrape and rule evaluation every 2 s instead of 15-30 s: the same jobs, rules and
    routes, but the test waits seconds, not minutes, for a scrape or an evaluation."""
    text = config.read_text()
    for key in ("scrape_interval", "evaluation_interval", "scrape_timeout"):
        text, count = re.subn(rf"(?m)^(\s+{key}:\s*)\S+\s*$", r"\g<1>2s", text)
        assert count, f"{config.name} has no {key} to shorten"
    config.write_text(text)


def documented_fault_commands() -> list[str]:
    """The curl commands docs/deployment.md gives for injecting a fault into the compose stack."""
    text = (REPO / "docs" / "deployment.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- compose: inject-fault -->\s*```sh\n(.*?)```", text, re.DOTALL)
    assert match, "docs/deployment.md has no block marked 'compose: inject-fault'"
    return [line for line in match.group(1).splitlines() if line.startswith("curl ")]


def compose_binary() -> str:
    """podman-compose from this environment (the `container` extra), else from PATH."""
    beside = Path(sys.executable).parent / "podman-compose"
    found = str(beside) if beside.exists() else shutil.which("podman-compose")
    if found:
        return found
    message = "podman-compose not found: pip install -e '.[container]' (.ci/run does)"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


class Stack:
    """podman-compose with this test's project name, environment and ports."""

    def __init__(self, directory: Path, env: dict[str, str]) -> None:
        self.directory = directory
        self.project = f"ebe-test-stack-{time.time_ns() % 10**9}"
        self.ports = {name: free_port() for name in PORTS}
        self.env = env | {variable: str(self.ports[name]) for name, (variable, _) in PORTS.items()}

    def compose(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        command = [
            compose_binary(),
            "--project-name",
            self.project,
            "--file",
            str(self.directory / "docker-compose.yml"),
            *args,
        ]
        return subprocess.run(
            command,
            cwd=self.directory,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def container(self, service: str) -> str:
        return f"{self.project}_{service}_1"

    def leftovers(self) -> dict[str, list[str]]:
        """Containers, volumes and networks of this project still present."""
        label = f"label=io.podman.compose.project={self.project}"
        found = {}
        for kind, args in {
            "containers": ["ps", "--all", "--filter", label, "--format", "{{.Names}}"],
            "volumes": ["volume", "ls", "--filter", label, "--format", "{{.Name}}"],
            "networks": ["network", "ls", "--format", "{{.Name}}"],
        }.items():
            names = podman(self.env, *args).stdout.split()
            if kind == "networks":
                names = [n for n in names if n.startswith(self.project)]
            found[kind] = names
        return found

    def remove_everything(self) -> None:
        """Whatever `down -v` left: by this project's names only."""
        left = self.leftovers()
        if left["containers"]:
            podman(self.env, "rm", "-f", *left["containers"], check=False)
        if left["volumes"]:
            podman(self.env, "volume", "rm", "-f", *left["volumes"], check=False)
        if left["networks"]:
            podman(self.env, "network", "rm", "-f", *left["networks"], check=False)


@pytest.fixture
def stack(podman_env, exporter_image, tmp_path) -> Iterator[Stack]:
    # exporter_image: the Dockerfile built once per session; `up --build` below reuses its layers.
    compose_binary()
    stack = Stack(copy_stack(tmp_path / "stack"), podman_env)
    try:
        yield stack
    finally:
        down = stack.compose("down", "--volumes", timeout=300)
        left = stack.leftovers()
        stack.remove_everything()
    assert down.returncode == 0, down.stderr[-2000:]
    assert left == {"containers": [], "volumes": [], "networks": []}, "down -v left these"


def wait_ready(stack: Stack, what: str, url: str, timeout: float = 120) -> None:
    try:
        wait_until(lambda: requests.get(url, timeout=3).ok, timeout=timeout, interval=1, what=what)
    except AssertionError:
        service = what.split()[0]
        pytest.fail(f"{what} not ready: {container_logs(stack.env, stack.container(service))}")


def check_callbacks_arrive(stack: Stack, prometheus: str) -> None:
    """The simulator's callbacks reach the exporter's callback port and its metrics reach
    Prometheus; the port is published and refuses a callback without the value."""
    webhooks = stack.url("webhooks")
    assert requests.get(f"{webhooks}/-/healthy", timeout=5).status_code == 200
    refused = requests.post(f"{webhooks}/webhooks/8x8", json={}, timeout=5)
    assert refused.status_code == 401
    wanted = {(s, e) for s in ("acme-apac", "acme-emea") for e in ("vnu", "vss")}

    def events() -> set[tuple[str, str]]:
        found = query(prometheus, "eightbyeight_webhook_events_total > 0")
        return {(r["metric"]["subaccount"], r["metric"]["event_type"]) for r in found}

    try:
        wait_until(lambda: events() == wanted, timeout=120, interval=2, what="callback events")
    except AssertionError:
        pytest.fail(
            f"callbacks {events()}: {container_logs(stack.env, stack.container('exporter'))}"
        )
    # Call quality as the dashboards' "Call quality" row reads it, and nothing refused.
    mos = query(prometheus, "sum by (subaccount) (eightbyeight_call_mos_count) > 0")
    assert {r["metric"]["subaccount"] for r in mos} == {"acme-apac", "acme-emea"}
    outcomes = query(prometheus, "sum by (outcome) (eightbyeight_webhook_requests_total) > 0")
    seen = {r["metric"]["outcome"] for r in outcomes}
    # A callback that timed out at the simulator and was sent again would count as duplicate.
    assert "accepted" in seen, seen
    assert seen <= {"accepted", "duplicate"}, seen


def test_stack_scrapes_alerts_and_leaves_nothing_behind(stack):
    started = time.monotonic()
    up = stack.compose("up", "--detach", "--build", *SERVICES)
    assert up.returncode == 0, up.stderr[-3000:]

    # podman-compose on podman 4.3 ignores `condition: service_healthy`: wait here instead.
    wait_ready(stack, "simulator admin API", f"{stack.url('simulator-admin')}/admin/healthy")
    wait_ready(stack, "exporter", f"{stack.url('exporter')}/-/healthy")
    wait_ready(stack, "alertmanager", f"{stack.url('alertmanager')}/-/ready")
    wait_ready(stack, "prometheus", f"{stack.url('prometheus')}/-/ready")
    for service in ("simulator", "exporter"):
        check = podman(stack.env, "healthcheck", "run", stack.container(service), check=False)
        assert check.returncode == 0, f"{service} unhealthy: {check.stdout}{check.stderr}"
    prometheus = stack.url("prometheus")

    def targets() -> dict[str, str]:
        body = requests.get(f"{prometheus}/api/v1/targets", timeout=5).json()
        return {t["labels"]["job"]: t["health"] for t in body["data"]["activeTargets"]}

    wait_until(
        lambda: targets() == dict.fromkeys(["eightbyeight", "prometheus", "alertmanager"], "up"),
        timeout=120,
        interval=1,
        what="every Prometheus target up",
    )
    ups = {r["metric"]["subaccount"]: r["value"][1] for r in query(prometheus, "eightbyeight_up")}
    assert ups == {"acme-apac": "1", "acme-emea": "1"}
    check_callbacks_arrive(stack, prometheus)

    # The shipped rule files, all loaded.
    loaded = requests.get(f"{prometheus}/api/v1/rules", timeout=5).json()["data"]["groups"]
    shipped = [
        group["name"]
        for path in sorted((REPO / "prometheus" / "rules").glob("*.yml"))
        for group in yaml.safe_load(path.read_text())["groups"]
    ]
    assert sorted(g["name"] for g in loaded) == sorted(shipped)
    assert all(not r.get("lastError") for g in loaded for r in g["rules"])

    # A fault, injected the way docs/deployment.md tells a user, becomes an alert in Alertmanager.
    commands = documented_fault_commands()
    put = [c for c in commands if "-X PUT" in c]
    assert len(put) == 1, commands
    argv = [
        word.replace("127.0.0.1:9883", f"127.0.0.1:{stack.ports['simulator-admin']}")
        for word in shlex.split(put[0])
    ]
    injected = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert injected.returncode == 0, injected.stderr
    faults = requests.get(f"{stack.url('simulator-admin')}/admin/faults", timeout=5).json()
    assert json.dumps(faults).count("503") == 1, faults

    def alert() -> list[dict]:
        alerts = requests.get(f"{stack.url('alertmanager')}/api/v2/alerts", timeout=5).json()
        return [
            a
            for a in alerts
            if a["labels"]["alertname"] == "EightByEightApiDown"
            and a["labels"].get("subaccount") == "acme-apac"
        ]

    try:
        fired = wait_until(
            alert, timeout=180, interval=2, what="EightByEightApiDown in Alertmanager"
        )
    except AssertionError:
        pytest.fail(f"no alert; Prometheus alerts: {query(prometheus, 'ALERTS')}")
    assert fired[0]["status"]["state"] == "active"
    assert query(prometheus, 'eightbyeight_up{subaccount="acme-emea"}')[0]["value"][1] == "1"
    print(f"compose stack: up to alert in Alertmanager {time.monotonic() - started:.0f} s")
    print(f"exporter image build in this session: {BUILD_SECONDS.get('exporter image', 0):.1f} s")
