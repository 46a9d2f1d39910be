"""Helpers shared by the stacks: removal policy, log retention and tags from the config."""

from __future__ import annotations

from aws_cdk import CfnOutput, Fn, RemovalPolicy, Stack, Tags
from aws_cdk import aws_logs as logs
from constructs import IConstruct

from platform_config import PlatformConfig
from platform_config.names import LAKE_ZONES, Names

# CloudWatch Logs' allowed retention periods, in days, and their RetentionDays members.
_RETENTION = {
    1: "ONE_DAY", 3: "THREE_DAYS", 5: "FIVE_DAYS", 7: "ONE_WEEK", 14: "TWO_WEEKS", 30: "ONE_MONTH",
    60: "TWO_MONTHS", 90: "THREE_MONTHS", 120: "FOUR_MONTHS", 150: "FIVE_MONTHS", 180: "SIX_MONTHS",
    365: "ONE_YEAR", 400: "THIRTEEN_MONTHS", 545: "EIGHTEEN_MONTHS", 731: "TWO_YEARS", 1827: "FIVE_YEARS",
    3653: "TEN_YEARS",
}


def removal_policy(config: PlatformConfig) -> RemovalPolicy:
    return RemovalPolicy.DESTROY if config.removal_policy == "destroy" else RemovalPolicy.RETAIN


def log_retention(config: PlatformConfig) -> logs.RetentionDays:
    """The config's retention (validated against CloudWatch's allowed values) as a RetentionDays member."""
    return getattr(logs.RetentionDays, _RETENTION[config.log_retention_days])


# Types aws-cdk-lib tags but CloudFormation's published schema (and so cfn-lint) does not accept Tags on yet.
UNTAGGABLE = ["AWS::CloudWatch::Dashboard", "AWS::ApplicationAutoScaling::ScalableTarget"]


def environment_tags(config: PlatformConfig) -> dict[str, str]:
    """The tags that identify this environment's resources: ``project`` and ``environment``. Every stack carries
    them (:func:`tag`); the build pipeline puts them on each SageMaker job it starts, and the shared stack's failure
    rules match jobs by them (contract C3)."""
    return {"project": config.project, "environment": config.environment}


def tag(scope: IConstruct, config: PlatformConfig, model: str | None = None) -> None:
    """Cost-allocation tags on every taggable resource below ``scope``."""
    tags = Tags.of(scope)
    values = {**environment_tags(config), "cost-center": config.tags.cost_center}
    if config.tags.owner:
        values["owner"] = config.tags.owner
    values["model"] = model or "shared"
    for key, value in values.items():
        tags.add(key, value, exclude_resource_types=UNTAGGABLE)


def alarm_topic_export(config: PlatformConfig) -> str:
    """Export name of the shared stack's alarm topic ARN."""
    return config.names.alarm_topic_export


def alarm_topic_key_export(config: PlatformConfig) -> str:
    """Export name of the KMS key ARN the alarm topic is encrypted with (publishers need kms:GenerateDataKey)."""
    return config.names.alarm_topic_key_export


class LakeReferences:
    """The data stack's buckets and key as explicit, named CloudFormation exports.

    Consumer stacks import them with :meth:`import_into`. Named exports (rather than CDK's generated ones) keep the
    resource strings in IAM policies stable and readable, so cdk-nag acknowledgements can name them exactly.
    """

    ZONES = LAKE_ZONES

    def __init__(self, producer: Stack, names: Names, buckets: dict, key) -> None:
        self.names = names
        self.producer = producer
        for zone in self.ZONES:
            CfnOutput(producer, f"{zone.capitalize()}BucketArn", value=buckets[zone].bucket_arn,
                      export_name=self.export_name(zone, "arn"))
            CfnOutput(producer, f"{zone.capitalize()}BucketName", value=buckets[zone].bucket_name,
                      export_name=self.export_name(zone, "name"))
        CfnOutput(producer, "LakeKeyArn", value=key.key_arn, export_name=self.export_name("key", "arn"))

    @classmethod
    def imported(cls, names: Names) -> "LakeReferences":
        """The same exports, for stacks of an App that does not hold the data stack (it is deployed elsewhere, e.g.
        by the platform pipeline's Stage): consumers import by name, with no stack dependency."""
        refs = cls.__new__(cls)
        refs.names = names
        refs.producer = None
        return refs

    def export_name(self, part: str, attribute: str) -> str:
        return self.names.lake_export(part, attribute)

    def import_into(self, consumer: Stack) -> tuple[dict, "kms.IKey"]:
        """(zone -> IBucket, IKey) in ``consumer``, resolved through Fn::ImportValue."""
        from aws_cdk import aws_kms as kms
        from aws_cdk import aws_s3 as s3

        if self.producer is not None:
            consumer.add_stack_dependency(self.producer)
        key = kms.Key.from_key_arn(consumer, "LakeKey", Fn.import_value(self.export_name("key", "arn")))
        buckets = {
            zone: s3.Bucket.from_bucket_attributes(
                consumer,
                f"Lake{zone.capitalize()}",
                bucket_arn=Fn.import_value(self.export_name(zone, "arn")),
                bucket_name=Fn.import_value(self.export_name(zone, "name")),
                encryption_key=key,
            )
            for zone in self.ZONES
        }
        return buckets, key
