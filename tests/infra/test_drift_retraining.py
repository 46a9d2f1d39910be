"""DriftRetraining in a small stack next to a DataQualityMonitor: the rule matches this monitor's executions with
violations only, the role reaches this pipeline and report prefix only, the cooldown reaches the function, cdk-nag and
cfn-lint are clean, and bad props fail with exact messages."""

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
from mlops_constructs.drift_retraining import DriftRetraining
from mlops_constructs.monitoring import DataQualityMonitor
from mlops_constructs.pipeline_grants import SageMakerPipelineReference
from stacks import code_locations

PIPELINE = "MLOps-dev-abalone"  # SageMaker lower-cases the name in the ARN
PREFIX = "models/abalone/monitoring/data-quality/staging/"


def _props(stack: cdk.Stack, **overrides) -> dict:
    key = kms.Key(stack, f"Key{len(stack.node.children)}", enable_key_rotation=True)
    props = dict(
        pipeline=SageMakerPipelineReference.from_pipeline_name(stack, PIPELINE),
        monitoring_job_role_arn="arn:aws:iam::123456789012:role/monitor",
        bucket=s3.Bucket.from_bucket_attributes(stack, f"Bucket{len(stack.node.children)}",
                                                bucket_name="artifacts", encryption_key=key),
        encryption_key=key,
        reports_prefix=PREFIX,
        alarm_topic=sns.Topic.from_topic_arn(stack, f"Topic{len(stack.node.children)}",
                                             "arn:aws:sns:eu-west-1:123456789012:alarms"),
        code_dir=code_locations.DRIFT_RETRAIN_CODE,
    )
    props.update(overrides)
    return props


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    outdir = tmp_path_factory.mktemp("drift-retraining")
    app = cdk.App(outdir=str(outdir), context={"aws:cdk:disable-asset-staging": True})
    stack = cdk.Stack(app, "Serving")
    lake_key = kms.Key(stack, "LakeKey", enable_key_rotation=True)
    artifacts = s3.Bucket.from_bucket_attributes(stack, "Artifacts", bucket_name="artifacts", encryption_key=lake_key)
    topic_key = kms.Key(stack, "TopicKey", enable_key_rotation=True)
    topic = sns.Topic(stack, "Alarms", master_key=topic_key, enforce_ssl=True)
    monitor = DataQualityMonitor(
        stack, "DataQuality", name="mlops-dev-abalone-staging", endpoint_name="mlops-dev-abalone-staging",
        bucket=artifacts, encryption_key=lake_key, baseline_statistics_uri="s3://artifacts/b/statistics.json",
        baseline_constraints_uri="s3://artifacts/b/constraints.json", data_capture_prefix="data-capture/",
        output_prefix=PREFIX, alarm_topic=topic,
    )
    pipeline = SageMakerPipelineReference.from_pipeline_name(stack, PIPELINE)
    drift = DriftRetraining(
        stack, "DriftRetraining", pipeline=pipeline, monitoring_job_role_arn=monitor.role.role_arn,
        bucket=artifacts, encryption_key=lake_key, reports_prefix=PREFIX, alarm_topic=topic,
        alarm_topic_key=topic_key, code_dir=code_locations.DRIFT_RETRAIN_CODE,
        pipeline_parameters={"InputDataUrl": "s3://curated/datasets/abalone/"}, model_name="abalone",
    )
    # A second one in a VPC, with a cooldown only known at deploy time.
    vpc = ec2.Vpc.from_vpc_attributes(stack, "Vpc", vpc_id="vpc-0123456789abcdef0", availability_zones=["eu-west-1a"],
                                      isolated_subnet_ids=["subnet-0123456789abcdef0"])
    group = ec2.SecurityGroup.from_security_group_id(stack, "Sg", "sg-0123456789abcdef0", mutable=False)
    seconds = cdk.CfnParameter(stack, "CooldownSeconds", type="Number", default=6 * 3600, min_value=3600)
    in_vpc = DriftRetraining(
        stack, "InVpc", **_props(stack, alarm_topic=topic, vpc=vpc, security_groups=[group],
                                 vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
                                 cooldown=cdk.Duration.seconds(seconds.value_as_number)),
    )
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    try:
        assembly = app.synth()
    except RuntimeError as exc:
        report = outdir / "validation-report.json"
        raise AssertionError(f"{exc}\n{report.read_text() if report.exists() else ''}") from None
    template = json.loads((Path(assembly.directory) / "Serving.template.json").read_text())
    return stack, monitor, drift, in_vpc, template, outdir / "Serving.template.json"


def _of(template: dict, cfn_type: str, under: str) -> dict[str, dict]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == cfn_type and k.startswith(under)}


def _statements(template: dict, under: str) -> list[dict]:
    (policy,) = _of(template, "AWS::IAM::Policy", under).values()
    return policy["Properties"]["PolicyDocument"]["Statement"]


def test_the_rule_matches_this_monitors_executions_with_violations(synth):
    stack, monitor, drift, _, template, _ = synth
    (rule,) = _of(template, "AWS::Events::Rule", "DriftRetraining").values()
    assert rule["Properties"]["EventPattern"] == {
        "source": ["aws.sagemaker"],
        "detail-type": ["SageMaker Processing Job State Change"],
        "detail": {
            "ProcessingJobStatus": ["Completed"],
            "ExitMessage": [{"prefix": "CompletedWithViolations"}],
            "RoleArn": [stack.resolve(monitor.role.role_arn)],
        },
    }
    (target,) = rule["Properties"]["Targets"]
    assert target["Arn"] == stack.resolve(drift.function.function_arn)
    assert target["RetryPolicy"] == {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 7200}
    assert target["DeadLetterConfig"]["Arn"] == stack.resolve(drift.dead_letter_queue.queue_arn)


def test_the_role_reaches_this_pipeline_and_report_prefix_only(synth):
    stack, _, drift, _, template, _ = synth
    statements = _statements(template, "DriftRetrainingRole")
    by_sid = {s.get("Sid"): s for s in statements}
    pipeline_arn = stack.resolve(stack.format_arn(service="sagemaker", resource="pipeline",
                                                  resource_name=PIPELINE.lower()))
    assert by_sid["RetrainPipeline"]["Action"] == ["sagemaker:ListPipelineExecutions",
                                                    "sagemaker:StartPipelineExecution"]
    assert by_sid["RetrainPipeline"]["Resource"] == pipeline_arn
    sagemaker_actions = {a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
                         if a.startswith("sagemaker:")}
    assert sagemaker_actions == {"sagemaker:ListPipelineExecutions", "sagemaker:StartPipelineExecution"}
    assert by_sid["MonitorReports"]["Action"] == "s3:GetObject"
    assert by_sid["MonitorReports"]["Resource"]["Fn::Join"][1][-1] == f":s3:::artifacts/{PREFIX}*"
    rest = [s for s in statements if s.get("Sid") not in ("RetrainPipeline", "MonitorReports")]
    actions = {json.dumps(s["Action"]): s["Resource"] for s in rest}
    assert actions['"sns:Publish"'] == stack.resolve(drift.node.scope.node.find_child("Alarms").topic_arn)
    assert actions['"kms:Decrypt"'] == stack.resolve(drift.node.scope.node.find_child("LakeKey").key_arn)
    assert actions['["kms:Decrypt", "kms:GenerateDataKey*"]'] == stack.resolve(
        drift.node.scope.node.find_child("TopicKey").key_arn)
    assert actions['"sqs:SendMessage"'] == stack.resolve(drift.dead_letter_queue.queue_arn)
    assert '["logs:CreateLogStream", "logs:PutLogEvents"]' in actions
    assert not any(s["Resource"] == "*" for s in statements)
    (role,) = _of(template, "AWS::IAM::Role", "DriftRetrainingRole").values()
    assert "ManagedPolicyArns" not in role["Properties"]


def test_the_function_gets_the_cooldown_and_its_settings(synth):
    stack, _, drift, in_vpc, template, _ = synth
    (fn,) = _of(template, "AWS::Lambda::Function", "DriftRetrainingFunction").values()
    props = fn["Properties"]
    assert props["Handler"] == "drift_handler.handler" and props["Runtime"] == "python3.12"
    assert "Layers" not in props
    env = props["Environment"]["Variables"]
    assert env["COOLDOWN_SECONDS"] == "86400"
    assert env["PIPELINE_NAME"] == PIPELINE and env["MODEL_NAME"] == "abalone"
    assert env["REPORTS_BUCKET"] == "artifacts" and env["REPORTS_PREFIX"] == PREFIX
    assert json.loads(env["PIPELINE_PARAMETERS"]) == {"InputDataUrl": "s3://curated/datasets/abalone/"}
    assert env["DRIFT_CHECK_TYPES"] == "baseline_drift_check,categorical_values_check"
    assert env["NOTIFY_DURING_COOLDOWN"] == "false"
    assert props["DeadLetterConfig"]["TargetArn"] == stack.resolve(drift.dead_letter_queue.queue_arn)
    # a deploy-time cooldown reaches the function as a number of seconds computed by CloudFormation
    (vpc_fn,) = _of(template, "AWS::Lambda::Function", "InVpcFunction").values()
    cooldown = json.dumps(vpc_fn["Properties"]["Environment"]["Variables"]["COOLDOWN_SECONDS"])
    assert "CooldownSeconds" in cooldown
    assert vpc_fn["Properties"]["VpcConfig"] == {
        "SecurityGroupIds": ["sg-0123456789abcdef0"], "SubnetIds": ["subnet-0123456789abcdef0"]}


def test_logs_have_retention_and_a_key_and_dead_letters_alarm(synth):
    stack, _, drift, _, template, _ = synth
    (group,) = _of(template, "AWS::Logs::LogGroup", "DriftRetrainingLogs").values()
    assert group["Properties"]["RetentionInDays"] == 90 and "KmsKeyId" in group["Properties"]
    (queue,) = _of(template, "AWS::SQS::Queue", "DriftRetrainingDeadLetters").values()
    assert queue["Properties"]["SqsManagedSseEnabled"] is True
    assert queue["Properties"]["MessageRetentionPeriod"] == 14 * 24 * 3600
    (alarm,) = _of(template, "AWS::CloudWatch::Alarm", "DriftRetrainingDeadLettersAlarm").values()
    assert alarm["Properties"]["AlarmActions"] == [stack.resolve(stack.node.find_child("Alarms").topic_arn)]


def test_cfn_lint_reports_no_errors(synth):
    path = synth[5]
    matches = cfnlint.api.lint_file(path, cfnlint.api.ManualArgs(regions=["us-east-1", "eu-west-1"]))
    assert [str(m) for m in matches if m.rule.severity == "error"] == []


@pytest.mark.parametrize("overrides, error, message", [
    ({"cooldown": cdk.Duration.minutes(59)}, ValueError,
     "DriftRetraining cooldown must be at least 1 hour, got 59 minutes"),
    ({"cooldown": cdk.Duration.seconds(0)}, ValueError,
     "DriftRetraining cooldown must be at least 1 hour, got 0 seconds"),
    ({"reports_prefix": "models/abalone"}, ValueError,
     "DriftRetraining reports_prefix must be a key prefix ending in '/', got 'models/abalone'"),
    ({"code_dir": Path("/nonexistent")}, ValueError,
     "DriftRetraining code_dir /nonexistent has no drift_handler.py (handler drift_handler.handler)"),
    ({"pipeline_parameters": {"Input Data": "x"}}, ValueError,
     "DriftRetraining pipeline_parameters names must be 1-256 letters, digits, '-' or '_', got ['Input Data']"),
    ({"drift_check_types": ["drift"]}, ValueError, "DriftRetraining drift_check_types must be some of"),
    ({"cooldown": cdk.Duration.hours(cdk.Token.as_number({"Ref": "Hours"}))}, ValueError,
     "DriftRetraining cooldown from a token must be given in seconds: Duration.seconds(<token>)"),
    ({"security_groups": ["sg"]}, ValueError,
     "DriftRetraining: security_groups is set but vpc is not; pass vpc too, or remove security_groups"),
])
def test_bad_props_fail_with_exact_messages(overrides, error, message):
    stack = cdk.Stack(cdk.App(), "S")
    with pytest.raises(error) as info:
        DriftRetraining(stack, "D", **_props(stack, **overrides))
    assert str(info.value).startswith(message)


def test_one_hour_is_the_shortest_cooldown():
    stack = cdk.Stack(cdk.App(context={"aws:cdk:disable-asset-staging": True}), "S")
    drift = DriftRetraining(stack, "D", **_props(stack, cooldown=cdk.Duration.minutes(60)))
    template = cdk.Stage.of(stack).synth().get_stack_by_name("S").template
    (fn,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::Lambda::Function"]
    assert fn["Properties"]["Environment"]["Variables"]["COOLDOWN_SECONDS"] == "3600"
    assert drift.cooldown.to_hours() == 1


def test_a_vpc_without_security_groups_fails():
    stack = cdk.Stack(cdk.App(), "S")
    vpc = ec2.Vpc.from_vpc_attributes(stack, "Vpc", vpc_id="vpc-0123456789abcdef0", availability_zones=["a"],
                                      isolated_subnet_ids=["subnet-0123456789abcdef0"])
    with pytest.raises(ValueError, match=r"^DriftRetraining: vpc needs security_groups"):
        DriftRetraining(stack, "D", **_props(stack, vpc=vpc))
