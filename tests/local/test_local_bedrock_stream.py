"""ConverseStream from the local model: the guardrail on a streamed answer, stream errors and the offline pace.

The offline model's pace is exercised through its `sleep`, which these tests replace: no clock is read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from local.bedrock import Generation, LocalModel, ModelError, OfflineModel, WordGuardrail, build_model
from local.bedrock.offline import LONG_ANSWER_TOKENS

MODEL = "openai.gpt-oss-120b-1:0"
GUARDRAIL = WordGuardrail(guardrail_id="gr0local", guardrail_version="3", trigger_words=("forbidden", "top secret"))
GUARDRAIL_CONFIG: dict[str, Any] = {"guardrailIdentifier": "gr0local", "guardrailVersion": "3", "trace": "enabled"}


def user(text: str) -> dict[str, Any]:
    """A user turn whose text the guardrail evaluates, as the chat function sends it."""
    return {"role": "user", "content": [{"guardContent": {"text": {"text": text}}}]}


def request(text: str, **fields: Any) -> dict[str, Any]:
    """A ConverseStream request for one user turn."""
    return {"modelId": MODEL, "messages": [user(text)], **fields}


class Says:
    """A backend with a fixed answer that cannot stream (LocalModel cuts its answer into pieces)."""

    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.calls = 0

    def generate(self, body: Mapping[str, Any], *, model_id: str) -> Generation:
        self.calls += 1
        return Generation(answer=self.answer, reasoning="Thinking.", input_tokens=9, output_tokens=20, latency_ms=7)


def deltas(events: Sequence[Mapping[str, Any]], kind: str) -> list[Any]:
    """The delta payloads of one kind (text, reasoningContent, toolUse) in order."""
    found = [event["contentBlockDelta"]["delta"] for event in events if "contentBlockDelta" in event]
    return [delta[kind] for delta in found if kind in delta]


def text_of(events: Sequence[Mapping[str, Any]]) -> str:
    """The answer text a caller assembles from the stream."""
    return "".join(deltas(events, "text"))


def test_in_sync_mode_a_trigger_phrase_is_held_back_until_it_is_judged() -> None:
    model = LocalModel(Says("This is top secret stuff."), guardrail=GUARDRAIL)
    events = list(model.converse_stream(request("Go", guardrailConfig=GUARDRAIL_CONFIG)))
    texts = deltas(events, "text")
    assert "".join(texts[:-1]) == "This is "
    assert texts[-1] == GUARDRAIL.blocked_output_message


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


def test_a_stream_error_after_the_answer_still_comes_before_message_stop() -> None:
    model = LocalModel(OfflineModel(tokens_per_second=None))
    events = list(model.converse_stream(request("Hi [stream-error modelStreamErrorException after 100000]")))
    assert "modelStreamErrorException" in events[-1]
    assert not any("messageStop" in event for event in events)
    assert text_of(events).startswith("You asked:")


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
