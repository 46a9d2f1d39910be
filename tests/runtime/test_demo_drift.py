"""`make demo`'s drift-to-retrain path (demo/drift.py) on a small sample of abalone: the unchanged hour finds no
drift, the shifted hour names the shifted features, the real drift function starts the model's pipeline once and
notifies the alarm topic, the retrain registers a new version, and the next drift meets the cooldown."""

from __future__ import annotations

import io
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("pyspark")
pytest.importorskip("moto.server")

from demo import drift as demo_drift  # noqa: E402
from demo.loop import run_demo  # noqa: E402
from demo.spark import local_spark  # noqa: E402
from platform_config import load_config  # noqa: E402

SAMPLE = 300


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = io.StringIO()
    with local_spark("test_demo_drift") as spark:
        result = run_demo("dev", sample=SAMPLE, model_name="abalone", report_dir=tmp_path_factory.mktemp("report"),
                          spark=spark, out=out)
    result.console = out.getvalue()
    return result


def test_unchanged_traffic_has_no_drift_and_shifted_traffic_names_the_shifted_features(run):
    drift = run.model("abalone").drift
    assert drift["enabled"] is True and drift["stage"] == "prod"
    assert drift["shifted_features"] == ["length", "diameter"] and drift["shift"] == 1.8
    normal, shifted, again = drift["monitoring"]
    assert normal["violations"] == [] and normal["rows"] > 0
    assert shifted["drifted"] == ["length (_c3)", "diameter (_c4)"]
    assert [(v["feature_name"], v["constraint_check_type"]) for v in shifted["violations"]] == [
        ("_c3", "baseline_drift_check"), ("_c4", "baseline_drift_check")]
    assert all(shifted["distances"][f]["distance"] > 0.1 for f in ("_c3", "_c4"))
    assert shifted["output"].startswith(
        "s3://mlops-dev-artifacts-demo/models/abalone/monitoring/data-quality/prod/mlops-dev-abalone-prod/")
    assert again["drifted"] == shifted["drifted"]


def test_the_first_drift_starts_the_pipeline_and_notifies_the_drifted_features(run):
    drift = run.model("abalone").drift
    first = drift["first"]
    assert first["outcome"] == "started" and first["features"] == ["_c3", "_c4"]
    assert first["pipeline_execution_arn"].split(":pipeline/")[1].startswith("mlops-dev-abalone/execution/")
    assert first["metrics"] == ["DriftDetected", "RetrainStarted"]
    note = drift["notification"]
    assert note["subject"] == "Drift on abalone: retraining started (2 feature(s))"
    assert "_c3 (baseline_drift_check)" in note["message"] and "_c4 (baseline_drift_check)" in note["message"]
    assert first["pipeline_execution_arn"] in note["message"]
    retrain = drift["retrain"]
    assert retrain["passed"] is True and retrain["version"] == 2 and retrain["status"] == "PendingManualApproval"
    assert run.model("abalone").packages_registered == 1  # the build's own count is unchanged


def test_drift_within_the_cooldown_starts_nothing(run):
    drift = run.model("abalone").drift
    second = drift["second"]
    assert second["outcome"] == "cooldown" and second["last_execution"] == drift["first"]["pipeline_execution_arn"]
    assert second["metrics"] == ["DriftDetected", "RetrainSkippedCooldown"]
    assert drift["executions"] == 1 and drift["notifications_in_cooldown"] == 0
    console = run.console
    assert "drift: length (_c3), diameter (_c4) (baseline_drift_check) -> retrain started (execution " in console
    assert "-> cooldown 24 h holds until " in console and "no second retrain (1 execution of mlops-dev-abalone" \
        in console
    # no new numbered stage: the drift lines follow stage 6
    assert [line for line in console.splitlines() if line.startswith("[")][-2:] == [
        "[6/7] Serve (the inference Lambda over HTTP; the endpoint's handlers where enabled) [abalone]",
        "[7/7] Report"]


def test_the_report_has_the_drift_figures(run):
    report = Path(run.report_dir)
    metrics = json.loads((report / "metrics.json").read_text())
    drift = metrics["models"][0]["drift"]
    assert drift["first"]["outcome"] == "started" and drift["second"]["outcome"] == "cooldown"
    summary = (report / "summary.md").read_text()
    assert "### Drift-triggered retraining (stage `prod`)" in summary
    assert "length (_c3) " in summary and "- Drift again: **cooldown** until " in summary


def test_a_model_without_a_capturing_endpoint_has_no_drift_path():
    config = load_config("dev")
    model = next(m for m in config.models if m.name == "breast-cancer")
    said: list[str] = []
    run = SimpleNamespace(model=model, config=config, result=SimpleNamespace(drift={}), say=said.append)
    demo_drift.drift_retrain(run)
    assert run.result.drift == {"enabled": False,
                                "reason": "no endpoint with data capture (Model Monitor reads captured requests)"}
    assert said == ["drift retraining: not for this model (no endpoint with data capture (Model Monitor reads "
                    "captured requests))"]
