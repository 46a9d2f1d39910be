"""SageMaker Model Monitor: an hourly data-quality schedule on an endpoint's captured requests."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Optional, Sequence

import jsii
from aws_cdk import ArnFormat, Aspects, Duration, IAspect, Stack, Token
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sagemaker as sagemaker
from aws_cdk import aws_sns as sns
from constructs import Construct

from mlops_constructs import compliance
from mlops_constructs._arns import s3_object_arn
from mlops_constructs.network import grant_network_interfaces
from mlops_constructs.monitoring.failure_events import FailureEvents
from mlops_constructs.monitoring.images import analyzer_image
from mlops_constructs.network import workload_placement

MODEL_MONITOR_METRICS_NAMESPACE = "aws/sagemaker/Endpoints/data-metrics"
HOURLY = "cron(0 * ? * * *)"
_JOB_NAME_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
_dq = sagemaker.CfnDataQualityJobDefinition


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
    :param vpc / vpc_subnets / security_groups: run the monitoring jobs in this VPC (``NetworkConfig.VpcConfig``,
        next to network isolation and inter-container encryption, which stay on: SageMaker stages the captured data
        and baselines and uploads the reports and metrics, the analyzer container calls nothing); the role gets the EC2
        actions SageMaker documents for jobs in a VPC. ``vpc_subnets`` defaults to the VPC's private subnets;
        ``security_groups`` are required with ``vpc``. Default: none (SageMaker's network).
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
        vpc: Optional[ec2.IVpc] = None,
        vpc_subnets: Optional[ec2.SubnetSelection] = None,
        security_groups: Optional[Sequence[ec2.ISecurityGroup]] = None,
    ) -> None:
        super().__init__(scope, id_)
        job_name = self._validate(name, revision, max_runtime, schedule_expression, data_capture_prefix, output_prefix)
        #: Where the monitoring jobs run (subnets, security groups); None outside a VPC.
        self.placement = workload_placement("DataQualityMonitor", vpc, vpc_subnets, security_groups)
        self.schedule_name = job_name
        self.output_uri = bucket.s3_url_for_object(output_prefix.rstrip("/"))
        self.image_uri, repository_arn = analyzer_image(self)
        self.role = self._role(
            job_name, bucket, encryption_key, repository_arn, data_capture_prefix, output_prefix,
            baselines=[s3_object_arn(baseline_statistics_uri), s3_object_arn(baseline_constraints_uri)],
        )
        if self.placement is not None:
            grant_network_interfaces(self.role, self.placement, "sagemaker")
        self.job_definition = _dq(
            self,
            "JobDefinition",
            data_quality_app_specification=_dq.DataQualityAppSpecificationProperty(
                image_uri=self.image_uri,
                environment={"publish_cloudwatch_metrics": "Enabled" if publish_cloudwatch_metrics else "Disabled"},
            ),
            data_quality_baseline_config=_dq.DataQualityBaselineConfigProperty(
                constraints_resource=_dq.ConstraintsResourceProperty(s3_uri=baseline_constraints_uri),
                statistics_resource=_dq.StatisticsResourceProperty(s3_uri=baseline_statistics_uri),
            ),
            data_quality_job_input=_dq.DataQualityJobInputProperty(
                endpoint_input=_dq.EndpointInputProperty(
                    endpoint_name=endpoint_name,
                    local_path="/opt/ml/processing/input/endpoint",
                    s3_input_mode="File",
                    s3_data_distribution_type="FullyReplicated",
                )
            ),
            data_quality_job_output_config=_dq.MonitoringOutputConfigProperty(
                kms_key_id=encryption_key.key_arn,
                monitoring_outputs=[
                    _dq.MonitoringOutputProperty(
                        s3_output=_dq.S3OutputProperty(
                            local_path="/opt/ml/processing/output", s3_uri=self.output_uri, s3_upload_mode="EndOfJob"
                        )
                    )
                ],
            ),
            job_resources=_dq.MonitoringResourcesProperty(
                cluster_config=_dq.ClusterConfigProperty(
                    instance_count=instance_count,
                    instance_type=instance_type,
                    volume_size_in_gb=volume_size_gb,
                    volume_kms_key_id=encryption_key.key_arn,
                )
            ),
            network_config=_dq.NetworkConfigProperty(
                enable_network_isolation=True, enable_inter_container_traffic_encryption=True,
                vpc_config=_dq.VpcConfigProperty(
                    security_group_ids=list(self.placement.security_group_ids),
                    subnets=list(self.placement.subnet_ids),
                )
                if self.placement is not None
                else None,
            ),
            role_arn=self.role.role_arn,
            stopping_condition=_dq.StoppingConditionProperty(max_runtime_in_seconds=int(max_runtime.to_seconds())),
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

    @staticmethod
    def _validate(name, revision, max_runtime, schedule_expression, data_capture_prefix, output_prefix) -> str:
        """The schedule's name, once the props are checked."""
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
        return job_name

    def _role(
        self,
        job_name: str,
        bucket: s3.IBucket,
        encryption_key: kms.IKey,
        repository_arn: str,
        data_capture_prefix: str,
        output_prefix: str,
        *,
        baselines: list[str],
    ) -> iam.Role:
        """Capture prefix (read), baselines (read), output prefix (write), key, analyzer image, logs, metrics."""
        role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description=f"SageMaker Model Monitor data-quality job {job_name}",
        )
        bucket.grant_read(role, f"{data_capture_prefix}*")
        bucket.grant_put(role, f"{output_prefix}*")
        role.add_to_policy(iam.PolicyStatement(sid="Baselines", actions=["s3:GetObject"], resources=baselines))
        encryption_key.grant_encrypt_decrypt(role)
        role.add_to_policy(
            iam.PolicyStatement(
                sid="AnalyzerImage",
                actions=["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"],
                resources=[repository_arn],
            )
        )
        role.add_to_policy(iam.PolicyStatement(sid="EcrAuth", actions=["ecr:GetAuthorizationToken"], resources=["*"]))
        processing_logs = Stack.of(self).format_arn(
            service="logs",
            resource="log-group",
            resource_name="/aws/sagemaker/ProcessingJobs",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="Logs",
                # CreateLogGroup: the account-wide group exists only once some processing job has run.
                actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                resources=[processing_logs, f"{processing_logs}:*"],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="Metrics",
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringEquals": {"cloudwatch:namespace": MODEL_MONITOR_METRICS_NAMESPACE}},
            )
        )
        compliance.acknowledge(
            role,
            "AwsSolutions-IAM5[Resource::*]",
            "ecr:GetAuthorizationToken has no resource type; cloudwatch:PutMetricData has none either and is "
            "limited to the Model Monitor namespace by condition.",
        )
        compliance.acknowledge_wildcard_resources(
            role,
            [
                bucket.arn_for_objects(f"{data_capture_prefix}*"),
                bucket.arn_for_objects(f"{output_prefix}*"),
                f"{processing_logs}:*",
            ],
            "The endpoint's data-capture prefix (read), the monitor's own report prefix (write) and the log streams "
            "of the SageMaker processing jobs log group.",
        )
        compliance.acknowledge_wildcard_actions(
            role,
            compliance.S3_READ_ACTIONS + compliance.S3_WRITE_ACTIONS + compliance.KMS_ACTIONS,
            "CDK grant actions, limited to the capture and report prefixes and the lake key in the same statements.",
        )
        return role

    def metric_feature_baseline_drift(self, feature: str, *, endpoint_name: str, period: Duration = Duration.hours(1)):
        """Model Monitor's ``feature_baseline_drift_<feature>`` metric of this schedule."""
        return cloudwatch.Metric(
            namespace=MODEL_MONITOR_METRICS_NAMESPACE,
            metric_name=f"feature_baseline_drift_{feature}",
            dimensions_map={"Endpoint": endpoint_name, "MonitoringSchedule": self.schedule_name},
            statistic="Maximum",
            period=period,
        )
