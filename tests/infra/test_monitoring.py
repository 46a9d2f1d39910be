"""Monitoring and logging: SharedStack for the dev config plus a test stack wiring ModelMonitoring and
DataQualityMonitor the way the model and serving stacks do. Synthesized once for the module, with cdk-nag."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENDPOINT = "mlops-dev-abalone-staging"
MODEL = "mlops-dev-abalone"


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    import aws_cdk as cdk
    from aws_cdk import aws_kms as kms
    from aws_cdk import aws_lambda as lambda_
    from aws_cdk import aws_logs as logs
    from aws_cdk import aws_s3 as s3
    from cdk_nag import AwsSolutionsChecks

    from mlops_constructs import compliance
    from mlops_constructs.monitoring import DataQualityMonitor, ModelMonitoring
    from platform_config import load_config
    from stacks.shared_stack import SharedStack

    config = load_config("dev")
    outdir = tmp_path_factory.mktemp("cdk-monitoring")
    context = json.loads((ROOT / "cdk.json").read_text())["context"]
    context["env"] = config.environment
    app = cdk.App(outdir=str(outdir), context=context)
    shared = SharedStack(app, "mlops-dev-shared", config=config)

    stack = cdk.Stack(app, "mlops-dev-monitoring-test")
    model = config.models[0]
    log_group = logs.LogGroup(stack, "InferenceLogs", retention=logs.RetentionDays.ONE_MONTH)
    function = lambda_.Function(
        stack,
        "Inference",
        runtime=lambda_.Runtime.PYTHON_3_14,
        handler="index.handler",
        code=lambda_.Code.from_inline("def handler(event, context):\n    return {}\n"),
        log_group=log_group,
    )
    compliance.acknowledge(
        function, "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]",
        "Test scaffolding: the default role of a stand-in function that is never deployed.",
    )
    monitoring = ModelMonitoring(
        stack,
        "Monitoring",
        name=MODEL,
        alarm_topic=shared.alarm_topic.topic,
        endpoint_name=ENDPOINT,
        inference_function=function,
        inference_log_group=log_group,
        glue_job_name=shared.glue_job_names[0],
        pipeline_name=shared.pipeline_names[0],
        **model.alarms.model_dump(),
    )
    key = kms.Key.from_key_arn(stack, "Key", "arn:aws:kms:us-east-1:111111111111:key/11111111-2222-3333-4444-555555555555")
    bucket = s3.Bucket.from_bucket_attributes(stack, "Artifacts", bucket_name="mlops-dev-artifacts", encryption_key=key)
    dq = DataQualityMonitor(
        stack,
        "DataQuality",
        name=ENDPOINT,
        endpoint_name=ENDPOINT,
        bucket=bucket,
        encryption_key=key,
        baseline_statistics_uri="s3://mlops-dev-artifacts/models/abalone/baseline/statistics.json",
        baseline_constraints_uri="s3://mlops-dev-artifacts/models/abalone/baseline/constraints.json",
        data_capture_prefix="data-capture/",
        output_prefix="models/abalone/monitoring/data-quality/",
    )
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    try:
        assembly = app.synth()
    except RuntimeError as exc:
        report = outdir / "validation-report.json"
        raise AssertionError(f"synth failed: {exc}\n{report.read_text() if report.exists() else ''}") from None
    templates = {s.stack_name: json.loads(Path(s.template_full_path).read_text()) for s in assembly.stacks}
    paths = {s.stack_name: Path(s.template_full_path) for s in assembly.stacks}
    return {
        "config": config,
        "shared": templates["mlops-dev-shared"],
        "test": templates["mlops-dev-monitoring-test"],
        "paths": paths,
        "monitoring": monitoring,
        "dq": dq,
    }


def _resources(template: dict, cfn_type: str) -> dict[str, dict]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == cfn_type}


def _body(dashboard: dict) -> str:
    body = dashboard["Properties"]["DashboardBody"]
    return body if isinstance(body, str) else json.dumps(body)


def _alarm(template: dict, name: str) -> dict:
    for res in _resources(template, "AWS::CloudWatch::Alarm").values():
        if res["Properties"].get("AlarmName") == name:
            return res["Properties"]
    raise AssertionError(f"no alarm {name}")


def _metric_names(alarm: dict) -> set[str]:
    names = {alarm.get("MetricName")}
    names |= {m["MetricStat"]["Metric"]["MetricName"] for m in alarm.get("Metrics", []) if "MetricStat" in m}
    return names - {None}


def test_model_dashboard_mentions_every_metric(synth):
    dashboards = _resources(synth["test"], "AWS::CloudWatch::Dashboard")
    assert len(dashboards) == 1
    body = _body(next(iter(dashboards.values())))
    for metric in (
        "Invocations", "ModelLatency", "OverheadLatency", "Invocation4XXErrors", "Invocation5XXErrors",
        "CPUUtilization", "MemoryUtilization", "DiskUtilization", "/aws/sagemaker/Endpoints",
        "Duration", "Throttles", "Errors", "ExecutionFailed", "ExecutionSucceeded",
        "AWS/Sagemaker/ModelBuildingPipeline", "glue.driver.aggregate.numFailedTasks", MODEL,
    ):
        assert metric in body, metric
    assert synth["monitoring"].dashboard is not None


def test_overview_dashboard(synth):
    dashboards = _resources(synth["shared"], "AWS::CloudWatch::Dashboard")
    assert len(dashboards) == 1
    body = _body(next(iter(dashboards.values())))
    assert '"type":"alarm"' in body.replace(" ", "") or "alarms" in body
    for text in (f"alarm:{MODEL}-staging-lambda-errors", f"alarm:{MODEL}-prod-AllTraffic-5xx-rate",
                 f"alarm:{MODEL}-pipeline-failures",
                 "glue.driver.aggregate.numFailedTasks", "ExecutionFailed", "mlops-dev-etl-abalone"):
        assert text in body, text


def test_every_alarm_notifies_the_topic(synth):
    alarms = _resources(synth["test"], "AWS::CloudWatch::Alarm")
    names = sorted(a["Properties"]["AlarmName"] for a in alarms.values())
    assert names == sorted(synth["monitoring"].alarm_names(MODEL)), names
    assert len(synth["monitoring"].alarms) == len(alarms) == 8
    for alarm in alarms.values():
        actions = alarm["Properties"]["AlarmActions"]
        assert actions and "mlops-dev-shared" in json.dumps(actions)  # cross-stack reference to the topic
        assert "AlarmTopic" in json.dumps(actions)


def test_thresholds_follow_the_config(synth):
    t = synth["config"].models[0].alarms
    tpl = synth["test"]
    assert _alarm(tpl, f"{MODEL}-AllTraffic-model-latency-p99")["Threshold"] == t.model_latency_p99_ms * 1000 == 300000
    rate = _alarm(tpl, f"{MODEL}-AllTraffic-5xx-rate")
    assert rate["Threshold"] == t.endpoint_5xx_rate_percent
    assert _metric_names(rate) == {"Invocation5XXErrors", "Invocations"}
    assert "Metrics" in rate and any("Expression" in m for m in rate["Metrics"])
    assert _alarm(tpl, f"{MODEL}-lambda-errors")["Threshold"] == t.lambda_errors
    assert _alarm(tpl, f"{MODEL}-lambda-throttles")["Threshold"] == t.lambda_throttles
    assert _alarm(tpl, f"{MODEL}-lambda-duration-p99")["Threshold"] == t.lambda_duration_p99_ms
    assert _alarm(tpl, f"{MODEL}-inference-error-logs")["Threshold"] == t.lambda_errors
    glue = _alarm(tpl, f"{MODEL}-glue-failed-tasks")
    assert glue["Threshold"] == t.glue_job_failures and _metric_names(glue) == {"glue.driver.aggregate.numFailedTasks"}
    pipeline = _alarm(tpl, f"{MODEL}-pipeline-failures")
    assert pipeline["Threshold"] == t.pipeline_failures and _metric_names(pipeline) == {"ExecutionFailed"}
    assert pipeline["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"


def test_topic_encrypted_and_subscribed(synth):
    tpl = synth["shared"]
    (topic,) = _resources(tpl, "AWS::SNS::Topic").values()
    assert "KmsMasterKeyId" in topic["Properties"]
    topic_key = topic["Properties"]["KmsMasterKeyId"]["Fn::GetAtt"][0]
    key = _resources(tpl, "AWS::KMS::Key")[topic_key]
    assert key["Properties"]["EnableKeyRotation"] is True
    principals = json.dumps(key["Properties"]["KeyPolicy"])
    assert "cloudwatch.amazonaws.com" in principals and "events.amazonaws.com" in principals
    subs = _resources(tpl, "AWS::SNS::Subscription")
    assert {s["Properties"]["Endpoint"] for s in subs.values()} == set(synth["config"].alarm_emails)
    policy = json.dumps(_resources(tpl, "AWS::SNS::TopicPolicy"))
    assert "aws:SecureTransport" in policy and "cloudwatch.amazonaws.com" in policy


def test_failure_rules_have_readable_messages(synth):
    rules = _resources(synth["shared"], "AWS::Events::Rule")
    by_type = {r["Properties"]["EventPattern"]["detail-type"][0]: r["Properties"] for r in rules.values()}
    assert set(by_type) == {
        "SageMaker Model Building Pipeline Execution Status Change",
        "Glue Job State Change",
        "SageMaker Training Job State Change",
        "SageMaker Processing Job State Change",
    }
    for props in by_type.values():
        (target,) = props["Targets"]
        transformer = target["InputTransformer"]
        assert transformer["InputPathsMap"] and "<" in transformer["InputTemplate"]
    glue = by_type["Glue Job State Change"]["EventPattern"]["detail"]
    assert glue == {"jobName": ["mlops-dev-etl-abalone"], "state": ["FAILED", "TIMEOUT", "ERROR"]}
    pipeline = by_type["SageMaker Model Building Pipeline Execution Status Change"]
    assert pipeline["EventPattern"]["detail"]["currentPipelineExecutionStatus"] == ["Failed"]
    assert "mlops-dev-abalone" in json.dumps(pipeline["EventPattern"]["detail"]["pipelineArn"])
    assert "$.detail.pipelineExecutionArn" in json.dumps(pipeline["Targets"])


def test_log_groups_have_retention(synth):
    retention = synth["config"].log_retention_days
    shared = _resources(synth["shared"], "AWS::Logs::LogGroup")
    assert {g["Properties"]["LogGroupName"] for g in shared.values()} == {
        "/aws/sagemaker/ProcessingJobs", "/aws/sagemaker/TrainingJobs"
    }
    for tpl in (synth["shared"], synth["test"]):
        for group in _resources(tpl, "AWS::Logs::LogGroup").values():
            assert "RetentionInDays" in group["Properties"]
    assert all(g["Properties"]["RetentionInDays"] == retention for g in shared.values())


def test_inference_log_metric_filter_and_queries(synth):
    tpl = synth["test"]
    (mf,) = _resources(tpl, "AWS::Logs::MetricFilter").values()
    assert mf["Properties"]["FilterPattern"] == '{ $.level = "ERROR" }'
    queries = {q["Properties"]["Name"]: q["Properties"]["QueryString"] for q in _resources(tpl, "AWS::Logs::QueryDefinition").values()}
    assert set(queries) == {f"{MODEL}/slowest-requests", f"{MODEL}/errors-by-type", f"{MODEL}/predictions-by-model-version"}
    assert "@duration" in queries[f"{MODEL}/slowest-requests"]
    assert 'level = "ERROR"' in queries[f"{MODEL}/errors-by-type"]
    assert "by model_version" in queries[f"{MODEL}/predictions-by-model-version"]


def test_data_quality_schedule(synth):
    tpl = synth["test"]
    (schedule,) = _resources(tpl, "AWS::SageMaker::MonitoringSchedule").values()
    config = schedule["Properties"]["MonitoringScheduleConfig"]
    assert config["MonitoringType"] == "DataQuality"
    assert config["ScheduleConfig"]["ScheduleExpression"] == "cron(0 * ? * * *)"
    (job,) = _resources(tpl, "AWS::SageMaker::DataQualityJobDefinition").values()
    props = job["Properties"]
    assert props["NetworkConfig"]["EnableNetworkIsolation"] is True
    assert props["DataQualityJobInput"]["EndpointInput"]["EndpointName"] == ENDPOINT
    assert props["DataQualityBaselineConfig"]["StatisticsResource"]["S3Uri"].endswith("statistics.json")
    assert "KmsKeyId" in props["DataQualityJobOutputConfig"]
    assert "VolumeKmsKeyId" in props["JobResources"]["ClusterConfig"]
    image = json.dumps(props["DataQualityAppSpecification"]["ImageUri"])
    assert "sagemaker-model-monitor-analyzer" in image and "Fn::FindInMap" in image
    mapping = next(iter(tpl["Mappings"].values()))
    assert mapping["us-east-1"]["account"] == "156813124566"


def test_cfn_lint_no_errors(synth):
    import cfnlint.api

    for name, path in synth["paths"].items():
        matches = cfnlint.api.lint_file(path, cfnlint.api.ManualArgs(regions=["us-east-1"]))
        errors = [m for m in matches if m.rule.id.startswith("E")]
        assert not errors, f"{name}: " + "\n".join(str(m) for m in errors)


def test_alarm_names_match_the_parts_monitored():
    """SharedStack's overview names alarms with ModelMonitoring.alarm_names: they must match what is created."""
    import aws_cdk as cdk
    from aws_cdk import aws_sns as sns

    from mlops_constructs.monitoring import ModelMonitoring

    stack = cdk.Stack(cdk.App(), "Parts")
    topic = sns.Topic(stack, "Topic")
    build_only = ModelMonitoring(stack, "BuildOnly", name="p-e-m", alarm_topic=topic, glue_job_name="j", pipeline_name="p")
    assert sorted(a.node.default_child.alarm_name for a in build_only.alarms) == sorted(
        ModelMonitoring.alarm_names("p-e-m", endpoint=False, lambda_=False)
    )
    two_variants = ModelMonitoring(stack, "Endpoint", name="p-e-n", alarm_topic=topic, endpoint_name="ep",
                                   variant_names=["Blue", "Green"])
    assert sorted(a.node.default_child.alarm_name for a in two_variants.alarms) == sorted(
        ModelMonitoring.alarm_names("p-e-n", variant_names=["Blue", "Green"], lambda_=False, glue=False, pipeline=False)
    )
