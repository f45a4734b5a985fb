"""Row 25's offline half on the chat side: what callers get when FIS breaks the chat function's invocations.

`aws:lambda:invocation-error` fails the invocation: API Gateway answers 502 through its DEFAULT_5XX gateway
response. `aws:lambda:invocation-add-delay` past the integration timeout: API Gateway answers 504
(INTEGRATION_TIMEOUT). Both must stay in the OpenAI error envelope, from the template's gateway responses.
A delay the function itself sees (a slow model against its deadline: its own 504) is row 9's
tests/functional/test_chat_handler.py::test_a_slow_model_gets_a_504_before_the_deadline.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import anyio
import httpx
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from local.apigw import ApiGateway, HttpResponse
from local.chat_server import LocalGateway
from local.templates import ChatFunction, Template

REQUEST = json.dumps({"model": "gpt-oss-20b", "messages": [{"role": "user", "content": "Hi"}]}).encode()


def _respond(template: Template, function_app: ASGIApp) -> HttpResponse:
    """One POST through the local API Gateway to `function_app` (standing in for the function's web app)."""
    gateway = LocalGateway(
        ChatFunction.from_template(template),
        ApiGateway.from_template(template),
        "http://function",
        transport=httpx.ASGITransport(app=function_app),
    )

    async def post() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url="http://api") as client:
            return await client.post("/v1/chat/completions", content=REQUEST)

    response = anyio.run(post)
    return HttpResponse(response.status_code, response.headers, response.text)


def _openai_error(body: str) -> dict[str, Any]:
    error: dict[str, Any] = json.loads(body)["error"]
    assert set(error) >= {"message", "type", "param", "code"}
    return error


@pytest.mark.row(25)
def test_a_failed_invocation_is_a_502_in_the_openai_envelope(template: Template) -> None:
    async def failing(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("injected by aws:lambda:invocation-error")

    status, headers, body = _respond(template, failing)
    assert status == 502
    error = _openai_error(body)
    assert (error["type"], error["message"]) == ("server_error", "Internal server error")
    assert "injected" not in body
    assert headers["x-amzn-ErrorType"] == "GatewayError"


@pytest.mark.row(25)
def test_an_invocation_delayed_past_the_integration_timeout_is_a_504_in_the_openai_envelope(
    template: Template,
) -> None:
    # A 0.2 s integration timeout stands for the 29 s one: the delay FIS adds runs past it.
    short = copy.deepcopy(template)
    for resource in short["Resources"].values():
        if resource["Type"] == "AWS::ApiGateway::Method" and "Integration" in resource["Properties"]:
            resource["Properties"]["Integration"]["TimeoutInMillis"] = 200

    async def delayed(scope: Scope, receive: Receive, send: Send) -> None:
        await anyio.sleep(0.3)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    status, _, body = _respond(short, delayed)
    assert status == 504
    error = _openai_error(body)
    assert (error["type"], error["code"]) == ("timeout", "timeout")
