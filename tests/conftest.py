import sys
from pathlib import Path

import pytest

# Make tests/support.py importable as `support` from every test module.
sys.path.insert(0, str(Path(__file__).resolve().parent))

# Fixtures shared by several test modules.
from containers import exporter_image, podman_env  # noqa: F401
from support import IN_CI
from test_webconfig import pki  # noqa: F401


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    """Under CI=true nothing may be skipped: a skip there means a tool CI failed to install."""
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, which must run everything: {report.longrepr}"
