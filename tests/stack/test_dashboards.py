"""Structural checks of the Grafana dashboards and their provisioning.

Grafana itself does not run here, so the dashboards are checked as data: the rules of
grafana/dashboard-linter that matter (one datasource variable used everywhere, units,
descriptions, `$__rate_interval`), stable uids, multi-select variables, and the queries
themselves: every metric and label they name must exist in the exporter's metric contract
(or a recording rule), and every query, with its template variables substituted, must
parse as PromQL (`promtool check rules`).

`panel_queries(dashboard)` is public: the live test that evaluates every panel against a
Prometheus scraping the exporter reuses it.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.metrics import catalogue
from exporter.metrics.selfmetrics import SelfMetrics
from tests.support.processes import REPO, find_tool

DASHBOARD_DIR = REPO / "grafana" / "dashboards"
PROVISIONING_DIR = REPO / "grafana" / "provisioning"
RULES_DIR = REPO / "prometheus" / "rules"
COMPOSE_FILE = REPO / "docker-compose.yml"
PROMETHEUS_CONFIG = REPO / "prometheus" / "prometheus.yml"

# Stable uids: links, bookmarks and provisioning depend on them, so a change must be deliberate.
EXPECTED_UIDS = {
    "eightbyeight-overview.json": "eightbyeight-overview",
    "eightbyeight-exporter.json": "eightbyeight-exporter",
}
DATASOURCE_VARIABLE = "datasource"
DATASOURCE_REF = {"type": "prometheus", "uid": "${datasource}"}

# ---------------------------------------------------------------------------------------
# The exporter's metric contract: sample name -> labels besides the target labels that
# Prometheus adds (job, instance). Taken from the metric catalogue, plus the client library's
# process_* and python_* families as the exporter really exposes them.
# ---------------------------------------------------------------------------------------


def _library_labels() -> dict[str, frozenset[str]]:
    names: dict[str, frozenset[str]] = {}
    for family in SelfMetrics().registry.collect():
        for sample in family.samples:
            if not sample.name.startswith("eightbyeight_"):
                names[sample.name] = frozenset(sample.labels)
    return names


METRIC_LABELS: dict[str, frozenset[str]] = {
    # Prometheus' own series of every target: the job and instance variables read it.
    "up": frozenset(),
    **{name: frozenset(labels) for name, labels in catalogue.sample_labels().items()},
    **_library_labels(),
}
# Labels of every series: the target's, and the cluster label (mixin/config.libsonnet) that
# external labels or relabelling add where one Prometheus (or Thanos, Mimir) holds several.
TARGET_LABELS = frozenset({"job", "instance", "cluster"})
# Series Prometheus makes itself; their labels depend on the rules, so any label is allowed.
PROMETHEUS_SERIES = frozenset({"ALERTS", "ALERTS_FOR_STATE"})

# What Grafana puts in place of its own variables, for queries run outside Grafana.
GRAFANA_VARIABLE_VALUES = {
    "__rate_interval": "1m",
    "__interval": "1m",
    "__interval_ms": "60000",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
}
# Multi-select variables with "All" selected become this regex (the variables' allValue).
ALL_VALUE = ".*"
# Panels the demo (`--demo`) leaves empty: it reads no prepaid balance (--balance.account-id).
# The tests against the demo run their queries without asking them for data;
# tests/stack/test_dashboard_values.py checks their numbers on known series.
NOT_IN_THE_DEMO = frozenset({"Prepaid balance", "Prepaid balance: days left"})

# ---------------------------------------------------------------------------------------
# Reading dashboards
# ---------------------------------------------------------------------------------------


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARD_DIR.glob("*.json"))


def load_dashboard(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def load_dashboards() -> dict[str, dict[str, Any]]:
    """Every dashboard in grafana/dashboards/, keyed by file name."""
    return {path.name: load_dashboard(path) for path in dashboard_files()}


def iter_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel that shows data, including those nested in collapsed rows."""
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def template_variables(dashboard: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {var["name"]: var for var in dashboard.get("templating", {}).get("list", [])}


_VARIABLE_REF = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\$(\w+)|\[\[(\w+)\]\]")


def variable_names_in(text: str) -> set[str]:
    return {next(g for g in match.groups() if g) for match in _VARIABLE_REF.finditer(text)}


def _variable_value(name: str, variables: dict[str, dict[str, Any]]) -> str | None:
    if name in GRAFANA_VARIABLE_VALUES:
        return GRAFANA_VARIABLE_VALUES[name]
    var = variables.get(name)
    if var is None or var.get("type") == "datasource":
        return None
    return var.get("allValue") or ALL_VALUE


def substitute_variables(expr: str, dashboard: dict[str, Any]) -> str:
    """The query as Prometheus would receive it with every variable on "All"."""
    variables = template_variables(dashboard)

    def replace(match: re.Match[str]) -> str:
        name = next(g for g in match.groups() if g)
        value = _variable_value(name, variables)
        return match.group(0) if value is None else value

    return _VARIABLE_REF.sub(replace, expr)


def panel_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL) for every query target, template variables substituted.

    Variables become what Grafana sends with every selector on "All": multi-select
    variables their allValue (`.*`), `$__rate_interval`/`$__interval` `1m`, `$__range` `1h`.
    """
    queries = []
    for panel in iter_panels(dashboard):
        for target in panel.get("targets", []):
            expr = target.get("expr", "")
            if expr.strip() and not target.get("hide"):
                queries.append((panel["title"], substitute_variables(expr, dashboard)))
    return queries


def annotation_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(annotation name, PromQL) for every Prometheus annotation, variables substituted."""
    return [
        (annotation["name"], substitute_variables(annotation["expr"], dashboard))
        for annotation in dashboard.get("annotations", {}).get("list", [])
        if annotation.get("expr")
    ]


_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?P<selector>.+?)\s*,\s*(?P<label>\w+)\s*\)\s*$")


def variable_label_queries(dashboard: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(variable name, series selector, label) of every label_values() query variable."""
    found = []
    for name, var in template_variables(dashboard).items():
        if var.get("type") != "query":
            continue
        query = var.get("query")
        text = query.get("query", "") if isinstance(query, dict) else str(query)
        match = _LABEL_VALUES.match(text)
        assert match, f"variable {name}: expected label_values(selector, label), got {text!r}"
        selector = substitute_variables(match["selector"], dashboard)
        found.append((name, selector, match["label"]))
    return found


def all_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """Panel, annotation and variable queries: every PromQL the dashboard sends."""
    variable_selectors = [
        (f"variable {name}", selector) for name, selector, _ in variable_label_queries(dashboard)
    ]
    return panel_queries(dashboard) + annotation_queries(dashboard) + variable_selectors


def raw_exprs(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, query as written) of panels, annotations and variables, before substitution."""
    exprs = [
        (panel["title"], target["expr"])
        for panel in iter_panels(dashboard)
        for target in panel.get("targets", [])
        if target.get("expr")
    ]
    exprs += [
        (annotation["name"], annotation["expr"])
        for annotation in dashboard.get("annotations", {}).get("list", [])
        if annotation.get("expr")
    ]
    for var in template_variables(dashboard).values():
        if var.get("type") == "query":
            query = var.get("query")
            text = query.get("query", "") if isinstance(query, dict) else str(query)
            exprs.append((f"variable {var['name']}", text))
    return exprs


def recording_rule_names() -> set[str]:
    names: set[str] = set()
    for path in sorted(RULES_DIR.glob("*.yml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for group in doc.get("groups", []):
            names.update(rule["record"] for rule in group.get("rules", []) if "record" in rule)
    return names


# ---------------------------------------------------------------------------------------
# A small PromQL reader: enough to name the metrics, matchers, functions and grouping
# labels of a query, and to reject unbalanced brackets or unknown functions. promtool
# (below) is the full parser; this one runs everywhere and says *which* name is wrong.
# ---------------------------------------------------------------------------------------

_AGGREGATIONS_TEXT = "sum min max avg group stddev stdvar count count_values bottomk topk quantile"
_FUNCTIONS_TEXT = """
    abs absent absent_over_time ceil changes clamp clamp_max clamp_min day_of_month
    day_of_week day_of_year days_in_month delta deriv exp floor histogram_count histogram_sum
    histogram_fraction histogram_quantile holt_winters hour idelta increase irate label_join
    label_replace ln log2 log10 minute month predict_linear rate resets round scalar sgn sort
    sort_desc sqrt time timestamp vector year avg_over_time min_over_time max_over_time
    sum_over_time count_over_time quantile_over_time stddev_over_time stdvar_over_time
    last_over_time present_over_time acos acosh asin asinh atan atanh cos cosh sin sinh tan
    tanh deg rad pi
"""
AGGREGATIONS = frozenset(_AGGREGATIONS_TEXT.split())
FUNCTIONS = AGGREGATIONS | frozenset(_FUNCTIONS_TEXT.split())
GROUPING_KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
OPERATOR_KEYWORDS = frozenset({"and", "or", "unless", "bool", "atan2", "inf", "nan", "offset"})
RATE_FUNCTIONS = ("rate", "irate", "increase")

_TOKEN = re.compile(
    r"""
      (?P<ws>\s+)
    | (?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
    | (?P<range>\[[^\[\]]*\])
    | (?P<number>(?:0x[0-9a-fA-F]+|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+)(?![A-Za-z_]))
    | (?P<duration>(?:\d+(?:ms|s|m|h|d|w|y))+(?![A-Za-z0-9_]))
    | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
    | (?P<op>=~|!~|!=|==|>=|<=|[-+*/%^<>=,(){}])
    """,
    re.VERBOSE,
)
_DURATION = re.compile(r"^\[(\d+(ms|s|m|h|d|w|y))+(:(\d+(ms|s|m|h|d|w|y))*)?\]$")
_MATCH_OPS = frozenset({"=", "!=", "=~", "!~"})


class PromQLError(ValueError):
    pass


@dataclass
class QueryFacts:
    selectors: list[tuple[str, set[str]]] = field(default_factory=list)
    functions: list[str] = field(default_factory=list)
    grouping_labels: set[str] = field(default_factory=set)


def tokenize(expr: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    while pos < len(expr):
        match = _TOKEN.match(expr, pos)
        if not match:
            raise PromQLError(f"unexpected {expr[pos : pos + 20]!r} at offset {pos}")
        if match.lastgroup != "ws":
            tokens.append((match.lastgroup, match.group(0)))
        pos = match.end()
    return tokens


def _check_brackets(tokens: list[tuple[str, str]]) -> None:
    pairs, stack = {")": "(", "}": "{"}, []
    for kind, text in tokens:
        if kind != "op":
            continue
        if text in "({":
            stack.append(text)
        elif text in pairs and (not stack or stack.pop() != pairs[text]):
            raise PromQLError(f"unbalanced {text!r}")
    if stack:
        raise PromQLError(f"unclosed {stack[-1]!r}")


def _read_label_list(tokens: list[tuple[str, str]], start: int) -> tuple[set[str], int]:
    """Labels of `(a, b)` starting at tokens[start] == '('; returns them and the next index."""
    labels, i = set(), start + 1
    while tokens[i][1] != ")":
        kind, text = tokens[i]
        if kind == "ident":
            labels.add(text)
        elif text != ",":
            raise PromQLError(f"unexpected {text!r} in label list")
        i += 1
    return labels, i + 1


def _read_matchers(tokens: list[tuple[str, str]], start: int) -> tuple[set[str], int]:
    """Label names of `{a="x", b=~"y"}` starting at tokens[start] == '{'."""
    labels, i = set(), start + 1
    while tokens[i][1] != "}":
        (k1, name), (_, op), (k3, _value) = tokens[i : i + 3]
        if k1 != "ident" or op not in _MATCH_OPS or k3 != "string":
            raise PromQLError(f"bad label matcher near {name!r}")
        labels.add(name)
        i += 3
        if tokens[i][1] == ",":
            i += 1
    return labels, i + 1


def analyse(expr: str) -> QueryFacts:
    tokens = tokenize(expr)
    _check_brackets(tokens)
    tokens.append(("end", ""))
    facts, i = QueryFacts(), 0
    while tokens[i][0] != "end":
        kind, text = tokens[i]
        following = tokens[i + 1][1]
        if kind == "range" and not _DURATION.match(text):
            raise PromQLError(f"bad range {text!r}")
        if kind == "op" and text == "{":
            raise PromQLError("selector without a metric name")
        if kind != "ident":
            i += 1
        elif text in GROUPING_KEYWORDS:
            if following == "(":
                labels, i = _read_label_list(tokens, i + 1)
                facts.grouping_labels |= labels
            else:
                i += 1
        elif text in OPERATOR_KEYWORDS:
            i += 1
        elif following == "(" or (text in AGGREGATIONS and following in ("by", "without")):
            if text not in FUNCTIONS:
                raise PromQLError(f"unknown function {text}()")
            facts.functions.append(text)
            i += 1
        else:
            labels: set[str] = set()
            i += 1
            if tokens[i][1] == "{":
                labels, i = _read_matchers(tokens, i)
            facts.selectors.append((text, labels))
    return facts


def known_labels(metric: str) -> frozenset[str] | None:
    """Labels the metric may carry; None for recording rules and Prometheus' own series."""
    if metric in METRIC_LABELS:
        return METRIC_LABELS[metric] | TARGET_LABELS
    return None


def metric_problems(expr: str, recorded: set[str]) -> list[str]:
    facts = analyse(expr)
    problems = []
    for metric, labels in facts.selectors:
        if metric not in METRIC_LABELS and metric not in recorded | PROMETHEUS_SERIES:
            problems.append(f"unknown metric {metric}")
            continue
        allowed = known_labels(metric)
        if allowed is not None and not labels <= allowed:
            problems.append(f"{metric} has no label(s) {sorted(labels - allowed)}")
    return problems


# ---------------------------------------------------------------------------------------
# Self-checks of the reader, so that a lenient reader cannot hide a broken dashboard.
# ---------------------------------------------------------------------------------------


def test_reader_names_metrics_labels_and_functions():
    facts = analyse(
        'sum by (country) (rate(eightbyeight_api_requests_total{subaccount=~".*"}[1m]))'
        " / on (subaccount) group_left (version) eightbyeight_exporter_build_info"
    )
    assert facts.selectors == [
        ("eightbyeight_api_requests_total", {"subaccount"}),
        ("eightbyeight_exporter_build_info", set()),
    ]
    assert facts.functions == ["sum", "rate"]
    assert facts.grouping_labels == {"country", "subaccount", "version"}


@pytest.mark.parametrize(
    ("expr", "problem"),
    [
        ("sum(eightbyeight_up", "unclosed"),
        ("sum(eightbyeight_up))", "unbalanced"),
        ("rate(eightbyeight_up[5x])", "bad range"),
        ("frobnicate(eightbyeight_up)", "unknown function"),
        ('{__name__="eightbyeight_up"}', "selector without a metric name"),
        ("eightbyeight_up{subaccount}", "bad label matcher"),
    ],
)
def test_reader_rejects_malformed_queries(expr, problem):
    with pytest.raises(PromQLError, match=problem):
        analyse(expr)


@pytest.mark.parametrize(
    ("expr", "problem"),
    [
        ("eightbyeight_no_such_metric", "unknown metric eightbyeight_no_such_metric"),
        ('eightbyeight_number_healthy{country="SG"}', "has no label(s) ['country']"),
    ],
)
def test_reader_reports_names_outside_the_contract(expr, problem):
    problems = metric_problems(expr, recorded=set())
    assert any(problem in found for found in problems), problems


def test_substitution_gives_what_grafana_sends():
    dashboard = {
        "templating": {
            "list": [
                {"name": "datasource", "type": "datasource", "query": "prometheus"},
                {"name": "subaccount", "type": "query", "allValue": ".*"},
            ]
        },
        "panels": [
            {
                "title": "t",
                "targets": [
                    {"expr": 'rate(x{subaccount=~"$subaccount"}[$__rate_interval])'},
                    {"expr": 'y{subaccount=~"${subaccount:regex}"}[$__range]'},
                    {"expr": "", "refId": "empty"},
                    {"expr": "hidden", "hide": True},
                ],
            }
        ],
    }
    assert panel_queries(dashboard) == [
        ("t", 'rate(x{subaccount=~".*"}[1m])'),
        ("t", 'y{subaccount=~".*"}[1h]'),
    ]


# ---------------------------------------------------------------------------------------
# Dashboard rules
# ---------------------------------------------------------------------------------------

DASHBOARDS = load_dashboards()
DASHBOARD_IDS = sorted(DASHBOARDS)


def test_expected_dashboards_exist():
    assert sorted(EXPECTED_UIDS) == DASHBOARD_IDS


@pytest.mark.parametrize("name", DASHBOARD_IDS)
def test_uid_is_stable(name):
    uid = DASHBOARDS[name]["uid"]
    assert uid == EXPECTED_UIDS[name]
    assert re.fullmatch(r"[a-z0-9-]{1,40}", uid), "Grafana uids are at most 40 characters"


def test_uids_and_titles_are_unique():
    uids = [d["uid"] for d in DASHBOARDS.values()]
    titles = [d["title"] for d in DASHBOARDS.values()]
    assert len(set(uids)) == len(uids)
    assert len(set(titles)) == len(titles)


@pytest.mark.parametrize("name", DASHBOARD_IDS)
def test_no_import_placeholders(name):
    """File provisioning does not fill __inputs/${DS_...}: they would break provisioning."""
    text = (DASHBOARD_DIR / name).read_text(encoding="utf-8")
    dashboard = DASHBOARDS[name]
    assert "__inputs" not in dashboard
    assert "__requires" not in dashboard
    assert "${DS_" not in text
    assert dashboard.get("id") is None, "a fixed numeric id clashes on import"


@pytest.mark.parametrize("name", DASHBOARD_IDS)
def test_has_one_prometheus_datasource_variable(name):
    datasource_vars = [
        var for var in DASHBOARDS[name]["templating"]["list"] if var.get("type") == "datasource"
    ]
    assert len(datasource_vars) == 1
    assert datasource_vars[0]["name"] == DATASOURCE_VARIABLE
    assert datasource_vars[0]["query"] == "prometheus"


def _datasource_refs(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every "datasource" value anywhere in the dashboard, with where it is."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                yield path, value
            yield from _datasource_refs(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _datasource_refs(value, f"{path}[{index}]")


@pytest.mark.parametrize("name", DASHBOARD_IDS)
def test_every_panel_and_target_uses_the_datasource_variable(name):
    dashboard = DASHBOARDS[name]
    for panel in iter_panels(dashboard):
        assert panel.get("datasource") == DATASOURCE_REF, panel["title"]
        for target in panel.get("targets", []):
            assert target.get("datasource") == DATASOURCE_REF, (panel["title"], target)
    for var in template_variables(dashboard).values():
        if var["type"] == "query":
            assert var.get("datasource") == DATASOURCE_REF, var["name"]
    stray = [(where, ref) for where, ref in _datasource_refs(dashboard) if ref != DATASOURCE_REF]
    assert not stray, f"datasource references other than ${{datasource}}: {stray}"


@pytest.mark.parametrize("name", DASHBOARD_IDS)
def test_every_panel_has_title_description_and_unit(name):
    for panel in iter_panels(DASHBOARDS[name]):
        title = panel.get("title", "")
        assert title.strip(), f"panel {panel.get('id')} has no title"
        assert len(panel.get("description", "").strip()) >= 20, f"{title}: no description"
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit")
        assert unit, f"{title}: no unit in fieldConfig.defaults"


@pytest.mark.parametrize("name", DASHBOARD_IDS)
def test_panels_fit_the_grid_without_overlapping(name):
    cells: dict[tuple[int, int], str] = {}
    ids = []
    for panel in iter_panels(DASHBOARDS[name]):
        ids.append(panel["id"])
        pos = panel["gridPos"]
        assert pos["x"] >= 0, panel["title"]
        assert min(pos["w"], pos["h"]) > 0, panel["title"]
        assert pos["x"] + pos["w"] <= 24, f"{panel['title']} is wider than the grid"
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]
    assert len(set(ids)) == len(ids), "panel ids must be unique"


@pytest.mark.parametrize("name", DASHBOARD_IDS)
def test_query_variables_are_multi_select_with_all(name):
    """All but the cluster: one cluster at a time, so that no panel adds clusters up."""
    query_vars = [
        v
        for v in template_variables(DASHBOARDS[name]).values()
        if v["type"] == "query" and v["name"] != "cluster"
    ]
    assert query_vars
    for var in query_vars:
        assert var.get("multi") is True, var["name"]
        assert var.get("includeAll") is True, var["name"]
        assert var.get("allValue") == ALL_VALUE, var["name"]
        assert var.get("refresh") in (1, 2), f"{var['name']} never refreshes its values"
        # Grafana's schema has no `definition` (tests/stack/test_mixin.py type-checks against it).
        assert "definition" not in var, var["name"]


def test_overview_filters_by_subaccount_country_and_type():
    variables = template_variables(DASHBOARDS["eightbyeight-overview.json"])
    assert {"subaccount", "country", "number_type"} <= set(variables)


def test_exporter_dashboard_filters_by_subaccount():
    assert "subaccount" in template_variables(DASHBOARDS["eightbyeight-exporter.json"])


@pytest.mark.parametrize("name", DASHBOARD_IDS)
def test_variable_queries_name_real_labels(name):
    recorded = recording_rule_names()
    for var_name, selector, label in variable_label_queries(DASHBOARDS[name]):
        assert not metric_problems(selector, recorded), var_name
        for metric, _ in analyse(selector).selectors:
            allowed = known_labels(metric)
            assert allowed is None or label in allowed, f"{var_name}: {metric} has no {label}"


def _rate_calls(expr: str) -> Iterator[tuple[str, str]]:
    """(function, argument text) of every rate()/irate()/increase() call."""
    for match in re.finditer(r"\b(rate|irate|increase)\s*\(", expr):
        depth, start = 1, match.end()
        for end in range(start, len(expr)):
            depth += {"(": 1, ")": -1}.get(expr[end], 0)
            if depth == 0:
                yield match.group(1), expr[start:end]
                break


@pytest.mark.parametrize("name", DASHBOARD_IDS)
def test_every_rate_uses_rate_interval(name):
    calls = 0
    for title, expr in raw_exprs(DASHBOARDS[name]):
        for function, argument in _rate_calls(expr):
            calls += 1
            ranges = re.findall(r"\[[^\]]*\]", argument)
            assert ranges == ["[$__rate_interval]"], f"{title}: {function}({argument})"
    if name == "eightbyeight-exporter.json":
        assert calls >= 3, "the exporter dashboard rates its request counters"


def test_rate_rule_catches_a_fixed_window():
    bad = "rate(eightbyeight_api_requests_total[5m])"
    assert [re.findall(r"\[[^\]]*\]", arg) for _, arg in _rate_calls(bad)] == [["[5m]"]]


@pytest.mark.parametrize("name", DASHBOARD_IDS)
def test_every_variable_used_is_defined(name):
    dashboard = DASHBOARDS[name]
    defined = set(template_variables(dashboard)) | set(GRAFANA_VARIABLE_VALUES)
    for title, expr in raw_exprs(dashboard):
        undefined = variable_names_in(expr) - defined
        assert not undefined, f"{title}: undefined variables {undefined}"


@pytest.mark.parametrize("name", DASHBOARD_IDS)
def test_multi_value_variables_are_matched_as_regex(name):
    """A multi-select value arrives as `a|b`: only =~ and !~ match it."""
    dashboard = DASHBOARDS[name]
    multi = {n for n, v in template_variables(dashboard).items() if v.get("multi")}
    exact = re.compile(r'(\w+)\s*(=|!=)\s*"\$\{?(\w+)')
    for title, expr in raw_exprs(dashboard):
        for label, op, var in exact.findall(expr):
            assert var not in multi, f'{title}: {label}{op}"${var}" must use =~ or !~'


@pytest.mark.parametrize("name", DASHBOARD_IDS)
def test_every_metric_and_label_is_in_the_contract(name):
    recorded = recording_rule_names()
    problems = {}
    for title, expr in all_queries(DASHBOARDS[name]):
        found = metric_problems(expr, recorded)
        if found:
            problems[title] = found
    assert not problems


@pytest.mark.parametrize("name", DASHBOARD_IDS)
def test_grouping_and_legend_labels_exist(name):
    """by/on/group_left labels and {{label}} legends name labels the query's metrics have."""
    dashboard = DASHBOARDS[name]
    for panel in iter_panels(dashboard):
        for target in panel.get("targets", []):
            facts = analyse(substitute_variables(target["expr"], dashboard))
            available: set[str] = set(TARGET_LABELS)
            for metric, _ in facts.selectors:
                labels = known_labels(metric)
                if labels is None:
                    break
                available |= labels
            else:
                missing = facts.grouping_labels - available
                assert not missing, f"{panel['title']}: no such label(s) {missing}"
                legend = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")))
                assert legend <= available, f"{panel['title']}: legend uses {legend - available}"


@pytest.mark.parametrize("name", DASHBOARD_IDS)
def test_substituted_queries_are_complete(name):
    dashboard = DASHBOARDS[name]
    queries = panel_queries(dashboard)
    targets = [t for p in iter_panels(dashboard) for t in p.get("targets", [])]
    assert len(queries) == len(targets) > 0
    for title, expr in queries + annotation_queries(dashboard):
        assert not re.search(r"\$|\[\[", expr), f"{title}: {expr}"


@pytest.mark.parametrize("name", DASHBOARD_IDS)
def test_queries_parse_as_promql(name, tmp_path):
    """promtool parses every query, variables substituted, as a recording rule expression."""
    promtool = find_tool("promtool")
    rules = [
        {"record": f"dashboard_query:{index}", "expr": expr}
        for index, (_, expr) in enumerate(all_queries(DASHBOARDS[name]))
    ]
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": name, "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def test_promtool_check_catches_a_bad_query(tmp_path):
    promtool = find_tool("promtool")
    path = tmp_path / "bad.yml"
    rule = {"record": "dashboard_query:0", "expr": "sum by (x (eightbyeight_up)"}
    path.write_text(yaml.safe_dump({"groups": [{"name": "bad", "rules": [rule]}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0


# ---------------------------------------------------------------------------------------
# What each dashboard must show
# ---------------------------------------------------------------------------------------


def _panels_by_title(name: str) -> dict[str, dict[str, Any]]:
    return {panel["title"]: panel for panel in iter_panels(DASHBOARDS[name])}


def _exprs(panel: dict[str, Any]) -> str:
    return "\n".join(target["expr"] for target in panel.get("targets", []))


def _panels_using(name: str, *needles: str, panel_type: str | None = None) -> list[str]:
    return [
        title
        for title, panel in _panels_by_title(name).items()
        if all(needle in _exprs(panel) for needle in needles)
        and (panel_type is None or panel["type"] == panel_type)
    ]


OVERVIEW = "eightbyeight-overview.json"
EXPORTER = "eightbyeight-exporter.json"


@pytest.mark.parametrize(
    "needles",
    [
        ("eightbyeight_virtual_numbers_by_status",),
        ("eightbyeight_virtual_numbers_healthy", "eightbyeight_virtual_numbers_unhealthy"),
        ("eightbyeight_virtual_numbers_unhealthy",),
        ("eightbyeight_virtual_numbers_expiring",),
        ("eightbyeight_virtual_numbers_by_status", 'operational_status="unhealthy"'),
        ("sum by (currency)", "eightbyeight_monthly_rental_cost"),
    ],
)
def test_overview_has_stat_panels(needles):
    assert _panels_using(OVERVIEW, *needles, panel_type="stat"), needles


def test_overview_healthy_share_is_a_percentage():
    panel = _panels_by_title(OVERVIEW)["Healthy share"]
    assert panel["fieldConfig"]["defaults"]["unit"] == "percentunit"


def test_overview_lists_unhealthy_expiring_and_status_unhealthy_numbers_with_check_age():
    tables = _panels_using(
        OVERVIEW,
        "eightbyeight_number_info",
        "eightbyeight_number_healthy",
        "== 0",
        'operational_status=~"expiring|unhealthy"',
        "time() - eightbyeight_number_health_last_checked_timestamp_seconds",
        panel_type="table",
    )
    assert len(tables) == 1
    panel = _panels_by_title(OVERVIEW)[tables[0]]
    assert all(t.get("format") == "table" and t.get("instant") for t in panel["targets"])
    assert panel["transformations"][0]["id"] == "merge", "one row per number"


@pytest.mark.parametrize(
    ("needles", "unit"),
    [
        (("sum by (country, number_type)", "eightbyeight_virtual_numbers_healthy"), None),
        (("eightbyeight_health_check_age_seconds",), "s"),
        (("sum by (operational_status)",), None),
        (("sum by (country, number_type, currency)", "eightbyeight_monthly_rental_cost"), None),
    ],
)
def test_overview_has_breakdowns(needles, unit):
    titles = _panels_using(OVERVIEW, *needles)
    assert titles, needles
    if unit:
        panels = _panels_by_title(OVERVIEW)
        assert any(panels[t]["fieldConfig"]["defaults"]["unit"] == unit for t in titles)


def test_overview_shows_firing_alerts():
    panel_types = {p["type"] for p in iter_panels(DASHBOARDS[OVERVIEW])}
    assert "alertlist" in panel_types
    annotations = dict(annotation_queries(DASHBOARDS[OVERVIEW]))
    assert any(
        expr.startswith("ALERTS{") and 'alertstate="firing", alertname=~"EightByEight.*"}' in expr
        for expr in annotations.values()
    ), annotations


def test_overview_alert_filter_matches_the_alert_rules():
    """The alert panels select EightByEight*: the rules must use that prefix."""
    names = set()
    for path in sorted(RULES_DIR.glob("*.yml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for group in doc.get("groups", []):
            names |= {rule["alert"] for rule in group.get("rules", []) if "alert" in rule}
    assert names, "no alert rules in prometheus/rules/"
    assert all(name.startswith("EightByEight") for name in names), names


@pytest.mark.parametrize(
    ("needles", "unit"),
    [
        (("eightbyeight_up",), None),
        (("eightbyeight_scrape_duration_seconds",), "s"),
        (("rate(eightbyeight_api_requests_total",), "reqps"),
        (("sum by (subaccount, reason)", "rate(eightbyeight_api_request_failures_total"), "reqps"),
        (("histogram_quantile(", "eightbyeight_api_request_duration_seconds_bucket"), "s"),
        (("eightbyeight_invalid_records",), None),
    ],
)
def test_exporter_dashboard_panels(needles, unit):
    titles = _panels_using(EXPORTER, *needles)
    assert titles, needles
    if unit:
        panels = _panels_by_title(EXPORTER)
        assert any(panels[t]["fieldConfig"]["defaults"]["unit"] == unit for t in titles)


# ---------------------------------------------------------------------------------------
# Provisioning: Grafana in the compose stack finds the data source and the dashboards
# ---------------------------------------------------------------------------------------


def _provisioning(kind: str) -> list[dict[str, Any]]:
    files = sorted((PROVISIONING_DIR / kind).glob("*.yml"))
    assert files, f"no grafana/provisioning/{kind}/*.yml"
    return [yaml.safe_load(path.read_text(encoding="utf-8")) for path in files]


def _grafana_mounts() -> dict[str, str]:
    """Host path (relative to the repository) -> container path, for the grafana service."""
    compose = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    mounts = {}
    for volume in compose["services"]["grafana"]["volumes"]:
        source, target = volume.split(":")[:2]
        if source.startswith("./"):
            mounts[source[2:].rstrip("/")] = target
    return mounts


def test_datasource_points_at_the_compose_prometheus_with_a_fixed_uid():
    datasources = [ds for doc in _provisioning("datasources") for ds in doc["datasources"]]
    prometheus = [ds for ds in datasources if ds["type"] == "prometheus"]
    assert len(prometheus) == 1
    assert prometheus[0]["url"] == "http://prometheus:9090"
    assert prometheus[0]["isDefault"] is True
    assert re.fullmatch(r"[a-z0-9-]{1,40}", prometheus[0]["uid"])
    compose = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert "prometheus" in compose["services"]


def test_datasource_time_interval_matches_the_scrape_interval():
    """$__rate_interval is derived from timeInterval: it must be the exporter's interval."""
    datasources = [ds for doc in _provisioning("datasources") for ds in doc["datasources"]]
    prometheus = next(ds for ds in datasources if ds["type"] == "prometheus")
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "eightbyeight")
    interval = job.get("scrape_interval", config["global"]["scrape_interval"])
    assert prometheus["jsonData"]["timeInterval"] == interval


def test_dashboard_provider_reads_the_mounted_dashboards():
    providers = [p for doc in _provisioning("dashboards") for p in doc["providers"]]
    assert len(providers) == 1
    provider = providers[0]
    assert provider["type"] == "file"
    mounts = _grafana_mounts()
    assert mounts.get("grafana/dashboards") == provider["options"]["path"]
    assert mounts.get("grafana/provisioning/dashboards") == "/etc/grafana/provisioning/dashboards"
    assert mounts.get("grafana/provisioning/datasources") == "/etc/grafana/provisioning/datasources"


def test_grafana_home_dashboard_is_a_mounted_file():
    compose = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    home = compose["services"]["grafana"]["environment"][
        "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"
    ]
    folder, _, file_name = home.rpartition("/")
    assert _grafana_mounts()["grafana/dashboards"] == folder
    assert (DASHBOARD_DIR / file_name).is_file()
