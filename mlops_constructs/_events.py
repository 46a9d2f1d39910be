"""EventBridge patterns several constructs share."""

from __future__ import annotations

from typing import Sequence, Union

from aws_cdk import aws_events as events
from aws_cdk import aws_s3 as s3


def object_created(bucket: s3.IBucket, keys: Sequence[Union[str, dict]]) -> events.EventPattern:
    """S3's ``Object Created`` event (the bucket's EventBridge notifications must be on) for ``keys``: exact keys or
    filters such as ``{"prefix": "raw/"}``."""
    return events.EventPattern(
        source=["aws.s3"],
        detail_type=["Object Created"],
        detail={"bucket": {"name": [bucket.bucket_name]}, "object": {"key": list(keys)}},
    )
