"""What other principals may do with one SageMaker pipeline: start it, follow its executions, update its definition.

:class:`~mlops_constructs.model_build_pipeline.ModelBuildPipeline` has these grant methods; a pipeline made elsewhere
is referenced by name with :meth:`SageMakerPipelineReference.from_pipeline_name`. Consumers such as
:class:`~mlops_constructs.cicd.build_ci.ModelBuildCi` take either (the :class:`ISageMakerPipeline` protocol).
"""

from __future__ import annotations

from typing import Optional, Protocol

from aws_cdk import Stack, Token
from aws_cdk import aws_iam as iam
from constructs import Construct

from mlops_constructs import compliance


def sagemaker_pipeline_arn(scope: Construct, pipeline_name: str) -> str:
    """The pipeline's ARN in ``scope``'s account and region (SageMaker lower-cases the name in the ARN)."""
    name = pipeline_name if Token.is_unresolved(pipeline_name) else pipeline_name.lower()
    return Stack.of(scope).format_arn(service="sagemaker", resource="pipeline", resource_name=name)


class ISageMakerPipeline(Protocol):
    """A SageMaker pipeline other constructs act on: its name, ARN and execution role, and its grant methods."""

    pipeline_name: str
    pipeline_arn: str
    role: Optional[iam.IRole]

    def grant_start(self, grantee: iam.IGrantable) -> iam.Grant: ...

    def grant_read_executions(self, grantee: iam.IGrantable) -> iam.Grant: ...

    def grant_update(self, grantee: iam.IGrantable) -> iam.Grant: ...


class SageMakerPipelineGrants:
    """The grant methods of a SageMaker pipeline, for a class with ``pipeline_arn`` and ``role`` (its execution role,
    None when unknown)."""

    pipeline_arn: str
    role: Optional[iam.IRole]

    def grant_start(self, grantee: iam.IGrantable) -> iam.Grant:
        """Describe the pipeline and start executions of it (``DescribePipeline``, ``StartPipelineExecution``)."""
        return iam.Grant.add_to_principal(
            grantee=grantee,
            actions=["sagemaker:DescribePipeline", "sagemaker:StartPipelineExecution"],
            resource_arns=[self.pipeline_arn],
        )

    def grant_read_executions(self, grantee: iam.IGrantable) -> iam.Grant:
        """Follow the pipeline's executions (``DescribePipelineExecution``, ``ListPipelineExecutionSteps``)."""
        executions = f"{self.pipeline_arn}/execution/*"
        grant = iam.Grant.add_to_principal(
            grantee=grantee,
            actions=["sagemaker:DescribePipelineExecution", "sagemaker:ListPipelineExecutionSteps"],
            resource_arns=[executions],
        )
        if isinstance(grantee.grant_principal, Construct):
            compliance.acknowledge_wildcard_resources(
                grantee.grant_principal,
                [executions],
                "Executions of this one SageMaker pipeline: their IDs are generated at start, so the ARN ends in a "
                "wildcard under the pipeline's own ARN.",
            )
        return grant

    def grant_update(self, grantee: iam.IGrantable) -> iam.Grant:
        """Update the pipeline's definition (``UpdatePipeline``) and pass its execution role to SageMaker only (an
        update names the role the pipeline runs as)."""
        if self.role is None:
            raise ValueError(f"grant_update of pipeline {self.pipeline_arn}: its execution role is unknown")
        grant = iam.Grant.add_to_principal(
            grantee=grantee, actions=["sagemaker:UpdatePipeline"], resource_arns=[self.pipeline_arn]
        )
        iam.Grant.add_to_principal(
            grantee=grantee,
            actions=["iam:PassRole"],
            resource_arns=[self.role.role_arn],
            conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
        )
        return grant


class SageMakerPipelineReference(SageMakerPipelineGrants):
    """A SageMaker pipeline made elsewhere (another stack or app), by name.

    :param pipeline_arn: its ARN. :param pipeline_name: its name.
    :param role: its execution role, needed for :meth:`grant_update` only. Default: unknown.
    """

    def __init__(self, *, pipeline_name: str, pipeline_arn: str, role: Optional[iam.IRole] = None) -> None:
        self.pipeline_name = pipeline_name
        self.pipeline_arn = pipeline_arn
        self.role = role

    @classmethod
    def from_pipeline_name(
        cls, scope: Construct, pipeline_name: str, *, role: Optional[iam.IRole] = None
    ) -> "SageMakerPipelineReference":
        """The pipeline of that name in ``scope``'s account and region."""
        return cls(pipeline_name=pipeline_name, pipeline_arn=sagemaker_pipeline_arn(scope, pipeline_name), role=role)
