from pathlib import Path

import pytest
import xdist

from tests.support.containers import (
    BUILD_SECONDS,
    IMAGE,
    build_exporter_image,
    build_stand_ins,
    container_env,
)
from tests.support.pki import Pki, make_pki
from tests.support.processes import IN_CI

IMPLY_SLOW = ("e2e", "load", "container")
# Markers set by folder: every test under tests/process/ starts exporter processes or loads one.
FOLDER_MARKERS = {"process": "slow"}
TESTS = Path(__file__).resolve().parent
# Started first: the longest kinds, so that the workers' last minutes are not one long test
# running alone.
LONGEST_FIRST = ("container", "e2e", "load")


@pytest.hookimpl(tryfirst=True)  # before xdist reads the xdist_group marks added here
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """e2e, load and container tests are slow tests too: `-m "not slow"` leaves them out.

    The container tests share podman's image tags and build cache: they run in one worker,
    in order. The longest kinds are collected first (a stable sort keeps every worker's
    collection the same, as xdist requires).
    """
    for item in items:
        folder = Path(item.path).resolve().relative_to(TESTS).parts[0]
        if folder in FOLDER_MARKERS:
            item.add_marker(FOLDER_MARKERS[folder])
        if any(item.get_closest_marker(name) for name in IMPLY_SLOW):
            item.add_marker(pytest.mark.slow)
        if item.get_closest_marker("container"):
            item.add_marker(pytest.mark.xdist_group("podman"))
    items.sort(key=started_at)


def started_at(item: pytest.Item) -> int:
    """0 for the container tests, 1 for e2e, 2 for load, 3 for any other."""
    marked = [i for i, name in enumerate(LONGEST_FIRST) if item.get_closest_marker(name)]
    return min(marked, default=len(LONGEST_FIRST))


def pytest_configure(config: pytest.Config) -> None:
    refuse_lost_groups(config)


def refuse_lost_groups(config: pytest.Config) -> None:
    """pytest-xdist 3.8 groups a worker's tests by a suffix it writes into their node IDs,
    which pytest 9.2 no longer lets it change: the groups would be silently lost and the
    container tests run side by side (pytest-xdist issue #1386)."""
    if config.getoption("dist", "no") != "loadgroup" or pytest.version_tuple[:2] < (9, 2):
        return
    if tuple(int(part) for part in xdist.__version__.split(".")[:2]) <= (3, 8):
        raise pytest.UsageError(
            f"pytest {pytest.__version__} with pytest-xdist {xdist.__version__} does not keep "
            "xdist_group together: install the versions pyproject.toml allows (pytest<9.2)"
        )


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
