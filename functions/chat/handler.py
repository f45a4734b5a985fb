"""The chat function: OpenAI-compatible routes in front of Bedrock Converse, behind API Gateway REST.

Routes parse and answer; translate.py holds the rules and shared/converse.py makes the one call.
"""

import base64
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

CHAT_COMPLETIONS = "/v1/chat/completions"

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


# No enable_validation: _chat_request validates the one body with the same errors. Powertools' OpenAPI
# middleware also normalizes headers, query and cookies and re-validates every route's arguments on every
# request: ≈ 50 µs more per request (bench/chat.py).
app = APIGatewayRestResolver()


# Neither responses nor exception messages go to X-Ray: both can carry prompt or answer text.
@tracer.capture_method(capture_response=False, capture_error=False)
def create_chat_completion(event: Mapping[str, Any], context: LambdaContext) -> Response[str]:
    """POST /v1/chat/completions: one answer, as a chat.completion or as server-sent events."""
    request = _chat_request(event)
    settings = chat_settings()
    budget_ms = min(settings.INTEGRATION_TIMEOUT_MS, context.get_remaining_time_in_millis())
    deadline = time.monotonic() + (budget_ms - settings.DEADLINE_MARGIN_MS) / 1000
    caller = _caller(event)
    key = requested_key(event)
    answer = partial(
        complete,
        request,
        settings=settings,
        gateway=converse_gateway(),
        deadline=deadline,
        caller=caller,
        request_id=_request_id(event),
    )
    completion = (
        answer()
        if key is None
        else answer_once(key, caller=caller, request=request, settings=settings, context=context, answer=answer)
    )
    if request.stream:
        include_usage = bool(request.stream_options and request.stream_options.include_usage)
        body = render_sse(completion, include_usage=include_usage)
        return _reply(event, HTTPStatus.OK, body, content_type=EVENT_STREAM, headers={"Cache-Control": "no-cache"})
    return _reply(event, HTTPStatus.OK, completion.model_dump_json())


@app.post(CHAT_COMPLETIONS)
def routed_chat_completion() -> Response[str]:
    """POST /v1/chat/completions in the spellings only the resolver matches (a trailing slash)."""
    return create_chat_completion(app.current_event.raw_event, app.lambda_context)


@app.get("/v1/models")
def list_models() -> Response[str]:
    """GET /v1/models: the allowed model ids and their aliases."""
    body = ModelList(data=model_cards(chat_settings())).model_dump_json()
    return _reply(app.current_event.raw_event, HTTPStatus.OK, body)


@app.get("/v1/models/<model>")
def retrieve_model(model: str) -> Response[str]:
    """GET /v1/models/{model}: one model (ids contain ':' and may arrive URL-encoded)."""
    name = unquote(model)
    card = next((card for card in model_cards(chat_settings()) if card.id == name), None)
    if card is None:
        raise ModelNotFound(f"The model '{name[:100]}' does not exist or you do not have access to it.", param="model")
    return _reply(app.current_event.raw_event, HTTPStatus.OK, card.model_dump_json())


# Powertools leaves exception_handler's return type unannotated; the decorated function keeps its own.
@app.exception_handler(Exception)  # type: ignore[untyped-decorator]
def render_error(error: Exception) -> Response[str]:
    """The resolver's one exception handler: every failure of its routes becomes an OpenAI error envelope."""
    return error_response(error, app.current_event.raw_event)


def error_response(error: Exception, event: Mapping[str, Any]) -> Response[str]:
    """The one place every failure becomes an OpenAI error envelope with the right status."""
    chat_error = _route_error(event) if isinstance(error, NotFoundError) else to_chat_error(error)
    _record_failure(error, chat_error)
    body = ErrorEnvelope(
        error=ErrorBody(
            message=f"{chat_error.message} (request id: {_request_id(event) or 'unknown'})",
            type=chat_error.openai_type,
            param=chat_error.param,
            code=chat_error.code,
        )
    )
    return _reply(event, chat_error.status, body.model_dump_json(), headers=chat_error.headers())


@logger.inject_lambda_context(log_event=False, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False, capture_error=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Entry point for API Gateway REST proxy events."""
    # The correlation id is API Gateway's request id, read where it is rather than by a JMESPath search.
    logger.append_keys(correlation_id=_request_id(event), caller=_caller(event))
    if event.get("httpMethod") == "POST" and event.get("path") == CHAT_COMPLETIONS:
        # The hot route is called directly: the resolver's routing, event wrapper and response builder cost
        # ≈ 30 µs a request (bench/chat.py). Every other path, and this one with a trailing slash, goes through it.
        try:
            response = create_chat_completion(event, context)
        except Exception as error:
            response = error_response(error, event)
        return _proxy_result(response)
    return app.resolve(event, context)


def complete(
    request: ChatCompletionRequest,
    *,
    settings: ChatSettings,
    gateway: ConverseGateway,
    deadline: float,
    caller: str | None = None,
    request_id: str | None = None,
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
        completion_id=f"chatcmpl-{(request_id or uuid.uuid4().hex).replace('-', '')}",
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
        logger.error("chat request crashed", error_type=type(error).__name__, error_location=where)


def _chat_request(event: Mapping[str, Any]) -> ChatCompletionRequest:
    """The request body, validated; what is not a JSON chat request is the 415 or 400 naming the field."""
    headers = {name.lower(): value for name, value in (event.get("headers") or {}).items()}
    content_type = headers.get("content-type", "").strip()
    if content_type and not content_type.startswith(content_types.APPLICATION_JSON):
        raise UnsupportedMediaType("The request body must be JSON (Content-Type: application/json).")
    try:
        body = _json_body(event)
    except json.JSONDecodeError:
        raise from_validation([{"type": "json_invalid", "loc": ("body",)}]) from None
    try:
        return ChatCompletionRequest.model_validate(body)
    except ValidationError as error:
        # Locations as Powertools' validation gives them: under "body".
        raise from_validation([{**detail, "loc": ("body", *detail["loc"])} for detail in error.errors()]) from None


def _json_body(event: Mapping[str, Any]) -> Any:
    """The body parsed as JSON (None when empty), refused unparsed when it is larger than the limit."""
    body = event.get("body")
    if event.get("isBase64Encoded") and body:
        body = base64.b64decode(body.encode()).decode()
    if not body:
        return None
    limit = chat_settings().MAX_REQUEST_BYTES
    if len(body.encode()) > limit:
        raise RequestTooLarge(f"The request body is larger than this service's limit of {limit} bytes.")
    return json.loads(body)


def _route_error(event: Mapping[str, Any]) -> ChatError:
    method = str(event["httpMethod"]).upper()
    path = str(event["path"])
    allowed = next((methods for pattern, methods in _ALLOWED_METHODS if pattern.match(path)), None)
    if allowed is not None and method not in allowed:
        return MethodNotAllowed(f"Method {method} is not allowed on {path[:200]}.", allow=allowed)
    return RouteNotFound(f"Invalid URL ({method} {path[:200]}).")


def _request_id(event: Mapping[str, Any]) -> str | None:
    request_id = (event.get("requestContext") or {}).get("requestId")
    return str(request_id) if request_id else None


def _caller(event: Mapping[str, Any]) -> str | None:
    # IAM authorization puts the signing principal here; its ARN identifies the calling service.
    identity = (event.get("requestContext") or {}).get("identity") or {}
    caller = identity.get("userArn") or identity.get("caller")
    return str(caller) if caller else None


def _reply(
    event: Mapping[str, Any],
    status: HTTPStatus,
    body: str,
    *,
    content_type: str = content_types.APPLICATION_JSON,
    headers: dict[str, str] | None = None,
) -> Response[str]:
    request_id = _request_id(event)
    extra = {"x-request-id": request_id} if request_id else {}
    return Response(
        status_code=status.value, content_type=content_type, body=body, headers={**extra, **(headers or {})}
    )


def _proxy_result(response: Response[str]) -> dict[str, Any]:
    """The Lambda proxy result the resolver builds for a text response of a REST API (no CORS, no compression)."""
    return {
        "statusCode": response.status_code,
        "body": response.body,
        "isBase64Encoded": False,
        "multiValueHeaders": {name: [value] for name, value in response.headers.items()},
    }
