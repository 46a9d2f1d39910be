"""The inference Lambda on this machine: its entry point imported as Lambda imports it, behind a local Function URL
(a ``ThreadingHTTPServer`` on 127.0.0.1 that turns each request into a payload 2.0 event), and the HTTP calls."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import importlib.util
import json
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Optional, TextIO

LAMBDA_DIR = Path(__file__).resolve().parent.parent / "lambda_src" / "inference"


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
