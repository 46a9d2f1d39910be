"""Run a Lambda function from its synthesized assets as the Python runtime of Lambda runs it, on a clean interpreter.

What Lambda does (https://docs.aws.amazon.com/lambda/latest/dg/python-package.html, "Dependency search path", and
packaging-layers.html, "Layer paths for each Lambda runtime"): the function's zip is extracted to ``/var/task`` (the
working directory, ``LAMBDA_TASK_ROOT``), each layer's zip to ``/opt``, and ``sys.path`` is::

    /var/task, /opt/python/lib/python3.12/site-packages, /opt/python,
    /var/lang/lib/python3.12/site-packages, /var/runtime (the runtime's boto3/botocore), then the standard library

The handler module is imported once (the init phase), then the handler is called with the event and a context
object, and the JSON-serializable result is returned; an exception becomes Lambda's error payload
(``errorMessage``, ``errorType``, ``requestId``, ``stackTrace``).

Here the asset directories stand in for the extracted zips (CDK stages each asset as the directory it zips), and the
interpreter runs isolated: ``python -I -S`` (no site-packages, no user site, no ``PYTHON*`` variables), with an
environment made only of the template's ``Environment``, Lambda's reserved variables and what the caller adds
(credentials, a local endpoint). Nothing of the project or of the host's virtualenv is importable unless a caller
puts it in ``runtime_dirs`` (the stand-in for ``/var/runtime``; see :func:`runtime_sdk_dir`).

Merged layers: Lambda extracts every layer into the same ``/opt``, a later layer's file replacing an earlier one's;
here each layer keeps its directory and a later layer's paths come first (same result at module granularity).

Standard library only: this module never imports CDK or boto3 (the rehearsal runs it next to them).
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import tempfile
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

PYTHON_VERSION = "3.12"
RUNTIME_ID = f"python{PYTHON_VERSION}"
DEFAULT_TIMEOUT_SECONDS = 120.0
# The packages the Lambda Python runtime ships in /var/runtime (the AWS SDK and its dependencies).
RUNTIME_SDK_MODULES = ("boto3", "botocore", "s3transfer", "jmespath", "urllib3", "dateutil", "six")

_BOOTSTRAP = r'''
import json, sys, time, traceback, importlib

spec = json.loads(sys.argv[1])
# Lambda's order: task root, each layer's site dir then its python/ dir, the runtime's SDK, then the standard library
# (already on sys.path: python -S leaves only the standard library there).
sys.path[:0] = spec["path"]


class LambdaContext:
    def __init__(self, c):
        self.function_name = c["function_name"]
        self.function_version = c["function_version"]
        self.invoked_function_arn = c["invoked_function_arn"]
        self.memory_limit_in_mb = c["memory_limit_in_mb"]
        self.aws_request_id = c["aws_request_id"]
        self.log_group_name = c["log_group_name"]
        self.log_stream_name = c["log_stream_name"]
        self.identity = None
        self.client_context = None
        self.tenant_id = None
        self._deadline_ms = int(time.time() * 1000) + c["timeout_ms"]

    def get_remaining_time_in_millis(self):
        return max(0, self._deadline_ms - int(time.time() * 1000))


def error(kind, exc, request_id):
    return {"errorMessage": str(exc), "errorType": kind, "requestId": request_id,
            "stackTrace": traceback.format_tb(exc.__traceback__)}


module_name, _, function_name = spec["handler"].rpartition(".")
request_id = spec["context"]["aws_request_id"]
try:  # the init phase
    module = importlib.import_module(module_name.replace("/", "."))
    handler = getattr(module, function_name)
except Exception as exc:
    outcome = {"ok": False, "phase": "init",
               "result": error("Runtime.ImportModuleError" if isinstance(exc, ImportError)
                               else "Runtime.HandlerNotFound" if isinstance(exc, AttributeError)
                               else type(exc).__name__, exc, request_id)}
else:
    try:  # the invoke phase
        result = handler(spec["event"], LambdaContext(spec["context"]))
        outcome = {"ok": True, "phase": "invoke", "result": json.loads(json.dumps(result))}
    except Exception as exc:
        outcome = {"ok": False, "phase": "invoke", "result": error(type(exc).__name__, exc, request_id)}
with open(spec["result_file"], "w") as handle:
    json.dump(outcome, handle)
'''


class InvocationError(RuntimeError):
    """The interpreter itself failed (crash, timeout): not a function error, which :func:`invoke` returns."""


@dataclass
class Invocation:
    """One run: ``result`` is what Lambda would return to the caller (the handler's value, or the error payload
    when ``ok`` is false, ``phase`` telling whether the import or the call failed); ``stdout``/``stderr`` are the
    function's logs (what CloudWatch Logs would get: Powertools JSON lines, EMF metrics)."""

    ok: bool
    phase: str
    result: Any
    stdout: str
    stderr: str
    sys_path: list[str] = field(default_factory=list)

    def log_records(self) -> list[dict]:
        """The JSON lines of stdout (structured logs and EMF metric documents)."""
        records = []
        for line in self.stdout.splitlines():
            line = line.strip()
            if line.startswith("{"):
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
        return records


def lambda_sys_path(function_dir: Path, layer_dirs: Sequence[Path], runtime_dirs: Sequence[Path] = ()) -> list[str]:
    """The directories the runtime puts before the standard library, in Lambda's order (see the module docstring)."""
    path = [str(Path(function_dir).resolve())]
    for layer in reversed([Path(d).resolve() for d in layer_dirs]):  # the last layer wins in the merged /opt
        path += [str(layer / "python" / "lib" / RUNTIME_ID / "site-packages"), str(layer / "python")]
    path += [str(Path(d).resolve()) for d in runtime_dirs]
    return path


def lambda_environment(
    environment: Mapping[str, str],
    *,
    function_dir: Path,
    function_name: str,
    memory_mb: int,
    region: str,
    handler: str,
    extra: Optional[Mapping[str, str]] = None,
) -> dict[str, str]:
    """The process environment: the template's variables over Lambda's defined runtime variables, then ``extra``
    (credentials, endpoint overrides; in Lambda the credentials come from the execution role)."""
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "_HANDLER": handler,
        "AWS_EXECUTION_ENV": f"AWS_Lambda_{RUNTIME_ID}",
        "AWS_LAMBDA_FUNCTION_NAME": function_name,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb),
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{function_name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": "2024/01/01/[$LATEST]rehearsal",
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "LAMBDA_TASK_ROOT": str(Path(function_dir).resolve()),
        # An unsampled trace header, as Lambda sets for a request X-Ray does not sample: the X-Ray SDK (Powertools
        # Tracer) finds its facade segment and sends nothing.
        "_X_AMZN_TRACE_ID": "Root=1-00000000-000000000000000000000000;Parent=0000000000000000;Sampled=0",
    }
    for name, value in environment.items():
        if not isinstance(value, str):
            raise ValueError(f"environment variable {name} is not a plain string (resolve it first): {value!r}")
        env[name] = value
    env.update(extra or {})
    return env


_EXTRACTED: dict[tuple[str, int, int], Path] = {}


def layer_directory(layer: Path) -> Path:
    """The directory Lambda makes of a layer: ``layer`` itself, or a ``.zip`` layer extracted as Lambda extracts it
    into /opt (once per process and archive, into a temporary directory removed at exit)."""
    layer = Path(layer)
    if not (layer.suffix == ".zip" and layer.is_file()):
        return layer
    stat = layer.stat()
    key = (str(layer.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _EXTRACTED:
        target = Path(tempfile.mkdtemp(prefix="lambda-layer-"))
        atexit.register(shutil.rmtree, target, True)
        with zipfile.ZipFile(layer) as archive:
            archive.extractall(target)
        _EXTRACTED[key] = target
    return _EXTRACTED[key]


def run(
    function_dir: Path,
    layer_dirs: Sequence[Path],
    handler: str,
    environment: Mapping[str, str],
    event: Any,
    python: str,
    *,
    runtime_dirs: Sequence[Path] = (),
    extra_env: Optional[Mapping[str, str]] = None,
    function_name: str = "rehearsal-function",
    memory_mb: int = 1024,
    region: str = "us-east-1",
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
) -> Invocation:
    """One cold invocation (import, then one call) in a fresh isolated interpreter; see :func:`invoke`."""
    function_dir = Path(function_dir)
    layer_dirs = [layer_directory(layer) for layer in layer_dirs]  # a .zip layer runs as Lambda extracts it
    if not (function_dir.is_dir()):
        raise FileNotFoundError(f"function code directory {function_dir} does not exist")
    for layer in layer_dirs:
        if not Path(layer).is_dir():
            raise FileNotFoundError(f"layer directory {layer} does not exist")
    version = subprocess.run([python, "-I", "-S", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    if version != PYTHON_VERSION:
        raise ValueError(f"{python} is Python {version}; the function's runtime is {RUNTIME_ID}")
    path = lambda_sys_path(function_dir, layer_dirs, runtime_dirs)
    env = lambda_environment(environment, function_dir=function_dir, function_name=function_name,
                             memory_mb=memory_mb, region=region, handler=handler, extra=extra_env)
    with tempfile.TemporaryDirectory(prefix="lambda-rehearsal-") as work:
        result_file = Path(work) / "result.json"
        env.setdefault("HOME", work)
        env.setdefault("TMPDIR", work)  # Lambda's writable /tmp
        spec = {
            "path": path,
            "handler": handler,
            "event": event,
            "result_file": str(result_file),
            "context": {
                "function_name": function_name,
                "function_version": "$LATEST",
                "invoked_function_arn": f"arn:aws:lambda:{region}:123456789012:function:{function_name}",
                "memory_limit_in_mb": memory_mb,
                "aws_request_id": str(uuid.uuid4()),
                "log_group_name": env["AWS_LAMBDA_LOG_GROUP_NAME"],
                "log_stream_name": env["AWS_LAMBDA_LOG_STREAM_NAME"],
                "timeout_ms": int(timeout_seconds * 1000),
            },
        }
        try:
            done = subprocess.run([python, "-I", "-S", "-B", "-c", _BOOTSTRAP, json.dumps(spec)], cwd=function_dir,
                                  env=env, capture_output=True, text=True, timeout=timeout_seconds + 30)
        except subprocess.TimeoutExpired as exc:
            raise InvocationError(f"the invocation did not finish within {timeout_seconds} s") from exc
        if not result_file.is_file():
            raise InvocationError(f"the interpreter exited with {done.returncode} without a result:\n"
                                  f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
        outcome = json.loads(result_file.read_text())
    return Invocation(ok=outcome["ok"], phase=outcome["phase"], result=outcome["result"], stdout=done.stdout,
                      stderr=done.stderr, sys_path=path)


def invoke(
    function_dir: Path,
    layer_dirs: list[Path],
    handler: str,
    environment: dict,
    event: dict,
    python: str,
    **options: Any,
) -> dict:
    """Run one invocation of ``handler`` (e.g. ``app.handler``) from ``function_dir`` with ``layer_dirs`` on
    ``python`` (a Python 3.12) and return what Lambda returns: the handler's result, or Lambda's error payload
    (``errorType``/``errorMessage``...) when the import or the handler raised. ``options``: see :func:`run`."""
    return run(function_dir, layer_dirs, handler, environment, event, python, **options).result


def runtime_sdk_dir(target: Path, modules: Iterable[str] = RUNTIME_SDK_MODULES) -> Path:
    """A stand-in for ``/var/runtime``: links to this interpreter's copies of the SDK packages Lambda ships (pure
    Python, so they run on the 3.12 interpreter too). Call it from an interpreter that has boto3."""
    import importlib

    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    for name in modules:
        module = importlib.import_module(name)
        source = Path(module.__file__)
        source = source.parent if source.name == "__init__.py" else source
        link = target / source.name
        if not link.exists():
            os.symlink(source, link)
    return target


def find_python(version: str = PYTHON_VERSION) -> Optional[str]:
    """An interpreter of ``version``: ``$LAMBDA_PYTHON``, ``python3.12`` on PATH, or a pyenv install."""
    import shutil

    candidates = [os.environ.get("LAMBDA_PYTHON"), shutil.which(f"python{version}")]
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates += [str(p) for p in sorted((pyenv_root / "versions").glob(f"{version}*/bin/python{version}"))]
    for candidate in candidates:
        if not candidate or not Path(candidate).exists():
            continue
        probe = subprocess.run([candidate, "-I", "-S", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                               capture_output=True, text=True)
        if probe.returncode == 0 and probe.stdout.strip() == version:
            return candidate
    return None


# ----------------------------------------------------------------------------------------------------------------
# From the cloud assembly: the function's code, layers, handler and environment as the template gives them
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class SynthesizedFunction:
    logical_id: str
    function_dir: Path
    layer_dirs: list[Path]
    handler: str
    runtime: str
    environment: dict[str, Any]  # values may be intrinsics (e.g. {"Ref": "ModelDataUrl"}): see resolve_environment
    memory_mb: int
    timeout_seconds: int


def _asset_dirs(outdir: Path, stack_artifact_id: str) -> dict[str, Path]:
    """S3 object key (``<hash>.zip``) -> the directory CDK zips into it, or the .zip file it uploads as is."""
    manifest = json.loads((Path(outdir) / f"{stack_artifact_id}.assets.json").read_text())
    out: dict[str, Path] = {}
    for asset in manifest.get("files", {}).values():
        source = asset["source"]
        archive = source.get("packaging") == "file" and source.get("path", "").endswith(".zip")
        if source.get("packaging") != "zip" and not archive:  # a directory, or a .zip uploaded as is
            continue
        for destination in asset["destinations"].values():
            key = destination["objectKey"]
            path = Path(source["path"])
            out[key] = path if path.is_absolute() else Path(outdir) / path
    return out


def _s3_key(code: Mapping[str, Any]) -> str:
    key = code["S3Key"]
    if not isinstance(key, str):
        raise ValueError(f"S3Key is not a literal asset key: {key!r}")
    return key


def synthesized_functions(outdir: Path, stack_artifact_id: str) -> dict[str, SynthesizedFunction]:
    """Every ``AWS::Lambda::Function`` of a stack whose code is a directory asset, by logical ID."""
    outdir = Path(outdir)
    template = json.loads((outdir / f"{stack_artifact_id}.template.json").read_text())
    resources = template["Resources"]
    assets = _asset_dirs(outdir, stack_artifact_id)
    out: dict[str, SynthesizedFunction] = {}
    for logical_id, resource in resources.items():
        if resource["Type"] != "AWS::Lambda::Function":
            continue
        props = resource["Properties"]
        code = props.get("Code", {})
        if "S3Key" not in code or _s3_key(code) not in assets:
            continue  # inline or image code, or an asset of another stack
        layer_dirs = []
        for layer in props.get("Layers", []):
            if not (isinstance(layer, dict) and set(layer) == {"Ref"} and layer["Ref"] in resources):
                raise ValueError(f"{logical_id}: layer {layer!r} is not a layer of this stack")
            content = resources[layer["Ref"]]["Properties"]["Content"]
            layer_dirs.append(assets[_s3_key(content)])
        out[logical_id] = SynthesizedFunction(
            logical_id=logical_id,
            function_dir=assets[_s3_key(code)],
            layer_dirs=layer_dirs,
            handler=props["Handler"],
            runtime=props["Runtime"],
            environment=dict(props.get("Environment", {}).get("Variables", {})),
            memory_mb=int(props.get("MemorySize", 128)),
            timeout_seconds=int(props.get("Timeout", 3)),
        )
    return out


def resolve_environment(environment: Mapping[str, Any], parameters: Mapping[str, str]) -> dict[str, str]:
    """Evaluate the variables as CloudFormation does at deploy: ``Ref`` to a parameter (or a pseudo parameter such
    as ``AWS::Region``, given in ``parameters``), ``Fn::Join``, ``Fn::Select`` and ``Fn::Split`` of those; anything
    else (a resource attribute, an import) is an error naming the variable."""

    def evaluate(name: str, node: Any) -> Any:
        if isinstance(node, (str, int)):
            return node
        if isinstance(node, list):
            return [evaluate(name, item) for item in node]
        if isinstance(node, dict) and len(node) == 1:
            (function, args), = node.items()
            if function == "Ref" and args in parameters:
                return parameters[args]
            if function == "Fn::Join":
                separator, parts = args
                return separator.join(_text(name, evaluate(name, part)) for part in evaluate(name, parts))
            if function == "Fn::Split":
                separator, source = args
                return _text(name, evaluate(name, source)).split(separator)
            if function == "Fn::Select":
                index, items = args
                items = evaluate(name, items)
                return items[int(evaluate(name, index))]
        raise ValueError(f"environment variable {name}: cannot resolve {node!r} (give the parameter's value)")

    def _text(name: str, value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError(f"environment variable {name}: expected a string, got {value!r}")
        return value

    return {name: _text(name, evaluate(name, node)) for name, node in environment.items()}
