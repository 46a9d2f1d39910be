"""The platform's network: a private VPC (or the landing zone's), its endpoints and the workloads' security groups.

    network = PlatformNetwork(stack, "Network", s3_prefix_list_id="pl-6da54004")
    network.vpc, network.subnets                      # where jobs, models, functions and Glue jobs run
    network.workload_security_group                   # SageMaker jobs and models, Lambda functions
    network.glue_security_group                       # Glue jobs (self-referencing, as Glue requires)

Without ``vpc`` it creates one with private isolated subnets only (no NAT gateway, no internet gateway), one per
Availability Zone (``Fn::GetAZs`` at deploy time: no lookup at synth, whatever the stack's environment), an S3 gateway
endpoint, the interface endpoints (private DNS on) and flow logs to a KMS-encrypted log group with retention. The VPC is
built from CloudFormation resources and exposed as an ``ec2.IVpc``: ``ec2.Vpc`` would look the AZs up when the stack
names an account and region, and an environment-agnostic ``ec2.Vpc`` has two AZs at most.

With ``vpc`` (a landing zone's, e.g. ``ec2.Vpc.from_vpc_attributes``) it adds only the security groups and, when
``interface_endpoints`` are given, those endpoints.

Egress: the workload groups allow HTTPS only, to the endpoint security group and to S3's managed prefix list (the
gateway endpoint's destinations). CloudFormation exposes no prefix list ID for a gateway endpoint and a synth does not
look it up, so the caller passes ``s3_prefix_list_id`` (``aws ec2 describe-prefix-lists``); without it the groups allow
HTTPS to any IPv4 address, which in a created VPC still reaches only the VPC and, through the gateway route, S3.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass
from typing import Optional, Sequence

from aws_cdk import Fn, RemovalPolicy, Stack, Tags
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from mlops_constructs import compliance
from mlops_constructs.storage import allow_cloudwatch_logs, rotating_key
from platform_config.names import VPC_INTERFACE_ENDPOINTS

HTTPS = ec2.Port.tcp(443)
_SELECTION_FIELDS = ("availability_zones", "one_per_az", "subnet_filters", "subnet_group_name", "subnet_type", "subnets")


def _selection_kwargs(selection: ec2.SubnetSelection) -> dict:
    """A SubnetSelection as the keyword arguments of ``IVpc.select_subnets``."""
    return {name: getattr(selection, name) for name in _SELECTION_FIELDS if getattr(selection, name) is not None}


@dataclass(frozen=True)
class WorkloadPlacement:
    """Where a workload without an L2 VPC prop runs (a SageMaker model, job or job definition, a Glue connection):
    the IDs its ``VpcConfig`` names, resolved from a construct's ``vpc`` / ``vpc_subnets`` / ``security_groups``."""

    subnet_ids: tuple[str, ...]
    availability_zones: tuple[str, ...]
    security_group_ids: tuple[str, ...]

    def vpc_config(self) -> dict[str, list[str]]:
        """The SageMaker ``VpcConfig`` shape: ``{"SecurityGroupIds": [...], "Subnets": [...]}``."""
        return {"SecurityGroupIds": list(self.security_group_ids), "Subnets": list(self.subnet_ids)}


def workload_placement(
    owner: str,
    vpc: Optional[ec2.IVpc],
    vpc_subnets: Optional[ec2.SubnetSelection],
    security_groups: Optional[Sequence[ec2.ISecurityGroup]],
) -> Optional[WorkloadPlacement]:
    """The placement of ``owner``'s workload from its VPC props; None without ``vpc`` (public networking).

    ``vpc_subnets`` defaults to the VPC's private subnets (CDK's default selection); ``security_groups`` are required
    with a VPC: the platform creates none with open egress (pass :attr:`PlatformNetwork.workload_security_group`).
    A ``ValueError`` naming the prop and the fix otherwise.
    """
    if vpc is None:
        for name, value in (("vpc_subnets", vpc_subnets), ("security_groups", security_groups)):
            if value:
                raise ValueError(f"{owner}: {name} is set but vpc is not; pass vpc too, or remove {name}")
        return None
    if not security_groups:
        raise ValueError(f"{owner}: vpc needs security_groups (e.g. PlatformNetwork.workload_security_group: HTTPS "
                         "to the VPC endpoints and S3 only); pass at least one")
    selected = vpc.select_subnets(**_selection_kwargs(vpc_subnets or ec2.SubnetSelection()))
    if not selected.subnet_ids:
        raise ValueError(f"{owner}: vpc_subnets selects no subnet of the VPC; select its private subnets")
    return WorkloadPlacement(
        subnet_ids=tuple(selected.subnet_ids),
        availability_zones=tuple(s.availability_zone for s in selected.subnets),
        security_group_ids=tuple(g.security_group_id for g in security_groups),
    )


#: What the execution role of a SageMaker model, job or job definition in a VPC needs to put its network interfaces
#: there (SageMaker docs, "CreateModel API: Execution Role Permissions" and "Give SageMaker AI Hosted Endpoints Access
#: to Resources in Your Amazon VPC"). EC2's Describe actions support no resource-level permissions.
SAGEMAKER_VPC_DESCRIBE_ACTIONS = (
    "ec2:DescribeNetworkInterfaces", "ec2:DescribeVpcs", "ec2:DescribeDhcpOptions", "ec2:DescribeSubnets",
    "ec2:DescribeSecurityGroups",
)
SAGEMAKER_VPC_INTERFACE_ACTIONS = (
    "ec2:CreateNetworkInterfacePermission", "ec2:DeleteNetworkInterface", "ec2:DeleteNetworkInterfacePermission",
)
#: What a Lambda function's execution role needs to run in a VPC (Lambda docs, "Giving Lambda functions access to
#: resources in an Amazon VPC": the actions of AWSLambdaVPCAccessExecutionRole without its logs actions).
#: ``ec2:DescribeNetworkInterfaces`` works only on all resources (same page).
LAMBDA_VPC_DESCRIBE_ACTIONS = ("ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets")
LAMBDA_VPC_INTERFACE_ACTIONS = (
    "ec2:DeleteNetworkInterface", "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses",
)
_VPC_ACTIONS = {
    "sagemaker": (SAGEMAKER_VPC_DESCRIBE_ACTIONS, SAGEMAKER_VPC_INTERFACE_ACTIONS),
    "lambda": (LAMBDA_VPC_DESCRIBE_ACTIONS, LAMBDA_VPC_INTERFACE_ACTIONS),
}


def grant_network_interfaces(role: iam.Role, placement: WorkloadPlacement, service: str) -> None:
    """Let ``service`` (``sagemaker`` or ``lambda``) manage the network interfaces of ``role``'s workload in
    ``placement``: the actions that service documents for its execution role, inline (no managed policy), scoped where
    EC2 allows it.

    - ``VpcDescribe``: the Describe actions, on ``*`` (they support no resource-level permissions).
    - ``VpcCreateNetworkInterface``: ``ec2:CreateNetworkInterface`` on this account's network interfaces (in this
      region) and the placement's own subnets and security groups, named by ID. Their account is left open: a landing
      zone may share its subnets with this account through AWS RAM, and an ARN names its owner's account.
    - ``VpcNetworkInterfaces``: deleting them, their permissions (SageMaker attaches its instances through
      ``ec2:CreateNetworkInterfacePermission``) or, for Lambda, their secondary IPs, on this account's network
      interfaces: their IDs are assigned by EC2 when they are created.

    Acknowledges the resulting ``AwsSolutions-IAM5`` findings on ``role`` with these reasons.
    """
    if service not in _VPC_ACTIONS:
        raise ValueError(f"grant_network_interfaces: service must be one of {sorted(_VPC_ACTIONS)}, got {service!r}")
    describe, interface_actions = _VPC_ACTIONS[service]
    stack = Stack.of(role)
    interfaces = stack.format_arn(service="ec2", resource="network-interface", resource_name="*")
    subnets = [stack.format_arn(service="ec2", account="*", resource="subnet", resource_name=subnet_id)
               for subnet_id in placement.subnet_ids]
    groups = [stack.format_arn(service="ec2", account="*", resource="security-group", resource_name=group_id)
              for group_id in placement.security_group_ids]
    role.add_to_policy(iam.PolicyStatement(sid="VpcDescribe", actions=list(describe), resources=["*"]))
    role.add_to_policy(iam.PolicyStatement(
        sid="VpcCreateNetworkInterface", actions=["ec2:CreateNetworkInterface"],
        resources=[interfaces, *subnets, *groups],
    ))
    role.add_to_policy(iam.PolicyStatement(
        sid="VpcNetworkInterfaces", actions=list(interface_actions), resources=[interfaces],
    ))
    compliance.acknowledge(
        role, "AwsSolutions-IAM5[Resource::*]",
        f"EC2's Describe actions {', '.join(describe)} support no resource-level permissions: {service} reads the "
        "VPC's subnets and interfaces to place the workload.",
    )
    compliance.acknowledge_wildcard_resources(
        role,
        [interfaces],
        f"{service} creates and deletes the network interfaces of its workload in the VPC; EC2 assigns their IDs at "
        "creation, so this account's network interfaces in this region are the narrowest resource.",
    )
    compliance.acknowledge_wildcard_resources(
        role,
        [*subnets, *groups],
        "The workload's own subnets and security groups, named by ID; the account is open because a landing zone "
        "may share the subnets through AWS RAM, and a shared subnet's ARN names its owner's account.",
    )


class PlatformNetwork(Construct):
    """A private network for the platform's workloads.

    :param vpc: an existing VPC. Default: a new one (see the module docstring).
    :param subnets: where workloads and interface endpoints go, one subnet per AZ. Default: the created VPC's isolated
        subnets; with ``vpc``, CDK's default selection (its private subnets).
    :param az_count: AZs (and isolated subnets) of a created VPC, at least 2. Default 2.
    :param cidr: IPv4 block of a created VPC (a literal, /16 to /24), split into equal subnets. Default 10.40.0.0/16.
    :param interface_endpoints: service short names (``com.amazonaws.<region>.<name>``) to create interface endpoints
        for. Default: :data:`platform_config.names.VPC_INTERFACE_ENDPOINTS` for a created VPC, none with ``vpc``.
    :param s3_gateway_endpoint: create the S3 gateway endpoint on the subnets' route tables. Default: True for a created
        VPC, False with ``vpc`` (a route table takes one S3 endpoint; landing zones have theirs).
    :param s3_prefix_list_id: the region's S3 managed prefix list (``pl-...``), the workloads' S3 egress destination.
        Default: none, and HTTPS to any IPv4 address instead (see the module docstring).
    :param https_egress: where workloads reach AWS APIs when this construct creates no interface endpoints (a landing
        zone's central endpoints are often outside the VPC's CIDR): one or more peers. Default: any IPv4 address.
    :param flow_logs: flow logs (all traffic) of a created VPC to a new log group. Default True.
    :param log_key: KMS key of the flow log group. Default: a new key with rotation.
    :param log_retention: of the flow log group. Default one year.
    :param removal_policy: of the flow log group and a new key. Default RETAIN.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        vpc: Optional[ec2.IVpc] = None,
        subnets: Optional[ec2.SubnetSelection] = None,
        az_count: int = 2,
        cidr: str = "10.40.0.0/16",
        interface_endpoints: Optional[Sequence[str]] = None,
        s3_gateway_endpoint: Optional[bool] = None,
        s3_prefix_list_id: Optional[str] = None,
        https_egress: Optional[ec2.IPeer | Sequence[ec2.IPeer]] = None,
        flow_logs: bool = True,
        log_key: Optional[kms.IKey] = None,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_YEAR,
        removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
    ) -> None:
        super().__init__(scope, id_)
        created = vpc is None
        if az_count < 2:
            raise ValueError(f"az_count must be at least 2, got {az_count}")
        self.vpc: ec2.IVpc = self._create_vpc(az_count, cidr) if created else vpc
        self.subnets: ec2.SubnetSelection = subnets or (
            ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED) if created else ec2.SubnetSelection()
        )
        selected = self.vpc.select_subnets(**_selection_kwargs(self.subnets))
        #: The selected subnets' IDs and AZs, in the same order.
        self.subnet_ids: list[str] = selected.subnet_ids
        self.availability_zones: list[str] = [s.availability_zone for s in selected.subnets]

        self.workload_security_group = ec2.SecurityGroup(
            self, "WorkloadSecurityGroup", vpc=self.vpc, allow_all_outbound=False,
            description="Platform workloads (SageMaker jobs and models, Lambda functions): HTTPS to endpoints and S3",
        )
        self.glue_security_group = ec2.SecurityGroup(
            self, "GlueSecurityGroup", vpc=self.vpc, allow_all_outbound=False,
            description="Glue jobs: all TCP among the job workers, HTTPS to endpoints and S3",
        )
        # Glue's workers talk to each other on any TCP port: its security group must admit itself (Glue docs,
        # "Setting up networking": a self-referencing inbound rule for all TCP ports), and reach itself.
        self.glue_security_group.add_ingress_rule(self.glue_security_group, ec2.Port.all_tcp(), "Glue workers")
        self.glue_security_group.add_egress_rule(self.glue_security_group, ec2.Port.all_tcp(), "Glue workers")
        self.workload_security_groups = (self.workload_security_group, self.glue_security_group)

        if interface_endpoints is None:
            interface_endpoints = VPC_INTERFACE_ENDPOINTS if created else ()
        self.endpoint_security_group: Optional[ec2.SecurityGroup] = None
        self.interface_endpoints: dict[str, ec2.InterfaceVpcEndpoint] = {}
        if interface_endpoints:
            self._add_interface_endpoints(interface_endpoints)
        else:
            peers = https_egress if isinstance(https_egress, (list, tuple)) else [https_egress] if https_egress else []
            for peer in peers or [ec2.Peer.any_ipv4()]:
                self._allow_https(peer, "AWS APIs through the landing zone's endpoints")

        self.s3_endpoint: Optional[ec2.GatewayVpcEndpoint] = None
        if s3_gateway_endpoint is None:
            s3_gateway_endpoint = created
        if s3_gateway_endpoint:
            self.s3_endpoint = ec2.GatewayVpcEndpoint(
                self, "S3Endpoint", vpc=self.vpc, service=ec2.GatewayVpcEndpointAwsService.S3, subnets=[self.subnets]
            )
        if s3_prefix_list_id:
            self._allow_https(ec2.Peer.prefix_list(s3_prefix_list_id), "S3 through its managed prefix list")
        else:  # no prefix list: S3's addresses are not known at synth (a rule equal to one above is not repeated)
            self._allow_https(ec2.Peer.any_ipv4(), "S3 (no prefix list given)")

        self.flow_log_group: Optional[logs.LogGroup] = None
        if created and flow_logs:
            self._add_flow_logs(log_key, log_retention, removal_policy)

    def _create_vpc(self, az_count: int, cidr: str) -> ec2.IVpc:
        network = ipaddress.IPv4Network(cidr, strict=True)
        new_prefix = network.prefixlen + max(2, math.ceil(math.log2(az_count)))
        if new_prefix > 28:
            raise ValueError(f"cidr {cidr} is too small for {az_count} subnets of at least /28")
        self.cfn_vpc = ec2.CfnVPC(self, "Vpc", cidr_block=cidr, enable_dns_hostnames=True, enable_dns_support=True)
        Tags.of(self.cfn_vpc).add("Name", self.node.path)
        azs, subnet_ids, route_table_ids = [], [], []
        for index, block in zip(range(az_count), network.subnets(new_prefix=new_prefix)):
            az = Fn.select(index, Fn.get_azs())
            subnet = ec2.CfnSubnet(
                self, f"IsolatedSubnet{index + 1}", vpc_id=self.cfn_vpc.ref, cidr_block=str(block),
                availability_zone=az, map_public_ip_on_launch=False,
            )
            Tags.of(subnet).add("Name", f"{self.node.path}/IsolatedSubnet{index + 1}")
            table = ec2.CfnRouteTable(self, f"IsolatedRouteTable{index + 1}", vpc_id=self.cfn_vpc.ref)
            ec2.CfnSubnetRouteTableAssociation(
                self, f"IsolatedRouteTableAssociation{index + 1}", subnet_id=subnet.ref, route_table_id=table.ref
            )
            azs.append(az)
            subnet_ids.append(subnet.ref)
            route_table_ids.append(table.ref)
        return ec2.Vpc.from_vpc_attributes(
            self, "VpcRef", vpc_id=self.cfn_vpc.ref, vpc_cidr_block=cidr, availability_zones=azs,
            isolated_subnet_ids=subnet_ids, isolated_subnet_route_table_ids=route_table_ids,
        )

    def _add_interface_endpoints(self, names: Sequence[str]) -> None:
        self.endpoint_security_group = ec2.SecurityGroup(
            self, "EndpointSecurityGroup", vpc=self.vpc, allow_all_outbound=False,
            description="Interface VPC endpoints: HTTPS from the platform workload security groups only",
        )
        for group in self.workload_security_groups:
            self.endpoint_security_group.add_ingress_rule(group, HTTPS, "HTTPS from platform workloads")
        self._allow_https(self.endpoint_security_group, "AWS APIs through the interface endpoints")
        for name in names:
            construct_id = "".join(part.capitalize() for part in name.replace("-", ".").split(".")) + "Endpoint"
            self.interface_endpoints[name] = ec2.InterfaceVpcEndpoint(
                self, construct_id, vpc=self.vpc, service=ec2.InterfaceVpcEndpointAwsService(name),
                subnets=self.subnets, private_dns_enabled=True, open=False,
                security_groups=[self.endpoint_security_group],
            )

    def _allow_https(self, peer: ec2.IPeer, description: str) -> None:
        for group in self.workload_security_groups:
            group.add_egress_rule(peer, HTTPS, description)

    def _add_flow_logs(
        self, log_key: Optional[kms.IKey], retention: logs.RetentionDays, removal_policy: RemovalPolicy
    ) -> None:
        if log_key is None:
            log_key = rotating_key(
                self, "FlowLogKey", description=f"{self.node.path}: VPC flow logs", removal_policy=removal_policy
            )
            allow_cloudwatch_logs(log_key)
        self.flow_log_group = logs.LogGroup(
            self, "FlowLogGroup", encryption_key=log_key, retention=retention, removal_policy=removal_policy
        )
        self.flow_log = ec2.FlowLog(
            self, "FlowLog", resource_type=ec2.FlowLogResourceType.from_vpc(self.vpc),
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(self.flow_log_group),
            traffic_type=ec2.FlowLogTrafficType.ALL,
        )
