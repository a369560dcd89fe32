"""deploy/helm/eightbyeight-exporter: the chart rendered and linted offline by Helm's own Go code
(helm-python-sdk) for its default values and every file in tests/deployment/helm-values/, each object
validated against the strict schemas tests/deployment/test_kubernetes.py uses, and the default render
held equal in substance to the kustomize base.
"""

from __future__ import annotations

import base64
import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import pytest
import yaml

from exporter.config.flags import build_parser
from exporter.config.settings import settings_from_flags
from exporter.web.discovery import DISCOVERY_PATH
from tests.deployment.test_kubernetes import KUBERNETES_VERSION, _strict, schema_errors
from tests.deployment.test_kubernetes import only as kustomize_only
from tests.deployment.test_kubernetes import render as kustomize_render
from tests.support.processes import REPO

CHART = REPO / "deploy" / "helm" / "eightbyeight-exporter"
VALUES = REPO / "tests" / "deployment" / "helm-values"
RELEASE = "eightbyeight-exporter"
NAMESPACE = "monitoring"
VALUES_FILES = sorted(path.stem for path in VALUES.glob("*.yaml"))
CASES = ["default", *VALUES_FILES]
V1ALPHA1_KINDS = {"ScrapeConfig"}
WARNING = 2  # helm lint severities: 1 info, 2 warning, 3 error

helm.disable_logging()


def values_of(case: str) -> dict[str, Any]:
    if case == "default":
        return {}
    return yaml.safe_load((VALUES / f"{case}.yaml").read_text(encoding="utf-8"))


@cache
def chart() -> helm.Chart:
    return helm.Chart.load(CHART)


@cache
def rendered(case: str) -> tuple[dict[str, Any], ...]:
    manifests = chart().render(values=values_of(case), name=RELEASE, namespace=NAMESPACE)
    return tuple(
        doc
        for name, text in sorted(manifests.items())
        if name.endswith(".yaml")
        for doc in yaml.safe_load_all(text)
        if doc
    )


def objects(case: str, kind: str) -> list[dict[str, Any]]:
    return [copy.deepcopy(doc) for doc in rendered(case) if doc["kind"] == kind]


def only(case: str, kind: str) -> dict[str, Any]:
    found = objects(case, kind)
    assert len(found) == 1, f"{case}: {len(found)} {kind}"
    return found[0]


def container(case: str = "default") -> dict[str, Any]:
    return only(case, "Deployment")["spec"]["template"]["spec"]["containers"][0]


# --- lint, render, schemas ---------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_chart_lints_clean(case):
    report = helm.lint(CHART, values_of(case), strict=True, kube_version=f"v{KUBERNETES_VERSION}")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= WARNING] == []


@pytest.mark.parametrize("case", CASES)
def test_values_pass_the_charts_schema(case):
    chart().validate_schema(values_of(case))


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"servicemonitor": {"enabled": False}}, "servicemonitor"),  # a typo of a key
        ({"service": {"port": 70000}}, "port"),
        ({"existingSecret": ""}, "existingSecret"),
        ({"serviceMonitor": {"interval": "one minute"}}, "interval"),
        ({"extraArgs": ["cache.ttl=5m"]}, "extraArgs"),
        ({"webhooks": {"enabled": "yes"}}, "enabled"),
        ({"webhooks": {"tlsClientAuth": "RequireClientCert"}}, "tlsClientAuth"),
        ({"balance": {"accountId": "acme-prod"}}, "accountId"),
        ({"balance": {"interval": "five minutes"}}, "interval"),
    ],
)
def test_schema_refuses_bad_values(values, named):
    with pytest.raises(helm.HelmValuesError, match=named):
        chart().validate_schema(values)


def test_webhooks_without_a_secret_fail_with_a_reason():
    with pytest.raises(helm.HelmError, match=r"webhooks\.existingSecret or webhooks\.authHeader"):
        chart().render(values={"webhooks": {"existingSecret": ""}}, name=RELEASE)


def test_every_case_renders_the_objects_it_asks_for():
    kinds = {case: sorted(doc["kind"] for doc in rendered(case)) for case in CASES}
    operator = ["PrometheusRule", "ServiceMonitor"]
    base = ["ConfigMap", "Deployment", "NetworkPolicy", "PodDisruptionBudget", "Service"]
    assert kinds == {
        "default": sorted([*base, "ConfigMap", *operator]),
        "minimal": ["ConfigMap", "Deployment", "Service"],
        "probe-mode": sorted([*base, "ConfigMap", "PrometheusRule", "ScrapeConfig"]),
        "webhook-secret-from-value": sorted([*base, "ConfigMap", *operator, "Secret"]),
        "balance-and-webhook-tls": sorted([*base, "ConfigMap", *operator]),
    }


@cache
def scrape_config_validator() -> jsonschema.Validator:
    from cloudcoil.models.prometheus_operator import v1alpha1

    schema = _strict(v1alpha1.ScrapeConfig.model_json_schema(by_alias=True))
    return jsonschema.Draft202012Validator(schema)


def errors_of(doc: dict[str, Any]) -> list[str]:
    if doc["kind"] in V1ALPHA1_KINDS:
        assert doc["apiVersion"] == "monitoring.coreos.com/v1alpha1"
        return [
            f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}"
            for e in scrape_config_validator().iter_errors(doc)
        ]
    return schema_errors(doc)


# The Prometheus Operator's models take seconds to import (see tests/deployment/test_kubernetes.py).
@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_every_object_validates_against_its_schema(case):
    failures = {
        f"{doc['kind']}/{doc['metadata']['name']}": errors
        for doc in rendered(case)
        if (errors := errors_of(doc))
    }
    assert failures == {}


@pytest.mark.parametrize("case", CASES)
def test_built_in_objects_validate_against_kubernetes(case):
    operator = {"ServiceMonitor", "PrometheusRule", *V1ALPHA1_KINDS}
    failures = {
        f"{doc['kind']}/{doc['metadata']['name']}": errors
        for doc in rendered(case)
        if doc["kind"] not in operator and (errors := schema_errors(doc))
    }
    assert failures == {}


@pytest.mark.slow
def test_the_scrape_config_validator_rejects_a_broken_object():
    doc = only("probe-mode", "ScrapeConfig")
    doc["spec"]["httpSDConfigs"][0]["refreshIntervall"] = "5m"
    assert errors_of(doc) != []


# --- parity with deploy/kubernetes/base --------------------------------------------------------


def _without(mapping: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in mapping.items() if k not in keys}


def test_default_container_equals_the_kustomize_container():
    chart_container = container()
    base = kustomize_only("base", "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert chart_container == base


def test_default_pod_equals_the_kustomize_pod_but_for_names():
    chart_pod = only("default", "Deployment")["spec"]
    base_pod = kustomize_only("base", "Deployment")["spec"]
    for pod in (chart_pod, base_pod):
        # Names and labels differ by design (the chart's carry the release); the config
        # ConfigMap's name carries kustomize's content hash.
        for volume in pod["template"]["spec"]["volumes"]:
            volume.get("configMap", {}).pop("name", None)
        pod.pop("selector")
        pod["template"].pop("metadata")
    assert chart_pod == base_pod


def _data(case_objects: list[dict[str, Any]], key: str) -> str:
    [config_map] = [doc for doc in case_objects if key in doc.get("data", {})]
    return config_map["data"][key]


def test_default_exporter_configuration_equals_the_kustomize_one():
    chart_config = _data(objects("default", "ConfigMap"), "exporter.yml")
    base_config = _data(
        [d for d in kustomize_render("base") if d["kind"] == "ConfigMap"], "exporter.yml"
    )
    assert yaml.safe_load(chart_config) == yaml.safe_load(base_config)


def test_default_service_network_policy_and_budget_equal_the_kustomize_ones():
    assert (
        only("default", "Service")["spec"]["ports"]
        == kustomize_only("base", "Service")["spec"]["ports"]
    )
    for kind in ("NetworkPolicy", "PodDisruptionBudget"):
        chart_spec, base_spec = only("default", kind)["spec"], kustomize_only("base", kind)["spec"]
        assert _without(chart_spec, "podSelector", "selector") == _without(
            base_spec, "podSelector", "selector"
        ), kind


def test_default_service_monitor_scrapes_like_the_kustomize_one():
    [chart_endpoint] = only("default", "ServiceMonitor")["spec"]["endpoints"]
    [base_endpoint] = kustomize_only("base", "ServiceMonitor")["spec"]["endpoints"]
    # The chart leaves `job` as the operator sets it (the Service's name), as the mixin's job
    # selector expects; a relabelling of it in the base is the one allowed difference.
    assert chart_endpoint == _without(base_endpoint, "relabelings")
    chart_labels = only("default", "ServiceMonitor")["metadata"]["labels"]
    assert (
        chart_labels["release"]
        == kustomize_only("base", "ServiceMonitor")["metadata"]["labels"]["release"]
    )


def test_default_rules_equal_the_kustomize_rules_and_the_rule_files():
    groups = only("default", "PrometheusRule")["spec"]["groups"]
    assert groups == kustomize_only("base", "PrometheusRule")["spec"]["groups"]
    shipped = [
        group
        for path in sorted((REPO / "prometheus" / "rules").glob("*.yml"))
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
    ]
    assert groups == shipped


def test_default_dashboards_equal_the_kustomize_ones_with_the_sidecar_label():
    chart_map = next(
        doc
        for doc in objects("default", "ConfigMap")
        if doc["metadata"]["name"].endswith("-dashboards")
    )
    base_map = next(
        doc
        for doc in kustomize_render("base")
        if doc["kind"] == "ConfigMap" and doc["metadata"]["labels"].get("grafana_dashboard")
    )
    assert chart_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert chart_map["metadata"]["annotations"] == base_map["metadata"]["annotations"]
    parsed = {name: json.loads(text) for name, text in chart_map["data"].items()}
    assert parsed == {name: json.loads(text) for name, text in base_map["data"].items()}
    assert set(parsed) == {p.name for p in (REPO / "grafana" / "dashboards").glob("*.json")}


# --- the values files --------------------------------------------------------------------------


def exporter_settings(case: str, tmp_path: Path) -> Any:
    """The exporter's settings from a render's args, env and mounted files (see
    tests/deployment/test_kubernetes.py): the args must be a configuration the exporter accepts."""
    spec = container(case)
    mounts = {m["mountPath"]: m["name"] for m in spec["volumeMounts"]}
    where: dict[str, Path] = {}
    for name in mounts.values():
        where[name] = tmp_path / name
        where[name].mkdir()
    (where["config"] / "exporter.yml").write_text(_data(objects(case, "ConfigMap"), "exporter.yml"))
    (where["api-key"] / "api-key").write_text("a-key\n")
    if "webhook-auth" in where:
        (where["webhook-auth"] / "auth-header").write_text("Bearer a-value\n")

    def local(value: str) -> str:
        for mount_path in sorted(mounts, key=len, reverse=True):
            value = value.replace(mount_path, str(where[mounts[mount_path]]))
        return value

    args = [local(arg) for arg in spec["args"]]
    env = {e["name"]: local(e["value"]) for e in spec["env"] if "value" in e}
    return settings_from_flags(build_parser().parse_args(args), env)


@pytest.mark.parametrize("case", CASES)
def test_rendered_args_are_a_valid_exporter_configuration(case, tmp_path):
    settings = exporter_settings(case, tmp_path)
    ports = {p["name"]: p["containerPort"] for p in container(case)["ports"]}
    assert int(settings.listen_address.rpartition(":")[2]) == ports["http"]
    if settings.webhooks is None:
        assert "webhooks" not in ports
    else:
        assert int(settings.webhooks.listen_address.rpartition(":")[2]) == ports["webhooks"]


def test_probe_mode_discovers_targets_from_the_exporters_service(tmp_path):
    settings = exporter_settings("probe-mode", tmp_path)
    assert settings.subaccounts == ()
    spec = only("probe-mode", "ScrapeConfig")["spec"]
    service = only("probe-mode", "Service")
    [sd] = spec["httpSDConfigs"]
    port = next(p["port"] for p in service["spec"]["ports"] if p["name"] == "http")
    name = service["metadata"]["name"]
    assert sd["url"] == f"http://{name}.{NAMESPACE}.svc:{port}{DISCOVERY_PATH}"
    assert (spec["scrapeInterval"], spec["scrapeTimeout"], sd["refreshInterval"]) == (
        "2m",
        "45s",
        "10m",
    )


def test_created_webhook_secret_holds_the_value_and_is_mounted():
    secret = only("webhook-secret-from-value", "Secret")
    assert base64.b64decode(secret["data"]["auth-header"]) == b"Bearer 3f9c0d6e-webhook-value"
    pod = only("webhook-secret-from-value", "Deployment")["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "webhook-auth")
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    assert container("webhook-secret-from-value")["image"] == (
        "registry.example/monitoring/eightbyeight-exporter@sha256:"
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    )


def test_minimal_names_its_own_secret_and_mounts_no_callback_secret():
    pod = only("minimal", "Deployment")["spec"]["template"]["spec"]
    secrets = {v["name"]: v["secret"] for v in pod["volumes"] if "secret" in v}
    assert secrets == {
        "api-key": {
            "secretName": "numbers-8x8",
            "defaultMode": 0o440,
            "items": [{"key": "token", "path": "api-key"}],
        }
    }
    assert only("minimal", "Deployment")["metadata"]["name"] == "numbers-exporter"


def test_selectors_match_the_pods_in_every_case():
    for case in CASES:
        pod_labels = only(case, "Deployment")["spec"]["template"]["metadata"]["labels"]
        assert only(case, "Service")["spec"]["selector"].items() <= pod_labels.items()
        for kind, path in [
            ("PodDisruptionBudget", ("selector", "matchLabels")),
            ("NetworkPolicy", ("podSelector", "matchLabels")),
        ]:
            for doc in objects(case, kind):
                selector = doc["spec"][path[0]][path[1]]
                assert selector.items() <= pod_labels.items(), (case, kind)
        for monitor in objects(case, "ServiceMonitor"):
            service_labels = only(case, "Service")["metadata"]["labels"]
            assert monitor["spec"]["selector"]["matchLabels"].items() <= service_labels.items()


def test_a_changed_configuration_rolls_the_pods():
    def checksum(values: dict[str, Any]) -> str:
        manifests = chart().render(values=values, name=RELEASE, namespace=NAMESPACE)
        deployment = yaml.safe_load(manifests[f"{RELEASE}/templates/deployment.yaml"])
        return deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    assert checksum({}) != checksum({"config": {"subaccounts": [{"id": "acme-prod"}]}})


def test_balance_and_webhook_client_auth_values_become_flags(tmp_path):
    settings = exporter_settings("balance-and-webhook-tls", tmp_path)
    assert settings.balance is not None
    assert (settings.balance.account_id, settings.balance.base_url, settings.balance.interval) == (
        "0b5c2f0e-4d1a-4c8e-9f3b-2a7d6e1c9b40",
        "https://sms.8x8.uk",
        600.0,
    )
    assert settings.webhooks is not None
    assert settings.webhooks.client_auth == "VerifyClientCertIfGiven"


def test_balance_and_webhook_client_auth_are_off_by_default(tmp_path):
    settings = exporter_settings("default", tmp_path)
    assert settings.balance is None
    assert not any(arg.startswith(("--balance.", "--webhook.tls")) for arg in container()["args"])
