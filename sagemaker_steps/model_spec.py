"""What the model build needs to know about one model, as one frozen value; and the one metric table.

Standard library only: the config (``platform_config``), the constructs (``mlops_constructs``), the local runner and
the demo all read these, and none of them needs CDK or pydantic for it.

- :data:`METRICS`: the metrics ``evaluate.py`` writes, per problem type, and whether a larger value is better. The
  config validation, the pipeline's condition step and the local runner's condition all read this table.
- :class:`ModelSpec`: built once from the config (``ModelConfig.spec``) and passed whole to ``ModelBuildPipeline``,
  the definition builder and :func:`sagemaker_steps.local_runner.run_local_pipeline`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping, Optional, Tuple, Union

#: problem type -> metric -> higher is better. The one table of metric names and directions.
METRICS: dict[str, dict[str, bool]] = {
    "regression": {"rmse": False, "mae": False, "r2": True},
    "binary_classification": {"auc": True, "accuracy": True, "f1": True},
}
PROBLEM_TYPES: tuple[str, ...] = tuple(METRICS)
FRAMEWORKS: tuple[str, ...] = ("xgboost", "sklearn")
DEFAULT_INSTANCE_TYPE = "ml.m5.large"
#: The training job's time limit (MaxRuntimeInSeconds) unless the config says otherwise: one hour.
DEFAULT_MAX_RUN_SECONDS = 3600
#: The upper limit of MaxRuntimeInSeconds the config allows (SageMaker's documented maximum): 28 days.
MAX_TRAINING_SECONDS = 28 * 24 * 3600

HyperparameterValue = Union[str, int, float]


def higher_is_better(metric: str) -> bool:
    """Whether a larger ``metric`` is better (from :data:`METRICS`)."""
    for by_metric in METRICS.values():
        if metric in by_metric:
            return by_metric[metric]
    raise ValueError(f"unknown metric {metric!r}; use one of {sorted(m for ms in METRICS.values() for m in ms)}")


def metric_json_path(problem_type: str, metric: str) -> str:
    """The JSON path into evaluation.json the condition step (JsonGet) and the local runner read."""
    if problem_type not in METRICS:
        raise ValueError(f"unknown problem_type {problem_type!r}; use one of {list(METRICS)}")
    if metric not in METRICS[problem_type]:
        raise ValueError(f"metric {metric!r} is not computed for problem_type {problem_type}; "
                         f"use one of {list(METRICS[problem_type])}")
    return f"{problem_type}_metrics.{metric}.value"


@dataclass(frozen=True)
class ModelSpec:
    """One model as the build sees it: what to predict, how to train, how to judge it. Validated on creation.

    :param name: short model name (job name prefixes, registry metadata, fail message).
    :param target: the column to predict (the label). (Issue 12 adds the dataset's spec next to it; the features are
        then its columns minus the target.)
    :param metric: metric the registration condition checks; one of ``METRICS[problem_type]``.
    :param threshold: register only if ``metric`` is at least (higher is better) or at most this.
    :param problem_type: ``regression`` (default) or ``binary_classification``.
    :param framework: ``xgboost`` (default) or ``sklearn``.
    :param positive_threshold: binary_classification on a numeric target: the label is ``target >= this``.
    :param positive_label: binary_classification on a string target: the label is ``target == this``. A binary
        model has exactly one of the two.
    :param exclude_columns: columns of the dataset that are not features (besides the target). Default: none.
    :param hyperparameters: training hyperparameters (name -> value), in order; a mapping is accepted and kept as a
        tuple of pairs so the spec stays immutable and hashable. Default: none (train.py's defaults).
    :param processing_instance_type / training_instance_type: default instance types of the pipeline's
        processing and training jobs. Default: ``ml.m5.large``.
    :param spot_training: train on spot capacity (managed spot training: EnableManagedSpotTraining, a
        MaxWaitTimeInSeconds and a CheckpointConfig under the execution's prefix). Default: false.
    :param max_run_seconds: the training job's time limit (MaxRuntimeInSeconds), spot or not. Default: 3600.
    :param max_wait_seconds: spot only, and then required: waiting for spot capacity plus running
        (MaxWaitTimeInSeconds); at least ``max_run_seconds``. Without spot it must be None.
    :param champion: compare the challenger (the model just trained) with the champion (the latest Approved package
        of the model's group) on the same test split, and register it only if it also beats the champion by
        ``champion_margin`` (the first model, with no champion, only has to meet ``threshold``). Default: true.
    :param champion_margin: in the metric's units, 0 or more: the challenger must be better than the champion by at
        least this much (0: at least as good). Default: 0.
    """

    name: str
    target: str
    metric: str
    threshold: float
    problem_type: str = "regression"
    framework: str = "xgboost"
    positive_threshold: Optional[float] = None
    positive_label: Optional[str] = None
    exclude_columns: Tuple[str, ...] = ()
    hyperparameters: Tuple[Tuple[str, HyperparameterValue], ...] = ()
    processing_instance_type: str = DEFAULT_INSTANCE_TYPE
    training_instance_type: str = DEFAULT_INSTANCE_TYPE
    spot_training: bool = False
    max_run_seconds: int = DEFAULT_MAX_RUN_SECONDS
    max_wait_seconds: Optional[int] = None
    champion: bool = True
    champion_margin: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.hyperparameters, Mapping):
            object.__setattr__(self, "hyperparameters", tuple(self.hyperparameters.items()))
        else:
            object.__setattr__(self, "hyperparameters", tuple((str(k), v) for k, v in self.hyperparameters))
        object.__setattr__(self, "exclude_columns", tuple(self.exclude_columns))
        if not self.name:
            raise ValueError("ModelSpec name is empty; give the model a name")
        if not self.target:
            raise ValueError(f"ModelSpec {self.name}: target is empty; name the column to predict")
        if self.framework not in FRAMEWORKS:
            raise ValueError(f"ModelSpec {self.name}: unknown framework {self.framework!r}; use one of "
                             f"{list(FRAMEWORKS)}")
        metric_json_path(self.problem_type, self.metric)  # a clear error for a metric the problem type lacks
        if self.problem_type == "binary_classification" and (self.positive_threshold is None) == (
                self.positive_label is None):
            raise ValueError(f"ModelSpec {self.name}: binary_classification needs one of positive_threshold "
                             "(numeric target: label = target >= threshold) and positive_label (string target: "
                             "label = target == positive_label)")
        if self.problem_type == "regression" and (self.positive_threshold, self.positive_label) != (None, None):
            raise ValueError(f"ModelSpec {self.name}: positive_threshold and positive_label apply to "
                             "binary_classification only; remove them")
        if self.target in self.exclude_columns:
            raise ValueError(f"ModelSpec {self.name}: exclude_columns names the target {self.target!r}; remove it")
        self._check_time_limits()
        if not self.champion_margin >= 0:  # also refuses NaN
            raise ValueError(f"ModelSpec {self.name}: champion_margin {self.champion_margin} must be 0 or more, in "
                             "the metric's units (the challenger must be better than the champion by at least it)")

    def _check_time_limits(self) -> None:
        if not 1 <= self.max_run_seconds <= MAX_TRAINING_SECONDS:
            raise ValueError(f"ModelSpec {self.name}: max_run_seconds {self.max_run_seconds} is outside 1.."
                             f"{MAX_TRAINING_SECONDS} (SageMaker's MaxRuntimeInSeconds limit, 28 days)")
        if not self.spot_training:
            if self.max_wait_seconds is not None:
                raise ValueError(f"ModelSpec {self.name}: max_wait_seconds applies to spot training only; set "
                                 "spot_training or remove max_wait_seconds")
            return
        if self.max_wait_seconds is None:
            raise ValueError(f"ModelSpec {self.name}: spot training needs max_wait_seconds (MaxWaitTimeInSeconds)")
        if self.max_wait_seconds < self.max_run_seconds:
            raise ValueError(f"ModelSpec {self.name}: max_wait_seconds ({self.max_wait_seconds}) must be at least "
                             f"max_run_seconds ({self.max_run_seconds}): SageMaker's MaxWaitTimeInSeconds counts "
                             "the run time too")

    @property
    def higher_is_better(self) -> bool:
        return METRICS[self.problem_type][self.metric]

    @property
    def metric_json_path(self) -> str:
        return metric_json_path(self.problem_type, self.metric)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (hyperparameters as pairs, in order): the spec's part of a cache key."""
        data = asdict(self)
        data["hyperparameters"] = [list(pair) for pair in self.hyperparameters]
        data["exclude_columns"] = list(self.exclude_columns)
        return data
