"""Pipeline storage: the KMS key, artifacts bucket, build log group and (S3 source) source bucket of one pipeline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from mlops_constructs import compliance
from mlops_constructs.storage import allow_cloudwatch_logs, kms_bucket, lifecycle_rule, rotating_key


@dataclass(frozen=True)
class StorageOptions:
    """Where a CI/CD pipeline keeps its artifacts and build logs.

    :param encryption_key: key of the buckets, builds and logs. Default: a new key with rotation.
    :param access_logs_bucket: server access logs of the new buckets. Default: none (acknowledged).
    :param access_logs_prefix: the new buckets log under ``<prefix>artifacts/`` and ``<prefix>source/``. Default:
        ``<pipeline name>-`` (``""`` for the platform pipeline).
    :param removal_policy: of key, buckets and log group. Default: RETAIN.
    :param log_retention: of the build log group. Default: 90 days.
    :param artifact_expiration: pipeline artifacts are deleted after this. Default: 30 days.
    """

    encryption_key: Optional[kms.IKey] = None
    access_logs_bucket: Optional[s3.IBucket] = None
    access_logs_prefix: Optional[str] = None
    removal_policy: RemovalPolicy = RemovalPolicy.RETAIN
    log_retention: logs.RetentionDays = logs.RetentionDays.THREE_MONTHS
    artifact_expiration: Duration = Duration.days(30)


class PipelineStorage:
    """The key, artifacts bucket and build log group of one pipeline, added to ``scope`` itself (ids ``Key``,
    ``ArtifactsBucket``, ``BuildLogs``; ``SourceBucket`` with :meth:`add_source_bucket`), so the construct or stack
    that owns the pipeline keeps its logical IDs.

    :param options: key, access logs, removal policy, retention and expiration (:class:`StorageOptions`).
    :param key_description: of the new key (when ``options`` brings none).
    :param default_access_logs_prefix: when ``options.access_logs_prefix`` is None. Default: ``""``.
    :param key_policy_sid: Sid of the key policy statement that lets CloudWatch Logs use the key. Default: none.
    """

    def __init__(
        self,
        scope: Construct,
        *,
        options: StorageOptions,
        key_description: str,
        default_access_logs_prefix: str = "",
        key_policy_sid: Optional[str] = None,
    ) -> None:
        self._scope = scope
        self._access_logs = options.access_logs_bucket
        prefix = options.access_logs_prefix
        self._access_logs_prefix = default_access_logs_prefix if prefix is None else prefix
        self._removal_policy = options.removal_policy
        self.key: kms.IKey = options.encryption_key or rotating_key(
            scope, "Key", description=key_description, removal_policy=options.removal_policy
        )
        self.artifact_bucket = self._bucket(
            "ArtifactsBucket",
            "artifacts/",
            versioned=False,
            rules=[lifecycle_rule("expire-pipeline-artifacts", expiration=options.artifact_expiration)],
            what="Pipeline artifacts bucket",
        )
        allow_cloudwatch_logs(self.key, sid=key_policy_sid)
        self.log_group = logs.LogGroup(
            scope, "BuildLogs", retention=options.log_retention, encryption_key=self.key,
            removal_policy=options.removal_policy,
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
            reason = (f"{what}: no access_logs_bucket was given; CodePipeline and CodeBuild access to it is recorded "
                      "by CloudTrail (management events) and every object is written by the pipeline's own role.")
            compliance.acknowledge(bucket, "AwsSolutions-S1", reason)
            compliance.checkov_skip(bucket, {"CKV_AWS_18": reason})
        if not versioned:
            compliance.checkov_skip(bucket, {"CKV_AWS_21": f"{what}: CodePipeline writes each artifact once under a "
                                             "new key and expires it; no object is overwritten, so versions keep "
                                             "nothing"})
        return bucket
