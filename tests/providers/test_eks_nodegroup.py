"""The `eks.nodegroup` provider against moto's server: contract, scaling, labels, ownership."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import pytest

from driftwarden.engine.graph import (
    OWNERSHIP_TAGS,
    TAG_MANAGED_BY,
    Resource,
    build_graph,
    nodegroup_name,
)
from driftwarden.engine.observe import context_for
from driftwarden.engine.plan import diff_fields, diff_tags, make_plan, resolve
from driftwarden.manifests.model import Account
from driftwarden.manifests.validation import validate_documents
from driftwarden.providers.base import Context, Observed, converge
from driftwarden.providers.calls import CountingObserver
from driftwarden.providers.eks_nodegroup import EksNodegroupProvider
from moto_state import fill_eks_tagging_gaps, set_nodegroup_status

ACCOUNT = "210987654321"
REGION = "us-east-1"
CLUSTER = "prod-use1"
GROUP = nodegroup_name("default", "m5.xlarge")
ID = f"{CLUSTER}/{GROUP}"
# What the node group's dependencies would report once created. moto's EKS checks none of them
# exists (role ARNs only for their shape), so creating them would cost seconds and prove nothing.
SUBNETS = ("subnet-0b2c3d4e5f6a7b8c9", "subnet-0a1b2c3d4e5f6a7b8")
NODE_ROLE = f"arn:aws:iam::{ACCOUNT}:role/driftwarden-{CLUSTER}-eks-node"

MANIFEST = f"""\
apiVersion: driftwarden/v1
kind: Cluster
metadata: {{name: {CLUSTER}}}
spec:
  account: {{id: "{ACCOUNT}", externalId: ext-{CLUSTER}}}
  region: {REGION}
  tags: {{team: data}}
  nodePools:
    - name: default
      isDefault: true
      nodeInstanceType: m5.xlarge
      minNodeCount: 2
      maxNodeCount: 20
      labels: {{tier: general, workload: airflow}}
      taints:
        - {{key: dedicated, value: airflow, effect: NO_SCHEDULE}}
        - {{key: batch, effect: PREFER_NO_SCHEDULE}}
"""


class Setup:
    """The provider, a Context into the target account, an EKS cluster, the resolved desired state."""

    def __init__(self, aws: Any) -> None:
        self.aws = aws
        self.provider = EksNodegroupProvider()
        self.calls = CountingObserver()
        account = Account(ACCOUNT, "driftwarden-remote-management", f"ext-{CLUSTER}")
        self.ctx: Context = context_for(aws.sessions(self.calls), account, REGION, "driftwarden")
        self.resource = _nodegroup_resource(MANIFEST)
        owner = self.resource.owner
        self.attributes = {
            f"{owner}/subnet/private-a": {"id": SUBNETS[0]},
            f"{owner}/subnet/private-b": {"id": SUBNETS[1]},
            f"{owner}/iam-role/eks-node": {"Arn": NODE_ROLE},
        }
        # The cluster the group belongs to; the engine creates it first.
        self.eks.create_cluster(
            name=CLUSTER,
            roleArn=f"arn:aws:iam::{ACCOUNT}:role/eks-cluster",
            resourcesVpcConfig={"subnetIds": list(SUBNETS)},
        )

    @functools.cached_property
    def eks(self) -> Any:
        """An out-of-band EKS client in the target account (someone else's hands)."""
        return self.aws.account_client(ACCOUNT, "eks", REGION)

    def desired(self, resource: Resource | None = None) -> dict[str, Any]:
        return self.provider.normalize_desired(resolve((resource or self.resource).desired, self.attributes))

    def with_scaling(self, min_size: int, max_size: int) -> Resource:
        desired = {**self.resource.desired, "ScalingConfig": {"minSize": min_size, "maxSize": max_size}}
        return dataclasses.replace(self.resource, desired=desired)

    def create(self) -> Observed:
        return self.provider.create(self.ctx, self.resource, self.desired())

    def only(self) -> Observed:
        found = self.provider.read(self.ctx)
        assert [o.id for o in found] == [ID]
        return found[0]

    def aws_group(self) -> dict[str, Any]:
        group: dict[str, Any] = self.eks.describe_nodegroup(clusterName=CLUSTER, nodegroupName=GROUP)["nodegroup"]
        return group


def _nodegroup_resource(manifest: str) -> Resource:
    result = validate_documents([("m.yaml", manifest.encode())])
    assert not result.errors, [str(p) for p in result.errors]
    resources = build_graph(result.clusters, result.deployments)
    return next(r for r in resources if r.type == "eks.nodegroup")


@pytest.fixture
def setup(aws: Any) -> Setup:
    return Setup(aws)


def test_created_group_reads_back_with_no_diff_and_rereading_changes_nothing(setup: Setup) -> None:
    """create → read gives the same fields and tags, and a second read makes no mutating call."""
    created = setup.create()
    assert (created.id, created.attributes["Arn"]) == (ID, setup.aws_group()["nodegroupArn"])
    observed = setup.only()
    assert diff_fields(setup.desired(), observed.fields, skip=setup.provider.create_only) == []
    assert diff_tags(setup.resource.tags, observed.tags) == []
    assert observed.fields["Taints"] == (
        {"key": "batch", "value": "", "effect": "PREFER_NO_SCHEDULE"},
        {"key": "dedicated", "value": "airflow", "effect": "NO_SCHEDULE"},
    )
    assert observed.status == "ready"
    setup.calls.reset()
    assert setup.provider.read(setup.ctx) == [observed]
    assert setup.calls.mutating_calls() == 0


def test_new_group_starts_at_its_minimum_size(setup: Setup) -> None:
    """desiredSize is set once, at creation, to minSize."""
    setup.create()
    assert setup.aws_group()["scalingConfig"] == {"minSize": 2, "maxSize": 20, "desiredSize": 2}


def test_scaled_group_is_seen_as_drift_on_max_size_and_scaled_back(setup: Setup) -> None:
    """maxSize raised to 30 out of band shows as ScalingConfig.maxSize drift; update restores 20."""
    setup.create()
    setup.eks.update_nodegroup_config(clusterName=CLUSTER, nodegroupName=GROUP, scalingConfig={"maxSize": 30})
    drifted = setup.only()
    changes = diff_fields(setup.desired(), drifted.fields)
    assert [(c.path, c.observed, c.desired) for c in changes] == [("ScalingConfig.maxSize", 30, 20)]
    updated = converge(setup.provider, setup.ctx, setup.resource, setup.desired(), drifted, ["ScalingConfig"])
    assert diff_fields(setup.desired(), updated.fields) == []
    assert setup.aws_group()["scalingConfig"]["maxSize"] == 20


def test_autoscaler_changing_desired_size_is_not_drift_and_is_left_alone(setup: Setup) -> None:
    """desiredSize moved by an autoscaler is no diff, and repairing maxSize leaves it where it is."""
    setup.create()
    setup.eks.update_nodegroup_config(
        clusterName=CLUSTER, nodegroupName=GROUP, scalingConfig={"desiredSize": 7}
    )
    assert diff_fields(setup.desired(), setup.only().fields) == []
    setup.eks.update_nodegroup_config(clusterName=CLUSTER, nodegroupName=GROUP, scalingConfig={"maxSize": 30})
    converge(setup.provider, setup.ctx, setup.resource, setup.desired(), setup.only(), ["ScalingConfig"])
    assert setup.aws_group()["scalingConfig"] == {"minSize": 2, "maxSize": 20, "desiredSize": 7}


def test_lowering_max_size_below_desired_size_clamps_desired_size(setup: Setup) -> None:
    """A new maxSize under the current desiredSize brings desiredSize down to it in the same update."""
    setup.create()
    setup.eks.update_nodegroup_config(
        clusterName=CLUSTER, nodegroupName=GROUP, scalingConfig={"desiredSize": 15}
    )
    smaller = setup.with_scaling(2, 10)
    setup.calls.reset()
    updated = converge(setup.provider, setup.ctx, smaller, setup.desired(smaller), setup.only(), ["ScalingConfig"])
    assert setup.aws_group()["scalingConfig"] == {"minSize": 2, "maxSize": 10, "desiredSize": 10}
    assert setup.calls.count(operation="UpdateNodegroupConfig", result="ok") == 1
    assert diff_fields(setup.desired(smaller), updated.fields) == []


def test_raising_min_size_above_desired_size_raises_desired_size(setup: Setup) -> None:
    """A new minSize over the current desiredSize brings desiredSize up to it."""
    setup.create()
    larger = setup.with_scaling(5, 20)
    converge(setup.provider, setup.ctx, larger, setup.desired(larger), setup.only(), ["ScalingConfig"])
    assert setup.aws_group()["scalingConfig"] == {"minSize": 5, "maxSize": 20, "desiredSize": 5}


def test_label_and_taint_drift_is_seen_and_repaired(setup: Setup) -> None:
    """Labels and taints edited out of band show as drift; one update puts them back exactly."""
    setup.create()
    setup.eks.update_nodegroup_config(
        clusterName=CLUSTER,
        nodegroupName=GROUP,
        labels={"addOrUpdateLabels": {"rogue": "yes", "tier": "spot"}, "removeLabels": ["workload"]},
        taints={
            "addOrUpdateTaints": [{"key": "rogue", "value": "x", "effect": "NO_EXECUTE"}],
            "removeTaints": [{"key": "batch", "effect": "PREFER_NO_SCHEDULE"}],
        },
    )
    drifted = setup.only()
    assert sorted({c.path.split(".")[0] for c in diff_fields(setup.desired(), drifted.fields)}) == ["Labels", "Taints"]
    converge(setup.provider, setup.ctx, setup.resource, setup.desired(), drifted, ["Labels", "Taints"])
    repaired = setup.only()
    assert diff_fields(setup.desired(), repaired.fields) == []
    assert repaired.fields["Labels"] == {"tier": "general", "workload": "airflow"}


def test_removed_user_tag_is_put_back_without_removing_foreign_tags(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    """A user tag removed out of band is restored by update(tags); tags others added stay."""
    fill_eks_tagging_gaps(monkeypatch)  # moto cannot tag node group ARNs
    arn = setup.create().attributes["Arn"]
    setup.eks.untag_resource(resourceArn=arn, tagKeys=["team"])
    setup.eks.tag_resource(resourceArn=arn, tags={"added-by": "someone-else"})
    drifted = setup.only()
    assert [c.path for c in diff_tags(setup.resource.tags, drifted.tags)] == ["tags.team"]
    updated = converge(setup.provider, setup.ctx, setup.resource, setup.desired(), drifted, ["tags"])
    assert diff_tags(setup.resource.tags, updated.tags) == []
    assert updated.tags["added-by"] == "someone-else"


def test_eks_states_map_to_driftwarden_statuses(setup: Setup) -> None:
    """CREATING and UPDATING are pending, DELETING deleting, failed states failed, ACTIVE ready."""
    created = setup.create()
    seen = {}
    for state in ("CREATING", "UPDATING", "DELETING", "CREATE_FAILED", "DELETE_FAILED", "DEGRADED", "ACTIVE"):
        set_nodegroup_status(ACCOUNT, REGION, CLUSTER, GROUP, state)
        refreshed = setup.provider.refresh(setup.ctx, created)
        assert refreshed is not None and refreshed.state == state
        seen[state] = refreshed.status
    assert seen == {
        "CREATING": "pending", "UPDATING": "pending", "DELETING": "deleting", "CREATE_FAILED": "failed",
        "DELETE_FAILED": "failed", "DEGRADED": "failed", "ACTIVE": "ready",
    }


def test_update_reports_pending_while_eks_is_updating(setup: Setup) -> None:
    """An update answered while EKS reports UPDATING comes back pending, for the engine to await."""
    setup.create()
    set_nodegroup_status(ACCOUNT, REGION, CLUSTER, GROUP, "UPDATING")
    smaller = setup.with_scaling(2, 10)
    updated = converge(setup.provider, setup.ctx, smaller, setup.desired(smaller), setup.only(), ["ScalingConfig"])
    assert (updated.status, updated.state) == ("pending", "UPDATING")


def test_new_instance_type_is_planned_as_a_blue_green_replacement(setup: Setup) -> None:
    """Another instance type means another group name: the plan replaces the group, never edits it."""
    setup.create()
    bigger = _nodegroup_resource(MANIFEST.replace("m5.xlarge", "m5.2xlarge"))
    bigger = dataclasses.replace(bigger, desired=setup.desired(bigger))
    plan = make_plan([bigger], setup.provider.read(setup.ctx), providers={"eks.nodegroup": setup.provider})
    assert plan.errors == []
    assert [(c.action, c.key) for c in plan.changes] == [("replace", setup.resource.key)]
    assert {d.path for d in plan.changes[0].diff} >= {"NodegroupName", "InstanceTypes"}


def test_deleted_group_is_no_longer_read_and_deleting_twice_is_fine(setup: Setup) -> None:
    """delete makes read() return nothing; a second delete of the gone group succeeds."""
    setup.create()
    observed = setup.only()
    setup.provider.delete(setup.ctx, observed)
    assert setup.provider.read(setup.ctx) == []
    setup.provider.delete(setup.ctx, observed)
    assert setup.eks.list_nodegroups(clusterName=CLUSTER)["nodegroups"] == []


def test_untagged_group_is_released_but_still_exists(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    """untag removes our ownership tags: read() no longer returns it, EKS still has it with the user's tags."""
    fill_eks_tagging_gaps(monkeypatch)  # moto cannot untag node group ARNs
    setup.create()
    setup.provider.untag(setup.ctx, setup.only())
    assert setup.provider.read(setup.ctx) == []
    tags = setup.aws_group()["tags"]
    assert not set(OWNERSHIP_TAGS) & set(tags)
    assert tags["team"] == "data"


def test_groups_without_our_managed_by_tag_are_never_read(setup: Setup) -> None:
    """Node groups untagged, or managed by another driftwarden instance, are not ours to read."""
    common = {"clusterName": CLUSTER, "nodeRole": NODE_ROLE, "subnets": list(SUBNETS)}
    setup.eks.create_nodegroup(nodegroupName="hand-made", tags={"team": "data"}, **common)
    setup.eks.create_nodegroup(nodegroupName="other", tags={TAG_MANAGED_BY: "driftwarden-staging"}, **common)
    assert setup.provider.read(setup.ctx) == []
    setup.create()
    assert [o.id for o in setup.provider.read(setup.ctx)] == [ID]
