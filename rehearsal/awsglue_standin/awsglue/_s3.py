"""The stand-in's S3 filesystem: boto3 under the process's credentials (the job role), local temp directories."""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

_CLIENT = None


def client():
    global _CLIENT
    if _CLIENT is None:
        import boto3

        _CLIENT = boto3.client("s3")  # credentials, region and endpoint from the environment the runner gives
    return _CLIENT


def split(uri: str) -> tuple[str, str]:
    for scheme in ("s3://", "s3a://", "s3n://"):
        if uri.startswith(scheme):
            bucket, _, key = uri[len(scheme):].partition("/")
            return bucket, key
    raise ValueError(f"{uri!r} is not an S3 URI")


def is_s3(path) -> bool:
    return isinstance(path, str) and path.startswith(("s3://", "s3a://", "s3n://"))


def state_dir() -> Path:
    path = Path(os.environ.get("REHEARSAL_GLUE_STATE_DIR") or tempfile.mkdtemp(prefix="glue-standin-"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def scratch(kind: str) -> Path:
    path = state_dir() / "tmp" / f"{kind}-{uuid.uuid4().hex[:12]}"
    path.mkdir(parents=True)
    return path


def list_objects(uri: str, recurse: bool) -> list[dict]:
    """Objects under ``uri`` (a prefix, or one object); without ``recurse`` only those directly under the prefix."""
    bucket, prefix = split(uri)
    found = []
    for page in client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            key = obj["Key"]
            if key.endswith("/"):
                continue
            rest = key[len(prefix):]
            if not recurse and prefix.endswith("/") and "/" in rest:
                continue
            found.append({"Bucket": bucket, "Key": key, "ETag": obj.get("ETag", ""), "prefix": prefix})
    return found


def download(objects: list[dict], target: Path) -> list[str]:
    files = []
    for i, obj in enumerate(objects):
        base = obj["prefix"][: obj["prefix"].rfind("/") + 1]
        local = target / str(i) / obj["Key"][len(base):]
        local.parent.mkdir(parents=True, exist_ok=True)
        client().download_file(obj["Bucket"], obj["Key"], str(local))
        files.append(str(local))
    return files


def prefix_has_objects(uri: str) -> bool:
    bucket, prefix = split(uri)
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    return bool(client().list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1).get("KeyCount"))


def delete_prefix(uri: str) -> None:
    bucket, prefix = split(uri)
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    for page in client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            client().delete_object(Bucket=bucket, Key=obj["Key"])


def upload_tree(local: Path, uri: str) -> list[str]:
    bucket, prefix = split(uri)
    prefix = prefix.rstrip("/")
    extra = {}
    kms_key = os.environ.get("REHEARSAL_GLUE_S3_KMS_KEY")
    if kms_key:
        extra = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms_key}
    keys = []
    for path in sorted(local.rglob("*")):
        if not path.is_file() or path.name.endswith(".crc"):
            continue
        rel = path.relative_to(local).as_posix()
        key = f"{prefix}/{rel}" if prefix else rel
        client().upload_file(str(path), bucket, key, ExtraArgs=extra or None)
        keys.append(key)
    return keys
