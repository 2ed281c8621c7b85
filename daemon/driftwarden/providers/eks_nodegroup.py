"""EKS managed node groups (`eks.nodegroup`): one per node pool of a driftwarden Cluster.

What it owns: the node group's placement and shape (cluster, name, node role, subnets,
instance types, capacity type — all fixed at creation), its scaling bounds, Kubernetes labels
and taints (changed in place with UpdateNodegroupConfig), and its tags.

The instance type cannot change in place; graph.py puts a digest of it into the node group
name, so a new type is a new name and the plan replaces the group blue/green (the new one is
created and ACTIVE before the old one is deleted) — hence `replaceable`.

``desiredSize`` belongs to the cluster autoscaler: it is set once at creation (``minSize``
clamped into ``[minSize, maxSize]``), never read into `fields`, never compared, and only ever
sent again when new bounds would leave it outside ``[minSize, maxSize]`` (AWS would refuse
the update otherwise) — then it is clamped to the nearest bound in the same call.

What it must not do: touch a node group without our ``driftwarden:managed-by`` tag, or wait
for EKS (creates and updates return ``pending``; the engine polls `refresh`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from driftwarden.engine.graph import TAG_MANAGED_BY, Resource
from driftwarden.errors import NotFoundError, PermanentProviderError
from driftwarden.providers import tag_styles
from driftwarden.providers.aws import paginate
from driftwarden.providers.base import Context, Enumeration, Observed, Provider, Status, TypeInfo
from driftwarden.providers.eks_cluster import client_token, differs, sorted_ids

_STATUS: Mapping[str, Status] = {
    "ACTIVE": "ready",
    "CREATING": "pending",
    "UPDATING": "pending",
    "DELETING": "deleting",
    "CREATE_FAILED": "failed",
    "DELETE_FAILED": "failed",
    "DEGRADED": "failed",
}


def normalize_taints(taints: Iterable[Mapping[str, Any]]) -> tuple[dict[str, str], ...]:
    """Taints as ``{key, value, effect}`` sorted by key (then effect); AWS omits empty values."""
    result = [
        {"key": str(t["key"]), "value": str(t.get("value") or ""), "effect": str(t["effect"])}
        for t in taints
    ]
    return tuple(sorted(result, key=lambda t: (t["key"], t["effect"])))


def taint_request(taint: Mapping[str, str]) -> dict[str, str]:
    """A taint as EKS takes it: no ``value`` key for a value-less taint."""
    request = {"key": taint["key"], "effect": taint["effect"]}
    if taint.get("value"):
        request["value"] = taint["value"]
    return request


def initial_desired_size(min_size: int, max_size: int) -> int:
    """The size a new group starts with: its minimum, kept within its maximum."""
    return max(0, min(min_size, max_size))


def clamped_desired_size(current: int, min_size: int, max_size: int) -> int | None:
    """The desiredSize to send with new bounds, or None when the current one still fits."""
    if current > max_size:
        return max_size
    if current < min_size:
        return min_size
    return None


class EksNodegroupProvider(Provider):
    info = TypeInfo(
        type="eks.nodegroup",
        service="eks",
        # Per cluster: ListNodegroups gives names, each is then described (no batch read).
        enumeration=Enumeration("list_nodegroups", "nodegroups", "nodegroupName"),
        not_found=("ResourceNotFoundException",),
        tag_style=tag_styles.EKS,
        create_order=100,
        permissions={
            "read": ("eks:ListClusters", "eks:ListNodegroups", "eks:DescribeNodegroup"),
            # iam:PassRole: CreateNodegroup hands the node role to EKS.
            "create": ("eks:CreateNodegroup", "iam:PassRole"),
            "update": ("eks:DescribeNodegroup", "eks:UpdateNodegroupConfig"),
            "delete": ("eks:DeleteNodegroup",),
        },
        managed_fields=("ClusterName", "NodegroupName", "NodeRole", "Subnets", "InstanceTypes", "CapacityType",
                        "ScalingConfig", "Labels", "Taints"),
        replaceable=True,
        immutable={
            "ClusterName": "a node group cannot move to another EKS cluster",
            "NodegroupName": "a node group's name cannot change (it carries the instance type's digest: a new type is a new group)",
            "NodeRole": "EKS cannot change a node group's IAM role",
            "Subnets": "EKS cannot move a node group to other subnets",
            "InstanceTypes": "EKS cannot change a node group's instance types",
            "CapacityType": "EKS cannot switch a node group between ON_DEMAND and SPOT",
        },
    )

    def normalize_desired(self, desired: Mapping[str, Any]) -> dict[str, Any]:
        result = dict(desired)
        result["Subnets"] = sorted_ids(desired["Subnets"])
        # Order kept: the first instance type is the one EKS prefers.
        result["InstanceTypes"] = tuple(desired["InstanceTypes"])
        scaling = desired["ScalingConfig"]
        result["ScalingConfig"] = {"minSize": scaling["minSize"], "maxSize": scaling["maxSize"]}
        result["Labels"] = dict(desired.get("Labels") or {})
        result["Taints"] = normalize_taints(desired.get("Taints") or ())
        return result

    def read(self, ctx: Context) -> list[Observed]:
        eks = ctx.client("eks")
        found = []
        # EKS has no batch describe and no tag filter for node groups: list the clusters (one
        # paginated call), list each cluster's node groups, describe each node group. Not
        # filtering clusters by our tag first saves a DescribeCluster per cluster and still
        # finds our groups; foreign groups are dropped by their own tags below.
        for cluster in paginate(eks, "ListClusters", "clusters"):
            try:
                names = list(paginate(eks, "ListNodegroups", "nodegroups", clusterName=cluster))
            except NotFoundError:
                continue  # the cluster was deleted after it was listed
            for name in names:
                group = _describe(eks, cluster, name)
                if group is not None and (group.get("tags") or {}).get(TAG_MANAGED_BY) == ctx.instance:
                    found.append(_observed(group))
        return found

    def create(self, ctx: Context, resource: Resource, desired: Mapping[str, Any]) -> Observed:
        scaling = desired["ScalingConfig"]
        min_size, max_size = int(scaling["minSize"]), int(scaling["maxSize"])
        request: dict[str, Any] = {
            "clusterName": desired["ClusterName"],
            "nodegroupName": desired["NodegroupName"],
            "nodeRole": desired["NodeRole"],
            "subnets": list(desired["Subnets"]),
            "instanceTypes": list(desired["InstanceTypes"]),
            "capacityType": desired["CapacityType"],
            "scalingConfig": {
                "minSize": min_size,
                "maxSize": max_size,
                "desiredSize": initial_desired_size(min_size, max_size),
            },
            # Node group tags stay on the node group (EKS does not copy them to instances).
            "tags": dict(resource.tags),
            # The name is part of the token: a blue/green replacement shares the resource key
            # with the group it replaces but is a different request.
            "clientRequestToken": client_token(resource.key, desired["ClusterName"], desired["NodegroupName"]),
        }
        # Sent only when there are some: an empty list or map is not "none" to every API.
        if desired.get("Labels"):
            request["labels"] = dict(desired["Labels"])
        if desired.get("Taints"):
            request["taints"] = [taint_request(t) for t in normalize_taints(desired["Taints"])]
        response = ctx.client("eks").create_nodegroup(**request)
        # AWS answers CREATING (several minutes): `pending`, and the engine polls `refresh`.
        return _observed(response["nodegroup"])

    def update(
        self, ctx: Context, resource: Resource, desired: Mapping[str, Any], observed: Observed, changed: list[str]
    ) -> Observed:
        wanted = self.normalize_desired(desired)
        for field_name, reason in self.immutable.items():
            if field_name in changed and differs(wanted[field_name], observed.fields.get(field_name)):
                # The plan replaces the group instead; reaching here means a dependency changed
                # between plan and apply. Refuse rather than half-apply.
                raise PermanentProviderError(f"cannot change {field_name} of EKS node group {observed.id}: {reason}")
        eks = ctx.client("eks")
        cluster, name = observed.fields["ClusterName"], observed.fields["NodegroupName"]
        config: dict[str, Any] = {}
        current: Mapping[str, Any] = {}
        if {"ScalingConfig", "Labels", "Taints"} & set(changed):
            # Read again: the deltas below and the desiredSize clamp must start from what AWS
            # has now (the autoscaler moves desiredSize at any time), not the plan's snapshot.
            current = eks.describe_nodegroup(clusterName=cluster, nodegroupName=name)["nodegroup"]
        if "ScalingConfig" in changed:
            scaling = {"minSize": wanted["ScalingConfig"]["minSize"], "maxSize": wanted["ScalingConfig"]["maxSize"]}
            current_size = (current.get("scalingConfig") or {}).get("desiredSize")
            if current_size is not None:
                clamped = clamped_desired_size(int(current_size), scaling["minSize"], scaling["maxSize"])
                if clamped is not None:
                    scaling["desiredSize"] = clamped
            config["scalingConfig"] = scaling
        if "Labels" in changed:
            labels = _label_delta(current.get("labels") or {}, wanted["Labels"])
            if labels:
                config["labels"] = labels
        if "Taints" in changed:
            taints = _taint_delta(normalize_taints(current.get("taints") or ()), wanted["Taints"])
            if taints:
                config["taints"] = taints
        if config:
            # One call for scaling, labels and taints together. No clientRequestToken of ours:
            # botocore makes one per call, and a fixed one would let AWS swallow a later,
            # legitimate repeat of the same change (drift back to the same values).
            eks.update_nodegroup_config(clusterName=cluster, nodegroupName=name, **config)
        group = _describe(eks, cluster, name)
        if group is None:
            raise NotFoundError(f"EKS node group {observed.id} disappeared while being updated")
        # A config update shows as UPDATING: `pending` until EKS is done.
        return _observed(group)

    def refresh(self, ctx: Context, observed: Observed) -> Observed | None:
        # One DescribeNodegroup per poll instead of reading every group of every cluster.
        group = _describe(ctx.client("eks"), observed.fields["ClusterName"], observed.fields["NodegroupName"])
        if group is None or (group.get("tags") or {}).get(TAG_MANAGED_BY) != ctx.instance:
            return None
        return _observed(group)

    def delete(self, ctx: Context, observed: Observed) -> None:
        try:
            ctx.client("eks").delete_nodegroup(
                clusterName=observed.fields["ClusterName"], nodegroupName=observed.fields["NodegroupName"]
            )
        except NotFoundError:
            return  # already gone (or its cluster is): what we wanted


def _label_delta(current: Mapping[str, str], wanted: Mapping[str, str]) -> dict[str, Any]:
    delta: dict[str, Any] = {}
    add = {k: v for k, v in wanted.items() if current.get(k) != v}
    remove = sorted(k for k in current if k not in wanted)
    if add:
        delta["addOrUpdateLabels"] = add
    if remove:
        delta["removeLabels"] = remove
    return delta


def _taint_delta(current: tuple[dict[str, str], ...], wanted: tuple[dict[str, str], ...]) -> dict[str, Any]:
    # EKS identifies a taint by key and effect; a new value for the same pair is an update.
    wanted_ids = {(t["key"], t["effect"]) for t in wanted}
    delta: dict[str, Any] = {}
    add = [taint_request(t) for t in wanted if t not in current]
    remove = [taint_request(t) for t in current if (t["key"], t["effect"]) not in wanted_ids]
    if add:
        delta["addOrUpdateTaints"] = add
    if remove:
        delta["removeTaints"] = remove
    return delta


def _describe(eks: Any, cluster: str, name: str) -> dict[str, Any] | None:
    try:
        group: dict[str, Any] = eks.describe_nodegroup(clusterName=cluster, nodegroupName=name)["nodegroup"]
    except NotFoundError:
        return None  # deleted between listing and describing
    return group


def _observed(group: Mapping[str, Any]) -> Observed:
    cluster, name = group["clusterName"], group["nodegroupName"]
    scaling = group.get("scalingConfig") or {}
    state = group.get("status", "")
    return Observed(
        type=EksNodegroupProvider.info.type,
        # Node group names are unique per cluster only.
        id=f"{cluster}/{name}",
        fields={
            "ClusterName": cluster,
            "NodegroupName": name,
            "NodeRole": group.get("nodeRole", ""),
            "Subnets": sorted_ids(group.get("subnets") or ()),
            "InstanceTypes": tuple(group.get("instanceTypes") or ()),
            "CapacityType": group.get("capacityType", ""),
            # desiredSize deliberately left out: the autoscaler owns it (module docstring).
            "ScalingConfig": {"minSize": scaling.get("minSize"), "maxSize": scaling.get("maxSize")},
            "Labels": dict(group.get("labels") or {}),
            "Taints": normalize_taints(group.get("taints") or ()),
        },
        # DescribeNodegroup returns the group's tags itself (moto too, from CreateNodegroup).
        tags=dict(group.get("tags") or {}),
        attributes={"id": f"{cluster}/{name}", "Arn": group["nodegroupArn"], "ClusterName": cluster,
                    "NodegroupName": name},
        status=_STATUS.get(state, "pending"),
        state=state,
    )
