"""DeepLearningWorkstation: synthesized once (with cdk-nag) in a test stack next to a DataLake."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import aws_cdk as cdk
import pytest
from cdk_nag import AwsSolutionsChecks

from mlops_constructs.data_lake import DataLake
from mlops_constructs.workstation import DEFAULT_AMI_PARAMETER, DeepLearningWorkstation

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = "abalone-build"
SSM_AMI_TYPE = "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>"


@dataclass
class Synth:
    outdir: Path
    manifest: dict
    template_path: Path
    template: dict

    def resources(self, cfn_type: str) -> dict[str, dict]:
        return {k: v for k, v in self.template["Resources"].items() if v["Type"] == cfn_type}

    def one(self, cfn_type: str) -> tuple[str, dict]:
        found = self.resources(cfn_type)
        assert len(found) == 1, f"expected one {cfn_type}, got {list(found)}"
        return next(iter(found.items()))


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Synth:
    outdir = tmp_path_factory.mktemp("cdk-workstation")
    context = json.loads((ROOT / "cdk.json").read_text())["context"]
    app = cdk.App(outdir=str(outdir), context=context)
    stack = cdk.Stack(app, "WorkstationTest")
    lake = DataLake(stack, "Lake")
    DeepLearningWorkstation(
        stack,
        "Workstation",
        read_buckets=[lake.curated_bucket, lake.artifacts_bucket],
        pipeline_arns=[stack.format_arn(service="sagemaker", resource="pipeline", resource_name=PIPELINE)],
    )
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    try:
        assembly = app.synth()
    except RuntimeError as exc:  # cdk-nag findings fail synthesis: show the report
        report = outdir / "validation-report.json"
        raise AssertionError(f"synth failed: {exc}\n{report.read_text() if report.exists() else ''}") from None
    path = Path(assembly.get_stack_by_name("WorkstationTest").template_full_path)
    return Synth(
        outdir=outdir,
        manifest=json.loads((outdir / "manifest.json").read_text()),
        template_path=path,
        template=json.loads(path.read_text()),
    )


def _text(value) -> str:
    return json.dumps(value)


def test_ami_is_a_deploy_time_ssm_parameter_without_context_lookups(synth):
    params = {k: v for k, v in synth.template["Parameters"].items() if v["Type"] == SSM_AMI_TYPE}
    assert len(params) == 1
    (name, param), = params.items()
    assert param["Default"] == DEFAULT_AMI_PARAMETER
    _, instance = synth.one("AWS::EC2::Instance")
    assert instance["Properties"]["ImageId"] == {"Ref": name}
    assert "missing" not in synth.manifest  # no context lookup: synth never needs AWS
    assert not (synth.outdir / "cdk.context.json").exists()


def test_instance_hardening(synth):
    _, instance = synth.one("AWS::EC2::Instance")
    props = instance["Properties"]
    assert props["MetadataOptions"]["HttpTokens"] == "required"
    assert props["Monitoring"] is True
    assert props["DisableApiTermination"] is True
    assert "KeyName" not in props
    assert props["NetworkInterfaces"][0]["AssociatePublicIpAddress"] is False
    assert props["InstanceType"] == "g5.xlarge"
    (root,) = props["BlockDeviceMappings"]
    assert root["DeviceName"] == "/dev/sda1"
    assert root["Ebs"]["Encrypted"] is True
    assert root["Ebs"]["VolumeType"] == "gp3"
    assert not synth.resources("AWS::EC2::LaunchTemplate")  # no fixed-name launch template


def test_instance_in_private_subnet_with_no_ingress(synth):
    _, instance = synth.one("AWS::EC2::Instance")
    subnet_ref = instance["Properties"]["NetworkInterfaces"][0]["SubnetId"]["Ref"]
    subnet = synth.template["Resources"][subnet_ref]
    assert subnet["Properties"]["MapPublicIpOnLaunch"] is False
    groups = synth.resources("AWS::EC2::SecurityGroup")
    assert len(groups) == 1
    (group,) = groups.values()
    assert "SecurityGroupIngress" not in group["Properties"]
    assert not synth.resources("AWS::EC2::SecurityGroupIngress")


def test_default_vpc_has_flow_logs_with_retention(synth):
    _, flow_log = synth.one("AWS::EC2::FlowLog")
    assert flow_log["Properties"]["TrafficType"] == "ALL"
    assert flow_log["Properties"]["LogDestinationType"] == "cloud-watch-logs"
    _, group = synth.one("AWS::Logs::LogGroup")
    assert group["Properties"]["RetentionInDays"] == 365
    assert group["DeletionPolicy"] == "Retain"
    assert len(synth.resources("AWS::EC2::NatGateway")) == 1


def test_idle_alarm_stops_the_instance(synth):
    _, alarm = synth.one("AWS::CloudWatch::Alarm")
    props = alarm["Properties"]
    instance_id, _ = synth.one("AWS::EC2::Instance")
    assert props["Namespace"] == "AWS/EC2"
    assert props["MetricName"] == "CPUUtilization"
    assert props["Statistic"] == "Average"
    assert props["ComparisonOperator"] == "LessThanThreshold"
    assert props["Threshold"] == 5
    assert props["Period"] * props["EvaluationPeriods"] == 60 * 60
    assert props["DatapointsToAlarm"] == props["EvaluationPeriods"]
    assert props["Dimensions"] == [{"Name": "InstanceId", "Value": {"Ref": instance_id}}]
    (action,) = props["AlarmActions"]
    parts = action["Fn::Join"][1]
    assert parts[0] == "arn:" and parts[2] == ":automate:" and parts[4] == ":ec2:stop"


def test_role_uses_session_manager_without_managed_policies(synth):
    roles = {k: v for k, v in synth.resources("AWS::IAM::Role").items()
             if "ec2.amazonaws.com" in _text(v["Properties"]["AssumeRolePolicyDocument"])}
    assert len(roles) == 1
    (role,) = roles.values()
    assert "ManagedPolicyArns" not in role["Properties"]
    statements = _workstation_statements(synth, next(iter(roles)))
    ssm = [s for s in statements if "ssmmessages:OpenDataChannel" in _actions(s)]
    assert ssm and "ssm:UpdateInstanceInformation" in _actions(ssm[0])


def _actions(statement) -> list[str]:
    actions = statement["Action"]
    return [actions] if isinstance(actions, str) else actions


def _workstation_statements(synth, role_id: str) -> list[dict]:
    out = []
    for policy in synth.resources("AWS::IAM::Policy").values():
        if {"Ref": role_id} in policy["Properties"]["Roles"]:
            out.extend(policy["Properties"]["PolicyDocument"]["Statement"])
    return out


@pytest.fixture(scope="module")
def statements(synth) -> list[dict]:
    roles = [k for k, v in synth.resources("AWS::IAM::Role").items()
             if "ec2.amazonaws.com" in _text(v["Properties"]["AssumeRolePolicyDocument"])]
    return _workstation_statements(synth, roles[0])


def test_role_reads_the_lake_buckets_only(synth, statements):
    (s3_read,) = [s for s in statements if "s3:GetObject*" in _actions(s)]
    assert sorted(_actions(s3_read)) == ["s3:GetBucket*", "s3:GetObject*", "s3:List*"]
    resources = _text(s3_read["Resource"])
    curated = next(k for k in synth.resources("AWS::S3::Bucket") if k.startswith("LakeCurated"))
    artifacts = next(k for k in synth.resources("AWS::S3::Bucket") if k.startswith("LakeArtifacts"))
    raw = next(k for k in synth.resources("AWS::S3::Bucket") if k.startswith("LakeRaw"))
    assert curated in resources and artifacts in resources and raw not in resources
    assert not [s for s in statements if any(a.startswith(("s3:Put", "s3:Delete")) for a in _actions(s))]
    (decrypt,) = [s for s in statements if "kms:Decrypt" in _actions(s)]
    assert decrypt["Resource"]["Fn::GetAtt"][0].startswith("LakeKey")


def test_role_starts_and_describes_the_pipeline(statements):
    (start,) = [s for s in statements if "sagemaker:StartPipelineExecution" in _actions(s)]
    assert _actions(start) == ["sagemaker:StartPipelineExecution"]
    assert _text(start["Resource"]).endswith(f':pipeline/{PIPELINE}"]]}}')
    (describe,) = [s for s in statements if "sagemaker:DescribePipelineExecution" in _actions(s)]
    assert f":pipeline/{PIPELINE}/execution/*" in _text(describe["Resource"])
    assert not [s for s in statements if any(a in ("*", "sagemaker:*", "ssm:*") for a in _actions(s))]


def test_cfn_lint_has_no_errors(synth):
    import cfnlint.api

    matches = cfnlint.api.lint_file(synth.template_path, cfnlint.api.ManualArgs(regions=["us-east-1"]))
    errors = [f"{m.rule.id} {m.message} ({m.path})" for m in matches if m.rule.id.startswith("E")]
    assert errors == []


def test_nag_passed_with_specific_acknowledgements(synth):
    # The fixture already fails on any unacknowledged finding; check what was acknowledged, and where.
    report = json.loads((synth.outdir / "validation-report.json").read_text())
    (nag,) = [r for r in report["pluginReports"] if r["pluginName"] == "AwsSolutions"]
    assert nag["conclusion"] == "success" and nag["violations"] == []
    workstation = {
        s["ruleName"]
        for s in nag["suppressedViolations"]
        if any(c["constructPath"].startswith("WorkstationTest/Workstation/") for c in s["violatingConstructs"])
    }
    assert all(rule.startswith("AwsSolutions-IAM5[") for rule in workstation), workstation
    assert "AwsSolutions-IAM5[Resource::*]" in workstation  # Session Manager's channel actions only
    assert not [
        s for s in nag["suppressedViolations"] if s["ruleName"].startswith(("AwsSolutions-IAM4", "AwsSolutions-EC2"))
    ]


def test_idle_minutes_too_short_is_rejected():
    stack = cdk.Stack(cdk.App(), "Invalid")
    with pytest.raises(ValueError) as exc:
        DeepLearningWorkstation(stack, "Workstation", idle_minutes=3)
    assert str(exc.value) == (
        "DeepLearningWorkstation idle_minutes must be a multiple of 5 between 5 and 1440 (the alarm evaluates "
        "5-minute averages), got 3"
    )


@pytest.mark.parametrize(
    "props, message",
    [
        ({"pipeline_arns": ["abalone-build"]}, "pipeline_arns must be SageMaker pipeline ARNs"),
        ({"ami_parameter_name": "ami-0123456789abcdef0"}, "ami_parameter_name must be an SSM parameter path"),
        ({"instance_type": "huge"}, "instance_type must look like g5.xlarge"),
        ({"idle_cpu_percent": 0}, "idle_cpu_percent must be between 0 and 100"),
    ],
)
def test_other_invalid_props(props, message):
    stack = cdk.Stack(cdk.App(), "Invalid")
    with pytest.raises(ValueError, match=message):
        DeepLearningWorkstation(stack, "Workstation", **props)
