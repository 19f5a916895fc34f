"""OpenAI-shaped errors: every failure a client can see is one of these.

Raised anywhere below the API layer; the API layer turns them into
``{"error": {"message", "type", "param", "code"}}`` with the right HTTP status.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "APIError",
    "AuthenticationError",
    "Forbidden",
    "InvalidRequest",
    "ModelNotFound",
    "ModelUnavailable",
    "NotFound",
    "NotYetSupported",
    "Overloaded",
    "RequestTimeout",
    "ServerError",
    "ShuttingDown",
    "Unsupported",
    "UnsupportedContentType",
]


class APIError(Exception):
    """An error with everything needed to render OpenAI's error body."""

    status: int = 400
    type: str = "invalid_request_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int | None = None,
        type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        if status is not None:
            self.status = status
        if type is not None:
            self.type = type
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequest(APIError):
    """400: the request itself is wrong."""


class Unsupported(InvalidRequest):
    """400: a valid field this server or model cannot honour (never silently ignored)."""

    def __init__(self, param: str, reason: str) -> None:
        super().__init__(
            f"Unsupported parameter: '{param}' {reason}", param=param, code="unsupported_parameter"
        )


class NotYetSupported(Unsupported):
    """400: a field a later version of chatd will implement."""

    def __init__(self, param: str) -> None:
        super().__init__(param, "is not supported yet by this server.")


class ModelNotFound(APIError):
    status = 404

    def __init__(self, model: str) -> None:
        super().__init__(
            f"The model `{model}` does not exist or you do not have access to it.",
            code="model_not_found",
        )


class NotFound(APIError):
    status = 404


class AuthenticationError(APIError):
    status = 401


class Forbidden(APIError):
    """403: a request this server refuses whoever sends it (a web page of an origin it
    does not allow, api/origins.py)."""

    status = 403


class UnsupportedContentType(APIError):
    """415: a JSON route's body declared as something else, or not declared (a browser
    sends ``text/plain`` and form bodies cross-origin without asking first, and curl's
    ``-d`` alone sends ``application/x-www-form-urlencoded``). OpenAI's own answer is a
    400 with this code; chatd answers HTTP's status for it (docs/security.md)."""

    status = 415

    def __init__(self, given: str | None) -> None:
        fix = (
            "Send the header 'Content-Type: application/json' (with curl: -H"
            " 'Content-Type: application/json'; -d alone sends"
            " application/x-www-form-urlencoded)."
        )
        if given is None:
            message = (
                "Missing Content-Type header. This API method only accepts"
                f" 'application/json' requests. {fix}"
            )
        else:
            shown = given[:100]
            message = (
                f"Unsupported content type: '{shown}'. This API method only accepts"
                " 'application/json' requests, but you specified the header"
                f" 'Content-Type: {shown}'. {fix}"
            )
        super().__init__(message, code="unsupported_content_type")


class Overloaded(APIError):
    status = 503
    type = "server_error"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(
            message, code="server_overloaded", headers={"Retry-After": str(retry_after)}
        )


class ShuttingDown(APIError):
    """503 while the server drains before it exits (SIGTERM): a new request is refused at
    once, and one still running at the drain's deadline is cut with this error. Retry:
    another replica behind the load balancer, or this one once restarted."""

    status = 503
    type = "server_error"
    retry_after = 5

    def __init__(self, message: str) -> None:
        super().__init__(
            message,
            code="server_shutting_down",
            headers={"Retry-After": str(self.retry_after), "Connection": "close"},
        )


class ModelUnavailable(APIError):
    """A configured model none of whose routes can answer now (503, not 404)."""

    status = 503
    type = "server_error"


class ServerError(APIError):
    status = 500
    type = "server_error"


class RequestTimeout(APIError):
    """504: a generation ran past the server's wall-clock limit and was stopped (its
    engine slot freed); what it had written is not returned as if complete."""

    status = 504
    type = "server_error"

    def __init__(self, seconds: float) -> None:
        super().__init__(
            f"The request took longer than this server's limit of {seconds:g} seconds and"
            " was stopped. Ask for fewer tokens (max_tokens) or retry later.",
            code="request_timeout",
        )
