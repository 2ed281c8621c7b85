"""The `eks.cluster` provider against moto's server: contract, drift, versions, ownership."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import pytest

from driftwarden.engine.graph import OWNERSHIP_TAGS, TAG_MANAGED_BY, Resource, build_graph
from driftwarden.engine.observe import context_for
from driftwarden.engine.plan import diff_fields, diff_tags, make_plan, resolve
from driftwarden.errors import NotFoundError, PermanentProviderError
from driftwarden.manifests.model import Account
from driftwarden.manifests.validation import validate_documents
from driftwarden.providers.base import Context, converge
from driftwarden.providers.calls import CountingObserver
from driftwarden.providers.eks_cluster import EksClusterProvider, client_token
from moto_state import fill_eks_tagging_gaps, set_eks_cluster_status

ACCOUNT = "210987654321"
REGION = "us-east-1"
NAME = "prod-use1"

MANIFEST = f"""\
apiVersion: driftwarden/v1
kind: Cluster
metadata: {{name: {NAME}}}
spec:
  account: {{id: "{ACCOUNT}", externalId: ext-{NAME}}}
  region: {REGION}
  kubernetesVersion: "1.31"
  tags: {{team: data, cost-center: "42"}}
"""


# What the cluster's dependencies would report once created. moto's EKS checks none of them
# exists (a role ARN only for its shape), so creating them would cost seconds and prove nothing.
SUBNETS = ("subnet-0b2c3d4e5f6a7b8c9", "subnet-0a1b2c3d4e5f6a7b8")
SECURITY_GROUP = "sg-0123456789abcdef0"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/driftwarden-{NAME}-eks-cluster"


class Setup:
    """The provider, a Context into the target account, and the resolved desired state."""

    def __init__(self, aws: Any) -> None:
        self.aws = aws
        self.provider = EksClusterProvider()
        self.calls = CountingObserver()
        account = Account(ACCOUNT, "driftwarden-remote-management", f"ext-{NAME}")
        self.ctx: Context = context_for(aws.sessions(self.calls), account, REGION, "driftwarden")
        self.resource = _cluster_resource(MANIFEST)
        owner = self.resource.owner
        self.attributes = {
            f"{owner}/subnet/private-a": {"id": SUBNETS[0]},
            f"{owner}/subnet/private-b": {"id": SUBNETS[1]},
            f"{owner}/security-group/cluster": {"id": SECURITY_GROUP},
            f"{owner}/iam-role/eks-cluster": {"Arn": ROLE_ARN},
        }

    @functools.cached_property
    def eks(self) -> Any:
        """An out-of-band EKS client in the target account (someone else's hands)."""
        return self.aws.account_client(ACCOUNT, "eks", REGION)

    def desired(self, resource: Resource | None = None) -> dict[str, Any]:
        return self.provider.normalize_desired(resolve((resource or self.resource).desired, self.attributes))

    def with_version(self, version: str) -> Resource:
        return dataclasses.replace(self.resource, desired={**self.resource.desired, "Version": version})


def _cluster_resource(manifest: str) -> Resource:
    result = validate_documents([("m.yaml", manifest.encode())])
    assert not result.errors, [str(p) for p in result.errors]
    resources = build_graph(result.clusters, result.deployments)
    return next(r for r in resources if r.type == "eks.cluster")


@pytest.fixture
def setup(aws: Any) -> Setup:
    return Setup(aws)


def _create(s: Setup) -> Any:
    return s.provider.create(s.ctx, s.resource, s.desired())


def _only(s: Setup) -> Any:
    found = s.provider.read(s.ctx)
    assert [o.id for o in found] == [NAME]
    return found[0]


def test_created_cluster_reads_back_with_no_diff_and_rereading_changes_nothing(setup: Setup) -> None:
    """create → read gives the same fields and tags, and a second read makes no mutating call."""
    created = _create(setup)
    assert created.attributes == {"id": NAME, "Arn": created.attributes["Arn"], "Name": NAME}
    assert created.attributes["Arn"].endswith(f":cluster/{NAME}")
    # The idempotency token comes from the resource key: a retried create is the same request.
    assert setup.eks.describe_cluster(name=NAME)["cluster"]["clientRequestToken"] == client_token(
        setup.resource.key, NAME
    )
    observed = _only(setup)
    assert diff_fields(setup.desired(), observed.fields, skip=setup.provider.create_only) == []
    assert diff_tags(setup.resource.tags, observed.tags) == []
    assert observed.fields["Version"] == "1.31"
    assert observed.status == "ready"
    setup.calls.reset()
    assert setup.provider.read(setup.ctx) == [observed]
    assert setup.calls.count(service="eks", operation="DescribeCluster", result="ok") == 1
    assert setup.calls.mutating_calls() == 0


def test_create_is_pending_while_eks_reports_creating_and_ready_once_active(setup: Setup) -> None:
    """A cluster EKS still reports CREATING is pending; refresh sees it ready once ACTIVE."""
    created = _create(setup)
    set_eks_cluster_status(ACCOUNT, REGION, NAME, "CREATING")
    pending = setup.provider.refresh(setup.ctx, created)
    assert pending is not None and (pending.status, pending.state) == ("pending", "CREATING")
    set_eks_cluster_status(ACCOUNT, REGION, NAME, "ACTIVE")
    ready = setup.provider.refresh(setup.ctx, created)
    assert ready is not None and (ready.status, ready.state) == ("ready", "ACTIVE")
    setup.provider.delete(setup.ctx, ready)
    assert setup.provider.refresh(setup.ctx, created) is None


def test_eks_states_map_to_driftwarden_statuses(setup: Setup) -> None:
    """EKS's transitional, failed and deleting states become pending, failed and deleting."""
    _create(setup)
    seen = {}
    for state in ("UPDATING", "PENDING", "FAILED", "DELETING", "ACTIVE"):
        set_eks_cluster_status(ACCOUNT, REGION, NAME, state)
        seen[state] = _only(setup).status
    assert seen == {"UPDATING": "pending", "PENDING": "pending", "FAILED": "failed", "DELETING": "deleting",
                    "ACTIVE": "ready"}


def test_out_of_band_security_group_change_is_seen_and_refused_as_immutable(setup: Setup) -> None:
    """Security groups swapped out of band show in fields; the plan and update refuse to act."""
    _create(setup)
    rogue = "sg-0fedcba9876543210"
    setup.eks.update_cluster_config(
        name=NAME, resourcesVpcConfig={"subnetIds": list(SUBNETS), "securityGroupIds": [rogue]}
    )
    observed = _only(setup)
    assert observed.fields["SecurityGroupIds"] == (rogue,)
    changes = diff_fields(setup.desired(), observed.fields)
    assert [c.path for c in changes] == ["SecurityGroupIds"]
    resolved = dataclasses.replace(setup.resource, desired=setup.desired())
    plan = make_plan([resolved], [observed], providers={"eks.cluster": setup.provider})
    assert plan.changes == []
    assert [e.field for e in plan.errors] == ["SecurityGroupIds"]
    assert "additional security groups" in plan.errors[0].message
    setup.calls.reset()
    with pytest.raises(PermanentProviderError, match="SecurityGroupIds"):
        converge(setup.provider, setup.ctx, setup.resource, setup.desired(), observed, ["SecurityGroupIds"])
    assert setup.calls.mutating_calls() == 0


def test_removed_user_tag_is_put_back_without_removing_foreign_tags(setup: Setup) -> None:
    """A user tag removed out of band is restored by update(tags); tags others added stay."""
    created = _create(setup)
    arn = created.attributes["Arn"]
    setup.eks.untag_resource(resourceArn=arn, tagKeys=["team"])
    setup.eks.tag_resource(resourceArn=arn, tags={"added-by": "someone-else"})
    drifted = _only(setup)
    assert [c.path for c in diff_tags(setup.resource.tags, drifted.tags)] == ["tags.team"]
    updated = converge(setup.provider, setup.ctx, setup.resource, setup.desired(), drifted, ["tags"])
    assert diff_tags(setup.resource.tags, updated.tags) == []
    assert updated.tags["added-by"] == "someone-else"
    assert diff_tags(setup.resource.tags, _only(setup).tags) == []


def test_downgrade_is_refused_before_any_call(setup: Setup) -> None:
    """Asking for an older Kubernetes version raises a permanent error naming both versions, changing nothing."""
    _create(setup)
    observed = _only(setup)
    older = setup.with_version("1.30")
    setup.calls.reset()
    with pytest.raises(PermanentProviderError, match=r"1\.31.*downgrade.*1\.30"):
        converge(setup.provider, setup.ctx, older, setup.desired(older), observed, ["Version", "tags"])
    assert setup.calls.mutating_calls() == 0


def test_upgrade_of_two_minor_versions_is_refused_before_any_call(setup: Setup) -> None:
    """A jump of two minor versions is refused, naming both versions and the next step."""
    _create(setup)
    observed = _only(setup)
    jump = setup.with_version("1.33")
    setup.calls.reset()
    with pytest.raises(PermanentProviderError, match=r"1\.31.*1\.33.*one minor version at a time.*1\.32"):
        converge(setup.provider, setup.ctx, jump, setup.desired(jump), observed, ["Version"])
    assert setup.calls.mutating_calls() == 0


def test_upgrade_of_one_minor_version_calls_update_cluster_version(setup: Setup) -> None:
    """A +1 minor version calls UpdateClusterVersion; moto lacks it (HTTP 404), mapped to NotFoundError."""
    _create(setup)
    observed = _only(setup)
    upgrade = setup.with_version("1.32")
    setup.calls.reset()
    with pytest.raises(NotFoundError) as raised:
        converge(setup.provider, setup.ctx, upgrade, setup.desired(upgrade), observed, ["Version"])
    assert "UpdateClusterVersion" in str(raised.value)
    assert raised.value.code == "404"
    assert setup.calls.count(service="eks", operation="UpdateClusterVersion") == 1


def test_deleted_cluster_is_no_longer_read_and_deleting_twice_is_fine(setup: Setup) -> None:
    """delete makes read() return nothing; a second delete of the gone cluster succeeds."""
    _create(setup)
    observed = _only(setup)
    setup.provider.delete(setup.ctx, observed)
    assert setup.provider.read(setup.ctx) == []
    setup.provider.delete(setup.ctx, observed)
    assert setup.eks.list_clusters()["clusters"] == []


def test_untagged_cluster_is_released_but_still_exists(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    """untag removes our ownership tags: read() no longer returns it, EKS still has it with the user's tags."""
    fill_eks_tagging_gaps(monkeypatch)  # moto would remove only the first of the four keys
    _create(setup)
    setup.provider.untag(setup.ctx, _only(setup))
    assert setup.provider.read(setup.ctx) == []
    tags = setup.eks.describe_cluster(name=NAME)["cluster"]["tags"]
    assert not set(OWNERSHIP_TAGS) & set(tags)
    assert tags["team"] == "data"


def test_clusters_without_our_managed_by_tag_are_never_read(setup: Setup) -> None:
    """Clusters untagged, or managed by another driftwarden instance, are not ours to read."""
    desired = setup.desired()
    common = {
        "roleArn": desired["RoleArn"],
        "resourcesVpcConfig": {"subnetIds": list(desired["SubnetIds"])},
    }
    setup.eks.create_cluster(name="hand-made", tags={"team": "data"}, **common)
    setup.eks.create_cluster(name="other-instance", tags={TAG_MANAGED_BY: "driftwarden-staging"}, **common)
    assert setup.provider.read(setup.ctx) == []
    _create(setup)
    assert [o.id for o in setup.provider.read(setup.ctx)] == [NAME]
