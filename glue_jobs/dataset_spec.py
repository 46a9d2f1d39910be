"""The schema of one dataset, read from its **dataset schema document** (standard library only).

The document is JSON, built once from the configuration (``platform_config``: ``DatasetConfig.schema_document()``),
passed whole to the Glue job as ``--dataset_schema`` and used by the construct for the catalog table. Version 1::

    {
      "schema_version": 1,
      "name": "abalone",
      "format": {"type": "csv", "header": true, "delimiter": ",", "quote": "\\"", "encoding": "UTF-8"},
      "columns": [
        {"raw_name": "sex", "name": "sex", "type": "string", "nullable": false, "allowed_values": ["F", "I", "M"],
         "upper_case": true, "min": null, "max": null},
        {"raw_name": "rings", "name": "rings", "type": "integer", "nullable": false, "allowed_values": null,
         "upper_case": false, "min": 0, "max": 100}
      ],
      "max_reject_ratio": 0.05
    }

Every key is required and no other key is accepted. Supported in version 1:

- ``format``: ``type`` ``"csv"`` only, with ``header`` ``true`` (the first line names the columns); ``delimiter`` and
  ``quote`` one character each, different, neither a line break (a quote inside a quoted field is doubled, RFC 4180);
  ``encoding`` ``"UTF-8"`` only.
- ``columns``: at least one, in curated order. ``raw_name``: the header name in the raw file; ``name``: the curated
  column name (``[a-z][a-z0-9_]*``, as Glue and Athena store them); ``type``: ``string``, ``double`` or ``integer``;
  ``nullable``: whether a missing value is allowed; ``allowed_values`` and ``upper_case``: strings only; ``min`` and
  ``max``: inclusive bounds, numeric columns only, ``null`` for unbounded.
- ``max_reject_ratio``: in [0, 1]; the job fails when rejected / rows in is greater.

``DatasetSpec.from_document`` raises a one-line ``ValueError`` naming the field, e.g.
``columns[3].type: 'date' is not supported; use string, double or integer``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

#: The document version this module reads.
SCHEMA_VERSION = 1
#: Column types of a document, in the order error messages list them.
COLUMN_TYPES = ("string", "double", "integer")
#: Columns the job adds to its outputs; a dataset cannot use these names.
RESERVED_COLUMNS = ("reject_reason", "ingest_date", "_corrupt_record")
#: Values read as "missing" (compared after trimming, case-insensitively); "nan" is how Python prints a float NaN.
DEFAULT_MISSING_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none", "?"})

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_DOCUMENT_KEYS = ("schema_version", "name", "format", "columns", "max_reject_ratio")
_FORMAT_KEYS = ("type", "header", "delimiter", "quote", "encoding")
_COLUMN_KEYS = ("raw_name", "name", "type", "nullable", "allowed_values", "upper_case", "min", "max")


def header_key(name: str) -> str:
    """Canonical form of a header name: no BOM, lower case, runs of blanks, ``_`` or ``-`` -> one ``_``."""
    return re.sub(r"[\s_\-]+", "_", name.replace("\ufeff", "").strip().lower()).strip("_")


class SpecFieldError(ValueError):
    """A field of a dataset spec is invalid; ``str()`` is ``"<field>: <reason>"``."""

    def __init__(self, field_name: str, reason: str) -> None:
        super().__init__(f"{field_name}: {reason}")
        self.field_name = field_name
        self.reason = reason


@dataclass(frozen=True)
class CsvFormat:
    """How the raw files are written: CSV with a header line (see the module docstring for what is supported)."""

    delimiter: str = ","
    quote: str = '"'
    encoding: str = "UTF-8"

    def __post_init__(self) -> None:
        for name in ("delimiter", "quote"):
            value = getattr(self, name)
            if not isinstance(value, str) or len(value) != 1 or value in "\r\n":
                raise SpecFieldError(name, f"{value!r} must be one character other than a line break")
        if self.delimiter == self.quote:
            raise SpecFieldError("quote", f"{self.quote!r} must differ from the delimiter")
        if not isinstance(self.encoding, str) or self.encoding.upper().replace("_", "-") != "UTF-8":
            raise SpecFieldError("encoding", f"{self.encoding!r} is not supported; use UTF-8")


@dataclass(frozen=True)
class ColumnSpec:
    """One column of a dataset: its raw and curated names, and the values it accepts.

    Attributes:
        raw_name: the header name in the raw CSV (``"whole weight"``).
        name: the curated column name (``"whole_weight"``).
        type: ``"string"``, ``"double"`` or ``"integer"``.
        nullable: whether a missing value is allowed (it becomes null); otherwise it rejects the row. Default: False.
        allowed_values: for strings, the only accepted values (after trimming and ``upper_case``). Default: any.
        min_value, max_value: inclusive numeric bounds, ``None`` for unbounded (default). Numbers are always finite.
        upper_case: for strings, upper-case the trimmed value before checking it. Default: False.
    """

    raw_name: str
    name: str
    type: str
    nullable: bool = False
    allowed_values: Optional[tuple[str, ...]] = None
    min_value: Optional[float] = None
    max_value: Optional[float] = None
    upper_case: bool = False

    def __post_init__(self) -> None:
        problem = self._problem()
        if problem:
            raise SpecFieldError(*problem)

    def _problem(self) -> Optional[tuple[str, str]]:
        """The first ``(field, reason)`` that is wrong with this column, named as in the document, or None."""
        if not isinstance(self.raw_name, str) or not self.raw_name.strip() or not header_key(self.raw_name):
            return "raw_name", f"{self.raw_name!r} must be a non-blank header name"
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            return "name", f"{self.name!r} must be lower case letters, digits and '_', starting with a letter"
        if self.name in RESERVED_COLUMNS or self.name.startswith("__"):
            return "name", f"{self.name!r} is reserved for the job's own columns {list(RESERVED_COLUMNS)}"
        if self.type not in COLUMN_TYPES:
            return "type", f"{self.type!r} is not supported; use string, double or integer"
        is_string = self.type == "string"
        if self.allowed_values is not None:
            if not is_string:
                return "allowed_values", "only supported for string columns"
            if not self.allowed_values:
                return "allowed_values", "must list at least one value, or be null"
            if self.upper_case and any(v != v.upper() for v in self.allowed_values):
                bad = next(v for v in self.allowed_values if v != v.upper())
                return "allowed_values", f"{bad!r} can never match: upper_case is true"
        if self.upper_case and not is_string:
            return "upper_case", "only supported for string columns"
        for label, bound in (("min", self.min_value), ("max", self.max_value)):
            if bound is not None and is_string:
                return label, "only supported for numeric columns"
        if self.min_value is not None and self.max_value is not None and self.min_value > self.max_value:
            return "min", f"{self.min_value:g} is greater than max {self.max_value:g}"
        return None


@dataclass(frozen=True)
class DatasetSpec:
    """The schema of one dataset: its columns in curated order, its raw file format and its reject-ratio limit.

    Every column must be present in the raw header, and the header must have no other column (``nullable`` is about
    values, not about the header). ``max_reject_ratio``: default 0.1. ``missing_tokens``: default
    ``DEFAULT_MISSING_TOKENS``. ``deduplicate``: reject rows equal to an earlier valid row; default True.
    """

    name: str
    columns: tuple[ColumnSpec, ...]
    format: CsvFormat = field(default_factory=CsvFormat)
    max_reject_ratio: float = 0.1
    missing_tokens: frozenset[str] = DEFAULT_MISSING_TOKENS
    deduplicate: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            raise SpecFieldError("name", f"{self.name!r} must be lower case letters, digits and '_'")
        if not self.columns:
            raise SpecFieldError("columns", "must list at least one column")
        if not _is_number(self.max_reject_ratio) or not 0 <= self.max_reject_ratio <= 1:
            raise SpecFieldError("max_reject_ratio", f"{self.max_reject_ratio!r} must be a number in [0, 1]")
        seen: dict[str, int] = {}
        for i, col in enumerate(self.columns):
            for label, key in (("name", col.name), ("raw_name", header_key(col.raw_name))):
                first = seen.setdefault(key, i)
                if first != i:
                    raise SpecFieldError(
                        f"columns[{i}].{label}", f"{getattr(col, label)!r} matches columns[{first}] as well"
                    )

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> "DatasetSpec":
        """Parse and validate a dataset schema document (version 1, see the module docstring).

        Raises:
            ValueError: one line, ``"<field>: <problem>"``, for the first problem found.
        """
        _check_keys(doc, _DOCUMENT_KEYS, "")
        version = doc["schema_version"]
        if version != SCHEMA_VERSION or isinstance(version, bool):
            raise ValueError(f"schema_version: {version!r} is not supported; this job reads version {SCHEMA_VERSION}")
        columns_doc = doc["columns"]
        if not isinstance(columns_doc, list) or not columns_doc:
            raise ValueError("columns: must be a non-empty list of columns")
        columns = tuple(_column_from_document(c, f"columns[{i}]") for i, c in enumerate(columns_doc))
        return cls(name=doc["name"], columns=columns, format=_format_from_document(doc["format"]),
                   max_reject_ratio=doc["max_reject_ratio"])

    @property
    def raw_header(self) -> str:
        """The expected raw CSV header line, e.g. ``sex,length,...,whole weight,...,rings``."""
        return self.format.delimiter.join(c.raw_name for c in self.columns)

    @property
    def column_names(self) -> list[str]:
        """The curated column names, in order."""
        return [c.name for c in self.columns]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_keys(doc: Any, keys: tuple[str, ...], where: str) -> None:
    """Raise unless ``doc`` is a mapping with exactly ``keys``."""
    label = where or "dataset schema"
    if not isinstance(doc, Mapping):
        raise ValueError(f"{label}: expected an object, got {type(doc).__name__}")
    missing = [k for k in keys if k not in doc]
    if missing:
        raise ValueError(f"{label}: missing field(s) {', '.join(missing)}")
    unknown = sorted(str(k) for k in doc if k not in keys)
    if unknown:
        raise ValueError(f"{label}: unknown field(s) {', '.join(unknown)}; expected {', '.join(keys)}")


def _format_from_document(doc: Any) -> CsvFormat:
    _check_keys(doc, _FORMAT_KEYS, "format")
    if doc["type"] != "csv":
        raise ValueError(f"format.type: {doc['type']!r} is not supported; use csv")
    if doc["header"] is not True:
        raise ValueError(f"format.header: {doc['header']!r} is not supported; raw files need a header line (true)")
    try:
        return CsvFormat(delimiter=doc["delimiter"], quote=doc["quote"], encoding=doc["encoding"])
    except SpecFieldError as err:
        raise ValueError(f"format.{err}") from None


def _column_from_document(doc: Any, where: str) -> ColumnSpec:
    _check_keys(doc, _COLUMN_KEYS, where)
    for key in ("nullable", "upper_case"):
        if not isinstance(doc[key], bool):
            raise ValueError(f"{where}.{key}: {doc[key]!r} must be true or false")
    allowed = doc["allowed_values"]
    if allowed is not None and (not isinstance(allowed, list) or not all(isinstance(v, str) for v in allowed)):
        raise ValueError(f"{where}.allowed_values: {allowed!r} must be a list of strings, or null")
    for key in ("min", "max"):
        if doc[key] is not None and not _is_number(doc[key]):
            raise ValueError(f"{where}.{key}: {doc[key]!r} must be a finite number, or null")
    try:
        return ColumnSpec(
            raw_name=doc["raw_name"],
            name=doc["name"],
            type=doc["type"],
            nullable=doc["nullable"],
            allowed_values=None if allowed is None else tuple(allowed),
            min_value=doc["min"],
            max_value=doc["max"],
            upper_case=doc["upper_case"],
        )
    except SpecFieldError as err:
        raise ValueError(f"{where}.{err}") from None
