"""Dashboards: one per model or serving stage (:class:`ModelMonitoring`) and the platform overview
(:class:`PlatformOverview`).

One owner per alarm: a resource construct owns the alarms on its own metrics (``RealtimeEndpoint``: 5xx rate and p99
model latency, its blue/green rollback alarms; ``LambdaInference``: errors, 5xx answers, p99 duration, throttles;
``GlueEtl``: failed tasks, in the data stack). The dashboards graph those constructs' ``metric_*`` methods and show
their alarms; :class:`ModelMonitoring` adds only the alarms no resource construct owns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Sequence

import cdk_monitoring_constructs as mon
from aws_cdk import Duration, Token
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from constructs import Construct

if TYPE_CHECKING:
    from mlops_constructs.lambda_inference import LambdaInference
    from mlops_constructs.realtime_endpoint import RealtimeEndpoint

SAGEMAKER_PIPELINE_NAMESPACE = "AWS/Sagemaker/ModelBuildingPipeline"
GLUE_NAMESPACE = "Glue"

# Suffixes of the alarm names ModelMonitoring creates: "<name>-<suffix>" (see ModelMonitoring.alarm_names).
_LAMBDA_ALARMS = ("inference-error-logs",)
_PIPELINE_ALARMS = ("pipeline-failures",)
# Count thresholds: "alarm when the count in one period reaches the value".
_COUNT_ALARM = dict(
    comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
    treat_missing_data_override=cloudwatch.TreatMissingData.NOT_BREACHING,
    evaluation_periods=1,
    datapoints_to_alarm=1,
)


class ModelMonitoring(Construct):
    """Dashboard, log analytics and the alarms nobody else owns, of one model or one serving stage
    (cdk-monitoring-constructs ``MonitoringFacade``).

    Segments (each only when its resource is given): SageMaker endpoint (invocations, model/overhead latency, 4xx/5xx
    errors and 5xx rate, instance CPU/memory/disk unless serverless), inference Lambda function (invocations,
    predictions, concurrency, errors, 5xx answers, throttles, duration), inference log errors (metric filter), Glue
    ETL job (graphs only), SageMaker pipeline executions; then the state of every alarm of those resources.

    Alarms this construct creates, named ``<name>-<suffix>`` (:meth:`alarm_names`), notify ``alarm_topic``:

    * ``inference-error-logs``: ERROR log lines >= ``lambda_errors`` in one period. The inference handler never raises
      (it answers 500 instead) and also logs failures that end in no 5xx (a bad model object at cold start, a
      failed metric flush), which the function's own alarms do not see.
    * ``pipeline-failures``: ExecutionFailed sum >= ``pipeline_failures``.

    The endpoint's, the function's and the Glue job's alarms belong to ``RealtimeEndpoint``, ``LambdaInference`` and
    ``GlueEtl``: this construct shows them and adds none on the same metrics (an alarm per owner, one email per
    breach).

    :param name: dashboard name and alarm name prefix, e.g. ``<project>-<env>-<model>``.
    :param alarm_topic: topic notified by every alarm this construct creates.
    :param endpoint: a ``RealtimeEndpoint`` to graph (its ``metric_*`` methods) and whose alarms to show. Default: none.
    :param inference: a ``LambdaInference`` to graph and whose alarms to show; its log group gets the ERROR-lines
        metric filter, alarm and saved queries. Default: none.
    :param glue_job_name: ETL job to graph (its alarm belongs to ``GlueEtl``). Default: none.
    :param pipeline_name: SageMaker model-building pipeline. Default: none.
    :param lambda_errors: ERROR log lines per period that raise ``inference-error-logs``. Default: 5.
    :param pipeline_failures: failed executions per period that raise ``pipeline-failures``. Default: 1.
    :param period: metric period of the alarms and graphs. Default: 5 minutes.
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
        endpoint: Optional["RealtimeEndpoint"] = None,
        inference: Optional["LambdaInference"] = None,
        glue_job_name: Optional[str] = None,
        pipeline_name: Optional[str] = None,
        lambda_errors: int = 5,
        pipeline_failures: int = 1,
        period: Duration = Duration.minutes(5),
        notify_on_ok: bool = False,
        log_metric_namespace: str = "MLOps/Inference",
    ) -> None:
        super().__init__(scope, id_)
        for label, value in (("lambda_errors", lambda_errors), ("pipeline_failures", pipeline_failures)):
            if value < 1:
                raise ValueError(f"ModelMonitoring {label} must be at least 1, got {value}")
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
        self.error_metric_filter: Optional[logs.MetricFilter] = None
        self.query_definitions: dict[str, logs.QueryDefinition] = {}
        owned: list[cloudwatch.IAlarm] = []
        if endpoint is not None:
            self._endpoint_segment(endpoint)
            owned += endpoint.alarms
        if inference is not None:
            self._inference_segment(inference)
            self._inference_logs(inference.log_group, log_metric_namespace, lambda_errors)
            owned += inference.alarms
        if glue_job_name is not None:
            self.facade.monitor_glue_job(
                job_name=glue_job_name, human_readable_name=f"Glue job {glue_job_name}", alarm_friendly_name="glue"
            )
        if pipeline_name is not None:
            self._pipeline_segment(pipeline_name, pipeline_failures)

        self.alarms: list[cloudwatch.Alarm] = [a.alarm for a in self.facade.created_alarms()]
        """The alarms this construct created (not the resource constructs' alarms it shows)."""
        shown = [*owned, *self.alarms]
        if shown:
            self.facade.add_widget(
                cloudwatch.AlarmStatusWidget(
                    title="Alarms", alarms=shown, width=24, height=max(3, 1 + (len(shown) + 3) // 4)
                )
            )
        self.dashboard: cloudwatch.Dashboard = self.facade.created_dashboard()

    @staticmethod
    def alarm_names(name: str, *, lambda_: bool = True, pipeline: bool = True) -> list[str]:
        """Names of the alarms a ModelMonitoring with these parts creates (for dashboards in other stacks)."""
        names: list[str] = []
        if lambda_:
            names += [f"{name}-{s}" for s in _LAMBDA_ALARMS]
        if pipeline:
            names += [f"{name}-{s}" for s in _PIPELINE_ALARMS]
        return names

    def _endpoint_segment(self, endpoint: "RealtimeEndpoint") -> None:
        period = {"period": self.period}
        groups = {
            "Invocations": [
                endpoint.metric_invocations(label="Invocations", **period),
                endpoint.metric_invocations_per_instance(label="Invocations per instance", **period),
            ],
            "Latency (microseconds)": [
                endpoint.metric_model_latency(statistic="p50", label="ModelLatency p50", **period),
                endpoint.metric_model_latency(label="ModelLatency p99", **period),
                endpoint.metric_overhead_latency(label="OverheadLatency p99", **period),
            ],
            "Errors": [
                endpoint.metric_4xx(label="4XX errors", **period),
                endpoint.metric_5xx(label="5XX errors", **period),
                endpoint.metric_5xx_rate(**period),
            ],
        }
        metric_groups = [mon.CustomMetricGroup(title=title, metrics=metrics) for title, metrics in groups.items()]
        if not endpoint.serverless:
            metric_groups.append(
                mon.CustomMetricGroup(
                    title="Instance utilization (%)",
                    metrics=[
                        endpoint.metric_cpu_utilization(label="CPUUtilization", **period),
                        endpoint.metric_memory_utilization(label="MemoryUtilization", **period),
                        endpoint.metric_disk_utilization(label="DiskUtilization", **period),
                    ],
                    graph_widget_axis=cloudwatch.YAxisProps(min=0),
                )
            )
        name = endpoint.endpoint_name
        self.facade.monitor_custom(
            human_readable_name="SageMaker endpoint" if Token.is_unresolved(name) else f"SageMaker endpoint {name}",
            alarm_friendly_name="endpoint",
            metric_groups=metric_groups,
        )

    def _inference_segment(self, inference: "LambdaInference") -> None:
        period = {"period": self.period}
        groups = {
            "Requests": [
                inference.metric_invocations(label="Invocations", **period),
                inference.metric_predictions(**period),
                inference.metric_concurrent_executions(label="Concurrent executions", **period),
            ],
            "Errors": [
                inference.metric_errors(label="Errors", **period),
                inference.metric_server_errors(**period),
                inference.metric_throttles(label="Throttles", **period),
            ],
            "Duration (ms)": [
                inference.metric_duration(statistic="p50", label="Duration p50", **period),
                inference.metric_duration(label="Duration p99", **period),
            ],
        }
        self.facade.monitor_custom(
            human_readable_name=f"Inference function of {self.name}",
            alarm_friendly_name="inference",
            metric_groups=[mon.CustomMetricGroup(title=title, metrics=metrics) for title, metrics in groups.items()],
        )

    def _pipeline_segment(self, pipeline_name: str, pipeline_failures: int) -> None:
        def execution(metric: str) -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace=SAGEMAKER_PIPELINE_NAMESPACE,
                metric_name=metric,
                dimensions_map={"PipelineName": pipeline_name},
                statistic="Sum",
                period=self.period,
                label=metric.replace("Execution", ""),
            )

        failed = mon.CustomMetricWithAlarm(
            metric=execution("ExecutionFailed"),
            alarm_friendly_name="pipeline-failures",
            add_alarm={
                "Critical": mon.CustomThreshold(
                    threshold=pipeline_failures, alarm_name_override=f"{self.name}-pipeline-failures", **_COUNT_ALARM
                )
            },
        )
        self.facade.monitor_custom(
            human_readable_name=f"SageMaker pipeline {pipeline_name}",
            alarm_friendly_name="pipeline",
            metric_groups=[
                mon.CustomMetricGroup(
                    title="Executions",
                    metrics=[execution("ExecutionStarted"), execution("ExecutionSucceeded"), failed,
                             execution("ExecutionStopped")],
                )
            ],
        )

    def _inference_logs(self, log_group: logs.ILogGroup, namespace: str, lambda_errors: int) -> None:
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
                                    alarm_name_override=f"{self.name}-inference-error-logs",
                                    **_COUNT_ALARM,
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
        queries = {
            "slowest_requests": logs.QueryString(
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
            "errors_by_type": logs.QueryString(
                filter_statements=['level = "ERROR" or ispresent(error)'],
                fields=["coalesce(error, exception_name, message) as error_type", "status", "level", "xray_trace_id"],
                stats_statements=[
                    "count(*) as occurrences, latest(xray_trace_id) as example_trace, latest(detail) as example "
                    "by error_type, status, level"
                ],
                sort="occurrences desc",
                limit=100,
            ),
            "predictions_by_model_version": logs.QueryString(
                filter_statements=["ispresent(Predictions)"],
                stats_statements=[
                    "sum(Predictions) as requests, sum(RowsPredicted) as rows, avg(PredictLatency) as avg_predict_ms, "
                    "pct(PredictLatency, 99) as p99_predict_ms by model_version"
                ],
                sort="requests desc",
            ),
        }
        for key, query in queries.items():
            # Construct id "SlowestRequests", name "<name>/slowest-requests", ...
            self.query_definitions[key] = logs.QueryDefinition(
                self,
                "".join(part.capitalize() for part in key.split("_")),
                query_definition_name=f"{self.name}/{key.replace('_', '-')}",
                log_groups=groups,
                query_string=query,
            )


# ----------------------------------------------------------------------------------------------------------------------
# Platform overview
# ----------------------------------------------------------------------------------------------------------------------
class PlatformOverview(Construct):
    """One dashboard over all models: the state of their alarms, Glue job and SageMaker pipeline activity.

    Alarms usually live in stacks that depend on this one, so they are referenced by name
    (:meth:`ModelMonitoring.alarm_names`, ``GlueEtl.failed_tasks_alarm_name``), not by object, which avoids a
    dependency cycle.

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


