"""`model-<name>` stack: model package group, SageMaker pipeline and its triggers (CI/CD and monitoring join here)."""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from mlops_constructs.glue_etl import GlueEtl
from mlops_constructs.model_build_pipeline import ModelBuildPipeline
from platform_config import ModelConfig, PlatformConfig
from stacks.common import LakeReferences


def model_resource_name(config: PlatformConfig, model: ModelConfig) -> str:
    """Physical name of the model's pipeline and model package group: ``<project>-<env>-<model>``."""
    return f"{config.prefix()}-{model.name}"


class ModelStack(Stack):
    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        config: PlatformConfig,
        model: ModelConfig,
        lake_refs: LakeReferences,
        etl: GlueEtl,
        **kwargs,
    ) -> None:
        super().__init__(scope, id_, description=f"{config.prefix()}: model {model.name} build and registry", **kwargs)
        name = model_resource_name(config, model)
        buckets, key = lake_refs.import_into(self)
        self.model_package_group = sagemaker.CfnModelPackageGroup(
            self,
            "ModelPackageGroup",
            model_package_group_name=name,
            model_package_group_description=f"Versions of {model.name} ({model.problem_type}, {model.framework})",
        )
        etl_job_name = f"{config.prefix()}-etl-{config.data_lake.dataset}"  # physical name; no export needed
        glue_succeeded = events.EventPattern(
            source=["aws.glue"],
            detail_type=["Glue Job State Change"],
            detail={"jobName": [etl_job_name], "state": ["SUCCEEDED"]},
        )
        self.build = ModelBuildPipeline(
            self,
            "BuildPipeline",
            pipeline_name=name,
            model_name=model.name,
            model_package_group_name=name,
            target_column=model.target_column,
            problem_type=model.problem_type,
            framework=model.framework,
            metric=model.metric,
            threshold=model.threshold,
            positive_threshold=model.positive_threshold,
            hyperparameters=model.hyperparameters,
            processing_instance_type=model.processing_instance_type,
            training_instance_type=model.training_instance_type,
            input_bucket=buckets["curated"],
            input_prefix=etl.curated_prefix,
            artifacts_bucket=buckets["artifacts"],
            encryption_key=key,
            start_on_events=[glue_succeeded],
            schedule=model.pipeline_schedule,
        )
        self.build.pipeline.add_resource_dependency(self.model_package_group)
