"""The closing loop's entry points rehearsed from the dev assembly (rehearsal/closing_loop.py): drift retrains once per
cooldown, the batch plan resolves the approved package, ground-truth uploads reach their function; and one regression
test per defect each stage must catch, reintroduced in a copy of the assembly. Small and fast: no model is trained
(the full batch transform and the ground-truth join run in `make rehearse` and test_loop.py's dev loop)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rehearsal import closing_loop
from rehearsal.assembly import Assembly, RehearsalError
from rehearsal.cloud import DENIALS, Cloud
from rehearsal.context import Rehearsal
from rehearsal.lambda_runtime import find_python
from rehearsal.serving import set_parameters

pytestmark = pytest.mark.skipif(find_python("3.12") is None, reason="no Python 3.12 for the Lambda runtime")

MODEL, STAGE = "abalone", "prod"
SERVING = f"mlops-dev-serving-{MODEL}-{STAGE}"
PARTITION = "2026-01-01"


def _edit(outdir: Path, stack: str, change) -> None:
    path = outdir / f"{stack}.template.json"
    template = json.loads(path.read_text())
    change(template["Resources"])
    path.write_text(json.dumps(template))


class StandIn:
    """A started stand-in account with the `deploy --all` stacks and the prod serving stack of abalone deployed with
    a baseline (HasBaseline holds: the drift function exists), an approved package and a curated partition."""

    def __init__(self, assembly_dir: Path, work: Path) -> None:
        self.assembly = Assembly(assembly_dir)
        self.cloud = Cloud(self.assembly).start()
        self.cloud.deploy([s for n, s in self.assembly.stacks.items() if "-serving-" not in n])
        self.rh = Rehearsal(self.assembly, self.cloud, work, log=lambda _m: None)
        work.mkdir(parents=True, exist_ok=True)
        self.artifacts = self.assembly.resolver.export("mlops-dev-lake-artifacts-name")
        base = f"s3://{self.artifacts}/models/{MODEL}/executions/rehearsal0001"
        stack = self.assembly.stack(f"-serving-{MODEL}-{STAGE}")
        set_parameters(self.rh, stack, {
            "ModelPackageArn": f"arn:aws:sagemaker:us-east-1:123456789012:model-package/mlops-dev-{MODEL}/1",
            "ModelDataUrl": f"{base}/model.tar.gz", "BaselineStatisticsUrl": f"{base}/statistics.json",
            "BaselineConstraintsUrl": f"{base}/constraints.json"})
        self.cloud.deploy([stack])

    def approve_package(self) -> str:
        sm = self.cloud.admin("sagemaker")
        arn = sm.create_model_package(
            ModelPackageGroupName=f"mlops-dev-{MODEL}", ModelApprovalStatus="Approved",
            InferenceSpecification={"Containers": [{
                "Image": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1",
                "ModelDataUrl": f"s3://{self.artifacts}/models/{MODEL}/executions/rehearsal0001/model.tar.gz",
                "Environment": {"SAGEMAKER_PROGRAM": "serve.py"}}],
                "SupportedContentTypes": ["text/csv"], "SupportedResponseMIMETypes": ["text/csv"]},
        )["ModelPackageArn"]
        curated = self.assembly.resolver.export("mlops-dev-lake-curated-name")
        self.cloud.admin("s3").put_object(Bucket=curated, Key=f"{MODEL}/ingest_date={PARTITION}/part-0.parquet",
                                          Body=b"PAR1")
        return arn

    def close(self) -> None:
        self.cloud.stop()


@pytest.fixture()
def stand_in(dev_assembly_dir, tmp_path):
    env = StandIn(dev_assembly_dir, tmp_path / "work")
    yield env
    env.close()


@pytest.fixture()
def defect(assembly_copy, tmp_path):
    """A stand-in account of a copy of the assembly after ``change(resources)`` of one stack's template."""
    made = []

    def make(stack: str, change) -> StandIn:
        _edit(assembly_copy, stack, change)
        env = StandIn(assembly_copy, tmp_path / "work")
        made.append(env)
        return env

    yield make
    for env in made:
        env.close()


# --- 9. drift -------------------------------------------------------------------------------------------------------
def test_drift_starts_one_retrain_then_the_cooldown_holds(stand_in):
    facts = closing_loop.drift_retrains_once(stand_in.rh, MODEL, STAGE)
    assert facts["rule"].startswith("DriftRetrainingOnDrift")
    assert (facts["first"], facts["second"]) == ("started", "cooldown")
    assert facts["features"] == ["_c0"]  # the completeness violation is not drift
    assert facts["messages"] == 1 and "retraining started" in facts["subject"]
    assert facts["execution"].startswith("arn:aws:sagemaker:us-east-1:123456789012:pipeline/mlops-dev-abalone/")
    assert "/mlops-dev-abalone-prod/" in facts["report"] and facts["report"].endswith("/constraint_violations.json")


def test_a_drift_role_without_start_pipeline_execution_is_reported(defect):
    def drop_start(resources):
        for logical, res in resources.items():
            if "DriftRetraining" not in logical or res["Type"] not in ("AWS::IAM::Policy", "AWS::IAM::Role"):
                continue
            documents = ([res["Properties"]["PolicyDocument"]] if res["Type"] == "AWS::IAM::Policy"
                         else [p["PolicyDocument"] for p in res["Properties"].get("Policies", [])])
            for document in documents:
                for statement in document["Statement"]:
                    actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                    statement["Action"] = [a for a in actions if a != "sagemaker:StartPipelineExecution"] or \
                        ["sagemaker:DescribePipeline"]

    env = defect(SERVING, drop_start)
    with pytest.raises(RehearsalError, match=r"drift did not start a retrain \(AccessDenied\)"):
        closing_loop.drift_retrains_once(env.rh, MODEL, STAGE)
    assert any(d.action == "sagemaker:StartPipelineExecution" for d in DENIALS)


# --- 8. batch inference -----------------------------------------------------------------------------------------------
def test_the_batch_plan_skips_before_approval_then_scores_the_approved_package(stand_in):
    stack = stand_in.assembly.stack(f"-model-{MODEL}")
    skipped = closing_loop.batch_inference(stand_in.rh, stack, expect="skip")
    assert skipped["states"] == ["Plan", "ShouldScore", "NothingToScore"]
    assert "no Approved model package" in skipped["plan"]["reason"]
    stand_in.approve_package()
    planned = closing_loop.batch_inference(stand_in.rh, stack, expect="score", plan_only=True)
    assert planned["plan"]["partition"] == PARTITION


def test_a_batch_plan_of_another_group_is_caught(defect):
    def other_group(resources):
        for logical, res in resources.items():
            if res["Type"] == "AWS::Lambda::Function" and res["Properties"].get("Handler") == "batch_resolve.handler":
                res["Properties"]["Environment"]["Variables"]["MODEL_PACKAGE_GROUP"] = "mlops-dev-breast-cancer"

    env = defect(f"mlops-dev-model-{MODEL}", other_group)
    env.approve_package()
    # The plan role may read its own group only: the plan fails (the state machine's Failed state) as AccessDenied.
    with pytest.raises(RehearsalError, match=r"FAILED after \['Plan', 'Failed'\].*AccessDenied.*"
                                             r"sagemaker:DescribeModelPackageGroup"):
        closing_loop.batch_inference(env.rh, env.assembly.stack(f"-model-{MODEL}"), expect="score", plan_only=True)


# --- 10. ground truth -------------------------------------------------------------------------------------------------
def test_a_ground_truth_rule_off_the_upload_prefix_is_caught(defect):
    def other_prefix(resources):
        for logical, res in resources.items():
            if logical.startswith("GroundTruthOnUpload") and res["Type"] == "AWS::Events::Rule":
                res["Properties"]["EventPattern"]["detail"]["object"]["key"] = [
                    {"prefix": f"ground-truth/{MODEL}/production/"}]

    env = defect(SERVING, other_prefix)
    with pytest.raises(RehearsalError, match=r"targeting .*GroundTruthFunction.* do not match the upload of "
                                             rf"s3://.*/ground-truth/{MODEL}/{STAGE}/labels-"):
        closing_loop.ground_truth_and_model_quality(env.rh, MODEL, STAGE, deployment=None)


# --- the interpreter's pieces -----------------------------------------------------------------------------------------
def test_transform_filters_select_as_sagemaker_does():
    assert closing_loop._jsonpath_indexes("$[1:]", 4) == [1, 2, 3]
    assert closing_loop._jsonpath_indexes("$[0,-1]", 5) == [0, 4]
    assert closing_loop._split_args("'collect', $.a, States.Format('{}', $.b)") == [
        "'collect'", " $.a", " States.Format('{}', $.b)"]
