"""The reconcile engine end to end against moto's server over HTTP, several accounts via assume-role."""

from __future__ import annotations

import dataclasses
import re
import shutil
from collections import Counter
from pathlib import Path

import pytest

from driftwarden.engine.apply import ApplySettings
from driftwarden.engine.graph import build_graph
from driftwarden.engine.reconcile import (
    ReconcileSettings,
    apply_once,
    plan_once,
)
from driftwarden.manifests.validation import validate_paths
from driftwarden.providers.calls import CountingObserver, iam_action
from driftwarden.providers.registry import default_providers
from driftwarden.providers.secret_sources import sandbox_secret_resolver
from driftwarden.sandbox.server import seed_existing
from faultproxy import error, operation_is, server_error
from moto_state import fill_eks_tagging_gaps

REPO = Path(__file__).resolve().parent.parent
DEV, PROD, CORP = "318574920163", "742096158823", "509318846201"
FAST = ApplySettings(wait=True, timeout_seconds=30, poll_seconds=0.05, max_workers=4)


@pytest.fixture
def platform(tmp_path: Path, aws_managed_policies, aws, monkeypatch) -> Path:
    """A copy of manifests/, with what a real account would already hold (static VPC, policies) seeded."""
    fill_eks_tagging_gaps(monkeypatch)
    root = tmp_path / "manifests"
    shutil.copytree(REPO / "manifests", root)
    result = validated(root)
    seeded = seed_existing(None, aws.sessions(), result.clusters, result.deployments)
    assert any("static placement" in line for line in seeded)
    return root


def validated(root: Path):
    result = validate_paths([root])
    assert result.valid, [str(p) for p in result.errors]
    return result


def run_apply(root: Path, sessions, *, settings: ReconcileSettings | None = None, progress=None):
    return apply_once(
        validated(root),
        sessions,
        revision="test",
        settings=settings or ReconcileSettings(apply=FAST),
        resolve_secret=sandbox_secret_resolver(), providers=default_providers(),
        progress=progress or (lambda _message: None),
    )


def run_plan(root: Path, sessions, *, settings: ReconcileSettings | None = None):
    return plan_once(
        validated(root),
        sessions,
        revision="test",
        settings=settings or ReconcileSettings(apply=FAST),
        resolve_secret=sandbox_secret_resolver(), providers=default_providers(),
    )


def assert_all_applied(result) -> None:
    assert result.plan is not None and result.plan.errors == [], result.plan.errors if result.plan else None
    failed = [(o.change.key, o.result, o.message) for o in result.outcomes if o.result != "applied"]
    assert failed == []


def test_apply_creates_the_footprint_then_plan_is_empty_and_a_second_apply_mutates_nothing(platform, aws):
    """From empty accounts apply creates every resource; the next plan is empty; a second apply makes no mutating call."""
    result = run_apply(platform, aws.sessions())
    assert_all_applied(result)
    expected = Counter(r.type for r in build_graph(result.validation.clusters, result.validation.deployments))
    created = Counter(o.change.type for o in result.outcomes if o.change.action == "create")
    assert created == expected

    # The resources are really there, with their fields and tags.
    ec2 = aws.account_client(PROD, "ec2", "eu-west-1")
    subnets = ec2.describe_subnets(Filters=[{"Name": "tag:driftwarden:owner", "Values": ["Cluster/prod-euw1"]}])
    assert sorted(s["CidrBlock"] for s in subnets["Subnets"]) == sorted(
        ["10.40.0.0/19", "10.40.32.0/20", "10.40.48.0/24", "10.40.49.0/24"]
    )
    assert all({"Key": "driftwarden:managed-by", "Value": "driftwarden"} in s["Tags"] for s in subnets["Subnets"])
    eks = aws.account_client(PROD, "eks", "eu-west-1")
    assert eks.describe_cluster(name="prod-euw1")["cluster"]["version"] == result.validation.clusters[1].kubernetes_version
    assert len(eks.list_nodegroups(clusterName="prod-euw1")["nodegroups"]) == 3
    rds = aws.account_client(DEV, "rds", "us-east-1").describe_db_instances()["DBInstances"]
    assert [(d["DBInstanceClass"], d["MultiAZ"], d["StorageEncrypted"]) for d in rds] == [("db.m6g.large", True, True)]

    again = run_plan(platform, aws.sessions())
    assert again.plan is not None
    assert (again.plan.changes, again.plan.errors) == ([], [])

    observer = CountingObserver()
    second = run_apply(platform, aws.sessions(observer))
    assert second.outcomes == []
    assert observer.mutating_calls() == 0


def test_out_of_band_drift_is_planned_on_exactly_those_fields_and_repaired(platform, aws):
    """Scaling a node group, an RDS class, a subnet tag, a trust policy, the SSM parameter and a route: each is reported and repaired."""
    assert_all_applied(run_apply(platform, aws.sessions()))
    eks = aws.account_client(PROD, "eks", "eu-west-1")
    group = next(g for g in eks.list_nodegroups(clusterName="prod-euw1")["nodegroups"] if g.startswith("default-"))
    eks.update_nodegroup_config(clusterName="prod-euw1", nodegroupName=group, scalingConfig={"minSize": 2, "maxSize": 30, "desiredSize": 5})
    aws.account_client(DEV, "rds", "us-east-1").modify_db_instance(
        DBInstanceIdentifier="driftwarden-dev-use1", DBInstanceClass="db.r5.large", ApplyImmediately=True
    )
    ec2 = aws.account_client(PROD, "ec2", "eu-west-1")
    (subnet,) = ec2.describe_subnets(Filters=[{"Name": "tag:driftwarden:component", "Values": ["subnet/public-a"]}])["Subnets"]
    user_tag = next(t for t in subnet["Tags"] if not t["Key"].startswith(("driftwarden:", "kubernetes.io")))
    ec2.delete_tags(Resources=[subnet["SubnetId"]], Tags=[{"Key": user_tag["Key"]}])
    iam = aws.account_client(DEV, "iam")
    iam.update_assume_role_policy(
        RoleName="driftwarden-dev-use1-eks-cluster",
        PolicyDocument='{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}',
    )
    ssm = aws.account_client(PROD, "ssm", "eu-west-1")
    ssm.put_parameter(Name="/driftwarden/prod-euw1/warehouse-etl/configuration", Value="{}", Type="String", Overwrite=True)
    (table,) = ec2.describe_route_tables(Filters=[{"Name": "tag:driftwarden:component", "Values": ["route-table/private-a"]}])["RouteTables"]
    ec2.delete_route(RouteTableId=table["RouteTableId"], DestinationCidrBlock="0.0.0.0/0")

    plan = run_plan(platform, aws.sessions()).plan
    assert plan is not None and plan.errors == []
    drifted = {(c.key, c.action): sorted(d.path for d in c.diff) for c in plan.changes}
    assert drifted == {
        ("Cluster/prod-euw1/nodegroup/default", "update"): ["ScalingConfig.maxSize"],
        ("Cluster/dev-use1/db-instance", "update"): ["DBInstanceClass"],
        ("Cluster/prod-euw1/subnet/public-a", "update"): [f"tags.{user_tag['Key']}"],
        ("Cluster/dev-use1/iam-role/eks-cluster", "update"): ["AssumeRolePolicyDocument.Statement"],
        ("Deployment/warehouse-etl/ssm-parameter/configuration", "update"): ["Value"],
        ("Cluster/prod-euw1/route-table/private-a", "update"): ["Routes"],
    }
    assert_all_applied(run_apply(platform, aws.sessions()))
    after = run_plan(platform, aws.sessions()).plan
    assert after is not None and after.changes == []
    # The autoscaler's desiredSize was left alone.
    assert eks.describe_nodegroup(clusterName="prod-euw1", nodegroupName=group)["nodegroup"]["scalingConfig"]["desiredSize"] == 5


def test_instance_type_change_replaces_the_node_group_new_one_first(platform, aws):
    """A new instance type creates the new node group, waits for it, and only then deletes the old one."""
    assert_all_applied(run_apply(platform, aws.sessions()))
    prod = platform / "clusters" / "prod-euw1.yaml"
    prod.write_text(prod.read_text().replace("r5.2xlarge", "r5.4xlarge"))
    deployment = platform / "deployments" / "warehouse-etl.yaml"
    deployment.write_text(deployment.read_text().replace("r5.2xlarge", "r5.4xlarge"))
    messages: list[str] = []
    result = run_apply(platform, aws.sessions(), progress=messages.append)
    assert_all_applied(result)
    replace = [m for m in messages if "nodegroup/large" in m]
    assert "creating the new one first" in replace[0] and "new one ready, deleting" in replace[-1]
    groups = aws.account_client(PROD, "eks", "eu-west-1").list_nodegroups(clusterName="prod-euw1")["nodegroups"]
    large = [g for g in groups if g.startswith("large-")]
    assert len(large) == 1
    described = aws.account_client(PROD, "eks", "eu-west-1").describe_nodegroup(clusterName="prod-euw1", nodegroupName=large[0])
    assert described["nodegroup"]["instanceTypes"] == ["r5.4xlarge"]
    assert run_plan(platform, aws.sessions()).plan.changes == []


def test_changing_the_vpc_range_is_a_plan_error_that_changes_nothing(platform, aws):
    """vpcSubnetRange is immutable: plan names the field, apply touches nothing of it."""
    assert_all_applied(run_apply(platform, aws.sessions()))
    prod = platform / "clusters" / "prod-euw1.yaml"
    prod.write_text(prod.read_text().replace("10.40.0.0/18", "10.50.0.0/18"))
    observer = CountingObserver()
    result = run_apply(platform, aws.sessions(observer))
    assert result.plan is not None
    vpc_errors = [e for e in result.plan.errors if e.key == "Cluster/prod-euw1/vpc"]
    assert vpc_errors and vpc_errors[0].field == "CidrBlock"
    assert "cannot change" in vpc_errors[0].message
    ec2 = aws.account_client(PROD, "ec2", "eu-west-1")
    (vpc,) = ec2.describe_vpcs(Filters=[{"Name": "tag:driftwarden:owner", "Values": ["Cluster/prod-euw1"]}])["Vpcs"]
    assert vpc["CidrBlock"] == "10.40.0.0/18"
    assert not [o for o in result.outcomes if o.change.key == "Cluster/prod-euw1/vpc"]


def test_throttling_and_5xx_are_retried_and_counted(platform, aws, fault_proxy):
    """Throttled and 5xx answers between boto3 and moto are retried transparently and counted."""
    fault_proxy.inject(operation_is("ec2", "DescribeVpcs"), [error("RequestLimitExceeded"), server_error(503)])
    observer = CountingObserver()
    result = run_apply(platform, aws.sessions(observer, endpoint_url=fault_proxy.endpoint_url))
    assert_all_applied(result)
    assert observer.count(result="retried") >= 2
    assert observer.throttles["ec2"] >= 1


def test_a_permanent_error_in_one_account_leaves_the_others_reconciled(platform, aws, fault_proxy):
    """AccessDenied on one cluster's AssumeRole is reported for it; the other clusters are fully reconciled."""
    fault_proxy.inject(
        lambda request: request.service == "sts" and PROD in request.body_or_target,
        [error("AccessDenied", status=403)],
        repeat_last=True,
    )
    result = run_apply(platform, aws.sessions(endpoint_url=fault_proxy.endpoint_url))
    assert result.plan is not None
    assert any(PROD in e.key and "AccessDenied" in e.message for e in result.plan.errors)
    assert not [o for o in result.outcomes if o.result != "applied"]
    fault_proxy.clear()
    check = run_plan(platform, aws.sessions())
    remaining = {c.owner for c in check.plan.changes}
    assert remaining == {"Cluster/prod-euw1", "Deployment/warehouse-etl", "Deployment/ml-features"}


def test_removed_manifest_is_kept_without_prune(platform, aws):
    """With prune off, removing a Deployment's manifest changes nothing in AWS."""
    assert_all_applied(run_apply(platform, aws.sessions()))
    (platform / "deployments" / "ml-features.yaml").unlink()
    observer = CountingObserver()
    result = run_apply(platform, aws.sessions(observer))
    assert result.outcomes == [] and observer.mutating_calls() == 0
    assert result.plan is not None and any("--prune" in w for w in result.plan.warnings)


def test_prune_deletes_only_that_owner_and_respects_retain(platform, aws):
    """With prune on, a removed Deployment's resources go (Delete) or lose our tags (Retain); nothing else is touched."""
    reporting = platform / "deployments" / "reporting.astro.yaml"
    assert_all_applied(run_apply(platform, aws.sessions()))
    ml = platform / "deployments" / "ml-features.yaml"
    policy = "Delete" if "deletionPolicy: Delete" in ml.read_text() else "Retain"
    ml.unlink()
    result = run_apply(platform, aws.sessions(), settings=ReconcileSettings(prune=True, apply=FAST))
    assert_all_applied(result)
    touched = {o.change.owner for o in result.outcomes}
    assert touched == {"Deployment/ml-features"}
    actions = {o.change.action for o in result.outcomes}
    assert actions == ({"delete"} if policy == "Delete" else {"release"})
    ssm = aws.account_client(PROD, "ssm", "eu-west-1")
    names = [p["Name"] for p in ssm.describe_parameters()["Parameters"]]
    if policy == "Retain":
        assert "/driftwarden/prod-euw1/ml-features/configuration" in names
    else:
        assert "/driftwarden/prod-euw1/ml-features/configuration" not in names
    assert reporting.exists()
    assert run_plan(platform, aws.sessions(), settings=ReconcileSettings(prune=True, apply=FAST)).plan.changes == []


def test_prune_refuses_while_another_manifest_is_invalid(platform, aws):
    """An invalid file anywhere means nothing is read from or deleted in AWS."""
    assert_all_applied(run_apply(platform, aws.sessions()))
    (platform / "deployments" / "ml-features.yaml").unlink()
    (platform / "deployments" / "broken.yaml").write_text("apiVersion: driftwarden/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {}\n")
    validation = validate_paths([platform])
    assert not validation.valid
    observer = CountingObserver()
    result = apply_once(validation, aws.sessions(observer), revision="t",
                        settings=ReconcileSettings(prune=True, apply=FAST),
                        resolve_secret=sandbox_secret_resolver(), providers=default_providers(), progress=lambda _m: None)
    assert result.plan is None and result.outcomes == []
    assert observer.mutating_calls() == 0


def slow_to_become_ready(monkeypatch, cls, *, pending: str, ready_after: int) -> list:
    """Make moto report new `cls` objects as `pending` for their first reads, like AWS does.

    moto makes everything ready at once; AWS takes ~15 minutes for EKS and RDS. The returned
    list holds every such object, so a test can also make them ready at a moment it chooses.
    """
    created: list = []
    original_init = cls.__init__

    def init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self._dw_reads_left = ready_after
        created.append(self)

    def get(self):
        if getattr(self, "_dw_reads_left", 0) > 0:
            self._dw_reads_left -= 1
            return pending
        return self._dw_status

    def put(self, value):
        self._dw_status = value

    monkeypatch.setattr(cls, "__init__", init)
    monkeypatch.setattr(cls, "status", property(get, put), raising=False)
    return created


def dev_only(root: Path) -> None:
    for name in ("clusters/prod-euw1.yaml", "clusters/corp-apse2.yaml", "deployments/warehouse-etl.yaml",
                 "deployments/ml-features.yaml"):
        (root / name).unlink()


def test_apply_waits_for_long_aws_operations_with_progress(platform, aws, monkeypatch):
    """EKS and RDS CREATING are awaited, with progress shown, before dependants are created."""
    from moto.eks.models import Cluster as MotoEksCluster
    from moto.rds.models import DBInstance as MotoDbInstance

    dev_only(platform)
    slow_to_become_ready(monkeypatch, MotoEksCluster, pending="CREATING", ready_after=3)
    slow_to_become_ready(monkeypatch, MotoDbInstance, pending="creating", ready_after=3)
    messages: list[str] = []
    result = run_apply(platform, aws.sessions(), progress=messages.append)
    assert_all_applied(result)
    assert any("Cluster/dev-use1/eks-cluster: CREATING" in m for m in messages)
    assert any("Cluster/dev-use1/db-instance: creating" in m for m in messages)
    eks = aws.account_client(DEV, "eks", "us-east-1")
    assert eks.list_clusters()["clusters"] == ["dev-use1"]
    assert len(eks.list_nodegroups(clusterName="dev-use1")["nodegroups"]) == 1


def test_no_wait_returns_and_a_later_run_finishes_without_duplicates(platform, aws, monkeypatch):
    """With wait off, pending work is left to AWS; later runs create nothing twice and finish the job."""
    from moto.eks.models import Cluster as MotoEksCluster
    from moto.rds.models import DBInstance as MotoDbInstance

    dev_only(platform)
    clusters = slow_to_become_ready(monkeypatch, MotoEksCluster, pending="CREATING", ready_after=10**6)
    databases = slow_to_become_ready(monkeypatch, MotoDbInstance, pending="creating", ready_after=10**6)
    no_wait = ReconcileSettings(apply=ApplySettings(wait=False, max_workers=4))

    first = run_apply(platform, aws.sessions(), settings=no_wait)
    results = {o.change.key: o.result for o in first.outcomes}
    assert results["Cluster/dev-use1/eks-cluster"] == "pending"
    assert results["Cluster/dev-use1/db-instance"] == "pending"
    assert results["Cluster/dev-use1/nodegroup/default"] == "skipped"

    second = run_apply(platform, aws.sessions(), settings=no_wait)
    assert {o.change.key: o.result for o in second.outcomes} == {"Cluster/dev-use1/nodegroup/default": "skipped"}

    for item in [*clusters, *databases]:
        item._dw_reads_left = 0  # AWS has finished
    third = run_apply(platform, aws.sessions(), settings=no_wait)
    assert [(o.change.key, o.result) for o in third.outcomes] == [("Cluster/dev-use1/nodegroup/default", "applied")]
    eks = aws.account_client(DEV, "eks", "us-east-1")
    assert eks.list_clusters()["clusters"] == ["dev-use1"]
    assert len(aws.account_client(DEV, "rds", "us-east-1").describe_db_instances()["DBInstances"]) == 1
    assert run_plan(platform, aws.sessions()).plan.changes == []


def test_every_aws_call_of_a_full_lifecycle_is_declared_for_iam_policy(platform, aws):
    """Create, repair drift and prune with Delete: every call made is an action iam-policy grants."""
    from driftwarden.engine import preflight

    providers = default_providers()
    validation = validated(platform)
    assert set(providers) == {r.type for r in build_graph(validation.clusters, validation.deployments)}
    for provider in providers.values():
        assert {"read", "create", "update", "delete", "untag"} <= set(provider.permissions), provider.type
    declared = set(preflight.PERMISSIONS) | {a for p in providers.values() for names in p.permissions.values() for a in names}

    observer = CountingObserver()
    assert_all_applied(run_apply(platform, aws.sessions(observer)))
    ssm = aws.account_client(PROD, "ssm", "eu-west-1")
    ssm.put_parameter(Name="/driftwarden/prod-euw1/warehouse-etl/configuration", Value="{}", Type="String", Overwrite=True)
    ml = platform / "deployments" / "ml-features.yaml"
    text = ml.read_text()
    # Enforced (not warn-only) and Delete, so the new deletion policy tag is applied before prune.
    text = re.sub(r"\n  deletionPolicy: \w+", "", text).replace("driftwarden/drift: warn", "driftwarden/drift: enforce")
    ml.write_text(text.replace("spec:\n", "spec:\n  deletionPolicy: Delete\n", 1))
    assert_all_applied(run_apply(platform, aws.sessions(observer)))
    ml.unlink()
    assert_all_applied(run_apply(platform, aws.sessions(observer), settings=ReconcileSettings(prune=True, apply=FAST)))

    called = {
        iam_action(service, operation)
        for (service, operation, result), _n in observer.calls.items()
        if result != "retried" and (service, operation) != ("sts", "AssumeRole")
    }
    assert {"ssm:DeleteParameter", "ssm:PutParameter", "ec2:CreateVpc"} <= called
    assert sorted(called - declared) == []


def test_tags_from_a_stale_tagging_index_are_confirmed_before_the_plan_acts(platform, aws, monkeypatch):
    """A no-change plan reads tags from the index; where the index is behind, each doubtful resource is re-read once."""
    from driftwarden.providers import tagging

    assert_all_applied(run_apply(platform, aws.sessions()))
    observer = CountingObserver()
    steady = run_plan(platform, aws.sessions(observer))
    assert steady.plan is not None and steady.plan.changes == []
    assert observer.count(operation="ListTagsForResource") == 0  # tags came from the index only
    indexed = observer.count(service="resourcegroupstaggingapi", operation="GetResources")
    assert indexed > 0

    # The index lags behind a tag change just made by an apply: it still shows an older value.
    real = tagging.tags_by_arn
    monkeypatch.setattr(tagging, "tags_by_arn", lambda ctx, resource_type: {
        arn: {**tags, "cost-center": "0000"} for arn, tags in real(ctx, resource_type).items()})
    observer = CountingObserver()
    behind = run_plan(platform, aws.sessions(observer))
    assert behind.plan is not None and (behind.plan.changes, behind.plan.held, behind.plan.errors) == ([], [], [])
    stale = [o for o in steady.observation.resources if o.type in ("ssm.parameter", "rds.db-subnet-group")
             and "cost-center" in o.tags]
    assert stale and observer.count(operation="ListTagsForResource") == len(stale)

    # Real drift stays drift once confirmed.
    ssm = aws.account_client(PROD, "ssm", "eu-west-1")
    ssm.remove_tags_from_resource(ResourceType="Parameter", ResourceId="/driftwarden/prod-euw1/warehouse-etl/configuration",
                                  TagKeys=["cost-center"])
    drifted = run_plan(platform, aws.sessions())
    assert drifted.plan is not None
    assert [(c.action, c.key, [d.path for d in c.diff]) for c in drifted.plan.changes] == [
        ("update", "Deployment/warehouse-etl/ssm-parameter/configuration", ["tags.cost-center"])]


def test_warn_only_object_reports_drift_but_receives_changes_made_in_git(platform, aws):
    """ml-features is `drift: warn`: a hand edit is held and reported; a Git change is applied, hand edit included."""
    assert_all_applied(run_apply(platform, aws.sessions()))
    ssm = aws.account_client(PROD, "ssm", "eu-west-1")
    name = "/driftwarden/prod-euw1/ml-features/configuration"
    ssm.put_parameter(Name=name, Value='{"tuned": "by hand"}', Type="String", Overwrite=True)

    drifted = run_apply(platform, aws.sessions())
    assert drifted.plan is not None and drifted.plan.changes == []
    assert [(c.key, [d.path for d in c.diff]) for c in drifted.plan.held] == [
        ("Deployment/ml-features/ssm-parameter/configuration", ["Value"])]
    assert ssm.get_parameter(Name=name)["Parameter"]["Value"] == '{"tuned": "by hand"}'

    ml = platform / "deployments" / "ml-features.yaml"
    ml.write_text(ml.read_text().replace('value: "64"', 'value: "96"'))
    changed = run_apply(platform, aws.sessions())
    assert_all_applied(changed)
    assert [(c.action, c.key) for c in changed.plan.changes] == [("update", "Deployment/ml-features/ssm-parameter/configuration")]
    assert changed.plan.changes[0].reason.startswith("changed in Git")
    assert '"96"' in ssm.get_parameter(Name=name)["Parameter"]["Value"]

    settled = run_plan(platform, aws.sessions())
    assert settled.plan is not None and (settled.plan.changes, settled.plan.held) == ([], [])


def test_prune_finds_a_removed_cluster_whose_place_left_git_only_when_told_of_it(platform, aws):
    """dev-use1 (and its Deployment) are alone in their account: once gone from Git, prune sees them via `retired_places`."""
    from driftwarden.engine.observe import Place

    result = run_apply(platform, aws.sessions())
    assert_all_applied(result)
    (dev,) = [c for c in result.validation.clusters if c.name == "dev-use1"]
    (platform / "clusters" / "dev-use1.yaml").unlink()
    (platform / "deployments" / "reporting.astro.yaml").unlink()
    pruning = ReconcileSettings(prune=True, prune_limit=100, apply=FAST)

    blind = run_apply(platform, aws.sessions(), settings=pruning)
    assert blind.outcomes == [] and blind.plan is not None and blind.plan.warnings == []

    told = run_apply(platform, aws.sessions(), settings=dataclasses.replace(pruning, retired_places=(Place(dev.account, dev.region),)))
    assert_all_applied(told)
    assert {(o.change.owner, o.change.action) for o in told.outcomes} == {("Cluster/dev-use1", "release"), ("Deployment/reporting", "release")}
    ec2 = aws.account_client(DEV, "ec2", "us-east-1")
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "tag:driftwarden:owner", "Values": ["Cluster/dev-use1"]}])["Vpcs"]
    assert vpcs == []  # released: still there, without our tags
    assert len(ec2.describe_vpcs(Filters=[{"Name": "cidr", "Values": [dev.vpc_subnet_range]}])["Vpcs"]) == 1


def test_a_stopping_daemon_starts_no_new_change_and_the_next_run_finishes_without_duplicates(platform, aws):
    """Once cancelled, changes not yet started are skipped (calls in flight finish); the next run completes the rest."""
    answers = iter([False] * 8)
    result = apply_once(validated(platform), aws.sessions(), revision="test", settings=ReconcileSettings(apply=FAST),
                        resolve_secret=sandbox_secret_resolver(), providers=default_providers(), progress=lambda _m: None,
                        cancelled=lambda: next(answers, True))
    by_result = Counter(o.result for o in result.outcomes)
    assert by_result["applied"] >= 1 and by_result["skipped"] >= 1, by_result
    assert set(by_result) <= {"applied", "skipped", "pending"}
    assert all(o.message == "not started: driftwarden is stopping" for o in result.outcomes
               if o.result == "skipped" and "waiting for" not in o.message)

    finished = run_apply(platform, aws.sessions())
    assert_all_applied(finished)
    assert {o.change.key for o in finished.outcomes}.isdisjoint(
        {o.change.key for o in result.outcomes if o.result == "applied"})
    assert len(aws.account_client(DEV, "ec2", "us-east-1").describe_vpcs(
        Filters=[{"Name": "tag:driftwarden:owner", "Values": ["Cluster/dev-use1"]}])["Vpcs"]) == 1
    assert run_plan(platform, aws.sessions()).plan.changes == []
