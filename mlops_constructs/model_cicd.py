"""Model CI/CD, kept for existing imports: the constructs live in :mod:`mlops_constructs.cicd`."""

from mlops_constructs.cicd import (  # noqa: F401
    BuildCiNames,
    DeployCdNames,
    DeployStage,
    ModelBuildCi,
    ModelDeployCd,
    deploy_build_timeout,
    failure_event_detail,
    load_buildspec,
)

__all__ = [
    "BuildCiNames",
    "DeployCdNames",
    "DeployStage",
    "ModelBuildCi",
    "ModelDeployCd",
    "deploy_build_timeout",
    "failure_event_detail",
    "load_buildspec",
]
