"""Errors as Anthropic's Messages API words them: ``{"type": "error", "error": {"type",
"message"}, "request_id"}``, its error ``type`` chosen by the HTTP status as Anthropic's
docs list them ("HTTP errors"). chatd's errors (``APIError``) carry OpenAI's fields;
this is their other rendering, used for every error on the Messages API's paths
(api/errors.py) and for a stream's ``error`` event."""

from __future__ import annotations

from typing import Any

from chatd.protocol.errors import APIError, Overloaded

__all__ = ["anthropic_error", "anthropic_error_body", "anthropic_status"]

# Any other 4xx is an invalid_request_error (Anthropic says it may be), any other 5xx an
# api_error.
_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


def anthropic_status(error: APIError) -> int:
    """A full engine queue is Anthropic's 529 (``overloaded_error``; the SDKs retry it);
    every other status is kept, the drain's 503 included (a load balancer's signal to go
    to another replica; the SDKs retry a 503 too), with ``Retry-After``."""
    return 529 if isinstance(error, Overloaded) else error.status


def anthropic_error(error: APIError) -> dict[str, str]:
    """The ``error`` object: its ``type`` and ``message``."""
    status = anthropic_status(error)
    kind = _TYPES.get(status) or ("invalid_request_error" if status < 500 else "api_error")
    return {"type": kind, "message": error.message}


def anthropic_error_body(error: APIError, request_id: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "error", "error": anthropic_error(error)}
    if request_id is not None:
        body["request_id"] = request_id
    return body
