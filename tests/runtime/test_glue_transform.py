"""Tests of the Glue ETL job's runtime code (glue_jobs/etl_transform.py, glue_jobs/etl_job.py) on a local Spark.

One SparkSession (local[1]) serves the whole module. Inputs are the shipped data/abalone.csv and small hand-made CSV
files; every transform is checked for rows_in == rows_curated + rows_rejected and for the exact reject reasons.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import logging
import os
import random
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("pyspark")

from pyspark.sql import SparkSession  # noqa: E402
from pyspark.sql import types as T  # noqa: E402

from glue_jobs import etl_job  # noqa: E402
from glue_jobs import etl_transform as et  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
ABALONE_CSV = REPO / "data" / "abalone.csv"
BREAST_CANCER_CSV = REPO / "data" / "breast_cancer.csv"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "datasets"
# The dataset schema documents, as the config builds them (DatasetConfig.schema_document()).
ABALONE_DOC = json.loads((FIXTURES / "abalone.json").read_text())
BREAST_CANCER_DOC = json.loads((FIXTURES / "breast_cancer.json").read_text())
ABALONE = et.DatasetSpec.from_document(ABALONE_DOC)
# The raw header and curated columns exactly as docs/CONTRACTS.md states them.
HEADER = "sex,length,diameter,height,whole weight,shucked weight,viscera weight,shell weight,rings"
CURATED_COLUMNS = [
    "sex", "length", "diameter", "height", "whole_weight", "shucked_weight", "viscera_weight", "shell_weight", "rings",
]
VALID = "M,0.455,0.365,0.095,0.514,0.2245,0.101,0.15,15"
VALID_TYPED = ("M", 0.455, 0.365, 0.095, 0.514, 0.2245, 0.101, 0.15, 15)
DATE = "2024-01-15"


@pytest.fixture(scope="module")
def spark():
    """One small local SparkSession for the module (Spark starts once)."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    session = (
        SparkSession.builder.master("local[1]")
        .appName("test_glue_transform")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.default.parallelism", "1")
        .config("spark.driver.memory", "512m")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def write_csv(directory: Path, name: str, text: str) -> str:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def run(spark, directory: Path, text: str, name: str = "raw.csv") -> et.TransformResult:
    """Write ``text`` as a CSV file, read it and transform it; check the count invariant on every result."""
    result = et.transform(spark, et.read_raw_csv(spark, write_csv(directory, name, text)), ABALONE, DATE)
    assert result.counts["rows_in"] == result.counts["rows_curated"] + result.counts["rows_rejected"]
    return result


def rejected_pairs(result: et.TransformResult) -> list[tuple[tuple, str]]:
    """The rejected rows as ((raw values...), reason), in input order."""
    return [
        (tuple(row[c] for c in CURATED_COLUMNS), row[et.REJECT_REASON]) for row in result.rejected.collect()
    ]


def curated_tuples(result: et.TransformResult) -> list[tuple]:
    return [tuple(row[c] for c in CURATED_COLUMNS) for row in result.curated.collect()]


# ----------------------------------------------------------------------------------------------------------------
# The dataset schema document
# ----------------------------------------------------------------------------------------------------------------


def test_abalone_document_matches_the_contract():
    spec = ABALONE
    assert spec.name == "abalone" and spec.max_reject_ratio == 0.05
    assert spec.raw_header == HEADER
    assert spec.column_names == CURATED_COLUMNS
    types = {f.name: f.dataType for f in et.curated_schema(spec).fields}
    assert types["sex"] == T.StringType() and types["rings"] == T.IntegerType()
    assert all(types[c] == T.DoubleType() for c in CURATED_COLUMNS[1:-1])
    sex = spec.columns[0]
    assert sex.allowed_values == ("F", "I", "M") and sex.upper_case and not sex.nullable
    assert all(c.min_value == 0 for c in spec.columns[1:]), "measurements and rings are non-negative"
    assert [c.max_value for c in spec.columns[1:]] == [5.0] * 3 + [10.0] * 4 + [100]
    assert et.rejected_schema(spec).names == CURATED_COLUMNS + ["reject_reason"]
    assert spec.format == et.CsvFormat(delimiter=",", quote='"', encoding="UTF-8")


def _doc(**changes):
    """The abalone document with ``changes`` applied: ``key=value``, or ``"columns.3.type"``-style paths via dict."""
    doc = json.loads(json.dumps(ABALONE_DOC))
    for path, value in changes.items():
        *parents, last = path.split("__")
        target = doc
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        if value is KeyError:
            del target[last]
        else:
            target[int(last) if last.isdigit() else last] = value
    return doc


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"columns__3__type": "date"}, "columns[3].type: 'date' is not supported; use string, double or integer"),
        ({"schema_version": 2}, "schema_version: 2 is not supported; this job reads version 1"),
        ({"name": "Abalone"}, "name: 'Abalone' must be lower case letters, digits and '_'"),
        ({"max_reject_ratio": 1.5}, "max_reject_ratio: 1.5 must be a number in [0, 1]"),
        ({"extra": 1}, "dataset schema: unknown field(s) extra; expected schema_version, name, format, columns, "
                       "max_reject_ratio"),
        ({"columns": []}, "columns: must be a non-empty list of columns"),
        ({"format__type": "parquet"}, "format.type: 'parquet' is not supported; use csv"),
        ({"format__header": False}, "format.header: False is not supported; raw files need a header line (true)"),
        ({"format__delimiter": ";;"}, "format.delimiter: ';;' must be one character other than a line break"),
        ({"format__quote": ","}, "format.quote: ',' must differ from the delimiter"),
        ({"format__encoding": "latin-1"}, "format.encoding: 'latin-1' is not supported; use UTF-8"),
        ({"format__escape": "\\"},
         "format: unknown field(s) escape; expected type, header, delimiter, quote, encoding"),
        ({"columns__2__max": KeyError}, "columns[2]: missing field(s) max"),
        ({"columns__2__min": "0"}, "columns[2].min: '0' must be a finite number, or null"),
        ({"columns__2__min": 6.0}, "columns[2].min: 6 is greater than max 5"),
        ({"columns__0__min": 0}, "columns[0].min: only supported for numeric columns"),
        ({"columns__0__nullable": "no"}, "columns[0].nullable: 'no' must be true or false"),
        ({"columns__1__allowed_values": ["1"]}, "columns[1].allowed_values: only supported for string columns"),
        ({"columns__0__allowed_values": ["f", "M"]}, "columns[0].allowed_values: 'f' can never match: upper_case is "
                                                     "true"),
        ({"columns__1__upper_case": True}, "columns[1].upper_case: only supported for string columns"),
        ({"columns__4__name": "length"}, "columns[4].name: 'length' matches columns[1] as well"),
        ({"columns__4__raw_name": "Length"}, "columns[4].raw_name: 'Length' matches columns[1] as well"),
        ({"columns__8__name": "ingest_date"}, "columns[8].name: 'ingest_date' is reserved for the job's own columns "
                                              "['reject_reason', 'ingest_date', '_corrupt_record']"),
        ({"columns__8__name": "Rings"}, "columns[8].name: 'Rings' must be lower case letters, digits and '_', "
                                        "starting with a letter"),
        ({"columns__8__raw_name": " "}, "columns[8].raw_name: ' ' must be a non-blank header name"),
    ],
)
def test_document_errors_are_one_line_naming_the_field(changes, message):
    with pytest.raises(ValueError) as err:
        et.DatasetSpec.from_document(_doc(**changes))
    assert str(err.value) == message


def test_document_must_be_an_object():
    with pytest.raises(ValueError, match=r"^dataset schema: expected an object, got list$"):
        et.DatasetSpec.from_document([])  # type: ignore[arg-type]


def test_spec_rejects_inconsistent_column_definitions():
    with pytest.raises(ValueError, match="^allowed_values: only supported for string columns$"):
        et.ColumnSpec("x", "x", "double", allowed_values=("1",))
    with pytest.raises(ValueError, match="^min: 2 is greater than max 1$"):
        et.ColumnSpec("x", "x", "integer", min_value=2, max_value=1)


# ----------------------------------------------------------------------------------------------------------------
# The shipped data
# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def abalone_result(spark):
    return et.transform(spark, et.read_raw_csv(spark, str(ABALONE_CSV)), ABALONE, DATE)


def test_shipped_abalone_is_curated_completely_and_exactly(abalone_result):
    # The file has no missing values, no out-of-range values and no duplicate rows (checked here against the file
    # itself): all 4,177 rows are curated, in file order, with the same values.
    with ABALONE_CSV.open(newline="") as f:
        reader = csv.reader(f)
        assert ",".join(next(reader)) == HEADER
        expected = [(r[0], *map(float, r[1:8]), int(r[8])) for r in reader]
    assert len(expected) == 4177 and len(set(expected)) == 4177
    assert abalone_result.counts == {"rows_in": 4177, "rows_curated": 4177, "rows_rejected": 0}
    assert curated_tuples(abalone_result) == expected
    assert abalone_result.rejected.count() == 0
    assert abalone_result.schema_error is None
    assert abalone_result.reject_ratio == 0.0


def test_curated_schema_is_typed_snake_case_with_ingest_date(abalone_result):
    schema = abalone_result.curated.schema
    assert schema.names == CURATED_COLUMNS + ["ingest_date"]
    assert [f.dataType for f in schema.fields] == [
        T.StringType(), *[T.DoubleType()] * 7, T.IntegerType(), T.DateType()
    ]
    dates = {r[0] for r in abalone_result.curated.select("ingest_date").distinct().collect()}
    assert dates == {dt.date(2024, 1, 15)}


def test_shipped_breast_cancer_is_curated_completely_and_exactly(spark):
    spec = et.DatasetSpec.from_document(BREAST_CANCER_DOC)
    with BREAST_CANCER_CSV.open(newline="") as f:
        reader = csv.reader(f)
        assert next(reader) == [c.raw_name for c in spec.columns]
        expected = [(r[0], *map(float, r[1:])) for r in reader]
    assert len(expected) == 569 and len(spec.columns) == 31
    result = et.transform(spark, et.read_raw_csv(spark, str(BREAST_CANCER_CSV), spec.format), spec, DATE)
    assert result.counts == {"rows_in": 569, "rows_curated": 569, "rows_rejected": 0}
    assert result.curated.schema.names == spec.column_names + ["ingest_date"]
    assert [tuple(r)[:-1] for r in result.curated.collect()] == expected
    assert {r.diagnosis for r in result.curated.select("diagnosis").distinct().collect()} == {"B", "M"}
    result.unpersist()


# ----------------------------------------------------------------------------------------------------------------
# Bad values: one hand-made file, one transform, several checks
# ----------------------------------------------------------------------------------------------------------------

MIXED_ROWS = [
    # (CSV line, expected reject reason or None when the row is curated)
    (VALID, None),
    ("F,abc,0.365,0.095,0.514,0.2245,0.101,0.15,9", "length: not a number ('abc')"),
    ("F,0.5,0.4,Infinity,0.514,0.2245,0.101,0.15,9", "height: not a number ('Infinity')"),
    ("F,0.5,0.4,0x10,0.514,0.2245,0.101,0.15,9", "height: not a number ('0x10')"),
    ("I,0.5,0.4,0.1,0.514,0.2245,0.101,0.15,9.5", "rings: not an integer ('9.5')"),
    ("I,0.5,0.4,0.1,0.514,0.2245,0.101,0.15,nine", "rings: not an integer ('nine')"),
    ("X,0.5,0.4,0.1,0.514,0.2245,0.101,0.15,9", "sex: 'X' not in [F, I, M]"),
    ("male,0.5,0.4,0.1,0.514,0.2245,0.101,0.15,9", "sex: 'male' not in [F, I, M]"),
    ("F,0.5,0.4,0.1,0.514,0.2245,0.101,0.15,", "rings: missing"),
    (",0.5,0.4,0.1,0.514,0.2245,0.101,0.15,9", "sex: missing"),
    ("F,0.5,NA,0.1,0.514,0.2245,0.101,0.15,9", "diameter: missing"),
    ("F,0.5,0.4,0.1,0.514,0.2245,0.101,?,9", "shell_weight: missing"),
    ("F,-0.5,0.4,0.1,0.514,0.2245,0.101,0.15,9", "length: '-0.5' out of range [0, 5]"),
    ("F,0.5,0.4,0.1,12.5,0.2245,0.101,0.15,9", "whole_weight: '12.5' out of range [0, 10]"),
    ("F,0.5,0.4,1e999,0.514,0.2245,0.101,0.15,9", "height: '1e999' out of range [0, 5]"),
    ("F,0.5,0.4,0.1,0.514,0.2245,0.101,0.15,-1", "rings: '-1' out of range [0, 100]"),
    ("F,0.5,0.4,0.1,0.514,0.2245,0.101,0.15,101", "rings: '101' out of range [0, 100]"),
    ("Q,x,0.4,0.1,0.514,0.2245,0.101,0.15,", "sex: 'Q' not in [F, I, M]; length: not a number ('x'); rings: missing"),
    # Cleaning: blanks are trimmed, sex is upper-cased, integral rings may be written as decimals, 0 is allowed.
    (" i , 0.25 ,0.2,0,0.1,0.05,0.02,0.03, 7.0 ", None),
    ("M,1.5e-1,.1,0.1,0.514,0.2245,0.101,0.15,+3", None),
]


@pytest.fixture(scope="module")
def mixed_result(spark, tmp_path_factory):
    text = HEADER + "\n" + "\n".join(line for line, _ in MIXED_ROWS) + "\n"
    return run(spark, tmp_path_factory.mktemp("mixed"), text)


def test_mixed_file_counts(mixed_result):
    n_good = sum(reason is None for _, reason in MIXED_ROWS)
    assert mixed_result.counts == {
        "rows_in": len(MIXED_ROWS),
        "rows_curated": n_good,
        "rows_rejected": len(MIXED_ROWS) - n_good,
    }
    assert mixed_result.reject_ratio == pytest.approx((len(MIXED_ROWS) - n_good) / len(MIXED_ROWS))


def test_exact_reject_reasons_in_input_order(mixed_result):
    expected = [reason for _, reason in MIXED_ROWS if reason is not None]
    assert [reason for _, reason in rejected_pairs(mixed_result)] == expected


def test_rejected_rows_keep_raw_strings(mixed_result):
    # Values are kept exactly as read (not trimmed, not cast); an empty field is read as null.
    pairs = dict((reason, raw) for raw, reason in rejected_pairs(mixed_result))
    assert pairs["length: not a number ('abc')"] == ("F", "abc", "0.365", "0.095", "0.514", "0.2245", "0.101",
                                                     "0.15", "9")
    assert pairs["rings: missing"][-1] is None
    assert pairs["diameter: missing"][2] == "NA"
    assert mixed_result.rejected.schema.names == CURATED_COLUMNS + ["reject_reason", "ingest_date"]
    assert all(f.dataType == T.StringType() for f in mixed_result.rejected.schema.fields[:-1])


def test_cleaned_values_are_curated(mixed_result):
    assert curated_tuples(mixed_result) == [
        VALID_TYPED,
        ("I", 0.25, 0.2, 0.0, 0.1, 0.05, 0.02, 0.03, 7),
        ("M", 0.15, 0.1, 0.1, 0.514, 0.2245, 0.101, 0.15, 3),
    ]


# ----------------------------------------------------------------------------------------------------------------
# Schema problems, empty inputs, malformed lines
# ----------------------------------------------------------------------------------------------------------------


def _expect_rejected_input(result: et.TransformResult, message: str, rows: list[dict]) -> None:
    """A header mismatch: nothing curated, every row rejected with ``message``, values under the input's names."""
    assert result.schema_error == message
    assert result.counts == {"rows_in": len(rows), "rows_curated": 0, "rows_rejected": len(rows)}
    assert result.curated.count() == 0 and result.curated.columns == CURATED_COLUMNS + ["ingest_date"]
    got = [row.asDict() for row in result.rejected.collect()]
    assert got == [{**r, "reject_reason": message, "ingest_date": dt.date(2024, 1, 15)} for r in rows]


def test_missing_column_rejects_the_input(spark, tmp_path):
    header = HEADER.replace(",rings", "")
    result = run(spark, tmp_path, header + "\nM,0.455,0.365,0.095,0.514,0.2245,0.101,0.15\n")
    _expect_rejected_input(
        result,
        "abalone: header does not match the schema: missing column(s): rings; expected header: "
        "sex,length,diameter,height,whole weight,shucked weight,viscera weight,shell weight,rings",
        [dict(zip(header.split(","), "M,0.455,0.365,0.095,0.514,0.2245,0.101,0.15".split(",")))],
    )


def test_missing_and_extra_columns_are_all_named_and_no_value_is_lost(spark, tmp_path):
    result = run(spark, tmp_path, "sex,length,height,rings,comment,Whole_Weight\nM,0.4,0.1,9,hello,0.5\nF,,,,,\n")
    _expect_rejected_input(
        result,
        "abalone: header does not match the schema: missing column(s): diameter, shucked weight, viscera weight, "
        f"shell weight; unexpected column(s): comment; expected header: {HEADER}",
        [
            {"sex": "M", "length": "0.4", "height": "0.1", "rings": "9", "comment": "hello", "Whole_Weight": "0.5"},
            {"sex": "F", "length": None, "height": None, "rings": None, "comment": None, "Whole_Weight": None},
        ],
    )


def test_extra_column_rejects_the_input(spark, tmp_path):
    # Decision (issue 12): an unexpected column rejects the whole input; the schema is changed in the config first.
    result = run(spark, tmp_path, HEADER + ",comment\n" + VALID + ",looks fine\n")
    _expect_rejected_input(
        result,
        f"abalone: header does not match the schema: unexpected column(s): comment; expected header: {HEADER}",
        [{**dict(zip(HEADER.split(","), VALID.split(","))), "comment": "looks fine"}],
    )


def test_two_columns_matching_one_spec_column_is_a_header_mismatch():
    with pytest.raises(et.SchemaError) as err:
        et.match_columns(HEADER.split(",") + ["whole_weight"], ABALONE)
    assert str(err.value) == (
        "abalone: header does not match the schema: 'whole weight' and 'whole_weight' both match 'whole weight'; "
        f"expected header: {HEADER}"
    )


def test_header_matching_tolerates_case_blanks_separators_and_a_bom(spark, tmp_path):
    header = "\ufeffSex, Length ,Diameter,Height,Whole_Weight,Shucked Weight,VISCERA WEIGHT,shell-weight,Rings"
    result = run(spark, tmp_path, header + "\n" + VALID + "\n")
    assert result.counts == {"rows_in": 1, "rows_curated": 1, "rows_rejected": 0} and result.schema_error is None
    assert result.curated.columns == CURATED_COLUMNS + ["ingest_date"]
    assert curated_tuples(result) == [VALID_TYPED]


def test_delimiter_and_quote_of_the_format(spark, tmp_path):
    spec = et.DatasetSpec.from_document(_doc(format__delimiter=";", format__quote="'"))
    assert spec.raw_header == HEADER.replace(",", ";")
    text = spec.raw_header + "\n" + VALID.replace(",", ";") + "\n'M;F';0.5;0.4;0.1;0.514;0.2245;0.101;0.15;9\n"
    path = write_csv(tmp_path, "semicolon.csv", text)
    result = et.transform(spark, et.read_raw_csv(spark, path, spec.format), spec, DATE)
    assert result.counts == {"rows_in": 2, "rows_curated": 1, "rows_rejected": 1}
    assert curated_tuples(result) == [VALID_TYPED]
    assert rejected_pairs(result)[0][1] == "sex: 'M;F' not in [F, I, M]"


@pytest.mark.parametrize("text", ["", HEADER + "\n", HEADER], ids=["zero-bytes", "header-only", "header-no-newline"])
def test_empty_input_gives_zero_rows_and_writes_nothing(spark, tmp_path, text):
    result = run(spark, tmp_path, text)
    assert result.counts == {"rows_in": 0, "rows_curated": 0, "rows_rejected": 0}
    assert result.reject_ratio == 0.0
    assert result.curated.schema.names == CURATED_COLUMNS + ["ingest_date"]
    assert result.rejected.schema.names == CURATED_COLUMNS + ["reject_reason", "ingest_date"]
    written = et.write_outputs(result, str(tmp_path / "curated"), str(tmp_path / "quarantine"))
    assert written == {"curated": 0, "quarantine": 0}
    assert not (tmp_path / "curated").exists() and not (tmp_path / "quarantine").exists()


def test_malformed_lines_are_rejected(spark, tmp_path):
    text = "\n".join([
        HEADER,
        VALID + ",surplus",  # one field too many: every value is valid, the line is still rejected
        "F,0.5,0.4",  # too few fields
        '"M,F",0.5,0.4,0.1,0.514,0.2245,0.101,0.15,9',  # a quoted comma is one field
        "I,0.5,0.4,0.1,0.514,0.2245,0.101,0.15,9",
    ]) + "\n"
    result = run(spark, tmp_path, text)
    assert result.counts == {"rows_in": 4, "rows_curated": 1, "rows_rejected": 3}
    assert [reason for _, reason in rejected_pairs(result)] == [
        et.MALFORMED_REASON,
        et.MALFORMED_REASON + "; height: missing; whole_weight: missing; shucked_weight: missing; "
        "viscera_weight: missing; shell_weight: missing; rings: missing",
        "sex: 'M,F' not in [F, I, M]",
    ]


# ----------------------------------------------------------------------------------------------------------------
# Duplicates
# ----------------------------------------------------------------------------------------------------------------


def test_duplicates_after_cleaning_are_rejected_first_kept(spark, tmp_path):
    other = "F,0.53,0.42,0.135,0.677,0.2565,0.1415,0.21,9"
    lines = [
        VALID,
        other,
        VALID,  # exact duplicate
        "m, 0.4550 ,0.365,0.095,0.514,0.2245,0.101,0.15,15.0",  # the same row after cleaning
        "M,abc,0.365,0.095,0.514,0.2245,0.101,0.15,15",  # invalid: rejected for its own reason ...
        "M,abc,0.365,0.095,0.514,0.2245,0.101,0.15,15",  # ... each time, not as a duplicate
        other,
    ]
    result = run(spark, tmp_path, HEADER + "\n" + "\n".join(lines) + "\n")
    assert result.counts == {"rows_in": 7, "rows_curated": 2, "rows_rejected": 5}
    assert curated_tuples(result) == [VALID_TYPED, ("F", 0.53, 0.42, 0.135, 0.677, 0.2565, 0.1415, 0.21, 9)]
    assert rejected_pairs(result) == [
        (tuple(VALID.split(",")), "duplicate of an earlier row"),
        (("m", " 0.4550 ", "0.365", "0.095", "0.514", "0.2245", "0.101", "0.15", "15.0"),
         "duplicate of an earlier row"),
        (("M", "abc", "0.365", "0.095", "0.514", "0.2245", "0.101", "0.15", "15"), "length: not a number ('abc')"),
        (("M", "abc", "0.365", "0.095", "0.514", "0.2245", "0.101", "0.15", "15"), "length: not a number ('abc')"),
        (tuple(other.split(",")), "duplicate of an earlier row"),
    ]


# ----------------------------------------------------------------------------------------------------------------
# A randomized file against a pure-Python model of the rules
# ----------------------------------------------------------------------------------------------------------------

_NUMERIC = CURATED_COLUMNS[1:8]
_MAX = {c: (5 if c in ("length", "diameter", "height") else 10) for c in _NUMERIC}


def _corruptions(col: str) -> list[tuple[str, str]]:
    """(raw value, expected reason) pairs that make ``col`` invalid."""
    if col == "sex":
        return [("X", "sex: 'X' not in [F, I, M]"), ("", "sex: missing"), ("fem", "sex: 'fem' not in [F, I, M]")]
    if col == "rings":
        return [("7.5", "rings: not an integer ('7.5')"), ("NA", "rings: missing"),
                ("-2", "rings: '-2' out of range [0, 100]"), ("1e3", "rings: not an integer ('1e3')")]
    return [("abc", f"{col}: not a number ('abc')"), ("", f"{col}: missing"),
            ("-0.01", f"{col}: '-0.01' out of range [0, {_MAX[col]}]"),
            (" 99 ", f"{col}: ' 99 ' out of range [0, {_MAX[col]}]"), ("NaN", f"{col}: missing"),
            ("1,5", None)]  # a comma inside a field: handled by the caller (quoted)


def _clean_variant(col: str, value: str, rng: random.Random) -> str:
    """A different spelling of a valid value that cleans to the same typed value."""
    choice = rng.randrange(3)
    if col == "sex":
        return value.lower() if choice == 0 else f" {value} " if choice == 1 else value
    if col == "rings":
        return f"{value}.0" if choice == 0 else f" {value}" if choice == 1 else value
    return f"{value}0" if choice == 0 and "." in value else f" {value} " if choice == 1 else value


def _typed(raw: list[str]) -> tuple:
    return (raw[0].strip().upper(), *(float(v) for v in raw[1:8]), int(float(raw[8])))


def test_randomized_file_matches_a_reference_model(spark, tmp_path):
    rng = random.Random(20240115)
    with ABALONE_CSV.open(newline="") as f:
        base_rows = list(csv.reader(f))[1:]
    lines, expected_curated, expected_rejected, seen = [], [], [], set()
    for _ in range(250):
        raw = list(rng.choice(base_rows[:60]))  # a small pool, so that duplicates occur naturally
        raw = [_clean_variant(c, v, rng) for c, v in zip(CURATED_COLUMNS, raw)]
        reasons = {}
        if rng.random() < 0.35:
            for col in rng.sample(CURATED_COLUMNS, rng.choice([1, 1, 2])):
                value, reason = rng.choice(_corruptions(col))
                if reason is None:  # "1,5" quoted: one field, not a number
                    value, reason = '"1,5"', f"{col}: not a number ('1,5')"
                raw[CURATED_COLUMNS.index(col)] = value
                reasons[col] = reason
        lines.append(",".join(raw))
        raw_values = tuple(None if v == "" else v.replace('"', "") for v in raw)
        if reasons:
            expected_rejected.append((raw_values, "; ".join(reasons[c] for c in CURATED_COLUMNS if c in reasons)))
        elif _typed(raw) in seen:
            expected_rejected.append((raw_values, "duplicate of an earlier row"))
        else:
            seen.add(_typed(raw))
            expected_curated.append(_typed(raw))
    result = run(spark, tmp_path, HEADER + "\n" + "\n".join(lines) + "\n")
    assert result.counts == {
        "rows_in": 250, "rows_curated": len(expected_curated), "rows_rejected": len(expected_rejected)
    }
    assert any(r == "duplicate of an earlier row" for _, r in expected_rejected), "the sample exercises dedup"
    assert curated_tuples(result) == expected_curated
    assert rejected_pairs(result) == expected_rejected


# ----------------------------------------------------------------------------------------------------------------
# Other inputs and building blocks
# ----------------------------------------------------------------------------------------------------------------


def test_typed_input_columns_like_a_glue_dynamic_frame_are_cast_back_to_strings(spark):
    # Glue's CSV reader may infer numeric types; the transform must validate such a frame the same way.
    schema = "sex string, length double, diameter double, height double, `whole weight` double, " \
             "`shucked weight` double, `viscera weight` double, `shell weight` double, rings long"
    raw = spark.createDataFrame([VALID_TYPED, ("I", 0.3, 0.2, 0.1, 0.2, 0.1, 0.05, 0.06, 200)], schema)
    result = et.transform(spark, raw, ABALONE_DOC, dt.date(2024, 1, 15))  # a document is accepted as well
    assert result.counts == {"rows_in": 2, "rows_curated": 1, "rows_rejected": 1}
    assert curated_tuples(result) == [VALID_TYPED]
    assert rejected_pairs(result)[0][1] == "rings: '200' out of range [0, 100]"


def test_normalize_and_validate_building_blocks(spark):
    raw = spark.createDataFrame([tuple(VALID.split(",")), ("F",) + tuple(VALID.split(",")[1:8]) + ("x",)],
                                HEADER.split(","))
    normalized = et.normalize_columns(raw, ABALONE)
    assert normalized.columns == CURATED_COLUMNS
    good, rejected = et.validate(normalized, ABALONE)
    assert [tuple(r) for r in good.collect()] == [VALID_TYPED]
    assert [r.reject_reason for r in rejected.collect()] == ["rings: not an integer ('x')"]
    dated = et.add_ingest_date(good, "2024-02-29")
    assert dated.schema["ingest_date"].dataType == T.DateType()
    assert dated.first().ingest_date == dt.date(2024, 2, 29)


@pytest.mark.parametrize("bad", ["2024-02-30", "2024-1-5", "20240115", "yesterday", ""])
def test_ingest_date_must_be_an_iso_date(bad):
    with pytest.raises(ValueError, match="ingest date must be"):
        et.parse_ingest_date(bad)


def test_count_invariant_violation_is_a_clear_error():
    et.check_counts({"rows_in": 3, "rows_curated": 2, "rows_rejected": 1})
    with pytest.raises(et.CountInvariantError) as err:
        et.check_counts({"rows_in": 3, "rows_curated": 2, "rows_rejected": 0})
    assert str(err.value) == "row count invariant violated: rows_in=3 != rows_curated=2 + rows_rejected=0"


# ----------------------------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------------------------


def test_parquet_and_quarantine_round_trip(spark, tmp_path, abalone_result, mixed_result):
    curated_path, quarantine_path = str(tmp_path / "curated"), str(tmp_path / "quarantine")
    assert et.write_outputs(abalone_result, curated_path, quarantine_path) == {"curated": 4177, "quarantine": 0}
    # The files keep the input order (reproducible downstream splits): read them in name order.
    first_write = pd.read_parquet(curated_path)
    assert list(first_write.itertuples(index=False, name=None))[:5] == [
        (*t, "2024-01-15") for t in curated_tuples(abalone_result)[:5]
    ]
    assert first_write["rings"].tolist() == [t[-1] for t in curated_tuples(abalone_result)]
    later = et.transform(spark, mixed_result.rejected.drop("reject_reason", "ingest_date").toDF(
        *HEADER.split(",")), ABALONE, "2024-01-16")  # a second batch: the rows rejected before
    written = et.write_outputs(later, curated_path, quarantine_path)
    assert written == {"curated": 0, "quarantine": later.counts["rows_rejected"]}
    et.write_outputs(mixed_result, curated_path, quarantine_path)  # appends to the 2024-01-15 partition

    partitions = sorted(p.name for p in (tmp_path / "curated").iterdir() if p.is_dir())
    assert partitions == ["ingest_date=2024-01-15"]
    back = spark.read.parquet(curated_path)
    assert back.count() == 4177 + mixed_result.counts["rows_curated"]
    assert {f.name: f.dataType for f in back.schema.fields} == {
        **{f.name: f.dataType for f in et.curated_schema(ABALONE).fields}, "ingest_date": T.DateType()
    }
    # What a pandas/pyarrow consumer (the SageMaker preprocessing step) sees.
    frame = pd.read_parquet(curated_path)
    assert sorted(frame.columns) == sorted(CURATED_COLUMNS + ["ingest_date"])
    assert len(frame) == back.count() and set(frame["ingest_date"].astype(str)) == {"2024-01-15"}
    assert frame["rings"].dtype == "int32" and frame["sex"].isin(["F", "I", "M"]).all()

    quarantine = sorted(p.name for p in (tmp_path / "quarantine").iterdir() if p.is_dir())
    assert quarantine == ["ingest_date=2024-01-15", "ingest_date=2024-01-16"]
    files = sorted((tmp_path / "quarantine" / "ingest_date=2024-01-15").glob("*.json"))
    records = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    assert [r["reject_reason"] for r in records] == [r for _, r in rejected_pairs(mixed_result)]
    assert records[0] == {**dict(zip(CURATED_COLUMNS, "F,abc,0.365,0.095,0.514,0.2245,0.101,0.15,9".split(","))),
                          "reject_reason": "length: not a number ('abc')"}
    assert any(r["rings"] is None for r in records), "nulls are kept in the quarantine records"


# ----------------------------------------------------------------------------------------------------------------
# The Glue entry point's pure part
# ----------------------------------------------------------------------------------------------------------------

SCHEMA_ARG = json.dumps(ABALONE_DOC, sort_keys=True, separators=(",", ":"))  # as the construct passes it
GLUE_ARGV = [
    "script.py", "--JOB_NAME", "etl", "--dataset_schema", SCHEMA_ARG, "--raw_path", "s3://raw/abalone/",
    "--curated_path", "s3://cur/abalone/", "--quarantine_path", "s3://cur/quarantine/abalone/",
    "--job-bookmark-option", "job-bookmark-enable", "--TempDir", "s3://tmp/",
]


def test_required_glue_arguments():
    assert etl_job.REQUIRED_ARGS == ["JOB_NAME", "dataset_schema", "raw_path", "curated_path", "quarantine_path"]


def test_dataset_schema_argument():
    assert etl_job.parse_dataset_schema(SCHEMA_ARG) == ABALONE
    with pytest.raises(ValueError, match=r"^--dataset_schema: not valid JSON \(Expecting value: line 1 column 1"):
        etl_job.parse_dataset_schema("abalone")
    with pytest.raises(ValueError) as err:
        etl_job.parse_dataset_schema(json.dumps(_doc(columns__8__type="long")))
    assert str(err.value) == "--dataset_schema: columns[8].type: 'long' is not supported; use string, double or integer"


def test_optional_arguments_defaults():
    options = etl_job.parse_optional_args(GLUE_ARGV, today=dt.date(2025, 3, 1))
    assert options == etl_job.JobOptions(ingest_date=dt.date(2025, 3, 1))
    before = dt.datetime.now(dt.timezone.utc).date()
    default_date = etl_job.parse_optional_args(GLUE_ARGV).ingest_date
    assert default_date in {before, dt.datetime.now(dt.timezone.utc).date()}  # today (UTC), even across midnight


@pytest.mark.parametrize("extra", [["--ingest_date", "2024-01-15"], ["--ingest_date=2024-01-15"]])
def test_optional_arguments_given(extra):
    options = etl_job.parse_optional_args(GLUE_ARGV + extra, today=dt.date(2025, 3, 1))
    assert options == etl_job.JobOptions(ingest_date=dt.date(2024, 1, 15))


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--ingest_date"], "argument --ingest_date needs a value"),
        (["--ingest_date", "15/01/2024"], "ingest date must be YYYY-MM-DD, got '15/01/2024'"),
    ],
)
def test_optional_arguments_invalid(extra, message):
    with pytest.raises(ValueError) as err:
        etl_job.parse_optional_args(GLUE_ARGV + extra)
    assert str(err.value) == message


def test_reject_ratio_gate():
    assert etl_job.check_reject_ratio({"rows_in": 0, "rows_curated": 0, "rows_rejected": 0}, 0.0) == 0.0
    assert etl_job.check_reject_ratio({"rows_in": 10, "rows_curated": 9, "rows_rejected": 1}, 0.1) == 0.1
    with pytest.raises(etl_job.RejectRatioExceededError, match=r"rejected 2 of 10 rows \(20.00%\)"):
        etl_job.check_reject_ratio({"rows_in": 10, "rows_curated": 8, "rows_rejected": 2}, 0.1)


def test_process_fails_over_the_reject_ratio_and_writes_only_the_quarantine(spark, tmp_path):
    path = write_csv(tmp_path, "raw.csv", "\n".join([HEADER, VALID, "X" + VALID[1:]]) + "\n")
    logged: list[str] = []
    kwargs = dict(job_name="etl", curated_path=str(tmp_path / "cur"), quarantine_path=str(tmp_path / "q"),
                  options=etl_job.JobOptions(dt.date(2024, 1, 15)), log=logged.append)
    with pytest.raises(etl_job.RejectRatioExceededError):
        etl_job.process(spark, et.read_raw_csv(spark, path), dataset=replace(ABALONE, max_reject_ratio=0.1), **kwargs)
    assert not (tmp_path / "cur").exists()
    assert (tmp_path / "q" / "ingest_date=2024-01-15").is_dir()
    assert json.loads(logged[0]) == {
        "event": "etl_counts", "job_name": "etl", "dataset": "abalone", "ingest_date": "2024-01-15",
        "rows_in": 2, "rows_curated": 1, "rows_rejected": 1, "reject_ratio": 0.5, "max_reject_ratio": 0.1,
        "schema_error": None, "status": "failed_reject_ratio",
    }

    summary = etl_job.process(spark, et.read_raw_csv(spark, path), dataset=_doc(max_reject_ratio=0.5), **kwargs)
    assert summary["status"] == "succeeded" and json.loads(logged[1]) == summary
    assert spark.read.parquet(str(tmp_path / "cur")).count() == 1


def test_process_fails_on_a_header_mismatch_quarantines_every_row_and_curates_nothing(spark, tmp_path):
    path = write_csv(tmp_path, "raw.csv", "\n".join([HEADER + ",comment", VALID + ",a", VALID + ",b"]) + "\n")
    logged: list[str] = []
    with pytest.raises(et.SchemaError) as err:
        etl_job.process(spark, et.read_raw_csv(spark, path), job_name="etl", dataset=ABALONE,
                        curated_path=str(tmp_path / "cur"), quarantine_path=str(tmp_path / "q"),
                        options=etl_job.JobOptions(dt.date(2024, 1, 15)), log=logged.append)
    reason = f"abalone: header does not match the schema: unexpected column(s): comment; expected header: {HEADER}"
    assert str(err.value) == f"{reason}; the 2 rows are in the quarantine, the curated zone was not written"
    assert not (tmp_path / "cur").exists()
    files = sorted((tmp_path / "q").rglob("*.json"))
    records = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    assert [(r["comment"], r["reject_reason"]) for r in records] == [("a", reason), ("b", reason)]
    assert json.loads(logged[0]) == {
        "event": "etl_counts", "job_name": "etl", "dataset": "abalone", "ingest_date": "2024-01-15",
        "rows_in": 2, "rows_curated": 0, "rows_rejected": 2, "reject_ratio": 1.0, "max_reject_ratio": 0.05,
        "schema_error": reason, "status": "failed_schema",
    }


# --- the job as Glue runs it: ``python <hash>.py --JOB_NAME ...`` with the --extra-py-files zip on sys.path ---------
AWSGLUE_STAND_IN = {
    "__init__.py": "",
    "utils.py": """
def getResolvedOptions(argv, names):
    found = {}
    for i, token in enumerate(argv):
        for name in names:
            if token == "--" + name:
                found[name] = argv[i + 1]
    missing = [n for n in names if n not in found]
    if missing:
        raise SystemExit("missing arguments: %s" % missing)
    return found
""",
    "context.py": """
from pyspark.sql import SparkSession


class _Frame:
    def __init__(self, df):
        self._df = df

    def resolveChoice(self, choice):
        assert choice == "cast:string", choice
        return self

    def toDF(self):
        return self._df


class _Reader:
    def __init__(self, spark):
        self._spark = spark

    def from_options(self, connection_type, format, format_options, connection_options, transformation_ctx):
        assert (connection_type, format) == ("s3", "csv")
        assert format_options == {"withHeader": True, "separator": ",", "quoteChar": '"'}, format_options
        assert transformation_ctx, "bookmarks need a transformation_ctx"
        return _Frame(self._spark.read.option("header", True).csv(connection_options["paths"]))


class GlueContext:
    def __init__(self, spark_context):
        self.spark_session = SparkSession(spark_context)
        self.create_dynamic_frame = _Reader(self.spark_session)
""",
    "job.py": """
class Job:
    def __init__(self, glue_context):
        self.glue_context = glue_context

    def init(self, name, args):
        print("JOB_INIT " + name, flush=True)

    def commit(self):
        print("JOB_COMMIT", flush=True)
""",
}


def test_etl_job_runs_as_glue_runs_it(tmp_path):
    from mlops_constructs.glue_etl import package_python_modules
    from stacks.code_locations import GLUE_MODULES as DEFAULT_EXTRA_PY_FILES, GLUE_SCRIPT as DEFAULT_SCRIPT

    staged = tmp_path / "staged"
    staged.mkdir()
    script = staged / "3f2a9c.py"  # the script asset, named by its hash; no etl_transform.py beside it
    script.write_bytes(DEFAULT_SCRIPT.read_bytes())
    modules = package_python_modules(DEFAULT_EXTRA_PY_FILES, tmp_path / "modules")  # what the job ships
    stand_in = tmp_path / "stand_in" / "awsglue"
    stand_in.mkdir(parents=True)
    for name, text in AWSGLUE_STAND_IN.items():
        (stand_in / name).write_text(text)
    raw = tmp_path / "raw" / "abalone"
    raw.mkdir(parents=True)
    (raw / "batch.csv").write_text(f"{HEADER}\n{VALID}\nF,0.53,0.42,0.135,0.677,0.2565,0.1415,0.21,9\n")
    curated, quarantine = tmp_path / "curated" / "abalone", tmp_path / "curated" / "quarantine" / "abalone"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(modules), str(stand_in.parent)]),
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_SUBMIT_ARGS": "--master local[1] --conf spark.ui.enabled=false --driver-memory 512m pyspark-shell",
    }
    argv = [
        "--JOB_NAME", "mlops-dev-etl-abalone", "--dataset_schema", SCHEMA_ARG, "--raw_path", str(raw),
        "--curated_path", str(curated), "--quarantine_path", str(quarantine), "--ingest_date", DATE,
        "--job-bookmark-option", "job-bookmark-enable", "--TempDir", str(tmp_path / "tmp"),
    ]
    out = subprocess.run([sys.executable, str(script), *argv], capture_output=True, text=True, cwd=staged,
                         env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    summary = json.loads(next(line for line in lines if line.startswith("{")))
    assert summary["status"] == "succeeded" and summary["rows_curated"] == 2 and summary["rows_rejected"] == 0
    assert lines[0] == "JOB_INIT mlops-dev-etl-abalone" and lines[-1] == "JOB_COMMIT"
    assert (curated / f"ingest_date={DATE}").is_dir()
