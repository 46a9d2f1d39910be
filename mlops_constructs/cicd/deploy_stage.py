"""One serving stage of the deploy CD: its description, validation and what its Deploy and Smoke builds may do."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional, Sequence

from aws_cdk import Aws, Stack, Token
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3

from mlops_constructs import compliance
from mlops_constructs.cicd.common import arn_name

# The CDK bootstrap roles `cdk deploy` of a serving stack assumes (no Docker assets: no image-publishing role).
DEFAULT_BOOTSTRAP_ROLES = ("deploy", "file-publishing", "lookup")
STAGE_NAME_RE = re.compile(r"^[a-z][a-z0-9]*$")
ACCOUNT_RE = re.compile(r"^\d{12}$")
REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
ROLE_ARN_RE = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")


@dataclass(frozen=True)
class DeployStage:
    """One serving stage of the deploy CD.

    :param name: stage name (``staging``, ``prod``), lower-case letters and digits, at most 10; the serving stack and
        the builds are named after it (:class:`~mlops_constructs.cicd.deploy_cd.DeployCdNames`).
    :param account: the stage's account. Default: this stack's. Another account must be bootstrapped with
        ``cdk bootstrap --trust <this account>``.
    :param region: the stage's region. Default: this stack's.
    :param smoke_role_arn: a role in the stage's account that the smoke test assumes (required when ``account`` is
        set and is not the stack's, or the stack is environment-agnostic: CodeBuild's role cannot call endpoints in
        another account). It needs ``cloudformation:DescribeStacks`` on the serving
        stack, ``sagemaker:DescribeEndpoint``/``InvokeEndpoint`` on its endpoint, ``lambda:InvokeFunctionUrl`` and
        ``lambda:InvokeFunction`` (function URLs need both) on its function, and to trust this account's smoke build
        role.
    """

    name: str
    account: Optional[str] = None
    region: Optional[str] = None
    smoke_role_arn: Optional[str] = None

    @property
    def account_or_default(self) -> str:
        return self.account or Aws.ACCOUNT_ID

    @property
    def region_or_default(self) -> str:
        return self.region or Aws.REGION

    def arn(self, service: str, resource: str, name: str, sep: str = "/") -> str:
        """An ARN in the stage's account and region."""
        return f"arn:{Aws.PARTITION}:{service}:{self.region_or_default}:{self.account_or_default}:{resource}{sep}{name}"


def _literal(value: Optional[str]) -> bool:
    return value is not None and not Token.is_unresolved(value)


def validate_stages(owner: str, stack: Stack, stages: Sequence) -> list[DeployStage]:
    """``stages`` (names or :class:`DeployStage`) as DeployStages: at least one, unique, valid names, accounts,
    regions and role ARNs; a stage in another account has a ``smoke_role_arn``."""
    deploy_stages = [s if isinstance(s, DeployStage) else DeployStage(name=s) for s in stages]
    if not deploy_stages:
        raise ValueError(f"{owner} stages must name at least one serving stage (the last one is approved manually)")
    for s in deploy_stages:
        if not STAGE_NAME_RE.match(s.name) or len(s.name) > 10:
            raise ValueError(f"{owner} stage name {s.name!r} must be lower-case letters and digits, at most 10")
        if _literal(s.account) and not ACCOUNT_RE.match(s.account):
            raise ValueError(f"{owner} stage {s.name!r} account {s.account!r} is not a 12-digit AWS account ID")
        if _literal(s.region) and not REGION_RE.match(s.region):
            raise ValueError(f"{owner} stage {s.name!r} region {s.region!r} is not an AWS region such as eu-west-1")
        if _literal(s.smoke_role_arn) and not ROLE_ARN_RE.match(s.smoke_role_arn):
            raise ValueError(f"{owner} stage {s.name!r} smoke_role_arn {s.smoke_role_arn!r} is not an IAM role ARN")
    names = [s.name for s in deploy_stages]
    if len(set(names)) != len(names):
        raise ValueError(f"{owner} stage names must be unique, got {names}")
    for s in deploy_stages:
        if _is_other_account(stack, s.account) and s.smoke_role_arn is None:
            raise ValueError(
                f"{owner} stage {s.name!r} is in account {s.account}, not this stack's: give it a smoke_role_arn "
                "(a role there the smoke test assumes to call the endpoint and function URL)"
            )
    return deploy_stages


def _is_other_account(stack: Stack, account: Optional[str]) -> bool:
    """True when ``account`` is set and is not (or cannot be shown to be) the stack's account."""
    if account is None:
        return False
    return Token.is_unresolved(stack.account) or account != stack.account


def grant_assume_bootstrap_roles(
    project: codebuild.PipelineProject, stage: DeployStage, qualifier: str, roles: Sequence[str]
) -> None:
    """The Deploy build may assume the CDK bootstrap ``roles`` of the stage's account and region, nothing else."""
    account, region = stage.account_or_default, stage.region_or_default
    bootstrap = [f"arn:{Aws.PARTITION}:iam::{account}:role/cdk-{qualifier}-{r}-role-{account}-{region}" for r in roles]
    project.add_to_role_policy(
        iam.PolicyStatement(sid="AssumeCdkBootstrapRoles", actions=["sts:AssumeRole"], resources=bootstrap)
    )


def grant_smoke(
    project: codebuild.PipelineProject,
    stage: DeployStage,
    serving_stack: str,
    *,
    endpoint_name: Optional[str],
    function_name: Optional[str],
) -> None:
    """The Smoke build assumes the stage's ``smoke_role_arn``, or else describes exactly the stage's serving stack
    and calls its endpoint and function (the function's URL is on an alias, ``function:<name>:<alias>``)."""
    if stage.smoke_role_arn is not None:
        project.add_to_role_policy(
            iam.PolicyStatement(sid="AssumeStageSmokeRole", actions=["sts:AssumeRole"], resources=[stage.smoke_role_arn])
        )
        return
    stack_arn = stage.arn("cloudformation", "stack", f"{serving_stack}/*")
    wildcards = [stack_arn]
    project.add_to_role_policy(
        iam.PolicyStatement(sid="ServingStackStatus", actions=["cloudformation:DescribeStacks"], resources=[stack_arn])
    )
    if endpoint_name is not None:
        project.add_to_role_policy(
            iam.PolicyStatement(
                sid="CallStageEndpoint",
                actions=["sagemaker:DescribeEndpoint", "sagemaker:InvokeEndpoint"],
                resources=[stage.arn("sagemaker", "endpoint", arn_name(endpoint_name))],
            )
        )
    if function_name is not None:
        functions = [stage.arn("lambda", "function", function_name, ":"),
                     stage.arn("lambda", "function", f"{function_name}:*", ":")]
        # A function URL with AWS_IAM auth needs both actions (Lambda: "Control access to function URLs").
        project.add_to_role_policy(
            iam.PolicyStatement(
                sid="CallStageFunctionUrl",
                actions=["lambda:InvokeFunctionUrl"],
                resources=functions,
                conditions={"StringEquals": {"lambda:FunctionUrlAuthType": "AWS_IAM"}},
            )
        )
        project.add_to_role_policy(
            iam.PolicyStatement(sid="InvokeStageFunction", actions=["lambda:InvokeFunction"], resources=functions)
        )
        wildcards.append(functions[1])
    compliance.acknowledge_wildcard_resources(
        project.role,
        wildcards,
        f"Only the {stage.name} serving stack (its ID suffix is generated by CloudFormation) and the versions and "
        "aliases of the one function named after this model and stage (its URL is on the alias 'live').",
    )


def grant_read_model_data(project: codebuild.PipelineProject, bucket: s3.IBucket, key_pattern: str) -> None:
    """The Smoke build reads ``model_metadata.json`` from the approved package's model data."""
    bucket.grant_read(project, key_pattern)
    compliance.acknowledge_wildcard_resources(
        project.role,
        [bucket.arn_for_objects(key_pattern)],
        "The smoke test reads model_metadata.json from the approved package's model.tar.gz, whose key "
        "the SageMaker training job generates under the model artifacts prefix.",
    )
