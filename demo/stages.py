"""The seven stages of :func:`demo.loop.run_demo`, one function each: stages 1 and 7 once per run (on a
:class:`Loop`), stages 2 to 6 once per model (on that model's :class:`Run`); stage 6 is in :mod:`demo.serving`.

Every stage runs the project's real code; only AWS is stood in for (see :mod:`demo.aws`). A stage reports its
progress with ``say`` and records what it found in its ``result``; whatever it starts is stopped by its ``cleanup``
(an ``ExitStack``: the run's, or the model's for what must stop before the next model) or before it returns.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import datetime as dt
import io
import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from demo.aws import (
    FAKE_ACCESS_KEY,
    check_default_chain,
    download_prefix,
    fake_aws_environ,
    make_client,
    patched_environ,
    stand_in,
    upload_tree,
)
from demo.report import write_report
from demo.result import DemoFailed, DemoResult, DemoRun, Progress

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = REPO / "data"


@dataclass
class Loop:
    """What every model's run shares: the config, the run's result, the stand-in's clients, the Spark session."""

    config: Any  # platform_config's typed config
    result: DemoRun
    progress: Progress
    cleanup: contextlib.ExitStack  # the whole run's
    work: Path
    spark: Any = None  # a SparkSession to use; None: the first ETL starts one, stopped when the run ends
    s3: Any = None
    sm: Any = None
    runs: list["Run"] = dataclasses.field(default_factory=list)  # the models' runs so far, for the report

    def say(self, text: str) -> None:
        self.progress.say(text)


@dataclass
class Run:
    """One model's loop (stages 2 to 6): its entry in the config, its result, and the state one stage hands on."""

    loop: Loop
    model: Any  # the model's entry in the config
    result: DemoResult
    cleanup: contextlib.ExitStack  # this model's: its serving environment and server stop before the next model
    work: Path
    raw_key: str = ""
    pipeline: Any = None  # sagemaker_steps.local_runner.LocalRunResult
    predictions_csv: Optional[Path] = None
    lambda_log: Optional[Path] = None

    @property
    def config(self) -> Any:
        return self.loop.config

    @property
    def s3(self) -> Any:
        return self.loop.s3

    @property
    def sm(self) -> Any:
        return self.loop.sm

    def say(self, text: str) -> None:
        self.loop.say(text)


# ---------------------------------------------------------------------------------------------------------------
# 1. Stand-in AWS
# ---------------------------------------------------------------------------------------------------------------
def stand_in_aws(run: Loop, endpoint_url: Optional[str], models: list[Any]) -> None:
    """The moto stand-in, the fake-credentials environment, the lake buckets and each model's package group."""
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
    for model, model_result in zip(models, result.models):
        model_result.endpoint_url = result.endpoint_url
        try:
            run.sm.create_model_package_group(
                ModelPackageGroupName=model_result.model_package_group,
                ModelPackageGroupDescription=f"Versions of {model.name} ({model.problem_type}, {model.framework})")
        except ClientError as exc:
            if "already exists" not in str(exc):
                raise
        run.say(f"model package group {model_result.model_package_group}")


# ---------------------------------------------------------------------------------------------------------------
# 2. Raw upload
# ---------------------------------------------------------------------------------------------------------------
def dataset_file(dataset: str) -> Path:
    """The dataset's shipped raw CSV: ``data/<dataset>.csv``."""
    path = DATA_DIR / f"{dataset}.csv"
    if not path.is_file():
        raise FileNotFoundError(f"no raw file for dataset {dataset!r}: the demo uploads {path.relative_to(REPO)}")
    return path


def sample_csv(source: Path, target: Path, rows: Optional[int], label_of: Optional[Callable[[str], Any]] = None
               ) -> int:
    """Copy the header and ``rows`` data lines (all for None); return the number of data lines.

    Without ``label_of``, the first ``rows`` lines. With it (a binary target: line -> class), the first lines of
    each class in the file's proportions, at least one of each, kept in file order: the sample has both classes.
    """
    lines = source.read_text(encoding="utf-8").splitlines(keepends=True)
    header, body = lines[0], [line for line in lines[1:] if line.strip()]
    if rows is not None and rows < len(body):
        body = body[:rows] if label_of is None else _stratified(body, rows, label_of)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(header + "".join(body), encoding="utf-8")
    return len(body)


def _stratified(body: list[str], rows: int, label_of: Callable[[str], Any]) -> list[str]:
    by_class: dict[Any, list[int]] = {}
    for index, line in enumerate(body):
        by_class.setdefault(label_of(line), []).append(index)
    quota = {c: max(1, round(rows * len(ix) / len(body))) for c, ix in by_class.items()}
    while sum(quota.values()) > max(rows, len(quota)):  # rounding up: take the extra rows from the largest class
        quota[max(quota, key=quota.get)] -= 1
    while sum(quota.values()) < rows:
        quota[max(by_class, key=lambda c: len(by_class[c]) - quota[c])] += 1
    return [body[i] for i in sorted(i for c, ix in by_class.items() for i in ix[:quota[c]])]


def _label_reader(run: Run, header: str) -> Optional[Callable[[str], Any]]:
    """line -> the binary label of the model's target (None for regression): what the sample must keep both of."""
    spec = run.model.spec
    if spec.problem_type != "binary_classification":
        return None
    column = next(c for c in run.config.dataset_of(run.model).columns if c.name == spec.target)
    index = next(csv.reader([header])).index(column.raw_name)

    def label_of(line: str) -> Any:
        value = next(csv.reader([line]))[index].strip()
        if spec.positive_label is not None:
            return value.upper() == spec.positive_label.upper()
        try:
            return float(value) >= float(spec.positive_threshold)
        except ValueError:
            return None

    return label_of


def upload_raw(run: Run) -> None:
    """``data/<dataset>.csv`` (or a ``sample`` of its rows) to ``s3://<raw>/<dataset>/<dataset>.csv``."""
    result, sample = run.result, run.result.sample
    source = dataset_file(result.dataset)
    local_raw = run.work / "upload" / source.name
    with source.open(encoding="utf-8") as handle:
        label_of = _label_reader(run, handle.readline())
    rows = sample_csv(source, local_raw, sample, label_of)
    run.raw_key = f"{result.dataset}/{source.name}"
    run.s3.upload_file(str(local_raw), result.buckets["raw"], run.raw_key)
    result.raw_uri = f"s3://{result.buckets['raw']}/{run.raw_key}"
    how = ""
    if sample and rows == sample:
        how = f", a sample of {sample}" + (" keeping both classes of the target" if label_of else ": the first rows")
    run.say(f"{source.relative_to(REPO)} ({rows} rows{how}, {local_raw.stat().st_size} bytes) -> {result.raw_uri}")


# ---------------------------------------------------------------------------------------------------------------
# 3. Glue ETL
# ---------------------------------------------------------------------------------------------------------------
def _spark_session(loop: Loop) -> Any:
    """The run's Spark session: the given one, or a local one started now and stopped when the run ends."""
    from demo.spark import local_spark

    if loop.spark is not None:
        loop.say(f"using the run's Spark {loop.spark.version} session")
        return loop.spark
    started = time.perf_counter()
    loop.cleanup.enter_context(patched_environ({"SPARK_LOCAL_IP": "127.0.0.1"}))
    loop.spark = loop.cleanup.enter_context(local_spark("mlops-demo-etl"))
    loop.say(f"local Spark {loop.spark.version} (local[1], UI off) up in {time.perf_counter() - started:.1f} s")
    return loop.spark


def glue_etl(run: Run) -> None:
    """The Glue job's own policy (``glue_jobs.etl_job.process``) around the transform, on local PySpark; curated
    Parquet and quarantine uploaded to the curated zone."""
    from glue_jobs import etl_job, etl_transform

    result, dataset = run.result, run.result.dataset
    raw_local = run.work / "glue" / "raw" / run.raw_key
    raw_local.parent.mkdir(parents=True)
    run.s3.download_file(result.buckets["raw"], run.raw_key, str(raw_local))
    curated_local = run.work / "glue" / "curated" / dataset
    quarantine_local = run.work / "glue" / "curated" / "quarantine" / dataset
    job_log: list[str] = []
    # The dataset schema document, as the Glue job receives it (--dataset_schema).
    schema = etl_transform.as_spec(run.config.dataset_of(run.model).schema_document())
    options = etl_job.JobOptions(ingest_date=dt.datetime.now(dt.timezone.utc).date())
    spark = _spark_session(run.loop)
    raw_df = etl_transform.read_raw_csv(spark, str(raw_local), schema.format)
    try:
        summary = etl_job.process(
            spark, raw_df, job_name=run.config.names.etl_job(dataset), dataset=schema,
            curated_path=str(curated_local), quarantine_path=str(quarantine_local), options=options,
            log=job_log.append)
    except (etl_job.RejectRatioExceededError, etl_transform.SchemaError) as exc:
        raise DemoFailed(f"Glue ETL of {dataset}: {exc}", result) from None
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
    pipeline = run.pipeline = run_local_pipeline(pipeline_input, run.work / "pipeline", model_spec,
                                                 training_source_dir=model.training_dir)  # models[].training
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
# 7. Report
# ---------------------------------------------------------------------------------------------------------------
def report(run: Loop) -> None:
    """metrics.json, summary.md and each model's plot (also for a run in which a model stopped at the Fail step)."""
    result = run.result
    files = write_report(result, result.report_dir,
                         {r.result.model: (r.predictions_csv, r.lambda_log) for r in run.runs})
    run.say(f"report{'' if result.passed else ' (a model failed)'} in {result.report_dir}/: "
            + ", ".join(p.name for p in files.values()))
