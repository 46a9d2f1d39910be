"""The platform's self-mutating CDK Pipeline (``aws_cdk.pipelines.CodePipeline``): V2, cross-account keys, pinned CLI
versions, builds logging to one encrypted group, and the acknowledgements of what CDK Pipelines generates."""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

from aws_cdk import Aws, Duration, Stack
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_codepipeline as codepipeline
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import pipelines
from constructs import Construct

from mlops_constructs import compliance
from mlops_constructs.cicd.common import BUILD_IMAGE

#: The synth step's environment: no version checks, telemetry or untested-Node warnings in the build log.
SYNTH_ENV = {
    "CDK_DISABLE_VERSION_CHECK": "true",
    "CDK_DISABLE_CLI_TELEMETRY": "true",
    "SAGEMAKER_TELEMETRY_OPT_OUT": "true",
    "JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION": "1",
}
#: The runtimes every build installs.
RUNTIMES = {"python": "3.11", "nodejs": "22"}


class PlatformPipeline(pipelines.CodePipeline):
    """A self-mutating CDK Pipeline (V2, ``cross_account_keys``): ``Synth`` runs ``synth_commands`` on ``source``
    and leaves ``cdk.out``; stages are added with :meth:`add_stage`. :meth:`build_pipeline` (explicit or at synth)
    also acknowledges the wildcards CDK Pipelines grants on purpose and renders the CloudFormation actions' role ARNs
    as ``Fn::Sub`` (cfn-lint E3703).

    :param pipeline_name: the CodePipeline.
    :param source: the synth input (e.g. :meth:`PipelineSource.cdk_pipeline_source`).
    :param synth_commands: e.g. tests, then ``npx cdk synth``.
    :param artifact_bucket: the pipeline's artifacts (its key is extended to the trusted bootstrap roles).
    :param log_group: every build logs here.
    :param cli_version: :param cdk_assets_version: the CDK CLI and cdk-assets the self-mutation and asset steps
        install. Default: latest (pin them: aws/aws-cdk#33491).
    :param synth_env: the synth step's environment. Default: :data:`SYNTH_ENV`.
    :param synth_compute_type: of the synth build. Default: MEDIUM.
    :param build_timeout: of every build. Default: 60 minutes.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        pipeline_name: str,
        source: pipelines.IFileSetProducer,
        synth_commands: Sequence[str],
        artifact_bucket: s3.IBucket,
        log_group: logs.ILogGroup,
        cli_version: Optional[str] = None,
        cdk_assets_version: Optional[str] = None,
        synth_env: Mapping[str, str] = SYNTH_ENV,
        synth_compute_type: codebuild.ComputeType = codebuild.ComputeType.MEDIUM,
        build_timeout: Duration = Duration.minutes(60),
    ) -> None:
        synth_step = pipelines.ShellStep(
            "Synth", input=source, env=dict(synth_env), commands=list(synth_commands), primary_output_directory="cdk.out"
        )
        super().__init__(
            scope,
            id_,
            pipeline_name=pipeline_name,
            pipeline_type=codepipeline.PipelineType.V2,
            synth=synth_step,
            self_mutation=True,
            cross_account_keys=True,
            artifact_bucket=artifact_bucket,
            cli_version=cli_version,
            cdk_assets_cli_version=cdk_assets_version,
            publish_assets_in_parallel=False,
            docker_enabled_for_synth=False,
            docker_enabled_for_self_mutation=False,
            code_build_defaults=pipelines.CodeBuildOptions(
                build_environment=_environment(codebuild.ComputeType.SMALL),
                partial_build_spec=codebuild.BuildSpec.from_object({"phases": {"install": {"runtime-versions": RUNTIMES}}}),
                logging=codebuild.LoggingOptions(cloud_watch=codebuild.CloudWatchLoggingOptions(log_group=log_group)),
                timeout=build_timeout,
            ),
            synth_code_build_defaults=pipelines.CodeBuildOptions(build_environment=_environment(synth_compute_type)),
        )
        self.synth_step = synth_step
        self._artifacts = artifact_bucket

    def build_pipeline(self) -> None:
        super().build_pipeline()
        self._acknowledge()
        self._sub_configuration_role_arns()

    @property
    def code_pipeline(self) -> codepipeline.Pipeline:
        """The CodePipeline (after :meth:`build_pipeline`)."""
        return self.pipeline

    def _sub_configuration_role_arns(self) -> None:
        """Render the CloudFormation actions' execution role ARNs as ``Fn::Sub`` instead of ``Fn::Join``.

        CDK Pipelines substitutes the partition into the synthesizer's ``arn:${AWS::Partition}:iam::...`` as a
        ``Fn::Join`` with an empty delimiter, which cfn-lint (E3703) reports as an error inside an action's
        ``Configuration``. Same value, the form cfn-lint accepts.
        """
        cfn = self.pipeline.node.default_child
        # Resolved L1 properties are keyed as in the L1 (camelCase), the override paths as in the template.
        for i, stage in enumerate(Stack.of(self).resolve(cfn.stages) or []):
            for j, action in enumerate(stage.get("actions", [])):
                rendered = _as_sub((action.get("configuration") or {}).get("RoleArn"))
                if rendered is not None:
                    cfn.add_property_override(f"Stages.{i}.Actions.{j}.Configuration.RoleArn", {"Fn::Sub": rendered})

    def _acknowledge(self) -> None:
        """What CDK Pipelines generates on purpose (roles of the pipeline, synth, self-mutation, asset publishing)."""
        stack = Stack.of(self)
        region, account = stack.region, stack.account
        compliance.acknowledge_wildcard_resources(
            self,
            [self._artifacts.arn_for_objects("*")],
            "CDK Pipelines' roles read and write objects of this pipeline's own artifacts bucket, which CodePipeline "
            "names per execution and action.",
        )
        compliance.acknowledge_wildcard_actions(
            self,
            compliance.S3_READ_ACTIONS + compliance.S3_WRITE_ACTIONS + compliance.KMS_ACTIONS,
            "CDK grant actions limited to this pipeline's artifacts bucket and its KMS key (the resources in the "
            "same statements).",
        )
        for project in (self.synth_project, self.self_mutation_project):
            default_logs = f"arn:{Aws.PARTITION}:logs:{region}:{account}:log-group:/aws/codebuild/"
            compliance.acknowledge_wildcard_resources(
                project.role,
                [
                    f"{default_logs}{project.project_name}:*",
                    f"arn:{Aws.PARTITION}:codebuild:{region}:{account}:report-group/{project.project_name}-*",
                ],
                "CodeBuild's default log group and report groups of this one project, which CDK always grants; the "
                "build logs to the pipeline's KMS-encrypted log group with retention instead.",
            )
        mutation_role = self.self_mutation_project.role
        compliance.acknowledge_wildcard_resources(
            mutation_role,
            [f"arn:*:iam::{account}:role/*"],
            "Self-mutation assumes only roles tagged aws-cdk:bootstrap-role (deploy, file- and image-publishing) in "
            "this account, by an iam:ResourceTag condition: the CDK bootstrap roles that `cdk deploy` uses.",
        )
        compliance.acknowledge(
            mutation_role,
            "AwsSolutions-IAM5[Resource::*]",
            "Self-mutation's cloudformation:DescribeStacks and s3:ListBucket (read only) on '*': the CDK CLI checks "
            "the pipeline stack and the bootstrap bucket, whose names it resolves at run time.",
        )
        self._acknowledge_asset_role(region, account)

    def _acknowledge_asset_role(self, region: str, account: str) -> None:
        assets = self.node.try_find_child("Assets")
        file_role = assets.node.try_find_child("FileRole") if assets is not None else None
        if file_role is None:
            return
        compliance.acknowledge_wildcard_resources(
            file_role,
            [
                f"arn:{Aws.PARTITION}:logs:{region}:{account}:log-group:/aws/codebuild/*",
                f"arn:{Aws.PARTITION}:codebuild:{region}:{account}:report-group/*",
            ],
            "The asset publishing role serves every FileAsset project CDK Pipelines generates (one per asset), "
            "so CDK grants their default log and report groups by prefix; builds log to the pipeline's group.",
        )
        compliance.acknowledge(
            file_role,
            "AwsSolutions-IAM5[Resource::*]",
            "CDK Pipelines lets the asset role start and watch its own FileAsset CodeBuild projects "
            "(codebuild:StartBuild/BatchGetBuilds/StopBuild) on '*' to avoid a circular reference; its only "
            "other rights are assuming the file-publishing bootstrap roles.",
        )


def _environment(compute_type: codebuild.ComputeType) -> codebuild.BuildEnvironment:
    return codebuild.BuildEnvironment(build_image=BUILD_IMAGE, compute_type=compute_type, privileged=False)


def _as_sub(arn: object) -> Optional[str]:
    """A ``Fn::Join`` with an empty delimiter of strings and ``AWS::`` pseudo parameters, as ``Fn::Sub`` text."""
    if not (isinstance(arn, dict) and list(arn) == ["Fn::Join"]):
        return None
    sep, parts = arn["Fn::Join"]
    if sep != "":
        return None
    rendered = ""
    for part in parts:
        if isinstance(part, str):
            rendered += part.replace("${", "${!")
        elif isinstance(part, dict) and list(part) == ["Ref"] and part["Ref"].startswith("AWS::"):
            rendered += "${" + part["Ref"] + "}"
        else:
            return None
    return rendered
