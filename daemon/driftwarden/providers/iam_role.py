"""IAM roles (`iam.role`): the EKS control-plane and node roles, and deployment workload roles.

What it owns: the role itself, its trust policy, the managed policies attached to it and its
inline policies — nothing else in IAM. Policies are compared as normalised JSON (see
`normalize_policy`), because AWS hands documents back URL-encoded, with keys reordered and
one-element lists collapsed to strings.

IAM is global: the engine reads it once per account (`global_service`), whatever the region.
One paginated `GetAccountAuthorizationDetails` call returns every role with its trust policy,
attached and inline policies and tags, so a read never costs one call per role. IAM has no
server-side tag filter; roles are filtered on `driftwarden:managed-by` here.

Roles are created at path "/" on purpose: EKS managed node groups cannot join a cluster when
the node role has a path (aws/containers-roadmap#926), and the read does not need one.

What it must not do: touch a role without our managed-by tag, or delete managed policies
themselves (they are only detached).
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any

from driftwarden.engine.graph import TAG_MANAGED_BY, Resource
from driftwarden.errors import NotFoundError, ProviderError
from driftwarden.providers import tag_styles
from driftwarden.providers.aws import paginate
from driftwarden.providers.base import (
    Context,
    Enumeration,
    Observed,
    Provider,
    TypeInfo,
    carries_ownership,
    converge,
    tag_list,
    tag_map,
)

# Statement elements whose value may be one string or a list of strings.
_LIST_ELEMENTS = ("Action", "NotAction", "Resource", "NotResource")
_PRINCIPAL_ELEMENTS = ("Principal", "NotPrincipal")

_READ_ONE = ("iam:GetRole", "iam:ListAttachedRolePolicies", "iam:ListRolePolicies", "iam:GetRolePolicy")
_CONVERGE = (
    "iam:UpdateAssumeRolePolicy",
    "iam:AttachRolePolicy",
    "iam:DetachRolePolicy",
    "iam:PutRolePolicy",
    "iam:DeleteRolePolicy",
)
_FIELDS = ("RoleName", "AssumeRolePolicyDocument", "ManagedPolicyArns", "InlinePolicies")


def _string_list(value: Any) -> list[Any]:
    """One value or a list of values as a sorted list without duplicates (set semantics)."""
    items = value if isinstance(value, list | tuple) else [value]
    unique = {json.dumps(item, sort_keys=True): item for item in items}
    return [unique[k] for k in sorted(unique)]


def _statement(statement: Mapping[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, value in statement.items():
        if name in _LIST_ELEMENTS:
            result[name] = _string_list(value)
        elif name in _PRINCIPAL_ELEMENTS and isinstance(value, Mapping):
            result[name] = {kind: _string_list(ids) for kind, ids in sorted(value.items())}
        elif name == "Condition" and isinstance(value, Mapping):
            result[name] = {
                operator: {key: _string_list(v) for key, v in sorted(pairs.items())}
                for operator, pairs in sorted(value.items())
            }
        else:
            result[name] = value
    return dict(sorted(result.items()))


def normalize_policy(document: str | Mapping[str, Any]) -> dict[str, Any]:
    """A policy document in one canonical shape, whichever way AWS or Git wrote it.

    Accepts a dict or JSON text, URL-encoded or not (IAM returns policies URL-encoded; boto3
    decodes some responses but not all). Statement becomes a list; Action, Resource, their
    Not* forms, principal ids and condition values become sorted lists of unique values, since
    IAM treats them as sets and collapses one-element lists to plain strings.
    """
    if isinstance(document, str):
        text = document.strip()
        if not text.startswith("{"):
            text = urllib.parse.unquote(text)
        parsed: Any = json.loads(text)
    else:
        parsed = _plain(document)
    statements = parsed.get("Statement", [])
    if isinstance(statements, Mapping):
        statements = [statements]
    result = {k: v for k, v in parsed.items() if k != "Statement"}
    result["Statement"] = [_statement(s) for s in statements]
    return dict(sorted(result.items()))


def _plain(value: Any) -> Any:
    """Mappings and tuples (as `plan.resolve` leaves them) as JSON's dicts and lists."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _policy_json(document: Mapping[str, Any]) -> str:
    return json.dumps(document, sort_keys=True, separators=(",", ":"))


def _role_fields(
    name: str, trust: str | Mapping[str, Any], managed: Iterable[str], inline: Mapping[str, Any]
) -> dict[str, Any]:
    return {
        "RoleName": name,
        "AssumeRolePolicyDocument": normalize_policy(trust),
        "ManagedPolicyArns": tuple(sorted(set(managed))),
        "InlinePolicies": {policy: normalize_policy(doc) for policy, doc in sorted(inline.items())},
    }


class IamRole(Provider):
    info = TypeInfo(
        type="iam.role",
        service="iam",
        enumeration=Enumeration("get_account_authorization_details", "RoleDetailList", "RoleName"),
        not_found=("NoSuchEntity",),
        tag_style=tag_styles.IAM_ROLE,
        create_order=10,
        permissions={
            # The per-role reads are `refresh` (one role, while waiting on it).
            "read": ("iam:GetAccountAuthorizationDetails", *_READ_ONE),
            # iam:TagRole is what AWS checks for the Tags of CreateRole. The reads and converging
            # calls serve a create retried after a crash: the role exists already and is ours.
            "create": ("iam:CreateRole", "iam:TagRole", "iam:AttachRolePolicy", "iam:PutRolePolicy", *_READ_ONE,
                       *_CONVERGE),
            "update": (*_CONVERGE, *_READ_ONE),
            "delete": (
                "iam:ListAttachedRolePolicies",
                "iam:DetachRolePolicy",
                "iam:ListRolePolicies",
                "iam:DeleteRolePolicy",
                "iam:ListInstanceProfilesForRole",
                "iam:RemoveRoleFromInstanceProfile",
                "iam:DeleteRole",
            ),
        },
        managed_fields=_FIELDS,
        immutable={"RoleName": "IAM role names cannot change"},
        global_service=True,
    )

    def normalize_desired(self, desired: Mapping[str, Any]) -> dict[str, Any]:
        result = dict(desired)
        trust = desired.get("AssumeRolePolicyDocument")
        if isinstance(trust, str | Mapping):
            result["AssumeRolePolicyDocument"] = normalize_policy(trust)
        managed = desired.get("ManagedPolicyArns", ())
        # A policy ARN still unknown (a Ref to something not created yet) is left for the plan.
        if all(isinstance(arn, str) for arn in managed):
            result["ManagedPolicyArns"] = tuple(sorted(set(managed)))
        inline = desired.get("InlinePolicies", {})
        if all(isinstance(doc, str | Mapping) for doc in inline.values()):
            result["InlinePolicies"] = {name: normalize_policy(doc) for name, doc in sorted(inline.items())}
        return result

    # -- reading -------------------------------------------------------------------------------

    def read(self, ctx: Context) -> list[Observed]:
        iam = ctx.client("iam")
        found = []
        for role in paginate(iam, "get_account_authorization_details", "RoleDetailList", Filter=["Role"]):
            tags = tag_map(role.get("Tags"))
            if tags.get(TAG_MANAGED_BY) != ctx.instance:
                continue
            fields = _role_fields(
                role["RoleName"],
                role["AssumeRolePolicyDocument"],
                (p["PolicyArn"] for p in role.get("AttachedManagedPolicies", [])),
                {p["PolicyName"]: p["PolicyDocument"] for p in role.get("RolePolicyList", [])},
            )
            found.append(self._observed(role["RoleName"], role["Arn"], fields, tags))
        return found

    def refresh(self, ctx: Context, observed: Observed) -> Observed | None:
        # One role, not the whole account.
        return self._read_one(ctx.client("iam"), observed.id)

    def _read_one(self, iam: Any, name: str) -> Observed | None:
        try:
            role = iam.get_role(RoleName=name)["Role"]
            managed = [p["PolicyArn"] for p in paginate(iam, "list_attached_role_policies", "AttachedPolicies",
                                                          RoleName=name)]
            inline = {
                policy: iam.get_role_policy(RoleName=name, PolicyName=policy)["PolicyDocument"]
                for policy in paginate(iam, "list_role_policies", "PolicyNames", RoleName=name)
            }
        except NotFoundError:
            return None
        fields = _role_fields(name, role["AssumeRolePolicyDocument"], managed, inline)
        return self._observed(name, role["Arn"], fields, tag_map(role.get("Tags")))

    def _observed(self, name: str, arn: str, fields: Mapping[str, Any], tags: Mapping[str, str]) -> Observed:
        return Observed(self.type, name, fields, tags, {"id": name, "Arn": arn})

    # -- changing ------------------------------------------------------------------------------

    def create(self, ctx: Context, resource: Resource, desired: Mapping[str, Any]) -> Observed:
        iam = ctx.client("iam")
        name = desired["RoleName"]
        try:
            iam.create_role(
                RoleName=name,
                Path="/",
                AssumeRolePolicyDocument=_policy_json(desired["AssumeRolePolicyDocument"]),
                Description=f"driftwarden: {resource.key}"[:1000],
                Tags=tag_list(resource.tags),
            )
        except ProviderError as exc:
            if exc.code != "EntityAlreadyExists":
                raise
            # IAM has no client token. A role with this name that carries our ownership tags for
            # this very resource is what an interrupted create left behind: finish the job.
            # Anyone else's role is never taken over.
            existing = self._read_one(iam, name)
            if existing is None or not carries_ownership(existing.tags, resource):
                raise
            return converge(self, ctx, resource, desired, existing, ["tags", *_FIELDS[1:]])
        for arn in desired["ManagedPolicyArns"]:
            iam.attach_role_policy(RoleName=name, PolicyArn=arn)
        for policy, document in desired["InlinePolicies"].items():
            iam.put_role_policy(RoleName=name, PolicyName=policy, PolicyDocument=_policy_json(document))
        found = self._read_one(iam, name)
        if found is None:
            raise NotFoundError(f"IAM role {name} disappeared right after it was created")
        return found

    def update(
        self, ctx: Context, resource: Resource, desired: Mapping[str, Any], observed: Observed, changed: list[str]
    ) -> Observed:
        iam = ctx.client("iam")
        name = observed.id
        if "AssumeRolePolicyDocument" in changed:
            iam.update_assume_role_policy(RoleName=name,
                                          PolicyDocument=_policy_json(desired["AssumeRolePolicyDocument"]))
        if "ManagedPolicyArns" in changed:
            want = set(desired["ManagedPolicyArns"])
            have = set(observed.fields.get("ManagedPolicyArns") or ())
            for arn in sorted(want - have):
                iam.attach_role_policy(RoleName=name, PolicyArn=arn)
            for arn in sorted(have - want):
                iam.detach_role_policy(RoleName=name, PolicyArn=arn)
        if "InlinePolicies" in changed:
            want_inline: Mapping[str, Any] = desired["InlinePolicies"]
            have_inline: Mapping[str, Any] = observed.fields.get("InlinePolicies") or {}
            for policy, document in sorted(want_inline.items()):
                if have_inline.get(policy) != document:
                    iam.put_role_policy(RoleName=name, PolicyName=policy, PolicyDocument=_policy_json(document))
            for policy in sorted(set(have_inline) - set(want_inline)):
                iam.delete_role_policy(RoleName=name, PolicyName=policy)
        found = self._read_one(iam, name)
        if found is None:
            raise NotFoundError(f"IAM role {name} disappeared while it was being updated")
        return found

    def delete(self, ctx: Context, observed: Observed) -> None:
        iam = ctx.client("iam")
        name = observed.id
        try:
            # IAM refuses to delete a role that still has policies or instance profiles.
            attached = list(paginate(iam, "list_attached_role_policies", "AttachedPolicies", RoleName=name))
            inline = list(paginate(iam, "list_role_policies", "PolicyNames", RoleName=name))
            profiles = list(paginate(iam, "list_instance_profiles_for_role", "InstanceProfiles", RoleName=name))
        except NotFoundError:
            return
        for policy in attached:
            _ignore_not_found(iam.detach_role_policy, RoleName=name, PolicyArn=policy["PolicyArn"])
        for policy_name in inline:
            _ignore_not_found(iam.delete_role_policy, RoleName=name, PolicyName=policy_name)
        for profile in profiles:
            _ignore_not_found(iam.remove_role_from_instance_profile, RoleName=name,
                              InstanceProfileName=profile["InstanceProfileName"])
        _ignore_not_found(iam.delete_role, RoleName=name)


def _ignore_not_found(call: Any, **kwargs: Any) -> None:
    try:
        call(**kwargs)
    except NotFoundError:
        return
