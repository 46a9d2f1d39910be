"""The Glue ETL jobs in the VPC (network isolation): NETWORK connections, the job's Connections, the role's EC2
permissions; in the construct (a small app under cdk-nag and cfn-lint) and in the data stack of each environment."""

from __future__ import annotations

import json
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from cdk_nag import AwsSolutionsChecks

import cfnlint.api
from mlops_constructs.glue_etl import GlueEtl
from platform_config import load_config
from stacks import code_locations as code

SUBNETS = ("subnet-0a1b2c3d4e5f60001", "subnet-0a1b2c3d4e5f60002", "subnet-0a1b2c3d4e5f60003")
AZS = ("eu-west-1a", "eu-west-1b", "eu-west-1c")
GROUPS = ("sg-0a1b2c3d4e5f60001", "sg-0a1b2c3d4e5f60002")
EC2_ACTIONS = {
    "ec2:DescribeVpcEndpoints", "ec2:DescribeRouteTables", "ec2:CreateNetworkInterface", "ec2:DeleteNetworkInterface",
    "ec2:DescribeNetworkInterfaces", "ec2:DescribeSecurityGroups", "ec2:DescribeSubnets", "ec2:DescribeVpcAttribute",
    "ec2:CreateTags", "ec2:DeleteTags",
}


def _of_type(template: dict, cfn_type: str) -> dict[str, dict]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == cfn_type}


def _actions(statement: dict) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else action


def _role_statements(template: dict) -> list[dict]:
    return [s for p in _of_type(template, "AWS::IAM::Policy").values() for s in p["Properties"]["PolicyDocument"]
            ["Statement"]]


def _lint_errors(path: Path) -> list[str]:
    matches = cfnlint.api.lint_file(path, cfnlint.api.ManualArgs(regions=["us-east-1", "eu-west-1"]))
    return [str(m) for m in matches if m.rule.severity == "error"]


def _vpc(stack: cdk.Stack) -> dict:
    """GlueEtl's network props: a VPC of three isolated subnets and two security groups."""
    vpc = ec2.Vpc.from_vpc_attributes(stack, "Vpc", vpc_id="vpc-0a1b2c3d4e5f60001", availability_zones=list(AZS),
                                      isolated_subnet_ids=list(SUBNETS))
    groups = [ec2.SecurityGroup.from_security_group_id(stack, f"Sg{i}", g, mutable=False) for i, g in enumerate(GROUPS)]
    return {"vpc": vpc, "vpc_subnets": ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
            "security_groups": groups}


def _etl_app(outdir: Path, network=lambda stack: {}) -> tuple[cdk.App, cdk.Stack, GlueEtl]:
    """An app of one stack with one GlueEtl of the abalone schema; ``network(stack)``: its network props."""
    app = cdk.App(outdir=str(outdir))
    stack = cdk.Stack(app, "net-data", env=cdk.Environment(account="123456789012", region="eu-west-1"))
    key = kms.Key(stack, "Key", enable_key_rotation=True)
    # No EventBridge notifications: CDK adds a handler function with a managed policy for them (not under test).
    raw, curated = (s3.Bucket(stack, n, encryption_key=key, enforce_ssl=True,
                              server_access_logs_prefix="access-logs/") for n in ("Raw", "Curated"))
    schema = load_config("dev").dataset("abalone").schema_document()
    etl = GlueEtl(stack, "Etl", name_prefix="net", dataset_schema=schema, raw_bucket=raw, curated_bucket=curated,
                  encryption_key=key, script=code.GLUE_SCRIPT, extra_python_files=code.GLUE_MODULES,
                  **network(stack))
    return app, stack, etl


@pytest.fixture(scope="module")
def in_vpc(tmp_path_factory):
    """A GlueEtl in a VPC of three subnets, synthesized under cdk-nag (a finding fails): (template, its path)."""
    outdir = tmp_path_factory.mktemp("glue-network")
    app, stack, _ = _etl_app(outdir, _vpc)
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    try:
        assembly = app.synth()
    except RuntimeError as exc:
        report = outdir / "validation-report.json"
        raise AssertionError(f"{exc}\n{report.read_text() if report.exists() else ''}") from None
    path = Path(assembly.directory) / f"{stack.artifact_id}.template.json"
    return json.loads(path.read_text()), path


def test_one_network_connection_per_subnet_in_order_and_the_job_lists_them(in_vpc):
    template, _ = in_vpc
    connections = _of_type(template, "AWS::Glue::Connection")
    assert len(connections) == len(SUBNETS)
    placed = []
    for logical, connection in connections.items():
        props = connection["Properties"]
        assert props["CatalogId"] == "123456789012"
        connection_input = props["ConnectionInput"]
        assert connection_input["ConnectionType"] == "NETWORK"
        assert "Name" not in connection_input  # CloudFormation names it; Ref returns the name
        assert "Tags" not in props  # not in cfn-lint's schema of the resource
        requirements = connection_input["PhysicalConnectionRequirements"]
        assert requirements["SecurityGroupIdList"] == list(GROUPS)
        placed.append((logical, requirements["SubnetId"], requirements["AvailabilityZone"]))
    assert [(s, az) for _, s, az in placed] == list(zip(SUBNETS, AZS))
    ((_, job),) = _of_type(template, "AWS::Glue::Job").items()
    # Glue tries the connections in the job's order: the subnets' order.
    assert job["Properties"]["Connections"] == {"Connections": [{"Ref": logical} for logical, _, _ in placed]}


def test_the_role_may_run_the_job_in_the_vpc_and_read_only_its_connections(in_vpc):
    template, _ = in_vpc
    statements = _role_statements(template)
    granted = {a for s in statements for a in _actions(s) if a.startswith("ec2:")}
    assert granted == EC2_ACTIONS
    by_sid = {s.get("Sid"): s for s in statements}
    create = json.dumps(by_sid["GlueNetworkInterfaces"]["Resource"])
    assert all(f":subnet/{s}" in create for s in SUBNETS) and all(f":security-group/{g}" in create for g in GROUPS)
    tags = by_sid["GlueNetworkInterfaceTags"]
    assert tags["Condition"] == {"ForAllValues:StringEquals": {"aws:TagKeys": ["aws-glue-service-resource"]}}
    assert "network-interface/*" in json.dumps(tags["Resource"])
    for sid in ("GlueNetworkInterfaces", "GlueNetworkInterfacesDelete", "GlueNetworkInterfaceTags"):
        assert "ec2:*:*" not in json.dumps(by_sid[sid]["Resource"])  # this account and region only
    get_connection = by_sid["GlueConnections"]
    assert _actions(get_connection) == ["glue:GetConnection"]
    named = [r for r in get_connection["Resource"] if ":connection/" in json.dumps(r)]
    refs = sorted(part["Ref"] for r in named for part in r["Fn::Join"][1] if isinstance(part, dict) and "Ref" in part
                  and part["Ref"] in _of_type(template, "AWS::Glue::Connection"))
    assert refs == sorted(_of_type(template, "AWS::Glue::Connection"))
    assert [s for s in statements if "glue:GetConnection" in _actions(s)] == [get_connection]


def test_the_construct_in_a_vpc_passes_cfn_lint(in_vpc):
    _, path = in_vpc
    assert _lint_errors(path) == []


def test_without_a_vpc_no_connection_no_ec2(tmp_path):
    _, stack, etl = _etl_app(tmp_path)
    template = cdk.assertions.Template.from_stack(stack).to_json()
    assert etl.placement is None and etl.connections == []
    assert not _of_type(template, "AWS::Glue::Connection")
    ((_, job),) = _of_type(template, "AWS::Glue::Job").items()
    assert "Connections" not in job["Properties"]
    assert not any(a.startswith("ec2:") or a == "glue:GetConnection"
                   for s in _role_statements(template) for a in _actions(s))


def test_network_props_are_checked(tmp_path):
    def only(*names):
        return lambda stack: {k: v for k, v in _vpc(stack).items() if k in names}

    with pytest.raises(ValueError, match="GlueEtl net-etl-abalone: vpc_subnets is set but vpc is not"):
        _etl_app(tmp_path / "a", only("vpc_subnets"))
    with pytest.raises(ValueError, match="GlueEtl net-etl-abalone: vpc needs security_groups"):
        _etl_app(tmp_path / "b", only("vpc"))


# --- the data stack of each environment --------------------------------------------------------------------------
def test_prod_data_stack_runs_every_glue_job_through_one_network_connection_per_az(prod):
    assert prod.config.network.mode == "create"
    connections = prod.resources("data", "AWS::Glue::Connection")
    jobs = prod.resources("data", "AWS::Glue::Job")
    assert jobs and len(connections) == prod.config.network.az_count * len(jobs)
    names = prod.config.names
    for logical, connection in connections.items():
        connection_input = connection["Properties"]["ConnectionInput"]
        assert connection_input["ConnectionType"] == "NETWORK", logical
        requirements = connection_input["PhysicalConnectionRequirements"]
        # The shared stack's subnets, their AZs and its Glue security group, through its exports.
        assert {"Fn::ImportValue": names.network_export("subnet-ids")} in _walk(requirements["SubnetId"])
        assert {"Fn::ImportValue": names.network_export("availability-zones")} in _walk(
            requirements["AvailabilityZone"])
        assert {"Fn::ImportValue": names.network_export("glue-sg-id")} in requirements["SecurityGroupIdList"]
        assert {"Fn::ImportValue": names.network_export("workload-sg-id")} not in requirements["SecurityGroupIdList"]
    for logical, job in jobs.items():
        listed = job["Properties"]["Connections"]["Connections"]
        assert len(listed) == prod.config.network.az_count, logical
        assert all(entry["Ref"] in connections for entry in listed), logical
        subnets = [json.dumps(connections[e["Ref"]]["Properties"]["ConnectionInput"]["PhysicalConnectionRequirements"]
                              ["SubnetId"]) for e in listed]
        assert len(set(subnets)) == len(subnets), logical  # one connection per subnet (AZ)


def _walk(node):
    """Every dict and list nested in ``node`` (itself included)."""
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def test_dev_data_stack_has_no_connection_and_no_ec2_permission(dev):
    assert dev.config.network.mode == "none"
    assert not dev.resources("data", "AWS::Glue::Connection")
    assert all("Connections" not in j["Properties"] for j in dev.resources("data", "AWS::Glue::Job").values())
    assert not any(a.startswith("ec2:") or a == "glue:GetConnection"
                   for s in _role_statements(dev.template("data")) for a in _actions(s))


def test_prod_glue_roles_have_the_vpc_statements(prod):
    template = prod.template("data")
    granted = {a for s in _role_statements(template) for a in _actions(s) if a.startswith("ec2:")}
    assert granted == EC2_ACTIONS


def test_prod_data_stack_is_nag_and_cfn_lint_clean(prod):
    # The session synth runs under cdk-nag: a finding would have failed it with the report.
    report = prod.outdir / "validation-report.json"
    if report.exists():
        data = json.loads(report.read_text())
        assert [v for r in data["pluginReports"] for v in r.get("violations", [])] == []
    name = prod.stacks["data"].stack_name
    assert _lint_errors(prod.outdir / f"{name}.template.json") == []
