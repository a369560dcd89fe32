"""The Dockerfile built unchanged with podman, and the image run: user, contents, demo, health.

The base is the local stand-in for python:3.11.14-slim-bookworm built by .ci/container-images
(no container registry is reachable here).
"""

from __future__ import annotations

import json

import pytest
import requests
import yaml

from tests.deployment import test_kubernetes as kubernetes
from tests.deployment.test_container import dockerfile_healthcheck, dockerfile_labels
from tests.support.containers import (
    BUILD_SECONDS,
    PREFIX,
    container_logs,
    podman,
    running_container,
)
from tests.support.exporters import parse_samples, value
from tests.support.processes import free_port, wait_until

# A first run builds the stand-in and exporter images inside the fixtures: minutes.
pytestmark = [pytest.mark.container, pytest.mark.slow, pytest.mark.timeout(900)]


def inspect_image(env: dict[str, str], image: str) -> dict:
    return json.loads(podman(env, "image", "inspect", image).stdout)[0]


def test_image_builds_in_docker_format_with_its_health_check(podman_env, exporter_image):
    image = inspect_image(podman_env, exporter_image)
    config = image["Config"]
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["eightbyeight-exporter"]
    assert "9881/tcp" in config["ExposedPorts"]
    assert (
        config["Labels"]["org.opencontainers.image.version"]
        == dockerfile_labels()["org.opencontainers.image.version"]
    )
    # podman shows the docker format's HEALTHCHECK at the top level of `image inspect`.
    assert image["Healthcheck"]["Test"] == ["CMD", *dockerfile_healthcheck()]
    print(f"exporter image build: {BUILD_SECONDS['exporter image']:.1f} s")


def test_image_runs_as_uid_10001_with_no_compiler_and_no_source(podman_env, exporter_image):
    script = (
        "id -u; id -g; "
        "for tool in gcc cc c++ clang make ld as; do command -v $tool; done; "
        "ls -d /src /wheels 2>/dev/null; "
        "python -c 'import exporter, sys; print(exporter.__file__)'"
    )
    result = podman(podman_env, "run", "--rm", "--entrypoint", "sh", exporter_image, "-c", script)
    lines = result.stdout.split()
    assert lines[:2] == ["10001", "10001"]
    # Nothing but the installed package: no compiler, no source tree, no wheel directory.
    assert len(lines) == 3, lines
    assert "-packages/exporter/__init__.py" in lines[2]


def health(env: dict[str, str], name: str) -> int:
    """Exit status of the image's own HEALTHCHECK, run on demand (no systemd schedules it)."""
    return podman(env, "healthcheck", "run", name, check=False).returncode


def test_demo_serves_metrics_and_passes_its_health_check(podman_env, exporter_image):
    port = free_port()
    with running_container(
        podman_env,
        "demo",
        ["--publish", f"127.0.0.1:{port}:9881"],
        exporter_image,
        # --demo alone listens on the container's loopback: a published port needs it open.
        ["--demo", "--web.listen-address=:9881"],
    ) as name:
        url = f"http://127.0.0.1:{port}"
        try:
            response = wait_until(
                lambda: requests.get(f"{url}/metrics", timeout=5), timeout=60, what="/metrics"
            )
        except AssertionError:
            pytest.fail(f"no /metrics: {container_logs(podman_env, name)}")
        samples = parse_samples(response.text)
        assert value(samples, "eightbyeight_up", subaccount="demo-apac") == 1
        assert value(samples, "eightbyeight_up", subaccount="demo-emea") == 1
        assert health(podman_env, name) == 0


def test_health_check_follows_tls_and_another_port(podman_env, exporter_image, pki, tmp_path):
    config_dir = tmp_path / "web"
    config_dir.mkdir()
    for source, target in ((pki.server_cert, "server.crt"), (pki.server_key, "server.key")):
        (config_dir / target).write_bytes(source.read_bytes())
        (config_dir / target).chmod(0o644)  # readable by UID 10001 inside, for this test only
    (config_dir / "web.yml").write_text(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
    )
    config_dir.chmod(0o755)
    port = free_port()
    args = ["--demo", "--web.listen-address=:9443", "--web.config.file=/etc/exporter/web.yml"]
    run_args = ["--publish", f"127.0.0.1:{port}:9443", "--volume", f"{config_dir}:/etc/exporter:ro"]
    with running_container(podman_env, "tls", run_args, exporter_image, args) as name:
        url = f"https://127.0.0.1:{port}"
        try:
            response = wait_until(
                lambda: requests.get(f"{url}/metrics", timeout=5, verify=str(pki.ca)),
                timeout=60,
                what="/metrics over TLS",
            )
        except AssertionError:
            pytest.fail(f"no /metrics over TLS: {container_logs(podman_env, name)}")
        assert value(parse_samples(response.text), "eightbyeight_up", subaccount="demo-apac") == 1
        # The image's check reads port 9443 and TLS from the exporter's command line...
        assert health(podman_env, name) == 0
        # ...where a check fixed to plain HTTP on 9881, as before, finds nothing.
        fixed = podman(
            podman_env,
            "exec",
            name,
            *dockerfile_healthcheck(),
            "--web.listen-address=:9881",
            "--web.config.file=",
            check=False,
        )
        assert fixed.returncode == 1
        assert "unhealthy" in fixed.stderr


def test_runs_as_the_kubernetes_deployment_runs_it(podman_env, exporter_image, tmp_path):
    """The Deployment's arguments, environment, mounts and security context (read-only root
    filesystem, no capabilities, no new privileges, UID/GID from runAsUser/runAsGroup), in a
    podman pod beside a simulator that serves the subaccounts of the shipped exporter.yml and
    pushes callbacks to the Deployment's `webhooks` port with the mounted Secret's value."""
    deployment = kubernetes.only("base", "Deployment")["spec"]["template"]["spec"]
    spec, security = deployment["containers"][0], deployment["securityContext"]
    assert spec["securityContext"]["readOnlyRootFilesystem"] is True
    assert spec["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    config_text = next(
        doc["data"]["exporter.yml"]
        for doc in kubernetes.objects("base", "ConfigMap")
        if "exporter.yml" in doc.get("data", {})
    )
    subaccounts = [entry["id"] for entry in yaml.safe_load(config_text)["subaccounts"]]
    sources = {
        "config": tmp_path / "config",
        "api-key": tmp_path / "key",
        "webhook-auth": tmp_path / "auth",
    }
    for directory in sources.values():
        directory.mkdir()
        directory.chmod(0o755)
    callback_auth = "Bearer k8s-demo-callback-value"
    files = {
        sources["config"] / "exporter.yml": config_text,
        sources["api-key"] / "api-key": "k8s-demo-key\n",
        sources["webhook-auth"] / "auth-header": f"{callback_auth}\n",
    }
    for path, text in files.items():
        path.write_text(text)
        path.chmod(0o444)
    callback_port = next(p["containerPort"] for p in spec["ports"] if p["name"] == "webhooks")
    mounts = [f"--volume={sources[m['name']]}:{m['mountPath']}:ro" for m in spec["volumeMounts"]]
    env = [f"--env={e['name']}={e['value']}" for e in spec["env"]]
    port = free_port()
    # A pod's containers share one network namespace: here the simulator's, where the
    # exporter's port is published too (a podman pod would need a pause image).
    pod = f"{PREFIX}-k8s"
    names = [f"{pod}-simulator", f"{pod}-exporter"]
    for name in names[::-1]:
        podman(podman_env, "rm", "--force", "--ignore", name)
    try:
        podman(
            podman_env,
            "run",
            "--detach",
            "--name",
            names[0],
            "--publish",
            f"127.0.0.1:{port}:9881",
            # Callbacks as 8x8 would send them to the pod's `webhooks` port.
            f"--env=EIGHTBYEIGHT_WEBHOOK_AUTH_HEADER={callback_auth}",
            exporter_image,
            "simulate",
            "--web.listen-address=127.0.0.1:9882",
            "--api-key=k8s-demo-key",
            f"--push.url=http://127.0.0.1:{callback_port}/webhooks/8x8",
            *[f"--subaccount={s}" for s in subaccounts],
        )
        podman(
            podman_env,
            "run",
            "--detach",
            "--name",
            names[1],
            f"--network=container:{names[0]}",
            "--read-only",
            "--cap-drop=ALL",
            "--security-opt=no-new-privileges",
            f"--user={security['runAsUser']}:{security['runAsGroup']}",
            *mounts,
            *env,
            exporter_image,
            *spec["args"],
            "--api.base-url=http://127.0.0.1:9882",
        )
        url = f"http://127.0.0.1:{port}/metrics"
        try:
            samples = wait_until(
                lambda: (
                    (s := parse_samples(requests.get(url, timeout=5).text))
                    and all(value(s, "eightbyeight_up", subaccount=sub) == 1 for sub in subaccounts)
                    and all(
                        (
                            value(
                                s, "eightbyeight_webhook_events_total", subaccount=sub, event_type=e
                            )
                            or 0
                        )
                        > 0
                        for sub in subaccounts
                        for e in ("vnu", "vss")
                    )
                    and s
                ),
                timeout=60,
                what="every subaccount of exporter.yml up and its callbacks counted",
            )
        except AssertionError:
            pytest.fail(f"not up: {container_logs(podman_env, names[1])}")
        assert samples
        inspected = json.loads(podman(podman_env, "inspect", names[1]).stdout)[0]
        assert inspected["HostConfig"]["ReadonlyRootfs"] is True
        assert health(podman_env, names[1]) == 0
    finally:
        for name in names[::-1]:  # the exporter first: it holds the simulator's namespace
            podman(podman_env, "rm", "--force", "--ignore", "--time", "5", name, check=False)
