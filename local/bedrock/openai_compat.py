"""A model backend that asks any OpenAI-compatible server (Ollama, vLLM, LM Studio, llama.cpp, ...).

Requests go out as chat completions with `max_tokens` rather than `max_completion_tokens` (every such server
reads it): whole for Converse and batch records, streamed (`stream: true`, server-sent events, usage asked
for with `stream_options.include_usage`) for ConverseStream. Reasoning comes back in a `reasoning_content`
or `reasoning` field, or as `<reasoning>...</reasoning>` text before the answer; all three become reasoning.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from local.bedrock.shapes import (
    Delta,
    Finish,
    Generation,
    ModelError,
    ReasoningDelta,
    StopReason,
    TextDelta,
    ToolCall,
    ToolUseDelta,
    ToolUseStart,
    characters,
    message_text,
    prompt_tokens,
)
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
    """Answers chat bodies through an OpenAI-compatible server's `POST /chat/completions`, whole or streamed."""

    def __init__(self, server: OpenAIServer) -> None:
        self.server = server
        headers = {"Authorization": f"Bearer {server.api_key}"} if server.api_key else {}
        self._client = httpx.Client(
            base_url=server.base_url.rstrip("/") + "/",
            headers=headers,
            timeout=server.timeout_seconds,
        )

    def close(self) -> None:
        """Close the HTTP connections."""
        self._client.close()

    def generate(self, body: Mapping[str, Any], *, model_id: str) -> Generation:
        """Answer an OpenAI chat body with the upstream model mapped to `model_id`.

        Raises:
            ModelError: the server is unreachable, too slow, refused the request or answered nonsense.
        """
        request = self._request(body, model_id, stream=False)
        started = time.monotonic()
        completion = self._post(request)
        latency_ms = round((time.monotonic() - started) * 1000)
        return _generation(completion, body, latency_ms)

    def stream(self, body: Mapping[str, Any], *, model_id: str) -> Iterator[Delta]:
        """Stream the answer from the server as it generates it; closing the iterator closes the connection.

        Raises:
            ModelError: the server is unreachable, too slow or refused the request (before the first piece),
                or the stream broke or carried nonsense (`ModelStreamErrorException`, part-way).
        """
        request = self._request(body, model_id, stream=True)
        where = self.server.base_url
        started = time.monotonic()
        reader = _StreamReader(body, where)
        try:
            with self._client.stream("POST", "chat/completions", json=request) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _refused(response, where)
                yield from reader.read(response.iter_lines())
                yield reader.finish(round((time.monotonic() - started) * 1000))
        except httpx.HTTPError as error:
            if reader.started:
                raise ModelError("ModelStreamErrorException", f"the stream from {where} broke: {error}") from error
            raise _unreachable(error, where) from error

    def _request(self, body: Mapping[str, Any], model_id: str, *, stream: bool) -> dict[str, Any]:
        request = {name: value for name, value in body.items() if name not in _NOT_FORWARDED}
        request["model"] = self.server.upstream_model(model_id)
        request["stream"] = stream
        if stream:
            request["stream_options"] = {"include_usage": True}
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        if max_tokens is not None:
            request["max_tokens"] = max_tokens
        return request

    def _post(self, request: Mapping[str, Any]) -> Mapping[str, Any]:
        where = self.server.base_url
        try:
            response = self._client.post("chat/completions", json=request)
        except httpx.HTTPError as error:
            raise _unreachable(error, where) from error
        if response.status_code >= 400:
            raise _refused(response, where)
        try:
            completion = response.json()
        except ValueError:
            raise ModelError("ModelErrorException", f"{where} answered with something other than JSON") from None
        if not isinstance(completion, Mapping):
            raise ModelError("ModelErrorException", f"{where} answered with JSON that is not a chat completion")
        return completion


def _unreachable(error: httpx.HTTPError, where: str) -> ModelError:
    if isinstance(error, httpx.TimeoutException):
        return ModelError("ModelTimeoutException", f"no answer from {where} in time ({error})")
    return ModelError("ServiceUnavailableException", f"cannot reach {where}: {error}")


def _refused(response: httpx.Response, where: str) -> ModelError:
    code = _UPSTREAM_ERRORS.get(response.status_code)
    code = code or ("ServiceUnavailableException" if response.status_code >= 500 else "ValidationException")
    return ModelError(code, f"{where} answered {response.status_code}: {_detail(response)}")


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
    counted = completion.get("usage") or {}
    return Generation(
        answer=split.answer,
        reasoning=reasoning,
        tool_calls=calls,
        stop_reason=_stop_reason(choice.get("finish_reason"), calls=bool(calls), malformed=malformed),
        input_tokens=_counted(counted, "prompt_tokens", prompt_tokens(body)),
        output_tokens=_counted(counted, "completion_tokens", estimate_tokens(len(reasoning) + len(split.answer))),
        latency_ms=latency_ms,
    )


def _stop_reason(finish_reason: Any, *, calls: bool, malformed: bool) -> StopReason:
    """Bedrock's stop reason: tool calls, well-formed or not, decide it over the server's finish reason."""
    if malformed:
        return "malformed_tool_use"
    return "tool_use" if calls else _STOP_REASONS.get(str(finish_reason), "end_turn")


def _counted(usage: Mapping[str, Any], name: str, estimate: int) -> int:
    """A token count from the server's usage, else the estimate (at least 1): not every server reports usage."""
    count = usage.get(name)
    return count if isinstance(count, int) else max(1, estimate)


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


class _StreamReader:
    """Turns a chat.completion.chunk stream (server-sent event lines) into deltas, and remembers how it ended."""

    def __init__(self, body: Mapping[str, Any], where: str) -> None:
        self.started = False
        self._body = body
        self._where = where
        self._inline = _InlineReasoning()
        self._calls: dict[int, _StreamedCall] = {}
        self._finish_reason: str | None = None
        self._usage: Mapping[str, Any] = {}
        self._characters = 0

    def read(self, lines: Iterable[str]) -> Iterator[Delta]:
        """The deltas of the stream's `data:` lines, up to `[DONE]` (or the end of the stream)."""
        for line in lines:
            if not line.startswith("data:"):
                continue  # blank lines end events; `event:`, `id:` and `:` comments carry nothing we use
            data = line[len("data:") :].strip()
            if data == "[DONE]":
                break
            for delta in self._chunk(data):
                self.started = True
                yield delta
        for delta in self._inline.flush():
            self._characters += characters(delta)
            yield delta

    def finish(self, latency_ms: int) -> Finish:
        """The end of the stream: its stop reason and usage (estimated when the server sent none).

        Raises:
            ModelError: the stream ended without a finish reason: the server went away mid-answer.
        """
        if self._finish_reason is None:
            raise ModelError("ModelStreamErrorException", f"the stream from {self._where} ended before the answer did")
        malformed = any(not call.is_valid() for call in self._calls.values())
        return Finish(
            stop_reason=_stop_reason(self._finish_reason, calls=bool(self._calls), malformed=malformed),
            input_tokens=_counted(self._usage, "prompt_tokens", prompt_tokens(self._body)),
            output_tokens=_counted(self._usage, "completion_tokens", estimate_tokens(self._characters)),
            latency_ms=latency_ms,
        )

    def _chunk(self, data: str) -> Iterator[Delta]:
        try:
            chunk = json.loads(data)
            if "error" in chunk:
                raise ModelError("ModelStreamErrorException", f"{self._where} failed: {str(chunk['error'])[:300]}")
            choices = chunk.get("choices") or []
            self._usage = chunk.get("usage") or self._usage
        except (ValueError, AttributeError, TypeError):
            raise ModelError(
                "ModelStreamErrorException", f"{self._where} streamed something other than chunks"
            ) from None
        for choice in choices[:1]:
            delta = choice.get("delta") or {}
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            deltas: list[Delta] = [ReasoningDelta(str(reasoning))] if reasoning else []
            deltas += self._inline.feed(str(delta.get("content") or ""))
            for call in delta.get("tool_calls") or ():
                deltas += self._tool_call(call)
            self._finish_reason = choice.get("finish_reason") or self._finish_reason
            self._characters += sum(characters(item) for item in deltas)
            yield from deltas

    def _tool_call(self, raw: Mapping[str, Any]) -> list[Delta]:
        index = int(raw.get("index", len(self._calls)))
        function = raw.get("function") or {}
        call = self._calls.setdefault(index, _StreamedCall(index))
        return call.feed(raw.get("id"), function.get("name"), function.get("arguments"))


class _StreamedCall:
    """One tool call arriving in pieces: its id and name first (most servers send them in its first chunk)."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.id: str | None = None
        self.name: str | None = None
        self.arguments = ""
        self._announced = False

    def feed(self, call_id: Any, name: Any, arguments: Any) -> list[Delta]:
        """The deltas for one more chunk of this call."""
        self.id = self.id or (str(call_id) if call_id else None)
        self.name = self.name or (str(name) if name else None)
        piece = str(arguments or "")
        self.arguments += piece
        if self._announced:
            return [ToolUseDelta(piece)] if piece else []
        if self.name is None:
            return []  # nothing to start a tool-use block with yet: keep the arguments until the name comes
        self._announced = True
        start = ToolUseStart(self.id or f"call_{self.index}", self.name)
        return [start, ToolUseDelta(self.arguments)] if self.arguments else [start]

    def is_valid(self) -> bool:
        """Whether the arguments, complete, are a JSON object (else the model's output was malformed)."""
        try:
            return self._announced and isinstance(json.loads(self.arguments or "{}"), dict)
        except ValueError:
            return False


_OPEN, _CLOSE = "<reasoning>", "</reasoning>"


class _InlineReasoning:
    """`<reasoning>...</reasoning>` blocks at the start of streamed content, told apart from the answer.

    The rule of `shared.gpt_oss.split_reasoning` (leading blocks are reasoning, the rest is the answer),
    applied piece by piece: text that might still be the start of a tag is held until the next piece.
    """

    def __init__(self) -> None:
        self._state = "start"  # before or between leading blocks; then "reasoning" or "answer"
        self._buffer = ""
        self._had_block = False

    def feed(self, text: str) -> list[ReasoningDelta | TextDelta]:
        """The deltas that a piece of content completes."""
        self._buffer += text
        deltas: list[ReasoningDelta | TextDelta] = []
        while self._buffer:
            if self._state == "answer":
                deltas.append(TextDelta(self._buffer))
                self._buffer = ""
            elif self._state == "reasoning":
                if not self._reasoning(deltas):
                    break
            elif not self._start():
                break
        return deltas

    def flush(self) -> list[ReasoningDelta | TextDelta]:
        """The end of the content: whatever was held back."""
        rest, self._buffer = self._buffer, ""
        if self._state == "reasoning":
            return [ReasoningDelta(rest)] if rest else []
        if self._state == "start" and self._had_block:
            rest = rest.lstrip()
        return [TextDelta(rest)] if rest else []

    def _start(self) -> bool:
        """Decide whether a block opens; False while the buffer could still be the start of the tag."""
        stripped = self._buffer.lstrip()
        if stripped.startswith(_OPEN):
            self._state, self._buffer, self._had_block = "reasoning", stripped[len(_OPEN) :], True
            return True
        if _OPEN.startswith(stripped):
            return False
        self._state = "answer"
        # After reasoning blocks the answer starts at its first non-blank character, as split_reasoning has it.
        self._buffer = stripped if self._had_block else self._buffer
        return True

    def _reasoning(self, deltas: list[ReasoningDelta | TextDelta]) -> bool:
        """Pass on reasoning up to the close tag (False: it has not come yet; a partial tag is held back)."""
        end = self._buffer.find(_CLOSE)
        if end >= 0:
            if end:
                deltas.append(ReasoningDelta(self._buffer[:end]))
            self._state, self._buffer = "start", self._buffer[end + len(_CLOSE) :]
            return True
        keep = next((size for size in range(len(_CLOSE) - 1, 0, -1) if self._buffer.endswith(_CLOSE[:size])), 0)
        if len(self._buffer) > keep:
            deltas.append(ReasoningDelta(self._buffer[: len(self._buffer) - keep]))
            self._buffer = self._buffer[len(self._buffer) - keep :]
        return False
