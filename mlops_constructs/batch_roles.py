"""The roles of a batch inference run: the processing jobs', the model's (transform jobs) and the state machine's.

:class:`~mlops_constructs.batch_inference.BatchInference` creates them in its own scope; each is least-privilege:
this model's S3 prefixes, the lake key, its own jobs' log streams and names (by the construct's job name prefix) and,
in a VPC, network interfaces in that VPC only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

from mlops_constructs import compliance
from mlops_constructs.network import WorkloadPlacement


def sagemaker_arn(scope: Construct, resource: str, name: str) -> str:
    """The ARN of a SageMaker ``resource`` named ``name`` (a trailing ``*`` allowed) in ``scope``'s stack."""
    return Stack.of(scope).format_arn(service="sagemaker", resource=resource, resource_name=name)


@dataclass(frozen=True)
class JobGrants:
    """What the processing jobs' role and the model's role share.

    :param name: the model's resource name (the roles' descriptions).
    :param job_name_prefix: the runs' job and model names start with ``<prefix>-`` (their log streams too).
    :param encryption_key: the lake key: volumes and outputs.
    :param objects: object ARN patterns by S3 location: ``partition``, ``model``, ``work``, ``predictions``.
    :param placement / vpc: the jobs' VPC placement and the VPC; None: no VPC.
    """

    name: str
    job_name_prefix: str
    encryption_key: kms.IKey
    objects: Mapping[str, str]
    placement: Optional[WorkloadPlacement]
    vpc: Optional[ec2.IVpc]

    def job_logs(self, role: iam.Role, kind: str) -> list[str]:
        """CloudWatch logs of this construct's jobs (``/aws/sagemaker/<kind>``, streams ``<job name>/...``).
        Returns the wildcard ARNs. CreateLogGroup: SageMaker creates the account-wide group with the job's role on
        its first job (the platform owns it only on request)."""
        stack = Stack.of(role)

        def log_arn(name: str) -> str:
            return stack.format_arn(service="logs", resource="log-group", resource_name=name,
                                    arn_format=ArnFormat.COLON_RESOURCE_NAME)

        group = log_arn(f"/aws/sagemaker/{kind}")
        group_any = log_arn(f"/aws/sagemaker/{kind}:*")
        streams = log_arn(f"/aws/sagemaker/{kind}:log-stream:{self.job_name_prefix}-*")
        role.add_to_policy(iam.PolicyStatement(
            sid="JobLogGroup", actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:DescribeLogStreams"],
            resources=[group, group_any]))
        role.add_to_policy(iam.PolicyStatement(sid="JobLogStreams", actions=["logs:PutLogEvents"],
                                               resources=[streams]))
        return [group_any, streams]

    def common(self, role: iam.Role, repositories: Sequence[str], namespace: str) -> list[str]:
        """Images, metrics, the lake key (with the volume grant) and the VPC; returns the wildcard resources."""
        role.add_to_policy(iam.PolicyStatement(
            sid="PullImages", actions=["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer",
                                       "ecr:BatchCheckLayerAvailability"], resources=list(repositories)))
        role.add_to_policy(iam.PolicyStatement(sid="EcrToken", actions=["ecr:GetAuthorizationToken"],
                                               resources=["*"]))
        role.add_to_policy(iam.PolicyStatement(
            sid="JobMetrics", actions=["cloudwatch:PutMetricData"], resources=["*"],
            conditions={"StringLike": {"cloudwatch:namespace": [namespace]}}))
        role.add_to_policy(iam.PolicyStatement(
            sid="LakeKey", actions=["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"],
            resources=[self.encryption_key.key_arn]))
        # Volumes encrypted with the lake key: SageMaker creates them on the role's behalf through a KMS grant.
        role.add_to_policy(iam.PolicyStatement(
            sid="VolumeKeyGrant", actions=["kms:CreateGrant"], resources=[self.encryption_key.key_arn],
            conditions={"Bool": {"kms:GrantIsForAWSResource": "true"}}))
        wildcards = []
        if self.placement is not None:
            stack = Stack.of(role)

            def ec2_arn(resource: str, name: str) -> str:
                return stack.format_arn(service="ec2", resource=resource, resource_name=name)

            interfaces = ec2_arn("network-interface", "*")
            role.add_to_policy(iam.PolicyStatement(
                sid="JobNetworkInterfaces",
                actions=["ec2:CreateNetworkInterface", "ec2:CreateNetworkInterfacePermission",
                         "ec2:DeleteNetworkInterface", "ec2:DeleteNetworkInterfacePermission"],
                resources=[interfaces, *(ec2_arn("subnet", s) for s in self.placement.subnet_ids),
                           *(ec2_arn("security-group", g) for g in self.placement.security_group_ids)],
                conditions={"ArnEquals": {"ec2:Vpc": self.vpc.vpc_arn}}))
            role.add_to_policy(iam.PolicyStatement(
                sid="JobNetworkDescribe",
                actions=["ec2:DescribeNetworkInterfaces", "ec2:DescribeVpcs", "ec2:DescribeDhcpOptions",
                         "ec2:DescribeSubnets", "ec2:DescribeSecurityGroups"], resources=["*"]))
            wildcards.append(interfaces)
        return wildcards

    def acknowledge(self, role: iam.Role, wildcards: Sequence[str], what: str) -> None:
        """cdk-nag acknowledgements of a job role's ``Resource::*`` statements and its ``wildcards``."""
        compliance.acknowledge(
            role, "AwsSolutions-IAM5[Resource::*]",
            "ecr:GetAuthorizationToken has no resource type; cloudwatch:PutMetricData is limited to the SageMaker "
            "namespace by condition"
            + ("; the EC2 Describe* calls SageMaker makes for a job in a VPC have no resource type."
               if self.placement else "."))
        compliance.acknowledge_wildcard_resources(
            role, wildcards,
            f"{what}: S3 access is limited to this model's prefixes (objects are named per run and partition); the "
            "jobs log to streams named after the run's jobs (CreateLogStream is authorized on the <group>:* form); "
            "framework images come from AWS-owned ECR accounts that differ per region"
            + ("; network interfaces get IDs only when SageMaker creates them, and only in this VPC (ec2:Vpc)."
               if self.placement else "."))


def processing_job_role(scope: Construct, grants: JobGrants, *, repository: str, curated_bucket: s3.IBucket,
                        curated_prefix: str, artifacts_bucket: s3.IBucket, model_artifacts_prefix: str,
                        work_prefix: str, scoring_code: s3_assets.Asset) -> iam.Role:
    """Prepare and collect (``JobRole`` in ``scope``): read the curated partition, the model data and the script;
    write this model's batch working files and predictions.

    :param repository: the processing image's ECR repository ARN.
    :param curated_bucket / curated_prefix: the dataset's curated data (listed and read).
    :param artifacts_bucket / model_artifacts_prefix / work_prefix: the model data and the runs' working files.
    :param scoring_code: the script's asset (read).
    """
    role = iam.Role(scope, "JobRole", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
                    description=f"Batch inference processing jobs of {grants.name}")
    objects = grants.objects
    role.add_to_policy(iam.PolicyStatement(
        sid="ReadInputs", actions=["s3:GetObject"],
        resources=[objects["partition"], objects["model"], objects["work"]]))
    role.add_to_policy(iam.PolicyStatement(
        sid="WriteOutputs", actions=["s3:PutObject", "s3:AbortMultipartUpload"],
        resources=[objects["work"], objects["predictions"]]))
    role.add_to_policy(iam.PolicyStatement(
        sid="ListInputs", actions=["s3:ListBucket"], resources=[curated_bucket.bucket_arn],
        conditions={"StringLike": {"s3:prefix": [curated_prefix, f"{curated_prefix}*"]}}))
    # SageMaker lists an S3Prefix input before downloading it (the run's files, the package's model.tar.gz).
    role.add_to_policy(iam.PolicyStatement(
        sid="ListArtifacts", actions=["s3:ListBucket"], resources=[artifacts_bucket.bucket_arn],
        conditions={"StringLike": {"s3:prefix": [work_prefix, f"{work_prefix}*", f"{model_artifacts_prefix}*"]}}))
    scoring_code.grant_read(role)
    wildcards = grants.common(role, [repository], "/aws/sagemaker/ProcessingJobs")
    wildcards += grants.job_logs(role, "ProcessingJobs")
    grants.acknowledge(
        role, [*objects.values(), *wildcards, compliance.asset_bucket_objects(scope)],
        "Processing jobs of the batch runs")
    compliance.acknowledge_wildcard_actions(
        role, compliance.S3_READ_ACTIONS,
        "The step script is a CDK asset; CDK's asset grant gives read access to that object only.")
    return role


def transform_model_role(scope: Construct, grants: JobGrants, *, repositories: Sequence[str],
                         artifacts_bucket: s3.IBucket, work_prefix: str) -> iam.Role:
    """The transform job (the model's execution role, ``ModelRole`` in ``scope``): read the model data and the run's
    input, write the run's output, pull the package's framework image.

    :param repositories: ECR repository ARNs of the images the packages may name.
    :param artifacts_bucket / work_prefix: the runs' working files (the transform's input and output).
    """
    role = iam.Role(scope, "ModelRole", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
                    description=f"Batch inference model (transform jobs) of {grants.name}")
    objects = grants.objects
    role.add_to_policy(iam.PolicyStatement(sid="ReadInputs", actions=["s3:GetObject"],
                                           resources=[objects["model"], objects["work"]]))
    role.add_to_policy(iam.PolicyStatement(sid="WriteOutput",
                                           actions=["s3:PutObject", "s3:AbortMultipartUpload"],
                                           resources=[objects["work"]]))
    role.add_to_policy(iam.PolicyStatement(
        sid="ListInput", actions=["s3:ListBucket"], resources=[artifacts_bucket.bucket_arn],
        conditions={"StringLike": {"s3:prefix": [work_prefix, f"{work_prefix}*"]}}))
    wildcards = grants.common(role, repositories, "/aws/sagemaker/TransformJobs")
    wildcards += grants.job_logs(role, "TransformJobs")
    grants.acknowledge(role, [objects["model"], objects["work"], *repositories, *wildcards],
                       "Transform jobs of the batch runs")
    return role


def grant_state_machine(role: iam.Role, *, job_name_prefix: str, function: lambda_.IFunction, job_role: iam.IRole,
                        model_role: iam.IRole, encryption_key: kms.IKey) -> None:
    """Its own jobs and models (by name prefix), their managed rules, passing the two job roles, the function.

    :param role: the state machine's role. :param job_name_prefix: of the runs' job and model names.
    :param function: the plan function. :param job_role / model_role: the roles it passes to SageMaker.
    :param encryption_key: the lake key (the jobs' volumes).
    """
    stack = Stack.of(role)
    prefix = f"{job_name_prefix}-*"
    processing = sagemaker_arn(role, "processing-job", prefix)
    transform = sagemaker_arn(role, "transform-job", prefix)
    model = sagemaker_arn(role, "model", prefix)
    function.grant_invoke(role)
    role.add_to_policy(iam.PolicyStatement(
        sid="ProcessingJobs", actions=["sagemaker:CreateProcessingJob", "sagemaker:DescribeProcessingJob",
                                       "sagemaker:StopProcessingJob", "sagemaker:AddTags", "sagemaker:ListTags"],
        resources=[processing]))
    role.add_to_policy(iam.PolicyStatement(
        sid="TransformJobs", actions=["sagemaker:CreateTransformJob", "sagemaker:DescribeTransformJob",
                                      "sagemaker:StopTransformJob", "sagemaker:AddTags", "sagemaker:ListTags"],
        resources=[transform]))
    role.add_to_policy(iam.PolicyStatement(
        sid="Models", actions=["sagemaker:CreateModel", "sagemaker:DeleteModel", "sagemaker:DescribeModel",
                               "sagemaker:AddTags"], resources=[model]))
    rules = [stack.format_arn(service="events", resource="rule",
                              resource_name=f"StepFunctionsGetEventsForSageMaker{kind}JobsRule")
             for kind in ("Processing", "Transform")]
    role.add_to_policy(iam.PolicyStatement(
        sid="SyncRules", actions=["events:PutTargets", "events:PutRule", "events:DescribeRule"],
        resources=rules))
    role.add_to_policy(iam.PolicyStatement(
        sid="PassJobRoles", actions=["iam:PassRole"], resources=[job_role.role_arn, model_role.role_arn],
        conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}))
    # The caller of CreateProcessingJob / CreateTransformJob with a VolumeKmsKeyId: SageMaker creates the
    # encrypted volumes through a grant.
    role.add_to_policy(iam.PolicyStatement(
        sid="VolumeKeyGrant", actions=["kms:CreateGrant", "kms:DescribeKey"],
        resources=[encryption_key.key_arn],
        conditions={"Bool": {"kms:GrantIsForAWSResource": "true"}}))
    compliance.acknowledge_wildcard_resources(
        role, [processing, transform, model, f"{function.function_arn}:*"],
        "The runs' jobs and models are named <prefix>-<kind>-<run id> by the plan function; the state machine "
        "may create, watch, stop and delete only names under this construct's prefix (and invoke any version "
        "of its own function).")
    compliance.acknowledge(
        role, "AwsSolutions-IAM5[Resource::*]",
        "Step Functions' log delivery and X-Ray actions (CDK's logging and tracing grants) have no resource "
        "type.")
