"""gpt-oss helpers: reasoning split, stop reasons, the context-window estimate."""

from __future__ import annotations

import re

import botocore.session
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.errors import BedrockModelError
from shared.gpt_oss import (
    CONTEXT_WINDOW_TOKENS,
    estimate_tokens,
    exceeds_context_window,
    finish_reason,
    split_reasoning,
)

_NO_TAGS = st.text().filter(lambda text: "<reasoning>" not in text and "</reasoning>" not in text)
# Texts made of the pieces the split looks at: tags (whole and cut), every kind of whitespace, words.
_PIECES = st.sampled_from(
    [
        "<reasoning>",
        "</reasoning>",
        "<reasoning",
        "reasoning>",
        "</",
        "<",
        ">",
        " ",
        "\n",
        "\t",
        "\r\n",
        "\x0b",
        "\x0c",
        "\x1c",
        "\x85",
        "\xa0",
        "\u2028",
        "\u3000",
        "\u200b",
        "think",
        "Paris.",
    ]
)
_TAGGED = st.one_of(st.lists(_PIECES, max_size=12).map("".join), st.text())
_LEADING_BLOCK = re.compile(r"\s*<reasoning>(.*?)(?:</reasoning>|\Z)", re.DOTALL)


def _split_by_pattern(text: str) -> tuple[str | None, str]:
    """The split as the regular expression it used to be written with says it: the reference."""
    parts: list[str] = []
    rest = text
    while (match := _LEADING_BLOCK.match(rest)) is not None:
        parts.append(match.group(1).strip())
        rest = rest[match.end() :]
    if not parts:
        return None, text
    return "\n\n".join(part for part in parts if part) or None, rest.lstrip()


@pytest.mark.parametrize(
    ("text", "reasoning", "answer"),
    [
        ("<reasoning>think</reasoning>Paris.", "think", "Paris."),
        ("  \n<reasoning> think </reasoning>\n\nParis.", "think", "Paris."),
        ("<reasoning>still thinking when tokens ran out", "still thinking when tokens ran out", ""),
        ("Paris.", None, "Paris."),
        ("\n  indented answer", None, "\n  indented answer"),
        ("<reasoning>one</reasoning><reasoning>two</reasoning>answer", "one\n\ntwo", "answer"),
        ("<reasoning></reasoning>answer", None, "answer"),
        (
            "The tag <reasoning>x</reasoning> is quoted mid-answer.",
            None,
            "The tag <reasoning>x</reasoning> is quoted mid-answer.",
        ),
        ("", None, ""),
    ],
)
def test_split_reasoning(text: str, reasoning: str | None, answer: str) -> None:
    assert split_reasoning(text) == (reasoning, answer)


@given(text=_TAGGED)
def test_split_reasoning_matches_the_pattern_it_replaced(text: str) -> None:
    assert split_reasoning(text) == _split_by_pattern(text)


@given(reasoning=_NO_TAGS, answer=_NO_TAGS)
def test_reasoning_never_leaks_into_the_answer(reasoning: str, answer: str) -> None:
    split = split_reasoning(f"<reasoning>{reasoning}</reasoning>{answer}")
    assert split.answer == answer.lstrip()
    assert split.reasoning == (reasoning.strip() or None)


@given(answer=_NO_TAGS)
def test_text_without_tags_is_all_answer(answer: str) -> None:
    assert split_reasoning(answer) == (None, answer)


@pytest.mark.parametrize(
    ("stop_reason", "expected"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("guardrail_intervened", "content_filter"),
        ("content_filtered", "content_filter"),
    ],
)
def test_finish_reason(stop_reason: str, expected: str) -> None:
    assert finish_reason(stop_reason) == expected


@pytest.mark.parametrize("stop_reason", ["malformed_model_output", "malformed_tool_use", "a_future_reason"])
def test_unusable_stop_reasons_are_model_errors(stop_reason: str) -> None:
    with pytest.raises(BedrockModelError) as raised:
        finish_reason(stop_reason)
    assert raised.value.code == stop_reason


def test_every_converse_stop_reason_is_decided() -> None:
    model = botocore.session.get_session().get_service_model("bedrock-runtime")
    output = model.operation_model("Converse").output_shape
    assert output is not None
    stop_reasons = output.members["stopReason"].enum  # type: ignore[attr-defined]
    assert len(stop_reasons) == 9
    for stop_reason in stop_reasons:
        try:
            finish_reason(stop_reason)
        except BedrockModelError:
            assert stop_reason.startswith("malformed_")


def test_context_window_estimate() -> None:
    assert estimate_tokens(0) == 0
    assert estimate_tokens(1) == 1
    assert estimate_tokens(8) == 2
    limit_characters = CONTEXT_WINDOW_TOKENS * 4
    assert not exceeds_context_window(limit_characters)
    assert exceeds_context_window(limit_characters + 4)
