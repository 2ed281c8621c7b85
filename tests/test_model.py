"""The desired-state model: canonical spellings, schema defaults, immutability, and stable normalisation."""

from __future__ import annotations

import dataclasses
import ipaddress
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from driftwarden.manifests.model import (
    API_VERSION,
    Cluster,
    Origin,
    cluster_from_spec,
    deployment_from_spec,
    normalize_executor,
    normalize_metadata,
    normalize_spec,
    prepare_defaults,
)
from driftwarden.manifests.validation import default_schemas, validate_documents

MINIMAL_CLUSTER = """\
apiVersion: driftwarden/v1
kind: Cluster
metadata:
  name: dev-use1
spec:
  account:
    id: "318574920163"
    externalId: dw-dev-use1-2b81c4
"""

MINIMAL_DEPLOYMENT = """\
apiVersion: driftwarden/v1
kind: Deployment
metadata:
  name: reporting
spec:
  cluster: dev-use1
  runtimeVersion: 12.1.0
"""


def load(*documents: str):
    result = validate_documents([("m.yaml", "---\n".join(documents).encode())])
    assert result.problems == (), [str(p) for p in result.problems]
    return result


# --- executor spellings ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "stored"),
    [
        ("celery", "CELERY"),
        ("Celery", "CELERY"),
        ("CELERY", "CELERY"),
        ("CeleryExecutor", "CELERY"),
        ("celeryexecutor", "CELERY"),
        ("kubernetesexecutor", "KUBERNETES"),
        ("KubernetesExecutor", "KUBERNETES"),
        ("kubernetes", "KUBERNETES"),
    ],
)
def test_executor_spellings_are_stored_canonically(written, stored):
    """Any letter case, with or without the Executor suffix, validates and is stored as CELERY or KUBERNETES."""
    assert normalize_executor(written) == stored
    deployment_yaml = MINIMAL_DEPLOYMENT + f"  executor: {written}\n"
    (deployment,) = load(MINIMAL_CLUSTER, deployment_yaml).deployments
    assert deployment.executor == stored


def test_unknown_executor_is_refused_by_the_normaliser():
    """An executor that is neither Celery nor Kubernetes raises instead of being guessed."""
    with pytest.raises(ValueError, match="LocalExecutor"):
        normalize_executor("LocalExecutor")


# --- defaults -------------------------------------------------------------------------------------


def test_minimal_cluster_gets_the_astro_hybrid_defaults():
    """A Cluster with only its account gets us-east-1, 172.20.0.0/20, one m5.xlarge pool of 2-20 and a protected multi-AZ db.m6g.large."""
    (cluster,) = load(MINIMAL_CLUSTER).clusters
    assert cluster.region == "us-east-1"
    assert cluster.vpc_subnet_range == "172.20.0.0/20"
    assert cluster.availability_zones == ("us-east-1a", "us-east-1b")
    assert cluster.network is None
    assert cluster.nat_gateways == "perAz"
    assert cluster.account.role_name == "driftwarden-remote-management"
    assert cluster.account.role_arn == "arn:aws:iam::318574920163:role/driftwarden-remote-management"
    (pool,) = cluster.node_pools
    assert (pool.name, pool.node_instance_type, pool.min_node_count, pool.max_node_count, pool.is_default) == (
        "default",
        "m5.xlarge",
        2,
        20,
        True,
    )
    assert pool.capacity_type == "ON_DEMAND"
    assert cluster.default_pool == pool
    assert cluster.db_instance_type == "db.m6g.large"
    assert (cluster.database.multi_az, cluster.database.deletion_protection) == (True, True)
    assert cluster.deletion_policy == "Retain"
    assert (cluster.tags, cluster.workspaces) == ({}, ())


def test_availability_zones_default_to_the_first_two_of_the_region():
    """Without availabilityZones a cluster uses its own region's first two zones (ap-northeast-1 has no b)."""
    tokyo = MINIMAL_CLUSTER + "  region: ap-northeast-1\n"
    (cluster,) = load(tokyo).clusters
    assert cluster.availability_zones == ("ap-northeast-1a", "ap-northeast-1c")


def test_minimal_deployment_gets_the_astro_defaults_on_its_clusters_default_pool():
    """A Deployment with only cluster and runtime gets CELERY, one default queue on the default pool's type (10 workers x 16) and a 5 AU scheduler."""
    cluster_yaml = MINIMAL_CLUSTER + (
        "  nodePools:\n"
        "    - {name: general, nodeInstanceType: m5.2xlarge}\n"
        "    - {name: main, nodeInstanceType: r5.2xlarge, isDefault: true}\n"
    )
    (deployment,) = load(cluster_yaml, MINIMAL_DEPLOYMENT).deployments
    assert deployment.executor == "CELERY"
    (queue,) = deployment.worker_queues
    assert (queue.name, queue.worker_type) == ("default", "r5.2xlarge")
    assert (queue.min_worker_count, queue.max_worker_count, queue.worker_concurrency) == (0, 10, 16)
    assert (deployment.scheduler.au, deployment.scheduler.replicas) == (5, 1)
    assert (deployment.scheduler.cpu, deployment.scheduler.memory_gib) == (0.5, 1.88)
    assert deployment.task_pod_node_pool is None
    assert deployment.workspace == "default"
    assert (deployment.dag_deploy_enabled, deployment.ci_cd_enforced) == (True, False)
    assert deployment.workload_identity.role_arn is None
    assert deployment.workload_identity.policy_arns == ()
    assert deployment.deletion_policy == "Retain"


def test_a_lone_node_pool_is_the_default_pool_without_saying_so():
    """A cluster with a single pool that omits isDefault treats it as the default pool."""
    cluster_yaml = MINIMAL_CLUSTER + "  nodePools:\n    - {name: general, nodeInstanceType: c6i.4xlarge}\n"
    (cluster,) = load(cluster_yaml).clusters
    (pool,) = cluster.node_pools
    assert (pool.name, pool.is_default, pool.min_node_count, pool.max_node_count) == ("general", True, 1, 20)


def test_kubernetes_deployment_runs_task_pods_on_the_default_pool():
    """A KUBERNETES Deployment without taskPodNodePool has no queues and uses the cluster's default pool."""
    (deployment,) = load(MINIMAL_CLUSTER, MINIMAL_DEPLOYMENT + "  executor: KubernetesExecutor\n").deployments
    assert (deployment.executor, deployment.worker_queues, deployment.task_pod_node_pool) == (
        "KUBERNETES",
        (),
        "default",
    )


def test_queue_fields_left_out_take_the_schema_defaults():
    """A queue that names only itself gets the default pool's instance type, 0..10 workers and concurrency 16."""
    deployment_yaml = MINIMAL_DEPLOYMENT + "  workerQueues:\n    - name: default\n    - name: etl\n      maxWorkerCount: 3\n"
    (deployment,) = load(MINIMAL_CLUSTER, deployment_yaml).deployments
    default, etl = deployment.worker_queues
    assert (default.worker_type, default.max_worker_count, default.worker_concurrency) == ("m5.xlarge", 10, 16)
    assert (etl.name, etl.worker_type, etl.min_worker_count, etl.max_worker_count) == ("etl", "m5.xlarge", 0, 3)


# --- immutability ---------------------------------------------------------------------------------


def test_model_objects_are_frozen_and_hashable():
    """Clusters, Deployments and their parts reject assignment, and can be set members."""
    result = load(MINIMAL_CLUSTER, MINIMAL_DEPLOYMENT)
    (cluster,), (deployment,) = result.clusters, result.deployments
    with pytest.raises(dataclasses.FrozenInstanceError):
        cluster.region = "eu-west-1"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cluster.node_pools[0].max_node_count = 99  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        deployment.scheduler.au = 24  # type: ignore[misc]
    with pytest.raises(TypeError):
        cluster.tags["team"] = "x"  # type: ignore[index]
    with pytest.raises(AttributeError):
        deployment.worker_queues.append(None)  # type: ignore[attr-defined]
    assert len({cluster, cluster, deployment}) == 2


def test_origin_is_not_part_of_equality():
    """The same manifest declared in another file is the same desired object."""
    (cluster,) = load(MINIMAL_CLUSTER).clusters
    moved = dataclasses.replace(cluster, origin=Origin("elsewhere.yaml", 40))
    assert moved == cluster
    assert hash(moved) == hash(cluster)


# --- normalisation is stable: a property over generated valid specs -------------------------------

SCHEMAS = default_schemas()
REGIONS = SCHEMAS.schema("Cluster")["properties"]["spec"]["properties"]["region"]["enum"]
INSTANCE_TYPES = ["m5.xlarge", "m5.2xlarge", "r5.2xlarge", "c6i.4xlarge"]
EXECUTORS = ["CELERY", "celery", "Celery", "CeleryExecutor", "KUBERNETES", "kubernetesexecutor", "KubernetesExecutor"]

dns_labels = st.from_regex(r"\A[a-z][a-z0-9-]{0,10}[a-z0-9]\Z")
label_keys = st.from_regex(r"\A([a-z]{1,8}\.[a-z]{2,4}/)?[A-Za-z][A-Za-z0-9_.-]{0,8}[A-Za-z0-9]\Z")
label_values = st.from_regex(r"\A([A-Za-z0-9]([A-Za-z0-9_.-]{0,10}[A-Za-z0-9])?)?\Z")
text = st.text(string.ascii_letters + string.digits + " -_./:@", max_size=20)


def optional(draw, strategy, into: dict, key: str) -> None:
    """Set `key` from `strategy` half of the time: leaving fields out is how defaults get exercised."""
    if draw(st.booleans()):
        into[key] = draw(strategy)


@st.composite
def private_ranges(draw) -> str:
    block = ipaddress.ip_network(draw(st.sampled_from(["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"])))
    prefix = draw(st.integers(max(16, block.prefixlen), 20))
    count = 2 ** (prefix - block.prefixlen)
    index = draw(st.integers(0, count - 1))
    return str(ipaddress.ip_network((int(block.network_address) + index * 2 ** (32 - prefix), prefix)))


@st.composite
def node_pools(draw) -> list[dict]:
    names = draw(st.lists(dns_labels, min_size=1, max_size=4, unique=True))
    default = draw(st.integers(0, len(names) - 1))
    pools = []
    for i, name in enumerate(names):
        pool: dict = {"name": name}
        if i == default:
            # A lone pool is the default one without saying so.
            if len(names) > 1 or draw(st.booleans()):
                pool["isDefault"] = True
        elif draw(st.booleans()):
            pool["isDefault"] = False
        optional(draw, st.sampled_from(INSTANCE_TYPES), pool, "nodeInstanceType")
        low = draw(st.integers(0, 50))
        if draw(st.booleans()):
            pool["minNodeCount"] = low
            pool["maxNodeCount"] = draw(st.integers(max(1, low), 450))
        optional(draw, st.sampled_from(["ON_DEMAND", "SPOT"]), pool, "capacityType")
        optional(draw, st.dictionaries(label_keys, label_values.filter(bool), max_size=3), pool, "labels")
        taint = st.fixed_dictionaries(
            {"key": label_keys, "effect": st.sampled_from(["NO_SCHEDULE", "NO_EXECUTE", "PREFER_NO_SCHEDULE"])},
            optional={"value": label_values},
        )
        optional(draw, st.lists(taint, max_size=2), pool, "taints")
        pools.append(pool)
    return pools


@st.composite
def cluster_specs(draw) -> dict:
    spec: dict = {
        "account": {
            "id": draw(st.from_regex(r"\A[0-9]{12}\Z")),
            "externalId": draw(st.from_regex(r"\A[A-Za-z0-9+=,.@:/_-]{2,30}\Z")),
        }
    }
    optional(draw, st.from_regex(r"\A[A-Za-z0-9+=,.@_-]{1,20}\Z"), spec["account"], "roleName")
    optional(draw, st.sampled_from(REGIONS), spec, "region")
    if draw(st.booleans()):
        region = spec.get("region", "us-east-1")
        spec["availabilityZones"] = [f"{region}a", f"{region}{draw(st.sampled_from('bcd'))}"]
    if draw(st.booleans()):
        subnet = st.from_regex(r"\Asubnet-[0-9a-f]{8,17}\Z")
        spec["network"] = {
            "vpcId": draw(st.from_regex(r"\Avpc-[0-9a-f]{8,17}\Z")),
            "privateSubnetIds": draw(st.lists(subnet, min_size=2, max_size=3, unique=True)),
            "publicSubnetIds": draw(st.lists(subnet, min_size=2, max_size=3, unique=True)),
        }
    else:
        optional(draw, private_ranges(), spec, "vpcSubnetRange")
    optional(draw, st.sampled_from(["perAz", "single"]), spec, "natGateways")
    optional(draw, st.sampled_from(["1.30", "1.31", "1.32", "1.33"]), spec, "kubernetesVersion")
    optional(draw, node_pools(), spec, "nodePools")
    optional(draw, st.sampled_from(["db.m6g.large", "db.r5.xlarge", "db.m5.2xlarge"]), spec, "dbInstanceType")
    optional(
        draw,
        st.fixed_dictionaries(
            {},
            optional={
                "engineVersion": st.sampled_from(["15", "16", "16.4"]),
                "multiAz": st.booleans(),
                "allocatedStorageGiB": st.integers(20, 65536),
                "deletionProtection": st.booleans(),
            },
        ),
        spec,
        "database",
    )
    tag_keys = st.text(string.ascii_letters + string.digits + "-_.:/", min_size=1, max_size=12).filter(
        lambda k: not k.lower().startswith(("aws:", "driftwarden:"))
    )
    optional(draw, st.dictionaries(tag_keys, text, max_size=4), spec, "tags")
    optional(draw, st.lists(text.filter(bool), max_size=3, unique=True), spec, "workspaces")
    optional(draw, st.sampled_from(["Retain", "Delete"]), spec, "deletionPolicy")
    return spec


@st.composite
def environment_variables(draw) -> list[dict]:
    keys = draw(st.lists(st.from_regex(r"\A[A-Z_][A-Z0-9_]{0,15}\Z"), max_size=4, unique=True))
    variables = []
    for key in keys:
        if draw(st.booleans()):
            variable: dict = {"key": key, "value": draw(text)}
            optional(draw, st.just(False), variable, "isSecret")
        else:
            source = draw(
                st.one_of(
                    st.fixed_dictionaries(
                        {"secretsManagerArn": st.just("arn:aws:secretsmanager:eu-west-1:906231845570:secret:prod/x-Ab12")},
                        optional={"jsonKey": st.sampled_from(["password", "uri"])},
                    ),
                    st.fixed_dictionaries({"ssmParameter": st.from_regex(r"\A(/[a-z0-9_.-]{1,8}){1,3}\Z")}),
                    st.fixed_dictionaries({"env": st.from_regex(r"\A[A-Z_][A-Z0-9_]{0,15}\Z")}),
                )
            )
            variable = {"key": key, "isSecret": True, "valueFrom": source}
        variables.append(variable)
    return variables


def deployment_specs(cluster: Cluster):
    pool_types = sorted({p.node_instance_type for p in cluster.node_pools})
    pool_names = [p.name for p in cluster.node_pools]

    @st.composite
    def specs(draw) -> dict:
        spec: dict = {"cluster": cluster.name, "runtimeVersion": draw(st.from_regex(r"\A[0-9]{1,2}\.[0-9]{1,2}(\.[0-9]{1,2}|-[0-9]{1,2})\Z"))}
        optional(draw, st.sampled_from(EXECUTORS), spec, "executor")
        optional(draw, text.filter(bool), spec, "workspace")
        optional(draw, text, spec, "description")
        optional(
            draw,
            st.fixed_dictionaries({}, optional={"au": st.integers(5, 24), "replicas": st.integers(1, 4)}),
            spec,
            "scheduler",
        )
        if normalize_executor(spec.get("executor", "CELERY")) == "CELERY":
            if draw(st.booleans()):
                names = ["default", *draw(st.lists(st.from_regex(r"\A[a-z][a-z0-9_-]{0,8}[a-z0-9]\Z"), max_size=3, unique=True).map(lambda xs: [x for x in xs if x != "default"]))]
                queues = []
                for name in draw(st.permutations(names)):
                    queue: dict = {"name": name}
                    optional(draw, st.sampled_from(pool_types), queue, "workerType")
                    if draw(st.booleans()):
                        low = draw(st.integers(0, 100))
                        queue["minWorkerCount"] = low
                        queue["maxWorkerCount"] = draw(st.integers(max(1, low), 100))
                    optional(draw, st.integers(1, 256), queue, "workerConcurrency")
                    queues.append(queue)
                spec["workerQueues"] = queues
        else:
            optional(draw, st.sampled_from(pool_names), spec, "taskPodNodePool")
        optional(draw, environment_variables(), spec, "environmentVariables")
        optional(draw, st.lists(st.from_regex(r"\A[a-z]{1,8}@[a-z]{1,8}\.com\Z"), max_size=3, unique=True), spec, "alertEmails")
        optional(draw, st.booleans(), spec, "dagDeployEnabled")
        optional(draw, st.booleans(), spec, "ciCdEnforced")
        optional(
            draw,
            st.one_of(
                st.just({"roleArn": "arn:aws:iam::742096158823:role/etl-airflow"}),
                st.fixed_dictionaries(
                    {},
                    optional={
                        "policyArns": st.lists(
                            st.sampled_from(
                                [
                                    "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess",
                                    "arn:aws:iam::742096158823:policy/etl-landing",
                                ]
                            ),
                            unique=True,
                        )
                    },
                ),
            ),
            spec,
            "workloadIdentity",
        )
        optional(draw, st.sampled_from(["Retain", "Delete"]), spec, "deletionPolicy")
        return spec

    return specs()


metadata = st.fixed_dictionaries(
    {"name": dns_labels},
    optional={
        "labels": st.dictionaries(label_keys, label_values, max_size=3),
        "annotations": st.fixed_dictionaries(
            {}, optional={"driftwarden/drift": st.sampled_from(["enforce", "warn"]), "note": text}
        ),
    },
)

PROPERTY = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def filled(kind: str, meta: dict, spec: dict) -> dict:
    """The document with schema defaults applied, after checking the generated spec is schema-valid."""
    document = {"apiVersion": API_VERSION, "kind": kind, "metadata": meta, "spec": spec}
    assert SCHEMAS.check(kind, document) == [], "the strategy generated an invalid spec"
    return SCHEMAS.apply_defaults(kind, prepare_defaults(kind, document))


@PROPERTY
@given(meta=metadata, spec=cluster_specs())
def test_cluster_normalisation_is_idempotent(meta, spec):
    """For any valid Cluster spec, normalising twice equals normalising once and builds the same Cluster."""
    document = filled("Cluster", meta, spec)
    once = normalize_spec("Cluster", document["spec"])
    twice = normalize_spec("Cluster", once)
    assert twice == once
    assert SCHEMAS.check("Cluster", {**document, "spec": once}) == []
    meta_once = normalize_metadata(document["metadata"])
    assert normalize_metadata(meta_once) == meta_once
    assert cluster_from_spec(meta_once, once) == cluster_from_spec(normalize_metadata(meta_once), twice)


BASE_CLUSTER = cluster_from_spec(
    {"name": "prod-use1"},
    normalize_spec(
        "Cluster",
        SCHEMAS.apply_defaults(
            "Cluster",
            {
                "apiVersion": API_VERSION,
                "kind": "Cluster",
                "metadata": {"name": "prod-use1"},
                "spec": {
                    "account": {"id": "742096158823", "externalId": "dw-prod-use1-91d0e2"},
                    "nodePools": [
                        {"name": "default", "isDefault": True},
                        {"name": "memory", "nodeInstanceType": "r5.2xlarge"},
                        {"name": "spot", "nodeInstanceType": "m5.2xlarge", "capacityType": "SPOT"},
                    ],
                },
            },
        )["spec"],
    ),
)


@PROPERTY
@given(meta=metadata, spec=deployment_specs(BASE_CLUSTER))
def test_deployment_normalisation_is_idempotent(meta, spec):
    """For any valid Deployment spec, normalising twice equals normalising once and builds the same Deployment."""
    document = filled("Deployment", meta, spec)
    once = normalize_spec("Deployment", document["spec"])
    twice = normalize_spec("Deployment", once)
    assert twice == once
    assert SCHEMAS.check("Deployment", {**document, "spec": once}) == []
    meta_once = normalize_metadata(document["metadata"])
    built = deployment_from_spec(meta_once, once, BASE_CLUSTER)
    assert built == deployment_from_spec(normalize_metadata(meta_once), twice, BASE_CLUSTER)
    assert built.executor in ("CELERY", "KUBERNETES")
    # Whatever executor spelling was written, the canonical one builds the same Deployment.
    assert deployment_from_spec(meta_once, {**once, "executor": built.executor}, BASE_CLUSTER) == built
