"""The contract every AWS resource type implements: its declarations and its calls.

A provider owns one resource type (`ec2.vpc`, `eks.nodegroup`, ...). What the engine needs to
know about it is *declared* as a `TypeInfo` (in the way cloud-custodian's resources declare
theirs): how it is enumerated and what its id is, which error codes mean "not found", how its
API tags (`TagStyle`), where it sits in creation order, the IAM actions of each operation and
the fields it manages. What no declaration can say is code:

* `read` every resource of its type that this driftwarden instance manages in one
  (account, region) — batched and paginated, with server-side tag filters where the API has
  them; not-found means absent, never an error;
* `create` one (idempotently: client tokens where AWS offers them), `update` the managed
  fields that can change in place, and `delete` one;
* normalise both sides so that a diff compares like with like (`normalize_desired`, and the
  `fields` of what `read` returns).

Tagging and untagging are not a provider's code: `converge` (updates) and `Provider.untag`
(release under `deletionPolicy: Retain`) drive the declared tag style. Which providers exist
is `registry.default_providers()`, a value the engine is handed: nothing here is global.

Providers never decide *whether* to act (that is the plan) and never catch errors to hide
them: botocore errors are mapped once, in `aws.py`, to driftwarden's own.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from driftwarden.engine.graph import (
    OWNERSHIP_TAGS,
    TAG_COMPONENT,
    TAG_DELETION_POLICY,
    TAG_MANAGED_BY,
    TAG_OWNER,
    Resource,
)
from driftwarden.errors import NotFoundError, ProviderError

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


@dataclass(frozen=True)
class Enumeration:
    """How every resource of a type is listed in one (account, region): one batched call."""

    # boto3 method name of the listing ("describe_vpcs"), the response key holding the items
    # ("Vpcs") and the field of an item that is its id ("VpcId").
    operation: str
    result_key: str
    id_field: str
    # The listing's parameter that narrows it to given ids ("VpcIds"), used to read one
    # resource again (`refresh`); None where the listing has none.
    id_param: str | None = None


class TagStyle(ABC):
    """How one AWS API family adds and removes tags (`tag_styles.py` has one per family)."""

    name: ClassVar[str]
    service: ClassVar[str]
    # The IAM actions `put` and `remove` are authorised as.
    put_permission: ClassVar[str]
    remove_permission: ClassVar[str]

    @abstractmethod
    def put(self, ctx: Context, observed: Observed, tags: Mapping[str, str]) -> None:
        """Add or overwrite `tags`; tags not named (someone else's) stay."""

    @abstractmethod
    def remove(self, ctx: Context, observed: Observed, keys: Sequence[str]) -> None:
        """Remove the tags named `keys`, whatever their values."""


@dataclass(frozen=True)
class TypeInfo:
    """What the engine needs to know about one resource type, declared next to its code.

    Modelled on cloud-custodian's resource `TypeInfo`: the engine reads these facts instead of
    each provider writing them as code. Tagging and untagging (`tag_style`), creation and
    deletion order (`create_order`, `delete_order`), `driftwarden iam-policy` (`permissions`)
    and the contract test (`managed_fields`, `enumeration`, `not_found`) all come from here.
    """

    type: str
    service: str
    enumeration: Enumeration
    # AWS error codes meaning "no such resource" (beyond what `aws.py` maps to NotFoundError).
    not_found: tuple[str, ...]
    tag_style: TagStyle
    # Position in creation order: a type is created after every type with a smaller number
    # (its dependencies). `ProviderSet.type_order` is derived from these.
    create_order: int
    # IAM actions by operation ("read", "create", "update", "delete", "untag"), without the tag
    # style's own actions: `Provider.permissions` adds those.
    permissions: Mapping[str, tuple[str, ...]]
    # The fields `read` reports and the plan compares with Git.
    managed_fields: tuple[str, ...]
    # Managed fields kept in tags (a subnet's load-balancer role): `converge` writes them with
    # the ownership tags, through the tag style, from what `tags_to_write` returns.
    tag_fields: tuple[str, ...] = ()
    # Fields AWS cannot change in place, with the reason shown in plan errors.
    immutable: Mapping[str, str] = field(default_factory=dict)
    # IAM is global: read once per account, not per region.
    global_service: bool = False
    # Whether an immutable change may be carried out by creating a new resource first and
    # deleting the old one (node groups). Otherwise it is a plan error.
    replaceable: bool = False
    # Set at create time and then owned by someone else (node group desiredSize).
    create_only: frozenset[str] = frozenset()
    # Deletion rank: lower goes first. None: the reverse of creation order, so dependants go
    # before what they depend on.
    delete_order: int | None = None

    @property
    def deletion_rank(self) -> int:
        return self.delete_order if self.delete_order is not None else -self.create_order


class Provider(ABC):
    """One AWS resource type: its declarations (`info`) and the calls no declaration can say."""

    info: ClassVar[TypeInfo]

    @property
    def type(self) -> str:
        return self.info.type

    @property
    def service(self) -> str:
        return self.info.service

    @property
    def global_service(self) -> bool:
        return self.info.global_service

    @property
    def immutable(self) -> Mapping[str, str]:
        return self.info.immutable

    @property
    def replaceable(self) -> bool:
        return self.info.replaceable

    @property
    def create_only(self) -> frozenset[str]:
        return self.info.create_only

    @property
    def permissions(self) -> Mapping[str, tuple[str, ...]]:
        """IAM actions by operation, the tag style's included; `driftwarden iam-policy` is made of these."""
        declared = {op: tuple(names) for op, names in self.info.permissions.items()}
        style = self.info.tag_style
        declared["update"] = _unique((*declared.get("update", ()), style.put_permission))
        declared["untag"] = _unique((*declared.get("untag", ()), style.remove_permission))
        return declared

    def normalize_desired(self, desired: Mapping[str, Any]) -> dict[str, Any]:
        """Desired fields (Refs already resolved) in the shape `read` reports them."""
        return dict(desired)

    @abstractmethod
    def read(self, ctx: Context) -> list[Observed]:
        """Every resource of this type managed by `ctx.instance` in this account and region."""

    @abstractmethod
    def create(self, ctx: Context, resource: Resource, desired: Mapping[str, Any]) -> Observed:
        """Create the resource with its ownership tags; return what AWS reports."""

    def update(
        self, ctx: Context, resource: Resource, desired: Mapping[str, Any], observed: Observed, changed: list[str]
    ) -> Observed:
        """Change the `changed` managed fields in place; return the resource as it is now.

        Never asked to write tags: `converge` writes those afterwards through the declared tag
        style. A type whose managed fields are all immutable keeps this default (the plan never
        asks).
        """
        raise NotImplementedError(f"{self.type} cannot change {', '.join(changed)} in place")

    @abstractmethod
    def delete(self, ctx: Context, observed: Observed) -> None:
        """Delete the resource (readers will see it absent, or `deleting`, afterwards)."""

    def tags_to_write(self, resource: Resource, desired: Mapping[str, Any]) -> Mapping[str, str]:
        """The tags `converge` writes when they drifted: the ownership tags, and any a type adds."""
        return resource.tags

    def release_tag_keys(self, observed: Observed) -> Sequence[str]:
        """The tags `untag` removes: driftwarden's ownership tags, and any bookkeeping of a type's own."""
        return OWNERSHIP_TAGS

    def untag(self, ctx: Context, observed: Observed) -> None:
        """Remove driftwarden's tags: the resource stays, unmanaged (Retain). Gone already is done."""
        try:
            self.info.tag_style.remove(ctx, observed, self.release_tag_keys(observed))
        except ProviderError as exc:
            if not self.is_absent(exc):
                raise

    def is_absent(self, error: BaseException) -> bool:
        """Whether an error (already mapped by `aws.py`) says this resource does not exist."""
        return isinstance(error, NotFoundError) or (
            isinstance(error, ProviderError) and error.code in self.info.not_found
        )

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


def converge(
    provider: Provider,
    ctx: Context,
    resource: Resource,
    desired: Mapping[str, Any],
    observed: Observed,
    changed: Sequence[str],
) -> Observed:
    """Bring one existing resource to Git's state: what `apply` runs for an update.

    The provider's `update` changes the managed fields first, so a change it refuses (a
    downgrade, an immutable field) leaves the resource untouched, tags included. Tags are then
    written here, in one call through the type's declared tag style, when they drifted or when
    a field the type keeps in tags (`TypeInfo.tag_fields`) did: no provider writes its own
    tagging branch, and a tags-only repair makes no other call at all.
    """
    fields = [name for name in changed if name != "tags"]
    result = provider.update(ctx, resource, desired, observed, fields) if fields else observed
    if "tags" in changed or set(provider.info.tag_fields) & set(changed):
        wanted = provider.tags_to_write(resource, desired)
        provider.info.tag_style.put(ctx, result, wanted)
        result = dataclasses.replace(result, tags={**result.tags, **wanted})
    return result


def _unique(names: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(names))


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
