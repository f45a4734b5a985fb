"""The Responses API as its real clients use it, unchanged, against `python -m local`'s chat API over loopback.

The `openai` SDK (`responses.create`, `.stream`, `.parse`), the OpenAI Agents SDK (an agent with a function tool,
plain and streamed) and LangChain's `ChatOpenAI(use_responses_api=True)`; the chat app runs in its own process
behind the local API Gateway, with the offline model and the word guardrail behind it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from agents import (
    Agent,
    ModelBehaviorError,
    ModelSettings,
    OpenAIResponsesModel,
    RunConfig,
    Runner,
    function_tool,
    set_tracing_disabled,
)
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

from local.chat_server import ChatApiOptions, RunningChatApi, running_chat_api
from local.templates import Template

pytestmark = [pytest.mark.enable_socket]

MODEL = "gpt-oss-20b"
BLOCKED = "Sorry, the answer was blocked by the content policy."
WEATHER: openai.types.responses.FunctionToolParam = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}


class CityFacts(BaseModel):
    """A schema the model fills in."""

    city: str
    country: str
    population: int


@pytest.fixture(scope="module")
def api(template: Template) -> Iterator[RunningChatApi]:
    """The chat API with the offline model answering at once, and the word guardrail."""
    with running_chat_api(template, ChatApiOptions(trigger_words=("forbidden",), tokens_per_second=0)) as running:
        yield running


@pytest.fixture
def client(api: RunningChatApi) -> Iterator[openai.OpenAI]:
    """An OpenAI client on the local API (no retries, so every failure shows)."""
    with openai.OpenAI(base_url=api.url, api_key="local", max_retries=0) as sdk:
        yield sdk


def test_responses_create_answers_with_the_guardrail_applied(client: openai.OpenAI) -> None:
    response = client.responses.create(model=MODEL, input="What is the capital of France?", instructions="Be brief.")
    assert response.status == "completed"
    assert "What is the capital of France?" in response.output_text
    assert response.usage is not None
    assert response.usage.output_tokens > 0
    blocked = client.responses.create(model=MODEL, input="Tell me something forbidden.")
    assert blocked.status == "incomplete"
    assert blocked.incomplete_details is not None
    assert blocked.incomplete_details.reason == "content_filter"
    assert blocked.output_text == "Sorry, this request was blocked by the content policy."


def test_responses_stream_delivers_text_deltas_and_the_final_response(client: openai.OpenAI) -> None:
    deltas: list[str] = []
    with client.responses.stream(model=MODEL, input="What does Amazon Bedrock do?") as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
        final = stream.get_final_response()
    assert len(deltas) > 3
    assert "".join(deltas) == final.output_text
    assert final.status == "completed"


def test_responses_parse_fills_a_pydantic_schema(client: openai.OpenAI) -> None:
    parsed = client.responses.parse(model=MODEL, input="Facts about Paris, please.", text_format=CityFacts)
    facts = parsed.output_parsed
    assert isinstance(facts, CityFacts)
    assert facts.city == "Paris"


def test_a_function_tool_is_called_with_an_argument_from_the_prompt_and_its_output_answered(
    client: openai.OpenAI,
) -> None:
    first = client.responses.create(model=MODEL, input="What is the weather in Paris?", tools=[WEATHER])
    [call] = [item for item in first.output if item.type == "function_call"]
    assert call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Paris"}
    # The earlier output items are replayed as they came, as the SDK's examples do.
    history: list[Any] = [
        {"role": "user", "content": "What is the weather in Paris?"},
        *[item.model_dump(exclude_none=True) for item in first.output],
        {"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21 C"},
    ]
    second = client.responses.create(model=MODEL, input=history, tools=[WEATHER])
    assert "sunny, 21 C" in second.output_text


def test_service_tier_flex_is_served_and_echoed(client: openai.OpenAI) -> None:
    response = client.responses.create(model=MODEL, input="Hello", service_tier="flex")
    assert response.service_tier == "flex"


def test_a_field_that_cannot_be_honoured_is_a_400_naming_it(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client.responses.create(model=MODEL, input="Hello", previous_response_id="resp_123")
    assert raised.value.param == "previous_response_id"
    with pytest.raises(openai.BadRequestError) as raised:
        client.responses.create(model=MODEL, input="Hello", tools=[{"type": "web_search"}])
    assert raised.value.param == "tools[0].type"


# --- the OpenAI Agents SDK -------------------------------------------------------------------------------


def _agent(api: RunningChatApi, calls: list[str]) -> tuple[Agent, RunConfig]:
    @function_tool
    def get_weather(city: str) -> str:
        """Current weather in a city."""
        calls.append(city)
        return f"sunny and 21 C in {city}"

    set_tracing_disabled(True)
    client = openai.AsyncOpenAI(base_url=api.url, api_key="local", max_retries=0)
    model = OpenAIResponsesModel(model=MODEL, openai_client=client)
    agent = Agent(name="Forecaster", instructions="Answer weather questions with the tool.", tools=[get_weather])
    return agent, RunConfig(model=model, model_settings=ModelSettings(), tracing_disabled=True)


def test_an_agent_calls_its_function_tool_and_answers(api: RunningChatApi) -> None:
    calls: list[str] = []
    agent, config = _agent(api, calls)
    result = Runner.run_sync(agent, "What is the weather in Paris?", run_config=config)
    assert calls == ["Paris"]
    assert "sunny and 21 C in Paris" in result.final_output


def test_a_streamed_agent_run_calls_the_tool_and_streams_the_answer(api: RunningChatApi) -> None:
    calls: list[str] = []
    agent, config = _agent(api, calls)

    async def run() -> tuple[list[str], str]:
        streamed = Runner.run_streamed(agent, "What is the weather in Lisbon?", run_config=config)
        deltas = [
            event.data.delta
            async for event in streamed.stream_events()
            if event.type == "raw_response_event" and event.data.type == "response.output_text.delta"
        ]
        return deltas, str(streamed.final_output)

    deltas, final = asyncio.run(run())
    assert calls == ["Lisbon"]
    assert "sunny and 21 C in Lisbon" in final
    assert final in "".join(deltas)


def test_an_agent_run_the_guardrail_blocks_ends_with_the_content_filter_outcome(api: RunningChatApi) -> None:
    calls: list[str] = []
    agent, config = _agent(api, calls)
    # The Agents SDK ends a run on an incomplete response, as it does against OpenAI's own content filter.
    with pytest.raises(ModelBehaviorError, match="content_filter"):
        Runner.run_sync(agent, "What is the forbidden weather in Paris?", run_config=config)
    assert calls == []


# --- LangChain --------------------------------------------------------------------------------------------


def test_langchain_chat_openai_on_the_responses_api(api: RunningChatApi) -> None:
    llm = ChatOpenAI(model=MODEL, base_url=api.url, api_key="local", use_responses_api=True, max_retries=0)
    answer = llm.invoke("What is the capital of France?")
    assert isinstance(answer, AIMessage)
    assert "What is the capital of France?" in answer.text
    with_tools = llm.bind_tools([dict(WEATHER)])
    question = HumanMessage("What is the weather in Paris?")
    called = with_tools.invoke([question])
    [call] = called.tool_calls
    assert (call["name"], call["args"]) == ("get_weather", {"city": "Paris"})
    final = with_tools.invoke([question, called, ToolMessage("sunny, 21 C", tool_call_id=str(call["id"]))])
    assert "sunny, 21 C" in final.text
