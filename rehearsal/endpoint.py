"""A SageMaker real-time endpoint stand-in that serves a registered model package as the framework container does.

:meth:`EndpointStandIn.from_package` does what SageMaker does when the serving stack's ``AWS::SageMaker::Model``
(``Containers[0].ModelPackageName``) becomes an endpoint:

- ``DescribeModelPackage`` (by the deployer: CloudFormation calls ``CreateModel``; the execution role is, per the
  CreateModel reference, the role "SageMaker can assume to access model artifacts and docker image"), then
  ``InferenceSpecification.Containers[0]``: ``Image``, ``ModelDataUrl``, ``Environment``.
- under the **execution role** (the ``ExecutionRoleArn`` of the template's model): ``ModelDataUrl`` is downloaded and
  extracted into ``/opt/ml/model`` (a stand-in root through :func:`rehearsal.context.opt_ml`), and a
  ``SAGEMAKER_SUBMIT_DIRECTORY`` that is an ``s3://`` tarball is downloaded and extracted too.
- then the container serves as the framework image does (sagemaker-xgboost-container ``serving.main``, sagemaker-
  containers ``modules.import_module``, sagemaker-inference-toolkit ``Transformer``):

  * no ``SAGEMAKER_PROGRAM``: the container starts in *algorithm mode* (its own handler; the package's code is never
    imported). The platform's packages need script mode, so this is a defect and :class:`RehearsalError` is raised.
  * ``SAGEMAKER_SUBMIT_DIRECTORY`` (a local directory such as ``/opt/ml/model/code``, or an ``s3://`` tar.gz) is
    copied/extracted into ``/opt/ml/code`` and the module ``SAGEMAKER_PROGRAM`` minus ``.py`` is imported from there
    (the toolkit pip-installs that directory; here it is put on ``sys.path``).
  * ``model_fn("/opt/ml/model")`` once at start; per request ``input_fn(body, content_type)`` (body decoded to
    ``str`` for ``application/json`` and ``text/csv``, bytes otherwise), ``predict_fn(data, model)``,
    ``output_fn(prediction, accept)`` (``Accept`` absent or ``*/*``: ``SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT``, default
    ``application/json``); a ``(body, content_type)`` result sets the response type, otherwise it is ``accept``. A
    ``transform_fn`` replaces the three (with any of them: ValueError, as the toolkit). Missing functions take the
    XGBoost container's defaults (model_fn: NotImplementedError "Please provide a model_fn implementation"; input_fn:
    CSV/JSON to ``xgboost.DMatrix``; predict_fn: ``model.predict(data, validate_features=False)``; output_fn: JSON or
    CSV). Handlers are called with exactly the toolkit's arguments (sagemaker-inference 1.5, the version the XGBoost
    images pin); a handler with one more parameter would get the request context from sagemaker-inference >= 1.9: the
    stand-in records that in ``rh.facts["endpoint"]["context_parameter"]``.
  * a handler exception is a 500 from the container, which ``InvokeEndpoint`` returns as ``ModelError`` (424).

  The handler code runs in a subprocess of ``rh.python -I`` (no project path, no ``PYTHON*`` variables) with the
  container's ``Environment``, the execution role's credentials and the stand-in cloud's endpoint.

  **Network isolation** (the model's ``EnableNetworkIsolation``, ``network_isolation=True``): SageMaker still stages
  ``ModelDataUrl`` (under the execution role, outside the container), but the container reaches nothing: it gets no
  credentials and no endpoint, and a ``SAGEMAKER_SUBMIT_DIRECTORY`` in S3, which the container would download itself,
  fails (:data:`ISOLATED_SUBMIT_DIRECTORY`): the code must be inside model.tar.gz (``/opt/ml/model/code``). ``/opt/ml`` is
  linked while the container starts (code staging, import, ``model_fn``) and released once the model is loaded.

**Data capture** (the endpoint configuration's ``DataCaptureConfig``; docs: "Capture data from real-time endpoint"):
each sampled invocation (``InitialSamplingPercentage``, deterministic) is written, under the execution role, as one
JSON line ``{"captureData": {"endpointInput": {"observedContentType", "mode": "INPUT", "data", "encoding"},
"endpointOutput": {...}}, "eventMetadata": {"eventId", "inferenceId", "inferenceTime"}, "eventVersion": "0"}`` to
``<DestinationS3Uri>/<endpoint>/<variant>/yyyy/mm/dd/hh/<mm-ss-fff>-<uuid>.jsonl``. ``encoding`` is ``CSV``/``JSON``
when the media type is listed in ``CaptureContentTypeHeader``, ``BASE64`` otherwise. The role must be allowed
``kms:GenerateDataKey`` on ``KmsKeyId`` (checked with the IAM evaluation; no encryption is applied: moto has no KMS
here). ``inferenceId`` is the request's ``InferenceId`` (header ``X-Amzn-SageMaker-Inference-Id``), only when given:
Model Monitor joins it with the ground truth's ``eventId``. Not emulated: SageMaker's buffering of several records per
file, capture of failed invocations.
:meth:`EndpointStandIn.check_capture` reads the captured records back and checks the CSV request rows against the
package's ``ModelMetrics.ModelDataQuality.Constraints`` the way Model Monitor's analysis would see them (no header:
columns ``_c0``..; their number; numeric types): a mismatch fails with "baseline does not describe what the endpoint
receives".

**HTTP** (:meth:`EndpointStandIn.serve`): ``POST /endpoints/<name>/invocations`` on 127.0.0.1, the ``InvokeEndpoint``
wire format (``Content-Type``/``Accept`` headers, raw body; response body with ``Content-Type`` and
``x-Amzn-Invoked-Production-Variant``), SigV4 checked against the stand-in's credentials, and the caller's identity
policies evaluated (:func:`rehearsal.cloud.evaluate`) for ``sagemaker:InvokeEndpoint`` on
``arn:aws:sagemaker:<region>:<account>:endpoint/<name lower-case>``: 403 ``AccessDeniedException`` as AWS answers.
Point a client at it with ``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME``. Not emulated: instance types and counts,
autoscaling, blue/green updates, the VPC's routes and security groups, the 6 MB payload limit, ``InvokeEndpointAsync``/streaming.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import random
import re
import shutil
import subprocess
import tarfile
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional
from urllib.parse import unquote, urlsplit

from rehearsal.assembly import ACCOUNT, REGION, RehearsalError
from rehearsal.cloud import DENIALS, Denial, _LOCK, evaluate
from rehearsal.context import Rehearsal, clean_env, opt_ml, split_s3_uri
from rehearsal.endpoint_worker import WORKER
from rehearsal.http_auth import CallerError, authenticate, authorize, aws_error, start_http

ISOLATED_SUBMIT_DIRECTORY = ("EnableNetworkIsolation: the container cannot download SAGEMAKER_SUBMIT_DIRECTORY "
                             "from S3; the inference code must be inside model.tar.gz (code/, "
                             "SAGEMAKER_SUBMIT_DIRECTORY=/opt/ml/model/code)")
ALGORITHM_MODE = ("package has no SAGEMAKER_PROGRAM: the container starts in algorithm mode and never calls "
                  "train.py's model_fn")
BASELINE_MISMATCH = "baseline does not describe what the endpoint receives"
UTF8_TYPES = ("application/json", "text/csv")
START_TIMEOUT = 180.0
REQUEST_TIMEOUT = 60.0


# --- the endpoint -------------------------------------------------------------------------------------------------------
@dataclass
class Response:
    status: int
    body: bytes
    content_type: str
    error: Optional[str] = None

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


@dataclass
class EndpointStandIn:
    rh: Rehearsal
    name: str
    variant: str
    package_arn: str
    role_arn: str
    container: dict[str, Any]
    package: dict[str, Any]
    root: Path
    process: subprocess.Popen
    data_capture: Optional[dict[str, Any]] = None
    user_functions: list[str] = field(default_factory=list)
    captured_keys: list[str] = field(default_factory=list)
    url: Optional[str] = None
    _server: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _sampler: random.Random = field(default_factory=lambda: random.Random(0))

    # creation -------------------------------------------------------------------------------------------------------
    @classmethod
    def from_package(
        cls,
        rh: Rehearsal,
        model_package_arn: str,
        role_arn: str,
        *,
        endpoint_name: str = "rehearsal-endpoint",
        variant: str = "AllTraffic",
        data_capture: Optional[dict[str, Any]] = None,
        describer_role_arn: Optional[str] = None,
        network_isolation: bool = False,
        container: Optional[dict[str, Any]] = None,
    ) -> "EndpointStandIn":
        """Create the model from the package and start the container (see the module docstring).

        ``role_arn``: the model's execution role (downloads, capture). ``describer_role_arn``: who calls
        CreateModel (None: the deployer, i.e. the stand-in's administrator, as CloudFormation's execution role).
        ``network_isolation``: the model's ``EnableNetworkIsolation`` (see the module docstring). ``container``: the
        model's container as CreateModel gives it (``Image``, ``ModelDataUrl``, ``Environment``: a batch transform's
        model); default the package's first inference container.
        """
        cloud = rh.cloud
        sm = cloud.client("sagemaker", describer_role_arn) if describer_role_arn else cloud.admin("sagemaker")
        try:
            package = sm.describe_model_package(ModelPackageName=model_package_arn)
        except Exception as exc:
            raise RehearsalError(f"endpoint {endpoint_name}: DescribeModelPackage {model_package_arn} failed: {exc}")
        containers = package.get("InferenceSpecification", {}).get("Containers") or []
        if not containers:
            raise RehearsalError(f"endpoint {endpoint_name}: package {model_package_arn} has no inference container")
        container = dict(container) if container is not None else containers[0]
        environment = dict(container.get("Environment") or {})
        if not environment.get("SAGEMAKER_PROGRAM"):
            raise RehearsalError(f"endpoint {endpoint_name}: {ALGORITHM_MODE} ({model_package_arn}, image "
                                 f"{container.get('Image')}, environment {environment})")
        root = rh.scratch(f"endpoint-{endpoint_name}")
        s3 = cloud.client("s3", role_arn)
        model_dir = root / "model"
        model_dir.mkdir()
        _download_extract(s3, container["ModelDataUrl"], model_dir, f"endpoint {endpoint_name}: ModelDataUrl",
                          role_arn)
        code_dir = root / "code"
        submit = environment.get("SAGEMAKER_SUBMIT_DIRECTORY")
        if not submit:
            raise RehearsalError(f"endpoint {endpoint_name}: SAGEMAKER_PROGRAM={environment['SAGEMAKER_PROGRAM']} "
                                 "but no SAGEMAKER_SUBMIT_DIRECTORY: the container has no code to import it from")
        if submit.startswith("s3://") and network_isolation:
            raise RehearsalError(f"endpoint {endpoint_name}: {ISOLATED_SUBMIT_DIRECTORY} ({model_package_arn}: "
                                 f"SAGEMAKER_SUBMIT_DIRECTORY={submit})")
        if submit.startswith("s3://"):
            code_dir.mkdir()
            _download_extract(s3, submit, code_dir, f"endpoint {endpoint_name}: SAGEMAKER_SUBMIT_DIRECTORY", role_arn)
        else:
            local = _container_path(root, submit)
            if local is None or not local.is_dir():
                raise RehearsalError(
                    f"endpoint {endpoint_name}: SAGEMAKER_SUBMIT_DIRECTORY={submit} does not exist in the container "
                    f"(model.tar.gz of {model_package_arn} holds {sorted(p.name for p in model_dir.iterdir())})")
            shutil.copytree(local, code_dir)
        program = environment["SAGEMAKER_PROGRAM"]
        if not (code_dir / program).is_file():
            raise RehearsalError(f"endpoint {endpoint_name}: SAGEMAKER_PROGRAM={program} is not in "
                                 f"SAGEMAKER_SUBMIT_DIRECTORY={submit} (it holds "
                                 f"{sorted(p.name for p in code_dir.iterdir())})")
        # An isolated container has no credentials and no route to any endpoint (SageMaker stages its model).
        reach = {} if network_isolation else cloud.environ(role_arn)
        env = clean_env({**environment, **reach, "SM_MODEL_DIR": "/opt/ml/model", "SAGEMAKER_REGION": REGION})
        spec = {"code_dir": str(code_dir.resolve()), "module": program[:-3] if program.endswith(".py") else program,
                "model_dir": "/opt/ml/model"}
        with opt_ml(root):
            process = subprocess.Popen([rh.python, "-I", "-c", WORKER, json.dumps(spec)], cwd="/opt/ml/code",
                                       env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=(root / "container.log").open("w"), text=True)
            ready = _read_line(process, START_TIMEOUT, root)
        if not ready.get("ready"):
            process.wait(timeout=10)
            raise RehearsalError(f"endpoint {endpoint_name}: the container did not start: {ready.get('error')}\n"
                                 f"{ready.get('trace', '')[-3000:]}")
        stand_in = cls(rh=rh, name=endpoint_name, variant=variant, package_arn=model_package_arn, role_arn=role_arn,
                       container=container, package=package, root=root, process=process, data_capture=data_capture,
                       user_functions=ready["user_functions"])
        rh.facts.setdefault("endpoint", {})[endpoint_name] = {
            "package": model_package_arn, "image": container.get("Image"), "environment": environment,
            "user_functions": ready["user_functions"], "context_parameter": ready["context_parameter"],
            "network_isolation": network_isolation,
        }
        rh.log(f"endpoint {endpoint_name}: serving {model_package_arn} ({program}: {', '.join(ready['user_functions'])})")
        return stand_in

    # invocation -------------------------------------------------------------------------------------------------------
    def invoke(self, body: bytes | str, content_type: str = "text/csv", accept: Optional[str] = None,
               inference_id: Optional[str] = None) -> Response:
        """One invocation through the container, captured as the endpoint configuration says (``inference_id``:
        InvokeEndpoint's ``InferenceId``, recorded as ``eventMetadata.inferenceId``)."""
        raw = body.encode("utf-8") if isinstance(body, str) else body
        with self._lock:
            if self.process.poll() is not None:
                raise RehearsalError(f"endpoint {self.name}: the container exited ({self.process.returncode}); "
                                     f"see {self.root / 'container.log'}")
            self.process.stdin.write(json.dumps({"body": base64.b64encode(raw).decode(), "content_type": content_type,
                                                 "accept": accept}) + "\n")
            self.process.stdin.flush()
            answer = _read_line(self.process, REQUEST_TIMEOUT, self.root)
        response = Response(answer["status"], base64.b64decode(answer["body"]), answer["content_type"],
                            answer.get("error"))
        if response.status == 200:
            self._capture(raw, content_type, response, inference_id)
        return response

    def _capture(self, request: bytes, content_type: str, response: Response,
                 inference_id: Optional[str] = None) -> None:
        config = self.data_capture
        if not config or config.get("EnableCapture") is False:
            return
        if self._sampler.random() * 100 >= float(config.get("InitialSamplingPercentage", 0)):
            return
        modes = {o.get("CaptureMode") for o in config.get("CaptureOptions", [])}
        headers = config.get("CaptureContentTypeHeader") or {}
        data: dict[str, Any] = {}
        if "Input" in modes:
            data["endpointInput"] = _captured(request, content_type, "INPUT", headers)
        if "Output" in modes:
            data["endpointOutput"] = _captured(response.body, response.content_type, "OUTPUT", headers)
        now = dt.datetime.now(dt.timezone.utc)
        metadata = {"eventId": str(uuid.uuid4())}
        if inference_id is not None:
            metadata["inferenceId"] = inference_id
        metadata["inferenceTime"] = now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"
        record = {"captureData": data, "eventMetadata": metadata, "eventVersion": "0"}
        bucket, prefix = split_s3_uri(config["DestinationS3Uri"])
        key = (f"{prefix.rstrip('/')}/{self.name}/{self.variant}/{now:%Y/%m/%d/%H}/"
               f"{now:%M-%S}-{now.microsecond // 1000:03d}-{uuid.uuid4()}.jsonl")
        key_arn = config.get("KmsKeyId")
        if key_arn:
            authorize_role(self.rh, self.role_arn, "kms:GenerateDataKey", key_arn,
                           f"endpoint {self.name}: data capture to s3://{bucket}/{key}")
        try:
            self.rh.cloud.client("s3", self.role_arn).put_object(Bucket=bucket, Key=key,
                                                                 Body=(json.dumps(record) + "\n").encode())
        except Exception as exc:
            raise RehearsalError(f"endpoint {self.name}: data capture to s3://{bucket}/{key} with the execution role "
                                 f"{self.role_arn} failed: {exc}") from None
        self.captured_keys.append(f"s3://{bucket}/{key}")

    # data capture vs the package's baseline ----------------------------------------------------------------------------
    def captured_records(self, reader_role_arn: Optional[str] = None) -> list[dict]:
        """Every record under the capture prefix of this endpoint and variant (read as Model Monitor's job reads it:
        with ``reader_role_arn``; None: the administrator)."""
        if not self.data_capture:
            return []
        cloud = self.rh.cloud
        s3 = cloud.client("s3", reader_role_arn) if reader_role_arn else cloud.admin("s3")
        bucket, prefix = split_s3_uri(self.data_capture["DestinationS3Uri"])
        prefix = f"{prefix.rstrip('/')}/{self.name}/{self.variant}/"
        records = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                text = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read().decode()
                records += [json.loads(line) for line in text.splitlines() if line.strip()]
        return records

    def baseline_constraints(self, reader_role_arn: Optional[str] = None) -> dict:
        quality = (self.package.get("ModelMetrics") or {}).get("ModelDataQuality") or {}
        uri = (quality.get("Constraints") or {}).get("S3Uri")
        if not uri:
            raise RehearsalError(f"endpoint {self.name}: package {self.package_arn} has no "
                                 "ModelMetrics.ModelDataQuality.Constraints: Model Monitor has no baseline")
        cloud = self.rh.cloud
        s3 = cloud.client("s3", reader_role_arn) if reader_role_arn else cloud.admin("s3")
        bucket, key = split_s3_uri(uri)
        try:
            return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        except Exception as exc:
            raise RehearsalError(f"endpoint {self.name}: cannot read the baseline constraints {uri}: {exc}") from None

    def check_capture(self, reader_role_arn: Optional[str] = None) -> dict[str, Any]:
        """Check the captured CSV request rows against the package's baseline constraints (module docstring)."""
        records = self.captured_records(reader_role_arn)
        if self.data_capture and not records:
            raise RehearsalError(f"endpoint {self.name}: data capture is on but nothing was captured under "
                                 f"{self.data_capture['DestinationS3Uri']}/{self.name}/{self.variant}/")
        constraints = self.baseline_constraints(reader_role_arn)
        features = constraints.get("features") or []
        names = [f.get("name") for f in features]
        problems: list[str] = []
        rows = 0
        expected_names = [f"_c{i}" for i in range(len(features))]
        if names != expected_names:
            problems.append(f"the baseline's columns are named {names} (a CSV header or named columns), while "
                            f"captured requests have no header (Model Monitor names their columns "
                            f"_c0.._c{len(features) - 1})")
        for record in records:
            data = record.get("captureData", {}).get("endpointInput")
            if not data or data.get("encoding") != "CSV":
                continue
            for line in data["data"].splitlines():
                if not line.strip():
                    continue
                rows += 1
                values = line.split(",")
                if len(values) != len(features):
                    problems.append(f"a captured request row has {len(values)} columns, the baseline {len(features)} "
                                    f"({names})")
                    break
                for value, feature in zip(values, features):
                    kind = feature.get("inferred_type")
                    numeric = _is_number(value)
                    if kind in ("Integral", "Fractional") and value.strip() and not numeric:
                        problems.append(f"column {feature['name']} is {kind} in the baseline, a captured row has "
                                        f"{value!r}")
                    elif kind == "String" and numeric:
                        problems.append(f"column {feature['name']} is String in the baseline, captured rows carry "
                                        f"numbers ({value!r})")
                if problems:
                    break
            if problems:
                break
        facts = {"records": len(records), "csv_rows": rows, "baseline_columns": len(features)}
        self.rh.facts.setdefault("endpoint", {}).setdefault(self.name, {})["capture"] = facts
        if problems:
            raise RehearsalError(f"endpoint {self.name}: {BASELINE_MISMATCH}: " + "; ".join(dict.fromkeys(problems)))
        return facts

    # HTTP -----------------------------------------------------------------------------------------------------------
    @property
    def arn(self) -> str:
        return f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/{self.name.lower()}"

    def serve(self) -> str:
        """Serve InvokeEndpoint over HTTP (module docstring); returns the base URL."""
        if self.url:
            return self.url
        self._server, self.url = start_http(self._handle_http)
        return self.url

    def _handle_http(self, method: str, url: str, path: str, headers: dict[str, str], body: bytes):
        try:
            match = re.match(r"^/endpoints/([^/?]+)/invocations$", urlsplit(path).path)
            if method != "POST" or not match:
                raise CallerError(404, "UnknownOperationException", f"{method} {path} is not InvokeEndpoint")
            caller = authenticate(method, url, headers, body, "sagemaker")
            name = unquote(match.group(1))
            authorize(caller, "sagemaker:InvokeEndpoint", f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/{name.lower()}")
            if name != self.name:
                raise CallerError(400, "ValidationError", f"Endpoint {name} of account {ACCOUNT} not found.")
            lower = {k.lower(): v for k, v in headers.items()}
            response = self.invoke(body, lower.get("content-type", "application/octet-stream"), lower.get("accept"),
                                   lower.get("x-amzn-sagemaker-inference-id"))
        except CallerError as error:
            return aws_error(error)
        if response.status != 200:
            message = (f"Received server error ({response.status}) from primary with message "
                       f"\"{response.text()}\". See CloudWatch logs of /aws/sagemaker/Endpoints/{self.name}")
            return 424, {"Content-Type": "application/x-amz-json-1.1", "x-amzn-ErrorType": "ModelError"}, json.dumps(
                {"__type": "ModelError", "message": message, "OriginalStatusCode": response.status,
                 "OriginalMessage": response.text()}).encode()
        return 200, {"Content-Type": response.content_type, "x-Amzn-Invoked-Production-Variant": self.variant}, \
            response.body

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def __enter__(self) -> "EndpointStandIn":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# --- helpers -----------------------------------------------------------------------------------------------------------
def authorize_role(rh: Rehearsal, role_arn: str, action: str, resource: str, what: str) -> None:
    """The IAM decision for a call a service makes with a role it assumed (without making the call)."""
    iam = rh.cloud.admin("iam")
    name = role_arn.rsplit("/", 1)[-1]
    policies = [iam.get_role_policy(RoleName=name, PolicyName=p)["PolicyDocument"]
                for p in iam.list_role_policies(RoleName=name)["PolicyNames"]]
    for attached in iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]:
        version = iam.get_policy(PolicyArn=attached["PolicyArn"])["Policy"]["DefaultVersionId"]
        policies.append(iam.get_policy_version(PolicyArn=attached["PolicyArn"], VersionId=version)
                        ["PolicyVersion"]["Document"])
    if not evaluate(policies, action, [[resource]]):
        with _LOCK:
            DENIALS.append(Denial(role_arn, action, (resource,)))
        raise RehearsalError(f"{what}: the role {role_arn} may not {action} on {resource} (AccessDenied)")


def _captured(data: bytes, content_type: str, mode: str, headers: dict) -> dict[str, str]:
    media = (content_type or "").split(";")[0].strip().lower()
    csv_types = [t.lower() for t in headers.get("CsvContentTypes", [])]
    json_types = [t.lower() for t in headers.get("JsonContentTypes", [])]
    if media in csv_types:
        encoding, payload = "CSV", data.decode("utf-8", "replace")
    elif media in json_types:
        encoding, payload = "JSON", data.decode("utf-8", "replace")
    else:
        encoding, payload = "BASE64", base64.b64encode(data).decode()
    return {"observedContentType": content_type, "mode": mode, "data": payload, "encoding": encoding}


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _container_path(root: Path, path: str) -> Optional[Path]:
    try:
        return root / Path(path).relative_to("/opt/ml")
    except ValueError:
        return None


def _download_extract(s3: Any, uri: str, target: Path, what: str, role_arn: str) -> None:
    bucket, key = split_s3_uri(uri)
    try:
        blob = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except Exception as exc:
        raise RehearsalError(f"{what} {uri} cannot be read with the execution role {role_arn}: {exc}") from None
    try:
        with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
            tar.extractall(target, filter="data")
    except tarfile.TarError as exc:
        raise RehearsalError(f"{what} {uri} is not a tar.gz: {exc}") from None


def _read_line(process: subprocess.Popen, timeout: float, root: Path) -> dict:
    result: list[str] = []
    reader = threading.Thread(target=lambda: result.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not result or not result[0]:
        if reader.is_alive():
            process.kill()
        log = (root / "container.log").read_text()[-3000:] if (root / "container.log").exists() else ""
        raise RehearsalError(f"the container did not answer within {timeout:.0f} s (exit {process.poll()}):\n{log}")
    return json.loads(result[0])
