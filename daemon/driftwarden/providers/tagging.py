"""Tags of many resources in one listing: the Resource Groups Tagging API (`tag:GetResources`).

Some services return no tags with their listings and have no batch tag read: SSM's
DescribeParameters and RDS's DescribeDBSubnetGroups among them. Asking each resource for its
tags makes a plan cost one call per resource. `tag:GetResources` answers for every resource of
a type in an (account, region) in pages of 100, filtered server-side by our managed-by tag.

The catch: that index is eventually consistent (AWS documents minutes). Tags written by the
last apply may not be in it yet, and tags removed out of band may still be. So what comes from
the index is marked unconfirmed (`Observed.confirmed = False`), and the engine re-reads a
resource with the provider's authoritative per-resource read before it plans to act on it
(`observe.confirm`). A no-change plan, the steady state, costs one listing per place; a resource
the index does not list yet is read per resource at once.

What it must not do: decide ownership from the index alone when acting: a stale index can show
our tags on a resource that was released (untagged) a minute ago.
"""

from __future__ import annotations

from collections.abc import Mapping

from driftwarden.engine.graph import TAG_MANAGED_BY
from driftwarden.providers.aws import paginate
from driftwarden.providers.base import Context, tag_map

SERVICE = "resourcegroupstaggingapi"
PERMISSION = "tag:GetResources"
# The API's largest page.
_PAGE = 100


def tags_by_arn(ctx: Context, resource_type: str) -> Mapping[str, dict[str, str]]:
    """Tags of every resource of `resource_type` (``ssm:parameter``) carrying our managed-by tag."""
    client = ctx.client(SERVICE)
    found = paginate(
        client,
        "get_resources",
        "ResourceTagMappingList",
        ResourceTypeFilters=[resource_type],
        TagFilters=[{"Key": TAG_MANAGED_BY, "Values": [ctx.instance]}],
        ResourcesPerPage=_PAGE,
    )
    return {item["ResourceARN"]: tag_map(item.get("Tags")) for item in found}
