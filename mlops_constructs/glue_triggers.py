"""What starts a dataset's Glue ETL workflow: raw-zone object events and/or a schedule, through EventBridge.

:class:`~mlops_constructs.glue_etl.GlueEtl` takes :class:`EtlTriggers` and calls :func:`event_triggers` when it has
one; without any, its workflow runs on demand only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import jsii
from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct


@dataclass(frozen=True)
class EtlTriggers:
    """What starts the dataset's ETL workflow (with neither, it runs on demand only).

    :param on_raw_upload: an ``Object Created`` event under the dataset's raw prefix (the raw bucket must send events
        to EventBridge). Default: True.
    :param schedule: an EventBridge schedule expression (``cron(...)``/``rate(...)``). Default: none.
    """

    on_raw_upload: bool = True
    schedule: Optional[str] = None


@jsii.implements(events.IRuleTarget)
class GlueWorkflowTarget:
    """EventBridge target that notifies a Glue workflow's EVENT trigger (there is no L2 target for it).

    :param workflow: the workflow whose EVENT trigger the rule notifies.
    :param role: the role EventBridge assumes for it (``glue:notifyEvent`` on the workflow).
    """

    def __init__(self, workflow: glue.Workflow, role: iam.IRole) -> None:
        self._workflow = workflow
        self._role = role

    def bind(self, _rule: events.IRule, _id: Optional[str] = None) -> events.RuleTargetConfig:
        return events.RuleTargetConfig(arn=self._workflow.workflow_arn, role=self._role)


def event_triggers(
    scope: Construct,
    workflow: glue.Workflow,
    job: glue.IJob,
    triggers: EtlTriggers,
    *,
    raw_bucket: s3.IBucket,
    raw_prefix: str,
    dataset: str,
) -> list[events.Rule]:
    """The workflow's EVENT trigger of ``job`` and the EventBridge rules that notify it; returns the rules.

    :param scope: the ETL construct (the role is ``EventsToWorkflowRole``, the rules ``OnRawUpload``/``OnSchedule``).
    :param workflow: the dataset's workflow. :param job: the ETL job the trigger starts.
    :param triggers: which rules (at least one of ``on_raw_upload`` and ``schedule``).
    :param raw_bucket / raw_prefix: where a created object starts a run (``on_raw_upload``).
    :param dataset: the dataset's name, for the descriptions.
    """
    # EVENT triggers listen as soon as they exist (StartOnCreation applies to SCHEDULED/CONDITIONAL only).
    workflow.add_event_trigger(
        "Start",
        actions=[glue.Action.job(job)],
        event_batching_condition=glue.EventBatchingCondition(batch_size=100, batch_window=Duration.minutes(5)),
    )
    notify_role = iam.Role(
        scope,
        "EventsToWorkflowRole",
        assumed_by=iam.ServicePrincipal("events.amazonaws.com"),
        description="EventBridge notifies the ETL workflow",
    )
    notify_role.add_to_policy(
        iam.PolicyStatement(actions=["glue:notifyEvent"], resources=[workflow.workflow_arn])
    )
    target = GlueWorkflowTarget(workflow, notify_role)
    rules: list[tuple[str, str, dict]] = []
    if triggers.on_raw_upload:
        pattern = events.EventPattern(
            source=["aws.s3"],
            detail_type=["Object Created"],
            detail={
                "bucket": {"name": [raw_bucket.bucket_name]},
                "object": {"key": [{"prefix": raw_prefix}]},
            },
        )
        description = f"Raw {dataset} object created: start the ETL workflow"
        rules.append(("OnRawUpload", description, {"event_pattern": pattern}))
    if triggers.schedule:
        schedule = events.Schedule.expression(triggers.schedule)
        rules.append(("OnSchedule", f"Scheduled {dataset} ingestion", {"schedule": schedule}))
    return [events.Rule(scope, id_, description=description, targets=[target], **source)
            for id_, description, source in rules]
