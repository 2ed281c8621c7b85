"""The DB subnet group provider (`rds.db-subnet-group`) against moto's server over HTTP.

Also home of `Metadata`, the harness shared with `test_db_instance.py`: one cluster's
metadata-database resources built from a real manifest (validation + graph), a driftwarden
`Context` into an isolated moto account, and out-of-band boto3 clients for making drift. The
network the database sits in is only scenery here (the network providers have their own
tests), so it is made directly with boto3 and handed over as resolved `Ref` attributes.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

import driftwarden.providers.db_instance
import driftwarden.providers.db_subnet_group  # noqa: F401  (registers the provider)
from driftwarden.engine.graph import OWNERSHIP_TAGS, TAG_MANAGED_BY, Resource, build_graph
from driftwarden.engine.observe import context_for
from driftwarden.engine.plan import diff_fields, make_plan
from driftwarden.errors import PermanentProviderError
from driftwarden.manifests.validation import validate_documents
from driftwarden.providers.calls import CountingObserver
from driftwarden.providers.registry import default_providers
from provider_world import ProviderWorld

ACCOUNT = "310987654321"
REGION = "us-east-1"
INSTANCE = "driftwarden"
NAME = "driftwarden-meta"  # graph.physical_name("driftwarden", cluster name)

MANIFEST = f"""\
apiVersion: driftwarden/v1
kind: Cluster
metadata: {{name: meta}}
spec:
  account: {{id: "{ACCOUNT}", externalId: ext-meta}}
  region: {REGION}
  vpcSubnetRange: 10.40.0.0/16
  dbInstanceType: db.m6g.large
  database: {{engineVersion: "16.3", multiAz: true, allocatedStorageGiB: 100, deletionProtection: false}}
  tags: {{team: data}}
"""

# The network resources the database depends on, made out of band.
SCENERY = ("vpc", "subnet/private-a", "subnet/private-b", "security-group/cluster")


def cluster_resources(manifest: str = MANIFEST) -> dict[str, Resource]:
    """The Cluster's resources by component (`db-subnet-group`, `db-instance`, ...)."""
    result = validate_documents([("m.yaml", manifest.encode())])
    assert result.valid, [str(p) for p in result.errors]
    return {r.component: r for r in build_graph(result.clusters, result.deployments)}


def with_database(**database: Any) -> str:
    """MANIFEST with other `spec.database` / `spec.dbInstanceType` values."""
    settings = {"engineVersion": '"16.3"', "multiAz": "true", "allocatedStorageGiB": "100",
                "deletionProtection": "false"}
    settings.update({k: v for k, v in database.items() if k != "dbInstanceType"})
    inline = ", ".join(f"{k}: {v}" for k, v in settings.items())
    manifest = MANIFEST.replace(
        'database: {engineVersion: "16.3", multiAz: true, allocatedStorageGiB: 100, deletionProtection: false}',
        f"database: {{{inline}}}",
    )
    return manifest.replace("db.m6g.large", database.get("dbInstanceType", "db.m6g.large"))


class Metadata(ProviderWorld):
    """One cluster's metadata-database resources, a driftwarden context and out-of-band clients."""

    def __init__(self, aws: Any, manifest: str = MANIFEST) -> None:
        super().__init__()
        self.resources = cluster_resources(manifest)
        account = self.resources["db-instance"].account
        self.observer = CountingObserver()
        self.sessions = aws.sessions(self.observer)
        self.ctx = context_for(self.sessions, account, REGION, INSTANCE)
        # Out of band: what a person with console access does behind driftwarden's back.
        self.rds = aws.account_client(account.id, "rds", REGION)
        self.ec2 = aws.account_client(account.id, "ec2", REGION)
        self._scenery()

    def _scenery(self) -> None:
        r = self.resources
        vpc = self.ec2.create_vpc(CidrBlock=r["vpc"].desired["CidrBlock"])["Vpc"]["VpcId"]
        self.attributes[r["vpc"].key] = {"id": vpc}
        for component in ("subnet/private-a", "subnet/private-b"):
            desired = r[component].desired
            subnet = self.ec2.create_subnet(
                VpcId=vpc, CidrBlock=desired["CidrBlock"], AvailabilityZone=desired["AvailabilityZone"]
            )["Subnet"]["SubnetId"]
            self.attributes[r[component].key] = {"id": subnet}
        group = r["security-group/cluster"].desired
        sg = self.ec2.create_security_group(VpcId=vpc, GroupName=group["GroupName"],
                                            Description=group["Description"])["GroupId"]
        self.attributes[r["security-group/cluster"].key] = {"id": sg}

    def id_of(self, component: str) -> str:
        return self.attributes[self.resources[component].key]["id"]


    def tags_of(self, arn: str) -> dict[str, str]:
        return {t["Key"]: t["Value"] for t in self.rds.list_tags_for_resource(ResourceName=arn)["TagList"]}


def foreign_tags(instance: str | None) -> list[dict[str, str]]:
    """Tags that look like ours but belong to another instance (or to nobody)."""
    tags = [
        {"Key": "driftwarden:owner", "Value": "Cluster/meta"},
        {"Key": "driftwarden:component", "Value": "foreign"},
    ]
    if instance is not None:
        tags.append({"Key": TAG_MANAGED_BY, "Value": instance})
    return tags


def make_moto_subnet_groups_behave_like_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """Work around two moto 5 gaps in DB subnet groups, for one test.

    * ModifyDBSubnetGroup drops the group: moto's `RDSBackend.modify_db_subnet_group` pops it
      out of its dictionary and never puts it back (AWS keeps the group, changed).
    * CreateDBSubnetGroup silently replaces a group of the same name, where AWS answers
      DBSubnetGroupAlreadyExists — what a retried create meets.

    The moto server runs in the test process, so these replace two backend methods with ones
    that do what AWS does; `monkeypatch` puts moto back after the test.
    """
    from moto.rds.exceptions import RDSClientError
    from moto.rds.models import RDSBackend

    original_create = RDSBackend.create_subnet_group

    def create_subnet_group(self: Any, subnet_name: str, *args: Any, **kwargs: Any) -> Any:
        if subnet_name.lower() in self.subnet_groups:
            raise RDSClientError("DBSubnetGroupAlreadyExists", f"DB subnet group '{subnet_name}' already exists.")
        return original_create(self, subnet_name, *args, **kwargs)

    def modify_db_subnet_group(self: Any, subnet_name: str, description: str | None, subnets: list[Any]) -> Any:
        group = self.describe_db_subnet_groups(subnet_name)[0]  # raises not-found like AWS
        group.subnets = subnets
        if description is not None:
            group.description = description
        return group

    monkeypatch.setattr(RDSBackend, "create_subnet_group", create_subnet_group)
    monkeypatch.setattr(RDSBackend, "modify_db_subnet_group", modify_db_subnet_group)


@pytest.fixture
def moto_like_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto's DB subnet groups behave as AWS's do (see `make_moto_subnet_groups_behave_like_aws`)."""
    make_moto_subnet_groups_behave_like_aws(monkeypatch)


@pytest.fixture
def meta(aws):
    world = Metadata(aws)
    world.create("db-subnet-group")
    return world


# --- contract ------------------------------------------------------------------------------------


def test_created_group_reads_back_without_diff_and_rereading_mutates_nothing(meta):
    """Create then read gives an empty diff and what create returned; a second read makes no mutating call."""
    created = meta.observed["db-subnet-group"]
    observed = meta.read_one("db-subnet-group")
    assert observed == created
    assert meta.diff("db-subnet-group", observed) == []
    assert observed.fields == {
        "DBSubnetGroupName": NAME,
        "DBSubnetGroupDescription": "driftwarden cluster meta: Airflow metadata database",
        "SubnetIds": tuple(sorted((meta.id_of("subnet/private-a"), meta.id_of("subnet/private-b")))),
    }
    assert observed.attributes == {
        "id": NAME,
        "DBSubnetGroupName": NAME,
        "Arn": f"arn:aws:rds:{REGION}:{ACCOUNT}:subgrp:{NAME}",
    }
    assert observed.status == "ready"
    meta.observer.reset()
    assert meta.read_one("db-subnet-group") == observed
    assert meta.observer.mutating_calls() == 0
    assert meta.observer.count(operation="DescribeDBSubnetGroups", result="ok") == 1


def test_group_names_are_compared_in_the_lower_case_rds_stores(meta):
    """RDS lower-cases subnet group names, so a name with capitals in Git is not drift."""
    provider = meta.provider("db-subnet-group")
    desired = {**meta.desired("db-subnet-group"), "DBSubnetGroupName": NAME.upper()}
    assert diff_fields(provider.normalize_desired(desired), meta.read_one("db-subnet-group").fields) == []


def test_retried_create_returns_our_existing_group_instead_of_failing(meta, moto_like_aws):
    """A create retried after it had in fact succeeded meets AlreadyExists, finds our group and returns it."""
    first = meta.observed["db-subnet-group"]
    meta.observer.reset()
    again = meta.create("db-subnet-group")
    assert meta.observer.count(operation="CreateDBSubnetGroup", result="error") == 1
    assert again == first
    assert len(meta.read("db-subnet-group")) == 1


def test_create_over_someone_elses_group_of_the_same_name_fails(aws, moto_like_aws):
    """A group with our name but not our tags is never taken over by create."""
    world = Metadata(aws)
    world.rds.create_db_subnet_group(
        DBSubnetGroupName=NAME, DBSubnetGroupDescription="not ours",
        SubnetIds=[world.id_of("subnet/private-a"), world.id_of("subnet/private-b")],
        Tags=foreign_tags("someone-else"),
    )
    with pytest.raises(PermanentProviderError) as caught:
        world.create("db-subnet-group")
    assert caught.value.code == "DBSubnetGroupAlreadyExists"
    assert world.tags_of(f"arn:aws:rds:{REGION}:{ACCOUNT}:subgrp:{NAME}")[TAG_MANAGED_BY] == "someone-else"


# --- drift -----------------------------------------------------------------------------------------


def test_subnets_and_description_changed_out_of_band_are_seen_and_repaired(meta, moto_like_aws):
    """A group shrunk to one subnet with a new description by hand drifts on both fields; update restores them."""
    wanted = meta.read_one("db-subnet-group").fields
    meta.rds.modify_db_subnet_group(
        DBSubnetGroupName=NAME, DBSubnetGroupDescription="edited in the console",
        SubnetIds=[meta.id_of("subnet/private-a")],
    )
    drifted = meta.read_one("db-subnet-group")
    assert drifted.fields["SubnetIds"] == (meta.id_of("subnet/private-a"),)
    assert meta.changed("db-subnet-group", drifted) == ["DBSubnetGroupDescription", "SubnetIds"]
    returned = meta.update("db-subnet-group", drifted)
    assert returned.fields == wanted
    healed = meta.read_one("db-subnet-group")
    assert meta.diff("db-subnet-group", healed) == []
    group = meta.rds.describe_db_subnet_groups(DBSubnetGroupName=NAME)["DBSubnetGroups"][0]
    assert len(group["Subnets"]) == 2


def test_removed_user_tag_is_put_back_and_other_tags_are_kept(meta):
    """A user tag deleted out of band is tag drift, repaired by update(changed=["tags"]) without touching others."""
    arn = meta.read_one("db-subnet-group").attributes["Arn"]
    meta.rds.remove_tags_from_resource(ResourceName=arn, TagKeys=["team"])
    meta.rds.add_tags_to_resource(ResourceName=arn, Tags=[{"Key": "extra", "Value": "kept"}])
    drifted = meta.read_one("db-subnet-group")
    assert "team" not in drifted.tags
    assert meta.changed("db-subnet-group", drifted) == ["tags"]
    meta.observer.reset()
    returned = meta.update("db-subnet-group", drifted)
    assert returned.tags["team"] == "data"
    assert meta.observer.count(operation="ModifyDBSubnetGroup") == 0  # tags only: the group is not modified
    healed = meta.read_one("db-subnet-group")
    assert meta.diff("db-subnet-group", healed) == []
    assert healed.tags["extra"] == "kept"


def test_renamed_group_is_a_plan_error_naming_the_field(meta):
    """A different group name is never applied in place: the plan reports DBSubnetGroupName and why."""
    observed = meta.read_one("db-subnet-group")
    resource = meta.resources["db-subnet-group"]
    renamed = dataclasses.replace(resource, desired={**resource.desired, "DBSubnetGroupName": "driftwarden-other"})
    plan = make_plan([renamed], [observed], providers=default_providers())
    assert plan.changes == []
    assert [(e.field, e.key) for e in plan.errors] == [("DBSubnetGroupName", resource.key)]
    assert "cannot be renamed" in plan.errors[0].message


# --- delete, untag, ownership ------------------------------------------------------------------------


def test_deleted_group_is_no_longer_read_and_deleting_twice_is_fine(meta):
    """After delete the group is gone from AWS and from read(); a second delete succeeds."""
    observed = meta.read_one("db-subnet-group")
    provider = meta.provider("db-subnet-group")
    provider.delete(meta.ctx, observed)
    assert meta.read("db-subnet-group") == []
    assert meta.rds.describe_db_subnet_groups()["DBSubnetGroups"] == []
    provider.delete(meta.ctx, observed)
    assert meta.read("db-subnet-group") == []


def test_untagged_group_stays_in_aws_but_is_no_longer_ours(meta):
    """Untag keeps the group but removes our ownership tags, so read() no longer returns it."""
    observed = meta.read_one("db-subnet-group")
    meta.provider("db-subnet-group").untag(meta.ctx, observed)
    assert meta.read("db-subnet-group") == []
    remaining = meta.tags_of(observed.attributes["Arn"])
    assert not set(OWNERSHIP_TAGS) & set(remaining)
    assert remaining["team"] == "data"
    assert meta.rds.describe_db_subnet_groups(DBSubnetGroupName=NAME)["DBSubnetGroups"][0]["DBSubnetGroupName"] == NAME


@pytest.mark.parametrize("instance", [None, "another-driftwarden"])
def test_group_without_our_managed_by_tag_is_never_read(meta, instance):
    """A group named and tagged like ours but not managed by this instance is invisible to read()."""
    meta.rds.create_db_subnet_group(
        DBSubnetGroupName="driftwarden-foreign", DBSubnetGroupDescription="not ours",
        SubnetIds=[meta.id_of("subnet/private-a"), meta.id_of("subnet/private-b")],
        Tags=foreign_tags(instance),
    )
    assert [o.id for o in meta.provider("db-subnet-group").read(meta.ctx)] == [NAME]


def test_groups_are_read_with_one_tag_index_page_and_no_per_group_tag_read(meta):
    """Tags come from one tagging-index page; groups not named driftwarden-* are never ours, even tagged so."""
    for name in ("default-vpc-group", "analytics"):
        meta.rds.create_db_subnet_group(
            DBSubnetGroupName=name, DBSubnetGroupDescription="another team's",
            SubnetIds=[meta.id_of("subnet/private-a"), meta.id_of("subnet/private-b")],
            # Even tagged as ours it cannot be ours: driftwarden never names a group like this.
            Tags=[{"Key": TAG_MANAGED_BY, "Value": INSTANCE}],
        )
    meta.observer.reset()
    (found,) = meta.provider("db-subnet-group").read(meta.ctx)
    assert found.id == NAME and found.tags == meta.observed["db-subnet-group"].tags
    assert meta.observer.count(operation="GetResources") == 1
    assert meta.observer.count(operation="ListTagsForResource") == 0
    assert not found.confirmed  # index tags may be minutes old: the engine re-reads before acting


def test_a_group_the_index_does_not_list_yet_is_asked_for_its_tags(meta, monkeypatch):
    """Until the tagging index lists a new group, its tags come from ListTagsForResource: one call for ours only."""
    from driftwarden.providers import tagging

    meta.rds.create_db_subnet_group(
        DBSubnetGroupName="analytics", DBSubnetGroupDescription="another team's",
        SubnetIds=[meta.id_of("subnet/private-a"), meta.id_of("subnet/private-b")],
    )
    monkeypatch.setattr(tagging, "tags_by_arn", lambda ctx, resource_type: {})
    meta.observer.reset()
    (found,) = meta.provider("db-subnet-group").read(meta.ctx)
    assert found.id == NAME and found.confirmed
    assert meta.observer.count(operation="ListTagsForResource") == 1
