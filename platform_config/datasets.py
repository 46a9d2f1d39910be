"""Datasets by configuration: ``datasets:`` in ``config/<env>.yaml``.

A dataset is declared once, here, and its schema reaches every consumer from this one place as the **dataset schema
document** (:meth:`DatasetConfig.schema_document`, JSON, version 1): the Glue job (as its ``--dataset_schema``
argument), the Glue Data Catalog table, the preprocessing step (features = columns - target - excluded; categorical or
numeric from the type), the model's feature spec and the inference function's validation. No other copy exists.

    datasets:
      - name: abalone
        format: {delimiter: ","}          # CSV with a header line; see CsvFormat
        max_reject_ratio: 0.1
        triggers: {raw_upload: true, schedule: "cron(0 3 * * ? *)"}
        columns:
          - {name: sex, type: string, allowed: [F, I, M], upper_case: true}
          - {name: whole_weight, raw: whole weight, type: double, min: 0, max: 10}
          - {name: rings, type: integer, min: 0, max: 100}
"""

from __future__ import annotations

import re
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: Version of the dataset schema document; a consumer refuses a document of another version.
SCHEMA_VERSION = 1
#: Column types the ETL, the catalog and preprocessing support, and their Glue Data Catalog types.
COLUMN_TYPES = {"string": "string", "double": "double", "integer": "int"}
#: Names the ETL adds or uses internally; a dataset column cannot take them.
RESERVED_COLUMNS = frozenset({"ingest_date", "reject_reason", "_corrupt_record"})
#: Curated column and dataset names: Glue Data Catalog and Athena friendly (lower case, digits, underscores).
COLUMN_NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
DATASET_NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
DATASET_NAME_MAX = 32


def header_key(name: str) -> str:
    """How the ETL compares header names: case, surrounding blanks and separators (`` ``, ``_``, ``-``) ignored."""
    return re.sub(r"[\s_\-]+", "_", name.replace("\ufeff", "").strip().lower()).strip("_")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CsvFormat(_Strict):
    """The raw files' format. Version 1 reads CSV with a header line, UTF-8, one record per line."""

    type: Literal["csv"] = "csv"
    header: Literal[True] = Field(default=True, description="The first line names the columns (required).")
    delimiter: str = Field(default=",", min_length=1, max_length=1, description="Field separator, one character.")
    quote: str = Field(default='"', min_length=1, max_length=1, description="Quote character, one character.")
    encoding: Literal["UTF-8"] = "UTF-8"

    @model_validator(mode="after")
    def _distinct(self) -> "CsvFormat":
        if self.delimiter == self.quote or self.delimiter in "\r\n":
            raise ValueError(f"delimiter {self.delimiter!r} must differ from quote {self.quote!r} and not be a newline")
        return self


class ColumnConfig(_Strict):
    """One column: its curated name, its raw header name, its type and the values it accepts."""

    name: str = Field(pattern=COLUMN_NAME_PATTERN, max_length=64, description="Curated (snake_case) name.")
    raw: Optional[str] = Field(default=None, min_length=1, description="Header name in the raw CSV; default: name.")
    type: Literal["string", "double", "integer"]
    nullable: bool = Field(default=False, description="A missing value is allowed (null); otherwise it rejects the row.")
    allowed: Optional[list[str]] = Field(default=None, min_length=1, description="string only: the accepted values.")
    upper_case: bool = Field(default=False, description="string only: upper-case the value before checking it.")
    min: Optional[float] = Field(default=None, description="Numeric only: inclusive lower bound.")
    max: Optional[float] = Field(default=None, description="Numeric only: inclusive upper bound.")

    @model_validator(mode="after")
    def _consistent(self) -> "ColumnConfig":
        numeric = self.type != "string"
        if numeric and (self.allowed is not None or self.upper_case):
            raise ValueError(f"column '{self.name}': allowed and upper_case apply to string columns only; remove them")
        if not numeric and (self.min is not None or self.max is not None):
            raise ValueError(f"column '{self.name}': min and max apply to double and integer columns only; remove them")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"column '{self.name}': min {self.min:g} is greater than max {self.max:g}; swap them")
        if self.allowed is not None:
            shown = [v.upper() for v in self.allowed] if self.upper_case else list(self.allowed)
            if len(set(shown)) != len(shown):
                raise ValueError(f"column '{self.name}': allowed has repeated values {shown}; list each once")
            if self.upper_case and shown != list(self.allowed):
                raise ValueError(f"column '{self.name}': with upper_case, list allowed values in upper case: {shown}")
        if self.name in RESERVED_COLUMNS:
            raise ValueError(f"column '{self.name}': the name is reserved by the ETL; rename it")
        return self

    @property
    def raw_name(self) -> str:
        return self.raw if self.raw is not None else self.name

    @property
    def is_numeric(self) -> bool:
        return self.type != "string"

    def document(self) -> dict[str, Any]:
        def number(v: Optional[float]) -> Optional[float | int]:
            if v is None:
                return None
            return int(v) if self.type == "integer" and float(v).is_integer() else float(v)

        return {
            "raw_name": self.raw_name,
            "name": self.name,
            "type": self.type,
            "nullable": self.nullable,
            "allowed_values": list(self.allowed) if self.allowed is not None else None,
            "upper_case": self.upper_case,
            "min": number(self.min),
            "max": number(self.max),
        }


class DatasetTriggers(_Strict):
    raw_upload: bool = Field(default=True, description="Run the ETL when an object lands under the dataset's raw prefix.")
    schedule: Optional[str] = Field(default=None, description="EventBridge expression, e.g. 'cron(0 3 * * ? *)'.")

    @model_validator(mode="after")
    def _schedule(self) -> "DatasetTriggers":
        if self.schedule is not None and not re.match(r"^(cron|rate)\(.+\)$", self.schedule):
            raise ValueError(
                f"schedule {self.schedule!r} must be an EventBridge expression such as 'cron(0 3 * * ? *)' or "
                "'rate(1 day)'"
            )
        return self


class DatasetConfig(_Strict):
    """One dataset of the lake: raw files under ``raw/<name>/``, curated Parquet under ``curated/<name>/``."""

    name: str = Field(pattern=DATASET_NAME_PATTERN, max_length=DATASET_NAME_MAX, description="Dataset (table) name.")
    format: CsvFormat = CsvFormat()
    columns: list[ColumnConfig] = Field(min_length=2, description="In curated order; a target and a feature at least.")
    max_reject_ratio: float = Field(default=0.1, ge=0.0, le=1.0, description="The ETL fails above this share.")
    triggers: DatasetTriggers = DatasetTriggers()

    @model_validator(mode="after")
    def _unique(self) -> "DatasetConfig":
        for what, values in (
            ("name", [c.name for c in self.columns]),
            ("raw header", [header_key(c.raw_name) for c in self.columns]),
        ):
            repeated = sorted({v for v in values if values.count(v) > 1})
            if repeated:
                raise ValueError(f"dataset '{self.name}': column {what}s must be unique; repeated: {repeated}")
        return self

    def column(self, name: str) -> Optional[ColumnConfig]:
        return next((c for c in self.columns if c.name == name), None)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def schema_document(self) -> dict[str, Any]:
        """The dataset schema document (version 1) every consumer reads; JSON-serializable, keys always present."""
        return {
            "schema_version": SCHEMA_VERSION,
            "name": self.name,
            "format": {
                "type": self.format.type,
                "header": self.format.header,
                "delimiter": self.format.delimiter,
                "quote": self.format.quote,
                "encoding": self.format.encoding,
            },
            "columns": [c.document() for c in self.columns],
            "max_reject_ratio": self.max_reject_ratio,
        }


def check_model_dataset(model: Any, dataset: DatasetConfig) -> None:
    """Cross-checks of a model against the dataset it trains on; a ValueError of one line naming the field and fix."""
    where = f"models '{model.name}'"
    target = dataset.column(model.target_column)
    if target is None:
        raise ValueError(
            f"{where}: target_column '{model.target_column}' is not a column of dataset '{dataset.name}'; use one of "
            f"{dataset.column_names}"
        )
    for col in model.exclude_columns:
        if dataset.column(col) is None or col == model.target_column:
            raise ValueError(
                f"{where}: exclude_columns '{col}' is not a feature of dataset '{dataset.name}'; use names from "
                f"{[c for c in dataset.column_names if c != model.target_column]}"
            )
    if len(dataset.columns) - 1 - len(set(model.exclude_columns)) < 1:
        raise ValueError(f"{where}: exclude_columns leaves no feature to train on; keep at least one column")
    if target.nullable:
        raise ValueError(f"{where}: target_column '{target.name}' is nullable in dataset '{dataset.name}'; set "
                         "nullable: false on it (a row without a label cannot train)")
    if model.problem_type == "regression":
        if not target.is_numeric:
            raise ValueError(f"{where}: regression needs a numeric target; '{target.name}' is a string column")
        if model.positive_label is not None:
            raise ValueError(f"{where}: positive_label applies to binary_classification only; remove it")
        return
    if target.is_numeric:
        if model.positive_label is not None:
            raise ValueError(f"{where}: target '{target.name}' is numeric: use positive_threshold, not positive_label")
        if model.positive_threshold is None:
            raise ValueError(f"{where}: binary_classification on numeric target '{target.name}' needs "
                             "positive_threshold (label = target >= threshold)")
        return
    if model.positive_threshold is not None:
        raise ValueError(f"{where}: target '{target.name}' is a string: use positive_label, not positive_threshold")
    if model.positive_label is None:
        raise ValueError(f"{where}: binary_classification on string target '{target.name}' needs positive_label "
                         f"(one of {target.allowed or 'its values'})")
    label = model.positive_label.upper() if target.upper_case else model.positive_label
    if target.allowed is not None and label not in target.allowed:
        raise ValueError(f"{where}: positive_label '{model.positive_label}' is not an allowed value of "
                         f"'{target.name}'; use one of {target.allowed}")
