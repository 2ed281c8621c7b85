"""Set moto's in-process backend state from a test, where moto's API cannot.

moto answers every create with a resource that is ready at once (EKS ``ACTIVE``, RDS
``available``), so the "AWS is still working" paths of the engine would never run. The
`ThreadedMotoServer` of the test session runs inside the test process, so its backends are
plain Python objects here: these helpers change a resource's status the way AWS would while
it works (``CREATING`` → ``ACTIVE``), and fill the moto gaps a provider test cannot do
without (EKS tagging, `fill_eks_tagging_gaps`).

What it must not do: anything a provider could do through the AWS API — a test that sets state
here instead of calling AWS proves nothing about the provider. Everything here is test-only;
nothing under `daemon/` imports it.
"""

from __future__ import annotations

from typing import Any

import pytest
from moto.backends import get_backend

EKS_CLUSTER_STATES = frozenset({"CREATING", "ACTIVE", "DELETING", "FAILED", "UPDATING", "PENDING"})
EKS_NODEGROUP_STATES = frozenset(
    {"CREATING", "ACTIVE", "UPDATING", "DELETING", "CREATE_FAILED", "DELETE_FAILED", "DEGRADED"}
)


def _eks_cluster(account: str, region: str, name: str) -> Any:
    backend = get_backend("eks")[account][region]
    try:
        return backend.clusters[name]
    except KeyError:
        raise LookupError(f"moto has no EKS cluster {name} in {account}/{region}") from None


def set_eks_cluster_status(account: str, region: str, name: str, status: str) -> None:
    """Make moto report EKS cluster `name` with `status` (``CREATING``, ``ACTIVE``, ...)."""
    if status not in EKS_CLUSTER_STATES:
        raise ValueError(f"not an EKS cluster status: {status}")
    _eks_cluster(account, region, name).status = status


def set_nodegroup_status(account: str, region: str, cluster: str, nodegroup: str, status: str) -> None:
    """Make moto report node group `nodegroup` of `cluster` with `status` (``UPDATING``, ...)."""
    if status not in EKS_NODEGROUP_STATES:
        raise ValueError(f"not an EKS node group status: {status}")
    try:
        group = _eks_cluster(account, region, cluster).nodegroups[nodegroup]
    except KeyError:
        raise LookupError(f"moto has no node group {nodegroup} in cluster {cluster}") from None
    group.status = status


def set_db_instance_status(account: str, region: str, identifier: str, status: str) -> None:
    """Make moto report RDS instance `identifier` with `status` (``creating``, ``available``, ...)."""
    backend = get_backend("rds")[account][region]
    try:
        instance = backend.databases[identifier]
    except KeyError:
        raise LookupError(f"moto has no DB instance {identifier} in {account}/{region}") from None
    instance.status = status


def fill_eks_tagging_gaps(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make moto's EKS tagging behave as AWS's does, for the rest of the test.

    Two moto 5 gaps, both in tagging, both undone after the test by `monkeypatch`:

    * TagResource / UntagResource / ListTagsForResource accept cluster ARNs only; on a node
      group ARN they answer ResourceNotFoundException, although AWS supports them and keeps the
      tags in the node group's ``tags`` (which moto's DescribeNodegroup does return). Patched
      to look node groups up by ARN too and edit those same ``tags``.
    * UntagResource removes only the first of several ``tagKeys`` (moto reads one value of the
      repeated query parameter). Patched to read them all.
    """
    from moto.eks.models import EKSBackend
    from moto.eks.responses import EKSResponse

    original_tag = EKSBackend.tag_resource
    original_untag = EKSBackend.untag_resource
    original_list = EKSBackend.list_tags_for_resource

    def nodegroup_by_arn(backend: Any, arn: str) -> Any:
        for cluster in backend.clusters.values():
            for group in cluster.nodegroups.values():
                if group.arn == arn:
                    return group
        return None

    def tag_resource(self: Any, resource_arn: str, tags: dict[str, str]) -> None:
        group = nodegroup_by_arn(self, resource_arn)
        if group is None:
            original_tag(self, resource_arn, tags)
        else:
            group.tags.update(tags)

    def untag_resource(self: Any, resource_arn: str, tag_keys: list[str]) -> None:
        group = nodegroup_by_arn(self, resource_arn)
        if group is None:
            original_untag(self, resource_arn, tag_keys)
        else:
            for key in tag_keys:
                group.tags.pop(key, None)

    def list_tags_for_resource(self: Any, resource_arn: str) -> dict[str, str]:
        group = nodegroup_by_arn(self, resource_arn)
        return original_list(self, resource_arn) if group is None else group.tags

    def untag_resource_response(self: Any) -> Any:
        from moto.core.responses import EmptyResult

        self.eks_backend.untag_resource(self._extract_arn_from_path(), list(self.querystring.get("tagKeys", [])))
        return EmptyResult()

    monkeypatch.setattr(EKSBackend, "tag_resource", tag_resource)
    monkeypatch.setattr(EKSBackend, "untag_resource", untag_resource)
    monkeypatch.setattr(EKSBackend, "list_tags_for_resource", list_tags_for_resource)
    monkeypatch.setattr(EKSResponse, "untag_resource", untag_resource_response)
