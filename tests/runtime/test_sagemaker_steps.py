"""The SageMaker Pipeline step scripts, run end to end by the local runner on the shipped abalone data."""
from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import math
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from sagemaker_steps import evaluate, model_spec, pipeline_spec as spec, preprocess  # noqa: E402
from sagemaker_steps.local_runner import (  # noqa: E402
    LocalRunResult,
    StepFailedError,
    curate_csv_for_local,
    run_local_pipeline,
    snake_case,
)
from sagemaker_steps.model_spec import ModelSpec  # noqa: E402

ABALONE = REPO / "data" / "abalone.csv"
ABALONE_ROWS = 4177
NUMERIC = ["length", "diameter", "height", "whole_weight", "shucked_weight", "viscera_weight", "shell_weight"]
ENCODED = ["sex_F", "sex_I", "sex_M", *NUMERIC]
CONTRACT_METADATA_KEYS = {"framework", "problem_type", "target", "features", "encoded_columns", "positive_threshold"}
REGRESSION_HP = {"max_depth": 5, "eta": 0.2, "num_round": 100}


# ---------------------------------------------------------------------------------------------------------------
# Fixtures: each pipeline runs once per module
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def curated(tmp_path_factory) -> Path:
    return curate_csv_for_local(ABALONE, tmp_path_factory.mktemp("curated"), ingest_date="2024-05-01")


@pytest.fixture(scope="module")
def regression(curated, tmp_path_factory) -> LocalRunResult:
    model = ModelSpec(name="abalone", target="rings", problem_type="regression", framework="xgboost", metric="rmse",
                      threshold=3.0, hyperparameters=REGRESSION_HP)
    return run_local_pipeline(curated, tmp_path_factory.mktemp("regression"), model)


@pytest.fixture(scope="module")
def binary(curated, tmp_path_factory) -> LocalRunResult:
    # An AUC of 0.99 cannot be reached on abalone: exercises the FailStep branch end to end.
    model = ModelSpec(name="abalone-old", target="rings", problem_type="binary_classification", metric="auc",
                      threshold=0.99, positive_threshold=10,
                      hyperparameters={"max_depth": 4, "eta": 0.2, "num_round": 50})
    return run_local_pipeline(curated, tmp_path_factory.mktemp("binary"), model)


@pytest.fixture(scope="module")
def sklearn_run(tmp_path_factory) -> LocalRunResult:
    work = tmp_path_factory.mktemp("sklearn")
    raw = pd.read_csv(ABALONE).sample(n=1000, random_state=7)
    raw.columns = [snake_case(c) for c in raw.columns]
    csv = work / "abalone_subsample.csv"  # a single curated CSV file is accepted as input too
    raw.to_csv(csv, index=False)
    model = ModelSpec(name="model", target="rings", framework="sklearn", metric="r2", threshold=0.3,
                      hyperparameters={"max_depth": 3, "eta": 0.1, "num_round": 80})
    return run_local_pipeline(csv, work / "run", model)


def _csv(result: LocalRunResult, name: str) -> pd.DataFrame:
    return pd.read_csv(result.outputs[name] / f"{name}.csv")


# ---------------------------------------------------------------------------------------------------------------
# Regression, xgboost, full abalone data
# ---------------------------------------------------------------------------------------------------------------
def test_regression_metrics_are_real_and_pass_the_condition(regression):
    metrics = regression.evaluation["regression_metrics"]
    rmse, mae, r2 = (metrics[m]["value"] for m in ("rmse", "mae", "r2"))
    # Abalone rings (range 1-29, sd ~3.2): a depth-5 boosted model lands around rmse 2.2, r2 0.55.
    assert 1.8 < rmse < 2.6
    assert 1.2 < mae < rmse
    assert 0.45 < r2 < 0.7
    assert regression.passed is True and regression.fail_message is None
    assert regression.metric_value == pytest.approx(rmse)


def test_condition_json_path_reads_the_evaluation_value(regression):
    path = spec.metric_json_path("regression", "rmse")
    assert path == "regression_metrics.rmse.value"
    value = spec.read_json_path(regression.evaluation, path)
    assert value == regression.evaluation["regression_metrics"]["rmse"]["value"] == regression.metric_value
    for metric in spec.METRICS_BY_PROBLEM_TYPE["regression"]:
        assert isinstance(spec.read_json_path(regression.evaluation, spec.metric_json_path("regression", metric)),
                          float)


def test_evaluation_json_has_exactly_the_contract_shape(regression):
    on_disk = json.loads((regression.outputs["evaluation"] / "evaluation.json").read_text())
    assert on_disk == regression.evaluation
    # the challenger's metrics, and the champion comparison (no registry in a plain local run: no champion)
    assert set(on_disk) == {"regression_metrics", "champion_challenger"}
    block = on_disk["champion_challenger"]
    assert (block["champion"], block["challenger_wins"], block["metric"]) == (None, 1, "rmse")
    assert block["challenger"] == on_disk["regression_metrics"]["rmse"]["value"]
    assert set(on_disk["regression_metrics"]) == {"rmse", "mae", "r2"}
    for entry in on_disk["regression_metrics"].values():
        assert set(entry) == {"value", "standard_deviation"}
        assert math.isfinite(entry["value"])
        assert 0.0 < entry["standard_deviation"] < 0.5  # bootstrap over ~630 test rows


def test_splits_add_up_and_have_target_first(regression):
    train, validation, test = (_csv(regression, n) for n in ("train", "validation", "test"))
    assert len(train) + len(validation) + len(test) == ABALONE_ROWS
    # Each row is placed by a hash of its values: the split sizes are binomial (sd about 23 rows here).
    assert len(test) == pytest.approx(0.15 * ABALONE_ROWS, abs=100)
    assert len(validation) == pytest.approx(0.15 * ABALONE_ROWS, abs=100)
    for frame in (train, validation, test):
        assert list(frame.columns) == ["rings", *ENCODED]
        assert frame[["sex_F", "sex_I", "sex_M"]].sum(axis=1).eq(1).all()
    assert train["rings"].dtype.kind == "i" and train["rings"].between(1, 29).all()


def _baseline(result: LocalRunResult) -> pd.DataFrame:
    return pd.read_csv(result.outputs["baseline"] / "baseline.csv", header=None)


def test_baseline_is_exactly_what_the_endpoint_receives(regression):
    """Model Monitor baseline = the training rows as text/csv requests: encoded, numeric, no header, no target."""
    first_line = (regression.outputs["baseline"] / "baseline.csv").read_text().splitlines()[0]
    assert all(float(cell) == float(cell) for cell in first_line.split(","))  # a data row, not a header
    baseline, train = _baseline(regression), _csv(regression, "train")
    assert baseline.shape == (len(train), len(ENCODED))
    assert all(dtype.kind == "f" for dtype in baseline.dtypes)
    np.testing.assert_array_equal(baseline.to_numpy(), train[ENCODED].to_numpy())
    # The serving code accepts every baseline row as a text/csv request unchanged.
    from sagemaker_steps import serve as serving

    metadata = json.loads((regression.model_dir / "model_metadata.json").read_text())
    body = "\n".join(first_line for _ in range(3))
    assert serving._input_rows(body, "text/csv", metadata).shape == (3, len(ENCODED))


def test_data_manifest_records_the_input_objects_and_a_content_digest(regression, curated, tmp_path):
    manifest = json.loads((regression.outputs["manifest"] / "data_manifest.json").read_text())
    (part,) = list(curated.rglob("*.parquet"))
    assert manifest["partitions"] == ["ingest_date=2024-05-01"]
    assert manifest["file_count"] == 1 and manifest["rows"] == ABALONE_ROWS
    assert manifest["files"] == [{"path": "ingest_date=2024-05-01/part-00000.parquet", "bytes": part.stat().st_size,
                                  "sha256": hashlib.sha256(part.read_bytes()).hexdigest()}]
    assert manifest["input_data_url"] == curated.resolve().as_uri()
    assert manifest["digest"].startswith("sha256:")
    # Same objects -> same digest; one more partition -> another digest.
    again = preprocess.data_manifest(str(curated))
    assert again["digest"] == manifest["digest"]
    grown = tmp_path / "grown"
    shutil.copytree(curated, grown)
    (grown / "ingest_date=2024-05-02").mkdir()
    shutil.copy2(part, grown / "ingest_date=2024-05-02" / "part-00000.parquet")
    changed = preprocess.data_manifest(str(grown))
    assert changed["digest"] != manifest["digest"]
    assert changed["partitions"] == ["ingest_date=2024-05-01", "ingest_date=2024-05-02"]


def test_feature_spec_and_contract_encoding_reproduce_train_csv(regression, curated):
    feature_spec = json.loads((regression.outputs["train"] / "feature_spec.json").read_text())
    assert feature_spec == {
        "features": [{"name": "sex", "type": "categorical", "categories": ["F", "I", "M"]}]
        + [{"name": n, "type": "numeric"} for n in NUMERIC],
        "encoded_columns": ENCODED,
        "target": "rings",
        "problem_type": "regression",
        "positive_threshold": None,
    }
    # Encoding the raw rows exactly as CONTRACTS.md tells inference to gives the train.csv features.
    curated_rows = pd.read_parquet(next(curated.rglob("*.parquet")))
    train = _csv(regression, "train")
    rows = []
    for record in curated_rows.to_dict(orient="records"):
        row = []
        for feature in feature_spec["features"]:
            if feature["type"] == "categorical":
                row += [1.0 if record[feature["name"]] == c else 0.0 for c in feature["categories"]]
            else:
                row.append(float(record[feature["name"]]))
        rows.append(row)
    encoded = np.array(rows)
    # Every train row is one of the curated rows, encoded (train.csv holds a subset, in curated order).
    as_set = {tuple(r) for r in encoded.round(6)}
    assert all(tuple(r) in as_set for r in train[ENCODED].to_numpy().round(6))
    assert encoded.shape[1] == len(ENCODED)


def test_model_artifact_layout_and_metadata_contract(regression):
    with tarfile.open(regression.model_artifact) as archive:
        names = set(archive.getnames())
    assert {"xgboost-model.json", "model_metadata.json", "code/serve.py"} <= names
    # contents at the archive root, as SageMaker packs /opt/ml/model; only the inference code in code/
    assert all("/" not in n or n.startswith("code/") for n in names)
    assert [n for n in names if n.startswith("code/")] == ["code/serve.py"]
    serve_py = spec.SCRIPTS_DIR / spec.serving_environment()["SAGEMAKER_PROGRAM"]
    assert (regression.model_dir / "code" / "serve.py").read_bytes() == serve_py.read_bytes()
    metadata = json.loads((regression.model_dir / "model_metadata.json").read_text())
    assert set(metadata) == CONTRACT_METADATA_KEYS
    assert metadata["framework"] == "xgboost"
    assert metadata["problem_type"] == "regression"
    assert metadata["target"] == "rings"
    assert metadata["encoded_columns"] == ENCODED
    assert metadata["features"][0] == {"name": "sex", "type": "categorical", "categories": ["F", "I", "M"]}
    assert metadata["positive_threshold"] is None


def test_model_predicts_positionally_and_was_early_stopped(regression):
    import xgboost as xgb

    booster = xgb.Booster()
    booster.load_model(str(regression.model_dir / "xgboost-model.json"))
    info = json.loads((regression.model_dir / "training_info.json").read_text())
    assert info["best_iteration"] < REGRESSION_HP["num_round"] - 1  # validation early stopping kicked in
    assert booster.num_boosted_rounds() == info["best_iteration"] + 1  # only the best trees are saved
    test = _csv(regression, "test")
    # A plain numpy matrix in encoded_columns order (what a Lambda builds) reproduces the evaluated predictions.
    predicted = booster.predict(xgb.DMatrix(test[ENCODED].to_numpy(dtype=float)))
    predictions = pd.read_csv(regression.outputs["evaluation"] / "predictions.csv")
    assert list(predictions.columns) == ["actual", "predicted"]
    np.testing.assert_allclose(predictions["predicted"], predicted, rtol=1e-6)
    np.testing.assert_array_equal(predictions["actual"], test["rings"])


def test_evaluate_metrics_match_scikit_learn(regression, binary):
    from sklearn.metrics import (accuracy_score, f1_score, mean_absolute_error, mean_squared_error, r2_score,
                                 roc_auc_score)

    reg = pd.read_csv(regression.outputs["evaluation"] / "predictions.csv")
    metrics = regression.evaluation["regression_metrics"]
    assert metrics["rmse"]["value"] == pytest.approx(math.sqrt(mean_squared_error(reg.actual, reg.predicted)))
    assert metrics["mae"]["value"] == pytest.approx(mean_absolute_error(reg.actual, reg.predicted))
    assert metrics["r2"]["value"] == pytest.approx(r2_score(reg.actual, reg.predicted))
    clf = pd.read_csv(binary.outputs["evaluation"] / "predictions.csv")
    metrics = binary.evaluation["binary_classification_metrics"]
    assert list(clf.columns) == ["actual", "predicted", "predicted_label"]
    assert (clf.predicted_label == (clf.predicted >= 0.5)).all()
    assert metrics["auc"]["value"] == pytest.approx(roc_auc_score(clf.actual, clf.predicted))
    assert metrics["accuracy"]["value"] == pytest.approx(accuracy_score(clf.actual, clf.predicted_label))
    assert metrics["f1"]["value"] == pytest.approx(f1_score(clf.actual, clf.predicted_label))


def test_training_is_deterministic_and_ignores_unknown_hyperparameters(regression, tmp_path):
    model_dir = tmp_path / "model"
    completed = subprocess.run(
        [sys.executable, str(spec.step_by_name("Train").script_path),
         *spec.hyperparameters_to_cli(spec.training_hyperparameters("xgboost", {**REGRESSION_HP, "nthread": 1})),
         "--sagemaker_extra", "x",
         "--train", str(regression.outputs["train"]), "--validation", str(regression.outputs["validation"]),
         "--model-dir", str(model_dir)],
        capture_output=True, text=True, check=True)
    assert "Ignoring unknown arguments" in completed.stderr
    assert (model_dir / "xgboost-model.json").read_bytes() == \
        (regression.model_dir / "xgboost-model.json").read_bytes()


def test_unmeetable_threshold_fails_with_message(regression):
    # The condition applied to this run's real metric with a threshold no model reaches.
    value = regression.metric_value
    assert spec.metric_passes(value, 0.5, spec.HIGHER_IS_BETTER["rmse"]) is False
    assert spec.format_fail_message("abalone", "rmse", value, 0.5) == \
        f"Model abalone rmse={value} does not meet the threshold 0.5; not registered."


# ---------------------------------------------------------------------------------------------------------------
# Binary classification and sklearn
# ---------------------------------------------------------------------------------------------------------------
def test_binary_classification_run(binary):
    metrics = binary.evaluation["binary_classification_metrics"]
    assert set(binary.evaluation) == {"binary_classification_metrics", "champion_challenger"}
    assert set(metrics) == {"auc", "accuracy", "f1"}
    # rings >= 10 from shell measurements: AUC ~0.87, accuracy ~0.77.
    assert 0.82 < metrics["auc"]["value"] < 0.95
    assert 0.70 < metrics["accuracy"]["value"] < 0.9
    assert 0.65 < metrics["f1"]["value"] < 0.9
    assert binary.metric_value == metrics["auc"]["value"]
    # The threshold 0.99 cannot be met: not registered, with the FailStep message.
    assert binary.passed is False
    assert binary.fail_message == (
        f"Model abalone-old auc={binary.metric_value} does not meet the threshold 0.99; not registered.")
    metadata = json.loads((binary.model_dir / "model_metadata.json").read_text())
    assert metadata["problem_type"] == "binary_classification" and metadata["positive_threshold"] == 10
    assert set(metadata) == CONTRACT_METADATA_KEYS


def test_binary_labels_and_both_classes_in_every_split(binary, curated):
    train, test = _csv(binary, "train"), _csv(binary, "test")
    assert set(train["rings"]) == {0, 1} and set(test["rings"]) == {0, 1}
    rings = pd.read_parquet(next(curated.rglob("*.parquet")))["rings"]
    positive_rate = float((rings >= 10).mean())
    assert train["rings"].mean() == pytest.approx(positive_rate, abs=0.05)
    assert test["rings"].mean() == pytest.approx(positive_rate, abs=0.05)


def test_a_row_keeps_its_split_when_the_data_grows():
    """Champion vs challenger: a retrain on more data is tested on rows the champion never trained on."""
    rng = np.random.default_rng(0)
    old = pd.DataFrame({"x": rng.normal(size=2000), "y": rng.integers(0, 30, size=2000)})
    grown = pd.concat([old, pd.DataFrame({"x": rng.normal(size=500) + 5, "y": rng.integers(0, 30, size=500)})],
                      ignore_index=True)
    before = [set(part) for part in preprocess.split_indices(old, 0.15, 0.15, seed=42)]
    after = [set(part) for part in preprocess.split_indices(grown, 0.15, 0.15, seed=42)]
    for part_before, part_after in zip(before, after):
        assert part_before == {i for i in part_after if i < 2000}
    assert before != [set(part) for part in preprocess.split_indices(old, 0.15, 0.15, seed=7)]


def test_sklearn_run_on_subsample(sklearn_run):
    metrics = sklearn_run.evaluation["regression_metrics"]
    assert 1.8 < metrics["rmse"]["value"] < 3.0
    assert metrics["r2"]["value"] > 0.4
    assert sklearn_run.passed is True and sklearn_run.metric_value == metrics["r2"]["value"]
    with tarfile.open(sklearn_run.model_artifact) as archive:
        assert {"model.joblib", "model_metadata.json"} <= set(archive.getnames())
    metadata = json.loads((sklearn_run.model_dir / "model_metadata.json").read_text())
    assert metadata["framework"] == "sklearn" and metadata["encoded_columns"] == ENCODED
    sizes = [len(_csv(sklearn_run, n)) for n in ("train", "validation", "test")]
    assert sum(sizes) == 1000


# ---------------------------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------------------------
def test_missing_target_column_fails_preprocess_clearly(curated, tmp_path):
    with pytest.raises(StepFailedError) as caught:
        run_local_pipeline(curated, tmp_path, ModelSpec(name="model", target="age", metric="rmse", threshold=3.0))
    assert caught.value.step == "Preprocess"
    assert "target column 'age' not found in the input data" in str(caught.value)
    assert "'rings'" in str(caught.value)  # lists the available columns
    assert not (tmp_path / "Train").exists()


def test_preprocess_reads_partitions_recursively_and_drops_metadata(tmp_path, capsys):
    data = pd.DataFrame({"colour": ["red", "blue", "red", "green"] * 10, "size": np.arange(40, dtype=float),
                         "owner_id": range(40), "y": np.arange(40) % 7})
    (tmp_path / "in" / "ingest_date=2024-01-01").mkdir(parents=True)
    (tmp_path / "in" / "ingest_date=2024-01-02").mkdir(parents=True)
    data.iloc[:20].assign(ingest_date="2024-01-01").to_parquet(
        tmp_path / "in" / "ingest_date=2024-01-01" / "part-0.parquet")
    data.iloc[20:30].to_parquet(tmp_path / "in" / "ingest_date=2024-01-02" / "part-00000-c000")  # no extension
    data.iloc[30:].to_csv(tmp_path / "in" / "extra.csv", index=False)
    (tmp_path / "in" / "_SUCCESS").write_text("")
    code = preprocess.main(["--target-column", "y", "--exclude-columns", "owner_id", "--input-dir",
                            str(tmp_path / "in"), "--output-dir", str(tmp_path / "out"), "--test-fraction", "0.2",
                            "--validation-fraction", "0.2"])
    assert code == 0
    feature_spec = json.loads((tmp_path / "out" / "train" / "feature_spec.json").read_text())
    assert feature_spec["encoded_columns"] == ["colour_blue", "colour_green", "colour_red", "size"]
    frames = [pd.read_csv(tmp_path / "out" / n / f"{n}.csv") for n in ("train", "validation", "test")]
    assert sum(len(f) for f in frames) == 40
    baseline = pd.read_csv(tmp_path / "out" / "baseline" / "baseline.csv", header=None)
    assert baseline.shape == (len(frames[0]), 4)  # encoded colour_blue, colour_green, colour_red, size
    manifest = json.loads((tmp_path / "out" / "manifest" / "data_manifest.json").read_text())
    assert [f["path"] for f in manifest["files"]] == [
        "extra.csv", "ingest_date=2024-01-01/part-0.parquet", "ingest_date=2024-01-02/part-00000-c000"]
    assert manifest["partitions"] == ["ingest_date=2024-01-01", "ingest_date=2024-01-02"]
    assert "Read 40 rows" in capsys.readouterr().out


def test_preprocess_configuration_errors(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    pd.DataFrame({"a": np.arange(30.0), "y": np.arange(30) % 5}).to_csv(tmp_path / "in" / "d.csv", index=False)
    base = ["--input-dir", str(tmp_path / "in"), "--output-dir", str(tmp_path / "out"), "--target-column", "y"]
    assert preprocess.main(base + ["--problem-type", "binary_classification"]) == 2
    assert "binary_classification needs --positive-threshold (label = target >= threshold) or --positive-label" in (
        capsys.readouterr().err)
    assert preprocess.main(base + ["--problem-type", "binary_classification", "--positive-threshold", "99"]) == 2
    assert "need both classes" in capsys.readouterr().err
    assert preprocess.main(["--input-dir", str(tmp_path / "nothing"), "--target-column", "y"]) == 2
    assert "does not exist" in capsys.readouterr().err
    # A pipeline parameter cannot omit a flag: '' means "no positive threshold".
    assert preprocess.main(base + ["--positive-threshold", ""]) == 0


def test_preprocess_labels_a_string_target_by_its_positive_label(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    frame = pd.DataFrame({"a": np.arange(200.0), "patient": np.arange(200), "diagnosis": ["M", "B", "B", "B"] * 50})
    frame.to_csv(tmp_path / "in" / "d.csv", index=False)
    base = ["--input-dir", str(tmp_path / "in"), "--output-dir", str(tmp_path / "out"), "--target-column",
            "diagnosis", "--problem-type", "binary_classification", "--exclude-columns", "patient"]
    assert preprocess.main(base + ["--positive-label", "M"]) == 0
    train = pd.read_csv(tmp_path / "out" / "train" / "train.csv")
    assert list(train.columns) == ["diagnosis", "a"]  # the label first; the excluded column is not a feature
    labels = pd.concat([pd.read_csv(tmp_path / "out" / d / f"{d}.csv")["diagnosis"]
                        for d in ("train", "validation", "test")])
    assert sorted(labels.unique()) == [0, 1] and labels.sum() == 50
    assert preprocess.main(base + ["--positive-label", "X"]) == 2
    assert "positive label 'X' puts every row in class 0; need both classes" in capsys.readouterr().err


def test_model_spec_rejects_a_metric_of_another_problem_type():
    with pytest.raises(ValueError, match="metric 'auc' is not computed for problem_type regression"):
        ModelSpec(name="model", target="rings", metric="auc", threshold=0.8)


@pytest.mark.parametrize("fields,message", [
    ({"framework": "lightgbm"}, "ModelSpec m: unknown framework 'lightgbm'; use one of ['xgboost', 'sklearn']"),
    ({"problem_type": "binary_classification", "metric": "auc"},
     "ModelSpec m: binary_classification needs one of positive_threshold (numeric target: label = target >= "
     "threshold) and positive_label (string target: label = target == positive_label)"),
    ({"problem_type": "binary_classification", "metric": "auc", "positive_threshold": 1.0, "positive_label": "M"},
     "ModelSpec m: binary_classification needs one of positive_threshold (numeric target: label = target >= "
     "threshold) and positive_label (string target: label = target == positive_label)"),
    ({"positive_label": "M"}, "ModelSpec m: positive_threshold and positive_label apply to binary_classification "
     "only; remove them"),
    ({"exclude_columns": ["rings"]}, "ModelSpec m: exclude_columns names the target 'rings'; remove it"),
    ({"target": ""}, "ModelSpec m: target is empty; name the column to predict"),
    ({"problem_type": "ranking"}, "unknown problem_type 'ranking'; use one of ['regression', 'binary_classification']"),
])
def test_model_spec_errors_name_the_value_and_the_fix(fields, message):
    with pytest.raises(ValueError) as caught:
        ModelSpec(**{"name": "m", "target": "rings", "metric": "rmse", "threshold": 3.0, **fields})
    assert str(caught.value) == message


def test_model_spec_is_frozen_hashable_and_keeps_hyperparameter_order():
    model = ModelSpec(name="m", target="rings", metric="rmse", threshold=3.0,
                      hyperparameters={"num_round": 10, "eta": 0.3})
    assert model.hyperparameters == (("num_round", 10), ("eta", 0.3))
    assert model == ModelSpec(name="m", target="rings", metric="rmse", threshold=3.0,
                              hyperparameters=[("num_round", 10), ("eta", 0.3)])
    assert hash(model) == hash(dataclasses.replace(model))
    with pytest.raises(dataclasses.FrozenInstanceError):
        model.threshold = 1.0  # type: ignore[misc]
    assert json.loads(json.dumps(model.as_dict()))["hyperparameters"] == [["num_round", 10], ["eta", 0.3]]
    assert (model.higher_is_better, model.metric_json_path) == (False, "regression_metrics.rmse.value")


def test_model_spec_needs_neither_cdk_nor_pydantic():
    code = ("import sys; import sagemaker_steps.model_spec, sagemaker_steps.pipeline_spec, sagemaker_steps.local_runner; "
            "print(sorted(m for m in ('aws_cdk', 'pydantic', 'jsii', 'sagemaker') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ---------------------------------------------------------------------------------------------------------------
# The pipeline spec
# ---------------------------------------------------------------------------------------------------------------
def test_spec_step_order_and_wiring():
    for framework in spec.FRAMEWORKS:
        steps = spec.pipeline_steps(framework)
        assert [s.name for s in steps] == ["ResolveChampion", "Preprocess", "Train", "Evaluate", "CheckMetric",
                                           "Register", "FailStep"]
        assert [s.name for s in spec.pipeline_steps(framework, champion=False)] == [
            "Preprocess", "Train", "Evaluate", "CheckMetric", "Register", "FailStep"]
        seen: dict[str, set[str]] = {}
        for step in steps:
            for channel in step.inputs:
                if channel.source.startswith("param:"):
                    assert channel.source[len("param:"):] in spec.PIPELINE_PARAMETERS
                else:
                    producer, output = channel.source.split(".")
                    assert output in seen[producer], f"{step.name}.{channel.name} <- {channel.source}"
            seen[step.name] = {c.name for c in step.outputs}
            if step.script:
                assert step.script_path.is_file()
                assert step.container in spec.CONTAINER_IMAGES
        by_name = {s.name: s for s in steps}
        assert by_name["Train"].container == f"{framework}-training"
        assert by_name["Evaluate"].container == f"{framework}-processing"
        assert by_name["Preprocess"].container == "sklearn-processing"
        assert by_name["CheckMetric"].if_steps == ("Register",)
        assert by_name["CheckMetric"].else_steps == ("FailStep",)
        assert by_name["Evaluate"].upstream_steps() == ("Train", "Preprocess", "ResolveChampion")
        assert by_name["ResolveChampion"].upstream_steps() == ()  # runs while Preprocess and Train do
        assert by_name["ResolveChampion"].container == "sklearn-processing"
    report = spec.step_by_name("Evaluate").property_files[0]
    assert (report.name, report.output_name, report.path) == ("EvaluationReport", "evaluation", "evaluation.json")
    assert spec.step_by_name("Evaluate").output(report.output_name).container_path == "/opt/ml/processing/evaluation"
    json.dumps(spec.as_dict())  # plain data all the way down


def test_one_metric_table_for_the_config_and_the_pipeline():
    from platform_config.schema import METRICS

    assert METRICS is spec.METRICS is model_spec.METRICS
    assert spec.HIGHER_IS_BETTER == {"rmse": False, "mae": False, "r2": True, "auc": True, "accuracy": True,
                                     "f1": True}
    for problem_type, metrics in METRICS.items():
        assert set(spec.METRICS_BY_PROBLEM_TYPE[problem_type]) == set(metrics)
        for metric, higher in metrics.items():
            assert spec.HIGHER_IS_BETTER[metric] is higher
            assert spec.metric_json_path(problem_type, metric) == f"{problem_type}_metrics.{metric}.value"
            assert spec.condition_operator(metric) == ("GreaterThanOrEqualTo" if higher else "LessThanOrEqualTo")


@pytest.mark.parametrize("value,threshold,higher,expected", [
    (2.0, 3.0, False, True), (3.0, 3.0, False, True), (3.1, 3.0, False, False),
    (0.9, 0.8, True, True), (0.8, 0.8, True, True), (0.7, 0.8, True, False),
    (float("nan"), 3.0, False, False), (float("nan"), 0.8, True, False), (None, 0.8, True, False),
])
def test_metric_passes(value, threshold, higher, expected):
    assert spec.metric_passes(value, threshold, higher) is expected


def test_fail_message_parts_rebuild_the_template():
    parts = spec.fail_message_parts()
    assert [p for kind, p in parts if kind == "field"] == ["model", "metric", "value", "threshold"]
    rebuilt = "".join(p if kind == "text" else "{" + p + "}" for kind, p in parts)
    assert rebuilt == spec.FAIL_MESSAGE_TEMPLATE


def test_step_arguments():
    assert spec.preprocess_arguments("rings", "binary_classification", 10) == [
        "--target-column", "rings", "--problem-type", "binary_classification", "--validation-fraction", "0.15",
        "--test-fraction", "0.15", "--seed", "42", "--positive-threshold", "10"]
    with pytest.raises(ValueError, match="positive_threshold"):
        spec.preprocess_arguments("rings", "binary_classification")
    assert spec.preprocess_arguments("diagnosis", "binary_classification", positive_label="M",
                                     exclude_columns=["id"])[-4:] == [
        "--positive-label", "M", "--exclude-columns", "id"]
    hp = spec.training_hyperparameters("sklearn", {"max_depth": 3})
    assert hp["framework"] == "sklearn" and hp["max_depth"] == "3" and hp["num_round"] == "100"
    assert all(isinstance(v, str) for v in hp.values())


def test_train_and_serve_agree_on_the_model_dir_and_travel_together(tmp_path):
    """serve.py reads what train.py writes (both standalone, so each names the files); the training source dir holds
    both, and train.py refuses to train without serve.py next to it."""
    from sagemaker_steps import serve, train

    for name in ("METADATA_FILE", "XGBOOST_MODEL_FILE", "SKLEARN_MODEL_FILE", "FRAMEWORKS"):
        assert getattr(serve, name) == getattr(train, name), name
    assert evaluate.METADATA_FILE == train.METADATA_FILE and evaluate.XGBOOST_MODEL_FILE == train.XGBOOST_MODEL_FILE
    assert train.SERVING_PROGRAM == spec.SERVING_SCRIPT
    assert [p.name for p in spec.training_source_files("xgboost")] == ["train.py", "serve.py"]
    assert all(p.is_file() for p in spec.training_source_files("sklearn"))
    alone = tmp_path / "sourcedir"
    alone.mkdir()
    shutil.copy(spec.SCRIPTS_DIR / "train.py", alone / "train.py")
    proc = subprocess.run([sys.executable, str(alone / "train.py"), "--train", str(tmp_path), "--validation",
                           str(tmp_path), "--model-dir", str(tmp_path / "model")], capture_output=True, text=True)
    assert proc.returncode == 2 and "Train failed: serve.py is not next to train.py" in proc.stderr


@pytest.mark.parametrize("script", ["preprocess.py", "train.py", "serve.py", "evaluate.py"])
def test_step_scripts_are_standalone_and_python38_syntax(script):
    source = (spec.SCRIPTS_DIR / script).read_text()
    tree = ast.parse(source, feature_version=(3, 8))  # the SageMaker framework containers' Pythons
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.module and not node.module.startswith("sagemaker_steps") and node.level == 0
        if isinstance(node, ast.Import):
            assert not any(a.name.startswith("sagemaker_steps") for a in node.names)
        assert not isinstance(node, ast.NamedExpr)


def test_numpy_auc_handles_ties_and_single_class():
    assert evaluate.auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == pytest.approx(0.5)
    assert evaluate.auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert math.isnan(evaluate.auc([1, 1], [0.2, 0.9]))
