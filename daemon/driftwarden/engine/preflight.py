"""Checks before a cluster is created: can this account and region hold it at all?

Run only for clusters whose EKS cluster does not exist yet (creating the network first and
then failing on EKS would leave half a cluster behind). Each check answers with errors (the
cluster is not created) or warnings (go on, but say so):

* the region is enabled — af-south-1, ap-east-1 and me-south-1 are opt-in regions;
* the EC2 quotas L-1216C47A (running On-Demand standard instances) and L-34B43A08 (standard
  Spot requests) are at least 40 vCPUs (the Astro Hybrid prerequisite); when the Service Quotas
  API cannot answer (permissions, or a simulated AWS), warn and go on;
* every node pool's instance type is offered in the region;
* with static placement, the given VPC and subnets exist.

What it must not do: change anything in AWS.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from driftwarden.manifests.model import OPT_IN_REGIONS, Cluster
from driftwarden.providers.aws import as_provider_error

MINIMUM_QUOTAS = {
    "L-1216C47A": "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances",
    "L-34B43A08": "All Standard (A, C, D, H, I, M, R, T, Z) Spot Instance Requests",
}
MINIMUM_QUOTA_VALUE = 40.0

# The IAM actions the checks call, for `driftwarden iam-policy`.
PERMISSIONS = (
    "ec2:DescribeRegions",
    "ec2:DescribeInstanceTypeOfferings",
    "ec2:DescribeSubnets",
    "ec2:DescribeVpcs",
    "servicequotas:GetServiceQuota",
)


@dataclass
class PreflightResult:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def check_cluster(cluster: Cluster, client: Callable[[str], Any]) -> PreflightResult:
    """All checks for one cluster; `client(service)` gives clients in its account and region."""
    result = PreflightResult()
    if not _region_enabled(cluster, client, result):
        return result  # nothing else can be asked of a disabled region
    _check_quotas(client, result)
    _check_instance_types(cluster, client, result)
    if cluster.network is not None:
        _check_static_network(cluster, client, result)
    return result


def _call(result: PreflightResult, what: str, service: str, function: Callable[[], Any]) -> Any:
    """Run one read; an AWS error becomes a warning (the check could not be made)."""
    try:
        return function()
    except Exception as exc:
        error = as_provider_error(exc, service=service)
        if error is None:
            raise
        result.warnings.append(f"could not check {what}: {error}")
        return None


def _region_enabled(cluster: Cluster, client: Callable[[str], Any], result: PreflightResult) -> bool:
    if cluster.region not in OPT_IN_REGIONS:
        return True
    answer = _call(
        result,
        f"whether opt-in region {cluster.region} is enabled",
        "ec2",
        lambda: client("ec2").describe_regions(
            AllRegions=True, Filters=[{"Name": "region-name", "Values": [cluster.region]}]
        ),
    )
    if answer is None:
        return True
    statuses = [r.get("OptInStatus", "opt-in-not-required") for r in answer.get("Regions", [])]
    if not statuses or statuses[0] == "not-opted-in":
        result.errors.append(
            f"{cluster.region} is an opt-in region that is not enabled in account {cluster.account.id}; "
            "enable it (AWS console: Account > AWS Regions) before creating the cluster"
        )
        return False
    return True


def _quota(client: Callable[[str], Any], code: str) -> Any:
    return client("service-quotas").get_service_quota(ServiceCode="ec2", QuotaCode=code)


def _check_quotas(client: Callable[[str], Any], result: PreflightResult) -> None:
    for code, name in MINIMUM_QUOTAS.items():
        answer = _call(
            result,
            f"EC2 quota {code} ({name})",
            "service-quotas",
            functools.partial(_quota, client, code),
        )
        if answer is None:
            continue
        value = float(answer.get("Quota", {}).get("Value", 0))
        if value < MINIMUM_QUOTA_VALUE:
            result.errors.append(
                f"EC2 quota {code} ({name}) is {value:g}; at least {MINIMUM_QUOTA_VALUE:g} is needed — "
                "request an increase in Service Quotas"
            )


def _check_instance_types(cluster: Cluster, client: Callable[[str], Any], result: PreflightResult) -> None:
    wanted = sorted({pool.node_instance_type for pool in cluster.node_pools})
    answer = _call(
        result,
        "instance type offerings",
        "ec2",
        lambda: client("ec2").describe_instance_type_offerings(
            LocationType="region", Filters=[{"Name": "instance-type", "Values": wanted}]
        ),
    )
    if answer is None:
        return
    offered = {o["InstanceType"] for o in answer.get("InstanceTypeOfferings", [])}
    for instance_type in wanted:
        if instance_type not in offered:
            pools = ", ".join(p.name for p in cluster.node_pools if p.node_instance_type == instance_type)
            result.errors.append(f"instance type {instance_type} (node pool {pools}) is not offered in {cluster.region}")


def _check_static_network(cluster: Cluster, client: Callable[[str], Any], result: PreflightResult) -> None:
    network = cluster.network
    assert network is not None
    subnet_ids = [*network.private_subnet_ids, *network.public_subnet_ids]
    answer = _call(
        result,
        "the static placement subnets",
        "ec2",
        lambda: client("ec2").describe_subnets(Filters=[{"Name": "subnet-id", "Values": subnet_ids}]),
    )
    if answer is None:
        return
    found = {s["SubnetId"]: s for s in answer.get("Subnets", [])}
    for subnet_id in subnet_ids:
        if subnet_id not in found:
            result.errors.append(f"static placement subnet {subnet_id} does not exist in {cluster.region}")
        elif found[subnet_id].get("VpcId") != network.vpc_id:
            result.errors.append(f"static placement subnet {subnet_id} is not in VPC {network.vpc_id}")
    vpcs = _call(
        result,
        "the static placement VPC",
        "ec2",
        lambda: client("ec2").describe_vpcs(Filters=[{"Name": "vpc-id", "Values": [network.vpc_id]}]),
    )
    if vpcs is not None and not vpcs.get("Vpcs"):
        result.errors.append(f"static placement VPC {network.vpc_id} does not exist in {cluster.region}")
