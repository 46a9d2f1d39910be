"""Typed configuration of one environment (``config/<env>.yaml``).

Every field has a safe default unless no sensible default exists. Stacks translate this object into construct props;
constructs never read it (see DESIGN.md, "Layers").
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from platform_config.datasets import DATASET_NAME_PATTERN, DatasetConfig, check_model_dataset
from platform_config.loop import (
    MAX_IDLE_HOURS,
    BatchConfig,
    BudgetConfig,
    ChampionConfig,
    EndpointOverride,
    ModelQualityConfig,
    RetrainingConfig,
    SpotTrainingConfig,
    check_schedule,
    merge_override,
)
from platform_config.names import NAME_PATTERN, PARTS
from platform_config.network import IamConfig, NetworkConfig
from sagemaker_steps.model_spec import METRICS, ModelSpec  # the one metric table (standard library only)
from sagemaker_steps.pipeline_spec import SERVING_SCRIPT, TRAIN_SCRIPT

# Names that end up in physical resource names (pipeline, model package group, endpoint, Glue job) must fit the
# strictest of those services: SageMaker names allow [a-zA-Z0-9-] and 63 characters (rules in platform_config.names).
_NAME_RE = re.compile(NAME_PATTERN)


#: The repository root: ``models[].training`` directories are relative to it (the CDK app and the platform pipeline's
#: synth run from it).
REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
#: What a training source dir must hold at its top (sagemaker_steps.pipeline_spec.training_source checks the same).
TRAINING_FILES = (TRAIN_SCRIPT, SERVING_SCRIPT)


def _check_training(v: Optional[str]) -> Optional[str]:
    """``models[].training``: a directory of the repository holding train.py and serve.py."""
    if v is None:
        return v
    path = Path(v)
    if path.is_absolute() or ".." in path.parts:
        raise ValueError("must be a directory relative to the repository root, inside it (e.g. training/my_model); "
                         "move the code into the repository")
    directory = REPOSITORY_ROOT / path
    if not directory.is_dir():
        raise ValueError(f"no such directory under the repository root {REPOSITORY_ROOT}; create it with train.py "
                         "and serve.py (docs/FORKING.md) or fix the path")
    missing = [name for name in TRAINING_FILES if not (directory / name).is_file()]
    if missing:
        raise ValueError(f"the directory lacks {' and '.join(missing)}; add it (the training job runs train.py, "
                         "which copies serve.py into the model; docs/FORKING.md)")
    return path.as_posix()


# Longest "<project>-<environment>-<model>-<stage>": it names the SageMaker endpoint (63 characters at most), the
# inference Lambda function (64) and, with a suffix, the Model Monitor schedule (63).
SERVING_NAME_MAX = 54


@lru_cache(maxsize=1)
def supported_regions() -> tuple[str, ...]:
    """Regions where every image the platform runs exists: the SageMaker framework images of the pipeline steps and
    the endpoint (``sagemaker_steps.pipeline_spec.CONTAINER_FRAMEWORK_VERSIONS``) and the Model Monitor analyzer.

    Computed from the SageMaker SDK's own image URI config (offline), the same source as the stacks' region ->
    account mappings; imported on first use, so loading a config without a region stays fast.
    """
    from mlops_constructs.sagemaker_definition import image_registries, model_monitor_registries
    from sagemaker_steps.pipeline_spec import CONTAINER_FRAMEWORK_VERSIONS

    regions = set(model_monitor_registries())
    for framework, version in CONTAINER_FRAMEWORK_VERSIONS.items():
        regions &= set(image_registries(framework, version))
    return tuple(sorted(regions))


def check_region(region: Optional[str]) -> Optional[str]:
    """``region`` if the platform supports it, else a ValueError naming the supported regions."""
    if region is not None and region not in supported_regions():
        raise ValueError(
            f"region {region} is not supported: the SageMaker images the platform runs (XGBoost, scikit-learn, Model "
            f"Monitor) are not published there; use one of {', '.join(supported_regions())}"
        )
    return region


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Tags(_Strict):
    cost_center: str = Field(min_length=1, description="Cost allocation tag `cost-center` on every resource.")
    owner: Optional[str] = Field(default=None, description="Optional `owner` tag.")


#: An EventBridge schedule expression or None (defined in platform_config.loop, which schema imports).
_check_schedule = check_schedule


class DataLakeConfig(_Strict):
    noncurrent_version_expiration_days: int = Field(default=90, ge=1, le=3650)
    raw_transition_to_ia_days: int = Field(default=30, ge=30, le=3650)
    etl_worker_type: Literal["G.1X", "G.2X", "G.4X", "G.8X"] = "G.1X"
    etl_workers: int = Field(default=2, ge=2, le=100)
    etl_timeout_minutes: int = Field(default=60, ge=1, le=2880)
    etl_failed_tasks_alarm: int = Field(
        default=1, ge=1, description="Failed Spark tasks of the ETL job in 5 minutes that raise its alarm."
    )

    @model_validator(mode="before")
    @classmethod
    def _moved(cls, data):
        moved = {"dataset": "datasets[].name", "etl_schedule": "datasets[].triggers.schedule",
                 "etl_on_raw_upload": "datasets[].triggers.raw_upload"}
        for old, new in moved.items():
            if isinstance(data, dict) and old in data:
                raise ValueError(f"{old} moved to {new} (each dataset has its own ETL job and triggers); move the "
                                 "value there")
        return data


class AutoscalingConfig(_Strict):
    min_capacity: int = Field(default=1, ge=1)
    max_capacity: int = Field(default=2, ge=1)
    target_invocations_per_instance: int = Field(default=100, ge=1)

    @model_validator(mode="after")
    def _range(self) -> "AutoscalingConfig":
        if self.max_capacity < self.min_capacity:
            raise ValueError(
                f"max_capacity ({self.max_capacity}) must be at least min_capacity ({self.min_capacity})"
            )
        return self


class ServerlessConfig(_Strict):
    memory_mb: Literal[1024, 2048, 3072, 4096, 5120, 6144] = 2048
    max_concurrency: int = Field(default=5, ge=1, le=200)


class EndpointConfig(_Strict):
    enabled: bool = True
    instance_type: str = Field(default="ml.m5.large", pattern=r"^ml\.[a-z0-9]+\.[a-z0-9]+$")
    initial_instance_count: int = Field(default=1, ge=1)
    serverless: Optional[ServerlessConfig] = Field(
        default=None, description="Serverless inference instead of instances (no autoscaling, no blue/green)."
    )
    autoscaling: AutoscalingConfig = AutoscalingConfig()
    data_capture_percent: int = Field(default=100, ge=0, le=100)
    traffic_shifting: Literal["canary", "linear", "all_at_once"] = "canary"
    canary_percent: int = Field(default=10, ge=1, le=50)
    wait_minutes: int = Field(default=10, ge=0, le=60, description="Bake time per traffic shift step.")


class LambdaServingConfig(_Strict):
    enabled: bool = True
    mode: Literal["model", "endpoint_proxy"] = "model"
    memory_mb: int = Field(default=1024, ge=128, le=10240)
    timeout_seconds: int = Field(default=10, ge=1, le=900)
    reserved_concurrency: Optional[int] = Field(default=10, ge=1)
    provisioned_concurrency: int = Field(default=0, ge=0)
    max_batch_rows: int = Field(default=1000, ge=1, le=100000)
    deployment: Literal["canary", "linear", "all_at_once"] = "canary"


class AlarmThresholds(_Strict):
    endpoint_5xx_rate_percent: float = Field(default=1.0, gt=0, le=100)
    model_latency_p99_ms: float = Field(default=500.0, gt=0)
    lambda_errors: int = Field(default=5, ge=1)
    lambda_throttles: int = Field(default=1, ge=1)
    lambda_duration_p99_ms: float = Field(default=1000.0, gt=0)
    pipeline_failures: int = Field(default=1, ge=1)
    idle_endpoint_hours: Optional[int] = Field(
        default=None,
        ge=1,
        le=MAX_IDLE_HOURS,
        description="Alarm when a stage's endpoint had no invocations for this many hours (1 to 168, CloudWatch's "
        "7-day evaluation limit), so an idle endpoint does not keep costing unnoticed. None: no idle alarm.",
    )

    @model_validator(mode="before")
    @classmethod
    def _moved(cls, data):
        if isinstance(data, dict) and "glue_job_failures" in data:
            raise ValueError(
                "glue_job_failures moved to data_lake.etl_failed_tasks_alarm (the ETL job has one alarm, in the "
                "data stack); move the value there"
            )
        return data


class StageConfig(_Strict):
    name: str = Field(pattern=PARTS["stage"][0], max_length=PARTS["stage"][1])
    account: Optional[str] = Field(default=None, pattern=r"^\d{12}$")
    region: Optional[str] = Field(default=None, pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")
    endpoint: Optional[EndpointOverride] = Field(
        default=None,
        description="This stage's endpoint settings merged over models[].endpoint (e.g. serverless in staging, "
        "instances in prod); see ModelConfig.endpoint_for. None: the model's endpoint as is.",
    )

    _region = field_validator("region")(classmethod(lambda cls, v: check_region(v)))


def _captures(endpoint: EndpointConfig) -> bool:
    """Whether ``endpoint`` captures requests for Model Monitor (instances only: serverless captures no data)."""
    return endpoint.enabled and endpoint.serverless is None and endpoint.data_capture_percent > 0


class ModelConfig(_Strict):
    name: str = Field(pattern=PARTS["model"][0], max_length=PARTS["model"][1])
    dataset: Optional[str] = Field(
        default=None,
        pattern=DATASET_NAME_PATTERN,
        description="Name of the dataset (datasets[].name) the model trains on; optional when there is one dataset.",
    )
    target_column: str = Field(min_length=1, description="A column of the dataset: the label.")
    exclude_columns: list[str] = Field(
        default_factory=list, description="Columns of the dataset that are not features (e.g. IDs)."
    )
    problem_type: Literal["regression", "binary_classification"] = "regression"
    framework: Literal["xgboost", "sklearn"] = "xgboost"
    metric: str = Field(description="Metric the condition step checks; see METRICS for allowed values.")
    threshold: float = Field(description="Register only if the metric is at most (rmse, mae) or at least this.")
    positive_threshold: Optional[float] = Field(
        default=None,
        description="binary_classification only: the label is target >= positive_threshold (for a numeric target).",
    )
    positive_label: Optional[str] = Field(
        default=None,
        min_length=1,
        description="binary_classification only: the label is target == positive_label (for a string target).",
    )
    hyperparameters: dict[str, str | int | float] = Field(default_factory=dict)
    training: Optional[str] = Field(
        default=None,
        min_length=1,
        description="Your training code: a directory relative to the repository root holding train.py and serve.py "
        "(script mode, the contract of sagemaker_steps/train.py and serve.py; docs/FORKING.md). Default: the shipped.",
    )
    processing_instance_type: str = Field(default="ml.m5.large", pattern=r"^ml\.[a-z0-9]+\.[a-z0-9]+$")
    training_instance_type: str = Field(default="ml.m5.large", pattern=r"^ml\.[a-z0-9]+\.[a-z0-9]+$")
    pipeline_schedule: Optional[str] = None
    model_package_arn: Optional[str] = Field(
        default=None,
        pattern=r"^arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:\d{12}:model-package/.+$",
        description="Approved package to serve; the deploy pipeline passes it as a stack parameter instead.",
    )
    endpoint: EndpointConfig = EndpointConfig()
    lambda_: LambdaServingConfig = Field(default=LambdaServingConfig(), alias="lambda")
    alarms: AlarmThresholds = AlarmThresholds()
    stages: list[StageConfig] = Field(
        default_factory=lambda: [StageConfig(name="staging"), StageConfig(name="prod")],
        min_length=1,
        description="Serving stages the deploy pipeline rolls through, in order; a manual approval precedes the last.",
    )
    batch: BatchConfig = Field(
        default=BatchConfig(), description="Batch inference on a schedule and/or after the dataset's ETL; off by default."
    )
    retraining: RetrainingConfig = Field(
        default=RetrainingConfig(), description="Drift-triggered retraining and its cooldown (default 24 hours)."
    )
    champion: ChampionConfig = Field(
        default=ChampionConfig(), description="Register only a challenger that beats the champion by margin."
    )
    model_quality: ModelQualityConfig = Field(
        default=ModelQualityConfig(), description="Model Monitor model-quality schedule and alarm; off by default."
    )
    spot_training: SpotTrainingConfig = Field(
        default=SpotTrainingConfig(), description="Managed spot training with checkpoints, and the training time limit."
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    _schedule = field_validator("pipeline_schedule")(classmethod(lambda cls, v: _check_schedule(v)))
    _training = field_validator("training")(classmethod(lambda cls, v: _check_training(v)))

    @model_validator(mode="after")
    def _metric(self) -> "ModelConfig":
        allowed = METRICS[self.problem_type]
        if self.metric not in allowed:
            raise ValueError(
                f"metric '{self.metric}' is not computed for problem_type {self.problem_type}; "
                f"use one of {sorted(allowed)}"
            )
        if self.problem_type == "regression" and self.positive_threshold is not None:
            raise ValueError("positive_threshold applies to binary_classification only; remove it")
        if self.lambda_.enabled and self.lambda_.mode == "model" and self.framework != "xgboost":
            raise ValueError(
                "lambda.mode 'model' serves xgboost models only (an sklearn stack exceeds Lambda's size limits); "
                "use lambda.mode: endpoint_proxy or framework: xgboost"
            )
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stages names must be unique, got {names}")
        endpoints = {s.name: self._merged_endpoint(s) for s in self.stages}
        differing = [name for name, e in endpoints.items() if e.enabled != self.endpoint.enabled]
        if differing:
            raise ValueError(f"stages {differing}: endpoint.enabled cannot differ per stage (the deploy pipeline "
                             "serves every stage the same way, smoke test included); remove the stage's enabled and "
                             "set models[].endpoint.enabled")
        if self.lambda_.enabled and self.lambda_.mode == "endpoint_proxy" and not self.endpoint.enabled:
            raise ValueError("lambda.mode 'endpoint_proxy' needs endpoint.enabled: true")
        captured = [name for name, e in endpoints.items() if _captures(e)]
        for field, wanted, off in (("retraining.on_drift", self.retraining.on_drift is True, "false"),
                                   ("model_quality.enabled", self.model_quality.enabled, "false")):
            if wanted and not captured:
                raise ValueError(f"{field} needs an endpoint with data capture (Model Monitor reads the captured "
                                 "requests); in at least one stage serve instances (serverless captures no data) "
                                 f"with data_capture_percent above 0, or set {field}: {off}")
        if self.alarms.idle_endpoint_hours is not None and not any(e.enabled for e in endpoints.values()):
            raise ValueError("alarms.idle_endpoint_hours applies to endpoints and no stage serves one; remove it or "
                             "set endpoint.enabled: true")
        return self

    def _merged_endpoint(self, stage: StageConfig) -> EndpointConfig:
        if stage.endpoint is None:
            return self.endpoint
        try:
            return EndpointConfig.model_validate(merge_override(self.endpoint.model_dump(), stage.endpoint))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            detail = first["msg"].removeprefix("Value error, ")
            raise ValueError(f"stages '{stage.name}': endpoint (merged over models[].endpoint): "
                             f"{where + ': ' if where else ''}{detail}; fix the stage's endpoint override") from None

    def endpoint_for(self, stage_name: str) -> EndpointConfig:
        """The endpoint settings of stage ``stage_name``: ``endpoint`` with the stage's ``endpoint`` override merged
        over it (nested objects field by field)."""
        for stage in self.stages:
            if stage.name == stage_name:
                return self._merged_endpoint(stage)
        raise ValueError(f"models '{self.name}' has no stage '{stage_name}'; use one of "
                         f"{[s.name for s in self.stages]}")

    @property
    def retrain_on_drift(self) -> bool:
        """``retraining.on_drift``, or when unset: whether a stage serves an endpoint with data capture."""
        if self.retraining.on_drift is not None:
            return self.retraining.on_drift
        return any(_captures(self.endpoint_for(s.name)) for s in self.stages)

    @property
    def model_quality_threshold(self) -> float:
        """The model-quality alarm's threshold on ``metric``: ``model_quality.alarm_threshold`` or ``threshold``."""
        if self.model_quality.alarm_threshold is not None:
            return self.model_quality.alarm_threshold
        return self.threshold

    @property
    def higher_is_better(self) -> bool:
        return METRICS[self.problem_type][self.metric]

    @property
    def training_dir(self) -> Optional[Path]:
        """The absolute directory of ``training``, or None for the shipped training code."""
        return REPOSITORY_ROOT / self.training if self.training is not None else None

    @property
    def spec(self) -> ModelSpec:
        """What the model build needs about this model, as one frozen value (``sagemaker_steps.model_spec``)."""
        return ModelSpec(
            name=self.name,
            target=self.target_column,
            metric=self.metric,
            threshold=self.threshold,
            problem_type=self.problem_type,
            framework=self.framework,
            positive_threshold=self.positive_threshold,
            positive_label=self.positive_label,
            exclude_columns=tuple(self.exclude_columns),
            hyperparameters=self.hyperparameters,
            processing_instance_type=self.processing_instance_type,
            training_instance_type=self.training_instance_type,
            spot_training=self.spot_training.enabled,
            max_run_seconds=self.spot_training.max_run_minutes * 60,
            max_wait_seconds=self.spot_training.wait_minutes * 60 if self.spot_training.enabled else None,
            champion=self.champion.enabled,
            champion_margin=self.champion.margin,
        )


class WorkstationConfig(_Strict):
    enabled: bool = False
    instance_type: str = Field(default="g5.xlarge", pattern=r"^[a-z0-9]+\.[a-z0-9]+$")
    volume_gb: int = Field(default=100, ge=75, le=16384)
    idle_minutes: int = Field(default=60, ge=5, le=1440)


class SourceRepoConfig(_Strict):
    connection_arn: Optional[str] = Field(
        default=None,
        pattern=r"^arn:aws[a-z-]*:(codestar-connections|codeconnections):[a-z0-9-]+:\d{12}:connection/.+$",
        description="CodeConnections ARN. None: an S3 source bucket is the fallback.",
    )
    repository: Optional[str] = Field(default=None, pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
    branch: str = "main"

    @model_validator(mode="after")
    def _both(self) -> "SourceRepoConfig":
        if (self.connection_arn is None) != (self.repository is None):
            raise ValueError("set both connection_arn and repository (owner/name), or neither for the S3 source")
        return self


class PlatformPipelineConfig(_Strict):
    enabled: bool = False
    environments: list[str] = Field(
        default_factory=lambda: ["dev", "prod"],
        description="Config files (config/<name>.yaml) deployed in order; a manual approval precedes 'prod'.",
    )


class PlatformConfig(_Strict):
    project: str = Field(pattern=PARTS["project"][0], max_length=PARTS["project"][1])
    environment: str = Field(pattern=PARTS["environment"][0], max_length=PARTS["environment"][1])
    account: Optional[str] = Field(default=None, pattern=r"^\d{12}$")
    region: Optional[str] = Field(
        default=None,
        pattern=r"^[a-z]{2}(-[a-z]+)+-\d$",
        description="Region of every stack. Must be one of supported_regions(). None: the CLI's default region.",
    )
    tags: Tags
    removal_policy: Literal["retain", "destroy"] = Field(
        default="retain", description="'destroy' deletes buckets, data and keys with the stack: dev only."
    )
    log_retention_days: Literal[1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1827, 3653] = 90
    alarm_emails: list[str] = Field(default_factory=list)
    data_lake: DataLakeConfig = DataLakeConfig()
    datasets: list[DatasetConfig] = Field(min_length=1, description="The lake's datasets; see platform_config.datasets.")
    models: list[ModelConfig] = Field(min_length=1)
    workstation: WorkstationConfig = WorkstationConfig()
    source: SourceRepoConfig = SourceRepoConfig()
    platform_pipeline: PlatformPipelineConfig = PlatformPipelineConfig()
    trusted_accounts: list[str] = Field(
        default_factory=list,
        description="Accounts (e.g. staging, prod) that may read this environment's model package groups.",
    )
    network: NetworkConfig = Field(
        default=NetworkConfig(), description="VPC of jobs, models, functions and Glue jobs; see platform_config.network."
    )
    iam: IamConfig = Field(default=IamConfig(), description="Permissions boundary and role path of every role.")
    budget: Optional[BudgetConfig] = Field(
        default=None,
        description="The environment's AWS Budgets cost budget (shared stack), FORECASTED notifications to the alarm "
        "topic; see platform_config.loop. None: no budget.",
    )
    sagemaker_job_log_groups: bool = Field(
        default=False,
        description=(
            "Create the ACCOUNT-WIDE log groups /aws/sagemaker/ProcessingJobs and /aws/sagemaker/TrainingJobs (KMS key, "
            "log_retention_days, retained) in the shared stack. Opt in for at most ONE environment per account and "
            "region, and only where no SageMaker job ever ran (SageMaker creates them on the first job; "
            "CloudFormation cannot adopt them and the deploy fails with 'already exists'; after a stack delete the "
            "retained groups block a redeploy the same way). False: SageMaker creates them, without expiry."
        ),
    )

    _region = field_validator("region")(classmethod(lambda cls, v: check_region(v)))

    @field_validator("alarm_emails")
    @classmethod
    def _emails(cls, v: list[str]) -> list[str]:
        for email in v:
            if not re.match(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", email):
                raise ValueError(f"'{email}' is not an email address")
        return v

    @field_validator("trusted_accounts")
    @classmethod
    def _accounts(cls, v: list[str]) -> list[str]:
        for acct in v:
            if not re.match(r"^\d{12}$", acct):
                raise ValueError(f"'{acct}' is not a 12-digit AWS account ID")
        return v

    @model_validator(mode="after")
    def _checks(self) -> "PlatformConfig":
        names = [m.name for m in self.models]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"models names must be unique; repeated: {dupes}")
        datasets = [d.name for d in self.datasets]
        repeated = sorted({n for n in datasets if datasets.count(n) > 1})
        if repeated:
            raise ValueError(f"datasets names must be unique; repeated: {repeated}")
        for m in self.models:
            check_model_dataset(m, self.dataset_of(m))
        if self.removal_policy == "destroy" and self.environment == "prod":
            raise ValueError("removal_policy 'destroy' is refused for environment 'prod'; use 'retain'")
        for m in self.models:
            for s in m.stages:
                self.check_stage_location(m, s)
                if self.network.enabled and m.endpoint.enabled and m.endpoint_for(s.name).serverless is not None:
                    raise ValueError(
                        f"models '{m.name}' stage '{s.name}' serves serverless, which runs in no VPC and without "
                        f"network isolation, but network.mode is {self.network.mode}; serve instances in that stage "
                        "(remove its serverless) or use network.mode: none"
                    )
        # Physical names other systems call: the endpoint, the inference function (contract C1), the monitor schedule.
        for m in self.models:
            for s in m.stages:
                name = self.names.serving_resource(m.name, s.name)
                if len(name) > SERVING_NAME_MAX:
                    raise ValueError(
                        f"'{name}' (project-environment-model-stage) is {len(name)} characters; keep it within "
                        f"{SERVING_NAME_MAX} (it names the SageMaker endpoint, max 63, the inference Lambda function, "
                        "max 64, and the Model Monitor schedule): shorten the project, model or stage name"
                    )
        return self

    def check_stage_location(self, model: ModelConfig, stage: StageConfig) -> None:
        """A serving stage runs in the environment's account and region (it reads the lake of its own environment)."""
        for attr in ("account", "region"):
            wanted, own = getattr(stage, attr), getattr(self, attr)
            if wanted is not None and wanted != own:
                raise ValueError(
                    f"models '{model.name}' stage '{stage.name}' sets {attr} {wanted} but the environment's is "
                    f"{own or 'unset'}: a serving stack reads the lake of its own environment; put that "
                    "stage in the config of the environment (account) it runs in"
                )

    def dataset(self, name: str) -> DatasetConfig:
        """The dataset called ``name``; a ValueError naming the known ones otherwise."""
        for d in self.datasets:
            if d.name == name:
                return d
        raise ValueError(f"dataset '{name}' is not declared; declare it under datasets: or use one of "
                         f"{[d.name for d in self.datasets]}")

    def dataset_of(self, model: ModelConfig) -> DatasetConfig:
        """The dataset ``model`` trains on: ``models[].dataset``, or the only dataset when there is one."""
        if model.dataset is not None:
            try:
                return self.dataset(model.dataset)
            except ValueError as exc:
                raise ValueError(f"models '{model.name}': dataset: {exc}") from None
        if len(self.datasets) == 1:
            return self.datasets[0]
        raise ValueError(f"models '{model.name}': set dataset to one of {[d.name for d in self.datasets]} (there are "
                         "several datasets)")

    def models_of(self, dataset: DatasetConfig) -> list[ModelConfig]:
        """The models that train on ``dataset``."""
        return [m for m in self.models if self.dataset_of(m).name == dataset.name]

    def prefix(self) -> str:
        """Prefix of every physical name: '<project>-<environment>'."""
        return self.names.prefix

    @property
    def names(self) -> "Names":
        """Every name of this environment (stacks, exports, physical names, S3 layout): platform_config.names."""
        from platform_config.names import Names

        return Names(self.project, self.environment)
