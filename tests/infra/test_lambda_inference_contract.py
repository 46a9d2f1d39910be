"""LambdaInference's side of contract C1: a physical function name (validated) and invoke grants that cover both
``lambda:InvokeFunction`` and ``lambda:InvokeFunctionUrl`` on the function and its qualifiers."""

from __future__ import annotations

import aws_cdk as cdk
import pytest
from aws_cdk import aws_iam as iam
from aws_cdk.assertions import Template

from mlops_constructs.lambda_inference import LambdaInference
from stacks import code_locations as code

MODEL = "s3://example-models/models/abalone/v1/model.tar.gz"


def _stack() -> cdk.Stack:
    # Reference assets in place: no copy of the layer per test.
    app = cdk.App(context={"aws:cdk:disable-asset-staging": True})
    return cdk.Stack(app, "InferenceContract")


def _inference(stack: cdk.Stack, **kwargs) -> LambdaInference:
    return LambdaInference(stack, "Inference", mode="model", model_s3_uri=MODEL, code_dir=code.INFERENCE_CODE,
                           dependencies_dir=code.INFERENCE_DEPENDENCIES, **kwargs)


def _statements(template: dict, role_id: str) -> list[dict]:
    out = []
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::IAM::Policy" and {"Ref": role_id} in resource["Properties"]["Roles"]:
            out.extend(resource["Properties"]["PolicyDocument"]["Statement"])
    return out


def _function_id(template: dict) -> str:
    (function_id,) = [k for k, v in template["Resources"].items() if v["Type"] == "AWS::Lambda::Function"]
    return function_id


def test_function_name_is_set_when_given():
    stack = _stack()
    _inference(stack, function_name="mlops-dev-abalone-staging")
    template = Template.from_stack(stack).to_json()
    assert template["Resources"][_function_id(template)]["Properties"]["FunctionName"] == "mlops-dev-abalone-staging"


def test_function_name_defaults_to_cloudformation_generated():
    stack = _stack()
    _inference(stack)
    template = Template.from_stack(stack).to_json()
    assert "FunctionName" not in template["Resources"][_function_id(template)]["Properties"]


@pytest.mark.parametrize(
    "name",
    ["", "a" * 65, "mlops dev", "mlops.dev.abalone", "mlops/dev", "arn:aws:lambda:us-east-1:123456789012:function:x"],
)
def test_invalid_function_names_are_rejected(name):
    with pytest.raises(ValueError, match=r"^LambdaInference function_name must be 1-64 letters, digits, hyphens or "):
        _inference(_stack(), function_name=name)


def test_longest_valid_name_and_tokens_are_accepted():
    _inference(_stack(), function_name="A_b-9" + "x" * 59)
    stack = _stack()
    name = cdk.CfnParameter(stack, "FunctionName").value_as_string
    _inference(stack, function_name=name)  # a token is not checked at synth


def _grant_statements(grant: str) -> tuple[str, list[dict]]:
    stack = _stack()
    inference = _inference(stack, function_name="mlops-dev-abalone-staging")
    caller = iam.Role(stack, "Caller", assumed_by=iam.AccountRootPrincipal())
    getattr(inference, grant)(caller)
    template = Template.from_stack(stack).to_json()
    role_id = next(k for k, v in template["Resources"].items()
                   if v["Type"] == "AWS::IAM::Role" and k.startswith("Caller"))
    return _function_id(template), _statements(template, role_id)


def _covers_function_and_qualifiers(statement: dict, function_id: str) -> None:
    arn = {"Fn::GetAtt": [function_id, "Arn"]}
    assert statement["Resource"] == [arn, {"Fn::Join": ["", [arn, ":*"]]}]


def test_grant_invoke_gives_both_actions_on_the_function_and_its_qualifiers():
    function_id, statements = _grant_statements("grant_invoke")
    (statement,) = statements
    assert statement["Effect"] == "Allow" and "Condition" not in statement
    assert sorted(statement["Action"]) == ["lambda:InvokeFunction", "lambda:InvokeFunctionUrl"]
    _covers_function_and_qualifiers(statement, function_id)


def test_grant_invoke_url_gives_both_actions_for_url_calls_only():
    function_id, statements = _grant_statements("grant_invoke_url")
    by_action = {s["Action"]: s for s in statements}
    assert set(by_action) == {"lambda:InvokeFunction", "lambda:InvokeFunctionUrl"}
    assert by_action["lambda:InvokeFunctionUrl"]["Condition"] == {
        "StringEquals": {"lambda:FunctionUrlAuthType": "AWS_IAM"}
    }
    assert by_action["lambda:InvokeFunction"]["Condition"] == {"Bool": {"lambda:InvokedViaFunctionUrl": True}}
    for statement in statements:
        _covers_function_and_qualifiers(statement, function_id)
