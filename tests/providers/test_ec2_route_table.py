"""The route table provider (`ec2.route-table`) against moto's server over HTTP."""

from __future__ import annotations

import pytest
from test_ec2_support import (
    assert_contract,
    assert_delete_is_idempotent,
    assert_tag_drift_repaired,
    assert_untag_releases,
    foreign_tags,
    make_network,
)

PUBLIC = "route-table/public"
PRIVATE = "route-table/private-a"


@pytest.fixture
def net(request, monkeypatch):
    network = make_network(request, monkeypatch)
    network.create(
        "vpc", "subnet/public-a", "subnet/public-b", "subnet/private-a", "subnet/private-b",
        "internet-gateway", "elastic-ip/nat-a", "nat-gateway/a", PUBLIC, PRIVATE,
    )
    return network


def table(net, component):
    table_id = net.observed[component].id
    return net.ec2.describe_route_tables(RouteTableIds=[table_id])["RouteTables"][0]


def default_route(net, component):
    return [r for r in table(net, component)["Routes"] if r.get("DestinationCidrBlock") == "0.0.0.0/0"]


def associated(net, component):
    return sorted(a["SubnetId"] for a in table(net, component)["Associations"] if a.get("SubnetId"))


def ids(net, *components):
    return tuple(sorted(net.observed[c].id for c in components))


def heal(net, component, expected_changes):
    drifted = net.read_one(component)
    assert net.changed(component, drifted) == expected_changes
    net.update(component, drifted)
    assert net.diff(component, net.read_one(component)) == []


@pytest.mark.parametrize(
    ("component", "target", "subnets"),
    [
        (PUBLIC, ("GatewayId", "internet-gateway"), ("subnet/public-a", "subnet/public-b")),
        (PRIVATE, ("NatGatewayId", "nat-gateway/a"), ("subnet/private-a",)),
    ],
)
def test_created_table_reads_back_without_diff_and_rereading_mutates_nothing(net, component, target, subnets):
    """Create then read gives an empty diff (default route, subnets), ignoring the local route; re-reading mutates nothing."""
    observed = assert_contract(net, component)
    key, via = target
    assert observed.fields == {
        "VpcId": net.observed["vpc"].id,
        "Routes": ({"DestinationCidrBlock": "0.0.0.0/0", key: net.observed[via].id},),
        "SubnetIds": ids(net, *subnets),
    }
    assert any(r.get("GatewayId") == "local" for r in table(net, component)["Routes"])  # there, and ignored
    assert associated(net, component) == list(ids(net, *subnets))


def test_default_route_deleted_out_of_band_is_seen_and_recreated(net):
    """A default route deleted behind our back is drift on Routes, and update creates it again."""
    net.ec2.delete_route(RouteTableId=net.observed[PRIVATE].id, DestinationCidrBlock="0.0.0.0/0")
    assert net.read_one(PRIVATE).fields["Routes"] == ()
    heal(net, PRIVATE, ["Routes"])
    assert default_route(net, PRIVATE)[0]["NatGatewayId"] == net.observed["nat-gateway/a"].id


def test_default_route_pointed_elsewhere_is_replaced(net):
    """A public default route re-pointed at the NAT gateway is drift, and update points it at the internet gateway again."""
    net.ec2.replace_route(RouteTableId=net.observed[PUBLIC].id, DestinationCidrBlock="0.0.0.0/0",
                          NatGatewayId=net.observed["nat-gateway/a"].id)
    assert net.read_one(PUBLIC).fields["Routes"] == (
        {"DestinationCidrBlock": "0.0.0.0/0", "NatGatewayId": net.observed["nat-gateway/a"].id},
    )
    heal(net, PUBLIC, ["Routes"])
    (route,) = default_route(net, PUBLIC)
    assert route["GatewayId"] == net.observed["internet-gateway"].id
    assert "NatGatewayId" not in route


def test_routes_to_other_destinations_are_not_ours(net):
    """A route someone adds for another destination causes no drift and is left in place."""
    table_id = net.observed[PUBLIC].id
    net.ec2.create_route(RouteTableId=table_id, DestinationCidrBlock="192.168.0.0/16",
                         GatewayId=net.observed["internet-gateway"].id)
    assert net.diff(PUBLIC, net.read_one(PUBLIC)) == []
    net.ec2.delete_route(RouteTableId=table_id, DestinationCidrBlock="0.0.0.0/0")
    heal(net, PUBLIC, ["Routes"])
    assert any(r.get("DestinationCidrBlock") == "192.168.0.0/16" for r in table(net, PUBLIC)["Routes"])


def test_subnet_disassociated_out_of_band_is_associated_again(net):
    """A subnet whose association is removed is drift on SubnetIds, and update associates it again."""
    association = next(a for a in table(net, PUBLIC)["Associations"] if a.get("SubnetId") == net.observed["subnet/public-b"].id)
    net.ec2.disassociate_route_table(AssociationId=association["RouteTableAssociationId"])
    assert net.read_one(PUBLIC).fields["SubnetIds"] == ids(net, "subnet/public-a")
    heal(net, PUBLIC, ["SubnetIds"])
    assert associated(net, PUBLIC) == list(ids(net, "subnet/public-a", "subnet/public-b"))


def test_subnet_moved_to_another_table_is_moved_back(net):
    """Our subnet pointed at someone else's route table is drift, and update moves its association back."""
    subnet_id = net.observed["subnet/private-a"].id
    association = next(a for a in table(net, PRIVATE)["Associations"] if a.get("SubnetId") == subnet_id)
    other = net.ec2.create_route_table(VpcId=net.observed["vpc"].id)["RouteTable"]["RouteTableId"]
    net.ec2.replace_route_table_association(AssociationId=association["RouteTableAssociationId"], RouteTableId=other)
    assert net.read_one(PRIVATE).fields["SubnetIds"] == ()
    heal(net, PRIVATE, ["SubnetIds"])
    assert associated(net, PRIVATE) == [subnet_id]
    other_table = net.ec2.describe_route_tables(RouteTableIds=[other])["RouteTables"][0]
    assert [a for a in other_table["Associations"] if a.get("SubnetId")] == []


def test_extra_subnet_associated_out_of_band_is_let_go(net):
    """A subnet Git does not give this table is drift, and update disassociates it."""
    extra = net.observed["subnet/private-b"].id
    net.ec2.associate_route_table(RouteTableId=net.observed[PUBLIC].id, SubnetId=extra)
    assert extra in net.read_one(PUBLIC).fields["SubnetIds"]
    heal(net, PUBLIC, ["SubnetIds"])
    assert extra not in associated(net, PUBLIC)


def test_removed_user_tag_is_put_back(net):
    """A user tag deleted out of band is tag drift, repaired by update(changed=["tags"])."""
    assert_tag_drift_repaired(net, PUBLIC)


def test_delete_lets_go_of_subnets_then_deletes_and_deleting_twice_is_fine(net):
    """Delete disassociates the table's subnets (AWS requires it) and deletes it; a second delete succeeds."""
    observed = assert_delete_is_idempotent(net, PUBLIC)
    assert net.ec2.describe_route_tables(Filters=[{"Name": "route-table-id", "Values": [observed.id]}])["RouteTables"] == []


def test_untagged_table_keeps_routes_and_subnets_but_is_no_longer_ours(net):
    """Untag keeps the table, its route and its subnets, and removes our ownership tags."""
    assert_untag_releases(net, PRIVATE)
    assert associated(net, PRIVATE) == list(ids(net, "subnet/private-a"))
    assert default_route(net, PRIVATE)[0]["NatGatewayId"] == net.observed["nat-gateway/a"].id


@pytest.mark.parametrize("instance", [None, "another-driftwarden"])
def test_table_without_our_managed_by_tag_is_never_read(net, instance):
    """A route table tagged like ours but not managed by this instance (or the VPC's main table) is invisible to read()."""
    foreign = net.ec2.create_route_table(
        VpcId=net.observed["vpc"].id, TagSpecifications=[{"ResourceType": "route-table", "Tags": foreign_tags(instance)}]
    )["RouteTable"]["RouteTableId"]
    read = {o.id for o in net.provider(PUBLIC).read(net.ctx)}
    assert read == {net.observed[PUBLIC].id, net.observed[PRIVATE].id}
    assert foreign not in read
