"""Planning is pure: desired resources against observed ones give changes, errors and held work."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from driftwarden.engine.graph import (
    TAG_DESIRED_HASH,
    Ref,
    Resource,
    desired_digest,
    ownership_tags,
    with_desired_hash,
)
from driftwarden.engine.plan import UNKNOWN, diff_fields, make_plan
from driftwarden.manifests.model import Account, FrozenMap
from driftwarden.providers import tag_styles
from driftwarden.providers.base import Context, Enumeration, Observed, Provider, TypeInfo

ACCOUNT = Account("111111111111", "driftwarden-remote-management", "ext")


class StubProvider(Provider):
    """Declares field rules like a real provider; planning never calls AWS."""

    def __init__(self, type_: str, immutable: Mapping[str, str] | None = None, replaceable: bool = False,
                 create_only: frozenset[str] = frozenset()) -> None:
        # Per instance: each stub stands for a type of its own.
        self.info = TypeInfo(  # type: ignore[misc]
            type=type_, service="stub", enumeration=Enumeration("list", "Items", "Id"), not_found=(),
            tag_style=tag_styles.EC2, create_order=0, permissions={}, managed_fields=(),
            immutable=immutable or {}, replaceable=replaceable, create_only=create_only,
        )

    def read(self, ctx: Context) -> list[Observed]:
        raise AssertionError("planning must not read AWS")

    def create(self, ctx: Context, resource: Resource, desired: Mapping[str, Any]) -> Observed:
        raise AssertionError("planning must not create")

    def update(self, ctx, resource, desired, observed, changed):
        raise AssertionError("planning must not update")

    def delete(self, ctx, observed):
        raise AssertionError("planning must not delete")


PROVIDERS = {
    "net": StubProvider("net", immutable={"Cidr": "a VPC's range cannot change"}),
    "group": StubProvider("group", immutable={"Name": "instance type is fixed per group"}, replaceable=True,
                          create_only=frozenset({"Desired"})),
}


def resource(component: str, type_: str, desired: dict[str, Any], owner: str = "Cluster/a", policy: str = "Retain",
             depends_on: tuple[str, ...] = (), **kwargs: Any) -> Resource:
    return Resource(
        key=f"{owner}/{component}", type=type_, owner=owner, component=component, account=ACCOUNT,
        region="us-east-1", desired=desired,
        tags=ownership_tags("driftwarden", owner, component, {}, policy), depends_on=depends_on,
        deletion_policy=policy, **kwargs,
    )


def observed(res: Resource, fields: dict[str, Any], id_: str = "id-1", tags: FrozenMap | None = None,
             attributes: dict[str, Any] | None = None) -> Observed:
    return Observed(res.type, id_, fields, tags if tags is not None else res.tags, attributes or {"id": id_},
                    account=ACCOUNT.id, region="us-east-1")


def test_absent_resource_is_created_and_its_dependants_see_unknown_values():
    """A missing VPC is created; a subnet referring to it is created with its VPC id known after apply."""
    vpc = resource("vpc", "net", {"Cidr": "10.0.0.0/16"})
    subnet = resource("subnet", "net", {"Cidr": "10.0.0.0/24", "VpcId": Ref(vpc.key)}, depends_on=(vpc.key,))
    plan = make_plan([vpc, subnet], [], providers=PROVIDERS)
    assert [(c.action, c.key) for c in plan.changes] == [("create", vpc.key), ("create", subnet.key)]
    assert dict((d.path, d.desired) for d in plan.changes[1].diff)["VpcId"] is UNKNOWN


def test_matching_resource_is_unchanged():
    """Observed fields equal to desired ones (lists vs tuples alike) give no change."""
    vpc = resource("vpc", "net", {"Cidr": "10.0.0.0/16", "Zones": ("a", "b")})
    plan = make_plan([vpc], [observed(vpc, {"Cidr": "10.0.0.0/16", "Zones": ["a", "b"], "Extra": 1})], providers=PROVIDERS)
    assert plan.changes == [] and plan.unchanged == [vpc.key]


def test_drift_is_reported_on_exactly_the_drifted_fields():
    """Only the fields that differ appear in the diff, nested maps by their path."""
    group = resource("g", "group", {"Name": "g-1", "Scaling": {"min": 2, "max": 20}, "Labels": {"a": "1"}})
    live = observed(group, {"Name": "g-1", "Scaling": {"min": 2, "max": 30}, "Labels": {"a": "1"}})
    (change,) = make_plan([group], [live], providers=PROVIDERS).changes
    assert change.action == "update"
    assert [(d.path, d.observed, d.desired) for d in change.diff] == [("Scaling.max", 30, 20)]


def test_removed_tag_is_drift():
    """A cluster tag deleted out of band is put back as an update."""
    vpc = resource("vpc", "net", {"Cidr": "10.0.0.0/16"})
    vpc = Resource(**{**vpc.__dict__, "tags": FrozenMap({**vpc.tags, "team": "data"})})
    tags = FrozenMap({k: v for k, v in vpc.tags.items() if k != "team"})
    (change,) = make_plan([vpc], [observed(vpc, {"Cidr": "10.0.0.0/16"}, tags=tags)], providers=PROVIDERS).changes
    assert [(d.path, d.observed, d.desired) for d in change.diff] == [("tags.team", None, "data")]


def test_create_only_fields_are_never_diffed():
    """desiredSize-like fields belong to an autoscaler after creation."""
    group = resource("g", "group", {"Name": "g-1", "Desired": 2})
    plan = make_plan([group], [observed(group, {"Name": "g-1", "Desired": 7})], providers=PROVIDERS)
    assert plan.changes == []


def test_immutable_change_is_a_plan_error_naming_the_field_and_why():
    """Changing a VPC range is refused with the field and the reason; nothing is planned for it."""
    vpc = resource("vpc", "net", {"Cidr": "10.1.0.0/16"})
    plan = make_plan([vpc], [observed(vpc, {"Cidr": "10.0.0.0/16"})], providers=PROVIDERS)
    assert plan.changes == []
    (error,) = plan.errors
    assert error.field == "Cidr" and "cannot change" in error.message and "range cannot change" in error.message


def test_immutable_change_of_a_replaceable_resource_is_a_replacement():
    """A node-group-like resource with a new name is replaced (blue/green)."""
    group = resource("g", "group", {"Name": "g-2"})
    (change,) = make_plan([group], [observed(group, {"Name": "g-1"})], providers=PROVIDERS).changes
    assert change.action == "replace" and change.observed is not None and change.observed.id == "id-1"


def test_leftover_of_a_finished_replacement_is_deleted():
    """When both the new and the old group exist, the one matching Git stays and the other is deleted."""
    group = resource("g", "group", {"Name": "g-2"})
    old, new = observed(group, {"Name": "g-1"}, "old"), observed(group, {"Name": "g-2"}, "new")
    plan = make_plan([group], [old, new], providers=PROVIDERS)
    assert [(c.action, c.id) for c in plan.changes] == [("delete", "old")]
    assert plan.unchanged == [group.key]


def test_component_no_longer_needed_by_a_declared_owner_is_deleted():
    """A removed node pool of a cluster still in Git is deleted without prune."""
    keep = resource("g/a", "group", {"Name": "a"})
    gone = resource("g/b", "group", {"Name": "b"})
    plan = make_plan([keep], [observed(keep, {"Name": "a"}, "a"), observed(gone, {"Name": "b"}, "b")],
                     providers=PROVIDERS)
    assert [(c.action, c.id) for c in plan.changes] == [("delete", "b")]


def test_resources_of_removed_owners_are_held_without_prune():
    """With prune off, an owner gone from Git keeps its resources and the plan says so."""
    gone = resource("vpc", "net", {"Cidr": "10.0.0.0/16"}, owner="Cluster/gone", policy="Delete")
    plan = make_plan([], [observed(gone, {"Cidr": "10.0.0.0/16"})], providers=PROVIDERS)
    assert plan.changes == [] and len(plan.held) == 1
    assert "--prune" in plan.warnings[0]


def test_prune_deletes_with_delete_policy_and_releases_with_retain():
    """Prune deletes resources tagged Delete and only untags those tagged Retain."""
    deleted = resource("vpc", "net", {}, owner="Cluster/gone", policy="Delete")
    retained = resource("vpc", "net", {}, owner="Cluster/kept", policy="Retain")
    plan = make_plan([], [observed(deleted, {}, "d"), observed(retained, {}, "r")], prune=True, providers=PROVIDERS)
    assert sorted((c.action, c.id) for c in plan.changes) == [("delete", "d"), ("release", "r")]


def test_prune_is_refused_when_the_revision_is_invalid():
    """Nothing is deleted when any manifest failed validation."""
    gone = resource("vpc", "net", {}, owner="Cluster/gone", policy="Delete")
    plan = make_plan([], [observed(gone, {})], prune=True, revision_valid=False, providers=PROVIDERS)
    assert plan.changes == [] and "refused" in plan.warnings[0]


def test_prune_is_capped_per_cycle():
    """At most prune_limit deletions are planned; the rest wait for later runs."""
    gone = [resource(f"vpc{i}", "net", {}, owner="Cluster/gone", policy="Delete") for i in range(5)]
    plan = make_plan([], [observed(g, {}, f"id{i}") for i, g in enumerate(gone)], prune=True, prune_limit=2,
                     providers=PROVIDERS)
    assert len(plan.changes) == 2 and len(plan.held) == 3


def test_suspended_and_warn_only_objects_are_held_not_changed():
    """Drift of a suspended or warn-only object is reported as held, never applied, and never an error."""
    suspended = resource("vpc", "net", {"Cidr": "10.0.0.0/16"}, owner="Cluster/s", suspended=True)
    warn = resource("vpc", "net", {"Cidr": "10.0.0.0/16", "X": 2}, owner="Cluster/w", drift_mode="warn")
    live_s = observed(suspended, {"Cidr": "10.9.0.0/16"}, "s")
    live_w = observed(warn, {"Cidr": "10.0.0.0/16", "X": 1}, "w")
    plan = make_plan([suspended, warn], [live_s, live_w], providers=PROVIDERS)
    assert plan.changes == [] and plan.errors == []
    assert [c.key for c in plan.held] == ["Cluster/w/vpc"]
    assert any("suspended" in w for w in plan.warnings)


def test_warn_only_objects_receive_changes_made_in_git_but_not_drift_repairs():
    """The desired-hash tag tells the two apart: same digest = drift (held), new digest = Git changed (applied)."""
    before = with_desired_hash(resource("cfg", "net", {"Cidr": "10.0.0.0/16", "X": 1, "Y": 1}, drift_mode="warn"))
    after = with_desired_hash(resource("cfg", "net", {"Cidr": "10.0.0.0/16", "X": 2, "Y": 1}, drift_mode="warn"))
    assert before.tags[TAG_DESIRED_HASH] != after.tags[TAG_DESIRED_HASH]

    # Written by driftwarden from `before`, then Y changed by hand: drift, held.
    hand_edited = observed(before, {"Cidr": "10.0.0.0/16", "X": 1, "Y": 9})
    plan = make_plan([before], [hand_edited], providers=PROVIDERS)
    assert plan.changes == [] and [(c.key, [d.path for d in c.diff]) for c in plan.held] == [(before.key, ["Y"])]

    # Git now says X=2: applied in full (X, Y and the new digest), with a reason that says so.
    plan = make_plan([after], [hand_edited], providers=PROVIDERS)
    assert plan.held == []
    (change,) = plan.changes
    assert [d.path for d in change.diff] == ["X", "Y", f"tags.{TAG_DESIRED_HASH}"]
    assert change.reason.startswith("changed in Git")


def test_desired_digest_follows_git_only():
    """References count by key, not by AWS id; the digest tag itself and enforced objects are left out."""
    base = resource("subnet", "net", {"VpcId": Ref("Cluster/a/vpc"), "Zones": ("a", "b")}, drift_mode="warn")
    same = resource("subnet", "net", {"VpcId": Ref("Cluster/a/vpc"), "Zones": ("a", "b")}, drift_mode="warn")
    moved = resource("subnet", "net", {"VpcId": Ref("Cluster/a/other"), "Zones": ("a", "b")}, drift_mode="warn")
    assert desired_digest(base) == desired_digest(same) == desired_digest(with_desired_hash(same))
    assert desired_digest(base) != desired_digest(moved)
    enforced = resource("subnet", "net", {"VpcId": Ref("Cluster/a/vpc")})
    assert TAG_DESIRED_HASH not in with_desired_hash(enforced).tags


def test_warn_only_objects_are_still_created_when_missing():
    """warn mode reports drift instead of repairing it, but a missing resource is still created."""
    warn = resource("vpc", "net", {"Cidr": "10.0.0.0/16"}, owner="Cluster/w", drift_mode="warn")
    assert [c.action for c in make_plan([warn], [], providers=PROVIDERS).changes] == ["create"]


def test_diff_fields_is_scoped_to_desired_fields():
    """Fields AWS adds that Git does not name are ignored."""
    assert diff_fields({"a": 1}, {"a": 1, "server": "x"}) == []


class VersionedProvider(StubProvider):
    """Refuses downgrades the way the EKS provider does."""

    def check_update(self, desired, observed):
        if desired["Version"] < observed.fields["Version"]:
            return f"refusing to downgrade {observed.fields['Version']} to {desired['Version']}"
        return None


def test_an_update_the_provider_refuses_is_a_plan_error_not_an_apply_failure():
    """A downgrade is stopped at plan time with the provider's reason."""
    providers = {"eks": VersionedProvider("eks")}
    cluster = resource("eks", "eks", {"Version": "1.31"})
    plan = make_plan([cluster], [observed(cluster, {"Version": "1.32"})], providers=providers)
    assert plan.changes == []
    assert [(e.field, e.message) for e in plan.errors] == [("Version", "refusing to downgrade 1.32 to 1.31")]
    upgrade = resource("eks", "eks", {"Version": "1.33"})
    assert [c.action for c in make_plan([upgrade], [observed(upgrade, {"Version": "1.32"})], providers=providers).changes] == ["update"]


def test_a_resource_aws_reports_failed_is_a_plan_error_for_a_human():
    """A failed resource is neither ignored as unchanged nor blindly recreated."""
    vpc = resource("vpc", "net", {"Cidr": "10.0.0.0/16"})
    live = Observed(vpc.type, "nat-1", {"Cidr": "10.0.0.0/16"}, vpc.tags, {"id": "nat-1"}, status="failed",
                    state="failed", account=ACCOUNT.id, region="us-east-1")
    plan = make_plan([vpc], [live], providers=PROVIDERS)
    assert plan.changes == [] and plan.unchanged == []
    assert "nat-1 as failed" in plan.errors[0].message
