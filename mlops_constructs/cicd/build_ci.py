"""Build CI: CodePipeline V2, source -> CodeBuild (model code tests, then start the model's SageMaker pipeline)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from aws_cdk import Duration, Token
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_codepipeline as codepipeline
from aws_cdk import aws_codepipeline_actions as actions
from aws_cdk import aws_events as events
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from constructs import Construct

from mlops_constructs.cicd.common import (BuildNetwork, acknowledge_build_role, acknowledge_pipeline_role,
                                          check_duration, codebuild_project, codebuild_stage, notify_failures,
                                          v2_pipeline)
from mlops_constructs.cicd.source import PipelineSource, check_source
from mlops_constructs.cicd.storage import PipelineStorage, StorageOptions
from mlops_constructs.pipeline_grants import ISageMakerPipeline


@dataclass(frozen=True)
class BuildCiNames:
    """Physical names of a build CI (the platform derives them in ``platform_config.names``).

    :param label: how descriptions name the model (the platform's ``<project>-<environment>-<model>``).
    :param pipeline: the CodePipeline and its CodeBuild project.
    :param source_object_key: the S3 source object (``source/<model>.zip``), without a connection only.
    """

    label: str
    pipeline: str
    source_object_key: str


def _build_timeout(
    owner: str, build_timeout: Optional[Duration], wait_for_execution: bool, wait_timeout: Duration
) -> Duration:
    """The build timeout (default 30 minutes, wait + 30 with ``wait_for_execution``), longer than the wait."""
    if build_timeout is None:
        build_timeout = Duration.minutes(wait_timeout.to_minutes() + 30) if wait_for_execution else Duration.minutes(30)
    build_minutes = check_duration(owner, "build_timeout", build_timeout, 5, 480)
    if wait_for_execution:
        wait_minutes = wait_timeout.to_minutes()
        if not Token.is_unresolved(build_minutes) and not Token.is_unresolved(wait_minutes) and (
            build_minutes <= wait_minutes
        ):
            raise ValueError(
                f"{owner} build_timeout ({build_minutes} minutes) must exceed wait_timeout ({wait_minutes} "
                "minutes), or the build is stopped before the SageMaker execution ends"
            )
    return build_timeout


class ModelBuildCi(Construct):
    """CodePipeline V2: source -> CodeBuild (model code tests, then start the model's SageMaker pipeline).

    The build runs ``buildspecs/model_build.yml``: it installs the pinned test dependencies, runs
    ``pytest tests/runtime/test_sagemaker_steps.py`` and then ``python -m cicd_scripts.start_pipeline
    --pipeline-name <name> --git-commit <commit>``. A push to ``branch`` (CodeConnections) or an upload of
    ``names.source_object_key`` (S3 fallback) starts it.

    The build role may only ``DescribePipeline`` and ``StartPipelineExecution`` on that one SageMaker pipeline;
    with ``wait_for_execution`` also read its executions; with ``definition_file`` (upsert) also ``UpdatePipeline``
    it and pass its execution role to SageMaker: the pipeline's own ``grant_start``, ``grant_read_executions`` and
    ``grant_update``. It never creates pipelines (the model stack does).

    :param names: physical names (:class:`BuildCiNames`).
    :param sagemaker_pipeline: the SageMaker pipeline to start: a
        :class:`~mlops_constructs.model_build_pipeline.ModelBuildPipeline`, or one made elsewhere
        (:meth:`SageMakerPipelineReference.from_pipeline_name <mlops_constructs.pipeline_grants.SageMakerPipelineReference.from_pipeline_name>`).
    :param connection_arn: CodeConnections ARN. Default: none, the S3 source bucket is used.
    :param repository: ``owner/name``; with ``connection_arn`` only.
    :param branch: Default: ``main``.
    :param trigger_file_paths: with a connection, start only when a push changes these paths (glob patterns, e.g.
        ``sagemaker_steps/**``). Default: any push to ``branch``.
    :param source_bucket: S3 fallback: an existing versioned bucket with EventBridge notifications. Default: a new
        one (versioned, KMS, TLS only, EventBridge notifications on).
    :param storage: key, access logs, removal policy, log retention, artifact expiration (:class:`StorageOptions`).
        Default: a new key with rotation, no access logs, everything retained, logs kept 90 days, artifacts 30.
    :param alarm_topic: failed executions are published here. Default: no notification.
    :param pipeline_stack_name: named in the error when the SageMaker pipeline does not exist yet.
    :param definition_file: pipeline definition JSON (path in the source) to upsert before starting; needs the
        pipeline's execution role (``sagemaker_pipeline.role``). Default: none (start the pipeline as the model stack
        deployed it).
    :param wait_for_execution: the build waits for the SageMaker execution and fails with it. Default: False.
    :param wait_timeout: with ``wait_for_execution``. Default: 60 minutes (the build timeout must exceed it).
    :param build_timeout: Default: 30 minutes (90 with ``wait_for_execution`` unless given).
    :param compute_type: Default: SMALL.
    :param build_network: run the build in a VPC (:class:`BuildNetwork`: its subnets need a route to PyPI and npm).
        Default: CodeBuild's own network.
    :param buildspec: the build's buildspec file, inlined into the project (required; the platform's is
        ``buildspecs/model_build.yml``).
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        names: BuildCiNames,
        sagemaker_pipeline: ISageMakerPipeline,
        connection_arn: Optional[str] = None,
        repository: Optional[str] = None,
        branch: str = "main",
        trigger_file_paths: Sequence[str] = (),
        source_bucket: Optional[s3.IBucket] = None,
        storage: StorageOptions = StorageOptions(),
        alarm_topic: Optional[sns.ITopic] = None,
        pipeline_stack_name: Optional[str] = None,
        definition_file: Optional[str] = None,
        wait_for_execution: bool = False,
        wait_timeout: Duration = Duration.minutes(60),
        build_timeout: Optional[Duration] = None,
        compute_type: codebuild.ComputeType = codebuild.ComputeType.SMALL,
        build_network: Optional[BuildNetwork] = None,
        buildspec: Path,
    ) -> None:
        super().__init__(scope, id_)
        owner = "ModelBuildCi"
        check_source(owner, connection_arn, repository)
        if trigger_file_paths and connection_arn is None:
            raise ValueError(f"{owner} trigger_file_paths filters pushes of a CodeConnections source; set connection_arn")
        pipeline_role = sagemaker_pipeline.role
        if definition_file is not None and pipeline_role is None:
            raise ValueError(
                f"{owner} definition_file needs the SageMaker pipeline's execution role (sagemaker_pipeline.role): "
                "upserting a pipeline definition passes the role the pipeline runs as"
            )
        build_timeout = _build_timeout(owner, build_timeout, wait_for_execution, wait_timeout)

        self.names = names
        self.source_object_key = names.source_object_key
        store = PipelineStorage(self, options=storage, default_access_logs_prefix=f"{names.pipeline}-",
                                key_description=f"Model build CI of {names.label}: artifacts, source, build logs")
        self.key, self.artifact_bucket, self.log_group = store.key, store.artifact_bucket, store.log_group
        self.source_bucket: Optional[s3.IBucket] = None
        if connection_arn is None:
            self.source_bucket = source_bucket or store.add_source_bucket()
        self.source = PipelineSource(
            owner=owner, connection_arn=connection_arn, repository=repository, branch=branch,
            bucket=self.source_bucket, object_key=self.source_object_key,
        )

        self.sagemaker_pipeline = sagemaker_pipeline
        pipeline_name = sagemaker_pipeline.pipeline_name
        self.project = codebuild_project(
            self,
            "Build",
            project_name=names.pipeline,
            description=f"{names.label}: test the model code, then start SageMaker pipeline {pipeline_name}",
            buildspec=buildspec,
            key=self.key,
            log_group=self.log_group,
            timeout=build_timeout,
            compute_type=compute_type,
            environment_variables={
                "SAGEMAKER_PIPELINE_NAME": pipeline_name,
                "PIPELINE_STACK": pipeline_stack_name or "",
                "WAIT": "true" if wait_for_execution else "false",
                "WAIT_TIMEOUT_MINUTES": str(wait_timeout.to_minutes()),
                "DEFINITION_FILE": definition_file or "",
                "PIPELINE_ROLE_ARN": pipeline_role.role_arn if definition_file is not None else "",
            },
            network=build_network,
        )
        # The build role starts the one SageMaker pipeline; with upsert also updates it and passes its role to
        # SageMaker only; with wait follows its executions.
        sagemaker_pipeline.grant_start(self.project)
        if definition_file is not None:
            sagemaker_pipeline.grant_update(self.project)
        if wait_for_execution:
            sagemaker_pipeline.grant_read_executions(self.project)
        self._add_pipeline(branch, trigger_file_paths)
        self.failure_rule = notify_failures(self.pipeline, alarm_topic) if alarm_topic else None

        acknowledge_build_role(self.project, self.artifact_bucket, writes_artifacts=False)
        acknowledge_pipeline_role(self.pipeline, self.artifact_bucket, self.source.object_arns())

    def _add_pipeline(self, branch: str, trigger_file_paths: Sequence[str]) -> None:
        source_output = codepipeline.Artifact("Source")
        # With trigger_file_paths the V2 trigger filters replace change detection.
        source = self.source.action(source_output, trigger_on_push=True)
        build = actions.CodeBuildAction(action_name="TestAndStartPipeline", project=self.project, input=source_output)
        self.pipeline = v2_pipeline(
            self,
            pipeline_name=self.names.pipeline,
            artifact_bucket=self.artifact_bucket,
            stages=[codebuild_stage("Source", source), codebuild_stage("Build", build)],
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
        rule = self.source.add_upload_trigger(self, self.pipeline, run="run the model build CI")
        self.rules: list[events.Rule] = [rule] if rule is not None else []

    @property
    def pipeline_name(self) -> str:
        return self.pipeline.pipeline_name
