"""serve.py's serving functions, as the SageMaker XGBoost / scikit-learn serving containers call them."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from sagemaker_steps.local_runner import LocalRunResult, run_local_pipeline, snake_case  # noqa: E402
from sagemaker_steps.model_spec import ModelSpec  # noqa: E402

ABALONE = REPO / "data" / "abalone.csv"
SERVE_PY = REPO / "sagemaker_steps" / "serve.py"
INSTANCES = [
    {"sex": "M", "length": 0.455, "diameter": 0.365, "height": 0.095, "whole_weight": 0.514,
     "shucked_weight": 0.2245, "viscera_weight": 0.101, "shell_weight": 0.15},
    {"sex": "I", "length": 0.33, "diameter": 0.255, "height": 0.08, "whole_weight": 0.205,
     "shucked_weight": 0.0895, "viscera_weight": 0.0395, "shell_weight": 0.055},
    {"sex": "F", "length": 0.53, "diameter": 0.42, "height": 0.135, "whole_weight": 0.677,
     "shucked_weight": 0.2565, "viscera_weight": 0.1415, "shell_weight": 0.21},
]


@pytest.fixture(scope="module")
def serving():
    """serve.py imported by path, as the container imports SAGEMAKER_PROGRAM (a fresh module)."""
    spec = importlib.util.spec_from_file_location("serving_module", SERVE_PY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def subsample(tmp_path_factory) -> Path:
    raw = pd.read_csv(ABALONE).sample(n=800, random_state=11)
    raw.columns = [snake_case(c) for c in raw.columns]
    path = tmp_path_factory.mktemp("serving-data") / "abalone_subsample.csv"
    raw.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def xgb_run(subsample, tmp_path_factory) -> LocalRunResult:
    model = ModelSpec(name="model", target="rings", problem_type="regression", framework="xgboost", metric="rmse",
                      threshold=10.0, hyperparameters={"max_depth": 3, "eta": 0.3, "num_round": 20})
    return run_local_pipeline(subsample, tmp_path_factory.mktemp("serving-xgb"), model)


@pytest.fixture(scope="module")
def sklearn_binary_run(subsample, tmp_path_factory) -> LocalRunResult:
    model = ModelSpec(name="model", target="rings", problem_type="binary_classification", framework="sklearn",
                      metric="auc", threshold=0.5, positive_threshold=10,
                      hyperparameters={"max_depth": 2, "eta": 0.2, "num_round": 20})
    return run_local_pipeline(subsample, tmp_path_factory.mktemp("serving-sklearn"), model)


@pytest.fixture(scope="module")
def xgb_model(serving, xgb_run):
    return serving.model_fn(str(xgb_run.model_dir))


def _metadata(run: LocalRunResult) -> dict:
    return json.loads((run.model_dir / "model_metadata.json").read_text())


def _encode_by_hand(metadata: dict, instances: list[dict]) -> np.ndarray:
    columns = metadata["encoded_columns"]
    rows = []
    for instance in instances:
        row = []
        for column in columns:
            if column in instance:
                row.append(float(instance[column]))
            else:
                name, _, category = column.rpartition("_")
                row.append(1.0 if instance[name] == category else 0.0)
        rows.append(row)
    return np.array(rows)


def _booster_predict(run: LocalRunResult, rows: np.ndarray) -> np.ndarray:
    import xgboost as xgb

    booster = xgb.Booster()
    booster.load_model(str(run.model_dir / "xgboost-model.json"))
    return booster.predict(xgb.DMatrix(rows))


def test_import_has_no_side_effects(serving, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = importlib.util.spec_from_file_location("serving_module_again", SERVE_PY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert list(tmp_path.iterdir()) == []
    for name in ("model_fn", "input_fn", "predict_fn", "output_fn"):
        assert callable(getattr(module, name))


def test_model_fn_loads_booster_and_metadata(serving, xgb_model, xgb_run):
    import xgboost as xgb

    assert isinstance(xgb_model.model, xgb.Booster)
    assert xgb_model.metadata == _metadata(xgb_run)
    assert xgb_model.encoded_columns[:3] == ["sex_F", "sex_I", "sex_M"]


def test_csv_round_trip_equals_booster_predict(serving, xgb_model, xgb_run):
    rows = _encode_by_hand(_metadata(xgb_run), INSTANCES)
    body = "\n".join(",".join(repr(float(v)) for v in row) for row in rows).encode("utf-8")  # like the Lambda proxy
    data = serving.input_fn(body, "text/csv")
    np.testing.assert_array_equal(data, rows)
    prediction = serving.predict_fn(data, xgb_model)
    expected = _booster_predict(xgb_run, rows)
    np.testing.assert_array_equal(prediction.astype(np.float32), expected)
    text, content_type = serving.output_fn(prediction, "text/csv")
    assert content_type == "text/csv"
    lines = text.splitlines()
    assert len(lines) == len(INSTANCES)
    np.testing.assert_array_equal(np.array([float(x) for x in lines], dtype=np.float32), expected)


def test_json_round_trip_encodes_raw_instances(serving, xgb_model, xgb_run):
    body = json.dumps({"instances": INSTANCES})
    data = serving.input_fn(body, "application/json; charset=utf-8")
    np.testing.assert_array_equal(data, _encode_by_hand(_metadata(xgb_run), INSTANCES))
    prediction = serving.predict_fn(data, xgb_model)
    text, content_type = serving.output_fn(prediction, "application/json")
    assert content_type == "application/json"
    predictions = json.loads(text)["predictions"]
    expected = _booster_predict(xgb_run, data)
    np.testing.assert_array_equal(np.array(predictions, dtype=np.float32), expected)
    assert all(3 < p < 20 for p in predictions)  # rings


def test_csv_and_json_give_the_same_predictions(serving, xgb_model, xgb_run):
    rows = _encode_by_hand(_metadata(xgb_run), INSTANCES)
    csv_body = "\n".join(",".join(repr(float(v)) for v in row) for row in rows)
    from_csv = serving.predict_fn(serving.input_fn(csv_body, "text/csv"), xgb_model)
    from_json = serving.predict_fn(serving.input_fn(json.dumps({"instances": INSTANCES}), "application/json"),
                                   xgb_model)
    np.testing.assert_array_equal(from_csv, from_json)


def test_csv_on_validation_rows_equals_booster(serving, xgb_model, xgb_run):
    validation = pd.read_csv(xgb_run.outputs["validation"] / "validation.csv")
    rows = validation.iloc[:, 1:].to_numpy(dtype=np.float64)
    body = validation.iloc[:, 1:].to_csv(header=False, index=False)
    prediction = serving.predict_fn(serving.input_fn(body, "text/csv"), xgb_model)
    np.testing.assert_allclose(prediction, _booster_predict(xgb_run, rows), rtol=1e-6)


def test_empty_csv_cell_is_a_missing_value(serving, xgb_model):
    width = len(xgb_model.encoded_columns)
    data = serving.input_fn("1,0,0" + "," * (width - 3), "text/csv")
    assert np.isnan(data[0, 3:]).all()
    assert np.isfinite(serving.predict_fn(data, xgb_model)).all()


def test_accept_defaults_and_lists(serving):
    assert serving.output_fn(np.array([1.5, 2.0]), "*/*") == ("1.5\n2.0\n", "text/csv")
    assert serving.output_fn(np.array([1.5]), None) == ("1.5\n", "text/csv")
    assert serving.output_fn(np.array([1.5]), "application/xml, application/json") == (
        '{"predictions": [1.5]}', "application/json")
    with pytest.raises(ValueError, match=r"unsupported accept type 'application/xml'; accept text/csv or "
                                         r"application/json"):
        serving.output_fn(np.array([1.5]), "application/xml")


def test_sklearn_binary_model_returns_probabilities(serving, sklearn_binary_run):
    model = serving.model_fn(str(sklearn_binary_run.model_dir))
    assert model.framework == "sklearn"
    data = serving.input_fn(json.dumps({"instances": INSTANCES}), "application/json")
    prediction = serving.predict_fn(data, model)
    expected = model.model.predict_proba(_encode_by_hand(_metadata(sklearn_binary_run), INSTANCES))[:, 1]
    np.testing.assert_array_equal(prediction, expected)
    assert ((prediction >= 0) & (prediction <= 1)).all()
    text, _ = serving.output_fn(prediction, "text/csv")
    assert [float(x) for x in text.split()] == pytest.approx(list(expected), rel=0, abs=0)


# ---------------------------------------------------------------------------------------------------------------
# Errors: ValueError with a message a caller can act on
# ---------------------------------------------------------------------------------------------------------------
def _instance(**changes):
    instance = dict(INSTANCES[0])
    for key, value in changes.items():
        if value is None:
            instance.pop(key)
        else:
            instance[key] = value
    return instance


@pytest.mark.parametrize(
    "instance, message",
    [
        (_instance(sex="X"), "instances[0].sex has unknown category 'X'; allowed: ['F', 'I', 'M']"),
        (_instance(length=None), "instances[0] is missing feature(s) ['length']"),
        (_instance(colour="red"), "instances[0] has unknown feature(s) ['colour']; the model's features are "),
        (_instance(height="tall"), "instances[0].height must be a number, got 'tall'"),
        (_instance(height=True), "instances[0].height must be a number, got True"),
    ],
)
def test_json_instance_errors(serving, xgb_model, instance, message):
    with pytest.raises(ValueError) as exc:
        serving._input_rows(json.dumps({"instances": [instance]}), "application/json", xgb_model.metadata)
    assert str(exc.value).startswith(message)


@pytest.mark.parametrize(
    "body, content_type, message",
    [
        ('{"instances": []}', "application/json", "the application/json request must be {\"instances\""),
        ('[{"sex": "M"}]', "application/json", "the application/json request must be {\"instances\""),
        ("{not json", "application/json", "the application/json request is not valid JSON"),
        ("", "text/csv", "the text/csv request holds no rows"),
        ("1,0,0,0.5", "text/csv", "text/csv row 1 has 4 values; expected 10 in encoded_columns order"),
        ("sex_F,sex_I,sex_M,length,diameter,height,whole_weight,shucked_weight,viscera_weight,shell_weight",
         "text/csv", "text/csv row 1 column 1 (sex_F) is not a number: 'sex_F' (send encoded features, no header)"),
        ("1,0,0,inf,0,0,0,0,0,0", "text/csv", "text/csv row 1 column 4 (length) must be finite"),
        ("a=1", "application/x-www-form-urlencoded", "unsupported content type 'application/x-www-form-urlencoded'"),
        (b"\xff\xfe", "text/csv", "the request body is not UTF-8 text"),
    ],
)
def test_request_errors(serving, xgb_model, body, content_type, message):
    with pytest.raises(ValueError) as exc:
        serving._input_rows(body, content_type, xgb_model.metadata)
    assert str(exc.value).startswith(message)


def test_model_fn_errors(serving, tmp_path, xgb_run):
    with pytest.raises(ValueError, match="model_metadata.json not found in model dir"):
        serving.model_fn(str(tmp_path))
    (tmp_path / "model_metadata.json").write_text((xgb_run.model_dir / "model_metadata.json").read_text())
    with pytest.raises(ValueError, match="xgboost-model.json not found in model dir"):
        serving.model_fn(str(tmp_path))


# ---------------------------------------------------------------------------------------------------------------
# The registered package as the framework container's inference toolkit serves it (network isolation: nothing but
# model.tar.gz and the package's container environment)
# ---------------------------------------------------------------------------------------------------------------
def test_model_tarball_serves_itself_with_the_registered_environment(xgb_run, tmp_path):
    import tarfile

    from sagemaker_steps import pipeline_spec

    environment = pipeline_spec.serving_environment("xgboost")
    assert environment == {"SAGEMAKER_PROGRAM": "serve.py", "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code"}
    # SageMaker extracts ModelDataUrl into /opt/ml/model; SAGEMAKER_SUBMIT_DIRECTORY is a directory inside it.
    model_dir = tmp_path / "opt" / "ml" / "model"
    model_dir.mkdir(parents=True)
    with tarfile.open(xgb_run.model_artifact) as archive:
        archive.extractall(model_dir, filter="data")
    submit_dir = model_dir / Path(environment["SAGEMAKER_SUBMIT_DIRECTORY"]).relative_to("/opt/ml/model")
    program = submit_dir / environment["SAGEMAKER_PROGRAM"]
    assert program.is_file()
    module_spec = importlib.util.spec_from_file_location(program.stem + "_from_tarball", program)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    model = module.model_fn(str(model_dir))
    rows = _encode_by_hand(_metadata(xgb_run), INSTANCES)
    body = "\n".join(",".join(repr(float(v)) for v in row) for row in rows)
    text, content_type = module.output_fn(module.predict_fn(module.input_fn(body, "text/csv"), model), "text/csv")
    assert content_type == "text/csv"
    np.testing.assert_array_equal(np.array([float(x) for x in text.split()], dtype=np.float32),
                                  _booster_predict(xgb_run, rows))


def test_handlers_have_the_standard_signatures(serving):
    """sagemaker-inference 1.10+ hands a request context to a handler with one parameter more than the standard one:
    each handler must declare exactly the standard parameters."""
    import inspect

    expected = {"model_fn": 1, "input_fn": 2, "predict_fn": 2, "output_fn": 2}
    for name, count in expected.items():
        assert len(inspect.signature(getattr(serving, name)).parameters) == count, name
