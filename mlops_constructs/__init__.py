"""Reusable MLOps building blocks for AWS CDK (Python). Each module is one construct; none reads the app's config."""

from mlops_constructs.data_lake import DataLake
from mlops_constructs.glue_etl import GlueEtl

__all__ = ["DataLake", "GlueEtl"]
