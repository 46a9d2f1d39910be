"""Drift-triggered retraining: a Model Monitor execution that finds drift starts the model's build pipeline, at most
once per cooldown, and tells the alarm topic which features drifted (the function of ``lambda_src/drift_retrain``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping, Optional, Sequence

from aws_cdk import Duration, RemovalPolicy, Stack, Token
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
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from mlops_constructs import compliance
from mlops_constructs.network import grant_network_interfaces, workload_placement
from mlops_constructs.pipeline_grants import ISageMakerPipeline
from mlops_constructs.storage import allow_cloudwatch_logs, rotating_key

HANDLER = "drift_handler.handler"
CODE_EXCLUDES = ["tests", "**/tests", "__pycache__", "**/__pycache__", "*.pyc", "README.md"]
#: What Model Monitor's analyzer writes as the exit message of an execution that found violations.
VIOLATIONS_EXIT_MESSAGE_PREFIX = "CompletedWithViolations"
PROCESSING_JOB_STATE_CHANGE = "SageMaker Processing Job State Change"
DRIFT_CHECK_TYPES = ("baseline_drift_check", "categorical_values_check")
KNOWN_CHECK_TYPES = ("data_type_check", "completeness_check", "baseline_drift_check", "missing_column_check",
                     "extra_column_check", "categorical_values_check")
MIN_COOLDOWN = Duration.hours(1)
_PARAMETER_NAME = re.compile(r"^[A-Za-z0-9\-_]{1,256}$")


class DriftRetraining(Construct):
    """Retrain a model when its Model Monitor data-quality schedule finds drift, at most once per ``cooldown``.

    An EventBridge rule matches ``SageMaker Processing Job State Change`` events of the monitoring jobs run with
    ``monitoring_job_role_arn`` (a :class:`DataQualityMonitor`'s ``role``: the event carries no tags, the role tells
    this monitor's jobs from the account's others, as its failure rule does) that ended ``Completed`` with an exit
    message starting ``CompletedWithViolations``. The function (``drift_handler.handler`` in ``code_dir``) reads the
    execution's ``constraint_violations.json`` under ``reports_prefix``, keeps the drift violations, and starts
    ``pipeline`` unless any execution of it started within the cooldown (checked with ``ListPipelineExecutions``: no
    state to keep, and a retrained model that drifts again within the cooldown starts nothing). It publishes the
    drifted features and the action taken to ``alarm_topic``; a drift while the cooldown holds is logged and counted,
    published only with ``notify_during_cooldown``. Bad input (no or malformed report, unexpected event) is reported
    on the topic, never retried. See ``lambda_src/drift_retrain/drift_handler.py``.

    Delivery: the rule's target retries ``retry_attempts`` times within ``max_event_age``, then the event goes to
    ``dead_letter_queue`` (SSE-SQS, TLS only, 14 days), which the function's own asynchronous failures (a timeout)
    also reach; an alarm on it notifies ``alarm_topic``. A repeated event cannot start two executions (the start's
    client request token comes from the monitoring job).

    :param pipeline: the model's build pipeline (a :class:`ModelBuildPipeline` or a
        :class:`SageMakerPipelineReference`). The role may list its executions and start it, nothing else.
    :param monitoring_job_role_arn: role the monitoring jobs run with (``DataQualityMonitor.role.role_arn``).
    :param bucket / encryption_key / reports_prefix: where the monitor writes its reports (the monitor's
        ``output_prefix``, ending in ``/``) and the bucket's key: the function may read only that prefix.
    :param alarm_topic: where notifications go. :param alarm_topic_key: the topic's KMS key (publishers need
        ``kms:GenerateDataKey*`` and ``kms:Decrypt``). Default: none (an unencrypted or AWS-managed-key topic).
    :param code_dir: the function code (the platform's is ``lambda_src/drift_retrain``; required: constructs take
        code locations as props).
    :param cooldown: at most one retrain per this period. At least 1 hour (checked unless a token; a token must be
        ``Duration.seconds(<token>)``). Default 24 hours.
    :param pipeline_parameters: parameters of the started executions, e.g. ``{"InputDataUrl": ...}``. Default: none
        (the pipeline's defaults: the model's curated data).
    :param drift_check_types: Model Monitor check types that count as drift. Default: ``baseline_drift_check``,
        ``categorical_values_check`` (the others mean broken input data, which retraining does not fix).
    :param notify_during_cooldown: also publish drift found while the cooldown holds. Default False (an hourly
        monitor would repeat the alarm many times a day).
    :param model_name: how notifications name the model. Default: the pipeline's name.
    :param vpc / vpc_subnets / security_groups: run the function in a VPC (it calls SageMaker, S3, SNS and KMS: the
        VPC needs endpoints for them). Default: no VPC.
    :param retry_attempts / max_event_age: of the rule's target. Default: 2, 2 hours.
    :param timeout / memory_size: of the function. Default: 60 seconds, 256 MB.
    :param log_retention / log_encryption_key / removal_policy: of the function's log group (and a new key). Default:
        90 days, a new customer-managed key with rotation, RETAIN.
    :param log_level: ``LOG_LEVEL`` of the function. Default INFO.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        pipeline: ISageMakerPipeline,
        monitoring_job_role_arn: str,
        bucket: s3.IBucket,
        encryption_key: kms.IKey,
        reports_prefix: str,
        alarm_topic: sns.ITopic,
        code_dir: Path,
        alarm_topic_key: Optional[kms.IKey] = None,
        cooldown: Duration = Duration.hours(24),
        pipeline_parameters: Optional[Mapping[str, str]] = None,
        drift_check_types: Sequence[str] = DRIFT_CHECK_TYPES,
        notify_during_cooldown: bool = False,
        model_name: Optional[str] = None,
        vpc: Optional[ec2.IVpc] = None,
        vpc_subnets: Optional[ec2.SubnetSelection] = None,
        security_groups: Optional[Sequence[ec2.ISecurityGroup]] = None,
        retry_attempts: int = 2,
        max_event_age: Duration = Duration.hours(2),
        timeout: Duration = Duration.seconds(60),
        memory_size: int = 256,
        log_retention: logs.RetentionDays = logs.RetentionDays.THREE_MONTHS,
        log_encryption_key: Optional[kms.IKey] = None,
        log_level: str = "INFO",
        removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
    ) -> None:
        super().__init__(scope, id_)
        code_dir = Path(code_dir)
        parameters = dict(pipeline_parameters or {})
        cooldown_seconds = self._validate(code_dir, reports_prefix, cooldown, parameters, drift_check_types,
                                          retry_attempts)
        # Raises the network module's errors (a VPC without security groups, subnets without a VPC...).
        self.placement = workload_placement("DriftRetraining", vpc, vpc_subnets, security_groups)
        self.pipeline = pipeline
        self.cooldown = cooldown

        self.log_key: kms.IKey = log_encryption_key or rotating_key(
            self, "LogKey", description="Drift retraining function logs", removal_policy=removal_policy
        )
        allow_cloudwatch_logs(self.log_key)
        self.log_group = logs.LogGroup(
            self, "Logs", retention=log_retention, encryption_key=self.log_key, removal_policy=removal_policy
        )
        self.dead_letter_queue = sqs.Queue(
            self,
            "DeadLetters",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        compliance.acknowledge(
            self.dead_letter_queue,
            "AwsSolutions-SQS3",
            "This queue is the dead-letter queue of the drift rule's target and of the function's asynchronous "
            "invocations; a dead-letter queue needs no dead-letter queue of its own.",
        )
        self.role = self._role(pipeline, bucket, encryption_key, reports_prefix, alarm_topic, alarm_topic_key)

        self.function = lambda_.Function(
            self,
            "Function",
            description=f"Drift-triggered retraining of {pipeline.pipeline_name}"
            if not Token.is_unresolved(pipeline.pipeline_name) else "Drift-triggered retraining",
            runtime=lambda_.Runtime.PYTHON_3_12,
            architecture=lambda_.Architecture.ARM_64,  # standard library and the runtime's boto3: no native code
            handler=HANDLER,
            code=lambda_.Code.from_asset(str(code_dir), exclude=CODE_EXCLUDES),
            role=self.role,
            timeout=timeout,
            memory_size=memory_size,
            log_group=self.log_group,
            vpc=vpc,
            vpc_subnets=vpc_subnets if vpc is not None else None,
            security_groups=list(security_groups) if security_groups else None,
            dead_letter_queue=self.dead_letter_queue,
            environment={
                "PIPELINE_NAME": pipeline.pipeline_name,
                "ALARM_TOPIC_ARN": alarm_topic.topic_arn,
                "REPORTS_BUCKET": bucket.bucket_name,
                "REPORTS_PREFIX": reports_prefix,
                "COOLDOWN_SECONDS": cooldown_seconds,
                "PIPELINE_PARAMETERS": Stack.of(self).to_json_string(parameters),
                "DRIFT_CHECK_TYPES": ",".join(drift_check_types),
                "NOTIFY_DURING_COOLDOWN": "true" if notify_during_cooldown else "false",
                "MODEL_NAME": model_name or pipeline.pipeline_name,
                "LOG_LEVEL": log_level,
            },
        )
        compliance.checkov_skip_event_function(self.function, in_vpc=vpc is not None, invoked="async",
                                               dead_letters=self.dead_letter_queue)
        compliance.acknowledge(
            self.function,
            "AwsSolutions-L1",
            "Python 3.12 is pinned on purpose: the function is tested and rehearsed on the same runtime as the "
            "platform's other functions; the runtimes move together.",
        )
        if self.placement is not None:
            # A role passed to a Function gets no VPC policy from CDK: the ENI actions Lambda documents, inline.
            grant_network_interfaces(self.role, self.placement, "lambda")

        self.rule = events.Rule(
            self,
            "OnDrift",
            description="Model Monitor executions that completed with violations: drift-triggered retraining",
            event_pattern=self.event_pattern(monitoring_job_role_arn),
        )
        self.rule.add_target(
            events_targets.LambdaFunction(
                self.function,
                dead_letter_queue=self.dead_letter_queue,
                retry_attempts=retry_attempts,
                max_event_age=max_event_age,
            )
        )
        self.dead_letter_alarm = cloudwatch.Alarm(
            self,
            "DeadLettersAlarm",
            alarm_description="Drift retraining: an event could not be handled (see the dead-letter queue)",
            metric=self.dead_letter_queue.metric_approximate_number_of_messages_visible(
                period=Duration.minutes(5), statistic="Maximum"
            ),
            threshold=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        self.dead_letter_alarm.add_alarm_action(cloudwatch_actions.SnsAction(alarm_topic))

    @staticmethod
    def event_pattern(monitoring_job_role_arn: str) -> events.EventPattern:
        """Monitoring executions run with that role that completed with violations."""
        return events.EventPattern(
            source=["aws.sagemaker"],
            detail_type=[PROCESSING_JOB_STATE_CHANGE],
            detail={
                "ProcessingJobStatus": ["Completed"],
                "ExitMessage": [{"prefix": VIOLATIONS_EXIT_MESSAGE_PREFIX}],
                "RoleArn": [monitoring_job_role_arn],
            },
        )

    @staticmethod
    def _validate(code_dir: Path, reports_prefix: str, cooldown: Duration, parameters: dict,
                  drift_check_types: Sequence[str], retry_attempts: int) -> str:
        """The cooldown in seconds (a string, or a token), once the props are checked."""
        if not (code_dir / "drift_handler.py").is_file():
            raise ValueError(f"DriftRetraining code_dir {code_dir} has no drift_handler.py (handler {HANDLER})")
        if not Token.is_unresolved(reports_prefix) and (not reports_prefix.endswith("/")
                                                         or reports_prefix.startswith("/")):
            raise ValueError(
                f"DriftRetraining reports_prefix must be a key prefix ending in '/', got {reports_prefix!r}"
            )
        try:
            seconds = cooldown.to_seconds()
        except RuntimeError:  # jsii: a token amount in another unit cannot be converted
            raise ValueError("DriftRetraining cooldown from a token must be given in seconds: "
                             "Duration.seconds(<token>)") from None
        if Token.is_unresolved(seconds):
            cooldown_env = Token.as_string(seconds)
        else:
            if seconds < MIN_COOLDOWN.to_seconds():
                raise ValueError(
                    f"DriftRetraining cooldown must be at least 1 hour, got {cooldown.to_human_string()}"
                )
            cooldown_env = str(int(seconds))
        bad_names = [name for name in parameters if not _PARAMETER_NAME.match(name)]
        if bad_names:
            raise ValueError(f"DriftRetraining pipeline_parameters names must be 1-256 letters, digits, '-' or '_', "
                             f"got {bad_names}")
        unknown = [c for c in drift_check_types if c not in KNOWN_CHECK_TYPES]
        if unknown or not drift_check_types:
            raise ValueError(f"DriftRetraining drift_check_types must be some of {list(KNOWN_CHECK_TYPES)}, got "
                             f"{list(drift_check_types)}")
        if not 0 <= retry_attempts <= 185:
            raise ValueError(f"DriftRetraining retry_attempts must be within [0, 185], got {retry_attempts}")
        return cooldown_env

    def _role(
        self,
        pipeline: ISageMakerPipeline,
        bucket: s3.IBucket,
        encryption_key: kms.IKey,
        reports_prefix: str,
        alarm_topic: sns.ITopic,
        alarm_topic_key: Optional[kms.IKey],
    ) -> iam.Role:
        """List and start this pipeline's executions, read this monitor's reports, publish to the topic, write its
        own logs; nothing managed (a VPC adds CDK's network interface policy)."""
        role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="Drift-triggered retraining function",
        )
        self.log_group.grant_write(role)
        role.add_to_policy(
            iam.PolicyStatement(
                sid="RetrainPipeline",
                actions=["sagemaker:ListPipelineExecutions", "sagemaker:StartPipelineExecution"],
                resources=[pipeline.pipeline_arn],
            )
        )
        reports = bucket.arn_for_objects(f"{reports_prefix}*")
        role.add_to_policy(iam.PolicyStatement(sid="MonitorReports", actions=["s3:GetObject"], resources=[reports]))
        encryption_key.grant_decrypt(role)
        alarm_topic.grant_publish(role)
        if alarm_topic_key is not None:  # an imported topic does not know its key (a Topic with master_key does)
            alarm_topic_key.grant(role, "kms:Decrypt", "kms:GenerateDataKey*")
        compliance.acknowledge_wildcard_actions(
            role, ["kms:GenerateDataKey*"],
            "Publishing to the KMS-encrypted alarm topic needs kms:GenerateDataKey* and kms:Decrypt on the "
            "topic's key, granted on that one key only.",
        )
        compliance.acknowledge_wildcard_resources(
            role, [reports],
            "The monitor's own report prefix: each monitoring execution writes constraint_violations.json under a "
            "new dated key, so the function reads objects under that prefix only.",
        )
        return role

    def metric(self, name: str, *, period: Duration = Duration.hours(1)) -> cloudwatch.Metric:
        """The function's EMF metrics: ``DriftDetected``, ``RetrainStarted``, ``RetrainSkippedCooldown``,
        ``NonDriftViolations``, ``DriftRetrainErrors`` (dimensions service and pipeline)."""
        return cloudwatch.Metric(
            namespace="MLOpsPlatform/DriftRetraining",
            metric_name=name,
            dimensions_map={"service": "drift-retrain", "pipeline": self.pipeline.pipeline_name},
            statistic="Sum",
            period=period,
        )
