"""The cluster security group (`ec2.security-group`) and its one managed rule.

Owns: creating the group in the cluster VPC with our tags, the ingress rule that lets members
of the group reach each other on every port and protocol (`IngressSelf`), deleting the group
and releasing it. Name, description and VPC never change in place (AWS cannot change them):
a difference is a plan error.

CreateSecurityGroup has no client token, but a group name is unique per VPC: a create retried
after a crash meets `InvalidGroup.Duplicate` and adopts the group it made the first time, once
it has checked that group carries this resource's key and our managed-by tag.

What it must not do: touch any rule but the self-referencing one (EKS and people add rules of
their own, and AWS adds the default egress rule), or adopt a group that is not ours.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from driftwarden.engine.graph import TAG_COMPONENT, TAG_MANAGED_BY, TAG_OWNER, Resource
from driftwarden.errors import ProviderError
from driftwarden.providers import tag_styles
from driftwarden.providers.base import Context, Enumeration, Observed, TypeInfo, tag_map
from driftwarden.providers.ec2 import (
    SERVICE,
    Ec2Provider,
    absent,
    tag_specifications,
)

# "The rule is already there" / "the rule is already gone": the state we wanted.
_RULE_EXISTS = ("InvalidPermission.Duplicate",)
_RULE_ABSENT = ("InvalidPermission.NotFound",)
_ALL_TRAFFIC = "-1"


class SecurityGroupProvider(Ec2Provider):
    info = TypeInfo(
        type="ec2.security-group",
        service=SERVICE,
        enumeration=Enumeration("describe_security_groups", "SecurityGroups", "GroupId", id_param="GroupIds"),
        not_found=("InvalidGroup.NotFound", "InvalidGroupId.NotFound"),
        tag_style=tag_styles.EC2,
        create_order=80,
        permissions={
            "read": ("ec2:DescribeSecurityGroups",),
            # Tagging at creation (TagSpecifications) is authorised as ec2:CreateTags as well;
            # DescribeSecurityGroups finds the group a crashed attempt made (InvalidGroup.Duplicate).
            "create": (
                "ec2:CreateSecurityGroup",
                "ec2:CreateTags",
                "ec2:AuthorizeSecurityGroupIngress",
                "ec2:DescribeSecurityGroups",
            ),
            "update": ("ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress"),
            "delete": ("ec2:DeleteSecurityGroup",),
        },
        managed_fields=("VpcId", "GroupName", "Description", "IngressSelf"),
        immutable={
            "VpcId": "a security group cannot move to another VPC",
            "GroupName": "a security group cannot be renamed",
            "Description": "AWS cannot change a security group's description",
        },
    )

    def from_aws(self, item: Mapping[str, Any]) -> Observed:
        return _observed(item)

    def create(self, ctx: Context, resource: Resource, desired: Mapping[str, Any]) -> Observed:
        client = ctx.client(SERVICE)
        try:
            group_id = client.create_security_group(
                GroupName=desired["GroupName"],
                Description=desired["Description"],
                VpcId=desired["VpcId"],
                TagSpecifications=tag_specifications("security-group", resource.tags),
            )["GroupId"]
        except ProviderError as exc:
            if exc.code != "InvalidGroup.Duplicate":
                raise
            group_id = _own_duplicate(ctx, resource, desired)
            if group_id is None:
                raise  # someone else's group has the name: a human must sort that out
        if desired["IngressSelf"]:
            _allow_self(ctx, group_id)
        return Observed(
            type=self.type,
            id=group_id,
            fields={
                "VpcId": desired["VpcId"],
                "GroupName": desired["GroupName"],
                "Description": desired["Description"],
                "IngressSelf": bool(desired["IngressSelf"]),
            },
            tags=dict(resource.tags),
            attributes={"id": group_id},
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
        if "IngressSelf" in changed:
            if desired["IngressSelf"]:
                _allow_self(ctx, observed.id)
            else:
                with absent(*_RULE_ABSENT):
                    ctx.client(SERVICE).revoke_security_group_ingress(
                        GroupId=observed.id, IpPermissions=_self_rule(observed.id)
                    )
            fields["IngressSelf"] = bool(desired["IngressSelf"])
        return dataclasses.replace(observed, fields=fields)

    def delete(self, ctx: Context, observed: Observed) -> None:
        # Network interfaces still in the group (EKS, RDS) make AWS refuse; those are deleted
        # first by the engine, and a refusal goes through to be retried on a later run.
        with absent(*self.info.not_found):
            ctx.client(SERVICE).delete_security_group(GroupId=observed.id)


def _self_rule(group_id: str) -> list[dict[str, Any]]:
    return [{"IpProtocol": _ALL_TRAFFIC, "UserIdGroupPairs": [{"GroupId": group_id}]}]


def _allow_self(ctx: Context, group_id: str) -> None:
    with absent(*_RULE_EXISTS):
        ctx.client(SERVICE).authorize_security_group_ingress(
            GroupId=group_id, IpPermissions=_self_rule(group_id)
        )


def _own_duplicate(ctx: Context, resource: Resource, desired: Mapping[str, Any]) -> str | None:
    """The id of the group with our name in our VPC, if it is this very resource of ours."""
    found = ctx.client(SERVICE).describe_security_groups(
        Filters=[
            {"Name": "vpc-id", "Values": [desired["VpcId"]]},
            {"Name": "group-name", "Values": [desired["GroupName"]]},
        ]
    )["SecurityGroups"]
    for group in found:
        tags = tag_map(group.get("Tags"))
        if (
            tags.get(TAG_MANAGED_BY) == ctx.instance
            and tags.get(TAG_OWNER) == resource.owner
            and tags.get(TAG_COMPONENT) == resource.component
        ):
            return str(group["GroupId"])
    return None


def _allows_self(group: Mapping[str, Any]) -> bool:
    group_id = group["GroupId"]
    return any(
        permission.get("IpProtocol") == _ALL_TRAFFIC
        and any(pair.get("GroupId") == group_id for pair in permission.get("UserIdGroupPairs", []))
        for permission in group.get("IpPermissions", [])
    )


def _observed(group: Mapping[str, Any]) -> Observed:
    return Observed(
        type=SecurityGroupProvider.info.type,
        id=group["GroupId"],
        fields={
            "VpcId": group.get("VpcId"),
            "GroupName": group["GroupName"],
            "Description": group.get("Description", ""),
            "IngressSelf": _allows_self(group),
        },
        tags=tag_map(group.get("Tags")),
        attributes={"id": group["GroupId"]},
    )
