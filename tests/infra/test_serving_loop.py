"""Issue 14 pieces in the serving stack, with the config switches on (dev.yaml ships them off): the model-quality
schedule with its alarm and the ground-truth ingestion function, built from models[].model_quality."""

from __future__ import annotations

import json
from pathlib import Path

import aws_cdk as cdk
import pytest
import yaml

from platform_config import load_config
from stacks.common import tag
from stacks.data_stack import DataStack
from stacks.serving_stack import ServingStack

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> dict:
    config_dir = tmp_path_factory.mktemp("config")
    data = yaml.safe_load((ROOT / "config" / "dev.yaml").read_text())
    data["models"][0]["model_quality"] = {"enabled": True}
    (config_dir / "dev.yaml").write_text(yaml.safe_dump(data))
    config = load_config("dev", config_dir)
    context = json.loads((ROOT / "cdk.json").read_text())["context"]
    context["aws:cdk:disable-asset-staging"] = True
    app = cdk.App(outdir=str(tmp_path_factory.mktemp("cdk-loop")), context=context)
    lake = DataStack(app, "mlops-dev-data", config=config)
    model = config.models[0]
    stack = ServingStack(app, "mlops-dev-serving-abalone-prod", config=config, model=model, stage=model.stages[-1],
                         lake_refs=lake.lake_refs)
    tag(stack, config, model.name)
    assembly = app.synth()
    return json.loads(Path(assembly.get_stack_by_name(stack.stack_name).template_full_path).read_text())


def _of_type(template: dict, cfn_type: str) -> list[dict]:
    return [r for r in template["Resources"].values() if r["Type"] == cfn_type]


def test_model_quality_schedule_reads_ground_truth_and_alarms_on_the_metric(template):
    (definition,) = _of_type(template, "AWS::SageMaker::ModelQualityJobDefinition")
    props = definition["Properties"]
    assert props["ModelQualityAppSpecification"]["ProblemType"] == "Regression"
    assert "model-monitor/ground-truth/abalone/prod" in json.dumps(props["ModelQualityJobInput"]["GroundTruthS3Input"])
    assert props["ModelQualityJobInput"]["EndpointInput"]["EndpointName"] == "mlops-dev-abalone-prod"
    schedules = [s["Properties"]["MonitoringScheduleConfig"]["MonitoringType"]
                 for s in _of_type(template, "AWS::SageMaker::MonitoringSchedule")]
    assert sorted(schedules) == ["DataQuality", "ModelQuality"]
    alarms = [a["Properties"] for a in _of_type(template, "AWS::CloudWatch::Alarm")
              if a["Properties"].get("Namespace") == "aws/sagemaker/Endpoints/model-metrics"]
    (alarm,) = alarms
    assert (alarm["MetricName"], alarm["Threshold"], alarm["ComparisonOperator"]) == (
        "rmse", 3.0, "GreaterThanThreshold")


def test_ground_truth_function_listens_to_the_documented_upload_prefix(template):
    functions = [f["Properties"] for f in _of_type(template, "AWS::Lambda::Function")
                 if "ground" in json.dumps(f["Properties"].get("Handler", "")).lower()]
    assert len(functions) == 1
    rules = [r["Properties"]["EventPattern"] for r in _of_type(template, "AWS::Events::Rule")
             if "Object Created" in json.dumps(r["Properties"]["EventPattern"])]
    assert any("ground-truth/abalone/prod/" in json.dumps(rule) for rule in rules)
