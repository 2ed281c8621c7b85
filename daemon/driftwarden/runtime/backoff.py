"""Per-place backoff: a place (account, region) whose reads or applies fail waits on its own.

The first failure waits `initial` seconds, each further one twice as long, up to `maximum`
(30 s doubling to 30 minutes in the daemon); a success forgets the place. One failing place
never slows the others. Must not decide what counts as a failure (the pass summary does) nor
read the time other than through the injected clock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from driftwarden.runtime.clock import Clock, iso
from driftwarden.runtime.passview import PlaceKey, PlaceTrouble


@dataclass(frozen=True)
class Backoff:
    """One place's failures so far, when it may be tried again, and the last error."""

    failures: int
    next_attempt: float
    error: str


class PlaceBackoff:
    """Exponential backoff per (account, region): one failing place never slows the others.

    `now` may be given to date an event at a moment already read (the start of a pass), so that
    one pass is judged at one time; otherwise the clock is read.
    """

    def __init__(self, initial: float, maximum: float, clock: Clock = time.time) -> None:
        self.initial = initial
        self.maximum = maximum
        self.clock = clock
        self._places: dict[PlaceKey, Backoff] = {}

    def fail(self, place: PlaceKey, error: str, now: float | None = None) -> Backoff:
        previous = self._places.get(place)
        failures = previous.failures + 1 if previous else 1
        delay = min(self.initial * 2 ** (failures - 1), self.maximum)
        entry = Backoff(failures, (self.clock() if now is None else now) + delay, error)
        self._places[place] = entry
        return entry

    def succeed(self, place: PlaceKey) -> bool:
        """Forget a place's failures; True when it was backing off."""
        return self._places.pop(place, None) is not None

    def waiting(self, now: float | None = None) -> dict[PlaceKey, PlaceTrouble]:
        """Places whose next attempt is still to come."""
        moment = self.clock() if now is None else now
        return {
            place: PlaceTrouble(f"backing off after {b.failures} failed attempt(s): {b.error}", b.next_attempt)
            for place, b in self._places.items()
            if b.next_attempt > moment
        }

    def get(self, place: PlaceKey) -> Backoff | None:
        return self._places.get(place)

    def to_json(self) -> list[dict[str, Any]]:
        return [
            {"account": account, "region": region, "failures": b.failures, "next_attempt": iso(b.next_attempt),
             "last_error": b.error}
            for (account, region), b in sorted(self._places.items())
        ]
