"""The rehearsal's check of a Glue job's Connections (a data stack in a VPC): each must be a NETWORK connection of
the stack with a subnet; a connection of another type, an unknown one or one without a subnet fails, naming it."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from rehearsal.assembly import Assembly, RehearsalError, Stack
from rehearsal.glue import check_connections


@pytest.fixture(scope="module")
def vpc_stack(tmp_path_factory) -> Stack:
    """The synthesized stack ``net-data``: one GlueEtl of the abalone schema in a VPC of two subnets."""
    import aws_cdk as cdk
    from aws_cdk import aws_ec2 as ec2
    from aws_cdk import aws_kms as kms
    from aws_cdk import aws_s3 as s3

    from mlops_constructs.glue_etl import GlueEtl
    from platform_config import load_config
    from stacks import code_locations as code

    outdir = tmp_path_factory.mktemp("rehearsal-glue-vpc")
    app = cdk.App(outdir=str(outdir), context={"aws:cdk:disable-asset-staging": True})
    stack = cdk.Stack(app, "net-data")
    vpc = ec2.Vpc.from_vpc_attributes(stack, "Vpc", vpc_id="vpc-0a1b2c3d4e5f60001",
                                      availability_zones=["us-east-1a", "us-east-1b"],
                                      isolated_subnet_ids=["subnet-0a1b2c3d4e5f60001", "subnet-0a1b2c3d4e5f60002"])
    group = ec2.SecurityGroup.from_security_group_id(stack, "Sg", "sg-0a1b2c3d4e5f60001", mutable=False)
    key = kms.Key(stack, "Key")
    raw, curated = (s3.Bucket(stack, n, encryption_key=key) for n in ("Raw", "Curated"))
    GlueEtl(stack, "Etl", name_prefix="net", dataset_schema=load_config("dev").dataset("abalone").schema_document(),
            raw_bucket=raw, curated_bucket=curated, encryption_key=key, script=code.GLUE_SCRIPT,
            extra_python_files=code.GLUE_MODULES, vpc=vpc, security_groups=[group])
    app.synth()
    return Assembly(outdir).stack("-data")


def _job(stack: Stack) -> str:
    (logical,) = stack.of_type("AWS::Glue::Job")
    return logical


def _with(stack: Stack, change) -> Stack:
    """A copy of ``stack`` whose template ``change(template)`` modified."""
    template = copy.deepcopy(stack.template)
    change(template)
    return Stack(stack.name, template, Path(stack.directory), None)


def _connection(template: dict, index: int = 0) -> dict:
    return [r for r in template["Resources"].values() if r["Type"] == "AWS::Glue::Connection"][index]


def test_the_jobs_network_connections_in_order(vpc_stack):
    connections = list(vpc_stack.of_type("AWS::Glue::Connection"))
    assert len(connections) == 2
    assert check_connections(vpc_stack, _job(vpc_stack)) == connections


def test_a_connection_of_another_type_fails(vpc_stack):
    def jdbc(template):
        _connection(template, 1)["Properties"]["ConnectionInput"]["ConnectionType"] = "JDBC"

    stack = _with(vpc_stack, jdbc)
    with pytest.raises(RehearsalError, match="is of type 'JDBC', not NETWORK"):
        check_connections(stack, _job(stack))


def test_a_network_connection_without_a_subnet_fails(vpc_stack):
    def no_subnet(template):
        del _connection(template)["Properties"]["ConnectionInput"]["PhysicalConnectionRequirements"]["SubnetId"]

    stack = _with(vpc_stack, no_subnet)
    with pytest.raises(RehearsalError, match="has no PhysicalConnectionRequirements.SubnetId"):
        check_connections(stack, _job(stack))


def test_a_connection_the_stack_does_not_define_fails(vpc_stack):
    def unknown(template):
        job = next(r for r in template["Resources"].values() if r["Type"] == "AWS::Glue::Job")
        job["Properties"]["Connections"]["Connections"].append("someone-elses-connection")

    stack = _with(vpc_stack, unknown)
    with pytest.raises(RehearsalError, match='"someone-elses-connection", which is no AWS::Glue::Connection'):
        check_connections(stack, _job(stack))


def test_a_job_without_connections_has_none(vpc_stack):
    def public(template):
        job = next(r for r in template["Resources"].values() if r["Type"] == "AWS::Glue::Job")
        del job["Properties"]["Connections"]

    stack = _with(vpc_stack, public)
    assert check_connections(stack, _job(stack)) == []
