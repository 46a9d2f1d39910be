"""`data` stack: the lake (buckets, key, access logs) and Glue (database, ETL job, crawler, workflow)."""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_glue as glue
from constructs import Construct

from mlops_constructs import DataLake, GlueEtl
from platform_config import PlatformConfig
from platform_config.names import Names
from stacks import code_locations as code
from stacks.common import LakeReferences, log_retention, removal_policy
from stacks.model_stack import etl_job_name


class DataStack(Stack):
    def __init__(self, scope: Construct, id_: str, *, config: PlatformConfig, **kwargs) -> None:
        super().__init__(scope, id_, description=f"{config.prefix()}: data lake and Glue ETL", **kwargs)
        lake_cfg = config.data_lake
        self.lake = DataLake(
            self,
            "DataLake",
            removal_policy=removal_policy(config),
            noncurrent_version_expiration=Duration.days(lake_cfg.noncurrent_version_expiration_days),
            raw_transition_to_ia=Duration.days(lake_cfg.raw_transition_to_ia_days),
        )
        self.etl = GlueEtl(
            self,
            "Etl",
            name_prefix=config.prefix(),
            dataset=lake_cfg.dataset,
            # The one fixed Glue name another system needs: the model stacks' EventBridge rules match it.
            job_name=etl_job_name(config),
            script=code.GLUE_SCRIPT,
            extra_python_files=code.GLUE_MODULES,
            raw_prefix=Names.raw_prefix(lake_cfg.dataset),
            curated_prefix=Names.curated_prefix(lake_cfg.dataset),
            quarantine_prefix=Names.quarantine_prefix(lake_cfg.dataset),
            raw_bucket=self.lake.raw_bucket,
            curated_bucket=self.lake.curated_bucket,
            encryption_key=self.lake.key,
            worker_type=getattr(glue.WorkerType, lake_cfg.etl_worker_type.replace(".", "_", 1)),
            number_of_workers=lake_cfg.etl_workers,
            timeout=Duration.minutes(lake_cfg.etl_timeout_minutes),
            schedule=lake_cfg.etl_schedule,
            trigger_on_raw_upload=lake_cfg.etl_on_raw_upload,
            log_retention=log_retention(config),
            removal_policy=removal_policy(config),
        )
        self.lake_refs = LakeReferences(self, config.names, self.lake.buckets, self.lake.key)
