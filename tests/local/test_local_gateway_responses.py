"""The local gateway's own errors are the deployed stage's: the template's gateway responses, status, body and headers.

An unknown route or method: on an API whose every method is IAM-authorized, API Gateway cannot tell it from an
unsigned request and answers MISSING_AUTHENTICATION_TOKEN (403 unless the template sets another status). The
local gateway checks no signature, yet answers an unknown route the same, with the template's body. Headers:
API Gateway's own `x-amzn-RequestId`, and exactly the ones the template maps for that response type
(`'literal'` values and `context.requestId`), so `x-request-id` is there when, and only when, the template
puts it there.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from starlette.types import Receive, Scope, Send

from local.apigw import ApiGateway, HttpResponse
from local.chat_server import LocalGateway
from local.templates import ChatFunction, Template
from tests.local.load import with_stage_throttle

ROOT = Path(__file__).resolve().parents[2]
CHAT = "/v1/chat/completions"
REQUEST = json.dumps({"model": "gpt-oss-20b", "messages": [{"role": "user", "content": "Hi"}]}).encode()


async def _no_function(scope: Scope, receive: Receive, send: Send) -> None:
    raise AssertionError("the gateway should have answered without invoking the function")


def _respond(template: Template, method: str, path: str, body: bytes = b"") -> HttpResponse:
    """One request through the local API Gateway of `template` (the function must not be reached)."""
    gateway = LocalGateway(
        ChatFunction.from_template(template),
        ApiGateway.from_template(template),
        "http://function",
        transport=httpx.ASGITransport(app=_no_function),
    )

    async def send() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url="http://api") as client:
            return await client.request(method, path, content=body)

    response = anyio.run(send)
    return HttpResponse(response.status_code, response.headers, response.text)


def _gateway_response(template: Template, response_type: str) -> Mapping[str, Any]:
    """The template's gateway response of a type (DEFAULT_4XX when it defines none of that type)."""
    responses: dict[str, Mapping[str, Any]] = {
        resource["Properties"]["ResponseType"]: resource["Properties"]
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::ApiGateway::GatewayResponse"
    }
    return responses.get(response_type) or responses["DEFAULT_4XX"]


def _expected_headers(template: Template, response_type: str, request_id: str) -> dict[str, str]:
    """The headers the template maps for a response type, as API Gateway renders them."""
    mapped = {}
    for name, value in (_gateway_response(template, response_type).get("ResponseParameters") or {}).items():
        header = name.removeprefix("gatewayresponse.header.")
        mapped[header] = request_id if value == "context.requestId" else value.strip("'")
    return mapped


def _with_request_id_header(template: Template) -> Template:
    """A copy whose every gateway response maps `x-request-id` to the request id, as a template may."""
    changed = copy.deepcopy(template)
    for resource in changed["Resources"].values():
        if resource["Type"] == "AWS::ApiGateway::GatewayResponse":
            parameters = resource["Properties"].setdefault("ResponseParameters", {})
            parameters["gatewayresponse.header.x-request-id"] = "context.requestId"
    return changed


Case = tuple[str, Callable[[Template], Template], str, str, bytes]
CASES: list[Case] = [
    ("MISSING_AUTHENTICATION_TOKEN", lambda t: t, "GET", "/v1/completions", b""),
    ("BAD_REQUEST_BODY", lambda t: t, "POST", CHAT, b'{"model": 5, "messages": []}'),
    ("REQUEST_TOO_LARGE", lambda t: t, "POST", CHAT, b"x" * (10 * 1024 * 1024 + 1)),
    ("THROTTLED", lambda t: with_stage_throttle(t, rate=0.001, burst=0), "POST", CHAT, REQUEST),
]
IDS = [case[0] for case in CASES]


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/completions"), ("POST", "/v1/embeddings"), ("DELETE", CHAT), ("GET", CHAT), ("GET", "/")],
)
def test_an_unknown_route_or_method_gets_what_the_deployed_gateway_answers(
    template: Template, method: str, path: str
) -> None:
    status, headers, body = _respond(template, method, path)
    deployed = _gateway_response(template, "MISSING_AUTHENTICATION_TOKEN")
    assert deployed["ResponseType"] == "MISSING_AUTHENTICATION_TOKEN"  # the template customizes it
    assert status == int(deployed.get("StatusCode") or 403)
    request_id = headers["x-amzn-RequestId"]
    # API Gateway's substitution of the template's body: its own message, and the request id.
    expected = (
        deployed["ResponseTemplates"]["application/json"]
        .replace("$context.error.messageString", json.dumps("Missing Authentication Token"))
        .replace("$context.requestId", request_id)
    )
    assert json.loads(body) == json.loads(expected)
    assert json.loads(body)["error"]["code"] == "missing_authentication_token"


def test_the_readme_gives_an_unknown_route_the_status_it_gets(template: Template) -> None:
    status = _respond(template, "GET", "/v1/completions").status
    rows = {
        match.group(1): match.group(2)
        for match in re.finditer(r"^\| (\d{3})[^|]*\| (.*) \|$", (ROOT / "README.md").read_text(), re.MULTILINE)
    }
    assert "unknown route" in rows[str(status)], rows
    assert not [code for code, when in rows.items() if "unknown route" in when and code != str(status)], rows


@pytest.mark.parametrize(("response_type", "change", "method", "path", "body"), CASES, ids=IDS)
def test_gateway_errors_carry_the_headers_the_template_maps(
    template: Template,
    response_type: str,
    change: Callable[[Template], Template],
    method: str,
    path: str,
    body: bytes,
) -> None:
    changed = change(template)
    status, headers, text = _respond(changed, method, path, body)
    assert status == int(_gateway_response(changed, response_type).get("StatusCode") or status)
    assert status >= 400
    request_id = headers["x-amzn-RequestId"]
    assert json.loads(text)["error"]["request_id"] == request_id
    expected = _expected_headers(changed, response_type, request_id)
    assert {name: headers.get(name) for name in expected} == expected
    # Nothing the template does not map (x-request-id included) besides API Gateway's own headers.
    own = {"content-type", "content-length", "x-amzn-requestid", "x-amzn-errortype"}
    assert {name.lower() for name in headers} - own == {name.lower() for name in expected}


@pytest.mark.parametrize(("response_type", "change", "method", "path", "body"), CASES, ids=IDS)
def test_a_template_that_maps_the_request_id_gets_it_on_every_gateway_error(
    template: Template,
    response_type: str,
    change: Callable[[Template], Template],
    method: str,
    path: str,
    body: bytes,
) -> None:
    _, headers, text = _respond(_with_request_id_header(change(template)), method, path, body)
    assert headers["x-request-id"] == headers["x-amzn-RequestId"] == json.loads(text)["error"]["request_id"]
