"""Run the model-build pipeline locally: the same scripts, order and wiring as the SageMaker Pipeline.

Each script step of ``pipeline_spec`` runs as ``sys.executable <script> <args>`` in a subprocess. Outputs land in
``<work_dir>/<Step>/<output>/`` and feed the inputs named by the spec; training channels arrive through the same
``SM_CHANNEL_*``/``SM_MODEL_DIR`` variables SageMaker sets; the model dir is packed into ``model.tar.gz`` as
SageMaker does. The registration condition reads the metric from evaluation.json through ``metric_json_path`` and
applies ``metric_passes`` and, with the champion comparison on (``ModelSpec.champion``), ``challenger_wins``, like the
CheckMetric step. ResolveChampion runs ``champion.py`` against the registry the process's AWS settings point at (the
demo's moto stand-in) when a package group is given, else it records that there is no champion.

CLI: ``python -m sagemaker_steps.local_runner --input data/abalone.csv --target rings --threshold 3.0``
(a CSV whose headers are not snake_case, such as the raw abalone file, is curated first).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Optional

from sagemaker_steps import pipeline_spec as spec
from sagemaker_steps.model_spec import ModelSpec

LOG = logging.getLogger("sagemaker_steps.local_runner")
EVALUATION_FILE = spec.EVALUATION_REPORT.path


@dataclass
class LocalRunResult:
    model_artifact: Path  # model.tar.gz, as SageMaker packs /opt/ml/model
    model_dir: Path  # model.tar.gz extracted
    evaluation: dict
    metric_value: float
    passed: bool
    fail_message: Optional[str]
    outputs: dict[str, Path] = field(default_factory=dict)  # output name -> dir ("input" too)
    durations: dict[str, float] = field(default_factory=dict)  # step name -> seconds
    champion: Optional[dict] = None  # evaluation.json's champion_challenger block (None: the comparison is off)
    meets_threshold: Optional[bool] = None  # the threshold half of the condition


class StepFailedError(RuntimeError):
    """A step's script exited non-zero; the message ends with the tail of its stderr."""

    def __init__(self, step: str, returncode: int, stderr: str, log_path: Path):
        tail = "\n".join(stderr.strip().splitlines()[-15:])
        super().__init__(f"step {step} failed with exit code {returncode} (log: {log_path}):\n{tail}")
        self.step = step
        self.returncode = returncode
        self.stderr = stderr
        self.log_path = log_path


# ---------------------------------------------------------------------------------------------------------------
# Local stand-in for the Glue curation (column names only; the real transform is glue_jobs/etl_transform.py)
# ---------------------------------------------------------------------------------------------------------------
def snake_case(name: str) -> str:
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", str(name).strip())
    return re.sub(r"[^0-9a-zA-Z]+", "_", text).strip("_").lower()


def curate_csv_for_local(raw_csv: Path, out_dir: Path, ingest_date: Optional[str] = None) -> Path:
    """Write ``raw_csv`` as the curated layout: Parquet under ``ingest_date=YYYY-MM-DD/``, snake_case columns."""
    import pandas as pd

    frame = pd.read_csv(raw_csv)
    frame.columns = [snake_case(c) for c in frame.columns]
    partition = Path(out_dir) / f"ingest_date={ingest_date or date.today().isoformat()}"
    partition.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(partition / "part-00000.parquet", index=False)
    return Path(out_dir)


def _needs_curation(csv_path: Path) -> bool:
    with open(csv_path, newline="") as handle:
        header = handle.readline().strip().split(",")
    return any(snake_case(c) != c.strip() for c in header)


# ---------------------------------------------------------------------------------------------------------------
# Runner
# ---------------------------------------------------------------------------------------------------------------
def pack_model_dir(model_dir: Path, tarball: Path) -> Path:
    """tar.gz the *contents* of model_dir at the archive root, like SageMaker does with /opt/ml/model."""
    tarball.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tarball, "w:gz") as archive:
        for path in sorted(model_dir.rglob("*")):
            archive.add(path, arcname=str(path.relative_to(model_dir)), recursive=False)
    return tarball


def stage_training_source(members: dict[str, Path], source_dir: Path) -> Path:
    """Copy the training source (archive member name -> file) to ``source_dir`` as SageMaker extracts
    sourcedir.tar.gz to /opt/ml/code; return the entry point there (train.py runs next to its serve.py)."""
    for name, path in members.items():
        target = source_dir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    return source_dir / spec.TRAIN_SCRIPT


def _run_script(step: spec.StepSpec, argv: list[str], env: dict[str, str], cwd: Path, log_dir: Path,
                script: Optional[Path] = None) -> None:
    command = [sys.executable, str(script or step.script_path), *argv]
    log_path = log_dir / f"{step.name}.log"
    completed = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    log_path.write_text(f"$ {' '.join(command)}\n--- stdout ---\n{completed.stdout}\n--- stderr ---\n"
                        f"{completed.stderr}")
    for line in completed.stdout.strip().splitlines():
        LOG.debug("[%s] %s", step.name, line)
    if completed.returncode != 0:
        raise StepFailedError(step.name, completed.returncode, completed.stderr, log_path)


def run_local_pipeline(input_path: Path, work_dir: Path, model: ModelSpec, *, seed: int = 42,
                       training_source_dir: Optional[Path] = None,
                       model_package_group: Optional[str] = None) -> LocalRunResult:
    """Run [ResolveChampion] -> Preprocess -> Train -> Evaluate -> CheckMetric locally on curated data, for the model
    ``model``.

    ``input_path``: a dir of curated Parquet (partitioned by ingest_date) and/or CSV, or one CSV file with
    snake_case columns. ``model``: the same spec the pipeline is built from (``ModelConfig.spec``; validated when
    created). ``training_source_dir``: the team's training code (``models[].training``: train.py and serve.py);
    default the shipped ones. The Train step runs train.py from a copy of the source dir (``Train/sourcedir/``), as
    SageMaker runs it from /opt/ml/code. ``model_package_group``: where ResolveChampion looks for the champion (the
    latest Approved package; boto3 with the process's AWS settings); None: no registry, so no champion. Raises
    StepFailedError when a script fails, ValueError for a source dir without train.py or serve.py.
    """
    if not isinstance(model, ModelSpec):
        raise TypeError(f"run_local_pipeline model must be a sagemaker_steps.model_spec.ModelSpec, got {model!r}")
    input_path = Path(input_path)
    work_dir = Path(work_dir)
    if not input_path.exists():
        raise FileNotFoundError(f"input {input_path} does not exist")
    steps = {s.name: s for s in spec.pipeline_steps(model.framework, model.champion)}
    training_source = spec.training_source(model.framework, training_source_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    log_dir = work_dir / "logs"
    log_dir.mkdir(exist_ok=True)

    outputs: dict[str, Path] = {}  # output name -> local dir
    sources: dict[str, Path] = {}  # "<Step>.<output>" or "param:<Name>" -> local dir
    if input_path.is_file():
        input_dir = work_dir / "input"
        shutil.rmtree(input_dir, ignore_errors=True)
        input_dir.mkdir()
        shutil.copy2(input_path, input_dir / input_path.name)
    else:
        input_dir = input_path
    sources["param:InputDataUrl"] = input_dir
    outputs["input"] = input_dir

    local_hyperparameters = dict(model.hyperparameters)
    local_hyperparameters.setdefault("nthread", 1)  # a laptop/CI run shares its cores
    arguments = {
        spec.PREPROCESS: spec.preprocess_arguments(model.target, model.problem_type, model.positive_threshold,
                                                   positive_label=model.positive_label,
                                                   exclude_columns=model.exclude_columns,
                                                   seed=seed, input_data_url=input_path.resolve().as_uri()),
        spec.TRAIN: spec.hyperparameters_to_cli(
            spec.training_hyperparameters(model.framework, local_hyperparameters, seed=seed)),
        spec.EVALUATE: spec.evaluate_arguments(seed=seed, model=model),
        spec.RESOLVE_CHAMPION: spec.champion_arguments(model_package_group),
    }

    durations: dict[str, float] = {}
    model_artifact: Optional[Path] = None
    for name in [n for n in spec.SCRIPT_STEPS if n in steps]:
        step = steps[name]
        step_dir = work_dir / step.name
        shutil.rmtree(step_dir, ignore_errors=True)  # no stale files from an earlier run
        step_dir.mkdir(parents=True)
        env = dict(os.environ)
        argv = list(arguments[name])
        for channel in step.inputs:
            local = sources[channel.source]
            if step.step_type == "Training":
                env[channel.env] = str(local)  # as SageMaker sets SM_CHANNEL_<NAME>
            elif channel.flag in argv:  # the job arguments name the container path: point it at the local dir
                argv[argv.index(channel.flag) + 1] = str(local)
            else:
                argv += [channel.flag, str(local)]
        step_outputs: dict[str, Path] = {}
        for channel in step.outputs:
            local = step_dir / channel.name
            local.mkdir()
            step_outputs[channel.name] = local
            if step.step_type == "Training":
                env[channel.env] = str(local)
            else:
                argv += [channel.flag, str(local)]

        LOG.info("[%s] %s (%s) starting", step.name, step.script, step.container)
        started = time.perf_counter()
        script = None
        if step.step_type == "Training":
            script = stage_training_source(training_source, step_dir / "sourcedir")
        _run_script(step, argv, env, step_dir, log_dir, script)

        if step.step_type == "Training":
            # SageMaker uploads /opt/ml/model as <output path>/model.tar.gz; downstream steps get that object.
            for channel in step.outputs:
                if channel.artifact:
                    packed_dir = step_dir / f"{channel.name}-artifact"
                    packed_dir.mkdir()
                    model_artifact = pack_model_dir(step_outputs[channel.name], packed_dir / channel.artifact)
                    step_outputs[channel.name] = packed_dir
        durations[step.name] = time.perf_counter() - started
        LOG.info("[%s] done in %.1f s", step.name, durations[step.name])
        for output_name, local in step_outputs.items():
            sources[f"{step.name}.{output_name}"] = local
            if output_name in outputs:
                raise RuntimeError(f"output name {output_name!r} is not unique across steps")
            outputs[output_name] = local

    assert model_artifact is not None
    model_dir = work_dir / "model"
    shutil.rmtree(model_dir, ignore_errors=True)
    model_dir.mkdir()
    with tarfile.open(model_artifact, "r:gz") as archive:
        if hasattr(tarfile, "data_filter"):
            archive.extractall(model_dir, filter="data")
        else:
            archive.extractall(model_dir)

    # CheckMetric: the same JSON path the condition step's JsonGet reads from the EvaluationReport property file.
    evaluate = steps[spec.EVALUATE]
    report_file = evaluate.property_files[0]
    evaluation = json.loads((sources[f"{evaluate.name}.{report_file.output_name}"] / report_file.path).read_text())
    metric_value = float(spec.read_json_path(evaluation, model.metric_json_path))
    meets = spec.metric_passes(metric_value, model.threshold, model.higher_is_better)
    champion = evaluation.get(spec.CHAMPION_BLOCK) if model.champion else None
    wins = spec.challenger_wins(evaluation) if model.champion else True
    passed = meets and wins
    fail_message = None
    if not meets:
        fail_message = spec.format_fail_message(model.name, model.metric, metric_value, model.threshold)
        if champion and champion.get("champion") is not None:  # name the champion's figure too
            fail_message = fail_message.replace("; not registered.", f" ({champion['summary']}); not registered.")
    elif not wins:
        fail_message = (f"Model {model.name} {model.metric}={metric_value} meets the threshold {model.threshold} but "
                        f"does not beat the champion ({champion['summary']}); not registered.")
    LOG.info("[%s] %s = %.4f (%s %s)%s: %s", spec.CHECK_METRIC, model.metric_json_path, metric_value,
             "needs >=" if model.higher_is_better else "needs <=", model.threshold,
             f"; {champion['summary']}" if champion else "",
             f"-> {spec.REGISTER}" if passed else f"-> {spec.FAIL}: {fail_message}")
    return LocalRunResult(model_artifact=model_artifact, model_dir=model_dir, evaluation=evaluation,
                          metric_value=metric_value, passed=passed, fail_message=fail_message, outputs=outputs,
                          durations=durations, champion=champion, meets_threshold=meets)


# ---------------------------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------------------------
def _hyperparameter(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected name=value, got {text!r}")
    key, value = text.split("=", 1)
    return key.strip(), value.strip()


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, type=Path,
                        help="curated dir (Parquet/CSV) or a CSV file; a CSV with non-snake_case headers is "
                             "curated first")
    parser.add_argument("--target", "--target-column", dest="target", required=True)
    parser.add_argument("--problem-type", default="regression", choices=spec.PROBLEM_TYPES)
    parser.add_argument("--framework", default="xgboost", choices=spec.FRAMEWORKS)
    parser.add_argument("--metric", default=None, help="default: rmse (regression) / auc (binary)")
    parser.add_argument("--threshold", type=float, required=True, help="the registration threshold")
    parser.add_argument("--positive-threshold", type=float, default=None)
    parser.add_argument("--positive-label", default=None, help="binary_classification on a string target")
    parser.add_argument("--exclude-columns", type=lambda t: tuple(c for c in t.split(",") if c), default=(),
                        help="comma-separated columns that are not features")
    parser.add_argument("--hp", action="append", type=_hyperparameter, default=[], metavar="NAME=VALUE",
                        help="hyperparameter, repeatable (e.g. --hp max_depth=5 --hp num_round=100)")
    parser.add_argument("--training-dir", type=Path, default=None,
                        help="your training code: a directory holding train.py and serve.py (models[].training); "
                             "default the shipped sagemaker_steps/train.py and serve.py")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--model-package-group", default=None,
                        help="compare with this group's latest Approved package (boto3's AWS settings); default: "
                             "no registry, no champion")
    parser.add_argument("--champion-margin", type=float, default=0.0,
                        help="the challenger must beat the champion by at least this much (the metric's units)")
    parser.add_argument("--model-name", default="model")
    parser.add_argument("--work-dir", type=Path, default=Path("build/local-pipeline"))
    parser.add_argument("-v", "--verbose", action="store_true", help="also print each script's stdout")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    metric = args.metric or ("rmse" if args.problem_type == "regression" else "auc")
    try:
        model = ModelSpec(name=args.model_name, target=args.target, metric=metric, threshold=args.threshold,
                          problem_type=args.problem_type, framework=args.framework,
                          positive_threshold=args.positive_threshold, positive_label=args.positive_label,
                          exclude_columns=args.exclude_columns, hyperparameters=dict(args.hp),
                          champion_margin=args.champion_margin)
    except ValueError as exc:
        parser.error(str(exc))

    input_path = args.input
    if input_path.is_file() and input_path.suffix.lower() == ".csv" and _needs_curation(input_path):
        input_path = curate_csv_for_local(input_path, args.work_dir / "curated")
        LOG.info("Curated %s -> %s (snake_case columns, Parquet by ingest_date)", args.input, input_path)
    try:
        result = run_local_pipeline(input_path, args.work_dir, model, seed=args.seed,
                                    training_source_dir=args.training_dir,
                                    model_package_group=args.model_package_group)
    except (StepFailedError, ValueError) as exc:
        LOG.error("%s", exc)
        return 2
    metrics = result.evaluation[f"{args.problem_type}_metrics"]
    LOG.info("Metrics: %s", ", ".join(f"{k}={v['value']:.4f} (sd {v['standard_deviation']:.4f})"
                                       for k, v in metrics.items()))
    LOG.info("Model artifact: %s", result.model_artifact)
    if not result.passed:
        LOG.info("%s", result.fail_message)
        return 1
    LOG.info("%s %s=%.4f meets the threshold %s: would be registered", args.model_name, metric,
             result.metric_value, args.threshold)
    return 0


if __name__ == "__main__":
    sys.exit(main())
