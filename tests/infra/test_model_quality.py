"""ModelQualityMonitor and GroundTruthIngestion in a small stack: the job definition joins the endpoint's captures
with the ground truth as serve.py's output requires, the alarm watches rmse/auc against the threshold, the roles
reach their prefixes only, the rule matches uploads under the prefix, cdk-nag and cfn-lint are clean, and bad props
fail with exact messages."""

from __future__ import annotations

import json
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from cdk_nag import AwsSolutionsChecks

import cfnlint.api
from mlops_constructs.monitoring import GroundTruthIngestion, ModelQualityMonitor
from platform_config.names import Names
from stacks import code_locations

ENDPOINT = "mlops-dev-abalone-staging"
CAPTURE = Names.data_capture_prefix("abalone", "staging")
GT = Names.model_monitor_ground_truth_prefix("abalone", "staging")
UPLOAD = Names.ground_truth_upload_prefix("abalone", "staging")
QUARANTINE = Names.ground_truth_quarantine_prefix("abalone", "staging")
OUTPUT = "models/abalone/monitoring/model-quality/staging/"


def _monitor_props(stack: cdk.Stack, **overrides) -> dict:
    key = kms.Key(stack, f"Key{len(stack.node.children)}", enable_key_rotation=True)
    props = dict(
        name=ENDPOINT, endpoint_name=ENDPOINT, problem_type="regression", alarm_threshold=2.5,
        bucket=s3.Bucket.from_bucket_attributes(stack, f"B{len(stack.node.children)}", bucket_name="artifacts",
                                                encryption_key=key),
        encryption_key=key, data_capture_prefix=CAPTURE, ground_truth_prefix=GT, output_prefix=OUTPUT,
    )
    props.update(overrides)
    return props


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    outdir = tmp_path_factory.mktemp("model-quality")
    app = cdk.App(outdir=str(outdir), context={"aws:cdk:disable-asset-staging": True})
    stack = cdk.Stack(app, "Serving")
    lake_key = kms.Key(stack, "LakeKey", enable_key_rotation=True)
    artifacts = s3.Bucket.from_bucket_attributes(stack, "Artifacts", bucket_name="artifacts", encryption_key=lake_key)
    raw = s3.Bucket.from_bucket_attributes(stack, "Raw", bucket_name="raw", encryption_key=lake_key)
    topic_key = kms.Key(stack, "TopicKey", enable_key_rotation=True)
    topic = sns.Topic(stack, "Alarms", master_key=topic_key, enforce_ssl=True)
    regression = ModelQualityMonitor(
        stack, "ModelQuality", name=ENDPOINT, endpoint_name=ENDPOINT, problem_type="regression", alarm_threshold=2.5,
        bucket=artifacts, encryption_key=lake_key, data_capture_prefix=CAPTURE, ground_truth_prefix=GT,
        output_prefix=OUTPUT, alarm_topic=topic, revision="7",
    )
    vpc = ec2.Vpc.from_vpc_attributes(stack, "Vpc", vpc_id="vpc-0123456789abcdef0", availability_zones=["eu-west-1a"],
                                      isolated_subnet_ids=["subnet-0123456789abcdef0"])
    group = ec2.SecurityGroup.from_security_group_id(stack, "Sg", "sg-0123456789abcdef0", mutable=False)
    binary = ModelQualityMonitor(
        stack, "Binary", name="mlops-dev-churn-prod", endpoint_name="mlops-dev-churn-prod",
        problem_type="binary_classification", alarm_threshold=0.8, bucket=artifacts, encryption_key=lake_key,
        data_capture_prefix="data-capture/churn/prod/", ground_truth_prefix="model-monitor/ground-truth/churn/prod/",
        output_prefix="models/churn/monitoring/model-quality/prod/", schedule_expression="cron(0 3 ? * * *)",
        vpc=vpc, security_groups=[group], vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
    )
    ingestion = GroundTruthIngestion(
        stack, "GroundTruth", code_dir=code_locations.GROUND_TRUTH_CODE, problem_type="regression",
        upload_bucket=raw, upload_prefix=UPLOAD, output_bucket=artifacts, ground_truth_prefix=GT,
        quarantine_prefix=QUARANTINE, encryption_key=lake_key, alarm_topic=topic, alarm_topic_key=topic_key,
        data_capture_prefix=CAPTURE, name=ENDPOINT,
    )
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    try:
        assembly = app.synth()
    except RuntimeError as exc:
        report = outdir / "validation-report.json"
        raise AssertionError(f"{exc}\n{report.read_text() if report.exists() else ''}") from None
    path = Path(assembly.directory) / "Serving.template.json"
    return stack, regression, binary, ingestion, json.loads(path.read_text()), path


def _of(template: dict, cfn_type: str, under: str) -> dict[str, dict]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == cfn_type and k.startswith(under)}


def _statements(template: dict, under: str) -> dict[str, dict]:
    (policy,) = _of(template, "AWS::IAM::Policy", under).values()
    return {s.get("Sid", json.dumps(s["Action"])): s for s in policy["Properties"]["PolicyDocument"]["Statement"]}


def test_regression_job_definition_joins_captures_with_ground_truth(synth):
    stack, monitor, _, _, template, _ = synth
    (definition,) = _of(template, "AWS::SageMaker::ModelQualityJobDefinition", "ModelQuality").values()
    props = definition["Properties"]
    assert props["ModelQualityAppSpecification"]["ProblemType"] == "Regression"
    assert props["ModelQualityAppSpecification"]["Environment"] == {"publish_cloudwatch_metrics": "Enabled"}
    endpoint_input = props["ModelQualityJobInput"]["EndpointInput"]
    assert endpoint_input == {
        "EndpointName": ENDPOINT, "LocalPath": "/opt/ml/processing/input/endpoint", "InferenceAttribute": "0",
        "S3InputMode": "File", "S3DataDistributionType": "FullyReplicated", "StartTimeOffset": "-P1D",
        "EndTimeOffset": "-PT1H",
    }
    assert props["ModelQualityJobInput"]["GroundTruthS3Input"]["S3Uri"] == f"s3://artifacts/{GT.rstrip('/')}"
    assert props["StoppingCondition"] == {"MaxRuntimeInSeconds": 1800}
    assert props["NetworkConfig"] == {"EnableNetworkIsolation": True, "EnableInterContainerTrafficEncryption": True}
    assert props["JobDefinitionName"].startswith(f"{ENDPOINT}-") and props["JobDefinitionName"].endswith("-7")
    (schedule,) = _of(template, "AWS::SageMaker::MonitoringSchedule", "ModelQuality").values()
    config = schedule["Properties"]["MonitoringScheduleConfig"]
    assert schedule["Properties"]["MonitoringScheduleName"] == f"{ENDPOINT}-model-quality"
    assert config["MonitoringType"] == "ModelQuality" and config["MonitoringJobDefinitionName"] == \
        props["JobDefinitionName"]
    assert config["ScheduleConfig"] == {"ScheduleExpression": "cron(0 * ? * * *)"}


def test_binary_classification_uses_the_probability_column_and_the_vpc(synth):
    _, _, binary, _, template, _ = synth
    (definition,) = _of(template, "AWS::SageMaker::ModelQualityJobDefinition", "Binary").values()
    props = definition["Properties"]
    assert props["ModelQualityAppSpecification"]["ProblemType"] == "BinaryClassification"
    endpoint_input = props["ModelQualityJobInput"]["EndpointInput"]
    assert endpoint_input["ProbabilityAttribute"] == "0" and endpoint_input["ProbabilityThresholdAttribute"] == 0.5
    assert "InferenceAttribute" not in endpoint_input
    assert props["NetworkConfig"]["VpcConfig"] == {"SecurityGroupIds": ["sg-0123456789abcdef0"],
                                                   "Subnets": ["subnet-0123456789abcdef0"]}
    assert "VpcCreateNetworkInterface" in _statements(template, "BinaryRole")


def test_alarms_watch_rmse_above_and_auc_below_the_threshold(synth):
    stack, monitor, binary, _, template, _ = synth
    (alarm,) = _of(template, "AWS::CloudWatch::Alarm", "ModelQualityMetricAlarm").values()
    props = alarm["Properties"]
    assert (props["Namespace"], props["MetricName"], props["Statistic"]) == (
        "aws/sagemaker/Endpoints/model-metrics", "rmse", "Maximum")
    assert props["Dimensions"] == [{"Name": "Endpoint", "Value": ENDPOINT},
                                   {"Name": "MonitoringSchedule", "Value": f"{ENDPOINT}-model-quality"}]
    assert (props["ComparisonOperator"], props["Threshold"], props["Period"]) == ("GreaterThanThreshold", 2.5, 3600)
    assert (props["EvaluationPeriods"], props["DatapointsToAlarm"], props["TreatMissingData"]) == (2, 1, "notBreaching")
    assert props["AlarmActions"] == [stack.resolve(stack.node.find_child("Alarms").topic_arn)]
    (auc,) = _of(template, "AWS::CloudWatch::Alarm", "BinaryMetricAlarm").values()
    assert (auc["Properties"]["MetricName"], auc["Properties"]["Statistic"], auc["Properties"]["ComparisonOperator"],
            auc["Properties"]["Threshold"], auc["Properties"]["Period"]) == (
        "auc", "Minimum", "LessThanThreshold", 0.8, 86400)
    assert "AlarmActions" not in auc["Properties"]
    assert monitor.metric_model_quality().metric_name == "rmse"


def test_the_alarm_follows_the_models_metric():
    stack = cdk.Stack(cdk.App(), "S")
    r2 = ModelQualityMonitor(stack, "R2", **_monitor_props(stack, metric="r2", alarm_threshold=0.4))
    f1 = ModelQualityMonitor(stack, "F1", **_monitor_props(stack, name="other", problem_type="binary_classification",
                                                           metric="f1", alarm_threshold=0.7))
    assert (r2.metric_name, stack.resolve(r2.alarm.node.default_child.comparison_operator),
            r2.metric_model_quality().to_metric_config().metric_stat.statistic) == ("r2", "LessThanThreshold", "Minimum")
    assert (f1.metric_name, stack.resolve(f1.alarm.node.default_child.comparison_operator)) == ("f1",
                                                                                              "LessThanThreshold")


def test_the_monitor_role_reaches_its_prefixes_images_and_namespace_only(synth):
    stack, monitor, _, _, template, _ = synth
    by_sid = _statements(template, "ModelQualityRole")
    assert by_sid["Metrics"]["Condition"] == {
        "StringEquals": {"cloudwatch:namespace": "aws/sagemaker/Endpoints/model-metrics"}}
    images = json.dumps(by_sid["MonitorImages"]["Resource"])
    assert "repository/sagemaker-model-monitor-analyzer" in images
    assert "repository/sagemaker-model-monitor-groundtruth-merger" in images
    text = json.dumps(template["Resources"][next(iter(_of(template, "AWS::IAM::Policy", "ModelQualityRole")))])
    for prefix in (CAPTURE, GT, OUTPUT):
        assert f"/{prefix}*" in text
    assert "s3:DeleteObject" not in text and '"s3:PutObject"' in text


def test_ingestion_rule_role_and_function(synth):
    stack, _, _, ingestion, template, _ = synth
    (rule,) = _of(template, "AWS::Events::Rule", "GroundTruth").values()
    assert rule["Properties"]["EventPattern"] == {
        "source": ["aws.s3"], "detail-type": ["Object Created"],
        "detail": {"bucket": {"name": ["raw"]}, "object": {"key": [{"prefix": UPLOAD}]}}}
    (target,) = rule["Properties"]["Targets"]
    assert target["RetryPolicy"] == {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 7200}
    by_sid = _statements(template, "GroundTruthRole")
    assert by_sid["Uploads"]["Action"] == ["s3:GetObject", "s3:GetObjectVersion"]
    assert by_sid["Uploads"]["Resource"]["Fn::Join"][1][-1] == f":s3:::raw/{UPLOAD}*"
    assert [r["Fn::Join"][1][-1] for r in by_sid["GroundTruth"]["Resource"]] == [
        f":s3:::artifacts/{GT}*", f":s3:::artifacts/{QUARANTINE}*"]
    assert by_sid["GroundTruth"]["Action"] == "s3:PutObject"
    assert by_sid["ListCaptures"]["Condition"] == {"StringLike": {"s3:prefix": [f"{CAPTURE}*"]}}
    (fn,) = _of(template, "AWS::Lambda::Function", "GroundTruthFunction").values()
    env = fn["Properties"]["Environment"]["Variables"]
    assert fn["Properties"]["Handler"] == "ground_truth_handler.handler" and "Layers" not in fn["Properties"]
    assert {k: env[k] for k in ("UPLOAD_PREFIX", "OUTPUT_BUCKET", "GROUND_TRUTH_PREFIX", "QUARANTINE_PREFIX",
                                "PROBLEM_TYPE", "CAPTURE_PREFIX", "CAPTURE_LOOKBACK_HOURS", "MONITOR_NAME")} == {
        "UPLOAD_PREFIX": UPLOAD, "OUTPUT_BUCKET": "artifacts", "GROUND_TRUTH_PREFIX": GT,
        "QUARANTINE_PREFIX": QUARANTINE, "PROBLEM_TYPE": "regression", "CAPTURE_PREFIX": CAPTURE,
        "CAPTURE_LOOKBACK_HOURS": "24", "MONITOR_NAME": ENDPOINT}
    (dlq_alarm,) = _of(template, "AWS::CloudWatch::Alarm", "GroundTruthDeadLettersAlarm").values()
    assert dlq_alarm["Properties"]["AlarmActions"] == [stack.resolve(stack.node.find_child("Alarms").topic_arn)]


def test_cfn_lint_reports_no_errors(synth):
    matches = cfnlint.api.lint_file(synth[5], cfnlint.api.ManualArgs(regions=["us-east-1", "eu-west-1"]))
    assert [str(m) for m in matches if m.rule.severity == "error"] == []


@pytest.mark.parametrize("overrides, message", [
    ({"metric": "auc"}, "ModelQualityMonitor metric for regression must be one of rmse, mae, mse, r2, got 'auc'"),
    ({"problem_type": "multiclass"},
     "ModelQualityMonitor problem_type must be one of regression, binary_classification, got 'multiclass'"),
    ({"max_runtime": cdk.Duration.minutes(31)},
     "ModelQualityMonitor max_runtime must not exceed 30 minutes on an hourly schedule"),
    ({"schedule_expression": "rate(1 hour)"}, "ModelQualityMonitor schedule_expression must be"),
    ({"start_time_offset": "P1D"}, "ModelQualityMonitor start_time_offset must be a negative ISO 8601 duration"),
    ({"start_time_offset": "-PT1H", "end_time_offset": "-P1D"},
     "ModelQualityMonitor start_time_offset -PT1H must be further back than end_time_offset -P1D"),
    ({"probability_threshold": 1.0}, "ModelQualityMonitor probability_threshold must be between 0 and 1, got 1.0"),
    ({"ground_truth_prefix": "gt"}, "ModelQualityMonitor ground_truth_prefix must be a key prefix ending in '/'"),
    ({"name": "x" * 64}, "must be 1-63 letters, digits and hyphens"),
    ({"revision": "v-1"}, "ModelQualityMonitor revision must be 1-12 letters or digits, got 'v-1'"),
    ({"security_groups": ["sg"]},
     "ModelQualityMonitor: security_groups is set but vpc is not; pass vpc too, or remove security_groups"),
])
def test_bad_monitor_props_fail_with_exact_messages(overrides, message):
    stack = cdk.Stack(cdk.App(), "S")
    with pytest.raises(ValueError) as info:
        ModelQualityMonitor(stack, "M", **_monitor_props(stack, **overrides))
    assert message in str(info.value)


def test_bad_ingestion_props_fail():
    stack = cdk.Stack(cdk.App(), "S")
    key = kms.Key(stack, "K")
    bucket = s3.Bucket.from_bucket_name(stack, "B", "bucket")
    props = dict(problem_type="regression", upload_bucket=bucket, upload_prefix=UPLOAD, output_bucket=bucket,
                 ground_truth_prefix=GT, quarantine_prefix=QUARANTINE, encryption_key=key)
    with pytest.raises(ValueError, match="has no ground_truth_handler.py"):
        GroundTruthIngestion(stack, "G1", code_dir=Path("/nonexistent"), **props)
    with pytest.raises(ValueError, match="upload_prefix must be a key prefix ending in '/'"):
        GroundTruthIngestion(stack, "G2", code_dir=code_locations.GROUND_TRUTH_CODE, **{**props, "upload_prefix": "x"})
