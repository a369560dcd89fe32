"""Processes and servers that are always stopped, readiness polled: tools, free ports, waiting."""

from __future__ import annotations

import functools
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").lower() == "true"
# How often in-process servers look for shutdown(): each stop waits up to this long.
POLL_INTERVAL = 0.02

# Debian installs Alertmanager as prometheus-alertmanager; upstream tarballs call it alertmanager.
_TOOL_ALIASES = {"alertmanager": ("prometheus-alertmanager", "alertmanager")}


def find_tool(name: str) -> str:
    """Path of an external tool; skip locally when missing, fail under CI=true."""
    for candidate in _TOOL_ALIASES.get(name, (name,)):
        path = shutil.which(candidate)
        if path:
            return path
    message = (
        f"{name} not found: install it with "
        "'apt-get update && apt-get install -y prometheus prometheus-alertmanager' "
        "(or run .ci/run, which does)"
    )
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


# The kernel hands out ports from its ephemeral range both for bind(port 0) and as the local
# port of every outgoing connection, so such a port is free only the moment it is asked: another
# worker's server or any connection of the suite's may take it before the process it was meant
# for binds it (seen: one fresh-clone run in twelve). Ports below that range are never handed out
# by the kernel: each test worker takes them one after another from a block of its own.
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST_TEST_PORT = 10000
_MIN_BLOCK = 64


def worker_ports(
    worker: str | None = None, workers: int | None = None, ephemeral_low: int | None = None
) -> range:
    """This test worker's block of ports below the kernel's ephemeral range (empty if that range
    starts too low to leave every worker a block). The worker is pytest-xdist's ("gw3": 3)."""
    worker = worker if worker is not None else os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    workers = (
        workers if workers is not None else int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    )
    low = ephemeral_low if ephemeral_low is not None else _ephemeral_low()
    index = int(worker.removeprefix("gw") or 0)
    size = (low - LOWEST_TEST_PORT) // max(workers, 1)
    if size < _MIN_BLOCK or index >= workers:
        return range(0)
    start = LOWEST_TEST_PORT + index * size
    return range(start, start + size)


@functools.cache  # read once: free_port() asks for the block at every call
def _ephemeral_low() -> int:
    try:
        return int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


_port_lock = threading.Lock()
_next_port = 0  # index into worker_ports() of the next port to try


def free_port() -> int:
    """A loopback port nothing holds now, from this worker's block (see worker_ports), each
    handed out once until the block wraps round; from the kernel if the worker has no block."""
    global _next_port
    ports = worker_ports()
    with _port_lock:
        for _ in range(len(ports)):
            port = ports[_next_port % len(ports)]
            _next_port += 1
            if port_is_free(port):
                return port
    return _kernel_port()


def port_is_free(port: int) -> bool:
    """Whether 127.0.0.1:port can be bound without SO_REUSEADDR: no socket uses the port, not
    even one waiting out TIME_WAIT."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _kernel_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def listening_inodes(port: int) -> set[str]:
    """Socket inodes listening on 127.0.0.1:port (or on every IPv4 address), from /proc."""
    wanted = {f"0100007F:{port:04X}", f"00000000:{port:04X}"}
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] in wanted and fields[3] == "0A":  # 0A: LISTEN
            inodes.add(fields[9])
    return inodes


def owns_listener(pid: int, port: int) -> bool:
    """Whether process `pid` holds the socket listening on `port`, not some other process.

    A port from free_port() is free only when it is asked: another process (another test
    worker) may bind it before the process it was meant for does, which then fails to start,
    while a readiness check on that port is answered by the other one.
    """
    inodes = {f"socket:[{inode}]" for inode in listening_inodes(port)}
    if not inodes:
        return False
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            if os.readlink(fd) in inodes:
                return True
        except OSError:
            continue  # closed meanwhile
    return False


def wait_until(
    condition: Callable[[], object],
    timeout: float = 30.0,
    interval: float = 0.1,
    what: str = "",
    *,
    process: subprocess.Popen | None = None,
    log_path: Path | None = None,
) -> object:
    """Poll until condition() is truthy; a readiness check, never a fixed sleep.

    With `process`, a process that has exited fails the wait at once, with its exit code and
    the tail of its output (`log_path`, or its stderr pipe): waiting on would only hide why.
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(
                f"{process.args[0] if isinstance(process.args, list) else process.args} exited "
                f"with {process.returncode} while waiting for {what or condition}: "
                f"{_output_tail(process, log_path)}"
            )
        try:
            result = condition()
        except Exception as exc:  # noqa: BLE001 - any failure means "not yet"
            last_error = exc
        else:
            if result:
                return result
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout}s waiting for {what or condition}: {last_error}"
    )


def _output_tail(process: subprocess.Popen, log_path: Path | None) -> str:
    if log_path is not None:
        return log_path.read_text(errors="replace")[-2000:]
    if process.stderr is not None:
        data = process.stderr.read()
        return (data.decode(errors="replace") if isinstance(data, bytes) else data)[-2000:]
    return "(output not captured)"


def http_ok(url: str, **kwargs: object) -> bool:
    return requests.get(url, timeout=2, **kwargs).status_code == 200


@contextmanager
def running_process(
    argv: Sequence[str],
    ready_url: str | None = None,
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 60.0,
    log_path: Path | None = None,
) -> Iterator[subprocess.Popen]:
    """Start a process, wait for ready_url to answer 200, always stop it afterwards."""
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(
        list(argv), env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
    )
    try:
        if ready_url:
            wait_until(
                lambda: http_ok(ready_url),
                timeout=timeout,
                what=f"{argv[0]} at {ready_url}",
                process=proc,
                log_path=log_path,
            )
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if log_path:
            log.close()
