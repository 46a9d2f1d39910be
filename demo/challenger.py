"""Champion vs challenger in the demo (issue 14): after the first package is approved (stage 5), a deliberately worse
challenger is built by the same pipeline steps on the same curated data (so the same test split) and rejected by the
condition, with both figures.

The challenger is the model's spec with a hyperparameter override (:data:`WORSE`: one-level trees, and for a binary
model a single one); :func:`sagemaker_steps.local_runner.run_local_pipeline` runs ResolveChampion against the moto
registry (the process's AWS settings point at it): the latest Approved package of the model's group is the champion,
its model.tar.gz is downloaded and Evaluate scores both on the test split; CheckMetric then needs the threshold and
``challenger_wins`` (better than the champion by ``models[].champion.margin``). Nothing is registered when it loses
(as the pipeline's Fail step); a challenger that won would only be reported (the demo serves the champion).

The figures are kept as ``result.challenger`` (a dict; :mod:`demo.report` lists them in summary.md and
metrics.json).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

#: The override that makes the challenger worse than the configured model, per problem type.
WORSE: dict[str, dict[str, Any]] = {
    "regression": {"max_depth": 1},  # stumps: still within abalone's threshold, clearly worse than depth 5
    "binary_classification": {"max_depth": 1, "num_round": 1},  # one stump: one feature's split
}
STAGE = "5b. Challenger vs champion"


def challenge(run: Any) -> None:
    """Build the worse challenger, compare it with the approved champion, record ``run.result.challenger``."""
    from sagemaker_steps.local_runner import run_local_pipeline

    result, model = run.result, run.model
    if not model.spec.champion:
        run.loop.progress.heading(f"[{STAGE}] [{model.name}] skipped: models[].champion.enabled is false")
        return
    override = WORSE[model.problem_type]
    run.loop.progress.heading(f"[{STAGE}] [{model.name}] a worse challenger ({_text(override)}) against the "
                              "approved champion, same data and split")
    started = time.perf_counter()
    spec = dataclasses.replace(model.spec, threshold=result.threshold,
                               hyperparameters={**dict(model.spec.hyperparameters), **override})
    pipeline = run_local_pipeline(run.work / "pipeline-input", run.work / "challenger", spec,
                                  training_source_dir=model.training_dir,
                                  model_package_group=result.model_package_group)
    block = pipeline.champion or {}
    verdict = "rejected" if not pipeline.passed else "would be registered"
    result.challenger = {
        "hyperparameters": override, "metric": result.metric, "challenger": block.get("challenger"),
        "champion": block.get("champion"), "margin": block.get("margin"),
        "champion_package_arn": block.get("champion_package_arn"), "champion_version": block.get("champion_version"),
        "challenger_wins": block.get("challenger_wins"), "meets_threshold": pipeline.meets_threshold,
        "threshold": result.threshold, "passed": pipeline.passed, "verdict": verdict, "summary": block.get("summary"),
        "fail_message": pipeline.fail_message, "registered": False,
    }
    run.say(f"ResolveChampion: {block.get('champion_package_arn')} (version {block.get('champion_version')}), "
            "its model.tar.gz from the artifacts bucket")
    run.say(f"challenger {result.metric} {_figure(block.get('challenger'))} vs champion "
            f"{_figure(block.get('champion'))}, margin {block.get('margin'):g}: {verdict}")
    run.say(f"CheckMetric: threshold {'met' if pipeline.meets_threshold else 'not met'}, challenger_wins "
            f"{block.get('challenger_wins')} -> {'RegisterModel' if pipeline.passed else 'FailStep'}"
            + (f": {pipeline.fail_message}" if pipeline.fail_message else ""))
    seconds = round(time.perf_counter() - started, 2)
    result.challenger["seconds"] = seconds  # not a stage of its own in the timings (stages 2 to 6 per model)
    run.say(f"({seconds:.1f} s)")


def _figure(value: Any) -> str:
    return "none" if value is None else f"{value:.4f}"


def _text(override: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in override.items())
