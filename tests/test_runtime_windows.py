"""Apply windows in process: crontab expressions in UTC, any one open is enough, the next opening said."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from driftwarden.errors import UsageError
from driftwarden.runtime.windows import ApplyWindows

MONDAY_0830 = datetime(2024, 6, 3, 8, 30, tzinfo=UTC)


def test_any_matching_expression_opens_the_window_and_says_which():
    """With two expressions, a minute matching the second is open and the reason names it."""
    windows = ApplyWindows(["* 22-23 * * *", "* 8 * * 1"])
    state = windows.check(MONDAY_0830)
    assert state.open and state.reason == "inside apply window '* 8 * * 1'" and state.next_open is None


def test_a_closed_window_names_the_earliest_next_opening():
    """Closed: the next opening is the earliest of all expressions, in the reason and as a time."""
    windows = ApplyWindows(["0 22 * * *", "30 9 * * 1-5"])
    state = windows.check(MONDAY_0830)
    assert not state.open and state.next_open == datetime(2024, 6, 3, 9, 30, tzinfo=UTC)
    assert state.reason.endswith("the next one opens at 2024-06-03T09:30:00.000Z")


def test_times_in_other_zones_are_read_in_utc():
    """A moment given with an offset is converted to UTC before matching."""
    from datetime import timedelta, timezone

    paris_1030 = datetime(2024, 6, 3, 10, 30, tzinfo=timezone(timedelta(hours=2)))
    assert ApplyWindows(["* 8 * * *"]).check(paris_1030).open


def test_weekday_steps_and_names_read_like_crontab():
    """`*/2` is Sunday, Tuesday, Thursday, Saturday; day names work as in crontab."""
    every_other = ApplyWindows(["* * * * */2"])
    days = [every_other.check(datetime(2024, 6, 2 + n, 12, tzinfo=UTC)).open for n in range(7)]  # Sun..Sat
    assert days == [True, False, True, False, True, False, True]
    assert ApplyWindows(["* * * * mon"]).check(MONDAY_0830).open


def test_the_status_document_shape_of_a_window():
    """`to_json` gives open, reason, the next opening in ISO UTC and the expressions."""
    windows = ApplyWindows([" 0 22 * * * ", ""])
    assert windows.expressions == ("0 22 * * *",)
    assert windows.check(MONDAY_0830).to_json(windows.expressions) == {
        "open": False,
        "reason": "outside every apply window: planning and reporting only; the next one opens at 2024-06-03T22:00:00.000Z",
        "next_open": "2024-06-03T22:00:00.000Z",
        "windows": ["0 22 * * *"],
    }


@pytest.mark.parametrize("bad", ["* * * * 8", "* * * * funday", "61 * * * *"])
def test_bad_expressions_are_usage_errors_naming_the_expression(bad):
    """An expression cron cannot read is refused at start-up, quoting it."""
    with pytest.raises(UsageError, match="--apply-window"):
        ApplyWindows([bad])
