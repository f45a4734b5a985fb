"""The event-stream encoder and the ConverseStream test fake, read back by botocore's own event-stream parser."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import boto3
import botocore.session
import pytest
from botocore.eventstream import EventStreamBuffer
from botocore.exceptions import EventStreamError
from botocore.model import StructureShape

from shared.eventstream import (
    CONVERSE_STREAM_EXCEPTIONS,
    converse_stream_message,
    encode_message,
    event_message,
    exception_message,
)
from tests.bedrock_fakes import GPT_OSS_20B, BedrockFake, converse_stream_events
from tests.local.botocore_shapes import stream_event_problems

if TYPE_CHECKING:
    from mypy_boto3_bedrock_runtime import BedrockRuntimeClient

REQUEST: dict[str, Any] = {"modelId": GPT_OSS_20B, "messages": [{"role": "user", "content": [{"text": "Hi"}]}]}
TOOL_CALL = {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Paris", "unit": "celsius"}}


@pytest.fixture
def fake() -> BedrockFake:
    """A real bedrock-runtime client whose HTTP calls the fake answers."""
    client: BedrockRuntimeClient = boto3.client(
        "bedrock-runtime", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    return BedrockFake(client)


def decoded(data: bytes, chunk: int) -> list[tuple[dict[str, Any], bytes]]:
    """botocore's decoding of a byte stream fed in chunks of `chunk` bytes (it checks both CRCs)."""
    buffer = EventStreamBuffer()
    messages: list[tuple[dict[str, Any], bytes]] = []
    for start in range(0, len(data), chunk):
        buffer.add_data(data[start : start + chunk])
        # to_response_dict: what botocore's parser reads (and typed, unlike the message's own attributes).
        messages += [(message.to_response_dict()["headers"], message.payload) for message in buffer]
    return messages


@pytest.mark.parametrize("chunk", [1, 7, 1 << 20])
def test_messages_decode_with_botocores_buffer_however_the_bytes_arrive(chunk: int) -> None:
    data = event_message("messageStart", {"role": "assistant"}) + exception_message("throttlingException", "Slow, é.")
    data += encode_message({"a": "b"}, b"")
    assert decoded(data, chunk) == [
        (
            {":message-type": "event", ":event-type": "messageStart", ":content-type": "application/json"},
            b'{"role":"assistant"}',
        ),
        (
            {
                ":message-type": "exception",
                ":exception-type": "throttlingException",
                ":content-type": "application/json",
            },
            json.dumps({"message": "Slow, é."}, separators=(",", ":")).encode(),
        ),
        ({"a": "b"}, b""),
    ]


def test_the_exception_members_are_the_service_models() -> None:
    model = botocore.session.get_session().get_service_model("bedrock-runtime")
    output = model.operation_model("ConverseStream").output_shape
    assert isinstance(output, StructureShape)
    stream = output.members["stream"]
    assert isinstance(stream, StructureShape)
    assert stream.serialization.get("eventstream")
    exceptions = {name for name, shape in stream.members.items() if shape.metadata.get("exception")}
    assert exceptions == CONVERSE_STREAM_EXCEPTIONS
    assert set(stream.members) - exceptions == {
        "messageStart",
        "contentBlockStart",
        "contentBlockDelta",
        "contentBlockStop",
        "messageStop",
        "metadata",
    }


def test_what_boto3_yields_is_what_was_encoded(fake: BedrockFake) -> None:
    events = converse_stream_events(
        "The capital of France is Paris.",
        reasoning="The user asks for a capital.",
        tool_calls=[TOOL_CALL],
        usage={"inputTokens": 31, "outputTokens": 40, "totalTokens": 71},
        trace={"guardrail": {"actionReason": "No action."}},
    )
    # A blob member travels as base64 and comes back as the same bytes.
    events.insert(
        1,
        {
            "contentBlockDelta": {
                "delta": {"reasoningContent": {"redactedContent": b"\x00\xff"}},
                "contentBlockIndex": 0,
            }
        },
    )
    body = fake.reply_stream(events)
    response = fake.client.converse_stream(**REQUEST)
    assert response["ResponseMetadata"]["HTTPHeaders"]["content-type"] == "application/vnd.amazon.eventstream"
    assert list(response["stream"]) == events
    assert events[-1] == {
        "metadata": {
            "usage": {"inputTokens": 31, "outputTokens": 40, "totalTokens": 71},
            "metrics": {"latencyMs": 321},
            "trace": {"guardrail": {"actionReason": "No action."}},
        }
    }
    assert body.sent == len(events)
    assert fake.calls == [REQUEST]


@pytest.mark.parametrize("member", sorted(CONVERSE_STREAM_EXCEPTIONS))
def test_an_exception_event_raises_event_stream_error_with_its_code(fake: BedrockFake, member: str) -> None:
    head = converse_stream_events("Half an answer")[:3]
    fake.reply_stream([*head, {member: {"message": "It broke."}}, *converse_stream_events()])
    received: list[Any] = []
    with pytest.raises(EventStreamError) as raised:
        received.extend(fake.client.converse_stream(**REQUEST)["stream"])
    assert received == head
    assert raised.value.response["Error"] == {"Code": member, "Message": "It broke."}
    assert raised.value.operation_name == "ConverseStream"


def test_a_model_stream_error_keeps_its_original_status() -> None:
    event = {
        "modelStreamErrorException": {"message": "Model failed.", "originalStatusCode": 500, "originalMessage": "x"}
    }
    payload = decoded(converse_stream_message(event), 1 << 20)[0][1]
    assert json.loads(payload) == event["modelStreamErrorException"]


def test_the_builders_events_conform_to_the_service_model() -> None:
    events = converse_stream_events(
        "Sunny and mild, 21 degrees.", reasoning="The tool said so; I pass it on.", tool_calls=[TOOL_CALL, TOOL_CALL]
    )
    assert [
        problem for event in events for problem in stream_event_problems("bedrock-runtime", "ConverseStream", event)
    ] == []
    names = [next(iter(event)) for event in events]
    assert names[0] == "messageStart" and names[-2:] == ["messageStop", "metadata"]
    assert events[-2] == {"messageStop": {"stopReason": "tool_use"}}
    deltas = [event["contentBlockDelta"] for event in events if "contentBlockDelta" in event]
    texts = [delta["delta"]["text"] for delta in deltas if "text" in delta["delta"]]
    assert len(texts) > 1 and "".join(texts) == "Sunny and mild, 21 degrees."
    reasoning = [delta["delta"]["reasoningContent"]["text"] for delta in deltas if "reasoningContent" in delta["delta"]]
    assert "".join(reasoning) == "The tool said so; I pass it on."
    starts = [event["contentBlockStart"] for event in events if "contentBlockStart" in event]
    assert [start["start"] for start in starts] == [{"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather"}}] * 2
    for start in starts:
        pieces = [
            d["delta"]["toolUse"]["input"] for d in deltas if d["contentBlockIndex"] == start["contentBlockIndex"]
        ]
        assert len(pieces) > 1 and json.loads("".join(pieces)) == TOOL_CALL["input"]
    # Every block is numbered in order and stopped exactly once, after its last delta.
    indexes = [
        next(iter(event.values()))["contentBlockIndex"] for event in events if "contentBlock" in next(iter(event))
    ]
    assert indexes == sorted(indexes) and set(indexes) == {0, 1, 2, 3}
    stops = [event["contentBlockStop"]["contentBlockIndex"] for event in events if "contentBlockStop" in event]
    assert stops == [0, 1, 2, 3]


def test_the_caller_gets_each_event_before_the_next_is_produced(fake: BedrockFake) -> None:
    events = converse_stream_events("One two three four.")
    received: list[Any] = []
    seen_when_produced: list[int] = []
    fake.reply_stream(events, pause=lambda index: seen_when_produced.append(len(received)))
    for event in fake.client.converse_stream(**REQUEST)["stream"]:
        received.append(event)
    assert received == events
    # When event i was produced, the caller already had events 0 .. i-1: nothing is read ahead.
    assert seen_when_produced == list(range(len(events)))


def test_closing_the_stream_stops_the_body(fake: BedrockFake) -> None:
    produced: list[int] = []

    def endless() -> Any:
        yield from converse_stream_events("Start")[:2]
        while True:
            produced.append(1)
            yield {"contentBlockDelta": {"delta": {"text": "more "}, "contentBlockIndex": 0}}

    body = fake.reply_stream(endless())
    stream = fake.client.converse_stream(**REQUEST)["stream"]
    for count, _ in enumerate(stream, start=1):
        if count == 4:
            break
    stream.close()
    assert body.closed
    assert body.sent == 4
    assert len(produced) == 2


def test_unanswered_stream_calls_fail_loudly(fake: BedrockFake) -> None:
    fake.reply_stream(converse_stream_events())
    list(fake.client.converse_stream(**REQUEST)["stream"])
    with pytest.raises(AssertionError, match="reply_stream"):
        fake.client.converse_stream(**REQUEST)


@pytest.mark.parametrize(
    "bad",
    [
        lambda: converse_stream_message({"messageStart": {"role": "assistant"}, "messageStop": {}}),
        lambda: converse_stream_message({}),
        lambda: encode_message({"x" * 256: "v"}, b""),
        lambda: encode_message({"name": "v" * 65536}, b""),
        lambda: encode_message({}, b"x" * (24 * 1024 * 1024 + 1)),
    ],
)
def test_what_the_framing_cannot_carry_is_refused(bad: Any) -> None:
    with pytest.raises(ValueError):
        bad()
