"""The default execution role of :class:`~mlops_constructs.realtime_endpoint.RealtimeEndpoint`: least privilege
for serving one model package (its artifacts, the framework images, data capture, the endpoint's log group)."""

from __future__ import annotations

from typing import Optional, Sequence

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from mlops_constructs import compliance
from mlops_constructs.endpoint_options import INSTANCE_NAMESPACE


def endpoint_execution_role(
    scope: Construct,
    *,
    endpoint_name: str,
    log_group: logs.ILogGroup,
    log_group_name: str,
    encryption_key: kms.IKey,
    model_artifacts_bucket: s3.IBucket,
    model_artifacts_prefix: str,
    source_code_objects: Sequence[str],
    image_repositories: Sequence[str],
    data_capture_bucket: Optional[s3.IBucket],
    data_capture_prefix: str,
) -> iam.Role:
    """The role SageMaker assumes for the endpoint (``ExecutionRole`` in ``scope``): read the model artifacts (and the
    script-mode source, if any), decrypt (and, with capture, encrypt) with the key, pull the framework images, write
    the captured data, the endpoint's log group and its instance metrics. The endpoint adds the rollback alarms and,
    in a VPC, the network interfaces.

    :param scope: the endpoint's construct. :param endpoint_name: for the description.
    :param log_group / log_group_name: the endpoint's log group and the name SageMaker writes to.
    :param encryption_key: the model's volume and capture key.
    :param model_artifacts_bucket / model_artifacts_prefix: where the package's model.tar.gz lives.
    :param source_code_objects: S3 object ARNs (a trailing ``*`` allowed) the container also reads at startup.
    :param image_repositories: ECR repository names (in SageMaker's AWS-owned accounts) to pull from.
    :param data_capture_bucket / data_capture_prefix: where captured requests go; None: no capture.
    """
    stack = Stack.of(scope)
    role = iam.Role(
        scope,
        "ExecutionRole",
        assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
        description=f"SageMaker endpoint {endpoint_name}: model artifacts, images, capture, logs",
    )
    model_objects = model_artifacts_bucket.arn_for_objects(f"{model_artifacts_prefix}*")
    role.add_to_policy(
        iam.PolicyStatement(sid="ModelArtifacts", actions=["s3:GetObject"], resources=[model_objects])
    )
    if source_code_objects:
        role.add_to_policy(
            iam.PolicyStatement(sid="SourceCode", actions=["s3:GetObject"], resources=list(source_code_objects))
        )
        compliance.acknowledge_wildcard_resources(
            role,
            [arn for arn in source_code_objects if "*" in compliance.render(role, arn)],
            "Read-only access to the code the model container loads at startup (the package's script-mode "
            "source directory); its object key changes with every code version, hence the pattern.",
        )
    key_actions = ["kms:Decrypt"]
    wildcards = [model_objects]
    if data_capture_bucket is not None:
        capture_objects = data_capture_bucket.arn_for_objects(f"{data_capture_prefix}*")
        role.add_to_policy(
            iam.PolicyStatement(sid="DataCapture", actions=["s3:PutObject"], resources=[capture_objects])
        )
        key_actions += ["kms:Encrypt", "kms:GenerateDataKey"]
        wildcards.append(capture_objects)
    role.add_to_policy(iam.PolicyStatement(sid="Key", actions=key_actions, resources=[encryption_key.key_arn]))

    repositories = [
        stack.format_arn(service="ecr", account="*", resource="repository", resource_name=name)
        for name in image_repositories
    ]
    if repositories:
        role.add_to_policy(
            iam.PolicyStatement(
                sid="PullFrameworkImages",
                actions=["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
                resources=repositories,
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(sid="EcrToken", actions=["ecr:GetAuthorizationToken"], resources=["*"])
        )
    group_arn = stack.format_arn(
        service="logs",
        resource="log-group",
        resource_name=log_group_name,
        arn_format=ArnFormat.COLON_RESOURCE_NAME,
    )
    role.add_to_policy(
        iam.PolicyStatement(
            sid="Logs",
            actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
            resources=[group_arn, log_group.log_group_arn],
        )
    )
    role.add_to_policy(
        iam.PolicyStatement(
            sid="InstanceMetrics",
            actions=["cloudwatch:PutMetricData"],
            resources=["*"],
            conditions={"StringEquals": {"cloudwatch:namespace": INSTANCE_NAMESPACE}},
        )
    )
    compliance.acknowledge(
        role,
        "AwsSolutions-IAM5[Resource::*]",
        "ecr:GetAuthorizationToken has no resource type, and cloudwatch:PutMetricData has none either (it is "
        "limited to the /aws/sagemaker/Endpoints namespace by condition).",
    )
    compliance.acknowledge_wildcard_resources(
        role,
        wildcards,
        "The endpoint reads the model artifacts under this model's own prefix and writes captured requests "
        "under its own capture prefix; object keys are versioned by the pipeline, so a prefix is the scope.",
    )
    compliance.acknowledge_wildcard_resources(
        role,
        repositories,
        "SageMaker framework images (XGBoost, scikit-learn) are served from AWS-owned ECR accounts that differ "
        "per region; the repository names are fixed and the approved model package pins the image.",
    )
    return role
