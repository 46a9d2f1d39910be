"""SageMaker model package group (the model registry of one model), shareable read-only with trusted accounts."""

from __future__ import annotations

import re
from typing import Optional, Protocol, Sequence

from aws_cdk import RemovalPolicy, Stack, Token
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from mlops_constructs import compliance

# CreateModelPackageGroup: 1-63 characters, letters, digits and single or repeated hyphens between them.
GROUP_NAME_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
ACCOUNT_RE = re.compile(r"^\d{12}$")

# What a trusted account (e.g. the staging or prod account's deploy pipeline) may do: find and read the versions.
READ_GROUP_ACTIONS = ("sagemaker:DescribeModelPackageGroup",)
READ_PACKAGE_ACTIONS = ("sagemaker:DescribeModelPackage", "sagemaker:ListModelPackages")
APPROVAL_STATE_CHANGE = "SageMaker Model Package State Change"
GROUP_ARN_RE = re.compile(r"^(arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:\d{12}):model-package-group/(.+)$")


class IModelRegistry(Protocol):
    """A model package group other constructs act on (e.g. the deploy CD reads its approved versions)."""

    model_package_group_name: str
    #: How SageMaker's APIs (``ListModelPackages``) find the group: its name in this account, its ARN in another.
    group_reference: str

    def grant_read(self, grantee: iam.IGrantable) -> iam.Grant: ...


class ModelRegistry(Construct):
    """A SageMaker model package group, with an optional resource policy that lets ``trusted_accounts`` read it.

    The resource policy (``AWS::SageMaker::ModelPackageGroup`` ``ModelPackageGroupPolicy``) follows SageMaker's
    cross-account registry pattern: ``DescribeModelPackageGroup`` on the group, ``DescribeModelPackage`` and
    ``ListModelPackages`` on its versions (``model-package/<group>/*``). A trusted account still needs an identity
    policy of its own (e.g. :class:`ModelDeployCd <mlops_constructs.model_cicd.ModelDeployCd>` given
    :meth:`ModelRegistry.from_model_package_group_arn`) and, to deploy, read access to the model data bucket and key
    (not granted here).

    :param model_package_group_name: physical name (1-63 letters, digits, hyphens).
    :param description: of the group. Default: none.
    :param trusted_accounts: 12-digit account IDs granted read through the resource policy. Default: none (no
        policy: only this account's principals with identity permissions can read).
    :param removal_policy: of the group. Default: RETAIN (deleting a group fails while it holds versions anyway).
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        model_package_group_name: str,
        description: Optional[str] = None,
        trusted_accounts: Sequence[str] = (),
        removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
    ) -> None:
        super().__init__(scope, id_)
        if not Token.is_unresolved(model_package_group_name) and not GROUP_NAME_RE.match(model_package_group_name):
            raise ValueError(
                f"ModelRegistry model_package_group_name {model_package_group_name!r} is invalid: use 1-63 letters, "
                "digits and hyphens, starting and ending with a letter or digit"
            )
        for account in trusted_accounts:
            if not Token.is_unresolved(account) and not ACCOUNT_RE.match(account):
                raise ValueError(f"ModelRegistry trusted_accounts: {account!r} is not a 12-digit AWS account ID")
        if len(set(trusted_accounts)) != len(list(trusted_accounts)):
            raise ValueError(f"ModelRegistry trusted_accounts has duplicates: {list(trusted_accounts)}")

        stack = Stack.of(self)
        self.model_package_group_name = model_package_group_name
        self.group_reference = model_package_group_name
        self.trusted_accounts = list(trusted_accounts)
        # SageMaker lower-cases resource names in ARNs.
        arn_name = model_package_group_name if Token.is_unresolved(model_package_group_name) else (
            model_package_group_name.lower()
        )
        # Built from the name, not GetAtt: the group's own policy must not reference the group.
        self._group_arn = stack.format_arn(
            service="sagemaker", resource="model-package-group", resource_name=arn_name
        )
        self.model_packages_arn = stack.format_arn(
            service="sagemaker", resource="model-package", resource_name=f"{arn_name}/*"
        )
        """ARN pattern of every version of the group (``model-package/<group>/*``)."""

        self.resource_policy: Optional[iam.PolicyDocument] = None
        if self.trusted_accounts:
            principals = [iam.AccountPrincipal(a) for a in self.trusted_accounts]
            self.resource_policy = iam.PolicyDocument(
                statements=[
                    iam.PolicyStatement(
                        sid="TrustedAccountsReadGroup",
                        principals=principals,
                        actions=list(READ_GROUP_ACTIONS),
                        resources=[self._group_arn],
                    ),
                    iam.PolicyStatement(
                        sid="TrustedAccountsReadVersions",
                        principals=principals,
                        actions=list(READ_PACKAGE_ACTIONS),
                        resources=[self.model_packages_arn],
                    ),
                ]
            )

        self.group = sagemaker.CfnModelPackageGroup(
            self,
            "Group",
            model_package_group_name=model_package_group_name,
            model_package_group_description=description,
            model_package_group_policy=self.resource_policy.to_json() if self.resource_policy else None,
        )
        self.group.apply_removal_policy(removal_policy)

    @property
    def model_package_group_arn(self) -> str:
        """The group's ARN (a GetAtt, so a consumer in this stack is created after the group)."""
        return self.group.attr_model_package_group_arn

    @staticmethod
    def from_model_package_group_arn(model_package_group_arn: str) -> "ModelRegistryReference":
        """A group made elsewhere, e.g. shared by another account's ``ModelRegistry`` ``trusted_accounts``."""
        return ModelRegistryReference(model_package_group_arn)

    def grant_read(self, grantee: iam.IGrantable) -> iam.Grant:
        """Find and describe the group's versions (what ``cicd_scripts.resolve_approved_package`` calls)."""
        return grant_read_model_packages(grantee, self._group_arn, self.model_packages_arn)

    def grant_approve(self, grantee: iam.IGrantable) -> iam.Grant:
        """Read, and change a version's approval status (``UpdateModelPackage``) of this group only."""
        self.grant_read(grantee)
        grant = iam.Grant.add_to_principal(
            grantee=grantee, actions=["sagemaker:UpdateModelPackage"], resource_arns=[self.model_packages_arn]
        )
        _acknowledge_versions(grantee, self.model_packages_arn)
        return grant

    def on_approved(self, id_: str, target: Optional[events.IRuleTarget] = None, **kwargs) -> events.Rule:
        """EventBridge rule on a version of this group changing to ``Approved`` (e.g. to start the deploy CD).

        Extra keyword arguments go to :class:`aws_cdk.aws_events.Rule` (``description``, ``enabled``, ...).
        """
        return events.Rule(
            self,
            id_,
            event_pattern=approved_event_pattern(self.model_package_group_name),
            targets=[target] if target else None,
            **kwargs,
        )


class ModelRegistryReference:
    """A model package group by its literal ARN (in any account): what :class:`IModelRegistry` consumers need."""

    def __init__(self, model_package_group_arn: str) -> None:
        if Token.is_unresolved(model_package_group_arn):
            raise ValueError("ModelRegistry model_package_group_arn must be a literal ARN (it names another account)")
        match = GROUP_ARN_RE.match(model_package_group_arn)
        if not match:
            raise ValueError(
                f"ModelRegistry model_package_group_arn {model_package_group_arn!r} is not a model package group ARN"
            )
        self.model_package_group_arn = self.group_reference = model_package_group_arn
        self.model_package_group_name = match.group(2)
        #: ``model-package/<group>/*`` in the group's account and region.
        self.model_packages_arn = f"{match.group(1)}:model-package/{match.group(2).lower()}/*"

    def grant_read(self, grantee: iam.IGrantable) -> iam.Grant:
        """Find and describe the group's versions (the group's resource policy must trust the grantee's account)."""
        return grant_read_model_packages(grantee, self.model_package_group_arn, self.model_packages_arn)


def approved_event_pattern(model_package_group_name: str) -> events.EventPattern:
    """SageMaker's event for a version of ``model_package_group_name`` whose approval status became Approved."""
    return events.EventPattern(
        source=["aws.sagemaker"],
        detail_type=[APPROVAL_STATE_CHANGE],
        detail={"ModelPackageGroupName": [model_package_group_name], "ModelApprovalStatus": ["Approved"]},
    )


def grant_read_model_packages(grantee: iam.IGrantable, group_arn: str, model_packages_arn: str) -> iam.Grant:
    """Identity permissions to list, describe and read the versions of one group (same or another account)."""
    iam.Grant.add_to_principal(grantee=grantee, actions=list(READ_GROUP_ACTIONS), resource_arns=[group_arn])
    iam.Grant.add_to_principal(
        grantee=grantee, actions=["sagemaker:DescribeModelPackage"], resource_arns=[model_packages_arn]
    )
    # ListModelPackages has no resource type in IAM (the service authorization reference lists none): "*" only.
    grant = iam.Grant.add_to_principal(grantee=grantee, actions=["sagemaker:ListModelPackages"], resource_arns=["*"])
    _acknowledge_versions(grantee, model_packages_arn)
    scope = _policy_scope(grantee)
    if scope is not None:
        compliance.acknowledge(
            scope,
            "AwsSolutions-IAM5[Resource::*]",
            "sagemaker:ListModelPackages supports no resource-level permission (IAM lists no resource type for it); "
            "every other registry action here is scoped to one model package group and its versions.",
        )
    return grant


def _policy_scope(grantee: iam.IGrantable) -> Optional[Construct]:
    """The construct whose policy receives the grant (a role), where the finding is acknowledged; None if imported
    from outside the app (then no policy is synthesized here and nothing needs acknowledging)."""
    for candidate in (grantee.grant_principal, grantee):
        if isinstance(candidate, Construct):
            return candidate
    return None


def _acknowledge_versions(grantee: iam.IGrantable, model_packages_arn: str) -> None:
    scope = _policy_scope(grantee)
    if scope is not None:
        compliance.acknowledge_wildcard_resources(
            scope,
            [model_packages_arn],
            "Versions of one model package group: SageMaker names them <group>/<version>, created after deploy, so "
            "the ARN pattern ends in the version wildcard.",
        )
