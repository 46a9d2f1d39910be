"""The SageMaker Model Monitor analyzer image: region -> account, as a CloudFormation mapping."""

from __future__ import annotations

from aws_cdk import Aws, CfnMapping
from constructs import Construct

MODEL_MONITOR_REPOSITORY = "sagemaker-model-monitor-analyzer"


def model_monitor_image_accounts() -> dict[str, str]:
    """region -> account of the SageMaker Model Monitor analyzer image, from the SageMaker SDK (offline)."""
    from mlops_constructs.sagemaker_definition import model_monitor_registries

    return dict(sorted(model_monitor_registries().items()))



def analyzer_image(scope: Construct, id_: str = "AnalyzerImageAccounts") -> tuple[str, str]:
    """(image URI, ECR repository ARN) of the Model Monitor analyzer in the deploying region, through a mapping named
    ``id_`` in ``scope`` (region -> account, from the SageMaker SDK)."""
    mapping = CfnMapping(
        scope,
        id_,
        mapping={region: {"account": acct} for region, acct in model_monitor_image_accounts().items()},
        lazy=False,
    )
    account = mapping.find_in_map(Aws.REGION, "account")
    image_uri = f"{account}.dkr.ecr.{Aws.REGION}.{Aws.URL_SUFFIX}/{MODEL_MONITOR_REPOSITORY}"
    repository_arn = f"arn:{Aws.PARTITION}:ecr:{Aws.REGION}:{account}:repository/{MODEL_MONITOR_REPOSITORY}"
    return image_uri, repository_arn
