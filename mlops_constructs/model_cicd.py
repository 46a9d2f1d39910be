"""Model CI/CD on CodePipeline V2 and CodeBuild: build CI (test, then start the SageMaker pipeline) and deploy CD
(on approval: resolve the approved package, then deploy and smoke test each serving stage, approval before the last).

Both pipelines read the same source: a CodeConnections repository (GitHub, GitLab, Bitbucket) when a connection ARN
is given, else an S3 source bucket holding ``source/<model>.zip`` (the fallback for accounts without a connection:
``git archive`` the repository, add a ``GIT_COMMIT`` file with the commit SHA, upload the zip). The CodeBuild
commands live in ``buildspecs/*.yml`` and are inlined into the projects at synth time, so ``cdk diff`` shows every
change to them; the scripts they call are ``cicd_scripts/*`` (see ``python -m cicd_scripts.<name> --help``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import yaml
from aws_cdk import Aws, Duration, RemovalPolicy, Stack, Token
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_codepipeline as codepipeline
from aws_cdk import aws_codepipeline_actions as actions
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from constructs import Construct

from mlops_constructs import compliance
from mlops_constructs.storage import allow_cloudwatch_logs, kms_bucket
from mlops_constructs.model_registry import approved_event_pattern, grant_read_model_packages

BUILD_IMAGE = codebuild.LinuxBuildImage.STANDARD_7_0
# The CDK bootstrap roles `cdk deploy` of a serving stack assumes (no Docker assets: no image-publishing role).
DEFAULT_BOOTSTRAP_ROLES = ("deploy", "file-publishing", "lookup")
STAGE_NAME_RE = re.compile(r"^[a-z][a-z0-9]*$")
ACCOUNT_RE = re.compile(r"^\d{12}$")
REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
ROLE_ARN_RE = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")
RESOLVED_VARIABLES = (
    "PACKAGE_FOUND", "MODEL_PACKAGE_ARN", "MODEL_PACKAGE_VERSION", "MODEL_DATA_URL", "MODEL_IMAGE", "GIT_COMMIT",
    "BASELINE_STATISTICS_URL", "BASELINE_CONSTRAINTS_URL",
)
# What a Deploy-<stage> build reads from Resolve (deploy_serving passes each only where the stack declares it).
DEPLOY_VARIABLES = ("MODEL_PACKAGE_ARN", "MODEL_DATA_URL", "BASELINE_STATISTICS_URL", "BASELINE_CONSTRAINTS_URL")
LAMBDA_MODES = ("model", "endpoint_proxy")
# A Deploy-<stage> build: `make install` (venv, npm ci, Lambda dependencies) and the synth, plus the CloudFormation
# work around the rollout; measured at 10-15 minutes on a SMALL build, doubled.
DEPLOY_SETUP = Duration.minutes(30)
# CodePipeline starts every new pipeline once ("CreatePipeline"): its failure (an empty S3 source, an empty registry)
# says nothing about the model, so it is not notified.
CREATION_TRIGGER = "CreatePipeline"


def deploy_build_timeout(rollout_timeout: Duration) -> Duration:
    """The Deploy-<stage> CodeBuild timeout: install and synth (:data:`DEPLOY_SETUP`) plus ``rollout_timeout``, the
    longest the serving stack's own rollout may take (endpoint blue/green ``MaximumExecutionTimeoutInSeconds``, plus
    the Lambda's CodeDeploy traffic shifting where it waits behind the endpoint). The one place this is computed."""
    return Duration.minutes(math.ceil(rollout_timeout.to_seconds() / 60) + DEPLOY_SETUP.to_minutes())


def load_buildspec(path: Path) -> codebuild.BuildSpec:
    """A buildspec file of the repository, inlined (``BuildSpec.from_object``) so the template shows it."""
    if not path.is_file():
        raise ValueError(f"buildspec {path} does not exist")
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(doc, dict) or str(doc.get("version")) != "0.2" or "phases" not in doc:
        raise ValueError(f"buildspec {path} is not a CodeBuild buildspec (version 0.2 with phases)")
    return codebuild.BuildSpec.from_object(doc)


# ---------------------------------------------------------------------------------------------------------------
# Shared pieces
# ---------------------------------------------------------------------------------------------------------------
def _check_duration(owner: str, name: str, value: Duration, low: int, high: int) -> int:
    minutes = value.to_minutes()
    if not Token.is_unresolved(minutes) and not low <= minutes <= high:
        raise ValueError(f"{owner} {name} must be within {low} and {high} minutes (CodeBuild's limits), got {minutes}")
    return minutes


def _check_source(owner: str, connection_arn: Optional[str], repository: Optional[str]) -> None:
    if (connection_arn is None) != (repository is None):
        raise ValueError(
            f"{owner} needs connection_arn and repository (owner/name) together for a CodeConnections source, "
            "or neither for the S3 source bucket"
        )
    if repository is not None and not Token.is_unresolved(repository) and not re.match(
        r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", repository
    ):
        raise ValueError(f"{owner} repository must be 'owner/name', got {repository!r}")


def _new_key(scope: Construct, description: str, removal_policy: RemovalPolicy) -> kms.Key:
    return kms.Key(
        scope, "Key", description=description, enable_key_rotation=True, removal_policy=removal_policy
    )


def _private_bucket(
    scope: Construct,
    id_: str,
    *,
    key: kms.IKey,
    access_logs_bucket: Optional[s3.IBucket],
    access_logs_prefix: str,
    removal_policy: RemovalPolicy,
    lifecycle_rules: Sequence[s3.LifecycleRule],
    versioned: bool,
    what: str,
) -> s3.Bucket:
    bucket = kms_bucket(
        scope,
        id_,
        key=key,
        access_logs_bucket=access_logs_bucket,
        access_logs_prefix=access_logs_prefix,
        removal_policy=removal_policy,
        lifecycle_rules=lifecycle_rules,
        versioned=versioned,
    )
    if access_logs_bucket is None:
        compliance.acknowledge(
            bucket,
            "AwsSolutions-S1",
            f"{what}: no access_logs_bucket was given; CodePipeline and CodeBuild access to it is recorded by "
            "CloudTrail (management events) and every object is written by the pipeline's own role.",
        )
    return bucket


def _artifact_bucket(
    scope: Construct,
    *,
    key: kms.IKey,
    access_logs_bucket: Optional[s3.IBucket],
    access_logs_prefix: str,
    removal_policy: RemovalPolicy,
    expiration: Duration,
) -> s3.Bucket:
    return _private_bucket(
        scope,
        "ArtifactsBucket",
        key=key,
        access_logs_bucket=access_logs_bucket,
        access_logs_prefix=access_logs_prefix,
        removal_policy=removal_policy,
        versioned=False,
        lifecycle_rules=[
            s3.LifecycleRule(
                id="expire-pipeline-artifacts",
                expiration=expiration,
                abort_incomplete_multipart_upload_after=Duration.days(1),
            )
        ],
        what="Pipeline artifacts bucket",
    )


def _source_bucket(
    scope: Construct,
    *,
    key: kms.IKey,
    access_logs_bucket: Optional[s3.IBucket],
    access_logs_prefix: str,
    removal_policy: RemovalPolicy,
) -> s3.Bucket:
    bucket = _private_bucket(
        scope,
        "SourceBucket",
        key=key,
        access_logs_bucket=access_logs_bucket,
        access_logs_prefix=access_logs_prefix,
        removal_policy=removal_policy,
        versioned=True,  # required by the CodePipeline S3 source action
        lifecycle_rules=[
            s3.LifecycleRule(
                id="noncurrent-source-versions",
                noncurrent_version_expiration=Duration.days(90),
                abort_incomplete_multipart_upload_after=Duration.days(1),
            )
        ],
        what="Source bucket",
    )
    # Native EventBridge notifications: an upload starts the build CI through a rule (no CloudTrail trail needed).
    bucket.node.default_child.add_property_override(
        "NotificationConfiguration.EventBridgeConfiguration.EventBridgeEnabled", True
    )
    return bucket


def _log_group(
    scope: Construct, *, key: kms.IKey, retention: logs.RetentionDays, removal_policy: RemovalPolicy
) -> logs.LogGroup:
    allow_cloudwatch_logs(key)
    return logs.LogGroup(scope, "BuildLogs", retention=retention, encryption_key=key, removal_policy=removal_policy)


def _project(
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
) -> codebuild.PipelineProject:
    project = codebuild.PipelineProject(
        scope,
        id_,
        project_name=project_name,
        description=description,
        build_spec=load_buildspec(buildspec),
        environment=codebuild.BuildEnvironment(
            build_image=BUILD_IMAGE, compute_type=compute_type, privileged=False
        ),
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
    )
    return project


def _acknowledge_build_role(project: codebuild.PipelineProject, artifact_bucket: s3.IBucket, *,
                            writes_artifacts: bool) -> None:
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


def _acknowledge_pipeline_role(pipeline: codepipeline.Pipeline, artifact_bucket: s3.IBucket,
                               extra_resources: Sequence[str] = ()) -> None:
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


def _notify_failures(pipeline: codepipeline.Pipeline, topic: sns.ITopic) -> events.Rule:
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


def _source_action(
    output: codepipeline.Artifact,
    *,
    connection_arn: Optional[str],
    repository: Optional[str],
    branch: str,
    bucket: Optional[s3.IBucket],
    object_key: str,
    trigger_on_push: bool,
) -> codepipeline.IAction:
    if connection_arn is not None and repository is not None:
        owner, repo = repository.split("/", 1)
        return actions.CodeStarConnectionsSourceAction(
            action_name="Checkout",
            connection_arn=connection_arn,
            owner=owner,
            repo=repo,
            branch=branch,
            output=output,
            trigger_on_push=trigger_on_push,
            code_build_clone_output=False,
        )
    assert bucket is not None
    return actions.S3SourceAction(
        action_name="SourceZip",
        bucket=bucket,
        bucket_key=object_key,
        output=output,
        trigger=actions.S3Trigger.NONE,  # the build CI is started by an EventBridge rule on the upload
    )


# ---------------------------------------------------------------------------------------------------------------
# Build CI
# ---------------------------------------------------------------------------------------------------------------
class ModelBuildCi(Construct):
    """CodePipeline V2: source -> CodeBuild (model code tests, then start the model's SageMaker pipeline).

    The build runs ``buildspecs/model_build.yml``: it installs the pinned test dependencies, runs
    ``pytest tests/runtime/test_sagemaker_steps.py`` and then ``python -m cicd_scripts.start_pipeline
    --pipeline-name <name> --git-commit <commit>``. A push to ``branch`` (CodeConnections) or an upload of
    ``source/<model>.zip`` (S3 fallback) starts it.

    The build role may only ``DescribePipeline`` and ``StartPipelineExecution`` on that one SageMaker pipeline;
    with ``wait_for_execution`` also read its executions; with ``definition_file`` (upsert) also ``UpdatePipeline``
    it and pass ``sagemaker_pipeline_role`` to SageMaker. It never creates pipelines (the model stack does).

    :param name_prefix: prefix of physical names, ``<project>-<environment>-<model>``: pipeline ``<prefix>-build``,
        CodeBuild project ``<prefix>-build``.
    :param model_name: the model; the S3 source object is ``source/<model_name>.zip``.
    :param sagemaker_pipeline_name: the SageMaker pipeline to start (created by the model stack).
    :param connection_arn: CodeConnections ARN. Default: none, the S3 source bucket is used.
    :param repository: ``owner/name``; with ``connection_arn`` only.
    :param branch: Default: ``main``.
    :param trigger_file_paths: with a connection, start only when a push changes these paths (glob patterns, e.g.
        ``sagemaker_steps/**``). Default: any push to ``branch``.
    :param source_bucket: S3 fallback: an existing versioned bucket with EventBridge notifications. Default: a new
        one (versioned, KMS, TLS only, EventBridge notifications on).
    :param encryption_key: key of the buckets, builds and logs. Default: a new key with rotation (retained).
    :param access_logs_bucket: server access logs of the new buckets. Default: none (acknowledged).
    :param alarm_topic: failed executions are published here. Default: no notification.
    :param pipeline_stack_name: named in the error when the SageMaker pipeline does not exist yet.
    :param definition_file: pipeline definition JSON (path in the source) to upsert before starting; needs
        ``sagemaker_pipeline_role``. Default: none (start the pipeline as the model stack deployed it).
    :param sagemaker_pipeline_role: the SageMaker pipeline's execution role, passed on upsert.
    :param wait_for_execution: the build waits for the SageMaker execution and fails with it. Default: False.
    :param wait_timeout: with ``wait_for_execution``. Default: 60 minutes (the build timeout must exceed it).
    :param build_timeout: Default: 30 minutes (90 with ``wait_for_execution`` unless given).
    :param compute_type: Default: SMALL.
    :param log_retention: of the build log group. Default: 90 days.
    :param artifact_expiration: pipeline artifacts are deleted after this. Default: 30 days.
    :param removal_policy: of key, buckets and log group. Default: RETAIN.
    :param buildspec: the build's buildspec file, inlined into the project (required; the platform's is
        ``buildspecs/model_build.yml``).
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        name_prefix: str,
        model_name: str,
        sagemaker_pipeline_name: str,
        connection_arn: Optional[str] = None,
        repository: Optional[str] = None,
        branch: str = "main",
        trigger_file_paths: Sequence[str] = (),
        source_bucket: Optional[s3.IBucket] = None,
        encryption_key: Optional[kms.IKey] = None,
        access_logs_bucket: Optional[s3.IBucket] = None,
        alarm_topic: Optional[sns.ITopic] = None,
        pipeline_stack_name: Optional[str] = None,
        definition_file: Optional[str] = None,
        sagemaker_pipeline_role: Optional[iam.IRole] = None,
        wait_for_execution: bool = False,
        wait_timeout: Duration = Duration.minutes(60),
        build_timeout: Optional[Duration] = None,
        compute_type: codebuild.ComputeType = codebuild.ComputeType.SMALL,
        log_retention: logs.RetentionDays = logs.RetentionDays.THREE_MONTHS,
        artifact_expiration: Duration = Duration.days(30),
        removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
        buildspec: Path,
    ) -> None:
        super().__init__(scope, id_)
        owner = "ModelBuildCi"
        _check_source(owner, connection_arn, repository)
        if trigger_file_paths and connection_arn is None:
            raise ValueError(f"{owner} trigger_file_paths filters pushes of a CodeConnections source; set connection_arn")
        if (definition_file is None) != (sagemaker_pipeline_role is None):
            raise ValueError(
                f"{owner} definition_file and sagemaker_pipeline_role go together: upserting a pipeline definition "
                "passes the role the pipeline runs as"
            )
        if build_timeout is None:
            build_timeout = (
                Duration.minutes(wait_timeout.to_minutes() + 30) if wait_for_execution else Duration.minutes(30)
            )
        build_minutes = _check_duration(owner, "build_timeout", build_timeout, 5, 480)
        if wait_for_execution:
            wait_minutes = wait_timeout.to_minutes()
            if not Token.is_unresolved(build_minutes) and not Token.is_unresolved(wait_minutes) and (
                build_minutes <= wait_minutes
            ):
                raise ValueError(
                    f"{owner} build_timeout ({build_minutes} minutes) must exceed wait_timeout ({wait_minutes} "
                    "minutes), or the build is stopped before the SageMaker execution ends"
                )

        stack = Stack.of(self)
        self.source_object_key = f"source/{model_name}.zip"
        self.key: kms.IKey = encryption_key or _new_key(
            self, f"Model build CI of {name_prefix}: artifacts, source, build logs", removal_policy
        )
        self.artifact_bucket = _artifact_bucket(
            self,
            key=self.key,
            access_logs_bucket=access_logs_bucket,
            access_logs_prefix=f"{name_prefix}-build-artifacts/",
            removal_policy=removal_policy,
            expiration=artifact_expiration,
        )
        self.source_bucket: Optional[s3.IBucket] = None
        if connection_arn is None:
            self.source_bucket = source_bucket or _source_bucket(
                self,
                key=self.key,
                access_logs_bucket=access_logs_bucket,
                access_logs_prefix=f"{name_prefix}-source/",
                removal_policy=removal_policy,
            )
        self.log_group = _log_group(self, key=self.key, retention=log_retention, removal_policy=removal_policy)

        # --- the build --------------------------------------------------------------------------------------------
        pipeline_arn_name = sagemaker_pipeline_name if Token.is_unresolved(sagemaker_pipeline_name) else (
            sagemaker_pipeline_name.lower()  # SageMaker lower-cases names in ARNs
        )
        self.sagemaker_pipeline_arn = stack.format_arn(
            service="sagemaker", resource="pipeline", resource_name=pipeline_arn_name
        )
        env = {
            "SAGEMAKER_PIPELINE_NAME": sagemaker_pipeline_name,
            "PIPELINE_STACK": pipeline_stack_name or "",
            "WAIT": "true" if wait_for_execution else "false",
            "WAIT_TIMEOUT_MINUTES": str(wait_timeout.to_minutes()),
            "DEFINITION_FILE": definition_file or "",
            "PIPELINE_ROLE_ARN": sagemaker_pipeline_role.role_arn if sagemaker_pipeline_role else "",
        }
        self.project = _project(
            self,
            "Build",
            project_name=f"{name_prefix}-build",
            description=f"{name_prefix}: test the model code, then start SageMaker pipeline {sagemaker_pipeline_name}",
            buildspec=buildspec,
            key=self.key,
            log_group=self.log_group,
            timeout=build_timeout,
            compute_type=compute_type,
            environment_variables=env,
        )
        role = self.project.role
        assert role is not None
        sm_actions = ["sagemaker:DescribePipeline", "sagemaker:StartPipelineExecution"]
        if definition_file is not None:
            sm_actions.append("sagemaker:UpdatePipeline")
        role.add_to_principal_policy(
            iam.PolicyStatement(sid="StartThisPipeline", actions=sm_actions, resources=[self.sagemaker_pipeline_arn])
        )
        if wait_for_execution:
            executions = f"{self.sagemaker_pipeline_arn}/execution/*"
            role.add_to_principal_policy(
                iam.PolicyStatement(
                    sid="FollowItsExecutions",
                    actions=["sagemaker:DescribePipelineExecution", "sagemaker:ListPipelineExecutionSteps"],
                    resources=[executions],
                )
            )
            compliance.acknowledge_wildcard_resources(
                role,
                [executions],
                "Executions of this one SageMaker pipeline: their IDs are generated at start, so the ARN ends in a "
                "wildcard under the pipeline's own ARN.",
            )
        if sagemaker_pipeline_role is not None:
            role.add_to_principal_policy(
                iam.PolicyStatement(
                    sid="PassThePipelineRole",
                    actions=["iam:PassRole"],
                    resources=[sagemaker_pipeline_role.role_arn],
                    conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
                )
            )

        # --- the pipeline -----------------------------------------------------------------------------------------
        source_output = codepipeline.Artifact("Source")
        source = _source_action(
            source_output,
            connection_arn=connection_arn,
            repository=repository,
            branch=branch,
            bucket=self.source_bucket,
            object_key=self.source_object_key,
            trigger_on_push=True,  # with trigger_file_paths the V2 trigger filters replace change detection
        )
        self.pipeline = codepipeline.Pipeline(
            self,
            "Pipeline",
            pipeline_name=f"{name_prefix}-build",
            pipeline_type=codepipeline.PipelineType.V2,
            execution_mode=codepipeline.ExecutionMode.SUPERSEDED,
            artifact_bucket=self.artifact_bucket,
            restart_execution_on_update=False,
            use_pipeline_role_for_actions=True,
            stages=[
                codepipeline.StageProps(stage_name="Source", actions=[source]),
                codepipeline.StageProps(
                    stage_name="Build",
                    actions=[
                        actions.CodeBuildAction(
                            action_name="TestAndStartPipeline", project=self.project, input=source_output
                        )
                    ],
                ),
            ],
        )
        if trigger_file_paths:
            self.pipeline.add_trigger(
                provider_type=codepipeline.ProviderType.CODE_STAR_SOURCE_CONNECTION,
                git_configuration=codepipeline.GitConfiguration(
                    source_action=source,
                    push_filter=[
                        codepipeline.GitPushFilter(
                            branches_includes=[branch], file_paths_includes=list(trigger_file_paths)
                        )
                    ],
                ),
            )
        self.rules: list[events.Rule] = []
        if self.source_bucket is not None:
            self.rules.append(
                events.Rule(
                    self,
                    "OnSourceUpload",
                    description=f"{self.source_object_key} uploaded: run the model build CI",
                    event_pattern=events.EventPattern(
                        source=["aws.s3"],
                        detail_type=["Object Created"],
                        detail={
                            "bucket": {"name": [self.source_bucket.bucket_name]},
                            "object": {"key": [self.source_object_key]},
                        },
                    ),
                    targets=[targets.CodePipeline(self.pipeline)],
                )
            )
        self.failure_rule = _notify_failures(self.pipeline, alarm_topic) if alarm_topic else None

        _acknowledge_build_role(self.project, self.artifact_bucket, writes_artifacts=False)
        _acknowledge_pipeline_role(
            self.pipeline,
            self.artifact_bucket,
            [self.source_bucket.arn_for_objects(self.source_object_key)] if self.source_bucket else [],
        )

    @property
    def pipeline_name(self) -> str:
        return self.pipeline.pipeline_name


# ---------------------------------------------------------------------------------------------------------------
# Deploy CD
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DeployStage:
    """One serving stage of the deploy CD.

    :param name: stage name (``staging``, ``prod``): the serving stack is
        ``<project>-<environment>-serving-<model>-<name>``.
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


class ModelDeployCd(Construct):
    """CodePipeline V2 started when a version of the model package group is approved; deploys it stage by stage.

    Stages: ``Source`` -> ``Resolve`` (``cicd_scripts.resolve_approved_package``: the latest Approved version,
    exported as ``#{Resolve.MODEL_PACKAGE_ARN}``, ``#{Resolve.MODEL_DATA_URL}`` and the Model Monitor baseline
    ``#{Resolve.BASELINE_STATISTICS_URL}``/``#{Resolve.BASELINE_CONSTRAINTS_URL}``) -> for each serving stage
    ``Deploy-<stage>`` (``cicd_scripts.deploy_serving``: ``npx cdk deploy`` of the serving stack with the package and
    the parameters the stack declares) and ``Smoke-<stage>`` (``cicd_scripts.smoke_test``), with
    ``Approve-<last stage>``, a manual approval that notifies ``approval_topic`` (default ``alarm_topic``), before the
    last stage's deploy. The approval event only starts the pipeline; Resolve reads the registry, so a retried or
    manually started execution deploys the current approved version too.

    First deploy: CodePipeline runs a new pipeline once. When no version is approved yet, Resolve ends successfully
    with ``PACKAGE_FOUND=false`` and every later stage's entry condition (a ``VariableCheck`` rule, result ``SKIP``)
    skips it; a failure of that creation run (e.g. the S3 source object is not uploaded yet) is not notified.

    Roles, one per build: Resolve reads only the one model package group; ``Deploy-<stage>`` may only assume the
    CDK bootstrap roles (deploy, file-publishing, lookup) of that stage's account and region, which is how the CDK
    CLI deploys; ``Smoke-<stage>`` may only describe that stage's serving stack and call that stage's endpoint and
    function URL (or assume ``smoke_role_arn``), and read the model data when no sample file is given.

    :param project: :param environment: :param model_name: parts of the names; ``environment`` is also the config
        (``-c env=<environment>``) the deploy synthesizes.
    :param model_package_group_name: the group whose approvals trigger the pipeline.
    :param stages: serving stages in order (names or :class:`DeployStage`); a manual approval precedes the last.
    :param alarm_topic: failed executions are published here.
    :param alarm_topic_key: the KMS key ``alarm_topic`` is encrypted with, when the topic is imported (a
        ``sns.Topic`` of this app brings its ``master_key``): the pipeline role may use it to publish the approval.
    :param approval_topic: the manual approval notifies it. Default: ``alarm_topic``.
    :param approval_topic_key: as ``alarm_topic_key``, for ``approval_topic``.
    :param endpoint: the serving stacks have a SageMaker endpoint: Resolve requires the package's Model Monitor
        baseline and the deploy passes it (``BaselineStatisticsUrl``, ``BaselineConstraintsUrl``). Default: True.
    :param lambda_mode: the serving stacks' Lambda inference mode, ``model`` (the deploy passes ``ModelDataUrl``) or
        ``endpoint_proxy``; None: no Lambda. Default: ``model``.
    :param model_package_group_arn: the group's ARN when it lives in another account (shared by its
        ``ModelRegistry`` ``trusted_accounts``). Default: the group of that name in this account.
    :param connection_arn: :param repository: :param branch: CodeConnections source (not triggered on push).
    :param source_bucket: :param source_object_key: S3 source instead (e.g. ``ModelBuildCi.source_bucket``).
        Default key: ``source/<model_name>.zip``.
    :param smoke_sample_file: JSON instances (path in the source) for the smoke test. Default: rows generated from
        ``model_metadata.json`` in the approved package's model data, read from ``model_artifacts_bucket``.
    :param model_artifacts_bucket: :param model_artifacts_key_pattern: where the model data is. Default pattern
        ``*``; needed unless ``smoke_sample_file`` is given.
    :param endpoint_name_prefix: :param function_name_prefix: the stage's endpoint and inference function are named
        exactly ``<prefix>-<stage>`` (the smoke test may call those only). Default: ``<project>-<environment>-<model>``.
    :param bootstrap_qualifier: CDK bootstrap qualifier of the target accounts. Default: the app's
        ``@aws-cdk/core:bootstrapQualifier`` context, else ``hnb659fds``.
    :param encryption_key: :param access_logs_bucket: :param log_retention: :param removal_policy:
        :param compute_type: :param artifact_expiration: as for :class:`ModelBuildCi`.
    :param rollout_timeout: the longest the serving stack's own rollout may take: the endpoint's blue/green
        ``MaximumExecutionTimeoutInSeconds``, plus the Lambda's CodeDeploy shifting when it waits behind the endpoint
        (``endpoint_proxy``). Default: 30 minutes (an endpoint's creation).
    :param deploy_timeout: of each Deploy-<stage> build; at least :func:`deploy_build_timeout` of
        ``rollout_timeout``. Default: that. :param smoke_timeout: Default: 45 minutes (an endpoint may still be
        updating when the stack is complete).
    :param buildspecs: directory of ``model_resolve.yml``, ``model_deploy.yml`` and ``model_smoke.yml``, inlined
        into the projects (required; the platform's is ``buildspecs/``).
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        project: str,
        environment: str,
        model_name: str,
        model_package_group_name: str,
        stages: Sequence[Union[str, DeployStage]],
        alarm_topic: sns.ITopic,
        alarm_topic_key: Optional[kms.IKey] = None,
        approval_topic: Optional[sns.ITopic] = None,
        approval_topic_key: Optional[kms.IKey] = None,
        endpoint: bool = True,
        lambda_mode: Optional[str] = "model",
        model_package_group_arn: Optional[str] = None,
        connection_arn: Optional[str] = None,
        repository: Optional[str] = None,
        branch: str = "main",
        source_bucket: Optional[s3.IBucket] = None,
        source_object_key: Optional[str] = None,
        smoke_sample_file: Optional[str] = None,
        model_artifacts_bucket: Optional[s3.IBucket] = None,
        model_artifacts_key_pattern: str = "*",
        endpoint_name_prefix: Optional[str] = None,
        function_name_prefix: Optional[str] = None,
        bootstrap_qualifier: Optional[str] = None,
        bootstrap_roles: Sequence[str] = DEFAULT_BOOTSTRAP_ROLES,
        encryption_key: Optional[kms.IKey] = None,
        access_logs_bucket: Optional[s3.IBucket] = None,
        rollout_timeout: Duration = Duration.minutes(30),
        deploy_timeout: Optional[Duration] = None,
        smoke_timeout: Duration = Duration.minutes(45),
        compute_type: codebuild.ComputeType = codebuild.ComputeType.SMALL,
        log_retention: logs.RetentionDays = logs.RetentionDays.THREE_MONTHS,
        artifact_expiration: Duration = Duration.days(30),
        removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
        buildspecs: Path,
    ) -> None:
        super().__init__(scope, id_)
        owner = "ModelDeployCd"
        _check_source(owner, connection_arn, repository)
        if (connection_arn is None) == (source_bucket is None):
            raise ValueError(
                f"{owner} needs exactly one source: connection_arn and repository (CodeConnections), or "
                "source_bucket (the S3 source, e.g. ModelBuildCi.source_bucket)"
            )
        if smoke_sample_file is None and model_artifacts_bucket is None:
            raise ValueError(
                f"{owner} smoke test needs sample rows: give smoke_sample_file (JSON instances in the source) or "
                "model_artifacts_bucket (to read model_metadata.json from the approved package's model data)"
            )
        deploy_stages = [s if isinstance(s, DeployStage) else DeployStage(name=s) for s in stages]
        if not deploy_stages:
            raise ValueError(f"{owner} stages must name at least one serving stage (the last one is approved manually)")
        names = [s.name for s in deploy_stages]
        for s in deploy_stages:
            if not STAGE_NAME_RE.match(s.name) or len(s.name) > 10:
                raise ValueError(f"{owner} stage name {s.name!r} must be lower-case letters and digits, at most 10")
            if s.account is not None and not Token.is_unresolved(s.account) and not ACCOUNT_RE.match(s.account):
                raise ValueError(f"{owner} stage {s.name!r} account {s.account!r} is not a 12-digit AWS account ID")
            if s.region is not None and not Token.is_unresolved(s.region) and not REGION_RE.match(s.region):
                raise ValueError(f"{owner} stage {s.name!r} region {s.region!r} is not an AWS region such as eu-west-1")
            if s.smoke_role_arn is not None and not Token.is_unresolved(s.smoke_role_arn) and not ROLE_ARN_RE.match(
                s.smoke_role_arn
            ):
                raise ValueError(f"{owner} stage {s.name!r} smoke_role_arn {s.smoke_role_arn!r} is not an IAM role ARN")
        if len(set(names)) != len(names):
            raise ValueError(f"{owner} stage names must be unique, got {names}")
        if lambda_mode is not None and lambda_mode not in LAMBDA_MODES:
            raise ValueError(f"{owner} lambda_mode must be one of {list(LAMBDA_MODES)} or None, got {lambda_mode!r}")
        if not endpoint and lambda_mode is None:
            raise ValueError(f"{owner} needs endpoint=True or a lambda_mode: the serving stacks serve nothing")
        if lambda_mode == "endpoint_proxy" and not endpoint:
            raise ValueError(f"{owner} lambda_mode 'endpoint_proxy' calls the endpoint: set endpoint=True")
        minimum = deploy_build_timeout(rollout_timeout)
        if deploy_timeout is None:
            deploy_timeout = minimum
        deploy_minutes = _check_duration(owner, "deploy_timeout", deploy_timeout, 5, 480)
        if deploy_minutes < minimum.to_minutes():
            raise ValueError(
                f"{owner} deploy_timeout ({deploy_minutes} minutes) must cover the serving rollout "
                f"({math.ceil(rollout_timeout.to_seconds() / 60)} minutes) plus install and synth "
                f"({DEPLOY_SETUP.to_minutes()} minutes): at least {minimum.to_minutes()} minutes, or leave it unset"
            )
        _check_duration(owner, "smoke_timeout", smoke_timeout, 5, 480)

        stack = Stack.of(self)
        for s in deploy_stages:
            if _is_other_account(stack, s.account) and s.smoke_role_arn is None:
                raise ValueError(
                    f"{owner} stage {s.name!r} is in account {s.account}, not this stack's: give it a smoke_role_arn "
                    "(a role there the smoke test assumes to call the endpoint and function URL)"
                )

        self.stages = deploy_stages
        name_prefix = f"{project}-{environment}-{model_name}"
        endpoint_base = endpoint_name_prefix or name_prefix
        function_base = function_name_prefix or name_prefix
        qualifier = bootstrap_qualifier or self.node.try_get_context("@aws-cdk/core:bootstrapQualifier") or (
            compliance.DEFAULT_QUALIFIER
        )
        self.source_object_key = source_object_key or f"source/{model_name}.zip"

        self.key: kms.IKey = encryption_key or _new_key(
            self, f"Model deploy CD of {name_prefix}: artifacts, build logs", removal_policy
        )
        self.artifact_bucket = _artifact_bucket(
            self,
            key=self.key,
            access_logs_bucket=access_logs_bucket,
            access_logs_prefix=f"{name_prefix}-deploy-artifacts/",
            removal_policy=removal_policy,
            expiration=artifact_expiration,
        )
        self.log_group = _log_group(self, key=self.key, retention=log_retention, removal_policy=removal_policy)

        def project_(id_: str, name: str, description: str, spec: str, timeout: Duration,
                     env: Mapping[str, str]) -> codebuild.PipelineProject:
            return _project(
                self,
                id_,
                project_name=f"{name_prefix}-{name}",
                description=f"{name_prefix}: {description}",
                buildspec=buildspecs / spec,
                key=self.key,
                log_group=self.log_group,
                timeout=timeout,
                compute_type=compute_type,
                environment_variables=env,
            )

        # --- Resolve --------------------------------------------------------------------------------------------
        group_arn = model_package_group_arn or stack.format_arn(
            service="sagemaker", resource="model-package-group", resource_name=_arn_name(model_package_group_name)
        )
        packages_arn = _packages_arn(stack, group_arn, model_package_group_name, model_package_group_arn)
        self.resolve_project = project_(
            "Resolve",
            "deploy-resolve",
            f"latest Approved version of model package group {model_package_group_name}",
            "model_resolve.yml",
            Duration.minutes(10),
            {
                "MODEL_PACKAGE_GROUP": model_package_group_arn or model_package_group_name,
                "REQUIRE_BASELINE": "true" if endpoint else "false",
            },
        )
        grant_read_model_packages(self.resolve_project, group_arn, packages_arn)

        # --- Deploy and Smoke, per stage ------------------------------------------------------------------------
        self.deploy_projects: dict[str, codebuild.PipelineProject] = {}
        self.smoke_projects: dict[str, codebuild.PipelineProject] = {}
        for s in deploy_stages:
            account = s.account or Aws.ACCOUNT_ID
            region = s.region or Aws.REGION
            serving_stack = f"{project}-{environment}-serving-{model_name}-{s.name}"
            deploy = project_(
                f"Deploy{s.name.capitalize()}",
                f"deploy-{s.name}",
                f"cdk deploy {serving_stack}",
                "model_deploy.yml",
                deploy_timeout,
                {
                    "PROJECT": project,
                    "ENVIRONMENT": environment,
                    "MODEL": model_name,
                    "STAGE": s.name,
                    "ENDPOINT_ENABLED": "true" if endpoint else "false",
                    "LAMBDA_MODE": lambda_mode or "none",
                },
            )
            bootstrap = [
                f"arn:{Aws.PARTITION}:iam::{account}:role/cdk-{qualifier}-{r}-role-{account}-{region}"
                for r in bootstrap_roles
            ]
            deploy.add_to_role_policy(
                iam.PolicyStatement(sid="AssumeCdkBootstrapRoles", actions=["sts:AssumeRole"], resources=bootstrap)
            )
            self.deploy_projects[s.name] = deploy

            smoke = project_(
                f"Smoke{s.name.capitalize()}",
                f"smoke-{s.name}",
                f"smoke test {serving_stack}",
                "model_smoke.yml",
                smoke_timeout,
                {
                    "SERVING_STACK": serving_stack,
                    "STAGE": s.name,
                    "STAGE_REGION": s.region or "",
                    "SMOKE_ROLE_ARN": s.smoke_role_arn or "",
                    "SAMPLE_FILE": smoke_sample_file or "",
                },
            )
            if s.smoke_role_arn is not None:
                smoke.add_to_role_policy(
                    iam.PolicyStatement(
                        sid="AssumeStageSmokeRole", actions=["sts:AssumeRole"], resources=[s.smoke_role_arn]
                    )
                )
            else:
                self._grant_smoke(
                    smoke, s, serving_stack,
                    endpoint_name=f"{endpoint_base}-{s.name}" if endpoint else None,
                    function_name=f"{function_base}-{s.name}" if lambda_mode else None,
                )
            if smoke_sample_file is None and model_artifacts_bucket is not None:
                model_artifacts_bucket.grant_read(smoke, model_artifacts_key_pattern)
                compliance.acknowledge_wildcard_resources(
                    smoke.role,
                    [model_artifacts_bucket.arn_for_objects(model_artifacts_key_pattern)],
                    "The smoke test reads model_metadata.json from the approved package's model.tar.gz, whose key "
                    "the SageMaker training job generates under the model artifacts prefix.",
                )
            self.smoke_projects[s.name] = smoke

        # --- the pipeline -----------------------------------------------------------------------------------------
        source_output = codepipeline.Artifact("Source")
        source = _source_action(
            source_output,
            connection_arn=connection_arn,
            repository=repository,
            branch=branch,
            bucket=source_bucket,
            object_key=self.source_object_key,
            trigger_on_push=False,  # approvals start this pipeline, not pushes
        )
        resolve = actions.CodeBuildAction(
            action_name="ResolveApprovedPackage",
            project=self.resolve_project,
            input=source_output,
            variables_namespace="Resolve",
        )
        pipeline_stages = [
            codepipeline.StageProps(stage_name="Source", actions=[source]),
            codepipeline.StageProps(stage_name="Resolve", actions=[resolve]),
        ]

        def when_found() -> codepipeline.Conditions:
            """Enter the stage only when Resolve found an approved package; else skip it (no failure)."""
            return codepipeline.Conditions(
                conditions=[
                    codepipeline.Condition(
                        result=codepipeline.Result.SKIP,
                        rules=[
                            codepipeline.Rule(
                                name="ApprovedPackageFound",
                                provider="VariableCheck",
                                version="1",
                                configuration={
                                    "Variable": resolve.variable("PACKAGE_FOUND"),
                                    "Value": "true",
                                    "Operator": "EQ",
                                },
                            )
                        ],
                    )
                ]
            )

        notify_topic = approval_topic or alarm_topic
        notify_key = (approval_topic_key if approval_topic is not None else alarm_topic_key) or getattr(
            notify_topic, "master_key", None
        )
        for i, s in enumerate(deploy_stages):
            if i == len(deploy_stages) - 1:
                pipeline_stages.append(
                    codepipeline.StageProps(
                        stage_name=f"Approve-{s.name}",
                        before_entry=when_found(),
                        actions=[
                            actions.ManualApprovalAction(
                                action_name=f"ApproveDeployTo{s.name.capitalize()}",
                                notification_topic=notify_topic,
                                additional_information=(
                                    f"Deploy {resolve.variable('MODEL_PACKAGE_ARN')} (model {model_name}, commit "
                                    f"{resolve.variable('GIT_COMMIT')}) to {s.name}?"
                                ),
                            )
                        ],
                    )
                )
            targets_output = codepipeline.Artifact(f"Targets_{s.name}")
            pipeline_stages.append(
                codepipeline.StageProps(
                    stage_name=f"Deploy-{s.name}",
                    before_entry=when_found(),
                    actions=[
                        actions.CodeBuildAction(
                            action_name="CdkDeployServing",
                            project=self.deploy_projects[s.name],
                            input=source_output,
                            outputs=[targets_output],
                            environment_variables={
                                name: codebuild.BuildEnvironmentVariable(value=resolve.variable(name))
                                for name in DEPLOY_VARIABLES
                            },
                        )
                    ],
                )
            )
            pipeline_stages.append(
                codepipeline.StageProps(
                    stage_name=f"Smoke-{s.name}",
                    before_entry=when_found(),
                    actions=[
                        actions.CodeBuildAction(
                            action_name="SmokeTest",
                            project=self.smoke_projects[s.name],
                            input=source_output,
                            extra_inputs=[targets_output],
                            environment_variables={
                                "MODEL_DATA_URL": codebuild.BuildEnvironmentVariable(
                                    value=resolve.variable("MODEL_DATA_URL")
                                )
                            },
                        )
                    ],
                )
            )
        self.pipeline = codepipeline.Pipeline(
            self,
            "Pipeline",
            pipeline_name=f"{name_prefix}-deploy",
            pipeline_type=codepipeline.PipelineType.V2,
            # A newer approval supersedes an older execution still waiting (e.g. at the manual approval).
            execution_mode=codepipeline.ExecutionMode.SUPERSEDED,
            artifact_bucket=self.artifact_bucket,
            restart_execution_on_update=False,
            use_pipeline_role_for_actions=True,
            stages=pipeline_stages,
        )

        self.approval_rule = events.Rule(
            self,
            "OnApproved",
            description=f"A version of {model_package_group_name} was approved: run the deploy CD",
            event_pattern=approved_event_pattern(model_package_group_name),
            targets=[targets.CodePipeline(self.pipeline)],
        )
        self.failure_rule = _notify_failures(self.pipeline, alarm_topic)
        if notify_key is not None:
            # The approval is published to an SSE-KMS topic with the pipeline role (the role that runs the action).
            notify_key.grant(self.pipeline.role, "kms:Decrypt", "kms:GenerateDataKey*")

        _acknowledge_build_role(self.resolve_project, self.artifact_bucket, writes_artifacts=False)
        for name in names:
            _acknowledge_build_role(self.deploy_projects[name], self.artifact_bucket, writes_artifacts=True)
            _acknowledge_build_role(self.smoke_projects[name], self.artifact_bucket, writes_artifacts=False)
        _acknowledge_pipeline_role(
            self.pipeline,
            self.artifact_bucket,
            [source_bucket.arn_for_objects(self.source_object_key)] if source_bucket else [],
        )

    def _grant_smoke(self, project: codebuild.PipelineProject, s: DeployStage, serving_stack: str, *,
                     endpoint_name: Optional[str], function_name: Optional[str]) -> None:
        """Describe the stage's serving stack; call exactly its endpoint and its function (contract C1: the function
        is named ``<project>-<environment>-<model>-<stage>``; its URL is on an alias, ``function:<name>:<alias>``)."""
        account = s.account or Aws.ACCOUNT_ID
        region = s.region or Aws.REGION

        def arn(service: str, resource: str, name: str, sep: str = "/") -> str:
            return f"arn:{Aws.PARTITION}:{service}:{region}:{account}:{resource}{sep}{name}"

        stack_arn = arn("cloudformation", "stack", f"{serving_stack}/*")
        wildcards = [stack_arn]
        project.add_to_role_policy(
            iam.PolicyStatement(sid="ServingStackStatus", actions=["cloudformation:DescribeStacks"],
                                resources=[stack_arn])
        )
        if endpoint_name is not None:
            project.add_to_role_policy(
                iam.PolicyStatement(
                    sid="CallStageEndpoint",
                    actions=["sagemaker:DescribeEndpoint", "sagemaker:InvokeEndpoint"],
                    resources=[arn("sagemaker", "endpoint", _arn_name(endpoint_name))],
                )
            )
        if function_name is not None:
            functions = [arn("lambda", "function", function_name, ":"),
                         arn("lambda", "function", f"{function_name}:*", ":")]
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
            f"Only the {s.name} serving stack (its ID suffix is generated by CloudFormation) and the versions and "
            "aliases of the one function named after this model and stage (its URL is on the alias 'live').",
        )


def _arn_name(name: str) -> str:
    return name if Token.is_unresolved(name) else name.lower()


def _packages_arn(stack: Stack, group_arn: str, group_name: str, explicit_arn: Optional[str]) -> str:
    """``model-package/<group>/*`` in the group's account and region."""
    if explicit_arn is None:
        return stack.format_arn(service="sagemaker", resource="model-package", resource_name=f"{_arn_name(group_name)}/*")
    if Token.is_unresolved(explicit_arn):
        raise ValueError("ModelDeployCd model_package_group_arn must be a literal ARN (it names another account)")
    match = re.match(r"^(arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:\d{12}):model-package-group/(.+)$", explicit_arn)
    if not match:
        raise ValueError(f"ModelDeployCd model_package_group_arn {explicit_arn!r} is not a model package group ARN")
    if match.group(2).lower() != group_name.lower():
        raise ValueError(
            f"ModelDeployCd model_package_group_arn {explicit_arn!r} names group {match.group(2)!r}, "
            f"not model_package_group_name {group_name!r}"
        )
    return f"{match.group(1)}:model-package/{match.group(2).lower()}/*"


def _is_other_account(stack: Stack, account: Optional[str]) -> bool:
    """True when ``account`` is set and is not (or cannot be shown to be) the stack's account."""
    if account is None:
        return False
    return Token.is_unresolved(stack.account) or account != stack.account
