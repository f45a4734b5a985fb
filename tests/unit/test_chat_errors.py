"""Chat errors: validation errors name the field, Bedrock errors map once, nothing leaks."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from chat.errors import (
    ChatError,
    MethodNotAllowed,
    RateLimited,
    from_bedrock,
    from_validation,
    param_path,
    redact,
    to_chat_error,
)
from chat.models import ChatCompletionRequest
from shared.errors import (
    BedrockAccessDenied,
    BedrockError,
    BedrockModelError,
    BedrockModelNotReady,
    BedrockNotFound,
    BedrockServerError,
    BedrockThrottled,
    BedrockTimeout,
    BedrockUnavailable,
    BedrockValidation,
)

ARN_MESSAGE = (
    "User: arn:aws:sts::123456789012:assumed-role/chat-fn/chat is not authorized to perform: bedrock:InvokeModel "
    "on resource: arn:aws:bedrock:us-east-1::foundation-model/openai.gpt-oss-120b-1:0 with an explicit deny"
)


def body_errors(body: Any) -> list[dict[str, Any]]:
    """Validation errors as Powertools reports them (locations start at "body")."""
    try:
        ChatCompletionRequest.model_validate(body)
    except ValidationError as error:
        return [{**detail, "loc": ("body", *detail["loc"])} for detail in error.errors()]
    raise AssertionError("the body was valid")


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"model": "m", "messages": [{"role": "robot", "content": "x"}]}, "messages[0].role", "invalid_value"),
        ({"model": "m", "messages": [{"role": "user", "content": 5}]}, "messages[0].content", "invalid_type"),
        (
            {"model": "m", "messages": [{"role": "user", "content": [{"text": "x"}]}]},
            "messages[0].content[0].type",
            "missing_required_parameter",
        ),
        ({"model": "m"}, "messages", "missing_required_parameter"),
        ({"model": "m", "messages": []}, "messages", "invalid_value"),
        ({"messages": [{"role": "user", "content": "x"}]}, "model", "missing_required_parameter"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "top_k": 5}, "top_k", "unsupported_parameter"),
        (
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 1.5},
            "max_tokens",
            "invalid_type",
        ),
        (
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": "5"},
            "max_tokens",
            "invalid_type",
        ),
        (
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 3},
            "temperature",
            "invalid_value",
        ),
        (
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "presence_penalty": -3},
            "presence_penalty",
            "invalid_value",
        ),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}, "stream", "invalid_type"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "stop": 5}, "stop", "invalid_type"),
        (
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": "sometimes"},
            "tool_choice",
            "invalid_value",
        ),
        (
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "reasoning_effort": "none"},
            "reasoning_effort",
            "invalid_value",
        ),
        (
            {
                "model": "m",
                "messages": [{"role": "user", "content": "x"}],
                "tools": [{"type": "function", "function": {"name": "bad name"}}],
            },
            "tools[0].function.name",
            "invalid_value",
        ),
        (
            {
                "model": "m",
                "messages": [{"role": "user", "content": "x"}],
                "guardrailConfig": {"guardrailIdentifier": "x"},
            },
            "guardrailConfig",
            "unsupported_parameter",
        ),
    ],
)
@pytest.mark.row(2)
def test_validation_errors_name_the_field(body: dict[str, Any], param: str, code: str) -> None:
    error = from_validation(body_errors(body))
    assert (error.status, error.openai_type, error.param, error.code) == (400, "invalid_request_error", param, code)
    assert param in error.message


@pytest.mark.row(2)
def test_malformed_json_and_non_objects_are_400s_without_a_param() -> None:
    malformed = from_validation([{"type": "json_invalid", "loc": ("body", 1), "msg": "JSON decode error"}])
    assert (malformed.status, malformed.code, malformed.param) == (400, "invalid_json", None)
    not_an_object = from_validation(body_errors([]))
    assert (not_an_object.status, not_an_object.param) == (400, None)


def test_error_messages_never_echo_the_input() -> None:
    secret = "my-confidential-prompt"
    error = from_validation(body_errors({"model": "m", "messages": [{"role": secret, "content": secret}]}))
    assert secret not in error.message


@pytest.mark.parametrize(
    ("loc", "param"),
    [
        (("body", "messages", 0, "role"), "messages[0].role"),
        (("body", "messages", 0, "content", "list[ContentPart]", 2, "type"), "messages[0].content[2].type"),
        (("body", "tool_choice", "NamedToolChoice", "function", "name"), "tool_choice.function.name"),
        (("body", "stop", "str"), "stop"),
        (("body",), None),
        (("messages", 1), "messages[1]"),
    ],
)
def test_param_path(loc: tuple[str | int, ...], param: str | None) -> None:
    assert param_path(loc) == param


@pytest.mark.parametrize(
    ("error", "status", "openai_type", "code"),
    [
        (
            BedrockThrottled("slow down", code="ThrottlingException", retry_after=3),
            429,
            "rate_limit_error",
            "rate_limit_exceeded",
        ),
        (
            BedrockModelNotReady("warming", code="ModelNotReadyException"),
            429,
            "rate_limit_error",
            "rate_limit_exceeded",
        ),
        (BedrockValidation("bad", code="ValidationException"), 400, "invalid_request_error", "invalid_request"),
        (BedrockAccessDenied(ARN_MESSAGE, code="AccessDeniedException"), 500, "server_error", "internal_error"),
        (
            BedrockNotFound("guardrail gr-1 not found", code="ResourceNotFoundException"),
            500,
            "server_error",
            "internal_error",
        ),
        (BedrockUnavailable("down", code="ServiceUnavailableException"), 503, "server_error", "service_unavailable"),
        (BedrockTimeout("slow", code="ModelTimeoutException"), 504, "timeout", "timeout"),
        (BedrockModelError("broken", code="ModelErrorException"), 502, "server_error", "upstream_error"),
        (BedrockServerError("oops", code="InternalServerException"), 502, "server_error", "upstream_error"),
        (BedrockError("who knows", code="SomethingNew"), 502, "server_error", "upstream_error"),
    ],
)
def test_bedrock_errors_map_once(error: BedrockError, status: int, openai_type: str, code: str) -> None:
    chat_error = from_bedrock(error)
    assert (chat_error.status, chat_error.openai_type, chat_error.code) == (status, openai_type, code)


@pytest.mark.row(7)
def test_rate_limits_carry_retry_after() -> None:
    assert from_bedrock(BedrockThrottled(retry_after=7)).headers() == {"Retry-After": "7"}
    assert from_bedrock(BedrockThrottled()).headers() == {"Retry-After": "1"}
    assert RateLimited("x", retry_after=0).headers() == {"Retry-After": "1"}


@pytest.mark.row(10)
def test_access_errors_are_generic() -> None:
    chat_error = from_bedrock(BedrockAccessDenied(ARN_MESSAGE))
    assert "arn:" not in chat_error.message
    assert "123456789012" not in chat_error.message
    assert "InvokeModel" not in chat_error.message


def test_bedrock_validation_messages_are_redacted() -> None:
    chat_error = from_bedrock(
        BedrockValidation("guardrail arn:aws:bedrock:us-east-1:123456789012:guardrail/gr1 is invalid")
    )
    assert "arn:" not in chat_error.message
    assert "123456789012" not in chat_error.message
    assert "<arn>" in chat_error.message


def test_redact() -> None:
    assert redact(ARN_MESSAGE).count("<arn>") == 2
    assert redact("account 123456789012 denied") == "account <account> denied"
    assert redact("maxTokens 1234567890123 is too large") == "maxTokens 1234567890123 is too large"


def test_method_not_allowed_names_the_methods() -> None:
    assert MethodNotAllowed("no", allow=["GET", "HEAD"]).headers() == {"Allow": "GET, HEAD"}


def test_anything_unexpected_is_a_generic_500() -> None:
    error = to_chat_error(KeyError("messages[0] contained my secret prompt"))
    assert (error.status, error.openai_type) == (500, "server_error")
    assert "secret" not in error.message


def test_to_chat_error_keeps_chat_errors_and_maps_the_rest() -> None:
    original = ChatError("x")
    assert to_chat_error(original) is original
    assert to_chat_error(BedrockTimeout()).status == 504
    # Request validation errors are ChatErrors already (chat/edge.py raises from_validation's), kept as they are.
    validation = from_validation([{"type": "missing", "loc": ("body", "model"), "msg": "Field required"}])
    assert to_chat_error(validation) is validation
    assert validation.param == "model"
