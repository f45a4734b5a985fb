"""The official OpenAI Python SDK against the chat handler (httpx transport -> API Gateway event -> handler)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from chat.app import app
from tests.apigw_bridge import handler_transport
from tests.bedrock_fakes import (
    GPT_OSS_20B,
    GPT_OSS_120B,
    BedrockFake,
    converse_response,
    converse_stream_events,
    error_response,
)

MESSAGES: list[openai.types.chat.ChatCompletionMessageParam] = [
    {"role": "developer", "content": "Answer in one word."},
    {"role": "user", "content": "What is the capital of France?"},
]


@pytest.fixture
def client(bedrock: BedrockFake) -> Iterator[openai.OpenAI]:
    """An OpenAI client whose every request is answered by the chat handler (no SDK retries)."""
    http_client = httpx.Client(transport=handler_transport(app))
    # openai 3.x is typed for its own httpx2 client but also accepts httpx clients, which callers still pass.
    with openai.OpenAI(
        base_url="https://chat.example.internal/v1",
        api_key="x",
        http_client=http_client,  # type: ignore[arg-type]
        max_retries=0,
    ) as sdk:
        yield sdk


def test_a_plain_completion(client: openai.OpenAI, bedrock: BedrockFake) -> None:
    bedrock.reply(converse_response("Paris.", reasoning="France's capital is Paris."))
    completion = client.chat.completions.create(model="gpt-oss-120b", messages=MESSAGES, max_completion_tokens=256)
    assert completion.object == "chat.completion"
    assert completion.model == GPT_OSS_120B
    assert completion.choices[0].message.content == "Paris."
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens, completion.usage.total_tokens) == (
        12,
        7,
        19,
    )


def test_reasoning_through_the_extension_field(client: openai.OpenAI, bedrock: BedrockFake) -> None:
    bedrock.reply(converse_response("Paris.", reasoning="France's capital is Paris."))
    completion = client.chat.completions.create(
        model="gpt-oss-20b", messages=MESSAGES, reasoning_effort="low", extra_body={"include_reasoning": True}
    )
    message = completion.choices[0].message
    assert message.content == "Paris."
    assert message.model_extra == {"reasoning_content": "France's capital is Paris."}


def test_streaming(client: openai.OpenAI, bedrock: BedrockFake) -> None:
    bedrock.reply_stream(converse_stream_events("Paris."))
    stream = client.chat.completions.create(
        model="gpt-oss-20b", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    content = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    finishes = [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices and chunk.choices[0].finish_reason]
    assert content == "Paris."
    assert finishes == ["stop"]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 19
    assert {chunk.object for chunk in chunks} == {"chat.completion.chunk"}


def test_list_and_retrieve_models(client: openai.OpenAI) -> None:
    assert [model.id for model in client.models.list()] == [GPT_OSS_20B, GPT_OSS_120B, "gpt-oss-20b", "gpt-oss-120b"]
    assert client.models.retrieve(GPT_OSS_20B).id == GPT_OSS_20B


def test_bad_requests_raise_bad_request_error_with_code_and_param(client: openai.OpenAI, bedrock: BedrockFake) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model="gpt-oss-20b", messages=MESSAGES, n=3)
    assert (raised.value.status_code, raised.value.code, raised.value.param) == (400, "unsupported_value", "n")
    assert raised.value.type == "invalid_request_error"
    assert raised.value.request_id is not None
    assert raised.value.request_id in raised.value.message
    assert bedrock.calls == []


@pytest.mark.row(3)
def test_unknown_models_raise_not_found(client: openai.OpenAI, bedrock: BedrockFake) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert raised.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4o")
    assert bedrock.calls == []


def test_throttling_raises_rate_limit_error_with_retry_after(client: openai.OpenAI, bedrock: BedrockFake) -> None:
    bedrock.on_send(lambda request, _: error_response(request, 429, "ThrottlingException"))
    with pytest.raises(openai.RateLimitError) as raised:
        client.chat.completions.create(model="gpt-oss-20b", messages=MESSAGES)
    assert raised.value.status_code == 429
    assert raised.value.code == "rate_limit_exceeded"
    assert int(raised.value.response.headers["retry-after"]) >= 1


def test_a_guardrail_intervention_is_a_normal_answer(client: openai.OpenAI, bedrock: BedrockFake) -> None:
    bedrock.reply(converse_response("Sorry, this request was blocked.", stop_reason="guardrail_intervened"))
    completion = client.chat.completions.create(model="gpt-oss-20b", messages=MESSAGES)
    assert completion.choices[0].finish_reason == "content_filter"
    assert completion.choices[0].message.content == "Sorry, this request was blocked."
