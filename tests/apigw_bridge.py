"""HTTP request -> API Gateway REST proxy event -> Lambda handler -> HTTP response, in process.

Tests drive the chat handler through this bridge (directly, or through the OpenAI SDK with an httpx
transport); a local HTTP server can serve the same handler the same way.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import httpx

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]

ACCOUNT_ID = "123456789012"
API_ID = "abc123defg"
STAGE = "prod"
CALLER_ARN = f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/orders-service/orders-service"


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


def build_event(
    method: str,
    path: str,
    *,
    headers: Mapping[str, str] | None = None,
    body: str | None = None,
    query: Mapping[str, str] | None = None,
    request_id: str | None = None,
    caller_arn: str | None = CALLER_ARN,
) -> dict[str, Any]:
    """An API Gateway REST proxy event (IAM-authorized) for one HTTP request."""
    header_map = dict(headers or {})
    request_id = request_id or str(uuid.uuid4())
    epoch_ms = int(time.time() * 1000)
    identity = {
        "cognitoIdentityPoolId": None,
        "accountId": ACCOUNT_ID if caller_arn else None,
        "cognitoIdentityId": None,
        "caller": "AROAEXAMPLEROLEID1234:orders-service" if caller_arn else None,
        "sourceIp": "10.0.12.34",
        "principalOrgId": None,
        "accessKey": "ASIAEXAMPLEKEY123456" if caller_arn else None,
        "cognitoAuthenticationType": None,
        "cognitoAuthenticationProvider": None,
        "userArn": caller_arn,
        "userAgent": header_map.get("user-agent", header_map.get("User-Agent", "")),
        "user": "AROAEXAMPLEROLEID1234:orders-service" if caller_arn else None,
    }
    return {
        "resource": path,
        "path": path,
        "httpMethod": method.upper(),
        "headers": header_map,
        "multiValueHeaders": {name: [value] for name, value in header_map.items()},
        "queryStringParameters": dict(query) if query else None,
        "multiValueQueryStringParameters": {name: [value] for name, value in query.items()} if query else None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourceId": "k1x2y3",
            "resourcePath": path,
            "httpMethod": method.upper(),
            "extendedRequestId": base64.b64encode(request_id.encode()[:12]).decode(),
            "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(epoch_ms / 1000)),
            "path": f"/{STAGE}{path}",
            "accountId": ACCOUNT_ID,
            "protocol": "HTTP/1.1",
            "stage": STAGE,
            "domainPrefix": API_ID,
            "requestTimeEpoch": epoch_ms,
            "requestId": request_id,
            "identity": identity,
            "domainName": f"{API_ID}.execute-api.us-east-1.amazonaws.com",
            "deploymentId": "d3p10y",
            "apiId": API_ID,
        },
        "body": body,
        "isBase64Encoded": False,
    }


class BridgeResponse(NamedTuple):
    """What the handler answered, as HTTP: unpacks as (status, headers, body)."""

    status: int
    headers: dict[str, str]
    body: str


def response_from_result(result: Mapping[str, Any]) -> BridgeResponse:
    """The HTTP response API Gateway would send for a Lambda proxy result."""
    headers = {name: str(value) for name, value in (result.get("headers") or {}).items()}
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers[name] = ", ".join(str(value) for value in values)
    raw = result.get("body") or ""
    body = base64.b64decode(raw).decode() if result.get("isBase64Encoded") else str(raw)
    return BridgeResponse(status=int(result["statusCode"]), headers=headers, body=body)


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
) -> BridgeResponse:
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
