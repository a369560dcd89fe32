import pytest

from tests.harness import IN_CI

IMPLY_SLOW = ("e2e", "load")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """e2e and load tests are slow tests too: `-m "not slow"` leaves them out."""
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
