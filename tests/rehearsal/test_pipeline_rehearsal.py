"""The model-build pipeline rehearsed from the synthesized definition (rehearsal/pipeline.py), and one regression test
per deploy defect it must catch: each reintroduces the defect in a private copy of the assembly."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Callable

import pandas as pd
import pytest

from rehearsal.assembly import Assembly, RehearsalError
from rehearsal.cloud import Cloud
from rehearsal.context import Rehearsal, split_s3_uri
from rehearsal.pipeline import (
    PipelineCache,
    check_new_data_retrains,
    iso_duration_seconds,
    pipeline_definition,
    run_pipeline,
)

ROOT = Path(__file__).resolve().parents[2]
MODEL_STACK = "-model-abalone"


def curated_frame(start: int, rows: int = 300) -> pd.DataFrame:
    """Rows of data/abalone.csv as the Glue ETL curates them (docs/CONTRACTS.md: snake_case, typed)."""
    raw = pd.read_csv(ROOT / "data" / "abalone.csv").iloc[start:start + rows]
    frame = pd.DataFrame({"sex": raw["sex"].astype(str)})
    for column in raw.columns[1:-1]:
        frame[column.replace(" ", "_")] = raw[column].astype("float64")
    frame["rings"] = raw["rings"].astype("int32")
    return frame.reset_index(drop=True)


def put_partition(cloud: Cloud, input_url: str, ingest_date: str, frame: pd.DataFrame) -> None:
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    bucket, prefix = split_s3_uri(input_url)
    key = f"{prefix.rstrip('/')}/ingest_date={ingest_date}/part-0000.parquet"
    cloud.admin("s3").put_object(Bucket=bucket, Key=key, Body=buf.getvalue())


def edit_definition(assembly_dir: Path, edit: Callable[[dict], None]) -> None:
    """Reintroduce a defect: resolve the model stack's pipeline definition, edit it, write it back (as a plain string:
    the same document the resolver gives) into the copy's template."""
    assembly = Assembly(assembly_dir)
    stack = assembly.stack(MODEL_STACK)
    logical, res = stack.one("AWS::SageMaker::Pipeline")
    body = json.loads(assembly.resolver.resolve(stack, res["Properties"]["PipelineDefinition"]["PipelineDefinitionBody"]))
    edit(body)
    path = assembly_dir / f"{stack.name}.template.json"
    template = json.loads(path.read_text())
    template["Resources"][logical]["Properties"]["PipelineDefinition"]["PipelineDefinitionBody"] = json.dumps(body)
    path.write_text(json.dumps(template))


def job_steps(definition: dict) -> list[dict]:
    return [s for s in definition["Steps"] if s["Type"] in ("Processing", "Training", "QualityCheck")]


class Stage:
    """A started stand-in account with the non-serving stacks, one curated partition, and the rehearsal context."""

    def __init__(self, assembly: Assembly, cloud: Cloud, workdir: Path) -> None:
        self.assembly, self.cloud = assembly, cloud
        self.rh = Rehearsal(assembly, cloud, workdir, log=lambda _m: None)
        self.model = assembly.stack(MODEL_STACK)
        _, _, definition = pipeline_definition(self.rh, self.model)
        self.input_url = next(p["DefaultValue"] for p in definition["Parameters"] if p["Name"] == "InputDataUrl")
        put_partition(cloud, self.input_url, "2024-01-01", curated_frame(0))


@pytest.fixture()
def stage_for(tmp_path):
    clouds = []

    def make(assembly_dir: Path) -> Stage:
        from moto.moto_api._internal.models import moto_api_backend

        moto_api_backend.reset()  # moto's backends live in the process: a fresh account per test
        assembly = Assembly(assembly_dir)
        cloud = Cloud(assembly).start()
        clouds.append(cloud)
        cloud.deploy([s for n, s in assembly.stacks.items() if "-serving-" not in n])
        return Stage(assembly, cloud, tmp_path / "work")

    yield make
    for cloud in clouds:
        cloud.stop()


# --- the deployed pipeline ------------------------------------------------------------------------------------------
def test_pipeline_registers_a_package_and_retrains_on_new_data(stage_for, dev_assembly_dir):
    stage = stage_for(dev_assembly_dir)
    cache = PipelineCache()
    run = run_pipeline(stage.rh, stage.model, cache=cache)
    run.check()
    assert [n for n, s in run.steps.items() if s["status"] == "Succeeded"][-1] == "Register-RegisterModel"
    package = stage.cloud.admin("sagemaker").describe_model_package(ModelPackageName=run.model_package_arn)
    assert package["ModelApprovalStatus"] == "PendingManualApproval"
    model_url = package["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]
    assert run.execution_id in model_url and model_url.endswith("/output/model.tar.gz")
    assert stage.rh.facts["pipeline"][-1]["status"] == "Succeeded"
    assert not run.denials
    # a second execution on new data under the same InputDataUrl (as the Glue trigger starts it) retrains
    put_partition(stage.cloud, stage.input_url, "2024-02-01", curated_frame(300))
    second = run_pipeline(stage.rh, stage.model, cache=cache).check()
    check_new_data_retrains(run, second)


def test_too_strict_threshold_takes_the_fail_step(stage_for, dev_assembly_dir):
    stage = stage_for(dev_assembly_dir)
    run = run_pipeline(stage.rh, stage.model, parameters={"MetricThreshold": "0.001"})
    assert run.status == "Failed" and run.failed_step == "FailStep"
    assert run.model_package_arn is None
    assert f"rmse={run.metric}" in run.fail_message and "does not meet the threshold 0.001" in run.fail_message
    assert "or does not beat the champion (challenger rmse" in run.fail_message and "no champion" in run.fail_message
    assert run.steps["Register-RegisterModel"]["status"] == "NotExecuted"
    assert not run.rejected_by_champion  # the threshold failed: check() reports it
    with pytest.raises(RehearsalError, match="does not meet the threshold"):
        run.check()


# --- champion vs challenger -------------------------------------------------------------------------------------------
def _approve(stage, arn: str) -> None:
    stage.cloud.admin("sagemaker").update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Approved")


def _statistics(stage, run) -> dict:
    uri = run.register_arguments["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"]
    bucket, key = split_s3_uri(uri)
    return json.loads(stage.cloud.admin("s3").get_object(Bucket=bucket, Key=key)["Body"].read())


def test_second_run_scores_the_approved_champion_on_the_same_split(stage_for, dev_assembly_dir):
    """First run: no champion, judged on the threshold. After approval, ResolveChampion (not isolated, under the
    pipeline role: ListModelPackages, DescribeModelPackage, the artifact) hands the champion to Evaluate, both
    figures land in the package's model metrics; an equal challenger passes with dev's margin 0."""
    stage = stage_for(dev_assembly_dir)
    first = run_pipeline(stage.rh, stage.model).check()
    assert first.champion["champion"] is None and first.champion["challenger_wins"] == 1
    assert first.champion["reason"].startswith("no Approved package in arn:aws:sagemaker:")
    assert first.champion["reason"].endswith(":model-package-group/mlops-dev-abalone yet")
    _approve(stage, first.model_package_arn)
    second = run_pipeline(stage.rh, stage.model).check()
    block = second.champion
    assert block["champion_package_arn"] == first.model_package_arn and block["champion_version"] == 1
    assert block["champion"] == pytest.approx(first.metric)  # the champion rescored on this run's test split
    assert block["challenger"] == second.metric and block["margin"] == 0.0 and block["challenger_wins"] == 1
    assert second.model_package_arn and not second.denials
    statistics = _statistics(stage, second)  # the package's ModelQuality statistics: both figures
    assert statistics["champion_challenger"] == block and "regression_metrics" in statistics
    assert stage.rh.facts["pipeline"][-1]["champion"]["summary"] == block["summary"]
    assert stage.rh.facts["pipeline"][-1]["jobs"]["ResolveChampion"]["network_isolation"] is False


def test_challenger_not_beating_the_champion_by_the_margin_is_rejected(stage_for, assembly_copy):
    """A margin no challenger can beat (rmse 5.0, edited into Evaluate's arguments): the second run stops at the Fail
    step, whose message names both figures; no package; the rehearsal accepts it as an outcome."""
    def edit(definition):
        for step in definition["Steps"]:
            if step["Name"] == "Evaluate":
                args = step["Arguments"]["AppSpecification"]["ContainerArguments"]
                args[args.index("--champion-margin") + 1] = "5.0"

    edit_definition(assembly_copy, edit)
    stage = stage_for(assembly_copy)
    first = run_pipeline(stage.rh, stage.model).check()  # no champion: the margin does not apply
    _approve(stage, first.model_package_arn)
    second = run_pipeline(stage.rh, stage.model)
    assert second.status == "Failed" and second.failed_step == "FailStep" and second.model_package_arn is None
    assert second.rejected_by_champion
    block = second.champion
    assert block["challenger_wins"] == 0 and block["margin"] == 5.0
    assert (f"vs champion rmse {block['champion']:.4f} (version 1), margin 5: rejected") in second.fail_message
    assert f"rmse={second.metric}" in second.fail_message
    second.check()  # rejected by the comparison: the pipeline working, not a defect
    check_new_data_retrains(first, second)  # the rejected challenger was trained anew


def test_role_without_list_model_packages_fails_resolve_champion(stage_for, assembly_copy):
    path = next(assembly_copy.glob(f"*{MODEL_STACK}.template.json"))
    template = json.loads(path.read_text())
    removed = 0
    for res in template["Resources"].values():
        if res["Type"] != "AWS::IAM::Policy" or "BuildPipeline" not in json.dumps(res["Properties"]["Roles"]):
            continue
        statements = res["Properties"]["PolicyDocument"]["Statement"]
        kept = [s for s in statements if s.get("Sid") != "ChampionLookup"]
        removed += len(statements) - len(kept)
        res["Properties"]["PolicyDocument"]["Statement"] = kept
    assert removed == 1
    path.write_text(json.dumps(template))
    stage = stage_for(assembly_copy)
    run = run_pipeline(stage.rh, stage.model)
    assert run.status == "Failed" and run.failed_step == "ResolveChampion"
    assert "ListModelPackages" in run.fail_message and "AccessDenied" in run.fail_message
    assert any("sagemaker:ListModelPackages" in d for d in run.denials)
    with pytest.raises(RehearsalError, match="ListModelPackages"):
        run.check()


def test_evaluate_without_the_champion_input_fails(stage_for, assembly_copy):
    """The defect of an Evaluate that ignores ResolveChampion (its champion input dropped): the job fails rather
    than register a model the config asks to compare."""
    def edit(definition):
        for step in definition["Steps"]:
            if step["Name"] == "Evaluate":
                inputs = step["Arguments"]["ProcessingInputs"]
                step["Arguments"]["ProcessingInputs"] = [i for i in inputs if i["InputName"] != "champion"]
                assert len(step["Arguments"]["ProcessingInputs"]) == len(inputs) - 1

    edit_definition(assembly_copy, edit)
    stage = stage_for(assembly_copy)
    run = run_pipeline(stage.rh, stage.model)
    assert run.status == "Failed" and run.failed_step == "Evaluate"
    assert "the job has no champion input" in run.fail_message


def test_unknown_parameter_is_refused(stage_for, dev_assembly_dir):
    stage = stage_for(dev_assembly_dir)
    with pytest.raises(RehearsalError, match="InputDataURL"):
        run_pipeline(stage.rh, stage.model, parameters={"InputDataURL": "s3://x/"})


def test_iso_durations():
    assert iso_duration_seconds("P30D") == 30 * 86400
    assert iso_duration_seconds("PT1H") == 3600
    assert iso_duration_seconds("T16m") == 960
    assert iso_duration_seconds(None) is None


# --- regression tests: each reintroduces a deploy defect --------------------------------------------------------------
def test_entrypoint_naming_the_source_file_instead_of_the_asset_fails(stage_for, assembly_copy):
    def edit(definition):
        for step in definition["Steps"]:
            if step["Name"] == "Preprocess":
                step["Arguments"]["AppSpecification"]["ContainerEntrypoint"][-1] = (
                    "/opt/ml/processing/input/code/preprocess.py"
                )

    edit_definition(assembly_copy, edit)
    stage = stage_for(assembly_copy)
    run = run_pipeline(stage.rh, stage.model)
    assert run.status == "Failed" and run.failed_step == "Preprocess"
    assert "/opt/ml/processing/input/code/preprocess.py, which the job's inputs did not create" in run.fail_message
    assert "must name the asset object (<hash>.py)" in run.fail_message
    with pytest.raises(RehearsalError, match="preprocess.py"):
        run.check()


def test_caching_with_the_same_input_url_on_new_data_is_caught(stage_for, assembly_copy):
    def edit(definition):
        for step in job_steps(definition):
            step["CacheConfig"] = {"Enabled": True, "ExpireAfter": "P30D"}

    edit_definition(assembly_copy, edit)
    stage = stage_for(assembly_copy)
    cache = PipelineCache()
    first = run_pipeline(stage.rh, stage.model, cache=cache).check()
    put_partition(stage.cloud, stage.input_url, "2024-02-01", curated_frame(300))  # new data, same InputDataUrl
    second = run_pipeline(stage.rh, stage.model, cache=cache).check()
    assert second.steps["Preprocess"]["cache_hit"] and second.steps["Evaluate"]["cache_hit"] is False
    with pytest.raises(RehearsalError, match=r"new data did not retrain.*\['Preprocess'\] read InputDataUrl"):
        check_new_data_retrains(first, second)


def test_every_step_cached_registers_the_same_model_data(stage_for, assembly_copy):
    """The defect as first shipped: fixed output paths (no execution ID) and every step cached for 30 days."""
    def edit(definition):
        for step in job_steps(definition):
            step["CacheConfig"] = {"Enabled": True, "ExpireAfter": "P30D"}
            debug = step["Arguments"].get("DebugHookConfig")
            if debug:
                debug["S3OutputPath"] = "s3://fixed/debug"

    edit_definition(assembly_copy, edit)
    stage = stage_for(assembly_copy)
    cache = PipelineCache()
    first = run_pipeline(stage.rh, stage.model, cache=cache).check()
    put_partition(stage.cloud, stage.input_url, "2024-02-01", curated_frame(300))
    second = run_pipeline(stage.rh, stage.model, cache=cache).check()
    assert all(second.steps[n]["cache_hit"] for n in ("Preprocess", "DataQualityBaseline", "Train", "Evaluate"))
    with pytest.raises(RehearsalError, match="registered the same model data.*only Register runs"):
        check_new_data_retrains(first, second)


def test_caching_expires_after_its_duration(stage_for, assembly_copy):
    def edit(definition):
        for step in job_steps(definition):
            if step["Name"] == "Preprocess":
                step["CacheConfig"] = {"Enabled": True, "ExpireAfter": "PT1H"}
        definition["Steps"] = [s for s in definition["Steps"] if s["Name"] == "Preprocess"]

    edit_definition(assembly_copy, edit)
    stage = stage_for(assembly_copy)
    now = [1_000_000.0]
    cache = PipelineCache(clock=lambda: now[0])
    run_pipeline(stage.rh, stage.model, cache=cache)
    now[0] += 1800
    assert run_pipeline(stage.rh, stage.model, cache=cache).steps["Preprocess"]["cache_hit"]
    now[0] += 3601
    assert not run_pipeline(stage.rh, stage.model, cache=cache).steps["Preprocess"]["cache_hit"]


def test_baseline_with_header_and_raw_text_columns_is_caught(stage_for, assembly_copy):
    raw_uri = {}

    def edit(definition):
        for step in definition["Steps"]:
            if step["Type"] == "QualityCheck":
                artifacts = step["Arguments"]["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"]
                prefix = artifacts["Std:Join"]["Values"][0] if isinstance(artifacts, dict) else artifacts
                raw_uri["uri"] = prefix.rsplit("/executions", 1)[0] + "/raw-baseline/"
                step["Arguments"]["ProcessingInputs"][0]["S3Input"]["S3Uri"] = raw_uri["uri"]
                step["Arguments"]["Environment"]["dataset_format"] = json.dumps(
                    {"csv": {"header": True, "output_columns_position": "START"}}
                )

    edit_definition(assembly_copy, edit)
    stage = stage_for(assembly_copy)
    bucket, key = split_s3_uri(raw_uri["uri"])
    body = curated_frame(0).to_csv(index=False).encode()
    stage.cloud.admin("s3").put_object(Bucket=bucket, Key=key + "abalone.csv", Body=body)
    run = run_pipeline(stage.rh, stage.model)
    assert run.status == "Succeeded"  # SageMaker would not notice: the monitor would report violations later
    assert any("DataQualityBaseline" in f and "header" in f and "['sex']" in f for f in run.findings), run.findings
    with pytest.raises(RehearsalError, match="Model Monitor baseline is not the rows the endpoint receives"):
        run.check()


def test_permission_removed_from_the_pipeline_role_is_access_denied(stage_for, assembly_copy):
    path = next(assembly_copy.glob(f"*{MODEL_STACK}.template.json"))
    template = json.loads(path.read_text())
    removed = 0
    for res in template["Resources"].values():
        if res["Type"] != "AWS::IAM::Policy":
            continue
        for statement in res["Properties"]["PolicyDocument"]["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            if "sagemaker:CreateModelPackage" in actions and "BuildPipeline" in json.dumps(res["Properties"]["Roles"]):
                statement["Action"] = [a for a in actions if a != "sagemaker:CreateModelPackage"]
                removed += 1
    assert removed == 1
    path.write_text(json.dumps(template))
    stage = stage_for(assembly_copy)
    run = run_pipeline(stage.rh, stage.model)
    assert run.status == "Failed" and run.failed_step == "Register-RegisterModel"
    assert "AccessDenied" in run.fail_message and "sagemaker:CreateModelPackage" in run.fail_message
    assert any("sagemaker:CreateModelPackage" in d for d in run.denials)
