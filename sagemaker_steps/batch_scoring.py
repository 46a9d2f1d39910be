"""Batch inference steps around the SageMaker transform job: ``prepare`` the curated rows in the endpoint's input
contract, and ``collect`` the transform's output into keyed, versioned predictions.

Runs in the SageMaker scikit-learn processing container (framework 1.2-1: Python 3.9, pyarrow 14, numpy 1.24) and as
a plain script. Standalone on purpose (SageMaker downloads this file alone); keep it Python 3.9 compatible. The jobs run
with network isolation: every input is downloaded and every output uploaded by SageMaker.

``prepare`` (container paths, each overridable)::

  input  /opt/ml/processing/input/data     one curated partition (Parquet files of ingest_date=YYYY-MM-DD/)
  input  /opt/ml/processing/input/model    the approved package's model.tar.gz (model_metadata.json is read)
  output /opt/ml/processing/transform      part-NNNNN.csv: ``<record_key>,<encoded features>`` per row, no header
  output /opt/ml/processing/rows           rows.parquet: every curated row, its record_key and reject_reason
  output /opt/ml/processing/report         prepare_report.json, rejected.jsonl

The endpoint's input contract (docs/CONTRACTS.md, sagemaker_steps/serve.py): ``text/csv`` rows of the model's
``encoded_columns`` in order, no header; a raw row is encoded exactly as the endpoint encodes an
``application/json`` instance (categorical -> one-hot in ``categories`` order, numeric -> float). The transform job
drops the key column before the model (``InputFilter $[1:]``), joins each prediction to its input line
(``JoinSource Input``) and keeps the key and the prediction (``OutputFilter $[0,-1]``): every output line is
``<record_key>,<prediction>``.

A row the endpoint would refuse (a missing feature, a category the model has not seen, a non-finite number) is not
sent: it is kept in rows.parquet with its ``reject_reason``, listed in rejected.jsonl and counted per reason in the
report. More than ``--max-reject-ratio`` of the rows rejected fails the job (a model that no longer fits its data).

``collect``::

  input  /opt/ml/processing/input/rows       rows.parquet from prepare
  input  /opt/ml/processing/input/transform  the transform job's ``*.out`` files
  output /opt/ml/processing/predictions      predictions-<run id>.parquet (to .../predictions/<model>/dt=YYYY-MM-DD/)
  output /opt/ml/processing/report           batch_report.json

One output row per curated row: its columns as curated, ``record_key``, ``prediction`` (P(positive) for
binary_classification, the value for regression; null for a rejected row), ``reject_reason`` (null when scored),
``model_package_arn``, ``model_package_version``, ``ingest_date`` (the scored partition), ``run_id``, ``scored_at``.
Any mismatch between the rows sent and the transform's output (a missing, repeated, unknown or malformed line) fails
the job with the counts: a prediction is never attached to the wrong row and no row is dropped silently.
"""
from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import math
import os
import re
import sys
import tarfile
from collections import Counter
from typing import Any, Dict, List, Optional, Sequence, Tuple

PROCESSING_BASE = "/opt/ml/processing"
METADATA_FILE = "model_metadata.json"
KEY_COLUMN = "record_key"
PREDICTION_COLUMN = "prediction"
REJECT_COLUMN = "reject_reason"
PARTITION_COLUMN = "ingest_date"
#: The columns collect adds to the curated ones, in order (the Glue table declares the same).
ADDED_COLUMNS = (KEY_COLUMN, PREDICTION_COLUMN, REJECT_COLUMN, "model_package_arn", "model_package_version",
                 PARTITION_COLUMN, "run_id", "scored_at")
ROWS_FILE = "rows.parquet"
PREPARE_REPORT = "prepare_report.json"
REJECTED_FILE = "rejected.jsonl"
BATCH_REPORT = "batch_report.json"
DEFAULT_ROWS_PER_FILE = 100000
DEFAULT_MAX_REJECT_RATIO = 0.05
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9._=/-]")


class BatchScoringError(ValueError):
    """Bad input; the message is meant for the person reading the job's failure reason."""


# --- shared ----------------------------------------------------------------------------------------------------
def _write_json(directory: str, name: str, document: Dict) -> str:
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, name)
    with open(path, "w") as handle:
        json.dump(document, handle, indent=2, sort_keys=True)
    return path


def _failure(message: str) -> None:
    """SageMaker shows /opt/ml/output/message as the job's FailureReason (first 1024 characters)."""
    path = os.environ.get("BATCH_FAILURE_FILE", "/opt/ml/output/message")
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as handle:
            handle.write(message[:1024])
    except OSError:
        pass


def data_files(directory: str, suffixes: Tuple[str, ...]) -> List[str]:
    """Files under ``directory`` (recursive) ending with one of ``suffixes``, sorted by relative path; Spark's
    ``_SUCCESS`` and hidden files are not data."""
    found = []
    for root, _dirs, files in os.walk(directory):
        for name in files:
            if name.startswith(("_", ".")):
                continue
            if name.endswith(suffixes):
                found.append(os.path.join(root, name))
    return sorted(found, key=lambda p: os.path.relpath(p, directory))


# --- prepare ---------------------------------------------------------------------------------------------------
def load_metadata(model_dir: str) -> Dict:
    """model_metadata.json from the model.tar.gz under ``model_dir`` (or from the directory itself)."""
    plain = os.path.join(model_dir, METADATA_FILE)
    if os.path.isfile(plain):
        with open(plain) as handle:
            metadata = json.load(handle)
    else:
        archives = data_files(model_dir, (".tar.gz",))
        if len(archives) != 1:
            raise BatchScoringError("expected one model.tar.gz under {!r}, found {}".format(
                model_dir, [os.path.basename(a) for a in archives]))
        with tarfile.open(archives[0], "r:gz") as archive:
            member = next((m for m in archive.getmembers()
                           if m.isfile() and os.path.normpath(m.name) == METADATA_FILE), None)
            if member is None:
                raise BatchScoringError("{} has no {} at its top level (docs/CONTRACTS.md)".format(
                    os.path.basename(archives[0]), METADATA_FILE))
            metadata = json.load(io.TextIOWrapper(archive.extractfile(member), encoding="utf-8"))
    for key in ("features", "encoded_columns"):
        if key not in metadata:
            raise BatchScoringError("{} lacks {!r}".format(METADATA_FILE, key))
    return metadata


def read_partition(input_dir: str):
    """The partition's Parquet files as one Arrow table (their curated types kept) and each row's source file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    paths = data_files(input_dir, (".parquet", ".pq"))
    if not paths:
        raise BatchScoringError("no Parquet files under {!r}: the curated partition is empty".format(input_dir))
    tables, sources = [], []
    for path in paths:
        table = pq.read_table(path)
        if tables and not table.schema.equals(tables[0].schema):
            try:
                table = table.select(tables[0].schema.names).cast(tables[0].schema)
            except (KeyError, ValueError, pa.ArrowInvalid) as exc:
                raise BatchScoringError("{} has another schema than {}: {}".format(
                    os.path.relpath(path, input_dir), os.path.relpath(paths[0], input_dir), exc)) from None
        tables.append(table)
        sources.append((os.path.relpath(path, input_dir), table.num_rows))
    return pa.concat_tables(tables), sources


def record_keys(partition: str, sources: Sequence[Tuple[str, int]]) -> List[str]:
    """``<ingest date>/<file>#<row>`` per row: unique, stable for the partition's files, CSV-safe (no comma)."""
    keys = []
    for relpath, count in sources:
        safe = _KEY_UNSAFE.sub("_", relpath)
        keys.extend("{}/{}#{}".format(partition, safe, i) for i in range(count))
    return keys


def encode_row(row: Dict[str, Any], features: List[Dict], columns: List[str]) -> List[float]:
    """One raw row -> its encoded values, as serve.encode_instances encodes an application/json instance; a
    :class:`BatchScoringError` naming the feature for a row the endpoint would refuse."""
    index = dict((name, i) for i, name in enumerate(columns))
    out = [0.0] * len(columns)
    for feature in features:
        name = feature["name"]
        value = row.get(name)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            raise BatchScoringError("missing feature {}".format(name))
        if feature["type"] == "categorical":
            categories = [str(c) for c in feature.get("categories") or []]
            if not isinstance(value, str) or value not in categories:
                raise BatchScoringError("unknown category of {}".format(name))
            out[index["{}_{}".format(name, value)]] = 1.0
        else:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise BatchScoringError("{} is not a number".format(name))
            if not math.isfinite(float(value)):
                raise BatchScoringError("{} is not finite".format(name))
            out[index[name]] = float(value)
    return out


def csv_line(key: str, values: Sequence[float]) -> str:
    return ",".join([key] + [repr(float(v)) for v in values]) + "\n"


def prepare(args: argparse.Namespace) -> Dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    metadata = load_metadata(args.model_dir)
    features, columns = metadata["features"], list(metadata["encoded_columns"])
    table, sources = read_partition(args.input_dir)
    clashes = [c for c in ADDED_COLUMNS if c in table.column_names]
    if clashes:
        raise BatchScoringError("the curated rows already have column(s) {} that batch inference adds".format(clashes))
    missing = [f["name"] for f in features if f["name"] not in table.column_names]
    if missing:
        raise BatchScoringError("the curated partition lacks the model's feature column(s) {}".format(missing))
    keys = record_keys(args.partition, sources)
    rows = table.select([f["name"] for f in features]).to_pylist()

    os.makedirs(args.transform_dir, exist_ok=True)
    os.makedirs(args.report_dir, exist_ok=True)
    reasons = [None] * len(rows)  # type: List[Optional[str]]
    by_reason = Counter()  # type: Counter
    handle, part, written, in_part = None, 0, 0, 0
    with open(os.path.join(args.report_dir, REJECTED_FILE), "w") as rejected:
        for i, row in enumerate(rows):
            try:
                values = encode_row(row, features, columns)
            except BatchScoringError as exc:
                reasons[i] = str(exc)
                by_reason[str(exc)] += 1
                rejected.write(json.dumps({KEY_COLUMN: keys[i], REJECT_COLUMN: str(exc), "row": row},
                                          sort_keys=True, default=str) + "\n")
                continue
            if handle is None or in_part >= args.rows_per_file:
                if handle is not None:
                    handle.close()
                handle = open(os.path.join(args.transform_dir, "part-{:05d}.csv".format(part)), "w")
                part, in_part = part + 1, 0
            handle.write(csv_line(keys[i], values))
            written, in_part = written + 1, in_part + 1
    if handle is not None:
        handle.close()

    total = len(rows)
    rejected_count = total - written
    report = {
        "partition": args.partition,
        "files": [{"file": f, "rows": n} for f, n in sources],
        "rows_in": total,
        "rows_to_score": written,
        "rows_rejected": rejected_count,
        "rejected_by_reason": dict(sorted(by_reason.items())),
        "encoded_columns": columns,
        "transform_files": part,
    }
    _write_json(args.report_dir, PREPARE_REPORT, report)
    keyed = table.append_column(KEY_COLUMN, pa.array(keys, pa.string()))
    keyed = keyed.append_column(REJECT_COLUMN, pa.array(reasons, pa.string()))
    os.makedirs(args.rows_dir, exist_ok=True)
    pq.write_table(keyed, os.path.join(args.rows_dir, ROWS_FILE))
    print(json.dumps({k: report[k] for k in ("partition", "rows_in", "rows_to_score", "rows_rejected",
                                             "rejected_by_reason")}, sort_keys=True))
    if written == 0:
        raise BatchScoringError("none of the {} rows of partition {} can be scored: {}".format(
            total, args.partition, dict(by_reason)))
    if total and rejected_count / float(total) > args.max_reject_ratio:
        raise BatchScoringError("{} of {} rows of partition {} cannot be scored ({:.1%} > max_reject_ratio {}): "
                                "{}".format(rejected_count, total, args.partition, rejected_count / float(total),
                                            args.max_reject_ratio, dict(by_reason)))
    return report


# --- collect ---------------------------------------------------------------------------------------------------
def read_transform_output(transform_dir: str) -> Tuple[Dict[str, float], Dict[str, int], List[str]]:
    """``<record_key>,<prediction>`` lines of the ``*.out`` files -> (key -> prediction, problem counts, examples)."""
    predictions = {}  # type: Dict[str, float]
    problems = Counter()  # type: Counter
    examples = []  # type: List[str]
    paths = data_files(transform_dir, (".out",))
    if not paths:
        raise BatchScoringError("no transform output (*.out) under {!r}".format(transform_dir))

    def problem(kind: str, detail: str) -> None:
        problems[kind] += 1
        if len(examples) < 5:
            examples.append("{}: {}".format(kind, detail[:200]))

    for path in paths:
        with open(path) as handle:
            for number, line in enumerate(handle, start=1):
                line = line.strip()
                if not line:
                    continue
                where = "{}:{}".format(os.path.relpath(path, transform_dir), number)
                key, sep, value = line.rpartition(",")
                if not sep or not key:
                    problem("malformed_line", "{} {!r}".format(where, line))
                    continue
                try:
                    number_value = float(value)
                except ValueError:
                    problem("non_numeric_prediction", "{} {!r}".format(where, line))
                    continue
                if not math.isfinite(number_value):
                    problem("non_finite_prediction", "{} {!r}".format(where, line))
                    continue
                if key in predictions:
                    problem("repeated_key", "{} {}".format(where, key))
                    continue
                predictions[key] = number_value
    return predictions, dict(problems), examples


def collect(args: argparse.Namespace) -> Dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows_path = os.path.join(args.rows_dir, ROWS_FILE)
    if not os.path.isfile(rows_path):
        raise BatchScoringError("{} not found: run prepare first".format(rows_path))
    table = pq.read_table(rows_path)
    keys = table.column(KEY_COLUMN).to_pylist()
    reasons = table.column(REJECT_COLUMN).to_pylist()
    predictions, problems, examples = read_transform_output(args.transform_dir)

    sent = [k for k, r in zip(keys, reasons) if r is None]
    sent_set = set(sent)
    missing = [k for k in sent if k not in predictions]
    unknown = [k for k in predictions if k not in sent_set]
    if missing:
        problems["missing_prediction"] = len(missing)
        examples.extend("missing_prediction: {}".format(k) for k in missing[:3])
    if unknown:
        problems["unknown_key"] = len(unknown)
        examples.extend("unknown_key: {}".format(k) for k in unknown[:3])
    report = {
        "run_id": args.run_id,
        "partition": args.partition,
        "dt": args.dt,
        "model_package_arn": args.model_package_arn,
        "model_package_version": args.model_package_version,
        "rows_in": len(keys),
        "rows_scored": len(sent) - len(missing),
        "rows_rejected": len(keys) - len(sent),
        "rejected_by_reason": dict(sorted(Counter(r for r in reasons if r is not None).items())),
        "output_problems": dict(sorted(problems.items())),
        "output_problem_examples": examples,
    }
    _write_json(args.report_dir, BATCH_REPORT, report)
    print(json.dumps({k: report[k] for k in ("rows_in", "rows_scored", "rows_rejected", "output_problems")},
                     sort_keys=True))
    if problems:
        raise BatchScoringError("the transform output does not match the {} rows sent: {}; e.g. {}".format(
            len(sent), dict(sorted(problems.items())), examples[:3]))

    n = len(keys)
    scored_at = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    out = table.select([c for c in table.column_names if c not in (KEY_COLUMN, REJECT_COLUMN)])
    added = [
        (KEY_COLUMN, pa.array(keys, pa.string())),
        (PREDICTION_COLUMN, pa.array([predictions.get(k) if r is None else None for k, r in zip(keys, reasons)],
                                     pa.float64())),
        (REJECT_COLUMN, pa.array(reasons, pa.string())),
        ("model_package_arn", pa.array([args.model_package_arn] * n, pa.string())),
        ("model_package_version", pa.array([args.model_package_version] * n, pa.int32())),
        (PARTITION_COLUMN, pa.array([dt.date.fromisoformat(args.partition)] * n, pa.date32())),
        ("run_id", pa.array([args.run_id] * n, pa.string())),
        ("scored_at", pa.array([scored_at] * n, pa.string())),
    ]
    for name, column in added:
        out = out.append_column(name, column)
    os.makedirs(args.output_dir, exist_ok=True)
    pq.write_table(out, os.path.join(args.output_dir, "predictions-{}.parquet".format(args.run_id)))
    return report


# --- command line ----------------------------------------------------------------------------------------------
def _date(text: str) -> str:
    try:
        return dt.date.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError("expected a date YYYY-MM-DD, got {!r}".format(text)) from None


def _ratio(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("must be within [0, 1], got {}".format(text))
    return value


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command")
    commands.required = True
    base = PROCESSING_BASE
    p = commands.add_parser("prepare", help="curated partition -> transform input in the endpoint's contract")
    p.add_argument("--partition", required=True, type=_date, help="the ingest_date of the partition (YYYY-MM-DD)")
    p.add_argument("--max-reject-ratio", type=_ratio, default=DEFAULT_MAX_REJECT_RATIO,
                   help="fail when more than this share of the rows cannot be scored (default 0.05)")
    p.add_argument("--rows-per-file", type=int, default=DEFAULT_ROWS_PER_FILE)
    p.add_argument("--input-dir", default=base + "/input/data")
    p.add_argument("--model-dir", default=base + "/input/model")
    p.add_argument("--transform-dir", default=base + "/transform")
    p.add_argument("--rows-dir", default=base + "/rows")
    p.add_argument("--report-dir", default=base + "/report")
    c = commands.add_parser("collect", help="transform output + rows -> keyed, versioned predictions")
    c.add_argument("--partition", required=True, type=_date)
    c.add_argument("--dt", required=True, type=_date, help="the run's date (the output partition)")
    c.add_argument("--run-id", required=True)
    c.add_argument("--model-package-arn", required=True)
    c.add_argument("--model-package-version", required=True, type=int)
    c.add_argument("--rows-dir", default=base + "/input/rows")
    c.add_argument("--transform-dir", default=base + "/input/transform")
    c.add_argument("--output-dir", default=base + "/predictions")
    c.add_argument("--report-dir", default=base + "/report")
    args = parser.parse_args(argv)
    if args.command == "prepare" and args.rows_per_file < 1:
        parser.error("--rows-per-file must be at least 1")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    try:
        (prepare if args.command == "prepare" else collect)(args)
    except BatchScoringError as exc:
        message = "batch {}: {}".format(args.command, exc)
        print(message, file=sys.stderr)
        _failure(message)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
