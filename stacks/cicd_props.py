"""Config -> props of a model's build CI and deploy CD: physical names from the names module, storage options."""

from __future__ import annotations

from functools import partial

from mlops_constructs.cicd import BuildCiNames, DeployCdNames, StorageOptions
from platform_config import PlatformConfig
from platform_config.names import Names
from stacks.common import log_retention, removal_policy


def storage_options(config: PlatformConfig) -> StorageOptions:
    """The environment's removal policy and log retention for a pipeline's key, buckets and build logs."""
    return StorageOptions(removal_policy=removal_policy(config), log_retention=log_retention(config))


def build_ci_names(names: Names, model: str) -> BuildCiNames:
    return BuildCiNames(
        label=names.model_resource(model),
        pipeline=names.build_pipeline(model),
        source_object_key=Names.source_object(model),
    )


def deploy_cd_names(names: Names, model: str) -> DeployCdNames:
    return DeployCdNames(
        label=names.model_resource(model),
        pipeline=names.deploy_pipeline(model),
        resolve_project=names.resolve_project(model),
        deploy_project=partial(names.deploy_project, model),
        smoke_project=partial(names.smoke_project, model),
        serving_stack=partial(names.serving_stack, model),
        endpoint=partial(names.serving_resource, model),
        function=partial(names.serving_resource, model),
        source_object_key=Names.source_object(model),
    )
