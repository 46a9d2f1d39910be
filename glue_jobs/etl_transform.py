"""Raw CSV -> curated Parquet transform of the Glue ETL job, as plain PySpark.

This module holds everything the ETL does to the data and nothing Glue-specific (no ``awsglue`` import), so it runs
and is tested on a local SparkSession. ``etl_job.py`` is the thin Glue entry point around it; Glue ships this file
with ``--extra-py-files`` so that ``import etl_transform`` works there as a top-level module.

The dataset's schema is a ``DatasetSpec`` (``dataset_spec.py``, read from the dataset schema document). The pipeline
(see ``docs/CONTRACTS.md``, "Curated data"):

1. ``read_raw_csv``: the spec's CSV format (delimiter, quote), schema-on-read, every column a string, so a bad value
   is reported instead of being lost to a null by type inference. Lines with the wrong number of fields are flagged
   in ``_corrupt_record``.
2. ``normalize_columns``: map the raw header (``whole weight``) to the curated snake_case names (``whole_weight``).
   Header matching ignores case, surrounding blanks, a UTF-8 BOM and the spelling of separators (``Whole_Weight``
   matches). A header with a missing, an unexpected or an ambiguous column does not match the schema: ``transform``
   then rejects every row of the input with the ``SchemaError`` message as reason (``TransformResult.schema_error``)
   and curates nothing; ``etl_job`` quarantines the rows and fails the run.
3. ``validate``: trim, check and cast every value explicitly. A value that is missing, fails a cast, is not in the
   allowed set or is out of range rejects its row, with every problem of the row listed in ``reject_reason`` in
   column order (``"sex: 'X' not in [F, I, M]; length: not a number ('abc')"``). Rows equal to an earlier valid row
   after cleaning are rejected as ``"duplicate of an earlier row"``; the first one (in input order) is kept.
4. ``add_ingest_date``: the partition column ``ingest_date`` (a ``DateType``, written as ``ingest_date=YYYY-MM-DD``).
5. ``write_outputs``: curated rows to Parquet partitioned by ``ingest_date`` (append), rejected rows (raw strings plus
   ``reject_reason`` and ``ingest_date``) to JSON partitioned by ``ingest_date`` (append).

``transform`` runs steps 2-4 and guarantees ``rows_in == rows_curated + rows_rejected``: it counts the three frames
and raises ``CountInvariantError`` if they disagree, so no row is ever dropped silently.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence, Union

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.window import Window

if __package__:  # imported as glue_jobs.etl_transform (tests, demo)
    from .dataset_spec import ColumnSpec, CsvFormat, DatasetSpec, header_key
else:  # run by Glue: dataset_spec.py is a top-level module from the same --extra-py-files zip
    from dataset_spec import ColumnSpec, CsvFormat, DatasetSpec, header_key

__all__ = ["ColumnSpec", "CsvFormat", "DatasetSpec", "SchemaError", "TransformResult", "transform", "read_raw_csv"]

LOG = logging.getLogger(__name__)

#: Column of the rejected rows that says why each one was rejected.
REJECT_REASON = "reject_reason"
#: Partition column of both outputs.
INGEST_DATE = "ingest_date"
#: Column where ``read_raw_csv`` keeps a raw line whose number of fields does not match the header.
CORRUPT_RECORD = "_corrupt_record"
#: Spark SQL conf that ``read_raw_csv`` turns off so that malformed lines are always detected.
CSV_COLUMN_PRUNING_CONF = "spark.sql.csv.parser.columnPruning.enabled"
#: Reason (first in the list) for a line whose number of fields differs from the header's.
MALFORMED_REASON = "malformed CSV line: field count differs from the header"
#: Reason given to a valid row that equals an earlier valid row after cleaning.
DUPLICATE_REASON = "duplicate of an earlier row"

# Internal working columns; never written.
_ROW_ID = "__row_id"
_REASONS = "__reasons"
_VALID = "__valid"
_DUP_RANK = "__dup_rank"
_TYPED_PREFIX = "__typed__"

# A decimal number as written in a CSV: optional sign, digits with an optional fraction, optional exponent.
# Stricter than Spark's string->double cast on purpose: that cast also accepts "NaN", "Infinity" and "1d".
_NUMBER_RE = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$"
# An integer; an integral decimal such as "15.0" is accepted, "15.5" is not.
_INTEGER_RE = r"^[+-]?[0-9]+(\.0*)?$"
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

_SPARK_TYPES = {"string": T.StringType(), "double": T.DoubleType(), "integer": T.IntegerType()}


class SchemaError(ValueError):
    """The input's header does not match the dataset's schema (a column is missing, unexpected or ambiguous)."""


class CountInvariantError(RuntimeError):
    """``rows_in != rows_curated + rows_rejected``: a row was lost or duplicated, so the run must not be trusted."""


def as_spec(dataset: Union[DatasetSpec, Mapping[str, Any]]) -> DatasetSpec:
    """``dataset`` as a ``DatasetSpec``: a spec is passed through, a schema document is parsed (``ValueError``)."""
    return dataset if isinstance(dataset, DatasetSpec) else DatasetSpec.from_document(dataset)


def spark_type(col: ColumnSpec) -> T.DataType:
    """The curated Spark type of a column: ``StringType``, ``DoubleType`` or ``IntegerType``."""
    return _SPARK_TYPES[col.type]


def curated_schema(spec: DatasetSpec) -> T.StructType:
    """Schema of ``TransformResult.curated`` (without ``ingest_date``)."""
    return T.StructType([T.StructField(c.name, spark_type(c), c.nullable) for c in spec.columns])


def raw_schema(spec: DatasetSpec) -> T.StructType:
    """Schema of the normalized raw input: every curated column name, as a nullable string."""
    return T.StructType([T.StructField(c.name, T.StringType(), True) for c in spec.columns])


def rejected_schema(spec: DatasetSpec) -> T.StructType:
    """Schema of ``TransformResult.rejected`` (without ``ingest_date``): raw strings plus ``reject_reason``."""
    return T.StructType(raw_schema(spec).fields + [T.StructField(REJECT_REASON, T.StringType(), False)])


@dataclass(frozen=True)
class TransformResult:
    """What ``transform`` returns.

    Attributes:
        curated: the valid, de-duplicated rows, typed per the spec, plus ``ingest_date``; in input order.
        rejected: the other rows, as raw strings, plus ``reject_reason`` and ``ingest_date``; in input order.
        counts: ``{"rows_in": ..., "rows_curated": ..., "rows_rejected": ...}``, with
            ``rows_in == rows_curated + rows_rejected`` (checked).
        dataset: the dataset name; ingest_date: the partition date.
        schema_error: why the input's header does not match the schema (then every row is rejected with this
            reason and nothing is curated), or None.
    """

    curated: DataFrame
    rejected: DataFrame
    counts: Mapping[str, int]
    dataset: str
    ingest_date: dt.date
    schema_error: Optional[str] = None
    _cached: tuple[DataFrame, ...] = field(default=(), repr=False, compare=False)

    @property
    def reject_ratio(self) -> float:
        """Share of the input rows that were rejected (0.0 for an empty input)."""
        rows_in = self.counts["rows_in"]
        return self.counts["rows_rejected"] / rows_in if rows_in else 0.0

    def unpersist(self) -> None:
        """Release the cached intermediate data once the outputs have been written."""
        for df in self._cached:
            df.unpersist()


# --------------------------------------------------------------------------------------------------------------------
# Header matching
# --------------------------------------------------------------------------------------------------------------------


def match_columns(columns: Sequence[str], spec: DatasetSpec) -> dict[str, str]:
    """Match an input's column names to the spec; return curated name -> input column name for every spec column.

    A raw name matches a spec column when it equals, after ``header_key``, the column's raw name or its curated name.
    ``_corrupt_record`` and internal ``__`` columns are skipped (``validate`` handles the first).

    Raises:
        SchemaError: the header does not match: one line naming every missing column, every unexpected column and
            every column matched twice, then the expected header.
    """
    by_key: dict[str, ColumnSpec] = {}
    for col in spec.columns:
        by_key[header_key(col.raw_name)] = col
        by_key[header_key(col.name)] = col
    mapping: dict[str, str] = {}
    unexpected: list[str] = []
    twice: list[str] = []
    for input_name in columns:
        if input_name == CORRUPT_RECORD or input_name.startswith("__"):
            continue
        col = by_key.get(header_key(input_name))
        if col is None:
            unexpected.append(input_name)
        elif col.name in mapping:
            twice.append(f"{mapping[col.name]!r} and {input_name!r} both match {col.raw_name!r}")
        else:
            mapping[col.name] = input_name
    missing = [c.raw_name for c in spec.columns if c.name not in mapping]
    problems = [
        *([f"missing column(s): {', '.join(missing)}"] if missing else []),
        *([f"unexpected column(s): {', '.join(unexpected)}"] if unexpected else []),
        *twice,
    ]
    if problems:
        raise SchemaError(
            f"{spec.name}: header does not match the schema: {'; '.join(problems)}; expected header: {spec.raw_header}"
        )
    return mapping


def normalize_columns(df: DataFrame, spec: DatasetSpec) -> DataFrame:
    """Rename the raw columns to the curated names, keeping the raw values as strings.

    The result has exactly the spec's columns, in spec order, all strings (a non-string input column, e.g. from a
    Glue DynamicFrame that inferred a type, is cast to string), followed by ``_corrupt_record`` and the internal row id
    when the input has them. A zero-column input (what Spark reads from a
    zero-byte file, or Glue from an empty bookmark increment) is an empty input: the result has the spec's columns and
    no rows.

    Raises:
        SchemaError: see ``match_columns``; also for a zero-column input that somehow has rows.
    """
    if not df.columns:
        if not df.isEmpty():
            raise SchemaError(f"{spec.name}: input has rows but no columns; expected header: {spec.raw_header}")
        return df.sparkSession.createDataFrame([], raw_schema(spec))
    mapping = match_columns(df.columns, spec)
    selected = [F.col(_quote(mapping[c.name])).cast(T.StringType()).alias(c.name) for c in spec.columns]
    selected += [F.col(c) for c in (CORRUPT_RECORD, _ROW_ID) if c in df.columns]
    return df.select(*selected)


def _quote(name: str) -> str:
    """Quote a column name for ``F.col`` (names with blanks, dots or backticks)."""
    return "`" + name.replace("`", "``") + "`"


# --------------------------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------------------------


def _fmt_bound(value: float) -> str:
    return f"{value:g}"


def _quoted_value(raw: Column) -> Column:
    """``'<raw value>'`` for a reject reason (the raw, untrimmed value)."""
    return F.concat(F.lit("'"), raw, F.lit("'"))


def _check_column(col: ColumnSpec, spec: DatasetSpec) -> tuple[Column, Column]:
    """Return ``(typed_value, error)`` expressions for one column of a normalized frame.

    ``typed_value`` is the cleaned, cast value, or null when the value is missing or invalid; ``error`` is the reject
    reason for this column, or null. A cast is only attempted on a string that passed the explicit format check, so a
    failed cast can never turn into a silent null (and ANSI mode can never raise on bad input).
    """
    raw = F.col(col.name)
    value = F.regexp_replace(raw, r"^\s+|\s+$", "")
    missing = raw.isNull() | F.lower(value).isin(*sorted(spec.missing_tokens))
    missing_error = F.lit(f"{col.name}: missing") if not col.nullable else F.lit(None).cast(T.StringType())

    if col.type == "string":
        cleaned = F.upper(value) if col.upper_case else value
        if col.allowed_values is None:
            bad = F.lit(False)
            bad_error = F.lit(None).cast(T.StringType())
        else:
            bad = ~cleaned.isin(*col.allowed_values)
            allowed = ", ".join(sorted(col.allowed_values))
            bad_error = F.concat(F.lit(f"{col.name}: "), _quoted_value(raw), F.lit(f" not in [{allowed}]"))
        typed = F.when(~missing & ~bad, cleaned)
        error = F.when(missing, missing_error).when(bad, bad_error)
        return typed, error

    is_int = col.type == "integer"
    well_formed = value.rlike(_INTEGER_RE if is_int else _NUMBER_RE)
    what = "not an integer" if is_int else "not a number"
    format_error = F.concat(F.lit(f"{col.name}: {what} ("), _quoted_value(raw), F.lit(")"))
    number = F.when(~missing & well_formed, value.cast(T.DoubleType()))
    out_of_range = F.abs(number) == float("inf")  # "1e999" is well-formed but overflows
    if col.min_value is not None:
        out_of_range = out_of_range | (number < F.lit(float(col.min_value)))
    if col.max_value is not None:
        out_of_range = out_of_range | (number > F.lit(float(col.max_value)))
    low = "-inf" if col.min_value is None else _fmt_bound(col.min_value)
    high = "inf" if col.max_value is None else _fmt_bound(col.max_value)
    range_error = F.concat(F.lit(f"{col.name}: "), _quoted_value(raw), F.lit(f" out of range [{low}, {high}]"))
    ok = ~missing & well_formed & ~F.coalesce(out_of_range, F.lit(False))
    typed = F.when(ok, number.cast(spark_type(col)))
    error = F.when(missing, missing_error).when(~well_formed, format_error).when(out_of_range, range_error)
    return typed, error


def _stage(df: DataFrame, spec: DatasetSpec) -> DataFrame:
    """Validate a normalized frame, keeping one row per input row.

    Adds, next to the raw columns, a typed column per spec column, ``__reasons`` (null for a valid row),
    ``__valid`` and ``__dup_rank`` (1 for the first of equal valid rows, in ``__row_id`` order).
    """
    if _ROW_ID not in df.columns:
        df = df.withColumn(_ROW_ID, F.monotonically_increasing_id())
    typed_cols, errors = [], []
    if CORRUPT_RECORD in df.columns:
        errors.append(
            F.when(
                F.col(CORRUPT_RECORD).isNotNull(),
                F.lit(MALFORMED_REASON),
            )
        )
    for col in spec.columns:
        typed, error = _check_column(col, spec)
        typed_cols.append(typed.alias(_TYPED_PREFIX + col.name))
        errors.append(error)
    reasons = F.concat_ws("; ", *errors)  # skips the nulls
    staged = df.select(
        F.col(_ROW_ID),
        *[F.col(c.name) for c in spec.columns],
        *typed_cols,
        F.when(reasons != "", reasons).alias(_REASONS),
    ).withColumn(_VALID, F.col(_REASONS).isNull())
    if spec.deduplicate:
        keys = [F.col(_VALID)] + [F.col(_TYPED_PREFIX + c.name) for c in spec.columns]
        rank = F.row_number().over(Window.partitionBy(*keys).orderBy(_ROW_ID))
    else:
        rank = F.lit(1)
    return staged.withColumn(_DUP_RANK, F.when(F.col(_VALID), rank).otherwise(F.lit(1)))


def _split(staged: DataFrame, spec: DatasetSpec) -> tuple[DataFrame, DataFrame]:
    """Split a staged frame into (curated typed rows, rejected raw rows + reason), each in input order."""
    is_good = F.col(_VALID) & (F.col(_DUP_RANK) == 1)
    good = (
        staged.filter(is_good)
        .orderBy(_ROW_ID)
        .select(*[F.col(_TYPED_PREFIX + c.name).alias(c.name) for c in spec.columns])
    )
    rejected = (
        staged.filter(~is_good)
        .orderBy(_ROW_ID)
        .select(
            *[F.col(c.name) for c in spec.columns],
            F.coalesce(F.col(_REASONS), F.lit(DUPLICATE_REASON)).alias(REJECT_REASON),
        )
    )
    return good, rejected


def validate(df: DataFrame, spec: DatasetSpec) -> tuple[DataFrame, DataFrame]:
    """Check, clean, cast and de-duplicate a frame produced by ``normalize_columns``.

    Returns ``(good_df, rejected_df)``:

    - ``good_df``: the curated columns, typed per the spec (trimmed; ``upper_case`` strings upper-cased), one row per
      distinct valid row, the first occurrence kept.
    - ``rejected_df``: every other row with its raw, untrimmed string values and a ``reject_reason`` listing all of
      the row's problems in column order, separated by ``"; "``:
      ``"<col>: missing"``, ``"<col>: not a number ('<raw>')"``, ``"<col>: not an integer ('<raw>')"``,
      ``"<col>: '<raw>' out of range [<min>, <max>]"``, ``"<col>: '<raw>' not in [<allowed>]"``,
      ``"malformed CSV line: field count differs from the header"``, or, for a valid row equal to an earlier one,
      ``"duplicate of an earlier row"``.

    Values are trimmed of blanks and a value in ``spec.missing_tokens`` (case-insensitive) counts as missing. Numbers
    must be plain decimals (``"NaN"``, ``"Infinity"``, ``"0x10"`` and ``"1d"`` are rejected although Spark's cast
    would accept some of them); integers may be written ``"15"`` or ``"15.0"``.
    """
    staged = _stage(df, spec)
    return _split(staged, spec)


# --------------------------------------------------------------------------------------------------------------------
# Ingest date, entry point, I/O
# --------------------------------------------------------------------------------------------------------------------


def parse_ingest_date(value: Union[str, dt.date]) -> dt.date:
    """Return ``value`` as a date; a string must be exactly ``YYYY-MM-DD`` (a valid calendar date)."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if not isinstance(value, str) or not _DATE_RE.match(value):
        raise ValueError(f"ingest date must be YYYY-MM-DD, got {value!r}")
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"ingest date must be a valid YYYY-MM-DD date, got {value!r}") from None


def add_ingest_date(df: DataFrame, date: Union[str, dt.date]) -> DataFrame:
    """Append the ``ingest_date`` column (``DateType``, the same value on every row)."""
    return df.withColumn(INGEST_DATE, F.lit(parse_ingest_date(date)).cast(T.DateType()))


def check_counts(counts: Mapping[str, int]) -> None:
    """Raise ``CountInvariantError`` unless ``rows_in == rows_curated + rows_rejected``."""
    rows_in, curated, rejected = counts["rows_in"], counts["rows_curated"], counts["rows_rejected"]
    if rows_in != curated + rejected:
        raise CountInvariantError(
            f"row count invariant violated: rows_in={rows_in} != rows_curated={curated} + rows_rejected={rejected}"
        )


def transform(
    spark: SparkSession,
    raw_df: DataFrame,
    dataset: Union[DatasetSpec, Mapping[str, Any]],
    ingest_date: Union[str, dt.date],
) -> TransformResult:
    """Turn a raw frame (string columns named as in the CSV header) into curated and rejected frames.

    ``dataset`` is a ``DatasetSpec`` or a dataset schema document. ``raw_df`` is what ``read_raw_csv`` returns, or a
    Glue DynamicFrame's ``toDF()``; a frame without columns (zero-byte file, empty bookmark increment) is an empty
    input and gives empty results. ``rows_in`` is counted on ``raw_df`` itself (one extra pass over the input),
    independently of the validation, so that the invariant really checks that no row was lost. The validated rows are
    persisted (memory and disk), in input order, so that counting and writing do not recompute them; call
    ``TransformResult.unpersist`` when done.

    A header that does not match the schema (see ``match_columns``) rejects the whole input: every row goes to
    ``rejected`` with its values under the input's own column names and the ``SchemaError`` message as
    ``reject_reason``, nothing is curated, and ``schema_error`` holds the message.

    Raises:
        ValueError: invalid schema document or bad ingest date.
        CountInvariantError: the counts do not add up (a bug; never expected).
    """
    spec = as_spec(dataset)
    date = parse_ingest_date(ingest_date)
    if not raw_df.columns and raw_df.isEmpty():  # a zero-byte file, or an empty Glue bookmark increment
        raw_df = spark.createDataFrame([], raw_schema(spec))
    try:
        match_columns(raw_df.columns, spec)
    except SchemaError as err:
        return _reject_input(spark, raw_df, spec, date, str(err))
    raw_df = raw_df.withColumn(_ROW_ID, F.monotonically_increasing_id())
    normalized = normalize_columns(raw_df, spec)
    # Sorted by input position before caching: the writers add their own sort (by ingest_date), which makes Spark
    # drop any sort inside the query; a sorted cache keeps the files in input order regardless.
    staged = _stage(normalized, spec).orderBy(_ROW_ID).persist(StorageLevel.MEMORY_AND_DISK)
    good, rejected = _split(staged, spec)
    curated = add_ingest_date(good, date)
    rejected = add_ingest_date(rejected, date)
    counts = {
        "rows_in": raw_df.count(),
        "rows_curated": curated.count(),
        "rows_rejected": rejected.count(),
    }
    check_counts(counts)
    return TransformResult(
        curated=curated, rejected=rejected, counts=counts, dataset=spec.name, ingest_date=date, _cached=(staged,)
    )


def _reject_input(
    spark: SparkSession, raw_df: DataFrame, spec: DatasetSpec, date: dt.date, reason: str
) -> TransformResult:
    """The result for an input whose header does not match: every row rejected with ``reason``, nothing curated.

    The rejected rows keep every input column (as strings, under the input's names, so that no value is lost) except
    ``_corrupt_record`` and internal columns.
    """
    kept = [c for c in raw_df.columns if c != CORRUPT_RECORD and not c.startswith("__")]
    rejected = raw_df.select(
        *[F.col(_quote(c)).cast(T.StringType()).alias(c) for c in kept], F.lit(reason).alias(REJECT_REASON)
    )
    rejected = add_ingest_date(rejected, date)
    curated = add_ingest_date(spark.createDataFrame([], curated_schema(spec)), date)
    counts = {"rows_in": raw_df.count(), "rows_curated": 0, "rows_rejected": rejected.count()}
    check_counts(counts)
    return TransformResult(
        curated=curated, rejected=rejected, counts=counts, dataset=spec.name, ingest_date=date, schema_error=reason
    )


def csv_options(fmt: CsvFormat) -> dict[str, str]:
    """Spark CSV reader options of a raw format: RFC 4180 quoting (a quote in a quoted field is doubled)."""
    return {"sep": fmt.delimiter, "quote": fmt.quote, "escape": fmt.quote, "encoding": fmt.encoding}


def read_raw_csv(
    spark: SparkSession, path: Union[str, Sequence[str]], fmt: Optional[CsvFormat] = None
) -> DataFrame:
    """Read raw CSV file(s) with a header row, every column as a string (schema-on-read).

    ``fmt``: the dataset's format (``DatasetSpec.format``: delimiter, quote, encoding); default comma, double quote,
    UTF-8. The header is read first to build an all-string schema, then the data is read with an extra
    ``_corrupt_record`` column that holds any line whose number of fields differs from the header (``validate``
    rejects those lines). Quotes follow RFC 4180 (``"a ""quoted"" value"``). All files must share the first file's
    header (``enforceSchema=false``: Spark fails on a file with a different header instead of mis-assigning its
    columns). A zero-byte file gives a frame with no columns and no rows.

    Side effect: sets ``spark.sql.csv.parser.columnPruning.enabled=false`` on the session. With pruning on, Spark
    parses only the columns a query uses and checks the field count against those alone, so a short or long line
    would not be flagged in ``_corrupt_record`` once the unexpected columns are dropped.
    """
    spark.conf.set(CSV_COLUMN_PRUNING_CONF, "false")
    paths: list[str] = [path] if isinstance(path, str) else list(path)
    options = {"header": "true", "inferSchema": "false", "mode": "PERMISSIVE", **csv_options(fmt or CsvFormat())}
    header = spark.read.options(**options).csv(paths)
    if not header.columns:
        return header
    schema = T.StructType(
        [T.StructField(f.name, T.StringType(), True) for f in header.schema.fields]
        + [T.StructField(CORRUPT_RECORD, T.StringType(), True)]
    )
    return (
        spark.read.options(**options)
        .option("columnNameOfCorruptRecord", CORRUPT_RECORD)
        .option("enforceSchema", "false")
        .schema(schema)
        .csv(paths)
    )


def write_curated(result: TransformResult, curated_path: str) -> int:
    """Append the curated rows to Parquet under ``curated_path``, partitioned by ``ingest_date``.

    Returns the number of rows written; nothing is written (not even an empty partition) when there are none.
    """
    rows = result.counts["rows_curated"]
    if rows:
        result.curated.write.mode("append").partitionBy(INGEST_DATE).parquet(curated_path)
    return rows


def write_quarantine(result: TransformResult, quarantine_path: str) -> int:
    """Append the rejected rows to JSON Lines under ``quarantine_path``, partitioned by ``ingest_date``.

    Each record holds the raw string values (nulls kept as ``null``) and ``reject_reason``. Returns the number of rows
    written; nothing is written when there are none.
    """
    rows = result.counts["rows_rejected"]
    if rows:
        (
            result.rejected.write.mode("append")
            .partitionBy(INGEST_DATE)
            .option("ignoreNullFields", "false")
            .json(quarantine_path)
        )
    return rows


def write_outputs(result: TransformResult, curated_path: str, quarantine_path: str) -> dict[str, int]:
    """Write both outputs (see ``write_curated`` and ``write_quarantine``); return rows written per output."""
    return {
        "curated": write_curated(result, curated_path),
        "quarantine": write_quarantine(result, quarantine_path),
    }

