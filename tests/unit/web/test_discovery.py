"""HTTP service discovery of /probe targets, and hashmod sharding, on real Prometheus servers.

The scrape configurations are those of docs/scaling.md, read from it, with only the exporter's
address, the intervals and the shard number filled in.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from exporter.config.settings import Settings, SubaccountConfig
from exporter.simulator import Simulator
from exporter.web.discovery import (
    DISCOVERY_PATH,
    discovered_subaccounts,
    request_address,
    serve_discovery,
    target_groups,
)
from tests.support.exporters import InProcessExporter
from tests.support.pki import bcrypt_hash
from tests.support.processes import REPO, find_tool, free_port, running_process, wait_until
from tests.support.stack import exporter_reading, query

KEY = "sd-test-key-2718"
DOCUMENTED_ADDRESS = "eightbyeight-exporter:9881"
# Enough subaccounts that two shards of a hash both get some (checked, not assumed).
SUBACCOUNTS = [f"acme-{name}" for name in ("apac", "emea", "amer", "dev", "lab", "ops", "qa")]


# --- the endpoint ------------------------------------------------------------------------------


def test_every_configured_subaccount_is_a_probe_target():
    with InProcessExporter(["--subaccount", "acme-prod", "--subaccount", "acme-dev"]) as exporter:
        response = exporter.get(DISCOVERY_PATH)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    address = exporter.url.removeprefix("http://")
    assert response.json() == [
        {
            "targets": [address],
            "labels": {
                "__metrics_path__": "/probe",
                "__param_target": sub,
                "instance": sub,
                "subaccount": sub,
            },
        }
        for sub in ("acme-prod", "acme-dev")
    ]


def test_the_target_address_is_the_one_the_client_used():
    with InProcessExporter(["--subaccount", "acme-prod"]) as exporter:
        groups = exporter.get(DISCOVERY_PATH, headers={"Host": "exporter.monitoring.svc:9881"})
        head = requests.head(exporter.url + DISCOVERY_PATH, timeout=10)
    assert groups.json()[0]["targets"] == ["exporter.monitoring.svc:9881"]
    assert head.status_code == 200
    assert head.content == b""


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("exporter:9881", "exporter:9881"),
        ("10.0.0.7:9881", "10.0.0.7:9881"),
        ("[fd00::7]:9881", "[fd00::7]:9881"),
        ("exporter", "exporter"),
        # Anything that is not host[:port] is not echoed into Prometheus' target list.
        ("evil/path:1", "127.0.0.1:9881"),
        ("a b", "127.0.0.1:9881"),
        ("", "127.0.0.1:9881"),
    ],
)
def test_request_address(host, expected):
    environ = {"HTTP_HOST": host, "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "9881"}
    assert request_address(environ) == expected


def test_without_a_usable_host_header_the_address_is_the_servers_own():
    server = {"SERVER_NAME": "192.0.2.10", "SERVER_PORT": "9881"}
    assert request_address(server) == "192.0.2.10:9881"
    assert request_address({**server, "HTTP_HOST": "a b"}) == "192.0.2.10:9881"
    assert request_address({"SERVER_NAME": "192.0.2.10"}) == "192.0.2.10"


def test_discovery_answers_head_with_the_headers_of_get_and_no_body():
    settings = Settings(subaccounts=(SubaccountConfig("acme-prod", None, "http://127.0.0.1:1"),))
    answers: dict[str, tuple[str, dict[str, str], bytes]] = {}
    for method in ("GET", "HEAD"):
        environ = {"REQUEST_METHOD": method, "HTTP_HOST": "exporter:9881"}

        def start_response(status: str, headers: list[tuple[str, str]], m: str = method) -> None:
            answers[m] = (status, dict(headers), b"")

        body = b"".join(serve_discovery(settings, environ, start_response))
        answers[method] = (*answers[method][:2], body)
    got, head = answers["GET"], answers["HEAD"]
    assert json.loads(got[2])[0]["targets"] == ["exporter:9881"]
    assert head[:2] == got[:2]
    assert head[1]["Content-Length"] == str(len(got[2]))
    assert head[2] == b""


def test_the_probe_allow_list_is_listed_and_obeyed():
    argv = [
        "--subaccount=acme-prod",
        "--subaccount=acme-old",
        "--probe.allowed-subaccounts=acme-prod,acme-new,acme-b",
    ]
    with InProcessExporter(argv) as exporter:
        listed = [g["labels"]["subaccount"] for g in exporter.get(DISCOVERY_PATH).json()]
    # acme-old would get a 403 from /probe: not a target.
    assert listed == ["acme-prod", "acme-b", "acme-new"]


def test_no_subaccounts_no_targets():
    with InProcessExporter([]) as exporter:
        assert exporter.get(DISCOVERY_PATH).json() == []


def test_target_groups_are_prometheus_http_sd():
    groups = target_groups(["x-1"], "h:1")
    for group in groups:
        assert set(group) == {"targets", "labels"}
        assert all(isinstance(v, str) for v in group["labels"].values())


def test_discovered_subaccounts_without_an_allow_list_are_the_configured_ones():
    with InProcessExporter(["--subaccount=acme-b", "--subaccount=acme-a"]) as exporter:
        assert discovered_subaccounts(exporter.settings) == ["acme-b", "acme-a"]


# --- the documented configurations on real Prometheus servers -----------------------------------


def documented_yaml(name: str) -> dict[str, Any]:
    """The YAML block that follows `<!-- scaling: NAME -->` in docs/scaling.md."""
    text = (REPO / "docs" / "scaling.md").read_text(encoding="utf-8")
    match = re.search(rf"<!-- scaling: {name} -->\s*```yaml\n(.*?)```", text, re.DOTALL)
    assert match, f"docs/scaling.md has no YAML block marked 'scaling: {name}'"
    return yaml.safe_load(match.group(1))


def localised(config: dict[str, Any], exporter_address: str, shard: int | None = None) -> str:
    """The documented configuration with this test's exporter, 1s intervals and a shard number."""
    text = yaml.safe_dump(config)
    assert DOCUMENTED_ADDRESS in text
    text = text.replace(DOCUMENTED_ADDRESS, exporter_address)
    doc = yaml.safe_load(text)
    for job in doc["scrape_configs"]:
        job.update(scrape_interval="1s", scrape_timeout="1s")
        for sd in job["http_sd_configs"]:
            sd["refresh_interval"] = "1s"
        for rule in job.get("relabel_configs", []):
            if rule.get("action") == "keep" and shard is not None:
                assert rule["regex"] == "0", "docs/scaling.md shows shard 0"
                rule["regex"] = str(shard)
    return yaml.safe_dump(doc)


@contextmanager
def prometheus(tmp_path: Path, config: str) -> Iterator[str]:
    binary = find_tool("prometheus")
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "prometheus.yml").write_text(config)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [
        binary,
        f"--config.file={tmp_path / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    with running_process(argv, f"{url}/-/ready", log_path=tmp_path / "prometheus.log"):
        yield url


def active_targets(prometheus_url: str) -> list[dict[str, Any]]:
    response = requests.get(f"{prometheus_url}/api/v1/targets?state=active", timeout=10)
    return response.json()["data"]["activeTargets"]


def scraped_subaccounts(prometheus_url: str, job: str = "eightbyeight-probe") -> dict[str, str]:
    """subaccount -> scrape URL of every target of `job` that is up."""
    return {
        t["labels"]["subaccount"]: t["scrapeUrl"]
        for t in active_targets(prometheus_url)
        if t["health"] == "up" and t["labels"]["job"] == job
    }


@pytest.fixture
def exporter(tmp_path):
    subaccounts = dict.fromkeys(SUBACCOUNTS, 5)
    with Simulator(subaccounts=subaccounts, api_key=KEY, seed=3) as sim:
        args = [f"--subaccount={s}" for s in SUBACCOUNTS]
        with exporter_reading(tmp_path, sim.base_url, KEY, *args) as url:
            yield url.removeprefix("http://")


@pytest.mark.e2e
def test_http_sd_job_discovers_and_probes_every_subaccount(exporter, tmp_path):
    config = yaml.safe_load(localised(documented_yaml("probe-job"), exporter))
    # The same job without `metrics_path`: the discovered __metrics_path__ alone selects /probe.
    bare = {k: v for k, v in config["scrape_configs"][0].items() if k != "metrics_path"}
    config["scrape_configs"].append({**bare, "job_name": "bare"})
    with prometheus(tmp_path / "prom", yaml.safe_dump(config)) as prom:
        for job in ("eightbyeight-probe", "bare"):
            wait_until(
                lambda job=job: len(scraped_subaccounts(prom, job)) == len(SUBACCOUNTS),
                timeout=60,
                interval=0.5,
                what=f"every subaccount scraped by {job}",
            )
            for sub, url in scraped_subaccounts(prom, job).items():
                assert url == f"http://{exporter}/probe?target={sub}"
        # Each subaccount's own series, under its own target, once: the target's `subaccount`
        # and the exporter's agree, so no exported_subaccount appears.
        wait_until(
            lambda: (
                len(query(prom, 'eightbyeight_up{job="eightbyeight-probe"} == 1'))
                == len(SUBACCOUNTS)
            ),
            timeout=30,
            what="eightbyeight_up for every subaccount",
        )
        ups = query(prom, 'eightbyeight_up{job="eightbyeight-probe"}')
        assert sorted(r["metric"]["subaccount"] for r in ups) == sorted(SUBACCOUNTS)
        assert all(r["metric"]["instance"] == r["metric"]["subaccount"] for r in ups)
        assert query(prom, '{exported_subaccount!=""}') == []
        up = query(prom, 'up{job="eightbyeight-probe"}')
        assert sorted(r["metric"]["subaccount"] for r in up) == sorted(SUBACCOUNTS)


@pytest.mark.e2e
def test_two_hashmod_shards_split_the_subaccounts(exporter, tmp_path):
    config = documented_yaml("sharded-job")
    with (
        prometheus(tmp_path / "shard0", localised(config, exporter, shard=0)) as shard0,
        prometheus(tmp_path / "shard1", localised(config, exporter, shard=1)) as shard1,
    ):

        def settled() -> bool:
            # Every discovered target is either kept and up, or dropped by the hashmod rule.
            return all(
                len(scraped_subaccounts(p)) == len(active_targets(p)) and active_targets(p)
                for p in (shard0, shard1)
            ) and sum(len(active_targets(p)) for p in (shard0, shard1)) >= len(SUBACCOUNTS)

        wait_until(settled, timeout=60, interval=0.5, what="both shards scraping")
        first, second = set(scraped_subaccounts(shard0)), set(scraped_subaccounts(shard1))
        assert first.isdisjoint(second), f"scraped twice: {first & second}"
        assert first | second == set(SUBACCOUNTS), f"lost: {set(SUBACCOUNTS) - first - second}"
        assert first
        assert second
        for prom, kept in ((shard0, first), (shard1, second)):
            wait_until(
                lambda prom=prom, kept=kept: (
                    {r["metric"]["subaccount"] for r in query(prom, "eightbyeight_up == 1")} == kept
                ),
                timeout=30,
                what="each shard's series",
            )


def test_discovery_sits_behind_the_web_configs_basic_auth(tmp_path):
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users:\n  prometheus: '{bcrypt_hash('sd-password')}'\n")
    # Built as the CLI builds it (exporter/app.py): the web config wraps every route.
    argv = ["--subaccount=acme-prod", f"--web.config.file={web}"]
    with InProcessExporter(argv, api_key=KEY) as exporter:
        anonymous = exporter.get(DISCOVERY_PATH, timeout=10)
        allowed = exporter.get(DISCOVERY_PATH, auth=("prometheus", "sd-password"), timeout=10)
    assert anonymous.status_code == 401
    assert allowed.status_code == 200
    assert [g["labels"]["subaccount"] for g in allowed.json()] == ["acme-prod"]
