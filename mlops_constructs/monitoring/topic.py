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
    this account only, and refuses non-TLS requests.

    :param emails: email addresses subscribed to the topic (each must confirm the subscription). Default: none.
    :param topic_name: physical name. Default: generated.
    :param display_name: sender name of the emails. Default: ``topic_name`` or "MLOps alarms".
    :param removal_policy: of the key. Default: RETAIN.
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
        for email in emails:
            self.topic.add_subscription(subscriptions.EmailSubscription(email))
        self.alarm_action = cloudwatch_actions.SnsAction(self.topic)

    @property
    def topic_arn(self) -> str:
        return self.topic.topic_arn
