"""The NAT gateway provider (`ec2.nat-gateway`) against moto's server over HTTP.

moto makes NAT gateways `available` at once. The ThreadedMotoServer runs in this process, so
the tests that need AWS to be "still working" set the gateway's state in moto's backend, the
way AWS moves it along (pending -> available).
"""

from __future__ import annotations

import dataclasses

import pytest
from moto.backends import get_backend
from moto.ec2.models.nat_gateways import NatGateway
from test_ec2_support import (
    ACCOUNT,
    REGION,
    assert_contract,
    assert_delete_is_idempotent,
    assert_tag_drift_repaired,
    assert_untag_releases,
    foreign_tags,
    make_network,
)

from driftwarden.engine.apply import Applier, ApplySettings
from driftwarden.engine.plan import Change, make_plan

NAT = "nat-gateway/a"
DEPENDENCIES = ("vpc", "subnet/public-a", "internet-gateway", "elastic-ip/nat-a")


def set_state(gateway_id: str, state: str) -> None:
    get_backend("ec2")[ACCOUNT][REGION].nat_gateways[gateway_id].state = state


@pytest.fixture
def net(request, monkeypatch):
    network = make_network(request, monkeypatch)
    network.create(*DEPENDENCIES)
    return network


@pytest.fixture
def created(net):
    net.create(NAT)
    return net


@pytest.fixture
def starts_pending(monkeypatch):
    """moto's new NAT gateways start `pending`, as AWS's do."""
    original = NatGateway.__init__

    def pending_init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.state = "pending"

    monkeypatch.setattr(NatGateway, "__init__", pending_init)


def test_created_gateway_reads_back_without_diff_and_rereading_mutates_nothing(created):
    """Create then read gives an empty diff (subnet and Elastic IP); re-reading mutates nothing."""
    net = created
    observed = assert_contract(net, NAT)
    assert observed.fields == {
        "SubnetId": net.observed["subnet/public-a"].id,
        "AllocationId": net.observed["elastic-ip/nat-a"].id,
    }
    assert observed.status == "ready"
    assert observed.attributes == {"id": observed.id}


def test_gateway_is_pending_until_aws_reports_it_available(net, starts_pending):
    """Create reports "pending" while AWS works, refresh keeps saying so, then "ready" once available."""
    created = net.create(NAT)
    assert (created.status, created.state) == ("pending", "pending")
    provider = net.provider(NAT)
    assert provider.refresh(net.ctx, created).status == "pending"
    set_state(created.id, "available")
    refreshed = provider.refresh(net.ctx, created)
    assert (refreshed.status, refreshed.state) == ("ready", "available")


def test_engine_waits_for_a_pending_gateway_before_reporting_it_applied(net, starts_pending):
    """The applier polls refresh while the gateway is pending and reports it applied once available."""
    resource = net.resources[NAT]
    polls: list[str] = []

    def aws_finishes_on_second_poll(_seconds: float) -> None:
        polls.append("poll")
        if len(polls) == 2:
            (gateway_id,) = get_backend("ec2")[ACCOUNT][REGION].nat_gateways
            set_state(gateway_id, "available")

    applier = Applier(net.sessions, "driftwarden", list(net.observed.values()), {ACCOUNT: resource.account},
                      providers=net.providers, settings=ApplySettings(poll_seconds=0),
                      sleep=aws_finishes_on_second_poll)
    change = Change("create", resource.key, resource.type, resource.owner, ACCOUNT, REGION, "does not exist",
                    resource=resource)
    (outcome,) = applier.run([change])
    assert (outcome.result, outcome.message) == ("applied", "")
    assert len(polls) == 2
    assert net.read_one(NAT).status == "ready"


@pytest.mark.parametrize(("state", "status"), [("failed", "failed"), ("deleting", "deleting")])
def test_failed_and_deleting_gateways_read_with_that_status(created, state, status):
    """A gateway AWS reports failed or deleting is read with the engine's matching status."""
    set_state(created.observed[NAT].id, state)
    observed = created.read_one(NAT)
    assert (observed.status, observed.state) == (status, state)


def test_address_change_is_a_plan_error(created):
    """A NAT gateway whose Elastic IP would change is never replaced in place: the plan names AllocationId."""
    net = created
    eip = net.read_one("elastic-ip/nat-a")
    new_eip = dataclasses.replace(eip, attributes={"id": "eipalloc-0new", "AllocationId": "eipalloc-0new"})
    plan = make_plan([net.resources["elastic-ip/nat-a"], net.resources[NAT]], [new_eip, net.read_one(NAT)],
                     providers=net.providers)
    assert plan.changes == []
    assert [e.field for e in plan.errors] == ["AllocationId"]
    assert "Elastic IP cannot be swapped" in plan.errors[0].message


def test_removed_user_tag_is_put_back(created):
    """A user tag deleted out of band is tag drift, repaired by update(changed=["tags"])."""
    assert_tag_drift_repaired(created, NAT)


def test_deleted_gateway_is_no_longer_read_and_deleting_twice_is_fine(created):
    """After delete the gateway (deleted, though AWS still lists it) is gone from read(); a second delete succeeds."""
    observed = assert_delete_is_idempotent(created, NAT)
    listed = created.ec2.describe_nat_gateways(NatGatewayIds=[observed.id])["NatGateways"]
    assert [g["State"] for g in listed] == ["deleted"]


def test_untagged_gateway_stays_but_is_no_longer_ours(created):
    """Untag keeps the gateway available but removes our ownership tags."""
    gateway_id = assert_untag_releases(created, NAT)
    assert created.ec2.describe_nat_gateways(NatGatewayIds=[gateway_id])["NatGateways"][0]["State"] == "available"


@pytest.mark.parametrize("instance", [None, "another-driftwarden"])
def test_gateway_without_our_managed_by_tag_is_never_read(created, instance):
    """A gateway not managed by this instance is invisible to read(), though moto ignores the tag filter."""
    net = created
    eip = net.ec2.allocate_address(Domain="vpc")["AllocationId"]
    foreign = net.ec2.create_nat_gateway(
        SubnetId=net.observed["subnet/public-a"].id, AllocationId=eip,
        TagSpecifications=[{"ResourceType": "natgateway", "Tags": foreign_tags(instance)}],
    )["NatGateway"]["NatGatewayId"]
    ids = {o.id for o in net.provider(NAT).read(net.ctx)}
    assert ids == {net.observed[NAT].id}
    assert foreign not in ids
