"""Serving joins the VPC (issue 13): the endpoint's model, the inference function and the data-quality monitor of a
prod serving stack (network.mode create) run in the shared stack's network, imported by export name; dev's
(network.mode none) run outside. The constructs' VPC props are checked without synthesis.

The serving stacks are synthesized alone, without the shared stack, as the deploy pipeline synthesizes them; cdk-nag
and cfn-lint over the same prod stack run in tests/infra/test_serving.py, the whole prod app in test_prod_isolation.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3

from mlops_constructs.endpoint_options import (
    LAMBDA_VPC_DESCRIBE_ACTIONS,
    LAMBDA_VPC_INTERFACE_ACTIONS,
    SAGEMAKER_VPC_DESCRIBE_ACTIONS,
    SAGEMAKER_VPC_INTERFACE_ACTIONS,
)
from mlops_constructs.lambda_inference import LambdaInference
from mlops_constructs.monitoring import DataQualityMonitor
from mlops_constructs.realtime_endpoint import RealtimeEndpoint
from platform_config import load_config
from stacks.code_locations import INFERENCE_CODE, INFERENCE_DEPENDENCIES
from stacks.data_stack import DataStack
from stacks.serving_stack import ServingStack

ROOT = Path(__file__).resolve().parents[2]
LAMBDA_VPC_POLICY = "AWSLambdaVPCAccessExecutionRole"


@pytest.fixture(scope="module")
def templates(tmp_path_factory) -> dict[str, dict]:
    """The prod serving stack of the first model's last stage (endpoint, endpoint_proxy function, monitor) and dev's
    staging one (endpoint and model-mode function), synthesized without the shared stack."""
    outdir = tmp_path_factory.mktemp("cdk-serving-network")
    context = json.loads((ROOT / "cdk.json").read_text())["context"]
    context["aws:cdk:disable-asset-staging"] = True
    app = cdk.App(outdir=str(outdir), context=context)
    out = {}
    for env in ("prod", "dev"):
        config = load_config(env)
        data = DataStack(app, f"{config.prefix()}-data", config=config)
        model = config.models[0]
        stage = model.stages[-1] if env == "prod" else model.stages[0]
        stack = ServingStack(app, f"{config.prefix()}-serving-{model.name}-{stage.name}", config=config, model=model,
                             stage=stage, lake_refs=data.lake_refs)
        out[env] = stack
    assembly = app.synth()
    return {env: json.loads(Path(assembly.get_stack_by_name(s.stack_name).template_full_path).read_text())
            for env, s in out.items()}


def _of_type(template: dict, cfn_type: str) -> dict[str, dict]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == cfn_type}


def _network_export(env: str, attribute: str) -> str:
    return load_config(env).names.network_export(attribute)


def _vpc_ids(vpc_config: dict, env: str) -> None:
    subnets = vpc_config.get("Subnets", vpc_config.get("SubnetIds"))
    groups = vpc_config["SecurityGroupIds"]
    assert len(subnets) == load_config(env).network.az_count
    for subnet in subnets:
        assert _network_export(env, "subnet-ids") in json.dumps(subnet), subnet
    for group in groups:
        assert _network_export(env, "workload-sg-id") in json.dumps(group), group


def _statements(template: dict, role_logical: str) -> list[dict]:
    found = []
    for policy in _of_type(template, "AWS::IAM::Policy").values():
        if {"Ref": role_logical} in policy["Properties"]["Roles"]:
            found += policy["Properties"]["PolicyDocument"]["Statement"]
    return found


def _role_of(arn_value: dict) -> str:
    """The logical ID of the role an ``Fn::GetAtt [Role, Arn]`` names."""
    return arn_value["Fn::GetAtt"][0]


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def _check_eni_statements(statements: list[dict], describe: tuple, interface_actions: tuple) -> None:
    by_sid = {s.get("Sid"): s for s in statements}
    assert set(_as_list(by_sid["VpcDescribe"]["Action"])) == set(describe)
    assert by_sid["VpcDescribe"]["Resource"] == "*"
    create = by_sid["VpcCreateNetworkInterface"]
    assert _as_list(create["Action"]) == ["ec2:CreateNetworkInterface"]
    resources = json.dumps(create["Resource"])
    assert ":network-interface/*" in resources and ":subnet/" in resources and ":security-group/" in resources
    assert "subnet/*" not in resources and "security-group/*" not in resources  # the placement's own, by ID
    lifecycle = by_sid["VpcNetworkInterfaces"]
    assert set(_as_list(lifecycle["Action"])) == set(interface_actions)
    assert len(_as_list(lifecycle["Resource"])) == 1 and ":network-interface/*" in json.dumps(lifecycle["Resource"])
    # Nothing else of EC2 anywhere in the role.
    ec2_actions = {a for s in statements for a in _as_list(s["Action"]) if a.startswith("ec2:")}
    assert ec2_actions == {*describe, "ec2:CreateNetworkInterface", *interface_actions}


# --- prod: in the VPC ---------------------------------------------------------------------------------------------
def test_prod_model_is_isolated_in_the_imported_vpc_with_its_code_in_the_package(templates):
    (name, model), = _of_type(templates["prod"], "AWS::SageMaker::Model").items()
    props = model["Properties"]
    assert props["EnableNetworkIsolation"] is True
    _vpc_ids(props["VpcConfig"], "prod")
    # The code comes from the package's model.tar.gz (SAGEMAKER_SUBMIT_DIRECTORY /opt/ml/model/code): the model names
    # only the package, no image, model data or environment of its own that could point elsewhere.
    assert [set(c) for c in props["Containers"]] == [{"ModelPackageName"}]


def test_prod_endpoint_role_manages_its_network_interfaces_only(templates):
    template = templates["prod"]
    (_, model), = _of_type(template, "AWS::SageMaker::Model").items()
    role = _role_of(model["Properties"]["ExecutionRoleArn"])
    _check_eni_statements(_statements(template, role), SAGEMAKER_VPC_DESCRIBE_ACTIONS, SAGEMAKER_VPC_INTERFACE_ACTIONS)
    # The model waits for the role's policy (SageMaker checks the EC2 permissions when it creates the model).
    assert any("Policy" in d for d in _as_list(model.get("DependsOn", [])))


def test_prod_function_runs_in_the_vpc_with_inline_eni_permissions(templates):
    template = templates["prod"]
    functions = {k: v for k, v in _of_type(template, "AWS::Lambda::Function").items()
                 if v["Properties"].get("Layers")}
    (name, function), = functions.items()
    props = function["Properties"]
    _vpc_ids(props["VpcConfig"], "prod")
    role = _role_of(props["Role"])
    _check_eni_statements(_statements(template, role), LAMBDA_VPC_DESCRIBE_ACTIONS, LAMBDA_VPC_INTERFACE_ACTIONS)
    assert LAMBDA_VPC_POLICY not in json.dumps(template)
    # No security group of the function's own: the shared stack's workload group only.
    assert not _of_type(template, "AWS::EC2::SecurityGroup")
    # Lambda checks the role's ENI permissions at CreateFunction: the function waits for the role's policy.
    assert any("Policy" in d for d in function.get("DependsOn", []))


def test_every_prod_serving_function_runs_in_the_vpc(templates):
    functions = _of_type(templates["prod"], "AWS::Lambda::Function")
    assert functions
    for name, function in functions.items():
        assert "VpcConfig" in function["Properties"], f"{name} runs outside the VPC"


def test_prod_data_quality_jobs_run_in_the_vpc_isolated_and_encrypted(templates):
    template = templates["prod"]
    (name, definition), = _of_type(template, "AWS::SageMaker::DataQualityJobDefinition").items()
    network = definition["Properties"]["NetworkConfig"]
    assert network["EnableNetworkIsolation"] is True and network["EnableInterContainerTrafficEncryption"] is True
    _vpc_ids(network["VpcConfig"], "prod")
    assert definition["Properties"]["JobResources"]["ClusterConfig"]["VolumeKmsKeyId"]
    role = _role_of(definition["Properties"]["RoleArn"])
    _check_eni_statements(_statements(template, role), SAGEMAKER_VPC_DESCRIBE_ACTIONS, SAGEMAKER_VPC_INTERFACE_ACTIONS)
    # The content-derived name still resolves (the VpcConfig's import tokens are part of the digest).
    name = definition["Properties"]["JobDefinitionName"]  # <prefix>-<digest>-<package version> (a token)
    assert json.dumps(name).count("Fn::ImportValue") == 0 and load_config("prod").prefix() in json.dumps(name)


def test_prod_serving_stack_imports_the_network_by_export_name(templates):
    text = json.dumps(templates["prod"])
    for attribute in ("subnet-ids", "workload-sg-id"):
        assert _network_export("prod", attribute) in text
    assert _network_export("prod", "glue-sg-id") not in text


# --- dev: outside -------------------------------------------------------------------------------------------------
def test_dev_serving_stack_has_no_vpc_and_no_eni_permissions(templates):
    template = templates["dev"]
    text = json.dumps(template)
    assert "VpcConfig" not in text and "ec2:" not in text and "Fn::ImportValue" in text  # (imports the lake)
    for model in _of_type(template, "AWS::SageMaker::Model").values():
        assert model["Properties"]["EnableNetworkIsolation"] is True


# --- the constructs' VPC props (no synthesis) -------------------------------------------------------------------
@pytest.fixture()
def scratch():
    stack = cdk.Stack(cdk.App(), "Scratch")
    key = kms.Key.from_key_arn(stack, "Key", "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-12345678")
    bucket = s3.Bucket.from_bucket_name(stack, "Artifacts", "mlops-dev-artifacts")
    vpc = ec2.Vpc.from_vpc_attributes(stack, "Vpc", vpc_id="vpc-1", availability_zones=["eu-west-1a", "eu-west-1b"],
                                      isolated_subnet_ids=["subnet-1", "subnet-2"])
    group = ec2.SecurityGroup.from_security_group_id(stack, "Group", "sg-1", mutable=False)
    return stack, key, bucket, vpc, group


def _endpoint(scratch, **props):
    stack, key, bucket, _, _ = scratch
    base = dict(model_package_arn="arn:aws:sagemaker:eu-west-1:123456789012:model-package/g/1",
                endpoint_name="mlops-dev-abalone-staging", encryption_key=key, model_artifacts_bucket=bucket)
    return RealtimeEndpoint(stack, "Endpoint", **{**base, **props})


def test_endpoint_in_a_vpc_places_the_model_there(scratch):
    stack, _, _, vpc, group = scratch
    endpoint = _endpoint(scratch, vpc=vpc, security_groups=[group])
    assert endpoint.placement.subnet_ids == ("subnet-1", "subnet-2")
    vpc_config = stack.resolve(endpoint.model.vpc_config)
    assert vpc_config == {"securityGroupIds": ["sg-1"], "subnets": ["subnet-1", "subnet-2"]}
    assert endpoint.model.enable_network_isolation is True


def test_endpoint_without_vpc_has_no_vpc_config(scratch):
    assert _endpoint(scratch).model.vpc_config is None


def test_endpoint_vpc_without_security_groups_is_refused(scratch):
    _, _, _, vpc, _ = scratch
    with pytest.raises(ValueError, match="RealtimeEndpoint: vpc needs security_groups"):
        _endpoint(scratch, vpc=vpc)


def test_endpoint_security_groups_without_vpc_are_refused(scratch):
    *_, group = scratch
    with pytest.raises(ValueError, match="RealtimeEndpoint: security_groups is set but vpc is not"):
        _endpoint(scratch, security_groups=[group])


def test_serverless_endpoint_cannot_join_a_vpc(scratch):
    _, _, _, vpc, group = scratch
    with pytest.raises(ValueError, match="Serverless Inference does not support a VPC"):
        _endpoint(scratch, vpc=vpc, security_groups=[group], serverless=(2048, 5), traffic_routing=None,
                  data_capture_percent=0)


def test_function_and_monitor_in_a_vpc(scratch):
    stack, key, bucket, vpc, group = scratch
    inference = LambdaInference(stack, "Inference", mode="model", model_s3_uri="s3://b/models/m/model.tar.gz",
                                code_dir=INFERENCE_CODE, dependencies_dir=INFERENCE_DEPENDENCIES,
                                vpc=vpc, security_groups=[group])
    cfn = inference.function.node.default_child
    assert stack.resolve(cfn.vpc_config) == {"securityGroupIds": ["sg-1"], "subnetIds": ["subnet-1", "subnet-2"]}
    monitor = DataQualityMonitor(stack, "Monitor", name="mlops-dev-abalone-staging",
                                 endpoint_name="mlops-dev-abalone-staging", bucket=bucket, encryption_key=key,
                                 baseline_statistics_uri="s3://b/s.json", baseline_constraints_uri="s3://b/c.json",
                                 data_capture_prefix="capture/", output_prefix="reports/", vpc=vpc,
                                 security_groups=[group])
    network = stack.resolve(monitor.job_definition.network_config)
    assert network["vpcConfig"] == {"securityGroupIds": ["sg-1"], "subnets": ["subnet-1", "subnet-2"]}
    assert network["enableNetworkIsolation"] is True


def test_function_vpc_without_security_groups_is_refused(scratch):
    stack, _, _, vpc, _ = scratch
    with pytest.raises(ValueError, match="LambdaInference: vpc needs security_groups"):
        LambdaInference(stack, "Inference", mode="model", model_s3_uri="s3://b/models/m/model.tar.gz",
                        code_dir=INFERENCE_CODE, dependencies_dir=INFERENCE_DEPENDENCIES, vpc=vpc)
