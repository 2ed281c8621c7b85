"""`summarise_pass` in process: one pass summed up once, and the metrics read from that summary."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from driftwarden.engine.observe import PlaceError
from driftwarden.runtime.metrics import Metrics
from driftwarden.runtime.passview import PlaceTrouble
from driftwarden.runtime.report import MAX_LISTED_PROBLEMS, summarise_pass
from runtime_passes import ACCOUNT, OTHER_ACCOUNT, REGION, a_pass, core, seen, validation

T0 = 1_717_400_000.0  # 2024-06-03T07:33:20Z


def summary(result, *, crashed=None, waiting=None, applied=True):
    return summarise_pass(result, crashed=crashed, waiting=waiting or {}, applied=applied, trigger="interval",
                          revision="r1", started=T0, seconds=1.23456)


def two_clusters():
    revision = validation(("prod", ACCOUNT), ("other", OTHER_ACCOUNT))
    return revision, core(revision, "prod"), core(revision, "other")


def test_a_clean_pass_is_a_success_and_settles_its_revision():
    """Every change applied, nothing waiting, inside a window: success, settled, counts by result and action."""
    revision, prod, other = two_clusters()
    report = summary(a_pass(revision, [prod, other], [seen(prod, 5), seen(other, 3)]))
    assert (report.result, report.settled, report.problems) == ("success", True, ())
    assert report.outcomes == {"applied": 1} and report.actions == {("update", "net", "applied"): 1}
    assert report.plan == {"create": 0, "update": 1, "replace": 0, "delete": 0, "unchanged": 1}
    assert report.reconciled_places == {(ACCOUNT, REGION), (OTHER_ACCOUNT, REGION)} and report.failed_places == {}
    assert report.acted


def test_a_failure_in_one_place_is_partial_and_names_that_place():
    """One place's change failed while the other was reconciled: partial, that place failed, not settled."""
    revision, prod, other = two_clusters()
    report = summary(a_pass(revision, [prod, other], [seen(prod, 5), seen(other, 3)], results={prod.key: "failed"}))
    assert report.result == "partial" and not report.settled
    assert report.failed_places == {(ACCOUNT, REGION): f"update {prod.key} failed: boom"}
    assert report.problems == (f"update {prod.key} failed: boom",) and report.first_problem == report.problems[0]


def test_an_unreadable_place_and_a_waiting_place_are_problems():
    """A read error fails its place; a place backing off is listed with its next attempt; neither place healthy is failure."""
    revision, _prod, _other = two_clusters()
    unreadable = PlaceError(ACCOUNT, REGION, "ec2.vpc", "AccessDenied", False)
    result = a_pass(revision, [], [], read_errors=[unreadable])
    report = summary(result, waiting={(OTHER_ACCOUNT, REGION): PlaceTrouble("backing off", T0 + 30)})
    assert report.failed_places == {(ACCOUNT, REGION): "cannot read ec2.vpc: AccessDenied"}
    assert report.problems[-1] == (f"account {OTHER_ACCOUNT} {REGION} skipped: backing off "
                                   "(next attempt 2024-06-03T07:33:50.000Z)")
    assert report.result == "failure" and not report.settled


def test_a_crashed_pass_is_a_failure_that_says_why():
    """No result and a crash message: failure, the crash first among the problems, nothing reconciled."""
    report = summary(None, crashed="RuntimeError: bug")
    assert (report.result, report.problems, report.reconciled_places) == ("failure", ("the pass crashed: RuntimeError: bug",), frozenset())
    assert report.to_json()["plan"] is None and report.to_json()["outcomes"] == {}


def test_a_plan_only_pass_is_never_settled_and_its_document_says_so():
    """Outside every apply window nothing is applied: not settled, `applied` false, the document's shape kept."""
    revision, prod, _other = two_clusters()
    report = summary(a_pass(revision, [prod], [seen(prod, 3)]), applied=False)
    assert not report.settled
    assert report.to_json() == {
        "trigger": "interval", "revision": "r1", "started": "2024-06-03T07:33:20.000Z", "duration_seconds": 1.235,
        "result": "success", "applied": False,
        "plan": {"create": 0, "update": 0, "replace": 0, "delete": 0, "unchanged": 1},
        "outcomes": {}, "errors": [], "warnings": [],
    }


def test_the_document_lists_at_most_fifty_problems_but_the_report_keeps_all():
    """Truncation is for display only: the report keeps every problem, `to_json` lists the first fifty."""
    waiting = {(f"{n:012d}", REGION): PlaceTrouble("down", None) for n in range(MAX_LISTED_PROBLEMS + 5)}
    report = summary(None, crashed="x", waiting=waiting)
    assert len(report.problems) == MAX_LISTED_PROBLEMS + 6
    assert len(report.to_json()["errors"]) == MAX_LISTED_PROBLEMS


def test_metrics_take_pass_result_actions_and_last_success_from_the_report():
    """`record_pass` counts the report's result and actions, and dates the last success at the pass start."""
    revision, prod, other = two_clusters()
    metrics = Metrics(CollectorRegistry())
    metrics.record_pass(summary(a_pass(revision, [prod, other], [seen(prod, 5), seen(other, 4)])))
    sample = metrics.registry.get_sample_value
    assert sample("driftwarden_apply_actions_total", {"action": "update", "resource": "net", "result": "applied"}) == 2
    assert sample("driftwarden_reconcile_total", {"result": "success"}) == 1
    assert sample("driftwarden_last_successful_reconcile_timestamp_seconds") == T0
    metrics.record_pass(summary(None, crashed="x"))
    assert sample("driftwarden_reconcile_total", {"result": "failure"}) == 1
    assert sample("driftwarden_last_successful_reconcile_timestamp_seconds") == T0
