"""The inference ID of a request: the key that joins ground-truth labels with the endpoint's captured predictions.

A caller may name its request with the ``X-Inference-Id`` header or the body's ``"inference_id"`` field (both: they
must agree); otherwise the function generates a UUID. Either way the response carries it (``inference_id`` in the
body, ``X-Inference-Id`` header) so that the caller can upload the label later (``inference_id,label``).

In ``endpoint_proxy`` mode the ID is the ``InferenceId`` of ``InvokeEndpoint``, which SageMaker data capture records
as ``eventMetadata.inferenceId`` and Model Monitor's model-quality merge joins with the ground truth's
``eventMetadata.eventId``. One ID names one request: label single-row requests (``{"instance": ...}``), since Model
Monitor joins one label with one captured request. In ``model`` mode there is no data capture: the ID is returned
for the caller's own bookkeeping, but Model Monitor cannot join labels of those predictions.

The rule is InvokeEndpoint's (1-64 characters, printable ASCII, ``\\A\\S[\\p{Print}]*\\z``), a little stricter: no
trailing whitespace either (CSV tools strip it, and a stripped ID would match nothing).
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from .errors import RequestError

HEADER = "X-Inference-Id"
BODY_FIELD = "inference_id"
MAX_LENGTH = 64
_VALID = re.compile(r"^[!-~](?:[ -~]*[!-~])?$")
_RULE = f"1-{MAX_LENGTH} printable ASCII characters, without leading or trailing spaces"


def check_inference_id(value: Any, where: str) -> str:
    """``value`` if it is a valid inference ID, else a 400 ``invalid_inference_id`` naming ``where`` it came from."""
    if not isinstance(value, str):
        raise RequestError("invalid_inference_id", f"{where} must be a string of {_RULE}")
    if not value or len(value) > MAX_LENGTH:
        raise RequestError(
            "invalid_inference_id", f"{where} must be {_RULE}; got {len(value)} characters"
        )
    if not _VALID.match(value):
        raise RequestError(
            "invalid_inference_id",
            f"{where} must be {_RULE}; it has a space at either end or a character outside printable ASCII",
        )
    return value


def resolve_inference_id(header: str | None, payload: Any) -> str:
    """The request's inference ID: the header's, the body's (they must agree when both are given) or a new UUID."""
    from_header = check_inference_id(header, f"the {HEADER} header") if header is not None else None
    from_body = None
    if isinstance(payload, dict) and BODY_FIELD in payload:
        from_body = check_inference_id(payload[BODY_FIELD], f'"{BODY_FIELD}"')
    if from_header is not None and from_body is not None and from_header != from_body:
        raise RequestError(
            "ambiguous_inference_id",
            f'the {HEADER} header and "{BODY_FIELD}" differ: send the inference ID once',
        )
    return from_header or from_body or str(uuid.uuid4())
