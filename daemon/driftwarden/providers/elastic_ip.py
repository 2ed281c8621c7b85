"""The Elastic IPs of the NAT gateways (`ec2.elastic-ip`).

Owns: allocating a VPC address with our tags, keeping its tags, releasing it, and letting it
go (untag). Other resources refer to it by `AllocationId`, which is also its id here.

What it must not do: disassociate an address from whatever uses it. An address still held by
a NAT gateway that is being deleted cannot be released yet; that error goes through and the
engine tries again on a later run, once the gateway is gone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from driftwarden.engine.graph import Resource
from driftwarden.providers import tag_styles
from driftwarden.providers.base import Context, Enumeration, Observed, TypeInfo, tag_map
from driftwarden.providers.ec2 import (
    SERVICE,
    Ec2Provider,
    absent,
    tag_specifications,
)


class ElasticIpProvider(Ec2Provider):
    info = TypeInfo(
        type="ec2.elastic-ip",
        service=SERVICE,
        # No id_param: an address has no state to wait on, so `refresh` is rare and simply
        # reads the place's listing again (one call: it has no pages).
        enumeration=Enumeration("describe_addresses", "Addresses", "AllocationId"),
        not_found=("InvalidAllocationID.NotFound",),
        tag_style=tag_styles.EC2,
        create_order=50,
        permissions={
            "read": ("ec2:DescribeAddresses",),
            # Tagging at creation (TagSpecifications) is authorised as ec2:CreateTags as well.
            "create": ("ec2:AllocateAddress", "ec2:CreateTags"),
            "delete": ("ec2:ReleaseAddress",),
        },
        managed_fields=("Domain",),
        immutable={"Domain": "an Elastic IP cannot move between EC2-Classic and VPC"},
    )
    # DescribeAddresses has no pages: AWS returns every address of the region at once.
    paginated = False

    def from_aws(self, item: Mapping[str, Any]) -> Observed:
        return _observed(item)

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
        with absent(*self.info.not_found):
            ctx.client(SERVICE).release_address(AllocationId=observed.id)


def _observed(address: Mapping[str, Any], tags: Mapping[str, str] | None = None) -> Observed:
    allocation_id = address["AllocationId"]
    return Observed(
        type=ElasticIpProvider.info.type,
        id=allocation_id,
        fields={"Domain": address.get("Domain", "vpc")},
        tags=dict(tags) if tags is not None else tag_map(address.get("Tags")),
        attributes={"id": allocation_id, "AllocationId": allocation_id},
        # An address has no lifecycle state of its own; whether it is associated is not ours.
        state="associated" if address.get("AssociationId") else "allocated",
    )
