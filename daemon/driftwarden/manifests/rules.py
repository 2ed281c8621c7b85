"""The checks on checked documents: each object on its own, and across manifests.

Owns the documents after the per-file checks (`CheckedDocument`, `CheckedFile`) and every
rule that needs more than the schema: a Cluster's node pools, zones and network, overlaps and
shared ExternalIds between Clusters, a Deployment against its Cluster, pool capacity across
Deployments. Each check returns its problems; `validation.validate_checked` runs them in order.

What it must not do: read or parse files, know about schemas or the cache (that is
`validation.py` and `cache.py`), talk to AWS or Git, or raise for bad input.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from driftwarden.manifests.discovery import Document, source_pointer
from driftwarden.manifests.model import OPT_IN_REGIONS, Cluster, Deployment
from driftwarden.manifests.problems import Problem

MAX_NODE_POOLS = 11
RFC1918 = tuple(ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))


@dataclass(frozen=True)
class CheckedDocument:
    """One document after the per-file checks; `spec` is None when it is not valid."""

    file: str
    index: int
    kind: str | None
    name: str | None
    line: int
    positions: Mapping[str, tuple[int, int]]
    metadata: dict[str, Any] | None = None
    spec: dict[str, Any] | None = None
    # What the author wrote themselves (before defaults), for checks that care.
    authored_keys: frozenset[str] = frozenset()
    # Set for a document converted from an Astro CLI file (see `Document.source_pointers`).
    source_pointers: Mapping[str, str] | None = None

    def position(self, pointer: str) -> tuple[int, int]:
        return Document(self.file, self.index, None, self.positions).position(pointer)

    def problem(self, rule: str, message: str, pointer: str, *, warning: bool = False) -> Problem:
        line, column = self.position(pointer)
        make = Problem.warning if warning else Problem.error
        return make(
            self.file,
            rule,
            message,
            line=line,
            column=column,
            pointer=source_pointer(self.source_pointers, pointer),
            kind=self.kind,
            name=self.name,
        )


@dataclass(frozen=True)
class CheckedFile:
    """One file after the per-file checks: what the validation cache keeps per content hash."""

    file: str
    documents: tuple[CheckedDocument, ...]
    problems: tuple[Problem, ...]


# --- across manifests of a kind -----------------------------------------------------------------


def unique(documents: Sequence[CheckedDocument], kind: str, problems: list[Problem]) -> list[CheckedDocument]:
    """Documents of `kind`, the first of each name only; later ones are duplicate-name errors."""
    first: dict[str, CheckedDocument] = {}
    kept = []
    for doc in documents:
        if doc.kind != kind or doc.spec is None:
            continue
        name = doc.name or ""
        if name in first:
            other = first[name]
            problems.append(
                doc.problem(
                    "manifest.duplicate-name",
                    f"{kind} {name!r} is already declared in {other.file}:{other.position('/metadata/name')[0]}; names are unique per kind",
                    "/metadata/name",
                )
            )
            continue
        first[name] = doc
        kept.append(doc)
    return kept


# --- Cluster checks -----------------------------------------------------------------------------


def check_cluster(doc: CheckedDocument) -> list[Problem]:
    spec = doc.spec
    assert spec is not None
    found: list[Problem] = []
    pools = spec["nodePools"]
    if len(pools) > MAX_NODE_POOLS:
        found.append(
            doc.problem(
                "cluster.node-pool-count",
                f"{len(pools)} node pools; at most {MAX_NODE_POOLS} (one default and 10 more)",
                "/spec/nodePools",
            )
        )
    defaults = [i for i, pool in enumerate(pools) if pool.get("isDefault")]
    if len(defaults) != 1:
        pointer = f"/spec/nodePools/{defaults[1]}/isDefault" if len(defaults) > 1 else "/spec/nodePools"
        found.append(
            doc.problem(
                "cluster.default-pool",
                f"exactly one node pool must have isDefault: true; found {len(defaults)}",
                pointer,
            )
        )
    names: dict[str, int] = {}
    for i, pool in enumerate(pools):
        if pool["name"] in names:
            found.append(
                doc.problem(
                    "cluster.pool-name",
                    f"node pool name {pool['name']!r} is used twice (also item {names[pool['name']]})",
                    f"/spec/nodePools/{i}/name",
                )
            )
        names.setdefault(pool["name"], i)
        if pool["minNodeCount"] > pool["maxNodeCount"]:
            found.append(
                doc.problem(
                    "cluster.pool-size",
                    f"minNodeCount {pool['minNodeCount']} is greater than maxNodeCount {pool['maxNodeCount']}",
                    f"/spec/nodePools/{i}/minNodeCount",
                )
            )
    region = spec["region"]
    for i, zone in enumerate(spec["availabilityZones"]):
        if not zone.startswith(region) or len(zone) != len(region) + 1:
            found.append(
                doc.problem(
                    "cluster.availability-zone",
                    f"availability zone {zone!r} is not in region {region}",
                    f"/spec/availabilityZones/{i}",
                )
            )
    if region in OPT_IN_REGIONS:
        found.append(
            doc.problem(
                "cluster.opt-in-region",
                f"{region} is an opt-in region: it must be enabled in account {spec['account']['id']} before the cluster can be created",
                "/spec/region",
                warning=True,
            )
        )
    if "network" not in spec:
        found.extend(_check_cidr(doc, spec["vpcSubnetRange"]))
    return found


def _check_cidr(doc: CheckedDocument, text: str) -> list[Problem]:
    pointer = "/spec/vpcSubnetRange"
    try:
        network = ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        return [doc.problem("cluster.cidr", f"{text!r} is not a valid network: {exc}", pointer)]
    problems = []
    private = isinstance(network, ipaddress.IPv4Network) and any(network.subnet_of(block) for block in RFC1918)
    if not private:
        problems.append(
            doc.problem(
                "cluster.cidr",
                f"{text} is not private address space; use a range inside 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16 (RFC 1918)",
                pointer,
            )
        )
    if not 16 <= network.prefixlen <= 20:
        problems.append(
            doc.problem("cluster.cidr", f"prefix /{network.prefixlen} is outside /16 to /20", pointer)
        )
    return problems


def check_cluster_overlaps(docs: Sequence[CheckedDocument]) -> list[Problem]:
    by_place: dict[tuple[str, str], list[tuple[CheckedDocument, Any]]] = defaultdict(list)
    problems = []
    for doc in docs:
        spec = doc.spec
        assert spec is not None
        if "network" in spec:
            continue
        try:
            network = ipaddress.ip_network(spec["vpcSubnetRange"])
        except ValueError:
            continue
        place = (spec["account"]["id"], spec["region"])
        for other, other_network in by_place[place]:
            if network.overlaps(other_network):
                problems.append(
                    doc.problem(
                        "cluster.cidr-overlap",
                        f"vpcSubnetRange {network} overlaps {other_network} of Cluster {other.name!r} "
                        f"({other.file}:{other.position('/spec/vpcSubnetRange')[0]}) in the same account and region",
                        "/spec/vpcSubnetRange",
                    )
                )
        by_place[place].append((doc, network))
    return problems


def check_shared_external_ids(docs: Sequence[CheckedDocument]) -> list[Problem]:
    first: dict[str, CheckedDocument] = {}
    problems = []
    for doc in docs:
        assert doc.spec is not None
        external_id = doc.spec["account"]["externalId"]
        if external_id in first:
            problems.append(
                doc.problem(
                    "cluster.shared-external-id",
                    f"ExternalId is also used by Cluster {first[external_id].name!r}; give each cluster its own",
                    "/spec/account/externalId",
                    warning=True,
                )
            )
        first.setdefault(external_id, doc)
    return problems


# --- Deployment checks --------------------------------------------------------------------------


def check_deployment(doc: CheckedDocument, cluster: Cluster | None, cluster_declared: bool) -> list[Problem]:
    spec = doc.spec
    assert spec is not None
    found: list[Problem] = []
    executor = spec["executor"]
    queues = spec.get("workerQueues", [])
    if executor == "KUBERNETES" and "workerQueues" in doc.authored_keys and queues:
        found.append(
            doc.problem(
                "deployment.queues-with-kubernetes",
                "workerQueues are only for the CELERY executor; the KUBERNETES executor runs each task in its own pod (use taskPodNodePool)",
                "/spec/workerQueues",
            )
        )
    if executor == "CELERY" and "taskPodNodePool" in doc.authored_keys:
        found.append(
            doc.problem(
                "deployment.task-pool-with-celery",
                "taskPodNodePool is only for the KUBERNETES executor; CELERY workers run on their queue's workerType",
                "/spec/taskPodNodePool",
            )
        )
    if executor == "CELERY" and queues:
        names: dict[str, int] = {}
        for i, queue in enumerate(queues):
            if queue["name"] in names:
                found.append(
                    doc.problem("deployment.queue-name", f"queue name {queue['name']!r} is used twice", f"/spec/workerQueues/{i}/name")
                )
            names.setdefault(queue["name"], i)
            if queue.get("minWorkerCount", 0) > queue.get("maxWorkerCount", 10):
                found.append(
                    doc.problem(
                        "deployment.queue-size",
                        f"minWorkerCount {queue['minWorkerCount']} is greater than maxWorkerCount {queue['maxWorkerCount']}",
                        f"/spec/workerQueues/{i}/minWorkerCount",
                    )
                )
        if "default" not in names:
            found.append(
                doc.problem(
                    "deployment.default-queue",
                    "when workerQueues are given, one of them must be named 'default'",
                    "/spec/workerQueues",
                )
            )
    seen_keys: dict[str, int] = {}
    for i, variable in enumerate(spec.get("environmentVariables", [])):
        if variable["key"] in seen_keys:
            found.append(
                doc.problem(
                    "deployment.variable-key",
                    f"environment variable {variable['key']!r} is set twice (also item {seen_keys[variable['key']]})",
                    f"/spec/environmentVariables/{i}/key",
                )
            )
        seen_keys.setdefault(variable["key"], i)
    cluster_name = spec["cluster"]
    if cluster is None:
        if cluster_declared:
            found.append(
                doc.problem(
                    "deployment.cluster-invalid",
                    f"Cluster {cluster_name!r} is invalid; fix it first (this Deployment is checked against it)",
                    "/spec/cluster",
                )
            )
        else:
            found.append(
                doc.problem("deployment.cluster-missing", f"no Cluster named {cluster_name!r} is declared", "/spec/cluster")
            )
        return found
    if cluster.workspaces and spec["workspace"] not in cluster.workspaces:
        found.append(
            doc.problem(
                "deployment.workspace",
                f"workspace {spec['workspace']!r} may not place deployments on Cluster {cluster.name!r}; allowed: {', '.join(cluster.workspaces)}",
                "/spec/workspace",
            )
        )
    pool_types = sorted({pool.node_instance_type for pool in cluster.node_pools})
    if executor == "CELERY":
        for i, queue in enumerate(queues):
            worker_type = queue.get("workerType")
            if worker_type and worker_type not in pool_types:
                found.append(
                    doc.problem(
                        "deployment.worker-type",
                        f"workerType {worker_type!r} is not the instance type of any node pool of Cluster {cluster.name!r}; available: {', '.join(pool_types)}",
                        f"/spec/workerQueues/{i}/workerType",
                    )
                )
    task_pool = spec.get("taskPodNodePool")
    if executor == "KUBERNETES" and task_pool and cluster.pool(task_pool) is None:
        found.append(
            doc.problem(
                "deployment.task-pod-pool",
                f"Cluster {cluster.name!r} has no node pool {task_pool!r}; pools: {', '.join(p.name for p in cluster.node_pools)}",
                "/spec/taskPodNodePool",
            )
        )
    return found


def check_pool_capacity(
    deployments: Sequence[Deployment], clusters: Mapping[str, Cluster], docs: Mapping[str, CheckedDocument]
) -> list[Problem]:
    """Warn when the queues placed on a pool could ask for more nodes than it may have."""
    demand: dict[tuple[str, str], list[tuple[Deployment, int]]] = defaultdict(list)
    for deployment in deployments:
        for i, queue in enumerate(deployment.worker_queues):
            demand[(deployment.cluster, queue.worker_type)].append((deployment, i))
    problems = []
    for (cluster_name, worker_type), users in sorted(demand.items()):
        cluster = clusters[cluster_name]
        pools = [p for p in cluster.node_pools if p.node_instance_type == worker_type]
        capacity = sum(p.max_node_count for p in pools)
        wanted = sum(d.worker_queues[i].max_worker_count for d, i in users)
        if wanted > capacity:
            deployment, index = users[-1]
            doc = docs[deployment.name]
            problems.append(
                doc.problem(
                    "deployment.pool-capacity",
                    f"queues on {worker_type} in Cluster {cluster_name!r} may use up to {wanted} workers, "
                    f"but its node pool(s) {', '.join(p.name for p in pools)} allow at most {capacity} nodes",
                    f"/spec/workerQueues/{index}/maxWorkerCount",
                    warning=True,
                )
            )
    return problems
