"""SSM parameters (`ssm.parameter`): a Deployment's rendered configuration, for in-cluster tooling.

What it owns: one String parameter per Deployment whose value is the rendered configuration
JSON (no secret values: those live in the Deployment's secret), its type and tier. The value is
compared as the exact text: that text is what consumers read.

A read is three batched listings, never one call per parameter: DescribeParameters with a
server-side tag filter (names, type, tier; it decides which parameters are ours), GetParameters
in batches of 10 names (the API's limit; it has no other bulk read of values), and the tags of
all of them from the Resource Groups Tagging API (`tagging.py`; DescribeParameters returns no
tags and SSM has no batch tag read). That index is eventually consistent, so its tags are marked
unconfirmed and the engine re-reads a parameter with ListTagsForResource before acting on it; a
parameter the index does not list yet is asked for its tags at once.

What it must not do: write SecureString parameters or put secret values in one.
"""

from __future__ import annotations

from collections.abc import Mapping
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

# GetParameters accepts at most 10 names per call.
_GET_BATCH = 10
# What SSM answers for the tags of a parameter that is gone.
_GONE_CODES = frozenset({"InvalidResourceId", "ParameterNotFound"})

_READ = ("ssm:DescribeParameters", "ssm:GetParameters", "ssm:ListTagsForResource", tagging.PERMISSION)


class SsmParameter(Provider):
    info = TypeInfo(
        type="ssm.parameter",
        service="ssm",
        enumeration=Enumeration("describe_parameters", "Parameters", "Name"),
        not_found=tuple(sorted(_GONE_CODES)),
        tag_style=tag_styles.SSM_PARAMETER,
        create_order=140,
        permissions={
            "read": _READ,
            # AddTagsToResource is what AWS checks for the Tags of PutParameter, and is called when
            # a create finds the parameter already there from an interrupted create of ours.
            "create": ("ssm:PutParameter", "ssm:AddTagsToResource", *_READ),
            "update": ("ssm:PutParameter", *_READ),
            "delete": ("ssm:DeleteParameter",),
        },
        managed_fields=("Name", "Type", "Tier", "Value"),
        immutable={"Name": "SSM parameter names cannot change"},
    )

    def check_update(self, desired: Mapping[str, Any], observed: Observed) -> str | None:
        if observed.fields.get("Tier") == "Advanced" and desired.get("Tier") == "Standard":
            # SSM can raise a parameter's tier in place but never lower it.
            return (f"SSM parameter {observed.id} is Advanced and AWS cannot make it Standard again; "
                    "delete it so that driftwarden creates it anew")
        return None

    # -- reading -------------------------------------------------------------------------------

    def read(self, ctx: Context) -> list[Observed]:
        tag_filter = [{"Key": f"tag:{TAG_MANAGED_BY}", "Values": [ctx.instance]}]
        return self._read(ctx.client("ssm"), tag_filter, ctx.instance, tagging.tags_by_arn(ctx, "ssm:parameter"))

    def refresh(self, ctx: Context, observed: Observed) -> Observed | None:
        return self._read_one(ctx.client("ssm"), observed.id, ctx.instance)

    def _read_one(self, ssm: Any, name: str, instance: str) -> Observed | None:
        found = self._read(ssm, [{"Key": "Name", "Option": "Equals", "Values": [name]}], instance)
        return found[0] if found else None

    def _read(
        self,
        ssm: Any,
        parameter_filters: list[dict[str, Any]],
        instance: str,
        indexed: Mapping[str, dict[str, str]] | None = None,
    ) -> list[Observed]:
        """Parameters matching the filters; tags from `indexed` (unconfirmed) where it has them."""
        metadata = {p["Name"]: p for p in paginate(ssm, "describe_parameters", "Parameters",
                                                   ParameterFilters=parameter_filters,
                                                   PaginationConfig={"PageSize": 50})}
        names = sorted(metadata)
        values: dict[str, Mapping[str, Any]] = {}
        for start in range(0, len(names), _GET_BATCH):
            # Names deleted since the listing come back under InvalidParameters: absent.
            response = ssm.get_parameters(Names=names[start : start + _GET_BATCH])
            values.update({p["Name"]: p for p in response.get("Parameters", [])})
        found = []
        for name in names:
            if name not in values:
                continue
            meta, current = metadata[name], values[name]
            arn = current.get("ARN") or meta.get("ARN", "")
            tags = indexed.get(arn) if indexed is not None else None
            confirmed = tags is None
            if tags is None:
                tags = self._tags(ssm, name)
            if tags is None or tags.get(TAG_MANAGED_BY) != instance:
                continue
            fields = {
                "Name": name,
                "Type": current.get("Type", meta.get("Type")),
                "Tier": meta.get("Tier", "Standard"),
                "Value": current["Value"],
            }
            found.append(Observed(self.type, name, fields, tags, {"id": name, "Arn": arn}, confirmed=confirmed))
        return found

    def _tags(self, ssm: Any, name: str) -> dict[str, str] | None:
        try:
            response = ssm.list_tags_for_resource(ResourceType="Parameter", ResourceId=name)
        except ProviderError as exc:
            if isinstance(exc, NotFoundError) or exc.code in _GONE_CODES:
                return None
            raise
        return tag_map(response.get("TagList"))

    def _read_back(self, ssm: Any, name: str, instance: str) -> Observed:
        found = self._read_one(ssm, name, instance)
        if found is None:
            raise NotFoundError(f"SSM parameter {name} disappeared while it was being written")
        return found

    # -- changing ------------------------------------------------------------------------------

    def create(self, ctx: Context, resource: Resource, desired: Mapping[str, Any]) -> Observed:
        ssm = ctx.client("ssm")
        name = desired["Name"]
        try:
            ssm.put_parameter(
                Name=name,
                Type=desired["Type"],
                Tier=desired["Tier"],
                Value=desired["Value"],
                Overwrite=False,
                Tags=tag_list(resource.tags),
            )
        except ProviderError as exc:
            if exc.code != "ParameterAlreadyExists":
                raise
            # SSM has no client token. A parameter with our tags for this very resource is what
            # an interrupted create left behind: finish it. Anyone else's is never overwritten.
            tags = self._tags(ssm, name) or {}
            if not carries_ownership(tags, resource):
                raise
            self._put(ssm, desired)
            self.info.tag_style.put(ctx, Observed(self.type, name, {}, tags), resource.tags)
        return self._read_back(ssm, name, ctx.instance)

    def update(
        self, ctx: Context, resource: Resource, desired: Mapping[str, Any], observed: Observed, changed: list[str]
    ) -> Observed:
        ssm = ctx.client("ssm")
        name = observed.id
        if {"Value", "Type", "Tier"} & set(changed):
            # PutParameter with Overwrite cannot carry tags: those are `converge`'s, separately.
            self._put(ssm, desired)
        return self._read_back(ssm, name, ctx.instance)

    def _put(self, ssm: Any, desired: Mapping[str, Any]) -> None:
        ssm.put_parameter(
            Name=desired["Name"], Type=desired["Type"], Tier=desired["Tier"], Value=desired["Value"], Overwrite=True
        )

    def delete(self, ctx: Context, observed: Observed) -> None:
        try:
            ctx.client("ssm").delete_parameter(Name=observed.id)
        except NotFoundError:
            return
