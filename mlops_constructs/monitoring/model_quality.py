"""SageMaker Model Monitor model quality: captured predictions joined with ground-truth labels by inference ID, the
problem type's metric with an alarm on its threshold, and the ingestion of uploaded labels into Model Monitor's
ground-truth format (the function of ``lambda_src/ground_truth``)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Optional, Sequence

import jsii
from aws_cdk import ArnFormat, Aspects, Duration, IAspect, RemovalPolicy, Stack, Token
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as events_targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sagemaker as sagemaker
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from mlops_constructs import compliance
from mlops_constructs._events import object_created
from mlops_constructs.monitoring.failure_events import FailureEvents
from mlops_constructs.monitoring.images import MODEL_MONITOR_REPOSITORY, analyzer_image
from mlops_constructs.network import grant_network_interfaces, workload_placement
from mlops_constructs.storage import allow_cloudwatch_logs, rotating_key

MODEL_QUALITY_METRICS_NAMESPACE = "aws/sagemaker/Endpoints/model-metrics"
#: The ground-truth merge job of a model-quality execution runs this image, from the analyzer's registry.
GROUND_TRUTH_MERGER_REPOSITORY = "sagemaker-model-monitor-groundtruth-merger"
HOURLY = "cron(0 * ? * * *)"
#: problem type (the config's) -> (Model Monitor ProblemType, the default metric alarmed on)
PROBLEM_TYPES = {
    "regression": ("Regression", "rmse"),
    "binary_classification": ("BinaryClassification", "auc"),
}
#: Model Monitor's metrics (SageMaker docs, "Model quality metrics and Amazon CloudWatch monitoring") the alarm may
#: watch, per problem type -> True when a higher value is worse (errors), False when lower is worse (scores).
ALARM_METRICS = {
    "regression": {"rmse": True, "mae": True, "mse": True, "r2": False},
    "binary_classification": {"auc": False, "accuracy": False, "f1": False, "precision": False, "recall": False},
}
#: An hourly execution shares its hour between the merge job and the monitoring job (SageMaker docs, "Schedule model
#: quality monitoring jobs"): MaxRuntimeInSeconds at most 1800.
MAX_HOURLY_RUNTIME = Duration.minutes(30)
_JOB_NAME_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
_OFFSET_RE = re.compile(r"^-P(T\d+[HM]|\d+D|\d+DT\d+H)$")
_SCHEDULE_RE = re.compile(r"^cron\(0 (\*|\d{1,2}|\d{1,2}/\d{1,2}) \? \* \* \*\)$")
_mq = sagemaker.CfnModelQualityJobDefinition
GROUND_TRUTH_HANDLER = "ground_truth_handler.handler"
CODE_EXCLUDES = ["tests", "**/tests", "__pycache__", "**/__pycache__", "*.pyc", "README.md"]


def schedule_period(schedule_expression: str) -> Duration:
    """How often a Model Monitor schedule runs: hourly, every N hours (``cron(0 H/N ...)``) or daily."""
    match = _SCHEDULE_RE.match(schedule_expression)
    if not match:
        raise ValueError(
            f"ModelQualityMonitor schedule_expression must be 'cron(0 * ? * * *)' (hourly), 'cron(0 H ? * * *)' "
            f"(daily) or 'cron(0 H/N ? * * *)', got {schedule_expression!r}"
        )
    hours = match.group(1)
    if hours == "*":
        return Duration.hours(1)
    if "/" in hours:
        return Duration.hours(int(hours.split("/")[1]))
    return Duration.days(1)


@jsii.implements(IAspect)
class _NameJobDefinition:
    """Names the job definition after its content once the tag aspects have run, and points the schedule at it
    (as DataQualityMonitor does: every property is replace-only)."""

    def __init__(self, monitor: "ModelQualityMonitor", prefix: str, revision: Optional[str]) -> None:
        self.monitor, self.prefix, self.revision = monitor, prefix, revision

    def visit(self, node) -> None:
        monitor = self.monitor
        if node is not monitor.job_definition:
            return
        definition = monitor.job_definition
        content = Stack.of(definition).resolve([
            definition.model_quality_app_specification,
            definition.model_quality_baseline_config,
            definition.model_quality_job_input,
            definition.model_quality_job_output_config,
            definition.job_resources,
            definition.network_config,
            definition.role_arn,
            definition.stopping_condition,
            definition.tags.render_tags(),
        ])
        digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:10]
        name = f"{self.prefix}-{digest}" + (f"-{self.revision}" if self.revision else "")
        definition.job_definition_name = name
        monitor.schedule.add_property_override("MonitoringScheduleConfig.MonitoringJobDefinitionName", name)


class ModelQualityMonitor(Construct):
    """A SageMaker Model Monitor model-quality schedule on an endpoint, with an alarm on its metric.

    Each execution merges the endpoint's captured predictions (``data_capture_prefix``) with the ground truth
    (``ground_truth_prefix``: Model Monitor's format, ``yyyy/mm/dd/hh/*.jsonl``, which :class:`GroundTruthIngestion`
    writes) by inference ID (``eventMetadata.inferenceId`` of the capture, the ``InferenceId`` the caller passed to
    InvokeEndpoint, against the label's ``eventMetadata.eventId``), then computes the problem type's metrics and
    publishes them to ``aws/sagemaker/Endpoints/model-metrics`` (dimensions ``Endpoint`` and ``MonitoringSchedule``).
    The merged data and the reports go to ``output_prefix``. The alarm (:attr:`alarm`) watches ``rmse`` (regression,
    above ``alarm_threshold``) or ``auc`` (binary classification, below it); an execution without labels publishes
    nothing, which is not an alarm (missing data is not breaching).

    What the endpoint answers (``sagemaker_steps/serve.py``): CSV, one value per line, the prediction for
    regression and P(positive) for binary classification; so ``InferenceAttribute`` is ``"0"`` for regression and,
    for binary classification, ``ProbabilityAttribute`` ``"0"`` with ``ProbabilityThresholdAttribute``
    ``probability_threshold`` (the label is P >= threshold, docs/CONTRACTS.md's 0.5).

    Window: an execution at time T analyses the captures of [T + ``start_time_offset``, T + ``end_time_offset``]
    (ISO 8601, e.g. ``-P1D``, ``-PT1H``), so labels have until T to arrive. Like :class:`DataQualityMonitor`, the job
    definition is named after a digest of its content (``<name[:40]>-<digest>[-<revision>]``) and runs with network
    isolation and inter-container encryption; outputs and volumes use ``encryption_key``.

    :param name: prefix of the job definition and of the schedule name, ``<name>-model-quality`` (``<name>-mq`` when
        that exceeds 63 characters). :param endpoint_name: the monitored endpoint (it must capture to ``bucket``
        under ``data_capture_prefix`` and be passed the inference IDs). Add a dependency on the endpoint.
    :param problem_type: ``regression`` or ``binary_classification``. :param alarm_threshold: the metric's limit.
    :param metric: the metric the alarm watches (the model's evaluation metric): ``rmse`` (default), ``mae``, ``mse``
        (alarm above) or ``r2`` (below) for regression; ``auc`` (default), ``accuracy``, ``f1``, ``precision`` or
        ``recall`` (alarm below) for binary classification.
    :param bucket / encryption_key: the artifacts bucket (capture, ground truth, reports) and its key.
    :param data_capture_prefix / ground_truth_prefix / output_prefix: key prefixes ending in ``/``.
    :param probability_threshold: binary classification only. Default 0.5.
    :param start_time_offset / end_time_offset: Default ``-P1D`` / ``-PT1H``.
    :param schedule_expression: Default hourly; daily ``cron(0 H ? * * *)`` and ``cron(0 H/N ? * * *)`` also work.
        The alarm's period is the schedule's; it alarms on one breaching execution within two periods.
    :param instance_type / instance_count / volume_size_gb: Default ml.m5.large, 1, 20.
    :param max_runtime: of an execution (merge and analysis). Default 30 minutes, the most an hourly schedule allows.
    :param revision: changes the definition's name when a deploy-time value changes it (see DataQualityMonitor).
    :param alarm_topic: the alarm's action, and failed executions' notifications ("no data" excepted).
    :param vpc / vpc_subnets / security_groups: run the jobs in this VPC (NetworkConfig.VpcConfig), as
        DataQualityMonitor does.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        name: str,
        endpoint_name: str,
        problem_type: str,
        alarm_threshold: float,
        bucket: s3.IBucket,
        encryption_key: kms.IKey,
        data_capture_prefix: str,
        ground_truth_prefix: str,
        output_prefix: str,
        metric: Optional[str] = None,
        probability_threshold: float = 0.5,
        start_time_offset: str = "-P1D",
        end_time_offset: str = "-PT1H",
        schedule_expression: str = HOURLY,
        instance_type: str = "ml.m5.large",
        instance_count: int = 1,
        volume_size_gb: int = 20,
        max_runtime: Duration = MAX_HOURLY_RUNTIME,
        revision: Optional[str] = None,
        alarm_topic: Optional[sns.ITopic] = None,
        vpc: Optional[ec2.IVpc] = None,
        vpc_subnets: Optional[ec2.SubnetSelection] = None,
        security_groups: Optional[Sequence[ec2.ISecurityGroup]] = None,
    ) -> None:
        super().__init__(scope, id_)
        job_name, period = self._validate(
            name, problem_type, revision, max_runtime, schedule_expression, probability_threshold,
            start_time_offset, end_time_offset,
            {"data_capture_prefix": data_capture_prefix, "ground_truth_prefix": ground_truth_prefix,
             "output_prefix": output_prefix},
        )
        sm_problem_type, default_metric = PROBLEM_TYPES[problem_type]
        self.metric_name = metric or default_metric
        if self.metric_name not in ALARM_METRICS[problem_type]:
            raise ValueError(f"ModelQualityMonitor metric for {problem_type} must be one of "
                             f"{', '.join(ALARM_METRICS[problem_type])}, got {metric!r}")
        higher_is_worse = ALARM_METRICS[problem_type][self.metric_name]
        self.problem_type = problem_type
        self.endpoint_name = endpoint_name
        self.schedule_name = job_name
        self.schedule_period = period
        self.alarm_threshold = alarm_threshold
        self.placement = workload_placement("ModelQualityMonitor", vpc, vpc_subnets, security_groups)
        self.output_uri = bucket.s3_url_for_object(output_prefix.rstrip("/"))
        self.ground_truth_uri = bucket.s3_url_for_object(ground_truth_prefix.rstrip("/"))
        self.image_uri, analyzer_repository = analyzer_image(self)
        merger_repository = analyzer_repository.replace(MODEL_MONITOR_REPOSITORY, GROUND_TRUTH_MERGER_REPOSITORY)
        self.role = self._role(job_name, bucket, encryption_key, [analyzer_repository, merger_repository],
                               data_capture_prefix, ground_truth_prefix, output_prefix)
        if self.placement is not None:
            grant_network_interfaces(self.role, self.placement, "sagemaker")

        binary = problem_type == "binary_classification"
        self.job_definition = _mq(
            self,
            "JobDefinition",
            model_quality_app_specification=_mq.ModelQualityAppSpecificationProperty(
                image_uri=self.image_uri,
                problem_type=sm_problem_type,
                environment={"publish_cloudwatch_metrics": "Enabled"},
            ),
            model_quality_job_input=_mq.ModelQualityJobInputProperty(
                endpoint_input=_mq.EndpointInputProperty(
                    endpoint_name=endpoint_name,
                    local_path="/opt/ml/processing/input/endpoint",
                    s3_input_mode="File",
                    s3_data_distribution_type="FullyReplicated",
                    inference_attribute=None if binary else "0",
                    probability_attribute="0" if binary else None,
                    probability_threshold_attribute=probability_threshold if binary else None,
                    start_time_offset=start_time_offset,
                    end_time_offset=end_time_offset,
                ),
                ground_truth_s3_input=_mq.MonitoringGroundTruthS3InputProperty(s3_uri=self.ground_truth_uri),
            ),
            model_quality_job_output_config=_mq.MonitoringOutputConfigProperty(
                kms_key_id=encryption_key.key_arn,
                monitoring_outputs=[_mq.MonitoringOutputProperty(s3_output=_mq.S3OutputProperty(
                    local_path="/opt/ml/processing/output", s3_uri=self.output_uri, s3_upload_mode="EndOfJob"))],
            ),
            job_resources=_mq.MonitoringResourcesProperty(cluster_config=_mq.ClusterConfigProperty(
                instance_count=instance_count, instance_type=instance_type, volume_size_in_gb=volume_size_gb,
                volume_kms_key_id=encryption_key.key_arn,
            )),
            network_config=_mq.NetworkConfigProperty(
                enable_network_isolation=True, enable_inter_container_traffic_encryption=True,
                vpc_config=_mq.VpcConfigProperty(
                    security_group_ids=list(self.placement.security_group_ids),
                    subnets=list(self.placement.subnet_ids),
                ) if self.placement is not None else None,
            ),
            role_arn=self.role.role_arn,
            stopping_condition=_mq.StoppingConditionProperty(max_runtime_in_seconds=int(max_runtime.to_seconds())),
        )
        self.job_definition_arn: str = self.job_definition.attr_job_definition_arn
        short = name[:40].rstrip("-") if not Token.is_unresolved(name) else "model-quality"
        Aspects.of(self).add(_NameJobDefinition(self, short, revision))
        self.job_definition.node.add_dependency(self.role.node.find_child("DefaultPolicy"))
        self.schedule = sagemaker.CfnMonitoringSchedule(
            self,
            "Schedule",
            monitoring_schedule_name=job_name,
            monitoring_schedule_config=sagemaker.CfnMonitoringSchedule.MonitoringScheduleConfigProperty(
                monitoring_job_definition_name="set-at-synthesis",
                monitoring_type="ModelQuality",
                schedule_config=sagemaker.CfnMonitoringSchedule.ScheduleConfigProperty(
                    schedule_expression=schedule_expression
                ),
            ),
        )
        self.schedule.add_resource_dependency(self.job_definition)

        metric = self.metric_model_quality(period=period)
        self.alarm = cloudwatch.Alarm(
            self,
            "MetricAlarm",
            alarm_description=(
                f"Model quality of {endpoint_name}: {self.metric_name} "
                f"{'above' if higher_is_worse else 'below'} {alarm_threshold} on captured predictions joined "
                "with ground truth"
            ) if not Token.is_unresolved(endpoint_name) else f"Model quality: {self.metric_name}",
            metric=metric,
            threshold=alarm_threshold,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD
            if higher_is_worse else cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
            # The execution's metric may be stamped with its analysis window rather than its run time: two periods.
            evaluation_periods=2,
            datapoints_to_alarm=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        self.failure_events: Optional[FailureEvents] = None
        if alarm_topic is not None:
            self.alarm.add_alarm_action(cloudwatch_actions.SnsAction(alarm_topic))
            self.failure_events = FailureEvents(
                self, "Failures", topic=alarm_topic, processing_job_role_arns=[self.role.role_arn]
            )

    @staticmethod
    def _validate(name, problem_type, revision, max_runtime, schedule_expression, probability_threshold,
                  start_time_offset, end_time_offset, prefixes) -> tuple[str, Duration]:
        if problem_type not in PROBLEM_TYPES:
            raise ValueError(f"ModelQualityMonitor problem_type must be one of {', '.join(PROBLEM_TYPES)}, got "
                             f"{problem_type!r}")
        if revision is not None and not Token.is_unresolved(revision) and not re.match(r"^[a-zA-Z0-9]{1,12}$", revision):
            raise ValueError(f"ModelQualityMonitor revision must be 1-12 letters or digits, got {revision!r}")
        job_name = f"{name}-model-quality"
        if not Token.is_unresolved(name) and len(job_name) > 63:
            job_name = f"{name}-mq"
        if not Token.is_unresolved(name) and not _JOB_NAME_RE.match(job_name):
            raise ValueError(f"ModelQualityMonitor name {name!r}: '{job_name}' must be 1-63 letters, digits and "
                             "hyphens")
        period = schedule_period(schedule_expression)
        if period.to_seconds() == 3600 and max_runtime.to_seconds() > MAX_HOURLY_RUNTIME.to_seconds():
            raise ValueError("ModelQualityMonitor max_runtime must not exceed 30 minutes on an hourly schedule (the "
                             "merge job and the monitoring job share the hour)")
        if max_runtime.to_seconds() > period.to_seconds():
            raise ValueError("ModelQualityMonitor max_runtime must not exceed the schedule's period")
        if not 0 < probability_threshold < 1:
            raise ValueError(f"ModelQualityMonitor probability_threshold must be between 0 and 1, got "
                             f"{probability_threshold}")
        for label, offset in (("start_time_offset", start_time_offset), ("end_time_offset", end_time_offset)):
            if not _OFFSET_RE.match(offset):
                raise ValueError(f"ModelQualityMonitor {label} must be a negative ISO 8601 duration such as -P1D or "
                                 f"-PT1H, got {offset!r}")
        if _offset_seconds(start_time_offset) >= _offset_seconds(end_time_offset):
            raise ValueError(f"ModelQualityMonitor start_time_offset {start_time_offset} must be further back than "
                             f"end_time_offset {end_time_offset}")
        for label, prefix in prefixes.items():
            if not prefix.endswith("/") or prefix.startswith("/"):
                raise ValueError(f"ModelQualityMonitor {label} must be a key prefix ending in '/', got {prefix!r}")
        return job_name, period

    def _role(self, job_name: str, bucket: s3.IBucket, encryption_key: kms.IKey, repositories: list[str],
              data_capture_prefix: str, ground_truth_prefix: str, output_prefix: str) -> iam.Role:
        """Capture and ground truth (read), output prefix (read and write: the merge job writes the merged records
        there and the analysis reads them), key, the analyzer and merger images, logs, the model-metrics namespace."""
        role = iam.Role(self, "Role", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
                        description=f"SageMaker Model Monitor model-quality job {job_name}")
        bucket.grant_read(role, f"{data_capture_prefix}*")
        bucket.grant_read(role, f"{ground_truth_prefix}*")
        bucket.grant_read(role, f"{output_prefix}*")
        bucket.grant_put(role, f"{output_prefix}*")
        encryption_key.grant_encrypt_decrypt(role)
        role.add_to_policy(iam.PolicyStatement(
            sid="MonitorImages",
            actions=["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"],
            resources=repositories,
        ))
        role.add_to_policy(iam.PolicyStatement(sid="EcrAuth", actions=["ecr:GetAuthorizationToken"], resources=["*"]))
        processing_logs = Stack.of(self).format_arn(
            service="logs", resource="log-group", resource_name="/aws/sagemaker/ProcessingJobs",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        role.add_to_policy(iam.PolicyStatement(
            sid="Logs",
            actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
            resources=[processing_logs, f"{processing_logs}:*"],
        ))
        role.add_to_policy(iam.PolicyStatement(
            sid="Metrics", actions=["cloudwatch:PutMetricData"], resources=["*"],
            conditions={"StringEquals": {"cloudwatch:namespace": MODEL_QUALITY_METRICS_NAMESPACE}},
        ))
        compliance.acknowledge(
            role, "AwsSolutions-IAM5[Resource::*]",
            "ecr:GetAuthorizationToken has no resource type; cloudwatch:PutMetricData has none either and is "
            "limited to the Model Monitor model-metrics namespace by condition.",
        )
        compliance.acknowledge_wildcard_resources(
            role,
            [bucket.arn_for_objects(f"{p}*") for p in (data_capture_prefix, ground_truth_prefix, output_prefix)]
            + [f"{processing_logs}:*"],
            "The endpoint's data-capture prefix and the ground-truth prefix (read), the monitor's own output prefix "
            "(merged records and reports) and the log streams of the SageMaker processing jobs log group.",
        )
        compliance.acknowledge_wildcard_actions(
            role, compliance.S3_READ_ACTIONS + compliance.S3_WRITE_ACTIONS + compliance.KMS_ACTIONS,
            "CDK grant actions, limited to the capture, ground-truth and output prefixes and the lake key.",
        )
        return role

    def metric_model_quality(self, *, period: Optional[Duration] = None) -> cloudwatch.Metric:
        """The alarmed metric of this schedule (default ``rmse`` or ``auc``): Maximum of an error, Minimum of a score;
        one datum per execution."""
        return cloudwatch.Metric(
            namespace=MODEL_QUALITY_METRICS_NAMESPACE,
            metric_name=self.metric_name,
            dimensions_map={"Endpoint": self.endpoint_name, "MonitoringSchedule": self.schedule_name},
            statistic="Maximum" if ALARM_METRICS[self.problem_type][self.metric_name] else "Minimum",
            period=period or self.schedule_period,
        )


def _offset_seconds(offset: str) -> int:
    match = re.match(r"^-P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?)?$", offset)
    days, hours, minutes = (int(g or 0) for g in match.groups()) if match else (0, 0, 0)
    return -(days * 86400 + hours * 3600 + minutes * 60)


class GroundTruthIngestion(Construct):
    """Turns uploaded labels into Model Monitor's ground truth (the function of ``lambda_src/ground_truth``).

    An EventBridge rule on ``upload_bucket``'s ``Object Created`` events under ``upload_prefix`` (the bucket must send
    events to EventBridge: the lake's raw bucket does) invokes the function, which writes the records under
    ``ground_truth_prefix`` (the :class:`ModelQualityMonitor`'s), the rejected rows with their reasons and a report
    under ``quarantine_prefix`` (both in ``output_bucket``), and publishes a summary to ``alarm_topic`` whenever a row
    is rejected, nothing is written, an inference ID matches no captured request (with ``data_capture_prefix``: the
    captures of the upload's hour and ``capture_lookback`` before it are read, at most ``max_capture_bytes``) or the
    file cannot be read. Delivery: the rule's target retries twice within 2 hours, then the event goes to
    :attr:`dead_letter_queue`, whose alarm notifies the topic.

    :param code_dir: the function code (``ground_truth_handler.py``). :param problem_type: ``regression`` or
        ``binary_classification`` (what a valid label is). :param encryption_key: the key of both buckets (the lake
        key). :param alarm_topic_key: the topic's KMS key, when it has one. :param name: how messages name the monitor.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        code_dir: Path,
        problem_type: str,
        upload_bucket: s3.IBucket,
        upload_prefix: str,
        output_bucket: s3.IBucket,
        ground_truth_prefix: str,
        quarantine_prefix: str,
        encryption_key: kms.IKey,
        alarm_topic: Optional[sns.ITopic] = None,
        alarm_topic_key: Optional[kms.IKey] = None,
        data_capture_prefix: Optional[str] = None,
        capture_lookback: Duration = Duration.hours(24),
        max_capture_bytes: int = 256 * 1024 * 1024,
        name: str = "",
        vpc: Optional[ec2.IVpc] = None,
        vpc_subnets: Optional[ec2.SubnetSelection] = None,
        security_groups: Optional[Sequence[ec2.ISecurityGroup]] = None,
        timeout: Duration = Duration.minutes(5),
        memory_size: int = 1024,
        log_retention: logs.RetentionDays = logs.RetentionDays.THREE_MONTHS,
        log_encryption_key: Optional[kms.IKey] = None,
        removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
    ) -> None:
        super().__init__(scope, id_)
        code_dir = Path(code_dir)
        if not (code_dir / "ground_truth_handler.py").is_file():
            raise ValueError(f"GroundTruthIngestion code_dir {code_dir} has no ground_truth_handler.py "
                             f"(handler {GROUND_TRUTH_HANDLER})")
        if problem_type not in PROBLEM_TYPES:
            raise ValueError(f"GroundTruthIngestion problem_type must be one of {', '.join(PROBLEM_TYPES)}, got "
                             f"{problem_type!r}")
        prefixes = {"upload_prefix": upload_prefix, "ground_truth_prefix": ground_truth_prefix,
                    "quarantine_prefix": quarantine_prefix}
        if data_capture_prefix is not None:
            prefixes["data_capture_prefix"] = data_capture_prefix
        for label, prefix in prefixes.items():
            if not prefix.endswith("/") or prefix.startswith("/"):
                raise ValueError(f"GroundTruthIngestion {label} must be a key prefix ending in '/', got {prefix!r}")
        placement = workload_placement("GroundTruthIngestion", vpc, vpc_subnets, security_groups)
        lookback_hours = int(capture_lookback.to_hours()) if data_capture_prefix is not None else 0

        self.log_key = log_encryption_key or rotating_key(
            self, "LogKey", description="Ground-truth ingestion function logs", removal_policy=removal_policy)
        allow_cloudwatch_logs(self.log_key)
        self.log_group = logs.LogGroup(self, "Logs", retention=log_retention, encryption_key=self.log_key,
                                       removal_policy=removal_policy)
        self.dead_letter_queue = sqs.Queue(self, "DeadLetters", encryption=sqs.QueueEncryption.SQS_MANAGED,
                                           enforce_ssl=True, retention_period=Duration.days(14))
        compliance.acknowledge(
            self.dead_letter_queue, "AwsSolutions-SQS3",
            "This queue is the dead-letter queue of the upload rule's target and of the function's asynchronous "
            "invocations; a dead-letter queue needs no dead-letter queue of its own.",
        )

        role = iam.Role(self, "Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                        description="Ground-truth ingestion function")
        self.role = role
        self.log_group.grant_write(role)
        uploads = upload_bucket.arn_for_objects(f"{upload_prefix}*")
        written = [output_bucket.arn_for_objects(f"{ground_truth_prefix}*"),
                   output_bucket.arn_for_objects(f"{quarantine_prefix}*")]
        role.add_to_policy(iam.PolicyStatement(sid="Uploads", actions=["s3:GetObject", "s3:GetObjectVersion"],
                                               resources=[uploads]))
        role.add_to_policy(iam.PolicyStatement(sid="GroundTruth", actions=["s3:PutObject"], resources=written))
        wildcard_resources = [uploads, *written]
        if data_capture_prefix is not None:
            captures = output_bucket.arn_for_objects(f"{data_capture_prefix}*")
            wildcard_resources.append(captures)
            role.add_to_policy(iam.PolicyStatement(sid="Captures", actions=["s3:GetObject"], resources=[captures]))
            role.add_to_policy(iam.PolicyStatement(
                sid="ListCaptures", actions=["s3:ListBucket"], resources=[output_bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{data_capture_prefix}*"]}},
            ))
        encryption_key.grant_encrypt_decrypt(role)
        if alarm_topic is not None:
            alarm_topic.grant_publish(role)
        if alarm_topic_key is not None:
            alarm_topic_key.grant(role, "kms:Decrypt", "kms:GenerateDataKey*")
        compliance.acknowledge_wildcard_actions(
            role, compliance.KMS_ACTIONS,
            "Reading and writing SSE-KMS objects and publishing to the KMS-encrypted alarm topic, on those keys "
            "only.",
        )
        compliance.acknowledge_wildcard_resources(
            role, wildcard_resources,
            "The upload prefix (read), the ground-truth and quarantine prefixes (write) and the endpoint's capture "
            "prefix (read): objects under them have names chosen at run time.",
        )

        self.function = lambda_.Function(
            self,
            "Function",
            description="Ground-truth ingestion for Model Monitor",
            runtime=lambda_.Runtime.PYTHON_3_12,
            architecture=lambda_.Architecture.ARM_64,
            handler=GROUND_TRUTH_HANDLER,
            code=lambda_.Code.from_asset(str(code_dir), exclude=CODE_EXCLUDES),
            role=role,
            timeout=timeout,
            memory_size=memory_size,
            log_group=self.log_group,
            vpc=vpc,
            vpc_subnets=vpc_subnets if vpc is not None else None,
            security_groups=list(security_groups) if security_groups else None,
            dead_letter_queue=self.dead_letter_queue,
            environment={
                "UPLOAD_PREFIX": upload_prefix,
                "OUTPUT_BUCKET": output_bucket.bucket_name,
                "GROUND_TRUTH_PREFIX": ground_truth_prefix,
                "QUARANTINE_PREFIX": quarantine_prefix,
                "PROBLEM_TYPE": problem_type,
                "ALARM_TOPIC_ARN": alarm_topic.topic_arn if alarm_topic is not None else "",
                "CAPTURE_PREFIX": data_capture_prefix or "",
                "CAPTURE_LOOKBACK_HOURS": str(lookback_hours),
                "MAX_CAPTURE_BYTES": str(max_capture_bytes),
                "MONITOR_NAME": name,
            },
        )
        compliance.acknowledge(
            self.function, "AwsSolutions-L1",
            "Python 3.12 is pinned on purpose: the function is tested and rehearsed on the same runtime as the "
            "platform's other functions; the runtimes move together.",
        )
        if placement is not None:
            # A role passed to a Function gets no VPC policy from CDK: the ENI actions Lambda documents, inline.
            grant_network_interfaces(role, placement, "lambda")
        compliance.checkov_skip_event_function(self.function, in_vpc=placement is not None, invoked="async",
                                               dead_letters=self.dead_letter_queue)
        self.rule = events.Rule(
            self, "OnUpload", description="Ground-truth labels uploaded: ingest them for Model Monitor",
            event_pattern=object_created(upload_bucket, [{"prefix": upload_prefix}]),
        )
        self.rule.add_target(events_targets.LambdaFunction(
            self.function, dead_letter_queue=self.dead_letter_queue, retry_attempts=2,
            max_event_age=Duration.hours(2),
        ))
        self.dead_letter_alarm = cloudwatch.Alarm(
            self, "DeadLettersAlarm",
            alarm_description="Ground-truth ingestion: an upload event could not be handled (see the dead-letter "
            "queue)",
            metric=self.dead_letter_queue.metric_approximate_number_of_messages_visible(
                period=Duration.minutes(5), statistic="Maximum"),
            threshold=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        if alarm_topic is not None:
            self.dead_letter_alarm.add_alarm_action(cloudwatch_actions.SnsAction(alarm_topic))
