"""Pure logic of the drift-retraining function: no AWS calls, no I/O, standard library only.

The function receives EventBridge's ``SageMaker Processing Job State Change`` event of a Model Monitor execution that
completed with violations (its ``detail`` is shaped like ``DescribeProcessingJob``'s response: ``ProcessingJobName``,
``ProcessingJobArn``, ``ProcessingJobStatus``, ``ExitMessage``, ``ProcessingOutputConfig``, ``RoleArn``,
``MonitoringScheduleArn``...). Model Monitor's analyzer ends such a job with the exit message
``CompletedWithViolations: Job completed successfully with <n> violations.`` and writes ``constraint_violations.json``
(``{"violations": [{"feature_name", "constraint_check_type", "description"}]}``) to the job's S3 output.

Everything here raises :class:`InputError` (a message for people) on bad input; the handler reports it.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Mapping, Optional, Sequence

VIOLATIONS_FILE = "constraint_violations.json"
EXIT_MESSAGE_PREFIX = "CompletedWithViolations"
#: Model Monitor's check types that mean the inputs' distribution moved (retraining helps). The others
#: (data_type_check, completeness_check, missing_column_check, extra_column_check) mean broken input data, which a
#: retrain on that data would not fix: they are logged, not acted on.
DEFAULT_DRIFT_CHECK_TYPES = ("baseline_drift_check", "categorical_values_check")
KNOWN_CHECK_TYPES = (
    "data_type_check",
    "completeness_check",
    "baseline_drift_check",
    "missing_column_check",
    "extra_column_check",
    "categorical_values_check",
)
MIN_COOLDOWN_SECONDS = 3600
# StartPipelineExecution: display name ^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,81}; description <= 3072; token 32-128 chars.
DISPLAY_NAME_MAX = 82
DESCRIPTION_MAX = 3072
_PARAMETER_NAME = re.compile(r"^[A-Za-z0-9\-_]{1,256}$")
_S3_URI = re.compile(r"^s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/(.*)$")
# SNS: subject <= 100 printable ASCII characters, message <= 256 KB.
SUBJECT_MAX = 100
FEATURES_LISTED_MAX = 50


class InputError(ValueError):
    """The event, the violations report or the configuration is not what the function needs (reported, not raised
    to Lambda)."""


@dataclass(frozen=True)
class Settings:
    """The function's configuration (its environment variables)."""

    pipeline_name: str
    alarm_topic_arn: str
    reports_bucket: str
    reports_prefix: str
    cooldown: timedelta
    pipeline_parameters: Mapping[str, str] = field(default_factory=dict)
    drift_check_types: tuple[str, ...] = DEFAULT_DRIFT_CHECK_TYPES
    notify_during_cooldown: bool = False
    model_name: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "Settings":
        """Read ``PIPELINE_NAME``, ``ALARM_TOPIC_ARN``, ``REPORTS_BUCKET``, ``REPORTS_PREFIX``, ``COOLDOWN_SECONDS``
        and the optional ``PIPELINE_PARAMETERS`` (JSON object), ``DRIFT_CHECK_TYPES`` (comma-separated),
        ``NOTIFY_DURING_COOLDOWN`` (true/false), ``MODEL_NAME``; an :class:`InputError` naming every problem."""
        problems = [f"{name} is not set" for name in ("PIPELINE_NAME", "ALARM_TOPIC_ARN", "REPORTS_BUCKET",
                                                        "REPORTS_PREFIX", "COOLDOWN_SECONDS") if not env.get(name)]
        cooldown_seconds = 0
        raw_cooldown = env.get("COOLDOWN_SECONDS", "")
        if raw_cooldown:
            try:
                cooldown_seconds = int(raw_cooldown)
            except ValueError:
                problems.append(f"COOLDOWN_SECONDS must be an integer number of seconds, got {raw_cooldown!r}")
            else:
                if cooldown_seconds < MIN_COOLDOWN_SECONDS:
                    problems.append(f"COOLDOWN_SECONDS must be at least {MIN_COOLDOWN_SECONDS}, got {cooldown_seconds}")
        parameters: dict[str, str] = {}
        raw_parameters = env.get("PIPELINE_PARAMETERS") or "{}"
        try:
            loaded = json.loads(raw_parameters)
        except ValueError:
            loaded = None
        if not isinstance(loaded, dict) or not all(
            isinstance(k, str) and _PARAMETER_NAME.match(k) and isinstance(v, str) and 0 < len(v) <= 1024
            for k, v in loaded.items()
        ):
            problems.append("PIPELINE_PARAMETERS must be a JSON object of parameter names to non-empty strings, got "
                            f"{raw_parameters[:200]!r}")
        else:
            parameters = loaded
        checks = tuple(c.strip() for c in (env.get("DRIFT_CHECK_TYPES") or ",".join(DEFAULT_DRIFT_CHECK_TYPES))
                       .split(",") if c.strip())
        unknown = [c for c in checks if c not in KNOWN_CHECK_TYPES]
        if unknown or not checks:
            problems.append(f"DRIFT_CHECK_TYPES must be some of {', '.join(KNOWN_CHECK_TYPES)}; got {list(checks)}")
        notify = (env.get("NOTIFY_DURING_COOLDOWN") or "false").strip().lower()
        if notify not in ("true", "false"):
            problems.append(f"NOTIFY_DURING_COOLDOWN must be true or false, got {notify!r}")
        if problems:
            raise InputError("configuration: " + "; ".join(problems))
        return cls(
            pipeline_name=env["PIPELINE_NAME"],
            alarm_topic_arn=env["ALARM_TOPIC_ARN"],
            reports_bucket=env["REPORTS_BUCKET"],
            reports_prefix=env["REPORTS_PREFIX"],
            cooldown=timedelta(seconds=cooldown_seconds),
            pipeline_parameters=parameters,
            drift_check_types=checks,
            notify_during_cooldown=notify == "true",
            model_name=env.get("MODEL_NAME", ""),
        )


@dataclass(frozen=True)
class MonitoringExecution:
    """The Model Monitor execution (a processing job) an event reports."""

    job_name: str
    job_arn: str
    exit_message: str
    output_uris: tuple[str, ...]
    schedule_arn: str = ""
    time: str = ""


@dataclass(frozen=True)
class Violation:
    feature_name: str
    check_type: str
    description: str = ""


@dataclass(frozen=True)
class Cooldown:
    """Whether the cooldown holds: ``last_start`` (and ``last_execution``) is the newest execution within it."""

    holds: bool
    last_start: Optional[datetime] = None
    last_execution: str = ""
    until: Optional[datetime] = None


def parse_event(event: Any) -> MonitoringExecution:
    """The monitoring execution of a ``SageMaker Processing Job State Change`` event that completed with violations."""
    if not isinstance(event, Mapping):
        raise InputError(f"the event is not a JSON object (got {type(event).__name__})")
    detail = event.get("detail")
    if not isinstance(detail, Mapping):
        raise InputError("the event has no 'detail' object (expected a SageMaker Processing Job State Change event)")
    name = detail.get("ProcessingJobName")
    if not isinstance(name, str) or not name:
        raise InputError("the event's detail has no ProcessingJobName")
    status = detail.get("ProcessingJobStatus")
    exit_message = detail.get("ExitMessage") if isinstance(detail.get("ExitMessage"), str) else ""
    if status != "Completed" or not exit_message.startswith(EXIT_MESSAGE_PREFIX):
        raise InputError(
            f"processing job {name} is not a monitoring execution that completed with violations "
            f"(ProcessingJobStatus {status!r}, ExitMessage {exit_message[:120]!r})"
        )
    config = detail.get("ProcessingOutputConfig")
    outputs = config.get("Outputs") if isinstance(config, Mapping) else None
    uris = tuple(
        o["S3Output"]["S3Uri"]
        for o in (outputs if isinstance(outputs, list) else [])
        if isinstance(o, Mapping) and isinstance(o.get("S3Output"), Mapping)
        and isinstance(o["S3Output"].get("S3Uri"), str)
    )
    if not uris:
        raise InputError(f"the event of processing job {name} has no ProcessingOutputConfig.Outputs[].S3Output.S3Uri "
                         "(where the violations report is)")
    arn = detail.get("ProcessingJobArn") if isinstance(detail.get("ProcessingJobArn"), str) else ""
    schedule = detail.get("MonitoringScheduleArn") if isinstance(detail.get("MonitoringScheduleArn"), str) else ""
    return MonitoringExecution(
        job_name=name, job_arn=arn or name, exit_message=exit_message, output_uris=uris, schedule_arn=schedule,
        time=str(event.get("time") or ""),
    )


def split_s3_uri(uri: str) -> tuple[str, str]:
    match = _S3_URI.match(uri)
    if not match:
        raise InputError(f"{uri!r} is not an s3://bucket/key URI")
    return match.group(1), match.group(2)


def violations_location(execution: MonitoringExecution, bucket: str, prefix: str) -> tuple[str, str]:
    """Bucket and key of the execution's ``constraint_violations.json``: in the first output under the reports
    prefix (the only place this function may read)."""
    for uri in execution.output_uris:
        out_bucket, key = split_s3_uri(uri)
        if out_bucket == bucket and (key.rstrip("/") + "/").startswith(prefix):
            return out_bucket, f"{key.rstrip('/')}/{VIOLATIONS_FILE}"
    raise InputError(
        f"no output of processing job {execution.job_name} is under s3://{bucket}/{prefix} (outputs: "
        f"{', '.join(execution.output_uris)}); it is not this monitor's execution"
    )


def parse_violations(raw: bytes | str, *, where: str = VIOLATIONS_FILE) -> list[Violation]:
    """The violations of a ``constraint_violations.json`` document; entries without a feature name or check type
    are an error (the file is Model Monitor's, a partial read would hide drift)."""
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{where} is not valid JSON: {exc}") from None
    entries = document.get("violations") if isinstance(document, Mapping) else None
    if not isinstance(entries, list):
        raise InputError(f"{where} has no 'violations' list")
    violations = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            raise InputError(f"{where}: violations[{i}] is not an object")
        name, check = entry.get("feature_name"), entry.get("constraint_check_type")
        if not isinstance(name, str) or not name or not isinstance(check, str) or not check:
            raise InputError(f"{where}: violations[{i}] lacks feature_name or constraint_check_type")
        description = entry.get("description")
        violations.append(Violation(name, check, description if isinstance(description, str) else ""))
    return violations


def drifted(violations: Iterable[Violation], check_types: Sequence[str]) -> list[Violation]:
    """The violations that are drift (of ``check_types``), in the report's order."""
    return [v for v in violations if v.check_type in check_types]


def _timestamp(value: Any) -> Optional[datetime]:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, tz=timezone.utc)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    return None


def cooldown(summaries: Iterable[Mapping[str, Any]], *, now: datetime, period: timedelta) -> Cooldown:
    """Whether any pipeline execution (whatever started it: drift, new data, schedule, a person) started within
    ``period`` before ``now``. An execution without a readable StartTime counts as recent: never retrain twice on a
    doubt."""
    latest: Optional[tuple[datetime, str]] = None
    for summary in summaries:
        started = _timestamp(summary.get("StartTime"))
        arn = str(summary.get("PipelineExecutionArn") or "")
        if started is None:
            return Cooldown(holds=True, last_start=None, last_execution=arn, until=None)
        if latest is None or started > latest[0]:
            latest = (started, arn)
    if latest is None or now - latest[0] >= period:
        return Cooldown(holds=False, last_start=latest[0] if latest else None,
                        last_execution=latest[1] if latest else "")
    return Cooldown(holds=True, last_start=latest[0], last_execution=latest[1], until=latest[0] + period)


def _features(violations: Sequence[Violation]) -> list[str]:
    """Unique feature names in report order."""
    return list(dict.fromkeys(v.feature_name for v in violations))


def start_request(settings: Settings, execution: MonitoringExecution, drift: Sequence[Violation],
                  now: datetime) -> dict[str, Any]:
    """The keyword arguments of ``StartPipelineExecution``. The client request token derives from the monitoring
    job, so a repeated event (EventBridge may deliver one twice) cannot start a second execution."""
    features = _features(drift)
    description = (
        f"Retrain on data drift: Model Monitor execution {execution.job_name} found drift in "
        f"{len(features)} feature(s): " + ", ".join(f"{v.feature_name} ({v.check_type})" for v in drift)
    )
    if len(description) > DESCRIPTION_MAX:
        description = description[: DESCRIPTION_MAX - 3] + "..."
    token = "drift-" + hashlib.sha256(execution.job_arn.encode()).hexdigest()[:48]
    request: dict[str, Any] = {
        "PipelineName": settings.pipeline_name,
        "PipelineExecutionDisplayName": f"drift-retrain-{now.strftime('%Y%m%dT%H%M%SZ')}"[:DISPLAY_NAME_MAX],
        "PipelineExecutionDescription": description,
        "ClientRequestToken": token,
        "PipelineParameters": [{"Name": k, "Value": v} for k, v in sorted(settings.pipeline_parameters.items())],
    }
    return request


@dataclass(frozen=True)
class Notification:
    subject: str
    message: str


def _subject(text: str) -> str:
    ascii_only = "".join(c if 32 <= ord(c) < 127 else "?" for c in text)
    return ascii_only[: SUBJECT_MAX - 3] + "..." if len(ascii_only) > SUBJECT_MAX else ascii_only


def _feature_lines(drift: Sequence[Violation]) -> list[str]:
    lines = [f"  - {v.feature_name} ({v.check_type}){': ' + v.description if v.description else ''}"
             for v in drift[:FEATURES_LISTED_MAX]]
    if len(drift) > FEATURES_LISTED_MAX:
        lines.append(f"  ... and {len(drift) - FEATURES_LISTED_MAX} more (see the report)")
    return lines


def _who(settings: Settings) -> str:
    return settings.model_name or settings.pipeline_name


def started_notification(settings: Settings, execution: MonitoringExecution, drift: Sequence[Violation],
                         report: str, execution_arn: str) -> Notification:
    features = _features(drift)
    return Notification(
        _subject(f"Drift on {_who(settings)}: retraining started ({len(features)} feature(s))"),
        "\n".join([
            f"Model Monitor found data drift on {_who(settings)} in {len(features)} feature(s):",
            *_feature_lines(drift),
            "",
            f"Action: started pipeline {settings.pipeline_name}, execution {execution_arn}.",
            f"Next retrain on drift: not before {_hours(settings.cooldown)} from now (cooldown).",
            f"Monitoring execution: {execution.job_name}",
            f"Report: {report}",
        ]),
    )


def cooldown_notification(settings: Settings, execution: MonitoringExecution, drift: Sequence[Violation],
                          report: str, state: Cooldown) -> Notification:
    features = _features(drift)
    since = state.last_start.isoformat() if state.last_start else "an unknown time"
    until = state.until.isoformat() if state.until else "unknown"
    return Notification(
        _subject(f"Drift on {_who(settings)}: no retrain, cooldown until {until[:16]}"),
        "\n".join([
            f"Model Monitor found data drift on {_who(settings)} in {len(features)} feature(s):",
            *_feature_lines(drift),
            "",
            f"Action: none. Pipeline {settings.pipeline_name} started an execution at {since} "
            f"({state.last_execution or 'unknown'}), within the {_hours(settings.cooldown)} cooldown (until {until}).",
            f"Monitoring execution: {execution.job_name}",
            f"Report: {report}",
        ]),
    )


def failure_notification(settings: Optional[Settings], what: str, problem: str, *, drift: Sequence[Violation] = (),
                         execution: Optional[MonitoringExecution] = None) -> Notification:
    who = _who(settings) if settings else "a model"
    lines = [f"Drift retraining of {who}: {what}.", f"Problem: {problem}"]
    if drift:
        lines += ["Drifted features:", *_feature_lines(drift)]
    if execution is not None:
        lines.append(f"Monitoring execution: {execution.job_name}")
    lines.append("No pipeline execution was started. The next monitoring execution with drift tries again.")
    return Notification(_subject(f"Drift retraining of {who}: {what}"), "\n".join(lines))


def _hours(period: timedelta) -> str:
    hours = period.total_seconds() / 3600
    return f"{hours:g} h"
