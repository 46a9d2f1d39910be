"""Glue catalog database and table, PySpark ETL job (Glue 5.0) and the workflow that runs it, for one dataset."""

from __future__ import annotations

import json
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from aws_cdk import ArnFormat, Duration, Fn, RemovalPolicy, Stack, Token
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_events as events
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from mlops_constructs import compliance
from mlops_constructs.glue_catalog import curated_table
from mlops_constructs.glue_network import (
    NETWORK_DESCRIBE_REASON,
    acknowledge_network,
    allow_network,
    network_connections,
)
from mlops_constructs.glue_triggers import EtlTriggers, event_triggers  # noqa: F401 (EtlTriggers importable from here)
from mlops_constructs.network import WorkloadPlacement, workload_placement
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


def schema_argument(dataset_schema: Mapping[str, Any]) -> str:
    """The ``--dataset_schema`` job argument: the document as compact JSON with sorted keys (stable templates)."""
    return json.dumps(dataset_schema, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class DatasetPrefixes:
    """Key prefixes of one dataset (each like ``name/``, no leading ``/``). Default for each: derived from the
    dataset name, ``<dataset>/`` in the raw and curated buckets and ``quarantine/<dataset>/`` in the curated bucket."""

    raw: Optional[str] = None
    curated: Optional[str] = None
    quarantine: Optional[str] = None

    def resolve(self, dataset: str) -> "DatasetPrefixes":
        resolved = DatasetPrefixes(
            raw=self.raw or f"{dataset}/",
            curated=self.curated or f"{dataset}/",
            quarantine=self.quarantine or f"quarantine/{dataset}/",
        )
        for label in ("raw", "curated", "quarantine"):
            value = getattr(resolved, label)
            if not value.endswith("/") or value.startswith("/"):
                raise ValueError(f"GlueEtl {label} prefix must be a key prefix like 'name/' (no leading '/'), "
                                 f"got {value!r}")
        return resolved


class GlueEtl(Construct):
    """One dataset: raw CSV -> validated, partitioned Parquet in the curated zone, declared in the Glue Data Catalog.

    The dataset is its **schema document** (``glue_jobs/dataset_spec.py``: name, CSV format, columns,
    ``max_reject_ratio``): the job receives it whole as ``--dataset_schema`` and the curated table is declared from
    it (Parquet, partitioned by ``ingest_date`` (date), Athena partition projection on that column), so the catalog
    never waits for a crawler. The job reads ``s3://<raw>/<raw prefix>``, writes ``s3://<curated>/<curated prefix>``
    and rejected rows to ``s3://<curated>/<quarantine prefix>``. A Glue workflow starts it from EventBridge (raw-zone
    object events and/or a schedule) or on demand; with ``crawler=True`` a crawler of the declared table then registers
    the new partitions (for engines without partition projection) and never changes the table's schema.

    Physical names: only the job (``job_name``, matched by the model stacks' EventBridge rules) and the workflow (same
    name, for ``aws glue start-workflow-run``) have fixed names; both are deleted with the stack and carry the prefix
    and dataset. The database gets a readable name for Athena users and is deleted with the stack (catalog metadata
    only; the table is declared here again), so a redeploy after a delete does not meet a leftover. Everything else is
    named by CDK/CloudFormation, and the retained log groups are named after the generated role names, so a redeploy
    never finds a retained group of the same name.

    :param name_prefix: prefix of the default job, workflow and database names.
    :param dataset_schema: the dataset schema document (a JSON-compatible mapping, version 1); its ``name`` is the
        dataset and table name. Job arguments may total 260 KB ("Using job parameters in AWS Glue jobs").
    :param raw_bucket: raw zone. Must send events to EventBridge if ``triggers.on_raw_upload``.
    :param curated_bucket: curated zone.
    :param encryption_key: key for job output, logs and bookmarks (Glue security configuration). Its key policy must let
        CloudWatch Logs of this account use it (done here for a key of the same stack).
    :param script: job entry point (required; the platform's is ``glue_jobs/etl_job.py``).
    :param extra_python_files: ``.py`` modules the script imports (required; the platform's: ``glue_jobs/
        dataset_spec.py`` and ``etl_transform.py``), shipped in one deterministic zip through ``--extra-py-files``.
    :param job_name: name of the job and of the workflow. Default: ``<name_prefix>-etl-<dataset>``.
    :param prefixes: the dataset's key prefixes. Default: ``DatasetPrefixes()`` (derived from the dataset name).
    :param triggers: what starts the workflow. Default: ``EtlTriggers()`` (raw upload, no schedule).
    :param database: Glue catalog database of the table (share one between several datasets). Default: a new one.
    :param database_name: name of the new database. Default: ``<name_prefix>`` with ``-`` replaced by ``_``.
    :param worker_type: Default: G.1X. :param number_of_workers: Default: 2. :param timeout: Default: 60 minutes.
    :param crawler: add a crawler after the job that adds partitions to the declared table. Default: False.
    :param log_retention: retention of the job's (and the crawler's) log groups. Default: 90 days.
    :param removal_policy: of the log groups. Default: RETAIN.
    :param extra_arguments: more job arguments. Default: none.
    :param vpc: run the job's workers in this VPC (through Glue ``NETWORK`` connections, one per subnet, see
        :func:`~mlops_constructs.glue_network.network_connections`). Default: none, Glue's own network (public
        service endpoints).
    :param vpc_subnets: the subnets, one per Availability Zone, in the order Glue should try them. Default: the VPC's
        private subnets (CDK's default selection). Only with ``vpc``.
    :param security_groups: of the workers' network interfaces; one must admit itself on all TCP ports (Glue's
        requirement), e.g. ``PlatformNetwork.glue_security_group``. Required with ``vpc``, none without.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        name_prefix: str,
        dataset_schema: Mapping[str, Any],
        raw_bucket: s3.IBucket,
        curated_bucket: s3.IBucket,
        encryption_key: kms.IKey,
        script: Path,
        extra_python_files: Sequence[Path],
        job_name: Optional[str] = None,
        prefixes: DatasetPrefixes = DatasetPrefixes(),
        triggers: EtlTriggers = EtlTriggers(),
        database: Optional[glue.IDatabase] = None,
        database_name: Optional[str] = None,
        worker_type: glue.WorkerType = glue.WorkerType.G_1X,
        number_of_workers: int = 2,
        timeout: Duration = Duration.minutes(60),
        crawler: bool = False,
        log_retention: logs.RetentionDays = logs.RetentionDays.THREE_MONTHS,
        removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
        extra_arguments: Optional[Mapping[str, str]] = None,
        vpc: Optional[ec2.IVpc] = None,
        vpc_subnets: Optional[ec2.SubnetSelection] = None,
        security_groups: Optional[Sequence[ec2.ISecurityGroup]] = None,
    ) -> None:
        super().__init__(scope, id_)
        if not Token.is_unresolved(number_of_workers) and number_of_workers < 2:
            raise ValueError(f"GlueEtl number_of_workers must be at least 2 for Spark jobs, got {number_of_workers}")
        if database is not None and database_name is not None:
            raise ValueError("GlueEtl takes either database or database_name, not both")
        dataset = dataset_schema.get("name") if isinstance(dataset_schema, Mapping) else None
        if not isinstance(dataset, str) or not dataset:
            raise ValueError("GlueEtl dataset_schema must be a dataset schema document with a 'name'")
        self.dataset = dataset
        self.dataset_schema = dataset_schema
        self.job_name_value = job_name or f"{name_prefix}-etl-{dataset}"
        resolved = prefixes.resolve(dataset)
        self.raw_prefix, self.curated_prefix = resolved.raw, resolved.curated
        self.quarantine_prefix = resolved.quarantine
        self._raw_bucket, self._curated_bucket, self._key = raw_bucket, curated_bucket, encryption_key
        self._log_retention, self._removal_policy = log_retention, removal_policy
        #: Where the job's workers run; None: Glue's own network.
        self.placement: Optional[WorkloadPlacement] = workload_placement(
            f"GlueEtl {self.job_name_value}", vpc, vpc_subnets, security_groups
        )
        #: The job's NETWORK connections, in the order Glue tries them (empty without a VPC).
        self.connections: list[glue.CfnConnection] = (
            network_connections(self, self.placement, self.job_name_value) if self.placement else []
        )

        self.database: glue.IDatabase = database or self._new_database(name_prefix, database_name)
        self.table = self._declare_table()
        # No fixed name: nothing outside this construct refers to it, and a generated one never collides (CDK derives it
        # from the construct path, which includes the stack name).
        self.security_configuration = glue.SecurityConfiguration(
            self,
            "SecurityConfiguration",
            s3_encryption=glue.S3Encryption.kms(encryption_key),
            cloud_watch_encryption=glue.CloudWatchEncryption.kms(encryption_key),
            job_bookmarks_encryption=glue.JobBookmarksEncryption.client_side_kms(encryption_key),
        )
        # CloudWatch Logs encrypts the job's and crawler's logs with the key: allow the regional logs service to use it.
        allow_cloudwatch_logs(encryption_key)
        self.job_role = self._job_role()
        self.job = self._job(script, extra_python_files, worker_type, number_of_workers, timeout, extra_arguments)
        self.crawler: Optional[glue.CfnCrawler] = self._crawler() if crawler else None
        self._workflow(triggers)

    # --- catalog ---------------------------------------------------------------------------------------------------
    def _new_database(self, name_prefix: str, database_name: Optional[str]) -> glue.Database:
        database = glue.Database(
            self,
            "Database",
            database_name=database_name or name_prefix.replace("-", "_"),
            description=f"Curated datasets of {name_prefix}",
        )
        # Catalog metadata only (the tables are declared from the schema documents). A retained database would make
        # the next deploy after a stack delete fail on its fixed name.
        database.apply_removal_policy(RemovalPolicy.DESTROY)
        return database

    def _declare_table(self) -> glue.CfnTable:
        """The curated table, from the schema document: Parquet under the curated prefix, partitioned by date."""
        return curated_table(
            self,
            "Table",
            database_name=self.database.database_name,
            dataset_schema=self.dataset_schema,
            location=self._curated_bucket.s3_url_for_object(self.curated_prefix),
            description=f"Curated {self.dataset}, written by the Glue job {self.job_name_value}",
        )

    # --- job -------------------------------------------------------------------------------------------------------
    def _job_role(self) -> iam.Role:
        """The job's role: only the dataset prefixes, the key, its own log groups and Glue metrics."""
        raw_bucket, curated_bucket, stack = self._raw_bucket, self._curated_bucket, Stack.of(self)
        role = iam.Role(
            self,
            "JobRole",
            assumed_by=iam.ServicePrincipal("glue.amazonaws.com"),
            description=f"Glue ETL job {self.job_name_value}",
        )
        raw_bucket.grant_read(role, f"{self.raw_prefix}*")
        curated_bucket.grant_read_write(role, f"{self.curated_prefix}*")
        curated_bucket.grant_read_write(role, f"{self.quarantine_prefix}*")
        # Glue's temporary directory for bookmarks and shuffle spill lives in the curated bucket, under _glue_tmp/.
        curated_bucket.grant_read_write(role, "_glue_tmp/*")
        curated_bucket.grant_delete(role, "_glue_tmp/*")
        # SSE-KMS output (GenerateDataKey/Decrypt) and client-side KMS job bookmarks (Encrypt/Decrypt/GenerateDataKey).
        self._key.grant_encrypt_decrypt(role)

        # Glue 5.0 writes driver/executor logs itself (the continuous-logging arguments are for Glue 4.0 and earlier).
        # With CloudWatch encryption in the security configuration it writes to
        # /aws-glue/jobs/<security configuration>-role/<role name>/{output,error}: create them, with retention and the
        # key. Their names contain the generated role name, so a retained group never blocks a later deployment.
        security_configuration_name = self.security_configuration.security_configuration_name
        job_log_prefix = Fn.join("", ["/aws-glue/jobs/", security_configuration_name, "-role/", role.role_name])
        self.implied_log_groups = [
            self._log_group(f"JobLogs{stream.capitalize()}", Fn.join("", [job_log_prefix, f"/{stream}"]))
            for stream in ("output", "error")
        ]
        job_log_arns = [arn for g in self.implied_log_groups for arn in _log_group_arns(stack, g.log_group_name)]
        role.add_to_policy(
            iam.PolicyStatement(
                sid="JobLogs",
                # AssociateKmsKey: Glue associates the security configuration's key with the group it writes to.
                actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:AssociateKmsKey"],
                resources=job_log_arns,
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="JobMetrics",
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringEquals": {"cloudwatch:namespace": "Glue"}},
            )
        )
        wildcard_reason = ("cloudwatch:PutMetricData has no resource type; it is limited to the Glue namespace by "
                           "condition.")
        network_wildcards: list[Any] = []
        if self.placement is not None:
            network_wildcards = allow_network(role, self.placement, self.connections)
            wildcard_reason += NETWORK_DESCRIBE_REASON
        compliance.acknowledge(role, "AwsSolutions-IAM5[Resource::*]", wildcard_reason)
        compliance.acknowledge_wildcard_resources(
            role,
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
        acknowledge_network(role, network_wildcards)
        compliance.acknowledge_wildcard_actions(
            role,
            compliance.S3_READ_ACTIONS + compliance.S3_WRITE_ACTIONS + compliance.KMS_ACTIONS,
            "CDK grant actions, limited to the prefixes and the key listed in the same statements.",
        )
        return role

    def _log_group(self, id_: str, name: str) -> logs.LogGroup:
        return logs.LogGroup(
            self,
            id_,
            log_group_name=name,
            retention=self._log_retention,
            encryption_key=self._key,
            removal_policy=self._removal_policy,
        )

    def _job(
        self,
        script: Path,
        extra_python_files: Sequence[Path],
        worker_type: glue.WorkerType,
        number_of_workers: int,
        timeout: Duration,
        extra_arguments: Optional[Mapping[str, str]],
    ) -> glue.PySparkEtlJob:
        args = {
            "--dataset_schema": schema_argument(self.dataset_schema),
            "--raw_path": self._raw_bucket.s3_url_for_object(self.raw_prefix),
            "--curated_path": self._curated_bucket.s3_url_for_object(self.curated_prefix),
            "--quarantine_path": self._curated_bucket.s3_url_for_object(self.quarantine_prefix),
            "--TempDir": self._curated_bucket.s3_url_for_object("_glue_tmp/"),
            "--job-bookmark-option": "job-bookmark-enable",
            **(extra_arguments or {}),
        }
        # The modules go in one zip: Glue would put a plain ``<hash>.py`` asset on the path under that name.
        modules_zip = package_python_modules(extra_python_files, Path(tempfile.mkdtemp(prefix="glue-py-modules-")))
        return glue.PySparkEtlJob(
            self,
            "Job",
            # Fixed: the model stacks' EventBridge rules match this name (stacks/model_stack.py etl_job_name).
            job_name=self.job_name_value,
            description=f"Validate raw {self.dataset} CSV into partitioned Parquet; quarantine rejected rows",
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
            # With a VPC: the NETWORK connections, in the order Glue tries them (glue_network.network_connections).
            connections=[
                glue.Connection.from_connection_name(self, f"JobConnection{i}", c.ref)
                for i, c in enumerate(self.connections, start=1)
            ] or None,
        )

    # --- optional crawler ------------------------------------------------------------------------------------------
    def _crawler(self) -> glue.CfnCrawler:
        """A crawler of the declared table (catalog target) that adds partitions and never changes the schema."""
        curated_bucket, stack = self._curated_bucket, Stack.of(self)
        db_name = self.database.database_name
        self.crawler_role = iam.Role(
            self,
            "CrawlerRole",
            assumed_by=iam.ServicePrincipal("glue.amazonaws.com"),
            description=f"Glue crawler of curated {self.dataset}",
        )
        curated_bucket.grant_read(self.crawler_role, f"{self.curated_prefix}*")
        self._key.grant_encrypt_decrypt(self.crawler_role)
        catalog_arn = stack.format_arn(service="glue", resource="catalog")
        database_arn = stack.format_arn(service="glue", resource="database", resource_name=db_name)
        table_arn = stack.format_arn(service="glue", resource="table", resource_name=f"{db_name}/{self.dataset}")
        self.crawler_role.add_to_policy(
            iam.PolicyStatement(
                sid="Catalog",
                actions=[
                    "glue:GetDatabase", "glue:GetTable", "glue:GetTables", "glue:UpdateTable",
                    "glue:GetPartition", "glue:GetPartitions", "glue:BatchGetPartition", "glue:CreatePartition",
                    "glue:BatchCreatePartition", "glue:UpdatePartition", "glue:BatchUpdatePartition",
                    "glue:GetSecurityConfiguration",
                ],
                resources=[catalog_arn, database_arn, table_arn],
            )
        )
        # A crawler whose security configuration encrypts CloudWatch logs writes to
        # /aws-glue/crawlers-role/<role name>-<security configuration name> (stream: the crawler name) and associates
        # the key with it; without encryption it writes to /aws-glue/crawlers. Create the encrypted one (retention,
        # key; named after the generated role, so it cannot collide) and allow both.
        security_configuration_name = self.security_configuration.security_configuration_name
        self.crawler_log_group = self._log_group("CrawlerLogs", Fn.join(
            "", ["/aws-glue/crawlers-role/", self.crawler_role.role_name, "-", security_configuration_name]
        ))
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
            [*[arn for arn in crawler_log_arns if arn.endswith(":*")],
             curated_bucket.arn_for_objects(f"{self.curated_prefix}*")],
            "The crawler reads the curated dataset prefix and writes the streams of its own log group (or of "
            "/aws-glue/crawlers, named by the service).",
        )
        compliance.acknowledge_wildcard_actions(
            self.crawler_role,
            compliance.S3_READ_ACTIONS + compliance.KMS_ACTIONS,
            "CDK grant actions, limited to the curated dataset prefix and the lake key in the same statements.",
        )
        crawler = glue.CfnCrawler(
            self,
            "Crawler",
            # No fixed name: only the workflow's trigger refers to it (by Ref).
            role=self.crawler_role.role_arn,
            # A catalog target crawls the declared table's location and keeps the table.
            targets=glue.CfnCrawler.TargetsProperty(
                catalog_targets=[glue.CfnCrawler.CatalogTargetProperty(
                    database_name=db_name, tables=[self.dataset]
                )]
            ),
            crawler_security_configuration=security_configuration_name,
            # The schema comes from the document: a changed schema is only logged (LOG), never written, and new
            # partitions inherit the table's columns; deleted objects are only logged: partitions are never dropped.
            schema_change_policy=glue.CfnCrawler.SchemaChangePolicyProperty(
                update_behavior="LOG", delete_behavior="LOG"
            ),
            configuration=json.dumps(
                {"Version": 1.0, "CrawlerOutput": {"Partitions": {"AddOrUpdateBehavior": "InheritFromTable"}}},
                sort_keys=True,
            ),
        )
        crawler.add_dependency(self.table)
        return crawler

    # --- workflow: (event | schedule | on demand) -> job [-> crawler] ----------------------------------------------
    def _workflow(self, triggers: EtlTriggers) -> None:
        self.workflow = glue.Workflow(
            self,
            "Workflow",
            # Fixed, for operators (aws glue start-workflow-run --name ...); deleted with the stack.
            workflow_name=self.job_name_value,
            description=f"Ingest {self.dataset}: ETL job" + (", then crawler" if self.crawler else ""),
            max_concurrent_runs=1,
        )
        self.rules: list[events.Rule] = []
        # Trigger names are left to CloudFormation: nothing refers to them by name.
        if triggers.on_raw_upload or triggers.schedule:
            self.rules = event_triggers(self, self.workflow, self.job, triggers, raw_bucket=self._raw_bucket,
                                        raw_prefix=self.raw_prefix, dataset=self.dataset)
        else:
            # ON_DEMAND: StartOnCreation must stay unset (true is not supported for ON_DEMAND triggers).
            self.workflow.add_on_demand_trigger("Start", actions=[glue.Action.job(self.job)])
        if self.crawler is not None:
            crawl_after_job = self.workflow.add_conditional_trigger(
                "CrawlAfterJob",
                actions=[glue.Action.crawler(self.crawler)],
                predicate=glue.Predicate(conditions=[glue.Condition.job(self.job, glue.JobState.SUCCEEDED)]),
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

    def metric_failed_tasks(self, **kwargs):
        """Failed Spark tasks over all runs (job metric ``glue.driver.aggregate.numFailedTasks``), summed per period.
        Default period: 5 minutes."""
        from aws_cdk import aws_cloudwatch as cloudwatch

        options = {"statistic": "Sum", "period": Duration.minutes(5), **kwargs}
        return cloudwatch.Metric(
            namespace="Glue",
            metric_name="glue.driver.aggregate.numFailedTasks",
            dimensions_map={"JobName": self.job.job_name, "JobRunId": "ALL", "Type": "count"},
            **options,
        )

    @staticmethod
    def failed_tasks_alarm_name(job_name: str) -> str:
        """``<job name>-failed-tasks``: the name the platform gives the job's failed-tasks alarm."""
        return f"{job_name}-failed-tasks"

    def add_failed_tasks_alarm(
        self,
        id_: str = "FailedTasksAlarm",
        *,
        threshold: int = 1,
        alarm_name: Optional[str] = None,
        topic=None,
        period: Duration = Duration.minutes(5),
    ):
        """Alarm when the job's failed Spark tasks in one ``period`` reach ``threshold``: the earliest metric signal
        of a failing run (Glue publishes no "run failed" metric; runs that fail before Spark starts, time out or error
        are notified by EventBridge job state rules, e.g. ``FailureEvents``).

        :param threshold: failed tasks per period. Default: 1. :param alarm_name: Default: generated.
        :param topic: an SNS ``ITopic`` the alarm notifies. Default: no action.
        :param period: Default: 5 minutes.
        """
        from aws_cdk import aws_cloudwatch as cloudwatch
        from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions

        if threshold < 1:
            raise ValueError(f"GlueEtl failed-tasks alarm threshold must be at least 1, got {threshold}")
        alarm = cloudwatch.Alarm(
            self,
            id_,
            alarm_name=alarm_name,
            alarm_description=f"Glue job: {threshold}+ failed Spark tasks in {period.to_minutes()} minutes",
            metric=self.metric_failed_tasks(period=period),
            threshold=threshold,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=1,
            datapoints_to_alarm=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        if topic is not None:
            alarm.add_alarm_action(cloudwatch_actions.SnsAction(topic))
        return alarm


def _log_group_arns(stack: Stack, name: str) -> list[str]:
    """IAM resources of a log group: the group itself (logs:AssociateKmsKey, logs:CreateLogGroup) and its streams."""
    arn = stack.format_arn(
        service="logs", resource="log-group", resource_name=name, arn_format=ArnFormat.COLON_RESOURCE_NAME
    )
    return [arn, f"{arn}:*"]
