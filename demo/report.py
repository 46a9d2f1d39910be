"""Stage 7: the run's report: ``metrics.json`` (every number), a plot (predicted vs actual, or the ROC curve) and
``summary.md``, plus the function's own log lines."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Optional

from demo.result import DemoResult

PLOT_FILE = "plot.png"


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


def write_report(result: DemoResult, report_dir: Path, predictions_csv: Optional[Path], lambda_log: Optional[Path]
                 ) -> dict[str, Path]:
    report_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    if predictions_csv is not None and predictions_csv.is_file():
        files["plot"] = write_plot(predictions_csv, result.problem_type, result, report_dir / PLOT_FILE)
    if lambda_log is not None and lambda_log.is_file():
        files["lambda_log"] = Path(shutil.copy2(lambda_log, report_dir / "lambda-logs.jsonl"))
    files["metrics"] = report_dir / "metrics.json"
    files["summary"] = report_dir / "summary.md"
    result.report_files = dict(files)
    write_texts(result, files)
    return files


def write_texts(result: DemoResult, files: dict[str, Path]) -> None:
    """metrics.json and summary.md (the plot and the log are written once by ``write_report``)."""
    metrics = {
        "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "env": result.env, "model": result.model, "dataset": result.dataset, "sample": result.sample,
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
        "requests": [asdict(r) for r in result.requests],
        "batch_matches_evaluation": result.batch_matches_evaluation,
        "stage_seconds": result.stage_seconds,
        "total_seconds": round(sum(result.stage_seconds.values()), 2),
        "files": {k: v.name for k, v in files.items()},
    }
    files["metrics"].write_text(json.dumps(metrics, indent=2, default=str) + "\n", encoding="utf-8")
    files["summary"].write_text(summary_markdown(result, files), encoding="utf-8")


def summary_markdown(result: DemoResult, files: dict[str, Path]) -> str:
    comparison = ">=" if result.higher_is_better else "<="
    verdict = "passed" if result.passed else "FAILED"
    lines = [
        f"# Platform loop, run locally ({result.env}, model `{result.model}`)",
        "",
        "Everything ran on this machine against a local moto stand-in for AWS; no AWS account was used.",
        "",
        "## Data",
        f"- Raw: `{result.raw_uri}` ({result.rows_in} rows"
        + (f", sample of the first {result.sample}" if result.sample else "") + ")",
        f"- Glue ETL transform: {result.rows_in} rows in = {result.rows_curated} curated + "
        f"{result.rows_rejected} rejected (quarantine)",
        "",
        "## Model",
    ]
    if result.metric_value is not None:
        lines.append(f"- {result.metric} = {result.metric_value:.4f}; the condition needs {result.metric} "
                     f"{comparison} {result.threshold:g}: **{verdict}**")
    if result.fail_message:
        lines.append(f"- Fail step: {result.fail_message}")
    if "plot" in files:
        kind = "predicted vs actual" if result.problem_type == "regression" else "ROC curve"
        lines += ["", f"![{kind}]({files['plot'].name})", "", f"Plot: [{files['plot'].name}]({files['plot'].name})"]
    lines += ["", "## Registry and deployment"]
    if result.package_arn:
        lines += [
            f"- Package: `{result.package_arn}` (version {result.package_version}, group "
            f"`{result.model_package_group}`), status **{result.package_status}**, commit `{result.git_commit}`",
            f"- Deploy pipeline's resolver (`cicd_scripts/resolve_approved_package.py`): exit "
            f"{result.resolve_exit_code}, resolved `{result.resolved.get('model_package_arn')}`",
        ]
    else:
        lines.append("- Nothing registered.")
    if result.requests:
        lines += ["", "## Inference (Lambda handler behind a local Function URL)", "",
                  "| request | status | expected | rows | latency (ms) | detail |", "|---|---|---|---|---|---|"]
        for r in result.requests:
            detail = r.error or (", ".join(f"{p:.3f}" if isinstance(p, float) else str(p)
                                           for p in (r.predictions or [])[:5]))
            lines.append(f"| {r.name} | {r.status} | {r.expected} | {r.count if r.count is not None else '-'} | "
                         f"{r.latency_ms:.1f} | {detail} |")
        if result.batch_matches_evaluation is not None:
            lines += ["", f"Batch predictions equal the evaluation step's predictions.csv: "
                          f"{result.batch_matches_evaluation}"]
    lines += ["", "## Timings", "", "| stage | seconds |", "|---|---|"]
    for name, seconds in result.stage_seconds.items():
        lines.append(f"| {name} | {seconds:.1f} |")
    lines.append(f"| **total** | **{sum(result.stage_seconds.values()):.1f}** |")
    lines += ["", "## Files", f"- [metrics.json]({files['metrics'].name}): every number above"]
    if "plot" in files:
        lines.append(f"- [{files['plot'].name}]({files['plot'].name})")
    if "lambda_log" in files:
        lines.append(f"- [{files['lambda_log'].name}]({files['lambda_log'].name}): the function's own log lines "
                     "(Powertools JSON logs and EMF metrics)")
    return "\n".join(lines) + "\n"
