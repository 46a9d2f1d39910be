"""Drift-triggered retraining, the function's runtime (lambda_src/drift_retrain): violations parsing, the stateless
cooldown, the start request and the notification, and bad input reported rather than raised. AWS is moto's."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "lambda_src" / "drift_retrain"))

import drift_handler  # noqa: E402
import drift_logic as logic  # noqa: E402

REGION = "us-east-1"
BUCKET = "mlops-dev-artifacts"
PREFIX = "models/abalone/monitoring/data-quality/staging/"
PIPELINE = "mlops-dev-abalone"
MONITOR_ROLE = "arn:aws:iam::123456789012:role/monitor"
REPORT_DIR = f"{PREFIX.rstrip('/')}/mlops-dev-abalone-staging/mlops-dev-abalone-staging-data-quality/2024/05/01/13"
VIOLATIONS = {
    "violations": [
        {"feature_name": "length", "constraint_check_type": "baseline_drift_check",
         "description": "Baseline drift distance: 0.41 exceeds threshold: 0.1"},
        {"feature_name": "sex", "constraint_check_type": "categorical_values_check",
         "description": "Data type match requirement is not met"},
        {"feature_name": "rings", "constraint_check_type": "completeness_check", "description": "Completeness 0.8"},
    ]
}


def event(job: str = "model-monitoring-202405011300-abc", *, report_dir: str = REPORT_DIR, **detail) -> dict:
    """An EventBridge 'SageMaker Processing Job State Change' event of a monitoring execution with violations."""
    body = {
        "ProcessingJobName": job,
        "ProcessingJobArn": f"arn:aws:sagemaker:{REGION}:123456789012:processing-job/{job}",
        "ProcessingJobStatus": "Completed",
        "ExitMessage": "CompletedWithViolations: Job completed successfully with 3 violations.",
        "RoleArn": MONITOR_ROLE,
        "MonitoringScheduleArn": f"arn:aws:sagemaker:{REGION}:123456789012:monitoring-schedule/s",
        "ProcessingOutputConfig": {"Outputs": [{"OutputName": "result", "S3Output": {
            "S3Uri": f"s3://{BUCKET}/{report_dir}", "LocalPath": "/opt/ml/processing/output",
            "S3UploadMode": "EndOfJob"}}]},
        **detail,
    }
    return {"version": "0", "id": "e1", "detail-type": "SageMaker Processing Job State Change",
            "source": "aws.sagemaker", "account": "123456789012", "time": "2024-05-01T14:05:00Z",
            "region": REGION, "resources": [body["ProcessingJobArn"]], "detail": body}


def settings(**overrides) -> logic.Settings:
    values = dict(pipeline_name=PIPELINE, alarm_topic_arn="", reports_bucket=BUCKET, reports_prefix=PREFIX,
                  cooldown=timedelta(hours=24), pipeline_parameters={"InputDataUrl": "s3://curated/abalone/"},
                  model_name="abalone")
    values.update(overrides)
    return logic.Settings(**values)


# --- pure logic -------------------------------------------------------------------------------------------------------
def test_violations_are_parsed_and_drift_is_kept():
    violations = logic.parse_violations(json.dumps(VIOLATIONS))
    assert [(v.feature_name, v.check_type) for v in violations] == [
        ("length", "baseline_drift_check"), ("sex", "categorical_values_check"), ("rings", "completeness_check")]
    drift = logic.drifted(violations, logic.DEFAULT_DRIFT_CHECK_TYPES)
    assert [v.feature_name for v in drift] == ["length", "sex"]
    assert logic.drifted(violations, ("completeness_check",))[0].feature_name == "rings"


@pytest.mark.parametrize("raw, message", [
    (b"{not json", "is not valid JSON"),
    (b"\xff\xfe", "is not valid JSON"),
    (json.dumps({"violation": []}), "has no 'violations' list"),
    (json.dumps([1, 2]), "has no 'violations' list"),
    (json.dumps({"violations": ["x"]}), r"violations\[0\] is not an object"),
    (json.dumps({"violations": [{"feature_name": "a"}]}), r"violations\[0\] lacks feature_name or constraint_check"),
])
def test_malformed_violations_are_input_errors(raw, message):
    with pytest.raises(logic.InputError, match=message):
        logic.parse_violations(raw, where="s3://b/k")


def test_the_event_gives_the_report_location():
    execution = logic.parse_event(event())
    assert execution.job_name == "model-monitoring-202405011300-abc"
    assert logic.violations_location(execution, BUCKET, PREFIX) == (BUCKET, f"{REPORT_DIR}/constraint_violations.json")


@pytest.mark.parametrize("bad, message", [
    (None, "the event is not a JSON object"),
    ([], "the event is not a JSON object"),
    ({"detail": "x"}, "has no 'detail' object"),
    ({"detail": {}}, "has no ProcessingJobName"),
    (event(ProcessingJobStatus="Failed"), "is not a monitoring execution that completed with violations"),
    (event(ExitMessage="Completed: Job completed successfully with no violations."), "completed with violations"),
    (event(ProcessingOutputConfig={"Outputs": []}), r"has no ProcessingOutputConfig.Outputs\[\].S3Output.S3Uri"),
    (event(ProcessingOutputConfig=None), "has no ProcessingOutputConfig"),
])
def test_unusable_events_are_input_errors(bad, message):
    with pytest.raises(logic.InputError, match=message):
        logic.parse_event(bad)


def test_a_report_outside_the_monitors_prefix_is_refused():
    execution = logic.parse_event(event(report_dir="models/other/monitoring/x"))
    with pytest.raises(logic.InputError, match="is not this monitor's execution"):
        logic.violations_location(execution, BUCKET, PREFIX)


NOW = datetime(2024, 5, 2, 12, 0, tzinfo=timezone.utc)


def test_cooldown_holds_within_the_period_and_expires_after_it():
    recent = [{"PipelineExecutionArn": "arn:old", "StartTime": NOW - timedelta(hours=30)},
              {"PipelineExecutionArn": "arn:new", "StartTime": NOW - timedelta(hours=23, minutes=59)}]
    state = logic.cooldown(recent, now=NOW, period=timedelta(hours=24))
    assert state.holds and state.last_execution == "arn:new"
    assert state.until == NOW + timedelta(minutes=1)
    expired = logic.cooldown(recent, now=NOW + timedelta(minutes=1), period=timedelta(hours=24))
    assert not expired.holds and expired.last_execution == "arn:new"
    assert not logic.cooldown([], now=NOW, period=timedelta(hours=24)).holds
    # naive timestamps are UTC; an unreadable one holds the cooldown (never retrain twice on a doubt)
    assert logic.cooldown([{"StartTime": "2024-05-02T11:30:00"}], now=NOW, period=timedelta(hours=1)).holds
    assert logic.cooldown([{"StartTime": "yesterday"}], now=NOW, period=timedelta(hours=1)).holds


def test_start_request_names_the_drift_and_is_idempotent_per_monitoring_job():
    drift = logic.drifted(logic.parse_violations(json.dumps(VIOLATIONS)), logic.DEFAULT_DRIFT_CHECK_TYPES)
    execution = logic.parse_event(event())
    request = logic.start_request(settings(), execution, drift, NOW)
    assert request["PipelineName"] == PIPELINE
    assert request["PipelineExecutionDisplayName"] == "drift-retrain-20240502T120000Z"
    assert "length (baseline_drift_check), sex (categorical_values_check)" in request["PipelineExecutionDescription"]
    assert request["PipelineParameters"] == [{"Name": "InputDataUrl", "Value": "s3://curated/abalone/"}]
    assert 32 <= len(request["ClientRequestToken"]) <= 128
    assert request["ClientRequestToken"] == logic.start_request(settings(), execution, drift, NOW + timedelta(1))[
        "ClientRequestToken"]
    other = logic.parse_event(event("model-monitoring-202405011400-def"))
    assert logic.start_request(settings(), other, drift, NOW)["ClientRequestToken"] != request["ClientRequestToken"]


def test_settings_from_the_environment():
    env = {"PIPELINE_NAME": PIPELINE, "ALARM_TOPIC_ARN": "arn:t", "REPORTS_BUCKET": BUCKET, "REPORTS_PREFIX": PREFIX,
           "COOLDOWN_SECONDS": "86400"}
    loaded = logic.Settings.from_env(env)
    assert loaded.cooldown == timedelta(hours=24) and loaded.pipeline_parameters == {}
    assert loaded.drift_check_types == logic.DEFAULT_DRIFT_CHECK_TYPES and not loaded.notify_during_cooldown
    with pytest.raises(logic.InputError, match="COOLDOWN_SECONDS must be at least 3600, got 60"):
        logic.Settings.from_env({**env, "COOLDOWN_SECONDS": "60"})
    with pytest.raises(logic.InputError, match="PIPELINE_NAME is not set; ALARM_TOPIC_ARN is not set"):
        logic.Settings.from_env({"REPORTS_BUCKET": BUCKET, "REPORTS_PREFIX": PREFIX, "COOLDOWN_SECONDS": "3600"})
    with pytest.raises(logic.InputError, match="PIPELINE_PARAMETERS must be a JSON object"):
        logic.Settings.from_env({**env, "PIPELINE_PARAMETERS": "[1]"})
    with pytest.raises(logic.InputError, match="DRIFT_CHECK_TYPES must be some of"):
        logic.Settings.from_env({**env, "DRIFT_CHECK_TYPES": "drift"})


# --- the handler against moto -----------------------------------------------------------------------------------------
class Cloud:
    """moto's S3 (the reports), SageMaker (the pipeline) and SNS (the alarm topic, read through an SQS queue)."""

    def __init__(self) -> None:
        self.s3 = boto3.client("s3", region_name=REGION)
        self.sagemaker = boto3.client("sagemaker", region_name=REGION)
        self.sns = boto3.client("sns", region_name=REGION)
        self.sqs = boto3.client("sqs", region_name=REGION)
        self.s3.create_bucket(Bucket=BUCKET)
        self.sagemaker.create_pipeline(PipelineName=PIPELINE, PipelineDefinition=json.dumps({"Steps": []}),
                                       RoleArn="arn:aws:iam::123456789012:role/pipeline", ClientRequestToken="t" * 32)
        self.topic = self.sns.create_topic(Name="alarms")["TopicArn"]
        self.queue = self.sqs.create_queue(QueueName="inbox")["QueueUrl"]
        queue_arn = self.sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"]
        self.sns.subscribe(TopicArn=self.topic, Protocol="sqs", Endpoint=queue_arn)

    def put_report(self, body, report_dir: str = REPORT_DIR) -> None:
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        self.s3.put_object(Bucket=BUCKET, Key=f"{report_dir}/constraint_violations.json", Body=data)

    def process(self, evt, now=None, **overrides) -> dict:
        return drift_handler.process(evt, settings(alarm_topic_arn=self.topic, **overrides), s3=self.s3,
                                     sagemaker=self.sagemaker, sns=self.sns, now=now)

    def messages(self) -> list[dict]:
        out = self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10).get("Messages", [])
        for m in out:
            self.sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=m["ReceiptHandle"])
        return [json.loads(m["Body"]) for m in out]

    def executions(self) -> list[dict]:
        return self.sagemaker.list_pipeline_executions(PipelineName=PIPELINE)["PipelineExecutionSummaries"]


@pytest.fixture
def cloud(monkeypatch):
    for var, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                       ("AWS_DEFAULT_REGION", REGION)):
        monkeypatch.setenv(var, value)
    with mock_aws():
        yield Cloud()


def test_drift_starts_the_pipeline_and_notifies_the_features(cloud, capsys):
    cloud.put_report(VIOLATIONS)
    result = cloud.process(event())
    assert result["outcome"] == "started" and result["notified"] and result["features"] == ["length", "sex"]
    (summary,) = cloud.executions()
    assert summary["PipelineExecutionArn"] == result["pipeline_execution_arn"]
    assert summary["PipelineExecutionDisplayName"].startswith("drift-retrain-")
    assert "length (baseline_drift_check)" in summary["PipelineExecutionDescription"]
    params = cloud.sagemaker.list_pipeline_parameters_for_execution(
        PipelineExecutionArn=summary["PipelineExecutionArn"])["PipelineParameters"]
    assert params == [{"Name": "InputDataUrl", "Value": "s3://curated/abalone/"}]
    (note,) = cloud.messages()
    assert note["Subject"] == "Drift on abalone: retraining started (2 feature(s))"
    body = note["Message"]
    assert "  - length (baseline_drift_check): Baseline drift distance: 0.41 exceeds threshold: 0.1" in body
    assert "  - sex (categorical_values_check)" in body and "rings" not in body
    assert f"Action: started pipeline {PIPELINE}, execution {summary['PipelineExecutionArn']}." in body
    assert "not before 24 h from now" in body
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    metrics = {name for line in lines if "_aws" in line
               for name in (m["Name"] for m in line["_aws"]["CloudWatchMetrics"][0]["Metrics"])}
    assert {"DriftDetected", "RetrainStarted", "NonDriftViolations"} <= metrics
    assert all(line.get("service") == "drift-retrain" for line in lines)
    started = [line for line in lines if line.get("message") == "retraining started"]
    assert started and started[0]["level"] == "INFO" and started[0]["pipeline_execution_arn"]


def test_the_cooldown_holds_then_expires(cloud):
    cloud.put_report(VIOLATIONS)
    assert cloud.process(event())["outcome"] == "started"
    cloud.messages()
    # the retrained model drifts too, an hour later: the cooldown holds, no loop, no repeated alarm by default
    later = datetime.now(timezone.utc) + timedelta(hours=1)
    held = cloud.process(event("model-monitoring-202405011400-def"), now=later)
    assert held["outcome"] == "cooldown" and not held["notified"] and len(cloud.executions()) == 1
    assert held["last_execution"] == cloud.executions()[0]["PipelineExecutionArn"]
    assert cloud.messages() == []
    # ... unless asked to notify during the cooldown
    noted = cloud.process(event("model-monitoring-202405011500-ghi"), now=later, notify_during_cooldown=True)
    assert noted["outcome"] == "cooldown" and noted["notified"]
    (note,) = cloud.messages()
    assert note["Subject"].startswith("Drift on abalone: no retrain, cooldown until ")
    assert "Action: none." in note["Message"] and "  - length (baseline_drift_check)" in note["Message"]
    # a day later the cooldown has expired: drift retrains again
    expired = cloud.process(event("model-monitoring-202405021500-jkl"), now=datetime.now(timezone.utc)
                            + timedelta(hours=24, minutes=1))
    assert expired["outcome"] == "started" and len(cloud.executions()) == 2


def test_any_execution_holds_the_cooldown_not_only_drift_ones(cloud):
    cloud.sagemaker.start_pipeline_execution(PipelineName=PIPELINE, ClientRequestToken="n" * 32)  # new data
    cloud.put_report(VIOLATIONS)
    assert cloud.process(event())["outcome"] == "cooldown" and len(cloud.executions()) == 1


def test_violations_without_drift_start_nothing(cloud):
    cloud.put_report({"violations": [VIOLATIONS["violations"][2]]})
    result = cloud.process(event())
    assert result["outcome"] == "no_drift" and not result["notified"]
    assert cloud.executions() == [] and cloud.messages() == []


@pytest.mark.parametrize("report, outcome, subject, problem", [
    (None, "invalid_input", "Drift retraining of abalone: no violations report", "does not exist"),
    (b"{oops", "invalid_input", "Drift retraining of abalone: the violations report is malformed",
     "is not valid JSON"),
    ({"violations": [{"feature_name": "x"}]}, "invalid_input",
     "Drift retraining of abalone: the violations report is malformed", "lacks feature_name"),
])
def test_a_missing_or_malformed_report_is_reported(cloud, report, outcome, subject, problem):
    if report is not None:
        cloud.put_report(report)
    result = cloud.process(event())
    assert result["outcome"] == outcome and result["notified"] and problem in result["problem"]
    (note,) = cloud.messages()
    assert note["Subject"] == subject and problem in note["Message"]
    assert "No pipeline execution was started." in note["Message"]
    assert cloud.executions() == []


@pytest.mark.parametrize("bad", [None, "text", {}, {"detail": {"ProcessingJobName": "j"}}])
def test_a_malformed_event_is_reported(cloud, bad):
    result = cloud.process(bad)
    assert result["outcome"] == "invalid_input" and result["notified"]
    (note,) = cloud.messages()
    assert note["Subject"] == "Drift retraining of abalone: the event could not be used"
    assert cloud.executions() == []


def test_a_failed_start_is_reported_with_the_features(cloud):
    cloud.put_report(VIOLATIONS)
    result = cloud.process(event(), pipeline_name="no-such-pipeline")
    assert result["outcome"] == "error" and result["notified"]
    (note,) = cloud.messages()
    assert "could not" in note["Subject"] and "  - length (baseline_drift_check)" in note["Message"]


def test_a_failed_publish_is_logged_not_raised(cloud, capsys):
    cloud.put_report(VIOLATIONS)
    result = drift_handler.process(event(), settings(alarm_topic_arn=cloud.topic.replace("alarms", "gone")),
                                   s3=cloud.s3, sagemaker=cloud.sagemaker, sns=cloud.sns)
    assert result["outcome"] == "started" and not result["notified"]
    assert "could not publish to the alarm topic" in capsys.readouterr().out


def test_the_handler_never_raises(cloud, monkeypatch):
    monkeypatch.setattr(drift_handler, "_clients", {"s3": cloud.s3, "sagemaker": cloud.sagemaker, "sns": cloud.sns})
    env = {"PIPELINE_NAME": PIPELINE, "ALARM_TOPIC_ARN": cloud.topic, "REPORTS_BUCKET": BUCKET,
           "REPORTS_PREFIX": PREFIX, "COOLDOWN_SECONDS": "86400", "MODEL_NAME": "abalone"}
    cloud.put_report(VIOLATIONS)
    assert drift_handler.handler(event(), None, env=env)["outcome"] == "started"
    assert drift_handler.handler(["not", "an", "event"], None, env=env)["outcome"] == "invalid_input"
    misconfigured = drift_handler.handler(event(), None, env={**env, "COOLDOWN_SECONDS": "10"})
    assert misconfigured["outcome"] == "configuration_error" and misconfigured["notified"]
    assert "COOLDOWN_SECONDS must be at least 3600" in misconfigured["problem"]
    assert drift_handler.handler(event(), None, env={})["outcome"] == "configuration_error"

    def boom(*_args, **_kwargs):
        raise RuntimeError("unexpected")

    monkeypatch.setattr(drift_handler, "process", boom)
    assert drift_handler.handler(event(), None, env=env)["outcome"] == "error"
