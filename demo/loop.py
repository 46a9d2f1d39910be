"""The platform loop on one machine: :func:`run_demo`.

Every stage runs the project's real code; only AWS is stood in for, by an embedded moto server on 127.0.0.1:

1. stand-in AWS: moto server, fake credentials, the lake buckets and the model package group, named as the config
   names them (buckets are CloudFormation-generated in AWS, so here they are ``<project>-<env>-<zone>-demo``);
2. raw upload: ``data/abalone.csv`` (or its first ``sample`` rows) to ``s3://<raw>/<dataset>/abalone.csv``;
3. Glue ETL: ``glue_jobs.etl_job.process`` (the job's own policy around ``etl_transform``) on local PySpark, the raw
   object downloaded from the stand-in S3; curated Parquet and quarantine uploaded to the curated zone;
4. model build: ``sagemaker_steps.local_runner.run_local_pipeline`` (same scripts, order and condition as the
   SageMaker pipeline) on the curated objects; artifacts uploaded; a model package registered if the condition
   passes, else the Fail step's message and :class:`DemoFailed`;
5. approval and resolution: the package is approved as a reviewer would, then the deploy pipeline's
   ``cicd_scripts.resolve_approved_package`` resolves it;
6. serving: the inference Lambda's handler (``lambda_src/inference/app.py``, INFERENCE_MODE=model) behind a local
   ``ThreadingHTTPServer`` that speaks Lambda Function URL events (payload 2.0), called over real HTTP;
7. report: ``metrics.json``, a plot and ``summary.md``.

Everything started here (moto server, HTTP server, Spark session and its JVM) is stopped in ``finally`` blocks, and
the process environment is restored afterwards.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import importlib.util
import io
import ipaddress
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, TextIO

REPO = Path(__file__).resolve().parent.parent
RAW_DATASET_FILE = REPO / "data" / "abalone.csv"
LAMBDA_DIR = REPO / "lambda_src" / "inference"

FAKE_ACCESS_KEY = "testing"
FAKE_SECRET_KEY = "testing"
DEFAULT_REGION = "us-east-1"
MAX_REJECT_RATIO = 0.1  # the Glue job's default --max_reject_ratio
PLOT_FILE = "plot.png"
STAGE_NAMES = (
    "Stand-in AWS (moto)",
    "Raw upload",
    "Glue ETL (local PySpark)",
    "Model build (SageMaker pipeline steps)",
    "Approve and resolve",
    "Serve the inference Lambda over HTTP",
    "Report",
)
# Credentials and config sources that could make a boto3 client in this process reach a real account.
_AWS_ENV_TO_CLEAR = (
    "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_CREDENTIAL_EXPIRATION",
)


class UnsafeEnvironmentError(RuntimeError):
    """The demo would talk to something other than a loopback stand-in, or with real credentials: refused."""


class DemoFailed(RuntimeError):
    """The loop stopped on purpose (the model failed the registration condition, or the ETL gate); has ``result``."""

    def __init__(self, message: str, result: "DemoResult"):
        super().__init__(message)
        self.result = result


@dataclass
class RequestResult:
    name: str
    status: int
    latency_ms: float
    expected: str  # "200" or "4xx"
    ok: bool  # the status is the expected one
    count: Optional[int] = None
    predictions: Optional[list] = None
    error: Optional[str] = None
    message: Optional[str] = None


@dataclass
class DemoResult:
    env: str
    model: str
    dataset: str
    sample: Optional[int]
    region: str
    buckets: dict[str, str] = field(default_factory=dict)
    model_package_group: str = ""
    endpoint_url: str = ""
    raw_uri: str = ""
    rows_in: int = 0
    rows_curated: int = 0
    rows_rejected: int = 0
    curated_objects: int = 0
    quarantine_objects: int = 0
    problem_type: str = ""
    metric: str = ""
    metric_value: Optional[float] = None
    threshold: Optional[float] = None
    higher_is_better: bool = False
    passed: Optional[bool] = None
    fail_message: Optional[str] = None
    evaluation: dict = field(default_factory=dict)
    step_seconds: dict[str, float] = field(default_factory=dict)
    model_data_url: str = ""
    evaluation_uri: str = ""
    packages_registered: int = 0
    package_arn: Optional[str] = None
    package_version: Optional[int] = None
    package_status: Optional[str] = None
    package_metadata: dict = field(default_factory=dict)
    package_group_of_arn: Optional[str] = None
    git_commit: str = "unknown"
    resolve_exit_code: Optional[int] = None
    resolved: dict = field(default_factory=dict)
    serving_url: str = ""
    requests: list[RequestResult] = field(default_factory=list)
    batch_matches_evaluation: Optional[bool] = None
    stage_seconds: dict[str, float] = field(default_factory=dict)
    total_seconds: float = 0.0
    report_dir: Optional[Path] = None
    report_files: dict[str, Path] = field(default_factory=dict)
    exit_code: int = 0

    def request(self, name: str) -> RequestResult:
        for r in self.requests:
            if r.name == name:
                return r
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["report_dir"] = str(self.report_dir) if self.report_dir else None
        data["report_files"] = {k: str(v) for k, v in self.report_files.items()}
        return data


# ---------------------------------------------------------------------------------------------------------------
# Safety: loopback endpoint, fake credentials only
# ---------------------------------------------------------------------------------------------------------------
def check_endpoint(url: str) -> str:
    """Return ``url`` if it is http(s) on a loopback address (127.0.0.0/8, ::1, localhost); else refuse."""
    parsed = urllib.parse.urlsplit(url or "")
    host = parsed.hostname or ""
    if parsed.scheme not in ("http", "https") or not host:
        raise UnsafeEnvironmentError(f"endpoint URL {url!r} is not an http(s) URL; the demo only talks to a local "
                                     "stand-in such as http://127.0.0.1:5000")
    loopback = host == "localhost"
    if not loopback:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
    if not loopback:
        raise UnsafeEnvironmentError(f"endpoint URL {url!r} is not a loopback address; refusing to run: the demo "
                                     "never talks to AWS or any other remote host")
    return url


@contextlib.contextmanager
def patched_environ(values: dict[str, Optional[str]]) -> Iterator[None]:
    """Set (or, for None, remove) environment variables; restore the previous values on exit."""
    saved = {name: os.environ.get(name) for name in values}
    try:
        for name, value in values.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def fake_aws_environ(endpoint_url: str, region: str) -> dict[str, Optional[str]]:
    """The process environment for the demo: fake keys, no profile or credential files, every client on the stand-in.

    ``AWS_ENDPOINT_URL`` makes any boto3 client created in the process (also by code that builds its own) go to the
    stand-in; config and credential files point at an empty file so that no profile is read.
    """
    values: dict[str, Optional[str]] = {name: None for name in _AWS_ENV_TO_CLEAR}
    values.update({
        "AWS_ACCESS_KEY_ID": FAKE_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": FAKE_SECRET_KEY,
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ENDPOINT_URL": endpoint_url,
    })
    return values


def check_client(client: Any) -> Any:
    """Refuse a client that is not on a loopback endpoint or would sign with anything but the fake keys."""
    check_endpoint(client.meta.endpoint_url)
    credentials = client._request_signer._credentials  # noqa: SLF001 (what the client will sign with)
    access_key = credentials.get_frozen_credentials().access_key if credentials else None
    if access_key != FAKE_ACCESS_KEY:
        raise UnsafeEnvironmentError("a boto3 client would use real AWS credentials (a profile or key in the "
                                     "environment); refusing to run")
    return client


def check_default_chain() -> None:
    """With the demo environment in place, boto3's default chain (what the CI/CD scripts use) must give the fakes."""
    import boto3

    credentials = boto3.session.Session().get_credentials()
    if credentials is None or credentials.get_frozen_credentials().access_key != FAKE_ACCESS_KEY:
        raise UnsafeEnvironmentError("boto3's default credential chain does not resolve to the demo's fake keys; "
                                     "refusing to run")


def reset_moto(endpoint_url: str) -> None:
    """Empty the stand-in (moto's ``/moto-api/reset``); only ever called for the embedded loopback server."""
    check_endpoint(endpoint_url)
    request = urllib.request.Request(endpoint_url.rstrip("/") + "/moto-api/reset", data=b"", method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()


def make_client(service: str, endpoint_url: str, region: str) -> Any:
    import boto3
    from botocore.config import Config

    check_endpoint(endpoint_url)
    session = boto3.session.Session(aws_access_key_id=FAKE_ACCESS_KEY, aws_secret_access_key=FAKE_SECRET_KEY,
                                    region_name=region)
    config = Config(retries={"mode": "standard", "max_attempts": 3}, s3={"addressing_style": "path"})
    return check_client(session.client(service, endpoint_url=endpoint_url, config=config))


# ---------------------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------------------
def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and commit else "unknown"


def inference_image(framework: str, region: str) -> str:
    """The SageMaker framework image the package names (the real pipeline resolves it with sagemaker.image_uris)."""
    from sagemaker_steps import pipeline_spec as spec

    version = spec.CONTAINER_FRAMEWORK_VERSIONS[framework]
    if framework == "xgboost":
        return f"683313688378.dkr.ecr.{region}.amazonaws.com/sagemaker-xgboost:{version}"
    return f"683313688378.dkr.ecr.{region}.amazonaws.com/sagemaker-scikit-learn:{version}-cpu-py3"


def upload_tree(s3: Any, local_dir: Path, bucket: str, prefix: str) -> int:
    """Upload the data files under ``local_dir`` to ``s3://bucket/prefix/...`` (Spark's _SUCCESS/.crc skipped)."""
    count = 0
    for path in sorted(Path(local_dir).rglob("*")):
        if not path.is_file() or path.name.startswith((".", "_")):
            continue
        key = f"{prefix.rstrip('/')}/{path.relative_to(local_dir).as_posix()}"
        s3.upload_file(str(path), bucket, key)
        count += 1
    return count


def download_prefix(s3: Any, bucket: str, prefix: str, local_dir: Path) -> int:
    count = 0
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            relative = obj["Key"][len(prefix):].lstrip("/")
            target = Path(local_dir) / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, obj["Key"], str(target))
            count += 1
    return count


def split_s3_uri(uri: str) -> tuple[str, str]:
    parsed = urllib.parse.urlsplit(uri)
    return parsed.netloc, parsed.path.lstrip("/")


def sample_csv(source: Path, target: Path, rows: Optional[int]) -> int:
    """Copy the header and the first ``rows`` data lines (all for None); return the number of data lines."""
    lines = source.read_text(encoding="utf-8").splitlines(keepends=True)
    header, body = lines[0], [line for line in lines[1:] if line.strip()]
    if rows is not None:
        body = body[:rows]
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(header + "".join(body), encoding="utf-8")
    return len(body)


def decode_rows(test_csv: Path, metadata: dict[str, Any], limit: int) -> list[dict[str, Any]]:
    """Request rows (raw feature values) back from the encoded test split: one-hot -> category, numeric as is."""
    import pandas as pd

    frame = pd.read_csv(test_csv).head(limit)
    rows = []
    for _, record in frame.iterrows():
        row: dict[str, Any] = {}
        for feature in metadata["features"]:
            name = feature["name"]
            if feature["type"] == "categorical":
                hot = [c for c in feature["categories"] if float(record[f"{name}_{c}"]) == 1.0]
                row[name] = hot[0] if hot else feature["categories"][0]
            else:
                row[name] = float(record[name])
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------------------------
# Local Spark (stopped completely afterwards, JVM included, unless one was running already)
# ---------------------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def local_spark(app_name: str) -> Iterator[Any]:
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    existing = SparkContext._active_spark_context  # noqa: SLF001
    owns_gateway = SparkContext._gateway is None  # noqa: SLF001
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    session = None
    log_config = tempfile.NamedTemporaryFile("w", prefix="demo-log4j2-", suffix=".properties", delete=False)
    with log_config:  # errors only: no start-up banner or WARN lines between the demo's progress lines
        log_config.write("rootLogger.level = error\nrootLogger.appenderRef.stderr.ref = console\n"
                         "appender.console.type = Console\nappender.console.name = console\n"
                         "appender.console.target = SYSTEM_ERR\nappender.console.layout.type = PatternLayout\n"
                         "appender.console.layout.pattern = spark %p %c{1}: %m%n%ex\n")
    try:
        session = (
            SparkSession.builder.master("local[1]")
            .appName(app_name)
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.shuffle.partitions", "1")
            .config("spark.default.parallelism", "1")
            .config("spark.sql.adaptive.enabled", "false")
            .config("spark.driver.memory", "1g")
            # A short job on a small machine: the client JIT only and the serial GC start and finish ~3x sooner
            # than the server defaults (measured: Spark up 9 s -> 3 s, the 600-row ETL 35 s -> 10 s).
            .config("spark.driver.extraJavaOptions", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC "
                    f"-Dlog4j2.configurationFile=file:{log_config.name}")
            .config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.driver.host", "127.0.0.1")
            .config("spark.sql.session.timeZone", "UTC")
            .getOrCreate()
        )
        session.sparkContext.setLogLevel("ERROR")
        yield session
    finally:
        with contextlib.suppress(OSError):
            os.unlink(log_config.name)
        if session is not None and existing is None:
            session.stop()
            gateway = SparkContext._gateway  # noqa: SLF001
            if owns_gateway and gateway is not None:
                proc = getattr(gateway, "proc", None)
                with contextlib.suppress(Exception):
                    gateway.shutdown()
                if proc is not None:
                    with contextlib.suppress(Exception):
                        proc.stdin.close()  # the JVM's PythonGatewayServer exits when its stdin closes
                    try:
                        proc.wait(timeout=15)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait(timeout=5)
                SparkContext._gateway = None  # noqa: SLF001
                SparkContext._jvm = None  # noqa: SLF001


# ---------------------------------------------------------------------------------------------------------------
# Local Lambda Function URL (payload 2.0) in front of the handler
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class _LambdaContext:
    function_name: str
    aws_request_id: str
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = ""
    log_group_name: str = ""
    log_stream_name: str = "demo"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 10_000


def function_url_event(method: str, target: str, headers: dict[str, str], body: bytes, source_ip: str,
                       host: str, protocol: str, request_id: str) -> dict[str, Any]:
    """An HTTP request as Lambda Function URLs deliver it (payload format 2.0, AuthType NONE)."""
    path, _, query = target.partition("?")
    try:
        text, is_b64 = body.decode("utf-8"), False
    except UnicodeDecodeError:
        text, is_b64 = base64.b64encode(body).decode("ascii"), True
    now = dt.datetime.now(dt.timezone.utc)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path or "/",
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "demo",
            "domainName": host,
            "domainPrefix": host.split(".")[0].split(":")[0],
            "http": {"method": method, "path": path or "/", "protocol": protocol, "sourceIp": source_ip,
                     "userAgent": headers.get("user-agent", "")},
            "requestId": request_id,
            "routeKey": "$default",
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "isBase64Encoded": is_b64,
    }
    if query:
        event["queryStringParameters"] = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
    if body:
        event["body"] = text
    return event


class FunctionUrlServer:
    """``ThreadingHTTPServer`` on 127.0.0.1 turning each request into a Function URL event for ``handler``.

    The handler's own log lines (Powertools JSON logs, EMF metrics) go to ``log_stream`` instead of the console.
    """

    def __init__(self, handler: Callable[[dict, Any], dict], function_name: str, log_stream: TextIO,
                 handler_logger: Any = None):
        self._handler = handler
        self._function_name = function_name
        self._log_stream = log_stream
        self._handler_logger = handler_logger
        self._lock = threading.Lock()
        outer = self

        class _RequestHandler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (quiet access log)
                pass

            def _invoke(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers: dict[str, str] = {}
                for key, value in self.headers.items():
                    key = key.lower()
                    headers[key] = f"{headers[key]},{value}" if key in headers else value
                request_id = str(uuid.uuid4())
                event = function_url_event(self.command, self.path, headers, body, self.client_address[0],
                                           headers.get("host", "127.0.0.1"), self.request_version, request_id)
                response = outer.invoke(event, request_id)
                status = int(response.get("statusCode", 200))
                payload = response.get("body") or ""
                data = base64.b64decode(payload) if response.get("isBase64Encoded") else str(payload).encode()
                self.send_response(status)
                for key, value in (response.get("headers") or {}).items():
                    self.send_header(key, str(value))
                for cookie in response.get("cookies") or []:
                    self.send_header("Set-Cookie", cookie)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _invoke  # noqa: N815

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _RequestHandler)
        self._server.daemon_threads = True
        self._thread: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/"

    def invoke(self, event: dict, request_id: str) -> dict:
        context = _LambdaContext(function_name=self._function_name, aws_request_id=request_id)
        with self._lock:  # one invocation at a time, like one Lambda execution environment
            handler_stream = getattr(self._handler_logger, "registered_handler", None)
            previous = handler_stream.setStream(self._log_stream) if handler_stream is not None else None
            try:
                with contextlib.redirect_stdout(self._log_stream):
                    return self._handler(event, context)
            finally:
                if handler_stream is not None and previous is not None:
                    handler_stream.setStream(previous)

    def start(self) -> "FunctionUrlServer":
        self._thread = threading.Thread(target=self._server.serve_forever, name="demo-function-url", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket (idempotent)."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._server.server_close()  # closing twice is harmless


def http_call(url: str, body: bytes, content_type: str = "application/json") -> tuple[int, dict, float]:
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": content_type})
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as err:
        status, raw = err.code, err.read()
    latency_ms = (time.perf_counter() - started) * 1000.0
    try:
        payload = json.loads(raw.decode("utf-8") or "null")
    except ValueError:
        payload = {"raw": raw.decode("utf-8", "replace")}
    return status, payload if isinstance(payload, dict) else {"body": payload}, latency_ms


def load_lambda_handler(log_stream: Optional[TextIO] = None) -> tuple[Callable, Any]:
    """Import the function's entry point ``lambda_src/inference/app.py`` as Lambda does (its dir on sys.path).

    The handler loads the model from the environment at import; when the runtime module was imported earlier in this
    process (tests), it is re-initialized from the current environment instead.
    """
    if str(LAMBDA_DIR) not in sys.path:
        sys.path.insert(0, str(LAMBDA_DIR))
    fresh = "inference_runtime.handler" not in sys.modules
    spec = importlib.util.spec_from_file_location("demo_inference_app", LAMBDA_DIR / "app.py")
    assert spec is not None and spec.loader is not None
    app = importlib.util.module_from_spec(spec)
    console = sys.stdout
    # The init log lines go to log_stream; the function's logger keeps writing to stdout afterwards.
    with contextlib.redirect_stdout(log_stream or console):
        spec.loader.exec_module(app)
        runtime = sys.modules["inference_runtime.handler"]
        handler_stream = getattr(getattr(runtime, "logger", None), "registered_handler", None)
        previous = handler_stream.setStream(log_stream or console) if handler_stream is not None else None
        try:
            if not fresh:
                from inference_runtime.config import Settings

                runtime.init(Settings.from_env())
            runtime.get_runtime()  # fails loudly here if the model did not load
        finally:
            if handler_stream is not None:
                handler_stream.setStream(console if fresh or previous is None else previous)
    return app.handler, runtime


# ---------------------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------------------
def write_plot(predictions_csv: Path, problem_type: str, result: DemoResult, target: Path) -> Path:
    import numpy as np
    import pandas as pd
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    frame = pd.read_csv(predictions_csv)
    fig = Figure(figsize=(6, 6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    verdict = "passed" if result.passed else "failed"
    metric_text = f"{result.metric}={result.metric_value:.3f}, threshold {result.threshold:g}: {verdict}"
    if problem_type == "regression":
        actual, predicted = frame["actual"].to_numpy(float), frame["predicted"].to_numpy(float)
        ax.scatter(actual, predicted, s=12, alpha=0.5, label=f"test rows (n={len(frame)})")
        low, high = float(min(actual.min(), predicted.min())), float(max(actual.max(), predicted.max()))
        ax.plot([low, high], [low, high], color="black", linewidth=1, label="y = x")
        ax.set_xlabel("actual")
        ax.set_ylabel("predicted")
        rmse = float(np.sqrt(np.mean((predicted - actual) ** 2)))
        ax.set_title(f"{result.model}: predicted vs actual (test split), rmse={rmse:.3f}\n"
                     f"condition: {result.metric} {'>=' if result.higher_is_better else '<='} "
                     f"{result.threshold:g}: {verdict}")
    else:
        actual, score = frame["actual"].to_numpy(int), frame["predicted"].to_numpy(float)
        order = np.argsort(-score, kind="mergesort")
        positives, negatives = max(int(actual.sum()), 1), max(int((1 - actual).sum()), 1)
        tpr = np.concatenate([[0.0], np.cumsum(actual[order]) / positives])
        fpr = np.concatenate([[0.0], np.cumsum(1 - actual[order]) / negatives])
        auc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))
        ax.plot(fpr, tpr, label=f"ROC (auc={auc:.3f})")
        ax.plot([0, 1], [0, 1], color="black", linewidth=1, linestyle="--", label="chance")
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.set_title(f"{result.model}: ROC curve\n{metric_text}")
    ax.legend(loc="best")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(str(target), format="png")
    return target


def write_report(result: DemoResult, report_dir: Path, predictions_csv: Optional[Path], lambda_log: Optional[Path]
                 ) -> dict[str, Path]:
    report_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    if predictions_csv is not None and predictions_csv.is_file():
        files["plot"] = write_plot(predictions_csv, result.problem_type, result, report_dir / PLOT_FILE)
    if lambda_log is not None and lambda_log.is_file():
        files["lambda_log"] = Path(shutil.copy2(lambda_log, report_dir / "lambda-logs.jsonl"))
    files["metrics"] = report_dir / "metrics.json"
    files["summary"] = report_dir / "summary.md"
    result.report_files = dict(files)
    write_texts(result, files)
    return files


def write_texts(result: DemoResult, files: dict[str, Path]) -> None:
    """metrics.json and summary.md (the plot and the log are written once by ``write_report``)."""
    metrics = {
        "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "env": result.env, "model": result.model, "dataset": result.dataset, "sample": result.sample,
        "rows": {"in": result.rows_in, "curated": result.rows_curated, "rejected": result.rows_rejected},
        "metric": {"name": result.metric, "value": result.metric_value, "threshold": result.threshold,
                   "higher_is_better": result.higher_is_better, "passed": result.passed},
        "fail_message": result.fail_message,
        "evaluation": result.evaluation,
        "model_build_step_seconds": result.step_seconds,
        "package": {"group": result.model_package_group, "arn": result.package_arn,
                    "version": result.package_version, "status": result.package_status,
                    "git_commit": result.git_commit, "model_data_url": result.model_data_url,
                    "evaluation_uri": result.evaluation_uri, "metadata": result.package_metadata},
        "resolved": result.resolved, "resolve_exit_code": result.resolve_exit_code,
        "requests": [asdict(r) for r in result.requests],
        "batch_matches_evaluation": result.batch_matches_evaluation,
        "stage_seconds": result.stage_seconds,
        "total_seconds": round(sum(result.stage_seconds.values()), 2),
        "files": {k: v.name for k, v in files.items()},
    }
    files["metrics"].write_text(json.dumps(metrics, indent=2, default=str) + "\n", encoding="utf-8")
    files["summary"].write_text(summary_markdown(result, files), encoding="utf-8")


def summary_markdown(result: DemoResult, files: dict[str, Path]) -> str:
    comparison = ">=" if result.higher_is_better else "<="
    verdict = "passed" if result.passed else "FAILED"
    lines = [
        f"# Platform loop, run locally ({result.env}, model `{result.model}`)",
        "",
        "Everything ran on this machine against a local moto stand-in for AWS; no AWS account was used.",
        "",
        "## Data",
        f"- Raw: `{result.raw_uri}` ({result.rows_in} rows"
        + (f", sample of the first {result.sample}" if result.sample else "") + ")",
        f"- Glue ETL transform: {result.rows_in} rows in = {result.rows_curated} curated + "
        f"{result.rows_rejected} rejected (quarantine)",
        "",
        "## Model",
    ]
    if result.metric_value is not None:
        lines.append(f"- {result.metric} = {result.metric_value:.4f}; the condition needs {result.metric} "
                     f"{comparison} {result.threshold:g}: **{verdict}**")
    if result.fail_message:
        lines.append(f"- Fail step: {result.fail_message}")
    if "plot" in files:
        kind = "predicted vs actual" if result.problem_type == "regression" else "ROC curve"
        lines += ["", f"![{kind}]({files['plot'].name})", "", f"Plot: [{files['plot'].name}]({files['plot'].name})"]
    lines += ["", "## Registry and deployment"]
    if result.package_arn:
        lines += [
            f"- Package: `{result.package_arn}` (version {result.package_version}, group "
            f"`{result.model_package_group}`), status **{result.package_status}**, commit `{result.git_commit}`",
            f"- Deploy pipeline's resolver (`cicd_scripts/resolve_approved_package.py`): exit "
            f"{result.resolve_exit_code}, resolved `{result.resolved.get('model_package_arn')}`",
        ]
    else:
        lines.append("- Nothing registered.")
    if result.requests:
        lines += ["", "## Inference (Lambda handler behind a local Function URL)", "",
                  "| request | status | expected | rows | latency (ms) | detail |", "|---|---|---|---|---|---|"]
        for r in result.requests:
            detail = r.error or (", ".join(f"{p:.3f}" if isinstance(p, float) else str(p)
                                           for p in (r.predictions or [])[:5]))
            lines.append(f"| {r.name} | {r.status} | {r.expected} | {r.count if r.count is not None else '-'} | "
                         f"{r.latency_ms:.1f} | {detail} |")
        if result.batch_matches_evaluation is not None:
            lines += ["", f"Batch predictions equal the evaluation step's predictions.csv: "
                          f"{result.batch_matches_evaluation}"]
    lines += ["", "## Timings", "", "| stage | seconds |", "|---|---|"]
    for name, seconds in result.stage_seconds.items():
        lines.append(f"| {name} | {seconds:.1f} |")
    lines.append(f"| **total** | **{sum(result.stage_seconds.values()):.1f}** |")
    lines += ["", "## Files", f"- [metrics.json]({files['metrics'].name}): every number above"]
    if "plot" in files:
        lines.append(f"- [{files['plot'].name}]({files['plot'].name})")
    if "lambda_log" in files:
        lines.append(f"- [{files['lambda_log'].name}]({files['lambda_log'].name}): the function's own log lines "
                     "(Powertools JSON logs and EMF metrics)")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------------------------
class _Progress:
    def __init__(self, result: DemoResult, out: TextIO):
        self.result = result
        self.out = out

    def say(self, text: str) -> None:
        print(f"      {text}", file=self.out, flush=True)

    @contextlib.contextmanager
    def stage(self, number: int) -> Iterator[None]:
        name = STAGE_NAMES[number - 1]
        print(f"[{number}/{len(STAGE_NAMES)}] {name}", file=self.out, flush=True)
        started = time.perf_counter()
        try:
            yield
        finally:
            seconds = time.perf_counter() - started
            self.result.stage_seconds[f"{number}. {name}"] = round(seconds, 2)
            print(f"      ({seconds:.1f} s)", file=self.out, flush=True)


def run_demo(
    env: str = "dev",
    *,
    sample: Optional[int] = None,
    report_dir: Path | str = "demo-report",
    threshold: Optional[float] = None,
    model_name: Optional[str] = None,
    endpoint_url: Optional[str] = None,
    work_dir: Optional[Path] = None,
    config_dir: Optional[Path] = None,
    out: Optional[TextIO] = None,
    spark: Any = None,
) -> DemoResult:
    """Run the seven stages; return a :class:`DemoResult`. Raises :class:`DemoFailed` when the model fails the
    registration condition (after writing the report), :class:`UnsafeEnvironmentError` before doing anything when
    ``endpoint_url`` (an already running stand-in; default: an embedded moto server) is not a loopback address.
    ``spark``: a SparkSession to use (tests share one); by default a local one is started and stopped in stage 3.
    """
    from platform_config import load_config

    out = out or sys.stdout
    if endpoint_url is not None:
        check_endpoint(endpoint_url)
    if sample is not None and sample < 1:
        raise ValueError(f"sample must be at least 1, got {sample}")
    config = load_config(env, config_dir)
    models = {m.name: m for m in config.models}
    if model_name is None:
        model = config.models[0]
    elif model_name in models:
        model = models[model_name]
    else:
        raise ValueError(f"model {model_name!r} is not in config/{env}.yaml; choose one of {sorted(models)}")
    region = config.region or DEFAULT_REGION
    prefix = config.prefix()
    dataset = config.data_lake.dataset
    result = DemoResult(env=env, model=model.name, dataset=dataset, sample=sample, region=region,
                        problem_type=model.problem_type, metric=model.metric,
                        threshold=float(model.threshold if threshold is None else threshold),
                        higher_is_better=model.higher_is_better)
    names = config.names
    # The demo's buckets stand in for the lake's (CloudFormation names those); the rest are the platform's names.
    result.buckets = {zone: f"{prefix}-{zone}-demo" for zone in ("raw", "curated", "artifacts")}
    result.model_package_group = names.model_resource(model.name)
    result.report_dir = Path(report_dir)
    progress = _Progress(result, out)
    started_all = time.perf_counter()

    cleanup = contextlib.ExitStack()
    with cleanup:
        work = Path(work_dir) if work_dir else Path(cleanup.enter_context(tempfile.TemporaryDirectory(
            prefix="mlops-demo-")))
        work.mkdir(parents=True, exist_ok=True)
        werkzeug_log = logging.getLogger("werkzeug")
        cleanup.callback(werkzeug_log.setLevel, werkzeug_log.level)
        werkzeug_log.setLevel(logging.ERROR)

        # 1 -------------------------------------------------------------------------------------------------------
        with progress.stage(1):
            if endpoint_url is None:
                from moto.server import ThreadedMotoServer

                server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
                server.start()
                cleanup.callback(server.stop)
                host, port = server.get_host_and_port()
                endpoint_url = f"http://{host}:{port}"
                # moto keeps its state per process: start empty, and leave nothing behind for later users
                reset_moto(endpoint_url)
                cleanup.callback(reset_moto, endpoint_url)
                progress.say(f"moto server (embedded, in-process, empty state) on {endpoint_url}")
            else:
                progress.say(f"using the stand-in at {endpoint_url}")
            result.endpoint_url = check_endpoint(endpoint_url)
            cleanup.enter_context(patched_environ(fake_aws_environ(endpoint_url, region)))
            check_default_chain()
            s3 = make_client("s3", endpoint_url, region)
            sm = make_client("sagemaker", endpoint_url, region)
            progress.say(f"fake credentials only (access key '{FAKE_ACCESS_KEY}'), region {region}, "
                         "no profile, no credential files")
            from botocore.exceptions import ClientError

            for zone, bucket in result.buckets.items():
                kwargs: dict[str, Any] = {}
                if region != "us-east-1":
                    kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
                try:
                    s3.create_bucket(Bucket=bucket, **kwargs)
                except ClientError as exc:
                    if exc.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
                        raise
                progress.say(f"bucket s3://{bucket} ({zone} zone)")
            try:
                sm.create_model_package_group(
                    ModelPackageGroupName=result.model_package_group,
                    ModelPackageGroupDescription=f"Versions of {model.name} ({model.problem_type}, "
                                                 f"{model.framework})")
            except ClientError as exc:
                if "already exists" not in str(exc):
                    raise
            progress.say(f"model package group {result.model_package_group}")

        # 2 -------------------------------------------------------------------------------------------------------
        with progress.stage(2):
            local_raw = work / "upload" / RAW_DATASET_FILE.name
            rows = sample_csv(RAW_DATASET_FILE, local_raw, sample)
            raw_key = f"{dataset}/{RAW_DATASET_FILE.name}"
            s3.upload_file(str(local_raw), result.buckets["raw"], raw_key)
            result.raw_uri = f"s3://{result.buckets['raw']}/{raw_key}"
            progress.say(f"{RAW_DATASET_FILE.relative_to(REPO)} ({rows} rows"
                         + (f", first {sample}" if sample else "") + f", {local_raw.stat().st_size} bytes) -> "
                         f"{result.raw_uri}")

        # 3 -------------------------------------------------------------------------------------------------------
        with progress.stage(3):
            from glue_jobs import etl_job, etl_transform

            raw_local = work / "glue" / "raw" / dataset / RAW_DATASET_FILE.name
            raw_local.parent.mkdir(parents=True)
            s3.download_file(result.buckets["raw"], raw_key, str(raw_local))
            curated_local = work / "glue" / "curated" / dataset
            quarantine_local = work / "glue" / "curated" / "quarantine" / dataset
            job_log: list[str] = []
            options = etl_job.JobOptions(max_reject_ratio=MAX_REJECT_RATIO,
                                         ingest_date=dt.datetime.now(dt.timezone.utc).date())
            spark_started = time.perf_counter()
            with contextlib.ExitStack() as spark_scope:
                if spark is None:
                    spark_scope.enter_context(patched_environ({"SPARK_LOCAL_IP": "127.0.0.1"}))
                    spark = spark_scope.enter_context(local_spark("mlops-demo-etl"))
                    progress.say(f"local Spark {spark.version} (local[1], UI off) up in "
                                 f"{time.perf_counter() - spark_started:.1f} s")
                else:
                    progress.say(f"using the given Spark {spark.version} session")
                raw_df = etl_transform.read_raw_csv(spark, str(raw_local))
                try:
                    summary = etl_job.process(
                        spark, raw_df, job_name=names.etl_job(dataset), dataset=dataset,
                        curated_path=str(curated_local), quarantine_path=str(quarantine_local), options=options,
                        log=job_log.append)
                except etl_job.RejectRatioExceededError as exc:
                    raise DemoFailed(f"Glue ETL: {exc}", result) from None
            result.rows_in = int(summary["rows_in"])
            result.rows_curated = int(summary["rows_curated"])
            result.rows_rejected = int(summary["rows_rejected"])
            result.curated_objects = upload_tree(s3, curated_local, result.buckets["curated"], dataset)
            if quarantine_local.exists():
                result.quarantine_objects = upload_tree(s3, quarantine_local, result.buckets["curated"],
                                                        f"quarantine/{dataset}")
            progress.say(f"rows in {result.rows_in} = curated {result.rows_curated} + rejected "
                         f"{result.rows_rejected} (reject ratio {summary['reject_ratio']:.2%}, gate "
                         f"{MAX_REJECT_RATIO:.0%})")
            progress.say(f"{result.curated_objects} Parquet object(s) -> s3://{result.buckets['curated']}/{dataset}/"
                         f"ingest_date={options.ingest_date.isoformat()}/; {result.quarantine_objects} quarantine "
                         f"object(s) -> s3://{result.buckets['curated']}/quarantine/{dataset}/")
            for line in job_log:
                progress.say(f"job log: {line}")

        # 4 -------------------------------------------------------------------------------------------------------
        predictions_csv: Optional[Path] = None
        pipeline = None
        with progress.stage(4):
            from sagemaker_steps import pipeline_spec as spec
            from sagemaker_steps.local_runner import run_local_pipeline

            pipeline_input = work / "pipeline-input"
            fetched = download_prefix(s3, result.buckets["curated"], f"{dataset}/", pipeline_input)
            progress.say(f"InputDataUrl s3://{result.buckets['curated']}/{dataset}/ ({fetched} object(s))")
            pipeline = run_local_pipeline(
                pipeline_input, work / "pipeline", target_column=model.target_column,
                problem_type=model.problem_type, framework=model.framework, metric=model.metric,
                threshold=result.threshold, hyperparameters=dict(model.hyperparameters),
                positive_threshold=model.positive_threshold, model_name=model.name)
            result.step_seconds = {k: round(v, 2) for k, v in pipeline.durations.items()}
            result.evaluation = pipeline.evaluation
            result.metric_value = float(pipeline.metric_value)
            result.passed = bool(pipeline.passed)
            for step, seconds in pipeline.durations.items():
                progress.say(f"{step}: {seconds:.1f} s")
            metrics = pipeline.evaluation.get(f"{model.problem_type}_metrics", {})
            progress.say("metrics: " + ", ".join(f"{k}={v['value']:.4f}" for k, v in metrics.items()))
            evaluation_dir = pipeline.outputs["evaluation"]
            predictions_csv = evaluation_dir / "predictions.csv"
            run_id = "demo-" + dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
            artifacts = result.buckets["artifacts"]
            model_key = f"{model.name}/{run_id}/model.tar.gz"
            eval_key = f"{model.name}/{run_id}/evaluation/evaluation.json"
            s3.upload_file(str(pipeline.model_artifact), artifacts, model_key)
            s3.upload_file(str(evaluation_dir / "evaluation.json"), artifacts, eval_key)
            if predictions_csv.is_file():
                s3.upload_file(str(predictions_csv), artifacts, f"{model.name}/{run_id}/evaluation/predictions.csv")
            result.model_data_url = f"s3://{artifacts}/{model_key}"
            result.evaluation_uri = f"s3://{artifacts}/{eval_key}"
            progress.say(f"artifacts -> {result.model_data_url}, {result.evaluation_uri}")
            comparison = ">=" if result.higher_is_better else "<="
            progress.say(f"CheckMetric: {model.metric}={result.metric_value:.4f}, needs {comparison} "
                         f"{result.threshold:g} -> {'RegisterModel' if result.passed else 'FailStep'}")
            if result.passed:
                result.git_commit = git_commit()
                registered = sm.create_model_package(
                    ModelPackageGroupName=result.model_package_group,
                    ModelPackageDescription=f"{model.name} {model.metric}={result.metric_value:.4f} "
                                            f"(local demo run {run_id})",
                    ModelApprovalStatus="PendingManualApproval",
                    InferenceSpecification={
                        # As the pipeline's Register step: the inference code is model.tar.gz's code/.
                        "Containers": [{"Image": inference_image(model.framework, region),
                                        "ModelDataUrl": result.model_data_url,
                                        "Environment": spec.serving_environment(model.framework)}],
                        "SupportedContentTypes": ["text/csv", "application/json"],
                        "SupportedResponseMIMETypes": ["text/csv", "application/json"],
                    },
                    CustomerMetadataProperties={"GitCommit": result.git_commit},
                    ModelMetrics={"ModelQuality": {"Statistics": {"ContentType": "application/json",
                                                                  "S3Uri": result.evaluation_uri}}},
                )
                result.package_arn = registered["ModelPackageArn"]
            result.packages_registered = len(
                sm.list_model_packages(ModelPackageGroupName=result.model_package_group)["ModelPackageSummaryList"])
            if result.passed:
                progress.say(f"registered {result.package_arn} (PendingManualApproval, commit "
                             f"{result.git_commit[:12]})")
            else:
                result.fail_message = pipeline.fail_message
                progress.say(f"FailStep: {result.fail_message}")

        if not result.passed:
            with progress.stage(7):
                write_report(result, result.report_dir, predictions_csv, None)
                progress.say(f"report (failed run) in {result.report_dir}/: "
                             + ", ".join(p.name for p in result.report_files.values()))
            result.exit_code = 1
            result.total_seconds = round(time.perf_counter() - started_all, 2)
            raise DemoFailed(result.fail_message or "the model did not meet the threshold", result)

        # 5 -------------------------------------------------------------------------------------------------------
        with progress.stage(5):
            from cicd_scripts import resolve_approved_package

            sm.update_model_package(
                ModelPackageArn=result.package_arn,
                ModelApprovalStatus="Approved",
                ApprovalDescription="approved by the local demo (stands in for a reviewer)",
                # unchanged; moto 5.2 clears CustomerMetadataProperties on an update that omits them
                CustomerMetadataProperties={"GitCommit": result.git_commit},
            )
            progress.say(f"approved {result.package_arn} (as a reviewer would in Studio or with "
                         "'aws sagemaker update-model-package')")
            resolved_file = work / "resolve" / "package.json"
            captured_out, captured_err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(captured_out), contextlib.redirect_stderr(captured_err):
                result.resolve_exit_code = resolve_approved_package.main(
                    ["--model-package-group", result.model_package_group, "--region", region,
                     "--expected-arn", result.package_arn, "--output-file", str(resolved_file)], sagemaker=sm)
            for line in captured_err.getvalue().strip().splitlines():
                progress.say(f"resolver: {line}")
            if result.resolve_exit_code != 0:
                raise RuntimeError(f"resolve_approved_package exited {result.resolve_exit_code}: "
                                   f"{captured_err.getvalue().strip()}")
            result.resolved = json.loads(resolved_file.read_text())
            for key, value in result.resolved.items():
                progress.say(f"resolved {key}: {value}")
            description = sm.describe_model_package(ModelPackageName=result.package_arn)
            result.package_status = description.get("ModelApprovalStatus")
            result.package_version = description.get("ModelPackageVersion")
            result.package_metadata = dict(description.get("CustomerMetadataProperties") or {})
            result.package_group_of_arn = description.get("ModelPackageGroupName")

        # 6 -------------------------------------------------------------------------------------------------------
        lambda_log = work / "lambda-logs.jsonl"
        with progress.stage(6):
            bucket, key = split_s3_uri(result.resolved["model_data_url"])
            serving_dir = work / "serving"
            tarball = serving_dir / "model.tar.gz"
            serving_dir.mkdir()
            s3.download_file(bucket, key, str(tarball))
            model_dir = serving_dir / "model"
            model_dir.mkdir()
            with tarfile.open(tarball, "r:gz") as archive:
                if hasattr(tarfile, "data_filter"):
                    archive.extractall(model_dir, filter="data")
                else:
                    archive.extractall(model_dir)
            progress.say(f"model {result.resolved['model_data_url']} extracted to MODEL_LOCAL_PATH")
            cleanup.enter_context(patched_environ({
                "INFERENCE_MODE": "model",
                "MODEL_LOCAL_PATH": str(model_dir),
                "MODEL_VERSION": result.package_arn,
                "MAX_BATCH_ROWS": str(model.lambda_.max_batch_rows),
                "MODEL_S3_URI": None, "ENDPOINT_NAME": None,
                "POWERTOOLS_TRACE_DISABLED": "true",
                "POWERTOOLS_SERVICE_NAME": os.environ.get("POWERTOOLS_SERVICE_NAME", "inference"),
                "POWERTOOLS_METRICS_NAMESPACE": os.environ.get("POWERTOOLS_METRICS_NAMESPACE",
                                                               "MLOpsPlatform/Inference"),
            }))
            log_stream = cleanup.enter_context(open(lambda_log, "w", encoding="utf-8"))
            handler, runtime = load_lambda_handler(log_stream)
            cleanup.callback(runtime.reset)
            server = FunctionUrlServer(handler, names.serving_resource(model.name, "demo"), log_stream,
                                       getattr(runtime, "logger", None)).start()
            cleanup.callback(server.stop)
            result.serving_url = server.url
            progress.say(f"inference handler (lambda_src/inference/app.py, INFERENCE_MODE=model) behind a "
                         f"Function URL stand-in at {server.url}")

            metadata = json.loads((model_dir / "model_metadata.json").read_text())
            test_rows = decode_rows(pipeline.outputs["test"] / "test.csv", metadata, 5)
            missing = dict(test_rows[0])
            missing.pop(metadata["features"][-1]["name"])
            wrong_type = dict(test_rows[0])
            numeric = next(f["name"] for f in metadata["features"] if f["type"] == "numeric")
            wrong_type[numeric] = "not-a-number"
            calls = [
                ("one row", json.dumps({"instance": test_rows[0]}).encode(), "200", 1),
                ("batch of 5", json.dumps({"instances": test_rows}).encode(), "200", len(test_rows)),
                ("malformed JSON", b'{"instances": [{"sex": "M", ', "4xx", None),
                ("missing feature", json.dumps({"instances": [missing]}).encode(), "4xx", None),
                ("wrong type", json.dumps({"instances": [wrong_type]}).encode(), "4xx", None),
                ("empty batch", json.dumps({"instances": []}).encode(), "4xx", None),
            ]
            for name, body, expected, rows_expected in calls:
                status, payload, latency = http_call(server.url, body)
                ok = status == 200 and payload.get("count") == rows_expected if expected == "200" \
                    else 400 <= status < 500
                req = RequestResult(name=name, status=status, latency_ms=round(latency, 2), expected=expected,
                                    ok=ok, count=payload.get("count"), predictions=payload.get("predictions"),
                                    error=payload.get("error"), message=payload.get("message"))
                result.requests.append(req)
                if req.predictions is not None:
                    shown = ", ".join(f"{p:.3f}" if isinstance(p, float) else str(p) for p in req.predictions)
                    detail = f"predictions [{shown}]"
                else:
                    detail = f"{req.error}: {req.message}"
                progress.say(f"POST {name:<16} -> {status} in {latency:6.1f} ms ({'ok' if ok else 'UNEXPECTED'}) "
                             f"{detail}")
            batch = result.request("batch of 5")
            if batch.predictions and predictions_csv is not None and predictions_csv.is_file():
                import pandas as pd

                expected_pred = pd.read_csv(predictions_csv)["predicted"].head(len(batch.predictions)).tolist()
                result.batch_matches_evaluation = all(
                    abs(float(a) - float(b)) <= 1e-4 * max(1.0, abs(float(b)))
                    for a, b in zip(batch.predictions, expected_pred))
                progress.say(f"batch predictions equal the evaluation step's predictions.csv: "
                             f"{result.batch_matches_evaluation}")
            server.stop()
            log_stream.flush()

        # 7 -------------------------------------------------------------------------------------------------------
        with progress.stage(7):
            write_report(result, result.report_dir, predictions_csv, lambda_log)
            progress.say(f"report in {result.report_dir}/: "
                         + ", ".join(p.name for p in result.report_files.values()))
        # metrics.json and summary.md were written inside stage 7: write them again with its duration included
        result.total_seconds = round(time.perf_counter() - started_all, 2)
        write_texts(result, result.report_files)
    result.exit_code = 0 if all(r.ok for r in result.requests) else 1
    return result
