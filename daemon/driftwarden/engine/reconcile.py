"""One pass end to end: manifests -> validation -> graph -> observe -> plan -> (apply).

`plan_once` changes nothing; `apply_once` carries the plan out. Both validate the whole
revision before touching AWS: an invalid revision never reaches AWS (the daemon keeps the last
good one in force; a one-shot command simply reports and stops).

Secret variables are resolved through the `resolve_secret` callable it is handed (reading the
control account is `providers/secret_sources.py`'s), only to compute the content hash the plan
compares (the hash is kept in a tag on the target secret); the values themselves are read again
by the provider at apply time and never stored, logged or shown.

What it must not do: call AWS itself (observe, apply, preflight and the resolver do), or find
providers anywhere but in the `providers` it is handed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from driftwarden.engine.apply import Applier, ApplySettings, Outcome, Progress
from driftwarden.engine.graph import DEFAULT_INSTANCE, Resource, build_graph, with_desired_hash
from driftwarden.engine.observe import Observation, Place, confirm, context_for, observe, places_of
from driftwarden.engine.plan import Plan, PlanError, make_plan
from driftwarden.engine.preflight import check_cluster
from driftwarden.errors import DriftwardenError
from driftwarden.manifests.model import Account
from driftwarden.manifests.result import ValidationResult
from driftwarden.providers.aws import AwsSessions
from driftwarden.providers.base import Provider
from driftwarden.providers.secret import secret_payload
from driftwarden.providers.secret_sources import SecretResolver


@dataclass(frozen=True)
class ReconcileSettings:
    instance: str = DEFAULT_INSTANCE
    prune: bool = False
    prune_limit: int = 20
    apply: ApplySettings = field(default_factory=ApplySettings)
    # Places (account, region) no manifest uses any more but earlier revisions did: observed
    # too, so that prune finds the resources of a cluster whose whole place left Git.
    retired_places: tuple[Place, ...] = ()


@dataclass(frozen=True)
class PassResult:
    """What one pass validated, observed, planned and (for `apply_once`) did; built once, never changed."""

    revision: str
    validation: ValidationResult
    plan: Plan | None = None
    observation: Observation | None = None
    resources: list[Resource] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        if not self.validation.valid or self.plan is None:
            return True
        if self.plan.errors or (self.observation and self.observation.errors):
            return True
        return any(o.result == "failed" for o in self.outcomes)


def _with_secret_hashes(resources: Sequence[Resource], resolve: SecretResolver) -> tuple[list[Resource], list[PlanError]]:
    prepared: list[Resource] = []
    errors: list[PlanError] = []
    for resource in resources:
        if not resource.secret_inputs:
            prepared.append(resource)
            continue
        try:
            values = {key: resolve(source) for key, source in resource.secret_inputs.items()}
        except DriftwardenError as exc:
            errors.append(PlanError(resource.key, resource.owner, str(exc), "valueFrom"))
            continue
        _document, digest = secret_payload(values)
        prepared.append(dataclasses.replace(resource, desired={**resource.desired, "ContentHash": digest}))
    return prepared, errors


def accounts_of(resources: Iterable[Resource]) -> dict[str, Account]:
    found: dict[str, Account] = {}
    for resource in resources:
        found.setdefault(resource.account.id, resource.account)
    return found


def plan_once(
    validation: ValidationResult,
    sessions: AwsSessions,
    *,
    revision: str,
    settings: ReconcileSettings = ReconcileSettings(),
    resolve_secret: SecretResolver,
    providers: Mapping[str, Provider],
) -> PassResult:
    """Validate, observe and plan with `providers`; change nothing."""
    if not validation.valid:
        return PassResult(revision=revision, validation=validation)
    resources = build_graph(validation.clusters, validation.deployments, settings.instance)
    resources, secret_errors = _with_secret_hashes(resources, resolve_secret)
    # After the secret hashes: a rotated secret value is a change of the desired state, not drift.
    resources = [with_desired_hash(r) for r in resources]
    places: list[Place] = places_of(resources)
    current = {(p.account.id, p.region) for p in places}
    places += [p for p in settings.retired_places if (p.account.id, p.region) not in current]
    observation = observe(sessions, places, settings.instance, providers=providers)
    declared = {f"Cluster/{c.name}" for c in validation.clusters} | {f"Deployment/{d.name}" for d in validation.deployments}

    def planned(observation: Observation) -> Plan:
        failed_places = observation.failed_places()
        # Objects in a place we could not read are left out of the plan: acting on half a
        # picture could create duplicates. They are reported as errors instead.
        return make_plan(
            [r for r in resources if r.place not in failed_places],
            [o for o in observation.resources if (o.account, o.region) not in failed_places],
            revision=revision,
            declared_owners=declared,
            prune=settings.prune,
            prune_limit=settings.prune_limit,
            revision_valid=validation.valid,
            providers=providers,
        )

    plan = planned(observation)
    # Tags from the eventually consistent tagging index are checked before anything is done
    # (or reported as drift) on their account; an empty plan needs no second look.
    doubtful = [c.observed for c in (*plan.changes, *plan.held) if c.observed is not None and not c.observed.confirmed]
    if doubtful:
        observation = confirm(sessions, places, observation, doubtful, settings.instance, providers=providers)
        plan = planned(observation)
    plan = _preflight(plan, validation, sessions, settings.instance)
    secret_failed = {e.key for e in secret_errors}
    unreadable = [
        PlanError(f"{error.account}/{error.region}", "", f"cannot read {error.type} in account {error.account} "
                  f"{error.region}: {error.message}")
        for error in observation.errors
    ]
    plan = dataclasses.replace(
        plan,
        errors=[*plan.errors, *secret_errors, *unreadable],
        changes=[c for c in plan.changes if c.key not in secret_failed],
    )
    return PassResult(revision=revision, validation=validation, plan=plan, observation=observation, resources=resources)


def _preflight(plan: Plan, validation: ValidationResult, sessions: AwsSessions, instance: str) -> Plan:
    """Check the account and region of every cluster about to be created; hold it if they cannot host it."""
    creating = {c.owner for c in plan.changes if c.type == "eks.cluster" and c.action == "create"}
    for cluster in validation.clusters:
        owner = f"Cluster/{cluster.name}"
        if owner not in creating:
            continue
        ctx = context_for(sessions, cluster.account, cluster.region, instance)
        checked = check_cluster(cluster, ctx.client)
        plan = dataclasses.replace(plan, warnings=[*plan.warnings, *(f"{owner}: {w}" for w in checked.warnings)])
        if checked.errors:
            plan = dataclasses.replace(
                plan,
                errors=[*plan.errors, *(PlanError(f"{owner}/eks-cluster", owner, e) for e in checked.errors)],
                changes=[c for c in plan.changes if c.owner != owner],
            )
    return plan


def apply_once(
    validation: ValidationResult,
    sessions: AwsSessions,
    *,
    revision: str,
    settings: ReconcileSettings = ReconcileSettings(),
    resolve_secret: SecretResolver,
    providers: Mapping[str, Provider],
    progress: Progress,
    cancelled: Callable[[], bool] = lambda: False,
) -> PassResult:
    """Plan, then carry the plan out; every change gets an outcome.

    Once `cancelled()` is true (the daemon is stopping), changes not yet started are skipped and
    waits end; calls already sent to AWS finish.
    """
    result = plan_once(validation, sessions, revision=revision, settings=settings, resolve_secret=resolve_secret,
                       providers=providers)
    if result.plan is None or result.observation is None:
        return result
    applier = Applier(
        sessions,
        settings.instance,
        result.observation.resources,
        {**{p.account.id: p.account for p in settings.retired_places}, **accounts_of(result.resources)},
        providers=providers,
        settings=settings.apply,
        progress=progress,
        resolve_secret=resolve_secret,
        cancelled=cancelled,
    )
    if cancelled():
        return result
    return dataclasses.replace(result, outcomes=applier.run(result.plan.changes))
