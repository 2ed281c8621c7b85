"""Every query of dashboards/*.json answers with data, from a real Prometheus scraping a real daemon.

`driftwarden run` (a subprocess, reading a manifest directory) talks to moto through the fault
proxy; Debian's Prometheus scrapes it every second. The scenario gives every panel something to
show, the way a platform would in a bad week:

* Cluster ``test-use1`` (enforce) drifts all the time: the sandbox's drift injector, running in
  this process against moto, changes one of its resources by hand every second; the daemon
  checks for drift every second and repairs it.
* Deployment ``reports`` is warn-only, and its SSM parameter is edited by hand once: drift that
  is reported and kept. Deployment ``frozen`` is suspended.
* Every other DescribeVpcs call in us-east-1 is throttled (retried by botocore, counted).
* After the first pass, Cluster ``broken-usw2`` in us-west-2 is added to the manifests, and its
  CreateVpc is denied once: an apply action fails, an API call is denied, and the Cluster is
  CREATE_FAILED. Once only, so the "in the time range" tables must show a single failure.

Then every target of every panel (rows walked recursively), every annotation and every template
variable's ``label_values`` query is run through Prometheus's HTTP API with Grafana's variables
substituted — once with "All" selected and once with the real values picked — until each has
answered with at least one finite value, within a deadline. Instant targets use
``/api/v1/query``, range targets ``/api/v1/query_range`` (as Grafana does), variables
``/api/v1/label/<name>/values``. No panel is exempt. The "in the time range" tables are also
checked with promtool's unit tests, for what exactly they count.

Without Prometheus the tests skip on a developer machine and fail in CI (``CI=true``).
"""

from __future__ import annotations

import itertools
import json
import math
import re
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from driftwarden.sandbox.drift_injector import DriftInjector
from faultproxy import THROTTLE, RecordedRequest, error
from test_daemon import (
    ACCOUNT,
    CLUSTER,
    CLUSTER_YAML,
    REGION,
    DaemonProcess,
    deployment_yaml,
    moto_environment,
    write_platform,
)
from test_dashboards_static import panel_expression, promtool, render, run_rule_tests, series  # noqa: F401  (a fixture)
from test_prometheus_scrape import Prometheus, prometheus_binary  # noqa: F401  (a fixture)

ROOT = Path(__file__).resolve().parent.parent
DASHBOARDS = sorted((ROOT / "dashboards").glob("*.json"))
BROKEN, BROKEN_REGION = "broken-usw2", "us-west-2"
WARN, SUSPENDED = "reports", "frozen"
WARN_PARAMETER = f"/driftwarden/{CLUSTER}/{WARN}/configuration"
DEADLINE = 90.0  # seconds for every query to have answered; it normally takes a few

# Grafana's variables for "Last 5 minutes" on a panel about 60 points wide, with the data
# source's scrape interval set to Prometheus's 1 s: $__interval = 5m / 60, and
# $__rate_interval = max($__interval + scrape interval, 4 × scrape interval).
SCRAPE_SECONDS = 1
RANGE_SECONDS = 300
INTERVAL_SECONDS = 5
TIME_VARIABLES = {
    "__range": f"{RANGE_SECONDS}s",
    "__range_s": str(RANGE_SECONDS),
    "__range_ms": str(RANGE_SECONDS * 1000),
    "__interval": f"{INTERVAL_SECONDS}s",
    "__interval_ms": str(INTERVAL_SECONDS * 1000),
    "__rate_interval": f"{max(INTERVAL_SECONDS + SCRAPE_SECONDS, 4 * SCRAPE_SECONDS)}s",
}
# The place variables as Grafana substitutes them into `=~"..."`: "All" is the dashboards'
# allValue; picking values gives a regex alternation.
SELECTIONS = {
    "all": {"cluster": ".*", "account": ".*", "region": ".*"},
    "picked": {"cluster": f"({CLUSTER}|{BROKEN})", "account": ACCOUNT, "region": f"({REGION}|{BROKEN_REGION})"},
}
VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")
LABEL_VALUES = re.compile(r"^label_values\((?:(?P<selector>.+),\s*)?(?P<label>\w+)\)$")
# A subquery's resolution: its steps fall on whole multiples of it (see `evaluation_time`).
SUBQUERY_STEP = re.compile(r"\[[^\]:]+:(\d+)([smh])\]")

BROKEN_YAML = (
    CLUSTER_YAML.replace(f"name: {CLUSTER}", f"name: {BROKEN}")
    .replace("externalId: dw-test-use1-0001", "externalId: dw-broken-usw2-0001\n  region: us-west-2\n"
             "  vpcSubnetRange: 172.21.0.0/20")
)


def warn_deployment() -> str:
    return deployment_yaml(annotations="driftwarden/drift: warn").replace("name: etl", f"name: {WARN}")


def suspended_deployment() -> str:
    return deployment_yaml(annotations='driftwarden/suspend: "true"').replace("name: etl", f"name: {SUSPENDED}")


# --- what the dashboards ask -----------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One query a dashboard makes, ready to send: where it comes from, and how Grafana runs it."""

    where: str
    kind: str  # instant | range | annotation | label_values
    query: str  # PromQL, or the series selector of label_values ("" for none)
    label: str = ""  # label_values only
    step: float = INTERVAL_SECONDS


def walk_panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, however deep in rows (collapsed rows keep theirs under "panels")."""
    for panel in items:
        yield panel
        yield from walk_panels(panel.get("panels") or [])


def substitute(expr: str, selection: dict[str, str]) -> str:
    """`expr` with Grafana's variables replaced; an unknown variable fails the test."""
    values = {**TIME_VARIABLES, **selection}

    def replace(match: re.Match[str]) -> str:
        name = match[1] or match[2]
        assert name in values, f"unknown dashboard variable ${name} in {expr!r}"
        return values[name]

    return VARIABLE.sub(replace, expr)


def dashboard_checks() -> list[Check]:
    checks = []
    for path, (selection_name, selection) in itertools.product(DASHBOARDS, SELECTIONS.items()):
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        for panel in walk_panels(dashboard["panels"]):
            for target in panel.get("targets") or []:
                if target.get("hide"):
                    continue
                kind = "instant" if target.get("instant") and not target.get("range") else "range"
                where = f"{path.name} [{selection_name}] panel {panel['title']!r} {target.get('refId', '')}"
                checks.append(Check(where, kind, substitute(target["expr"], selection)))
        for annotation in dashboard["annotations"]["list"]:
            if "expr" in annotation:
                where = f"{path.name} [{selection_name}] annotation {annotation['name']!r}"
                checks.append(Check(where, "annotation", substitute(annotation["expr"], selection)))
        for variable in dashboard["templating"]["list"]:
            if variable["type"] != "query":
                continue
            query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
            match = LABEL_VALUES.match(query.strip())
            assert match, f"{path.name}: variable {variable['name']}: only label_values(...) queries are checked"
            where = f"{path.name} [{selection_name}] variable {variable['name']!r}"
            checks.append(Check(where, "label_values", substitute(match["selector"] or "", selection), match["label"]))
    return checks


# Beyond "some data": what a few panels must show in this scenario.
EXPECTED: dict[str, Callable[[list[dict[str, Any]]], bool]] = {
    "panel 'Objects in a failed state'": lambda rows: any(
        r["metric"].get("name") == BROKEN and r["metric"].get("status") == "CREATE_FAILED" for r in rows),
    "panel 'Failed and pending apply actions in the time range'": lambda rows: any(
        (r["metric"].get("action"), r["metric"].get("resource"), r["metric"].get("result")) == ("create", "ec2.vpc", "failed")
        for r in rows),
    "panel 'AWS API errors by operation in the time range'": lambda rows: any(
        (r["metric"].get("operation"), r["metric"].get("result")) == ("CreateVpc", "denied") for r in rows),
    "panel 'AWS throttling by service'": lambda rows: any(r["metric"].get("service") == "ec2" for r in rows),
    "panel 'What drifted: enforced objects'": lambda rows: any(r["metric"].get("name") == CLUSTER for r in rows),
    "panel 'Warn-only objects with drift'": lambda rows: any(r["metric"].get("name") == WARN for r in rows),
    "panel 'Suspended objects'": lambda rows: any(r["metric"].get("name") == SUSPENDED for r in rows),
    "variable 'cluster'": lambda values: {CLUSTER, BROKEN} <= set(values),
    "variable 'region'": lambda values: {REGION, BROKEN_REGION} <= set(values),
}


# --- asking Prometheus -----------------------------------------------------------------------------


def api(prometheus: Prometheus, path: str, params: dict[str, Any]) -> Any:
    """The `data` of a Prometheus API answer, or None while it cannot answer yet."""
    if prometheus.process.poll() is not None:
        raise AssertionError(f"prometheus exited: {prometheus.log_path.read_text()[-2000:]}")
    status, body = prometheus.get(f"{path}?{urllib.parse.urlencode(params, doseq=True)}")
    if status == 0 or status == 503:
        return None
    answer = json.loads(body)
    assert status == 200 and answer["status"] == "success", (path, params, answer)
    return answer["data"]


def evaluation_time(query: str, now: float) -> float:
    """When to evaluate an instant query: now, or for a subquery the next whole multiple of its step.

    A subquery's steps fall on whole multiples of its resolution (``[24h:1m]``: whole minutes),
    so a Prometheus younger than that may not have sampled any step yet. Prometheus evaluates a
    query at any time; with its 5 minutes of lookback, the next whole minute still sees the
    latest samples, which is what the panel shows once that minute has come.
    """
    steps = [int(n) * {"s": 1, "m": 60, "h": 3600}[unit] for n, unit in SUBQUERY_STEP.findall(query)]
    if not steps:
        return now
    step = max(steps)
    return math.ceil(now / step) * step


def answer(prometheus: Prometheus, check: Check, started: float) -> list[Any] | None:
    """What Prometheus answers to `check` now: result rows (or label values); None when not yet."""
    now = time.time()
    if check.kind == "label_values":
        params: dict[str, Any] = {"start": started, "end": now}
        if check.query:
            params["match[]"] = check.query
        return api(prometheus, f"/api/v1/label/{check.label}/values", params)
    if check.kind == "instant":
        data = api(prometheus, "/api/v1/query", {"query": check.query, "time": evaluation_time(check.query, now)})
        return None if data is None else data["result"]
    # Range targets as Grafana runs them, the range aligned to the step. Annotations use a
    # finer step than Grafana's 1m, so that the minute after a new revision is always sampled.
    step = SCRAPE_SECONDS if check.kind == "annotation" else check.step
    end = math.floor(now / step) * step
    start = max(math.floor((now - RANGE_SECONDS) / step) * step, math.floor(started / step) * step)
    data = api(prometheus, "/api/v1/query_range", {"query": check.query, "start": start, "end": end, "step": step})
    return None if data is None else data["result"]


def has_data(check: Check, rows: list[Any] | None) -> bool:
    """Some finite value (Grafana draws nothing for NaN), and what EXPECTED asks, if anything."""
    if not rows:
        return False
    if check.kind == "label_values":
        finite = True
    else:
        samples = [row["value"] for row in rows if "value" in row] + [v for row in rows for v in row.get("values", [])]
        finite = any(math.isfinite(float(value)) for _timestamp, value in samples)
    expectations = [test for suffix, test in EXPECTED.items() if suffix in check.where]
    return finite and all(test(rows) for test in expectations)


# --- the scenario ----------------------------------------------------------------------------------


def every_other(match: Callable[[RecordedRequest], bool]) -> Callable[[RecordedRequest], bool]:
    """A matcher for every second request that `match` accepts (the first, third, ...)."""
    counter = itertools.count()
    lock = threading.Lock()

    def matcher(request: RecordedRequest) -> bool:
        if not match(request):
            return False
        with lock:
            return next(counter) % 2 == 0

    return matcher


@pytest.fixture
def scenario(tmp_path: Path, aws_managed_policies, aws, moto_server: str, fault_proxy) -> Iterator[tuple[DaemonProcess, Path]]:
    """The daemon on the manifests, behind the fault proxy; yields it and the manifest directory."""
    platform = write_platform(tmp_path)
    (platform / "reports.yaml").write_text(warn_deployment())
    (platform / "frozen.yaml").write_text(suspended_deployment())
    fault_proxy.inject(
        lambda r: (r.service, r.operation, r.region) == ("ec2", "CreateVpc", BROKEN_REGION),
        # Once: the next attempt (after the place's 30 s backoff) would succeed, so the
        # panels about failures must show a failure that happened exactly once.
        [error("UnauthorizedOperation", status=403, message="You are not authorized to perform this operation.")],
    )
    env = moto_environment(fault_proxy.endpoint_url)
    args = ["--source", str(tmp_path / "repo"), "--path", "platform", "--interval", "1s", "--drift-interval", "1s",
            "--metrics-host", "127.0.0.1", "--metrics-port", "0", "--log-format", "json"]
    daemon = DaemonProcess(args, env, tmp_path)
    try:
        yield daemon, platform
    finally:
        try:
            daemon.terminate(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()


def test_every_dashboard_query_answers_with_data(prometheus_binary, scenario, aws, moto_server, fault_proxy, tmp_path):  # noqa: F811
    """Every panel target, annotation and variable query of both dashboards returns data from Prometheus scraping the daemon."""
    daemon, platform = scenario
    checks = dashboard_checks()
    assert len({c.where.split("] ", 1)[1] for c in checks if c.kind in ("instant", "range")}) >= 30, "panels not found"
    prometheus = Prometheus(prometheus_binary, tmp_path, f"127.0.0.1:{daemon.port}")
    started = time.time()
    drift = DriftInjector(moto_server, every=1.0, places=lambda: [(ACCOUNT, REGION)],
                          session_factory=aws.control_session,
                          kinds=["subnet-role-tag", "nodegroup-scaling", "default-route"])
    try:
        daemon.wait_ready()
        # Drift from now on: by hand on the warn-only Deployment (kept), by the injector on the Cluster (repaired).
        aws.account_client(ACCOUNT, "ssm").put_parameter(
            Name=WARN_PARAMETER, Value='{"edited": "by hand"}', Type="String", Overwrite=True)
        drift.start()
        fault_proxy.inject(every_other(lambda r: (r.service, r.operation, r.region) == ("ec2", "DescribeVpcs", REGION)),
                           [THROTTLE], repeat_last=True)
        # A commit adds a cluster the daemon is not allowed to build.
        (platform / "broken.yaml").write_text(BROKEN_YAML)

        pending = {check.where: check for check in checks}
        last: dict[str, Any] = {}
        deadline = time.monotonic() + DEADLINE
        while pending and time.monotonic() < deadline:
            for where, check in list(pending.items()):
                rows = answer(prometheus, check, started)
                last[where] = rows
                if has_data(check, rows):
                    del pending[where]
            if daemon.process.poll() is not None:
                break
            time.sleep(0.5)
        report = "\n".join(f"{where}\n    {pending[where].query}\n    last answer: {json.dumps(last.get(where))[:300]}"
                           for where in sorted(pending))
        assert not pending, f"{len(pending)} of {len(checks)} dashboard queries never answered with data:\n{report}\n{daemon.log_tail()}"
    finally:
        drift.stop()
        prometheus.stop()


# --- what the "in the time range" tables count -------------------------------------------------------

IN_RANGE_TABLES = (
    ("drift.json", "Drift detections in the time range", "driftwarden_drift_detected_total",
     ("kind", "resource"), {"kind": "Cluster"}),
    ("operations.json", "Failed and pending apply actions in the time range", "driftwarden_apply_actions_total",
     ("action", "resource", "result"), {"action": "create", "result": "failed"}),
    ("operations.json", "AWS API errors by operation in the time range", "driftwarden_aws_api_calls_total",
     ("service", "operation", "result"), {"service": "ec2", "result": "denied"}),
)


@pytest.mark.parametrize("dashboard, title, metric, labels, fixed", IN_RANGE_TABLES, ids=[t[1] for t in IN_RANGE_TABLES])
def test_in_range_tables_count_a_counter_born_in_the_range_in_full(promtool, tmp_path, dashboard, title, metric, labels, fixed):  # noqa: F811
    """A counter first seen within the range counts with its whole value; an older one with its increase; none of zero."""
    expr = panel_expression(dashboard, title)  # $__range = 1h
    free = next(label for label in labels if label not in fixed)

    def counter(name: str, values: str) -> dict[str, str]:
        return series(metric, values, **fixed, **{free: name}, job="driftwarden", instance="driftwarden:9108")

    tests = {
        "evaluation_interval": "1m",
        "rule_files": [],
        "tests": [{
            "interval": "1m",
            "input_series": [
                counter("born-once", "_x80 1x10"),  # first increment at 80m: the daemon started then
                counter("born-thrice", "_x75 1x5 3x10"),  # first seen at 75m, two more since
                counter("older", "2x50 5x40"),  # 2 before the range, 5 since 51m: increase 3
                counter("quiet", "4x90"),  # nothing in the range: not listed
                counter("before", "1x20"),  # gone before the range: not listed
            ],
            "promql_expr_test": [{
                "expr": expr,
                "eval_time": "90m",
                "exp_samples": [
                    {"labels": render(**fixed, **{free: "born-thrice"}), "value": 3},
                    {"labels": render(**fixed, **{free: "older"}), "value": 3},
                    {"labels": render(**fixed, **{free: "born-once"}), "value": 1},
                ],
            }],
        }],
    }
    report = run_rule_tests(promtool, tests, tmp_path)
    assert report == "", report
