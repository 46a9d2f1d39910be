"""The pipeline definition as SageMaker Pipelines reads it: steps and their dependencies, parameters, expressions
(``Get``, ``Std:Join``, ``Std:JsonGet``) and the step cache's keys. See :mod:`rehearsal.pipeline`."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

from rehearsal.assembly import RehearsalError, Stack
from rehearsal.context import Rehearsal, split_s3_uri

CACHE_KEY_ATTRIBUTES = {
    "Processing": ("AppSpecification", "Environment", "ProcessingInputs"),
    "QualityCheck": ("AppSpecification", "Environment", "ProcessingInputs", "CheckType"),
    "Training": (
        "AlgorithmSpecification", "CheckpointConfig", "DebugHookConfig", "DebugRuleConfigurations", "Environment",
        "HyperParameters", "InputDataConfig",
    ),
}


class StepFailure(RehearsalError):
    """A step failed as it would in SageMaker (FailureReason); the message names the step and the cause."""


@dataclass
class CacheEntry:
    """A successful step run: where (pipeline ARN, step, cache key), when, and what it gave."""

    where: tuple[str, str, str]
    finished: float
    properties: dict[str, Any]
    outputs: dict[str, Any]
    execution_id: str


class PipelineCache:
    """Successful step runs of every execution, for step caching across :func:`run_pipeline` calls.

    ``clock`` gives the time in seconds (a test can move it past ``ExpireAfter``)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.entries: list[CacheEntry] = []

    def lookup(self, pipeline_arn: str, step: str, key: str, expire_after: Optional[float]) -> Optional[CacheEntry]:
        now = self.clock()
        found = [e for e in self.entries
                 if e.where == (pipeline_arn, step, key) and (expire_after is None or now - e.finished <= expire_after)]
        return max(found, key=lambda e: e.finished) if found else None

    def add(self, entry: CacheEntry) -> None:
        self.entries.append(entry)


_DURATION = re.compile(
    r"^P?(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$", re.IGNORECASE
)


def iso_duration_seconds(text: Optional[str]) -> Optional[float]:
    """ISO 8601 duration (``P30D``, ``PT1H``, also the docs' ``30d``/``T16m``) in seconds; None = no expiry."""
    if not text:
        return None
    match = _DURATION.match(text.strip())
    if not match or not any(match.groups()):
        raise RehearsalError(f"CacheConfig.ExpireAfter {text!r} is not an ISO 8601 duration")
    y, mo, w, d, h, mi, s = (int(g or 0) for g in match.groups())
    return float(((((y * 365 + mo * 30 + w * 7 + d) * 24 + h) * 60 + mi) * 60) + s)


# --- the definition -------------------------------------------------------------------------------------------------
def pipeline_definition(rh: Rehearsal, model_stack: Stack) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(logical id, resolved resource properties, parsed definition) of the stack's one pipeline."""
    logical, res = model_stack.one("AWS::SageMaker::Pipeline")
    props = rh.assembly.resolver.resolve(model_stack, res.get("Properties") or {})
    body = (props.get("PipelineDefinition") or {}).get("PipelineDefinitionBody")
    if body is None:
        raise RehearsalError(
            f"{model_stack.name}/{logical}: no PipelineDefinitionBody (an S3 definition is not rehearsed)"
        )
    definition = json.loads(body) if isinstance(body, str) else body
    return logical, props, definition


def flatten_steps(steps: list[dict], parent: Optional[str] = None) -> dict[str, tuple[dict, Optional[str]]]:
    """Every step (condition branches included) -> (step, the condition step whose branch holds it)."""
    out: dict[str, tuple[dict, Optional[str]]] = {}
    for step in steps:
        if step["Name"] in out:
            raise RehearsalError(f"pipeline definition: two steps named {step['Name']!r}")
        out[step["Name"]] = (step, parent)
        if step.get("Type") == "Condition":
            args = step.get("Arguments", {})
            for child in (*args.get("IfSteps", []), *args.get("ElseSteps", [])):
                for name, value in flatten_steps([child], step["Name"]).items():
                    if name in out:
                        raise RehearsalError(f"pipeline definition: two steps named {name!r}")
                    out[name] = value
    return out


def _gets(node: Any, prefix: str) -> set[str]:
    """The paths after ``prefix`` of the ``{"Get": "<prefix>..."}`` in a step's own arguments (branches of a
    condition step excluded)."""
    found: set[str] = set()
    if isinstance(node, dict):
        get = node.get("Get")
        if isinstance(get, str) and get.startswith(prefix):
            found.add(get[len(prefix):])
        for key, value in node.items():
            if key not in ("IfSteps", "ElseSteps"):
                found |= _gets(value, prefix)
    elif isinstance(node, list):
        for value in node:
            found |= _gets(value, prefix)
    return found


def parameters_read(node: Any) -> set[str]:
    """Pipeline parameters a step's own arguments read (branches of a condition step excluded)."""
    return _gets(node, "Parameters.")


def references(node: Any) -> set[str]:
    """Steps a node refers to (``Steps.<name>...``), branches of a condition step excluded."""
    return {re.match(r"^([^.\[]+)", path).group(1) for path in _gets(node, "Steps.")}


class Expressions:
    """Parameters and expressions of one execution (a mixin of the execution, which holds the definition, the
    steps' properties and property files, the pipeline role and the stand-in cloud)."""

    def _parameters(self, given: dict[str, Any]) -> dict[str, Any]:
        declared = {p["Name"]: p for p in self.definition.get("Parameters", [])}
        unknown = sorted(set(given) - set(declared))
        if unknown:
            raise RehearsalError(
                f"StartPipelineExecution of {self.name}: parameters {unknown} are not declared by the pipeline "
                f"(declared: {sorted(declared)})"
            )
        out = {}
        for name, spec in declared.items():
            value = given.get(name, spec.get("DefaultValue"))
            if value is None:
                raise RehearsalError(f"StartPipelineExecution of {self.name}: parameter {name} has no value")
            kind = spec.get("Type", "String")
            try:
                if kind == "Float":
                    value = float(value)
                elif kind == "Integer":
                    value = int(value)
                elif kind == "Boolean":
                    value = value if isinstance(value, bool) else str(value).lower() == "true"
                else:
                    value = str(value)
            except ValueError:
                raise RehearsalError(f"parameter {name}={value!r} is not a {kind}") from None
            out[name] = value
        return out

    def execution_variable(self, name: str) -> Any:
        now = dt.datetime.now(dt.timezone.utc)
        values = {
            "PipelineExecutionId": self.execution_id,
            "PipelineExecutionArn": self.execution_arn,
            "PipelineName": self.name,
            "PipelineArn": self.arn,
            "StartDateTime": self.start.isoformat(),
            "CurrentDateTime": now.isoformat(),
        }
        if name not in values:
            raise RehearsalError(f"unknown execution variable Execution.{name}")
        return values[name]

    def evaluate(self, node: Any) -> Any:
        if isinstance(node, list):
            return [self.evaluate(v) for v in node]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, arg), = node.items()
            if key == "Get" and isinstance(arg, str):
                return self._get(arg)
            if key == "Std:Join":
                values = self.evaluate(arg["Values"])
                return str(arg.get("On", "")).join(as_text(v) for v in values)
            if key == "Std:JsonGet":
                return self._json_get(arg)
        return {k: self.evaluate(v) for k, v in node.items()}

    def _get(self, path: str) -> Any:
        head, _, rest = path.partition(".")
        if head == "Parameters":
            if rest not in self.parameters:
                raise RehearsalError(f"{{'Get': {path!r}}}: the pipeline declares no parameter {rest}")
            return self.parameters[rest]
        if head == "Execution":
            return self.execution_variable(rest)
        if head == "Steps":
            step = re.match(r"^([^.\[]+)", rest).group(1)
            if step not in self.properties:
                raise RehearsalError(f"{{'Get': {path!r}}}: step {step} has not run (or has no properties)")
            node: Any = self.properties[step]
            for attr, key, index in re.findall(r"\.?([A-Za-z0-9_]+)|\['([^']*)'\]|\[(\d+)\]", rest[len(step):]):
                try:
                    if attr:
                        node = node[attr]
                    elif index:
                        node = list(node.values())[int(index)] if isinstance(node, dict) else node[int(index)]
                    else:
                        node = node[key]
                except (KeyError, IndexError, TypeError):
                    raise RehearsalError(
                        f"{{'Get': {path!r}}}: step {step} has no such property (its properties: "
                        f"{sorted(self.properties[step])})"
                    ) from None
            return node
        raise RehearsalError(f"unsupported expression {{'Get': {path!r}}}")

    def _json_get(self, arg: dict) -> Any:
        json_path = arg["Path"]
        if "PropertyFile" in arg:
            ref = arg["PropertyFile"]
            ref = ref.get("Get") if isinstance(ref, dict) else ref
            match = re.match(r"^Steps\.([^.]+)\.PropertyFiles\.(.+)$", str(ref))
            if not match:
                raise RehearsalError(f"Std:JsonGet: unsupported PropertyFile reference {ref!r}")
            step, file_name = match.groups()
            spec = self.property_files.get(step, {}).get(file_name)
            if spec is None:
                raise RehearsalError(f"Std:JsonGet: step {step} declares no PropertyFile {file_name}")
            outputs = self.properties[step]["ProcessingOutputConfig"]["Outputs"]
            if spec["OutputName"] not in outputs:
                raise RehearsalError(
                    f"Std:JsonGet: PropertyFile {file_name} names output {spec['OutputName']!r}, which step {step} "
                    f"does not have ({sorted(outputs)})"
                )
            uri = outputs[spec["OutputName"]]["S3Output"]["S3Uri"].rstrip("/") + "/" + spec["FilePath"]
        else:
            uri = self.evaluate(arg["S3Uri"])
        bucket, key = split_s3_uri(uri)
        s3 = self.cloud.client("s3", self.role_arn)  # the service reads the property file with the pipeline role
        try:
            document = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        except s3.exceptions.NoSuchKey:
            raise StepFailure(f"Std:JsonGet: {uri} does not exist (the property file was not written)") from None
        except Exception as exc:  # AccessDenied and friends
            raise StepFailure(f"Std:JsonGet: reading {uri} with the pipeline role failed: {exc}") from None
        return read_json_path(document, json_path, uri)


def as_text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return value if isinstance(value, str) else json.dumps(value) if isinstance(value, (dict, list)) else str(value)


def read_json_path(document: Any, path: str, where: str) -> Any:
    node = document
    for attr, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", path):
        try:
            node = node[int(index)] if index else node[attr]
        except (KeyError, IndexError, TypeError):
            raise StepFailure(f"Std:JsonGet: {path!r} is not in {where}") from None
    return node


def cache_key(kind: str, args: dict) -> str:
    attributes = {k: args.get(k) for k in CACHE_KEY_ATTRIBUTES[kind]}
    return hashlib.sha256(json.dumps(attributes, sort_keys=True, default=str).encode()).hexdigest()
