"""Deploy a serving stack (``<project>-<env>-serving-<model>-<stage>``) into the rehearsal and hand out what to call.

:func:`deploy_serving` does what ``cdk deploy <stack> --parameters ...`` and then the services do:

- parameters as CloudFormation takes them: an undeclared one fails ("Parameters: [X] do not exist in the
  template"), one without a value or default fails ("Parameters: [X] must have values"), one not matching its
  ``AllowedPattern`` fails ("Parameter 'X' must match pattern ..."); the values go to the resolver's overrides.
- the stack's roles, policies and log groups are created in the stand-in account (:meth:`rehearsal.cloud.Cloud.deploy`).
- an ``AWS::SageMaker::Endpoint``: its model's package, execution role, ``EnableNetworkIsolation``, the endpoint
  configuration's first variant and ``DataCaptureConfig``, served by :class:`rehearsal.endpoint.EndpointStandIn`
  (HTTP on 127.0.0.1).
- a ``VpcConfig`` of the model or the function must name at least one subnet and one security group, each of the
  deployed stacks (what the shared stack's network exports resolve to) or a literal ``subnet-``/``sg-`` ID (a landing
  zone's): CreateModel/CreateFunction fail otherwise. Routes and security group rules are not emulated.
- an ``AWS::Lambda::Function`` with a zip asset: :class:`FunctionStandIn` runs it with :mod:`rehearsal.lambda_runtime`
  (the template's resolved ``Handler``, ``Environment``, layers, memory and timeout) under the function role's
  credentials (``AWS_ENDPOINT_URL`` = moto, and in ``endpoint_proxy`` mode ``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME`` =
  the endpoint stand-in) on a clean Python 3.12.
- an ``AWS::Lambda::Url`` with ``AuthType: AWS_IAM``: a local HTTP server; each request must be SigV4-signed (service
  ``lambda``) by a principal whose identity policies allow **both** ``lambda:InvokeFunctionUrl`` and
  ``lambda:InvokeFunction`` on the URL's function (qualified by the URL's ``Qualifier``): Lambda docs, "Control access
  to Lambda function URLs" (required of new function URLs since October 2025). Otherwise 403 AccessDeniedException.
  The request becomes a payload-2.0 event; the handler's ``{statusCode, headers, body, isBase64Encoded}`` the HTTP
  response.

Not emulated: resource-based policies of the function (none in the template), CodeDeploy traffic shifting between
versions (the alias runs the current code), reserved/provisioned concurrency, X-Ray, alarms and dashboards, the
Model Monitor schedule (only its baseline is checked, by :meth:`EndpointStandIn.check_capture`).
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlsplit

from rehearsal.assembly import ACCOUNT, REGION, RehearsalError, Stack, resolved_properties
from rehearsal.context import Rehearsal
from rehearsal.endpoint import EndpointStandIn
from rehearsal.http_auth import CallerError, authenticate, authorize, start_http
from rehearsal import lambda_runtime


# --- the function --------------------------------------------------------------------------------------------------
@dataclass
class FunctionStandIn:
    rh: Rehearsal
    name: str
    arn: str
    role_arn: str
    function_dir: Path
    layer_dirs: list[Path]
    handler: str
    environment: dict[str, str]
    memory_mb: int
    timeout_seconds: int
    python: str
    endpoint_url: Optional[str] = None  # AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME (endpoint_proxy mode)
    invocations: list[lambda_runtime.Invocation] = field(default_factory=list)

    def run(self, event: Any) -> lambda_runtime.Invocation:
        """One cold invocation under the function role's credentials (fresh ones each time, as Lambda rotates)."""
        extra = dict(self.rh.cloud.environ(self.role_arn))
        if self.endpoint_url:
            extra["AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME"] = self.endpoint_url
        runtime = lambda_runtime.runtime_sdk_dir(self.rh.workdir / "lambda-var-runtime")
        invocation = lambda_runtime.run(
            self.function_dir, self.layer_dirs, self.handler, self.environment, event, self.python,
            runtime_dirs=[runtime], extra_env=extra, function_name=self.name, memory_mb=self.memory_mb,
            region=REGION, timeout_seconds=float(self.timeout_seconds),
        )
        self.invocations.append(invocation)
        return invocation

    def invoke(self, event: Any) -> Any:
        return self.run(event).result


# --- the deployment ------------------------------------------------------------------------------------------------
@dataclass
class ServingDeployment:
    stack: Stack
    parameters: dict[str, str]
    endpoint: Optional[EndpointStandIn] = None
    function: Optional[FunctionStandIn] = None
    function_url: Optional[str] = None  # the local Function URL server (AWS_IAM)
    url_qualifier: Optional[str] = None
    data_quality_role_arn: Optional[str] = None
    _servers: list[Any] = field(default_factory=list)

    def close(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        self._servers.clear()
        if self.endpoint is not None:
            self.endpoint.close()

    def __enter__(self) -> "ServingDeployment":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def set_parameters(rh: Rehearsal, stack: Stack, parameters: dict[str, str]) -> dict[str, str]:
    """Validate and set the stack's parameters as CloudFormation takes them (module docstring); the values used."""
    declared = stack.template.get("Parameters", {})
    unknown = [name for name in parameters if name not in declared]
    if unknown:
        raise RehearsalError(f"{stack.name}: Parameters: [{', '.join(unknown)}] do not exist in the template")
    values: dict[str, str] = {}
    missing = []
    for name, spec in declared.items():
        if name.startswith("BootstrapVersion"):
            continue
        if name in parameters:
            values[name] = str(parameters[name])
        elif "Default" in spec:
            values[name] = str(spec["Default"])
        else:
            missing.append(name)
    if missing:
        raise RehearsalError(f"{stack.name}: Parameters: [{', '.join(missing)}] must have values")
    for name, value in values.items():
        pattern = declared[name].get("AllowedPattern")
        if pattern and name in parameters and not re.fullmatch(pattern, value):
            raise RehearsalError(f"{stack.name}: Parameter '{name}' must match pattern {pattern} "
                                 f"({declared[name].get('ConstraintDescription', '')}): {value!r}")
    for name in parameters:
        rh.assembly.resolver.overrides[(stack.name, name)] = values[name]
    return values


def deploy_serving(rh: Rehearsal, model: str, stage: str, parameters: dict[str, str], *,
                   lambda_python: Optional[str] = None) -> ServingDeployment:
    """Deploy ``serving-<model>-<stage>`` with ``parameters`` and start its endpoint, function and Function URL."""
    stack = rh.assembly.stack(f"-serving-{model}-{stage}")
    values = set_parameters(rh, stack, parameters)
    rh.cloud.deploy([stack])
    deployment = ServingDeployment(stack=stack, parameters=values)
    try:
        for logical in stack.of_type("AWS::IAM::Role"):
            if "DataQuality" in logical:
                deployment.data_quality_role_arn = rh.cloud.role_arn(stack, logical)
        endpoints = stack.of_type("AWS::SageMaker::Endpoint")
        if endpoints:
            (ep_logical, _), = endpoints.items()
            ep = resolved_properties(rh.assembly, stack, ep_logical)
            config_logical = _logical_of(rh, stack, "AWS::SageMaker::EndpointConfig", ep["EndpointConfigName"])
            config = resolved_properties(rh.assembly, stack, config_logical)
            variant = config["ProductionVariants"][0]
            model_logical = _logical_of(rh, stack, "AWS::SageMaker::Model", variant["ModelName"])
            sm_model = resolved_properties(rh.assembly, stack, model_logical)
            containers = sm_model.get("Containers") or [sm_model.get("PrimaryContainer") or {}]
            package_arn = containers[0].get("ModelPackageName")
            if not package_arn:
                raise RehearsalError(f"{stack.name}/{model_logical}: the model has no ModelPackageName")
            _check_vpc(rh, f"{stack.name}/{model_logical}", sm_model.get("VpcConfig"), "Subnets")
            isolated = str(sm_model.get("EnableNetworkIsolation", False)).lower() == "true"
            deployment.endpoint = EndpointStandIn.from_package(
                rh, package_arn, sm_model["ExecutionRoleArn"], endpoint_name=ep["EndpointName"],
                variant=variant["VariantName"], data_capture=config.get("DataCaptureConfig"),
                network_isolation=isolated,
            )
            deployment.endpoint.serve()
        functions = {k: v for k, v in stack.of_type("AWS::Lambda::Function").items()
                     if "S3Key" in (v["Properties"].get("Code") or {})}
        inference = {k: v for k, v in functions.items() if v["Properties"].get("Layers")} or functions
        if inference:
            (fn_logical, fn_res), = inference.items()
            deployment.function = _function(rh, stack, fn_logical, fn_res, lambda_python, deployment.endpoint)
            urls = stack.of_type("AWS::Lambda::Url")
            if urls:
                (url_logical, _), = urls.items()
                url = resolved_properties(rh.assembly, stack, url_logical)
                if url.get("AuthType") != "AWS_IAM":
                    raise RehearsalError(f"{stack.name}/{url_logical}: AuthType {url.get('AuthType')} (the platform's "
                                         "Function URL is AWS_IAM)")
                deployment.url_qualifier = url.get("Qualifier")
                server, base = start_http(_function_url_handler(deployment.function, deployment.url_qualifier))
                deployment._servers.append(server)
                deployment.function_url = base + "/"
        rh.facts.setdefault("serving", {})[stack.name] = {
            "parameters": values,
            "endpoint": deployment.endpoint.name if deployment.endpoint else None,
            "function": deployment.function.name if deployment.function else None,
            "mode": deployment.function.environment.get("INFERENCE_MODE") if deployment.function else None,
        }
        return deployment
    except BaseException:
        deployment.close()
        raise


# IDs a VpcConfig may name besides the deployed stacks' own subnets and groups: a landing zone's, written in the config.
_LITERAL_IDS = {"subnet": re.compile(r"^subnet-[0-9a-f]{8}(?:[0-9a-f]{9})?$"),
                "security group": re.compile(r"^sg-[0-9a-f]{8}(?:[0-9a-f]{9})?$")}


def _check_vpc(rh: Rehearsal, owner: str, vpc: Optional[dict], subnets_key: str) -> None:
    """A model's (``Subnets``) or a function's (``SubnetIds``) resolved ``VpcConfig`` names subnets and security
    groups that exist: the deployed stacks' (as the resolver names them) or literal IDs."""
    if vpc is None:
        return
    resolver = rh.assembly.resolver
    known: dict[str, set[str]] = {"subnet": set(), "security group": set()}
    for other in rh.assembly.stacks.values():
        known["subnet"] |= {resolver.ref(other, logical) for logical in other.of_type("AWS::EC2::Subnet")}
        known["security group"] |= {resolver.get_att(other, logical, "GroupId")
                                    for logical in other.of_type("AWS::EC2::SecurityGroup")}
    for field, what in ((subnets_key, "subnet"), ("SecurityGroupIds", "security group")):
        ids = vpc.get(field) or []
        if not ids:
            raise RehearsalError(f"{owner}: VpcConfig.{field} is empty (it needs at least one {what})")
        for value in ids:
            if not isinstance(value, str) or (value not in known[what] and not _LITERAL_IDS[what].match(value)):
                raise RehearsalError(f"{owner}: VpcConfig.{field} names {value!r}, which is no {what} of the deployed "
                                     f"stacks ({sorted(known[what]) or 'none'}) nor a {what} ID")


def _logical_of(rh: Rehearsal, stack: Stack, cfn_type: str, physical: str) -> str:
    for logical in stack.of_type(cfn_type):
        if rh.assembly.resolver.name(stack, logical) == physical:
            return logical
    raise RehearsalError(f"{stack.name}: no {cfn_type} named {physical}")


def _function(rh: Rehearsal, stack: Stack, logical: str, res: dict, python: Optional[str],
              endpoint: Optional[EndpointStandIn]) -> FunctionStandIn:
    props = resolved_properties(rh.assembly, stack, logical)
    raw = res["Properties"]
    _check_vpc(rh, f"{stack.name}/{logical}", props.get("VpcConfig"), "SubnetIds")
    code = stack.assets.get(props["Code"]["S3Key"])
    if code is None:
        raise RehearsalError(f"{stack.name}/{logical}: Code {props['Code']} is not an asset of the stack")
    layer_dirs = []
    for layer in raw.get("Layers", []):
        if not (isinstance(layer, dict) and set(layer) == {"Ref"} and layer["Ref"] in stack.resources):
            raise RehearsalError(f"{stack.name}/{logical}: layer {layer!r} is not a layer of this stack")
        content = resolved_properties(rh.assembly, stack, layer["Ref"])["Content"]
        asset = stack.assets.get(content["S3Key"])
        if asset is None:
            raise RehearsalError(f"{stack.name}/{layer['Ref']}: Content {content} is not an asset of the stack")
        layer_dirs.append(asset.path)
    environment = {k: str(v) for k, v in (props.get("Environment") or {}).get("Variables", {}).items()}
    python = python or lambda_runtime.find_python(props["Runtime"].replace("python", ""))
    if python is None:
        raise RehearsalError(f"{stack.name}/{logical}: no {props['Runtime']} interpreter for the Lambda runtime "
                             "(pyenv install 3.12, or set LAMBDA_PYTHON)")
    proxy = environment.get("INFERENCE_MODE") == "endpoint_proxy"
    if proxy and endpoint is None:
        raise RehearsalError(f"{stack.name}/{logical}: endpoint_proxy mode but the stack serves no endpoint")
    name = props["FunctionName"] if "FunctionName" in props else rh.assembly.resolver.name(stack, logical)
    return FunctionStandIn(
        rh=rh, name=name, arn=f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}", role_arn=props["Role"],
        function_dir=code.path, layer_dirs=layer_dirs, handler=props["Handler"], environment=environment,
        memory_mb=int(props.get("MemorySize", 128)), timeout_seconds=int(props.get("Timeout", 3)), python=python,
        endpoint_url=endpoint.url if proxy and endpoint is not None else None,
    )


def _function_url_handler(function: FunctionStandIn, qualifier: Optional[str]):
    resource = f"{function.arn}:{qualifier}" if qualifier else function.arn

    def handle(method: str, url: str, path: str, headers: dict[str, str], body: bytes):
        try:
            caller = authenticate(method, url, headers, body, "lambda")
            # Both actions, on the function the URL invokes (Lambda docs: urls-auth).
            authorize(caller, "lambda:InvokeFunctionUrl", resource)
            authorize(caller, "lambda:InvokeFunction", resource)
        except CallerError as error:
            return error.status, {"Content-Type": "application/json", "x-amzn-ErrorType": error.kind}, \
                json.dumps({"Message": error.message}).encode()
        event = _url_event(method, url, path, headers, body, caller.arn)
        invocation = function.run(event)
        if not invocation.ok:
            return 502, {"Content-Type": "application/json", "x-amzn-ErrorType": "FunctionError"}, json.dumps(
                {"Message": "Internal Server Error", "error": invocation.result}).encode()
        return _url_response(invocation.result)

    return handle


def _url_event(method: str, url: str, path: str, headers: dict[str, str], body: bytes, caller_arn: str) -> dict:
    """A payload-format 2.0 event as Function URLs send it."""
    parts = urlsplit(url)
    lower = {k.lower(): v for k, v in headers.items()}
    text_types = ("application/json", "text/", "application/xml", "application/x-www-form-urlencoded")
    is_text = any(lower.get("content-type", "").startswith(t) for t in text_types)
    event = {
        "version": "2.0", "routeKey": "$default", "rawPath": parts.path or "/", "rawQueryString": parts.query,
        "headers": lower,
        "requestContext": {
            "accountId": ACCOUNT, "apiId": "rehearsal", "domainName": parts.netloc, "domainPrefix": "rehearsal",
            "authorizer": {"iam": {"accessKey": "", "accountId": ACCOUNT, "callerId": "", "userArn": caller_arn,
                                   "userId": ""}},
            "http": {"method": method, "path": parts.path or "/", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1",
                     "userAgent": lower.get("user-agent", "")},
            "requestId": str(uuid.uuid4()), "routeKey": "$default", "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime()), "timeEpoch": int(time.time() * 1000),
        },
        "isBase64Encoded": bool(body) and not is_text,
    }
    if body:
        event["body"] = body.decode("utf-8") if is_text else base64.b64encode(body).decode()
    return event


def _url_response(result: Any) -> tuple[int, dict[str, str], bytes]:
    """Function URL response mapping: a dict with statusCode is the response; anything else is a 200 JSON body."""
    if isinstance(result, dict) and "statusCode" in result:
        body = result.get("body") or ""
        payload = base64.b64decode(body) if result.get("isBase64Encoded") else str(body).encode()
        headers = {k: str(v) for k, v in (result.get("headers") or {}).items()}
        return int(result["statusCode"]), headers, payload
    return 200, {"Content-Type": "application/json"}, json.dumps(result).encode()
