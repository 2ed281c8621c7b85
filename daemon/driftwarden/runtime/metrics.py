"""Every Prometheus metric of driftwarden, defined once, on an injected registry.

The names and labels are a contract (PRODUCT.md, "Metrics"): dashboards and alert rules
depend on them. Labels stay low-cardinality — kinds, resource types, accounts, regions,
results — never ARNs, ids or error strings.

This is the only module that imports prometheus_client. It also adapts the AWS layer's
call observer (`ApiCallObserver`) to the AWS call counters, and turns one reconcile pass (its
`PassReport` and its assessment) into the pass, apply, drift and status series; it counts
nothing the report has already counted.
"""

from __future__ import annotations

from collections import Counter as _Counter
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from driftwarden.runtime.report import PassReport
from driftwarden.runtime.status import ObjectStatus

PREFIX = "driftwarden"
CONTENT_TYPE = CONTENT_TYPE_LATEST

# Poll intervals run from seconds to a day, and one reconcile of many accounts can take
# minutes (EKS waits are far longer, but those are awaited outside the measured pass).
# Why an HTTP request cost nothing more than a counter (the `reason` label's values).
HTTP_REJECTION_REASONS = ("deadline", "aborted", "malformed", "unauthorized", "duplicate", "stale", "other")

RECONCILE_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 86400)


class SnapshotGauge(Collector):
    """A gauge family whose whole set of series is swapped at once."""

    def __init__(self, name: str, documentation: str, labels: tuple[str, ...]) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = labels
        # Replaced, never mutated: a scrape reads one consistent mapping.
        self._samples: dict[tuple[str, ...], float] = {}

    def replace(self, samples: dict[tuple[str, ...], float]) -> None:
        self._samples = dict(samples)

    def samples(self) -> dict[tuple[str, ...], float]:
        return self._samples

    def collect(self) -> Iterable[GaugeMetricFamily]:
        samples = self._samples
        family = GaugeMetricFamily(self.name, self.documentation, labels=list(self.labels))
        for values, value in sorted(samples.items()):
            family.add_metric(list(values), value)
        yield family

    def describe(self) -> Iterable[GaugeMetricFamily]:
        yield GaugeMetricFamily(self.name, self.documentation, labels=list(self.labels))


class Metrics:
    """The metric families; create one per process (or per test) with its own registry."""

    def __init__(self, registry: CollectorRegistry | None = None, *, version: str = "0") -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.reconcile_duration = Histogram(
            f"{PREFIX}_reconcile_duration_seconds",
            "Wall time of one reconcile pass (validate, observe, plan, apply).",
            ["trigger"],
            buckets=RECONCILE_BUCKETS,
            registry=r,
        )
        self.reconcile_total = Counter(
            f"{PREFIX}_reconcile", "Reconcile passes by result (success, partial, failure).", ["result"], registry=r
        )
        self.last_success = Gauge(
            f"{PREFIX}_last_successful_reconcile_timestamp_seconds",
            "Unix time of the last reconcile pass that ended without any error.",
            registry=r,
        )
        # Per-object series are replaced as a whole each pass; a scrape must see either the old
        # set or the new one, never a half-cleared one (alerts with `for:` would reset).
        self.resource_info = SnapshotGauge(
            f"{PREFIX}_resource_info",
            "One series per manifest object with its status and drift state (value always 1).",
            ("kind", "name", "cluster", "account", "region", "status", "drift"),
        )
        self.drifted_resources = SnapshotGauge(
            f"{PREFIX}_drifted_resources",
            "AWS resources that currently differ from Git, by owner kind and place.",
            ("kind", "cluster", "account", "region"),
        )
        r.register(self.resource_info)
        r.register(self.drifted_resources)
        self.drift_detected = Counter(
            f"{PREFIX}_drift_detected",
            "Times drift was found on an existing AWS resource, by owner kind and resource type.",
            ["kind", "resource"],
            registry=r,
        )
        self.apply_actions = Counter(
            f"{PREFIX}_apply_actions",
            "Changes carried out, by action, resource type and result.",
            ["action", "resource", "result"],
            registry=r,
        )
        self.aws_api_calls = Counter(
            f"{PREFIX}_aws_api_calls",
            "AWS API calls by service, operation and result (retried counts extra attempts).",
            ["service", "operation", "result"],
            registry=r,
        )
        self.aws_throttled = Counter(
            f"{PREFIX}_aws_throttled", "AWS answers that throttled driftwarden, by service.", ["service"], registry=r
        )
        self.git_revision_info = SnapshotGauge(
            f"{PREFIX}_git_revision_info", "The revision in force (value always 1).", ("revision",)
        )
        r.register(self.git_revision_info)
        self.git_last_sync = Gauge(
            f"{PREFIX}_git_last_sync_timestamp_seconds", "Unix time of the last successful fetch.", registry=r
        )
        self.git_fetch_total = Counter(
            f"{PREFIX}_git_fetch", "Fetches of the manifest source by result (success, failure).", ["result"], registry=r
        )
        self.manifests = Gauge(
            f"{PREFIX}_manifests", "Manifest objects in the head revision by kind and validity.", ["kind", "valid"], registry=r
        )
        self.http_requests_rejected = Counter(
            f"{PREFIX}_http_requests_rejected",
            "HTTP requests refused or dropped without a pass, by reason (deadline, aborted, malformed, "
            "unauthorized, duplicate, stale).",
            ["reason"],
            registry=r,
        )
        self.build_info = Gauge(f"{PREFIX}_build_info", "driftwarden's version (value always 1).", ["version"], registry=r)
        self.build_info.labels(version=version).set(1)
        for result in ("success", "partial", "failure"):
            self.reconcile_total.labels(result=result)
        for result in ("success", "failure"):
            self.git_fetch_total.labels(result=result)
        for reason in HTTP_REJECTION_REASONS:
            self.http_requests_rejected.labels(reason=reason)

    # -- the AWS call observer ---------------------------------------------------------------

    def api_call(self, service: str, operation: str, result: str) -> None:
        self.aws_api_calls.labels(service=service, operation=operation, result=result).inc()

    def throttled(self, service: str) -> None:
        self.aws_throttled.labels(service=service).inc()

    # -- the HTTP side -------------------------------------------------------------------------

    def http_rejected(self, reason: str) -> None:
        # Reasons are a fixed set: an unknown word would be a new series per caller's whim.
        self.http_requests_rejected.labels(reason=reason if reason in HTTP_REJECTION_REASONS else "other").inc()

    # -- what one pass leaves behind ---------------------------------------------------------

    def set_revision(self, revision: str) -> None:
        self.git_revision_info.replace({(revision,): 1.0})

    def set_manifest_counts(self, counts: Iterable[tuple[str, bool, int]]) -> None:
        for kind in ("Cluster", "Deployment"):
            for valid in ("true", "false"):
                self.manifests.labels(kind=kind, valid=valid).set(0)
        for kind, is_valid, count in counts:
            self.manifests.labels(kind=kind, valid="true" if is_valid else "false").set(count)

    def set_objects(self, objects: Iterable[ObjectStatus], drifted: _Counter[tuple[str, str, str, str]]) -> None:
        """Replace the per-object series: objects gone from Git must not linger.

        Every (kind, cluster, account, region) of a declared object is exported, 0 when nothing
        drifted, so "drifted for" queries can see when drift ended.
        """
        info: dict[tuple[str, ...], float] = {}
        counts: dict[tuple[str, ...], float] = {}
        for item in objects:
            info[(item.kind, item.name, item.cluster, item.account, item.region, item.status, item.drift)] = 1.0
            counts.setdefault((item.kind, item.cluster, item.account, item.region), 0.0)
        for place, count in drifted.items():
            counts[place] = float(count)
        self.resource_info.replace(info)
        self.drifted_resources.replace(counts)

    def record_pass(self, report: PassReport) -> None:
        """The pass's result, its apply actions, and the time of the last pass without an error."""
        for (action, resource, result), count in report.actions.items():
            self.apply_actions.labels(action=action, resource=resource, result=result).inc(count)
        self.reconcile_total.labels(result=report.result).inc()
        if report.result == "success":
            self.last_success.set(report.started)

    def record_drift(self, newly_drifted: Iterable[tuple[str, str]]) -> None:
        """One `drift_detected` per resource found drifted that was not drifted the pass before."""
        for kind, resource in newly_drifted:
            self.drift_detected.labels(kind=kind, resource=resource).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
