"""What the chat routes do: answer one chat request through Converse or ConverseStream, and list the models.

Routes (chat/app.py) read the request into a `Call`; translate.py and streaming.py hold the rules;
shared/converse.py makes the one Bedrock call. Everything here is synchronous and runs in a worker thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import cache
from typing import Any

from chat.edge import Call
from chat.models import ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, ModelCard
from chat.settings import ChatSettings
from chat.streaming import ChunkTranslator
from chat.translate import for_stream, from_converse, resolve_model, to_converse
from shared.converse import ConverseGateway, ConverseStream, ReplyTrace
from shared.gpt_oss import RELEASED_AT
from shared.observability import MetricUnit, logger, metrics
from shared.settings import load_settings


def chat_settings() -> ChatSettings:
    """The function's environment (read once per container)."""
    settings: ChatSettings = load_settings(ChatSettings)
    return settings


@cache
def converse_gateway() -> ConverseGateway:
    """The container's Converse gateway, configured from the environment."""
    settings = chat_settings()
    return ConverseGateway(
        max_attempts=settings.BEDROCK_MAX_ATTEMPTS,
        backoff_base=settings.BEDROCK_BACKOFF_BASE_MS / 1000,
        backoff_cap=settings.BEDROCK_BACKOFF_MAX_MS / 1000,
    )


def complete(call: Call[ChatCompletionRequest], *, settings: ChatSettings, gateway: ConverseGateway) -> ChatCompletion:
    """Answer one chat request through Bedrock Converse before the call's deadline.

    Raises:
        ChatError: the request cannot be honoured (nothing was sent to Bedrock).
        BedrockError: Bedrock gave no usable answer.
    """
    request, model_id, converse_request = _converse_request(call, settings)
    started = time.monotonic()
    reply = gateway.converse(converse_request, deadline=call.deadline)
    completion = from_converse(
        reply,
        model=model_id,
        completion_id=completion_id(call),
        created=int(time.time()),
        include_reasoning=settings.RETURN_REASONING or request.include_reasoning,
        tools_offered="toolConfig" in converse_request,
    )
    _record_completion(
        completion, stop_reason=reply.stop_reason, latency_ms=reply.latency_ms, trace=reply.trace, started=started
    )
    return completion


def stream(
    call: Call[ChatCompletionRequest],
    *,
    settings: ChatSettings,
    gateway: ConverseGateway,
    emit: Callable[[ChatCompletionChunk], None],
    opened: Callable[[ConverseStream], None],
) -> ChatCompletion:
    """Answer one chat request through ConverseStream, emitting each chunk as its event arrives.

    `opened` gets the stream once Bedrock has answered, so another thread can close it (a caller that went
    away). Returns the completion the chunks make, once the stream has ended.

    Raises:
        ChatError: the request cannot be honoured (nothing was sent to Bedrock).
        BedrockError: Bedrock gave no stream, or the stream failed (chunks may have been emitted already).
    """
    request, model_id, converse_request = _converse_request(call, settings)
    started = time.monotonic()
    events = gateway.converse_stream(
        for_stream(converse_request, guardrail_mode=settings.GUARDRAIL_STREAM_MODE), deadline=call.deadline
    )
    opened(events)
    translator = ChunkTranslator(
        completion_id=completion_id(call),
        created=int(time.time()),
        model=model_id,
        include_reasoning=settings.RETURN_REASONING or request.include_reasoning,
        tools_offered="toolConfig" in converse_request,
        include_usage=bool(request.stream_options and request.stream_options.include_usage),
    )
    for event in events:
        for chunk in translator.feed(event):
            emit(chunk)
    completion = translator.completion()
    metadata = translator.metadata
    _record_completion(
        completion,
        stop_reason=translator.stop_reason or "",
        latency_ms=metadata.latency_ms if metadata else None,
        trace=metadata.trace if metadata else None,
        started=started,
        streamed=True,
    )
    return completion


def completion_id(call: Call[Any]) -> str:
    """The completion's id, from API Gateway's request id so the two can be matched in logs."""
    return f"chatcmpl-{(call.request_id or str(time.time_ns())).replace('-', '')}"


def model_cards(settings: ChatSettings) -> list[ModelCard]:
    """The model objects this deployment serves: every allowed id, then every alias of one."""
    names = [
        *settings.MODEL_IDS,
        *(alias for alias, target in settings.MODEL_ALIASES.items() if target in settings.MODEL_IDS),
    ]
    return [ModelCard(id=name, created=RELEASED_AT, owned_by="openai") for name in dict.fromkeys(names)]


def _converse_request(
    call: Call[ChatCompletionRequest], settings: ChatSettings
) -> tuple[ChatCompletionRequest, str, dict[str, Any]]:
    request = call.body
    assert request is not None, "chat routes read their body into the call"
    model_id = resolve_model(request.model, settings)
    logger.thread_safe_append_keys(model_id=model_id)
    return request, model_id, to_converse(request, settings, model_id=model_id, caller=call.caller)


def _record_completion(
    completion: ChatCompletion,
    *,
    stop_reason: str,
    latency_ms: int | None,
    trace: ReplyTrace | None,
    started: float,
    streamed: bool = False,
) -> None:
    choice = completion.choices[0]
    intervened = choice.finish_reason == "content_filter"
    elapsed_ms = round((time.monotonic() - started) * 1000)
    latency_ms = latency_ms if latency_ms is not None else elapsed_ms
    metrics.add_metric(name="ChatCompletions", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="InputTokens", unit=MetricUnit.Count, value=completion.usage.prompt_tokens)
    metrics.add_metric(name="OutputTokens", unit=MetricUnit.Count, value=completion.usage.completion_tokens)
    metrics.add_metric(name="ModelLatency", unit=MetricUnit.Milliseconds, value=latency_ms)
    if intervened:
        metrics.add_metric(name="GuardrailIntervened", unit=MetricUnit.Count, value=1)
    logger.info(
        "chat completion finished",
        stop_reason=stop_reason,
        finish_reason=choice.finish_reason,
        input_tokens=completion.usage.prompt_tokens,
        output_tokens=completion.usage.completion_tokens,
        model_latency_ms=latency_ms,
        elapsed_ms=elapsed_ms,
        guardrail_action="INTERVENED" if intervened else "NONE",
        guardrail_findings=list(trace.guardrail_findings() if trace else ()),
        tool_calls=len(choice.message.tool_calls or []),
        stream=streamed,
    )
