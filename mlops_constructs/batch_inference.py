"""Batch inference per model: score a curated partition with the latest approved package, predictions to the lake.

Why a Step Functions state machine (and not a SageMaker pipeline of its own): the run needs the latest *approved*
package at run time (a pipeline can only take it as a parameter or through a Lambda step), a model created from it and
deleted after the transform whatever happens (a pipeline has no "finally"), and a clean "nothing to score yet" end
before the first approval (a pipeline would fail, and alarm, every scheduled day until then). Step Functions' optimized
SageMaker integrations run each job to completion (``.sync``) with the request written here in full, so every
encryption, network and data-processing field is visible in the template and asserted by the tests. The only custom
code is plain Python: ``lambda_src/batch_resolve`` (the plan) and ``sagemaker_steps/batch_scoring.py`` (prepare and
collect), both tested offline.

The run (one execution)::

    Plan (Lambda) --skip--> NothingToScore (Succeed: no approved package or no curated partition yet)
        | score
    Prepare (processing job) -> CreateModel -> Transform (transform job) -> DeleteModel -> Collect (processing job)
                                                   | failed: DeleteModelAfterFailure -> Failed

1. **Plan**: the newest Approved version of the model's package group (the deploy CD's rule), its image, model data
   and environment; the newest ``ingest_date`` partition of the dataset's curated prefix (or the one the execution
   input names, ``{"partition": "YYYY-MM-DD"}``); the run id, job names and S3 locations.
2. **Prepare**: the partition's rows in the endpoint's input contract (``text/csv`` encoded features, per the
   package's own ``model_metadata.json``), each line led by its record key; rows the endpoint would refuse are kept
   aside with their reason and counted, and fail the run above ``max_reject_ratio``.
3. **Transform**: the package served as the endpoint serves it (its ``serve.py``), ``SplitType Line``,
   ``BatchStrategy MultiRecord`` up to ``max_payload_mb``, ``InputFilter $[1:]`` (the key never reaches the model),
   ``JoinSource Input`` and ``OutputFilter $[0,-1]`` (each output line is ``<key>,<prediction>``),
   ``AssembleWith Line``; output and volume encrypted with the lake key; model network isolation.
4. **Collect**: every curated row once, with its key, prediction (or reject reason), the package ARN and version, the
   scored partition and the run id, as Parquet under ``predictions_prefix`` + ``dt=<run date>/``, which the Glue table
   (partition projection on ``dt``) makes readable in Athena at once. A transform output that does not match the rows
   sent fails the run.

Triggers: an EventBridge ``schedule`` and/or ``start_on_events`` patterns (the dataset's Glue job SUCCEEDED, as the
model build pipeline's triggers). Failure: one alarm on the state machine's failed and timed-out executions, to the
alarm topic (this construct is the only owner: a failed job fails the execution; the jobs' roles are not the ones the
shared stack's failure rules watch).

Encryption: processing volumes and outputs, the transform's volume (except instance types with local NVMe storage,
which SageMaker encrypts in hardware and refuses a key for) and output, the predictions, the function's and the state
machine's log groups: KMS. The execution history holds only ARNs, S3 URIs and counts (no rows).

Roles, each least-privilege: the state machine (its own jobs, model and rule only; passes the two roles below), the
plan function (read this group's packages, list this dataset's curated prefix), the processing jobs (read the
partition, the model's artifacts and the script; write this model's batch and predictions prefixes), the model (the
transform: read the model's artifacts and the run's input, write the run's output, pull the framework images).

The job requests and the definition are built in :mod:`mlops_constructs.batch_requests`, the roles of the jobs, the
model and the state machine in :mod:`mlops_constructs.batch_roles`.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from aws_cdk import Aws, CfnMapping, Duration, RemovalPolicy, Stack, Token
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as events_targets
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from mlops_constructs import compliance
from mlops_constructs.batch_requests import (  # noqa: F401 (importable from here too)
    CSV,
    INPUT_FILTER,
    INSTANCE_RE,
    OUTPUT_FILTER,
    BatchRequests,
    has_local_storage,
)
from mlops_constructs.batch_roles import (
    JobGrants,
    grant_state_machine,
    processing_job_role,
    sagemaker_arn,
    transform_model_role,
)
from mlops_constructs.glue_catalog import table_columns
from mlops_constructs.network import WorkloadPlacement, grant_network_interfaces, workload_placement
from mlops_constructs.storage import allow_cloudwatch_logs, rotating_key

HANDLER = "batch_resolve.handler"
SCORING_SCRIPT = "batch_scoring.py"
CODE_EXCLUDES = ["tests", "**/tests", "__pycache__", "**/__pycache__", "*.pyc", "README.md"]
#: Columns collect adds to the curated ones (sagemaker_steps/batch_scoring.ADDED_COLUMNS), with their Glue types.
PREDICTION_COLUMNS = (
    ("record_key", "string"),
    ("prediction", "double"),
    ("reject_reason", "string"),
    ("model_package_arn", "string"),
    ("model_package_version", "int"),
    ("ingest_date", "date"),
    ("run_id", "string"),
    ("scored_at", "string"),
)
#: Partition column of the predictions (the run's date).
DT = "dt"
MAX_JOB_NAME_PREFIX = 30  # lambda_src/batch_resolve: <prefix>-<kind>-<run id> within SageMaker's 63 characters
_JOB_PREFIX_RE = re.compile(r"^[a-z0-9](-*[a-z0-9])*$")


def job_name_prefix(name: str) -> str:
    """The prefix of the run's job and model names (at most 30 characters, lower case): ``name``, or its first 23
    characters and a hash of it when longer (so two long names never share a prefix)."""
    lowered = name.lower()
    if len(lowered) <= MAX_JOB_NAME_PREFIX:
        return lowered
    digest = hashlib.sha256(lowered.encode()).hexdigest()[:6]
    return f"{lowered[:MAX_JOB_NAME_PREFIX - 7].rstrip('-')}-{digest}"


def framework_images(scope: Construct, id_: str = "ImageAccounts") -> dict[str, tuple[str, str]]:
    """framework -> (image URI, ECR repository ARN) of the platform's SageMaker framework images (scikit-learn
    1.2-1 for processing and sklearn models, XGBoost 1.7-1 for xgboost models) in the deploying region, through a
    region -> account mapping from the SageMaker SDK's image config (offline)."""
    from mlops_constructs import sagemaker_definition as sdk
    from sagemaker_steps.pipeline_spec import CONTAINER_FRAMEWORK_VERSIONS

    accounts: dict[str, dict[str, str]] = {}
    for fw, version in sorted(CONTAINER_FRAMEWORK_VERSIONS.items()):
        for region, account in sdk.image_registries(fw, version).items():
            accounts.setdefault(region, {})[fw] = account
    mapping = CfnMapping(scope, id_, mapping=accounts, lazy=False)
    images = {}
    for fw, version in sorted(CONTAINER_FRAMEWORK_VERSIONS.items()):
        repo, tag = sdk.image_repository(fw, version)
        account = mapping.find_in_map(Aws.REGION, fw)
        images[fw] = (f"{account}.dkr.ecr.{Aws.REGION}.{Aws.URL_SUFFIX}/{repo}:{tag}",
                      f"arn:{Aws.PARTITION}:ecr:{Aws.REGION}:{account}:repository/{repo}")
    return images


class BatchInference(Construct):
    """Batch inference of one model (see the module docstring for the run and the design).

    :param name: the model's resource name (``<project>-<env>-<model>``): descriptions, and the job name prefix
        (:func:`job_name_prefix`).
    :param model_package_group_name: the group whose latest Approved version scores.
    :param curated_bucket / curated_prefix: the dataset's curated Parquet (``<dataset>/``, partitions
        ``ingest_date=YYYY-MM-DD/``).
    :param artifacts_bucket / model_artifacts_prefix: where the model build writes (``models/<model>/``): a package
        whose model data is elsewhere is refused (the jobs read only there).
    :param work_prefix: the runs' working files in ``artifacts_bucket`` (``batch/<model>/``).
    :param predictions_prefix: the predictions in ``curated_bucket`` (``predictions/<model>/``).
    :param encryption_key: the lake key (both buckets): job volumes and outputs, the transform's output.
    :param database_name / table_name / dataset_schema: the Glue table of the predictions, its columns the dataset
        schema document's (the curated columns) plus :data:`PREDICTION_COLUMNS`, partitioned by ``dt``.
    :param alarm_topic: where the failure alarm goes.
    :param code_dir: the plan function's code (``lambda_src/batch_resolve``). :param scoring_script: the prepare and
        collect script (``sagemaker_steps/batch_scoring.py``). Required: constructs take code locations as props.
    :param schedule: EventBridge expression of a scheduled run. Default: none.
    :param start_on_events: event patterns that start a run (e.g. the dataset's Glue job SUCCEEDED). Default: none.
    :param instance_type / instance_count / max_payload_mb: of the transform job. Default: ml.m5.large, 1, 6.
    :param processing_instance_type: of prepare and collect. Default: ml.m5.large.
    :param max_reject_ratio: prepare fails when more than this share of the rows cannot be scored. Default 0.05.
    :param processing_image_uri / processing_image_repository_arn: another processing image (Python 3.9+, pyarrow).
        Default: SageMaker's scikit-learn 1.2-1 image of the deploying region.
    :param model_image_repository_arns: ECR repositories the model role pulls the package's image from. Default: the
        platform's framework images (XGBoost 1.7-1 and scikit-learn 1.2-1).
    :param tags: tags of the jobs and models the runs create. Default: none.
    :param vpc / vpc_subnets / security_groups: run the jobs, the model and the function in a VPC (network isolation
        is always on for the jobs and the model). Default: no VPC.
    :param timeout: of a whole run. Default 6 hours. :param job_max_runtime: of each processing job. Default 2 hours.
    :param log_retention / log_encryption_key / removal_policy: of the function's and state machine's log groups
        (and a new key). Default: 90 days, a new customer-managed key with rotation, RETAIN.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        name: str,
        model_package_group_name: str,
        curated_bucket: s3.IBucket,
        curated_prefix: str,
        artifacts_bucket: s3.IBucket,
        model_artifacts_prefix: str,
        work_prefix: str,
        predictions_prefix: str,
        encryption_key: kms.IKey,
        database_name: str,
        table_name: str,
        dataset_schema: Mapping[str, Any],
        alarm_topic: sns.ITopic,
        code_dir: Path,
        scoring_script: Path,
        schedule: Optional[str] = None,
        start_on_events: Sequence[events.EventPattern] = (),
        instance_type: str = "ml.m5.large",
        instance_count: int = 1,
        max_payload_mb: int = 6,
        processing_instance_type: str = "ml.m5.large",
        max_reject_ratio: float = 0.05,
        processing_image_uri: Optional[str] = None,
        processing_image_repository_arn: Optional[str] = None,
        model_image_repository_arns: Optional[Sequence[str]] = None,
        tags: Optional[Mapping[str, str]] = None,
        vpc: Optional[ec2.IVpc] = None,
        vpc_subnets: Optional[ec2.SubnetSelection] = None,
        security_groups: Optional[Sequence[ec2.ISecurityGroup]] = None,
        timeout: Duration = Duration.hours(6),
        job_max_runtime: Duration = Duration.hours(2),
        log_retention: logs.RetentionDays = logs.RetentionDays.THREE_MONTHS,
        log_encryption_key: Optional[kms.IKey] = None,
        removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
    ) -> None:
        super().__init__(scope, id_)
        code_dir, scoring_script = Path(code_dir), Path(scoring_script)
        self._validate(
            name=name, code_dir=code_dir, scoring_script=scoring_script, schedule=schedule,
            prefixes={"curated_prefix": curated_prefix, "model_artifacts_prefix": model_artifacts_prefix,
                      "work_prefix": work_prefix, "predictions_prefix": predictions_prefix},
            instance_types={"instance_type": instance_type, "processing_instance_type": processing_instance_type},
            instance_count=instance_count, max_payload_mb=max_payload_mb, max_reject_ratio=max_reject_ratio,
            image=(processing_image_uri, processing_image_repository_arn), dataset_schema=dataset_schema,
        )
        self.placement: Optional[WorkloadPlacement] = workload_placement("BatchInference", vpc, vpc_subnets,
                                                                         security_groups)
        self.vpc = vpc
        self.name = name
        self.job_name_prefix = job_name_prefix(name)
        self.encryption_key = encryption_key
        self.model_package_group_name = model_package_group_name
        self._tags = [{"Key": k, "Value": v} for k, v in sorted((tags or {}).items())]

        images = framework_images(self)
        self.processing_image_uri = processing_image_uri or images["sklearn"][0]
        processing_repository = processing_image_repository_arn or images["sklearn"][1]
        model_repositories = list(model_image_repository_arns or [uri_arn[1] for uri_arn in images.values()])
        self.scoring_code = s3_assets.Asset(self, "ScoringCode", path=str(scoring_script))

        self.log_key: kms.IKey = log_encryption_key or rotating_key(
            self, "LogKey", description=f"Batch inference logs of {name}", removal_policy=removal_policy
        )
        allow_cloudwatch_logs(self.log_key)

        # S3 locations the roles are scoped to.
        self._objects = {
            "partition": curated_bucket.arn_for_objects(f"{curated_prefix}*"),
            "model": artifacts_bucket.arn_for_objects(f"{model_artifacts_prefix}*"),
            "work": artifacts_bucket.arn_for_objects(f"{work_prefix}*"),
            "predictions": curated_bucket.arn_for_objects(f"{predictions_prefix}*"),
        }
        grants = JobGrants(name=name, job_name_prefix=self.job_name_prefix, encryption_key=encryption_key,
                           objects=self._objects, placement=self.placement, vpc=vpc)
        self.job_role = processing_job_role(
            self, grants, repository=processing_repository, curated_bucket=curated_bucket,
            curated_prefix=curated_prefix, artifacts_bucket=artifacts_bucket,
            model_artifacts_prefix=model_artifacts_prefix, work_prefix=work_prefix, scoring_code=self.scoring_code,
        )
        self.model_role = transform_model_role(self, grants, repositories=model_repositories,
                                               artifacts_bucket=artifacts_bucket, work_prefix=work_prefix)

        self.function = self._plan_function(
            code_dir=code_dir, curated_bucket=curated_bucket, curated_prefix=curated_prefix,
            artifacts_bucket=artifacts_bucket, model_artifacts_prefix=model_artifacts_prefix,
            work_prefix=work_prefix, predictions_prefix=predictions_prefix, log_retention=log_retention,
            removal_policy=removal_policy, vpc=vpc, vpc_subnets=vpc_subnets, security_groups=security_groups,
        )

        #: The state machine's definition (Amazon States Language, tokens unresolved): what the tests and the
        #: rehearsal read.
        self.definition = BatchRequests(
            name=name, plan_function_arn=self.function.function_arn, job_role_arn=self.job_role.role_arn,
            model_role_arn=self.model_role.role_arn, processing_image_uri=self.processing_image_uri,
            scoring_code=self.scoring_code, key_arn=encryption_key.key_arn, placement=self.placement,
            tags=self._tags,
        ).definition(
            instance_type=instance_type, instance_count=instance_count, max_payload_mb=max_payload_mb,
            processing_instance_type=processing_instance_type, max_reject_ratio=max_reject_ratio,
            job_max_runtime=job_max_runtime,
        )
        self.log_group = logs.LogGroup(
            self, "StateMachineLogs", retention=log_retention, encryption_key=self.log_key,
            removal_policy=removal_policy,
        )
        self.role = iam.Role(
            self, "StateMachineRole", assumed_by=iam.ServicePrincipal("states.amazonaws.com"),
            description=f"Batch inference state machine of {name}",
        )
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            # json.dumps, not Stack.to_json_string: the latter drops null values, and ``"ResultPath": null`` (discard
            # a job's description, keep the plan) must stay. The tokens inside are ARNs and names: plain strings that
            # CDK resolves in place (no quote to escape).
            definition_body=sfn.DefinitionBody.from_string(json.dumps(self.definition)),
            role=self.role,
            timeout=timeout,
            tracing_enabled=True,
            logs=sfn.LogOptions(destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=True),
            comment=f"Batch inference of {name} with its latest approved package",
        )
        grant_state_machine(self.role, job_name_prefix=self.job_name_prefix, function=self.function,
                            job_role=self.job_role, model_role=self.model_role, encryption_key=encryption_key)

        #: The table of the predictions (Athena: ``SELECT * FROM <database>.<table> WHERE dt = DATE '...'``).
        self.table = self._table(database_name, table_name, dataset_schema, curated_bucket, predictions_prefix)
        self.rules = self._triggers(schedule, start_on_events)
        self.failure_alarm = self._failure_alarm(alarm_topic)

    # --- validation ------------------------------------------------------------------------------------------------
    @staticmethod
    def _validate(*, name: str, code_dir: Path, scoring_script: Path, schedule: Optional[str],
                  prefixes: Mapping[str, str], instance_types: Mapping[str, str], instance_count: int,
                  max_payload_mb: int, max_reject_ratio: float, image: tuple, dataset_schema: Mapping) -> None:
        if not (code_dir / "batch_resolve.py").is_file():
            raise ValueError(f"BatchInference code_dir {code_dir} has no batch_resolve.py (handler {HANDLER})")
        if not scoring_script.is_file():
            raise ValueError(f"BatchInference scoring_script {scoring_script} is not a file")
        if Token.is_unresolved(name) or not _JOB_PREFIX_RE.match(job_name_prefix(name)):
            raise ValueError(f"BatchInference name must be letters, digits and single '-' (no token), got {name!r}")
        for prop, prefix in prefixes.items():
            if Token.is_unresolved(prefix) or not prefix.endswith("/") or prefix.startswith("/"):
                raise ValueError(f"BatchInference {prop} must be a key prefix ending in '/', got {prefix!r}")
        if schedule is not None and not re.match(r"^(cron|rate)\(.+\)$", schedule):
            raise ValueError(f"BatchInference schedule must be an EventBridge expression such as "
                             f"'cron(0 4 * * ? *)', got {schedule!r}")
        for prop, value in instance_types.items():
            if not INSTANCE_RE.match(value):
                raise ValueError(f"BatchInference {prop} must be a SageMaker instance type such as 'ml.m5.large', "
                                 f"got {value!r}")
        if not 1 <= instance_count <= 100:
            raise ValueError(f"BatchInference instance_count must be within [1, 100], got {instance_count}")
        if not 1 <= max_payload_mb <= 100:
            raise ValueError(f"BatchInference max_payload_mb must be within [1, 100] (SageMaker's "
                             f"MaxPayloadInMB), got {max_payload_mb}")
        if not 0 <= max_reject_ratio <= 1:
            raise ValueError(f"BatchInference max_reject_ratio must be within [0, 1], got {max_reject_ratio}")
        if (image[0] is None) != (image[1] is None):
            raise ValueError("BatchInference processing_image_uri and processing_image_repository_arn go together; "
                             "pass both or neither")
        table_columns(dataset_schema)  # one-line errors for a bad document
        clashes = sorted({c["name"] for c in dataset_schema["columns"]} & {n for n, _ in PREDICTION_COLUMNS})
        if clashes:
            raise ValueError(f"BatchInference dataset_schema has column(s) {clashes} that the predictions add; "
                             "rename them in the dataset")

    # --- roles -----------------------------------------------------------------------------------------------------
    def _arn(self, resource: str, name: str) -> str:
        return sagemaker_arn(self, resource, name)

    # --- the plan function -----------------------------------------------------------------------------------------
    def _plan_function(self, *, code_dir: Path, curated_bucket: s3.IBucket, curated_prefix: str,
                       artifacts_bucket: s3.IBucket, model_artifacts_prefix: str, work_prefix: str,
                       predictions_prefix: str, log_retention: logs.RetentionDays, removal_policy: RemovalPolicy,
                       vpc, vpc_subnets, security_groups) -> lambda_.Function:
        log_group = logs.LogGroup(self, "PlanLogs", retention=log_retention, encryption_key=self.log_key,
                                  removal_policy=removal_policy)
        role = iam.Role(self, "PlanRole", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                        description=f"Batch inference plan function of {self.name}")
        log_group.grant_write(role)
        group_arn = self._arn("model-package-group", self.model_package_group_name)
        packages_arn = self._arn("model-package", f"{self.model_package_group_name}/*")
        role.add_to_policy(iam.PolicyStatement(
            sid="ApprovedPackages", actions=["sagemaker:DescribeModelPackageGroup", "sagemaker:DescribeModelPackage"],
            resources=[group_arn, packages_arn]))
        # ListModelPackages has no resource type (Service Authorization Reference): it cannot be scoped by ARN.
        role.add_to_policy(iam.PolicyStatement(sid="ListPackages", actions=["sagemaker:ListModelPackages"],
                                               resources=["*"]))
        role.add_to_policy(iam.PolicyStatement(
            sid="ListPartitions", actions=["s3:ListBucket"], resources=[curated_bucket.bucket_arn],
            conditions={"StringLike": {"s3:prefix": [curated_prefix, f"{curated_prefix}*"]}}))
        compliance.acknowledge(role, "AwsSolutions-IAM5[Resource::*]",
                               "sagemaker:ListModelPackages has no resource type; the function describes only "
                               "this model's group and its versions.")
        compliance.acknowledge_wildcard_resources(
            role, [packages_arn], "The versions of this model's package group (model-package/<group>/<version>).")
        function = lambda_.Function(
            self,
            "PlanFunction",
            description=f"Batch inference plan of {self.name}: latest approved package, newest curated partition",
            runtime=lambda_.Runtime.PYTHON_3_12,
            architecture=lambda_.Architecture.ARM_64,  # standard library and the runtime's boto3: no native code
            handler=HANDLER,
            code=lambda_.Code.from_asset(str(code_dir), exclude=CODE_EXCLUDES),
            role=role,
            timeout=Duration.seconds(60),
            memory_size=256,
            log_group=log_group,
            vpc=vpc,
            vpc_subnets=vpc_subnets if vpc is not None else None,
            security_groups=list(security_groups) if security_groups else None,
            environment={
                "MODEL_PACKAGE_GROUP": self.model_package_group_name,
                "CURATED_BUCKET": curated_bucket.bucket_name,
                "CURATED_PREFIX": curated_prefix,
                "MODEL_DATA_PREFIX": f"s3://{artifacts_bucket.bucket_name}/{model_artifacts_prefix}",
                "WORK_BUCKET": artifacts_bucket.bucket_name,
                "WORK_PREFIX": work_prefix,
                "PREDICTIONS_BUCKET": curated_bucket.bucket_name,
                "PREDICTIONS_PREFIX": predictions_prefix,
                "JOB_NAME_PREFIX": self.job_name_prefix,
                "CODE_URI": self.scoring_code.s3_object_url,
                "LOG_LEVEL": "INFO",
            },
        )
        compliance.acknowledge(
            function, "AwsSolutions-L1",
            "Python 3.12 is pinned on purpose: the function is tested and rehearsed on the same runtime as the "
            "platform's other functions; the runtimes move together.")
        if self.placement is not None:
            # A role passed to a Function gets no VPC policy from CDK: the ENI actions Lambda documents, inline.
            grant_network_interfaces(role, self.placement, "lambda")
        compliance.checkov_skip_event_function(function, in_vpc=self.placement is not None, invoked="sync")
        return function

    # --- catalog, triggers, alarm ----------------------------------------------------------------------------------
    def _table(self, database_name: str, table_name: str, dataset_schema: Mapping[str, Any],
               bucket: s3.IBucket, prefix: str) -> glue.CfnTable:
        """The predictions' Glue table: the curated columns, then :data:`PREDICTION_COLUMNS`; Parquet under
        ``prefix``, partitioned by ``dt`` (``date``) with partition projection (no crawler, no partition to add)."""
        columns = table_columns(dataset_schema) + [
            glue.CfnTable.ColumnProperty(name=n, type=t) for n, t in PREDICTION_COLUMNS
        ]
        return glue.CfnTable(
            self,
            "PredictionsTable",
            catalog_id=Stack.of(self).account,
            database_name=database_name,
            table_input=glue.CfnTable.TableInputProperty(
                name=table_name,
                description=f"Batch predictions of {self.name} (one row per curated row scored, by run date)",
                table_type="EXTERNAL_TABLE",
                parameters={
                    "classification": "parquet",
                    "EXTERNAL": "TRUE",
                    "projection.enabled": "true",
                    f"projection.{DT}.type": "date",
                    f"projection.{DT}.format": "yyyy-MM-dd",
                    f"projection.{DT}.range": "2000-01-01,NOW",
                    f"projection.{DT}.interval": "1",
                    f"projection.{DT}.interval.unit": "DAYS",
                },
                partition_keys=[glue.CfnTable.ColumnProperty(name=DT, type="date")],
                storage_descriptor=glue.CfnTable.StorageDescriptorProperty(
                    columns=columns,
                    location=f"s3://{bucket.bucket_name}/{prefix}",
                    input_format="org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
                    output_format="org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
                    serde_info=glue.CfnTable.SerdeInfoProperty(
                        serialization_library="org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
                        parameters={"serialization.format": "1"},
                    ),
                    compressed=False,
                    stored_as_sub_directories=False,
                ),
            ),
        )

    def _triggers(self, schedule: Optional[str], patterns: Sequence[events.EventPattern]) -> list[events.Rule]:
        rules = []
        if schedule is not None:
            rule = events.Rule(self, "Schedule", schedule=events.Schedule.expression(schedule),
                               description=f"Scheduled batch inference of {self.name}")
            rule.add_target(events_targets.SfnStateMachine(
                self.state_machine, input=events.RuleTargetInput.from_object({"trigger": "schedule"})))
            rules.append(rule)
        for i, pattern in enumerate(patterns):
            rule = events.Rule(self, f"OnEvent{i}" if i else "OnEvent", event_pattern=pattern,
                               description=f"Batch inference of {self.name} on new data")
            rule.add_target(events_targets.SfnStateMachine(
                self.state_machine, input=events.RuleTargetInput.from_object({
                    "trigger": "event",
                    "source": events.EventField.source,
                    "event_id": events.EventField.event_id,
                })))
            rules.append(rule)
        return rules

    def _failure_alarm(self, topic: sns.ITopic) -> cloudwatch.Alarm:
        period = Duration.minutes(5)
        failed = cloudwatch.MathExpression(
            expression="failed + timedOut",
            using_metrics={
                "failed": self.state_machine.metric_failed(period=period, statistic="Sum"),
                "timedOut": self.state_machine.metric_timed_out(period=period, statistic="Sum"),
            },
            period=period,
            label="Failed or timed-out batch runs",
        )
        alarm = cloudwatch.Alarm(
            self,
            "FailureAlarm",
            alarm_description=f"Batch inference of {self.name} failed: see the state machine's execution (and its "
                              "jobs' reports under the run's batch prefix)",
            metric=failed,
            threshold=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        alarm.add_alarm_action(cloudwatch_actions.SnsAction(topic))
        return alarm
