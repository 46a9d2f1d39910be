"""`make demo` (demo/): the whole loop for every model of the dev config, each on its own dataset, on a sample,
against its embedded moto server, asserted on real outcomes.

One successful run (600 rows of each dataset: abalone's first 600, all 569 of breast_cancer) serves most tests; the
failure path (an impossible threshold for one model) runs once more on fewer rows. Both share one local
SparkSession, started and stopped by the demo's own helper.
"""

from __future__ import annotations

import csv
import io
import json
import os
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("pyspark")
pytest.importorskip("moto.server")

from demo.__main__ import main as demo_main  # noqa: E402
from demo.aws import check_client, check_endpoint  # noqa: E402
from demo.loop import DemoFailed, UnsafeEnvironmentError, run_demo  # noqa: E402
from demo.spark import local_spark  # noqa: E402
from demo.stages import sample_csv  # noqa: E402
from platform_config import load_config  # noqa: E402

SAMPLE = 600
BREAST_CANCER_ROWS = 569  # data/breast_cancer.csv: fewer than SAMPLE, so all of them
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MODELS = ("abalone", "breast-cancer")


@pytest.fixture(scope="module")
def spark():
    with local_spark("test_demo") as session:
        yield session


@pytest.fixture(scope="module")
def env_before():
    return {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_ENDPOINT_URL", "AWS_PROFILE",
                                           "MODEL_LOCAL_PATH", "INFERENCE_MODE", "SM_MODEL_DIR")}


@pytest.fixture(scope="module")
def demo(spark, env_before, tmp_path_factory):
    out = io.StringIO()
    result = run_demo("dev", sample=SAMPLE, report_dir=tmp_path_factory.mktemp("report"), spark=spark, out=out)
    result.console = out.getvalue()
    return result


@pytest.fixture(scope="module")
def config():
    return load_config("dev")


def test_every_model_of_the_config_runs_in_config_order(demo, config):
    assert tuple(m.name for m in config.models) == MODELS
    assert [(r.model, r.dataset) for r in demo.models] == [("abalone", "abalone"), ("breast-cancer", "breast_cancer")]
    assert demo.passed is True and demo.exit_code == 0


# The demo's deliberately worse challenger per model (demo/challenger.py), rejected by the champion comparison.
CHALLENGER = {"abalone": "max_depth=1", "breast-cancer": "max_depth=1, num_round=1"}


def test_progress_output_names_every_stage_with_seconds(demo):
    lines = demo.console.splitlines()
    headings = [line for line in lines if line.startswith("[")]
    assert headings == (["[1/7] Stand-in AWS (moto)"]
                        + [h for model in MODELS for h in (
                            f"[2/7] Raw upload [{model}]", f"[3/7] Glue ETL (local PySpark) [{model}]",
                            f"[4/7] Model build (SageMaker pipeline steps) [{model}]",
                            f"[5/7] Approve and resolve [{model}]",
                            f"[5b. Challenger vs champion] [{model}] a worse challenger ({CHALLENGER[model]}) against "
                            "the approved champion, same data and split",
                            f"[6/7] Serve (the inference Lambda over HTTP; the endpoint's handlers where enabled) "
                            f"[{model}]")]
                        + ["[7/7] Report"])
    assert [line for line in lines if line.startswith("== model ")] == [
        "== model abalone: dataset abalone, regression on rings, rmse <= 3, served from endpoint and Lambda",
        "== model breast-cancer: dataset breast_cancer, binary_classification on diagnosis, auc >= 0.9, served from "
        "Lambda"]
    # one timing line per stage: the shared two, five per model and the challenger stage (5b) per model
    assert sum(1 for line in lines if line.startswith("      (") and line.endswith(" s)")) == 1 + 6 * 2 + 1
    assert list(demo.stage_seconds) == ["1. Stand-in AWS (moto)", "7. Report"]
    for result in demo.models:
        assert [k.split(".")[0] for k in result.stage_seconds] == ["2", "3", "4", "5", "6"]
        assert all(s >= 0 for s in result.stage_seconds.values())


def test_resources_named_as_the_config_names_them(demo, config):
    assert demo.buckets == {z: f"{config.project}-{config.environment}-{z}-demo" for z in ("raw", "curated",
                                                                                           "artifacts")}
    assert demo.endpoint_url.startswith("http://127.0.0.1:")
    for model, result in zip(config.models, demo.models):
        dataset = config.dataset_of(model).name
        assert result.model_package_group == f"{config.prefix()}-{model.name}"
        assert result.raw_uri == f"s3://mlops-dev-raw-demo/{dataset}/{dataset}.csv"
        assert result.endpoint_url == demo.endpoint_url and result.buckets == demo.buckets
    assert [r.model_package_group for r in demo.models] == ["mlops-dev-abalone", "mlops-dev-breast-cancer"]


def test_etl_counts(demo):
    expected = {"abalone": SAMPLE, "breast-cancer": BREAST_CANCER_ROWS}
    for result in demo.models:
        assert result.rows_in == expected[result.model]
        assert result.rows_in == result.rows_curated + result.rows_rejected
        assert result.rows_curated == result.rows_in and result.rows_rejected == 0  # the shipped data is clean
        assert result.curated_objects >= 1


def test_metric_meets_the_config_threshold(demo, config):
    for model, result in zip(config.models, demo.models):
        assert (result.metric, result.threshold, result.problem_type) == (model.metric, model.threshold,
                                                                          model.problem_type)
        assert result.passed is True and result.fail_message is None
        assert result.evaluation[f"{model.problem_type}_metrics"][model.metric]["value"] == pytest.approx(
            result.metric_value)
        assert set(result.step_seconds) == {"Preprocess", "Train", "ResolveChampion", "Evaluate"}
    abalone, breast_cancer = demo.models
    assert abalone.metric == "rmse" and not abalone.higher_is_better and 0 < abalone.metric_value <= 3.0
    assert breast_cancer.metric == "auc" and breast_cancer.higher_is_better and 0.9 <= breast_cancer.metric_value <= 1


def test_packages_registered_approved_with_metadata(demo):
    for result in demo.models:
        group = f"mlops-dev-{result.model}"
        assert result.packages_registered == 1
        assert result.package_arn.endswith(f":model-package/{group}/1")
        assert result.package_status == "Approved" and result.package_version == 1
        assert result.package_group_of_arn == group
        assert result.package_metadata.get("GitCommit") and result.package_metadata["GitCommit"] == result.git_commit
        assert result.model_data_url.startswith(f"s3://mlops-dev-artifacts-demo/{result.model}/")
        assert result.model_data_url.endswith("/model.tar.gz")
        assert result.evaluation_uri.endswith("/evaluation.json")


def test_resolver_returns_the_registered_package(demo):
    for result in demo.models:
        assert result.resolve_exit_code == 0
        assert result.resolved["model_package_arn"] == result.package_arn
        assert result.resolved["model_data_url"] == result.model_data_url
        assert result.resolved["git_commit"] == result.git_commit
        assert "sagemaker-xgboost" in result.resolved["image"]


def _check_http_requests(result):
    one, batch = result.request("one row"), result.request("batch of 5")
    assert one.status == 200 and one.count == 1 and len(one.predictions) == 1
    assert batch.status == 200 and batch.count == 5 and len(batch.predictions) == 5
    assert one.predictions[0] == pytest.approx(batch.predictions[0])
    assert result.batch_matches_evaluation is True  # the Lambda predicts what the evaluate step predicted
    bad = {r.name: r for r in result.requests if r.expected == "4xx"}
    assert set(bad) == {"malformed JSON", "missing feature", "wrong type", "empty batch"}
    for r in bad.values():
        assert 400 <= r.status < 500 and r.error, r
    assert bad["empty batch"].error == "empty_batch"
    assert all(r.ok for r in result.requests)
    return batch.predictions


def test_abalone_served_from_lambda_and_the_endpoint_handlers(demo):
    result = demo.model("abalone")
    predictions = _check_http_requests(result)
    assert all(isinstance(p, float) and 1 <= p <= 30 for p in predictions)  # rings
    assert result.serving == {"endpoint": True, "lambda": "model", "demo": ["lambda", "endpoint handlers"]}
    assert result.endpoint_predictions == pytest.approx(predictions)  # the package's serve.py agrees
    assert result.endpoint_matches_evaluation is True


def test_breast_cancer_served_from_lambda_only(demo):
    result = demo.model("breast-cancer")
    predictions = _check_http_requests(result)
    assert all(set(p) == {"probability", "label"} and 0 <= p["probability"] <= 1 and p["label"] in (0, 1)
               for p in predictions)
    assert result.serving == {"endpoint": False, "lambda": "model", "demo": ["lambda"]}
    assert result.endpoint_predictions is None and result.endpoint_matches_evaluation is None
    assert "endpoint.enabled: false: no endpoint for this model" in demo.console


def test_report_files(demo):
    report_dir = Path(demo.report_dir)
    assert {p.name for p in report_dir.iterdir()} == {
        "metrics.json", "summary.md", "plot-abalone.png", "plot-breast-cancer.png", "lambda-logs-abalone.jsonl",
        "lambda-logs-breast-cancer.jsonl"}
    for name in ("plot-abalone.png", "plot-breast-cancer.png"):
        assert (report_dir / name).read_bytes()[:8] == PNG_MAGIC
    metrics = json.loads((report_dir / "metrics.json").read_text())
    assert metrics["passed"] is True and len(metrics["stage_seconds"]) == 2
    assert [m["model"] for m in metrics["models"]] == list(MODELS)
    assert [m["dataset"] for m in metrics["models"]] == ["abalone", "breast_cancer"]
    for entry, result in zip(metrics["models"], demo.models):
        assert entry["metric"] == {"name": result.metric, "value": result.metric_value,
                                   "threshold": result.threshold, "higher_is_better": result.higher_is_better,
                                   "passed": True}
        assert entry["package"]["arn"] == result.package_arn and entry["package"]["status"] == "Approved"
        assert entry["rows"] == {"in": result.rows_in, "curated": result.rows_in, "rejected": 0}
        assert len(entry["requests"]) == 6 and len(entry["stage_seconds"]) == 5
    summary = (report_dir / "summary.md").read_text()
    abalone, breast_cancer = demo.models
    assert (f"| `abalone` | `abalone` | regression | rmse = {abalone.metric_value:.4f} | <= 3 | **passed** | "
            "endpoint and Lambda (model) |") in summary
    assert (f"| `breast-cancer` | `breast_cancer` | binary_classification | auc = {breast_cancer.metric_value:.4f} "
            "| >= 0.9 | **passed** | Lambda (model) |") in summary
    assert "No endpoint: `endpoint.enabled: false` in the config." in summary
    assert "(plot-abalone.png)" in summary and "(plot-breast-cancer.png)" in summary and "(metrics.json)" in summary
    assert abalone.package_arn in summary and breast_cancer.package_arn in summary


def test_everything_started_is_stopped_and_the_environment_restored(demo, env_before):
    assert not [t for t in threading.enumerate() if t.name == "demo-function-url"]
    for url in [r.serving_url for r in demo.models] + [demo.endpoint_url]:
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(url, timeout=2)
    assert {k: os.environ.get(k) for k in env_before} == env_before


def test_impossible_threshold_stops_at_the_fail_step_and_registers_nothing(demo, spark, tmp_path):
    with pytest.raises(DemoFailed) as info:
        run_demo("dev", sample=300, report_dir=tmp_path / "report", threshold=0.01, model_name="abalone",
                 spark=spark, out=io.StringIO())
    run = info.value.result
    assert [r.model for r in run.models] == ["abalone"]
    result = run.models[0]
    assert "does not meet the threshold 0.01" in str(info.value)
    assert str(info.value) == result.fail_message
    assert result.passed is False and result.metric_value > 0.01
    assert result.packages_registered == 0 and result.package_arn is None
    assert result.resolved == {} and result.requests == [] and result.serving == {}
    assert run.exit_code == 1 and run.passed is False
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert metrics["passed"] is False and [m["model"] for m in metrics["models"]] == ["abalone"]
    assert metrics["models"][0]["metric"]["passed"] is False
    assert metrics["models"][0]["fail_message"] == result.fail_message


def test_a_threshold_override_needs_one_model(tmp_path):
    with pytest.raises(ValueError, match=r"a threshold override is for one model: choose it with --model \(one of "
                                         r"\['abalone', 'breast-cancer'\]\)"):
        run_demo("dev", threshold=0.5, report_dir=tmp_path, out=io.StringIO())
    assert not (tmp_path / "metrics.json").exists()


def test_an_unknown_model_is_refused(capsys, tmp_path):
    assert demo_main(["--model", "nope", "--report-dir", str(tmp_path)]) == 2
    assert "model 'nope' is not in config/dev.yaml; choose one of ['abalone', 'breast-cancer']" in (
        capsys.readouterr().err)


def _write_csv(path, rows):
    path.write_text("id,diagnosis\n" + "".join(f"{i},{label}\n" for i, label in rows), encoding="utf-8")


def test_a_sample_keeps_both_classes_of_a_binary_target(tmp_path):
    source = tmp_path / "raw.csv"
    _write_csv(source, [(i, "B") for i in range(8)] + [(i, "M") for i in range(8, 12)])
    label_of = lambda line: next(csv.reader([line]))[1] == "M"  # noqa: E731
    target = tmp_path / "sample.csv"
    assert sample_csv(source, target, 6, label_of) == 6
    lines = target.read_text().splitlines()
    assert lines == ["id,diagnosis", "0,B", "1,B", "2,B", "3,B", "8,M", "9,M"]  # 2:1 as in the file, file order
    assert sample_csv(source, target, 2, label_of) == 2
    assert target.read_text().splitlines() == ["id,diagnosis", "0,B", "8,M"]
    assert sample_csv(source, target, 6) == 6  # no target: the first rows
    assert target.read_text().splitlines()[1:] == [f"{i},B" for i in range(6)]
    assert sample_csv(source, target, 50, label_of) == 12  # more than the file: all of it


@pytest.mark.parametrize("url", ["http://10.1.2.3:5000", "https://sagemaker.us-east-1.amazonaws.com",
                                 "http://0.0.0.0:5000", "ftp://127.0.0.1/"])
def test_non_loopback_endpoint_is_refused(url, tmp_path):
    with pytest.raises(UnsafeEnvironmentError):
        run_demo("dev", sample=10, report_dir=tmp_path, endpoint_url=url, out=io.StringIO())
    assert not (tmp_path / "metrics.json").exists()


def test_loopback_endpoints_are_accepted():
    for url in ("http://127.0.0.1:5000", "http://localhost:5000", "http://[::1]:5000", "http://127.0.0.2"):
        assert check_endpoint(url) == url


def test_cli_refuses_a_remote_endpoint(capsys, tmp_path):
    code = demo_main(["--endpoint-url", "https://s3.amazonaws.com", "--report-dir", str(tmp_path)])
    assert code == 2
    assert "REFUSED" in capsys.readouterr().err


def test_a_client_with_real_credentials_is_refused():
    import boto3

    client = boto3.session.Session(aws_access_key_id="AKIAREALKEY", aws_secret_access_key="secret",
                                   region_name="us-east-1").client("s3", endpoint_url="http://127.0.0.1:9")
    with pytest.raises(UnsafeEnvironmentError, match="real AWS credentials"):
        check_client(client)
