"""EventBridge rules that turn failure events (pipelines, Glue, SageMaker jobs, CodePipeline) into one readable
sentence on the alarm topic."""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

from aws_cdk import Stack, Token
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as events_targets
from aws_cdk import aws_sns as sns
from constructs import Construct


# What Model Monitor reports when an hourly execution finds no captured requests (an endpoint without traffic): the
# execution is "Failed" with this reason. Not an incident: filtered out of failure notifications.
NO_DATA_FAILURE_REASON = "Job inputs had no data"


def _field(path: str) -> str:
    return events.EventField.from_path(path)


class FailureEvents(Construct):
    """EventBridge rules that turn failure events into one readable sentence on the alarm topic.

    :param topic: destination (an :class:`AlarmTopic`'s ``topic``).
    :param sagemaker_pipeline_names: SageMaker pipelines whose failed executions notify. Default: none.
    :param sagemaker_pipeline_name_prefix: also notify for every pipeline whose name starts with this. Default: none.
    :param glue_job_names: Glue jobs whose FAILED, TIMEOUT or ERROR runs notify. Default: none.
    :param training_job_tags: notify failed SageMaker training jobs that carry ALL these tags (key -> value). A
        training job state change event carries the job's tags as a key -> value map in ``detail.Tags``; matching them
        keeps other teams' and other environments' jobs in the account out. Default: none (no training job rule).
    :param processing_job_role_arns: notify failed SageMaker processing jobs run with one of these roles
        (``detail.RoleArn``). The processing job state change event carries no tags, so the role is how a rule tells
        its own jobs (e.g. a :class:`DataQualityMonitor`'s) from the account's others. Default: none (no rule).
    :param ignored_failure_reason: failures whose ``FailureReason`` starts with this do not notify. Default: Model
        Monitor's "no data" (an hourly monitoring job on an endpoint without traffic). None: every failure notifies.
    :param codepipeline_names: CodePipeline pipelines whose FAILED executions notify. Default: none.

    Processing and training jobs a SageMaker pipeline starts are also covered by the pipeline execution rule.
    ``rules`` maps a kind (``sagemaker_pipeline``, ``glue_job``, ``training_job``, ``processing_job``,
    ``codepipeline``) to its rule; kinds without anything to watch have no rule.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        topic: sns.ITopic,
        sagemaker_pipeline_names: Sequence[str] = (),
        sagemaker_pipeline_name_prefix: Optional[str] = None,
        glue_job_names: Sequence[str] = (),
        training_job_tags: Optional[Mapping[str, str]] = None,
        processing_job_role_arns: Sequence[str] = (),
        ignored_failure_reason: Optional[str] = NO_DATA_FAILURE_REASON,
        codepipeline_names: Sequence[str] = (),
    ) -> None:
        super().__init__(scope, id_)
        self.topic = topic
        self.rules: dict[str, events.Rule] = {}
        stack = Stack.of(self)

        def pipeline_arn(name: str) -> str:
            # SageMaker lower-cases pipeline names in ARNs (and so in the events).
            return stack.format_arn(
                service="sagemaker",
                resource="pipeline",
                resource_name=name if Token.is_unresolved(name) else name.lower(),
            )

        arns: list = [pipeline_arn(n) for n in sagemaker_pipeline_names]
        if sagemaker_pipeline_name_prefix:
            arns.append({"prefix": pipeline_arn(sagemaker_pipeline_name_prefix)})
        if arns:
            self._rule(
                "sagemaker_pipeline",
                "SageMakerPipelineFailed",
                "Failed SageMaker model-building pipeline executions",
                events.EventPattern(
                    source=["aws.sagemaker"],
                    detail_type=["SageMaker Model Building Pipeline Execution Status Change"],
                    detail={"currentPipelineExecutionStatus": ["Failed"], "pipelineArn": arns},
                ),
                f"SageMaker pipeline execution {_field('$.detail.pipelineExecutionDisplayName')} "
                f"({_field('$.detail.pipelineExecutionArn')}) of {_field('$.detail.pipelineArn')} "
                f"failed at {_field('$.time')} in account {_field('$.account')}, region {_field('$.region')}. "
                "Open the execution in SageMaker Studio to see the failed step and its logs.",
            )
        if glue_job_names:
            self._rule(
                "glue_job",
                "GlueJobFailed",
                "Glue job runs that failed, timed out or errored",
                events.EventPattern(
                    source=["aws.glue"],
                    detail_type=["Glue Job State Change"],
                    detail={"jobName": list(glue_job_names), "state": ["FAILED", "TIMEOUT", "ERROR"]},
                ),
                f"Glue job {_field('$.detail.jobName')} run {_field('$.detail.jobRunId')} ended in state "
                f"{_field('$.detail.state')} at {_field('$.time')} (account {_field('$.account')}, region "
                f"{_field('$.region')}): {_field('$.detail.message')}",
            )
        reason_filter = (
            {"FailureReason": [{"anything-but": {"prefix": ignored_failure_reason}}]} if ignored_failure_reason else {}
        )
        if training_job_tags:
            self._rule(
                "training_job",
                "TrainingJobFailed",
                "Failed SageMaker training jobs of this environment (by tags)",
                events.EventPattern(
                    source=["aws.sagemaker"],
                    detail_type=["SageMaker Training Job State Change"],
                    detail={
                        "TrainingJobStatus": ["Failed"],
                        "Tags": {key: [value] for key, value in training_job_tags.items()},
                        **reason_filter,
                    },
                ),
                f"SageMaker training job {_field('$.detail.TrainingJobName')} failed at {_field('$.time')} "
                f"(account {_field('$.account')}, region {_field('$.region')}): {_field('$.detail.FailureReason')}. "
                "Logs: /aws/sagemaker/TrainingJobs.",
            )
        if processing_job_role_arns:
            self._rule(
                "processing_job",
                "ProcessingJobFailed",
                "Failed SageMaker processing jobs run with this environment's roles",
                events.EventPattern(
                    source=["aws.sagemaker"],
                    detail_type=["SageMaker Processing Job State Change"],
                    detail={
                        "ProcessingJobStatus": ["Failed"],
                        "RoleArn": list(processing_job_role_arns),
                        **reason_filter,
                    },
                ),
                f"SageMaker processing job {_field('$.detail.ProcessingJobName')} failed at {_field('$.time')} "
                f"(account {_field('$.account')}, region {_field('$.region')}): {_field('$.detail.FailureReason')}. "
                "Logs: /aws/sagemaker/ProcessingJobs.",
            )
        if codepipeline_names:
            self._rule(
                "codepipeline",
                "CodePipelineFailed",
                "Failed CodePipeline executions",
                events.EventPattern(
                    source=["aws.codepipeline"],
                    detail_type=["CodePipeline Pipeline Execution State Change"],
                    detail={"state": ["FAILED"], "pipeline": list(codepipeline_names)},
                ),
                f"CodePipeline {_field('$.detail.pipeline')} execution {_field('$.detail.execution-id')} failed at "
                f"{_field('$.time')} (account {_field('$.account')}, region {_field('$.region')}).",
            )

    def _rule(self, kind: str, id_: str, description: str, pattern: events.EventPattern, sentence: str) -> None:
        rule = events.Rule(self, id_, description=description, event_pattern=pattern)
        rule.add_target(
            events_targets.SnsTopic(self.topic, message=events.RuleTargetInput.from_text(sentence))
        )
        self.rules[kind] = rule

