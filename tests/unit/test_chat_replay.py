"""Server-sent events rendered from a finished completion (an Idempotency-Key replay of a stream)."""

from __future__ import annotations

import json
from typing import Any

from chat.models import AssistantMessage, ChatCompletion, Choice, FunctionCall, ResponseToolCall, Usage
from chat.streaming import DONE, replay_chunks, sse


def completion(message: AssistantMessage, finish: Any = "stop") -> ChatCompletion:
    return ChatCompletion(
        id="chatcmpl-1",
        created=1_795_428_900,
        model="openai.gpt-oss-20b-1:0",
        choices=[Choice(message=message, finish_reason=finish)],
        usage=Usage(prompt_tokens=3, completion_tokens=4, total_tokens=7),
    )


def render_sse(completion: ChatCompletion, *, include_usage: bool) -> str:
    """The replay's event stream as the app sends it: each chunk as an event, then [DONE]."""
    return "".join(sse(chunk) for chunk in replay_chunks(completion, include_usage=include_usage)) + DONE


def events(body: str) -> list[Any]:
    assert body.endswith("data: [DONE]\n\n")
    frames = body.split("\n\n")[:-1]
    assert all(frame.startswith("data: ") for frame in frames)
    return [json.loads(frame.removeprefix("data: ")) for frame in frames[:-1]]


def test_a_completion_streams_as_role_content_and_finish_chunks() -> None:
    chunks = events(render_sse(completion(AssistantMessage(content="Paris.")), include_usage=False))
    assert [chunk["choices"][0]["delta"] for chunk in chunks] == [
        {"role": "assistant", "content": ""},
        {"content": "Paris."},
        {},
    ]
    assert [chunk["choices"][0]["finish_reason"] for chunk in chunks] == [None, None, "stop"]
    assert {chunk["object"] for chunk in chunks} == {"chat.completion.chunk"}
    assert {chunk["id"] for chunk in chunks} == {"chatcmpl-1"}
    assert all("usage" not in chunk for chunk in chunks)


def test_usage_comes_last_when_asked_for() -> None:
    chunks = events(render_sse(completion(AssistantMessage(content="Paris.")), include_usage=True))
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}


def test_reasoning_streams_apart_from_content() -> None:
    message = AssistantMessage(content="Paris.", reasoning_content="Capital of France.")
    deltas = [chunk["choices"][0]["delta"] for chunk in events(render_sse(completion(message), include_usage=False))]
    assert {"reasoning_content": "Capital of France."} in deltas
    assert all("Capital" not in delta.get("content", "") for delta in deltas)


def test_tool_calls_stream_with_indexes() -> None:
    call = ResponseToolCall(id="call_1", function=FunctionCall(name="get_weather", arguments='{"city": "Paris"}'))
    message = AssistantMessage(content=None, tool_calls=[call])
    chunks = events(render_sse(completion(message, "tool_calls"), include_usage=False))
    assert chunks[1]["choices"][0]["delta"] == {
        "tool_calls": [
            {
                "index": 0,
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            }
        ]
    }
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
