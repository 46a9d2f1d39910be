"""Helpers shared by the stacks: removal policy, log retention and tags from the config."""

from __future__ import annotations

from aws_cdk import RemovalPolicy, Tags
from aws_cdk import aws_logs as logs
from constructs import IConstruct

from platform_config import PlatformConfig

# CloudWatch Logs' allowed retention periods, in days, and their RetentionDays members.
_RETENTION = {
    1: "ONE_DAY", 3: "THREE_DAYS", 5: "FIVE_DAYS", 7: "ONE_WEEK", 14: "TWO_WEEKS", 30: "ONE_MONTH",
    60: "TWO_MONTHS", 90: "THREE_MONTHS", 120: "FOUR_MONTHS", 150: "FIVE_MONTHS", 180: "SIX_MONTHS",
    365: "ONE_YEAR", 400: "THIRTEEN_MONTHS", 545: "EIGHTEEN_MONTHS", 731: "TWO_YEARS", 1827: "FIVE_YEARS",
    3653: "TEN_YEARS",
}


def removal_policy(config: PlatformConfig) -> RemovalPolicy:
    return RemovalPolicy.DESTROY if config.removal_policy == "destroy" else RemovalPolicy.RETAIN


def log_retention(config: PlatformConfig) -> logs.RetentionDays:
    """The config's retention (validated against CloudWatch's allowed values) as a RetentionDays member."""
    return getattr(logs.RetentionDays, _RETENTION[config.log_retention_days])


def tag(scope: IConstruct, config: PlatformConfig, model: str | None = None) -> None:
    """Cost-allocation tags on every taggable resource below ``scope``."""
    tags = Tags.of(scope)
    tags.add("project", config.project)
    tags.add("environment", config.environment)
    tags.add("cost-center", config.tags.cost_center)
    if config.tags.owner:
        tags.add("owner", config.tags.owner)
    tags.add("model", model or "shared")
