"""`stream: true` end to end in process: ConverseStream's binary event stream in, chat.completion.chunk events out.

Bedrock answers through botocore's real event-stream parser (tests/bedrock_fakes.py `reply_stream`); the app is
called as the Lambda Web Adapter calls it (tests/apigw_bridge.py). Ordering against a paced stand-in, client
disconnects and long generations are in tests/local/test_local_chat_streaming.py, over real loopback HTTP.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from chat.app import app
from chat.settings import ChatSettings
from local.lambda_runtime import fresh_container
from tests.apigw_bridge import BridgeResponse, chat_context, invoke_handler
from tests.bedrock_fakes import BedrockFake, converse_stream_events

JSON = {"Content-Type": "application/json"}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def chat(**fields: Any) -> dict[str, Any]:
    return {
        "model": "gpt-oss-20b",
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "stream": True,
        **fields,
    }


def post(body: dict[str, Any], *, remaining_ms: int = 10_000) -> BridgeResponse:
    return invoke_handler(
        app,
        "POST",
        "/v1/chat/completions",
        JSON,
        json.dumps(body),
        context=chat_context(remaining_ms=remaining_ms),
    )


def frames(response: BridgeResponse) -> list[str]:
    assert response.status == 200, response.body
    assert response.headers["content-type"].startswith("text/event-stream")
    return [frame for frame in response.body.split("\n\n") if frame]


def chunks(response: BridgeResponse) -> list[dict[str, Any]]:
    data = [frame.removeprefix("data: ") for frame in frames(response) if frame.startswith("data: ")]
    return [json.loads(item) for item in data if item != "[DONE]"]


def deltas(response: BridgeResponse) -> list[dict[str, Any]]:
    return [chunk["choices"][0]["delta"] for chunk in chunks(response) if chunk.get("choices")]


def content(response: BridgeResponse) -> str:
    return "".join(delta.get("content", "") for delta in deltas(response))


def test_stream_true_calls_converse_stream_with_the_guardrail_in_sync_mode(bedrock: BedrockFake) -> None:
    bedrock.reply_stream(converse_stream_events("The capital of France is Paris.", reasoning="Easy: Paris."))
    response = post(chat())
    [call] = bedrock.calls
    assert call["guardrailConfig"]["streamProcessingMode"] == "sync"
    assert call["guardrailConfig"]["trace"] == "enabled"
    assert deltas(response)[0] == {"role": "assistant", "content": ""}
    assert content(response) == "The capital of France is Paris."
    # Several content chunks: the answer streamed as its events came, not as one piece.
    assert len([delta for delta in deltas(response) if delta.get("content")]) > 3
    assert all("reasoning_content" not in delta for delta in deltas(response))
    assert [chunk["choices"][0]["finish_reason"] for chunk in chunks(response)][-1] == "stop"
    assert frames(response)[-1] == "data: [DONE]"
    assert "usage" not in chunks(response)[-1]


def test_the_guardrail_stream_mode_is_configuration(
    bedrock: BedrockFake, chat_env: ChatSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GUARDRAIL_STREAM_MODE", "async")
    fresh_container()
    bedrock.reply_stream(converse_stream_events("Paris."))
    post(chat())
    assert bedrock.calls[0]["guardrailConfig"]["streamProcessingMode"] == "async"


def test_reasoning_streams_apart_from_content_when_asked(bedrock: BedrockFake) -> None:
    bedrock.reply_stream(converse_stream_events("Paris.", reasoning="The user wants the capital of France."))
    response = post(chat(include_reasoning=True))
    reasoning = "".join(delta.get("reasoning_content", "") for delta in deltas(response))
    assert reasoning == "The user wants the capital of France."
    assert content(response) == "Paris."


def test_usage_comes_last_when_asked_for(bedrock: BedrockFake) -> None:
    bedrock.reply_stream(
        converse_stream_events("Paris.", usage={"inputTokens": 5, "outputTokens": 3, "totalTokens": 8})
    )
    last = chunks(post(chat(stream_options={"include_usage": True})))[-1]
    assert last["choices"] == []
    assert last["usage"] == {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}


def test_tool_call_arguments_stream_as_deltas_that_reassemble(bedrock: BedrockFake) -> None:
    call = {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Paris", "unit": "celsius"}}
    bedrock.reply_stream(converse_stream_events("", tool_calls=[call]))
    response = post(chat(tools=[WEATHER]))
    pieces = [piece for delta in deltas(response) for piece in delta.get("tool_calls", [])]
    assert pieces[0] == {
        "index": 0,
        "id": "tooluse_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    assert len(pieces) > 2
    assert json.loads("".join(piece["function"]["arguments"] for piece in pieces)) == call["input"]
    assert chunks(response)[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_a_guardrail_intervention_mid_stream_ends_in_content_filter(bedrock: BedrockFake) -> None:
    bedrock.reply_stream(converse_stream_events("Sorry, I cannot help with that.", stop_reason="guardrail_intervened"))
    response = post(chat())
    assert chunks(response)[-1]["choices"][0]["finish_reason"] == "content_filter"
    assert frames(response)[-1] == "data: [DONE]"


def test_an_error_mid_stream_is_a_final_error_event(bedrock: BedrockFake) -> None:
    events = converse_stream_events("Paris is the capital of France.")
    bedrock.reply_stream([*events[:4], {"modelStreamErrorException": {"message": "the model broke off"}}])
    response = post(chat())
    last = json.loads(frames(response)[-1].removeprefix("data: "))
    assert set(last) == {"error"}
    assert last["error"]["code"] == "upstream_error"
    assert "broke off" not in last["error"]["message"]
    assert "[DONE]" not in response.body
    assert content(response)


def test_throttling_before_the_first_chunk_is_an_ordinary_429(bedrock: BedrockFake) -> None:
    bedrock.reply_stream([{"throttlingException": {"message": "Too many requests"}}])
    response = post(chat())
    assert response.status == 429
    assert response.headers["content-type"] == "application/json"
    assert json.loads(response.body)["error"]["code"] == "rate_limit_exceeded"
    assert int(response.headers["Retry-After"]) >= 1


def test_a_silent_stretch_gets_keepalive_comments(
    bedrock: BedrockFake, chat_env: ChatSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STREAM_KEEPALIVE_SECONDS", "0.05")
    fresh_container()

    def silence(index: int) -> None:
        if index == 2:
            time.sleep(0.3)

    bedrock.reply_stream(converse_stream_events("Paris."), pause=silence)
    response = post(chat())
    assert ": keep-alive" in frames(response)
    assert content(response) == "Paris."
    assert frames(response)[-1] == "data: [DONE]"


def test_a_stream_that_outlives_its_deadline_ends_with_a_timeout_event(
    bedrock: BedrockFake, chat_env: ChatSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No margin and 2.1 s left in the invocation: the stream opens (a second to connect, one to read), then the
    # model pauses past the deadline.
    monkeypatch.setenv("DEADLINE_MARGIN_MS", "0")
    fresh_container()

    def slow(index: int) -> None:
        if index == 2:
            time.sleep(2.5)

    body = bedrock.reply_stream(converse_stream_events("Paris is the capital of France."), pause=slow)
    response = post(chat(), remaining_ms=2100)
    last = json.loads(frames(response)[-1].removeprefix("data: "))
    assert last["error"]["code"] == "timeout"
    assert "[DONE]" not in response.body
    # The Bedrock stream was closed: nobody reads the rest of the generation.
    deadline = time.monotonic() + 5
    while not body.closed and time.monotonic() < deadline:
        time.sleep(0.01)
    assert body.closed
