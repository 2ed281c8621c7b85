"""Apply windows: cron expressions (UTC) naming the minutes in which changes may be applied.

Owns the crontab reading of `--apply-window` (day-of-week counted from Sunday = 0, as crontab
does) and the question "is this minute inside a window, and when does the next one open?".
Must not read the time itself: callers pass the moment to check.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from apscheduler.triggers.cron import CronTrigger

from driftwarden.errors import UsageError
from driftwarden.runtime.clock import iso

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
    """Whether changes may be applied now, why, and when the next window opens if closed."""

    open: bool
    reason: str
    next_open: datetime | None = None

    def to_json(self, expressions: Sequence[str]) -> dict[str, object]:
        return {
            "open": self.open,
            "reason": self.reason,
            "next_open": iso(self.next_open.timestamp()) if self.next_open else None,
            "windows": list(expressions),
        }


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
        when = f"; the next one opens at {iso(following.timestamp())}" if following else ""
        return WindowState(False, f"outside every apply window: planning and reporting only{when}", following)
