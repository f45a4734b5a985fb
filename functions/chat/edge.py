"""The edge of the chat function, read once: each request the Lambda Web Adapter forwards becomes one `Call`.

The adapter turns API Gateway's proxy event into an HTTP request to this app and adds two headers
(aws-lambda-web-adapter docs, "Request & Lambda Context"): `x-amzn-request-context`, API Gateway's request
context as JSON (its `requestId`, and with IAM authorization the signing principal under `identity`), and
`x-amzn-lambda-context`, the invocation's context as JSON (its `deadline` in epoch milliseconds). Nothing
below this module reads headers or raw bodies.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Generic, TypeVar

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request

from chat.errors import InvalidRequest, RequestTooLarge, UnsupportedMediaType, from_validation
from chat.settings import ChatSettings
from shared import strict_json
from shared.observability import logger

REQUEST_CONTEXT_HEADER = "x-amzn-request-context"
LAMBDA_CONTEXT_HEADER = "x-amzn-lambda-context"
IDEMPOTENCY_HEADER = "Idempotency-Key"
MAX_IDEMPOTENCY_KEY_LENGTH = 255
# Printable ASCII without leading or trailing blanks (HTTP strips those anyway).
_KEY_SHAPE = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")
_JSON = "application/json"
_MULTIPART = "multipart/form-data"
# Room for the multipart framing around the file: boundaries, part headers and the purpose field.
_MAX_FORM_OVERHEAD_BYTES = 64 * 1024
_MAX_FORM_FIELDS = 4

BodyT = TypeVar("BodyT", bound=BaseModel)


class _Context(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Identity(_Context):
    """The signing principal API Gateway authenticated (AWS_IAM authorization)."""

    userArn: str | None = None
    caller: str | None = None


class RequestContext(_Context):
    """The parts of API Gateway's request context the function uses."""

    requestId: str | None = None
    identity: Identity = Identity()


class InvocationContext(_Context):
    """The parts of the Lambda invocation context the function uses."""

    request_id: str | None = None
    # Epoch milliseconds at which Lambda stops the invocation.
    deadline: int | None = Field(default=None, validation_alias=AliasChoices("deadline", "deadline_ms"))


@dataclass(frozen=True)
class Call(Generic[BodyT]):
    """One request as the routes see it: its validated body, who sent it, its ids and its deadline."""

    body: BodyT | None
    request_id: str | None
    caller: str | None
    idempotency_key: str | None
    # time.monotonic() by which the answer, or its error, must have been sent.
    deadline: float
    invocation_id: str | None = None

    def remaining_ms(self) -> int:
        """Milliseconds left before the deadline (never negative)."""
        return max(0, round((self.deadline - time.monotonic()) * 1000))


def request_id_of(request: Request) -> str | None:
    """API Gateway's request id, for error bodies rendered before (or without) a Call."""
    return _request_context(request).requestId


async def read_call(request: Request, settings: ChatSettings, body_model: type[BodyT] | None = None) -> Call[BodyT]:
    """The Call for one request: its body validated as `body_model` (when given), the rest from its headers.

    Raises:
        ChatError: the body or a header is not acceptable (415, 413, 400 naming the field or header).
    """
    context = _request_context(request)
    invocation = _invocation_context(request)
    caller = context.identity.userArn or context.identity.caller
    # Context keys: each request's task (and the threads it starts) sees only its own, from here on.
    logger.thread_safe_clear_keys()
    logger.thread_safe_append_keys(
        correlation_id=context.requestId, caller=caller, function_request_id=invocation.request_id
    )
    deadline = _deadline(settings, invocation)
    key = _idempotency_key(request)
    body = await _body(request, settings, body_model) if body_model is not None else None
    return Call(
        body=body,
        request_id=context.requestId,
        caller=caller,
        idempotency_key=key,
        deadline=deadline,
        invocation_id=invocation.request_id,
    )


def _single(request: Request, header: str) -> str | None:
    values = request.headers.getlist(header)
    if len(values) > 1:
        # The adapter sets these once; a second value can only come from the caller.
        raise InvalidRequest(f"The {header} header must not be sent by callers.", param=header)
    return values[0] if values else None


def _request_context(request: Request) -> RequestContext:
    raw = _single(request, REQUEST_CONTEXT_HEADER)
    try:
        return RequestContext.model_validate_json(raw) if raw else RequestContext()
    except ValidationError:
        raise InvalidRequest(
            f"The {REQUEST_CONTEXT_HEADER} header is malformed.", param=REQUEST_CONTEXT_HEADER
        ) from None


def _invocation_context(request: Request) -> InvocationContext:
    raw = _single(request, LAMBDA_CONTEXT_HEADER)
    try:
        return InvocationContext.model_validate_json(raw) if raw else InvocationContext()
    except ValidationError:
        raise InvalidRequest(f"The {LAMBDA_CONTEXT_HEADER} header is malformed.", param=LAMBDA_CONTEXT_HEADER) from None


def _deadline(settings: ChatSettings, invocation: InvocationContext) -> float:
    """min(integration timeout, the invocation's time left) less the margin, as a time.monotonic() value."""
    budget_ms = float(settings.INTEGRATION_TIMEOUT_MS)
    if invocation.deadline is not None:
        budget_ms = min(budget_ms, invocation.deadline - time.time() * 1000)
    return time.monotonic() + (budget_ms - settings.DEADLINE_MARGIN_MS) / 1000


def _idempotency_key(request: Request) -> str | None:
    values = request.headers.getlist(IDEMPOTENCY_HEADER)
    if not values:
        return None
    if len(values) > 1:
        raise InvalidRequest(f"The {IDEMPOTENCY_HEADER} header must be given once.", param=IDEMPOTENCY_HEADER)
    key = values[0]
    if not 0 < len(key) <= MAX_IDEMPOTENCY_KEY_LENGTH or not _KEY_SHAPE.fullmatch(key):
        raise InvalidRequest(
            f"The {IDEMPOTENCY_HEADER} header must be 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} printable ASCII characters.",
            param=IDEMPOTENCY_HEADER,
        )
    return key


@dataclass(frozen=True)
class Upload:
    """A file sent as multipart/form-data (`file` and `purpose`, as the OpenAI SDKs send them)."""

    filename: str
    purpose: str
    data: bytes


async def read_upload(request: Request, settings: ChatSettings) -> Upload:
    """The form of POST /v1/files.

    Raises:
        ChatError: not multipart (415), a file above MAX_UPLOAD_BYTES (413), `file` or `purpose` missing (400).
    """
    if not request.headers.get("content-type", "").startswith(_MULTIPART):
        raise UnsupportedMediaType("Upload the file as multipart/form-data, with the fields 'file' and 'purpose'.")
    too_large = RequestTooLarge(
        f"The file is larger than this service's upload limit of {settings.MAX_UPLOAD_BYTES} bytes; "
        "drop larger files in the batch pipeline's inbox/ folder instead.",
        param="file",
    )
    if len(await request.body()) > settings.MAX_UPLOAD_BYTES + _MAX_FORM_OVERHEAD_BYTES:
        raise too_large
    try:
        form = await request.form(max_files=1, max_fields=_MAX_FORM_FIELDS)
    except HTTPException as error:
        raise InvalidRequest(f"The multipart body could not be read: {error.detail}.", param="file") from None
    upload, purpose = form.get("file"), form.get("purpose")
    if not isinstance(upload, UploadFile):
        raise InvalidRequest("Missing required parameter: 'file'.", param="file", code="missing_required_parameter")
    if not isinstance(purpose, str):
        raise InvalidRequest(
            "Missing required parameter: 'purpose'.", param="purpose", code="missing_required_parameter"
        )
    data = await upload.read()
    if len(data) > settings.MAX_UPLOAD_BYTES:
        raise too_large
    return Upload(filename=upload.filename or "", purpose=purpose, data=data)


def read_query(request: Request, model: type[BodyT]) -> BodyT:
    """The query string, validated as `model`.

    Raises:
        ChatError: a parameter is not acceptable (400 naming it).
    """
    try:
        return model.model_validate(dict(request.query_params))
    except ValidationError as error:
        raise from_validation(error.errors()) from None


async def _body(request: Request, settings: ChatSettings, model: type[BodyT]) -> BodyT:
    content_type = request.headers.get("content-type", "").strip()
    if content_type and not content_type.startswith(_JSON):
        raise UnsupportedMediaType("The request body must be JSON (Content-Type: application/json).")
    body = await request.body()
    if len(body) > settings.MAX_REQUEST_BYTES:
        raise RequestTooLarge(
            f"The request body is larger than this service's limit of {settings.MAX_REQUEST_BYTES} bytes."
        )
    try:
        parsed = strict_json.loads(body) if body else None
    except ValueError as error:
        raise InvalidRequest(
            f"We could not parse the JSON body of your request: {error}.", code="invalid_json"
        ) from None
    try:
        return model.model_validate(parsed)
    except ValidationError as error:
        # Locations as a framework's validation gives them: under "body".
        raise from_validation([{**detail, "loc": ("body", *detail["loc"])} for detail in error.errors()]) from None
