"""Shared pieces of the EC2 network provider tests, and tests of `providers/ec2.py` itself.

`Network` is one cluster's network as driftwarden models it (built from a real manifest
through validation and the graph) plus a driftwarden `Context` into an isolated moto account
and an out-of-band boto3 client for making drift. Providers are exercised through the
registry, exactly as the engine calls them; dependencies are created with their own providers.
"""

from __future__ import annotations

from typing import Any

import pytest

from driftwarden.engine.graph import OWNERSHIP_TAGS, TAG_MANAGED_BY, Resource, build_graph
from driftwarden.engine.observe import context_for
from driftwarden.errors import NotFoundError, PermanentProviderError
from driftwarden.manifests.validation import validate_documents

# Importing a provider module registers its provider.
from driftwarden.providers import (  # noqa: F401
    elastic_ip,
    internet_gateway,
    nat_gateway,
    route_table,
    security_group,
    subnet,
    vpc,
)
from driftwarden.providers.base import Observed, converge
from driftwarden.providers.calls import CountingObserver, iam_action
from driftwarden.providers.ec2 import absent, client_token, is_absent, status_of
from provider_world import ProviderWorld

ACCOUNT = "210987654321"
REGION = "us-east-1"
INSTANCE = "driftwarden"

MANIFEST = f"""\
apiVersion: driftwarden/v1
kind: Cluster
metadata: {{name: net}}
spec:
  account: {{id: "{ACCOUNT}", externalId: ext-net}}
  region: {REGION}
  vpcSubnetRange: 10.20.0.0/16
  tags: {{team: data}}
"""


def cluster_resources(manifest: str = MANIFEST) -> dict[str, Resource]:
    """The Cluster's resources by component (`vpc`, `subnet/public-a`, ...)."""
    result = validate_documents([("m.yaml", manifest.encode())])
    assert result.valid, [str(p) for p in result.errors]
    return {r.component: r for r in build_graph(result.clusters, result.deployments)}


def make_network(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, manifest: str = MANIFEST) -> Network:
    """A `Network` in a freshly reset moto, reset without AWS managed IAM policies.

    With ``MOTO_IAM_LOAD_MANAGED_POLICIES`` on (the sandbox turns it on for EKS), moto loads
    the ~1,000 AWS managed policies into every account whenever it creates *or resets* one,
    which costs seconds per test. The network providers never use them, so the setting is off
    while this test resets and runs (the `aws` fixture is requested only after it is set);
    the next test's reset starts from scratch with the setting restored.
    """
    monkeypatch.setenv("MOTO_IAM_LOAD_MANAGED_POLICIES", "false")
    return Network(request.getfixturevalue("aws"), manifest)


class Network(ProviderWorld):
    """One cluster's network resources, a driftwarden context and an out-of-band EC2 client."""

    def __init__(self, aws: Any, manifest: str = MANIFEST) -> None:
        super().__init__()
        self.resources = cluster_resources(manifest)
        account = self.resources["vpc"].account
        self.observer = CountingObserver()
        self.sessions = aws.sessions(self.observer)
        self.ctx = context_for(self.sessions, account, REGION, INSTANCE)
        # Out of band: what a person with console access does behind driftwarden's back.
        self.ec2 = aws.account_client(account.id, "ec2", REGION)

    def tags_of(self, resource_id: str) -> dict[str, str]:
        found = self.ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [resource_id]}])["Tags"]
        return {t["Key"]: t["Value"] for t in found}


def assert_contract(net: Network, component: str) -> Observed:
    """Create then read: an empty diff, what create returned matches, and a re-read changes nothing."""
    created = net.observed[component]
    observed = net.read_one(component)
    assert observed.id == created.id
    assert net.diff(component, observed) == []
    assert net.diff(component, created) == []
    assert dict(observed.fields) == dict(created.fields)
    assert dict(observed.attributes) == dict(created.attributes)
    net.observer.reset()
    again = net.read_one(component)
    assert again == observed
    assert net.observer.mutating_calls() == 0
    assert net.observer.count(result="ok") > 0
    return observed


def assert_tag_drift_repaired(net: Network, component: str) -> None:
    """A user tag removed out of band shows as tag drift and `update(["tags"])` puts it back."""
    observed = net.read_one(component)
    net.ec2.delete_tags(Resources=[observed.id], Tags=[{"Key": "team"}])
    drifted = net.read_one(component)
    assert "team" not in drifted.tags
    assert net.changed(component, drifted) == ["tags"]
    net.ec2.create_tags(Resources=[observed.id], Tags=[{"Key": "extra", "Value": "kept"}])
    drifted = net.read_one(component)
    returned = net.update(component, drifted)
    assert returned.tags["team"] == "data"
    healed = net.read_one(component)
    assert net.diff(component, healed) == []
    assert healed.tags["extra"] == "kept"  # tags we do not manage are left alone


def assert_untag_releases(net: Network, component: str) -> str:
    """Untag leaves the resource in AWS without our tags, and read no longer returns it."""
    observed = net.read_one(component)
    net.provider(component).untag(net.ctx, observed)
    assert net.read(component) == []
    remaining = net.tags_of(observed.id)
    assert not set(OWNERSHIP_TAGS) & set(remaining)
    assert remaining["team"] == "data"
    return observed.id


def assert_delete_is_idempotent(net: Network, component: str) -> Observed:
    """Delete makes read() lose the resource; deleting it again is not an error."""
    observed = net.read_one(component)
    provider = net.provider(component)
    provider.delete(net.ctx, observed)
    assert net.read(component) == []
    provider.delete(net.ctx, observed)
    assert net.read(component) == []
    return observed


def foreign_tags(instance: str | None) -> list[dict[str, str]]:
    """Tags that look like ours but belong to another instance (or to nobody)."""
    tags = [
        {"Key": "driftwarden:owner", "Value": "Cluster/net"},
        {"Key": "driftwarden:component", "Value": "foreign"},
    ]
    if instance is not None:
        tags.append({"Key": TAG_MANAGED_BY, "Value": instance})
    return tags


# --- tests of the shared helper module -----------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "status"),
    [
        ("pending", "pending"),
        ("available", "ready"),
        ("failed", "failed"),
        ("failed-insufficient-capacity", "failed"),
        ("deleting", "deleting"),
        ("deleted", "deleting"),
        (None, "ready"),
        ("Pending", "pending"),
    ],
)
def test_ec2_states_map_onto_engine_statuses(state, status):
    """Transitional EC2 states are pending, failures failed, deletion deleting, the rest ready."""
    assert status_of(state) == status


def test_client_tokens_are_deterministic_and_distinct():
    """The same key gives the same token (a retry is recognised); another key another token."""
    assert client_token("Cluster/a/nat-gateway/a") == client_token("Cluster/a/nat-gateway/a")
    assert client_token("Cluster/a/nat-gateway/a") != client_token("Cluster/a/nat-gateway/b")
    assert len(client_token("x")) <= 64


def test_absent_swallows_only_the_codes_it_is_given():
    """Not-found codes named by the caller mean "already gone"; any other error goes through."""
    with absent("InvalidVpcID.NotFound"):
        raise NotFoundError("gone", code="InvalidVpcID.NotFound")
    with pytest.raises(NotFoundError), absent("InvalidVpcID.NotFound"):
        raise NotFoundError("gone", code="InvalidSubnetID.NotFound")
    with pytest.raises(PermanentProviderError), absent("InvalidVpcID.NotFound"):
        raise PermanentProviderError("no", code="DependencyViolation")
    assert is_absent(NotFoundError("x", code="A"), ["A"])
    assert not is_absent(ValueError("A"), ["A"])


# --- declared permissions against the calls really made ---------------------------------------------

NETWORK = (
    "vpc", "subnet/public-a", "subnet/public-b", "subnet/private-a", "subnet/private-b", "internet-gateway",
    "elastic-ip/nat-a", "nat-gateway/a", "route-table/public", "route-table/private-a", "security-group/cluster",
)


def _calls(net: Network) -> set[str]:
    """IAM actions of the calls made since the last reset (assuming the role is not ours to declare)."""
    made = {iam_action(service, operation) for service, operation, _ in net.observer.calls}
    net.observer.reset()
    return made - {"sts:AssumeRole"}


def test_every_call_an_ec2_provider_makes_is_declared_in_its_permissions(request, monkeypatch):
    """Create, read, refresh, update (every field and tags), untag and delete call only what `permissions` lists."""
    net = make_network(request, monkeypatch)
    undeclared: dict[str, set[str]] = {}

    def check(component: str, operation: str) -> None:
        provider = net.provider(component)
        extra = _calls(net) - set(provider.permissions[operation])
        if extra:
            undeclared[f"{provider.type} {operation}"] = extra

    for component in NETWORK:
        net.observer.reset()
        net.create(component)
        check(component, "create")
    for component in NETWORK:
        provider = net.provider(component)
        net.observer.reset()
        observed = net.read_one(component)
        check(component, "read")
        provider.refresh(net.ctx, observed)
        check(component, "read")
        mutable = [name for name in net.desired(component) if name not in provider.immutable]
        converge(provider, net.ctx, net.resources[component], net.desired(component), observed, [*mutable, "tags"])
        check(component, "update")
    for component in reversed(NETWORK):
        observed = net.read_one(component)
        net.observer.reset()
        net.provider(component).untag(net.ctx, observed)
        check(component, "untag")
        net.provider(component).delete(net.ctx, observed)
        check(component, "delete")
    assert undeclared == {}
