"""The CI/CD scripts CodeBuild runs, against moto (SageMaker registry and pipelines), botocore Stubber (what moto lacks
or cannot produce: ResourceNotFound/Conflict errors, Failed executions, endpoint status, sagemaker-runtime) and a
local HTTP server standing in for a Lambda Function URL."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import boto3
import pytest
from botocore.credentials import Credentials
from botocore.response import StreamingBody
from botocore.stub import Stubber
from moto import mock_aws

from cicd_scripts import deploy_serving, resolve_approved_package, smoke_test, start_pipeline
from tests.runtime.fake_aws import fake_aws_environment
from tests.runtime.function_url_server import FunctionUrlServer

REGION = "eu-west-1"
ACCOUNT = "123456789012"  # moto's default account
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/mlops-dev-sagemaker-pipeline"
PIPELINE = "mlops-dev-abalone-build"
SHA = "0123456789abcdef0123456789abcdef01234567"
GROUP = "mlops-dev-abalone"
IMAGE = "141502667606.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-xgboost:1.7-1"

METADATA = {
    "framework": "xgboost",
    "problem_type": "regression",
    "target": "rings",
    "features": [
        {"name": "sex", "type": "categorical", "categories": ["F", "I", "M"]},
        {"name": "length", "type": "numeric"},
    ],
    "encoded_columns": ["sex_F", "sex_I", "sex_M", "length"],
    "positive_threshold": None,
}
ENCODED_CSV = "1.0,0.0,0.0,0.5\n0.0,1.0,0.0,0.6\n0.0,0.0,1.0,0.7\n"
INSTANCES = [{"sex": "F", "length": 0.5}, {"sex": "I", "length": 0.6}, {"sex": "M", "length": 0.7}]


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fake credentials and region for moto and SigV4; no real config, profile, proxy or CodeBuild variables."""
    fake_aws_environment(monkeypatch, tmp_path, REGION)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def sm() -> Any:
    with mock_aws():
        yield boto3.client("sagemaker", region_name=REGION)


def stderr_error(capsys: pytest.CaptureFixture[str]) -> str:
    """The ``ERROR: ...`` line a script printed (without the prefix)."""
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("ERROR: ")]
    assert len(lines) == 1, lines
    return lines[0][len("ERROR: "):]


class Unreachable:
    """A client that fails the test when touched: proves a script refused its input before any AWS call."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"AWS was called ({name}) although the input is invalid")


# ==================================================================================================================
# start_pipeline
# ==================================================================================================================
def definition(*parameters: str) -> str:
    return json.dumps({
        "Version": "2020-12-01",
        "Metadata": {},
        "Parameters": [{"Name": p, "Type": "String", "DefaultValue": ""} for p in parameters],
        "PipelineExperimentConfig": {},
        "Steps": [{"Name": "Preprocess", "Type": "Processing", "Arguments": {}}],
    })


def create_pipeline(sm: Any, *parameters: str) -> None:
    sm.create_pipeline(PipelineName=PIPELINE, PipelineDefinition=definition(*parameters), RoleArn=ROLE_ARN)


def capture_calls(client: Any, operation: str) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []
    client.meta.events.register(f"provide-client-params.sagemaker.{operation}",
                                lambda params, **_: calls.append(dict(params)))
    return calls


def test_start_passes_git_commit_and_parameters_to_the_execution(sm, capsys):
    create_pipeline(sm, "GitCommit", "InputDataUrl", "MetricThreshold")
    starts = capture_calls(sm, "StartPipelineExecution")
    code = start_pipeline.main(
        ["--pipeline-name", PIPELINE, "--git-commit", SHA.upper(), "--parameter", "InputDataUrl=s3://curated/abalone/",
         "--parameter", "MetricThreshold=3.0"],
        sagemaker=sm,
    )
    assert code == 0
    arn = capsys.readouterr().out.strip()
    assert arn.startswith(f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:pipeline/{PIPELINE}/execution/")
    recorded = sm.list_pipeline_parameters_for_execution(PipelineExecutionArn=arn)["PipelineParameters"]
    assert recorded == [
        {"Name": "GitCommit", "Value": SHA},
        {"Name": "InputDataUrl", "Value": "s3://curated/abalone/"},
        {"Name": "MetricThreshold", "Value": "3.0"},
    ]
    (summary,) = sm.list_pipeline_executions(PipelineName=PIPELINE)["PipelineExecutionSummaries"]
    assert summary["PipelineExecutionArn"] == arn
    assert summary["PipelineExecutionDisplayName"] == f"commit-{SHA[:12]}"
    assert summary["PipelineExecutionDescription"] == f"git commit {SHA}"
    (call,) = starts
    assert call["ClientRequestToken"] == start_pipeline.client_request_token(
        PIPELINE, SHA, [{"Name": "InputDataUrl", "Value": "s3://curated/abalone/"},
                        {"Name": "MetricThreshold", "Value": "3.0"}])


def test_commit_defaults_to_codebuild_source_version(sm, capsys, monkeypatch):
    create_pipeline(sm, "GitCommit")
    monkeypatch.setenv("CODEBUILD_RESOLVED_SOURCE_VERSION", "ABCDEF1")
    monkeypatch.setenv("CODEBUILD_BUILD_ID", "mlops-dev-abalone-build:42")
    assert start_pipeline.main(["--pipeline-name", PIPELINE, "--display-name", "ci-run-7"], sagemaker=sm) == 0
    arn = capsys.readouterr().out.strip()
    assert sm.list_pipeline_parameters_for_execution(PipelineExecutionArn=arn)["PipelineParameters"] == [
        {"Name": "GitCommit", "Value": "abcdef1"}]
    (summary,) = sm.list_pipeline_executions(PipelineName=PIPELINE)["PipelineExecutionSummaries"]
    assert summary["PipelineExecutionDisplayName"] == "ci-run-7"
    assert summary["PipelineExecutionDescription"] == "git commit abcdef1, CodeBuild build mlops-dev-abalone-build:42"


@pytest.mark.parametrize("bad", ["abc12", "0123456789abcdef0123456789abcdef012345678", "g123456", "main", "12345 67"])
def test_invalid_sha_is_rejected_before_any_aws_call(bad, capsys):
    code = start_pipeline.main(["--pipeline-name", PIPELINE, "--git-commit", bad], sagemaker=Unreachable())
    assert code == 2
    assert stderr_error(capsys) == (
        f"--git-commit {bad.strip()!r} is not a git commit SHA: expected 7 to 40 hexadecimal characters")


def test_s3_source_version_is_not_taken_for_a_commit(capsys, monkeypatch):
    monkeypatch.setenv("CODEBUILD_RESOLVED_SOURCE_VERSION", "3sL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY")
    assert start_pipeline.main(["--pipeline-name", PIPELINE], sagemaker=Unreachable()) == 2
    assert stderr_error(capsys) == (
        "CODEBUILD_RESOLVED_SOURCE_VERSION '3sL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY' is not a git commit SHA: expected 7 "
        "to 40 hexadecimal characters; with an S3 source action CodeBuild sets it to an S3 object version, so pass "
        "--git-commit explicitly")


def test_no_commit_at_all(capsys):
    assert start_pipeline.main(["--pipeline-name", PIPELINE], sagemaker=Unreachable()) == 2
    assert stderr_error(capsys) == (
        "no git commit: pass --git-commit SHA, or run in CodeBuild, which sets CODEBUILD_RESOLVED_SOURCE_VERSION")


@pytest.mark.parametrize("args, message", [
    (["--parameter", "NoEquals"], "--parameter 'NoEquals': expected Key=Value"),
    (["--parameter", "GitCommit=abc"], "--parameter 'GitCommit=abc': GitCommit is set from --git-commit"),
    (["--parameter", "A=1", "--parameter", "A=2"], "--parameter A is given twice"),
    (["--parameter", "bad name=1"], "--parameter 'bad name=1': the name may hold only letters, digits, '-' and '_'"),
    (["--definition-file", "d.json"], "--definition-file and --role-arn go together (the role the pipeline runs as)"),
    (["--display-name", "has space"], "--display-name 'has space': letters, digits and hyphens only, 82 characters "
                                      "at most"),
])
def test_invalid_arguments(args, message, capsys):
    code = start_pipeline.main(["--pipeline-name", PIPELINE, "--git-commit", SHA, *args], sagemaker=Unreachable())
    assert code == 2
    assert stderr_error(capsys) == message


def test_request_token_is_deterministic_per_commit_parameters_and_rerun_tag():
    params = [{"Name": "A", "Value": "1"}, {"Name": "B", "Value": "2"}]
    token = start_pipeline.client_request_token(PIPELINE, SHA, params)
    assert len(token) == 64 and 32 <= len(token) <= 128  # SageMaker's ClientRequestToken bounds
    assert token == start_pipeline.client_request_token(PIPELINE, SHA.upper(), list(reversed(params)))
    others = {
        start_pipeline.client_request_token(PIPELINE, "1" + SHA[1:], params),
        start_pipeline.client_request_token(PIPELINE, SHA, [{"Name": "A", "Value": "9"}]),
        start_pipeline.client_request_token("other-pipeline", SHA, params),
        start_pipeline.client_request_token(PIPELINE, SHA, params, rerun_tag="retry-1"),
    }
    assert token not in others and len(others) == 4


def test_missing_pipeline_names_the_stack_that_creates_it(sm, capsys):
    code = start_pipeline.main(["--pipeline-name", PIPELINE, "--git-commit", SHA,
                                "--pipeline-stack", "mlops-dev-model-build-abalone"], sagemaker=sm)
    assert code == 1
    assert stderr_error(capsys) == (
        f"SageMaker pipeline '{PIPELINE}' does not exist in {REGION}; it is created by stack "
        "'mlops-dev-model-build-abalone': deploy that stack first, or pass --definition-file and --role-arn to "
        "create the pipeline from this build")


def stubbed_sagemaker() -> tuple[Any, Stubber]:
    client = boto3.client("sagemaker", region_name=REGION)
    return client, Stubber(client)


def describe_pipeline_response(*parameters: str) -> dict[str, Any]:
    return {"PipelineArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:pipeline/{PIPELINE}", "PipelineName": PIPELINE,
            "PipelineDefinition": definition(*parameters), "RoleArn": ROLE_ARN, "PipelineStatus": "Active"}


EXECUTION_ARN = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:pipeline/{PIPELINE}/execution/abc123def456"


def test_missing_pipeline_as_sagemaker_reports_it(capsys):
    """Real SageMaker answers ResourceNotFound (moto says ValidationException); both read as 'missing'."""
    client, stub = stubbed_sagemaker()
    stub.add_client_error("describe_pipeline", "ResourceNotFound",
                          f"Pipeline 'arn:aws:sagemaker:{REGION}:{ACCOUNT}:pipeline/{PIPELINE}' does not exist.",
                          expected_params={"PipelineName": PIPELINE})
    with stub:
        code = start_pipeline.main(["--pipeline-name", PIPELINE, "--git-commit", SHA], sagemaker=client)
    stub.assert_no_pending_responses()
    assert code == 1
    assert stderr_error(capsys) == (
        f"SageMaker pipeline '{PIPELINE}' does not exist in {REGION}; it is created by the model build stack (pass "
        "--pipeline-stack to name it here): deploy that stack first, or pass --definition-file and --role-arn to "
        "create the pipeline from this build")


@pytest.mark.parametrize("code, message, expected", [
    ("ResourceNotFound", f"Pipeline '{PIPELINE}' does not exist.",
     f"SageMaker pipeline '{PIPELINE}' does not exist in {REGION}; it is created by stack 'build-stack': deploy "
     "that stack first, or pass --definition-file and --role-arn to create the pipeline from this build"),
    ("ConflictException", "The pipeline is being updated.",
     f"SageMaker refused to start pipeline '{PIPELINE}' (ConflictException: The pipeline is being updated.); the "
     "pipeline is being updated or another request with this commit is in flight: retry the build in a few minutes"),
    ("ResourceLimitExceeded", "Too many running executions.",
     f"SageMaker refused to start pipeline '{PIPELINE}' (ResourceLimitExceeded: Too many running executions.); "
     "too many executions are running: wait for them or stop one (aws sagemaker list-pipeline-executions "
     f"--pipeline-name {PIPELINE}), then retry the build"),
])
def test_start_refused(code, message, expected, capsys):
    client, stub = stubbed_sagemaker()
    stub.add_response("describe_pipeline", describe_pipeline_response("GitCommit"), {"PipelineName": PIPELINE})
    stub.add_client_error("start_pipeline_execution", code, message)
    with stub:
        rc = start_pipeline.main(["--pipeline-name", PIPELINE, "--git-commit", SHA,
                                  "--pipeline-stack", "build-stack"], sagemaker=client)
    stub.assert_no_pending_responses()
    assert rc == 1
    assert capsys.readouterr().err.splitlines()[-1] == f"ERROR: {expected}"


def test_upsert_creates_a_missing_pipeline_then_starts_it(sm, capsys, tmp_path):
    path = tmp_path / "definition.json"
    path.write_text(definition("GitCommit"))
    code = start_pipeline.main(["--pipeline-name", PIPELINE, "--git-commit", SHA, "--definition-file", str(path),
                                "--role-arn", ROLE_ARN], sagemaker=sm)
    assert code == 0
    captured = capsys.readouterr()
    assert f"pipeline '{PIPELINE}' created from {path}" in captured.err
    desc = sm.describe_pipeline(PipelineName=PIPELINE)
    assert json.loads(desc["PipelineDefinition"]) == json.loads(definition("GitCommit"))
    assert desc["RoleArn"] == ROLE_ARN
    arn = captured.out.strip()
    assert sm.list_pipeline_parameters_for_execution(PipelineExecutionArn=arn)["PipelineParameters"] == [
        {"Name": "GitCommit", "Value": SHA}]


def test_upsert_updates_an_existing_pipeline(sm, capsys, tmp_path):
    create_pipeline(sm, "GitCommit")
    creates = capture_calls(sm, "CreatePipeline")
    new_role = f"arn:aws:iam::{ACCOUNT}:role/new-pipeline-role"
    path = tmp_path / "definition.json"
    path.write_text(definition("GitCommit", "InputDataUrl"))
    code = start_pipeline.main(["--pipeline-name", PIPELINE, "--git-commit", SHA, "--definition-file", str(path),
                                "--role-arn", new_role, "--parameter", "InputDataUrl=s3://x/y"], sagemaker=sm)
    assert code == 0
    assert f"pipeline '{PIPELINE}' updated from {path}" in capsys.readouterr().err
    assert creates == []
    desc = sm.describe_pipeline(PipelineName=PIPELINE)
    assert [p["Name"] for p in json.loads(desc["PipelineDefinition"])["Parameters"]] == ["GitCommit", "InputDataUrl"]
    assert desc["RoleArn"] == new_role


def test_definition_must_declare_git_commit(sm, capsys, tmp_path):
    path = tmp_path / "definition.json"
    path.write_text(definition("InputDataUrl"))
    code = start_pipeline.main(["--pipeline-name", PIPELINE, "--git-commit", SHA, "--definition-file", str(path),
                                "--role-arn", ROLE_ARN], sagemaker=sm)
    assert code == 2
    assert stderr_error(capsys) == (
        f"pipeline '{PIPELINE}' does not declare parameter(s) ['GitCommit'] (it declares ['InputDataUrl']); add "
        "them to the pipeline definition (ParameterString(name=...)) or drop them")
    assert sm.list_pipelines()["PipelineSummaries"] == []


def test_deployed_pipeline_must_declare_the_parameters(sm, capsys):
    create_pipeline(sm, "GitCommit")
    code = start_pipeline.main(["--pipeline-name", PIPELINE, "--git-commit", SHA, "--parameter", "Typo=1"],
                               sagemaker=sm)
    assert code == 2
    assert stderr_error(capsys) == (
        f"pipeline '{PIPELINE}' does not declare parameter(s) ['Typo'] (it declares ['GitCommit']); add them to "
        "the pipeline definition (ParameterString(name=...)) or drop them")
    assert sm.list_pipeline_executions(PipelineName=PIPELINE)["PipelineExecutionSummaries"] == []


@pytest.mark.parametrize("content, message", [
    ("{not json", "--definition-file '{p}' is not valid JSON: Expecting property name enclosed in double quotes at "
                  "line 1, column 2"),
    ('{"Version": "2020-12-01"}', "--definition-file '{p}' is not a SageMaker pipeline definition (no 'Steps')"),
])
def test_bad_definition_file(content, message, capsys, tmp_path):
    path = tmp_path / "definition.json"
    path.write_text(content)
    code = start_pipeline.main(["--pipeline-name", PIPELINE, "--git-commit", SHA, "--definition-file", str(path),
                                "--role-arn", ROLE_ARN], sagemaker=Unreachable())
    assert code == 2
    assert stderr_error(capsys) == message.format(p=path)


def test_wait_until_succeeded(sm, capsys):
    create_pipeline(sm, "GitCommit")
    code = start_pipeline.main(["--pipeline-name", PIPELINE, "--git-commit", SHA, "--wait"], sagemaker=sm,
                               sleep=lambda s: pytest.fail("moto executions succeed at once; no sleep expected"))
    assert code == 0
    err = capsys.readouterr().err
    assert "pipeline execution status: Succeeded" in err


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def time(self) -> float:
        return self.now


def execution(status: str, reason: str | None = None) -> dict[str, Any]:
    out = {"PipelineArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:pipeline/{PIPELINE}",
           "PipelineExecutionArn": EXECUTION_ARN, "PipelineExecutionStatus": status}
    if reason:
        out["FailureReason"] = reason
    return out


def stub_start(stub: Stubber) -> None:
    stub.add_response("describe_pipeline", describe_pipeline_response("GitCommit"), {"PipelineName": PIPELINE})
    stub.add_response("start_pipeline_execution", {"PipelineExecutionArn": EXECUTION_ARN}, {
        "PipelineName": PIPELINE, "PipelineExecutionDisplayName": f"commit-{SHA[:12]}",
        "PipelineExecutionDescription": f"git commit {SHA}",
        "PipelineParameters": [{"Name": "GitCommit", "Value": SHA}],
        "ClientRequestToken": start_pipeline.client_request_token(PIPELINE, SHA, []),
    })


def test_wait_until_failed_reports_the_failed_step(capsys):
    client, stub = stubbed_sagemaker()
    stub_start(stub)
    for status in ("Executing", "Executing", "Executing"):
        stub.add_response("describe_pipeline_execution", execution(status), {"PipelineExecutionArn": EXECUTION_ARN})
    stub.add_response("describe_pipeline_execution", execution("Failed", "Step failure: One or multiple steps failed."))
    stub.add_response("list_pipeline_execution_steps", {"PipelineExecutionSteps": [
        {"StepName": "Evaluate", "StepStatus": "Succeeded"},
        {"StepName": "CheckMetric", "StepStatus": "Failed",
         "FailureReason": "Model abalone rmse=3.4 does not meet the threshold 3.0; not registered."},
    ]}, {"PipelineExecutionArn": EXECUTION_ARN})
    clock = FakeClock()
    with stub:
        code = start_pipeline.main(["--pipeline-name", PIPELINE, "--git-commit", SHA, "--wait"], sagemaker=client,
                                   sleep=clock.sleep, clock=clock.time)
    stub.assert_no_pending_responses()
    assert code == 1
    assert clock.sleeps == [15.0, 22.5, 33.75]  # backoff: x1.5 from 15 s, capped at 60 s
    assert stderr_error(capsys) == (
        f"pipeline execution {EXECUTION_ARN} ended Failed: Step failure: One or multiple steps failed.; failed "
        "steps: CheckMetric: Model abalone rmse=3.4 does not meet the threshold 3.0; not registered.")


def test_wait_until_stopped(capsys):
    client, stub = stubbed_sagemaker()
    stub_start(stub)
    stub.add_response("describe_pipeline_execution", execution("Stopping"))
    stub.add_response("describe_pipeline_execution", execution("Stopped"))
    stub.add_client_error("list_pipeline_execution_steps", "AccessDeniedException", "not authorized")
    clock = FakeClock()
    with stub:
        code = start_pipeline.main(["--pipeline-name", PIPELINE, "--git-commit", SHA, "--wait"], sagemaker=client,
                                   sleep=clock.sleep, clock=clock.time)
    assert code == 1
    assert stderr_error(capsys) == (
        f"pipeline execution {EXECUTION_ARN} ended Stopped: SageMaker gave no failure reason")


def test_wait_timeout_leaves_the_execution_running(capsys):
    client, stub = stubbed_sagemaker()
    stub_start(stub)
    for _ in range(5):  # at 0, 15, 37.5, 71.25 and 120 s
        stub.add_response("describe_pipeline_execution", execution("Executing"))
    clock = FakeClock()
    with stub:
        code = start_pipeline.main(["--pipeline-name", PIPELINE, "--git-commit", SHA, "--wait",
                                    "--timeout-minutes", "2"], sagemaker=client, sleep=clock.sleep, clock=clock.time)
    stub.assert_no_pending_responses()
    assert code == 3
    assert clock.sleeps == [15.0, 22.5, 33.75, 48.75]  # the last wait is cut at the 120 s deadline
    assert stderr_error(capsys) == (
        f"pipeline execution {EXECUTION_ARN} is still Executing after 2 minutes; it keeps running (stop it with: aws "
        f"sagemaker stop-pipeline-execution --pipeline-execution-arn {EXECUTION_ARN}), or raise --timeout-minutes")


def test_help_returns_instead_of_exiting(capsys):
    assert start_pipeline.main(["--help"]) == 0
    assert "--pipeline-name" in capsys.readouterr().out
    assert start_pipeline.main([]) == 2
    assert "the following arguments are required: --pipeline-name" in capsys.readouterr().err


# ==================================================================================================================
# resolve_approved_package
# ==================================================================================================================
def baseline_metrics(n: int) -> dict[str, Any]:
    """What the model build pipeline records in the package (contract C2)."""
    prefix = f"s3://artifacts/models/abalone/monitoring/v{n}"
    return {"ModelDataQuality": {
        "Statistics": {"ContentType": "application/json", "S3Uri": f"{prefix}/statistics.json"},
        "Constraints": {"ContentType": "application/json", "S3Uri": f"{prefix}/constraints.json"},
    }}


def register(sm: Any, status: str, n: int, commit: str | None = None, group: str = GROUP,
             baseline: bool = False) -> str:
    kwargs: dict[str, Any] = {}
    if commit:
        kwargs["CustomerMetadataProperties"] = {"GitCommit": commit}
    if baseline:
        kwargs["ModelMetrics"] = baseline_metrics(n)
    return sm.create_model_package(
        ModelPackageGroupName=group,
        ModelApprovalStatus=status,
        InferenceSpecification={
            "Containers": [{"Image": IMAGE, "ModelDataUrl": f"s3://artifacts/abalone/v{n}/model.tar.gz"}],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["text/csv"],
        },
        **kwargs,
    )["ModelPackageArn"]


@pytest.fixture
def group(sm: Any) -> Any:
    sm.create_model_package_group(ModelPackageGroupName=GROUP)
    return sm


def test_latest_approved_wins_over_rejected_and_pending(group, capsys, tmp_path):
    sm = group
    register(sm, "Approved", 1, "1111111")
    register(sm, "Rejected", 2, "2222222")
    register(sm, "PendingManualApproval", 3, "3333333")
    v4 = register(sm, "Approved", 4, "4444444")
    register(sm, "PendingManualApproval", 5, "5555555")
    code = resolve_approved_package.main(["--model-package-group", GROUP, "--output-file", "out/package.json",
                                          "--export-env-file", "deploy.env"], sagemaker=sm)
    assert code == 0
    expected = {"model_package_arn": v4, "model_package_version": 4,
                "model_data_url": "s3://artifacts/abalone/v4/model.tar.gz", "git_commit": "4444444", "image": IMAGE,
                "baseline_statistics_url": None, "baseline_constraints_url": None}
    assert json.loads(capsys.readouterr().out) == expected
    assert json.loads((tmp_path / "out/package.json").read_text()) == expected
    assert (tmp_path / "deploy.env").read_text() == (
        f"export PACKAGE_FOUND=true\nexport MODEL_PACKAGE_ARN={v4}\nexport MODEL_PACKAGE_VERSION=4\n"
        "export MODEL_DATA_URL=s3://artifacts/abalone/v4/model.tar.gz\nexport GIT_COMMIT=4444444\n"
        f"export MODEL_IMAGE={IMAGE}\nexport BASELINE_STATISTICS_URL=none\nexport BASELINE_CONSTRAINTS_URL=none\n")
    assert v4 == f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/{GROUP}/4"


NO_APPROVED = (
    f"model package group '{GROUP}' has no Approved model package (Rejected and PendingManualApproval ones never "
    "deploy); approve a version in SageMaker Studio or with: aws sagemaker update-model-package --model-package-arn "
    "<arn of the version> --model-approval-status Approved")


def test_only_rejected_and_pending_exits_2(group, capsys, tmp_path):
    register(group, "Rejected", 1)
    register(group, "PendingManualApproval", 2)
    code = resolve_approved_package.main(["--model-package-group", GROUP, "--output-file", "package.json"],
                                         sagemaker=group)
    assert code == 2
    assert stderr_error(capsys) == NO_APPROVED
    assert not (tmp_path / "package.json").exists()


def test_empty_group_exits_2(group, capsys):
    assert resolve_approved_package.main(["--model-package-group", GROUP], sagemaker=group) == 2
    assert stderr_error(capsys) == NO_APPROVED


def test_nothing_approved_is_a_clean_end_with_none_is_ok(group, capsys, tmp_path):
    """The deploy CD's first run (CodePipeline starts a new pipeline): no approved package, no failure, no page."""
    register(group, "PendingManualApproval", 1)
    code = resolve_approved_package.main(["--model-package-group", GROUP, "--none-is-ok", "--require-baseline",
                                          "--export-env-file", "resolved.env"], sagemaker=group)
    assert code == 0
    assert json.loads(capsys.readouterr().out) is None
    assert (tmp_path / "resolved.env").read_text() == (
        "export PACKAGE_FOUND=false\nexport MODEL_PACKAGE_ARN=none\nexport MODEL_PACKAGE_VERSION=none\n"
        "export MODEL_DATA_URL=none\nexport GIT_COMMIT=none\nexport MODEL_IMAGE=none\n"
        "export BASELINE_STATISTICS_URL=none\nexport BASELINE_CONSTRAINTS_URL=none\n")


def test_missing_group_is_an_error_even_with_none_is_ok(sm, capsys):
    assert resolve_approved_package.main(["--model-package-group", GROUP, "--none-is-ok"], sagemaker=sm) == 1
    assert "does not exist" in stderr_error(capsys)


def test_baseline_is_exported_and_required_for_an_endpoint(group, capsys, tmp_path):
    v1 = register(group, "Approved", 1, baseline=True)
    code = resolve_approved_package.main(["--model-package-group", GROUP, "--require-baseline",
                                          "--export-env-file", "resolved.env"], sagemaker=group)
    assert code == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["baseline_statistics_url"], info["baseline_constraints_url"]) == (
        "s3://artifacts/models/abalone/monitoring/v1/statistics.json",
        "s3://artifacts/models/abalone/monitoring/v1/constraints.json")
    env = (tmp_path / "resolved.env").read_text()
    assert "export BASELINE_STATISTICS_URL=s3://artifacts/models/abalone/monitoring/v1/statistics.json\n" in env
    assert "export BASELINE_CONSTRAINTS_URL=s3://artifacts/models/abalone/monitoring/v1/constraints.json\n" in env
    v2 = register(group, "Approved", 2)  # no baseline: an error only when the endpoint needs it
    assert resolve_approved_package.main(["--model-package-group", GROUP], sagemaker=group) == 0
    capsys.readouterr()
    assert resolve_approved_package.main(["--model-package-group", GROUP, "--require-baseline"], sagemaker=group) == 1
    assert stderr_error(capsys) == (
        f"model package {v2} has no Model Monitor baseline (ModelMetrics.ModelDataQuality.Statistics and Constraints"
        ".S3Uri); the endpoint's data-quality monitor needs it: register the package from the model build pipeline, "
        "which records the baseline")
    assert v1 != v2


def test_rejecting_the_latest_approved_falls_back_to_the_previous_one(group, capsys):
    v1 = register(group, "Approved", 1)
    v2 = register(group, "Approved", 2)
    group.update_model_package(ModelPackageArn=v2, ModelApprovalStatus="Rejected")
    assert resolve_approved_package.main(["--model-package-group", GROUP], sagemaker=group) == 0
    assert json.loads(capsys.readouterr().out)["model_package_arn"] == v1
    group.update_model_package(ModelPackageArn=v1, ModelApprovalStatus="Rejected")
    assert resolve_approved_package.main(["--model-package-group", GROUP], sagemaker=group) == 2
    assert stderr_error(capsys) == NO_APPROVED


def test_approving_a_pending_package_makes_it_resolve(group, capsys):
    register(group, "Approved", 1)
    v2 = register(group, "PendingManualApproval", 2)
    group.update_model_package(ModelPackageArn=v2, ModelApprovalStatus="Approved")
    assert resolve_approved_package.main(["--model-package-group", GROUP], sagemaker=group) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["model_package_arn"], out["model_package_version"], out["git_commit"]) == (v2, 2, None)


def test_follows_every_page(group, capsys):
    arns = [register(group, "Approved" if n % 3 else "Rejected", n) for n in range(1, 10)]
    pages = capture_calls(group, "ListModelPackages")
    code = resolve_approved_package.main(["--model-package-group", GROUP], sagemaker=group, page_size=2)
    assert code == 0
    assert json.loads(capsys.readouterr().out)["model_package_arn"] == arns[7]  # v8; v9 is rejected
    assert len(pages) == 3  # 6 approved packages, 2 per page
    assert all(p["ModelApprovalStatus"] == "Approved" and p["SortOrder"] == "Descending" and p["MaxResults"] == 2
               for p in pages)
    assert [("NextToken" in p) for p in pages] == [False, True, True]


def summary(n: int, status: str, day: int) -> dict[str, Any]:
    return {"ModelPackageGroupName": GROUP, "ModelPackageVersion": n,
            "ModelPackageArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/{GROUP}/{n}",
            "CreationTime": dt.datetime(2025, 1, day, tzinfo=dt.timezone.utc), "ModelPackageStatus": "Completed",
            "ModelApprovalStatus": status}


def test_newest_approved_is_taken_whatever_page_it_is_on(capsys):
    """The maximum over all pages, and a summary whose status is not Approved never resolves."""
    client, stub = stubbed_sagemaker()
    stub.add_response("describe_model_package_group", {
        "ModelPackageGroupName": GROUP, "ModelPackageGroupArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:"
        f"model-package-group/{GROUP}", "CreationTime": dt.datetime(2025, 1, 1), "CreatedBy": {},
        "ModelPackageGroupStatus": "Completed"})
    stub.add_response("list_model_packages", {"ModelPackageSummaryList": [summary(2, "Approved", 2),
                                                                         summary(9, "Rejected", 9)],
                                              "NextToken": "page-2"})
    stub.add_response("list_model_packages", {"ModelPackageSummaryList": [summary(3, "Approved", 3)]},
                      {"ModelPackageGroupName": GROUP, "ModelApprovalStatus": "Approved", "SortBy": "CreationTime",
                       "SortOrder": "Descending", "MaxResults": 100, "NextToken": "page-2"})
    arn3 = summary(3, "Approved", 3)["ModelPackageArn"]
    stub.add_response("describe_model_package", {
        "ModelPackageName": GROUP, "ModelPackageArn": arn3, "ModelPackageVersion": 3,
        "CreationTime": dt.datetime(2025, 1, 3), "ModelPackageStatus": "Completed", "ModelApprovalStatus": "Approved",
        "ModelPackageStatusDetails": {"ValidationStatuses": []},
        "MetadataProperties": {"CommitId": "deadbeef"},
        "InferenceSpecification": {"Containers": [{"Image": IMAGE, "ModelDataSource": {"S3DataSource": {
            "S3Uri": "s3://artifacts/v3/model.tar.gz", "S3DataType": "S3Object", "CompressionType": "Gzip"}}}]},
    }, {"ModelPackageName": arn3})
    with stub:
        assert resolve_approved_package.main(["--model-package-group", GROUP], sagemaker=client) == 0
    stub.assert_no_pending_responses()
    assert json.loads(capsys.readouterr().out) == {
        "model_package_arn": arn3, "model_package_version": 3, "model_data_url": "s3://artifacts/v3/model.tar.gz",
        "git_commit": "deadbeef", "image": IMAGE, "baseline_statistics_url": None, "baseline_constraints_url": None}


def test_missing_group_exits_1(sm, capsys):
    assert resolve_approved_package.main(["--model-package-group", GROUP], sagemaker=sm) == 1
    assert stderr_error(capsys) == (
        f"model package group '{GROUP}' does not exist in {REGION}; the model build stack creates it and the model "
        "build pipeline registers versions in it")


def test_expected_arn_guards_against_a_newer_approval(group, capsys):
    v1 = register(group, "Approved", 1)
    v2 = register(group, "Approved", 2)
    v3 = register(group, "Rejected", 3)
    assert resolve_approved_package.main(["--model-package-group", GROUP, "--expected-arn", v2], sagemaker=group) == 0
    capsys.readouterr()
    assert resolve_approved_package.main(["--model-package-group", GROUP, "--expected-arn", v1], sagemaker=group) == 3
    assert stderr_error(capsys) == (
        f"--expected-arn {v1} is not the latest approved package of group '{GROUP}': {v2} (version 2) is newer; "
        "the run for that approval deploys it, this one stops")
    assert resolve_approved_package.main(["--model-package-group", GROUP, "--expected-arn", v3], sagemaker=group) == 3
    assert stderr_error(capsys) == (
        f"--expected-arn {v3} is Rejected, not Approved; the latest approved package of group '{GROUP}' is {v2} "
        "(version 2); not deploying")


def test_invalid_group_name(capsys):
    assert resolve_approved_package.main(["--model-package-group", "bad_name!"], sagemaker=Unreachable()) == 2
    assert stderr_error(capsys) == "--model-package-group 'bad_name!' is not a model package group name or ARN"


# ==================================================================================================================
# deploy_serving
# ==================================================================================================================
STACK = "mlops-dev-serving-abalone-staging"
PACKAGE_ARN = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/{GROUP}/4"
FUNCTION_URL = "https://abcdefghijklmnopqrstuvwxyz012345.lambda-url.eu-west-1.on.aws/"


def test_serving_stack_name():
    assert deploy_serving.serving_stack_name("mlops", "dev", "abalone", "staging") == STACK
    with pytest.raises(ValueError, match=r"^stage 'Prod' is not a valid stage name"):
        deploy_serving.serving_stack_name("mlops", "dev", "abalone", "Prod")
    with pytest.raises(ValueError, match=r"^project 'a-very-long-project-name' is not a valid project name"):
        deploy_serving.serving_stack_name("a-very-long-project-name", "dev", "abalone", "prod")


class FakeCdk:
    """Stands in for `npx cdk deploy`: records the command and writes the outputs file as the CDK CLI does."""

    def __init__(self, outputs: dict[str, Any] | None, code: int = 0) -> None:
        self.outputs, self.code = outputs, code
        self.calls: list[tuple[list[str], dict[str, str]]] = []

    def __call__(self, cmd: Any, env: Any) -> int:
        self.calls.append((list(cmd), dict(env)))
        if self.outputs is not None:
            target = Path(cmd[cmd.index("--outputs-file") + 1])
            target.parent.mkdir(parents=True, exist_ok=True)  # the CLI's fs.ensureFileSync
            target.write_text(json.dumps(self.outputs, indent=2))
        return self.code


def real_shaped_outputs(**outputs: str) -> dict[str, Any]:
    """What `cdk deploy --outputs-file` writes: outputs by stack name (with --exclusively, only the one stack)."""
    return {STACK: {"ExportsOutputRefServingEndpoint1234ABCD": "ignored", **outputs}}


def test_deploy_runs_cdk_and_writes_the_smoke_targets(capsys, tmp_path):
    cdk = FakeCdk(real_shaped_outputs(EndpointName="mlops-dev-abalone-staging-endpoint", FunctionUrl=FUNCTION_URL))
    code = deploy_serving.main(["--project", "mlops", "--environment", "dev", "--model", "abalone", "--stage",
                                "staging", "--model-package-arn", PACKAGE_ARN], runner=cdk)
    assert code == 0
    ((cmd, env),) = cdk.calls
    assert cmd == ["npx", "cdk", "deploy", STACK, "--require-approval", "never", "--exclusively", "-c", "env=dev",
                   "-c", "serving=abalone/staging", "--parameters", f"{STACK}:ModelPackageArn={PACKAGE_ARN}",
                   "--outputs-file", "cdk-outputs.json"]
    assert env["CDK_DISABLE_VERSION_CHECK"] == "true" and env["AWS_REGION"] == REGION
    expected = {"stack_name": STACK, "stage": "staging", "model_package_arn": PACKAGE_ARN,
                "endpoint_name": "mlops-dev-abalone-staging-endpoint", "function_url": FUNCTION_URL}
    assert json.loads((tmp_path / "smoke-targets.json").read_text()) == expected
    assert json.loads(capsys.readouterr().out) == expected


def test_deploy_takes_the_package_from_the_resolver_output_and_finds_construct_outputs(tmp_path):
    (tmp_path / "package.json").write_text(json.dumps({"model_package_arn": PACKAGE_ARN, "model_package_version": 4}))
    cdk = FakeCdk(real_shaped_outputs(ServingFunctionUrl5F3A2B1C=FUNCTION_URL))
    code = deploy_serving.main(["--project", "mlops", "--environment", "dev", "--model", "abalone", "--stage",
                                "staging", "--package-file", "package.json", "--outputs-file", "out/cdk.json",
                                "--targets-file", "out/targets.json"], runner=cdk)
    assert code == 0
    assert cdk.calls[0][0][-2:] == ["--outputs-file", "out/cdk.json"]
    targets = json.loads((tmp_path / "out/targets.json").read_text())
    assert (targets["endpoint_name"], targets["function_url"]) == (None, FUNCTION_URL)


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    (tmp_path / "out").mkdir()
    return tmp_path


@pytest.mark.parametrize("cdk, message", [
    (FakeCdk(None, code=1), f"cdk deploy of stack '{STACK}' failed with exit code 1 (see its output above)"),
    (FakeCdk({"other-stack": {}}), f"outputs file 'cdk-outputs.json' has no outputs for stack '{STACK}' (stacks: "
                                   "['other-stack'])"),
    (FakeCdk({STACK: {"BucketName": "b"}}),
     f"stack '{STACK}' has neither output 'EndpointName' nor 'FunctionUrl' (outputs: ['BucketName']); the serving "
     "stack must export the endpoint name and/or the function URL"),
    (FakeCdk({STACK: {"AFunctionUrl0A1B2C3D": "u1", "BFunctionUrl4E5F6A7B": "u2"}}),
     f"stack '{STACK}' has several outputs that look like FunctionUrl: ['AFunctionUrl0A1B2C3D', "
     "'BFunctionUrl4E5F6A7B']; name one exactly"),
])
def test_deploy_failures(cdk, message, capsys, out_dir):
    code = deploy_serving.main(["--project", "mlops", "--environment", "dev", "--model", "abalone", "--stage",
                                "staging", "--model-package-arn", PACKAGE_ARN], runner=cdk)
    assert code == 1
    assert stderr_error(capsys) == message
    assert not (out_dir / "smoke-targets.json").exists()


def test_deploy_refuses_a_bad_arn_without_running_cdk(capsys):
    cdk = FakeCdk(None)
    code = deploy_serving.main(["--project", "mlops", "--environment", "dev", "--model", "abalone", "--stage",
                                "staging", "--model-package-arn", "mlops-dev-abalone/4"], runner=cdk)
    assert code == 2 and cdk.calls == []
    assert stderr_error(capsys) == (
        "'mlops-dev-abalone/4' is not a model package ARN (arn:aws:sagemaker:<region>:<account>:model-package/...)")


def test_deploy_dry_run_prints_the_command(capsys):
    code = deploy_serving.main(["--project", "mlops", "--environment", "prod", "--model", "abalone", "--stage",
                                "prod", "--model-package-arn", PACKAGE_ARN, "--dry-run"],
                               runner=lambda *a: pytest.fail("dry run must not deploy"))
    assert code == 0
    assert json.loads(capsys.readouterr().out)[3:11] == [
        "mlops-prod-serving-abalone-prod", "--require-approval", "never", "--exclusively", "-c", "env=prod",
        "-c", "serving=abalone/prod"]



def test_deploy_passes_the_model_data_url_for_model_in_lambda(capsys):
    url = "s3://artifacts/models/abalone/training/job/output/model.tar.gz"
    code = deploy_serving.main(["--project", "mlops", "--environment", "dev", "--model", "abalone", "--stage",
                                "staging", "--model-package-arn", PACKAGE_ARN, "--model-data-url", url,
                                "--lambda-mode", "model", "--dry-run"],
                               runner=lambda *a: pytest.fail("dry run must not deploy"))
    assert code == 0
    cmd = json.loads(capsys.readouterr().out)
    stack = "mlops-dev-serving-abalone-staging"
    assert cmd[cmd.index("--outputs-file") - 4:cmd.index("--outputs-file")] == [
        "--parameters", f"{stack}:ModelPackageArn={PACKAGE_ARN}", "--parameters", f"{stack}:ModelDataUrl={url}"]


STATS = "s3://artifacts/models/abalone/monitoring/v4/statistics.json"
CONSTRAINTS = "s3://artifacts/models/abalone/monitoring/v4/constraints.json"
MODEL_URL = "s3://artifacts/abalone/v4/model.tar.gz"


def _parameters(cmd: list[str]) -> list[str]:
    return [cmd[i + 1].split(":", 1)[1] for i, a in enumerate(cmd) if a == "--parameters"]


@pytest.mark.parametrize("flags, expected", [
    # endpoint + proxy Lambda (prod): the baseline, and ModelDataUrl (the function reads the feature spec from it)
    (["--endpoint", "--lambda-mode", "endpoint_proxy"],
     [f"ModelPackageArn={PACKAGE_ARN}", f"BaselineStatisticsUrl={STATS}", f"BaselineConstraintsUrl={CONSTRAINTS}",
      f"ModelDataUrl={MODEL_URL}"]),
    # endpoint + model-in-Lambda: all three
    (["--endpoint", "--lambda-mode", "model"],
     [f"ModelPackageArn={PACKAGE_ARN}", f"BaselineStatisticsUrl={STATS}", f"BaselineConstraintsUrl={CONSTRAINTS}",
      f"ModelDataUrl={MODEL_URL}"]),
    # Lambda only: no baseline (no endpoint to monitor)
    (["--lambda-mode", "model"], [f"ModelPackageArn={PACKAGE_ARN}", f"ModelDataUrl={MODEL_URL}"]),
    # endpoint only: ModelDataUrl is not declared, so not passed even though the pipeline gives it
    (["--endpoint", "--lambda-mode", "none"],
     [f"ModelPackageArn={PACKAGE_ARN}", f"BaselineStatisticsUrl={STATS}", f"BaselineConstraintsUrl={CONSTRAINTS}"]),
])
def test_deploy_passes_exactly_the_parameters_the_stack_declares(flags, expected, capsys):
    """What buildspecs/model_deploy.yml runs: every resolved value given, the stack's configuration decides."""
    code = deploy_serving.main(["--project", "mlops", "--environment", "dev", "--model", "abalone", "--stage",
                                "staging", "--model-package-arn", PACKAGE_ARN, "--model-data-url", MODEL_URL,
                                "--baseline-statistics-url", STATS, "--baseline-constraints-url", CONSTRAINTS,
                                *flags, "--dry-run"], runner=lambda *a: pytest.fail("dry run must not deploy"))
    assert code == 0
    assert _parameters(json.loads(capsys.readouterr().out)) == expected


def test_deploy_with_an_endpoint_needs_the_baseline(capsys):
    code = deploy_serving.main(["--project", "mlops", "--environment", "dev", "--model", "abalone", "--stage",
                                "staging", "--model-package-arn", PACKAGE_ARN, "--endpoint",
                                "--baseline-statistics-url", STATS, "--baseline-constraints-url", "none",
                                "--dry-run"], runner=lambda *a: pytest.fail("must not deploy"))
    assert code == 2
    assert stderr_error(capsys) == (
        "--baseline-constraints-url is required with --endpoint: the endpoint's data-quality monitor takes the "
        "package's Model Monitor baseline (resolve_approved_package exports it)")


def test_deploy_of_model_in_lambda_needs_the_model_data(capsys):
    code = deploy_serving.main(["--project", "mlops", "--environment", "dev", "--model", "abalone", "--stage",
                                "staging", "--model-package-arn", PACKAGE_ARN, "--lambda-mode", "model",
                                "--model-data-url", "none", "--dry-run"],
                               runner=lambda *a: pytest.fail("must not deploy"))
    assert code == 2
    assert stderr_error(capsys) == ("--model-data-url is required with --lambda-mode model: the function loads the "
                                    "model (model mode) or its feature spec (endpoint_proxy mode) from the package's "
                                    "model.tar.gz")


def test_deploy_refuses_a_model_data_url_that_is_not_s3(capsys):
    code = deploy_serving.main(["--project", "mlops", "--environment", "dev", "--model", "abalone", "--stage",
                                "staging", "--model-package-arn", PACKAGE_ARN, "--model-data-url", "/tmp/model.tar.gz",
                                "--dry-run"], runner=lambda *a: pytest.fail("must not deploy"))
    assert code == 2
    assert stderr_error(capsys) == (
        "--model-data-url '/tmp/model.tar.gz' is not an s3:// URI of the model artifact (model.tar.gz)")

# ==================================================================================================================
# smoke_test: endpoint (Stubber for sagemaker and sagemaker-runtime)
# ==================================================================================================================
ENDPOINT = "mlops-dev-abalone-staging-endpoint"


def endpoint_status(status: str, reason: str | None = None) -> dict[str, Any]:
    out = {"EndpointName": ENDPOINT, "EndpointArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/{ENDPOINT}",
           "EndpointStatus": status, "CreationTime": dt.datetime(2025, 1, 1), "LastModifiedTime": dt.datetime(2025, 1, 1)}
    if reason:
        out["FailureReason"] = reason
    return out


def body(text: str) -> StreamingBody:
    raw = text.encode()
    return StreamingBody(io.BytesIO(raw), len(raw))


@pytest.fixture
def metadata_file(tmp_path: Path) -> str:
    (tmp_path / "model_metadata.json").write_text(json.dumps(METADATA))
    return "model_metadata.json"


def run_endpoint_smoke(statuses: list[dict[str, Any]], invoke: Callable[[Stubber], None],
                       args: list[str]) -> int:
    sm = boto3.client("sagemaker", region_name=REGION)
    rt = boto3.client("sagemaker-runtime", region_name=REGION)
    with Stubber(sm) as sm_stub, Stubber(rt) as rt_stub:
        for s in statuses:
            sm_stub.add_response("describe_endpoint", s, {"EndpointName": ENDPOINT})
        invoke(rt_stub)
        code = smoke_test.main(["--endpoint-name", ENDPOINT, "--poll-seconds", "0", *args], sagemaker=sm, runtime=rt)
        sm_stub.assert_no_pending_responses()
        rt_stub.assert_no_pending_responses()
    return code


def expect_invoke(answer: str, csv: str = ENCODED_CSV) -> Callable[[Stubber], None]:
    def add(stub: Stubber) -> None:
        stub.add_response("invoke_endpoint", {"Body": body(answer), "ContentType": "text/csv"},
                          {"EndpointName": ENDPOINT, "ContentType": "text/csv", "Accept": "text/csv",
                           "Body": csv.encode()})
    return add


def test_endpoint_smoke_passes(metadata_file, capsys):
    code = run_endpoint_smoke([endpoint_status("Creating"), endpoint_status("InService")],
                              expect_invoke("9.5,10.25,11.0"), ["--metadata-file", metadata_file])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report == {"rows": 3, "passed": [f"endpoint {ENDPOINT}"], "failed": []}


def test_endpoint_answer_one_line_per_row_and_raw_sample(tmp_path):
    (tmp_path / "sample.json").write_text(json.dumps({"instances": [["M", 0.455], ["F", 0.53]]}))
    code = run_endpoint_smoke([endpoint_status("InService")], expect_invoke("7.1\n8.2\n", csv="M,0.455\nF,0.53\n"),
                              ["--sample-file", "sample.json"])
    assert code == 0


@pytest.mark.parametrize("answer, reason", [
    ("9.5,10.25", f"endpoint {ENDPOINT}: 2 predictions for 3 rows"),
    ("9.5,nan,11", f"endpoint {ENDPOINT}: prediction 1 is not finite: nan"),
    ("9.5,oops,11", "the endpoint answered a non-numeric prediction 'oops'"),
])
def test_endpoint_bad_answers_fail(answer, reason, metadata_file, capsys):
    code = run_endpoint_smoke([endpoint_status("InService")], expect_invoke(answer), ["--metadata-file", metadata_file])
    assert code == 1
    assert stderr_error(capsys) == f"smoke test failed (1 of 1 checks): {reason}"


def test_endpoint_model_error_is_readable(metadata_file, capsys):
    logs = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/sagemaker/Endpoints/{ENDPOINT}"

    def add(stub: Stubber) -> None:
        stub.add_client_error("invoke_endpoint", "ModelError", "Received server error (500) from primary",
                              http_status_code=424, modeled_fields={
                                  "OriginalStatusCode": 500, "OriginalMessage": "feature_names mismatch",
                                  "LogStreamArn": logs})

    assert run_endpoint_smoke([endpoint_status("InService")], add, ["--metadata-file", metadata_file]) == 1
    assert stderr_error(capsys) == (
        f"smoke test failed (1 of 1 checks): endpoint {ENDPOINT}: the model failed on the sample (ModelError, "
        f"container status 500: feature_names mismatch); logs: {logs}")


def test_failed_endpoint_is_reported_without_invoking(metadata_file, capsys):
    code = run_endpoint_smoke([endpoint_status("Updating"), endpoint_status("Failed", "Image pull failed")],
                              lambda stub: None, ["--metadata-file", metadata_file])
    assert code == 1
    assert stderr_error(capsys) == (
        f"smoke test failed (1 of 1 checks): endpoint {ENDPOINT} is Failed: Image pull failed")


def test_endpoint_not_in_service_before_the_timeout(metadata_file, capsys):
    code = run_endpoint_smoke([endpoint_status("Creating")] * 2, lambda stub: None,
                              ["--metadata-file", metadata_file, "--endpoint-timeout-minutes", "0.02"])
    assert code == 1
    assert stderr_error(capsys) == (
        f"smoke test failed (1 of 1 checks): endpoint {ENDPOINT} is still Creating after 0.02 minutes (not InService)")


def test_encoding_follows_the_contract():
    assert smoke_test.instances_from_metadata(METADATA, 3) == INSTANCES
    assert smoke_test.csv_body(INSTANCES, METADATA, "encoded") == ENCODED_CSV
    bad = {**METADATA, "encoded_columns": ["sex_F", "sex_X", "length"]}
    with pytest.raises(smoke_test.UsageError, match=r"encoded_columns \['sex_X'\] do not come from its features"):
        smoke_test.csv_body(INSTANCES, bad, "encoded")


# ==================================================================================================================
# smoke_test: Function URL (a local HTTP server that checks the SigV4 signature)
# ==================================================================================================================
def lambda_like(predict: Callable[[list[Any]], Any]) -> Callable[[Any], tuple[int, Any]]:
    def answer(payload: Any) -> tuple[int, Any]:
        if not isinstance(payload, dict) or not isinstance(payload.get("instances"), list):
            return 400, {"error": "'instances' must be a list of rows"}
        return 200, {"predictions": predict(payload["instances"])}
    return answer


def test_function_url_smoke_passes_with_a_valid_signature(metadata_file, capsys):
    with FunctionUrlServer(lambda_like(lambda rows: [9.5 + i for i in range(len(rows))])) as server:
        code = smoke_test.main(["--function-url", server.url, "--metadata-file", metadata_file])
    assert code == 0, capsys.readouterr().err
    good, bad = server.requests
    assert json.loads(good["body"]) == {"instances": INSTANCES}
    assert json.loads(bad["body"]) == {"instances": "not-a-list"}
    for req in server.requests:
        headers = {k.lower(): v for k, v in req["headers"].items()}
        assert headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=testing/")
        assert f"/{REGION}/lambda/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, " \
               in headers["authorization"]
        assert headers["x-amz-security-token"] == "testing-token"
        assert headers["content-type"] == "application/json"
    report = json.loads(capsys.readouterr().out)
    assert report["failed"] == [] and len(report["passed"]) == 2


def test_unsigned_or_wrongly_signed_requests_are_refused_by_the_stand_in(metadata_file, capsys):
    """The stand-in really verifies signatures: other credentials get 403, reported with the permission hint."""
    with FunctionUrlServer(lambda_like(lambda rows: [1.0] * len(rows))) as server:
        code = smoke_test.main(["--function-url", server.url, "--metadata-file", metadata_file],
                               credentials=Credentials("someone-else", "secret"))
    assert code == 1
    hint = ("HTTP 403: the signed request was refused; the build role needs lambda:InvokeFunctionUrl on the function "
            "(and the URL's auth type must be AWS_IAM): {\"Message\": \"Forbidden\"}")
    assert stderr_error(capsys) == (
        f"smoke test failed (2 of 2 checks): function URL {server.url}: {hint}; function URL {server.url}: bad request "
        f"check: {hint}")


@pytest.mark.parametrize("answer, reason", [
    (lambda_like(lambda rows: [1.0] * (len(rows) - 1)), "{u}: 2 predictions for 3 rows"),
    (lambda_like(lambda rows: [1.0, "Infinity", 2.0]), "{u}: prediction 1 is not numeric: 'Infinity'"),
    (lambda_like(lambda rows: [1.0, None, 2.0]), "{u}: prediction 1 is not numeric: None"),
    (lambda p: (200, '{"predictions": [1.0, NaN, 2.0]}') if isinstance(p.get("instances"), list) else (400, {}),
     "{u}: prediction 1 is not finite: nan"),
    (lambda p: (500, {"errorMessage": "boom"}) if isinstance(p.get("instances"), list) else (400, {}),
     '{u}: HTTP 500 for a valid request: {{"errorMessage": "boom"}}'),
    (lambda p: (200, {"result": []}) if isinstance(p.get("instances"), list) else (400, {}),
     '{u}: the response has no \'predictions\': {{"result": []}}'),
])
def test_function_url_bad_answers_fail(answer, reason, metadata_file, capsys):
    with FunctionUrlServer(answer) as server:
        code = smoke_test.main(["--function-url", server.url, "--metadata-file", metadata_file])
    assert code == 1
    assert stderr_error(capsys) == "smoke test failed (1 of 2 checks): " + reason.format(
        u=f"function URL {server.url}")


@pytest.mark.parametrize("status", [200, 500])
def test_function_url_must_reject_a_malformed_request(status, metadata_file, capsys):
    def answer(payload: Any) -> tuple[int, Any]:
        if isinstance(payload.get("instances"), list):
            return 200, {"predictions": [{"prediction": 1.5}, {"prediction": 2.5}, {"prediction": 3.5}]}
        return status, {"predictions": []}

    with FunctionUrlServer(answer) as server:
        code = smoke_test.main(["--function-url", server.url, "--metadata-file", metadata_file])
    assert code == 1
    assert stderr_error(capsys) == (
        f"smoke test failed (1 of 2 checks): function URL {server.url}: a malformed request "
        f"({{\"instances\": \"not-a-list\"}}) got HTTP {status}, expected 4xx: {{\"predictions\": []}}")


def test_both_targets_from_the_deploy_targets_file(metadata_file, capsys, tmp_path):
    sm = boto3.client("sagemaker", region_name=REGION)
    rt = boto3.client("sagemaker-runtime", region_name=REGION)
    with FunctionUrlServer(lambda_like(lambda rows: [2.0] * len(rows))) as server, \
            Stubber(sm) as sm_stub, Stubber(rt) as rt_stub:
        (tmp_path / "smoke-targets.json").write_text(json.dumps(
            {"stack_name": STACK, "stage": "staging", "model_package_arn": PACKAGE_ARN, "endpoint_name": ENDPOINT,
             "function_url": server.url}))
        sm_stub.add_response("describe_endpoint", endpoint_status("InService"), {"EndpointName": ENDPOINT})
        expect_invoke("1,2")(rt_stub)
        code = smoke_test.main(["--targets-file", "smoke-targets.json", "--metadata-file", metadata_file,
                                "--poll-seconds", "0"], sagemaker=sm, runtime=rt)
    assert code == 1
    assert stderr_error(capsys) == f"smoke test failed (1 of 3 checks): endpoint {ENDPOINT}: 2 predictions for 3 rows"
    assert len(server.requests) == 2  # the function URL was still checked


def test_function_url_region_comes_from_its_host():
    assert smoke_test.function_url_region(FUNCTION_URL, "us-east-1") == "eu-west-1"
    assert smoke_test.function_url_region("http://127.0.0.1:8080/", "us-east-1") == "us-east-1"


def test_nothing_to_test(metadata_file, capsys):
    assert smoke_test.main(["--metadata-file", metadata_file], sagemaker=Unreachable()) == 2
    assert stderr_error(capsys) == "nothing to test: pass --endpoint-name and/or --function-url (or --targets-file)"


def test_missing_endpoint_is_reported(metadata_file, capsys):
    sm = boto3.client("sagemaker", region_name=REGION)
    with Stubber(sm) as stub:
        stub.add_client_error("describe_endpoint", "ValidationException",
                              f"Could not find endpoint \"{ENDPOINT}\".", expected_params={"EndpointName": ENDPOINT})
        code = smoke_test.main(["--endpoint-name", ENDPOINT, "--metadata-file", metadata_file, "--poll-seconds", "0"],
                               sagemaker=sm, runtime=Unreachable())
    assert code == 1
    assert stderr_error(capsys) == (
        f"smoke test failed (1 of 1 checks): endpoint {ENDPOINT}: ValidationException: Could not find endpoint "
        f"\"{ENDPOINT}\".")


def test_sample_file_rows_are_encoded_with_the_metadata(metadata_file, tmp_path):
    (tmp_path / "sample.json").write_text(json.dumps([{"sex": "M", "length": 0.455}, {"length": 0.53, "sex": "I"}]))
    code = run_endpoint_smoke([endpoint_status("InService")],
                              expect_invoke("7.1,8.2", csv="0.0,0.0,1.0,0.455\n0.0,1.0,0.0,0.53\n"),
                              ["--sample-file", "sample.json", "--metadata-file", metadata_file])
    assert code == 0


def test_no_sample_source(capsys):
    assert smoke_test.main(["--endpoint-name", ENDPOINT], sagemaker=Unreachable()) == 2
    assert stderr_error(capsys) == (
        "pass --metadata-file (model_metadata.json) and/or --sample-file for the sample rows")


# ==================================================================================================================
# The commands as CodeBuild runs them
# ==================================================================================================================
def run_module(*args: str) -> subprocess.CompletedProcess[str]:
    root = Path(__file__).resolve().parents[2]
    return subprocess.run([sys.executable, "-m", *args], cwd=root, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(root)})


def test_python_dash_m_exit_codes():
    dry = run_module("cicd_scripts.deploy_serving", "--project", "mlops", "--environment", "dev", "--model", "abalone",
                     "--stage", "staging", "--model-package-arn", PACKAGE_ARN, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)[:4] == ["npx", "cdk", "deploy", STACK]
    bad = run_module("cicd_scripts.start_pipeline", "--pipeline-name", PIPELINE, "--git-commit", "nope")
    assert bad.returncode == 2
    assert bad.stderr.strip() == (
        "ERROR: --git-commit 'nope' is not a git commit SHA: expected 7 to 40 hexadecimal characters")


# ==================================================================================================================
# One stage of each serving shape, as the Deploy-<stage> and Smoke-<stage> builds chain them: buildspecs/model_deploy.yml
# runs deploy_serving with the deploy CD's ENDPOINT_ENABLED and LAMBDA_MODE, model_smoke.yml runs smoke_test on the
# smoke-targets.json it wrote. A Lambda-only model (dev's breast-cancer) has no endpoint: no baseline parameters, no
# EndpointName output, smoke-tested through its function only; an endpoint-only model the other way round.
# ==================================================================================================================
BC_STACK = "mlops-dev-serving-breast-cancer-staging"
BC_PACKAGE_ARN = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/mlops-dev-breast-cancer/2"
BC_MODEL_URL = "s3://artifacts/breast-cancer/v2/model.tar.gz"
BC_METADATA = {
    "framework": "xgboost",
    "problem_type": "binary_classification",
    "target": "diagnosis",
    "features": [{"name": "mean_radius", "type": "numeric"}, {"name": "mean_texture", "type": "numeric"}],
    "encoded_columns": ["mean_radius", "mean_texture"],
    "positive_threshold": 0.5,
}
BUILDSPECS = Path(__file__).resolve().parents[2] / "buildspecs"


def deploy_build_argv(tmp_path: Path, **env: str) -> list[str]:
    """The deploy_serving arguments buildspecs/model_deploy.yml's build command passes for the project's ``env``
    and the Resolve variables (its ``python`` is a stand-in that records them)."""
    import yaml

    spec = yaml.safe_load((BUILDSPECS / "model_deploy.yml").read_text())
    (command,) = spec["phases"]["build"]["commands"]
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True, exist_ok=True)
    python.write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done > deploy-argv.txt\n')
    python.chmod(0o755)
    base = {"PATH": os.environ["PATH"], "PROJECT": "mlops", "ENVIRONMENT": "dev", "MODEL_DATA_URL": "none",
            "BASELINE_STATISTICS_URL": "none", "BASELINE_CONSTRAINTS_URL": "none"}
    done = subprocess.run(["bash", "-c", command], cwd=tmp_path, env={**base, **env}, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    argv = (tmp_path / "deploy-argv.txt").read_text().splitlines()
    assert argv[:2] == ["-m", "cicd_scripts.deploy_serving"]
    return argv[2:]


def test_lambda_only_stage_deploys_and_is_smoke_tested_through_its_function_only(tmp_path, capsys):
    argv = deploy_build_argv(tmp_path, MODEL="breast-cancer", STAGE="staging", ENDPOINT_ENABLED="false",
                             LAMBDA_MODE="model", MODEL_PACKAGE_ARN=BC_PACKAGE_ARN, MODEL_DATA_URL=BC_MODEL_URL)
    assert "--endpoint" not in argv
    with FunctionUrlServer(lambda_like(lambda rows: [{"probability": 0.9, "label": 1}] * len(rows))) as server:
        # The outputs the Lambda-only serving stack declares (tests/infra/test_serving.py checks the template).
        cdk = FakeCdk({BC_STACK: {"FunctionUrl": server.url, "FunctionAliasArn": f"arn:aws:lambda:{REGION}:"
                                                                                 f"{ACCOUNT}:function:f:live"}})
        assert deploy_serving.main(argv, runner=cdk) == 0, capsys.readouterr().err
        ((cmd, _),) = cdk.calls
        assert cmd[3] == BC_STACK and "serving=breast-cancer/staging" in cmd
        # Only the parameters the Lambda-only stack declares: no baseline (CloudFormation would reject them).
        assert _parameters(cmd) == [f"ModelPackageArn={BC_PACKAGE_ARN}", f"ModelDataUrl={BC_MODEL_URL}"]
        targets = json.loads((tmp_path / "smoke-targets.json").read_text())
        assert targets == {"stack_name": BC_STACK, "stage": "staging", "model_package_arn": BC_PACKAGE_ARN,
                           "endpoint_name": None, "function_url": server.url}
        capsys.readouterr()
        (tmp_path / "model_metadata.json").write_text(json.dumps(BC_METADATA))
        code = smoke_test.main(["--targets-file", "smoke-targets.json", "--metadata-file", "model_metadata.json"],
                               sagemaker=Unreachable(), runtime=Unreachable())
    assert code == 0, capsys.readouterr().err
    report = json.loads(capsys.readouterr().out)
    assert report == {"rows": 3, "failed": [], "passed": sorted(
        [f"function URL {server.url}", f"function URL {server.url} rejects a malformed request"])}
    good, bad = server.requests
    assert json.loads(good["body"])["instances"][0] == {"mean_radius": 0.5, "mean_texture": 0.5}


def test_endpoint_only_stage_deploys_and_is_smoke_tested_through_its_endpoint_only(tmp_path, capsys):
    argv = deploy_build_argv(tmp_path, MODEL="abalone", STAGE="staging", ENDPOINT_ENABLED="true", LAMBDA_MODE="none",
                             MODEL_PACKAGE_ARN=PACKAGE_ARN, MODEL_DATA_URL=MODEL_URL, BASELINE_STATISTICS_URL=STATS,
                             BASELINE_CONSTRAINTS_URL=CONSTRAINTS)
    assert "--endpoint" in argv
    cdk = FakeCdk({STACK: {"EndpointName": ENDPOINT, "DataCaptureUri": "s3://artifacts/data-capture/",
                           "DeployedBaselineStatisticsUrl": STATS, "DeployedBaselineConstraintsUrl": CONSTRAINTS}})
    assert deploy_serving.main(argv, runner=cdk) == 0, capsys.readouterr().err
    ((cmd, _),) = cdk.calls
    assert _parameters(cmd) == [f"ModelPackageArn={PACKAGE_ARN}", f"BaselineStatisticsUrl={STATS}",
                                f"BaselineConstraintsUrl={CONSTRAINTS}"]
    targets = json.loads((tmp_path / "smoke-targets.json").read_text())
    assert (targets["endpoint_name"], targets["function_url"]) == (ENDPOINT, None)
    capsys.readouterr()
    (tmp_path / "model_metadata.json").write_text(json.dumps(METADATA))
    sm = boto3.client("sagemaker", region_name=REGION)
    rt = boto3.client("sagemaker-runtime", region_name=REGION)
    with Stubber(sm) as sm_stub, Stubber(rt) as rt_stub:
        sm_stub.add_response("describe_endpoint", endpoint_status("InService"), {"EndpointName": ENDPOINT})
        expect_invoke("9.5,10.25,11.0")(rt_stub)
        code = smoke_test.main(["--targets-file", "smoke-targets.json", "--metadata-file", "model_metadata.json",
                                "--poll-seconds", "0"], sagemaker=sm, runtime=rt)
        sm_stub.assert_no_pending_responses()
        rt_stub.assert_no_pending_responses()
    assert code == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out) == {"rows": 3, "passed": [f"endpoint {ENDPOINT}"], "failed": []}


@pytest.mark.parametrize("flags, outputs, message", [
    # Lambda only, but the stack also outputs an endpoint: the deploy CD and the serving stack disagree.
    (["--lambda-mode", "model"], {"FunctionUrl": FUNCTION_URL, "EndpointName": ENDPOINT},
     f"stack '{STACK}' has output 'EndpointName', but the deploy is configured without an endpoint (--endpoint "
     "(ENDPOINT_ENABLED)): the deploy CD and the serving stack come from different configs; deploy the model stack "
     "first"),
    # Lambda only, and no function URL: nothing the configuration serves could be smoke-tested.
    (["--lambda-mode", "model"], {"FunctionAliasArn": "arn"},
     f"stack '{STACK}' has no output 'FunctionUrl' (outputs: ['FunctionAliasArn']), but it serves a Lambda function "
     "(--lambda-mode (LAMBDA_MODE)): the serving stack must export it for the smoke test"),
    # Endpoint and Lambda, but no endpoint output: the endpoint must not go untested.
    (["--endpoint", "--lambda-mode", "model"], {"FunctionUrl": FUNCTION_URL},
     f"stack '{STACK}' has no output 'EndpointName' (outputs: ['FunctionUrl']), but it serves an endpoint "
     "(--endpoint (ENDPOINT_ENABLED)): the serving stack must export it for the smoke test"),
    # Endpoint only, but a function URL output.
    (["--endpoint", "--lambda-mode", "none"], {"EndpointName": ENDPOINT, "FunctionUrl": FUNCTION_URL},
     f"stack '{STACK}' has output 'FunctionUrl', but the deploy is configured without a Lambda function "
     "(--lambda-mode (LAMBDA_MODE)): the deploy CD and the serving stack come from different configs; deploy the "
     "model stack first"),
])
def test_deploy_targets_follow_the_serving_configuration(flags, outputs, message, capsys, tmp_path):
    cdk = FakeCdk({STACK: outputs})
    code = deploy_serving.main(["--project", "mlops", "--environment", "dev", "--model", "abalone", "--stage",
                                "staging", "--model-package-arn", PACKAGE_ARN, "--model-data-url", MODEL_URL,
                                "--baseline-statistics-url", STATS, "--baseline-constraints-url", CONSTRAINTS,
                                *flags], runner=cdk)
    assert code == 1 and len(cdk.calls) == 1
    assert stderr_error(capsys) == message
    assert not (tmp_path / "smoke-targets.json").exists()
