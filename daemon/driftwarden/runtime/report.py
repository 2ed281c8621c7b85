"""Pure: one reconcile pass summed up once, as a `PassReport` that metrics, logs and /status read.

`summarise_pass` turns what a pass returned (or that it crashed), the places skipped while
backing off and whether changes could be applied into the pass's result word (success,
partial, failure), its problems, its counts (plan, outcomes, apply actions), the places that
failed or were reconciled, and whether the revision is settled. Every consumer reads these
numbers from the report; none counts them again.

Must not import engine.reconcile, prometheus_client or any I/O library, keep state, or read
the time (the caller says when the pass started and how long it took).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from driftwarden.runtime.clock import iso
from driftwarden.runtime.passview import PassFacts, PlaceKey, PlaceTrouble

# Problems listed in /status and in one log event; the counts are always complete.
MAX_LISTED_PROBLEMS = 50

PassResultWord = Literal["success", "partial", "failure"]


@dataclass(frozen=True)
class PassReport:
    """One pass as everything after it reads it."""

    trigger: str
    revision: str
    started: float
    seconds: float
    result: PassResultWord
    # False when the pass only planned (outside every apply window).
    applied: bool
    plan: Mapping[str, int] | None
    # Outcomes by result (applied, pending, failed, skipped), in the order first seen.
    outcomes: Mapping[str, int]
    # (action, resource type, result) -> outcomes: the apply_actions series.
    actions: Mapping[tuple[str, str, str], int]
    problems: tuple[str, ...]
    warnings: tuple[str, ...]
    # Places whose reads or applies failed (-> backoff), and places reconciled (-> recovered).
    failed_places: Mapping[PlaceKey, str]
    reconciled_places: frozenset[PlaceKey]
    # Everything done and nothing waiting: the same revision needs no pass on the next poll.
    settled: bool

    @property
    def acted(self) -> bool:
        """Something was done to AWS (or failed); a pass that only waited did nothing."""
        return any(result != "skipped" for result in self.outcomes)

    @property
    def first_problem(self) -> str | None:
        return self.problems[0] if self.problems else None

    def to_json(self) -> dict[str, Any]:
        """`last_reconcile` of /status."""
        return {
            "trigger": self.trigger,
            "revision": self.revision,
            "started": iso(self.started),
            "duration_seconds": round(self.seconds, 3),
            "result": self.result,
            "applied": self.applied,
            "plan": dict(self.plan) if self.plan is not None else None,
            "outcomes": dict(self.outcomes),
            "errors": list(self.problems[:MAX_LISTED_PROBLEMS]),
            "warnings": list(self.warnings[:MAX_LISTED_PROBLEMS]),
        }


def summarise_pass(
    result: PassFacts | None,
    *,
    crashed: str | None,
    waiting: Mapping[PlaceKey, PlaceTrouble],
    applied: bool,
    trigger: str,
    revision: str,
    started: float,
    seconds: float,
) -> PassReport:
    """The report of one pass; `result` is None when it crashed (`crashed` says how)."""
    failed_places = _failed_places(result)
    reconciled = frozenset(r.place for r in result.resources) if result is not None else frozenset()
    problems = _problems(result, crashed, waiting)
    outcomes = result.outcomes if result is not None else ()
    plan = result.plan if result is not None else None
    return PassReport(
        trigger=trigger,
        revision=revision,
        started=started,
        seconds=seconds,
        result=_result_word(result, crashed, problems, reconciled - set(failed_places)),
        applied=applied,
        plan=plan.summary() if plan is not None else None,
        outcomes=dict(Counter(o.result for o in outcomes)),
        actions=dict(Counter((o.change.action, o.change.type, o.result) for o in outcomes)),
        problems=tuple(problems),
        warnings=tuple(plan.warnings) if plan is not None else (),
        failed_places=failed_places,
        reconciled_places=reconciled,
        settled=(
            crashed is None
            and result is not None
            and not result.failed
            and applied
            and not waiting
            and all(outcome.result == "applied" for outcome in outcomes)
        ),
    )


def _failed_places(result: PassFacts | None) -> dict[PlaceKey, str]:
    failed: dict[PlaceKey, str] = {}
    if result is None:
        return failed
    if result.observation is not None:
        for error in result.observation.errors:
            failed.setdefault((error.account, error.region), f"cannot read {error.type}: {error.message}")
    for outcome in result.outcomes:
        if outcome.result == "failed":
            failed.setdefault(
                (outcome.change.account, outcome.change.region),
                f"{outcome.change.action} {outcome.change.key} failed: {outcome.message}",
            )
    return failed


def _problems(result: PassFacts | None, crashed: str | None, waiting: Mapping[PlaceKey, PlaceTrouble]) -> list[str]:
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
        problems.append(f"account {account} {region} skipped: {trouble.error} (next attempt {iso(trouble.next_attempt)})")
    return problems


def _result_word(
    result: PassFacts | None, crashed: str | None, problems: Sequence[str], healthy: set[PlaceKey] | frozenset[PlaceKey]
) -> PassResultWord:
    if crashed is not None or result is None or result.plan is None:
        return "failure"
    if not problems:
        return "success"
    # Something went wrong; "partial" when some place was still reconciled fine.
    return "partial" if healthy else "failure"
