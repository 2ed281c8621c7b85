"""One reconcile pass at a time, and what the last one found.

Owns a pass from start to finish: the apply window and the places backing off at its start,
whether it may prune (`Revisions.prune_allowed`), the engine call (`apply_once` inside a
window, `plan_once` outside), its one `PassReport`, the backoff it leaves, the per-object
status and drift (`status.assess`), the metrics and the log events. Keeps, under the daemon's
state lock, what /status shows of passes. Must not fetch (`fetcher`) or schedule (`daemon`).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime

from driftwarden.engine.reconcile import (
    PassResult,
    ReconcileSettings,
    apply_once,
    plan_once,
)
from driftwarden.providers.aws import AwsSessions
from driftwarden.providers.base import Provider
from driftwarden.providers.secret_sources import SecretResolver
from driftwarden.runtime.backoff import PlaceBackoff
from driftwarden.runtime.clock import Clock, iso
from driftwarden.runtime.events import PassEvents
from driftwarden.runtime.logs import EventLog
from driftwarden.runtime.metrics import Metrics
from driftwarden.runtime.passview import PlaceKey, PlaceTrouble
from driftwarden.runtime.report import PassReport, summarise_pass
from driftwarden.runtime.revisions import Revision, Revisions, without_places
from driftwarden.runtime.settings import DaemonSettings
from driftwarden.runtime.status import DriftMemory, ObjectState, assess
from driftwarden.runtime.windows import ApplyWindows, WindowState


class PassRunner:
    """Runs passes of the revision in force; `lock` guards `revisions` and the state kept here."""

    def __init__(self, sessions: AwsSessions, revisions: Revisions, lock: threading.RLock, *, metrics: Metrics,
                 settings: DaemonSettings, resolve_secret: SecretResolver, providers: Mapping[str, Provider],
                 log: EventLog, clock: Clock, stopping: threading.Event) -> None:
        self.sessions = sessions
        self.revisions = revisions
        self.lock = lock
        self.metrics = metrics
        self.settings = settings
        self.resolve_secret = resolve_secret
        self.providers = providers
        self.log = log
        self.clock = clock
        self.stopping = stopping
        self.windows = ApplyWindows(settings.apply_windows)
        self.backoff = PlaceBackoff(settings.backoff_initial_seconds, settings.backoff_max_seconds, clock)
        self._events = PassEvents(log)
        # One pass at a time: SYNC and DRIFT must not apply the same plan twice.
        self._pass_lock = threading.Lock()
        # What /status shows of passes; written under self.lock.
        self.window = self.windows.check(datetime.fromtimestamp(clock(), UTC))
        self.last_pass: PassReport | None = None
        self.pass_error: str | None = None
        self.objects: dict[str, ObjectState] = {}
        self._memory = DriftMemory()
        # The revision whose last pass finished everything (`PassReport.settled`): an interval
        # poll that finds it again costs one fetch and nothing else.
        self._settled_revision: str | None = None

    def settled(self, revision: str) -> bool:
        with self.lock:
            return revision == self._settled_revision

    def prune_active(self) -> bool:
        """What /status says of prune: the rule of the last pass's window."""
        with self.lock:
            return self.revisions.prune_allowed(enabled=self.settings.prune, window_open=self.window.open)

    def run(self, trigger: str) -> None:
        """One pass of the revision in force (none yet: counted as a failure, and said in /status)."""
        with self._pass_lock:
            if self.stopping.is_set():
                return
            now = self.clock()
            window = self.windows.check(datetime.fromtimestamp(now, UTC))
            with self.lock:
                in_force, fetch_error = self.revisions.in_force, self.revisions.fetch_error
                prune = self.revisions.prune_allowed(enabled=self.settings.prune, window_open=window.open)
                retired = self.revisions.retired_places(in_force) if prune and in_force else ()
            if in_force is None:
                self.metrics.reconcile_total.labels(result="failure").inc()
                message = "no valid revision to reconcile yet" + (
                    f": {fetch_error}" if fetch_error else " (see the manifest errors)"
                )
                with self.lock:
                    self.pass_error = message
                self.log.debug("reconcile.skipped", trigger=trigger, error=message)
                return
            started = time.monotonic()
            waiting = self.backoff.waiting(now)
            validation = without_places(in_force.validation, set(waiting))
            settings = ReconcileSettings(instance=self.settings.instance, prune=prune,
                                         prune_limit=self.settings.prune_limit, apply=self.settings.apply,
                                         retired_places=retired)
            result: PassResult | None = None
            crashed: str | None = None
            try:
                if window.open:
                    result = apply_once(validation, self.sessions, revision=in_force.revision, settings=settings,
                                        resolve_secret=self.resolve_secret, providers=self.providers,
                                        progress=self._progress,
                                        cancelled=self.stopping.is_set)
                else:
                    result = plan_once(validation, self.sessions, revision=in_force.revision, settings=settings,
                                       resolve_secret=self.resolve_secret, providers=self.providers)
            except Exception as exc:
                crashed = f"{type(exc).__name__}: {exc}"
                self.log.error("reconcile.crashed", trigger=trigger, revision=in_force.revision, exc_info=True)
            finally:
                seconds = time.monotonic() - started
                self.metrics.reconcile_duration.labels(trigger=trigger).observe(seconds)
            report = summarise_pass(result, crashed=crashed, waiting=waiting, applied=window.open, trigger=trigger,
                                    revision=in_force.revision, started=now, seconds=seconds)
            self._absorb(in_force, result, report, waiting, window)
            with self.lock:
                forgotten = self.revisions.forget_emptied(retired, result)
                self._settled_revision = in_force.revision if report.settled else None
            for place in forgotten:
                self.log.info("place.retired", account=place.account.id, region=place.region)

    def _progress(self, message: str) -> None:
        self.log.debug("apply.progress", message=message.strip())

    def _absorb(self, in_force: Revision, result: PassResult | None, report: PassReport,
                waiting: Mapping[PlaceKey, PlaceTrouble], window: WindowState) -> None:
        """Backoff, status, metrics and log events of one pass, whether it finished or crashed."""
        for place in sorted(report.reconciled_places | set(report.failed_places)):
            if place in report.failed_places:
                entry = self.backoff.fail(place, report.failed_places[place], report.started)
                self.log.warning("place.backoff", account=place[0], region=place[1], failures=entry.failures,
                                 next_attempt=iso(entry.next_attempt), error=entry.error)
            elif self.backoff.succeed(place):
                self.log.info("place.recovered", account=place[0], region=place[1])
        assessment = assess(in_force.validation, result, memory=self._memory, previous=self.objects,
                            troubled=waiting, applied=window.open)
        objects: dict[str, ObjectState] = {}
        for owner, state in assessment.objects.items():
            backing_off = self.backoff.get(state.place)
            if backing_off is not None and backing_off.next_attempt > report.started:
                state = dataclasses.replace(state, next_attempt=backing_off.next_attempt,
                                            last_error=state.last_error or backing_off.error)
            objects[owner] = state
        self.metrics.set_objects([s.info() for s in objects.values()], assessment.drift_counts)
        self.metrics.record_drift(assessment.newly_drifted)
        self.metrics.record_pass(report)
        self._events.details(report, result, objects, self.objects, window)
        with self.lock:
            previous_window = self.window
            previous_result = self.last_pass.result if self.last_pass else None
            self.objects = objects
            self._memory = assessment.memory
            self.last_pass = report
            self.pass_error = report.first_problem
            self.window = window
        self._events.finished(report, previous_result, window, previous_window)
