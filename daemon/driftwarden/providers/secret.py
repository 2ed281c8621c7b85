"""Secrets Manager secrets (`secretsmanager.secret`): a Deployment's secret environment variables.

What it owns: one secret per Deployment, holding a JSON object of variable name -> value, its
description, and two bookkeeping tags that describe the content without revealing it:
`driftwarden:content-hash` (sha256 of the JSON document, `secret_payload`) and
`driftwarden:keys` (the variable names). Drift is detected by comparing the hash the engine
computes from the sources with the tag, so a read never calls GetSecretValue: values are
read (in the control account, through `ctx.resolve_secret`) and written only at create and
update time.

Deleting schedules deletion with a 7-day recovery window. A secret pending deletion is absent
to a read, but its name stays taken; creating it again restores it and writes the new content.

What it must not do: read a secret's value, or put a value (or anything derived from one other
than the hash) in logs, errors, `Observed`, or reprs.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from driftwarden.engine.graph import OWNERSHIP_TAGS, TAG_MANAGED_BY, Resource
from driftwarden.errors import DriftwardenError, NotFoundError, ProviderError
from driftwarden.providers import tag_styles
from driftwarden.providers.aws import paginate
from driftwarden.providers.base import (
    Context,
    Enumeration,
    Observed,
    Provider,
    TypeInfo,
    carries_ownership,
    tag_list,
    tag_map,
)


# The one definition of the document and its hash, so the hash written here is the one the
# plan computes.
def secret_payload(values: Mapping[str, str]) -> tuple[str, str]:
    """The secret's JSON document and its content hash (what the target's tag records)."""
    document = json.dumps(dict(sorted(values.items())), separators=(",", ":"))
    return document, hashlib.sha256(document.encode()).hexdigest()

TAG_CONTENT_HASH = "driftwarden:content-hash"
TAG_KEYS = "driftwarden:keys"
# A tag value holds at most 256 characters; longer key lists continue in driftwarden:keys:2, ...
_TAG_VALUE_LIMIT = 256
# Tag values may not contain commas in every AWS tagging API; variable names never hold spaces.
_KEYS_SEPARATOR = " "
RECOVERY_WINDOW_DAYS = 7

_TOKEN_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://driftwarden/secretsmanager.secret")


def _client_token(key: str, digest: str) -> str:
    """The version id for this content of this resource: a retried write is recognised."""
    return str(uuid.uuid5(_TOKEN_NAMESPACE, f"{key}\n{digest}"))


def keys_tags(keys: Iterable[str]) -> dict[str, str]:
    """The variable names as tags: `driftwarden:keys`, continued in `driftwarden:keys:2`, ..."""
    chunks: list[list[str]] = [[]]
    for key in sorted(keys):
        candidate = _KEYS_SEPARATOR.join([*chunks[-1], key])
        if chunks[-1] and len(candidate) > _TAG_VALUE_LIMIT:
            chunks.append([key])
        else:
            chunks[-1].append(key)
    return {
        TAG_KEYS if i == 0 else f"{TAG_KEYS}:{i + 1}": _KEYS_SEPARATOR.join(chunk)
        for i, chunk in enumerate(chunks)
        if chunk
    }


def _is_keys_tag(name: str) -> bool:
    return name == TAG_KEYS or name.startswith(f"{TAG_KEYS}:")


def _keys_from_tags(tags: Mapping[str, str]) -> tuple[str, ...]:
    names: list[str] = []
    for name, value in tags.items():
        if _is_keys_tag(name):
            names.extend(value.split())
    return tuple(sorted(set(names)))


_READ_ONE = ("secretsmanager:DescribeSecret",)
# Writing content: a new version, the stage moved onto it if that version existed already,
# and the bookkeeping tags.
_WRITE_CONTENT = (
    "secretsmanager:PutSecretValue",
    "secretsmanager:UpdateSecretVersionStage",
    "secretsmanager:TagResource",
    "secretsmanager:UntagResource",
)


class SecretsManagerSecret(Provider):
    info = TypeInfo(
        type="secretsmanager.secret",
        service="secretsmanager",
        enumeration=Enumeration("list_secrets", "SecretList", "Name"),
        not_found=("ResourceNotFoundException",),
        tag_style=tag_styles.SECRETS_MANAGER,
        create_order=130,
        permissions={
            # DescribeSecret is `refresh` (one secret, while waiting on it).
            "read": ("secretsmanager:ListSecrets", *_READ_ONE),
            # TagResource is what AWS checks for the Tags of CreateSecret. Restore and the writes
            # serve a create that finds the name taken by our own secret (pending deletion, or
            # left by an interrupted create).
            "create": (
                "secretsmanager:CreateSecret",
                "secretsmanager:RestoreSecret",
                "secretsmanager:UpdateSecret",
                *_WRITE_CONTENT,
                *_READ_ONE,
            ),
            "update": ("secretsmanager:UpdateSecret", *_WRITE_CONTENT, *_READ_ONE),
            "delete": ("secretsmanager:DescribeSecret", "secretsmanager:DeleteSecret"),
        },
        managed_fields=("Name", "Description", "Keys", "ContentHash"),
        immutable={"Name": "secret names cannot change"},
    )

    def normalize_desired(self, desired: Mapping[str, Any]) -> dict[str, Any]:
        result = dict(desired)
        result["Keys"] = tuple(sorted(desired.get("Keys", ())))
        return result

    # -- reading -------------------------------------------------------------------------------

    def read(self, ctx: Context) -> list[Observed]:
        sm = ctx.client("secretsmanager")
        # tag-key and tag-value match independently of each other, so the pair is checked again
        # below; secrets pending deletion are left out by ListSecrets unless asked for.
        filters = [
            {"Key": "tag-key", "Values": [TAG_MANAGED_BY]},
            {"Key": "tag-value", "Values": [ctx.instance]},
        ]
        found = []
        for entry in paginate(sm, "list_secrets", "SecretList", Filters=filters):
            if entry.get("DeletedDate") or tag_map(entry.get("Tags")).get(TAG_MANAGED_BY) != ctx.instance:
                continue
            found.append(self._observed(entry))
        return found

    def refresh(self, ctx: Context, observed: Observed) -> Observed | None:
        entry = self._describe(ctx.client("secretsmanager"), _secret_id(observed))
        return None if entry is None or entry.get("DeletedDate") else self._observed(entry)

    def _describe(self, sm: Any, secret_id: str) -> dict[str, Any] | None:
        try:
            return dict(sm.describe_secret(SecretId=secret_id))
        except NotFoundError:
            return None

    def _observed(self, entry: Mapping[str, Any]) -> Observed:
        tags = tag_map(entry.get("Tags"))
        fields = {
            "Name": entry["Name"],
            "Description": entry.get("Description", ""),
            "Keys": _keys_from_tags(tags),
            "ContentHash": tags.get(TAG_CONTENT_HASH),
        }
        return Observed(self.type, entry["Name"], fields, tags, {"id": entry["Name"], "Arn": entry["ARN"]})

    def _described(self, sm: Any, secret_id: str) -> Observed:
        entry = self._describe(sm, secret_id)
        if entry is None:
            raise NotFoundError(f"secret {secret_id} disappeared while it was being written")
        return self._observed(entry)

    # -- changing ------------------------------------------------------------------------------

    def create(self, ctx: Context, resource: Resource, desired: Mapping[str, Any]) -> Observed:
        sm = ctx.client("secretsmanager")
        name = desired["Name"]
        document, digest, keys = _content(ctx, resource)
        tags = {**resource.tags, TAG_CONTENT_HASH: digest, **keys_tags(keys)}
        try:
            response = sm.create_secret(
                Name=name,
                Description=desired["Description"],
                SecretString=document,
                # The same key and content give the same token: a retried create is a no-op.
                ClientRequestToken=_client_token(resource.key, digest),
                Tags=tag_list(tags),
            )
        except ProviderError as exc:
            if exc.code != "ResourceExistsException":
                raise
            existing = self._describe(sm, name)
            # Only our own secret for this very resource is taken back; anyone else's is not.
            if existing is None or not carries_ownership(tag_map(existing.get("Tags")), resource):
                raise
            if existing.get("DeletedDate"):
                # Deleted by us earlier and still in its recovery window: the name cannot be
                # reused until it is purged, so bring it back and overwrite it.
                sm.restore_secret(SecretId=existing["ARN"])
            arn = existing["ARN"]
            sm.update_secret(SecretId=arn, Description=desired["Description"])
            self._put_value(sm, arn, resource.key, document, digest)
            sm.tag_resource(SecretId=arn, Tags=tag_list(tags))
            self._drop_stale_keys_tags(sm, arn, tag_map(existing.get("Tags")), tags)
            return self._described(sm, arn)
        return self._described(sm, response["ARN"])

    def update(
        self, ctx: Context, resource: Resource, desired: Mapping[str, Any], observed: Observed, changed: list[str]
    ) -> Observed:
        sm = ctx.client("secretsmanager")
        arn = _secret_id(observed)
        if "Description" in changed:
            sm.update_secret(SecretId=arn, Description=desired["Description"])
        if "ContentHash" in changed or "Keys" in changed:
            document, digest, keys = _content(ctx, resource)
            self._put_value(sm, arn, resource.key, document, digest)
            content_tags = {TAG_CONTENT_HASH: digest, **keys_tags(keys)}
            sm.tag_resource(SecretId=arn, Tags=tag_list(content_tags))
            self._drop_stale_keys_tags(sm, arn, observed.tags, content_tags)
        return self._described(sm, arn)

    def _put_value(self, sm: Any, arn: str, key: str, document: str, digest: str) -> None:
        token = _client_token(key, digest)
        response = sm.put_secret_value(SecretId=arn, SecretString=document, ClientRequestToken=token)
        if "AWSCURRENT" in response.get("VersionStages", []):
            return
        # The version for this content existed already (the content went back to an earlier
        # value): Secrets Manager then ignores the write, so the current stage must be moved.
        entry = self._describe(sm, arn) or {}
        current = [v for v, stages in entry.get("VersionIdsToStages", {}).items() if "AWSCURRENT" in stages]
        sm.update_secret_version_stage(
            SecretId=arn,
            VersionStage="AWSCURRENT",
            MoveToVersionId=token,
            **({"RemoveFromVersionId": current[0]} if current and current[0] != token else {}),
        )

    def _drop_stale_keys_tags(self, sm: Any, arn: str, before: Mapping[str, str], now: Mapping[str, str]) -> None:
        stale = [name for name in before if _is_keys_tag(name) and name not in now]
        if stale:
            sm.untag_resource(SecretId=arn, TagKeys=stale)

    def delete(self, ctx: Context, observed: Observed) -> None:
        sm = ctx.client("secretsmanager")
        entry = self._describe(sm, _secret_id(observed))
        # Deleting a secret already pending deletion is an error in AWS; it is done already.
        if entry is None or entry.get("DeletedDate"):
            return
        try:
            # A recovery window, never ForceDeleteWithoutRecovery: a mistaken prune can be undone
            # with RestoreSecret for a week. (AWS refuses both parameters in one call.)
            sm.delete_secret(SecretId=entry["ARN"], RecoveryWindowInDays=RECOVERY_WINDOW_DAYS)
        except NotFoundError:
            return

    def release_tag_keys(self, observed: Observed) -> list[str]:
        # Our bookkeeping goes with our ownership: once released, the secret may change without us.
        return [*OWNERSHIP_TAGS, TAG_CONTENT_HASH, *(name for name in observed.tags if _is_keys_tag(name))]


def _secret_id(observed: Observed) -> str:
    # The ARN names exactly the secret that was read; a name could by now be a newer secret.
    return str(observed.attributes.get("Arn") or observed.id)


def _content(ctx: Context, resource: Resource) -> tuple[str, str, list[str]]:
    """Resolve the secret inputs now, in the control account: (document, hash, keys)."""
    if ctx.resolve_secret is None:
        raise DriftwardenError(f"{resource.key}: no secret resolver, so secret values cannot be read")
    values = {key: ctx.resolve_secret(source) for key, source in sorted(resource.secret_inputs.items())}
    document, digest = secret_payload(values)
    return document, digest, sorted(values)

