"""`shared` stack: the alarm topic, failure notifications, the platform overview and, on request, the SageMaker job
log groups, the platform's VPC (``network.mode: create``) and the environment's cost budget (``budget:``)."""

from __future__ import annotations

from typing import Optional

from aws_cdk import CfnOutput, Fn, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from mlops_constructs.budget import EnvironmentBudget
from mlops_constructs.glue_etl import GlueEtl
from mlops_constructs.network import PlatformNetwork
from mlops_constructs.permissions import BoundaryPolicy
from mlops_constructs.storage import allow_cloudwatch_logs, rotating_key
from mlops_constructs.monitoring import AlarmTopic, FailureEvents, ModelMonitoring, PlatformOverview
from platform_config import PlatformConfig
from stacks.common import environment_tags, log_retention, removal_policy, alarm_topic_export, alarm_topic_key_export

# Log groups SageMaker writes training and processing job logs to. They are ACCOUNT-WIDE (one per region, shared by
# every environment and team in the account) and named by the service: SageMaker creates them on the first job, and
# CloudFormation cannot adopt an existing one (the deploy fails with "already exists", as does a second environment
# in the account, or a redeploy after a stack delete left them retained). So the platform creates them only when the
# config opts in (`sagemaker_job_log_groups: true`).
SAGEMAKER_JOB_LOG_GROUPS = {
    "ProcessingJobLogs": "/aws/sagemaker/ProcessingJobs",
    "TrainingJobLogs": "/aws/sagemaker/TrainingJobs",
}


class SharedStack(Stack):
    """Resources every model stack of the environment uses.

    :param manage_sagemaker_log_groups: create the account-wide ``/aws/sagemaker/ProcessingJobs`` and
        ``/aws/sagemaker/TrainingJobs`` log groups with the config's retention and a KMS key. Default: the config's
        ``sagemaker_job_log_groups`` (False). Only for one environment per account and region, before any SageMaker
        job ran there (CloudFormation cannot adopt them; the deploy would fail).

    Failure notifications: the environment's SageMaker pipelines (every step, so every processing and training job
    they start), its Glue ETL job, and failed training jobs carrying the environment's tags (``project`` and
    ``environment``, contract C3). Processing job events carry no tags: processing jobs outside a pipeline (Model
    Monitor's) are notified by the serving stacks, matched by their role.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        config: PlatformConfig,
        manage_sagemaker_log_groups: Optional[bool] = None,
        **kwargs,
    ) -> None:
        super().__init__(
            scope, id_, description=f"{config.prefix()}: alarm topic, failure notifications, overview", **kwargs
        )
        prefix = config.prefix()
        self.alarm_topic = AlarmTopic(
            self,
            "AlarmTopic",
            emails=config.alarm_emails,
            topic_name=config.names.alarm_topic,
            display_name=f"{prefix} alarms",
            removal_policy=removal_policy(config),
        )
        self.glue_job_names = [config.names.etl_job(d.name) for d in config.datasets]
        self.pipeline_names = [config.names.model_resource(m.name) for m in config.models]
        self.failure_events = FailureEvents(
            self,
            "FailureEvents",
            topic=self.alarm_topic.topic,
            sagemaker_pipeline_names=self.pipeline_names,
            glue_job_names=self.glue_job_names,
            training_job_tags=environment_tags(config),
        )

        self.sagemaker_log_groups: dict[str, logs.LogGroup] = {}
        if manage_sagemaker_log_groups is None:
            manage_sagemaker_log_groups = config.sagemaker_job_log_groups
        if manage_sagemaker_log_groups:
            self.logs_key = rotating_key(
                self,
                "SageMakerLogsKey",
                description=f"{prefix}: SageMaker processing and training job logs",
                removal_policy=removal_policy(config),
            )
            allow_cloudwatch_logs(self.logs_key)
            for id_, name in SAGEMAKER_JOB_LOG_GROUPS.items():
                self.sagemaker_log_groups[name] = logs.LogGroup(
                    self,
                    id_,
                    log_group_name=name,
                    retention=log_retention(config),
                    encryption_key=self.logs_key,
                    removal_policy=removal_policy(config),
                )

        # Named alarms: the ETL job's (data stack), each model stack's (pipeline) and each serving stage's (inference
        # logs). The endpoint's and the function's own alarms have generated names: each stage's dashboard shows them.
        alarm_names = [GlueEtl.failed_tasks_alarm_name(name) for name in self.glue_job_names] + [
            name
            for m in config.models
            for name in ModelMonitoring.alarm_names(config.names.model_resource(m.name), lambda_=False)
        ] + [
            name
            for m in config.models
            for s in m.stages
            for name in ModelMonitoring.alarm_names(
                config.names.serving_resource(m.name, s.name), lambda_=m.lambda_.enabled, pipeline=False
            )
        ]
        self.overview = PlatformOverview(
            self,
            "Overview",
            dashboard_name=f"{prefix}-overview",
            alarm_names=alarm_names,
            glue_job_names=self.glue_job_names,
            pipeline_names=self.pipeline_names,
        )
        CfnOutput(self, "AlarmTopicArn", value=self.alarm_topic.topic_arn, export_name=alarm_topic_export(config))
        CfnOutput(self, "AlarmTopicKeyArn", value=self.alarm_topic.key.key_arn,
                  export_name=alarm_topic_key_export(config))

        #: The permissions boundary the platform defines (``iam.permissions_boundary: create``), exported by name for
        #: the environment's other stacks (``Names.boundary_export``); None otherwise. The app builder applies it.
        self.boundary: Optional[BoundaryPolicy] = None
        if config.iam.permissions_boundary == "create":
            self.boundary = BoundaryPolicy(self, "PermissionsBoundary", path=config.names.boundary_path,
                                           description=f"{prefix}: permissions boundary of the platform's roles")
            CfnOutput(self, "PermissionsBoundaryArn", value=self.boundary.policy.managed_policy_arn,
                      export_name=config.names.boundary_export)

        #: The platform's network when workloads run in a VPC (``network.mode`` create or existing); None otherwise.
        self.network: Optional[PlatformNetwork] = None
        if config.network.enabled:
            self.network = _network(self, config)

        #: The environment's cost budget (``budget:`` in the config), notifying the alarm topic; None otherwise.
        self.budget: Optional[EnvironmentBudget] = None
        if config.budget is not None:
            self.alarm_topic.allow_budgets()
            self.budget = EnvironmentBudget(
                self,
                "Budget",
                topic=self.alarm_topic.topic,
                monthly_limit_usd=config.budget.monthly_usd,
                thresholds_percent=config.budget.thresholds_percent,
                cost_allocation_tags=environment_tags(config) if config.budget.filter_by_tags else None,
                depends_on=[self.alarm_topic],
            )


def _network(stack: Stack, config: PlatformConfig) -> PlatformNetwork:
    """The VPC (created, or the landing zone's by ID), its endpoints and the workload security groups, exported by
    name for the other stacks (``Names.network_export``: subnet IDs and AZs comma-separated, in the same order;
    :class:`stacks.common.NetworkImports` reads them)."""
    settings = config.network
    common = dict(s3_prefix_list_id=settings.s3_prefix_list_id, log_retention=log_retention(config),
                  removal_policy=removal_policy(config))
    if settings.mode == "create":
        network = PlatformNetwork(
            stack, "Network", az_count=settings.az_count, cidr=settings.cidr,
            interface_endpoints=settings.interface_endpoints, flow_logs=settings.flow_logs, **common,
        )
    else:  # existing: the IDs from the config, no lookup
        vpc = ec2.Vpc.from_vpc_attributes(
            stack, "LandingZoneVpc", vpc_id=settings.vpc_id,
            availability_zones=[s.availability_zone for s in settings.subnets],
            private_subnet_ids=[s.id for s in settings.subnets],
        )
        network = PlatformNetwork(
            stack, "Network", vpc=vpc, subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            interface_endpoints=settings.interface_endpoints if settings.create_endpoints else (),
            https_egress=[ec2.Peer.ipv4(cidr) for cidr in settings.api_egress_cidrs],
            flow_logs=False, **common,
        )
    exports = {
        "vpc-id": network.vpc.vpc_id,
        "subnet-ids": Fn.join(",", network.subnet_ids),
        "availability-zones": Fn.join(",", network.availability_zones),
        "workload-sg-id": network.workload_security_group.security_group_id,
        "glue-sg-id": network.glue_security_group.security_group_id,
    }
    for attribute, value in exports.items():
        output_id = "Network" + "".join(part.capitalize() for part in attribute.split("-"))
        CfnOutput(stack, output_id, value=value, export_name=config.names.network_export(attribute))
    return network
