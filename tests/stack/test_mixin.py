"""The monitoring mixin (mixin/): the single source of the rule files and dashboards.

- The committed files are what `python -m mixin` builds, byte for byte, and its sources are
  jsonnetfmt-clean.
- The mixin lint, as a test: names, summaries and descriptions, runbook sections and promtool
  tests of every alert; the job selector on every selector of every rule and query; the cluster
  label kept by every aggregation and join (rules always; dashboards built multi-cluster).
- Every generated dashboard type-checks against Grafana's published schema (@grafana/schema,
  `tsc --noEmit`), the grafana.com import variants included.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from mixin import build
from tests.stack.test_dashboards import all_queries, iter_panels, template_variables
from tests.stack.test_rules import RECORD_NAME, SEVERITIES, alert_test_cases, runbook_anchors
from tests.support.processes import IN_CI, REPO

MIXIN = REPO / "mixin"
SCHEMA_CHECK = MIXIN / "schema-check"
SOURCES = sorted([*MIXIN.rglob("*.jsonnet"), *MIXIN.rglob("*.libsonnet")])
DEFAULT = build.evaluate()
MULTI = build.evaluate({"showMultiCluster": True})
CONFIG = DEFAULT["config"]
CLUSTER = CONFIG["clusterLabel"]
JOB_SELECTOR = CONFIG["eightbyeightSelector"]
DASHBOARD_SELECTORS = ('job=~"$job"', 'instance=~"$instance"')
MULTI_CLUSTER_SELECTOR = f'{CLUSTER}="$cluster"'

SUMMARY = re.compile(r"^[A-Z][^{}$]*\.$")
AGGREGATIONS = frozenset(
    {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values"}
    | {"bottomk", "topk", "quantile"}
)
LABEL_LISTS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
KEYWORDS = frozenset({"and", "or", "unless", "offset", "bool", "inf", "nan", "atan2"})


def missing_tool(message: str) -> None:
    """Skip where a tool is missing, fail under CI=true (conftest turns skips into failures)."""
    pytest.skip(message)


# --- a small PromQL walker: vector selectors and label lists ---------------------------------

_TOKEN = re.compile(
    r"""
      (?P<ws>\s+)
    | (?P<string>"(?:\\.|[^"\\])*")
    | (?P<matchers>\{[^{}]*\})
    | (?P<range>\[[^\]]*\])
    | (?P<number>\d+(?:\.\d+)?(?:e[+-]?\d+)?[a-z]*)
    | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
    | (?P<other>.)
    """,
    re.VERBOSE,
)


def _tokens(expr: str) -> list[tuple[str, str]]:
    found = [(m.lastgroup or "", m.group(0)) for m in _TOKEN.finditer(expr)]
    return [token for token in found if token[0] != "ws"] + [("end", "")]


def vector_selectors(expr: str) -> list[tuple[str, str]]:
    """(metric, its {matchers} text or '') of every vector selector in the expression."""
    tokens, found, i = _tokens(expr), [], 0
    while tokens[i][0] != "end":
        kind, text = tokens[i]
        following = tokens[i + 1][1]
        if kind == "ident" and text in LABEL_LISTS and following == "(":
            while tokens[i][1] != ")":
                i += 1
        elif kind == "ident" and not (
            text in KEYWORDS
            or text in LABEL_LISTS
            or following == "("
            or (text in AGGREGATIONS and following in ("by", "without"))
        ):
            matchers = following if tokens[i + 1][0] == "matchers" else ""
            found.append((text, matchers))
        i += 1
    return found


def label_lists(expr: str) -> list[tuple[str, list[str]]]:
    """(keyword, labels) of every by/without/on/ignoring clause."""
    return [
        (m["keyword"], [label.strip() for label in m["labels"].split(",") if label.strip()])
        for m in re.finditer(r"\b(?P<keyword>by|without|on|ignoring)\s*\((?P<labels>[^)]*)\)", expr)
    ]


def bare_aggregations(expr: str) -> list[str]:
    """Aggregations with no by/without: they drop every label, the cluster's too."""
    return [
        m["op"]
        for m in re.finditer(r"\b(?P<op>" + "|".join(AGGREGATIONS) + r")\s*\(", expr)
        if not re.match(r"\s*\([^()]*\)\s*(by|without)\b", expr[m.end() - 1 :])
    ]


def selector_problems(expr: str, required: tuple[str, ...], exempt: set[str]) -> list[str]:
    problems = []
    for metric, matchers in vector_selectors(expr):
        if metric in exempt:
            continue
        missing = [matcher for matcher in required if matcher not in matchers]
        if missing:
            problems.append(f"{metric}{matchers} lacks {', '.join(missing)}")
    return problems


def cluster_problems(expr: str, *, bare_allowed: bool) -> list[str]:
    problems = [
        f"{keyword} ({', '.join(labels)}) drops {CLUSTER}"
        for keyword, labels in label_lists(expr)
        if keyword in ("by", "on") and CLUSTER not in labels
    ]
    if not bare_allowed:
        problems += [f"{op}(...) without by drops {CLUSTER}" for op in bare_aggregations(expr)]
    return problems


def test_walker_finds_selectors_and_label_lists():
    expr = (
        'sum by (cluster, subaccount) (increase(a_total{job="x", reason="y"}[15m]) or (b unless'
        " b offset 15m)) / on (cluster) group_left () c:d:e > 0 and vector(0)"
    )
    assert vector_selectors(expr) == [
        ("a_total", '{job="x", reason="y"}'),
        ("b", ""),
        ("b", ""),
        ("c:d:e", ""),
    ]
    assert label_lists(expr) == [("by", ["cluster", "subaccount"]), ("on", ["cluster"])]
    assert bare_aggregations("sum(x) / sum by (a) (y) + max (z) without (b)") == ["sum"]


def test_lint_catches_a_missing_selector_and_a_dropped_cluster():
    expr = 'sum by (subaccount) (x{job="a"}) / on (job) y'
    assert selector_problems(expr, ('job="a"',), set()) == ['y lacks job="a"']
    assert cluster_problems(expr, bare_allowed=True) == [
        f"by (subaccount) drops {CLUSTER}",
        f"on (job) drops {CLUSTER}",
    ]
    assert cluster_problems("sum(x)", bare_allowed=False) == [
        f"sum(...) without by drops {CLUSTER}"
    ]


# --- the build -------------------------------------------------------------------------------


def test_committed_files_are_what_the_mixin_builds():
    stale = [str(path.relative_to(REPO)) for path in build.stale_files()]
    assert stale == [], f"out of date, run `python -m mixin`: {stale}"


def test_drift_of_one_byte_is_reported(monkeypatch: pytest.MonkeyPatch):
    target = REPO / "prometheus" / "rules" / "eightbyeight.alerts.yml"
    real_read = build._read

    def read(path: Path) -> str | None:
        text = real_read(path)
        return text.replace("for: 5m", "for: 6m", 1) if path == target and text else text

    monkeypatch.setattr(build, "_read", read)
    assert build.stale_files() == [target]


def test_check_command_passes_on_the_repository():
    result = subprocess.run(
        [sys.executable, "-m", "mixin", "--check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_a_bad_override_is_one_line():
    with pytest.raises(build.MixinError) as caught:
        build.evaluate({"forDurations": "5m"})
    assert "\n" not in str(caught.value)
    assert str(caught.value).startswith("jsonnet: ")


def test_the_kubernetes_folder_is_the_mixins():
    generator = build.kubernetes_generator()
    assert CONFIG["grafanaFolder"] == generator.FOLDER


def test_sources_are_jsonnetfmt_clean(tmp_path: Path):
    jsonnetfmt = shutil.which("jsonnetfmt")
    if jsonnetfmt is None:
        missing_tool("jsonnetfmt not found: apt-get install jsonnet (.ci/run does)")
    assert len(SOURCES) >= 8
    result = subprocess.run(
        [jsonnetfmt, "--test", *map(str, SOURCES)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"not formatted (run jsonnetfmt -i): {result.stdout}"
    # ...and a badly formatted file does fail the check.
    ugly = tmp_path / "ugly.libsonnet"
    ugly.write_text('{a:1,\n"b" : 2}\n')
    result = subprocess.run([jsonnetfmt, "--test", str(ugly)], capture_output=True, check=False)
    assert result.returncode != 0


# --- the lint: alerts and recording rules ----------------------------------------------------


def built_rules(built: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        rule
        for doc in (built["alerts"], built["rules"])
        for g in doc["groups"]
        for rule in g["rules"]
    ]


ALERTS = [rule for rule in built_rules(DEFAULT) if "alert" in rule]
RECORDS = [rule for rule in built_rules(DEFAULT) if "record" in rule]


def job_free_records(rules: list[dict[str, Any]]) -> set[str]:
    """Recording rules whose output has no job label: no job selector can apply to them."""
    return {
        rule["record"]
        for rule in rules
        if "record" in rule
        and any(kw == "by" and "job" not in labels for kw, labels in label_lists(rule["expr"]))
    }


@pytest.mark.parametrize("rule", ALERTS, ids=lambda r: f"{r['alert']}-{r['labels']['severity']}")
def test_alert_annotations_follow_the_conventions(rule: dict[str, Any]):
    name, annotations = rule["alert"], rule["annotations"]
    assert rule["labels"]["severity"] in SEVERITIES
    assert SUMMARY.match(annotations["summary"]), f"{name}: summary {annotations['summary']!r}"
    description = annotations["description"]
    assert "{{ $labels." in description, f"{name}: the description gives no detail"
    assert description.rstrip().endswith("."), f"{name}: description is not a sentence"
    assert annotations["runbook_url"] == CONFIG["runbookURLPattern"] % name.lower()
    assert name.lower() in runbook_anchors(), f"{name}: docs/runbook.md has no section"


def test_every_alert_has_a_promtool_test():
    tested = {case["alertname"] for case in alert_test_cases() if case.get("exp_alerts")}
    untested = {rule["alert"] for rule in ALERTS} - tested
    assert not untested, f"no promtool test fires {untested}"


def test_recording_rules_are_named_level_metric_operations():
    assert RECORDS
    for rule in RECORDS:
        assert RECORD_NAME.match(rule["record"]), rule["record"]


@pytest.mark.parametrize(
    "rule", built_rules(DEFAULT), ids=lambda r: r.get("alert") or r.get("record")
)
def test_every_rule_selects_the_job_and_keeps_the_cluster(rule: dict[str, Any]):
    exempt = job_free_records(built_rules(DEFAULT))
    assert not selector_problems(rule["expr"], (JOB_SELECTOR,), exempt)
    assert not cluster_problems(rule["expr"], bare_allowed=False)


def test_rules_follow_a_changed_job_selector_and_cluster_label():
    built = build.evaluate({"eightbyeightSelector": 'job="x"', "clusterLabel": "k8s_cluster"})
    for rule in built_rules(built):
        expr = rule["expr"]
        assert 'job="x"' in expr or rule.get("record") in job_free_records(built_rules(built))
        assert "eightbyeight|" not in expr
        assert all(
            "k8s_cluster" in labels for kw, labels in label_lists(expr) if kw in ("by", "on")
        )


# --- the lint: dashboards --------------------------------------------------------------------


def dashboard_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, query as written) of every panel target, annotation and variable."""
    found = [
        (panel["title"], target["expr"])
        for panel in iter_panels(dashboard)
        for target in panel.get("targets", [])
    ]
    found += [(a["name"], a["expr"]) for a in dashboard["annotations"]["list"]]
    for var in template_variables(dashboard).values():
        if var["type"] == "query":
            selector = re.fullmatch(r"label_values\((.+), \w+\)", var["query"])
            assert selector, var["query"]
            found.append((f"variable {var['name']}", selector.group(1)))
    return found


def required_matchers(where: str, multi_cluster: bool) -> tuple[str, ...]:
    """The job selector everywhere; the cluster where it is chosen; $job and $instance below
    the variables that choose them."""
    cluster = (MULTI_CLUSTER_SELECTOR,) if multi_cluster else ()
    if where == "variable cluster":
        return (JOB_SELECTOR,)
    if where in ("variable job", "variable instance"):
        return (*cluster, JOB_SELECTOR)
    return (*cluster, JOB_SELECTOR, *DASHBOARD_SELECTORS)


@pytest.mark.parametrize(("multi_cluster", "built"), [(False, DEFAULT), (True, MULTI)])
def test_every_dashboard_query_carries_the_selectors(multi_cluster: bool, built: dict[str, Any]):
    problems = []
    for name, dashboard in built["dashboards"].items():
        for where, expr in dashboard_queries(dashboard):
            required = required_matchers(where, multi_cluster)
            problems += [f"{name} / {where}: {p}" for p in selector_problems(expr, required, set())]
            if multi_cluster:
                found = cluster_problems(expr, bare_allowed=True)
                problems += [f"{name} / {where}: {p}" for p in found]
            else:
                assert "$cluster" not in expr, f"{name} / {where}"
    assert problems == []


@pytest.mark.parametrize(("multi_cluster", "built"), [(False, DEFAULT), (True, MULTI)])
def test_dashboards_have_target_variables(multi_cluster: bool, built: dict[str, Any]):
    for name, dashboard in built["dashboards"].items():
        variables = template_variables(dashboard)
        assert list(variables)[:4] == ["datasource", "cluster", "job", "instance"], name
        cluster = variables["cluster"]
        assert cluster["hide"] == (0 if multi_cluster else 2), name
        # One cluster at a time: no panel adds clusters up.
        assert cluster["multi"] is False
        assert cluster["includeAll"] is False
        assert cluster["query"] == f"label_values(up{{{JOB_SELECTOR}}}, {CLUSTER})"


def test_committed_dashboards_are_the_single_cluster_build():
    for name, dashboard in DEFAULT["dashboards"].items():
        committed = json.loads((build.DASHBOARDS / name).read_text(encoding="utf-8"))
        assert committed == dashboard


# --- grafana.com import variants -------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(DEFAULT["dashboards"]))
def test_import_variant_asks_for_the_data_source(name: str):
    provisioned = DEFAULT["dashboards"][name]
    imported = json.loads((build.IMPORT_DASHBOARDS / name).read_text(encoding="utf-8"))
    [source] = imported["__inputs"]
    assert source["type"] == "datasource"
    assert source["pluginId"] == "prometheus"
    datasource = template_variables(imported)["datasource"]
    assert datasource["current"]["value"] == f"${{{source['name']}}}"
    required = {(r["type"], r["id"]) for r in imported["__requires"]}
    panel_types = {p["type"] for p in iter_panels(provisioned)}
    assert {("grafana", "grafana"), ("datasource", "prometheus")} <= required
    assert {("panel", kind) for kind in panel_types} <= required
    # Everything else is the provisioned dashboard.
    rest = {k: v for k, v in imported.items() if not k.startswith("__") and k != "templating"}
    assert rest == {k: v for k, v in provisioned.items() if k != "templating"}
    assert all_queries(imported) == all_queries(provisioned)


# --- Grafana's schema ------------------------------------------------------------------------


def schema_checker() -> tuple[str, Path]:
    """node and tsc of mixin/schema-check (`npm ci` there installs @grafana/schema and tsc)."""
    node = shutil.which("node")
    tsc = SCHEMA_CHECK / "node_modules" / "typescript" / "bin" / "tsc"
    schema = SCHEMA_CHECK / "node_modules" / "@grafana" / "schema" / "package.json"
    if node is None or not tsc.is_file() or not schema.is_file():
        missing_tool(
            "node or mixin/schema-check's packages missing: npm ci --prefix mixin/schema-check"
        )
    return node, tsc


def write_schema_check(directory: Path, dashboards: dict[str, tuple[str, dict[str, Any]]]) -> None:
    """One .ts file per dashboard, the JSON as an object literal typed by dashboard.ts: a literal
    keeps its string values exact (an import of the .json would widen them to `string`) and
    gets TypeScript's excess-property check, so an unknown key is an error too."""
    types = SCHEMA_CHECK / "dashboard"
    schema_types = SCHEMA_CHECK / "node_modules/@grafana/schema/dist/types/index.d.ts"
    for index, (file_name, (type_name, dashboard)) in enumerate(sorted(dashboards.items())):
        body = json.dumps(dashboard, indent=2, ensure_ascii=False)
        (directory / f"d{index}.ts").write_text(
            f"// {file_name}\nimport type {{ {type_name} }} from '{types}';\n\n"
            f"export const dashboard: {type_name} = {body};\n",
            encoding="utf-8",
        )
    config = {
        "compilerOptions": {
            "strict": True,
            "noEmit": True,
            "target": "es2022",
            "module": "esnext",
            "moduleResolution": "bundler",
            "types": [],
            "paths": {"@grafana/schema": [str(schema_types)]},
        },
        "include": ["*.ts"],
    }
    (directory / "tsconfig.json").write_text(json.dumps(config, indent=2), encoding="utf-8")


def run_tsc(directory: Path) -> subprocess.CompletedProcess[str]:
    node, tsc = schema_checker()
    return subprocess.run(
        [node, str(tsc), "--noEmit", "-p", str(directory)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def generated_dashboards() -> dict[str, tuple[str, dict[str, Any]]]:
    """Every dashboard the repository ships or the mixin builds multi-cluster, with its type."""
    found = {}
    for path in sorted(build.DASHBOARDS.glob("*.json")):
        found[f"{path.name}"] = ("CheckedDashboard", json.loads(path.read_text("utf-8")))
    for path in sorted(build.IMPORT_DASHBOARDS.glob("*.json")):
        found[f"import/{path.name}"] = ("ImportableDashboard", json.loads(path.read_text("utf-8")))
    for name, dashboard in MULTI["dashboards"].items():
        found[f"multi-cluster/{name}"] = ("CheckedDashboard", dashboard)
    return found


@pytest.mark.slow
def test_every_dashboard_type_checks_against_grafanas_schema(tmp_path: Path):
    dashboards = generated_dashboards()
    assert len(dashboards) == 6
    write_schema_check(tmp_path, dashboards)
    result = run_tsc(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_schema_check_rejects_a_wrong_dashboard(tmp_path: Path):
    dashboard = json.loads(json.dumps(DEFAULT["dashboards"]["eightbyeight-exporter.json"]))
    template_variables(dashboard)["job"]["type"] = "querry"
    dashboard["panels"][0]["gridPoz"] = dashboard["panels"][0].pop("gridPos")
    write_schema_check(tmp_path, {"wrong.json": ("CheckedDashboard", dashboard)})
    result = run_tsc(tmp_path)
    assert result.returncode != 0
    assert "'\"querry\"' is not assignable to type 'VariableType'" in result.stdout, result.stdout
    assert "'\"gridPoz\"' does not exist" in result.stdout, result.stdout


def test_schema_check_packages_are_pinned():
    manifest = json.loads((SCHEMA_CHECK / "package.json").read_text(encoding="utf-8"))
    lock = json.loads((SCHEMA_CHECK / "package-lock.json").read_text(encoding="utf-8"))
    for package, version in manifest["devDependencies"].items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"{package} {version} is not exact"
        assert lock["packages"][f"node_modules/{package}"]["version"] == version
    assert "node_modules/" in (REPO / ".gitignore").read_text(encoding="utf-8").splitlines()
    assert IN_CI is False or (SCHEMA_CHECK / "node_modules").is_dir()


def test_generated_rule_files_load_as_yaml_with_for_on_its_own_line():
    """tests/support/'s fast_rules() shortens `for:` by rewriting its lines."""
    for path in sorted(build.RULES.glob("*.yml")):
        text = path.read_text(encoding="utf-8")
        doc = yaml.safe_load(text)
        alerts = [r for g in doc["groups"] for r in g["rules"] if "alert" in r]
        assert len(re.findall(r"(?m)^\s+for: \S+$", text)) == len(alerts)


def test_two_cluster_rule_tests_fail_when_the_rules_drop_the_cluster(tmp_path: Path):
    """prometheus/tests/clusters.test.yml proves something: built with another cluster label
    (so every by/on drops `cluster`), the rules mix the two clusters and its tests fail."""
    promtool = shutil.which("promtool")
    if promtool is None:
        missing_tool("promtool not found: apt-get install prometheus (.ci/run does)")
    (tmp_path / "rules").mkdir()
    (tmp_path / "tests").mkdir()
    for path, text in build.render({"clusterLabel": "zone"}).items():
        if path.parent == build.RULES:
            (tmp_path / "rules" / path.name).write_text(text, encoding="utf-8")
    test_file = REPO / "prometheus" / "tests" / "clusters.test.yml"
    shutil.copy(test_file, tmp_path / "tests" / test_file.name)
    result = subprocess.run(
        [promtool, "test", "rules", f"tests/{test_file.name}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0, result.stdout
    for failing in ("EightByEightApiDown", "EightByEightNumberUnhealthy"):
        assert failing in result.stdout + result.stderr
