"""The model stack: SageMaker pipeline definition (checked against the SageMaker API), registry, triggers, role."""

from __future__ import annotations

import copy
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from sagemaker_steps import pipeline_spec as spec
from sagemaker_steps.model_spec import ModelSpec
from tests.infra.definition_check import all_steps, check_definition, definition_from_template

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def definition(dev):
    return definition_from_template(dev.template("model-abalone"))


def test_every_step_is_a_valid_sagemaker_api_request(synthesized):
    for model in synthesized.config.models:
        definition = definition_from_template(synthesized.template(f"model-{model.name}"))
        assert check_definition(definition) == []


def test_definition_has_every_step_kind(definition):
    kinds = {s["Name"]: s["Type"] for s in all_steps(definition)}
    assert kinds == {
        "ResolveChampion": "Processing",
        "Preprocess": "Processing",
        "DataQualityBaseline": "QualityCheck",
        "Train": "Training",
        "Evaluate": "Processing",
        "CheckMetric": "Condition",
        "Register-RegisterModel": "RegisterModel",
        "FailStep": "Fail",
    }


def test_misspelled_or_mistyped_field_fails_the_api_check(definition):
    broken = copy.deepcopy(definition)
    train = next(s for s in broken["Steps"] if s["Name"] == "Train")
    train["Arguments"]["ResourceConfig"]["InstanceCont"] = train["Arguments"]["ResourceConfig"].pop("InstanceCount")
    problems = check_definition(broken)
    assert any("InstanceCont" in p for p in problems), problems
    broken = copy.deepcopy(definition)
    train = next(s for s in broken["Steps"] if s["Name"] == "Train")
    train["Arguments"]["StoppingCondition"]["MaxRuntimeInSeconds"] = "3600"
    assert any("MaxRuntimeInSeconds" in p for p in check_definition(broken))


def test_condition_reads_the_metric_evaluate_writes(definition, dev):
    model = dev.config.models[0]
    (check,) = [s for s in definition["Steps"] if s["Type"] == "Condition"]
    condition, champion = check["Arguments"]["Conditions"]  # all must hold: the threshold, then the champion
    assert champion == {"Type": "GreaterThanOrEqualTo", "RightValue": 1, "LeftValue": {"Std:JsonGet": {
        "PropertyFile": {"Get": "Steps.Evaluate.PropertyFiles.EvaluationReport"},
        "Path": "champion_challenger.challenger_wins"}}}
    assert condition["Type"] == spec.condition_operator(model.metric)
    left = condition["LeftValue"]["Std:JsonGet"]
    assert left["Path"] == spec.metric_json_path(model.problem_type, model.metric) == "regression_metrics.rmse.value"
    assert left["PropertyFile"] == {"Get": "Steps.Evaluate.PropertyFiles.EvaluationReport"}
    assert condition["RightValue"] == {"Get": "Parameters.MetricThreshold"}
    evaluate = next(s for s in definition["Steps"] if s["Name"] == "Evaluate")
    assert evaluate["PropertyFiles"] == [
        {"PropertyFileName": "EvaluationReport", "OutputName": "evaluation", "FilePath": "evaluation.json"}
    ]


def test_parameters_and_threshold_from_config(definition, dev, prod):
    params = {p["Name"]: p for p in definition["Parameters"]}
    assert set(params) == {
        "InputDataUrl", "MetricThreshold", "ModelApprovalStatus", "GitCommit",
        "ProcessingInstanceType", "TrainingInstanceType",
    }
    assert params["MetricThreshold"]["DefaultValue"] == dev.config.models[0].threshold == 3.0
    assert params["ModelApprovalStatus"]["DefaultValue"] == "PendingManualApproval"
    prod_def = definition_from_template(prod.template("model-abalone"))
    prod_params = {p["Name"]: p for p in prod_def["Parameters"]}
    assert prod_params["MetricThreshold"]["DefaultValue"] == 2.5
    assert prod_params["TrainingInstanceType"]["DefaultValue"] == "ml.m5.xlarge"


def test_register_records_git_commit_metrics_and_pending_approval(definition):
    (register,) = [s for s in all_steps(definition) if s["Type"] == "RegisterModel"]
    args = register["Arguments"]
    assert args["ModelPackageGroupName"] == "mlops-dev-abalone"
    assert args["ModelApprovalStatus"] == {"Get": "Parameters.ModelApprovalStatus"}
    assert args["CustomerMetadataProperties"]["GitCommit"] == {"Get": "Parameters.GitCommit"}
    stats = args["ModelMetrics"]["ModelQuality"]["Statistics"]
    assert stats["ContentType"] == "application/json"
    assert "Steps.Evaluate.ProcessingOutputConfig.Outputs['evaluation'].S3Output.S3Uri" in json.dumps(stats)


def test_registered_container_serves_the_inference_code_inside_model_tar_gz(definition):
    """SAGEMAKER_PROGRAM/SUBMIT_DIRECTORY travel with the package and point into model.tar.gz (train.py writes code/)."""
    from sagemaker_steps import train

    (register,) = [s for s in all_steps(definition) if s["Type"] == "RegisterModel"]
    (container,) = register["Arguments"]["InferenceSpecification"]["Containers"]
    assert container["Environment"] == {
        "SAGEMAKER_PROGRAM": train.SERVING_PROGRAM,
        "SAGEMAKER_SUBMIT_DIRECTORY": f"/opt/ml/model/{train.SERVING_CODE_DIR}",
    } == spec.serving_environment("xgboost")
    assert container["ModelDataUrl"] == {"Get": "Steps.Train.ModelArtifacts.S3ModelArtifacts"}
    assert "s3://" not in json.dumps(container["Environment"])  # nothing to download: works with network isolation


def test_register_records_the_data_code_and_execution_of_the_run(dev, definition):
    (register,) = [s for s in all_steps(definition) if s["Type"] == "RegisterModel"]
    metadata = register["Arguments"]["CustomerMetadataProperties"]
    assert metadata["InputDataUrl"] == {"Get": "Parameters.InputDataUrl"}
    assert metadata["DataManifest"] == {"Std:Join": {"On": "/", "Values": [
        {"Get": "Steps.Preprocess.ProcessingOutputConfig.Outputs['manifest'].S3Output.S3Uri"}, "data_manifest.json"]}}
    assert metadata["PipelineExecutionArn"] == {"Get": "Execution.PipelineExecutionArn"}
    assert metadata["CodeDigest"] == dev.stacks["model-abalone"].build.code_digest
    assert metadata["CodeDigest"].startswith("sha256:") and len(metadata) <= 50
    (preprocess,) = [s for s in definition["Steps"] if s["Name"] == "Preprocess"]
    args = preprocess["Arguments"]["AppSpecification"]["ContainerArguments"]
    assert args[args.index("--input-data-url") + 1] == {"Get": "Parameters.InputDataUrl"}
    outputs = {o["OutputName"] for o in preprocess["Arguments"]["ProcessingOutputConfig"]["Outputs"]}
    assert outputs == {"train", "validation", "test", "baseline", "manifest"}


def test_every_output_is_under_an_execution_specific_prefix(definition):
    """No fixed path one run overwrites for another: each output URI contains the pipeline execution ID."""
    uris = []
    for step in all_steps(definition):
        args = step.get("Arguments", {})
        for output in args.get("ProcessingOutputConfig", {}).get("Outputs", []):
            uris.append((step["Name"], output["S3Output"]["S3Uri"]))
        if "OutputDataConfig" in args:
            uris.append((step["Name"], args["OutputDataConfig"]["S3OutputPath"]))
    assert len(uris) >= 8
    for name, uri in uris:
        values = uri["Std:Join"]["Values"]
        assert values[1] == {"Get": "Execution.PipelineExecutionId"}, name
        assert values[0].endswith("/models/abalone/executions"), name


def test_processing_entrypoint_runs_the_code_object_as_downloaded(dev, definition):
    """SageMaker downloads the code input (S3Prefix = the asset object) to LocalPath under the object's own name."""
    template = dev.template("model-abalone")
    body = json.dumps(template["Resources"])
    for name, script in (("Preprocess", "preprocess.py"), ("Evaluate", "evaluate.py"),
                         ("ResolveChampion", "champion.py")):
        (step,) = [s for s in definition["Steps"] if s["Name"] == name]
        (code,) = [i for i in step["Arguments"]["ProcessingInputs"] if i["InputName"] == "code"]
        s3_input = code["S3Input"]
        assert s3_input["S3DataType"] == "S3Prefix" and s3_input["LocalPath"] == "/opt/ml/processing/input/code"
        object_name = s3_input["S3Uri"].rsplit("/", 1)[-1]
        assert object_name.endswith(".py") and len(object_name) == 64 + 3  # <sha256 asset hash>.py
        assert step["Arguments"]["AppSpecification"]["ContainerEntrypoint"] == [
            "python3", f"/opt/ml/processing/input/code/{object_name}"]
        assert object_name in body  # the asset the stack references is that object
        assert "placeholder" not in json.dumps(step)
    asset = dev.stacks["model-abalone"].build.code_assets["preprocess.py"]
    assert asset.s3_object_key.endswith(".py")


def test_every_job_carries_the_environment_tags(dev, definition):
    expected = [{"Key": "environment", "Value": dev.config.environment}, {"Key": "project", "Value": dev.config.project}]
    jobs = [s for s in all_steps(definition) if s["Type"] in ("Processing", "Training", "QualityCheck")]
    assert {s["Name"] for s in jobs} == {"ResolveChampion", "Preprocess", "DataQualityBaseline", "Train", "Evaluate"}
    for step in jobs:
        assert step["Arguments"]["Tags"] == expected, step["Name"]


def test_no_experiment_tracking(definition):
    assert definition.get("PipelineExperimentConfig") is None


def test_fail_step_explains_the_miss(definition):
    (fail,) = [s for s in all_steps(definition) if s["Type"] == "Fail"]
    values = fail["Arguments"]["ErrorMessage"]["Std:Join"]["Values"]
    text = "".join(v if isinstance(v, str) else "<{}>".format(next(iter(v))) for v in values)
    assert text == ("Model abalone rmse=<Std:JsonGet> does not meet the threshold <Get> or does not beat the champion "
                    "(<Std:JsonGet>); not registered.")
    assert {"Get": "Parameters.MetricThreshold"} in values
    summary = values[-2]["Std:JsonGet"]
    assert summary["Path"] == "champion_challenger.summary"  # both figures and the margin, written by Evaluate


def test_no_caching_retries_and_encryption_on_job_steps(definition):
    """New data under the same InputDataUrl must retrain: no step is served from the cache."""
    for step in all_steps(definition):
        if step["Type"] in ("Processing", "Training", "QualityCheck"):
            assert not step.get("CacheConfig", {}).get("Enabled"), step["Name"]
            if step["Type"] != "QualityCheck":
                assert {tuple(r["ExceptionType"]) for r in step["RetryPolicies"]}
            text = json.dumps(step["Arguments"])
            assert "KmsKeyId" in text and "placeholder" not in text, step["Name"]


def test_scripts_are_assets_and_images_come_from_the_region_mapping(dev):
    template = dev.template("model-abalone")
    body = json.dumps(template["Resources"])
    assert "cdk-hnb659fds-assets" in body
    assert "Fn::FindInMap" in body and "sagemaker-xgboost:1.7-1" in body and "sagemaker-scikit-learn:1.2-1-cpu-py3" in body
    (mapping,) = [m for name, m in template["Mappings"].items() if name.startswith("BuildPipeline")]
    assert mapping["us-east-1"] == {"sklearn": "683313688378", "xgboost": "683313688378", "monitor": "156813124566"}
    assert "eu-west-1" in mapping


def test_pipeline_starts_after_glue_job_succeeds(dev):
    rules = dev.resources("model-abalone", "AWS::Events::Rule")
    (rule,) = [r for r in rules.values() if "SUCCEEDED" in json.dumps(r["Properties"].get("EventPattern"))
               and "SageMakerPipelineParameters" in json.dumps(r["Properties"].get("Targets"))]  # not batch's
    assert rule["Properties"]["EventPattern"] == {
        "source": ["aws.glue"],
        "detail-type": ["Glue Job State Change"],
        "detail": {"jobName": ["mlops-dev-etl-abalone"], "state": ["SUCCEEDED"]},
    }
    (target,) = rule["Properties"]["Targets"]
    assert target["SageMakerPipelineParameters"]["PipelineParameterList"][0]["Name"] == "InputDataUrl"


def test_model_package_group_per_model(synthesized):
    groups = synthesized.all_resources("AWS::SageMaker::ModelPackageGroup")
    names = sorted(g["Properties"]["ModelPackageGroupName"] for g in groups.values())
    assert names == sorted(f"{synthesized.config.prefix()}-{m.name}" for m in synthesized.config.models)


def test_execution_role_is_least_privilege(dev):
    template = dev.template("model-abalone")
    policies = [p for k, p in template["Resources"].items() if p["Type"] == "AWS::IAM::Policy" and "ExecutionRole" in k]
    text = json.dumps(policies)
    assert "AmazonSageMakerFullAccess" not in text and "arn:aws:s3:::*" not in text
    assert "mlops-dev-lake-curated-arn" in text and "/abalone/*" in text
    assert "/models/abalone/*" in text
    assert "processing-job/pipelines-*" in text and "training-job/pipelines-*" in text


def _statements(dev) -> dict[str, dict]:
    template = dev.template("model-abalone")
    policies = [p for k, p in template["Resources"].items() if p["Type"] == "AWS::IAM::Policy" and "ExecutionRole" in k]
    return {s["Sid"]: s for p in policies for s in p["Properties"]["PolicyDocument"]["Statement"] if "Sid" in s}


def _resource_text(resource) -> str:
    from tests.infra.definition_check import resolve_cfn_string

    return resolve_cfn_string(resource)


def test_execution_role_can_encrypt_job_volumes_and_write_job_logs(dev):
    statements = _statements(dev)
    grant = statements["JobVolumeKeyGrant"]
    assert grant["Action"] == "kms:CreateGrant"
    assert grant["Condition"] == {"Bool": {"kms:GrantIsForAWSResource": "true"}}
    assert "mlops-dev-lake-key-arn" in json.dumps(grant["Resource"])
    groups = statements["JobLogGroups"]
    # SageMaker creates the account-wide groups with the job role on first use (the platform does not own them)
    assert sorted(groups["Action"]) == ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:DescribeLogStreams"]
    group_arns = sorted(_resource_text(r).split("log-group:", 1)[1] for r in groups["Resource"])
    assert group_arns == ["/aws/sagemaker/ProcessingJobs", "/aws/sagemaker/ProcessingJobs:*",
                          "/aws/sagemaker/TrainingJobs", "/aws/sagemaker/TrainingJobs:*"]
    streams = statements["JobLogStreams"]
    assert streams["Action"] == "logs:PutLogEvents"
    assert sorted(_resource_text(r).split("log-group:", 1)[1] for r in streams["Resource"]) == [
        "/aws/sagemaker/ProcessingJobs:log-stream:pipelines-*", "/aws/sagemaker/TrainingJobs:log-stream:pipelines-*"]


def test_execution_role_has_no_list_or_experiment_actions_but_the_champion_lookup(dev):
    statements = _statements(dev)
    # ResolveChampion's ListModelPackages has no IAM resource type: "*" in a statement of its own, nothing else listed
    assert statements["ChampionLookup"]["Action"] == "sagemaker:ListModelPackages"
    assert statements["ChampionLookup"]["Resource"] == "*"
    text = json.dumps({sid: s for sid, s in statements.items() if sid != "ChampionLookup"})
    assert "sagemaker:List" not in text
    for action in ("CreateExperiment", "CreateTrial", "AssociateTrialComponent"):
        assert action not in text
    registry = statements["Registry"]  # describes the champion: a version of this model's group
    assert "sagemaker:DescribeModelPackage" in registry["Action"]
    assert any(_resource_text(r).endswith(":model-package/mlops-dev-abalone/*") for r in registry["Resource"])


def test_resolve_champion_feeds_evaluate_and_calls_the_models_group(dev, definition):
    """ResolveChampion: no dependency (runs with Preprocess), its output is Evaluate's champion input, it names the
    model's own group by ARN (so its region); Evaluate compares on the configured metric and margin."""
    steps = {s["Name"]: s for s in definition["Steps"]}
    resolve, evaluate = steps["ResolveChampion"], steps["Evaluate"]
    assert not resolve.get("DependsOn")
    app = resolve["Arguments"]["AppSpecification"]
    group = app["ContainerArguments"][app["ContainerArguments"].index("--model-package-group") + 1]
    assert _resource_text(group).endswith(":model-package-group/mlops-dev-abalone")
    assert group.startswith("arn:") or "Fn::Join" in json.dumps(group) or "token" in _resource_text(group)
    (output,) = resolve["Arguments"]["ProcessingOutputConfig"]["Outputs"]
    assert output["OutputName"] == "champion" and output["S3Output"]["LocalPath"] == "/opt/ml/processing/champion"
    (champion_input,) = [i for i in evaluate["Arguments"]["ProcessingInputs"] if i["InputName"] == "champion"]
    assert champion_input["S3Input"]["S3Uri"] == {
        "Get": "Steps.ResolveChampion.ProcessingOutputConfig.ProcessingOutputs['champion'].S3Output.S3Uri"} or \
        "ResolveChampion" in json.dumps(champion_input["S3Input"]["S3Uri"])
    assert champion_input["S3Input"]["LocalPath"] == "/opt/ml/processing/champion"
    args = evaluate["Arguments"]["AppSpecification"]["ContainerArguments"]
    model = dev.config.models[0]
    assert args[args.index("--champion-dir") + 1] == "/opt/ml/processing/champion"
    assert args[args.index("--metric") + 1] == model.metric
    assert float(args[args.index("--champion-margin") + 1]) == model.champion.margin


def test_champion_off_builds_the_definition_without_the_comparison(fresh_definition):
    from mlops_constructs import sagemaker_definition as sdk

    off = sdk.build_definition(_inputs(spec=dataclasses.replace(_inputs().spec, champion=False)))
    assert [s["Name"] for s in off["Steps"]] == [s["Name"] for s in fresh_definition["Steps"]][1:]
    text = json.dumps(off)
    assert "champion" not in text.lower()
    (check,) = [s for s in off["Steps"] if s["Type"] == "Condition"]
    assert len(check["Arguments"]["Conditions"]) == 1


def test_baseline_step_computes_this_packages_data_quality_baseline(definition, dev):
    """Contract C2: the baseline of exactly the rows the endpoint receives, per execution, in the package."""
    (step,) = [s for s in all_steps(definition) if s["Type"] == "QualityCheck"]
    assert step["CheckType"] == "DATA_QUALITY" and step["RegisterNewBaseline"] is True and step["SkipCheck"] is True
    assert not step.get("ModelPackageGroupName")  # no lookup of an earlier package's baseline
    args = step["Arguments"]
    assert args["ProcessingInputs"][0]["S3Input"]["S3Uri"] == {
        "Get": "Steps.Preprocess.ProcessingOutputConfig.Outputs['baseline'].S3Output.S3Uri"
    }
    assert json.loads(args["Environment"]["dataset_format"])["csv"]["header"] is False
    output = args["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"]["Std:Join"]["Values"]
    assert output[1:] == [{"Get": "Execution.PipelineExecutionId"}, "baseline"]
    assert "sagemaker-model-monitor-analyzer" in args["AppSpecification"]["ImageUri"]
    (register,) = [s for s in all_steps(definition) if s["Type"] == "RegisterModel"]
    assert register["Arguments"]["ModelMetrics"]["ModelDataQuality"] == {
        "Statistics": {"ContentType": "application/json",
                       "S3Uri": {"Get": "Steps.DataQualityBaseline.CalculatedBaselineStatistics"}},
        "Constraints": {"ContentType": "application/json",
                        "S3Uri": {"Get": "Steps.DataQualityBaseline.CalculatedBaselineConstraints"}},
    }


def test_definition_is_built_without_any_network_call(monkeypatch):
    """The SDK runs at synth: no telemetry request, no STS/S3 call (every socket connect is recorded and refused)."""
    import socket

    from mlops_constructs import sagemaker_definition as sdk

    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network is off during synth")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    definition = sdk.build_definition(_inputs())
    assert attempts == []
    assert [s["Name"] for s in definition["Steps"]][:4] == ["ResolveChampion", "Preprocess", "DataQualityBaseline",
                                                             "Train"]


# ---------------------------------------------------------------------------------------------------------------
# The definition cache: keyed by everything the definition depends on
# ---------------------------------------------------------------------------------------------------------------
def _inputs(**changes):
    from mlops_constructs import sagemaker_definition as sdk

    model = ModelSpec(name="m", target="rings", metric="rmse", threshold=3.0, hyperparameters={"max_depth": 5})
    inputs = sdk.PipelineInputs(spec=model, pipeline_name="p", model_package_group_name="g",
                                artifacts_prefix="models/m/", job_tags={"project": "x", "environment": "dev"},
                                code_digest="sha256:1")
    return dataclasses.replace(inputs, **changes)


SPEC_CHANGES = {
    "name": "other", "target": "age", "metric": "mae", "threshold": 2.0, "framework": "sklearn",
    "hyperparameters": {"max_depth": 6}, "processing_instance_type": "ml.c5.large",
    "training_instance_type": "ml.c5.xlarge", "exclude_columns": ("sex",), "champion": False, "champion_margin": 0.5,
}
INPUT_CHANGES = {
    "pipeline_name": "p2", "model_package_group_name": "g2", "artifacts_prefix": "models/n/", "baseline": False,
    "job_tags": {"project": "y", "environment": "dev"}, "code_digest": "sha256:2", "exclude_columns": (),
}


@pytest.fixture(scope="module")
def fresh_definition():
    from mlops_constructs import sagemaker_definition as sdk

    return sdk.build_definition(_inputs())


def test_definition_cache_hit_returns_what_a_fresh_build_returns(tmp_path, fresh_definition, monkeypatch):
    from mlops_constructs import sagemaker_definition as sdk

    first = sdk.cached_definition(_inputs(), tmp_path)
    assert first == fresh_definition
    (entry,) = tmp_path.glob("*.json")
    assert entry.name == f"{sdk.definition_cache_key(_inputs())}.json"

    def no_build(inputs):
        raise AssertionError("a cache hit must not build")

    monkeypatch.setattr(sdk, "build_definition", no_build)
    assert json.dumps(sdk.cached_definition(_inputs(), tmp_path)) == json.dumps(fresh_definition)
    entry.write_text("{truncated")  # an unreadable entry is rebuilt, not trusted
    monkeypatch.undo()
    assert sdk.cached_definition(_inputs(), tmp_path) == fresh_definition
    assert json.loads(entry.read_text()) == fresh_definition


@pytest.mark.parametrize("field,value", [*SPEC_CHANGES.items(), ("binary", None), ("binary", "M")])
def test_definition_cache_key_and_output_follow_each_model_spec_field(field, value, fresh_definition):
    from mlops_constructs import sagemaker_definition as sdk

    if field == "binary":
        # value: None = a numeric target (positive_threshold), else a string target's positive_label
        model = dataclasses.replace(_inputs().spec, problem_type="binary_classification", metric="auc",
                                    threshold=0.8, positive_threshold=None if value else 10.0, positive_label=value)
    else:
        model = dataclasses.replace(_inputs().spec, **{field: value})
    changed = _inputs(spec=model)
    assert sdk.definition_cache_key(changed) != sdk.definition_cache_key(_inputs())
    assert sdk.build_definition(changed) != fresh_definition


@pytest.mark.parametrize("field,value", INPUT_CHANGES.items())
def test_definition_cache_key_and_output_follow_each_input(field, value, fresh_definition):
    from mlops_constructs import sagemaker_definition as sdk

    changed = _inputs(**{field: value})
    assert sdk.definition_cache_key(changed) != sdk.definition_cache_key(_inputs())
    if field == "pipeline_name":  # the SDK keeps the name out of the definition body; the key has it all the same
        assert sdk.build_definition(changed) == fresh_definition
    else:
        assert sdk.build_definition(changed) != fresh_definition


def test_definition_cache_key_covers_every_input_field():
    """A field added to the inputs or the spec must be in a test above (and so in the key)."""
    from mlops_constructs import sagemaker_definition as sdk

    spot = {"spot_training", "max_run_seconds", "max_wait_seconds"}  # change together: tests/test_definition_spot.py
    assert {f.name for f in dataclasses.fields(ModelSpec)} == set(SPEC_CHANGES) | {"problem_type", "positive_threshold",
                                                                           "positive_label"} | spot
    # subnet_count and security_group_count change together: tests/test_definition_network.py
    network = {"subnet_count", "security_group_count"}
    assert {f.name for f in dataclasses.fields(sdk.PipelineInputs)} == set(INPUT_CHANGES) | {"spec"} | network


def test_definition_cache_key_follows_the_sdk_version_and_the_builder_source(monkeypatch, tmp_path):
    from mlops_constructs import sagemaker_definition as sdk

    key = sdk.definition_cache_key(_inputs())
    real_version = sdk._package_version
    for package in sdk.SDK_PACKAGES:
        monkeypatch.setattr(sdk, "_package_version", lambda name: "9.9.9" if name == package else real_version(name))
        assert sdk.definition_cache_key(_inputs()) != key, package
        monkeypatch.undo()
    assert {Path(p).name for p in sdk._KEY_SOURCES} == {"sagemaker_definition.py", "pipeline_spec.py", "model_spec.py"}
    for index, source in enumerate(sdk._KEY_SOURCES):
        edited = tmp_path / f"{index}-{Path(source).name}"
        edited.write_text(Path(source).read_text() + "\n# edited\n")
        sources = list(sdk._KEY_SOURCES)
        sources[index] = str(edited)
        monkeypatch.setattr(sdk, "_KEY_SOURCES", tuple(sources))
        assert sdk.definition_cache_key(_inputs()) != key, source
        monkeypatch.undo()


def test_a_warm_synth_does_not_import_the_sagemaker_sdk(tmp_path):
    """With the definition in the cache, synthesizing the model stack never imports ``sagemaker``."""
    code = f"""
import sys
from platform_config import load_config
from stacks.app_builder import build_app
config = load_config("dev")
build_app(config, outdir=sys.argv[1], extra_context={{"aws:cdk:disable-asset-staging": True}}).synth()
print("sagemaker" in sys.modules)
"""
    for outdir in ("first", "second"):  # a cold first run fills the cache (build/definition-cache)
        run = subprocess.run([sys.executable, "-c", code, str(tmp_path / outdir)], cwd=REPO, capture_output=True,
                             text=True, check=True)
        if run.stdout.strip().splitlines()[-1] == "False":
            break
    assert run.stdout.strip().splitlines()[-1] == "False", run.stderr[-2000:]
