"""The resource graph: the AWS footprint of each manifest kind, computed without AWS."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from driftwarden.engine.graph import (
    TAG_COMPONENT,
    TAG_DELETION_POLICY,
    TAG_MANAGED_BY,
    TAG_OWNER,
    Ref,
    build_graph,
    carve_subnets,
    nodegroup_name,
)
from driftwarden.manifests.validation import validate_paths
from driftwarden.providers.registry import default_providers

CLUSTER = """\
apiVersion: driftwarden/v1
kind: Cluster
metadata: {{name: {name}}}
spec:
  account: {{id: "{account}", externalId: ext-{name}}}
{extra}
"""

DEPLOYMENT = """\
apiVersion: driftwarden/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  cluster: {cluster}
  runtimeVersion: 12.1.0
{extra}
"""


def load(tmp_path: Path, *documents: str):
    (tmp_path / "m.yaml").write_text("---\n".join(documents))
    result = validate_paths([tmp_path])
    assert result.valid, [str(p) for p in result.errors]
    return result


def by_component(resources, owner):
    return {r.component: r for r in resources if r.owner == owner}


def test_subnets_are_carved_as_astro_does_for_a_slash_20():
    """A /20 gives a private /21 and /22 and two public /26 subnets, without overlap."""
    assert carve_subnets("172.20.0.0/20") == {
        "private-a": "172.20.0.0/21",
        "private-b": "172.20.8.0/22",
        "public-a": "172.20.12.0/26",
        "public-b": "172.20.12.64/26",
    }


@pytest.mark.parametrize("cidr", ["10.0.0.0/16", "10.8.0.0/17", "192.168.0.0/18", "172.16.0.0/19", "172.20.0.0/20"])
def test_carved_subnets_stay_inside_the_range_and_never_overlap(cidr):
    """For every allowed prefix the four subnets are disjoint and inside the VPC range."""
    import ipaddress

    vpc = ipaddress.ip_network(cidr)
    parts = [ipaddress.ip_network(c) for c in carve_subnets(cidr).values()]
    assert all(p.subnet_of(vpc) for p in parts)
    assert not any(a.overlaps(b) for i, a in enumerate(parts) for b in parts[i + 1 :])


def test_default_cluster_has_the_whole_footprint(tmp_path):
    """A defaults-only Cluster yields VPC, 4 subnets, IGW, 2 EIP+NAT, 3 route tables, SG, 2 roles, EKS, 1 node group, DB subnet group and RDS."""
    result = load(tmp_path, CLUSTER.format(name="dev", account="111111111111", extra=""))
    resources = build_graph(result.clusters, result.deployments)
    parts = by_component(resources, "Cluster/dev")
    assert sorted(parts) == sorted(
        [
            "vpc",
            "subnet/private-a",
            "subnet/private-b",
            "subnet/public-a",
            "subnet/public-b",
            "internet-gateway",
            "elastic-ip/nat-a",
            "elastic-ip/nat-b",
            "nat-gateway/a",
            "nat-gateway/b",
            "route-table/public",
            "route-table/private-a",
            "route-table/private-b",
            "security-group/cluster",
            "iam-role/eks-cluster",
            "iam-role/eks-node",
            "eks-cluster",
            "nodegroup/default",
            "db-subnet-group",
            "db-instance",
        ]
    )
    assert parts["vpc"].desired["CidrBlock"] == "172.20.0.0/20"
    assert parts["subnet/private-a"].desired["AvailabilityZone"] == "us-east-1a"
    assert parts["subnet/private-b"].desired["AvailabilityZone"] == "us-east-1b"
    assert parts["nodegroup/default"].desired["ScalingConfig"] == {"minSize": 2, "maxSize": 20}
    assert parts["nodegroup/default"].desired["InstanceTypes"] == ("m5.xlarge",)
    rds = parts["db-instance"].desired
    assert (rds["DBInstanceClass"], rds["MultiAZ"], rds["StorageEncrypted"], rds["DeletionProtection"]) == (
        "db.m6g.large",
        True,
        True,
        True,
    )
    assert parts["eks-cluster"].desired["SubnetIds"] == (
        Ref("Cluster/dev/subnet/private-a"),
        Ref("Cluster/dev/subnet/private-b"),
    )


def test_single_nat_gateway_serves_both_private_route_tables(tmp_path):
    """natGateways: single creates one EIP and NAT, and both private routes go through it."""
    result = load(tmp_path, CLUSTER.format(name="dev", account="111111111111", extra="  natGateways: single"))
    parts = by_component(build_graph(result.clusters, []), "Cluster/dev")
    assert "nat-gateway/b" not in parts and "elastic-ip/nat-b" not in parts
    for letter in "ab":
        (route,) = parts[f"route-table/private-{letter}"].desired["Routes"]
        assert route["NatGatewayId"] == Ref("Cluster/dev/nat-gateway/a")


def test_static_placement_creates_no_network(tmp_path):
    """With network: the cluster uses the given VPC and subnets and creates none of its own."""
    extra = (
        "  network:\n    vpcId: vpc-0123456789abcdef0\n"
        "    privateSubnetIds: [subnet-0123456789abcdef0, subnet-0123456789abcdef1]\n"
        "    publicSubnetIds: [subnet-0123456789abcdef2, subnet-0123456789abcdef3]"
    )
    result = load(tmp_path, CLUSTER.format(name="static", account="111111111111", extra=extra))
    parts = by_component(build_graph(result.clusters, []), "Cluster/static")
    assert not [c for c in parts if c.startswith(("vpc", "subnet", "nat", "elastic-ip", "route-table", "internet"))]
    assert parts["eks-cluster"].desired["SubnetIds"] == ("subnet-0123456789abcdef0", "subnet-0123456789abcdef1")
    assert parts["security-group/cluster"].desired["VpcId"] == "vpc-0123456789abcdef0"


def test_every_resource_carries_ownership_tags_and_user_tags(tmp_path):
    """Each resource is tagged with managed-by, owner, component, deletion policy and the cluster's tags."""
    result = load(
        tmp_path,
        CLUSTER.format(name="dev", account="111111111111", extra="  tags: {team: data}\n  deletionPolicy: Delete"),
        DEPLOYMENT.format(name="etl", cluster="dev", extra=""),
    )
    for resource in build_graph(result.clusters, result.deployments):
        assert resource.tags[TAG_MANAGED_BY] == "driftwarden"
        assert resource.tags[TAG_OWNER] == resource.owner
        assert resource.tags[TAG_COMPONENT] == resource.component
        assert resource.tags["team"] == "data"
    deployment = [r for r in build_graph(result.clusters, result.deployments) if r.owner == "Deployment/etl"]
    assert {r.tags[TAG_DELETION_POLICY] for r in deployment} == {"Retain"}


def test_keys_are_unique_and_dependencies_exist(tmp_path):
    """No two resources share a key, and every dependency names a resource of the graph."""
    result = load(
        tmp_path,
        CLUSTER.format(name="a", account="111111111111", extra=""),
        CLUSTER.format(name="b", account="222222222222", extra="  region: eu-west-1"),
        DEPLOYMENT.format(name="x", cluster="a", extra=""),
        DEPLOYMENT.format(name="y", cluster="b", extra="  executor: KUBERNETES"),
    )
    resources = build_graph(result.clusters, result.deployments)
    keys = [r.key for r in resources]
    assert len(keys) == len(set(keys))
    assert all(dep in set(keys) for r in resources for dep in r.depends_on)
    providers = default_providers()
    assert {r.type for r in resources} <= set(providers)
    # The declared creation order puts every dependency's type no later than its dependant's.
    rank = {type_: i for i, type_ in enumerate(providers.type_order)}
    by_key = {r.key: r for r in resources}
    assert all(rank[by_key[dep].type] <= rank[r.type] for r in resources for dep in r.depends_on)


def test_deployment_footprint_and_rendered_configuration_without_secret_values(tmp_path):
    """A Deployment gets a workload role, a secret for secret variables, and an SSM parameter with no secret values."""
    extra = """\
  environmentVariables:
    - {key: LOG_LEVEL, value: INFO}
    - key: DB_PASSWORD
      isSecret: true
      valueFrom: {env: ETL_DB_PASSWORD}
"""
    result = load(
        tmp_path,
        CLUSTER.format(name="dev", account="111111111111", extra=""),
        DEPLOYMENT.format(name="etl", cluster="dev", extra=extra),
    )
    parts = by_component(build_graph(result.clusters, result.deployments), "Deployment/etl")
    assert sorted(parts) == ["iam-role/workload", "secret/environment", "ssm-parameter/configuration"]
    assert parts["secret/environment"].desired["Keys"] == ("DB_PASSWORD",)
    assert "ETL_DB_PASSWORD" not in json.dumps(parts["secret/environment"].desired)
    config = json.loads(parts["ssm-parameter/configuration"].desired["Value"])
    assert config["executor"] == "CELERY"
    assert config["environmentVariables"] == {"LOG_LEVEL": "INFO"}
    assert config["secretVariables"] == ["DB_PASSWORD"]
    assert config["workerQueues"][0]["workerType"] == "m5.xlarge"
    trust = parts["iam-role/workload"].desired["AssumeRolePolicyDocument"]
    assert trust["Statement"][0]["Principal"] == {"Service": "pods.eks.amazonaws.com"}


def test_existing_workload_role_means_no_role_is_created(tmp_path):
    """workloadIdentity.roleArn uses that role instead of creating one."""
    extra = "  workloadIdentity: {roleArn: 'arn:aws:iam::111111111111:role/existing'}"
    result = load(
        tmp_path,
        CLUSTER.format(name="dev", account="111111111111", extra=""),
        DEPLOYMENT.format(name="etl", cluster="dev", extra=extra),
    )
    parts = by_component(build_graph(result.clusters, result.deployments), "Deployment/etl")
    assert "iam-role/workload" not in parts


def test_node_group_name_changes_with_instance_type_only():
    """A node group's physical name is stable for a pool and changes when its instance type does."""
    assert nodegroup_name("default", "m5.xlarge") == nodegroup_name("default", "m5.xlarge")
    assert nodegroup_name("default", "m5.xlarge") != nodegroup_name("default", "m5.2xlarge")
    assert nodegroup_name("default", "m5.xlarge").startswith("default-")
