"""The model-build pipeline in the platform's VPC (prod: network.mode create; dev: none): every job step joins the
imported subnets and workload security group, isolated and encrypted; the isolated training job reads its source
tarball from the ``code`` channel under the asset's object name; the role may create the jobs' network interfaces in
that VPC only."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mlops_constructs import sagemaker_definition as sdk
from tests.infra.definition_check import all_steps, check_definition, definition_from_template

JOB_TYPES = ("Processing", "Training", "QualityCheck")


def _render(node: Any) -> str:
    """A CloudFormation value as readable text: ``<import:NAME>``, ``<import:NAME[i]>`` (Fn::Select of Fn::Split),
    ``<ref:X>``, ``<asset-bucket>`` (an Fn::Sub), anything else ``<token>``. JSON-safe (no quotes, no backslashes)."""
    if isinstance(node, str):
        return node
    if isinstance(node, dict) and len(node) == 1:
        (fn, arg), = node.items()
        if fn == "Fn::ImportValue":
            return f"<import:{_render(arg)}>"
        if fn == "Fn::Select" and isinstance(arg[1], dict) and "Fn::Split" in arg[1]:
            return f"<import:{_render(arg[1]['Fn::Split'][1])[len('<import:'):-1]}[{arg[0]}]>"
        if fn == "Ref":
            return f"<ref:{arg}>"
        if fn == "Fn::Join":
            return arg[0].join(_render(p) for p in arg[1])
        if fn == "Fn::Sub" and isinstance(arg, str):
            return arg.replace("${", "<").replace("}", ">")
    return "<token>"


def _definition(synthesized, model: str) -> dict:
    """The model stack's pipeline definition with every intrinsic rendered by :func:`_render`."""
    template = synthesized.template(f"model-{model}")
    (pipeline,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::SageMaker::Pipeline"]
    return json.loads(_render(pipeline["Properties"]["PipelineDefinition"]["PipelineDefinitionBody"]))


def _network(step: dict) -> dict:
    args = step["Arguments"]
    return args if step["Type"] == "Training" else args.get("NetworkConfig", {})


def _expected_placement(config) -> tuple[list[str], list[str]]:
    names = config.names
    subnets = [f"<import:{names.network_export('subnet-ids')}[{i}]>" for i in range(config.network.az_count)]
    groups = [f"<import:{names.network_export('workload-sg-id')}>", *config.network.security_group_ids]
    return subnets, groups


def test_every_prod_job_step_joins_the_imported_subnets_and_groups_isolated(prod):
    assert prod.config.network.mode == "create"
    subnets, groups = _expected_placement(prod.config)
    for model in prod.config.models:
        steps = [s for s in all_steps(_definition(prod, model.name)) if s["Type"] in JOB_TYPES]
        assert {s["Name"] for s in steps} == {"Preprocess", "DataQualityBaseline", "Train", "ResolveChampion",
                                              "Evaluate"}
        for step in steps:
            network = _network(step)
            assert network["VpcConfig"] == {"Subnets": subnets, "SecurityGroupIds": groups}, step["Name"]
            # ResolveChampion calls SageMaker through the VPC's endpoint (the approved package): not isolated.
            assert network["EnableNetworkIsolation"] is (step["Name"] != "ResolveChampion"), step["Name"]
            assert network["EnableInterContainerTrafficEncryption"] is True, step["Name"]
        text = json.dumps(_definition(prod, model.name))
        assert "placeholder" not in text


def test_prod_definition_is_a_valid_api_request(prod):
    for model in prod.config.models:
        assert check_definition(definition_from_template(prod.template(f"model-{model.name}"))) == []


def test_isolated_training_reads_the_source_tarball_asset_from_its_code_channel(prod):
    build = prod.stacks["model-abalone"].build
    object_name = build.train_source.s3_object_key.rsplit("/", 1)[-1]
    assert object_name.startswith(build.train_source.asset_hash) and object_name != "sourcedir.tar.gz"
    (train,) = [s for s in _definition(prod, "abalone")["Steps"] if s["Type"] == "Training"]
    args = train["Arguments"]
    channels = {c["ChannelName"]: c for c in args["InputDataConfig"]}
    code = channels[sdk.TRAIN_CODE_CHANNEL]["DataSource"]["S3DataSource"]
    assert code["S3DataType"] == "S3Prefix" and code["S3Uri"].endswith(f"/{object_name}")
    assert code["S3Uri"].startswith("s3://cdk-")  # the CDK assets bucket: the object cdk deploy uploads
    assert args["HyperParameters"]["sagemaker_submit_directory"] == f"/opt/ml/input/data/code/{object_name}"
    assert args["HyperParameters"]["sagemaker_program"] == "train.py"
    assert set(channels) == {"train", "validation", sdk.TRAIN_CODE_CHANNEL}


def test_dev_definition_has_no_network_settings(dev):
    for model in dev.config.models:
        definition = _definition(dev, model.name)
        text = json.dumps(definition)
        for field in ("NetworkConfig", "VpcConfig", "EnableNetworkIsolation", "EnableInterContainerTrafficEncryption"):
            assert field not in text, (model.name, field)
        (train,) = [s for s in definition["Steps"] if s["Type"] == "Training"]
        args = train["Arguments"]
        assert sdk.TRAIN_CODE_CHANNEL not in {c["ChannelName"] for c in args["InputDataConfig"]}
        assert args["HyperParameters"]["sagemaker_submit_directory"].startswith("s3://cdk-")


def _role_statements(synthesized, model: str) -> dict[str, dict]:
    template = synthesized.template(f"model-{model}")
    out = {}
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::IAM::Policy":
            continue
        roles = json.dumps(resource["Properties"].get("Roles", []))
        if "BuildPipelineExecutionRole" not in roles:
            continue
        for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
            if statement.get("Sid"):
                out[statement["Sid"]] = statement
    return out


def test_prod_role_creates_network_interfaces_only_in_the_vpc(prod):
    statements = _role_statements(prod, "abalone")
    interfaces = statements["JobNetworkInterfaces"]
    assert sorted(interfaces["Action"]) == ["ec2:CreateNetworkInterface", "ec2:CreateNetworkInterfacePermission",
                                            "ec2:DeleteNetworkInterface", "ec2:DeleteNetworkInterfacePermission"]
    vpc = _render(interfaces["Condition"]["ArnEquals"]["ec2:Vpc"])
    assert vpc.endswith(f":vpc/<import:{prod.config.names.network_export('vpc-id')}>")
    resources = sorted(_render(r) for r in interfaces["Resource"])
    subnets, groups = _expected_placement(prod.config)
    prefix = "arn:<ref:AWS::Partition>:ec2:<ref:AWS::Region>:<ref:AWS::AccountId>:"
    assert resources == sorted([f"{prefix}network-interface/*", *(f"{prefix}subnet/{s}" for s in subnets),
                                *(f"{prefix}security-group/{g}" for g in groups)])
    describe = statements["JobNetworkDescribe"]
    assert describe["Resource"] == "*"
    assert sorted(describe["Action"]) == ["ec2:DescribeDhcpOptions", "ec2:DescribeNetworkInterfaces",
                                          "ec2:DescribeSecurityGroups", "ec2:DescribeSubnets", "ec2:DescribeVpcs"]
    # the jobs run under the pipeline role: it passes itself to SageMaker
    assert statements["PassOwnRole"]["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}


def test_dev_role_has_no_ec2_permissions(dev):
    statements = _role_statements(dev, "abalone")
    assert "JobNetworkInterfaces" not in statements and "JobNetworkDescribe" not in statements
    assert "ec2:" not in json.dumps(statements)


# --- the construct's props ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def construct_props():
    """A stack with a VPC, a security group and what ModelBuildPipeline needs besides (no synthesis)."""
    import aws_cdk as cdk
    from aws_cdk import aws_ec2 as ec2
    from aws_cdk import aws_kms as kms
    from aws_cdk import aws_s3 as s3

    from sagemaker_steps.model_spec import ModelSpec

    def make():
        app = cdk.App(context={"aws:cdk:disable-asset-staging": True})
        stack = cdk.Stack(app, "S")
        vpc = ec2.Vpc.from_vpc_attributes(stack, "Vpc", vpc_id="vpc-0123456789abcdef0",
                                          availability_zones=["eu-west-1a", "eu-west-1b"],
                                          isolated_subnet_ids=["subnet-0123456789abcdef0", "subnet-0fedcba987654321f"])
        group = ec2.SecurityGroup.from_security_group_id(stack, "Sg", "sg-0123456789abcdef0")
        key = kms.Key(stack, "Key")
        bucket = s3.Bucket(stack, "Bucket")
        props = dict(pipeline_name="p", model_package_group_name="g", project="x", environment="dev",
                     spec=ModelSpec(name="m", target="rings", metric="rmse", threshold=3.0),
                     input_bucket=bucket, input_prefix="curated/", artifacts_bucket=bucket, encryption_key=key)
        return stack, vpc, group, props

    return make


@pytest.mark.parametrize("network,message", [
    ({"security_groups": "group"}, "security_groups is set but vpc is not"),
    ({"vpc": "vpc"}, "vpc needs security_groups"),
])
def test_incomplete_network_props_are_refused(construct_props, network, message):
    from mlops_constructs.model_build_pipeline import ModelBuildPipeline

    stack, vpc, group, props = construct_props()
    values = {"vpc": vpc, "group": [group]}
    with pytest.raises(ValueError, match=message):
        ModelBuildPipeline(stack, "Build", **props, **{k: values[v] for k, v in network.items()})


def test_construct_places_jobs_in_the_given_subnets_and_groups(construct_props):
    from mlops_constructs.model_build_pipeline import ModelBuildPipeline

    stack, vpc, group, props = construct_props()
    build = ModelBuildPipeline(stack, "Build", **props, vpc=vpc, security_groups=[group])
    assert build.placement.subnet_ids == ("subnet-0123456789abcdef0", "subnet-0fedcba987654321f")
    assert build.placement.security_group_ids == ("sg-0123456789abcdef0",)
    body = stack.resolve(build.pipeline.pipeline_definition)["PipelineDefinitionBody"]
    definition = json.loads(_render(body))
    for step in all_steps(definition):
        if step["Type"] in JOB_TYPES:
            assert _network(step)["VpcConfig"] == {"Subnets": list(build.placement.subnet_ids),
                                                   "SecurityGroupIds": ["sg-0123456789abcdef0"]}, step["Name"]
