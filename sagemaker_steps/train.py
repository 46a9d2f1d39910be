"""Train step: encoded CSVs -> model artifact (xgboost-model.json or model.joblib) + model_metadata.json.

Script mode in the SageMaker XGBoost framework container (xgboost 1.7+; only APIs present in 1.7 and 3.0 are used:
``DMatrix``, ``train`` with ``early_stopping_rounds``, ``Booster`` slicing and ``save_model(".json")``), or with
``--framework sklearn`` in the scikit-learn container (GradientBoostingRegressor/Classifier, joblib). Standalone on
purpose; keep it Python 3.8/3.9 compatible.

SageMaker conventions: hyperparameters arrive as CLI args (``--max_depth 5 --eta 0.2 --num_round 100``), the data
channels as ``SM_CHANNEL_TRAIN`` / ``SM_CHANNEL_VALIDATION`` (train.csv + feature_spec.json from preprocess,
validation.csv), the model dir as ``SM_MODEL_DIR`` (default /opt/ml/model), which SageMaker packs into model.tar.gz.
Each is overridable by a flag. Unknown hyperparameters are reported and ignored.

Serving: training copies serve.py (staged next to this script in the training job's source dir) into the model dir
as ``code/serve.py``, so model.tar.gz carries its own inference code (an endpoint with network isolation needs
nothing else). The registered model package sets ``SAGEMAKER_PROGRAM=serve.py`` and
``SAGEMAKER_SUBMIT_DIRECTORY=/opt/ml/model/code``; see serve.py for the handlers the inference toolkit calls.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

FEATURE_SPEC_FILE = "feature_spec.json"
METADATA_FILE = "model_metadata.json"
TRAINING_INFO_FILE = "training_info.json"
XGBOOST_MODEL_FILE = "xgboost-model.json"
SKLEARN_MODEL_FILE = "model.joblib"
FRAMEWORKS = ("xgboost", "sklearn")
# The inference code inside model.tar.gz: <model dir>/code/serve.py (SAGEMAKER_SUBMIT_DIRECTORY=/opt/ml/model/code).
# serve.py reads the files named above under the same names.
SERVING_CODE_DIR = "code"
SERVING_PROGRAM = "serve.py"


class TrainError(ValueError):
    """Bad input or configuration; the message is meant for the person running the pipeline."""


def _optional_int(text):
    if text is None or str(text).strip().lower() in ("", "none", "null"):
        return None
    return int(float(text))


def _optional_str(text):
    if text is None or str(text).strip().lower() in ("", "none", "null"):
        return None
    return str(text)


def parse_args(argv: Optional[Sequence[str]] = None) -> Tuple[argparse.Namespace, List[str]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--framework", default="xgboost", choices=FRAMEWORKS)
    # Hyperparameters (SageMaker passes them as --name value; the xgboost names are used for both frameworks:
    # for sklearn num_round -> n_estimators, eta -> learning_rate).
    parser.add_argument("--max_depth", type=int, default=5)
    parser.add_argument("--eta", type=float, default=0.2)
    parser.add_argument("--num_round", type=int, default=100)
    parser.add_argument("--objective", type=_optional_str, default=None,
                        help="default reg:squarederror (regression) / binary:logistic (binary_classification)")
    parser.add_argument("--subsample", type=float, default=1.0)
    parser.add_argument("--colsample_bytree", type=float, default=1.0)
    parser.add_argument("--min_child_weight", type=float, default=1.0)
    parser.add_argument("--gamma", type=float, default=0.0)
    parser.add_argument("--lambda", dest="reg_lambda", type=float, default=1.0)
    parser.add_argument("--alpha", type=float, default=0.0)
    parser.add_argument("--tree_method", default="hist")
    parser.add_argument("--eval_metric", type=_optional_str, default=None,
                        help="default rmse (regression) / auc (binary_classification)")
    parser.add_argument("--early_stopping_rounds", type=_optional_int, default=10,
                        help="stop when the validation metric has not improved for this many rounds; 0/none = off")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--nthread", type=_optional_int, default=None, help="default: all cores")
    parser.add_argument("--verbosity", type=int, default=1)
    # Paths.
    parser.add_argument("--train", default=os.environ.get("SM_CHANNEL_TRAIN", "/opt/ml/input/data/train"))
    parser.add_argument("--validation",
                        default=os.environ.get("SM_CHANNEL_VALIDATION", "/opt/ml/input/data/validation"))
    parser.add_argument("--model-dir", "--model_dir", dest="model_dir",
                        default=os.environ.get("SM_MODEL_DIR", "/opt/ml/model"))
    args, unknown = parser.parse_known_args(argv)
    return args, unknown


# ---------------------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------------------
def _find_file(directory: str, name: str) -> str:
    direct = os.path.join(directory, name)
    if os.path.isfile(direct):
        return direct
    found = sorted(glob.glob(os.path.join(directory, "**", name), recursive=True))
    if not found:
        raise TrainError("{} not found under {!r}".format(name, directory))
    return found[0]


def read_channel(directory: str, spec: Dict) -> Tuple[np.ndarray, np.ndarray]:
    """Read every CSV of a channel; check the header is target + encoded_columns; return (X, y)."""
    if not os.path.isdir(directory):
        raise TrainError("channel dir {!r} does not exist".format(directory))
    files = sorted(glob.glob(os.path.join(directory, "**", "*.csv"), recursive=True))
    if not files:
        raise TrainError("no CSV files in channel dir {!r}".format(directory))
    frame = pd.concat([pd.read_csv(f) for f in files], ignore_index=True)
    expected = [spec["target"]] + list(spec["encoded_columns"])
    if list(frame.columns) != expected:
        missing = [c for c in expected if c not in frame.columns]
        if missing or frame.columns[0] != spec["target"]:
            raise TrainError("channel {!r}: columns {} do not match target + encoded_columns {}".format(
                directory, list(frame.columns), expected))
        frame = frame[expected]
    if frame.empty:
        raise TrainError("channel {!r} holds no rows".format(directory))
    y = frame.iloc[:, 0].to_numpy(dtype=np.float64)
    x = frame.iloc[:, 1:].to_numpy(dtype=np.float64)
    return x, y


def load_feature_spec(train_dir: str) -> Dict:
    with open(_find_file(train_dir, FEATURE_SPEC_FILE)) as handle:
        spec = json.load(handle)
    for key in ("features", "encoded_columns", "target", "problem_type"):
        if key not in spec:
            raise TrainError("{} lacks {!r}".format(FEATURE_SPEC_FILE, key))
    return spec


# ---------------------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------------------
def _objective(args: argparse.Namespace, problem_type: str) -> str:
    if problem_type == "binary_classification":
        objective = args.objective or "binary:logistic"
        if objective != "binary:logistic":
            raise TrainError("binary_classification needs objective binary:logistic (the model must output "
                             "P(positive)); got {!r}".format(objective))
        return objective
    objective = args.objective or "reg:squarederror"
    if objective.startswith(("binary:", "multi:", "rank:")):
        raise TrainError("objective {!r} does not fit problem_type regression".format(objective))
    return objective


def train_xgboost(args, problem_type, x_train, y_train, x_val, y_val, feature_names) -> Dict:
    import xgboost as xgb

    params = {
        "objective": _objective(args, problem_type),
        "eval_metric": args.eval_metric or ("auc" if problem_type == "binary_classification" else "rmse"),
        "max_depth": args.max_depth,
        "eta": args.eta,
        "subsample": args.subsample,
        "colsample_bytree": args.colsample_bytree,
        "min_child_weight": args.min_child_weight,
        "gamma": args.gamma,
        "lambda": args.reg_lambda,
        "alpha": args.alpha,
        "tree_method": args.tree_method,
        "seed": args.seed,
        "verbosity": args.verbosity,
    }
    if args.nthread:
        params["nthread"] = args.nthread
    # No feature names in the booster on purpose: it is then positional (encoded_columns order), so it predicts on
    # any DMatrix, with or without names: numpy rows in the Lambda, CSV rows in the SageMaker XGBoost serving
    # container. A booster with names rejects a DMatrix without them.
    dtrain = xgb.DMatrix(x_train, label=y_train)
    dval = xgb.DMatrix(x_val, label=y_val)
    history = {}
    early = args.early_stopping_rounds if args.early_stopping_rounds and args.early_stopping_rounds > 0 else None
    booster = xgb.train(params, dtrain, num_boost_round=args.num_round,
                        evals=[(dtrain, "train"), (dval, "validation")], evals_result=history,
                        early_stopping_rounds=early, verbose_eval=max(1, args.num_round // 10))
    rounds_trained = len(history["validation"][params["eval_metric"]])
    best_iteration = rounds_trained - 1
    if early is not None:
        best_iteration = int(getattr(booster, "best_iteration", best_iteration))
        # Keep only the trees up to the best round so every consumer of the saved model gets the best model.
        booster = booster[: best_iteration + 1]
    path = os.path.join(args.model_dir, XGBOOST_MODEL_FILE)
    booster.save_model(path)
    validation_curve = history["validation"][params["eval_metric"]]
    # xgboost logs lines like "[12]#011validation-rmse:2.1" that SageMaker metric definitions can scrape.
    return {
        "model_file": XGBOOST_MODEL_FILE,
        "params": params,
        "num_round": args.num_round,
        "rounds_trained": rounds_trained,
        "best_iteration": best_iteration,
        "validation_metric": params["eval_metric"],
        "validation_score": float(validation_curve[best_iteration]),
        "framework_version": xgb.__version__,
        # Importance by encoded column (the booster itself is positional: f0, f1, ...).
        "feature_importance_gain": {
            feature_names[int(key[1:])]: float(value)
            for key, value in booster.get_score(importance_type="gain").items()
        },
    }


def train_sklearn(args, problem_type, x_train, y_train, x_val, y_val) -> Dict:
    import joblib
    import sklearn
    from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor
    from sklearn.metrics import log_loss, mean_squared_error, roc_auc_score

    if np.isnan(x_train).any() or np.isnan(x_val).any():
        raise TrainError("framework sklearn (GradientBoosting) cannot train on missing feature values; "
                         "use framework xgboost or clean the data")
    common = dict(learning_rate=args.eta, max_depth=args.max_depth, subsample=args.subsample,
                  min_samples_leaf=max(1, int(args.min_child_weight)), random_state=args.seed)
    if problem_type == "binary_classification":
        factory = lambda n: GradientBoostingClassifier(n_estimators=n, **common)  # noqa: E731
        y_train, y_val = y_train.astype(int), y_val.astype(int)
    else:
        factory = lambda n: GradientBoostingRegressor(n_estimators=n, **common)  # noqa: E731
    model = factory(args.num_round).fit(x_train, y_train)

    # Early stopping on the validation channel: score every stage, keep the best prefix of the ensemble.
    if problem_type == "binary_classification":
        losses = [log_loss(y_val, p[:, 1], labels=[0, 1]) for p in model.staged_predict_proba(x_val)]
        metric_name = "logloss"
    else:
        losses = [float(np.sqrt(mean_squared_error(y_val, p))) for p in model.staged_predict(x_val)]
        metric_name = "rmse"
    best_iteration = int(np.argmin(losses))
    early = args.early_stopping_rounds if args.early_stopping_rounds and args.early_stopping_rounds > 0 else None
    if early is not None and best_iteration + 1 < args.num_round:
        # Refit with exactly best_iteration + 1 stages (same seed, so the same trees as the prefix).
        model = factory(best_iteration + 1).fit(x_train, y_train)
    else:
        best_iteration = args.num_round - 1
    info = {
        "model_file": SKLEARN_MODEL_FILE,
        "params": dict(common, n_estimators=best_iteration + 1),
        "num_round": args.num_round,
        "rounds_trained": args.num_round,
        "best_iteration": best_iteration,
        "validation_metric": metric_name,
        "validation_score": float(losses[best_iteration]),
        "framework_version": sklearn.__version__,
    }
    if problem_type == "binary_classification":
        info["validation_auc"] = float(roc_auc_score(y_val, model.predict_proba(x_val)[:, 1]))
    joblib.dump(model, os.path.join(args.model_dir, SKLEARN_MODEL_FILE))
    print("[{}] validation-{}:{:.6f} (best of {} stages)".format(best_iteration, metric_name,
                                                                info["validation_score"], args.num_round))
    return info


def model_metadata(spec: Dict, framework: str) -> Dict:
    """The model_metadata.json of docs/CONTRACTS.md, exactly its keys."""
    return {
        "framework": framework,
        "problem_type": spec["problem_type"],
        "target": spec["target"],
        "features": spec["features"],
        "encoded_columns": spec["encoded_columns"],
        "positive_threshold": spec.get("positive_threshold"),
    }


def run(args: argparse.Namespace) -> Dict:
    write_serving_code(args.model_dir)  # first: a source dir without serve.py fails before anything is read
    spec = load_feature_spec(args.train)
    problem_type = spec["problem_type"]
    if problem_type not in ("regression", "binary_classification"):
        raise TrainError("unsupported problem_type {!r}".format(problem_type))
    x_train, y_train = read_channel(args.train, spec)
    x_val, y_val = read_channel(args.validation, spec)
    print("Training {} {} on {} rows ({} features), validating on {} rows".format(
        args.framework, problem_type, len(y_train), x_train.shape[1], len(y_val)))
    if args.framework == "xgboost":
        info = train_xgboost(args, problem_type, x_train, y_train, x_val, y_val, list(spec["encoded_columns"]))
    else:
        info = train_sklearn(args, problem_type, x_train, y_train, x_val, y_val)
    metadata = model_metadata(spec, args.framework)
    with open(os.path.join(args.model_dir, METADATA_FILE), "w") as handle:
        json.dump(metadata, handle, indent=2)
    info.update({"framework": args.framework, "train_rows": int(len(y_train)),
                 "validation_rows": int(len(y_val))})
    with open(os.path.join(args.model_dir, TRAINING_INFO_FILE), "w") as handle:
        json.dump(info, handle, indent=2)
    print("Best iteration {} validation-{}={:.6f}; wrote {} and {} to {}".format(
        info["best_iteration"], info["validation_metric"], info["validation_score"], info["model_file"],
        METADATA_FILE, args.model_dir))
    return info


def write_serving_code(model_dir: str) -> str:
    """Copy serve.py (next to this script) to ``<model_dir>/code/serve.py``: SageMaker packs the model dir into
    model.tar.gz, and the serving container imports SAGEMAKER_PROGRAM from SAGEMAKER_SUBMIT_DIRECTORY
    (/opt/ml/model/code)."""
    source = os.path.join(os.path.dirname(os.path.abspath(__file__)), SERVING_PROGRAM)
    if not os.path.isfile(source):
        raise TrainError("{} is not next to train.py ({}): the training source dir must hold both".format(
            SERVING_PROGRAM, os.path.dirname(source)))
    code_dir = os.path.join(model_dir, SERVING_CODE_DIR)  # makes model_dir too
    os.makedirs(code_dir, exist_ok=True)
    target = os.path.join(code_dir, SERVING_PROGRAM)
    shutil.copyfile(source, target)
    return target


def main(argv: Optional[Sequence[str]] = None) -> int:
    args, unknown = parse_args(argv)
    if unknown:
        print("Ignoring unknown arguments: {}".format(unknown), file=sys.stderr)
    try:
        run(args)
    except TrainError as exc:
        message = "Train failed: {}".format(exc)
        print(message, file=sys.stderr)
        # SageMaker shows /opt/ml/output/failure as the training job's FailureReason.
        failure_dir = os.environ.get("SM_OUTPUT_DIR", "/opt/ml/output")
        if os.path.isdir(failure_dir) and os.access(failure_dir, os.W_OK):
            with open(os.path.join(failure_dir, "failure"), "w") as handle:
                handle.write(message)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
