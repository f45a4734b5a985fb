"""Wire shapes of the Bedrock stand-in: one neutral answer (`Generation`), and Converse / OpenAI on either side.

Every backend answers an OpenAI chat body with a `Generation`; from it come the Converse response (what
the chat function reads) and the chat.completion that InvokeModel and batch jobs write for gpt-oss.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from shared.eventstream import CONVERSE_STREAM_EXCEPTIONS
from shared.gpt_oss import estimate_tokens

StopReason = Literal["end_turn", "max_tokens", "stop_sequence", "tool_use", "content_filtered", "malformed_tool_use"]

# Bedrock's error codes (x-amzn-ErrorType) and the HTTP status each comes with.
ERROR_STATUS: Mapping[str, int] = {
    "ValidationException": 400,
    "ConflictException": 400,
    "ServiceQuotaExceededException": 400,
    "AccessDeniedException": 403,
    "ResourceNotFoundException": 404,
    "ModelTimeoutException": 408,
    "ModelErrorException": 424,
    "ModelStreamErrorException": 424,
    "ThrottlingException": 429,
    "InternalServerException": 500,
    "ServiceUnavailableException": 503,
    "UnknownOperationException": 404,
}

# How InvokeModel (and batch output) for gpt-oss reports each stop reason.
_FINISH_REASONS: Mapping[StopReason, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "content_filtered": "content_filter",
    "malformed_tool_use": "stop",
}


class ModelError(Exception):
    """A call failed the way Bedrock reports it: an error code (one of ERROR_STATUS) and a message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = ERROR_STATUS.get(code, 500)

    def stream_event(self) -> dict[str, Any]:
        """The exception event a ConverseStream ends with when this error happens after the stream started.

        The stream's exception members are the codes with a lower-case initial; any other failure of the model
        (a timeout, a broken upstream) is a `modelStreamErrorException`.
        """
        member = self.code[:1].lower() + self.code[1:]
        if member not in CONVERSE_STREAM_EXCEPTIONS:
            member = "modelStreamErrorException"
        return {member: {"message": self.message}}


@dataclass(frozen=True)
class ToolCall:
    """A tool the model asks the caller to run, with its arguments."""

    id: str
    name: str
    arguments: Mapping[str, Any]


@dataclass(frozen=True)
class Generation:
    """One model answer, independent of the API that asked for it."""

    answer: str
    reasoning: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    stop_reason: StopReason = "end_turn"
    input_tokens: int = 0
    output_tokens: int = 0
    latency_ms: int = 0


@dataclass(frozen=True)
class ReasoningDelta:
    """A piece of the model's reasoning."""

    text: str


@dataclass(frozen=True)
class TextDelta:
    """A piece of the answer."""

    text: str


@dataclass(frozen=True)
class ToolUseStart:
    """The model begins a tool call; `ToolUseDelta`s with its input follow."""

    id: str
    name: str


@dataclass(frozen=True)
class ToolUseDelta:
    """A piece of the JSON text of the current tool call's input."""

    input: str


@dataclass(frozen=True)
class Finish:
    """The end of a streamed generation: why it stopped, and what it counted."""

    stop_reason: StopReason
    input_tokens: int
    output_tokens: int
    latency_ms: int


# One step of a streamed generation; a stream ends with exactly one Finish.
Delta = ReasoningDelta | TextDelta | ToolUseStart | ToolUseDelta | Finish


def characters(delta: Delta) -> int:
    """How many characters of generated text (reasoning, answer or tool input) a delta carries."""
    if isinstance(delta, ReasoningDelta | TextDelta):
        return len(delta.text)
    return len(delta.input) if isinstance(delta, ToolUseDelta) else 0


# A word and the whitespace after it (whitespace before the first word stays with it).
_PIECE = re.compile(r"\s*\S+\s*|\s+")


def pieces(text: str) -> list[str]:
    """The text cut into word pieces, the spaces kept: joined, they give the text back."""
    return _PIECE.findall(text)


def generation_deltas(generation: Generation) -> Iterator[Delta]:
    """A whole generation as a stream brings it: reasoning, answer and tool-call inputs piece by piece, then the end."""
    yield from (ReasoningDelta(piece) for piece in pieces(generation.reasoning))
    yield from (TextDelta(piece) for piece in pieces(generation.answer))
    for call in generation.tool_calls:
        yield ToolUseStart(call.id, call.name)
        yield from (ToolUseDelta(piece) for piece in pieces(json.dumps(dict(call.arguments))))
    yield Finish(generation.stop_reason, generation.input_tokens, generation.output_tokens, generation.latency_ms)


class StreamEvents:
    """The ConverseStream events of one assistant message built piece by piece, in botocore's output shape.

    It numbers the content blocks and opens and closes them as the kind of content changes: reasoning and
    text blocks start with their first delta, a tool use with a `contentBlockStart` naming the tool; every
    block ends with a `contentBlockStop`. The `metadata` event names the service tier the request asked for, if any.
    """

    def __init__(self, service_tier: Mapping[str, Any] | None = None) -> None:
        self._index = -1
        self._open: Literal["reasoning", "text", "tool"] | None = None
        self._service_tier = service_tier

    @staticmethod
    def start() -> list[dict[str, Any]]:
        """The message's first event."""
        return [{"messageStart": {"role": "assistant"}}]

    def reasoning(self, text: str) -> list[dict[str, Any]]:
        """A piece of reasoning (in a reasoning block of its own)."""
        return self._delta("reasoning", {"reasoningContent": {"text": text}})

    def text(self, text: str) -> list[dict[str, Any]]:
        """A piece of the answer."""
        return self._delta("text", {"text": text})

    def tool_use(self, tool_use_id: str, name: str) -> list[dict[str, Any]]:
        """The start of a tool call's block."""
        events = self._close()
        self._index += 1
        self._open = "tool"
        start = {"toolUse": {"toolUseId": tool_use_id, "name": name}}
        return [*events, {"contentBlockStart": {"start": start, "contentBlockIndex": self._index}}]

    def tool_input(self, piece: str) -> list[dict[str, Any]]:
        """A piece of the current tool call's input JSON.

        Raises:
            ValueError: no tool call is open.
        """
        if self._open != "tool":
            raise ValueError("tool input arrived outside a tool call")
        return [{"contentBlockDelta": {"delta": {"toolUse": {"input": piece}}, "contentBlockIndex": self._index}}]

    def stop(
        self,
        stop_reason: str,
        *,
        input_tokens: int,
        output_tokens: int,
        latency_ms: int,
        trace: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """The last events: the open block's stop, `messageStop` and `metadata` (usage, metrics, any trace)."""
        metadata: dict[str, Any] = {"usage": usage(input_tokens, output_tokens), "metrics": {"latencyMs": latency_ms}}
        if trace is not None:
            metadata["trace"] = dict(trace)
        if self._service_tier is not None:
            metadata["serviceTier"] = dict(self._service_tier)
        return [*self._close(), {"messageStop": {"stopReason": stop_reason}}, {"metadata": metadata}]

    def _delta(self, kind: Literal["reasoning", "text"], delta: dict[str, Any]) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        if self._open != kind:
            events = self._close()
            self._index += 1
            self._open = kind
        return [*events, {"contentBlockDelta": {"delta": delta, "contentBlockIndex": self._index}}]

    def _close(self) -> list[dict[str, Any]]:
        if self._open is None:
            return []
        self._open = None
        return [{"contentBlockStop": {"contentBlockIndex": self._index}}]


def chat_body(request: Mapping[str, Any]) -> dict[str, Any]:
    """The OpenAI chat body that asks what a Converse request asks (no `model`: the caller knows the id)."""
    messages: list[dict[str, Any]] = []
    system = "\n\n".join(text for block in request.get("system", ()) if (text := _block_text(block)) is not None)
    if system:
        messages.append({"role": "system", "content": system})
    for turn in request.get("messages", ()):
        messages.extend(_chat_messages(turn))
    body: dict[str, Any] = {"messages": messages}
    inference = request.get("inferenceConfig") or {}
    for converse_name, openai_name in (
        ("maxTokens", "max_completion_tokens"),
        ("temperature", "temperature"),
        ("topP", "top_p"),
        ("stopSequences", "stop"),
    ):
        if converse_name in inference:
            body[openai_name] = inference[converse_name]
    body.update(_tools(request.get("toolConfig")))
    response_format = _response_format(request.get("outputConfig"))
    if response_format:
        body["response_format"] = response_format
    # gpt-oss reads the OpenAI fields Converse has no slot for (reasoning_effort, seed, ...) from here.
    for name, value in (request.get("additionalModelRequestFields") or {}).items():
        body.setdefault(name, value)
    return body


def _block_text(block: Mapping[str, Any]) -> str | None:
    if "text" in block:
        return str(block["text"])
    guarded = block.get("guardContent", {}).get("text")
    return str(guarded["text"]) if guarded else None


def _chat_messages(turn: Mapping[str, Any]) -> list[dict[str, Any]]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for block in turn["content"]:
        text = _block_text(block)
        if text is not None:
            texts.append(text)
        elif "toolUse" in block:
            use = block["toolUse"]
            arguments = json.dumps(use.get("input", {}))
            calls.append(
                {"id": use["toolUseId"], "type": "function", "function": {"name": use["name"], "arguments": arguments}}
            )
        elif "toolResult" in block:
            result = block["toolResult"]
            content = "".join(
                part["text"] if "text" in part else json.dumps(part.get("json")) for part in result.get("content", ())
            )
            results.append({"role": "tool", "tool_call_id": result["toolUseId"], "content": content})
        # Reasoning blocks are never read again by the model; other block kinds do not occur for gpt-oss.
    if turn["role"] == "assistant":
        message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
        if calls:
            message["tool_calls"] = calls
        return [message]
    return results + ([{"role": "user", "content": "\n".join(texts)}] if texts else [])


def _tools(config: Mapping[str, Any] | None) -> dict[str, Any]:
    if not config:
        return {}
    tools = []
    for tool in config.get("tools", ()):
        spec = tool["toolSpec"]
        function = {"name": spec["name"], "parameters": spec.get("inputSchema", {}).get("json", {})}
        if "description" in spec:
            function["description"] = spec["description"]
        tools.append({"type": "function", "function": function})
    choice = config.get("toolChoice") or {"auto": {}}
    if "tool" in choice:
        return {"tools": tools, "tool_choice": {"type": "function", "function": {"name": choice["tool"]["name"]}}}
    return {"tools": tools, "tool_choice": "required" if "any" in choice else "auto"}


def _response_format(config: Mapping[str, Any] | None) -> dict[str, Any] | None:
    schema = ((config or {}).get("textFormat") or {}).get("structure", {}).get("jsonSchema")
    if not schema:
        return None
    json_schema = {"name": schema.get("name", "answer"), "schema": json.loads(schema["schema"])}
    if "description" in schema:
        json_schema["description"] = schema["description"]
    return {"type": "json_schema", "json_schema": json_schema}


def converse_response(generation: Generation) -> dict[str, Any]:
    """A Converse response body: reasoning first, then the answer and any tool calls."""
    content: list[dict[str, Any]] = []
    if generation.reasoning:
        content.append({"reasoningContent": {"reasoningText": {"text": generation.reasoning}}})
    if generation.answer or not generation.tool_calls:
        content.append({"text": generation.answer})
    content.extend(
        {"toolUse": {"toolUseId": call.id, "name": call.name, "input": dict(call.arguments)}}
        for call in generation.tool_calls
    )
    return {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": generation.stop_reason,
        "usage": usage(generation.input_tokens, generation.output_tokens),
        "metrics": {"latencyMs": generation.latency_ms},
    }


def service_tier(request: Mapping[str, Any]) -> dict[str, str] | None:
    """The service tier a Converse(Stream) answer reports: the one the request asked for, or none if it asked none."""
    asked = request.get("serviceTier")
    return None if asked is None else {"type": str(asked["type"])}


def usage(input_tokens: int, output_tokens: int) -> dict[str, int]:
    """Converse's token usage."""
    return {"inputTokens": input_tokens, "outputTokens": output_tokens, "totalTokens": input_tokens + output_tokens}


def chat_completion(generation: Generation, *, model_id: str, completion_id: str, created: int) -> dict[str, Any]:
    """The chat.completion InvokeModel returns for gpt-oss: reasoning inline in `<reasoning>` before the answer."""
    content = (
        f"<reasoning>{generation.reasoning}</reasoning>{generation.answer}"
        if generation.reasoning
        else generation.answer
    )
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if generation.tool_calls:
        message["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
            }
            for call in generation.tool_calls
        ]
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model_id,
        "choices": [{"index": 0, "message": message, "finish_reason": _FINISH_REASONS[generation.stop_reason]}],
        "usage": {
            "prompt_tokens": generation.input_tokens,
            "completion_tokens": generation.output_tokens,
            "total_tokens": generation.input_tokens + generation.output_tokens,
        },
    }


def message_text(message: Mapping[str, Any]) -> str:
    """The text of an OpenAI message (a string, or the text of its text parts)."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, Mapping))
    return ""


def prompt_tokens(body: Mapping[str, Any]) -> int:
    """A deterministic estimate of the prompt's tokens: its text, tool calls and tool definitions."""
    messages = body.get("messages", ())
    characters = sum(len(message_text(message)) for message in messages)
    characters += sum(len(json.dumps(message["tool_calls"])) for message in messages if message.get("tool_calls"))
    characters += len(json.dumps(body["tools"])) if body.get("tools") else 0
    return max(1, estimate_tokens(characters))
