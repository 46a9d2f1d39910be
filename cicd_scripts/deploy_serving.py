"""Model deploy CD: ``cdk deploy`` one stage's serving stack with an approved model package, then record its outputs.

    python -m cicd_scripts.deploy_serving --project P --environment E --model M --stage S
        (--model-package-arn ARN | --package-file resolved.json)
        [--outputs-file cdk-outputs.json] [--targets-file smoke-targets.json]
        [--endpoint-output EndpointName] [--function-url-output FunctionUrl] [--dry-run]

Runs (from the CDK app's directory)::

    npx cdk deploy <P>-<E>-serving-<M>-<S> --require-approval never --exclusively -c env=<E>
        --parameters <stack>:ModelPackageArn=<arn> --outputs-file <outputs file>

The parameter is qualified with the stack name and ``--exclusively`` is set: the CDK CLI hands an unqualified
``--parameters`` value to every stack it deploys, dependencies included, and CloudFormation rejects a parameter a
template does not declare; the model deploy pipeline must not redeploy shared stacks anyway.

Then reads the outputs file (``{"<stack>": {"EndpointName": ..., "FunctionUrl": ...}}``) and writes the targets file
for ``smoke_test --targets-file``: ``{"stack_name", "stage", "model_package_arn", "endpoint_name", "function_url"}``
(an absent output is null; at least one must exist).

Exit codes: 0 deployed; 1 ``cdk deploy`` failed or the outputs are unusable; 2 invalid arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

from cicd_scripts._common import (
    EXIT_OK,
    ArgumentParser,
    ScriptError,
    UsageError,
    log,
    read_json_file,
    run,
    write_json_file,
)

# Mirrors platform_config/schema.py (kept import-free so CodeBuild needs only the standard library and boto3).
NAME_PATTERN = r"^[a-z][a-z0-9-]*[a-z0-9]$"
_PARTS: dict[str, tuple[str, int]] = {
    "project": (NAME_PATTERN, 16),
    "environment": (r"^[a-z][a-z0-9]*$", 8),
    "model": (NAME_PATTERN, 20),
    "stage": (r"^[a-z][a-z0-9]*$", 10),
}
PACKAGE_ARN_RE = re.compile(r"^arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:\d{12}:model-package/.+$")
MODEL_PACKAGE_PARAMETER = "ModelPackageArn"
MODEL_DATA_PARAMETER = "ModelDataUrl"
ENDPOINT_OUTPUT = "EndpointName"
FUNCTION_URL_OUTPUT = "FunctionUrl"
CDK_ENV = {"CDK_DISABLE_VERSION_CHECK": "true", "CDK_DISABLE_CLI_TELEMETRY": "true"}

Runner = Callable[[Sequence[str], Mapping[str, str]], int]


def serving_stack_name(project: str, environment: str, model: str, stage: str) -> str:
    """``<project>-<environment>-serving-<model>-<stage>``; ValueError for a part the config schema would refuse."""
    for label, value in (("project", project), ("environment", environment), ("model", model), ("stage", stage)):
        pattern, max_len = _PARTS[label]
        if not re.match(pattern, value) or len(value) > max_len:
            raise ValueError(
                f"{label} {value!r} is not a valid {label} name (pattern {pattern}, at most {max_len} characters)"
            )
    return f"{project}-{environment}-serving-{model}-{stage}"


def cdk_deploy_command(stack: str, environment: str, model_package_arn: str, outputs_file: str,
                       cdk: Sequence[str] = ("npx", "cdk"), model_data_url: Optional[str] = None) -> list[str]:
    """The deploy command. ``model_data_url`` (the package's model.tar.gz) feeds the model-in-Lambda function."""
    parameters = ["--parameters", f"{stack}:{MODEL_PACKAGE_PARAMETER}={model_package_arn}"]
    if model_data_url:
        parameters += ["--parameters", f"{stack}:{MODEL_DATA_PARAMETER}={model_data_url}"]
    return [
        *cdk, "deploy", stack,
        "--require-approval", "never",
        "--exclusively",
        "-c", f"env={environment}",
        *parameters,
        "--outputs-file", outputs_file,
    ]


def subprocess_runner(cmd: Sequence[str], env: Mapping[str, str]) -> int:
    """Run ``cmd`` with its output streaming into the build log; its exit code."""
    try:
        return subprocess.run(list(cmd), env=dict(env), check=False).returncode
    except FileNotFoundError:
        raise ScriptError(
            f"'{cmd[0]}' was not found: the build needs Node.js (the CodeBuild standard image has it) and "
            "'npm ci' run in the repository first"
        ) from None


def _find_output(outputs: Mapping[str, Any], name: str, stack: str) -> Optional[str]:
    """The output ``name``, or the single output a construct prefixed and CDK hash-suffixed (``XName1A2B3C4D``)."""
    if name in outputs:
        return str(outputs[name])
    pattern = re.compile(rf"^[A-Za-z0-9]*{re.escape(name)}(?:[0-9A-F]{{8}})?$")
    matches = sorted(k for k in outputs if pattern.match(k))
    if len(matches) > 1:
        raise ScriptError(f"stack '{stack}' has several outputs that look like {name}: {matches}; name one exactly")
    return str(outputs[matches[0]]) if matches else None


def read_targets(outputs_file: str, stack: str, *, endpoint_output: str = ENDPOINT_OUTPUT,
                 function_url_output: str = FUNCTION_URL_OUTPUT) -> dict[str, Optional[str]]:
    """``{"endpoint_name", "function_url"}`` from a ``cdk deploy --outputs-file`` document."""
    path = Path(outputs_file)
    if not path.is_file():
        raise ScriptError(f"cdk deploy wrote no outputs file '{outputs_file}'")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ScriptError(f"outputs file '{outputs_file}' is not valid JSON: {exc.msg}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get(stack), dict):
        found = sorted(doc) if isinstance(doc, dict) else []
        raise ScriptError(f"outputs file '{outputs_file}' has no outputs for stack '{stack}' (stacks: {found})")
    outputs = doc[stack]
    targets = {
        "endpoint_name": _find_output(outputs, endpoint_output, stack),
        "function_url": _find_output(outputs, function_url_output, stack),
    }
    if not any(targets.values()):
        raise ScriptError(
            f"stack '{stack}' has neither output '{endpoint_output}' nor '{function_url_output}' "
            f"(outputs: {sorted(outputs)}); the serving stack must export the endpoint name and/or the function URL"
        )
    return targets


def _package_arn(args: argparse.Namespace) -> str:
    if args.package_file:
        doc = read_json_file(args.package_file, "--package-file")
        arn = doc.get("model_package_arn") if isinstance(doc, dict) else None
        if not arn:
            raise UsageError(f"--package-file '{args.package_file}' has no model_package_arn")
    else:
        arn = args.model_package_arn
    if not PACKAGE_ARN_RE.match(str(arn)):
        raise UsageError(f"{arn!r} is not a model package ARN (arn:aws:sagemaker:<region>:<account>:model-package/...)")
    return str(arn)


def _model_data_url(args: argparse.Namespace) -> Optional[str]:
    url = args.model_data_url
    if not url and args.package_file:
        doc = read_json_file(args.package_file, "--package-file")
        url = doc.get("model_data_url") if isinstance(doc, dict) else None
    if url and not str(url).startswith("s3://"):
        raise UsageError(f"--model-data-url {url!r} is not an s3:// URI of the model artifact (model.tar.gz)")
    return str(url) if url else None


def _parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="python -m cicd_scripts.deploy_serving",
        description="cdk deploy one stage's serving stack with an approved model package.",
    )
    p.add_argument("--project", required=True)
    p.add_argument("--environment", required=True, help="the config (config/<environment>.yaml): -c env=<this>")
    p.add_argument("--model", required=True)
    p.add_argument("--stage", required=True)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model-package-arn")
    src.add_argument("--package-file", help="resolve_approved_package --output-file")
    p.add_argument("--model-data-url", help="s3:// URI of the package's model.tar.gz (for a model-in-Lambda stack)")
    p.add_argument("--outputs-file", default="cdk-outputs.json")
    p.add_argument("--targets-file", default="smoke-targets.json", help="written for smoke_test --targets-file")
    p.add_argument("--endpoint-output", default=ENDPOINT_OUTPUT, help="stack output holding the endpoint name")
    p.add_argument("--function-url-output", default=FUNCTION_URL_OUTPUT, help="stack output holding the URL")
    p.add_argument("--dry-run", action="store_true", help="print the command, do not run it")
    return p


def main(argv: Optional[Sequence[str]] = None, *, runner: Runner = subprocess_runner) -> int:
    def body(args: argparse.Namespace) -> int:
        try:
            stack = serving_stack_name(args.project, args.environment, args.model, args.stage)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        arn = _package_arn(args)
        cmd = cdk_deploy_command(stack, args.environment, arn, args.outputs_file,
                                 model_data_url=_model_data_url(args))
        log("$ " + " ".join(cmd))
        if args.dry_run:
            print(json.dumps(cmd), flush=True)
            return EXIT_OK
        code = runner(cmd, {**os.environ, **CDK_ENV})
        if code != 0:
            raise ScriptError(f"cdk deploy of stack '{stack}' failed with exit code {code} (see its output above)")
        targets = read_targets(args.outputs_file, stack, endpoint_output=args.endpoint_output,
                               function_url_output=args.function_url_output)
        doc = {"stack_name": stack, "stage": args.stage, "model_package_arn": arn, **targets}
        write_json_file(args.targets_file, doc)
        print(json.dumps(doc, indent=2), flush=True)
        return EXIT_OK

    return run(_parser(), body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
