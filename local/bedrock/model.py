"""The model interface of the local runner, and the one implementation every backend is served through.

`Model` is what the Bedrock stand-in (Converse, ConverseStream, ApplyGuardrail) and the emulated batch jobs
(one chat.completion per record) call. `LocalModel` implements it once, with Bedrock's guardrail semantics,
on top of a `Generator`: the backend proper, which only answers OpenAI chat bodies (and, if it is a
`StreamingGenerator`, streams them).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol, runtime_checkable

from infra.config import GPT_OSS_MODELS
from local.bedrock.guardrail import StreamGuard, WordGuardrail
from local.bedrock.shapes import (
    Delta,
    Generation,
    ModelError,
    ReasoningDelta,
    StreamEvents,
    TextDelta,
    ToolUseDelta,
    ToolUseStart,
    characters,
    chat_body,
    chat_completion,
    converse_response,
    generation_deltas,
    prompt_tokens,
    service_tier,
)
from shared.gpt_oss import estimate_tokens

_TRACE_ON = ("enabled", "enabled_full")


class Generator(Protocol):
    """A model backend: the answer of the model with this Bedrock id to an OpenAI chat body."""

    def generate(self, body: Mapping[str, Any], *, model_id: str) -> Generation:
        """Answer one chat body (its `model`, if any, is ignored in favour of `model_id`).

        Raises:
            ModelError: the backend cannot answer (its code says why, as Bedrock would).
        """
        ...


@runtime_checkable
class StreamingGenerator(Generator, Protocol):
    """A backend that can also stream its answer as it produces it (see `stream_answer` for one that cannot)."""

    def stream(self, body: Mapping[str, Any], *, model_id: str) -> Iterator[Delta]:
        """Answer one chat body piece by piece; the last delta is a `Finish`. Closing the iterator stops it.

        Raises:
            ModelError: the backend cannot answer, or failed part-way (while iterating).
        """
        ...


def stream_answer(generator: Generator, body: Mapping[str, Any], *, model_id: str) -> Iterator[Delta]:
    """A backend's answer piece by piece: streamed if it can stream, else its whole answer cut into pieces.

    Raises:
        ModelError: the backend cannot answer, or failed part-way (while iterating).
    """
    if isinstance(generator, StreamingGenerator):
        return generator.stream(body, model_id=model_id)
    return generation_deltas(generator.generate(body, model_id=model_id))


class Model(Protocol):
    """Bedrock runtime's model calls, as plain functions of Bedrock's request and response bodies."""

    def converse(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """A Converse response for a Converse request (its keyword arguments, `modelId` included)."""
        ...

    def converse_stream(self, request: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        """The ConverseStream events (botocore's output shape) for a ConverseStream request, as they are produced.

        An error before the first event is a `ModelError` (an HTTP error on the wire); after it, the stream ends
        with an exception event such as `{"modelStreamErrorException": {"message": ...}}`. Closing the
        iterator early stops the generation.
        """
        ...

    def apply_guardrail(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """An ApplyGuardrail response for an ApplyGuardrail request (its URI's identifier and version included)."""
        ...

    def chat_completion(self, body: Mapping[str, Any], *, model_id: str | None = None) -> dict[str, Any]:
        """What InvokeModel (and a batch job's output line) gives for an OpenAI chat body: a chat.completion."""
        ...


class LocalModel:
    """`Model` on top of a backend: unknown models and guardrails are refused, the guardrail is applied."""

    def __init__(
        self,
        generator: Generator,
        *,
        guardrail: WordGuardrail | None = None,
        model_ids: Sequence[str] = GPT_OSS_MODELS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.generator = generator
        self.guardrail = guardrail or WordGuardrail()
        self.model_ids = tuple(model_ids)
        self._clock = clock

    def converse(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """A Converse response; with `guardrailConfig`, the guarded input is checked first, then the answer.

        A request with a `serviceTier` is answered on it, and the response says so (Bedrock reports the tier that
        served a request; one that asked for none gets none reported here).

        Raises:
            ModelError: the model or the guardrail does not exist, the request is invalid, or the backend failed.
        """
        model_id, config = self._checked(request)
        if config is None:
            response = converse_response(self.generator.generate(chat_body(request), model_id=model_id))
        else:
            response = self._guarded(request, model_id, config)
        tier = service_tier(request)
        if tier is not None:
            response["serviceTier"] = tier
        return response

    def _guarded(self, request: Mapping[str, Any], model_id: str, config: Mapping[str, Any]) -> dict[str, Any]:
        """The Converse response behind the guardrail: the input checked first, then the answer."""
        guardrail = self.guardrail
        input_verdict = guardrail.check(guarded_input(request))
        output_verdict = None
        if input_verdict.intervened:
            # The model never runs: nothing is generated, and nothing is counted.
            response = _blocked(guardrail.blocked_input_message, Generation(answer=""))
        else:
            generation = self.generator.generate(chat_body(request), model_id=model_id)
            output_verdict = guardrail.check([generation.answer])
            if output_verdict.intervened:
                response = _blocked(guardrail.blocked_output_message, generation)
            else:
                response = converse_response(generation)
        if config.get("trace") in _TRACE_ON:
            trace = guardrail.converse_trace(input_verdict=input_verdict, output_verdict=output_verdict)
            response["trace"] = {"guardrail": trace}
        return response

    def converse_stream(self, request: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        """ConverseStream events; with `guardrailConfig`, the guarded input first, then the answer as it streams.

        An intervention on the input gives a stream of the blocked-input message, and no generation. The answer
        is checked as it streams, in the config's `streamProcessingMode` (see `StreamGuard`): `sync` (the
        default) judges text before it is sent, `async` sends each piece at once and judges it afterwards. On
        an intervention the generation stops, the blocked-output message follows as text and the stream ends
        with `guardrail_intervened`. Reasoning and tool input are not evaluated, as in Bedrock.

        Raises:
            ModelError: the model or the guardrail does not exist or the request is invalid (at once), or the
                backend failed before its first piece (on the first `next`).
        """
        model_id, config = self._checked(request)
        body = chat_body(request)
        tier = service_tier(request)
        if config is None:
            return self._stream(body, model_id, None, tier)
        guard = StreamGuard(
            self.guardrail,
            input_verdict=self.guardrail.check(guarded_input(request)),
            mode=config.get("streamProcessingMode", "sync"),
            trace=config.get("trace") in _TRACE_ON,
        )
        if guard.input_verdict.intervened:
            # As in converse: the model never runs, nothing is generated and nothing is counted.
            events = StreamEvents(tier)
            message = [*events.start(), *events.text(self.guardrail.blocked_input_message)]
            end = events.stop(
                "guardrail_intervened", input_tokens=0, output_tokens=0, latency_ms=0, trace=guard.trace()
            )
            return iter([*message, *end])
        return self._stream(body, model_id, guard, tier)

    def apply_guardrail(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """An ApplyGuardrail response from the word-list guardrail.

        Raises:
            ModelError: the guardrail version does not exist, or the request is invalid.
        """
        return self.guardrail.apply(request)

    def chat_completion(self, body: Mapping[str, Any], *, model_id: str | None = None) -> dict[str, Any]:
        """The chat.completion InvokeModel gives for gpt-oss: reasoning inline in `<reasoning>` tags, no guardrail.

        This is what a batch job writes for a record (batch jobs are not guarded). `model_id` is the job's
        model; without it, the body's `model`, else the first model.

        Raises:
            ModelError: the body is not a valid gpt-oss request, or the backend failed.
        """
        named = body.get("model")
        model_id = self._known_model(model_id or (str(named) if named else self.model_ids[0]))
        if named is not None and named != model_id:
            raise ModelError("ValidationException", f"model must be {model_id} (the model of the call) or absent.")
        if body.get("stream"):
            raise ModelError("ValidationException", "stream must be false.")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise ModelError("ValidationException", "messages must be a non-empty array.")
        generation = self.generator.generate(
            {key: value for key, value in body.items() if key != "model"}, model_id=model_id
        )
        digest = hashlib.sha256(json.dumps([model_id, body], sort_keys=True, default=str).encode()).hexdigest()
        return chat_completion(
            generation, model_id=model_id, completion_id=f"chatcmpl-{digest[:29]}", created=int(self._clock())
        )

    def close(self) -> None:
        """Release the backend's connections, if it holds any."""
        close_if_closable(self.generator)

    def _checked(self, request: Mapping[str, Any]) -> tuple[str, Mapping[str, Any] | None]:
        """The model id and the guardrail config of a valid Converse(Stream) request.

        Raises:
            ModelError: the model or the guardrail version does not exist, or there are no messages.
        """
        model_id = self._known_model(str(request.get("modelId", "")))
        if not request.get("messages"):
            raise ModelError("ValidationException", "messages must contain at least one message.")
        config: Mapping[str, Any] | None = request.get("guardrailConfig")
        if config is not None and not self.guardrail.is_version(
            str(config.get("guardrailIdentifier")), str(config.get("guardrailVersion"))
        ):
            raise ModelError(
                "ValidationException", "The guardrail identifier or version provided in the request does not exist."
            )
        return model_id, config

    def _stream(
        self, body: Mapping[str, Any], model_id: str, guard: StreamGuard | None, tier: Mapping[str, str] | None
    ) -> Iterator[dict[str, Any]]:
        started = time.monotonic()
        deltas = stream_answer(self.generator, body, model_id=model_id)
        try:
            # The first piece is awaited before messageStart: a backend that cannot even start fails the call.
            first = next(deltas, None)
            if first is None:
                raise ModelError("ModelErrorException", "The model produced nothing.")
            events = StreamEvents(tier)
            yield from events.start()
            generated = 0
            try:
                for delta in itertools.chain([first], deltas):
                    generated += characters(delta)
                    yield from _delta_events(events, delta, guard)
                    if guard is not None and guard.blocked:
                        yield from events.text(self.guardrail.blocked_output_message)
                        yield from events.stop(
                            "guardrail_intervened",
                            input_tokens=prompt_tokens(body),
                            output_tokens=max(1, estimate_tokens(generated)),
                            latency_ms=round((time.monotonic() - started) * 1000),
                            trace=guard.trace(),
                        )
                        return
            except ModelError as error:
                yield error.stream_event()
        finally:
            # Also when the caller closes this iterator early: the generation stops with it.
            close_if_closable(deltas)

    def _known_model(self, model_id: str) -> str:
        # Callers may name a model by its id or by its foundation-model ARN.
        name = model_id.rsplit("/", 1)[-1]
        if name not in self.model_ids:
            raise ModelError("ValidationException", "The provided model identifier is invalid.")
        return name


def guarded_input(request: Mapping[str, Any]) -> list[str]:
    """The texts a guardrail evaluates in a Converse request.

    Those are the guardContent blocks when there are any (in messages or system), otherwise the text of
    every message.
    """
    blocks = [block for turn in request.get("messages", ()) for block in turn.get("content", ())]
    guarded = [block["guardContent"] for block in [*blocks, *request.get("system", ())] if "guardContent" in block]
    if guarded:
        return [str(content["text"]["text"]) for content in guarded if "text" in content]
    return [str(block["text"]) for block in blocks if "text" in block]


def _delta_events(events: StreamEvents, delta: Delta, guard: StreamGuard | None) -> list[dict[str, Any]]:
    """The events one delta of the generation makes, the answer's text going through the guard first."""
    if isinstance(delta, ReasoningDelta):
        return events.reasoning(delta.text) if delta.text else []
    if isinstance(delta, TextDelta):
        text = delta.text if guard is None else guard.text(delta.text)
        return events.text(text) if text else []
    # Anything after the answer (a tool call, the end) completes it: what the guard held back is judged now.
    held = "" if guard is None else guard.finish()
    leading = events.text(held) if held else []
    if guard is not None and guard.blocked:
        return leading
    if isinstance(delta, ToolUseStart):
        return [*leading, *events.tool_use(delta.id, delta.name)]
    if isinstance(delta, ToolUseDelta):
        return [*leading, *events.tool_input(delta.input)]
    return [
        *leading,
        *events.stop(
            delta.stop_reason,
            input_tokens=delta.input_tokens,
            output_tokens=delta.output_tokens,
            latency_ms=delta.latency_ms,
            trace=None if guard is None else guard.trace(),
        ),
    ]


def close_if_closable(resource: object) -> None:
    """Close an iterator or a backend that can be closed (generators can; a list's iterator cannot)."""
    close = getattr(resource, "close", None)
    if callable(close):
        close()


def _blocked(message: str, generation: Generation) -> dict[str, Any]:
    answer = replace(generation, answer=message, reasoning="", tool_calls=())
    return {**converse_response(answer), "stopReason": "guardrail_intervened"}
