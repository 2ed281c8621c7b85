"""Following the source: fetch, validate a new revision in memory, and adopt it.

Owns the SYNC job's first half: one `Source.fetch`, the git fetch metrics, and the log events
of fetching (`sync.*`) and adopting (`revision.adopted`, `revision.invalid`, and
`revision.check_failed` with the traceback when validating raised: that head is adopted as
invalid, so it never stays unreported or blocks readiness). What was fetched
is recorded in the shared `Revisions`, under the daemon's state lock. Must not reconcile,
decide what is in force (`Revisions.adopt` does), or log anything a source URL could leak
(messages are redacted).
"""

from __future__ import annotations

import threading

from driftwarden.errors import SourceError
from driftwarden.redaction import redact
from driftwarden.runtime.clock import Clock
from driftwarden.runtime.logs import EventLog
from driftwarden.runtime.metrics import Metrics
from driftwarden.runtime.report import MAX_LISTED_PROBLEMS
from driftwarden.runtime.revisions import Revisions, unvalidated, validate_snapshot
from driftwarden.runtime.source import Snapshot, Source


class Fetcher:
    """Fetches `source` into `revisions`; `lock` guards `revisions` (it is the daemon's)."""

    def __init__(self, source: Source, revisions: Revisions, lock: threading.RLock, *, metrics: Metrics,
                 log: EventLog, clock: Clock) -> None:
        self.source = source
        self.revisions = revisions
        self.lock = lock
        self.metrics = metrics
        self.log = log
        self.clock = clock

    def fetch(self) -> bool:
        """Fetch once, adopting a new revision; False when the source could not be read."""
        try:
            snapshot = self.source.fetch()
        except SourceError as exc:
            self._failed(str(exc))
            return False
        except Exception as exc:  # gitpython and the OS have more ways to fail than SourceError
            self._failed(redact(f"{self.source.describe()}: {type(exc).__name__}: {exc}"))
            return False
        now = self.clock()
        self.metrics.git_fetch_total.labels(result="success").inc()
        self.metrics.git_last_sync.set(now)
        with self.lock:
            recovered = self.revisions.fetched(now)
            unchanged = self.revisions.is_head(snapshot.revision)
        if recovered is not None:
            self.log.info("sync.recovered", source=self.source.describe(), revision=snapshot.revision)
        if unchanged:
            self.log.debug("sync.unchanged", revision=snapshot.revision)
            return True
        self._adopt(snapshot)
        return True

    def _failed(self, message: str) -> None:
        self.metrics.git_fetch_total.labels(result="failure").inc()
        with self.lock:
            repeated = self.revisions.fetch_failed(message)
            in_force = self.revisions.in_force.revision if self.revisions.in_force else None
        # Every failure is counted; the same failure again is not news for the log.
        (self.log.debug if repeated else self.log.warning)(
            "sync.fetch_failed", source=self.source.describe(), error=message, revision=in_force
        )

    def _adopt(self, snapshot: Snapshot) -> None:
        try:
            revision = validate_snapshot(snapshot)
        except Exception as exc:  # a bug in validation: the head is invalid, not the daemon stuck
            self.log.error("revision.check_failed", exc_info=True, revision=snapshot.revision)
            revision = unvalidated(snapshot, exc)
        self.metrics.set_manifest_counts(revision.manifest_counts())
        with self.lock:
            previous = self.revisions.adopt(revision)
        validation = revision.validation
        if revision.valid:
            self.metrics.set_revision(revision.revision)
            self.log.info(
                "revision.adopted",
                revision=revision.revision,
                previous=previous.revision if previous else None,
                files=len(validation.files),
                clusters=len(validation.clusters),
                deployments=len(validation.deployments),
                signer=revision.signer,
                warnings=[str(w) for w in validation.warnings[:MAX_LISTED_PROBLEMS]] or None,
            )
            return
        self.log.error(
            "revision.invalid",
            revision=revision.revision,
            errors=len(validation.errors),
            problems=[{"file": p.file, "line": p.line, "message": p.message} for p in validation.errors[:MAX_LISTED_PROBLEMS]],
            in_force=previous.revision if previous else None,
        )
