"""The security group provider (`ec2.security-group`) against moto's server over HTTP."""

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
from driftwarden.errors import ProviderError
from driftwarden.providers.base import converge

SG = "security-group/cluster"


@pytest.fixture
def net(request, monkeypatch):
    network = make_network(request, monkeypatch)
    network.create("vpc", SG)
    return network


def group(net):
    return net.ec2.describe_security_groups(GroupIds=[net.observed[SG].id])["SecurityGroups"][0]


def self_rule(group_id):
    return [{"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": group_id}]}]


def allows_self(net):
    group_id = net.observed[SG].id
    return any(
        p["IpProtocol"] == "-1" and any(pair["GroupId"] == group_id for pair in p.get("UserIdGroupPairs", []))
        for p in group(net)["IpPermissions"]
    )


def test_created_group_reads_back_without_diff_and_rereading_mutates_nothing(net):
    """Create then read gives an empty diff (name, description, self rule); re-reading mutates nothing."""
    observed = assert_contract(net, SG)
    assert observed.fields == {
        "VpcId": net.observed["vpc"].id,
        "GroupName": "driftwarden-net-cluster",
        "Description": "driftwarden cluster net: EKS, nodes and the metadata database",
        "IngressSelf": True,
    }
    assert allows_self(net)


def test_self_rule_revoked_out_of_band_is_seen_and_restored(net):
    """Revoking the self-referencing rule shows as drift on IngressSelf, and update authorises it again."""
    group_id = net.observed[SG].id
    net.ec2.revoke_security_group_ingress(GroupId=group_id, IpPermissions=self_rule(group_id))
    drifted = net.read_one(SG)
    assert drifted.fields["IngressSelf"] is False
    assert net.changed(SG, drifted) == ["IngressSelf"]
    assert net.update(SG, drifted).fields["IngressSelf"] is True
    assert allows_self(net)
    assert net.diff(SG, net.read_one(SG)) == []


def test_update_to_no_self_rule_revokes_only_that_rule(net):
    """With IngressSelf false, update revokes the self rule and leaves rules of others alone."""
    group_id = net.observed[SG].id
    https = {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}
    net.ec2.authorize_security_group_ingress(GroupId=group_id, IpPermissions=[https])
    observed = net.read_one(SG)
    desired = {**net.desired(SG), "IngressSelf": False}
    returned = converge(net.provider(SG), net.ctx, net.resources[SG], desired, observed, ["IngressSelf"])
    assert returned.fields["IngressSelf"] is False
    assert not allows_self(net)
    assert [(p["IpProtocol"], p.get("FromPort")) for p in group(net)["IpPermissions"]] == [("tcp", 443)]
    assert net.read_one(SG).fields["IngressSelf"] is False


def test_rules_added_by_others_cause_no_drift(net):
    """Extra ingress rules, including a narrower self rule, are not ours: read reports no drift."""
    group_id = net.observed[SG].id
    narrower = {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "UserIdGroupPairs": [{"GroupId": group_id}]}
    net.ec2.authorize_security_group_ingress(GroupId=group_id, IpPermissions=[narrower])
    assert net.diff(SG, net.read_one(SG)) == []


def test_narrower_self_rule_alone_is_not_all_traffic(net):
    """A self rule for one port only does not count as IngressSelf: dropping the all-traffic rule is drift."""
    group_id = net.observed[SG].id
    narrower = {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "UserIdGroupPairs": [{"GroupId": group_id}]}
    net.ec2.authorize_security_group_ingress(GroupId=group_id, IpPermissions=[narrower])
    net.ec2.revoke_security_group_ingress(GroupId=group_id, IpPermissions=self_rule(group_id))
    assert net.changed(SG, net.read_one(SG)) == ["IngressSelf"]


def test_create_retried_after_a_crash_adopts_its_own_group(net):
    """A second create of the same resource finds the group its first attempt made (the name is taken) instead of failing."""
    again = net.provider(SG).create(net.ctx, net.resources[SG], net.desired(SG))
    assert again.id == net.observed[SG].id
    assert len(net.read(SG)) == 1
    assert allows_self(net)


def test_create_never_adopts_someone_elses_group_with_our_name(request, monkeypatch):
    """When a group that is not ours already has the name, create fails rather than taking it over."""
    net = make_network(request, monkeypatch)
    net.create("vpc")
    desired = net.desired(SG)
    net.ec2.create_security_group(GroupName=desired["GroupName"], Description="theirs", VpcId=desired["VpcId"])
    with pytest.raises(ProviderError) as failure:
        net.provider(SG).create(net.ctx, net.resources[SG], desired)
    assert failure.value.code == "InvalidGroup.Duplicate"
    assert net.read(SG) == []


def test_changed_group_name_is_a_plan_error(net):
    """A renamed group (another cluster name would do it) is never applied: the plan names GroupName and why."""
    observed = net.read_one(SG)
    renamed = dataclasses.replace(net.resources[SG], desired={**net.resources[SG].desired, "GroupName": "other"})
    plan = make_plan([net.resources["vpc"], renamed], [net.read_one("vpc"), observed], providers=net.providers)
    assert plan.changes == []
    assert [e.field for e in plan.errors] == ["GroupName"]
    assert "cannot be renamed" in plan.errors[0].message


def test_removed_user_tag_is_put_back(net):
    """A user tag deleted out of band is tag drift, repaired by update(changed=["tags"])."""
    assert_tag_drift_repaired(net, SG)


def test_deleted_group_is_no_longer_read_and_deleting_twice_is_fine(net):
    """After delete the group is gone from read(); a second delete succeeds."""
    observed = assert_delete_is_idempotent(net, SG)
    assert net.ec2.describe_security_groups(Filters=[{"Name": "group-id", "Values": [observed.id]}])["SecurityGroups"] == []


def test_untagged_group_stays_but_is_no_longer_ours(net):
    """Untag keeps the group and its rule but removes our ownership tags."""
    assert_untag_releases(net, SG)
    assert allows_self(net)


@pytest.mark.parametrize("instance", [None, "another-driftwarden"])
def test_group_without_our_managed_by_tag_is_never_read(net, instance):
    """A group tagged like ours but not managed by this instance (or the VPC's default group) is invisible to read()."""
    foreign = net.ec2.create_security_group(
        GroupName="foreign", Description="foreign", VpcId=net.observed["vpc"].id,
        TagSpecifications=[{"ResourceType": "security-group", "Tags": foreign_tags(instance)}],
    )["GroupId"]
    ids = {o.id for o in net.provider(SG).read(net.ctx)}
    assert ids == {net.observed[SG].id}
    assert foreign not in ids
