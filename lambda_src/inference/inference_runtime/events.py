"""HTTP event shapes in, HTTP responses out.

Accepted events:
- Lambda Function URL / HTTP API, payload format 2.0: ``requestContext.http.method``, lower-cased ``headers``,
  ``body`` (string or absent), ``isBase64Encoded``.
- API Gateway REST proxy integration (payload 1.0): ``httpMethod``, ``headers`` (any case, may be null),
  ``body`` (string or null), ``isBase64Encoded``.
- A direct ``lambda:Invoke`` (smoke tests, Step Functions): any event without those keys is taken as the already
  parsed request body, method POST.
Both HTTP shapes take the same response: ``{"statusCode", "headers", "body", "isBase64Encoded"}``.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from .errors import RequestError

SOURCE_FUNCTION_URL = "function_url"  # also HTTP API payload 2.0
SOURCE_REST_API = "rest_api"
SOURCE_DIRECT = "direct"

ACCEPTED_MEDIA_TYPES = frozenset({"application/json", "text/json", "text/plain"})
_EXAMPLE = '{"instances": [{"feature": value, ...}]}'


@dataclass(frozen=True, slots=True)
class HttpRequest:
    source: str
    method: str
    content_type: str | None
    body: Any  # str / bytes for HTTP events, the payload itself for direct invocations
    is_base64: bool = False
    parsed: bool = False  # True when body is already a JSON value (direct invocation)
    inference_id: str | None = None  # the X-Inference-Id header, as sent (checked by inference_ids)


def parse_event(event: Any) -> HttpRequest:
    if isinstance(event, dict):
        context = event.get("requestContext")
        http = context.get("http") if isinstance(context, dict) else None
        if isinstance(http, dict):
            return _http_request(event, SOURCE_FUNCTION_URL, http.get("method"))
        if "httpMethod" in event:
            return _http_request(event, SOURCE_REST_API, event.get("httpMethod"))
    return HttpRequest(source=SOURCE_DIRECT, method="POST", content_type=None, body=event, parsed=True)


def _http_request(event: dict, source: str, method: Any) -> HttpRequest:
    """An HTTP event of either payload format: the same keys once the method is found."""
    return HttpRequest(
        source=source,
        method=str(method or "").upper(),
        content_type=_header(event.get("headers"), "content-type"),
        body=event.get("body"),
        is_base64=bool(event.get("isBase64Encoded")),
        inference_id=_header(event.get("headers"), "x-inference-id"),
    )


def _header(headers: Any, name: str) -> str | None:
    if not isinstance(headers, dict):
        return None
    value = headers.get(name)
    if value is None:
        for key, candidate in headers.items():
            if isinstance(key, str) and key.lower() == name:
                value = candidate
                break
    return value if isinstance(value, str) else None


def check_method(request: HttpRequest) -> None:
    if request.method != "POST":
        raise RequestError(
            "method_not_allowed",
            f"method {request.method or '(none)'} is not allowed: POST a JSON body like {_EXAMPLE}",
            status=405,
            headers={"Allow": "POST"},
        )


def check_content_type(request: HttpRequest) -> None:
    """No Content-Type is fine (we parse JSON anyway); a declared non-JSON type is refused with 415."""
    if request.content_type is None:
        return
    media_type = request.content_type.split(";", 1)[0].strip().lower()
    if not media_type or media_type in ACCEPTED_MEDIA_TYPES or media_type.endswith("+json"):
        return
    raise RequestError(
        "unsupported_media_type",
        f"Content-Type {media_type!r} is not supported: send the body as JSON with Content-Type: application/json",
        status=415,
    )


def _reject_constant(name: str) -> Any:
    raise RequestError(
        "non_finite_number", f"{name} is not a JSON number (NaN and Infinity are not allowed): send finite numbers"
    )


def decode_body(request: HttpRequest) -> Any:
    """The request's JSON value. Rejects empty bodies, bad base64/UTF-8, invalid JSON, NaN/Infinity tokens."""
    if request.parsed:
        return request.body
    body = request.body
    if isinstance(body, (dict, list)):  # some test harnesses hand over a parsed body
        return body
    if body is None or (isinstance(body, (str, bytes)) and not body.strip()):
        raise RequestError("empty_body", f"the request body is empty: send JSON like {_EXAMPLE}")
    if not isinstance(body, (str, bytes)):
        raise RequestError("invalid_body", "the request body must be a JSON document")
    raw: str | bytes = body
    if request.is_base64:
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise RequestError("malformed_json", f"the body is marked base64 but does not decode: {exc}") from None
        if not raw.strip():
            raise RequestError("empty_body", f"the request body is empty: send JSON like {_EXAMPLE}")
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except RequestError:
        raise
    except RecursionError:
        raise RequestError("malformed_json", "the JSON body is nested too deeply") from None
    except UnicodeDecodeError:
        raise RequestError("malformed_json", "the body is not UTF-8 text: send UTF-8 encoded JSON") from None
    except ValueError as exc:  # json.JSONDecodeError, and int literals beyond the interpreter's digit limit
        raise RequestError("malformed_json", f"the body is not valid JSON: {exc}") from None


def http_response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
    all_headers = {"Content-Type": "application/json", "Cache-Control": "no-store"}
    if headers:
        all_headers.update(headers)
    return {
        "statusCode": status,
        "headers": all_headers,
        "body": json.dumps(body, separators=(",", ":"), allow_nan=False),
        "isBase64Encoded": False,
    }
