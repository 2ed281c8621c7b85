"""Pure: desired objects (Clusters, Deployments) -> the AWS resources they stand for.

Each `Resource` has a stable key (`Cluster/prod-euw1/subnet/private-a`), the object that owns
it, the account and region it lives in, its dependencies, the fields driftwarden manages
(`desired`), and the ownership tags that let a later run find it again without any state
file. Values that are only known once another resource exists (a VPC id, a role ARN) are
`Ref`s, resolved at plan or apply time from what AWS reports.

This is the AWS footprint of PRODUCT.md in code. It makes no AWS calls and reads no files, so
it is tested exhaustively without AWS.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from driftwarden.manifests.model import Account, Cluster, Deployment, FrozenMap

DEFAULT_INSTANCE = "driftwarden"

TAG_MANAGED_BY = "driftwarden:managed-by"
TAG_OWNER = "driftwarden:owner"
TAG_COMPONENT = "driftwarden:component"
# Recorded on the resource because prune runs after the manifest that said it is gone.
TAG_DELETION_POLICY = "driftwarden:deletion-policy"
# On resources of warn-only objects (`driftwarden/drift: warn`): a digest of what Git wanted when
# driftwarden last wrote the resource. A difference under the same digest is drift (reported,
# left alone); a new digest means Git changed, and the change is applied (`with_desired_hash`).
TAG_DESIRED_HASH = "driftwarden:desired-hash"
OWNERSHIP_TAGS = (TAG_MANAGED_BY, TAG_OWNER, TAG_COMPONENT, TAG_DELETION_POLICY, TAG_DESIRED_HASH)

# AWS managed policies the EKS control plane and nodes need (EKS user guide).
EKS_CLUSTER_POLICIES = ("arn:aws:iam::aws:policy/AmazonEKSClusterPolicy",)
EKS_NODE_POLICIES = (
    "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy",
    "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy",
    "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
)


@dataclass(frozen=True)
class Ref:
    """A value taken from another resource once it exists (its id, ARN or name)."""

    key: str
    attribute: str = "id"


@dataclass(frozen=True)
class Resource:
    """One AWS resource as Git wants it."""

    key: str
    type: str
    owner: str
    component: str
    account: Account
    region: str
    desired: Mapping[str, Any]
    tags: FrozenMap
    depends_on: tuple[str, ...] = ()
    deletion_policy: str = "Retain"
    # Resources of suspended objects are observed but never changed.
    suspended: bool = False
    drift_mode: str = "enforce"
    # Secret inputs resolved only at apply time; never part of `desired` or plan output.
    secret_inputs: Mapping[str, Any] = field(default_factory=dict)

    @property
    def place(self) -> tuple[str, str]:
        return (self.account.id, self.region)


def ownership_tags(
    instance: str, owner: str, component: str, user_tags: Mapping[str, str], deletion_policy: str = "Retain"
) -> FrozenMap:
    return FrozenMap(
        {
            **user_tags,
            TAG_MANAGED_BY: instance,
            TAG_OWNER: owner,
            TAG_COMPONENT: component,
            TAG_DELETION_POLICY: deletion_policy,
        }
    )


def carve_subnets(cidr: str) -> dict[str, str]:
    """Split a /16../20 VPC range into two private and two public subnets.

    For a /20: private /21 and /22, public two /26 — the Astro Hybrid layout. Larger ranges
    scale the same way (each part keeps its share of the range): private halves get the first
    half and the next quarter, public subnets sit at the start of the last quarter, each 1/64
    of the range.
    """
    network = ipaddress.ip_network(cidr)
    prefix = network.prefixlen
    first_half, second_half = network.subnets(new_prefix=prefix + 1)
    third_quarter, last_quarter = second_half.subnets(new_prefix=prefix + 2)
    public = list(last_quarter.subnets(new_prefix=prefix + 6))
    return {
        "private-a": str(first_half),
        "private-b": str(third_quarter),
        "public-a": str(public[0]),
        "public-b": str(public[1]),
    }


def physical_name(*parts: str, limit: int = 63) -> str:
    """A deterministic AWS name from our names; hashed when it would be too long."""
    name = "-".join(parts)
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: limit - 9]}-{digest}"


def nodegroup_name(pool_name: str, instance_type: str) -> str:
    """Node group names carry the instance type's digest: a new type means a new group (blue/green)."""
    digest = hashlib.sha256(instance_type.encode()).hexdigest()[:6]
    return physical_name(pool_name, digest)


def trust_policy(service: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
    }


def pod_identity_trust_policy() -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "pods.eks.amazonaws.com"},
                "Action": ["sts:AssumeRole", "sts:TagSession"],
            }
        ],
    }


class _Builder:
    def __init__(self, instance: str, owner: str, account: Account, region: str, user_tags: Mapping[str, str],
                 deletion_policy: str, suspended: bool, drift_mode: str) -> None:
        self.instance = instance
        self.owner = owner
        self.account = account
        self.region = region
        self.user_tags = user_tags
        self.deletion_policy = deletion_policy
        self.suspended = suspended
        self.drift_mode = drift_mode
        self.resources: list[Resource] = []

    def key(self, component: str) -> str:
        return f"{self.owner}/{component}"

    def add(self, type_: str, component: str, desired: Mapping[str, Any], depends_on: Iterable[str] = (),
            secret_inputs: Mapping[str, Any] | None = None) -> str:
        key = self.key(component)
        self.resources.append(
            Resource(
                key=key,
                type=type_,
                owner=self.owner,
                component=component,
                account=self.account,
                region=self.region,
                desired=desired,
                tags=ownership_tags(self.instance, self.owner, component, self.user_tags, self.deletion_policy),
                depends_on=tuple(self.key(d) for d in depends_on),
                deletion_policy=self.deletion_policy,
                suspended=self.suspended,
                drift_mode=self.drift_mode,
                secret_inputs=secret_inputs or {},
            )
        )
        return key


def cluster_resources(cluster: Cluster, instance: str = DEFAULT_INSTANCE) -> list[Resource]:
    """The AWS footprint of one Cluster, in dependency order."""
    owner = f"Cluster/{cluster.name}"
    b = _Builder(instance, owner, cluster.account, cluster.region, cluster.tags, cluster.deletion_policy,
                 cluster.metadata.suspended, cluster.metadata.drift_mode)
    zones = cluster.availability_zones
    letters = ("a", "b")
    if cluster.network is None:
        vpc = b.add("ec2.vpc", "vpc", {"CidrBlock": cluster.vpc_subnet_range, "EnableDnsSupport": True,
                                        "EnableDnsHostnames": True})
        subnets = carve_subnets(cluster.vpc_subnet_range)
        for tier in ("private", "public"):
            for letter, zone in zip(letters, zones, strict=True):
                name = f"{tier}-{letter}"
                b.add("ec2.subnet", f"subnet/{name}", {
                    "VpcId": Ref(vpc), "CidrBlock": subnets[name], "AvailabilityZone": zone,
                    "MapPublicIpOnLaunch": tier == "public",
                    # Tags the AWS load balancer controller uses to find subnets.
                    "RoleTag": "kubernetes.io/role/internal-elb" if tier == "private" else "kubernetes.io/role/elb",
                }, ["vpc"])
        b.add("ec2.internet-gateway", "internet-gateway", {"VpcId": Ref(vpc)}, ["vpc"])
        nat_letters = letters if cluster.nat_gateways == "perAz" else letters[:1]
        for letter in nat_letters:
            b.add("ec2.elastic-ip", f"elastic-ip/nat-{letter}", {"Domain": "vpc"})
            b.add("ec2.nat-gateway", f"nat-gateway/{letter}", {
                "SubnetId": Ref(b.key(f"subnet/public-{letter}")),
                "AllocationId": Ref(b.key(f"elastic-ip/nat-{letter}"), "AllocationId"),
            }, [f"subnet/public-{letter}", f"elastic-ip/nat-{letter}", "internet-gateway"])
        b.add("ec2.route-table", "route-table/public", {
            "VpcId": Ref(vpc),
            "Routes": ({"DestinationCidrBlock": "0.0.0.0/0", "GatewayId": Ref(b.key("internet-gateway"))},),
            "SubnetIds": tuple(Ref(b.key(f"subnet/public-{letter}")) for letter in letters),
        }, ["vpc", "internet-gateway", "subnet/public-a", "subnet/public-b"])
        for letter in letters:
            nat = letter if letter in nat_letters else nat_letters[0]
            b.add("ec2.route-table", f"route-table/private-{letter}", {
                "VpcId": Ref(vpc),
                "Routes": ({"DestinationCidrBlock": "0.0.0.0/0", "NatGatewayId": Ref(b.key(f"nat-gateway/{nat}"))},),
                "SubnetIds": (Ref(b.key(f"subnet/private-{letter}")),),
            }, ["vpc", f"nat-gateway/{nat}", f"subnet/private-{letter}"])
        vpc_id: Any = Ref(vpc)
        private_subnets: tuple[Any, ...] = tuple(Ref(b.key(f"subnet/private-{letter}")) for letter in letters)
        network_deps = ["vpc", "subnet/private-a", "subnet/private-b"]
    else:
        vpc_id = cluster.network.vpc_id
        private_subnets = cluster.network.private_subnet_ids
        network_deps = []
    b.add("ec2.security-group", "security-group/cluster", {
        "VpcId": vpc_id,
        "GroupName": physical_name("driftwarden", cluster.name, "cluster"),
        "Description": f"driftwarden cluster {cluster.name}: EKS, nodes and the metadata database",
        # Members of the group may talk to each other on every port; nothing else may enter.
        "IngressSelf": True,
    }, network_deps[:1])
    b.add("iam.role", "iam-role/eks-cluster", {
        "RoleName": physical_name("driftwarden", cluster.name, "eks-cluster", limit=64),
        "AssumeRolePolicyDocument": trust_policy("eks.amazonaws.com"),
        "ManagedPolicyArns": EKS_CLUSTER_POLICIES,
        "InlinePolicies": {},
    })
    b.add("iam.role", "iam-role/eks-node", {
        "RoleName": physical_name("driftwarden", cluster.name, "eks-node", limit=64),
        "AssumeRolePolicyDocument": trust_policy("ec2.amazonaws.com"),
        "ManagedPolicyArns": EKS_NODE_POLICIES,
        "InlinePolicies": {},
    })
    b.add("eks.cluster", "eks-cluster", {
        "Name": cluster.name,
        "Version": cluster.kubernetes_version,
        "RoleArn": Ref(b.key("iam-role/eks-cluster"), "Arn"),
        "SubnetIds": private_subnets,
        "SecurityGroupIds": (Ref(b.key("security-group/cluster")),),
    }, [*network_deps, "iam-role/eks-cluster", "security-group/cluster"])
    for pool in cluster.node_pools:
        b.add("eks.nodegroup", f"nodegroup/{pool.name}", {
            "ClusterName": cluster.name,
            "NodegroupName": nodegroup_name(pool.name, pool.node_instance_type),
            "NodeRole": Ref(b.key("iam-role/eks-node"), "Arn"),
            "Subnets": private_subnets,
            "InstanceTypes": (pool.node_instance_type,),
            "CapacityType": pool.capacity_type,
            "ScalingConfig": {"minSize": pool.min_node_count, "maxSize": pool.max_node_count},
            "Labels": dict(pool.labels),
            "Taints": tuple({"key": t.key, "value": t.value, "effect": t.effect} for t in pool.taints),
        }, ["eks-cluster", "iam-role/eks-node", *network_deps])
    b.add("rds.db-subnet-group", "db-subnet-group", {
        "DBSubnetGroupName": physical_name("driftwarden", cluster.name),
        "DBSubnetGroupDescription": f"driftwarden cluster {cluster.name}: Airflow metadata database",
        "SubnetIds": private_subnets,
    }, network_deps)
    b.add("rds.db-instance", "db-instance", {
        "DBInstanceIdentifier": physical_name("driftwarden", cluster.name),
        "Engine": "postgres",
        "EngineVersion": cluster.database.engine_version,
        "DBInstanceClass": cluster.db_instance_type,
        "AllocatedStorage": cluster.database.allocated_storage_gib,
        "MultiAZ": cluster.database.multi_az,
        "StorageEncrypted": True,
        "DeletionProtection": cluster.database.deletion_protection,
        "DBSubnetGroupName": Ref(b.key("db-subnet-group"), "DBSubnetGroupName"),
        "VpcSecurityGroupIds": (Ref(b.key("security-group/cluster")),),
        "MasterUsername": "airflow",
    }, ["db-subnet-group", "security-group/cluster"])
    return b.resources


def render_deployment_config(deployment: Deployment) -> dict[str, Any]:
    """The configuration in-cluster delivery tooling reads from SSM; no secret values."""
    return {
        "apiVersion": "driftwarden/v1",
        "deployment": deployment.name,
        "cluster": deployment.cluster,
        "workspace": deployment.workspace,
        "description": deployment.description,
        "runtimeVersion": deployment.runtime_version,
        "executor": deployment.executor,
        "scheduler": {
            "au": deployment.scheduler.au,
            "replicas": deployment.scheduler.replicas,
            "cpu": deployment.scheduler.cpu,
            "memoryGiB": deployment.scheduler.memory_gib,
        },
        "workerQueues": [
            {
                "name": q.name,
                "workerType": q.worker_type,
                "minWorkerCount": q.min_worker_count,
                "maxWorkerCount": q.max_worker_count,
                "workerConcurrency": q.worker_concurrency,
            }
            for q in deployment.worker_queues
        ],
        "taskPodNodePool": deployment.task_pod_node_pool,
        "environmentVariables": {v.key: v.value for v in deployment.environment_variables if not v.is_secret},
        "secretVariables": sorted(v.key for v in deployment.environment_variables if v.is_secret),
        "alertEmails": list(deployment.alert_emails),
        "dagDeployEnabled": deployment.dag_deploy_enabled,
        "ciCdEnforced": deployment.ci_cd_enforced,
    }


def deployment_resources(deployment: Deployment, cluster: Cluster, instance: str = DEFAULT_INSTANCE) -> list[Resource]:
    """The AWS footprint of one Deployment, in its cluster's account and region."""
    owner = f"Deployment/{deployment.name}"
    b = _Builder(instance, owner, cluster.account, cluster.region, cluster.tags, deployment.deletion_policy,
                 deployment.metadata.suspended, deployment.metadata.drift_mode)
    if deployment.workload_identity.role_arn is None:
        b.add("iam.role", "iam-role/workload", {
            "RoleName": physical_name("driftwarden", cluster.name, deployment.name, limit=64),
            "AssumeRolePolicyDocument": pod_identity_trust_policy(),
            "ManagedPolicyArns": tuple(sorted(deployment.workload_identity.policy_arns)),
            "InlinePolicies": {},
        })
    secrets = {v.key: v.secret for v in deployment.environment_variables if v.secret is not None}
    if secrets:
        b.add("secretsmanager.secret", "secret/environment", {
            "Name": f"driftwarden/{cluster.name}/{deployment.name}/environment",
            "Description": f"Secret environment variables of deployment {deployment.name}",
            # The keys are not secret; the values are resolved at apply time only.
            "Keys": tuple(sorted(secrets)),
        }, secret_inputs=secrets)
    b.add("ssm.parameter", "ssm-parameter/configuration", {
        "Name": f"/driftwarden/{cluster.name}/{deployment.name}/configuration",
        "Type": "String",
        "Tier": "Standard",
        "Value": json.dumps(render_deployment_config(deployment), sort_keys=True, separators=(",", ":")),
    })
    return b.resources


def build_graph(clusters: Iterable[Cluster], deployments: Iterable[Deployment],
                instance: str = DEFAULT_INSTANCE) -> list[Resource]:
    """Every resource of every object; keys are unique."""
    by_name = {c.name: c for c in clusters}
    resources: list[Resource] = []
    for cluster in by_name.values():
        resources.extend(cluster_resources(cluster, instance))
    for deployment in deployments:
        resources.extend(deployment_resources(deployment, by_name[deployment.cluster], instance))
    return resources


def desired_digest(resource: Resource) -> str:
    """A digest of everything Git says about `resource`: type, desired fields and tags.

    Dependencies enter as their `Ref` (key and attribute), not as the ids AWS gave them, so the
    digest changes only when Git (or a secret's source value) changes.
    """
    tags = {k: v for k, v in resource.tags.items() if k != TAG_DESIRED_HASH}
    document = {"type": resource.type, "desired": resource.desired, "tags": tags}
    encoded = json.dumps(document, sort_keys=True, separators=(",", ":"), default=_digestible)
    return hashlib.sha256(encoded.encode()).hexdigest()[:32]


def _digestible(value: Any) -> Any:
    if isinstance(value, Ref):
        return {"$ref": value.key, "attribute": value.attribute}
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    raise TypeError(f"cannot digest {type(value).__name__}")


def with_desired_hash(resource: Resource) -> Resource:
    """`resource` with its `TAG_DESIRED_HASH` when its object is warn-only; unchanged otherwise.

    Only warn-only objects need to tell a change in Git from drift: enforced ones repair both
    alike. Like Argo CD's automated sync without self-heal, a change in Git is applied in full,
    so fields changed by hand are brought back to Git at the same time.
    """
    if resource.drift_mode != "warn":
        return resource
    tags = FrozenMap({**resource.tags, TAG_DESIRED_HASH: desired_digest(resource)})
    return dataclasses.replace(resource, tags=tags)
