"""Streaming as a user sees it: the official openai SDK against `python -m local`'s chat API over loopback.

The chat app runs in its own process behind the local API Gateway, and Bedrock is the paced offline stand-in,
so these are orderings against a model that is still generating, never absolute times.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from local.bedrock.server import StreamRecord
from local.chat_server import ChatApiOptions, RunningChatApi, running_chat_api
from local.templates import Template
from tests.local.cases import OPENAI_WEATHER_TOOL

pytestmark = [pytest.mark.enable_socket]

ROOT = Path(__file__).resolve().parents[2]

QUESTION: list[openai.types.chat.ChatCompletionMessageParam] = [
    {"role": "user", "content": "What does Amazon Bedrock's batch inference do?"}
]


@pytest.fixture(scope="module")
def api(template: Template) -> Iterator[RunningChatApi]:
    """The chat API with the offline model at a pace a person can watch (40 tokens a second)."""
    with running_chat_api(template, ChatApiOptions(trigger_words=("forbidden",), tokens_per_second=40)) as running:
        yield running


@pytest.fixture
def client(api: RunningChatApi) -> Iterator[openai.OpenAI]:
    """An OpenAI client on the local API (no retries, so every failure shows)."""
    with openai.OpenAI(base_url=api.url, api_key="local", max_retries=0) as sdk:
        yield sdk


def latest_stream(api: RunningChatApi, count_before: int) -> StreamRecord:
    assert api.stand_in is not None
    deadline = time.monotonic() + 10
    while len(api.stand_in.streams) <= count_before and time.monotonic() < deadline:
        time.sleep(0.01)
    return api.stand_in.streams[count_before]


def test_the_first_tokens_arrive_while_the_model_is_still_generating(
    client: openai.OpenAI, api: RunningChatApi
) -> None:
    assert api.stand_in is not None
    before = len(api.stand_in.streams)
    stream = client.chat.completions.create(model="gpt-oss-20b", messages=QUESTION, stream=True)
    pieces: list[str] = []
    record = None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
            if len(pieces) == 1:
                record = latest_stream(api, before)
                # The first content chunk is here, and the stand-in has not finished generating.
                assert record.outcome == "streaming"
    assert record is not None and record.wait(10)
    assert record.outcome == "completed"
    assert len(pieces) > 10
    assert "batch inference" in "".join(pieces)


def test_tool_call_deltas_reassemble_into_the_call(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gpt-oss-20b",
        messages=[{"role": "user", "content": "Use the tool: what is the weather in Paris?"}],
        tools=[OPENAI_WEATHER_TOOL],
        stream=True,
    )
    calls: dict[int, dict[str, str]] = {}
    finish = None
    for chunk in stream:
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for piece in choice.delta.tool_calls or []:
                call = calls.setdefault(piece.index, {"id": "", "name": "", "arguments": ""})
                call["id"] += piece.id or ""
                call["name"] += (piece.function.name or "") if piece.function else ""
                call["arguments"] += (piece.function.arguments or "") if piece.function else ""
    assert finish == "tool_calls"
    [call] = calls.values()
    assert call["name"] == "get_weather"
    assert call["id"]
    assert json.loads(call["arguments"])["city"] == "Paris"


def test_usage_comes_with_the_last_chunk_when_asked_for(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="gpt-oss-20b", messages=QUESTION, stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0


def test_a_trigger_word_ends_the_stream_with_content_filter(client: openai.OpenAI, api: RunningChatApi) -> None:
    chunks = list(
        client.chat.completions.create(
            model="gpt-oss-20b", messages=[{"role": "user", "content": "Tell me something forbidden."}], stream=True
        )
    )
    finishes = [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices and chunk.choices[0].finish_reason]
    assert finishes == ["content_filter"]
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text == api.guardrail.blocked_input_message


def test_an_error_mid_stream_is_raised_by_the_sdk_after_the_first_tokens(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gpt-oss-20b",
        messages=[{"role": "user", "content": "Explain batches. [stream-error modelStreamErrorException after 45]"}],
        stream=True,
    )
    received: list[str] = []
    with pytest.raises(openai.APIError) as raised:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)
    assert received, "the error came before any token"
    assert "upstream" in str(raised.value.body) or "model" in str(raised.value.message)


def test_a_caller_that_goes_away_stops_the_bedrock_read(api: RunningChatApi) -> None:
    assert api.stand_in is not None
    before = len(api.stand_in.streams)
    body = {
        "model": "gpt-oss-20b",
        "messages": [{"role": "user", "content": "Explain batch inference at length."}],
        "stream": True,
    }
    with httpx.Client(timeout=30) as http, http.stream("POST", f"{api.url}/chat/completions", json=body) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        for line in lines:
            if line.startswith("data: ") and '"content"' in line and '"content":""' not in line:
                break
    # The client closed its connection after the first token: the stand-in's generation must stop early.
    record = latest_stream(api, before)
    assert record.wait(20)
    assert record.outcome == "abandoned"


def test_a_sixty_second_generation_streams_to_the_end(client: openai.OpenAI, api: RunningChatApi) -> None:
    # 2,400 tokens at 40 a second: about a minute, twice API Gateway's buffered 29 s limit.
    started = time.monotonic()
    finish = None
    pieces = 0
    for chunk in client.chat.completions.create(
        model="gpt-oss-20b",
        messages=[{"role": "user", "content": "Describe batch inference at length."}],
        max_completion_tokens=2400,
        stream=True,
    ):
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            pieces += 1 if choice.delta.content else 0
    assert finish in {"stop", "length"}
    assert pieces > 500
    assert time.monotonic() - started > 29


OPENAI_NPM = "openai@7.60.0"
NODE_CLIENT = """
import OpenAI from "openai";
const client = new OpenAI({ baseURL: process.argv[2], apiKey: "local", maxRetries: 0 });
const stream = await client.chat.completions.create({
  model: "gpt-oss-20b",
  messages: [{ role: "user", content: process.argv[3] }],
  stream: true,
  stream_options: { include_usage: true },
});
for await (const chunk of stream) process.stdout.write(JSON.stringify(chunk) + "\\n");
"""


@pytest.fixture(scope="module")
def node_client() -> Path:
    """A Node script streaming with the `openai` npm package (installed once into .build/, from the npm registry)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail("Node 20 and npm are prerequisites of this project (README): not found on PATH")
    folder = ROOT / ".build" / OPENAI_NPM.replace("@", "-")
    if not (folder / "node_modules" / "openai" / "package.json").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(  # noqa: S603 - fixed argv
            [npm, "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(folder), OPENAI_NPM],
            check=True,
            timeout=300,
        )
    script = folder / "stream.mjs"
    script.write_text(NODE_CLIENT)
    return script


def test_the_openai_npm_package_streams_tokens_as_they_are_generated(api: RunningChatApi, node_client: Path) -> None:
    assert api.stand_in is not None
    before = len(api.stand_in.streams)
    process = subprocess.Popen(  # noqa: S603 - fixed argv
        [str(shutil.which("node")), str(node_client), api.url, "What does Amazon Bedrock's batch inference do?"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    chunks = []
    for line in process.stdout:
        chunk = json.loads(line)
        chunks.append(chunk)
        if len([c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]) == 1:
            # The first content chunk reached the Node client while the stand-in was still generating.
            assert latest_stream(api, before).outcome == "streaming"
    assert process.wait(timeout=60) == 0
    content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert "batch inference" in content
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]] == [
        "stop"
    ]
    assert chunks[-1]["usage"]["completion_tokens"] > 0
