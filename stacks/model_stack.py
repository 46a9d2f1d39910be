"""`model-<name>` stack: model package group, SageMaker pipeline and triggers, build CI, deploy CD, monitoring."""

from __future__ import annotations

from aws_cdk import Fn, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from constructs import Construct

from mlops_constructs.batch_inference import BatchInference
from mlops_constructs.cicd.common import BuildNetwork
from mlops_constructs.model_build_pipeline import ModelBuildPipeline
from mlops_constructs.model_cicd import DeployStage, ModelBuildCi, ModelDeployCd
from mlops_constructs.model_registry import ModelRegistry
from mlops_constructs.monitoring import ModelMonitoring
from platform_config import ModelConfig, PlatformConfig
from platform_config.names import Names
from stacks import code_locations as code
from stacks.cicd_props import build_ci_names, deploy_cd_names, storage_options
from stacks.common import (
    LakeReferences,
    NetworkImports,
    alarm_topic_export,
    alarm_topic_key_export,
    log_retention,
    removal_policy,
)
from stacks.serving_stack import rollout_budget


def model_resource_name(config: PlatformConfig, model: ModelConfig) -> str:
    """Physical name of the model's pipeline and model package group: ``<project>-<env>-<model>``."""
    return config.names.model_resource(model.name)


def etl_job_name(config: PlatformConfig, model: ModelConfig) -> str:
    """Physical name of the Glue job of the model's dataset (``<prefix>-etl-<dataset>``): its success starts the
    model's build pipeline, and only its."""
    return config.names.etl_job(config.dataset_of(model).name)


class ModelStack(Stack):
    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        config: PlatformConfig,
        model: ModelConfig,
        lake_refs: LakeReferences,
        shared: Stack,
        **kwargs,
    ) -> None:
        super().__init__(scope, id_, description=f"{config.prefix()}: model {model.name} build and registry", **kwargs)
        name = model_resource_name(config, model)
        buckets, key = lake_refs.import_into(self)
        self.add_stack_dependency(shared)
        alarm_topic = sns.Topic.from_topic_arn(self, "AlarmTopic", Fn.import_value(alarm_topic_export(config)))
        alarm_topic_key = kms.Key.from_key_arn(self, "AlarmTopicKey", Fn.import_value(alarm_topic_key_export(config)))

        self.registry = ModelRegistry(
            self,
            "Registry",
            model_package_group_name=name,
            description=f"Versions of {model.name} ({model.problem_type}, {model.framework})",
            trusted_accounts=config.trusted_accounts,
            removal_policy=removal_policy(config),
        )
        glue_succeeded = events.EventPattern(
            source=["aws.glue"],
            detail_type=["Glue Job State Change"],
            detail={"jobName": [etl_job_name(config, model)], "state": ["SUCCEEDED"]},
        )
        network = NetworkImports.of(self, config, shared)
        self.build = ModelBuildPipeline(
            self,
            "BuildPipeline",
            pipeline_name=name,
            model_package_group_name=name,
            project=config.project,
            environment=config.environment,
            spec=model.spec,
            input_bucket=buckets["curated"],
            input_prefix=Names.curated_prefix(config.dataset_of(model).name),
            artifacts_prefix=Names.model_artifacts_prefix(model.name),
            artifacts_bucket=buckets["artifacts"],
            encryption_key=key,
            start_on_events=[glue_succeeded],
            schedule=model.pipeline_schedule,
            definition_cache_dir=code.ROOT / "build" / "definition-cache",  # a warm synth skips the SageMaker SDK
            training_source_dir=model.training_dir,  # models[].training; None: the shipped train.py and serve.py
            **(network.workload_props() if network else {}),  # network.mode create/existing: every job in the VPC
        )
        self.build.pipeline.add_resource_dependency(self.registry.group)

        # Batch inference (models[].batch): the latest approved package scores the dataset's newest curated partition,
        # on a schedule and/or after the dataset's ETL; predictions land in the lake, readable in Athena.
        self.batch = None
        if model.batch.enabled:
            dataset = config.dataset_of(model)
            self.batch = BatchInference(
                self,
                "BatchInference",
                name=name,
                model_package_group_name=name,
                curated_bucket=buckets["curated"],
                curated_prefix=Names.curated_prefix(dataset.name),
                artifacts_bucket=buckets["artifacts"],
                model_artifacts_prefix=Names.model_artifacts_prefix(model.name),
                work_prefix=Names.batch_prefix(model.name),
                predictions_prefix=Names.predictions_prefix(model.name),
                encryption_key=key,
                database_name=config.names.glue_database,  # the data stack's database
                table_name=Names.predictions_table(model.name),
                dataset_schema=dataset.schema_document(),
                alarm_topic=alarm_topic,
                code_dir=code.BATCH_RESOLVE_CODE,
                scoring_script=code.BATCH_SCORING_SCRIPT,
                schedule=model.batch.schedule,
                start_on_events=[glue_succeeded] if model.batch.on_dataset_etl else [],
                instance_type=model.batch.instance_type,
                instance_count=model.batch.instance_count,
                max_payload_mb=model.batch.max_payload_mb,
                processing_instance_type=model.processing_instance_type,
                tags={"project": config.project, "environment": config.environment, "model": model.name},
                log_retention=log_retention(config),
                removal_policy=removal_policy(config),
                **(network.workload_props() if network else {}),
            )
            self.batch.node.add_dependency(self.registry.group)

        source = config.source
        # What the build CI and the deploy CD share: the source repository, the topic and the pipeline storage.
        common = dict(
            connection_arn=source.connection_arn,
            repository=source.repository,
            branch=source.branch,
            alarm_topic=alarm_topic,
            storage=storage_options(config),
            # network.codebuild_in_vpc (existing mode): the builds run in the landing zone's subnets, with its groups.
            build_network=BuildNetwork(vpc=network.vpc, subnets=network.vpc_subnets,
                                       security_groups=network.landing_zone_security_groups)
            if network is not None and config.network.codebuild_in_vpc else None,
        )
        self.build_ci = ModelBuildCi(
            self,
            "BuildCi",
            buildspec=code.MODEL_BUILD_BUILDSPEC,
            names=build_ci_names(config.names, model.name),
            sagemaker_pipeline=self.build,
            pipeline_stack_name=self.stack_name,
            **common,
        )
        # A model that serves nothing (no endpoint, no Lambda) has no serving stacks to deploy.
        self.deploy_cd = None
        if model.endpoint.enabled or model.lambda_.enabled:
            self.deploy_cd = ModelDeployCd(
                self,
                "DeployCd",
                buildspecs=code.BUILDSPECS,
                names=deploy_cd_names(config.names, model.name),
                project=config.project,
                environment=config.environment,
                model_name=model.name,
                registry=self.registry,
                stages=[DeployStage(s.name, s.account, s.region) for s in model.stages],
                alarm_topic_key=alarm_topic_key,
                endpoint=model.endpoint.enabled,
                lambda_mode=model.lambda_.mode if model.lambda_.enabled else None,
                source_bucket=None if source.connection_arn else self.build_ci.source_bucket,
                model_artifacts_bucket=buckets["artifacts"],
                model_artifacts_key_pattern=f"{Names.model_artifacts_prefix(model.name)}*",
                rollout_timeout=rollout_budget(model),
                **common,
            )
        self.monitoring = ModelMonitoring(
            self,
            "Monitoring",
            name=name,
            alarm_topic=alarm_topic,
            glue_job_name=etl_job_name(config, model),  # graphed; its alarm is the data stack's
            pipeline_name=name,
            pipeline_failures=model.alarms.pipeline_failures,
        )
