"""Rehearse the model stack's SageMaker Pipeline from its synthesized definition, as SageMaker Pipelines runs it.

:func:`run_pipeline` reads ``AWS::SageMaker::Pipeline`` of the model stack from ``cdk.out`` (``PipelineDefinitionBody``
resolved by the assembly's resolver: a JSON string), starts an "execution" (ID, ARN, parameters: the definition's
defaults overridden by the caller's, unknown names refused as StartPipelineExecution refuses them) and runs its steps
in dependency order (``DependsOn`` and every ``Steps.<name>`` reference) against the stand-in account:

- expressions: ``{"Get": "Parameters.X"}``, ``{"Get": "Execution.<variable>"}`` (PipelineExecutionId,
  PipelineExecutionArn, PipelineName, PipelineArn, StartDateTime, CurrentDateTime), ``{"Get": "Steps.<step>.<path>"}``
  (``ProcessingOutputConfig.Outputs['x'].S3Output.S3Uri``, ``ModelArtifacts.S3ModelArtifacts``,
  ``CalculatedBaselineStatistics`` ...), ``Std:Join`` and ``Std:JsonGet`` (the PropertyFile read from the step's output
  in S3 with the pipeline role). ``PipelineExperimentConfig`` is evaluated and recorded (no Experiments API is
  called: moto has none; the permissions it needs are reported in the facts).
- SageMaker API calls the service makes with the pipeline role: ``CreateProcessingJob``/``CreateTrainingJob``
  (+ ``sagemaker:AddTags`` when the job has tags, + ``iam:PassRole`` of the job role) are authorized against the role's
  policies in moto's IAM (moto does not run jobs); ``CreateModelPackage`` is called in moto under the role.
- Processing (and QualityCheck) jobs: a stand-in ``/opt/ml`` per job (a private mount namespace, ``unshare -m``, so
  concurrent rehearsals never share it; ``context.opt_ml``'s symlink where that is not allowed); every ``S3Input`` downloaded with
  S3Prefix semantics under the job role (asset objects put in the CDK asset bucket first, as ``cdk deploy`` does);
  ``ContainerEntrypoint`` + ``ContainerArguments`` run as written (``python3`` -> ``rh.python``), environment =
  ``Environment`` + the job role's credentials (no repository path); outputs uploaded from ``LocalPath`` to
  ``S3Output.S3Uri`` at the end of the job. An entry point naming a file the inputs did not create fails the step
  with a message naming that defect.
- Training jobs: script mode as the framework container's training toolkit runs it (see
  :mod:`rehearsal.sagemaker_standins`); ``/opt/ml/model`` tarred to ``<S3OutputPath>/<job name>/output/model.tar.gz``.
  No ``sagemaker_program``: the step fails ("algorithm mode").
- QualityCheck (DATA_QUALITY): the Model Monitor stand-in of :mod:`rehearsal.sagemaker_standins`.
- Condition: every condition must hold (Equals, GreaterThan[OrEqualTo], LessThan[OrEqualTo], In, Not, Or); then the
  If or Else branch runs. Fail: the execution fails with its ``ErrorMessage`` resolved. RegisterModel: CreateModelPackage.
- Step caching (https://docs.aws.amazon.com/sagemaker/latest/dg/pipelines-caching.html, pipelines-default-keys.html):
  a step with ``CacheConfig.Enabled`` whose cache-key attributes (processing: AppSpecification, Environment,
  ProcessingInputs; training: AlgorithmSpecification, CheckpointConfig, DebugHookConfig, DebugRuleConfigurations,
  Environment, HyperParameters, InputDataConfig), evaluated, match a previous *successful* run of the same step of
  the same pipeline within ``ExpireAfter`` is not run: it gets that run's properties (the most recent one).
  :class:`PipelineCache` keeps the step runs across :func:`run_pipeline` calls.

Not emulated: retries (RetryPolicies), parallel step execution, instance types and counts, KMS encryption of volumes
and outputs (no KMS calls are made), network isolation and VPC config, Pipe/FastFile input modes, ManifestFile
inputs, step types other than Processing, Training, QualityCheck, Condition, Fail and RegisterModel.

After the run, rehearsal findings the pipeline itself would not report (the execution "succeeds" on AWS) are listed
in :attr:`PipelineRun.findings`: a data-quality baseline whose columns are not exactly the encoded feature columns
(numeric, no header) the endpoint receives (read from the model's ``model_metadata.json``), a registered package
whose model data or metrics objects do not exist, a model.tar.gz without the inference code its container environment
names. :meth:`PipelineRun.check` raises on a failure or a finding.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import re
import secrets
import string
import subprocess
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from rehearsal.assembly import ACCOUNT, REGION, RehearsalError, Stack
from rehearsal.cloud import DENIALS, Denial, _LOCK, evaluate
from rehearsal.context import (
    OPT_ML,
    Rehearsal,
    clean_env,
    download_s3_prefix,
    opt_ml,
    split_s3_uri,
    upload_dir,
)
from rehearsal import sagemaker_standins as standins

JOB_STEP_TYPES = ("Processing", "Training", "QualityCheck")
CACHE_KEY_ATTRIBUTES = {
    "Processing": ("AppSpecification", "Environment", "ProcessingInputs"),
    "QualityCheck": ("AppSpecification", "Environment", "ProcessingInputs", "CheckType"),
    "Training": (
        "AlgorithmSpecification", "CheckpointConfig", "DebugHookConfig", "DebugRuleConfigurations", "Environment",
        "HyperParameters", "InputDataConfig",
    ),
}
MAX_JOB_SECONDS = 600  # the rehearsal's cap on one job (the definition's MaxRuntimeInSeconds applies if lower)


class StepFailure(RehearsalError):
    """A step failed as it would in SageMaker (FailureReason); the message names the step and the cause."""


# --- results --------------------------------------------------------------------------------------------------------
@dataclass
class PipelineRun:
    """One execution: ``status`` Succeeded | Failed; per step ``{"status", "cache_hit", "outputs"}``."""

    status: str
    steps: dict[str, dict[str, Any]]
    model_package_arn: Optional[str] = None
    metric: Optional[float] = None
    fail_message: Optional[str] = None
    execution_id: str = ""
    execution_arn: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    failed_step: Optional[str] = None
    findings: list[str] = field(default_factory=list)
    denials: list[str] = field(default_factory=list)
    register_arguments: Optional[dict[str, Any]] = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "Succeeded" and not self.findings

    def summary(self) -> str:
        lines = [f"pipeline execution {self.execution_id}: {self.status} in {self.seconds:.1f}s"]
        for name, step in self.steps.items():
            lines.append(f"  {name}: {step['status']}{' (cache hit)' if step.get('cache_hit') else ''}"
                         f" {step.get('seconds', 0):.1f}s")
        if self.fail_message:
            lines.append(f"  failure: {self.fail_message}")
        lines += [f"  finding: {f}" for f in self.findings]
        return "\n".join(lines)

    def check(self, expect_registered: bool = True) -> "PipelineRun":
        """Raise RehearsalError when the execution failed, a finding was made, or no package was registered."""
        problems = []
        if self.status != "Succeeded":
            problems.append(f"step {self.failed_step} failed: {self.fail_message}")
        problems += self.findings
        if expect_registered and self.status == "Succeeded" and not self.model_package_arn:
            problems.append("the execution registered no model package")
        if problems:
            raise RehearsalError("pipeline rehearsal: " + "; ".join(problems))
        return self


@dataclass
class _CacheEntry:
    pipeline_arn: str
    step: str
    key: str
    finished: float
    properties: dict[str, Any]
    outputs: dict[str, Any]
    execution_id: str


class PipelineCache:
    """Successful step runs of every execution, for step caching across :func:`run_pipeline` calls.

    ``clock`` gives the time in seconds (a test can move it past ``ExpireAfter``)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.entries: list[_CacheEntry] = []

    def lookup(self, pipeline_arn: str, step: str, key: str, expire_after: Optional[float]) -> Optional[_CacheEntry]:
        now = self.clock()
        found = [
            e for e in self.entries
            if e.pipeline_arn == pipeline_arn and e.step == step and e.key == key
            and (expire_after is None or now - e.finished <= expire_after)
        ]
        return max(found, key=lambda e: e.finished) if found else None

    def add(self, entry: _CacheEntry) -> None:
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


def _flatten(steps: list[dict], parent: Optional[str] = None) -> dict[str, tuple[dict, Optional[str]]]:
    """Every step (condition branches included) -> (step, the condition step whose branch holds it)."""
    out: dict[str, tuple[dict, Optional[str]]] = {}
    for step in steps:
        if step["Name"] in out:
            raise RehearsalError(f"pipeline definition: two steps named {step['Name']!r}")
        out[step["Name"]] = (step, parent)
        if step.get("Type") == "Condition":
            args = step.get("Arguments", {})
            for child in (*args.get("IfSteps", []), *args.get("ElseSteps", [])):
                for name, value in _flatten([child], step["Name"]).items():
                    if name in out:
                        raise RehearsalError(f"pipeline definition: two steps named {name!r}")
                    out[name] = value
    return out


def _parameters_read(node: Any) -> set[str]:
    """Pipeline parameters a step's own arguments read (branches of a condition step excluded)."""
    found: set[str] = set()
    if isinstance(node, dict):
        get = node.get("Get")
        if isinstance(get, str) and get.startswith("Parameters."):
            found.add(get.split(".", 1)[1])
        for key, value in node.items():
            if key not in ("IfSteps", "ElseSteps"):
                found |= _parameters_read(value)
    elif isinstance(node, list):
        for value in node:
            found |= _parameters_read(value)
    return found


def _references(node: Any) -> set[str]:
    """Steps a node refers to (``Steps.<name>...``), branches of a condition step excluded."""
    found: set[str] = set()
    if isinstance(node, dict):
        get = node.get("Get")
        if isinstance(get, str) and get.startswith("Steps."):
            found.add(re.match(r"^Steps\.([^.\[]+)", get).group(1))
        for key, value in node.items():
            if key not in ("IfSteps", "ElseSteps"):
                found |= _references(value)
    elif isinstance(node, list):
        for value in node:
            found |= _references(value)
    return found


# --- the execution --------------------------------------------------------------------------------------------------
class _Execution:
    def __init__(self, rh: Rehearsal, model_stack: Stack, parameters: Optional[dict], cache: Optional[PipelineCache]):
        self.rh = rh
        self.cloud = rh.cloud
        self.logical, self.props, self.definition = pipeline_definition(rh, model_stack)
        self.stack = model_stack
        self.name = self.props.get("PipelineName") or rh.assembly.resolver.name(model_stack, self.logical)
        self.arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:pipeline/{self.name}"
        self.role_arn = self.props["RoleArn"]
        self.cache = cache
        alphabet = string.ascii_lowercase + string.digits
        self.execution_id = "".join(secrets.choice(alphabet) for _ in range(12))
        self.execution_arn = f"{self.arn}/execution/{self.execution_id}"
        self.start = dt.datetime.now(dt.timezone.utc)
        self.parameters = self._parameters(parameters or {})
        self.properties: dict[str, dict[str, Any]] = {}
        self.steps: dict[str, dict[str, Any]] = {}
        self.property_files: dict[str, dict[str, dict]] = {}  # step -> PropertyFileName -> spec
        self.model_package_arn: Optional[str] = None
        self.register_arguments: Optional[dict] = None
        self.findings: list[str] = []
        self.facts: dict[str, Any] = {}
        self.role_policies_cache: dict[str, list[dict]] = {}

    # parameters and expressions
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
                return str(arg.get("On", "")).join(_text(v) for v in values)
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
        return _json_path(document, json_path, uri)

    # IAM for the calls SageMaker makes that moto does not run
    def _policies(self, role_arn: str) -> list[dict]:
        if role_arn not in self.role_policies_cache:
            iam = self.cloud.admin("iam")
            name = role_arn.rsplit("/", 1)[-1]
            docs = []
            for policy in iam.list_role_policies(RoleName=name)["PolicyNames"]:
                docs.append(iam.get_role_policy(RoleName=name, PolicyName=policy)["PolicyDocument"])
            for attached in iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]:
                meta = iam.get_policy(PolicyArn=attached["PolicyArn"])["Policy"]
                version = iam.get_policy_version(PolicyArn=attached["PolicyArn"], VersionId=meta["DefaultVersionId"])
                docs.append(version["PolicyVersion"]["Document"])
            self.role_policies_cache[role_arn] = docs
        return self.role_policies_cache[role_arn]

    def authorize(self, role_arn: str, action: str, resource: str, step: str) -> None:
        if role_arn not in self.cloud.roles:
            raise StepFailure(f"{step}: role {role_arn} is not a role of the assembly")
        if not evaluate(self._policies(role_arn), action, [[resource]]):
            principal = f"{role_arn} (assumed by SageMaker Pipelines)"
            with _LOCK:
                DENIALS.append(Denial(principal, action, (resource,)))
            raise StepFailure(
                f"{step}: AccessDenied: {role_arn} is not authorized to perform {action} on {resource}"
            )

    def _start_job(self, step: str, kind: str, job_role: str, args: dict) -> tuple[str, str]:
        """Name and ARN of the job SageMaker starts for the step, with the pipeline role's authorization."""
        suffix = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(10))
        job_name = f"pipelines-{self.execution_id}-{step}-{suffix}"[:63]
        job_arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:{kind}-job/{job_name.lower()}"
        api = {"processing": "CreateProcessingJob", "training": "CreateTrainingJob"}[kind]
        self.authorize(self.role_arn, f"sagemaker:{api}", job_arn, step)
        if args.get("Tags"):
            self.authorize(self.role_arn, "sagemaker:AddTags", job_arn, step)
        self.authorize(self.role_arn, "iam:PassRole", job_role, step)
        return job_name, job_arn

    # running
    def run(self) -> PipelineRun:
        t0 = time.time()
        flat = _flatten(self.definition.get("Steps", []))
        if self.definition.get("PipelineExperimentConfig"):
            self.facts["experiment"] = self.evaluate(self.definition["PipelineExperimentConfig"])
        deps = {}
        for name, (step, parent) in flat.items():
            deps[name] = set(step.get("DependsOn", [])) | _references(step)
            if parent:
                deps[name].add(parent)
            for d in deps[name]:
                if d not in flat:
                    raise RehearsalError(f"step {name} depends on {d}, which the pipeline does not define")
        skipped: set[str] = set()  # steps of a branch not taken
        status, fail_message, failed_step = "Succeeded", None, None
        pending = list(flat)
        while pending:
            ready = [n for n in pending if deps[n] <= set(self.steps) | skipped]
            if not ready:
                raise RehearsalError(f"pipeline definition: dependency cycle among {pending}")
            name = ready[0]
            pending.remove(name)
            step, parent = flat[name]
            if (parent and (parent in skipped or name not in self._branch_taken(flat[parent][0]))) or deps[name] & skipped:
                skipped.add(name)
                self.steps[name] = {"status": "NotExecuted", "cache_hit": False, "outputs": {}}
                continue
            self.rh.log(f"pipeline: step {name} ({step.get('Type')})")
            started = time.time()
            try:
                self._run_step(step)
            except StepFailure as exc:
                self.steps[name] = {"status": "Failed", "cache_hit": False, "outputs": {}, "reason": str(exc)}
                status, fail_message, failed_step = "Failed", str(exc), name
                break
            finally:
                if name in self.steps:
                    self.steps[name]["seconds"] = round(time.time() - started, 2)
        for name in pending:
            self.steps.setdefault(name, {"status": "NotStarted", "cache_hit": False, "outputs": {}})
        for name, (step, _) in flat.items():
            self.steps[name]["parameters_read"] = sorted(_parameters_read(step))
        if status == "Succeeded":
            self._post_checks()
        metric = None
        for name, info in self.steps.items():
            if "metric" in info:
                metric = info["metric"]
        return PipelineRun(
            status=status,
            steps=self.steps,
            model_package_arn=self.model_package_arn,
            metric=metric,
            fail_message=fail_message,
            execution_id=self.execution_id,
            execution_arn=self.execution_arn,
            parameters=self.parameters,
            failed_step=failed_step,
            findings=self.findings,
            register_arguments=self.register_arguments,
            seconds=time.time() - t0,
        )

    def _branch_taken(self, condition_step: dict) -> set[str]:
        outcome = self.steps.get(condition_step["Name"], {}).get("outcome")
        args = condition_step.get("Arguments", {})
        branch = args.get("IfSteps", []) if outcome else args.get("ElseSteps", [])
        return set(_flatten(branch))

    def _run_step(self, step: dict) -> None:
        name, kind = step["Name"], step.get("Type")
        if kind in JOB_STEP_TYPES:
            args = self.evaluate(step.get("Arguments", {}))
            if step.get("PropertyFiles"):
                self.property_files[name] = {p["PropertyFileName"]: p for p in step["PropertyFiles"]}
            cache_config = step.get("CacheConfig") or {}
            key = None
            if cache_config.get("Enabled") and self.cache is not None:
                key = _cache_key(kind, args)
                hit = self.cache.lookup(self.arn, name, key, iso_duration_seconds(cache_config.get("ExpireAfter")))
                if hit:
                    self.properties[name] = hit.properties
                    self.steps[name] = {"status": "Succeeded", "cache_hit": True, "outputs": hit.outputs,
                                        "cached_from": hit.execution_id}
                    return
            if kind == "Processing":
                properties, outputs = self._processing(name, args)
            elif kind == "Training":
                properties, outputs = self._training(name, args)
            else:
                properties, outputs = self._quality_check(name, step, args)
            self.properties[name] = properties
            self.steps[name] = {"status": "Succeeded", "cache_hit": False, "outputs": outputs}
            if self.cache is not None:
                self.cache.add(_CacheEntry(self.arn, name, key or _cache_key(kind, args), self.cache.clock(),
                                           properties, outputs, self.execution_id))
        elif kind == "Condition":
            args = step.get("Arguments", {})
            values: dict[str, Any] = {}
            outcome = all(self._condition(c, values) for c in args.get("Conditions", []))
            self.properties[name] = {"Outcome": str(outcome).lower()}
            info = {"status": "Succeeded", "cache_hit": False, "outputs": {"Outcome": outcome, **values},
                    "outcome": outcome}
            if "left" in values and isinstance(values["left"], (int, float)):
                info["metric"] = values["left"]
            self.steps[name] = info
        elif kind == "Fail":
            message = _text(self.evaluate(step.get("Arguments", {}).get("ErrorMessage", "")))
            self.steps[name] = {"status": "Succeeded", "cache_hit": False, "outputs": {"ErrorMessage": message}}
            raise StepFailure(message)
        elif kind == "RegisterModel":
            self._register(name, self.evaluate(step.get("Arguments", {})))
        else:
            raise StepFailure(f"{name}: step type {kind!r} is not rehearsed")

    def _condition(self, cond: dict, values: dict) -> bool:
        kind = cond["Type"]
        if kind == "Not":
            return not self._condition(cond["Expression"], values)
        if kind == "Or":
            return any(self._condition(c, values) for c in cond["Conditions"])
        if kind == "In":
            value = self.evaluate(cond["QueryValue"])
            return value in [self.evaluate(v) for v in cond["Values"]]
        left, right = self.evaluate(cond["LeftValue"]), self.evaluate(cond["RightValue"])
        values.setdefault("left", left)
        values.setdefault("right", right)
        if isinstance(left, (int, float)) or isinstance(right, (int, float)):
            try:
                left, right = float(left), float(right)
            except (TypeError, ValueError):
                raise StepFailure(f"condition {kind}: cannot compare {left!r} with {right!r}") from None
        ops = {
            "Equals": lambda a, b: a == b,
            "GreaterThan": lambda a, b: a > b,
            "GreaterThanOrEqualTo": lambda a, b: a >= b,
            "LessThan": lambda a, b: a < b,
            "LessThanOrEqualTo": lambda a, b: a <= b,
        }
        if kind not in ops:
            raise StepFailure(f"condition type {kind} is not rehearsed")
        return bool(ops[kind](left, right))

    # processing ------------------------------------------------------------------------------------------------
    def _stage_inputs(self, step: str, s3: Any, inputs: list[dict], root: Path) -> None:
        asset_buckets = {a.bucket for a in self.rh.assembly.assets()}
        for item in inputs:
            source = item.get("S3Input")
            if source is None:
                raise StepFailure(f"{step}: input {item.get('InputName')} is not an S3Input (not rehearsed)")
            if source.get("S3DataType", "S3Prefix") != "S3Prefix":
                raise StepFailure(f"{step}: input {item.get('InputName')}: S3DataType {source['S3DataType']} "
                                  "is not rehearsed")
            uri = source["S3Uri"]
            if split_s3_uri(uri)[0] in asset_buckets:
                try:
                    self.cloud.upload_asset(uri)
                except RehearsalError as exc:
                    raise StepFailure(f"{step}: input {item.get('InputName')}: {exc} (cdk deploy uploads nothing "
                                      "there)") from None
            local = _container_path(step, source["LocalPath"], root)
            try:
                download_s3_prefix(s3, uri, local)
            except RehearsalError as exc:
                raise StepFailure(f"{step}: input {item.get('InputName')}: {exc}") from None
            except Exception as exc:
                raise StepFailure(f"{step}: downloading input {item.get('InputName')} ({uri}) with the job role "
                                  f"failed: {exc}") from None

    def _upload_outputs(self, step: str, s3: Any, outputs: list[dict], root: Path) -> dict[str, str]:
        uploaded = {}
        for item in outputs:
            target = item.get("S3Output")
            if target is None:
                continue
            local = _container_path(step, target["LocalPath"], root)
            local.mkdir(parents=True, exist_ok=True)
            try:
                upload_dir(s3, local, target["S3Uri"])
            except Exception as exc:
                raise StepFailure(f"{step}: uploading output {item['OutputName']} to {target['S3Uri']} with the job "
                                  f"role failed: {exc}") from None
            uploaded[item["OutputName"]] = target["S3Uri"]
        return uploaded

    def _run_process(
        self, step: str, command: list[str], env: dict[str, str], root: Path, timeout: float, cwd: str
    ) -> None:
        """Run the container's command with ``root`` as its ``/opt/ml``: in a private mount namespace when the
        rehearsal may create one (``unshare -m``, as root), so concurrent rehearsals never see each other's
        ``/opt/ml``; else with ``context.opt_ml``'s process-wide symlink."""
        try:
            if _private_opt_ml():
                script = 'mount -t tmpfs rehearsal /opt && mkdir /opt/ml && mount --bind "$0" /opt/ml && cd "$1" ' \
                         '&& shift && exec "$@"'
                wrapped = ["unshare", "-m", "--propagation", "private", "sh", "-c", script, str(root), cwd, *command]
                proc = subprocess.run(wrapped, env=env, capture_output=True, text=True, timeout=timeout)
            else:
                with opt_ml(root):
                    proc = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise StepFailure(f"{step}: the job exceeded {timeout:.0f}s (MaxRuntimeInSeconds or the rehearsal cap)")
        log = self.rh.workdir / "pipeline-logs" / f"{self.execution_id}-{step}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"$ {' '.join(command)}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.strip().splitlines()[-12:])
            raise StepFailure(f"{step}: AlgorithmError: {' '.join(command[:2])} exited {proc.returncode} "
                              f"(log {log}):\n{tail}")

    def _processing(self, step: str, args: dict) -> tuple[dict, dict]:
        job_role = args.get("RoleArn") or self.role_arn
        job_name, job_arn = self._start_job(step, "processing", job_role, args)
        s3 = self.cloud.client("s3", job_role)
        app = args.get("AppSpecification", {})
        entrypoint = list(app.get("ContainerEntrypoint") or [])
        if not entrypoint:
            raise StepFailure(f"{step}: no ContainerEntrypoint: the image's own entry point is not rehearsed")
        command = entrypoint + [_text(a) for a in app.get("ContainerArguments") or []]
        root = self.rh.scratch(f"pipeline/{self.execution_id}/{step}")
        outputs = (args.get("ProcessingOutputConfig") or {}).get("Outputs", [])
        if True:  # staged under root, which is /opt/ml for the job's process
            self._stage_inputs(step, s3, args.get("ProcessingInputs", []), root)
            for item in outputs:
                if "S3Output" in item:
                    _container_path(step, item["S3Output"]["LocalPath"], root).mkdir(parents=True, exist_ok=True)
            if command[0] in ("python3", "python"):
                command[0] = self.rh.python
            for arg in command[1:2] if command[0] == self.rh.python else command[:1]:
                local = _container_path(step, arg, root) if arg.startswith(str(OPT_ML)) else None
                if local is not None and not local.exists():
                    staged = sorted(
                        f"{Path(arg).parent}/{p.name}" for p in local.parent.glob("*")
                    ) if local.parent.exists() else []
                    raise StepFailure(
                        f"{step}: ContainerEntrypoint runs {arg}, which the job's inputs did not create (the "
                        f"directory holds {staged or 'nothing'}): a processing input downloads an object under its "
                        "own name, so the entry point must name the asset object (<hash>.py), not the source file"
                    )
            env = clean_env({**{k: _text(v) for k, v in (args.get("Environment") or {}).items()},
                             **self.cloud.environ(job_role)})
            timeout = min(MAX_JOB_SECONDS, (args.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds", 86400))
            self._run_process(step, command, env, root, timeout, cwd="/")
            uploaded = self._upload_outputs(step, s3, outputs, root)
        properties = {
            "ProcessingJobName": job_name,
            "ProcessingJobArn": job_arn,
            "ProcessingJobStatus": "Completed",
            "AppSpecification": app,
            "Environment": args.get("Environment") or {},
            "ProcessingInputs": args.get("ProcessingInputs", []),
            "ProcessingOutputConfig": {
                **(args.get("ProcessingOutputConfig") or {}),
                "Outputs": {o["OutputName"]: o for o in outputs},
            },
            "RoleArn": job_role,
        }
        self.facts.setdefault("jobs", {})[step] = {"name": job_name, "tags": args.get("Tags", []), "role": job_role}
        return properties, uploaded

    # quality check (Model Monitor analyzer stand-in) -----------------------------------------------------------------
    def _quality_check(self, step: str, definition: dict, args: dict) -> tuple[dict, dict]:
        check_type = definition.get("CheckType")
        if check_type != "DATA_QUALITY":
            raise StepFailure(f"{step}: QualityCheck {check_type} is not rehearsed (DATA_QUALITY only)")
        if definition.get("SkipCheck") is False:
            raise StepFailure(f"{step}: the drift check (SkipCheck false) is not rehearsed")
        job_role = args.get("RoleArn") or self.role_arn
        job_name, job_arn = self._start_job(step, "processing", job_role, args)
        s3 = self.cloud.client("s3", job_role)
        env = args.get("Environment") or {}
        root = self.rh.scratch(f"pipeline/{self.execution_id}/{step}")
        outputs = (args.get("ProcessingOutputConfig") or {}).get("Outputs", [])
        if True:  # staged under root, which is /opt/ml for the job's process
            self._stage_inputs(step, s3, args.get("ProcessingInputs", []), root)
            source = _container_path(step, env.get("dataset_source", ""), root)
            if not source.exists():
                raise StepFailure(f"{step}: dataset_source {env.get('dataset_source')} was not created by the inputs")
            try:
                dataset_format = json.loads(env.get("dataset_format", "{}"))
            except ValueError:
                raise StepFailure(f"{step}: dataset_format {env.get('dataset_format')!r} is not JSON") from None
            out_dir = _container_path(step, env.get("output_path", "/opt/ml/processing/output"), root)
            try:
                statistics = standins.data_quality_baseline(source, dataset_format, out_dir)
            except RehearsalError as exc:
                raise StepFailure(f"{step}: {exc}") from None
            uploaded = self._upload_outputs(step, s3, outputs, root)
        out_uri = next(
            (o["S3Output"]["S3Uri"] for o in outputs
             if "S3Output" in o and Path(o["S3Output"]["LocalPath"]) == Path(env.get("output_path", ""))),
            None,
        )
        if out_uri is None:
            raise StepFailure(f"{step}: no output uploads output_path {env.get('output_path')}")
        stats_uri, constraints_uri = f"{out_uri.rstrip('/')}/statistics.json", f"{out_uri.rstrip('/')}/constraints.json"
        register_new = definition.get("RegisterNewBaseline", False)
        properties = {
            "CalculatedBaselineStatistics": stats_uri,
            "CalculatedBaselineConstraints": constraints_uri,
            "BaselineUsedForDriftCheckStatistics": stats_uri if register_new else definition.get(
                "SuppliedBaselineStatistics"),
            "BaselineUsedForDriftCheckConstraints": constraints_uri if register_new else definition.get(
                "SuppliedBaselineConstraints"),
        }
        self.facts["baseline"] = {"dataset_format": dataset_format, "statistics": statistics}
        self.facts.setdefault("jobs", {})[step] = {"name": job_name, "tags": args.get("Tags", []), "role": job_role}
        return properties, uploaded

    # training --------------------------------------------------------------------------------------------------------
    def _training(self, step: str, args: dict) -> tuple[dict, dict]:
        job_role = args.get("RoleArn") or self.role_arn
        raw_hps = {k: _text(v) for k, v in (args.get("HyperParameters") or {}).items()}
        hps = standins.deserialize_hyperparameters(raw_hps)
        program = hps.get("sagemaker_program")
        if not program:
            raise StepFailure(
                f"{step}: no sagemaker_program hyperparameter: the framework image runs in algorithm mode "
                "(its built-in algorithm), not the platform's training script"
            )
        submit = hps.get("sagemaker_submit_directory")
        if not submit or not str(submit).startswith("s3://"):
            raise StepFailure(f"{step}: sagemaker_submit_directory {submit!r} is not an S3 URI of the source tarball")
        algo = args.get("AlgorithmSpecification") or {}
        if algo.get("TrainingInputMode", "File") != "File":
            raise StepFailure(f"{step}: TrainingInputMode {algo['TrainingInputMode']} is not rehearsed")
        job_name, job_arn = self._start_job(step, "training", job_role, args)
        s3 = self.cloud.client("s3", job_role)
        root = self.rh.scratch(f"pipeline/{self.execution_id}/{step}")
        channels = [c["ChannelName"] for c in args.get("InputDataConfig", [])]
        if True:  # staged under root, which is /opt/ml for the job's process
            for channel in args.get("InputDataConfig", []):
                source = channel["DataSource"]["S3DataSource"]
                item = {"InputName": channel["ChannelName"], "S3Input": {
                    "S3Uri": source["S3Uri"], "S3DataType": source.get("S3DataType", "S3Prefix"),
                    "LocalPath": f"{OPT_ML}/input/data/{channel['ChannelName']}"}}
                self._stage_inputs(step, s3, [item], root)
            # the toolkit downloads the submit directory with the job's credentials and extracts it to /opt/ml/code
            if split_s3_uri(submit)[0] in {a.bucket for a in self.rh.assembly.assets()}:
                try:
                    self.cloud.upload_asset(submit)
                except RehearsalError as exc:
                    raise StepFailure(f"{step}: sagemaker_submit_directory: {exc}") from None
            bucket, key = split_s3_uri(submit)
            try:
                tarball = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            except Exception as exc:
                raise StepFailure(f"{step}: downloading sagemaker_submit_directory {submit} with the job role "
                                  f"failed: {exc}") from None
            code = root / "code"
            code.mkdir(parents=True, exist_ok=True)
            try:
                with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as tar:
                    tar.extractall(code, filter="data")
            except tarfile.TarError as exc:
                raise StepFailure(f"{step}: sagemaker_submit_directory {submit} is not a tar.gz: {exc}") from None
            if not (code / program).is_file():
                raise StepFailure(f"{step}: sagemaker_program {program} is not in the source tarball {submit} "
                                  f"(it holds {sorted(p.name for p in code.iterdir())})")
            config = root / "input" / "config"
            config.mkdir(parents=True, exist_ok=True)
            (config / "hyperparameters.json").write_text(json.dumps(raw_hps))
            (config / "inputdataconfig.json").write_text(json.dumps(
                {c["ChannelName"]: {k: v for k, v in c.items() if k != "DataSource"} for c in args.get("InputDataConfig", [])}))
            (config / "resourceconfig.json").write_text(json.dumps(
                {"current_host": standins.CURRENT_HOST, "hosts": [standins.CURRENT_HOST]}))
            for sub in ("model", "output/data", "output/intermediate"):
                (root / sub).mkdir(parents=True, exist_ok=True)
            env = clean_env({
                **{k: _text(v) for k, v in (args.get("Environment") or {}).items()},
                **standins.training_environment(channels, hps, program, submit, job_name),
                **self.cloud.environ(job_role),
            })
            command = [self.rh.python, program, *standins.hyperparameter_args(standins.user_hyperparameters(hps))]
            timeout = min(MAX_JOB_SECONDS, (args.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds", 86400))
            self._run_process(step, command, env, root, timeout, cwd=f"{OPT_ML}/code")
            model_tar = _tar_gz(root / "model")
            output_path = args["OutputDataConfig"]["S3OutputPath"].rstrip("/")
            model_uri = f"{output_path}/{job_name}/output/model.tar.gz"
            bucket, key = split_s3_uri(model_uri)
            try:
                s3.put_object(Bucket=bucket, Key=key, Body=model_tar)
                if any((root / "output" / "data").iterdir()):
                    s3.put_object(Bucket=bucket, Key=key.replace("model.tar.gz", "output.tar.gz"),
                                  Body=_tar_gz(root / "output" / "data"))
            except Exception as exc:
                raise StepFailure(f"{step}: uploading {model_uri} with the job role failed: {exc}") from None
            metadata_path = root / "model" / "model_metadata.json"
            if metadata_path.exists():
                self.facts["model_metadata"] = json.loads(metadata_path.read_text())
        properties = {
            "TrainingJobName": job_name,
            "TrainingJobArn": job_arn,
            "TrainingJobStatus": "Completed",
            "ModelArtifacts": {"S3ModelArtifacts": model_uri},
            "OutputDataConfig": args.get("OutputDataConfig"),
            "HyperParameters": raw_hps,
            "AlgorithmSpecification": algo,
            "RoleArn": job_role,
        }
        self.facts.setdefault("jobs", {})[step] = {"name": job_name, "tags": args.get("Tags", []), "role": job_role}
        return properties, {"model": model_uri}

    # registration ----------------------------------------------------------------------------------------------------
    def _register(self, step: str, args: dict) -> None:
        request = {k: v for k, v in args.items() if v not in ({}, None, "")}
        if isinstance(request.get("ModelMetrics"), dict):
            request["ModelMetrics"] = {k: v for k, v in request["ModelMetrics"].items() if v}
        if "CustomerMetadataProperties" in request:
            request["CustomerMetadataProperties"] = {k: _text(v) for k, v in request["CustomerMetadataProperties"].items()}
        sm = self.cloud.client("sagemaker", self.role_arn)
        try:
            arn = sm.create_model_package(**request)["ModelPackageArn"]
        except Exception as exc:
            denied = [str(d) for d in DENIALS if "CreateModelPackage" in d.action]
            raise StepFailure(f"{step}: CreateModelPackage with the pipeline role failed: {exc}"
                              + (f" ({denied[-1]})" if denied else "")) from None
        self.model_package_arn = arn
        self.register_arguments = request
        self.properties[step] = {"ModelPackageArn": arn}
        self.steps[step] = {"status": "Succeeded", "cache_hit": False, "outputs": {"ModelPackageArn": arn}}

    # findings --------------------------------------------------------------------------------------------------------
    def _post_checks(self) -> None:
        s3 = self.cloud.admin("s3")

        def exists(uri: str) -> bool:
            bucket, key = split_s3_uri(uri)
            try:
                s3.head_object(Bucket=bucket, Key=key)
                return True
            except Exception:
                return False

        request = self.register_arguments
        if request:
            for container in request.get("InferenceSpecification", {}).get("Containers", []):
                url = container.get("ModelDataUrl")
                if url and not exists(url):
                    self.findings.append(f"the registered package's ModelDataUrl {url} does not exist")
            for kind, metrics in (request.get("ModelMetrics") or {}).items():
                for name, source in (metrics or {}).items():
                    uri = source.get("S3Uri") if isinstance(source, dict) else None
                    if uri and not exists(uri):
                        self.findings.append(f"the registered package's ModelMetrics.{kind}.{name} {uri} does not exist")
        self._check_baseline()

    def _check_baseline(self) -> None:
        baseline = self.facts.get("baseline")
        metadata = self.facts.get("model_metadata")
        if not baseline or not metadata:
            return
        expected = list(metadata.get("encoded_columns") or [])
        header = bool((baseline["dataset_format"].get("csv") or {}).get("header", True))
        features = baseline["statistics"]["features"]
        problems = []
        if header:
            problems.append("the dataset format says the CSV has a header, while captured requests have none")
        if len(features) != len(expected):
            problems.append(f"it has {len(features)} columns, the endpoint receives {len(expected)} "
                            f"({', '.join(expected)})")
        text = [f["name"] for f in features if f["inferred_type"] == "String"]
        if text:
            problems.append(f"columns {text} are text, the endpoint receives encoded numbers")
        if header and [f["name"] for f in features] != expected:
            problems.append(f"its columns are {[f['name'] for f in features]}")
        if problems:
            self.findings.append(
                "DataQualityBaseline: the Model Monitor baseline is not the rows the endpoint receives (the encoded "
                "feature columns of model_metadata.json, numeric, no header, no target): " + "; ".join(problems)
            )


# --- helpers ------------------------------------------------------------------------------------------------------------
_PRIVATE_OPT_ML: Optional[bool] = None


def _private_opt_ml() -> bool:
    """Whether a job process can get its own /opt/ml in a private mount namespace (probed once)."""
    global _PRIVATE_OPT_ML
    if _PRIVATE_OPT_ML is None:
        import shutil

        probe = subprocess.run(
            ["unshare", "-m", "--propagation", "private", "sh", "-c", "mount -t tmpfs rehearsal /opt && mkdir /opt/ml"],
            capture_output=True,
        ) if shutil.which("unshare") else None
        _PRIVATE_OPT_ML = probe is not None and probe.returncode == 0
    return _PRIVATE_OPT_ML


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return value if isinstance(value, str) else json.dumps(value) if isinstance(value, (dict, list)) else str(value)


def _json_path(document: Any, path: str, where: str) -> Any:
    node = document
    for attr, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", path):
        try:
            node = node[int(index)] if index else node[attr]
        except (KeyError, IndexError, TypeError):
            raise StepFailure(f"Std:JsonGet: {path!r} is not in {where}") from None
    return node


def _container_path(step: str, path: str, root: Path) -> Path:
    p = Path(path)
    try:
        relative = p.relative_to(OPT_ML)
    except ValueError:
        raise StepFailure(f"{step}: container path {path} is outside /opt/ml (not rehearsed)") from None
    return root / relative


def _tar_gz(directory: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path in sorted(directory.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=path.relative_to(directory).as_posix())
    return buf.getvalue()


def _cache_key(kind: str, args: dict) -> str:
    attributes = {k: args.get(k) for k in CACHE_KEY_ATTRIBUTES[kind]}
    return hashlib.sha256(json.dumps(attributes, sort_keys=True, default=str).encode()).hexdigest()


# --- entry points -------------------------------------------------------------------------------------------------------
def run_pipeline(
    rh: Rehearsal,
    model_stack: Stack,
    parameters: Optional[dict[str, str]] = None,
    cache: Optional[PipelineCache] = None,
) -> PipelineRun:
    """Execute the stack's pipeline as SageMaker Pipelines would (see the module docstring); record it in
    ``rh.facts["pipeline"]`` (a list, one entry per execution)."""
    execution = _Execution(rh, model_stack, parameters, cache)
    denials_before = len(DENIALS)
    run = execution.run()
    run.denials = [str(d) for d in DENIALS[denials_before:]]
    rh.facts.setdefault("pipeline", []).append({
        "execution_id": run.execution_id,
        "status": run.status,
        "failed_step": run.failed_step,
        "fail_message": run.fail_message,
        "steps": {n: {"status": s["status"], "cache_hit": s.get("cache_hit", False)} for n, s in run.steps.items()},
        "model_package_arn": run.model_package_arn,
        "metric": run.metric,
        "findings": run.findings,
        "denials": run.denials,
        "seconds": round(run.seconds, 1),
        **execution.facts,
    })
    rh.log(run.summary())
    return run


def check_new_data_retrains(run1: PipelineRun, run2: PipelineRun) -> None:
    """Fail when a second execution on new data registers the same model data as the first."""
    def model_data(run: PipelineRun) -> list[str]:
        spec = (run.register_arguments or {}).get("InferenceSpecification", {})
        return [c.get("ModelDataUrl") for c in spec.get("Containers", [])]

    for run in (run1, run2):
        if run.status != "Succeeded" or not run.model_package_arn:
            raise RehearsalError(f"execution {run.execution_id} did not register a package ({run.fail_message})")
    first, second = model_data(run1), model_data(run2)
    cached = [n for n, st in run2.steps.items() if st.get("cache_hit")]
    stale = [n for n in cached if "InputDataUrl" in run2.steps[n].get("parameters_read", [])]
    if first == second or stale:
        ran = [n for n, st in run2.steps.items() if st["status"] == "Succeeded" and not st.get("cache_hit")]
        what = (f"registered the same model data as {run1.execution_id} ({first})" if first == second
                else f"trained on the data of an earlier execution: {stale} read InputDataUrl and were cache hits")
        raise RehearsalError(
            f"new data did not retrain: execution {run2.execution_id} {what}; cache hits: {cached}, steps that ran: "
            f"{ran}. Steps cache on their arguments and Glue-triggered runs pass the same InputDataUrl, so new data "
            "hits the cache (with every step cached, only Register runs)"
        )
