"""ARN helpers shared by the construct library (no construct here)."""

from __future__ import annotations

from aws_cdk import Aws, Fn, Token


def s3_object_arn(uri: str) -> str:
    """IAM ARN of the object at ``s3://bucket/key`` (also when ``uri`` is a token, e.g. a stack parameter)."""
    if Token.is_unresolved(uri):
        return Fn.join("", [f"arn:{Aws.PARTITION}:s3:::", Fn.select(1, Fn.split("s3://", uri))])
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not uri.startswith("s3://") or not bucket or not key or key.endswith("/"):
        raise ValueError(f"expected the s3://bucket/key URI of one object, got {uri!r}")
    return f"arn:{Aws.PARTITION}:s3:::{bucket}/{key}"
