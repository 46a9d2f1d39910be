"""Small building blocks several constructs share: the CloudWatch Logs key grant, lifecycle rules, the access-log
bucket and the private KMS bucket."""

from __future__ import annotations

from typing import Optional, Sequence

from aws_cdk import Aws, Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from mlops_constructs import compliance


def rotating_key(scope: Construct, id_: str, *, description: str, removal_policy: RemovalPolicy) -> kms.Key:
    """A customer managed KMS key with yearly rotation: the key of every bucket, log group and topic built here."""
    return kms.Key(scope, id_, description=description, enable_key_rotation=True, removal_policy=removal_policy)


def allow_cloudwatch_logs(key: kms.IKey, *, sid: Optional[str] = None) -> None:
    """Let CloudWatch Logs of this account and region use ``key`` for log groups (no effect on imported keys).

    :param sid: of the key policy statement. Default: none.
    """
    key.add_to_resource_policy(
        iam.PolicyStatement(
            sid=sid,
            actions=["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
            principals=[iam.ServicePrincipal(f"logs.{Aws.REGION}.amazonaws.com")],
            resources=["*"],
            conditions={
                "ArnLike": {
                    "kms:EncryptionContext:aws:logs:arn": f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:*"
                }
            },
        )
    )


def lifecycle_rule(
    id_: str, *, abort_incomplete_upload_after: Duration = Duration.days(1), **kwargs
) -> s3.LifecycleRule:
    """An S3 lifecycle rule that also aborts incomplete multipart uploads (after 1 day unless given); ``kwargs`` go to
    :class:`aws_cdk.aws_s3.LifecycleRule` (``expiration``, ``noncurrent_version_expiration``, ...)."""
    return s3.LifecycleRule(id=id_, abort_incomplete_multipart_upload_after=abort_incomplete_upload_after, **kwargs)


def access_logs_bucket(
    scope: Construct,
    id_: str,
    *,
    removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
    expiration: Duration = Duration.days(365),
    incomplete_upload_expiration: Duration = Duration.days(7),
    purpose: str = "the lake's buckets",
) -> s3.Bucket:
    """A server access-log target bucket: SSE-S3 (the only encryption log delivery supports), versioned, TLS only,
    private, logs expired after ``expiration``; its own S1 finding acknowledged (logging it to itself would loop)."""
    bucket = s3.Bucket(
        scope,
        id_,
        encryption=s3.BucketEncryption.S3_MANAGED,
        enforce_ssl=True,
        versioned=True,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        removal_policy=removal_policy,
        lifecycle_rules=[
            lifecycle_rule(
                "expire-access-logs",
                expiration=expiration,
                noncurrent_version_expiration=Duration.days(1),
                abort_incomplete_upload_after=incomplete_upload_expiration,
            )
        ],
    )
    compliance.checkov_skip(bucket, {"CKV_AWS_18": "The access-log target bucket itself: logging it to itself "
                                                   "would loop; CloudTrail records access to it"})
    compliance.acknowledge(
        bucket,
        "AwsSolutions-S1",
        f"This is the server access log target bucket of {purpose}; logging it to itself would loop.",
    )
    return bucket


def kms_bucket(
    scope: Construct,
    id_: str,
    *,
    key: kms.IKey,
    access_logs_bucket: Optional[s3.IBucket],
    access_logs_prefix: str,
    removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
    lifecycle_rules: Sequence[s3.LifecycleRule] = (),
    versioned: bool = True,
) -> s3.Bucket:
    """A private bucket: SSE-KMS with ``key`` (bucket key on), TLS only, public access blocked, owner-enforced, server
    access logs to ``access_logs_bucket`` under ``access_logs_prefix`` (none when no log bucket is given)."""
    return s3.Bucket(
        scope,
        id_,
        encryption=s3.BucketEncryption.KMS,
        encryption_key=key,
        bucket_key_enabled=True,
        enforce_ssl=True,
        versioned=versioned,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        server_access_logs_bucket=access_logs_bucket,
        server_access_logs_prefix=access_logs_prefix if access_logs_bucket else None,
        removal_policy=removal_policy,
        lifecycle_rules=list(lifecycle_rules),
    )
