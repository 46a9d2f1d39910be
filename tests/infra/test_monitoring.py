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
    from aws_cdk import aws_s3 as s3
    from cdk_nag import AwsSolutionsChecks

    from mlops_constructs.lambda_inference import LambdaInference
    from mlops_constructs.monitoring import DataQualityMonitor, ModelMonitoring
    from mlops_constructs.realtime_endpoint import RealtimeEndpoint
    from stacks import code_locations as code
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
    key = kms.Key.from_key_arn(stack, "Key", "arn:aws:kms:us-east-1:111111111111:key/11111111-2222-3333-4444-555555555555")
    bucket = s3.Bucket.from_bucket_attributes(stack, "Artifacts", bucket_name="mlops-dev-artifacts", encryption_key=key)
    endpoint = RealtimeEndpoint(
        stack, "Endpoint", model_package_arn="arn:aws:sagemaker:us-east-1:111111111111:model-package/mlops-dev-abalone/1",
        endpoint_name=ENDPOINT, encryption_key=key, model_artifacts_bucket=bucket,
    )
    inference = LambdaInference(
        stack, "Inference", mode="model", model_s3_uri="s3://mlops-dev-artifacts/models/abalone/model.tar.gz",
        code_dir=code.INFERENCE_CODE, dependencies_dir=code.INFERENCE_DEPENDENCIES,
    )
    monitoring = ModelMonitoring(
        stack,
        "Monitoring",
        name=MODEL,
        alarm_topic=shared.alarm_topic.topic,
        endpoint=endpoint,
        inference=inference,
        glue_job_name=shared.glue_job_names[0],
        pipeline_name=shared.pipeline_names[0],
        lambda_errors=model.alarms.lambda_errors,
        pipeline_failures=model.alarms.pipeline_failures,
    )
    opt_in = SharedStack(app, "mlops-opt-in-shared", config=config.model_copy(update={"sagemaker_job_log_groups": True}))
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
        revision="3",
        alarm_topic=shared.alarm_topic.topic,
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
        "opt_in": templates["mlops-opt-in-shared"],
        "test": templates["mlops-dev-monitoring-test"],
        "paths": paths,
        "monitoring": monitoring,
        "dq": dq,
    }


def _logical_id(synth, construct) -> str:
    import aws_cdk as cdk

    return cdk.Stack.of(construct).get_logical_id(construct.node.default_child)


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
    for text in (f"alarm:{MODEL}-staging-inference-error-logs", "alarm:mlops-dev-etl-abalone-failed-tasks",
                 f"alarm:{MODEL}-pipeline-failures",
                 "glue.driver.aggregate.numFailedTasks", "ExecutionFailed", "mlops-dev-etl-abalone"):
        assert text in body, text


def test_every_alarm_notifies_the_topic(synth):
    """ModelMonitoring creates only the alarms no resource construct owns; the endpoint's and the function's alarms
    are theirs (the serving stack gives them the topic) and the dashboard shows them."""
    alarms = {k: a for k, a in _resources(synth["test"], "AWS::CloudWatch::Alarm").items() if "AlarmName" in a["Properties"]}
    names = sorted(a["Properties"]["AlarmName"] for a in alarms.values())
    assert names == sorted(synth["monitoring"].alarm_names(MODEL)) == [f"{MODEL}-inference-error-logs",
                                                                        f"{MODEL}-pipeline-failures"], names
    assert len(synth["monitoring"].alarms) == len(alarms) == 2
    for alarm in alarms.values():
        actions = alarm["Properties"]["AlarmActions"]
        assert actions and "mlops-dev-shared" in json.dumps(actions)  # cross-stack reference to the topic
        assert "AlarmTopic" in json.dumps(actions)
    body = _body(next(iter(_resources(synth["test"], "AWS::CloudWatch::Dashboard").values())))
    for logical_id in _resources(synth["test"], "AWS::CloudWatch::Alarm"):  # every alarm of the stage is shown
        assert logical_id in body, logical_id


def test_thresholds_follow_the_config(synth):
    t = synth["config"].models[0].alarms
    tpl = synth["test"]
    assert _alarm(tpl, f"{MODEL}-inference-error-logs")["Threshold"] == t.lambda_errors
    pipeline = _alarm(tpl, f"{MODEL}-pipeline-failures")
    assert pipeline["Threshold"] == t.pipeline_failures and _metric_names(pipeline) == {"ExecutionFailed"}
    assert pipeline["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"


def test_each_etl_job_has_one_alarm_in_the_data_stack(dev):
    """A Glue job is shared by every model of its dataset: its alarm lives once, with the job, not in each model
    stack. One alarm per dataset's job, none for anything else."""
    glue = {
        name: res["Properties"]
        for name, res in dev.all_resources("AWS::CloudWatch::Alarm").items()
        if "numFailedTasks" in json.dumps(res["Properties"])
    }
    data = dev.template("data")["Resources"]
    by_job: dict[str, list] = {}
    for where, alarm in glue.items():
        assert where.startswith(dev.stacks["data"].stack_name + "/"), where
        (job_ref,) = [d["Value"] for d in alarm["Dimensions"] if d["Name"] == "JobName"]
        job = data[job_ref["Ref"]]  # the job of the same stack
        assert job["Type"] == "AWS::Glue::Job"
        by_job.setdefault(job["Properties"]["Name"], []).append(alarm)
    jobs = [dev.config.names.etl_job(d.name) for d in dev.config.datasets]
    assert len(jobs) == 2 and set(by_job) == set(jobs)  # abalone and breast_cancer
    for job in jobs:
        (alarm,) = by_job[job]
        assert alarm["AlarmName"] == f"{job}-failed-tasks"
        assert alarm["Threshold"] == dev.config.data_lake.etl_failed_tasks_alarm
        assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
        assert "AlarmTopic" in json.dumps(alarm["AlarmActions"]) or "alarm" in json.dumps(alarm["AlarmActions"])
        dims = {d["Name"]: d["Value"] for d in alarm["Dimensions"]}
        assert dims["JobRunId"] == "ALL" and dims["Type"] == "count"


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
    # Processing job events carry no tags: pipeline steps are covered by the pipeline rule, Model Monitor jobs by the
    # serving stacks' rule on their role (test_data_quality_failures_notify_except_no_data).
    assert set(by_type) == {
        "SageMaker Model Building Pipeline Execution Status Change",
        "Glue Job State Change",
        "SageMaker Training Job State Change",
    }
    for props in by_type.values():
        (target,) = props["Targets"]
        transformer = target["InputTransformer"]
        assert transformer["InputPathsMap"] and "<" in transformer["InputTemplate"]
    glue = by_type["Glue Job State Change"]["EventPattern"]["detail"]
    config = synth["config"]
    # Every dataset's job and every model's pipeline, nothing else.
    jobs = [config.names.etl_job(d.name) for d in config.datasets]
    assert glue == {"jobName": jobs, "state": ["FAILED", "TIMEOUT", "ERROR"]}
    pipeline = by_type["SageMaker Model Building Pipeline Execution Status Change"]
    assert pipeline["EventPattern"]["detail"]["currentPipelineExecutionStatus"] == ["Failed"]
    arns = [json.dumps(a) for a in pipeline["EventPattern"]["detail"]["pipelineArn"]]
    expected = [config.names.model_resource(m.name) for m in config.models]
    assert len(arns) == len(expected) == 2
    for arn, name in zip(arns, expected):
        assert arn.endswith(f':pipeline/{name}"]]}}'), (arn, name)
    assert "$.detail.pipelineExecutionArn" in json.dumps(pipeline["Targets"])


def test_training_job_failures_match_only_this_environments_tags(synth):
    """The training job state change event carries the job's tags as a key -> value map (detail.Tags)."""
    from stacks.common import environment_tags

    rules = _resources(synth["shared"], "AWS::Events::Rule").values()
    (training,) = [r["Properties"] for r in rules if r["Properties"]["EventPattern"]["detail-type"] == [
        "SageMaker Training Job State Change"]]
    detail = training["EventPattern"]["detail"]
    assert detail["TrainingJobStatus"] == ["Failed"]
    assert detail["Tags"] == {"project": ["mlops"], "environment": ["dev"]}
    assert environment_tags(synth["config"]) == {"project": "mlops", "environment": "dev"}


def test_data_quality_failures_notify_except_no_data(synth):
    """A monitoring job of an endpoint without traffic fails with "Job inputs had no data": not an incident."""
    (rule,) = [r for r in _resources(synth["test"], "AWS::Events::Rule").values()
               if "Processing Job" in json.dumps(r["Properties"].get("EventPattern", {}))]
    pattern = rule["Properties"]["EventPattern"]
    assert pattern["detail-type"] == ["SageMaker Processing Job State Change"]
    detail = pattern["detail"]
    assert detail["ProcessingJobStatus"] == ["Failed"]
    assert detail["FailureReason"] == [{"anything-but": {"prefix": "Job inputs had no data"}}]
    (role_arn,) = detail["RoleArn"]
    assert role_arn == {"Fn::GetAtt": [_logical_id(synth, synth["dq"].role), "Arn"]}
    assert "mlops-dev-shared" in json.dumps(rule["Properties"]["Targets"])  # the shared alarm topic


def test_log_groups_have_retention(synth):
    retention = synth["config"].log_retention_days
    # By default the shared stack takes no account-wide name: SageMaker creates its job log groups.
    assert _resources(synth["shared"], "AWS::Logs::LogGroup") == {}
    opt_in = _resources(synth["opt_in"], "AWS::Logs::LogGroup")
    assert {g["Properties"]["LogGroupName"] for g in opt_in.values()} == {
        "/aws/sagemaker/ProcessingJobs", "/aws/sagemaker/TrainingJobs"
    }
    for tpl in (synth["opt_in"], synth["test"]):
        for group in _resources(tpl, "AWS::Logs::LogGroup").values():
            assert "RetentionInDays" in group["Properties"]
    assert all(g["Properties"]["RetentionInDays"] == retention for g in opt_in.values())
    assert all(g["DeletionPolicy"] == "Retain" and "KmsKeyId" in g["Properties"] for g in opt_in.values())


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
    assert schedule["Properties"]["MonitoringScheduleName"] == f"{ENDPOINT}-data-quality"
    (job,) = _resources(tpl, "AWS::SageMaker::DataQualityJobDefinition").values()
    props = job["Properties"]
    assert config["MonitoringJobDefinitionName"] == props["JobDefinitionName"]
    assert props["NetworkConfig"]["EnableNetworkIsolation"] is True
    assert props["DataQualityJobInput"]["EndpointInput"]["EndpointName"] == ENDPOINT
    assert props["DataQualityBaselineConfig"]["StatisticsResource"]["S3Uri"].endswith("statistics.json")
    assert "KmsKeyId" in props["DataQualityJobOutputConfig"]
    assert "VolumeKmsKeyId" in props["JobResources"]["ClusterConfig"]
    image = json.dumps(props["DataQualityAppSpecification"]["ImageUri"])
    assert "sagemaker-model-monitor-analyzer" in image and "Fn::FindInMap" in image
    mapping = next(iter(tpl["Mappings"].values()))
    assert mapping["us-east-1"]["account"] == "156813124566"
    # Its role may create the account-wide processing log group (the platform no longer creates it by default).
    policies = json.dumps(_resources(tpl, "AWS::IAM::Policy"))
    assert "logs:CreateLogGroup" in policies and "/aws/sagemaker/ProcessingJobs" in policies


def test_data_quality_job_definition_name_follows_its_content():
    """Every property of a job definition is replace-only: a changed one needs a new name, or the update fails."""
    import re

    import aws_cdk as cdk
    from aws_cdk import aws_kms as kms
    from aws_cdk import aws_s3 as s3

    from mlops_constructs.monitoring import DataQualityMonitor

    def name(instance_type="ml.m5.large", revision=None, tag="a"):
        app = cdk.App()
        stack = cdk.Stack(app, "S")
        key = kms.Key(stack, "Key")
        DataQualityMonitor(
            stack, "DQ", name=ENDPOINT, endpoint_name=ENDPOINT, bucket=s3.Bucket(stack, "B"), encryption_key=key,
            baseline_statistics_uri="s3://b/s.json", baseline_constraints_uri="s3://b/c.json",
            data_capture_prefix="dc/", output_prefix="out/", instance_type=instance_type, revision=revision,
        )
        cdk.Tags.of(stack).add("owner", tag)
        template = app.synth().get_stack_by_name("S").template
        (job,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::SageMaker::DataQualityJobDefinition"]
        return job["Properties"]["JobDefinitionName"]

    base = name()
    assert re.match(r"^mlops-dev-abalone-staging-[0-9a-f]{10}$", base) and len(base) <= 63
    assert name() == base
    assert name(instance_type="ml.m5.xlarge") != base
    assert name(tag="b") != base
    assert name(revision="12") == f"{base}-12"
    with pytest.raises(ValueError, match="revision must be 1-12 letters or digits"):
        name(revision="not/valid")


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
        ModelMonitoring.alarm_names("p-e-m", lambda_=False)
    )
    assert ModelMonitoring.alarm_names("p-e-n", pipeline=False) == ["p-e-n-inference-error-logs"]
    with pytest.raises(ValueError, match="ModelMonitoring pipeline_failures must be at least 1, got 0"):
        ModelMonitoring(stack, "Bad", name="x", alarm_topic=topic, pipeline_failures=0)


# --- one owner per alarm ---------------------------------------------------------------------------------------------
def _signal(metric: dict, stack: str):
    """(namespace, name, dimensions, statistic) of one metric. An alias's Lambda metric (``Resource`` dimension) is the
    function's own signal: the alias is the function's only entry point. Dimensions that reference a resource of the
    template are scoped to its stack."""
    dims = {d["Name"]: d["Value"] for d in metric.get("Dimensions", [])}
    if metric.get("Namespace") == "AWS/Lambda":
        dims.pop("Resource", None)
    dims_key = json.dumps(dims, sort_keys=True)
    if '"Ref"' in dims_key or '"Fn::GetAtt"' in dims_key:
        dims_key = f"{stack}:{dims_key}"
    return (metric.get("Namespace"), metric.get("MetricName"), dims_key, metric.get("Stat"))


def _alarm_key(props: dict, stack: str) -> tuple:
    """What makes two alarms the same notification: metric(s), statistic, threshold, comparison and topic."""
    if "Metrics" in props:
        signals = tuple(sorted(
            _signal({**m["MetricStat"]["Metric"], "Stat": m["MetricStat"]["Stat"]}, stack)
            for m in props["Metrics"] if "MetricStat" in m
        ))
        expressions = sorted(m["Expression"] for m in props["Metrics"] if "Expression" in m)
        if len(signals) == 1 and not expressions:  # one metric written as a metric query
            metric = signals[0]
        elif signals:  # metric math: the metrics it combines (ids and labels aside)
            metric = (signals, len(expressions))
        else:  # Metrics Insights query: the query is the metric
            metric = (json.dumps(expressions),)
    else:
        stat = props.get("Statistic") or props.get("ExtendedStatistic")
        metric = _signal({**props, "Stat": stat}, stack)
    return (metric, props.get("Threshold"), props.get("ComparisonOperator"),
            json.dumps(props.get("AlarmActions", []), sort_keys=True))


def test_no_two_alarms_notify_the_same_signal(synthesized):
    """Each signal has one owner: a breach sends one email, not one per construct that watches the same metric."""
    assert any("serving" in name for name in synthesized.templates)  # the serving stacks are part of the check
    seen: dict[tuple, str] = {}
    offenders = []
    for stack, template in synthesized.templates.items():
        for logical_id, res in template.get("Resources", {}).items():
            if res["Type"] != "AWS::CloudWatch::Alarm":
                continue
            key = _alarm_key(res["Properties"], stack)
            where = f"{stack}/{logical_id}"
            if key in seen:
                offenders.append(f"{where} duplicates {seen[key]}")
            else:
                seen[key] = where
    assert not offenders, "\n".join(offenders)
