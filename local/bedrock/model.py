"""The model interface of the local runner, and the one implementation every backend is served through.

`Model` is what the Bedrock stand-in (Converse, ApplyGuardrail) and the emulated batch jobs (one
chat.completion per record) call. `LocalModel` implements it once, with Bedrock's guardrail semantics,
on top of a `Generator`: the backend proper, which only answers OpenAI chat bodies.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from infra.config import GPT_OSS_MODELS
from local.bedrock.guardrail import WordGuardrail
from local.bedrock.shapes import (
    Generation,
    ModelError,
    chat_body,
    chat_completion,
    converse_response,
    usage,
)

_TRACE_ON = ("enabled", "enabled_full")


class Generator(Protocol):
    """A model backend: the answer of the model with this Bedrock id to an OpenAI chat body."""

    def generate(self, body: Mapping[str, Any], *, model_id: str) -> Generation:
        """Answer one chat body (its `model`, if any, is ignored in favour of `model_id`).

        Raises:
            ModelError: the backend cannot answer (its code says why, as Bedrock would).
        """
        ...


class Model(Protocol):
    """Bedrock runtime's model calls, as plain functions of Bedrock's request and response bodies."""

    def converse(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """A Converse response for a Converse request (its keyword arguments, `modelId` included)."""
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

        Raises:
            ModelError: the model or the guardrail does not exist, the request is invalid, or the backend failed.
        """
        model_id = self._known_model(str(request.get("modelId", "")))
        if not request.get("messages"):
            raise ModelError("ValidationException", "messages must contain at least one message.")
        config = request.get("guardrailConfig")
        if config is None:
            return converse_response(self.generator.generate(chat_body(request), model_id=model_id))
        guardrail = self.guardrail
        if not guardrail.is_version(str(config.get("guardrailIdentifier")), str(config.get("guardrailVersion"))):
            raise ModelError(
                "ValidationException", "The guardrail identifier or version provided in the request does not exist."
            )
        input_verdict = guardrail.check(guarded_input(request))
        if input_verdict.intervened:
            # The model never runs: nothing is generated, and nothing is counted.
            response = _blocked(guardrail.blocked_input_message, Generation(answer=""))
            output_verdict = None
        else:
            generation = self.generator.generate(chat_body(request), model_id=model_id)
            output_verdict = guardrail.check([generation.answer])
            blocked = _blocked(guardrail.blocked_output_message, generation)
            response = blocked if output_verdict.intervened else converse_response(generation)
        if config.get("trace") in _TRACE_ON:
            trace = guardrail.converse_trace(input_verdict=input_verdict, output_verdict=output_verdict)
            response["trace"] = {"guardrail": trace}
        return response

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
        close = getattr(self.generator, "close", None)
        if callable(close):
            close()

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
    blocks += list(request.get("system", ()))
    guarded = [block["guardContent"] for block in blocks if "guardContent" in block]
    if guarded:
        return [str(content["text"]["text"]) for content in guarded if "text" in content]
    return [
        str(block["text"])
        for turn in request.get("messages", ())
        for block in turn.get("content", ())
        if "text" in block
    ]


def _blocked(message: str, generation: Generation) -> dict[str, Any]:
    return {
        "output": {"message": {"role": "assistant", "content": [{"text": message}]}},
        "stopReason": "guardrail_intervened",
        "usage": usage(generation.input_tokens, generation.output_tokens),
        "metrics": {"latencyMs": generation.latency_ms},
    }
