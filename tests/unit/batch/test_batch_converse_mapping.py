"""Batch modelInput -> Converse request (valid per the botocore model), Converse reply -> batch modelOutput."""

from __future__ import annotations

import json
from typing import Any

import botocore.session
import pytest
from botocore.validate import validate_parameters

from batch.converse_mapping import batch_error, chat_completion, converse_request
from batch.results import parse_line
from shared.converse import ConverseReply
from shared.errors import (
    BedrockAccessDenied,
    BedrockError,
    BedrockModelError,
    BedrockModelNotReady,
    BedrockThrottled,
    BedrockTimeout,
    BedrockValidation,
)

MODEL = "openai.gpt-oss-120b-1:0"
CONVERSE = botocore.session.get_session().get_service_model("bedrock-runtime").operation_model("Converse").input_shape


def _request(model_input: dict[str, Any]) -> dict[str, Any]:
    request = converse_request(model_input, model_id=MODEL, guardrail_id="gr-1", guardrail_version="3")
    assert CONVERSE is not None
    validate_parameters(request, CONVERSE)  # raises ParamValidationError on any wrong field
    return request


def test_a_full_record_maps_to_a_valid_guarded_converse_request() -> None:
    request = _request(
        {
            "messages": [
                {"role": "system", "content": "rules"},
                {"role": "user", "content": "a"},
                {"role": "user", "content": "b"},
                {"role": "assistant", "content": "c"},
                {"role": "user", "content": "d"},
            ],
            "max_completion_tokens": 512,
            "temperature": 0.3,
            "top_p": 0.8,
            "stop": "END",
            "reasoning_effort": "high",
        }
    )
    assert request == {
        "modelId": MODEL,
        "system": [{"text": "rules"}],
        "messages": [
            {"role": "user", "content": [{"text": "a"}, {"text": "b"}]},
            {"role": "assistant", "content": [{"text": "c"}]},
            {"role": "user", "content": [{"text": "d"}]},
        ],
        "inferenceConfig": {"maxTokens": 512, "temperature": 0.3, "topP": 0.8, "stopSequences": ["END"]},
        "additionalModelRequestFields": {"reasoning_effort": "high"},
        "guardrailConfig": {"guardrailIdentifier": "gr-1", "guardrailVersion": "3"},
    }


def test_a_minimal_record() -> None:
    request = _request({"messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 10})
    assert set(request) == {"modelId", "messages", "inferenceConfig", "guardrailConfig"}
    assert request["inferenceConfig"] == {"maxTokens": 10}


def _reply(stop_reason: str = "end_turn", reasoning: str | None = "why") -> ConverseReply:
    content: list[dict[str, Any]] = [{"reasoningContent": {"reasoningText": {"text": reasoning}}}] if reasoning else []
    content.append({"text": "Answer."})
    return ConverseReply.model_validate(
        {
            "output": {"message": {"role": "assistant", "content": content}},
            "stopReason": stop_reason,
            "usage": {"inputTokens": 5, "outputTokens": 9, "totalTokens": 14},
        }
    )


def test_a_reply_becomes_the_model_output_a_batch_job_writes() -> None:
    output = chat_completion(_reply(), model_id=MODEL, record_id="R00000000001")
    assert output["object"] == "chat.completion"
    assert output["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "<reasoning>why</reasoning>Answer."},
            "finish_reason": "stop",
        }
    ]
    assert output["usage"] == {"prompt_tokens": 5, "completion_tokens": 9, "total_tokens": 14}
    parsed = parse_line(json.dumps({"recordId": "R00000000001", "modelOutput": output}).encode())
    assert parsed is not None
    assert (parsed.reasoning, parsed.answer, parsed.finish_reason) == ("why", "Answer.", "stop")


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [("max_tokens", "length"), ("guardrail_intervened", "content_filter"), ("stop_sequence", "stop")],
)
def test_stop_reasons(stop_reason: str, finish: str) -> None:
    output = chat_completion(_reply(stop_reason, None), model_id=MODEL, record_id="R1")
    assert output["choices"][0]["finish_reason"] == finish
    assert output["choices"][0]["message"]["content"] == "Answer."


def test_malformed_output_raises() -> None:
    with pytest.raises(BedrockModelError):
        chat_completion(_reply("malformed_model_output"), model_id=MODEL, record_id="R1")


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (BedrockThrottled("x", code="ThrottlingException"), 429),
        (BedrockModelNotReady("x", code="ModelNotReadyException"), 429),
        (BedrockTimeout("x", code="ModelTimeoutException"), 408),
        (BedrockValidation("arn:aws:bedrock:us-east-1:123456789012:secret", code="ValidationException"), 400),
        (BedrockAccessDenied("x", code="AccessDeniedException"), 403),
        (BedrockError("x", code="Weird"), 500),
    ],
)
def test_failures_become_batch_error_objects_without_bedrock_s_text(error: BedrockError, code: int) -> None:
    result = batch_error(error)
    assert result["errorCode"] == code
    assert result["errorMessage"].startswith(f"{error.code}: ")
    assert "123456789012" not in result["errorMessage"]
