"""The platform's own self-mutating CDK Pipeline: source -> `make test` + `cdk synth` -> update itself -> one stage
per environment (``platform_pipeline.environments``), a manual approval before ``prod``.

Bootstrap trust (once per target account and region, before the first run)::

    # the pipeline account (where this stack lives)
    npx cdk bootstrap aws://<pipeline account>/<region>

    # every other account an environment deploys to (config/<env>.yaml ``account``)
    npx cdk bootstrap aws://<target account>/<region> \\
        --trust <pipeline account> --trust-for-lookup <pipeline account> \\
        --cloudformation-execution-policies arn:aws:iam::<target account>:policy/<platform deploy policy>

``--trust`` lets the pipeline account assume the target's ``cdk-<qualifier>-deploy-role`` and
``file-publishing-role`` (CloudFormation change sets and asset uploads); CloudFormation then runs with the
``--cloudformation-execution-policies`` policy in the target account, so make it a policy scoped to what the
platform's stacks create rather than AdministratorAccess (the bootstrap default). The artifacts bucket is encrypted
with a customer-managed key (``cross_account_keys``) whose policy the CDK extends to those trusted roles; an
environment without ``account`` deploys to the pipeline's own account.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Optional, Sequence

import aws_cdk as cdk
from aws_cdk import Duration, Stack, Stage
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_codepipeline as codepipeline
from aws_cdk import aws_codepipeline_actions as cp_actions
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import pipelines
from constructs import Construct

from mlops_constructs import compliance
from mlops_constructs.storage import access_logs_bucket, kms_bucket
from platform_config import PlatformConfig, load_config
from stacks.common import log_retention, removal_policy

ROOT = Path(__file__).resolve().parent.parent
SOURCE_OBJECT_KEY = "source/platform.zip"
APPROVAL_BEFORE = "prod"

BuildStacks = Callable[[Stage, PlatformConfig], None]
"""Creates one environment's stacks inside ``stage`` (the app builder's stack factory)."""


def _pinned(package: str) -> Optional[str]:
    try:
        version = json.loads((ROOT / "package.json").read_text())["devDependencies"][package]
    except (OSError, KeyError, ValueError):
        return None
    return version.lstrip("^~=") or None


def pinned_cdk_cli_version() -> Optional[str]:
    """The CDK CLI version package.json pins (the self-mutation step installs the same one)."""
    return _pinned("aws-cdk")


def pinned_cdk_assets_version() -> Optional[str]:
    """The cdk-assets version package.json pins next to the CLI (the asset publishing steps install it). Unpinned,
    CDK Pipelines installs ``cdk-assets@latest`` at every run (aws/aws-cdk#33491, #34484, #32744)."""
    return _pinned("cdk-assets")


class EnvironmentStage(Stage):
    """The stacks of one environment (``config/<name>.yaml``), deployed by the platform pipeline."""

    def __init__(self, scope: Construct, id_: str, *, config: PlatformConfig, build_stacks: BuildStacks,
                 **kwargs) -> None:
        super().__init__(scope, id_, **kwargs)
        self.config = config
        build_stacks(self, config)


class PlatformPipelineStack(Stack):
    """``aws_cdk.pipelines.CodePipeline`` (V2, self-mutating, cross-account keys) that deploys every environment.

    :param config: the environment the pipeline itself lives in (its source, log retention, removal policy,
        ``platform_pipeline.environments``).
    :param build_stacks: ``build_stacks(stage, env_config)`` creates an environment's stacks inside the stage.
    :param environment_configs: the configs of ``platform_pipeline.environments``, in that order. Default: loaded
        from ``config/<name>.yaml``.
    :param synth_compute_type: of the synth build, which runs the whole test suite. Default: MEDIUM.
    :param kwargs: stack props (``env``: the pipeline account and region; required for cross-account stages).
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        config: PlatformConfig,
        build_stacks: BuildStacks,
        environment_configs: Optional[Sequence[PlatformConfig]] = None,
        synth_compute_type: codebuild.ComputeType = codebuild.ComputeType.MEDIUM,
        **kwargs,
    ) -> None:
        kwargs.setdefault("description", f"{config.prefix()}: self-mutating CDK pipeline of the platform")
        super().__init__(scope, id_, **kwargs)
        names = list(config.platform_pipeline.environments)
        if not names:
            raise ValueError("PlatformPipelineStack needs at least one environment in platform_pipeline.environments")
        if len(set(names)) != len(names):
            raise ValueError(f"PlatformPipelineStack platform_pipeline.environments has duplicates: {names}")
        configs = list(environment_configs) if environment_configs is not None else [load_config(n) for n in names]
        if [c.environment for c in configs] != names:
            raise ValueError(
                f"PlatformPipelineStack environment_configs are for {[c.environment for c in configs]}, but "
                f"platform_pipeline.environments lists {names} (same names, same order)"
            )
        prefix = config.prefix()
        policy = removal_policy(config)

        # --- storage: key, access logs, artifacts, (S3 source) ------------------------------------------------------
        self.key = kms.Key(
            self,
            "Key",
            description=f"{prefix} platform pipeline: artifacts, source, build logs",
            enable_key_rotation=True,
            removal_policy=policy,
        )
        self.access_logs_bucket = access_logs_bucket(
            self, "AccessLogs", removal_policy=policy, purpose="the pipeline's buckets"
        )
        self.artifact_bucket = self._kms_bucket(
            "ArtifactsBucket",
            "artifacts/",
            policy,
            versioned=False,
            rule=s3.LifecycleRule(
                id="expire-pipeline-artifacts",
                expiration=Duration.days(30),
                abort_incomplete_multipart_upload_after=Duration.days(1),
            ),
        )
        self.log_group = logs.LogGroup(
            self, "BuildLogs", retention=log_retention(config), encryption_key=self.key, removal_policy=policy
        )
        self.key.add_to_resource_policy(
            cdk.aws_iam.PolicyStatement(
                sid="CloudWatchLogsOfThisAccount",
                actions=["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
                principals=[cdk.aws_iam.ServicePrincipal(f"logs.{cdk.Aws.REGION}.amazonaws.com")],
                resources=["*"],
                conditions={
                    "ArnLike": {
                        "kms:EncryptionContext:aws:logs:arn": (
                            f"arn:{cdk.Aws.PARTITION}:logs:{cdk.Aws.REGION}:{cdk.Aws.ACCOUNT_ID}:*"
                        )
                    }
                },
            )
        )

        src = config.source
        self.source_bucket: Optional[s3.Bucket] = None
        if src.connection_arn and src.repository:
            source = pipelines.CodePipelineSource.connection(
                src.repository, src.branch, connection_arn=src.connection_arn, trigger_on_push=True,
                action_name="Checkout",
            )
        else:
            self.source_bucket = self._kms_bucket(
                "SourceBucket",
                "source/",
                policy,
                versioned=True,  # the CodePipeline S3 source action reads a version
                rule=s3.LifecycleRule(
                    id="noncurrent-source-versions",
                    noncurrent_version_expiration=Duration.days(90),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                ),
            )
            self.source_bucket.node.default_child.add_property_override(
                "NotificationConfiguration.EventBridgeConfiguration.EventBridgeEnabled", True
            )
            source = pipelines.CodePipelineSource.s3(
                self.source_bucket, SOURCE_OBJECT_KEY, trigger=cp_actions.S3Trigger.NONE, action_name="SourceZip"
            )

        # --- the pipeline -------------------------------------------------------------------------------------------
        runtimes = codebuild.BuildSpec.from_object(
            {"phases": {"install": {"runtime-versions": {"python": "3.11", "nodejs": "22"}}}}
        )
        logging = codebuild.LoggingOptions(cloud_watch=codebuild.CloudWatchLoggingOptions(log_group=self.log_group))
        self.synth_step = pipelines.ShellStep(
            "Synth",
            input=source,
            env={
                "CDK_DISABLE_VERSION_CHECK": "true",
                "CDK_DISABLE_CLI_TELEMETRY": "true",
                "SAGEMAKER_TELEMETRY_OPT_OUT": "true",
                "JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION": "1",
            },
            commands=["make test PYTHON=python3", f"npx cdk synth --quiet -c env={config.environment}"],
            primary_output_directory="cdk.out",
        )
        self.pipeline = pipelines.CodePipeline(
            self,
            "Pipeline",
            pipeline_name=f"{prefix}-platform",
            pipeline_type=codepipeline.PipelineType.V2,
            synth=self.synth_step,
            self_mutation=True,
            cross_account_keys=True,
            artifact_bucket=self.artifact_bucket,
            cli_version=pinned_cdk_cli_version(),
            cdk_assets_cli_version=pinned_cdk_assets_version(),
            publish_assets_in_parallel=False,
            docker_enabled_for_synth=False,
            docker_enabled_for_self_mutation=False,
            code_build_defaults=pipelines.CodeBuildOptions(
                build_environment=codebuild.BuildEnvironment(
                    build_image=codebuild.LinuxBuildImage.STANDARD_7_0,
                    compute_type=codebuild.ComputeType.SMALL,
                    privileged=False,
                ),
                partial_build_spec=runtimes,
                logging=logging,
                timeout=Duration.minutes(60),
            ),
            synth_code_build_defaults=pipelines.CodeBuildOptions(
                build_environment=codebuild.BuildEnvironment(
                    build_image=codebuild.LinuxBuildImage.STANDARD_7_0,
                    compute_type=synth_compute_type,
                    privileged=False,
                ),
            ),
        )

        self.stages: dict[str, EnvironmentStage] = {}
        for env_config in configs:
            env = (
                cdk.Environment(account=env_config.account, region=env_config.region)
                if env_config.account or env_config.region
                else None
            )
            stage = EnvironmentStage(
                self, env_config.environment, config=env_config, build_stacks=build_stacks, env=env
            )
            pre = []
            if env_config.environment == APPROVAL_BEFORE:
                pre.append(
                    pipelines.ManualApprovalStep(
                        f"Promote-to-{APPROVAL_BEFORE}",
                        comment=f"Deploy the platform to {APPROVAL_BEFORE}: review the previous environments first.",
                    )
                )
            self.pipeline.add_stage(stage, pre=pre)
            self.stages[env_config.environment] = stage

        self.pipeline.build_pipeline()
        self.code_pipeline: codepipeline.Pipeline = self.pipeline.pipeline
        if self.source_bucket is not None:
            events.Rule(
                self,
                "OnSourceUpload",
                description=f"{SOURCE_OBJECT_KEY} uploaded: run the platform pipeline",
                event_pattern=events.EventPattern(
                    source=["aws.s3"],
                    detail_type=["Object Created"],
                    detail={
                        "bucket": {"name": [self.source_bucket.bucket_name]},
                        "object": {"key": [SOURCE_OBJECT_KEY]},
                    },
                ),
                targets=[targets.CodePipeline(self.code_pipeline)],
            )
        self._acknowledge()
        self._sub_configuration_role_arns()

    def _kms_bucket(self, id_: str, log_prefix: str, policy: cdk.RemovalPolicy, *, versioned: bool,
                    rule: s3.LifecycleRule) -> s3.Bucket:
        return kms_bucket(
            self,
            id_,
            key=self.key,
            access_logs_bucket=self.access_logs_bucket,
            access_logs_prefix=log_prefix,
            removal_policy=policy,
            lifecycle_rules=[rule],
            versioned=versioned,
        )

    def _sub_configuration_role_arns(self) -> None:
        """Render the CloudFormation actions' execution role ARNs as ``Fn::Sub`` instead of ``Fn::Join``.

        CDK Pipelines substitutes the partition into the synthesizer's ``arn:${AWS::Partition}:iam::...`` as a
        ``Fn::Join`` with an empty delimiter, which cfn-lint (E3703) reports as an error inside an action's
        ``Configuration``. Same value, the form cfn-lint accepts.
        """
        cfn = self.code_pipeline.node.default_child
        # Resolved L1 properties are keyed as in the L1 (camelCase), the override paths as in the template.
        for i, stage in enumerate(self.resolve(cfn.stages) or []):
            for j, action in enumerate(stage.get("actions", [])):
                arn = (action.get("configuration") or {}).get("RoleArn")
                if not (isinstance(arn, dict) and list(arn) == ["Fn::Join"]):
                    continue
                sep, parts = arn["Fn::Join"]
                rendered = ""
                for part in parts:
                    if isinstance(part, str):
                        rendered += part.replace("${", "${!")
                    elif isinstance(part, dict) and list(part) == ["Ref"] and part["Ref"].startswith("AWS::"):
                        rendered += "${" + part["Ref"] + "}"
                    else:
                        break
                else:
                    if sep == "":
                        cfn.add_property_override(f"Stages.{i}.Actions.{j}.Configuration.RoleArn", {"Fn::Sub": rendered})

    def _acknowledge(self) -> None:
        """What CDK Pipelines generates on purpose (roles of the pipeline, synth, self-mutation, asset publishing)."""
        pipeline = self.pipeline
        region, account = self.region, self.account
        compliance.acknowledge_wildcard_resources(
            pipeline,
            [self.artifact_bucket.arn_for_objects("*")],
            "CDK Pipelines' roles read and write objects of this pipeline's own artifacts bucket, which CodePipeline "
            "names per execution and action.",
        )
        compliance.acknowledge_wildcard_actions(
            pipeline,
            compliance.S3_READ_ACTIONS + compliance.S3_WRITE_ACTIONS + compliance.KMS_ACTIONS,
            "CDK grant actions limited to this pipeline's artifacts bucket and its KMS key (the resources in the "
            "same statements).",
        )
        for project in (pipeline.synth_project, pipeline.self_mutation_project):
            default_logs = f"arn:{cdk.Aws.PARTITION}:logs:{region}:{account}:log-group:/aws/codebuild/"
            compliance.acknowledge_wildcard_resources(
                project.role,
                [
                    f"{default_logs}{project.project_name}:*",
                    f"arn:{cdk.Aws.PARTITION}:codebuild:{region}:{account}:report-group/{project.project_name}-*",
                ],
                "CodeBuild's default log group and report groups of this one project, which CDK always grants; the "
                "build logs to the pipeline's KMS-encrypted log group with retention instead.",
            )
        mutation_role = pipeline.self_mutation_project.role
        compliance.acknowledge_wildcard_resources(
            mutation_role,
            [f"arn:*:iam::{account}:role/*"],
            "Self-mutation assumes only roles tagged aws-cdk:bootstrap-role (deploy, file- and image-publishing) in "
            "this account, by an iam:ResourceTag condition: the CDK bootstrap roles that `cdk deploy` uses.",
        )
        compliance.acknowledge(
            mutation_role,
            "AwsSolutions-IAM5[Resource::*]",
            "Self-mutation's cloudformation:DescribeStacks and s3:ListBucket (read only) on '*': the CDK CLI checks "
            "the pipeline stack and the bootstrap bucket, whose names it resolves at run time.",
        )
        assets = pipeline.node.try_find_child("Assets")
        file_role = assets.node.try_find_child("FileRole") if assets is not None else None
        if file_role is not None:
            compliance.acknowledge_wildcard_resources(
                file_role,
                [
                    f"arn:{cdk.Aws.PARTITION}:logs:{region}:{account}:log-group:/aws/codebuild/*",
                    f"arn:{cdk.Aws.PARTITION}:codebuild:{region}:{account}:report-group/*",
                ],
                "The asset publishing role serves every FileAsset project CDK Pipelines generates (one per asset), "
                "so CDK grants their default log and report groups by prefix; builds log to the pipeline's group.",
            )
            compliance.acknowledge(
                file_role,
                "AwsSolutions-IAM5[Resource::*]",
                "CDK Pipelines lets the asset role start and watch its own FileAsset CodeBuild projects "
                "(codebuild:StartBuild/BatchGetBuilds/StopBuild) on '*' to avoid a circular reference; its only "
                "other rights are assuming the file-publishing bootstrap roles.",
            )
