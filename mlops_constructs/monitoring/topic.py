"""The alarm topic every alarm and failure notification of the platform goes to."""

from __future__ import annotations

from typing import Optional, Sequence

from aws_cdk import Aws, RemovalPolicy
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from mlops_constructs.storage import rotating_key


class AlarmTopic(Construct):
    """SNS topic every alarm and failure notification goes to, encrypted with its own rotating KMS key.

    The key policy lets CloudWatch alarms and EventBridge rules use the key; the topic policy lets them publish from
    this account only, and refuses non-TLS requests. With ``budgets`` (or after :meth:`allow_budgets`), AWS Budgets may
    publish too (an environment's budget notifications, :class:`mlops_constructs.budget.EnvironmentBudget`): the
    topic policy allows ``budgets.amazonaws.com`` for budgets of this account only (``aws:SourceAccount`` and
    ``aws:SourceArn`` ``arn:<partition>:budgets::<account>:*``, the Budgets user guide's statement), and the key policy
    lets it use the key (``kms:GenerateDataKey*`` and ``kms:Decrypt``, what SNS asks of an AWS service publishing to
    an encrypted topic; without them the notifications are dropped silently).

    :param emails: email addresses subscribed to the topic (each must confirm the subscription). Default: none.
    :param topic_name: physical name. Default: generated.
    :param display_name: sender name of the emails. Default: ``topic_name`` or "MLOps alarms".
    :param removal_policy: of the key. Default: RETAIN.
    :param budgets: let AWS Budgets of this account publish (topic and key policies; :meth:`allow_budgets`).
        Default: False.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        emails: Sequence[str] = (),
        topic_name: Optional[str] = None,
        display_name: Optional[str] = None,
        removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
        budgets: bool = False,
    ) -> None:
        super().__init__(scope, id_)
        self.key = rotating_key(
            self, "Key", description=f"Alarm notifications {topic_name or ''}".strip(), removal_policy=removal_policy
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AlarmPublishers",
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                principals=[
                    iam.ServicePrincipal("cloudwatch.amazonaws.com"),
                    iam.ServicePrincipal("events.amazonaws.com"),
                ],
                resources=["*"],
            )
        )
        self.topic = sns.Topic(
            self,
            "Topic",
            topic_name=topic_name,
            display_name=display_name or topic_name or "MLOps alarms",
            master_key=self.key,
            enforce_ssl=True,
        )
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AlarmPublishers",
                actions=["sns:Publish"],
                principals=[
                    iam.ServicePrincipal("cloudwatch.amazonaws.com"),
                    iam.ServicePrincipal("events.amazonaws.com"),
                ],
                resources=[self.topic.topic_arn],
                conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}},
            )
        )
        self._budgets_allowed = False
        if budgets:
            self.allow_budgets()
        for email in emails:
            self.topic.add_subscription(subscriptions.EmailSubscription(email))
        self.alarm_action = cloudwatch_actions.SnsAction(self.topic)

    def allow_budgets(self) -> None:
        """Let AWS Budgets of this account publish to the topic (idempotent). Budgets publishes budget notifications of this account (Budgets user guide, "Creating an Amazon SNS
        topic for budget notifications") with the data key of the topic's key (SNS developer guide, key management:
        an AWS service publishing to an encrypted topic needs ``kms:GenerateDataKey*`` and ``kms:Decrypt``). The key
        statement carries no source conditions: SNS documents none for service publishers, and the topic policy,
        which does, decides who publishes."""
        if self._budgets_allowed:
            return
        self._budgets_allowed = True
        budgets = iam.ServicePrincipal("budgets.amazonaws.com")
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="BudgetsPublisher",
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                principals=[budgets],
                resources=["*"],
            )
        )
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="BudgetsPublisher",
                actions=["sns:Publish"],
                principals=[budgets],
                resources=[self.topic.topic_arn],
                conditions={
                    "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
                    "ArnLike": {"aws:SourceArn": f"arn:{Aws.PARTITION}:budgets::{Aws.ACCOUNT_ID}:*"},
                },
            )
        )

    @property
    def topic_arn(self) -> str:
        return self.topic.topic_arn
