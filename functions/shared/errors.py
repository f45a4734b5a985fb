"""Typed failures of bedrock-runtime calls, shared by the chat API and the batch pipeline.

The gateway (shared/converse.py) is the only place that turns botocore exceptions into these; callers
map them to their own vocabulary (HTTP statuses for chat, result records for batch) exactly once.
A message may quote Bedrock, which can include ARNs or account ids: callers must not return it as is.
"""

from __future__ import annotations

from typing import ClassVar


class BedrockError(Exception):
    """A bedrock-runtime call failed; the base class also stands for an unclassified upstream failure."""

    retryable: ClassVar[bool] = False

    def __init__(self, message: str = "", *, code: str = "") -> None:
        super().__init__(message or code or type(self).__name__)
        self.message = message
        self.code = code or type(self).__name__


class BedrockThrottled(BedrockError):
    """Bedrock refused for capacity (throttling, quota, model warming up); worth trying again later."""

    retryable = True

    def __init__(self, message: str = "", *, code: str = "", retry_after: int | None = None) -> None:
        super().__init__(message, code=code)
        # Seconds the caller should wait; None until Bedrock or the gateway's backoff says how long.
        self.retry_after = retry_after


class BedrockModelNotReady(BedrockThrottled):
    """The model is not ready to serve yet (ModelNotReadyException)."""


class BedrockUnavailable(BedrockError):
    """Bedrock is unavailable or unreachable (ServiceUnavailableException, connection failures)."""

    retryable = True


class BedrockServerError(BedrockError):
    """Bedrock failed on its side (InternalServerException or another 5xx)."""

    retryable = True


class BedrockTimeout(BedrockError):
    """No answer in time: the model timed out, the read timed out, or the caller's deadline ran out."""

    retryable = True


class BedrockValidation(BedrockError):
    """Bedrock rejected the request as invalid (ValidationException)."""


class BedrockAccessDenied(BedrockError):
    """The caller's role may not use the model or the guardrail (AccessDeniedException)."""


class BedrockNotFound(BedrockError):
    """The model or the guardrail does not exist (ResourceNotFoundException)."""


class BedrockModelError(BedrockError):
    """The model failed or produced output that cannot be used (ModelErrorException, malformed output)."""
