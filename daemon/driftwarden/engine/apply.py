"""Carry out a plan: dependency order, independent work in parallel, one outcome per change.

Creates and updates run as soon as what they depend on is done, with a bounded thread pool.
Long AWS operations (EKS clusters, node groups, RDS, NAT gateways) are awaited with a
timeout and progress reports; with `wait=False` they are started and left to AWS, and their
dependants are reported as waiting — the next run continues where AWS is, and because every
resource is found again by its tags nothing is created twice.

A failure isolates only what depends on it. Deletions run last, in reverse dependency order.
A replacement (node group blue/green) creates the new resource, waits for it to be ready,
then deletes the old one.

What it must not do: raise for a provider error (every error becomes an `Outcome`), or
decide what to change (that is `plan.py`).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from driftwarden.engine.observe import context_for
from driftwarden.engine.plan import Change, contains_unknown, resolve
from driftwarden.errors import DriftwardenError
from driftwarden.manifests.model import Account
from driftwarden.providers.aws import AwsSessions, as_provider_error
from driftwarden.providers.base import Context, Observed, Provider, converge

Result = Literal["applied", "pending", "failed", "skipped"]


@dataclass(frozen=True)
class Outcome:
    change: Change
    result: Result
    message: str = ""
    observed: Observed | None = None
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.change.action,
            "resource": self.change.key,
            "type": self.change.type,
            "result": self.result,
            "message": self.message,
            "id": self.observed.id if self.observed else self.change.id,
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True)
class ApplySettings:
    wait: bool = True
    # EKS clusters take ~15 minutes; node groups and RDS similar. Bounded, never forever.
    timeout_seconds: float = 45 * 60
    poll_seconds: float = 10.0
    max_workers: int = 8
    # RDS: make modifications now instead of in the next maintenance window.
    apply_immediately: bool = False


Progress = Callable[[str], None]


def _quiet(_message: str) -> None:
    return None


class Applier:
    """Runs one plan. Holds the attribute map that resolves `Ref`s as resources appear."""

    def __init__(
        self,
        sessions: AwsSessions,
        instance: str,
        observed: Sequence[Observed],
        accounts: Mapping[str, Account],
        *,
        providers: Mapping[str, Provider],
        settings: ApplySettings = ApplySettings(),
        progress: Progress = _quiet,
        resolve_secret: Callable[[Any], str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> None:
        self.sessions = sessions
        self.instance = instance
        # Credentials per account id, for deleting resources whose manifest is gone.
        self.accounts = accounts
        self.settings = settings
        self.progress = progress
        self.resolve_secret = resolve_secret
        self.providers = providers
        self.sleep = sleep
        self.clock = clock
        # True once the daemon is stopping: calls in flight finish, nothing new is started.
        self.cancelled = cancelled
        self._lock = threading.Lock()
        self.attributes: dict[str, Mapping[str, Any]] = {}
        self.states: dict[str, Observed] = {}
        for item in observed:
            if item.key is not None and item.key not in self.states:
                self.states[item.key] = item
                self.attributes[item.key] = item.attributes

    # -- the whole plan --------------------------------------------------------------------

    def run(self, changes: Sequence[Change]) -> list[Outcome]:
        forward = [c for c in changes if c.action in ("create", "update", "replace")]
        removals = [c for c in changes if c.action in ("delete", "release")]
        outcomes = self._run_forward(forward)
        outcomes += self._run_removals(removals, outcomes)
        return outcomes

    def _run_forward(self, changes: Sequence[Change]) -> list[Outcome]:
        by_key = {c.key: c for c in changes}
        done: dict[str, Outcome] = {}
        outcomes: list[Outcome] = []
        remaining = dict(by_key)
        with concurrent.futures.ThreadPoolExecutor(self.settings.max_workers, thread_name_prefix="apply") as pool:
            running: dict[concurrent.futures.Future[Outcome], str] = {}
            while remaining or running:
                for key, change in list(remaining.items()):
                    deps = change.resource.depends_on if change.resource else ()
                    waiting_on = [d for d in deps if d in by_key and d not in done]
                    if waiting_on:
                        continue
                    blocked = [d for d in deps if d in done and done[d].result != "applied"]
                    del remaining[key]
                    if blocked:
                        first = done[blocked[0]]
                        word = "is still being created by AWS" if first.result == "pending" else f"{first.result}"
                        outcome = Outcome(change, "skipped", f"waiting for {blocked[0]}, which {word}")
                        done[key] = outcome
                        outcomes.append(outcome)
                        self.progress(f"  skip {key}: {outcome.message}")
                        continue
                    running[pool.submit(self._execute, change)] = key
                if not running:
                    if remaining:  # a dependency cycle would be a graph bug; never spin
                        for key, change in remaining.items():
                            outcome = Outcome(change, "skipped", "unresolvable dependencies")
                            done[key] = outcome
                            outcomes.append(outcome)
                        remaining.clear()
                    break
                finished, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in finished:
                    key = running.pop(future)
                    outcome = future.result()
                    done[key] = outcome
                    outcomes.append(outcome)
        return outcomes

    def _run_removals(self, changes: Sequence[Change], forward: Sequence[Outcome]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        # Each type's declared deletion rank: by default the reverse of creation order, so what
        # was created last goes first.
        rank = {t: p.info.deletion_rank for t, p in self.providers.items()}
        for _order, group in _grouped(changes, key=lambda c: rank.get(c.type, 0)):
            with concurrent.futures.ThreadPoolExecutor(self.settings.max_workers, thread_name_prefix="delete") as pool:
                outcomes.extend(pool.map(self._execute, group))
        return outcomes

    # -- one change ------------------------------------------------------------------------------

    def _execute(self, change: Change) -> Outcome:
        if self.cancelled():
            # Nothing of this change was started; the next run plans it again from what AWS has.
            return Outcome(change, "skipped", "not started: driftwarden is stopping")
        started = self.clock()
        provider = self.providers[change.type]
        try:
            if change.action in ("delete", "release"):
                assert change.observed is not None
                ctx = self._context(change.observed.account, change.observed.region, change)
                if change.action == "delete":
                    self.progress(f"- delete {change.key} ({change.observed.id})")
                    provider.delete(ctx, change.observed)
                else:
                    self.progress(f"- release {change.key} ({change.observed.id}): kept, tags removed")
                    provider.untag(ctx, change.observed)
                return Outcome(change, "applied", "", change.observed, self.clock() - started)
            assert change.resource is not None
            resource = change.resource
            ctx = self._context(resource.account.id, resource.region, change)
            waiting = self._pending_dependency(change) or self._busy_itself(change)
            if waiting is not None:
                self.progress(f"  skip {change.key}: {waiting}")
                return Outcome(change, "skipped", waiting, None, self.clock() - started)
            with self._lock:
                desired = provider.normalize_desired(resolve(resource.desired, self.attributes))
            if contains_unknown(desired):
                return Outcome(change, "skipped", "a value it needs is not known yet", None, self.clock() - started)
            if change.action == "create":
                self.progress(f"+ create {change.key}")
                result = provider.create(ctx, resource, desired)
            elif change.action == "update":
                assert change.observed is not None
                fields = sorted({d.path.split(".")[0] for d in change.diff})
                self.progress(f"~ update {change.key} ({', '.join(fields)})")
                # Tags through the type's declared tag style, the rest through its provider.
                result = converge(provider, ctx, resource, desired, change.observed, fields)
            else:
                assert change.observed is not None
                self.progress(f"± replace {change.key}: creating the new one first")
                result = provider.create(ctx, resource, desired)
                result = self._await(provider, ctx, change.key, result)
                if result.status != "ready":
                    return self._finish(change, result, started)
                self.progress(f"± replace {change.key}: new one ready, deleting {change.observed.id}")
                provider.delete(ctx, change.observed)
            result = self._await(provider, ctx, change.key, result)
            return self._finish(change, result, started)
        except Exception as exc:
            error = as_provider_error(exc, service=provider.service, region=change.region)
            if error is None and not isinstance(exc, DriftwardenError):
                raise  # a bug in driftwarden, not an AWS failure: let it surface
            message = str(error or exc)
            self.progress(f"! {change.action} {change.key} failed: {message}")
            return Outcome(change, "failed", message, change.observed, self.clock() - started)

    def _busy_itself(self, change: Change) -> str | None:
        """Without waiting, a resource AWS is still creating or changing is not updated now."""
        observed = change.observed
        if self.settings.wait or change.action != "update" or observed is None:
            return None
        if observed.status in ("pending", "deleting"):
            return f"AWS is still working on it ({observed.state or observed.status})"
        return None

    def _pending_dependency(self, change: Change) -> str | None:
        """Wait for dependencies AWS is still working on (from an earlier run), or say which.

        A dependency created in this run is awaited by its own change; one left CREATING by an
        earlier `--no-wait` run is not in the plan (its fields already match), yet a node group
        cannot be created in a cluster that is not ACTIVE.
        """
        assert change.resource is not None
        for key in change.resource.depends_on:
            with self._lock:
                state = self.states.get(key)
            if state is None or state.status not in ("pending", "deleting"):
                continue
            if not self.settings.wait:
                return f"waiting for {key}, which AWS is still working on ({state.state or 'pending'})"
            provider = self.providers[state.type]
            ctx = self._context(state.account or change.account, state.region or change.region, change)
            settled = self._await(provider, ctx, key, state)
            with self._lock:
                self.states[key] = settled
                self.attributes[key] = settled.attributes
            if settled.status != "ready":
                return f"waiting for {key}, which AWS is still working on ({settled.state or settled.status})"
        return None

    def _finish(self, change: Change, result: Observed, started: float) -> Outcome:
        result = dataclasses.replace(result, account=change.account, region=change.region)
        with self._lock:
            self.states[change.key] = result
            self.attributes[change.key] = result.attributes
        if result.status == "ready":
            return Outcome(change, "applied", "", result, self.clock() - started)
        if result.status == "pending":
            return Outcome(change, "pending", f"AWS is still working ({result.state or 'pending'})", result,
                           self.clock() - started)
        return Outcome(change, "failed", f"AWS reports {result.state or result.status}", result, self.clock() - started)

    def _await(self, provider: Provider, ctx: Context, key: str, result: Observed) -> Observed:
        if result.status != "pending" or not self.settings.wait:
            return result
        deadline = self.clock() + self.settings.timeout_seconds
        started = self.clock()
        while result.status == "pending":
            if self.clock() >= deadline or self.cancelled():
                return result  # reported pending: a later run finds it where AWS is
            self.sleep(self.settings.poll_seconds)
            refreshed = provider.refresh(ctx, result)
            if refreshed is None:
                return dataclasses.replace(result, status="failed", state="disappeared")
            result = refreshed
            self.progress(f"  … {key}: {result.state or result.status} ({int(self.clock() - started)}s)")
        return result

    def _context(self, account_id: str, region: str, change: Change) -> Context:
        account = change.resource.account if change.resource else self.accounts.get(account_id)
        if account is None:
            raise DriftwardenError(f"no account credentials known for {change.key}")
        return context_for(self.sessions, account, region, self.instance, self.resolve_secret,
                           apply_immediately=self.settings.apply_immediately)


def _grouped(changes: Sequence[Change], key: Callable[[Change], int]) -> list[tuple[int, list[Change]]]:
    groups: dict[int, list[Change]] = {}
    for change in changes:
        groups.setdefault(key(change), []).append(change)
    return sorted(groups.items())
