"""Runtime settings, read once from the environment (the CDK construct sets these variables)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ConfigurationError

MODE_MODEL = "model"
MODE_ENDPOINT_PROXY = "endpoint_proxy"
MODES = (MODE_MODEL, MODE_ENDPOINT_PROXY)

DEFAULT_MAX_BATCH_ROWS = 1000
DEFAULT_ENDPOINT_READ_TIMEOUT_SECONDS = 10.0
DEFAULT_ENDPOINT_CONNECT_TIMEOUT_SECONDS = 2.0
DEFAULT_ENDPOINT_MAX_ATTEMPTS = 2


def _positive(env: Mapping[str, str], name: str, default: Any, parse: Callable[[str], Any], noun: str) -> Any:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = parse(raw)
    except ValueError:
        value = None
    if value is None or not value > 0 or value == float("inf"):
        raise ConfigurationError(f"{name} must be a positive {noun}, got {raw!r}")
    return value


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    return _positive(env, name, default, int, "integer")


def _positive_float(env: Mapping[str, str], name: str, default: float) -> float:
    return _positive(env, name, default, float, "number")


@dataclass(frozen=True)
class Settings:
    """Everything the runtime reads from its environment.

    model mode: ``MODEL_S3_URI`` (s3://.../model.tar.gz) or ``MODEL_LOCAL_PATH`` (a directory or a model.tar.gz).
    endpoint_proxy mode: ``ENDPOINT_NAME`` and the feature spec from ``MODEL_METADATA_S3_URI`` or
    ``MODEL_METADATA_LOCAL_PATH`` (model_metadata.json, a directory holding it, or the model.tar.gz).
    """

    mode: str = MODE_MODEL
    model_s3_uri: str | None = None
    model_local_path: str | None = None
    model_version: str = "unknown"
    max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS
    model_nthread: int = 1
    endpoint_name: str | None = None
    metadata_s3_uri: str | None = None
    metadata_local_path: str | None = None
    endpoint_read_timeout_seconds: float = DEFAULT_ENDPOINT_READ_TIMEOUT_SECONDS
    endpoint_connect_timeout_seconds: float = DEFAULT_ENDPOINT_CONNECT_TIMEOUT_SECONDS
    endpoint_max_attempts: int = DEFAULT_ENDPOINT_MAX_ATTEMPTS

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        mode = (env.get("INFERENCE_MODE") or MODE_MODEL).strip().lower()
        if mode not in MODES:
            raise ConfigurationError(f"INFERENCE_MODE must be one of {', '.join(MODES)}, got {mode!r}")
        return cls(
            mode=mode,
            model_s3_uri=env.get("MODEL_S3_URI") or None,
            model_local_path=env.get("MODEL_LOCAL_PATH") or None,
            model_version=(env.get("MODEL_VERSION") or "").strip() or "unknown",
            max_batch_rows=_positive_int(env, "MAX_BATCH_ROWS", DEFAULT_MAX_BATCH_ROWS),
            model_nthread=_positive_int(env, "MODEL_NTHREAD", 1),
            endpoint_name=env.get("ENDPOINT_NAME") or None,
            metadata_s3_uri=env.get("MODEL_METADATA_S3_URI") or None,
            metadata_local_path=env.get("MODEL_METADATA_LOCAL_PATH") or None,
            endpoint_read_timeout_seconds=_positive_float(
                env, "ENDPOINT_READ_TIMEOUT_SECONDS", DEFAULT_ENDPOINT_READ_TIMEOUT_SECONDS
            ),
            endpoint_connect_timeout_seconds=_positive_float(
                env, "ENDPOINT_CONNECT_TIMEOUT_SECONDS", DEFAULT_ENDPOINT_CONNECT_TIMEOUT_SECONDS
            ),
            endpoint_max_attempts=_positive_int(env, "ENDPOINT_MAX_ATTEMPTS", DEFAULT_ENDPOINT_MAX_ATTEMPTS),
        )

    @property
    def is_configured(self) -> bool:
        """Whether there is enough configuration to attempt loading (used to decide eager init at import)."""
        if self.mode == MODE_MODEL:
            return bool(self.model_s3_uri or self.model_local_path)
        return bool(self.endpoint_name)

    def validate(self) -> None:
        if self.mode == MODE_MODEL:
            if bool(self.model_s3_uri) == bool(self.model_local_path):
                raise ConfigurationError("model mode needs exactly one of MODEL_S3_URI or MODEL_LOCAL_PATH")
        else:
            if not self.endpoint_name:
                raise ConfigurationError("endpoint_proxy mode needs ENDPOINT_NAME")
            if bool(self.metadata_s3_uri) == bool(self.metadata_local_path):
                raise ConfigurationError(
                    "endpoint_proxy mode needs exactly one of MODEL_METADATA_S3_URI or MODEL_METADATA_LOCAL_PATH"
                )
