"""OpenAI's error object and the status codes the server answers with.

Every failure reaches the client as ``{"error": {"message", "type", "param", "code"}}`` (the shape
OpenAI's API and its client libraries use), never as a stack trace or a dropped connection.
"""

from __future__ import annotations

from typing import Any


class APIError(Exception):
    """An error to answer with: HTTP `status` and OpenAI's error fields."""

    def __init__(self, status: int, message: str, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def invalid(message: str, param: str | None = None, code: str | None = None) -> APIError:
    """400: the request is wrong (bad field, bad image, unsupported option)."""
    return APIError(400, message, "invalid_request_error", param, code)


def from_exception(exc: BaseException) -> APIError:
    """The API error for an exception raised while serving a request.

    corehead raises ValueError / TypeError / FileNotFoundError for bad input (DESIGN §9), so those
    are the client's fault (400); anything else is ours (500, with a message but no trace)."""
    from corehead.errors import ContextOverflowError

    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, ContextOverflowError):
        return invalid(str(exc), "messages", "context_length_exceeded")
    if isinstance(exc, (ValueError, TypeError, FileNotFoundError)):
        return invalid(str(exc))
    return APIError(500, f"internal error: {type(exc).__name__}: {exc}", "server_error", None, "internal_error")
