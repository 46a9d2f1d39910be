"""What the CI/CD constructs share: buildspecs, CodeBuild projects, V2 pipelines, failure notices, validation and the
acknowledgements of the wildcards CDK's grants put in pipeline and build roles."""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence

import yaml
from aws_cdk import Aws, Duration, Stack, Token
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_codepipeline as codepipeline
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from constructs import Construct

from mlops_constructs import compliance

BUILD_IMAGE = codebuild.LinuxBuildImage.STANDARD_7_0
# CodePipeline starts every new pipeline once ("CreatePipeline"): its failure (an empty S3 source, an empty registry)
# says nothing about the model, so it is not notified.
CREATION_TRIGGER = "CreatePipeline"


def load_buildspec(path: Path) -> codebuild.BuildSpec:
    """A buildspec file of the repository, inlined (``BuildSpec.from_object``) so the template shows it."""
    if not path.is_file():
        raise ValueError(f"buildspec {path} does not exist")
    return codebuild.BuildSpec.from_object(copy.deepcopy(_buildspec_document(path, path.stat().st_mtime_ns)))


@functools.lru_cache(maxsize=32)
def _buildspec_document(path: Path, _mtime_ns: int) -> dict:
    """The parsed buildspec, once per file version: every model's CI/CD reads the same few files."""
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(doc, dict) or str(doc.get("version")) != "0.2" or "phases" not in doc:
        raise ValueError(f"buildspec {path} is not a CodeBuild buildspec (version 0.2 with phases)")
    return doc


def check_duration(owner: str, name: str, value: Duration, low: int, high: int) -> int:
    """``value`` in minutes, within CodeBuild's ``low``..``high`` (unless a token)."""
    minutes = value.to_minutes()
    if not Token.is_unresolved(minutes) and not low <= minutes <= high:
        raise ValueError(f"{owner} {name} must be within {low} and {high} minutes (CodeBuild's limits), got {minutes}")
    return minutes


def arn_name(name: str) -> str:
    """A SageMaker resource name as it appears in its ARN (SageMaker lower-cases them)."""
    return name if Token.is_unresolved(name) else name.lower()


@dataclass(frozen=True)
class BuildNetwork:
    """Where a CI/CD construct's CodeBuild projects run instead of CodeBuild's own network.

    The builds install from PyPI and npm (``make install``, pinned tools), so the subnets need a route to them (a
    landing zone's NAT gateway or proxy) and ``security_groups`` must allow that egress; private isolated subnets
    without one fail every build. CodeBuild adds the network-interface permissions to each project's role.

    :param vpc: the VPC. :param security_groups: the projects' security groups (at least one).
    :param subnets: Default: the VPC's private subnets with egress (CDK's default selection).
    """

    vpc: ec2.IVpc
    security_groups: Sequence[ec2.ISecurityGroup]
    subnets: Optional[ec2.SubnetSelection] = None

    def __post_init__(self) -> None:
        if not self.security_groups:
            raise ValueError("BuildNetwork needs security_groups that allow the builds' egress to their package "
                             "registries; pass at least one")


def codebuild_project(
    scope: Construct,
    id_: str,
    *,
    project_name: str,
    description: str,
    buildspec: Path,
    key: kms.IKey,
    log_group: logs.ILogGroup,
    timeout: Duration,
    compute_type: codebuild.ComputeType,
    environment_variables: Mapping[str, str],
    network: Optional[BuildNetwork] = None,
) -> codebuild.PipelineProject:
    """A pipeline build: standard image, unprivileged, encrypted with ``key``, logging to ``log_group`` under the
    lower-cased ``id_``, queued at most an hour, no report group permissions; in ``network`` when given."""
    project = codebuild.PipelineProject(
        scope,
        id_,
        project_name=project_name,
        description=description,
        build_spec=load_buildspec(buildspec),
        environment=codebuild.BuildEnvironment(build_image=BUILD_IMAGE, compute_type=compute_type, privileged=False),
        environment_variables={
            k: codebuild.BuildEnvironmentVariable(value=v) for k, v in environment_variables.items()
        },
        encryption_key=key,
        logging=codebuild.LoggingOptions(
            cloud_watch=codebuild.CloudWatchLoggingOptions(log_group=log_group, prefix=id_.lower())
        ),
        timeout=timeout,
        queued_timeout=Duration.hours(1),
        grant_report_group_permissions=False,
        vpc=network.vpc if network else None,
        subnet_selection=network.subnets if network else None,
        security_groups=list(network.security_groups) if network else None,
    )
    if network is not None:
        compliance.acknowledge_all(
            project,
            ["AwsSolutions-IAM5[Resource::*]", "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ec2:<AWS::Region>:"
             "<AWS::AccountId>:network-interface/*]"],
            "CodeBuild in a VPC: the network-interface and Describe actions CDK grants have no narrower resource "
            "(EC2 assigns interface IDs at creation; CreateNetworkInterfacePermission is limited to the project's "
            "subnets by condition).",
        )
    return project


def v2_pipeline(
    scope: Construct,
    *,
    pipeline_name: str,
    artifact_bucket: s3.IBucket,
    stages: Sequence[codepipeline.StageProps],
) -> codepipeline.Pipeline:
    """CodePipeline V2 (id ``Pipeline``) in SUPERSEDED mode (a newer execution supersedes an older one still waiting,
    e.g. at a manual approval), actions run with the pipeline role, no restart on update."""
    return codepipeline.Pipeline(
        scope,
        "Pipeline",
        pipeline_name=pipeline_name,
        pipeline_type=codepipeline.PipelineType.V2,
        execution_mode=codepipeline.ExecutionMode.SUPERSEDED,
        artifact_bucket=artifact_bucket,
        restart_execution_on_update=False,
        use_pipeline_role_for_actions=True,
        stages=list(stages),
    )


def codebuild_stage(
    stage_name: str, action: codepipeline.IAction, before_entry: Optional[codepipeline.Conditions] = None
) -> codepipeline.StageProps:
    """A stage of one action, entered only when ``before_entry`` passes (when given)."""
    return codepipeline.StageProps(stage_name=stage_name, before_entry=before_entry, actions=[action])


def failure_event_detail() -> dict:
    """``detail`` of the failed-execution pattern: FAILED, unless CodePipeline's own run at creation
    (``execution-trigger.trigger-type`` ``CreatePipeline``) failed; an event without a trigger still matches."""
    return {
        "state": ["FAILED"],
        "$or": [
            {"execution-trigger": {"trigger-type": [{"anything-but": [CREATION_TRIGGER]}]}},
            {"execution-trigger": {"trigger-type": [{"exists": False}]}},
        ],
    }


def notify_failures(pipeline: codepipeline.Pipeline, topic: sns.ITopic) -> events.Rule:
    """EventBridge rule: an execution of ``pipeline`` FAILED -> ``topic`` (not the run at the pipeline's creation)."""
    return pipeline.on_state_change(
        "OnFailed",
        description=f"Execution of pipeline {pipeline.pipeline_name} failed: notify the alarms topic",
        event_pattern=events.EventPattern(detail=failure_event_detail()),
        target=targets.SnsTopic(
            topic,
            message=events.RuleTargetInput.from_text(
                f"CodePipeline {events.EventField.from_path('$.detail.pipeline')} execution "
                f"{events.EventField.from_path('$.detail.execution-id')} FAILED in {events.EventField.account} "
                f"{events.EventField.region}."
            ),
        ),
    )


def acknowledge_build_role(
    project: codebuild.PipelineProject, artifact_bucket: s3.IBucket, *, writes_artifacts: bool
) -> None:
    """The wildcards CDK's grants put in a pipeline build role: pipeline artifacts, the key, CodeBuild's default
    log group."""
    stack = Stack.of(project)
    default_logs = (
        f"arn:{Aws.PARTITION}:logs:{stack.region}:{stack.account}:log-group:/aws/codebuild/{project.project_name}:*"
    )
    compliance.acknowledge_wildcard_resources(
        project.role,
        [artifact_bucket.arn_for_objects("*")],
        "Objects of this pipeline's own artifacts bucket, which CodePipeline names per execution and action.",
    )
    compliance.acknowledge_wildcard_resources(
        project.role,
        [default_logs],
        "Streams of CodeBuild's default log group of this one project, which the L2 construct always grants; the "
        "project logs to its own KMS-encrypted group with retention instead.",
    )
    actions_ = compliance.S3_READ_ACTIONS + compliance.KMS_ACTIONS
    if writes_artifacts:
        actions_ += compliance.S3_WRITE_ACTIONS
    compliance.acknowledge_wildcard_actions(
        project.role,
        actions_,
        "CDK grant actions on the pipeline's artifacts bucket and its KMS key only (the resources in the same "
        "statements).",
    )


def acknowledge_pipeline_role(
    pipeline: codepipeline.Pipeline, artifact_bucket: s3.IBucket, extra_resources: Sequence[str] = ()
) -> None:
    """The wildcards CDK's grants put in a pipeline role: artifacts (and source) objects and their key."""
    compliance.acknowledge_wildcard_resources(
        pipeline.role,
        [artifact_bucket.arn_for_objects("*"), *extra_resources],
        "Objects of the pipeline's own artifacts bucket (CodePipeline names them per execution) and the source "
        "object's versions.",
    )
    compliance.acknowledge_wildcard_actions(
        pipeline.role,
        compliance.S3_READ_ACTIONS + compliance.S3_WRITE_ACTIONS + compliance.KMS_ACTIONS,
        "CDK grant actions of CodePipeline on its artifacts (and source) bucket and their KMS key only.",
    )

