"""The seven stages of :func:`demo.loop.run_demo`, one function each, sharing a :class:`Run`.

Every stage runs the project's real code; only AWS is stood in for (see :mod:`demo.aws`). A stage reports its
progress with ``run.say`` and records what it found in ``run.result``; whatever it starts is stopped by
``run.cleanup`` (the run's ``ExitStack``) or before it returns.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import io
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from demo.aws import (
    FAKE_ACCESS_KEY,
    check_default_chain,
    download_prefix,
    fake_aws_environ,
    make_client,
    patched_environ,
    split_s3_uri,
    stand_in,
    upload_tree,
)
from demo.function_url import FunctionUrlServer, http_call, load_lambda_handler
from demo.report import write_report
from demo.result import DemoFailed, DemoResult, Progress, RequestResult

REPO = Path(__file__).resolve().parent.parent
RAW_DATASET_FILE = REPO / "data" / "abalone.csv"


@dataclass
class Run:
    """What the stages share: the config's model, the result being filled in, and the state one stage hands on."""

    config: Any  # platform_config's typed config
    model: Any  # the model's entry in it
    result: DemoResult
    progress: Progress
    cleanup: contextlib.ExitStack
    work: Path
    spark: Any = None  # a SparkSession to use; None: stage 3 starts and stops its own
    s3: Any = None
    sm: Any = None
    raw_key: str = ""
    pipeline: Any = None  # sagemaker_steps.local_runner.LocalRunResult
    predictions_csv: Optional[Path] = None
    lambda_log: Optional[Path] = None

    def say(self, text: str) -> None:
        self.progress.say(text)


# ---------------------------------------------------------------------------------------------------------------
# 1. Stand-in AWS
# ---------------------------------------------------------------------------------------------------------------
def stand_in_aws(run: Run, endpoint_url: Optional[str]) -> None:
    """The moto stand-in, the fake-credentials environment, the lake buckets and the model package group."""
    from botocore.exceptions import ClientError

    result, region = run.result, run.result.region
    result.endpoint_url = run.cleanup.enter_context(stand_in(endpoint_url, run.say))
    run.cleanup.enter_context(patched_environ(fake_aws_environ(result.endpoint_url, region)))
    check_default_chain()
    run.s3 = make_client("s3", result.endpoint_url, region)
    run.sm = make_client("sagemaker", result.endpoint_url, region)
    run.say(f"fake credentials only (access key '{FAKE_ACCESS_KEY}'), region {region}, no profile, no credential "
            "files")
    for zone, bucket in result.buckets.items():
        kwargs: dict[str, Any] = {}
        if region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            run.s3.create_bucket(Bucket=bucket, **kwargs)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
                raise
        run.say(f"bucket s3://{bucket} ({zone} zone)")
    try:
        run.sm.create_model_package_group(
            ModelPackageGroupName=result.model_package_group,
            ModelPackageGroupDescription=f"Versions of {run.model.name} ({run.model.problem_type}, "
                                         f"{run.model.framework})")
    except ClientError as exc:
        if "already exists" not in str(exc):
            raise
    run.say(f"model package group {result.model_package_group}")


# ---------------------------------------------------------------------------------------------------------------
# 2. Raw upload
# ---------------------------------------------------------------------------------------------------------------
def sample_csv(source: Path, target: Path, rows: Optional[int]) -> int:
    """Copy the header and the first ``rows`` data lines (all for None); return the number of data lines."""
    lines = source.read_text(encoding="utf-8").splitlines(keepends=True)
    header, body = lines[0], [line for line in lines[1:] if line.strip()]
    if rows is not None:
        body = body[:rows]
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(header + "".join(body), encoding="utf-8")
    return len(body)


def upload_raw(run: Run) -> None:
    """``data/abalone.csv`` (or its first ``sample`` rows) to ``s3://<raw>/<dataset>/abalone.csv``."""
    result, sample = run.result, run.result.sample
    local_raw = run.work / "upload" / RAW_DATASET_FILE.name
    rows = sample_csv(RAW_DATASET_FILE, local_raw, sample)
    run.raw_key = f"{result.dataset}/{RAW_DATASET_FILE.name}"
    run.s3.upload_file(str(local_raw), result.buckets["raw"], run.raw_key)
    result.raw_uri = f"s3://{result.buckets['raw']}/{run.raw_key}"
    run.say(f"{RAW_DATASET_FILE.relative_to(REPO)} ({rows} rows" + (f", first {sample}" if sample else "")
            + f", {local_raw.stat().st_size} bytes) -> {result.raw_uri}")


# ---------------------------------------------------------------------------------------------------------------
# 3. Glue ETL
# ---------------------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _spark_session(run: Run):
    from demo.spark import local_spark

    if run.spark is not None:
        run.say(f"using the given Spark {run.spark.version} session")
        yield run.spark
        return
    started = time.perf_counter()
    with patched_environ({"SPARK_LOCAL_IP": "127.0.0.1"}), local_spark("mlops-demo-etl") as spark:
        run.say(f"local Spark {spark.version} (local[1], UI off) up in {time.perf_counter() - started:.1f} s")
        yield spark


def glue_etl(run: Run) -> None:
    """The Glue job's own policy (``glue_jobs.etl_job.process``) around the transform, on local PySpark; curated
    Parquet and quarantine uploaded to the curated zone."""
    from glue_jobs import etl_job, etl_transform

    result, dataset = run.result, run.result.dataset
    raw_local = run.work / "glue" / "raw" / dataset / RAW_DATASET_FILE.name
    raw_local.parent.mkdir(parents=True)
    run.s3.download_file(result.buckets["raw"], run.raw_key, str(raw_local))
    curated_local = run.work / "glue" / "curated" / dataset
    quarantine_local = run.work / "glue" / "curated" / "quarantine" / dataset
    job_log: list[str] = []
    # The dataset schema document, as the Glue job receives it (--dataset_schema).
    schema = etl_transform.as_spec(run.config.dataset_of(run.model).schema_document())
    options = etl_job.JobOptions(ingest_date=dt.datetime.now(dt.timezone.utc).date())
    with _spark_session(run) as spark:
        raw_df = etl_transform.read_raw_csv(spark, str(raw_local), schema.format)
        try:
            summary = etl_job.process(
                spark, raw_df, job_name=run.config.names.etl_job(dataset), dataset=schema,
                curated_path=str(curated_local), quarantine_path=str(quarantine_local), options=options,
                log=job_log.append)
        except (etl_job.RejectRatioExceededError, etl_transform.SchemaError) as exc:
            raise DemoFailed(f"Glue ETL: {exc}", result) from None
    result.rows_in = int(summary["rows_in"])
    result.rows_curated = int(summary["rows_curated"])
    result.rows_rejected = int(summary["rows_rejected"])
    curated = result.buckets["curated"]
    result.curated_objects = upload_tree(run.s3, curated_local, curated, dataset)
    if quarantine_local.exists():
        result.quarantine_objects = upload_tree(run.s3, quarantine_local, curated, f"quarantine/{dataset}")
    run.say(f"rows in {result.rows_in} = curated {result.rows_curated} + rejected {result.rows_rejected} (reject "
            f"ratio {summary['reject_ratio']:.2%}, gate {schema.max_reject_ratio:.0%})")
    run.say(f"{result.curated_objects} Parquet object(s) -> s3://{curated}/{dataset}/"
            f"ingest_date={options.ingest_date.isoformat()}/; {result.quarantine_objects} quarantine "
            f"object(s) -> s3://{curated}/quarantine/{dataset}/")
    for line in job_log:
        run.say(f"job log: {line}")


# ---------------------------------------------------------------------------------------------------------------
# 4. Model build
# ---------------------------------------------------------------------------------------------------------------
def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and commit else "unknown"


def inference_image(framework: str, region: str) -> str:
    """The SageMaker framework image the package names (the real pipeline resolves it with sagemaker.image_uris)."""
    from sagemaker_steps import pipeline_spec as spec

    version = spec.CONTAINER_FRAMEWORK_VERSIONS[framework]
    if framework == "xgboost":
        return f"683313688378.dkr.ecr.{region}.amazonaws.com/sagemaker-xgboost:{version}"
    return f"683313688378.dkr.ecr.{region}.amazonaws.com/sagemaker-scikit-learn:{version}-cpu-py3"


def build_model(run: Run) -> None:
    """The SageMaker pipeline's scripts, order and condition (``run_local_pipeline``) on the curated objects; the
    artifacts uploaded; a package registered if the condition passes, else the Fail step's message."""
    from sagemaker_steps.local_runner import run_local_pipeline

    result, model = run.result, run.model
    pipeline_input = run.work / "pipeline-input"
    fetched = download_prefix(run.s3, result.buckets["curated"], f"{result.dataset}/", pipeline_input)
    run.say(f"InputDataUrl s3://{result.buckets['curated']}/{result.dataset}/ ({fetched} object(s))")
    # The model's spec as the pipeline is built from it, with the run's threshold (--threshold overrides it).
    model_spec = dataclasses.replace(model.spec, threshold=result.threshold)
    pipeline = run.pipeline = run_local_pipeline(pipeline_input, run.work / "pipeline", model_spec)
    result.step_seconds = {k: round(v, 2) for k, v in pipeline.durations.items()}
    result.evaluation = pipeline.evaluation
    result.metric_value = float(pipeline.metric_value)
    result.passed = bool(pipeline.passed)
    for step, seconds in pipeline.durations.items():
        run.say(f"{step}: {seconds:.1f} s")
    metrics = pipeline.evaluation.get(f"{model.problem_type}_metrics", {})
    run.say("metrics: " + ", ".join(f"{k}={v['value']:.4f}" for k, v in metrics.items()))
    run_id = _upload_artifacts(run)
    comparison = ">=" if result.higher_is_better else "<="
    run.say(f"CheckMetric: {model.metric}={result.metric_value:.4f}, needs {comparison} {result.threshold:g} -> "
            f"{'RegisterModel' if result.passed else 'FailStep'}")
    if result.passed:
        _register(run, run_id)
    result.packages_registered = len(
        run.sm.list_model_packages(ModelPackageGroupName=result.model_package_group)["ModelPackageSummaryList"])
    if result.passed:
        run.say(f"registered {result.package_arn} (PendingManualApproval, commit {result.git_commit[:12]})")
    else:
        result.fail_message = pipeline.fail_message
        run.say(f"FailStep: {result.fail_message}")


def _upload_artifacts(run: Run) -> str:
    """model.tar.gz, evaluation.json and predictions.csv to the artifacts bucket under a run id; returns the id."""
    result, name = run.result, run.model.name
    evaluation_dir = run.pipeline.outputs["evaluation"]
    run.predictions_csv = evaluation_dir / "predictions.csv"
    run_id = "demo-" + dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    artifacts = result.buckets["artifacts"]
    model_key = f"{name}/{run_id}/model.tar.gz"
    eval_key = f"{name}/{run_id}/evaluation/evaluation.json"
    run.s3.upload_file(str(run.pipeline.model_artifact), artifacts, model_key)
    run.s3.upload_file(str(evaluation_dir / "evaluation.json"), artifacts, eval_key)
    if run.predictions_csv.is_file():
        run.s3.upload_file(str(run.predictions_csv), artifacts, f"{name}/{run_id}/evaluation/predictions.csv")
    result.model_data_url = f"s3://{artifacts}/{model_key}"
    result.evaluation_uri = f"s3://{artifacts}/{eval_key}"
    run.say(f"artifacts -> {result.model_data_url}, {result.evaluation_uri}")
    return run_id


def _register(run: Run, run_id: str) -> None:
    """As the pipeline's Register step: PendingManualApproval, the inference code in model.tar.gz's code/."""
    from sagemaker_steps import pipeline_spec as spec

    result, model = run.result, run.model
    result.git_commit = git_commit()
    registered = run.sm.create_model_package(
        ModelPackageGroupName=result.model_package_group,
        ModelPackageDescription=f"{model.name} {model.metric}={result.metric_value:.4f} (local demo run {run_id})",
        ModelApprovalStatus="PendingManualApproval",
        InferenceSpecification={
            "Containers": [{"Image": inference_image(model.framework, result.region),
                            "ModelDataUrl": result.model_data_url,
                            "Environment": spec.serving_environment(model.framework)}],
            "SupportedContentTypes": ["text/csv", "application/json"],
            "SupportedResponseMIMETypes": ["text/csv", "application/json"],
        },
        CustomerMetadataProperties={"GitCommit": result.git_commit},
        ModelMetrics={"ModelQuality": {"Statistics": {"ContentType": "application/json",
                                                      "S3Uri": result.evaluation_uri}}},
    )
    result.package_arn = registered["ModelPackageArn"]


# ---------------------------------------------------------------------------------------------------------------
# 5. Approval and the deploy pipeline's resolver
# ---------------------------------------------------------------------------------------------------------------
def approve_and_resolve(run: Run) -> None:
    """Approve the package as a reviewer would, then resolve it with ``cicd_scripts.resolve_approved_package``."""
    from cicd_scripts import resolve_approved_package

    result = run.result
    run.sm.update_model_package(
        ModelPackageArn=result.package_arn,
        ModelApprovalStatus="Approved",
        ApprovalDescription="approved by the local demo (stands in for a reviewer)",
        # unchanged; moto 5.2 clears CustomerMetadataProperties on an update that omits them
        CustomerMetadataProperties={"GitCommit": result.git_commit},
    )
    run.say(f"approved {result.package_arn} (as a reviewer would in Studio or with "
            "'aws sagemaker update-model-package')")
    resolved_file = run.work / "resolve" / "package.json"
    captured_out, captured_err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(captured_out), contextlib.redirect_stderr(captured_err):
        result.resolve_exit_code = resolve_approved_package.main(
            ["--model-package-group", result.model_package_group, "--region", result.region,
             "--expected-arn", result.package_arn, "--output-file", str(resolved_file)], sagemaker=run.sm)
    for line in captured_err.getvalue().strip().splitlines():
        run.say(f"resolver: {line}")
    if result.resolve_exit_code != 0:
        raise RuntimeError(f"resolve_approved_package exited {result.resolve_exit_code}: "
                           f"{captured_err.getvalue().strip()}")
    result.resolved = json.loads(resolved_file.read_text())
    for key, value in result.resolved.items():
        run.say(f"resolved {key}: {value}")
    description = run.sm.describe_model_package(ModelPackageName=result.package_arn)
    result.package_status = description.get("ModelApprovalStatus")
    result.package_version = description.get("ModelPackageVersion")
    result.package_metadata = dict(description.get("CustomerMetadataProperties") or {})
    result.package_group_of_arn = description.get("ModelPackageGroupName")


# ---------------------------------------------------------------------------------------------------------------
# 6. The inference Lambda behind a local Function URL
# ---------------------------------------------------------------------------------------------------------------
def serve_over_http(run: Run) -> None:
    """The resolved model in the inference Lambda's handler (INFERENCE_MODE=model) behind a local Function URL;
    good and bad requests over HTTP; the batch's predictions compared with the evaluate step's."""
    model_dir = _fetch_resolved_model(run)
    run.lambda_log = run.work / "lambda-logs.jsonl"
    log_stream = run.cleanup.enter_context(open(run.lambda_log, "w", encoding="utf-8"))
    server = _start_function_url(run, model_dir, log_stream)
    metadata = json.loads((model_dir / "model_metadata.json").read_text())
    test_rows = decode_rows(run.pipeline.outputs["test"] / "test.csv", metadata, 5)
    for name, body, expected, rows_expected in request_cases(test_rows, metadata):
        status, payload, latency = http_call(server.url, body)
        ok = status == 200 and payload.get("count") == rows_expected if expected == "200" else 400 <= status < 500
        req = RequestResult(name=name, status=status, latency_ms=round(latency, 2), expected=expected, ok=ok,
                            count=payload.get("count"), predictions=payload.get("predictions"),
                            error=payload.get("error"), message=payload.get("message"))
        run.result.requests.append(req)
        if req.predictions is not None:
            shown = ", ".join(f"{p:.3f}" if isinstance(p, float) else str(p) for p in req.predictions)
            detail = f"predictions [{shown}]"
        else:
            detail = f"{req.error}: {req.message}"
        run.say(f"POST {name:<16} -> {status} in {latency:6.1f} ms ({'ok' if ok else 'UNEXPECTED'}) {detail}")
    _compare_batch_with_evaluation(run)
    server.stop()
    log_stream.flush()


def _fetch_resolved_model(run: Run) -> Path:
    """Download the resolved package's model.tar.gz and extract it (the Lambda's MODEL_LOCAL_PATH)."""
    bucket, key = split_s3_uri(run.result.resolved["model_data_url"])
    serving_dir = run.work / "serving"
    serving_dir.mkdir()
    tarball = serving_dir / "model.tar.gz"
    run.s3.download_file(bucket, key, str(tarball))
    model_dir = serving_dir / "model"
    shutil.unpack_archive(str(tarball), str(model_dir), format="gztar", filter="data")
    run.say(f"model {run.result.resolved['model_data_url']} extracted to MODEL_LOCAL_PATH")
    return model_dir


def _start_function_url(run: Run, model_dir: Path, log_stream: Any) -> FunctionUrlServer:
    """The handler loaded with the model in its environment, served on 127.0.0.1 (both undone by run.cleanup)."""
    run.cleanup.enter_context(patched_environ({
        "INFERENCE_MODE": "model",
        "MODEL_LOCAL_PATH": str(model_dir),
        "MODEL_VERSION": run.result.package_arn,
        "MAX_BATCH_ROWS": str(run.model.lambda_.max_batch_rows),
        "MODEL_S3_URI": None, "ENDPOINT_NAME": None,
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_SERVICE_NAME": os.environ.get("POWERTOOLS_SERVICE_NAME", "inference"),
        "POWERTOOLS_METRICS_NAMESPACE": os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "MLOpsPlatform/Inference"),
    }))
    handler, runtime = load_lambda_handler(log_stream)
    run.cleanup.callback(runtime.reset)
    server = FunctionUrlServer(handler, run.config.names.serving_resource(run.model.name, "demo"), log_stream,
                               getattr(runtime, "logger", None)).start()
    run.cleanup.callback(server.stop)
    run.result.serving_url = server.url
    run.say(f"inference handler (lambda_src/inference/app.py, INFERENCE_MODE=model) behind a Function URL "
            f"stand-in at {server.url}")
    return server


def decode_rows(test_csv: Path, metadata: dict[str, Any], limit: int) -> list[dict[str, Any]]:
    """Request rows (raw feature values) back from the encoded test split: one-hot -> category, numeric as is."""
    import pandas as pd

    frame = pd.read_csv(test_csv).head(limit)
    rows = []
    for _, record in frame.iterrows():
        row: dict[str, Any] = {}
        for feature in metadata["features"]:
            name = feature["name"]
            if feature["type"] == "categorical":
                hot = [c for c in feature["categories"] if float(record[f"{name}_{c}"]) == 1.0]
                row[name] = hot[0] if hot else feature["categories"][0]
            else:
                row[name] = float(record[name])
        rows.append(row)
    return rows


def request_cases(test_rows: list[dict[str, Any]], metadata: dict[str, Any]
                  ) -> list[tuple[str, bytes, str, Optional[int]]]:
    """(name, body, expected status class, rows expected): two good requests, four the function must refuse."""
    missing = dict(test_rows[0])
    missing.pop(metadata["features"][-1]["name"])
    wrong_type = dict(test_rows[0])
    numeric = next(f["name"] for f in metadata["features"] if f["type"] == "numeric")
    wrong_type[numeric] = "not-a-number"
    return [
        ("one row", json.dumps({"instance": test_rows[0]}).encode(), "200", 1),
        ("batch of 5", json.dumps({"instances": test_rows}).encode(), "200", len(test_rows)),
        ("malformed JSON", b'{"instances": [{"sex": "M", ', "4xx", None),
        ("missing feature", json.dumps({"instances": [missing]}).encode(), "4xx", None),
        ("wrong type", json.dumps({"instances": [wrong_type]}).encode(), "4xx", None),
        ("empty batch", json.dumps({"instances": []}).encode(), "4xx", None),
    ]


def _compare_batch_with_evaluation(run: Run) -> None:
    batch = run.result.request("batch of 5")
    if not batch.predictions or run.predictions_csv is None or not run.predictions_csv.is_file():
        return
    import pandas as pd

    expected = pd.read_csv(run.predictions_csv)["predicted"].head(len(batch.predictions)).tolist()
    run.result.batch_matches_evaluation = all(
        abs(float(a) - float(b)) <= 1e-4 * max(1.0, abs(float(b))) for a, b in zip(batch.predictions, expected))
    run.say(f"batch predictions equal the evaluation step's predictions.csv: {run.result.batch_matches_evaluation}")


# ---------------------------------------------------------------------------------------------------------------
# 7. Report
# ---------------------------------------------------------------------------------------------------------------
def report(run: Run) -> None:
    """metrics.json, the plot and summary.md (also for a run that stopped at the Fail step)."""
    result = run.result
    write_report(result, result.report_dir, run.predictions_csv, run.lambda_log)
    run.say(f"report{'' if result.passed else ' (failed run)'} in {result.report_dir}/: "
            + ", ".join(p.name for p in result.report_files.values()))
