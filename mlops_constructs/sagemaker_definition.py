"""Every use of the SageMaker Python SDK lives here: it builds a pipeline definition at synth time, offline.

The SDK cannot take CDK tokens (``urlparse`` reads ``${Token[...]}`` inside an S3 URI as an IPv6 host), so the definition
is built with placeholders, parsed, and the placeholders are replaced by tokens afterwards; the stack serializes the
result with ``Stack.to_json_string``. The SDK's telemetry request is disabled so synth makes no network call.
A move to SDK 3.x is a change to this file only.

The step order, scripts, containers and wiring come from :mod:`sagemaker_steps.pipeline_spec`, the same source the
local runner reads.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
os.environ.setdefault("SAGEMAKER_TELEMETRY_OPT_OUT", "true")
for _name in ("sagemaker", "sagemaker.config", "sagemaker.workflow", "sagemaker.image_uris"):
    logging.getLogger(_name).setLevel(logging.ERROR)

from sagemaker_steps import pipeline_spec as spec  # noqa: E402

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


@dataclass(frozen=True)
class PipelineInputs:
    """What the definition needs, all plain strings (no tokens)."""

    model_name: str
    pipeline_name: str
    model_package_group_name: str
    target_column: str
    problem_type: str = "regression"
    framework: str = "xgboost"
    metric: str = "rmse"
    threshold: float = 3.0
    positive_threshold: Optional[float] = None
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    processing_instance_type: str = "ml.m5.large"
    training_instance_type: str = "ml.m5.large"
    exclude_columns: tuple[str, ...] = ("ingest_date",)
    artifacts_prefix: str = ""  # e.g. "models/abalone/"
    baseline: bool = True
    #: Tags of every processing and training job (contract C3: ``project`` and ``environment``).
    job_tags: Mapping[str, str] = field(default_factory=dict)
    #: Digest of the step code as deployed (recorded in the package metadata as ``CodeDigest``).
    code_digest: str = "unknown"


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
BASELINE_STEP = "DataQualityBaseline"
# Every execution writes under <artifacts prefix>executions/<PipelineExecutionId>/ (preprocess/, baseline/,
# training/, evaluation/): nothing one run writes is overwritten by another, and a package's metadata and metrics
# point at the files of the run that produced it.
EXECUTIONS_PREFIX = "executions"


def build_definition(inputs: PipelineInputs) -> dict[str, Any]:
    """The pipeline definition (parsed JSON) with placeholders for role, key, buckets, code and images."""
    _disable_telemetry()
    from sagemaker.estimator import Estimator
    from sagemaker.model import Model
    from sagemaker.model_metrics import MetricsSource, ModelMetrics
    from sagemaker.processing import ProcessingInput, ProcessingOutput, ScriptProcessor
    from sagemaker.inputs import TrainingInput
    from sagemaker.workflow.condition_step import ConditionStep
    from sagemaker.workflow.execution_variables import ExecutionVariables
    from sagemaker.workflow.model_step import ModelStep
    from sagemaker.workflow.conditions import ConditionGreaterThanOrEqualTo, ConditionLessThanOrEqualTo
    from sagemaker.workflow.fail_step import FailStep
    from sagemaker.workflow.functions import Join, JsonGet
    from sagemaker.workflow.parameters import ParameterFloat, ParameterString
    from sagemaker.workflow.pipeline import Pipeline
    from sagemaker.workflow.properties import PropertyFile
    from sagemaker.workflow.retry import (
        SageMakerJobExceptionTypeEnum,
        SageMakerJobStepRetryPolicy,
        StepExceptionTypeEnum,
        StepRetryPolicy,
    )
    from sagemaker.model_monitor.dataset_format import DatasetFormat
    from sagemaker.workflow.check_job_config import CheckJobConfig
    from sagemaker.workflow.quality_check_step import DataQualityCheckConfig, QualityCheckStep
    from sagemaker.workflow.steps import ProcessingStep, TrainingStep

    session = _session("placeholder-artifacts-bucket")
    out = f"{PLACEHOLDER_ARTIFACTS}/{inputs.artifacts_prefix}"

    p_input = ParameterString("InputDataUrl", default_value=PLACEHOLDER_INPUT)
    p_threshold = ParameterFloat("MetricThreshold", default_value=float(inputs.threshold))
    p_approval = ParameterString("ModelApprovalStatus", default_value="PendingManualApproval")
    p_commit = ParameterString("GitCommit", default_value="unknown")
    p_proc_type = ParameterString("ProcessingInstanceType", default_value=inputs.processing_instance_type)
    p_train_type = ParameterString("TrainingInstanceType", default_value=inputs.training_instance_type)
    parameters = [p_input, p_threshold, p_approval, p_commit, p_proc_type, p_train_type]

    # No step caching: a run on new data under the same InputDataUrl must retrain (a cache hit would reuse the old
    # preprocess output and register the old model again). Re-run a failed execution with RetryPipelineExecution.
    execution_id = ExecutionVariables.PIPELINE_EXECUTION_ID

    def run_uri(*parts: str) -> Join:
        """s3://<artifacts>/<prefix>executions/<PipelineExecutionId>/<parts...>"""
        return Join(on="/", values=[f"{out}{EXECUTIONS_PREFIX}", execution_id, *parts])

    tags = [{"Key": k, "Value": v} for k, v in sorted(inputs.job_tags.items())] or None
    retry = [
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
    steps = {s.name: s for s in spec.pipeline_steps(inputs.framework)}
    image = {kind: PLACEHOLDER_IMAGE[meta["framework"]] for kind, meta in spec.CONTAINER_IMAGES.items()}

    def processor(container: str, base: str) -> ScriptProcessor:
        return ScriptProcessor(
            image_uri=image[container],
            command=["python3"],
            role=PLACEHOLDER_ROLE,
            instance_type=p_proc_type,
            instance_count=1,
            volume_kms_key=PLACEHOLDER_KMS,
            output_kms_key=PLACEHOLDER_KMS,
            base_job_name=f"{inputs.model_name}-{base}",
            sagemaker_session=session,
            max_runtime_in_seconds=3600,
            tags=tags,
        )

    # --- Preprocess ------------------------------------------------------------------------------------------------
    pre = steps[spec.PREPROCESS]
    step_pre = ProcessingStep(
        name=pre.name,
        processor=processor(pre.container, "preprocess"),
        code=code_key(pre.script),
        inputs=[ProcessingInput(source=p_input, destination=pre.inputs[0].container_path, input_name="input")],
        outputs=[
            ProcessingOutput(
                output_name=o.name,
                source=o.container_path,
                destination=run_uri("preprocess", o.name),
            )
            for o in pre.outputs
        ],
        job_arguments=spec.preprocess_arguments(
            inputs.target_column,
            inputs.problem_type,
            inputs.positive_threshold,
            exclude_columns=inputs.exclude_columns,
            input_data_url=p_input,
        ),
        retry_policies=retry,
    )

    # --- Data-quality baseline for Model Monitor, per execution: statistics.json and constraints.json of exactly the
    # rows the endpoint receives (encoded numeric features, CSV, no header, no target); registered with the package.
    baseline_step = None
    if inputs.baseline:
        baseline_step = QualityCheckStep(
            name=BASELINE_STEP,
            skip_check=True,
            register_new_baseline=True,
            quality_check_config=DataQualityCheckConfig(
                baseline_dataset=step_pre.properties.ProcessingOutputConfig.Outputs["baseline"].S3Output.S3Uri,
                dataset_format=DatasetFormat.csv(header=False),
                output_s3_uri=run_uri("baseline"),
            ),
            check_job_config=CheckJobConfig(
                role=PLACEHOLDER_ROLE,
                instance_count=1,
                instance_type=inputs.processing_instance_type,
                volume_kms_key=PLACEHOLDER_KMS,
                output_kms_key=PLACEHOLDER_KMS,
                max_runtime_in_seconds=3600,
                sagemaker_session=session,
                base_job_name=f"{inputs.model_name}-baseline",
                tags=tags,
            ),
        )

    # --- Train (script mode in the framework container) ------------------------------------------------------------
    tr = steps[spec.TRAIN]
    estimator = Estimator(
        image_uri=image[tr.container],
        role=PLACEHOLDER_ROLE,
        instance_type=p_train_type,
        instance_count=1,
        volume_kms_key=PLACEHOLDER_KMS,
        output_kms_key=PLACEHOLDER_KMS,
        output_path=run_uri("training"),
        base_job_name=f"{inputs.model_name}-train",
        sagemaker_session=session,
        max_run=3600,
        hyperparameters={
            **spec.training_hyperparameters(inputs.framework, inputs.hyperparameters),
            "sagemaker_program": tr.script,
            "sagemaker_submit_directory": TRAIN_SOURCE_DIR,
        },
        enable_sagemaker_metrics=True,
        disable_profiler=True,
        environment={"SAGEMAKER_PROGRAM": tr.script},
        tags=tags,
    )
    step_train = TrainingStep(
        name=tr.name,
        estimator=estimator,
        inputs={
            ch.name: TrainingInput(
                s3_data=step_pre.properties.ProcessingOutputConfig.Outputs[ch.source.split(".")[1]].S3Output.S3Uri,
                content_type=ch.content_type,
            )
            for ch in tr.inputs
        },
        retry_policies=retry,
    )

    # --- Evaluate --------------------------------------------------------------------------------------------------
    ev = steps[spec.EVALUATE]
    report = PropertyFile(
        name=spec.EVALUATION_REPORT.name,
        output_name=spec.EVALUATION_REPORT.output_name,
        path=spec.EVALUATION_REPORT.path,
    )
    sources = {
        "Train.model": step_train.properties.ModelArtifacts.S3ModelArtifacts,
        "Preprocess.test": step_pre.properties.ProcessingOutputConfig.Outputs["test"].S3Output.S3Uri,
    }
    step_eval = ProcessingStep(
        name=ev.name,
        processor=processor(ev.container, "evaluate"),
        code=code_key(ev.script),
        inputs=[
            ProcessingInput(source=sources[ch.source], destination=ch.container_path, input_name=ch.name)
            for ch in ev.inputs
        ],
        outputs=[
            ProcessingOutput(
                output_name=o.name,
                source=o.container_path,
                destination=run_uri("evaluation"),
            )
            for o in ev.outputs
        ],
        job_arguments=spec.evaluate_arguments(),
        property_files=[report],
        retry_policies=retry,
    )

    # --- Register, condition, fail ------------------------------------------------------------------------------
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
    metrics = ModelMetrics(
        model_statistics=MetricsSource(
            s3_uri=Join(on="/", values=[eval_uri, spec.EVALUATION_REPORT.path]), content_type="application/json"
        ),
        **data_quality,
    )
    manifest = pre.output("manifest")
    manifest_uri = Join(
        on="/",
        values=[step_pre.properties.ProcessingOutputConfig.Outputs["manifest"].S3Output.S3Uri, manifest.artifact],
    )
    # The container environment travels with the package (an SDK Model keeps it; RegisterModel with an estimator
    # drops it): the framework container imports train.py from model.tar.gz's code/ and calls its model_fn/input_fn.
    serving_model = Model(
        image_uri=image[tr.container],
        model_data=step_train.properties.ModelArtifacts.S3ModelArtifacts,
        env=spec.serving_environment(inputs.framework),
        role=PLACEHOLDER_ROLE,
        sagemaker_session=session,
    )
    register = ModelStep(
        name=spec.REGISTER,
        step_args=serving_model.register(
            content_types=["text/csv", "application/json"],
            response_types=["text/csv", "application/json"],
            inference_instances=["ml.t2.medium", "ml.m5.large", "ml.m5.xlarge"],
            transform_instances=["ml.m5.large"],
            model_package_group_name=inputs.model_package_group_name,
            approval_status=p_approval,
            model_metrics=metrics,
            customer_metadata_properties={
                "GitCommit": p_commit,
                "CodeDigest": inputs.code_digest,
                "Model": inputs.model_name,
                "InputDataUrl": p_input,
                "DataManifest": manifest_uri,
                "PipelineExecutionArn": ExecutionVariables.PIPELINE_EXECUTION_ARN,
            },
            description=f"{inputs.model_name}: {inputs.problem_type} ({inputs.framework}), metric {inputs.metric}",
        ),
    )
    metric_value = JsonGet(
        step_name=step_eval.name,
        property_file=report,
        json_path=spec.metric_json_path(inputs.problem_type, inputs.metric),
    )
    condition_cls = (
        ConditionGreaterThanOrEqualTo
        if spec.condition_operator(inputs.metric) == "GreaterThanOrEqualTo"
        else ConditionLessThanOrEqualTo
    )
    fields = {"model": inputs.model_name, "metric": inputs.metric, "value": metric_value, "threshold": p_threshold}
    fail = FailStep(
        name=spec.FAIL,
        error_message=Join(
            on="", values=[text if kind == "text" else fields[text] for kind, text in spec.fail_message_parts()]
        ),
    )
    check = ConditionStep(
        name=spec.CHECK_METRIC,
        conditions=[condition_cls(left=metric_value, right=p_threshold)],
        if_steps=[register],
        else_steps=[fail],
    )
    pipeline = Pipeline(
        name=inputs.pipeline_name,
        parameters=parameters,
        steps=[step_pre, *([baseline_step] if baseline_step else []), step_train, step_eval, check],
        sagemaker_session=session,
        # No SageMaker Experiments entities (experiment, trial, trial components): the pipeline role needs no
        # sagemaker:CreateExperiment/CreateTrial/AssociateTrialComponent; lineage is in the package metadata.
        pipeline_experiment_config=None,
    )
    return json.loads(pipeline.definition())


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


def image_registries(framework: str, version: str) -> dict[str, str]:
    """Region -> ECR account of a SageMaker framework image (from the SDK's own image URI config)."""
    from sagemaker import image_uris

    config = image_uris.config_for_framework(framework)
    scope = config.get("training", config)
    return dict(scope["versions"][version]["registries"])


def image_repository(framework: str, version: str) -> tuple[str, str]:
    """(repository, tag) of a SageMaker framework image, e.g. ('sagemaker-xgboost', '1.7-1')."""
    from sagemaker import image_uris

    config = image_uris.config_for_framework(framework)
    scope = config.get("training", config)
    entry = scope["versions"][version]
    repo = entry["repository"]
    if framework == "sklearn":
        return repo, f"{version}-cpu-py3"
    return repo, version


def model_monitor_registries() -> dict[str, str]:
    """Region -> ECR account of the Model Monitor analyzer image (the SDK's own image URI config)."""
    from sagemaker import image_uris

    return dict(image_uris.config_for_framework("model-monitor")["versions"][""]["registries"])


def model_monitor_placeholder_prefix() -> str:
    """The registry part of the analyzer image URI the SDK writes for the placeholder region."""
    return f"{model_monitor_registries()[PLACEHOLDER_REGION]}.dkr.ecr.{PLACEHOLDER_REGION}.amazonaws.com"
