"""The `secretsmanager.secret` provider against moto's server: content by hash, never by value."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from driftwarden.engine.graph import OWNERSHIP_TAGS, TAG_MANAGED_BY, Resource, build_graph
from driftwarden.engine.observe import context_for
from driftwarden.engine.plan import diff_fields, diff_tags, resolve
from driftwarden.errors import ProviderError
from driftwarden.manifests.model import SecretSource
from driftwarden.manifests.validation import validate_documents
from driftwarden.providers.base import Context, Observed, converge
from driftwarden.providers.calls import CountingObserver
from driftwarden.providers.secret import (
    TAG_CONTENT_HASH,
    TAG_KEYS,
    SecretsManagerSecret,
    keys_tags,
    secret_payload,
)

ACCOUNT_ID = "111111111111"
REGION = "us-east-1"
NAME = "driftwarden/dev/etl/environment"
MANIFESTS = f"""\
apiVersion: driftwarden/v1
kind: Cluster
metadata: {{name: dev}}
spec:
  account: {{id: "{ACCOUNT_ID}", externalId: ext-dev}}
  tags: {{team: data}}
---
apiVersion: driftwarden/v1
kind: Deployment
metadata: {{name: etl}}
spec:
  cluster: dev
  runtimeVersion: 12.1.0
  environmentVariables:
    - {{key: LOG_LEVEL, value: INFO}}
    - key: DB_PASSWORD
      isSecret: true
      valueFrom: {{env: ETL_DB_PASSWORD}}
    - key: API_TOKEN
      isSecret: true
      valueFrom: {{secretsManagerArn: "arn:aws:secretsmanager:us-east-1:123456789012:secret:api-AbCdEf"}}
"""
# What the control account holds, by source ref. Distinctive so a leak is easy to spot.
SOURCES = {
    "ETL_DB_PASSWORD": "hunter2-db-Zq8",
    "arn:aws:secretsmanager:us-east-1:123456789012:secret:api-AbCdEf": "tok-Vv93-api",
}

provider = SecretsManagerSecret()


def resolver(sources: Mapping[str, str]) -> Callable[[SecretSource], str]:
    return lambda source: sources[source.ref]


def values(resource: Resource, sources: Mapping[str, str]) -> dict[str, str]:
    return {key: sources[source.ref] for key, source in resource.secret_inputs.items()}


@pytest.fixture
def resource() -> Resource:
    result = validate_documents([("m.yaml", MANIFESTS.encode())])
    assert result.valid, [str(p) for p in result.errors]
    found = [r for r in build_graph(result.clusters, result.deployments) if r.type == "secretsmanager.secret"]
    assert len(found) == 1
    return found[0]


@pytest.fixture
def observer() -> CountingObserver:
    return CountingObserver()


@pytest.fixture
def sessions(aws: Any, observer: CountingObserver) -> Any:
    return aws.sessions(observer)


def context(sessions: Any, resource: Resource, sources: Mapping[str, str] = SOURCES) -> Context:
    return context_for(sessions, resource.account, REGION, "driftwarden", resolver(sources))


@pytest.fixture
def ctx(sessions: Any, resource: Resource) -> Context:
    return context(sessions, resource)


@pytest.fixture
def sm(aws: Any) -> Any:
    """Secrets Manager inside the target account, out of band."""
    return aws.account_client(ACCOUNT_ID, "secretsmanager")


def desired(resource: Resource, sources: Mapping[str, str] = SOURCES) -> dict[str, Any]:
    """What the engine plans with: the graph's fields plus the hash of the resolved values."""
    _document, digest = secret_payload(values(resource, sources))
    return provider.normalize_desired(resolve({**resource.desired, "ContentHash": digest}, {}))


def read_one(ctx: Context, resource: Resource) -> Observed | None:
    found = [o for o in provider.read(ctx) if o.key == resource.key]
    assert len(found) <= 1
    return found[0] if found else None


def drift(ctx: Context, resource: Resource, sources: Mapping[str, str] = SOURCES) -> tuple[Observed, list[str]]:
    observed = read_one(ctx, resource)
    assert observed is not None
    changes = diff_fields(desired(resource, sources), observed.fields, skip=provider.create_only)
    changes += diff_tags(resource.tags, observed.tags)
    return observed, sorted({c.path.split(".")[0] for c in changes})


def stored(sm: Any) -> dict[str, str]:
    # By stage, as AWS resolves a plain GetSecretValue: moto answers that from a default version
    # that UpdateSecretVersionStage does not move (a moto gap), AWS from the AWSCURRENT stage.
    return json.loads(sm.get_secret_value(SecretId=NAME, VersionStage="AWSCURRENT")["SecretString"])


def assert_no_value_in(*things: Any, sources: Mapping[str, str] = SOURCES) -> None:
    text = " ".join(repr(t) for t in things)
    for value in sources.values():
        assert value not in text


def test_created_secret_holds_the_resolved_values_and_reads_back_without_diff(ctx, resource, sm, observer):
    """Create stores the JSON of the resolved values; read gives an empty diff without reading values."""
    created = provider.create(ctx, resource, desired(resource))
    assert stored(sm) == {"API_TOKEN": "tok-Vv93-api", "DB_PASSWORD": "hunter2-db-Zq8"}

    observed = read_one(ctx, resource)
    assert observed is not None
    assert diff_fields(desired(resource), observed.fields, skip=provider.create_only) == []
    assert diff_tags(resource.tags, observed.tags) == []
    assert set(observed.fields) == set(desired(resource))
    assert observed.fields["Keys"] == ("API_TOKEN", "DB_PASSWORD")
    assert observed.attributes["Arn"] == sm.describe_secret(SecretId=NAME)["ARN"]
    assert created.fields == observed.fields
    assert_no_value_in(created, observed)

    observer.reset()
    provider.read(ctx)
    assert observer.mutating_calls() == 0
    assert observer.count("secretsmanager", "ListSecrets", "ok") >= 1
    assert observer.count(operation="GetSecretValue") == 0
    assert observer.count(operation="DescribeSecret") == 0  # no call per secret


def test_a_changed_source_value_is_content_drift_and_update_rotates_it(sessions, resource, sm):
    """A new value at the source changes only ContentHash; update writes it and the diff is gone."""
    provider.create(context(sessions, resource), resource, desired(resource))
    rotated = {**SOURCES, "ETL_DB_PASSWORD": "correct-horse-Kp2"}
    ctx = context(sessions, resource, rotated)

    observed, changed = drift(ctx, resource, rotated)
    assert changed == ["ContentHash"]
    updated = converge(provider, ctx, resource, desired(resource, rotated), observed, changed)

    assert stored(sm)["DB_PASSWORD"] == "correct-horse-Kp2"
    assert drift(ctx, resource, rotated)[1] == []
    assert_no_value_in(observed, updated, sources=rotated)
    assert_no_value_in(observed, updated)


def test_going_back_to_an_earlier_value_makes_it_current_again(sessions, resource, sm):
    """A→B→A stores A: the version written for A earlier gets the AWSCURRENT stage back."""
    first = context(sessions, resource)
    provider.create(first, resource, desired(resource))
    rotated = {**SOURCES, "ETL_DB_PASSWORD": "correct-horse-Kp2"}
    second = context(sessions, resource, rotated)
    converge(provider, second, resource, desired(resource, rotated), read_one(second, resource), ["ContentHash"])

    observed, changed = drift(first, resource)
    assert changed == ["ContentHash"]
    converge(provider, first, resource, desired(resource), observed, changed)

    assert stored(sm)["DB_PASSWORD"] == "hunter2-db-Zq8"
    assert drift(first, resource)[1] == []


def test_a_new_secret_variable_changes_keys_and_content(sessions, resource, sm):
    """Adding a variable shows Keys and ContentHash drift; update stores it and records its name."""
    provider.create(context(sessions, resource), resource, desired(resource))
    inputs = {**resource.secret_inputs, "SMTP_PASSWORD": SecretSource("env", "SMTP")}
    grown = dataclasses.replace(resource, secret_inputs=inputs,
                                desired={**resource.desired, "Keys": tuple(sorted(inputs))})
    sources = {**SOURCES, "SMTP": "mail-Pw-77"}
    ctx = context(sessions, grown, sources)

    observed, changed = drift(ctx, grown, sources)
    assert changed == ["ContentHash", "Keys"]
    converge(provider, ctx, grown, desired(grown, sources), observed, changed)

    assert stored(sm)["SMTP_PASSWORD"] == "mail-Pw-77"
    assert drift(ctx, grown, sources)[1] == []


def test_many_variable_names_are_split_over_several_tags_and_read_back_whole(sessions, resource):
    """Names beyond one tag value's 256 characters continue in more tags, come back whole, and shrink again."""
    inputs = {f"VARIABLE_NUMBER_{i:03d}_WITH_A_LONG_NAME": SecretSource("env", "ETL_DB_PASSWORD") for i in range(30)}
    big = dataclasses.replace(resource, secret_inputs=inputs,
                              desired={**resource.desired, "Keys": tuple(sorted(inputs))})
    ctx = context(sessions, big)
    created = provider.create(ctx, big, desired(big))

    chunks = {k: v for k, v in created.tags.items() if k.startswith(TAG_KEYS)}
    assert len(chunks) > 1
    assert all(len(v) <= 256 for v in chunks.values())
    assert read_one(ctx, big).fields["Keys"] == tuple(sorted(inputs))
    assert keys_tags(["A", "B"]) == {TAG_KEYS: "A B"}

    # Back to two variables: the continuation tags go, or they would still count as keys.
    observed, changed = drift(ctx, resource)
    assert changed == ["ContentHash", "Keys"]
    converge(provider, ctx, resource, desired(resource), observed, changed)
    assert drift(ctx, resource)[1] == []
    assert [k for k in read_one(ctx, resource).tags if k.startswith(TAG_KEYS)] == [TAG_KEYS]


def test_description_changed_out_of_band_is_repaired(ctx, resource, sm):
    """A description edited in the console is drift and update puts Git's back."""
    provider.create(ctx, resource, desired(resource))
    sm.update_secret(SecretId=NAME, Description="edited by hand")

    observed, changed = drift(ctx, resource)
    assert changed == ["Description"]
    converge(provider, ctx, resource, desired(resource), observed, changed)
    assert sm.describe_secret(SecretId=NAME)["Description"] == resource.desired["Description"]
    assert drift(ctx, resource)[1] == []


def test_user_tag_removed_out_of_band_is_put_back_and_foreign_tags_stay(ctx, resource, sm):
    """update(changed=["tags"]) restores our tags without removing tags someone else added."""
    provider.create(ctx, resource, desired(resource))
    sm.untag_resource(SecretId=NAME, TagKeys=["team"])
    sm.tag_resource(SecretId=NAME, Tags=[{"Key": "cost-center", "Value": "42"}])

    observed, changed = drift(ctx, resource)
    assert changed == ["tags"]
    converge(provider, ctx, resource, desired(resource), observed, changed)

    tags = {t["Key"]: t["Value"] for t in sm.describe_secret(SecretId=NAME)["Tags"]}
    assert tags["team"] == "data"
    assert tags["cost-center"] == "42"
    assert drift(ctx, resource)[1] == []


def test_delete_schedules_deletion_and_twice_is_fine(ctx, resource, sm):
    """After delete the secret is absent to read (pending deletion, recoverable); deleting again is fine."""
    observed = provider.create(ctx, resource, desired(resource))
    provider.delete(ctx, observed)

    assert read_one(ctx, resource) is None
    assert sm.describe_secret(SecretId=NAME).get("DeletedDate") is not None
    provider.delete(ctx, observed)


def test_creating_again_while_pending_deletion_restores_and_rewrites_it(sessions, resource, sm):
    """A name still held by our deleted secret is restored and gets the new content."""
    ctx = context(sessions, resource)
    observed = provider.create(ctx, resource, desired(resource))
    provider.delete(ctx, observed)
    rotated = {**SOURCES, "ETL_DB_PASSWORD": "after-restore-Jj4"}
    ctx = context(sessions, resource, rotated)

    recreated = provider.create(ctx, resource, desired(resource, rotated))

    assert sm.describe_secret(SecretId=NAME).get("DeletedDate") is None
    assert stored(sm)["DB_PASSWORD"] == "after-restore-Jj4"
    assert recreated.attributes["Arn"] == observed.attributes["Arn"]
    assert drift(ctx, resource, rotated)[1] == []


def test_untag_releases_the_secret_but_keeps_it(ctx, resource, sm):
    """After untag the secret is no longer read as ours, yet it exists with its content and user tags."""
    observed = provider.create(ctx, resource, desired(resource))
    provider.untag(ctx, observed)

    assert read_one(ctx, resource) is None
    tags = {t["Key"]: t["Value"] for t in sm.describe_secret(SecretId=NAME)["Tags"]}
    assert not set(OWNERSHIP_TAGS) & set(tags)
    assert TAG_CONTENT_HASH not in tags
    assert tags["team"] == "data"
    assert stored(sm)["DB_PASSWORD"] == "hunter2-db-Zq8"


def test_secrets_without_our_managed_by_tag_are_never_read(ctx, sm):
    """Secrets of nobody, of another instance, or tagged with our instance name under another key are invisible."""
    sm.create_secret(Name="plain", SecretString="x")
    sm.create_secret(Name="other-instance", SecretString="x",
                     Tags=[{"Key": TAG_MANAGED_BY, "Value": "driftwarden-staging"},
                           {"Key": "driftwarden:owner", "Value": "Deployment/etl"},
                           {"Key": "driftwarden:component", "Value": "secret/environment"}])
    # Matches both ListSecrets filters (the key on one tag, the value on another): still not ours.
    sm.create_secret(Name="mixed", SecretString="x",
                     Tags=[{"Key": TAG_MANAGED_BY, "Value": "driftwarden-staging"},
                           {"Key": "note", "Value": "driftwarden"}])
    assert provider.read(ctx) == []


def test_create_never_takes_over_someone_elses_secret_and_never_shows_values(ctx, resource, sm, caplog):
    """A name held by a secret without our tags is an error that names no value; that secret is untouched."""
    sm.create_secret(Name=NAME, SecretString="theirs")
    caplog.set_level(logging.INFO)

    with pytest.raises(ProviderError) as raised:
        provider.create(ctx, resource, desired(resource))

    assert raised.value.code == "ResourceExistsException"
    assert sm.get_secret_value(SecretId=NAME)["SecretString"] == "theirs"
    chain = [raised.value, raised.value.__cause__, raised.value.__context__]
    assert_no_value_in(*(str(e) for e in chain), *chain, caplog.text)
