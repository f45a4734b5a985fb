"""The model stand-in of load-test stages: Converse answered in-process, at once, without calling Bedrock.

A stage deployed with `chatModelStandIn=true` (refused for production stages by infra/config.py) sets
`MODEL_STAND_IN=canned` on the chat function. The bedrock-runtime client then answers every Converse request
at botocore's `before-send`, with a canned response in Bedrock's wire format: request serialisation, the
retry handler and response parsing all still run, so a load test measures the whole path except the model
(and burns no tokens per minute). The switch is read once, when a client is created.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.client import BaseClient
from botocore.compat import HTTPHeaders

from shared.eventstream import CONTENT_TYPE, converse_stream_message

STAND_IN_VARIABLE = "MODEL_STAND_IN"
CANNED = "canned"
ANSWER = "This answer comes from the load-test model stand-in: no model was called."
REASONING = "The stage runs a model stand-in; answer with the canned text."
_EVENT = "before-send.bedrock-runtime.Converse"
_STREAM_EVENT = "before-send.bedrock-runtime.ConverseStream"


class StandInMisconfigured(ValueError):
    """MODEL_STAND_IN holds a value other than `canned`: refuse to guess what the stage wanted."""


def requested() -> bool:
    """Whether this container's environment asks for the stand-in (read when a client is created, not per call).

    Raises:
        StandInMisconfigured: the variable is set to anything but `canned`.
    """
    value = os.environ.get(STAND_IN_VARIABLE, "")
    if value not in ("", CANNED):
        raise StandInMisconfigured(f"{STAND_IN_VARIABLE} must be {CANNED!r} or unset, not {value!r}")
    return value == CANNED


def install(client: BaseClient) -> None:
    """Answer this bedrock-runtime client's Converse and ConverseStream calls with canned answers (no network)."""
    client.meta.events.register(_EVENT, answer_converse)
    client.meta.events.register(_STREAM_EVENT, answer_converse_stream)


def answer_converse(request: AWSPreparedRequest, **_: Any) -> Any:
    """The canned Converse response, as Bedrock sends it on the wire (botocore parses it as a real one)."""
    # Typed Any: botocore's stubs declare event handlers as returning None, but a before-send handler that
    # returns a response is how botocore lets one take the place of the HTTP call.
    body = request.body or b""
    size = len(body) if isinstance(body, bytes | str) else 0
    response = {
        "output": {
            "message": {
                "role": "assistant",
                "content": [{"reasoningContent": {"reasoningText": {"text": REASONING}}}, {"text": ANSWER}],
            }
        },
        "stopReason": "end_turn",
        # A rough token count of the request, so usage metrics and logs carry plausible values.
        "usage": {"inputTokens": max(1, size // 4), "outputTokens": 24, "totalTokens": max(1, size // 4) + 24},
        "metrics": {"latencyMs": 0},
    }
    return wire_response(request.url, 200, json.dumps(response).encode(), {"x-amzn-RequestId": str(uuid.uuid4())})


def answer_converse_stream(request: AWSPreparedRequest, **_: Any) -> Any:
    """The canned answer as ConverseStream sends it: a binary event stream, one event per word of the answer."""
    body = request.body or b""
    size = len(body) if isinstance(body, bytes | str) else 0
    words = ANSWER.split(" ")
    events: list[dict[str, Any]] = [
        {"messageStart": {"role": "assistant"}},
        {"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": REASONING}}}},
        {"contentBlockStop": {"contentBlockIndex": 0}},
        *(
            {"contentBlockDelta": {"contentBlockIndex": 1, "delta": {"text": word if i == 0 else f" {word}"}}}
            for i, word in enumerate(words)
        ),
        {"contentBlockStop": {"contentBlockIndex": 1}},
        {"messageStop": {"stopReason": "end_turn"}},
        {
            "metadata": {
                "usage": {"inputTokens": max(1, size // 4), "outputTokens": 24, "totalTokens": max(1, size // 4) + 24},
                "metrics": {"latencyMs": 0},
            }
        },
    ]
    wire_headers = HTTPHeaders()
    wire_headers["Content-Type"] = CONTENT_TYPE
    wire_headers["x-amzn-RequestId"] = str(uuid.uuid4())
    return AWSResponse(request.url, 200, wire_headers, _Events([converse_stream_message(event) for event in events]))


def wire_response(url: str, status: int, body: bytes, headers: Mapping[str, str] | None = None) -> AWSResponse:
    """A JSON HTTP response as botocore receives it: returned by a before-send hook, it is parsed like a real one."""
    wire_headers = HTTPHeaders()
    for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
        wire_headers[name] = value
    return AWSResponse(url, status, wire_headers, _Body(body))


class _Events:
    """The raw body botocore reads an event stream from: one message per read, as HTTP chunks arrive."""

    def __init__(self, messages: list[bytes]) -> None:
        self._messages = messages

    def stream(self, **_: Any) -> Iterator[bytes]:
        """Each message in turn."""
        yield from self._messages

    def close(self) -> None:
        """Nothing is left open."""


class _Body:
    """The raw body botocore reads a response from."""

    def __init__(self, content: bytes) -> None:
        self._content = content

    def stream(self, **_: Any) -> Iterator[bytes]:
        """The whole body at once."""
        yield self._content
