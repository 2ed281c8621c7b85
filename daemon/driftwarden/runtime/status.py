"""Pure: one reconcile pass -> the status and drift of every manifest object.

What /status, `resource_info` and `drifted_resources` say about each Cluster and Deployment
is decided here, from what a pass saw (observed resources, planned and held changes, apply
outcomes, errors) and what earlier passes left behind (`DriftMemory`).

Status words are the product's (seed 001 and 004): a Cluster is CREATING, CREATED,
CREATE_FAILED, UPDATING or UPDATE_FAILED — "CREATE" until its EKS cluster first stands, then
"UPDATE"; a Deployment is CREATING (something of it, or its cluster, is not there yet),
HEALTHY, or UNHEALTHY (something of it failed, or its cluster failed to be created).

Drift is an AWS resource that differs from Git although Git did not ask for a change: it was
in line with Git on an earlier pass (or already drifted) and its desired state is the same as
then. A difference that follows a new commit is not drift, it is the commit being applied.
Objects annotated `driftwarden/drift: warn` have their differences held by the plan: those are
reported as drift "warn", never repaired. Suspended objects are "suspended", whatever AWS says.

What it must not do: call AWS, keep state of its own, or put a value (observed or desired)
anywhere: drifted resources carry field paths only, since values may be secret. It imports
only pure modules (see `passview`): no boto3, prometheus_client, jsonschema, ruamel or git.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from driftwarden.engine.graph import Resource
from driftwarden.manifests.model import Cluster, Deployment
from driftwarden.runtime.passview import DeclaredFacts, PassFacts, PassView, PlaceKey, PlaceTrouble

Drift = Literal["none", "drifted", "warn", "suspended"]

CLUSTER_STATES = ("CREATING", "CREATED", "CREATE_FAILED", "UPDATING", "UPDATE_FAILED")
DEPLOYMENT_STATES = ("CREATING", "HEALTHY", "UNHEALTHY")


@dataclass(frozen=True)
class ObjectStatus:
    """One manifest object as /status and resource_info show it."""

    kind: str
    name: str
    cluster: str
    account: str
    region: str
    status: str
    drift: str  # none | drifted | warn | suspended


@dataclass(frozen=True)
class DriftedResource:
    """One AWS resource that differs from Git: where, which fields, and what was done about it."""

    resource: str
    type: str
    action: str
    fields: tuple[str, ...]
    # applied | pending | failed | skipped | held (warn-only) | not applied (outside every
    # apply window) | suspended
    repair: str

    def to_json(self) -> dict[str, Any]:
        return {
            "resource": self.resource,
            "type": self.type,
            "action": self.action,
            "fields": list(self.fields),
            "repair": self.repair,
        }


@dataclass(frozen=True)
class ObjectState:
    """A manifest object as /status shows it."""

    kind: str
    name: str
    cluster: str
    account: str
    region: str
    status: str
    drift: Drift = "none"
    drifted: tuple[DriftedResource, ...] = ()
    last_error: str | None = None
    # Unix time of the next attempt while its place is backing off, else None.
    next_attempt: float | None = None

    @property
    def owner(self) -> str:
        return f"{self.kind}/{self.name}"

    @property
    def place(self) -> PlaceKey:
        return (self.account, self.region)

    def info(self) -> ObjectStatus:
        return ObjectStatus(self.kind, self.name, self.cluster, self.account, self.region, self.status, self.drift)


@dataclass(frozen=True)
class DeclaredObject:
    kind: str
    name: str
    cluster: str
    account: str
    region: str
    suspended: bool
    drift_mode: str

    @property
    def owner(self) -> str:
        return f"{self.kind}/{self.name}"

    @property
    def place(self) -> PlaceKey:
        return (self.account, self.region)


def declared_objects(validation: DeclaredFacts) -> list[DeclaredObject]:
    """Every valid object of a revision, clusters first, with the place it lives in."""
    found = [_declared(cluster, cluster) for cluster in validation.clusters]
    clusters = {c.name: c for c in validation.clusters}
    for deployment in validation.deployments:
        cluster = clusters.get(deployment.cluster)
        if cluster is not None:
            found.append(_declared(deployment, cluster))
    return found


def _declared(item: Cluster | Deployment, cluster: Cluster) -> DeclaredObject:
    return DeclaredObject(
        kind=item.kind,
        name=item.name,
        cluster=cluster.name,
        account=cluster.account.id,
        region=cluster.region,
        suspended=item.metadata.suspended,
        drift_mode=item.metadata.drift_mode,
    )


def fingerprint(resource: Resource) -> str:
    """What Git asks of one resource; equal fingerprints mean Git did not change it."""
    text = repr(resource.desired) + repr(sorted(resource.tags.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class DriftMemory:
    """What earlier passes saw, per resource key: needed to tell drift from a new commit."""

    in_sync: frozenset[str] = frozenset()
    drifted: frozenset[str] = frozenset()
    fingerprints: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Assessment:
    """Status and drift of every object after one pass, and what the next pass must remember."""

    objects: dict[str, ObjectState]
    memory: DriftMemory
    # (owner kind, resource type) of each resource found drifted that was not drifted before.
    newly_drifted: list[tuple[str, str]]
    # (kind, cluster, account, region) -> number of drifted resources, for drifted_resources.
    drift_counts: Counter[tuple[str, str, str, str]]


def assess(
    validation: DeclaredFacts,
    result: PassFacts | None,
    *,
    memory: DriftMemory,
    previous: Mapping[str, ObjectState],
    troubled: Mapping[PlaceKey, PlaceTrouble] | None = None,
    applied: bool = True,
) -> Assessment:
    """Status and drift of every object of `validation` after `result` (see module docstring).

    `troubled` names places not reconciled (backing off, or unreadable): their objects keep
    their previous status and drift, with the error and the next attempt. `applied` is False
    when the pass only planned (outside every apply window).
    """
    troubled = troubled or {}
    view = PassView(result)
    objects: dict[str, ObjectState] = {}
    drifted_now: set[str] = set()
    in_sync: set[str] = set()
    fingerprints: dict[str, str] = {}
    kept_keys: set[str] = set()
    for obj in declared_objects(validation):
        trouble = troubled.get(obj.place) or view.read_error(obj.place)
        if trouble is not None or obj.place not in view.places:
            state = _carried_over(obj, previous.get(obj.owner), trouble)
            objects[obj.owner] = state
            kept_keys.update(k for k in memory.fingerprints if k.startswith(obj.owner + "/"))
            continue
        drifted: list[DriftedResource] = []
        phases: dict[str, str] = {}
        for resource in view.resources.get(obj.owner, []):
            key = resource.key
            print_ = fingerprint(resource)
            fingerprints[key] = print_
            phases[key] = view.phase(key)
            found = _drift_of(obj, resource, view, memory, print_, applied)
            if found is not None:
                drifted.append(found)
                if found.repair != "suspended":
                    drifted_now.add(key)
            if view.in_sync_after(key):
                in_sync.add(key)
        status = _status(obj, phases, view, objects)
        drift: Drift
        if obj.suspended:
            drift = "suspended"
        elif drifted:
            drift = "warn" if obj.drift_mode == "warn" else "drifted"
        else:
            drift = "none"
        objects[obj.owner] = ObjectState(
            kind=obj.kind,
            name=obj.name,
            cluster=obj.cluster,
            account=obj.account,
            region=obj.region,
            status=status,
            drift=drift,
            drifted=tuple(drifted),
            last_error=view.error_of(obj.owner),
        )
    for key in kept_keys:
        fingerprints[key] = memory.fingerprints[key]
        if key in memory.in_sync:
            in_sync.add(key)
        if key in memory.drifted:
            drifted_now.add(key)
    newly = sorted(drifted_now - memory.drifted)
    newly_drifted = [(key.split("/", 1)[0], view.type_of(key)) for key in newly if view.type_of(key)]
    counts: Counter[tuple[str, str, str, str]] = Counter()
    for state in objects.values():
        if state.drift in ("drifted", "warn"):
            counts[(state.kind, state.cluster, state.account, state.region)] += len(state.drifted)
    return Assessment(
        objects=objects,
        memory=DriftMemory(frozenset(in_sync), frozenset(drifted_now), fingerprints),
        newly_drifted=newly_drifted,
        drift_counts=counts,
    )


def _carried_over(obj: DeclaredObject, previous: ObjectState | None, trouble: PlaceTrouble | None) -> ObjectState:
    error = trouble.error if trouble else None
    next_attempt = trouble.next_attempt if trouble else None
    if previous is not None:
        return replace(previous, cluster=obj.cluster, last_error=error or previous.last_error, next_attempt=next_attempt)
    # Never seen: nothing is known of it in AWS yet.
    status = "CREATING" if error is None else ("CREATE_FAILED" if obj.kind == "Cluster" else "UNHEALTHY")
    return ObjectState(
        kind=obj.kind,
        name=obj.name,
        cluster=obj.cluster,
        account=obj.account,
        region=obj.region,
        status=status,
        drift="suspended" if obj.suspended else "none",
        last_error=error,
        next_attempt=next_attempt,
    )


def _drift_of(
    obj: DeclaredObject, resource: Resource, view: PassView, memory: DriftMemory, print_: str, applied: bool
) -> DriftedResource | None:
    key = resource.key
    change = view.changes.get(key)
    held = view.held.get(key)
    planned = change or held
    if planned is None or planned.action not in ("update", "replace") or key not in view.observed:
        return None
    fields = tuple(sorted({d.path for d in planned.diff}))
    if held is not None:
        # The plan holds changes of suspended and warn-only objects: reported, never applied.
        return DriftedResource(key, planned.type, planned.action, fields, "suspended" if obj.suspended else "held")
    was_in_line = key in memory.in_sync or key in memory.drifted
    if not was_in_line or memory.fingerprints.get(key) != print_:
        return None  # Git asked for this change (or nothing is known yet): not drift
    outcome = view.outcomes.get(key)
    repair = outcome.result if outcome is not None else ("not applied" if not applied else "skipped")
    return DriftedResource(key, planned.type, planned.action, fields, repair)


def _status(obj: DeclaredObject, phases: Mapping[str, str], view: PassView, done: Mapping[str, ObjectState]) -> str:
    values = set(phases.values())
    failed = bool(values & {"create_failed", "update_failed"}) or view.error_of(obj.owner) is not None
    busy = bool(values & {"creating", "updating"})
    if obj.kind == "Cluster":
        core = phases.get(f"{obj.owner}/eks-cluster")
        new = core is None or core in ("creating", "create_failed")
        if failed:
            return "CREATE_FAILED" if new else "UPDATE_FAILED"
        if busy:
            return "CREATING" if new else "UPDATING"
        return "CREATED"
    cluster = done.get(f"Cluster/{obj.cluster}")
    if failed or (cluster is not None and cluster.status == "CREATE_FAILED"):
        return "UNHEALTHY"
    if "creating" in values or (cluster is not None and cluster.status == "CREATING"):
        return "CREATING"
    return "HEALTHY"


def object_statuses(objects: Iterable[ObjectState]) -> list[ObjectStatus]:
    return [state.info() for state in objects]
