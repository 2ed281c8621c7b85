"""The VPC provider (`ec2.vpc`) against moto's server over HTTP."""

from __future__ import annotations

import pytest
from test_ec2_support import (
    MANIFEST,
    assert_contract,
    assert_delete_is_idempotent,
    assert_tag_drift_repaired,
    assert_untag_releases,
    cluster_resources,
    foreign_tags,
    make_network,
)

from driftwarden.engine.plan import make_plan
from driftwarden.providers.registry import default_providers


@pytest.fixture
def net(request, monkeypatch):
    network = make_network(request, monkeypatch)
    network.create("vpc")
    return network


def dns(net, vpc_id, attribute):
    return net.ec2.describe_vpc_attribute(VpcId=vpc_id, Attribute=attribute)


def test_created_vpc_reads_back_without_diff_and_rereading_mutates_nothing(net):
    """Create then read gives an empty diff; a second read makes no mutating call."""
    observed = assert_contract(net, "vpc")
    assert observed.fields == {"CidrBlock": "10.20.0.0/16", "EnableDnsSupport": True, "EnableDnsHostnames": True}
    assert observed.attributes == {"id": observed.id}
    assert dns(net, observed.id, "enableDnsHostnames")["EnableDnsHostnames"]["Value"] is True


@pytest.mark.parametrize(("field", "attribute"), [("EnableDnsHostnames", "enableDnsHostnames"),
                                                  ("EnableDnsSupport", "enableDnsSupport")])
def test_dns_attribute_switched_off_out_of_band_is_seen_and_repaired(net, field, attribute):
    """Turning a DNS attribute off behind our back shows as drift on that field and update turns it on again."""
    vpc_id = net.observed["vpc"].id
    net.ec2.modify_vpc_attribute(VpcId=vpc_id, **{field: {"Value": False}})
    drifted = net.read_one("vpc")
    assert drifted.fields[field] is False
    assert net.changed("vpc", drifted) == [field]
    returned = net.update("vpc", drifted)
    assert returned.fields[field] is True
    assert dns(net, vpc_id, attribute)[field]["Value"] is True
    assert net.diff("vpc", net.read_one("vpc")) == []


def test_removed_user_tag_is_put_back(net):
    """A user tag deleted out of band is tag drift, repaired by update(changed=["tags"])."""
    assert_tag_drift_repaired(net, "vpc")


def test_deleted_vpc_is_no_longer_read_and_deleting_twice_is_fine(net):
    """After delete the VPC is gone from AWS and from read(); a second delete succeeds."""
    observed = assert_delete_is_idempotent(net, "vpc")
    assert net.ec2.describe_vpcs(Filters=[{"Name": "vpc-id", "Values": [observed.id]}])["Vpcs"] == []


def test_untagged_vpc_stays_in_aws_but_is_no_longer_ours(net):
    """Untag keeps the VPC but removes our ownership tags, so read() no longer returns it."""
    vpc_id = assert_untag_releases(net, "vpc")
    assert net.ec2.describe_vpcs(VpcIds=[vpc_id])["Vpcs"][0]["VpcId"] == vpc_id


@pytest.mark.parametrize("instance", [None, "another-driftwarden"])
def test_vpc_without_our_managed_by_tag_is_never_read(net, instance):
    """A VPC tagged like ours but not managed by this instance is invisible to read()."""
    foreign = net.ec2.create_vpc(
        CidrBlock="10.99.0.0/16", TagSpecifications=[{"ResourceType": "vpc", "Tags": foreign_tags(instance)}]
    )["Vpc"]["VpcId"]
    ids = {o.id for o in net.provider("vpc").read(net.ctx)}
    assert ids == {net.observed["vpc"].id}
    assert foreign not in ids


def test_changed_address_range_is_a_plan_error_naming_the_field(net):
    """A different vpcSubnetRange is never applied: the plan reports CidrBlock and why."""
    observed = net.read_one("vpc")
    moved = cluster_resources(MANIFEST.replace("10.20.0.0/16", "10.30.0.0/16"))["vpc"]
    plan = make_plan([moved], [observed], providers=default_providers())
    assert plan.changes == []
    assert [(e.field, e.key) for e in plan.errors] == [("CidrBlock", moved.key)]
    assert "a VPC's address range cannot change" in plan.errors[0].message
