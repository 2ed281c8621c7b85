"""The log events of one reconcile pass, from its `PassReport`, its result and the new statuses.

Owns which events a pass emits and at which level (PRODUCT.md: INFO only when something
changed): apply outcomes, plan errors and warnings (once, when they first appear), object
status and drift changes, apply-window changes and `reconcile.finished`. Remembers the plan
errors and warnings of the last pass for that. Must not count anything the report already
counts, touch metrics, or log values of AWS resources.
"""

from __future__ import annotations

from collections.abc import Mapping

from driftwarden.engine.reconcile import PassResult
from driftwarden.runtime.logs import EventLog
from driftwarden.runtime.report import PassReport
from driftwarden.runtime.status import ObjectState
from driftwarden.runtime.windows import WindowState


class PassEvents:
    """Emits the events of each pass; one instance per daemon (it remembers the last plan)."""

    def __init__(self, log: EventLog) -> None:
        self.log = log
        self._plan_errors: set[str] = set()
        self._plan_warnings: set[str] = set()

    def details(
        self,
        report: PassReport,
        result: PassResult | None,
        objects: Mapping[str, ObjectState],
        before: Mapping[str, ObjectState],
        window: WindowState,
    ) -> None:
        """Apply outcomes, plan news and object changes (`before`: the statuses of the last pass)."""
        if result is not None:
            self._outcomes(result, report.revision)
            self._plan(result, window, report.revision)
        self._objects(objects, before, report.trigger, report.revision)

    def finished(self, report: PassReport, previous_result: str | None, window: WindowState,
                 previous_window: WindowState) -> None:
        if previous_window.open != window.open:
            self.log.info("apply_window.changed", open=window.open, reason=window.reason)
        # INFO when something was done or the outcome changed; a pass like the last one (or one
        # that only waits for AWS) is routine.
        (self.log.info if report.acted or report.result != previous_result else self.log.debug)(
            "reconcile.finished",
            trigger=report.trigger,
            revision=report.revision,
            result=report.result,
            seconds=round(report.seconds, 3),
            plan=dict(report.plan) if report.plan is not None else None,
            outcomes=dict(report.outcomes) or None,
        )

    def _outcomes(self, result: PassResult, revision: str) -> None:
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

    def _plan(self, result: PassResult, window: WindowState, revision: str) -> None:
        if result.plan is None:
            return
        # Said once, when they first appear. Errors of a whole place (a read that failed) are
        # reported by `place.backoff` instead of once per resource type.
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

    def _objects(self, objects: Mapping[str, ObjectState], before_all: Mapping[str, ObjectState], trigger: str,
                 revision: str) -> None:
        for owner, state in objects.items():
            before = before_all.get(owner)
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
