"""The test helpers themselves: a process that dies while awaited is reported at once.

"At once" without betting on the machine's speed: the wait is two minutes, so a helper that
waited it out takes that long, and one that noticed the exit never takes half of it.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.support.exporters import exporter_process
from tests.support.processes import wait_until


def test_wait_until_fails_at_once_when_the_process_has_exited():
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stderr.write('cannot start: boom'); sys.exit(3)"],
        stderr=subprocess.PIPE,
    )
    started = time.monotonic()
    with pytest.raises(AssertionError) as caught:
        wait_until(lambda: False, timeout=120, what="a server", process=proc)
    assert time.monotonic() - started < 60
    assert "exited with 3" in str(caught.value)
    assert "cannot start: boom" in str(caught.value)
    proc.stderr.close()


@pytest.mark.slow
def test_an_exporter_that_fails_at_start_up_is_reported_at_once(tmp_path):
    # A readiness check other than /-/healthy (as for TLS) goes through wait_until: the exit
    # of the exporter (here: a config file that does not exist) must end the wait at once.
    started = time.monotonic()
    with (
        pytest.raises(AssertionError) as caught,
        exporter_process(
            ["--subaccount", "acme-prod", "--config.file", str(tmp_path / "missing.yml")],
            {"EIGHTBYEIGHT_API_KEY": "k"},
            tmp_path / "exporter.log",
            ready=lambda url: False,
            ready_timeout=120,
        ),
    ):
        pass
    assert time.monotonic() - started < 60
    assert "exited with 2" in str(caught.value)
    assert "missing.yml does not exist" in str(caught.value)
