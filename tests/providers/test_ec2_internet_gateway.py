"""The internet gateway provider (`ec2.internet-gateway`) against moto's server over HTTP."""

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

IGW = "internet-gateway"


@pytest.fixture
def net(request, monkeypatch):
    network = make_network(request, monkeypatch)
    network.create("vpc", IGW)
    return network


def attachments(net, gateway_id):
    gateway = net.ec2.describe_internet_gateways(InternetGatewayIds=[gateway_id])["InternetGateways"][0]
    return [a["VpcId"] for a in gateway.get("Attachments", [])]


def test_created_gateway_is_attached_reads_back_without_diff_and_rereading_mutates_nothing(net):
    """Create makes the gateway and attaches it to the VPC; read gives an empty diff; re-reading mutates nothing."""
    observed = assert_contract(net, IGW)
    vpc_id = net.observed["vpc"].id
    assert observed.fields == {"VpcId": vpc_id}
    assert attachments(net, observed.id) == [vpc_id]


def test_gateway_detached_out_of_band_is_seen_and_reattached(net):
    """A gateway detached behind our back reads as VpcId None, and update attaches it again."""
    gateway_id, vpc_id = net.observed[IGW].id, net.observed["vpc"].id
    net.ec2.detach_internet_gateway(InternetGatewayId=gateway_id, VpcId=vpc_id)
    drifted = net.read_one(IGW)
    assert drifted.fields["VpcId"] is None
    assert net.changed(IGW, drifted) == ["VpcId"]
    assert net.update(IGW, drifted).fields == {"VpcId": vpc_id}
    assert attachments(net, gateway_id) == [vpc_id]
    assert net.diff(IGW, net.read_one(IGW)) == []


def test_gateway_moved_to_another_vpc_is_moved_back(net):
    """A gateway re-attached to a different VPC is detached from it and attached to ours."""
    gateway_id, vpc_id = net.observed[IGW].id, net.observed["vpc"].id
    other = net.ec2.create_vpc(CidrBlock="10.99.0.0/16")["Vpc"]["VpcId"]
    net.ec2.detach_internet_gateway(InternetGatewayId=gateway_id, VpcId=vpc_id)
    net.ec2.attach_internet_gateway(InternetGatewayId=gateway_id, VpcId=other)
    drifted = net.read_one(IGW)
    assert drifted.fields["VpcId"] == other
    net.update(IGW, drifted)
    assert attachments(net, gateway_id) == [vpc_id]
    assert net.diff(IGW, net.read_one(IGW)) == []


def test_removed_user_tag_is_put_back(net):
    """A user tag deleted out of band is tag drift, repaired by update(changed=["tags"])."""
    assert_tag_drift_repaired(net, IGW)


def test_delete_detaches_then_deletes_and_deleting_twice_is_fine(net):
    """Delete detaches the attached gateway and deletes it; a second delete succeeds."""
    observed = assert_delete_is_idempotent(net, IGW)
    found = net.ec2.describe_internet_gateways(
        Filters=[{"Name": "internet-gateway-id", "Values": [observed.id]}]
    )["InternetGateways"]
    assert found == []


def test_untagged_gateway_stays_attached_but_is_no_longer_ours(net):
    """Untag keeps the gateway attached to the VPC but removes our ownership tags."""
    gateway_id = assert_untag_releases(net, IGW)
    assert attachments(net, gateway_id) == [net.observed["vpc"].id]


@pytest.mark.parametrize("instance", [None, "another-driftwarden"])
def test_gateway_without_our_managed_by_tag_is_never_read(net, instance):
    """A gateway tagged like ours but not managed by this instance is invisible to read()."""
    foreign = net.ec2.create_internet_gateway(
        TagSpecifications=[{"ResourceType": "internet-gateway", "Tags": foreign_tags(instance)}]
    )["InternetGateway"]["InternetGatewayId"]
    ids = {o.id for o in net.provider(IGW).read(net.ctx)}
    assert ids == {net.observed[IGW].id}
    assert foreign not in ids
