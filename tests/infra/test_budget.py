"""EnvironmentBudget and the alarm topic's permissions for AWS Budgets; the dev shared stack's budget (issue 14)."""

from __future__ import annotations

import json
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk import aws_sns as sns
from aws_cdk.assertions import Match, Template
from cdk_nag import AwsSolutionsChecks

import cfnlint.api
from mlops_constructs.budget import EnvironmentBudget
from mlops_constructs.monitoring import AlarmTopic
from platform_config import load_config

BUDGETS = {"Service": "budgets.amazonaws.com"}


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """The dev config's shared stack alone, synthesized under cdk-nag (a finding fails)."""
    from stacks.shared_stack import SharedStack

    config = load_config("dev")
    outdir = tmp_path_factory.mktemp("budget-shared")
    app = cdk.App(outdir=str(outdir))
    stack = SharedStack(app, "Shared", config=config)
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    try:
        app.synth()
    except RuntimeError as exc:
        report = outdir / "validation-report.json"
        raise AssertionError(f"{exc}\n{report.read_text() if report.exists() else ''}") from None
    path = outdir / f"{stack.artifact_id}.template.json"
    return config, stack, json.loads(path.read_text()), path


def _statements(template: dict, cfn_type: str, key: str) -> list[dict]:
    return [s for r in template["Resources"].values() if r["Type"] == cfn_type
            for s in r["Properties"][key]["Statement"]]


def test_dev_shared_stack_has_the_budget_from_the_config(shared):
    config, stack, template, _ = shared
    tpl = Template.from_json(template)
    tpl.resource_count_is("AWS::Budgets::Budget", 1)
    topic = {"Ref": stack.get_logical_id(stack.alarm_topic.topic.node.default_child)}
    notification = lambda threshold: {  # noqa: E731
        "Notification": {"NotificationType": "FORECASTED", "ComparisonOperator": "GREATER_THAN",
                         "Threshold": threshold, "ThresholdType": "PERCENTAGE"},
        "Subscribers": [{"SubscriptionType": "SNS", "Address": topic}],
    }
    tpl.has_resource_properties("AWS::Budgets::Budget", {
        "Budget": {
            "BudgetType": "COST",
            "TimeUnit": "MONTHLY",
            "BudgetLimit": {"Amount": 500, "Unit": "USD"},
            "Metrics": ["UnblendedCost"],
            "FilterExpression": {"And": [
                {"Tags": {"Key": "environment", "Values": ["dev"]}},
                {"Tags": {"Key": "project", "Values": ["mlops"]}},
            ]},
            "BudgetName": Match.absent(),  # account-wide names: CloudFormation generates one
        },
        "NotificationsWithSubscribers": [notification(80), notification(100)],
    })
    assert config.budget.monthly_usd == 500


def test_the_budget_is_created_after_the_topic_and_key_policies(shared):
    _, stack, template, _ = shared
    (budget,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::Budgets::Budget"]
    policy = next(k for k, r in template["Resources"].items() if r["Type"] == "AWS::SNS::TopicPolicy")
    key = stack.get_logical_id(stack.alarm_topic.key.node.default_child)
    assert {policy, key} <= set(budget["DependsOn"])


def test_topic_policy_lets_budgets_of_this_account_publish(shared):
    _, stack, template, _ = shared
    topic = {"Ref": stack.get_logical_id(stack.alarm_topic.topic.node.default_child)}
    (statement,) = [s for s in _statements(template, "AWS::SNS::TopicPolicy", "PolicyDocument")
                    if s.get("Principal") == BUDGETS]
    assert statement["Effect"] == "Allow" and statement["Action"] == "sns:Publish"
    assert statement["Resource"] == topic
    assert statement["Condition"] == {
        "StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}},
        "ArnLike": {"aws:SourceArn": {"Fn::Join": ["", [
            "arn:", {"Ref": "AWS::Partition"}, ":budgets::", {"Ref": "AWS::AccountId"}, ":*"]]}},
    }


def test_key_policy_lets_budgets_encrypt_for_the_topic(shared):
    _, _, template, _ = shared
    (statement,) = [s for s in _statements(template, "AWS::KMS::Key", "KeyPolicy") if s.get("Principal") == BUDGETS]
    assert statement["Effect"] == "Allow" and statement["Resource"] == "*"
    assert sorted(statement["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey*"]


def test_dev_shared_stack_is_cfn_lint_clean(shared):
    matches = cfnlint.api.lint_file(shared[3], cfnlint.api.ManualArgs(regions=["us-east-1", "eu-west-1"]))
    assert [str(m) for m in matches if m.rule.severity == "error"] == []


# ---- the constructs alone -------------------------------------------------------------------------------------------


def _stack() -> cdk.Stack:
    return cdk.Stack(cdk.App(), "S")


def test_alarm_topic_allows_budgets_only_when_asked():
    stack = _stack()
    AlarmTopic(stack, "Plain")
    text = json.dumps(Template.from_stack(stack).to_json())
    assert "budgets.amazonaws.com" not in text

    stack = _stack()
    topic = AlarmTopic(stack, "ForBudgets", budgets=True)
    topic.allow_budgets()  # idempotent: one statement each
    template = Template.from_stack(stack).to_json()
    assert len([s for s in _statements(template, "AWS::SNS::TopicPolicy", "PolicyDocument")
                if s.get("Principal") == BUDGETS]) == 1
    assert len([s for s in _statements(template, "AWS::KMS::Key", "KeyPolicy") if s.get("Principal") == BUDGETS]) == 1


def test_budget_defaults_whole_account_and_actual_notifications():
    stack = _stack()
    topic = sns.Topic(stack, "Topic")
    EnvironmentBudget(stack, "Budget", topic=topic, monthly_limit_usd=12.5, thresholds_percent=[50],
                      notification_type="ACTUAL")
    props = Template.from_stack(stack).find_resources("AWS::Budgets::Budget")
    (budget,) = [r["Properties"] for r in props.values()]
    assert "FilterExpression" not in budget["Budget"] and budget["Budget"]["BudgetLimit"]["Amount"] == 12.5
    (notification,) = budget["NotificationsWithSubscribers"]
    assert notification["Notification"]["NotificationType"] == "ACTUAL"
    assert notification["Notification"]["Threshold"] == 50


def test_budget_with_one_tag_filters_on_it_without_and():
    stack = _stack()
    EnvironmentBudget(stack, "Budget", topic=sns.Topic(stack, "Topic"), monthly_limit_usd=10,
                      cost_allocation_tags={"environment": "dev"})
    Template.from_stack(stack).has_resource_properties("AWS::Budgets::Budget", {
        "Budget": {"FilterExpression": {"Tags": {"Key": "environment", "Values": ["dev"]}}},
    })


@pytest.mark.parametrize("kwargs,message", [
    ({"monthly_limit_usd": 0}, "monthly_limit_usd must be more than 0, got 0"),
    ({"monthly_limit_usd": 10, "thresholds_percent": []}, "thresholds_percent: 1 to 5 thresholds"),
    ({"monthly_limit_usd": 10, "thresholds_percent": [10, 20, 30, 40, 50, 60]}, "thresholds_percent: 1 to 5"),
    ({"monthly_limit_usd": 10, "thresholds_percent": [80, 80]}, "must be distinct percentages above 0"),
    ({"monthly_limit_usd": 10, "notification_type": "SOON"}, "notification_type must be FORECASTED or ACTUAL"),
])
def test_budget_refuses_bad_props(kwargs, message):
    stack = _stack()
    with pytest.raises(ValueError, match=message):
        EnvironmentBudget(stack, "Budget", topic=sns.Topic(stack, "Topic"), **kwargs)


def test_no_budget_in_the_config_means_no_budget_and_no_budgets_permissions(tmp_path):
    from stacks.shared_stack import SharedStack

    config = load_config("dev").model_copy(update={"budget": None})
    app = cdk.App(outdir=str(tmp_path))
    stack = SharedStack(app, "Shared", config=config)
    assert stack.budget is None
    text = json.dumps(Template.from_stack(stack).to_json())
    assert "AWS::Budgets::Budget" not in text and "budgets.amazonaws.com" not in text


def test_readme_documents_the_budget_fields():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for field in ("`budget.monthly_usd`", "cost allocation tags", "`models[].batch`", "`models[].retraining`",
                  "`models[].champion`", "`models[].model_quality`", "`models[].spot_training`",
                  "`models[].stages[].endpoint`", "idle_endpoint_hours"):
        assert field in readme, field
