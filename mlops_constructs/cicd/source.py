"""Where a pipeline reads its source: a CodeConnections repository (GitHub, GitLab, Bitbucket) or, for accounts
without a connection, one object of an S3 source bucket whose upload starts the pipeline through an EventBridge
rule (``git archive`` the repository, add a ``GIT_COMMIT`` file with the commit SHA, upload the zip)."""

from __future__ import annotations

import re
from typing import Optional

from aws_cdk import Token
from aws_cdk import aws_codepipeline as codepipeline
from aws_cdk import aws_codepipeline_actions as actions
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_s3 as s3
from aws_cdk import pipelines
from constructs import Construct

from mlops_constructs._events import object_created

REPOSITORY_RE = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")


def check_source(owner: str, connection_arn: Optional[str], repository: Optional[str]) -> None:
    """``connection_arn`` and ``repository`` (``owner/name``) come together or not at all."""
    if (connection_arn is None) != (repository is None):
        raise ValueError(
            f"{owner} needs connection_arn and repository (owner/name) together for a CodeConnections source, "
            "or neither for the S3 source bucket"
        )
    if repository is not None and not Token.is_unresolved(repository) and not REPOSITORY_RE.match(repository):
        raise ValueError(f"{owner} repository must be 'owner/name', got {repository!r}")


class PipelineSource:
    """The source of one pipeline: ``connection_arn`` and ``repository`` (``owner/name``) on ``branch``, or
    ``object_key`` in ``bucket``. Actions are named ``Checkout`` and ``SourceZip``.

    :param owner: the construct named in validation errors.
    :param connection_arn: :param repository: :param branch: the CodeConnections source. Default branch: ``main``.
    :param bucket: :param object_key: the S3 source, used when there is no connection (both required then).
    """

    def __init__(
        self,
        *,
        owner: str,
        connection_arn: Optional[str] = None,
        repository: Optional[str] = None,
        branch: str = "main",
        bucket: Optional[s3.IBucket] = None,
        object_key: Optional[str] = None,
    ) -> None:
        check_source(owner, connection_arn, repository)
        if connection_arn is None and (bucket is None or object_key is None):
            raise ValueError(f"{owner} needs a source: connection_arn and repository, or an S3 bucket and object key")
        self.connection_arn = connection_arn
        self.repository = repository
        self.branch = branch
        self.bucket = None if connection_arn is not None else bucket
        self.object_key = object_key

    def action(self, output: codepipeline.Artifact, *, trigger_on_push: bool) -> codepipeline.IAction:
        """The CodePipeline source action; an S3 source never polls (:meth:`add_upload_trigger` starts it)."""
        if self.bucket is None:
            owner, repo = self.repository.split("/", 1)
            return actions.CodeStarConnectionsSourceAction(
                action_name="Checkout",
                connection_arn=self.connection_arn,
                owner=owner,
                repo=repo,
                branch=self.branch,
                output=output,
                trigger_on_push=trigger_on_push,
                code_build_clone_output=False,
            )
        return actions.S3SourceAction(
            action_name="SourceZip",
            bucket=self.bucket,
            bucket_key=self.object_key,
            output=output,
            trigger=actions.S3Trigger.NONE,  # started by an EventBridge rule on the upload
        )

    def cdk_pipeline_source(self, *, trigger_on_push: bool) -> pipelines.CodePipelineSource:
        """The same source as the input of a CDK Pipelines step."""
        if self.bucket is None:
            return pipelines.CodePipelineSource.connection(
                self.repository, self.branch, connection_arn=self.connection_arn, trigger_on_push=trigger_on_push,
                action_name="Checkout",
            )
        return pipelines.CodePipelineSource.s3(
            self.bucket, self.object_key, trigger=actions.S3Trigger.NONE, action_name="SourceZip"
        )

    def add_upload_trigger(
        self, scope: Construct, pipeline: codepipeline.IPipeline, *, run: str
    ) -> Optional[events.Rule]:
        """S3 source: ``OnSourceUpload`` in ``scope``, a rule that starts ``pipeline`` when the object is uploaded
        (``run`` completes its description, e.g. ``run the model build CI``). None with a connection."""
        if self.bucket is None:
            return None
        return events.Rule(
            scope,
            "OnSourceUpload",
            description=f"{self.object_key} uploaded: {run}",
            event_pattern=object_created(self.bucket, [self.object_key]),
            targets=[targets.CodePipeline(pipeline)],
        )

    def object_arns(self) -> list[str]:
        """The source object's versions (what a pipeline role reading it is granted), none with a connection."""
        return [] if self.bucket is None else [self.bucket.arn_for_objects(self.object_key)]
