"""Writes the Kubernetes manifests that copy files kept elsewhere in the repository, so that
`kubectl apply -k` needs nothing outside deploy/kubernetes/ (kustomize refuses files outside a
kustomization's directory):

- base/prometheusrule.yaml: a PrometheusRule whose groups are those of prometheus/rules/*.yml;
- base/grafana-dashboards.yaml: a ConfigMap of grafana/dashboards/*.json for Grafana's
  dashboard sidecar.

Those files are generated from the monitoring mixin, and `python -m mixin` (docs/mixin.md) runs
this after writing them; on its own: `python3 deploy/kubernetes/generate.py`.
tests/deployment/test_kubernetes.py fails while the written files differ from what this would write.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
BASE = Path(__file__).resolve().parent / "base"
RULES = REPO / "prometheus" / "rules"
DASHBOARDS = REPO / "grafana" / "dashboards"
NAME = "eightbyeight-exporter"
HEADER = "# Written by deploy/kubernetes/generate.py from {source}: edit those, then run it.\n"
# The label Grafana's dashboard sidecar looks for (its default, as in kube-prometheus-stack),
# and the folder annotation its `folderAnnotation` setting reads.
DASHBOARD_LABEL = "grafana_dashboard"
FOLDER_ANNOTATION = "grafana_folder"
FOLDER = "8x8 Number Health"
# The Prometheus Operator picks PrometheusRules and ServiceMonitors by label (its
# ruleSelector/serviceMonitorSelector); kube-prometheus-stack selects `release: <its release>`.
OPERATOR_LABELS = {"release": "kube-prometheus-stack"}


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (expressions, dashboard JSON) as readable literal blocks."""


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _string)


def labels(component: str, **extra: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": NAME,
        "app.kubernetes.io/component": component,
        **extra,
    }


def prometheus_rule() -> dict[str, Any]:
    groups = []
    for path in sorted(RULES.glob("*.yml")):
        groups += yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": NAME, "labels": labels("rules", **OPERATOR_LABELS)},
        "spec": {"groups": groups},
    }


def dashboards_config_map() -> dict[str, Any]:
    data = {}
    for path in sorted(DASHBOARDS.glob("*.json")):
        # Trailing blanks would force a quoted YAML string: the JSON does not need them.
        text = path.read_text(encoding="utf-8")
        data[path.name] = "\n".join(line.rstrip() for line in text.splitlines()) + "\n"
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": f"{NAME}-dashboards",
            "labels": labels("dashboards", **{DASHBOARD_LABEL: "1"}),
            "annotations": {FOLDER_ANNOTATION: FOLDER},
        },
        "data": data,
    }


def render() -> dict[Path, str]:
    """Every generated file and its content."""

    def dump(doc: dict[str, Any], source: str) -> str:
        body = yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=True)
        return HEADER.format(source=source) + body

    return {
        BASE / "prometheusrule.yaml": dump(prometheus_rule(), "prometheus/rules/*.yml"),
        BASE / "grafana-dashboards.yaml": dump(
            dashboards_config_map(), "grafana/dashboards/*.json"
        ),
    }


def main() -> int:
    for path, text in render().items():
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
