"""The official openai SDK against the local chat API over real HTTP on loopback (offline backend)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import boto3
import httpx
import openai
import pytest

from infra.constructs.chat_api import CHAT_HANDLER
from local.chat_server import ChatApiOptions, RunningChatApi, running_chat_api
from local.templates import CHAT_HANDLER as LOCAL_CHAT_HANDLER
from local.templates import Template, guardrail_messages
from tests.local.cases import OPENAI_WEATHER_TOOL

pytestmark = pytest.mark.enable_socket

QUESTION = "What is the capital of France?"
MESSAGES: list[openai.types.chat.ChatCompletionMessageParam] = [
    {"role": "developer", "content": "Answer in one word."},
    {"role": "user", "content": QUESTION},
]


@pytest.fixture(scope="module")
def api(template: Template) -> Iterator[RunningChatApi]:
    """The chat API served from the synthesized template, with the offline model; the function's environment is
    its own process's, so this process's stays as it was throughout."""
    before = _environment()
    with running_chat_api(template, ChatApiOptions(trigger_words=("forbidden",))) as running:
        assert _environment() == before
        yield running
    assert _environment() == before


def _environment() -> dict[str, str]:
    # pytest keeps its own variable up to date; everything else must be as it was.
    return {name: value for name, value in os.environ.items() if name != "PYTEST_CURRENT_TEST"}


@pytest.fixture
def client(api: RunningChatApi) -> Iterator[openai.OpenAI]:
    """An OpenAI client on the local API (no retries, so every failure shows)."""
    with openai.OpenAI(base_url=api.url, api_key="local", max_retries=0) as sdk:
        yield sdk


def test_the_handler_string_is_the_one_infra_deploys() -> None:
    assert LOCAL_CHAT_HANDLER == CHAT_HANDLER


def test_the_handler_runs_with_the_templates_environment(api: RunningChatApi, template: Template) -> None:
    assert api.settings.MODEL_IDS == ("openai.gpt-oss-20b-1:0", "openai.gpt-oss-120b-1:0")
    assert api.settings.MAX_TOKENS_CEILING == 16_384
    assert (api.guardrail.guardrail_id, api.guardrail.guardrail_version) == ("localguardrail", "1")
    assert guardrail_messages(template) == (api.guardrail.blocked_input_message, api.guardrail.blocked_output_message)


def test_a_plain_completion(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model="gpt-oss-20b", messages=MESSAGES, max_completion_tokens=2048)
    assert completion.object == "chat.completion"
    assert completion.model == "openai.gpt-oss-20b-1:0"
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.content is not None
    assert choice.message.content.startswith(f'You asked: "{QUESTION}"')
    assert "<reasoning>" not in choice.message.content
    assert completion.usage is not None
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens > 0


def test_the_offline_model_is_deterministic(client: openai.OpenAI) -> None:
    def ask() -> tuple[Any, ...]:
        completion = client.chat.completions.create(
            model="gpt-oss-120b", messages=MESSAGES, extra_body={"include_reasoning": True}
        )
        message = completion.choices[0].message
        return message.content, message.model_extra, completion.usage

    first = ask()
    assert first == ask()
    assert first[1] is not None
    assert QUESTION in first[1]["reasoning_content"]


def test_streaming(client: openai.OpenAI) -> None:
    plain = client.chat.completions.create(model="gpt-oss-20b", messages=MESSAGES)
    stream = client.chat.completions.create(
        model="gpt-oss-20b", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert {chunk.object for chunk in chunks} == {"chat.completion.chunk"}
    assert (
        "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
        == plain.choices[0].message.content
    )
    assert [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices and chunk.choices[0].finish_reason] == [
        "stop"
    ]
    assert chunks[-1].usage == plain.usage


def test_streaming_is_server_sent_events(api: RunningChatApi) -> None:
    body = {"model": "gpt-oss-20b", "messages": [{"role": "user", "content": "Hi"}], "stream": True}
    response = httpx.post(f"{api.url}/chat/completions", json=body)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.text.rstrip().endswith("data: [DONE]")


def test_models_are_listed_and_retrieved(client: openai.OpenAI) -> None:
    assert [model.id for model in client.models.list()] == [
        "openai.gpt-oss-20b-1:0",
        "openai.gpt-oss-120b-1:0",
        "gpt-oss-120b",
        "gpt-oss-20b",
    ]
    assert client.models.retrieve("openai.gpt-oss-120b-1:0").id == "openai.gpt-oss-120b-1:0"


def test_a_bad_request_names_the_param(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model="gpt-oss-20b", messages=MESSAGES, max_completion_tokens=100_000)
    assert (raised.value.status_code, raised.value.param) == (400, "max_completion_tokens")
    assert raised.value.request_id is not None and raised.value.request_id in raised.value.message


def test_an_unknown_model_is_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert raised.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4o")


def test_a_trigger_word_is_a_content_filter_answer(client: openai.OpenAI, api: RunningChatApi) -> None:
    completion = client.chat.completions.create(
        model="gpt-oss-20b", messages=[{"role": "user", "content": "Tell me the Forbidden recipe."}]
    )
    assert completion.choices[0].finish_reason == "content_filter"
    assert completion.choices[0].message.content == api.guardrail.blocked_input_message


def test_a_tiny_token_budget_ends_in_length(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model="gpt-oss-20b", messages=MESSAGES, max_completion_tokens=8)
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None and completion.usage.completion_tokens == 8


def test_a_tool_round_trip(client: openai.OpenAI) -> None:
    question: openai.types.chat.ChatCompletionMessageParam = {"role": "user", "content": "Weather in Lisbon?"}
    first = client.chat.completions.create(model="gpt-oss-20b", messages=[question], tools=[OPENAI_WEATHER_TOOL])
    assert first.choices[0].finish_reason == "tool_calls"
    [call] = first.choices[0].message.tool_calls or []
    assert call.type == "function"
    assert (call.function.name, json.loads(call.function.arguments)) == ("get_weather", {"city": "Lisbon"})
    second = client.chat.completions.create(
        model="gpt-oss-20b",
        messages=[
            question,
            {"role": "assistant", "tool_calls": [call.model_dump(include={"id", "type", "function"})]},  # type: ignore[list-item]
            {"role": "tool", "tool_call_id": call.id, "content": "18 °C, sunny"},
        ],
        tools=[OPENAI_WEATHER_TOOL],
    )
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content == "get_weather returned 18 °C, sunny."


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("GET", "/v1/completions", None, 403, "missing_authentication_token"),
        ("GET", "/v1/chat/completions", None, 403, "missing_authentication_token"),
        ("POST", "/v1/chat/completions", {"model": 5, "messages": []}, 400, "invalid_request_body"),
    ],
)
def test_api_gateway_answers_before_the_function(
    api: RunningChatApi, method: str, path: str, body: Any, status: int, code: str
) -> None:
    response = httpx.request(method, api.url.removesuffix("/v1") + path, json=body)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code
    assert error["request_id"] == response.headers["x-amzn-RequestId"]


def test_a_body_over_api_gateways_limit_is_413(api: RunningChatApi) -> None:
    response = httpx.post(f"{api.url}/chat/completions", content=b"x" * (10 * 1024 * 1024 + 1))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


@pytest.mark.row(12)
def test_an_idempotency_key_replays_from_the_local_table(client: openai.OpenAI, api: RunningChatApi) -> None:
    # moto's DynamoDB on loopback, never AWS: the table comes from the template, the endpoint from the runner.
    assert api.aws_url is not None
    assert api.aws_url.startswith("http://127.0.0.1:")
    key = {"Idempotency-Key": "local-replay-1"}
    first = client.chat.completions.create(model="gpt-oss-20b", messages=MESSAGES, extra_headers=key)
    # The function (in its own process) wrote the record there.
    table = api.settings.IDEMPOTENCY_TABLE_NAME
    dynamodb = boto3.client(
        "dynamodb",
        endpoint_url=api.aws_url,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )
    assert dynamodb.scan(TableName=str(table))["Count"] == 1
    again = client.chat.completions.create(model="gpt-oss-20b", messages=MESSAGES, extra_headers=key)
    assert again.model_dump() == first.model_dump()
    other = client.chat.completions.create(model="gpt-oss-20b", messages=MESSAGES)
    assert other.id != first.id
    with pytest.raises(openai.UnprocessableEntityError) as reused:
        client.chat.completions.create(model="gpt-oss-120b", messages=MESSAGES, extra_headers=key)
    assert reused.value.code == "idempotency_key_reused"
