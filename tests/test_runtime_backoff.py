"""Per-place backoff in process, on a fake clock: 30 s doubling to 30 minutes, one place at a time."""

from __future__ import annotations

import pytest

from driftwarden.runtime.backoff import PlaceBackoff

A, B = ("111111111111", "us-east-1"), ("222222222222", "eu-west-1")


class FakeClock:
    """Unix time that moves only when a test says so."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_delays_double_from_thirty_seconds_up_to_thirty_minutes(clock):
    """Each failure in a row waits twice as long as the one before, never more than the cap."""
    backoff = PlaceBackoff(30, 1800, clock)
    delays = [backoff.fail(A, "AccessDenied").next_attempt - clock.now for _ in range(8)]
    assert delays == [30, 60, 120, 240, 480, 960, 1800, 1800]
    assert backoff.get(A).failures == 8


def test_a_place_waits_until_its_next_attempt_by_the_injected_clock(clock):
    """`waiting` lists a failed place until the clock reaches its next attempt, with the error and that time."""
    backoff = PlaceBackoff(30, 1800, clock)
    backoff.fail(A, "AccessDenied")
    clock.now += 29.9
    (trouble,) = backoff.waiting().values()
    assert trouble.error == "backing off after 1 failed attempt(s): AccessDenied" and trouble.next_attempt == 1030.0
    clock.now += 0.1
    assert backoff.waiting() == {}
    # Due again, not forgotten: the next failure doubles the delay.
    assert backoff.fail(A, "AccessDenied").next_attempt == clock.now + 60


def test_a_given_moment_dates_a_failure_instead_of_the_clock(clock):
    """A failure found by a pass is dated at that pass's start, as the daemon passes it."""
    backoff = PlaceBackoff(30, 1800, clock)
    assert backoff.fail(A, "x", now=500.0).next_attempt == 530.0
    assert A in backoff.waiting(now=529.0) and A not in backoff.waiting(now=530.0)


def test_one_failing_place_never_delays_another_and_success_forgets_it(clock):
    """Places back off independently; `succeed` forgets a place and says whether it was backing off."""
    backoff = PlaceBackoff(30, 1800, clock)
    backoff.fail(A, "AccessDenied")
    backoff.fail(A, "AccessDenied")
    backoff.fail(B, "Throttling")
    assert (backoff.get(A).failures, backoff.get(B).failures) == (2, 1)
    assert backoff.succeed(A) is True and backoff.succeed(A) is False
    assert set(backoff.waiting()) == {B}
    assert backoff.fail(A, "again").next_attempt == clock.now + 30


def test_the_status_listing_is_sorted_with_times_in_utc(clock):
    """`to_json` gives account, region, failures, next attempt (ISO, UTC, ms) and last error, sorted by place."""
    backoff = PlaceBackoff(30, 1800, clock)
    backoff.fail(B, "Throttling")
    backoff.fail(A, "AccessDenied")
    assert backoff.to_json() == [
        {"account": A[0], "region": A[1], "failures": 1, "next_attempt": "1970-01-01T00:17:10.000Z",
         "last_error": "AccessDenied"},
        {"account": B[0], "region": B[1], "failures": 1, "next_attempt": "1970-01-01T00:17:10.000Z",
         "last_error": "Throttling"},
    ]
