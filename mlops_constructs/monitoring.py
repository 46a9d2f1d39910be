"""Monitoring and logging: alarm topic, failure notifications, per-model dashboards and alarms, the platform overview,
inference log metrics and queries, and SageMaker Model Monitor data-quality schedules.

Every alarm notifies one KMS-encrypted SNS topic (:class:`AlarmTopic`). Count thresholds mean "alarm when the count
in one period reaches the value" (``>=``); latency and rate thresholds mean "alarm above the value" (``>``).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Mapping, Optional, Sequence

import cdk_monitoring_constructs as mon
import jsii
from aws_cdk import ArnFormat, Aspects, Aws, CfnMapping, Duration, Fn, IAspect, RemovalPolicy, Stack, Token
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as events_targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sagemaker as sagemaker
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from mlops_constructs import compliance

SAGEMAKER_ENDPOINT_NAMESPACE = "AWS/SageMaker"
SAGEMAKER_INSTANCE_NAMESPACE = "/aws/sagemaker/Endpoints"
SAGEMAKER_PIPELINE_NAMESPACE = "AWS/Sagemaker/ModelBuildingPipeline"
GLUE_NAMESPACE = "Glue"
MODEL_MONITOR_METRICS_NAMESPACE = "aws/sagemaker/Endpoints/data-metrics"
MODEL_MONITOR_REPOSITORY = "sagemaker-model-monitor-analyzer"
HOURLY = "cron(0 * ? * * *)"

# Suffixes of the alarm names ModelMonitoring creates: "<name>-<suffix>" (see ModelMonitoring.alarm_names).
_ENDPOINT_ALARMS = ("5xx-rate", "model-latency-p99")
_LAMBDA_ALARMS = ("lambda-errors", "lambda-throttles", "lambda-duration-p99", "inference-error-logs")
_GLUE_ALARMS = ("glue-failed-tasks",)
_PIPELINE_ALARMS = ("pipeline-failures",)


# What Model Monitor reports when an hourly execution finds no captured requests (an endpoint without traffic): the
# execution is "Failed" with this reason. Not an incident: filtered out of failure notifications.
NO_DATA_FAILURE_REASON = "Job inputs had no data"


def model_monitor_image_accounts() -> dict[str, str]:
    """region -> account of the SageMaker Model Monitor analyzer image, from the SageMaker SDK (offline)."""
    from mlops_constructs.sagemaker_definition import model_monitor_registries

    return dict(sorted(model_monitor_registries().items()))


# ----------------------------------------------------------------------------------------------------------------------
# Alarm topic
# ----------------------------------------------------------------------------------------------------------------------
class AlarmTopic(Construct):
    """SNS topic every alarm and failure notification goes to, encrypted with its own rotating KMS key.

    The key policy lets CloudWatch alarms and EventBridge rules use the key; the topic policy lets them publish from
    this account only, and refuses non-TLS requests.

    :param emails: email addresses subscribed to the topic (each must confirm the subscription). Default: none.
    :param topic_name: physical name. Default: generated.
    :param display_name: sender name of the emails. Default: ``topic_name`` or "MLOps alarms".
    :param removal_policy: of the key. Default: RETAIN.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        emails: Sequence[str] = (),
        topic_name: Optional[str] = None,
        display_name: Optional[str] = None,
        removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
    ) -> None:
        super().__init__(scope, id_)
        self.key = kms.Key(
            self,
            "Key",
            description=f"Alarm notifications {topic_name or ''}".strip(),
            enable_key_rotation=True,
            removal_policy=removal_policy,
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AlarmPublishers",
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                principals=[
                    iam.ServicePrincipal("cloudwatch.amazonaws.com"),
                    iam.ServicePrincipal("events.amazonaws.com"),
                ],
                resources=["*"],
            )
        )
        self.topic = sns.Topic(
            self,
            "Topic",
            topic_name=topic_name,
            display_name=display_name or topic_name or "MLOps alarms",
            master_key=self.key,
            enforce_ssl=True,
        )
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AlarmPublishers",
                actions=["sns:Publish"],
                principals=[
                    iam.ServicePrincipal("cloudwatch.amazonaws.com"),
                    iam.ServicePrincipal("events.amazonaws.com"),
                ],
                resources=[self.topic.topic_arn],
                conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}},
            )
        )
        for email in emails:
            self.topic.add_subscription(subscriptions.EmailSubscription(email))
        self.alarm_action = cloudwatch_actions.SnsAction(self.topic)

    @property
    def topic_arn(self) -> str:
        return self.topic.topic_arn


# ----------------------------------------------------------------------------------------------------------------------
# Failure notifications (EventBridge)
# ----------------------------------------------------------------------------------------------------------------------
def _field(path: str) -> str:
    return events.EventField.from_path(path)


class FailureEvents(Construct):
    """EventBridge rules that turn failure events into one readable sentence on the alarm topic.

    :param topic: destination (an :class:`AlarmTopic`'s ``topic``).
    :param sagemaker_pipeline_names: SageMaker pipelines whose failed executions notify. Default: none.
    :param sagemaker_pipeline_name_prefix: also notify for every pipeline whose name starts with this. Default: none.
    :param glue_job_names: Glue jobs whose FAILED, TIMEOUT or ERROR runs notify. Default: none.
    :param training_job_tags: notify failed SageMaker training jobs that carry ALL these tags (key -> value). A
        training job state change event carries the job's tags as a key -> value map in ``detail.Tags``; matching them
        keeps other teams' and other environments' jobs in the account out. Default: none (no training job rule).
    :param processing_job_role_arns: notify failed SageMaker processing jobs run with one of these roles
        (``detail.RoleArn``). The processing job state change event carries no tags, so the role is how a rule tells
        its own jobs (e.g. a :class:`DataQualityMonitor`'s) from the account's others. Default: none (no rule).
    :param ignored_failure_reason: failures whose ``FailureReason`` starts with this do not notify. Default: Model
        Monitor's "no data" (an hourly monitoring job on an endpoint without traffic). None: every failure notifies.
    :param codepipeline_names: CodePipeline pipelines whose FAILED executions notify. Default: none.

    Processing and training jobs a SageMaker pipeline starts are also covered by the pipeline execution rule.
    ``rules`` maps a kind (``sagemaker_pipeline``, ``glue_job``, ``training_job``, ``processing_job``,
    ``codepipeline``) to its rule; kinds without anything to watch have no rule.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        topic: sns.ITopic,
        sagemaker_pipeline_names: Sequence[str] = (),
        sagemaker_pipeline_name_prefix: Optional[str] = None,
        glue_job_names: Sequence[str] = (),
        training_job_tags: Optional[Mapping[str, str]] = None,
        processing_job_role_arns: Sequence[str] = (),
        ignored_failure_reason: Optional[str] = NO_DATA_FAILURE_REASON,
        codepipeline_names: Sequence[str] = (),
    ) -> None:
        super().__init__(scope, id_)
        self.topic = topic
        self.rules: dict[str, events.Rule] = {}
        stack = Stack.of(self)

        def pipeline_arn(name: str) -> str:
            # SageMaker lower-cases pipeline names in ARNs (and so in the events).
            return stack.format_arn(
                service="sagemaker",
                resource="pipeline",
                resource_name=name if Token.is_unresolved(name) else name.lower(),
            )

        arns: list = [pipeline_arn(n) for n in sagemaker_pipeline_names]
        if sagemaker_pipeline_name_prefix:
            arns.append({"prefix": pipeline_arn(sagemaker_pipeline_name_prefix)})
        if arns:
            self._rule(
                "sagemaker_pipeline",
                "SageMakerPipelineFailed",
                "Failed SageMaker model-building pipeline executions",
                events.EventPattern(
                    source=["aws.sagemaker"],
                    detail_type=["SageMaker Model Building Pipeline Execution Status Change"],
                    detail={"currentPipelineExecutionStatus": ["Failed"], "pipelineArn": arns},
                ),
                f"SageMaker pipeline execution {_field('$.detail.pipelineExecutionDisplayName')} "
                f"({_field('$.detail.pipelineExecutionArn')}) of {_field('$.detail.pipelineArn')} "
                f"failed at {_field('$.time')} in account {_field('$.account')}, region {_field('$.region')}. "
                "Open the execution in SageMaker Studio to see the failed step and its logs.",
            )
        if glue_job_names:
            self._rule(
                "glue_job",
                "GlueJobFailed",
                "Glue job runs that failed, timed out or errored",
                events.EventPattern(
                    source=["aws.glue"],
                    detail_type=["Glue Job State Change"],
                    detail={"jobName": list(glue_job_names), "state": ["FAILED", "TIMEOUT", "ERROR"]},
                ),
                f"Glue job {_field('$.detail.jobName')} run {_field('$.detail.jobRunId')} ended in state "
                f"{_field('$.detail.state')} at {_field('$.time')} (account {_field('$.account')}, region "
                f"{_field('$.region')}): {_field('$.detail.message')}",
            )
        reason_filter = (
            {"FailureReason": [{"anything-but": {"prefix": ignored_failure_reason}}]} if ignored_failure_reason else {}
        )
        if training_job_tags:
            self._rule(
                "training_job",
                "TrainingJobFailed",
                "Failed SageMaker training jobs of this environment (by tags)",
                events.EventPattern(
                    source=["aws.sagemaker"],
                    detail_type=["SageMaker Training Job State Change"],
                    detail={
                        "TrainingJobStatus": ["Failed"],
                        "Tags": {key: [value] for key, value in training_job_tags.items()},
                        **reason_filter,
                    },
                ),
                f"SageMaker training job {_field('$.detail.TrainingJobName')} failed at {_field('$.time')} "
                f"(account {_field('$.account')}, region {_field('$.region')}): {_field('$.detail.FailureReason')}. "
                "Logs: /aws/sagemaker/TrainingJobs.",
            )
        if processing_job_role_arns:
            self._rule(
                "processing_job",
                "ProcessingJobFailed",
                "Failed SageMaker processing jobs run with this environment's roles",
                events.EventPattern(
                    source=["aws.sagemaker"],
                    detail_type=["SageMaker Processing Job State Change"],
                    detail={
                        "ProcessingJobStatus": ["Failed"],
                        "RoleArn": list(processing_job_role_arns),
                        **reason_filter,
                    },
                ),
                f"SageMaker processing job {_field('$.detail.ProcessingJobName')} failed at {_field('$.time')} "
                f"(account {_field('$.account')}, region {_field('$.region')}): {_field('$.detail.FailureReason')}. "
                "Logs: /aws/sagemaker/ProcessingJobs.",
            )
        if codepipeline_names:
            self._rule(
                "codepipeline",
                "CodePipelineFailed",
                "Failed CodePipeline executions",
                events.EventPattern(
                    source=["aws.codepipeline"],
                    detail_type=["CodePipeline Pipeline Execution State Change"],
                    detail={"state": ["FAILED"], "pipeline": list(codepipeline_names)},
                ),
                f"CodePipeline {_field('$.detail.pipeline')} execution {_field('$.detail.execution-id')} failed at "
                f"{_field('$.time')} (account {_field('$.account')}, region {_field('$.region')}).",
            )

    def _rule(self, kind: str, id_: str, description: str, pattern: events.EventPattern, sentence: str) -> None:
        rule = events.Rule(self, id_, description=description, event_pattern=pattern)
        rule.add_target(
            events_targets.SnsTopic(self.topic, message=events.RuleTargetInput.from_text(sentence))
        )
        self.rules[kind] = rule


# ----------------------------------------------------------------------------------------------------------------------
# Per-model dashboard, alarms and inference logs
# ----------------------------------------------------------------------------------------------------------------------
class ModelMonitoring(Construct):
    """Dashboard, alarms and log analytics of one model (cdk-monitoring-constructs ``MonitoringFacade``).

    Segments (each only when its resource is given): SageMaker endpoint (custom: invocations, model/overhead latency,
    4xx/5xx errors, instance CPU/memory/disk per variant), inference Lambda function (facade), inference log errors
    (metric filter), Glue ETL job (facade), SageMaker pipeline executions (custom).

    Alarms, named ``<name>-<suffix>`` (:meth:`alarm_names`), all notify ``alarm_topic``:

    * ``<variant>-5xx-rate``: 100 * Invocation5XXErrors / Invocations > ``endpoint_5xx_rate_percent``.
    * ``<variant>-model-latency-p99``: ModelLatency p99 > ``model_latency_p99_ms`` (CloudWatch reports ModelLatency in
      microseconds: the threshold is converted).
    * ``lambda-errors`` / ``lambda-throttles``: Errors / Throttles sum >= ``lambda_errors`` / ``lambda_throttles``.
    * ``lambda-duration-p99``: Duration p99 > ``lambda_duration_p99_ms``.
    * ``inference-error-logs``: ERROR log lines >= ``lambda_errors``. The inference handler never raises (it answers
      500 instead), so Lambda's Errors metric misses request failures; the ERROR lines catch them.
    * ``glue-failed-tasks``: ``glue.driver.aggregate.numFailedTasks`` >= ``glue_job_failures``. Glue publishes no
      "job run failed" metric; failed Spark tasks are the earliest metric signal of a failing run. Runs that fail
      before Spark starts, time out or error are notified by :class:`FailureEvents` (EventBridge job state).
    * ``pipeline-failures``: ExecutionFailed sum >= ``pipeline_failures``.

    Threshold props are named like the config's ``AlarmThresholds`` fields, so a stack can pass
    ``**model.alarms.model_dump()``.

    :param name: dashboard name and alarm name prefix, e.g. ``<project>-<env>-<model>``.
    :param alarm_topic: topic notified by every alarm.
    :param endpoint_name: SageMaker endpoint. Default: no endpoint segment.
    :param variant_names: production variants of the endpoint. Default: ``("AllTraffic",)``.
    :param inference_function: inference Lambda function. Default: no Lambda segment.
    :param inference_log_group: its log group (metric filter, queries). Default: ``inference_function.log_group``.
    :param glue_job_name: ETL job. Default: no Glue segment.
    :param pipeline_name: SageMaker model-building pipeline. Default: no pipeline segment.
    :param period: metric period of alarms and graphs. Default: 5 minutes.
    :param evaluation_periods: periods evaluated by latency and rate alarms. Default: 3 (count alarms: 1).
    :param notify_on_ok: also notify when an alarm returns to OK. Default: False.
    :param log_metric_namespace: namespace of the ERROR-lines metric. Default: ``MLOps/Inference``.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        name: str,
        alarm_topic: sns.ITopic,
        endpoint_name: Optional[str] = None,
        variant_names: Sequence[str] = ("AllTraffic",),
        inference_function: Optional[lambda_.IFunction] = None,
        inference_log_group: Optional[logs.ILogGroup] = None,
        glue_job_name: Optional[str] = None,
        pipeline_name: Optional[str] = None,
        endpoint_5xx_rate_percent: float = 1.0,
        model_latency_p99_ms: float = 500.0,
        lambda_errors: int = 5,
        lambda_throttles: int = 1,
        lambda_duration_p99_ms: float = 1000.0,
        glue_job_failures: int = 1,
        pipeline_failures: int = 1,
        period: Duration = Duration.minutes(5),
        evaluation_periods: int = 3,
        notify_on_ok: bool = False,
        log_metric_namespace: str = "MLOps/Inference",
    ) -> None:
        super().__init__(scope, id_)
        if inference_log_group is not None and inference_function is None:
            raise ValueError("ModelMonitoring inference_log_group needs inference_function")
        if endpoint_name is not None and not variant_names:
            raise ValueError("ModelMonitoring endpoint_name needs at least one variant name")
        self.name = name
        self.alarm_topic = alarm_topic
        self.period = period
        action = mon.SnsAlarmActionStrategy(
            on_alarm_topic=alarm_topic, on_ok_topic=alarm_topic if notify_on_ok else None
        )
        self.facade = mon.MonitoringFacade(
            self,
            "Facade",
            alarm_factory_defaults=mon.AlarmFactoryDefaults(
                actions_enabled=True, alarm_name_prefix=name, action=action, datapoints_to_alarm=1
            ),
            metric_factory_defaults=mon.MetricFactoryDefaults(period=period),
            dashboard_factory=mon.DefaultDashboardFactory(
                self,
                "Dashboards",
                dashboard_name_prefix=name,
                create_dashboard=True,
                create_summary_dashboard=False,
                create_alarm_dashboard=False,
            ),
        )
        self.facade.add_large_header(f"Model {name}")
        count_alarm = dict(
            comparison_operator_override=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data_override=cloudwatch.TreatMissingData.NOT_BREACHING,
            evaluation_periods=1,
            datapoints_to_alarm=1,
        )
        slow_alarm = dict(evaluation_periods=evaluation_periods, datapoints_to_alarm=min(2, evaluation_periods))

        # --- SageMaker endpoint ---------------------------------------------------------------------------------
        if endpoint_name is not None:
            self._endpoint_segment(endpoint_name, list(variant_names), endpoint_5xx_rate_percent,
                                   model_latency_p99_ms, slow_alarm)

        # --- inference Lambda function and its logs -------------------------------------------------------------
        self.error_metric_filter: Optional[logs.MetricFilter] = None
        self.query_definitions: dict[str, logs.QueryDefinition] = {}
        if inference_function is not None:
            self.facade.monitor_lambda_function(
                lambda_function=inference_function,
                human_readable_name=f"Inference function of {name}",
                alarm_friendly_name="inference",
                add_fault_count_alarm={
                    "Critical": mon.ErrorCountThreshold(
                        max_error_count=lambda_errors, alarm_name_override=f"{name}-lambda-errors", **count_alarm
                    )
                },
                add_throttles_count_alarm={
                    "Critical": mon.ErrorCountThreshold(
                        max_error_count=lambda_throttles, alarm_name_override=f"{name}-lambda-throttles", **count_alarm
                    )
                },
                add_latency_p99_alarm={
                    "Critical": mon.LatencyThreshold(
                        max_latency=Duration.millis(lambda_duration_p99_ms),
                        alarm_name_override=f"{name}-lambda-duration-p99",
                        **slow_alarm,
                    )
                },
            )
            log_group = inference_log_group or inference_function.log_group
            self._inference_logs(log_group, log_metric_namespace, lambda_errors, count_alarm)

        # --- Glue ETL job --------------------------------------------------------------------------------------
        if glue_job_name is not None:
            self.facade.monitor_glue_job(
                job_name=glue_job_name,
                human_readable_name=f"Glue job {glue_job_name}",
                alarm_friendly_name="glue",
                add_failed_task_count_alarm={
                    "Critical": mon.ErrorCountThreshold(
                        max_error_count=glue_job_failures, alarm_name_override=f"{name}-glue-failed-tasks",
                        **count_alarm,
                    )
                },
            )

        # --- SageMaker model-building pipeline ------------------------------------------------------------------
        if pipeline_name is not None:
            def execution(metric: str) -> cloudwatch.Metric:
                return cloudwatch.Metric(
                    namespace=SAGEMAKER_PIPELINE_NAMESPACE,
                    metric_name=metric,
                    dimensions_map={"PipelineName": pipeline_name},
                    statistic="Sum",
                    period=period,
                    label=metric.replace("Execution", ""),
                )

            self.facade.monitor_custom(
                human_readable_name=f"SageMaker pipeline {pipeline_name}",
                alarm_friendly_name="pipeline",
                metric_groups=[
                    mon.CustomMetricGroup(
                        title="Executions",
                        metrics=[
                            execution("ExecutionStarted"),
                            execution("ExecutionSucceeded"),
                            mon.CustomMetricWithAlarm(
                                metric=execution("ExecutionFailed"),
                                alarm_friendly_name="pipeline-failures",
                                add_alarm={
                                    "Critical": mon.CustomThreshold(
                                        threshold=pipeline_failures,
                                        comparison_operator=count_alarm["comparison_operator_override"],
                                        alarm_name_override=f"{name}-pipeline-failures",
                                        treat_missing_data_override=cloudwatch.TreatMissingData.NOT_BREACHING,
                                        evaluation_periods=1,
                                        datapoints_to_alarm=1,
                                    )
                                },
                            ),
                            execution("ExecutionStopped"),
                        ],
                    )
                ],
            )

        self.dashboard: cloudwatch.Dashboard = self.facade.created_dashboard()
        self.alarms: list[cloudwatch.Alarm] = [a.alarm for a in self.facade.created_alarms()]

    @staticmethod
    def alarm_names(
        name: str,
        *,
        endpoint: bool = True,
        variant_names: Sequence[str] = ("AllTraffic",),
        lambda_: bool = True,
        glue: bool = True,
        pipeline: bool = True,
    ) -> list[str]:
        """Names of the alarms a ModelMonitoring with these parts creates (for dashboards in other stacks)."""
        names: list[str] = []
        if endpoint:
            names += [f"{name}-{v}-{s}" for v in variant_names for s in _ENDPOINT_ALARMS]
        if lambda_:
            names += [f"{name}-{s}" for s in _LAMBDA_ALARMS]
        if glue:
            names += [f"{name}-{s}" for s in _GLUE_ALARMS]
        if pipeline:
            names += [f"{name}-{s}" for s in _PIPELINE_ALARMS]
        return names

    def _endpoint_segment(self, endpoint_name, variants, rate_percent, latency_ms, slow_alarm) -> None:
        period = self.period

        def metric(metric_name: str, variant: str, statistic: str, label: str, namespace=SAGEMAKER_ENDPOINT_NAMESPACE):
            return cloudwatch.Metric(
                namespace=namespace,
                metric_name=metric_name,
                dimensions_map={"EndpointName": endpoint_name, "VariantName": variant},
                statistic=statistic,
                period=period,
                label=label if len(variants) == 1 else f"{label} ({variant})",
            )

        invocations, latency, errors, instance = [], [], [], []
        for v in variants:
            invocations.append(metric("Invocations", v, "Sum", "Invocations"))
            invocations.append(metric("InvocationsPerInstance", v, "Sum", "Invocations per instance"))
            latency.append(metric("ModelLatency", v, "p50", "ModelLatency p50"))
            latency.append(
                mon.CustomMetricWithAlarm(
                    metric=metric("ModelLatency", v, "p99", "ModelLatency p99"),
                    alarm_friendly_name=f"{v}-model-latency-p99",
                    add_alarm={
                        "Critical": mon.CustomThreshold(
                            threshold=latency_ms * 1000,  # ModelLatency is in microseconds
                            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                            alarm_name_override=f"{self.name}-{v}-model-latency-p99",
                            additional_description=f"p99 model latency above {latency_ms} ms",
                            treat_missing_data_override=cloudwatch.TreatMissingData.NOT_BREACHING,
                            **slow_alarm,
                        )
                    },
                )
            )
            latency.append(metric("OverheadLatency", v, "p99", "OverheadLatency p99"))
            errors.append(metric("Invocation4XXErrors", v, "Sum", "4XX errors"))
            errors.append(metric("Invocation5XXErrors", v, "Sum", "5XX errors"))
            rate = cloudwatch.MathExpression(
                expression="IF(invocations > 0, 100 * errors5xx / invocations, 0)",
                using_metrics={
                    "errors5xx": metric("Invocation5XXErrors", v, "Sum", "5XX errors"),
                    "invocations": metric("Invocations", v, "Sum", "Invocations"),
                },
                label=f"5XX rate % ({v})",
                period=period,
            )
            errors.append(
                mon.CustomMetricWithAlarm(
                    metric=rate,
                    alarm_friendly_name=f"{v}-5xx-rate",
                    add_alarm={
                        "Critical": mon.CustomThreshold(
                            threshold=rate_percent,
                            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                            alarm_name_override=f"{self.name}-{v}-5xx-rate",
                            additional_description=f"more than {rate_percent}% of invocations answered 5XX",
                            treat_missing_data_override=cloudwatch.TreatMissingData.NOT_BREACHING,
                            **slow_alarm,
                        )
                    },
                )
            )
            for m in ("CPUUtilization", "MemoryUtilization", "DiskUtilization"):
                instance.append(metric(m, v, "Average", m, namespace=SAGEMAKER_INSTANCE_NAMESPACE))

        self.facade.monitor_custom(
            human_readable_name=f"SageMaker endpoint {endpoint_name}" if not Token.is_unresolved(endpoint_name)
            else "SageMaker endpoint",
            alarm_friendly_name="endpoint",
            metric_groups=[
                mon.CustomMetricGroup(title="Invocations", metrics=invocations),
                mon.CustomMetricGroup(title="Latency (microseconds)", metrics=latency),
                mon.CustomMetricGroup(title="Errors", metrics=errors),
                mon.CustomMetricGroup(
                    title="Instance utilization (%)",
                    metrics=instance,
                    graph_widget_axis=cloudwatch.YAxisProps(min=0),
                ),
            ],
        )

    def _inference_logs(self, log_group: logs.ILogGroup, namespace: str, lambda_errors: int, count_alarm) -> None:
        self.error_metric_filter = logs.MetricFilter(
            self,
            "ErrorLogLines",
            log_group=log_group,
            filter_pattern=logs.FilterPattern.string_value("$.level", "=", "ERROR"),
            metric_namespace=namespace,
            metric_name=f"{self.name}-ErrorLogLines",
            metric_value="1",
            default_value=0,
        )
        error_lines = self.error_metric_filter.metric(statistic="Sum", period=self.period, label="ERROR log lines")
        self.facade.monitor_custom(
            human_readable_name="Inference logs",
            alarm_friendly_name="inference-logs",
            metric_groups=[
                mon.CustomMetricGroup(
                    title="ERROR lines",
                    metrics=[
                        mon.CustomMetricWithAlarm(
                            metric=error_lines,
                            alarm_friendly_name="inference-error-logs",
                            add_alarm={
                                "Critical": mon.CustomThreshold(
                                    threshold=lambda_errors,
                                    comparison_operator=count_alarm["comparison_operator_override"],
                                    alarm_name_override=f"{self.name}-inference-error-logs",
                                    treat_missing_data_override=cloudwatch.TreatMissingData.NOT_BREACHING,
                                    evaluation_periods=1,
                                    datapoints_to_alarm=1,
                                )
                            },
                        )
                    ],
                )
            ],
        )
        groups = [log_group]
        # Powertools JSON fields: level, message, timestamp, service, xray_trace_id, function_request_id,
        # correlation_id, cold_start; the handler appends model_version and inference_mode, and logs status, error,
        # detail on failed requests (exception, exception_name on unexpected ones). Its EMF lines carry Predictions,
        # RowsPredicted, PredictLatency (ms) and model_version. Lambda's REPORT line carries @duration (text log
        # format) or record.metrics.durationMs (JSON log format).
        self.query_definitions["slowest_requests"] = logs.QueryDefinition(
            self,
            "SlowestRequests",
            query_definition_name=f"{self.name}/slowest-requests",
            log_groups=groups,
            query_string=logs.QueryString(
                filter_statements=['@type = "REPORT" or type = "platform.report"'],
                fields=[
                    "@timestamp",
                    "coalesce(@requestId, record.requestId) as request_id",
                    "coalesce(@duration, record.metrics.durationMs) as duration_ms",
                    "coalesce(@maxMemoryUsed / 1000000, record.metrics.maxMemoryUsedMB) as max_memory_mb",
                    "coalesce(@initDuration, record.metrics.initDurationMs) as init_ms",
                ],
                sort="duration_ms desc",
                limit=50,
            ),
        )
        self.query_definitions["errors_by_type"] = logs.QueryDefinition(
            self,
            "ErrorsByType",
            query_definition_name=f"{self.name}/errors-by-type",
            log_groups=groups,
            query_string=logs.QueryString(
                filter_statements=['level = "ERROR" or ispresent(error)'],
                fields=["coalesce(error, exception_name, message) as error_type", "status", "level", "xray_trace_id"],
                stats_statements=[
                    "count(*) as occurrences, latest(xray_trace_id) as example_trace, latest(detail) as example "
                    "by error_type, status, level"
                ],
                sort="occurrences desc",
                limit=100,
            ),
        )
        self.query_definitions["predictions_by_model_version"] = logs.QueryDefinition(
            self,
            "PredictionsByModelVersion",
            query_definition_name=f"{self.name}/predictions-by-model-version",
            log_groups=groups,
            query_string=logs.QueryString(
                filter_statements=["ispresent(Predictions)"],
                stats_statements=[
                    "sum(Predictions) as requests, sum(RowsPredicted) as rows, avg(PredictLatency) as avg_predict_ms, "
                    "pct(PredictLatency, 99) as p99_predict_ms by model_version"
                ],
                sort="requests desc",
            ),
        )


# ----------------------------------------------------------------------------------------------------------------------
# Platform overview
# ----------------------------------------------------------------------------------------------------------------------
class PlatformOverview(Construct):
    """One dashboard over all models: the state of their alarms, Glue job and SageMaker pipeline activity.

    Alarms usually live in stacks that depend on this one, so they are referenced by name
    (:meth:`ModelMonitoring.alarm_names`), not by object, which avoids a dependency cycle.

    :param dashboard_name: physical name.
    :param alarm_names: alarms of this account and region to show. Default: none.
    :param alarms: alarm objects to show (same stack or a stack this one depends on). Default: none.
    :param glue_job_names: Glue jobs to graph. :param pipeline_names: SageMaker pipelines to graph.
    :param period: Default: 1 hour.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        dashboard_name: str,
        alarm_names: Sequence[str] = (),
        alarms: Sequence[cloudwatch.IAlarm] = (),
        glue_job_names: Sequence[str] = (),
        pipeline_names: Sequence[str] = (),
        period: Duration = Duration.hours(1),
    ) -> None:
        super().__init__(scope, id_)
        self.dashboard = cloudwatch.Dashboard(self, "Dashboard", dashboard_name=dashboard_name)
        self.dashboard.add_widgets(
            cloudwatch.TextWidget(
                markdown=f"# {dashboard_name}\nAlarms of every model, Glue ETL and SageMaker pipeline activity. "
                "Per-model details: the `<project>-<env>-<model>` dashboards.",
                width=24,
                height=2,
            )
        )
        refs: list[cloudwatch.IAlarm] = list(alarms)
        for i, alarm_name in enumerate(alarm_names):
            refs.append(cloudwatch.Alarm.from_alarm_name(self, f"Alarm{i}", alarm_name))
        self.alarms = refs
        if refs:
            # The widget shows at most 100 alarms.
            for start in range(0, len(refs), 100):
                self.dashboard.add_widgets(
                    cloudwatch.AlarmStatusWidget(
                        title="Alarms" if start == 0 else f"Alarms ({start + 1}-)",
                        alarms=refs[start : start + 100],
                        width=24,
                        height=max(3, 1 + (min(len(refs) - start, 100) + 3) // 4),
                        sort_by=cloudwatch.AlarmStatusWidgetSortBy.STATE_UPDATED_TIMESTAMP,
                    )
                )
        if glue_job_names:
            agg = "glue.driver.aggregate."

            def glue_metric(job: str, name: str, statistic: str, label: str) -> cloudwatch.Metric:
                return cloudwatch.Metric(
                    namespace=GLUE_NAMESPACE,
                    metric_name=name,
                    dimensions_map={
                        "JobName": job, "JobRunId": "ALL", "Type": "count" if "aggregate" in name else "gauge"
                    },
                    statistic=statistic,
                    period=period,
                    label=f"{label} {job}",
                )

            self.dashboard.add_widgets(
                cloudwatch.GraphWidget(
                    title="Glue: completed and failed tasks",
                    left=[glue_metric(j, f"{agg}numCompletedTasks", "Sum", "completed") for j in glue_job_names],
                    right=[glue_metric(j, f"{agg}numFailedTasks", "Sum", "failed") for j in glue_job_names],
                    width=12,
                ),
                cloudwatch.GraphWidget(
                    title="Glue: elapsed time (ms)",
                    left=[glue_metric(j, f"{agg}elapsedTime", "Maximum", "elapsed") for j in glue_job_names],
                    width=12,
                ),
            )
        if pipeline_names:
            def pipeline_metric(pipeline: str, name: str) -> cloudwatch.Metric:
                return cloudwatch.Metric(
                    namespace=SAGEMAKER_PIPELINE_NAMESPACE,
                    metric_name=name,
                    dimensions_map={"PipelineName": pipeline},
                    statistic="Sum",
                    period=period,
                    label=f"{name.replace('Execution', '')} {pipeline}",
                )

            self.dashboard.add_widgets(
                cloudwatch.GraphWidget(
                    title="SageMaker pipelines: executions",
                    left=[
                        pipeline_metric(p, m) for p in pipeline_names for m in ("ExecutionStarted", "ExecutionSucceeded")
                    ],
                    width=12,
                ),
                cloudwatch.GraphWidget(
                    title="SageMaker pipelines: failed executions",
                    left=[pipeline_metric(p, "ExecutionFailed") for p in pipeline_names],
                    width=12,
                ),
            )


# ----------------------------------------------------------------------------------------------------------------------
# SageMaker Model Monitor: data quality
# ----------------------------------------------------------------------------------------------------------------------
def _object_arn(uri: str) -> str:
    """``s3://bucket/key`` (string or token) -> ``arn:<partition>:s3:::bucket/key``."""
    if Token.is_unresolved(uri):
        return Fn.join("", [f"arn:{Aws.PARTITION}:s3:::", Fn.select(1, Fn.split("s3://", uri))])
    if not uri.startswith("s3://") or "/" not in uri[5:]:
        raise ValueError(f"expected an s3://bucket/key URI, got {uri!r}")
    return f"arn:{Aws.PARTITION}:s3:::{uri[5:]}"


@jsii.implements(IAspect)
class _NameJobDefinition:
    """Names a data-quality job definition after its content, once the tag aspects (which run first: they mutate)
    have set its tags, and points the schedule at that name."""

    def __init__(self, monitor: "DataQualityMonitor", prefix: str, revision: Optional[str]) -> None:
        self.monitor = monitor
        self.prefix = prefix
        self.revision = revision

    def visit(self, node) -> None:
        monitor = self.monitor
        if node is not monitor.job_definition:
            return
        definition = monitor.job_definition
        content = Stack.of(definition).resolve(
            [
                definition.data_quality_app_specification,
                definition.data_quality_baseline_config,
                definition.data_quality_job_input,
                definition.data_quality_job_output_config,
                definition.job_resources,
                definition.network_config,
                definition.role_arn,
                definition.stopping_condition,
                definition.tags.render_tags(),
            ]
        )
        digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:10]
        name = f"{self.prefix}-{digest}" + (f"-{self.revision}" if self.revision else "")
        definition.job_definition_name = name
        monitor.schedule.add_property_override(
            "MonitoringScheduleConfig.MonitoringJobDefinitionName", name
        )


_JOB_NAME_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")


class DataQualityMonitor(Construct):
    """Hourly SageMaker Model Monitor data-quality job on an endpoint's captured requests.

    The analyzer compares captured inputs with the baseline statistics and constraints, writes violation reports to
    ``s3://<bucket>/<output_prefix>`` and publishes ``aws/sagemaker/Endpoints/data-metrics`` metrics. The job runs
    with network isolation and encrypted inter-container traffic; outputs and volumes use ``encryption_key``. Its
    logs go to the account's ``/aws/sagemaker/ProcessingJobs`` log group (its role may create the group, which
    SageMaker names, when it does not exist yet).

    Every property of a ``DataQualityJobDefinition`` is replace-only, so a new baseline means a new definition. Its
    name is ``<name[:40]>-<hash of its properties and tags>[-<revision>]``: a changed property yields a new name, so
    CloudFormation can create the replacement before deleting the old definition (a fixed name would fail the
    update). The schedule keeps its name (the ``MonitoringSchedule`` dimension of the metrics) and is updated in place.

    :param name: prefix of the job definition name and the schedule name, ``<name>-data-quality`` (``<name>-dq``
        when that exceeds SageMaker's 63 characters; letters, digits, hyphens).
    :param endpoint_name: the monitored endpoint; it must capture inputs to ``bucket`` under ``data_capture_prefix``.
        Add a dependency on the endpoint (``monitor.node.add_dependency(endpoint)``): SageMaker checks it exists.
    :param bucket: the artifacts bucket (capture data, baselines, reports).
    :param encryption_key: key of the bucket; also encrypts outputs and the job's volume.
    :param baseline_statistics_uri: ``s3://.../statistics.json`` of the baseline (in ``bucket``).
    :param baseline_constraints_uri: ``s3://.../constraints.json`` of the baseline (in ``bucket``).
    :param data_capture_prefix: key prefix of the endpoint's data capture, e.g. ``data-capture/``.
    :param output_prefix: key prefix of the reports, e.g. ``models/<model>/monitoring/data-quality/``.
    :param instance_type: Default: ml.m5.large. :param instance_count: Default: 1.
    :param volume_size_gb: Default: 20. :param max_runtime: Default: 1 hour (the schedule's period).
    :param schedule_expression: Default: hourly, ``cron(0 * ? * * *)``.
    :param publish_cloudwatch_metrics: Default: True.
    :param revision: a short value (letters, digits; at most 12 characters) that changes whenever a value only known at
        deploy time changes the definition, e.g. the model package version when the baseline URIs are stack
        parameters: the hash covers the template, not parameter values. Default: none.
    :param alarm_topic: notify failed monitoring jobs there, except Model Monitor's "no data" failure (the hourly job
        on an endpoint without traffic). Default: no notification.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        name: str,
        endpoint_name: str,
        bucket: s3.IBucket,
        encryption_key: kms.IKey,
        baseline_statistics_uri: str,
        baseline_constraints_uri: str,
        data_capture_prefix: str,
        output_prefix: str,
        instance_type: str = "ml.m5.large",
        instance_count: int = 1,
        volume_size_gb: int = 20,
        max_runtime: Duration = Duration.hours(1),
        schedule_expression: str = HOURLY,
        publish_cloudwatch_metrics: bool = True,
        revision: Optional[str] = None,
        alarm_topic: Optional[sns.ITopic] = None,
    ) -> None:
        super().__init__(scope, id_)
        if revision is not None and not Token.is_unresolved(revision) and not re.match(r"^[a-zA-Z0-9]{1,12}$", revision):
            raise ValueError(f"DataQualityMonitor revision must be 1-12 letters or digits, got {revision!r}")
        job_name = f"{name}-data-quality"
        if not Token.is_unresolved(name) and len(job_name) > 63:
            job_name = f"{name}-dq"  # the longest endpoint names the config allows (54) still fit
        if not Token.is_unresolved(name) and not _JOB_NAME_RE.match(job_name):
            raise ValueError(
                f"DataQualityMonitor name {name!r}: '{job_name}' must be 1-63 letters, digits and hyphens"
            )
        if max_runtime.to_seconds() > 3600 and schedule_expression == HOURLY:
            raise ValueError("DataQualityMonitor max_runtime must not exceed 1 hour on an hourly schedule")
        for label, prefix in (("data_capture_prefix", data_capture_prefix), ("output_prefix", output_prefix)):
            if not prefix.endswith("/") or prefix.startswith("/"):
                raise ValueError(f"DataQualityMonitor {label} must be a key prefix ending in '/', got {prefix!r}")
        stack = Stack.of(self)
        self.schedule_name = job_name
        self.output_uri = bucket.s3_url_for_object(output_prefix.rstrip("/"))

        # --- image: region -> account mapping from the SageMaker SDK ---------------------------------------------
        mapping = CfnMapping(
            self, "AnalyzerImageAccounts",
            mapping={region: {"account": acct} for region, acct in model_monitor_image_accounts().items()},
            lazy=False,
        )
        account = mapping.find_in_map(Aws.REGION, "account")
        self.image_uri = f"{account}.dkr.ecr.{Aws.REGION}.{Aws.URL_SUFFIX}/{MODEL_MONITOR_REPOSITORY}"
        repository_arn = f"arn:{Aws.PARTITION}:ecr:{Aws.REGION}:{account}:repository/{MODEL_MONITOR_REPOSITORY}"

        # --- role: capture prefix (read), baselines (read), output prefix (write), key, logs, metrics ------------
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description=f"SageMaker Model Monitor data-quality job {job_name}",
        )
        bucket.grant_read(self.role, f"{data_capture_prefix}*")
        bucket.grant_put(self.role, f"{output_prefix}*")
        baselines = [_object_arn(baseline_statistics_uri), _object_arn(baseline_constraints_uri)]
        self.role.add_to_policy(
            iam.PolicyStatement(sid="Baselines", actions=["s3:GetObject"], resources=baselines)
        )
        encryption_key.grant_encrypt_decrypt(self.role)
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="AnalyzerImage",
                actions=["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"],
                resources=[repository_arn],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(sid="EcrAuth", actions=["ecr:GetAuthorizationToken"], resources=["*"])
        )
        processing_logs = stack.format_arn(
            service="logs",
            resource="log-group",
            resource_name="/aws/sagemaker/ProcessingJobs",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="Logs",
                # CreateLogGroup: the account-wide group exists only once some processing job has run.
                actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                resources=[processing_logs, f"{processing_logs}:*"],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="Metrics",
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringEquals": {"cloudwatch:namespace": MODEL_MONITOR_METRICS_NAMESPACE}},
            )
        )
        compliance.acknowledge(
            self.role,
            "AwsSolutions-IAM5[Resource::*]",
            "ecr:GetAuthorizationToken has no resource type; cloudwatch:PutMetricData has none either and is "
            "limited to the Model Monitor namespace by condition.",
        )
        compliance.acknowledge_wildcard_resources(
            self.role,
            [
                bucket.arn_for_objects(f"{data_capture_prefix}*"),
                bucket.arn_for_objects(f"{output_prefix}*"),
                f"{processing_logs}:*",
            ],
            "The endpoint's data-capture prefix (read), the monitor's own report prefix (write) and the log streams "
            "of the SageMaker processing jobs log group.",
        )
        compliance.acknowledge_wildcard_actions(
            self.role,
            compliance.S3_READ_ACTIONS + compliance.S3_WRITE_ACTIONS + compliance.KMS_ACTIONS,
            "CDK grant actions, limited to the capture and report prefixes and the lake key in the same statements.",
        )

        # --- job definition and schedule -------------------------------------------------------------------------
        environment = {"publish_cloudwatch_metrics": "Enabled" if publish_cloudwatch_metrics else "Disabled"}
        self.job_definition = sagemaker.CfnDataQualityJobDefinition(
            self,
            "JobDefinition",
            data_quality_app_specification=sagemaker.CfnDataQualityJobDefinition.DataQualityAppSpecificationProperty(
                image_uri=self.image_uri, environment=environment
            ),
            data_quality_baseline_config=sagemaker.CfnDataQualityJobDefinition.DataQualityBaselineConfigProperty(
                constraints_resource=sagemaker.CfnDataQualityJobDefinition.ConstraintsResourceProperty(
                    s3_uri=baseline_constraints_uri
                ),
                statistics_resource=sagemaker.CfnDataQualityJobDefinition.StatisticsResourceProperty(
                    s3_uri=baseline_statistics_uri
                ),
            ),
            data_quality_job_input=sagemaker.CfnDataQualityJobDefinition.DataQualityJobInputProperty(
                endpoint_input=sagemaker.CfnDataQualityJobDefinition.EndpointInputProperty(
                    endpoint_name=endpoint_name,
                    local_path="/opt/ml/processing/input/endpoint",
                    s3_input_mode="File",
                    s3_data_distribution_type="FullyReplicated",
                )
            ),
            data_quality_job_output_config=sagemaker.CfnDataQualityJobDefinition.MonitoringOutputConfigProperty(
                kms_key_id=encryption_key.key_arn,
                monitoring_outputs=[
                    sagemaker.CfnDataQualityJobDefinition.MonitoringOutputProperty(
                        s3_output=sagemaker.CfnDataQualityJobDefinition.S3OutputProperty(
                            local_path="/opt/ml/processing/output",
                            s3_uri=self.output_uri,
                            s3_upload_mode="EndOfJob",
                        )
                    )
                ],
            ),
            job_resources=sagemaker.CfnDataQualityJobDefinition.MonitoringResourcesProperty(
                cluster_config=sagemaker.CfnDataQualityJobDefinition.ClusterConfigProperty(
                    instance_count=instance_count,
                    instance_type=instance_type,
                    volume_size_in_gb=volume_size_gb,
                    volume_kms_key_id=encryption_key.key_arn,
                )
            ),
            network_config=sagemaker.CfnDataQualityJobDefinition.NetworkConfigProperty(
                enable_network_isolation=True,
                enable_inter_container_traffic_encryption=True,
            ),
            role_arn=self.role.role_arn,
            stopping_condition=sagemaker.CfnDataQualityJobDefinition.StoppingConditionProperty(
                max_runtime_in_seconds=int(max_runtime.to_seconds())
            ),
        )
        # Named at synthesis after its content (see the class doc); the ARN is known at deploy time.
        self.job_definition_arn: str = self.job_definition.attr_job_definition_arn
        short = name[:40].rstrip("-") if not Token.is_unresolved(name) else "data-quality"
        Aspects.of(self).add(_NameJobDefinition(self, short, revision))
        # The role's policy must exist before SageMaker validates the definition with it.
        self.job_definition.node.add_dependency(self.role.node.find_child("DefaultPolicy"))
        self.schedule = sagemaker.CfnMonitoringSchedule(
            self,
            "Schedule",
            monitoring_schedule_name=job_name,
            monitoring_schedule_config=sagemaker.CfnMonitoringSchedule.MonitoringScheduleConfigProperty(
                # Set by _NameJobDefinition at synthesis (a content-derived name).
                monitoring_job_definition_name="set-at-synthesis",
                monitoring_type="DataQuality",
                schedule_config=sagemaker.CfnMonitoringSchedule.ScheduleConfigProperty(
                    schedule_expression=schedule_expression
                ),
            ),
        )
        self.schedule.add_resource_dependency(self.job_definition)

        self.failure_events: Optional[FailureEvents] = None
        if alarm_topic is not None:
            self.failure_events = FailureEvents(
                self, "Failures", topic=alarm_topic, processing_job_role_arns=[self.role.role_arn]
            )

    def metric_feature_baseline_drift(self, feature: str, *, endpoint_name: str, period: Duration = Duration.hours(1)):
        """Model Monitor's ``feature_baseline_drift_<feature>`` metric of this schedule."""
        return cloudwatch.Metric(
            namespace=MODEL_MONITOR_METRICS_NAMESPACE,
            metric_name=f"feature_baseline_drift_{feature}",
            dimensions_map={"Endpoint": endpoint_name, "MonitoringSchedule": self.schedule_name},
            statistic="Maximum",
            period=period,
        )
