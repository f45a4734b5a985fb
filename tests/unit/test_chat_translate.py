"""OpenAI <-> Converse translation: every role, parameter, stop reason and refusal, without Bedrock."""

from __future__ import annotations

import itertools
import json
from typing import Any

import botocore.session
import pytest
from botocore.model import StructureShape
from botocore.validate import validate_parameters
from hypothesis import given
from hypothesis import strategies as st

from chat.errors import (
    ContextLengthExceeded,
    InvalidRequest,
    ModelNotFound,
    UnsupportedParameter,
    UnsupportedValue,
)
from chat.models import ChatCompletionRequest
from chat.settings import ChatSettings
from chat.streaming import ChunkTranslator
from chat.translate import resolve_model, to_converse
from shared.converse import ConverseReply, reply_events
from shared.errors import BedrockModelError
from tests.bedrock_fakes import (
    CHAT_ENVIRONMENT,
    GPT_OSS_20B,
    GPT_OSS_120B,
    GUARDRAIL_ID,
    GUARDRAIL_VERSION,
    converse_response,
)

CALLER = "arn:aws:sts::123456789012:assumed-role/orders-service/orders-service"


def _converse_input_shape() -> StructureShape:
    model = botocore.session.get_session().get_service_model("bedrock-runtime")
    shape = model.operation_model("Converse").input_shape
    assert shape is not None
    return shape


CONVERSE_INPUT = _converse_input_shape()
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture
def settings() -> ChatSettings:
    return ChatSettings.model_validate(CHAT_ENVIRONMENT)


def request(**fields: Any) -> ChatCompletionRequest:
    body: dict[str, Any] = {"model": "gpt-oss-20b", "messages": [{"role": "user", "content": "Hi"}], **fields}
    return ChatCompletionRequest.model_validate(body)


def converse(settings: ChatSettings, caller: str | None = None, **fields: Any) -> dict[str, Any]:
    translated = to_converse(request(**fields), settings, model_id=GPT_OSS_20B, caller=caller)
    # Everything we build must pass botocore's validation against the real service model.
    validate_parameters(translated, CONVERSE_INPUT)
    return translated


def guarded(text: str) -> dict[str, Any]:
    return {"guardContent": {"text": {"text": text}}}


def reply(body: dict[str, Any]) -> ConverseReply:
    return ConverseReply.model_validate(body)


def complete(body: dict[str, Any], *, include_reasoning: bool = False, tools_offered: bool = False) -> Any:
    translator = ChunkTranslator(
        completion_id="chatcmpl-1",
        created=1,
        model=GPT_OSS_20B,
        include_reasoning=include_reasoning,
        tools_offered=tools_offered,
    )
    return translator.fold(reply_events(reply(body)))


# --- models -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "model_id"),
    [
        (GPT_OSS_20B, GPT_OSS_20B),
        (GPT_OSS_120B, GPT_OSS_120B),
        ("gpt-oss-20b", GPT_OSS_20B),
        ("gpt-oss-120b", GPT_OSS_120B),
    ],
)
@pytest.mark.row(3)
def test_allowed_ids_and_aliases_resolve(settings: ChatSettings, name: str, model_id: str) -> None:
    assert resolve_model(name, settings) == model_id


@pytest.mark.parametrize(
    "name",
    [
        "gpt-4o",
        "arn:aws:bedrock:us-east-1::foundation-model/openai.gpt-oss-120b-1:0",
        "anthropic.claude-3-5-sonnet-20240620-v1:0",
        f"{GPT_OSS_120B} ",
        " gpt-oss-20b",
        "GPT-OSS-20B",
        "",
    ],
)
@pytest.mark.row(3)
def test_anything_else_is_model_not_found(settings: ChatSettings, name: str) -> None:
    with pytest.raises(ModelNotFound) as raised:
        resolve_model(name, settings)
    assert (raised.value.status, raised.value.code, raised.value.param) == (404, "model_not_found", "model")


def test_an_alias_to_a_model_that_is_not_allowed_is_not_found() -> None:
    settings = ChatSettings.model_validate(
        {**CHAT_ENVIRONMENT, "MODEL_ALIASES": json.dumps({"big": "openai.other-1:0"})}
    )
    with pytest.raises(ModelNotFound):
        resolve_model("big", settings)


# --- conversation -----------------------------------------------------------------------------------


def test_a_plain_request_maps_exactly(settings: ChatSettings) -> None:
    assert converse(
        settings, messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    ) == {
        "modelId": GPT_OSS_20B,
        "messages": [{"role": "user", "content": [guarded("Hi")]}],
        "system": [{"text": "Be brief."}],
        "inferenceConfig": {"maxTokens": 1024},
        "guardrailConfig": {
            "guardrailIdentifier": GUARDRAIL_ID,
            "guardrailVersion": GUARDRAIL_VERSION,
            "trace": "enabled",
        },
    }


def test_system_and_developer_messages_become_system_blocks_in_order(settings: ChatSettings) -> None:
    result = converse(
        settings,
        messages=[
            {"role": "developer", "content": "Rule one."},
            {"role": "system", "content": [{"type": "text", "text": "Rule two."}, {"type": "text", "text": "  "}]},
            {"role": "user", "content": "Hi"},
            {"role": "system", "content": "Rule three."},
        ],
    )
    assert result["system"] == [{"text": "Rule one."}, {"text": "Rule two."}, {"text": "Rule three."}]


def test_consecutive_turns_of_one_role_are_merged(settings: ChatSettings) -> None:
    result = converse(
        settings,
        messages=[
            {"role": "user", "content": "First."},
            {"role": "user", "content": [{"type": "text", "text": "Second."}, {"type": "text", "text": "Third."}]},
            {"role": "assistant", "content": "Answer one."},
            {"role": "assistant", "content": "Answer two."},
            {"role": "user", "content": "Again."},
        ],
    )
    assert result["messages"] == [
        {"role": "user", "content": [{"text": "First."}, {"text": "Second."}, {"text": "Third."}]},
        {"role": "assistant", "content": [{"text": "Answer one."}, {"text": "Answer two."}]},
        {"role": "user", "content": [guarded("Again.")]},
    ]


def test_only_the_latest_user_text_is_guarded(settings: ChatSettings) -> None:
    result = converse(
        settings,
        messages=[
            {"role": "user", "content": "Something the guardrail flagged."},
            {"role": "assistant", "content": "Sorry."},
            {"role": "user", "content": "A harmless question."},
        ],
    )
    assert result["messages"][0]["content"] == [{"text": "Something the guardrail flagged."}]
    assert result["messages"][2]["content"] == [guarded("A harmless question.")]


@pytest.mark.parametrize(
    "assistant",
    [
        {"role": "assistant", "content": "<reasoning>secret plan</reasoning>The answer.", "reasoning_content": "more"},
        {"role": "assistant", "content": [{"type": "text", "text": "<reasoning>secret plan</reasoning>The answer."}]},
    ],
)
def test_replayed_reasoning_is_never_sent_back(settings: ChatSettings, assistant: dict[str, Any]) -> None:
    result = converse(
        settings, messages=[{"role": "user", "content": "Q"}, assistant, {"role": "user", "content": "And?"}]
    )
    assert result["messages"][1] == {"role": "assistant", "content": [{"text": "The answer."}]}
    assert "secret plan" not in json.dumps(result)
    assert "more" not in json.dumps(result["messages"])


def test_an_assistant_turn_that_was_only_reasoning_is_skipped(settings: ChatSettings) -> None:
    result = converse(
        settings,
        messages=[
            {"role": "user", "content": "Q"},
            {"role": "assistant", "content": "<reasoning>ran out of tokens", "reasoning_content": "x"},
            {"role": "user", "content": "Try again."},
        ],
    )
    assert result["messages"] == [{"role": "user", "content": [{"text": "Q"}, guarded("Try again.")]}]


def test_an_assistant_refusal_is_replayed_as_its_text(settings: ChatSettings) -> None:
    result = converse(
        settings,
        messages=[
            {"role": "user", "content": "Q"},
            {"role": "assistant", "content": None, "refusal": "I cannot help with that."},
            {"role": "user", "content": "OK."},
        ],
    )
    assert result["messages"][1]["content"] == [{"text": "I cannot help with that."}]


@pytest.mark.parametrize(
    ("messages", "param"),
    [
        ([{"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Hi"}], "messages[0]"),
        (
            [
                {"role": "system", "content": "S"},
                {"role": "assistant", "content": "Hello!"},
                {"role": "user", "content": "Hi"},
            ],
            "messages[1]",
        ),
        ([{"role": "system", "content": "Only a system prompt."}], "messages"),
        ([{"role": "user", "content": "   "}], "messages[0].content"),
        ([{"role": "user", "content": None}], "messages[0].content"),
        ([{"role": "user", "content": "Hi", "name": "alice"}], "messages[0].name"),
        ([{"role": "user", "content": [{"type": "text"}]}], "messages[0].content[0].text"),
    ],
)
@pytest.mark.row(2)
def test_conversations_that_cannot_be_sent_are_rejected_by_field(
    settings: ChatSettings, messages: list[dict[str, Any]], param: str
) -> None:
    with pytest.raises(InvalidRequest) as raised:
        converse(settings, messages=messages)
    assert raised.value.param == param
    assert raised.value.status == 400


@pytest.mark.parametrize(
    "part",
    [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
        {"type": "file", "file": {"file_id": "file-abc"}},
    ],
)
@pytest.mark.row(2)
def test_non_text_parts_are_rejected_by_field(settings: ChatSettings, part: dict[str, Any]) -> None:
    with pytest.raises(UnsupportedValue) as raised:
        converse(settings, messages=[{"role": "user", "content": [{"type": "text", "text": "Look:"}, part]}])
    assert raised.value.param == "messages[0].content[1].type"
    assert raised.value.code == "unsupported_value"


@given(
    roles=st.lists(st.sampled_from(["user", "assistant", "tool_pair"]), min_size=1, max_size=12),
)
def test_turns_always_alternate_and_open_with_the_user(roles: list[str]) -> None:
    settings = ChatSettings.model_validate(CHAT_ENVIRONMENT)
    messages: list[dict[str, Any]] = [{"role": "user", "content": "start"}]
    for position, role in enumerate(roles):
        if role == "tool_pair":
            call = {
                "id": f"call_{position}",
                "type": "function",
                "function": {"name": "get_weather", "arguments": "{}"},
            }
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
            messages.append({"role": "tool", "tool_call_id": f"call_{position}", "content": "sunny"})
        else:
            messages.append({"role": role, "content": f"text {position}"})
    result = converse(settings, messages=messages, tools=[WEATHER_TOOL])
    turn_roles = [turn["role"] for turn in result["messages"]]
    assert turn_roles[0] == "user"
    assert all(first != second for first, second in itertools.pairwise(turn_roles))
    guarded_blocks = [block for turn in result["messages"] for block in turn["content"] if "guardContent" in block]
    latest_user = next(message for message in reversed(messages) if message["role"] == "user")
    assert guarded_blocks == [guarded(latest_user["content"])]


# --- inference parameters ---------------------------------------------------------------------------


@pytest.mark.row(4)
def test_max_tokens_is_always_sent(settings: ChatSettings) -> None:
    assert converse(settings)["inferenceConfig"] == {"maxTokens": settings.DEFAULT_MAX_TOKENS}
    assert converse(settings, max_tokens=300)["inferenceConfig"] == {"maxTokens": 300}
    assert converse(settings, max_completion_tokens=200, max_tokens=300)["inferenceConfig"] == {"maxTokens": 200}
    assert converse(settings, max_tokens=settings.MAX_TOKENS_CEILING)["inferenceConfig"]["maxTokens"] == 8192


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": -5}, "max_tokens"),
        ({"max_completion_tokens": 0}, "max_completion_tokens"),
        ({"max_tokens": 8193}, "max_tokens"),
        ({"max_completion_tokens": 100_000, "max_tokens": 10}, "max_completion_tokens"),
    ],
)
@pytest.mark.row(4)
def test_bad_max_tokens_are_rejected(settings: ChatSettings, fields: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        converse(settings, **fields)
    assert raised.value.param == param


def test_sampling_parameters_map_to_inference_config(settings: ChatSettings) -> None:
    config = converse(settings, temperature=0.2, top_p=0.9, stop=["END", "STOP"])["inferenceConfig"]
    assert config == {"maxTokens": 1024, "temperature": 0.2, "topP": 0.9, "stopSequences": ["END", "STOP"]}
    assert converse(settings, stop="END")["inferenceConfig"]["stopSequences"] == ["END"]
    assert "stopSequences" not in converse(settings, stop=[])["inferenceConfig"]
    assert converse(settings, temperature=1)["inferenceConfig"]["temperature"] == 1


def test_a_temperature_converse_cannot_take_is_rejected(settings: ChatSettings) -> None:
    with pytest.raises(UnsupportedValue) as raised:
        converse(settings, temperature=1.5)
    assert raised.value.param == "temperature"


def test_empty_stop_sequences_are_rejected(settings: ChatSettings) -> None:
    with pytest.raises(InvalidRequest) as raised:
        converse(settings, stop=["END", ""])
    assert raised.value.param == "stop"


@pytest.mark.parametrize(
    ("effort", "sent"), [("minimal", "low"), ("low", "low"), ("medium", "medium"), ("high", "high")]
)
def test_reasoning_effort_is_sent_flat(settings: ChatSettings, effort: str, sent: str) -> None:
    assert converse(settings, reasoning_effort=effort)["additionalModelRequestFields"] == {"reasoning_effort": sent}


def test_fields_the_model_accepts_pass_through(settings: ChatSettings) -> None:
    fields: dict[str, Any] = {
        "seed": 7,
        "frequency_penalty": 0.5,
        "presence_penalty": -0.5,
        "logit_bias": {"1734": -100},
        "parallel_tool_calls": False,
    }
    assert converse(settings, **fields)["additionalModelRequestFields"] == fields


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("logprobs", True),
        ("top_logprobs", 3),
        ("store", True),
        ("modalities", ["text", "audio"]),
        ("audio", {"voice": "alloy", "format": "wav"}),
        ("prediction", {"type": "content", "content": "x"}),
        ("verbosity", "low"),
        ("web_search_options", {}),
        ("functions", [{"name": "f"}]),
        ("function_call", "auto"),
        ("prompt_cache_key", "k"),
    ],
)
def test_fields_that_cannot_be_honoured_are_rejected_by_name(settings: ChatSettings, field: str, value: Any) -> None:
    fields: dict[str, Any] = {field: value}
    with pytest.raises(UnsupportedParameter) as raised:
        converse(settings, **fields)
    assert (raised.value.param, raised.value.code) == (field, "unsupported_parameter")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("logprobs", False),
        ("top_logprobs", 0),
        ("store", False),
        ("modalities", ["text"]),
        ("service_tier", "auto"),
        ("n", 1),
    ],
)
def test_no_op_values_are_accepted(settings: ChatSettings, field: str, value: Any) -> None:
    fields: dict[str, Any] = {field: value}
    assert "additionalModelRequestFields" not in converse(settings, **fields)


@pytest.mark.row(2)
def test_more_than_one_choice_is_rejected(settings: ChatSettings) -> None:
    with pytest.raises(UnsupportedValue) as raised:
        converse(settings, n=2)
    assert raised.value.param == "n"
    with pytest.raises(InvalidRequest):
        converse(settings, n=0)


@pytest.mark.parametrize(("requested", "sent"), [("auto", None), ("default", "default"), ("flex", "flex")])
def test_an_allowed_service_tier_reaches_converse(settings: ChatSettings, requested: str, sent: str | None) -> None:
    translated = converse(settings, service_tier=requested)
    assert translated.get("serviceTier") == ({"type": sent} if sent else None)


@pytest.mark.parametrize("requested", ["priority", "scale", "reserved", "Flex"])
def test_a_service_tier_the_deployment_does_not_allow_is_a_400_naming_it(
    settings: ChatSettings, requested: str
) -> None:
    with pytest.raises(UnsupportedValue) as raised:
        converse(settings, service_tier=requested)
    assert raised.value.param == "service_tier"
    assert "auto, default, flex" in raised.value.message


def test_priority_is_served_once_the_deployment_allows_it(settings: ChatSettings) -> None:
    allowing = settings.model_copy(update={"SERVICE_TIERS": ("default", "flex", "priority")})
    translated = to_converse(request(service_tier="priority"), allowing, model_id=GPT_OSS_20B)
    validate_parameters(translated, CONVERSE_INPUT)
    assert translated["serviceTier"] == {"type": "priority"}


def test_stream_options_need_stream(settings: ChatSettings) -> None:
    with pytest.raises(InvalidRequest) as raised:
        converse(settings, stream_options={"include_usage": True})
    assert raised.value.param == "stream_options"
    assert "stream" not in converse(settings, stream=True, stream_options={"include_usage": True})


# --- structured output ------------------------------------------------------------------------------


def test_json_schema_becomes_converse_structured_output(settings: ChatSettings) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    }
    result = converse(
        settings,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "city", "description": "A city.", "schema": schema, "strict": True},
        },
    )
    assert result["outputConfig"] == {
        "textFormat": {
            "type": "json_schema",
            "structure": {"jsonSchema": {"schema": json.dumps(schema), "name": "city", "description": "A city."}},
        }
    }
    assert "outputConfig" not in converse(settings, response_format={"type": "text"})


def test_json_object_has_no_faithful_converse_equivalent(settings: ChatSettings) -> None:
    with pytest.raises(UnsupportedValue) as raised:
        converse(settings, response_format={"type": "json_object"})
    assert raised.value.param == "response_format.type"


def test_json_schema_without_a_schema_is_rejected(settings: ChatSettings) -> None:
    with pytest.raises(InvalidRequest) as raised:
        converse(settings, response_format={"type": "json_schema", "json_schema": {"name": "x"}})
    assert raised.value.param == "response_format.json_schema"


# --- tools --------------------------------------------------------------------------------------------


def test_tools_and_tool_choice_map_to_tool_config(settings: ChatSettings) -> None:
    spec = {
        "toolSpec": {
            "name": "get_weather",
            "description": "Current weather in a city.",
            "inputSchema": {"json": WEATHER_TOOL["function"]["parameters"]},  # type: ignore[index]
        }
    }
    assert converse(settings, tools=[WEATHER_TOOL])["toolConfig"] == {"tools": [spec]}
    assert converse(settings, tools=[WEATHER_TOOL], tool_choice="auto")["toolConfig"]["toolChoice"] == {"auto": {}}
    assert converse(settings, tools=[WEATHER_TOOL], tool_choice="required")["toolConfig"]["toolChoice"] == {"any": {}}
    named = {"type": "function", "function": {"name": "get_weather"}}
    assert converse(settings, tools=[WEATHER_TOOL], tool_choice=named)["toolConfig"]["toolChoice"] == {
        "tool": {"name": "get_weather"}
    }


def test_a_tool_without_parameters_gets_an_empty_object_schema(settings: ChatSettings) -> None:
    tool = {"type": "function", "function": {"name": "now", "strict": True}}
    assert converse(settings, tools=[tool])["toolConfig"]["tools"] == [
        {"toolSpec": {"name": "now", "inputSchema": {"json": {"type": "object", "properties": {}}}, "strict": True}}
    ]


def test_tool_choice_none_offers_no_tools(settings: ChatSettings) -> None:
    assert "toolConfig" not in converse(settings, tools=[WEATHER_TOOL], tool_choice="none")


def tool_history() -> list[dict[str, Any]]:
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    return [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'},
        {"role": "user", "content": "Thanks, and tomorrow?"},
    ]


def test_tool_history_maps_both_ways(settings: ChatSettings) -> None:
    result = converse(settings, messages=tool_history(), tools=[WEATHER_TOOL])
    assert result["messages"] == [
        {"role": "user", "content": [{"text": "Weather in Paris?"}]},
        {
            "role": "assistant",
            "content": [{"toolUse": {"toolUseId": "call_1", "name": "get_weather", "input": {"city": "Paris"}}}],
        },
        {
            "role": "user",
            "content": [
                {"toolResult": {"toolUseId": "call_1", "content": [{"text": '{"temp": 21}'}]}},
                guarded("Thanks, and tomorrow?"),
            ],
        },
    ]


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"messages": tool_history()}, "tools"),
        ({"messages": tool_history(), "tools": [WEATHER_TOOL], "tool_choice": "none"}, "tool_choice"),
        ({"tool_choice": "auto"}, "tool_choice"),
        ({"tools": [WEATHER_TOOL], "tool_choice": {"type": "function", "function": {"name": "other"}}}, "tool_choice"),
    ],
)
def test_tool_settings_that_cannot_be_honoured(settings: ChatSettings, fields: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        converse(settings, **fields)
    assert raised.value.param == param


@pytest.mark.parametrize("arguments", ["not json", "[1, 2]"])
def test_tool_call_arguments_must_be_a_json_object(settings: ChatSettings, arguments: str) -> None:
    messages = tool_history()
    messages[1]["tool_calls"][0]["function"]["arguments"] = arguments
    with pytest.raises(InvalidRequest) as raised:
        converse(settings, messages=messages, tools=[WEATHER_TOOL])
    assert raised.value.param == "messages[1].tool_calls[0].function.arguments"


def test_tool_messages_need_their_call_id(settings: ChatSettings) -> None:
    messages = tool_history()
    del messages[2]["tool_call_id"]
    with pytest.raises(InvalidRequest) as raised:
        converse(settings, messages=messages, tools=[WEATHER_TOOL])
    assert raised.value.param == "messages[2].tool_call_id"


# --- request metadata and size ------------------------------------------------------------------------


def test_user_metadata_and_caller_become_request_metadata(settings: ChatSettings) -> None:
    result = converse(
        settings, caller=CALLER, user="user-42@example.com", safety_identifier="h4sh", metadata={"team": "orders"}
    )
    assert result["requestMetadata"] == {
        "team": "orders",
        "user": "user-42@example.com",
        "safety_identifier": "h4sh",
        "caller": CALLER,
    }


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"user": "bad\u00e9user"}, "user"),
        ({"metadata": {"caller": "me"}}, "metadata"),
        ({"metadata": {"team": "a" * 257}}, "metadata.team"),
        ({"metadata": {f"k{index}": "v" for index in range(14)}}, "metadata"),
    ],
)
def test_metadata_bedrock_cannot_carry_is_rejected(settings: ChatSettings, fields: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        converse(settings, **fields)
    assert raised.value.param == param


def test_a_caller_requestmetadata_cannot_carry_is_left_out(settings: ChatSettings) -> None:
    assert "requestMetadata" not in converse(settings, caller="caller<with>brackets")


@pytest.mark.row(5)
def test_an_obviously_oversized_prompt_is_rejected_before_bedrock(settings: ChatSettings) -> None:
    with pytest.raises(ContextLengthExceeded) as raised:
        converse(settings, messages=[{"role": "user", "content": "word " * 110_000}])
    assert (raised.value.code, raised.value.param) == ("context_length_exceeded", "messages")
    assert converse(settings, messages=[{"role": "user", "content": "word " * 90_000}])


# --- responses --------------------------------------------------------------------------------------


@pytest.mark.row(11)
def test_reasoning_blocks_never_reach_content(load_event: Any) -> None:
    hidden = complete(load_event("converse_end_turn.json"))
    shown = complete(load_event("converse_end_turn.json"), include_reasoning=True)
    assert hidden.choices[0].message.content == shown.choices[0].message.content == "Paris."
    assert hidden.choices[0].message.reasoning_content is None
    assert "reasoning_content" not in hidden.model_dump_json()
    assert shown.choices[0].message.reasoning_content == "The user asks for the capital of France. It is Paris."


def test_reasoning_in_text_form_never_reaches_content() -> None:
    body = converse_response("<reasoning>Think first.</reasoning>\n\nThe answer.")
    assert complete(body).choices[0].message.content == "The answer."
    assert complete(body, include_reasoning=True).choices[0].message.reasoning_content == "Think first."


@pytest.mark.row(11)
def test_usage_and_identity_come_through(load_event: Any) -> None:
    completion = complete(load_event("converse_end_turn.json"))
    assert completion.usage.model_dump() == {"prompt_tokens": 91, "completion_tokens": 23, "total_tokens": 114}
    assert (completion.id, completion.model, completion.object) == ("chatcmpl-1", GPT_OSS_20B, "chat.completion")


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("guardrail_intervened", "content_filter"),
        ("content_filtered", "content_filter"),
    ],
)
@pytest.mark.row(11)
def test_stop_reasons_become_finish_reasons(stop_reason: str, finish: str) -> None:
    assert complete(converse_response(stop_reason=stop_reason)).choices[0].finish_reason == finish


@pytest.mark.parametrize("stop_reason", ["malformed_model_output", "malformed_tool_use"])
@pytest.mark.row(11)
def test_malformed_output_is_an_upstream_error(stop_reason: str) -> None:
    with pytest.raises(BedrockModelError):
        complete(converse_response(stop_reason=stop_reason))


def test_tool_use_becomes_tool_calls(load_event: Any) -> None:
    completion = complete(load_event("converse_tool_use.json"), tools_offered=True)
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.tool_calls is not None
    [call] = choice.message.tool_calls
    assert (call.id, call.type, call.function.name) == ("tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "function", "get_weather")
    assert json.loads(call.function.arguments) == {"city": "Paris", "unit": "celsius"}


@pytest.mark.row(11)
def test_tool_use_when_no_tools_were_offered_is_an_upstream_error(load_event: Any) -> None:
    with pytest.raises(BedrockModelError):
        complete(load_event("converse_tool_use.json"), tools_offered=False)


@pytest.mark.row(6)
def test_a_guardrail_intervention_returns_only_the_guardrail_message(load_event: Any) -> None:
    body = load_event("converse_guardrail_intervened.json")
    body["output"]["message"]["content"].insert(0, {"reasoningContent": {"reasoningText": {"text": "hidden"}}})
    completion = complete(body, include_reasoning=True)
    assert completion.choices[0].finish_reason == "content_filter"
    assert completion.choices[0].message.content == "Sorry, this request was blocked by the content policy."
    assert completion.choices[0].message.reasoning_content is None


def test_running_out_of_tokens_while_reasoning_gives_an_empty_answer() -> None:
    body = converse_response("<reasoning>long thoughts", stop_reason="max_tokens")
    choice = complete(body, include_reasoning=True).choices[0]
    assert (choice.message.content, choice.finish_reason, choice.message.reasoning_content) == (
        "",
        "length",
        "long thoughts",
    )
