"""The `ssm.parameter` provider against moto's server: the rendered configuration of a Deployment."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from driftwarden.engine.graph import OWNERSHIP_TAGS, TAG_MANAGED_BY, Resource, build_graph
from driftwarden.engine.observe import context_for
from driftwarden.engine.plan import diff_fields, diff_tags, resolve
from driftwarden.errors import ProviderError
from driftwarden.manifests.validation import validate_documents
from driftwarden.providers.base import Context, Observed, converge
from driftwarden.providers.calls import CountingObserver
from driftwarden.providers.ssm_parameter import SsmParameter

ACCOUNT_ID = "111111111111"
REGION = "us-east-1"
NAME = "/driftwarden/dev/etl/configuration"
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
"""

provider = SsmParameter()


@pytest.fixture
def resource() -> Resource:
    result = validate_documents([("m.yaml", MANIFESTS.encode())])
    assert result.valid, [str(p) for p in result.errors]
    found = [r for r in build_graph(result.clusters, result.deployments) if r.type == "ssm.parameter"]
    assert len(found) == 1
    return found[0]


@pytest.fixture
def observer() -> CountingObserver:
    return CountingObserver()


@pytest.fixture
def ctx(aws: Any, observer: CountingObserver, resource: Resource) -> Context:
    return context_for(aws.sessions(observer), resource.account, REGION, "driftwarden")


@pytest.fixture
def ssm(aws: Any) -> Any:
    """SSM inside the target account, out of band."""
    return aws.account_client(ACCOUNT_ID, "ssm")


def desired(resource: Resource) -> dict[str, Any]:
    return provider.normalize_desired(resolve(resource.desired, {}))


def read_one(ctx: Context, resource: Resource) -> Observed | None:
    found = [o for o in provider.read(ctx) if o.key == resource.key]
    assert len(found) <= 1
    return found[0] if found else None


def drift(ctx: Context, resource: Resource) -> tuple[Observed, list[str]]:
    observed = read_one(ctx, resource)
    assert observed is not None
    changes = diff_fields(desired(resource), observed.fields, skip=provider.create_only)
    changes += diff_tags(resource.tags, observed.tags)
    return observed, sorted({c.path.split(".")[0] for c in changes})


def tags_of(ssm: Any, name: str = NAME) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in ssm.list_tags_for_resource(ResourceType="Parameter", ResourceId=name)["TagList"]}


def test_created_parameter_reads_back_without_diff_and_a_second_read_changes_nothing(ctx, resource, ssm, observer):
    """Create then read gives an empty diff, and reading again makes no mutating call."""
    created = provider.create(ctx, resource, desired(resource))
    observed = read_one(ctx, resource)
    assert observed is not None
    assert diff_fields(desired(resource), observed.fields, skip=provider.create_only) == []
    assert diff_tags(resource.tags, observed.tags) == []
    assert set(observed.fields) == set(resource.desired)
    assert created.fields == observed.fields
    parameter = ssm.get_parameter(Name=NAME)["Parameter"]
    assert json.loads(parameter["Value"])["deployment"] == "etl"
    assert observed.attributes == {"id": NAME, "Arn": parameter["ARN"]}

    observer.reset()
    provider.read(ctx)
    assert observer.mutating_calls() == 0


def test_values_are_read_ten_names_per_call_and_tags_from_the_index(ctx, resource):
    """Twelve parameters cost two GetParameters calls and one tagging-index page, not one call each."""
    copies = [
        dataclasses.replace(resource, key=f"{resource.key}-{i}", component=f"ssm-parameter/copy-{i}",
                            tags={**resource.tags, "driftwarden:component": f"ssm-parameter/copy-{i}"},
                            desired={**resource.desired, "Name": f"{NAME}-{i:02d}"})
        for i in range(12)
    ]
    for copy in copies:
        provider.create(ctx, copy, desired(copy))
    calls: list[str] = []
    for service in ("ssm", "resourcegroupstaggingapi"):  # the same cached clients the provider uses
        ctx.client(service).meta.events.register(f"before-call.{service}.*",
                                                 lambda model, **_: calls.append(model.name))

    found = provider.read(ctx)

    assert sorted(o.id for o in found) == sorted(c.desired["Name"] for c in copies)
    assert {o.id: o.tags for o in found} == {c.desired["Name"]: c.tags for c in copies}
    assert calls.count("GetParameters") == 2
    assert calls.count("GetResources") == 1
    assert "ListTagsForResource" not in calls
    # Index tags may be minutes old: the engine re-reads before acting on them.
    assert not any(o.confirmed for o in found)
    (fresh,) = [provider.refresh(ctx, found[0])]
    assert fresh is not None and fresh.confirmed and fresh.tags == found[0].tags


def test_a_parameter_the_index_does_not_list_yet_is_asked_for_its_tags(ctx, resource, monkeypatch):
    """Until the tagging index lists a new parameter, its tags come from ListTagsForResource."""
    from driftwarden.providers import tagging

    provider.create(ctx, resource, desired(resource))
    monkeypatch.setattr(tagging, "tags_by_arn", lambda ctx, resource_type: {})

    (found,) = provider.read(ctx)

    assert found.confirmed and found.tags == resource.tags


def test_value_changed_out_of_band_is_seen_and_repaired(ctx, resource, ssm):
    """A value overwritten with the SSM API shows as Value drift and update writes Git's back."""
    provider.create(ctx, resource, desired(resource))
    ssm.put_parameter(Name=NAME, Value='{"executor":"HACKED"}', Type="String", Overwrite=True)

    observed, changed = drift(ctx, resource)
    assert changed == ["Value"]
    assert observed.fields["Value"] == '{"executor":"HACKED"}'

    repaired = converge(provider, ctx, resource, desired(resource), observed, changed)
    assert diff_fields(desired(resource), repaired.fields) == []
    assert ssm.get_parameter(Name=NAME)["Parameter"]["Value"] == resource.desired["Value"]
    assert drift(ctx, resource)[1] == []


def test_user_tag_removed_out_of_band_is_put_back_and_foreign_tags_stay(ctx, resource, ssm):
    """update(changed=["tags"]) restores our tags without removing tags someone else added."""
    provider.create(ctx, resource, desired(resource))
    ssm.remove_tags_from_resource(ResourceType="Parameter", ResourceId=NAME, TagKeys=["team"])
    ssm.add_tags_to_resource(ResourceType="Parameter", ResourceId=NAME, Tags=[{"Key": "cost-center", "Value": "42"}])

    observed, changed = drift(ctx, resource)
    assert changed == ["tags"]
    converge(provider, ctx, resource, desired(resource), observed, changed)

    tags = tags_of(ssm)
    assert tags["team"] == "data"
    assert tags["cost-center"] == "42"
    assert drift(ctx, resource)[1] == []


def test_delete_removes_it_and_twice_is_fine(ctx, resource, ssm):
    """After delete the parameter is gone from AWS and from read; deleting again is not an error."""
    observed = provider.create(ctx, resource, desired(resource))
    provider.delete(ctx, observed)

    assert read_one(ctx, resource) is None
    assert ssm.get_parameters(Names=[NAME])["InvalidParameters"] == [NAME]
    provider.delete(ctx, observed)


def test_untag_releases_the_parameter_but_keeps_it(ctx, resource, ssm):
    """After untag the parameter is no longer read as ours, yet it exists with its value and user tags."""
    observed = provider.create(ctx, resource, desired(resource))
    provider.untag(ctx, observed)

    assert read_one(ctx, resource) is None
    assert provider.refresh(ctx, observed) is None
    tags = tags_of(ssm)
    assert not set(OWNERSHIP_TAGS) & set(tags)
    assert tags["team"] == "data"
    assert ssm.get_parameter(Name=NAME)["Parameter"]["Value"] == resource.desired["Value"]


def test_parameters_without_our_managed_by_tag_are_never_read(ctx, ssm):
    """Parameters of nobody, or of another driftwarden instance, are invisible to this instance."""
    ssm.put_parameter(Name="/plain", Value="x", Type="String")
    ssm.put_parameter(Name="/other-instance", Value="x", Type="String",
                      Tags=[{"Key": TAG_MANAGED_BY, "Value": "driftwarden-staging"},
                            {"Key": "driftwarden:owner", "Value": "Deployment/etl"},
                            {"Key": "driftwarden:component", "Value": "ssm-parameter/configuration"}])
    ssm.put_parameter(Name="/mentions-us", Value="x", Type="String", Tags=[{"Key": "note", "Value": "driftwarden"}])
    assert provider.read(ctx) == []


def test_create_retried_after_a_crash_finishes_the_same_parameter(ctx, resource, ssm):
    """A second create of a parameter that exists with our tags converges it instead of failing."""
    provider.create(ctx, resource, desired(resource))
    ssm.put_parameter(Name=NAME, Value="half-written", Type="String", Overwrite=True)
    ssm.remove_tags_from_resource(ResourceType="Parameter", ResourceId=NAME, TagKeys=["team"])

    again = provider.create(ctx, resource, desired(resource))
    assert diff_fields(desired(resource), again.fields) == []
    assert diff_tags(resource.tags, again.tags) == []
    assert [o.id for o in provider.read(ctx)] == [NAME]


def test_create_never_overwrites_someone_elses_parameter_of_the_same_name(ctx, resource, ssm):
    """A name taken by a parameter without our tags is an error and its value is left alone."""
    ssm.put_parameter(Name=NAME, Value="theirs", Type="String")

    with pytest.raises(ProviderError) as raised:
        provider.create(ctx, resource, desired(resource))

    assert raised.value.code == "ParameterAlreadyExists"
    assert ssm.get_parameter(Name=NAME)["Parameter"]["Value"] == "theirs"
    assert tags_of(ssm) == {}


def test_a_parameter_raised_to_advanced_out_of_band_cannot_be_lowered_in_place(ctx, resource, ssm):
    """Advanced back to Standard is refused at plan time with the reason; a Value change alone is fine."""
    provider.create(ctx, resource, desired(resource))
    unchanged = read_one(ctx, resource)
    assert provider.check_update(desired(resource), unchanged) is None
    ssm.put_parameter(Name=NAME, Value=resource.desired["Value"], Type="String", Tier="Advanced", Overwrite=True)

    observed, changed = drift(ctx, resource)
    assert changed == ["Tier"]
    reason = provider.check_update(desired(resource), observed)
    assert reason is not None and "Advanced" in reason and NAME in reason
