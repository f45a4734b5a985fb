"""ConverseStream from the local Bedrock stand-in, read by real boto3 clients over loopback.

Orderings are shown with gates (threading.Event, bounded waits), never with clocks: the offline model's
pace is exercised through its `sleep`, which these tests replace.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, EventStreamError

from local.bedrock import (
    BedrockStandIn,
    Delta,
    Finish,
    Generation,
    LocalModel,
    ModelError,
    OfflineModel,
    TextDelta,
    build_model,
)
from local.bedrock.offline import LONG_ANSWER_TOKENS
from local.bedrock.shapes import prompt_tokens
from local.services import serving
from shared.eventstream import CONVERSE_STREAM_EXCEPTIONS
from tests.local.botocore_shapes import stream_event_problems

if TYPE_CHECKING:
    from mypy_boto3_bedrock_runtime import BedrockRuntimeClient

from tests.local.cases import GUARDRAIL, GUARDRAIL_CONFIG, MODEL, WEATHER_TOOL

pytestmark = pytest.mark.enable_socket

# Long enough for any gate in these tests; a test that waits this long has failed already.
WAIT_SECONDS = 10


def user(text: str) -> dict[str, Any]:
    """A user turn whose text the guardrail evaluates, as the chat function sends it."""
    return {"role": "user", "content": [{"guardContent": {"text": {"text": text}}}]}


def request(text: str, **fields: Any) -> dict[str, Any]:
    """A ConverseStream request for one user turn."""
    return {"modelId": MODEL, "messages": [user(text)], **fields}


class Recording:
    """A `Model` that passes every call to a LocalModel and keeps each ConverseStream event as it is produced."""

    def __init__(self, model: LocalModel) -> None:
        self.model = model
        self.produced: list[dict[str, Any]] = []
        self.last_produced = threading.Event()

    def converse(self, request: Mapping[str, Any]) -> dict[str, Any]:
        return self.model.converse(request)

    def apply_guardrail(self, request: Mapping[str, Any]) -> dict[str, Any]:
        return self.model.apply_guardrail(request)

    def chat_completion(self, body: Mapping[str, Any], *, model_id: str | None = None) -> dict[str, Any]:
        return self.model.chat_completion(body, model_id=model_id)

    def converse_stream(self, request: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        return self._record(self.model.converse_stream(request))

    def _record(self, events: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        try:
            for event in events:
                if "metadata" in event or CONVERSE_STREAM_EXCEPTIONS.intersection(event):
                    self.last_produced.set()
                self.produced.append(event)
                yield event
        finally:
            close = getattr(events, "close", None)
            if callable(close):
                close()


class Says:
    """A backend with a fixed answer that cannot stream (LocalModel cuts its answer into pieces)."""

    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.calls = 0

    def generate(self, body: Mapping[str, Any], *, model_id: str) -> Generation:
        self.calls += 1
        return Generation(answer=self.answer, reasoning="Thinking.", input_tokens=9, output_tokens=20, latency_ms=7)


def client_for(url: str) -> BedrockRuntimeClient:
    """A real boto3 client on the stand-in; no retries, so each call is one request."""
    return boto3.client(
        "bedrock-runtime",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=Config(retries={"mode": "standard", "total_max_attempts": 1}),
    )


@pytest.fixture
def offline() -> Iterator[tuple[Recording, BedrockStandIn, BedrockRuntimeClient]]:
    """The offline model at full speed behind the stand-in, recorded, and a client on it."""
    recording = Recording(LocalModel(OfflineModel(tokens_per_second=None), guardrail=GUARDRAIL))
    with serving(BedrockStandIn(recording), "bedrock-stream-test") as stand_in:
        yield recording, stand_in, client_for(stand_in.url)


def deltas(events: Sequence[Mapping[str, Any]], kind: str) -> list[Any]:
    """The delta payloads of one kind (text, reasoningContent, toolUse) in order."""
    found = [event["contentBlockDelta"]["delta"] for event in events if "contentBlockDelta" in event]
    return [delta[kind] for delta in found if kind in delta]


def text_of(events: Sequence[Mapping[str, Any]]) -> str:
    """The answer text a caller assembles from the stream."""
    return "".join(deltas(events, "text"))


def test_the_caller_gets_the_models_events_and_the_same_answer_as_converse(
    offline: tuple[Recording, BedrockStandIn, BedrockRuntimeClient],
) -> None:
    recording, stand_in, client = offline
    asked = request(
        "What is the capital of France?", inferenceConfig={"maxTokens": 1024}, guardrailConfig=GUARDRAIL_CONFIG
    )
    response = client.converse_stream(**asked)
    assert response["ResponseMetadata"]["HTTPHeaders"]["content-type"] == "application/vnd.amazon.eventstream"
    assert response["ResponseMetadata"]["HTTPHeaders"]["transfer-encoding"] == "chunked"
    events = [dict(event) for event in response["stream"]]
    assert events == recording.produced
    assert [
        problem for event in events for problem in stream_event_problems("bedrock-runtime", "ConverseStream", event)
    ] == []
    [record] = stand_in.streams
    assert record.wait(WAIT_SECONDS)
    assert [record.outcome, record.events_sent] == ["completed", len(events)]

    whole = client.converse(**asked)
    [reasoning, answer] = whole["output"]["message"]["content"]
    assert (
        "".join(delta["text"] for delta in deltas(events, "reasoningContent"))
        == reasoning["reasoningContent"]["reasoningText"]["text"]
    )
    assert text_of(events) == answer["text"]
    assert len(deltas(events, "text")) > 10  # token by token, not in one piece
    assert events[0] == {"messageStart": {"role": "assistant"}}
    assert events[-2] == {"messageStop": {"stopReason": whole["stopReason"]}}
    assert events[-1] == {"metadata": {"usage": whole["usage"], "metrics": whole["metrics"], "trace": whole["trace"]}}


def test_the_first_event_arrives_before_the_last_is_produced() -> None:
    first_read = threading.Event()
    pauses: list[float] = []
    gate_opened: list[bool] = []

    def pace(seconds: float) -> None:
        # The offline model's pause before each piece: the second pause holds the generation until the
        # caller has read its first event (bounded, so a stand-in that buffered the answer fails the test).
        pauses.append(seconds)
        if len(pauses) == 2:
            gate_opened.append(first_read.wait(WAIT_SECONDS))

    recording = Recording(LocalModel(OfflineModel(tokens_per_second=40, sleep=pace), guardrail=GUARDRAIL))
    with serving(BedrockStandIn(recording), "bedrock-stream-test") as stand_in:
        stream = client_for(stand_in.url).converse_stream(**request("Hello there"))["stream"]
        received = iter(stream)
        first = next(received)
        assert not recording.last_produced.is_set()
        first_read.set()
        rest = list(received)
    assert gate_opened == [True]
    assert all(pause > 0 for pause in pauses)
    assert recording.last_produced.is_set()
    assert [first, *rest] == recording.produced
    assert first == {"messageStart": {"role": "assistant"}}


def test_in_sync_mode_nothing_from_the_trigger_word_on_is_sent() -> None:
    says = Says("The secret is forbidden knowledge, keep it.")
    with serving(BedrockStandIn(LocalModel(says, guardrail=GUARDRAIL)), "bedrock-stream-test") as stand_in:
        config = {**GUARDRAIL_CONFIG, "streamProcessingMode": "sync"}
        events = list(client_for(stand_in.url).converse_stream(**request("Tell me.", guardrailConfig=config))["stream"])
    texts = deltas(events, "text")
    assert texts[-1] == GUARDRAIL.blocked_output_message
    sent = "".join(texts[:-1])
    assert "The secret is forbidden".startswith(sent) and "forbidden" not in sent
    assert events[-2] == {"messageStop": {"stopReason": "guardrail_intervened"}}
    metadata = events[-1]["metadata"]
    assert metadata["usage"]["inputTokens"] == prompt_tokens({"messages": [{"role": "user", "content": "Tell me."}]})
    assessment = metadata["trace"]["guardrail"]["outputAssessments"]["gr0local"][0]
    assert assessment["wordPolicy"]["customWords"] == [{"match": "forbidden", "action": "BLOCKED", "detected": True}]


def test_in_sync_mode_a_trigger_phrase_is_held_back_until_it_is_judged() -> None:
    model = LocalModel(Says("This is top secret stuff."), guardrail=GUARDRAIL)
    events = list(model.converse_stream(request("Go", guardrailConfig=GUARDRAIL_CONFIG)))
    texts = deltas(events, "text")
    assert "".join(texts[:-1]) == "This is "
    assert texts[-1] == GUARDRAIL.blocked_output_message


def test_in_async_mode_the_piece_with_the_trigger_word_is_sent_then_the_rest_is_blocked() -> None:
    says = Says("The secret is forbidden knowledge, keep it.")
    with serving(BedrockStandIn(LocalModel(says, guardrail=GUARDRAIL)), "bedrock-stream-test") as stand_in:
        config = {**GUARDRAIL_CONFIG, "streamProcessingMode": "async"}
        events = list(client_for(stand_in.url).converse_stream(**request("Tell me.", guardrailConfig=config))["stream"])
    assert deltas(events, "text") == ["The ", "secret ", "is ", "forbidden ", GUARDRAIL.blocked_output_message]
    assert events[-2] == {"messageStop": {"stopReason": "guardrail_intervened"}}


def test_in_async_mode_a_trigger_word_at_the_very_end_is_caught_when_the_answer_ends() -> None:
    model = LocalModel(Says("That is forbidden"), guardrail=GUARDRAIL)
    config = {**GUARDRAIL_CONFIG, "streamProcessingMode": "async"}
    events = list(model.converse_stream(request("Go", guardrailConfig=config)))
    assert deltas(events, "text") == ["That ", "is ", "forbidden", GUARDRAIL.blocked_output_message]
    assert events[-2] == {"messageStop": {"stopReason": "guardrail_intervened"}}


def test_a_clean_answer_streams_whole_in_either_mode() -> None:
    for mode in ("sync", "async"):
        model = LocalModel(Says("Tea is a drink."), guardrail=GUARDRAIL)
        events = list(
            model.converse_stream(request("Tea?", guardrailConfig={**GUARDRAIL_CONFIG, "streamProcessingMode": mode}))
        )
        assert text_of(events) == "Tea is a drink."
        assert events[-2] == {"messageStop": {"stopReason": "end_turn"}}
        assert events[-1]["metadata"]["usage"] == {"inputTokens": 9, "outputTokens": 20, "totalTokens": 29}


def test_an_intervention_on_the_input_streams_the_blocked_message_and_runs_no_model() -> None:
    says = Says("Never said.")
    with serving(BedrockStandIn(LocalModel(says, guardrail=GUARDRAIL)), "bedrock-stream-test") as stand_in:
        asked = request("Tell me something TOP SECRET.", guardrailConfig=GUARDRAIL_CONFIG)
        events = list(client_for(stand_in.url).converse_stream(**asked)["stream"])
    assert says.calls == 0
    assert events[:4] == [
        {"messageStart": {"role": "assistant"}},
        {"contentBlockDelta": {"delta": {"text": GUARDRAIL.blocked_input_message}, "contentBlockIndex": 0}},
        {"contentBlockStop": {"contentBlockIndex": 0}},
        {"messageStop": {"stopReason": "guardrail_intervened"}},
    ]
    metadata = events[4]["metadata"]
    assert metadata["usage"] == {"inputTokens": 0, "outputTokens": 0, "totalTokens": 0}
    words = metadata["trace"]["guardrail"]["inputAssessment"]["gr0local"]["wordPolicy"]["customWords"]
    assert words == [{"match": "top secret", "action": "BLOCKED", "detected": True}]
    untraced = list(
        LocalModel(says, guardrail=GUARDRAIL).converse_stream(
            request("top secret", guardrailConfig={**GUARDRAIL_CONFIG, "trace": "disabled"})
        )
    )
    assert "trace" not in untraced[-1]["metadata"]


def test_the_service_tier_asked_for_is_reported_in_the_metadata(
    offline: tuple[Recording, BedrockStandIn, BedrockRuntimeClient],
) -> None:
    recording, _, client = offline
    asked = request("Name a river.", guardrailConfig=GUARDRAIL_CONFIG, serviceTier={"type": "flex"})
    events = [dict(event) for event in client.converse_stream(**asked)["stream"]]
    assert [
        problem for event in events for problem in stream_event_problems("bedrock-runtime", "ConverseStream", event)
    ] == []
    assert events == recording.produced
    assert recording.produced[-1]["metadata"]["serviceTier"] == {"type": "flex"}
    assert client.converse(**asked)["serviceTier"] == {"type": "flex"}
    # Also when the guardrail stops the input and no model runs.
    blocked = list(
        LocalModel(Says("Never said."), guardrail=GUARDRAIL).converse_stream(
            {**asked, "messages": [user("Top secret?")]}
        )
    )
    assert blocked[-1]["metadata"]["serviceTier"] == {"type": "flex"}
    # A request that asks for no tier gets none reported.
    unasked = list(client.converse_stream(**request("Name a river."))["stream"])
    assert "serviceTier" not in unasked[-1]["metadata"]


@pytest.mark.parametrize("member", sorted(CONVERSE_STREAM_EXCEPTIONS))
def test_a_stream_error_mid_answer_raises_event_stream_error(
    offline: tuple[Recording, BedrockStandIn, BedrockRuntimeClient], member: str
) -> None:
    _, stand_in, client = offline
    received: list[Any] = []
    stream = client.converse_stream(**request(f"Tell me about tea [stream-error {member} after 3]"))["stream"]
    with pytest.raises(EventStreamError) as raised:
        received.extend(stream)
    assert raised.value.response["Error"]["Code"] == member
    assert "stream failed as asked" in raised.value.response["Error"]["Message"]
    assert received[0] == {"messageStart": {"role": "assistant"}}
    assert len(deltas(received, "reasoningContent")) == 3 and len(received) == 4
    [record] = stand_in.streams
    assert record.wait(WAIT_SECONDS)
    assert [record.outcome, record.events_sent] == ["completed", 5]


def test_a_stream_error_after_the_answer_still_comes_before_message_stop() -> None:
    model = LocalModel(OfflineModel(tokens_per_second=None))
    events = list(model.converse_stream(request("Hi [stream-error modelStreamErrorException after 100000]")))
    assert "modelStreamErrorException" in events[-1]
    assert not any("messageStop" in event for event in events)
    assert text_of(events).startswith("You asked:")


def test_a_bug_mid_stream_is_an_internal_server_exception() -> None:
    class Breaks:
        def generate(self, body: Mapping[str, Any], *, model_id: str) -> Generation:
            raise AssertionError("streams only")

        def stream(self, body: Mapping[str, Any], *, model_id: str) -> Iterator[Delta]:
            yield TextDelta("Hello ")
            raise RuntimeError("a bug")

    logged: list[str] = []
    with serving(BedrockStandIn(LocalModel(Breaks()), log=logged.append), "bedrock-stream-test") as stand_in:
        stream = client_for(stand_in.url).converse_stream(**request("Hi"))["stream"]
        with pytest.raises(EventStreamError) as raised:
            list(stream)
    assert raised.value.response["Error"]["Code"] == "internalServerException"
    assert "RuntimeError: a bug" in logged[-1]


class Endless:
    """A streaming backend that would go on for a long time; it waits at piece 3 until told the caller left."""

    def __init__(self) -> None:
        self.produced = 0
        self.caller_left = threading.Event()
        self.gate_opened: list[bool] = []
        self.closed = threading.Event()

    def generate(self, body: Mapping[str, Any], *, model_id: str) -> Generation:
        raise AssertionError("streams only")

    def stream(self, body: Mapping[str, Any], *, model_id: str) -> Iterator[Delta]:
        try:
            for index in range(10_000):
                if index == 3:
                    self.gate_opened.append(self.caller_left.wait(WAIT_SECONDS))
                self.produced += 1
                yield TextDelta(f"word{index} ")
            yield Finish("end_turn", 1, 10_000, 1)
        finally:
            self.closed.set()


def test_a_caller_closing_the_stream_stops_the_generation() -> None:
    endless = Endless()
    with serving(BedrockStandIn(LocalModel(endless)), "bedrock-stream-test") as stand_in:
        stream = client_for(stand_in.url).converse_stream(**request("Go on and on."))["stream"]
        received = iter(stream)
        head = [next(received) for _ in range(3)]
        stream.close()
        endless.caller_left.set()
        [record] = stand_in.streams
        assert record.wait(WAIT_SECONDS)
    assert text_of(head) == "word0 word1 "
    assert record.outcome == "abandoned" and record.abandoned
    assert endless.closed.is_set()
    # The stand-in noticed the caller gone at piece 2 or, having run ahead to the gate, just after it (the
    # FIN of the closed connection may trail the gate's opening by a moment): the generation stopped there.
    assert endless.gate_opened in ([], [True])
    assert endless.produced <= 5
    assert record.events_sent <= endless.produced + 1


def test_stopping_the_stand_in_ends_a_stream_in_flight() -> None:
    stopping: list[threading.Event] = []
    waited: list[bool] = []

    class UntilStopped:
        def generate(self, body: Mapping[str, Any], *, model_id: str) -> Generation:
            raise AssertionError("streams only")

        def stream(self, body: Mapping[str, Any], *, model_id: str) -> Iterator[Delta]:
            yield TextDelta("Hello ")
            waited.append(stopping[0].wait(WAIT_SECONDS))
            yield TextDelta("world ")
            yield Finish("end_turn", 1, 2, 1)

    stand_in = BedrockStandIn(LocalModel(UntilStopped()))
    stopping.append(stand_in.stopping)
    with serving(stand_in, "bedrock-stream-test"):
        stream = client_for(stand_in.url).converse_stream(**request("Hi"))["stream"]
        assert next(iter(stream)) == {"messageStart": {"role": "assistant"}}
    stream.close()
    assert waited == [True]
    assert [record.outcome for record in stand_in.streams] == ["stopped"]


def test_tool_calls_stream_as_tool_use_blocks_that_reassemble_to_converses(
    offline: tuple[Recording, BedrockStandIn, BedrockRuntimeClient],
) -> None:
    _, _, client = offline
    asked = request("What is the weather in Paris today?", toolConfig={"tools": [WEATHER_TOOL]})
    events = list(client.converse_stream(**asked)["stream"])
    [call] = [
        block["toolUse"] for block in client.converse(**asked)["output"]["message"]["content"] if "toolUse" in block
    ]
    [start] = [event["contentBlockStart"] for event in events if "contentBlockStart" in event]
    assert start["start"] == {"toolUse": {"toolUseId": call["toolUseId"], "name": "get_weather"}}
    pieces = [
        event["contentBlockDelta"]["delta"]["toolUse"]["input"]
        for event in events
        if "contentBlockDelta" in event
        and event["contentBlockDelta"]["contentBlockIndex"] == start["contentBlockIndex"]
    ]
    assert len(pieces) > 1
    assert json.loads("".join(pieces)) == call["input"] == {"city": "Paris", "unit": "celsius"}
    assert {"contentBlockStop": {"contentBlockIndex": start["contentBlockIndex"]}} in events
    assert events[-2] == {"messageStop": {"stopReason": "tool_use"}}


@pytest.mark.parametrize(
    ("fields", "code", "status"),
    [
        ({"modelId": "openai.gpt-oss-1t"}, "ValidationException", 400),
        ({"guardrailConfig": {"guardrailIdentifier": "other", "guardrailVersion": "3"}}, "ValidationException", 400),
        ({"messages": [user("Hi [stream-error throttlingException after 0]")]}, "ThrottlingException", 429),
    ],
)
def test_a_failure_before_the_first_event_is_an_http_error(
    offline: tuple[Recording, BedrockStandIn, BedrockRuntimeClient], fields: dict[str, Any], code: str, status: int
) -> None:
    _, stand_in, client = offline
    with pytest.raises(ClientError) as raised:
        client.converse_stream(**{**request("Hi"), **fields})
    assert raised.value.response["Error"]["Code"] == code
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert stand_in.streams == []


def test_an_unknown_stream_processing_mode_is_refused() -> None:
    with pytest.raises(ModelError) as raised:
        LocalModel(Says("Hi"), guardrail=GUARDRAIL).converse_stream(
            request("Hi", guardrailConfig={**GUARDRAIL_CONFIG, "streamProcessingMode": "later"})
        )
    assert raised.value.code == "ValidationException"


def test_the_pace_spreads_the_output_tokens_over_time() -> None:
    pauses: list[float] = []
    model = LocalModel(OfflineModel(tokens_per_second=40, sleep=pauses.append))
    events = list(model.converse_stream(request("Explain DNS.")))
    output_tokens = events[-1]["metadata"]["usage"]["outputTokens"]
    assert len(pauses) == len(deltas(events, "text")) + len(deltas(events, "reasoningContent"))
    # Pauses count fractional tokens; usage rounds the whole output up to a token.
    assert output_tokens - 1 < sum(pauses) * 40 <= output_tokens
    unpaced: list[float] = []
    for pace in (None, 0):
        events_unpaced = list(
            LocalModel(OfflineModel(tokens_per_second=pace, sleep=unpaced.append)).converse_stream(
                request("Explain DNS.")
            )
        )
        assert events_unpaced == events
    assert unpaced == []


def test_a_long_answer_fills_max_tokens_and_lasts_a_minute_at_the_default_pace() -> None:
    pauses: list[float] = []
    model = build_model("offline", guardrail=GUARDRAIL)
    model.generator = OfflineModel(sleep=pauses.append)
    asked = request(
        "Tell me about tea at length.", inferenceConfig={"maxTokens": 2400}, guardrailConfig=GUARDRAIL_CONFIG
    )
    events = list(model.converse_stream(asked))
    assert events[-2] == {"messageStop": {"stopReason": "end_turn"}}
    assert 2390 <= events[-1]["metadata"]["usage"]["outputTokens"] <= 2400
    assert 59.5 < sum(pauses) <= 60
    assert text_of(events) == model.converse(asked)["output"]["message"]["content"][1]["text"]
    unbounded = model.converse(request("Tea, at length please."))
    assert LONG_ANSWER_TOKENS - 10 <= unbounded["usage"]["outputTokens"] <= LONG_ANSWER_TOKENS
    assert model.converse(request("Tea please."))["usage"]["outputTokens"] < 200
