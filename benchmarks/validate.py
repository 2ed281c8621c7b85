"""Benchmark of `driftwarden validate`: files/s cold and cached, peak RSS, and check-jsonschema.

What is measured, for each size N (default 1,000 and 10,000 manifests):

1. A deterministic (seeded) tree of N manifests is generated, one document per file, about a
   third Clusters and two thirds Deployments. Each Cluster has its own 12-digit account (so
   `vpcSubnetRange`s can never overlap); each Deployment runs on a valid generated Cluster and
   uses only its node pools. About 10% of the files carry one mistake each, in an even mix:
   unknown field, region not in the enum, a /24 VPC range, a missing required field, a queue
   `workerType` that no node pool of the cluster has, a duplicate key, a YAML syntax error.
2. driftwarden is run the way a user runs it, as a subprocess:
   `driftwarden validate manifests --format json --cache-dir <empty dir>` (cold), then the
   same command again over the unchanged files (warm: answered from the content-hash cache).
   Wall time is `time.perf_counter` around start and `os.wait4` of the child, so it includes
   interpreter start-up and imports. CPU time and peak RSS come from that child's own rusage
   (`ru_maxrss` is the largest single process among the child and the worker processes it
   waited for, not their sum). The JSON report is parsed to count errors, check that each has
   a line number, and compare the files it flags with the files that were broken on purpose.
   The CPU time that *other* processes used meanwhile (from /proc/stat) is printed too, and a
   wall time it inflated is starred: on a shared machine, compare CPU times.
3. check-jsonschema (PyPI) validates the same files against the same schemas: one command for
   the Clusters and one for the Deployments (more if the argument list would be too long),
   with `--base-uri file://.../schemas/<kind>.schema.json` so that the relative `$ref`s to
   `envelope.schema.json` resolve from disk. It runs with `--no-cache` and with every proxy
   variable pointing at a closed local port, so an attempt to download a schema fails loudly
   instead of reaching the network; a first run over known-valid files proves the set-up.
   Its wall time is the sum over its commands. Note what it does not do: no line numbers
   (JSON paths only), one parse error ends a file, no checks across files.
4. For orientation: the start-up floor (`driftwarden --version`, which imports the same
   modules) and the in-process split of a warm run (import, `validate_paths`, JSON rendering).

Targets (from the issue), printed next to the numbers and never asserted: 10,000 manifests
cold in <= 5 s on a 2-core machine; at least 3x faster than check-jsonschema; an unchanged
tree re-validated in <= 0.3 s.

Usage: `python benchmarks/validate.py [--sizes 1000,10000] [--keep DIR] [--repeat K]
[--profile]`. Run it with the project's virtualenv (`make bench`); the tools are looked up
next to the running interpreter first, then in `.venv/bin` of the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SCHEMAS = REPO / "schemas"
SEED = 20240611
INVALID_SHARE = 0.10
# Secret variables are read from the account driftwarden runs in.
CONTROL_ACCOUNT = "999999999999"

TARGET_COLD_S = 5.0
TARGET_WARM_S = 0.3
TARGET_SPEEDUP = 3.0
TARGET_AT = 10_000

# Proxies that go nowhere: check-jsonschema downloads remote $refs with `requests`, which
# honours these, so a reference that was not resolved from disk fails instead of fetching.
OFFLINE_ENV = {
    "HTTP_PROXY": "http://127.0.0.1:9",
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "ALL_PROXY": "http://127.0.0.1:9",
    "http_proxy": "http://127.0.0.1:9",
    "https_proxy": "http://127.0.0.1:9",
    "all_proxy": "http://127.0.0.1:9",
    "NO_PROXY": "",
    "no_proxy": "",
}


# --- tools ----------------------------------------------------------------------------------


def tool(name: str) -> Path:
    """The console script `name` of the virtualenv that has driftwarden installed.

    That is the running interpreter's own folder when it has `driftwarden` (`make bench`),
    else the repository's `.venv/bin`; `python` is taken from the same folder, so that the
    in-process measurements import the same driftwarden.
    """
    for folder in (Path(sys.executable).parent, REPO / ".venv" / "bin"):
        if (folder / "driftwarden").exists() and (folder / name).exists():
            return folder / name
    raise SystemExit(f"benchmarks/validate.py: cannot find {name!r}; run `make bench` (it installs .venv)")


# --- generating manifests -------------------------------------------------------------------

REGIONS = (
    "us-east-1", "us-east-1", "us-east-2", "us-west-2", "us-west-1", "eu-west-1", "eu-west-1",
    "eu-central-1", "eu-west-2", "eu-west-3", "eu-north-1", "eu-south-1", "ap-northeast-1",
    "ap-northeast-2", "ap-northeast-3", "ap-southeast-1", "ap-southeast-2", "ap-south-1",
    "ca-central-1", "sa-east-1", "af-south-1", "me-south-1",
)  # fmt: skip
REGION_CODES = {
    "us-east-1": "use1", "us-east-2": "use2", "us-west-1": "usw1", "us-west-2": "usw2",
    "eu-west-1": "euw1", "eu-west-2": "euw2", "eu-west-3": "euw3", "eu-central-1": "euc1",
    "eu-north-1": "eun1", "eu-south-1": "eus1", "ap-northeast-1": "apne1",
    "ap-northeast-2": "apne2", "ap-northeast-3": "apne3", "ap-southeast-1": "apse1",
    "ap-southeast-2": "apse2", "ap-south-1": "aps1", "ca-central-1": "cac1",
    "sa-east-1": "sae1", "af-south-1": "afs1", "me-south-1": "mes1",
}  # fmt: skip
BAD_REGIONS = ("eu-west-9", "us-east-3", "us-central-1", "eu-westt-1", "ap-southeast-7")
ENVIRONMENTS = ("prod", "stage", "dev", "sandbox")
TEAMS = ("data", "ml", "finance", "growth", "platform", "search", "ads", "risk")
POOL_TYPES = (
    ("highmem", "r5.2xlarge"),
    ("compute", "c5.2xlarge"),
    ("large", "m5.4xlarge"),
    ("general", "m6i.2xlarge"),
    ("burst", "t3.xlarge"),
    ("gpu", "g5.xlarge"),
)
DEFAULT_TYPES = ("m5.xlarge", "m5.xlarge", "m5.2xlarge", "m6i.xlarge")
UNKNOWN_TYPES = ("x2iedn.xlarge", "m7g.large", "c6gn.16xlarge", "m5.24xlarge")
DB_TYPES = ("db.m6g.large", "db.m6g.xlarge", "db.r5.large", "db.r5.2xlarge", "db.m5.large")
K8S_VERSIONS = ("1.30", "1.31", "1.32")
PG_VERSIONS = ("15", "15.7", "16", "16.4")
RUNTIME_VERSIONS = ("11.4.0", "11.7.0", "12.0.0", "12.1.0", "12.1.1")
EXECUTORS = ("CELERY", "CeleryExecutor", "celery", "CELERY", "KUBERNETES", "KubernetesExecutor")
PURPOSES = ("etl", "ingest", "reporting", "features", "training", "billing", "exports", "sync")

MISTAKES: Mapping[str, tuple[str, ...]] = {
    # mistake -> the kinds it applies to
    "unknown-field": ("Cluster", "Deployment"),
    "bad-region": ("Cluster",),
    "cidr-/24": ("Cluster",),
    "missing-required": ("Cluster", "Deployment"),
    "worker-type": ("Deployment",),
    "duplicate-key": ("Cluster", "Deployment"),
    "yaml-syntax": ("Cluster", "Deployment"),
}


@dataclass(frozen=True)
class GeneratedFile:
    path: str  # relative to the set's root, as both tools are given it
    kind: str
    mistake: str | None


@dataclass
class ManifestSet:
    root: Path
    files: list[GeneratedFile]

    def of_kind(self, kind: str) -> list[GeneratedFile]:
        return [f for f in self.files if f.kind == kind]

    @property
    def broken(self) -> dict[str, str]:
        return {f.path: f.mistake for f in self.files if f.mistake}


_PLAIN = re.compile(r"^[A-Za-z_/][A-Za-z0-9_.@/+=:,-]*$")
_YAML_WORDS = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"})


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    text = str(value)
    if _PLAIN.match(text) and text.lower() not in _YAML_WORDS and ": " not in text and not text.endswith(":"):
        return text
    return json.dumps(text)  # a JSON string is a valid double-quoted YAML scalar


def _is_flow_map(value: Any) -> bool:
    return isinstance(value, dict) and 0 < len(value) <= 3 and all(not isinstance(v, dict | list) for v in value.values())


def emit(value: Any, indent: int = 0) -> Iterator[str]:
    """Block-style YAML lines for plain data; small flat maps in flow style, as people write them."""
    pad = " " * indent
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, dict) and item and _is_flow_map(item) and key in ("labels", "scheduler", "tags"):
                inner = ", ".join(f"{k}: {_scalar(v)}" for k, v in item.items())
                yield f"{pad}{key}: {{{inner}}}"
            elif isinstance(item, list) and item and key in ("availabilityZones", "workspaces"):
                yield f"{pad}{key}: [{', '.join(_scalar(v) for v in item)}]"
            elif isinstance(item, dict | list) and item:
                yield f"{pad}{key}:"
                yield from emit(item, indent + 2)
            elif isinstance(item, dict | list):
                yield f"{pad}{key}: {'{}' if isinstance(item, dict) else '[]'}"
            else:
                yield f"{pad}{key}: {_scalar(item)}"
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict) and item:
                lines = list(emit(item, indent + 2))
                yield f"{pad}- {lines[0].lstrip()}"
                yield from lines[1:]
            else:
                yield f"{pad}- {_scalar(item)}"
    else:
        yield f"{pad}{_scalar(value)}"


@dataclass
class _ClusterFacts:
    name: str
    account: str
    region: str
    pool_names: list[str]
    pool_types: list[str]
    workspaces: list[str]
    valid: bool = True
    used_capacity: Counter[str] = field(default_factory=Counter)
    capacity: dict[str, int] = field(default_factory=dict)


def _cidr(rng: random.Random) -> str:
    prefix = rng.choice((16, 17, 18, 19, 20, 20, 20))
    step = 2 ** (24 - prefix)
    third = rng.randrange(0, 256, step)
    block = rng.choice(("10", "10", "172", "192"))
    if block == "10":
        return f"10.{rng.randrange(256)}.{third}.0/{prefix}"
    if block == "172":
        return f"172.{rng.randrange(16, 32)}.{third}.0/{prefix}"
    return f"192.168.{third}.0/{prefix}"


def _zones(region: str) -> list[str]:
    letters = ("a", "c") if region == "ap-northeast-1" else ("a", "b")
    return [region + letter for letter in letters]


def make_cluster(index: int, rng: random.Random) -> tuple[dict[str, Any], _ClusterFacts]:
    region = rng.choice(REGIONS)
    env = rng.choice(ENVIRONMENTS)
    team = rng.choice(TEAMS)
    name = f"{env}-{REGION_CODES[region]}-{index:05d}"
    # Multiplying by a number coprime to 10**12 is a bijection modulo 10**12: distinct
    # accounts, some with leading zeros (the reason account ids must be quoted).
    account = f"{(index * 982_451_653 + 17) % 10**12:012d}"
    default_type = rng.choice(DEFAULT_TYPES)
    pools: list[dict[str, Any]] = [
        {
            "name": "default",
            "nodeInstanceType": default_type,
            "minNodeCount": rng.choice((2, 2, 3)),
            "maxNodeCount": rng.choice((20, 20, 30, 40)),
            "isDefault": True,
        }
    ]
    for pool_name, pool_type in rng.sample(POOL_TYPES, rng.choice((0, 1, 1, 2, 3))):
        pool: dict[str, Any] = {
            "name": pool_name,
            "nodeInstanceType": pool_type,
            "minNodeCount": rng.choice((0, 1, 2)),
            "maxNodeCount": rng.choice((10, 20, 30)),
        }
        if rng.random() < 0.4:
            pool["capacityType"] = "SPOT"
        if rng.random() < 0.5:
            pool["labels"] = {"workload": pool_name}
        if rng.random() < 0.3:
            pool["taints"] = [{"key": "dedicated", "value": pool_name, "effect": "NO_SCHEDULE"}]
        pools.append(pool)
    metadata: dict[str, Any] = {"name": name, "labels": {"team": team, "env": env}}
    if rng.random() < 0.15:
        metadata["annotations"] = {
            "driftwarden/drift": rng.choice(("warn", "enforce")),
            "runbook": f"https://wiki.example.com/{team}/runbooks/{name}",
        }
    spec: dict[str, Any] = {
        "account": {"id": account, "externalId": f"dw-{name}-{rng.getrandbits(24):06x}"},
        "region": region,
    }
    if rng.random() < 0.05:
        # Static placement into a VPC someone else owns: no vpcSubnetRange.
        spec["network"] = {
            "vpcId": f"vpc-{rng.getrandbits(68):017x}",
            "privateSubnetIds": [f"subnet-{rng.getrandbits(68):017x}" for _ in range(2)],
            "publicSubnetIds": [f"subnet-{rng.getrandbits(68):017x}" for _ in range(2)],
        }
    else:
        spec["vpcSubnetRange"] = _cidr(rng)
    if rng.random() < 0.3:
        spec["account"]["roleName"] = "driftwarden-remote-management"
    if rng.random() < 0.4:
        spec["availabilityZones"] = _zones(region)
    if rng.random() < 0.3:
        spec["natGateways"] = rng.choice(("perAz", "single"))
    spec["kubernetesVersion"] = rng.choice(K8S_VERSIONS)
    spec["nodePools"] = pools
    spec["dbInstanceType"] = rng.choice(DB_TYPES)
    if rng.random() < 0.6:
        spec["database"] = {
            "engineVersion": rng.choice(PG_VERSIONS),
            "multiAz": env == "prod" or rng.random() < 0.5,
            "allocatedStorageGiB": rng.choice((50, 100, 200, 500)),
        }
    spec["tags"] = {"cost-center": f"{rng.randrange(1000, 9999)}", "owner": f"{team}-platform"}
    workspaces = [team, f"{team}-shared"] if rng.random() < 0.2 else []
    if workspaces:
        spec["workspaces"] = workspaces
    if rng.random() < 0.2:
        spec["deletionPolicy"] = rng.choice(("Retain", "Delete"))
    facts = _ClusterFacts(
        name=name,
        account=account,
        region=region,
        pool_names=[p["name"] for p in pools],
        pool_types=[p["nodeInstanceType"] for p in pools],
        workspaces=workspaces,
        capacity={p["nodeInstanceType"]: p["maxNodeCount"] for p in pools},
    )
    document = {"apiVersion": "driftwarden/v1", "kind": "Cluster", "metadata": metadata, "spec": spec}
    return document, facts


def make_deployment(index: int, cluster: _ClusterFacts, rng: random.Random) -> dict[str, Any]:
    purpose = rng.choice(PURPOSES)
    name = f"{purpose}-{index:05d}"
    executor = rng.choice(EXECUTORS)
    spec: dict[str, Any] = {"cluster": cluster.name}
    if cluster.workspaces:
        spec["workspace"] = rng.choice(cluster.workspaces)
    elif rng.random() < 0.5:
        spec["workspace"] = rng.choice(TEAMS)
    if rng.random() < 0.6:
        spec["description"] = f"{purpose} pipelines of {rng.choice(TEAMS)}: {rng.randrange(3, 400)} DAGs"
    spec["runtimeVersion"] = rng.choice(RUNTIME_VERSIONS)
    spec["executor"] = executor
    spec["scheduler"] = {"au": rng.choice((5, 5, 10, 15, 24)), "replicas": rng.choice((1, 1, 2, 3))}
    if executor.upper().startswith("CELERY"):
        default_type = cluster.pool_types[0]
        if rng.random() < 0.15 and cluster.capacity[default_type] - cluster.used_capacity[default_type] >= 10:
            # No queues: the implicit `default` queue (up to 10 workers on the default pool).
            cluster.used_capacity[default_type] += 10
        else:
            queues = []
            extra = rng.sample(("heavy", "io", "ml", "backfill", "priority"), rng.choice((0, 1, 2)))
            for queue_name in ["default", *extra]:
                # Keep the summed maxWorkerCount of each pool within its maxNodeCount, so that
                # capacity warnings stay rare, as on a platform that is looked after.
                roomy = [t for t in cluster.pool_types if cluster.capacity[t] > cluster.used_capacity[t]]
                if not roomy and queue_name != "default":
                    break
                worker_type = rng.choice(roomy or cluster.pool_types)
                room = cluster.capacity[worker_type] - cluster.used_capacity[worker_type]
                most = max(1, min(rng.choice((2, 4, 5, 8, 10)), room))
                cluster.used_capacity[worker_type] += most
                queue: dict[str, Any] = {"name": queue_name, "workerType": worker_type, "maxWorkerCount": most}
                if rng.random() < 0.5:
                    queue["minWorkerCount"] = rng.choice((0, 1))
                if rng.random() < 0.4:
                    queue["workerConcurrency"] = rng.choice((8, 16, 32))
                queues.append(queue)
            spec["workerQueues"] = queues
    elif rng.random() < 0.5:
        spec["taskPodNodePool"] = rng.choice(cluster.pool_names)
    variables: list[dict[str, Any]] = [
        {"key": "AIRFLOW__CORE__DEFAULT_TIMEZONE", "value": rng.choice(("UTC", "Europe/Paris", "America/New_York"))},
        {"key": "LOG_LEVEL", "value": rng.choice(("INFO", "DEBUG", "WARNING"))},
    ]
    for extra in range(rng.choice((0, 1, 2, 4, 6))):
        variables.append({"key": f"{purpose.upper()}_SETTING_{extra}", "value": f"{rng.randrange(10**6)}"})
    source = rng.choice(("secretsManagerArn", "ssmParameter", "env", None))
    if source == "secretsManagerArn":
        arn = f"arn:aws:secretsmanager:{cluster.region}:{CONTROL_ACCOUNT}:secret:{name}-db"
        value_from = {"secretsManagerArn": arn} | ({"jsonKey": "password"} if rng.random() < 0.5 else {})
        variables.append({"key": "DB_PASSWORD", "isSecret": True, "valueFrom": value_from})
    elif source == "ssmParameter":
        variables.append({"key": "API_TOKEN", "isSecret": True, "valueFrom": {"ssmParameter": f"/airflow/{name}/api-token"}})
    elif source == "env":
        variables.append({"key": "SLACK_TOKEN", "isSecret": True, "valueFrom": {"env": f"DW_{purpose.upper()}_SLACK"}})
    spec["environmentVariables"] = variables
    if rng.random() < 0.7:
        spec["alertEmails"] = [f"{purpose}-oncall@example.com"] + (["data-alerts@example.com"] if rng.random() < 0.3 else [])
    if rng.random() < 0.3:
        spec["dagDeployEnabled"] = rng.random() < 0.8
    if rng.random() < 0.2:
        spec["ciCdEnforced"] = True
    identity = rng.random()
    if identity < 0.2:
        spec["workloadIdentity"] = {"policyArns": ["arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"]}
    elif identity < 0.3:
        spec["workloadIdentity"] = {"roleArn": f"arn:aws:iam::{cluster.account}:role/{name}-airflow"}
    metadata: dict[str, Any] = {"name": name}
    if rng.random() < 0.5:
        metadata["labels"] = {"team": rng.choice(TEAMS)}
    return {"apiVersion": "driftwarden/v1", "kind": "Deployment", "metadata": metadata, "spec": spec}


def break_document(document: dict[str, Any], mistake: str, rng: random.Random) -> None:
    """Apply a mistake that is about content (the textual ones are applied to the YAML)."""
    spec = document["spec"]
    cluster = document["kind"] == "Cluster"
    if mistake == "unknown-field":
        typo = rng.choice(("kubernetesVerison", "vpcCidr", "nodepools") if cluster else ("workerQueue", "replicas", "envVars"))
        spec[typo] = spec.get("kubernetesVersion", "1.32") if typo == "kubernetesVerison" else 3
    elif mistake == "bad-region":
        spec["region"] = rng.choice(BAD_REGIONS)
        spec.pop("availabilityZones", None)
    elif mistake == "cidr-/24":
        spec.pop("network", None)
        spec["vpcSubnetRange"] = f"10.{rng.randrange(256)}.{rng.randrange(256)}.0/24"
    elif mistake == "missing-required":
        if cluster:
            del spec["account"]["externalId"]
        else:
            del spec["cluster"]
    elif mistake == "worker-type":
        queues = spec.setdefault("workerQueues", [{"name": "default"}])
        spec["executor"] = "CELERY"
        spec.pop("taskPodNodePool", None)
        queues[-1]["workerType"] = rng.choice(UNKNOWN_TYPES)


def to_yaml(document: dict[str, Any], mistake: str | None, rng: random.Random, schema_hint: bool) -> str:
    """The YAML text of `document`, with the textual mistakes (duplicate key, bad syntax) made."""
    lines = list(emit(document))
    if mistake == "duplicate-key":
        # The same key twice in `spec`, as after a careless merge: the second value would win
        # silently in most YAML loaders.
        spec_at = lines.index("spec:")
        scalars = [i for i in range(spec_at + 1, len(lines)) if re.match(r"^  [A-Za-z]+: \S", lines[i])]
        repeated = rng.choice(scalars)
        lines.insert(repeated + 1, lines[repeated])
    elif mistake == "yaml-syntax":
        target = rng.randrange(len(lines) // 2, len(lines))
        flavour = rng.randrange(3)
        indent = lines[target][: len(lines[target]) - len(lines[target].lstrip())]
        if flavour == 0:  # a flow collection that is never closed
            lines.insert(target, f"{indent}extra: {{a: 1, b: [2")
        elif flavour == 1:  # a list item where a key belongs
            lines.insert(target, f"{indent}key: value\n{indent}- stray item")
        else:  # a quoted string that is never closed
            lines.insert(target, f'{indent}note: "unterminated')
    header = ""
    if schema_hint:
        header += "# yaml-language-server: $schema=../../schemas/{}.schema.json\n".format(document["kind"].lower())
    if rng.random() < 0.3:
        header += f"# Owned by {rng.choice(TEAMS)}; changes go through the platform team's review.\n"
    return header + "\n".join(lines) + "\n"


def _pick_mistakes(kinds: Sequence[str], rng: random.Random) -> list[str | None]:
    """About INVALID_SHARE of the files get one mistake each, spread evenly over the mistakes."""
    count = len(kinds)
    chosen = rng.sample(range(count), round(count * INVALID_SHARE))
    # The most common kind first: the other then takes the mistakes only it can have, which
    # evens out the mix.
    common = Counter(kinds).most_common(1)[0][0]
    chosen.sort(key=lambda position: (kinds[position] != common, position))
    mistakes: list[str | None] = [None] * count
    turns = Counter[str]()
    for position in chosen:
        fitting = [m for m, applies in MISTAKES.items() if kinds[position] in applies]
        least = min(turns[m] for m in fitting)
        mistake = next(m for m in fitting if turns[m] == least)
        turns[mistake] += 1
        mistakes[position] = mistake
    return mistakes


def generate(root: Path, count: int, seed: int = SEED) -> ManifestSet:
    """Write `count` manifests under root/manifests/{clusters,deployments}/."""
    rng = random.Random(seed)
    clusters_count = max(1, count // 3)
    kinds = ["Cluster"] * clusters_count + ["Deployment"] * (count - clusters_count)
    mistakes = _pick_mistakes(kinds, rng)
    for folder in ("clusters", "deployments"):
        (root / "manifests" / folder).mkdir(parents=True, exist_ok=True)
    files: list[GeneratedFile] = []
    facts: list[_ClusterFacts] = []
    for index in range(clusters_count):
        document, fact = make_cluster(index, rng)
        mistake = mistakes[index]
        fact.valid = mistake is None
        facts.append(fact)
        files.append(_write(root, f"manifests/clusters/{fact.name}.yaml", document, mistake, rng))
    # Deployments run only on valid Clusters, so that each broken file is broken once and the
    # errors found can be compared with the mistakes made.
    healthy = [fact for fact in facts if fact.valid] or facts
    for offset in range(count - clusters_count):
        mistake = mistakes[clusters_count + offset]
        cluster = healthy[rng.randrange(len(healthy))]
        document = make_deployment(offset, cluster, rng)
        files.append(_write(root, f"manifests/deployments/{document['metadata']['name']}.yaml", document, mistake, rng))
    return ManifestSet(root, files)


def _write(root: Path, relative: str, document: dict[str, Any], mistake: str | None, rng: random.Random) -> GeneratedFile:
    if mistake is not None:
        break_document(document, mistake, rng)
    (root / relative).write_text(to_yaml(document, mistake, rng, schema_hint=rng.random() < 0.5), encoding="utf-8")
    return GeneratedFile(relative, document["kind"], mistake)


# --- running and measuring ------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    wall_s: float
    cpu_s: float
    max_rss_mib: float
    exit_code: int
    stdout: str
    stderr: str
    # CPU seconds that other processes of the machine used meanwhile: noise in wall_s.
    others_cpu_s: float = 0.0


def _machine_busy_s() -> float:
    """CPU seconds every process of the machine has used since boot (Linux), else 0."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    # guest time is already counted in user time
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def run_measured(argv: Sequence[str | Path], cwd: Path, env: Mapping[str, str] | None = None) -> Run:
    """Run argv to completion; wall time, CPU time and peak RSS of exactly this child."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        busy_before = _machine_busy_s()
        started = time.perf_counter()
        process = subprocess.Popen([str(a) for a in argv], cwd=cwd, stdout=out, stderr=err, env=_env(env))
        _pid, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        busy = _machine_busy_s() - busy_before
        process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        out.seek(0)
        err.seek(0)
        return Run(
            wall_s=wall,
            cpu_s=usage.ru_utime + usage.ru_stime,
            max_rss_mib=usage.ru_maxrss / 1024,  # KiB on Linux
            exit_code=process.returncode,
            stdout=out.read().decode("utf-8", "replace"),
            stderr=err.read().decode("utf-8", "replace"),
            others_cpu_s=max(0.0, busy - usage.ru_utime - usage.ru_stime),
        )


def _env(extra: Mapping[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTWARDEN_")}
    env.update(extra or {})
    return env


def best_of(runs: Sequence[Run]) -> Run:
    return min(runs, key=lambda r: r.wall_s)


@dataclass
class DriftwardenResult:
    cold: Run
    warm: Run
    report: dict[str, Any]
    flagged: set[str]
    in_process: dict[str, float] | None


@dataclass
class CheckJsonschemaResult:
    wall_s: float
    cpu_s: float
    max_rss_mib: float
    commands: int
    exit_codes: list[int]
    errors: int
    parse_errors: int
    flagged: set[str]
    files: int
    others_cpu_s: float = 0.0
    problem: str | None = None


def run_driftwarden(manifests: ManifestSet, repeat: int, scratch: Path) -> DriftwardenResult:
    driftwarden = tool("driftwarden")
    colds: list[Run] = []
    warms: list[Run] = []
    cache = scratch / "cache-0"
    for attempt in range(repeat):
        cache = scratch / f"cache-{attempt}"
        shutil.rmtree(cache, ignore_errors=True)
        cache.mkdir(parents=True)
        command = [driftwarden, "validate", "manifests", "--format", "json", "--cache-dir", cache]
        colds.append(run_measured(command, manifests.root))
        warms.append(run_measured(command, manifests.root))
    cold = best_of(colds)
    try:
        report = json.loads(cold.stdout)
    except json.JSONDecodeError:
        report = {}
        print(f"  ! driftwarden did not print JSON (exit {cold.exit_code}): {cold.stderr.strip()[-600:]}")
    flagged = {os.path.normpath(e["file"]) for e in report.get("errors", []) if "file" in e}
    return DriftwardenResult(cold, best_of(warms), report, flagged, in_process_warm(manifests.root, cache))


_IN_PROCESS = """
import json, pathlib, sys, time
started = time.perf_counter()
from driftwarden.cli import render
from driftwarden.manifests.validation import validate_paths
imported = time.perf_counter()
result = validate_paths(["manifests"], cache_dir=pathlib.Path(sys.argv[1]))
validated = time.perf_counter()
render.validation_json(result)
rendered = time.perf_counter()
print(json.dumps({"import": imported - started, "validate_paths": validated - imported,
                  "render": rendered - validated, "cached_files": result.cached_files}))
"""


def in_process_warm(root: Path, cache: Path) -> dict[str, float] | None:
    """Where a warm run spends its time, measured inside one interpreter (after start-up)."""
    run = run_measured([tool("python"), "-c", _IN_PROCESS, cache], root)
    try:
        return dict(json.loads(run.stdout.strip().splitlines()[-1]))
    except (json.JSONDecodeError, IndexError):
        print(f"  ! in-process timing failed: {run.stderr.strip()[-400:]}")
        return None


def _chunks(paths: Sequence[str], budget: int) -> Iterator[list[str]]:
    """Split paths into argument lists whose total size stays under `budget` bytes."""
    chunk: list[str] = []
    size = 0
    for path in paths:
        cost = len(os.fsencode(path)) + 1 + 8  # the string, its NUL, the argv pointer
        if chunk and size + cost > budget:
            yield chunk
            chunk, size = [], 0
        chunk.append(path)
        size += cost
    if chunk:
        yield chunk


def _check_jsonschema_command(kind: str) -> list[str | Path]:
    schema = SCHEMAS / f"{kind.lower()}.schema.json"
    return [
        tool("check-jsonschema"),
        "--schemafile",
        schema,
        "--base-uri",
        schema.as_uri(),
        "--no-cache",
        "--output-format",
        "json",
    ]


def run_check_jsonschema(manifests: ManifestSet, repeat: int) -> CheckJsonschemaResult:
    # Half of what the kernel allows, minus the environment, leaves room for the options.
    budget = (os.sysconf("SC_ARG_MAX") - sum(len(k) + len(v) + 2 for k, v in os.environ.items())) // 2
    problem = _check_jsonschema_works_offline(manifests)
    walls: list[float] = []
    cpus: list[float] = []
    others: list[float] = []
    rss: list[float] = []
    codes: list[int] = []
    errors = parse_errors = commands = 0
    flagged: set[str] = set()
    for attempt in range(repeat):
        wall = cpu = other = 0.0
        for kind in ("Cluster", "Deployment"):
            paths = [f.path for f in manifests.of_kind(kind)]
            for chunk in _chunks(paths, budget):
                run = run_measured([*_check_jsonschema_command(kind), *chunk], manifests.root, OFFLINE_ENV)
                wall += run.wall_s
                cpu += run.cpu_s
                other += run.others_cpu_s
                rss.append(run.max_rss_mib)
                if attempt == 0:
                    commands += 1
                    codes.append(run.exit_code)
                    try:
                        report = json.loads(run.stdout)
                    except json.JSONDecodeError:
                        problem = problem or f"no JSON output (exit {run.exit_code}): {run.stderr.strip()[-400:]}"
                        continue
                    errors += len(report.get("errors", []))
                    parse_errors += len(report.get("parse_errors", []))
                    for item in report.get("errors", []) + report.get("parse_errors", []):
                        flagged.add(os.path.normpath(item["filename"]))
        walls.append(wall)
        cpus.append(cpu)
        others.append(other)
    best = walls.index(min(walls))
    return CheckJsonschemaResult(
        wall_s=walls[best],
        cpu_s=cpus[best],
        max_rss_mib=max(rss),
        commands=commands,
        exit_codes=sorted(set(codes)),
        errors=errors,
        parse_errors=parse_errors,
        flagged=flagged,
        files=len(manifests.files),
        others_cpu_s=others[best],
        problem=problem,
    )


def _check_jsonschema_works_offline(manifests: ManifestSet) -> str | None:
    """None if check-jsonschema validates known-good files of each kind offline, else why not."""
    for kind in ("Cluster", "Deployment"):
        good = [f.path for f in manifests.of_kind(kind) if f.mistake is None][:3]
        run = run_measured([*_check_jsonschema_command(kind), *good], manifests.root, OFFLINE_ENV)
        if run.exit_code != 0:
            detail = (run.stdout + run.stderr).strip()
            return f"check-jsonschema rejects valid {kind} files offline (exit {run.exit_code}): {detail[-600:]}"
    return None


def startup_floor() -> Run:
    """`driftwarden --version`: interpreter start-up plus the imports every command pays for."""
    runs = [run_measured([tool("driftwarden"), "--version"], REPO) for _ in range(3)]
    return Run(
        wall_s=statistics.median(r.wall_s for r in runs),
        cpu_s=statistics.median(r.cpu_s for r in runs),
        max_rss_mib=max(r.max_rss_mib for r in runs),
        exit_code=max(r.exit_code for r in runs),
        stdout=runs[0].stdout,
        stderr=runs[0].stderr,
    )


_PROFILE = """
import cProfile, pathlib, pstats, sys, tempfile
from driftwarden.manifests.validation import validate_paths

def show(title, run, orders):
    profile = cProfile.Profile()
    profile.enable()
    run()
    profile.disable()
    stats = pstats.Stats(profile).strip_dirs()
    for order in orders:
        print(f"-- {title}: top 15 by {order} --")
        stats.sort_stats(order).print_stats(15)

show("cold (one process, no cache)", lambda: validate_paths(["manifests"], cache_dir=None, workers=1),
     ("tottime", "cumulative"))
with tempfile.TemporaryDirectory() as cache:
    validate_paths(["manifests"], cache_dir=pathlib.Path(cache))
    show("warm (every file cached)", lambda: validate_paths(["manifests"], cache_dir=pathlib.Path(cache)),
         ("tottime", "cumulative"))
"""


def profile(manifests: ManifestSet) -> str:
    """cProfile of a cold run in one process (worker processes would hide it), then of a warm one."""
    run = run_measured([tool("python"), "-c", _PROFILE], manifests.root)
    return run.stdout if run.exit_code == 0 else run.stderr


# --- reporting ------------------------------------------------------------------------------


def _verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def _warn_if_busy(when: str) -> None:
    """Other processes on the machine stretch wall times; CPU times suffer much less."""
    load = os.getloadavg()[0]
    cpus = os.cpu_count() or 1
    busy = "" if load < 0.5 * cpus else "  ! the machine is busy: wall times will be inflated"
    print(f"load average (1 min) {when}: {load:.2f} on {cpus} CPUs{busy}", flush=True)


def _versions() -> str:
    driftwarden = run_measured([tool("driftwarden"), "--version"], REPO).stdout.strip()
    cjs = run_measured([tool("check-jsonschema"), "--version"], REPO).stdout.strip()
    return f"{driftwarden}; {cjs}; Python {platform.python_version()}; {os.cpu_count()} CPUs; {platform.machine()}"


@dataclass
class Measurement:
    manifests: ManifestSet
    driftwarden: DriftwardenResult
    check_jsonschema: CheckJsonschemaResult


def _noisy(wall_s: float, others_cpu_s: float) -> str:
    """'*' when other processes used more than a quarter of a CPU while this was timed."""
    return "*" if others_cpu_s > 0.25 * wall_s else " "


def print_table(rows: Sequence[Measurement]) -> None:
    header = (
        f"{'N':>6}  {'dw cold s':>9} {'files/s':>8} {'RSS MiB':>7}  {'dw warm s':>9} {'files/s':>8} {'RSS MiB':>7}"
        f"  {'cjs s':>7} {'files/s':>8} {'RSS MiB':>7}  {'speed-up':>8}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        n = len(row.manifests.files)
        dw, cjs = row.driftwarden, row.check_jsonschema
        print(
            f"{n:>6}  {dw.cold.wall_s:>8.2f}{_noisy(dw.cold.wall_s, dw.cold.others_cpu_s)}"
            f" {n / dw.cold.wall_s:>8.0f} {dw.cold.max_rss_mib:>7.0f}"
            f"  {dw.warm.wall_s:>8.3f}{_noisy(dw.warm.wall_s, dw.warm.others_cpu_s)}"
            f" {n / dw.warm.wall_s:>8.0f} {dw.warm.max_rss_mib:>7.0f}"
            f"  {cjs.wall_s:>6.2f}{_noisy(cjs.wall_s, cjs.others_cpu_s)} {n / cjs.wall_s:>8.0f} {cjs.max_rss_mib:>7.0f}"
            f"  {cjs.wall_s / dw.cold.wall_s:>7.1f}x"
        )
    print(f"{'target':>6}  {'<= 5 s':>9} {'':>8} {'':>7}  {'<= 0.3 s':>9} {'':>8} {'':>7}  {'':>7} {'':>8} {'':>7}  {'>= 3x':>8}")
    print("(targets are stated for N = 10,000; speed-up = check-jsonschema s / driftwarden cold s;")
    print(" RSS = peak of the largest single process; check-jsonschema s = sum over its commands;")
    print(" * = other processes used over a quarter of a CPU meanwhile: that wall time is inflated)")


def print_targets(rows: Sequence[Measurement]) -> None:
    at = [r for r in rows if len(r.manifests.files) == TARGET_AT] or [max(rows, key=lambda r: len(r.manifests.files))]
    row = at[0]
    n = len(row.manifests.files)
    dw, cjs = row.driftwarden, row.check_jsonschema
    speedup = cjs.wall_s / dw.cold.wall_s
    note = "" if n == TARGET_AT else f" (the targets are stated for N = {TARGET_AT:,})"
    print(f"\nTargets at N = {n:,}{note}:")
    print(f"  cold      {dw.cold.wall_s:6.2f} s   target <= {TARGET_COLD_S} s   {_verdict(dw.cold.wall_s <= TARGET_COLD_S)}")
    print(f"  warm      {dw.warm.wall_s:6.3f} s   target <= {TARGET_WARM_S} s   {_verdict(dw.warm.wall_s <= TARGET_WARM_S)}")
    print(f"  speed-up  {speedup:6.1f} x   target >= {TARGET_SPEEDUP:.0f} x     {_verdict(speedup >= TARGET_SPEEDUP)}"
          f"   (ratio driftwarden cold / check-jsonschema = {dw.cold.wall_s / cjs.wall_s:.2f};"
          f" in CPU time: {dw.cold.cpu_s / cjs.cpu_s:.2f})")  # fmt: skip


def print_details(row: Measurement) -> None:
    n = len(row.manifests.files)
    dw, cjs = row.driftwarden, row.check_jsonschema
    report = dw.report
    errors = report.get("errors", [])
    broken = row.manifests.broken
    print(f"\nN = {n:,}: {len(row.manifests.of_kind('Cluster')):,} Clusters, {len(row.manifests.of_kind('Deployment')):,} "
          f"Deployments, {len(broken):,} files broken on purpose ({len(broken) / n:.0%})")  # fmt: skip
    located = sum(1 for e in errors if isinstance(e.get("line"), int) and e["line"] >= 1)
    print(
        f"  driftwarden: exit cold {dw.cold.exit_code} / warm {dw.warm.exit_code} "
        f"({'as expected' if dw.cold.exit_code == dw.warm.exit_code == 1 else '! expected 1'}); "
        f"{len(errors):,} errors in {len(dw.flagged):,} files, {located:,} with a line number; "
        f"{len(report.get('warnings', [])):,} warnings; objects {report.get('objects')}"
    )
    print(
        f"    CPU s (user+sys, incl. workers): cold {dw.cold.cpu_s:.2f}, warm {dw.warm.cpu_s:.2f}; "
        f"wall cold {dw.cold.wall_s:.2f} s, warm {dw.warm.wall_s:.3f} s; other processes' CPU s "
        f"meanwhile: cold {dw.cold.others_cpu_s:.2f}, warm {dw.warm.others_cpu_s:.2f}"
    )
    if dw.cold.stdout != dw.warm.stdout:
        print("    ! the warm run's report differs from the cold run's")
    if dw.in_process:
        split = ", ".join(
            f"{k} {v:.3f} s" if isinstance(v, float) else f"{k} {v}" for k, v in dw.in_process.items()
        )
        print(f"    warm, in one process: {split}")
    print(
        f"  check-jsonschema: {cjs.commands} commands, exit codes {cjs.exit_codes}; {cjs.errors:,} schema errors "
        f"+ {cjs.parse_errors:,} parse errors in {len(cjs.flagged):,} files; CPU {cjs.cpu_s:.2f} s "
        f"(other processes meanwhile: {cjs.others_cpu_s:.2f})"
    )
    if cjs.problem:
        print(f"    ! {cjs.problem}")
    print("    (no line numbers, only JSON paths; a parse error ends the file; no checks across files)")
    print(f"  {'mistake':<18} {'files':>6} {'driftwarden':>12} {'check-jsonschema':>17}")
    by_mistake: dict[str, list[str]] = {}
    for path, mistake in broken.items():
        by_mistake.setdefault(mistake, []).append(path)
    for mistake in MISTAKES:
        paths = by_mistake.get(mistake, [])
        found_dw = sum(1 for p in paths if p in dw.flagged)
        found_cjs = sum(1 for p in paths if p in cjs.flagged)
        print(f"  {mistake:<18} {len(paths):>6} {found_dw:>12} {found_cjs:>17}")
    valid_dw = len(dw.flagged - broken.keys())
    valid_cjs = len(cjs.flagged - broken.keys())
    print(f"  {'valid files flagged':<18} {n - len(broken):>6} {valid_dw:>12} {valid_cjs:>17}")
    if valid_dw:
        sample = sorted(dw.flagged - broken.keys())[:3]
        messages = [f"{e['file']}:{e.get('line')}: {e.get('message')}" for e in errors if e.get("file") in sample][:3]
        print("    ! driftwarden flagged valid files, e.g.: " + " | ".join(messages))


# --- main -----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--sizes", default="1000,10000", help="comma-separated manifest counts (default: 1000,10000)")
    parser.add_argument("--keep", type=Path, metavar="DIR", help="generate into DIR and keep it (default: a temp dir)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per measurement; the fastest is shown (default: 1)")
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of the largest set (one process)")
    args = parser.parse_args(argv)
    try:
        args.sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--sizes must be comma-separated whole numbers, not {args.sizes!r}")
    if not args.sizes or min(args.sizes) < 10 or args.repeat < 1:
        parser.error("sizes must be at least 10 and --repeat at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    print(f"driftwarden validate benchmark — {_versions()}")
    _warn_if_busy("at start")
    floor = startup_floor()
    print(f"start-up floor (`driftwarden --version`, median of 3): {floor.wall_s:.3f} s, peak RSS {floor.max_rss_mib:.0f} MiB\n")
    with tempfile.TemporaryDirectory(prefix="dw-bench-") as scratch_dir:
        base = args.keep.resolve() if args.keep else Path(scratch_dir)
        rows: list[Measurement] = []
        for size in args.sizes:
            root = base / f"n{size}"
            shutil.rmtree(root, ignore_errors=True)
            started = time.perf_counter()
            manifests = generate(root, size)
            print(f"generated {size:,} manifests in {time.perf_counter() - started:.1f} s under {root}", flush=True)
            dw = run_driftwarden(manifests, args.repeat, Path(scratch_dir) / f"scratch-{size}")
            cjs = run_check_jsonschema(manifests, args.repeat)
            rows.append(Measurement(manifests, dw, cjs))
        print()
        print_table(rows)
        print_targets(rows)
        for row in rows:
            print_details(row)
        if args.profile:
            largest = max(rows, key=lambda r: len(r.manifests.files))
            print(f"\ncProfile, N = {len(largest.manifests.files):,}:")
            print(profile(largest.manifests))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
