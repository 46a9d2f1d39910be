"""Helpers for the inference runtime tests and benchmark: real models, real event shapes, an independent encoder.

Importing this module prepares the environment the handler reads at import (tracing off, a region, no model
location) and puts ``lambda_src/inference`` on ``sys.path`` so that ``inference_runtime`` imports as it does
in Lambda, where that directory is the code root.
"""

from __future__ import annotations

import base64
import csv
import json
import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
HANDLER_DIR = REPO / "lambda_src" / "inference"
ABALONE = REPO / "data" / "abalone.csv"

os.environ["POWERTOOLS_TRACE_DISABLED"] = "true"  # as tests/conftest.py does; no X-Ray daemon here
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")  # boto3 clients (moto, Stubber) need a region
for _var in ("INFERENCE_MODE", "MODEL_S3_URI", "MODEL_LOCAL_PATH", "ENDPOINT_NAME", "MODEL_METADATA_S3_URI",
             "MODEL_METADATA_LOCAL_PATH", "MAX_BATCH_ROWS", "MODEL_VERSION"):
    os.environ.pop(_var, None)  # the handler module must not load anything by itself at import here
for _path in (str(REPO), str(HANDLER_DIR)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

NUMERIC_FEATURES = ("length", "diameter", "height", "whole_weight", "shucked_weight", "viscera_weight",
                    "shell_weight")
ROW = {"sex": "M", "length": 0.455, "diameter": 0.365, "height": 0.095, "whole_weight": 0.514,
       "shucked_weight": 0.2245, "viscera_weight": 0.101, "shell_weight": 0.15}

# Small and quick, but a real model of the real pipeline (the defaults train 100 rounds of depth 5).
HYPERPARAMETERS = {"max_depth": 4, "eta": 0.3, "num_round": 30}


# ----------------------------------------------------------------------------------------------------------------
# Models: trained by the project's own local pipeline (sagemaker_steps.local_runner), CONTRACTS.md artifact format
# ----------------------------------------------------------------------------------------------------------------
def curate(work_dir: Path) -> Path:
    from sagemaker_steps.local_runner import curate_csv_for_local

    return curate_csv_for_local(ABALONE, Path(work_dir) / "curated", ingest_date="2024-05-01")


def train_model(curated: Path, work_dir: Path, problem_type: str = "regression"):
    """Run Preprocess -> Train -> Evaluate on abalone; returns the LocalRunResult (model_artifact, model_dir...)."""
    from sagemaker_steps.local_runner import run_local_pipeline
    from sagemaker_steps.model_spec import ModelSpec

    if problem_type == "regression":
        model = ModelSpec(name="abalone", target="rings", problem_type="regression", metric="rmse", threshold=3.0,
                          hyperparameters=HYPERPARAMETERS)
    else:
        model = ModelSpec(name="abalone-old", target="rings", problem_type="binary_classification", metric="auc",
                          threshold=0.8, positive_threshold=10, hyperparameters=HYPERPARAMETERS)
    return run_local_pipeline(curated, Path(work_dir), model)


def abalone_rows(limit: int | None = None) -> list[tuple[dict[str, Any], float]]:
    """(request row, rings) pairs straight from the raw CSV, keys in the curated snake_case."""
    out = []
    with open(ABALONE, newline="") as handle:
        for record in csv.DictReader(handle):
            record = {k.strip().lower().replace(" ", "_"): v for k, v in record.items()}
            row = {"sex": record["sex"], **{name: float(record[name]) for name in NUMERIC_FEATURES}}
            out.append((row, float(record["rings"])))
            if limit is not None and len(out) >= limit:
                break
    return out


def load_metadata(model_dir: Path) -> dict[str, Any]:
    return json.loads((Path(model_dir) / "model_metadata.json").read_text())


def reference_encode(row: dict[str, Any], metadata: dict[str, Any]) -> list[float]:
    """docs/CONTRACTS.md, written independently of the runtime: one-hot in categories order, floats, in
    encoded_columns order."""
    values: dict[str, float] = {}
    for feature in metadata["features"]:
        name = feature["name"]
        if feature["type"] == "categorical":
            for category in feature["categories"]:
                values[f"{name}_{category}"] = 1.0 if row[name] == category else 0.0
        else:
            values[name] = float(row[name])
    return [values[column] for column in metadata["encoded_columns"]]


def reference_predict(model_dir: Path, rows: list[dict[str, Any]]) -> list[float]:
    """What the artifact predicts through plain xgboost (DMatrix + Booster.predict), for comparison."""
    import numpy as np
    import xgboost

    metadata = load_metadata(model_dir)
    booster = xgboost.Booster()
    booster.load_model(str(Path(model_dir) / "xgboost-model.json"))
    matrix = np.array([reference_encode(r, metadata) for r in rows], dtype=np.float32)
    return booster.predict(xgboost.DMatrix(matrix, feature_names=metadata["encoded_columns"])).tolist()


# ----------------------------------------------------------------------------------------------------------------
# Events (documented shapes) and context
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class LambdaContext:
    function_name: str = "mlops-inference"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 1769
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:mlops-inference"
    aws_request_id: str = ""
    log_group_name: str = "/aws/lambda/mlops-inference"
    log_stream_name: str = "2024/05/01/[$LATEST]0123456789abcdef"

    def __post_init__(self) -> None:
        self.aws_request_id = self.aws_request_id or str(uuid.uuid4())

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 30_000


def _encode_body(body: Any, is_base64: bool) -> tuple[str | None, bool]:
    if body is None:
        return None, is_base64
    if not isinstance(body, (str, bytes)):
        body = json.dumps(body)
    if is_base64:
        raw = body.encode() if isinstance(body, str) else body
        return base64.b64encode(raw).decode(), True
    return body if isinstance(body, str) else body.decode(), False


def function_url_event(body: Any = None, *, method: str = "POST", content_type: str | None = "application/json",
                       is_base64: bool = False, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """A Lambda Function URL request with IAM auth (payload format 2.0)."""
    text, b64 = _encode_body(body, is_base64)
    all_headers = {"host": "abcdefghij.lambda-url.us-east-1.on.aws", "user-agent": "python-requests/2.32",
                   "x-amz-date": "20240501T120000Z", "x-amz-security-token": "token",
                   "authorization": "AWS4-HMAC-SHA256 Credential=AKIA.../20240501/us-east-1/lambda/aws4_request"}
    if content_type is not None:
        all_headers["content-type"] = content_type
    all_headers.update(headers or {})
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/",
        "rawQueryString": "",
        "headers": all_headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abcdefghij",
            "authorizer": {"iam": {"accessKey": "AKIA...", "accountId": "123456789012",
                                   "callerId": "AIDA...", "cognitoIdentity": None,
                                   "principalOrgId": None, "userArn": "arn:aws:iam::123456789012:user/ci",
                                   "userId": "AIDA..."}},
            "domainName": "abcdefghij.lambda-url.us-east-1.on.aws",
            "domainPrefix": "abcdefghij",
            "http": {"method": method, "path": "/", "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7",
                     "userAgent": "python-requests/2.32"},
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "time": "01/May/2024:12:00:00 +0000",
            "timeEpoch": 1714564800000,
        },
        "isBase64Encoded": b64,
    }
    if text is not None:
        event["body"] = text
    return event


def rest_api_event(body: Any = None, *, method: str = "POST", content_type: str | None = "application/json",
                   is_base64: bool = False, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """An API Gateway REST API proxy-integration request (payload format 1.0)."""
    text, b64 = _encode_body(body, is_base64)
    all_headers: dict[str, str] | None = {"Accept": "*/*", "Host": "abc123.execute-api.us-east-1.amazonaws.com"}
    if content_type is not None:
        all_headers["Content-Type"] = content_type
    all_headers.update(headers or {})
    request_id = str(uuid.uuid4())
    return {
        "resource": "/predict",
        "path": "/predict",
        "httpMethod": method,
        "headers": all_headers,
        "multiValueHeaders": {k: [v] for k, v in all_headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "httpMethod": method,
            "identity": {"sourceIp": "203.0.113.7", "userAgent": "curl/8.5.0", "userArn": None},
            "path": "/prod/predict",
            "protocol": "HTTP/1.1",
            "requestId": request_id,
            "extendedRequestId": request_id,
            "requestTime": "01/May/2024:12:00:00 +0000",
            "requestTimeEpoch": 1714564800000,
            "resourceId": "res123",
            "resourcePath": "/predict",
            "stage": "prod",
        },
        "body": text,
        "isBase64Encoded": b64,
    }


def parse_response(response: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
    assert set(response) == {"statusCode", "headers", "body", "isBase64Encoded"}, response
    assert response["isBase64Encoded"] is False
    assert response["headers"]["Content-Type"] == "application/json"
    return response["statusCode"], json.loads(response["body"]), response["headers"]
