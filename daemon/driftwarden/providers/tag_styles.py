"""How each AWS API family tags a resource: the `TagStyle`s a provider declares.

AWS has no one tagging API. EC2 tags any resource id with CreateTags/DeleteTags; IAM has
TagRole/UntagRole by role name; RDS and SSM have AddTagsToResource/RemoveTagsFromResource (by
ARN, and by resource type and name); EKS and Secrets Manager have TagResource/UntagResource
(by ARN). A provider names its family in its `TypeInfo`; `base.converge` and `Provider.untag`
then write and remove tags through it, so no provider writes its own tagging code.

Every `put` adds or overwrites the tags it is given and leaves others' tags alone.

What it must not do: decide which tags to write (that is the plan and the provider's
`tags_to_write`), or swallow errors (`Provider.untag` decides what "already gone" means).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from driftwarden.providers.base import Context, Observed, TagStyle, tag_list


def _arn(observed: Observed) -> str:
    # The ARN names exactly the resource that was read; a name could by now be a newer one.
    return str(observed.attributes.get("Arn") or observed.id)


class Ec2Tags(TagStyle):
    """EC2: CreateTags / DeleteTags on the resource id."""

    name = "ec2"
    service = "ec2"
    put_permission = "ec2:CreateTags"
    remove_permission = "ec2:DeleteTags"

    def put(self, ctx: Context, observed: Observed, tags: Mapping[str, str]) -> None:
        if tags:
            ctx.client(self.service).create_tags(Resources=[observed.id], Tags=tag_list(tags))

    def remove(self, ctx: Context, observed: Observed, keys: Sequence[str]) -> None:
        wanted = sorted(set(keys))
        if wanted:
            ctx.client(self.service).delete_tags(Resources=[observed.id], Tags=[{"Key": k} for k in wanted])


class IamRoleTags(TagStyle):
    """IAM roles: TagRole / UntagRole on the role name."""

    name = "iam-role"
    service = "iam"
    put_permission = "iam:TagRole"
    remove_permission = "iam:UntagRole"

    def put(self, ctx: Context, observed: Observed, tags: Mapping[str, str]) -> None:
        ctx.client(self.service).tag_role(RoleName=observed.id, Tags=tag_list(tags))

    def remove(self, ctx: Context, observed: Observed, keys: Sequence[str]) -> None:
        ctx.client(self.service).untag_role(RoleName=observed.id, TagKeys=list(keys))


class RdsTags(TagStyle):
    """RDS: AddTagsToResource / RemoveTagsFromResource on the ARN."""

    name = "rds"
    service = "rds"
    put_permission = "rds:AddTagsToResource"
    remove_permission = "rds:RemoveTagsFromResource"

    def put(self, ctx: Context, observed: Observed, tags: Mapping[str, str]) -> None:
        ctx.client(self.service).add_tags_to_resource(ResourceName=observed.attributes["Arn"], Tags=tag_list(tags))

    def remove(self, ctx: Context, observed: Observed, keys: Sequence[str]) -> None:
        ctx.client(self.service).remove_tags_from_resource(ResourceName=observed.attributes["Arn"], TagKeys=list(keys))


class EksTags(TagStyle):
    """EKS: TagResource / UntagResource on the ARN, tags as a plain map."""

    name = "eks"
    service = "eks"
    put_permission = "eks:TagResource"
    remove_permission = "eks:UntagResource"

    def put(self, ctx: Context, observed: Observed, tags: Mapping[str, str]) -> None:
        ctx.client(self.service).tag_resource(resourceArn=observed.attributes["Arn"], tags=dict(tags))

    def remove(self, ctx: Context, observed: Observed, keys: Sequence[str]) -> None:
        ctx.client(self.service).untag_resource(resourceArn=observed.attributes["Arn"], tagKeys=list(keys))


class SecretsManagerTags(TagStyle):
    """Secrets Manager: TagResource / UntagResource on the secret's ARN."""

    name = "secretsmanager"
    service = "secretsmanager"
    put_permission = "secretsmanager:TagResource"
    remove_permission = "secretsmanager:UntagResource"

    def put(self, ctx: Context, observed: Observed, tags: Mapping[str, str]) -> None:
        ctx.client(self.service).tag_resource(SecretId=_arn(observed), Tags=tag_list(tags))

    def remove(self, ctx: Context, observed: Observed, keys: Sequence[str]) -> None:
        ctx.client(self.service).untag_resource(SecretId=_arn(observed), TagKeys=list(keys))


class SsmParameterTags(TagStyle):
    """SSM parameters: AddTagsToResource / RemoveTagsFromResource on the parameter name."""

    name = "ssm-parameter"
    service = "ssm"
    put_permission = "ssm:AddTagsToResource"
    remove_permission = "ssm:RemoveTagsFromResource"

    def put(self, ctx: Context, observed: Observed, tags: Mapping[str, str]) -> None:
        ctx.client(self.service).add_tags_to_resource(ResourceType="Parameter", ResourceId=observed.id,
                                                       Tags=tag_list(tags))

    def remove(self, ctx: Context, observed: Observed, keys: Sequence[str]) -> None:
        ctx.client(self.service).remove_tags_from_resource(ResourceType="Parameter", ResourceId=observed.id,
                                                           TagKeys=list(keys))


EC2 = Ec2Tags()
IAM_ROLE = IamRoleTags()
RDS = RdsTags()
EKS = EksTags()
SECRETS_MANAGER = SecretsManagerTags()
SSM_PARAMETER = SsmParameterTags()
