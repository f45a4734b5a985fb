"""Offline Bedrock for tests: one real bedrock-runtime client with a Stubber and before-send fakes.

The Stubber validates every request against the real service model but answers before botocore's
send path; the before-send hook sits where the HTTP request would leave, so real error parsing,
timeouts and the gateway's own retries all run.

ConverseStream has no Stubber (it cannot make an event stream): `BedrockFake.reply_stream` answers it at
before-send with the binary event stream Bedrock sends, so botocore's own event-stream parser runs, e.g.

    fake.reply_stream(converse_stream_events("Paris.", reasoning="Capital of France."))
    fake.reply_stream([*converse_stream_events("Par")[:3], {"throttlingException": {"message": "slow"}}])
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.compat import HTTPHeaders
from botocore.exceptions import ReadTimeoutError
from botocore.stub import Stubber

from local.bedrock.shapes import StreamEvents, pieces
from shared.eventstream import CONTENT_TYPE, converse_stream_message
from shared.model_stand_in import wire_response

if TYPE_CHECKING:
    from mypy_boto3_bedrock_runtime import BedrockRuntimeClient

GPT_OSS_20B = "openai.gpt-oss-20b-1:0"
GPT_OSS_120B = "openai.gpt-oss-120b-1:0"
GUARDRAIL_ID = "gr7abc123xyz"
GUARDRAIL_VERSION = "1"

CHAT_ENVIRONMENT: Mapping[str, str] = {
    "MODEL_IDS": f"{GPT_OSS_20B},{GPT_OSS_120B}",
    "MODEL_ALIASES": json.dumps({"gpt-oss-20b": GPT_OSS_20B, "gpt-oss-120b": GPT_OSS_120B}),
    "GUARDRAIL_ID": GUARDRAIL_ID,
    "GUARDRAIL_VERSION": GUARDRAIL_VERSION,
    "DEFAULT_MAX_TOKENS": "1024",
    "MAX_TOKENS_CEILING": "8192",
    "MAX_REQUEST_BYTES": "262144",
    "BEDROCK_MAX_ATTEMPTS": "3",
    # Short backoffs keep the suite fast; the retry logic is the same at any scale.
    "BEDROCK_BACKOFF_BASE_MS": "20",
    "BEDROCK_BACKOFF_MAX_MS": "100",
    # The deployment's default allow-list (infra/config.py): priority is the deployer's opt-in.
    "SERVICE_TIERS": "default,flex",
}

Responder = Callable[[AWSPreparedRequest, int], AWSResponse]


def http_response(request: AWSPreparedRequest, status: int, body: Mapping[str, Any], **headers: str) -> AWSResponse:
    """A Bedrock HTTP response as it arrives on the wire."""
    return wire_response(request.url, status, json.dumps(body).encode(), headers)


def error_response(request: AWSPreparedRequest, status: int, code: str, message: str = "") -> AWSResponse:
    """A Bedrock error response (restJson: the code travels in x-amzn-ErrorType)."""
    return http_response(
        request,
        status,
        {"message": message or code},
        **{"x-amzn-ErrorType": f"{code}:http://internal.amazon.com/coral/com.amazon.bedrock/"},
    )


def read_timeout(request: AWSPreparedRequest) -> ReadTimeoutError:
    """The error botocore raises when no answer arrives within the read timeout."""
    return ReadTimeoutError(endpoint_url=request.url)


def converse_response(
    text: str = "Paris.", *, stop_reason: str = "end_turn", reasoning: str | None = None, latency_ms: int = 321
) -> dict[str, Any]:
    """A Converse response body."""
    content: list[dict[str, Any]] = [{"reasoningContent": {"reasoningText": {"text": reasoning}}}] if reasoning else []
    content.append({"text": text})
    return {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop_reason,
        "usage": {"inputTokens": 12, "outputTokens": 7, "totalTokens": 19},
        "metrics": {"latencyMs": latency_ms},
    }


def converse_stream_events(
    text: str = "Paris.",
    *,
    reasoning: str | None = None,
    tool_calls: Sequence[Mapping[str, Any]] = (),
    stop_reason: str | None = None,
    usage: Mapping[str, int] | None = None,
    latency_ms: int = 321,
    trace: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The ConverseStream events of one answer, as boto3 yields them (and as `reply_stream` sends them).

    messageStart; the reasoning's word pieces in a block of their own; the text's word pieces; per tool call
    (Converse's `{"toolUseId", "name", "input"}`) a contentBlockStart then its input JSON in pieces; a
    contentBlockStop per block; messageStop (`tool_use` when there are tool calls, else `end_turn`, unless
    given); metadata with the usage (like `converse_response`'s by default), latency and any trace.
    """
    events = StreamEvents()
    stream = events.start()
    for piece in pieces(reasoning or ""):
        stream += events.reasoning(piece)
    for piece in pieces(text):
        stream += events.text(piece)
    for call in tool_calls:
        stream += events.tool_use(str(call["toolUseId"]), str(call["name"]))
        for piece in pieces(json.dumps(call.get("input", {}))):
            stream += events.tool_input(piece)
    counted = dict(usage or {"inputTokens": 12, "outputTokens": 7, "totalTokens": 19})
    stream += events.stop(
        stop_reason or ("tool_use" if tool_calls else "end_turn"),
        input_tokens=counted["inputTokens"],
        output_tokens=counted["outputTokens"],
        latency_ms=latency_ms,
        trace=trace,
    )
    stream[-1]["metadata"]["usage"] = counted
    return stream


class EventStreamBody:
    """The raw body of a ConverseStream response: each event is encoded only when botocore reads up to it.

    `events` may be any iterable (a generator too), consumed as the caller reads; `pause(index)` runs before
    event `index` is produced (wait on a threading.Event, sleep, record an order), so a test can hold the
    stream mid-way. `sent` counts the events handed to botocore; `closed` says the caller closed the stream
    (`response["stream"].close()`), after which nothing more is produced.
    """

    def __init__(self, events: Iterable[Mapping[str, Any]], *, pause: Callable[[int], object] | None = None) -> None:
        self._events = events
        self._pause = pause
        self.sent = 0
        self.closed = False

    def stream(self, **_: Any) -> Iterator[bytes]:
        """The encoded events, one per read (as HTTP chunks arrive)."""
        for index, event in enumerate(self._events):
            if self.closed:
                return
            if self._pause is not None:
                self._pause(index)
            self.sent += 1
            yield converse_stream_message(event)

    def close(self) -> None:
        """What botocore calls when the caller closes the stream: stop producing events."""
        self.closed = True
        close = getattr(self._events, "close", None)
        if callable(close):
            close()


def stream_response(request: AWSPreparedRequest, body: EventStreamBody, **headers: str) -> AWSResponse:
    """A ConverseStream HTTP response as it arrives on the wire: status 200 and a binary event stream."""
    wire_headers = HTTPHeaders()
    for name, value in {"Content-Type": CONTENT_TYPE, "x-amzn-RequestId": str(uuid.uuid4()), **headers}.items():
        wire_headers[name] = value
    return AWSResponse(request.url, 200, wire_headers, body)


class BedrockFake:
    """The one real client the gateway gets for every read timeout, with ways to answer it offline."""

    def __init__(self, client: BedrockRuntimeClient) -> None:
        self.client = client
        self.stubber = Stubber(client)
        self.read_timeouts: list[int] = []
        self.calls: list[dict[str, Any]] = []
        self.sent = 0
        self._responders: list[Responder] = []
        # What on_send's responders see: their own HTTP attempts, streams queued with reply_stream aside.
        self._attempts = 0
        self._streams: list[EventStreamBody] = []
        self._streaming = False
        client.meta.events.register("provide-client-params.bedrock-runtime.*", self._record_call)

    def client_for(self, read_timeout: int) -> BedrockRuntimeClient:
        """Stand-in for shared.converse.runtime_client: records the read timeout the gateway asked for."""
        self.read_timeouts.append(read_timeout)
        return self.client

    def reply(self, response: dict[str, Any], expected_params: dict[str, Any] | None = None) -> None:
        """Queue one stubbed Converse answer (optionally asserting the exact request)."""
        self.stubber.add_response("converse", response, expected_params)
        self.stubber.activate()

    def fail(self, code: str, status: int, message: str = "") -> None:
        """Queue one stubbed Converse error."""
        self.stubber.add_client_error(
            "converse", service_error_code=code, service_message=message or code, http_status_code=status
        )
        self.stubber.activate()

    def on_send(self, responder: Responder) -> None:
        """Answer every HTTP attempt with `responder(request, attempt)` (attempts count from 1)."""
        if not self._responders:
            self.client.meta.events.register("before-send.bedrock-runtime.*", self._send)
        self._responders.append(responder)

    def reply_stream(
        self, events: Iterable[Mapping[str, Any]], *, pause: Callable[[int], object] | None = None
    ) -> EventStreamBody:
        """Queue the answer to the next ConverseStream call: these events (botocore's output shape) on the wire.

        An exception member (e.g. `{"modelStreamErrorException": {"message": ...}}`) makes botocore raise
        `EventStreamError` when the caller reaches it. The returned body tells what was read and whether the
        caller closed the stream. Queue one answer per call; don't combine with `reply`/`fail`, whose activated
        Stubber answers every operation.
        """
        if not self._streaming:
            self.client.meta.events.register("before-send.bedrock-runtime.ConverseStream", self._send_stream)
            self._streaming = True
        body = EventStreamBody(events, pause=pause)
        self._streams.append(body)
        return body

    def _send_stream(self, request: AWSPreparedRequest, **_: Any) -> Any:
        # Typed Any, as _send: a before-send handler's response replaces the HTTP call.
        self.sent += 1
        if not self._streams:
            raise AssertionError("ConverseStream was called more often than reply_stream queued answers")
        return stream_response(request, self._streams.pop(0))

    def _send(self, request: AWSPreparedRequest, **_: Any) -> Any:
        # Typed Any: botocore's stubs declare event handlers as returning None, but a before-send
        # handler that returns a response is exactly how botocore lets one short-circuit the HTTP call.
        self.sent += 1
        self._attempts += 1
        return self._responders[-1](request, self._attempts)

    def _record_call(self, params: dict[str, Any], **_: Any) -> None:
        self.calls.append(params)
