"""The contract every registered provider keeps, checked against moto's server over HTTP.

One test, parametrised over every resource type `default_providers()` returns, drives the type's
provider the way the engine does (create, read, plan, converge, untag, delete) and checks what
the issue asks of a provider, from its declarations (`TypeInfo`) alone:

* create, then read: the diff against Git is empty, and read reports exactly the declared
  managed fields;
* a second pass (read and plan again) makes no mutating call and plans no change;
* drift on each declared managed field is found by the plan (an update, a replacement, or a
  plan error for a field AWS cannot change);
* a tag removed out of band is found and repaired through the declared tag style;
* untag releases the resource (read no longer returns it), tagging it again adopts it back;
* delete leaves it absent;
* every AWS call made on the way is among the IAM actions the provider declares for that
  operation (what `driftwarden iam-policy` grants).

`CASES` says, per type, which moto gaps its world needs filled; a meta-test fails when a type is
registered without a case, so a new provider cannot skip the contract.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from test_db_subnet_group import make_moto_subnet_groups_behave_like_aws

from driftwarden.engine.graph import TAG_MANAGED_BY, Resource, build_graph
from driftwarden.engine.observe import context_for
from driftwarden.engine.plan import make_plan
from driftwarden.manifests.validation import validate_documents
from driftwarden.providers.base import Provider
from driftwarden.providers.calls import CountingObserver, iam_action
from driftwarden.providers.registry import default_providers
from driftwarden.providers.secret import secret_payload
from driftwarden.providers.secret_sources import sandbox_secret_resolver
from moto_state import fill_eks_tagging_gaps
from provider_world import ProviderWorld

ACCOUNT = "410987654321"
REGION = "us-east-1"
INSTANCE = "driftwarden"
# A user tag from the manifest: what the out-of-band tag removal takes away.
USER_TAG = "team"

# One Cluster (network, EKS, metadata database) and one Deployment (workload role, secret,
# configuration parameter): every resource type driftwarden manages appears in its graph.
MANIFEST = f"""\
apiVersion: driftwarden/v1
kind: Cluster
metadata: {{name: contract}}
spec:
  account: {{id: "{ACCOUNT}", externalId: ext-contract}}
  region: {REGION}
  vpcSubnetRange: 10.60.0.0/16
  natGateways: single
  database: {{engineVersion: "16.3", multiAz: false, allocatedStorageGiB: 20, deletionProtection: false}}
  tags: {{{USER_TAG}: data}}
---
apiVersion: driftwarden/v1
kind: Deployment
metadata: {{name: etl}}
spec:
  cluster: contract
  runtimeVersion: 12.1.0
  workloadIdentity: {{}}
  environmentVariables:
    - {{key: LOG_LEVEL, value: INFO}}
    - key: DB_PASSWORD
      isSecret: true
      valueFrom: {{env: CONTRACT_DB_PASSWORD}}
"""


def _eks(monkeypatch: pytest.MonkeyPatch) -> None:
    fill_eks_tagging_gaps(monkeypatch)


def _rds(monkeypatch: pytest.MonkeyPatch) -> None:
    make_moto_subnet_groups_behave_like_aws(monkeypatch)


def _nothing(_monkeypatch: pytest.MonkeyPatch) -> None:
    return None


# Per registered type: the moto gaps its world needs filled (see moto_state.py). A type whose
# world needs none still has an entry: the meta-test below wants one for every type.
CASES: Mapping[str, Callable[[pytest.MonkeyPatch], None]] = {
    "iam.role": _nothing,
    "ec2.vpc": _nothing,
    "ec2.subnet": _nothing,
    "ec2.internet-gateway": _nothing,
    "ec2.elastic-ip": _nothing,
    "ec2.nat-gateway": _nothing,
    "ec2.route-table": _nothing,
    "ec2.security-group": _nothing,
    "eks.cluster": _eks,
    "eks.nodegroup": _eks,
    "rds.db-subnet-group": _rds,
    "rds.db-instance": _rds,
    "secretsmanager.secret": _nothing,
    "ssm.parameter": _nothing,
}


def graph() -> list[Resource]:
    """The manifest's resources, with the secret's content hash as `plan_once` adds it."""
    result = validate_documents([("m.yaml", MANIFEST.encode())])
    assert result.valid, [str(p) for p in result.errors]
    resolve = sandbox_secret_resolver()
    resources = []
    for resource in build_graph(result.clusters, result.deployments, INSTANCE):
        if resource.secret_inputs:
            _document, digest = secret_payload({k: resolve(s) for k, s in resource.secret_inputs.items()})
            resource = dataclasses.replace(resource, desired={**resource.desired, "ContentHash": digest})
        resources.append(resource)
    return resources


class ContractWorld(ProviderWorld):
    """Every resource of the manifest by key, in one target account, driven by its provider."""

    def __init__(self, aws: Any) -> None:
        super().__init__()
        self.resources = {r.key: r for r in graph()}
        self.calls = CountingObserver()
        account = next(iter(self.resources.values())).account
        self.ctx = context_for(aws.sessions(self.calls), account, REGION, INSTANCE, sandbox_secret_resolver())

    def first_of(self, type_: str) -> str:
        return next(key for key, r in self.resources.items() if r.type == type_)

    def with_dependencies(self, key: str) -> list[str]:
        """`key` and everything it needs, in the order the engine creates them."""
        needed: set[str] = set()
        stack = [key]
        while stack:
            current = stack.pop()
            if current not in needed:
                needed.add(current)
                stack.extend(self.resources[current].depends_on)
        rank = {type_: i for i, type_ in enumerate(self.providers.type_order)}
        position = {k: i for i, k in enumerate(self.resources)}
        return sorted(needed, key=lambda k: (rank[self.resources[k].type], position[k]))

    def actions(self) -> set[str]:
        """IAM actions of the calls made since the last look (assuming the role is not ours to declare)."""
        made = {iam_action(service, operation) for service, operation, result in self.calls.calls if result != "retried"}
        self.calls.reset()
        return made - {"sts:AssumeRole"}

    def undeclared(self, provider: Provider, operation: str) -> set[str]:
        return self.actions() - set(provider.permissions[operation])


def drifted_value(value: Any) -> Any:
    """A value of the same kind that differs from `value`."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, str):
        return f"{value}-drifted"
    if isinstance(value, tuple | list):
        return (*value, "drifted")
    if isinstance(value, Mapping):
        return {**value, "drifted": "by hand"}
    return "drifted"


@pytest.mark.parametrize("type_", sorted(default_providers()))
def test_provider_keeps_the_contract(type_, request, monkeypatch):
    """Create, read, re-plan, drift, tag repair, untag and delete behave as declared and call only declared actions."""
    monkeypatch.setenv("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")  # EKS roles attach AWS managed policies
    CASES[type_](monkeypatch)
    world = ContractWorld(request.getfixturevalue("aws"))
    key = world.first_of(type_)
    provider = world.provider(key)
    info = provider.info
    chain = world.with_dependencies(key)
    for dependency in chain[:-1]:
        world.create(dependency)

    # create -> read: an empty diff, and read reports the declared managed fields, no more.
    world.actions()
    world.create(key)
    assert world.undeclared(provider, "create") == set()
    observed = world.read_one(key)
    assert world.undeclared(provider, "read") == set()
    assert observed.managed_by(INSTANCE) and observed.status in ("ready", "pending")
    assert set(observed.fields) == set(info.managed_fields)
    assert world.diff(key, observed) == []

    # A second pass: read everything it depends on again and plan; nothing to do, nothing changed.
    current = {k: world.read_one(k) for k in chain}
    plan = make_plan([world.resources[k] for k in chain], current.values(), providers=world.providers)
    assert [c.key for c in plan.changes] == [] and plan.errors == []
    assert world.calls.mutating_calls() == 0
    world.actions()
    assert provider.refresh(world.ctx, observed) == observed
    assert world.undeclared(provider, "read") == set()

    # Drift on each declared managed field is found by the plan, as a change or a plan error.
    for name in info.managed_fields:
        if name in info.create_only:
            continue  # set at create time and then someone else's: never compared
        drifted = dataclasses.replace(observed, fields={**observed.fields, name: drifted_value(observed.fields[name])})
        plan = make_plan([world.resources[k] for k in chain], {**current, key: drifted}.values(),
                         providers=world.providers)
        found = [d.path for c in plan.changes if c.key == key for d in c.diff] + [e.field for e in plan.errors]
        assert any(path == name or path.startswith(f"{name}.") for path in found), (name, found)

    # A user tag removed out of band is drift on the tags, repaired through the declared tag style.
    info.tag_style.remove(world.ctx, observed, [USER_TAG])
    drifted = world.read_one(key)
    assert USER_TAG not in drifted.tags and world.changed(key, drifted) == ["tags"]
    world.actions()
    world.update(key, drifted)
    assert world.undeclared(provider, "update") == set()
    assert world.diff(key, world.read_one(key)) == []

    # Untag releases it: it stays in AWS, read no longer returns it; our tags put back adopt it again.
    observed = world.read_one(key)
    world.actions()
    provider.untag(world.ctx, observed)
    assert world.undeclared(provider, "untag") == set()
    assert world.read(key) == []
    info.tag_style.put(world.ctx, observed, world.resources[key].tags)
    observed = world.read_one(key)
    assert observed.tags[TAG_MANAGED_BY] == INSTANCE

    # Delete leaves it absent; deleting what is gone is not an error.
    world.actions()
    provider.delete(world.ctx, observed)
    assert world.undeclared(provider, "delete") == set()
    assert [o.id for o in world.read(key) if o.status != "deleting"] == []
    fresh = provider.refresh(world.ctx, observed)
    assert fresh is None or fresh.status == "deleting"
    provider.delete(world.ctx, observed)


def test_every_registered_provider_has_a_contract_case():
    """A resource type registered without a contract case fails here, so none skips the contract."""
    assert set(CASES) == set(default_providers())


def test_every_type_of_the_manifest_graph_is_exercised():
    """The contract manifest has a resource of every registered type, so every case has something to create."""
    assert {r.type for r in graph()} == set(default_providers())


def test_declared_managed_fields_are_what_git_sets():
    """Each type declares as managed exactly the fields its resources' desired state names."""
    providers = default_providers()
    for resource in graph():
        assert set(providers[resource.type].normalize_desired(resource.desired)) <= set(
            providers[resource.type].info.managed_fields
        ), resource.type

