"""The two ways to answer: the XGBoost model in this process, or a proxy to a SageMaker real-time endpoint."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
from aws_lambda_powertools import Logger

from .artifacts import (
    METADATA_FILE,
    MODEL_FILE,
    SKLEARN_MODEL_FILE,
    find_file,
    load_feature_metadata,
    materialize_model_dir,
)
from .config import MODE_ENDPOINT_PROXY, MODE_MODEL, Settings
from .errors import ConfigurationError, UpstreamError
from .features import PROBLEM_BINARY, FeatureSpec, load_metadata_file

log = Logger(child=True)

# docs/CONTRACTS.md: for binary classification the model outputs P(positive); the label is P >= 0.5.
DECISION_THRESHOLD = 0.5
RETRY_AFTER_SECONDS = "1"
_MAX_UPSTREAM_MESSAGE = 300


def format_predictions(values: Sequence[float], problem_type: str) -> list[Any]:
    """Regression -> floats; binary classification -> {"probability": p, "label": 0/1}."""
    if problem_type == PROBLEM_BINARY:
        return [{"probability": p, "label": 1 if p >= DECISION_THRESHOLD else 0} for p in values]
    return list(values)


def _float32_to_json(values: np.ndarray) -> list[float]:
    # The model computes in float32; its shortest repr is the honest precision (0.4123 not 0.41229999065399170).
    return [float(str(v)) for v in values.astype(np.float32, copy=False)]


class ModelPredictor:
    """XGBoost ``Booster`` loaded once per container; predicts with ``inplace_predict`` on a float32 matrix."""

    mode = MODE_MODEL

    def __init__(self, booster: Any, spec: FeatureSpec, model_version: str):
        self.booster = booster
        self.spec = spec
        self.model_version = model_version
        self.problem_type = spec.problem_type
        self._check_booster()

    @classmethod
    def load(cls, settings: Settings, *, s3_client: Any | None = None) -> ModelPredictor:
        model_dir = materialize_model_dir(
            s3_uri=settings.model_s3_uri, local_path=settings.model_local_path, s3_client=s3_client
        )
        metadata_path = find_file(model_dir, METADATA_FILE)
        if metadata_path is None:
            raise ConfigurationError(f"the model artifact has no {METADATA_FILE}")
        spec = FeatureSpec(load_metadata_file(metadata_path))
        if spec.metadata.framework != "xgboost":
            raise ConfigurationError(
                f"framework {spec.metadata.framework!r} cannot run in the Lambda model mode (only xgboost); "
                "serve it from a SageMaker endpoint with INFERENCE_MODE=endpoint_proxy"
            )
        model_path = find_file(model_dir, MODEL_FILE)
        if model_path is None:
            hint = " (it holds a scikit-learn model.joblib)" if find_file(model_dir, SKLEARN_MODEL_FILE) else ""
            raise ConfigurationError(f"the model artifact has no {MODEL_FILE}{hint}")

        import xgboost  # imported here so that the endpoint_proxy mode never loads it

        booster = xgboost.Booster()
        try:
            booster.load_model(str(model_path))
        except xgboost.core.XGBoostError as exc:
            raise ConfigurationError(f"cannot load {MODEL_FILE}: {exc}") from exc
        # Requests are 1..MAX_BATCH_ROWS rows: threads cost more than they bring; Lambda gives ~1 vCPU per 1.8 GB.
        booster.set_param({"nthread": settings.model_nthread})
        return cls(booster, spec, settings.model_version)

    def _check_booster(self) -> None:
        n_features = self.booster.num_features()
        if n_features != self.spec.n_columns:
            raise ConfigurationError(
                f"the model takes {n_features} features but model_metadata.json encodes {self.spec.n_columns}"
            )
        names = self.booster.feature_names
        if names is not None and tuple(names) != self.spec.encoded_columns:
            raise ConfigurationError("the model's feature names differ from encoded_columns in model_metadata.json")
        if self.problem_type == PROBLEM_BINARY:
            objective = json.loads(self.booster.save_config())["learner"]["objective"]["name"]
            if objective not in ("binary:logistic", "reg:logistic"):
                raise ConfigurationError(
                    f"binary_classification needs a model that outputs P(positive) (binary:logistic), got {objective}"
                )
        # Warm-up: the first prediction allocates XGBoost's predictor state; pay it at init, not on a request.
        out = self.booster.inplace_predict(
            np.zeros((1, self.spec.n_columns), dtype=np.float32), validate_features=False
        )
        if out.shape != (1,):
            raise ConfigurationError(f"the model returns {out.shape[1:]} outputs per row; one is supported")

    def predict(self, rows: Sequence[dict[str, Any]], *, inference_id: str | None = None) -> list[Any]:
        """``inference_id`` is only echoed by the handler: nothing captures this mode's predictions."""
        matrix = self.spec.encode(rows)
        raw = self.booster.inplace_predict(matrix, validate_features=False)
        return format_predictions(_float32_to_json(raw), self.problem_type)


# --------------------------------------------------------------------------------------------------------------------
# SageMaker endpoint proxy
# --------------------------------------------------------------------------------------------------------------------
def make_sagemaker_runtime_client(settings: Settings) -> Any:
    """One client per container: short connect timeout, bounded read timeout, standard-mode retries."""
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=settings.endpoint_connect_timeout_seconds,
        read_timeout=settings.endpoint_read_timeout_seconds,
        retries={"total_max_attempts": settings.endpoint_max_attempts, "mode": "standard"},
        tcp_keepalive=True,
        max_pool_connections=10,
    )
    return boto3.client("sagemaker-runtime", config=config)


_SPLIT = re.compile(r"[\s,]+")


def parse_endpoint_output(payload: bytes, content_type: str, expected: int) -> list[float]:
    """The XGBoost serving container's answer: CSV (comma- or newline-separated) or JSON ``{"predictions": ...}``."""
    text = payload.decode("utf-8").strip()
    values: list[Any]
    if "json" in content_type.lower() or text[:1] in ("{", "["):
        doc = json.loads(text)
        if isinstance(doc, dict):
            doc = doc.get("predictions")
        if not isinstance(doc, list):
            raise ValueError("JSON answer without a predictions list")
        values = [item.get("score") if isinstance(item, dict) else item for item in doc]
    else:
        values = [token for token in _SPLIT.split(text) if token]
    out = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError(f"non-numeric prediction {value!r}")
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"non-finite prediction {value!r}")
        out.append(number)
    if len(out) != expected:
        raise ValueError(f"{len(out)} predictions for {expected} rows")
    return out


class EndpointPredictor:
    """Encodes rows per the feature spec, sends CSV to the endpoint, maps its failures to 502/503/504."""

    mode = MODE_ENDPOINT_PROXY

    def __init__(self, client: Any, endpoint_name: str, spec: FeatureSpec, model_version: str):
        self.client = client
        self.endpoint_name = endpoint_name
        self.spec = spec
        self.model_version = model_version
        self.problem_type = spec.problem_type

    @classmethod
    def load(
        cls, settings: Settings, *, s3_client: Any | None = None, sagemaker_client: Any | None = None
    ) -> EndpointPredictor:
        metadata = load_feature_metadata(
            s3_uri=settings.metadata_s3_uri, local_path=settings.metadata_local_path, s3_client=s3_client
        )
        client = sagemaker_client or make_sagemaker_runtime_client(settings)
        return cls(client, settings.endpoint_name or "", FeatureSpec(metadata), settings.model_version)

    def predict(self, rows: Sequence[dict[str, Any]], *, inference_id: str | None = None) -> list[Any]:
        """``inference_id`` becomes InvokeEndpoint's ``InferenceId``: data capture records it as
        ``eventMetadata.inferenceId``, the key Model Monitor joins ground-truth labels on."""
        from botocore.exceptions import (
            ClientError,
            ConnectionClosedError,
            ConnectTimeoutError,
            EndpointConnectionError,
            ReadTimeoutError,
        )

        body = self.spec.encode_csv(rows).encode("utf-8")
        request: dict[str, Any] = {
            "EndpointName": self.endpoint_name, "ContentType": "text/csv", "Accept": "text/csv", "Body": body,
        }
        if inference_id is not None:
            request["InferenceId"] = inference_id
        try:
            response = self.client.invoke_endpoint(**request)
            payload = response["Body"].read()
        except ClientError as exc:
            raise self._map_client_error(exc) from exc
        except (ReadTimeoutError, ConnectTimeoutError) as exc:
            raise UpstreamError(
                504, "upstream_timeout", f"the SageMaker endpoint did not answer in time ({type(exc).__name__})"
            ) from exc
        except (EndpointConnectionError, ConnectionClosedError) as exc:
            raise UpstreamError(
                503,
                "upstream_unavailable",
                "cannot reach the SageMaker runtime; retry later",
                headers={"Retry-After": RETRY_AFTER_SECONDS},
            ) from exc
        try:
            values = parse_endpoint_output(payload, response.get("ContentType") or "", len(rows))
        except (ValueError, UnicodeDecodeError) as exc:
            raise UpstreamError(
                502, "bad_upstream_response", f"the SageMaker endpoint answered something unusable: {exc}"
            ) from exc
        return format_predictions(values, self.problem_type)

    def _map_client_error(self, exc: Any) -> UpstreamError:
        error = exc.response.get("Error", {})
        code = error.get("Code", "")
        if code == "ModelError":
            status = exc.response.get("OriginalStatusCode")
            detail = str(exc.response.get("OriginalMessage") or error.get("Message") or "")[:_MAX_UPSTREAM_MESSAGE]
            return UpstreamError(
                502, "model_error", f"the model container failed on this request (status {status}): {detail}"
            )
        if code in ("ThrottlingException", "ServiceUnavailable", "ModelNotReadyException"):
            reason = "upstream_throttled" if code == "ThrottlingException" else "upstream_unavailable"
            return UpstreamError(
                503,
                reason,
                f"the SageMaker endpoint is {'throttling' if reason == 'upstream_throttled' else 'unavailable'} "
                f"({code}); retry after {RETRY_AFTER_SECONDS}s with backoff",
                headers={"Retry-After": RETRY_AFTER_SECONDS},
            )
        if code == "ValidationError":
            # The body was validated here, so SageMaker's ValidationError means the endpoint is missing or not
            # InService: a deployment fault behind this gateway -> 502, not the caller's 4xx.
            log.error("InvokeEndpoint ValidationError on %s: %s", self.endpoint_name, error.get("Message"))
            return UpstreamError(
                502,
                "endpoint_unavailable",
                f"the SageMaker endpoint {self.endpoint_name!r} is missing or not InService",
            )
        log.error("InvokeEndpoint failed on %s: %s %s", self.endpoint_name, code, error.get("Message"))
        return UpstreamError(502, "upstream_error", f"the SageMaker endpoint call failed ({code or 'unknown'})")


def load_predictor(
    settings: Settings, *, s3_client: Any | None = None, sagemaker_client: Any | None = None
) -> ModelPredictor | EndpointPredictor:
    settings.validate()
    if settings.mode == MODE_ENDPOINT_PROXY:
        return EndpointPredictor.load(settings, s3_client=s3_client, sagemaker_client=sagemaker_client)
    return ModelPredictor.load(settings, s3_client=s3_client)
