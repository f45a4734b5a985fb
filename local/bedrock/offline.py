"""The offline model: a deterministic stand-in for gpt-oss that answers in a blink, with no network.

It restates the question (so a demo shows that the request went through), calls a tool when the
request offers tools and asks for one, reports tool results, fills JSON schemas, honours stop
sequences and runs out of tokens like a reasoning model does: reasoning first, then the answer.
Same input, same output.

Streamed (ConverseStream), the same answer comes in word pieces at a pace a person can watch:
`tokens_per_second` output tokens a second (40 by default; None or 0: no pause), so a stream of N output
tokens lasts about N / tokens_per_second seconds. Whole answers (Converse, batch) never wait.

Two phrases in the last user message make it behave in ways tests and demos need:
- `at length`: the answer goes on with plain filler sentences until the output fills the request's max
  tokens (`max_completion_tokens` / `max_tokens`; 2,400 without one), and still ends with `end_turn`. With
  max tokens 2,400 at the default pace, a stream of about 60 seconds.
- `[stream-error <exception> after <n>]`, `<exception>` one of ConverseStream's exception members
  (`modelStreamErrorException`, `throttlingException`, `internalServerException`, `serviceUnavailableException`,
  `validationException`): a stream sends its first n pieces (reasoning and answer pieces, tool starts and
  tool-input pieces, in order) and then fails with that exception event. Whole answers ignore it.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

from local.bedrock.shapes import (
    Delta,
    Finish,
    Generation,
    ModelError,
    ToolCall,
    characters,
    generation_deltas,
    message_text,
    prompt_tokens,
)
from shared.gpt_oss import CHARS_PER_TOKEN_ESTIMATE, estimate_tokens

SUMMARY_CHARACTERS = 80
DEFAULT_TOKENS_PER_SECOND = 40.0
# How long an answer `at length` runs when the request sets no max tokens: a minute at the default pace.
LONG_ANSWER_TOKENS = 2400
# A fixed, plausible model latency: a base plus a little per generated token.
_BASE_LATENCY_MS = 20
_LATENCY_MS_PER_TOKEN = 3
_AT_LENGTH = re.compile(r"\bat length\b", re.IGNORECASE)
_STREAM_ERROR = re.compile(
    r"\[stream-error (?P<member>modelStreamErrorException|throttlingException|internalServerException"
    r"|serviceUnavailableException|validationException) after (?P<pieces>\d+)\]"
)
_FILLER = (
    "Part {n} of this long answer: the offline model keeps writing because the question asked for an answer at "
    "length, so that a client can watch a long stream arrive piece by piece. "
)


class OfflineModel:
    """A deterministic local model in gpt-oss's manner (see the module docstring)."""

    def __init__(
        self,
        *,
        tokens_per_second: float | None = DEFAULT_TOKENS_PER_SECOND,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if tokens_per_second is not None and not tokens_per_second >= 0:  # also refuses nan
            raise ValueError(f"tokens_per_second must be positive, 0 or None, not {tokens_per_second}")
        self.tokens_per_second = tokens_per_second or None
        self._sleep = sleep

    def generate(self, body: Mapping[str, Any], *, model_id: str) -> Generation:
        """Answer an OpenAI chat body."""
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        draft = _draft(body, model_id)
        if _AT_LENGTH.search(_question(body)) and not draft.tool_calls:
            draft = _at_length(draft, max_tokens if isinstance(max_tokens, int) else LONG_ANSWER_TOKENS)
        draft = _stop_at_sequences(draft, body.get("stop"))
        draft = _within_budget(draft, max_tokens)
        output_tokens = _tokens(draft)
        return replace(
            draft,
            input_tokens=prompt_tokens(body),
            output_tokens=output_tokens,
            latency_ms=_BASE_LATENCY_MS + _LATENCY_MS_PER_TOKEN * output_tokens,
        )

    def stream(self, body: Mapping[str, Any], *, model_id: str) -> Iterator[Delta]:
        """The answer of `generate` in word pieces, each after a pause for its tokens at the model's pace.

        Raises:
            ModelError: the prompt asks for a stream error (see the module docstring), after its pieces.
        """
        fault = _STREAM_ERROR.search(_question(body))
        for count, delta in enumerate(generation_deltas(self.generate(body, model_id=model_id))):
            if fault is not None and (count == int(fault["pieces"]) or isinstance(delta, Finish)):
                member = fault["member"]
                raise ModelError(member[:1].upper() + member[1:], f"The stream failed as asked ({fault[0]}).")
            self._pause(delta)
            yield delta

    def _pause(self, delta: Delta) -> None:
        if self.tokens_per_second is None:
            return
        size = characters(delta)
        if size:
            # Fractional tokens: over a whole stream the pauses add up to output tokens / tokens_per_second.
            self._sleep(size / CHARS_PER_TOKEN_ESTIMATE / self.tokens_per_second)


def pace_words(tokens_per_second: float | None) -> str:
    """How fast the offline model streams, for people: "40 tokens/s", or "at once"."""
    return f"{tokens_per_second:g} tokens/s" if tokens_per_second else "at once"


def summary(text: str, limit: int = SUMMARY_CHARACTERS) -> str:
    """The text on one line, cut at a word boundary to at most `limit` characters."""
    line = " ".join(text.split())
    if len(line) <= limit:
        return line
    return line[: limit - 1].rsplit(" ", 1)[0] + "…"


def sample_value(schema: Mapping[str, Any], hint: str) -> Any:
    """A value that satisfies a (simple) JSON schema; strings are the hint."""
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    if "default" in schema:
        return schema["default"]
    for alternatives in ("anyOf", "oneOf"):
        if schema.get(alternatives):
            return sample_value(schema[alternatives][0], hint)
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((name for name in kind if name != "null"), "null")
    if kind == "object":
        properties: Mapping[str, Any] = schema.get("properties", {})
        return {name: sample_value(properties.get(name, {}), hint) for name in schema.get("required", properties)}
    if kind == "array":
        return [sample_value(schema.get("items", {}), hint) for _ in range(max(1, int(schema.get("minItems", 1))))]
    scalars: dict[str, Any] = {
        "integer": int(schema.get("minimum", 0)),
        "number": float(schema.get("minimum", 0)),
        "boolean": True,
        "null": None,
    }
    if kind in scalars:
        return scalars[kind]
    return hint[: int(schema.get("maxLength", len(hint)))]


def _question(body: Mapping[str, Any]) -> str:
    """The text of the last user message."""
    messages: Sequence[Mapping[str, Any]] = body.get("messages", ())
    return next((message_text(m) for m in reversed(messages) if m.get("role") == "user"), "")


def _draft(body: Mapping[str, Any], model_id: str) -> Generation:
    messages: Sequence[Mapping[str, Any]] = body.get("messages", ())
    if messages and messages[-1].get("role") == "tool":
        return _after_tools(messages)
    question = _question(body)
    tool = _tool_to_call(body, question)
    if tool is not None:
        return _call(tool, question)
    about = f'The user asks: "{summary(question)}".'
    schema = ((body.get("response_format") or {}).get("json_schema") or {}).get("schema")
    if isinstance(schema, Mapping):
        reasoning = f"{about} The answer must follow the given JSON schema, so I fill it in."
        # Strings take what the question is about (a place, a name), as a model would fill `city` or `name`.
        return Generation(answer=json.dumps(sample_value(schema, _subject(question))), reasoning=reasoning)
    system = " ".join(message_text(m) for m in messages if m.get("role") in ("system", "developer"))
    instructions = f' The instructions say: "{summary(system, 60)}".' if system.strip() else ""
    # Short, as gpt-oss reasons on a simple question: streamed at the default pace, the answer's first token
    # comes within half a second or so, after the reasoning.
    reasoning = f"{about}{instructions} I restate it."
    answer = (
        f'You asked: "{summary(question)}". I am the offline model, a deterministic stand-in for {model_id}. '
        "For real answers, run the local server with --backend openai (any OpenAI-compatible server, such as "
        "gpt-oss-20b in Ollama or vLLM) or --backend aws (Amazon Bedrock, with your AWS credentials)."
    )
    return Generation(answer=answer, reasoning=reasoning)


def _tool_to_call(body: Mapping[str, Any], question: str) -> Mapping[str, Any] | None:
    tools: Sequence[Mapping[str, Any]] = [tool["function"] for tool in body.get("tools") or ()]
    choice = body.get("tool_choice", "auto")
    if not tools or choice == "none":
        return None
    if isinstance(choice, Mapping):
        return next((tool for tool in tools if tool["name"] == choice["function"]["name"]), None)
    words = {word.lower() for word in re.findall(r"\w+", question)}
    mentioned = next((tool for tool in tools if _name_words(tool["name"]) & words), None)
    if mentioned is not None:
        return mentioned
    if choice == "required" or words & {"tool", "tools"}:
        return tools[0]
    return None


def _name_words(name: str) -> set[str]:
    """The telling words of a tool name: `get_weather` and `getWeather` both say "weather"."""
    parts = re.split(r"[_\W]+|(?<=[a-z])(?=[A-Z])", name)
    return {part.lower() for part in parts if len(part) > 3}


def _subject(question: str) -> str:
    """What a question is about: its last run of capitalised words (a place, a name), else the question."""
    runs = re.findall(r"(?<=\s)[A-Z][\w-]*(?:\s+[A-Z][\w-]*)*", question.strip())
    return runs[-1] if runs else summary(question, 60)


def _call(tool: Mapping[str, Any], question: str) -> Generation:
    arguments = sample_value(tool.get("parameters") or {"type": "object"}, _subject(question))
    if not isinstance(arguments, dict):
        arguments = {"input": arguments}
    name = str(tool["name"])
    digest = hashlib.sha256(json.dumps([name, arguments, question], sort_keys=True).encode()).hexdigest()
    reasoning = f'The user asks: "{summary(question)}". The tool {name} can answer that, so I call it.'
    call = ToolCall(id=f"tooluse_{digest[:22]}", name=name, arguments=arguments)
    return Generation(answer="", reasoning=reasoning, tool_calls=(call,), stop_reason="tool_use")


def _after_tools(messages: Sequence[Mapping[str, Any]]) -> Generation:
    names = {
        call["id"]: call["function"]["name"]
        for message in messages
        for call in message.get("tool_calls") or ()
        if message.get("role") == "assistant"
    }
    results: list[str] = []
    for message in reversed(messages):
        if message.get("role") != "tool":
            break
        name = names.get(message.get("tool_call_id"), "the tool")
        results.insert(0, f"{name} returned {summary(message_text(message), 120)}")
    return Generation(answer="; ".join(results) + ".", reasoning="The tools answered; I pass their results on.")


def _at_length(draft: Generation, tokens: int) -> Generation:
    """The answer, followed by filler sentences until the output is `tokens` long (cut at a word boundary)."""
    characters = tokens * CHARS_PER_TOKEN_ESTIMATE - len(draft.reasoning)
    if characters <= len(draft.answer):
        return draft  # no room to go on: the budget rules as for any answer
    parts = [draft.answer]
    length = len(draft.answer)
    while length < characters:
        parts.append(" " + _FILLER.format(n=len(parts)).strip())
        length += len(parts[-1])
    answer = "".join(parts)
    if len(answer) > characters:
        # Every filler sentence starts with a space, so the cut never reaches into the answer itself.
        answer = answer[: characters + 1].rsplit(" ", 1)[0]
    return replace(draft, answer=answer)


def _stop_at_sequences(draft: Generation, stop: Any) -> Generation:
    stops = [stop] if isinstance(stop, str) else list(stop or ())
    found = [draft.answer.find(sequence) for sequence in stops if sequence and sequence in draft.answer]
    if not found:
        return draft
    return replace(draft, answer=draft.answer[: min(found)], tool_calls=(), stop_reason="stop_sequence")


def _within_budget(draft: Generation, max_tokens: Any) -> Generation:
    """Cut the output to `max_tokens`: like gpt-oss, the reasoning spends the budget before the answer."""
    if not isinstance(max_tokens, int) or _tokens(draft) <= max_tokens:
        return draft
    characters = max_tokens * CHARS_PER_TOKEN_ESTIMATE
    reasoning = draft.reasoning[:characters]
    answer = draft.answer[: max(0, characters - len(draft.reasoning))]
    return Generation(answer=answer, reasoning=reasoning, stop_reason="max_tokens")


def _tokens(draft: Generation) -> int:
    arguments = sum(len(json.dumps(call.arguments)) for call in draft.tool_calls)
    return max(1, estimate_tokens(len(draft.reasoning) + len(draft.answer) + arguments))
