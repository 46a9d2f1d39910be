"""Model build CI: start the SageMaker pipeline for a git commit (optionally upserting its definition first).

    python -m cicd_scripts.start_pipeline --pipeline-name NAME [--git-commit SHA] [--parameter Key=Value ...]
        [--definition-file definition.json --role-arn ARN] [--wait [--timeout-minutes N]] [--display-name NAME]
        [--pipeline-stack STACK] [--rerun-tag TEXT] [--region REGION]

The commit defaults to ``CODEBUILD_RESOLVED_SOURCE_VERSION``. It is passed as the pipeline parameter ``GitCommit``,
which the pipeline definition must declare. The start is idempotent per (pipeline, commit, parameters, rerun tag):
the ``ClientRequestToken`` is derived from them, so a retried build does not start a second execution.

Prints the execution ARN on stdout. Exit codes: 0 started (with ``--wait``: succeeded); 1 the start was refused or
the execution ended Failed / Stopped / CompletedWithFailures; 2 invalid arguments (bad SHA, parameter, definition);
3 ``--wait`` timed out (the execution keeps running).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import time
from typing import Any, Callable, Optional, Sequence

from botocore.exceptions import BotoCoreError, ClientError

from cicd_scripts._common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_TIMEOUT,
    ArgumentParser,
    ScriptError,
    UsageError,
    client,
    env,
    error_code,
    error_message,
    log,
    run,
)

GIT_COMMIT_PARAMETER = "GitCommit"
SOURCE_VERSION_ENV = "CODEBUILD_RESOLVED_SOURCE_VERSION"

SHA_RE = re.compile(r"^[0-9a-fA-F]{7,40}$")
PIPELINE_NAME_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,255}$")
DISPLAY_NAME_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,81}$")
PARAMETER_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
ROLE_ARN_RE = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-/]+$")
PARAMETER_VALUE_MAX = 1024

SUCCEEDED = "Succeeded"
FAILED_STATUSES = ("Failed", "Stopped", "CompletedWithFailures")

# Polling of describe_pipeline_execution: first wait, growth factor, cap (seconds).
POLL_INITIAL_SECONDS = 15.0
POLL_FACTOR = 1.5
POLL_MAX_SECONDS = 60.0


class WaitTimeout(ScriptError):
    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_TIMEOUT)


def validate_git_commit(value: Optional[str], source: str = "--git-commit") -> str:
    """The lower-cased SHA, or :class:`UsageError` naming where the bad value came from."""
    if value is None or not value.strip():
        raise UsageError(
            f"no git commit: pass --git-commit SHA, or run in CodeBuild, which sets {SOURCE_VERSION_ENV}"
        )
    value = value.strip()
    if not SHA_RE.match(value):
        hint = (
            "; with an S3 source action CodeBuild sets it to an S3 object version, so pass --git-commit explicitly"
            if source == SOURCE_VERSION_ENV
            else ""
        )
        raise UsageError(f"{source} {value!r} is not a git commit SHA: expected 7 to 40 hexadecimal characters{hint}")
    return value.lower()


def parse_parameters(items: Sequence[str]) -> list[dict[str, str]]:
    """``Key=Value`` strings -> SageMaker ``PipelineParameters`` (order kept; duplicates and GitCommit refused)."""
    out: list[dict[str, str]] = []
    seen: set[str] = set()
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise UsageError(f"--parameter {item!r}: expected Key=Value")
        if not PARAMETER_NAME_RE.match(name):
            raise UsageError(f"--parameter {item!r}: the name may hold only letters, digits, '-' and '_'")
        if name == GIT_COMMIT_PARAMETER:
            raise UsageError(f"--parameter {item!r}: {GIT_COMMIT_PARAMETER} is set from --git-commit")
        if name in seen:
            raise UsageError(f"--parameter {name} is given twice")
        if len(value) > PARAMETER_VALUE_MAX:
            raise UsageError(f"--parameter {name}: the value is {len(value)} characters; SageMaker allows 1024")
        seen.add(name)
        out.append({"Name": name, "Value": value})
    return out


def client_request_token(pipeline_name: str, git_commit: str, parameters: Sequence[dict[str, str]],
                         rerun_tag: str = "") -> str:
    """64 hex characters, the same for the same pipeline, commit, parameters and rerun tag (idempotent starts)."""
    canonical = json.dumps(
        {
            "pipeline": pipeline_name,
            "commit": git_commit.lower(),
            "parameters": sorted((p["Name"], p["Value"]) for p in parameters),
            "rerun": rerun_tag,
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def is_missing_pipeline(exc: ClientError) -> bool:
    """SageMaker says ResourceNotFound; some emulators say ValidationException 'Could not find pipeline'."""
    code, message = error_code(exc), error_message(exc)
    if code == "ResourceNotFound":
        return True
    return code == "ValidationException" and ("Could not find pipeline" in message or "does not exist" in message)


def missing_pipeline_message(pipeline_name: str, region: str, stack: Optional[str]) -> str:
    creator = f"stack '{stack}'" if stack else "the model build stack (pass --pipeline-stack to name it here)"
    return (
        f"SageMaker pipeline '{pipeline_name}' does not exist in {region}; it is created by {creator}: deploy that "
        "stack first, or pass --definition-file and --role-arn to create the pipeline from this build"
    )


def load_definition(path: str) -> str:
    """The definition file's text, checked to be a JSON object within SageMaker's 1 MB inline limit."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        raise UsageError(f"--definition-file '{path}' does not exist") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"--definition-file '{path}' is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from None
    if not isinstance(doc, dict) or "Steps" not in doc:
        raise UsageError(f"--definition-file '{path}' is not a SageMaker pipeline definition (no 'Steps')")
    if len(text.encode("utf-8")) > 1_048_576:
        raise UsageError(
            f"--definition-file '{path}' is larger than the 1 MB SageMaker accepts inline; shrink it or upload it"
        )
    return text


def declared_parameters(definition: Optional[str]) -> Optional[list[str]]:
    """Parameter names a definition declares, or None when it cannot be read (then nothing is checked)."""
    if not definition:
        return None
    try:
        doc = json.loads(definition)
    except (TypeError, ValueError):
        return None
    if not isinstance(doc, dict):
        return None
    params = doc.get("Parameters", [])
    if not isinstance(params, list):
        return None
    return [p["Name"] for p in params if isinstance(p, dict) and "Name" in p]


def check_parameters_declared(pipeline_name: str, definition: Optional[str], names: Sequence[str]) -> None:
    declared = declared_parameters(definition)
    if declared is None:
        return
    missing = [n for n in names if n not in declared]
    if missing:
        raise UsageError(
            f"pipeline '{pipeline_name}' does not declare parameter(s) {missing} (it declares {sorted(declared)}); "
            f"add them to the pipeline definition (ParameterString(name=...)) or drop them"
        )


def describe_pipeline(sm: Any, pipeline_name: str) -> Optional[dict[str, Any]]:
    try:
        return sm.describe_pipeline(PipelineName=pipeline_name)
    except ClientError as exc:
        if is_missing_pipeline(exc):
            return None
        raise


def upsert_pipeline(sm: Any, pipeline_name: str, definition: str, role_arn: str) -> str:
    """Update the pipeline's definition and role, or create it. Returns 'created' or 'updated'."""
    if describe_pipeline(sm, pipeline_name) is None:
        try:
            sm.create_pipeline(
                PipelineName=pipeline_name,
                PipelineDisplayName=pipeline_name,
                PipelineDefinition=definition,
                RoleArn=role_arn,
            )
            return "created"
        except ClientError as exc:
            # Lost a race with another build creating it: fall through to the update.
            if "already exists" not in error_message(exc):
                raise
    sm.update_pipeline(PipelineName=pipeline_name, PipelineDefinition=definition, RoleArn=role_arn)
    return "updated"


def start_execution(sm: Any, *, pipeline_name: str, git_commit: str, parameters: Sequence[dict[str, str]],
                    display_name: str, description: str, token: str, region: str,
                    pipeline_stack: Optional[str]) -> str:
    try:
        response = sm.start_pipeline_execution(
            PipelineName=pipeline_name,
            PipelineExecutionDisplayName=display_name,
            PipelineExecutionDescription=description,
            PipelineParameters=[{"Name": GIT_COMMIT_PARAMETER, "Value": git_commit}, *parameters],
            ClientRequestToken=token,
        )
    except ClientError as exc:
        code, message = error_code(exc), error_message(exc)
        if is_missing_pipeline(exc):
            raise ScriptError(missing_pipeline_message(pipeline_name, region, pipeline_stack)) from None
        if code == "ConflictException":
            raise ScriptError(
                f"SageMaker refused to start pipeline '{pipeline_name}' (ConflictException: {message}); "
                "the pipeline is being updated or another request with this commit is in flight: retry the build "
                "in a few minutes"
            ) from None
        if code == "ResourceLimitExceeded":
            raise ScriptError(
                f"SageMaker refused to start pipeline '{pipeline_name}' (ResourceLimitExceeded: {message}); too "
                "many executions are running: wait for them or stop one (aws sagemaker list-pipeline-executions "
                f"--pipeline-name {pipeline_name}), then retry the build"
            ) from None
        raise
    return str(response["PipelineExecutionArn"])


def failed_steps(sm: Any, execution_arn: str) -> list[str]:
    """'StepName: reason' for each failed step; empty when the steps cannot be listed."""
    out: list[str] = []
    try:
        for page in sm.get_paginator("list_pipeline_execution_steps").paginate(PipelineExecutionArn=execution_arn):
            for step in page.get("PipelineExecutionSteps", []):
                if step.get("StepStatus") in ("Failed", "Stopped"):
                    reason = step.get("FailureReason") or step.get("StepStatus")
                    out.append(f"{step.get('StepName', '?')}: {reason}")
    except (ClientError, BotoCoreError) as exc:
        log(f"(could not list the execution's steps: {exc})")
    return out


def wait_for_execution(sm: Any, execution_arn: str, *, timeout_seconds: float,
                       sleep: Callable[[float], None] = time.sleep,
                       clock: Callable[[], float] = time.monotonic,
                       initial_delay: float = POLL_INITIAL_SECONDS,
                       factor: float = POLL_FACTOR,
                       max_delay: float = POLL_MAX_SECONDS) -> dict[str, Any]:
    """Poll until the execution ends; return the last description. Raises :class:`WaitTimeout` at the deadline."""
    deadline = clock() + timeout_seconds
    delay = initial_delay
    last_status = None
    while True:
        desc = sm.describe_pipeline_execution(PipelineExecutionArn=execution_arn)
        status = desc["PipelineExecutionStatus"]
        if status != last_status:
            log(f"pipeline execution status: {status}")
            last_status = status
        if status == SUCCEEDED or status in FAILED_STATUSES:
            return desc
        remaining = deadline - clock()
        if remaining <= 0:
            minutes = timeout_seconds / 60
            raise WaitTimeout(
                f"pipeline execution {execution_arn} is still {status} after {minutes:g} minutes; it keeps running "
                "(stop it with: aws sagemaker stop-pipeline-execution --pipeline-execution-arn "
                f"{execution_arn}), or raise --timeout-minutes"
            )
        sleep(min(delay, remaining))
        delay = min(delay * factor, max_delay)


def _parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="python -m cicd_scripts.start_pipeline",
        description="Start the model build SageMaker pipeline for a git commit.",
    )
    p.add_argument("--pipeline-name", required=True)
    p.add_argument("--git-commit", help=f"7-40 hex characters; default ${SOURCE_VERSION_ENV}")
    p.add_argument("--parameter", action="append", default=[], metavar="Key=Value",
                   help="extra pipeline parameter (repeatable)")
    p.add_argument("--definition-file", help="pipeline definition JSON to upsert before starting")
    p.add_argument("--role-arn", help="the pipeline's execution role (with --definition-file)")
    p.add_argument("--display-name", help="execution display name; default commit-<first 12 characters of SHA>")
    p.add_argument("--wait", action="store_true", help="wait for the execution to end")
    p.add_argument("--timeout-minutes", type=float, default=60.0, help="with --wait (default 60)")
    p.add_argument("--pipeline-stack", help="name of the stack that creates the pipeline (for error messages)")
    p.add_argument("--rerun-tag", default="",
                   help="change it to start a new execution for a commit already started (default: idempotent)")
    p.add_argument("--region", help="default: the AWS_REGION of the environment")
    return p


def main(argv: Optional[Sequence[str]] = None, *, sagemaker: Any = None,
         sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> int:
    def body(args: argparse.Namespace) -> int:
        if not PIPELINE_NAME_RE.match(args.pipeline_name):
            raise UsageError(
                f"--pipeline-name {args.pipeline_name!r} is not a SageMaker pipeline name (letters, digits, "
                "hyphens; 256 characters at most)"
            )
        if args.git_commit is not None:
            commit = validate_git_commit(args.git_commit, "--git-commit")
        else:
            commit = validate_git_commit(env(SOURCE_VERSION_ENV), SOURCE_VERSION_ENV)
        parameters = parse_parameters(args.parameter)
        if bool(args.definition_file) != bool(args.role_arn):
            raise UsageError("--definition-file and --role-arn go together (the role the pipeline runs as)")
        if args.role_arn and not ROLE_ARN_RE.match(args.role_arn):
            raise UsageError(f"--role-arn {args.role_arn!r} is not an IAM role ARN")
        display_name = args.display_name or f"commit-{commit[:12]}"
        if not DISPLAY_NAME_RE.match(display_name):
            raise UsageError(
                f"--display-name {display_name!r}: letters, digits and hyphens only, 82 characters at most"
            )
        if args.timeout_minutes <= 0:
            raise UsageError("--timeout-minutes must be positive")
        definition = load_definition(args.definition_file) if args.definition_file else None
        names = [GIT_COMMIT_PARAMETER, *(p["Name"] for p in parameters)]
        if definition is not None:
            check_parameters_declared(args.pipeline_name, definition, names)

        sm = sagemaker or client("sagemaker", args.region)
        region = sm.meta.region_name

        if definition is not None:
            action = upsert_pipeline(sm, args.pipeline_name, definition, args.role_arn)
            log(f"pipeline '{args.pipeline_name}' {action} from {args.definition_file}")
        else:
            current = describe_pipeline(sm, args.pipeline_name)
            if current is None:
                raise ScriptError(missing_pipeline_message(args.pipeline_name, region, args.pipeline_stack))
            check_parameters_declared(args.pipeline_name, current.get("PipelineDefinition"), names)

        build = env("CODEBUILD_BUILD_ID")
        description = f"git commit {commit}" + (f", CodeBuild build {build}" if build else "")
        token = client_request_token(args.pipeline_name, commit, parameters, args.rerun_tag)
        arn = start_execution(
            sm, pipeline_name=args.pipeline_name, git_commit=commit, parameters=parameters,
            display_name=display_name, description=description, token=token, region=region,
            pipeline_stack=args.pipeline_stack,
        )
        log(f"started pipeline '{args.pipeline_name}' for commit {commit}: {arn}")
        print(arn, flush=True)
        if not args.wait:
            return EXIT_OK

        desc = wait_for_execution(sm, arn, timeout_seconds=args.timeout_minutes * 60, sleep=sleep, clock=clock)
        status = desc["PipelineExecutionStatus"]
        if status == SUCCEEDED:
            log(f"pipeline execution {arn} succeeded")
            return EXIT_OK
        reason = desc.get("FailureReason") or "SageMaker gave no failure reason"
        steps = failed_steps(sm, arn)
        detail = f"; failed steps: {'; '.join(steps)}" if steps else ""
        raise ScriptError(f"pipeline execution {arn} ended {status}: {reason}{detail}", EXIT_FAILED)

    return run(_parser(), body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
