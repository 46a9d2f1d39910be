"""Errors the handler turns into HTTP responses.

Every error carries a stable, low-cardinality ``code``: it is the ``error`` field of the response body and the
``reason`` dimension of the ``BadRequests`` / ``ServerErrors`` metrics, so never build a code from request data.
"""

from __future__ import annotations


class HttpError(Exception):
    """An error with an HTTP status, a stable code and an actionable message for the caller."""

    status: int = 500
    code: str = "internal_error"

    def __init__(self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    @property
    def is_client_error(self) -> bool:
        return self.status < 500


class RequestError(HttpError):
    """The request is wrong (4xx): the caller can fix it."""

    def __init__(self, code: str, message: str, *, status: int = 400, headers: dict[str, str] | None = None):
        super().__init__(status, code, message, headers=headers)


class UpstreamError(HttpError):
    """The SageMaker endpoint (or the path to it) failed (502/503/504): not the caller's fault."""


class ConfigurationError(Exception):
    """The function's configuration or the model artifact is unusable (a server fault, reported as 500)."""
