"""The model stack: SageMaker pipeline definition (checked against the SageMaker API), registry, triggers, role."""

from __future__ import annotations

import copy
import json

import pytest

from sagemaker_steps import pipeline_spec as spec
from tests.infra.definition_check import all_steps, check_definition, definition_from_template


@pytest.fixture(scope="module")
def definition(dev):
    return definition_from_template(dev.template("model-abalone"))


def test_every_step_is_a_valid_sagemaker_api_request(synthesized):
    for model in synthesized.config.models:
        definition = definition_from_template(synthesized.template(f"model-{model.name}"))
        assert check_definition(definition) == []


def test_definition_has_every_step_kind(definition):
    kinds = {s["Name"]: s["Type"] for s in all_steps(definition)}
    assert kinds == {
        "Preprocess": "Processing",
        "DataQualityBaseline": "QualityCheck",
        "Train": "Training",
        "Evaluate": "Processing",
        "CheckMetric": "Condition",
        "Register-RegisterModel": "RegisterModel",
        "FailStep": "Fail",
    }


def test_misspelled_or_mistyped_field_fails_the_api_check(definition):
    broken = copy.deepcopy(definition)
    train = next(s for s in broken["Steps"] if s["Name"] == "Train")
    train["Arguments"]["ResourceConfig"]["InstanceCont"] = train["Arguments"]["ResourceConfig"].pop("InstanceCount")
    problems = check_definition(broken)
    assert any("InstanceCont" in p for p in problems), problems
    broken = copy.deepcopy(definition)
    train = next(s for s in broken["Steps"] if s["Name"] == "Train")
    train["Arguments"]["StoppingCondition"]["MaxRuntimeInSeconds"] = "3600"
    assert any("MaxRuntimeInSeconds" in p for p in check_definition(broken))


def test_condition_reads_the_metric_evaluate_writes(definition, dev):
    model = dev.config.models[0]
    (check,) = [s for s in definition["Steps"] if s["Type"] == "Condition"]
    (condition,) = check["Arguments"]["Conditions"]
    assert condition["Type"] == spec.condition_operator(model.metric)
    left = condition["LeftValue"]["Std:JsonGet"]
    assert left["Path"] == spec.metric_json_path(model.problem_type, model.metric) == "regression_metrics.rmse.value"
    assert left["PropertyFile"] == {"Get": "Steps.Evaluate.PropertyFiles.EvaluationReport"}
    assert condition["RightValue"] == {"Get": "Parameters.MetricThreshold"}
    evaluate = next(s for s in definition["Steps"] if s["Name"] == "Evaluate")
    assert evaluate["PropertyFiles"] == [
        {"PropertyFileName": "EvaluationReport", "OutputName": "evaluation", "FilePath": "evaluation.json"}
    ]


def test_parameters_and_threshold_from_config(definition, dev, prod):
    params = {p["Name"]: p for p in definition["Parameters"]}
    assert set(params) == {
        "InputDataUrl", "MetricThreshold", "ModelApprovalStatus", "GitCommit",
        "ProcessingInstanceType", "TrainingInstanceType",
    }
    assert params["MetricThreshold"]["DefaultValue"] == dev.config.models[0].threshold == 3.0
    assert params["ModelApprovalStatus"]["DefaultValue"] == "PendingManualApproval"
    prod_def = definition_from_template(prod.template("model-abalone"))
    prod_params = {p["Name"]: p for p in prod_def["Parameters"]}
    assert prod_params["MetricThreshold"]["DefaultValue"] == 2.5
    assert prod_params["TrainingInstanceType"]["DefaultValue"] == "ml.m5.xlarge"


def test_register_records_git_commit_metrics_and_pending_approval(definition):
    (register,) = [s for s in all_steps(definition) if s["Type"] == "RegisterModel"]
    args = register["Arguments"]
    assert args["ModelPackageGroupName"] == "mlops-dev-abalone"
    assert args["ModelApprovalStatus"] == {"Get": "Parameters.ModelApprovalStatus"}
    assert args["CustomerMetadataProperties"]["GitCommit"] == {"Get": "Parameters.GitCommit"}
    stats = args["ModelMetrics"]["ModelQuality"]["Statistics"]
    assert stats["ContentType"] == "application/json"
    assert "Steps.Evaluate.ProcessingOutputConfig.Outputs['evaluation'].S3Output.S3Uri" in json.dumps(stats)


def test_fail_step_explains_the_miss(definition):
    (fail,) = [s for s in all_steps(definition) if s["Type"] == "Fail"]
    values = fail["Arguments"]["ErrorMessage"]["Std:Join"]["Values"]
    text = "".join(v if isinstance(v, str) else "<{}>".format(next(iter(v))) for v in values)
    assert text == "Model abalone rmse=<Std:JsonGet> does not meet the threshold <Get>; not registered."
    assert {"Get": "Parameters.MetricThreshold"} in values


def test_caching_retries_and_encryption_on_job_steps(definition):
    for step in all_steps(definition):
        if step["Type"] in ("Processing", "Training", "QualityCheck"):
            assert step["CacheConfig"] == {"Enabled": True, "ExpireAfter": "P30D"}
            if step["Type"] != "QualityCheck":
                assert {tuple(r["ExceptionType"]) for r in step["RetryPolicies"]}
            text = json.dumps(step["Arguments"])
            assert "KmsKeyId" in text and "placeholder" not in text, step["Name"]


def test_scripts_are_assets_and_images_come_from_the_region_mapping(dev):
    template = dev.template("model-abalone")
    body = json.dumps(template["Resources"])
    assert "cdk-hnb659fds-assets" in body
    assert "Fn::FindInMap" in body and "sagemaker-xgboost:1.7-1" in body and "sagemaker-scikit-learn:1.2-1-cpu-py3" in body
    (mapping,) = template["Mappings"].values()
    assert mapping["us-east-1"] == {"sklearn": "683313688378", "xgboost": "683313688378", "monitor": "156813124566"}
    assert "eu-west-1" in mapping


def test_pipeline_starts_after_glue_job_succeeds(dev):
    rules = dev.resources("model-abalone", "AWS::Events::Rule")
    (rule,) = [r for r in rules.values() if "SUCCEEDED" in json.dumps(r["Properties"].get("EventPattern"))]
    assert rule["Properties"]["EventPattern"] == {
        "source": ["aws.glue"],
        "detail-type": ["Glue Job State Change"],
        "detail": {"jobName": ["mlops-dev-etl-abalone"], "state": ["SUCCEEDED"]},
    }
    (target,) = rule["Properties"]["Targets"]
    assert target["SageMakerPipelineParameters"]["PipelineParameterList"][0]["Name"] == "InputDataUrl"


def test_model_package_group_per_model(synthesized):
    groups = synthesized.all_resources("AWS::SageMaker::ModelPackageGroup")
    names = sorted(g["Properties"]["ModelPackageGroupName"] for g in groups.values())
    assert names == sorted(f"{synthesized.config.prefix()}-{m.name}" for m in synthesized.config.models)


def test_execution_role_is_least_privilege(dev):
    template = dev.template("model-abalone")
    policies = [p for k, p in template["Resources"].items() if p["Type"] == "AWS::IAM::Policy" and "ExecutionRole" in k]
    text = json.dumps(policies)
    assert "AmazonSageMakerFullAccess" not in text and "arn:aws:s3:::*" not in text
    assert "mlops-dev-lake-curated-arn" in text and "/abalone/*" in text
    assert "/models/abalone/*" in text
    assert "processing-job/pipelines-*" in text and "training-job/pipelines-*" in text


def test_baseline_step_writes_the_latest_data_quality_baseline(definition, dev):
    (step,) = [s for s in all_steps(definition) if s["Type"] == "QualityCheck"]
    assert step["CheckType"] == "DATA_QUALITY" and step["RegisterNewBaseline"] is True
    args = step["Arguments"]
    assert args["ProcessingInputs"][0]["S3Input"]["S3Uri"] == {
        "Get": "Steps.Preprocess.ProcessingOutputConfig.Outputs['baseline'].S3Output.S3Uri"
    }
    assert args["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"].endswith(
        "/models/abalone/monitoring/baseline"
    )
    assert "sagemaker-model-monitor-analyzer" in args["AppSpecification"]["ImageUri"]


def test_definition_is_built_without_any_network_call(monkeypatch):
    """The SDK runs at synth: no telemetry request, no STS/S3 call (every socket connect is recorded and refused)."""
    import socket

    from mlops_constructs import sagemaker_definition as sdk

    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network is off during synth")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    definition = sdk.build_definition(
        sdk.PipelineInputs(
            model_name="m", pipeline_name="p", model_package_group_name="g", target_column="rings",
            artifacts_prefix="models/m/",
        )
    )
    assert attempts == []
    assert [s["Name"] for s in definition["Steps"]][:3] == ["Preprocess", "DataQualityBaseline", "Train"]
