"""The contract every AWS resource type implements, and the registry of types.

A provider owns one resource type (`ec2.vpc`, `eks.nodegroup`, ...) and knows how to:

* `read` every resource of its type that this driftwarden instance manages in one
  (account, region) — batched and paginated, with server-side tag filters where the API has
  them; not-found means absent, never an error;
* `create` one (idempotently: client tokens where AWS offers them), `update` the fields that
  can change in place, `delete` one, and `untag` one (what prune does under
  `deletionPolicy: Retain`);
* normalise both sides so that a diff compares like with like (`normalize_desired`, and the
  `fields` of what `read` returns);
* declare the IAM actions it calls (`permissions`), from which `driftwarden iam-policy` is
  generated and which a meta-test checks against the calls it really makes.

Providers never decide *whether* to act (that is the plan) and never catch errors to hide
them: botocore errors are mapped once, in `aws.py`, to driftwarden's own.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from driftwarden.engine.graph import (
    TAG_COMPONENT,
    TAG_DELETION_POLICY,
    TAG_MANAGED_BY,
    TAG_OWNER,
    Resource,
)

Status = Literal["ready", "pending", "failed", "deleting"]


@dataclass(frozen=True)
class Observed:
    """One resource as AWS reports it, normalised to the same shape as `desired`."""

    type: str
    id: str
    # Managed fields, normalised; compared with the desired fields of the same names.
    fields: Mapping[str, Any]
    tags: Mapping[str, str]
    # Values other resources refer to through `Ref` (id, Arn, AllocationId, ...).
    attributes: Mapping[str, Any] = field(default_factory=dict)
    # ready: usable; pending: AWS is still working (CREATING, UPDATING, ...).
    status: Status = "ready"
    # AWS's own word for the state, for status output ("CREATING", "available", ...).
    state: str = ""
    # Where it lives; filled in by the observer, not by providers.
    account: str = ""
    region: str = ""
    # False when tags came from an eventually consistent index (`tagging.py`): the engine
    # re-reads the resource with `refresh` before it acts on it. Where a reading came from, not
    # what AWS has: left out of comparisons.
    confirmed: bool = field(default=True, compare=False)

    @property
    def key(self) -> str | None:
        owner = self.tags.get(TAG_OWNER)
        component = self.tags.get(TAG_COMPONENT)
        return f"{owner}/{component}" if owner and component else None

    @property
    def owner(self) -> str | None:
        return self.tags.get(TAG_OWNER)

    @property
    def deletion_policy(self) -> str:
        # A resource without the tag is kept: deleting is never the default.
        return "Delete" if self.tags.get(TAG_DELETION_POLICY) == "Delete" else "Retain"

    def managed_by(self, instance: str) -> bool:
        return self.tags.get(TAG_MANAGED_BY) == instance


@dataclass(frozen=True)
class Context:
    """What a provider call needs: clients for its (account, region) and who we are."""

    account_id: str
    region: str
    instance: str
    client: Callable[[str], Any]  # service name -> boto3 client for this account and region
    # Resolves secret inputs (valueFrom) in the control account at apply time.
    resolve_secret: Callable[[Any], str] | None = None
    # Modifications AWS can defer to the maintenance window (RDS) are made at once instead.
    apply_immediately: bool = False


class Provider(ABC):
    """One AWS resource type. Subclasses are registered with `@register`."""

    type: ClassVar[str]
    service: ClassVar[str]
    # IAM is global: read once per account, not per region.
    global_service: ClassVar[bool] = False
    # IAM actions by operation; `driftwarden iam-policy` is generated from these.
    permissions: ClassVar[Mapping[str, tuple[str, ...]]]
    # Fields AWS cannot change in place, with the reason shown in plan errors.
    immutable: ClassVar[Mapping[str, str]] = {}
    # Whether an immutable change may be carried out by creating a new resource first and
    # deleting the old one (node groups). Otherwise it is a plan error.
    replaceable: ClassVar[bool] = False
    # Set at create time and then owned by someone else (node group desiredSize).
    create_only: ClassVar[frozenset[str]] = frozenset()

    def normalize_desired(self, desired: Mapping[str, Any]) -> dict[str, Any]:
        """Desired fields (Refs already resolved) in the shape `read` reports them."""
        return dict(desired)

    @abstractmethod
    def read(self, ctx: Context) -> list[Observed]:
        """Every resource of this type managed by `ctx.instance` in this account and region."""

    @abstractmethod
    def create(self, ctx: Context, resource: Resource, desired: Mapping[str, Any]) -> Observed:
        """Create the resource with its ownership tags; return what AWS reports."""

    @abstractmethod
    def update(
        self, ctx: Context, resource: Resource, desired: Mapping[str, Any], observed: Observed, changed: list[str]
    ) -> Observed:
        """Change the `changed` fields in place; return the resource as it is now."""

    @abstractmethod
    def delete(self, ctx: Context, observed: Observed) -> None:
        """Delete the resource (readers will see it absent, or `deleting`, afterwards)."""

    def untag(self, ctx: Context, observed: Observed) -> None:
        """Remove driftwarden's ownership tags: the resource stays, unmanaged (Retain)."""
        raise NotImplementedError(f"{self.type} cannot be released")

    def check_update(self, desired: Mapping[str, Any], observed: Observed) -> str | None:
        """Why this in-place update must not be attempted (a downgrade, a shrink), or None.

        Called by the plan, so a change AWS would refuse, or that would fail half-way, is a plan
        error naming the reason instead of a failure during apply.
        """
        return None

    def refresh(self, ctx: Context, observed: Observed) -> Observed | None:
        """Read one resource again (for waiting on pending work); None when it is gone."""
        for found in self.read(ctx):
            if found.id == observed.id:
                return found
        return None


REGISTRY: dict[str, Provider] = {}


def register(cls: type[Provider]) -> type[Provider]:
    """Class decorator: make a provider available under its `type`."""
    if cls.type in REGISTRY:
        raise ValueError(f"provider {cls.type} registered twice")
    REGISTRY[cls.type] = cls()
    return cls


def carries_ownership(tags: Mapping[str, str], resource: Resource) -> bool:
    """Whether an existing AWS resource carries `resource`'s ownership tags.

    A create that finds its name taken (an interrupted earlier attempt) adopts the resource only
    then; anything else with that name is someone else's and is left alone.
    """
    return all(tags.get(key) == resource.tags.get(key) for key in (TAG_MANAGED_BY, TAG_OWNER, TAG_COMPONENT))


def tag_list(tags: Mapping[str, str]) -> list[dict[str, str]]:
    """Tags in the `[{"Key": ..., "Value": ...}]` shape most AWS APIs use."""
    return [{"Key": k, "Value": v} for k, v in sorted(tags.items())]


def tag_map(tags: list[dict[str, str]] | None) -> dict[str, str]:
    """`[{"Key": ..., "Value": ...}]` (any key case) as a plain map."""
    result = {}
    for tag in tags or []:
        key = tag.get("Key", tag.get("key"))
        value = tag.get("Value", tag.get("value", ""))
        if key is not None:
            result[key] = value
    return result


def managed_tag_filter(instance: str) -> list[dict[str, Any]]:
    """EC2-style server-side filter for everything this instance manages."""
    return [{"Name": f"tag:{TAG_MANAGED_BY}", "Values": [instance]}]
