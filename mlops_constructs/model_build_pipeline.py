"""SageMaker model-build pipeline (resolve champion, preprocess, train, evaluate challenger vs champion, condition,
register | fail), generated at synth time."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
import tempfile
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import jsii
from aws_cdk import ArnFormat, Aws, CfnMapping, Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from mlops_constructs import compliance
from mlops_constructs import sagemaker_definition as sdk
from mlops_constructs.network import WorkloadPlacement, workload_placement
from mlops_constructs.pipeline_grants import SageMakerPipelineGrants, sagemaker_pipeline_arn
from sagemaker_steps import pipeline_spec as spec_module
from sagemaker_steps.model_spec import ModelSpec


@jsii.implements(events.IRuleTarget)
class _StartPipelineTarget:
    """EventBridge target that starts a SageMaker pipeline with parameters (no L2 target exists for it)."""

    def __init__(self, pipeline_arn: str, role: iam.IRole, parameters: Mapping[str, str]) -> None:
        self._arn = pipeline_arn
        self._role = role
        self._parameters = parameters

    def bind(self, _rule: events.IRule, _id: Optional[str] = None) -> events.RuleTargetConfig:
        return events.RuleTargetConfig(arn=self._arn, role=self._role)

    def add_to(self, rule: events.Rule) -> events.Rule:
        """Make this the only target of ``rule``, with its pipeline parameters (RuleTargetConfig has no field for
        them, so they are set on the CfnRule)."""
        rule.add_target(self)
        rule.node.default_child.add_property_override(
            "Targets.0.SageMakerPipelineParameters",
            {"PipelineParameterList": [{"Name": k, "Value": v} for k, v in self._parameters.items()]},
        )
        return rule


def _deterministic_tar_gz(members: Mapping[str, Path], dest: Path) -> Path:
    """A tar.gz of ``members`` (archive name -> file) with fixed mtimes and owners, so the asset hash changes only
    when the code does."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, path in sorted(members.items()):
            data = path.read_bytes()
            info = tarfile.TarInfo(name=name)
            info.size, info.mtime, info.mode, info.uid, info.gid = len(data), 0, 0o644, 0, 0
            tar.addfile(info, io.BytesIO(data))
    with gzip.GzipFile(filename="", mode="wb", fileobj=dest.open("wb"), mtime=0) as gz:
        gz.write(raw.getvalue())
    return dest


class ModelBuildPipeline(SageMakerPipelineGrants, Construct):
    """An ``AWS::SageMaker::Pipeline`` for one model, built from :mod:`sagemaker_steps.pipeline_spec` at synth time.

    Steps: ResolveChampion (with ``spec.champion``: the group's latest Approved package and its model.tar.gz, in
    parallel with the rest) and Preprocess (processing; encoded splits, the Model Monitor baseline dataset and a data
    manifest with a content digest) -> DataQualityBaseline (Model Monitor statistics and constraints of exactly the
    rows the endpoint receives) -> Train (script mode; model.tar.gz holds the inference code in ``code/``) -> Evaluate
    (processing, PropertyFile; scores the challenger and the champion on the same test split) -> CheckMetric
    (the threshold and, with a champion, ``challenger_wins``: better by ``spec.champion_margin``) -> Register (model
    package, PendingManualApproval, the serving environment, model quality metrics with both figures, data quality
    metrics, lineage metadata) or FailStep (its message names both figures).
    Every execution writes under ``models/<model>/executions/<PipelineExecutionId>/``. No step caching (new data under
    the same InputDataUrl retrains), no SageMaker Experiments entities; retry policies on service faults,
    throttling and capacity. Parameters: InputDataUrl, MetricThreshold, ModelApprovalStatus, GitCommit,
    ProcessingInstanceType, TrainingInstanceType.

    The registered package's ``CustomerMetadataProperties``: GitCommit (parameter), CodeDigest (of the deployed step
    code assets), Model, InputDataUrl, DataManifest (S3 URI of the run's data_manifest.json: input objects, SHA-256s,
    partitions and one content digest), PipelineExecutionArn.

    :param pipeline_name: physical name (other systems start it by name).
    :param model_package_group_name: group the Register step writes to.
    :param project / environment: values of the ``project`` and ``environment`` tags on every processing and
        training job the pipeline starts (the account's failure-event rules match jobs by these tags). Required.
    :param spec: the model (:class:`sagemaker_steps.model_spec.ModelSpec`: name, target, problem type, framework,
        metric, threshold, positive threshold, hyperparameters, instance type defaults), validated on creation.
    :param input_bucket / input_prefix: curated data (read only).
    :param artifacts_bucket: outputs under ``artifacts_prefix`` (read/write).
    :param encryption_key: encrypts job volumes and outputs.
    :param artifacts_prefix: the model's prefix in ``artifacts_bucket``. Default: ``models/<spec.name>/``.
    :param role: execution role. Default: a least-privilege role scoped to the buckets' prefixes, the key, the group.
    :param start_on_events: EventBridge event patterns that start the pipeline (e.g. Glue job succeeded). Default: none.
    :param schedule: EventBridge schedule expression. Default: none.
    :param training_source_dir: the training job's source dir (a code location): a directory holding ``train.py``
        (the script-mode entry point) and ``serve.py`` (the inference handlers train.py copies into the model as
        ``code/serve.py``), with the contract of the shipped ``sagemaker_steps/train.py`` and ``serve.py``
        (docs/FORKING.md, "Bring your own training code"). Every file under it is packed, sub-directories kept.
        Default: the shipped train.py and serve.py.
    :param definition_cache_dir: directory where the generated definition is cached by everything it depends on, so a
        warm synth does not import the SageMaker SDK. Default: ``$MLOPS_DEFINITION_CACHE_DIR`` if set, else no cache.
    :param vpc / vpc_subnets / security_groups: run every job (Preprocess, DataQualityBaseline, Train, Evaluate) in
        this VPC (:func:`mlops_constructs.network.workload_placement`: ``vpc_subnets`` defaults to the VPC's private
        subnets; ``security_groups`` are required with ``vpc``), with network isolation and inter-container traffic
        encryption: the containers reach nothing, SageMaker downloads their inputs (the training source tarball as
        the ``code`` channel) and uploads their outputs through the VPC's S3 endpoint. ResolveChampion is the
        exception to isolation (not to the VPC or encryption): it calls the SageMaker API (the VPC's interface
        endpoint) and reads the champion's artifact (the S3 gateway). The default role then gets the
        EC2 network interface permissions SageMaker documents for jobs in a VPC, limited to this VPC. The Register
        step's model needs none (the serving stack sets the model's VpcConfig). Default: no VPC.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        pipeline_name: str,
        model_package_group_name: str,
        project: str,
        environment: str,
        spec: ModelSpec,
        input_bucket: s3.IBucket,
        input_prefix: str,
        artifacts_bucket: s3.IBucket,
        encryption_key: kms.IKey,
        artifacts_prefix: Optional[str] = None,
        role: Optional[iam.IRole] = None,
        start_on_events: Sequence[events.EventPattern] = (),
        schedule: Optional[str] = None,
        definition_cache_dir: Optional[Union[str, Path]] = None,
        training_source_dir: Optional[Union[str, Path]] = None,
        vpc: Optional[ec2.IVpc] = None,
        vpc_subnets: Optional[ec2.SubnetSelection] = None,
        security_groups: Optional[Sequence[ec2.ISecurityGroup]] = None,
    ) -> None:
        super().__init__(scope, id_)
        if len(pipeline_name) > 256 or not pipeline_name.replace("-", "").isalnum():
            raise ValueError(
                f"ModelBuildPipeline pipeline_name {pipeline_name!r} must be 1-256 letters, digits and hyphens"
            )
        if not isinstance(spec, ModelSpec):
            raise TypeError(f"ModelBuildPipeline spec must be a sagemaker_steps.model_spec.ModelSpec, got {spec!r}")
        stack = Stack.of(self)
        self.spec = spec
        self.pipeline_name = pipeline_name
        self.artifacts_prefix = artifacts_prefix or f"models/{spec.name}/"
        if not self.artifacts_prefix.endswith("/"):
            raise ValueError(f"ModelBuildPipeline artifacts_prefix must end with '/', got {self.artifacts_prefix!r}")
        #: Prefix of every execution's outputs: ``<executions_prefix><PipelineExecutionId>/`` (preprocess/,
        #: baseline/, training/, evaluation/). A package's data-quality baseline is in its ModelMetrics.
        self.executions_prefix = f"{self.artifacts_prefix}{sdk.EXECUTIONS_PREFIX}/"
        self.job_tags = {"project": project, "environment": environment}
        #: Where the jobs run (subnet and security group IDs), or None without a VPC.
        self.placement: Optional[WorkloadPlacement] = workload_placement(
            "ModelBuildPipeline", vpc, vpc_subnets, security_groups
        )
        self.vpc = vpc

        try:
            #: Archive member name -> file of the training job's source dir.
            self.training_source = spec_module.training_source(spec.framework, training_source_dir)
        except ValueError as exc:
            raise ValueError(f"ModelBuildPipeline training_source_dir: {exc}") from None
        self._stage_code()
        images, monitor_registry = self._image_locations()
        self.role: iam.IRole = role or iam.Role(
            self,
            "ExecutionRole",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description=f"SageMaker pipeline {pipeline_name}: its jobs and model registration",
        )
        self.model_package_group_arn = stack.format_arn(
            service="sagemaker", resource="model-package-group", resource_name=model_package_group_name
        )
        self.pipeline_arn = sagemaker_pipeline_arn(self, pipeline_name)
        if role is None:
            self._grant_least_privilege(input_bucket, input_prefix, artifacts_bucket, encryption_key)
        placement = self.placement

        inputs = sdk.PipelineInputs(
            spec=spec,
            pipeline_name=pipeline_name,
            model_package_group_name=model_package_group_name,
            artifacts_prefix=self.artifacts_prefix,
            job_tags=self.job_tags,
            code_digest=self.code_digest,
            subnet_count=len(placement.subnet_ids) if placement else 0,
            security_group_count=len(placement.security_group_ids) if placement else 0,
        )
        if definition_cache_dir is None:
            definition_cache_dir = os.environ.get(sdk.CACHE_DIR_ENV) or None
        #: The generated definition with placeholders (before the tokens are substituted).
        self.definition_template = sdk.cached_definition(inputs, definition_cache_dir)
        # A processing job downloads its code input (S3Prefix = the asset object) to LocalPath under the object's
        # own name, <hash>.py; the entry point runs that file: /opt/ml/processing/input/code/<asset object key>.
        # (Full URIs first, then the object name left in the entry point.)
        replacements = {
            sdk.TRAIN_SOURCE_DIR: self.train_source.s3_object_url,
            **{sdk.code_key(script): asset.s3_object_url for script, asset in self.code_assets.items()},
            **{
                sdk.code_object_name(script): asset.s3_object_key.rsplit("/", 1)[-1]
                for script, asset in self.code_assets.items()
            },
            sdk.PLACEHOLDER_INPUT: input_bucket.s3_url_for_object(input_prefix),
            sdk.PLACEHOLDER_ARTIFACTS: f"s3://{artifacts_bucket.bucket_name}",
            sdk.PLACEHOLDER_ROLE: self.role.role_arn,
            sdk.PLACEHOLDER_KMS: encryption_key.key_arn,
            **{sdk.PLACEHOLDER_IMAGE[fw]: uri for fw, uri in images.items()},
            sdk.model_monitor_placeholder_prefix(): monitor_registry,
            sdk.PLACEHOLDER_GROUP_ARN: self.model_package_group_arn,
        }
        if placement:
            # The isolated training job's sagemaker_submit_directory: the code channel's file, the asset's object name.
            replacements[sdk.TRAIN_SOURCE_OBJECT] = self.train_source.s3_object_key.rsplit("/", 1)[-1]
            replacements.update(zip(sdk.placeholder_subnets(len(placement.subnet_ids)), placement.subnet_ids))
            replacements.update(zip(sdk.placeholder_security_groups(len(placement.security_group_ids)),
                                    placement.security_group_ids))
        definition = sdk.substitute(self.definition_template, replacements)
        self.pipeline = sagemaker.CfnPipeline(
            self,
            "Pipeline",
            pipeline_name=pipeline_name,
            pipeline_display_name=pipeline_name,
            pipeline_description=f"Build, evaluate and register {spec.name}",
            role_arn=self.role.role_arn,
            pipeline_definition={"PipelineDefinitionBody": stack.to_json_string(definition)},
        )
        self.pipeline.node.add_dependency(self.role)
        #: The EventBridge rules that start the pipeline (one per event pattern, then the schedule).
        self.rules: list[events.Rule] = self._add_triggers(
            start_on_events, schedule, {"InputDataUrl": input_bucket.s3_url_for_object(input_prefix)}
        )

    # --- parts of __init__ ---------------------------------------------------------------------------------------
    def _stage_code(self) -> None:
        """The step scripts as assets (processing ``code``, training source dir) and the digest of them all."""
        steps = {s.name: s for s in spec_module.pipeline_steps(self.spec.framework, self.spec.champion)}
        #: Script name -> asset of the processing steps' code.
        self.code_assets: dict[str, s3_assets.Asset] = {}
        for name in [n for n in (spec_module.RESOLVE_CHAMPION, spec_module.PREPROCESS, spec_module.EVALUATE)
                     if n in steps]:
            script = steps[name].script_path
            self.code_assets[steps[name].script] = s3_assets.Asset(self, f"{name}Code", path=str(script))
        tmp = Path(tempfile.mkdtemp(prefix="train-sourcedir-"))
        train_tar = _deterministic_tar_gz(self.training_source, tmp / "sourcedir.tar.gz")
        #: The training job's source dir (sourcedir.tar.gz); its content hash is part of ``code_digest``, so of the
        #: definition cache key.
        self.train_source = s3_assets.Asset(self, "TrainSourceDir", path=str(train_tar))
        #: Digest of the deployed step code (the content hashes of its assets), recorded in every package.
        self.code_digest = "sha256:" + hashlib.sha256(
            "\n".join(sorted(a.asset_hash for a in (*self.code_assets.values(), self.train_source))).encode()
        ).hexdigest()

    def _image_locations(self) -> tuple[dict[str, str], str]:
        """Image URIs per framework and the Model Monitor registry, through a region -> account mapping (the stack
        stays environment-agnostic); sets ``image_repositories`` (the ECR repository ARNs the role pulls from)."""
        frameworks = sorted({meta["framework"] for meta in spec_module.CONTAINER_IMAGES.values()})
        accounts: dict[str, dict[str, str]] = {}
        for fw in frameworks:
            version = spec_module.CONTAINER_FRAMEWORK_VERSIONS[fw]
            for region, account in sdk.image_registries(fw, version).items():
                accounts.setdefault(region, {})[fw] = account
        for region, account in sdk.model_monitor_registries().items():
            accounts.setdefault(region, {})["monitor"] = account
        mapping = CfnMapping(self, "ImageAccounts", mapping=accounts, lazy=False)
        monitor_account = mapping.find_in_map(Aws.REGION, "monitor")
        images: dict[str, str] = {}
        self.image_repositories: list[str] = []
        for fw in frameworks:
            repo, tag = sdk.image_repository(fw, spec_module.CONTAINER_FRAMEWORK_VERSIONS[fw])
            account = mapping.find_in_map(Aws.REGION, fw)
            images[fw] = f"{account}.dkr.ecr.{Aws.REGION}.{Aws.URL_SUFFIX}/{repo}:{tag}"
            self.image_repositories.append(f"arn:{Aws.PARTITION}:ecr:{Aws.REGION}:{account}:repository/{repo}")
        self.image_repositories.append(
            f"arn:{Aws.PARTITION}:ecr:{Aws.REGION}:{monitor_account}:repository/sagemaker-model-monitor-analyzer"
        )
        return images, f"{monitor_account}.dkr.ecr.{Aws.REGION}.{Aws.URL_SUFFIX}"

    def _add_triggers(
        self, start_on_events: Sequence[events.EventPattern], schedule: Optional[str], parameters: Mapping[str, str]
    ) -> list[events.Rule]:
        if not start_on_events and not schedule:
            return []
        start_role = iam.Role(
            self,
            "EventsStartRole",
            assumed_by=iam.ServicePrincipal("events.amazonaws.com"),
            description=f"EventBridge starts {self.pipeline_name}",
        )
        start_role.add_to_policy(
            iam.PolicyStatement(actions=["sagemaker:StartPipelineExecution"], resources=[self.pipeline_arn])
        )
        target = _StartPipelineTarget(self.pipeline_arn, start_role, parameters)
        rules = [
            target.add_to(
                events.Rule(
                    self,
                    f"StartOnEvent{i}",
                    description=f"Start {self.pipeline_name} when new curated data is ready",
                    event_pattern=pattern,
                )
            )
            for i, pattern in enumerate(start_on_events)
        ]
        if schedule:
            rules.append(
                target.add_to(
                    events.Rule(
                        self,
                        "StartOnSchedule",
                        description=f"Scheduled run of {self.pipeline_name}",
                        schedule=events.Schedule.expression(schedule),
                    )
                )
            )
        return rules

    # --- the default role's policy -----------------------------------------------------------------------------
    def _grant_least_privilege(
        self, input_bucket: s3.IBucket, input_prefix: str, artifacts_bucket: s3.IBucket, key: kms.IKey
    ) -> None:
        role = self.role
        input_bucket.grant_read(role, f"{input_prefix}*")
        artifacts_bucket.grant_read_write(role, f"{self.artifacts_prefix}*")
        for asset in (*self.code_assets.values(), self.train_source):
            asset.grant_read(role)
        key.grant_encrypt_decrypt(role)
        # The jobs' ML storage volumes are encrypted with this key (VolumeKmsKeyId): SageMaker creates the encrypted
        # volume on the role's behalf through a KMS grant, so the role needs kms:CreateGrant, only for AWS resources.
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="JobVolumeKeyGrant",
                actions=["kms:CreateGrant"],
                resources=[key.key_arn],
                conditions={"Bool": {"kms:GrantIsForAWSResource": "true"}},
            )
        )
        jobs = self._grant_jobs_and_registry()
        job_logs = self._grant_job_logs()
        network_interfaces = self._grant_job_network() if self.placement else []
        compliance.acknowledge(
            role,
            "AwsSolutions-IAM5[Resource::*]",
            "ecr:GetAuthorizationToken has no resource type; cloudwatch:PutMetricData is limited to the SageMaker "
            "namespaces by condition."
            + (" sagemaker:ListModelPackages (ResolveChampion) has no resource type." if self.spec.champion else "")
            + (" The EC2 Describe* calls SageMaker makes for jobs in a VPC (subnets, security groups, VPCs, DHCP "
               "options, network interfaces) have no resource type." if self.placement else ""),
        )
        compliance.acknowledge_wildcard_resources(
            role,
            [
                *jobs,
                *job_logs,
                *network_interfaces,
                self._model_packages_arn(),
                input_bucket.arn_for_objects(f"{input_prefix}*"),
                artifacts_bucket.arn_for_objects(f"{self.artifacts_prefix}*"),
                compliance.asset_bucket_objects(self),
            ],
            "Pipeline jobs are named pipelines-<execution>-<step> by SageMaker and log to streams named after the "
            "job; CreateLogStream is authorized on the log group ARN form <group>:*; packages are versions of this "
            "model's group; S3 access is limited to this model's prefixes and the step script assets."
            + (" The jobs' network interfaces are created by SageMaker with IDs unknown until then; the statement "
               "allows them only in the pipeline's VPC (ec2:Vpc condition)." if self.placement else ""),
        )
        compliance.acknowledge_wildcard_actions(
            role,
            compliance.S3_READ_ACTIONS + compliance.S3_WRITE_ACTIONS + compliance.KMS_ACTIONS,
            "CDK grant actions, limited to this model's prefixes and the lake key in the same statements.",
        )

    def _model_packages_arn(self) -> str:
        """The versions of this model's package group: ``.../model-package/<group>/*``."""
        return f"{self.model_package_group_arn.replace('model-package-group', 'model-package', 1)}/*"

    def _grant_jobs_and_registry(self) -> list[str]:
        """Processing and training jobs, registration in the group, passing its own role, pulling the images and
        job metrics; returns the job ARN patterns."""
        stack = Stack.of(self)
        role = self.role
        jobs = [
            stack.format_arn(service="sagemaker", resource=kind, resource_name="pipelines-*")
            for kind in ("processing-job", "training-job")
        ]
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="PipelineJobs",
                actions=[
                    "sagemaker:CreateProcessingJob",
                    "sagemaker:DescribeProcessingJob",
                    "sagemaker:StopProcessingJob",
                    "sagemaker:CreateTrainingJob",
                    "sagemaker:DescribeTrainingJob",
                    "sagemaker:StopTrainingJob",
                    "sagemaker:AddTags",
                ],
                resources=jobs,
            )
        )
        # Register creates a version in this group; ResolveChampion describes the champion (a version of it).
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="Registry",
                actions=[
                    "sagemaker:CreateModelPackage",
                    "sagemaker:DescribeModelPackage",
                    "sagemaker:DescribeModelPackageGroup",
                    "sagemaker:AddTags",
                ],
                resources=[self.model_package_group_arn, self._model_packages_arn()],
            )
        )
        if self.spec.champion:
            # ResolveChampion lists the group's Approved versions. ListModelPackages has no resource type in IAM
            # (the Service Authorization Reference lists none, as for the registry grants and batch inference), so
            # "*" only; what it returns are summaries, and the role describes and reads only this group's versions.
            role.add_to_principal_policy(
                iam.PolicyStatement(sid="ChampionLookup", actions=["sagemaker:ListModelPackages"], resources=["*"])
            )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="PassOwnRole",
                actions=["iam:PassRole"],
                resources=[role.role_arn],
                conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
            )
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="PullFrameworkImages",
                actions=["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
                resources=self.image_repositories,
            )
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(sid="EcrToken", actions=["ecr:GetAuthorizationToken"], resources=["*"])
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="JobMetrics",
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringLike": {"cloudwatch:namespace": ["/aws/sagemaker/*", "aws/sagemaker/*"]}},
            )
        )
        return jobs

    def _grant_job_network(self) -> list[str]:
        """Jobs in a VPC: SageMaker creates a network interface per job instance in the job's subnets with its
        security groups, lets its own account attach it (CreateNetworkInterfacePermission) and deletes both when the
        job ends, with the job's role (SageMaker Developer Guide, "Give SageMaker AI Access to Resources in your Amazon
        VPC", and AmazonSageMakerJobFullAccess). CreateNetworkInterface is authorized on the new interface, the subnet
        and the security groups: the subnets and groups are named, the interfaces (IDs unknown in advance) are limited
        to this VPC by ``ec2:Vpc``, a key of all three resource types. The Describe* actions have no resource type.
        Returns the wildcard resource (the network interfaces)."""
        stack = Stack.of(self)
        placement = self.placement

        def ec2_arn(resource: str, name: str) -> str:
            return stack.format_arn(service="ec2", resource=resource, resource_name=name)

        network_interfaces = ec2_arn("network-interface", "*")
        self.role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="JobNetworkInterfaces",
                actions=[
                    "ec2:CreateNetworkInterface",
                    "ec2:CreateNetworkInterfacePermission",
                    "ec2:DeleteNetworkInterface",
                    "ec2:DeleteNetworkInterfacePermission",
                ],
                resources=[
                    network_interfaces,
                    *(ec2_arn("subnet", subnet) for subnet in placement.subnet_ids),
                    *(ec2_arn("security-group", group) for group in placement.security_group_ids),
                ],
                conditions={"ArnEquals": {"ec2:Vpc": self.vpc.vpc_arn}},
            )
        )
        self.role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="JobNetworkDescribe",
                actions=[
                    "ec2:DescribeNetworkInterfaces",
                    "ec2:DescribeVpcs",
                    "ec2:DescribeDhcpOptions",
                    "ec2:DescribeSubnets",
                    "ec2:DescribeSecurityGroups",
                ],
                resources=["*"],
            )
        )
        return [network_interfaces]

    def _grant_job_logs(self) -> list[str]:
        """The jobs' CloudWatch logs; returns the wildcard ARNs (log group ``:*`` forms and the streams).

        CloudWatch Logs authorizes CreateLogStream and DescribeLogStreams on the log group (log-group:<name>, also
        matched as log-group:<name>:*) and PutLogEvents on the log stream (log-group:<name>:log-stream:<stream>).
        The jobs' streams are <job name>/<host>..., and pipeline job names start with "pipelines-".
        """
        stack = Stack.of(self)

        def log_arn(name: str) -> str:
            return stack.format_arn(
                service="logs", resource="log-group", resource_name=name, arn_format=ArnFormat.COLON_RESOURCE_NAME
            )

        kinds = ("ProcessingJobs", "TrainingJobs")
        job_log_groups = [log_arn(f"/aws/sagemaker/{k}") for k in kinds] + [
            log_arn(f"/aws/sagemaker/{k}:*") for k in kinds
        ]
        job_log_streams = [log_arn(f"/aws/sagemaker/{k}:log-stream:pipelines-*") for k in kinds]
        self.role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="JobLogGroups",
                # CreateLogGroup: SageMaker creates /aws/sagemaker/<kind> with the job's role on its first job in the
                # account and region (the platform does not own those account-wide groups by default).
                actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:DescribeLogStreams"],
                resources=job_log_groups,
            )
        )
        self.role.add_to_principal_policy(
            iam.PolicyStatement(sid="JobLogStreams", actions=["logs:PutLogEvents"], resources=job_log_streams)
        )
        return [*job_log_groups[len(kinds):], *job_log_streams]

    # --- helpers -----------------------------------------------------------------------------------------------
    def metric_executions(self, status: str = "Failed", period: Duration = Duration.minutes(5)) -> cloudwatch.Metric:
        """Pipeline executions by status: Started, Succeeded, Failed, Stopped (namespace AWS/Sagemaker/ModelBuildingPipeline)."""
        return cloudwatch.Metric(
            namespace="AWS/Sagemaker/ModelBuildingPipeline",
            metric_name=f"Execution{status}",
            dimensions_map={"PipelineName": self.pipeline_name},
            statistic="Sum",
            period=period,
        )
