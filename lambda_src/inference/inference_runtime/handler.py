"""The Lambda handler: HTTP event -> validated rows -> predictions, with Powertools logs, EMF metrics and traces.

Lifecycle: the model (or the endpoint client and feature spec) is loaded once per container, at import when the
environment says where it is (so Lambda's init phase pays for it), else on the first request. A failed load is
logged and retried on a later request (at most every ``INIT_RETRY_SECONDS``); meanwhile requests get a 500.
Tests and the benchmark call ``init(settings)`` / ``reset()`` instead of re-importing the module.

The handler never raises: 4xx for what the caller can fix, 5xx (with the Lambda request id) for faults here or
upstream; every exception is logged.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

from .config import Settings
from .errors import ConfigurationError, HttpError, RequestError
from .events import check_content_type, check_method, decode_body, http_response, parse_event
from .features import parse_request
from .inference_ids import HEADER as INFERENCE_ID_HEADER
from .inference_ids import resolve_inference_id
from .predictors import EndpointPredictor, ModelPredictor, load_predictor

DEFAULT_SERVICE = "inference"
DEFAULT_NAMESPACE = "MLOpsPlatform/Inference"
INIT_RETRY_SECONDS = 5.0

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME") or DEFAULT_SERVICE
logger = Logger(service=SERVICE)
# An explicit namespace wins over the env var in Powertools, so read the env var ourselves and keep a default:
# without any namespace every flush would fail.
metrics = Metrics(service=SERVICE, namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or DEFAULT_NAMESPACE)
tracer = Tracer(service=SERVICE)

Predictor = ModelPredictor | EndpointPredictor


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    predictor: Predictor


class ModelUnavailable(HttpError):
    def __init__(self) -> None:
        super().__init__(
            500, "model_unavailable", "the model is not loaded (see the function logs); retry later"
        )


_lock = threading.Lock()
_runtime: Runtime | None = None
_next_retry_at = 0.0


@tracer.capture_method(capture_response=False)
def _predict(predictor: Predictor, rows: list[dict[str, Any]], inference_id: str) -> list[Any]:
    return predictor.predict(rows, inference_id=inference_id)


def init(
    settings: Settings | None = None, *, s3_client: Any | None = None, sagemaker_client: Any | None = None
) -> Runtime:
    """(Re)load the predictor from ``settings`` (default: the environment) and make it the current one."""
    global _runtime, _next_retry_at
    settings = settings or Settings.from_env()
    started = time.perf_counter()
    # Not a traced method: at import (Lambda's init phase) there is no X-Ray segment to attach a subsegment to.
    predictor = load_predictor(settings, s3_client=s3_client, sagemaker_client=sagemaker_client)
    runtime = Runtime(settings=settings, predictor=predictor)
    with _lock:
        _runtime = runtime
        _next_retry_at = 0.0
    if metrics.default_dimensions.get("mode") != settings.mode:
        with warnings.catch_warnings():  # re-init with another mode (tests): overwriting is the point
            warnings.simplefilter("ignore")
            metrics.set_default_dimensions(mode=settings.mode)
    logger.append_keys(inference_mode=settings.mode, model_version=predictor.model_version)
    logger.info(
        "predictor ready",
        extra={
            "problem_type": predictor.problem_type,
            "features": len(predictor.spec.feature_names),
            "encoded_columns": predictor.spec.n_columns,
            "max_batch_rows": settings.max_batch_rows,
            "init_ms": round((time.perf_counter() - started) * 1000, 1),
        },
    )
    return runtime


def reset() -> None:
    """Forget the loaded predictor (tests)."""
    global _runtime, _next_retry_at
    with _lock:
        _runtime = None
        _next_retry_at = 0.0


def get_runtime() -> Runtime:
    """The current runtime, loading it from the environment if needed (rate-limited after a failure)."""
    global _next_retry_at
    runtime = _runtime
    if runtime is not None:
        return runtime
    if time.monotonic() < _next_retry_at:
        raise ModelUnavailable()
    try:
        return init()
    except Exception:
        _next_retry_at = time.monotonic() + INIT_RETRY_SECONDS
        logger.exception("cannot load the predictor")
        raise ModelUnavailable() from None


def get_predictor() -> Predictor:
    return get_runtime().predictor


def _init_at_import() -> None:
    try:
        settings = Settings.from_env()
    except ConfigurationError:
        logger.exception("invalid configuration; requests will fail until it is fixed")
        return
    if not settings.is_configured:
        return  # nothing says where the model is (tests, tooling): load on the first request
    try:
        init(settings)
    except Exception:
        logger.exception("loading the predictor at init failed; retrying on the first request")


# --------------------------------------------------------------------------------------------------------------------
# Request handling
# --------------------------------------------------------------------------------------------------------------------
def _request_id(context: Any) -> str:
    return str(getattr(context, "aws_request_id", None) or "unknown")


def _error_response(err: HttpError, request_id: str) -> dict[str, Any]:
    body: dict[str, Any] = {"error": err.code, "message": err.message}
    if err.is_client_error:
        metrics.add_dimension("reason", err.code)
        metrics.add_metric(name="BadRequests", unit=MetricUnit.Count, value=1)
        logger.info("bad request", extra={"status": err.status, "error": err.code, "detail": err.message})
    else:
        body["request_id"] = request_id
        metrics.add_dimension("reason", err.code)
        metrics.add_metric(name="ServerErrors", unit=MetricUnit.Count, value=1)
        logger.error("request failed", extra={"status": err.status, "error": err.code, "detail": err.message})
    return http_response(err.status, body, {"X-Request-Id": request_id, **err.headers})


def _internal_error(request_id: str) -> dict[str, Any]:
    return http_response(
        500,
        {
            "error": "internal_error",
            "message": "unexpected server error; report the request_id",
            "request_id": request_id,
        },
        {"X-Request-Id": request_id},
    )


def _handle(event: Any, context: Any) -> dict[str, Any]:
    request_id = _request_id(context)
    try:
        request = parse_event(event)
        check_method(request)
        check_content_type(request)
        payload = decode_body(request)
        rows, single = parse_request(payload)
        inference_id = resolve_inference_id(request.inference_id, payload)
        if not rows:
            raise RequestError("empty_batch", '"instances" is empty: send at least one row')
        runtime = get_runtime()
        limit = runtime.settings.max_batch_rows
        if len(rows) > limit:
            raise RequestError(
                "batch_too_large",
                f"{len(rows)} rows is more than the {limit} allowed per request: split the batch",
                status=413,
            )
        predictor = runtime.predictor
        valid_rows = predictor.spec.validate_rows(rows, single=single)
        started = time.perf_counter()
        predictions = _predict(predictor, valid_rows, inference_id)
        elapsed_ms = (time.perf_counter() - started) * 1000.0
    except HttpError as err:
        return _error_response(err, request_id)
    except Exception:
        logger.exception("unhandled error while serving a request")
        metrics.add_dimension("reason", "internal_error")
        metrics.add_metric(name="ServerErrors", unit=MetricUnit.Count, value=1)
        return _internal_error(request_id)

    count = len(predictions)
    metrics.add_metric(name="Predictions", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="RowsPredicted", unit=MetricUnit.Count, value=count)
    metrics.add_metric(name="PredictLatency", unit=MetricUnit.Milliseconds, value=round(elapsed_ms, 3))
    metrics.add_metadata(key="model_version", value=predictor.model_version)
    return http_response(
        200,
        {
            "predictions": predictions,
            "model_version": predictor.model_version,
            "count": count,
            "inference_id": inference_id,
        },
        {"X-Request-Id": request_id, INFERENCE_ID_HEADER: inference_id},
    )


@logger.inject_lambda_context(correlation_id_path="requestContext.requestId")
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def _instrumented_handler(event: Any, context: Any) -> dict[str, Any]:
    return _handle(event, context)


def handler(event: Any, context: Any) -> dict[str, Any]:
    """Lambda entry point (``app.handler``). Never raises."""
    try:
        return _instrumented_handler(event, context)
    except Exception:  # a failure in the instrumentation itself (e.g. metrics flush): still answer
        logger.exception("unhandled error around the request")
        return _internal_error(_request_id(context))


_init_at_import()
