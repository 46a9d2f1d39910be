"""`data` stack: the lake (buckets, key, access logs), per dataset Glue (table, ETL job, workflow, triggers) and the
ETL job's alarm (the one alarm on it: model stacks graph the job but do not alarm on it)."""

from __future__ import annotations

from typing import Optional

from aws_cdk import Duration, Fn, Stack
from aws_cdk import aws_glue as glue
from aws_cdk import aws_sns as sns
from constructs import Construct

from mlops_constructs import DataLake, GlueEtl
from mlops_constructs.glue_etl import DatasetPrefixes, EtlTriggers
from platform_config import PlatformConfig
from platform_config.names import Names
from stacks import code_locations as code
from stacks.common import LakeReferences, NetworkImports, alarm_topic_export, log_retention, removal_policy


class DataStack(Stack):
    """The environment's lake and ETL. With ``shared`` (the stack exporting the alarm topic), each ETL job's
    failed-tasks alarm (``data_lake.etl_failed_tasks_alarm``) notifies the topic; without, the jobs have no alarm.
    With ``network.mode`` create or existing, the jobs run in the shared stack's VPC (its exports)."""

    def __init__(
        self, scope: Construct, id_: str, *, config: PlatformConfig, shared: Optional[Stack] = None, **kwargs
    ) -> None:
        super().__init__(scope, id_, description=f"{config.prefix()}: data lake and Glue ETL", **kwargs)
        lake_cfg = config.data_lake
        self.lake = DataLake(
            self,
            "DataLake",
            removal_policy=removal_policy(config),
            noncurrent_version_expiration=Duration.days(lake_cfg.noncurrent_version_expiration_days),
            raw_transition_to_ia=Duration.days(lake_cfg.raw_transition_to_ia_days),
        )
        # network.mode create/existing: every Glue job runs in the shared stack's VPC, on its Glue security group.
        network = NetworkImports.of(self, config, shared)
        # One ETL (job, table, workflow, triggers) per dataset, all in one catalog database (the first ETL's). The first
        # dataset keeps the construct id "Etl" (the logical IDs of the single-dataset template); the others are
        # "Etl<Name>". Keep the first dataset first: a new first one would replace the fixed-name job and workflow.
        self.etls: dict[str, GlueEtl] = {}
        for index, dataset in enumerate(config.datasets):
            self.etls[dataset.name] = GlueEtl(
                self,
                "Etl" if index == 0 else "Etl" + "".join(p.capitalize() for p in dataset.name.split("_")),
                name_prefix=config.prefix(),
                dataset_schema=dataset.schema_document(),
                # The fixed Glue name another system needs: the model stacks' EventBridge rules match it.
                job_name=config.names.etl_job(dataset.name),
                script=code.GLUE_SCRIPT,
                extra_python_files=code.GLUE_MODULES,
                prefixes=DatasetPrefixes(
                    raw=Names.raw_prefix(dataset.name),
                    curated=Names.curated_prefix(dataset.name),
                    quarantine=Names.quarantine_prefix(dataset.name),
                ),
                triggers=EtlTriggers(on_raw_upload=dataset.triggers.raw_upload, schedule=dataset.triggers.schedule),
                database=self.etls[config.datasets[0].name].database if index else None,
                database_name=None if index else config.names.glue_database,
                raw_bucket=self.lake.raw_bucket,
                curated_bucket=self.lake.curated_bucket,
                encryption_key=self.lake.key,
                worker_type=getattr(glue.WorkerType, lake_cfg.etl_worker_type.replace(".", "_", 1)),
                number_of_workers=lake_cfg.etl_workers,
                timeout=Duration.minutes(lake_cfg.etl_timeout_minutes),
                log_retention=log_retention(config),
                removal_policy=removal_policy(config),
                **(network.glue_props() if network else {}),
            )
        #: The first dataset's ETL.
        self.etl = self.etls[config.datasets[0].name]
        self.lake_refs = LakeReferences(self, config.names, self.lake.buckets, self.lake.key)
        # The one alarm on each ETL job (the model stacks only graph it).
        self.etl_alarms = {}
        if shared is not None:
            self.add_stack_dependency(shared)
            topic = sns.Topic.from_topic_arn(self, "AlarmTopic", Fn.import_value(alarm_topic_export(config)))
            for name, etl in self.etls.items():
                self.etl_alarms[name] = etl.add_failed_tasks_alarm(
                    threshold=lake_cfg.etl_failed_tasks_alarm,
                    alarm_name=GlueEtl.failed_tasks_alarm_name(config.names.etl_job(name)),
                    topic=topic,
                )
