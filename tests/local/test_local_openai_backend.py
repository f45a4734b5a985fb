"""The openai backend against a tiny fake OpenAI-compatible server on loopback: translation both ways."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import openai
import pytest

from local.bedrock import LocalModel, ModelError, OpenAICompatibleModel, OpenAIServer, WordGuardrail
from local.chat_server import ChatApiOptions, running_chat_api
from local.services import serving
from local.templates import Template
from tests.local.botocore_shapes import output_problems

pytestmark = pytest.mark.enable_socket

MODEL_20B = "openai.gpt-oss-20b-1:0"
MODEL_120B = "openai.gpt-oss-120b-1:0"


def completion(
    message: dict[str, Any], finish_reason: str = "stop", usage: dict[str, int] | None = None
) -> dict[str, Any]:
    """A chat.completion as OpenAI-compatible servers send it."""
    return {
        "id": "chatcmpl-upstream",
        "object": "chat.completion",
        "created": 1_795_000_000,
        "model": "gpt-oss:20b",
        "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish_reason}],
        "usage": usage or {"prompt_tokens": 31, "completion_tokens": 12, "total_tokens": 43},
    }


class Upstream(ThreadingHTTPServer):
    """Answers POST /v1/chat/completions with queued replies, and keeps what it was sent."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _UpstreamHandler)
        self.replies: list[tuple[int, bytes]] = []
        self.requests: list[tuple[str, dict[str, str], Any]] = []

    @property
    def url(self) -> str:
        """The base URL, as users give it."""
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def reply(self, body: dict[str, Any] | str, status: int = 200) -> None:
        """Queue the next answer."""
        self.replies.append((status, (body if isinstance(body, str) else json.dumps(body)).encode()))


class _UpstreamHandler(BaseHTTPRequestHandler):
    server: Upstream

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append((self.path, dict(self.headers.items()), body))
        status, payload = self.server.replies.pop(0)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    """The fake server; every queued reply must have been asked for."""
    with serving(Upstream(), "fake-openai") as server:
        yield server
        assert server.replies == []


@pytest.fixture
def model(upstream: Upstream) -> Iterator[LocalModel]:
    """The openai backend on the fake server: 120b maps to its own upstream model, the rest to gpt-oss:20b."""
    server = OpenAIServer(upstream.url, api_key="sk-local", model="gpt-oss:20b", models={MODEL_120B: "gpt-oss:120b"})
    local = LocalModel(OpenAICompatibleModel(server), guardrail=WordGuardrail(trigger_words=("forbidden",)))
    yield local
    local.close()


def test_a_converse_request_becomes_a_chat_completion_request_and_back(upstream: Upstream, model: LocalModel) -> None:
    upstream.reply(completion({"content": "Sunny.", "reasoning_content": "The tool said so."}))
    schema = {"type": "object", "properties": {"sky": {"type": "string"}}}
    response = model.converse(
        {
            "modelId": MODEL_120B,
            "system": [{"text": "Be brief."}],
            "messages": [
                {"role": "user", "content": [{"text": "Weather in Oslo?"}]},
                {
                    "role": "assistant",
                    "content": [{"toolUse": {"toolUseId": "t1", "name": "get_weather", "input": {"city": "Oslo"}}}],
                },
                {
                    "role": "user",
                    "content": [
                        {"toolResult": {"toolUseId": "t1", "content": [{"json": {"sky": "clear"}}]}},
                        {"guardContent": {"text": {"text": "So?"}}},
                    ],
                },
            ],
            "inferenceConfig": {"maxTokens": 300, "temperature": 0.2, "topP": 0.9, "stopSequences": ["END"]},
            "toolConfig": {
                "tools": [
                    {"toolSpec": {"name": "get_weather", "description": "Weather", "inputSchema": {"json": schema}}}
                ],
                "toolChoice": {"auto": {}},
            },
            "outputConfig": {
                "textFormat": {
                    "type": "json_schema",
                    "structure": {"jsonSchema": {"schema": json.dumps(schema), "name": "sky"}},
                }
            },
            "additionalModelRequestFields": {"reasoning_effort": "low"},
            "guardrailConfig": {"guardrailIdentifier": "localguardrail", "guardrailVersion": "1"},
        }
    )
    [(path, headers, sent)] = upstream.requests
    assert path == "/v1/chat/completions"
    assert headers["Authorization"] == "Bearer sk-local"
    assert sent == {
        "model": "gpt-oss:120b",
        "stream": False,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather in Oslo?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "t1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "t1", "content": '{"sky": "clear"}'},
            {"role": "user", "content": "So?"},
        ],
        "max_tokens": 300,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": ["END"],
        "tools": [
            {"type": "function", "function": {"name": "get_weather", "parameters": schema, "description": "Weather"}}
        ],
        "tool_choice": "auto",
        "response_format": {"type": "json_schema", "json_schema": {"name": "sky", "schema": schema}},
        "reasoning_effort": "low",
    }
    assert output_problems("bedrock-runtime", "Converse", response) == []
    assert response["output"]["message"]["content"] == [
        {"reasoningContent": {"reasoningText": {"text": "The tool said so."}}},
        {"text": "Sunny."},
    ]
    assert response["stopReason"] == "end_turn"
    assert response["usage"] == {"inputTokens": 31, "outputTokens": 12, "totalTokens": 43}


@pytest.mark.parametrize(
    "message",
    [
        {"content": "<reasoning>Two and two.</reasoning>Four."},
        {"content": "Four.", "reasoning": "Two and two."},
        {"content": "Four.", "reasoning_content": "Two and two."},
    ],
)
def test_reasoning_is_split_from_the_answer(upstream: Upstream, model: LocalModel, message: dict[str, Any]) -> None:
    upstream.reply(completion(message))
    response = model.converse({"modelId": MODEL_20B, "messages": [{"role": "user", "content": [{"text": "2+2?"}]}]})
    assert response["output"]["message"]["content"] == [
        {"reasoningContent": {"reasoningText": {"text": "Two and two."}}},
        {"text": "Four."},
    ]
    assert upstream.requests[0][2]["model"] == "gpt-oss:20b"


@pytest.mark.parametrize(
    ("reply", "stop_reason", "content"),
    [
        (
            completion(
                {
                    "content": None,
                    "tool_calls": [
                        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
                    ],
                },
                "tool_calls",
            ),
            "tool_use",
            [{"toolUse": {"toolUseId": "c1", "name": "f", "input": {"a": 1}}}],
        ),
        (
            completion(
                {
                    "content": "",
                    "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{a"}}],
                }
            ),
            "malformed_tool_use",
            [{"text": ""}],
        ),
        (completion({"content": "Half an ans"}, "length"), "max_tokens", [{"text": "Half an ans"}]),
    ],
)
def test_tool_calls_and_stop_reasons(
    upstream: Upstream, model: LocalModel, reply: dict[str, Any], stop_reason: str, content: list[Any]
) -> None:
    upstream.reply(reply)
    response = model.converse({"modelId": MODEL_20B, "messages": [{"role": "user", "content": [{"text": "Go"}]}]})
    assert (response["stopReason"], response["output"]["message"]["content"]) == (stop_reason, content)
    assert output_problems("bedrock-runtime", "Converse", response) == []


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        (429, {"error": {"message": "slow down"}}, "ThrottlingException"),
        (404, {"error": {"message": "model 'gpt-oss:20b' not found"}}, "ResourceNotFoundException"),
        (400, "bad", "ValidationException"),
        (500, "boom", "ServiceUnavailableException"),
        (200, "not json", "ModelErrorException"),
        (200, {"choices": []}, "ModelErrorException"),
    ],
)
def test_upstream_failures_become_bedrock_errors(
    upstream: Upstream, model: LocalModel, status: int, body: Any, code: str
) -> None:
    upstream.reply(body, status)
    with pytest.raises(ModelError) as raised:
        model.converse({"modelId": MODEL_20B, "messages": [{"role": "user", "content": [{"text": "Hi"}]}]})
    assert raised.value.code == code


def test_an_unreachable_server_is_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    model = LocalModel(OpenAICompatibleModel(OpenAIServer(f"http://127.0.0.1:{port}/v1")))
    with pytest.raises(ModelError) as raised:
        model.chat_completion({"messages": [{"role": "user", "content": "Hi"}]})
    assert raised.value.code == "ServiceUnavailableException"
    model.close()


def test_batch_completions_carry_the_reasoning_inline(upstream: Upstream, model: LocalModel) -> None:
    upstream.reply(completion({"content": "Four.", "reasoning": "Two and two."}))
    answer = model.chat_completion(
        {"messages": [{"role": "user", "content": "2+2?"}], "max_completion_tokens": 64}, model_id=MODEL_120B
    )
    assert answer["choices"][0]["message"]["content"] == "<reasoning>Two and two.</reasoning>Four."
    assert answer["usage"] == {"prompt_tokens": 31, "completion_tokens": 12, "total_tokens": 43}
    assert upstream.requests[0][2] == {
        "model": "gpt-oss:120b",
        "stream": False,
        "messages": [{"role": "user", "content": "2+2?"}],
        "max_tokens": 64,
    }


def test_the_chat_api_answers_through_an_openai_compatible_server(upstream: Upstream, template: Template) -> None:
    options = ChatApiOptions(backend="openai", openai=OpenAIServer(upstream.url, model="gpt-oss:20b"))
    with (
        running_chat_api(template, options) as api,
        openai.OpenAI(base_url=api.url, api_key="local", max_retries=0) as client,
    ):
        upstream.reply(completion({"content": "<reasoning>Easy.</reasoning>Paris."}))
        answer = client.chat.completions.create(
            model="gpt-oss-120b",
            messages=[{"role": "user", "content": "Capital of France?"}],
            extra_body={"include_reasoning": True},
        )
        assert answer.choices[0].message.content == "Paris."
        assert answer.choices[0].message.model_extra == {"reasoning_content": "Easy."}
        assert answer.model == MODEL_120B
        upstream.reply(completion({"content": "That is forbidden lore."}))
        blocked = client.chat.completions.create(
            model="gpt-oss-20b", messages=[{"role": "user", "content": "Tell me."}]
        )
        assert blocked.choices[0].finish_reason == "content_filter"
        assert blocked.choices[0].message.content == api.guardrail.blocked_output_message
    assert [sent["model"] for _, _, sent in upstream.requests] == ["gpt-oss:20b", "gpt-oss:20b"]
    assert upstream.requests[0][2]["max_tokens"] == api.settings.DEFAULT_MAX_TOKENS
