"""The chat function: OpenAI-compatible routes in front of Bedrock Converse, behind API Gateway REST.

Routes parse and answer; translate.py holds the rules and shared/converse.py makes the one call.
"""

import json
import re
import time
import traceback
import uuid
from collections.abc import Mapping
from functools import cache, partial
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from chat.errors import (
    ChatError,
    MethodNotAllowed,
    ModelNotFound,
    RequestTooLarge,
    RouteNotFound,
    UnsupportedMediaType,
    from_validation,
    to_chat_error,
)
from chat.idempotency import answer_once, requested_key
from chat.models import ChatCompletion, ChatCompletionRequest, ErrorBody, ErrorEnvelope, ModelCard, ModelList
from chat.settings import ChatSettings
from chat.streaming import EVENT_STREAM, render_sse
from chat.translate import from_converse, resolve_model, to_converse
from shared.converse import ConverseGateway, ConverseReply
from shared.errors import BedrockError
from shared.gpt_oss import RELEASED_AT
from shared.observability import MetricUnit, logger, metrics, tracer
from shared.settings import load_settings

# Which methods each known path accepts, so a wrong method is a 405 and an unknown path a 404.
_ALLOWED_METHODS: tuple[tuple[re.Pattern[str], tuple[str, ...]], ...] = (
    (re.compile(r"^/v1/chat/completions$"), ("POST",)),
    (re.compile(r"^/v1/models$"), ("GET",)),
    (re.compile(r"^/v1/models/[^/]+$"), ("GET",)),
)


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


def _bounded_json(body: str) -> Any:
    # Powertools calls this before pydantic sees the body, so an oversized request is refused unparsed.
    limit = chat_settings().MAX_REQUEST_BYTES
    if len(body.encode()) > limit:
        raise RequestTooLarge(f"The request body is larger than this service's limit of {limit} bytes.")
    return json.loads(body)


# No enable_validation: _chat_request validates the one body with the same errors. Powertools' OpenAPI
# middleware also normalizes headers, query and cookies and re-validates every route's arguments on every
# request: ≈ 50 µs more per request, a sixth of what the handler adds to the Bedrock call (bench/chat.py).
app = APIGatewayRestResolver(json_body_deserializer=_bounded_json)


@app.post("/v1/chat/completions")
# Neither responses nor exception messages go to X-Ray: both can carry prompt or answer text.
@tracer.capture_method(capture_response=False, capture_error=False)
def create_chat_completion() -> Response[str]:
    """POST /v1/chat/completions: one answer, as a chat.completion or as server-sent events."""
    request = _chat_request()
    settings = chat_settings()
    budget_ms = min(settings.INTEGRATION_TIMEOUT_MS, app.lambda_context.get_remaining_time_in_millis())
    deadline = time.monotonic() + (budget_ms - settings.DEADLINE_MARGIN_MS) / 1000
    event = app.current_event.raw_event
    caller = _caller(event)
    key = requested_key(event)
    answer = partial(complete, request, settings=settings, gateway=converse_gateway(), deadline=deadline, caller=caller)
    completion = (
        answer()
        if key is None
        else answer_once(
            key, caller=caller, request=request, settings=settings, context=app.lambda_context, answer=answer
        )
    )
    if request.stream:
        include_usage = bool(request.stream_options and request.stream_options.include_usage)
        body = render_sse(completion, include_usage=include_usage)
        return _reply(HTTPStatus.OK, body, content_type=EVENT_STREAM, headers={"Cache-Control": "no-cache"})
    return _reply(HTTPStatus.OK, completion.model_dump_json())


@app.get("/v1/models")
def list_models() -> Response[str]:
    """GET /v1/models: the allowed model ids and their aliases."""
    return _reply(HTTPStatus.OK, ModelList(data=model_cards(chat_settings())).model_dump_json())


@app.get("/v1/models/<model>")
def retrieve_model(model: str) -> Response[str]:
    """GET /v1/models/{model}: one model (ids contain ':' and may arrive URL-encoded)."""
    name = unquote(model)
    card = next((card for card in model_cards(chat_settings()) if card.id == name), None)
    if card is None:
        raise ModelNotFound(f"The model '{name[:100]}' does not exist or you do not have access to it.", param="model")
    return _reply(HTTPStatus.OK, card.model_dump_json())


# Powertools leaves exception_handler's return type unannotated; the decorated function keeps its own.
@app.exception_handler(Exception)  # type: ignore[untyped-decorator]
def render_error(error: Exception) -> Response[str]:
    """The one place every failure becomes an OpenAI error envelope with the right status."""
    chat_error = _route_error() if isinstance(error, NotFoundError) else to_chat_error(error)
    _record_failure(error, chat_error)
    body = ErrorEnvelope(
        error=ErrorBody(
            message=f"{chat_error.message} (request id: {_request_id() or 'unknown'})",
            type=chat_error.openai_type,
            param=chat_error.param,
            code=chat_error.code,
        )
    )
    return _reply(chat_error.status, body.model_dump_json(), headers=chat_error.headers())


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, log_event=False, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False, capture_error=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Entry point for API Gateway REST proxy events."""
    logger.append_keys(caller=_caller(event))
    return app.resolve(event, context)


def complete(
    request: ChatCompletionRequest,
    *,
    settings: ChatSettings,
    gateway: ConverseGateway,
    deadline: float,
    caller: str | None = None,
) -> ChatCompletion:
    """Answer one chat request through Bedrock Converse before `deadline` (time.monotonic()).

    Raises:
        ChatError: the request cannot be honoured (nothing was sent to Bedrock).
        BedrockError: Bedrock gave no usable answer.
    """
    model_id = resolve_model(request.model, settings)
    converse_request = to_converse(request, settings, model_id=model_id, caller=caller)
    logger.append_keys(model_id=model_id)
    started = time.monotonic()
    reply = gateway.converse(converse_request, deadline=deadline)
    elapsed_ms = round((time.monotonic() - started) * 1000)
    completion = from_converse(
        reply,
        model=model_id,
        completion_id=f"chatcmpl-{(_request_id() or uuid.uuid4().hex).replace('-', '')}",
        created=int(time.time()),
        include_reasoning=settings.RETURN_REASONING or request.include_reasoning,
        tools_offered="toolConfig" in converse_request,
    )
    _record_completion(reply, completion, elapsed_ms=elapsed_ms, stream=bool(request.stream))
    return completion


def model_cards(settings: ChatSettings) -> list[ModelCard]:
    """The model objects this deployment serves: every allowed id, then every alias of one."""
    names = [
        *settings.MODEL_IDS,
        *(alias for alias, target in settings.MODEL_ALIASES.items() if target in settings.MODEL_IDS),
    ]
    return [ModelCard(id=name, created=RELEASED_AT, owned_by="openai") for name in dict.fromkeys(names)]


def _record_completion(reply: ConverseReply, completion: ChatCompletion, *, elapsed_ms: int, stream: bool) -> None:
    choice = completion.choices[0]
    intervened = choice.finish_reason == "content_filter"
    metrics.add_metric(name="ChatCompletions", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="InputTokens", unit=MetricUnit.Count, value=completion.usage.prompt_tokens)
    metrics.add_metric(name="OutputTokens", unit=MetricUnit.Count, value=completion.usage.completion_tokens)
    latency_ms = reply.latency_ms if reply.latency_ms is not None else elapsed_ms
    metrics.add_metric(name="ModelLatency", unit=MetricUnit.Milliseconds, value=latency_ms)
    if intervened:
        metrics.add_metric(name="GuardrailIntervened", unit=MetricUnit.Count, value=1)
    logger.info(
        "chat completion finished",
        stop_reason=reply.stop_reason,
        finish_reason=choice.finish_reason,
        input_tokens=completion.usage.prompt_tokens,
        output_tokens=completion.usage.completion_tokens,
        model_latency_ms=latency_ms,
        elapsed_ms=elapsed_ms,
        guardrail_action="INTERVENED" if intervened else "NONE",
        guardrail_findings=list(reply.guardrail_findings()),
        tool_calls=len(choice.message.tool_calls or []),
        stream=stream,
    )


def _record_failure(error: Exception, chat_error: ChatError) -> None:
    if isinstance(error, BedrockError):
        metrics.add_metric(name="UpstreamErrors", unit=MetricUnit.Count, value=1)
        logger.warning(
            "chat request failed upstream",
            status=chat_error.status.value,
            error_code=chat_error.code,
            upstream_error=error.code,
        )
    elif isinstance(error, ChatError | NotFoundError) or chat_error.status < HTTPStatus.INTERNAL_SERVER_ERROR:
        logger.info(
            "chat request rejected", status=chat_error.status.value, error_code=chat_error.code, param=chat_error.param
        )
    else:
        # Type and place only: exception messages can quote request content.
        frame = traceback.extract_tb(error.__traceback__)[-1] if error.__traceback__ else None
        where = f"{Path(frame.filename).name}:{frame.lineno}" if frame else "unknown"
        logger.error("chat request crashed", error_type=type(error).__name__, location=where)


def _chat_request() -> ChatCompletionRequest:
    """The request body, validated; what is not a JSON chat request is the 415 or 400 naming the field."""
    event = app.current_event
    content_type = event.headers.get("content-type", "").strip()
    if content_type and not content_type.startswith(content_types.APPLICATION_JSON):
        raise UnsupportedMediaType("The request body must be JSON (Content-Type: application/json).")
    try:
        body = event.json_body
    except json.JSONDecodeError:
        raise from_validation([{"type": "json_invalid", "loc": ("body",)}]) from None
    try:
        return ChatCompletionRequest.model_validate(body)
    except ValidationError as error:
        # Locations as Powertools' validation gives them: under "body".
        raise from_validation([{**detail, "loc": ("body", *detail["loc"])} for detail in error.errors()]) from None


def _route_error() -> ChatError:
    method = app.current_event.http_method.upper()
    path = app.current_event.path
    allowed = next((methods for pattern, methods in _ALLOWED_METHODS if pattern.match(path)), None)
    if allowed is not None and method not in allowed:
        return MethodNotAllowed(f"Method {method} is not allowed on {path[:200]}.", allow=allowed)
    return RouteNotFound(f"Invalid URL ({method} {path[:200]}).")


def _request_id() -> str | None:
    request_id = app.current_event.raw_event.get("requestContext", {}).get("requestId")
    return str(request_id) if request_id else None


def _caller(event: Mapping[str, Any]) -> str | None:
    # IAM authorization puts the signing principal here; its ARN identifies the calling service.
    identity = (event.get("requestContext") or {}).get("identity") or {}
    caller = identity.get("userArn") or identity.get("caller")
    return str(caller) if caller else None


def _reply(
    status: HTTPStatus,
    body: str,
    *,
    content_type: str = content_types.APPLICATION_JSON,
    headers: dict[str, str] | None = None,
) -> Response[str]:
    request_id = _request_id()
    extra = {"x-request-id": request_id} if request_id else {}
    return Response(
        status_code=status.value, content_type=content_type, body=body, headers={**extra, **(headers or {})}
    )
