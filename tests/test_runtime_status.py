"""`runtime.status` in process: per-object status and drift from real passes, and its purity."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

from driftwarden.runtime.passview import PlaceTrouble
from driftwarden.runtime.status import DriftMemory, ObjectState, assess
from runtime_passes import ACCOUNT, OTHER_ACCOUNT, REGION, a_pass, core, seen, validation

OWNER = "Cluster/prod"
IO_LIBRARIES = {"boto3", "botocore", "prometheus_client", "ruamel", "git", "jsonschema", "apscheduler"}


def test_a_resource_changed_out_of_band_is_drift_counted_once_while_it_lasts():
    """In line, then differing with Git unchanged: drifted (detected once), repaired state follows the outcome."""
    revision = validation(("prod", ACCOUNT))
    eks = core(revision, "prod")
    first = assess(revision, a_pass(revision, [eks], [seen(eks, 3)]), memory=DriftMemory(), previous={})
    assert first.objects[OWNER].status == "CREATED" and first.objects[OWNER].drift == "none"
    assert first.newly_drifted == []

    drifted = a_pass(revision, [eks], [seen(eks, 5)], results={eks.key: "failed"})
    second = assess(revision, drifted, memory=first.memory, previous=first.objects)
    state = second.objects[OWNER]
    assert (state.status, state.drift) == ("UPDATE_FAILED", "drifted")
    assert [(d.resource, d.fields, d.repair) for d in state.drifted] == [(eks.key, ("Size",), "failed")]
    assert state.last_error == f"update {eks.key}: boom"
    assert second.newly_drifted == [("Cluster", "net")]
    assert second.drift_counts == {("Cluster", "prod", ACCOUNT, REGION): 1}

    third = assess(revision, drifted, memory=second.memory, previous=second.objects)
    assert third.objects[OWNER].drift == "drifted" and third.newly_drifted == []


def test_a_difference_that_follows_a_new_commit_is_not_drift():
    """When Git's desired state changed since the last pass, the difference is the commit being applied."""
    revision = validation(("prod", ACCOUNT))
    before = core(revision, "prod", size=3)
    first = assess(revision, a_pass(revision, [before], [seen(before, 3)]), memory=DriftMemory(), previous={})
    after = core(revision, "prod", size=4)
    second = assess(revision, a_pass(revision, [after], [seen(after, 3)]), memory=first.memory, previous=first.objects)
    assert second.objects[OWNER].drift == "none" and second.newly_drifted == []


def test_outside_the_apply_window_drift_is_reported_as_not_applied():
    """A pass that only planned marks found drift `not applied`."""
    revision = validation(("prod", ACCOUNT))
    eks = core(revision, "prod")
    first = assess(revision, a_pass(revision, [eks], [seen(eks, 3)]), memory=DriftMemory(), previous={})
    planned = dataclasses.replace(a_pass(revision, [eks], [seen(eks, 5)]), outcomes=[])
    second = assess(revision, planned, memory=first.memory, previous=first.objects, applied=False)
    assert [d.repair for d in second.objects[OWNER].drifted] == ["not applied"]


def test_a_troubled_place_keeps_its_objects_last_state_with_the_error_and_next_attempt():
    """Objects in a place backing off are carried over; one never seen there is CREATE_FAILED."""
    revision = validation(("prod", ACCOUNT), ("other", OTHER_ACCOUNT))
    eks = core(revision, "prod")
    previous = {OWNER: ObjectState("Cluster", "prod", "prod", ACCOUNT, REGION, "CREATED")}
    troubled = {(ACCOUNT, REGION): PlaceTrouble("AccessDenied", 130.0),
                (OTHER_ACCOUNT, REGION): PlaceTrouble("AccessDenied", 160.0)}
    found = assess(revision, a_pass(revision, [], []), memory=DriftMemory(), previous=previous, troubled=troubled)
    prod, other = found.objects[OWNER], found.objects["Cluster/other"]
    assert (prod.status, prod.last_error, prod.next_attempt) == ("CREATED", "AccessDenied", 130.0)
    assert (other.status, other.last_error, other.next_attempt) == ("CREATE_FAILED", "AccessDenied", 160.0)
    assert eks.key not in found.memory.fingerprints


def test_a_pending_core_resource_reads_creating_then_created():
    """A Cluster whose EKS cluster AWS is still creating is CREATING; once ready, CREATED."""
    revision = validation(("prod", ACCOUNT))
    eks = core(revision, "prod")
    creating = assess(revision, a_pass(revision, [eks], [seen(eks, 3, status="pending", state="CREATING")]), memory=DriftMemory(),
                      previous={})
    assert creating.objects[OWNER].status == "CREATING"
    done = assess(revision, a_pass(revision, [eks], [seen(eks, 3)]), memory=creating.memory, previous=creating.objects)
    assert done.objects[OWNER].status == "CREATED"


def test_status_report_and_passview_import_no_io_library():
    """A fresh interpreter importing status, report and passview loads none of boto3, prometheus_client, ruamel, git, jsonschema, apscheduler."""
    code = (
        "import sys, driftwarden.runtime.status, driftwarden.runtime.report, driftwarden.runtime.passview;"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {sorted(IO_LIBRARIES)!r}))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"
