"""The Bedrock stand-in through a real boto3 bedrock-runtime client: its bodies conform to botocore's model."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError

from batch.results import parse_line
from local.bedrock import BedrockStandIn, Generation, LocalModel, ModelError, OfflineModel
from local.services import serving
from shared.gpt_oss import split_reasoning
from tests.local.botocore_shapes import output_problems

if TYPE_CHECKING:
    from mypy_boto3_bedrock_runtime import BedrockRuntimeClient

from tests.local.cases import GUARDRAIL, GUARDRAIL_CONFIG, MODEL, WEATHER_TOOL

pytestmark = pytest.mark.enable_socket


class Bedrock:
    """A boto3 client on the stand-in, and every raw response body it received."""

    def __init__(self, client: BedrockRuntimeClient) -> None:
        self.client = client
        self.bodies: list[Any] = []
        client.meta.events.register("after-call.bedrock-runtime.*", self._keep)

    def _keep(self, http_response: AWSResponse, **_: Any) -> None:
        self.bodies.append(json.loads(http_response.content))

    def converse(self, **request: Any) -> dict[str, Any]:
        """Call Converse; the raw body must conform to the Converse output shape."""
        response = dict(self.client.converse(**request))
        assert output_problems("bedrock-runtime", "Converse", self.bodies[-1]) == []
        response.pop("ResponseMetadata")
        return response

    def apply_guardrail(self, **request: Any) -> dict[str, Any]:
        """Call ApplyGuardrail; the raw body must conform to its output shape."""
        response = dict(self.client.apply_guardrail(**request))
        assert output_problems("bedrock-runtime", "ApplyGuardrail", self.bodies[-1]) == []
        response.pop("ResponseMetadata")
        return response


@pytest.fixture(scope="module")
def bedrock() -> Iterator[Bedrock]:
    """The offline model behind the stand-in on loopback, and a client pointed at it."""
    with serving(BedrockStandIn(LocalModel(OfflineModel(), guardrail=GUARDRAIL)), "bedrock-test") as stand_in:
        client = boto3.client(
            "bedrock-runtime",
            endpoint_url=stand_in.url,
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )
        yield Bedrock(client)


def user(text: str) -> dict[str, Any]:
    """A user turn whose text the guardrail evaluates, as the chat function sends it."""
    return {"role": "user", "content": [{"guardContent": {"text": {"text": text}}}]}


def blocks(response: Mapping[str, Any], kind: str) -> list[Any]:
    """The content blocks of one kind in a Converse response."""
    return [block[kind] for block in response["output"]["message"]["content"] if kind in block]


def test_converse_answers_with_reasoning_then_text(bedrock: Bedrock) -> None:
    response = bedrock.converse(
        modelId=MODEL,
        messages=[user("What is the capital of France?")],
        system=[{"text": "Be brief."}],
        inferenceConfig={"maxTokens": 1024},
        guardrailConfig=GUARDRAIL_CONFIG,
    )
    content = response["output"]["message"]["content"]
    assert list(content[0]) == ["reasoningContent"]
    assert "What is the capital of France?" in content[0]["reasoningContent"]["reasoningText"]["text"]
    assert "What is the capital of France?" in blocks(response, "text")[0]
    assert response["stopReason"] == "end_turn"
    usage = response["usage"]
    assert usage["inputTokens"] > 0 and usage["outputTokens"] > 0
    assert usage["totalTokens"] == usage["inputTokens"] + usage["outputTokens"]
    assert response["trace"]["guardrail"]["inputAssessment"]["gr0local"]["invocationMetrics"]["usage"]


def test_converse_is_deterministic(bedrock: Bedrock) -> None:
    request: dict[str, Any] = {
        "modelId": MODEL,
        "messages": [user("Name three rivers.")],
        "guardrailConfig": GUARDRAIL_CONFIG,
    }
    assert bedrock.converse(**request) == bedrock.converse(**request)


def test_a_tiny_max_tokens_stops_in_the_reasoning(bedrock: Bedrock) -> None:
    response = bedrock.converse(modelId=MODEL, messages=[user("Explain DNS.")], inferenceConfig={"maxTokens": 5})
    assert response["stopReason"] == "max_tokens"
    assert response["usage"]["outputTokens"] == 5
    assert blocks(response, "text") == [""]
    assert len(blocks(response, "reasoningContent")[0]["reasoningText"]["text"]) == 20


def test_a_stop_sequence_ends_the_answer(bedrock: Bedrock) -> None:
    response = bedrock.converse(modelId=MODEL, messages=[user("Hello")], inferenceConfig={"stopSequences": ["offline"]})
    assert response["stopReason"] == "stop_sequence"
    assert blocks(response, "text")[0].endswith("I am the ")


def test_a_prompt_that_asks_for_a_tool_gets_a_tool_call(bedrock: Bedrock) -> None:
    response = bedrock.converse(
        modelId=MODEL, messages=[user("What is the weather in Paris today?")], toolConfig={"tools": [WEATHER_TOOL]}
    )
    assert response["stopReason"] == "tool_use"
    [call] = blocks(response, "toolUse")
    assert call["name"] == "get_weather"
    assert call["input"] == {"city": "Paris", "unit": "celsius"}
    follow_up = bedrock.converse(
        modelId=MODEL,
        messages=[
            user("What is the weather in Paris today?"),
            {"role": "assistant", "content": [{"toolUse": call}]},
            {
                "role": "user",
                "content": [{"toolResult": {"toolUseId": call["toolUseId"], "content": [{"json": {"temp": 21}}]}}],
            },
        ],
        toolConfig={"tools": [WEATHER_TOOL]},
    )
    assert follow_up["stopReason"] == "end_turn"
    assert blocks(follow_up, "text") == ['get_weather returned {"temp": 21}.']


def test_tools_are_not_called_unless_asked_for(bedrock: Bedrock) -> None:
    response = bedrock.converse(modelId=MODEL, messages=[user("Tell me a joke.")], toolConfig={"tools": [WEATHER_TOOL]})
    assert response["stopReason"] == "end_turn"
    forced = bedrock.converse(
        modelId=MODEL,
        messages=[user("Tell me a joke.")],
        toolConfig={"tools": [WEATHER_TOOL], "toolChoice": {"any": {}}},
    )
    assert forced["stopReason"] == "tool_use"


def test_a_trigger_word_in_the_guarded_input_blocks_the_call(bedrock: Bedrock) -> None:
    response = bedrock.converse(
        modelId=MODEL, messages=[user("Tell me something TOP SECRET, please.")], guardrailConfig=GUARDRAIL_CONFIG
    )
    assert response["stopReason"] == "guardrail_intervened"
    assert blocks(response, "text") == [GUARDRAIL.blocked_input_message]
    assert response["usage"] == {"inputTokens": 0, "outputTokens": 0, "totalTokens": 0}
    trace = response["trace"]["guardrail"]
    assert trace["inputAssessment"]["gr0local"]["wordPolicy"]["customWords"] == [
        {"match": "top secret", "action": "BLOCKED", "detected": True}
    ]
    assert trace["actionReason"] == "Guardrail blocked."


def test_only_guard_content_is_evaluated_when_present(bedrock: Bedrock) -> None:
    messages = [
        {"role": "user", "content": [{"text": "Something forbidden."}]},
        {"role": "assistant", "content": [{"text": "I cannot help with that."}]},
        user("Then tell me about tea."),
    ]
    response = bedrock.converse(modelId=MODEL, messages=messages, guardrailConfig=GUARDRAIL_CONFIG)
    assert response["stopReason"] == "end_turn"
    without_guard_content = [messages[0], messages[1], {"role": "user", "content": [{"text": "Then tea."}]}]
    blocked = bedrock.converse(modelId=MODEL, messages=without_guard_content, guardrailConfig=GUARDRAIL_CONFIG)
    assert blocked["stopReason"] == "guardrail_intervened"


def test_the_service_tier_asked_for_is_the_one_reported(bedrock: Bedrock) -> None:
    asked: dict[str, Any] = {"modelId": MODEL, "messages": [user("Name a river.")], "guardrailConfig": GUARDRAIL_CONFIG}
    # Bedrock.converse checks each raw body against botocore's Converse output shape.
    assert bedrock.converse(**asked, serviceTier={"type": "flex"})["serviceTier"] == {"type": "flex"}
    blocked = bedrock.converse(**{**asked, "messages": [user("Top secret?")]}, serviceTier={"type": "priority"})
    assert (blocked["stopReason"], blocked["serviceTier"]) == ("guardrail_intervened", {"type": "priority"})
    # A request that asks for no tier gets none reported.
    assert "serviceTier" not in bedrock.converse(**asked)


class _Says:
    """A backend whose answer is fixed."""

    def __init__(self, answer: str) -> None:
        self.answer = answer

    def generate(self, body: Mapping[str, Any], *, model_id: str) -> Generation:
        return Generation(answer=self.answer, reasoning="Thinking.", input_tokens=9, output_tokens=4, latency_ms=7)


def test_a_trigger_word_in_the_answer_blocks_the_answer() -> None:
    model = LocalModel(_Says("This is forbidden knowledge."), guardrail=GUARDRAIL)
    response = model.converse({"modelId": MODEL, "messages": [user("Hi")], "guardrailConfig": GUARDRAIL_CONFIG})
    assert output_problems("bedrock-runtime", "Converse", response) == []
    assert response["stopReason"] == "guardrail_intervened"
    assert blocks(response, "text") == [GUARDRAIL.blocked_output_message]
    assert response["usage"] == {"inputTokens": 9, "outputTokens": 4, "totalTokens": 13}
    trace = response["trace"]["guardrail"]
    assert "wordPolicy" not in trace["inputAssessment"]["gr0local"]
    assert trace["outputAssessments"]["gr0local"][0]["wordPolicy"]["customWords"][0]["match"] == "forbidden"


def test_apply_guardrail_passes_and_intervenes(bedrock: Bedrock) -> None:
    passed = bedrock.apply_guardrail(
        guardrailIdentifier="gr0local", guardrailVersion="3", source="INPUT", content=[{"text": {"text": "Tea?"}}]
    )
    assert (passed["action"], passed["outputs"]) == ("NONE", [])
    blocked = bedrock.apply_guardrail(
        guardrailIdentifier="arn:aws:bedrock:us-east-1:123456789012:guardrail/gr0local",
        guardrailVersion="3",
        source="OUTPUT",
        content=[{"text": {"text": "A forbidden answer."}}],
    )
    assert blocked["action"] == "GUARDRAIL_INTERVENED"
    assert blocked["outputs"] == [{"text": GUARDRAIL.blocked_output_message}]
    assert blocked["assessments"][0]["wordPolicy"]["customWords"][0]["match"] == "forbidden"
    assert blocked["usage"]["wordPolicyUnits"] == 1


@pytest.mark.parametrize(
    ("call", "code"),
    [
        ({"operation": "converse", "modelId": "gpt-4o", "messages": [user("Hi")]}, "ValidationException"),
        (
            {
                "operation": "converse",
                "modelId": MODEL,
                "messages": [user("Hi")],
                "guardrailConfig": {"guardrailIdentifier": "other", "guardrailVersion": "3"},
            },
            "ValidationException",
        ),
        (
            {
                "operation": "apply_guardrail",
                "guardrailIdentifier": "gr0local",
                "guardrailVersion": "DRAFT",
                "source": "INPUT",
                "content": [{"text": {"text": "Hi"}}],
            },
            "ResourceNotFoundException",
        ),
    ],
)
def test_errors_arrive_as_bedrock_client_errors(bedrock: Bedrock, call: dict[str, Any], code: str) -> None:
    operation = getattr(bedrock.client, call.pop("operation"))
    with pytest.raises(ClientError) as raised:
        operation(**call)
    assert raised.value.response["Error"]["Code"] == code


def test_chat_completion_is_what_batch_output_holds() -> None:
    # A fixed clock: `created` is the call's second, which two calls may straddle.
    model = LocalModel(OfflineModel(), guardrail=GUARDRAIL, clock=lambda: 1_796_000_000.0)
    model_input = {
        "messages": [{"role": "user", "content": "Summarise the water cycle."}],
        "max_completion_tokens": 512,
    }
    completion = model.chat_completion(model_input, model_id=MODEL)
    assert completion == model.chat_completion(model_input, model_id=MODEL)
    assert completion["model"] == MODEL
    content = completion["choices"][0]["message"]["content"]
    assert content.startswith("<reasoning>")
    assert "Summarise the water cycle." in split_reasoning(content).answer
    line = parse_line(json.dumps({"recordId": "R1", "modelInput": model_input, "modelOutput": completion}).encode())
    assert line is not None
    assert line.error is None
    assert line.finish_reason == "stop"
    assert line.reasoning and line.answer and "water cycle" in line.answer
    assert line.usage is not None and line.usage.total_tokens == line.usage.prompt_tokens + line.usage.completion_tokens


@pytest.mark.parametrize(
    "body",
    [
        {"messages": []},
        {"messages": [{"role": "user", "content": "Hi"}], "stream": True},
        {"model": "openai.gpt-oss-20b-1:0", "messages": [{"role": "user", "content": "Hi"}]},
    ],
)
def test_chat_completion_refuses_what_invoke_model_refuses(body: dict[str, Any]) -> None:
    with pytest.raises(ModelError) as raised:
        LocalModel(OfflineModel()).chat_completion(body, model_id=MODEL)
    assert raised.value.code == "ValidationException"
