"""EKS clusters (`eks.cluster`): the Kubernetes control plane of a driftwarden Cluster.

What it owns: the cluster's name, Kubernetes version, control-plane role, subnets and
additional security groups (the fields graph.py declares), and the cluster's tags. The
version is the only managed field AWS changes in place, and only forwards by one minor version
at a time (``1.31`` → ``1.32``); a downgrade or a jump is refused before any call is made.
Everything else EKS sets (endpoint access, logging, add-ons, the EKS-made cluster security
group) is neither read nor changed, so AWS defaults never look like drift.

What it must not do: delete node groups (the engine deletes them first, in reverse dependency
order), wait for EKS (a create or an upgrade returns ``pending`` and the engine polls
`refresh`), or touch a cluster without our ``driftwarden:managed-by`` tag.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from typing import Any

from driftwarden.engine.graph import TAG_MANAGED_BY, Resource
from driftwarden.errors import NotFoundError, PermanentProviderError
from driftwarden.providers import tag_styles
from driftwarden.providers.aws import paginate
from driftwarden.providers.base import Context, Enumeration, Observed, Provider, Status, TypeInfo

# AWS's cluster states, as our status vocabulary. Anything unknown is treated as work in
# progress rather than "ready", so nothing is built on a cluster in a state we do not know.
_STATUS: Mapping[str, Status] = {
    "ACTIVE": "ready",
    "CREATING": "pending",
    "UPDATING": "pending",
    "PENDING": "pending",
    "DELETING": "deleting",
    "FAILED": "failed",
}

_VERSION = re.compile(r"^(\d+)\.(\d+)$")


def client_token(*parts: str) -> str:
    """A deterministic idempotency token: a retried create is the same request to AWS."""
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:32]


def sorted_ids(values: Iterable[Any]) -> tuple[Any, ...]:
    """Ids in a stable order; AWS does not promise to keep ours. `str` keeps unresolved
    references (plan's UNKNOWN) sortable next to real ids."""
    return tuple(sorted(values, key=str))


def differs(wanted: Any, have: Any) -> bool:
    """Whether two normalised field values differ; lists and tuples compare alike, as in plan."""
    if isinstance(wanted, list | tuple) and isinstance(have, list | tuple):
        return tuple(wanted) != tuple(have)
    return bool(wanted != have)


def check_version_step(name: str, current: str, wanted: str) -> None:
    """Raise unless `wanted` is `current` or exactly one minor version after it.

    EKS upgrades the control plane one minor version at a time and cannot downgrade; trying
    either would fail after a long wait or, worse, half-way, so refuse before calling AWS.
    """
    have, want = _VERSION.match(current), _VERSION.match(wanted)
    if have is None or want is None:
        raise PermanentProviderError(
            f"EKS cluster {name}: cannot compare Kubernetes versions {current} and {wanted}"
        )
    (have_major, have_minor), (want_major, want_minor) = (
        (int(have[1]), int(have[2])),
        (int(want[1]), int(want[2])),
    )
    if (want_major, want_minor) == (have_major, have_minor):
        return
    if want_major != have_major or want_minor < have_minor:
        raise PermanentProviderError(
            f"EKS cluster {name} runs Kubernetes {current}; refusing to downgrade it to {wanted}: "
            "EKS cannot downgrade a cluster"
        )
    if want_minor > have_minor + 1:
        raise PermanentProviderError(
            f"EKS cluster {name} runs Kubernetes {current}; refusing to upgrade it to {wanted} in one "
            f"step: EKS upgrades one minor version at a time (set {have_major}.{have_minor + 1} first)"
        )


class EksClusterProvider(Provider):
    info = TypeInfo(
        type="eks.cluster",
        service="eks",
        # ListClusters gives names only; each is then described (EKS has no batch read).
        enumeration=Enumeration("list_clusters", "clusters", "name"),
        not_found=("ResourceNotFoundException",),
        tag_style=tag_styles.EKS,
        create_order=90,
        permissions={
            "read": ("eks:ListClusters", "eks:DescribeCluster"),
            # iam:PassRole: CreateCluster hands the control-plane role to EKS.
            "create": ("eks:CreateCluster", "iam:PassRole"),
            "update": ("eks:DescribeCluster", "eks:UpdateClusterVersion"),
            "delete": ("eks:DeleteCluster",),
        },
        managed_fields=("Name", "Version", "RoleArn", "SubnetIds", "SecurityGroupIds"),
        immutable={
            "Name": "an EKS cluster's name cannot change",
            "RoleArn": "EKS cannot change a cluster's IAM role",
            "SubnetIds": "EKS cannot move a cluster to other subnets",
            "SecurityGroupIds": "EKS cannot change a cluster's additional security groups in place",
        },
    )

    def normalize_desired(self, desired: Mapping[str, Any]) -> dict[str, Any]:
        result = dict(desired)
        result["SubnetIds"] = sorted_ids(desired["SubnetIds"])
        result["SecurityGroupIds"] = sorted_ids(desired["SecurityGroupIds"])
        return result

    def read(self, ctx: Context) -> list[Observed]:
        eks = ctx.client("eks")
        found = []
        # EKS has no batch describe and no server-side tag filter: list the names (one
        # paginated call), then one DescribeCluster per cluster — the per-cluster EKS read.
        for name in paginate(eks, "ListClusters", "clusters"):
            cluster = _describe(eks, name)
            if cluster is not None and (cluster.get("tags") or {}).get(TAG_MANAGED_BY) == ctx.instance:
                found.append(_observed(cluster))
        return found

    def create(self, ctx: Context, resource: Resource, desired: Mapping[str, Any]) -> Observed:
        response = ctx.client("eks").create_cluster(
            name=desired["Name"],
            version=desired["Version"],
            roleArn=desired["RoleArn"],
            resourcesVpcConfig={
                "subnetIds": list(desired["SubnetIds"]),
                "securityGroupIds": list(desired["SecurityGroupIds"]),
            },
            clientRequestToken=client_token(resource.key, desired["Name"]),
            tags=dict(resource.tags),
        )
        # AWS answers CREATING (about 10 minutes): `pending`, and the engine polls `refresh`.
        return _observed(response["cluster"])

    def check_update(self, desired: Mapping[str, Any], observed: Observed) -> str | None:
        try:
            check_version_step(observed.id, str(observed.fields.get("Version", "")), str(desired["Version"]))
        except PermanentProviderError as refusal:
            return str(refusal)
        return None

    def update(
        self, ctx: Context, resource: Resource, desired: Mapping[str, Any], observed: Observed, changed: list[str]
    ) -> Observed:
        name = observed.id
        wanted = self.normalize_desired(desired)
        for field_name, reason in self.immutable.items():
            if field_name in changed and differs(wanted[field_name], observed.fields.get(field_name)):
                # The plan turns these into errors; reaching here means a dependency was
                # replaced between plan and apply. Refuse rather than half-apply.
                raise PermanentProviderError(f"cannot change {field_name} of EKS cluster {name}: {reason}")
        upgrade = "Version" in changed and wanted["Version"] != observed.fields["Version"]
        if upgrade:
            # Checked before any call, so a refused version leaves the cluster untouched.
            check_version_step(name, observed.fields["Version"], wanted["Version"])
        eks = ctx.client("eks")
        if upgrade:
            # No clientRequestToken of ours: botocore generates one per call (and reuses it on
            # its retries). A fixed token would make AWS ignore a later, legitimate retry of the
            # same upgrade. moto does not implement UpdateClusterVersion: it answers a plain
            # HTTP 404, which surfaces as driftwarden's NotFoundError — deliberately not caught.
            eks.update_cluster_version(name=name, version=wanted["Version"])
        cluster = _describe(eks, name)
        if cluster is None:
            raise NotFoundError(f"EKS cluster {name} disappeared while being updated")
        # An upgrade shows as UPDATING: `pending` until EKS is done.
        return _observed(cluster)

    def refresh(self, ctx: Context, observed: Observed) -> Observed | None:
        # One DescribeCluster per poll instead of describing every cluster in the region.
        cluster = _describe(ctx.client("eks"), observed.id)
        if cluster is None or (cluster.get("tags") or {}).get(TAG_MANAGED_BY) != ctx.instance:
            return None
        return _observed(cluster)

    def delete(self, ctx: Context, observed: Observed) -> None:
        try:
            ctx.client("eks").delete_cluster(name=observed.id)
        except NotFoundError:
            return  # already gone: what we wanted


def _describe(eks: Any, name: str) -> dict[str, Any] | None:
    try:
        cluster: dict[str, Any] = eks.describe_cluster(name=name)["cluster"]
    except NotFoundError:
        return None  # deleted between listing and describing
    return cluster


def _observed(cluster: Mapping[str, Any]) -> Observed:
    name = cluster["name"]
    vpc = cluster.get("resourcesVpcConfig") or {}
    state = cluster.get("status", "")
    return Observed(
        type=EksClusterProvider.info.type,
        id=name,
        fields={
            "Name": name,
            "Version": cluster.get("version", ""),
            "RoleArn": cluster.get("roleArn", ""),
            "SubnetIds": sorted_ids(vpc.get("subnetIds") or ()),
            # Only the security groups we passed; EKS's own cluster security group is
            # reported separately (clusterSecurityGroupId) and is not ours to manage.
            "SecurityGroupIds": sorted_ids(vpc.get("securityGroupIds") or ()),
        },
        tags=dict(cluster.get("tags") or {}),
        attributes={"id": name, "Arn": cluster["arn"], "Name": name},
        status=_STATUS.get(state, "pending"),
        state=state,
    )
