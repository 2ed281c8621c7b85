"""The daemon (`driftwarden run`): a scheduler, HTTP endpoints, a webhook and signal handling
around the reconcile engine.

Two jobs run on an APScheduler 3 `BackgroundScheduler`, each never overlapping itself
(`max_instances=1`), missed runs coalesced into one, with jitter:

* SYNC, every `--interval` (and at once on start-up and on a signed webhook): fetch the source;
  a new revision is validated in memory and, when every manifest is valid, put in force; then
  one reconcile pass of the revision in force.
* DRIFT, every `--drift-interval`: one reconcile pass of the revision in force, without
  fetching, so drift is checked at a known pace even when `--interval` is long (webhook setups).

A pass (both jobs; one at a time) observes AWS, plans, and — inside an apply window — applies
with `ApplySettings(wait=False)`: long AWS operations are started, never awaited, and the next
pass continues where AWS is (every resource is found again by its tags, so a restart mid-apply
creates nothing twice). What a pass finds is turned into per-object status and drift by
`status.assess`, and into metrics. Every pass is a drift check: `drift_detected_total` counts
each AWS resource found drifted that was not drifted on the pass before (so a warn-only drift
that persists counts once, and drift that comes back after a repair counts again).

Safety rules (PRODUCT.md): a revision with any invalid manifest is never applied — the last
valid one stays in force for everything, and the errors go to /status and metrics; prune only
when the revision in force is the head, valid and not empty, and the last fetch succeeded. A place (account, region) whose
reads or applies fail backs off on its own (30 s, doubling up to 30 minutes); the others
go on.

HTTP (stdlib `ThreadingHTTPServer`, on the metrics port): GET /metrics, /healthz, /readyz,
/status; POST /webhook (HMAC-SHA256, GitHub's `X-Hub-Signature-256`). See `Daemon.status`
for the /status document and `_Handler._webhook` for the webhook rules.

What it must not do: decide what to change in AWS (`plan`), talk to AWS itself (`reconcile`),
or put a secret anywhere — no request bodies in logs, no values in /status.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import hmac
import json
import logging
import os
import re
import signal
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TextIO

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from driftwarden import __version__
from driftwarden.engine.apply import ApplySettings
from driftwarden.engine.graph import DEFAULT_INSTANCE
from driftwarden.engine.observe import Place as ObservedPlace
from driftwarden.engine.reconcile import (
    PassResult,
    ReconcileSettings,
    SecretResolver,
    apply_once,
    plan_once,
)
from driftwarden.errors import DriftwardenError, SourceError, UsageError
from driftwarden.manifests.validation import ValidationResult, validate_documents
from driftwarden.providers.aws import AwsSessions
from driftwarden.providers.base import Provider
from driftwarden.runtime.logs import EventLog
from driftwarden.runtime.metrics import CONTENT_TYPE, Metrics
from driftwarden.runtime.source import Snapshot, Source, redact
from driftwarden.runtime.status import DriftMemory, ObjectState, Place, PlaceTrouble, assess

Clock = Callable[[], float]

SYNC_JOB = "sync"
DRIFT_JOB = "drift"
MAX_WEBHOOK_BYTES = 1 << 20
# Problems listed in /status and in one log event; the counts are always complete.
MAX_LISTED_PROBLEMS = 50

# --- settings -------------------------------------------------------------------------------------

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """Seconds in `30s`, `5m`, `1h`, `1h30m` or a bare number of seconds; ValueError otherwise."""
    value = str(text).strip().lower()
    if not value:
        raise ValueError("empty duration")
    try:
        seconds = float(value)
    except ValueError:
        position, seconds = 0, 0.0
        for match in _DURATION.finditer(value):
            if match.start() != position:
                break
            seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
            position = match.end()
        if position != len(value) or position == 0:
            raise ValueError(f"{text!r} is not a duration (examples: 30s, 5m, 1h, 1h30m)") from None
    if seconds <= 0:
        raise ValueError(f"{text!r}: a duration must be positive")
    return seconds


@dataclass(frozen=True)
class DaemonSettings:
    """How the daemon runs; `cli.cmd_run` builds it from flags and DRIFTWARDEN_* variables."""

    interval_seconds: float = 60.0
    drift_interval_seconds: float = 300.0
    metrics_host: str = "0.0.0.0"
    metrics_port: int = 9108
    webhook_secret_file: Path | None = None
    prune: bool = False
    prune_limit: int = 20
    apply_windows: tuple[str, ...] = ()
    instance: str = DEFAULT_INSTANCE
    # Per-place backoff after failed reads or applies: first delay, doubling up to the cap.
    backoff_initial_seconds: float = 30.0
    backoff_max_seconds: float = 30 * 60.0
    max_webhook_bytes: int = MAX_WEBHOOK_BYTES
    # SIGTERM to exit: the pass in progress is let finish, within this bound.
    shutdown_timeout_seconds: float = 25.0
    apply: ApplySettings = field(default_factory=lambda: ApplySettings(wait=False))

    def __post_init__(self) -> None:
        if self.interval_seconds <= 0 or self.drift_interval_seconds <= 0:
            raise UsageError("--interval and --drift-interval must be positive")
        if not 0 <= self.metrics_port <= 65535:
            raise UsageError(f"--metrics-port {self.metrics_port}: not a TCP port")
        if self.prune_limit < 0:
            raise UsageError("--prune-limit must be 0 or more")
        if self.apply.wait:
            raise UsageError("the daemon never waits for long AWS operations: ApplySettings(wait=False)")


# --- apply windows -------------------------------------------------------------------------------

_CRON_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _crontab_weekdays(text: str) -> str:
    """A crontab day-of-week field with APScheduler's meaning.

    crontab counts 0 (and 7) as Sunday; APScheduler 3's `from_crontab` takes 0 as Monday.
    Numbers, ranges and steps are rewritten as lists of day names, which mean the same to both.
    """
    if not re.search(r"\d", text):
        return text
    days: list[str] = []
    for part in text.split(","):
        spec, _slash, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if spec == "*":
            first, last = 0, 6
        elif "-" in spec:
            low, high = spec.split("-", 1)
            first, last = _weekday_number(low), _weekday_number(high)
        else:
            first = last = _weekday_number(spec)
            if step_text:
                last = 6
        if first > last:
            raise ValueError(f"day-of-week range {spec!r} runs backwards")
        for number in range(first, last + 1, step):
            name = _CRON_WEEKDAYS[number]
            if name not in days:
                days.append(name)
    return ",".join(days)


def _weekday_number(text: str) -> int:
    text = text.strip().lower()
    if text.isdigit():
        number = int(text)
        if not 0 <= number <= 7:
            raise ValueError(f"day of week {text} is not 0-7")
        return number
    if text in _CRON_WEEKDAYS:
        return _CRON_WEEKDAYS.index(text)
    raise ValueError(f"unknown day of week {text!r}")


@dataclass(frozen=True)
class WindowState:
    open: bool
    reason: str
    next_open: datetime | None = None


class ApplyWindows:
    """Cron expressions (UTC) naming the minutes in which changes may be applied.

    No expression: always open. Otherwise a minute is inside a window when any expression
    matches it (`* 9-17 * * 1-5`: every minute from 09:00 to 17:59, Monday to Friday).
    """

    def __init__(self, expressions: Sequence[str]) -> None:
        self.expressions = tuple(e.strip() for e in expressions if e.strip())
        self._triggers: list[CronTrigger] = []
        for expression in self.expressions:
            fields = expression.split()
            if len(fields) != 5:
                raise UsageError(f"--apply-window {expression!r}: expected 5 cron fields (minute hour day month weekday)")
            try:
                fields[4] = _crontab_weekdays(fields[4])
                self._triggers.append(CronTrigger.from_crontab(" ".join(fields), timezone=UTC))
            except ValueError as exc:
                raise UsageError(f"--apply-window {expression!r}: {exc}") from None

    def check(self, now: datetime) -> WindowState:
        if not self._triggers:
            return WindowState(True, "no apply window configured: changes are applied at any time")
        minute = now.astimezone(UTC).replace(second=0, microsecond=0)
        nexts = []
        for expression, trigger in zip(self.expressions, self._triggers, strict=True):
            upcoming = trigger.get_next_fire_time(None, minute)
            if upcoming == minute:
                return WindowState(True, f"inside apply window {expression!r}")
            if upcoming is not None:
                nexts.append(upcoming)
        following = min(nexts) if nexts else None
        when = f"; the next one opens at {_iso(following.timestamp())}" if following else ""
        return WindowState(False, f"outside every apply window: planning and reporting only{when}", following)


# --- per-place backoff ------------------------------------------------------------------------------


@dataclass
class _Backoff:
    failures: int
    next_attempt: float
    error: str


class PlaceBackoff:
    """Exponential backoff per (account, region): one failing place never slows the others."""

    def __init__(self, initial: float, maximum: float) -> None:
        self.initial = initial
        self.maximum = maximum
        self._places: dict[Place, _Backoff] = {}

    def fail(self, place: Place, error: str, now: float) -> _Backoff:
        previous = self._places.get(place)
        failures = previous.failures + 1 if previous else 1
        delay = min(self.initial * 2 ** (failures - 1), self.maximum)
        entry = _Backoff(failures, now + delay, error)
        self._places[place] = entry
        return entry

    def succeed(self, place: Place) -> bool:
        """Forget a place's failures; True when it was backing off."""
        return self._places.pop(place, None) is not None

    def waiting(self, now: float) -> dict[Place, PlaceTrouble]:
        """Places whose next attempt is still to come."""
        return {
            place: PlaceTrouble(f"backing off after {b.failures} failed attempt(s): {b.error}", b.next_attempt)
            for place, b in self._places.items()
            if b.next_attempt > now
        }

    def get(self, place: Place) -> _Backoff | None:
        return self._places.get(place)

    def to_json(self) -> list[dict[str, Any]]:
        return [
            {"account": account, "region": region, "failures": b.failures, "next_attempt": _iso(b.next_attempt),
             "last_error": b.error}
            for (account, region), b in sorted(self._places.items())
        ]


# --- revisions --------------------------------------------------------------------------------------


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
        counts = []
        for kind, valid in (("Cluster", len(self.validation.clusters)), ("Deployment", len(self.validation.deployments))):
            declared = self.validation.declared.get(kind, 0)
            counts += [(kind, True, valid), (kind, False, max(0, declared - valid))]
        return counts


def validate_snapshot(snapshot: Snapshot) -> Revision:
    """Validate a snapshot's files in memory; the snapshot's own problems count as errors too."""
    validation = validate_documents(sorted(snapshot.files.items()))
    if snapshot.problems:
        validation.problems = sorted([*validation.problems, *snapshot.problems])
    return Revision(snapshot.revision, validation, empty=not snapshot.files, signer=snapshot.signer)


def _without_places(validation: ValidationResult, places: set[Place]) -> ValidationResult:
    """The same revision without the objects living in `places` (backing-off places are skipped)."""
    if not places:
        return validation
    clusters = [c for c in validation.clusters if (c.account.id, c.region) not in places]
    kept = {c.name for c in clusters}
    deployments = [d for d in validation.deployments if d.cluster in kept]
    return dataclasses.replace(validation, clusters=clusters, deployments=deployments)


def _problem_json(problem: Any) -> dict[str, Any]:
    return dict(problem.to_json())


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


# --- the daemon -------------------------------------------------------------------------------------


class Daemon:
    """The scheduler, the state /status shows, and the HTTP server; collaborators are injected."""

    def __init__(
        self,
        source: Source,
        sessions: AwsSessions,
        metrics: Metrics,
        settings: DaemonSettings,
        *,
        resolve_secret: SecretResolver,
        providers: Mapping[str, Provider],
        log: EventLog | None = None,
        clock: Clock = time.time,
        version: str = __version__,
    ) -> None:
        self.source = source
        self.sessions = sessions
        self.metrics = metrics
        self.settings = settings
        self.resolve_secret = resolve_secret
        self.providers = providers
        self.log = log or EventLog("driftwarden.runtime.daemon")
        self.clock = clock
        self.version = version
        self.windows = ApplyWindows(settings.apply_windows)
        self.backoff = PlaceBackoff(settings.backoff_initial_seconds, settings.backoff_max_seconds)
        if settings.webhook_secret_file is not None:
            self._read_webhook_secret()  # fail at start-up, not on the first delivery
        self._scheduler = BackgroundScheduler(
            timezone=UTC,
            executors={"default": ThreadPoolExecutor(max_workers=3)},
            job_defaults={"coalesce": True, "max_instances": 1},
        )
        self._http: ThreadingHTTPServer | None = None
        self._http_thread: threading.Thread | None = None
        # One pass at a time: SYNC and DRIFT must not apply the same plan twice.
        self._pass_lock = threading.Lock()
        self._state = threading.RLock()
        self._stopping = threading.Event()
        self._started_at: float | None = None
        # State shown by /status; written under self._state.
        self._head: Revision | None = None
        self._in_force: Revision | None = None
        self._ready = False
        self._last_fetch: float | None = None
        self._fetch_error: str | None = None
        self._pass_error: str | None = None
        self._last_pass: dict[str, Any] | None = None
        self._objects: dict[str, ObjectState] = {}
        self._memory = DriftMemory()
        # Every place a valid revision used since start-up, with the account to reach it by:
        # when a cluster's manifest goes, its place stays observed (with prune on) until nothing
        # of ours is left there, so prune can find what Git removed.
        self._known_places: dict[Place, ObservedPlace] = {}
        # The revision whose last pass finished everything (all applied, nothing waiting on AWS,
        # no place backing off, apply window open): an interval poll that finds this revision
        # again costs one fetch and nothing else; drift checks run on their own schedule.
        self._settled_revision: str | None = None
        self._plan_errors: set[str] = set()
        self._plan_warnings: set[str] = set()
        self._window = self.windows.check(datetime.now(UTC))
        # SYNC bookkeeping: the trigger of the next run, and webhooks that came mid-run.
        self._sync_running = False
        self._resync = False
        self._next_trigger = "startup"

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def http_address(self) -> tuple[str, int]:
        if self._http is None:
            raise DriftwardenError("the HTTP server is not running")
        host, port = self._http.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        """Listen on the metrics port, then schedule SYNC (now) and DRIFT."""
        self._http = self._listen()
        self._http_thread = threading.Thread(
            target=self._http.serve_forever, kwargs={"poll_interval": 0.25}, name="http", daemon=True
        )
        self._http_thread.start()
        now = datetime.now(UTC)
        self._scheduler.add_job(
            self._sync_job,
            IntervalTrigger(seconds=self.settings.interval_seconds, jitter=self._jitter(self.settings.interval_seconds)),
            id=SYNC_JOB,
            name="sync",
            next_run_time=now,
            misfire_grace_time=max(1, int(self.settings.interval_seconds)),
        )
        self._scheduler.add_job(
            self._drift_job,
            IntervalTrigger(
                seconds=self.settings.drift_interval_seconds,
                jitter=self._jitter(self.settings.drift_interval_seconds),
                start_date=now,
            ),
            id=DRIFT_JOB,
            name="drift",
            misfire_grace_time=max(1, int(self.settings.drift_interval_seconds)),
        )
        self._scheduler.start()
        self._started_at = self.clock()
        host, port = self.http_address
        self.log.info(
            "daemon.started",
            version=self.version,
            source=self.source.describe(),
            instance=self.settings.instance,
            http=f"http://{_display_host(host)}:{port}",
            interval_seconds=self.settings.interval_seconds,
            drift_interval_seconds=self.settings.drift_interval_seconds,
            prune=self.settings.prune,
            apply_windows=list(self.windows.expressions) or None,
            webhook=self.settings.webhook_secret_file is not None,
        )

    def stop(self) -> None:
        """Stop scheduling, let the pass in progress finish (its AWS calls), stop HTTP."""
        self._stopping.set()
        if self._scheduler.running:
            self._scheduler.shutdown(wait=True)
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        if self._http_thread is not None:
            self._http_thread.join(timeout=5)
        self.log.info("daemon.stopped")

    @staticmethod
    def _jitter(interval: float) -> float:
        # Spread many replicas and accounts a little; never more than a tenth of the interval.
        return min(interval / 10, 30.0)

    def _listen(self) -> ThreadingHTTPServer:
        host = self.settings.metrics_host
        server_class: type[ThreadingHTTPServer] = _Server6 if ":" in host else _Server
        try:
            server = server_class((host, self.settings.metrics_port), _handler_for(self))
        except OSError as exc:
            raise DriftwardenError(
                f"cannot listen on {host}:{self.settings.metrics_port}: {exc.strerror or exc}"
            ) from None
        return server

    # -- the jobs -----------------------------------------------------------------------------

    def request_sync(self, trigger: str = "webhook") -> bool:
        """Run SYNC now (a webhook); if it is running, once more right after. False when stopping."""
        if self._stopping.is_set() or not self._scheduler.running:
            return False
        with self._state:
            self._next_trigger = trigger
            if self._sync_running:
                self._resync = True
                return True
        with contextlib.suppress(Exception):  # the job is gone only while shutting down
            self._scheduler.modify_job(SYNC_JOB, next_run_time=datetime.now(UTC))
            return True
        return False

    def _sync_job(self) -> None:
        with self._state:
            self._sync_running = True
            trigger, self._next_trigger = self._next_trigger, "interval"
        try:
            if self._stopping.is_set():
                return
            fetched = self._fetch()
            with self._state:
                in_force = self._in_force
                idle = (
                    trigger == "interval"
                    and in_force is not None
                    and in_force.revision == self._settled_revision
                )
            if idle:
                self.log.debug("sync.idle", revision=in_force.revision if in_force else None)
            else:
                self._reconcile(trigger)
            if fetched and not self._stopping.is_set():
                with self._state:
                    if not self._ready:
                        self.log.info("daemon.ready", revision=self._in_force.revision if self._in_force else None)
                    self._ready = True
        except Exception:  # a bug: keep the daemon alive and say so
            self.log.error("sync.crashed", exc_info=True)
        finally:
            with self._state:
                self._sync_running = False
                again, self._resync = self._resync, False
            if again:
                self.request_sync(self._next_trigger)

    def _drift_job(self) -> None:
        try:
            if not self._stopping.is_set():
                self._reconcile("drift")
        except Exception:
            self.log.error("drift.crashed", exc_info=True)

    # -- fetching and validating ---------------------------------------------------------------

    def _fetch(self) -> bool:
        try:
            snapshot = self.source.fetch()
        except SourceError as exc:
            self._fetch_failed(str(exc))
            return False
        except Exception as exc:  # gitpython and the OS have more ways to fail than SourceError
            self._fetch_failed(redact(f"{self.source.describe()}: {type(exc).__name__}: {exc}"))
            return False
        now = self.clock()
        self.metrics.git_fetch_total.labels(result="success").inc()
        self.metrics.git_last_sync.set(now)
        with self._state:
            recovered, self._fetch_error = self._fetch_error, None
            self._last_fetch = now
            head = self._head
        if recovered is not None:
            self.log.info("sync.recovered", source=self.source.describe(), revision=snapshot.revision)
        if head is not None and head.revision == snapshot.revision:
            self.log.debug("sync.unchanged", revision=snapshot.revision)
            return True
        self._adopt(snapshot)
        return True

    def _fetch_failed(self, message: str) -> None:
        self.metrics.git_fetch_total.labels(result="failure").inc()
        with self._state:
            repeated = self._fetch_error == message
            self._fetch_error = message
            in_force = self._in_force.revision if self._in_force else None
        # Every failure is counted; the same failure again is not news for the log.
        (self.log.debug if repeated else self.log.warning)(
            "sync.fetch_failed", source=self.source.describe(), error=message, revision=in_force
        )

    def _adopt(self, snapshot: Snapshot) -> None:
        revision = validate_snapshot(snapshot)
        self.metrics.set_manifest_counts(revision.manifest_counts())
        with self._state:
            previous = self._in_force
            self._head = revision
            if revision.valid:
                self._in_force = revision
                for cluster in revision.validation.clusters:
                    self._known_places[(cluster.account.id, cluster.region)] = ObservedPlace(cluster.account, cluster.region)
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

    # -- one pass -----------------------------------------------------------------------------

    def _reconcile(self, trigger: str) -> None:
        with self._pass_lock:
            if self._stopping.is_set():
                return
            with self._state:
                in_force, head, reachable = self._in_force, self._head, self._fetch_error is None
            if in_force is None:
                self.metrics.reconcile_total.labels(result="failure").inc()
                message = "no valid revision to reconcile yet" + (
                    f": {self._fetch_error}" if self._fetch_error else " (see the manifest errors)"
                )
                with self._state:
                    self._pass_error = message
                self.log.debug("reconcile.skipped", trigger=trigger, error=message)
                return
            started, now = time.monotonic(), self.clock()
            window = self.windows.check(datetime.fromtimestamp(now, UTC))
            waiting = self.backoff.waiting(now)
            validation = _without_places(in_force.validation, set(waiting))
            # PRODUCT.md: never prune while a manifest is invalid (the head is not in force), the
            # source is empty, or the source cannot be reached (its head is not known).
            prune = self.settings.prune and head is in_force and not in_force.empty and reachable and window.open
            retired = self._retired_places(in_force) if prune else ()
            settings = ReconcileSettings(
                instance=self.settings.instance,
                prune=prune,
                prune_limit=self.settings.prune_limit,
                apply=self.settings.apply,
                retired_places=retired,
            )
            result: PassResult | None = None
            crashed: str | None = None
            try:
                if window.open:
                    result = apply_once(validation, self.sessions, revision=in_force.revision, settings=settings,
                                        resolve_secret=self.resolve_secret, providers=self.providers,
                                        progress=self._progress,
                                        cancelled=self._stopping.is_set)
                else:
                    result = plan_once(validation, self.sessions, revision=in_force.revision, settings=settings,
                                       resolve_secret=self.resolve_secret, providers=self.providers)
            except Exception as exc:
                crashed = f"{type(exc).__name__}: {exc}"
                self.log.error("reconcile.crashed", trigger=trigger, revision=in_force.revision, exc_info=True)
            finally:
                self.metrics.reconcile_duration.labels(trigger=trigger).observe(time.monotonic() - started)
            self._absorb(in_force, result, crashed, trigger, waiting, window, now, time.monotonic() - started)
            self._forget_emptied(retired, result)
            settled = (
                crashed is None
                and result is not None
                and not result.failed
                and window.open
                and not waiting
                and all(outcome.result == "applied" for outcome in result.outcomes)
            )
            with self._state:
                self._settled_revision = in_force.revision if settled else None

    def _retired_places(self, in_force: Revision) -> tuple[ObservedPlace, ...]:
        """Places earlier revisions used and this one does not."""
        current = {(c.account.id, c.region) for c in in_force.validation.clusters}
        with self._state:
            return tuple(p for key, p in self._known_places.items() if key not in current)

    def _forget_emptied(self, retired: Sequence[ObservedPlace], result: PassResult | None) -> None:
        """Stop observing a retired place once a pass read it and found nothing of ours left."""
        if not retired or result is None or result.observation is None:
            return
        failed = result.observation.failed_places()
        still_ours = {(o.account, o.region) for o in result.observation.resources}
        pending = {(o.change.account, o.change.region) for o in result.outcomes if o.result != "applied"}
        for place in retired:
            key = (place.account.id, place.region)
            if key not in failed and key not in still_ours and key not in pending:
                with self._state:
                    self._known_places.pop(key, None)
                self.log.info("place.retired", account=place.account.id, region=place.region)

    def _progress(self, message: str) -> None:
        self.log.debug("apply.progress", message=message.strip())

    def _absorb(
        self,
        in_force: Revision,
        result: PassResult | None,
        crashed: str | None,
        trigger: str,
        waiting: Mapping[Place, PlaceTrouble],
        window: WindowState,
        now: float,
        seconds: float,
    ) -> None:
        """Status, metrics, backoff and log events of one pass, whether it finished or crashed."""
        failed_places: dict[Place, str] = {}
        reconciled: set[Place] = set()
        if result is not None:
            reconciled = {r.place for r in result.resources}
            if result.observation is not None:
                for error in result.observation.errors:
                    failed_places.setdefault((error.account, error.region), f"cannot read {error.type}: {error.message}")
            for outcome in result.outcomes:
                if outcome.result == "failed":
                    failed_places.setdefault(
                        (outcome.change.account, outcome.change.region),
                        f"{outcome.change.action} {outcome.change.key} failed: {outcome.message}",
                    )
        for place in sorted(reconciled | set(failed_places)):
            if place in failed_places:
                entry = self.backoff.fail(place, failed_places[place], now)
                self.log.warning("place.backoff", account=place[0], region=place[1], failures=entry.failures,
                                 next_attempt=_iso(entry.next_attempt), error=entry.error)
            elif self.backoff.succeed(place):
                self.log.info("place.recovered", account=place[0], region=place[1])

        assessment = assess(in_force.validation, result, memory=self._memory, previous=self._objects,
                            troubled=waiting, applied=window.open)
        objects: dict[str, ObjectState] = {}
        for owner, state in assessment.objects.items():
            backing_off = self.backoff.get(state.place)
            if backing_off is not None and backing_off.next_attempt > now:
                state = dataclasses.replace(state, next_attempt=backing_off.next_attempt,
                                            last_error=state.last_error or backing_off.error)
            objects[owner] = state
        self.metrics.set_objects([s.info() for s in objects.values()], assessment.drift_counts)
        for kind, resource_type in assessment.newly_drifted:
            self.metrics.drift_detected.labels(kind=kind, resource=resource_type).inc()
        outcomes = result.outcomes if result is not None else []
        self.metrics.record_outcomes(outcomes)

        problems = self._problems(result, crashed, waiting)
        word = self._result_word(result, crashed, problems, reconciled - set(failed_places))
        self.metrics.reconcile_total.labels(result=word).inc()
        if word == "success":
            self.metrics.last_success.set(now)

        self._log_pass(in_force, result, objects, trigger, window)
        plan = result.plan if result is not None else None
        summary = {
            "trigger": trigger,
            "revision": in_force.revision,
            "started": _iso(now),
            "duration_seconds": round(seconds, 3),
            "result": word,
            "applied": window.open,
            "plan": plan.summary() if plan is not None else None,
            "outcomes": dict(Counter(o.result for o in outcomes)),
            "errors": problems[:MAX_LISTED_PROBLEMS],
            "warnings": (plan.warnings[:MAX_LISTED_PROBLEMS] if plan is not None else []),
        }
        with self._state:
            previous_window = self._window
            previous_word = (self._last_pass or {}).get("result")
            self._objects = objects
            self._memory = assessment.memory
            self._last_pass = summary
            self._pass_error = problems[0] if problems else None
            self._window = window
        if previous_window.open != window.open:
            self.log.info("apply_window.changed", open=window.open, reason=window.reason)
        # INFO when something was done or the outcome changed; a pass like the last one (or one
        # that only waits for AWS) is routine.
        acted = any(o.result != "skipped" for o in outcomes)
        (self.log.info if acted or word != previous_word else self.log.debug)(
            "reconcile.finished",
            trigger=trigger,
            revision=in_force.revision,
            result=word,
            seconds=round(seconds, 3),
            plan=summary["plan"],
            outcomes=summary["outcomes"] or None,
        )

    @staticmethod
    def _problems(result: PassResult | None, crashed: str | None, waiting: Mapping[Place, PlaceTrouble]) -> list[str]:
        problems: list[str] = []
        if crashed is not None:
            problems.append(f"the pass crashed: {crashed}")
        if result is not None:
            if result.plan is not None:
                problems += [f"{e.key}: {e.message}" for e in result.plan.errors]
            elif result.observation is None and not result.validation.valid:
                problems.append("the revision is invalid")
            problems += [
                f"{o.change.action} {o.change.key} failed: {o.message}" for o in result.outcomes if o.result == "failed"
            ]
        for (account, region), trouble in sorted(waiting.items()):
            problems.append(f"account {account} {region} skipped: {trouble.error} (next attempt {_iso(trouble.next_attempt)})")
        return problems

    @staticmethod
    def _result_word(result: PassResult | None, crashed: str | None, problems: Sequence[str], healthy: set[Place]) -> str:
        if crashed is not None or result is None or result.plan is None:
            return "failure"
        if not problems:
            return "success"
        # Something went wrong; "partial" when some place was still reconciled fine.
        return "partial" if healthy else "failure"

    def _log_pass(
        self, in_force: Revision, result: PassResult | None, objects: Mapping[str, ObjectState], trigger: str,
        window: WindowState,
    ) -> None:
        revision = in_force.revision
        if result is not None:
            for outcome in result.outcomes:
                change = outcome.change
                fields = {"object": change.owner or None, "resource": change.key, "type": change.type,
                          "action": change.action, "account": change.account, "region": change.region,
                          "revision": revision}
                if outcome.result == "applied":
                    self.log.info("apply.applied", **fields)
                elif outcome.result == "pending":
                    self.log.info("apply.started", state=outcome.observed.state if outcome.observed else None, **fields)
                elif outcome.result == "failed":
                    self.log.warning("apply.failed", error=outcome.message, **fields)
                else:
                    self.log.debug("apply.waiting", reason=outcome.message, **fields)
            if result.plan is not None:
                # Said once, when they first appear. Errors of a whole place (a read that failed)
                # are reported by `place.backoff` instead of once per resource type.
                errors = {f"{e.key}: {e.message}" for e in result.plan.errors if e.owner}
                for error in result.plan.errors:
                    if error.owner and f"{error.key}: {error.message}" not in self._plan_errors:
                        self.log.warning("plan.error", object=error.owner, resource=error.key,
                                         field=error.field, error=error.message, revision=revision)
                for warning in result.plan.warnings:
                    if warning not in self._plan_warnings:
                        self.log.info("plan.warning", message=warning, revision=revision)
                self._plan_errors = errors
                self._plan_warnings = set(result.plan.warnings)
                if not window.open and result.plan.changes:
                    self.log.info("apply.outside_window", changes=len(result.plan.changes), reason=window.reason,
                                  revision=revision)
        for owner, state in objects.items():
            before = self._objects.get(owner)
            where = {"object": owner, "account": state.account, "region": state.region, "revision": revision}
            if before is None or before.status != state.status:
                self.log.info("object.status", status=state.status, previous=before.status if before else None, **where)
            if state.drift in ("drifted", "warn") and (before is None or before.drifted != state.drifted):
                self.log.info(
                    "drift.detected",
                    drift=state.drift,
                    trigger=trigger,
                    resources=[{"resource": d.resource, "fields": list(d.fields), "repair": d.repair} for d in state.drifted],
                    **where,
                )
            elif before is not None and before.drift in ("drifted", "warn") and state.drift == "none":
                self.log.info("drift.resolved", **where)

    # -- what the endpoints read ------------------------------------------------------------------

    def healthy(self) -> bool:
        """The scheduler runs and both jobs have a next run."""
        if self._stopping.is_set() or not self._scheduler.running:
            return False
        jobs = [self._scheduler.get_job(SYNC_JOB), self._scheduler.get_job(DRIFT_JOB)]
        return all(job is not None and job.next_run_time is not None for job in jobs)

    def ready(self) -> bool:
        """A first SYNC has completed (fetched and reconciled)."""
        with self._state:
            return self._ready and not self._stopping.is_set()

    def status(self) -> dict[str, Any]:
        """The /status document (JSON). No values of AWS resources, no secrets: paths and words only."""
        with self._state:
            head, in_force = self._head, self._in_force
            manifests: dict[str, Any] | None = None
            if head is not None:
                validation = head.validation
                manifests = {
                    "revision": head.revision,
                    "valid": head.valid,
                    "files": len(validation.files),
                    "objects": {kind: validation.declared.get(kind, 0) for kind in ("Cluster", "Deployment")},
                    "errors": [_problem_json(p) for p in validation.errors[:MAX_LISTED_PROBLEMS]],
                    "error_count": len(validation.errors),
                    "warnings": [_problem_json(p) for p in validation.warnings[:MAX_LISTED_PROBLEMS]],
                }
            window = self._window
            next_runs = {}
            if self._scheduler.running:
                for job_id in (SYNC_JOB, DRIFT_JOB):
                    job = self._scheduler.get_job(job_id)
                    next_runs[job_id] = job.next_run_time.isoformat() if job and job.next_run_time else None
            last_error = self._fetch_error or self._pass_error
            return {
                "version": self.version,
                "instance": self.settings.instance,
                "source": self.source.describe(),
                "ready": self._ready,
                "revision": in_force.revision if in_force else None,
                "head_revision": head.revision if head else None,
                "head_valid": head.valid if head else None,
                "signer": in_force.signer if in_force else None,
                "last_sync": _iso(self._last_fetch),
                "last_error": last_error,
                "fetch_error": self._fetch_error,
                "manifests": manifests,
                "apply_window": {
                    "open": window.open,
                    "reason": window.reason,
                    "next_open": _iso(window.next_open.timestamp()) if window.next_open else None,
                    "windows": list(self.windows.expressions),
                },
                "prune": {
                    "enabled": self.settings.prune,
                    "active": bool(self.settings.prune and in_force is not None and head is in_force
                                   and not in_force.empty and self._fetch_error is None and window.open),
                    "limit": self.settings.prune_limit,
                },
                "next_runs": next_runs,
                "last_reconcile": self._last_pass,
                "backoff": self.backoff.to_json(),
                "objects": [self._object_json(s) for s in sorted(self._objects.values(), key=lambda s: (s.kind, s.name))],
            }

    @staticmethod
    def _object_json(state: ObjectState) -> dict[str, Any]:
        return {
            "kind": state.kind,
            "name": state.name,
            "cluster": state.cluster,
            "account": state.account,
            "region": state.region,
            "status": state.status,
            "drift": state.drift,
            "drifted": [d.to_json() for d in state.drifted],
            "last_error": state.last_error,
            "next_attempt": _iso(state.next_attempt),
        }

    # -- the webhook ---------------------------------------------------------------------------

    @property
    def webhook_enabled(self) -> bool:
        return self.settings.webhook_secret_file is not None

    def _read_webhook_secret(self) -> bytes:
        """Read on every delivery, so a rotated secret takes effect without a restart."""
        path = self.settings.webhook_secret_file
        assert path is not None
        try:
            secret = path.read_bytes().strip()
        except OSError as exc:
            raise DriftwardenError(f"cannot read the webhook secret file {path}: {exc.strerror}") from None
        if not secret:
            raise DriftwardenError(f"the webhook secret file {path} is empty")
        return secret

    def verify_webhook(self, body: bytes, signature: str | None) -> bool:
        """GitHub's `X-Hub-Signature-256`: ``sha256=`` + hex HMAC-SHA256 of the raw body."""
        if not signature or not signature.startswith("sha256="):
            return False
        expected = "sha256=" + hmac.new(self._read_webhook_secret(), body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected.encode(), signature.strip().encode("utf-8", "replace"))


def _display_host(host: str) -> str:
    return "127.0.0.1" if host in ("", "0.0.0.0") else (f"[{host}]" if ":" in host else host)


# --- HTTP -------------------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # socketserver would print a traceback to stderr, breaking one-JSON-event-per-line.
        EventLog("driftwarden.http").error("http.crashed", exc_info=True)


class _Server6(_Server):
    address_family = socket.AF_INET6


# Events the webhook answers: a push triggers a sync; a ping (sent when a hook is created) is
# acknowledged; anything else is refused.
_EVENT_HEADERS = ("X-GitHub-Event", "X-Gitea-Event", "X-Gogs-Event")


def _handler_for(daemon: Daemon) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        pass

    Handler.daemon = daemon
    return Handler


class _Handler(BaseHTTPRequestHandler):
    daemon: Daemon
    # A slow client must not hold a thread forever.
    timeout = 15

    def version_string(self) -> str:
        return "driftwarden"

    def log_message(self, format: str, *args: Any) -> None:
        # Never the body, never the query string (it may carry a token someone pasted).
        return None

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.daemon.log.debug("http.request", method=self.command, path=self.path.split("?", 1)[0], status=status)

    def _json(self, status: int, document: Mapping[str, Any]) -> None:
        self._send(status, (json.dumps(document, indent=2, sort_keys=False) + "\n").encode())

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        daemon = self.daemon
        if path == "/metrics":
            self._send(200, daemon.metrics.exposition(), CONTENT_TYPE)
        elif path == "/healthz":
            ok = daemon.healthy()
            self._json(200 if ok else 503, {"status": "ok" if ok else "unhealthy"})
        elif path == "/readyz":
            ok = daemon.ready()
            self._json(200 if ok else 503, {"status": "ready" if ok else "not ready"})
        elif path == "/status":
            self._json(200, daemon.status())
        else:
            self._json(404, {"error": "not found"})

    do_HEAD = do_GET

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        if path != "/webhook" or not self.daemon.webhook_enabled:
            self._discard_and_refuse(404, "not found")
            return
        self._webhook()

    def _discard_and_refuse(self, status: int, message: str) -> None:
        self.close_connection = True  # the unread body must not be taken for the next request
        self._json(status, {"error": message})

    def _webhook(self) -> None:
        """POST /webhook, GitHub-style; only a correctly signed delivery can do anything.

        * The body is limited to `max_webhook_bytes` (1 MiB): a larger Content-Length is refused
          with 413 before anything is read; no Content-Length is 411.
        * `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>` with the shared secret,
          compared in constant time: missing 401, wrong 403.
        * Signed deliveries: event `push` (from `X-GitHub-Event`, or Gitea's/Gogs' header), or no
          event header at all (a plain signed POST from any CI), requests a sync now: 202. `ping`
          (sent when a hook is created) is answered 200 and does nothing; any other event is 400.
          The payload is not parsed: a sync of an unchanged ref costs one idle `git fetch`.
        * Bodies are never logged.
        """
        daemon = self.daemon
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            self._discard_and_refuse(411, "Content-Length required")
            return
        try:
            length = int(length_text)
        except ValueError:
            self._discard_and_refuse(400, "bad Content-Length")
            return
        if length < 0:
            self._discard_and_refuse(400, "bad Content-Length")
            return
        if length > daemon.settings.max_webhook_bytes:
            daemon.log.warning("webhook.refused", reason="body too large", bytes=length)
            self._discard_and_refuse(413, f"body larger than {daemon.settings.max_webhook_bytes} bytes")
            return
        body = self.rfile.read(length)
        if len(body) != length:
            self._discard_and_refuse(400, "body shorter than Content-Length")
            return
        signature = self.headers.get("X-Hub-Signature-256")
        if not signature:
            daemon.log.warning("webhook.refused", reason="no X-Hub-Signature-256 header")
            self._json(401, {"error": "X-Hub-Signature-256 required"})
            return
        try:
            valid = daemon.verify_webhook(body, signature)
        except DriftwardenError as exc:
            daemon.log.error("webhook.secret_unreadable", error=str(exc))
            self._json(500, {"error": "the webhook secret cannot be read"})
            return
        if not valid:
            daemon.log.warning("webhook.refused", reason="bad signature")
            self._json(403, {"error": "signature does not match"})
            return
        event = next((self.headers[h] for h in _EVENT_HEADERS if self.headers.get(h)), "push").strip().lower()
        delivery = self.headers.get("X-GitHub-Delivery")
        if event == "ping":
            daemon.log.info("webhook.ping", delivery=delivery)
            self._json(200, {"status": "pong"})
            return
        if event != "push":
            daemon.log.info("webhook.ignored", github_event=event[:64], delivery=delivery)
            self._json(400, {"error": f"event {event[:64]!r} is not handled; only push triggers a sync"})
            return
        if not daemon.request_sync("webhook"):
            self._json(503, {"error": "the daemon is stopping"})
            return
        daemon.log.info("webhook.sync_requested", delivery=delivery)
        self._json(202, {"status": "sync requested"})


# --- running it --------------------------------------------------------------------------------------


def serve(daemon: Daemon, *, on_started: Callable[[Daemon], None] | None = None) -> int:
    """Run `daemon` until SIGTERM or SIGINT; 0 after a clean stop (see `Daemon.stop`)."""
    stop = threading.Event()
    received: list[str] = []

    def handle(signum: int, _frame: Any) -> None:
        # Only flags here: logging from a signal handler could deadlock on the handler's lock.
        received.append(signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        daemon.start()
        if on_started is not None:
            on_started(daemon)
        while not stop.wait(0.5):
            pass
        daemon.log.info("daemon.stopping", signal=received[0] if received else None)
        return _stop_within(daemon, daemon.settings.shutdown_timeout_seconds)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _stop_within(daemon: Daemon, seconds: float) -> int:
    done = threading.Event()
    failure: list[BaseException] = []

    def stopping() -> None:
        try:
            daemon.stop()
        except BaseException as exc:  # reported below; the process must still end
            failure.append(exc)
        finally:
            done.set()

    threading.Thread(target=stopping, name="stop", daemon=True).start()
    if not done.wait(seconds):
        # A pass stuck in AWS beyond the grace period: leave rather than be killed mid-write.
        daemon.log.error("daemon.stop_timeout", seconds=seconds)
        for handler in logging.getLogger().handlers:
            with contextlib.suppress(Exception):
                handler.flush()
        os._exit(1)
    if failure:
        daemon.log.error("daemon.stop_failed", error=str(failure[0]))
        return 1
    return 0


@contextlib.contextmanager
def sandbox_sessions(metrics: Metrics, source: Source, session_factory: Callable[[], Any], out: TextIO) -> Iterator[AwsSessions]:
    """`run --sandbox`: a simulated AWS on loopback, seeded with what manifests expect to exist."""
    from driftwarden.sandbox.server import Sandbox, seed_existing

    with Sandbox() as sandbox:
        sandbox.apply(os.environ)
        print(f"sandbox: simulated AWS at {sandbox.endpoint_url} (empty at start)", file=out, flush=True)
        with AwsSessions(session_factory, endpoint_url=sandbox.endpoint_url, observer=metrics) as sessions:
            try:
                revision = validate_snapshot(source.fetch())
            except SourceError as exc:
                print(f"sandbox: not seeded, the source cannot be read yet: {exc}", file=out, flush=True)
            else:
                if revision.valid:
                    for line in seed_existing(sandbox, sessions, revision.validation.clusters,
                                              revision.validation.deployments):
                        print(f"sandbox: created {line} (a real account would already have it)", file=out, flush=True)
            yield sessions


def sandbox_hint(out: TextIO) -> Callable[[Daemon], None]:
    def hint(daemon: Daemon) -> None:
        host, port = daemon.http_address
        base = f"http://{_display_host(host)}:{port}"
        print(f"driftwarden: metrics at {base}/metrics, status at {base}/status (Ctrl-C stops)", file=out, flush=True)

    return hint


def main(
    settings: DaemonSettings,
    source: Source,
    session_factory: Callable[[], Any],
    *,
    sandbox: bool = False,
    out: TextIO = sys.stdout,
    alongside_sandbox: Callable[[], contextlib.AbstractContextManager[Any]] | None = None,
) -> int:
    """Build the daemon's collaborators and serve until a signal; the exit code.

    `alongside_sandbox` (with `sandbox`): a context entered once the sandbox is up and left
    after the daemon stops, before the sandbox does (the sandbox's drift injector).
    """
    from driftwarden.providers.registry import default_providers
    from driftwarden.providers.secret_sources import (
        control_secret_resolver,
        sandbox_secret_resolver,
    )

    metrics = Metrics(version=__version__)
    if sandbox:
        with sandbox_sessions(metrics, source, session_factory, out) as sessions:
            daemon = Daemon(source, sessions, metrics, settings, resolve_secret=sandbox_secret_resolver(),
                            providers=default_providers())
            with alongside_sandbox() if alongside_sandbox else contextlib.nullcontext():
                return serve(daemon, on_started=sandbox_hint(out))
    with AwsSessions(session_factory, observer=metrics) as sessions:
        region = session_factory().region_name or "us-east-1"
        daemon = Daemon(source, sessions, metrics, settings, resolve_secret=control_secret_resolver(sessions, region),
                        providers=default_providers())
        return serve(daemon)


__all__ = [
    "ApplyWindows",
    "Daemon",
    "DaemonSettings",
    "PlaceBackoff",
    "Revision",
    "WindowState",
    "main",
    "parse_duration",
    "serve",
]
