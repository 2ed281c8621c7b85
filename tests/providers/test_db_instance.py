"""The DB instance provider (`rds.db-instance`) against moto's server over HTTP.

moto applies every ModifyDBInstance at once, whatever ApplyImmediately says, and never fills
`PendingModifiedValues`; it also reports every instance `available` at once. Where a test
needs what AWS does instead (a deferred modification, an instance still `creating`), it sets
moto's in-process backend state the way AWS would (`moto_state`, `defer_modification`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from botocore import xform_name
from moto.backends import get_backend
from test_db_subnet_group import (
    ACCOUNT,
    NAME,
    REGION,
    Metadata,
    cluster_resources,
    foreign_tags,
    make_moto_subnet_groups_behave_like_aws,
    with_database,
)

from driftwarden.engine.graph import OWNERSHIP_TAGS
from driftwarden.engine.plan import diff_fields, make_plan
from driftwarden.errors import PermanentProviderError
from driftwarden.providers.base import converge
from driftwarden.providers.calls import iam_action
from driftwarden.providers.db_instance import (
    DEFAULT_APPLY_IMMEDIATELY,
    RunningVersion,
    status_of,
)
from moto_state import set_db_instance_status

DB = "db-instance"


def defer_modification(identifier: str, **running: Any) -> None:
    """Make moto answer as AWS does after a modification with ApplyImmediately=False.

    moto has already applied the change; this puts the `running` values (API field names)
    back as the instance's current ones and moves what moto applied into
    `PendingModifiedValues`, where AWS keeps it until the maintenance window.
    """
    db = get_backend("rds")[ACCOUNT][REGION].databases[identifier]
    pending = {}
    for field, value in running.items():
        attribute = xform_name(field)  # DBInstanceClass -> db_instance_class
        pending[field] = getattr(db, attribute)
        setattr(db, attribute, value)
    db.pending_modified_values = pending


class ModifyCalls:
    """The parameters of every ModifyDBInstance driftwarden's client sends."""

    def __init__(self, client: Any) -> None:
        self.params: list[dict[str, Any]] = []
        client.meta.events.register("provide-client-params.rds.ModifyDBInstance", self._seen)

    def _seen(self, params: dict[str, Any], **_: Any) -> None:
        self.params.append(dict(params))


@pytest.fixture
def meta(aws):
    world = Metadata(aws)
    world.create("db-subnet-group", DB)
    return world


def use_manifest(meta: Metadata, manifest: str) -> None:
    """Git now says `manifest`; everything already created keeps its attributes (same keys)."""
    meta.resources = cluster_resources(manifest)


# --- contract --------------------------------------------------------------------------------------


def test_created_instance_reads_back_without_diff_and_rereading_mutates_nothing(meta):
    """Create then read gives an empty diff and what create returned; a second read makes no mutating call."""
    created = meta.observed[DB]
    observed = meta.read_one(DB)
    assert observed == created
    assert meta.diff(DB, observed) == []
    assert observed.fields == {
        "DBInstanceIdentifier": NAME,
        "Engine": "postgres",
        "EngineVersion": "16.3",
        "DBInstanceClass": "db.m6g.large",
        "AllocatedStorage": 100,
        "MultiAZ": True,
        "StorageEncrypted": True,
        "DeletionProtection": False,
        "DBSubnetGroupName": NAME,
        "VpcSecurityGroupIds": (meta.id_of("security-group/cluster"),),
        "MasterUsername": "airflow",
    }
    assert observed.attributes == {
        "id": NAME,
        "Arn": f"arn:aws:rds:{REGION}:{ACCOUNT}:db:{NAME}",
        "Endpoint": f"{NAME}.aaaaaaaaaa.{REGION}.rds.amazonaws.com",
    }
    assert (observed.status, observed.state) == ("ready", "available")
    meta.observer.reset()
    assert meta.read_one(DB) == observed
    assert meta.observer.mutating_calls() == 0
    assert meta.observer.count(operation="DescribeDBInstances", result="ok") == 1


def test_instance_is_created_private_with_an_rds_managed_password_and_tagged_snapshots(meta):
    """The master password is generated and kept by RDS in Secrets Manager; the database is not public."""
    db = meta.rds.describe_db_instances(DBInstanceIdentifier=NAME)["DBInstances"][0]
    assert db["MasterUserSecret"]["SecretArn"].startswith(f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:rds!")
    assert db["PubliclyAccessible"] is False
    assert db["CopyTagsToSnapshot"] is True
    assert db["StorageEncrypted"] is True


def test_retried_create_returns_our_existing_instance_instead_of_failing(meta):
    """A create retried after it had in fact succeeded meets AlreadyExists, finds our instance and returns it."""
    meta.observer.reset()
    again = meta.create(DB)
    assert meta.observer.count(operation="CreateDBInstance", result="error") == 1
    assert again == meta.read_one(DB)


def test_create_over_someone_elses_instance_of_the_same_name_fails(aws):
    """An instance with our identifier but not our tags is never taken over by create."""
    world = Metadata(aws)
    world.create("db-subnet-group")
    world.rds.create_db_instance(
        DBInstanceIdentifier=NAME, Engine="postgres", DBInstanceClass="db.m6g.large", AllocatedStorage=20,
        MasterUsername="someone", ManageMasterUserPassword=True, Tags=foreign_tags("someone-else"),
    )
    with pytest.raises(PermanentProviderError) as caught:
        world.create(DB)
    assert caught.value.code == "DBInstanceAlreadyExists"


# --- drift -------------------------------------------------------------------------------------------


def test_instance_class_changed_out_of_band_is_seen_and_repaired(meta):
    """Someone resizing the database to db.r5.large by hand drifts on DBInstanceClass only; update sizes it back."""
    meta.rds.modify_db_instance(DBInstanceIdentifier=NAME, DBInstanceClass="db.r5.large", ApplyImmediately=True)
    drifted = meta.read_one(DB)
    assert drifted.fields["DBInstanceClass"] == "db.r5.large"
    assert meta.changed(DB, drifted) == ["DBInstanceClass"]
    calls = ModifyCalls(meta.ctx.client("rds"))
    meta.update(DB, drifted)
    # Only the changed field is sent, with the deferred-by-default policy.
    assert calls.params == [
        {"DBInstanceIdentifier": NAME, "ApplyImmediately": DEFAULT_APPLY_IMMEDIATELY, "DBInstanceClass": "db.m6g.large"}
    ]
    # moto applies it at once even so (AWS would wait for the maintenance window).
    assert meta.rds.describe_db_instances(DBInstanceIdentifier=NAME)["DBInstances"][0]["DBInstanceClass"] == "db.m6g.large"
    assert meta.diff(DB, meta.read_one(DB)) == []


def test_apply_immediately_is_a_policy_the_engine_can_switch_on(meta, monkeypatch):
    """With apply_immediately set on the provider, the modification is sent with ApplyImmediately=True."""
    assert DEFAULT_APPLY_IMMEDIATELY is False
    monkeypatch.setattr(meta.provider(DB), "apply_immediately", True)
    meta.rds.modify_db_instance(DBInstanceIdentifier=NAME, MultiAZ=False, ApplyImmediately=True)
    calls = ModifyCalls(meta.ctx.client("rds"))
    meta.update(DB, meta.read_one(DB))
    assert calls.params == [{"DBInstanceIdentifier": NAME, "ApplyImmediately": True, "MultiAZ": True}]


def test_modification_waiting_for_the_maintenance_window_is_not_asked_for_again(meta):
    """A deferred change sits in PendingModifiedValues; read reports it as observed, so the next plan is empty."""
    use_manifest(meta, with_database(dbInstanceType="db.r5.large", allocatedStorageGiB="200"))
    meta.update(DB, meta.read_one(DB))
    # What AWS does with ApplyImmediately=False: the running values stay, the new ones wait.
    defer_modification(NAME, DBInstanceClass="db.m6g.large", AllocatedStorage=100)
    db = meta.rds.describe_db_instances(DBInstanceIdentifier=NAME)["DBInstances"][0]
    assert (db["DBInstanceClass"], db["PendingModifiedValues"]) == (
        "db.m6g.large", {"DBInstanceClass": "db.r5.large", "AllocatedStorage": 200}
    )
    observed = meta.read_one(DB)
    assert (observed.fields["DBInstanceClass"], observed.fields["AllocatedStorage"]) == ("db.r5.large", 200)
    assert observed.status == "ready"  # nothing for the engine to wait for until the window
    assert meta.diff(DB, observed) == []


def test_removed_user_tag_is_put_back_and_other_tags_are_kept(meta):
    """A user tag deleted out of band is tag drift, repaired by update(changed=["tags"]) without modifying the instance."""
    arn = meta.read_one(DB).attributes["Arn"]
    meta.rds.remove_tags_from_resource(ResourceName=arn, TagKeys=["team"])
    meta.rds.add_tags_to_resource(ResourceName=arn, Tags=[{"Key": "extra", "Value": "kept"}])
    drifted = meta.read_one(DB)
    assert "team" not in drifted.tags
    assert meta.changed(DB, drifted) == ["tags"]
    meta.observer.reset()
    returned = meta.update(DB, drifted)
    assert returned.tags["team"] == "data"
    assert meta.observer.count(operation="ModifyDBInstance") == 0
    healed = meta.read_one(DB)
    assert meta.diff(DB, healed) == []
    assert healed.tags["extra"] == "kept"


# --- engine version and storage: only upwards -----------------------------------------------------


def test_engine_version_is_compared_at_the_precision_git_gives(meta):
    """A major-only version in Git ("16") matches the running "16.3"; any other version is drift."""
    for desired, drift in [("16", False), ("16.3", False), ("16.4", True), ("17", True), ("15", True),
                           ("16.2", True)]:
        use_manifest(meta, with_database(engineVersion=f'"{desired}"'))
        observed = meta.read_one(DB)
        assert observed.fields["EngineVersion"] == RunningVersion("16.3")
        assert meta.changed(DB, observed) == (["EngineVersion"] if drift else []), desired


@pytest.mark.parametrize(("desired", "major"), [("16.4", False), ("17", True), ("17.1", True)])
def test_engine_upgrade_is_sent_with_major_upgrade_allowed_only_when_the_major_changes(meta, desired, major):
    """A minor upgrade is a plain EngineVersion change; a major one also says AllowMajorVersionUpgrade."""
    use_manifest(meta, with_database(engineVersion=f'"{desired}"'))
    calls = ModifyCalls(meta.ctx.client("rds"))
    meta.update(DB, meta.read_one(DB))
    expected = {"DBInstanceIdentifier": NAME, "ApplyImmediately": False, "EngineVersion": desired}
    if major:
        expected["AllowMajorVersionUpgrade"] = True
    assert calls.params == [expected]
    assert meta.diff(DB, meta.read_one(DB)) == []


@pytest.mark.parametrize("desired", ["15", "16.2", "15.7"])
def test_engine_downgrade_is_refused_before_any_call(meta, desired):
    """Versions never go down: update raises a permanent error naming both versions and modifies nothing."""
    use_manifest(meta, with_database(engineVersion=f'"{desired}"'))
    observed = meta.read_one(DB)
    meta.observer.reset()
    with pytest.raises(PermanentProviderError, match=rf"cannot downgrade .* from 16\.3 to {desired}"):
        meta.update(DB, observed)
    assert meta.observer.mutating_calls() == 0
    assert meta.read_one(DB).fields["EngineVersion"] == RunningVersion("16.3")


def test_storage_grows_in_place_but_is_never_shrunk(meta):
    """More storage in Git is applied; less is refused with a permanent error before any call."""
    use_manifest(meta, with_database(allocatedStorageGiB="150"))
    grown = meta.update(DB, meta.read_one(DB))
    assert grown.fields["AllocatedStorage"] == 150
    use_manifest(meta, with_database(allocatedStorageGiB="100"))
    observed = meta.read_one(DB)
    assert meta.changed(DB, observed) == ["AllocatedStorage"]
    meta.observer.reset()
    with pytest.raises(PermanentProviderError, match="from 150 GiB to 100 GiB: RDS storage can only grow"):
        meta.update(DB, observed)
    assert meta.observer.mutating_calls() == 0


def test_running_version_equality_is_by_prefix_of_components():
    """RunningVersion("16.3") equals "16" and "16.3" but not "16.30", "1" or "16.3.1"."""
    running = RunningVersion("16.3")
    assert running == "16" and running == "16.3" and "16" == running  # noqa: SIM300
    assert running != "16.30" and running != "1" and running != "16.3.1" and running != "17"
    assert diff_fields({"EngineVersion": "16"}, {"EngineVersion": running}) == []
    assert str(running) == "16.3"


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("Engine", "mysql", "the metadata database engine cannot change"),
        ("StorageEncrypted", False, "encryption cannot be changed after creation"),
        ("MasterUsername", "root", "master user name cannot change"),
    ],
)
def test_immutable_field_change_is_a_plan_error_naming_the_field(meta, field, value, reason):
    """Engine, encryption and master user never change in place: the plan reports the field and why."""
    resource = meta.resources[DB]
    changed = dataclasses.replace(resource, desired={**resource.desired, field: value})
    plan = make_plan([meta.resources["db-subnet-group"], changed],
                     [meta.read_one("db-subnet-group"), meta.read_one(DB)], providers=meta.providers)
    assert [c for c in plan.changes if c.key == resource.key] == []
    assert [(e.field, e.key) for e in plan.errors] == [(field, resource.key)]
    assert reason in plan.errors[0].message


# --- statuses ------------------------------------------------------------------------------------------


RDS_STATES = [
    ("creating", "pending"),
    ("modifying", "pending"),
    ("backing-up", "pending"),
    ("upgrading", "pending"),
    ("rebooting", "pending"),
    ("configuring-enhanced-monitoring", "pending"),
    ("available", "ready"),
    ("storage-optimization", "ready"),
    ("failed", "failed"),
    ("incompatible-network", "failed"),
    ("incompatible-parameters", "failed"),
    ("storage-full", "failed"),
    ("stopped", "failed"),
    ("deleting", "deleting"),
]


@pytest.mark.parametrize(("state", "status"), RDS_STATES)
def test_rds_states_map_onto_engine_statuses(state, status):
    """Transitional RDS states are pending, failures failed, deletion deleting, available ready."""
    assert status_of(state) == status


def test_read_reports_the_status_of_the_state_rds_gives(meta):
    """What read returns carries both RDS's word for the state and the engine status it means."""
    for state, status in RDS_STATES:
        set_db_instance_status(ACCOUNT, REGION, NAME, state)
        observed = meta.read_one(DB)
        assert (observed.status, observed.state) == (status, state)


def test_refresh_follows_a_creating_instance_until_it_is_available(meta):
    """What the engine polls while waiting: refresh reports pending while creating, ready once available."""
    provider = meta.provider(DB)
    set_db_instance_status(ACCOUNT, REGION, NAME, "creating")
    first = provider.refresh(meta.ctx, meta.observed[DB])
    assert first is not None and first.status == "pending"
    set_db_instance_status(ACCOUNT, REGION, NAME, "available")
    second = provider.refresh(meta.ctx, first)
    assert second is not None and second.status == "ready"


# --- delete, untag, ownership ------------------------------------------------------------------------


def test_deleted_instance_leaves_a_final_snapshot_and_deleting_twice_is_fine(meta):
    """Delete keeps a tagged final snapshot named <id>-final-<timestamp>; read() loses the instance; a second delete succeeds."""
    observed = meta.read_one(DB)
    provider = meta.provider(DB)
    provider.delete(meta.ctx, observed)
    assert meta.read(DB) == []
    provider.delete(meta.ctx, observed)
    assert meta.read(DB) == []
    snapshots = meta.rds.describe_db_snapshots(DBInstanceIdentifier=NAME, SnapshotType="manual")["DBSnapshots"]
    assert len(snapshots) == 1
    snapshot = snapshots[0]
    assert snapshot["DBSnapshotIdentifier"].startswith(f"{NAME}-final-")
    stamp = snapshot["DBSnapshotIdentifier"].removeprefix(f"{NAME}-final-")
    assert len(stamp) == 14 and stamp.isdigit()  # YYYYmmddHHMMSS
    tags = {t["Key"]: t["Value"] for t in snapshot["TagList"]}
    assert tags["driftwarden:owner"] == "Cluster/meta"  # copied from the instance


def test_instance_with_deletion_protection_is_not_deleted(aws):
    """Delete refuses a protected instance with a message saying to set deletionProtection: false first."""
    world = Metadata(aws, with_database(deletionProtection="true"))
    world.create("db-subnet-group", DB)
    observed = world.read_one(DB)
    assert observed.fields["DeletionProtection"] is True
    world.observer.reset()
    with pytest.raises(PermanentProviderError, match="deletionProtection: false"):
        world.provider(DB).delete(world.ctx, observed)
    assert world.observer.mutating_calls() == 0
    assert world.read_one(DB).id == NAME


def test_failed_instance_is_not_deleted_without_a_final_snapshot(meta):
    """RDS cannot snapshot a failed instance, so delete refuses rather than lose the data silently."""
    set_db_instance_status(ACCOUNT, REGION, NAME, "failed")
    with pytest.raises(PermanentProviderError, match="cannot take a final snapshot"):
        meta.provider(DB).delete(meta.ctx, meta.read_one(DB))
    assert meta.read_one(DB).id == NAME


def test_untagged_instance_stays_in_aws_but_is_no_longer_ours(meta):
    """Untag keeps the instance but removes our ownership tags, so read() no longer returns it."""
    observed = meta.read_one(DB)
    meta.provider(DB).untag(meta.ctx, observed)
    assert meta.read(DB) == []
    remaining = meta.tags_of(observed.attributes["Arn"])
    assert not set(OWNERSHIP_TAGS) & set(remaining)
    assert remaining["team"] == "data"
    assert meta.rds.describe_db_instances(DBInstanceIdentifier=NAME)["DBInstances"][0]["DBInstanceStatus"] == "available"


@pytest.mark.parametrize("instance", [None, "another-driftwarden"])
def test_instance_without_our_managed_by_tag_is_never_read(meta, instance):
    """An instance tagged like ours but not managed by this instance is invisible to read()."""
    meta.rds.create_db_instance(
        DBInstanceIdentifier="foreign-db", Engine="postgres", DBInstanceClass="db.m6g.large", AllocatedStorage=20,
        MasterUsername="someone", ManageMasterUserPassword=True, Tags=foreign_tags(instance),
    )
    assert [o.id for o in meta.provider(DB).read(meta.ctx)] == [NAME]


# --- permissions -----------------------------------------------------------------------------------


def test_every_call_the_rds_providers_make_is_declared_in_their_permissions(aws, monkeypatch):
    """Create (also retried), read, refresh, update (every mutable field and tags), untag and delete call only what `permissions` lists."""
    make_moto_subnet_groups_behave_like_aws(monkeypatch)
    world = Metadata(aws)
    undeclared: dict[str, set[str]] = {}

    def check(component: str, operation: str) -> None:
        made = {iam_action(service, name) for service, name, _ in world.observer.calls} - {"sts:AssumeRole"}
        world.observer.reset()
        extra = made - set(world.provider(component).permissions[operation])
        if extra:
            undeclared[f"{world.provider(component).type} {operation}"] = extra

    components = ("db-subnet-group", DB)
    for component in components:
        world.observer.reset()
        world.create(component)
        check(component, "create")
        world.create(component)  # the retry path: AlreadyExists, then a read of our own
        check(component, "create")
    for component in components:
        provider = world.provider(component)
        world.observer.reset()
        observed = world.read_one(component)
        check(component, "read")
        provider.refresh(world.ctx, observed)
        check(component, "read")
        mutable = [name for name in world.desired(component) if name not in provider.immutable]
        converge(provider, world.ctx, world.resources[component], world.desired(component), observed, [*mutable, "tags"])
        check(component, "update")
    for component in reversed(components):
        observed = world.read_one(component)
        world.observer.reset()
        world.provider(component).untag(world.ctx, observed)
        check(component, "untag")
        world.provider(component).delete(world.ctx, observed)
        check(component, "delete")
    assert undeclared == {}
