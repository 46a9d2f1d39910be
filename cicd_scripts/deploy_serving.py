"""Model deploy CD: ``cdk deploy`` one stage's serving stack with an approved model package, then record its outputs.

    python -m cicd_scripts.deploy_serving --project P --environment E --model M --stage S
        (--model-package-arn ARN | --package-file resolved.json)
        [--endpoint --baseline-statistics-url S3 --baseline-constraints-url S3]
        [--lambda-mode model|endpoint_proxy|none [--model-data-url S3]]
        [--outputs-file cdk-outputs.json] [--targets-file smoke-targets.json]
        [--endpoint-output EndpointName] [--function-url-output FunctionUrl] [--dry-run]

Runs (from the CDK app's directory)::

    npx cdk deploy <P>-<E>-serving-<M>-<S> --require-approval never --exclusively -c env=<E> -c serving=<M>/<S>
        --parameters <stack>:ModelPackageArn=<arn> [--parameters <stack>:<parameter>=<value> ...]
        --outputs-file <outputs file>

``-c serving=<M>/<S>`` makes the app synthesize that one serving stack (it synthesizes none unless asked). The
parameters are the ones the serving stack declares for its configuration: ``BaselineStatisticsUrl`` and
``BaselineConstraintsUrl`` (the package's Model Monitor baseline) with ``--endpoint``, ``ModelDataUrl`` (the package's
model.tar.gz) with ``--lambda-mode model`` or ``endpoint_proxy`` (the function loads the model, or reads its feature
spec); a value the stack does not declare is never passed, because CloudFormation
rejects a parameter a template does not declare. The parameters are qualified with the stack name and
``--exclusively`` is set: the CDK CLI hands an unqualified ``--parameters`` value to every stack it deploys,
dependencies included; the model deploy pipeline must not redeploy shared stacks anyway. ``none`` (the deploy
pipeline's placeholder for an absent value) counts as not given.

Then reads the outputs file (``{"<stack>": {"EndpointName": ..., "FunctionUrl": ...}}``) and writes the targets file
for ``smoke_test --targets-file``: ``{"stack_name", "stage", "model_package_arn", "endpoint_name", "function_url"}``.
The serving configuration decides which targets there are: ``EndpointName`` exactly when ``--endpoint`` is given,
``FunctionUrl`` exactly when ``--lambda-mode`` is ``model`` or ``endpoint_proxy``; the other target is null, so a
Lambda-only model is smoke-tested through its function only and an endpoint-only one through its endpoint only. A
missing expected output, or an output of a target the configuration does not have (the deploy CD and the serving stack
were built from different configs), fails the deploy. Given neither flag, the outputs decide (an absent output is
null; at least one must exist).

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

from platform_config.names import PARTS as _PARTS, SERVING_CONTEXT, Names
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

PACKAGE_ARN_RE = re.compile(r"^arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:\d{12}:model-package/.+$")
MODEL_PACKAGE_PARAMETER = "ModelPackageArn"
MODEL_DATA_PARAMETER = "ModelDataUrl"
BASELINE_STATISTICS_PARAMETER = "BaselineStatisticsUrl"
BASELINE_CONSTRAINTS_PARAMETER = "BaselineConstraintsUrl"
LAMBDA_MODES = ("model", "endpoint_proxy", "none")
PLACEHOLDER = "none"
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
    return Names(project, environment).serving_stack(model, stage)


def serving_context(model: str, stage: str) -> str:
    """The ``serving`` context value that makes the app synthesize this one serving stack."""
    return Names.serving_context(model, stage)


def serving_parameters(*, endpoint: bool, lambda_mode: str, model_data_url: Optional[str],
                       baseline_statistics_url: Optional[str], baseline_constraints_url: Optional[str]
                       ) -> dict[str, str]:
    """The parameters (besides ModelPackageArn) the serving stack of this configuration declares, with their values;
    UsageError naming the missing value."""
    out: dict[str, str] = {}
    if endpoint:
        for flag, name, value in (
            ("--baseline-statistics-url", BASELINE_STATISTICS_PARAMETER, baseline_statistics_url),
            ("--baseline-constraints-url", BASELINE_CONSTRAINTS_PARAMETER, baseline_constraints_url),
        ):
            if not value:
                raise UsageError(
                    f"{flag} is required with --endpoint: the endpoint's data-quality monitor takes the package's "
                    "Model Monitor baseline (resolve_approved_package exports it)"
                )
            _check_s3(flag, value)
            out[name] = value
    if lambda_mode in ("model", "endpoint_proxy"):
        if not model_data_url:
            raise UsageError(f"--model-data-url is required with --lambda-mode {lambda_mode}: the function loads the "
                             "model (model mode) or its feature spec (endpoint_proxy mode) from the package's "
                             "model.tar.gz")
        out[MODEL_DATA_PARAMETER] = model_data_url
    return out


def cdk_deploy_command(stack: str, environment: str, model_package_arn: str, outputs_file: str,
                       cdk: Sequence[str] = ("npx", "cdk"), *, serving: str,
                       parameters: Optional[Mapping[str, str]] = None) -> list[str]:
    """The deploy command: ``serving`` is the ``-c serving=<model>/<stage>`` value, ``parameters`` the serving
    stack's parameters besides ModelPackageArn (see :func:`serving_parameters`)."""
    args = ["--parameters", f"{stack}:{MODEL_PACKAGE_PARAMETER}={model_package_arn}"]
    for name, value in (parameters or {}).items():
        args += ["--parameters", f"{stack}:{name}={value}"]
    return [
        *cdk, "deploy", stack,
        "--require-approval", "never",
        "--exclusively",
        "-c", f"env={environment}",
        "-c", f"{SERVING_CONTEXT}={serving}",
        *args,
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
                 function_url_output: str = FUNCTION_URL_OUTPUT, endpoint: Optional[bool] = None,
                 function: Optional[bool] = None) -> dict[str, Optional[str]]:
    """``{"endpoint_name", "function_url"}`` from a ``cdk deploy --outputs-file`` document. ``endpoint`` and
    ``function`` say whether the serving stack has an endpoint and a function (None: not known, the outputs decide);
    each known one must match the outputs."""
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
    for key, name, expected, what, setting in (
        ("endpoint_name", endpoint_output, endpoint, "an endpoint", "--endpoint (ENDPOINT_ENABLED)"),
        ("function_url", function_url_output, function, "a Lambda function",
         "--lambda-mode (LAMBDA_MODE)"),
    ):
        if expected is None:
            continue
        if expected and not targets[key]:
            raise ScriptError(
                f"stack '{stack}' has no output '{name}' (outputs: {sorted(outputs)}), but it serves {what} "
                f"({setting}): the serving stack must export it for the smoke test"
            )
        if not expected and targets[key]:
            raise ScriptError(
                f"stack '{stack}' has output '{name}', but the deploy is configured without {what} ({setting}): "
                "the deploy CD and the serving stack come from different configs; deploy the model stack first"
            )
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


def _given(value: Optional[str]) -> Optional[str]:
    return None if value is None or value.strip() in ("", PLACEHOLDER) else value.strip()


def _check_s3(flag: str, url: str) -> None:
    if not url.startswith("s3://") or len(url) <= len("s3://"):
        raise UsageError(f"{flag} {url!r} is not an s3:// URI")


def _model_data_url(args: argparse.Namespace) -> Optional[str]:
    url = _given(args.model_data_url)
    if not url and args.package_file:
        doc = read_json_file(args.package_file, "--package-file")
        url = _given(doc.get("model_data_url")) if isinstance(doc, dict) else None
    if url and not str(url).startswith("s3://"):
        raise UsageError(f"--model-data-url {url!r} is not an s3:// URI of the model artifact (model.tar.gz)")
    return str(url) if url else None


def _from_package(args: argparse.Namespace, flag_value: Optional[str], key: str) -> Optional[str]:
    value = _given(flag_value)
    if not value and args.package_file:
        doc = read_json_file(args.package_file, "--package-file")
        value = _given(doc.get(key)) if isinstance(doc, dict) else None
    return value


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
    p.add_argument("--endpoint", action=argparse.BooleanOptionalAction, default=False,
                   help="the serving stack has an endpoint: pass the Model Monitor baseline parameters")
    p.add_argument("--lambda-mode", choices=LAMBDA_MODES, default="none",
                   help="the serving stack's Lambda inference mode; 'model' passes ModelDataUrl")
    p.add_argument("--model-data-url", help="s3:// URI of the package's model.tar.gz (for a model-in-Lambda stack)")
    p.add_argument("--baseline-statistics-url", help="s3:// URI of the package's baseline statistics.json")
    p.add_argument("--baseline-constraints-url", help="s3:// URI of the package's baseline constraints.json")
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
        model_data_url = _model_data_url(args)
        parameters = serving_parameters(
            endpoint=args.endpoint,
            lambda_mode=args.lambda_mode,
            model_data_url=model_data_url,
            baseline_statistics_url=_from_package(args, args.baseline_statistics_url, "baseline_statistics_url"),
            baseline_constraints_url=_from_package(args, args.baseline_constraints_url, "baseline_constraints_url"),
        )
        if model_data_url and MODEL_DATA_PARAMETER not in parameters:
            log(f"(not passing {MODEL_DATA_PARAMETER}: the stack declares it only when its Lambda is enabled)")
        cmd = cdk_deploy_command(stack, args.environment, arn, args.outputs_file,
                                 serving=serving_context(args.model, args.stage), parameters=parameters)
        log("$ " + " ".join(cmd))
        if args.dry_run:
            print(json.dumps(cmd), flush=True)
            return EXIT_OK
        code = runner(cmd, {**os.environ, **CDK_ENV})
        if code != 0:
            raise ScriptError(f"cdk deploy of stack '{stack}' failed with exit code {code} (see its output above)")
        # The serving configuration (the deploy CD passes both): which targets the stack has. Neither given: the
        # outputs decide.
        configured = args.endpoint or args.lambda_mode != "none"
        targets = read_targets(args.outputs_file, stack, endpoint_output=args.endpoint_output,
                               function_url_output=args.function_url_output,
                               endpoint=args.endpoint if configured else None,
                               function=args.lambda_mode != "none" if configured else None)
        doc = {"stack_name": stack, "stage": args.stage, "model_package_arn": arn, **targets}
        write_json_file(args.targets_file, doc)
        print(json.dumps(doc, indent=2), flush=True)
        return EXIT_OK

    return run(_parser(), body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
