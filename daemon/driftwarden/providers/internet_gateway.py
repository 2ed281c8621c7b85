"""The cluster's internet gateway (`ec2.internet-gateway`) and its attachment to the VPC.

Owns: creating the gateway with our tags and attaching it to the cluster VPC (its one managed
field, `VpcId`, is the VPC of the attachment), re-attaching it when it was detached or moved,
detaching and deleting it, and releasing it.

What it must not do: touch routes that point at the gateway (the route table provider owns
them), or attach a gateway that is not ours.
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
    tag_specifications,
)

_NOT_FOUND = ("InvalidInternetGatewayID.NotFound",)
# Detaching what is not attached (any more) is the result we wanted.
_NOT_ATTACHED = ("Gateway.NotAttached", "InvalidVpcID.NotFound", *_NOT_FOUND)
# An attachment in these states connects the VPC (EC2 reports "available" for a VPC attachment).
_ATTACHED_STATES = frozenset({"attached", "available", "attaching"})


class InternetGatewayProvider(Ec2Provider):
    info = TypeInfo(
        type="ec2.internet-gateway",
        service=SERVICE,
        enumeration=Enumeration("describe_internet_gateways", "InternetGateways", "InternetGatewayId",
                                id_param="InternetGatewayIds"),
        not_found=_NOT_FOUND,
        tag_style=tag_styles.EC2,
        create_order=40,
        permissions={
            "read": ("ec2:DescribeInternetGateways",),
            # Tagging at creation (TagSpecifications) is authorised as ec2:CreateTags as well.
            "create": ("ec2:CreateInternetGateway", "ec2:CreateTags", "ec2:AttachInternetGateway"),
            "update": ("ec2:DetachInternetGateway", "ec2:AttachInternetGateway"),
            "delete": ("ec2:DetachInternetGateway", "ec2:DeleteInternetGateway"),
        },
        managed_fields=("VpcId",),
    )

    def from_aws(self, item: Mapping[str, Any]) -> Observed:
        return _observed(item)

    def create(self, ctx: Context, resource: Resource, desired: Mapping[str, Any]) -> Observed:
        # CreateInternetGateway takes no client token; the key in the tags lets the next read find
        # a gateway created by an attempt that crashed before attaching it (update attaches it).
        client = ctx.client(SERVICE)
        gateway = client.create_internet_gateway(
            TagSpecifications=tag_specifications("internet-gateway", resource.tags)
        )["InternetGateway"]
        gateway_id = gateway["InternetGatewayId"]
        client.attach_internet_gateway(InternetGatewayId=gateway_id, VpcId=desired["VpcId"])
        tags = {**tag_map(gateway.get("Tags")), **resource.tags}
        return _observed(
            {**gateway, "Attachments": [{"VpcId": desired["VpcId"], "State": "available"}]}, tags
        )

    def update(
        self,
        ctx: Context,
        resource: Resource,
        desired: Mapping[str, Any],
        observed: Observed,
        changed: list[str],
    ) -> Observed:
        fields = dict(observed.fields)
        if "VpcId" in changed:
            client = ctx.client(SERVICE)
            current = observed.fields.get("VpcId")
            if current:
                # A gateway attaches to one VPC at a time: let go of the wrong one first.
                with absent(*_NOT_ATTACHED):
                    client.detach_internet_gateway(InternetGatewayId=observed.id, VpcId=current)
            client.attach_internet_gateway(InternetGatewayId=observed.id, VpcId=desired["VpcId"])
            fields["VpcId"] = desired["VpcId"]
        return dataclasses.replace(observed, fields=fields)

    def delete(self, ctx: Context, observed: Observed) -> None:
        client = ctx.client(SERVICE)
        # AWS refuses to delete an attached gateway. Should the attachment have changed since
        # `observed` was read, deletion fails (DependencyViolation) and the next run, reading
        # afresh, detaches the right one.
        vpc_id = observed.fields.get("VpcId")
        if vpc_id:
            with absent(*_NOT_ATTACHED):
                client.detach_internet_gateway(InternetGatewayId=observed.id, VpcId=vpc_id)
        with absent(*_NOT_FOUND):
            client.delete_internet_gateway(InternetGatewayId=observed.id)


def _observed(gateway: Mapping[str, Any], tags: Mapping[str, str] | None = None) -> Observed:
    attached = [a for a in gateway.get("Attachments", []) if a.get("State") in _ATTACHED_STATES]
    return Observed(
        type=InternetGatewayProvider.info.type,
        id=gateway["InternetGatewayId"],
        fields={"VpcId": attached[0]["VpcId"] if attached else None},
        tags=dict(tags) if tags is not None else tag_map(gateway.get("Tags")),
        attributes={"id": gateway["InternetGatewayId"]},
        state=attached[0]["State"] if attached else "detached",
    )
