"""The chat function: an ASGI app of OpenAI-compatible routes in front of Bedrock Converse and ConverseStream.

Deployed, uvicorn serves it under the AWS Lambda Web Adapter (functions/chat/run.sh), which turns each API
Gateway invocation into an HTTP request and streams the response back; locally, `python -m local` serves it
the same way. Routes read the request once (chat/edge.py), call chat/service.py in a worker thread, and
every failure becomes the OpenAI error envelope in `error_response`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import re
import threading
import time
import traceback
import typing
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from functools import partial, wraps
from http import HTTPStatus
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from chat import batch_store, batches
from chat.batch_models import CreateBatchRequest
from chat.batch_store import PipelineLocation
from chat.batches import Owner
from chat.edge import (
    IDEMPOTENCY_HEADER,
    LAMBDA_CONTEXT_HEADER,
    REQUEST_CONTEXT_HEADER,
    Call,
    read_call,
    read_query,
    read_upload,
    request_id_of,
)
from chat.errors import ChatError, MethodNotAllowed, ModelNotFound, RouteNotFound, UpstreamTimeout, to_chat_error
from chat.idempotency import answer_once
from chat.models import ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, ErrorBody, ErrorEnvelope, ModelList
from chat.responses import Event, event_sse, replay_events
from chat.responses_models import Response as ResponseObject
from chat.responses_models import ResponsesRequest
from chat.service import (
    PreparedResponse,
    chat_settings,
    complete,
    converse_gateway,
    model_cards,
    prepare_response,
    respond,
    stream,
    stream_response,
)
from chat.streaming import DONE, EVENT_STREAM, KEEPALIVE, replay_chunks, sse
from shared.converse import ConverseStream
from shared.errors import BedrockError
from shared.observability import MetricUnit, logger, metrics

JSON = "application/json"
Endpoint = Callable[[Request], Awaitable[Response]]
AnswerT = TypeVar("AnswerT", bound=BaseModel)


def openai_errors(endpoint: Endpoint) -> Endpoint:
    """Every failure of `endpoint` becomes the OpenAI error envelope (nothing escapes to the server's log)."""

    @wraps(endpoint)
    async def guarded(request: Request) -> Response:
        try:
            return await endpoint(request)
        except Exception as error:
            return error_response(error, _safe_request_id(request))

    return guarded


def error_response(error: Exception, request_id: str | None) -> Response:
    """The one place every failure becomes an OpenAI error envelope with the right status."""
    chat_error = to_chat_error(error)
    _record_failure(error, chat_error)
    return _json(
        chat_error.status, _envelope(chat_error, request_id).model_dump_json(), request_id, chat_error.headers()
    )


@openai_errors
async def chat_completions(request: Request) -> Response:
    """POST /v1/chat/completions: one answer, as a chat.completion or as server-sent events as it is generated."""
    settings = chat_settings()
    call = await read_call(request, settings, ChatCompletionRequest)
    assert call.body is not None
    if call.body.stream:
        return await _streamed(call)
    answer = partial(complete, call, settings=settings, gateway=converse_gateway())
    completion, _ = await run_in_threadpool(_answered, call, answer, ChatCompletion)
    return _json(HTTPStatus.OK, completion.model_dump_json(), call.request_id)


@openai_errors
async def create_response(request: Request) -> Response:
    """POST /v1/responses: one answer, as a response object or as Responses events as it is generated."""
    settings = chat_settings()
    call = await read_call(request, settings, ResponsesRequest)
    prepared = await run_in_threadpool(prepare_response, call, settings)
    gateway = converse_gateway()
    if call.body is not None and call.body.stream:
        return await _streamed_response(call, prepared)
    answer = partial(respond, call, prepared, settings=settings, gateway=gateway)
    response, _ = await run_in_threadpool(_answered, call, answer, ResponseObject)
    return _json(HTTPStatus.OK, response.model_dump_json(), call.request_id)


@openai_errors
async def list_models(request: Request) -> Response:
    """GET /v1/models: the allowed model ids and their aliases."""
    call: Call[Any] = await read_call(request, chat_settings())
    return _json(HTTPStatus.OK, ModelList(data=model_cards(chat_settings())).model_dump_json(), call.request_id)


@openai_errors
async def retrieve_model(request: Request) -> Response:
    """GET /v1/models/{model}: one model (ids contain ':', which may arrive URL-encoded)."""
    call: Call[Any] = await read_call(request, chat_settings())
    name = str(request.path_params["model"])
    card = next((card for card in model_cards(chat_settings()) if card.id == name), None)
    if card is None:
        raise ModelNotFound(f"The model '{name[:100]}' does not exist or you do not have access to it.", param="model")
    return _json(HTTPStatus.OK, card.model_dump_json(), call.request_id)


class BatchListQuery(BaseModel):
    """GET /v1/batches: the page size and the cursor (the last batch id of the previous page)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    after: Annotated[str, Field(pattern=batches.BATCH_ID_PATTERN)] | None = None
    limit: int = batches.DEFAULT_PAGE_SIZE


async def _batch_call(
    request: Request, body_model: type[BaseModel] | None = None
) -> tuple[Call[Any], Owner, PipelineLocation]:
    """A Batch API request: its call, its owner (the signing principal) and where the pipeline is."""
    settings = chat_settings()
    call: Call[Any] = await read_call(request, settings, body_model)
    owner = batches.owner_of(call.caller)
    where = await run_in_threadpool(batch_store.pipeline, settings.BATCH_API_PARAMETER)
    return call, owner, where


@openai_errors
async def create_file(request: Request) -> Response:
    """POST /v1/files: store a batch input file (multipart: `file`, `purpose=batch`)."""
    call, owner, where = await _batch_call(request)
    upload = await read_upload(request, chat_settings())
    stored = await run_in_threadpool(
        batches.upload, where, owner, filename=upload.filename, purpose=upload.purpose, data=upload.data
    )
    return _json(HTTPStatus.OK, stored.model_dump_json(), call.request_id)


@openai_errors
async def file_content(request: Request) -> Response:
    """GET /v1/files/{file_id}/content: the file's bytes, streamed (an output file can be far above 10 MB)."""
    call, owner, where = await _batch_call(request)
    chunks = await run_in_threadpool(batches.file_content, where, owner, str(request.path_params["file_id"]))
    headers = {"x-request-id": call.request_id} if call.request_id else {}
    return StreamingResponse(chunks, media_type="application/octet-stream", headers=headers)


@openai_errors
async def create_batch(request: Request) -> Response:
    """POST /v1/batches: start a batch (one run of the batch pipeline) on an uploaded file."""
    call, owner, where = await _batch_call(request, CreateBatchRequest)
    assert isinstance(call.body, CreateBatchRequest)
    batch = await run_in_threadpool(batches.create, where, owner, call.body)
    return _json(HTTPStatus.OK, batch.model_dump_json(), call.request_id)


@openai_errors
async def list_batches(request: Request) -> Response:
    """GET /v1/batches: the caller's batches, newest first (`after`, `limit`)."""
    call, owner, where = await _batch_call(request)
    query = read_query(request, BatchListQuery)
    page = await run_in_threadpool(partial(batches.listing, where, owner, after=query.after, limit=query.limit))
    return _json(HTTPStatus.OK, page.model_dump_json(), call.request_id)


def _batch_object(operation: Callable[[PipelineLocation, Owner, str], BaseModel], parameter: str) -> Endpoint:
    """A Batch API route that answers one object named by the path parameter `parameter` (a file, a batch)."""

    @openai_errors
    async def endpoint(request: Request) -> Response:
        call, owner, where = await _batch_call(request)
        answer = await run_in_threadpool(operation, where, owner, str(request.path_params[parameter]))
        return _json(HTTPStatus.OK, answer.model_dump_json(), call.request_id)

    return endpoint


async def healthz(_: Request) -> Response:
    """GET /healthz: the Lambda Web Adapter's readiness check (API Gateway has no such route)."""
    return Response(status_code=HTTPStatus.OK)


async def route_error(request: Request, error: Exception) -> Response:
    """Starlette's own 404 and 405, in the envelope."""
    method, path = request.method, request.url.path[:200]
    if isinstance(error, HTTPException) and error.status_code == HTTPStatus.METHOD_NOT_ALLOWED:
        allowed = (error.headers or {}).get("Allow", "").split(", ")
        not_allowed = MethodNotAllowed(f"Method {method} is not allowed on {path}.", allow=allowed)
        return error_response(not_allowed, _safe_request_id(request))
    return error_response(RouteNotFound(f"Invalid URL ({method} {path})."), _safe_request_id(request))


class FlushMetrics:
    """Publishes the request's metrics once its response is complete (a stream's too)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the request, then flush."""
        try:
            await self.app(scope, receive, send)
        finally:
            # Requests that recorded nothing (a model list, a rejected body) publish nothing.
            if scope["type"] == "http" and metrics.metric_set:
                metrics.flush_metrics()


def _answered(call: Call[Any], answer: Callable[[], AnswerT], kind: type[AnswerT]) -> tuple[AnswerT, bool]:
    """`answer()`, at most once per Idempotency-Key when the call has one; and whether it was a stored replay."""
    if call.idempotency_key is None:
        return answer(), False
    return answer_once(call, settings=chat_settings(), answer=answer, kind=kind)


Item = tuple[Literal["frame"], str] | tuple[Literal["error"], Exception] | tuple[Literal["end"], None]


class _Pump:
    """Runs a blocking answer in its own thread and hands its chunks to the response as they come."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[Item] = asyncio.Queue()
        self._stream: ConverseStream | None = None
        self._lock = threading.Lock()
        self.stopped = False
        # What the response sent: chunks after the first, and whether it reached [DONE].
        self.chunks = 0
        self.finished = False

    def start(self, produce: Callable[[], None]) -> None:
        # The thread sees the request's log keys (contextvars), as Starlette's worker threads do.
        context = contextvars.copy_context()
        threading.Thread(target=context.run, args=(self._run, produce), daemon=True, name="chat-stream").start()

    def _run(self, produce: Callable[[], None]) -> None:
        try:
            produce()
            self._post(("end", None))
        except Exception as error:
            self._post(("error", error))

    def _post(self, item: Item) -> None:
        # Once the event loop has closed, nobody is listening any more.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    def emit(self, frame: str) -> None:
        """Hand one server-sent event to the response (from the answering thread)."""
        self._post(("frame", frame))

    def opened(self, events: ConverseStream) -> None:
        """Keep the Bedrock stream, to close it if the response ends first."""
        with self._lock:
            self._stream = events
            stopped = self.stopped
        if stopped:
            events.close()

    async def next(self, timeout: float) -> Item | None:
        """The next item, or None after `timeout` seconds without one."""
        try:
            return await asyncio.wait_for(self._queue.get(), timeout=max(0.0, timeout))
        except TimeoutError:
            return None

    def stop(self) -> None:
        """Stop reading from Bedrock (its generation ends with the connection); safe to call twice."""
        with self._lock:
            self.stopped = True
            events = self._stream
        if events is not None:
            events.close()


@dataclass(frozen=True)
class _Dialect:
    """How an API ends its event stream: with a final error event, or as it should when the answer is done."""

    error_frame: Callable[[ChatError], str]
    done_frame: str


async def _streamed(call: Call[ChatCompletionRequest]) -> Response:
    """Chat chunks as Bedrock generates them, then [DONE]."""
    settings = chat_settings()
    request = call.body
    assert request is not None
    include_usage = bool(request.stream_options and request.stream_options.include_usage)

    def produce(pump: _Pump) -> None:
        def emit(chunk: ChatCompletionChunk) -> None:
            pump.emit(sse(chunk))

        answer = partial(stream, call, settings=settings, gateway=converse_gateway(), emit=emit, opened=pump.opened)
        completion, replayed = _answered(call, answer, ChatCompletion)
        if replayed:
            for chunk in replay_chunks(completion, include_usage=include_usage):
                emit(chunk)

    dialect = _Dialect(error_frame=lambda error: sse(_envelope(error, call.request_id)), done_frame=DONE)
    return await _event_stream(call, produce, dialect)


async def _streamed_response(call: Call[ResponsesRequest], prepared: PreparedResponse) -> Response:
    """Responses events as Bedrock generates them; the stream ends with the response's own final event."""
    settings = chat_settings()

    def produce(pump: _Pump) -> None:
        def emit(event: Event) -> None:
            pump.emit(event_sse(event))

        answer = partial(
            stream_response,
            call,
            prepared,
            settings=settings,
            gateway=converse_gateway(),
            emit=emit,
            opened=pump.opened,
        )
        response, replayed = _answered(call, answer, ResponseObject)
        if replayed:
            for event in replay_events(call.body, response):
                emit(event)

    dialect = _Dialect(error_frame=lambda error: event_sse(prepared.builder.failed(error)), done_frame="")
    return await _event_stream(call, produce, dialect)


async def _event_stream(call: Call[Any], produce: Callable[[_Pump], None], dialect: _Dialect) -> Response:
    """Server-sent events as `produce` emits them; a failure before the first one is an ordinary error response."""
    pump = _Pump()
    pump.start(partial(produce, pump))
    first = await pump.next(call.deadline - time.monotonic())
    if first is None or first[0] != "frame":
        pump.stop()
        if first is not None and first[0] == "error":
            raise first[1]
        raise UpstreamTimeout("The model did not answer in time; try a shorter prompt or a smaller max_tokens.")
    frames = _frames(pump, first[1], call, dialect, keepalive=chat_settings().STREAM_KEEPALIVE_SECONDS)
    headers = {"Cache-Control": "no-cache", **({"x-request-id": call.request_id} if call.request_id else {})}
    return _EventStream(frames, pump, headers=headers)


class _EventStream(StreamingResponse):
    """A streamed answer that always stops its Bedrock read when the response ends, however it ends."""

    def __init__(self, frames: AsyncIterator[str], pump: _Pump, *, headers: dict[str, str]) -> None:
        super().__init__(frames, media_type=EVENT_STREAM, headers=headers)
        self._pump = pump

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Send the stream; then, done or cut short (a caller that went away), close Bedrock's."""
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._pump.stop()
            if not self._pump.finished:
                metrics.add_metric(name="StreamsCutShort", unit=MetricUnit.Count, value=1)
                logger.info("chat stream ended early", chunks_sent=self._pump.chunks + 1)


async def _frames(
    pump: _Pump, first: str, call: Call[Any], dialect: _Dialect, *, keepalive: float
) -> AsyncIterator[str]:
    """The event stream: each event as it comes, keep-alives through silences, and a final error or end."""
    yield first
    while True:
        left = call.deadline - time.monotonic()
        item = await pump.next(min(keepalive, left))
        if item is None and left <= keepalive:
            # Our own end, before the integration timeout would cut the stream without a word.
            yield _error_frame(UpstreamTimeout("The answer did not finish in time; ask for fewer tokens."), dialect)
            return
        if item is None:
            yield KEEPALIVE
        elif item[0] == "frame":
            pump.chunks += 1
            yield item[1]
        elif item[0] == "error":
            yield _error_frame(item[1], dialect)
            return
        else:
            pump.finished = True
            if dialect.done_frame:
                yield dialect.done_frame
            return


def _error_frame(error: Exception, dialect: _Dialect) -> str:
    chat_error = to_chat_error(error)
    _record_failure(error, chat_error)
    return dialect.error_frame(chat_error)


def _envelope(chat_error: ChatError, request_id: str | None) -> ErrorEnvelope:
    return ErrorEnvelope(
        error=ErrorBody(
            message=f"{chat_error.message} (request id: {request_id or 'unknown'})",
            type=chat_error.openai_type,
            param=chat_error.param,
            code=chat_error.code,
        )
    )


def _json(status: int, body: str, request_id: str | None, headers: dict[str, str] | None = None) -> Response:
    extra = {"x-request-id": request_id} if request_id else {}
    return Response(body, status_code=status, media_type=JSON, headers={**extra, **(headers or {})})


def _safe_request_id(request: Request) -> str | None:
    try:
        return request_id_of(request)
    except ChatError:
        return None


def _field_names(model: type[BaseModel]) -> set[str]:
    """Every field name (and alias) of `model` and of the models inside it: the names this service defines."""
    names: set[str] = set()
    for name, field in model.model_fields.items():
        names.update(filter(None, (name, field.alias)))
        for kind in (field.annotation, *typing.get_args(field.annotation)):
            for inner in (kind, *typing.get_args(kind)):
                if isinstance(inner, type) and issubclass(inner, BaseModel) and inner is not model:
                    names |= _field_names(inner)
    return names


# What a logged `param` may name; anything else in it (an unknown field's name, a metadata key) is the caller's.
_KNOWN_PARAMS = frozenset(
    _field_names(ChatCompletionRequest)
    | _field_names(ResponsesRequest)
    | _field_names(CreateBatchRequest)
    | _field_names(BatchListQuery)
    | {"file", "purpose", "file_id", "batch_id"}
    | {IDEMPOTENCY_HEADER, REQUEST_CONTEXT_HEADER, LAMBDA_CONTEXT_HEADER}
)
_PARAM_SEGMENT = re.compile(r"\[\d+\]|[^.\[]+|\[[^\]]*\]?")


def loggable_param(param: str | None) -> str | None:
    """`param` for a log line: this service's field names and list positions as they are, anything else as `?`."""
    if param is None:
        return None
    segments = _PARAM_SEGMENT.findall(param)
    kept = [
        segment if (segment.startswith("[") and segment[1:-1].isdigit()) or segment in _KNOWN_PARAMS else "?"
        for segment in segments
    ]
    return "".join(
        segment if segment.startswith("[") or index == 0 else f".{segment}" for index, segment in enumerate(kept)
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
    elif isinstance(error, ChatError) or chat_error.status < HTTPStatus.INTERNAL_SERVER_ERROR:
        logger.info(
            "chat request rejected",
            status=chat_error.status.value,
            error_code=chat_error.code,
            param=loggable_param(chat_error.param),
        )
    else:
        # Type and place only: exception messages can quote request content.
        frame = traceback.extract_tb(error.__traceback__)[-1] if error.__traceback__ else None
        where = f"{Path(frame.filename).name}:{frame.lineno}" if frame else "unknown"
        logger.error("chat request crashed", error_type=type(error).__name__, error_location=where)


app = FlushMetrics(
    Starlette(
        routes=[
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/responses", create_response, methods=["POST"]),
            Route("/v1/models", list_models, methods=["GET"]),
            Route("/v1/models/{model:path}", retrieve_model, methods=["GET"]),
            Route("/v1/files", create_file, methods=["POST"]),
            # GET /v1/files/{file_id}: an uploaded file, or a batch's output or error file.
            Route("/v1/files/{file_id}", _batch_object(batches.retrieve_file, "file_id"), methods=["GET"]),
            Route("/v1/files/{file_id}/content", file_content, methods=["GET"]),
            Route("/v1/batches", create_batch, methods=["POST"]),
            Route("/v1/batches", list_batches, methods=["GET"]),
            # GET /v1/batches/{batch_id}: the batch as its run stands.
            Route("/v1/batches/{batch_id}", _batch_object(batches.retrieve, "batch_id"), methods=["GET"]),
            # POST /v1/batches/{batch_id}/cancel: stop the batch's run and its Bedrock jobs.
            Route("/v1/batches/{batch_id}/cancel", _batch_object(batches.cancel, "batch_id"), methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ],
        exception_handlers={HTTPException: route_error},
    )
)
