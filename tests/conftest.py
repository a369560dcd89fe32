from pathlib import Path

import pytest

from tests.harness import (
    BUILD_SECONDS,
    IMAGE,
    IN_CI,
    Pki,
    build_exporter_image,
    build_stand_ins,
    container_env,
    make_pki,
)

IMPLY_SLOW = ("e2e", "load", "container")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """e2e, load and container tests are slow tests too: `-m "not slow"` leaves them out."""
    for item in items:
        if any(item.get_closest_marker(name) for name in IMPLY_SLOW):
            item.add_marker(pytest.mark.slow)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    """Under CI=true nothing may be skipped: a skip there means a tool CI failed to install."""
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, which must run everything: {report.longrepr}"


# --- Session fixtures shared by several test modules ----------------------------------------------


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """Test certificates (CA, server, clients), generated once per session."""
    return make_pki(Path(tmp_path_factory.mktemp("pki")))


@pytest.fixture(scope="session")
def podman_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """podman's environment, with the stand-in base images built (kept when they exist)."""
    env = container_env(tmp_path_factory.mktemp("podman"))
    build_stand_ins(env)
    return env


@pytest.fixture(scope="session")
def exporter_image(podman_env: dict[str, str]) -> str:
    """The Dockerfile built unchanged, once per session."""
    BUILD_SECONDS.setdefault("exporter image", build_exporter_image(podman_env))
    return IMAGE
