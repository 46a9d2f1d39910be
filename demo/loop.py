"""The platform loop on one machine: :func:`run_demo`.

Every stage runs the project's real code; only AWS is stood in for, by an embedded moto server on 127.0.0.1
(:mod:`demo.stages` has one function per stage):

1. stand-in AWS: moto server, fake credentials, the lake buckets and the model package group, named as the config
   names them (buckets are CloudFormation-generated in AWS, so here they are ``<project>-<env>-<zone>-demo``);
2. raw upload: ``data/abalone.csv`` (or its first ``sample`` rows) to ``s3://<raw>/<dataset>/abalone.csv``;
3. Glue ETL: ``glue_jobs.etl_job.process`` (the job's own policy around ``etl_transform``) on local PySpark, the raw
   object downloaded from the stand-in S3; curated Parquet and quarantine uploaded to the curated zone;
4. model build: ``sagemaker_steps.local_runner.run_local_pipeline`` (same scripts, order and condition as the
   SageMaker pipeline) on the curated objects; artifacts uploaded; a model package registered if the condition
   passes, else the Fail step's message and :class:`DemoFailed`;
5. approval and resolution: the package is approved as a reviewer would, then the deploy pipeline's
   ``cicd_scripts.resolve_approved_package`` resolves it;
6. serving: the inference Lambda's handler (``lambda_src/inference/app.py``, INFERENCE_MODE=model) behind a local
   ``ThreadingHTTPServer`` that speaks Lambda Function URL events (payload 2.0), called over real HTTP;
7. report: ``metrics.json``, a plot and ``summary.md``.

Everything started here (moto server, HTTP server, Spark session and its JVM) is stopped in ``finally`` blocks, and
the process environment is restored afterwards.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional, TextIO

from demo import stages
from demo.aws import DEFAULT_REGION, UnsafeEnvironmentError, check_endpoint
from demo.report import write_texts
from demo.result import DemoFailed, DemoResult, Progress

__all__ = ["DemoFailed", "DemoResult", "UnsafeEnvironmentError", "run_demo"]


def run_demo(
    env: str = "dev",
    *,
    sample: Optional[int] = None,
    report_dir: Path | str = "demo-report",
    threshold: Optional[float] = None,
    model_name: Optional[str] = None,
    endpoint_url: Optional[str] = None,
    work_dir: Optional[Path] = None,
    config_dir: Optional[Path] = None,
    out: Optional[TextIO] = None,
    spark: Any = None,
) -> DemoResult:
    """Run the seven stages; return a :class:`DemoResult`. Raises :class:`DemoFailed` when the model fails the
    registration condition (after writing the report), :class:`UnsafeEnvironmentError` before doing anything when
    ``endpoint_url`` (an already running stand-in; default: an embedded moto server) is not a loopback address.
    ``spark``: a SparkSession to use (tests share one); by default a local one is started and stopped in stage 3.
    """
    if endpoint_url is not None:
        check_endpoint(endpoint_url)
    if sample is not None and sample < 1:
        raise ValueError(f"sample must be at least 1, got {sample}")
    config, model = _config_and_model(env, config_dir, model_name)
    result = _new_result(config, model, env, sample, threshold, report_dir)
    progress = Progress(result, out or sys.stdout)
    started = time.perf_counter()
    with contextlib.ExitStack() as cleanup:
        run = stages.Run(config=config, model=model, result=result, progress=progress, cleanup=cleanup,
                         work=_work_dir(cleanup, work_dir), spark=spark)
        _quiet_werkzeug(cleanup)
        progress.run(1, stages.stand_in_aws, run, endpoint_url)
        progress.run(2, stages.upload_raw, run)
        progress.run(3, stages.glue_etl, run)
        progress.run(4, stages.build_model, run)
        if not result.passed:
            progress.run(7, stages.report, run)
            result.exit_code = 1
            result.total_seconds = round(time.perf_counter() - started, 2)
            raise DemoFailed(result.fail_message or "the model did not meet the threshold", result)
        progress.run(5, stages.approve_and_resolve, run)
        progress.run(6, stages.serve_over_http, run)
        progress.run(7, stages.report, run)
        # metrics.json and summary.md were written inside stage 7: write them again with its duration included
        result.total_seconds = round(time.perf_counter() - started, 2)
        write_texts(result, result.report_files)
    result.exit_code = 0 if all(r.ok for r in result.requests) else 1
    return result


def _config_and_model(env: str, config_dir: Optional[Path], model_name: Optional[str]) -> tuple[Any, Any]:
    from platform_config import load_config

    config = load_config(env, config_dir)
    if model_name is None:
        return config, config.models[0]
    models = {m.name: m for m in config.models}
    if model_name not in models:
        raise ValueError(f"model {model_name!r} is not in config/{env}.yaml; choose one of {sorted(models)}")
    return config, models[model_name]


def _new_result(config: Any, model: Any, env: str, sample: Optional[int], threshold: Optional[float],
                report_dir: Path | str) -> DemoResult:
    result = DemoResult(env=env, model=model.name, dataset=config.dataset_of(model).name, sample=sample,
                        region=config.region or DEFAULT_REGION, problem_type=model.problem_type, metric=model.metric,
                        threshold=float(model.threshold if threshold is None else threshold),
                        higher_is_better=model.higher_is_better)
    # The demo's buckets stand in for the lake's (CloudFormation names those); the rest are the platform's names.
    result.buckets = {zone: f"{config.prefix()}-{zone}-demo" for zone in ("raw", "curated", "artifacts")}
    result.model_package_group = config.names.model_resource(model.name)
    result.report_dir = Path(report_dir)
    return result


def _work_dir(cleanup: contextlib.ExitStack, work_dir: Optional[Path]) -> Path:
    work = Path(work_dir) if work_dir else Path(cleanup.enter_context(tempfile.TemporaryDirectory(
        prefix="mlops-demo-")))
    work.mkdir(parents=True, exist_ok=True)
    return work


def _quiet_werkzeug(cleanup: contextlib.ExitStack) -> None:
    """moto's server logs each request through werkzeug: errors only while the demo runs."""
    werkzeug_log = logging.getLogger("werkzeug")
    cleanup.callback(werkzeug_log.setLevel, werkzeug_log.level)
    werkzeug_log.setLevel(logging.ERROR)
