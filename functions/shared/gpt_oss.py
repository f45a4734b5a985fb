"""Pure gpt-oss helpers shared by the chat API and the batch pipeline: reasoning, stop reasons, sizes."""

from __future__ import annotations

from typing import Literal, NamedTuple

from shared.errors import BedrockModelError

# Both gpt-oss models have a 128k-token context window (Bedrock user guide, "OpenAI models").
CONTEXT_WINDOW_TOKENS = 128_000
# Both were released on 2025-08-05 (00:00 UTC), the `created` time /v1/models reports.
RELEASED_AT = 1_754_352_000
# About four characters per token for English text: only used to reject obviously oversized prompts
# before a call (Bedrock remains the judge of everything closer to the limit).
CHARS_PER_TOKEN_ESTIMATE = 4

FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]

_FINISH_REASONS: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}
_MALFORMED = frozenset({"malformed_model_output", "malformed_tool_use"})

_OPEN, _CLOSE = "<reasoning>", "</reasoning>"


class ReasoningSplit(NamedTuple):
    """A gpt-oss text split into its reasoning (None when there was none) and its answer."""

    reasoning: str | None
    answer: str


def split_reasoning(text: str) -> ReasoningSplit:
    """Split leading `<reasoning>...</reasoning>` blocks from the answer that follows them.

    InvokeModel (and batch output) put the model's reasoning first, inside these tags. A missing
    close tag means the model stopped while still reasoning, so everything after the open tag is
    reasoning and the answer is empty. Text that does not start with the tag is all answer.
    """
    # str methods, not a regular expression: this runs once per batch record. A property test holds it to
    # the pattern it replaced, r"\s*<reasoning>(.*?)(?:</reasoning>|\Z)" matched repeatedly (str.lstrip()
    # and `\s` know the same Unicode whitespace).
    parts: list[str] = []
    rest = text
    while (block := rest.lstrip()).startswith(_OPEN):
        close = block.find(_CLOSE, len(_OPEN))
        if close < 0:  # the model stopped while still reasoning
            parts.append(block[len(_OPEN) :].strip())
            rest = ""
            break
        parts.append(block[len(_OPEN) : close].strip())
        rest = block[close + len(_CLOSE) :]
    if not parts:
        return ReasoningSplit(None, text)
    return ReasoningSplit("\n\n".join(part for part in parts if part) or None, rest.lstrip())


def finish_reason(stop_reason: str) -> FinishReason:
    """Map a Converse stopReason to an OpenAI finish_reason.

    Raises:
        BedrockModelError: the model produced malformed output, or Bedrock sent an unknown stop reason.
    """
    if stop_reason in _MALFORMED:
        raise BedrockModelError("the model produced output that could not be used", code=stop_reason)
    try:
        return _FINISH_REASONS[stop_reason]
    except KeyError:
        raise BedrockModelError("the model stopped for an unknown reason", code=stop_reason) from None


def estimate_tokens(characters: int) -> int:
    """A rough token count for a number of characters of prompt text."""
    return -(-characters // CHARS_PER_TOKEN_ESTIMATE)


def exceeds_context_window(characters: int) -> bool:
    """Whether a prompt of this many characters is obviously beyond the model's context window."""
    return estimate_tokens(characters) > CONTEXT_WINDOW_TOKENS
