"""The sandbox's drift injector against moto's server, and `run --sandbox --sandbox-drift-every`.

A small Cluster and its Deployment are applied with driftwarden's engine; then the injector,
acting out of band in the target account, changes managed resources one tick at a time, and
the next plan must report each change as an update of exactly that resource. The command line
tests check the option's contract: refused without ``--sandbox``, and a sandboxed daemon that
injects drift finds it and says so in its log and metrics.
"""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from driftwarden.engine.apply import ApplySettings
from driftwarden.engine.reconcile import (
    ReconcileSettings,
    apply_once,
    plan_once,
)
from driftwarden.errors import DriftwardenError
from driftwarden.manifests.validation import validate_paths
from driftwarden.providers.registry import default_providers
from driftwarden.providers.secret_sources import sandbox_secret_resolver
from driftwarden.runtime.logs import EventLog
from driftwarden.sandbox.drift_injector import KIND_NAMES, DriftInjector, Injection
from driftwarden.sandbox.server import simulated_places
from moto_state import fill_eks_tagging_gaps
from test_daemon import (
    ACCOUNT,
    CLUSTER_YAML,
    DRIFTWARDEN,
    REGION,
    DaemonProcess,
    deployment_yaml,
    wait_for,
    write_platform,
)

FAST = ReconcileSettings(apply=ApplySettings(wait=True, timeout_seconds=30, poll_seconds=0.05, max_workers=4))
# The field each kind of change shows up on in the plan (a prefix of the diff path).
DRIFTED_FIELD = {
    "subnet-role-tag": "RoleTag",
    "nodegroup-scaling": "ScalingConfig.maxSize",
    "ssm-parameter": "Value",
    "role-trust": "AssumeRolePolicyDocument",
    "default-route": "Routes",
}


@pytest.fixture
def platform(tmp_path: Path, aws_managed_policies, aws, monkeypatch) -> Path:
    """One Cluster and one Deployment, applied to moto in account ACCOUNT."""
    fill_eks_tagging_gaps(monkeypatch)
    root = tmp_path / "platform"
    root.mkdir()
    (root / "cluster.yaml").write_text(CLUSTER_YAML)
    (root / "etl.yaml").write_text(deployment_yaml())
    result = apply_once(validated(root), aws.sessions(), revision="test", settings=FAST,
                        resolve_secret=sandbox_secret_resolver(), providers=default_providers(), progress=lambda _message: None)
    failed = [(o.change.key, o.message) for o in result.outcomes if o.result != "applied"]
    assert result.plan is not None and not result.plan.errors and not failed, (result.plan, failed)
    return root


def validated(root: Path) -> Any:
    result = validate_paths([root])
    assert result.valid, [str(p) for p in result.errors]
    return result


def planned_updates(root: Path, aws) -> dict[str, list[str]]:
    """Resource key -> changed field paths, of every update or replace the next plan holds."""
    result = plan_once(validated(root), aws.sessions(), revision="test", settings=FAST,
                       resolve_secret=sandbox_secret_resolver(), providers=default_providers())
    assert result.plan is not None and not result.plan.errors, result.plan
    return {c.key: [d.path for d in c.diff] for c in result.plan.changes if c.action in ("update", "replace")}


def injector(aws, **kwargs: Any) -> DriftInjector:
    options: dict[str, Any] = {"every": 60.0, "places": lambda: [(ACCOUNT, REGION)], "session_factory": aws.control_session}
    options.update(kwargs)
    return DriftInjector(aws.endpoint_url, **options)


class Recorder(EventLog):
    """The injector's events, kept in a list."""

    def __init__(self) -> None:
        super().__init__("test")
        self.events: list[tuple[str, dict[str, Any]]] = []

    def info(self, event: str, /, **fields: Any) -> None:
        self.events.append((event, fields))

    def injected(self) -> list[dict[str, Any]]:
        return [fields for event, fields in self.events if event == "sandbox.drift_injected"]


@pytest.fixture
def hand_made(aws) -> None:
    """Without a (slow) apply: four subnets with a role tag, three parameters and two roles, all tagged as ours."""
    def ours(component: str) -> list[dict[str, str]]:
        return [{"Key": "driftwarden:managed-by", "Value": "driftwarden"},
                {"Key": "driftwarden:owner", "Value": "Cluster/hand"},
                {"Key": "driftwarden:component", "Value": component}]

    ec2 = aws.account_client(ACCOUNT, "ec2")
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    for index, name in enumerate("abcd"):
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.9.{index}.0/24", TagSpecifications=[{
            "ResourceType": "subnet", "Tags": [*ours(f"subnet/{name}"), {"Key": "kubernetes.io/role/elb", "Value": "1"}]}])
    ssm = aws.account_client(ACCOUNT, "ssm")
    for name in ("one", "two", "three"):
        ssm.put_parameter(Name=f"/hand/{name}", Value='{"executor": "CELERY"}', Type="String", Tags=ours(f"ssm/{name}"))
    iam = aws.account_client(ACCOUNT, "iam")
    trust = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"eks.amazonaws.com"},"Action":"sts:AssumeRole"}]}'
    for name in ("hand-one", "hand-two"):
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust, Tags=ours(f"iam-role/{name}"))


def test_each_kind_of_injected_drift_is_reported_by_the_next_plan(platform, aws):
    """Five ticks make five kinds of change in the target account, each logged, and plan reports each as an update of that resource."""
    assert planned_updates(platform, aws) == {}
    log = Recorder()
    drift = injector(aws, log=log)
    try:
        injections = [drift.inject() for _ in KIND_NAMES]
    finally:
        drift.stop()
    done = [i for i in injections if isinstance(i, Injection)]
    assert [i.kind for i in done] == list(KIND_NAMES), "kinds take turns in order"
    assert {(i.account, i.region) for i in done} == {(ACCOUNT, REGION)}
    assert log.injected() == [
        {"kind": i.kind, "resource": i.resource, "id": i.id, "account": ACCOUNT, "region": REGION, "change": i.change}
        for i in done
    ]
    updates = planned_updates(platform, aws)
    assert set(updates) == {i.resource for i in done}
    for injection in done:
        assert injection.resource.startswith(("Cluster/test-use1/", "Deployment/etl/")), injection
        fields = updates[injection.resource]
        assert any(path.startswith(DRIFTED_FIELD[injection.kind]) for path in fields), (injection, fields)
    # Seen from inside the account: the role tag is gone, the ownership tags are all still there.
    subnet_change = done[0]
    (subnet,) = aws.account_client(ACCOUNT, "ec2").describe_subnets(SubnetIds=[subnet_change.id])["Subnets"]
    keys = {t["Key"] for t in subnet["Tags"]}
    assert subnet_change.change.startswith("removed tag kubernetes.io/role/")
    assert subnet_change.change.removeprefix("removed tag ") not in keys
    assert keys >= {"driftwarden:managed-by", "driftwarden:owner", "driftwarden:component", "driftwarden:deletion-policy"}


def test_the_same_seed_over_the_same_resources_picks_the_same_ones(hand_made, aws):
    """Two injectors with one seed change the same resources in the same order; other seeds differ somewhere."""
    def picks(seed: int) -> list[str]:
        drift = injector(aws, kinds=["ssm-parameter", "role-trust"], seed=seed)
        try:
            return [f"{i.kind} {i.resource}" for i in (drift.inject() for _ in range(6)) if i is not None]
        finally:
            drift.stop()

    first = picks(7)
    assert len(first) == 6
    assert picks(7) == first
    assert any(picks(seed) != first for seed in (1, 2, 3))


def test_a_kind_with_nothing_left_to_change_passes_its_turn(hand_made, aws):
    """Once every subnet lost its role tag the subnet kind is skipped; with no other kind, a tick changes nothing."""
    only_subnets = injector(aws, kinds=["subnet-role-tag"])
    mixed = injector(aws, kinds=["subnet-role-tag", "ssm-parameter"])
    try:
        changed = {i.id for i in (only_subnets.inject() for _ in range(4)) if i is not None}
        assert len(changed) == 4, "four subnets, each changed once"
        assert only_subnets.inject() is None
        following = mixed.inject()
        assert following is not None and following.kind == "ssm-parameter"
    finally:
        only_subnets.stop()
        mixed.stop()


def test_nothing_managed_means_nothing_changed(aws):
    """Before anything of ours exists, a tick changes nothing and says so with None."""
    drift = injector(aws)
    try:
        assert drift.inject() is None
    finally:
        drift.stop()


def test_the_thread_ticks_until_stopped(hand_made, aws):
    """Started, the injector changes something every tick, in the places moto knows; stopped, nothing more."""
    log = Recorder()
    with injector(aws, every=0.1, places=simulated_places, log=log):
        wait_for(lambda: len(log.injected()) >= 3, "three injections", timeout=30)
    assert [e["kind"] for e in log.injected()[:3]] == ["subnet-role-tag", "ssm-parameter", "role-trust"]
    assert {(e["account"], e["region"]) for e in log.injected()} == {(ACCOUNT, REGION)}
    ssm = aws.account_client(ACCOUNT, "ssm")
    values = [ssm.get_parameter(Name=f"/hand/{name}")["Parameter"]["Value"] for name in ("one", "two", "three")]
    assert any('"hotfix": 1' in value for value in values), values
    assert not [t for t in threading.enumerate() if t.name == "sandbox-drift"], "stop() ends the thread"


def test_only_a_loopback_endpoint_is_accepted(aws):
    """The injector refuses an endpoint that is not the sandbox on loopback, and unknown kinds."""
    for endpoint in ("https://ec2.us-east-1.amazonaws.com", "http://10.0.0.1:5000", "https://127.0.0.1:5000"):
        with pytest.raises(DriftwardenError, match="only injected into the sandbox"):
            DriftInjector(endpoint, every=1, places=list, session_factory=aws.control_session)
    with pytest.raises(ValueError, match="unknown kinds"):
        injector(aws, kinds=["subnet-role-tag", "rds-class"])


# --- the command line ------------------------------------------------------------------------------


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTWARDEN_")}
    environment.update(env or {})
    return subprocess.run([DRIFTWARDEN, *args], capture_output=True, text=True, timeout=60, env=environment, check=False)


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_drift_injection_without_the_sandbox_is_a_usage_error(tmp_path, how):
    """--sandbox-drift-every (or DRIFTWARDEN_SANDBOX_DRIFT_EVERY) without --sandbox exits 2 and says why."""
    if how == "flag":
        done = run_cli("run", "--source", str(tmp_path), "--sandbox-drift-every", "2s")
    else:
        done = run_cli("run", "--source", str(tmp_path), env={"DRIFTWARDEN_SANDBOX_DRIFT_EVERY": "2s"})
    assert done.returncode == 2, done
    assert "--sandbox-drift-every needs --sandbox" in done.stderr


def test_a_malformed_drift_period_is_a_usage_error(tmp_path):
    """A period that is not a duration is refused by the parser with exit 2."""
    done = run_cli("run", "--sandbox", "--source", str(tmp_path), "--sandbox-drift-every", "often")
    assert done.returncode == 2, done
    assert "--sandbox-drift-every" in done.stderr and "not a duration" in done.stderr


def test_a_sandboxed_daemon_with_drift_injection_finds_and_repairs_it(tmp_path):
    """`run --sandbox --sandbox-drift-every 1s` logs injected drift and reports it as detected drift in its metrics."""
    write_platform(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DRIFTWARDEN_", "MOTO_"))}
    env.update({"AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "PYTHONUNBUFFERED": "1"})
    args = ["--sandbox", "--sandbox-drift-every", "1s", "--source", str(tmp_path / "repo"), "--path", "platform",
            "--interval", "1h", "--drift-interval", "1s", "--metrics-host", "127.0.0.1", "--metrics-port", "0",
            "--log-format", "json"]
    daemon = DaemonProcess(args, env, tmp_path)
    try:
        injected = wait_for(lambda: daemon.events("sandbox.drift_injected"), "an injection", daemon=daemon)[0]
        assert injected["kind"] in KIND_NAMES and (injected["account"], injected["region"]) == (ACCOUNT, REGION)

        def detected() -> float:
            text = daemon.metrics()
            return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                       if line.startswith("driftwarden_drift_detected_total{"))

        wait_for(detected, "drift_detected_total to count the injected drift", daemon=daemon)
        wait_for(lambda: daemon.sample("driftwarden_apply_actions_total", action="update", result="applied"),
                 "the drift to be repaired", daemon=daemon)
    finally:
        code = daemon.terminate(timeout=30)
    assert code == 0, daemon.log_tail()
    assert not daemon.events("sandbox.drift_failed"), daemon.log_tail()
    out = daemon.out_path.read_text()
    assert "sandbox: simulated AWS at http://127.0.0.1:" in out, out
