"""The desired state: typed, frozen Cluster and Deployment objects with defaults applied.

Two steps live here, both pure:

* `normalize_spec(kind, spec)` takes a schema-valid spec (defaults already filled in from the
  JSON Schemas) and puts values into one canonical spelling: executor `CeleryExecutor` ->
  `CELERY`, tag maps with string values, sorted label maps, region-derived availability zones.
  Normalising a normalised spec changes nothing.
* `cluster_from_spec` / `deployment_from_spec` turn canonical specs into frozen objects that
  the rest of driftwarden (graph, plan, status) consumes. A Deployment is built against its
  Cluster, because some of its defaults are the cluster's (the default node pool).

What it must not do: read files, validate (that is `validation.py` and `rules.py`), or know about AWS APIs.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

API_VERSION = "driftwarden/v1"
KINDS = ("Cluster", "Deployment")

SUSPEND_ANNOTATION = "driftwarden/suspend"
DRIFT_ANNOTATION = "driftwarden/drift"

OPT_IN_REGIONS = frozenset({"af-south-1", "ap-east-1", "me-south-1"})

# The first two availability zones of each supported region. Most regions start at "a";
# ap-northeast-1 has no "b" zone for accounts created since 2012.
_AZ_LETTERS: Mapping[str, tuple[str, str]] = {"ap-northeast-1": ("a", "c")}

Executor = Literal["CELERY", "KUBERNETES"]
DriftMode = Literal["enforce", "warn"]
DeletionPolicy = Literal["Retain", "Delete"]
SecretKind = Literal["secretsManagerArn", "ssmParameter", "env"]
# The ways a secret variable's value can be given; a `valueFrom` names exactly one of them.
SECRET_KINDS: tuple[SecretKind, ...] = ("secretsManagerArn", "ssmParameter", "env")


class FrozenMap(Mapping[str, str]):
    """An immutable, hashable, ordered str -> str map (tags, labels)."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, str] | None = None) -> None:
        self._items: dict[str, str] = dict(sorted((items or {}).items()))

    def __getitem__(self, key: str) -> str:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(tuple(self._items.items()))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return dict(self._items) == dict(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"FrozenMap({self._items!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenMap, (self._items,))


@dataclass(frozen=True)
class Origin:
    """Where an object was declared; not part of its identity or equality."""

    file: str
    line: int
    index: int = 0


@dataclass(frozen=True)
class ObjectMeta:
    name: str
    labels: FrozenMap = field(default_factory=FrozenMap)
    annotations: FrozenMap = field(default_factory=FrozenMap)

    @property
    def suspended(self) -> bool:
        return self.annotations.get(SUSPEND_ANNOTATION, "false") == "true"

    @property
    def drift_mode(self) -> DriftMode:
        return "warn" if self.annotations.get(DRIFT_ANNOTATION) == "warn" else "enforce"


@dataclass(frozen=True)
class Account:
    id: str
    role_name: str
    external_id: str

    @property
    def role_arn(self) -> str:
        return f"arn:aws:iam::{self.id}:role/{self.role_name}"


@dataclass(frozen=True)
class StaticNetwork:
    vpc_id: str
    private_subnet_ids: tuple[str, ...]
    public_subnet_ids: tuple[str, ...]


@dataclass(frozen=True)
class Taint:
    key: str
    value: str
    effect: str


@dataclass(frozen=True)
class NodePool:
    name: str
    node_instance_type: str
    min_node_count: int
    max_node_count: int
    is_default: bool
    capacity_type: Literal["ON_DEMAND", "SPOT"]
    labels: FrozenMap = field(default_factory=FrozenMap)
    taints: tuple[Taint, ...] = ()


@dataclass(frozen=True)
class Database:
    engine_version: str
    multi_az: bool
    allocated_storage_gib: int
    deletion_protection: bool


@dataclass(frozen=True)
class Cluster:
    metadata: ObjectMeta
    account: Account
    region: str
    vpc_subnet_range: str
    network: StaticNetwork | None
    availability_zones: tuple[str, ...]
    nat_gateways: Literal["perAz", "single"]
    kubernetes_version: str
    node_pools: tuple[NodePool, ...]
    db_instance_type: str
    database: Database
    tags: FrozenMap
    workspaces: tuple[str, ...]
    deletion_policy: DeletionPolicy
    origin: Origin | None = field(default=None, compare=False, repr=False)

    kind = "Cluster"

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def default_pool(self) -> NodePool:
        return next(pool for pool in self.node_pools if pool.is_default)

    def pool(self, name: str) -> NodePool | None:
        return next((pool for pool in self.node_pools if pool.name == name), None)


@dataclass(frozen=True)
class Scheduler:
    au: int
    replicas: int

    # One Astronomer Unit is 0.1 CPU and 0.375 GiB (5 AU = 0.5 CPU, 1.88 GiB).
    @property
    def cpu(self) -> float:
        return round(self.au * 0.1, 2)

    @property
    def memory_gib(self) -> float:
        return round(self.au * 0.375, 2)


@dataclass(frozen=True)
class WorkerQueue:
    name: str
    worker_type: str
    min_worker_count: int
    max_worker_count: int
    worker_concurrency: int


@dataclass(frozen=True)
class SecretSource:
    """Where a secret variable's value is read at apply time, in the control account."""

    kind: SecretKind
    ref: str
    json_key: str | None = None


@dataclass(frozen=True)
class EnvironmentVariable:
    key: str
    value: str | None = None
    secret: SecretSource | None = None

    @property
    def is_secret(self) -> bool:
        return self.secret is not None


@dataclass(frozen=True)
class WorkloadIdentity:
    role_arn: str | None
    policy_arns: tuple[str, ...] = ()


@dataclass(frozen=True)
class Deployment:
    metadata: ObjectMeta
    cluster: str
    workspace: str
    description: str
    runtime_version: str
    executor: Executor
    scheduler: Scheduler
    worker_queues: tuple[WorkerQueue, ...]
    task_pod_node_pool: str | None
    environment_variables: tuple[EnvironmentVariable, ...]
    alert_emails: tuple[str, ...]
    dag_deploy_enabled: bool
    ci_cd_enforced: bool
    workload_identity: WorkloadIdentity
    deletion_policy: DeletionPolicy
    origin: Origin | None = field(default=None, compare=False, repr=False)

    kind = "Deployment"

    @property
    def name(self) -> str:
        return self.metadata.name


Manifest = Cluster | Deployment


# --- normalisation (dict -> canonical dict) -------------------------------------------------


def normalize_executor(value: str) -> Executor:
    """`celery`, `Celery`, `CeleryExecutor`, ... -> `CELERY` (and the same for Kubernetes)."""
    lowered = value.strip().lower()
    if lowered.endswith("executor"):
        lowered = lowered[: -len("executor")]
    if lowered == "celery":
        return "CELERY"
    if lowered == "kubernetes":
        return "KUBERNETES"
    raise ValueError(f"unknown executor {value!r}")


def default_availability_zones(region: str) -> list[str]:
    letters = _AZ_LETTERS.get(region, ("a", "b"))
    return [f"{region}{letter}" for letter in letters]


def _string_map(value: Mapping[str, Any] | None) -> dict[str, str]:
    return {str(k): _scalar_text(v) for k, v in sorted((value or {}).items())}


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def normalize_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "name": metadata["name"],
        "labels": _string_map(metadata.get("labels")),
        "annotations": _string_map(metadata.get("annotations")),
    }


def prepare_defaults(kind: str, document: Mapping[str, Any]) -> Mapping[str, Any]:
    """Defaults that depend on what the author wrote, applied before the schema's own.

    A cluster with a single node pool: that pool is the default pool even when the author
    did not say `isDefault: true` (the schema default `false` would otherwise make it a
    cluster without a default pool).
    """
    spec = document.get("spec")
    if kind != "Cluster" or not isinstance(spec, Mapping):
        return document
    pools = spec.get("nodePools")
    if isinstance(pools, list) and len(pools) == 1 and isinstance(pools[0], Mapping) and "isDefault" not in pools[0]:
        return {**document, "spec": {**spec, "nodePools": [{**pools[0], "isDefault": True}]}}
    return document


def normalize_cluster_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Canonical form of a schema-valid Cluster spec (defaults already applied)."""
    out = dict(spec)
    out["account"] = dict(spec["account"])
    out["account"]["id"] = str(spec["account"]["id"])
    region = spec["region"]
    out["availabilityZones"] = list(spec.get("availabilityZones") or default_availability_zones(region))
    pools = [dict(pool) for pool in spec["nodePools"]]
    for pool in pools:
        pool["labels"] = _string_map(pool.get("labels"))
        pool["taints"] = [dict(t) for t in pool.get("taints", [])]
    out["nodePools"] = pools
    out["tags"] = _string_map(spec.get("tags"))
    out["workspaces"] = list(spec.get("workspaces", []))
    if spec.get("network"):
        out["network"] = {k: (list(v) if isinstance(v, list) else v) for k, v in spec["network"].items()}
    return out


def normalize_deployment_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Canonical form of a schema-valid Deployment spec (defaults already applied)."""
    out = dict(spec)
    out["executor"] = normalize_executor(spec["executor"])
    out["scheduler"] = dict(spec["scheduler"])
    out["environmentVariables"] = [dict(v) for v in spec.get("environmentVariables", [])]
    out["alertEmails"] = list(spec.get("alertEmails", []))
    # Left out when not given: an empty list would not satisfy the schema (minItems 1), and
    # the default queue depends on the cluster, so `deployment_from_spec` supplies it.
    if "workerQueues" in spec:
        out["workerQueues"] = [dict(q) for q in spec["workerQueues"]]
    return out


def normalize_spec(kind: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    if kind == "Cluster":
        return normalize_cluster_spec(spec)
    return normalize_deployment_spec(spec)


# --- canonical dict -> frozen objects -------------------------------------------------------


def _meta(metadata: Mapping[str, Any]) -> ObjectMeta:
    return ObjectMeta(
        name=metadata["name"],
        labels=FrozenMap(metadata.get("labels")),
        annotations=FrozenMap(metadata.get("annotations")),
    )


def cluster_from_spec(metadata: Mapping[str, Any], spec: Mapping[str, Any], origin: Origin | None = None) -> Cluster:
    account = spec["account"]
    network = spec.get("network")
    database = spec["database"]
    return Cluster(
        metadata=_meta(metadata),
        account=Account(id=account["id"], role_name=account["roleName"], external_id=account["externalId"]),
        region=spec["region"],
        vpc_subnet_range=spec["vpcSubnetRange"],
        network=(
            StaticNetwork(
                vpc_id=network["vpcId"],
                private_subnet_ids=tuple(network["privateSubnetIds"]),
                public_subnet_ids=tuple(network["publicSubnetIds"]),
            )
            if network
            else None
        ),
        availability_zones=tuple(spec["availabilityZones"]),
        nat_gateways=spec["natGateways"],
        kubernetes_version=spec["kubernetesVersion"],
        node_pools=tuple(
            NodePool(
                name=pool["name"],
                node_instance_type=pool["nodeInstanceType"],
                min_node_count=pool["minNodeCount"],
                max_node_count=pool["maxNodeCount"],
                is_default=pool["isDefault"],
                capacity_type=pool["capacityType"],
                labels=FrozenMap(pool.get("labels")),
                taints=tuple(Taint(t["key"], str(t.get("value", "")), t["effect"]) for t in pool.get("taints", [])),
            )
            for pool in spec["nodePools"]
        ),
        db_instance_type=spec["dbInstanceType"],
        database=Database(
            engine_version=str(database["engineVersion"]),
            multi_az=database["multiAz"],
            allocated_storage_gib=database["allocatedStorageGiB"],
            deletion_protection=database["deletionProtection"],
        ),
        tags=FrozenMap(spec.get("tags")),
        workspaces=tuple(spec.get("workspaces", ())),
        deletion_policy=spec["deletionPolicy"],
        origin=origin,
    )


def _environment_variable(raw: Mapping[str, Any]) -> EnvironmentVariable:
    source = raw.get("valueFrom")
    if not source:
        return EnvironmentVariable(key=raw["key"], value=_scalar_text(raw.get("value")))
    kind = next(k for k in SECRET_KINDS if k in source)
    return EnvironmentVariable(
        key=raw["key"], secret=SecretSource(kind=kind, ref=source[kind], json_key=source.get("jsonKey"))
    )


def deployment_from_spec(
    metadata: Mapping[str, Any],
    spec: Mapping[str, Any],
    cluster: Cluster | None,
    origin: Origin | None = None,
) -> Deployment:
    """Build a Deployment; defaults that come from its cluster need `cluster`."""
    executor: Executor = normalize_executor(spec["executor"])
    default_type = cluster.default_pool.node_instance_type if cluster else ""
    if executor == "CELERY":
        raw_queues = spec.get("workerQueues") or [{"name": "default"}]
        queues = tuple(
            WorkerQueue(
                name=q["name"],
                worker_type=q.get("workerType") or default_type,
                min_worker_count=q.get("minWorkerCount", 0),
                max_worker_count=q.get("maxWorkerCount", 10),
                worker_concurrency=q.get("workerConcurrency", 16),
            )
            for q in raw_queues
        )
        task_pool = None
    else:
        queues = ()
        task_pool = spec.get("taskPodNodePool") or (cluster.default_pool.name if cluster else None)
    identity = spec.get("workloadIdentity") or {}
    return Deployment(
        metadata=_meta(metadata),
        cluster=spec["cluster"],
        workspace=spec["workspace"],
        description=spec.get("description", ""),
        runtime_version=spec["runtimeVersion"],
        executor=executor,
        scheduler=Scheduler(au=spec["scheduler"]["au"], replicas=spec["scheduler"]["replicas"]),
        worker_queues=queues,
        task_pod_node_pool=task_pool,
        environment_variables=tuple(_environment_variable(v) for v in spec.get("environmentVariables", ())),
        alert_emails=tuple(spec.get("alertEmails", ())),
        dag_deploy_enabled=spec["dagDeployEnabled"],
        ci_cd_enforced=spec["ciCdEnforced"],
        workload_identity=WorkloadIdentity(
            role_arn=identity.get("roleArn"), policy_arns=tuple(identity.get("policyArns", ()))
        ),
        deletion_policy=spec["deletionPolicy"],
        origin=origin,
    )
