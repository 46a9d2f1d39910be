"""`make rehearse`'s loop on the dev assembly, and the deploy defects it must catch when one is reintroduced."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rehearsal.assembly import Assembly, RehearsalError
from rehearsal.cloud import Cloud
from rehearsal.context import Rehearsal
from rehearsal.glue import read_jobs
from rehearsal.loop import check_manual_approvals, model_trigger, pipeline_trigger_parameters, rehearse

ROWS = 600  # enough for the dev thresholds (abalone rmse <= 3.0; breast_cancer, 569 rows, all of it), a fast Glue run


def _edit(outdir: Path, stack: str, change) -> None:
    path = outdir / f"{stack}.template.json"
    template = json.loads(path.read_text())
    change(template)
    path.write_text(json.dumps(template))


def test_the_loop_passes_on_dev(dev_assembly_dir, tmp_path):
    report = rehearse(dev_assembly_dir, report_dir=tmp_path / "report", workdir=tmp_path / "work",
                      sample_rows=ROWS, log=lambda m: None)
    assert report.ok, report.error
    names = [s["stage"] for s in report.stages]
    assert [n for n in names if n.startswith("2. Glue")] == [
        "2. Glue ETL of abalone (mlops-dev-etl-abalone), as Glue runs it",
        "2. Glue ETL of breast_cancer (mlops-dev-etl-breast_cancer), as Glue runs it",
    ]
    for model in ("abalone", "breast-cancer"):
        for stage in ("staging", "prod"):
            assert f"6. mlops-dev-model-{model}: deploy and smoke-test {stage}" in names
    assert [n for n in names if n.startswith("7. new data")] == [
        "7. new data: Glue ETL of abalone again", "7. new data: Glue ETL of breast_cancer again",
        "7. new data: every model retrains"]
    assert report.facts["access_denied"] == []
    triggers = {s["stage"]: s["dataset"] for s in report.stages if s["stage"].startswith("3. ")}
    assert set(triggers.values()) == {"abalone", "breast_cancer"}
    staging = next(s for s in report.stages if s["stage"] == "6. mlops-dev-model-abalone: deploy and smoke-test staging")
    assert set(staging["parameters"]) == {"ModelPackageArn", "ModelDataUrl", "BaselineStatisticsUrl",
                                          "BaselineConstraintsUrl"}
    assert staging["data_capture"] == "matches the package's baseline"
    # breast-cancer is served from Lambda only: smoke-tested without an endpoint.
    bc = next(s for s in report.stages if s["stage"] == "6. mlops-dev-model-breast-cancer: deploy and smoke-test staging")
    assert bc["smoke"] == "passed" and bc["endpoint"] is None and bc["function"]
    models = report.facts["models"]
    assert models["abalone"]["metric"]["name"] == "regression_metrics.rmse.value"
    assert models["abalone"]["metric"]["value"] <= models["abalone"]["metric"]["threshold"]
    assert models["breast-cancer"]["dataset"] == "breast_cancer"
    assert models["breast-cancer"]["metric"]["name"] == "binary_classification_metrics.auc.value"
    assert models["breast-cancer"]["metric"]["value"] >= models["breast-cancer"]["metric"]["threshold"] == 0.9
    summary = (tmp_path / "report" / "summary.md").read_text()
    assert "Result: **passed**" in summary
    assert "| breast-cancer | breast_cancer | binary_classification_metrics.auc.value |" in summary


def test_an_unnamed_inference_function_fails_the_smoke_test(assembly_copy, tmp_path):
    """Defect: the smoke role may invoke function:<prefix>-<model>-<stage> only, but the function had no
    FunctionName (CloudFormation named it after the stack): the smoke test got 403 and prod never deployed."""
    stack = "mlops-dev-serving-abalone-staging"

    def unname(template):
        for res in template["Resources"].values():
            if res["Type"] == "AWS::Lambda::Function" and res["Properties"].get("FunctionName"):
                del res["Properties"]["FunctionName"]

    _edit(assembly_copy, stack, unname)
    report = rehearse(assembly_copy, workdir=tmp_path / "work", sample_rows=ROWS, second_pass=False,
                      log=lambda m: None)
    assert not report.ok
    assert report.error.startswith("6. mlops-dev-model-abalone: deploy and smoke-test staging")
    assert "403" in report.error or "AccessDenied" in report.error, report.error


@pytest.fixture()
def deployed(assembly_copy, tmp_path):
    def start(edit=None):
        if edit:
            edit(assembly_copy)
        assembly = Assembly(assembly_copy)
        cloud = Cloud(assembly).start()
        cloud.deploy([s for n, s in assembly.stacks.items() if "-serving-" not in n])
        return Rehearsal(assembly, cloud, tmp_path / "work", log=lambda m: None)

    started = []
    yield lambda edit=None: started.append(start(edit)) or started[-1]
    for rh in started:
        rh.cloud.stop()


def test_manual_approvals_notify_the_alarm_topic(deployed):
    rh = deployed()
    topics = check_manual_approvals(rh, rh.assembly.stack("-model-abalone"))
    assert topics and all(":mlops-dev-alarms" in t or "alarm" in t.lower() for t in topics), topics


def test_an_approval_without_notification_is_caught(deployed):
    def drop(outdir):
        def change(template):
            for res in template["Resources"].values():
                if res["Type"] == "AWS::CodePipeline::Pipeline":
                    for stage in res["Properties"]["Stages"]:
                        for action in stage["Actions"]:
                            (action.get("Configuration") or {}).pop("NotificationArn", None)
        _edit(outdir, "mlops-dev-model-abalone", change)

    rh = deployed(drop)
    with pytest.raises(RehearsalError, match="has no NotificationArn: nobody is told"):
        check_manual_approvals(rh, rh.assembly.stack("-model-abalone"))


def test_the_pipeline_trigger_follows_the_glue_job_name(deployed):
    rh = deployed()
    model = rh.assembly.stack("-model-abalone")
    params = pipeline_trigger_parameters(rh, model, "mlops-dev-etl-abalone")
    assert params["InputDataUrl"].startswith("s3://") and params["InputDataUrl"].endswith("/abalone/")
    with pytest.raises(RehearsalError, match="no EventBridge rule starts the pipeline when Glue job mlops-dev-etl-x"):
        pipeline_trigger_parameters(rh, model, "mlops-dev-etl-x")


def test_each_model_is_started_by_its_own_dataset(deployed):
    rh = deployed()
    jobs = read_jobs(rh)
    dataset, params = model_trigger(rh, rh.assembly.stack("-model-breast-cancer"), jobs)
    assert dataset == "breast_cancer" and params["InputDataUrl"] == jobs["breast_cancer"].arguments["--curated_path"]
    assert model_trigger(rh, rh.assembly.stack("-model-abalone"), jobs)[0] == "abalone"


def test_a_model_fed_another_datasets_prefix_is_caught(deployed):
    """Defect: the rule on the breast_cancer job passes the abalone curated prefix: the model would train on the
    other dataset's data every time its own ETL succeeds."""
    def swap(outdir):
        def change(template):
            text = json.dumps(template).replace('"/breast_cancer/"', '"/abalone/"')
            template.clear()
            template.update(json.loads(text))
        _edit(outdir, "mlops-dev-model-breast-cancer", change)

    rh = deployed(swap)
    with pytest.raises(RehearsalError, match="the rule on mlops-dev-etl-breast_cancer passes InputDataUrl "
                                             r"s3://\S+/abalone/, but the job writes s3://\S+/breast_cancer/"):
        model_trigger(rh, rh.assembly.stack("-model-breast-cancer"), read_jobs(rh))
