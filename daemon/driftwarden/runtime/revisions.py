"""Revision handling: what was fetched, what is in force, and when prune is allowed.

Owns the head revision (the last one fetched, valid or not), the revision in force (the last
valid one: an invalid head never replaces it), the last fetch's time and error, the places
every valid revision used since start-up (so that prune can find what Git removed from a whole
place), and the one rule deciding whether prune may run: `prune_allowed`.

Not thread-safe: the daemon holds its state lock around every call. Must not fetch, log, count
metrics or talk to AWS: callers do, with what these methods return.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from driftwarden.engine.observe import Place as ObservedPlace
from driftwarden.engine.reconcile import PassResult
from driftwarden.manifests.problems import Problem
from driftwarden.manifests.result import ValidationResult
from driftwarden.manifests.validation import validate_documents
from driftwarden.runtime.passview import PlaceKey
from driftwarden.runtime.source import Snapshot


@dataclass(frozen=True)
class Revision:
    """One fetched revision and what validation made of it."""

    revision: str
    validation: ValidationResult
    empty: bool
    signer: str | None = None

    @property
    def valid(self) -> bool:
        return self.validation.valid

    def manifest_counts(self) -> list[tuple[str, bool, int]]:
        """(kind, valid, count) for the manifests metric.

        Files whose errors belong to no object (YAML that does not parse, a limit, a check that
        failed) count as invalid objects of kind "unknown": otherwise a head broken that way
        would show no invalid manifest at all, and the alert on invalid manifests would stay quiet.
        """
        counts = []
        for kind, valid in (("Cluster", len(self.validation.clusters)), ("Deployment", len(self.validation.deployments))):
            declared = self.validation.declared.get(kind, 0)
            counts += [(kind, True, valid), (kind, False, max(0, declared - valid))]
        unattributed = {p.file for p in self.validation.errors if p.kind is None}
        counts.append(("unknown", False, len(unattributed)))
        return counts


def validate_snapshot(snapshot: Snapshot) -> Revision:
    """Validate a snapshot's files in memory; the snapshot's own problems count as errors too."""
    validation = validate_documents(sorted(snapshot.files.items()), problems=snapshot.problems)
    return Revision(snapshot.revision, validation, empty=not snapshot.files, signer=snapshot.signer)


def unvalidated(snapshot: Snapshot, exc: BaseException) -> Revision:
    """The invalid revision for a snapshot whose validation raised `exc`: never in force.

    Whatever went wrong, the head is then reported as invalid (with a problem naming the
    exception) instead of the previous head staying reported as valid.
    """
    text = str(exc)
    if len(text) > 200:
        text = text[:200] + "..."
    problem = Problem.error(
        f"revision {snapshot.revision}",
        "revision.check-failed",
        f"validating this revision failed unexpectedly ({type(exc).__name__}: {text}); "
        "the last valid revision stays in force",
    )
    validation = ValidationResult(sorted(snapshot.files), (), (), (*snapshot.problems, problem))
    return Revision(snapshot.revision, validation, empty=not snapshot.files, signer=snapshot.signer)


def without_places(validation: ValidationResult, places: set[PlaceKey]) -> ValidationResult:
    """The same revision without the objects living in `places` (backing-off places are skipped)."""
    if not places:
        return validation
    clusters = [c for c in validation.clusters if (c.account.id, c.region) not in places]
    kept = {c.name for c in clusters}
    deployments = [d for d in validation.deployments if d.cluster in kept]
    return dataclasses.replace(validation, clusters=tuple(clusters), deployments=tuple(deployments))


class Revisions:
    """The head, the revision in force, the last fetch, and the places known since start-up."""

    def __init__(self) -> None:
        self.head: Revision | None = None
        self.in_force: Revision | None = None
        self.last_fetch: float | None = None
        self.fetch_error: str | None = None
        # Every place a valid revision used since start-up, with the account to reach it by:
        # when a cluster's manifest goes, its place stays observed (with prune on) until nothing
        # of ours is left there, so prune can find what Git removed.
        self._known_places: dict[PlaceKey, ObservedPlace] = {}

    def fetched(self, now: float) -> str | None:
        """A fetch succeeded at `now`; the error it recovers from, if any."""
        recovered, self.fetch_error = self.fetch_error, None
        self.last_fetch = now
        return recovered

    def fetch_failed(self, message: str) -> bool:
        """A fetch failed; True when it failed the same way last time (not news)."""
        repeated = self.fetch_error == message
        self.fetch_error = message
        return repeated

    def is_head(self, revision: str) -> bool:
        return self.head is not None and self.head.revision == revision

    def adopt(self, revision: Revision) -> Revision | None:
        """Make `revision` the head, and the one in force when valid; the one in force before."""
        previous = self.in_force
        self.head = revision
        if revision.valid:
            self.in_force = revision
            for cluster in revision.validation.clusters:
                self._known_places[(cluster.account.id, cluster.region)] = ObservedPlace(cluster.account, cluster.region)
        return previous

    def prune_allowed(self, *, enabled: bool, window_open: bool) -> bool:
        """Whether a pass may prune now; /status shows the same answer.

        PRODUCT.md: never prune while a manifest is invalid (the head is not in force), the
        source is empty, or the source cannot be reached (its head is not known); and, like
        every change, only inside an apply window.
        """
        in_force = self.in_force
        return bool(
            enabled
            and in_force is not None
            and self.head is in_force
            and not in_force.empty
            and self.fetch_error is None
            and window_open
        )

    def retired_places(self, in_force: Revision) -> tuple[ObservedPlace, ...]:
        """Places earlier revisions used and `in_force` (the pass's revision) does not."""
        current = {(c.account.id, c.region) for c in in_force.validation.clusters}
        return tuple(p for key, p in self._known_places.items() if key not in current)

    def forget_emptied(self, retired: Sequence[ObservedPlace], result: PassResult | None) -> list[ObservedPlace]:
        """Stop observing retired places a pass read and found nothing of ours in; those places."""
        if not retired or result is None or result.observation is None:
            return []
        failed = result.observation.failed_places()
        still_ours = {(o.account, o.region) for o in result.observation.resources}
        pending = {(o.change.account, o.change.region) for o in result.outcomes if o.result != "applied"}
        forgotten = []
        for place in retired:
            key = (place.account.id, place.region)
            if key not in failed and key not in still_ours and key not in pending:
                self._known_places.pop(key, None)
                forgotten.append(place)
        return forgotten
