"""Typed, validated configuration of the platform, one YAML file per environment."""

from platform_config.loader import ConfigError, load_config
from platform_config.schema import METRICS, ModelConfig, PlatformConfig

__all__ = ["ConfigError", "load_config", "METRICS", "ModelConfig", "PlatformConfig"]
