"""The dev serving stack rehearsed from cdk.out (rehearsal/serving.py, rehearsal/endpoint.py): the registered package
served as the XGBoost container's inference toolkit serves it and by the Lambda from its zips, both called over HTTP
with SigV4 by the deploy CD's smoke role; and one regression test per serving defect the rehearsal must catch.

The package is built by the project's real training code (sagemaker_steps.local_runner, as
tests/runtime/test_endpoint_serving.py) and registered in the stand-in account with the image and container
environment of the synthesized pipeline's Register step and a data-quality baseline computed by the Model Monitor
stand-in on the Preprocess step's baseline rows (what the pipeline registers; the pipeline runner itself is tested in
test_pipeline_rehearsal.py).
"""

from __future__ import annotations

import json
import re
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from rehearsal.assembly import Assembly, RehearsalError
from rehearsal.cloud import Cloud
from rehearsal.context import Rehearsal
from rehearsal.endpoint import ALGORITHM_MODE, BASELINE_MISMATCH, ISOLATED_SUBMIT_DIRECTORY, EndpointStandIn
from rehearsal.lambda_runtime import find_python
from rehearsal.sagemaker_standins import data_quality_baseline
from rehearsal.serving import deploy_serving

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "runtime"))
import inference_fixtures as fx  # noqa: E402

pytestmark = pytest.mark.skipif(find_python("3.12") is None, reason="no Python 3.12 for the Lambda runtime")

MODEL, STAGE = "abalone", "staging"
EXECUTION = "rehearsal0001"
ROWS = [row for row, _ in fx.abalone_rows(5)]


def register_step(assembly: Assembly) -> dict:
    stack = assembly.stack(f"-model-{MODEL}")
    _, res = stack.one("AWS::SageMaker::Pipeline")
    body = json.loads(assembly.resolver.resolve(stack, res["Properties"]["PipelineDefinition"]["PipelineDefinitionBody"]))

    def steps(items):
        for step in items:
            yield step
            for branch in ("IfSteps", "ElseSteps"):
                yield from steps(step.get("Arguments", {}).get(branch, []))

    return next(s for s in steps(body["Steps"]) if s["Type"] == "RegisterModel")


class Served:
    """A started stand-in account with a registered package and the deployed staging serving stack."""

    def __init__(self, assembly_dir: Path, work: Path) -> None:
        self.assembly = Assembly(assembly_dir)
        self.cloud = Cloud(self.assembly).start()
        self.cloud.deploy([s for n, s in self.assembly.stacks.items() if "-serving-" not in n])
        self.rh = Rehearsal(self.assembly, self.cloud, work / "rehearsal", log=lambda _m: None)
        self.trained = fx.train_model(fx.curate(work), work / "run")
        self.metadata = fx.load_metadata(self.trained.model_dir)
        self.artifacts = self.assembly.resolver.export("mlops-dev-lake-artifacts-name")
        self.prefix = f"models/{MODEL}/executions/{EXECUTION}"
        self.model_url = self.put(f"{self.prefix}/training/Train/output/model.tar.gz",
                                  self.trained.model_artifact.read_bytes())
        baseline = work / "baseline"
        data_quality_baseline(self.trained.outputs["baseline"], {"csv": {"header": False}}, baseline)
        self.metrics = self.baseline_metrics(baseline, EXECUTION)
        self.register = register_step(self.assembly)["Arguments"]
        self.package_arn = self.register_package()

    def put(self, key: str, body: bytes) -> str:
        self.cloud.admin("s3").put_object(Bucket=self.artifacts, Key=key, Body=body)
        return f"s3://{self.artifacts}/{key}"

    def baseline_metrics(self, directory: Path, execution: str) -> dict:
        """Upload statistics/constraints where the pipeline's QualityCheck step writes them for ``execution``."""
        return {"ModelDataQuality": {
            kind: {"ContentType": "application/json",
                   "S3Uri": self.put(f"models/{MODEL}/executions/{execution}/baseline/{kind.lower()}.json",
                                     (directory / f"{kind.lower()}.json").read_bytes())}
            for kind in ("Statistics", "Constraints")}}

    def register_package(self, environment: dict | None = None, metrics: dict | None = None) -> str:
        """CreateModelPackage as the Register step does (image, environment, content types from the definition)."""
        spec = json.loads(json.dumps(self.register["InferenceSpecification"]))
        container = spec["Containers"][0]
        container["ModelDataUrl"] = self.model_url
        if environment is not None:
            container["Environment"] = environment
        return self.cloud.admin("sagemaker").create_model_package(
            ModelPackageGroupName=self.register["ModelPackageGroupName"], InferenceSpecification=spec,
            ModelMetrics=metrics or self.metrics, ModelApprovalStatus="Approved",
        )["ModelPackageArn"]

    def parameters(self) -> dict[str, str]:
        quality = self.metrics["ModelDataQuality"]
        return {"ModelPackageArn": self.package_arn, "ModelDataUrl": self.model_url,
                "BaselineStatisticsUrl": quality["Statistics"]["S3Uri"],
                "BaselineConstraintsUrl": quality["Constraints"]["S3Uri"]}

    def role(self, stack_suffix: str, contains: str) -> str:
        stack = self.assembly.stack(stack_suffix)
        logical, _ = stack.one("AWS::IAM::Role", contains)
        return self.cloud.role_arn(stack, logical)

    def csv_rows(self, rows: list[dict]) -> str:
        return "".join(",".join(repr(float(v)) for v in fx.reference_encode(r, self.metadata)) + "\n" for r in rows)


@pytest.fixture(scope="module")
def served(dev_assembly_dir, tmp_path_factory):
    started = time.perf_counter()
    state = Served(dev_assembly_dir, tmp_path_factory.mktemp("serving"))
    state.deployment = deploy_serving(state.rh, MODEL, STAGE, state.parameters())
    state.setup_seconds = time.perf_counter() - started
    yield state
    state.deployment.close()
    state.cloud.stop()


def signed_post(cloud: Cloud, role_arn: str, url: str, body: bytes, service: str, headers: dict) -> tuple[int, dict, bytes]:
    """POST ``body`` to ``url`` signed (SigV4) with the role's credentials, as the smoke test's client does."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(method="POST", url=url, data=body, headers=headers)
    SigV4Auth(Credentials(*cloud.credentials(role_arn)), service, "us-east-1").add_auth(request)
    prepared = urllib.request.Request(url, data=body, headers=dict(request.headers.items()), method="POST")
    try:
        with urllib.request.urlopen(prepared, timeout=120) as response:
            return response.status, dict(response.headers.items()), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers.items()), error.read()


# --- the deployed serving stack ------------------------------------------------------------------------------------------
def test_endpoint_and_lambda_serve_the_package_with_the_same_predictions(served):
    started = time.perf_counter()
    deployment = served.deployment
    assert deployment.endpoint.name == "mlops-dev-abalone-staging" == deployment.function.name
    assert deployment.function.environment["INFERENCE_MODE"] == "model"
    expected = fx.reference_predict(served.trained.model_dir, ROWS)
    smoke = served.role(f"-model-{MODEL}", "DeployCdSmokeStagingRole")

    # InvokeEndpoint over HTTP with the smoke role, as sagemaker-runtime sends it
    import boto3

    key, secret, token = served.cloud.credentials(smoke)
    runtime = boto3.client("sagemaker-runtime", region_name="us-east-1", endpoint_url=deployment.endpoint.url,
                           aws_access_key_id=key, aws_secret_access_key=secret, aws_session_token=token)
    answer = runtime.invoke_endpoint(EndpointName=deployment.endpoint.name, ContentType="text/csv",
                                     Accept="text/csv", Body=served.csv_rows(ROWS).encode())
    assert answer["ContentType"] == "text/csv" and answer["InvokedProductionVariant"] == "AllTraffic"
    from_endpoint = [float(v) for v in answer["Body"].read().decode().split()]
    assert from_endpoint == pytest.approx(expected, rel=1e-5)
    as_json = deployment.endpoint.invoke(json.dumps({"instances": ROWS}), "application/json", "application/json")
    assert json.loads(as_json.body)["predictions"] == pytest.approx(expected, rel=1e-5)

    # the Function URL (AWS_IAM) with the same role, the Lambda running from its zips in model mode
    status, _, body = signed_post(served.cloud, smoke, deployment.function_url,
                                  json.dumps({"instances": ROWS}).encode(), "lambda",
                                  {"Content-Type": "application/json"})
    assert status == 200, body
    from_lambda = json.loads(body)["predictions"]
    assert from_lambda == pytest.approx(from_endpoint, rel=1e-5)

    # data capture: written under the execution role, readable by the monitor's role, rows match the baseline
    facts = deployment.endpoint.check_capture(deployment.data_quality_role_arn)
    assert facts["csv_rows"] == len(ROWS) and facts["baseline_columns"] == len(served.metadata["encoded_columns"])
    record = deployment.endpoint.captured_records()[0]
    assert record["captureData"]["endpointInput"]["encoding"] == "CSV"
    assert record["eventVersion"] == "0" and record["eventMetadata"]["eventId"]
    print(f"setup {served.setup_seconds:.1f}s, test {time.perf_counter() - started:.1f}s")


def test_caller_without_invoke_endpoint_is_denied(served):
    lambda_role = served.deployment.function.role_arn  # model mode: no sagemaker:InvokeEndpoint
    status, headers, body = signed_post(served.cloud, lambda_role,
                                        f"{served.deployment.endpoint.url}/endpoints/mlops-dev-abalone-staging/invocations",
                                        b"1,2", "sagemaker", {"Content-Type": "text/csv"})
    assert status == 403 and headers["x-amzn-ErrorType"] == "AccessDeniedException"
    assert "sagemaker:InvokeEndpoint" in json.loads(body)["message"]


def test_undeclared_parameter_fails_like_cloudformation(served):
    with pytest.raises(RehearsalError, match=r"Parameters: \[ModelDataURL\] do not exist in the template"):
        deploy_serving(served.rh, MODEL, "prod", {"ModelPackageArn": served.package_arn, "ModelDataURL": "s3://b/k"})


# --- regression tests: each reintroduces a serving defect -----------------------------------------------------------------
def test_package_without_sagemaker_program_is_algorithm_mode(served):
    environment = {k: v for k, v in served.register["InferenceSpecification"]["Containers"][0]["Environment"].items()
                   if k != "SAGEMAKER_PROGRAM"}
    arn = served.register_package(environment=environment)
    with pytest.raises(RehearsalError, match=ALGORITHM_MODE):
        EndpointStandIn.from_package(served.rh, arn, served.deployment.endpoint.role_arn, endpoint_name="algo-mode")


def test_endpoint_is_network_isolated_and_serves_from_model_tar_gz_alone(served):
    # The stage's model runs with EnableNetworkIsolation (no credentials, no endpoint in the container) and served
    # the predictions above with its code from model.tar.gz.
    assert served.rh.facts["endpoint"][served.deployment.endpoint.name]["network_isolation"] is True
    assert served.deployment.endpoint.container["Environment"]["SAGEMAKER_SUBMIT_DIRECTORY"] == "/opt/ml/model/code"
    # The defect: a script-mode package whose code is a separate S3 tarball, which an isolated container cannot fetch.
    source = served.put(f"{served.prefix}/source/sourcedir.tar.gz", b"not downloaded")
    environment = {**served.register["InferenceSpecification"]["Containers"][0]["Environment"],
                   "SAGEMAKER_SUBMIT_DIRECTORY": source}
    arn = served.register_package(environment=environment)
    with pytest.raises(RehearsalError, match=re.escape(ISOLATED_SUBMIT_DIRECTORY)):
        EndpointStandIn.from_package(served.rh, arn, served.deployment.endpoint.role_arn, endpoint_name="fetches-code",
                                     network_isolation=True)


def test_baseline_with_header_and_raw_columns_is_caught(served, tmp_path):
    raw = tmp_path / "raw-dataset"
    raw.mkdir()
    # the defect: a baseline of the raw rows (header, text column, target) instead of the encoded rows
    lines = (ROOT / "data" / "abalone.csv").read_text().splitlines()[:301]
    (raw / "abalone.csv").write_text("\n".join(lines) + "\n")
    data_quality_baseline(raw, {"csv": {"header": True}}, tmp_path / "raw-baseline")
    metrics = served.baseline_metrics(tmp_path / "raw-baseline", "rehearsal0002")
    arn = served.register_package(metrics=metrics)
    capture = dict(served.deployment.endpoint.data_capture)
    with EndpointStandIn.from_package(served.rh, arn, served.deployment.endpoint.role_arn,
                                      endpoint_name="raw-baseline", data_capture=capture) as endpoint:
        response = endpoint.invoke(served.csv_rows(ROWS[:2]), "text/csv", "text/csv")
        assert response.status == 200, response.error
        with pytest.raises(RehearsalError, match=BASELINE_MISMATCH) as failure:
            # read as the administrator: the stage's monitor role may read only the baseline it was deployed with
            endpoint.check_capture()
    assert "columns are named ['sex'" in str(failure.value)
    assert "a captured request row has 10 columns" in str(failure.value)


def test_function_url_caller_with_only_invoke_function_url_is_denied(served):
    iam = served.cloud.admin("iam")
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "codebuild.amazonaws.com"},
                                                     "Action": "sts:AssumeRole"}]}
    arn = iam.create_role(RoleName="smoke-url-only", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    function = served.deployment.function.arn
    iam.put_role_policy(RoleName="smoke-url-only", PolicyName="url", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "lambda:InvokeFunctionUrl", "Resource": [function, f"{function}:*"],
                       "Condition": {"StringEquals": {"lambda:FunctionUrlAuthType": "AWS_IAM"}}}]}))
    served.cloud.roles[arn] = "test/smoke-url-only"
    status, headers, body = signed_post(served.cloud, arn, served.deployment.function_url,
                                        json.dumps({"instances": ROWS[:1]}).encode(), "lambda",
                                        {"Content-Type": "application/json"})
    assert status == 403 and headers["x-amzn-ErrorType"] == "AccessDeniedException"
    message = json.loads(body)["Message"]
    assert "lambda:InvokeFunction on resource" in message and f"{function}:live" in message
