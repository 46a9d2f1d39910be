"""Typed, validated configuration of the platform, one YAML file per environment.

``platform_config.names`` is standard library only (CodeBuild scripts import it); the typed config (pydantic, YAML) is
loaded on first use of ``load_config``, ``PlatformConfig`` and friends.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ConfigError", "load_config", "METRICS", "ModelConfig", "PlatformConfig"]

_LAZY = {
    "ConfigError": "platform_config.loader",
    "load_config": "platform_config.loader",
    "METRICS": "platform_config.schema",
    "ModelConfig": "platform_config.schema",
    "PlatformConfig": "platform_config.schema",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'platform_config' has no attribute {name!r}")
