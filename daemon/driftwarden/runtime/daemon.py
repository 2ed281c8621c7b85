"""The daemon (`driftwarden run`): two scheduled jobs around the reconcile engine.

Two jobs run on an APScheduler 3 `BackgroundScheduler`, each never overlapping itself
(`max_instances=1`), missed runs coalesced into one, with jitter:

* SYNC, every `--interval` (and at once on start-up and on a signed webhook): fetch the source
  (`fetcher`); a new revision is validated in memory and, when every manifest is valid, put in
  force (`revisions`); then one reconcile pass of the revision in force (`passes`), unless the
  poll found the same settled revision again.
* DRIFT, every `--drift-interval`: one reconcile pass of the revision in force, without
  fetching, so drift is checked at a known pace even when `--interval` is long (webhook setups).

This module owns the scheduling, readiness and health, and what the endpoints read (`http`
serves them; `document` shapes /status). The clock is injected and `sync()` / `drift()` are
the jobs' bodies, so the daemon can be driven pass by pass without the scheduler. What it must
not do: decide what to change in AWS (`plan`), talk to AWS itself (`reconcile`), or put a
secret anywhere — no request bodies in logs, no values in /status.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from http.server import HTTPServer
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from driftwarden import __version__
from driftwarden.errors import DriftwardenError
from driftwarden.providers.aws import AwsSessions
from driftwarden.providers.base import Provider
from driftwarden.providers.secret_sources import SecretResolver
from driftwarden.runtime.clock import Clock
from driftwarden.runtime.document import status_document
from driftwarden.runtime.fetcher import Fetcher
from driftwarden.runtime.http import display_host, listen
from driftwarden.runtime.logs import EventLog
from driftwarden.runtime.metrics import Metrics
from driftwarden.runtime.passes import PassRunner
from driftwarden.runtime.revisions import Revisions
from driftwarden.runtime.settings import DaemonSettings
from driftwarden.runtime.source import Source
from driftwarden.runtime.webhook import Admission, Deliveries, read_secret, verify_signature

SYNC_JOB = "sync"
DRIFT_JOB = "drift"


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
        self.metrics = metrics
        self.settings = settings
        self.log = log or EventLog("driftwarden.runtime.daemon")
        self.clock = clock
        self.version = version
        if settings.webhook_secret_file is not None:
            read_secret(settings.webhook_secret_file)  # fail at start-up, not on the first delivery
        if settings.http_token_file is not None:
            read_secret(settings.http_token_file, "HTTP token")
        self._deliveries = Deliveries(clock)
        self._scheduler = BackgroundScheduler(
            timezone=UTC,
            executors={"default": ThreadPoolExecutor(max_workers=3)},
            job_defaults={"coalesce": True, "max_instances": 1},
        )
        self._http: HTTPServer | None = None
        self._http_thread: threading.Thread | None = None
        self._state = threading.RLock()
        self._stopping = threading.Event()
        self._revisions = Revisions()
        self.fetcher = Fetcher(source, self._revisions, self._state, metrics=metrics, log=self.log, clock=clock)
        self.passes = PassRunner(sessions, self._revisions, self._state, metrics=metrics, settings=settings,
                                 resolve_secret=resolve_secret, providers=providers, log=self.log, clock=clock,
                                 stopping=self._stopping)
        # Written under self._state: readiness, and the trigger of the next SYNC and webhooks
        # that came while one was due (pending: coalesced into it) or ran (resync: one more).
        self._ready = False
        self._sync_pending = False
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
        self._http = listen(self.settings.metrics_host, self.settings.metrics_port, self)
        self._http_thread = threading.Thread(
            target=self._http.serve_forever, kwargs={"poll_interval": 0.25}, name="http", daemon=True
        )
        self._http_thread.start()
        now = datetime.now(UTC)
        interval, drift_interval = self.settings.interval_seconds, self.settings.drift_interval_seconds
        self._scheduler.add_job(self.sync, IntervalTrigger(seconds=interval, jitter=self._jitter(interval)),
                                id=SYNC_JOB, name="sync", next_run_time=now,
                                misfire_grace_time=max(1, int(interval)))
        self._scheduler.add_job(
            self.drift, IntervalTrigger(seconds=drift_interval, jitter=self._jitter(drift_interval), start_date=now),
            id=DRIFT_JOB, name="drift", misfire_grace_time=max(1, int(drift_interval)),
        )
        self._scheduler.start()
        host, port = self.http_address
        self.log.info(
            "daemon.started",
            version=self.version,
            source=self.source.describe(),
            instance=self.settings.instance,
            http=f"http://{display_host(host)}:{port}",
            interval_seconds=interval,
            drift_interval_seconds=drift_interval,
            prune=self.settings.prune,
            apply_windows=list(self.passes.windows.expressions) or None,
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

    # -- the jobs -----------------------------------------------------------------------------

    def request_sync(self, trigger: str = "webhook") -> bool:
        """Run SYNC now (a webhook); if it is running, once more right after. False when stopping.

        Coalesced: requests while a SYNC is due but not yet started join it, and requests while
        one runs add at most one more, so a burst of N deliveries starts at most two passes.
        """
        if self._stopping.is_set() or not self._scheduler.running:
            return False
        with self._state:
            self._next_trigger = trigger
            if self._sync_running:
                self._resync = True
                return True
            if self._sync_pending:
                return True
            self._sync_pending = True
        with contextlib.suppress(Exception):  # the job is gone only while shutting down
            self._scheduler.modify_job(SYNC_JOB, next_run_time=datetime.now(UTC))
            return True
        with self._state:
            self._sync_pending = False
        return False

    def sync(self) -> None:
        """The SYNC job: fetch, then a pass unless an interval poll found the settled revision again."""
        with self._state:
            self._sync_pending = False
            self._sync_running = True
            trigger, self._next_trigger = self._next_trigger, "interval"
        try:
            if self._stopping.is_set():
                return
            fetched = self.fetcher.fetch()
            with self._state:
                in_force = self._revisions.in_force
            if trigger == "interval" and in_force is not None and self.passes.settled(in_force.revision):
                self.log.debug("sync.idle", revision=in_force.revision)
            else:
                self.passes.run(trigger)
            if fetched and not self._stopping.is_set():
                with self._state:
                    if not self._ready:
                        in_force = self._revisions.in_force
                        self.log.info("daemon.ready", revision=in_force.revision if in_force else None)
                    self._ready = True
        except Exception:  # a bug: keep the daemon alive and say so
            self.log.error("sync.crashed", exc_info=True)
        finally:
            with self._state:
                self._sync_running = False
                again, self._resync = self._resync, False
            if again:
                self.request_sync(self._next_trigger)

    def drift(self) -> None:
        """The DRIFT job: one pass of the revision in force, without fetching."""
        try:
            if not self._stopping.is_set():
                self.passes.run("drift")
        except Exception:
            self.log.error("drift.crashed", exc_info=True)

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

    def exposition(self) -> bytes:
        return self.metrics.exposition()

    def status(self) -> dict[str, Any]:
        """The /status document (JSON). No values of AWS resources, no secrets: paths and words only."""
        with self._state:
            next_runs: dict[str, str | None] = {}
            if self._scheduler.running:
                for job_id in (SYNC_JOB, DRIFT_JOB):
                    job = self._scheduler.get_job(job_id)
                    next_runs[job_id] = job.next_run_time.isoformat() if job and job.next_run_time else None
            passes = self.passes
            return status_document(
                version=self.version,
                instance=self.settings.instance,
                source=self.source.describe(),
                ready=self._ready,
                revisions=self._revisions,
                pass_error=passes.pass_error,
                window=passes.window,
                windows=passes.windows.expressions,
                prune={"enabled": self.settings.prune, "active": passes.prune_active(),
                       "limit": self.settings.prune_limit},
                next_runs=next_runs,
                last_pass=passes.last_pass,
                backoff=passes.backoff.to_json(),
                objects=passes.objects.values(),
            )

    # -- the webhook ---------------------------------------------------------------------------

    @property
    def webhook_enabled(self) -> bool:
        return self.settings.webhook_secret_file is not None

    @property
    def max_webhook_bytes(self) -> int:
        return self.settings.max_webhook_bytes

    def verify_webhook(self, body: bytes, signature: str | None) -> bool:
        """Check a delivery against the secret file as it is now (a rotated secret applies at once)."""
        path = self.settings.webhook_secret_file
        if path is None:
            return False
        return verify_signature(read_secret(path), body, signature)

    def admit_delivery(self, delivery: str | None, body: bytes) -> Admission:
        """A verified delivery: new, a duplicate of one already admitted, or stale."""
        return self._deliveries.admit(delivery, body)

    def http_token(self) -> bytes | None:
        """The bearer token /status and /metrics require, read now (rotation applies at once); None: open."""
        path = self.settings.http_token_file
        return None if path is None else read_secret(path, "HTTP token")

    def http_rejected(self, reason: str) -> None:
        self.metrics.http_rejected(reason)


__all__ = ["DRIFT_JOB", "SYNC_JOB", "Daemon"]
