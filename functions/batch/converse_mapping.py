"""A batch record's modelInput <-> Converse, for records run on demand (pure).

Deliberately small: the converter only lets through text messages (system/user/assistant, content as
one string) and `max_completion_tokens`, `temperature`, `top_p`, `stop`, `reasoning_effort`, so this is
all the translation those records need. The reply goes back into the shape Bedrock batch output uses
for gpt-oss (an OpenAI chat.completion whose content starts with `<reasoning>...</reasoning>`, as
InvokeModel returns it), so one parser reads batch and on-demand output alike.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from shared.converse import ConverseReply
from shared.errors import (
    BedrockAccessDenied,
    BedrockError,
    BedrockModelError,
    BedrockNotFound,
    BedrockServerError,
    BedrockThrottled,
    BedrockTimeout,
    BedrockUnavailable,
    BedrockValidation,
)
from shared.gpt_oss import finish_reason

# Batch output `error.errorCode` values are HTTP-like status numbers; on-demand failures use the same.
_ERROR_CODES: tuple[tuple[type[BedrockError], int, str], ...] = (
    (BedrockThrottled, 429, "Bedrock throttled the request"),
    (BedrockTimeout, 408, "no answer in time"),
    (BedrockValidation, 400, "Bedrock rejected the request as invalid"),
    (BedrockAccessDenied, 403, "the pipeline may not use the model or the guardrail"),
    (BedrockNotFound, 404, "the model or the guardrail was not found"),
    (BedrockModelError, 424, "the model failed or returned unusable output"),
    (BedrockUnavailable, 503, "Bedrock was unavailable"),
    (BedrockServerError, 500, "Bedrock failed"),
)


def converse_request(
    model_input: Mapping[str, Any], *, model_id: str, guardrail_id: str, guardrail_version: str
) -> dict[str, Any]:
    """Keyword arguments of Converse for one record, always with the pipeline's guardrail."""
    system = [{"text": m["content"]} for m in model_input["messages"] if m["role"] == "system"]
    messages: list[dict[str, Any]] = []
    for message in model_input["messages"]:
        if message["role"] == "system":
            continue
        if messages and messages[-1]["role"] == message["role"]:  # Converse wants alternating turns
            messages[-1]["content"].append({"text": message["content"]})
        else:
            messages.append({"role": message["role"], "content": [{"text": message["content"]}]})
    inference: dict[str, Any] = {"maxTokens": model_input["max_completion_tokens"]}
    if "temperature" in model_input:
        inference["temperature"] = model_input["temperature"]
    if "top_p" in model_input:
        inference["topP"] = model_input["top_p"]
    if "stop" in model_input:
        stop = model_input["stop"]
        inference["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    request: dict[str, Any] = {"modelId": model_id, "messages": messages, "inferenceConfig": inference}
    if system:
        request["system"] = system
    if "reasoning_effort" in model_input:
        request["additionalModelRequestFields"] = {"reasoning_effort": model_input["reasoning_effort"]}
    request["guardrailConfig"] = {"guardrailIdentifier": guardrail_id, "guardrailVersion": guardrail_version}
    return request


def chat_completion(reply: ConverseReply, *, model_id: str, record_id: str) -> dict[str, Any]:
    """The Converse reply as the modelOutput a batch job would have written.

    Raises:
        BedrockModelError: the stop reason says the output is malformed or is unknown.
    """
    reason = finish_reason(reply.stop_reason)
    answer = "".join(block.text for block in reply.content if block.text)
    thoughts = [
        block.reasoning_content.reasoning_text.text
        for block in reply.content
        if block.reasoning_content and block.reasoning_content.reasoning_text
    ]
    reasoning = "\n\n".join(text for text in thoughts if text)
    content = f"<reasoning>{reasoning}</reasoning>{answer}" if reasoning else answer
    return {
        "id": f"ondemand-{record_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model_id,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": reason}],
        "usage": {
            "prompt_tokens": reply.usage.input_tokens,
            "completion_tokens": reply.usage.output_tokens,
            "total_tokens": reply.usage.total_tokens,
        },
    }


def batch_error(error: BedrockError) -> dict[str, Any]:
    """The `error` object of a batch output line for a failed call.

    Bedrock's own message is not copied (it can name ARNs or accounts): the code says what happened.
    """
    for kind, status, text in _ERROR_CODES:
        if isinstance(error, kind):
            return {"errorCode": status, "errorMessage": f"{error.code}: {text}"}
    return {"errorCode": 500, "errorMessage": f"{error.code}: the call failed"}
