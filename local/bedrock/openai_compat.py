"""A model backend that asks any OpenAI-compatible server (Ollama, vLLM, LM Studio, llama.cpp, ...).

Requests go out as plain chat completions (not streamed, `max_tokens` rather than `max_completion_tokens`:
every such server reads it). Reasoning comes back in a `reasoning_content` or `reasoning` field, or as
`<reasoning>...</reasoning>` text before the answer; all three become the Generation's reasoning.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from local.bedrock.shapes import Generation, ModelError, StopReason, ToolCall, message_text, prompt_tokens
from shared.gpt_oss import estimate_tokens, split_reasoning

_STOP_REASONS: Mapping[str, StopReason] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "content_filtered",
}
# What each upstream HTTP status means to a Bedrock caller.
_UPSTREAM_ERRORS: Mapping[int, str] = {
    400: "ValidationException",
    401: "AccessDeniedException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    408: "ModelTimeoutException",
    413: "ValidationException",
    422: "ValidationException",
    429: "ThrottlingException",
}
# Fields that only make sense between our callers and us, never upstream.
_NOT_FORWARDED = frozenset({"model", "stream", "stream_options", "max_completion_tokens", "max_tokens"})


@dataclass(frozen=True)
class OpenAIServer:
    """Where an OpenAI-compatible server is, and which of its models answers for each Bedrock model id."""

    base_url: str
    api_key: str | None = None
    # The upstream model for every Bedrock id without its own entry in `models`; None sends the id itself.
    model: str | None = None
    models: Mapping[str, str] = field(default_factory=dict)
    timeout_seconds: float = 300.0

    def upstream_model(self, model_id: str) -> str:
        """The upstream model name that answers for a Bedrock model id."""
        return self.models.get(model_id) or self.model or model_id


class OpenAICompatibleModel:
    """Answers chat bodies through an OpenAI-compatible server's `POST /chat/completions`."""

    def __init__(self, server: OpenAIServer, *, transport: httpx.BaseTransport | None = None) -> None:
        self.server = server
        headers = {"Authorization": f"Bearer {server.api_key}"} if server.api_key else {}
        self._client = httpx.Client(
            base_url=server.base_url.rstrip("/") + "/",
            headers=headers,
            timeout=server.timeout_seconds,
            transport=transport,
        )

    def close(self) -> None:
        """Close the HTTP connections."""
        self._client.close()

    def generate(self, body: Mapping[str, Any], *, model_id: str) -> Generation:
        """Answer an OpenAI chat body with the upstream model mapped to `model_id`.

        Raises:
            ModelError: the server is unreachable, too slow, refused the request or answered nonsense.
        """
        request = {name: value for name, value in body.items() if name not in _NOT_FORWARDED}
        request["model"] = self.server.upstream_model(model_id)
        request["stream"] = False
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        if max_tokens is not None:
            request["max_tokens"] = max_tokens
        started = time.monotonic()
        completion = self._post(request)
        latency_ms = round((time.monotonic() - started) * 1000)
        return _generation(completion, body, latency_ms)

    def _post(self, request: Mapping[str, Any]) -> Mapping[str, Any]:
        where = self.server.base_url
        try:
            response = self._client.post("chat/completions", json=request)
        except httpx.TimeoutException as error:
            raise ModelError("ModelTimeoutException", f"no answer from {where} in time ({error})") from error
        except httpx.HTTPError as error:
            raise ModelError("ServiceUnavailableException", f"cannot reach {where}: {error}") from error
        if response.status_code >= 400:
            code = _UPSTREAM_ERRORS.get(response.status_code)
            code = code or ("ServiceUnavailableException" if response.status_code >= 500 else "ValidationException")
            raise ModelError(code, f"{where} answered {response.status_code}: {_detail(response)}")
        try:
            completion = response.json()
        except ValueError:
            raise ModelError("ModelErrorException", f"{where} answered with something other than JSON") from None
        if not isinstance(completion, Mapping):
            raise ModelError("ModelErrorException", f"{where} answered with JSON that is not a chat completion")
        return completion


def _detail(response: httpx.Response) -> str:
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = response.text
    return str(message)[:300]


def _generation(completion: Mapping[str, Any], body: Mapping[str, Any], latency_ms: int) -> Generation:
    try:
        choice = completion["choices"][0]
        message = choice["message"]
    except (KeyError, IndexError, TypeError):
        raise ModelError("ModelErrorException", "the chat completion has no choices[0].message") from None
    split = split_reasoning(message_text(message))
    separate = message.get("reasoning_content") or message.get("reasoning") or ""
    reasoning = "\n\n".join(part for part in (str(separate).strip(), split.reasoning or "") if part)
    calls, malformed = _tool_calls(message.get("tool_calls") or ())
    stop_reason = _STOP_REASONS.get(str(choice.get("finish_reason")), "end_turn")
    if malformed:
        stop_reason, calls = "malformed_tool_use", ()
    elif calls:
        stop_reason = "tool_use"
    counted = completion.get("usage") or {}
    input_tokens = counted.get("prompt_tokens")
    output_tokens = counted.get("completion_tokens")
    return Generation(
        answer=split.answer,
        reasoning=reasoning,
        tool_calls=calls,
        stop_reason=stop_reason,
        input_tokens=input_tokens if isinstance(input_tokens, int) else prompt_tokens(body),
        output_tokens=(
            output_tokens
            if isinstance(output_tokens, int)
            else max(1, estimate_tokens(len(reasoning) + len(split.answer)))
        ),
        latency_ms=latency_ms,
    )


def _tool_calls(raw: Any) -> tuple[tuple[ToolCall, ...], bool]:
    """The tool calls of a message, and whether any was malformed (arguments that are not a JSON object)."""
    calls: list[ToolCall] = []
    for call in raw:
        try:
            function = call["function"]
            arguments = json.loads(function.get("arguments") or "{}")
            name = str(function["name"])
        except (KeyError, TypeError, ValueError):
            return (), True
        if not isinstance(arguments, dict):
            return (), True
        calls.append(ToolCall(id=str(call.get("id") or f"call_{len(calls)}"), name=name, arguments=arguments))
    return tuple(calls), False
