"""Deep Learning workstation: an EC2 instance from the public DLAMI, reachable only through SSM Session Manager."""

from __future__ import annotations

import re
from typing import Optional, Sequence

from aws_cdk import Aws, Duration, RemovalPolicy, Stack, Token
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from mlops_constructs import compliance

DEFAULT_AMI_PARAMETER = "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id"
IDLE_PERIOD_MINUTES = 5  # the alarm evaluates 5-minute averages (detailed monitoring publishes every minute)
MAX_IDLE_MINUTES = 24 * 60  # CloudWatch: evaluation periods x period must not exceed one day for sub-hour periods
# The minimal instance permissions for Session Manager (Session Manager user guide, "Step 2: Verify or add instance
# permissions for Session Manager"): register with Systems Manager and open the session channels. Unlike
# AmazonSSMManagedInstanceCore, no Run Command (ec2messages), patching, inventory or parameter reads.
SESSION_MANAGER_ACTIONS = (
    "ssm:UpdateInstanceInformation",
    "ssmmessages:CreateControlChannel",
    "ssmmessages:CreateDataChannel",
    "ssmmessages:OpenControlChannel",
    "ssmmessages:OpenDataChannel",
)
_PIPELINE_ARN = re.compile(r"^arn:aws[a-z-]*:sagemaker:[a-z0-9-]*:\d{12}:pipeline/[A-Za-z0-9-]{1,256}$")
_SSM_PARAMETER_NAME = re.compile(r"^/[A-Za-z0-9_./-]+$")


def _validate(
    *,
    instance_type: str,
    ami_parameter_name: str,
    root_volume_size_gib: int,
    pipeline_arns: Sequence[str],
    idle_minutes: int,
    idle_cpu_percent: float,
    http_put_response_hop_limit: int,
) -> ec2.InstanceType:
    """Check the workstation's props with exact messages; returns the parsed instance type."""
    if not isinstance(idle_minutes, int) or idle_minutes < IDLE_PERIOD_MINUTES or idle_minutes > MAX_IDLE_MINUTES \
            or idle_minutes % IDLE_PERIOD_MINUTES:
        raise ValueError(
            f"DeepLearningWorkstation idle_minutes must be a multiple of {IDLE_PERIOD_MINUTES} between "
            f"{IDLE_PERIOD_MINUTES} and {MAX_IDLE_MINUTES} (the alarm evaluates {IDLE_PERIOD_MINUTES}-minute "
            f"averages), got {idle_minutes!r}"
        )
    if not 0 < idle_cpu_percent < 100:
        raise ValueError(
            "DeepLearningWorkstation idle_cpu_percent must be between 0 and 100 (exclusive), "
            f"got {idle_cpu_percent!r}"
        )
    if not Token.is_unresolved(root_volume_size_gib) and not 8 <= root_volume_size_gib <= 16384:
        raise ValueError(
            "DeepLearningWorkstation root_volume_size_gib must be 8..16384 (gp3 limits), "
            f"got {root_volume_size_gib!r}"
        )
    if not 1 <= http_put_response_hop_limit <= 64:
        raise ValueError(
            "DeepLearningWorkstation http_put_response_hop_limit must be 1..64, "
            f"got {http_put_response_hop_limit!r}"
        )
    if not _SSM_PARAMETER_NAME.match(ami_parameter_name):
        raise ValueError(
            "DeepLearningWorkstation ami_parameter_name must be an SSM parameter path like "
            f"{DEFAULT_AMI_PARAMETER!r}, got {ami_parameter_name!r}"
        )
    for arn in pipeline_arns:
        if not Token.is_unresolved(arn) and not _PIPELINE_ARN.match(arn):
            raise ValueError(
                "DeepLearningWorkstation pipeline_arns must be SageMaker pipeline ARNs like "
                f"arn:aws:sagemaker:<region>:<account>:pipeline/<name>, got {arn!r}"
            )
    try:
        parsed_type = ec2.InstanceType(instance_type)
        parsed_type.architecture  # raises for a malformed type
    except Exception:  # noqa: BLE001 - jsii raises a generic error for an unparsable type
        raise ValueError(
            f"DeepLearningWorkstation instance_type must look like g5.xlarge, got {instance_type!r}"
        ) from None
    return parsed_type


class DeepLearningWorkstation(Construct):
    """A GPU development instance for data scientists, with no inbound network path at all.

    The AMI is the public AWS Deep Learning AMI SSM parameter, resolved by CloudFormation at DEPLOY time (a stack
    parameter of type ``AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>``; synth never calls AWS and writes nothing
    to cdk.context.json). Note: when AWS publishes a newer DLAMI, the next deploy REPLACES the instance and its root
    volume; keep work in git and S3 (the role can read the lake buckets), or pin ``ami_parameter_name`` to a
    parameter you control.

    Access is through SSM Session Manager only (``aws ssm start-session --target <instance id>``): the security
    group has no inbound rules, there is no key pair and no public IP. IMDSv2 is required, the gp3 root volume is
    encrypted, detailed monitoring is on, and a CloudWatch alarm stops the instance when its average CPU stays below
    ``idle_cpu_percent`` for ``idle_minutes`` (a stopped instance costs only its volume).

    :param vpc: where the instance runs (in a private subnet with egress by default, see ``vpc_subnets``).
        Default: a new VPC in one AZ with one public and one private-with-egress subnet, one NAT gateway and VPC
        flow logs (all traffic) to a CloudWatch log group kept ``flow_log_retention``.
    :param vpc_subnets: subnets of ``vpc`` to place the instance in. Default: private with egress.
    :param instance_type: EC2 instance type. Default: g5.xlarge (1 NVIDIA A10G).
    :param ami_parameter_name: public SSM parameter holding the AMI ID. Default: the DLAMI Base OSS Nvidia driver
        GPU Ubuntu 22.04 (x86_64) ``latest`` parameter. It must match ``instance_type``'s architecture.
    :param root_device_name: root device of the AMI. Default: ``/dev/sda1`` (Ubuntu DLAMIs).
    :param root_volume_size_gib: root volume size. Default: 200 GiB (the DLAMI itself needs about 100 GiB).
    :param encryption_key: customer-managed key for the root volume and the flow log group. Default: the account's
        EBS default key (aws/ebs) and CloudWatch Logs' own encryption. The deploying principal and EC2 must be able
        to use a given key (its key policy).
    :param termination_protection: ``DisableApiTermination``. Default: True (the root volume holds the user's work;
        to delete the stack, set False and deploy first).
    :param read_buckets: buckets the instance role may read (objects and listing; decrypts with their keys).
    :param pipeline_arns: SageMaker pipelines the role may start and whose executions it may describe.
    :param idle_minutes: stop the instance after this many minutes of low CPU; a multiple of 5 in 5..1440.
        Default: 60. GPU jobs with little CPU use look idle: raise ``idle_cpu_percent`` accordingly.
    :param idle_cpu_percent: the average CPU utilization below which the instance counts as idle. Default: 5.
    :param flow_log_retention: retention of the default VPC's flow log group. Default: one year.
    :param removal_policy: of the flow log group. Default: RETAIN.
    :param http_put_response_hop_limit: IMDSv2 token hop limit. Default: 2, so Docker containers on the workstation
        (DLAMI users run them) reach the instance role; 1 confines credentials to the host's processes.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        vpc: Optional[ec2.IVpc] = None,
        vpc_subnets: Optional[ec2.SubnetSelection] = None,
        instance_type: str = "g5.xlarge",
        ami_parameter_name: str = DEFAULT_AMI_PARAMETER,
        root_device_name: str = "/dev/sda1",
        root_volume_size_gib: int = 200,
        encryption_key: Optional[kms.IKey] = None,
        termination_protection: bool = True,
        read_buckets: Sequence[s3.IBucket] = (),
        pipeline_arns: Sequence[str] = (),
        idle_minutes: int = 60,
        idle_cpu_percent: float = 5.0,
        flow_log_retention: logs.RetentionDays = logs.RetentionDays.ONE_YEAR,
        removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
        http_put_response_hop_limit: int = 2,
    ) -> None:
        super().__init__(scope, id_)
        parsed_type = _validate(
            instance_type=instance_type,
            ami_parameter_name=ami_parameter_name,
            root_volume_size_gib=root_volume_size_gib,
            pipeline_arns=pipeline_arns,
            idle_minutes=idle_minutes,
            idle_cpu_percent=idle_cpu_percent,
            http_put_response_hop_limit=http_put_response_hop_limit,
        )
        if vpc is None:
            self.flow_log_group: Optional[logs.LogGroup] = logs.LogGroup(
                self,
                "FlowLogs",
                retention=flow_log_retention,
                encryption_key=encryption_key,
                removal_policy=removal_policy,
            )
            if encryption_key is not None:
                # CloudWatch Logs must be allowed to use the key for this log group (no-op for imported keys).
                encryption_key.grant_encrypt_decrypt(iam.ServicePrincipal(f"logs.{Aws.REGION}.amazonaws.com"))
            vpc = self._default_vpc(self.flow_log_group)
        else:
            self.flow_log_group = None
        self.vpc = vpc

        self.security_group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=vpc,
            description="Deep learning workstation: no inbound rules (Session Manager only), all outbound",
            allow_all_outbound=True,
        )
        self.role = self._role(read_buckets, pipeline_arns)
        self.machine_image = ec2.MachineImage.from_ssm_parameter(
            ami_parameter_name, os=ec2.OperatingSystemType.LINUX, cached_in_context=False
        )
        root_volume = ec2.BlockDevice(
            device_name=root_device_name,
            volume=ec2.BlockDeviceVolume.ebs(
                root_volume_size_gib,
                encrypted=True,
                kms_key=encryption_key,
                volume_type=ec2.EbsDeviceVolumeType.GP3,
                delete_on_termination=True,
            ),
        )
        self.instance = self._instance(parsed_type, vpc_subnets, root_volume, termination_protection,
                                       http_put_response_hop_limit)
        self.idle_alarm = self._idle_alarm(idle_minutes, idle_cpu_percent)

    def _default_vpc(self, flow_log_group: logs.ILogGroup) -> ec2.Vpc:
        """One AZ, one public and one private-with-egress subnet, one NAT gateway, all traffic logged."""
        return ec2.Vpc(
            self,
            "Vpc",
            max_azs=1,
            nat_gateways=1,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24),
                ec2.SubnetConfiguration(
                    name="private", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=24
                ),
            ],
            flow_logs={
                "all": ec2.FlowLogOptions(
                    destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_log_group),
                    traffic_type=ec2.FlowLogTrafficType.ALL,
                )
            },
        )

    def _role(self, read_buckets: Sequence[s3.IBucket], pipeline_arns: Sequence[str]) -> iam.Role:
        """The instance role: Session Manager, read the given buckets, start and describe the given pipelines."""
        role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"),
            description="Deep learning workstation: Session Manager, read the lake, start model pipelines",
        )
        # Inline least-privilege statements instead of the AmazonSSMManagedInstanceCore managed policy (no IAM4).
        role.add_to_policy(iam.PolicyStatement(actions=list(SESSION_MANAGER_ACTIONS), resources=["*"]))
        compliance.acknowledge(
            role,
            "AwsSolutions-IAM5[Resource::*]",
            "Session Manager's instance permissions (ssm:UpdateInstanceInformation, ssmmessages:*Channel) are the "
            "documented minimum and the ssmmessages actions support no resource-level permissions.",
        )
        for bucket in read_buckets:
            bucket.grant_read(role)
        if read_buckets:
            compliance.acknowledge_wildcard_resources(
                role,
                [bucket.arn_for_objects("*") for bucket in read_buckets],
                "Read-only access to the objects of the lake buckets the workstation is given, for exploration.",
            )
            compliance.acknowledge_wildcard_actions(
                role,
                compliance.S3_READ_ACTIONS,
                "CDK grant_read actions (read and list only), limited to the given buckets in the same statement.",
            )
        if pipeline_arns:
            role.add_to_policy(
                iam.PolicyStatement(actions=["sagemaker:StartPipelineExecution"], resources=list(pipeline_arns))
            )
            executions = [f"{arn}/execution/*" for arn in pipeline_arns]
            role.add_to_policy(
                iam.PolicyStatement(actions=["sagemaker:DescribePipelineExecution"], resources=executions)
            )
            compliance.acknowledge_wildcard_resources(
                role,
                executions,
                "Execution IDs are generated at start time; describing is limited to executions of the given "
                "pipelines.",
            )
        return role

    def _instance(
        self,
        instance_type: ec2.InstanceType,
        vpc_subnets: Optional[ec2.SubnetSelection],
        root_volume: ec2.BlockDevice,
        termination_protection: bool,
        http_put_response_hop_limit: int,
    ) -> ec2.Instance:
        """The instance: private subnet, no public IP, encrypted gp3 root volume, IMDSv2 only."""
        instance = ec2.Instance(
            self,
            "Instance",
            vpc=self.vpc,
            vpc_subnets=vpc_subnets or ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            instance_type=instance_type,
            machine_image=self.machine_image,
            role=self.role,
            security_group=self.security_group,
            require_imdsv2=False,  # see metadata_options below
            detailed_monitoring=True,
            disable_api_termination=termination_protection,
            associate_public_ip_address=False,
            ssm_session_permissions=False,
            block_devices=[root_volume],
        )
        # IMDSv2 only, set on the instance itself. ``require_imdsv2=True`` would do it through a launch template
        # named ``InstanceLaunchTemplate`` (fixed unless the ``@aws-cdk/aws-ec2:uniqueImdsv2TemplateName`` flag is
        # set), so a second workstation in the account and region would fail to deploy.
        instance.instance.metadata_options = ec2.CfnInstance.MetadataOptionsProperty(
            http_endpoint="enabled", http_tokens="required", http_put_response_hop_limit=http_put_response_hop_limit
        )
        if not termination_protection:
            compliance.acknowledge(
                instance,
                "AwsSolutions-EC29",
                "termination_protection=False was chosen explicitly for a disposable workstation; it is a single "
                "interactive instance, so an Auto Scaling group would not fit.",
            )
        return instance

    def _idle_alarm(self, idle_minutes: int, idle_cpu_percent: float) -> cloudwatch.Alarm:
        """The alarm that stops the instance after ``idle_minutes`` of average CPU below ``idle_cpu_percent``."""
        alarm = cloudwatch.Alarm(
            self,
            "IdleAlarm",
            alarm_description=(
                f"Stop the deep learning workstation {self.node.path} after {idle_minutes} minutes with average CPU "
                f"below {idle_cpu_percent}%"
            ),
            metric=cloudwatch.Metric(
                namespace="AWS/EC2",
                metric_name="CPUUtilization",
                dimensions_map={"InstanceId": self.instance.instance_id},
                statistic="Average",
                period=Duration.minutes(IDLE_PERIOD_MINUTES),
            ),
            threshold=idle_cpu_percent,
            comparison_operator=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
            evaluation_periods=idle_minutes // IDLE_PERIOD_MINUTES,
            datapoints_to_alarm=idle_minutes // IDLE_PERIOD_MINUTES,
            # A stopped instance publishes no data: that is not "idle", so the alarm leaves ALARM and can fire again
            # after the next start.
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        alarm.add_alarm_action(cloudwatch_actions.Ec2Action(cloudwatch_actions.Ec2InstanceAction.STOP))
        return alarm

    @property
    def instance_id(self) -> str:
        return self.instance.instance_id

    def session_command(self) -> str:
        """The CLI command that opens a shell on the workstation (a token; use in a CfnOutput)."""
        return f"aws ssm start-session --target {self.instance.instance_id} --region {Stack.of(self).region}"
