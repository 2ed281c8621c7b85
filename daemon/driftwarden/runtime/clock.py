"""Time as the runtime sees it: the injectable clock and the one timestamp format it shows.

Owns `Clock` (a callable returning Unix seconds, `time.time` in production and a fake in tests)
and `iso`, the millisecond UTC format of /status and log events. Must not read the time itself:
every caller is handed a clock.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], float]


def iso(timestamp: float | None) -> str | None:
    """`2024-06-03T10:30:00.123Z` for a Unix time; None stays None."""
    if timestamp is None:
        return None
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
