"""The monitoring stack: Prometheus, Alertmanager and a receiver of its notifications."""

from __future__ import annotations

import copy
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests
import yaml

from exporter.web.server import serve_in_thread
from tests.support.exporters import exporter_process
from tests.support.processes import POLL_INTERVAL, REPO, find_tool, free_port, running_process

# --- The monitoring stack: Prometheus, Alertmanager, webhook receiver ----------------------------

RULES_DIR = REPO / "prometheus" / "rules"


@contextmanager
def exporter_reading(tmp_path: Path, base_url: str, api_key: str, *args: str) -> Iterator[str]:
    """The exporter as a subprocess reading the API at `base_url`; yields its base URL."""
    argv = ["--api.base-url", base_url, *args]
    env = {"EIGHTBYEIGHT_API_KEY": api_key}
    with exporter_process(argv, env, tmp_path / "exporter.log") as (url, _pid):
        yield url


def fast_rules(tmp_path: Path, for_duration: str = "5s") -> list[Path]:
    """Copies of the shipped rule files with every `for:` shortened, for tests in seconds."""
    out = []
    for rule_file in sorted(RULES_DIR.glob("*.yml")):
        text = re.sub(r"(?m)^(\s+for:\s*)\S+\s*$", rf"\g<1>{for_duration}", rule_file.read_text())
        copy = tmp_path / f"rules-{rule_file.name}"
        copy.write_text(text)
        out.append(copy)
    return out


@contextmanager
def prometheus_process(
    tmp_path: Path,
    exporter_url: str,
    rule_files: list[Path] = (),
    alertmanager_url: str | None = None,
    interval: str = "1s",
) -> Iterator[str]:
    """A real Prometheus scraping the exporter as job `eightbyeight`; yields its URL."""
    config: dict[str, Any] = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [
            {
                "job_name": "eightbyeight",
                "scrape_timeout": interval,
                "static_configs": [{"targets": [exporter_url.removeprefix("http://")]}],
            }
        ],
    }
    if alertmanager_url:
        config["alerting"] = {
            "alertmanagers": [
                {"static_configs": [{"targets": [alertmanager_url.removeprefix("http://")]}]}
            ]
        }
    with prometheus_with_config(tmp_path, config) as url:
        yield url


@contextmanager
def prometheus_with_config(tmp_path: Path, config: dict[str, Any]) -> Iterator[str]:
    """A real Prometheus running `config` (written to tmp_path), ready; yields its URL."""
    binary = find_tool("prometheus")
    port = free_port()
    config_path = tmp_path / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    url = f"http://127.0.0.1:{port}"
    argv = [
        binary,
        f"--config.file={config_path}",
        f"--storage.tsdb.path={tmp_path / 'prometheus-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    with running_process(argv, f"{url}/-/ready", log_path=tmp_path / "prometheus.log"):
        yield url


@contextmanager
def alertmanager_process(tmp_path: Path, config: dict[str, Any]) -> Iterator[str]:
    """A real Alertmanager (clustering off) with the given configuration; yields its URL."""
    binary = find_tool("alertmanager")
    port = free_port()
    config_path = tmp_path / "alertmanager.yml"
    config_path.write_text(yaml.safe_dump(config))
    url = f"http://127.0.0.1:{port}"
    argv = [
        binary,
        f"--config.file={config_path}",
        f"--storage.path={tmp_path / 'alertmanager-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
        "--log.level=warn",
    ]
    with running_process(argv, f"{url}/-/ready", log_path=tmp_path / "alertmanager.log"):
        yield url


def alertmanager_config(webhook_url: str) -> dict[str, Any]:
    """The shipped configuration, with its receivers sent to the test and timers shortened."""
    config = copy.deepcopy(yaml.safe_load((REPO / "prometheus/alertmanager.yml").read_text()))
    config["route"].update(group_wait="1s", group_interval="1s", repeat_interval="1h")
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = f"{webhook_url}/{receiver['name']}"
            hook["send_resolved"] = True
    return config


def last_rule_evaluation(prometheus_url: str, alertname: str) -> float:
    """Wall-clock time of the last evaluation of the rule group holding `alertname`."""
    groups = requests.get(f"{prometheus_url}/api/v1/rules", timeout=10).json()["data"]["groups"]
    for group in groups:
        if any(rule.get("name") == alertname for rule in group["rules"]):
            stamp = re.sub(r"(\.\d{6})\d+", r"\1", group["lastEvaluation"])
            return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    raise AssertionError(f"no rule group holds {alertname}")


def alertmanager_alerts(alertmanager_url: str, alertname: str) -> list[dict[str, Any]]:
    """Every alert Alertmanager holds under that name: active, silenced or inhibited."""
    response = requests.get(
        f"{alertmanager_url}/api/v2/alerts",
        params={"filter": f'alertname="{alertname}"'},
        timeout=10,
    )
    response.raise_for_status()
    return response.json()


def rule_errors(prometheus_url: str) -> list[str]:
    """Every rule that did not evaluate cleanly, with its last error."""
    groups = requests.get(f"{prometheus_url}/api/v1/rules", timeout=10).json()["data"]["groups"]
    return [
        f"{rule['name']}: {rule.get('lastError')}"
        for group in groups
        for rule in group["rules"]
        if rule.get("health") != "ok"
    ]


def query(prometheus_url: str, expr: str) -> list[dict[str, Any]]:
    """An instant query; raises on a query error."""
    response = requests.get(f"{prometheus_url}/api/v1/query", params={"query": expr}, timeout=10)
    body = response.json()
    if body.get("status") != "success":
        raise AssertionError(f"query {expr!r} failed: {body.get('error')}")
    return body["data"]["result"]


class WebhookReceiver:
    """Collects Alertmanager webhook notifications on 127.0.0.1."""

    def __init__(self) -> None:
        self.notifications: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                payload = json.loads(self.rfile.read(length))
                payload["_path"] = self.path
                with receiver._lock:
                    receiver.notifications.append(payload)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def alerts(self) -> list[tuple[str, dict[str, Any]]]:
        """Every alert delivered so far, with the path (receiver) it was sent to."""
        with self._lock:
            return [(n["_path"], a) for n in self.notifications for a in n["alerts"]]

    def __enter__(self) -> WebhookReceiver:
        self._thread = serve_in_thread(self._server, POLL_INTERVAL)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
