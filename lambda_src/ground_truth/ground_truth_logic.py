"""Ground-truth ingestion, the pure part: uploaded ``inference_id,label`` rows -> Model Monitor's ground-truth records,
with every rejected row kept with its reason and every count reported. No AWS call here (see ground_truth_handler).

Upload format (CSV or JSON Lines, UTF-8, an optional BOM):

- CSV (``.csv``, or any file whose first character is not ``{``): ``inference_id,label`` per line, an optional
  header line ``inference_id,label``; RFC 4180 quoting.
- JSON Lines (``.jsonl`` / ``.json``, or a first character ``{``): ``{"inference_id": "...", "label": ...}`` per line.

``inference_id`` is what the inference function returned (1-64 printable ASCII characters, no space at either end).
``label``: a finite number for ``regression``; ``0`` or ``1`` (also ``"0"``/``"1"``, ``0.0``/``1.0``,
``true``/``false``) for ``binary_classification``.

Output (SageMaker docs, "Ingest Ground Truth labels and merge them with predictions"): one JSON object per line,
``{"groundTruthData": {"data": "<label>", "encoding": "CSV"}, "eventMetadata": {"eventId": "<inference id>"},
"eventVersion": "0"}``, in a ``.jsonl`` object under ``<prefix>yyyy/mm/dd/hh/``: the hour the labels were collected
(the upload's event time), which need not be the hour of the inference.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterator, Mapping, Optional

PROBLEM_TYPES = ("regression", "binary_classification")
MAX_ID_LENGTH = 64
_VALID_ID = re.compile(r"^[!-~](?:[ -~]*[!-~])?$")
HEADER = ("inference_id", "label")
EVENT_VERSION = "0"
#: Reasons a row is rejected (the quarantine's ``reason`` and the report's counts).
REASONS = ("malformed_row", "missing_inference_id", "invalid_inference_id", "duplicate_inference_id", "invalid_label")
MAX_REJECTED_TEXT = 300
SAMPLE = 10
DEFAULT_MAX_UPLOAD_BYTES = 100 * 1024 * 1024
DEFAULT_MAX_CAPTURE_BYTES = 256 * 1024 * 1024


class InputError(ValueError):
    """The event, the upload or the configuration cannot be used; the message says why."""


# --------------------------------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------------------------------
def _prefix(env: Mapping[str, str], name: str, required: bool = True) -> str:
    value = (env.get(name) or "").strip()
    if not value:
        if required:
            raise InputError(f"{name} is not set")
        return ""
    if not value.endswith("/") or value.startswith("/"):
        raise InputError(f"{name} must be a key prefix ending in '/', got {value!r}")
    return value


def _non_negative_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise InputError(f"{name} must be a whole number >= 0, got {raw!r}")
    return value


@dataclass(frozen=True)
class Settings:
    """The function's environment (set by the ModelQualityMonitor construct)."""

    upload_prefix: str
    output_bucket: str
    ground_truth_prefix: str
    quarantine_prefix: str
    problem_type: str
    alarm_topic_arn: str = ""
    capture_prefix: str = ""
    capture_lookback_hours: int = 0
    max_capture_bytes: int = DEFAULT_MAX_CAPTURE_BYTES
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    name: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "Settings":
        problem_type = (env.get("PROBLEM_TYPE") or "").strip()
        if problem_type not in PROBLEM_TYPES:
            raise InputError(f"PROBLEM_TYPE must be one of {', '.join(PROBLEM_TYPES)}, got {problem_type!r}")
        bucket = (env.get("OUTPUT_BUCKET") or "").strip()
        if not bucket:
            raise InputError("OUTPUT_BUCKET is not set")
        settings = cls(
            upload_prefix=_prefix(env, "UPLOAD_PREFIX"),
            output_bucket=bucket,
            ground_truth_prefix=_prefix(env, "GROUND_TRUTH_PREFIX"),
            quarantine_prefix=_prefix(env, "QUARANTINE_PREFIX"),
            problem_type=problem_type,
            alarm_topic_arn=(env.get("ALARM_TOPIC_ARN") or "").strip(),
            capture_prefix=_prefix(env, "CAPTURE_PREFIX", required=False),
            capture_lookback_hours=_non_negative_int(env, "CAPTURE_LOOKBACK_HOURS", 0),
            max_capture_bytes=_non_negative_int(env, "MAX_CAPTURE_BYTES", DEFAULT_MAX_CAPTURE_BYTES),
            max_upload_bytes=_non_negative_int(env, "MAX_UPLOAD_BYTES", DEFAULT_MAX_UPLOAD_BYTES),
            name=(env.get("MONITOR_NAME") or "").strip(),
        )
        for label, prefix in (("GROUND_TRUTH_PREFIX", settings.ground_truth_prefix),
                              ("QUARANTINE_PREFIX", settings.quarantine_prefix)):
            if prefix.startswith(settings.upload_prefix) or settings.upload_prefix.startswith(prefix):
                raise InputError(f"{label} {prefix!r} overlaps UPLOAD_PREFIX {settings.upload_prefix!r}: the "
                                 "function would ingest its own output")
        return settings

    @property
    def checks_captures(self) -> bool:
        return bool(self.capture_prefix and self.capture_lookback_hours)


# --------------------------------------------------------------------------------------------------------------------
# The event
# --------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Upload:
    bucket: str
    key: str
    version_id: str
    etag: str
    size: Optional[int]
    time: datetime


def parse_event(event: Any) -> Upload:
    """An EventBridge ``Object Created`` event of Amazon S3."""
    if not isinstance(event, dict) or event.get("source") != "aws.s3" or event.get("detail-type") != "Object Created":
        raise InputError("not an S3 'Object Created' EventBridge event")
    detail = event.get("detail")
    bucket = detail.get("bucket", {}).get("name") if isinstance(detail, dict) else None
    obj = detail.get("object") if isinstance(detail, dict) else None
    if not isinstance(bucket, str) or not bucket or not isinstance(obj, dict) or not isinstance(obj.get("key"), str):
        raise InputError("the event has no detail.bucket.name or detail.object.key")
    try:
        when = datetime.strptime(str(event.get("time")), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        raise InputError(f"the event time {event.get('time')!r} is not YYYY-MM-DDTHH:MM:SSZ") from None
    size = obj.get("size")
    return Upload(bucket=bucket, key=obj["key"], version_id=str(obj.get("version-id") or ""),
                  etag=str(obj.get("etag") or ""), size=size if isinstance(size, int) else None, time=when)


# --------------------------------------------------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------------------------------------------------
@dataclass
class Rejected:
    line: int
    reason: str
    detail: str
    text: str

    def to_json(self) -> dict[str, Any]:
        return {"line": self.line, "reason": self.reason, "detail": self.detail, "row": self.text}


@dataclass
class Ingested:
    """What one upload gave: the Model Monitor records, the rejected rows and the counts."""

    records: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    rows: int = 0
    file_format: str = ""

    @property
    def ids(self) -> list[str]:
        return [r["eventMetadata"]["eventId"] for r in self.records]

    def counts(self) -> dict[str, int]:
        by_reason = Counter(r.reason for r in self.rejected)
        return {"rows": self.rows, "written": len(self.records), "rejected": len(self.rejected),
                **{reason: by_reason.get(reason, 0) for reason in REASONS}}


def _short(text: str) -> str:
    return text if len(text) <= MAX_REJECTED_TEXT else text[: MAX_REJECTED_TEXT - 3] + "..."


def check_inference_id(value: Any) -> tuple[Optional[str], Optional[tuple[str, str]]]:
    """(the ID, None) or (None, (reason, detail))."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None, ("missing_inference_id", "no inference_id: send the inference_id the prediction returned")
    if not isinstance(value, str):
        return None, ("invalid_inference_id", f"inference_id must be a string, got {type(value).__name__}")
    if len(value) > MAX_ID_LENGTH:
        return None, ("invalid_inference_id", f"inference_id has {len(value)} characters; at most {MAX_ID_LENGTH}")
    if not _VALID_ID.match(value):
        return None, ("invalid_inference_id",
                      "inference_id must be printable ASCII without a space at either end")
    return value, None


def format_label(value: Any, problem_type: str) -> tuple[Optional[str], Optional[str]]:
    """(the label as Model Monitor's CSV data, None) or (None, why it is not a label of this problem type)."""
    if isinstance(value, str):
        value = value.strip()
        if problem_type == "binary_classification" and value.lower() in ("true", "false"):
            value = value.lower() == "true"
    if value is None or value == "":
        return None, "no label"
    if problem_type == "binary_classification":
        if isinstance(value, bool):
            return ("1" if value else "0"), None
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = None
        if number in (0.0, 1.0):
            return str(int(number)), None
        return None, f"binary_classification labels are 0 or 1, got {_short(repr(value))}"
    if isinstance(value, bool):
        return None, f"regression labels are numbers, got {value!r}"
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None, f"regression labels are numbers, got {_short(repr(value))}"
    if not math.isfinite(number):
        return None, f"regression labels are finite numbers, got {_short(repr(value))}"
    return repr(number), None


def record(inference_id: str, label: str) -> dict[str, Any]:
    """One Model Monitor ground-truth record."""
    return {
        "groundTruthData": {"data": label, "encoding": "CSV"},
        "eventMetadata": {"eventId": inference_id},
        "eventVersion": EVENT_VERSION,
    }


def _decode(body: bytes) -> str:
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"the file is not UTF-8 text (byte {exc.start}): upload UTF-8 CSV or JSON Lines") from None


def detect_format(key: str, text: str) -> str:
    lowered = key.lower()
    if lowered.endswith((".jsonl", ".json", ".ndjson")):
        return "jsonl"
    if lowered.endswith(".csv"):
        return "csv"
    return "jsonl" if text.lstrip()[:1] == "{" else "csv"


def _csv_rows(text: str) -> Iterator[tuple[int, str, Any, Any, Optional[str]]]:
    """(line, raw text, inference_id, label, problem) per non-blank line; a header line is skipped."""
    lines = text.splitlines()
    first = True
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            cells = next(csv.reader([line]))
        except csv.Error as exc:
            yield number, line, None, None, f"not a CSV line: {exc}"
            continue
        cells = [c.strip() for c in cells]
        if first:
            first = False
            if tuple(c.lower() for c in cells) == HEADER:
                continue
        if len(cells) != 2:
            yield number, line, None, None, f"expected 2 columns (inference_id,label), got {len(cells)}"
            continue
        yield number, line, cells[0], cells[1], None


def _jsonl_rows(text: str) -> Iterator[tuple[int, str, Any, Any, Optional[str]]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except (ValueError, RecursionError) as exc:
            yield number, line, None, None, f"not a JSON object: {exc}"
            continue
        if not isinstance(doc, dict):
            yield number, line, None, None, 'expected an object {"inference_id": ..., "label": ...}'
            continue
        unknown = sorted(set(doc) - set(HEADER))
        if unknown:
            yield number, line, None, None, f"unknown field(s) {unknown[:5]}; only inference_id and label"
            continue
        if "label" not in doc:
            yield number, line, doc.get("inference_id"), "", None
            continue
        yield number, line, doc.get("inference_id"), doc["label"], None


def ingest(body: bytes, key: str, problem_type: str) -> Ingested:
    """Parse and check an upload; raises :class:`InputError` only for a file that is not text."""
    text = _decode(body)
    result = Ingested(file_format=detect_format(key, text))
    seen: set[str] = set()
    rows = _jsonl_rows(text) if result.file_format == "jsonl" else _csv_rows(text)
    for number, line, raw_id, raw_label, problem in rows:
        result.rows += 1
        if problem:
            result.rejected.append(Rejected(number, "malformed_row", problem, _short(line)))
            continue
        inference_id, id_problem = check_inference_id(raw_id)
        if id_problem:
            result.rejected.append(Rejected(number, id_problem[0], id_problem[1], _short(line)))
            continue
        label, label_problem = format_label(raw_label, problem_type)
        if label_problem:
            result.rejected.append(Rejected(number, "invalid_label", label_problem, _short(line)))
            continue
        if inference_id in seen:
            result.rejected.append(Rejected(number, "duplicate_inference_id",
                                            "this inference_id has a label earlier in the file", _short(line)))
            continue
        seen.add(inference_id)
        result.records.append(record(inference_id, label))
    return result


def to_jsonl(items: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(item, separators=(",", ":")) + "\n" for item in items).encode("utf-8")


# --------------------------------------------------------------------------------------------------------------------
# Where things go
# --------------------------------------------------------------------------------------------------------------------
def hour_path(when: datetime) -> str:
    """Model Monitor's ``yyyy/mm/dd/hh/`` (UTC)."""
    return when.astimezone(timezone.utc).strftime("%Y/%m/%d/%H/")


def output_stem(upload: Upload) -> str:
    """A name per uploaded object version: a retried event overwrites what it wrote, another upload never does."""
    base = upload.key.rsplit("/", 1)[-1]
    base = re.sub(r"[^A-Za-z0-9._-]", "_", base.rsplit(".", 1)[0] if "." in base else base)[:60] or "upload"
    digest = hashlib.sha256(
        f"{upload.bucket}/{upload.key}\0{upload.version_id}\0{upload.etag}".encode("utf-8")
    ).hexdigest()[:16]
    return f"{base}-{digest}"


@dataclass(frozen=True)
class Locations:
    ground_truth: str
    rejected: str
    report: str


def locations(settings: Settings, upload: Upload) -> Locations:
    stem = output_stem(upload)
    hour = hour_path(upload.time)
    return Locations(
        ground_truth=f"{settings.ground_truth_prefix}{hour}{stem}.jsonl",
        rejected=f"{settings.quarantine_prefix}{hour}{stem}.rejected.jsonl",
        report=f"{settings.quarantine_prefix}{hour}{stem}.report.json",
    )


# --------------------------------------------------------------------------------------------------------------------
# Captured predictions (optional check)
# --------------------------------------------------------------------------------------------------------------------
@dataclass
class CaptureIndex:
    """Inference IDs seen in the endpoint's data capture of the checked hours, with each capture's row count."""

    rows_by_id: dict[str, int] = field(default_factory=dict)
    files: int = 0
    bytes: int = 0
    complete: bool = True
    hours: int = 0

    def add_file(self, body: bytes) -> None:
        self.files += 1
        self.bytes += len(body)
        for line in body.decode("utf-8", errors="replace").splitlines():
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            meta = doc.get("eventMetadata") if isinstance(doc, dict) else None
            inference_id = meta.get("inferenceId") if isinstance(meta, dict) else None
            if not isinstance(inference_id, str):
                continue
            output = ((doc.get("captureData") or {}).get("endpointOutput") or {})
            self.rows_by_id[inference_id] = _output_rows(output)


def _output_rows(output: Mapping[str, Any]) -> int:
    """How many predictions a captured response holds (CSV lines, or a JSON predictions list); 1 when unknown."""
    data = output.get("data")
    if not isinstance(data, str):
        return 1
    if str(output.get("encoding", "")).upper() == "BASE64":
        import base64
        try:
            data = base64.b64decode(data).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return 1
    text = data.strip()
    if text[:1] in ("{", "["):
        try:
            doc = json.loads(text)
        except ValueError:
            return 1
        predictions = doc.get("predictions") if isinstance(doc, dict) else doc
        return len(predictions) if isinstance(predictions, list) and predictions else 1
    return max(1, len([line for line in text.splitlines() if line.strip()]))


def capture_hours(upload_time: datetime, lookback_hours: int) -> list[str]:
    """``yyyy/mm/dd/hh/`` of the upload's hour and the ``lookback_hours`` before it, newest first."""
    from datetime import timedelta

    base = upload_time.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)
    return [hour_path(base - timedelta(hours=h)) for h in range(lookback_hours + 1)]


def capture_check(ids: list[str], index: CaptureIndex) -> dict[str, Any]:
    unmatched = [i for i in ids if i not in index.rows_by_id]
    multi = [i for i in ids if index.rows_by_id.get(i, 1) > 1]
    return {
        "checked": True,
        "complete": index.complete,
        "hours": index.hours,
        "capture_files": index.files,
        "unmatched_inference_id": len(unmatched),
        "unmatched_sample": unmatched[:SAMPLE],
        "multi_row_request": len(multi),
        "multi_row_sample": multi[:SAMPLE],
    }


# --------------------------------------------------------------------------------------------------------------------
# Report and notification
# --------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Notification:
    subject: str
    message: str


def needs_attention(report: Mapping[str, Any]) -> bool:
    counts = report.get("counts") or {}
    captures = report.get("captures") or {}
    return bool(report.get("problem") or counts.get("rejected") or not counts.get("written")
                or captures.get("unmatched_inference_id") or captures.get("multi_row_request"))


def notification(settings: Optional[Settings], report: Mapping[str, Any]) -> Notification:
    """A short subject (SNS: at most 100 characters) and a readable message with the counts and where to look."""
    name = (settings.name if settings else "") or "ground truth"
    counts = report.get("counts") or {}
    if report.get("problem"):
        subject = f"Ground truth {name}: upload not ingested"
    else:
        subject = (f"Ground truth {name}: {counts.get('rejected', 0)} of {counts.get('rows', 0)} rows rejected")
    lines = [f"Upload: {report.get('upload', '?')}"]
    if report.get("problem"):
        lines.append(f"Problem: {report['problem']}")
    if counts:
        lines.append("Counts: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    captures = report.get("captures") or {}
    if captures.get("checked"):
        lines.append(
            f"Capture check ({captures.get('hours')} h, {'complete' if captures.get('complete') else 'partial'}): "
            f"{captures.get('unmatched_inference_id', 0)} inference IDs match no captured request "
            f"(sample {captures.get('unmatched_sample')}), {captures.get('multi_row_request', 0)} match a multi-row "
            "request (Model Monitor joins one label per request)"
        )
    for label in ("ground_truth", "rejected", "report"):
        if report.get(label):
            lines.append(f"{label.replace('_', ' ').capitalize()}: {report[label]}")
    sample = report.get("rejected_sample") or []
    if sample:
        lines.append("First rejected rows:")
        lines += [f"  line {r['line']}: {r['reason']}: {r['detail']}" for r in sample]
    return Notification(subject=_short(subject)[:100], message="\n".join(lines))
