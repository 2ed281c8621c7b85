"""The `iam.role` provider against moto's server: trust policy, managed and inline policies, tags."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest

from driftwarden.engine.graph import OWNERSHIP_TAGS, TAG_MANAGED_BY, Resource, build_graph
from driftwarden.engine.observe import context_for
from driftwarden.engine.plan import diff_fields, diff_tags, resolve
from driftwarden.errors import NotFoundError, ProviderError
from driftwarden.manifests.validation import validate_documents
from driftwarden.providers.base import Context, Observed, converge
from driftwarden.providers.calls import CountingObserver
from driftwarden.providers.iam_role import IamRole, normalize_policy

ACCOUNT_ID = "111111111111"
REGION = "us-east-1"
MANIFESTS = f"""\
apiVersion: driftwarden/v1
kind: Cluster
metadata: {{name: dev}}
spec:
  account: {{id: "{ACCOUNT_ID}", externalId: ext-dev}}
  tags: {{team: data}}
---
apiVersion: driftwarden/v1
kind: Deployment
metadata: {{name: etl}}
spec:
  cluster: dev
  runtimeVersion: 12.1.0
  workloadIdentity:
    policyArns: ["arn:aws:iam::{ACCOUNT_ID}:policy/etl-read"]
"""
ETL_READ_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}],
}

provider = IamRole()


@pytest.fixture
def resources() -> dict[str, Resource]:
    result = validate_documents([("m.yaml", MANIFESTS.encode())])
    assert result.valid, [str(p) for p in result.errors]
    return {r.key: r for r in build_graph(result.clusters, result.deployments) if r.type == "iam.role"}


@pytest.fixture
def observer() -> CountingObserver:
    return CountingObserver()


@pytest.fixture
def ctx(aws: Any, observer: CountingObserver, resources: dict[str, Resource]) -> Iterator[Context]:
    account = resources["Cluster/dev/iam-role/eks-cluster"].account
    yield context_for(aws.sessions(observer), account, REGION, "driftwarden")


@pytest.fixture
def iam(aws: Any) -> Any:
    """IAM inside the target account, out of band (as a person with the console would)."""
    return aws.account_client(ACCOUNT_ID, "iam")


@pytest.fixture
def workload(iam: Any, resources: dict[str, Resource]) -> Resource:
    """The Deployment's workload role, whose customer managed policy exists in the account."""
    iam.create_policy(PolicyName="etl-read", PolicyDocument=json.dumps(ETL_READ_POLICY))
    return resources["Deployment/etl/iam-role/workload"]


def desired(resource: Resource) -> dict[str, Any]:
    return provider.normalize_desired(resolve(resource.desired, {}))


def create(ctx: Context, resource: Resource) -> Observed:
    return provider.create(ctx, resource, desired(resource))


def read_one(ctx: Context, resource: Resource) -> Observed | None:
    found = [o for o in provider.read(ctx) if o.key == resource.key]
    assert len(found) <= 1
    return found[0] if found else None


def drift(ctx: Context, resource: Resource) -> tuple[Observed, list[str]]:
    observed = read_one(ctx, resource)
    assert observed is not None
    changes = diff_fields(desired(resource), observed.fields, skip=provider.create_only)
    changes += diff_tags(resource.tags, observed.tags)
    return observed, sorted({c.path.split(".")[0] for c in changes})


def test_created_role_reads_back_without_diff_and_a_second_read_changes_nothing(
    aws_managed_policies, ctx, resources, iam, observer
):
    """Create then read gives an empty diff, from one batched call, and reading again mutates nothing."""
    resource = resources["Cluster/dev/iam-role/eks-cluster"]
    created = create(ctx, resource)
    observed = read_one(ctx, resource)
    assert observed is not None
    assert diff_fields(desired(resource), observed.fields, skip=provider.create_only) == []
    assert diff_tags(resource.tags, observed.tags) == []
    assert set(observed.fields) == set(resource.desired)
    assert created.fields == observed.fields
    role = iam.get_role(RoleName=resource.desired["RoleName"])["Role"]
    assert observed.attributes == {"id": role["RoleName"], "Arn": role["Arn"]}
    assert role["Path"] == "/"  # EKS node groups cannot use roles with a path
    attached = iam.list_attached_role_policies(RoleName=role["RoleName"])["AttachedPolicies"]
    assert [p["PolicyArn"] for p in attached] == ["arn:aws:iam::aws:policy/AmazonEKSClusterPolicy"]

    observer.reset()
    provider.read(ctx)
    assert observer.mutating_calls() == 0
    assert observer.count("iam", "GetAccountAuthorizationDetails", "ok") >= 1
    assert observer.count("iam", "GetRole") == 0  # no call per role


def test_read_from_another_region_sees_the_same_global_role(aws, ctx, workload):
    """IAM is global: the once-per-account read finds the role whatever region the context names."""
    resource = workload
    create(ctx, resource)
    elsewhere = context_for(aws.sessions(), resource.account, "eu-west-1", "driftwarden")
    assert [o.key for o in provider.read(elsewhere)] == [resource.key]


def test_policies_in_another_shape_compare_equal():
    """A URL-encoded document with collapsed lists and a lone Statement object equals the list form."""
    listed = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": ["eks.amazonaws.com"]}, "Action": ["sts:AssumeRole"]}
        ],
    }
    collapsed = {
        "Statement": {"Action": "sts:AssumeRole", "Principal": {"Service": "eks.amazonaws.com"}, "Effect": "Allow"},
        "Version": "2012-10-17",
    }
    encoded = urllib.parse.quote(json.dumps(collapsed))
    assert normalize_policy(encoded) == normalize_policy(listed) == normalize_policy(collapsed)
    other = {**listed, "Statement": [{**listed["Statement"][0], "Action": ["sts:AssumeRole", "sts:TagSession"]}]}
    assert normalize_policy(other) != normalize_policy(listed)


def test_an_equivalent_trust_policy_written_differently_is_not_drift(ctx, workload, iam):
    """The same policy with a string for a one-element list, lists reordered, keys moved: no diff."""
    resource = workload
    create(ctx, resource)
    rewritten = {
        "Statement": {"Action": ["sts:TagSession", "sts:AssumeRole"], "Effect": "Allow",
                      "Principal": {"Service": "pods.eks.amazonaws.com"}},
        "Version": "2012-10-17",
    }
    iam.update_assume_role_policy(RoleName=resource.desired["RoleName"], PolicyDocument=json.dumps(rewritten))
    _observed, changed = drift(ctx, resource)
    assert changed == []


def test_trust_policy_edited_out_of_band_is_seen_and_repaired(ctx, workload, iam):
    """A trust policy changed with the IAM API shows as drift and update puts Git's back."""
    resource = workload
    create(ctx, resource)
    name = resource.desired["RoleName"]
    hijacked = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::999999999999:root"},
                       "Action": "sts:AssumeRole"}],
    }
    iam.update_assume_role_policy(RoleName=name, PolicyDocument=json.dumps(hijacked))

    observed, changed = drift(ctx, resource)
    assert changed == ["AssumeRolePolicyDocument"]
    assert observed.fields["AssumeRolePolicyDocument"] == normalize_policy(hijacked)

    repaired = converge(provider, ctx, resource, desired(resource), observed, changed)
    assert diff_fields(desired(resource), repaired.fields) == []
    assert drift(ctx, resource)[1] == []
    trust = iam.get_role(RoleName=name)["Role"]["AssumeRolePolicyDocument"]
    assert normalize_policy(trust)["Statement"][0]["Principal"] == {"Service": ["pods.eks.amazonaws.com"]}


def test_managed_and_inline_policies_changed_out_of_band_are_repaired(ctx, workload, iam):
    """A detached policy is attached again; an extra managed or inline policy is removed."""
    resource = workload
    create(ctx, resource)
    name = resource.desired["RoleName"]
    admin = iam.create_policy(PolicyName="admin", PolicyDocument=json.dumps(ETL_READ_POLICY))["Policy"]["Arn"]
    iam.detach_role_policy(RoleName=name, PolicyArn=f"arn:aws:iam::{ACCOUNT_ID}:policy/etl-read")
    iam.attach_role_policy(RoleName=name, PolicyArn=admin)
    iam.put_role_policy(RoleName=name, PolicyName="backdoor", PolicyDocument=json.dumps(ETL_READ_POLICY))

    observed, changed = drift(ctx, resource)
    assert changed == ["InlinePolicies", "ManagedPolicyArns"]
    assert observed.fields["ManagedPolicyArns"] == (admin,)
    assert list(observed.fields["InlinePolicies"]) == ["backdoor"]

    converge(provider, ctx, resource, desired(resource), observed, changed)
    assert drift(ctx, resource)[1] == []
    attached = {p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]}
    assert attached == set(resource.desired["ManagedPolicyArns"])
    assert iam.list_role_policies(RoleName=name)["PolicyNames"] == []


def test_user_tag_removed_out_of_band_is_put_back_and_foreign_tags_stay(ctx, workload, iam):
    """update(changed=["tags"]) restores our tags without removing tags someone else added."""
    resource = workload
    create(ctx, resource)
    name = resource.desired["RoleName"]
    iam.untag_role(RoleName=name, TagKeys=["team"])
    iam.tag_role(RoleName=name, Tags=[{"Key": "cost-center", "Value": "42"}])

    observed, changed = drift(ctx, resource)
    assert changed == ["tags"]
    converge(provider, ctx, resource, desired(resource), observed, changed)

    tags = {t["Key"]: t["Value"] for t in iam.list_role_tags(RoleName=name)["Tags"]}
    assert tags["team"] == "data"
    assert tags["cost-center"] == "42"
    assert drift(ctx, resource)[1] == []


def test_delete_removes_policies_and_instance_profiles_first_and_twice_is_fine(ctx, workload, iam):
    """A role with policies and an instance profile is deleted; deleting again is not an error."""
    resource = workload
    observed = create(ctx, resource)
    name = resource.desired["RoleName"]
    iam.put_role_policy(RoleName=name, PolicyName="extra", PolicyDocument=json.dumps(ETL_READ_POLICY))
    iam.create_instance_profile(InstanceProfileName="nodes")
    iam.add_role_to_instance_profile(InstanceProfileName="nodes", RoleName=name)

    provider.delete(ctx, observed)
    assert read_one(ctx, resource) is None
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.get_role(RoleName=name)
    assert iam.get_instance_profile(InstanceProfileName="nodes")["InstanceProfile"]["Roles"] == []
    provider.delete(ctx, observed)


def test_untag_releases_the_role_but_keeps_it(ctx, workload, iam):
    """After untag the role is no longer read as ours, yet it exists with its user tags."""
    resource = workload
    observed = create(ctx, resource)
    provider.untag(ctx, observed)

    assert read_one(ctx, resource) is None
    tags = {t["Key"]: t["Value"] for t in iam.list_role_tags(RoleName=observed.id)["Tags"]}
    assert not set(OWNERSHIP_TAGS) & set(tags)
    assert tags["team"] == "data"


def test_roles_without_our_managed_by_tag_are_never_read(ctx, resources, iam):
    """Roles of nobody, or of another driftwarden instance, are invisible to this instance."""
    trust = json.dumps(normalize_policy(resources["Cluster/dev/iam-role/eks-cluster"].desired["AssumeRolePolicyDocument"]))
    iam.create_role(RoleName="someone-elses", AssumeRolePolicyDocument=trust)
    iam.create_role(RoleName="other-instance", AssumeRolePolicyDocument=trust,
                    Tags=[{"Key": TAG_MANAGED_BY, "Value": "driftwarden-staging"},
                          {"Key": "driftwarden:owner", "Value": "Cluster/dev"},
                          {"Key": "driftwarden:component", "Value": "iam-role/eks-cluster"}])
    iam.create_role(RoleName="mentions-us", AssumeRolePolicyDocument=trust,
                    Tags=[{"Key": "note", "Value": "driftwarden"}])
    assert provider.read(ctx) == []


def test_create_retried_after_a_crash_finishes_the_same_role(ctx, workload, iam):
    """A second create of a role that exists with our tags converges it instead of failing."""
    resource = workload
    create(ctx, resource)
    name = resource.desired["RoleName"]
    # As if the first create died after CreateRole, before attaching its policy.
    iam.detach_role_policy(RoleName=name, PolicyArn=f"arn:aws:iam::{ACCOUNT_ID}:policy/etl-read")

    again = create(ctx, resource)
    assert diff_fields(desired(resource), again.fields) == []
    assert [o.id for o in provider.read(ctx)] == [name]


def test_create_never_takes_over_someone_elses_role_of_the_same_name(ctx, resources, iam):
    """A name taken by a role without our tags is an error and that role is left untouched."""
    resource = resources["Cluster/dev/iam-role/eks-cluster"]
    name = resource.desired["RoleName"]
    foreign_trust = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
    iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(foreign_trust))

    with pytest.raises(ProviderError) as raised:
        create(ctx, resource)
    assert raised.value.code == "EntityAlreadyExists"
    assert not isinstance(raised.value, NotFoundError)
    role = iam.get_role(RoleName=name)["Role"]
    assert normalize_policy(role["AssumeRolePolicyDocument"]) == normalize_policy(foreign_trust)
    assert iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"] == []
    assert role.get("Tags", []) == []
