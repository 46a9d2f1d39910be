"""SageMaker real-time endpoint serving an approved model package: blue/green guardrails, autoscaling, data capture."""

from __future__ import annotations

from typing import Optional, Sequence

from aws_cdk import Duration, Fn, RemovalPolicy, Stack
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from mlops_constructs.endpoint_options import (  # noqa: F401 (the options are importable from here too)
    DEFAULT_IMAGE_REPOSITORIES,
    INSTANCE_NAMESPACE,
    SAGEMAKER_NAMESPACE,
    SERVERLESS_MEMORY_SIZES,
    VARIANT_NAME,
    EndpointAutoscaling,
    ServerlessCapacity,
    TrafficRouting,
    data_capture_config,
    execution_timeout,
    fleet_minimum,
    grant_network_interfaces,
    validate_endpoint_props,
)
from mlops_constructs.endpoint_role import endpoint_execution_role
from mlops_constructs.network import workload_placement
from mlops_constructs.storage import allow_cloudwatch_logs


class RealtimeEndpoint(Construct):
    """An approved SageMaker model package behind a real-time endpoint, updated blue/green with auto-rollback.

    Resources: a ``CfnModel`` (``Containers[0].ModelPackageName``), a ``CfnEndpointConfig`` (KMS-encrypted volume, data
    capture, one production variant named ``AllTraffic``), a ``CfnEndpoint`` with a ``DeploymentConfig``
    (blue/green traffic shifting, auto-rollback on this construct's 5xx-rate and p99 ``ModelLatency`` alarms), the
    endpoint's log group with retention, optional target-tracking autoscaling, and a least-privilege execution role.

    The model and the endpoint configuration get no physical name on purpose: a new package ARN replaces the model,
    which replaces the endpoint configuration, which makes CloudFormation call ``UpdateEndpoint`` and SageMaker run
    the blue/green deployment. The endpoint keeps its name (callers and alarms use it). The log group is named by
    SageMaker (``/aws/sagemaker/Endpoints/<endpoint name>``), so it has that name too.

    Updates keep the live fleet size: the endpoint sets ``RetainAllVariantProperties`` so ``UpdateEndpoint`` keeps
    the variant's current instance count and weight instead of resetting them to the new configuration's initial
    values. With autoscaling, a fleet scaled out to 6 is therefore rebuilt blue/green with 6 instances (the traffic
    steps are percentages of that fleet) and ``initial_instance_count`` only sizes the first deployment. Without
    autoscaling, ``DesiredInstanceCount`` is excluded from the retention, so a changed ``initial_instance_count``
    applies. SageMaker lists ``DataCaptureConfig`` among the variant properties but does not support excluding it
    yet: after changing the capture settings of a running endpoint, check ``DescribeEndpoint``'s ``DataCaptureConfig``.

    Serverless (``serverless=(memory_mb, max_concurrency)``): SageMaker supports no Application Auto Scaling of
    invocations, no data capture and no traffic-shifting guardrails there, so these must be left off.
    Autoscaling: SageMaker refuses an update that changes the instance type of an autoscaled variant; deregister the
    scalable target (set ``autoscaling=None``, deploy) before changing ``instance_type``.

    :param model_package_arn: the approved model package version to serve (a stack parameter, usually).
    :param endpoint_name: physical endpoint name (also the log group ``/aws/sagemaker/Endpoints/<name>``).
    :param encryption_key: encrypts the ML storage volume and the captured data.
    :param execution_role: role SageMaker assumes. Default: a new role
        (:func:`~mlops_constructs.endpoint_role.endpoint_execution_role`) allowed to read ``model_artifacts_prefix`` of
        ``model_artifacts_bucket``, decrypt with ``encryption_key``, pull the SageMaker framework images, write the
        capture prefix and its own log group, describe the rollback alarms (``cloudwatch:DescribeAlarms``, which
        SageMaker's auto-rollback requires of the execution role) and, with ``vpc``, manage the model's network
        interfaces (the EC2 actions SageMaker documents for a model in a VPC, see
        :func:`~mlops_constructs.endpoint_options.grant_network_interfaces`). A role you pass is used as is: give it
        the same.
    :param model_artifacts_bucket / model_artifacts_prefix: where the package's model.tar.gz lives (default role).
    :param source_code_objects: S3 object ARNs (a trailing ``*`` allowed) the container also reads at startup, e.g. the
        script-mode source directory a package names in ``SAGEMAKER_SUBMIT_DIRECTORY``. Default: none.
    :param image_repositories: ECR repositories (in SageMaker's AWS-owned accounts) the default role may pull from.
    :param data_capture_bucket / data_capture_prefix / data_capture_percent: request/response capture; 0 disables.
        Default: 100 percent when a bucket is given, to ``data-capture/``.
    :param instance_type / initial_instance_count: Default: ml.m5.large, 1.
    :param encrypt_volume: set ``KmsKeyId`` on the endpoint configuration. Default: True; instance types with local
        NVMe storage (e.g. ml.m5d, ml.g4dn) are encrypted by hardware and SageMaker refuses a key for them.
    :param serverless: (memory_mb, max_concurrency) for a serverless variant instead of instances. Default: none.
    :param autoscaling: target tracking on invocations per instance. Default: none (a fixed fleet).
    :param traffic_routing: blue/green traffic shifting. Default: canary 10% with 10-minute bakes when the fleet has at
        least two instances, else all at once with a 10-minute bake; none for serverless.
    :param termination_wait: how long the old fleet stays after the full shift (final bake). Default: 5 minutes.
    :param maximum_execution_timeout: of a deployment. Default: bakes + 30 minutes, within SageMaker's 10 min to 4 h.
    :param auto_rollback: roll back when an alarm fires during the deployment. Default: True.
    :param error_rate_threshold_percent: 5xx responses per invocation (percent) that trips the 5xx alarm. Default: 1.
    :param model_latency_p99_threshold: p99 ``ModelLatency`` that trips the latency alarm. Default: 500 ms.
    :param alarm_period / alarm_evaluation_periods: of both alarms (2 of N datapoints breach). Default: 1 min, 3.
    :param network_isolation: no network access from the model container. Default: True. A script-mode container
        downloads ``SAGEMAKER_SUBMIT_DIRECTORY`` from S3 itself, which isolation blocks: set False for such packages
        (the platform's packages carry their code in model.tar.gz, ``/opt/ml/model/code``, which SageMaker extracts).
    :param vpc: run the model's instances in this VPC (the model's ``VpcConfig``): SageMaker attaches a network
        interface in ``vpc_subnets`` with ``security_groups`` to each instance. Not for serverless endpoints
        (SageMaker Serverless Inference has no VPC configuration). Default: none (SageMaker's network).
    :param vpc_subnets: with ``vpc``: the subnets, in at least two AZs (SageMaker asks for two). Default: the VPC's
        private subnets (CDK's default selection).
    :param security_groups: with ``vpc`` (required there): the instances' security groups, 1 to 5. Default: none.
    :param log_retention / log_encryption_key / removal_policy: of the endpoint's log group. Default: 90 days, no
        customer key, DESTROY: the group has the name SageMaker gives it (``/aws/sagemaker/Endpoints/<name>``), so a
        retained group would make the next deployment of this endpoint after a stack delete fail ("already exists").
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        model_package_arn: str,
        endpoint_name: str,
        encryption_key: kms.IKey,
        execution_role: Optional[iam.IRole] = None,
        model_artifacts_bucket: Optional[s3.IBucket] = None,
        model_artifacts_prefix: str = "models/",
        source_code_objects: Sequence[str] = (),
        image_repositories: Sequence[str] = DEFAULT_IMAGE_REPOSITORIES,
        data_capture_bucket: Optional[s3.IBucket] = None,
        data_capture_prefix: str = "data-capture/",
        data_capture_percent: int = 100,
        capture_csv_content_types: Sequence[str] = ("text/csv",),
        capture_json_content_types: Sequence[str] = ("application/json",),
        instance_type: str = "ml.m5.large",
        initial_instance_count: int = 1,
        encrypt_volume: bool = True,
        serverless: Optional[ServerlessCapacity] = None,
        autoscaling: Optional[EndpointAutoscaling] = None,
        traffic_routing: Optional[TrafficRouting] = None,
        termination_wait: Duration = Duration.minutes(5),
        maximum_execution_timeout: Optional[Duration] = None,
        auto_rollback: bool = True,
        error_rate_threshold_percent: float = 1.0,
        model_latency_p99_threshold: Duration = Duration.millis(500),
        alarm_period: Duration = Duration.minutes(1),
        alarm_evaluation_periods: int = 3,
        network_isolation: bool = True,
        vpc: Optional[ec2.IVpc] = None,
        vpc_subnets: Optional[ec2.SubnetSelection] = None,
        security_groups: Optional[Sequence[ec2.ISecurityGroup]] = None,
        log_retention: logs.RetentionDays = logs.RetentionDays.THREE_MONTHS,
        log_encryption_key: Optional[kms.IKey] = None,
        removal_policy: RemovalPolicy = RemovalPolicy.DESTROY,
    ) -> None:
        super().__init__(scope, id_)
        if data_capture_bucket is None:
            data_capture_percent = 0
        #: Where the model's instances run (subnets, security groups); None outside a VPC.
        self.placement = workload_placement("RealtimeEndpoint", vpc, vpc_subnets, security_groups)
        validate_endpoint_props(
            endpoint_name=endpoint_name, serverless=serverless, autoscaling=autoscaling, traffic_routing=traffic_routing,
            data_capture_percent=data_capture_percent, instance_type=instance_type,
            initial_instance_count=initial_instance_count, encrypt_volume=encrypt_volume, execution_role=execution_role,
            model_artifacts_bucket=model_artifacts_bucket, error_rate_threshold_percent=error_rate_threshold_percent,
            alarm_evaluation_periods=alarm_evaluation_periods, in_vpc=self.placement is not None,
        )
        stack = Stack.of(self)
        self.endpoint_name = endpoint_name
        self.variant_name = VARIANT_NAME
        self.serverless = serverless is not None
        if traffic_routing is None and not self.serverless:
            fleet = fleet_minimum(initial_instance_count, autoscaling)
            traffic_routing = TrafficRouting.canary() if fleet >= 2 else TrafficRouting.all_at_once()
        self.traffic_routing = traffic_routing

        # --- log group of the endpoint (SageMaker writes /aws/sagemaker/Endpoints/<name>) -----------------------
        log_group_name = f"{INSTANCE_NAMESPACE}/{endpoint_name}"
        self.log_group = self._log_group(log_group_name, log_retention, log_encryption_key, removal_policy)

        # --- execution role ----------------------------------------------------------------------------------------
        if execution_role is not None:
            self.role = execution_role
        else:
            self.role = endpoint_execution_role(
                self,
                endpoint_name=endpoint_name,
                log_group=self.log_group,
                encryption_key=encryption_key,
                model_artifacts_bucket=model_artifacts_bucket,
                model_artifacts_prefix=model_artifacts_prefix,
                source_code_objects=source_code_objects,
                image_repositories=image_repositories,
                data_capture_bucket=data_capture_bucket if data_capture_percent > 0 else None,
                data_capture_prefix=data_capture_prefix,
                log_group_name=log_group_name,
            )
            if self.placement is not None:
                grant_network_interfaces(self.role, self.placement, "sagemaker")

        # --- model, endpoint configuration, endpoint ---------------------------------------------------------------
        self.model = sagemaker.CfnModel(
            self, "Model", execution_role_arn=self.role.role_arn, enable_network_isolation=network_isolation,
            containers=[sagemaker.CfnModel.ContainerDefinitionProperty(model_package_name=model_package_arn)],
            vpc_config=sagemaker.CfnModel.VpcConfigProperty(
                security_group_ids=list(self.placement.security_group_ids), subnets=list(self.placement.subnet_ids)
            )
            if self.placement is not None
            else None,
        )
        # Create the model and the endpoint only once the role's permissions exist (SageMaker checks them).
        role_policy = self.role.node.try_find_child("DefaultPolicy") if isinstance(self.role, iam.Role) else None
        if role_policy is not None:
            self.model.node.add_dependency(role_policy)

        self.data_capture_percent = data_capture_percent
        self.data_capture_uri = (
            data_capture_bucket.s3_url_for_object(data_capture_prefix) if data_capture_percent > 0 else None
        )
        self.endpoint_config = sagemaker.CfnEndpointConfig(
            self,
            "Config",
            production_variants=[self._variant(serverless, instance_type, initial_instance_count)],
            kms_key_id=encryption_key.key_arn if encrypt_volume else None,
            data_capture_config=data_capture_config(data_capture_bucket, data_capture_prefix, data_capture_percent,
                                                encryption_key, capture_csv_content_types, capture_json_content_types),
        )

        # --- alarms (created before the endpoint: its DeploymentConfig names them) ---------------------------------
        self._alarms(error_rate_threshold_percent, model_latency_p99_threshold, alarm_period, alarm_evaluation_periods)
        if traffic_routing is not None and auto_rollback and execution_role is None:
            # SageMaker reads the rollback alarms with the execution role during a deployment (deployment guardrails:
            # "Ensure that your IAM execution role has permission to perform the cloudwatch:DescribeAlarms action").
            self.role.add_to_policy(iam.PolicyStatement(
                sid="RollbackAlarms",
                actions=["cloudwatch:DescribeAlarms"],
                resources=[a.alarm_arn for a in self.alarms],
            ))
        self.endpoint = self._endpoint(
            self._deployment_config(traffic_routing, termination_wait, maximum_execution_timeout, auto_rollback),
            autoscaling,
            role_policy,
        )
        # Ref of AWS::SageMaker::Endpoint is its ARN.
        self.endpoint_arn: str = self.endpoint.ref

        # --- autoscaling -------------------------------------------------------------------------------------------
        self.scalable_target: Optional[appscaling.ScalableTarget] = None
        if autoscaling is not None:
            self.scalable_target = self._autoscaling(stack, autoscaling)

    # --- endpoint configuration, alarms, deployment, autoscaling ---------------------------------------------------
    def _log_group(
        self,
        name: str,
        retention: logs.RetentionDays,
        encryption_key: Optional[kms.IKey],
        removal_policy: RemovalPolicy,
    ) -> logs.LogGroup:
        """The endpoint's log group, under the name SageMaker writes to (``/aws/sagemaker/Endpoints/<name>``)."""
        if encryption_key is not None:
            allow_cloudwatch_logs(encryption_key)
        return logs.LogGroup(
            self,
            "Logs",
            log_group_name=name,
            retention=retention,
            encryption_key=encryption_key,
            removal_policy=removal_policy,
        )

    def _variant(
        self, serverless: Optional[ServerlessCapacity], instance_type: str, initial_instance_count: int
    ) -> sagemaker.CfnEndpointConfig.ProductionVariantProperty:
        if serverless is not None:
            memory_mb, max_concurrency = serverless
            return sagemaker.CfnEndpointConfig.ProductionVariantProperty(
                variant_name=VARIANT_NAME,
                model_name=self.model.attr_model_name,
                serverless_config=sagemaker.CfnEndpointConfig.ServerlessConfigProperty(
                    memory_size_in_mb=memory_mb, max_concurrency=max_concurrency
                ),
            )
        return sagemaker.CfnEndpointConfig.ProductionVariantProperty(
            variant_name=VARIANT_NAME,
            model_name=self.model.attr_model_name,
            instance_type=instance_type,
            initial_instance_count=initial_instance_count,
            initial_variant_weight=1.0,
        )

    def _alarms(
        self,
        error_rate_threshold_percent: float,
        model_latency_p99_threshold: Duration,
        alarm_period: Duration,
        alarm_evaluation_periods: int,
    ) -> None:
        """The 5xx-rate and p99 model latency alarms: they roll back a blue/green deployment in progress."""
        endpoint_name = self.endpoint_name
        self.alarm_5xx_rate = cloudwatch.Alarm(
            self,
            "Errors5xxAlarm",
            alarm_description=(
                f"Endpoint {endpoint_name}: more than {error_rate_threshold_percent}% of invocations returned 5xx. "
                "Rolls back a blue/green deployment in progress."
            ),
            metric=self.metric_5xx_rate(period=alarm_period),
            threshold=error_rate_threshold_percent,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=alarm_evaluation_periods,
            datapoints_to_alarm=min(2, alarm_evaluation_periods),
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        latency_us = model_latency_p99_threshold.to_milliseconds() * 1000  # ModelLatency is in microseconds
        self.alarm_model_latency = cloudwatch.Alarm(
            self,
            "ModelLatencyAlarm",
            alarm_description=(
                f"Endpoint {endpoint_name}: p99 ModelLatency above {model_latency_p99_threshold.to_milliseconds()} "
                "ms. Rolls back a blue/green deployment in progress."
            ),
            metric=self.metric_model_latency(statistic="p99", period=alarm_period),
            threshold=latency_us,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=alarm_evaluation_periods,
            datapoints_to_alarm=min(2, alarm_evaluation_periods),
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        self.alarms: list[cloudwatch.Alarm] = [self.alarm_5xx_rate, self.alarm_model_latency]
        #: The "idle endpoint" alarm (:meth:`add_idle_alarm`); None until added. Not one of ``alarms``: those roll a
        #: deployment back, and an endpoint without traffic is a cost to look at, not a bad deployment.
        self.idle_alarm: Optional[cloudwatch.Alarm] = None

    def _deployment_config(
        self,
        traffic_routing: Optional[TrafficRouting],
        termination_wait: Duration,
        maximum_execution_timeout: Optional[Duration],
        auto_rollback: bool,
    ) -> Optional[sagemaker.CfnEndpoint.DeploymentConfigProperty]:
        """Blue/green traffic shifting with auto-rollback on :attr:`alarms` (none for serverless)."""
        if traffic_routing is None:
            return None
        timeout = execution_timeout(traffic_routing, termination_wait, maximum_execution_timeout)
        return sagemaker.CfnEndpoint.DeploymentConfigProperty(
            blue_green_update_policy=sagemaker.CfnEndpoint.BlueGreenUpdatePolicyProperty(
                traffic_routing_configuration=traffic_routing.render(),
                termination_wait_in_seconds=int(termination_wait.to_seconds()),
                maximum_execution_timeout_in_seconds=timeout,
            ),
            auto_rollback_configuration=sagemaker.CfnEndpoint.AutoRollbackConfigProperty(
                alarms=[sagemaker.CfnEndpoint.AlarmProperty(alarm_name=a.alarm_name) for a in self.alarms]
            )
            if auto_rollback
            else None,
        )

    def _endpoint(
        self,
        deployment_config: Optional[sagemaker.CfnEndpoint.DeploymentConfigProperty],
        autoscaling: Optional[EndpointAutoscaling],
        role_policy,
    ) -> sagemaker.CfnEndpoint:
        endpoint = sagemaker.CfnEndpoint(
            self,
            "Endpoint",
            endpoint_name=self.endpoint_name,
            endpoint_config_name=self.endpoint_config.attr_endpoint_config_name,
            deployment_config=deployment_config,
            # Keep the live instance count (autoscaling's) and weight through updates; see the class doc.
            retain_all_variant_properties=None if self.serverless else True,
            exclude_retained_variant_properties=[
                sagemaker.CfnEndpoint.VariantPropertyProperty(variant_property_type="DesiredInstanceCount")
            ]
            if not self.serverless and autoscaling is None
            else None,
        )
        if role_policy is not None:
            endpoint.node.add_dependency(role_policy)
        endpoint.node.add_dependency(self.log_group)
        return endpoint

    def _autoscaling(self, stack: Stack, autoscaling: EndpointAutoscaling) -> appscaling.ScalableTarget:
        """Target tracking on invocations per instance, through SageMaker's service-linked role."""
        target = appscaling.ScalableTarget(
            self,
            "ScalableTarget",
            service_namespace=appscaling.ServiceNamespace.SAGEMAKER,
            scalable_dimension="sagemaker:variant:DesiredInstanceCount",
            resource_id=Fn.join("", ["endpoint/", self.endpoint.attr_endpoint_name, f"/variant/{VARIANT_NAME}"]),
            min_capacity=autoscaling.min_capacity,
            max_capacity=autoscaling.max_capacity,
            # The L2 needs a role object; the override below drops RoleARN so that Application Auto Scaling uses
            # (and creates if needed) its SageMaker service-linked role instead of a role with no permissions.
            role=iam.Role.from_role_arn(
                self,
                "AutoscalingServiceLinkedRole",
                stack.format_arn(
                    service="iam",
                    region="",
                    resource="role",
                    resource_name="aws-service-role/sagemaker.application-autoscaling.amazonaws.com/"
                    "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint",
                ),
                mutable=False,
            ),
        )
        cfn_target = target.node.default_child
        cfn_target.add_property_deletion_override("RoleARN")
        # CDK's tag aspect gives the L1 Tags, but the CloudFormation schema cfn-lint validates against (and the
        # regions that follow it) has no Tags on ScalableTarget; a scaling target has no cost to allocate anyway.
        cfn_target.add_property_deletion_override("Tags")
        target.scale_to_track_metric(
            "InvocationsPerInstance",
            target_value=autoscaling.target_invocations_per_instance,
            predefined_metric=appscaling.PredefinedMetric.SAGEMAKER_VARIANT_INVOCATIONS_PER_INSTANCE,
            scale_in_cooldown=autoscaling.scale_in_cooldown,
            scale_out_cooldown=autoscaling.scale_out_cooldown,
        )
        return target

    # --- validation ------------------------------------------------------------------------------------------------
    @staticmethod
    def deployment_timeout(routing: TrafficRouting, termination_wait: Duration = Duration.minutes(5),
                           maximum: Optional[Duration] = None) -> int:
        """Seconds a blue/green deployment with ``routing`` may take (its ``MaximumExecutionTimeoutInSeconds``)."""
        return execution_timeout(routing, termination_wait, maximum)

    def add_idle_alarm(self, idle_for: Duration) -> cloudwatch.Alarm:
        """Alarm when the endpoint received no invocation for ``idle_for`` (whole hours, 1 to 168): instances cost
        by the hour whether they serve or not. SageMaker publishes no Invocations datapoint for an hour without
        requests, so missing data counts as idle. Owned here: dashboards graph :meth:`metric_invocations`."""
        hours = idle_for.to_hours()
        if not 1 <= hours <= 168 or hours != int(hours):
            raise ValueError(f"RealtimeEndpoint {self.endpoint_name}: idle_for must be whole hours from 1 to 168 "
                             f"(CloudWatch evaluates at most 7 days), got {hours} hours")
        if self.idle_alarm is not None:
            raise ValueError(f"RealtimeEndpoint {self.endpoint_name}: the idle alarm is already added")
        self.idle_alarm = cloudwatch.Alarm(
            self,
            "IdleAlarm",
            alarm_description=(
                f"Endpoint {self.endpoint_name}: no invocations for {int(hours)} hours. It still costs its instances; "
                "delete the stage's serving stack or make the stage serverless if it is not needed."
            ),
            metric=self.metric_invocations(statistic="Sum", period=Duration.hours(1)),
            threshold=1,
            comparison_operator=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
            evaluation_periods=int(hours),
            datapoints_to_alarm=int(hours),
            treat_missing_data=cloudwatch.TreatMissingData.BREACHING,
        )
        return self.idle_alarm

    # --- grants and metrics ----------------------------------------------------------------------------------------
    def grant_invoke(self, grantee: iam.IGrantable) -> iam.Grant:
        """``sagemaker:InvokeEndpoint`` on this endpoint only."""
        return iam.Grant.add_to_principal(
            grantee=grantee, actions=["sagemaker:InvokeEndpoint"], resource_arns=[self.endpoint_arn]
        )

    def metric(
        self,
        metric_name: str,
        *,
        statistic: str = "Sum",
        period: Duration = Duration.minutes(1),
        namespace: str = SAGEMAKER_NAMESPACE,
        **kwargs,
    ) -> cloudwatch.Metric:
        """A metric of this endpoint's variant (dimensions EndpointName and VariantName)."""
        return cloudwatch.Metric(
            namespace=namespace,
            metric_name=metric_name,
            # The plain name, not the endpoint's attribute: the endpoint's DeploymentConfig names the alarms built on
            # these metrics, so a reference back would be a cycle.
            dimensions_map={"EndpointName": self.endpoint_name, "VariantName": VARIANT_NAME},
            statistic=statistic,
            period=period,
            **kwargs,
        )

    def metric_invocations(self, **kwargs) -> cloudwatch.Metric:
        return self.metric("Invocations", **kwargs)

    def metric_invocations_per_instance(self, **kwargs) -> cloudwatch.Metric:
        return self.metric("InvocationsPerInstance", **kwargs)

    def metric_5xx(self, **kwargs) -> cloudwatch.Metric:
        """Invocations that returned a 5xx (model or platform errors)."""
        return self.metric("Invocation5XXErrors", **kwargs)

    def metric_4xx(self, **kwargs) -> cloudwatch.Metric:
        return self.metric("Invocation4XXErrors", **kwargs)

    def metric_model_latency(self, *, statistic: str = "p99", **kwargs) -> cloudwatch.Metric:
        """Time the model container took, in microseconds (the unit SageMaker publishes it in)."""
        return self.metric("ModelLatency", statistic=statistic, **kwargs)

    def metric_overhead_latency(self, *, statistic: str = "p99", **kwargs) -> cloudwatch.Metric:
        """SageMaker's own overhead per request, in microseconds."""
        return self.metric("OverheadLatency", statistic=statistic, **kwargs)

    def metric_5xx_rate(self, *, period: Duration = Duration.minutes(1)) -> cloudwatch.MathExpression:
        """Percentage of invocations that returned a 5xx (0 when there was no traffic)."""
        return cloudwatch.MathExpression(
            expression="IF(invocations > 0, 100 * errors / invocations, 0)",
            using_metrics={
                "errors": self.metric_5xx(period=period),
                "invocations": self.metric_invocations(period=period),
            },
            label="5xx rate (%)",
            period=period,
        )

    def _instance_metric(self, name: str, statistic: str, kwargs: dict) -> cloudwatch.Metric:
        if self.serverless:
            raise ValueError(f"RealtimeEndpoint: {name} is an instance metric; a serverless endpoint has none")
        return self.metric(name, namespace=INSTANCE_NAMESPACE, statistic=kwargs.pop("statistic", statistic), **kwargs)

    def metric_cpu_utilization(self, **kwargs) -> cloudwatch.Metric:
        """Sum over the cores of an instance (100% per core), namespace /aws/sagemaker/Endpoints."""
        return self._instance_metric("CPUUtilization", "Average", kwargs)

    def metric_memory_utilization(self, **kwargs) -> cloudwatch.Metric:
        return self._instance_metric("MemoryUtilization", "Average", kwargs)

    def metric_disk_utilization(self, **kwargs) -> cloudwatch.Metric:
        return self._instance_metric("DiskUtilization", "Average", kwargs)
