"""Stage 7: the run's report: ``metrics.json`` (every number, per model), ``summary.md`` (a table of the models, then
one section each), and per model a plot (predicted vs actual, or the ROC curve) and the function's own log lines."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Optional

from demo.result import DemoResult, DemoRun, score


def write_plot(predictions_csv: Path, problem_type: str, result: DemoResult, target: Path) -> Path:
    import numpy as np
    import pandas as pd
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    frame = pd.read_csv(predictions_csv)
    fig = Figure(figsize=(6, 6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    verdict = "passed" if result.passed else "failed"
    metric_text = f"{result.metric}={result.metric_value:.3f}, threshold {result.threshold:g}: {verdict}"
    if problem_type == "regression":
        actual, predicted = frame["actual"].to_numpy(float), frame["predicted"].to_numpy(float)
        ax.scatter(actual, predicted, s=12, alpha=0.5, label=f"test rows (n={len(frame)})")
        low, high = float(min(actual.min(), predicted.min())), float(max(actual.max(), predicted.max()))
        ax.plot([low, high], [low, high], color="black", linewidth=1, label="y = x")
        ax.set_xlabel("actual")
        ax.set_ylabel("predicted")
        rmse = float(np.sqrt(np.mean((predicted - actual) ** 2)))
        ax.set_title(f"{result.model}: predicted vs actual (test split), rmse={rmse:.3f}\n"
                     f"condition: {result.metric} {'>=' if result.higher_is_better else '<='} "
                     f"{result.threshold:g}: {verdict}")
    else:
        actual, score = frame["actual"].to_numpy(int), frame["predicted"].to_numpy(float)
        order = np.argsort(-score, kind="mergesort")
        positives, negatives = max(int(actual.sum()), 1), max(int((1 - actual).sum()), 1)
        tpr = np.concatenate([[0.0], np.cumsum(actual[order]) / positives])
        fpr = np.concatenate([[0.0], np.cumsum(1 - actual[order]) / negatives])
        auc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))
        ax.plot(fpr, tpr, label=f"ROC (auc={auc:.3f})")
        ax.plot([0, 1], [0, 1], color="black", linewidth=1, linestyle="--", label="chance")
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.set_title(f"{result.model}: ROC curve\n{metric_text}")
    ax.legend(loc="best")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(str(target), format="png")
    return target


def write_report(demo: DemoRun, report_dir: Path,
                 sources: dict[str, tuple[Optional[Path], Optional[Path]]]) -> dict[str, Path]:
    """Write the report; ``sources``: model -> (the evaluate step's predictions.csv, the Lambda's log), either may
    be None. Returns every file written (the models' files are also in their ``files``)."""
    report_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for result in demo.models:
        predictions_csv, lambda_log = sources.get(result.model, (None, None))
        result.files = {}
        if predictions_csv is not None and predictions_csv.is_file():
            result.files["plot"] = write_plot(predictions_csv, result.problem_type, result,
                                              report_dir / f"plot-{result.model}.png")
        if lambda_log is not None and lambda_log.is_file():
            result.files["lambda_log"] = Path(shutil.copy2(lambda_log, report_dir / f"lambda-logs-{result.model}.jsonl"))
        written.update({f"{kind} ({result.model})": path for kind, path in result.files.items()})
    demo.report_files = {"metrics": report_dir / "metrics.json", "summary": report_dir / "summary.md"}
    write_texts(demo, demo.report_files)
    return {**written, **demo.report_files}


def model_metrics(result: DemoResult) -> dict:
    """One model's part of metrics.json."""
    return {
        "model": result.model, "dataset": result.dataset, "problem_type": result.problem_type,
        "raw_uri": result.raw_uri,
        "rows": {"in": result.rows_in, "curated": result.rows_curated, "rejected": result.rows_rejected},
        "metric": {"name": result.metric, "value": result.metric_value, "threshold": result.threshold,
                   "higher_is_better": result.higher_is_better, "passed": result.passed},
        "fail_message": result.fail_message,
        "evaluation": result.evaluation,
        "model_build_step_seconds": result.step_seconds,
        "package": {"group": result.model_package_group, "arn": result.package_arn,
                    "version": result.package_version, "status": result.package_status,
                    "git_commit": result.git_commit, "model_data_url": result.model_data_url,
                    "evaluation_uri": result.evaluation_uri, "metadata": result.package_metadata},
        "resolved": result.resolved, "resolve_exit_code": result.resolve_exit_code,
        "serving": result.serving,
        "drift": result.drift,
        "challenger": getattr(result, "challenger", None),  # demo.challenger: both figures, the margin, the verdict
        "requests": [asdict(r) for r in result.requests],
        "batch_matches_evaluation": result.batch_matches_evaluation,
        "endpoint_predictions": result.endpoint_predictions,
        "endpoint_matches_evaluation": result.endpoint_matches_evaluation,
        "stage_seconds": result.stage_seconds,
        "files": {k: v.name for k, v in result.files.items()},
    }


def write_texts(demo: DemoRun, files: dict[str, Path]) -> None:
    """metrics.json and summary.md (the plots and logs are written once by ``write_report``)."""
    metrics = {
        "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "env": demo.env, "sample": demo.sample, "passed": demo.passed,
        "models": [model_metrics(r) for r in demo.models],
        "stage_seconds": demo.stage_seconds,
        "total_seconds": round(demo.all_seconds(), 2),
        "files": {k: v.name for k, v in files.items()},
    }
    files["metrics"].write_text(json.dumps(metrics, indent=2, default=str) + "\n", encoding="utf-8")
    files["summary"].write_text(summary_markdown(demo, files), encoding="utf-8")


def _verdict(result: DemoResult) -> str:
    return "passed" if result.passed else "FAILED"


def _serving_text(result: DemoResult) -> str:
    serving = result.serving
    if not serving:
        return "-"
    parts = (["endpoint"] if serving.get("endpoint") else []) + (
        [f"Lambda ({serving['lambda']})"] if serving.get("lambda") else [])
    return " and ".join(parts) or "batch only"


def summary_markdown(demo: DemoRun, files: dict[str, Path]) -> str:
    lines = [
        f"# Platform loop, run locally ({demo.env}, {len(demo.models)} model(s))",
        "",
        "Everything ran on this machine against a local moto stand-in for AWS; no AWS account was used.",
        "",
        "| model | dataset | problem | metric | threshold | result | served from (config) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in demo.models:
        value = "-" if r.metric_value is None else f"{r.metric_value:.4f}"
        lines.append(f"| `{r.model}` | `{r.dataset}` | {r.problem_type} | {r.metric} = {value} | "
                     f"{'>=' if r.higher_is_better else '<='} {r.threshold:g} | **{_verdict(r)}** | "
                     f"{_serving_text(r)} |")
    for r in demo.models:
        lines += ["", f"## Model `{r.model}` (dataset `{r.dataset}`)", ""] + _model_section(r)
    lines += ["", "## Timings", "", "| stage | " + " | ".join(r.model for r in demo.models) + " |",
              "|---|" + "---|" * len(demo.models)]
    for name, seconds in demo.stage_seconds.items():
        if name.startswith("7."):
            continue
        lines.append(f"| {name} | {seconds:.1f} (shared) |" + " |" * (len(demo.models) - 1))
    stage_names = [name for r in demo.models for name in r.stage_seconds]
    for name in sorted(set(stage_names), key=stage_names.index):
        lines.append(f"| {name} | " + " | ".join(
            f"{r.stage_seconds[name]:.1f}" if name in r.stage_seconds else "-" for r in demo.models) + " |")
    for name, seconds in demo.stage_seconds.items():
        if name.startswith("7."):
            lines.append(f"| {name} | {seconds:.1f} (shared) |" + " |" * (len(demo.models) - 1))
    lines.append(f"| **total** | **{demo.all_seconds():.1f}** |" + " |" * (len(demo.models) - 1))
    lines += ["", "## Files", f"- [metrics.json]({files['metrics'].name}): every number above, per model"]
    for r in demo.models:
        if "plot" in r.files:
            lines.append(f"- [{r.files['plot'].name}]({r.files['plot'].name})")
        if "lambda_log" in r.files:
            lines.append(f"- [{r.files['lambda_log'].name}]({r.files['lambda_log'].name}): `{r.model}`'s function's "
                         "own log lines (Powertools JSON logs and EMF metrics)")
    return "\n".join(lines) + "\n"


def _model_section(result: DemoResult) -> list[str]:
    """One model's data, build, registry and serving lines."""
    lines = [
        f"- Raw: `{result.raw_uri}` ({result.rows_in} rows" + (f", sample of {result.sample}" if result.sample
                                                              else "") + ")",
        f"- Glue ETL transform: {result.rows_in} rows in = {result.rows_curated} curated + "
        f"{result.rows_rejected} rejected (quarantine)",
    ]
    if result.metric_value is not None:
        lines.append(f"- {result.metric} = {result.metric_value:.4f}; the condition needs {result.metric} "
                     f"{'>=' if result.higher_is_better else '<='} {result.threshold:g}: **{_verdict(result)}**")
    if result.fail_message:
        lines.append(f"- Stopped: {result.fail_message}")
    if "plot" in result.files:
        plot = result.files["plot"].name
        kind = "predicted vs actual" if result.problem_type == "regression" else "ROC curve"
        lines += ["", f"![{result.model}: {kind}]({plot})", ""]
    if result.package_arn:
        lines += [
            f"- Package: `{result.package_arn}` (version {result.package_version}, group "
            f"`{result.model_package_group}`), status **{result.package_status}**, commit `{result.git_commit}`",
            f"- Deploy pipeline's resolver (`cicd_scripts/resolve_approved_package.py`): exit "
            f"{result.resolve_exit_code}, resolved `{result.resolved.get('model_package_arn')}`",
        ]
    else:
        lines.append("- Nothing registered.")
    return lines + _challenger_lines(result) + _serving_lines(result) + _drift_lines(result)


def _challenger_lines(result: DemoResult) -> list[str]:
    """The worse challenger against the approved champion (:mod:`demo.challenger`), both figures."""
    challenger = getattr(result, "challenger", None)
    if not challenger:
        return []

    def figure(value) -> str:
        return "none" if value is None else f"{value:.4f}"

    override = ", ".join(f"{k}={v}" for k, v in challenger["hyperparameters"].items())
    return [
        f"- Champion vs challenger (same data and test split; challenger with {override}): challenger "
        f"{challenger['metric']} {figure(challenger['challenger'])} vs champion {figure(challenger['champion'])} "
        f"(version {challenger['champion_version']}), margin {challenger['margin']:g}: **{challenger['verdict']}** "
        f"(threshold {'met' if challenger['meets_threshold'] else 'not met'}, challenger_wins "
        f"{challenger['challenger_wins']}; nothing registered)",
    ]


def _serving_lines(result: DemoResult) -> list[str]:
    if not result.serving:
        return []
    lines = [f"- Served from (config): {_serving_text(result)}; the demo called: "
             f"{', '.join(result.serving.get('demo') or []) or 'nothing'}"]
    if not result.serving.get("endpoint"):
        lines.append("- No endpoint: `endpoint.enabled: false` in the config.")
    elif result.endpoint_predictions is not None:
        lines.append(f"- Endpoint handlers (model.tar.gz `code/serve.py`) on the batch: "
                     f"{', '.join(f'{p:.3f}' for p in result.endpoint_predictions)}; equal to the evaluation step's "
                     f"predictions.csv: {result.endpoint_matches_evaluation}")
    if result.requests:
        lines += ["", "| request (Lambda behind a Function URL) | status | expected | rows | latency (ms) | detail |",
                  "|---|---|---|---|---|---|"]
        for r in result.requests:
            detail = r.error or ", ".join(f"{score(p):.3f}" for p in (r.predictions or [])[:5])
            lines.append(f"| {r.name} | {r.status} | {r.expected} | {r.count if r.count is not None else '-'} | "
                         f"{r.latency_ms:.1f} | {detail} |")
        if result.batch_matches_evaluation is not None:
            lines += ["", f"Batch predictions equal the evaluation step's predictions.csv: "
                          f"{result.batch_matches_evaluation}"]
    return lines


def _drift_lines(result: DemoResult) -> list[str]:
    """Drift on the served endpoint -> a retrain, then the cooldown (:mod:`demo.drift`)."""
    drift = result.drift
    if not drift:
        return []
    if not drift.get("enabled"):
        return ["", f"Drift-triggered retraining: not for this model ({drift.get('reason')})."]
    lines = ["", f"### Drift-triggered retraining (stage `{drift.get('stage')}`)", "",
             f"Requests from the test split; the drifted hours multiply {', '.join(drift.get('shifted_features', []))} "
             f"by {drift.get('shift')}. Check: `sagemaker_steps/drift_check.py` (baseline_drift_check); function: "
             "`lambda_src/drift_retrain/drift_handler.py`.", "",
             "| hour | traffic | rows | monitoring execution | drifted: distance > threshold |",
             "|---|---|---|---|---|"]
    for hour in drift.get("monitoring", []):
        drifted = ", ".join(f"{label} {hour['distances'][v['feature_name']]['distance']:.3f}"
                            for label, v in zip(hour["drifted"], hour["violations"])) or "none"
        lines.append(f"| {hour['hour']} | {hour['what']} | {hour['rows']} | `{hour['job']}` | {drifted} |")
    first, second, retrain = drift.get("first", {}), drift.get("second", {}), drift.get("retrain", {})
    if first:
        lines += ["", f"- First drift: **{first.get('outcome')}**, execution `{first.get('pipeline_execution_arn')}` "
                      f"(features {', '.join(first.get('features', []))}); alarm topic: "
                      f"\"{drift.get('notification', {}).get('subject', '')}\""]
    if retrain:
        lines.append(f"- Retrain: {result.metric} = {retrain.get('metric_value'):.4f}, package "
                     f"`{retrain.get('package_arn')}` {retrain.get('status')}")
    if second:
        lines.append(f"- Drift again: **{second.get('outcome')}** until {second.get('cooldown_until')}; pipeline "
                     f"executions: {drift.get('executions')}, messages during the cooldown: "
                     f"{drift.get('notifications_in_cooldown')}")
    return lines
