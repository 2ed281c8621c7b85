"""The cluster VPC (`ec2.vpc`): its address range and its two DNS attributes.

Owns: creating the VPC with our tags, keeping `EnableDnsSupport` / `EnableDnsHostnames` as Git
says (EKS needs both), deleting and releasing it. The address range can never change in place:
a different `CidrBlock` is a plan error, not a replacement, because everything in the cluster
lives inside it.

What it must not do: delete anything inside the VPC (subnets, gateways, route tables and
security groups are resources of their own and the engine deletes them first), or touch a VPC
without our managed-by tag.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from driftwarden.engine.graph import Resource
from driftwarden.errors import ProviderError
from driftwarden.providers import tag_styles
from driftwarden.providers.base import Context, Enumeration, Observed, TypeInfo, tag_map
from driftwarden.providers.ec2 import (
    SERVICE,
    Ec2Provider,
    absent,
    first_or_absent,
    status_of,
    tag_specifications,
)

# The DNS attributes: desired field -> DescribeVpcAttribute's attribute name. ModifyVpcAttribute
# takes exactly one attribute per call.
_ATTRIBUTES = {"EnableDnsSupport": "enableDnsSupport", "EnableDnsHostnames": "enableDnsHostnames"}
# What a new VPC starts with (EC2 user guide, "DNS attributes for your VPC"): setting only what
# differs saves calls; were AWS to change a default, the next read shows drift and heals it.
_AWS_DEFAULTS = {"EnableDnsSupport": True, "EnableDnsHostnames": False}


class VpcProvider(Ec2Provider):
    info = TypeInfo(
        type="ec2.vpc",
        service=SERVICE,
        enumeration=Enumeration("describe_vpcs", "Vpcs", "VpcId", id_param="VpcIds"),
        not_found=("InvalidVpcID.NotFound",),
        tag_style=tag_styles.EC2,
        create_order=20,
        permissions={
            "read": ("ec2:DescribeVpcs", "ec2:DescribeVpcAttribute"),
            # Tagging at creation (TagSpecifications) is authorised as ec2:CreateTags as well.
            "create": ("ec2:CreateVpc", "ec2:CreateTags", "ec2:ModifyVpcAttribute"),
            "update": ("ec2:ModifyVpcAttribute",),
            "delete": ("ec2:DeleteVpc",),
        },
        managed_fields=("CidrBlock", "EnableDnsSupport", "EnableDnsHostnames"),
        immutable={"CidrBlock": "a VPC's address range cannot change; create a new cluster"},
    )

    def read(self, ctx: Context) -> list[Observed]:
        return self._read(ctx)

    def refresh(self, ctx: Context, observed: Observed) -> Observed | None:
        return first_or_absent(lambda: self._read(ctx, VpcIds=[observed.id]), self.info.not_found)

    def _read(self, ctx: Context, **params: Any) -> list[Observed]:
        client = ctx.client(SERVICE)
        result = []
        for vpc in self.describe(ctx, **params):
            vpc_id = vpc["VpcId"]
            try:
                # AWS has no batch read of VPC attributes: DescribeVpcAttribute takes one VPC and
                # one attribute. That is two calls per VPC, i.e. per cluster, not per resource.
                dns = {
                    name: bool(
                        client.describe_vpc_attribute(VpcId=vpc_id, Attribute=attribute)[name][
                            "Value"
                        ]
                    )
                    for name, attribute in _ATTRIBUTES.items()
                }
            except ProviderError as exc:
                if self.is_absent(exc):
                    continue  # deleted between the listing and the attribute read
                raise
            result.append(_observed(vpc, dns))
        return result

    def create(self, ctx: Context, resource: Resource, desired: Mapping[str, Any]) -> Observed:
        # CreateVpc takes no client token. A retry after a crash cannot duplicate silently:
        # the VPC carries its key in its tags from the first moment, the next read finds it,
        # and a second one with the same key would be planned for deletion.
        client = ctx.client(SERVICE)
        vpc = client.create_vpc(
            CidrBlock=desired["CidrBlock"],
            TagSpecifications=tag_specifications("vpc", resource.tags),
        )["Vpc"]
        dns = dict(_AWS_DEFAULTS)
        for name in _ATTRIBUTES:
            want = bool(desired[name])
            if want != _AWS_DEFAULTS[name]:
                _modify(ctx, vpc["VpcId"], name, want)
                dns[name] = want
        return _observed(vpc, dns, {**tag_map(vpc.get("Tags")), **resource.tags})

    def update(
        self,
        ctx: Context,
        resource: Resource,
        desired: Mapping[str, Any],
        observed: Observed,
        changed: list[str],
    ) -> Observed:
        fields = dict(observed.fields)
        for name in _ATTRIBUTES:
            if name in changed:
                _modify(ctx, observed.id, name, bool(desired[name]))
                fields[name] = bool(desired[name])
        return dataclasses.replace(observed, fields=fields)

    def delete(self, ctx: Context, observed: Observed) -> None:
        with absent(*self.info.not_found):
            ctx.client(SERVICE).delete_vpc(VpcId=observed.id)


def _modify(ctx: Context, vpc_id: str, name: str, value: bool) -> None:
    ctx.client(SERVICE).modify_vpc_attribute(VpcId=vpc_id, **{name: {"Value": value}})


def _observed(
    vpc: Mapping[str, Any], dns: Mapping[str, bool], tags: Mapping[str, str] | None = None
) -> Observed:
    state = vpc.get("State", "")
    return Observed(
        type=VpcProvider.info.type,
        id=vpc["VpcId"],
        fields={"CidrBlock": vpc["CidrBlock"], **dns},
        tags=dict(tags) if tags is not None else tag_map(vpc.get("Tags")),
        attributes={"id": vpc["VpcId"]},
        status=status_of(state),
        state=state,
    )
