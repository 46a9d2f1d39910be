"""Every use of the SageMaker Python SDK lives here: it builds a pipeline definition at synth time, offline.

The SDK cannot take CDK tokens (``urlparse`` reads ``${Token[...]}`` inside an S3 URI as an IPv6 host), so the definition
is built with placeholders, parsed, and the placeholders are replaced by tokens afterwards; the stack serializes the
result with ``Stack.to_json_string``. The SDK's telemetry request is disabled so synth makes no network call.
A move to SDK 3.x is a change to this file only.

The step order, scripts, containers and wiring come from :mod:`sagemaker_steps.pipeline_spec`, the same source the
local runner reads.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Optional

os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
os.environ.setdefault("SAGEMAKER_TELEMETRY_OPT_OUT", "true")
for _name in ("sagemaker", "sagemaker.config", "sagemaker.workflow", "sagemaker.image_uris"):
    logging.getLogger(_name).setLevel(logging.ERROR)

from sagemaker_steps import pipeline_spec as spec  # noqa: E402
from sagemaker_steps.model_spec import ModelSpec  # noqa: E402

# Placeholders the SDK sees instead of CDK tokens. Valid-looking values, replaced after the build.
PLACEHOLDER_REGION = "us-east-1"
PLACEHOLDER_ROLE = "arn:aws:iam::111111111111:role/placeholder-pipeline-role"
PLACEHOLDER_KMS = "arn:aws:kms:us-east-1:111111111111:key/11111111-1111-1111-1111-111111111111"
PLACEHOLDER_ARTIFACTS = "s3://placeholder-artifacts-bucket"
PLACEHOLDER_INPUT = "s3://placeholder-curated-bucket/dataset/"
PLACEHOLDER_CODE = "s3://placeholder-code-bucket"
PLACEHOLDER_IMAGE = {
    "sklearn": "111111111111.dkr.ecr.us-east-1.amazonaws.com/placeholder-sklearn:1",
    "xgboost": "111111111111.dkr.ecr.us-east-1.amazonaws.com/placeholder-xgboost:1",
}
PLACEHOLDER_MONITOR_IMAGE = "111111111111.dkr.ecr.us-east-1.amazonaws.com/placeholder-model-monitor:1"
#: ResolveChampion's ``--model-package-group``: the group's ARN (the construct substitutes the real one), so the
#: script calls the group's own region whatever the container's environment says.
PLACEHOLDER_GROUP_ARN = "arn:aws:sagemaker:us-east-1:111111111111:model-package-group/placeholder-champion-group"
# Network placeholders, fixed width (two digits): no placeholder is a substring of another, so each is replaced by
# exactly one subnet or security group ID token. VpcConfig takes at most 16 subnets and 5 security groups.
MAX_SUBNETS = 16
MAX_SECURITY_GROUPS = 5


def placeholder_subnets(count: int) -> list[str]:
    """The subnet IDs the SDK sees for ``count`` subnets: ``subnet-0placeholder01`` ..."""
    return [f"subnet-0placeholder{i:02d}" for i in range(1, count + 1)]


def placeholder_security_groups(count: int) -> list[str]:
    """The security group IDs the SDK sees for ``count`` groups: ``sg-0placeholder01`` ..."""
    return [f"sg-0placeholder{i:02d}" for i in range(1, count + 1)]


@dataclass(frozen=True)
class PipelineInputs:
    """What the definition needs, all plain strings (no tokens): the model's spec and where the pipeline puts things.

    :param spec: the model (target, problem type, framework, metric, threshold, hyperparameters, instance types).
    :param pipeline_name / model_package_group_name: physical names.
    :param artifacts_prefix: the model's prefix in the artifacts bucket, e.g. ``models/abalone/``. Default: the root.
    :param baseline: add the Model Monitor data-quality baseline step. Default: true.
    :param job_tags: tags of every processing and training job (contract C3: ``project`` and ``environment``).
    :param code_digest: digest of the step code as deployed (recorded in the package metadata as ``CodeDigest``).
    :param exclude_columns: columns preprocessing drops besides the target. Default: ``ingest_date``.
    :param subnet_count / security_group_count: how many subnets and security groups every job joins (placeholders
        :func:`placeholder_subnets` / :func:`placeholder_security_groups`, replaced by the construct). Both 0 (the
        default): no VPC, and the definition is the one without network settings. Both set: every processing,
        baseline and training job runs in the VPC with network isolation and inter-container traffic encryption, and
        the training job reads its source tarball from the ``code`` channel (:data:`TRAIN_CODE_CHANNEL`).
    """

    spec: ModelSpec
    pipeline_name: str
    model_package_group_name: str
    artifacts_prefix: str = ""
    baseline: bool = True
    job_tags: Mapping[str, str] = field(default_factory=dict)
    code_digest: str = "unknown"
    exclude_columns: tuple[str, ...] = ("ingest_date",)
    subnet_count: int = 0
    security_group_count: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.subnet_count <= MAX_SUBNETS:
            raise ValueError(f"PipelineInputs subnet_count must be 0 to {MAX_SUBNETS}, got {self.subnet_count}")
        if not 0 <= self.security_group_count <= MAX_SECURITY_GROUPS:
            raise ValueError(f"PipelineInputs security_group_count must be 0 to {MAX_SECURITY_GROUPS}, got "
                             f"{self.security_group_count}")
        if (self.subnet_count == 0) != (self.security_group_count == 0):
            raise ValueError("PipelineInputs subnet_count and security_group_count are both 0 (no VPC) or both set, "
                             f"got {self.subnet_count} and {self.security_group_count}")

    @property
    def in_vpc(self) -> bool:
        """Whether the jobs run in a VPC (with network isolation)."""
        return self.subnet_count > 0

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able data: the inputs' part of the definition cache key."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "spec"}
        return {**data, "spec": self.spec.as_dict(), "job_tags": sorted(self.job_tags.items()),
                "exclude_columns": list(self.exclude_columns)}


def _disable_telemetry() -> None:
    from sagemaker.telemetry import telemetry_logging

    telemetry_logging._send_telemetry_request = lambda *args, **kwargs: None  # no network call at synth


def _session(default_bucket: str):
    import boto3
    from sagemaker.workflow.pipeline_context import PipelineSession

    boto_session = boto3.Session(
        region_name=PLACEHOLDER_REGION, aws_access_key_id="offline", aws_secret_access_key="offline"
    )
    return PipelineSession(boto_session=boto_session, default_bucket=default_bucket)


def code_object_name(script: str) -> str:
    """Object name standing for a step script's asset key: the SDK names the processing entry point after the code
    object (``/opt/ml/processing/input/code/<object name>``), so the construct replaces this name by the asset's
    object key everywhere, in the code input's S3 URI and in the entry point alike."""
    return f"placeholder-code-{script}"


def code_key(script: str) -> str:
    """S3 URI of a step script under the code placeholder (the construct maps it to the script's asset URI)."""
    return f"{PLACEHOLDER_CODE}/{code_object_name(script)}"


TRAIN_SOURCE_DIR = f"{PLACEHOLDER_CODE}/train-sourcedir.tar.gz"
#: In a VPC (network isolation) the training container downloads nothing: SageMaker downloads the source tarball as
#: the ``code`` input channel (the SDK's own convention for isolated script mode, Framework._prepare_for_training), and
#: ``sagemaker_submit_directory`` is its container path. An S3 channel keeps the object's own name, so that path names
#: the asset's object (``<hash>.tar.gz``): the construct replaces TRAIN_SOURCE_OBJECT by the asset's object name.
TRAIN_CODE_CHANNEL = "code"
TRAIN_SOURCE_OBJECT = "placeholder-train-source-object.tar.gz"
TRAIN_SOURCE_IN_CONTAINER = f"/opt/ml/input/data/{TRAIN_CODE_CHANNEL}/{TRAIN_SOURCE_OBJECT}"
BASELINE_STEP = "DataQualityBaseline"
# Every execution writes under <artifacts prefix>executions/<PipelineExecutionId>/ (preprocess/, baseline/,
# training/, evaluation/): nothing one run writes is overwritten by another, and a package's metadata and metrics
# point at the files of the run that produced it.
EXECUTIONS_PREFIX = "executions"
PARAMETER_NAMES = ("InputDataUrl", "MetricThreshold", "ModelApprovalStatus", "GitCommit", "ProcessingInstanceType",
                   "TrainingInstanceType")


def _retry_policies() -> list:
    from sagemaker.workflow.retry import (
        SageMakerJobExceptionTypeEnum,
        SageMakerJobStepRetryPolicy,
        StepExceptionTypeEnum,
        StepRetryPolicy,
    )

    return [
        StepRetryPolicy(
            exception_types=[StepExceptionTypeEnum.SERVICE_FAULT, StepExceptionTypeEnum.THROTTLING],
            max_attempts=3,
            backoff_rate=2.0,
            interval_seconds=30,
        ),
        SageMakerJobStepRetryPolicy(
            exception_types=[
                SageMakerJobExceptionTypeEnum.INTERNAL_ERROR,
                SageMakerJobExceptionTypeEnum.CAPACITY_ERROR,
                SageMakerJobExceptionTypeEnum.RESOURCE_LIMIT,
            ],
            max_attempts=3,
            backoff_rate=2.0,
            interval_seconds=60,
        ),
    ]


class _DefinitionBuilder:
    """Builds the SDK steps of one pipeline; each ``*_step`` method adds one step kind (see :func:`build_definition`)."""

    def __init__(self, inputs: PipelineInputs) -> None:
        from sagemaker.workflow.execution_variables import ExecutionVariables
        from sagemaker.workflow.parameters import ParameterFloat, ParameterString

        model = inputs.spec
        self.inputs, self.model = inputs, model
        self.session = _session("placeholder-artifacts-bucket")
        self.out = f"{PLACEHOLDER_ARTIFACTS}/{inputs.artifacts_prefix}"
        input_url, threshold, approval, commit, processing_type, training_type = PARAMETER_NAMES
        self.p_input = ParameterString(input_url, default_value=PLACEHOLDER_INPUT)
        self.p_threshold = ParameterFloat(threshold, default_value=float(model.threshold))
        self.p_approval = ParameterString(approval, default_value="PendingManualApproval")
        self.p_commit = ParameterString(commit, default_value="unknown")
        self.p_proc_type = ParameterString(processing_type, default_value=model.processing_instance_type)
        self.p_train_type = ParameterString(training_type, default_value=model.training_instance_type)
        self.parameters = [self.p_input, self.p_threshold, self.p_approval, self.p_commit, self.p_proc_type,
                           self.p_train_type]
        # No step caching: a run on new data under the same InputDataUrl must retrain (a cache hit would reuse the old
        # preprocess output and register the old model again). Re-run a failed execution with RetryPipelineExecution.
        self.execution_id = ExecutionVariables.PIPELINE_EXECUTION_ID
        self.tags = [{"Key": k, "Value": v} for k, v in sorted(inputs.job_tags.items())] or None
        self.retry = _retry_policies()
        self.steps = {s.name: s for s in spec.pipeline_steps(model.framework, model.champion)}
        self.image = {kind: PLACEHOLDER_IMAGE[meta["framework"]] for kind, meta in spec.CONTAINER_IMAGES.items()}
        self.subnets = placeholder_subnets(inputs.subnet_count)
        self.security_groups = placeholder_security_groups(inputs.security_group_count)

    def network_config(self, isolated: bool = True):
        """Processing and baseline jobs in the VPC: network isolation (``isolated``: all but ResolveChampion),
        inter-container traffic encryption. None without a VPC (the SDK then writes no NetworkConfig)."""
        from sagemaker.network import NetworkConfig

        if not self.inputs.in_vpc:
            return None
        return NetworkConfig(enable_network_isolation=isolated, security_group_ids=list(self.security_groups),
                             subnets=list(self.subnets), encrypt_inter_container_traffic=True)

    def run_uri(self, *parts: str):
        """s3://<artifacts>/<prefix>executions/<PipelineExecutionId>/<parts...>"""
        from sagemaker.workflow.functions import Join

        return Join(on="/", values=[f"{self.out}{EXECUTIONS_PREFIX}", self.execution_id, *parts])

    def processor(self, container: str, base: str, isolated: bool = True):
        from sagemaker.processing import ScriptProcessor

        return ScriptProcessor(
            image_uri=self.image[container],
            command=["python3"],
            role=PLACEHOLDER_ROLE,
            instance_type=self.p_proc_type,
            instance_count=1,
            volume_kms_key=PLACEHOLDER_KMS,
            output_kms_key=PLACEHOLDER_KMS,
            base_job_name=f"{self.model.name}-{base}",
            sagemaker_session=self.session,
            max_runtime_in_seconds=3600,
            tags=self.tags,
            network_config=self.network_config(isolated),
        )

    def champion_step(self):
        """ResolveChampion (``models[].champion.enabled``): the latest Approved package of the model's group and its
        model.tar.gz, for Evaluate to score on the challenger's test split (``sagemaker_steps/champion.py``).

        The one job without network isolation: it calls SageMaker (ListModelPackages, DescribeModelPackage) and
        reads the champion's artifact with the job role, which an isolated container cannot; in a VPC it still runs
        in the VPC's subnets and security groups (the VPC has the SageMaker API interface endpoint and the S3
        gateway), with encrypted volume, outputs and inter-container traffic. Evaluate, which reads the data, stays
        isolated and gets the champion as an input SageMaker downloads. No dependency: it runs while Preprocess and
        Train do, so the champion is the package Approved when the execution starts."""
        from sagemaker.processing import ProcessingOutput
        from sagemaker.workflow.steps import ProcessingStep

        step = self.steps[spec.RESOLVE_CHAMPION]
        return ProcessingStep(
            name=step.name,
            processor=self.processor(step.container, "champion", isolated=False),
            code=code_key(step.script),
            outputs=[
                ProcessingOutput(output_name=o.name, source=o.container_path, destination=self.run_uri(o.name))
                for o in step.outputs
            ],
            job_arguments=spec.champion_arguments(PLACEHOLDER_GROUP_ARN),
            retry_policies=self.retry,
        )

    def preprocess_step(self):
        from sagemaker.processing import ProcessingInput, ProcessingOutput
        from sagemaker.workflow.steps import ProcessingStep

        pre, model = self.steps[spec.PREPROCESS], self.model
        return ProcessingStep(
            name=pre.name,
            processor=self.processor(pre.container, "preprocess"),
            code=code_key(pre.script),
            inputs=[ProcessingInput(source=self.p_input, destination=pre.inputs[0].container_path,
                                    input_name="input")],
            outputs=[
                ProcessingOutput(output_name=o.name, source=o.container_path,
                                 destination=self.run_uri("preprocess", o.name))
                for o in pre.outputs
            ],
            job_arguments=spec.preprocess_arguments(
                model.target,
                model.problem_type,
                model.positive_threshold,
                positive_label=model.positive_label,
                exclude_columns=self.inputs.exclude_columns + model.exclude_columns,
                input_data_url=self.p_input,
            ),
            retry_policies=self.retry,
        )

    def baseline_step(self, step_pre):
        """Data-quality baseline for Model Monitor, per execution: statistics.json and constraints.json of exactly the
        rows the endpoint receives (encoded numeric features, CSV, no header, no target); registered with the
        package."""
        from sagemaker.model_monitor.dataset_format import DatasetFormat
        from sagemaker.workflow.check_job_config import CheckJobConfig
        from sagemaker.workflow.quality_check_step import DataQualityCheckConfig, QualityCheckStep

        return QualityCheckStep(
            name=BASELINE_STEP,
            skip_check=True,
            register_new_baseline=True,
            quality_check_config=DataQualityCheckConfig(
                baseline_dataset=step_pre.properties.ProcessingOutputConfig.Outputs["baseline"].S3Output.S3Uri,
                dataset_format=DatasetFormat.csv(header=False),
                output_s3_uri=self.run_uri("baseline"),
            ),
            check_job_config=CheckJobConfig(
                role=PLACEHOLDER_ROLE,
                instance_count=1,
                instance_type=self.model.processing_instance_type,
                volume_kms_key=PLACEHOLDER_KMS,
                output_kms_key=PLACEHOLDER_KMS,
                max_runtime_in_seconds=3600,
                sagemaker_session=self.session,
                base_job_name=f"{self.model.name}-baseline",
                tags=self.tags,
                # The Model Monitor analyzer needs no network for a baseline: SageMaker downloads its input and uploads
                # its output, and it publishes no CloudWatch metrics when baselining (publish_cloudwatch_metrics
                # Disabled). Its job API takes EnableNetworkIsolation (MonitoringNetworkConfig), and the serving
                # stack's monitoring schedule runs the same image isolated.
                network_config=self.network_config(),
            ),
        )

    def train_step(self, step_pre):
        """Script mode in the framework container; in a VPC, isolated, with the source tarball as the ``code``
        channel (see :data:`TRAIN_SOURCE_OBJECT`).

        Time limit (MaxRuntimeInSeconds) from the spec. With ``spec.spot_training``: managed spot training
        (EnableManagedSpotTraining, MaxWaitTimeInSeconds) and a CheckpointConfig under the execution's prefix
        (``executions/<id>/checkpoints``, which the pipeline role can already write; the objects take the bucket's
        default encryption: OutputDataConfig's KmsKeyId is documented for the model artifacts only). SageMaker syncs
        /opt/ml/checkpoints with that prefix and restores it on a restart after a spot interruption; train.py writes
        no checkpoint, so an interrupted job trains again from scratch, within MaxWaitTimeInSeconds. Without spot the
        step is exactly as before (no spot or checkpoint fields)."""
        from sagemaker.estimator import Estimator
        from sagemaker.inputs import TrainingInput
        from sagemaker.workflow.steps import TrainingStep

        tr, model = self.steps[spec.TRAIN], self.model
        network, submit_directory, code_channel = {}, TRAIN_SOURCE_DIR, {}
        if self.inputs.in_vpc:
            network = dict(subnets=list(self.subnets), security_group_ids=list(self.security_groups),
                           enable_network_isolation=True, encrypt_inter_container_traffic=True)
            submit_directory = TRAIN_SOURCE_IN_CONTAINER
            if any(ch.name == TRAIN_CODE_CHANNEL for ch in tr.inputs):
                raise ValueError(f"the training step has a channel named {TRAIN_CODE_CHANNEL!r}, which the source "
                                 "tarball takes in a VPC")
            code_channel = {TRAIN_CODE_CHANNEL: TrainingInput(s3_data=TRAIN_SOURCE_DIR)}  # S3Prefix of that object
        spot = {}
        if model.spot_training:
            spot = dict(use_spot_instances=True, max_wait=model.max_wait_seconds,
                        checkpoint_s3_uri=self.run_uri("checkpoints"), checkpoint_local_path="/opt/ml/checkpoints")
        estimator = Estimator(
            image_uri=self.image[tr.container],
            role=PLACEHOLDER_ROLE,
            instance_type=self.p_train_type,
            instance_count=1,
            volume_kms_key=PLACEHOLDER_KMS,
            output_kms_key=PLACEHOLDER_KMS,
            output_path=self.run_uri("training"),
            base_job_name=f"{model.name}-train",
            sagemaker_session=self.session,
            max_run=model.max_run_seconds,
            hyperparameters={
                **spec.training_hyperparameters(model.framework, dict(model.hyperparameters)),
                "sagemaker_program": tr.script,
                "sagemaker_submit_directory": submit_directory,
            },
            enable_sagemaker_metrics=True,
            disable_profiler=True,
            environment={"SAGEMAKER_PROGRAM": tr.script},
            tags=self.tags,
            **network,
            **spot,
        )
        outputs = step_pre.properties.ProcessingOutputConfig.Outputs
        return TrainingStep(
            name=tr.name,
            estimator=estimator,
            inputs={
                ch.name: TrainingInput(s3_data=outputs[ch.source.split(".")[1]].S3Output.S3Uri,
                                       content_type=ch.content_type)
                for ch in tr.inputs
            } | code_channel,
            retry_policies=self.retry,
        )

    def evaluate_step(self, step_pre, step_train, report, step_champion=None):
        """Scores the challenger (and, with ResolveChampion, the champion) on the test split; network-isolated in a
        VPC. Writes evaluation.json, the EvaluationReport property file."""
        from sagemaker.processing import ProcessingInput, ProcessingOutput
        from sagemaker.workflow.steps import ProcessingStep

        ev = self.steps[spec.EVALUATE]
        sources = {
            "Train.model": step_train.properties.ModelArtifacts.S3ModelArtifacts,
            "Preprocess.test": step_pre.properties.ProcessingOutputConfig.Outputs["test"].S3Output.S3Uri,
        }
        if step_champion is not None:
            sources[f"{spec.RESOLVE_CHAMPION}.champion"] = (
                step_champion.properties.ProcessingOutputConfig.Outputs["champion"].S3Output.S3Uri)
        return ProcessingStep(
            name=ev.name,
            processor=self.processor(ev.container, "evaluate"),
            code=code_key(ev.script),
            inputs=[
                ProcessingInput(source=sources[ch.source], destination=ch.container_path, input_name=ch.name)
                for ch in ev.inputs
            ],
            outputs=[
                ProcessingOutput(output_name=o.name, source=o.container_path, destination=self.run_uri("evaluation"))
                for o in ev.outputs
            ],
            job_arguments=spec.evaluate_arguments(model=self.model),
            property_files=[report],
            retry_policies=self.retry,
        )

    def model_metrics(self, step_eval, baseline_step):
        from sagemaker.model_metrics import MetricsSource, ModelMetrics
        from sagemaker.workflow.functions import Join

        eval_uri = step_eval.properties.ProcessingOutputConfig.Outputs["evaluation"].S3Output.S3Uri
        data_quality = {}
        if baseline_step is not None:
            # Contract C2: ModelMetrics.ModelDataQuality.Statistics / .Constraints, this execution's baseline.
            data_quality = dict(
                model_data_statistics=MetricsSource(
                    s3_uri=baseline_step.properties.CalculatedBaselineStatistics, content_type="application/json"
                ),
                model_data_constraints=MetricsSource(
                    s3_uri=baseline_step.properties.CalculatedBaselineConstraints, content_type="application/json"
                ),
            )
        return ModelMetrics(
            model_statistics=MetricsSource(
                s3_uri=Join(on="/", values=[eval_uri, spec.EVALUATION_REPORT.path]), content_type="application/json"
            ),
            **data_quality,
        )

    def register_step(self, step_pre, step_train, metrics):
        from sagemaker.model import Model
        from sagemaker.workflow.execution_variables import ExecutionVariables
        from sagemaker.workflow.functions import Join
        from sagemaker.workflow.model_step import ModelStep

        model = self.model
        manifest = self.steps[spec.PREPROCESS].output("manifest")
        manifest_uri = Join(
            on="/",
            values=[step_pre.properties.ProcessingOutputConfig.Outputs["manifest"].S3Output.S3Uri, manifest.artifact],
        )
        # The container environment travels with the package (an SDK Model keeps it; RegisterModel with an estimator
        # drops it): the framework container imports the serving code from model.tar.gz's code/.
        serving_model = Model(
            image_uri=self.image[self.steps[spec.TRAIN].container],
            model_data=step_train.properties.ModelArtifacts.S3ModelArtifacts,
            env=spec.serving_environment(model.framework),
            role=PLACEHOLDER_ROLE,
            sagemaker_session=self.session,
        )
        return ModelStep(
            name=spec.REGISTER,
            step_args=serving_model.register(
                content_types=["text/csv", "application/json"],
                response_types=["text/csv", "application/json"],
                inference_instances=["ml.t2.medium", "ml.m5.large", "ml.m5.xlarge"],
                transform_instances=["ml.m5.large"],
                model_package_group_name=self.inputs.model_package_group_name,
                approval_status=self.p_approval,
                model_metrics=metrics,
                customer_metadata_properties={
                    "GitCommit": self.p_commit,
                    "CodeDigest": self.inputs.code_digest,
                    "Model": model.name,
                    "InputDataUrl": self.p_input,
                    "DataManifest": manifest_uri,
                    "PipelineExecutionArn": ExecutionVariables.PIPELINE_EXECUTION_ARN,
                },
                description=f"{model.name}: {model.problem_type} ({model.framework}), metric {model.metric}",
            ),
        )

    def condition_step(self, step_eval, report, register):
        """CheckMetric: the metric from the EvaluationReport against MetricThreshold and, with the champion
        comparison, ``challenger_wins >= 1`` (the conditions of a ConditionStep must all hold); Register or FailStep,
        whose message names the metric, the threshold and (with the comparison) both figures and the margin."""
        from sagemaker.workflow.condition_step import ConditionStep
        from sagemaker.workflow.conditions import ConditionGreaterThanOrEqualTo, ConditionLessThanOrEqualTo
        from sagemaker.workflow.fail_step import FailStep
        from sagemaker.workflow.functions import Join, JsonGet

        model = self.model
        metric_value = JsonGet(step_name=step_eval.name, property_file=report, json_path=model.metric_json_path)
        condition_cls = ConditionGreaterThanOrEqualTo if model.higher_is_better else ConditionLessThanOrEqualTo
        parts = {"model": model.name, "metric": model.metric, "value": metric_value, "threshold": self.p_threshold}
        conditions = [condition_cls(left=metric_value, right=self.p_threshold)]
        template = spec.FAIL_MESSAGE_TEMPLATE
        if model.champion:
            wins = JsonGet(step_name=step_eval.name, property_file=report, json_path=spec.CHALLENGER_WINS_PATH)
            conditions.append(ConditionGreaterThanOrEqualTo(left=wins, right=1))
            parts["champion"] = JsonGet(step_name=step_eval.name, property_file=report,
                                        json_path=spec.CHAMPION_SUMMARY_PATH)
            template = spec.CHAMPION_FAIL_MESSAGE_TEMPLATE
        fail = FailStep(
            name=spec.FAIL,
            error_message=Join(
                on="", values=[text if kind == "text" else parts[text]
                               for kind, text in spec.fail_message_parts(template)]
            ),
        )
        return ConditionStep(
            name=spec.CHECK_METRIC,
            conditions=conditions,
            if_steps=[register],
            else_steps=[fail],
        )


@contextlib.contextmanager
def _no_instance_metadata():
    """Importing the SDK creates a default boto3 session (JumpStart) whose credential chain would ask the EC2 instance
    metadata service when no credentials are configured: a network call at synth. Turn that provider off meanwhile."""
    previous = os.environ.get("AWS_EC2_METADATA_DISABLED")
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("AWS_EC2_METADATA_DISABLED", None)
        else:
            os.environ["AWS_EC2_METADATA_DISABLED"] = previous


def build_definition(inputs: PipelineInputs) -> dict[str, Any]:
    """The pipeline definition (parsed JSON) with placeholders for role, key, buckets, code and images.

    [ResolveChampion] + Preprocess -> [DataQualityBaseline] -> Train -> Evaluate -> CheckMetric -> Register |
    FailStep (ResolveChampion when ``spec.champion``; without it the definition is the one without the comparison).
    """
    with _no_instance_metadata():
        return _build_definition(inputs)


def _build_definition(inputs: PipelineInputs) -> dict[str, Any]:
    _disable_telemetry()
    from sagemaker.workflow.pipeline import Pipeline
    from sagemaker.workflow.properties import PropertyFile

    builder = _DefinitionBuilder(inputs)
    step_champion = builder.champion_step() if inputs.spec.champion else None
    step_pre = builder.preprocess_step()
    baseline_step = builder.baseline_step(step_pre) if inputs.baseline else None
    step_train = builder.train_step(step_pre)
    report = PropertyFile(
        name=spec.EVALUATION_REPORT.name,
        output_name=spec.EVALUATION_REPORT.output_name,
        path=spec.EVALUATION_REPORT.path,
    )
    step_eval = builder.evaluate_step(step_pre, step_train, report, step_champion)
    register = builder.register_step(step_pre, step_train, builder.model_metrics(step_eval, baseline_step))
    check = builder.condition_step(step_eval, report, register)
    pipeline = Pipeline(
        name=inputs.pipeline_name,
        parameters=builder.parameters,
        steps=[*([step_champion] if step_champion else []), step_pre, *([baseline_step] if baseline_step else []),
               step_train, step_eval, check],
        sagemaker_session=builder.session,
        # No SageMaker Experiments entities (experiment, trial, trial components): the pipeline role needs no
        # sagemaker:CreateExperiment/CreateTrial/AssociateTrialComponent; lineage is in the package metadata.
        pipeline_experiment_config=None,
    )
    return json.loads(pipeline.definition())


# ---------------------------------------------------------------------------------------------------------------
# Cache: a warm synth reads the definition instead of importing the SDK (~2.5 s)
# ---------------------------------------------------------------------------------------------------------------
#: The environment variable naming the definition cache directory (used when the construct is given none).
CACHE_DIR_ENV = "MLOPS_DEFINITION_CACHE_DIR"
#: Distributions whose version is part of the key: the SDK, its core, and the AWS SDK it builds sessions with.
SDK_PACKAGES = ("sagemaker", "sagemaker-core", "boto3", "botocore")
#: Modules whose source the definition depends on: this builder and the step wiring and model spec it reads.
_KEY_SOURCES = (__file__, spec.__file__, sys.modules[ModelSpec.__module__].__file__)


def _package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def definition_cache_key(inputs: PipelineInputs) -> str:
    """SHA-256 of everything :func:`build_definition` reads: the inputs (the model spec, names, prefix, tags, code
    digest), the versions of SDK_PACKAGES, and the source of this module, the step wiring and the model spec
    (placeholders, parameter names, step code locations). Not the token values substituted afterwards."""
    material = {
        "inputs": inputs.as_dict(),
        "sdk": {name: _package_version(name) for name in SDK_PACKAGES},
        "sources": [hashlib.sha256(Path(path).read_bytes()).hexdigest() for path in _KEY_SOURCES],
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()


def cached_definition(inputs: PipelineInputs, cache_dir: Optional[Path | str]) -> dict[str, Any]:
    """:func:`build_definition`, read from ``<cache_dir>/<key>.json`` when an earlier synth wrote it (then the SDK
    is not imported). ``cache_dir`` None: build every time. An unreadable entry is rebuilt and rewritten."""
    if cache_dir is None:
        return build_definition(inputs)
    path = Path(cache_dir) / f"{definition_cache_key(inputs)}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        pass
    definition = build_definition(inputs)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")  # concurrent synths: each writes its own file, then renames
    tmp.write_text(json.dumps(definition))
    os.replace(tmp, path)
    return definition


def substitute(node: Any, replacements: Mapping[str, str]) -> Any:
    """Replace placeholder substrings in every string of a parsed definition (values may be CDK token strings)."""
    if isinstance(node, str):
        for old, new in replacements.items():
            if old in node:
                node = node.replace(old, new)
        return node
    if isinstance(node, list):
        return [substitute(v, replacements) for v in node]
    if isinstance(node, dict):
        return {k: substitute(v, replacements) for k, v in node.items()}
    return node


def _image_config(framework: str) -> dict[str, Any]:
    """The SDK's own image URI config of ``framework`` (``sagemaker.image_uris.config_for_framework``), read from the
    installed package's data without importing the SDK (importing it costs seconds at synth)."""
    found = importlib.util.find_spec("sagemaker")
    if found is None or not found.submodule_search_locations:
        raise ModuleNotFoundError("the SageMaker Python SDK is not installed; pip install -r requirements.txt")
    package = Path(next(iter(found.submodule_search_locations)))
    return json.loads((package / "image_uri_config" / f"{framework}.json").read_text())


def image_registries(framework: str, version: str) -> dict[str, str]:
    """Region -> ECR account of a SageMaker framework image (from the SDK's own image URI config)."""
    config = _image_config(framework)
    scope = config.get("training", config)
    return dict(scope["versions"][version]["registries"])


def image_repository(framework: str, version: str) -> tuple[str, str]:
    """(repository, tag) of a SageMaker framework image, e.g. ('sagemaker-xgboost', '1.7-1')."""
    config = _image_config(framework)
    scope = config.get("training", config)
    repo = scope["versions"][version]["repository"]
    if framework == "sklearn":
        return repo, f"{version}-cpu-py3"
    return repo, version


def model_monitor_registries() -> dict[str, str]:
    """Region -> ECR account of the Model Monitor analyzer image (the SDK's own image URI config)."""
    return dict(_image_config("model-monitor")["versions"][""]["registries"])


def model_monitor_placeholder_prefix() -> str:
    """The registry part of the analyzer image URI the SDK writes for the placeholder region."""
    return f"{model_monitor_registries()[PLACEHOLDER_REGION]}.dkr.ecr.{PLACEHOLDER_REGION}.amazonaws.com"
