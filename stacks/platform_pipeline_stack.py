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
from aws_cdk import Stack, Stage
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_codepipeline as codepipeline
from aws_cdk import aws_s3 as s3
from aws_cdk import pipelines
from constructs import Construct

from mlops_constructs.cicd import PipelineSource, PipelineStorage, PlatformPipeline, StorageOptions
from mlops_constructs.storage import access_logs_bucket
from platform_config import PlatformConfig, load_config
from platform_config.names import Names
from stacks.common import log_retention, removal_policy

ROOT = Path(__file__).resolve().parent.parent
SOURCE_OBJECT_KEY = Names.source_object("platform")
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


def _environment_configs(
    config: PlatformConfig, environment_configs: Optional[Sequence[PlatformConfig]]
) -> list[PlatformConfig]:
    """The configs of ``platform_pipeline.environments``, in that order (loaded unless given)."""
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
    return configs


class PlatformPipelineStack(Stack):
    """The platform's :class:`~mlops_constructs.cicd.PlatformPipeline` (V2, self-mutating, cross-account keys) with
    its storage and source, and one stage per environment.

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
        configs = _environment_configs(config, environment_configs)
        policy = removal_policy(config)

        self.access_logs_bucket = access_logs_bucket(
            self, "AccessLogs", removal_policy=policy, purpose="the pipeline's buckets"
        )
        storage = PipelineStorage(
            self,
            options=StorageOptions(
                access_logs_bucket=self.access_logs_bucket, removal_policy=policy, log_retention=log_retention(config)
            ),
            key_description=f"{config.prefix()} platform pipeline: artifacts, source, build logs",
            key_policy_sid="CloudWatchLogsOfThisAccount",
        )
        self.key, self.artifact_bucket, self.log_group = storage.key, storage.artifact_bucket, storage.log_group
        src = config.source
        with_connection = bool(src.connection_arn and src.repository)
        self.source_bucket: Optional[s3.Bucket] = None if with_connection else storage.add_source_bucket()
        self.source = PipelineSource(
            owner="PlatformPipelineStack",
            connection_arn=src.connection_arn if with_connection else None,
            repository=src.repository if with_connection else None,
            branch=src.branch,
            bucket=self.source_bucket,
            object_key=SOURCE_OBJECT_KEY,
        )

        self.pipeline = PlatformPipeline(
            self,
            "Pipeline",
            pipeline_name=config.names.platform_pipeline,
            source=self.source.cdk_pipeline_source(trigger_on_push=True),
            synth_commands=["make test PYTHON=python3", f"npx cdk synth --quiet -c env={config.environment}"],
            artifact_bucket=self.artifact_bucket,
            log_group=self.log_group,
            cli_version=pinned_cdk_cli_version(),
            cdk_assets_version=pinned_cdk_assets_version(),
            synth_compute_type=synth_compute_type,
        )
        self.synth_step = self.pipeline.synth_step
        self.stages: dict[str, EnvironmentStage] = {}
        for env_config in configs:
            self._add_environment(env_config, build_stacks)

        self.pipeline.build_pipeline()
        self.code_pipeline: codepipeline.Pipeline = self.pipeline.code_pipeline
        self.source.add_upload_trigger(self, self.code_pipeline, run="run the platform pipeline")

    def _add_environment(self, env_config: PlatformConfig, build_stacks: BuildStacks) -> None:
        """A stage deploying ``env_config``'s stacks to its account and region, after an approval before prod."""
        env = (
            cdk.Environment(account=env_config.account, region=env_config.region)
            if env_config.account or env_config.region
            else None
        )
        stage = EnvironmentStage(self, env_config.environment, config=env_config, build_stacks=build_stacks, env=env)
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
