"""Lambda entry point of drift-triggered retraining: handler ``drift_handler.handler`` (Python 3.12, no layer).

Invoked by an EventBridge rule on ``SageMaker Processing Job State Change`` events of one Model Monitor schedule's
executions that completed with violations. For each event it:

1. reads the execution's ``constraint_violations.json`` from its S3 output (under the monitor's report prefix) and
   keeps the drift violations (``DRIFT_CHECK_TYPES``; default baseline_drift_check and categorical_values_check);
2. checks the cooldown statelessly: ``ListPipelineExecutions`` of the model's pipeline, newest first, created within
   ``COOLDOWN_SECONDS``; any execution (drift, new data, schedule or a person started it) holds the cooldown. The
   retrained model, once deployed, is monitored too: its own drift within the cooldown starts nothing (no loop);
3. otherwise ``StartPipelineExecution`` (display name ``drift-retrain-<UTC time>``, a description naming the
   drifted features, ``PIPELINE_PARAMETERS``; the client request token is derived from the monitoring job, so a
   repeated event starts nothing twice);
4. publishes one message to the alarm topic listing the drifted features and the action taken.

Notifications: a started retrain, and every problem (bad event, missing or unreadable report, a failed AWS call,
bad configuration). A drift while the cooldown holds is logged and counted (``RetrainSkippedCooldown``) but not
published unless ``NOTIFY_DURING_COOLDOWN`` is ``true``: an hourly monitor would otherwise repeat the same alarm up to
23 times a day. Violations that are not drift (data types, completeness, missing or extra columns) are logged and
counted (``NonDriftViolations``), never acted on: retraining on broken input data does not fix it.

The handler never raises: a problem is logged, counted (``DriftRetrainErrors``) and published, and the next
monitoring execution that finds drift is the retry. Logs are JSON lines; metrics are CloudWatch embedded metric
format lines (namespace ``METRICS_NAMESPACE``, dimensions ``service`` and ``pipeline``). Standard library and the
runtime's boto3 only, so the function needs no layer.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from datetime import datetime, timezone
from typing import Any, Mapping, Optional

import boto3
from botocore.exceptions import BotoCoreError, ClientError

import drift_logic as logic

DEFAULT_SERVICE = "drift-retrain"
DEFAULT_NAMESPACE = "MLOpsPlatform/DriftRetraining"
SERVICE = os.environ.get("SERVICE_NAME") or DEFAULT_SERVICE
NAMESPACE = os.environ.get("METRICS_NAMESPACE") or DEFAULT_NAMESPACE
# ListPipelineExecutions: one page of the newest executions created within the cooldown is enough to decide.
LIST_PAGE = 10
MISSING_OBJECT_CODES = ("NoSuchKey", "404", "NotFound")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: level, message, service, timestamp, and the record's ``extra`` fields."""

    _RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "level": record.levelname,
            "message": record.getMessage(),
            "service": SERVICE,
            "timestamp": datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(),
            "logger": record.name,
        }
        entry.update({k: v for k, v in vars(record).items() if k not in self._RESERVED and not k.startswith("_")})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class _StdoutHandler(logging.StreamHandler):
    """Writes to the current ``sys.stdout`` (the one Lambda, or a test's capture, has in place at each record)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stdout

    @stream.setter
    def stream(self, _value) -> None:
        pass


def _logger() -> logging.Logger:
    log = logging.getLogger(SERVICE)
    if not log.handlers:
        handler = _StdoutHandler()
        handler.setFormatter(JsonFormatter())
        log.addHandler(handler)
        log.propagate = False  # the Lambda runtime's root handler would print each record a second time
    level = (os.environ.get("LOG_LEVEL") or "INFO").upper()
    log.setLevel(level if level in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL") else "INFO")
    return log


logger = _logger()


def emit_metric(name: str, pipeline: str, value: float = 1.0) -> None:
    """One CloudWatch embedded-metric-format line (CloudWatch Logs extracts the metric; no API call)."""
    print(json.dumps({
        "_aws": {
            "Timestamp": int(time.time() * 1000),
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["service", "pipeline"]],
                "Metrics": [{"Name": name, "Unit": "Count"}],
            }],
        },
        "service": SERVICE,
        "pipeline": pipeline or "unknown",
        name: value,
    }), flush=True)


_clients: dict[str, Any] = {}


def _client(name: str) -> Any:
    if name not in _clients:
        _clients[name] = boto3.client(name)
    return _clients[name]


def _error_text(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{exc.operation_name}: {error.get('Code', 'error')}: {error.get('Message', '')}".rstrip(": ")
    return f"{type(exc).__name__}: {exc}"


class Run:
    """One invocation: the settings, the clients and what was done (the handler's result)."""

    def __init__(self, settings: Optional[logic.Settings], *, s3: Any, sagemaker: Any, sns: Any,
                 topic_arn: str = "") -> None:
        self.settings = settings
        self.s3, self.sagemaker, self.sns = s3, sagemaker, sns
        self.topic_arn = settings.alarm_topic_arn if settings else topic_arn
        self.pipeline = settings.pipeline_name if settings else ""
        self.result: dict[str, Any] = {"outcome": None, "notified": False}

    def notify(self, note: logic.Notification) -> None:
        if not self.topic_arn:
            logger.error("no alarm topic configured; notification not sent", extra={"subject": note.subject})
            return
        try:
            self.sns.publish(TopicArn=self.topic_arn, Subject=note.subject, Message=note.message)
            self.result["notified"] = True
        except (ClientError, BotoCoreError) as exc:
            logger.error("could not publish to the alarm topic",
                         extra={"error": _error_text(exc), "subject": note.subject, "notification": note.message})

    def fail(self, outcome: str, what: str, problem: str, **context: Any) -> dict[str, Any]:
        logger.error(f"{what}: {problem}", extra={"outcome": outcome})
        emit_metric("DriftRetrainErrors", self.pipeline)
        self.result["outcome"] = outcome
        self.result["problem"] = problem
        self.notify(logic.failure_notification(self.settings, what, problem, **context))
        return self.result


def process(event: Any, settings: logic.Settings, *, s3: Any, sagemaker: Any, sns: Any,
            now: Optional[datetime] = None) -> dict[str, Any]:
    """Handle one event with these clients (tests pass moto's) at ``now`` (default: the current UTC time)."""
    now = now or datetime.now(timezone.utc)
    run = Run(settings, s3=s3, sagemaker=sagemaker, sns=sns)
    try:
        execution = logic.parse_event(event)
        bucket, key = logic.violations_location(execution, settings.reports_bucket, settings.reports_prefix)
    except logic.InputError as exc:
        return run.fail("invalid_input", "the event could not be used", str(exc))
    report = f"s3://{bucket}/{key}"
    run.result.update(monitoring_job=execution.job_name, report=report)

    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in MISSING_OBJECT_CODES:
            return run.fail("invalid_input", "no violations report", f"{report} does not exist", execution=execution)
        return run.fail("error", "the violations report could not be read", f"{report}: {_error_text(exc)}",
                        execution=execution)
    except BotoCoreError as exc:
        return run.fail("error", "the violations report could not be read", f"{report}: {_error_text(exc)}",
                        execution=execution)
    try:
        violations = logic.parse_violations(body, where=report)
    except logic.InputError as exc:
        return run.fail("invalid_input", "the violations report is malformed", str(exc), execution=execution)

    drift = logic.drifted(violations, settings.drift_check_types)
    features = list(dict.fromkeys(v.feature_name for v in drift))
    run.result["features"] = features
    others = [v for v in violations if v not in drift]
    if others:
        emit_metric("NonDriftViolations", run.pipeline, len(others))
        logger.warning("data-quality violations that are not drift (not acted on)", extra={
            "monitoring_job": execution.job_name,
            "violations": [{"feature_name": v.feature_name, "constraint_check_type": v.check_type} for v in others],
        })
    if not drift:
        run.result["outcome"] = "no_drift"
        logger.info("no drift violation; nothing to do", extra={"monitoring_job": execution.job_name})
        return run.result
    emit_metric("DriftDetected", run.pipeline)
    logger.info("drift detected", extra={
        "monitoring_job": execution.job_name, "report": report,
        "drifted": [{"feature_name": v.feature_name, "constraint_check_type": v.check_type} for v in drift],
    })

    try:
        summaries = sagemaker.list_pipeline_executions(
            PipelineName=settings.pipeline_name,
            CreatedAfter=now - settings.cooldown,
            SortBy="CreationTime",
            SortOrder="Descending",
            MaxResults=LIST_PAGE,
        ).get("PipelineExecutionSummaries", [])
    except (ClientError, BotoCoreError) as exc:
        return run.fail("error", "the cooldown could not be checked", _error_text(exc), drift=drift,
                        execution=execution)
    state = logic.cooldown(summaries, now=now, period=settings.cooldown)
    if state.holds:
        emit_metric("RetrainSkippedCooldown", run.pipeline)
        run.result.update(outcome="cooldown", last_execution=state.last_execution,
                          cooldown_until=state.until.isoformat() if state.until else None)
        logger.info("cooldown holds: no retrain", extra={
            "last_execution": state.last_execution, "last_start": state.last_start, "until": state.until,
        })
        if settings.notify_during_cooldown:
            run.notify(logic.cooldown_notification(settings, execution, drift, report, state))
        return run.result

    request = logic.start_request(settings, execution, drift, now)
    try:
        execution_arn = sagemaker.start_pipeline_execution(**request)["PipelineExecutionArn"]
    except (ClientError, BotoCoreError) as exc:
        return run.fail("error", f"pipeline {settings.pipeline_name} could not be started", _error_text(exc),
                        drift=drift, execution=execution)
    emit_metric("RetrainStarted", run.pipeline)
    run.result.update(outcome="started", pipeline_execution_arn=execution_arn)
    logger.info("retraining started", extra={"pipeline_execution_arn": execution_arn,
                                             "display_name": request["PipelineExecutionDisplayName"]})
    run.notify(logic.started_notification(settings, execution, drift, report, execution_arn))
    return run.result


def handler(event: Any, context: Any = None, *, env: Optional[Mapping[str, str]] = None) -> dict[str, Any]:
    """Lambda entry point; never raises (see the module docstring)."""
    env = os.environ if env is None else env
    try:
        settings = logic.Settings.from_env(env)
    except logic.InputError as exc:
        run = Run(None, s3=None, sagemaker=None, sns=_client("sns") if env.get("ALARM_TOPIC_ARN") else None,
                  topic_arn=env.get("ALARM_TOPIC_ARN", ""))
        run.pipeline = env.get("PIPELINE_NAME", "")
        return run.fail("configuration_error", "the function is misconfigured", str(exc))
    try:
        return process(event, settings, s3=_client("s3"), sagemaker=_client("sagemaker"), sns=_client("sns"))
    except Exception as exc:  # noqa: BLE001 - the last resort: report, never crash (the next drift retries)
        logger.exception("unexpected failure")
        run = Run(settings, s3=None, sagemaker=None, sns=_client("sns"))
        return run.fail("error", "unexpected failure", _error_text(exc))
