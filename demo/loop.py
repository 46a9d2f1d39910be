"""The platform loop on one machine, for every model of the config (or one): :func:`run_demo`.

Every stage runs the project's real code; only AWS is stood in for, by an embedded moto server on 127.0.0.1
(:mod:`demo.stages` has one function per stage, :mod:`demo.serving` stage 6):

1. stand-in AWS: moto server, fake credentials, the lake buckets and each model's package group, named as the
   config names them (buckets are CloudFormation-generated in AWS, so here they are ``<project>-<env>-<zone>-demo``);

then, per model, on its own dataset (``config.dataset_of(model)``):

2. raw upload: ``data/<dataset>.csv`` (or a sample of its rows; a binary target keeps both classes) to
   ``s3://<raw>/<dataset>/<dataset>.csv``;
3. Glue ETL: ``glue_jobs.etl_job.process`` (the job's own policy around ``etl_transform``) with the dataset's schema
   document (the job's ``--dataset_schema``) on local PySpark (one session for the run); curated Parquet and
   quarantine uploaded to the curated zone;
4. model build: ``sagemaker_steps.local_runner.run_local_pipeline`` with the model's spec (same scripts, order and
   condition as the SageMaker pipeline) on the dataset's curated objects; artifacts uploaded; a model package
   registered if the condition passes, else the Fail step's message (the model's loop stops there);
5. approval and resolution: the package is approved as a reviewer would, then the deploy pipeline's
   ``cicd_scripts.resolve_approved_package`` resolves it;
6. serving, as the config serves the model: the inference Lambda behind a local Function URL, and the endpoint's
   handlers where ``endpoint.enabled``;

and once:

7. report: ``metrics.json``, ``summary.md`` and a plot per model.

Everything started here (moto server, HTTP servers, Spark session and its JVM) is stopped in ``finally`` blocks, and
the process environment is restored afterwards. :class:`DemoFailed` after the report when a model failed.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional, TextIO

from demo import challenger, drift, serving, stages
from demo.aws import DEFAULT_REGION, UnsafeEnvironmentError, check_endpoint
from demo.report import write_texts
from demo.result import DemoFailed, DemoResult, DemoRun, Progress

__all__ = ["DemoFailed", "DemoResult", "DemoRun", "UnsafeEnvironmentError", "run_demo"]


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
) -> DemoRun:
    """Run the loop for every model of the config (``model_name``: that one only); return a :class:`DemoRun`.

    Raises :class:`DemoFailed` when a model failed the registration condition or the ETL gate (after the other
    models' loops and the report), :class:`UnsafeEnvironmentError` before doing anything when ``endpoint_url`` (an
    already running stand-in; default: an embedded moto server) is not a loopback address. ``threshold`` overrides
    one model's threshold, so it needs ``model_name`` when the config has several models. ``spark``: a SparkSession
    to use (tests share one); by default a local one is started at the first ETL and stopped at the end.
    """
    if endpoint_url is not None:
        check_endpoint(endpoint_url)
    if sample is not None and sample < 1:
        raise ValueError(f"sample must be at least 1, got {sample}")
    config, models = _config_and_models(env, config_dir, model_name)
    if threshold is not None and len(models) > 1:
        raise ValueError(f"a threshold override is for one model: choose it with --model (one of "
                         f"{[m.name for m in models]})")
    demo = _new_run(config, models, env, sample, threshold, report_dir)
    progress = Progress(out or sys.stdout)
    started = time.perf_counter()
    with contextlib.ExitStack() as cleanup:
        loop = stages.Loop(config=config, result=demo, progress=progress, cleanup=cleanup,
                           work=_work_dir(cleanup, work_dir), spark=spark)
        _quiet_werkzeug(cleanup)
        progress.run(1, demo.stage_seconds, stages.stand_in_aws, loop, endpoint_url, models)
        for model, result in zip(models, demo.models):
            _run_model(loop, model, result)
        progress.run(7, demo.stage_seconds, stages.report, loop)
        # metrics.json and summary.md were written inside stage 7: write them again with its duration included
        demo.total_seconds = round(time.perf_counter() - started, 2)
        write_texts(demo, demo.report_files)
    demo.exit_code = 0 if demo.passed and all(r.ok for m in demo.models for r in m.requests) else 1
    if not demo.passed:
        raise DemoFailed("; ".join(r.fail_message or f"model {r.model} did not meet the threshold"
                                   for r in demo.failed()), demo)
    return demo


def _run_model(loop: stages.Loop, model: Any, result: DemoResult) -> None:
    """Stages 2 to 6 for one model; what it started (its serving environment, its server) stops before the next."""
    serves = [kind for kind, on in (("endpoint", model.endpoint.enabled), ("Lambda", model.lambda_.enabled)) if on]
    loop.progress.heading(f"== model {model.name}: dataset {result.dataset}, {model.problem_type} on "
                          f"{model.target_column}, {result.metric} {'>=' if result.higher_is_better else '<='} "
                          f"{result.threshold:g}, served from {' and '.join(serves) or 'batch only'}")
    with contextlib.ExitStack() as cleanup:
        run = stages.Run(loop=loop, model=model, result=result, cleanup=cleanup, work=loop.work / model.name)
        loop.runs.append(run)
        seconds = result.stage_seconds
        try:
            loop.progress.run(2, seconds, stages.upload_raw, run, label=model.name)
            loop.progress.run(3, seconds, stages.glue_etl, run, label=model.name)
        except DemoFailed as exc:  # the ETL gate: this model's loop stops here
            result.passed, result.fail_message = False, str(exc)
            return
        loop.progress.run(4, seconds, stages.build_model, run, label=model.name)
        if result.passed:
            loop.progress.run(5, seconds, stages.approve_and_resolve, run, label=model.name)
            challenger.challenge(run)  # a worse challenger on the same split, rejected against the champion
            loop.progress.run(6, seconds, serving.serve, run, label=model.name)
            drift.drift_retrain(run)  # drift on the served endpoint starts a retrain once; the cooldown holds


def _config_and_models(env: str, config_dir: Optional[Path], model_name: Optional[str]) -> tuple[Any, list[Any]]:
    from platform_config import load_config

    config = load_config(env, config_dir)
    if model_name is None:
        return config, list(config.models)
    models = {m.name: m for m in config.models}
    if model_name not in models:
        raise ValueError(f"model {model_name!r} is not in config/{env}.yaml; choose one of {sorted(models)}")
    return config, [models[model_name]]


def _new_run(config: Any, models: list[Any], env: str, sample: Optional[int], threshold: Optional[float],
             report_dir: Path | str) -> DemoRun:
    region = config.region or DEFAULT_REGION
    demo = DemoRun(env=env, sample=sample, region=region, report_dir=Path(report_dir))
    # The demo's buckets stand in for the lake's (CloudFormation names those); the rest are the platform's names.
    demo.buckets = {zone: f"{config.prefix()}-{zone}-demo" for zone in ("raw", "curated", "artifacts")}
    for model in models:
        demo.models.append(DemoResult(
            env=env, model=model.name, dataset=config.dataset_of(model).name, sample=sample, region=region,
            buckets=demo.buckets, model_package_group=config.names.model_resource(model.name),
            problem_type=model.problem_type, metric=model.metric,
            threshold=float(model.threshold if threshold is None else threshold),
            higher_is_better=model.higher_is_better))
    return demo


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
