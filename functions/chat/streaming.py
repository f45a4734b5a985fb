"""One translation of a Converse answer into OpenAI chat.completion.chunk deltas, and of those into a chat.completion.

ConverseStream events are translated as they arrive; a Converse reply is first turned into the same events
(shared.converse.reply_events), so streamed and non-streamed answers follow the very same rules: reasoning
only as `reasoning_content` and only when asked for (never inside `content`, even when `<reasoning>` tags are
split across events), tool calls with their arguments as deltas, the finish reason from the stop reason, and
a guardrail intervention as `content_filter`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Literal

from chat.models import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    Choice,
    ChunkChoice,
    ChunkDelta,
    ChunkFunction,
    ChunkToolCall,
    ErrorEnvelope,
    FunctionCall,
    ResponseToolCall,
    Usage,
)
from shared.converse import StreamEvent, StreamMetadata
from shared.errors import BedrockModelError
from shared.gpt_oss import FinishReason, finish_reason

EVENT_STREAM = "text/event-stream"
DONE = "data: [DONE]\n\n"
# An SSE comment: clients ignore it, and it keeps idle-timeouts of proxies from cutting a silent answer.
KEEPALIVE = ": keep-alive\n\n"

_OPEN, _CLOSE = "<reasoning>", "</reasoning>"
_PART_SEPARATOR = "\n\n"

Piece = tuple[Literal["reasoning", "answer"], str]


def sse(event: ChatCompletionChunk | ErrorEnvelope) -> str:
    """One server-sent event carrying `event` as JSON."""
    return f"data: {event.model_dump_json()}\n\n"


class ReasoningSplitter:
    """shared.gpt_oss.split_reasoning for text that arrives in pieces: same split, decided as early as possible.

    Leading `<reasoning>...</reasoning>` blocks are reasoning (each part stripped, parts joined by a blank line),
    what follows is the answer (left-stripped); text that does not open with the tag is all answer. Only what
    could still turn out to be a tag, or whitespace that may be stripped, is held back.
    """

    def __init__(self) -> None:
        self._state: Literal["opening", "between", "reasoning", "answer"] = "opening"
        self._pending = ""
        self._part_started = False
        self.reasoning_started = False

    def feed(self, text: str) -> list[Piece]:
        """The reasoning and answer pieces that `text` completes."""
        self._pending += text
        pieces: list[Piece] = []
        while self._step(pieces):
            pass
        return pieces

    def flush(self) -> list[Piece]:
        """The pieces still held back when the text has ended."""
        pieces: list[Piece] = []
        pending, self._pending = self._pending, ""
        if self._state == "reasoning":  # the model stopped while still reasoning
            self._reasoning(pending, pieces, final=True)
        elif self._state == "opening" and pending:
            pieces.append(("answer", pending))
        elif self._state == "between" and pending.strip():
            pieces.append(("answer", pending.lstrip()))
        self._state = "answer"
        return pieces

    def _step(self, pieces: list[Piece]) -> bool:
        """Consume what can be decided; True when the state changed and more may be decided."""
        if self._state in ("opening", "between"):
            stripped = self._pending.lstrip()
            if stripped.startswith(_OPEN):
                self._pending, self._state, self._part_started = stripped[len(_OPEN) :], "reasoning", False
                return True
            if _OPEN.startswith(stripped):  # only whitespace, or a tag that may still be completing
                return False
            answer = self._pending if self._state == "opening" else stripped
            self._pending, self._state = "", "answer"
            pieces.append(("answer", answer))
            return False
        if self._state == "reasoning":
            close = self._pending.find(_CLOSE)
            if close >= 0:
                self._reasoning(self._pending[:close], pieces, final=True)
                self._pending, self._state = self._pending[close + len(_CLOSE) :], "between"
                return True
            held = _tag_prefix_length(self._pending)
            body = self._pending[: len(self._pending) - held]
            sendable = body.rstrip()
            self._reasoning(sendable, pieces, final=False)
            self._pending = body[len(sendable) :] + self._pending[len(self._pending) - held :]
            return False
        if self._pending:
            pieces.append(("answer", self._pending))
            self._pending = ""
        return False

    def _reasoning(self, text: str, pieces: list[Piece], *, final: bool) -> None:
        if not self._part_started:
            text = text.lstrip()
        if final:
            text = text.rstrip()
        if not text:
            return
        if not self._part_started:
            self._part_started = True
            text = (_PART_SEPARATOR + text) if self.reasoning_started else text
            self.reasoning_started = True
        pieces.append(("reasoning", text))


def _tag_prefix_length(text: str) -> int:
    """The length of the longest end of `text` that could be the start of a closing tag."""
    for length in range(min(len(text), len(_CLOSE) - 1), 0, -1):
        if _CLOSE.startswith(text[-length:]):
            return length
    return 0


class _ToolCall:
    def __init__(self, index: int, call_id: str, name: str) -> None:
        self.index, self.call_id, self.name = index, call_id, name
        self.arguments: list[str] = []


class ChunkTranslator:
    """Translates one answer's ConverseStream events into chunks as they arrive, and folds them into a completion."""

    def __init__(
        self,
        *,
        completion_id: str,
        created: int,
        model: str,
        include_reasoning: bool,
        tools_offered: bool,
        include_usage: bool = False,
        service_tier: str = "default",
    ) -> None:
        self.completion_id, self.created, self.model = completion_id, created, model
        self.service_tier = service_tier
        self._include_reasoning = include_reasoning
        self._tools_offered = tools_offered
        self._include_usage = include_usage
        self._splitter = ReasoningSplitter()
        self._answer: list[str] = []
        self._reasoning: list[str] = []
        self._reasoning_blocks: set[int] = set()
        self._calls: dict[int, _ToolCall] = {}
        # Characters of reasoning and of everything else the model wrote, returned or not.
        self._written = {"reasoning": 0, "answer": 0}
        self.finish: FinishReason | None = None
        self.stop_reason: str | None = None
        self.metadata: StreamMetadata | None = None

    def translate(self, events: Iterable[StreamEvent]) -> Iterator[ChatCompletionChunk]:
        """The chunks of every event, in order."""
        for event in events:
            yield from self.feed(event)

    def fold(self, events: Iterable[StreamEvent]) -> ChatCompletion:
        """The completion that all of `events` make (a Converse reply's, through shared.converse.reply_events).

        Raises:
            BedrockModelError: the events are malformed, or end before the stop reason and usage.
        """
        for _ in self.translate(events):
            pass
        return self.completion()

    def feed(self, event: StreamEvent) -> list[ChatCompletionChunk]:
        """The chunks one event makes (none for events that carry nothing for the caller).

        Raises:
            BedrockModelError: the event is malformed for this answer (a tool call nobody offered, an unknown stop).
        """
        if event.message_start is not None:
            return [self._chunk(ChunkDelta(role="assistant", content=""))]
        if event.content_block_start is not None and event.content_block_start.start.tool_use is not None:
            return [self._tool_call_start(event.content_block_start.content_block_index, event)]
        if event.content_block_delta is not None:
            return self._delta(event)
        if event.message_stop is not None:
            self.stop_reason = event.message_stop.stop_reason
            chunks = self._pieces(self._splitter.flush())
            self.finish = finish_reason(event.message_stop.stop_reason)
            return [*chunks, self._chunk(ChunkDelta(), finish=self.finish)]
        if event.metadata is not None:
            self.metadata = event.metadata
            return [self._usage_chunk(self._usage(event.metadata))] if self._include_usage else []
        return []

    def _tool_call_start(self, block: int, event: StreamEvent) -> ChatCompletionChunk:
        start = event.content_block_start.start.tool_use if event.content_block_start else None
        assert start is not None
        if not self._tools_offered:
            raise BedrockModelError("the model called a tool although none was offered", code="unexpected_tool_use")
        call = self._calls[block] = _ToolCall(len(self._calls), start.tool_use_id, start.name)
        first = ChunkToolCall(
            index=call.index, id=call.call_id, type="function", function=ChunkFunction(name=call.name, arguments="")
        )
        return self._chunk(ChunkDelta(tool_calls=[first]))

    def _delta(self, event: StreamEvent) -> list[ChatCompletionChunk]:
        assert event.content_block_delta is not None
        block, delta = event.content_block_delta.content_block_index, event.content_block_delta.delta
        if delta.text is not None:
            return self._pieces(self._splitter.feed(delta.text))
        if delta.reasoning_content is not None and delta.reasoning_content.text:
            text = delta.reasoning_content.text
            if block not in self._reasoning_blocks:
                self._reasoning_blocks.add(block)
                text = (_PART_SEPARATOR + text) if self._splitter.reasoning_started else text
                self._splitter.reasoning_started = True
            return self._pieces([("reasoning", text)])
        if delta.tool_use is not None:
            call = self._calls.get(block)
            if call is None:
                raise BedrockModelError("a tool call's input came before its start", code="malformed_tool_use")
            call.arguments.append(delta.tool_use.input)
            self._written["answer"] += len(delta.tool_use.input)
            piece = ChunkToolCall(index=call.index, function=ChunkFunction(arguments=delta.tool_use.input))
            return [self._chunk(ChunkDelta(tool_calls=[piece]))]
        return []

    def _pieces(self, pieces: list[Piece]) -> list[ChatCompletionChunk]:
        chunks = []
        for kind, text in pieces:
            self._written[kind] += len(text)
            if kind == "answer":
                self._answer.append(text)
                chunks.append(self._chunk(ChunkDelta(content=text)))
            elif self._include_reasoning:
                self._reasoning.append(text)
                chunks.append(self._chunk(ChunkDelta(reasoning_content=text)))
        return chunks

    def _chunk(self, delta: ChunkDelta, finish: FinishReason | None = None) -> ChatCompletionChunk:
        return ChatCompletionChunk(
            id=self.completion_id,
            created=self.created,
            model=self.model,
            choices=[ChunkChoice(delta=delta, finish_reason=finish)],
            service_tier=self.service_tier,
        )

    def _usage_chunk(self, usage: Usage) -> ChatCompletionChunk:
        return ChatCompletionChunk(
            id=self.completion_id,
            created=self.created,
            model=self.model,
            choices=[],
            usage=usage,
            service_tier=self.service_tier,
        )

    @staticmethod
    def _usage(metadata: StreamMetadata) -> Usage:
        usage = metadata.usage
        return Usage(
            prompt_tokens=usage.input_tokens, completion_tokens=usage.output_tokens, total_tokens=usage.total_tokens
        )

    def reasoning_tokens(self, output_tokens: int) -> int:
        """An estimate of the reasoning's part of `output_tokens`: Converse does not count it apart."""
        written = self._written["reasoning"] + self._written["answer"]
        return round(output_tokens * self._written["reasoning"] / written) if written else 0

    def completion(self) -> ChatCompletion:
        """The chat.completion the translated events make (its usage from the metadata event).

        Raises:
            BedrockModelError: the answer ended before its stop reason or its usage.
        """
        metadata = self.metadata
        if self.finish is None or metadata is None:
            raise BedrockModelError("the answer ended before its stop reason and usage", code="incomplete_stream")
        calls = [
            ResponseToolCall(id=call.call_id, function=FunctionCall(name=call.name, arguments="".join(call.arguments)))
            for call in self._calls.values()
        ]
        reasoning = "".join(self._reasoning)
        if self.finish == "content_filter":
            # The guardrail's message replaces the answer; nothing else the model produced is returned.
            reasoning, calls = "", []
        answer = "".join(self._answer)
        message = AssistantMessage(
            content=answer if answer or not calls else None,
            reasoning_content=reasoning or None,
            tool_calls=calls or None,
        )
        return ChatCompletion(
            id=self.completion_id,
            created=self.created,
            model=self.model,
            choices=[Choice(message=message, finish_reason=self.finish)],
            usage=self._usage(metadata),
            service_tier=metadata.service_tier.type if metadata.service_tier else self.service_tier,
        )


def replay_chunks(completion: ChatCompletion, *, include_usage: bool) -> Iterator[ChatCompletionChunk]:
    """The chunks that stream a stored completion (an Idempotency-Key replay): role, reasoning, content, calls."""
    choice = completion.choices[0]
    message = choice.message

    def chunk(delta: ChunkDelta, finish: bool = False) -> ChatCompletionChunk:
        return ChatCompletionChunk(
            id=completion.id,
            created=completion.created,
            model=completion.model,
            choices=[ChunkChoice(delta=delta, finish_reason=choice.finish_reason if finish else None)],
            service_tier=completion.service_tier,
        )

    yield chunk(ChunkDelta(role="assistant", content=""))
    if message.reasoning_content:
        yield chunk(ChunkDelta(reasoning_content=message.reasoning_content))
    if message.content:
        yield chunk(ChunkDelta(content=message.content))
    if message.tool_calls:
        calls = [
            ChunkToolCall(
                index=index,
                id=call.id,
                type="function",
                function=ChunkFunction(name=call.function.name, arguments=call.function.arguments),
            )
            for index, call in enumerate(message.tool_calls)
        ]
        yield chunk(ChunkDelta(tool_calls=calls))
    yield chunk(ChunkDelta(), finish=True)
    if include_usage:
        yield ChatCompletionChunk(
            id=completion.id,
            created=completion.created,
            model=completion.model,
            choices=[],
            usage=completion.usage,
            service_tier=completion.service_tier,
        )
