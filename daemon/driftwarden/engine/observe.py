"""Read what AWS has: every managed resource of every type, per (account, region), in parallel.

A read costs one batched, paginated listing per resource type and place (IAM: per account),
plus the per-cluster EKS reads that AWS offers no batch for — never one call per resource.
A place whose role cannot be assumed, or whose reads fail, is reported as a `PlaceError`
and does not stop the other places: its objects are marked failed, everything else goes on.

The providers to read with are handed in (`registry.default_providers()` in production).

What it must not do: change anything in AWS.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from driftwarden.engine.graph import Resource
from driftwarden.errors import ProviderError
from driftwarden.manifests.model import Account
from driftwarden.providers.aws import AwsSessions, as_provider_error
from driftwarden.providers.base import Context, Observed, Provider
from driftwarden.providers.calls import AccountRef


@dataclass(frozen=True)
class Place:
    account: Account
    region: str

    @property
    def label(self) -> str:
        return f"{self.account.id}/{self.region}"


@dataclass(frozen=True)
class PlaceError:
    account: str
    region: str
    type: str
    message: str
    retryable: bool


@dataclass
class Observation:
    resources: list[Observed] = field(default_factory=list)
    errors: list[PlaceError] = field(default_factory=list)

    def failed_places(self) -> set[tuple[str, str]]:
        return {(e.account, e.region) for e in self.errors}


def account_ref(account: Account) -> AccountRef:
    return AccountRef(account.id, account.role_name, account.external_id)


def context_for(sessions: AwsSessions, account: Account, region: str, instance: str,
                resolve_secret: Callable[[Any], str] | None = None, *, apply_immediately: bool = False) -> Context:
    ref = account_ref(account)
    return Context(
        account_id=account.id,
        region=region,
        instance=instance,
        client=lambda service: sessions.client(ref, region, service),
        resolve_secret=resolve_secret,
        apply_immediately=apply_immediately,
    )


def places_of(resources: Iterable[Resource]) -> list[Place]:
    seen: dict[tuple[str, str], Place] = {}
    for resource in resources:
        seen.setdefault((resource.account.id, resource.region), Place(resource.account, resource.region))
    return list(seen.values())


def observe(
    sessions: AwsSessions,
    places: Sequence[Place],
    instance: str,
    *,
    providers: Mapping[str, Provider],
    max_workers: int = 8,
) -> Observation:
    """Read every type of `providers` in every place; see the module docstring."""
    jobs: list[tuple[Place, Provider]] = []
    global_done: set[tuple[str, str]] = set()
    for place in places:
        for provider in providers.values():
            if provider.global_service:
                marker = (place.account.id, provider.type)
                if marker in global_done:
                    continue
                global_done.add(marker)
            jobs.append((place, provider))
    observation = Observation()
    with concurrent.futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="observe") as pool:
        futures = {
            pool.submit(_read, sessions, place, provider, instance): (place, provider) for place, provider in jobs
        }
        for future in concurrent.futures.as_completed(futures):
            place, provider = futures[future]
            try:
                observation.resources.extend(future.result())
            except ProviderError as exc:
                observation.errors.append(
                    PlaceError(place.account.id, place.region, provider.type, str(exc), exc.retryable)
                )
    observation.resources.sort(key=lambda o: (o.key or "", o.id))
    return observation


def _read(sessions: AwsSessions, place: Place, provider: Provider, instance: str) -> list[Observed]:
    found = _call(sessions, place, provider, instance, provider.read)
    return [dataclasses.replace(item, account=place.account.id, region=place.region) for item in found]


def _call(sessions: AwsSessions, place: Place, provider: Provider, instance: str, read: Callable[[Context], Any]) -> Any:
    """`read(ctx)` in `place`, with any AWS error raised as driftwarden's own `ProviderError`."""
    ctx = context_for(sessions, place.account, place.region, instance)
    try:
        return read(ctx)
    except Exception as exc:
        mapped = as_provider_error(exc, service=provider.service, account=account_ref(place.account), region=place.region)
        if mapped is None:
            raise
        raise mapped from exc


def confirm(
    sessions: AwsSessions,
    places: Sequence[Place],
    observation: Observation,
    doubtful: Iterable[Observed],
    instance: str,
    *,
    providers: Mapping[str, Provider],
    max_workers: int = 8,
) -> Observation:
    """`observation` with every unconfirmed resource of `doubtful` read again, authoritatively.

    Tags read from the tagging index (providers/tagging.py) can be minutes old. Before the plan
    acts on such a resource, or reports it as drifted, the provider's own per-resource read
    (`refresh`) decides: the plan is then made again from what it says. A resource that is gone,
    or no longer ours, drops out; a place whose re-read fails is reported like a failed read.
    """
    targets = {id(item): item for item in doubtful if not item.confirmed}
    if not targets:
        return observation
    by_place = {(place.account.id, place.region): place for place in places}

    def reread(item: Observed) -> Observed | None:
        provider = providers[item.type]
        fresh: Observed | None = _call(sessions, by_place[(item.account, item.region)], provider, instance,
                                       lambda ctx: provider.refresh(ctx, item))
        if fresh is None or not fresh.managed_by(instance):
            return None
        return dataclasses.replace(fresh, account=item.account, region=item.region, confirmed=True)

    result = Observation(errors=list(observation.errors))
    fresh_by_id: dict[int, Observed | None] = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="confirm") as pool:
        futures = {pool.submit(reread, item): key for key, item in targets.items()}
        for future in concurrent.futures.as_completed(futures):
            key = futures[future]
            item = targets[key]
            try:
                fresh_by_id[key] = future.result()
            except ProviderError as exc:
                result.errors.append(PlaceError(item.account, item.region, item.type, str(exc), exc.retryable))
                fresh_by_id[key] = item
    for item in observation.resources:
        if id(item) not in fresh_by_id:
            result.resources.append(item)
        elif (fresh := fresh_by_id[id(item)]) is not None:
            result.resources.append(fresh)
    result.resources.sort(key=lambda o: (o.key or "", o.id))
    return result
