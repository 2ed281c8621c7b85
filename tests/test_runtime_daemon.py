"""The daemon object in process, driven job by job on a fake clock (no scheduler thread, no HTTP).

`Daemon.sync()` and `Daemon.drift()` are the bodies of the SYNC and DRIFT jobs. The source is a
real directory; AWS is moto's server behind `faultproxy`, so a target account can be made to
refuse AssumeRole. Time is a `FakeClock`: backoff, apply windows, /status times and the
metrics' timestamps all follow it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from driftwarden.providers.registry import default_providers
from driftwarden.providers.secret_sources import sandbox_secret_resolver
from driftwarden.runtime.daemon import Daemon
from driftwarden.runtime.metrics import Metrics
from driftwarden.runtime.settings import DaemonSettings
from driftwarden.runtime.source import DirectorySource
from faultproxy import error
from runtime_passes import OTHER_ACCOUNT, REGION, cluster_yaml

MONDAY_0830 = datetime(2024, 6, 3, 8, 30, tzinfo=UTC).timestamp()


class FakeClock:
    """Unix time that moves only when a test says so."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def world(tmp_path: Path, aws, fault_proxy) -> Iterator[tuple[Path, FakeClock, Metrics]]:
    """A manifest directory, a fake clock and fresh metrics; AssumeRole into OTHER_ACCOUNT is refused."""
    fault_proxy.inject(lambda r: r.service == "sts" and OTHER_ACCOUNT in r.body_or_target,
                       [error("AccessDenied", status=403)], repeat_last=True)
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    clock = FakeClock(MONDAY_0830)
    yield manifests, clock, Metrics(CollectorRegistry())


def make_daemon(world, sessions, **settings) -> Daemon:
    manifests, clock, metrics = world
    return Daemon(DirectorySource(manifests), sessions, metrics, DaemonSettings(metrics_port=0, **settings),
                  resolve_secret=sandbox_secret_resolver(), providers=default_providers(), clock=clock)


def passes(metrics: Metrics, result: str) -> float:
    return metrics.registry.get_sample_value("driftwarden_reconcile_total", {"result": result}) or 0.0


def assume_roles(fault_proxy) -> int:
    return len([r for r in fault_proxy.calls("sts", "AssumeRole") if OTHER_ACCOUNT in r.body_or_target])


def test_an_interval_poll_of_a_settled_revision_costs_a_fetch_but_drift_checks_still_run(world, aws, fault_proxy):
    """After a pass that finished everything, SYNC on the interval skips the pass; DRIFT and a new revision do not."""
    manifests, clock, metrics = world
    daemon = make_daemon(world, aws.sessions(endpoint_url=fault_proxy.endpoint_url))
    daemon.sync()  # start-up: an empty revision, reconciled (nothing to do) and settled
    assert passes(metrics, "success") == 1 and daemon.ready()
    status = daemon.status()
    assert status["last_sync"] == "2024-06-03T08:30:00.000Z" and status["last_reconcile"]["trigger"] == "startup"

    clock.now += 60
    daemon.sync()
    assert passes(metrics, "success") == 1
    assert daemon.status()["last_sync"] == "2024-06-03T08:31:00.000Z"
    assert metrics.registry.get_sample_value("driftwarden_git_last_sync_timestamp_seconds") == clock.now

    daemon.drift()
    assert passes(metrics, "success") == 2 and daemon.status()["last_reconcile"]["trigger"] == "drift"

    (manifests / "other.yaml").write_text(cluster_yaml("other", OTHER_ACCOUNT))
    daemon.sync()
    assert daemon.status()["revision"] == daemon.status()["head_revision"] is not None
    assert passes(metrics, "failure") == 1 and assume_roles(fault_proxy) > 0


def test_a_refused_account_backs_off_by_the_injected_clock(world, aws, fault_proxy):
    """A place whose AssumeRole is refused is skipped until the fake clock reaches its next attempt, then tried and doubled."""
    manifests, clock, _metrics = world
    (manifests / "other.yaml").write_text(cluster_yaml("other", OTHER_ACCOUNT))
    daemon = make_daemon(world, aws.sessions(endpoint_url=fault_proxy.endpoint_url))
    start = clock.now
    daemon.sync()
    (backoff,) = daemon.status()["backoff"]
    assert (backoff["account"], backoff["failures"], backoff["next_attempt"]) == (OTHER_ACCOUNT, 1, "2024-06-03T08:30:30.000Z")
    (other,) = daemon.status()["objects"]
    assert other["status"] == "CREATE_FAILED" and other["next_attempt"] == "2024-06-03T08:30:30.000Z"
    tried = assume_roles(fault_proxy)

    clock.now = start + 29
    daemon.drift()
    assert assume_roles(fault_proxy) == tried
    assert any(f"account {OTHER_ACCOUNT} {REGION} skipped" in e for e in daemon.status()["last_reconcile"]["errors"])

    clock.now = start + 30
    daemon.drift()
    assert assume_roles(fault_proxy) > tried
    (backoff,) = daemon.status()["backoff"]
    assert (backoff["failures"], backoff["next_attempt"]) == (2, "2024-06-03T08:31:30.000Z")


def test_the_apply_window_and_prune_follow_the_clock_and_the_revision(world, aws, fault_proxy):
    """Inside the window a pass applies and prune is active; on the fake clock past it, the pass only plans and prune stops."""
    manifests, clock, _metrics = world
    (manifests / "other.yaml").write_text(cluster_yaml("other", OTHER_ACCOUNT))
    daemon = make_daemon(world, aws.sessions(endpoint_url=fault_proxy.endpoint_url), prune=True,
                         apply_windows=("* 8 * * 1",))
    daemon.sync()
    status = daemon.status()
    assert status["apply_window"]["open"] and status["last_reconcile"]["applied"]
    assert status["prune"] == {"enabled": True, "active": True, "limit": 20}

    clock.now += 3600
    daemon.drift()
    status = daemon.status()
    assert not status["apply_window"]["open"] and not status["last_reconcile"]["applied"]
    assert status["apply_window"]["next_open"] == "2024-06-10T08:00:00.000Z"
    assert status["prune"]["active"] is False


def test_an_invalid_head_is_never_in_force_and_stops_prune(world, aws, fault_proxy):
    """A broken manifest leaves no revision in force (nothing reconciled, said in /status); a later invalid head keeps the last good one and turns prune off."""
    manifests, _clock, metrics = world
    (manifests / "other.yaml").write_text("apiVersion: driftwarden/v1\nkind: Cluster\nmetadata: {name: BAD}\n")
    daemon = make_daemon(world, aws.sessions(endpoint_url=fault_proxy.endpoint_url), prune=True)
    daemon.sync()
    status = daemon.status()
    assert status["revision"] is None and status["head_valid"] is False and status["manifests"]["error_count"] > 0
    assert status["last_error"] == "no valid revision to reconcile yet (see the manifest errors)"
    assert passes(metrics, "failure") == 1 and assume_roles(fault_proxy) == 0

    (manifests / "other.yaml").write_text(cluster_yaml("other", OTHER_ACCOUNT))
    daemon.sync()
    good = daemon.status()["revision"]
    assert good is not None and daemon.status()["prune"]["active"] is True

    (manifests / "broken.yaml").write_text("kind: [\n")
    daemon.sync()
    status = daemon.status()
    assert status["revision"] == good and status["head_valid"] is False and status["prune"]["active"] is False
