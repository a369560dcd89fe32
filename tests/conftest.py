import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import xdist

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

IMPLY_SLOW = ("e2e", "load", "container", "alone")
# Started first: the tests that want the machine to themselves, then the longest kinds, so
# that the workers' last minutes are not one long test running alone.
LONGEST_FIRST = ("alone", "container", "e2e", "load")
# Where the controller tells its workers that the `alone` tests are still to run.
PHASE_DIR = "EIGHTBYEIGHT_TESTS_PHASE_DIR"


@pytest.hookimpl(tryfirst=True)  # before xdist reads the xdist_group marks added here
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """e2e, load, container and alone tests are slow tests too: `-m "not slow"` leaves them out.

    The container tests share podman's image tags and build cache: they run in one worker,
    in order. So do the `alone` tests (see `pytest_runtest_protocol`). The longest kinds are
    collected first (a stable sort keeps every worker's collection the same, as xdist
    requires).
    """
    for item in items:
        if any(item.get_closest_marker(name) for name in IMPLY_SLOW):
            item.add_marker(pytest.mark.slow)
        if item.get_closest_marker("container"):
            item.add_marker(pytest.mark.xdist_group("podman"))
        if item.get_closest_marker("alone"):
            item.add_marker(pytest.mark.xdist_group("alone"))
    items.sort(key=started_at)


def started_at(item: pytest.Item) -> int:
    """0 for `alone`, 1 for the container tests, 2 for e2e, 3 for load, 4 for any other."""
    marked = [i for i, name in enumerate(LONGEST_FIRST) if item.get_closest_marker(name)]
    return min(marked, default=len(LONGEST_FIRST))


def pytest_configure(config: pytest.Config) -> None:
    refuse_lost_groups(config)
    if "PYTEST_XDIST_WORKER" not in os.environ and PHASE_DIR not in os.environ:
        # The controller, before it starts its workers (they inherit the environment).
        directory = tempfile.mkdtemp(prefix="eightbyeight-tests-")
        Path(directory, "alone-pending").touch()
        os.environ[PHASE_DIR] = directory
        config.stash[PHASE_DIR_KEY] = directory


def refuse_lost_groups(config: pytest.Config) -> None:
    """pytest-xdist 3.8 groups a worker's tests by a suffix it writes into their node IDs,
    which pytest 9.2 no longer lets it change: the groups would be silently lost and the
    container and `alone` tests run side by side (pytest-xdist issue #1386)."""
    if config.getoption("dist", "no") != "loadgroup" or pytest.version_tuple[:2] < (9, 2):
        return
    if tuple(int(part) for part in xdist.__version__.split(".")[:2]) <= (3, 8):
        raise pytest.UsageError(
            f"pytest {pytest.__version__} with pytest-xdist {xdist.__version__} does not keep "
            "xdist_group together: install the versions pyproject.toml allows (pytest<9.2)"
        )


def pytest_unconfigure(config: pytest.Config) -> None:
    made = config.stash.get(PHASE_DIR_KEY, None)
    if made:
        os.environ.pop(PHASE_DIR, None)
        shutil.rmtree(made, ignore_errors=True)


PHASE_DIR_KEY = pytest.StashKey[str]()


def pytest_collection_finish(session: pytest.Session) -> None:
    session.config.stash[HAS_ALONE_KEY] = any(is_alone(item) for item in session.items)


HAS_ALONE_KEY = pytest.StashKey[bool]()


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Tests marked `alone` run first, with no other test beside them.

    They are one xdist group, so one worker runs them back to back, first (they are collected
    first). Every other test, in every worker, waits until that worker has run the last of
    them and removed the `alone-pending` file the controller made before starting its
    workers. Without workers there is no one to wait for.
    """
    pending = pending_file()
    if pending and not is_alone(item) and item.config.stash.get(HAS_ALONE_KEY, False):
        wait_while_exists(pending, ALONE_PHASE_SECONDS)
    try:
        yield
    finally:
        last_alone = is_alone(item) and (nextitem is None or not is_alone(nextitem))
        if pending and last_alone:
            pending.unlink(missing_ok=True)


# Longer than the `alone` tests take together (~40 s): past it (their worker crashed, say) the
# others go on rather than wait for ever.
ALONE_PHASE_SECONDS = 300.0


def pending_file() -> Path | None:
    directory = os.environ.get(PHASE_DIR)
    if "PYTEST_XDIST_WORKER" not in os.environ or not directory:
        return None
    return Path(directory, "alone-pending")


def wait_while_exists(path: Path, most: float) -> None:
    """Waits on a condition another process makes true: not a sleep standing in for one."""
    give_up = time.monotonic() + most
    while path.exists() and time.monotonic() < give_up:
        time.sleep(0.05)


def is_alone(item: pytest.Item) -> bool:
    return item.get_closest_marker("alone") is not None


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
