"""The Elastic IPs of the NAT gateways (`ec2.elastic-ip`).

Owns: allocating a VPC address with our tags, keeping its tags, releasing it, and letting it
go (untag). Other resources refer to it by `AllocationId`, which is also its id here.

What it must not do: disassociate an address from whatever uses it. An address still held by
a NAT gateway that is being deleted cannot be released yet; that error goes through and the
engine tries again on a later run, once the gateway is gone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from driftwarden.engine.graph import Resource
from driftwarden.providers.base import Context, Observed, register, tag_map
from driftwarden.providers.ec2 import (
    SERVICE,
    TagsOnlyEc2Provider,
    absent,
    describe_managed,
    tag_specifications,
)

_NOT_FOUND = ("InvalidAllocationID.NotFound",)


@register
class ElasticIpProvider(TagsOnlyEc2Provider):
    type = "ec2.elastic-ip"
    permissions: ClassVar[Mapping[str, tuple[str, ...]]] = {
        "read": ("ec2:DescribeAddresses",),
        # Tagging at creation (TagSpecifications) is authorised as ec2:CreateTags as well.
        "create": ("ec2:AllocateAddress", "ec2:CreateTags"),
        "update": ("ec2:CreateTags",),
        "delete": ("ec2:ReleaseAddress",),
        "untag": ("ec2:DeleteTags",),
    }
    immutable: ClassVar[Mapping[str, str]] = {
        "Domain": "an Elastic IP cannot move between EC2-Classic and VPC",
    }

    def read(self, ctx: Context) -> list[Observed]:
        # DescribeAddresses has no pages: AWS returns every address of the region at once.
        return [
            _observed(a)
            for a in describe_managed(ctx, "describe_addresses", "Addresses", paginated=False)
        ]

    def create(self, ctx: Context, resource: Resource, desired: Mapping[str, Any]) -> Observed:
        # AllocateAddress takes no client token. An address allocated by an attempt that crashed
        # carries its key in its tags from the first moment, so the next read finds it; a
        # duplicate with the same key would be planned for deletion, never used twice.
        address = ctx.client(SERVICE).allocate_address(
            Domain=desired["Domain"],
            TagSpecifications=tag_specifications("elastic-ip", resource.tags),
        )
        return _observed(address, {**tag_map(address.get("Tags")), **resource.tags})

    def delete(self, ctx: Context, observed: Observed) -> None:
        with absent(*_NOT_FOUND):
            ctx.client(SERVICE).release_address(AllocationId=observed.id)


def _observed(address: Mapping[str, Any], tags: Mapping[str, str] | None = None) -> Observed:
    allocation_id = address["AllocationId"]
    return Observed(
        type=ElasticIpProvider.type,
        id=allocation_id,
        fields={"Domain": address.get("Domain", "vpc")},
        tags=dict(tags) if tags is not None else tag_map(address.get("Tags")),
        attributes={"id": allocation_id, "AllocationId": allocation_id},
        # An address has no lifecycle state of its own; whether it is associated is not ours.
        state="associated" if address.get("AssociationId") else "allocated",
    )
