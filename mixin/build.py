"""Renders the mixin (mixin/*.libsonnet) into the files Prometheus, Grafana and Kubernetes read.

- prometheus/rules/eightbyeight.{alerts,recording}.yml: rule files (prometheusAlerts, prometheusRules);
- grafana/dashboards/*.json: dashboards for Grafana's file provisioning;
- grafana/dashboards/import/*.json: the same dashboards for Grafana's "Import dashboard" page
  (its `__inputs` ask for the Prometheus data source, `__requires` list what they use);
- deploy/kubernetes/base/{prometheusrule,grafana-dashboards}.yaml: through
  deploy/kubernetes/generate.py, from the files above.

The Go implementation of jsonnet (the `gojsonnet` wheel) evaluates it: no network, no
jsonnet-bundler. `render(overrides)` builds with _config overrides, for tests and operators.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

MIXIN = Path(__file__).resolve().parent
REPO = MIXIN.parent
RULES = REPO / "prometheus" / "rules"
DASHBOARDS = REPO / "grafana" / "dashboards"
IMPORT_DASHBOARDS = DASHBOARDS / "import"
GENERATOR = REPO / "deploy" / "kubernetes" / "generate.py"

RULE_KEYS = ("alert", "record", "expr", "for", "labels", "annotations")
ANNOTATION_KEYS = ("summary", "description", "runbook_url")
# Long annotations fold onto several lines in YAML; they still read as one line.
FOLD_AT = 80
# The oldest Grafana these dashboards are written for (schemaVersion 39).
GRAFANA_VERSION = "10.4.0"
DATASOURCE_INPUT = "DS_PROMETHEUS"

HEADER = """\
# {title} for the 8x8 Number Health exporter (eightbyeight-exporter).
#
# GENERATED from the monitoring mixin (mixin/, docs/mixin.md): edit the jsonnet, then run
# `python -m mixin`. A test fails while this file differs from what the mixin builds.
{extra}"""
ALERTS_EXTRA = """\
#
# Load together with eightbyeight.recording.yml. Every alert links to its section of
# docs/runbook.md, which explains the thresholds and `for` durations. Job selector, cluster
# label, thresholds, durations and the runbook location come from mixin/config.libsonnet.
"""
RECORDING_EXTRA = """\
#
# Expressions shared by the dashboards and the alerts in eightbyeight.alerts.yml, named
# level:metric:operations; the cluster label is kept through every aggregation.
"""


class MixinError(Exception):
    """The mixin could not be built; the message says why in one line."""


def evaluate(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The mixin's output (alerts, rules, dashboards, config) with _config overrides."""
    try:
        import _gojsonnet  # only the build needs it (the `test` extra installs it)
    except ImportError as exc:
        raise MixinError("gojsonnet is not installed: pip install -e '.[test]'") from exc
    try:
        text = _gojsonnet.evaluate_file(
            str(MIXIN / "build.jsonnet"), ext_vars={"config": json.dumps(overrides or {})}
        )
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unknown error"
        raise MixinError(f"jsonnet: {first}") from exc
    return json.loads(text)


class _Dumper(yaml.SafeDumper):
    """Expressions as literal blocks, long annotations folded, keys in the order written."""


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else (">" if len(value) > FOLD_AT else None)
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _string)


def _ordered(mapping: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    unknown = set(mapping) - set(keys)
    if unknown:
        raise MixinError(f"unexpected rule keys {sorted(unknown)}")
    return {key: mapping[key] for key in keys if key in mapping}


def _rule(rule: dict[str, Any]) -> dict[str, Any]:
    rule = _ordered(rule, RULE_KEYS)
    if "annotations" in rule:
        rule["annotations"] = _ordered(rule["annotations"], ANNOTATION_KEYS)
    return rule


def rule_file_text(doc: dict[str, Any], header: str) -> str:
    groups = [{"name": g["name"], "rules": [_rule(r) for r in g["rules"]]} for g in doc["groups"]]
    body = yaml.dump(
        {"groups": groups}, Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=True
    )
    return header + body


def dashboard_text(dashboard: dict[str, Any]) -> str:
    return json.dumps(dashboard, indent=2, ensure_ascii=False) + "\n"


def _panel_types(dashboard: dict[str, Any]) -> list[str]:
    types = set()
    for panel in dashboard.get("panels", []):
        types.add(panel["type"])
        types.update(inner["type"] for inner in panel.get("panels", []))
    return sorted(types - {"row"})


def importable(dashboard: dict[str, Any]) -> dict[str, Any]:
    """The dashboard as grafana.com and Grafana's import page take it: the data source is an
    input chosen on import, which becomes the datasource variable's default."""
    choice = f"${{{DATASOURCE_INPUT}}}"
    templating = [
        {**var, "current": {"selected": False, "text": choice, "value": choice}}
        if var["type"] == "datasource"
        else var
        for var in dashboard["templating"]["list"]
    ]
    requires = [
        {"type": "grafana", "id": "grafana", "name": "Grafana", "version": GRAFANA_VERSION},
        {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
    ] + [
        {"type": "panel", "id": kind, "name": kind, "version": ""}
        for kind in _panel_types(dashboard)
    ]
    inputs = [
        {
            "name": DATASOURCE_INPUT,
            "label": "Prometheus",
            "description": "The Prometheus that scrapes eightbyeight-exporter",
            "type": "datasource",
            "pluginId": "prometheus",
            "pluginName": "Prometheus",
        }
    ]
    return {
        "__inputs": inputs,
        "__elements": {},
        "__requires": requires,
        **dashboard,
        "templating": {**dashboard["templating"], "list": templating},
    }


def render(overrides: dict[str, Any] | None = None) -> dict[Path, str]:
    """Every file the mixin makes (rules, dashboards, import variants) and its content."""
    built = evaluate(overrides)
    files = {
        RULES / "eightbyeight.alerts.yml": rule_file_text(
            built["alerts"], HEADER.format(title="Alerting rules", extra=ALERTS_EXTRA)
        ),
        RULES / "eightbyeight.recording.yml": rule_file_text(
            built["rules"], HEADER.format(title="Recording rules", extra=RECORDING_EXTRA)
        ),
    }
    for name, dashboard in sorted(built["dashboards"].items()):
        files[DASHBOARDS / name] = dashboard_text(dashboard)
        files[IMPORT_DASHBOARDS / name] = dashboard_text(importable(dashboard))
    return files


def kubernetes_generator() -> ModuleType:
    """deploy/kubernetes/generate.py, which copies the written files into the kustomize base."""
    spec = importlib.util.spec_from_file_location("generate", GENERATOR)
    if spec is None or spec.loader is None:
        raise MixinError(f"cannot load {GENERATOR}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def stale_files() -> list[Path]:
    """Committed files that differ from what the mixin (and then generate.py) would write."""
    stale = [path for path, text in render().items() if _read(path) != text]
    if not stale:
        stale += [p for p, t in kubernetes_generator().render().items() if _read(p) != t]
    return stale


def _read(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.exists() else None


def write_all() -> list[Path]:
    written = []
    for path, text in render().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    for path, text in kubernetes_generator().render().items():
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mixin",
        description="Build the rule files and dashboards from the monitoring mixin (mixin/).",
    )
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a file is out of date"
    )
    args = parser.parse_args(argv)
    try:
        if args.check:
            stale = stale_files()
            for path in stale:
                print(f"out of date: {path.relative_to(REPO)}", file=sys.stderr)
            return 1 if stale else 0
        for path in write_all():
            print(f"wrote {path.relative_to(REPO)}")
    except MixinError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
