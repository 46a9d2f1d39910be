"""Reusable MLOps building blocks for AWS CDK (Python). Each module is one construct; none reads the app's config.

Import what you need, e.g. ``from mlops_constructs.data_lake import DataLake``; the names below are also available
from the package itself, loaded on first use (so importing one construct does not load every dependency).
"""

from importlib import import_module

_EXPORTS = {
    "DataLake": "data_lake",
    "GlueEtl": "glue_etl",
    "ModelBuildPipeline": "model_build_pipeline",
    "ModelRegistry": "model_registry",
    "ModelBuildCi": "model_cicd",
    "ModelDeployCd": "model_cicd",
    "DeployStage": "model_cicd",
    "RealtimeEndpoint": "realtime_endpoint",
    "LambdaInference": "lambda_inference",
    "AlarmTopic": "monitoring",
    "FailureEvents": "monitoring",
    "ModelMonitoring": "monitoring",
    "PlatformOverview": "monitoring",
    "DataQualityMonitor": "monitoring",
    "DeepLearningWorkstation": "workstation",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f"mlops_constructs.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'mlops_constructs' has no attribute {name!r}")
