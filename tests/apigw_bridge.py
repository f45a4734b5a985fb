"""The chat handler in process for tests: a fixed-budget Lambda context, one-call invocation, an httpx transport.

The event and response shapes come from local/apigw.py, the one implementation the local server uses too.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from local.apigw import ACCOUNT_ID, HttpResponse, build_event, response_from_result

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
# What invoke_handler returns: the handler's answer as HTTP.
BridgeResponse = HttpResponse

__all__ = [
    "BridgeResponse",
    "FakeLambdaContext",
    "build_event",
    "handler_transport",
    "invoke_handler",
    "response_from_result",
]


@dataclass
class FakeLambdaContext:
    """The parts of the Lambda context object Powertools and the handler read."""

    remaining_ms: int = 29_000
    function_name: str = "chat"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = f"arn:aws:lambda:us-east-1:{ACCOUNT_ID}:function:chat"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = "/aws/lambda/chat"
    log_stream_name: str = "2026/11/23/[$LATEST]0123456789abcdef"

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds the invocation has left (fixed, so budgets in tests are exact)."""
        return self.remaining_ms


def invoke_handler(
    handler: Handler,
    method: str,
    path: str,
    headers: Mapping[str, str] | None = None,
    body: str | None = None,
    *,
    query: Mapping[str, str] | None = None,
    context: Any = None,
    request_id: str | None = None,
) -> HttpResponse:
    """Call `handler` with the proxy event for one HTTP request and return its HTTP response."""
    event = build_event(method, path, headers=headers, body=body, query=query, request_id=request_id)
    return response_from_result(handler(event, context if context is not None else FakeLambdaContext()))


def handler_transport(handler: Handler, *, context: Callable[[], Any] = FakeLambdaContext) -> httpx.MockTransport:
    """An httpx transport that answers every request by invoking `handler` through API Gateway's shapes."""

    def respond(request: httpx.Request) -> httpx.Response:
        answer = invoke_handler(
            handler,
            request.method,
            request.url.path,
            dict(request.headers),
            request.content.decode() or None,
            query=dict(request.url.params) or None,
            context=context(),
        )
        return httpx.Response(answer.status, headers=answer.headers, content=answer.body.encode())

    return httpx.MockTransport(respond)
