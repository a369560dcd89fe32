"""deploy/kubernetes: every overlay rendered by `kubectl kustomize`, every object validated
against schemas, and the manifests held to the exporter they deploy.

Schemas, all from installed packages (nothing is fetched at run time):
- built-in kinds: kubernetes-validate's Kubernetes 1.32 OpenAPI schemas in strict mode (unknown
  fields are errors, as `kubectl apply --validate=strict` makes them);
- ServiceMonitor and PrometheusRule: JSON schemas generated from the models that
  cloudcoil-models-prometheus-operator generates from the Prometheus Operator's CRDs, made
  strict the same way (every object with known properties refuses unknown ones).
"""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import requests
import yaml

from exporter.config.flags import build_parser
from exporter.config.settings import settings_from_flags
from tests.support.callbacks import CALLBACK_AUTH, vss
from tests.support.exporters import InProcessExporter, parse_samples, value
from tests.support.fake_api import FakeApi
from tests.support.processes import REPO, find_tool

KUBERNETES = REPO / "deploy" / "kubernetes"
OVERLAYS = {
    "base": KUBERNETES / "base",
    "two-replicas": KUBERNETES / "overlays" / "two-replicas",
    "example": KUBERNETES / "overlays" / "example",
}
KUBERNETES_VERSION = "1.32.0"
OPERATOR_KINDS = {"ServiceMonitor", "PrometheusRule"}
MiB = 2**20
# From the benchmark (docs/performance.md): resident memory of an idle exporter, and the peak
# added while reading one subaccount of 10,000 and of 100,000 numbers.
IDLE_RSS = 38 * 10**6
PEAK_10K = 18 * 10**6
PEAK_100K = 105 * 10**6


@cache
def render(overlay: str) -> tuple[dict[str, Any], ...]:
    result = subprocess.run(
        [find_tool("kubectl"), "kustomize", str(OVERLAYS[overlay])],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def objects(overlay: str, kind: str) -> list[dict[str, Any]]:
    return [copy.deepcopy(doc) for doc in render(overlay) if doc["kind"] == kind]


def only(overlay: str, kind: str) -> dict[str, Any]:
    found = objects(overlay, kind)
    assert len(found) == 1, f"{overlay}: {len(found)} {kind}"
    return found[0]


def container(overlay: str = "base") -> dict[str, Any]:
    return only(overlay, "Deployment")["spec"]["template"]["spec"]["containers"][0]


# --- rendering and schemas ---------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_every_object(overlay):
    kinds = sorted(doc["kind"] for doc in render(overlay))
    assert kinds == sorted(
        [
            "ConfigMap",  # exporter.yml
            "ConfigMap",  # dashboards
            "Deployment",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "PrometheusRule",
            "Service",
            "ServiceMonitor",
        ]
    )


def _strict(schema: Any) -> Any:
    if isinstance(schema, dict):
        if "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
        for value in schema.values():
            _strict(value)
    elif isinstance(schema, list):
        for value in schema:
            _strict(value)
    return schema


@cache
def operator_validator(kind: str) -> jsonschema.Validator:
    from cloudcoil.models.prometheus_operator import v1

    schema = _strict(getattr(v1, kind).model_json_schema(by_alias=True))
    return jsonschema.Draft202012Validator(schema)


def schema_errors(doc: dict[str, Any]) -> list[str]:
    """Every schema violation of a rendered object (empty when valid)."""
    if doc["kind"] in OPERATOR_KINDS:
        assert doc["apiVersion"] == "monitoring.coreos.com/v1"
        return [
            f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}"
            for e in operator_validator(doc["kind"]).iter_errors(doc)
        ]
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{'/'.join(map(str, exc.path))}: {exc.message[:200]}"]
    return []


# Importing the Prometheus Operator models takes seconds: their checks are slow tests, so the
# inner loop (`-m "not slow"`) checks the built-in kinds only.
SCHEMA_FAMILIES = [
    pytest.param(False, id="built-in"),
    pytest.param(True, id="operator", marks=pytest.mark.slow),
]


def _operator(kind: str) -> Any:
    """A parameter of the operator's kinds carries the slow mark (see SCHEMA_FAMILIES)."""
    return pytest.mark.slow if kind in OPERATOR_KINDS else ()


@pytest.mark.parametrize("operator", SCHEMA_FAMILIES)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates_against_its_schema(overlay, operator):
    checked = [doc for doc in render(overlay) if (doc["kind"] in OPERATOR_KINDS) == operator]
    assert checked
    failures = {
        f"{doc['kind']}/{doc['metadata']['name']}": errors
        for doc in checked
        if (errors := schema_errors(doc))
    }
    assert failures == {}


def _broken(kind: str, path: list[Any], value: Any) -> dict[str, Any]:
    doc = only("base", kind)
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return doc


@pytest.mark.parametrize(
    ("kind", "path", "value"),
    [
        pytest.param(kind, path, value, marks=_operator(kind))
        for kind, path, value in [
            # An unknown field (a typo), a wrong type, a value outside the schema's enum or
            # pattern.
            ("Deployment", ["spec", "template", "spec", "containers", 0, "livenessprobe"], {}),
            ("Deployment", ["spec", "replicas"], "two"),
            ("Service", ["spec", "type"], 7),
            ("NetworkPolicy", ["spec", "policyTypes"], "Ingress"),
            ("ServiceMonitor", ["spec", "endpoints", 0, "interval"], "one minute"),
            ("ServiceMonitor", ["spec", "endpoint"], []),
            ("ServiceMonitor", ["spec", "endpoints", 0, "scheme"], "ftp"),
            ("PrometheusRule", ["spec", "groups", 0, "rules", 0, "for"], "5 minutes"),
            ("PrometheusRule", ["spec", "groups", 0, "rulez"], []),
        ]
    ],
)
def test_the_validators_reject_broken_objects(kind, path, value):
    assert schema_errors(_broken(kind, path, value)) != []


# --- the generated files -----------------------------------------------------------------------


def generator() -> Any:
    spec = importlib.util.spec_from_file_location("generate", KUBERNETES / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_manifests_are_up_to_date():
    for path, text in generator().render().items():
        assert path.read_text(encoding="utf-8") == text, (
            f"{path.name} is stale: run python3 deploy/kubernetes/generate.py"
        )


def test_prometheus_rule_groups_equal_the_rule_files():
    shipped = [
        group
        for path in sorted((REPO / "prometheus" / "rules").glob("*.yml"))
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
    ]
    assert only("base", "PrometheusRule")["spec"]["groups"] == shipped


def test_dashboards_config_map_holds_every_dashboard_for_the_sidecar():
    config_map = next(
        doc
        for doc in objects("base", "ConfigMap")
        if doc["metadata"]["labels"].get("grafana_dashboard") == "1"
    )
    dashboards = {
        path.name: json.loads(path.read_text(encoding="utf-8"))
        for path in (REPO / "grafana" / "dashboards").glob("*.json")
    }
    assert {name: json.loads(text) for name, text in config_map["data"].items()} == dashboards
    assert config_map["metadata"]["annotations"]["grafana_folder"] == "8x8 Number Health"


# --- the manifests and the exporter ------------------------------------------------------------


def exporter_settings(tmp_path: Path, overlay: str = "base") -> Any:
    """The exporter's settings from the Deployment's args, env and mounted files."""
    spec = container(overlay)
    config_map = next(
        doc for doc in objects(overlay, "ConfigMap") if "exporter.yml" in doc.get("data", {})
    )
    mounts = {m["mountPath"]: m["name"] for m in spec["volumeMounts"]}
    config_dir, key_dir, auth_dir = tmp_path / "config", tmp_path / "key", tmp_path / "auth"
    for directory in (config_dir, key_dir, auth_dir):
        directory.mkdir()
    (config_dir / "exporter.yml").write_text(config_map["data"]["exporter.yml"])
    (key_dir / "api-key").write_text("a-key\n")
    (auth_dir / "auth-header").write_text(f"{CALLBACK_AUTH}\n")
    where = {"config": config_dir, "api-key": key_dir, "webhook-auth": auth_dir}

    def local(value: str) -> str:
        # Longest first: /run/secrets/eightbyeight is a prefix of another mount path.
        for mount_path in sorted(mounts, key=len, reverse=True):
            value = value.replace(mount_path, str(where[mounts[mount_path]]))
        return value

    args = [local(arg) for arg in spec["args"]]
    env = {e["name"]: local(e["value"]) for e in spec["env"]}
    return args, env, settings_from_flags(build_parser().parse_args(args), env)


def on_loopback(args: list[str]) -> list[str]:
    """The Deployment's arguments with both listeners moved to free loopback ports."""
    return [
        "--webhook.listen-address=127.0.0.1:0" if a.startswith("--webhook.listen-address") else a
        for a in args
        if not a.startswith("--web.listen-address")
    ]


def test_deployment_args_are_a_valid_exporter_configuration(tmp_path):
    _, _, settings = exporter_settings(tmp_path)
    assert [s.subaccount for s in settings.subaccounts] == ["acme-prod", "acme-dev"]
    assert settings.api_key is not None


def test_ports_probes_and_scrape_path_match_the_exporter(tmp_path):
    args, env, settings = exporter_settings(tmp_path)
    spec = container()
    port = int(settings.listen_address.rpartition(":")[2])
    assert spec["ports"][0] == {"name": "http", "containerPort": port, "protocol": "TCP"}
    service_port = only("base", "Service")["spec"]["ports"][0]
    assert service_port["targetPort"] == "http"
    endpoint = only("base", "ServiceMonitor")["spec"]["endpoints"][0]
    assert endpoint["port"] == service_port["name"]
    assert endpoint["path"] == settings.telemetry_path
    assert only("base", "NetworkPolicy")["spec"]["ingress"][0]["ports"][0]["port"] == "http"
    assert spec["livenessProbe"]["httpGet"] == {"path": "/-/healthy", "port": "http"}
    assert spec["readinessProbe"]["httpGet"] == {"path": "/-/ready", "port": "http"}
    # The probe path and the scrape path answer on a real exporter with these arguments, reading
    # a fake API on loopback instead of 8x8.
    with (
        FakeApi() as api,
        InProcessExporter(
            [*on_loopback(args), f"--api.base-url={api.base_url}"], env=env
        ) as exporter,
    ):
        assert exporter.get("/-/healthy").status_code == 200
        assert exporter.get("/-/ready").status_code == 200
        scraped = exporter.get(endpoint["path"])
    assert scraped.status_code == 200
    samples = parse_samples(scraped.text)
    for subaccount in ("acme-prod", "acme-dev"):
        assert value(samples, "eightbyeight_up", subaccount=subaccount) == 1


def test_pod_runs_as_the_image_user_locked_down():
    pod = only("base", "Deployment")["spec"]["template"]["spec"]
    user = re.search(r"(?m)^USER (\d+):(\d+)$", (REPO / "Dockerfile").read_text())
    assert user, "the Dockerfile names a numeric USER"
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": int(user.group(1)),
        "runAsGroup": int(user.group(2)),
        "fsGroup": int(user.group(2)),
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert pod["automountServiceAccountToken"] is False
    assert container()["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
    }


def secret_volumes() -> dict[str, dict[str, Any]]:
    """Volume name -> its secret source, for every Secret the pod mounts."""
    pod = only("base", "Deployment")["spec"]["template"]["spec"]
    return {v["name"]: v["secret"] for v in pod["volumes"] if "secret" in v}


def test_api_key_and_callback_value_come_from_existing_secrets():
    secrets = secret_volumes()
    assert secrets["api-key"]["secretName"] == "eightbyeight-api-key"
    assert secrets["api-key"]["items"] == [{"key": "api-key", "path": "api-key"}]
    assert secrets["webhook-auth"]["secretName"] == "eightbyeight-webhook-auth"
    assert secrets["webhook-auth"]["items"] == [{"key": "auth-header", "path": "auth-header"}]
    assert objects("base", "Secret") == []  # never shipped, only referenced
    env = {e["name"]: e["value"] for e in container()["env"]}
    assert env == {
        "EIGHTBYEIGHT_API_KEY_FILE": "/run/secrets/eightbyeight/api-key",
        "EIGHTBYEIGHT_WEBHOOK_AUTH_HEADER_FILE": "/run/secrets/eightbyeight-webhook/auth-header",
    }
    mounts = {m["name"]: m["mountPath"] for m in container()["volumeMounts"]}
    for name, variable in [
        ("api-key", "EIGHTBYEIGHT_API_KEY_FILE"),
        ("webhook-auth", "EIGHTBYEIGHT_WEBHOOK_AUTH_HEADER_FILE"),
    ]:
        [item] = secrets[name]["items"]
        assert env[variable] == f"{mounts[name]}/{item['path']}"
    # The commands creating them, where an operator reads them.
    for text in (
        (KUBERNETES / "base" / "kustomization.yaml").read_text(),
        (REPO / "docs" / "deployment.md").read_text(encoding="utf-8"),
    ):
        assert "create secret generic eightbyeight-api-key --from-file=api-key=" in text
        assert "create secret generic eightbyeight-webhook-auth --from-file=auth-header=" in text


def _port(address: str) -> int:
    return int(address.rpartition(":")[2])


def test_callback_port_is_named_and_matches_the_webhook_listener(tmp_path):
    _, _, settings = exporter_settings(tmp_path)
    assert settings.webhooks is not None, "the Deployment runs the callback listener"
    assert settings.webhooks.auth_header.reveal() == CALLBACK_AUTH
    port = _port(settings.webhooks.listen_address)
    assert port != _port(settings.listen_address)
    ports = {p["name"]: p for p in container()["ports"]}
    assert ports["webhooks"] == {"name": "webhooks", "containerPort": port, "protocol": "TCP"}
    service = {p["name"]: p for p in only("base", "Service")["spec"]["ports"]}
    assert service["webhooks"]["targetPort"] == "webhooks"
    assert service["webhooks"]["port"] == port
    # Prometheus scrapes the metrics port only, never the callback port.
    endpoints = only("base", "ServiceMonitor")["spec"]["endpoints"]
    assert [e["port"] for e in endpoints] == ["http"]


def test_network_policy_lets_callbacks_in_from_outside_and_metrics_from_prometheus():
    rules = only("base", "NetworkPolicy")["spec"]["ingress"]
    by_port = {rule["ports"][0]["port"]: rule for rule in rules}
    assert set(by_port) == {"http", "webhooks"}
    assert all(len(rule["ports"]) == 1 for rule in rules)
    # 8x8 calls from outside the cluster: an empty `from` admits every source...
    assert by_port["webhooks"].get("from", []) == []
    # ...while /metrics stays open to Prometheus pods only.
    assert by_port["http"]["from"][0]["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "prometheus"
    }
    # Operators are told to narrow it to 8x8's source addresses.
    text = (KUBERNETES / "base" / "networkpolicy.yaml").read_text()
    assert "8x8's published" in text
    assert "ipBlock" in text


def test_callbacks_reach_an_exporter_started_with_the_deployment_args(tmp_path):
    """The Deployment's arguments and mounted Secret on a real exporter (loopback, free ports):
    a callback with the Secret's value is counted, one without it is refused."""
    args, env, settings = exporter_settings(tmp_path)
    with (
        FakeApi() as api,
        InProcessExporter(
            [*on_loopback(args), f"--api.base-url={api.base_url}"], env=env
        ) as exporter,
    ):
        url = exporter.callback_url
        assert url.endswith(settings.webhooks.path)
        event = vss(sub="acme-prod")
        refused = requests.post(url, json=event, timeout=10)
        accepted = requests.post(
            url, json=event, headers={"Authorization": CALLBACK_AUTH}, timeout=10
        )
        samples = parse_samples(exporter.get("/metrics").text)
    assert refused.status_code == 401
    assert accepted.status_code == 200
    assert (
        value(
            samples, "eightbyeight_webhook_events_total", subaccount="acme-prod", event_type="vss"
        )
        == 1
    )


def _bytes(quantity: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    return int(quantity[:-2]) * units[quantity[-2:]]


def test_resources_are_sized_from_the_benchmark():
    resources = container()["resources"]
    request, limit = (_bytes(resources[k]["memory"]) for k in ("requests", "limits"))
    # Room for the idle process and one 10,000-number subaccount being read...
    assert request >= IDLE_RSS + PEAK_10K
    # ...and, within the limit, for a 100,000-number one.
    assert limit >= IDLE_RSS + PEAK_100K
    assert request <= limit
    assert "cpu" in resources["requests"]


def test_image_is_the_project_version():
    version = re.search(r'(?m)^version = "([^"]+)"', (REPO / "pyproject.toml").read_text()).group(1)
    assert container()["image"] == f"eightbyeight-exporter:{version}"


def test_two_replicas_overlay_spreads_them_and_keeps_one_through_a_drain():
    deployment = only("two-replicas", "Deployment")
    assert deployment["spec"]["replicas"] == 2
    spread = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert spread[0]["topologyKey"] == "kubernetes.io/hostname"
    assert (
        spread[0]["labelSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    )
    assert only("two-replicas", "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    assert only("base", "Deployment")["spec"]["replicas"] == 1


def test_selectors_match_the_pods():
    pod_labels = only("base", "Deployment")["spec"]["template"]["metadata"]["labels"]
    for kind, selector in [
        ("Service", lambda d: d["spec"]["selector"]),
        ("PodDisruptionBudget", lambda d: d["spec"]["selector"]["matchLabels"]),
        ("NetworkPolicy", lambda d: d["spec"]["podSelector"]["matchLabels"]),
    ]:
        assert selector(only("base", kind)).items() <= pod_labels.items(), kind
    service_labels = only("base", "Service")["metadata"]["labels"]
    monitor = only("base", "ServiceMonitor")["spec"]["selector"]["matchLabels"]
    assert monitor.items() <= service_labels.items()


def test_operator_objects_carry_the_release_label_and_the_alerts_job():
    monitor, rule = only("base", "ServiceMonitor"), only("base", "PrometheusRule")
    assert monitor["metadata"]["labels"]["release"] == rule["metadata"]["labels"]["release"]
    # The operator names the job after the Service; nothing rewrites it, and the rules'
    # job selector (the mixin's) covers that name.
    endpoint = monitor["spec"]["endpoints"][0]
    assert not any(r.get("targetLabel") == "job" for r in endpoint.get("relabelings", []))
    assert "jobLabel" not in monitor["spec"]
    job = only("base", "Service")["metadata"]["name"]
    [down] = [
        r["expr"]
        for g in rule["spec"]["groups"]
        for r in g["rules"]
        if r.get("alert") == "EightByEightExporterDown"
    ]
    selector = re.search(r'up\{job=~"([^"]+)"\}', down)
    assert selector, down
    # Prometheus anchors label regular expressions.
    assert re.fullmatch(selector.group(1), job)


def test_example_overlay_customises_without_touching_the_base(tmp_path):
    """The documented way to change settings: an overlay. Its image, subaccounts, operator
    label, memory limit and extra flag reach the objects; the base renders as before."""
    deployment = only("example", "Deployment")
    spec = container("example")
    assert spec["image"] == "registry.example/monitoring/eightbyeight-exporter:0.1.0"
    assert spec["resources"]["limits"]["memory"] == "512Mi"
    assert spec["args"][-1] == "--cache.ttl=5m"
    assert spec["args"][:-1] == container("base")["args"]
    assert {doc["metadata"].get("namespace") for doc in render("example")} == {"monitoring"}
    for kind in ("ServiceMonitor", "PrometheusRule"):
        assert only("example", kind)["metadata"]["labels"]["release"] == "prometheus"
    _, _, settings = exporter_settings(tmp_path, "example")
    assert [s.subaccount for s in settings.subaccounts] == ["my-subaccount"]
    # The replaced ConfigMap is the one the pod mounts (its name carries the new hash).
    [config] = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if "configMap" in v]
    names = [doc["metadata"]["name"] for doc in objects("example", "ConfigMap")]
    assert config["configMap"]["name"] in names
    assert container("base")["image"] == "eightbyeight-exporter:0.1.0"
