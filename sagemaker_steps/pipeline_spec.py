"""The single source of truth for the model-build pipeline: step order, scripts, containers and wiring.

Plain data, no SageMaker SDK import. Two readers:
- the CDK/SDK side (``mlops_constructs``) builds the SageMaker Pipeline definition from it;
- ``local_runner.py`` executes the same steps as subprocesses in the same order with the same wiring.

Wiring notation: a channel's ``source`` is ``"<Step>.<output>"`` (an earlier step's output) or
``"param:<PipelineParameterName>"`` (a pipeline parameter holding an S3 URI). Container paths are the paths the
script sees inside the job; ``flag``/``env`` name how the script lets a plain run override that path.

Print it as JSON: ``python -m sagemaker_steps.pipeline_spec [xgboost|sklearn]``.
"""
from __future__ import annotations

import json
import math
import string
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

from sagemaker_steps.model_spec import (  # noqa: F401  (re-exported: the spec's readers import them from here)
    FRAMEWORKS,
    METRICS,
    PROBLEM_TYPES,
    ModelSpec,
    higher_is_better,
    metric_json_path,
)

SCRIPTS_DIR = Path(__file__).resolve().parent
PROCESSING_BASE = "/opt/ml/processing"

# ---------------------------------------------------------------------------------------------------------------
# Containers (SageMaker framework images; sagemaker.image_uris.retrieve(framework, region, version))
# ---------------------------------------------------------------------------------------------------------------
SKLEARN_PROCESSING = "sklearn-processing"
SKLEARN_TRAINING = "sklearn-training"
XGBOOST_TRAINING = "xgboost-training"
XGBOOST_PROCESSING = "xgboost-processing"
# The versions the scripts are written for (Python 3.8/3.9 syntax, xgboost 1.7 APIs, scikit-learn 1.2).
CONTAINER_FRAMEWORK_VERSIONS: dict[str, str] = {"sklearn": "1.2-1", "xgboost": "1.7-1"}
CONTAINER_IMAGES: dict[str, dict[str, str]] = {
    SKLEARN_PROCESSING: {"framework": "sklearn", "version": CONTAINER_FRAMEWORK_VERSIONS["sklearn"]},
    SKLEARN_TRAINING: {"framework": "sklearn", "version": CONTAINER_FRAMEWORK_VERSIONS["sklearn"]},
    XGBOOST_TRAINING: {"framework": "xgboost", "version": CONTAINER_FRAMEWORK_VERSIONS["xgboost"]},
    XGBOOST_PROCESSING: {"framework": "xgboost", "version": CONTAINER_FRAMEWORK_VERSIONS["xgboost"]},
}

# ---------------------------------------------------------------------------------------------------------------
# Metrics and the registration condition
# ---------------------------------------------------------------------------------------------------------------
# The metric table is model_spec.METRICS (also read by the config validation); these are views of it.
HIGHER_IS_BETTER: dict[str, bool] = {m: higher for ms in METRICS.values() for m, higher in ms.items()}
METRICS_BY_PROBLEM_TYPE: dict[str, tuple[str, ...]] = {problem: tuple(ms) for problem, ms in METRICS.items()}
FAIL_MESSAGE_TEMPLATE = "Model {model} {metric}={value} does not meet the threshold {threshold}; not registered."
#: The FailStep's message when the champion comparison is on: the condition is "meets the threshold AND beats the
#: champion", so the message names both figures (``champion``: the ``summary`` Evaluate writes, see below).
CHAMPION_FAIL_MESSAGE_TEMPLATE = ("Model {model} {metric}={value} does not meet the threshold {threshold} or does "
                                  "not beat the champion ({champion}); not registered.")

# ---------------------------------------------------------------------------------------------------------------
# Champion vs challenger (models[].champion)
# ---------------------------------------------------------------------------------------------------------------
#: evaluation.json's block (next to ``<problem_type>_metrics``, which stays the challenger's, so the threshold
#: condition and the package's ModelQuality statistics keep their paths) with both figures:
#: ``{"metric", "higher_is_better", "challenger", "champion" (number or null), "margin", "challenger_wins" (1 or 0),
#: "champion_package_arn", "champion_version", "reason", "summary"}``.
CHAMPION_BLOCK = "champion_challenger"
#: The numeric verdict the condition step reads: 1 when the challenger beats the champion by the margin, or when
#: there is no champion (the first model), else 0.
CHALLENGER_WINS_PATH = f"{CHAMPION_BLOCK}.challenger_wins"
#: One line with both figures ("challenger rmse 2.1 vs champion rmse 2.0 (version 3), margin 0: rejected"), for the
#: FailStep's message.
CHAMPION_SUMMARY_PATH = f"{CHAMPION_BLOCK}.summary"
#: ResolveChampion's output: ``champion.json`` (``{"package_arn", "version", "model_data_url"}`` or ``{"none":
#: reason}``) and, with a champion, its ``model.tar.gz``.
CHAMPION_FILE = "champion.json"
CHAMPION_MODEL_FILE = "model.tar.gz"

# Pipeline parameters the wiring refers to (name -> (type, default, meaning)); build-time choices such as the
# problem type, framework and metric come from the model config and are not parameters (the condition's JSON
# path depends on them).
PIPELINE_PARAMETERS: dict[str, dict[str, Any]] = {
    "InputDataUrl": {"type": "String", "default": None,
                     "description": "S3 URI of the curated dataset prefix (Parquet partitioned by ingest_date)"},
    "MetricThreshold": {"type": "Float", "default": None,
                        "description": "Register only if the metric meets this (model config 'threshold')"},
    "ModelApprovalStatus": {"type": "String", "default": "PendingManualApproval",
                            "description": "Status of the registered model package"},
}


def read_json_path(document: Mapping[str, Any], json_path: str) -> Any:
    """Follow a dotted JSON path (the subset of JsonPath the condition step uses); KeyError if absent."""
    node: Any = document
    for key in json_path.split("."):
        if not isinstance(node, Mapping) or key not in node:
            raise KeyError(f"{json_path!r} not found in the evaluation report (missing {key!r})")
        node = node[key]
    return node


def metric_passes(value: float | None, threshold: float, higher_is_better: bool) -> bool:
    """The registration condition: value >= threshold if higher is better, else value <= threshold.

    A missing or non-finite value never passes (ConditionGreaterThanOrEqualTo/LessThanOrEqualTo semantics).
    """
    if value is None:
        return False
    value = float(value)
    if math.isnan(value) or math.isinf(value):
        return False
    return value >= threshold if higher_is_better else value <= threshold


def condition_operator(metric: str) -> str:
    """Which SageMaker condition implements ``metric_passes`` for this metric."""
    return "GreaterThanOrEqualTo" if higher_is_better(metric) else "LessThanOrEqualTo"


def format_fail_message(model: str, metric: str, value: float, threshold: float) -> str:
    return FAIL_MESSAGE_TEMPLATE.format(model=model, metric=metric, value=value, threshold=threshold)


def challenger_wins(evaluation: Mapping[str, Any]) -> bool:
    """The champion half of the registration condition, as CheckMetric reads it: ``challenger_wins >= 1`` in
    evaluation.json (KeyError when Evaluate wrote no champion block)."""
    value = read_json_path(evaluation, CHALLENGER_WINS_PATH)
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 1


def fail_message_parts(template: str = FAIL_MESSAGE_TEMPLATE) -> list[tuple[str, str]]:
    """The template as ordered ("text", literal) / ("field", name) parts, for building a Std:Join.

    Fields: ``model``, ``metric`` (build-time strings), ``value`` (JsonGet of the metric from EvaluationReport),
    ``threshold`` (the MetricThreshold parameter), ``champion`` (JsonGet of :data:`CHAMPION_SUMMARY_PATH`, in
    :data:`CHAMPION_FAIL_MESSAGE_TEMPLATE`).
    """
    parts: list[tuple[str, str]] = []
    for literal, field_name, _spec, _conversion in string.Formatter().parse(template):
        if literal:
            parts.append(("text", literal))
        if field_name is not None:
            parts.append(("field", field_name))
    return parts


# ---------------------------------------------------------------------------------------------------------------
# Steps
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Channel:
    """One input or output of a step."""

    name: str
    container_path: str
    source: Optional[str] = None  # inputs only: "<Step>.<output>" or "param:<Name>"
    flag: Optional[str] = None  # the script flag overriding container_path in a plain run
    env: Optional[str] = None  # training: the SM_* variable SageMaker sets to container_path
    content_type: Optional[str] = None  # training channels: TrainingInput content_type
    artifact: Optional[str] = None  # file name when the S3 side is one object (model.tar.gz)


@dataclass(frozen=True)
class PropertyFileSpec:
    name: str
    output_name: str
    path: str


@dataclass(frozen=True)
class StepSpec:
    name: str
    step_type: str  # Processing | Training | Condition | RegisterModel | Fail
    script: Optional[str] = None  # file in sagemaker_steps/ (the processing `code` / training `entry_point`)
    container: Optional[str] = None  # one of CONTAINER_IMAGES
    inputs: tuple[Channel, ...] = ()
    outputs: tuple[Channel, ...] = ()
    property_files: tuple[PropertyFileSpec, ...] = ()
    if_steps: tuple[str, ...] = ()  # Condition only
    else_steps: tuple[str, ...] = ()  # Condition only
    notes: str = ""

    @property
    def script_path(self) -> Optional[Path]:
        return SCRIPTS_DIR / self.script if self.script else None

    def output(self, name: str) -> Channel:
        for channel in self.outputs:
            if channel.name == name:
                return channel
        raise KeyError(f"step {self.name} has no output {name!r}")

    def upstream_steps(self) -> tuple[str, ...]:
        names = []
        for channel in self.inputs:
            if channel.source and not channel.source.startswith("param:"):
                step = channel.source.split(".", 1)[0]
                if step not in names:
                    names.append(step)
        return tuple(names)


EVALUATION_REPORT = PropertyFileSpec(name="EvaluationReport", output_name="evaluation", path="evaluation.json")
BASELINE_FILE = "baseline.csv"
DATA_MANIFEST_FILE = "data_manifest.json"

# Serving: train.py copies serve.py (staged next to it in the training source dir) into the model dir as
# code/serve.py, so model.tar.gz carries its inference code; the registered package's container environment points
# the framework container's inference toolkit at it.
SERVING_SCRIPT = "serve.py"
#: The training entry point (``sagemaker_program``), at the top of the training source dir.
TRAIN_SCRIPT = "train.py"
SERVING_SUBMIT_DIRECTORY = "/opt/ml/model/code"


def serving_environment(framework: str = "xgboost") -> dict[str, str]:
    """The container environment of the registered model package (the same for both frameworks)."""
    return {"SAGEMAKER_PROGRAM": SERVING_SCRIPT, "SAGEMAKER_SUBMIT_DIRECTORY": SERVING_SUBMIT_DIRECTORY}


#: Left out of a team's training source dir (``models[].training``): caches and editor/VCS files.
_SOURCE_DIR_SKIPPED = ("__pycache__", ".")


def training_source(framework: str = "xgboost", source_dir: Optional[Path] = None) -> dict[str, Path]:
    """The training job's source dir as archive member name -> file (SageMaker extracts it to /opt/ml/code and runs
    ``sagemaker_program``, train.py, from there; train.py copies serve.py from next to itself into the model).

    ``source_dir`` None: the shipped train.py and serve.py. Otherwise a team's directory (``models[].training``):
    every file under it, sub-directories kept, except ``__pycache__``, ``*.pyc`` and dot-files; it must hold
    train.py and serve.py at its top (ValueError naming the missing file otherwise).
    """
    if source_dir is None:
        return {SERVING_SCRIPT: SCRIPTS_DIR / SERVING_SCRIPT, TRAIN_SCRIPT: step_by_name(TRAIN, framework).script_path}
    source_dir = Path(source_dir)
    if not source_dir.is_dir():
        raise ValueError(f"training source dir {source_dir} is not a directory")
    members = {
        path.relative_to(source_dir).as_posix(): path
        for path in sorted(source_dir.rglob("*"))
        if path.is_file() and path.suffix != ".pyc"
        and not any(part.startswith(_SOURCE_DIR_SKIPPED) for part in path.relative_to(source_dir).parts)
    }
    missing = [name for name in (TRAIN_SCRIPT, SERVING_SCRIPT) if name not in members]
    if missing:
        raise ValueError(f"training source dir {source_dir} lacks {' and '.join(missing)} at its top; the "
                         f"training job runs {TRAIN_SCRIPT}, which packs {SERVING_SCRIPT} into the model")
    return members


def training_source_files(framework: str = "xgboost", source_dir: Optional[Path] = None) -> tuple[Path, ...]:
    """The files of :func:`training_source` (train.py first)."""
    members = training_source(framework, source_dir)
    return (members[TRAIN_SCRIPT], *(path for name, path in members.items() if name != TRAIN_SCRIPT))

PREPROCESS = "Preprocess"
RESOLVE_CHAMPION = "ResolveChampion"
TRAIN = "Train"
EVALUATE = "Evaluate"
CHECK_METRIC = "CheckMetric"
REGISTER = "Register"
FAIL = "FailStep"
STEP_ORDER: tuple[str, ...] = (RESOLVE_CHAMPION, PREPROCESS, TRAIN, EVALUATE, CHECK_METRIC, REGISTER, FAIL)
# Steps that run a script (the local runner executes these, in this order, those the model has; the rest are control
# flow / registry calls).
SCRIPT_STEPS: tuple[str, ...] = (RESOLVE_CHAMPION, PREPROCESS, TRAIN, EVALUATE)


def _p(name: str) -> str:
    return f"{PROCESSING_BASE}/{name}"


def pipeline_steps(framework: str = "xgboost", champion: bool = True) -> tuple[StepSpec, ...]:
    """All steps in execution order for a model of ``framework`` (only the Train/Evaluate containers differ).

    ``champion`` (``ModelSpec.champion``): add ResolveChampion, whose output is Evaluate's ``champion`` input (the
    champion's model and champion.json); without it the steps are exactly those of a pipeline without the comparison.
    """
    if framework not in FRAMEWORKS:
        raise ValueError(f"unknown framework {framework!r}; use one of {list(FRAMEWORKS)}")
    training_container = XGBOOST_TRAINING if framework == "xgboost" else SKLEARN_TRAINING
    # A joblib model must be loaded by the scikit-learn that wrote it, so sklearn models evaluate in that image.
    evaluate_container = XGBOOST_PROCESSING if framework == "xgboost" else SKLEARN_PROCESSING
    resolve: tuple[StepSpec, ...] = ()
    champion_input: tuple[Channel, ...] = ()
    if champion:
        resolve = (StepSpec(
            name=RESOLVE_CHAMPION, step_type="Processing", script="champion.py", container=SKLEARN_PROCESSING,
            outputs=(Channel("champion", _p("champion"), flag="--output-dir"),),
            notes="arguments: champion_arguments(<the model's package group>); calls SageMaker ListModelPackages "
                  "(Approved, newest first) and DescribeModelPackage, downloads the champion's model.tar.gz: the "
                  "one job that reaches AWS APIs (no network isolation, still in the VPC); champion/ holds "
                  "champion.json and, with a champion, model.tar.gz",
        ),)
        champion_input = (Channel("champion", _p("champion"), source=f"{RESOLVE_CHAMPION}.champion",
                                  flag="--champion-dir"),)
    return resolve + (
        StepSpec(
            name=PREPROCESS, step_type="Processing", script="preprocess.py", container=SKLEARN_PROCESSING,
            inputs=(Channel("input", _p("input"), source="param:InputDataUrl", flag="--input-dir"),),
            outputs=(
                Channel("train", _p("train"), flag="--train-dir"),
                Channel("validation", _p("validation"), flag="--validation-dir"),
                Channel("test", _p("test"), flag="--test-dir"),
                Channel("baseline", _p("baseline"), flag="--baseline-dir", artifact=BASELINE_FILE),
                Channel("manifest", _p("manifest"), flag="--manifest-dir", artifact=DATA_MANIFEST_FILE),
            ),
            notes="arguments: preprocess_arguments(); train/ also holds feature_spec.json; baseline/baseline.csv "
                  "is the Model Monitor data-quality baseline dataset (the rows the endpoint receives: encoded "
                  "numeric features, CSV, no header, no target); manifest/data_manifest.json lists the input "
                  "objects with their SHA-256 and one content digest",
        ),
        StepSpec(
            name=TRAIN, step_type="Training", script=TRAIN_SCRIPT, container=training_container,
            inputs=(
                Channel("train", "/opt/ml/input/data/train", source="Preprocess.train", flag="--train",
                        env="SM_CHANNEL_TRAIN", content_type="text/csv"),
                Channel("validation", "/opt/ml/input/data/validation", source="Preprocess.validation",
                        flag="--validation", env="SM_CHANNEL_VALIDATION", content_type="text/csv"),
            ),
            outputs=(Channel("model", "/opt/ml/model", flag="--model-dir", env="SM_MODEL_DIR",
                             artifact="model.tar.gz"),),
            notes="hyperparameters: training_hyperparameters(); the model output is "
                  "properties.ModelArtifacts.S3ModelArtifacts (model.tar.gz of /opt/ml/model)",
        ),
        StepSpec(
            name=EVALUATE, step_type="Processing", script="evaluate.py", container=evaluate_container,
            inputs=(
                Channel("model", _p("model"), source="Train.model", flag="--model-dir"),
                Channel("test", _p("test"), source="Preprocess.test", flag="--test-dir"),
                *champion_input,
            ),
            outputs=(Channel("evaluation", _p("evaluation"), flag="--output-dir"),),
            property_files=(EVALUATION_REPORT,),
            notes="arguments: evaluate_arguments(); evaluation/ holds evaluation.json and predictions.csv; with the "
                  "champion input, the champion is scored on the same test rows (evaluation.json's "
                  f"{CHAMPION_BLOCK} block)",
        ),
        StepSpec(
            name=CHECK_METRIC, step_type="Condition",
            if_steps=(REGISTER,), else_steps=(FAIL,),
            notes="JsonGet(Evaluate, EvaluationReport, metric_json_path(problem_type, metric)) "
                  "<condition_operator(metric)> MetricThreshold"
                  + (f" AND JsonGet(..., {CHALLENGER_WINS_PATH}) >= 1" if champion else ""),
        ),
        StepSpec(
            name=REGISTER, step_type="RegisterModel",
            inputs=(
                Channel("model", "", source="Train.model"),
                Channel("model_statistics", "", source="Evaluate.evaluation", artifact="evaluation.json",
                        content_type="application/json"),
            ),
            notes="model package in the model's group, approval status ModelApprovalStatus; "
                  "ModelMetrics.model_statistics = <Evaluate.evaluation S3 URI>/evaluation.json",
        ),
        StepSpec(
            name=FAIL, step_type="Fail",
            notes="error message: Std:Join of fail_message_parts("
                  + ("CHAMPION_FAIL_MESSAGE_TEMPLATE)" if champion else "FAIL_MESSAGE_TEMPLATE)"),
        ),
    )


STEPS: tuple[StepSpec, ...] = pipeline_steps("xgboost")


def step_by_name(name: str, framework: str = "xgboost", champion: bool = True) -> StepSpec:
    for step in pipeline_steps(framework, champion):
        if step.name == name:
            return step
    raise KeyError(f"no step named {name!r}")


# ---------------------------------------------------------------------------------------------------------------
# Script arguments (strings, as SageMaker passes them)
# ---------------------------------------------------------------------------------------------------------------
def preprocess_arguments(target_column: str, problem_type: str = "regression",
                         positive_threshold: float | None = None, *, positive_label: str | None = None,
                         validation_fraction: float = 0.15,
                         test_fraction: float = 0.15, seed: int = 42,
                         exclude_columns: tuple[str, ...] | list[str] = (),
                         input_data_url: Any = None) -> list[Any]:
    """The ProcessingStep job arguments of Preprocess (container paths are the defaults, so not passed).

    The features are the curated columns minus the target and ``exclude_columns``; numeric or categorical comes from
    the curated Parquet types, which the ETL wrote from the dataset's schema (``datasets[].columns[].type``).

    ``input_data_url``: recorded in the data manifest (the pipeline passes the InputDataUrl parameter).
    """
    if problem_type not in PROBLEM_TYPES:
        raise ValueError(f"unknown problem_type {problem_type!r}")
    if problem_type == "binary_classification" and (positive_threshold is None) == (positive_label is None):
        raise ValueError("binary_classification needs one of positive_threshold (label = target >= threshold) and "
                         "positive_label (label = target == positive_label)")
    args = ["--target-column", target_column, "--problem-type", problem_type,
            "--validation-fraction", str(validation_fraction), "--test-fraction", str(test_fraction),
            "--seed", str(seed)]
    if positive_threshold is not None:
        args += ["--positive-threshold", str(positive_threshold)]
    if positive_label is not None:
        args += ["--positive-label", positive_label]
    if exclude_columns:
        args += ["--exclude-columns", ",".join(exclude_columns)]
    if input_data_url is not None:
        args += ["--input-data-url", input_data_url]
    return args


# Defaults train.py applies when a hyperparameter is not given (xgboost names, used for both frameworks).
DEFAULT_HYPERPARAMETERS: dict[str, Any] = {"max_depth": 5, "eta": 0.2, "num_round": 100,
                                           "early_stopping_rounds": 10}


def training_hyperparameters(framework: str, hyperparameters: Mapping[str, Any] | None = None,
                             seed: int = 42) -> dict[str, str]:
    """The TrainingStep hyperparameters (SageMaker passes each as ``--name value`` to train.py)."""
    if framework not in FRAMEWORKS:
        raise ValueError(f"unknown framework {framework!r}")
    merged: dict[str, Any] = dict(DEFAULT_HYPERPARAMETERS)
    merged.update(hyperparameters or {})
    merged.setdefault("seed", seed)
    merged["framework"] = framework
    return {str(k): str(v) for k, v in merged.items()}


def evaluate_arguments(bootstrap_rounds: int = 100, seed: int = 42, *, model: Optional[ModelSpec] = None,
                       champion_dir: Optional[str] = None) -> list[str]:
    """Evaluate's job arguments. With ``model`` whose ``champion`` is on: the champion comparison (its metric and
    margin, and ``champion_dir``, default the champion channel's container path, passed explicitly so a job whose
    champion input is missing fails instead of registering without the comparison)."""
    args = ["--bootstrap-rounds", str(bootstrap_rounds), "--seed", str(seed)]
    if model is not None and model.champion:
        if champion_dir is None:
            champion_dir = next(c.container_path for c in step_by_name(EVALUATE, model.framework).inputs
                                if c.name == "champion")
        args += ["--champion-dir", champion_dir, "--metric", model.metric,
                 "--champion-margin", repr(float(model.champion_margin))]
    return args


def champion_arguments(model_package_group: Optional[str] = None) -> list[str]:
    """ResolveChampion's job arguments: the model's package group (its name, or its ARN, whose region the script
    then calls). None (a local run without a registry): the script writes ``{"none": ...}``."""
    return [] if model_package_group is None else ["--model-package-group", model_package_group]


def hyperparameters_to_cli(hyperparameters: Mapping[str, str]) -> list[str]:
    """How the SageMaker training toolkit turns hyperparameters into the entry point's argv."""
    argv: list[str] = []
    for key, value in hyperparameters.items():
        argv += [f"--{key}", str(value)]
    return argv


def as_dict(framework: str = "xgboost") -> dict[str, Any]:
    return {
        "steps": [asdict(step) for step in pipeline_steps(framework)],
        "container_images": CONTAINER_IMAGES,
        "property_file": asdict(EVALUATION_REPORT),
        "higher_is_better": HIGHER_IS_BETTER,
        "metrics_by_problem_type": METRICS_BY_PROBLEM_TYPE,
        "parameters": PIPELINE_PARAMETERS,
        "fail_message_template": FAIL_MESSAGE_TEMPLATE,
        "champion_fail_message_template": CHAMPION_FAIL_MESSAGE_TEMPLATE,
        "champion_block": CHAMPION_BLOCK,
    }


if __name__ == "__main__":
    print(json.dumps(as_dict(sys.argv[1] if len(sys.argv) > 1 else "xgboost"), indent=2))
