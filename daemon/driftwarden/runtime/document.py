"""The /status document: the daemon's state as JSON, paths and words only.

Owns the shape of /status (a contract: dashboards, runbooks and tests read it). Must not
decide anything (prune, readiness, statuses are decided elsewhere and passed in) nor include a
value of an AWS resource or a secret. Error text passes `scrub_secret_references` here, the
last step before it is shown: no credentials, no Secrets Manager or SSM parameter names.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from driftwarden.redaction import scrub_secret_references
from driftwarden.runtime.clock import iso
from driftwarden.runtime.report import MAX_LISTED_PROBLEMS, PassReport
from driftwarden.runtime.revisions import Revision, Revisions
from driftwarden.runtime.status import ObjectState
from driftwarden.runtime.windows import WindowState


def status_document(
    *,
    version: str,
    instance: str,
    source: str,
    ready: bool,
    revisions: Revisions,
    pass_error: str | None,
    window: WindowState,
    windows: Sequence[str],
    prune: Mapping[str, Any],
    next_runs: Mapping[str, str | None],
    last_pass: PassReport | None,
    backoff: list[dict[str, Any]],
    objects: Iterable[ObjectState],
) -> dict[str, Any]:
    head, in_force = revisions.head, revisions.in_force
    return {
        "version": version,
        "instance": instance,
        "source": source,
        "ready": ready,
        "revision": in_force.revision if in_force else None,
        "head_revision": head.revision if head else None,
        "head_valid": head.valid if head else None,
        "signer": in_force.signer if in_force else None,
        "last_sync": iso(revisions.last_fetch),
        "last_error": _scrubbed(revisions.fetch_error or pass_error),
        "fetch_error": _scrubbed(revisions.fetch_error),
        "manifests": manifests_json(head) if head is not None else None,
        "apply_window": window.to_json(windows),
        "prune": dict(prune),
        "next_runs": dict(next_runs),
        "last_reconcile": last_pass.to_json() if last_pass is not None else None,
        "backoff": backoff,
        "objects": [object_json(s) for s in sorted(objects, key=lambda s: (s.kind, s.name))],
    }


def manifests_json(head: Revision) -> dict[str, Any]:
    """The head revision's validation: counts, and the first problems."""
    validation = head.validation
    return {
        "revision": head.revision,
        "valid": head.valid,
        "files": len(validation.files),
        "objects": {kind: validation.declared.get(kind, 0) for kind in ("Cluster", "Deployment")},
        "errors": [dict(p.to_json()) for p in validation.errors[:MAX_LISTED_PROBLEMS]],
        "error_count": len(validation.errors),
        "warnings": [dict(p.to_json()) for p in validation.warnings[:MAX_LISTED_PROBLEMS]],
    }


def object_json(state: ObjectState) -> dict[str, Any]:
    return {
        "kind": state.kind,
        "name": state.name,
        "cluster": state.cluster,
        "account": state.account,
        "region": state.region,
        "status": state.status,
        "drift": state.drift,
        "drifted": [d.to_json() for d in state.drifted],
        "last_error": _scrubbed(state.last_error),
        "next_attempt": iso(state.next_attempt),
    }


def _scrubbed(error: str | None) -> str | None:
    return None if error is None else scrub_secret_references(error)
