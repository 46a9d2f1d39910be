"""Locating the model artifact (docs/CONTRACTS.md): an S3 model.tar.gz, a local model.tar.gz or a directory."""

from __future__ import annotations

import tarfile
import tempfile
from pathlib import Path
from typing import Any

from .errors import ConfigurationError
from .features import ModelMetadata, load_metadata, load_metadata_file

MODEL_FILE = "xgboost-model.json"
SKLEARN_MODEL_FILE = "model.joblib"
METADATA_FILE = "model_metadata.json"
_TMP_PREFIX = "inference-model-"


def parse_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ConfigurationError(f"expected an s3://bucket/key URI, got {uri!r}")
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket or not key or key.endswith("/"):
        raise ConfigurationError(f"expected an s3://bucket/key URI of an object, got {uri!r}")
    return bucket, key


def _s3_client() -> Any:
    import boto3  # imported here: the local-path mode never pays for boto3 at cold start

    return boto3.client("s3")


def download_s3_object(uri: str, dest: Path, s3_client: Any | None = None) -> Path:
    bucket, key = parse_s3_uri(uri)
    client = s3_client or _s3_client()
    try:
        client.download_file(bucket, key, str(dest))
    except Exception as exc:  # botocore ClientError / S3 transfer errors: report with the URI
        raise ConfigurationError(f"cannot download {uri}: {exc}") from exc
    return dest


def _is_tarball(path: Path) -> bool:
    return path.name.endswith((".tar.gz", ".tgz", ".tar"))


def extract_tarball(archive: Path, dest: Path) -> Path:
    """Extract safely (no absolute paths, no '..', no links out of ``dest``, no devices)."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            tar.extractall(dest, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise ConfigurationError(f"cannot extract model archive {archive}: {exc}") from exc
    return dest


def find_file(model_dir: Path, name: str) -> Path | None:
    """``name`` at the artifact root (what SageMaker packs from /opt/ml/model), else one level of nesting."""
    direct = model_dir / name
    if direct.is_file():
        return direct
    matches = sorted(p for p in model_dir.rglob(name) if p.is_file())
    return matches[0] if matches else None


def materialize_model_dir(*, s3_uri: str | None, local_path: str | None, s3_client: Any | None = None) -> Path:
    """Return a directory holding the artifact's files, downloading/extracting into /tmp as needed."""
    if s3_uri:
        work = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX))
        archive = download_s3_object(s3_uri, work / "model.tar.gz", s3_client)
        model_dir = extract_tarball(archive, work / "model")
        archive.unlink(missing_ok=True)  # /tmp is small: keep only the extracted files
        return model_dir
    if not local_path:
        raise ConfigurationError("no model location: set MODEL_S3_URI or MODEL_LOCAL_PATH")
    path = Path(local_path)
    if path.is_dir():
        return path
    if path.is_file() and _is_tarball(path):
        return extract_tarball(path, Path(tempfile.mkdtemp(prefix=_TMP_PREFIX)) / "model")
    raise ConfigurationError(f"MODEL_LOCAL_PATH {local_path!r} is neither a directory nor a model.tar.gz")


def _metadata_from_tarball(archive: Path) -> ModelMetadata:
    try:
        with tarfile.open(archive, "r:*") as tar:
            member = next(
                (m for m in tar.getmembers() if m.isfile() and Path(m.name).name == METADATA_FILE), None
            )
            if member is None:
                raise ConfigurationError(f"{archive} has no {METADATA_FILE}")
            handle = tar.extractfile(member)
            raw = handle.read() if handle else b""
    except (tarfile.TarError, OSError) as exc:
        raise ConfigurationError(f"cannot read {METADATA_FILE} from {archive}: {exc}") from exc
    return load_metadata(raw)


def _metadata_from_path(path: Path) -> ModelMetadata:
    if path.is_dir():
        found = find_file(path, METADATA_FILE)
        if found is None:
            raise ConfigurationError(f"no {METADATA_FILE} under {path}")
        return load_metadata_file(found)
    if path.is_file() and _is_tarball(path):
        return _metadata_from_tarball(path)
    if path.is_file():
        return load_metadata_file(path)
    raise ConfigurationError(f"model metadata path {str(path)!r} does not exist")


def load_feature_metadata(
    *, s3_uri: str | None, local_path: str | None, s3_client: Any | None = None
) -> ModelMetadata:
    """The feature spec for the endpoint proxy: model_metadata.json itself, a directory or the model.tar.gz."""
    if s3_uri:
        _, key = parse_s3_uri(s3_uri)
        work = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX))
        target = work / ("model.tar.gz" if _is_tarball(Path(key)) else METADATA_FILE)
        return _metadata_from_path(download_s3_object(s3_uri, target, s3_client))
    if not local_path:
        raise ConfigurationError("no metadata location: set MODEL_METADATA_S3_URI or MODEL_METADATA_LOCAL_PATH")
    return _metadata_from_path(Path(local_path))
