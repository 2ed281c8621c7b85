"""Pure: what status and pass summaries read of one reconcile pass, and indexes over it.

The pass itself is `engine.reconcile.PassResult`, which drags the AWS layer along; the
protocols here name only the attributes read, typed with pure types (graph, plan, provider
base types, the manifest model), so that `status` and `report` stay importable without boto3,
prometheus_client, jsonschema or ruamel. `PassResult` satisfies `PassFacts` structurally.

Must not import engine.reconcile, engine.apply, engine.observe, manifests.validation or any
I/O library; must not hold state between passes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from driftwarden.engine.graph import Resource
from driftwarden.engine.plan import Change, Plan
from driftwarden.manifests.model import Cluster, Deployment
from driftwarden.providers.base import Observed

# (account id, region): a place as a key. `engine.observe.Place` is the place with the account
# reference needed to reach it.
PlaceKey = tuple[str, str]


@dataclass(frozen=True)
class PlaceTrouble:
    """A place (account, region) that was not reconciled this pass, and why."""

    error: str
    next_attempt: float | None = None


class DeclaredFacts(Protocol):
    """The valid objects of a revision (`manifests.validation.ValidationResult`)."""

    @property
    def clusters(self) -> Sequence[Cluster]: ...
    @property
    def deployments(self) -> Sequence[Deployment]: ...
    @property
    def valid(self) -> bool: ...


class OutcomeFacts(Protocol):
    """What became of one change (`engine.apply.Outcome`)."""

    @property
    def change(self) -> Change: ...
    @property
    def result(self) -> str: ...
    @property
    def message(self) -> str: ...
    @property
    def observed(self) -> Observed | None: ...


class PlaceErrorFacts(Protocol):
    """A place, or one resource type in it, that could not be read (`engine.observe.PlaceError`)."""

    @property
    def account(self) -> str: ...
    @property
    def region(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def message(self) -> str: ...


class ObservationFacts(Protocol):
    """What was found in AWS (`engine.observe.Observation`)."""

    @property
    def resources(self) -> Sequence[Observed]: ...
    @property
    def errors(self) -> Sequence[PlaceErrorFacts]: ...


class PassFacts(Protocol):
    """One reconcile pass (`engine.reconcile.PassResult`)."""

    @property
    def validation(self) -> DeclaredFacts: ...
    @property
    def plan(self) -> Plan | None: ...
    @property
    def observation(self) -> ObservationFacts | None: ...
    @property
    def resources(self) -> Sequence[Resource]: ...
    @property
    def outcomes(self) -> Sequence[OutcomeFacts]: ...
    @property
    def failed(self) -> bool: ...


class PassView:
    """Indexes of one pass, by resource key and owner."""

    def __init__(self, result: PassFacts | None) -> None:
        self.resources: dict[str, list[Resource]] = {}
        self.observed: dict[str, Observed] = {}
        self.changes: dict[str, Change] = {}
        self.held: dict[str, Change] = {}
        self.outcomes: dict[str, OutcomeFacts] = {}
        self.unchanged: set[str] = set()
        self.places: set[PlaceKey] = set()
        self.types: dict[str, str] = {}
        self._errors: dict[str, str] = {}
        self._read_errors: dict[PlaceKey, str] = {}
        if result is None:
            return
        for resource in result.resources:
            self.resources.setdefault(resource.owner, []).append(resource)
            self.places.add(resource.place)
            self.types[resource.key] = resource.type
        if result.observation is not None:
            for item in result.observation.resources:
                if item.key is not None:
                    self.observed.setdefault(item.key, item)
            for place_error in result.observation.errors:
                self._read_errors.setdefault((place_error.account, place_error.region), place_error.message)
        if result.plan is not None:
            self.changes = {c.key: c for c in result.plan.changes if c.resource is not None}
            self.held = {c.key: c for c in result.plan.held if c.resource is not None}
            self.unchanged = set(result.plan.unchanged)
            for error in result.plan.errors:
                if error.owner:
                    self._errors.setdefault(error.owner, error.message)
        for outcome in result.outcomes:
            self.outcomes[outcome.change.key] = outcome
            if outcome.result == "failed" and outcome.change.owner:
                self._errors.setdefault(outcome.change.owner, f"{outcome.change.action} {outcome.change.key}: {outcome.message}")

    def read_error(self, place: PlaceKey) -> PlaceTrouble | None:
        error = self._read_errors.get(place)
        return PlaceTrouble(error) if error is not None else None

    def error_of(self, owner: str) -> str | None:
        return self._errors.get(owner)

    def type_of(self, key: str) -> str:
        return self.types.get(key, "")

    def in_sync_after(self, key: str) -> bool:
        if key in self.unchanged:
            observed = self.observed.get(key)
            return observed is None or observed.status == "ready"
        outcome = self.outcomes.get(key)
        return outcome is not None and outcome.result == "applied" and outcome.change.action != "delete"

    def phase(self, key: str) -> str:
        """ok | creating | updating | create_failed | update_failed, after this pass."""
        observed = self.observed.get(key)
        outcome = self.outcomes.get(key)
        if outcome is not None:
            creating = outcome.change.action == "create" or observed is None
            if outcome.result == "failed":
                return "create_failed" if creating else "update_failed"
            if outcome.result in ("pending", "skipped"):
                return "creating" if creating else "updating"
            after = outcome.observed
            if after is not None and after.status == "pending":
                return "creating" if creating else "updating"
            return "ok"
        if observed is None:
            return "creating"  # not there yet: held, outside a window, or waiting on others
        state = (observed.state or "").upper()
        if observed.status == "pending":
            return "creating" if "CREAT" in state else "updating"
        if observed.status == "failed":
            return "create_failed" if "CREATE" in state else "update_failed"
        if observed.status == "deleting":
            return "updating"
        return "ok"
