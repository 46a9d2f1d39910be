"""PlatformNetwork, the permissions boundary and the shared stack's network (network.mode: create)."""

from __future__ import annotations

import json
from pathlib import Path

import aws_cdk as cdk
import pytest
import yaml
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from cdk_nag import AwsSolutionsChecks

import cfnlint.api
from mlops_constructs.network import PlatformNetwork
from mlops_constructs.permissions import BoundaryPolicy, apply_role_rules
from platform_config import load_config
from platform_config.names import NETWORK_EXPORTS, VPC_INTERFACE_ENDPOINTS

ROOT = Path(__file__).resolve().parents[2]
PREFIX_LIST = "pl-6da54004"
ENV = cdk.Environment(account="123456789012", region="eu-west-1")  # a concrete environment: AZs must not be looked up


def _synth(app: cdk.App, stack: cdk.Stack) -> dict:
    """Synthesize ``app`` under cdk-nag (a finding fails) and return ``stack``'s template; no context lookups."""
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    try:
        assembly = app.synth()
    except RuntimeError as exc:
        report = Path(app.outdir) / "validation-report.json"
        raise AssertionError(f"{exc}\n{report.read_text() if report.exists() else ''}") from None
    manifest = json.loads((Path(assembly.directory) / "manifest.json").read_text())
    assert not manifest.get("missing"), manifest["missing"]
    return json.loads((Path(assembly.directory) / f"{stack.artifact_id}.template.json").read_text())


def _of_type(template: dict, cfn_type: str) -> dict[str, dict]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == cfn_type}


def _lint_errors(path: Path) -> list[str]:
    matches = cfnlint.api.lint_file(path, cfnlint.api.ManualArgs(regions=["us-east-1", "eu-west-1"]))
    return [str(m) for m in matches if m.rule.severity == "error"]


@pytest.fixture(scope="module")
def created(tmp_path_factory):
    outdir = tmp_path_factory.mktemp("network-created")
    app = cdk.App(outdir=str(outdir))
    stack = cdk.Stack(app, "Net", env=ENV)
    network = PlatformNetwork(stack, "Network", az_count=3, s3_prefix_list_id=PREFIX_LIST)
    return network, _synth(app, stack), outdir / "Net.template.json"


def _egress_rules(template: dict) -> list[dict]:
    rules = [r["Properties"] for r in _of_type(template, "AWS::EC2::SecurityGroupEgress").values()]
    for group in _of_type(template, "AWS::EC2::SecurityGroup").values():
        rules += group["Properties"].get("SecurityGroupEgress", [])
    return rules


def test_created_vpc_is_private_isolated_without_internet_path(created):
    _, template, _ = created
    types = {r["Type"] for r in template["Resources"].values()}
    for forbidden in ("AWS::EC2::NatGateway", "AWS::EC2::InternetGateway", "AWS::EC2::VPCGatewayAttachment",
                      "AWS::EC2::EIP", "AWS::EC2::EgressOnlyInternetGateway", "AWS::EC2::Route"):
        assert forbidden not in types, forbidden
    (vpc,) = _of_type(template, "AWS::EC2::VPC").values()
    assert vpc["Properties"]["EnableDnsHostnames"] is True and vpc["Properties"]["EnableDnsSupport"] is True
    subnets = _of_type(template, "AWS::EC2::Subnet").values()
    assert [s["Properties"]["AvailabilityZone"] for s in subnets] == [
        {"Fn::Select": [i, {"Fn::GetAZs": ""}]} for i in range(3)
    ]
    assert all(s["Properties"]["MapPublicIpOnLaunch"] is False for s in subnets)
    assert [s["Properties"]["CidrBlock"] for s in subnets] == ["10.40.0.0/18", "10.40.64.0/18", "10.40.128.0/18"]


def test_endpoints_private_dns_and_s3_gateway(created):
    network, template, _ = created
    endpoints = _of_type(template, "AWS::EC2::VPCEndpoint").values()
    interface = [e["Properties"] for e in endpoints if e["Properties"].get("VpcEndpointType") == "Interface"]
    gateway = [e["Properties"] for e in endpoints if e["Properties"].get("VpcEndpointType") == "Gateway"]
    services = sorted(json.dumps(e["ServiceName"]) for e in interface)
    assert services == sorted(json.dumps(cdk.Stack.of(network).resolve(ec2.InterfaceVpcEndpointAwsService(name).name))
                              for name in VPC_INTERFACE_ENDPOINTS)
    assert all(e["PrivateDnsEnabled"] is True and len(e["SubnetIds"]) == 3 for e in interface)
    endpoint_sg = cdk.Stack.of(network).resolve(network.endpoint_security_group.security_group_id)
    assert all(e["SecurityGroupIds"] == [endpoint_sg] for e in interface)
    (s3_gateway,) = gateway
    assert "s3" in json.dumps(s3_gateway["ServiceName"]) and len(s3_gateway["RouteTableIds"]) == 3


def test_no_open_egress_and_https_only_to_endpoints_and_s3(created):
    network, template, _ = created
    rules = _egress_rules(template)
    assert rules
    for rule in rules:
        assert rule.get("CidrIp") not in ("0.0.0.0/0",) and "CidrIpv6" not in rule, rule
    resolve = cdk.Stack.of(network).resolve
    glue = resolve(network.glue_security_group.security_group_id)
    endpoint_sg = resolve(network.endpoint_security_group.security_group_id)
    for group in (network.workload_security_group, network.glue_security_group):
        own = [r for r in rules if r.get("GroupId") == resolve(group.security_group_id)]
        https = [r for r in own if (r["FromPort"], r["ToPort"]) == (443, 443)]
        assert {r.get("DestinationPrefixListId") or json.dumps(r.get("DestinationSecurityGroupId")) for r in https} == {
            PREFIX_LIST, json.dumps(endpoint_sg)
        }
        others = [r for r in own if r not in https]
        assert all(r["DestinationSecurityGroupId"] == glue for r in others), others  # Glue's workers, to itself


def test_glue_group_admits_itself_and_endpoints_admit_the_workloads(created):
    network, template, _ = created
    resolve = cdk.Stack.of(network).resolve
    glue = resolve(network.glue_security_group.security_group_id)
    ingress = [r["Properties"] for r in _of_type(template, "AWS::EC2::SecurityGroupIngress").values()]
    assert {"GroupId": glue, "SourceSecurityGroupId": glue, "IpProtocol": "tcp", "FromPort": 0, "ToPort": 65535,
            "Description": "Glue workers"} in ingress
    endpoint_rules = [r for r in ingress if r["GroupId"] == resolve(network.endpoint_security_group.security_group_id)]
    assert {json.dumps(r["SourceSecurityGroupId"]) for r in endpoint_rules} == {
        json.dumps(resolve(g.security_group_id)) for g in network.workload_security_groups
    }
    assert all((r["FromPort"], r["ToPort"]) == (443, 443) for r in endpoint_rules)


def test_flow_logs_to_an_encrypted_retained_log_group(created):
    _, template, _ = created
    (flow_log,) = _of_type(template, "AWS::EC2::FlowLog").values()
    (vpc_id,) = _of_type(template, "AWS::EC2::VPC")
    (group_id, group), = _of_type(template, "AWS::Logs::LogGroup").items()
    assert flow_log["Properties"]["ResourceId"] == {"Ref": vpc_id}
    assert flow_log["Properties"]["TrafficType"] == "ALL"
    assert flow_log["Properties"]["LogGroupName"] == {"Ref": group_id}
    assert "KmsKeyId" in group["Properties"] and group["Properties"]["RetentionInDays"] == 365
    assert group["DeletionPolicy"] == "Retain"


def test_created_network_is_cfn_lint_clean(created):
    assert _lint_errors(created[2]) == []


def test_existing_vpc_gets_security_groups_and_only_the_endpoints_asked_for(tmp_path):
    app = cdk.App(outdir=str(tmp_path))
    stack = cdk.Stack(app, "Existing", env=ENV)
    vpc = ec2.Vpc.from_vpc_attributes(
        stack, "LandingZone", vpc_id="vpc-0123456789abcdef0", availability_zones=["eu-west-1a", "eu-west-1b"],
        private_subnet_ids=["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"],
    )
    network = PlatformNetwork(stack, "Network", vpc=vpc, interface_endpoints=["sagemaker.runtime"],
                              s3_prefix_list_id=PREFIX_LIST)
    template = _synth(app, stack)
    types = [r["Type"] for r in template["Resources"].values()]
    for created_only in ("AWS::EC2::VPC", "AWS::EC2::Subnet", "AWS::EC2::FlowLog", "AWS::Logs::LogGroup"):
        assert created_only not in types
    (endpoint,) = _of_type(template, "AWS::EC2::VPCEndpoint").values()
    assert endpoint["Properties"]["VpcEndpointType"] == "Interface"  # no second S3 gateway on the landing zone's tables
    assert types.count("AWS::EC2::SecurityGroup") == 3
    assert network.subnet_ids == ["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"]
    assert network.availability_zones == ["eu-west-1a", "eu-west-1b"]
    assert all(r.get("CidrIp") != "0.0.0.0/0" for r in _egress_rules(template))


def test_az_count_below_two_is_refused():
    stack = cdk.Stack(cdk.App(), "S")
    with pytest.raises(ValueError, match="az_count must be at least 2, got 1"):
        PlatformNetwork(stack, "Network", az_count=1)


# --- permissions boundary and role path --------------------------------------------------------------------------
def test_boundary_and_path_reach_every_role_including_cdk_provider_roles(tmp_path):
    app = cdk.App(outdir=str(tmp_path))
    stack = cdk.Stack(app, "Roles")
    boundary = BoundaryPolicy(stack, "Boundary", path="/mlops-dev-boundary/")
    iam.Role(stack, "Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
    # A bucket that empties itself on delete: CDK adds a custom resource provider whose role is a raw CfnResource.
    s3.Bucket(stack, "Bucket", auto_delete_objects=True, removal_policy=cdk.RemovalPolicy.DESTROY,
              enforce_ssl=True, encryption=s3.BucketEncryption.S3_MANAGED,
              block_public_access=s3.BlockPublicAccess.BLOCK_ALL)
    cdk.Validations.of(stack).acknowledge(cdk.Acknowledgment(
        id="AwsSolutions::AwsSolutions-S1", reason="test bucket: access logs are not what this test is about"))
    apply_role_rules(app, boundary=boundary.policy, role_path="/mlops/")
    template = _synth(app, stack)
    roles = _of_type(template, "AWS::IAM::Role")
    assert len(roles) == 2
    (policy_id,) = _of_type(template, "AWS::IAM::ManagedPolicy")
    for role in roles.values():
        assert role["Properties"]["Path"] == "/mlops/"
        assert role["Properties"]["PermissionsBoundary"] == {"Ref": policy_id}


def test_boundary_denies_escapes(tmp_path):
    app = cdk.App(outdir=str(tmp_path))
    stack = cdk.Stack(app, "Boundary")
    BoundaryPolicy(stack, "Boundary", path="/mlops-dev-boundary/")
    (policy,) = _of_type(_synth(app, stack), "AWS::IAM::ManagedPolicy").values()
    assert policy["Properties"]["Path"] == "/mlops-dev-boundary/" and "ManagedPolicyName" not in policy["Properties"]
    statements = {s["Sid"]: s for s in policy["Properties"]["PolicyDocument"]["Statement"]}
    assert statements["AllowPlatformServices"]["Effect"] == "Allow"
    assert "iam:*" not in statements["AllowPlatformServices"]["Action"]
    assert "ec2:*" not in statements["AllowPlatformServices"]["Action"]
    assert "iam:*User*" in statements["DenyIamIdentities"]["Action"]
    assert "organizations:*" in statements["DenyAccountChanges"]["Action"]
    assert statements["DenyBoundaryRemoval"]["Action"] == "iam:DeleteRolePermissionsBoundary"
    outside = statements["DenyRolesOutsideThisBoundary"]
    assert outside["Effect"] == "Deny" and set(outside["Action"]) == {"iam:CreateRole", "iam:PutRolePermissionsBoundary"}
    pattern = json.dumps(outside["Condition"]["ArnNotLike"]["iam:PermissionsBoundary"])
    assert ":policy/mlops-dev-boundary/*" in pattern
    assert json.dumps(statements["DenyBoundaryPolicyChanges"]["Resource"]) == pattern


def test_role_rules_are_optional_and_checked():
    stack = cdk.Stack(cdk.App(), "S")
    apply_role_rules(stack)  # nothing to apply
    with pytest.raises(ValueError, match="role_path must start and end with '/'"):
        apply_role_rules(stack, role_path="mlops")


# --- the shared stack with network.mode: create ------------------------------------------------------------------
@pytest.fixture(scope="module")
def prod_with_network(tmp_path_factory):
    from stacks.app_builder import build_app

    config_dir = tmp_path_factory.mktemp("network-config")
    data = yaml.safe_load((ROOT / "config" / "prod.yaml").read_text())
    data["network"] = {"mode": "create", "s3_prefix_list_id": PREFIX_LIST}
    (config_dir / "prod.yaml").write_text(yaml.safe_dump(data))
    config = load_config("prod", config_dir)
    outdir = tmp_path_factory.mktemp("network-app")
    platform = build_app(config, outdir=outdir, extra_context={
        "aws:cdk:disable-asset-staging": True, "config_dir": str(config_dir),
    })
    try:
        assembly = platform.synth()
    except RuntimeError as exc:
        report = outdir / "validation-report.json"
        raise AssertionError(f"{exc}\n{report.read_text() if report.exists() else ''}") from None
    manifest = json.loads((Path(assembly.directory) / "manifest.json").read_text())
    assert not manifest.get("missing"), manifest["missing"]
    shared = platform.stacks["shared"]
    return config, shared, outdir / f"{shared.artifact_id}.template.json"


def test_create_mode_puts_the_network_in_the_shared_stack_and_exports_it(prod_with_network):
    config, shared, path = prod_with_network
    template = json.loads(path.read_text())
    assert shared.network is not None
    assert len(_of_type(template, "AWS::EC2::VPC")) == 1 and len(_of_type(template, "AWS::EC2::Subnet")) == 2
    exports = {o["Export"]["Name"] for o in template["Outputs"].values() if "Export" in o}
    assert {config.names.network_export(a) for a in NETWORK_EXPORTS} <= exports
    (flow_log,) = _of_type(template, "AWS::EC2::FlowLog").values()
    group = template["Resources"][flow_log["Properties"]["LogGroupName"]["Ref"]]
    assert group["Properties"]["RetentionInDays"] == config.log_retention_days and "KmsKeyId" in group["Properties"]


def test_create_mode_shared_stack_is_cfn_lint_clean(prod_with_network):
    assert _lint_errors(prod_with_network[2]) == []


def test_network_export_names():
    from platform_config.names import Names

    assert Names("mlops", "prod").network_export("vpc-id") == "mlops-prod-network-vpc-id"
    with pytest.raises(ValueError, match="unknown network export 'vpc'"):
        Names("mlops", "prod").network_export("vpc")
