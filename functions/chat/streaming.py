"""Server-sent events for `stream: true`, rendered from a finished chat.completion.

API Gateway buffers the Lambda response, so the answer is complete before the first byte leaves;
the body is still a valid `text/event-stream` that OpenAI SDKs read with `stream=True`.
"""

from __future__ import annotations

from collections.abc import Iterator

from chat.models import ChatCompletion, ChatCompletionChunk, ChunkChoice, ChunkDelta, ChunkToolCall

EVENT_STREAM = "text/event-stream"


def chunks(completion: ChatCompletion, *, include_usage: bool) -> Iterator[ChatCompletionChunk]:
    """The chat.completion.chunk events that stream `completion`: role, reasoning, content, tool calls, finish."""
    choice = completion.choices[0]
    message = choice.message

    def chunk(delta: ChunkDelta, finish: bool = False) -> ChatCompletionChunk:
        return ChatCompletionChunk(
            id=completion.id,
            created=completion.created,
            model=completion.model,
            choices=[ChunkChoice(delta=delta, finish_reason=choice.finish_reason if finish else None)],
        )

    yield chunk(ChunkDelta(role="assistant", content=""))
    if message.reasoning_content:
        yield chunk(ChunkDelta(reasoning_content=message.reasoning_content))
    if message.content:
        yield chunk(ChunkDelta(content=message.content))
    if message.tool_calls:
        calls = [
            ChunkToolCall(index=index, id=call.id, function=call.function)
            for index, call in enumerate(message.tool_calls)
        ]
        yield chunk(ChunkDelta(tool_calls=calls))
    yield chunk(ChunkDelta(), finish=True)
    if include_usage:
        yield ChatCompletionChunk(
            id=completion.id, created=completion.created, model=completion.model, choices=[], usage=completion.usage
        )


def render_sse(completion: ChatCompletion, *, include_usage: bool) -> str:
    """The whole event-stream body for `completion`, ending with `data: [DONE]`."""
    events = [f"data: {event.model_dump_json()}\n\n" for event in chunks(completion, include_usage=include_usage)]
    return "".join(events) + "data: [DONE]\n\n"
