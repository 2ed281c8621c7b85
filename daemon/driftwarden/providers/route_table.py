"""The cluster's route tables (`ec2.route-table`): default routes and subnet associations.

Owns: creating a route table in the cluster VPC (idempotently, with a client token), its
default route (`0.0.0.0/0` to the internet gateway for the public table, to a NAT gateway for
the private ones), which subnets use it, deleting it (after letting go of its subnets, which AWS
requires) and releasing it.

Managed fields:

* `Routes` — only routes to the destinations in `MANAGED_DESTINATIONS`, as
  ``{"DestinationCidrBlock", "GatewayId" | "NatGatewayId"}``. The implicit ``local`` route and
  routes AWS or anyone else adds for other destinations (VPC endpoints, peering) are not ours
  and are never looked at, so they cause no drift and are never removed.
* `SubnetIds` — the subnets explicitly associated with the table, sorted.

What it must not do: delete routes to destinations it does not manage, or change the VPC's
main route table.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from driftwarden.engine.graph import Resource
from driftwarden.errors import ProviderError
from driftwarden.providers import tag_styles
from driftwarden.providers.base import Context, Enumeration, Observed, TypeInfo, tag_map
from driftwarden.providers.ec2 import (
    SERVICE,
    Ec2Provider,
    absent,
    client_token,
    is_absent,
    tag_specifications,
)

MANAGED_DESTINATIONS = frozenset({"0.0.0.0/0"})
# Every way a route can name where traffic goes, in the order we report them. A managed
# destination pointing at an unexpected kind of target still reads as drift and is replaced.
_TARGETS = (
    "GatewayId",
    "NatGatewayId",
    "TransitGatewayId",
    "VpcPeeringConnectionId",
    "EgressOnlyInternetGatewayId",
    "CarrierGatewayId",
    "LocalGatewayId",
    "InstanceId",
    "NetworkInterfaceId",
    "CoreNetworkArn",
)
_NOT_FOUND = ("InvalidRouteTableID.NotFound",)
_ROUTE_NOT_FOUND = ("InvalidRoute.NotFound",)
_ASSOCIATION_NOT_FOUND = ("InvalidAssociationID.NotFound",)


class RouteTableProvider(Ec2Provider):
    info = TypeInfo(
        type="ec2.route-table",
        service=SERVICE,
        enumeration=Enumeration("describe_route_tables", "RouteTables", "RouteTableId", id_param="RouteTableIds"),
        not_found=_NOT_FOUND,
        tag_style=tag_styles.EC2,
        create_order=70,
        permissions={
            "read": ("ec2:DescribeRouteTables",),
            # Tagging at creation (TagSpecifications) is authorised as ec2:CreateTags as well.
            "create": (
                "ec2:CreateRouteTable",
                "ec2:CreateTags",
                "ec2:CreateRoute",
                "ec2:ReplaceRoute",
                "ec2:DeleteRoute",
                "ec2:DescribeRouteTables",
                "ec2:AssociateRouteTable",
                "ec2:ReplaceRouteTableAssociation",
                "ec2:DisassociateRouteTable",
            ),
            "update": (
                "ec2:CreateRoute",
                "ec2:ReplaceRoute",
                "ec2:DeleteRoute",
                "ec2:DescribeRouteTables",
                "ec2:AssociateRouteTable",
                "ec2:ReplaceRouteTableAssociation",
                "ec2:DisassociateRouteTable",
            ),
            "delete": ("ec2:DescribeRouteTables", "ec2:DisassociateRouteTable", "ec2:DeleteRouteTable"),
        },
        managed_fields=("VpcId", "Routes", "SubnetIds"),
        immutable={"VpcId": "a route table cannot move to another VPC"},
    )

    def from_aws(self, item: Mapping[str, Any]) -> Observed:
        return _observed(item)

    def normalize_desired(self, desired: Mapping[str, Any]) -> dict[str, Any]:
        result = dict(desired)
        result["Routes"] = _sorted_routes(desired.get("Routes", ()))
        # `str` as key: before apply an id may still be UNKNOWN, which sorts as its repr.
        result["SubnetIds"] = tuple(sorted(desired.get("SubnetIds", ()), key=str))
        return result

    def create(self, ctx: Context, resource: Resource, desired: Mapping[str, Any]) -> Observed:
        # The token makes a retried request (lost response, crash) return the first table; the
        # VPC id is part of it so a cluster rebuilt with a new VPC never gets the old table.
        table = ctx.client(SERVICE).create_route_table(
            VpcId=desired["VpcId"],
            ClientToken=client_token(resource.key, desired["VpcId"]),
            TagSpecifications=tag_specifications("route-table", resource.tags),
        )["RouteTable"]
        table_id = table["RouteTableId"]
        # A replayed token answers with the table as it is now, routes and subnets included, so
        # converge from what it has rather than assume it is empty.
        _sync_routes(ctx, table_id, _routes(table), desired["Routes"])
        _sync_subnets(ctx, table_id, _associations(table), desired["SubnetIds"])
        fields = {
            "VpcId": table["VpcId"],
            "Routes": tuple(desired["Routes"]),
            "SubnetIds": tuple(desired["SubnetIds"]),
        }
        return _observed(table, {**tag_map(table.get("Tags")), **resource.tags}, fields)

    def update(
        self,
        ctx: Context,
        resource: Resource,
        desired: Mapping[str, Any],
        observed: Observed,
        changed: list[str],
    ) -> Observed:
        fields = dict(observed.fields)
        if "Routes" in changed:
            _sync_routes(ctx, observed.id, observed.fields.get("Routes", ()), desired["Routes"])
            fields["Routes"] = tuple(desired["Routes"])
        if "SubnetIds" in changed:
            # The association ids needed to let go of a subnet are not part of `observed`: read
            # them now, which also sees associations made since the plan.
            table = _describe_one(ctx, observed.id)
            current = _associations(table) if table is not None else {}
            _sync_subnets(ctx, observed.id, current, desired["SubnetIds"])
            fields["SubnetIds"] = tuple(desired["SubnetIds"])
        return dataclasses.replace(observed, fields=fields)

    def delete(self, ctx: Context, observed: Observed) -> None:
        table = _describe_one(ctx, observed.id)
        if table is None:
            return
        client = ctx.client(SERVICE)
        # AWS refuses to delete a table that subnets still use. Without it they fall back to the
        # VPC's main table; the engine deletes the route table only once the subnets are going.
        for association_id in _associations(table).values():
            with absent(*_ASSOCIATION_NOT_FOUND):
                client.disassociate_route_table(AssociationId=association_id)
        with absent(*_NOT_FOUND):
            client.delete_route_table(RouteTableId=observed.id)


def _describe_one(ctx: Context, table_id: str) -> dict[str, Any] | None:
    try:
        tables = ctx.client(SERVICE).describe_route_tables(RouteTableIds=[table_id])["RouteTables"]
    except ProviderError as exc:
        if is_absent(exc, _NOT_FOUND):
            return None
        raise
    return tables[0] if tables else None


def _target(route: Mapping[str, Any]) -> dict[str, str]:
    for key in _TARGETS:
        value = route.get(key)
        if value and value != "local":
            return {key: value}
    return {}


def _routes(table: Mapping[str, Any]) -> tuple[dict[str, str], ...]:
    """The table's routes to managed destinations, in the shape of the desired field."""
    routes = [
        {"DestinationCidrBlock": route["DestinationCidrBlock"], **_target(route)}
        for route in table.get("Routes", [])
        if route.get("DestinationCidrBlock") in MANAGED_DESTINATIONS
    ]
    return _sorted_routes(routes)


def _sorted_routes(routes: Iterable[Mapping[str, Any]]) -> tuple[dict[str, Any], ...]:
    return tuple(
        sorted((dict(r) for r in routes), key=lambda r: str(r.get("DestinationCidrBlock")))
    )


def _associations(table: Mapping[str, Any]) -> dict[str, str]:
    """Explicit subnet associations: subnet id -> association id."""
    return {
        a["SubnetId"]: a["RouteTableAssociationId"]
        for a in table.get("Associations", [])
        if a.get("SubnetId")
        and not a.get("Main")
        and a.get("AssociationState", {}).get("State", "associated")
        in ("associated", "associating")
    }


def _sync_routes(
    ctx: Context,
    table_id: str,
    have: Iterable[Mapping[str, Any]],
    want: Iterable[Mapping[str, Any]],
) -> None:
    client = ctx.client(SERVICE)
    current = {r["DestinationCidrBlock"]: dict(r) for r in have}
    wanted = {r["DestinationCidrBlock"]: dict(r) for r in want}
    for destination, route in wanted.items():
        target = {k: v for k, v in route.items() if k != "DestinationCidrBlock"}
        if destination not in current:
            client.create_route(RouteTableId=table_id, DestinationCidrBlock=destination, **target)
        elif current[destination] != route:
            # One call, so traffic never goes without a default route in between.
            client.replace_route(RouteTableId=table_id, DestinationCidrBlock=destination, **target)
    for destination in current.keys() - wanted.keys():
        with absent(*_ROUTE_NOT_FOUND):
            client.delete_route(RouteTableId=table_id, DestinationCidrBlock=destination)


def _sync_subnets(
    ctx: Context, table_id: str, have: Mapping[str, str], want: Iterable[str]
) -> None:
    client = ctx.client(SERVICE)
    wanted = set(want)
    for subnet_id in sorted(set(have) - wanted):
        with absent(*_ASSOCIATION_NOT_FOUND):
            client.disassociate_route_table(AssociationId=have[subnet_id])
    missing = sorted(wanted - set(have))
    if not missing:
        return
    # A subnet has one explicit route table. Ours may have been pointed at another table: the
    # subnet is ours, so move its association here instead of failing on AlreadyAssociated.
    elsewhere: dict[str, str] = {}
    for table in client.describe_route_tables(
        Filters=[{"Name": "association.subnet-id", "Values": missing}]
    )["RouteTables"]:
        if table["RouteTableId"] != table_id:
            elsewhere.update({s: a for s, a in _associations(table).items() if s in missing})
    for subnet_id in missing:
        if subnet_id in elsewhere:
            client.replace_route_table_association(
                AssociationId=elsewhere[subnet_id], RouteTableId=table_id
            )
        else:
            client.associate_route_table(RouteTableId=table_id, SubnetId=subnet_id)


def _observed(
    table: Mapping[str, Any],
    tags: Mapping[str, str] | None = None,
    fields: Mapping[str, Any] | None = None,
) -> Observed:
    return Observed(
        type=RouteTableProvider.info.type,
        id=table["RouteTableId"],
        fields=dict(fields)
        if fields is not None
        else {
            "VpcId": table["VpcId"],
            "Routes": _routes(table),
            "SubnetIds": tuple(sorted(_associations(table))),
        },
        tags=dict(tags) if tags is not None else tag_map(table.get("Tags")),
        attributes={"id": table["RouteTableId"]},
    )
