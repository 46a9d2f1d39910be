"""Evaluate step: model.tar.gz + test.csv -> evaluation.json (+ predictions.csv for plots).

Runs as a processing job in the SageMaker XGBoost container (for ``framework: sklearn`` models in the scikit-learn
processing container, so the joblib file loads with the scikit-learn that wrote it) and as a plain script.
Standalone on purpose; keep it Python 3.8/3.9 compatible. The metrics are computed with numpy/pandas only, so no
particular scikit-learn version is needed for xgboost models.

Container paths (each overridable):
  model       /opt/ml/processing/model       model.tar.gz (as SageMaker packs /opt/ml/model), or its extracted files
  test        /opt/ml/processing/test        test.csv (header; target first, then encoded_columns)
  evaluation  /opt/ml/processing/evaluation  evaluation.json (docs/CONTRACTS.md shape) and predictions.csv
  champion    (``--champion-dir``, given)      ResolveChampion's output: champion.json and the champion's model.tar.gz

evaluation.json is ``{"<problem_type>_metrics": {"<metric>": {"value": v, "standard_deviation": s}}}``
(regression: rmse, mae, r2; binary_classification: auc, accuracy, f1), the challenger's (the model just trained).
``standard_deviation`` is a bootstrap estimate over the test rows (``--bootstrap-rounds``, 0 gives 0.0).

Champion vs challenger (``--champion-dir`` with ``--metric`` and ``--champion-margin``): the champion's model is
scored on the same test rows, and evaluation.json gets a ``champion_challenger`` block with both figures:
``{"metric", "higher_is_better", "challenger", "champion", "margin", "challenger_wins", "champion_package_arn",
"champion_version", "champion_metrics", "reason", "summary"}``. ``challenger_wins`` is numeric (1 or 0, for the
condition step): 1 when there is no champion (champion.json ``{"none": ...}``: the first model) or when the
challenger is better by at least ``margin`` (``challenger >= champion + margin`` if higher is better, else
``challenger <= champion - margin``), else 0. A champion that cannot score these rows (another target, problem type
or feature encoding: the dataset changed) is reported as not comparable and does not block the challenger. A
``--champion-dir`` that does not exist fails the step (the champion input is missing from the job).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import tarfile
import tempfile
from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

PROCESSING_BASE = "/opt/ml/processing"
METADATA_FILE = "model_metadata.json"
XGBOOST_MODEL_FILE = "xgboost-model.json"
SKLEARN_MODEL_FILE = "model.joblib"
EVALUATION_FILE = "evaluation.json"
PREDICTIONS_FILE = "predictions.csv"
CLASSIFICATION_CUTOFF = 0.5  # docs/CONTRACTS.md: the label is P(positive) >= 0.5
CHAMPION_FILE = "champion.json"
CHAMPION_BLOCK = "champion_challenger"
#: metric -> higher is better (sagemaker_steps.model_spec.METRICS; a test keeps the two equal).
HIGHER_IS_BETTER = {"rmse": False, "mae": False, "r2": True, "auc": True, "accuracy": True, "f1": True}


class EvaluateError(ValueError):
    """Bad input; the message is meant for the person running the pipeline."""


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", default=os.path.join(PROCESSING_BASE, "model"),
                        help="dir holding model.tar.gz (or the extracted model files), or the tarball itself")
    parser.add_argument("--test-dir", default=os.path.join(PROCESSING_BASE, "test"))
    parser.add_argument("--output-dir", default=os.path.join(PROCESSING_BASE, "evaluation"))
    parser.add_argument("--bootstrap-rounds", type=int, default=100)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--champion-dir", default=None,
                        help="ResolveChampion's output (champion.json, model.tar.gz); compare with the champion")
    parser.add_argument("--metric", default=None, help="the metric of the comparison (with --champion-dir)")
    parser.add_argument("--champion-margin", type=float, default=0.0,
                        help="in the metric's units: the challenger must be better by at least this much")
    args = parser.parse_args(argv)
    if args.champion_dir is not None and args.metric not in HIGHER_IS_BETTER:
        parser.error("--champion-dir needs --metric, one of {}".format(sorted(HIGHER_IS_BETTER)))
    if not args.champion_margin >= 0:
        parser.error("--champion-margin must be 0 or more, got {}".format(args.champion_margin))
    return args


# ---------------------------------------------------------------------------------------------------------------
# Metrics (numpy only; tests check them against scikit-learn)
# ---------------------------------------------------------------------------------------------------------------
def rmse(y, p) -> float:
    return float(np.sqrt(np.mean((np.asarray(y, float) - np.asarray(p, float)) ** 2)))


def mae(y, p) -> float:
    return float(np.mean(np.abs(np.asarray(y, float) - np.asarray(p, float))))


def r2(y, p) -> float:
    y = np.asarray(y, float)
    p = np.asarray(p, float)
    total = np.sum((y - y.mean()) ** 2)
    residual = np.sum((y - p) ** 2)
    if total == 0.0:
        return 1.0 if residual == 0.0 else 0.0
    return float(1.0 - residual / total)


def auc(y, scores) -> float:
    """ROC AUC via the Mann-Whitney statistic with average ranks for ties; nan when one class is absent."""
    y = np.asarray(y).astype(int)
    positives = int(y.sum())
    negatives = int(len(y) - positives)
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = pd.Series(np.asarray(scores, float)).rank(method="average").to_numpy()
    return float((ranks[y == 1].sum() - positives * (positives + 1) / 2.0) / (positives * negatives))


def accuracy(y, labels) -> float:
    return float(np.mean(np.asarray(y).astype(int) == np.asarray(labels).astype(int)))


def f1(y, labels) -> float:
    y = np.asarray(y).astype(int)
    labels = np.asarray(labels).astype(int)
    tp = int(np.sum((y == 1) & (labels == 1)))
    fp = int(np.sum((y == 0) & (labels == 1)))
    fn = int(np.sum((y == 1) & (labels == 0)))
    if tp == 0:
        return 0.0
    return float(2.0 * tp / (2.0 * tp + fp + fn))


def metric_functions(problem_type: str) -> Dict[str, Callable[[np.ndarray, np.ndarray], float]]:
    """Each function takes (actual, probability-or-prediction)."""
    if problem_type == "regression":
        return {"rmse": rmse, "mae": mae, "r2": r2}
    if problem_type == "binary_classification":
        def _labels(p):
            return (np.asarray(p, float) >= CLASSIFICATION_CUTOFF).astype(int)
        return {
            "auc": auc,
            "accuracy": lambda y, p: accuracy(y, _labels(p)),
            "f1": lambda y, p: f1(y, _labels(p)),
        }
    raise EvaluateError("unsupported problem_type {!r}".format(problem_type))


def compute_report(problem_type: str, actual: np.ndarray, predicted: np.ndarray, bootstrap_rounds: int,
                   seed: int) -> Dict:
    functions = metric_functions(problem_type)
    rng = np.random.RandomState(seed)
    samples = {name: [] for name in functions}
    n = len(actual)
    for _ in range(max(0, bootstrap_rounds)):
        idx = rng.randint(0, n, n)
        for name, fn in functions.items():
            value = fn(actual[idx], predicted[idx])
            if np.isfinite(value):
                samples[name].append(value)
    metrics = {}
    for name, fn in functions.items():
        value = fn(actual, predicted)
        std = float(np.std(samples[name], ddof=1)) if len(samples[name]) > 1 else 0.0
        metrics[name] = {"value": float(value), "standard_deviation": std}
    return {"{}_metrics".format(problem_type): metrics}


# ---------------------------------------------------------------------------------------------------------------
# Model loading
# ---------------------------------------------------------------------------------------------------------------
def _safe_extract(tar_path: str, destination: str) -> None:
    root = os.path.realpath(destination)
    with tarfile.open(tar_path, "r:*") as archive:
        members = archive.getmembers()
        for member in members:
            target = os.path.realpath(os.path.join(destination, member.name))
            if not (target == root or target.startswith(root + os.sep)):
                raise EvaluateError("model archive member {!r} escapes the extraction dir".format(member.name))
            if member.issym() or member.islnk() or member.isdev():
                raise EvaluateError("model archive member {!r} is a link or device".format(member.name))
        if hasattr(tarfile, "data_filter"):  # Python 3.12+ and patched 3.8-3.11
            archive.extractall(destination, members=members, filter="data")
        else:
            archive.extractall(destination, members=members)


def locate_model_files(model_path: str, scratch: str) -> str:
    """Return the dir holding model_metadata.json, extracting model.tar.gz (or any *.tar.gz) when present."""
    if os.path.isfile(model_path):
        tarballs = [model_path]
    else:
        if not os.path.isdir(model_path):
            raise EvaluateError("model path {!r} does not exist".format(model_path))
        if os.path.isfile(os.path.join(model_path, METADATA_FILE)):
            return model_path
        tarballs = sorted(glob.glob(os.path.join(model_path, "**", "*.tar.gz"), recursive=True))
        if not tarballs:
            raise EvaluateError("no model.tar.gz or {} under {!r}".format(METADATA_FILE, model_path))
    preferred = [t for t in tarballs if os.path.basename(t) == "model.tar.gz"]
    tarball = (preferred or tarballs)[0]
    _safe_extract(tarball, scratch)
    found = sorted(glob.glob(os.path.join(scratch, "**", METADATA_FILE), recursive=True))
    if not found:
        raise EvaluateError("{} holds no {}".format(tarball, METADATA_FILE))
    return os.path.dirname(found[0])


def load_predictor(model_dir: str) -> Tuple[Dict, Callable[[np.ndarray], np.ndarray]]:
    """Return (metadata, predict) where predict maps encoded rows to a prediction / P(positive)."""
    with open(os.path.join(model_dir, METADATA_FILE)) as handle:
        metadata = json.load(handle)
    framework = metadata.get("framework")
    binary = metadata.get("problem_type") == "binary_classification"
    if framework == "xgboost":
        import xgboost as xgb

        booster = xgb.Booster()
        booster.load_model(os.path.join(model_dir, XGBOOST_MODEL_FILE))
        if booster.feature_names and list(booster.feature_names) != list(metadata["encoded_columns"]):
            raise EvaluateError("the booster's feature names differ from encoded_columns in {}".format(
                METADATA_FILE))

        def predict(x):
            # Positional: x is in encoded_columns order (read_test enforces it).
            names = list(booster.feature_names) if booster.feature_names else None
            return booster.predict(xgb.DMatrix(x, feature_names=names))
    elif framework == "sklearn":
        import joblib

        model = joblib.load(os.path.join(model_dir, SKLEARN_MODEL_FILE))

        def predict(x):
            return model.predict_proba(x)[:, 1] if binary else model.predict(x)
    else:
        raise EvaluateError("unsupported framework {!r} in {}".format(framework, METADATA_FILE))
    return metadata, predict


def read_test(test_dir: str, metadata: Dict) -> Tuple[np.ndarray, np.ndarray]:
    if os.path.isfile(test_dir):
        files = [test_dir]
    else:
        files = sorted(glob.glob(os.path.join(test_dir, "**", "*.csv"), recursive=True))
    if not files:
        raise EvaluateError("no test CSV under {!r}".format(test_dir))
    frame = pd.concat([pd.read_csv(f) for f in files], ignore_index=True)
    target = metadata["target"]
    expected = [target] + list(metadata["encoded_columns"])
    missing = [c for c in expected if c not in frame.columns]
    if missing:
        raise EvaluateError("test data lacks columns {} the model expects".format(missing))
    if frame.empty:
        raise EvaluateError("test data under {!r} holds no rows".format(test_dir))
    frame = frame[expected]
    return frame[target].to_numpy(dtype=np.float64), frame.iloc[:, 1:].to_numpy(dtype=np.float64)


# ---------------------------------------------------------------------------------------------------------------
# Champion vs challenger
# ---------------------------------------------------------------------------------------------------------------
def challenger_wins(challenger: float, champion: Optional[float], margin: float, higher_is_better: bool) -> bool:
    """Whether the challenger beats the champion by at least ``margin`` (no champion, or a champion figure that is
    not finite: True; a challenger figure that is not finite: False)."""
    if champion is None or not np.isfinite(champion):
        return True
    if challenger is None or not np.isfinite(challenger):
        return False
    if higher_is_better:
        return challenger >= champion + margin
    return challenger <= champion - margin


def _figure(value: Optional[float]) -> str:
    return "none" if value is None else "{:.4f}".format(value)


def champion_block(metric: str, challenger: float, margin: float, champion: Optional[float] = None,
                   record: Optional[Dict] = None, champion_metrics: Optional[Dict] = None,
                   reason: Optional[str] = None) -> Dict:
    """evaluation.json's ``champion_challenger`` block (see the module docstring)."""
    record = record or {}
    higher = HIGHER_IS_BETTER[metric]
    wins = challenger_wins(challenger, champion, margin, higher)
    verdict = "challenger wins" if wins else "rejected"
    if champion is None:
        summary = "challenger {} {}, no champion ({}): judged on the threshold only".format(
            metric, _figure(challenger), reason or "none")
    else:
        summary = "challenger {m} {c} vs champion {m} {ch} (version {v}), margin {g:g}: {verdict}".format(
            m=metric, c=_figure(challenger), ch=_figure(champion), v=record.get("version"), g=margin, verdict=verdict)
    return {
        "metric": metric, "higher_is_better": higher, "challenger": challenger, "champion": champion,
        "margin": margin, "challenger_wins": 1 if wins else 0,
        "champion_package_arn": record.get("package_arn"), "champion_version": record.get("version"),
        "champion_metrics": champion_metrics, "reason": reason, "summary": summary,
    }


def read_champion(champion_dir: str) -> Dict:
    """champion.json of ResolveChampion's output; EvaluateError when the dir or the file is missing."""
    if not os.path.isdir(champion_dir):
        raise EvaluateError("champion dir {!r} does not exist: the job has no champion input (ResolveChampion's "
                            "output); not comparing would register a model the config asks to compare".format(
                                champion_dir))
    # Anywhere under the dir, as the test split and the model are found: an S3Prefix input without a trailing "/"
    # may keep the prefix's last part as a sub-directory.
    found = sorted(glob.glob(os.path.join(champion_dir, "**", CHAMPION_FILE), recursive=True))
    if len(found) != 1:
        raise EvaluateError("the champion input {!r} holds {} {} files, expected one (ResolveChampion's output)".format(
            champion_dir, len(found), CHAMPION_FILE))
    with open(found[0]) as handle:
        return json.load(handle)


def score_champion(champion_dir: str, test_dir: str, challenger_metadata: Dict, args: argparse.Namespace
                   ) -> Tuple[Optional[Dict], Dict, Optional[str]]:
    """(the champion's metrics report or None, champion.json, why there is no figure)."""
    record = read_champion(champion_dir)
    if "none" in record:
        return None, record, str(record["none"])
    with tempfile.TemporaryDirectory(prefix="champion-") as scratch:
        model_dir = locate_model_files(champion_dir, scratch)
        metadata, predict = load_predictor(model_dir)
        for key in ("target", "problem_type"):
            if metadata.get(key) != challenger_metadata.get(key):
                return None, record, "champion not comparable: its {} is {!r}, the challenger's {!r}".format(
                    key, metadata.get(key), challenger_metadata.get(key))
        try:
            actual, x = read_test(test_dir, metadata)
        except EvaluateError as exc:  # its encoded columns are not the test split's: the features changed
            return None, record, "champion not comparable: {}".format(exc)
        predicted = np.asarray(predict(x), dtype=np.float64)
    return compute_report(metadata["problem_type"], actual, predicted, args.bootstrap_rounds, args.seed), record, None


def run(args: argparse.Namespace) -> Dict:
    with tempfile.TemporaryDirectory(prefix="model-") as scratch:
        model_dir = locate_model_files(args.model_dir, scratch)
        metadata, predict = load_predictor(model_dir)
        actual, x = read_test(args.test_dir, metadata)
        predicted = np.asarray(predict(x), dtype=np.float64)
    problem_type = metadata["problem_type"]
    report = compute_report(problem_type, actual, predicted, args.bootstrap_rounds, args.seed)
    if args.champion_dir is not None:
        key = "{}_metrics".format(problem_type)
        if args.metric not in report[key]:
            raise EvaluateError("--metric {} is not computed for {}".format(args.metric, problem_type))
        champion_report, record, reason = score_champion(args.champion_dir, args.test_dir, metadata, args)
        champion_metrics = champion_report[key] if champion_report else None
        report[CHAMPION_BLOCK] = champion_block(
            args.metric, report[key][args.metric]["value"], args.champion_margin,
            champion_metrics[args.metric]["value"] if champion_metrics else None, record, champion_metrics, reason)
        print("Champion vs challenger: {}".format(report[CHAMPION_BLOCK]["summary"]))

    os.makedirs(args.output_dir, exist_ok=True)
    with open(os.path.join(args.output_dir, EVALUATION_FILE), "w") as handle:
        json.dump(report, handle, indent=2)
    predictions = pd.DataFrame({"actual": actual, "predicted": predicted})
    if problem_type == "binary_classification":
        predictions["actual"] = predictions["actual"].astype(int)
        predictions["predicted_label"] = (predicted >= CLASSIFICATION_CUTOFF).astype(int)
    predictions.to_csv(os.path.join(args.output_dir, PREDICTIONS_FILE), index=False)

    metrics = report["{}_metrics".format(problem_type)]
    print("Evaluated {} {} model on {} test rows: {}".format(
        metadata["framework"], problem_type, len(actual),
        ", ".join("{}={:.4f}".format(k, v["value"]) for k, v in metrics.items())))
    return report


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    try:
        run(args)
    except EvaluateError as exc:
        print("Evaluate failed: {}".format(exc), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
