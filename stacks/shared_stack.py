"""`shared` stack: the alarm topic, failure notifications, SageMaker job log groups and the platform overview."""

from __future__ import annotations

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from mlops_constructs.storage import allow_cloudwatch_logs
from mlops_constructs.monitoring import AlarmTopic, FailureEvents, ModelMonitoring, PlatformOverview
from platform_config import PlatformConfig
from stacks.common import log_retention, removal_policy

# Log groups SageMaker writes training and processing job logs to. They are ACCOUNT-WIDE (one per region) and named
# by the service: if one already exists in the account (any earlier job creates it) the deploy fails with "already
# exists". Then deploy with manage_sagemaker_log_groups=False and set their retention by hand.
SAGEMAKER_JOB_LOG_GROUPS = {
    "ProcessingJobLogs": "/aws/sagemaker/ProcessingJobs",
    "TrainingJobLogs": "/aws/sagemaker/TrainingJobs",
}


class SharedStack(Stack):
    """Resources every model stack of the environment uses.

    :param manage_sagemaker_log_groups: create the account-wide ``/aws/sagemaker/ProcessingJobs`` and
        ``/aws/sagemaker/TrainingJobs`` log groups with the config's retention. Default: True. Pass False when they
        already exist in the account (CloudFormation cannot adopt them; the deploy would fail).
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        config: PlatformConfig,
        manage_sagemaker_log_groups: bool = True,
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
            topic_name=f"{prefix}-alarms",
            display_name=f"{prefix} alarms",
            removal_policy=removal_policy(config),
        )
        self.glue_job_names = [f"{prefix}-etl-{config.data_lake.dataset}"]
        self.pipeline_names = [f"{prefix}-{m.name}" for m in config.models]  # == model_stack.model_resource_name
        self.failure_events = FailureEvents(
            self,
            "FailureEvents",
            topic=self.alarm_topic.topic,
            sagemaker_pipeline_names=self.pipeline_names,
            glue_job_names=self.glue_job_names,
        )

        self.sagemaker_log_groups: dict[str, logs.LogGroup] = {}
        if manage_sagemaker_log_groups:
            self.logs_key = kms.Key(
                self,
                "SageMakerLogsKey",
                description=f"{prefix}: SageMaker processing and training job logs",
                enable_key_rotation=True,
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

        # Alarm names of each model stack (Glue, pipeline) and each serving stage (endpoint, Lambda).
        alarm_names = [
            name
            for m in config.models
            for name in ModelMonitoring.alarm_names(f"{prefix}-{m.name}", endpoint=False, lambda_=False)
        ] + [
            name
            for m in config.models
            for s in m.stages
            for name in ModelMonitoring.alarm_names(
                f"{prefix}-{m.name}-{s.name}",
                endpoint=m.endpoint.enabled,
                lambda_=m.lambda_.enabled,
                glue=False,
                pipeline=False,
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
        CfnOutput(self, "AlarmTopicArn", value=self.alarm_topic.topic_arn, export_name=f"{prefix}-alarm-topic-arn")
