"""The deployed chat API, called as an internal service would: the openai SDK, signed with SigV4."""

from __future__ import annotations

import time

import httpx2 as httpx
import openai
import pytest

from tests.e2e.sigv4 import SigV4

pytestmark = [pytest.mark.e2e, pytest.mark.enable_socket]


def _client(api_url: str, region: str, *, signed: bool = True) -> openai.OpenAI:
    http = httpx.Client(auth=SigV4(region)) if signed else httpx.Client()
    return openai.OpenAI(base_url=api_url, api_key="unused", http_client=http, max_retries=0)


def test_completion_through_the_guardrail(api_url: str, region: str) -> None:
    answer = _client(api_url, region).chat.completions.create(
        model="gpt-oss-20b", messages=[{"role": "user", "content": "Say hello in one word."}], max_tokens=512
    )
    assert answer.choices[0].finish_reason in {"stop", "length", "content_filter"}
    assert answer.usage is not None and answer.usage.total_tokens > 0


@pytest.mark.row(13)
def test_unsigned_request_is_refused_by_the_gateway_in_the_openai_envelope(api_url: str, region: str) -> None:
    with pytest.raises(openai.PermissionDeniedError) as refused:
        _client(api_url, region, signed=False).models.list()
    assert refused.value.status_code == 403


def test_a_streamed_answer_arrives_token_by_token(api_url: str, region: str) -> None:
    """Through API Gateway's response streaming, the first content chunk comes well before the last one."""
    started = time.monotonic()
    arrivals: list[float] = []
    finish = None
    stream = _client(api_url, region).chat.completions.create(
        model="gpt-oss-120b",
        messages=[{"role": "user", "content": "Count from 1 to 200, one number per line."}],
        max_tokens=4096,
        reasoning_effort="low",
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.monotonic() - started)
        if chunk.choices and chunk.choices[0].finish_reason:
            finish = chunk.choices[0].finish_reason
    total = time.monotonic() - started
    assert finish in {"stop", "length"}
    assert len(arrivals) > 10, "the answer came in a few pieces: the edge buffered it"
    # Buffered, the first piece would arrive with the last; streamed, it arrives at a fraction of the total.
    assert arrivals[0] < 0.5 * total, (arrivals[0], total)


def test_responses_with_a_function_tool_and_a_flex_tier(api_url: str, region: str) -> None:
    """The Responses API through the deployed edge: a tool call, its output, an answer, on the flex tier."""
    client = _client(api_url, region)
    tool: openai.types.responses.FunctionToolParam = {
        "type": "function",
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        "strict": False,
    }
    question = "What is the weather in Paris? Use the tool."
    first = client.responses.create(
        model="gpt-oss-120b", input=question, tools=[tool], tool_choice="required", service_tier="flex"
    )
    assert first.service_tier == "flex"
    [call] = [item for item in first.output if item.type == "function_call"]
    history: list[object] = [
        {"role": "user", "content": question},
        *[item.model_dump(exclude_none=True) for item in first.output],
        {"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21 C"},
    ]
    with client.responses.stream(model="gpt-oss-120b", input=history, tools=[tool]) as stream:  # type: ignore[arg-type]
        final = stream.get_final_response()
    assert final.status in {"completed", "incomplete"}
    assert final.output_text
