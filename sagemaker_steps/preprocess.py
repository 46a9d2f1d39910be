"""Preprocess step: curated data -> encoded train/validation/test CSVs, feature spec, monitoring baseline.

Runs in the SageMaker scikit-learn processing container (framework 1.2-1) and as a plain script. Standalone on
purpose (SageMaker uploads this file alone); keep it Python 3.8/3.9 and pandas 1.x compatible.

Container paths (each overridable):
  input     /opt/ml/processing/input       curated Parquet (partitioned ``ingest_date=...``) and/or CSV, recursive
  train     /opt/ml/processing/train       train.csv + feature_spec.json
  validation /opt/ml/processing/validation validation.csv
  test      /opt/ml/processing/test        test.csv
  baseline  /opt/ml/processing/baseline    baseline.csv: the training rows exactly as the endpoint receives them
                                           (encoded_columns in order, numeric, no header, no target), the
                                           Model Monitor data-quality baseline dataset
  manifest  /opt/ml/processing/manifest    data_manifest.json: the input objects (relative path, size, SHA-256),
                                           their partitions, row count and one content digest of them all

The train/validation/test CSVs have a header row and the target (the 0/1 label for binary_classification) FIRST,
then the ``encoded_columns`` of the feature spec in order.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from typing import Dict, List, Optional, Sequence

import numpy as np
import pandas as pd

PROCESSING_BASE = "/opt/ml/processing"
PROBLEM_TYPES = ("regression", "binary_classification")
# Columns the curated zone adds that are never features (Hive partition columns and lineage).
DEFAULT_METADATA_COLUMNS = ("ingest_date",)
FEATURE_SPEC_FILE = "feature_spec.json"
MANIFEST_FILE = "data_manifest.json"
BASELINE_FILE = "baseline.csv"


class PreprocessError(ValueError):
    """Bad input or configuration; the message is meant for the person running the pipeline."""


def _optional_float(text: str) -> Optional[float]:
    """``--positive-threshold`` accepts '', 'none' or 'null' (a pipeline parameter cannot omit a flag)."""
    if text is None or str(text).strip().lower() in ("", "none", "null"):
        return None
    return float(text)


def _csv_list(text: str) -> List[str]:
    return [part.strip() for part in str(text or "").split(",") if part.strip()]


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target-column", required=True)
    parser.add_argument("--problem-type", default="regression", choices=PROBLEM_TYPES)
    parser.add_argument("--positive-threshold", type=_optional_float, default=None,
                        help="binary_classification: label = target >= threshold (required there)")
    parser.add_argument("--positive-label", default=None,
                        help="binary_classification on a string target: label = (target == positive label)")
    parser.add_argument("--exclude-columns", type=_csv_list, default=[],
                        help="comma-separated columns to drop besides ingest_date")
    parser.add_argument("--validation-fraction", type=float, default=0.15)
    parser.add_argument("--test-fraction", type=float, default=0.15)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--input-data-url", default="",
                        help="the S3 URI the input was downloaded from (recorded in the data manifest)")
    parser.add_argument("--input-dir", default=os.path.join(PROCESSING_BASE, "input"))
    parser.add_argument("--output-dir", default=PROCESSING_BASE,
                        help="base of the output dirs train/, validation/, test/, baseline/, manifest/")
    parser.add_argument("--train-dir", default=None)
    parser.add_argument("--validation-dir", default=None)
    parser.add_argument("--test-dir", default=None)
    parser.add_argument("--baseline-dir", default=None)
    parser.add_argument("--manifest-dir", default=None)
    args = parser.parse_args(argv)
    for name in ("train", "validation", "test", "baseline", "manifest"):
        attr = name + "_dir"
        if getattr(args, attr) is None:
            setattr(args, attr, os.path.join(args.output_dir, name))
    return args


# ---------------------------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------------------------
def _data_files(input_dir: str) -> List[str]:
    if os.path.isfile(input_dir):
        return [input_dir]
    if not os.path.isdir(input_dir):
        raise PreprocessError("input path {!r} does not exist".format(input_dir))
    files = []
    for root, dirs, names in os.walk(input_dir):
        # Skip Spark/Hadoop bookkeeping (_SUCCESS, _temporary/, .crc files, hidden dirs).
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
        for name in sorted(names):
            if name.startswith((".", "_")):
                continue
            path = os.path.join(root, name)
            if name.lower().endswith((".parquet", ".pq", ".csv")) or _is_parquet(path):
                files.append(path)
    return files


def _is_parquet(path: str) -> bool:
    """Some writers (Glue, Hadoop) name Parquet parts without an extension: recognise them by the magic bytes."""
    try:
        with open(path, "rb") as handle:
            return handle.read(4) == b"PAR1"
    except OSError:
        return False


def read_curated(input_dir: str, drop_columns: Sequence[str] = DEFAULT_METADATA_COLUMNS) -> pd.DataFrame:
    """Read every Parquet/CSV file under ``input_dir`` (recursively) into one frame, without ``drop_columns``.

    Files are read one by one, so Hive partition directories (``ingest_date=...``) never turn into columns; a
    metadata column written into some files themselves is dropped per file, before the files' columns are compared.
    """
    files = _data_files(input_dir)
    if not files:
        raise PreprocessError("no .parquet or .csv files found under {!r}".format(input_dir))
    frames = []
    read = []
    for path in files:
        if path.lower().endswith(".csv"):
            frame = pd.read_csv(path)
        else:
            frame = pd.read_parquet(path)
        frame = frame.drop(columns=[c for c in drop_columns if c in frame.columns])
        if len(frame.columns) == 0:
            continue
        frames.append(frame)
        read.append(path)
    if not frames:
        raise PreprocessError("the files under {!r} hold no columns".format(input_dir))
    columns = list(frames[0].columns)
    for path, frame in zip(read, frames):
        if sorted(frame.columns) != sorted(columns):
            raise PreprocessError("file {!r} has columns {} but the first file has {}".format(
                path, sorted(frame.columns), sorted(columns)))
    data = pd.concat([f[columns] for f in frames], ignore_index=True)
    print("Read {} rows x {} columns from {} file(s) under {}".format(len(data), len(columns), len(files),
                                                                     input_dir))
    return data


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def data_manifest(input_dir: str, input_data_url: str = "") -> Dict:
    """What this run read: every data file under ``input_dir`` (path relative to it, bytes, SHA-256), the Hive
    partitions (``key=value`` directories) they sit in, and one ``digest`` over the sorted (path, SHA-256) pairs, so
    two runs on the same objects give the same digest and any added, removed or changed object changes it."""
    files = _data_files(input_dir)
    root = input_dir if os.path.isdir(input_dir) else os.path.dirname(input_dir)
    entries = []
    partitions = set()
    for path in files:
        relative = os.path.relpath(path, root).replace(os.sep, "/")
        entries.append({"path": relative, "bytes": os.path.getsize(path), "sha256": _sha256(path)})
        for part in relative.split("/")[:-1]:
            if "=" in part:
                partitions.add(part)
    entries.sort(key=lambda e: e["path"])
    digest = hashlib.sha256("".join("{}\t{}\n".format(e["path"], e["sha256"]) for e in entries).encode("utf-8"))
    return {"input_data_url": input_data_url, "digest": "sha256:" + digest.hexdigest(), "file_count": len(entries),
            "partitions": sorted(partitions), "files": entries}


# ---------------------------------------------------------------------------------------------------------------
# Feature spec and encoding (the model_metadata.json contract in docs/CONTRACTS.md)
# ---------------------------------------------------------------------------------------------------------------
def is_categorical_dtype(dtype) -> bool:
    return (dtype == object or isinstance(dtype, pd.CategoricalDtype)
            or isinstance(dtype, pd.StringDtype))


def build_feature_spec(features: pd.DataFrame) -> List[Dict]:
    spec = []
    for name in features.columns:
        column = features[name]
        if is_categorical_dtype(column.dtype):
            categories = sorted(set(str(v) for v in column.dropna().tolist()))
            if not categories:
                raise PreprocessError("categorical column {!r} has no non-null values".format(name))
            spec.append({"name": str(name), "type": "categorical", "categories": categories})
        else:
            spec.append({"name": str(name), "type": "numeric"})
    return spec


def encoded_columns(spec: List[Dict]) -> List[str]:
    columns = []
    for feature in spec:
        if feature["type"] == "categorical":
            columns.extend("{}_{}".format(feature["name"], c) for c in feature["categories"])
        else:
            columns.append(feature["name"])
    duplicates = sorted(set(c for c in columns if columns.count(c) > 1))
    if duplicates:
        raise PreprocessError("one-hot encoding yields duplicate column names {}".format(duplicates))
    return columns


def encode(features: pd.DataFrame, spec: List[Dict]) -> pd.DataFrame:
    """One-hot in ``categories`` order (unknown or null -> all zeros), numeric -> float, in encoded order."""
    out = {}
    for feature in spec:
        name = feature["name"]
        column = features[name]
        if feature["type"] == "categorical":
            as_text = column.astype(object).where(column.notna(), None)
            as_text = as_text.map(lambda v: None if v is None else str(v))
            for category in feature["categories"]:
                out["{}_{}".format(name, category)] = (as_text == category).astype(np.float64).values
        else:
            try:
                out[name] = pd.to_numeric(column, errors="raise").astype(np.float64).values
            except (TypeError, ValueError) as exc:
                raise PreprocessError("numeric column {!r} holds non-numeric values: {}".format(name, exc))
    frame = pd.DataFrame(out, index=features.index)
    return frame[encoded_columns(spec)]


def derive_target(raw_target: pd.Series, problem_type: str, positive_threshold: Optional[float],
                  positive_label: Optional[str] = None) -> pd.Series:
    if problem_type == "binary_classification" and positive_label is not None:
        if positive_threshold is not None:
            raise PreprocessError("give one of --positive-threshold and --positive-label, not both")
        label = (raw_target.astype(str).str.strip() == positive_label).astype(np.int64)
        if label.nunique() < 2:
            raise PreprocessError("positive label {!r} puts every row in class {}; need both classes (values of {!r}: "
                                  "{})".format(positive_label, int(label.iloc[0]), raw_target.name,
                                               sorted(raw_target.astype(str).unique())[:10]))
        return label
    try:
        numeric = pd.to_numeric(raw_target, errors="raise")
    except (TypeError, ValueError) as exc:
        raise PreprocessError("target column {!r} must be numeric: {}".format(raw_target.name, exc))
    if problem_type == "regression":
        return numeric
    if positive_threshold is None:
        raise PreprocessError("binary_classification needs --positive-threshold (label = target >= threshold) or "
                              "--positive-label (label = target == label)")
    label = (numeric >= positive_threshold).astype(np.int64)
    counts = label.value_counts()
    if len(counts) < 2:
        raise PreprocessError("positive threshold {} puts every row in class {}; need both classes".format(
            positive_threshold, int(label.iloc[0])))
    return label


# ---------------------------------------------------------------------------------------------------------------
# Split
# ---------------------------------------------------------------------------------------------------------------
def row_fractions(rows: pd.DataFrame, seed: int) -> np.ndarray:
    """A number in [0, 1) per row, from a SHA-256 of the seed and the row's values (as text, in column order): the same
    row gets the same number in every run, whatever other rows the data holds."""
    text = rows.astype(str).agg("\x1f".join, axis=1)
    salt = "{}\x1e".format(seed)
    return np.array([int(hashlib.sha256((salt + t).encode("utf-8")).hexdigest()[:13], 16) / float(16 ** 13)
                     for t in text], dtype=np.float64)


def split_indices(rows: pd.DataFrame, validation_fraction: float, test_fraction: float, seed: int):
    """(train, validation, test) indices of ``rows``, each row placed by a hash of its values (:func:`row_fractions`).

    A row stays in its split across runs: a model retrained on more data is tested on rows neither it nor the
    approved champion trained on, so the champion vs challenger comparison is fair (a random split of the grown data
    would put rows the champion trained on into the test split and favour it). Identical rows share a split.
    """
    if not 0.0 < validation_fraction < 1.0 or not 0.0 < test_fraction < 1.0:
        raise PreprocessError("--validation-fraction and --test-fraction must be in (0, 1)")
    if validation_fraction + test_fraction >= 1.0:
        raise PreprocessError("--validation-fraction + --test-fraction must leave rows for training")
    fractions = row_fractions(rows, seed)
    test = fractions < test_fraction
    validation = ~test & (fractions < test_fraction + validation_fraction)
    train = ~test & ~validation
    index = rows.index
    for name, part in (("train", train), ("validation", validation), ("test", test)):
        if not part.any():
            raise PreprocessError("the {} split is empty; give more rows or larger fractions".format(name))
    return index[train], index[validation], index[test]


# ---------------------------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------------------------
def _write_csv(frame: pd.DataFrame, directory: str, name: str, header: bool = True) -> str:
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, name)
    frame.to_csv(path, index=False, header=header)
    return path


def run(args: argparse.Namespace) -> Dict:
    target = args.target_column
    if target in args.exclude_columns:
        raise PreprocessError("target column {!r} is listed in --exclude-columns".format(target))
    drop = list(DEFAULT_METADATA_COLUMNS) + [c for c in args.exclude_columns if c not in DEFAULT_METADATA_COLUMNS]
    manifest = data_manifest(args.input_dir, args.input_data_url)
    data = read_curated(args.input_dir, drop)
    if target not in data.columns:
        raise PreprocessError("target column {!r} not found in the input data; columns are {}".format(
            target, sorted(str(c) for c in data.columns)))

    missing_target = data[target].isna()
    if missing_target.any():
        print("Dropping {} row(s) with a null target".format(int(missing_target.sum())))
        data = data.loc[~missing_target].reset_index(drop=True)
    if data.empty:
        raise PreprocessError("no rows left after dropping rows with a null target")

    raw_features = data.drop(columns=[target])
    if raw_features.shape[1] == 0:
        raise PreprocessError("no feature columns left besides the target {!r}".format(target))
    y = derive_target(data[target], args.problem_type, args.positive_threshold, args.positive_label)
    train_idx, validation_idx, test_idx = split_indices(data, args.validation_fraction, args.test_fraction, args.seed)
    if args.problem_type == "binary_classification" and y.loc[test_idx].nunique() < 2:
        raise PreprocessError("the test split holds one class only; give more rows of each class")

    # Categories come from the whole curated dataset so that every split encodes to the same columns.
    features = build_feature_spec(raw_features)
    columns = encoded_columns(features)
    encoded = encode(raw_features, features)
    encoded.insert(0, target, y.values)

    outputs = {}
    outputs["train"] = _write_csv(encoded.loc[train_idx], args.train_dir, "train.csv")
    outputs["validation"] = _write_csv(encoded.loc[validation_idx], args.validation_dir, "validation.csv")
    outputs["test"] = _write_csv(encoded.loc[test_idx], args.test_dir, "test.csv")
    # The Model Monitor baseline: the training rows as the endpoint receives them (text/csv, encoded, no header, no
    # target), so the baseline and the captured requests have the same columns (_c0 ... _cN) and types.
    outputs["baseline"] = _write_csv(encoded.loc[train_idx, columns], args.baseline_dir, BASELINE_FILE,
                                     header=False)

    spec = {
        "features": features,
        "encoded_columns": columns,
        "target": target,
        "problem_type": args.problem_type,
        "positive_threshold": args.positive_threshold if args.problem_type == "binary_classification" else None,
    }
    spec_path = os.path.join(args.train_dir, FEATURE_SPEC_FILE)
    with open(spec_path, "w") as handle:
        json.dump(spec, handle, indent=2)
    outputs["feature_spec"] = spec_path
    manifest["rows"] = int(len(data))
    os.makedirs(args.manifest_dir, exist_ok=True)
    manifest_path = os.path.join(args.manifest_dir, MANIFEST_FILE)
    with open(manifest_path, "w") as handle:
        json.dump(manifest, handle, indent=2)
    outputs["manifest"] = manifest_path

    print("Split {} rows: train={} validation={} test={} ({} encoded feature columns, dropped {})".format(
        len(data), len(train_idx), len(validation_idx), len(test_idx), len(columns), ", ".join(drop)))
    return {"rows": int(len(data)), "train": int(len(train_idx)), "validation": int(len(validation_idx)),
            "test": int(len(test_idx)), "digest": manifest["digest"], "outputs": outputs}


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    try:
        run(args)
    except PreprocessError as exc:
        print("Preprocess failed: {}".format(exc), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
