"""POST /v1/responses end to end in process: the Responses request in, Converse (or ConverseStream) with the
guardrail out, and the response object or its events back, each checked against the `openai` SDK's own types.

Bedrock answers through botocore (tests/bedrock_fakes.py); the app is called as the Lambda Web Adapter calls it
(tests/apigw_bridge.py). Real clients (the SDK, the Agents SDK, LangChain) are in tests/local/test_local_responses.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from openai.types.responses import Response as SdkResponse
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

from chat.app import app
from tests.apigw_bridge import BridgeResponse, chat_context, invoke_handler
from tests.bedrock_fakes import BedrockFake, converse_response, converse_stream_events

JSON = {"Content-Type": "application/json"}
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
STREAM_EVENT = TypeAdapter[Any](ResponseStreamEvent)
BLOCKED = "Sorry, the answer was blocked by the content policy."


def body(**fields: Any) -> dict[str, Any]:
    return {"model": "gpt-oss-20b", "input": "What is the capital of France?", **fields}


def post(request: dict[str, Any]) -> BridgeResponse:
    return invoke_handler(
        app, "POST", "/v1/responses", JSON, json.dumps(request), context=chat_context(remaining_ms=10_000)
    )


def response_of(request: dict[str, Any]) -> dict[str, Any]:
    answer = post(request)
    assert answer.status == 200, answer.body
    parsed: dict[str, Any] = json.loads(answer.body)
    # The SDK's own type reads it (strictly: every field it declares has the right shape).
    SdkResponse.model_validate(parsed)
    return parsed


def events_of(request: dict[str, Any]) -> list[dict[str, Any]]:
    answer = post({**request, "stream": True})
    assert answer.status == 200, answer.body
    assert answer.headers["content-type"].startswith("text/event-stream")
    events = []
    for frame in filter(None, answer.body.split("\n\n")):
        if frame.startswith(":"):
            continue
        name, data = frame.split("\n")
        event = json.loads(data.removeprefix("data: "))
        assert name == f"event: {event['type']}"
        STREAM_EVENT.validate_python(event)
        events.append(event)
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    return events


def error_of(request: dict[str, Any]) -> dict[str, Any]:
    answer = post(request)
    assert answer.status == 400, answer.body
    error: dict[str, Any] = json.loads(answer.body)["error"]
    assert error["type"] == "invalid_request_error"
    return error


def texts(output: list[dict[str, Any]]) -> list[str]:
    return [part["text"] for item in output if item["type"] == "message" for part in item["content"]]


def test_a_string_input_is_one_guarded_user_turn_and_instructions_are_the_system(bedrock: BedrockFake) -> None:
    bedrock.reply(converse_response("Paris.", reasoning="The capital of France is Paris."))
    response = response_of(body(instructions="Answer in one word."))
    [call] = bedrock.calls
    assert call["system"] == [{"text": "Answer in one word."}]
    assert call["messages"] == [
        {"role": "user", "content": [{"guardContent": {"text": {"text": "What is the capital of France?"}}}]}
    ]
    assert call["guardrailConfig"]["trace"] == "enabled"
    assert response["status"] == "completed"
    assert response["object"] == "response"
    assert response["id"].startswith("resp_")
    # Reasoning only when asked for.
    assert [item["type"] for item in response["output"]] == ["message"]
    assert texts(response["output"]) == ["Paris."]
    assert response["usage"]["input_tokens"] == 12
    assert response["usage"]["output_tokens"] == 7
    assert response["instructions"] == "Answer in one word."
    assert response["store"] is False


def test_reasoning_summary_asks_for_the_reasoning_item(bedrock: BedrockFake) -> None:
    bedrock.reply(converse_response("Paris.", reasoning="France's capital is Paris."))
    response = response_of(body(reasoning={"effort": "high", "summary": "auto"}))
    [call] = bedrock.calls
    assert call["additionalModelRequestFields"] == {"reasoning_effort": "high"}
    reasoning, message = response["output"]
    assert reasoning["type"] == "reasoning"
    assert reasoning["content"] == [{"type": "reasoning_text", "text": "France's capital is Paris."}]
    assert reasoning["summary"] == []
    assert message["content"][0]["text"] == "Paris."


def test_function_tools_reach_converse_and_a_tool_call_is_a_function_call_item(bedrock: BedrockFake) -> None:
    bedrock.reply(
        {
            "output": {
                "message": {
                    "role": "assistant",
                    "content": [
                        {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Paris"}}}
                    ],
                }
            },
            "stopReason": "tool_use",
            "usage": {"inputTokens": 30, "outputTokens": 9, "totalTokens": 39},
            "metrics": {"latencyMs": 400},
        }
    )
    response = response_of(body(input="Weather in Paris?", tools=[WEATHER], tool_choice="required"))
    [call] = bedrock.calls
    assert call["toolConfig"]["tools"][0]["toolSpec"]["name"] == "get_weather"
    assert call["toolConfig"]["toolChoice"] == {"any": {}}
    [item] = response["output"]
    assert item["type"] == "function_call"
    assert (item["call_id"], item["name"], json.loads(item["arguments"])) == (
        "tooluse_1",
        "get_weather",
        {"city": "Paris"},
    )
    assert response["tools"][0]["name"] == "get_weather"
    assert response["tool_choice"] == "required"


def test_a_replayed_conversation_with_tool_output_becomes_converse_turns(bedrock: BedrockFake) -> None:
    bedrock.reply(converse_response("It is sunny in Paris."))
    history = [
        {"role": "user", "content": [{"type": "input_text", "text": "Weather in Paris?"}]},
        {"type": "reasoning", "id": "rs_1", "summary": [], "content": [{"type": "reasoning_text", "text": "call it"}]},
        {
            "type": "function_call",
            "id": "fc_1",
            "call_id": "tooluse_1",
            "name": "get_weather",
            "arguments": '{"city": "Paris"}',
            "status": "completed",
        },
        {"type": "function_call_output", "call_id": "tooluse_1", "output": "sunny, 21 C"},
    ]
    response = response_of(body(input=history, tools=[WEATHER]))
    [call] = bedrock.calls
    assert call["messages"] == [
        {"role": "user", "content": [{"guardContent": {"text": {"text": "Weather in Paris?"}}}]},
        {
            "role": "assistant",
            "content": [{"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Paris"}}}],
        },
        {"role": "user", "content": [{"toolResult": {"toolUseId": "tooluse_1", "content": [{"text": "sunny, 21 C"}]}}]},
    ]
    assert texts(response["output"]) == ["It is sunny in Paris."]


def test_text_format_json_schema_is_converse_structured_output(bedrock: BedrockFake) -> None:
    bedrock.reply(converse_response('{"city": "Paris"}'))
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    response = response_of(body(text={"format": {"type": "json_schema", "name": "answer", "schema": schema}}))
    [call] = bedrock.calls
    structure = call["outputConfig"]["textFormat"]["structure"]["jsonSchema"]
    assert (structure["name"], json.loads(structure["schema"])) == ("answer", schema)
    assert json.loads(texts(response["output"])[0]) == {"city": "Paris"}


def test_a_guardrail_intervention_is_an_incomplete_response_not_an_error(bedrock: BedrockFake) -> None:
    bedrock.reply(converse_response(BLOCKED, stop_reason="guardrail_intervened"))
    response = response_of(body())
    assert response["status"] == "incomplete"
    assert response["incomplete_details"] == {"reason": "content_filter"}
    assert texts(response["output"]) == [BLOCKED]


def test_the_output_token_limit_is_an_incomplete_response(bedrock: BedrockFake) -> None:
    bedrock.reply(converse_response("Par", stop_reason="max_tokens"))
    response = response_of(body(max_output_tokens=3))
    [call] = bedrock.calls
    assert call["inferenceConfig"]["maxTokens"] == 3
    assert response["incomplete_details"] == {"reason": "max_output_tokens"}
    assert response["output"][0]["status"] == "incomplete"


def test_metadata_user_and_the_caller_reach_request_metadata_and_metadata_is_echoed(bedrock: BedrockFake) -> None:
    bedrock.reply(converse_response())
    response = response_of(body(metadata={"ticket": "T-1"}, safety_identifier="user-42"))
    [call] = bedrock.calls
    assert call["requestMetadata"]["ticket"] == "T-1"
    assert call["requestMetadata"]["safety_identifier"] == "user-42"
    assert "caller" in call["requestMetadata"]
    assert response["metadata"] == {"ticket": "T-1"}


def test_service_tier_flex_reaches_converse_and_the_served_tier_comes_back(bedrock: BedrockFake) -> None:
    bedrock.reply({**converse_response(), "serviceTier": {"type": "flex"}})
    response = response_of(body(service_tier="flex"))
    [call] = bedrock.calls
    assert call["serviceTier"] == {"type": "flex"}
    assert response["service_tier"] == "flex"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"store": True}, "store"),
        ({"previous_response_id": "resp_1"}, "previous_response_id"),
        ({"include": ["reasoning.encrypted_content"]}, "include"),
        ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"tools": [{**WEATHER, "defer_loading": True}]}, "tools[0].defer_loading"),
        ({"tools": [{**WEATHER, "name": "get weather"}]}, "tools[0].name"),
        ({"tools": [WEATHER], "tool_choice": {"type": "web_search_preview"}}, "tool_choice.type"),
        ({"tools": [WEATHER], "tool_choice": {"type": "function", "name": "other"}}, "tool_choice"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "https://x/y.png"}]}]},
            "input[0].content[0].type",
        ),
        ({"input": [{"type": "function_call", "call_id": "c", "name": "f"}]}, "input[0].arguments"),
        ({"input": [{"role": "robot", "content": "hi"}]}, "input[0].role"),
        ({"input": "   "}, "input"),
        ({"text": {"format": {"type": "json_object"}}}, "text.format.type"),
        ({"text": {"format": {"type": "json_schema", "name": "x"}}}, "text.format.schema"),
        ({"text": {"verbosity": "low"}}, "text.verbosity"),
        ({"reasoning": {"effort": "none"}}, "reasoning.effort"),
        ({"truncation": "auto"}, "truncation"),
        ({"background": True}, "background"),
        ({"prompt": {"id": "pmpt_1"}}, "prompt"),
        ({"conversation": "conv_1"}, "conversation"),
        ({"prompt_cache_key": "k"}, "prompt_cache_key"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"service_tier": "priority"}, "service_tier"),
        ({"stream_options": {"include_obfuscation": False}}, "stream_options"),
        ({"max_output_tokens": 0}, "max_output_tokens"),
        ({"temperature": 1.5}, "temperature"),
        ({"modalities": ["text"]}, "modalities"),
        ({"metadata": {"user": "x"}}, "metadata"),
    ],
)
def test_a_field_that_cannot_be_honoured_is_a_400_naming_it(
    bedrock: BedrockFake, fields: dict[str, Any], param: str
) -> None:
    assert error_of(body(**fields))["param"] == param
    assert bedrock.calls == []


@pytest.mark.parametrize(
    "fields",
    [
        {"store": False},
        {"include": []},
        {"truncation": "disabled"},
        {"background": False},
        {"top_logprobs": 0},
        {"max_tool_calls": 3},
        {"parallel_tool_calls": False, "tools": [WEATHER]},
        {"service_tier": "auto"},
        {"text": {"format": {"type": "text"}}},
        {"user": "svc-orders"},
    ],
)
def test_no_op_values_are_accepted(bedrock: BedrockFake, fields: dict[str, Any]) -> None:
    bedrock.reply(converse_response())
    assert response_of(body(**fields))["status"] == "completed"


# --- streaming ----------------------------------------------------------------------------------------


def kinds(events: list[dict[str, Any]]) -> list[str]:
    return [event["type"] for event in events]


def test_a_streamed_answer_is_the_responses_event_sequence(bedrock: BedrockFake) -> None:
    bedrock.reply_stream(converse_stream_events("The capital of France is Paris.", reasoning="Easy."))
    events = events_of(body())
    [call] = bedrock.calls
    assert call["guardrailConfig"]["streamProcessingMode"] == "sync"
    names = kinds(events)
    assert names[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert names[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    deltas = [event["delta"] for event in events if event["type"] == "response.output_text.delta"]
    # Word by word, as the events came; never the reasoning, which was not asked for.
    assert len(deltas) > 3
    assert "".join(deltas) == "The capital of France is Paris."
    final = events[-1]["response"]
    SdkResponse.model_validate(final)
    assert texts(final["output"]) == ["The capital of France is Paris."]
    assert final["id"] == events[0]["response"]["id"]


def test_a_streamed_tool_call_is_function_call_argument_deltas(bedrock: BedrockFake) -> None:
    call = {"toolUseId": "tooluse_9", "name": "get_weather", "input": {"city": "Paris"}}
    bedrock.reply_stream(converse_stream_events("", reasoning="Use the tool.", tool_calls=[call]))
    events = events_of(body(tools=[WEATHER], reasoning={"summary": "detailed"}))
    added = [event["item"] for event in events if event["type"] == "response.output_item.added"]
    assert [item["type"] for item in added] == ["reasoning", "function_call"]
    pieces = [event["delta"] for event in events if event["type"] == "response.function_call_arguments.delta"]
    assert len(pieces) > 1
    assert json.loads("".join(pieces)) == {"city": "Paris"}
    [done] = [event for event in events if event["type"] == "response.function_call_arguments.done"]
    assert (done["name"], json.loads(done["arguments"])) == ("get_weather", {"city": "Paris"})
    final = events[-1]
    assert final["type"] == "response.completed"
    assert [item["type"] for item in final["response"]["output"]] == ["reasoning", "function_call"]
    assert final["response"]["output"][1]["call_id"] == "tooluse_9"


def test_a_streamed_guardrail_intervention_ends_incomplete(bedrock: BedrockFake) -> None:
    bedrock.reply_stream(converse_stream_events(BLOCKED, stop_reason="guardrail_intervened"))
    events = events_of(body())
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["incomplete_details"] == {"reason": "content_filter"}


def test_a_failure_mid_stream_is_response_failed(bedrock: BedrockFake) -> None:
    stream = converse_stream_events("One two three four five.")
    bedrock.reply_stream([*stream[:4], {"modelStreamErrorException": {"message": "boom", "originalStatusCode": 500}}])
    events = events_of(body())
    assert events[-1]["type"] == "response.failed"
    failed = events[-1]["response"]
    assert failed["status"] == "failed"
    assert failed["error"]["message"]
    assert "boom" not in json.dumps(failed)


def test_a_refusal_before_the_stream_opens_is_an_http_error(bedrock: BedrockFake) -> None:
    bedrock.reply_stream([{"throttlingException": {"message": "Too many requests"}}])
    answer = post(body(stream=True))
    assert answer.status == 429
    assert json.loads(answer.body)["error"]["type"] == "rate_limit_error"


def test_service_tier_is_echoed_while_streaming_and_settled_at_the_end(bedrock: BedrockFake) -> None:
    stream = converse_stream_events("Paris.")
    stream[-1]["metadata"]["serviceTier"] = {"type": "flex"}
    bedrock.reply_stream(stream)
    events = events_of(body(service_tier="flex"))
    assert bedrock.calls[0]["serviceTier"] == {"type": "flex"}
    assert events[0]["response"]["service_tier"] == "flex"
    assert events[-1]["response"]["service_tier"] == "flex"
