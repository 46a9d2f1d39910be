"""``datasets:`` in the config: the schema document and one-line errors for each bad input (issue 12)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from platform_config.datasets import SCHEMA_VERSION
from platform_config.loader import ConfigError, load_config

ROOT = Path(__file__).resolve().parent.parent

CANCER = {
    "name": "cancer",
    "columns": [
        {"name": "diagnosis", "type": "string", "allowed": ["B", "M"], "upper_case": True},
        {"name": "mean_radius", "type": "double", "min": 0},
        {"name": "patient_id", "type": "integer"},
    ],
}
CANCER_MODEL = {
    "name": "cancer",
    "dataset": "cancer",
    "target_column": "diagnosis",
    "problem_type": "binary_classification",
    "positive_label": "M",
    "exclude_columns": ["patient_id"],
    "metric": "auc",
    "threshold": 0.9,
    "lambda": {"enabled": False},
}


def _write(tmp_path: Path, mutate) -> Path:
    data = yaml.safe_load((ROOT / "config" / "dev.yaml").read_text())
    mutate(data)
    (tmp_path / "dev.yaml").write_text(yaml.safe_dump(data))
    return tmp_path


def _load(tmp_path: Path, mutate):
    return load_config("dev", _write(tmp_path, mutate))


def _error(tmp_path: Path, mutate) -> str:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, mutate)
    lines = str(info.value).splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def _add_cancer(data, **model_changes):
    data["datasets"].append(json.loads(json.dumps(CANCER)))
    model = dict(CANCER_MODEL, **model_changes)
    data["models"].append({k: v for k, v in model.items() if v is not None})


def test_schema_document_of_the_shipped_dataset():
    doc = load_config("dev").datasets[0].schema_document()
    assert doc["schema_version"] == SCHEMA_VERSION
    assert doc["format"] == {"type": "csv", "header": True, "delimiter": ",", "quote": '"', "encoding": "UTF-8"}
    assert [c["name"] for c in doc["columns"]][:5] == ["sex", "length", "diameter", "height", "whole_weight"]
    weight = doc["columns"][4]
    assert weight == {"raw_name": "whole weight", "name": "whole_weight", "type": "double", "nullable": False,
                      "allowed_values": None, "upper_case": False, "min": 0.0, "max": 10.0}
    rings = doc["columns"][-1]
    assert (rings["type"], rings["min"], rings["max"]) == ("integer", 0, 100)
    assert isinstance(rings["max"], int)
    assert json.loads(json.dumps(doc)) == doc


def test_the_dev_config_has_two_datasets_and_each_model_resolves_its_own():
    config = load_config("dev")
    assert [d.name for d in config.datasets] == ["abalone", "breast_cancer"]
    assert [config.dataset_of(m).name for m in config.models] == ["abalone", "breast_cancer"]
    assert [m.name for m in config.models_of(config.dataset("breast_cancer"))] == ["breast-cancer"]
    cancer = config.models[1].spec
    assert (cancer.positive_label, cancer.positive_threshold, cancer.metric) == ("M", None, "auc")


def test_a_third_dataset_and_model_load_and_resolve(tmp_path):
    config = _load(tmp_path, _add_cancer)
    assert config.dataset_of(config.models[-1]).name == "cancer"
    assert config.models[-1].spec.exclude_columns == ("patient_id",)
    assert [m.name for m in config.models_of(config.dataset("cancer"))] == ["cancer"]


def test_several_datasets_need_models_dataset(tmp_path):
    assert _error(tmp_path, lambda d: d["models"][0].pop("dataset")).endswith(
        "dev.yaml: (top level): models 'abalone': set dataset to one of ['abalone', 'breast_cancer'] (there are "
        "several datasets)"
    )


def test_one_dataset_needs_no_models_dataset(tmp_path):
    def mutate(data):
        data["datasets"] = data["datasets"][:1]
        data["models"] = data["models"][:1]
        data["models"][0].pop("dataset")

    assert _load(tmp_path, mutate).dataset_of(load_config("dev").models[0]).name == "abalone"


def test_unknown_dataset(tmp_path):
    msg = _error(tmp_path, lambda d: d["models"][0].update(dataset="fish"))
    assert msg.endswith(
        "dev.yaml: (top level): models 'abalone': dataset: dataset 'fish' is not declared; declare it under datasets: "
        "or use one of ['abalone', 'breast_cancer']"
    )


def test_target_not_in_dataset(tmp_path):
    msg = _error(tmp_path, lambda d: d["models"][0].update(target_column="age"))
    assert "models 'abalone': target_column 'age' is not a column of dataset 'abalone'; use one of ['sex'," in msg


def test_positive_label_outside_allowed_values(tmp_path):
    msg = _error(tmp_path, lambda d: _add_cancer(d, positive_label="X"))
    assert msg.endswith("models 'cancer': positive_label 'X' is not an allowed value of 'diagnosis'; use one of "
                        "['B', 'M']")


def test_string_target_needs_positive_label(tmp_path):
    msg = _error(tmp_path, lambda d: _add_cancer(d, positive_label=None))
    assert msg.endswith("models 'cancer': binary_classification on string target 'diagnosis' needs positive_label "
                        "(one of ['B', 'M'])")


def test_positive_threshold_on_a_string_target(tmp_path):
    msg = _error(tmp_path, lambda d: _add_cancer(d, positive_label=None, positive_threshold=0.5))
    assert msg.endswith("models 'cancer': target 'diagnosis' is a string: use positive_label, not positive_threshold")


def test_regression_on_a_string_target(tmp_path):
    msg = _error(tmp_path, lambda d: d["models"][0].update(target_column="sex"))
    assert msg.endswith("models 'abalone': regression needs a numeric target; 'sex' is a string column")


def test_exclude_columns_must_be_features(tmp_path):
    msg = _error(tmp_path, lambda d: _add_cancer(d, exclude_columns=["diagnosis"]))
    assert "models 'cancer': exclude_columns 'diagnosis' is not a feature of dataset 'cancer'" in msg


def test_duplicate_column(tmp_path):
    def mutate(data):
        data["datasets"][0]["columns"].append({"name": "length", "type": "double"})

    assert _error(tmp_path, mutate).endswith(
        "dev.yaml: datasets[0]: dataset 'abalone': column names must be unique; repeated: ['length']"
    )


def test_duplicate_raw_header_spelled_differently(tmp_path):
    def mutate(data):
        data["datasets"][0]["columns"].append({"name": "whole_weight_2", "raw": "Whole_Weight", "type": "double"})

    assert _error(tmp_path, mutate).endswith(
        "dev.yaml: datasets[0]: dataset 'abalone': column raw headers must be unique; repeated: ['whole_weight']"
    )


def test_unsupported_type(tmp_path):
    msg = _error(tmp_path, lambda d: d["datasets"][0]["columns"][1].update(type="date"))
    assert msg.endswith(
        "dev.yaml: datasets[0].columns[1].type = 'date': Input should be 'string', 'double' or 'integer'"
    )


def test_range_on_a_string_column(tmp_path):
    msg = _error(tmp_path, lambda d: d["datasets"][0]["columns"][0].update(min=1))
    assert msg.endswith("datasets[0].columns[0]: column 'sex': min and max apply to double and integer columns only; "
                        "remove them")


def test_min_above_max(tmp_path):
    msg = _error(tmp_path, lambda d: d["datasets"][0]["columns"][1].update(min=9))
    assert msg.endswith("datasets[0].columns[1]: column 'length': min 9 is greater than max 5; swap them")


def test_reserved_column_name(tmp_path):
    msg = _error(tmp_path, lambda d: d["datasets"][0]["columns"][1].update(name="ingest_date"))
    assert msg.endswith("datasets[0].columns[1]: column 'ingest_date': the name is reserved by the ETL; rename it")


def test_bad_dataset_schedule(tmp_path):
    msg = _error(tmp_path, lambda d: d["datasets"][0]["triggers"].update(schedule="daily"))
    assert msg.endswith("datasets[0].triggers: schedule 'daily' must be an EventBridge expression such as "
                        "'cron(0 3 * * ? *)' or 'rate(1 day)'")


def test_duplicate_dataset(tmp_path):
    msg = _error(tmp_path, lambda d: d["datasets"].append(d["datasets"][0]))
    assert msg.endswith("dev.yaml: (top level): datasets names must be unique; repeated: ['abalone']")


def test_delimiter_must_be_one_character(tmp_path):
    msg = _error(tmp_path, lambda d: d["datasets"][0].update(format={"delimiter": ";;"}))
    assert msg.endswith("dev.yaml: datasets[0].format.delimiter = ';;': String should have at most 1 character")
