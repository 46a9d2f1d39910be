"""Deploy CD: CodePipeline V2 started by an approval in the model registry; resolves the approved package, then
deploys and smoke-tests each serving stage, with a manual approval before the last."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence, Union

from aws_cdk import Duration, Stack
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_codepipeline as codepipeline
from aws_cdk import aws_codepipeline_actions as actions
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from constructs import Construct

from mlops_constructs import compliance
from mlops_constructs.cicd.common import (BuildNetwork, acknowledge_build_role, acknowledge_pipeline_role,
                                          check_duration, codebuild_project, codebuild_stage, notify_failures,
                                          v2_pipeline)
from mlops_constructs.cicd.deploy_stage import (
    DEFAULT_BOOTSTRAP_ROLES,
    DeployStage,
    grant_assume_bootstrap_roles,
    grant_read_model_data,
    grant_smoke,
    validate_stages,
)
from mlops_constructs.cicd.source import PipelineSource, check_source
from mlops_constructs.cicd.storage import PipelineStorage, StorageOptions
from mlops_constructs.model_registry import IModelRegistry, approved_event_pattern

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

StageName = Callable[[str], str]
"""A physical name of one serving stage, from the stage name."""


def deploy_build_timeout(rollout_timeout: Duration) -> Duration:
    """The Deploy-<stage> CodeBuild timeout: install and synth (:data:`DEPLOY_SETUP`) plus ``rollout_timeout``, the
    longest the serving stack's own rollout may take (endpoint blue/green ``MaximumExecutionTimeoutInSeconds``, plus
    the Lambda's CodeDeploy traffic shifting where it waits behind the endpoint). The one place this is computed."""
    return Duration.minutes(math.ceil(rollout_timeout.to_seconds() / 60) + DEPLOY_SETUP.to_minutes())


@dataclass(frozen=True)
class DeployCdNames:
    """Physical names of a deploy CD (the platform derives them in ``platform_config.names``).

    :param label: how descriptions name the model (the platform's ``<project>-<environment>-<model>``).
    :param pipeline: the CodePipeline.
    :param resolve_project: the CodeBuild project that resolves the approved package.
    :param deploy_project: :param smoke_project: a stage's Deploy and Smoke CodeBuild projects.
    :param serving_stack: a stage's serving stack (the Smoke build may describe it only).
    :param endpoint: :param function: a stage's endpoint and inference function (the Smoke build may call those
        only).
    :param source_object_key: the S3 source object (``source/<model>.zip``), without a connection only.
    """

    label: str
    pipeline: str
    resolve_project: str
    deploy_project: StageName
    smoke_project: StageName
    serving_stack: StageName
    endpoint: StageName
    function: StageName
    source_object_key: str


def _check_inputs(owner: str, connection_arn: Optional[str], repository: Optional[str],
                  source_bucket: Optional[s3.IBucket], smoke_sample_file: Optional[str],
                  model_artifacts_bucket: Optional[s3.IBucket]) -> None:
    """One source (a connection or the S3 source bucket) and somewhere to take the smoke test's rows from."""
    check_source(owner, connection_arn, repository)
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


def _check_serving(owner: str, endpoint: bool, lambda_mode: Optional[str]) -> None:
    if lambda_mode is not None and lambda_mode not in LAMBDA_MODES:
        raise ValueError(f"{owner} lambda_mode must be one of {list(LAMBDA_MODES)} or None, got {lambda_mode!r}")
    if not endpoint and lambda_mode is None:
        raise ValueError(f"{owner} needs endpoint=True or a lambda_mode: the serving stacks serve nothing")
    if lambda_mode == "endpoint_proxy" and not endpoint:
        raise ValueError(f"{owner} lambda_mode 'endpoint_proxy' calls the endpoint: set endpoint=True")


def _deploy_timeout(owner: str, rollout_timeout: Duration, deploy_timeout: Optional[Duration]) -> Duration:
    """``deploy_timeout`` (default :func:`deploy_build_timeout`), which must cover the rollout."""
    minimum = deploy_build_timeout(rollout_timeout)
    if deploy_timeout is None:
        deploy_timeout = minimum
    deploy_minutes = check_duration(owner, "deploy_timeout", deploy_timeout, 5, 480)
    if deploy_minutes < minimum.to_minutes():
        raise ValueError(
            f"{owner} deploy_timeout ({deploy_minutes} minutes) must cover the serving rollout "
            f"({math.ceil(rollout_timeout.to_seconds() / 60)} minutes) plus install and synth "
            f"({DEPLOY_SETUP.to_minutes()} minutes): at least {minimum.to_minutes()} minutes, or leave it unset"
        )
    return deploy_timeout


def _resolved(
    resolve: actions.CodeBuildAction, names: Sequence[str]
) -> dict[str, codebuild.BuildEnvironmentVariable]:
    """Build variables that pass on what Resolve exported (``#{Resolve.<name>}``)."""
    return {name: codebuild.BuildEnvironmentVariable(value=resolve.variable(name)) for name in names}


def _when_found(resolve: actions.CodeBuildAction) -> codepipeline.Conditions:
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
                        configuration={"Variable": resolve.variable("PACKAGE_FOUND"), "Value": "true", "Operator": "EQ"},
                    )
                ],
            )
        ]
    )


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

    :param names: physical names (:class:`DeployCdNames`).
    :param project: :param environment: :param model_name: what the deploy synthesizes (``-c env=<environment>``,
        the serving stack of ``model_name`` and the stage).
    :param registry: the model package group whose approvals trigger the pipeline and whose versions Resolve reads
        (its ``grant_read``): a :class:`~mlops_constructs.model_registry.ModelRegistry`, or a group shared by another
        account (:meth:`ModelRegistry.from_model_package_group_arn
        <mlops_constructs.model_registry.ModelRegistry.from_model_package_group_arn>`).
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
    :param connection_arn: :param repository: :param branch: CodeConnections source (not triggered on push).
    :param source_bucket: S3 source instead (e.g. ``ModelBuildCi.source_bucket``), object
        ``names.source_object_key``.
    :param smoke_sample_file: JSON instances (path in the source) for the smoke test. Default: rows generated from
        ``model_metadata.json`` in the approved package's model data, read from ``model_artifacts_bucket``.
    :param model_artifacts_bucket: :param model_artifacts_key_pattern: where the model data is. Default pattern
        ``*``; needed unless ``smoke_sample_file`` is given.
    :param bootstrap_qualifier: CDK bootstrap qualifier of the target accounts. Default: the app's
        ``@aws-cdk/core:bootstrapQualifier`` context, else ``hnb659fds``.
    :param bootstrap_roles: the bootstrap roles a Deploy build may assume. Default: deploy, file-publishing, lookup.
    :param storage: :param compute_type: :param build_network: as for :class:`ModelBuildCi` (every project of the
        pipeline: resolve, deploy and smoke).
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
        names: DeployCdNames,
        project: str,
        environment: str,
        model_name: str,
        registry: IModelRegistry,
        stages: Sequence[Union[str, DeployStage]],
        alarm_topic: sns.ITopic,
        alarm_topic_key: Optional[kms.IKey] = None,
        approval_topic: Optional[sns.ITopic] = None,
        approval_topic_key: Optional[kms.IKey] = None,
        endpoint: bool = True,
        lambda_mode: Optional[str] = "model",
        connection_arn: Optional[str] = None,
        repository: Optional[str] = None,
        branch: str = "main",
        source_bucket: Optional[s3.IBucket] = None,
        smoke_sample_file: Optional[str] = None,
        model_artifacts_bucket: Optional[s3.IBucket] = None,
        model_artifacts_key_pattern: str = "*",
        bootstrap_qualifier: Optional[str] = None,
        bootstrap_roles: Sequence[str] = DEFAULT_BOOTSTRAP_ROLES,
        storage: StorageOptions = StorageOptions(),
        rollout_timeout: Duration = Duration.minutes(30),
        deploy_timeout: Optional[Duration] = None,
        smoke_timeout: Duration = Duration.minutes(45),
        compute_type: codebuild.ComputeType = codebuild.ComputeType.SMALL,
        build_network: Optional[BuildNetwork] = None,
        buildspecs: Path,
    ) -> None:
        super().__init__(scope, id_)
        owner = "ModelDeployCd"
        _check_inputs(owner, connection_arn, repository, source_bucket, smoke_sample_file, model_artifacts_bucket)
        stack = Stack.of(self)
        self.stages = validate_stages(owner, stack, stages)
        _check_serving(owner, endpoint, lambda_mode)
        deploy_timeout = _deploy_timeout(owner, rollout_timeout, deploy_timeout)
        check_duration(owner, "smoke_timeout", smoke_timeout, 5, 480)

        self.names = names
        self.source_object_key = names.source_object_key
        store = PipelineStorage(self, options=storage, default_access_logs_prefix=f"{names.pipeline}-",
                                key_description=f"Model deploy CD of {names.label}: artifacts, build logs")
        self.key, self.artifact_bucket, self.log_group = store.key, store.artifact_bucket, store.log_group
        self.source = PipelineSource(
            owner=owner, connection_arn=connection_arn, repository=repository, branch=branch, bucket=source_bucket,
            object_key=names.source_object_key,
        )
        self._buildspecs, self._compute_type, self._build_network = buildspecs, compute_type, build_network

        self.registry = registry
        group_name = registry.model_package_group_name
        self.resolve_project = self._project(
            "Resolve",
            names.resolve_project,
            f"latest Approved version of model package group {group_name}",
            "model_resolve.yml",
            Duration.minutes(10),
            {
                "MODEL_PACKAGE_GROUP": registry.group_reference,
                "REQUIRE_BASELINE": "true" if endpoint else "false",
            },
        )
        registry.grant_read(self.resolve_project)

        qualifier = bootstrap_qualifier or self.node.try_get_context("@aws-cdk/core:bootstrapQualifier") or (
            compliance.DEFAULT_QUALIFIER
        )
        self.deploy_projects: dict[str, codebuild.PipelineProject] = {}
        self.smoke_projects: dict[str, codebuild.PipelineProject] = {}
        serving = {"ENDPOINT_ENABLED": "true" if endpoint else "false", "LAMBDA_MODE": lambda_mode or "none"}
        for s in self.stages:
            self.deploy_projects[s.name] = deploy = self._project(
                f"Deploy{s.name.capitalize()}", names.deploy_project(s.name),
                f"cdk deploy {names.serving_stack(s.name)}", "model_deploy.yml", deploy_timeout,
                {"PROJECT": project, "ENVIRONMENT": environment, "MODEL": model_name, "STAGE": s.name, **serving},
            )
            grant_assume_bootstrap_roles(deploy, s, qualifier, bootstrap_roles)
            self.smoke_projects[s.name] = self._smoke_project(
                s, smoke_timeout, smoke_sample_file, endpoint=endpoint, lambda_mode=lambda_mode
            )
            if smoke_sample_file is None and model_artifacts_bucket is not None:
                grant_read_model_data(self.smoke_projects[s.name], model_artifacts_bucket, model_artifacts_key_pattern)

        self._add_pipeline(model_name, approval_topic or alarm_topic)
        self.approval_rule = events.Rule(
            self,
            "OnApproved",
            description=f"A version of {group_name} was approved: run the deploy CD",
            event_pattern=approved_event_pattern(group_name),
            targets=[targets.CodePipeline(self.pipeline)],
        )
        self.failure_rule = notify_failures(self.pipeline, alarm_topic)
        notify_key = (approval_topic_key if approval_topic is not None else alarm_topic_key) or getattr(
            approval_topic or alarm_topic, "master_key", None
        )
        if notify_key is not None:
            # The approval is published to an SSE-KMS topic with the pipeline role (the role that runs the action).
            notify_key.grant(self.pipeline.role, "kms:Decrypt", "kms:GenerateDataKey*")

        acknowledge_build_role(self.resolve_project, self.artifact_bucket, writes_artifacts=False)
        for s in self.stages:
            acknowledge_build_role(self.deploy_projects[s.name], self.artifact_bucket, writes_artifacts=True)
            acknowledge_build_role(self.smoke_projects[s.name], self.artifact_bucket, writes_artifacts=False)
        acknowledge_pipeline_role(self.pipeline, self.artifact_bucket, self.source.object_arns())

    def _project(self, id_: str, name: str, description: str, spec: str, timeout: Duration,
                 env: Mapping[str, str]) -> codebuild.PipelineProject:
        return codebuild_project(
            self,
            id_,
            project_name=name,
            description=f"{self.names.label}: {description}",
            buildspec=self._buildspecs / spec,
            key=self.key,
            log_group=self.log_group,
            timeout=timeout,
            compute_type=self._compute_type,
            environment_variables=env,
            network=self._build_network,
        )

    def _smoke_project(self, s: DeployStage, timeout: Duration, sample_file: Optional[str], *, endpoint: bool,
                       lambda_mode: Optional[str]) -> codebuild.PipelineProject:
        serving_stack = self.names.serving_stack(s.name)
        smoke = self._project(
            f"Smoke{s.name.capitalize()}",
            self.names.smoke_project(s.name),
            f"smoke test {serving_stack}",
            "model_smoke.yml",
            timeout,
            {
                "SERVING_STACK": serving_stack,
                "STAGE": s.name,
                "STAGE_REGION": s.region or "",
                "SMOKE_ROLE_ARN": s.smoke_role_arn or "",
                "SAMPLE_FILE": sample_file or "",
            },
        )
        grant_smoke(
            smoke, s, serving_stack,
            endpoint_name=self.names.endpoint(s.name) if endpoint else None,
            function_name=self.names.function(s.name) if lambda_mode else None,
        )
        return smoke

    def _add_pipeline(self, model_name: str, notify_topic: sns.ITopic) -> None:
        """Source -> Resolve -> per stage (Approve-<last stage>) -> Deploy-<stage> -> Smoke-<stage>."""
        source_output = codepipeline.Artifact("Source")
        resolve = actions.CodeBuildAction(
            action_name="ResolveApprovedPackage",
            project=self.resolve_project,
            input=source_output,
            variables_namespace="Resolve",
        )
        stages = [
            # Approvals start this pipeline, not pushes.
            codebuild_stage("Source", self.source.action(source_output, trigger_on_push=False)),
            codebuild_stage("Resolve", resolve),
        ]
        for s in self.stages:
            if s is self.stages[-1]:
                approve = actions.ManualApprovalAction(
                    action_name=f"ApproveDeployTo{s.name.capitalize()}",
                    notification_topic=notify_topic,
                    additional_information=(
                        f"Deploy {resolve.variable('MODEL_PACKAGE_ARN')} (model {model_name}, commit "
                        f"{resolve.variable('GIT_COMMIT')}) to {s.name}?"
                    ),
                )
                stages.append(codebuild_stage(f"Approve-{s.name}", approve, _when_found(resolve)))
            targets_output = codepipeline.Artifact(f"Targets_{s.name}")
            deploy = actions.CodeBuildAction(
                action_name="CdkDeployServing", project=self.deploy_projects[s.name], input=source_output,
                outputs=[targets_output], environment_variables=_resolved(resolve, DEPLOY_VARIABLES),
            )
            smoke = actions.CodeBuildAction(
                action_name="SmokeTest", project=self.smoke_projects[s.name], input=source_output,
                extra_inputs=[targets_output], environment_variables=_resolved(resolve, ["MODEL_DATA_URL"]),
            )
            stages.append(codebuild_stage(f"Deploy-{s.name}", deploy, _when_found(resolve)))
            stages.append(codebuild_stage(f"Smoke-{s.name}", smoke, _when_found(resolve)))
        # A newer approval supersedes an older execution still waiting (e.g. at the manual approval).
        self.pipeline = v2_pipeline(self, pipeline_name=self.names.pipeline, artifact_bucket=self.artifact_bucket,
                                    stages=stages)
