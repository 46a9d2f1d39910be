"""Stand-ins for the command-line tools the buildspecs call, used by :mod:`rehearsal.codebuild`.

``cdk deploy`` (also as ``npx cdk deploy``): checks the command the way the CDK CLI and CloudFormation would check it
against the synthesized assembly (``REHEARSAL_CDK_OUT``): the stack exists; ``-c env=`` and ``-c serving=`` select it
(the app synthesizes a serving stack only when ``serving`` names it); every ``--parameters <stack>:<name>=<value>`` is
declared by the template ("Parameters: [X] do not exist in the template") and matches its ``AllowedPattern``; every
parameter without a default has a value. It then records the deployment request (``REHEARSAL_DEPLOY_REQUESTS``, for
the rehearsal to deploy the stack's resources into its stand-in account) and writes ``--outputs-file`` with the
stack's outputs resolved for those parameters. It deploys nothing itself.

``aws``: the subcommands the buildspecs use, made with boto3 under the build's credentials (environment):
``s3 cp <s3 uri> <file>``, ``cloudformation describe-stacks --stack-name S``, ``sts assume-role --role-arn A
--role-session-name N``, with ``--query`` (JMESPath) and ``--output text|json``.
"""

from __future__ import annotations

import json
import os
import re
import sys
from typing import Optional, Sequence


def _fail(message: str, code: int = 1) -> int:
    print(message, file=sys.stderr)
    return code


def cdk(argv: Sequence[str]) -> int:
    from rehearsal.assembly import Assembly

    if not argv or argv[0] != "deploy":
        return _fail(f"rehearsal cdk stand-in: only 'cdk deploy' is rehearsed, got {' '.join(argv)!r}", 2)
    args = list(argv[1:])
    stacks, context, parameters = [], {}, {}
    outputs_file: Optional[str] = None
    flags = {"--exclusively": False, "--require-approval": None}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("-c", "--context"):
            key, _, value = args[i + 1].partition("=")
            context[key] = value
            i += 2
        elif arg == "--parameters":
            target, _, value = args[i + 1].partition("=")
            stack, _, name = target.rpartition(":")
            parameters[(stack, name)] = value
            i += 2
        elif arg == "--outputs-file":
            outputs_file = args[i + 1]
            i += 2
        elif arg == "--require-approval":
            flags["--require-approval"] = args[i + 1]
            i += 2
        elif arg == "--exclusively" or arg == "-e":
            flags["--exclusively"] = True
            i += 1
        elif arg.startswith("-"):
            return _fail(f"rehearsal cdk stand-in: option {arg} is not rehearsed", 2)
        else:
            stacks.append(arg)
            i += 1
    if len(stacks) != 1:
        return _fail(f"cdk deploy: the deploy pipeline deploys exactly one stack, got {stacks}")
    name = stacks[0]
    assembly = Assembly(os.environ["REHEARSAL_CDK_OUT"])
    for stack_name, logical, attribute, value in json.loads(os.environ.get("REHEARSAL_ATTRIBUTES", "[]")):
        assembly.resolver.attributes[(stack_name, logical, attribute)] = value
    if name not in assembly.stacks:
        return _fail(f"No stack found matching '{name}'. Use \"list\" to print manifest")
    stack = assembly.stacks[name]
    env = context.get("env")
    if not env or not name.split("-serving-")[0].endswith(f"-{env}"):
        return _fail(f"cdk deploy {name}: -c env={env} does not select the config of this stack")
    match = re.match(r"^.*-serving-(?P<model>[a-z0-9-]+?)-(?P<stage>[a-z0-9]+)$", name)
    if match and context.get("serving") not in ("all", f"{match['model']}/{match['stage']}"):
        return _fail(
            f"No stack found matching '{name}': the app synthesizes it only with -c serving={match['model']}/"
            f"{match['stage']} (got {context.get('serving')!r})"
        )
    if not flags["--exclusively"]:
        return _fail(f"cdk deploy {name}: without --exclusively the CLI would also deploy its dependencies")
    declared = stack.template.get("Parameters", {})
    unknown = sorted(p for (s, p) in parameters if p not in declared)
    if unknown:
        return _fail(f"An error occurred (ValidationError) when calling the CreateChangeSet operation: Parameters: "
                     f"{unknown} do not exist in the template")
    for (target, pname), value in parameters.items():
        if target not in (name, ""):
            return _fail(f"cdk deploy: --parameters {target}:{pname} names another stack than {name}")
        pattern = declared[pname].get("AllowedPattern")
        if pattern and not re.fullmatch(pattern, value):
            return _fail(f"Parameter '{pname}' must match pattern {pattern} (value {value!r})")
        assembly.resolver.overrides[(name, pname)] = value
    missing = sorted(p for p, d in declared.items() if "Default" not in d and (name, p) not in parameters)
    if missing:
        return _fail(f"An error occurred (ValidationError): Parameters: {missing} must have values")
    outputs = {
        key: assembly.resolver.resolve(stack, out["Value"])
        for key, out in stack.template.get("Outputs", {}).items()
        if "Condition" not in out or assembly.resolver.condition(stack, out["Condition"])
    }
    request = {"stack": name, "parameters": {p: v for (_, p), v in parameters.items()}, "context": context,
               "outputs": outputs}
    with open(os.environ["REHEARSAL_DEPLOY_REQUESTS"], "a") as fh:
        fh.write(json.dumps(request) + "\n")
    if outputs_file:
        with open(outputs_file, "w") as fh:
            json.dump({name: outputs}, fh, indent=2)
    print(f" ✅  {name} (rehearsal: deployment recorded)")
    return 0


def aws(argv: Sequence[str]) -> int:
    import boto3
    import jmespath

    args = list(argv)
    query = output = None
    rest: list[str] = []
    i = 0
    options: dict[str, str] = {}
    while i < len(args):
        if args[i] == "--query":
            query = args[i + 1]
            i += 2
        elif args[i] == "--output":
            output = args[i + 1]
            i += 2
        elif args[i] == "--only-show-errors":
            i += 1
        elif args[i].startswith("--"):
            options[args[i]] = args[i + 1]
            i += 2
        else:
            rest.append(args[i])
            i += 1
    session = boto3.session.Session()
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    if rest[:2] == ["s3", "cp"]:
        src, dst = rest[2], rest[3]
        if not src.startswith("s3://"):
            return _fail("rehearsal aws stand-in: only s3 cp <s3 uri> <file> is rehearsed", 2)
        bucket, _, key = src[5:].partition("/")
        try:
            session.client("s3", endpoint_url=endpoint).download_file(bucket, key, dst)
        except Exception as exc:  # noqa: BLE001 (the CLI prints the error and exits 1)
            return _fail(f"fatal error: {exc}")
        return 0
    if rest[:2] == ["cloudformation", "describe-stacks"]:
        call = lambda c: c.describe_stacks(StackName=options["--stack-name"])  # noqa: E731
        client = session.client("cloudformation", endpoint_url=endpoint)
    elif rest[:2] == ["sts", "assume-role"]:
        call = lambda c: c.assume_role(  # noqa: E731
            RoleArn=options["--role-arn"], RoleSessionName=options["--role-session-name"]
        )
        client = session.client("sts", endpoint_url=endpoint)
    else:
        return _fail(f"rehearsal aws stand-in: 'aws {' '.join(rest)}' is not rehearsed", 2)
    try:
        result = call(client)
    except Exception as exc:  # noqa: BLE001
        return _fail(f"An error occurred: {exc}", 254)
    result.pop("ResponseMetadata", None)
    value = jmespath.search(query, result) if query else result
    if output == "text":
        if isinstance(value, list):
            print("\t".join(str(v) for v in value))
        else:
            print(value)
    else:
        print(json.dumps(value, default=str, indent=2))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    tool, args = argv[0], argv[1:]
    if tool == "npx":
        if not args or args[0] != "cdk":
            return _fail(f"rehearsal npx stand-in: only 'npx cdk' is rehearsed, got {args!r}", 2)
        return cdk(args[1:])
    if tool == "cdk":
        return cdk(args)
    if tool == "aws":
        return aws(args)
    return _fail(f"unknown stand-in {tool}", 2)


if __name__ == "__main__":
    sys.exit(main())
