"""Issue 13's "done when", on the prod synth (network.mode create, a created permissions boundary): every workload
runs in the VPC, every role carries the boundary, no security group opens egress to the internet.

dev (network.mode none) is the control: the same checks find no VPC there, so none of them passes vacuously.
"""

from __future__ import annotations

import pytest

from tests.infra.definition_check import all_steps, definition_from_template

JOB_STEP_TYPES = {"Processing", "Training", "QualityCheck"}


def _subnets_and_groups(vpc_config: dict) -> tuple[list, list]:
    return vpc_config.get("Subnets", vpc_config.get("SubnetIds", [])), vpc_config.get("SecurityGroupIds", [])


def _imports(values: list) -> bool:
    """Every value comes from the shared stack's network exports (Fn::ImportValue, possibly inside Fn::Select)."""
    return bool(values) and all("Fn::ImportValue" in str(v) for v in values)


def test_prod_runs_in_a_created_vpc_and_dev_does_not(prod, dev):
    assert prod.config.network.mode == "create" and dev.config.network.mode == "none"
    assert prod.resources("shared", "AWS::EC2::VPC") and not dev.all_resources("AWS::EC2::VPC")


def test_every_sagemaker_model_is_isolated_in_the_vpc(prod, dev):
    models = prod.all_resources("AWS::SageMaker::Model")
    assert models, "prod serves abalone from an endpoint"
    for name, model in models.items():
        props = model["Properties"]
        assert props.get("EnableNetworkIsolation") is True, name
        subnets, groups = _subnets_and_groups(props.get("VpcConfig", {}))
        assert _imports(subnets) and _imports(groups), name
    assert all("VpcConfig" not in m["Properties"] for m in dev.all_resources("AWS::SageMaker::Model").values())


def test_every_pipeline_job_step_has_a_vpc_config(prod, dev):
    for part in [p for p in prod.stacks if p.startswith("model-")]:
        steps = [s for s in all_steps(definition_from_template(prod.template(part))) if s["Type"] in JOB_STEP_TYPES]
        assert {s["Type"] for s in steps} == JOB_STEP_TYPES, part
        for step in steps:
            args = step["Arguments"]
            network = args.get("NetworkConfig") or {}
            vpc = args.get("VpcConfig") or network.get("VpcConfig") or {}
            subnets, groups = _subnets_and_groups(vpc)
            assert subnets and groups, f"{part}: step {step['Name']} has no VpcConfig"
            isolated = args.get("EnableNetworkIsolation", network.get("EnableNetworkIsolation"))
            encrypted = args.get("EnableInterContainerTrafficEncryption",
                                 network.get("EnableInterContainerTrafficEncryption"))
            assert encrypted is True, f"{part}: step {step['Name']} does not encrypt inter-container traffic"
            # ResolveChampion calls SageMaker (the approved package) through the VPC's endpoint: not isolated.
            assert isolated is (step["Name"] != "ResolveChampion"), f"{part}: step {step['Name']}: isolation {isolated}"
    for part in [p for p in dev.stacks if p.startswith("model-")]:
        for step in all_steps(definition_from_template(dev.template(part))):
            assert "VpcConfig" not in str(step.get("Arguments", {})), f"dev {part}: {step['Name']}"


def test_every_monitoring_job_definition_has_a_vpc_config(prod):
    definitions = {
        **prod.all_resources("AWS::SageMaker::DataQualityJobDefinition"),
        **prod.all_resources("AWS::SageMaker::ModelQualityJobDefinition"),
    }
    assert definitions, "prod's endpoint has a data-quality schedule"
    for name, definition in definitions.items():
        subnets, groups = _subnets_and_groups(definition["Properties"]["NetworkConfig"].get("VpcConfig", {}))
        assert _imports(subnets) and _imports(groups), name


def test_every_lambda_function_has_a_vpc_config(prod):
    functions = prod.all_resources("AWS::Lambda::Function")
    assert functions
    for name, function in functions.items():
        subnets, groups = _subnets_and_groups(function["Properties"].get("VpcConfig", {}))
        assert subnets and groups, f"{name} runs outside the VPC"


def test_every_glue_job_has_a_network_connection(prod):
    jobs = prod.all_resources("AWS::Glue::Job")
    connections = {
        name.split("/")[-1]: c for name, c in prod.all_resources("AWS::Glue::Connection").items()
    }
    assert jobs and connections
    for connection in connections.values():
        assert connection["Properties"]["ConnectionInput"]["ConnectionType"] == "NETWORK"
    for name, job in jobs.items():
        used = job["Properties"].get("Connections", {}).get("Connections", [])
        assert used, f"{name} has no connection"
        assert all(isinstance(c, dict) and c.get("Ref") in connections for c in used), name


def test_every_role_has_the_permissions_boundary(prod):
    roles = prod.all_resources("AWS::IAM::Role")
    assert roles
    missing = [name for name, role in roles.items() if "PermissionsBoundary" not in role["Properties"]]
    assert missing == []


@pytest.mark.parametrize("env", ["prod", "dev"])
def test_no_security_group_allows_egress_to_the_internet(env, request):
    synthesized = request.getfixturevalue(env)
    rules = [
        (name, rule)
        for name, group in synthesized.all_resources("AWS::EC2::SecurityGroup").items()
        for rule in group["Properties"].get("SecurityGroupEgress", [])
    ] + [(name, r["Properties"]) for name, r in synthesized.all_resources("AWS::EC2::SecurityGroupEgress").items()]
    open_rules = [name for name, rule in rules if rule.get("CidrIp") == "0.0.0.0/0" or rule.get("CidrIpv6") == "::/0"]
    # CDK's "disallow all traffic" placeholder rule (255.255.255.255/32, icmp 252-86) is not egress to anything.
    assert open_rules == []


def test_every_function_in_the_vpc_may_create_its_network_interfaces(prod):
    """Lambda refuses a function in a VPC whose role cannot manage network interfaces, and CDK adds no VPC policy to
    a role passed to a Function: each such role carries the ENI actions itself."""
    for stack_name, template in prod.templates.items():
        resources = template["Resources"]
        for logical, function in resources.items():
            if function["Type"] != "AWS::Lambda::Function" or "VpcConfig" not in function["Properties"]:
                continue
            role = function["Properties"]["Role"]["Fn::GetAtt"][0]
            actions = set()
            for res in resources.values():
                if res["Type"] == "AWS::IAM::Policy" and {"Ref": role} in res["Properties"].get("Roles", []):
                    for statement in res["Properties"]["PolicyDocument"]["Statement"]:
                        listed = statement["Action"]
                        actions.update([listed] if isinstance(listed, str) else listed)
            assert {"ec2:CreateNetworkInterface", "ec2:DeleteNetworkInterface",
                    "ec2:DescribeNetworkInterfaces"} <= actions, f"{stack_name}/{logical}"
