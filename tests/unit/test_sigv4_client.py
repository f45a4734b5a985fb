"""The README's SigV4 signing for the OpenAI SDK, checked offline: the request that leaves is signed."""

from __future__ import annotations

import httpx2 as httpx
import openai

from tests.e2e.sigv4 import SigV4


def test_openai_sdk_requests_are_signed_for_execute_api() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"object": "list", "data": []})

    http = httpx.Client(auth=SigV4("eu-west-1"), transport=httpx.MockTransport(answer))
    client = openai.OpenAI(
        base_url="https://abc.execute-api.eu-west-1.amazonaws.com/prod/v1", api_key="x", http_client=http
    )

    client.models.list()

    [request] = seen
    authorization = request.headers["authorization"]
    assert authorization.startswith("AWS4-HMAC-SHA256 Credential=testing/")
    assert "/eu-west-1/execute-api/aws4_request" in authorization
    assert "x-amz-date" in request.headers
    assert "Bearer" not in authorization
