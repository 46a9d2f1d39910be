"""Check a synthesized SageMaker pipeline definition against the SageMaker API's own request shapes (botocore).

Each Processing/Training/RegisterModel/Model step's ``Arguments`` is the request of the matching ``Create*`` call.
Pipeline expressions (``{"Get": ...}``, ``{"Std:Join": ...}``, ``{"Std:JsonGet": ...}``) are replaced by a placeholder
of the type the API expects at that spot, then botocore's ParamValidator runs against the current service model.
"""

from __future__ import annotations

import json
import re
from typing import Any

import botocore.session
from botocore.validate import ParamValidator

OPERATIONS = {
    "Processing": ("CreateProcessingJob", {"ProcessingJobName": "pipelines-step"}),
    "QualityCheck": ("CreateProcessingJob", {"ProcessingJobName": "pipelines-step"}),
    "Training": ("CreateTrainingJob", {"TrainingJobName": "pipelines-step"}),
    "RegisterModel": ("CreateModelPackage", {}),
    "Model": ("CreateModel", {"ModelName": "pipelines-model"}),
}
EXPRESSION_KEYS = {"Get", "Std:Join", "Std:JsonGet", "Std:Concat"}
_MODEL = botocore.session.get_session().get_service_model("sagemaker")


def resolve_cfn_string(value: Any) -> str:
    """A CloudFormation string value (plain or Fn::Join of intrinsics) with each intrinsic replaced by 'token'."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Join" in value:
        sep, parts = value["Fn::Join"]
        return sep.join(resolve_cfn_string(p) for p in parts)
    if isinstance(value, dict) and "Fn::Sub" in value and isinstance(value["Fn::Sub"], str):
        # e.g. an asset URL: s3://cdk-...-assets-${AWS::AccountId}-${AWS::Region}/<hash>.py (the key stays visible)
        return re.sub(r"\$\{[^}]+\}", "token", value["Fn::Sub"])
    return "arn-or-name-resolved-by-cloudformation"


def _is_expression(node: Any) -> bool:
    return isinstance(node, dict) and len(node) == 1 and next(iter(node)) in EXPRESSION_KEYS


def _placeholder(shape) -> Any:
    return {"string": "placeholder", "integer": 1, "long": 1, "float": 1.0, "double": 1.0, "boolean": True}.get(
        shape.type_name, "placeholder"
    )


def concretize(node: Any, shape) -> Any:
    """Replace pipeline expressions by typed placeholders, following the API shape."""
    if _is_expression(node):
        return _placeholder(shape)
    if shape is None:
        return node
    if shape.type_name == "structure" and isinstance(node, dict):
        return {k: concretize(v, shape.members.get(k)) for k, v in node.items()}
    if shape.type_name == "list" and isinstance(node, list):
        return [concretize(v, shape.member) for v in node]
    if shape.type_name == "map" and isinstance(node, dict):
        return {k: concretize(v, shape.value) for k, v in node.items()}
    return node


def check_step(step: dict) -> list[str]:
    """Problems with one step's Arguments (empty when the SageMaker API would accept them)."""
    if step["Type"] not in OPERATIONS:
        return []
    operation, generated = OPERATIONS[step["Type"]]
    shape = _MODEL.operation_model(operation).input_shape
    args = concretize({**generated, **step["Arguments"]}, shape)
    report = ParamValidator().validate(args, shape)
    return [f"{step['Name']} ({operation}): {line}" for line in report.generate_report().splitlines() if line]


def check_definition(definition: dict) -> list[str]:
    problems = []
    for step in all_steps(definition):
        problems += check_step(step)
    return problems


def all_steps(definition: dict) -> list[dict]:
    """Top-level steps and those nested in condition branches."""
    out = []

    def walk(steps):
        for s in steps:
            out.append(s)
            if s["Type"] == "Condition":
                walk(s["Arguments"].get("IfSteps", []))
                walk(s["Arguments"].get("ElseSteps", []))

    walk(definition["Steps"])
    return out


def definition_from_template(template: dict) -> dict:
    (pipeline,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::SageMaker::Pipeline"]
    body = pipeline["Properties"]["PipelineDefinition"]["PipelineDefinitionBody"]
    return json.loads(resolve_cfn_string(body))
