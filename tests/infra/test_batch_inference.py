"""BatchInference in a small stack under cdk-nag: the triggers, the state machine's requests (the transform's data
processing and KMS on every volume and output, network isolation), the predictions table's partition projection, the
roles' scope, the failure alarm, the VPC variant, and bad props with exact messages."""

from __future__ import annotations

import json
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_events as events
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from cdk_nag import AwsSolutionsChecks

import cfnlint.api

from mlops_constructs.batch_inference import PREDICTION_COLUMNS, BatchInference, has_local_storage, job_name_prefix
from platform_config import load_config
from platform_config.names import Names
from stacks import code_locations

GLUE_SUCCEEDED = events.EventPattern(source=["aws.glue"], detail_type=["Glue Job State Change"],
                                     detail={"jobName": ["mlops-dev-etl-abalone"], "state": ["SUCCEEDED"]})


def _schema() -> dict:
    config = load_config("dev")
    return config.datasets[0].schema_document()


def _props(stack: cdk.Stack, key: kms.IKey, topic: sns.ITopic, **overrides) -> dict:
    n = len(stack.node.children)
    props = dict(
        name="mlops-dev-abalone", model_package_group_name="mlops-dev-abalone",
        curated_bucket=s3.Bucket.from_bucket_attributes(stack, f"Curated{n}", bucket_name="curated",
                                                        encryption_key=key),
        curated_prefix="abalone/",
        artifacts_bucket=s3.Bucket.from_bucket_attributes(stack, f"Artifacts{n}", bucket_name="artifacts",
                                                          encryption_key=key),
        model_artifacts_prefix=Names.model_artifacts_prefix("abalone"), work_prefix=Names.batch_prefix("abalone"),
        predictions_prefix=Names.predictions_prefix("abalone"), encryption_key=key, database_name="mlops_dev",
        table_name="abalone_predictions", dataset_schema=_schema(), alarm_topic=topic,
        code_dir=code_locations.BATCH_RESOLVE_CODE, scoring_script=code_locations.BATCH_SCORING_SCRIPT,
    )
    props.update(overrides)
    return props


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    outdir = tmp_path_factory.mktemp("batch-inference")
    app = cdk.App(outdir=str(outdir), context={"aws:cdk:disable-asset-staging": True})
    stack = cdk.Stack(app, "Batch")
    key = kms.Key(stack, "LakeKey", enable_key_rotation=True)
    topic = sns.Topic(stack, "Alarms", master_key=kms.Key(stack, "TopicKey", enable_key_rotation=True),
                      enforce_ssl=True)
    batch = BatchInference(stack, "Batch", **_props(stack, key, topic, schedule="cron(0 4 * * ? *)",
                                                    start_on_events=[GLUE_SUCCEEDED],
                                                    tags={"project": "mlops", "model": "abalone"}))
    vpc = ec2.Vpc.from_vpc_attributes(stack, "Vpc", vpc_id="vpc-0123456789abcdef0", availability_zones=["eu-west-1a"],
                                      isolated_subnet_ids=["subnet-0123456789abcdef0"])
    group = ec2.SecurityGroup.from_security_group_id(stack, "Sg", "sg-0123456789abcdef0", mutable=False)
    in_vpc = BatchInference(stack, "InVpc", **_props(
        stack, key, topic, name="mlops-dev-breast-cancer-long-model-name", model_package_group_name="g2",
        vpc=vpc, security_groups=[group], instance_type="ml.m5d.xlarge",
        vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)))
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    try:
        assembly = app.synth()
    except RuntimeError as exc:
        report = outdir / "validation-report.json"
        raise AssertionError(f"{exc}\n{report.read_text() if report.exists() else ''}") from None
    path = Path(assembly.directory) / "Batch.template.json"
    template = json.loads(path.read_text())
    return stack, batch, in_vpc, template, path


def _of(template: dict, cfn_type: str, under: str) -> dict[str, dict]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == cfn_type and k.startswith(under)}


def _render(node) -> str:
    """A DefinitionString (Fn::Join of strings and tokens) as text, each token as <...>."""
    if isinstance(node, str):
        return node
    if isinstance(node, dict) and "Fn::Join" in node:
        return node["Fn::Join"][0].join(_render(p) for p in node["Fn::Join"][1])
    if isinstance(node, dict) and "Ref" in node:
        return f"<{node['Ref']}>"
    if isinstance(node, dict) and "Fn::GetAtt" in node:
        return f"<{'.'.join(node['Fn::GetAtt'])}>"
    return "<token>"


def _definition(template: dict, under: str) -> dict:
    (machine,) = _of(template, "AWS::StepFunctions::StateMachine", under).values()
    return json.loads(_render(machine["Properties"]["DefinitionString"]))


def _statements(template: dict, under: str) -> dict[str, dict]:
    (policy,) = _of(template, "AWS::IAM::Policy", under).values()
    return {s.get("Sid", f"#{i}"): s for i, s in enumerate(policy["Properties"]["PolicyDocument"]["Statement"])}


def _key_ref(template: dict) -> str:
    (key,) = [k for k in _of(template, "AWS::KMS::Key", "LakeKey")]
    return f"<{key}.Arn>"


def test_the_run_is_plan_prepare_model_transform_collect(synth):
    _, _, _, template, _ = synth
    states = _definition(template, "Batch")["States"]
    assert _definition(template, "Batch")["StartAt"] == "Plan"
    flow = {name: state.get("Next") for name, state in states.items()}
    assert flow == {"Plan": "ShouldScore", "ShouldScore": None, "NothingToScore": None, "Prepare": "CreateModel",
                    "CreateModel": "Transform", "Transform": "DeleteModel", "DeleteModel": "Collect",
                    "DeleteModelAfterFailure": "Failed", "Collect": "Scored", "Scored": None, "Failed": None}
    assert states["ShouldScore"]["Choices"] == [{"Variable": "$.plan.action", "StringEquals": "score",
                                                 "Next": "Prepare"}]
    assert states["ShouldScore"]["Default"] == "NothingToScore" and states["NothingToScore"]["Type"] == "Succeed"
    assert states["Transform"]["Catch"][0]["Next"] == "DeleteModelAfterFailure"  # no model left behind
    assert states["Plan"]["Parameters"]["Payload"] == {"execution_name.$": "$$.Execution.Name",
                                                       "start_time.$": "$$.Execution.StartTime", "input.$": "$"}
    # Each job's description is discarded: the plan stays the state all the way.
    assert all(states[s]["ResultPath"] is None for s in ("Prepare", "CreateModel", "Transform", "Collect",
                                                          "DeleteModel", "DeleteModelAfterFailure"))
    assert states["Failed"] == {"Type": "Fail", "ErrorPath": "$.error.Error", "CausePath": "$.error.Cause"}
    assert states["Prepare"]["Resource"].endswith(":states:::sagemaker:createProcessingJob.sync")
    assert states["Transform"]["Resource"].endswith(":states:::sagemaker:createTransformJob.sync")


def test_the_transform_keeps_the_key_out_of_the_model_and_joins_it_back(synth):
    _, _, _, template, _ = synth
    transform = _definition(template, "Batch")["States"]["Transform"]["Parameters"]
    key = _key_ref(template)
    assert transform["DataProcessing"] == {"InputFilter": "$[1:]", "JoinSource": "Input", "OutputFilter": "$[0,-1]"}
    assert transform["BatchStrategy"] == "MultiRecord" and transform["MaxPayloadInMB"] == 6
    assert transform["TransformInput"] == {
        "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri.$": "$.plan.s3.transform_input"}},
        "ContentType": "text/csv", "SplitType": "Line", "CompressionType": "None"}
    assert transform["TransformOutput"] == {"S3OutputPath.$": "$.plan.s3.transform_output", "Accept": "text/csv",
                                            "AssembleWith": "Line", "KmsKeyId": key}
    assert transform["TransformResources"] == {"InstanceType": "ml.m5.large", "InstanceCount": 1,
                                               "VolumeKmsKeyId": key}
    assert transform["Tags"] == [{"Key": "model", "Value": "abalone"}, {"Key": "project", "Value": "mlops"}]


def test_kms_and_network_isolation_on_every_job_and_the_model(synth):
    _, _, _, template, _ = synth
    states = _definition(template, "Batch")["States"]
    key = _key_ref(template)
    for step in ("Prepare", "Collect"):
        job = states[step]["Parameters"]
        assert job["ProcessingOutputConfig"]["KmsKeyId"] == key
        assert job["ProcessingResources"]["ClusterConfig"]["VolumeKmsKeyId"] == key
        assert job["NetworkConfig"] == {"EnableNetworkIsolation": True, "EnableInterContainerTrafficEncryption": True}
        assert job["AppSpecification"]["ContainerEntrypoint"][0] == "python3"
        assert job["AppSpecification"]["ContainerEntrypoint"][1].startswith("/opt/ml/processing/input/code/")
        assert job["AppSpecification"]["ImageUri"].endswith("/sagemaker-scikit-learn:1.2-1-cpu-py3")
    assert states["Prepare"]["Parameters"]["AppSpecification"]["ContainerArguments.$"] == (
        "States.Array('prepare', '--partition', $.plan.partition, '--max-reject-ratio', '0.05')")
    assert "States.Format('{}', $.plan.package.version)" in (
        states["Collect"]["Parameters"]["AppSpecification"]["ContainerArguments.$"])
    outputs = {o["OutputName"]: o["S3Output"]["S3Uri.$"]
               for o in states["Collect"]["Parameters"]["ProcessingOutputConfig"]["Outputs"]}
    assert outputs == {"predictions": "$.plan.s3.predictions", "report": "$.plan.s3.report"}
    model = states["CreateModel"]["Parameters"]
    assert model["EnableNetworkIsolation"] is True
    assert model["PrimaryContainer"] == {"Image.$": "$.plan.package.image",
                                         "ModelDataUrl.$": "$.plan.package.model_data_url",
                                         "Environment.$": "$.plan.package.environment"}
    for kind in ("StateMachineLogs", "PlanLogs"):
        (group,) = _of(template, "AWS::Logs::LogGroup", f"Batch{kind}").values()
        assert "KmsKeyId" in group["Properties"] and group["Properties"]["RetentionInDays"] == 90
    (machine,) = _of(template, "AWS::StepFunctions::StateMachine", "Batch").values()
    assert machine["Properties"]["LoggingConfiguration"]["Level"] == "ALL"
    assert machine["Properties"]["TracingConfiguration"] == {"Enabled": True}


def test_the_triggers_start_the_state_machine(synth):
    stack, batch, _, template, _ = synth
    rules = _of(template, "AWS::Events::Rule", "Batch")
    by_kind = {("schedule" if "ScheduleExpression" in r["Properties"] else "event"): r for r in rules.values()}
    assert by_kind["schedule"]["Properties"]["ScheduleExpression"] == "cron(0 4 * * ? *)"
    assert by_kind["event"]["Properties"]["EventPattern"] == {
        "source": ["aws.glue"], "detail-type": ["Glue Job State Change"],
        "detail": {"jobName": ["mlops-dev-etl-abalone"], "state": ["SUCCEEDED"]}}
    for rule in by_kind.values():
        (target,) = rule["Properties"]["Targets"]
        assert target["Arn"] == stack.resolve(batch.state_machine.state_machine_arn)
    assert json.loads(by_kind["schedule"]["Properties"]["Targets"][0]["Input"]) == {"trigger": "schedule"}
    assert by_kind["event"]["Properties"]["Targets"][0]["InputTransformer"]["InputPathsMap"] == {
        "source": "$.source", "id": "$.id"}


def test_the_table_reads_the_predictions_with_partition_projection(synth):
    _, _, _, template, _ = synth
    (table,) = _of(template, "AWS::Glue::Table", "Batch").values()
    spec = table["Properties"]["TableInput"]
    assert table["Properties"]["DatabaseName"] == "mlops_dev" and spec["Name"] == "abalone_predictions"
    assert spec["PartitionKeys"] == [{"Name": "dt", "Type": "date"}]
    assert {k: v for k, v in spec["Parameters"].items() if k.startswith("projection")} == {
        "projection.enabled": "true", "projection.dt.type": "date", "projection.dt.format": "yyyy-MM-dd",
        "projection.dt.range": "2000-01-01,NOW", "projection.dt.interval": "1",
        "projection.dt.interval.unit": "DAYS"}
    storage = spec["StorageDescriptor"]
    assert storage["Location"] == "s3://curated/batch-predictions/abalone/"
    assert storage["SerdeInfo"]["SerializationLibrary"].endswith("ParquetHiveSerDe")
    columns = [(c["Name"], c["Type"]) for c in storage["Columns"]]
    curated = [(c["name"], {"string": "string", "double": "double", "integer": "int"}[c["type"]])
               for c in _schema()["columns"]]
    assert columns == curated + list(PREDICTION_COLUMNS)


def test_the_roles_reach_this_models_jobs_and_prefixes_only(synth):
    _, batch, _, template, _ = synth
    machine = _statements(template, "BatchStateMachineRole")
    for sid, kind in (("ProcessingJobs", "processing-job"), ("TransformJobs", "transform-job"), ("Models", "model")):
        assert _render(machine[sid]["Resource"]).endswith(f":{kind}/mlops-dev-abalone-*")
    assert [_render(r).rsplit("/", 1)[1] for r in machine["SyncRules"]["Resource"]] == [
        "StepFunctionsGetEventsForSageMakerProcessingJobsRule", "StepFunctionsGetEventsForSageMakerTransformJobsRule"]
    assert machine["PassJobRoles"]["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
    assert machine["VolumeKeyGrant"]["Condition"] == {"Bool": {"kms:GrantIsForAWSResource": "true"}}
    jobs = _statements(template, "BatchJobRole")
    assert sorted(_render(r) for r in jobs["ReadInputs"]["Resource"]) == [
        "arn:<AWS::Partition>:s3:::artifacts/batch/abalone/*", "arn:<AWS::Partition>:s3:::artifacts/models/abalone/*",
        "arn:<AWS::Partition>:s3:::curated/abalone/*"]
    assert sorted(_render(r) for r in jobs["WriteOutputs"]["Resource"]) == [
        "arn:<AWS::Partition>:s3:::artifacts/batch/abalone/*",
        "arn:<AWS::Partition>:s3:::curated/batch-predictions/abalone/*"]
    model = _statements(template, "BatchModelRole")
    assert sorted(_render(r) for r in model["ReadInputs"]["Resource"]) == [
        "arn:<AWS::Partition>:s3:::artifacts/batch/abalone/*", "arn:<AWS::Partition>:s3:::artifacts/models/abalone/*"]
    assert _render(model["WriteOutput"]["Resource"]) == "arn:<AWS::Partition>:s3:::artifacts/batch/abalone/*"
    assert "curated" not in json.dumps(model)  # the transform never touches the lake's curated zone
    plan = _statements(template, "BatchPlanRole")
    assert sorted(_render(r).rsplit(":", 1)[1] for r in plan["ApprovedPackages"]["Resource"]) == [
        "model-package-group/mlops-dev-abalone", "model-package/mlops-dev-abalone/*"]
    assert plan["ListPartitions"]["Condition"] == {"StringLike": {"s3:prefix": ["abalone/", "abalone/*"]}}
    assert not any(s["Action"] in ("s3:GetObject", "s3:PutObject") for s in plan.values())


def test_one_alarm_on_failed_or_timed_out_runs_notifies_the_topic(synth):
    stack, batch, _, template, _ = synth
    (alarm,) = _of(template, "AWS::CloudWatch::Alarm", "Batch").values()
    props = alarm["Properties"]
    assert props["AlarmActions"] == [{"Ref": next(iter(_of(template, "AWS::SNS::Topic", "Alarms")))}]
    assert props["Threshold"] == 1 and props["TreatMissingData"] == "notBreaching"
    assert [m["Expression"] for m in props["Metrics"] if "Expression" in m] == ["failed + timedOut"]
    names = sorted(m["MetricStat"]["Metric"]["MetricName"] for m in props["Metrics"] if "MetricStat" in m)
    assert names == ["ExecutionsFailed", "ExecutionsTimedOut"]


def test_the_vpc_variant_places_jobs_model_and_function_and_skips_the_volume_key_on_local_storage(synth):
    _, _, in_vpc, template, _ = synth
    states = _definition(template, "InVpc")["States"]
    vpc_config = {"SecurityGroupIds": ["sg-0123456789abcdef0"], "Subnets": ["subnet-0123456789abcdef0"]}
    assert states["Prepare"]["Parameters"]["NetworkConfig"]["VpcConfig"] == vpc_config
    assert states["CreateModel"]["Parameters"]["VpcConfig"] == vpc_config
    assert "VolumeKmsKeyId" not in states["Transform"]["Parameters"]["TransformResources"]  # ml.m5d: NVMe
    assert states["Transform"]["Parameters"]["TransformOutput"]["KmsKeyId"] == _key_ref(template)
    (function,) = _of(template, "AWS::Lambda::Function", "InVpcPlanFunction").values()
    assert function["Properties"]["VpcConfig"]["SubnetIds"] == ["subnet-0123456789abcdef0"]
    assert in_vpc.job_name_prefix == job_name_prefix("mlops-dev-breast-cancer-long-model-name")
    assert len(in_vpc.job_name_prefix) == 30
    assert "JobNetworkInterfaces" in _statements(template, "InVpcModelRole")


def test_the_template_is_cfn_lint_clean(synth):
    """Synth itself ran cdk-nag's AwsSolutions checks (a finding fails it); cfn-lint checks the resource schemas and
    the state machine's definition."""
    path = synth[4]
    matches = cfnlint.api.lint_file(path, cfnlint.api.ManualArgs(regions=["us-east-1", "eu-west-1"]))
    assert [str(m) for m in matches if m.rule.severity == "error"] == []


def test_helpers():
    assert job_name_prefix("mlops-dev-abalone") == "mlops-dev-abalone"
    assert job_name_prefix("a" * 40) != job_name_prefix("a" * 39 + "b") and len(job_name_prefix("a" * 40)) == 30
    assert [has_local_storage(t) for t in ("ml.m5.large", "ml.m5d.xlarge", "ml.g4dn.xlarge", "ml.c5.2xlarge",
                                           "ml.p4d.24xlarge", "ml.inf1.xlarge")] == [
        False, True, True, False, True, False]


@pytest.mark.parametrize("overrides, message", [
    (dict(work_prefix="batch/abalone"), "BatchInference work_prefix must be a key prefix ending in '/', got "
                                        "'batch/abalone'"),
    (dict(schedule="daily"), "BatchInference schedule must be an EventBridge expression such as "
                             "'cron(0 4 * * ? *)', got 'daily'"),
    (dict(instance_type="m5.large"), "BatchInference instance_type must be a SageMaker instance type such as "
                                     "'ml.m5.large', got 'm5.large'"),
    (dict(max_payload_mb=101), "BatchInference max_payload_mb must be within [1, 100] (SageMaker's MaxPayloadInMB), "
                               "got 101"),
    (dict(instance_count=0), "BatchInference instance_count must be within [1, 100], got 0"),
    (dict(max_reject_ratio=2), "BatchInference max_reject_ratio must be within [0, 1], got 2"),
    (dict(processing_image_uri="x"), "BatchInference processing_image_uri and processing_image_repository_arn go "
                                     "together; pass both or neither"),
    (dict(code_dir=Path("/nonexistent")), "BatchInference code_dir /nonexistent has no batch_resolve.py (handler "
                                          "batch_resolve.handler)"),
    (dict(name="Bad_Name"), "BatchInference name must be letters, digits and single '-' (no token), got 'Bad_Name'"),
    (dict(dataset_schema={"name": "x", "columns": [{"name": "prediction", "type": "double"}]}),
     "BatchInference dataset_schema has column(s) ['prediction'] that the predictions add; rename them in the "
     "dataset"),
])
def test_bad_props_fail_with_one_line(overrides, message):
    stack = cdk.Stack(cdk.App(), "Bad")
    key = kms.Key(stack, "Key")
    topic = sns.Topic(stack, "Topic")
    with pytest.raises(ValueError) as exc:
        BatchInference(stack, "Batch", **_props(stack, key, topic, **overrides))
    assert str(exc.value) == message
