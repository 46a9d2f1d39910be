"""Pipeline storage: the KMS key, artifacts bucket, build log group and (S3 source) source bucket of one pipeline."""

from __future__ import annotations

from typing import Optional, Sequence

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from mlops_constructs import compliance
from mlops_constructs.storage import allow_cloudwatch_logs, kms_bucket, lifecycle_rule


class PipelineStorage:
    """The key, artifacts bucket and build log group of one pipeline, added to ``scope`` itself (ids ``Key``,
    ``ArtifactsBucket``, ``BuildLogs``; ``SourceBucket`` with :meth:`add_source_bucket`), so the construct or stack
    that owns the pipeline keeps its logical IDs.

    :param key: key of the buckets, builds and logs. Default: a new key (``Key``) with rotation.
    :param key_description: of the new key (required when ``key`` is not given).
    :param access_logs_bucket: server access logs of the buckets. Default: none (acknowledged).
    :param access_logs_prefix: the buckets log under ``<prefix>artifacts/`` and ``<prefix>source/``. Default: ``""``.
    :param removal_policy: of key, buckets and log group. Default: RETAIN.
    :param log_retention: of the build log group. Default: 90 days.
    :param artifact_expiration: pipeline artifacts are deleted after this. Default: 30 days.
    :param key_policy_sid: Sid of the key policy statement that lets CloudWatch Logs use the key. Default: none.
    """

    def __init__(
        self,
        scope: Construct,
        *,
        key: Optional[kms.IKey] = None,
        key_description: Optional[str] = None,
        access_logs_bucket: Optional[s3.IBucket] = None,
        access_logs_prefix: str = "",
        removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
        log_retention: logs.RetentionDays = logs.RetentionDays.THREE_MONTHS,
        artifact_expiration: Duration = Duration.days(30),
        key_policy_sid: Optional[str] = None,
    ) -> None:
        if key is None and key_description is None:
            raise ValueError("PipelineStorage needs key_description for the new key, or an existing key")
        self._scope = scope
        self._access_logs = access_logs_bucket
        self._access_logs_prefix = access_logs_prefix
        self._removal_policy = removal_policy
        self.key: kms.IKey = key or kms.Key(
            scope, "Key", description=key_description, enable_key_rotation=True, removal_policy=removal_policy
        )
        self.artifact_bucket = self._bucket(
            "ArtifactsBucket",
            "artifacts/",
            versioned=False,
            rules=[lifecycle_rule("expire-pipeline-artifacts", expiration=artifact_expiration)],
            what="Pipeline artifacts bucket",
        )
        allow_cloudwatch_logs(self.key, sid=key_policy_sid)
        self.log_group = logs.LogGroup(
            scope, "BuildLogs", retention=log_retention, encryption_key=self.key, removal_policy=removal_policy
        )

    def add_source_bucket(self) -> s3.Bucket:
        """``SourceBucket``: versioned (the CodePipeline S3 source action reads a version), old versions expire after
        90 days, native EventBridge notifications on (an upload starts the pipeline through a rule, no trail)."""
        bucket = self._bucket(
            "SourceBucket",
            "source/",
            versioned=True,
            rules=[lifecycle_rule("noncurrent-source-versions", noncurrent_version_expiration=Duration.days(90))],
            what="Source bucket",
        )
        bucket.node.default_child.add_property_override(
            "NotificationConfiguration.EventBridgeConfiguration.EventBridgeEnabled", True
        )
        return bucket

    def _bucket(
        self, id_: str, log_prefix: str, *, versioned: bool, rules: Sequence[s3.LifecycleRule], what: str
    ) -> s3.Bucket:
        bucket = kms_bucket(
            self._scope,
            id_,
            key=self.key,
            access_logs_bucket=self._access_logs,
            access_logs_prefix=f"{self._access_logs_prefix}{log_prefix}",
            removal_policy=self._removal_policy,
            lifecycle_rules=rules,
            versioned=versioned,
        )
        if self._access_logs is None:
            compliance.acknowledge(
                bucket,
                "AwsSolutions-S1",
                f"{what}: no access_logs_bucket was given; CodePipeline and CodeBuild access to it is recorded by "
                "CloudTrail (management events) and every object is written by the pipeline's own role.",
            )
        return bucket
