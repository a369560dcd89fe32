"""SIGTERM: the process stops taking connections, lets scrapes in flight finish (for at most
--web.shutdown-grace), then exits 0. Real processes against a slow FakeApi."""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.support.exporters import parse_samples, value
from tests.support.fake_api import FakeApi, Reply, number, numbers_body
from tests.support.processes import REPO, free_port, running_process, wait_until

pytestmark = pytest.mark.slow

SUB = "acme-prod"


def exporter_command(api: FakeApi, *flags: str) -> tuple[list[str], str]:
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "exporter",
        "--web.listen-address",
        f"127.0.0.1:{port}",
        "--api.base-url",
        api.base_url,
        "--subaccount",
        SUB,
        *flags,
    ]
    return argv, f"http://127.0.0.1:{port}"


def env() -> dict[str, str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("EIGHTBYEIGHT_")}
    full["EIGHTBYEIGHT_API_KEY"] = "shutdown-test-key"
    return full


def refuses_connections(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def test_sigterm_lets_the_scrape_in_flight_finish_then_exits_0(tmp_path: Path):
    release = threading.Event()

    def slow(path: str, headers: dict[str, str]) -> Reply:
        release.wait(30)
        return Reply.json(numbers_body([number()]))

    log = tmp_path / "exporter.log"
    with FakeApi(slow) as api:
        argv, url = exporter_command(api, "--api.timeout", "30s")
        with (
            running_process(argv, f"{url}/-/healthy", env=env(), cwd=REPO, log_path=log) as proc,
            ThreadPoolExecutor(1) as pool,
        ):
            scrape = pool.submit(requests.get, url + "/metrics", timeout=30)
            wait_until(lambda: api.count == 1, timeout=10, what="the fetch under way")
            proc.send_signal(signal.SIGTERM)
            # Draining: no new connections, the process still running for the one in flight.
            wait_until(lambda: refuses_connections(url), timeout=10, what="the port closed")
            assert proc.poll() is None
            release.set()
            answer = scrape.result(30)
            assert answer.status_code == 200
            assert value(parse_samples(answer.text), "eightbyeight_up", subaccount=SUB) == 1
            assert proc.wait(timeout=15) == 0
    text = log.read_text()
    assert 'msg="shutting down" in_flight=1 grace=10s' in text
    assert "Traceback" not in text


def test_the_grace_is_bounded(tmp_path: Path):
    log = tmp_path / "exporter.log"
    with FakeApi(Reply(hang=True)) as api:
        argv, url = exporter_command(api, "--api.timeout", "60s", "--web.shutdown-grace", "1s")
        with (
            running_process(argv, f"{url}/-/healthy", env=env(), cwd=REPO, log_path=log) as proc,
            ThreadPoolExecutor(1) as pool,
        ):
            scrape = pool.submit(requests.get, url + "/metrics", timeout=60)
            wait_until(lambda: api.count == 1, timeout=10, what="the fetch under way")
            signalled = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            # The scrape in flight would last the minute the API hangs; the 1 s grace ends it
            # long before half of that on any machine.
            assert proc.wait(timeout=90) == 0
            assert time.monotonic() - signalled < 30
            with pytest.raises(requests.ConnectionError):
                scrape.result(30)
    assert "shutdown grace ran out" in log.read_text()


def test_a_second_sigterm_stops_at_once(tmp_path: Path):
    log = tmp_path / "exporter.log"
    with FakeApi(Reply(hang=True)) as api:
        argv, url = exporter_command(api, "--api.timeout", "60s", "--web.shutdown-grace", "60s")
        with (
            running_process(argv, f"{url}/-/healthy", env=env(), cwd=REPO, log_path=log) as proc,
            ThreadPoolExecutor(1) as pool,
        ):
            pool.submit(requests.get, url + "/metrics", timeout=60)
            wait_until(lambda: api.count == 1, timeout=10, what="the fetch under way")
            proc.send_signal(signal.SIGTERM)
            wait_until(lambda: "shutting down" in log.read_text(), timeout=10)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=15) == 0
    assert "stopped without waiting" in log.read_text()
