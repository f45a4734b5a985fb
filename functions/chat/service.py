"""What the chat routes do: answer one chat request through Converse or ConverseStream, and list the models.

Routes (chat/app.py) read the request into a `Call`; translate.py and streaming.py hold the rules;
shared/converse.py makes the one Bedrock call. Everything here is synchronous and runs in a worker thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any, TypeVar

from chat import responses
from chat.edge import Call
from chat.models import ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, ModelCard
from chat.responses import Event, ResponseBuilder
from chat.responses_models import Response, ResponsesRequest
from chat.settings import ChatSettings
from chat.streaming import ChunkTranslator
from chat.translate import for_stream, resolve_model, to_converse
from shared.converse import ConverseGateway, ConverseStream, ReplyTrace, StreamEvent, reply_events
from shared.gpt_oss import RELEASED_AT
from shared.observability import MetricUnit, logger, metrics
from shared.settings import load_settings

# The bodies of the two answering routes.
RequestT = TypeVar("RequestT", ChatCompletionRequest, ResponsesRequest)


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
    request, converse_request = _translated(call, settings, to_converse)
    translator = _translator(call, converse_request, settings, include_reasoning=request.include_reasoning)
    return _answer(call, translator, converse_request, settings=settings, gateway=gateway, on_chunk=None)


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
    request, converse_request = _translated(call, settings, to_converse)
    translator = _translator(
        call,
        converse_request,
        settings,
        include_reasoning=request.include_reasoning,
        include_usage=bool(request.stream_options and request.stream_options.include_usage),
    )
    return _answer(call, translator, converse_request, settings=settings, gateway=gateway, on_chunk=emit, opened=opened)


@dataclass(frozen=True)
class PreparedResponse:
    """A /v1/responses request translated for Converse, and the builder of its events and response object."""

    converse_request: dict[str, Any]
    translator: ChunkTranslator
    builder: ResponseBuilder

    def finish(self, completion: ChatCompletion) -> tuple[list[Event], Response]:
        """The closing events of the answer, and its response object."""
        reasoning_tokens = self.translator.reasoning_tokens(completion.usage.completion_tokens)
        return self.builder.finish(completion, reasoning_tokens=reasoning_tokens)


def prepare_response(call: Call[ResponsesRequest], settings: ChatSettings) -> PreparedResponse:
    """Translate a Responses request (nothing is sent to Bedrock yet).

    Raises:
        ChatError: the request cannot be honoured.
    """
    request, converse_request = _translated(call, settings, responses.to_converse)
    translator = _translator(call, converse_request, settings, include_reasoning=responses.wants_reasoning(request))
    builder = ResponseBuilder(
        request,
        response_id=f"resp_{translator.completion_id.removeprefix('chatcmpl-')}",
        created_at=translator.created,
        model=translator.model,
        service_tier=translator.service_tier,
    )
    return PreparedResponse(converse_request, translator, builder)


def respond(
    call: Call[ResponsesRequest], prepared: PreparedResponse, *, settings: ChatSettings, gateway: ConverseGateway
) -> Response:
    """Answer one Responses request through Bedrock Converse: the response object.

    Raises:
        BedrockError: Bedrock gave no usable answer.
    """
    completion = _answer(
        call,
        prepared.translator,
        prepared.converse_request,
        settings=settings,
        gateway=gateway,
        on_chunk=prepared.builder.feed,
    )
    # The events are for streams; the response holds the same items.
    _, response = prepared.finish(completion)
    return response


def stream_response(
    call: Call[ResponsesRequest],
    prepared: PreparedResponse,
    *,
    settings: ChatSettings,
    gateway: ConverseGateway,
    emit: Callable[[Event], None],
    opened: Callable[[ConverseStream], None],
) -> Response:
    """Answer one Responses request through ConverseStream, emitting its events as Bedrock's arrive.

    response.created comes with the answer's first chunk, so a call Bedrock refuses, even once its stream is
    open, is still an HTTP error (a 429 the caller can retry).

    Raises:
        BedrockError: Bedrock gave no stream, or the stream failed (events may have been emitted already).
    """
    builder = prepared.builder
    begun: list[bool] = []

    def fold(chunk: ChatCompletionChunk) -> None:
        if not begun:
            begun.append(True)
            for event in builder.opening():
                emit(event)
        for event in builder.feed(chunk):
            emit(event)

    completion = _answer(
        call,
        prepared.translator,
        prepared.converse_request,
        settings=settings,
        gateway=gateway,
        on_chunk=fold,
        opened=opened,
    )
    events, response = prepared.finish(completion)
    for event in events:
        emit(event)
    return response


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


def _translated(
    call: Call[RequestT], settings: ChatSettings, translate: Callable[..., dict[str, Any]]
) -> tuple[RequestT, dict[str, Any]]:
    """The call's body and the Converse request `translate` makes of it, for the model it names."""
    request = call.body
    assert request is not None, "answering routes read their body into the call"
    model_id = resolve_model(request.model, settings)
    logger.thread_safe_append_keys(model_id=model_id)
    return request, translate(request, settings, model_id=model_id, caller=call.caller)


def _translator(
    call: Call[Any],
    converse_request: dict[str, Any],
    settings: ChatSettings,
    *,
    include_reasoning: bool,
    include_usage: bool = False,
) -> ChunkTranslator:
    """The one translation of this call's answer, for the model and tier the Converse request asks."""
    return ChunkTranslator(
        completion_id=completion_id(call),
        created=int(time.time()),
        model=converse_request["modelId"],
        include_reasoning=settings.RETURN_REASONING or include_reasoning,
        tools_offered="toolConfig" in converse_request,
        include_usage=include_usage,
        service_tier=converse_request.get("serviceTier", {}).get("type", "default"),
    )


def _answer(
    call: Call[Any],
    translator: ChunkTranslator,
    converse_request: dict[str, Any],
    *,
    settings: ChatSettings,
    gateway: ConverseGateway,
    on_chunk: Callable[[ChatCompletionChunk], object] | None,
    opened: Callable[[ConverseStream], None] | None = None,
) -> ChatCompletion:
    """The completion of one Converse call (streamed when `opened` is given), each chunk handed to `on_chunk`."""
    started = time.monotonic()
    if opened is None:
        events: Iterable[StreamEvent] = reply_events(gateway.converse(converse_request, deadline=call.deadline))
    else:
        stream_request = for_stream(converse_request, guardrail_mode=settings.GUARDRAIL_STREAM_MODE)
        opened_stream = gateway.converse_stream(stream_request, deadline=call.deadline)
        opened(opened_stream)
        events = opened_stream
    for event in events:
        for chunk in translator.feed(event):
            if on_chunk is not None:
                on_chunk(chunk)
    completion = translator.completion()
    metadata = translator.metadata
    _record_completion(
        completion,
        stop_reason=translator.stop_reason or "",
        latency_ms=metadata.latency_ms if metadata else None,
        trace=metadata.trace if metadata else None,
        started=started,
        streamed=opened is not None,
    )
    return completion


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
    # Tiers are priced and served apart, so the request's metrics are also published per tier that served it:
    # a second dimension set in the same blob (the first keeps the service alone, which the alarms read).
    metrics.add_dimensions(service=metrics.service, ServiceTier=completion.service_tier)
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
        service_tier=completion.service_tier,
    )
