"""`make demo` (demo/): the whole loop on a sample, against its embedded moto server, asserted on real outcomes.

One successful run (600 rows) serves most tests; the failure path (an impossible threshold) runs once more on fewer
rows. Both share one local SparkSession, started and stopped by the demo's own helper.
"""

from __future__ import annotations

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
from platform_config import load_config  # noqa: E402

SAMPLE = 600
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def spark():
    with local_spark("test_demo") as session:
        yield session


@pytest.fixture(scope="module")
def env_before():
    return {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_ENDPOINT_URL", "AWS_PROFILE",
                                           "MODEL_LOCAL_PATH", "INFERENCE_MODE")}


@pytest.fixture(scope="module")
def demo(spark, env_before, tmp_path_factory):
    out = io.StringIO()
    result = run_demo("dev", sample=SAMPLE, report_dir=tmp_path_factory.mktemp("report"), spark=spark, out=out)
    result.console = out.getvalue()
    return result


@pytest.fixture(scope="module")
def config():
    return load_config("dev")


def test_progress_output_names_every_stage_with_seconds(demo):
    for number in range(1, 8):
        assert f"[{number}/7] " in demo.console
    assert len(demo.stage_seconds) == 7 and all(s >= 0 for s in demo.stage_seconds.values())
    assert demo.exit_code == 0


def test_resources_named_as_the_config_names_them(demo, config):
    model = config.models[0]
    assert demo.buckets == {z: f"{config.project}-{config.environment}-{z}-demo" for z in ("raw", "curated",
                                                                                           "artifacts")}
    assert demo.model_package_group == f"{config.prefix()}-{model.name}" == "mlops-dev-abalone"
    assert demo.raw_uri == f"s3://mlops-dev-raw-demo/{config.dataset_of(model).name}/abalone.csv"
    assert demo.endpoint_url.startswith("http://127.0.0.1:")


def test_etl_counts(demo):
    assert demo.rows_in == SAMPLE
    assert demo.rows_in == demo.rows_curated + demo.rows_rejected
    assert demo.rows_curated == SAMPLE and demo.rows_rejected == 0  # the shipped data is clean
    assert demo.curated_objects >= 1


def test_metric_meets_the_config_threshold(demo, config):
    model = config.models[0]
    assert demo.metric == model.metric == "rmse"
    assert demo.threshold == model.threshold
    assert demo.passed is True and demo.fail_message is None
    assert 0 < demo.metric_value <= demo.threshold
    assert demo.evaluation["regression_metrics"]["rmse"]["value"] == pytest.approx(demo.metric_value)
    assert set(demo.step_seconds) == {"Preprocess", "Train", "Evaluate"}


def test_package_registered_approved_with_metadata(demo):
    assert demo.packages_registered == 1
    assert demo.package_arn.endswith(":model-package/mlops-dev-abalone/1")
    assert demo.package_status == "Approved"
    assert demo.package_version == 1
    assert demo.package_group_of_arn == "mlops-dev-abalone"
    assert demo.package_metadata.get("GitCommit") and demo.package_metadata["GitCommit"] == demo.git_commit
    assert demo.model_data_url.startswith("s3://mlops-dev-artifacts-demo/abalone/")
    assert demo.model_data_url.endswith("/model.tar.gz")
    assert demo.evaluation_uri.endswith("/evaluation.json")


def test_resolver_returns_the_registered_package(demo):
    assert demo.resolve_exit_code == 0
    assert demo.resolved["model_package_arn"] == demo.package_arn
    assert demo.resolved["model_data_url"] == demo.model_data_url
    assert demo.resolved["git_commit"] == demo.git_commit
    assert "sagemaker-xgboost" in demo.resolved["image"]


def test_http_requests(demo):
    one, batch = demo.request("one row"), demo.request("batch of 5")
    assert one.status == 200 and one.count == 1 and len(one.predictions) == 1
    assert batch.status == 200 and batch.count == 5 and len(batch.predictions) == 5
    assert all(isinstance(p, float) and 1 <= p <= 30 for p in batch.predictions)  # rings
    assert one.predictions[0] == pytest.approx(batch.predictions[0])
    assert demo.batch_matches_evaluation is True  # the Lambda predicts what the evaluate step predicted
    bad = {r.name: r for r in demo.requests if r.expected == "4xx"}
    assert set(bad) == {"malformed JSON", "missing feature", "wrong type", "empty batch"}
    for r in bad.values():
        assert 400 <= r.status < 500 and r.error, r
    assert bad["empty batch"].error == "empty_batch"
    assert all(r.ok for r in demo.requests)


def test_report_files(demo):
    files = demo.report_files
    assert {"metrics", "plot", "summary"} <= set(files)
    assert all(Path(p).is_file() for p in files.values())
    assert Path(files["plot"]).read_bytes()[:8] == PNG_MAGIC
    metrics = json.loads(Path(files["metrics"]).read_text())
    assert metrics["metric"] == {"name": "rmse", "value": demo.metric_value, "threshold": demo.threshold,
                                 "higher_is_better": False, "passed": True}
    assert metrics["package"]["arn"] == demo.package_arn and metrics["package"]["status"] == "Approved"
    assert metrics["rows"] == {"in": SAMPLE, "curated": SAMPLE, "rejected": 0}
    assert len(metrics["requests"]) == 6 and len(metrics["stage_seconds"]) == 7
    summary = Path(files["summary"]).read_text()
    assert "(plot.png)" in summary and "(metrics.json)" in summary
    assert demo.package_arn in summary


def test_everything_started_is_stopped_and_the_environment_restored(demo, env_before):
    assert not [t for t in threading.enumerate() if t.name == "demo-function-url"]
    for url in (demo.serving_url, demo.endpoint_url):
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(url, timeout=2)
    assert {k: os.environ.get(k) for k in env_before} == env_before


def test_impossible_threshold_stops_at_the_fail_step_and_registers_nothing(demo, spark, tmp_path):
    with pytest.raises(DemoFailed) as info:
        run_demo("dev", sample=300, report_dir=tmp_path / "report", threshold=0.01, spark=spark, out=io.StringIO())
    result = info.value.result
    assert "does not meet the threshold 0.01" in str(info.value)
    assert str(info.value) == result.fail_message
    assert result.passed is False and result.metric_value > 0.01
    assert result.packages_registered == 0 and result.package_arn is None
    assert result.resolved == {} and result.requests == []
    assert result.exit_code == 1
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert metrics["metric"]["passed"] is False and metrics["fail_message"] == result.fail_message


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
