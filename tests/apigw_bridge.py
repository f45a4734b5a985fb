"""The chat app in process for tests: a fixed-budget Lambda context, one-call invocation, an httpx transport.

Events come from local/apigw.py and reach the app as local/web_adapter.py forwards them, as the local server does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import anyio
import httpx
from starlette.types import ASGIApp

from local.apigw import CALLER_ARN, HttpResponse, build_event
from local.lambda_context import LocalLambdaContext
from local.web_adapter import forwarded_headers

# What invoke_handler returns: the handler's answer as HTTP.
BridgeResponse = HttpResponse

__all__ = [
    "BridgeResponse",
    "build_event",
    "chat_context",
    "handler_transport",
    "invoke_event",
    "invoke_handler",
]


def chat_context(remaining_ms: int = 29_000) -> LocalLambdaContext:
    """The chat function's context with a fixed budget, so budgets in tests are exact."""
    return LocalLambdaContext.fixed("chat", remaining_ms=remaining_ms)


def invoke_handler(
    app: ASGIApp,
    method: str,
    path: str,
    headers: Mapping[str, str] | None = None,
    body: str | None = None,
    *,
    query: Mapping[str, str] | None = None,
    context: Any = None,
    request_id: str | None = None,
    caller_arn: str | None = CALLER_ARN,
) -> HttpResponse:
    """Send `app` the HTTP request the Lambda Web Adapter makes of one API Gateway request; return its response."""
    event = build_event(
        method, path, headers=headers, body=body, query=query, request_id=request_id, caller_arn=caller_arn
    )
    return invoke_event(app, event, context)


def invoke_event(app: ASGIApp, event: Mapping[str, Any], context: Any = None) -> HttpResponse:
    """Send `app` the HTTP request the Lambda Web Adapter makes of `event`; return its (whole) response.

    An exception the app lets through (a BaseException: the container dying) comes out of this call as it is.
    """
    headers = forwarded_headers(event, context if context is not None else chat_context())

    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080") as client:
            return await client.request(
                event["httpMethod"],
                event["path"],
                params=event.get("queryStringParameters") or None,
                # As bytes: API Gateway passes on header values that are not ASCII, and so does the adapter.
                headers=[(name.encode(), value.encode()) for name, value in headers],
                content=(event.get("body") or "").encode(),
            )

    response = anyio.run(send)
    return HttpResponse(status=response.status_code, headers=response.headers, body=response.text)


def handler_transport(
    app: ASGIApp, *, context: Callable[[], Any] = chat_context, caller_arn: str | None = CALLER_ARN
) -> httpx.MockTransport:
    """An httpx transport that answers every request by invoking `app` through API Gateway and the adapter, signed
    by `caller_arn` (as IAM authenticated it)."""

    def respond(request: httpx.Request) -> httpx.Response:
        answer = invoke_handler(
            app,
            request.method,
            request.url.path,
            dict(request.headers),
            request.content.decode() or None,
            query=dict(request.url.params) or None,
            context=context(),
            caller_arn=caller_arn,
        )
        return httpx.Response(answer.status, headers=answer.headers, content=answer.body.encode())

    return httpx.MockTransport(respond)
