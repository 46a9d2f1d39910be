"""What every rehearsal runner shares: the assembly, the stand-in cloud, a work directory, S3 staging and ``/opt/ml``."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from rehearsal.assembly import Assembly, RehearsalError
from rehearsal.cloud import Cloud

OPT_ML = Path("/opt/ml")


@dataclass
class Rehearsal:
    """One rehearsal: the synthesized assembly, the stand-in account (started and deployed), a scratch directory."""

    assembly: Assembly
    cloud: Cloud
    workdir: Path
    python: str = sys.executable  # the interpreter of the service containers' stand-ins
    log: Callable[[str], None] = print
    facts: dict[str, Any] = field(default_factory=dict)  # what the runners found, for the report

    def scratch(self, name: str) -> Path:
        path = self.workdir / name
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        return path


def split_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise RehearsalError(f"{uri!r} is not an S3 URI")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


def download_s3_prefix(s3: Any, uri: str, local_dir: Path) -> list[Path]:
    """Download as SageMaker's ``S3Prefix`` and Glue do: every object whose key starts with the URI's key, at its path
    relative to the prefix's last ``/`` (an exact object key lands under its own file name). Empty: an error."""
    bucket, prefix = split_s3_uri(uri)
    base = prefix[: prefix.rfind("/") + 1]
    local_dir.mkdir(parents=True, exist_ok=True)
    written = []
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            key = obj["Key"]
            if key.endswith("/"):
                continue
            target = local_dir / key[len(base):]
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, key, str(target))
            written.append(target)
    if not written:
        raise RehearsalError(f"nothing to download at {uri}")
    return written


def upload_dir(s3: Any, local_dir: Path, uri: str) -> int:
    """Upload a directory tree under an S3 prefix (as a processing job's S3Upload output does)."""
    bucket, prefix = split_s3_uri(uri)
    prefix = prefix.rstrip("/")
    count = 0
    for path in sorted(local_dir.rglob("*")):
        if path.is_file():
            key = f"{prefix}/{path.relative_to(local_dir).as_posix()}" if prefix else path.relative_to(local_dir).as_posix()
            s3.upload_file(str(path), bucket, key)
            count += 1
    return count


@contextlib.contextmanager
def opt_ml(root: Path) -> Iterator[Path]:
    """Make ``/opt/ml`` the stand-in container directory ``root`` for the duration (a symlink, one step at a time).

    The step scripts run with the container paths the definition gives (``/opt/ml/processing/...``, ``/opt/ml/model``),
    so the rehearsal provides those paths. Refuses to touch an ``/opt/ml`` that is not its own symlink.
    """
    root.mkdir(parents=True, exist_ok=True)
    if OPT_ML.is_symlink():
        OPT_ML.unlink()  # a previous rehearsal's link
    elif OPT_ML.exists():
        raise RehearsalError(f"{OPT_ML} exists and is not the rehearsal's link: the rehearsal will not replace it")
    try:
        OPT_ML.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(root, OPT_ML)
    except PermissionError:
        raise RehearsalError(f"the rehearsal needs to create {OPT_ML} (run it as root, as CI and the workplace do)") from None
    try:
        yield OPT_ML
    finally:
        if OPT_ML.is_symlink():
            OPT_ML.unlink()


def tmpdir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"rehearsal-{prefix}-"))


def clean_env(extra: Optional[dict[str, str]] = None) -> dict[str, str]:
    """A process environment without the developer's AWS settings or the project on PYTHONPATH."""
    keep = {"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "JAVA_HOME", "SPARK_HOME", "PYSPARK_PYTHON", "TZ"}
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update({"PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0", "SAGEMAKER_TELEMETRY_OPT_OUT": "true"})
    env.update(extra or {})
    return env
