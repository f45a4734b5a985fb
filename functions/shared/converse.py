"""The only bedrock-runtime call site: Converse and ApplyGuardrail within a caller's deadline.

Time is the scarce resource here: API Gateway drops a request after its integration timeout, and a
retried generation starts from scratch. So botocore makes exactly one attempt per call, with a read
timeout cut from the time that is left, and this module runs the (few) retries itself, only for
retryable failures and only while the remaining time can still hold another call.
"""

from __future__ import annotations

import json
import math
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError, ReadTimeoutError
from botocore.exceptions import ConnectionError as BotocoreConnectionError
from botocore.parsers import ResponseParserError
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import ReadTimeoutError as Urllib3ReadTimeout

from shared import model_stand_in
from shared.errors import (
    BedrockAccessDenied,
    BedrockError,
    BedrockModelError,
    BedrockModelNotReady,
    BedrockNotFound,
    BedrockServerError,
    BedrockThrottled,
    BedrockTimeout,
    BedrockUnavailable,
    BedrockValidation,
)
from shared.observability import logger

if TYPE_CHECKING:
    from botocore.eventstream import EventStream
    from mypy_boto3_bedrock_runtime import BedrockRuntimeClient
    from mypy_boto3_bedrock_runtime.type_defs import ConverseRequestTypeDef, ConverseStreamRequestTypeDef

T = TypeVar("T")
ClientFactory = Callable[[int], "BedrockRuntimeClient"]
GuardrailSource = Literal["INPUT", "OUTPUT"]

# Opening a connection to a regional endpoint takes milliseconds; a second is already a failure.
CONNECT_TIMEOUT_SECONDS = 1
# No call is worth starting with less than this much time to wait for the answer.
MIN_READ_TIMEOUT_SECONDS = 1

_ERRORS_BY_CODE: dict[str, type[BedrockError]] = {
    "ThrottlingException": BedrockThrottled,
    "ServiceQuotaExceededException": BedrockThrottled,
    "ModelNotReadyException": BedrockModelNotReady,
    "ServiceUnavailableException": BedrockUnavailable,
    "InternalServerException": BedrockServerError,
    "ModelTimeoutException": BedrockTimeout,
    "ValidationException": BedrockValidation,
    "AccessDeniedException": BedrockAccessDenied,
    "ResourceNotFoundException": BedrockNotFound,
    "ModelErrorException": BedrockModelError,
    "ModelStreamErrorException": BedrockModelError,
}

_client_lock = threading.Lock()
_jitter = secrets.SystemRandom()


@cache
def runtime_client(read_timeout: int) -> BedrockRuntimeClient:
    """The container's bedrock-runtime client for one whole-second read timeout (created once, then reused).

    No endpoint_url is passed, so AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_BEDROCK_RUNTIME keep working. On a
    load-test stage (MODEL_STAND_IN, see shared/model_stand_in.py) the client answers Converse itself: decided
    here, once per client, so the normal path pays nothing for the switch.
    """
    config = Config(
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        read_timeout=read_timeout,
        retries={"mode": "standard", "total_max_attempts": 1},
        tcp_keepalive=True,
    )
    # boto3's default session is not thread-safe while it creates clients (the batch path uses threads).
    with _client_lock:
        client = boto3.client("bedrock-runtime", config=config)
    if model_stand_in.requested():
        model_stand_in.install(client)
    return client


def read_timeout_for(remaining: float) -> int | None:
    """The whole-second read timeout that fits in `remaining` seconds, or None when no call fits."""
    seconds = math.floor(remaining - CONNECT_TIMEOUT_SECONDS)
    return seconds if seconds >= MIN_READ_TIMEOUT_SECONDS else None


def classify(error: ClientError | BotoCoreError | ResponseParserError) -> BedrockError:
    """Turn a botocore failure into the matching typed Bedrock error."""
    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        # An exception event inside a stream is named by its union member (`throttlingException`).
        code = details.get("Code", "")
        code = code[:1].upper() + code[1:]
        message = details.get("Message", "")
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        kind = _ERRORS_BY_CODE.get(code) or _kind_for_status(status)
        if issubclass(kind, BedrockThrottled):
            return kind(message, code=code, retry_after=_retry_after_header(error))
        return kind(message, code=code)
    if isinstance(error, ResponseParserError):
        return BedrockModelError("Bedrock returned a response that could not be read", code="Unreadable")
    if isinstance(error, ReadTimeoutError):
        return BedrockTimeout("no answer before the read timeout", code="ReadTimeout")
    if isinstance(error, BotocoreConnectionError | HTTPClientError):
        return BedrockUnavailable("could not reach Bedrock", code=type(error).__name__)
    return BedrockError("the call could not be made", code=type(error).__name__)


def _kind_for_status(status: int) -> type[BedrockError]:
    if status == 429:
        return BedrockThrottled
    if status >= 500:
        return BedrockServerError
    return BedrockError


def _retry_after_header(error: ClientError) -> int | None:
    value = error.response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("retry-after", "")
    return int(value) if value.isdigit() else None


class _Shape(BaseModel):
    """Bedrock's response shapes: camelCase on the wire, unknown fields ignored, immutable."""

    model_config = ConfigDict(extra="ignore", frozen=True, alias_generator=to_camel, populate_by_name=True)


class ReasoningText(_Shape):
    """The text of one reasoning block."""

    text: str = ""


class ReasoningBlock(_Shape):
    """A `reasoningContent` block (its signature is deliberately not kept)."""

    reasoning_text: ReasoningText | None = None


class ToolUseBlock(_Shape):
    """A tool call the model asked for."""

    tool_use_id: str
    name: str
    input: Any = None


class ContentBlock(_Shape):
    """One block of the model's message: text, reasoning or a tool call."""

    text: str | None = None
    reasoning_content: ReasoningBlock | None = None
    tool_use: ToolUseBlock | None = None


class ReplyMessage(_Shape):
    """The assistant message Converse returned."""

    role: str = "assistant"
    content: tuple[ContentBlock, ...] = ()


class ReplyOutput(_Shape):
    """Converse's `output` union (only `message` exists today)."""

    message: ReplyMessage | None = None


class TokenUsage(_Shape):
    """Tokens Bedrock counted for the call (reasoning tokens are output tokens)."""

    input_tokens: int
    output_tokens: int
    total_tokens: int


class ReplyMetrics(_Shape):
    """Bedrock's own timing of the call."""

    latency_ms: int


class GuardrailTrace(_Shape):
    """The guardrail part of the Converse trace (only read for metadata, never returned to callers)."""

    input_assessment: dict[str, dict[str, Any]] = {}
    output_assessments: dict[str, list[dict[str, Any]]] = {}
    action_reason: str | None = None


class ReplyTrace(_Shape):
    """Converse's `trace`."""

    guardrail: GuardrailTrace | None = None

    def guardrail_findings(self) -> tuple[str, ...]:
        """The guardrail policies that acted, as `input:policy:name` / `output:policy:name`."""
        trace = self.guardrail
        if trace is None:
            return ()
        found = [f"input:{item}" for one in trace.input_assessment.values() for item in guardrail_findings(one)]
        found += [
            f"output:{item}"
            for many in trace.output_assessments.values()
            for one in many
            for item in guardrail_findings(one)
        ]
        return tuple(dict.fromkeys(found))


class ServedTier(_Shape):
    """The service tier that served the call."""

    type: str


class ConverseReply(_Shape):
    """A Converse response, read once at the edge."""

    output: ReplyOutput
    stop_reason: str
    usage: TokenUsage
    metrics: ReplyMetrics | None = None
    trace: ReplyTrace | None = None
    service_tier: ServedTier | None = None

    @property
    def content(self) -> tuple[ContentBlock, ...]:
        """The blocks of the returned message (empty when there is none)."""
        return self.output.message.content if self.output.message else ()

    @property
    def latency_ms(self) -> int | None:
        """Bedrock's latency for the call, when reported."""
        return self.metrics.latency_ms if self.metrics else None

    def guardrail_findings(self) -> tuple[str, ...]:
        """The guardrail policies that acted on this call, as `input:policy:name` / `output:policy:name`."""
        return self.trace.guardrail_findings() if self.trace else ()


class ToolUseStart(_Shape):
    """The opening of a streamed tool call: its id and name (the input follows in deltas)."""

    tool_use_id: str
    name: str


class BlockStart(_Shape):
    """`contentBlockStart.start`: only tool calls announce themselves before their first delta."""

    tool_use: ToolUseStart | None = None


class ContentBlockStart(_Shape):
    """A content block opens."""

    content_block_index: int
    start: BlockStart


class ReasoningDelta(_Shape):
    """A piece of reasoning (its signature is deliberately not kept)."""

    text: str | None = None


class ToolUseDelta(_Shape):
    """A piece of a tool call's input, as JSON text."""

    input: str = ""


class BlockDelta(_Shape):
    """`contentBlockDelta.delta`: a piece of text, of reasoning or of a tool call's input."""

    text: str | None = None
    reasoning_content: ReasoningDelta | None = None
    tool_use: ToolUseDelta | None = None


class ContentBlockDelta(_Shape):
    """A piece of one content block."""

    content_block_index: int
    delta: BlockDelta


class ContentBlockStop(_Shape):
    """A content block is complete."""

    content_block_index: int


class MessageStart(_Shape):
    """The answer begins."""

    role: str = "assistant"


class MessageStop(_Shape):
    """The answer is complete: why the model stopped."""

    stop_reason: str


class StreamMetadata(_Shape):
    """The stream's last event: token usage, Bedrock's latency, the guardrail trace and the tier that served it."""

    usage: TokenUsage
    metrics: ReplyMetrics | None = None
    trace: ReplyTrace | None = None
    service_tier: ServedTier | None = None

    @property
    def latency_ms(self) -> int | None:
        """Bedrock's latency for the call, when reported."""
        return self.metrics.latency_ms if self.metrics else None

    def guardrail_findings(self) -> tuple[str, ...]:
        """The guardrail policies that acted on this call, as `input:policy:name` / `output:policy:name`."""
        return self.trace.guardrail_findings() if self.trace else ()


class StreamEvent(_Shape):
    """One ConverseStream event, read once at the edge: exactly one member is set."""

    message_start: MessageStart | None = None
    content_block_start: ContentBlockStart | None = None
    content_block_delta: ContentBlockDelta | None = None
    content_block_stop: ContentBlockStop | None = None
    message_stop: MessageStop | None = None
    metadata: StreamMetadata | None = None


def reply_events(reply: ConverseReply) -> Iterator[StreamEvent]:
    """The ConverseStream events that carry the same answer as a Converse reply, block by block.

    The chat API translates both answers through one translation of stream events.
    """
    yield StreamEvent(
        message_start=MessageStart(role=reply.output.message.role if reply.output.message else "assistant")
    )
    for index, block in enumerate(reply.content):
        if block.tool_use is not None:
            start = ToolUseStart(tool_use_id=block.tool_use.tool_use_id, name=block.tool_use.name)
            yield StreamEvent(
                content_block_start=ContentBlockStart(content_block_index=index, start=BlockStart(tool_use=start))
            )
            arguments = json.dumps(block.tool_use.input if block.tool_use.input is not None else {})
            delta = BlockDelta(tool_use=ToolUseDelta(input=arguments))
        elif block.reasoning_content is not None:
            text = block.reasoning_content.reasoning_text.text if block.reasoning_content.reasoning_text else ""
            delta = BlockDelta(reasoning_content=ReasoningDelta(text=text))
        elif block.text is not None:
            delta = BlockDelta(text=block.text)
        else:
            continue
        yield StreamEvent(content_block_delta=ContentBlockDelta(content_block_index=index, delta=delta))
        yield StreamEvent(content_block_stop=ContentBlockStop(content_block_index=index))
    yield StreamEvent(message_stop=MessageStop(stop_reason=reply.stop_reason))
    yield StreamEvent(
        metadata=StreamMetadata(
            usage=reply.usage, metrics=reply.metrics, trace=reply.trace, service_tier=reply.service_tier
        )
    )


class ConverseStream:
    """An open ConverseStream: its events as they arrive, and `close()` to stop reading (and generating)."""

    def __init__(self, events: EventStream[Any]) -> None:
        self._events = events
        self._closed = False

    def __iter__(self) -> Iterator[StreamEvent]:
        """Each event, typed; a failure mid-stream raises the matching BedrockError.

        Raises:
            BedrockError: Bedrock sent an exception event, the connection failed, or an event cannot be read.
        """
        try:
            for event in self._events:
                yield StreamEvent.model_validate(event)
        except (ClientError, BotoCoreError, ResponseParserError) as failure:
            if not self._closed:
                raise classify(failure) from failure
        except Urllib3ReadTimeout as failure:
            if not self._closed:
                raise BedrockTimeout("no event before the read timeout", code="ReadTimeout") from failure
        except (Urllib3Error, OSError) as failure:
            # Closing the stream from another thread ends a blocked read with a connection error.
            if not self._closed:
                raise BedrockUnavailable("the stream from Bedrock broke off", code=type(failure).__name__) from failure
        except ValidationError:
            raise BedrockModelError("Bedrock sent an event that could not be read", code="Unreadable") from None

    def close(self) -> None:
        """Stop reading: Bedrock ends the generation when its connection closes. Safe from any thread."""
        self._closed = True
        self._events.close()


class GuardrailOutput(_Shape):
    """One text the guardrail returned in place of the input (masked, or its blocked message)."""

    text: str = ""


class GuardrailVerdict(_Shape):
    """An ApplyGuardrail response."""

    action: str
    action_reason: str | None = None
    outputs: tuple[GuardrailOutput, ...] = ()
    assessments: tuple[dict[str, Any], ...] = ()

    @property
    def intervened(self) -> bool:
        """Whether the guardrail blocked or masked the content."""
        return self.action == "GUARDRAIL_INTERVENED"

    def findings(self) -> tuple[str, ...]:
        """The policies that acted, as `policy:name` (never the matched text)."""
        return tuple(dict.fromkeys(item for one in self.assessments for item in guardrail_findings(one)))


# (policy, list of entries, field naming the entry): the matched text itself is never read.
_POLICY_ENTRIES: tuple[tuple[str, str, str | None], ...] = (
    ("topicPolicy", "topics", "name"),
    ("contentPolicy", "filters", "type"),
    ("wordPolicy", "customWords", None),
    ("wordPolicy", "managedWordLists", "type"),
    ("sensitiveInformationPolicy", "piiEntities", "type"),
    ("sensitiveInformationPolicy", "regexes", "name"),
    ("contextualGroundingPolicy", "filters", "type"),
)


def guardrail_findings(assessment: Mapping[str, Any]) -> list[str]:
    """Name the policies and filters that acted in one guardrail assessment, never what they matched."""
    found: list[str] = []
    for policy, entries, label in _POLICY_ENTRIES:
        for entry in assessment.get(policy, {}).get(entries, []):
            if entry.get("action", "NONE") != "NONE":
                found.append(f"{policy}:{entry.get(label, 'unnamed') if label else 'custom'}")
    for finding in assessment.get("automatedReasoningPolicy", {}).get("findings", []):
        found.extend(f"automatedReasoningPolicy:{kind}" for kind in finding if kind != "valid")
    return found


class ConverseGateway:
    """Calls Bedrock Converse / ApplyGuardrail with bounded, deadline-aware retries and typed errors."""

    def __init__(
        self,
        *,
        max_attempts: int,
        backoff_base: float = 0.25,
        backoff_cap: float = 4.0,
        clients: ClientFactory | None = None,
    ) -> None:
        self._max_attempts = max(1, max_attempts)
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._clients = clients or runtime_client

    def converse(self, request: Mapping[str, Any], *, deadline: float) -> ConverseReply:
        """Run one Converse request (keyword arguments of `converse`) before `deadline` (time.monotonic()).

        Raises:
            BedrockError: a subclass saying why there is no answer.
        """
        kwargs = cast("ConverseRequestTypeDef", request)
        response = self._call("Converse", lambda client: client.converse(**kwargs), deadline)
        try:
            return ConverseReply.model_validate(response)
        except ValidationError:
            raise BedrockModelError("Bedrock returned a response that could not be read", code="Unreadable") from None

    def converse_stream(self, request: Mapping[str, Any], *, deadline: float) -> ConverseStream:
        """Open one ConverseStream request before `deadline`; retried like Converse until the stream opens.

        Once Bedrock has answered with a stream, nothing is retried: its events may already have been sent on.

        Raises:
            BedrockError: a subclass saying why no stream opened.
        """
        kwargs = cast("ConverseStreamRequestTypeDef", request)
        response = self._call("ConverseStream", lambda client: client.converse_stream(**kwargs), deadline)
        return ConverseStream(response["stream"])

    def apply_guardrail(
        self,
        *,
        guardrail_id: str,
        guardrail_version: str,
        source: GuardrailSource,
        texts: Sequence[str],
        deadline: float,
    ) -> GuardrailVerdict:
        """Check texts against a guardrail version (source INPUT for prompts, OUTPUT for answers).

        Raises:
            BedrockError: a subclass saying why there is no verdict.
        """
        response = self._call(
            "ApplyGuardrail",
            lambda client: client.apply_guardrail(
                guardrailIdentifier=guardrail_id,
                guardrailVersion=guardrail_version,
                source=source,
                content=[{"text": {"text": text}} for text in texts],
            ),
            deadline,
        )
        try:
            return GuardrailVerdict.model_validate(response)
        except ValidationError:
            raise BedrockModelError("Bedrock returned a response that could not be read", code="Unreadable") from None

    def _call(self, operation: str, call: Callable[[BedrockRuntimeClient], T], deadline: float) -> T:
        attempt = 0
        while True:
            attempt += 1
            read_timeout = read_timeout_for(deadline - time.monotonic())
            if read_timeout is None:
                raise BedrockTimeout("the deadline leaves no time for a call", code="DeadlineExceeded")
            started = time.monotonic()
            try:
                return call(self._clients(read_timeout))
            except (ClientError, BotoCoreError, ResponseParserError) as failure:
                error, cause = classify(failure), failure
            elapsed = time.monotonic() - started
            delay = self._backoff(attempt)
            retry = attempt < self._max_attempts and self._fits_another_call(error, elapsed, delay, deadline)
            logger.warning(
                "bedrock call failed",
                operation=operation,
                attempt=attempt,
                error_code=error.code,
                elapsed_ms=round(elapsed * 1000),
                read_timeout_s=read_timeout,
                will_retry=retry,
            )
            if not retry:
                if isinstance(error, BedrockThrottled) and error.retry_after is None:
                    error.retry_after = math.ceil(self._ceiling(attempt + 1))
                raise error from cause
            time.sleep(delay)

    def _fits_another_call(self, error: BedrockError, elapsed: float, delay: float, deadline: float) -> bool:
        if not error.retryable:
            return False
        # A generation that timed out shows how long the model needs: only retry if that much time is left.
        needed = max(MIN_READ_TIMEOUT_SECONDS, elapsed if isinstance(error, BedrockTimeout) else 0.0)
        return deadline - time.monotonic() - delay >= CONNECT_TIMEOUT_SECONDS + needed

    def _ceiling(self, attempt: int) -> float:
        return float(min(self._backoff_cap, self._backoff_base * 2 ** (attempt - 1)))

    def _backoff(self, attempt: int) -> float:
        # Full jitter spreads the retries of many concurrent callers that were throttled together.
        return _jitter.uniform(0, self._ceiling(attempt))
