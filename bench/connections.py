"""Idle connections on the webhook port against /metrics: answer time and threads.

    python -m bench.connections [COUNT]

builds the exporter in this process as the command line does (both listeners on 127.0.0.1,
default limits, no subaccounts so /metrics calls no API), opens COUNT (default 3,000) idle
connections to the webhook listener, then times /metrics answers and counts the process's
threads; prints one JSON object. The soft file-descriptor limit is raised to fit, up to the hard
limit, and restored.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import resource
import socket
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from exporter.app import build_exporter
from exporter.config.flags import build_parser
from exporter.config.settings import settings_from_flags
from exporter.web.server import serve_in_thread

ENV = {"EIGHTBYEIGHT_API_KEY": "bench-key", "EIGHTBYEIGHT_WEBHOOK_AUTH_HEADER": "Bearer bench"}


def os_threads() -> int:
    """Threads of this process as the kernel counts them (what TasksMax limits)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return threading.active_count()


@contextlib.contextmanager
def raised_file_limit(wanted: int) -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _wait(condition: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the exporter did not get there in time")
        time.sleep(0.01)


def _get(port: int, path: str) -> tuple[int, float]:
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status, time.perf_counter() - started
    finally:
        conn.close()


def measure_idle_connections(count: int = 3_000, answers: int = 5) -> dict[str, Any]:
    """Open `count` idle connections to the webhook port; /metrics answer times and threads."""
    args = build_parser().parse_args(
        ["--web.listen-address", "127.0.0.1:0", "--webhook.listen-address", "127.0.0.1:0"]
    )
    exporter = build_exporter(settings_from_flags(args, ENV))
    web, hooks = exporter.server, exporter.callbacks
    assert hooks is not None
    threads_before, os_threads_before = threading.active_count(), os_threads()
    serving = [serve_in_thread(web, 0.05), serve_in_thread(hooks, 0.05)]
    idle: list[socket.socket] = []
    try:
        _wait(
            lambda: threading.active_count() == threads_before + web.max_threads + hooks.max_threads
        )
        _, quiet = _get(web.server_address[1], "/metrics")
        hook_port = hooks.server_address[1]
        started = time.perf_counter()
        for _ in range(count):
            idle.append(socket.create_connection(("127.0.0.1", hook_port), timeout=60))
        opened = time.perf_counter() - started
        cap = min(count, hooks.max_connections)
        _wait(lambda: hooks.connections == cap)
        timed = [_get(web.server_address[1], "/metrics") for _ in range(answers)]
        result = {
            "idle_connections": len(idle),
            "seconds_to_open": round(opened, 3),
            "webhook_connections_open": hooks.connections,
            "webhook_max_connections": hooks.max_connections,
            "metrics_status": timed[-1][0],
            "metrics_seconds_median": round(statistics.median(t for _, t in timed), 4),
            "metrics_seconds_max": round(max(t for _, t in timed), 4),
            "metrics_seconds_without_idle": round(quiet, 4),
            "threads_before": threads_before,
            "threads_during": threading.active_count(),
            "threads_added": threading.active_count() - threads_before,
            "os_threads_before": os_threads_before,
            "os_threads_during": os_threads(),
            "max_threads": web.max_threads + hooks.max_threads,
        }
    finally:
        for sock in idle:
            sock.close()
        for server in (web, hooks):
            server.shutdown()
            server.server_close()
        for thread in serving:
            thread.join(10)
    return result


if __name__ == "__main__":
    wanted = int(sys.argv[1]) if len(sys.argv) > 1 else 3_000
    with raised_file_limit(wanted + 1_024):
        print(json.dumps(measure_idle_connections(wanted), indent=2))
