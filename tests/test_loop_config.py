"""Issue 14's config: batch inference, retraining cooldown, champion margin, model quality, spot training, per-stage
endpoints, the idle-endpoint alarm and the environment budget; one exact line for each bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from platform_config.loader import ConfigError, load_config
from platform_config.loop import MODEL_MONITOR_HOURLY

ROOT = Path(__file__).resolve().parent.parent


def _load(tmp_path: Path, mutate):
    data = yaml.safe_load((ROOT / "config" / "dev.yaml").read_text())
    mutate(data)
    (tmp_path / "dev.yaml").write_text(yaml.safe_dump(data))
    return load_config("dev", tmp_path)


def _error(tmp_path: Path, mutate) -> str:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, mutate)
    lines = str(info.value).splitlines()
    assert len(lines) == 1, lines
    return lines[0].removeprefix(f"{tmp_path / 'dev.yaml'}: ")


def _abalone(data) -> dict:
    return data["models"][0]


def _cancer(data) -> dict:
    return data["models"][1]


def _set(target, key, value):
    def mutate(data):
        target(data)[key] = value

    return mutate


# ---- the shipped configs ---------------------------------------------------------------------------------------------


def test_dev_has_a_budget_and_a_serverless_staging_can_keep_instances_in_prod(tmp_path):
    config = load_config("dev")
    assert (config.budget.monthly_usd, config.budget.thresholds_percent, config.budget.filter_by_tags) == (
        500.0, [80.0, 100.0], True)

    def serverless_staging(data):  # the example commented in dev.yaml
        _abalone(data)["stages"][0]["endpoint"] = {"serverless": {"memory_mb": 2048, "max_concurrency": 5},
                                                   "data_capture_percent": 0}

    config = _load(tmp_path, serverless_staging)
    abalone = config.models[0]
    staging, prod = abalone.endpoint_for("staging"), abalone.endpoint_for("prod")
    assert (staging.serverless.memory_mb, staging.serverless.max_concurrency, staging.data_capture_percent) == (
        2048, 5, 0)
    assert prod == abalone.endpoint  # no override: the model's endpoint as is
    assert (prod.serverless, prod.instance_type, prod.data_capture_percent) == (None, "ml.m5.large", 100)
    assert abalone.alarms.idle_endpoint_hours == 24
    assert abalone.retrain_on_drift  # prod captures data
    cancer = config.models[1]
    assert cancer.alarms.idle_endpoint_hours is None
    assert not cancer.retrain_on_drift  # no endpoint, nothing to drift-check


def test_prod_budget_and_champion_margin():
    config = load_config("prod")
    assert config.budget.monthly_usd == 3000.0
    assert config.models[0].champion.margin == 0.05


def test_defaults_of_a_model_without_the_new_sections(tmp_path):
    def without_them(data):
        for section in ("batch", "retraining", "champion", "model_quality", "spot_training"):
            _abalone(data).pop(section, None)

    abalone = _load(tmp_path, without_them).models[0]
    assert not abalone.batch.enabled
    assert abalone.retraining.cooldown_hours == 24
    assert (abalone.champion.enabled, abalone.champion.margin) == (True, 0.0)
    assert (abalone.model_quality.enabled, abalone.model_quality.schedule) == (False, MODEL_MONITOR_HOURLY)
    assert abalone.model_quality_threshold == abalone.threshold
    assert (abalone.spot_training.enabled, abalone.spot_training.max_run_minutes) == (False, 60)
    assert abalone.spot_training.wait_minutes == 120


def test_valid_round_trip(tmp_path):
    def mutate(data):
        data["budget"] = {"monthly_usd": 250.5, "thresholds_percent": [50, 90, 100], "filter_by_tags": False}
        _abalone(data).update(
            batch={"enabled": True, "schedule": "cron(0 4 * * ? *)", "on_dataset_etl": True,
                   "instance_type": "ml.m5.xlarge", "instance_count": 2, "max_payload_mb": 10},
            retraining={"on_drift": True, "cooldown_hours": 1},
            champion={"enabled": True, "margin": 0.1},
            model_quality={"enabled": True, "schedule": "cron(0 0/6 ? * * *)", "alarm_threshold": 3.5},
            spot_training={"enabled": True, "max_run_minutes": 90, "max_wait_minutes": 90},
        )
        _abalone(data)["stages"][1]["endpoint"] = {"instance_type": "ml.c5.large", "autoscaling": {"max_capacity": 4}}

    config = _load(tmp_path, mutate)
    abalone = config.models[0]
    assert type(abalone).model_validate(abalone.model_dump(by_alias=True)) == abalone
    assert type(config.budget).model_validate(config.budget.model_dump()) == config.budget
    assert config.budget.thresholds_percent == [50.0, 90.0, 100.0] and not config.budget.filter_by_tags
    assert (abalone.batch.schedule, abalone.batch.on_dataset_etl, abalone.batch.max_payload_mb) == (
        "cron(0 4 * * ? *)", True, 10)
    assert abalone.retraining.cooldown_hours == 1 and abalone.retrain_on_drift
    assert abalone.model_quality_threshold == 3.5
    assert abalone.spot_training.wait_minutes == 90
    prod = abalone.endpoint_for("prod")
    # nested objects merge field by field: max_capacity from the stage, min_capacity from the model
    assert (prod.instance_type, prod.autoscaling.min_capacity, prod.autoscaling.max_capacity) == ("ml.c5.large", 1, 4)
    assert prod.traffic_shifting == "all_at_once"


def test_a_stage_can_go_back_from_serverless_to_instances(tmp_path):
    def mutate(data):
        _abalone(data)["endpoint"]["serverless"] = {"memory_mb": 4096}
        _abalone(data)["stages"] = [{"name": "staging"}, {"name": "prod", "endpoint": {"serverless": None}}]

    abalone = _load(tmp_path, mutate).models[0]
    assert abalone.endpoint_for("staging").serverless.memory_mb == 4096
    assert abalone.endpoint_for("prod").serverless is None
    assert abalone.stages[1].endpoint.model_dump() == {"serverless": None}  # given null, kept in a dump
    again = type(abalone).model_validate(abalone.model_dump(by_alias=True))
    assert again.endpoint_for("prod").serverless is None and again == abalone


def test_endpoint_for_an_unknown_stage():
    with pytest.raises(ValueError, match=r"models 'abalone' has no stage 'qa'; use one of \['staging', 'prod'\]"):
        load_config("dev").models[0].endpoint_for("qa")


def test_no_budget_section_means_no_budget(tmp_path):
    assert _load(tmp_path, lambda data: data.pop("budget")).budget is None


# ---- bad input: one line naming the field and the fix ------------------------------------------------------------------


def test_cooldown_below_one_hour(tmp_path):
    assert _error(tmp_path, _set(_abalone, "retraining", {"cooldown_hours": 0})) == (
        "models[0].retraining.cooldown_hours = 0: the cooldown must be at least 1 hour (drift is evaluated hourly); "
        "set 1 or more (default 24)"
    )


def test_negative_margin(tmp_path):
    assert _error(tmp_path, _set(_abalone, "champion", {"margin": -0.1})) == (
        "models[0].champion.margin = -0.1: must be 0 or more, in the metric's units (the challenger must be better "
        "than the champion by at least margin); use 0 to accept a challenger as good as the champion"
    )


def test_batch_schedule_not_an_eventbridge_expression(tmp_path):
    assert _error(tmp_path, _set(_abalone, "batch", {"enabled": True, "schedule": "every day"})) == (
        "models[0].batch.schedule = 'every day': must be an EventBridge expression such as 'cron(0 3 * * ? *)' or "
        "'rate(1 day)'"
    )


def test_enabled_batch_without_a_trigger(tmp_path):
    assert _error(tmp_path, _set(_abalone, "batch", {"enabled": True})) == (
        "models[0].batch: enabled batch inference needs a trigger; set schedule (e.g. 'cron(0 4 * * ? *)') and/or "
        "on_dataset_etl: true"
    )


def test_budget_of_zero(tmp_path):
    assert _error(tmp_path, _set(lambda d: d, "budget", {"monthly_usd": 0})) == (
        "budget.monthly_usd = 0: must be more than 0 USD; set the environment's monthly cost limit (e.g. 500) or "
        "remove budget: for no budget"
    )


def test_repeated_budget_threshold(tmp_path):
    assert _error(tmp_path, _set(lambda d: d, "budget", {"monthly_usd": 10, "thresholds_percent": [80, 80]})) == (
        "budget.thresholds_percent: repeated threshold in [80.0, 80.0]; list each percentage once"
    )


def test_spot_max_wait_below_the_training_time_limit(tmp_path):
    spot = {"enabled": True, "max_run_minutes": 120, "max_wait_minutes": 60}
    assert _error(tmp_path, _set(_abalone, "spot_training", spot)) == (
        "models[0].spot_training: max_wait_minutes (60) must be at least max_run_minutes (120): SageMaker's "
        "MaxWaitTimeInSeconds counts the run time too; raise max_wait_minutes or lower max_run_minutes"
    )


def test_model_quality_schedule_model_monitor_cannot_run(tmp_path):
    assert _error(tmp_path, _set(_abalone, "model_quality", {"enabled": True, "schedule": "rate(1 hour)"})) == (
        "models[0].model_quality.schedule = 'rate(1 hour)': is not a Model Monitor schedule; use 'cron(0 * ? * * *)' "
        "(hourly), 'cron(0 3 ? * * *)' (daily) or 'cron(0 0/6 ? * * *)' (every 6 hours)"
    )


@pytest.mark.parametrize("section,value,field", [
    ("model_quality", {"enabled": True}, "model_quality.enabled"),
    ("retraining", {"on_drift": True}, "retraining.on_drift"),
])
def test_monitoring_needs_a_capturing_endpoint(tmp_path, section, value, field):
    assert _error(tmp_path, _set(_cancer, section, value)) == (
        f"models[1]: {field} needs an endpoint with data capture (Model Monitor reads the captured requests); in at "
        "least one stage serve instances (serverless captures no data) with data_capture_percent above 0, or set "
        f"{field}: false"
    )


def test_idle_alarm_without_an_endpoint(tmp_path):
    assert _error(tmp_path, _set(_cancer, "alarms", {"idle_endpoint_hours": 5})) == (
        "models[1]: alarms.idle_endpoint_hours applies to endpoints and no stage serves one; remove it or set "
        "endpoint.enabled: true"
    )


def test_idle_alarm_beyond_cloudwatch_evaluation_limit(tmp_path):
    line = _error(tmp_path, lambda d: _abalone(d)["alarms"].update(idle_endpoint_hours=169))
    assert line == "models[0].alarms.idle_endpoint_hours = 169: Input should be less than or equal to 168"


def test_stage_override_that_breaks_the_merged_endpoint(tmp_path):
    def mutate(data):
        _abalone(data)["stages"][1]["endpoint"] = {"autoscaling": {"min_capacity": 5}}

    assert _error(tmp_path, mutate) == (
        "models[0]: stages 'prod': endpoint (merged over models[].endpoint): autoscaling: max_capacity (2) must be at "
        "least min_capacity (5); fix the stage's endpoint override"
    )


def test_endpoint_enabled_cannot_differ_per_stage(tmp_path):
    def mutate(data):
        _abalone(data)["stages"][0]["endpoint"] = {"enabled": False}

    assert _error(tmp_path, mutate) == (
        "models[0]: stages ['staging']: endpoint.enabled cannot differ per stage (the deploy pipeline serves every "
        "stage the same way, smoke test included); remove the stage's enabled and set models[].endpoint.enabled"
    )


def test_unknown_field_in_a_stage_endpoint_override(tmp_path):
    def mutate(data):
        _abalone(data)["stages"][0]["endpoint"] = {"instance_typ": "ml.m5.large"}

    assert _error(tmp_path, mutate) == (
        "models[0].stages[0].endpoint.instance_typ: unknown field; remove it or check its spelling (see README, "
        "'Configuration')"
    )
