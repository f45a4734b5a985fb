"""Offline Bedrock for tests: one real bedrock-runtime client with a Stubber and before-send fakes.

The Stubber validates every request against the real service model but answers before botocore's
send path; the before-send hook sits where the HTTP request would leave, so real error parsing,
timeouts and the gateway's own retries all run.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.exceptions import ReadTimeoutError
from botocore.stub import Stubber

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


class BedrockFake:
    """The one real client the gateway gets for every read timeout, with ways to answer it offline."""

    def __init__(self, client: BedrockRuntimeClient) -> None:
        self.client = client
        self.stubber = Stubber(client)
        self.read_timeouts: list[int] = []
        self.calls: list[dict[str, Any]] = []
        self.sent = 0
        self._responders: list[Responder] = []
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

    def _send(self, request: AWSPreparedRequest, **_: Any) -> Any:
        # Typed Any: botocore's stubs declare event handlers as returning None, but a before-send
        # handler that returns a response is exactly how botocore lets one short-circuit the HTTP call.
        self.sent += 1
        return self._responders[-1](request, self.sent)

    def _record_call(self, params: dict[str, Any], **_: Any) -> None:
        self.calls.append(params)
