"""Benchmark of the reconcile engine: AWS calls, wall time and memory of `apply` and `plan`.

What is measured, for each size N (default 1, 10 and 100 Clusters, each with 3 Deployments):

1. A platform of N Clusters and 3N Deployments is generated in a temporary directory, one
   manifest per file, and checked with `driftwarden.manifests.validation.validate_paths` (in-process).
   The Clusters are spread the way a platform team spreads them: 10 per AWS account, those
   alternating between two regions (us-east-1, eu-west-1), so N = 1, 10, 100 covers 1, 1 and
   10 accounts and 1, 2 and 20 (account, region) *places*. Every Cluster has its own /20
   `vpcSubnetRange` (never overlapping in an account), NAT gateways per AZ (the default), one
   `default` node pool, and every other Cluster a second, SPOT pool. Its 3 Deployments mix the
   executors: an ETL on CELERY with worker queues (one on the SPOT pool where there is one)
   and secret variables read via `valueFrom` (Secrets Manager and SSM); ML on KUBERNETES with
   a secret read from an environment variable; reports on CELERY with the default queue and
   no secret (so it has no Secrets Manager secret).
2. The embedded sandbox (`driftwarden.sandbox.server.Sandbox`: moto's server on 127.0.0.1, in this
   process) is started once and reset before each size. driftwarden talks to it over HTTP
   through its own AWS layer, `AwsSessions` (fake control credentials, `endpoint_url` of the
   sandbox, AssumeRole with the ExternalId into every target account). Calls are counted by
   `CountingObserver`, which the AWS layer feeds from botocore's event hooks (`after-call`,
   `after-call-error`, `needs-retry`) on every client: every logical call is counted once
   (retries are counted apart), including the AssumeRole calls of the control account.
3. Per size, in this order (each timed with `time.perf_counter`, calls counted apart):
   a. the first `apply` from empty accounts (`apply_once`, `ApplySettings(wait=True,
      poll_seconds=0.01, max_workers=8)`): everything is created and waited for;
   b. a no-change `plan` right after it (`plan_once`), with *new* `AwsSessions` — what
      `driftwarden plan` pays in a fresh process: AssumeRole per role session, clients built,
      service models parsed. Its calls are broken down by (service, operation) and classified:
      per account (STS, IAM is global), per (account, region) listing, per EKS cluster / node
      group (EKS has no batch describe), or "grows with resources" (the known per-resource
      reads, and anything else above two pages per place). It must have no changes and no
      errors; a warning line says otherwise;
   c. the same plan again on the same sessions (warm clients: the daemon's steady state).
      b and c are repeated (`--repeat`, default 3) and the median run is reported, with the
      times of all runs; every pass starts with `gc.collect()` (see GC below);
   d. the fresh plan taken apart, on new `AwsSessions`: first every client the plan uses is
      built, with no call made (botocore sessions, service models, client classes), then the
      plan runs (paying AssumeRole, first calls, new connections); next to (b) and (c) this
      shows where a fresh plan's extra cost goes.
   The split of each pass's wall time between observing AWS (`observe`) and the pure work
   (graph, diff) is measured by wrapping those functions of `driftwarden.engine.reconcile`; pauses of
   Python's garbage collector are timed with `gc.callbacks`. Since the sandbox's state lives in
   this process, a full collection walks moto's objects too (about 4 s at 100 clusters), and
   whether one falls inside a pass would be chance; so each pass starts with the collector
   caught up (`gc.collect()`, not timed). `--gc-freeze` goes further and calls `gc.freeze()`
   after each apply, so that collections skip moto's state (as if it ran in another process).
   Validation is timed apart and not included in the plan time.
4. Peak RSS (`resource.getrusage(RUSAGE_SELF).ru_maxrss`) after each size, and the current
   RSS. Both include the simulated AWS, which lives in this process: most of the memory of a
   large size is moto's state, not driftwarden's.
5. With `--profile`: the no-change plan of the largest size once more under cProfile, in every
   thread (the plan's own, the `observe` pool's, and moto's request threads, each with its own
   profiler, merged, timed on CPU): the share of CPU spent in the simulated AWS, then the top
   entries of driftwarden's side (main and `observe` threads) by cumulative time, its own
   functions only, and by own time, and moto's handlers by cumulative time.

Targets (from the issue), printed next to the numbers and never asserted: a no-change plan
costs O(resource types x accounts x regions) list/describe calls plus the per-cluster EKS reads
that AWS offers no batch for (and the per-cluster VPC DNS attributes, for the same reason),
not one call per resource; a no-change plan of 100 Clusters
finishes in <= 10 s against the sandbox.

The sandbox answers from the same process and the same two cores: its CPU time is part of
every wall time here (against real AWS it would be network latency instead, and parallel
reads would overlap). The call counts do not depend on that.

Usage: `python benchmarks/reconcile.py [--sizes 1,10,100] [--repeat 3] [--no-warm-plan]
[--gc-freeze] [--profile] [--top 15] [--keep DIR]`, with the project's virtualenv. The default
run takes about 5 minutes on 2 cores (the 100-cluster apply is most of it) and peaks near
1.5 GiB of memory; `--profile` adds about a minute.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import io
import os
import platform
import pstats
import resource
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import boto3
import botocore

import driftwarden.engine.reconcile as reconcile_module
from driftwarden.engine.apply import ApplySettings
from driftwarden.engine.graph import Resource
from driftwarden.engine.observe import account_ref, places_of
from driftwarden.engine.reconcile import (
    PassResult,
    ReconcileSettings,
    apply_once,
    plan_once,
)
from driftwarden.manifests.result import ValidationResult
from driftwarden.manifests.validation import validate_paths
from driftwarden.providers.aws import AwsSessions, client_config
from driftwarden.providers.base import Provider
from driftwarden.providers.calls import AccountRef, CountingObserver, is_mutating
from driftwarden.providers.registry import default_providers
from driftwarden.providers.secret_sources import sandbox_secret_resolver
from driftwarden.sandbox.server import SANDBOX_ACCESS_KEY_ID, SANDBOX_SECRET_ACCESS_KEY, Sandbox

CLUSTERS_PER_ACCOUNT = 10
REGIONS = ("us-east-1", "eu-west-1")
DEPLOYMENTS_PER_CLUSTER = 3
PLAN_TARGET_SECONDS = 10.0
PLAN_TARGET_CLUSTERS = 100
APPLY_SETTINGS = ApplySettings(wait=True, poll_seconds=0.01, max_workers=8)
# A page of a listing call holds many resources; more than this many calls of one listing per
# place means it is not a (paginated) listing but one call per resource.
PAGES_PER_PLACE_ALLOWED = 2
# EKS has no batch describe and no tag filter: these reads are one per cluster / node group.
# EC2 has no batch read of VPC attributes: the two DNS attributes are read per cluster VPC.
EKS_PER_CLUSTER = frozenset({("eks", "DescribeCluster"), ("eks", "ListNodegroups")})
VPC_PER_CLUSTER = frozenset({("ec2", "DescribeVpcAttribute")})
EKS_PER_NODEGROUP = frozenset({("eks", "DescribeNodegroup")})
# Calls that are made once per account: credentials, and IAM (a global service).
PER_ACCOUNT_SERVICES = frozenset({"sts", "iam"})
# Why a known read grows with resources (shown next to its count).
PER_RESOURCE_NOTES: Final[Mapping[tuple[str, str], str]] = {
    ("ssm", "ListTagsForResource"): "1 per parameter the tagging index does not list (yet)",
    ("rds", "ListTagsForResource"): "1 per DB subnet group the tagging index does not list (yet)",
}
# The environment variable a generated Deployment reads a secret from (sandbox: any value).
SECRET_ENV = "DW_BENCH_API_TOKEN"


# --------------------------------------------------------------------------------------------
# The generated platform
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    """How N clusters spread over accounts and regions."""

    clusters: int
    accounts: int
    regions: int
    places: int
    nodegroups: int


def account_id(index: int) -> str:
    """A 12-digit account id per account index, never moto's default 123456789012."""
    return f"{310000000000 + index * 1_000_003:012d}"


def cluster_name(index: int) -> str:
    return f"bench-{index:03d}"


def placement(index: int) -> tuple[int, str, str]:
    """(account index, region, vpcSubnetRange) of cluster `index`."""
    account, slot = divmod(index, CLUSTERS_PER_ACCOUNT)
    region = REGIONS[slot % len(REGIONS)]
    # One /20 per slot of the account: 10.<account>.<16 * slot>.0/20 never overlap.
    return account, region, f"10.{account}.{16 * slot}.0/20"


def has_spot_pool(index: int) -> bool:
    return index % 2 == 1


def cluster_manifest(index: int) -> str:
    account, region, cidr = placement(index)
    name = cluster_name(index)
    spot = """
    - name: spot
      nodeInstanceType: m5.2xlarge
      capacityType: SPOT
      minNodeCount: 0
      maxNodeCount: 30
      labels:
        workload-class: batch-spot
      taints:
        - key: driftwarden.dev/spot
          value: "true"
          effect: NO_SCHEDULE""" if has_spot_pool(index) else ""
    return f"""apiVersion: driftwarden/v1
kind: Cluster
metadata:
  name: {name}
  labels:
    team: data-platform
spec:
  account:
    id: "{account_id(account)}"
    externalId: dw-{name}-7f3a9c
  region: {region}
  vpcSubnetRange: {cidr}
  nodePools:
    - name: default
      nodeInstanceType: m5.xlarge
      isDefault: true
      minNodeCount: 2
      maxNodeCount: 20{spot}
  tags:
    cost-center: "{4400 + account}"
    environment: benchmark
"""


def deployment_manifests(index: int) -> dict[str, str]:
    """The 3 Deployments of cluster `index`, by file stem."""
    cluster = cluster_name(index)
    _account, region, _cidr = placement(index)
    spot_queue = """
    - name: batch
      workerType: m5.2xlarge
      minWorkerCount: 0
      maxWorkerCount: 10
      workerConcurrency: 32""" if has_spot_pool(index) else ""
    etl = f"""apiVersion: driftwarden/v1
kind: Deployment
metadata:
  name: {cluster}-etl
  labels:
    team: data-eng
spec:
  cluster: {cluster}
  description: Hourly loads into the warehouse.
  runtimeVersion: 12.1.0
  executor: CeleryExecutor
  scheduler:
    au: 10
    replicas: 2
  workerQueues:
    - name: default
      workerType: m5.xlarge
      minWorkerCount: 1
      maxWorkerCount: 5
      workerConcurrency: 16{spot_queue}
  environmentVariables:
    - key: AIRFLOW__CORE__DEFAULT_TIMEZONE
      value: Europe/Dublin
    - key: AIRFLOW_CONN_WAREHOUSE
      isSecret: true
      valueFrom:
        secretsManagerArn: arn:aws:secretsmanager:{region}:906231845570:secret:{cluster}/etl/warehouse-Xk3p9Q
        jsonKey: uri
    - key: SLACK_WEBHOOK_URL
      isSecret: true
      valueFrom:
        ssmParameter: /{cluster}/etl/slack-webhook-url
  alertEmails:
    - data-eng-oncall@example.com
  workloadIdentity:
    policyArns:
      - arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess
"""
    ml = f"""apiVersion: driftwarden/v1
kind: Deployment
metadata:
  name: {cluster}-ml
spec:
  cluster: {cluster}
  runtimeVersion: 12.1.0
  executor: KUBERNETES
  taskPodNodePool: default
  environmentVariables:
    - key: FEATURE_STORE_BUCKET
      value: acme-feature-store
    - key: FEATURE_STORE_TOKEN
      isSecret: true
      valueFrom:
        env: {SECRET_ENV}
"""
    reports = f"""apiVersion: driftwarden/v1
kind: Deployment
metadata:
  name: {cluster}-reports
spec:
  cluster: {cluster}
  runtimeVersion: 12.1.0
  environmentVariables:
    - key: REPORT_BUCKET
      value: acme-reports
  alertEmails:
    - reporting@example.com
"""
    return {f"{cluster}-etl": etl, f"{cluster}-ml": ml, f"{cluster}-reports": reports}


def write_platform(root: Path, clusters: int) -> Shape:
    """Write N clusters and their Deployments under `root`; return how they spread."""
    (root / "clusters").mkdir(parents=True)
    (root / "deployments").mkdir()
    places: set[tuple[int, str]] = set()
    for index in range(clusters):
        (root / "clusters" / f"{cluster_name(index)}.yaml").write_text(cluster_manifest(index))
        for stem, text in deployment_manifests(index).items():
            (root / "deployments" / f"{stem}.yaml").write_text(text)
        account, region, _cidr = placement(index)
        places.add((account, region))
    return Shape(
        clusters=clusters,
        accounts=len({account for account, _region in places}),
        regions=len({region for _account, region in places}),
        places=len(places),
        nodegroups=sum(2 if has_spot_pool(i) else 1 for i in range(clusters)),
    )


# --------------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------------


@dataclass
class Phases:
    """Wall time spent inside functions of `driftwarden.engine.reconcile` during one pass, and in GC."""

    seconds: dict[str, float] = field(default_factory=dict)
    # Pauses of Python's cyclic garbage collector (any thread), and how many were full (gen 2).
    gc_seconds: float = 0.0
    full_collections: int = 0


@contextlib.contextmanager
def timed_phases(names: Sequence[str]) -> Iterator[Phases]:
    """Wrap the named module-level functions of `driftwarden.engine.reconcile` with timers; time GC.

    The sandbox's state lives in this process, so a full collection walks moto's objects as
    well as driftwarden's: with hundreds of clusters in the sandbox that is most of the heap.
    """
    phases = Phases()
    # A name the module no longer has (renamed by someone) is simply not timed.
    originals = {name: getattr(reconcile_module, name) for name in names if hasattr(reconcile_module, name)}
    started: list[float] = []

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started.append(time.perf_counter())
        elif started:
            phases.gc_seconds += time.perf_counter() - started.pop()
            phases.full_collections += info.get("generation") == 2

    def wrap(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                phases.seconds[name] = phases.seconds.get(name, 0.0) + time.perf_counter() - start

        return timed

    for name, function in originals.items():
        setattr(reconcile_module, name, wrap(name, function))
    gc.callbacks.append(on_gc)
    try:
        yield phases
    finally:
        gc.callbacks.remove(on_gc)
        for name, function in originals.items():
            setattr(reconcile_module, name, function)


@dataclass
class Pass:
    """One timed, counted pass (apply or plan)."""

    label: str
    seconds: float
    calls: Counter[tuple[str, str]]
    retries: int
    result: PassResult
    phases: Phases

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())


def logical_calls(observer: CountingObserver) -> tuple[Counter[tuple[str, str]], int]:
    """Calls by (service, operation), every result but "retried"; and the number of retries."""
    calls: Counter[tuple[str, str]] = Counter()
    retries = 0
    for (service, operation, result), count in observer.calls.items():
        if result == "retried":
            retries += count
        else:
            calls[(service, operation)] += count
    return calls, retries


def new_sessions(sandbox: Sandbox, observer: CountingObserver) -> AwsSessions:
    """driftwarden's AWS layer against the sandbox, as `--sandbox` builds it, counting calls."""

    def control_session() -> boto3.Session:
        return boto3.Session(
            aws_access_key_id=SANDBOX_ACCESS_KEY_ID,
            aws_secret_access_key=SANDBOX_SECRET_ACCESS_KEY,
            region_name=REGIONS[0],
        )

    return AwsSessions(control_session, endpoint_url=sandbox.endpoint_url, observer=observer, config=client_config())


def run_pass(label: str, action: Callable[[], PassResult], observer: CountingObserver) -> Pass:
    # Start every pass with the collector caught up: otherwise whether a full collection of the
    # whole heap (seconds, with moto's state in it) falls inside a pass is a matter of chance.
    gc.collect()
    observer.reset()
    with timed_phases(("build_graph", "observe", "make_plan", "_preflight")) as phases:
        start = time.perf_counter()
        result = action()
        seconds = time.perf_counter() - start
    calls, retries = logical_calls(observer)
    return Pass(label, seconds, calls, retries, result, phases)


def do_apply(validation: ValidationResult, sessions: AwsSessions) -> PassResult:
    return apply_once(
        validation,
        sessions,
        revision="bench",
        settings=ReconcileSettings(apply=APPLY_SETTINGS),
        resolve_secret=sandbox_secret_resolver(),
        providers=default_providers(),
        progress=lambda _message: None,
    )


def do_plan(validation: ValidationResult, sessions: AwsSessions) -> PassResult:
    return plan_once(
        validation,
        sessions,
        revision="bench",
        settings=ReconcileSettings(apply=APPLY_SETTINGS),
        resolve_secret=sandbox_secret_resolver(),
        providers=default_providers(),
    )


def rss_mib() -> tuple[float, float]:
    """(peak RSS, current RSS) of this process in MiB; ru_maxrss is KiB on Linux, bytes on macOS."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak_mib = peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024
    current = 0.0
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                current = int(line.split()[1]) / 1024
    return peak_mib, current


# --------------------------------------------------------------------------------------------
# Classifying read calls
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReadBreakdown:
    per_account: int
    per_place: int
    eks_per_cluster: int
    growing: dict[tuple[str, str], int]

    @property
    def listings(self) -> int:
        """Calls made once per account or per place (pages included): the O(types x places) part."""
        return self.per_account + self.per_place

    @property
    def per_resource(self) -> int:
        return sum(self.growing.values())

    @property
    def excluding_eks(self) -> int:
        return self.listings + self.per_resource


def classify(calls: Mapping[tuple[str, str], int], shape: Shape) -> tuple[ReadBreakdown, dict[tuple[str, str], str]]:
    """Sort a plan's calls into per-account, per-place, per-EKS-cluster and growing ones."""
    per_account = per_place = eks = 0
    growing: dict[tuple[str, str], int] = {}
    labels: dict[tuple[str, str], str] = {}
    for key, count in calls.items():
        service, _operation = key
        if key in EKS_PER_CLUSTER:
            eks += count
            labels[key] = f"per EKS cluster ({count / max(shape.clusters, 1):.2g}/cluster)"
        elif key in VPC_PER_CLUSTER:
            eks += count
            labels[key] = f"per cluster VPC ({count / max(shape.clusters, 1):.2g}/cluster: EC2 has no batch read)"
        elif key in EKS_PER_NODEGROUP:
            eks += count
            labels[key] = f"per EKS node group ({count / max(shape.nodegroups, 1):.2g}/group)"
        elif service in PER_ACCOUNT_SERVICES:
            per_account += count
            labels[key] = (f"per account ({count / shape.accounts:.2g}/account"
                           + (", one role session per ExternalId used)" if service == "sts" else ")"))
        elif key not in PER_RESOURCE_NOTES and count <= PAGES_PER_PLACE_ALLOWED * shape.places:
            per_place += count
            labels[key] = f"per place ({count / shape.places:.2g}/place)"
        else:
            growing[key] = count
            note = PER_RESOURCE_NOTES.get(key, "")
            labels[key] = f"GROWS WITH RESOURCES ({count / shape.places:.3g}/place{'; ' + note if note else ''})"
    return ReadBreakdown(per_account, per_place, eks, growing), labels


def listing_units(providers: Mapping[str, Provider], shape: Shape) -> tuple[int, int, int]:
    """(types, regional listings, global listings) a no-change plan is expected to make."""
    regional = sum(1 for p in providers.values() if not p.global_service)
    global_ = len(providers) - regional
    return len(providers), regional * shape.places, global_ * shape.accounts


# --------------------------------------------------------------------------------------------
# Profiling every thread
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def profile_all_threads() -> Iterator[dict[str, list[cProfile.Profile]]]:
    """cProfile, on CPU time, in the calling thread and in every thread started meanwhile.

    cProfile only sees the thread that enables it. `threading.setprofile` installs a hook in
    each new thread; on its first event it enables a fresh profiler there (which replaces the
    hook). Threads named ``observe_*`` are driftwarden's read pool; the rest of the new threads
    are the sandbox's request handlers (moto). The timer is `time.thread_time`, so a thread
    blocked on a socket or a lock accrues nothing: the numbers are CPU seconds, and the two
    sides add up to what the process spent on the plan (both share one GIL and 2 cores).
    """
    groups: dict[str, list[cProfile.Profile]] = {"driftwarden": [], "sandbox": []}
    lock = threading.Lock()

    def start(_frame: Any, _event: str, _arg: Any) -> None:
        profiler = cProfile.Profile(time.thread_time)
        name = threading.current_thread().name
        group = "driftwarden" if name.startswith(("observe", "MainThread")) else "sandbox"
        with lock:
            groups[group].append(profiler)
        profiler.enable()

    main = cProfile.Profile(time.thread_time)
    groups["driftwarden"].append(main)
    threading.setprofile(start)
    main.enable()
    try:
        yield groups
    finally:
        main.disable()
        threading.setprofile(None)  # type: ignore[arg-type]  # typeshed lacks None


def merged(profiles: Sequence[cProfile.Profile]) -> pstats.Stats | None:
    stats: pstats.Stats | None = None
    for profiler in profiles:
        with contextlib.suppress(TypeError):  # a profiler that never recorded anything
            if stats is None:
                stats = pstats.Stats(profiler)
            else:
                stats.add(profiler)
    return stats


def total_tt(stats: pstats.Stats | None) -> float:
    if stats is None:
        return 0.0
    return float(sum(entry[2] for entry in stats.stats.values()))  # type: ignore[attr-defined]


def stats_table(stats: pstats.Stats, sort: str, top: int, *restrictions: str) -> str:
    """pstats' listing without its preamble, paths shortened to site-packages/stdlib-relative."""
    out = io.StringIO()
    stats.stream = out  # type: ignore[attr-defined]
    stats.sort_stats(sort).print_stats(*restrictions, top)
    body = out.getvalue()
    table = body[body.find("   ncalls"):] if "   ncalls" in body else body
    for prefix in sorted({*sys.path, str(Path(__file__).resolve().parents[1])}, key=len, reverse=True):
        if prefix and len(prefix) > 1:
            table = table.replace(prefix.rstrip("/") + "/", "")
    return table.rstrip()


def print_profile(validation: ValidationResult, sandbox: Sandbox, clusters: int, top: int) -> None:
    sessions = new_sessions(sandbox, CountingObserver())
    try:
        with profile_all_threads() as groups:
            start = time.perf_counter()
            result = do_plan(validation, sessions)
            seconds = time.perf_counter() - start
    finally:
        sessions.close()
    changes = len(result.plan.changes) if result.plan else "?"
    ours, theirs = merged(groups["driftwarden"]), merged(groups["sandbox"])
    own, sim = total_tt(ours), total_tt(theirs)
    print(f"\n== cProfile: no-change plan of {clusters} clusters (fresh sessions), every thread, CPU time ==")
    print(f"wall {seconds:.2f} s under the profiler ({changes} changes); CPU: driftwarden side "
          f"(main + observe threads: driftwarden, boto3, botocore, urllib3) {own:.2f} s, sandbox side "
          f"(moto's request threads) {sim:.2f} s = {100 * sim / max(own + sim, 1e-9):.0f}% in the simulated AWS")
    if ours is not None:
        print(f"\n-- top {top} by cumulative CPU, driftwarden side --")
        print(stats_table(ours, "cumulative", top))
        print(f"\n-- top {top} by cumulative CPU, driftwarden's own functions --")
        print(stats_table(ours, "cumulative", top, "driftwarden/"))
        print(f"\n-- top {top} by own (tottime) CPU, driftwarden side --")
        print(stats_table(ours, "tottime", top))
    if theirs is not None:
        print(f"\n-- top {top} by cumulative CPU, sandbox side: moto's handlers --")
        print(stats_table(theirs, "cumulative", top, "moto/"))


# --------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientBuild:
    """A fresh plan taken apart: every client built first (no call made), then the plan."""

    clients: int
    seconds: float
    gc_seconds: float
    plan: Pass


def plan_with_prebuilt_clients(
    sandbox: Sandbox, validation: ValidationResult, resources: Sequence[Resource], providers: Mapping[str, Provider]
) -> ClientBuild:
    """On fresh `AwsSessions`, build the clients `observe` will ask for, in its order, then plan.

    Building covers botocore sessions, service models and client classes (AssumeRole is
    deferred to the first call); the plan after it pays AssumeRole, first-call costs and new
    connections. Together they show what a fresh plan pays over a warm one, and where.
    """
    wanted: list[tuple[AccountRef, str, str]] = []
    global_done: set[tuple[str, str]] = set()
    for place in places_of(resources):
        for provider in providers.values():
            if provider.global_service:
                if (place.account.id, provider.type) in global_done:
                    continue
                global_done.add((place.account.id, provider.type))
            wanted.append((account_ref(place.account), place.region, provider.service))
    observer = CountingObserver()
    with new_sessions(sandbox, observer) as sessions:
        with timed_phases(()) as phases:
            start = time.perf_counter()
            built = {id(sessions.client(ref, region, service)) for ref, region, service in wanted}
            seconds = time.perf_counter() - start
        planned = run_pass("plan, clients prebuilt", lambda: do_plan(validation, sessions), observer)
    return ClientBuild(len(built), seconds, phases.gc_seconds, planned)


@dataclass
class SizeResult:
    shape: Shape
    resources: int
    validate_seconds: float
    apply: Pass
    # The run with the median wall time of `--repeat` runs; all their times in `*_runs`.
    plan: Pass
    warm: Pass | None
    plan_runs: list[float]
    warm_runs: list[float]
    reads: ReadBreakdown
    peak_rss: float
    current_rss: float
    clients: ClientBuild
    validation: ValidationResult = field(repr=False)


def plan_problems(result: PassResult) -> list[str]:
    plan = result.plan
    if plan is None:
        return ["no plan was made (invalid revision?)"]
    lines = [f"error: {e.key}: {e.message}" for e in plan.errors]
    for change in plan.changes[:10]:
        paths = ", ".join(d.path for d in change.diff[:4])
        lines.append(f"change: {change.action} {change.key} ({change.reason}) {paths}")
    if len(plan.changes) > 10:
        lines.append(f"... and {len(plan.changes) - 10} more changes")
    return lines


def apply_problems(result: PassResult) -> list[str]:
    lines = plan_problems(result) if result.plan and result.plan.errors else []
    failed = [o for o in result.outcomes if o.result != "applied"]
    lines += [f"{o.result}: {o.change.key}: {o.message}" for o in failed[:10]]
    if len(failed) > 10:
        lines.append(f"... and {len(failed) - 10} more outcomes not applied")
    return lines


def runs(times: Sequence[float]) -> str:
    """`` (median of 3: 7.9, 8.1, 9.0 s)`` for repeated runs, nothing for a single one."""
    if len(times) < 2:
        return ""
    return f" (median of {len(times)}: {', '.join(f'{t:.2f}' for t in sorted(times))} s)"


def print_phases(label: str, measured: Pass) -> None:
    spent = measured.phases.seconds
    inside = sum(spent.values())
    parts = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in sorted(spent.items(), key=lambda kv: -kv[1]) if seconds >= 0.005)
    print(f"  {label} split: {parts}; rest {max(measured.seconds - inside, 0):.2f} s; "
          f"GC pauses within: {measured.phases.gc_seconds:.2f} s ({measured.phases.full_collections} full)")


def print_size(size: SizeResult, providers: Mapping[str, Provider]) -> None:
    shape = size.shape
    print(f"\n== {shape.clusters} clusters, {shape.clusters * DEPLOYMENTS_PER_CLUSTER} deployments: "
          f"{shape.accounts} account(s) x {shape.regions} region(s) = {shape.places} place(s), "
          f"{shape.nodegroups} node groups, {size.resources} AWS resources ==")
    print(f"validate: {size.validate_seconds:.2f} s (in-process, not part of the passes below)")
    apply = size.apply
    created = Counter(o.result for o in apply.result.outcomes)
    print(f"first apply: {apply.seconds:.2f} s, {apply.total_calls} calls ({apply.retries} retries), "
          f"outcomes {dict(created)}")
    print_phases("apply", apply)
    for line in apply_problems(apply.result):
        print(f"  WARNING apply: {line}")
    mutating = sum(n for (service, operation), n in apply.calls.items() if is_mutating(service, operation))
    print(f"  apply calls: {mutating} mutating, {apply.total_calls - mutating} reads/AssumeRole; "
          f"{apply.total_calls / max(size.resources, 1):.1f} calls per resource")

    plan = size.plan
    print(f"no-change plan (fresh sessions): {plan.seconds:.2f} s{runs(size.plan_runs)}, {plan.total_calls} calls "
          f"({plan.retries} retries), {plan.total_calls / max(size.resources, 1):.2f} calls per resource")
    print_phases("plan", plan)
    problems = plan_problems(plan.result)
    if problems:
        print(f"  WARNING: the plan right after apply is not empty ({len(problems)} lines):")
        for line in problems:
            print(f"    {line}")
    else:
        unchanged = len(plan.result.plan.unchanged) if plan.result.plan else 0
        print(f"  no changes, no errors ({unchanged} resources unchanged)")
    reads, labels = classify(plan.calls, shape)
    types, regional, global_ = listing_units(providers, shape)
    print(f"  list/describe calls excl. per-cluster reads: {reads.excluding_eks} for {types} types x "
          f"{shape.accounts} account(s) x {shape.regions} region(s): {reads.listings} listings "
          f"(one per type and place would be {regional} regional + {global_} global; the rest are "
          f"AssumeRole, further pages and repeated listings) + {reads.per_resource} per-resource reads; "
          f"per-cluster reads (EKS, VPC attributes): {reads.eks_per_cluster} ({shape.clusters} clusters, "
          f"{shape.nodegroups} node groups)")
    if reads.growing:
        worst = ", ".join(f"{s}:{o} {n}" for (s, o), n in sorted(reads.growing.items(), key=lambda kv: -kv[1]))
        print(f"  WARNING: calls growing with the number of resources: {worst}")
    print("  calls by (service, operation):")
    width = max((len(f"{s}:{o}") for s, o in plan.calls), default=10)
    for (service, operation), count in sorted(plan.calls.items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"    {f'{service}:{operation}':<{width}}  {count:>6}  {labels[(service, operation)]}")
    built = size.clients
    print(f"  the same on fresh sessions, taken apart: building its {built.clients} clients first (sessions, "
          f"service models; no call) {built.seconds:.2f} s (GC pauses within {built.gc_seconds:.2f} s), "
          f"then the plan {built.plan.seconds:.2f} s (GC {built.plan.phases.gc_seconds:.2f} s)")
    if size.warm is not None:
        warm = size.warm
        note = "" if not plan_problems(warm.result) else " (NOT empty)"
        print(f"second no-change plan (warm clients): {warm.seconds:.2f} s{runs(size.warm_runs)}, "
              f"{warm.total_calls} calls{note}")
        print_phases("warm plan", warm)
    print(f"peak RSS {size.peak_rss:.0f} MiB, current RSS {size.current_rss:.0f} MiB (this process, moto's state included)")


def print_table(results: Sequence[SizeResult]) -> None:
    header = ("clusters", "resources", "apply s", "apply calls", "plan s", "plan s range", "plan GC s", "plan calls",
              "warm plan s", "reads excl. per-cluster", "listings", "per-resource", "per-cluster reads", "peak RSS MiB")
    rows = []
    for r in results:
        rows.append((
            str(r.shape.clusters),
            str(r.resources),
            f"{r.apply.seconds:.1f}",
            str(r.apply.total_calls),
            f"{r.plan.seconds:.2f}",
            f"{min(r.plan_runs):.2f}-{max(r.plan_runs):.2f}",
            f"{r.plan.phases.gc_seconds:.2f}",
            str(r.plan.total_calls),
            f"{r.warm.seconds:.2f}" if r.warm else "-",
            str(r.reads.excluding_eks),
            str(r.reads.listings),
            str(r.reads.per_resource),
            str(r.reads.eks_per_cluster),
            f"{r.peak_rss:.0f}",
        ))
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    print("\n== summary ==")
    print("  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True)))
    for row in rows:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
    print("(plan calls = listings + per-resource + per-cluster reads. listings: STS and IAM per account, one "
          "paginated listing per type and place, so they follow places, not resources; per-resource: "
          "reads made once per resource, target 0; per-cluster reads: EKS per cluster and node group, and the "
          "two DNS attributes of each cluster VPC, which AWS offers no batch for)")
    print("\ntargets (printed, never asserted):")
    largest = max(results, key=lambda r: r.shape.clusters)
    at_target = [r for r in results if r.shape.clusters == PLAN_TARGET_CLUSTERS]
    if at_target:
        r = at_target[0]
        verdict = "met" if r.plan.seconds <= PLAN_TARGET_SECONDS else "MISSED"
        warm = f", {r.warm.seconds:.2f} s warm" if r.warm else ""
        print(f"  no-change plan of {PLAN_TARGET_CLUSTERS} clusters <= {PLAN_TARGET_SECONDS:.0f} s: "
              f"{r.plan.seconds:.2f} s with fresh sessions{runs(r.plan_runs)}{warm} -> {verdict}")
    else:
        print(f"  no-change plan of {PLAN_TARGET_CLUSTERS} clusters <= {PLAN_TARGET_SECONDS:.0f} s: not run "
              f"(largest size {largest.shape.clusters}: {largest.plan.seconds:.2f} s)")
    growing = {key for r in results for key in r.reads.growing}
    verdict = "met" if not growing else "MISSED"
    detail = ", ".join(f"{s}:{o}" for s, o in sorted(growing)) or "none"
    per_resource = ", ".join(f"{r.reads.per_resource} of {r.plan.total_calls}" for r in results)
    print(f"  read calls independent of resource count (excl. per-cluster reads): per-resource reads "
          f"{per_resource} plan calls; operations: {detail} -> {verdict}")
    empty = all(not plan_problems(r.plan.result) for r in results)
    print(f"  plan right after apply is empty: {'met' if empty else 'MISSED'}")


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def parse_sizes(text: str) -> list[int]:
    sizes = [int(part) for part in text.split(",") if part.strip()]
    if not sizes or any(n < 1 for n in sizes):
        raise argparse.ArgumentTypeError("sizes must be positive integers, e.g. 1,10,100")
    return sizes


def measure_size(
    clusters: int,
    root: Path,
    sandbox: Sandbox,
    providers: Mapping[str, Provider],
    *,
    warm_plan: bool = True,
    freeze: bool = False,
    repeat: int = 1,
) -> SizeResult:
    platform_dir = root / f"platform-{clusters}"
    shape = write_platform(platform_dir, clusters)
    start = time.perf_counter()
    # workers=1: no process pool forked from a process whose moto threads are running.
    validation = validate_paths([platform_dir], workers=1)
    validate_seconds = time.perf_counter() - start
    if not validation.valid:
        raise SystemExit(f"generated manifests are invalid: {[str(p) for p in validation.errors][:5]}")
    for warning in validation.warnings[:3]:
        print(f"  (validation warning: {warning})")

    gc.unfreeze()
    sandbox.reset()
    gc.collect()
    observer = CountingObserver()
    with new_sessions(sandbox, observer) as sessions:
        applied = run_pass("apply", lambda: do_apply(validation, sessions), observer)
    if freeze:
        # Move everything alive now (mostly moto's state) out of the collector's reach, as if
        # the simulated AWS ran in another process.
        gc.collect()
        gc.freeze()
    fresh: list[Pass] = []
    warm: list[Pass] = []
    for _ in range(repeat):
        with new_sessions(sandbox, observer) as sessions:
            fresh.append(run_pass("plan", lambda: do_plan(validation, sessions), observer))
            if warm_plan:
                warm.append(run_pass("warm plan", lambda: do_plan(validation, sessions), observer))
    if len({tuple(sorted(p.calls.items())) for p in fresh}) > 1:
        print("  note: the repeated fresh plans did not make the same calls")
    planned = median_pass(fresh)
    reads, _labels = classify(planned.calls, shape)
    clients = plan_with_prebuilt_clients(sandbox, validation, planned.result.resources, providers)
    peak, current = rss_mib()
    return SizeResult(
        shape, len(planned.result.resources), validate_seconds, applied, planned, median_pass(warm) if warm else None,
        [p.seconds for p in fresh], [p.seconds for p in warm], reads, peak, current, clients, validation,
    )


def median_pass(passes: Sequence[Pass]) -> Pass:
    """The pass with the median wall time (the upper one of an even number)."""
    return sorted(passes, key=lambda p: p.seconds)[len(passes) // 2]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--sizes", type=parse_sizes, default=[1, 10, 100],
                        help="numbers of clusters, comma-separated (default 1,10,100)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="no-change plans (fresh, and warm after each) per size; the median is reported (default 3)")
    parser.add_argument("--no-warm-plan", action="store_true", help="skip the second plan on warm clients")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile (every thread) a no-change plan of the largest size")
    parser.add_argument("--top", type=int, default=15, help="entries of each profile listing (default 15)")
    parser.add_argument("--gc-freeze", action="store_true",
                        help="gc.freeze() after each apply, so that collections skip the sandbox's state "
                             "(approximates a simulated AWS in another process)")
    parser.add_argument("--keep", type=Path, help="generate the manifests here and keep them (must not exist)")
    args = parser.parse_args(argv)

    os.environ.setdefault(SECRET_ENV, "bench-token")
    providers = default_providers()
    print(f"driftwarden reconcile benchmark: python {platform.python_version()}, boto3 {boto3.__version__}, "
          f"botocore {botocore.__version__}, {os.cpu_count()} CPU(s); sizes {args.sizes}; "
          f"{len(providers)} resource types; gc.freeze after apply: {'yes' if args.gc_freeze else 'no'}")
    if args.keep is not None:
        args.keep.mkdir(parents=True)
        root, cleanup = args.keep, False
    else:
        root, cleanup = Path(tempfile.mkdtemp(prefix="dw-bench-reconcile-")), True
    results: list[SizeResult] = []
    try:
        with Sandbox() as sandbox:
            sandbox.apply(os.environ)
            print(f"sandbox: moto {_moto_version()} at {sandbox.endpoint_url} (in this process)")
            for clusters in args.sizes:
                size = measure_size(clusters, root, sandbox, providers,
                                    warm_plan=not args.no_warm_plan, freeze=args.gc_freeze,
                                    repeat=max(args.repeat, 1))
                print_size(size, providers)
                results.append(size)
                sys.stdout.flush()
            print_table(results)
            if args.profile:
                largest = max(results, key=lambda r: r.shape.clusters)
                if results[-1] is not largest:
                    # The sandbox holds the last size only: build the largest one again.
                    print(f"\n(--profile: re-applying {largest.shape.clusters} clusters first)")
                    largest = measure_size(largest.shape.clusters, root / "profile", sandbox, providers,
                                           warm_plan=False, freeze=args.gc_freeze)
                print_profile(largest.validation, sandbox, largest.shape.clusters, args.top)
    finally:
        if cleanup:
            shutil.rmtree(root, ignore_errors=True)
    return 0


def _moto_version() -> str:
    try:
        import moto
    except ImportError:
        return "?"
    return str(getattr(moto, "__version__", "?"))


if __name__ == "__main__":
    sys.exit(main())
