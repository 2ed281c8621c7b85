"""What the EC2 network providers share: listing, tag filters, not-found handling, states.

The VPC, subnet, internet gateway, Elastic IP, NAT gateway, route table and security group
providers (one module each) all speak EC2's API, which has the same habits everywhere:

* listings take `Filters` with ``tag:<key>`` — `describe_managed` lists everything this
  instance manages in one paginated call and checks the tag again on our side (moto's
  DescribeNatGateways ignores tag filters; a filter the server silently drops must never make
  us adopt someone else's resource);
* tags are set at creation (`tag_specifications`) and are returned as ``Tags`` lists; later
  they are written and removed by the engine through the EC2 tag style (`tag_styles.EC2`);
* a resource that is already gone answers with a ``*.NotFound`` code (`absent`);
* transitional states (``pending``, ``deleting``...) map onto the engine's `Status`
  (`status_of`).

What it must not do: decide anything about one resource type, or hide AWS errors — `absent`
swallows only the not-found codes it is given.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ClassVar, TypeVar

from driftwarden.engine.graph import TAG_MANAGED_BY
from driftwarden.errors import ProviderError
from driftwarden.providers.aws import paginate
from driftwarden.providers.base import (
    Context,
    Observed,
    Provider,
    Status,
    managed_tag_filter,
    tag_list,
    tag_map,
)

T = TypeVar("T")

SERVICE = "ec2"

# AWS's words for a resource that is on its way. EC2 uses lower case throughout.
_PENDING_STATES = frozenset(
    {"pending", "creating", "modifying", "associating", "attaching", "updating"}
)
_FAILED_STATES = frozenset({"failed"})
_DELETING_STATES = frozenset({"deleting", "disassociating", "detaching", "shutting-down"})
# Still listed for a while after deletion (NAT gateways: about an hour), but gone for us.
GONE_STATES = frozenset({"deleted", "terminated"})


def status_of(state: str | None) -> Status:
    """The engine's status for an EC2 state; a resource without a state is usable."""
    word = (state or "").lower()
    if word in _PENDING_STATES:
        return "pending"
    # Subnets also say "failed-insufficient-capacity".
    if word in _FAILED_STATES or word.startswith("failed"):
        return "failed"
    if word in _DELETING_STATES or word in GONE_STATES:
        return "deleting"
    return "ready"


def client_token(*parts: str) -> str:
    """A deterministic idempotency token (EC2 allows up to 64 ASCII characters).

    Derived from the resource key (and whatever else must make a new resource a different
    request), so a create retried after a crash or a lost response returns the first one.
    """
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


def describe_managed(
    ctx: Context,
    operation: str,
    result_key: str,
    *,
    filters: Iterable[Mapping[str, Any]] = (),
    paginated: bool = True,
    **params: Any,
) -> list[dict[str, Any]]:
    """Every item of `operation` (method spelling: ``describe_vpcs``) tagged as managed by `ctx.instance`, in one batched listing.

    The tag filter runs on the server; the same check runs again here because a server that
    ignores a filter (moto for NAT gateways) must not make us list resources that are not ours.
    """
    client = ctx.client(SERVICE)
    all_filters = [*managed_tag_filter(ctx.instance), *(dict(f) for f in filters)]
    if paginated:
        items: Iterable[dict[str, Any]] = paginate(
            client, operation, result_key, Filters=all_filters, **params
        )
    else:
        # Some listings (DescribeAddresses) have no pages: AWS returns everything at once.
        items = getattr(client, operation)(Filters=all_filters, **params).get(result_key, [])
    return [item for item in items if tag_map(item.get("Tags")).get(TAG_MANAGED_BY) == ctx.instance]


def first_or_absent(read: Callable[[], list[T]], not_found: Iterable[str]) -> T | None:
    """The first item `read` returns, or None when there is none or EC2 says it does not exist.

    What every EC2 provider's `refresh` needs: a describe by id answers not-found (rather than
    an empty list) once the resource is gone.
    """
    try:
        found = read()
    except ProviderError as exc:
        if is_absent(exc, not_found):
            return None
        raise
    return found[0] if found else None


def tag_specifications(resource_type: str, tags: Mapping[str, str]) -> list[dict[str, Any]]:
    """`TagSpecifications` for a create call: tagged from the first moment it exists."""
    return [{"ResourceType": resource_type, "Tags": tag_list(tags)}]


def is_absent(error: BaseException, codes: Iterable[str]) -> bool:
    """Whether an error (already mapped by `aws.py`) says the resource does not exist."""
    return isinstance(error, ProviderError) and error.code in set(codes)


@contextmanager
def absent(*codes: str) -> Iterator[None]:
    """Treat the given AWS error codes as "already gone"; every other error goes through."""
    try:
        yield
    except ProviderError as exc:
        if exc.code not in codes:
            raise


class Ec2Provider(Provider):
    """What every EC2 type shares: reading by its declared `Enumeration` with our tag filter.

    A subclass says how one listed item becomes an `Observed` (`from_aws`); `read` lists
    every managed item of the place in one batched call, and `refresh` asks for one by id
    (the enumeration's `id_param`), not-found meaning gone.
    """

    # Extra server-side filters of the listing (NAT gateways: live states only).
    listing_filters: ClassVar[tuple[Mapping[str, Any], ...]] = ()
    # Some listings (DescribeAddresses) have no pages: AWS returns everything at once.
    paginated: ClassVar[bool] = True

    def from_aws(self, item: Mapping[str, Any]) -> Observed:
        """One item of the listing as an `Observed`."""
        raise NotImplementedError(f"{self.type} reads its resources its own way")

    def describe(self, ctx: Context, **params: Any) -> list[dict[str, Any]]:
        """Items of the declared listing managed by `ctx.instance`, narrowed by `params`."""
        listing = self.info.enumeration
        return describe_managed(ctx, listing.operation, listing.result_key, filters=self.listing_filters,
                                paginated=self.paginated, **params)

    def read(self, ctx: Context) -> list[Observed]:
        return [self.from_aws(item) for item in self.describe(ctx)]

    def refresh(self, ctx: Context, observed: Observed) -> Observed | None:
        id_param = self.info.enumeration.id_param
        if id_param is None:
            return super().refresh(ctx, observed)
        found = first_or_absent(lambda: self.describe(ctx, **{id_param: [observed.id]}), self.info.not_found)
        return self.from_aws(found) if found else None
