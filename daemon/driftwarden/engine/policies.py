"""IAM documents driftwarden needs, generated rather than written by hand.

* `trust_policy`: the trust policy of the role driftwarden assumes in a target account — the
  control account's principal may assume it only with one of the ExternalIds of that account's
  clusters (seed 000). AWS limits trust policies to 2,048 characters (without white space) by
  default; past that, a warning says to request a larger quota or split accounts.
* `permissions_policy`: the least-privilege policy for that role, generated from the IAM
  actions every provider declares next to its code and from the preflight checks, so it cannot
  fall behind what driftwarden calls.

Pure: no AWS calls.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from driftwarden.engine import preflight
from driftwarden.manifests.model import Cluster
from driftwarden.providers.base import Provider

TRUST_POLICY_LIMIT = 2048


def trust_policy(clusters: Iterable[Cluster], account_id: str, principal: str) -> tuple[dict[str, Any], list[str]]:
    """The trust policy for `account_id`'s role, and warnings."""
    mine = [c for c in clusters if c.account.id == account_id]
    warnings: list[str] = []
    if not mine:
        warnings.append(f"no Cluster manifest uses account {account_id}")
    roles = sorted({c.account.role_name for c in mine})
    if len(roles) > 1:
        warnings.append(f"clusters of account {account_id} name different roles ({', '.join(roles)}); "
                        "each role needs this trust policy")
    external_ids = sorted({c.account.external_id for c in mine})
    condition_value: Any = external_ids[0] if len(external_ids) == 1 else external_ids
    document = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": principal},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"sts:ExternalId": condition_value}},
            }
        ],
    }
    size = len(json.dumps(document, separators=(",", ":")))
    if size > TRUST_POLICY_LIMIT:
        warnings.append(
            f"the trust policy is {size} characters; IAM allows {TRUST_POLICY_LIMIT} by default "
            "(request a higher 'Role trust policy length' quota, or spread clusters over accounts)"
        )
    return document, warnings


def principal_for(control: str) -> str:
    """A 12-digit control account id becomes its root principal; an ARN stays as given."""
    return f"arn:aws:iam::{control}:root" if control.isdigit() else control


def permissions_policy(providers: Mapping[str, Provider]) -> dict[str, Any]:
    """Every IAM action driftwarden calls in a target account, grouped by service."""
    actions: set[str] = set(preflight.PERMISSIONS)
    for provider in providers.values():
        for names in provider.permissions.values():
            actions.update(names)
    actions.discard("iam:PassRole")
    by_service: dict[str, list[str]] = {}
    for action in sorted(actions):
        by_service.setdefault(action.split(":")[0], []).append(action)
    statements: list[dict[str, Any]] = [
        {"Sid": f"Driftwarden{service.title().replace('-', '')}", "Effect": "Allow", "Action": names, "Resource": "*"}
        for service, names in sorted(by_service.items())
    ]
    # EKS and its node groups need to be handed their roles; only driftwarden's own roles.
    statements.append(
        {
            "Sid": "DriftwardenPassOwnRoles",
            "Effect": "Allow",
            "Action": "iam:PassRole",
            "Resource": "arn:aws:iam::*:role/driftwarden-*",
            "Condition": {"StringEquals": {"iam:PassedToService": ["eks.amazonaws.com", "ec2.amazonaws.com"]}},
        }
    )
    return {"Version": "2012-10-17", "Statement": statements}
