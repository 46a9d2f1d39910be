"""A Glue job in a VPC: the ``NETWORK`` connections it runs through and what its role needs for them.

:class:`~mlops_constructs.glue_etl.GlueEtl` calls these when it has a ``vpc``; they create nothing else and take the
job's placement (:func:`~mlops_constructs.network.workload_placement`) as it is.
"""

from __future__ import annotations

from typing import Any, Sequence

from aws_cdk import Stack
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from constructs import Construct

from mlops_constructs import compliance
from mlops_constructs.network import WorkloadPlacement

#: Why the job role's ``Resource::*`` statements are needed with a VPC (appended to the role's other reasons).
NETWORK_DESCRIBE_REASON = (" The EC2 Describe* actions Glue calls to validate the connection's VPC, subnet and "
                           "security groups have no resource type either.")


def network_connections(scope: Construct, placement: WorkloadPlacement, job_name: str) -> list[glue.CfnConnection]:
    """One Glue ``NETWORK`` connection per subnet, in the subnets' order (the job lists them in the same order).

    A connection names one subnet and its Availability Zone, so one connection pins every run to one AZ. A job
    takes several connections (``Connections``, up to 1000) and, when a run is submitted, Glue checks the ones
    with a network configuration in the order they are listed (valid VPC and subnet, an S3 endpoint or NAT, free
    IP addresses in the subnet, a healthy AZ) and places the whole run (driver and executors, one AZ, one subnet's
    interfaces) with the first that passes; a retry keeps that connection unless its AZ has failed (AWS Glue
    developer guide, "Troubleshooting Glue common setup errors", failover behavior between VPCs; AWS re:Post
    "AWS Glue job networking: managing multiple connections"). So one connection per subnet, in the subnets'
    order, lets a run start while an AZ is impaired or a subnet is out of addresses; a single one would not.

    No physical name: ``ConnectionInput.Name`` is not required by CloudFormation (it generates one; ``Ref``
    returns the name, which the job and the role's ``glue:GetConnection`` use), and nothing outside the job's
    construct refers to a connection by name.

    :param scope: the job's construct (the connections are ``NetworkConnection<n>`` in it).
    :param placement: the job's subnets, their AZs and the security groups.
    :param job_name: the job's name, for the descriptions.
    """
    stack = Stack.of(scope)
    connections = []
    for index, (subnet_id, az) in enumerate(zip(placement.subnet_ids, placement.availability_zones), start=1):
        connection = glue.CfnConnection(
            scope,
            f"NetworkConnection{index}",
            catalog_id=stack.account,
            connection_input=glue.CfnConnection.ConnectionInputProperty(
                connection_type="NETWORK",
                description=f"Glue job {job_name}: network {index} of {len(placement.subnet_ids)}",
                physical_connection_requirements=glue.CfnConnection.PhysicalConnectionRequirementsProperty(
                    subnet_id=subnet_id,
                    availability_zone=az,
                    security_group_id_list=list(placement.security_group_ids),
                ),
            ),
        )
        # No Tags (an app's cost tags would land here): cfn-lint's AWS::Glue::Connection schema (1.51) has no Tags
        # property yet, and a connection costs nothing.
        connection.add_property_deletion_override("Tags")
        connections.append(connection)
    return connections


def allow_network(role: iam.Role, placement: WorkloadPlacement,
                  connections: Sequence[glue.CfnConnection]) -> list[Any]:
    """What Glue does with the job role to run the job in the VPC (the EC2 part of the AWSGlueServiceRole managed
    policy, scoped to this placement); returns the wildcard resources it grants, for cdk-nag
    (:func:`acknowledge_network`).

    :param role: the job's role.
    :param placement: the job's subnets and security groups.
    :param connections: the job's connections (:func:`network_connections`), which the role may read.
    """
    stack = Stack.of(role)

    def ec2_arn(resource: str, name: str) -> str:
        return stack.format_arn(service="ec2", resource=resource, resource_name=name)

    interfaces = ec2_arn("network-interface", "*")
    role.add_to_policy(iam.PolicyStatement(
        sid="GlueNetworkDescribe",
        # Glue validates the connection (VPC endpoints or NAT of the subnet's route tables, the subnet, its
        # security groups, the VPC's DNS attributes) and tracks the interfaces; Describe* has no resource type.
        actions=["ec2:DescribeVpcEndpoints", "ec2:DescribeRouteTables", "ec2:DescribeNetworkInterfaces",
                 "ec2:DescribeSecurityGroups", "ec2:DescribeSubnets", "ec2:DescribeVpcAttribute"],
        resources=["*"],
    ))
    role.add_to_policy(iam.PolicyStatement(
        sid="GlueNetworkInterfaces",
        # CreateNetworkInterface is authorized on the new interface, its subnet and its security groups.
        actions=["ec2:CreateNetworkInterface"],
        resources=[interfaces,
                   *[ec2_arn("subnet", s) for s in placement.subnet_ids],
                   *[ec2_arn("security-group", g) for g in placement.security_group_ids]],
    ))
    role.add_to_policy(iam.PolicyStatement(
        sid="GlueNetworkInterfacesDelete", actions=["ec2:DeleteNetworkInterface"], resources=[interfaces],
    ))
    role.add_to_policy(iam.PolicyStatement(
        sid="GlueNetworkInterfaceTags",
        # Glue marks the interfaces it manages with this one tag key (as the managed policy allows).
        actions=["ec2:CreateTags", "ec2:DeleteTags"],
        resources=[interfaces],
        conditions={"ForAllValues:StringEquals": {"aws:TagKeys": ["aws-glue-service-resource"]}},
    ))
    # Glue reads the job's connections (a Data Catalog object: the catalog and the connection are authorized).
    role.add_to_policy(iam.PolicyStatement(
        sid="GlueConnections",
        actions=["glue:GetConnection"],
        resources=[stack.format_arn(service="glue", resource="catalog"),
                   *[stack.format_arn(service="glue", resource="connection", resource_name=c.ref)
                     for c in connections]],
    ))
    return [interfaces]


def acknowledge_network(role: iam.Role, wildcards: Sequence[Any]) -> None:
    """Acknowledge the network interface wildcards :func:`allow_network` returned (none: nothing to acknowledge)."""
    if wildcards:
        compliance.acknowledge_wildcard_resources(
            role,
            wildcards,
            "Network interfaces Glue creates for the job's workers get IDs only at run time: this account and "
            "region's interfaces, created only in the connections' subnets and security groups, tagged only with "
            "Glue's aws-glue-service-resource key.",
        )
