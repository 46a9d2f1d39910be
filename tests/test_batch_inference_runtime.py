"""Batch inference's runtime, run for real: the plan function (lambda_src/batch_resolve) against moto, and the prepare
and collect steps (sagemaker_steps/batch_scoring.py) on a curated abalone partition with a model trained by the
project's own pipeline, the transform in between played as SageMaker plays it (InputFilter $[1:], the package's
serve.py on MultiRecord mini-batches of text/csv, JoinSource Input, OutputFilter $[0,-1], AssembleWith Line)."""

from __future__ import annotations

import importlib.util
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import boto3
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from moto import mock_aws

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "lambda_src" / "batch_resolve"))

import batch_resolve  # noqa: E402
from platform_config.names import Names  # noqa: E402
from sagemaker_steps import batch_scoring  # noqa: E402
from sagemaker_steps.local_runner import LocalRunResult, run_local_pipeline, snake_case  # noqa: E402
from sagemaker_steps.model_spec import ModelSpec  # noqa: E402

REGION = "us-east-1"
GROUP = "mlops-dev-abalone"
CURATED, ARTIFACTS = "mlops-dev-curated", "mlops-dev-artifacts"
ABALONE = ROOT / "data" / "abalone.csv"
SERVE_PY = ROOT / "sagemaker_steps" / "serve.py"
PARTITION = "2024-05-01"
ENV = {
    "MODEL_PACKAGE_GROUP": GROUP,
    "CURATED_BUCKET": CURATED,
    "CURATED_PREFIX": "abalone/",
    "MODEL_DATA_PREFIX": f"s3://{ARTIFACTS}/models/abalone/",
    "WORK_BUCKET": ARTIFACTS,
    "WORK_PREFIX": Names.batch_prefix("abalone"),
    "PREDICTIONS_BUCKET": CURATED,
    "PREDICTIONS_PREFIX": Names.predictions_prefix("abalone"),
    "JOB_NAME_PREFIX": "mlops-dev-abalone",
    "CODE_URI": "s3://cdk-assets/abc.py",
}
EVENT = {"execution_name": "5f1c9e0a-2b7d-4c1e-9a3f-1d2e3f4a5b6c", "start_time": "2024-05-02T04:00:07.123Z",
         "input": {"trigger": "schedule"}}


# --- the plan function ----------------------------------------------------------------------------------------------
@pytest.fixture
def aws(monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        sm, s3 = boto3.client("sagemaker", region_name=REGION), boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=CURATED)
        sm.create_model_package_group(ModelPackageGroupName=GROUP)
        yield sm, s3


def _register(sm, status: str, model_data: str = f"s3://{ARTIFACTS}/models/abalone/executions/e1/model.tar.gz"):
    return sm.create_model_package(
        ModelPackageGroupName=GROUP,
        ModelApprovalStatus=status,
        InferenceSpecification={
            "Containers": [{"Image": "123.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1",
                            "ModelDataUrl": model_data,
                            "Environment": {"SAGEMAKER_PROGRAM": "serve.py",
                                            "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code"}}],
            "SupportedContentTypes": ["text/csv"], "SupportedResponseMIMETypes": ["text/csv"],
        },
    )["ModelPackageArn"]


def _partition(s3, day: str) -> None:
    s3.put_object(Bucket=CURATED, Key=f"abalone/ingest_date={day}/part-00000.snappy.parquet", Body=b"x")


def _plan(sm, s3, event=EVENT, env=ENV):
    return batch_resolve.plan(event, batch_resolve.Settings(env), sm, s3)


def test_plan_scores_the_newest_partition_with_the_latest_approved_package(aws):
    sm, s3 = aws
    _register(sm, "Approved")
    latest = _register(sm, "Approved", f"s3://{ARTIFACTS}/models/abalone/executions/e2/model.tar.gz")
    _register(sm, "PendingManualApproval")
    _register(sm, "Rejected")
    for day in ("2024-04-30", "2024-05-01", "2024-04-02"):
        _partition(s3, day)
    s3.put_object(Bucket=CURATED, Key="abalone/_SUCCESS", Body=b"")
    s3.put_object(Bucket=CURATED, Key="abalone_other/ingest_date=2030-01-01/x.parquet", Body=b"x")
    plan = _plan(sm, s3)
    assert plan["action"] == "score" and plan["reason"] is None
    assert plan["partition"] == "2024-05-01"
    assert plan["dt"] == "2024-05-02"
    assert plan["trigger"] == "schedule"
    assert plan["package"]["arn"] == latest and plan["package"]["version"] == 2
    assert plan["package"]["model_data_url"].endswith("/e2/model.tar.gz")
    assert plan["package"]["environment"]["SAGEMAKER_PROGRAM"] == "serve.py"
    run = plan["run_id"]
    assert run.startswith("20240502-040007-") and len(run) == 22
    assert plan["jobs"] == {"prepare": f"mlops-dev-abalone-prep-{run}", "transform": f"mlops-dev-abalone-score-{run}",
                            "collect": f"mlops-dev-abalone-post-{run}", "model": f"mlops-dev-abalone-model-{run}"}
    work = f"s3://{ARTIFACTS}/batch/abalone/{run}/"
    assert plan["s3"] == {
        "partition": f"s3://{CURATED}/abalone/ingest_date=2024-05-01/",
        "model_data": plan["package"]["model_data_url"],
        "code": "s3://cdk-assets/abc.py",
        "transform_input": f"{work}input/", "rows": f"{work}rows/", "transform_output": f"{work}transform/",
        "report": f"{work}report/", "predictions": f"s3://{CURATED}/batch-predictions/abalone/dt=2024-05-02/",
    }
    assert json.loads(json.dumps(plan)) == plan  # what Step Functions carries is plain JSON


def test_plan_is_the_same_for_a_retried_state(aws):
    sm, s3 = aws
    _register(sm, "Approved")
    _partition(s3, PARTITION)
    assert _plan(sm, s3) == _plan(sm, s3)
    other = _plan(sm, s3, {**EVENT, "execution_name": "another"})
    assert other["run_id"] != _plan(sm, s3)["run_id"]


def test_plan_scores_the_partition_a_person_asks_for(aws):
    sm, s3 = aws
    _register(sm, "Approved")
    for day in ("2024-04-30", PARTITION):
        _partition(s3, day)
    plan = _plan(sm, s3, {**EVENT, "input": {"partition": "2024-04-30"}})
    assert plan["partition"] == "2024-04-30" and plan["trigger"] == "manual"
    with pytest.raises(batch_resolve.BatchResolveError, match=r"ingest_date=2024-04-01 has no objects"):
        _plan(sm, s3, {**EVENT, "input": {"partition": "2024-04-01"}})
    with pytest.raises(batch_resolve.BatchResolveError, match="must be an ingest date YYYY-MM-DD, got '1st May'"):
        _plan(sm, s3, {**EVENT, "input": {"partition": "1st May"}})


def test_nothing_to_score_yet_is_a_skip_not_a_failure(aws):
    sm, s3 = aws
    _partition(s3, PARTITION)
    _register(sm, "PendingManualApproval")
    plan = _plan(sm, s3)
    assert plan["action"] == "skip"
    assert plan["reason"] == f"model package group '{GROUP}' has no Approved model package yet"
    s3.delete_object(Bucket=CURATED, Key=f"abalone/ingest_date={PARTITION}/part-00000.snappy.parquet")
    _register(sm, "Approved")
    plan = _plan(sm, s3)
    assert plan["action"] == "skip" and "no curated partition under s3://mlops-dev-curated/abalone/" in plan["reason"]


def test_plan_refuses_what_cannot_score(aws):
    sm, s3 = aws
    _partition(s3, PARTITION)
    _register(sm, "Approved", "s3://elsewhere/model.tar.gz")
    with pytest.raises(batch_resolve.BatchResolveError,
                       match=r"model data at s3://elsewhere/model.tar.gz, outside s3://mlops-dev-artifacts/models/"):
        _plan(sm, s3)
    with pytest.raises(batch_resolve.BatchResolveError, match="model package group 'missing' does not exist"):
        _plan(sm, s3, env={**ENV, "MODEL_PACKAGE_GROUP": "missing"})
    with pytest.raises(batch_resolve.BatchResolveError, match=r"environment variable\(s\) \['CODE_URI'\]"):
        batch_resolve.Settings({k: v for k, v in ENV.items() if k != "CODE_URI"})
    with pytest.raises(batch_resolve.BatchResolveError, match="JOB_NAME_PREFIX must be 1-30"):
        batch_resolve.Settings({**ENV, "JOB_NAME_PREFIX": "x" * 31})
    with pytest.raises(batch_resolve.BatchResolveError, match="start_time is not an ISO 8601 time"):
        _plan(sm, s3, {**EVENT, "start_time": "yesterday"})
    with pytest.raises(batch_resolve.BatchResolveError, match="execution input must be a JSON object"):
        _plan(sm, s3, {**EVENT, "input": ["x"]})


def test_the_handler_reads_its_environment(aws, monkeypatch):
    sm, s3 = aws
    _register(sm, "Approved")
    _partition(s3, PARTITION)
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    assert batch_resolve.handler(EVENT)["action"] == "score"


def test_job_names_fit_sagemaker_at_the_longest_prefix():
    start = datetime(2024, 5, 2, 4, 0, 7, tzinfo=timezone.utc)
    names = batch_resolve.job_names("p" * 30, batch_resolve.run_id("e", start))
    assert max(len(n) for n in names.values()) <= 63


# --- prepare, transform, collect on a real model ----------------------------------------------------------------
@pytest.fixture(scope="module")
def serving():
    spec = importlib.util.spec_from_file_location("batch_serving_module", SERVE_PY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def raw_rows() -> list[dict]:
    import pandas as pd

    frame = pd.read_csv(ABALONE)
    frame.columns = [snake_case(c) for c in frame.columns]
    return frame.to_dict("records")


@pytest.fixture(scope="module")
def trained(raw_rows, tmp_path_factory) -> LocalRunResult:
    import pandas as pd

    path = tmp_path_factory.mktemp("batch-train") / "abalone.csv"
    pd.DataFrame(raw_rows).sample(n=800, random_state=3).to_csv(path, index=False)
    model = ModelSpec(name="abalone", target="rings", problem_type="regression", metric="rmse", threshold=10.0,
                      hyperparameters={"max_depth": 3, "eta": 0.3, "num_round": 20})
    return run_local_pipeline(path, tmp_path_factory.mktemp("batch-model"), model)


CURATED_SCHEMA = pa.schema([("sex", pa.string()), ("length", pa.float64()), ("diameter", pa.float64()),
                            ("height", pa.float64()), ("whole_weight", pa.float64()),
                            ("shucked_weight", pa.float64()), ("viscera_weight", pa.float64()),
                            ("shell_weight", pa.float64()), ("rings", pa.int32())])


def write_partition(directory: Path, rows: list[dict], files: int = 2) -> Path:
    """The curated layout as the Glue ETL writes it: Spark part files of typed columns (rings an int32) under
    ingest_date=.../, no partition column inside, a _SUCCESS marker."""
    partition = directory / f"ingest_date={PARTITION}"
    partition.mkdir(parents=True)
    size = -(-len(rows) // files)
    for i in range(files):
        chunk = rows[i * size:(i + 1) * size]
        table = pa.Table.from_pylist([{k: r[k] for k in CURATED_SCHEMA.names} for r in chunk], CURATED_SCHEMA)
        pq.write_table(table, partition / f"part-{i:05d}-3c1e.c000.snappy.parquet")
    (partition / "_SUCCESS").write_text("")
    return partition


def play_transform(serving, model_dir: Path, input_dir: Path, output_dir: Path, max_payload_mb: float) -> None:
    """SageMaker's transform, as configured by BatchInference: each input file's lines in MultiRecord mini-batches
    (at most max_payload_mb), InputFilter $[1:] before the model, the package's serve.py handlers with text/csv in
    and out, JoinSource Input (input line + ',' + output line), OutputFilter $[0,-1], AssembleWith Line, one
    ``<file>.out`` per input file."""
    model = serving.model_fn(str(model_dir))
    limit = int(max_payload_mb * 1024 * 1024)
    output_dir.mkdir(parents=True, exist_ok=True)
    for path in sorted(input_dir.glob("*.csv")):
        lines = path.read_text().splitlines()
        batches, current, size = [], [], 0
        for line in lines:
            if current and size + len(line) + 1 > limit:
                batches.append(current)
                current, size = [], 0
            current.append(line)
            size += len(line) + 1
        if current:
            batches.append(current)
        out = []
        for batch in batches:
            body = "\n".join(line.split(",", 1)[1] for line in batch)  # InputFilter $[1:]
            data = serving.input_fn(body, "text/csv")
            response, content_type = serving.output_fn(serving.predict_fn(data, model), "text/csv")
            assert content_type == "text/csv"
            predictions = response.splitlines()
            assert len(predictions) == len(batch)
            for line, prediction in zip(batch, predictions):
                fields = (line + "," + prediction).split(",")  # JoinSource Input
                out.append(",".join([fields[0], fields[-1]]))  # OutputFilter $[0,-1]
        (output_dir / (path.name + ".out")).write_text("\n".join(out) + "\n")


@pytest.fixture(scope="module")
def scored(trained, raw_rows, serving, tmp_path_factory):
    """One full run: 300 curated rows, two of them ones the endpoint would refuse."""
    work = tmp_path_factory.mktemp("batch-run")
    rows = [dict(r) for r in raw_rows[:300]]
    rows[7]["sex"] = "X"  # a category the model has not seen
    rows[42]["length"] = None  # a missing feature (a nullable curated column)
    write_partition(work / "curated", rows)
    model_input = work / "model"
    model_input.mkdir()
    (model_input / "model.tar.gz").write_bytes(trained.model_artifact.read_bytes())
    d = {name: work / name for name in ("transform_in", "rows", "report", "transform_out", "predictions")}
    assert batch_scoring.main([
        "prepare", "--partition", PARTITION, "--max-reject-ratio", "0.05", "--rows-per-file", "120",
        "--input-dir", str(work / "curated" / f"ingest_date={PARTITION}"), "--model-dir", str(model_input),
        "--transform-dir", str(d["transform_in"]), "--rows-dir", str(d["rows"]), "--report-dir", str(d["report"]),
    ]) == 0
    play_transform(serving, trained.model_dir, d["transform_in"], d["transform_out"], max_payload_mb=0.004)
    assert batch_scoring.main([
        "collect", "--partition", PARTITION, "--dt", "2024-05-02", "--run-id", "20240502-040007-abc123",
        "--model-package-arn", "arn:aws:sagemaker:us-east-1:123456789012:model-package/mlops-dev-abalone/4",
        "--model-package-version", "4", "--rows-dir", str(d["rows"]), "--transform-dir", str(d["transform_out"]),
        "--output-dir", str(d["predictions"]), "--report-dir", str(d["report"]),
    ]) == 0
    return rows, d


def test_prepare_writes_the_endpoints_input_contract_led_by_the_key(scored, trained, serving):
    rows, d = scored
    metadata = json.loads((trained.model_dir / "model_metadata.json").read_text())
    files = sorted(p.name for p in d["transform_in"].iterdir())
    assert files == ["part-00000.csv", "part-00001.csv", "part-00002.csv"]  # 298 rows, 120 per file
    lines = [line for f in files for line in (d["transform_in"] / f).read_text().splitlines()]
    good = [r for i, r in enumerate(rows) if i not in (7, 42)]
    assert len(lines) == len(good) == 298
    keys = [line.split(",", 1)[0] for line in lines]
    assert keys[0] == f"{PARTITION}/part-00000-3c1e.c000.snappy.parquet#0"
    assert keys[-1] == f"{PARTITION}/part-00001-3c1e.c000.snappy.parquet#149"
    assert len(set(keys)) == len(keys)
    # What the model receives after InputFilter $[1:] is what the endpoint builds from the same raw instances.
    body = "\n".join(line.split(",", 1)[1] for line in lines)
    sent = serving.input_fn(body, "text/csv")
    instances = [{f["name"]: r[f["name"]] for f in metadata["features"]} for r in good]
    np.testing.assert_array_equal(sent, serving.encode_instances(instances, metadata))


def test_prepare_reports_the_rows_it_cannot_send(scored):
    _, d = scored
    report = json.loads((d["report"] / "prepare_report.json").read_text())
    assert report["rows_in"] == 300 and report["rows_to_score"] == 298 and report["rows_rejected"] == 2
    assert report["rejected_by_reason"] == {"missing feature length": 1, "unknown category of sex": 1}
    assert [f["rows"] for f in report["files"]] == [150, 150]
    rejected = [json.loads(line) for line in (d["report"] / "rejected.jsonl").read_text().splitlines()]
    assert [(r["record_key"], r["reject_reason"]) for r in rejected] == [
        (f"{PARTITION}/part-00000-3c1e.c000.snappy.parquet#7", "unknown category of sex"),
        (f"{PARTITION}/part-00000-3c1e.c000.snappy.parquet#42", "missing feature length"),
    ]
    assert rejected[0]["row"]["sex"] == "X"


def test_collect_writes_every_row_once_with_its_key_prediction_and_version(scored, trained, serving):
    rows, d = scored
    (path,) = list(d["predictions"].iterdir())
    assert path.name == "predictions-20240502-040007-abc123.parquet"
    table = pq.read_table(path)
    assert table.num_rows == 300
    assert table.column_names == CURATED_SCHEMA.names + list(batch_scoring.ADDED_COLUMNS)
    # The curated types are kept (the Glue table declares the schema's); the added ones are the table's too.
    assert table.schema.field("rings").type == pa.int32()
    assert table.schema.field("model_package_version").type == pa.int32()
    assert table.schema.field("ingest_date").type == pa.date32()
    out = table.to_pylist()
    assert {r["model_package_version"] for r in out} == {4}
    assert {r["model_package_arn"] for r in out} == {
        "arn:aws:sagemaker:us-east-1:123456789012:model-package/mlops-dev-abalone/4"}
    assert {str(r["ingest_date"]) for r in out} == {PARTITION}
    assert {r["run_id"] for r in out} == {"20240502-040007-abc123"}
    rejected = [r for r in out if r["reject_reason"] is not None]
    assert [(r["sex"], r["length"], r["prediction"]) for r in rejected] == [
        ("X", rows[7]["length"], None), (rows[42]["sex"], None, None)]
    # Each prediction is the model's for that very row (not its neighbour's).
    model = serving.model_fn(str(trained.model_dir))
    metadata = model.metadata
    scored_rows = [r for r in out if r["reject_reason"] is None]
    instances = [{f["name"]: r[f["name"]] for f in metadata["features"]} for r in scored_rows]
    expected = serving.predict_fn(serving.encode_instances(instances, metadata), model)
    np.testing.assert_allclose([r["prediction"] for r in scored_rows], expected, rtol=1e-6)
    assert [r["rings"] for r in out] == [r["rings"] for r in rows]
    report = json.loads((d["report"] / "batch_report.json").read_text())
    assert (report["rows_in"], report["rows_scored"], report["rows_rejected"]) == (300, 298, 2)
    assert report["output_problems"] == {}


def _collect(d, transform_dir: Path, tmp_path: Path) -> int:
    return batch_scoring.main([
        "collect", "--partition", PARTITION, "--dt", "2024-05-02", "--run-id", "r1", "--model-package-arn", "arn",
        "--model-package-version", "1", "--rows-dir", str(d["rows"]), "--transform-dir", str(transform_dir),
        "--output-dir", str(tmp_path / "out"), "--report-dir", str(tmp_path / "report"),
    ])


@pytest.mark.parametrize("damage, problems", [
    (lambda lines: lines[:-1], {"missing_prediction": 1}),
    (lambda lines: lines + [lines[0]], {"repeated_key": 1}),
    (lambda lines: lines + ["2024-05-01/other#1,3.5"], {"unknown_key": 1}),
    (lambda lines: lines[:-1] + [lines[-1].rsplit(",", 1)[0] + ",oops"], {"non_numeric_prediction": 1,
                                                                          "missing_prediction": 1}),
    (lambda lines: lines[:-1] + ["no-comma-here"], {"malformed_line": 1, "missing_prediction": 1}),
])
def test_collect_fails_with_counts_when_the_output_does_not_match(scored, tmp_path, monkeypatch, capsys, damage,
                                                                  problems):
    _, d = scored
    monkeypatch.setenv("BATCH_FAILURE_FILE", str(tmp_path / "message"))
    broken = tmp_path / "transform"
    broken.mkdir()
    lines = [line for p in sorted(d["transform_out"].glob("*.out")) for line in p.read_text().splitlines()]
    (broken / "part.csv.out").write_text("\n".join(damage(lines)) + "\n")
    assert _collect(d, broken, tmp_path) == 1
    report = json.loads((tmp_path / "report" / "batch_report.json").read_text())
    assert report["output_problems"] == problems
    assert not (tmp_path / "out").exists()  # nothing half-right reaches the lake
    message = (tmp_path / "message").read_text()
    assert message.startswith("batch collect: the transform output does not match the 298 rows sent: ")
    assert json.dumps(problems, sort_keys=True)[1:-1].replace('"', "'") in message


def test_prepare_fails_above_the_reject_ratio_and_when_nothing_can_be_scored(trained, raw_rows, tmp_path,
                                                                             monkeypatch):
    monkeypatch.setenv("BATCH_FAILURE_FILE", str(tmp_path / "message"))
    rows = [dict(r) for r in raw_rows[:20]]
    for r in rows[:2]:
        r["sex"] = "X"
    partition = write_partition(tmp_path / "curated", rows, files=1)
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.tar.gz").write_bytes(trained.model_artifact.read_bytes())

    def prepare(ratio: str) -> int:
        return batch_scoring.main(["prepare", "--partition", PARTITION, "--max-reject-ratio", ratio,
                                   "--input-dir", str(partition), "--model-dir", str(model),
                                   "--transform-dir", str(tmp_path / "t"), "--rows-dir", str(tmp_path / "r"),
                                   "--report-dir", str(tmp_path / "rep")])

    assert prepare("0.1") == 0
    assert prepare("0.05") == 1
    assert (tmp_path / "message").read_text() == (
        "batch prepare: 2 of 20 rows of partition 2024-05-01 cannot be scored (10.0% > max_reject_ratio 0.05): "
        "{'unknown category of sex': 2}")
    for r in rows:
        r["sex"] = "X"
    partition.rename(tmp_path / "old")
    partition = write_partition(tmp_path / "curated", rows, files=1)
    assert prepare("1") == 1
    assert (tmp_path / "message").read_text() == (
        "batch prepare: none of the 20 rows of partition 2024-05-01 can be scored: {'unknown category of sex': 20}")


def test_prepare_refuses_a_partition_without_the_models_features(trained, raw_rows, tmp_path, monkeypatch):
    monkeypatch.setenv("BATCH_FAILURE_FILE", str(tmp_path / "message"))
    partition = tmp_path / f"ingest_date={PARTITION}"
    partition.mkdir()
    pq.write_table(pa.table({"sex": ["M"], "rings": pa.array([3], pa.int32())}), partition / "part-0.parquet")
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.tar.gz").write_bytes(trained.model_artifact.read_bytes())
    assert batch_scoring.main(["prepare", "--partition", PARTITION, "--input-dir", str(partition),
                               "--model-dir", str(model), "--transform-dir", str(tmp_path / "t"),
                               "--rows-dir", str(tmp_path / "r"), "--report-dir", str(tmp_path / "rep")]) == 1
    assert "lacks the model's feature column(s) ['length', 'diameter'" in (tmp_path / "message").read_text()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(batch_scoring.BatchScoringError, match="no Parquet files under"):
        batch_scoring.read_partition(str(empty))


def test_the_scoring_script_stays_standalone():
    """SageMaker downloads batch_scoring.py alone into the scikit-learn 1.2-1 container (Python 3.9): it imports
    nothing of this repository, and its added columns are the ones the construct declares in the Glue table."""
    from mlops_constructs.batch_inference import PREDICTION_COLUMNS

    source = (ROOT / "sagemaker_steps" / "batch_scoring.py").read_text()
    assert "from sagemaker_steps" not in source and "import sagemaker_steps" not in source
    assert tuple(name for name, _ in PREDICTION_COLUMNS) == batch_scoring.ADDED_COLUMNS
    import ast

    ast.parse(source, "batch_scoring.py", feature_version=(3, 9))  # the container's Python
