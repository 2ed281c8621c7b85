"""`rds.db-subnet-group`: the DB subnet group of a cluster's metadata database.

What it owns: one DB subnet group per Cluster (named by `graph.physical_name`, always
``driftwarden-...``) spanning the cluster's private subnets; its description, its subnets and
its tags.

What it must not do: touch a group without our managed-by tag (the default group and groups of
other tools live in the same account), or rename a group (AWS cannot: a new name is a new group).
Deleting a group that a DB instance still uses is refused by AWS; the engine deletes the
instance first (reverse creation order) and retries the group on a later cycle.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from driftwarden.engine.graph import TAG_MANAGED_BY, Resource
from driftwarden.errors import NotFoundError, ProviderError
from driftwarden.providers import tag_styles, tagging
from driftwarden.providers.aws import paginate
from driftwarden.providers.base import (
    Context,
    Enumeration,
    Observed,
    Provider,
    TypeInfo,
    carries_ownership,
    tag_list,
    tag_map,
)

# Every group driftwarden creates is named `driftwarden-<cluster>` (graph.py), whatever the
# instance name. Groups without the prefix cannot be ours, so their tags are never fetched.
NAME_PREFIX = "driftwarden-"

_ALREADY_EXISTS = "DBSubnetGroupAlreadyExists"


def sorted_ids(values: Iterable[Any]) -> tuple[Any, ...]:
    """Ids as a sorted tuple; left in order while some are still unresolved (not strings)."""
    items = tuple(values)
    return tuple(sorted(items)) if all(isinstance(v, str) for v in items) else items


def lower_name(value: Any) -> Any:
    # RDS stores subnet group names in lower case, whatever case they were created with.
    return value.lower() if isinstance(value, str) else value


class DbSubnetGroupProvider(Provider):
    info = TypeInfo(
        type="rds.db-subnet-group",
        service="rds",
        enumeration=Enumeration("describe_db_subnet_groups", "DBSubnetGroups", "DBSubnetGroupName"),
        not_found=("DBSubnetGroupNotFoundFault",),
        tag_style=tag_styles.RDS,
        create_order=110,
        permissions={
            "read": ("rds:DescribeDBSubnetGroups", "rds:ListTagsForResource", tagging.PERMISSION),
            # Tags given to a create call are authorised as rds:AddTagsToResource as well.
            "create": ("rds:CreateDBSubnetGroup", "rds:AddTagsToResource", "rds:DescribeDBSubnetGroups",
                       "rds:ListTagsForResource"),
            "update": ("rds:ModifyDBSubnetGroup", "rds:DescribeDBSubnetGroups", "rds:ListTagsForResource"),
            "delete": ("rds:DeleteDBSubnetGroup",),
        },
        managed_fields=("DBSubnetGroupName", "DBSubnetGroupDescription", "SubnetIds"),
        immutable={"DBSubnetGroupName": "a DB subnet group cannot be renamed"},
    )

    def normalize_desired(self, desired: Mapping[str, Any]) -> dict[str, Any]:
        result = dict(desired)
        result["DBSubnetGroupName"] = lower_name(result.get("DBSubnetGroupName"))
        result["SubnetIds"] = sorted_ids(result.get("SubnetIds", ()))
        return result

    # -- reading ----------------------------------------------------------------------------

    def read(self, ctx: Context) -> list[Observed]:
        # One paginated listing for the whole region. DescribeDBSubnetGroups has no tag filter
        # and returns no tags, and RDS offers no batched tag read: tags come from the tagging
        # index (unconfirmed, see tagging.py), and only a group with our name prefix that the
        # index does not list yet is asked for its own.
        rds = ctx.client("rds")
        indexed = tagging.tags_by_arn(ctx, "rds:subgrp")
        found = []
        for group in paginate(rds, "describe_db_subnet_groups", "DBSubnetGroups"):
            if not group["DBSubnetGroupName"].startswith(NAME_PREFIX):
                continue
            tags = indexed.get(group["DBSubnetGroupArn"])
            confirmed = tags is None
            if tags is None:
                tags = self._tags(rds, group["DBSubnetGroupArn"])
            if tags is None or tags.get(TAG_MANAGED_BY) != ctx.instance:
                continue
            found.append(self._observed(group, tags, confirmed=confirmed))
        return found

    def refresh(self, ctx: Context, observed: Observed) -> Observed | None:
        return self._read_one(ctx.client("rds"), observed.id)

    def _read_one(self, rds: Any, name: str) -> Observed | None:
        try:
            groups = rds.describe_db_subnet_groups(DBSubnetGroupName=name)["DBSubnetGroups"]
        except NotFoundError:
            return None
        for group in groups:
            tags = self._tags(rds, group["DBSubnetGroupArn"])
            if tags is not None:
                return self._observed(group, tags)
        return None

    @staticmethod
    def _tags(rds: Any, arn: str) -> dict[str, str] | None:
        try:
            return tag_map(rds.list_tags_for_resource(ResourceName=arn).get("TagList"))
        except NotFoundError:
            return None  # deleted between the listing and this call: absent

    def _observed(self, group: Mapping[str, Any], tags: Mapping[str, str], *, confirmed: bool = True) -> Observed:
        name = group["DBSubnetGroupName"]
        state = group.get("SubnetGroupStatus", "")
        return Observed(
            type=self.type,
            id=name,
            fields={
                "DBSubnetGroupName": name,
                "DBSubnetGroupDescription": group.get("DBSubnetGroupDescription", ""),
                "SubnetIds": sorted_ids(s["SubnetIdentifier"] for s in group.get("Subnets", [])),
            },
            tags=dict(tags),
            attributes={"id": name, "DBSubnetGroupName": name, "Arn": group["DBSubnetGroupArn"]},
            # "Complete" is the only state AWS reports for a usable group.
            status="ready" if state in ("Complete", "") else "pending",
            state=state,
            confirmed=confirmed,
        )

    # -- changing ---------------------------------------------------------------------------

    def create(self, ctx: Context, resource: Resource, desired: Mapping[str, Any]) -> Observed:
        rds = ctx.client("rds")
        name = desired["DBSubnetGroupName"]
        try:
            group = rds.create_db_subnet_group(
                DBSubnetGroupName=name,
                DBSubnetGroupDescription=desired["DBSubnetGroupDescription"],
                SubnetIds=list(desired["SubnetIds"]),
                Tags=tag_list(resource.tags),
            )["DBSubnetGroup"]
        except ProviderError as e:
            # No client tokens in RDS; the name is deterministic instead. A retry of a create that
            # did succeed finds our own group: that is success, anyone else's is an error.
            if e.code != _ALREADY_EXISTS:
                raise
            existing = self._read_one(rds, name)
            if existing is None or not carries_ownership(existing.tags, resource):
                raise
            return existing
        # CreateDBSubnetGroup answers without tags; they are the ones just given.
        return self._observed(group, resource.tags)

    def update(
        self, ctx: Context, resource: Resource, desired: Mapping[str, Any], observed: Observed, changed: list[str]
    ) -> Observed:
        rds = ctx.client("rds")
        if {"DBSubnetGroupDescription", "SubnetIds"} & set(changed):
            # ModifyDBSubnetGroup always takes the full subnet list.
            rds.modify_db_subnet_group(
                DBSubnetGroupName=observed.id,
                DBSubnetGroupDescription=desired["DBSubnetGroupDescription"],
                SubnetIds=list(desired["SubnetIds"]),
            )
        current = self._read_one(rds, observed.id)
        if current is None:
            raise NotFoundError(f"DB subnet group {observed.id} disappeared while being updated")
        return current

    def delete(self, ctx: Context, observed: Observed) -> None:
        try:
            ctx.client("rds").delete_db_subnet_group(DBSubnetGroupName=observed.id)
        except NotFoundError:
            return  # already gone
