"""The cluster subnets (`ec2.subnet`): placement, public-IP mapping and the load-balancer role tag.

Owns: creating a subnet in its VPC and availability zone with our tags plus the Kubernetes
role tag the AWS load balancer controller looks for (`kubernetes.io/role/elb` on public
subnets, `kubernetes.io/role/internal-elb` on private ones), keeping `MapPublicIpOnLaunch` and
that role tag as Git says, deleting and releasing it. Where a subnet sits (VPC, zone, range)
never changes in place: a difference is a plan error.

The role tag is managed as the field `RoleTag` (which of the two tags is present), not as one of
the resource's tags, so that removing it out of band shows as drift on `RoleTag` and a subnet
carrying the wrong role is corrected.

What it must not do: delete what runs in the subnet (network interfaces of nodes, load
balancers): the engine deletes dependants first and AWS refuses otherwise.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from driftwarden.engine.graph import Resource
from driftwarden.providers import tag_styles
from driftwarden.providers.base import Context, Enumeration, Observed, TypeInfo, tag_map
from driftwarden.providers.ec2 import (
    SERVICE,
    Ec2Provider,
    absent,
    status_of,
    tag_specifications,
)

ROLE_TAGS = ("kubernetes.io/role/elb", "kubernetes.io/role/internal-elb")
# The AWS load balancer controller accepts "1" or an empty value.
_ROLE_TAG_ON = "1"


# Released subnets keep their role tag: load balancers of whoever keeps the subnet still rely on it.
class SubnetProvider(Ec2Provider):
    info = TypeInfo(
        type="ec2.subnet",
        service=SERVICE,
        enumeration=Enumeration("describe_subnets", "Subnets", "SubnetId", id_param="SubnetIds"),
        not_found=("InvalidSubnetID.NotFound",),
        tag_style=tag_styles.EC2,
        create_order=30,
        permissions={
            "read": ("ec2:DescribeSubnets",),
            # Tagging at creation (TagSpecifications) is authorised as ec2:CreateTags as well.
            "create": ("ec2:CreateSubnet", "ec2:CreateTags", "ec2:ModifySubnetAttribute"),
            # The role tag is a managed field written with the EC2 tag calls.
            "update": ("ec2:ModifySubnetAttribute", "ec2:CreateTags", "ec2:DeleteTags"),
            "delete": ("ec2:DeleteSubnet",),
        },
        managed_fields=("VpcId", "CidrBlock", "AvailabilityZone", "MapPublicIpOnLaunch", "RoleTag"),
        tag_fields=("RoleTag",),
        immutable={
            "CidrBlock": "a subnet's address range cannot change; it is carved from vpcSubnetRange, which is immutable",
            "AvailabilityZone": "a subnet cannot move to another availability zone",
            "VpcId": "a subnet cannot move to another VPC",
        },
    )

    def from_aws(self, item: Mapping[str, Any]) -> Observed:
        return _observed(item)

    def tags_to_write(self, resource: Resource, desired: Mapping[str, Any]) -> Mapping[str, str]:
        # The role tag (the field `RoleTag`) rides along with the ownership tags: one CreateTags
        # call repairs either or both.
        role = desired.get("RoleTag")
        return {**resource.tags, role: _ROLE_TAG_ON} if role else resource.tags

    def create(self, ctx: Context, resource: Resource, desired: Mapping[str, Any]) -> Observed:
        # CreateSubnet takes no client token; the key in the tags lets the next read find a
        # subnet created by an attempt that crashed (a second one cannot exist: the range is taken).
        client = ctx.client(SERVICE)
        tags = dict(resource.tags)
        if desired.get("RoleTag"):
            tags[desired["RoleTag"]] = _ROLE_TAG_ON
        subnet = client.create_subnet(
            VpcId=desired["VpcId"],
            CidrBlock=desired["CidrBlock"],
            AvailabilityZone=desired["AvailabilityZone"],
            TagSpecifications=tag_specifications("subnet", tags),
        )["Subnet"]
        # A new subnet maps no public IPs (AWS default); only public subnets need the change.
        if bool(desired["MapPublicIpOnLaunch"]) != bool(subnet.get("MapPublicIpOnLaunch", False)):
            _map_public_ip(ctx, subnet["SubnetId"], bool(desired["MapPublicIpOnLaunch"]))
            subnet["MapPublicIpOnLaunch"] = bool(desired["MapPublicIpOnLaunch"])
        return _observed(subnet, {**tag_map(subnet.get("Tags")), **tags})

    def update(
        self,
        ctx: Context,
        resource: Resource,
        desired: Mapping[str, Any],
        observed: Observed,
        changed: list[str],
    ) -> Observed:
        fields = dict(observed.fields)
        tags = dict(observed.tags)
        if "MapPublicIpOnLaunch" in changed:
            _map_public_ip(ctx, observed.id, bool(desired["MapPublicIpOnLaunch"]))
            fields["MapPublicIpOnLaunch"] = bool(desired["MapPublicIpOnLaunch"])
        if "RoleTag" in changed:
            want = desired.get("RoleTag")
            # A subnet has one role: drop the other role's tag, e.g. after a manual mix-up.
            wrong = [t for t in ROLE_TAGS if t != want and t in tags]
            self.info.tag_style.remove(ctx, observed, wrong)
            for key in wrong:
                tags.pop(key)
            # The wanted role tag is written by `converge` with the ownership tags (`tag_fields`).
            fields["RoleTag"] = want
        return dataclasses.replace(observed, fields=fields, tags=tags)

    def delete(self, ctx: Context, observed: Observed) -> None:
        with absent(*self.info.not_found):
            ctx.client(SERVICE).delete_subnet(SubnetId=observed.id)


def role_tag(tags: Mapping[str, str]) -> str | None:
    """Which load-balancer role the subnet carries; both at once is reported as such (drift)."""
    present = [key for key in ROLE_TAGS if tags.get(key) in (_ROLE_TAG_ON, "")]
    if not present:
        return None
    return present[0] if len(present) == 1 else ",".join(present)


def _map_public_ip(ctx: Context, subnet_id: str, value: bool) -> None:
    ctx.client(SERVICE).modify_subnet_attribute(
        SubnetId=subnet_id, MapPublicIpOnLaunch={"Value": value}
    )


def _observed(subnet: Mapping[str, Any], tags: Mapping[str, str] | None = None) -> Observed:
    tags = dict(tags) if tags is not None else tag_map(subnet.get("Tags"))
    state = subnet.get("State", "")
    return Observed(
        type=SubnetProvider.info.type,
        id=subnet["SubnetId"],
        fields={
            "VpcId": subnet["VpcId"],
            "CidrBlock": subnet["CidrBlock"],
            "AvailabilityZone": subnet["AvailabilityZone"],
            "MapPublicIpOnLaunch": bool(subnet.get("MapPublicIpOnLaunch", False)),
            "RoleTag": role_tag(tags),
        },
        tags=tags,
        attributes={"id": subnet["SubnetId"]},
        status=status_of(state),
        state=state,
    )
