"""Lambda entry point of ground-truth ingestion: handler ``ground_truth_handler.handler`` (Python 3.12, no layer).

Invoked by an EventBridge rule on Amazon S3 ``Object Created`` events under ``UPLOAD_PREFIX`` (the raw bucket's
``ground-truth/<model>/<stage>/``, from the names module). For each uploaded CSV / JSON Lines file of
``inference_id,label`` rows (format: ground_truth_logic) it:

1. checks every row; good rows become Model Monitor ground-truth records, written to
   ``s3://OUTPUT_BUCKET/GROUND_TRUTH_PREFIX yyyy/mm/dd/hh/<name>-<digest>.jsonl`` (the upload's hour, UTC), the
   model-quality schedule's ground-truth input;
2. writes rejected rows, each with its line, reason (``malformed_row``, ``missing_inference_id``,
   ``invalid_inference_id``, ``duplicate_inference_id``, ``invalid_label``) and detail, to
   ``QUARANTINE_PREFIX yyyy/mm/dd/hh/<name>-<digest>.rejected.jsonl``, and always a ``.report.json`` next to it with
   the counts (rows, written, rejected and each reason);
3. optionally (``CAPTURE_PREFIX`` and ``CAPTURE_LOOKBACK_HOURS`` > 0) reads the endpoint's data capture of the
   upload's hour and the hours before it, at most ``MAX_CAPTURE_BYTES``, and counts the inference IDs that match no
   captured request (labels sent too early, IDs of ``model``-mode predictions, typos) and those that match a
   multi-row request. Those rows are still written (their capture may be older than the lookback); the counts say
   whether the check was complete;
4. logs the report and publishes it to ``ALARM_TOPIC_ARN`` when anything needs attention: a rejected row, nothing
   written, an unmatched ID, or a file that could not be ingested at all (not UTF-8, too large, unreadable).

Nothing is dropped silently, and the handler never raises: every problem is logged, counted and published. Output
names derive from the uploaded object's version, so a retried event overwrites what it wrote. Metrics: EMF lines
(namespace ``METRICS_NAMESPACE``, dimensions ``service`` and ``monitor``): ``GroundTruthRows``,
``GroundTruthWritten``, ``GroundTruthRejected``, ``GroundTruthUnmatched``, ``GroundTruthErrors``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from datetime import datetime, timezone
from typing import Any, Mapping, Optional
from urllib.parse import unquote_plus

import boto3
from botocore.exceptions import BotoCoreError, ClientError

import ground_truth_logic as logic

DEFAULT_SERVICE = "ground-truth"
DEFAULT_NAMESPACE = "MLOpsPlatform/GroundTruth"
SERVICE = os.environ.get("SERVICE_NAME") or DEFAULT_SERVICE
NAMESPACE = os.environ.get("METRICS_NAMESPACE") or DEFAULT_NAMESPACE
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
        log.propagate = False
    level = (os.environ.get("LOG_LEVEL") or "INFO").upper()
    log.setLevel(level if level in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL") else "INFO")
    return log


logger = _logger()


def emit_metrics(monitor: str, values: Mapping[str, float]) -> None:
    """One CloudWatch embedded-metric-format line (CloudWatch Logs extracts the metrics; no API call)."""
    print(json.dumps({
        "_aws": {
            "Timestamp": int(time.time() * 1000),
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["service", "monitor"]],
                "Metrics": [{"Name": name, "Unit": "Count"} for name in values],
            }],
        },
        "service": SERVICE,
        "monitor": monitor or "unknown",
        **values,
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


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class Run:
    """One invocation: settings, clients and the report (the handler's result)."""

    def __init__(self, settings: Optional[logic.Settings], *, s3: Any, sns: Any, topic_arn: str = "") -> None:
        self.settings = settings
        self.s3, self.sns = s3, sns
        self.topic_arn = settings.alarm_topic_arn if settings else topic_arn
        self.monitor = settings.name if settings else ""
        self.report: dict[str, Any] = {"outcome": None, "notified": False}

    def notify(self) -> None:
        note = logic.notification(self.settings, self.report)
        if not self.topic_arn:
            logger.warning("no alarm topic configured; notification not sent", extra={"subject": note.subject})
            return
        try:
            self.sns.publish(TopicArn=self.topic_arn, Subject=note.subject, Message=note.message)
            self.report["notified"] = True
        except (ClientError, BotoCoreError) as exc:
            logger.error("could not publish to the alarm topic",
                         extra={"error": _error_text(exc), "subject": note.subject, "notification": note.message})

    def fail(self, outcome: str, problem: str) -> dict[str, Any]:
        logger.error(f"ground truth not ingested: {problem}", extra={"outcome": outcome,
                                                                     "upload": self.report.get("upload")})
        emit_metrics(self.monitor, {"GroundTruthErrors": 1})
        self.report.update(outcome=outcome, problem=problem)
        self.notify()
        return self.report


def _read_upload(s3: Any, upload: logic.Upload) -> bytes:
    """The uploaded object (the event's version). Keys are taken as sent, then URL-decoded if that one is missing."""
    candidates = [upload.key]
    decoded = unquote_plus(upload.key)
    if decoded != upload.key:
        candidates.append(decoded)
    last: Optional[ClientError] = None
    for key in candidates:
        request = {"Bucket": upload.bucket, "Key": key}
        if upload.version_id:
            request["VersionId"] = upload.version_id
        try:
            return s3.get_object(**request)["Body"].read()
        except ClientError as exc:
            if _code(exc) not in MISSING_OBJECT_CODES:
                raise
            last = exc
    assert last is not None
    raise last


def _put(s3: Any, bucket: str, key: str, body: bytes, content_type: str) -> None:
    # Default encryption of the bucket (SSE-KMS with the lake key) applies; the role may use that key.
    s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)


def _capture_index(s3: Any, settings: logic.Settings, upload: logic.Upload) -> logic.CaptureIndex:
    """Read the data capture of the checked hours: ``<CAPTURE_PREFIX><endpoint>/<variant>/yyyy/mm/dd/hh/``."""
    index = logic.CaptureIndex()
    hours = logic.capture_hours(upload.time, settings.capture_lookback_hours)
    index.hours = len(hours)
    paginator = s3.get_paginator("list_objects_v2")
    bucket, prefix = settings.output_bucket, settings.capture_prefix
    variants: list[str] = []
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
        for endpoint in page.get("CommonPrefixes", []):
            for inner in paginator.paginate(Bucket=bucket, Prefix=endpoint["Prefix"], Delimiter="/"):
                variants += [v["Prefix"] for v in inner.get("CommonPrefixes", [])]
    for variant in variants:
        for hour in hours:
            for page in paginator.paginate(Bucket=bucket, Prefix=f"{variant}{hour}"):
                for obj in page.get("Contents", []):
                    if index.bytes + int(obj.get("Size", 0)) > settings.max_capture_bytes:
                        index.complete = False
                        return index
                    index.add_file(s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read())
    return index


def process(event: Any, settings: logic.Settings, *, s3: Any, sns: Any) -> dict[str, Any]:
    """Ingest one upload with these clients (tests pass moto's)."""
    run = Run(settings, s3=s3, sns=sns)
    try:
        upload = logic.parse_event(event)
    except logic.InputError as exc:
        return run.fail("invalid_input", f"the event could not be used: {exc}")
    run.report["upload"] = f"s3://{upload.bucket}/{upload.key}"
    if not upload.key.startswith(settings.upload_prefix) and not unquote_plus(upload.key).startswith(
            settings.upload_prefix):
        run.report["outcome"] = "ignored"
        logger.warning("object outside the upload prefix: ignored",
                       extra={"upload": run.report["upload"], "upload_prefix": settings.upload_prefix})
        return run.report
    if upload.key.endswith("/"):
        run.report["outcome"] = "ignored"
        logger.info("folder marker: ignored", extra={"upload": run.report["upload"]})
        return run.report
    where = logic.locations(settings, upload)
    if upload.size is not None and upload.size > settings.max_upload_bytes:
        return run.fail("invalid_input", f"the file has {upload.size} bytes, more than the {settings.max_upload_bytes} "
                                         "allowed: split it into smaller uploads")
    try:
        body = _read_upload(s3, upload)
    except (ClientError, BotoCoreError) as exc:
        return run.fail("error", f"the upload could not be read: {_error_text(exc)}")
    if len(body) > settings.max_upload_bytes:
        return run.fail("invalid_input", f"the file has {len(body)} bytes, more than the {settings.max_upload_bytes} "
                                         "allowed: split it into smaller uploads")
    try:
        result = logic.ingest(body, upload.key, settings.problem_type)
    except logic.InputError as exc:
        return run.fail("invalid_input", str(exc))

    counts = result.counts()
    run.report.update(counts=counts, format=result.file_format,
                      rejected_sample=[r.to_json() for r in result.rejected[:logic.SAMPLE]])
    if not result.rows:
        run.report["problem"] = "the file has no rows: upload inference_id,label lines"
    try:
        if result.records:
            _put(s3, settings.output_bucket, where.ground_truth, logic.to_jsonl(result.records), "application/jsonl")
            run.report["ground_truth"] = f"s3://{settings.output_bucket}/{where.ground_truth}"
        if result.rejected:
            _put(s3, settings.output_bucket, where.rejected,
                 logic.to_jsonl([r.to_json() for r in result.rejected]), "application/jsonl")
            run.report["rejected"] = f"s3://{settings.output_bucket}/{where.rejected}"
    except (ClientError, BotoCoreError) as exc:
        return run.fail("error", f"the ground truth could not be written: {_error_text(exc)} (counts: {counts})")

    unmatched = 0
    if settings.checks_captures and result.records:
        try:
            index = _capture_index(s3, settings, upload)
            run.report["captures"] = logic.capture_check(result.ids, index)
            unmatched = run.report["captures"]["unmatched_inference_id"]
        except (ClientError, BotoCoreError) as exc:
            run.report["captures"] = {"checked": False, "problem": _error_text(exc)}
            logger.error("the capture check failed", extra={"error": _error_text(exc)})

    run.report["report"] = f"s3://{settings.output_bucket}/{where.report}"
    run.report["outcome"] = "ingested" if result.records else "nothing_written"
    try:
        _put(s3, settings.output_bucket, where.report,
             json.dumps({k: v for k, v in run.report.items() if k != "notified"}, indent=2).encode(),
             "application/json")
    except (ClientError, BotoCoreError) as exc:
        logger.error("the ingestion report could not be written", extra={"error": _error_text(exc)})
        run.report.pop("report", None)

    emit_metrics(run.monitor, {"GroundTruthRows": counts["rows"], "GroundTruthWritten": counts["written"],
                               "GroundTruthRejected": counts["rejected"], "GroundTruthUnmatched": unmatched})
    attention = logic.needs_attention(run.report)
    log = logger.warning if attention else logger.info
    log("ground truth ingested", extra={k: v for k, v in run.report.items() if k != "notified"})
    if attention:
        run.notify()
    return run.report


def handler(event: Any, context: Any = None, *, env: Optional[Mapping[str, str]] = None) -> dict[str, Any]:
    """Lambda entry point; never raises (see the module docstring)."""
    env = os.environ if env is None else env
    try:
        settings = logic.Settings.from_env(env)
    except logic.InputError as exc:
        run = Run(None, s3=None, sns=_client("sns") if env.get("ALARM_TOPIC_ARN") else None,
                  topic_arn=env.get("ALARM_TOPIC_ARN", ""))
        run.monitor = env.get("MONITOR_NAME", "")
        return run.fail("configuration_error", f"the function is misconfigured: {exc}")
    try:
        return process(event, settings, s3=_client("s3"), sns=_client("sns"))
    except Exception as exc:  # noqa: BLE001 - the last resort: report, never crash
        logger.exception("unexpected failure")
        run = Run(settings, s3=None, sns=_client("sns"))
        return run.fail("error", f"unexpected failure: {_error_text(exc)}")
