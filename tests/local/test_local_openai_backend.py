"""The openai backend against a tiny fake OpenAI-compatible server on loopback: translation both ways."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import openai
import pytest

from local.bedrock import BedrockStandIn, LocalModel, ModelError, OpenAICompatibleModel, OpenAIServer, WordGuardrail
from local.bedrock.shapes import prompt_tokens
from local.chat_server import ChatApiOptions, running_chat_api
from local.services import serving
from local.templates import Template
from tests.local.botocore_shapes import output_problems, stream_event_problems

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


def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    """A chat.completion.chunk as OpenAI-compatible servers stream it."""
    return {
        "id": "chatcmpl-upstream",
        "object": "chat.completion.chunk",
        "created": 1_795_000_000,
        "model": "gpt-oss:20b",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


USAGE_CHUNK = {
    "id": "chatcmpl-upstream",
    "object": "chat.completion.chunk",
    "choices": [],
    "usage": {"prompt_tokens": 31, "completion_tokens": 12, "total_tokens": 43},
}


@dataclass
class Streamed:
    """A streamed reply: each item a server-sent event's data (a dict as JSON), then `[DONE]` if `done`.

    With `hold_at`, the server waits for `release` before writing that item; `broken` is set when a write
    fails because the reader went away, and `written` counts the items written before.
    """

    items: Sequence[dict[str, Any] | str]
    done: bool = True
    hold_at: int | None = None
    release: threading.Event = field(default_factory=threading.Event)
    broken: threading.Event = field(default_factory=threading.Event)
    written: int = 0


class Upstream(ThreadingHTTPServer):
    """Answers POST /v1/chat/completions with queued replies, and keeps what it was sent."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _UpstreamHandler)
        self.replies: list[tuple[int, bytes] | Streamed] = []
        self.requests: list[tuple[str, dict[str, str], Any]] = []

    @property
    def url(self) -> str:
        """The base URL, as users give it."""
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def reply(self, body: dict[str, Any] | str, status: int = 200) -> None:
        """Queue the next answer."""
        self.replies.append((status, (body if isinstance(body, str) else json.dumps(body)).encode()))

    def reply_stream(self, items: Sequence[dict[str, Any] | str], **options: Any) -> Streamed:
        """Queue the next answer as a stream of server-sent events (see Streamed)."""
        streamed = Streamed(items, **options)
        self.replies.append(streamed)
        return streamed


class _UpstreamHandler(BaseHTTPRequestHandler):
    server: Upstream

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append((self.path, dict(self.headers.items()), body))
        reply = self.server.replies.pop(0)
        if isinstance(reply, Streamed):
            self._stream(reply)
            return
        status, payload = reply
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _stream(self, reply: Streamed) -> None:
        # HTTP/1.0 without Content-Length: the body ends when the connection closes, as with many servers.
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        items = [*reply.items, "[DONE]"] if reply.done else list(reply.items)
        try:
            for index, item in enumerate(items):
                if index == reply.hold_at:
                    reply.release.wait(10)
                data = item if isinstance(item, str) else json.dumps(item)
                self.wfile.write(f"data: {data}\n\n".encode())
                reply.written += 1
        except (BrokenPipeError, ConnectionResetError):
            reply.broken.set()

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


# --- streaming ------------------------------------------------------------------------------------------------

STREAM_REQUEST: dict[str, Any] = {
    "modelId": MODEL_120B,
    "messages": [{"role": "user", "content": [{"guardContent": {"text": {"text": "Capital of France?"}}}]}],
    "inferenceConfig": {"maxTokens": 300},
    "guardrailConfig": {"guardrailIdentifier": "localguardrail", "guardrailVersion": "1"},
}


def stream_deltas(events: list[dict[str, Any]], kind: str) -> list[Any]:
    """The delta payloads of one kind in a ConverseStream, in order."""
    found = [event["contentBlockDelta"]["delta"] for event in events if "contentBlockDelta" in event]
    return [delta[kind] for delta in found if kind in delta]


def test_converse_stream_streams_from_the_server_through_the_stand_in(upstream: Upstream, model: LocalModel) -> None:
    upstream.reply_stream(
        [
            chunk({"role": "assistant", "content": ""}),
            chunk({"reasoning_content": "The user asks "}),
            chunk({"reasoning_content": "for a capital."}),
            chunk({"content": "The capital "}),
            chunk({"content": "is Paris."}),
            chunk({}, "stop"),
            USAGE_CHUNK,
        ]
    )
    with serving(BedrockStandIn(model), "bedrock-stand-in") as stand_in:
        client = boto3.client(
            "bedrock-runtime",
            endpoint_url=stand_in.url,
            region_name="us-east-1",
            aws_access_key_id="x",
            aws_secret_access_key="x",
        )
        events: list[dict[str, Any]] = [dict(event) for event in client.converse_stream(**STREAM_REQUEST)["stream"]]
    [(path, _, sent)] = upstream.requests
    assert path == "/v1/chat/completions"
    assert sent == {
        "model": "gpt-oss:120b",
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "Capital of France?"}],
        "max_tokens": 300,
    }
    assert [
        problem for event in events for problem in stream_event_problems("bedrock-runtime", "ConverseStream", event)
    ] == []
    assert [delta["text"] for delta in stream_deltas(events, "reasoningContent")] == [
        "The user asks ",
        "for a capital.",
    ]
    assert "".join(stream_deltas(events, "text")) == "The capital is Paris."
    assert events[-2] == {"messageStop": {"stopReason": "end_turn"}}
    assert events[-1]["metadata"]["usage"] == {"inputTokens": 31, "outputTokens": 12, "totalTokens": 43}


@pytest.mark.parametrize(
    "contents",
    [
        [{"reasoning": "Two and two."}, {"content": "Four."}],
        [{"content": "<reas"}, {"content": "oning>Two and"}, {"content": " two.</reas"}, {"content": "oning>Four."}],
        [{"content": "  <reasoning>Two and two.</reasoning>"}, {"content": "\n"}, {"content": "Four."}],
    ],
)
def test_streamed_reasoning_is_split_from_the_answer(
    upstream: Upstream, model: LocalModel, contents: list[dict[str, Any]]
) -> None:
    upstream.reply_stream([*(chunk(content) for content in contents), chunk({}, "stop")])
    events = list(model.converse_stream(STREAM_REQUEST))
    assert "".join(delta["text"] for delta in stream_deltas(events, "reasoningContent")) == "Two and two."
    assert "".join(stream_deltas(events, "text")) == "Four."


def test_streamed_content_that_only_looks_like_a_tag_is_answer(upstream: Upstream, model: LocalModel) -> None:
    upstream.reply_stream([chunk({"content": "<"}), chunk({"content": "b>bold</b>"}), chunk({}, "stop")])
    events = list(model.converse_stream(STREAM_REQUEST))
    assert "".join(stream_deltas(events, "text")) == "<b>bold</b>"
    assert stream_deltas(events, "reasoningContent") == []


def test_streamed_tool_calls_become_tool_use_blocks(upstream: Upstream, model: LocalModel) -> None:
    upstream.reply_stream(
        [
            chunk({"role": "assistant", "content": None}),
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": ""},
                        }
                    ]
                }
            ),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city"'}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": ': "Oslo"}'}}]}),
            # Some servers (Ollama) send a whole call in one chunk.
            chunk(
                {
                    "tool_calls": [
                        {"index": 1, "id": "c2", "function": {"name": "get_time", "arguments": '{"tz": "CET"}'}}
                    ]
                }
            ),
            chunk({}, "tool_calls"),
        ]
    )
    events = list(model.converse_stream(STREAM_REQUEST))
    starts = [event["contentBlockStart"] for event in events if "contentBlockStart" in event]
    assert [start["start"]["toolUse"] for start in starts] == [
        {"toolUseId": "c1", "name": "get_weather"},
        {"toolUseId": "c2", "name": "get_time"},
    ]
    inputs = [
        "".join(
            event["contentBlockDelta"]["delta"]["toolUse"]["input"]
            for event in events
            if "contentBlockDelta" in event
            and event["contentBlockDelta"]["contentBlockIndex"] == start["contentBlockIndex"]
        )
        for start in starts
    ]
    assert [json.loads(text) for text in inputs] == [{"city": "Oslo"}, {"tz": "CET"}]
    assert events[-2] == {"messageStop": {"stopReason": "tool_use"}}


def test_a_stream_without_usage_is_estimated_and_length_is_max_tokens(upstream: Upstream, model: LocalModel) -> None:
    upstream.reply_stream([chunk({"content": "Half an ans"}), chunk({}, "length")])
    events = list(model.converse_stream(STREAM_REQUEST))
    assert events[-2] == {"messageStop": {"stopReason": "max_tokens"}}
    body = {"messages": [{"role": "user", "content": "Capital of France?"}]}
    assert events[-1]["metadata"]["usage"]["inputTokens"] == prompt_tokens(body)
    assert events[-1]["metadata"]["usage"]["outputTokens"] == 3


def test_malformed_streamed_tool_arguments_are_malformed_tool_use(upstream: Upstream, model: LocalModel) -> None:
    upstream.reply_stream(
        [
            chunk({"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f", "arguments": "{a"}}]}),
            chunk({}, "tool_calls"),
        ]
    )
    events = list(model.converse_stream(STREAM_REQUEST))
    assert events[-2] == {"messageStop": {"stopReason": "malformed_tool_use"}}


@pytest.mark.parametrize(
    ("items", "done", "message"),
    [
        ([chunk({"content": "Half "}), "not json"], True, "something other than chunks"),
        ([chunk({"content": "Half "}), {"error": {"message": "out of memory"}}], True, "out of memory"),
        ([chunk({"content": "Half "}), chunk({"content": "an answer"})], False, "ended before the answer did"),
    ],
)
def test_a_stream_that_breaks_ends_with_a_model_stream_error(
    upstream: Upstream, model: LocalModel, items: list[Any], done: bool, message: str
) -> None:
    upstream.reply_stream(items, done=done)
    events = list(model.converse_stream(STREAM_REQUEST))
    assert stream_deltas(events, "text")[0] == "Half "
    assert message in events[-1]["modelStreamErrorException"]["message"]


def test_a_refusal_before_the_stream_fails_the_call(upstream: Upstream, model: LocalModel) -> None:
    upstream.reply({"error": {"message": "slow down"}}, 429)
    stream = model.converse_stream(STREAM_REQUEST)
    with pytest.raises(ModelError) as raised:
        next(stream)
    assert raised.value.code == "ThrottlingException"


def test_closing_the_stream_closes_the_upstream_connection(upstream: Upstream, model: LocalModel) -> None:
    streamed = upstream.reply_stream([chunk({"content": "word "}) for _ in range(2000)], hold_at=3, done=False)
    events = model.converse_stream(STREAM_REQUEST)
    head = [next(events) for _ in range(3)]
    assert stream_deltas(head, "text") == ["word ", "word "]
    assert isinstance(events, Generator)
    events.close()
    streamed.release.set()
    assert streamed.broken.wait(10)
    assert streamed.written < 2000
