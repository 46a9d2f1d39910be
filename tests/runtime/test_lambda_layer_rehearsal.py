"""Rehearsal of the inference function as Lambda runs what `cdk deploy` uploads.

The dev app is synthesized (serving stacks included); the serving stack's inference function and its layer are
found in the template, their ``Code``/``Content`` ``S3Key`` mapped to the assets of ``cdk.out`` (the code's directory,
the layer's zip, extracted as Lambda extracts it) through the stack's ``*.assets.json``, and the template's
``Handler`` is invoked with the template's ``Environment`` (parameters resolved as CloudFormation would) on a clean Python 3.12 (rehearsal.lambda_runtime: ``python -I -S``, Lambda's
``sys.path`` order, the SDK Lambda ships as the only addition). The model is a real one, trained by the project's
pipeline, served from S3 (a local moto server): a one-row prediction, a malformed body and a wrong method.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import inference_fixtures as fx
from rehearsal.lambda_runtime import (
    find_python,
    layer_directory,
    resolve_environment,
    run,
    runtime_sdk_dir,
    synthesized_functions,
)
from stacks.code_locations import INFERENCE_DEPENDENCIES

PYTHON = find_python("3.12")
pytestmark = pytest.mark.skipif(PYTHON is None, reason="no Python 3.12 interpreter (pyenv install 3.12)")

BUCKET = "rehearsal-artifacts"
KEY = "abalone/pipelines-run-1/output/model.tar.gz"
PACKAGE_ARN = "arn:aws:sagemaker:us-east-1:123456789012:model-package/mlops-dev-abalone/7"
REGION = "us-east-1"


@pytest.fixture(scope="module")
def assembly(tmp_path_factory):
    from platform_config import load_config
    from stacks.app_builder import build_app

    outdir = tmp_path_factory.mktemp("cdk-out")
    # Staged assets (the default): the directories under cdk.out are what cdk-assets zips and uploads.
    cloud_assembly = build_app(load_config("dev"), outdir=outdir, extra_context={"serving": "all"}).synth()
    return outdir, cloud_assembly


@pytest.fixture(scope="module")
def inference_function(assembly):
    outdir, cloud_assembly = assembly
    found = {}
    for stack in cloud_assembly.stacks:
        if "-serving-" not in stack.stack_name:
            continue
        for logical_id, function in synthesized_functions(outdir, stack.id).items():
            if function.layer_dirs:  # the inference function (the only one with the dependency layer)
                template = json.loads(Path(stack.template_full_path).read_text())
                found[stack.stack_name] = (function, template)
    assert found, "no serving stack with the inference function in the dev app"
    name = sorted(found)[0]
    return found[name]


@pytest.fixture(scope="module")
def s3_model(tmp_path_factory):
    """A real model.tar.gz (project pipeline) in a bucket of a local moto server; yields the server's endpoint."""
    import boto3
    from moto.server import ThreadedMotoServer

    work = tmp_path_factory.mktemp("model")
    model = fx.train_model(fx.curate(work), work / "run")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name=REGION, aws_access_key_id="testing",
                          aws_secret_access_key="testing")
        s3.create_bucket(Bucket=BUCKET)
        s3.upload_file(str(model.model_artifact), BUCKET, KEY)
        yield endpoint, model
    finally:
        server.stop()


@pytest.fixture(scope="module")
def lambda_call(inference_function, s3_model, tmp_path_factory):
    function, template = inference_function
    endpoint, _ = s3_model
    parameters = {name: spec["Default"] for name, spec in template.get("Parameters", {}).items() if "Default" in spec}
    model_params = [n for n, s in template["Parameters"].items() if "model.tar.gz" in s.get("Description", "")]
    package_params = [n for n, s in template["Parameters"].items() if "model package" in s.get("Description", "")]
    assert model_params and package_params, sorted(template["Parameters"])
    parameters.update({model_params[0]: f"s3://{BUCKET}/{KEY}", package_params[0]: PACKAGE_ARN,
                       "AWS::Region": REGION, "AWS::AccountId": "123456789012", "AWS::Partition": "aws"})
    environment = resolve_environment(function.environment, parameters)
    sdk = runtime_sdk_dir(tmp_path_factory.mktemp("var-runtime"))
    credentials = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
                   "AWS_ENDPOINT_URL_S3": endpoint}

    def call(event):
        return run(function.function_dir, function.layer_dirs, function.handler, environment, event, PYTHON,
                   runtime_dirs=[sdk], extra_env=credentials, memory_mb=function.memory_mb, region=REGION,
                   function_name="mlops-dev-abalone-staging")

    return call, environment


def test_the_assets_are_the_staged_code_and_layer_zip(inference_function, assembly):
    outdir, _ = assembly
    function, _ = inference_function
    assert function.runtime == "python3.12" and function.handler == "app.handler"
    assert function.function_dir.parent == outdir and function.function_dir.name.startswith("asset.")
    assert (function.function_dir / "app.py").is_file() and not (function.function_dir / "requirements.txt").exists()
    # The layer is the build's zip, staged byte for byte (uploaded as is, not re-zipped), under its content hash.
    (layer,) = function.layer_dirs
    assert layer.parent == outdir and layer.name.startswith("asset.") and layer.suffix == ".zip", layer
    assert layer.read_bytes() == INFERENCE_DEPENDENCIES.read_bytes()
    assert re.fullmatch(r"asset\.[0-9a-f]{64}\.zip", layer.name), layer.name
    extracted = layer_directory(layer)  # as Lambda extracts it into /opt
    assert (extracted / "python" / "xgboost").is_dir() and sorted(p.name for p in extracted.iterdir()) == ["python"]


def test_one_row_prediction_from_the_deployed_assets(lambda_call, s3_model, inference_function):
    call, environment = lambda_call
    _, model = s3_model
    assert environment["MODEL_S3_URI"] == f"s3://{BUCKET}/{KEY}"
    assert environment["MODEL_VERSION"] == "mlops-dev-abalone/7"
    invocation = call(fx.function_url_event({"instances": [fx.ROW]}))
    assert invocation.ok, invocation.result
    status, body, headers = fx.parse_response(invocation.result)
    assert status == 200, (body, invocation.stdout[-3000:], invocation.stderr[-3000:])
    assert body["count"] == 1 and body["model_version"] == "mlops-dev-abalone/7"
    (expected,) = fx.reference_predict(model.model_dir, [fx.ROW])
    assert body["predictions"][0] == pytest.approx(expected, rel=1e-5)
    # Lambda's path order, nothing of the project or of this virtualenv
    function, _ = inference_function
    layer = layer_directory(function.layer_dirs[0]).resolve()
    assert invocation.sys_path[:3] == [str(function.function_dir.resolve()),
                                       str(layer / "python" / "lib" / "python3.12" / "site-packages"),
                                       str(layer / "python")]
    assert not any(str(Path(__file__).resolve().parents[2]) == p or ".venv" in p for p in invocation.sys_path)
    metrics = [r for r in invocation.log_records() if "_aws" in r]
    assert any("Predictions" in r for r in metrics), invocation.stdout[-2000:]


def test_client_errors_from_the_deployed_assets(lambda_call):
    call, _ = lambda_call
    invocation = call(fx.function_url_event("{not json"))
    status, body, _ = fx.parse_response(invocation.result)
    assert (status, body["error"]) == (400, "malformed_json")
    invocation = call(fx.function_url_event({"instances": [fx.ROW]}, method="GET"))
    status, body, _ = fx.parse_response(invocation.result)
    assert status == 405, body
