"""`workstation` stack (optional): a Deep Learning AMI instance for model development, reachable by Session Manager."""

from __future__ import annotations

from typing import Sequence

from aws_cdk import Stack
from constructs import Construct

from mlops_constructs.workstation import DeepLearningWorkstation
from platform_config import PlatformConfig
from stacks.common import LakeReferences, removal_policy


class WorkstationStack(Stack):
    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        config: PlatformConfig,
        lake_refs: LakeReferences,
        pipeline_names: Sequence[str],
        **kwargs,
    ) -> None:
        super().__init__(scope, id_, description=f"{config.prefix()}: Deep Learning AMI workstation", **kwargs)
        buckets, key = lake_refs.import_into(self)
        ws = config.workstation
        self.workstation = DeepLearningWorkstation(
            self,
            "Workstation",
            instance_type=ws.instance_type,
            root_volume_size_gib=ws.volume_gb,
            idle_minutes=ws.idle_minutes,
            read_buckets=[buckets["curated"], buckets["artifacts"]],
            pipeline_arns=[self.format_arn(service="sagemaker", resource="pipeline", resource_name=n) for n in pipeline_names],
            removal_policy=removal_policy(config),
        )
