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


class NetworkImports:
    """The shared stack's network (``network.mode`` create or existing) in a consumer stack, through its named
    exports (``Names.network_export``): what the stack passes to its constructs' ``vpc`` / ``vpc_subnets`` /
    ``security_groups`` props.

    ``subnet-ids`` and ``availability-zones`` are comma-separated exports split back with their known length (the
    config's ``az_count``, or the number of ``subnets`` of an existing VPC), so the VPC and its subnets are typed
    ``IVpc`` / ``SubnetSelection`` without a lookup. The landing zone's own ``security_group_ids`` are added to every
    workload's groups.
    """

    def __init__(self, consumer: Stack, config: PlatformConfig, shared: Stack | None = None) -> None:
        from aws_cdk import aws_ec2 as ec2

        names, settings = config.names, config.network
        if not settings.enabled:
            raise ValueError("NetworkImports needs network.mode create or existing; use NetworkImports.of()")
        if shared is not None:
            consumer.add_stack_dependency(shared, "imports the network")
        count = settings.az_count if settings.mode == "create" else len(settings.subnets)

        def imported(attribute: str) -> str:
            return Fn.import_value(names.network_export(attribute))

        subnet_ids = Fn.split(",", imported("subnet-ids"), count)
        self.vpc: ec2.IVpc = ec2.Vpc.from_vpc_attributes(
            consumer, "PlatformVpc", vpc_id=imported("vpc-id"),
            availability_zones=Fn.split(",", imported("availability-zones"), count),
            isolated_subnet_ids=subnet_ids,
        )
        #: Every subnet of the platform network (one per AZ).
        self.vpc_subnets = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)
        landing_zone = [
            ec2.SecurityGroup.from_security_group_id(consumer, f"LandingZoneSecurityGroup{i + 1}", group_id,
                                                     allow_all_outbound=False, mutable=False)
            for i, group_id in enumerate(settings.security_group_ids)
        ]

        #: The landing zone's own groups (``network.security_group_ids``): the CodeBuild projects' with
        #: ``codebuild_in_vpc`` (they allow the builds' egress to the package registries).
        self.landing_zone_security_groups = landing_zone

        def group(id_: str, attribute: str) -> list:
            return [ec2.SecurityGroup.from_security_group_id(consumer, id_, imported(attribute),
                                                             allow_all_outbound=False, mutable=False), *landing_zone]

        #: SageMaker jobs, models and job definitions; Lambda functions.
        self.workload_security_groups = group("WorkloadSecurityGroup", "workload-sg-id")
        #: Glue jobs (the group admits itself, as Glue's workers require).
        self.glue_security_groups = group("GlueSecurityGroup", "glue-sg-id")

    @classmethod
    def of(cls, consumer: Stack, config: PlatformConfig, shared: Stack | None = None) -> "NetworkImports | None":
        """The imports, or None when the config runs workloads outside a VPC (``network.mode: none``)."""
        return cls(consumer, config, shared) if config.network.enabled else None

    def workload_props(self) -> dict:
        """``vpc``, ``vpc_subnets`` and ``security_groups`` for a SageMaker or Lambda construct."""
        return {"vpc": self.vpc, "vpc_subnets": self.vpc_subnets, "security_groups": self.workload_security_groups}

    def glue_props(self) -> dict:
        """``vpc``, ``vpc_subnets`` and ``security_groups`` for a Glue construct."""
        return {"vpc": self.vpc, "vpc_subnets": self.vpc_subnets, "security_groups": self.glue_security_groups}
