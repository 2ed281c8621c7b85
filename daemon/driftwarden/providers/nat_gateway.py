"""The NAT gateways of the private subnets (`ec2.nat-gateway`).

Owns: creating a public NAT gateway in its public subnet with its Elastic IP (idempotently,
with a client token derived from the resource key), reporting it `pending` until AWS says
`available` so the engine waits before routing through it, deleting it (AWS takes minutes:
meanwhile it reads as `deleting`) and releasing it. Subnet and address never change in place:
a difference is a plan error, because replacing the gateway cuts the cluster's egress.

What it must not do: release the Elastic IP (its own resource, deleted after the gateway is
gone) or touch routes through the gateway (the route table provider owns them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from driftwarden.engine.graph import Resource
from driftwarden.providers import tag_styles
from driftwarden.providers.base import Context, Enumeration, Observed, TypeInfo, tag_map
from driftwarden.providers.ec2 import (
    GONE_STATES,
    SERVICE,
    Ec2Provider,
    absent,
    client_token,
    status_of,
    tag_specifications,
)

# Everything but "deleted": a deleted gateway stays listed for about an hour.
_LIVE_STATES = ["pending", "available", "failed", "deleting"]
# What a replayed client token can hand back: the earlier gateway made with it, now unusable.
_STALE_STATES = frozenset({"failed", "deleting", *GONE_STATES})


class NatGatewayProvider(Ec2Provider):
    info = TypeInfo(
        type="ec2.nat-gateway",
        service=SERVICE,
        enumeration=Enumeration("describe_nat_gateways", "NatGateways", "NatGatewayId", id_param="NatGatewayIds"),
        not_found=("NatGatewayNotFound", "InvalidNatGatewayID.NotFound"),
        tag_style=tag_styles.EC2,
        create_order=60,
        permissions={
            "read": ("ec2:DescribeNatGateways",),
            # Tagging at creation (TagSpecifications) is authorised as ec2:CreateTags as well.
            "create": ("ec2:CreateNatGateway", "ec2:CreateTags"),
            "delete": ("ec2:DeleteNatGateway",),
        },
        managed_fields=("SubnetId", "AllocationId"),
        immutable={
            "SubnetId": "a NAT gateway cannot move to another subnet",
            "AllocationId": "a NAT gateway's Elastic IP cannot be swapped in place",
        },
    )
    listing_filters = ({"Name": "state", "Values": _LIVE_STATES},)

    def describe(self, ctx: Context, **params: Any) -> list[dict[str, Any]]:
        # Checked again here, like the tag filter: a server that drops the state filter must
        # not make a deleted gateway look alive.
        return [g for g in super().describe(ctx, **params) if g.get("State") not in GONE_STATES]

    def from_aws(self, item: Mapping[str, Any]) -> Observed:
        return _observed(item)

    def create(self, ctx: Context, resource: Resource, desired: Mapping[str, Any]) -> Observed:
        # The token names the key and what the gateway is made of, so a retry of this very
        # request (lost response, crash) returns the first gateway instead of a second one.
        token = client_token(resource.key, desired["SubnetId"], desired["AllocationId"])
        gateway = self._create(ctx, resource, desired, token)
        if gateway.get("State") in _STALE_STATES:
            # AWS remembers tokens after the gateway is gone: this answer is an earlier gateway,
            # deleted or failed since. Make a new one, under a token that is still deterministic.
            gateway = self._create(
                ctx, resource, desired, client_token(token, gateway["NatGatewayId"])
            )
        return _observed(gateway, {**tag_map(gateway.get("Tags")), **resource.tags})

    def _create(
        self, ctx: Context, resource: Resource, desired: Mapping[str, Any], token: str
    ) -> dict[str, Any]:
        gateway: dict[str, Any] = ctx.client(SERVICE).create_nat_gateway(
            SubnetId=desired["SubnetId"],
            AllocationId=desired["AllocationId"],
            ConnectivityType="public",
            ClientToken=token,
            TagSpecifications=tag_specifications("natgateway", resource.tags),
        )["NatGateway"]
        return gateway

    def delete(self, ctx: Context, observed: Observed) -> None:
        # Asynchronous: the gateway reads as "deleting" for a few minutes, then disappears.
        with absent(*self.info.not_found):
            ctx.client(SERVICE).delete_nat_gateway(NatGatewayId=observed.id)


def _primary_allocation(gateway: Mapping[str, Any]) -> str | None:
    addresses = gateway.get("NatGatewayAddresses") or []
    primary = [a for a in addresses if a.get("IsPrimary")] or addresses
    return primary[0].get("AllocationId") if primary else None


def _observed(gateway: Mapping[str, Any], tags: Mapping[str, str] | None = None) -> Observed:
    state = gateway.get("State", "")
    return Observed(
        type=NatGatewayProvider.info.type,
        id=gateway["NatGatewayId"],
        fields={"SubnetId": gateway["SubnetId"], "AllocationId": _primary_allocation(gateway)},
        tags=dict(tags) if tags is not None else tag_map(gateway.get("Tags")),
        attributes={"id": gateway["NatGatewayId"]},
        status=status_of(state),
        state=state,
    )
