"""A local Function URL for tests: a threaded HTTP server on 127.0.0.1 that checks the request's SigV4 signature
(service ``lambda``, the tests' credentials ``testing``/``testing``/``testing-token``) as Lambda would, then answers."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


class FunctionUrlServer:
    """A threaded HTTP server on 127.0.0.1 answering like the inference Lambda behind its Function URL."""

    def __init__(self, answer: Callable[[Any], tuple[int, Any]]) -> None:
        self.answer = answer
        self.requests: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.requests.append({"path": self.path, "headers": dict(self.headers.items()), "body": raw})
                try:
                    payload = json.loads(raw)
                except json.JSONDecodeError:
                    payload = None
                if not outer.signature_ok(self.path, self.headers, raw):
                    status, doc = 403, {"Message": "Forbidden"}
                else:
                    status, doc = outer.answer(payload)
                data = (doc if isinstance(doc, str) else json.dumps(doc)).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    @staticmethod
    def signature_ok(path: str, headers: Any, raw: bytes) -> bool:
        """Recompute the SigV4 signature over the signed headers, as Lambda would, with the test credentials."""
        auth = headers.get("Authorization", "")
        m = re.match(
            r"^AWS4-HMAC-SHA256 Credential=testing/(\d{8})/([a-z0-9-]+)/lambda/aws4_request, "
            r"SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})$", auth)
        if not m:
            return False
        _, region, signed, signature = m.groups()
        kept = {name: headers[name] for name in signed.split(";") if name != "host"}
        request = AWSRequest(method="POST", url=f"http://{headers['Host']}{path}", data=raw, headers=kept)
        request.context["timestamp"] = headers["X-Amz-Date"]
        signer = SigV4Auth(Credentials("testing", "testing", "testing-token"), "lambda", region)
        expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
        return expected == signature

    def __enter__(self) -> "FunctionUrlServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()
