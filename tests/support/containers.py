"""Containers with podman: always removed, ports on 127.0.0.1 only."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from tests.support.processes import REPO, find_tool

# --- Containers (podman) ------------------------------------------------------------------------
# Every container is named `ebe-test-<pid>-<what>` and removed by that name, also on failure;
# ports are published on 127.0.0.1 only, on free ports. See docs/validation.md for why podman
# and stand-in base images.

IMAGE = "localhost/eightbyeight-exporter:local"
STAND_INS = REPO / ".ci" / "container-images"
CONF_SCRIPT = REPO / ".ci" / "containers-conf"
PREFIX = f"ebe-test-{os.getpid()}"

# (seconds) what the first image build took in this run, for the report in the test output.
BUILD_SECONDS: dict[str, float] = {}


def container_env(directory: Path) -> dict[str, str]:
    """The environment podman runs with: a containers.conf of the tests' own, docker format."""
    for tool in ("podman", "buildah", "mmdebstrap", "runc"):
        find_tool(tool)
    conf = subprocess.run(
        [str(CONF_SCRIPT), str(directory / "containers.conf")],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.strip()
    # HEALTHCHECK exists only in the docker image format; podman-compose builds through this.
    return {**os.environ, "CONTAINERS_CONF": conf, "BUILDAH_FORMAT": "docker"}


def podman(
    env: dict[str, str], *args: str, timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["podman", *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed: {result.stderr.strip()[-2000:]}")
    return result


def build_stand_ins(env: dict[str, str]) -> None:
    """The stand-in base, Prometheus and Alertmanager images (kept when they exist)."""
    subprocess.run([str(STAND_INS)], env=env, check=True, timeout=1200)


def build_exporter_image(env: dict[str, str]) -> float:
    """Build the Dockerfile unchanged as IMAGE; returns the seconds it took."""
    started = time.monotonic()
    podman(
        env,
        "build",
        "--format",
        "docker",
        "--network",
        "host",
        "--tag",
        IMAGE,
        "--file",
        str(REPO / "Dockerfile"),
        str(REPO),
        timeout=900,
    )
    return time.monotonic() - started


@contextmanager
def running_container(
    env: dict[str, str], what: str, run_args: Sequence[str], image: str, args: Sequence[str] = ()
) -> Iterator[str]:
    """`podman run -d` a container; yields its name; always `podman rm -f` it."""
    name = f"{PREFIX}-{what}"
    podman(env, "rm", "-f", "--ignore", name)
    try:
        podman(env, "run", "-d", "--name", name, *run_args, image, *args)
        yield name
    finally:
        podman(env, "rm", "-f", "--ignore", "--time", "5", name, check=False)


def container_logs(env: dict[str, str], name: str) -> str:
    result = podman(env, "logs", name, check=False)
    return (result.stdout + result.stderr)[-3000:]
