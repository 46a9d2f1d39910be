"""Managed spot training (``models[].spot_training``, issue 14) in the pipeline definition, built by the SageMaker SDK
offline: the Train step trains on spot capacity with a wait limit and a checkpoint prefix under the execution's prefix;
without spot nothing changes; the spec's spot fields are part of the definition cache key."""

from __future__ import annotations

import dataclasses
import json

import pytest

from mlops_constructs import sagemaker_definition as sdk
from platform_config.loop import SpotTrainingConfig
from platform_config.schema import ModelConfig
from sagemaker_steps.model_spec import ModelSpec
from tests.infra.definition_check import check_definition

SPOT = dict(spot_training=True, max_run_seconds=1800, max_wait_seconds=7200)
SPOT_FIELDS = ("EnableManagedSpotTraining", "MaxWaitTimeInSeconds", "CheckpointConfig")


def _model(**changes) -> ModelSpec:
    return ModelSpec(name="m", target="rings", metric="rmse", threshold=3.0, hyperparameters={"max_depth": 5},
                     **changes)


def _inputs(model: ModelSpec, **changes) -> sdk.PipelineInputs:
    inputs = sdk.PipelineInputs(spec=model, pipeline_name="p", model_package_group_name="g",
                                artifacts_prefix="models/m/", job_tags={"project": "x", "environment": "dev"},
                                code_digest="sha256:1")
    return dataclasses.replace(inputs, **changes)


def _train(definition: dict) -> dict:
    (train,) = [s for s in definition["Steps"] if s["Type"] == "Training"]
    return train["Arguments"]


@pytest.fixture(scope="module")
def plain():
    return sdk.build_definition(_inputs(_model()))


@pytest.fixture(scope="module")
def spot():
    return sdk.build_definition(_inputs(_model(**SPOT)))


@pytest.fixture(scope="module")
def spot_in_vpc():
    return sdk.build_definition(_inputs(_model(**SPOT), subnet_count=2, security_group_count=2))


def test_spot_train_step_waits_for_capacity_and_checkpoints_under_the_run(spot):
    train = _train(spot)
    assert train["EnableManagedSpotTraining"] is True
    stop = train["StoppingCondition"]
    assert stop == {"MaxRuntimeInSeconds": 1800, "MaxWaitTimeInSeconds": 7200}
    assert stop["MaxWaitTimeInSeconds"] >= stop["MaxRuntimeInSeconds"]
    checkpoint = train["CheckpointConfig"]
    assert checkpoint["LocalPath"] == "/opt/ml/checkpoints"
    # executions/<PipelineExecutionId>/checkpoints: the run's own prefix, next to its training output
    join = checkpoint["S3Uri"]["Std:Join"]
    output = train["OutputDataConfig"]["S3OutputPath"]["Std:Join"]
    assert join["On"] == "/" and join["Values"][:2] == output["Values"][:2]
    assert join["Values"][0] == f"{sdk.PLACEHOLDER_ARTIFACTS}/models/m/{sdk.EXECUTIONS_PREFIX}"
    assert join["Values"][1] == {"Get": "Execution.PipelineExecutionId"}
    assert join["Values"][2:] == ["checkpoints"]
    # the model artifacts stay encrypted with the platform key
    assert train["OutputDataConfig"]["KmsKeyId"] == sdk.PLACEHOLDER_KMS


@pytest.mark.parametrize("which", ["spot", "spot_in_vpc"])
def test_spot_definition_passes_the_api_shape_check(which, request):
    assert check_definition(request.getfixturevalue(which)) == []


def test_spot_changes_only_the_train_step(spot, plain):
    def without_spot(definition):
        data = json.loads(json.dumps(definition))
        for step in data["Steps"]:
            if step["Type"] == "Training":
                args = step["Arguments"]
                for field in ("EnableManagedSpotTraining", "CheckpointConfig"):
                    args.pop(field)
                args["StoppingCondition"] = {"MaxRuntimeInSeconds": 3600}
        return data

    assert without_spot(spot) == plain


def test_spot_in_a_vpc_keeps_the_isolated_training(spot_in_vpc):
    train = _train(spot_in_vpc)
    assert train["EnableManagedSpotTraining"] is True and train["EnableNetworkIsolation"] is True
    assert "CheckpointConfig" in train


def test_without_spot_nothing_changes(plain):
    text = json.dumps(plain)
    for field in SPOT_FIELDS:
        assert field not in text, field
    assert _train(plain)["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600}
    # the spec's defaults are today's: the same definition as a spec built without the new fields mentioned
    assert sdk.build_definition(_inputs(_model(spot_training=False, max_run_seconds=3600))) == plain


def test_run_limit_applies_without_spot_too():
    definition = sdk.build_definition(_inputs(_model(max_run_seconds=900)))
    assert _train(definition)["StoppingCondition"] == {"MaxRuntimeInSeconds": 900}
    assert "EnableManagedSpotTraining" not in json.dumps(definition)


@pytest.mark.parametrize("changes", [
    dict(spot_training=True, max_wait_seconds=3600),
    dict(spot_training=True, max_wait_seconds=7200),
    dict(spot_training=True, max_run_seconds=1800, max_wait_seconds=7200),
    dict(max_run_seconds=1800),
])
def test_cache_key_follows_the_spot_fields(changes):
    base = sdk.definition_cache_key(_inputs(_model()))
    assert sdk.definition_cache_key(_inputs(_model(**changes))) != base
    assert all(_model(**changes).as_dict()[k] == v for k, v in changes.items())


def test_cache_keys_of_different_spot_settings_differ():
    keys = {sdk.definition_cache_key(_inputs(_model(spot_training=True, max_run_seconds=r, max_wait_seconds=w)))
            for r, w in [(1800, 3600), (1800, 7200), (3600, 7200)]}
    assert len(keys) == 3


def test_cached_spot_definition_is_not_the_plain_one(tmp_path, plain, spot):
    assert sdk.cached_definition(_inputs(_model()), tmp_path) == plain
    assert sdk.cached_definition(_inputs(_model(**SPOT)), tmp_path) == spot
    assert len(list(tmp_path.glob("*.json"))) == 2


@pytest.mark.parametrize("changes,message", [
    (dict(spot_training=True), "needs max_wait_seconds"),
    (dict(spot_training=True, max_run_seconds=3600, max_wait_seconds=1800), "at least max_run_seconds"),
    (dict(max_wait_seconds=7200), "spot training only"),
    (dict(max_run_seconds=0), "max_run_seconds"),
    (dict(max_run_seconds=28 * 24 * 3600 + 1), "max_run_seconds"),
])
def test_spec_refuses_inconsistent_time_limits(changes, message):
    with pytest.raises(ValueError, match=message):
        _model(**changes)


def _config(**spot) -> ModelConfig:
    return ModelConfig.model_validate({
        "name": "abalone", "target_column": "rings", "metric": "rmse", "threshold": 3.0, "spot_training": spot,
    })


def test_config_to_spec():
    assert _config().spec.spot_training is False
    assert (_config().spec.max_run_seconds, _config().spec.max_wait_seconds) == (3600, None)
    spec = _config(enabled=True, max_run_minutes=30).spec
    assert (spec.spot_training, spec.max_run_seconds, spec.max_wait_seconds) == (True, 1800, 3600)  # twice the run
    spec = _config(enabled=True, max_run_minutes=30, max_wait_minutes=45).spec
    assert (spec.max_run_seconds, spec.max_wait_seconds) == (1800, 2700)
    # a wait limit without spot is not passed on (it applies to spot only)
    spec = _config(enabled=False, max_run_minutes=20, max_wait_minutes=45).spec
    assert (spec.spot_training, spec.max_run_seconds, spec.max_wait_seconds) == (False, 1200, None)
    assert SpotTrainingConfig(enabled=True, max_run_minutes=30).wait_minutes * 60 == 3600
