"""Pure: desired resources + observed resources -> an ordered plan of changes with reasons.

Only managed fields are compared (the fields a resource's `desired` names, like kopf's diff
scope), after normalising both sides; fields AWS defaults or manages are never looked at, so
a plan after an apply is empty. Values that depend on resources not yet created are
`UNKNOWN` ("known after apply").

A change to a field AWS cannot modify becomes a replacement where the provider allows it
(node groups: blue/green) and otherwise a plan error that names the field and why; nothing
of that resource is touched.

Deletions: a resource whose owner is still declared but which the owner no longer needs (a
removed node pool) is deleted as part of reconciling that owner. Resources of owners that
are gone from Git are deleted only with prune, capped, and never when the revision is invalid
(`prune_changes`).

What it must not do: call AWS. `observe.py` reads, `apply.py` acts.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from driftwarden.engine.graph import TAG_DESIRED_HASH, Ref, Resource
from driftwarden.providers.base import Observed, Provider

Action = Literal["create", "update", "replace", "delete", "release"]


class _Unknown:
    """A value that will only be known once a dependency exists."""

    def __repr__(self) -> str:
        return "(known after apply)"

    def __reduce__(self) -> str:
        return "UNKNOWN"


UNKNOWN = _Unknown()
SECRET_MASK = "(sensitive)"


@dataclass(frozen=True)
class FieldChange:
    path: str
    observed: Any
    desired: Any

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "observed": _jsonable(self.observed), "desired": _jsonable(self.desired)}


@dataclass(frozen=True)
class Change:
    action: Action
    key: str
    type: str
    owner: str
    account: str
    region: str
    reason: str
    diff: tuple[FieldChange, ...] = ()
    resource: Resource | None = field(default=None, compare=False, repr=False)
    observed: Observed | None = field(default=None, compare=False, repr=False)

    @property
    def id(self) -> str | None:
        return self.observed.id if self.observed else None

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "owner": self.owner,
            "resource": self.key,
            "type": self.type,
            "id": self.id,
            "account": self.account,
            "region": self.region,
            "reason": self.reason,
            "diff": [d.to_json() for d in self.diff],
        }


@dataclass(frozen=True)
class PlanError:
    key: str
    owner: str
    message: str
    field: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"resource": self.key, "owner": self.owner, "field": self.field, "message": self.message}


@dataclass(frozen=True)
class Plan:
    """What one pass would do. Built once by `make_plan`; later steps make a new one with
    `dataclasses.replace` (preflight, secret errors), so a plan someone holds never changes."""

    revision: str
    changes: list[Change]
    unchanged: list[str]
    errors: list[PlanError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # Changes held back: prune off, suspended objects, warn-only drift.
    held: list[Change] = field(default_factory=list)

    def summary(self) -> dict[str, int]:
        counts = {"create": 0, "update": 0, "replace": 0, "delete": 0, "unchanged": len(self.unchanged)}
        for change in self.changes:
            counts["delete" if change.action == "release" else change.action] += 1
        return counts

    @property
    def has_changes(self) -> bool:
        return bool(self.changes)

    def to_json(self) -> dict[str, Any]:
        return {
            "revision": self.revision,
            "summary": self.summary(),
            "changes": [c.to_json() for c in self.changes],
            "held": [c.to_json() for c in self.held],
            "errors": [e.to_json() for e in self.errors],
            "warnings": list(self.warnings),
        }


def _jsonable(value: Any) -> Any:
    if value is UNKNOWN:
        return "(known after apply)"
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


# --- resolving references ------------------------------------------------------------------------


def resolve(value: Any, attributes: Mapping[str, Mapping[str, Any]]) -> Any:
    """Replace every `Ref` with the referenced resource's attribute, or UNKNOWN."""
    if isinstance(value, Ref):
        found = attributes.get(value.key, {}).get(value.attribute)
        return UNKNOWN if found is None else found
    if isinstance(value, Mapping):
        return {k: resolve(v, attributes) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return tuple(resolve(v, attributes) for v in value)
    return value


def contains_unknown(value: Any) -> bool:
    if value is UNKNOWN:
        return True
    if isinstance(value, Mapping):
        return any(contains_unknown(v) for v in value.values())
    if isinstance(value, tuple | list):
        return any(contains_unknown(v) for v in value)
    return False


# --- diff ------------------------------------------------------------------------------------------


def _canonical(value: Any) -> Any:
    """Lists and tuples compare equal; mappings compare by content."""
    if isinstance(value, Mapping):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return tuple(_canonical(v) for v in value)
    return value


def diff_fields(desired: Mapping[str, Any], observed: Mapping[str, Any], skip: Iterable[str] = ()) -> list[FieldChange]:
    """Field-level differences, scoped to the fields `desired` names."""
    skipped = set(skip)
    changes = []
    for name, want in desired.items():
        if name in skipped:
            continue
        have = observed.get(name)
        if contains_unknown(want) or _canonical(want) != _canonical(have):
            changes.extend(_nested(name, have, want))
    return changes


def _nested(path: str, have: Any, want: Any) -> list[FieldChange]:
    if isinstance(want, Mapping) and isinstance(have, Mapping) and not contains_unknown(want):
        found = []
        for key in sorted(set(want) | set(have)):
            if _canonical(want.get(key)) != _canonical(have.get(key)):
                found.extend(_nested(f"{path}.{key}", have.get(key), want.get(key)))
        return found
    return [FieldChange(path, have, want)]


def diff_tags(desired: Mapping[str, str], observed: Mapping[str, str]) -> list[FieldChange]:
    return [
        FieldChange(f"tags.{key}", observed.get(key), value)
        for key, value in sorted(desired.items())
        if observed.get(key) != value
    ]


# --- planning ----------------------------------------------------------------------------------------


def index_observed(observed: Iterable[Observed]) -> dict[str, list[Observed]]:
    by_key: dict[str, list[Observed]] = defaultdict(list)
    for item in observed:
        if item.key is not None:
            by_key[item.key].append(item)
    return by_key


def make_plan(
    resources: Sequence[Resource],
    observed: Iterable[Observed],
    *,
    revision: str = "",
    declared_owners: Iterable[str] = (),
    prune: bool = False,
    prune_limit: int = 20,
    revision_valid: bool = True,
    providers: Mapping[str, Provider],
) -> Plan:
    """Compare desired with observed; see the module docstring for the rules."""
    observed = list(observed)
    by_key = index_observed(observed)
    attributes: dict[str, Mapping[str, Any]] = {}
    for key, items in by_key.items():
        attributes[key] = items[0].attributes
    plan = _Draft(revision=revision, changes=[], unchanged=[])
    wanted_keys = {r.key for r in resources}
    # Resources that will be created or replaced have no attributes yet: their dependants see UNKNOWN.
    pending_keys: set[str] = set()
    for resource in resources:
        provider = providers[resource.type]
        candidates = by_key.get(resource.key, [])
        current, superseded = _pick_current(provider, resource, candidates, attributes)
        if current is not None:
            attributes[resource.key] = current.attributes
        else:
            attributes.pop(resource.key, None)
        change = _plan_one(provider, resource, current, attributes, pending_keys)
        if isinstance(change, PlanError):
            if resource.suspended:
                plan.warnings.append(f"{resource.owner} is suspended: {change.message}")
            else:
                plan.errors.append(change)
            continue
        for old in superseded:
            # Leftovers of a blue/green replacement: delete once the new one stands.
            plan.changes.append(_removal(old, resource.owner, "delete", "superseded by a replacement"))
        if change is None:
            plan.unchanged.append(resource.key)
        elif resource.suspended:
            plan.held.append(change)
        elif resource.drift_mode == "warn" and change.action != "create":
            if _changed_in_git(resource, change.observed):
                plan.changes.append(dataclasses.replace(
                    change, reason="changed in Git (warn-only: applied in full, hand-made changes included)"))
            else:
                plan.held.append(change)  # drift: reported, left as it is
        else:
            plan.changes.append(change)
    declared = set(declared_owners) | {r.owner for r in resources}
    orphans = [o for o in observed if o.key is not None and o.key not in wanted_keys]
    prunable: list[Change] = []
    for item in orphans:
        owner = item.owner or ""
        if owner in declared:
            plan.changes.append(_removal(item, owner, "delete", f"{owner} no longer declares {item.tags.get('driftwarden:component')}"))
        else:
            if item.deletion_policy == "Delete":
                prunable.append(_removal(item, owner, "delete", f"{owner} is no longer declared in Git"))
            else:
                prunable.append(
                    _removal(item, owner, "release", f"{owner} is no longer declared in Git; deletionPolicy Retain keeps it and removes our tags")
                )
    _plan_prune(plan, prunable, prune=prune, limit=prune_limit, revision_valid=revision_valid)
    return Plan(revision=plan.revision, changes=plan.changes, unchanged=plan.unchanged, errors=plan.errors,
                warnings=plan.warnings, held=plan.held)


@dataclass
class _Draft:
    """The plan while `make_plan` writes it; becomes the frozen `Plan` once complete."""

    revision: str
    changes: list[Change]
    unchanged: list[str]
    errors: list[PlanError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    held: list[Change] = field(default_factory=list)


def _changed_in_git(resource: Resource, observed: Observed | None) -> bool:
    """Whether Git's desired state moved since driftwarden last wrote this warn-only resource."""
    if observed is None:
        return True
    return observed.tags.get(TAG_DESIRED_HASH) != resource.tags.get(TAG_DESIRED_HASH)


def _pick_current(
    provider: Provider, resource: Resource, candidates: list[Observed], attributes: Mapping[str, Mapping[str, Any]]
) -> tuple[Observed | None, list[Observed]]:
    if len(candidates) <= 1 or not provider.replaceable:
        return (candidates[0] if candidates else None), candidates[1:]
    desired = provider.normalize_desired(resolve(resource.desired, attributes))
    matching = [c for c in candidates if not _immutable_changes(provider, desired, c)]
    current = matching[0] if matching else candidates[0]
    return current, [c for c in candidates if c is not current]


def _immutable_changes(provider: Provider, desired: Mapping[str, Any], observed: Observed) -> list[str]:
    return [
        name
        for name in provider.immutable
        if name in desired and not contains_unknown(desired[name])
        and _canonical(desired[name]) != _canonical(observed.fields.get(name))
    ]


def _plan_one(
    provider: Provider,
    resource: Resource,
    current: Observed | None,
    attributes: Mapping[str, Mapping[str, Any]],
    pending_keys: set[str],
) -> Change | PlanError | None:
    desired = provider.normalize_desired(resolve(resource.desired, attributes))
    account, region = resource.account.id, resource.region
    if current is None:
        pending_keys.add(resource.key)
        return Change("create", resource.key, resource.type, resource.owner, account, region,
                      "does not exist", tuple(FieldChange(k, None, v) for k, v in desired.items()), resource)
    if current.status == "failed":
        # AWS gave up on it (a NAT gateway or node group in a failed state). Creating a second
        # one beside it could collide with its name; a person should look first.
        return PlanError(
            resource.key,
            resource.owner,
            f"AWS reports {resource.type} {current.id} as {current.state or 'failed'}: driftwarden leaves it "
            "alone; delete it (or repair it) and the next run recreates it",
        )
    changes = diff_fields(desired, current.fields, skip=provider.create_only)
    changes += diff_tags(resource.tags, current.tags)
    if not changes:
        return None
    immutable = [c for c in changes if c.path.split(".")[0] in provider.immutable and not contains_unknown(c.desired)]
    if immutable:
        names = sorted({c.path.split(".")[0] for c in immutable})
        if not provider.replaceable:
            reasons = "; ".join(f"{n}: {provider.immutable[n]}" for n in names)
            return PlanError(resource.key, resource.owner,
                             f"cannot change {', '.join(names)} of {resource.type} {current.id}: {reasons}", names[0])
        pending_keys.add(resource.key)
        return Change("replace", resource.key, resource.type, resource.owner, account, region,
                      f"{', '.join(names)} cannot change in place: a new one is created first, then the old one deleted",
                      tuple(changes), resource, current)
    refusal = provider.check_update(desired, current)
    if refusal:
        return PlanError(resource.key, resource.owner, refusal, changes[0].path.split(".")[0])
    return Change("update", resource.key, resource.type, resource.owner, account, region,
                  "drifted from Git" if not any(contains_unknown(c.desired) for c in changes) else "a dependency changes",
                  tuple(changes), resource, current)


def _removal(item: Observed, owner: str, action: Action, reason: str) -> Change:
    return Change(action, item.key or item.id, item.type, owner, item.account, item.region, reason, (), None, item)


def _plan_prune(plan: _Draft, prunable: list[Change], *, prune: bool, limit: int, revision_valid: bool) -> None:
    if not prunable:
        return
    if not prune:
        plan.held.extend(prunable)
        plan.warnings.append(
            f"{len(prunable)} resource(s) belong to objects no longer in Git; run with --prune to delete them"
        )
        return
    if not revision_valid:
        plan.held.extend(prunable)
        plan.warnings.append("prune refused: some manifests are invalid, so nothing is deleted")
        return
    allowed, held = prunable[:limit], prunable[limit:]
    plan.changes.extend(allowed)
    plan.held.extend(held)
    if held:
        plan.warnings.append(f"prune limited to {limit} deletions this cycle; {len(held)} left for later runs")
