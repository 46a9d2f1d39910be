"""Serving: the inference handlers of a registered model package (SAGEMAKER_PROGRAM=serve.py).

The SageMaker XGBoost / scikit-learn framework containers' inference toolkits import this module from
``SAGEMAKER_SUBMIT_DIRECTORY=/opt/ml/model/code`` and call ``model_fn``, ``input_fn`` (text/csv encoded rows or
application/json raw instances), ``predict_fn`` and ``output_fn`` (text/csv or application/json). Training
(train.py) copies this file into the model dir as ``code/serve.py``, so model.tar.gz carries its own inference code
(an endpoint with network isolation needs nothing else).

It reads what train.py writes: ``model_metadata.json`` (docs/CONTRACTS.md) and ``xgboost-model.json`` (xgboost) or
``model.joblib`` (sklearn). Standalone on purpose (the only file in code/); keep it Python 3.8/3.9 compatible.
Nothing here runs at import time.
"""
from __future__ import annotations

import json
import os
from typing import Dict, List, Optional, Tuple

import numpy as np

# The model dir as train.py writes it (train.py has the same names; a test checks they agree).
METADATA_FILE = "model_metadata.json"
XGBOOST_MODEL_FILE = "xgboost-model.json"
SKLEARN_MODEL_FILE = "model.joblib"
FRAMEWORKS = ("xgboost", "sklearn")

CSV_CONTENT_TYPE = "text/csv"
JSON_CONTENT_TYPE = "application/json"
SERVING_CONTENT_TYPES = (CSV_CONTENT_TYPE, JSON_CONTENT_TYPE)
_SERVING_STATE = {}  # type: Dict[str, Dict]  # the metadata of the model model_fn loaded, for input_fn


class ServingModel(object):
    """What model_fn returns: the booster or estimator plus the model_metadata.json it was trained with."""

    def __init__(self, framework: str, model, metadata: Dict) -> None:
        self.framework = framework
        self.model = model
        self.metadata = metadata
        self.encoded_columns = list(metadata["encoded_columns"])
        self.problem_type = metadata["problem_type"]


def _media_type(content_type: Optional[str]) -> str:
    return (content_type or "").split(";")[0].strip().lower()


def model_fn(model_dir: str) -> ServingModel:
    """Load model_metadata.json and xgboost-model.json (xgboost) or model.joblib (sklearn) from ``model_dir``."""
    metadata_path = os.path.join(model_dir, METADATA_FILE)
    if not os.path.isfile(metadata_path):
        raise ValueError("{} not found in model dir {!r}".format(METADATA_FILE, model_dir))
    with open(metadata_path) as handle:
        metadata = json.load(handle)
    for key in ("framework", "problem_type", "features", "encoded_columns"):
        if key not in metadata:
            raise ValueError("{} lacks {!r}".format(METADATA_FILE, key))
    framework = metadata["framework"]
    _SERVING_STATE["metadata"] = metadata
    if framework == "xgboost":
        import xgboost as xgb

        path = os.path.join(model_dir, XGBOOST_MODEL_FILE)
        if not os.path.isfile(path):
            raise ValueError("{} not found in model dir {!r}".format(XGBOOST_MODEL_FILE, model_dir))
        booster = xgb.Booster()
        booster.load_model(path)
        return ServingModel(framework, booster, metadata)
    if framework == "sklearn":
        import joblib

        path = os.path.join(model_dir, SKLEARN_MODEL_FILE)
        if not os.path.isfile(path):
            raise ValueError("{} not found in model dir {!r}".format(SKLEARN_MODEL_FILE, model_dir))
        return ServingModel(framework, joblib.load(path), metadata)
    raise ValueError("{} has unsupported framework {!r}; expected one of {}".format(
        METADATA_FILE, framework, list(FRAMEWORKS)))


def _load_metadata_for_input() -> Dict:
    """input_fn has no model argument in the toolkits: the metadata model_fn loaded, else the one in SM_MODEL_DIR."""
    cached = _SERVING_STATE.get("metadata")
    if cached is None:
        model_dir = os.environ.get("SM_MODEL_DIR", "/opt/ml/model")
        with open(os.path.join(model_dir, METADATA_FILE)) as handle:
            cached = json.load(handle)
        _SERVING_STATE["metadata"] = cached
    return cached


def _decode_body(request_body) -> str:
    if isinstance(request_body, (bytes, bytearray)):
        try:
            return bytes(request_body).decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("the request body is not UTF-8 text") from None
    if isinstance(request_body, str):
        return request_body
    raise ValueError("the request body must be text or bytes, got {}".format(type(request_body).__name__))


def _parse_csv_rows(text: str, encoded_columns: List[str]) -> np.ndarray:
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise ValueError("the text/csv request holds no rows: send one line of {} encoded values per row "
                         "({}), no header".format(len(encoded_columns), ",".join(encoded_columns)))
    width = len(encoded_columns)
    out = np.empty((len(lines), width), dtype=np.float64)
    for row, line in enumerate(lines, start=1):
        cells = line.split(",")
        if len(cells) != width:
            raise ValueError("text/csv row {} has {} values; expected {} in encoded_columns order ({}), no "
                             "header".format(row, len(cells), width, ",".join(encoded_columns)))
        for col, cell in enumerate(cells):
            cell = cell.strip()
            if cell == "":
                out[row - 1, col] = np.nan  # a missing value, as the XGBoost container reads an empty cell
                continue
            try:
                value = float(cell)
            except ValueError:
                raise ValueError("text/csv row {} column {} ({}) is not a number: {!r} (send encoded features, "
                                 "no header)".format(row, col + 1, encoded_columns[col], cell[:50])) from None
            if not np.isfinite(value):
                raise ValueError("text/csv row {} column {} ({}) must be finite, got {!r}".format(
                    row, col + 1, encoded_columns[col], cell[:50]))
            out[row - 1, col] = value
    return out


def encode_instances(instances, metadata: Dict) -> np.ndarray:
    """Raw feature dicts -> encoded matrix per docs/CONTRACTS.md (one-hot in ``categories`` order, numeric as float,
    ``encoded_columns`` order). ValueError with the instance and feature for anything that does not fit."""
    if not isinstance(instances, list) or not instances:
        raise ValueError('the application/json request must be {"instances": [{"<feature>": <value>, ...}]} with '
                         "at least one instance")
    columns = list(metadata["encoded_columns"])
    index = dict((name, i) for i, name in enumerate(columns))
    features = metadata["features"]
    known = set(f["name"] for f in features)
    out = np.zeros((len(instances), len(columns)), dtype=np.float64)
    for row, instance in enumerate(instances):
        where = "instances[{}]".format(row)
        if not isinstance(instance, dict):
            raise ValueError("{} must be an object of feature values, got {}".format(
                where, type(instance).__name__))
        unknown = sorted(set(instance) - known)
        if unknown:
            raise ValueError("{} has unknown feature(s) {}; the model's features are {}".format(
                where, unknown, [f["name"] for f in features]))
        missing = [f["name"] for f in features if instance.get(f["name"]) is None]
        if missing:
            raise ValueError("{} is missing feature(s) {}".format(where, missing))
        for feature in features:
            name = feature["name"]
            value = instance[name]
            if feature["type"] == "categorical":
                categories = [str(c) for c in feature.get("categories") or []]
                if not isinstance(value, str) or value not in categories:
                    raise ValueError("{}.{} has unknown category {!r}; allowed: {}".format(
                        where, name, value, categories))
                out[row, index["{}_{}".format(name, value)]] = 1.0
            else:
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise ValueError("{}.{} must be a number, got {!r}".format(where, name, value))
                if not np.isfinite(float(value)):
                    raise ValueError("{}.{} must be a finite number, got {!r}".format(where, name, value))
                out[row, index[name]] = float(value)
    return out


def input_fn(request_body, request_content_type: Optional[str]) -> np.ndarray:
    """Request -> encoded feature matrix (float64, ``encoded_columns`` order).

    ``text/csv``: rows of ENCODED features in ``encoded_columns`` order, no header (what the Lambda endpoint proxy
    and the smoke test send; an empty cell is a missing value). ``application/json``:
    ``{"instances": [{"<raw feature>": value, ...}]}``, encoded per the model_metadata.json in ``SM_MODEL_DIR``
    (the serving toolkits pass no model to input_fn).

    Exactly two parameters: sagemaker-inference 1.10+ passes a request context to a handler that declares one
    more parameter than the standard signature, so an optional third parameter would receive that context.
    """
    return _input_rows(request_body, request_content_type, None)


def _input_rows(request_body, request_content_type: Optional[str], metadata: Optional[Dict]) -> np.ndarray:
    media_type = _media_type(request_content_type)
    if media_type not in SERVING_CONTENT_TYPES:
        raise ValueError("unsupported content type {!r}; send {}".format(
            request_content_type, " or ".join(SERVING_CONTENT_TYPES)))
    metadata = metadata if metadata is not None else _load_metadata_for_input()
    text = _decode_body(request_body)
    if media_type == CSV_CONTENT_TYPE:
        return _parse_csv_rows(text, list(metadata["encoded_columns"]))
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise ValueError("the application/json request is not valid JSON: {}".format(exc)) from None
    if not isinstance(document, dict) or "instances" not in document:
        raise ValueError('the application/json request must be {"instances": [{"<feature>": <value>, ...}]}')
    return encode_instances(document["instances"], metadata)


def predict_fn(input_data: np.ndarray, model: ServingModel) -> np.ndarray:
    """Encoded rows -> one float per row: P(positive) for binary_classification, the value for regression."""
    data = np.asarray(input_data, dtype=np.float64)
    if data.ndim != 2 or data.shape[1] != len(model.encoded_columns):
        raise ValueError("expected rows of {} encoded features, got an array of shape {}".format(
            len(model.encoded_columns), data.shape))
    if model.framework == "xgboost":
        import xgboost as xgb

        return np.asarray(model.model.predict(xgb.DMatrix(data)), dtype=np.float64)
    if np.isnan(data).any():
        raise ValueError("the sklearn model cannot predict rows with missing values")
    if model.problem_type == "binary_classification":
        return np.asarray(model.model.predict_proba(data)[:, 1], dtype=np.float64)
    return np.asarray(model.model.predict(data), dtype=np.float64)


def output_fn(prediction, accept: Optional[str]) -> Tuple[str, str]:
    """Predictions -> (body, content type): CSV (one value per line) or JSON ``{"predictions": [...]}``.

    ``accept`` may list several types; ``*/*`` or none means text/csv (the XGBoost container's default).
    """
    values = [float(v) for v in np.asarray(prediction, dtype=np.float64).ravel()]
    chosen = None
    for part in (accept or "").split(","):
        media_type = _media_type(part)
        if media_type in SERVING_CONTENT_TYPES:
            chosen = media_type
            break
        if media_type in ("*/*", "text/*", ""):
            chosen = chosen or CSV_CONTENT_TYPE
    if chosen is None:
        raise ValueError("unsupported accept type {!r}; accept {}".format(accept, " or ".join(SERVING_CONTENT_TYPES)))
    if chosen == JSON_CONTENT_TYPE:
        return json.dumps({"predictions": values}), JSON_CONTENT_TYPE
    return "".join(repr(v) + "\n" for v in values), CSV_CONTENT_TYPE
