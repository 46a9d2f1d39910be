"""The AWS front end of the stand-in servers (endpoint, Function URL): SigV4 authentication of the caller, IAM
authorization of its identity policies, AWS-style errors, and a threaded HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from rehearsal.assembly import ACCOUNT
from rehearsal.cloud import DENIALS, Denial, _LOCK, _policy_documents, evaluate


class CallerError(Exception):
    """An HTTP error as the AWS front end answers it: status, error type, message."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


@dataclass
class Caller:
    arn: str
    policies: list[dict]


def authenticate(method: str, url: str, headers: dict[str, str], body: bytes, service: str) -> Caller:
    """The principal that signed the request (SigV4, checked as AWS checks it) and its identity policies.

    ``url`` is the full URL the client signed (``http://host:port/path?query``). Keys of the admin user and of roles
    assumed through :meth:`rehearsal.cloud.Cloud.credentials` are known; anything else is an invalid token.
    """
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    from moto.iam.access_control import CreateAccessKeyFailure, create_access_key

    lower = {k.lower(): v for k, v in headers.items()}
    auth = lower.get("authorization", "")
    match = re.match(r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, "
                     r"SignedHeaders=([^,]+), Signature=([0-9a-f]+)", auth)
    if not match:
        raise CallerError(403, "MissingAuthenticationTokenException", "Missing Authentication Token")
    key_id, _, region, signed_service, signed, signature = match.groups()
    if signed_service != service:
        raise CallerError(403, "InvalidSignatureException",
                          f"Credential should be scoped to correct service: '{service}'.")
    token = lower.get("x-amz-security-token")
    moto_headers = {"X-Amz-Security-Token": token} if token else {}
    try:
        key = create_access_key(ACCOUNT, "aws", key_id, moto_headers)
    except CreateAccessKeyFailure:
        raise CallerError(403, "UnrecognizedClientException", "The security token included in the request is invalid.")
    request = AWSRequest(method=method, url=url, data=body,
                         headers={k: v for k, v in headers.items() if k.lower() in signed.split(";")})
    request.context["timestamp"] = lower.get("x-amz-date", "")
    signer = SigV4Auth(key.create_credentials() if hasattr(key, "create_credentials") else Credentials(key_id, ""),
                       service, region)
    expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    if expected != signature:
        raise CallerError(403, "InvalidSignatureException",
                          "The request signature we calculated does not match the signature you provided.")
    return Caller(arn=key.arn, policies=_policy_documents(key))


def authorize(caller: Caller, action: str, resource: str) -> None:
    """Raise 403 AccessDeniedException (recorded in DENIALS) unless the caller's policies allow ``action``."""
    if not evaluate(caller.policies, action, [[resource]]):
        with _LOCK:
            DENIALS.append(Denial(caller.arn, action, (resource,)))
        raise CallerError(403, "AccessDeniedException",
                          f"User: {caller.arn} is not authorized to perform: {action} on resource: {resource} "
                          f"because no identity-based policy allows the {action} action")


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True


def start_http(handler: Any) -> tuple[ThreadingHTTPServer, str]:
    """``handler(method, url, path, headers, body) -> (status, headers, body)`` served on a free 127.0.0.1 port."""

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            host = self.headers.get("Host", "")
            status, headers, payload = handler(self.command, f"http://{host}{self.path}", self.path,
                                               dict(self.headers.items()), body)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_POST = do_GET = do_PUT = _serve

        def log_message(self, *args: Any) -> None:
            pass

    server = _QuietServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def aws_error(error: CallerError) -> tuple[int, dict[str, str], bytes]:
    return error.status, {"Content-Type": "application/x-amz-json-1.1", "x-amzn-ErrorType": error.kind}, \
        json.dumps({"__type": error.kind, "message": error.message}).encode()
