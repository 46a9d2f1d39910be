"""scripts/e2e (the package), the end-to-end run against a sandbox account, driven against moto.

What moto implements is moto's (CloudFormation stacks with exports and Retain policies, S3 versioning, Glue job runs,
SageMaker pipelines, executions and model packages, KMS, CloudWatch Logs, SSM, STS). What it does not implement, or
what the services do on their own, is simulated here by a ``FakeCloud`` on botocore's event hooks: the EventBridge
rules (raw upload -> Glue run -> pipeline execution -> registered package; approval -> deploy pipeline execution),
CodePipeline's GetPipelineState/ListPipelineExecutions, ListPipelineExecutionSteps, DescribeEndpoint/InvokeEndpoint,
DeleteModelPackage(Group); the Function URL is a local HTTP server that checks the SigV4 scope. ``run_cdk`` is a fake
that creates (deploy) and deletes (destroy) the stacks in moto's CloudFormation. Time is a fake clock.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import tarfile
from pathlib import Path
from typing import Any, Callable, Optional

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.response import StreamingBody
from moto import mock_aws

from platform_config import load_config
from scripts import e2e
from tests.runtime.fake_aws import fake_aws_environment
from tests.runtime.function_url_server import FunctionUrlServer

REGION = "eu-west-1"
ACCOUNT = "123456789012"  # moto's default account
ROOT = Path(__file__).resolve().parents[2]
METADATA = {
    "framework": "xgboost", "problem_type": "regression", "target": "rings",
    "features": [{"name": "sex", "type": "categorical", "categories": ["F", "I", "M"]},
                 {"name": "length", "type": "numeric"}, {"name": "diameter", "type": "numeric"},
                 {"name": "height", "type": "numeric"}, {"name": "whole_weight", "type": "numeric"},
                 {"name": "shucked_weight", "type": "numeric"}, {"name": "viscera_weight", "type": "numeric"},
                 {"name": "shell_weight", "type": "numeric"}],
    "encoded_columns": ["sex_F", "sex_I", "sex_M", "length", "diameter", "height", "whole_weight",
                        "shucked_weight", "viscera_weight", "shell_weight"],
    "positive_threshold": None,
}


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fake credentials and region only; no profile, config file or proxy."""
    fake_aws_environment(monkeypatch, tmp_path, REGION)


@pytest.fixture
def config():
    cfg = load_config("dev")
    model = cfg.models[0]
    assert model.endpoint.enabled and model.lambda_.enabled and len(model.stages) >= 2, "the tests assume dev serves"
    return cfg


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


# ==================================================================================================================
# The Function URL: a local HTTP server answering like the inference Lambda, checking the request's SigV4 scope
# ==================================================================================================================
class FunctionUrl(FunctionUrlServer):
    """Answers like the inference Lambda: one prediction per row (the signature is checked by the server)."""

    def __init__(self) -> None:
        def answer(payload: Any) -> tuple[int, Any]:
            rows = payload["instances"]
            return 200, {"predictions": [9.0 + i for i in range(len(rows))], "count": len(rows),
                         "model_version": "mlops-dev-abalone/1"}

        super().__init__(answer)

    @staticmethod
    def signature_ok(path: str, headers: Any, raw: bytes) -> bool:
        """The e2e run signs with the session's credentials: check the SigV4 scope (service lambda, the region)."""
        auth = headers.get("Authorization", "")
        return re.match(rf"^AWS4-HMAC-SHA256 Credential=\w+/\d{{8}}/{REGION}/lambda/aws4_request, ", auth) is not None


def _template(resources: dict, outputs: Optional[dict] = None) -> str:
    return json.dumps({"Resources": resources, "Outputs": outputs or {}})


def _retained(type_: str, props: Optional[dict] = None) -> dict:
    return {"Type": type_, "DeletionPolicy": "Retain", "UpdateReplacePolicy": "Retain", "Properties": props or {}}


# A JSON string: moto keeps the property as given and its DescribeKey parses a string only.
KEY_PROPS = {"KeyPolicy": json.dumps({"Version": "2012-10-17", "Statement": []})}
pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse AWS")


class FakeCloud:
    """The account: moto plus the behaviour of the services' own automation (EventBridge rules, the deploy pipeline).

    ``glue``: SUCCEEDED | FAILED | never (no run starts); ``pipeline``: Succeeded | Failed; ``deploy``: ready | failed.
    """

    def __init__(self, config, url: str, *, glue: str = "SUCCEEDED", pipeline: str = "Succeeded",
                 deploy: str = "ready", bootstrapped: bool = True) -> None:
        self.config = config
        self.names = e2e.Names.of(config, config.models[0])
        self.url = url
        self.behaviour = {"glue": glue, "pipeline": pipeline, "deploy": deploy}
        self.calls: list[str] = []          # every AWS operation of the script and every cdk command, in order
        self.cdk_calls: list[list[str]] = []
        self.deleted_packages: list[str] = []
        self.deleted_groups: list[str] = []
        self.stopped: list[str] = []
        self.plain = boto3.session.Session(region_name=REGION)  # the fake's own calls: not recorded, not simulated
        self._clients: dict[str, Any] = {}
        self.raw_uploaded = False
        self.glue_run_id: Optional[str] = None
        self.old_run_id: Optional[str] = None
        self.glue_polls = 0
        self.pipeline_execution: Optional[str] = None
        self.pipeline_polls = 0
        self.package_arn: Optional[str] = None
        self.deploy_polls = 0
        self.new_deploy: Optional[str] = None
        self.serving_created = False
        self.t0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
        if bootstrapped:
            self.aws("ssm").put_parameter(Name="/cdk-bootstrap/hnb659fds/version", Value="27",
                                                   Type="String")

    def aws(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self.plain.client(service)
        return self._clients[service]

    # --- boto3 sessions of the script ---------------------------------------------------------------------------
    def session(self) -> boto3.session.Session:
        s = boto3.session.Session(region_name=REGION)
        s.events.register("before-parameter-build", self._keep_params)
        s.events.register("before-call", self._before_call)
        s.events.register("after-call", self._after_call)
        return s

    @staticmethod
    def _keep_params(params: dict, context: dict, **_: Any) -> None:
        context["e2e_params"] = dict(params)

    @staticmethod
    def _op(event_name: str) -> tuple[str, str]:
        _, service, op = event_name.split(".", 2)
        return service, op

    def _before_call(self, event_name: str, context: dict, **_: Any) -> Optional[tuple[AWSResponse, dict]]:
        service, op = self._op(event_name)
        self.calls.append(f"{service}.{op}")
        params = context.get("e2e_params", {})
        stub = getattr(self, f"stub_{service.replace('-', '_')}_{op}", None)
        if stub is None:
            return None
        parsed = stub(params)
        if parsed is None:  # a side effect only (a service's own automation); moto answers
            return None
        status = 400 if "Error" in parsed else 200
        return AWSResponse("https://stub", status, {}, None), parsed

    def _after_call(self, event_name: str, parsed: dict, context: dict, **_: Any) -> None:
        service, op = self._op(event_name)
        hook = getattr(self, f"after_{service.replace('-', '_')}_{op}", None)
        if hook is not None:
            hook(context.get("e2e_params", {}), parsed)

    # --- cdk ----------------------------------------------------------------------------------------------------
    def run_cdk(self, args: list[str]) -> dict:
        self.cdk_calls.append(list(args))
        self.calls.append("cdk " + " ".join(a for a in args if not a.startswith("/")))
        if args[0] == "deploy":
            return self.deploy(args)
        if args[0] == "destroy":
            cfn = self.aws("cloudformation")
            if "--all" in args:
                names = list(reversed(self.names.core_stacks()))
                if "serving=all" in args:
                    names = self.names.serving_stacks() + names
            else:
                names = [a for a in args[1:] if a.startswith(self.names.prefix)]
            for name in names:
                cfn.delete_stack(StackName=name)
            return {}
        raise AssertionError(f"unexpected cdk command {args}")

    def deploy(self, args: list[str]) -> dict:
        assert args[:2] == ["deploy", "--all"] and f"env={self.config.environment}" in args
        assert "--require-approval" in args and "never" in args and "--outputs-file" in args
        assert not any(a.startswith("serving=") for a in args), "cdk deploy --all must not synthesize serving stacks"
        p = self.names.prefix
        cfn = self.aws("cloudformation")
        cfn.create_stack(StackName=f"{p}-shared", TemplateBody=_template(
            {"AlarmKey": _retained("AWS::KMS::Key", KEY_PROPS),
             "JobLogs": _retained("AWS::Logs::LogGroup", {"LogGroupName": f"/{p}/shared/jobs", "RetentionInDays": 30})},
            {"AlarmTopicArn": {"Value": f"arn:aws:sns:{REGION}:{ACCOUNT}:{p}-alarms",
                               "Export": {"Name": f"{p}-alarm-topic-arn"}}}))
        zones = ("raw", "curated", "artifacts")
        resources = {z.capitalize(): _retained("AWS::S3::Bucket") for z in zones}
        resources["AccessLogs"] = _retained("AWS::S3::Bucket")
        resources["LakeKey"] = _retained("AWS::KMS::Key", KEY_PROPS)
        outputs = {f"{z.capitalize()}BucketName": {"Value": {"Ref": z.capitalize()},
                                                   "Export": {"Name": f"{p}-lake-{z}-name"}} for z in zones}
        outputs["LakeKeyArn"] = {"Value": {"Fn::GetAtt": ["LakeKey", "Arn"]}, "Export": {"Name": f"{p}-lake-key-arn"}}
        cfn.create_stack(StackName=f"{p}-data", TemplateBody=_template(resources, outputs))
        for m in self.names.all_models:
            cfn.create_stack(StackName=f"{p}-model-{m}", TemplateBody=_template({
                # moto has no CloudFormation model for it (empty physical id): the group is created below by API
                "RegistryGroup": _retained("AWS::SageMaker::ModelPackageGroup", {"ModelPackageGroupName": f"{p}-{m}"}),
                "BuildLogs": _retained("AWS::Logs::LogGroup", {"LogGroupName": f"/{p}/{m}/build", "RetentionInDays": 30}),
                "CdArtifacts": {"Type": "AWS::S3::Bucket"},  # DESTROY: CloudFormation deletes it
            }))
        s3 = self.aws("s3")
        self.buckets = self.bucket_names()
        for zone in zones:
            s3.put_bucket_versioning(Bucket=self.buckets[zone], VersioningConfiguration={"Status": "Enabled"})
        # An older upload: two versions and a delete marker that only a version-aware teardown removes.
        raw = self.buckets["raw"]
        s3.put_object(Bucket=raw, Key="abalone/old.csv", Body=b"a,b\n1,2\n")
        s3.put_object(Bucket=raw, Key="abalone/old.csv", Body=b"a,b\n3,4\n")
        s3.delete_object(Bucket=raw, Key="abalone/old.csv")
        s3.put_object(Bucket=self.buckets["access-logs"], Key="logs/2026-01-01", Body=b"log line")
        log_delivery = 'uri="http://acs.amazonaws.com/groups/s3/LogDelivery"'
        s3.put_bucket_acl(Bucket=self.buckets["access-logs"], GrantWrite=log_delivery, GrantReadACP=log_delivery)
        for zone in zones:  # server access logs of the lake go to the access-log bucket
            s3.put_bucket_logging(Bucket=self.buckets[zone], BucketLoggingStatus={"LoggingEnabled": {
                "TargetBucket": self.buckets["access-logs"], "TargetPrefix": f"{zone}/"}})
        sm = self.aws("sagemaker")
        for m in self.names.all_models:  # each model stack's package group (moto: by API, see above)
            sm.create_model_package_group(ModelPackageGroupName=self.group(m))
        sm.create_pipeline(PipelineName=self.names.pipeline, RoleArn=f"arn:aws:iam::{ACCOUNT}:role/pipeline",
                           PipelineDefinition=json.dumps({"Version": "2020-12-01", "Steps": []}),
                           ClientRequestToken="t" * 32)
        glue = self.aws("glue")
        glue.create_job(Name=self.names.etl_job, Role="etl-role",
                        Command={"Name": "glueetl", "ScriptLocation": f"s3://{self.buckets['artifacts']}/etl.py"})
        # A run from before the upload (a schedule, say), FAILED: the script must not take it for its own.
        self.old_run_id = glue.start_job_run(JobName=self.names.etl_job)["JobRunId"]
        return {f"{p}-data": {f"{z.capitalize()}BucketName": self.buckets[z] for z in zones}}

    def bucket_names(self) -> dict[str, str]:
        cfn = self.aws("cloudformation")
        res = cfn.list_stack_resources(StackName=f"{self.names.prefix}-data")["StackResourceSummaries"]
        by_id = {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in res}
        return {"raw": by_id["Raw"], "curated": by_id["Curated"], "artifacts": by_id["Artifacts"],
                "access-logs": by_id["AccessLogs"]}

    # --- CloudFormation ---------------------------------------------------------------------------------------------
    def after_cloudformation_ListStackResources(self, params: dict, parsed: dict) -> None:  # noqa: N802
        """moto lists a resource it has no model for as a blank row: fill in what CloudFormation reports for the
        model stack's package group (its physical id is the group's ARN, what Ref returns)."""
        stack = params["StackName"].split("/")[1] if params["StackName"].startswith("arn:") else params["StackName"]
        for r in parsed.get("StackResourceSummaries", []):
            if not r.get("ResourceType") and "-model-" in stack:
                group = self.group(stack.split("-model-", 1)[1])  # this model stack's own group
                r.update(LogicalResourceId="RegistryGroup", ResourceType="AWS::SageMaker::ModelPackageGroup",
                         PhysicalResourceId=f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package-group/{group}")

    def group(self, model: str) -> str:
        """The model package group of ``model`` (``<prefix>-<model>``, the model stack's RegistryGroup)."""
        assert model in self.names.all_models, model
        return self.names.platform.model_resource(model)

    # --- S3: the raw upload starts the ETL (EventBridge) ----------------------------------------------------------
    def after_s3_PutObject(self, params: dict, parsed: dict) -> None:  # noqa: N802
        if params.get("Bucket") == self.buckets["raw"] and params["Key"].startswith(f"{self.names.dataset}/"):
            self.raw_uploaded = True

    # --- Glue -----------------------------------------------------------------------------------------------------
    def stub_glue_GetJobRuns(self, params: dict) -> None:  # noqa: N802  (before the call: EventBridge starts the run)
        if self.raw_uploaded and self.glue_run_id is None and self.behaviour["glue"] != "never":
            self.glue_run_id = self.aws("glue").start_job_run(JobName=self.names.etl_job)["JobRunId"]
        return None

    def after_glue_GetJobRuns(self, params: dict, parsed: dict) -> None:  # noqa: N802
        for run in parsed.get("JobRuns", []):
            if run["Id"] == self.old_run_id:
                run["StartedOn"] = run["StartedOn"] - dt.timedelta(hours=1)
                run["JobRunState"], run["ErrorMessage"] = "FAILED", "an old run"
            elif run["Id"] == self.glue_run_id:
                self.glue_polls += 1
                if self.glue_polls <= 2:
                    run["JobRunState"] = "RUNNING"
                elif self.behaviour["glue"] == "FAILED":
                    run["JobRunState"] = "FAILED"
                    run["ErrorMessage"] = "AnalysisException: cannot resolve 'rings'"
                elif self.pipeline_execution is None:  # SUCCEEDED: the Glue rule starts the pipeline
                    self.start_pipeline()

    # --- SageMaker --------------------------------------------------------------------------------------------------
    def start_pipeline(self) -> None:
        sm, s3 = self.aws("sagemaker"), self.aws("s3")
        self.pipeline_execution = sm.start_pipeline_execution(
            PipelineName=self.names.pipeline, ClientRequestToken="e" * 32)["PipelineExecutionArn"]
        if self.behaviour["pipeline"] != "Succeeded":
            return
        art = self.buckets["artifacts"]
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            data = json.dumps(METADATA).encode()
            info = tarfile.TarInfo("model_metadata.json")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        s3.put_object(Bucket=art, Key="models/abalone/run/model.tar.gz", Body=buf.getvalue())
        s3.put_object(Bucket=art, Key="models/abalone/run/evaluation.json", Body=json.dumps(
            {"regression_metrics": {"rmse": {"value": 2.21, "standard_deviation": 0.0}, "r2": {"value": 0.5}}}))
        self.package_arn = sm.create_model_package(
            ModelPackageGroupName=self.names.pipeline, ModelApprovalStatus="PendingManualApproval",
            InferenceSpecification={"Containers": [{"Image": "xgboost:1.7-1",
                                                    "ModelDataUrl": f"s3://{art}/models/abalone/run/model.tar.gz"}],
                                    "SupportedContentTypes": ["text/csv"], "SupportedResponseMIMETypes": ["text/csv"]},
            ModelMetrics={"ModelQuality": {"Statistics": {
                "ContentType": "application/json", "S3Uri": f"s3://{art}/models/abalone/run/evaluation.json"}}},
        )["ModelPackageArn"]

    def after_sagemaker_ListPipelineExecutions(self, params: dict, parsed: dict) -> None:  # noqa: N802
        for s in parsed.get("PipelineExecutionSummaries", []):
            if s["PipelineExecutionArn"] == self.pipeline_execution:
                self.pipeline_polls += 1
                if self.pipeline_polls <= 2:
                    s["PipelineExecutionStatus"] = "Executing"
                elif self.behaviour["pipeline"] != "Succeeded":
                    s["PipelineExecutionStatus"] = "Failed"

    def after_sagemaker_DescribePipelineExecution(self, params: dict, parsed: dict) -> None:  # noqa: N802
        if self.behaviour["pipeline"] != "Succeeded":
            parsed["PipelineExecutionStatus"] = "Failed"
            parsed["FailureReason"] = "Step failure: One or multiple steps failed."

    def stub_sagemaker_ListPipelineExecutionSteps(self, params: dict) -> dict:  # noqa: N802
        assert params["PipelineExecutionArn"] == self.pipeline_execution
        if self.behaviour["pipeline"] != "Succeeded":
            return {"PipelineExecutionSteps": [
                {"StepName": "CheckMetric", "StepStatus": "Succeeded"},
                {"StepName": "MetricTooLow", "StepStatus": "Failed",
                 "FailureReason": "rmse 3.4 does not meet the threshold 3.0"}]}
        return {"PipelineExecutionSteps": [
            {"StepName": "RegisterModel-RegisterModel", "StepStatus": "Succeeded",
             "Metadata": {"RegisterModel": {"Arn": self.package_arn}}},
            {"StepName": "Evaluate", "StepStatus": "Succeeded"}]}

    def after_sagemaker_UpdateModelPackage(self, params: dict, parsed: dict) -> None:  # noqa: N802
        if params.get("ModelApprovalStatus") == "Approved":  # the approval rule starts the deploy pipeline
            self.new_deploy = "22222222-2222-2222-2222-222222222222"

    def stub_sagemaker_DescribeEndpoint(self, params: dict) -> dict:  # noqa: N802
        return {"EndpointName": params["EndpointName"], "EndpointStatus": "InService",
                "EndpointArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/{params['EndpointName']}",
                "EndpointConfigName": "c", "CreationTime": self.t0, "LastModifiedTime": self.t0}

    def stub_sagemaker_runtime_InvokeEndpoint(self, params: dict) -> dict:  # noqa: N802
        lines = params["Body"].decode().strip().splitlines()
        assert all(len(line.split(",")) == len(METADATA["encoded_columns"]) for line in lines)
        body = "\n".join(f"{10.0 + i}" for i in range(len(lines))).encode()
        return {"Body": StreamingBody(io.BytesIO(body), len(body)), "ContentType": "text/csv"}

    def stub_sagemaker_DeleteModelPackage(self, params: dict) -> dict:  # noqa: N802
        self.deleted_packages.append(params["ModelPackageName"])
        return {}

    def stub_sagemaker_DeleteModelPackageGroup(self, params: dict) -> dict:  # noqa: N802
        left = [p["ModelPackageArn"] for p in self.aws("sagemaker").list_model_packages(
            ModelPackageGroupName=params["ModelPackageGroupName"])["ModelPackageSummaryList"]]
        assert set(left) <= set(self.deleted_packages), f"the packages go before their group: {left}"
        self.deleted_groups.append(params["ModelPackageGroupName"])
        return {}

    # --- CodePipeline: the deploy pipeline -----------------------------------------------------------------------
    OLD_DEPLOY = "11111111-1111-1111-1111-111111111111"

    def stub_codepipeline_ListPipelineExecutions(self, params: dict) -> dict:  # noqa: N802
        assert params["pipelineName"] == self.names.deploy_pipeline
        runs = [{"pipelineExecutionId": self.OLD_DEPLOY, "status": "Succeeded", "startTime": self.t0}]
        if self.new_deploy:
            status = "InProgress"
            if self.behaviour["deploy"] == "failed" and self.deploy_polls >= 3:
                status = "Failed"
            runs.insert(0, {"pipelineExecutionId": self.new_deploy, "status": status,
                            "startTime": self.t0 + dt.timedelta(hours=1)})
        return {"pipelineExecutionSummaries": runs}

    def stub_codepipeline_GetPipelineState(self, params: dict) -> dict:  # noqa: N802
        first, last = self.names.stages[0], self.names.stages[-1]
        self.deploy_polls += 1
        n = self.deploy_polls
        old, new = self.OLD_DEPLOY, self.new_deploy

        def stage(name: str, exec_id: str, status: str, actions: list[dict] = ()) -> dict:
            return {"stageName": name, "latestExecution": {"pipelineExecutionId": exec_id, "status": status},
                    "actionStates": list(actions)}

        stages = [stage("Source", new, "Succeeded"), stage("Resolve", new, "Succeeded" if n > 1 else "InProgress")]
        if n >= 2:
            if n >= 3 and not self.serving_created:
                self.create_serving_stack(first)
            if self.behaviour["deploy"] == "failed" and n >= 3:
                stages.append(stage(f"Deploy-{first}", new, "Failed", [
                    {"actionName": "CdkDeployServing", "latestExecution": {
                        "status": "Failed", "errorDetails": {"code": "JobFailed",
                                                             "message": "Error while executing command: cdk deploy"}}}]))
            else:
                stages.append(stage(f"Deploy-{first}", new, "Succeeded" if n >= 3 else "InProgress"))
        else:
            stages.append(stage(f"Deploy-{first}", old, "Skipped"))
        smoke = stage(f"Smoke-{first}", old, "Skipped")
        approve = stage(f"Approve-{last}", old, "Skipped")
        if n >= 3 and self.behaviour["deploy"] == "ready":
            smoke = stage(f"Smoke-{first}", new, "InProgress")
        if n >= 4 and self.behaviour["deploy"] == "ready":
            smoke = stage(f"Smoke-{first}", new, "Succeeded")
            approve = stage(f"Approve-{last}", new, "InProgress", [
                {"actionName": f"ApproveDeployTo{last.capitalize()}", "latestExecution": {"status": "InProgress"}}])
        return {"pipelineName": params["name"], "stageStates": stages + [smoke, approve]}

    def stub_codepipeline_StopPipelineExecution(self, params: dict) -> dict:  # noqa: N802
        self.stopped.append(params["pipelineExecutionId"])
        return {"pipelineExecutionId": params["pipelineExecutionId"]}

    def create_serving_stack(self, stage: str) -> None:
        p, m = self.names.prefix, self.names.model
        self.aws("cloudformation").create_stack(
            StackName=f"{p}-serving-{m}-{stage}", TemplateBody=_template(
                {"LogsKey": _retained("AWS::KMS::Key", KEY_PROPS),
                 "FunctionLogs": _retained("AWS::Logs::LogGroup",
                                           {"LogGroupName": f"/aws/lambda/{p}-{m}-{stage}", "RetentionInDays": 30})},
                {"EndpointName": {"Value": f"{p}-{m}-{stage}"}, "FunctionUrl": {"Value": self.url}}))
        self.serving_created = True


@pytest.fixture
def world(config):
    with mock_aws(), FunctionUrl() as url:
        yield config, url


def run_e2e(cloud: FakeCloud, clock: Clock, tmp_path: Path, *extra: str, config=None) -> tuple[int, list[str]]:
    lines: list[str] = []
    code = e2e.main(
        ["--env", "dev", "--yes", "--report-dir", str(tmp_path / "report"), "--timeout-minutes", "30", *extra],
        config=config or cloud.config, session_factory=cloud.session, run_cdk=cloud.run_cdk,
        clock=clock.clock, sleep=clock.sleep, say=lines.append,
    )
    return code, lines


def in_order(calls: list[str], expected: list[str]) -> None:
    """``expected`` occurs in ``calls`` as a subsequence (each item a prefix of a call)."""
    i = 0
    for call in calls:
        if i < len(expected) and call.startswith(expected[i]):
            i += 1
    assert i == len(expected), f"missing {expected[i]!r} after {expected[:i]} in {calls}"


def report(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "report" / "e2e-report.json").read_text())


# ==================================================================================================================
# The whole run
# ==================================================================================================================
def test_full_run_approves_invokes_reports_and_tears_down_all(world, tmp_path: Path) -> None:
    config, url = world
    cloud, clock = FakeCloud(config, url.url), Clock()
    code, lines = run_e2e(cloud, clock, tmp_path, "--teardown", "all")
    assert code == 0, "\n".join(lines)
    names = cloud.names

    # Order of operations: deploy, upload, ETL, pipeline, approval, staging, invoke, teardown (serving stacks first).
    in_order(cloud.calls, [
        "sts.GetCallerIdentity", "ssm.GetParameter", "cdk deploy --all", "cloudformation.ListExports",
        "s3.PutObject", "glue.GetJobRuns", "sagemaker.ListPipelineExecutions",
        "sagemaker.ListPipelineExecutionSteps", "codepipeline.ListPipelineExecutions",
        "sagemaker.UpdateModelPackage", "codepipeline.GetPipelineState", "cloudformation.DescribeStacks",
        "s3.GetObject", "sagemaker.DescribeEndpoint", "sagemaker-runtime.InvokeEndpoint",
        "cloudformation.ListStackResources", "cdk destroy --exclusively", "cdk destroy --all",
        "s3.DeleteObjects", "s3.DeleteBucket", "cloudwatch-logs.DeleteLogGroup", "sagemaker.DeleteModelPackage",
        "sagemaker.DeleteModelPackageGroup", "kms.ScheduleKeyDeletion",
    ])
    # The approval: exactly one, of the package the execution registered.
    pkg = cloud.aws("sagemaker").describe_model_package(ModelPackageName=cloud.package_arn)
    assert pkg["ModelApprovalStatus"] == "Approved"
    assert "scripts/e2e" in pkg.get("ApprovalDescription", "")
    assert cloud.calls.count("sagemaker.UpdateModelPackage") == 1
    # cdk: deploy everything without serving stacks; destroy the pipeline's serving stack, then the app.
    staging = names.serving_stack(names.model, names.stages[0])
    assert cloud.cdk_calls[1] == ["destroy", "--exclusively", "--force", "-c", "env=dev", "-c", "serving=all", staging]
    assert cloud.cdk_calls[2] == ["destroy", "--all", "--force", "-c", "env=dev"]
    # The Function URL got a SigV4 request (service lambda, region of the run) with the sample rows by feature name.
    assert len(url.requests) == 1 and json.loads(url.requests[0]["body"])["instances"][0] == {
        "sex": "M", "length": 0.455, "diameter": 0.365, "height": 0.095, "whole_weight": 0.514,
        "shucked_weight": 0.2245, "viscera_weight": 0.101, "shell_weight": 0.15}

    doc = report(tmp_path)
    assert doc["status"] == "succeeded" and doc["failure"] is None
    assert doc["package_arn"] == cloud.package_arn and doc["package_version"] == 1
    assert doc["metric"]["name"] == "rmse" and doc["metric"]["value"] == 2.21
    assert doc["metric"]["threshold"] == config.models[0].threshold
    assert doc["glue_job_run"] == cloud.glue_run_id != cloud.old_run_id
    assert doc["pipeline_execution"] == cloud.pipeline_execution
    assert doc["deploy_execution"] == cloud.new_deploy
    assert doc["raw_object"].startswith(f"s3://{cloud.buckets['raw']}/abalone/e2e-")
    assert [p["actual"] for p in doc["predictions"]] == [15.0, 7.0, 9.0, 10.0, 7.0]
    assert [p["function_url"] for p in doc["predictions"]] == [9.0, 10.0, 11.0, 12.0, 13.0]
    assert [p["endpoint"] for p in doc["predictions"]] == [10.0, 11.0, 12.0, 13.0, 14.0]
    stages = [s["name"] for s in doc["stages"]]
    assert stages == ["preflight", "deploy", "upload", "etl", "pipeline", "approve", "metric", "staging", "invoke",
                      "teardown"]
    assert all(s["status"] == "ok" for s in doc["stages"]) and all(s["seconds"] >= 0 for s in doc["stages"])
    assert doc["account"] == ACCOUNT and doc["region"] == REGION

    # Teardown all: every retained bucket emptied (all versions and delete markers) and deleted, log groups deleted,
    # the package and its group deleted, keys scheduled for deletion (7 days); the stacks gone.
    s3 = cloud.aws("s3")
    left = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    assert not left & set(cloud.buckets.values()), left
    assert cloud.aws("logs").describe_log_groups()["logGroups"] == []
    # Every model stack's group (abalone's holds the run's package, breast-cancer's none), each once.
    groups = [cloud.group(m) for m in names.all_models]
    assert names.pipeline in groups and len(groups) == len(config.models) == 2
    assert cloud.deleted_packages == [cloud.package_arn] and sorted(cloud.deleted_groups) == sorted(groups)
    kms = cloud.aws("kms")
    states = [kms.describe_key(KeyId=k["KeyId"])["KeyMetadata"]["KeyState"] for k in kms.list_keys()["Keys"]]
    assert states and set(states) == {"PendingDeletion"}
    removed = {(r["type"], r["id"]) for r in doc["teardown"]["removed"]}
    assert ("bucket", cloud.buckets["raw"]) in removed
    assert all(("model package group", g) in removed for g in groups)
    raw_note = next(r["note"] for r in doc["teardown"]["removed"] if r["id"] == cloud.buckets["raw"])
    assert raw_note.startswith("4 object versions")  # old.csv x2, its delete marker, the e2e upload
    assert doc["teardown"]["errors"] == []
    assert set(doc["teardown"]["destroyed_stacks"]) == set(names.core_stacks()) | {staging}
    # The access-log bucket goes last (access logs keep arriving while the others are emptied).
    buckets_removed = [r["id"] for r in doc["teardown"]["removed"] if r["type"] == "bucket"]
    assert buckets_removed[-1] == cloud.buckets["access-logs"]

    md = (tmp_path / "report" / "e2e-report.md").read_text()
    assert "succeeded" in md and cloud.package_arn in md and "rmse = 2.21" in md and "CC BY 4.0" in md
    assert "| 1 | 15 | 9 | 10 |" in md
    # Progress: each wait printed its status changes.
    text = "\n".join(lines)
    assert "etl: Glue job mlops-dev-etl-abalone: run" in text and "RUNNING" in text and "SUCCEEDED" in text
    assert f"Smoke-{names.stages[0]} Succeeded" in text and "InProgress at Deploy-" in text


def test_teardown_stacks_keeps_retained_resources(world, tmp_path: Path) -> None:
    config, url = world
    cloud, clock = FakeCloud(config, url.url), Clock()
    code, lines = run_e2e(cloud, clock, tmp_path)  # default --teardown stacks
    assert code == 0, "\n".join(lines)
    assert [c[0] for c in cloud.cdk_calls] == ["deploy", "destroy", "destroy"]
    assert "cloudformation.ListStackResources" not in cloud.calls
    assert "s3.DeleteBucket" not in cloud.calls and "kms.ScheduleKeyDeletion" not in cloud.calls
    left = {b["Name"] for b in cloud.aws("s3").list_buckets()["Buckets"]}
    assert cloud.buckets["raw"] in left  # retained (versioned) bucket stays
    doc = report(tmp_path)
    assert doc["teardown"]["mode"] == "stacks" and any("--teardown all" in x for x in doc["teardown"]["left"])
    # The deploy pipeline waited at the prod approval: teardown abandons that execution.
    assert cloud.stopped == [cloud.new_deploy]


# ==================================================================================================================
# Failures: one clear line, teardown as requested
# ==================================================================================================================
def test_glue_failure_stops_with_the_runs_error_message(world, tmp_path: Path) -> None:
    config, url = world
    cloud, clock = FakeCloud(config, url.url, glue="FAILED"), Clock()
    code, lines = run_e2e(cloud, clock, tmp_path)
    assert code == 1
    msg = f"Glue job run {cloud.glue_run_id} of {cloud.names.etl_job} is FAILED: AnalysisException: cannot resolve 'rings'"
    assert any(line.endswith(f"E2E FAILED at etl: {msg}") for line in lines)
    doc = report(tmp_path)
    assert doc["failure"] == {"stage": "etl", "message": msg}
    assert "sagemaker.UpdateModelPackage" not in cloud.calls  # nothing approved
    assert [c[0] for c in cloud.cdk_calls] == ["deploy", "destroy"]  # no serving stack: only destroy --all
    assert cloud.cdk_calls[1][:2] == ["destroy", "--all"]


def test_pipeline_failure_names_the_failed_step(world, tmp_path: Path) -> None:
    config, url = world
    cloud, clock = FakeCloud(config, url.url, pipeline="Failed"), Clock()
    code, lines = run_e2e(cloud, clock, tmp_path, "--keep-on-failure")
    assert code == 1
    doc = report(tmp_path)
    assert doc["failure"]["stage"] == "pipeline"
    assert doc["failure"]["message"] == (
        f"pipeline execution {cloud.pipeline_execution} is Failed: Step failure: One or multiple steps failed. "
        "(failed step MetricTooLow: rmse 3.4 does not meet the threshold 3.0)")
    assert [c[0] for c in cloud.cdk_calls] == ["deploy"]  # --keep-on-failure: nothing destroyed
    assert doc["teardown"]["mode"] == "none" and "--keep-on-failure" in doc["teardown"]["left"][0]


def test_deploy_pipeline_failure_names_the_failed_action(world, tmp_path: Path) -> None:
    config, url = world
    cloud, clock = FakeCloud(config, url.url, deploy="failed"), Clock()
    code, _ = run_e2e(cloud, clock, tmp_path)
    assert code == 1
    first = cloud.names.stages[0]
    assert report(tmp_path)["failure"] == {"stage": "staging", "message": (
        f"deploy pipeline {cloud.names.deploy_pipeline} execution {cloud.new_deploy} is Failed; failed action "
        f"Deploy-{first}/CdkDeployServing: Error while executing command: cdk deploy")}
    # The serving stack the failed execution left behind is destroyed first.
    assert cloud.cdk_calls[1][:2] == ["destroy", "--exclusively"] and cloud.cdk_calls[2][:2] == ["destroy", "--all"]


def test_wait_times_out_with_one_line_and_backs_off(world, tmp_path: Path) -> None:
    config, url = world
    cloud, clock = FakeCloud(config, url.url, glue="never"), Clock()
    code, lines = run_e2e(cloud, clock, tmp_path, "--timeout-minutes", "5")
    assert code == 3
    msg = (f"timed out after 5 minutes waiting for Glue job {cloud.names.etl_job} "
           "(last status: no run started since the upload yet)")
    assert report(tmp_path)["failure"] == {"stage": "etl", "message": msg}
    assert any(line.endswith(f"E2E FAILED at etl: {msg}") for line in lines)
    # Backoff: 10 s, x1.5, capped at 60 s, never past the deadline.
    assert clock.sleeps[:5] == [10.0, 15.0, 22.5, 33.75, 50.625] and max(clock.sleeps) == 60.0
    assert sum(clock.sleeps) == pytest.approx(300.0)
    assert [c[0] for c in cloud.cdk_calls] == ["deploy", "destroy"]  # teardown after a timeout too


# ==================================================================================================================
# Preflight refusals: nothing deployed
# ==================================================================================================================
def test_refuses_without_yes_before_any_aws_call(config, tmp_path: Path, capsys) -> None:
    def no_session():
        raise AssertionError("no AWS call without --yes")

    def no_cdk(args):
        raise AssertionError("no cdk without --yes")

    lines: list[str] = []
    code = e2e.main(["--env", "dev", "--report-dir", str(tmp_path / "r")], config=config, session_factory=no_session,
                    run_cdk=no_cdk, say=lines.append)
    assert code == 2
    assert any("pass --yes to go ahead" in line for line in lines)
    assert not (tmp_path / "r").exists()


def test_refuses_an_account_the_config_does_not_pin(world, tmp_path: Path) -> None:
    config, url = world
    pinned = config.model_copy(update={"account": "111111111111"})
    cloud, clock = FakeCloud(pinned, url.url), Clock()
    code, lines = run_e2e(cloud, clock, tmp_path, config=pinned)
    assert code == 2
    assert any("pins account 111111111111, but the credentials are of account 123456789012" in line for line in lines)
    assert any("caller arn:aws:sts::123456789012" in line for line in lines)  # the identity is printed first
    assert cloud.cdk_calls == []


def test_refuses_production_names_unless_allowed(world, tmp_path: Path) -> None:
    config, url = world
    prod = config.model_copy(update={"environment": "prod"})
    cloud, clock = FakeCloud(prod, url.url), Clock()
    code, lines = run_e2e(cloud, clock, tmp_path, config=prod)
    assert code == 2 and any("looks like production" in line for line in lines)
    assert cloud.calls == []


def test_refuses_an_unbootstrapped_account(world, tmp_path: Path) -> None:
    config, url = world
    cloud, clock = FakeCloud(config, url.url, bootstrapped=False), Clock()
    code, lines = run_e2e(cloud, clock, tmp_path)
    assert code == 2 and any(f"npx cdk bootstrap aws://{ACCOUNT}/{REGION}" in line for line in lines)
    assert cloud.cdk_calls == []


# ==================================================================================================================
# The names the script derives are the platform's
# ==================================================================================================================
def test_names_are_the_stacks_and_the_deploy_pipelines(config) -> None:
    from stacks.model_stack import etl_job_name, model_resource_name
    from stacks.serving_stack import endpoint_name

    model = config.models[0]
    names = e2e.Names.of(config, model)
    assert names.etl_job == etl_job_name(config, model)
    assert names.pipeline == model_resource_name(config, model)
    assert names.raw_export() == f"{config.prefix()}-lake-raw-name"
    assert names.deploy_pipeline == config.names.deploy_pipeline(model.name)
    # The deploy CD's stage and action names, wherever the CI/CD constructs keep them; its pipeline name derived in
    # the construct from the same prefix, or passed in from the names module.
    constructs = "\n".join(p.read_text() for p in sorted((ROOT / "mlops_constructs").rglob("*.py")))
    stacks = "\n".join(p.read_text() for p in sorted((ROOT / "stacks").glob("*.py")))
    for fragment in ('f"Smoke-{s.name}"', 'f"Approve-{s.name}"', 'action_name=f"ApproveDeployTo{s.name.capitalize()}"'):
        assert fragment in constructs, fragment
    assert 'pipeline_name=f"{name_prefix}-deploy"' in constructs or "names.deploy_pipeline(model" in stacks
    assert endpoint_name(config, model, model.stages[0]) == config.names.serving_resource(model.name,
                                                                                          model.stages[0].name)
    # The app and the e2e script take the stack names from the one names module.
    app = (ROOT / "stacks" / "app_builder.py").read_text()
    assert "config.names.serving_stack(model.name, stage.name)" in app
    assert names.serving_stack(model.name, "staging") == config.names.serving_stack(model.name, "staging")


# ==================================================================================================================
# Interruptions, teardown alone, the CDK CLI runner
# ==================================================================================================================
def test_ctrl_c_during_a_wait_still_tears_down(world, tmp_path: Path) -> None:
    config, url = world
    cloud, clock = FakeCloud(config, url.url, glue="never"), Clock()

    def sleep(seconds: float) -> None:
        raise KeyboardInterrupt

    lines: list[str] = []
    code = e2e.main(["--env", "dev", "--yes", "--report-dir", str(tmp_path / "report")], config=config,
                    session_factory=cloud.session, run_cdk=cloud.run_cdk, clock=clock.clock, sleep=sleep,
                    say=lines.append)
    assert code == 1
    assert report(tmp_path)["failure"]["stage"] == "interrupted"
    assert [c[:2] for c in cloud.cdk_calls] == [["deploy", "--all"], ["destroy", "--all"]]


def test_teardown_none_leaves_everything_and_says_how_to_remove_it(world, tmp_path: Path) -> None:
    config, url = world
    cloud, clock = FakeCloud(config, url.url), Clock()
    code, _ = run_e2e(cloud, clock, tmp_path, "--teardown", "none")
    assert code == 0 and [c[0] for c in cloud.cdk_calls] == ["deploy"]
    left = report(tmp_path)["teardown"]["left"]
    assert "--teardown-only all" in left[0]
    assert any(f"waits at the manual approval before {cloud.names.stages[-1]}" in x for x in left)

    # Later: teardown alone finds the stacks (the serving one included) and removes everything.
    cloud.cdk_calls.clear()
    code, lines = run_e2e(cloud, Clock(), tmp_path, "--teardown-only", "all")
    assert code == 0, "\n".join(lines)
    assert [c[:2] for c in cloud.cdk_calls] == [["destroy", "--exclusively"], ["destroy", "--all"]]
    assert cloud.buckets["raw"] not in {b["Name"] for b in cloud.aws("s3").list_buckets()["Buckets"]}
    doc = report(tmp_path)
    assert doc["status"] == "teardown only" and doc["teardown"]["errors"] == []


def test_cdk_cli_runs_the_pinned_cli_and_reads_the_outputs_file(tmp_path: Path) -> None:
    cli = tmp_path / "node_modules" / ".bin" / "cdk"
    cli.parent.mkdir(parents=True)
    cli.write_text('#!/bin/sh\necho "$AWS_REGION $*" > args.txt\n'
                   'if [ "$1" = deploy ]; then echo \'{"s": {"K": "v"}}\' > "$6"; fi\n'
                   'if [ "$1" = fail ]; then exit 4; fi\n')
    cli.chmod(0o755)
    run = e2e.cdk_cli("eu-west-1", root=tmp_path)
    out = run(["deploy", "--all", "-c", "env=dev", "--outputs-file", str(tmp_path / "o.json")])
    assert out == {"s": {"K": "v"}}
    assert (tmp_path / "args.txt").read_text().startswith("eu-west-1 deploy --all -c env=dev --outputs-file")
    assert run(["destroy", "--all", "--force"]) == {}
    with pytest.raises(e2e.E2EError, match=r"`cdk fail` exited with 4"):
        run(["fail"])
    with pytest.raises(e2e.E2EError, match="make install"):
        e2e.cdk_cli("eu-west-1", root=tmp_path / "nowhere")(["deploy"])
