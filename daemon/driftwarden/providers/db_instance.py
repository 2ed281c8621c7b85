"""`rds.db-instance`: the Airflow metadata database of a cluster (RDS for PostgreSQL, encrypted).

What it owns: one DB instance per Cluster — its class, storage, Multi-AZ, engine version,
deletion protection, security groups and tags — created with `ManageMasterUserPassword`, so
RDS generates the master password and keeps it in Secrets Manager: no password ever passes
through driftwarden.

What it must not do:

* go backwards: RDS cannot downgrade an engine version or shrink storage, so a manifest asking
  for that is refused with a `PermanentProviderError` before any call is made;
* change what RDS cannot change in place (engine, encryption, master user name, subnet group,
  identifier): those are plan errors (`immutable`);
* delete a database that has deletion protection on, or delete one without a final snapshot.

Modifications are applied at the next maintenance window unless `apply_immediately` is set
(`DEFAULT_APPLY_IMMEDIATELY`, a policy the engine passes in). A deferred modification shows up
in the instance's `PendingModifiedValues`; `read` reports those pending values as the observed
ones, so the next plan does not ask for the same modification again while RDS waits for the
window. The instance stays "ready" meanwhile: nothing is left for the engine to wait for.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from driftwarden.engine.graph import TAG_MANAGED_BY, Resource
from driftwarden.errors import NotFoundError, PermanentProviderError, ProviderError
from driftwarden.providers import tag_styles
from driftwarden.providers.aws import paginate
from driftwarden.providers.base import (
    Context,
    Enumeration,
    Observed,
    Provider,
    Status,
    TypeInfo,
    carries_ownership,
    tag_list,
    tag_map,
)
from driftwarden.providers.db_subnet_group import lower_name, sorted_ids

# Whether modifications are applied at once (with a short outage for class or Multi-AZ changes)
# or at the next maintenance window. Off by default: the metadata database of a running Airflow
# platform is not restarted in the middle of the day because a manifest changed.
DEFAULT_APPLY_IMMEDIATELY = False

_ALREADY_EXISTS = "DBInstanceAlreadyExists"

_READY_STATES = frozenset(
    {
        "available",
        # RDS is optimising storage after a storage change; the database is fully usable and
        # this can last hours, so nothing waits for it.
        "storage-optimization",
    }
)
_FAILED_STATES = frozenset(
    {
        "failed",
        "inaccessible-encryption-credentials",
        "inaccessible-encryption-credentials-recoverable",
        "restore-error",
        "storage-full",
        # Someone stopped it; driftwarden does not start databases, and RDS refuses most
        # modifications of a stopped instance. It needs a human.
        "stopped",
    }
)
# States in which RDS refuses a final snapshot (DeleteDBInstance documentation).
_NO_SNAPSHOT_STATES = frozenset({"failed", "incompatible-restore", "incompatible-network"})
# Modifiable in place, by the name ModifyDBInstance gives them (the same as the desired field).
_MODIFIABLE = ("DBInstanceClass", "AllocatedStorage", "MultiAZ", "DeletionProtection", "VpcSecurityGroupIds",
               "EngineVersion")


def status_of(state: str) -> Status:
    """driftwarden's status for RDS's `DBInstanceStatus`."""
    if state in _READY_STATES:
        return "ready"
    if state in _FAILED_STATES or state.startswith("incompatible-"):
        return "failed"
    if state == "deleting":
        return "deleting"
    # creating, modifying, backing-up, upgrading, rebooting, renaming, configuring-*, starting, ...
    return "pending"


class RunningVersion(str):
    """An engine version as RDS runs it ("16.3"), equal to every version it refines ("16").

    A manifest may name only the major version: RDS then picks the minor and upgrades minors
    itself. So the running version is compared at the precision the desired one uses: "16"
    wanted and "16.3" running is no drift, "16.4" wanted and "16.3" running is. It is still
    the exact running version for display. The equality is not transitive ("16" and "16.4"
    both equal "16.4" but not each other), so these values are never dict keys or set members.
    """

    __slots__ = ()

    def refines(self, wanted: str) -> bool:
        want = wanted.split(".")
        return self.split(".")[: len(want)] == want

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and self.refines(str(other))

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = str.__hash__


def _version_tuple(version: str) -> tuple[int, ...] | None:
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        return None


def _utc_now() -> datetime:
    return datetime.now(UTC)


class DbInstanceProvider(Provider):
    info = TypeInfo(
        type="rds.db-instance",
        service="rds",
        enumeration=Enumeration("describe_db_instances", "DBInstances", "DBInstanceIdentifier"),
        not_found=("DBInstanceNotFound",),
        tag_style=tag_styles.RDS,
        create_order=120,
        permissions={
            "read": ("rds:DescribeDBInstances",),
            "create": (
                "rds:CreateDBInstance",
                # Tags given to a create call are authorised as rds:AddTagsToResource as well.
                "rds:AddTagsToResource",
                # ManageMasterUserPassword: RDS creates and tags the master secret as the caller.
                "secretsmanager:CreateSecret",
                "secretsmanager:TagResource",
                # Only after a retried create that had in fact succeeded (DBInstanceAlreadyExists).
                "rds:DescribeDBInstances",
            ),
            "update": ("rds:ModifyDBInstance", "rds:DescribeDBInstances"),
            # The final snapshot is authorised as rds:CreateDBSnapshot, and tagging it (the
            # instance copies its tags to snapshots) as rds:AddTagsToResource.
            "delete": ("rds:DeleteDBInstance", "rds:CreateDBSnapshot", "rds:AddTagsToResource"),
        },
        managed_fields=("DBInstanceIdentifier", "Engine", "EngineVersion", "DBInstanceClass", "AllocatedStorage",
                        "MultiAZ", "StorageEncrypted", "DeletionProtection", "DBSubnetGroupName",
                        "VpcSecurityGroupIds", "MasterUsername"),
        immutable={
            "DBInstanceIdentifier": "an RDS instance is not renamed by driftwarden: the identifier is how it is found",
            "Engine": "the metadata database engine cannot change",
            "StorageEncrypted": "encryption cannot be changed after creation",
            "DBSubnetGroupName": "moving the database to another subnet group is not done in place",
            "MasterUsername": "the master user name cannot change after creation",
        },
    )

    # The engine may set this per run (see DEFAULT_APPLY_IMMEDIATELY).
    apply_immediately: bool = DEFAULT_APPLY_IMMEDIATELY

    def normalize_desired(self, desired: Mapping[str, Any]) -> dict[str, Any]:
        result = dict(desired)
        # RDS stores identifiers and subnet group names in lower case.
        result["DBInstanceIdentifier"] = lower_name(result.get("DBInstanceIdentifier"))
        result["DBSubnetGroupName"] = lower_name(result.get("DBSubnetGroupName"))
        result["VpcSecurityGroupIds"] = sorted_ids(result.get("VpcSecurityGroupIds", ()))
        return result

    # -- reading ----------------------------------------------------------------------------

    def read(self, ctx: Context) -> list[Observed]:
        # One paginated listing for the region. DescribeDBInstances has no tag filter, but it
        # returns each instance's TagList, so ownership is checked here without more calls.
        rds = ctx.client("rds")
        found = []
        for db in paginate(rds, "describe_db_instances", "DBInstances"):
            tags = tag_map(db.get("TagList"))
            if tags.get(TAG_MANAGED_BY) == ctx.instance:
                found.append(self._observed(db, tags))
        return found

    def refresh(self, ctx: Context, observed: Observed) -> Observed | None:
        return self._read_one(ctx.client("rds"), observed.id)

    def _read_one(self, rds: Any, identifier: str) -> Observed | None:
        try:
            dbs = rds.describe_db_instances(DBInstanceIdentifier=identifier)["DBInstances"]
        except NotFoundError:
            return None
        return self._observed(dbs[0], tag_map(dbs[0].get("TagList"))) if dbs else None

    def _observed(self, db: Mapping[str, Any], tags: Mapping[str, str]) -> Observed:
        # A modification waiting for the maintenance window is reported as if done: it is
        # already asked for, and asking again every cycle would change nothing.
        pending = db.get("PendingModifiedValues") or {}
        identifier = db["DBInstanceIdentifier"]
        state = db.get("DBInstanceStatus", "")
        attributes = {"id": identifier, "Arn": db["DBInstanceArn"]}
        address = (db.get("Endpoint") or {}).get("Address")
        if address:  # none while the instance is being created
            attributes["Endpoint"] = address
        return Observed(
            type=self.type,
            id=identifier,
            fields={
                "DBInstanceIdentifier": identifier,
                "Engine": db["Engine"],
                "EngineVersion": RunningVersion(pending.get("EngineVersion", db["EngineVersion"])),
                "DBInstanceClass": pending.get("DBInstanceClass", db["DBInstanceClass"]),
                "AllocatedStorage": pending.get("AllocatedStorage", db["AllocatedStorage"]),
                "MultiAZ": pending.get("MultiAZ", db.get("MultiAZ", False)),
                "StorageEncrypted": db.get("StorageEncrypted", False),
                "DeletionProtection": db.get("DeletionProtection", False),
                "DBSubnetGroupName": pending.get(
                    "DBSubnetGroupName", (db.get("DBSubnetGroup") or {}).get("DBSubnetGroupName")
                ),
                # A group being removed is on its way out; one being added is already asked for.
                "VpcSecurityGroupIds": sorted_ids(
                    g["VpcSecurityGroupId"] for g in db.get("VpcSecurityGroups", []) if g.get("Status") != "removing"
                ),
                "MasterUsername": db.get("MasterUsername"),
            },
            tags=dict(tags),
            attributes=attributes,
            status=status_of(state),
            state=state,
        )

    # -- changing ---------------------------------------------------------------------------

    def create(self, ctx: Context, resource: Resource, desired: Mapping[str, Any]) -> Observed:
        rds = ctx.client("rds")
        identifier = desired["DBInstanceIdentifier"]
        try:
            db = rds.create_db_instance(
                DBInstanceIdentifier=identifier,
                Engine=desired["Engine"],
                EngineVersion=desired["EngineVersion"],
                DBInstanceClass=desired["DBInstanceClass"],
                AllocatedStorage=desired["AllocatedStorage"],
                MultiAZ=desired["MultiAZ"],
                StorageEncrypted=desired["StorageEncrypted"],
                DeletionProtection=desired["DeletionProtection"],
                DBSubnetGroupName=desired["DBSubnetGroupName"],
                VpcSecurityGroupIds=list(desired["VpcSecurityGroupIds"]),
                MasterUsername=desired["MasterUsername"],
                # RDS generates the password and keeps it in Secrets Manager.
                ManageMasterUserPassword=True,
                # The metadata database is reached from inside the VPC only.
                PubliclyAccessible=False,
                # So the final snapshot taken on delete still says whose it was.
                CopyTagsToSnapshot=True,
                Tags=tag_list(resource.tags),
            )["DBInstance"]
        except ProviderError as e:
            # RDS has no client tokens; the identifier is deterministic instead. A retried create
            # that had in fact succeeded finds our own instance: success. Anyone else's: error.
            if e.code != _ALREADY_EXISTS:
                raise
            existing = self._read_one(rds, identifier)
            if existing is None or not carries_ownership(existing.tags, resource):
                raise
            return existing
        return self._observed(db, tag_map(db.get("TagList")) or dict(resource.tags))

    def update(
        self, ctx: Context, resource: Resource, desired: Mapping[str, Any], observed: Observed, changed: list[str]
    ) -> Observed:
        rds = ctx.client("rds")
        params: dict[str, Any] = {}
        # Check every field before calling anything, so a refused change changes nothing.
        for name in changed:
            if name in self.immutable:
                raise PermanentProviderError(
                    f"cannot change {name} of {self.type} {observed.id}: {self.immutable[name]}"
                )
            if name not in _MODIFIABLE:
                raise PermanentProviderError(f"{self.type} has no field {name} that driftwarden changes")
            value = desired[name]
            if name == "EngineVersion":
                params.update(self._version_change(observed, str(value)))
            elif name == "AllocatedStorage":
                have = int(observed.fields["AllocatedStorage"])
                if int(value) < have:
                    raise PermanentProviderError(
                        f"cannot shrink the storage of {self.type} {observed.id} from {have} GiB to {value} GiB: "
                        "RDS storage can only grow; set allocatedStorageGiB back to at least the current size"
                    )
                params[name] = int(value)
            elif name == "VpcSecurityGroupIds":
                params[name] = list(value)
            else:
                params[name] = value
        if params:
            # Only the changed fields: anything else passed here would be "modified" too.
            rds.modify_db_instance(
                DBInstanceIdentifier=observed.id, ApplyImmediately=self.apply_immediately or ctx.apply_immediately, **params
            )
        current = self._read_one(rds, observed.id)
        if current is None:
            raise NotFoundError(f"{self.type} {observed.id} disappeared while being updated")
        return current

    def _version_change(self, observed: Observed, wanted: str) -> dict[str, Any]:
        running = str(observed.fields["EngineVersion"])
        want, have = _version_tuple(wanted), _version_tuple(running)
        if want is None or have is None:
            # Not plain numbers: leave the judgement to RDS.
            return {"EngineVersion": wanted}
        if want < have[: len(want)]:
            raise PermanentProviderError(
                f"cannot downgrade the engine of {self.type} {observed.id} from {running} to {wanted}: "
                "RDS engine versions only go up (restore a snapshot into a new database to go back)"
            )
        params: dict[str, Any] = {"EngineVersion": wanted}
        if want[0] > have[0]:
            # RDS refuses a major upgrade unless it is asked for explicitly.
            params["AllowMajorVersionUpgrade"] = True
        return params

    def delete(self, ctx: Context, observed: Observed) -> None:
        if observed.status == "deleting":
            return  # already on its way
        if observed.fields.get("DeletionProtection"):
            raise PermanentProviderError(
                f"{self.type} {observed.id} has deletion protection on: set database.deletionProtection: false "
                "in the Cluster manifest and apply it first, then delete"
            )
        if observed.state in _NO_SNAPSHOT_STATES:
            # RDS can only delete an instance in these states without a final snapshot, and
            # driftwarden never deletes a database without one.
            raise PermanentProviderError(
                f"{self.type} {observed.id} is {observed.state}: RDS cannot take a final snapshot of it, "
                "so driftwarden will not delete it; delete it by hand if its data is not needed"
            )
        snapshot = f"{observed.id}-final-{_utc_now():%Y%m%d%H%M%S}"
        try:
            ctx.client("rds").delete_db_instance(
                DBInstanceIdentifier=observed.id, SkipFinalSnapshot=False, FinalDBSnapshotIdentifier=snapshot
            )
        except NotFoundError:
            return  # already gone
