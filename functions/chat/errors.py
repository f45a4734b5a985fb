"""Every way a chat request can fail, as types with an HTTP status and an OpenAI error type/code.

The shared Bedrock errors and pydantic's validation errors are mapped to these here, once; the
app renders any of them as the OpenAI envelope `{"error": {"message", "type", "param", "code"}}`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from http import HTTPStatus
from typing import Any, ClassVar

from shared.errors import (
    BedrockAccessDenied,
    BedrockError,
    BedrockNotFound,
    BedrockThrottled,
    BedrockTimeout,
    BedrockUnavailable,
    BedrockValidation,
)


class ChatError(Exception):
    """A failed chat request: status, OpenAI `type`, and the `param`/`code` the caller can act on."""

    status: ClassVar[HTTPStatus] = HTTPStatus.INTERNAL_SERVER_ERROR
    openai_type: ClassVar[str] = "server_error"
    default_code: ClassVar[str | None] = "internal_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code or self.default_code

    def headers(self) -> dict[str, str]:
        """Extra response headers this error needs."""
        return {}


class InvalidRequest(ChatError):
    """The request is malformed or asks for something invalid."""

    status = HTTPStatus.BAD_REQUEST
    openai_type = "invalid_request_error"
    default_code = "invalid_value"


class UnsupportedParameter(InvalidRequest):
    """The request uses an OpenAI parameter this service cannot honour."""

    default_code = "unsupported_parameter"


class UnsupportedValue(InvalidRequest):
    """The request gives a parameter a value this service cannot honour."""

    default_code = "unsupported_value"


class ContextLengthExceeded(InvalidRequest):
    """The prompt is obviously larger than the model's context window."""

    default_code = "context_length_exceeded"


class IdempotencyKeyReused(ChatError):
    """The Idempotency-Key was already used by this caller with a different request body."""

    status = HTTPStatus.UNPROCESSABLE_ENTITY
    openai_type = "invalid_request_error"
    default_code = "idempotency_key_reused"


class IdempotencyInProgress(ChatError):
    """A request with the same Idempotency-Key (and caller) is still being answered."""

    status = HTTPStatus.CONFLICT
    openai_type = "invalid_request_error"
    default_code = "idempotency_request_in_progress"
    # The first request usually answers within seconds; OpenAI SDKs retry a 409 after this wait.
    retry_after = 2

    def headers(self) -> dict[str, str]:
        """Tell the client when the first request's answer may be ready to replay."""
        return {"Retry-After": str(self.retry_after)}


class IdempotencyStoreUnavailable(ChatError):
    """The idempotency store could not be read or written, so the request was not answered."""

    status = HTTPStatus.SERVICE_UNAVAILABLE
    default_code = "idempotency_store_unavailable"


class ModelNotFound(ChatError):
    """The requested model is neither an allowed model id nor a configured alias."""

    status = HTTPStatus.NOT_FOUND
    openai_type = "invalid_request_error"
    default_code = "model_not_found"


class NotFound(ChatError):
    """No file or batch of this id belongs to the caller (another caller's is not found either)."""

    status = HTTPStatus.NOT_FOUND
    openai_type = "invalid_request_error"
    default_code = "not_found"


class InvalidState(ChatError):
    """The batch cannot do this in its current status (cancel a completed batch)."""

    status = HTTPStatus.CONFLICT
    openai_type = "invalid_request_error"
    default_code = "invalid_state"


class PrincipalRequired(ChatError):
    """Files and batches belong to the IAM principal that signed the request, and this one has none."""

    status = HTTPStatus.FORBIDDEN
    openai_type = "invalid_request_error"
    default_code = "principal_required"


class BatchPipelineUnavailable(ChatError):
    """This stage has no batch pipeline (its stack is not deployed, or its parameter cannot be read)."""

    status = HTTPStatus.SERVICE_UNAVAILABLE
    default_code = "batch_pipeline_unavailable"


class RouteNotFound(ChatError):
    """No route matches the path."""

    status = HTTPStatus.NOT_FOUND
    openai_type = "invalid_request_error"
    default_code = "unknown_url"


class MethodNotAllowed(ChatError):
    """The path exists, but not for this method."""

    status = HTTPStatus.METHOD_NOT_ALLOWED
    openai_type = "invalid_request_error"
    default_code = "method_not_allowed"

    def __init__(self, message: str, *, allow: Sequence[str]) -> None:
        super().__init__(message)
        self.allow = ", ".join(sorted(allow))

    def headers(self) -> dict[str, str]:
        """Name the methods the path accepts."""
        return {"Allow": self.allow}


class RequestTooLarge(ChatError):
    """The body is larger than this service accepts."""

    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    openai_type = "invalid_request_error"
    default_code = "request_too_large"


class UnsupportedMediaType(ChatError):
    """The body is not JSON."""

    status = HTTPStatus.UNSUPPORTED_MEDIA_TYPE
    openai_type = "invalid_request_error"
    default_code = "unsupported_media_type"


class RateLimited(ChatError):
    """Bedrock kept throttling within the request's time budget."""

    status = HTTPStatus.TOO_MANY_REQUESTS
    openai_type = "rate_limit_error"
    default_code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = max(1, retry_after)

    def headers(self) -> dict[str, str]:
        """Tell the client (the OpenAI SDKs honour it) when to try again."""
        return {"Retry-After": str(self.retry_after)}


class ServiceMisconfigured(ChatError):
    """This service cannot reach its model or guardrail (access revoked, resource deleted)."""


class UpstreamFailed(ChatError):
    """The model or Bedrock failed in a way a retry may or may not fix."""

    status = HTTPStatus.BAD_GATEWAY
    default_code = "upstream_error"


class UpstreamUnavailable(ChatError):
    """Bedrock is unavailable."""

    status = HTTPStatus.SERVICE_UNAVAILABLE
    default_code = "service_unavailable"


class UpstreamTimeout(ChatError):
    """No answer within the request's time budget."""

    status = HTTPStatus.GATEWAY_TIMEOUT
    openai_type = "timeout"
    default_code = "timeout"


_ARN = re.compile(r"arn:aws[a-z-]*:[^\s\"',;]+")
_ACCOUNT_ID = re.compile(r"(?<!\d)\d{12}(?!\d)")


def redact(message: str) -> str:
    """Remove ARNs and account ids from a message that is going back to a caller."""
    return _ACCOUNT_ID.sub("<account>", _ARN.sub("<arn>", message))


def _throttled(error: BedrockError) -> ChatError:
    retry_after = error.retry_after if isinstance(error, BedrockThrottled) and error.retry_after else 1
    return RateLimited(
        f"The model is receiving too many requests; please retry after {retry_after} seconds.",
        retry_after=retry_after,
    )


def _invalid(error: BedrockError) -> ChatError:
    return InvalidRequest(f"Bedrock rejected the request: {redact(error.message)}", code="invalid_request")


def _misconfigured(_: BedrockError) -> ChatError:
    # The Bedrock message names roles, ARNs and policies: none of that is the caller's business.
    return ServiceMisconfigured("The service cannot reach its model right now; the operator has to fix it.")


def _unavailable(_: BedrockError) -> ChatError:
    return UpstreamUnavailable("The model service is temporarily unavailable; please retry.")


def _timed_out(_: BedrockError) -> ChatError:
    return UpstreamTimeout("The model did not answer in time; try a shorter prompt or a smaller max_tokens.")


def _failed(_: BedrockError) -> ChatError:
    return UpstreamFailed("The model failed to produce a usable answer; please retry.")


_FROM_BEDROCK: dict[type[BedrockError], Callable[[BedrockError], ChatError]] = {
    BedrockThrottled: _throttled,
    BedrockValidation: _invalid,
    BedrockAccessDenied: _misconfigured,
    BedrockNotFound: _misconfigured,
    BedrockUnavailable: _unavailable,
    BedrockTimeout: _timed_out,
    BedrockError: _failed,
}


def from_bedrock(error: BedrockError) -> ChatError:
    """The chat error for a Bedrock error (the most specific mapping wins)."""
    # BedrockError itself is in the table, so every error's MRO finds an entry.
    mapping = next(_FROM_BEDROCK[kind] for kind in type(error).__mro__ if kind in _FROM_BEDROCK)
    return mapping(error)


# Pydantic names union members in error locations ("str", "list[ContentPart]", "NamedToolChoice"):
# they are not fields, so they are left out of `param`.
_UNION_MEMBER_NAMES = frozenset({"str", "int", "float", "bool", "list", "dict", "none"})


def _is_union_member(segment: str) -> bool:
    return "[" in segment or segment[:1].isupper() or segment in _UNION_MEMBER_NAMES


def param_path(loc: Sequence[str | int]) -> str | None:
    """An OpenAI-style parameter path (`messages[0].role`) for a pydantic error location in the body."""
    path = ""
    for segment in loc[1:] if loc[:1] == ("body",) else loc:
        if isinstance(segment, int):
            path += f"[{segment}]"
        elif not _is_union_member(segment):
            path += f".{segment}" if path else segment
    return path or None


def _most_specific(errors: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    # A union reports one error per member; the deepest one under the first error's field says most
    # (a list of parts with a part missing its type beats "not a string").
    field = param_path(tuple(errors[0].get("loc", ()))) or ""
    related = [error for error in errors if (param_path(tuple(error.get("loc", ()))) or "").startswith(field)]
    return max(related, key=lambda error: len(error.get("loc", ())))


def from_validation(errors: Sequence[Mapping[str, Any]]) -> ChatError:
    """The 400 for the first of pydantic's request validation errors, naming the field."""
    first = _most_specific(errors) if errors else {"type": "missing", "loc": ("body",)}
    kind = str(first.get("type", ""))
    if kind == "json_invalid":
        return InvalidRequest("We could not parse the JSON body of your request.", code="invalid_json")
    param = param_path(tuple(first.get("loc", ())))
    if param is None:
        return InvalidRequest("The request body must be a JSON object.", code="invalid_type")
    if kind == "missing":
        return InvalidRequest(f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter")
    if kind == "extra_forbidden":
        return UnsupportedParameter(f"Unrecognized request argument supplied: '{param}'.", param=param)
    reason = str(first.get("msg", "invalid value"))
    return InvalidRequest(
        f"Invalid value for '{param}': {reason}.",
        param=param,
        code="invalid_type" if kind.endswith("_type") else "invalid_value",
    )


def to_chat_error(error: Exception) -> ChatError:
    """The chat error for anything a route raised; unknown exceptions become a generic 500."""
    if isinstance(error, ChatError):
        return error
    if isinstance(error, BedrockError):
        return from_bedrock(error)
    return ChatError("The server had an error while processing your request.")
