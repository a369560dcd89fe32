"""The copy-paste recipe of docs/webhooks.md runs as written: the simulator pushes callbacks to
the exporter's receiver, and the commands the page gives show them counted. Only the ports move
to free ones, and the page's `sleep` becomes a wait for the callbacks to arrive."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.support.exporters import names, parse_samples, value
from tests.support.processes import REPO, find_tool, free_port, wait_until

pytestmark = pytest.mark.slow

RECIPE_PAGE = REPO / "docs" / "webhooks.md"
DOCUMENTED_PORTS = ("9881", "9882", "9884")
SUBACCOUNT = "acme-prod"
NUMBERS = 25


def recipe_parts() -> tuple[str, str]:
    """The recipe's start (files and the two processes) and its checks, split at its wait."""
    text = RECIPE_PAGE.read_text(encoding="utf-8")
    match = re.search(r"<!-- webhooks: recipe -->\s*```sh\n(.*?)```", text, re.DOTALL)
    assert match, "docs/webhooks.md has no block marked 'webhooks: recipe'"
    start, wait, checks = match.group(1).partition("\nsleep 5\n")
    assert wait, "the recipe waits with `sleep 5` before its checks"
    lines = checks.rstrip("\n").splitlines()
    assert lines[-1] == "kill %1 %2", "the recipe ends by stopping both processes"
    return start, "\n".join(lines[:-1]) + "\n"


def localised(script: str, ports: dict[str, int]) -> str:
    """The script with each documented loopback address on this test's free port."""
    for documented, port in ports.items():
        script = script.replace(f"127.0.0.1:{documented}", f"127.0.0.1:{port}")
    return script


def recipe_env() -> dict[str, str]:
    """The environment of a shell where the exporter is installed (`eightbyeight-exporter` on
    the PATH), with none of this machine's EIGHTBYEIGHT_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EIGHTBYEIGHT_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def stop_group(process: subprocess.Popen) -> None:
    """SIGTERM to the shell and both processes it started, as `kill %1 %2` would; SIGKILL if
    they do not stop."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def test_the_webhooks_recipe_runs_as_written(tmp_path):
    for tool in ("openssl", "curl", "grep"):
        find_tool(tool)
    start, checks = recipe_parts()
    for documented in DOCUMENTED_PORTS:
        assert f"127.0.0.1:{documented}" in start, f"the recipe names 127.0.0.1:{documented}"
    ports = {documented: free_port() for documented in DOCUMENTED_PORTS}
    env = recipe_env()
    log = tmp_path / "recipe.log"
    with log.open("w") as output:
        shell = subprocess.Popen(
            ["bash", "-c", localised(start, ports) + "wait\n"],
            cwd=tmp_path,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        metrics_url = f"http://127.0.0.1:{ports['9881']}/metrics"

        def callbacks_counted() -> bool:
            samples = parse_samples(requests.get(metrics_url, timeout=5).text)
            events = {
                kind: value(
                    samples,
                    "eightbyeight_webhook_events_total",
                    subaccount=SUBACCOUNT,
                    event_type=kind,
                )
                for kind in ("vnu", "vss")
            }
            return all(events.values())

        try:
            wait_until(
                callbacks_counted, timeout=60, what="callbacks counted", process=shell, log_path=log
            )
        except AssertionError as failure:
            pytest.fail(f"{failure}\nthe recipe's output:\n{log.read_text()[-3000:]}")
        shown = subprocess.run(
            ["bash", "-c", localised(checks, ports)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        stop_group(shell)
    lines = shown.stdout.splitlines()
    assert shown.returncode == 0, shown.stderr
    assert lines[-1] == "401", "a callback without the Authorization value is refused"
    samples = parse_samples("\n".join(lines[:-1]) + "\n")
    assert value(samples, "eightbyeight_up", subaccount=SUBACCOUNT) == 1
    assert value(samples, "eightbyeight_pushed_virtual_numbers", subaccount=SUBACCOUNT) == NUMBERS
    assert value(
        samples, "eightbyeight_webhook_events_total", subaccount=SUBACCOUNT, event_type="vnu"
    )
    assert value(
        samples, "eightbyeight_webhook_events_total", subaccount=SUBACCOUNT, event_type="vss"
    )
    assert "eightbyeight_call_sessions_total" in names(samples), "call sessions are counted"
    # Neither made-up secret reaches the processes' logs.
    logged = log.read_text()
    for secret_file in ("api-key", "webhook-auth"):
        secret = (tmp_path / secret_file).read_text().strip()
        assert secret
        assert secret not in logged
