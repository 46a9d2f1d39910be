"""S3 data lake: raw, curated and artifacts zones, one customer-managed KMS key, and an access-log bucket."""

from __future__ import annotations

from typing import Optional

from aws_cdk import Duration, RemovalPolicy, Token
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from mlops_constructs.storage import access_logs_bucket, kms_bucket, rotating_key

ZONES = ("raw", "curated", "artifacts")


class DataLake(Construct):
    """Three encrypted, versioned, TLS-only buckets (raw, curated, artifacts) and a server access-log bucket.

    Defaults are the safe ones: a new KMS key with yearly rotation, ``RemovalPolicy.RETAIN`` for buckets and key,
    block all public access, TLS only, server access logs, lifecycle rules for noncurrent versions and incomplete
    multipart uploads, and EventBridge notifications on the raw zone (so object events can start the ETL).

    :param encryption_key: key for every zone. Default: a new customer-managed key with rotation.
    :param removal_policy: what happens to buckets and key when the stack is deleted. Default: RETAIN.
        With DESTROY, CloudFormation deletes only empty buckets: empty them first (nothing deletes data for you).
    :param noncurrent_version_expiration: delete noncurrent object versions after this long. Default: 90 days.
    :param raw_transition_to_ia: move raw objects to S3 Standard-IA after this long. Default: 30 days.
    :param access_log_expiration: delete server access logs after this long. Default: 365 days.
    :param incomplete_upload_expiration: abort incomplete multipart uploads after this long. Default: 7 days.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        encryption_key: Optional[kms.IKey] = None,
        removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
        noncurrent_version_expiration: Duration = Duration.days(90),
        raw_transition_to_ia: Duration = Duration.days(30),
        access_log_expiration: Duration = Duration.days(365),
        incomplete_upload_expiration: Duration = Duration.days(7),
    ) -> None:
        super().__init__(scope, id_)
        days = noncurrent_version_expiration.to_days()
        if not Token.is_unresolved(days) and days < 1:
            raise ValueError(f"DataLake noncurrent_version_expiration must be at least 1 day, got {days}")
        ia_days = raw_transition_to_ia.to_days()
        if not Token.is_unresolved(ia_days) and ia_days < 30:
            raise ValueError(
                f"DataLake raw_transition_to_ia must be at least 30 days (S3 Standard-IA minimum), got {ia_days}"
            )

        self.key: kms.IKey = encryption_key or rotating_key(
            self, "Key", description="Data lake key: raw, curated and artifacts zones", removal_policy=removal_policy
        )

        # Server access logs cannot be delivered to a bucket encrypted with SSE-KMS: S3-managed keys are the only
        # option for the target bucket (S3 user guide, "Enabling Amazon S3 server access logging").
        self.access_logs_bucket = access_logs_bucket(
            self,
            "AccessLogs",
            removal_policy=removal_policy,
            expiration=access_log_expiration,
            incomplete_upload_expiration=incomplete_upload_expiration,
        )

        self.buckets: dict[str, s3.Bucket] = {}
        for zone in ZONES:
            rules = [
                s3.LifecycleRule(
                    id="noncurrent-versions",
                    noncurrent_version_expiration=noncurrent_version_expiration,
                    abort_incomplete_multipart_upload_after=incomplete_upload_expiration,
                )
            ]
            if zone == "raw":
                rules.append(
                    s3.LifecycleRule(
                        id="raw-to-infrequent-access",
                        transitions=[
                            s3.Transition(
                                storage_class=s3.StorageClass.INFREQUENT_ACCESS,
                                transition_after=raw_transition_to_ia,
                            )
                        ],
                    )
                )
            self.buckets[zone] = kms_bucket(
                self,
                zone.capitalize(),
                key=self.key,
                access_logs_bucket=self.access_logs_bucket,
                access_logs_prefix=f"{zone}/",
                removal_policy=removal_policy,
                lifecycle_rules=rules,
            )
            if zone == "raw":
                # Native EventBridge notifications (NotificationConfiguration), not the custom-resource Lambda that
                # ``event_bridge_enabled=True`` deploys: one Lambda and one managed policy fewer.
                cfn = self.buckets[zone].node.default_child
                cfn.add_property_override("NotificationConfiguration.EventBridgeConfiguration.EventBridgeEnabled", True)

    @property
    def raw_bucket(self) -> s3.Bucket:
        return self.buckets["raw"]

    @property
    def curated_bucket(self) -> s3.Bucket:
        return self.buckets["curated"]

    @property
    def artifacts_bucket(self) -> s3.Bucket:
        return self.buckets["artifacts"]

    def bucket(self, zone: str) -> s3.Bucket:
        """The bucket of ``zone`` (one of raw, curated, artifacts)."""
        if zone not in self.buckets:
            raise ValueError(f"DataLake has no zone {zone!r}; use one of {list(ZONES)}")
        return self.buckets[zone]

    def grant_read(self, zone: str, grantee: iam.IGrantable, objects_key_pattern: str = "*") -> iam.Grant:
        """Read objects of a zone (and decrypt with the lake key)."""
        return self.bucket(zone).grant_read(grantee, objects_key_pattern)

    def grant_write(self, zone: str, grantee: iam.IGrantable, objects_key_pattern: str = "*") -> iam.Grant:
        """Write objects to a zone (and encrypt with the lake key). No delete."""
        return self.bucket(zone).grant_put(grantee, objects_key_pattern)

    def grant_read_write(self, zone: str, grantee: iam.IGrantable, objects_key_pattern: str = "*") -> iam.Grant:
        """Read and write objects of a zone. No delete."""
        self.grant_read(zone, grantee, objects_key_pattern)
        return self.grant_write(zone, grantee, objects_key_pattern)

    def metric_bucket_size(self, zone: str, period: Duration = Duration.days(1)) -> cloudwatch.Metric:
        """Daily storage size of a zone (S3 storage metrics; StandardStorage)."""
        return self._storage_metric(zone, "BucketSizeBytes", "StandardStorage", period)

    def metric_number_of_objects(self, zone: str, period: Duration = Duration.days(1)) -> cloudwatch.Metric:
        """Daily object count of a zone."""
        return self._storage_metric(zone, "NumberOfObjects", "AllStorageTypes", period)

    def _storage_metric(self, zone: str, name: str, storage_type: str, period: Duration) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace="AWS/S3",
            metric_name=name,
            dimensions_map={"BucketName": self.bucket(zone).bucket_name, "StorageType": storage_type},
            statistic="Average",
            period=period,
        )
