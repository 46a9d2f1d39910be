"""The feature spec of a model (``model_metadata.json``, docs/CONTRACTS.md): request validation and encoding.

Validation is driven by the metadata, never hard-coded: at load time we build, once, a pydantic ``TypeAdapter`` over
a ``TypedDict`` of the model's features (numeric -> strict finite float, categorical -> strict string from the
allowed categories, extra keys forbidden), plus index maps from each feature to its encoded column. Per request the
cost is one pydantic-core call and a tight encoding loop.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    AfterValidator,
    AllowInfNan,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from typing_extensions import TypedDict

from .errors import ConfigurationError, RequestError

PROBLEM_REGRESSION = "regression"
PROBLEM_BINARY = "binary_classification"

# XGBoost evaluates in float32: a finite double beyond this would become +-inf and make the booster raise.
FLOAT32_MAX = float(np.finfo(np.float32).max)

# Listing every allowed name/category in a message is helpful up to a point.
_MAX_LISTED = 50


# --------------------------------------------------------------------------------------------------------------------
# model_metadata.json
# --------------------------------------------------------------------------------------------------------------------
class FeatureDef(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str = Field(min_length=1)
    type: Literal["numeric", "categorical"]
    categories: list[str] | None = None

    @model_validator(mode="after")
    def _categories_match_type(self) -> FeatureDef:
        if self.type == "categorical":
            if not self.categories:
                raise ValueError(f"categorical feature {self.name!r} needs a non-empty 'categories' list")
            if len(set(self.categories)) != len(self.categories):
                raise ValueError(f"categorical feature {self.name!r} has duplicate categories")
        return self


class ModelMetadata(BaseModel):
    """``model_metadata.json`` as written by the training step (unknown keys are ignored for forward compatibility)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    framework: str
    problem_type: Literal["regression", "binary_classification"]
    target: str
    features: list[FeatureDef] = Field(min_length=1)
    encoded_columns: list[str] = Field(min_length=1)
    positive_threshold: float | None = None

    @field_validator("features")
    @classmethod
    def _unique_feature_names(cls, features: list[FeatureDef]) -> list[FeatureDef]:
        names = [f.name for f in features]
        if len(set(names)) != len(names):
            raise ValueError("feature names must be unique")
        return features

    @model_validator(mode="after")
    def _encoded_columns_match_features(self) -> ModelMetadata:
        expected: list[str] = []
        for feature in self.features:
            if feature.type == "categorical":
                expected.extend(f"{feature.name}_{category}" for category in feature.categories or ())
            else:
                expected.append(feature.name)
        if len(set(self.encoded_columns)) != len(self.encoded_columns):
            raise ValueError("encoded_columns has duplicates")
        if sorted(expected) != sorted(self.encoded_columns):
            missing = sorted(set(expected) - set(self.encoded_columns))
            unexpected = sorted(set(self.encoded_columns) - set(expected))
            raise ValueError(
                "encoded_columns do not match the features (categorical -> '<name>_<category>', numeric -> "
                f"'<name>'): missing {missing}, unexpected {unexpected}"
            )
        return self


def load_metadata(raw: bytes | str) -> ModelMetadata:
    try:
        return ModelMetadata.model_validate_json(raw)
    except ValidationError as exc:
        raise ConfigurationError(f"model_metadata.json is invalid: {exc}") from exc


def load_metadata_file(path: str | Path) -> ModelMetadata:
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot read model metadata {path}: {exc}") from exc
    return load_metadata(raw)


# --------------------------------------------------------------------------------------------------------------------
# The request envelope
# --------------------------------------------------------------------------------------------------------------------
class PredictionRequest(BaseModel):
    """``{"instances": [row, ...]}`` or ``{"instance": row}``; rows are checked against the feature spec after."""

    model_config = ConfigDict(extra="forbid", strict=True)

    instance: Any = None
    instances: list[Any] = None  # type: ignore[assignment]  # absent is fine, an explicit null is not a list
    # Optional, checked by inference_ids.resolve_inference_id (its own error codes): the caller's ID of the request.
    inference_id: Any = None

    @model_validator(mode="after")
    def _exactly_one(self) -> PredictionRequest:
        given = self.model_fields_set & {"instance", "instances"}
        if not given:
            raise PydanticCustomError(
                "missing_input",
                'the body must have "instances" (a list of rows) or "instance" (one row)',
            )
        if len(given) == 2:
            raise PydanticCustomError(
                "ambiguous_input",
                'send either "instances" (a list of rows) or "instance" (one row), not both',
            )
        return self


_ENVELOPE_ERROR_PRIORITY = ("model_type", "extra_forbidden", "missing_input", "ambiguous_input", "list_type")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _listing(names: Iterable[str]) -> str:
    names = [name if len(name) <= 60 else name[:57] + "..." for name in names]  # caller-chosen keys: keep it short
    shown = ", ".join(names[:_MAX_LISTED])
    if len(names) > _MAX_LISTED:
        shown += f", ... ({len(names) - _MAX_LISTED} more)"
    return shown


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value) if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_request(payload: Any) -> tuple[list[Any], bool]:
    """Validate the envelope; return (rows, single) where single tells the ``instance`` form."""
    try:
        request = PredictionRequest.model_validate(payload)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False)
        errors.sort(
            key=lambda e: _ENVELOPE_ERROR_PRIORITY.index(e["type"]) if e["type"] in _ENVELOPE_ERROR_PRIORITY else 99
        )
        err = errors[0]
        kind = err["type"]
        if kind == "model_type":
            raise RequestError(
                "invalid_body",
                f'the body must be a JSON object like {{"instances": [{{...}}]}}, got {_json_type(payload)}',
            ) from None
        if kind == "extra_forbidden":
            unknown = sorted(str(e["loc"][0]) for e in errors if e["type"] == "extra_forbidden")
            raise RequestError(
                "unknown_field",
                f'unknown top-level field(s): {_listing(unknown)}; the body takes only "instances" or "instance" '
                '(and optionally "inference_id")',
            ) from None
        if kind in ("missing_input", "ambiguous_input"):
            raise RequestError(kind, err["msg"]) from None
        if kind == "list_type":
            raise RequestError(
                "invalid_body",
                f'"instances" must be a JSON array of row objects, got {_json_type(err.get("input"))}',
            ) from None
        raise RequestError("invalid_body", f"invalid request body: {err['msg']}") from None
    if "instance" in request.model_fields_set:
        return [request.instance], True
    return request.instances or [], False


# --------------------------------------------------------------------------------------------------------------------
# The feature spec
# --------------------------------------------------------------------------------------------------------------------
# Pydantic error types -> our error codes, most important first (a row's first code wins).
_ROW_CODES = {
    "dict_type": "invalid_body",
    "missing": "missing_features",
    "extra_forbidden": "extra_features",
    "float_type": "wrong_type",
    "string_type": "wrong_type",
    "finite_number": "non_finite_number",
    "number_out_of_range": "number_out_of_range",
    "unknown_category": "unknown_category",
}
_CODE_PRIORITY = (
    "invalid_body",
    "missing_features",
    "extra_features",
    "wrong_type",
    "non_finite_number",
    "number_out_of_range",
    "unknown_category",
)


class FeatureSpec:
    """Validates request rows and encodes them as the model's input matrix (docs/CONTRACTS.md)."""

    def __init__(self, metadata: ModelMetadata):
        self.metadata = metadata
        self.problem_type = metadata.problem_type
        self.feature_names: tuple[str, ...] = tuple(f.name for f in metadata.features)
        self.encoded_columns: tuple[str, ...] = tuple(metadata.encoded_columns)
        self.n_columns = len(self.encoded_columns)
        column_index = {name: i for i, name in enumerate(self.encoded_columns)}

        numeric: list[tuple[str, int]] = []
        categorical: list[tuple[str, dict[str, int]]] = []
        self._allowed: dict[str, tuple[str, ...]] = {}
        fields: dict[str, Any] = {}
        for feature in metadata.features:
            if feature.type == "numeric":
                numeric.append((feature.name, column_index[feature.name]))
                fields[feature.name] = Annotated[
                    float, Strict(), AllowInfNan(False), AfterValidator(_check_float32_range)
                ]
            else:
                categories = tuple(feature.categories or ())
                self._allowed[feature.name] = categories
                categorical.append(
                    (feature.name, {c: column_index[f"{feature.name}_{c}"] for c in categories})
                )
                fields[feature.name] = Annotated[str, Strict(), AfterValidator(_category_checker(categories))]
        self._numeric = tuple(numeric)
        self._categorical = tuple(categorical)
        self._numeric_names = frozenset(name for name, _ in numeric)

        row_type = TypedDict("Row", fields)  # type: ignore[misc]  # functional form: names need not be identifiers
        row_type.__pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[attr-defined]
        self._rows_adapter: TypeAdapter[list[dict[str, Any]]] = TypeAdapter(list[row_type])  # type: ignore[valid-type]

    @classmethod
    def from_file(cls, path: str | Path) -> FeatureSpec:
        return cls(load_metadata_file(path))

    # ---- validation ------------------------------------------------------------------------------------------------
    def validate_rows(self, rows: list[Any], *, single: bool = False) -> list[dict[str, Any]]:
        """Return the rows as dicts of validated values, or raise ``RequestError`` naming the first bad row."""
        try:
            return self._rows_adapter.validate_python(rows)
        except ValidationError as exc:
            raise self._row_error(exc, rows, single) from None

    def _row_error(self, exc: ValidationError, rows: Sequence[Any], single: bool) -> RequestError:
        errors = exc.errors(include_url=False, include_context=False)
        first_row = min(e["loc"][0] for e in errors)  # type: ignore[type-var]
        row_errors = [e for e in errors if e["loc"][0] == first_row]
        where = "instance" if single else f"instances[{first_row}]"

        by_code: dict[str, list[dict[str, Any]]] = {}
        for e in row_errors:
            kind = e["type"]
            if kind == "float_type" and isinstance(e.get("input"), int) and not isinstance(e.get("input"), bool):
                kind = "number_out_of_range"  # an integer too large to be a float
            code = _ROW_CODES.get(kind, "wrong_type")
            by_code.setdefault(code, []).append(e)
        code = next(c for c in _CODE_PRIORITY if c in by_code)
        errs = by_code[code]

        if code == "invalid_body":
            return RequestError(
                "invalid_body", f"{where} must be a JSON object of feature values, got {_json_type(rows[first_row])}"
            )
        if code == "missing_features":
            missing = [str(e["loc"][1]) for e in errs]
            return RequestError(
                code,
                f"{where} is missing feature(s): {_listing(missing)}. "
                f"The model needs: {_listing(self.feature_names)}",
            )
        if code == "extra_features":
            extra = sorted(str(e["loc"][1]) for e in errs)
            return RequestError(
                code,
                f"{where} has unknown feature(s): {_listing(extra)}. "
                f"The model takes exactly: {_listing(self.feature_names)}",
            )
        e = errs[0]
        name = str(e["loc"][1])
        value = e.get("input")
        if code == "wrong_type":
            if name in self._numeric_names:
                expected = "a number (JSON integer or float; booleans and strings are not numbers)"
            else:
                expected = f"a string, one of: {_listing(self._allowed.get(name, ()))}"
            return RequestError(code, f"{where}.{name} must be {expected}, got {_json_type(value)}")
        if code == "non_finite_number":
            return RequestError(code, f"{where}.{name} must be a finite number, got {value!r}")
        if code == "number_out_of_range":
            return RequestError(
                code,
                f"{where}.{name} is out of range: {_short(value)}; numbers must be within +-{FLOAT32_MAX:.6g}",
            )
        # unknown_category
        return RequestError(
            code,
            f"{where}.{name} has unknown category {_short(value)}; allowed: {_listing(self._allowed.get(name, ()))}",
        )

    # ---- encoding --------------------------------------------------------------------------------------------------
    def encode(self, rows: Sequence[dict[str, Any]]) -> np.ndarray:
        """Validated rows -> float32 C-contiguous matrix in ``encoded_columns`` order (one-hot for categoricals)."""
        return np.array(self.encode_lists(rows), dtype=np.float32)

    def encode_lists(self, rows: Sequence[dict[str, Any]]) -> list[list[float]]:
        numeric = self._numeric
        categorical = self._categorical
        width = self.n_columns
        out = []
        for row in rows:
            values = [0.0] * width
            for name, col in numeric:
                values[col] = row[name]
            for name, index in categorical:
                values[index[row[name]]] = 1.0
            out.append(values)
        return out

    def encode_csv(self, rows: Sequence[dict[str, Any]]) -> str:
        """Validated rows -> CSV without header (the SageMaker XGBoost serving input), one line per row."""
        return "\n".join(",".join(map(repr, values)) for values in self.encode_lists(rows))


def _check_float32_range(value: float) -> float:
    if -FLOAT32_MAX <= value <= FLOAT32_MAX:
        return value
    raise PydanticCustomError("number_out_of_range", "number out of range")


def _category_checker(categories: tuple[str, ...]):
    allowed = frozenset(categories)

    def check(value: str) -> str:
        if value in allowed:
            return value
        raise PydanticCustomError("unknown_category", "unknown category")

    return check
