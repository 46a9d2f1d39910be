"""Lambda entry point of batch inference's first step: handler ``batch_resolve.handler`` (Python 3.12, no layer).

The batch inference state machine (``mlops_constructs.batch_inference``) invokes it once per execution with::

    {"execution_name": "<$$.Execution.Name>", "start_time": "<$$.Execution.StartTime>", "input": <execution input>}

``input`` is what started the execution: ``{"trigger": "schedule"}``, ``{"trigger": "etl", "glue_job_run_id": ...}``
(the rules the construct creates) or a person's ``{"partition": "YYYY-MM-DD"}`` to score one given curated partition
(``ingest_date``). It returns the run's plan, which the next states read::

    {"action": "score", "reason": null, "trigger": "schedule", "run_id": "20240502-040000-3f2a9c",
     "dt": "2024-05-02", "partition": "2024-05-01",
     "package": {"arn": ..., "version": 4, "image": ..., "model_data_url": "s3://.../model.tar.gz",
                 "environment": {"SAGEMAKER_PROGRAM": "serve.py", ...}},
     "jobs": {"prepare": ..., "transform": ..., "collect": ..., "model": ...},
     "s3": {"partition": "s3://<curated>/<dataset>/ingest_date=2024-05-01/", "model_data": ..., "code": ...,
            "transform_input": ..., "rows": ..., "transform_output": ..., "report": ..., "predictions": ...}}

or ``{"action": "skip", "reason": "..."}`` when there is nothing to score yet: no Approved package in the group (the
first runs before an approval) or no curated partition (the dataset's ETL has not run). A schedule that starts before
the first approval must not raise the failure alarm every day; the state machine ends such a run with Succeed.

Everything else raises (the state machine fails, its alarm notifies): a missing group, a given partition that does not
exist, a package whose model data is outside the model's artifacts prefix (the transform's role reads that prefix
only) or without an image, a bad input. "Latest approved" is the rule of the deploy CD
(``cicd_scripts/resolve_approved_package.py``): the most recently created package whose status is Approved.

Environment: ``MODEL_PACKAGE_GROUP``, ``CURATED_BUCKET``, ``CURATED_PREFIX`` (the dataset's, ending ``/``),
``MODEL_DATA_PREFIX`` (``s3://<artifacts>/models/<model>/``), ``WORK_BUCKET``, ``WORK_PREFIX`` (``batch/<model>/``),
``PREDICTIONS_BUCKET``, ``PREDICTIONS_PREFIX`` (``predictions/<model>/``), ``JOB_NAME_PREFIX`` (at most 30
characters), ``CODE_URI`` (the scoring script's S3 URI, passed through), ``LOG_LEVEL``. Standard library and the
runtime's boto3 only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from datetime import date, datetime, timezone
from typing import Any, Mapping, Optional

import boto3
from botocore.exceptions import ClientError

APPROVED = "Approved"
PARTITION_KEY = "ingest_date"
PARTITION_RE = re.compile(r"^" + PARTITION_KEY + r"=(\d{4}-\d{2}-\d{2})/$")
MAX_JOB_NAME = 63
MAX_JOB_NAME_PREFIX = 30
JOB_KINDS = {"prepare": "prep", "transform": "score", "collect": "post", "model": "model"}
SKIP = "skip"
SCORE = "score"
ENV_KEYS = ("MODEL_PACKAGE_GROUP", "CURATED_BUCKET", "CURATED_PREFIX", "MODEL_DATA_PREFIX", "WORK_BUCKET",
            "WORK_PREFIX", "PREDICTIONS_BUCKET", "PREDICTIONS_PREFIX", "JOB_NAME_PREFIX", "CODE_URI")

logger = logging.getLogger("batch_resolve")
logger.setLevel(os.environ.get("LOG_LEVEL", "INFO"))


class BatchResolveError(ValueError):
    """A configuration or input problem: the execution fails with this message."""


class Settings:
    """The function's environment, checked once."""

    def __init__(self, env: Mapping[str, str]) -> None:
        missing = [k for k in ENV_KEYS if not env.get(k)]
        if missing:
            raise BatchResolveError(f"batch_resolve: environment variable(s) {missing} are not set")
        self.group = env["MODEL_PACKAGE_GROUP"]
        self.curated_bucket = env["CURATED_BUCKET"]
        self.curated_prefix = env["CURATED_PREFIX"]
        self.model_data_prefix = env["MODEL_DATA_PREFIX"]
        self.work_bucket = env["WORK_BUCKET"]
        self.work_prefix = env["WORK_PREFIX"]
        self.predictions_bucket = env["PREDICTIONS_BUCKET"]
        self.predictions_prefix = env["PREDICTIONS_PREFIX"]
        self.job_name_prefix = env["JOB_NAME_PREFIX"]
        self.code_uri = env["CODE_URI"]
        for name in ("CURATED_PREFIX", "MODEL_DATA_PREFIX", "WORK_PREFIX", "PREDICTIONS_PREFIX"):
            if not env[name].endswith("/"):
                raise BatchResolveError(f"batch_resolve: {name} must end with '/', got {env[name]!r}")
        if not re.match(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,29}$", self.job_name_prefix):
            raise BatchResolveError(f"batch_resolve: JOB_NAME_PREFIX must be 1-{MAX_JOB_NAME_PREFIX} letters, digits "
                                    f"and '-', got {self.job_name_prefix!r}")


# --- the run ---------------------------------------------------------------------------------------------------
def parse_start_time(value: Any) -> datetime:
    """``$$.Execution.StartTime`` (ISO 8601, UTC, e.g. ``2024-05-02T04:00:00.123Z``) as an aware datetime."""
    if not isinstance(value, str) or not value:
        raise BatchResolveError(f"start_time must be the execution's ISO 8601 start time, got {value!r}")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BatchResolveError(f"start_time is not an ISO 8601 time: {value!r}") from None
    return parsed.astimezone(timezone.utc) if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def run_id(execution_name: str, start: datetime) -> str:
    """``YYYYMMDD-HHMMSS-<6 hex of the execution name>``: sortable, unique per execution, valid in job names and S3
    keys. A retried state of the same execution gets the same id (and the same job names)."""
    if not isinstance(execution_name, str) or not execution_name:
        raise BatchResolveError(f"execution_name must be the execution's name, got {execution_name!r}")
    digest = hashlib.sha256(execution_name.encode()).hexdigest()[:6]
    return f"{start:%Y%m%d-%H%M%S}-{digest}"


def job_names(prefix: str, run: str) -> dict[str, str]:
    """The run's SageMaker job and model names, ``<prefix>-<kind>-<run id>`` (at most 63 characters)."""
    names = {step: f"{prefix}-{kind}-{run}" for step, kind in JOB_KINDS.items()}
    too_long = [n for n in names.values() if len(n) > MAX_JOB_NAME]
    if too_long:
        raise BatchResolveError(f"job names {too_long} exceed {MAX_JOB_NAME} characters; shorten JOB_NAME_PREFIX")
    return names


def requested_partition(payload: Mapping[str, Any]) -> Optional[str]:
    """The partition a person asked for (``{"partition": "YYYY-MM-DD"}``), validated; None when not given."""
    value = payload.get("partition")
    if value is None:
        return None
    try:
        return date.fromisoformat(str(value)).isoformat()
    except ValueError:
        raise BatchResolveError(f"input partition must be an ingest date YYYY-MM-DD, got {value!r}") from None


# --- the curated partition -------------------------------------------------------------------------------------
def partitions(s3: Any, bucket: str, prefix: str) -> list[str]:
    """Every ``ingest_date`` of the dataset's curated prefix, sorted (S3 lists a prefix only while it holds objects)."""
    found = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
        for common in page.get("CommonPrefixes", []):
            match = PARTITION_RE.match(common["Prefix"][len(prefix):])
            if match:
                found.append(match.group(1))
    return sorted(found)


def partition_has_data(s3: Any, bucket: str, prefix: str) -> bool:
    return bool(s3.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1).get("KeyCount", 0))


# --- the approved package (the deploy CD's rule) ---------------------------------------------------------------
def latest_approved(sm: Any, group: str) -> Optional[dict[str, Any]]:
    """The describe_model_package response of the newest Approved version of ``group`` (every page; newest creation
    time, then highest version), or None. A missing group raises :class:`BatchResolveError`."""
    try:
        sm.describe_model_package_group(ModelPackageGroupName=group)
    except ClientError as exc:
        message = exc.response.get("Error", {}).get("Message", "")
        if "does not exist" in message or exc.response.get("Error", {}).get("Code") == "ResourceNotFound":
            raise BatchResolveError(f"model package group '{group}' does not exist; the model stack creates it and "
                                    "the model build pipeline registers versions in it") from None
        raise
    best, best_key = None, None
    pages = sm.get_paginator("list_model_packages").paginate(
        ModelPackageGroupName=group, ModelApprovalStatus=APPROVED, SortBy="CreationTime", SortOrder="Descending"
    )
    for page in pages:
        for summary in page.get("ModelPackageSummaryList", []):
            if summary.get("ModelApprovalStatus") != APPROVED:
                continue
            key = (summary["CreationTime"], int(summary.get("ModelPackageVersion") or 0))
            if best_key is None or key > best_key:
                best, best_key = summary, key
    if best is None:
        return None
    desc = sm.describe_model_package(ModelPackageName=best["ModelPackageArn"])
    if desc.get("ModelApprovalStatus") != APPROVED:
        raise BatchResolveError(f"model package {desc['ModelPackageArn']} changed to "
                                f"{desc.get('ModelApprovalStatus')} while resolving; start the run again")
    return desc


def package_info(desc: Mapping[str, Any], model_data_prefix: str) -> dict[str, Any]:
    """What CreateModel needs from the package: its first container's image, model data and environment."""
    arn = desc["ModelPackageArn"]
    containers = (desc.get("InferenceSpecification") or {}).get("Containers") or []
    if not containers:
        raise BatchResolveError(f"model package {arn} has no inference container; it cannot score")
    container = containers[0]
    model_data_url = container.get("ModelDataUrl") or (
        ((container.get("ModelDataSource") or {}).get("S3DataSource") or {}).get("S3Uri")
    )
    if not model_data_url:
        raise BatchResolveError(f"model package {arn} has no model data (ModelDataUrl) in its first container")
    if not model_data_url.startswith(model_data_prefix):
        raise BatchResolveError(f"model package {arn} has its model data at {model_data_url}, outside "
                                f"{model_data_prefix}: batch inference reads the model's own artifacts only")
    if not container.get("Image"):
        raise BatchResolveError(f"model package {arn} has no image in its first container")
    environment = container.get("Environment") or {}
    return {
        "arn": arn,
        "version": int(desc.get("ModelPackageVersion") or 0),
        "image": container["Image"],
        "model_data_url": model_data_url,
        "environment": {str(k): str(v) for k, v in environment.items()},
    }


# --- the plan --------------------------------------------------------------------------------------------------
def plan(event: Mapping[str, Any], settings: Settings, sm: Any, s3: Any) -> dict[str, Any]:
    """The run's plan (see the module docstring) from the state machine's event."""
    if not isinstance(event, Mapping):
        raise BatchResolveError(f"the event must be an object, got {type(event).__name__}")
    payload = event.get("input") or {}
    if not isinstance(payload, Mapping):
        raise BatchResolveError(f"the execution input must be a JSON object, got {type(payload).__name__}")
    trigger = str(payload.get("trigger") or "manual")
    start = parse_start_time(event.get("start_time"))
    run = run_id(event.get("execution_name"), start)
    wanted = requested_partition(payload)

    desc = latest_approved(sm, settings.group)
    if desc is None:
        return {"action": SKIP, "trigger": trigger, "run_id": run,
                "reason": f"model package group '{settings.group}' has no Approved model package yet"}
    package = package_info(desc, settings.model_data_prefix)

    if wanted is not None:
        partition = wanted
        if not partition_has_data(s3, settings.curated_bucket,
                                  f"{settings.curated_prefix}{PARTITION_KEY}={partition}/"):
            raise BatchResolveError(f"curated partition {PARTITION_KEY}={partition} has no objects under "
                                    f"s3://{settings.curated_bucket}/{settings.curated_prefix}")
    else:
        found = partitions(s3, settings.curated_bucket, settings.curated_prefix)
        if not found:
            return {"action": SKIP, "trigger": trigger, "run_id": run,
                    "reason": f"no curated partition under s3://{settings.curated_bucket}/{settings.curated_prefix} "
                              "yet (the dataset's ETL has not written one)"}
        partition = found[-1]

    work = f"s3://{settings.work_bucket}/{settings.work_prefix}{run}/"
    dt = f"{start:%Y-%m-%d}"
    return {
        "action": SCORE,
        "reason": None,
        "trigger": trigger,
        "run_id": run,
        "dt": dt,
        "partition": partition,
        "package": package,
        "jobs": job_names(settings.job_name_prefix, run),
        "s3": {
            "partition": f"s3://{settings.curated_bucket}/{settings.curated_prefix}{PARTITION_KEY}={partition}/",
            "model_data": package["model_data_url"],
            "code": settings.code_uri,
            "transform_input": f"{work}input/",
            "rows": f"{work}rows/",
            "transform_output": f"{work}transform/",
            "report": f"{work}report/",
            "predictions": f"s3://{settings.predictions_bucket}/{settings.predictions_prefix}dt={dt}/",
        },
    }


def handler(event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
    settings = Settings(os.environ)
    result = plan(event, settings, boto3.client("sagemaker"), boto3.client("s3"))
    logger.info(json.dumps({"message": "batch run planned", "action": result["action"],
                            "reason": result.get("reason"), "run_id": result["run_id"],
                            "partition": result.get("partition"),
                            "package": (result.get("package") or {}).get("arn")}))
    return result
