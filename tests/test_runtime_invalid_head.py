"""An invalid head is reported as invalid in /status, metrics and logs, whatever made it invalid.

In process, driven by `Daemon.sync()` on a fake clock, as in test_runtime_daemon.py: the source
is a real directory and AWS is moto's server behind `faultproxy` (AssumeRole into the target
account is refused, so passes are quick). A manifest with a 20,000-digit integer used to raise
from inside validation: `sync.crashed` on every poll, a fresh daemon never ready, a running one
still reporting its previous head as valid.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from driftwarden.providers.registry import default_providers
from driftwarden.providers.secret_sources import sandbox_secret_resolver
from driftwarden.runtime import revisions
from driftwarden.runtime.daemon import Daemon
from driftwarden.runtime.metrics import Metrics
from driftwarden.runtime.settings import DaemonSettings
from driftwarden.runtime.source import DirectorySource
from faultproxy import error
from runtime_passes import OTHER_ACCOUNT, cluster_yaml

MONDAY_0830 = datetime(2024, 6, 3, 8, 30, tzinfo=UTC).timestamp()
HUGE_INTEGER = cluster_yaml("huge", OTHER_ACCOUNT) + (
    "  nodePools:\n    - name: default\n      minNodeCount: 0x" + "f" * 20000 + "\n"
)
HUGE_LINE = 11


@pytest.fixture
def daemon_world(tmp_path: Path, aws, fault_proxy) -> Iterator[tuple[Path, Daemon, Metrics]]:
    """A manifest directory and a daemon over it with fresh metrics; AssumeRole into OTHER_ACCOUNT is refused."""
    fault_proxy.inject(lambda r: r.service == "sts" and OTHER_ACCOUNT in r.body_or_target,
                       [error("AccessDenied", status=403)], repeat_last=True)
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    metrics = Metrics(CollectorRegistry())
    daemon = Daemon(DirectorySource(manifests), aws.sessions(endpoint_url=fault_proxy.endpoint_url), metrics,
                    DaemonSettings(metrics_port=0), resolve_secret=sandbox_secret_resolver(), providers=default_providers(),
                    clock=lambda: MONDAY_0830)
    yield manifests, daemon, metrics


def events(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "driftwarden_event", None) == name]


def invalid_manifests(metrics: Metrics, kind: str) -> float | None:
    return metrics.registry.get_sample_value("driftwarden_manifests", {"kind": kind, "valid": "false"})


def test_a_fresh_daemon_whose_first_head_used_to_crash_becomes_ready_with_the_head_invalid(daemon_world, caplog):
    """A first revision with a file that used to crash validation makes the daemon ready, the head invalid with the file's line, and an invalid manifest counted."""
    manifests, daemon, metrics = daemon_world
    (manifests / "huge.yaml").write_text(HUGE_INTEGER)
    caplog.set_level(logging.INFO, logger="driftwarden")
    daemon.sync()
    status = daemon.status()
    assert daemon.ready() and status["revision"] is None and status["head_valid"] is False
    (problem,) = status["manifests"]["errors"]
    assert (problem["file"], problem["line"], problem["rule"]) == ("huge.yaml", HUGE_LINE, "yaml.number-too-large")
    assert invalid_manifests(metrics, "unknown") == 1
    assert not events(caplog, "sync.crashed")
    (logged,) = events(caplog, "revision.invalid")
    assert logged.driftwarden_fields["problems"][0]["file"] == "huge.yaml"  # type: ignore[attr-defined]


def test_a_running_daemon_reports_a_new_head_that_used_to_crash_as_invalid_and_keeps_the_last_good(daemon_world, caplog):
    """After a valid revision, a head with a file that used to crash validation is reported invalid; the valid one stays in force."""
    manifests, daemon, metrics = daemon_world
    (manifests / "other.yaml").write_text(cluster_yaml("other", OTHER_ACCOUNT))
    daemon.sync()
    good = daemon.status()["revision"]
    assert good is not None and daemon.status()["head_valid"] is True
    assert invalid_manifests(metrics, "unknown") == 0

    (manifests / "huge.yaml").write_text(HUGE_INTEGER)
    caplog.set_level(logging.INFO, logger="driftwarden")
    daemon.sync()
    status = daemon.status()
    assert status["revision"] == good and status["head_revision"] != good and status["head_valid"] is False
    assert [e["file"] for e in status["manifests"]["errors"]] == ["huge.yaml"]
    assert invalid_manifests(metrics, "unknown") == 1
    assert metrics.registry.get_sample_value("driftwarden_git_revision_info", {"revision": good}) == 1
    assert events(caplog, "revision.invalid") and not events(caplog, "sync.crashed")


def test_any_exception_while_validating_makes_the_head_invalid_with_a_problem_naming_it(daemon_world, caplog, monkeypatch):
    """Whatever validation raises, the head is invalid with a problem naming the exception, logged with its traceback; the last good revision stays in force."""
    manifests, daemon, metrics = daemon_world
    (manifests / "other.yaml").write_text(cluster_yaml("other", OTHER_ACCOUNT))
    daemon.sync()
    good = daemon.status()["revision"]

    def broken(*_args, **_kwargs):
        raise RuntimeError("a validation bug nobody foresaw")

    monkeypatch.setattr(revisions, "validate_documents", broken)
    (manifests / "more.yaml").write_text(cluster_yaml("more", OTHER_ACCOUNT))
    caplog.set_level(logging.INFO, logger="driftwarden")
    daemon.sync()
    status = daemon.status()
    assert daemon.ready() and status["revision"] == good and status["head_valid"] is False
    (problem,) = status["manifests"]["errors"]
    assert problem["rule"] == "revision.check-failed" and problem["file"] == f"revision {status['head_revision']}"
    assert "RuntimeError: a validation bug nobody foresaw" in problem["message"]
    assert invalid_manifests(metrics, "unknown") == 1
    (crash,) = events(caplog, "revision.check_failed")
    assert crash.exc_info is not None and "nobody foresaw" in str(crash.exc_info[1])
    assert events(caplog, "revision.invalid") and not events(caplog, "sync.crashed")
