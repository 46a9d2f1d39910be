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

- Network: a job's ``VpcConfig`` must name at least one subnet and one security group, each a subnet or group of the
  assembly's stacks as the resolver names them (or a literal ``subnet-``/``sg-`` ID, a landing zone's). A job with
  ``EnableNetworkIsolation`` runs without credentials or endpoint (its container reaches nothing; the rehearsal stages
  its inputs and uploads its outputs, as SageMaker does), and an isolated training job downloads nothing itself: its
  ``sagemaker_submit_directory`` must be the source tarball as one of its input channels downloads it
  (``/opt/ml/input/data/<channel>/<object name>``), else the step fails naming that defect.

Not emulated: retries (RetryPolicies), parallel step execution, instance types and counts, KMS encryption of volumes
and outputs (no KMS calls are made), routing and security group rules, Pipe/FastFile input modes, ManifestFile
inputs, step types other than Processing, Training, QualityCheck, Condition, Fail and RegisterModel.

Champion vs challenger: after the run, the champion block Evaluate wrote into its EvaluationReport
(``champion_challenger``: both figures, the margin, ``challenger_wins``, the champion package) is read back and kept
in :attr:`PipelineRun.champion` and the execution's facts. A run that stops at the Fail step because the challenger met
the threshold but did not beat the champion (:attr:`PipelineRun.rejected_by_champion`) is the pipeline doing its job,
not a defect: :meth:`PipelineRun.check` accepts it, and :func:`check_new_data_retrains` then checks that the rejected
challenger was trained anew.

After the run, rehearsal findings the pipeline itself would not report (the execution "succeeds" on AWS) are listed
in :attr:`PipelineRun.findings`: a data-quality baseline whose columns are not exactly the encoded feature columns
(numeric, no header) the endpoint receives (read from the model's ``model_metadata.json``), a registered package
whose model data or metrics objects do not exist, a model.tar.gz without the inference code its container environment
names. :meth:`PipelineRun.check` raises on a failure or a finding.
"""

from __future__ import annotations

import datetime as dt
import secrets
import string
import time
from dataclasses import dataclass, field
from typing import Any, Optional

from rehearsal.assembly import ACCOUNT, REGION, RehearsalError, Stack
from rehearsal.cloud import DENIALS, Denial, _LOCK, evaluate
from rehearsal.context import Rehearsal, split_s3_uri
from rehearsal.pipeline_definition import (
    CacheEntry,
    Expressions,
    PipelineCache,
    StepFailure,
    cache_key,
    flatten_steps,
    iso_duration_seconds,
    parameters_read,
    pipeline_definition,
    references,
    as_text,
)
from rehearsal.pipeline_jobs import JobSteps

__all__ = ["PipelineCache", "PipelineRun", "StepFailure", "check_new_data_retrains", "iso_duration_seconds",
           "pipeline_definition", "run_pipeline"]

JOB_STEP_TYPES = ("Processing", "Training", "QualityCheck")


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
    champion: Optional[dict[str, Any]] = None  # evaluation.json's champion_challenger block, when Evaluate wrote one

    @property
    def ok(self) -> bool:
        return self.status == "Succeeded" and not self.findings

    @property
    def rejected_by_champion(self) -> bool:
        """The execution stopped at the Fail step because the challenger, meeting the threshold, did not beat the
        champion by the margin (every condition of the condition step held but the champion's)."""
        if self.status != "Failed" or not self.champion or self.champion.get("challenger_wins") != 0:
            return False
        failed = self.steps.get(self.failed_step or "", {})
        conditions = next((info.get("conditions") for info in self.steps.values() if info.get("conditions")), None)
        return failed.get("type") == "Fail" and bool(conditions) and all(ok for path, ok in conditions
                                                                           if not path.endswith("challenger_wins"))

    def summary(self) -> str:
        lines = [f"pipeline execution {self.execution_id}: {self.status} in {self.seconds:.1f}s"]
        for name, step in self.steps.items():
            lines.append(f"  {name}: {step['status']}{' (cache hit)' if step.get('cache_hit') else ''}"
                         f" {step.get('seconds', 0):.1f}s")
        if self.champion:
            lines.append(f"  champion vs challenger: {self.champion.get('summary')}")
        if self.fail_message:
            lines.append(f"  failure{' (rejected by the champion comparison)' if self.rejected_by_champion else ''}:"
                         f" {self.fail_message}")
        lines += [f"  finding: {f}" for f in self.findings]
        return "\n".join(lines)

    def check(self, expect_registered: bool = True) -> "PipelineRun":
        """Raise RehearsalError when the execution failed, a finding was made, or no package was registered. A
        challenger rejected by the champion comparison (:attr:`rejected_by_champion`) is an outcome, not a failure."""
        problems = []
        if self.rejected_by_champion:
            expect_registered = False
        elif self.status != "Succeeded":
            problems.append(f"step {self.failed_step} failed: {self.fail_message}")
        problems += self.findings
        if expect_registered and self.status == "Succeeded" and not self.model_package_arn:
            problems.append("the execution registered no model package")
        if problems:
            raise RehearsalError("pipeline rehearsal: " + "; ".join(problems))
        return self

# --- the execution --------------------------------------------------------------------------------------------------
class _Execution(Expressions, JobSteps):
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
        flat = flatten_steps(self.definition.get("Steps", []))
        if self.definition.get("PipelineExperimentConfig"):
            self.facts["experiment"] = self.evaluate(self.definition["PipelineExperimentConfig"])
        deps = {}
        for name, (step, parent) in flat.items():
            deps[name] = set(step.get("DependsOn", [])) | references(step)
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
                self.steps[name] = {**self.steps.get(name, {}), "status": "Failed", "cache_hit": False,
                                    "outputs": {}, "reason": str(exc), "type": step.get("Type")}
                status, fail_message, failed_step = "Failed", str(exc), name
                break
            finally:
                if name in self.steps:
                    self.steps[name]["seconds"] = round(time.time() - started, 2)
        for name in pending:
            self.steps.setdefault(name, {"status": "NotStarted", "cache_hit": False, "outputs": {}})
        for name, (step, _) in flat.items():
            self.steps[name]["parameters_read"] = sorted(parameters_read(step))
        if status == "Succeeded":
            self._post_checks()
        metric = next((info["metric"] for info in reversed(self.steps.values()) if "metric" in info), None)
        champion = self._champion_block()
        if champion is not None:
            self.facts["champion"] = champion
        return PipelineRun(
            status, self.steps, self.model_package_arn, metric, fail_message, self.execution_id, self.execution_arn,
            self.parameters, failed_step, self.findings, register_arguments=self.register_arguments,
            seconds=time.time() - t0, champion=champion,
        )

    def _champion_block(self) -> Optional[dict[str, Any]]:
        """The ``champion_challenger`` block of the property files the job steps wrote (read as the service reads
        them), or None."""
        import json

        s3 = self.cloud.admin("s3")
        for step, files in self.property_files.items():
            outputs = (self.properties.get(step) or {}).get("ProcessingOutputConfig", {}).get("Outputs", {})
            for spec in files.values():
                output = outputs.get(spec["OutputName"])
                if not output:
                    continue
                bucket, key = split_s3_uri(output["S3Output"]["S3Uri"].rstrip("/") + "/" + spec["FilePath"])
                try:
                    document = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
                except Exception:
                    continue
                if isinstance(document, dict) and isinstance(document.get("champion_challenger"), dict):
                    return document["champion_challenger"]
        return None

    def _branch_taken(self, condition_step: dict) -> set[str]:
        outcome = self.steps.get(condition_step["Name"], {}).get("outcome")
        args = condition_step.get("Arguments", {})
        branch = args.get("IfSteps", []) if outcome else args.get("ElseSteps", [])
        return set(flatten_steps(branch))

    def _run_step(self, step: dict) -> None:
        name, kind = step["Name"], step.get("Type")
        if kind in JOB_STEP_TYPES:
            args = self.evaluate(step.get("Arguments", {}))
            if step.get("PropertyFiles"):
                self.property_files[name] = {p["PropertyFileName"]: p for p in step["PropertyFiles"]}
            cache_config = step.get("CacheConfig") or {}
            key = None
            if cache_config.get("Enabled") and self.cache is not None:
                key = cache_key(kind, args)
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
                self.cache.add(CacheEntry((self.arn, name, key or cache_key(kind, args)), self.cache.clock(),
                                          properties, outputs, self.execution_id))
        elif kind == "Condition":
            args = step.get("Arguments", {})
            values: dict[str, Any] = {}
            results = []  # (the left value's JSON path or condition type, held) per condition: all must hold
            for cond in args.get("Conditions", []):
                left = cond.get("LeftValue") if isinstance(cond.get("LeftValue"), dict) else {}
                results.append(((left.get("Std:JsonGet") or {}).get("Path") or cond["Type"],
                                self._condition(cond, values)))
            outcome = all(held for _, held in results)
            self.properties[name] = {"Outcome": str(outcome).lower()}
            info = {"status": "Succeeded", "cache_hit": False, "outputs": {"Outcome": outcome, **values},
                    "outcome": outcome, "conditions": results}
            if "left" in values and isinstance(values["left"], (int, float)):
                info["metric"] = values["left"]
            self.steps[name] = info
        elif kind == "Fail":
            message = as_text(self.evaluate(step.get("Arguments", {}).get("ErrorMessage", "")))
            self.steps[name] = {"status": "Succeeded", "cache_hit": False, "outputs": {"ErrorMessage": message},
                                "type": "Fail"}
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
        values.setdefault("comparison", kind)
        path = (cond["LeftValue"].get("Std:JsonGet") or {}).get("Path") if isinstance(cond["LeftValue"], dict) else None
        if path:
            values.setdefault("metric_path", path)
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

    # registration ----------------------------------------------------------------------------------------------------
    def _register(self, step: str, args: dict) -> None:
        request = {k: v for k, v in args.items() if v not in ({}, None, "")}
        if isinstance(request.get("ModelMetrics"), dict):
            request["ModelMetrics"] = {k: v for k, v in request["ModelMetrics"].items() if v}
        if "CustomerMetadataProperties" in request:
            request["CustomerMetadataProperties"] = {k: as_text(v) for k, v in request["CustomerMetadataProperties"].items()}
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
        "rejected_by_champion": run.rejected_by_champion,
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

    if run2.rejected_by_champion:  # no package, by design: the challenger must still have been trained anew
        if run1.status != "Succeeded" or not run1.model_package_arn:
            raise RehearsalError(f"execution {run1.execution_id} did not register a package ({run1.fail_message})")
        train = next((info for info in run2.steps.values() if "model" in (info.get("outputs") or {})), None)
        if train is None or train.get("cache_hit") or [train["outputs"]["model"]] == model_data(run1):
            raise RehearsalError(
                f"new data did not retrain: execution {run2.execution_id} was rejected by the champion comparison "
                f"with a challenger that was not trained anew ({train and train['outputs'].get('model')})")
        return
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
