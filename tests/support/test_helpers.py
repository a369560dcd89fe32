"""The test helpers themselves: a process that dies while awaited is reported at once, an
exporter is only taken as started when it is the one listening on its port, and the ports handed
out are ones neither the kernel nor another worker hands out too.

"At once" without betting on the machine's speed: the wait is two minutes, so a helper that
waited it out takes that long, and one that noticed the exit never takes half of it.
"""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
import threading
import time

import pytest
import requests

from tests.support import exporters, processes
from tests.support.exporters import exporter_process
from tests.support.processes import (
    LOWEST_TEST_PORT,
    free_port,
    owns_listener,
    port_is_free,
    wait_until,
    worker_ports,
)


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


def test_a_listener_is_owned_by_the_process_that_bound_it():
    with socket.create_server(("127.0.0.1", 0)) as mine:
        port = mine.getsockname()[1]
        other = subprocess.Popen(
            [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
        )
        try:
            assert owns_listener(os.getpid(), port)
            assert not owns_listener(other.pid, port)
        finally:
            other.communicate(b"")
    assert not owns_listener(os.getpid(), port)  # closed: nobody listens there now


@pytest.mark.slow
def test_an_exporter_whose_port_another_process_took_starts_on_another(tmp_path, monkeypatch):
    # Another process (a test worker's fake API) binds the port free_port() gave before the
    # exporter could: its answers must not pass for the exporter's, and a new port is tried.
    squatter = socket.create_server(("127.0.0.1", 0))
    taken = squatter.getsockname()[1]
    answering = threading.Event()

    def answer_everything() -> None:
        answering.set()
        while True:
            try:
                conn, _ = squatter.accept()
            except OSError:
                return  # closed: the test is over
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")

    thread = threading.Thread(target=answer_everything, name="squatter")
    thread.start()
    answering.wait()
    ports = iter([taken])
    real_free_port = exporters.free_port
    monkeypatch.setattr(exporters, "free_port", lambda: next(ports, None) or real_free_port())
    try:
        with exporter_process(
            ["--subaccount", "acme-prod"], {"EIGHTBYEIGHT_API_KEY": "k"}, tmp_path / "exporter.log"
        ) as (url, pid):
            assert url != f"http://127.0.0.1:{taken}"
            assert owns_listener(pid, int(url.rsplit(":", 1)[1]))
            assert requests.get(f"{url}/-/healthy", timeout=10).text == "OK\n"
    finally:
        squatter.shutdown(socket.SHUT_RDWR)  # wakes the accept() the thread is blocked in
        squatter.close()
        thread.join(timeout=10)
    assert not thread.is_alive()


def test_workers_get_blocks_of_ports_below_the_kernels_that_do_not_overlap():
    blocks = [worker_ports(f"gw{index}", 4, 32768) for index in range(4)]
    assert all(len(block) >= 1000 for block in blocks)
    assert blocks[0].start == LOWEST_TEST_PORT
    assert blocks[-1].stop <= 32768  # the kernel's ephemeral range starts there
    for first, second in itertools.pairwise(blocks):
        assert first.stop <= second.start
    # Without xdist the one process is worker 0 of 1; too low a kernel range leaves no block.
    assert worker_ports("gw0", 1, 32768) == range(LOWEST_TEST_PORT, 32768)
    assert worker_ports("gw0", 4, LOWEST_TEST_PORT + 100) == range(0)


def test_free_ports_are_this_workers_each_once_and_never_one_in_use(monkeypatch):
    block = worker_ports()
    assert len(block) > 0, "this machine's ephemeral range leaves the workers no block"
    first = free_port()
    assert first in block
    with socket.create_server(("127.0.0.1", first + 1)):  # taken by someone else meanwhile
        assert not port_is_free(first + 1)
        handed = [free_port() for _ in range(5)]
    assert first + 1 not in handed
    assert len(set(handed)) == 5
    assert first not in handed
    assert all(port in block for port in handed)
    # When the block has no free port left, the kernel picks one.
    monkeypatch.setattr(processes, "worker_ports", lambda: range(first, first + 1))
    with socket.create_server(("127.0.0.1", first)):
        assert free_port() != first
