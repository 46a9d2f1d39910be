"""`serving-<model>-<stage>` stack: one model's SageMaker endpoint and/or Lambda inference for one stage.

Deployed by the model deploy pipeline (``cicd_scripts/deploy_serving.py``) with the approved package as a parameter::

    cdk deploy <project>-<env>-serving-<model>-<stage> --exclusively -c env=<env> \\
        --parameters <stack>:ModelPackageArn=<package arn> --parameters <stack>:ModelDataUrl=<s3 uri of model.tar.gz>

``ModelDataUrl`` is declared only when Lambda inference is enabled (the template's ``Parameters`` say which; an
undeclared parameter is refused by CloudFormation); ``resolve_approved_package`` outputs both values. With an endpoint,
``BaselineStatisticsUrl`` and ``BaselineConstraintsUrl`` (the package's ``ModelMetrics.ModelDataQuality``) are
declared too, with the default ``none``: without a baseline the stage has no Model Monitor schedule.
Outputs: ``EndpointName`` and/or ``FunctionUrl`` (what ``smoke_test`` calls), ``FunctionAliasArn``, ``DataCaptureUri``.
"""

from __future__ import annotations

from typing import Optional

from aws_cdk import Annotations, CfnCondition, CfnOutput, CfnParameter, CfnResource, Duration, Fn, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_codedeploy as codedeploy
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from constructs import Construct

from mlops_constructs.drift_retraining import DriftRetraining
from mlops_constructs.lambda_inference import LambdaInference
from mlops_constructs.monitoring import DataQualityMonitor, GroundTruthIngestion, ModelMonitoring, ModelQualityMonitor
from mlops_constructs.pipeline_grants import SageMakerPipelineReference
from mlops_constructs.realtime_endpoint import EndpointAutoscaling, RealtimeEndpoint, TrafficRouting
from mlops_constructs.storage import rotating_key
from platform_config.names import Names
from stacks import code_locations as code
from platform_config.schema import EndpointConfig, ModelConfig, PlatformConfig, StageConfig
from stacks.common import (
    LakeReferences, NetworkImports, alarm_topic_export, alarm_topic_key_export, log_retention, removal_policy,
)

MODEL_PACKAGE_PARAMETER = "ModelPackageArn"
MODEL_DATA_PARAMETER = "ModelDataUrl"
BASELINE_STATISTICS_PARAMETER = "BaselineStatisticsUrl"
BASELINE_CONSTRAINTS_PARAMETER = "BaselineConstraintsUrl"
NO_BASELINE = "none"
BASELINE_PATTERN = rf"^({NO_BASELINE}|s3://[a-z0-9][a-z0-9.-]{{1,61}}[a-z0-9]/.+[^/])$"
PACKAGE_ARN_PATTERN = r"^arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:\d{12}:model-package/.+$"
MODEL_DATA_PATTERN = r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/.+[^/]$"
IMAGE_REPOSITORIES = {"xgboost": "sagemaker-xgboost", "sklearn": "sagemaker-scikit-learn"}
LAMBDA_DEPLOYMENTS = {
    "canary": codedeploy.LambdaDeploymentConfig.CANARY_10_PERCENT_5_MINUTES,
    "linear": codedeploy.LambdaDeploymentConfig.LINEAR_10_PERCENT_EVERY_1_MINUTE,
    "all_at_once": codedeploy.LambdaDeploymentConfig.ALL_AT_ONCE,
}


def endpoint_name(config: PlatformConfig, model: ModelConfig, stage: StageConfig) -> str:
    """``<project>-<env>-<model>-<stage>``: the endpoint's physical name, the inference function's name (contract C1:
    the smoke test calls it) and its Powertools service. The config model validates its length."""
    return config.names.serving_resource(model.name, stage.name)


function_name = endpoint_name


def model_artifacts_prefix(model: ModelConfig) -> str:
    """Where the model build pipeline writes this model's artifacts in the artifacts bucket (ModelBuildPipeline)."""
    return Names.model_artifacts_prefix(model.name)


def data_capture_prefix(model: ModelConfig, stage: StageConfig) -> str:
    return Names.data_capture_prefix(model.name, stage.name)


def fleet_minimum(ep: EndpointConfig) -> int:
    return min(ep.initial_instance_count, ep.autoscaling.min_capacity)


def traffic_routing(ep: EndpointConfig) -> tuple[TrafficRouting, bool]:
    """The endpoint's blue/green traffic shifting from the config, and whether it fell back to all at once (canary and
    linear need two instances: SageMaker caps a step at 50% of the fleet)."""
    wait = Duration.minutes(ep.wait_minutes)
    if ep.traffic_shifting == "all_at_once":
        return TrafficRouting.all_at_once(wait), False
    if fleet_minimum(ep) < 2:
        return TrafficRouting.all_at_once(wait), True
    if ep.traffic_shifting == "canary":
        return TrafficRouting.canary(ep.canary_percent, wait), False
    return TrafficRouting.linear(ep.canary_percent, wait), False


# How long CodeDeploy takes to shift the inference alias, per config value (the bake of each predefined config).
LAMBDA_SHIFT_MINUTES = {"canary": 5, "linear": 10, "all_at_once": 0}
SERVERLESS_ROLLOUT = Duration.minutes(30)


def rollout_budget(model: ModelConfig) -> Duration:
    """The longest one serving stack's deployment may take: the endpoint's blue/green execution timeout (as the
    endpoint's deployment configuration sets it), plus the Lambda alias shift, which in ``endpoint_proxy`` mode
    starts after the endpoint (the function depends on it). The deploy CD sizes its build timeout from this, for the
    slowest stage (stages may override the endpoint settings, e.g. a serverless staging)."""
    seconds = 0
    if model.endpoint.enabled:
        rollouts = []
        for stage in model.stages:
            ep = model.endpoint_for(stage.name)
            if ep.serverless:
                rollouts.append(int(SERVERLESS_ROLLOUT.to_seconds()))
            else:
                rollouts.append(RealtimeEndpoint.deployment_timeout(traffic_routing(ep)[0]))
        seconds += max(rollouts)
    if model.lambda_.enabled:
        seconds += LAMBDA_SHIFT_MINUTES[model.lambda_.deployment] * 60
    return Duration.seconds(max(seconds, 60))


class ServingStack(Stack):
    """Serve ``model`` in ``stage``: RealtimeEndpoint if ``model.endpoint.enabled``, LambdaInference if
    ``model.lambda_.enabled`` (in ``endpoint_proxy`` mode it calls that endpoint).

    Parameters: ``ModelPackageArn`` (default ``model.model_package_arn`` when the config pins one; otherwise none: a
    placeholder default would deploy a broken stack, while no default makes the CDK CLI refuse a first deploy without
    the value before anything changes) and, with Lambda only, ``ModelDataUrl`` (the package's model.tar.gz, which the
    function loads in ``model`` mode and reads the feature spec from in ``endpoint_proxy`` mode). Once deployed, the CDK CLI reuses a parameter's previous value unless a new one is
    passed, so an infrastructure-only ``cdk deploy`` keeps serving the same package.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        config: PlatformConfig,
        model: ModelConfig,
        stage: StageConfig,
        lake_refs: LakeReferences,
        shared: Optional[Stack] = None,
        **kwargs,
    ) -> None:
        if not (model.endpoint.enabled or model.lambda_.enabled):
            raise ValueError(
                f"model '{model.name}' has neither endpoint.enabled nor lambda.enabled: there is nothing to serve in "
                f"stage '{stage.name}'; enable one, or do not build its serving stacks"
            )
        config.check_stage_location(model, stage)  # it imports the lake's bucket and key: one account and region
        super().__init__(
            scope, id_, description=f"{config.prefix()}: serving of model {model.name} in stage {stage.name}", **kwargs
        )
        self.config = config
        self.model_config = model
        self.stage = stage
        self.endpoint_name = endpoint_name(config, model, stage)
        buckets, lake_key = lake_refs.import_into(self)
        artifacts = buckets["artifacts"]
        # The shared stack's network (network.mode create or existing), imported by export name: the deploy pipeline
        # synthesizes this stack alone. The endpoint's model, the function and the monitoring jobs join it.
        self.network = NetworkImports.of(self, config, shared)
        self._network_props = self.network.workload_props() if self.network is not None else {}
        self._parameters(model)
        package_arn = self.model_package_arn.value_as_string
        # "<group>/<version>" of the package: the function reports it and a new one publishes a new version.
        model_version = Fn.select(1, Fn.split(":model-package/", package_arn))

        # Serving logs are encrypted with a key of this stack (the lake key's policy belongs to the data stack).
        self.key = rotating_key(
            self, "LogsKey", description=f"Serving logs of {self.endpoint_name}", removal_policy=removal_policy(config)
        )
        self.endpoint: Optional[RealtimeEndpoint] = None
        if model.endpoint.enabled:
            self.endpoint = self._endpoint(package_arn, lake_key, artifacts)
        self.inference: Optional[LambdaInference] = None
        if model.lambda_.enabled:
            self.inference = self._inference(lake_key, model_version)

        # --- monitoring: every alarm notifies the shared topic; a dashboard for this stage --------------------------
        topic = None
        self.monitoring: Optional[ModelMonitoring] = None
        if shared is not None:
            self.add_stack_dependency(shared)
            topic = sns.Topic.from_topic_arn(
                self, "AlarmTopic", Fn.import_value(alarm_topic_export(config))
            )
            action = cloudwatch_actions.SnsAction(topic)
            for alarm in self.alarms:  # the endpoint's and the function's own alarms (rollback and throttles)
                alarm.add_alarm_action(action)
            # The dashboard graphs the endpoint and the function and shows their alarms; it adds only the alarm on
            # the inference logs' ERROR lines, which no resource construct owns.
            self.monitoring = ModelMonitoring(
                self,
                "Monitoring",
                name=endpoint_name(config, model, stage),
                alarm_topic=topic,
                endpoint=self.endpoint,
                inference=self.inference,
                lambda_errors=model.alarms.lambda_errors,
            )

        # --- Model Monitor: hourly data-quality check of captured requests against the package's baseline ---------
        self.data_quality = None
        if self.endpoint is not None and self.endpoint.data_capture_uri:
            self.data_quality = self._data_quality(artifacts, lake_key, model_version, topic)

        # --- model quality: captured predictions joined with uploaded ground truth by inference ID -----------------
        # Needs capture only (not the baseline): the labels come from the team, under the documented upload prefix.
        self.model_quality: Optional[ModelQualityMonitor] = None
        self.ground_truth: Optional[GroundTruthIngestion] = None
        if model.model_quality.enabled and self.endpoint is not None and self.endpoint.data_capture_uri:
            self._model_quality(buckets, lake_key, topic)

        # --- drift on the last stage's endpoint (production traffic) retrains the model, once per cooldown ---------
        # One stage only: the stages' hourly monitors run at the same minute, and two could both find drift before
        # either sees the other's execution.
        self.drift_retraining: Optional[DriftRetraining] = None
        if (self.data_quality is not None and topic is not None and model.retrain_on_drift
                and stage.name == model.stages[-1].name):
            self.drift_retraining = self._drift_retraining(artifacts, lake_key, topic)

    def _parameters(self, model: ModelConfig) -> None:
        """The approved package, its model.tar.gz (with Lambda) and its data-quality baseline (with an endpoint)."""
        self.model_package_arn = CfnParameter(
            self,
            MODEL_PACKAGE_PARAMETER,
            type="String",
            description=(
                f"Approved model package version of {model.name} to serve. The model deploy pipeline passes it; by "
                f"hand: cdk deploy {self.stack_name} --parameters {self.stack_name}:{MODEL_PACKAGE_PARAMETER}=<arn>"
            ),
            allowed_pattern=PACKAGE_ARN_PATTERN,
            constraint_description="must be a SageMaker model package ARN (arn:aws:sagemaker:<region>:<account>:"
            "model-package/<group>/<version>)",
            default=model.model_package_arn,
        )
        self.model_data_url: Optional[CfnParameter] = None
        if model.lambda_.enabled:
            self.model_data_url = CfnParameter(
                self,
                MODEL_DATA_PARAMETER,
                type="String",
                description=(
                    f"S3 URI of the model.tar.gz of {MODEL_PACKAGE_PARAMETER} (resolve_approved_package prints it): "
                    "the inference function loads it (model mode) or reads its feature spec (endpoint_proxy mode)"
                ),
                allowed_pattern=MODEL_DATA_PATTERN,
                constraint_description="must be the s3://bucket/key URI of one object (the package's model.tar.gz)",
            )
        # Model Monitor baseline of the package (contract C2): computed by the build pipeline on exactly the rows the
        # endpoint receives, recorded in the package's ModelMetrics.ModelDataQuality, passed by the deploy CD.
        self.baseline_statistics_url: Optional[CfnParameter] = None
        self.baseline_constraints_url: Optional[CfnParameter] = None
        if not model.endpoint.enabled:
            return
        for attr, param_id, what in (
            ("baseline_statistics_url", BASELINE_STATISTICS_PARAMETER, "statistics"),
            ("baseline_constraints_url", BASELINE_CONSTRAINTS_PARAMETER, "constraints"),
        ):
            setattr(self, attr, CfnParameter(
                self,
                param_id,
                type="String",
                default=NO_BASELINE,
                description=(
                    f"S3 URI of the data-quality baseline {what} of {MODEL_PACKAGE_PARAMETER} (its "
                    f"ModelMetrics.ModelDataQuality; resolve_approved_package prints it). '{NO_BASELINE}': no "
                    "Model Monitor schedule"
                ),
                allowed_pattern=BASELINE_PATTERN,
                constraint_description=f"must be '{NO_BASELINE}' or the s3://bucket/key URI of one object",
            ))
            # Which baseline the stage runs on (also keeps the parameter referenced where nothing monitors:
            # serverless endpoints capture no data).
            CfnOutput(self, f"Deployed{param_id}", value=getattr(self, attr).value_as_string,
                      description=f"Data-quality baseline {what} the stage was deployed with")

    def _endpoint(self, package_arn: str, lake_key: kms.IKey, artifacts) -> RealtimeEndpoint:
        config, model, stage = self.config, self.model_config, self.stage
        ep = model.endpoint_for(stage.name)  # models[].endpoint with this stage's override (e.g. serverless staging)
        serverless = (ep.serverless.memory_mb, ep.serverless.max_concurrency) if ep.serverless else None
        capture_percent = 0 if serverless else ep.data_capture_percent
        if serverless and ep.data_capture_percent:
            Annotations.of(self).add_warning_v2(
                "mlops:ServerlessNoDataCapture",
                f"{self.endpoint_name}: serverless endpoints capture no data; data_capture_percent "
                f"{ep.data_capture_percent} is ignored",
            )
        endpoint = RealtimeEndpoint(
            self,
            "Endpoint",
            model_package_arn=package_arn,
            endpoint_name=self.endpoint_name,
            encryption_key=lake_key,
            model_artifacts_bucket=artifacts,
            model_artifacts_prefix=model_artifacts_prefix(model),
            # The package carries its inference code in model.tar.gz (code/, SAGEMAKER_SUBMIT_DIRECTORY
            # /opt/ml/model/code): the container needs no network. Serverless Inference supports neither network
            # isolation nor a VPC (the config refuses serverless with network.mode create/existing).
            network_isolation=not serverless,
            image_repositories=[IMAGE_REPOSITORIES[model.framework]],
            data_capture_bucket=artifacts if capture_percent else None,
            data_capture_prefix=data_capture_prefix(model, stage),
            data_capture_percent=capture_percent,
            instance_type=ep.instance_type,
            initial_instance_count=ep.initial_instance_count,
            serverless=serverless,
            autoscaling=None
            if serverless
            else EndpointAutoscaling(
                min_capacity=ep.autoscaling.min_capacity,
                max_capacity=ep.autoscaling.max_capacity,
                target_invocations_per_instance=ep.autoscaling.target_invocations_per_instance,
            ),
            traffic_routing=None if serverless else self._traffic_routing(ep),
            error_rate_threshold_percent=model.alarms.endpoint_5xx_rate_percent,
            model_latency_p99_threshold=Duration.millis(model.alarms.model_latency_p99_ms),
            log_retention=log_retention(config),
            log_encryption_key=self.key,
            # The log group keeps the name SageMaker gives it: the construct's default (DESTROY) lets the stage
            # be deployed again after its stack is deleted.
            **({} if serverless else self._network_props),
        )
        if model.alarms.idle_endpoint_hours:
            endpoint.add_idle_alarm(Duration.hours(model.alarms.idle_endpoint_hours))
        CfnOutput(self, "EndpointName", value=endpoint.endpoint.attr_endpoint_name,
                  description="SageMaker endpoint (smoke test target)")
        if endpoint.data_capture_uri:
            CfnOutput(self, "DataCaptureUri", value=endpoint.data_capture_uri,
                      description="Where the endpoint captures requests and responses")
        return endpoint

    def _inference(self, lake_key: kms.IKey, model_version: str) -> LambdaInference:
        config, model, stage = self.config, self.model_config, self.stage
        lam = model.lambda_
        data_url = self.model_data_url.value_as_string
        proxy = lam.mode == "endpoint_proxy"
        inference = LambdaInference(
            self,
            "Inference",
            code_dir=code.INFERENCE_CODE,
            dependencies_dir=code.INFERENCE_DEPENDENCIES,
            mode=lam.mode,
            model_s3_uri=None if proxy else data_url,
            endpoint_name=self.endpoint.endpoint_name if proxy else None,
            endpoint_arn=self.endpoint.endpoint_arn if proxy else None,
            model_metadata_s3_uri=data_url if proxy else None,
            model_encryption_key=lake_key,
            model_version=model_version,
            memory_size=lam.memory_mb,
            timeout=Duration.seconds(lam.timeout_seconds),
            reserved_concurrency=lam.reserved_concurrency,
            provisioned_concurrency=lam.provisioned_concurrency,
            max_batch_rows=lam.max_batch_rows,
            service_name=self.endpoint_name,
            function_name=function_name(config, model, stage),
            deployment_config=LAMBDA_DEPLOYMENTS[lam.deployment],
            errors_threshold=model.alarms.lambda_errors,
            throttles_threshold=model.alarms.lambda_throttles,
            duration_p99_threshold=Duration.millis(model.alarms.lambda_duration_p99_ms),
            log_retention=log_retention(config),
            log_encryption_key=self.key,
            removal_policy=removal_policy(config),
            **self._network_props,
        )
        CfnOutput(self, "FunctionUrl", value=inference.function_url,
                  description="IAM-authenticated (SigV4) Function URL of the alias 'live' (smoke test target)")
        CfnOutput(self, "FunctionAliasArn", value=inference.alias.function_arn,
                  description="Alias 'live' of the inference function")
        return inference

    def _data_quality(self, artifacts, lake_key: kms.IKey, model_version: str,
                      topic: Optional[sns.ITopic]) -> DataQualityMonitor:
        """Only once a baseline is passed (a condition: the first `cdk deploy` needs no baseline). Failed monitoring
        jobs notify the alarm topic, except "no data" (an hour without requests is not an incident)."""
        model, stage = self.model_config, self.stage
        self.data_quality_prefix = f"models/{model.name}/monitoring/data-quality/{stage.name}/"
        self.has_baseline = CfnCondition(
            self,
            "HasBaseline",
            expression=Fn.condition_and(
                Fn.condition_not(Fn.condition_equals(self.baseline_statistics_url.value_as_string, NO_BASELINE)),
                Fn.condition_not(Fn.condition_equals(self.baseline_constraints_url.value_as_string, NO_BASELINE)),
            ),
        )
        monitor = DataQualityMonitor(
            self,
            "DataQuality",
            name=self.endpoint_name,
            endpoint_name=self.endpoint_name,
            bucket=artifacts,
            encryption_key=lake_key,
            baseline_statistics_uri=self.baseline_statistics_url.value_as_string,
            baseline_constraints_uri=self.baseline_constraints_url.value_as_string,
            data_capture_prefix=data_capture_prefix(model, stage),
            output_prefix=self.data_quality_prefix,
            instance_type=model.processing_instance_type,
            # A new package brings a new baseline: a new job definition (see DataQualityMonitor).
            revision=Fn.select(1, Fn.split("/", model_version)),
            alarm_topic=topic,
            **self._network_props,
        )
        monitor.node.add_dependency(self.endpoint)
        for child in monitor.node.find_all():
            if isinstance(child, CfnResource):
                child.cfn_options.condition = self.has_baseline
        return monitor

    def _model_quality(self, buckets, lake_key: kms.IKey, topic: Optional[sns.ITopic]) -> None:
        """The model-quality schedule with its alarm on ``models[].metric``, and the function that turns uploaded
        labels (``Names.ground_truth_upload_prefix``) into Model Monitor's ground truth, reporting rejected rows."""
        config, model, stage = self.config, self.model_config, self.stage
        artifacts = buckets["artifacts"]
        ground_truth = Names.model_monitor_ground_truth_prefix(model.name, stage.name)
        self.model_quality = ModelQualityMonitor(
            self, "ModelQuality", name=self.endpoint_name, endpoint_name=self.endpoint_name,
            problem_type=model.problem_type, metric=model.metric, alarm_threshold=model.model_quality_threshold,
            bucket=artifacts, encryption_key=lake_key, data_capture_prefix=data_capture_prefix(model, stage),
            ground_truth_prefix=ground_truth,
            output_prefix=f"models/{model.name}/monitoring/model-quality/{stage.name}/",
            schedule_expression=model.model_quality.schedule, instance_type=model.processing_instance_type,
            alarm_topic=topic, **self._network_props,
        )
        self.model_quality.node.add_dependency(self.endpoint)
        topic_key = None
        if topic is not None:
            topic_key = kms.Key.from_key_arn(self, "GroundTruthTopicKey",
                                             Fn.import_value(alarm_topic_key_export(config)))
        self.ground_truth = GroundTruthIngestion(
            self, "GroundTruth", code_dir=code.GROUND_TRUTH_CODE, problem_type=model.problem_type,
            upload_bucket=buckets["raw"], upload_prefix=Names.ground_truth_upload_prefix(model.name, stage.name),
            output_bucket=artifacts, ground_truth_prefix=ground_truth,
            quarantine_prefix=Names.ground_truth_quarantine_prefix(model.name, stage.name),
            encryption_key=lake_key, alarm_topic=topic, alarm_topic_key=topic_key,
            data_capture_prefix=data_capture_prefix(model, stage), name=self.endpoint_name,
            log_retention=log_retention(config), log_encryption_key=self.key, removal_policy=removal_policy(config),
            **self._network_props,
        )

    def _drift_retraining(self, artifacts, lake_key: kms.IKey, topic: sns.ITopic) -> DriftRetraining:
        """A drift violation of this stage's data-quality monitor starts the model's build pipeline (by name: the
        model stack owns it), at most once per ``retraining.cooldown_hours``; only with a baseline, like the monitor."""
        config, model = self.config, self.model_config
        drift = DriftRetraining(
            self,
            "DriftRetraining",
            pipeline=SageMakerPipelineReference.from_pipeline_name(self, config.names.model_resource(model.name)),
            monitoring_job_role_arn=self.data_quality.role.role_arn,
            bucket=artifacts,
            encryption_key=lake_key,
            reports_prefix=self.data_quality_prefix,
            alarm_topic=topic,
            alarm_topic_key=kms.Key.from_key_arn(
                self, "AlarmTopicKey", Fn.import_value(alarm_topic_key_export(config))
            ),
            code_dir=code.DRIFT_RETRAIN_CODE,
            cooldown=Duration.hours(model.retraining.cooldown_hours),
            model_name=model.name,
            log_retention=log_retention(config),
            log_encryption_key=self.key,
            removal_policy=removal_policy(config),
            **self._network_props,
        )
        for child in drift.node.find_all():
            if isinstance(child, CfnResource):
                child.cfn_options.condition = self.has_baseline
        return drift

    def _traffic_routing(self, ep: EndpointConfig) -> TrafficRouting:
        """The config's traffic shifting (:func:`traffic_routing`), with a warning when it had to fall back."""
        routing, fallback = traffic_routing(ep)
        if fallback:
            Annotations.of(self).add_warning_v2(
                "mlops:TrafficShiftingNeedsTwoInstances",
                f"{self.endpoint_name}: {ep.traffic_shifting} traffic shifting needs at least 2 instances (SageMaker "
                f"caps a step at 50% of the fleet) and this fleet can be {fleet_minimum(ep)}; deploying blue/green "
                f"all at once with a {ep.wait_minutes}-minute bake and auto-rollback instead",
            )
        return routing

    @property
    def alarms(self) -> list[cloudwatch.Alarm]:
        """Every alarm of this stage's serving (for SNS actions and dashboards)."""
        found: list[cloudwatch.Alarm] = []
        if self.endpoint:
            found += self.endpoint.alarms
            if self.endpoint.idle_alarm is not None:
                found.append(self.endpoint.idle_alarm)
        if self.inference:
            found += self.inference.alarms
        return found
