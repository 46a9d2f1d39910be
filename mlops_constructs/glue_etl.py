"""Glue catalog database, PySpark ETL job (Glue 5.0), crawler over the curated zone, and the workflow that runs them."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Sequence

import jsii
from aws_cdk import Arn, ArnFormat, Aws, Duration, Fn, RemovalPolicy, Stack, Token
from aws_cdk import aws_events as events
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from mlops_constructs import compliance
from mlops_constructs.storage import allow_cloudwatch_logs

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SCRIPT = REPO_ROOT / "glue_jobs" / "etl_job.py"
DEFAULT_EXTRA_PY_FILES = (REPO_ROOT / "glue_jobs" / "etl_transform.py",)


@jsii.implements(events.IRuleTarget)
class _GlueWorkflowTarget:
    """EventBridge target that notifies a Glue workflow's EVENT trigger (there is no L2 target for it)."""

    def __init__(self, workflow: glue.Workflow, role: iam.IRole) -> None:
        self._workflow = workflow
        self._role = role

    def bind(self, _rule: events.IRule, _id: Optional[str] = None) -> events.RuleTargetConfig:
        return events.RuleTargetConfig(arn=self._workflow.workflow_arn, role=self._role)


class GlueEtl(Construct):
    """Raw CSV -> validated, partitioned Parquet in the curated zone, then a crawler updates the catalog.

    The job reads ``s3://<raw>/<dataset>/``, writes ``s3://<curated>/<dataset>/`` and rejected rows to
    ``s3://<curated>/quarantine/<dataset>/``. A Glue workflow starts it from EventBridge (raw-zone object events and/or a
    schedule) or on demand, then runs the crawler when the job succeeds.

    :param name_prefix: prefix of the physical names (job, workflow, database, crawler, security configuration).
    :param dataset: dataset (table) name; also the S3 prefix in raw and curated zones.
    :param raw_bucket: raw zone. Must send events to EventBridge if ``trigger_on_raw_upload``.
    :param curated_bucket: curated zone.
    :param encryption_key: key for job output, logs and bookmarks (Glue security configuration).
    :param database_name: Glue catalog database. Default: ``<name_prefix>`` with ``-`` replaced by ``_``.
    :param script: job entry point. Default: ``glue_jobs/etl_job.py``.
    :param extra_python_files: modules shipped with ``--extra-py-files``. Default: ``glue_jobs/etl_transform.py``.
    :param worker_type: Default: G.1X. :param number_of_workers: Default: 2.
    :param timeout: Default: 60 minutes. :param max_reject_ratio: fail the run above this share of rejected rows.
    :param schedule: EventBridge schedule expression. Default: none.
    :param trigger_on_raw_upload: start on ``Object Created`` in the raw dataset prefix. Default: True.
    :param log_retention: retention of the job's log groups. Default: 90 days.
    :param removal_policy: of the log groups. Default: RETAIN.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        name_prefix: str,
        dataset: str,
        raw_bucket: s3.IBucket,
        curated_bucket: s3.IBucket,
        encryption_key: kms.IKey,
        database_name: Optional[str] = None,
        script: Optional[Path] = None,
        extra_python_files: Sequence[Path] = DEFAULT_EXTRA_PY_FILES,
        worker_type: glue.WorkerType = glue.WorkerType.G_1X,
        number_of_workers: int = 2,
        timeout: Duration = Duration.minutes(60),
        max_reject_ratio: float = 0.1,
        schedule: Optional[str] = None,
        trigger_on_raw_upload: bool = True,
        log_retention: logs.RetentionDays = logs.RetentionDays.THREE_MONTHS,
        removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
        extra_arguments: Optional[Mapping[str, str]] = None,
    ) -> None:
        super().__init__(scope, id_)
        if not Token.is_unresolved(number_of_workers) and number_of_workers < 2:
            raise ValueError(f"GlueEtl number_of_workers must be at least 2 for Spark jobs, got {number_of_workers}")
        if not 0 <= max_reject_ratio <= 1:
            raise ValueError(f"GlueEtl max_reject_ratio must be within [0, 1], got {max_reject_ratio}")
        self.dataset = dataset
        self.raw_prefix = f"{dataset}/"
        self.curated_prefix = f"{dataset}/"
        self.quarantine_prefix = f"quarantine/{dataset}/"
        stack = Stack.of(self)

        db_name = database_name or name_prefix.replace("-", "_")
        self.database = glue.Database(
            self,
            "Database",
            database_name=db_name,
            description=f"Curated datasets of {name_prefix}",
        )

        self.security_configuration = glue.SecurityConfiguration(
            self,
            "SecurityConfiguration",
            security_configuration_name=f"{name_prefix}-etl",
            s3_encryption=glue.S3Encryption.kms(encryption_key),
            cloud_watch_encryption=glue.CloudWatchEncryption.kms(encryption_key),
            job_bookmarks_encryption=glue.JobBookmarksEncryption.client_side_kms(encryption_key),
        )
        # CloudWatch Logs encrypts the job's logs with the key: allow the regional logs service to use it.
        allow_cloudwatch_logs(encryption_key)

        # --- job role: only the dataset prefixes, the key, its own logs --------------------------------------
        self.job_role = iam.Role(
            self,
            "JobRole",
            assumed_by=iam.ServicePrincipal("glue.amazonaws.com"),
            description=f"Glue ETL job {name_prefix}-etl-{dataset}",
        )
        raw_bucket.grant_read(self.job_role, f"{self.raw_prefix}*")
        curated_bucket.grant_read_write(self.job_role, f"{self.curated_prefix}*")
        curated_bucket.grant_read_write(self.job_role, f"{self.quarantine_prefix}*")
        # Glue's temporary directory for bookmarks and shuffle spill lives in the curated bucket, under _glue_tmp/.
        curated_bucket.grant_read_write(self.job_role, "_glue_tmp/*")
        curated_bucket.grant_delete(self.job_role, "_glue_tmp/*")
        encryption_key.grant_encrypt_decrypt(self.job_role)

        self.log_group = logs.LogGroup(
            self,
            "ContinuousLogs",
            retention=log_retention,
            encryption_key=encryption_key,
            removal_policy=removal_policy,
        )
        # With CloudWatch encryption in the security configuration Glue writes driver output and errors to
        # /aws-glue/jobs/<security configuration>-role/<role name>/{output,error}: create them, with retention.
        implied = f"/aws-glue/jobs/{self.security_configuration.security_configuration_name}-role/"
        self.implied_log_groups = [
            logs.LogGroup(
                self,
                f"JobLogs{stream.capitalize()}",
                log_group_name=Fn.join("", [implied, self.job_role.role_name, f"/{stream}"]),
                retention=log_retention,
                encryption_key=encryption_key,
                removal_policy=removal_policy,
            )
            for stream in ("output", "error")
        ]
        log_groups = [self.log_group, *self.implied_log_groups]
        self.job_role.add_to_policy(
            iam.PolicyStatement(
                sid="JobLogs",
                actions=["logs:CreateLogStream", "logs:PutLogEvents", "logs:AssociateKmsKey"],
                resources=[arn for g in log_groups for arn in (g.log_group_arn, f"{g.log_group_arn}:*")],
            )
        )
        self.job_role.add_to_policy(
            iam.PolicyStatement(
                sid="JobMetrics",
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringEquals": {"cloudwatch:namespace": "Glue"}},
            )
        )
        compliance.acknowledge(
            self.job_role,
            "AwsSolutions-IAM5[Resource::*]",
            "cloudwatch:PutMetricData has no resource type; it is limited to the Glue namespace by condition.",
        )
        compliance.acknowledge_wildcard_resources(
            self.job_role,
            [
                raw_bucket.arn_for_objects(f"{self.raw_prefix}*"),
                curated_bucket.arn_for_objects(f"{self.curated_prefix}*"),
                curated_bucket.arn_for_objects(f"{self.quarantine_prefix}*"),
                curated_bucket.arn_for_objects("_glue_tmp/*"),
                compliance.asset_bucket_objects(self),
                *[f"{g.log_group_arn}:*" for g in log_groups],
            ],
            "Objects under the dataset's own prefixes, the job's script assets and the streams of its own log groups.",
        )
        compliance.acknowledge_wildcard_actions(
            self.job_role,
            compliance.S3_READ_ACTIONS + compliance.S3_WRITE_ACTIONS + compliance.KMS_ACTIONS,
            "CDK grant actions, limited to the prefixes and the key listed in the same statements.",
        )

        args = {
            "--dataset": dataset,
            "--raw_path": raw_bucket.s3_url_for_object(self.raw_prefix),
            "--curated_path": curated_bucket.s3_url_for_object(self.curated_prefix),
            "--quarantine_path": curated_bucket.s3_url_for_object(self.quarantine_prefix),
            "--max_reject_ratio": str(max_reject_ratio),
            "--TempDir": curated_bucket.s3_url_for_object("_glue_tmp/"),
            "--job-bookmark-option": "job-bookmark-enable",
            **(extra_arguments or {}),
        }
        self.job = glue.PySparkEtlJob(
            self,
            "Job",
            job_name=f"{name_prefix}-etl-{dataset}",
            description=f"Validate raw {dataset} CSV into partitioned Parquet; quarantine rejected rows",
            glue_version=glue.GlueVersion.V5_0,
            role=self.job_role,
            script=glue.Code.from_asset(str(script or DEFAULT_SCRIPT)),
            extra_python_files=[glue.Code.from_asset(str(p)) for p in extra_python_files],
            worker_configuration=glue.WorkerConfiguration(
                worker_type=worker_type, number_of_workers=number_of_workers
            ),
            timeout=timeout,
            max_retries=0,
            max_concurrent_runs=1,
            security_configuration=self.security_configuration,
            continuous_logging=glue.ContinuousLoggingProps(
                enabled=True, log_group=self.log_group, log_stream_prefix=f"{dataset}-", quiet=True
            ),
            enable_metrics=True,
            enable_observability_metrics=True,
            default_arguments=args,
        )

        # --- crawler over the curated dataset -------------------------------------------------------------------
        self.crawler_role = iam.Role(
            self,
            "CrawlerRole",
            assumed_by=iam.ServicePrincipal("glue.amazonaws.com"),
            description=f"Glue crawler of curated {dataset}",
        )
        curated_bucket.grant_read(self.crawler_role, f"{self.curated_prefix}*")
        encryption_key.grant_encrypt_decrypt(self.crawler_role)
        catalog_arn = stack.format_arn(service="glue", resource="catalog")
        database_arn = stack.format_arn(service="glue", resource="database", resource_name=db_name)
        table_arn = stack.format_arn(
            service="glue", resource="table", resource_name=f"{db_name}/*"
        )
        self.crawler_role.add_to_policy(
            iam.PolicyStatement(
                sid="Catalog",
                actions=[
                    "glue:GetDatabase",
                    "glue:GetTable",
                    "glue:GetTables",
                    "glue:CreateTable",
                    "glue:UpdateTable",
                    "glue:GetPartition",
                    "glue:GetPartitions",
                    "glue:BatchGetPartition",
                    "glue:CreatePartition",
                    "glue:BatchCreatePartition",
                    "glue:UpdatePartition",
                    "glue:BatchUpdatePartition",
                    "glue:GetSecurityConfiguration",
                ],
                resources=[catalog_arn, database_arn, table_arn],
            )
        )
        crawler_logs = Arn.format(
            {
                "service": "logs",
                "resource": "log-group",
                "resource_name": "/aws-glue/crawlers*",
                "arn_format": ArnFormat.COLON_RESOURCE_NAME,
            },
            stack,
        )
        self.crawler_role.add_to_policy(
            iam.PolicyStatement(
                sid="CrawlerLogs",
                actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:AssociateKmsKey"],
                resources=[crawler_logs],
            )
        )
        compliance.acknowledge_wildcard_resources(
            self.crawler_role,
            [table_arn, crawler_logs, curated_bucket.arn_for_objects(f"{self.curated_prefix}*")],
            "The crawler reads the curated dataset prefix, creates/updates the tables it discovers in its own "
            "database, and logs to the fixed /aws-glue/crawlers log group (named by the service).",
        )
        compliance.acknowledge_wildcard_actions(
            self.crawler_role,
            compliance.S3_READ_ACTIONS + compliance.KMS_ACTIONS,
            "CDK grant actions, limited to the curated dataset prefix and the lake key in the same statements.",
        )
        self.crawler = glue.CfnCrawler(
            self,
            "Crawler",
            name=f"{name_prefix}-curated-{dataset}",
            role=self.crawler_role.role_arn,
            database_name=self.database.database_name,
            targets=glue.CfnCrawler.TargetsProperty(
                s3_targets=[
                    glue.CfnCrawler.S3TargetProperty(path=curated_bucket.s3_url_for_object(self.curated_prefix))
                ]
            ),
            crawler_security_configuration=self.security_configuration.security_configuration_name,
            schema_change_policy=glue.CfnCrawler.SchemaChangePolicyProperty(
                update_behavior="UPDATE_IN_DATABASE", delete_behavior="LOG"
            ),
            recrawl_policy=glue.CfnCrawler.RecrawlPolicyProperty(recrawl_behavior="CRAWL_NEW_FOLDERS_ONLY"),
        )

        # --- workflow: (event | schedule | on demand) -> job -> crawler --------------------------------------------
        self.workflow = glue.Workflow(
            self,
            "Workflow",
            workflow_name=f"{name_prefix}-etl-{dataset}",
            description=f"Ingest {dataset}: ETL job, then crawler",
            max_concurrent_runs=1,
        )
        self.rules: list[events.Rule] = []
        if trigger_on_raw_upload or schedule:
            self.workflow.add_event_trigger(
                "Start",
                name=f"{name_prefix}-etl-{dataset}-start",
                actions=[glue.Action.job(self.job)],
                event_batching_condition=glue.EventBatchingCondition(
                    batch_size=100, batch_window=Duration.minutes(5)
                ),
            )
            notify_role = iam.Role(
                self,
                "EventsToWorkflowRole",
                assumed_by=iam.ServicePrincipal("events.amazonaws.com"),
                description="EventBridge notifies the ETL workflow",
            )
            notify_role.add_to_policy(
                iam.PolicyStatement(actions=["glue:notifyEvent"], resources=[self.workflow.workflow_arn])
            )
            target = _GlueWorkflowTarget(self.workflow, notify_role)
            if trigger_on_raw_upload:
                self.rules.append(
                    events.Rule(
                        self,
                        "OnRawUpload",
                        description=f"Raw {dataset} object created: start the ETL workflow",
                        event_pattern=events.EventPattern(
                            source=["aws.s3"],
                            detail_type=["Object Created"],
                            detail={
                                "bucket": {"name": [raw_bucket.bucket_name]},
                                "object": {"key": [{"prefix": self.raw_prefix}]},
                            },
                        ),
                        targets=[target],
                    )
                )
            if schedule:
                self.rules.append(
                    events.Rule(
                        self,
                        "OnSchedule",
                        description=f"Scheduled {dataset} ingestion",
                        schedule=events.Schedule.expression(schedule),
                        targets=[target],
                    )
                )
        else:
            self.workflow.add_on_demand_trigger(
                "Start", name=f"{name_prefix}-etl-{dataset}-start", actions=[glue.Action.job(self.job)]
            )
        self.workflow.add_conditional_trigger(
            "CrawlAfterJob",
            name=f"{name_prefix}-etl-{dataset}-crawl",
            actions=[glue.Action.crawler(self.crawler)],
            predicate=glue.Predicate(
                conditions=[glue.Condition.job(self.job, glue.JobState.SUCCEEDED)],
            ),
        )

    # --- helpers ---------------------------------------------------------------------------------------------------
    @property
    def job_name(self) -> str:
        return self.job.job_name

    def on_job_succeeded(self, id_: str, **kwargs) -> events.Rule:
        """EventBridge rule on this job's SUCCEEDED state change (e.g. to start a SageMaker pipeline)."""
        return self.job.on_success(id_, **kwargs)

    def metric_job_failures(self, **kwargs):
        """Count of failed runs (from EventBridge job state changes)."""
        return self.job.metric_failure(**kwargs)
