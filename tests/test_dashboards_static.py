"""The Grafana dashboards in dashboards/, checked without Grafana or a running Prometheus.

Each dashboard must import anywhere (fixed uid, no fixed id, a Prometheus data source
variable used by every panel), filter by the cluster/account/region variables wherever the
series carry those labels, and query only the metrics of the contract in PRODUCT.md
("Metrics"). Every PromQL expression, of the dashboards and of deploy/prometheus/alerts.yaml,
is parsed by promtool (as recording rules, with Grafana's variables substituted). The two
"Drifted for" panels derive a duration no metric exports directly; promtool unit tests prove
they measure what their descriptions say.

Without promtool the promtool tests skip on a developer machine but fail in CI (``CI=true``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

ROOT = Path(__file__).parent.parent
DASHBOARD_DIR = ROOT / "dashboards"
DASHBOARDS = sorted(DASHBOARD_DIR.glob("*.json"))
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yaml"

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
PLACE_VARIABLES = ("cluster", "account", "region")

# PRODUCT.md, "Metrics", as Prometheus stores them: counters end in _total, the histogram is
# only queryable through its _bucket/_sum/_count series.
CONTRACT_METRICS = frozenset(
    {
        "driftwarden_reconcile_duration_seconds_bucket",
        "driftwarden_reconcile_duration_seconds_sum",
        "driftwarden_reconcile_duration_seconds_count",
        "driftwarden_reconcile_total",
        "driftwarden_last_successful_reconcile_timestamp_seconds",
        "driftwarden_resource_info",
        "driftwarden_drifted_resources",
        "driftwarden_drift_detected_total",
        "driftwarden_apply_actions_total",
        "driftwarden_aws_api_calls_total",
        "driftwarden_aws_throttled_total",
        "driftwarden_git_revision_info",
        "driftwarden_git_last_sync_timestamp_seconds",
        "driftwarden_git_fetch_total",
        "driftwarden_manifests",
        "driftwarden_build_info",
        "up",
    }
)
# The series that carry cluster, account and region labels: every panel selecting them must
# honour the dashboard's variables.
PLACED_METRICS = ("driftwarden_resource_info", "driftwarden_drifted_resources")

# Grafana's variables, replaced by values that keep the PromQL valid and meaning the same.
SUBSTITUTIONS = {
    "cluster": ".*",
    "account": ".*",
    "region": ".*",
    "__rate_interval": "5m",
    "__interval": "5m",
    "__range": "1h",
}
VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")


# -- promtool -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def promtool() -> str:
    """The promtool executable; skipped locally when missing, a failure in CI."""
    path = shutil.which("promtool")
    if path is None:
        message = "promtool not found: apt-get install prometheus (gives /usr/bin/promtool)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; CI must not skip the PromQL checks")
        pytest.skip(message)
    return path


def check_expressions(promtool: str, expressions: dict[str, str], directory: Path) -> str:
    """promtool's report on `expressions` (name → PromQL) as recording rules; "" when all parse."""
    rules = [
        {"record": f"check:expression_{index}", "expr": expr, "labels": {"source": name}}
        for index, (name, expr) in enumerate(expressions.items())
    ]
    path = directory / "expressions.rules.yaml"
    # JSON is YAML, and json.dumps escapes whatever the expressions contain.
    path.write_text(json.dumps({"groups": [{"name": "check", "rules": rules}]}), encoding="utf-8")
    result = subprocess.run(
        [promtool, "check", "rules", "--lint=none", str(path)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    if result.returncode == 0:
        return ""
    report = result.stdout + result.stderr
    for index, name in enumerate(expressions):
        report = report.replace(f"check:expression_{index}", name)
    return report


def run_rule_tests(promtool: str, tests: dict[str, Any], directory: Path) -> str:
    """promtool's report on a `promtool test rules` file holding `tests`; "" when they pass."""
    path = directory / "panel.test.yaml"
    path.write_text(json.dumps(tests), encoding="utf-8")
    result = subprocess.run(
        [promtool, "test", "rules", str(path)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    return "" if result.returncode == 0 else result.stdout + result.stderr


# -- reading dashboards and rules -----------------------------------------------------------


def load_dashboard(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in (collapsed) rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def panel_expressions(dashboard: dict[str, Any]) -> dict[str, str]:
    """Every PromQL expression of the panels and annotations, by a name that says where."""
    found = {}
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            found[f"panel {panel['title']!r} {target['refId']}"] = target["expr"]
    for annotation in dashboard["annotations"]["list"]:
        if "expr" in annotation:
            found[f"annotation {annotation['name']!r}"] = annotation["expr"]
    return found


LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*(?P<label>\w+)\)$")


def variable_selectors(dashboard: dict[str, Any]) -> dict[str, str]:
    """The series selector inside each query variable's label_values(...), by variable name."""
    found = {}
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            query = query["query"] if isinstance(query, dict) else query
            match = LABEL_VALUES.match(query)
            assert match, f"variable {variable['name']}: expected label_values(selector, label)"
            found[f"variable {variable['name']!r}"] = match["selector"]
    return found


def substitute(expr: str) -> str:
    """`expr` with Grafana's variables replaced; an unknown variable is an error."""

    def replace(match: re.Match[str]) -> str:
        name = match[1] or match[2]
        if name not in SUBSTITUTIONS:
            raise AssertionError(f"unknown dashboard variable ${name} in {expr!r}")
        return SUBSTITUTIONS[name]

    return VARIABLE.sub(replace, expr)


def alert_expressions() -> dict[str, str]:
    groups = YAML(typ="safe", pure=True).load(ALERTS.read_text(encoding="utf-8"))["groups"]
    return {
        f"alert {rule['alert']}": rule["expr"]
        for group in groups
        for rule in group["rules"]
        if "alert" in rule
    }


def all_expressions() -> dict[str, str]:
    """Every expression of every dashboard and alert, variables substituted."""
    found = {}
    for path in DASHBOARDS:
        dashboard = load_dashboard(path)
        for name, expr in {**panel_expressions(dashboard), **variable_selectors(dashboard)}.items():
            found[f"{path.name}: {name}"] = substitute(expr)
    found.update(alert_expressions())
    return found


# -- metric names in PromQL, without a PromQL parser ----------------------------------------

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_BRACKETS = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_TOKENS = re.compile(r"(?P<number>\d[\w.]*)|(?P<name>[A-Za-z_:][\w:]*)(?P<call>\s*\()?")
_KEYWORDS = frozenset(
    {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
     "offset", "bool", "inf", "nan", "atan2"}
)


def metric_names(expr: str) -> set[str]:
    """The metric names `expr` selects: identifiers that are not functions, keywords or labels."""
    text = _STRINGS.sub('""', expr)
    text = _MATCHERS.sub("{}", text)
    text = _BRACKETS.sub("[]", text)
    text = _GROUPING.sub(" ", text)
    names = set()
    for token in _TOKENS.finditer(text):
        name = token["name"]
        if name and not token["call"] and name.lower() not in _KEYWORDS:
            names.add(name)
    return names


SELECTOR = re.compile(r"\b(?P<metric>[A-Za-z_:][\w:]*)\s*(?P<matchers>\{[^{}]*\})?")


def selectors_of(expr: str, metric: str) -> list[str]:
    """The label matcher blocks (or "") of every selector of `metric` in `expr`."""
    return [
        match["matchers"] or ""
        for match in SELECTOR.finditer(expr)
        if match["metric"] == metric
    ]


# -- the tests -------------------------------------------------------------------------------


def test_there_are_a_drift_and_an_operations_dashboard() -> None:
    """dashboards/ holds drift.json and operations.json."""
    assert {path.name for path in DASHBOARDS} >= {"drift.json", "operations.json"}


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.name)
def test_dashboard_is_importable(path: Path) -> None:
    """A dashboard has a fixed uid, no fixed id, a title, the driftwarden tag, a time range and refresh."""
    dashboard = load_dashboard(path)
    assert dashboard.get("id") is None, "a fixed id breaks import into another Grafana"
    assert re.fullmatch(r"[a-z0-9-]{1,40}", dashboard["uid"])
    assert dashboard["uid"] == f"driftwarden-{path.stem}"
    assert dashboard["title"].strip()
    assert dashboard["schemaVersion"] >= 36
    assert "driftwarden" in dashboard["tags"]
    assert dashboard["time"]["from"] and dashboard["time"]["to"]
    assert dashboard["refresh"]
    uids = {load_dashboard(other)["uid"] for other in DASHBOARDS if other != path}
    assert dashboard["uid"] not in uids


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.name)
def test_dashboard_has_datasource_and_place_variables(path: Path) -> None:
    """A dashboard offers a Prometheus data source variable and multi-value cluster/account/region."""
    variables = {variable["name"]: variable for variable in load_dashboard(path)["templating"]["list"]}
    datasource = variables["datasource"]
    assert (datasource["type"], datasource["query"]) == ("datasource", "prometheus")
    for name in PLACE_VARIABLES:
        variable = variables[name]
        assert variable["type"] == "query"
        assert variable["datasource"] == DATASOURCE
        assert variable["multi"] is True
        assert variable["includeAll"] is True
        assert variable["allValue"] == ".*"
        query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        assert query.startswith("label_values(driftwarden_resource_info")
        assert query.endswith(f", {name})")


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.name)
def test_every_panel_has_title_description_and_the_datasource_variable(path: Path) -> None:
    """Each panel, query and annotation query uses ${datasource}; each panel has a title and description."""
    dashboard = load_dashboard(path)
    for annotation in dashboard["annotations"]["list"]:
        if not annotation.get("builtIn"):
            assert annotation["datasource"] == DATASOURCE, f"annotation {annotation['name']!r}"
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels(dashboard):
        where = f"{path.name}: panel {panel.get('title')!r}"
        assert panel.get("title", "").strip(), where
        assert len(panel.get("description", "").strip()) >= 20, f"{where}: no description"
        assert panel.get("datasource") == DATASOURCE, where
        assert panel["targets"], f"{where}: no query"
        for target in panel["targets"]:
            assert target.get("datasource") == DATASOURCE, where
            assert target["expr"].strip(), where
        position = panel["gridPos"]
        assert position["x"] + position["w"] <= 24, where


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.name)
def test_place_labelled_series_are_filtered_by_the_place_variables(path: Path) -> None:
    """Every selector of a series with cluster/account/region labels filters on all three variables."""
    for name, expr in panel_expressions(load_dashboard(path)).items():
        for metric in PLACED_METRICS:
            for matchers in selectors_of(expr, metric):
                for label in PLACE_VARIABLES:
                    assert f'{label}=~"${label}"' in matchers, (
                        f"{path.name}: {name}: {metric}{matchers} does not filter {label}"
                    )


def test_every_expression_uses_only_contract_metrics() -> None:
    """Dashboards, their variables and the alerts query only the metrics of the contract (and `up`)."""
    expressions = all_expressions()
    assert len(expressions) > 30, "the expressions were not found"
    unknown = {
        name: sorted(metric_names(expr) - CONTRACT_METRICS)
        for name, expr in expressions.items()
        if metric_names(expr) - CONTRACT_METRICS
    }
    assert not unknown, unknown


def test_metric_name_extraction_sees_through_promql_syntax() -> None:
    """The metric-name extractor finds selectors behind functions, matchers, grouping and offsets."""
    expr = (
        'sum by (cluster, kind) (rate(a_total{x="}b", y=~"c|d"}[5m] offset 1h)) '
        "/ on (kind) group_left (name) b_info > bool 0.5e3 and c "
        "or histogram_quantile(0.9, sum by (le) (rate(d_bucket[$__rate_interval]))) "
        "unless time() - max_over_time((timestamp(e == 0))[24h:1m])"
    )
    assert metric_names(expr) == {"a_total", "b_info", "c", "d_bucket", "e"}
    assert metric_names("driftwardn_typo_total") - CONTRACT_METRICS == {"driftwardn_typo_total"}


def test_every_expression_parses_as_promql(promtool: str, tmp_path: Path) -> None:
    """promtool parses every dashboard query, variable selector and alert expression."""
    report = check_expressions(promtool, all_expressions(), tmp_path)
    assert report == "", report


def test_the_promql_check_reports_a_broken_expression(promtool: str, tmp_path: Path) -> None:
    """The PromQL check names an expression promtool cannot parse (it is not vacuous)."""
    report = check_expressions(
        promtool, {"fine": "up", "broken one": "sum(rate(up[5m])"}, tmp_path
    )
    assert "broken one" in report


# -- what the derived "Drifted for" panels measure --------------------------------------------


def panel_expression(dashboard_name: str, title: str) -> str:
    dashboard = load_dashboard(DASHBOARD_DIR / dashboard_name)
    [panel] = [panel for panel in panels(dashboard) if panel["title"] == title]
    [target] = panel["targets"]
    return substitute(target["expr"])


def series(metric: str, values: str, **labels: str) -> dict[str, str]:
    """One promtool input series: `metric` with `labels`, sampled as `values`."""
    return {"series": metric + render(**labels), "values": values}


def info(values: str, kind: str, name: str, cluster: str, status: str, drift: str) -> dict[str, str]:
    return series(
        "driftwarden_resource_info", values, kind=kind, name=name, cluster=cluster,
        account="111111111111", region="us-east-1", status=status, drift=drift,
        job="driftwarden", instance="driftwarden:9108",
    )


def test_drifted_for_by_object_counts_from_the_last_drift_free_report(
    promtool: str, tmp_path: Path
) -> None:
    """"Drifted for, by object" is the time since the object was last reported without drift."""
    expr = panel_expression("drift.json", "Drifted for, by object")
    labels = {"account": "111111111111", "region": "us-east-1"}
    tests = {
        "evaluation_interval": "1m",
        "rule_files": [],
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    # In sync until 10m, drifted from 11m; its status changes at 26m, which
                    # must not restart the count (the status label makes a new series).
                    info("1x10 stale", "Deployment", "etl", "prod", "HEALTHY", "none"),
                    info("_x11 1x14 stale", "Deployment", "etl", "prod", "HEALTHY", "drifted"),
                    info("_x26 1x14", "Deployment", "etl", "prod", "UNHEALTHY", "drifted"),
                    # Warn-only, drifted since it first appeared at 5m.
                    info("_x5 1x35", "Cluster", "prod", "prod", "CREATED", "warn"),
                    # Drifted from 0 to 20m, in sync since: not listed.
                    info("1x20 stale", "Deployment", "ml", "prod", "HEALTHY", "drifted"),
                    info("_x21 1x19", "Deployment", "ml", "prod", "HEALTHY", "none"),
                    # Suspended: its drift is unknown, not listed.
                    info("1x40", "Cluster", "dev", "dev", "CREATED", "suspended"),
                ],
                "promql_expr_test": [
                    {
                        "expr": expr,
                        "eval_time": "40m",
                        "exp_samples": [
                            {"labels": render(kind="Deployment", name="etl", cluster="prod", **labels),
                             "value": 30 * 60},
                            {"labels": render(kind="Cluster", name="prod", cluster="prod", **labels),
                             "value": 35 * 60},
                        ],
                    }
                ],
            }
        ],
    }
    report = run_rule_tests(promtool, tests, tmp_path)
    assert report == "", report


def test_drifted_for_by_cluster_and_kind_counts_from_the_last_zero(
    promtool: str, tmp_path: Path
) -> None:
    """"Drifted for, by cluster and kind" is the time since the drifted count was last 0."""
    expr = panel_expression("drift.json", "Drifted for, by cluster and kind")
    place = {"account": "111111111111", "region": "us-east-1", "job": "driftwarden"}
    tests = {
        "evaluation_interval": "1m",
        "rule_files": [],
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    # 0 until 10m, then 2, 3, 1 resources: one episode since 10m.
                    series("driftwarden_drifted_resources", "0x10 2x10 3x10 1x10",
                           kind="Deployment", cluster="prod", **place),
                    # Drifted from its first sample at 5m.
                    series("driftwarden_drifted_resources", "_x5 1x35",
                           kind="Cluster", cluster="prod", **place),
                    # Drifted once, healed at 30m: not listed.
                    series("driftwarden_drifted_resources", "0x10 4x20 0x10",
                           kind="Cluster", cluster="dev", **place),
                ],
                "promql_expr_test": [
                    {
                        "expr": expr,
                        "eval_time": "40m",
                        "exp_samples": [
                            {"labels": render(cluster="prod", kind="Deployment"), "value": 30 * 60},
                            {"labels": render(cluster="prod", kind="Cluster"), "value": 35 * 60},
                        ],
                    }
                ],
            }
        ],
    }
    report = run_rule_tests(promtool, tests, tmp_path)
    assert report == "", report


def render(**labels: str) -> str:
    """A label set in promtool's exp_samples syntax."""
    return "{" + ", ".join(f'{key}="{value}"' for key, value in sorted(labels.items())) + "}"
