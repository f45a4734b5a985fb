"""The one translation of Converse events into chunks: reasoning split across events, tool-call deltas, the fold."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chat.streaming import ChunkTranslator, ReasoningSplitter
from shared.converse import StreamEvent
from shared.errors import BedrockModelError
from shared.gpt_oss import split_reasoning

# Text made of the pieces that matter to the splitter, so tags, partial tags and whitespace meet often.
fragments = st.sampled_from(
    ["<reasoning>", "</reasoning>", "<reas", "oning>", "</rea", " ", "\n", "a", "b c", "<", ">"]
)
texts = st.lists(fragments, max_size=12).map("".join) | st.text(max_size=30)


def split_at(text: str, cuts: list[int]) -> list[str]:
    points = sorted({min(cut, len(text)) for cut in cuts})
    return [text[start:end] for start, end in zip([0, *points], [*points, len(text)], strict=True)]


@given(text=texts, cuts=st.lists(st.integers(min_value=0, max_value=40), max_size=8))
def test_the_splitter_splits_any_chunking_as_split_reasoning_splits_the_whole(text: str, cuts: list[int]) -> None:
    splitter = ReasoningSplitter()
    pieces = [piece for chunk in split_at(text, cuts) for piece in splitter.feed(chunk)] + splitter.flush()
    expected = split_reasoning(text)
    assert "".join(piece for kind, piece in pieces if kind == "reasoning") == (expected.reasoning or "")
    assert "".join(piece for kind, piece in pieces if kind == "answer") == expected.answer


def test_reasoning_is_never_sent_as_content_even_when_its_tags_are_cut() -> None:
    splitter = ReasoningSplitter()
    pieces = [
        piece for chunk in ["<reas", "oning>Think ", "hard</reas", "oning> Paris."] for piece in splitter.feed(chunk)
    ]
    pieces += splitter.flush()
    assert pieces == [("reasoning", "Think"), ("reasoning", " hard"), ("answer", "Paris.")]


def events(*raw: dict[str, Any]) -> list[StreamEvent]:
    return [StreamEvent.model_validate(event) for event in raw]


def delta(index: int, **fields: Any) -> dict[str, Any]:
    return {"contentBlockDelta": {"contentBlockIndex": index, "delta": fields}}


METADATA = {
    "metadata": {"usage": {"inputTokens": 7, "outputTokens": 9, "totalTokens": 16}, "metrics": {"latencyMs": 5}}
}


def translator(**overrides: Any) -> ChunkTranslator:
    options: dict[str, Any] = {
        "completion_id": "chatcmpl-1",
        "created": 1,
        "model": "openai.gpt-oss-20b-1:0",
        "include_reasoning": False,
        "tools_offered": True,
        "include_usage": True,
    }
    return ChunkTranslator(**{**options, **overrides})


def deltas(chunks: list[Any]) -> list[dict[str, Any]]:
    return [json.loads(chunk.model_dump_json()) for chunk in chunks]


def test_tool_call_arguments_stream_as_deltas_and_fold_into_one_call() -> None:
    stream = events(
        {"messageStart": {"role": "assistant"}},
        {"contentBlockStart": {"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": "t1", "name": "weather"}}}},
        delta(0, toolUse={"input": '{"city": '}),
        delta(0, toolUse={"input": '"Paris"}'}),
        {"contentBlockStop": {"contentBlockIndex": 0}},
        {"messageStop": {"stopReason": "tool_use"}},
        METADATA,
    )
    subject = translator()
    chunks = deltas(list(subject.translate(stream)))
    calls = [
        chunk["choices"][0]["delta"]["tool_calls"][0]
        for chunk in chunks
        if chunk["choices"] and "tool_calls" in chunk["choices"][0]["delta"]
    ]
    assert calls == [
        {"index": 0, "id": "t1", "type": "function", "function": {"name": "weather", "arguments": ""}},
        {"index": 0, "function": {"arguments": '{"city": '}},
        {"index": 0, "function": {"arguments": '"Paris"}'}},
    ]
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1] == {
        **chunks[-1],
        "choices": [],
        "usage": {"prompt_tokens": 7, "completion_tokens": 9, "total_tokens": 16},
    }
    completion = subject.completion()
    assert completion.choices[0].message.tool_calls is not None
    assert json.loads(completion.choices[0].message.tool_calls[0].function.arguments) == {"city": "Paris"}


def test_reasoning_blocks_go_to_reasoning_content_only_when_asked() -> None:
    stream = events(
        {"messageStart": {"role": "assistant"}},
        delta(0, reasoningContent={"text": "The user wants"}),
        delta(0, reasoningContent={"text": " a capital."}),
        delta(1, text="Paris."),
        {"messageStop": {"stopReason": "end_turn"}},
        METADATA,
    )
    hidden = deltas(list(translator().translate(stream)))
    assert all("reasoning_content" not in chunk["choices"][0]["delta"] for chunk in hidden if chunk["choices"])
    shown = translator(include_reasoning=True)
    pieces = [chunk["choices"][0]["delta"] for chunk in deltas(list(shown.translate(stream))) if chunk["choices"]]
    assert [piece.get("reasoning_content") for piece in pieces if "reasoning_content" in piece] == [
        "The user wants",
        " a capital.",
    ]
    assert shown.completion().choices[0].message.reasoning_content == "The user wants a capital."


def test_a_guardrail_stop_mid_stream_is_a_content_filter_finish() -> None:
    stream = events(
        {"messageStart": {"role": "assistant"}},
        delta(0, text="Sure, here is"),
        delta(0, text="Sorry, the model cannot answer this."),
        {"messageStop": {"stopReason": "guardrail_intervened"}},
        METADATA,
    )
    subject = translator()
    chunks = deltas(list(subject.translate(stream)))
    assert chunks[-2]["choices"][0]["finish_reason"] == "content_filter"
    assert subject.completion().choices[0].finish_reason == "content_filter"


def test_a_tool_call_nobody_offered_is_a_model_error_at_once() -> None:
    subject = translator(tools_offered=False)
    start = events(
        {"contentBlockStart": {"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": "t", "name": "x"}}}}
    )
    with pytest.raises(BedrockModelError):
        subject.feed(start[0])


def test_a_stream_that_ends_before_its_stop_reason_is_incomplete() -> None:
    subject = translator()
    list(subject.translate(events({"messageStart": {"role": "assistant"}}, delta(0, text="Par"))))
    with pytest.raises(BedrockModelError):
        subject.completion()
