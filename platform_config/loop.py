"""Closing the loop and cost controls (issue 14): the config of batch inference, drift-triggered retraining, champion vs
challenger, model-quality monitoring, managed spot training, per-stage endpoint overrides and the environment budget.

    budget:
      monthly_usd: 500                 # AWS Budgets, FORECASTED notifications to the alarm topic
      thresholds_percent: [80, 100]
    models:
      - name: abalone
        batch: {enabled: true, schedule: "cron(0 4 * * ? *)", on_dataset_etl: true}
        retraining: {on_drift: true, cooldown_hours: 24}
        champion: {enabled: true, margin: 0.05}
        model_quality: {enabled: true}
        spot_training: {enabled: true, max_run_minutes: 60, max_wait_minutes: 120}
        alarms: {idle_endpoint_hours: 24}
        stages:
          - name: staging
            endpoint: {serverless: {memory_mb: 2048, max_concurrency: 5}}
          - name: prod

Each model here is imported by ``platform_config.schema``; the cross-field rules that need the whole model (an endpoint
for drift and model quality, the merged per-stage endpoint) live in ``ModelConfig``. Every bad value fails with one line
naming the field and the fix (``platform_config.loader``).
"""

from __future__ import annotations

import re
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_serializer, model_validator

#: What an EventBridge schedule expression looks like (the rule's ScheduleExpression).
SCHEDULE_PATTERN = r"^(cron|rate)\(.+\)$"
#: Model Monitor's hourly schedule (the only cron forms it accepts are hourly and daily ones).
MODEL_MONITOR_HOURLY = "cron(0 * ? * * *)"
#: Model Monitor schedule expressions: hourly ``cron(0 * ? * * *)``, daily ``cron(0 H ? * * *)`` or every N hours from
#: H ``cron(0 H/N ? * * *)`` (SageMaker's documented forms).
_MONITOR_SCHEDULE_RE = re.compile(r"^cron\(0 (\*|([01]?\d|2[0-3])(/([1-9]|1\d|2[0-4]))?) \? \* \* \*\)$")
#: SageMaker's default limit of a training job's run time (28 days).
MAX_TRAINING_MINUTES = 28 * 24 * 60
#: CloudWatch: an alarm with 1-hour periods evaluates at most 7 days (Period x EvaluationPeriods <= 604,800 s).
MAX_IDLE_HOURS = 7 * 24


def check_schedule(v: Optional[str]) -> Optional[str]:
    """An EventBridge schedule expression (``cron(...)`` or ``rate(...)``) or None."""
    if v is not None and not re.match(SCHEDULE_PATTERN, v):
        raise ValueError("must be an EventBridge expression such as 'cron(0 3 * * ? *)' or 'rate(1 day)'")
    return v


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BudgetConfig(_Strict):
    """``budget``: an AWS Budgets cost budget for the environment (shared stack), notifying the alarm topic."""

    monthly_usd: float = Field(
        description="Monthly cost limit in USD. Notifications fire when the FORECASTED month-end cost exceeds each "
        "threshold percent of it."
    )
    thresholds_percent: list[float] = Field(
        default_factory=lambda: [80.0, 100.0],
        min_length=1,
        max_length=5,
        description="Percentages of monthly_usd, one FORECASTED notification each (AWS Budgets allows 5 per budget).",
    )
    filter_by_tags: bool = Field(
        default=True,
        description="Count only costs tagged project=<project> and environment=<environment> (user-defined cost "
        "allocation tags, which must be activated in the Billing console). False: the whole account's costs.",
    )

    @field_validator("monthly_usd")
    @classmethod
    def _amount(cls, v: float) -> float:
        if not v > 0:
            raise ValueError("must be more than 0 USD; set the environment's monthly cost limit (e.g. 500) or remove "
                             "budget: for no budget")
        return v

    @field_validator("thresholds_percent")
    @classmethod
    def _thresholds(cls, v: list[float]) -> list[float]:
        for t in v:
            if not 0 < t <= 1000:
                raise ValueError(f"{t} is not a percentage of the budget; use values above 0 and at most 1000 "
                                 "(e.g. [80, 100])")
        if len(set(v)) != len(v):
            raise ValueError(f"repeated threshold in {v}; list each percentage once")
        return v


class BatchConfig(_Strict):
    """``models[].batch``: batch inference (a SageMaker transform job) on the model's curated dataset."""

    enabled: bool = Field(default=False, description="Run batch inference with the latest approved package.")
    schedule: Optional[str] = Field(
        default=None, description="EventBridge expression, e.g. 'cron(0 4 * * ? *)'. None: not on a schedule."
    )
    on_dataset_etl: bool = Field(
        default=False, description="Also run when the ETL job of the model's dataset succeeds."
    )
    instance_type: str = Field(
        default="ml.m5.large", pattern=r"^ml\.[a-z0-9]+\.[a-z0-9]+$", description="Transform job instance type."
    )
    instance_count: int = Field(default=1, ge=1, le=100, description="Transform job instances.")
    max_payload_mb: int = Field(
        default=6, ge=1, le=100, description="MaxPayloadInMB of a mini-batch (SageMaker: default 6, at most 100)."
    )

    _schedule = field_validator("schedule")(classmethod(lambda cls, v: check_schedule(v)))

    @model_validator(mode="after")
    def _trigger(self) -> "BatchConfig":
        if self.enabled and self.schedule is None and not self.on_dataset_etl:
            raise ValueError("enabled batch inference needs a trigger; set schedule (e.g. 'cron(0 4 * * ? *)') "
                             "and/or on_dataset_etl: true")
        return self


class RetrainingConfig(_Strict):
    """``models[].retraining``: start the build pipeline when Model Monitor reports drift, at most once per cooldown."""

    on_drift: Optional[bool] = Field(
        default=None,
        description="Retrain on a data-quality violation of the endpoint's captured data. None: true when the model "
        "serves an endpoint (ModelConfig.retrain_on_drift), false otherwise.",
    )
    cooldown_hours: int = Field(
        default=24, description="At most one drift-triggered retraining per this many hours (at least 1)."
    )

    @field_validator("cooldown_hours")
    @classmethod
    def _cooldown(cls, v: int) -> int:
        if v < 1:
            raise ValueError("the cooldown must be at least 1 hour (drift is evaluated hourly); set 1 or more "
                             "(default 24)")
        return v


class ChampionConfig(_Strict):
    """``models[].champion``: register a challenger only if it beats the approved champion."""

    enabled: bool = Field(
        default=True,
        description="Compare the challenger with the latest approved package's metric (the first model, with no "
        "champion, only has to meet the threshold).",
    )
    margin: float = Field(
        default=0.0,
        description="In the metric's units: the challenger must be better than the champion by at least this much "
        "(0: at least as good).",
    )

    @field_validator("margin")
    @classmethod
    def _margin(cls, v: float) -> float:
        if v < 0:
            raise ValueError("must be 0 or more, in the metric's units (the challenger must be better than the "
                             "champion by at least margin); use 0 to accept a challenger as good as the champion")
        return v


class ModelQualityConfig(_Strict):
    """``models[].model_quality``: Model Monitor model-quality schedule on the endpoint's captured data joined with
    ground truth labels (uploaded under the environment's ground-truth prefix, from the names module), with an alarm
    on the model's metric."""

    enabled: bool = Field(default=False, description="Create the model-quality schedule and its alarm per stage.")
    schedule: str = Field(
        default=MODEL_MONITOR_HOURLY,
        description="Model Monitor schedule: 'cron(0 * ? * * *)' (hourly), 'cron(0 H ? * * *)' (daily at H) or "
        "'cron(0 H/N ? * * *)'.",
    )
    alarm_threshold: Optional[float] = Field(
        default=None,
        description="Alarm when the monitored metric (models[].metric) is worse than this. None: models[].threshold.",
    )

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, v: str) -> str:
        if not _MONITOR_SCHEDULE_RE.match(v):
            raise ValueError("is not a Model Monitor schedule; use 'cron(0 * ? * * *)' (hourly), 'cron(0 3 ? * * *)' "
                             "(daily) or 'cron(0 0/6 ? * * *)' (every 6 hours)")
        return v


class SpotTrainingConfig(_Strict):
    """``models[].spot_training``: managed spot training, and the training job's time limit. SageMaker syncs
    ``/opt/ml/checkpoints`` to the run's ``checkpoints/`` prefix; the shipped ``train.py`` writes no checkpoint, so an
    interrupted job trains again from the start within ``max_wait_minutes`` (a custom train.py may resume from it)."""

    enabled: bool = Field(default=False, description="Train on spot capacity (EnableManagedSpotTraining).")
    max_run_minutes: int = Field(
        default=60,
        ge=1,
        le=MAX_TRAINING_MINUTES,
        description="Training time limit (MaxRuntimeInSeconds), spot or not; at most 28 days.",
    )
    max_wait_minutes: Optional[int] = Field(
        default=None,
        ge=1,
        description="Spot only: waiting for capacity plus running (MaxWaitTimeInSeconds); at least max_run_minutes. "
        "None: twice max_run_minutes.",
    )

    @model_validator(mode="after")
    def _wait(self) -> "SpotTrainingConfig":
        if self.max_wait_minutes is not None and self.max_wait_minutes < self.max_run_minutes:
            raise ValueError(
                f"max_wait_minutes ({self.max_wait_minutes}) must be at least max_run_minutes "
                f"({self.max_run_minutes}): SageMaker's MaxWaitTimeInSeconds counts the run time too; raise "
                "max_wait_minutes or lower max_run_minutes"
            )
        return self

    @property
    def wait_minutes(self) -> int:
        """MaxWaitTimeInSeconds / 60: ``max_wait_minutes`` or twice ``max_run_minutes``."""
        return self.max_wait_minutes if self.max_wait_minutes is not None else 2 * self.max_run_minutes


class _Partial(_Strict):
    """A partial object: only the fields given count (and only they are dumped, so a dump validates back to the same
    override; ``serverless: null`` given is not the same as ``serverless`` left out)."""

    @model_serializer(mode="wrap")
    def _given_only(self, handler):
        return {k: v for k, v in handler(self).items() if k in self.model_fields_set}


class AutoscalingOverride(_Partial):
    """A stage's partial ``autoscaling``: the fields given replace the model's."""

    min_capacity: Optional[int] = Field(default=None, ge=1)
    max_capacity: Optional[int] = Field(default=None, ge=1)
    target_invocations_per_instance: Optional[int] = Field(default=None, ge=1)


class ServerlessOverride(_Partial):
    """A stage's partial ``serverless``: the fields given replace the model's (or its defaults)."""

    memory_mb: Optional[Literal[1024, 2048, 3072, 4096, 5120, 6144]] = None
    max_concurrency: Optional[int] = Field(default=None, ge=1, le=200)


class EndpointOverride(_Partial):
    """``models[].stages[].endpoint``: a partial ``models[].endpoint`` for one stage, merged over the model's (nested
    objects field by field). ``serverless: {...}`` makes the stage serverless; ``serverless: null`` makes it use
    instances where the model's endpoint is serverless. ``ModelConfig.endpoint_for(stage)`` gives the result."""

    enabled: Optional[bool] = None
    instance_type: Optional[str] = Field(default=None, pattern=r"^ml\.[a-z0-9]+\.[a-z0-9]+$")
    initial_instance_count: Optional[int] = Field(default=None, ge=1)
    serverless: Optional[ServerlessOverride] = None
    autoscaling: Optional[AutoscalingOverride] = None
    data_capture_percent: Optional[int] = Field(default=None, ge=0, le=100)
    traffic_shifting: Optional[Literal["canary", "linear", "all_at_once"]] = None
    canary_percent: Optional[int] = Field(default=None, ge=1, le=50)
    wait_minutes: Optional[int] = Field(default=None, ge=0, le=60)


def merge_override(base: dict[str, Any], override: BaseModel) -> dict[str, Any]:
    """``base`` (a model dump) with the fields ``override`` sets (nested objects merged field by field)."""

    def merge(into: Any, changes: Any) -> Any:
        if isinstance(into, dict) and isinstance(changes, dict):
            return {**into, **{k: merge(into.get(k), v) for k, v in changes.items()}}
        return changes

    return merge(base, override.model_dump())
