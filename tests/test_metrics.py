"""Metrics: every contract name exists on an injected registry, and promtool finds nothing wrong."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections import Counter

import pytest
from prometheus_client.parser import text_string_to_metric_families

from driftwarden.runtime.metrics import Metrics, ObjectStatus

CONTRACT = {
    "driftwarden_reconcile_duration_seconds": "histogram",
    "driftwarden_reconcile": "counter",
    "driftwarden_last_successful_reconcile_timestamp_seconds": "gauge",
    "driftwarden_resource_info": "gauge",
    "driftwarden_drifted_resources": "gauge",
    "driftwarden_drift_detected": "counter",
    "driftwarden_apply_actions": "counter",
    "driftwarden_aws_api_calls": "counter",
    "driftwarden_aws_throttled": "counter",
    "driftwarden_git_revision_info": "gauge",
    "driftwarden_git_last_sync_timestamp_seconds": "gauge",
    "driftwarden_git_fetch": "counter",
    "driftwarden_manifests": "gauge",
    "driftwarden_build_info": "gauge",
}


def populated() -> Metrics:
    metrics = Metrics(version="1.2.3")
    metrics.reconcile_duration.labels(trigger="interval").observe(2.5)
    metrics.reconcile_total.labels(result="success").inc()
    metrics.api_call("ec2", "DescribeVpcs", "ok")
    metrics.throttled("ec2")
    metrics.drift_detected.labels(kind="Cluster", resource="ec2.subnet").inc()
    metrics.apply_actions.labels(action="update", resource="ec2.subnet", result="applied").inc()
    metrics.set_revision("0123abcd")
    metrics.git_last_sync.set(1_700_000_000)
    metrics.git_fetch_total.labels(result="success").inc()
    metrics.set_manifest_counts([("Cluster", True, 3), ("Deployment", True, 2), ("Deployment", False, 1)])
    metrics.set_objects(
        [ObjectStatus("Cluster", "prod", "prod", "111111111111", "eu-west-1", "CREATED", "drifted")],
        Counter({("Cluster", "prod", "111111111111", "eu-west-1"): 2}),
    )
    return metrics


def families(metrics: Metrics) -> dict[str, str]:
    return {f.name: f.type for f in text_string_to_metric_families(metrics.exposition().decode())}


def test_every_contract_metric_is_exposed_with_its_type():
    """The exposition carries each metric name of the contract with the right type."""
    found = families(populated())
    for name, kind in CONTRACT.items():
        assert found.get(name) == kind, name


def test_two_instances_do_not_share_state():
    """Each Metrics has its own registry, so tests and processes never mix series."""
    a, b = Metrics(), Metrics()
    a.throttled("ec2")
    assert b"driftwarden_aws_throttled_total{" not in b.exposition()
    assert b'driftwarden_aws_throttled_total{service="ec2"} 1.0' in a.exposition()


def test_objects_gone_from_git_leave_no_series():
    """Replacing the object set removes series of objects no longer declared."""
    metrics = populated()
    metrics.set_objects([], Counter())
    text = metrics.exposition().decode()
    assert 'name="prod"' not in text and "driftwarden_drifted_resources{" not in text


def test_drifted_resources_are_counted_per_place():
    """drifted_resources reports the number of drifted AWS resources for the owner kind and place."""
    text = populated().exposition().decode()
    assert 'driftwarden_drifted_resources{account="111111111111",cluster="prod",kind="Cluster",region="eu-west-1"} 2.0' in text


def test_promtool_finds_no_problem_in_the_exposition(tmp_path):
    """`promtool check metrics` reports nothing on driftwarden's /metrics text."""
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is required in CI (.ci/run installs Debian's prometheus)")
        pytest.skip("promtool not installed")
    done = subprocess.run([promtool, "check", "metrics"], input=populated().exposition(), capture_output=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == b"" and done.stderr.strip() == b"", done.stderr


def test_dashboards_and_alerts_use_only_series_the_daemon_exposes():
    """Every driftwarden_* series named by a dashboard or alert rule is in the daemon's exposition."""
    import re
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    text = "\n".join(p.read_text() for p in [*repo.glob("dashboards/*.json"), *repo.glob("deploy/prometheus/*.yaml")])
    used = set(re.findall(r"\bdriftwarden_[a-z_]+", text))
    exposed = {
        sample.name
        for family in text_string_to_metric_families(populated().exposition().decode())
        for sample in family.samples
    }
    assert used, "no expression found: the check would be vacuous"
    assert sorted(used - exposed) == []
