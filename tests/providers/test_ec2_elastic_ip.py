"""The Elastic IP provider (`ec2.elastic-ip`) against moto's server over HTTP."""

from __future__ import annotations

import dataclasses

import pytest
from test_ec2_support import (
    assert_contract,
    assert_delete_is_idempotent,
    assert_tag_drift_repaired,
    assert_untag_releases,
    foreign_tags,
    make_network,
)

from driftwarden.engine.plan import make_plan

EIP = "elastic-ip/nat-a"


@pytest.fixture
def net(request, monkeypatch):
    network = make_network(request, monkeypatch)
    network.create(EIP)
    return network


def test_allocated_address_reads_back_without_diff_and_rereading_mutates_nothing(net):
    """Allocate then read gives an empty diff and the AllocationId other resources refer to."""
    observed = assert_contract(net, EIP)
    assert observed.fields == {"Domain": "vpc"}
    assert observed.id.startswith("eipalloc-")
    assert observed.attributes["AllocationId"] == observed.attributes["id"] == observed.id


def test_a_different_domain_is_a_plan_error(net):
    """An address of ours outside the VPC domain is never "fixed" in place: the plan names Domain and why.

    (moto cannot allocate a tagged EC2-Classic address, and AWS has retired them, so the
    observed side is our real address with its domain changed.)
    """
    observed = net.read_one(EIP)
    classic = dataclasses.replace(observed, fields={"Domain": "standard"})
    plan = make_plan([net.resources[EIP]], [classic], providers=net.providers)
    assert plan.changes == []
    assert [e.field for e in plan.errors] == ["Domain"]
    assert "cannot move between EC2-Classic and VPC" in plan.errors[0].message


def test_removed_user_tag_is_put_back(net):
    """A user tag deleted out of band is tag drift, repaired by update(changed=["tags"])."""
    assert_tag_drift_repaired(net, EIP)


def test_released_address_is_no_longer_read_and_releasing_twice_is_fine(net):
    """Delete releases the address, read() no longer returns it, and a second delete succeeds."""
    observed = assert_delete_is_idempotent(net, EIP)
    addresses = net.ec2.describe_addresses(Filters=[{"Name": "allocation-id", "Values": [observed.id]}])
    assert addresses["Addresses"] == []


def test_untagged_address_stays_allocated_but_is_no_longer_ours(net):
    """Untag keeps the address allocated but removes our ownership tags."""
    allocation_id = assert_untag_releases(net, EIP)
    assert net.ec2.describe_addresses(AllocationIds=[allocation_id])["Addresses"][0]["AllocationId"] == allocation_id


@pytest.mark.parametrize("instance", [None, "another-driftwarden"])
def test_address_without_our_managed_by_tag_is_never_read(net, instance):
    """An address tagged like ours but not managed by this instance is invisible to read()."""
    foreign = net.ec2.allocate_address(
        Domain="vpc", TagSpecifications=[{"ResourceType": "elastic-ip", "Tags": foreign_tags(instance)}]
    )["AllocationId"]
    ids = {o.id for o in net.provider(EIP).read(net.ctx)}
    assert ids == {net.observed[EIP].id}
    assert foreign not in ids
