"""The subnet provider (`ec2.subnet`) against moto's server over HTTP."""

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

ELB = "kubernetes.io/role/elb"
INTERNAL_ELB = "kubernetes.io/role/internal-elb"


@pytest.fixture
def net(request, monkeypatch):
    network = make_network(request, monkeypatch)
    network.create("vpc", "subnet/public-a", "subnet/private-a")
    return network


@pytest.mark.parametrize(
    ("component", "cidr", "public", "role"),
    [("subnet/public-a", "10.20.192.0/22", True, ELB), ("subnet/private-a", "10.20.0.0/17", False, INTERNAL_ELB)],
)
def test_created_subnet_reads_back_without_diff_and_rereading_mutates_nothing(net, component, cidr, public, role):
    """Create then read gives an empty diff (placement, public IPs, role tag); re-reading mutates nothing."""
    observed = assert_contract(net, component)
    assert observed.fields == {
        "VpcId": net.observed["vpc"].id,
        "CidrBlock": cidr,
        "AvailabilityZone": "us-east-1a",
        "MapPublicIpOnLaunch": public,
        "RoleTag": role,
    }
    assert net.tags_of(observed.id)[role] == "1"
    subnet = net.ec2.describe_subnets(SubnetIds=[observed.id])["Subnets"][0]
    assert subnet["MapPublicIpOnLaunch"] is public


def test_public_ip_mapping_switched_off_out_of_band_is_seen_and_repaired(net):
    """A public subnet that stops mapping public IPs shows drift on MapPublicIpOnLaunch and update restores it."""
    subnet_id = net.observed["subnet/public-a"].id
    net.ec2.modify_subnet_attribute(SubnetId=subnet_id, MapPublicIpOnLaunch={"Value": False})
    drifted = net.read_one("subnet/public-a")
    assert net.changed("subnet/public-a", drifted) == ["MapPublicIpOnLaunch"]
    assert net.update("subnet/public-a", drifted).fields["MapPublicIpOnLaunch"] is True
    assert net.ec2.describe_subnets(SubnetIds=[subnet_id])["Subnets"][0]["MapPublicIpOnLaunch"] is True
    assert net.diff("subnet/public-a", net.read_one("subnet/public-a")) == []


def test_role_tag_deleted_out_of_band_is_drift_on_role_tag_and_repaired(net):
    """Deleting the ELB role tag shows as drift on RoleTag (not as a tag) and update tags the subnet again."""
    subnet_id = net.observed["subnet/public-a"].id
    net.ec2.delete_tags(Resources=[subnet_id], Tags=[{"Key": ELB}])
    drifted = net.read_one("subnet/public-a")
    assert drifted.fields["RoleTag"] is None
    assert net.changed("subnet/public-a", drifted) == ["RoleTag"]
    assert net.update("subnet/public-a", drifted).fields["RoleTag"] == ELB
    assert net.tags_of(subnet_id)[ELB] == "1"
    assert net.diff("subnet/public-a", net.read_one("subnet/public-a")) == []


def test_a_second_role_added_out_of_band_is_removed(net):
    """A public subnet also tagged internal-elb is drift, and update leaves only the public role."""
    subnet_id = net.observed["subnet/public-a"].id
    net.ec2.create_tags(Resources=[subnet_id], Tags=[{"Key": INTERNAL_ELB, "Value": "1"}])
    drifted = net.read_one("subnet/public-a")
    assert net.changed("subnet/public-a", drifted) == ["RoleTag"]
    net.update("subnet/public-a", drifted)
    tags = net.tags_of(subnet_id)
    assert tags[ELB] == "1"
    assert INTERNAL_ELB not in tags
    assert net.diff("subnet/public-a", net.read_one("subnet/public-a")) == []


def test_removed_user_tag_is_put_back(net):
    """A user tag deleted out of band is tag drift, repaired by update(changed=["tags"])."""
    assert_tag_drift_repaired(net, "subnet/private-a")


def test_deleted_subnet_is_no_longer_read_and_deleting_twice_is_fine(net):
    """After delete the subnet is gone from read(); a second delete succeeds."""
    observed = assert_delete_is_idempotent(net, "subnet/private-a")
    assert net.ec2.describe_subnets(Filters=[{"Name": "subnet-id", "Values": [observed.id]}])["Subnets"] == []


def test_untagged_subnet_stays_with_its_role_tag_but_is_no_longer_ours(net):
    """Untag removes our ownership tags only: the subnet and its load-balancer role tag stay."""
    subnet_id = assert_untag_releases(net, "subnet/public-a")
    assert net.tags_of(subnet_id)[ELB] == "1"


@pytest.mark.parametrize("instance", [None, "another-driftwarden"])
def test_subnet_without_our_managed_by_tag_is_never_read(net, instance):
    """A subnet tagged like ours but not managed by this instance is invisible to read()."""
    foreign = net.ec2.create_subnet(
        VpcId=net.observed["vpc"].id, CidrBlock="10.20.250.0/24", AvailabilityZone="us-east-1b",
        TagSpecifications=[{"ResourceType": "subnet", "Tags": foreign_tags(instance)}],
    )["Subnet"]["SubnetId"]
    ids = {o.id for o in net.provider("subnet/public-a").read(net.ctx)}
    assert ids == {net.observed["subnet/public-a"].id, net.observed["subnet/private-a"].id}
    assert foreign not in ids


def test_moving_a_subnet_to_another_zone_is_a_plan_error(net):
    """A changed availability zone is never applied: the plan names AvailabilityZone and why."""
    observed = net.read_one("subnet/private-a")
    moved = cluster_resources(MANIFEST + "  availabilityZones: [us-east-1c, us-east-1d]\n")["subnet/private-a"]
    plan = make_plan([moved], [observed], providers=default_providers())
    assert plan.changes == []
    assert [e.field for e in plan.errors] == ["AvailabilityZone"]
    assert "availability zone" in plan.errors[0].message
