"""Glue catalog database, PySpark ETL job (Glue 5.0), crawler over the curated zone, and the workflow that runs them."""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path
from typing import Mapping, Optional, Sequence

import jsii
from aws_cdk import ArnFormat, Duration, Fn, RemovalPolicy, Stack, Token
from aws_cdk import aws_events as events
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from mlops_constructs import compliance
from mlops_constructs.storage import allow_cloudwatch_logs

#: Name of the zip that carries the job's extra modules (constant, so that the asset hash depends on content only).
PY_MODULES_ZIP = "python_modules.zip"
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # earliest timestamp a zip entry can hold


def package_python_modules(modules: Sequence[Path], out_dir: Path) -> Path:
    """Write ``out_dir/python_modules.zip`` holding each ``.py`` module at the archive root; return its path.

    Glue puts every ``--extra-py-files`` object on the Python path under the object's own name. CDK uploads a file
    asset as ``<hash>.py``, which would make ``import etl_transform`` fail (aws/aws-cdk#20481); a zip on ``sys.path``
    is imported from by ``zipimport`` under the names inside it, whatever the zip itself is called. The archive is
    byte-reproducible (sorted entries, fixed timestamps and permissions, stored uncompressed so no zlib version can
    change the bytes): the asset hash changes only when a module does.
    """
    modules = [Path(m) for m in modules]
    names = [m.name for m in modules]
    for module in modules:
        if module.suffix != ".py" or not module.is_file():
            raise ValueError(f"GlueEtl extra_python_files must be existing .py modules, got {module}")
    if len(set(names)) != len(names):
        raise ValueError(f"GlueEtl extra_python_files must have distinct file names, got {sorted(names)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / PY_MODULES_ZIP
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED) as archive:
        for module in sorted(modules, key=lambda m: m.name):
            info = zipfile.ZipInfo(module.name, date_time=_ZIP_EPOCH)
            info.create_system = 3  # Unix, so that external_attr means the same everywhere
            info.external_attr = 0o100644 << 16  # regular file, rw-r--r--
            info.compress_type = zipfile.ZIP_STORED
            archive.writestr(info, module.read_bytes())
    return target


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

    Physical names: only the job (``job_name``, matched by the model stacks' EventBridge rules) and
    the workflow (same name, for ``aws glue start-workflow-run``) have fixed names; both are deleted with the stack and
    carry the prefix and dataset, so no other environment or dataset can hold them. The database gets a readable name
    for Athena users and is deleted with the stack (catalog metadata only: the crawler rebuilds it from the retained
    curated zone), so a redeploy after a delete does not meet a leftover. Everything else (security configuration,
    crawler, triggers, roles) is named by CDK/CloudFormation, and the retained log groups are named after the
    generated role names, so a redeploy never finds a retained group of the same name.

    :param name_prefix: prefix of the default job, workflow and database names.
    :param dataset: dataset (table) name; also the S3 prefix in raw and curated zones.
    :param raw_bucket: raw zone. Must send events to EventBridge if ``trigger_on_raw_upload``.
    :param curated_bucket: curated zone.
    :param encryption_key: key for job output, logs and bookmarks (Glue security configuration). Its key policy must let
        CloudWatch Logs of this account use it (done here for a key of the same stack).
    :param job_name: name of the job and of the workflow. Default: ``<name_prefix>-etl-<dataset>``.
    :param raw_prefix / curated_prefix / quarantine_prefix: key prefixes of the dataset in the raw and curated
        buckets. Default: ``<dataset>/``, ``<dataset>/``, ``quarantine/<dataset>/``.
    :param database: Glue catalog database to crawl into (share one between several datasets). Default: a new one.
    :param database_name: name of the new database. Default: ``<name_prefix>`` with ``-`` replaced by ``_``.
    :param script: job entry point (required; the platform's is ``glue_jobs/etl_job.py``).
    :param extra_python_files: ``.py`` modules the script imports (required; the platform's:
        ``glue_jobs/etl_transform.py``). They are
        shipped in one deterministic zip through ``--extra-py-files`` (see ``package_python_modules``).
    :param worker_type: Default: G.1X. :param number_of_workers: Default: 2.
    :param timeout: Default: 60 minutes. :param max_reject_ratio: fail the run above this share of rejected rows.
    :param schedule: EventBridge schedule expression. Default: none.
    :param trigger_on_raw_upload: start on ``Object Created`` in the raw dataset prefix. Default: True.
    :param log_retention: retention of the job's and the crawler's log groups. Default: 90 days.
    :param removal_policy: of the log groups. Default: RETAIN.
    :param extra_arguments: more job arguments. Default: none.
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
        job_name: Optional[str] = None,
        raw_prefix: Optional[str] = None,
        curated_prefix: Optional[str] = None,
        quarantine_prefix: Optional[str] = None,
        database: Optional[glue.IDatabase] = None,
        database_name: Optional[str] = None,
        script: Path,
        extra_python_files: Sequence[Path],
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
        if database is not None and database_name is not None:
            raise ValueError("GlueEtl takes either database or database_name, not both")
        self.dataset = dataset
        job_name = job_name or f"{name_prefix}-etl-{dataset}"
        self.raw_prefix = raw_prefix or f"{dataset}/"
        self.curated_prefix = curated_prefix or f"{dataset}/"
        self.quarantine_prefix = quarantine_prefix or f"quarantine/{dataset}/"
        for label, value in (("raw_prefix", self.raw_prefix), ("curated_prefix", self.curated_prefix),
                             ("quarantine_prefix", self.quarantine_prefix)):
            if not value.endswith("/") or value.startswith("/"):
                raise ValueError(f"GlueEtl {label} must be a key prefix like 'name/' (no leading '/'), got {value!r}")
        stack = Stack.of(self)

        if database is None:
            database = glue.Database(
                self,
                "Database",
                database_name=database_name or name_prefix.replace("-", "_"),
                description=f"Curated datasets of {name_prefix}",
            )
            # Catalog metadata only (the crawler rebuilds it from the retained curated zone). A retained database
            # would make the next deploy after a stack delete fail on its fixed name.
            database.apply_removal_policy(RemovalPolicy.DESTROY)
        self.database: glue.IDatabase = database
        db_name = database.database_name

        # No fixed name: nothing outside this construct refers to it, and a generated one never collides (CDK derives it
        # from the construct path, which includes the stack name).
        self.security_configuration = glue.SecurityConfiguration(
            self,
            "SecurityConfiguration",
            s3_encryption=glue.S3Encryption.kms(encryption_key),
            cloud_watch_encryption=glue.CloudWatchEncryption.kms(encryption_key),
            job_bookmarks_encryption=glue.JobBookmarksEncryption.client_side_kms(encryption_key),
        )
        security_configuration_name = self.security_configuration.security_configuration_name
        # CloudWatch Logs encrypts the job's and crawler's logs with the key: allow the regional logs service to use it.
        allow_cloudwatch_logs(encryption_key)

        # --- job role: only the dataset prefixes, the key, its own logs --------------------------------------
        self.job_role = iam.Role(
            self,
            "JobRole",
            assumed_by=iam.ServicePrincipal("glue.amazonaws.com"),
            description=f"Glue ETL job {job_name}",
        )
        raw_bucket.grant_read(self.job_role, f"{self.raw_prefix}*")
        curated_bucket.grant_read_write(self.job_role, f"{self.curated_prefix}*")
        curated_bucket.grant_read_write(self.job_role, f"{self.quarantine_prefix}*")
        # Glue's temporary directory for bookmarks and shuffle spill lives in the curated bucket, under _glue_tmp/.
        curated_bucket.grant_read_write(self.job_role, "_glue_tmp/*")
        curated_bucket.grant_delete(self.job_role, "_glue_tmp/*")
        # SSE-KMS output (GenerateDataKey/Decrypt) and client-side KMS job bookmarks (Encrypt/Decrypt/GenerateDataKey).
        encryption_key.grant_encrypt_decrypt(self.job_role)

        # Glue 5.0 writes driver/executor logs itself (the continuous-logging arguments are for Glue 4.0 and earlier).
        # With CloudWatch encryption in the security configuration it writes to
        # /aws-glue/jobs/<security configuration>-role/<role name>/{output,error}: create them, with retention and the
        # key. Their names contain the generated role name, so a retained group never blocks a later deployment.
        job_log_prefix = Fn.join("", ["/aws-glue/jobs/", security_configuration_name, "-role/", self.job_role.role_name])
        self.implied_log_groups = [
            logs.LogGroup(
                self,
                f"JobLogs{stream.capitalize()}",
                log_group_name=Fn.join("", [job_log_prefix, f"/{stream}"]),
                retention=log_retention,
                encryption_key=encryption_key,
                removal_policy=removal_policy,
            )
            for stream in ("output", "error")
        ]
        job_log_arns = [
            arn for g in self.implied_log_groups for arn in _log_group_arns(stack, g.log_group_name)
        ]
        self.job_role.add_to_policy(
            iam.PolicyStatement(
                sid="JobLogs",
                # AssociateKmsKey: Glue associates the security configuration's key with the group it writes to.
                actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:AssociateKmsKey"],
                resources=job_log_arns,
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
                *[arn for arn in job_log_arns if arn.endswith(":*")],
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
        # The modules go in one zip: Glue would put a plain ``<hash>.py`` asset on the path under that name.
        modules_zip = package_python_modules(extra_python_files, Path(tempfile.mkdtemp(prefix="glue-py-modules-")))
        self.job = glue.PySparkEtlJob(
            self,
            "Job",
            # Fixed: the model stacks' EventBridge rules match this name (stacks/model_stack.py etl_job_name).
            job_name=job_name,
            description=f"Validate raw {dataset} CSV into partitioned Parquet; quarantine rejected rows",
            glue_version=glue.GlueVersion.V5_0,
            role=self.job_role,
            script=glue.Code.from_asset(str(script)),
            extra_python_files=[glue.Code.from_asset(str(modules_zip))],
            worker_configuration=glue.WorkerConfiguration(
                worker_type=worker_type, number_of_workers=number_of_workers
            ),
            timeout=timeout,
            max_retries=0,
            max_concurrent_runs=1,
            security_configuration=self.security_configuration,
            # Glue 5.0 logs in real time by itself; --enable-continuous-cloudwatch-log and the other continuous-logging
            # arguments are documented for Glue 4.0 and earlier only ("Logging for AWS Glue jobs").
            continuous_logging=glue.ContinuousLoggingProps(enabled=False),
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
        table_arn = stack.format_arn(service="glue", resource="table", resource_name=f"{db_name}/*")
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
        # A crawler whose security configuration encrypts CloudWatch logs writes to
        # /aws-glue/crawlers-role/<role name>-<security configuration name> (stream: the crawler name) and associates
        # the key with it; without encryption it writes to /aws-glue/crawlers. Create the encrypted one (retention,
        # key; named after the generated role, so it cannot collide) and allow both.
        self.crawler_log_group = logs.LogGroup(
            self,
            "CrawlerLogs",
            log_group_name=Fn.join(
                "", ["/aws-glue/crawlers-role/", self.crawler_role.role_name, "-", security_configuration_name]
            ),
            retention=log_retention,
            encryption_key=encryption_key,
            removal_policy=removal_policy,
        )
        crawler_log_arns = [
            *_log_group_arns(stack, self.crawler_log_group.log_group_name),
            *_log_group_arns(stack, "/aws-glue/crawlers"),
        ]
        self.crawler_role.add_to_policy(
            iam.PolicyStatement(
                sid="CrawlerLogs",
                actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:AssociateKmsKey"],
                resources=crawler_log_arns,
            )
        )
        compliance.acknowledge_wildcard_resources(
            self.crawler_role,
            [
                table_arn,
                *[arn for arn in crawler_log_arns if arn.endswith(":*")],
                curated_bucket.arn_for_objects(f"{self.curated_prefix}*"),
            ],
            "The crawler reads the curated dataset prefix, creates/updates the tables it discovers in its own "
            "database, and writes the streams of its own log group (or of /aws-glue/crawlers, named by the service).",
        )
        compliance.acknowledge_wildcard_actions(
            self.crawler_role,
            compliance.S3_READ_ACTIONS + compliance.KMS_ACTIONS,
            "CDK grant actions, limited to the curated dataset prefix and the lake key in the same statements.",
        )
        self.crawler = glue.CfnCrawler(
            self,
            "Crawler",
            # No fixed name: only the workflow's trigger refers to it (by Ref).
            role=self.crawler_role.role_arn,
            database_name=db_name,
            targets=glue.CfnCrawler.TargetsProperty(
                s3_targets=[
                    glue.CfnCrawler.S3TargetProperty(path=curated_bucket.s3_url_for_object(self.curated_prefix))
                ]
            ),
            crawler_security_configuration=security_configuration_name,
            # Crawl everything and update the table in place: the table follows a schema change of the dataset. Glue
            # accepts CRAWL_NEW_FOLDERS_ONLY only with LOG for both behaviours ("Scheduling incremental crawls"), which
            # would leave the table on the old schema. Deleted objects are only logged: partitions are never dropped.
            schema_change_policy=glue.CfnCrawler.SchemaChangePolicyProperty(
                update_behavior="UPDATE_IN_DATABASE", delete_behavior="LOG"
            ),
            recrawl_policy=glue.CfnCrawler.RecrawlPolicyProperty(recrawl_behavior="CRAWL_EVERYTHING"),
        )

        # --- workflow: (event | schedule | on demand) -> job -> crawler --------------------------------------------
        self.workflow = glue.Workflow(
            self,
            "Workflow",
            # Fixed, for operators (aws glue start-workflow-run --name ...); deleted with the stack.
            workflow_name=job_name,
            description=f"Ingest {dataset}: ETL job, then crawler",
            max_concurrent_runs=1,
        )
        self.rules: list[events.Rule] = []
        # Trigger names are left to CloudFormation: nothing refers to them by name.
        if trigger_on_raw_upload or schedule:
            # EVENT triggers listen as soon as they exist (StartOnCreation applies to SCHEDULED/CONDITIONAL only).
            self.workflow.add_event_trigger(
                "Start",
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
            # ON_DEMAND: StartOnCreation must stay unset (true is not supported for ON_DEMAND triggers).
            self.workflow.add_on_demand_trigger("Start", actions=[glue.Action.job(self.job)])
        crawl_after_job = self.workflow.add_conditional_trigger(
            "CrawlAfterJob",
            actions=[glue.Action.crawler(self.crawler)],
            predicate=glue.Predicate(
                conditions=[glue.Condition.job(self.job, glue.JobState.SUCCEEDED)],
            ),
            # Without it CloudFormation creates the trigger deactivated and the crawler never runs.
            start_on_creation=True,
        )
        # CDK adds an event batching condition to every workflow trigger; it only applies to EVENT triggers.
        crawl_after_job.add_property_deletion_override("EventBatchingCondition")

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


def _log_group_arns(stack: Stack, name: str) -> list[str]:
    """IAM resources of a log group: the group itself (logs:AssociateKmsKey, logs:CreateLogGroup) and its streams."""
    arn = stack.format_arn(
        service="logs", resource="log-group", resource_name=name, arn_format=ArnFormat.COLON_RESOURCE_NAME
    )
    return [arn, f"{arn}:*"]
