"""Rows 1 and 13 of the fault suite against a deployed stage: oversized bodies and refused callers.

Their offline halves: tests/functional/test_chat_handler.py (the function's own 413) and
tests/infra/test_chat_api_stack.py (gateway responses, AWS_IAM on every method, the private resource policy).
"""

from __future__ import annotations

import json
import os

import boto3
import httpx2 as httpx
import pytest

from tests.e2e.sigv4 import SigV4

pytestmark = [pytest.mark.e2e, pytest.mark.enable_socket]

MB = 1024 * 1024


def _post(api_url: str, region: str, body: bytes, *, auth: httpx.Auth | None = None) -> httpx.Response:
    with httpx.Client(auth=auth or SigV4(region), timeout=60) as client:
        return client.post(f"{api_url}/chat/completions", content=body, headers={"content-type": "application/json"})


def _padded_request(size: int) -> bytes:
    """A valid chat request whose one user message pads the body to about `size` bytes."""
    return json.dumps(
        {"model": "gpt-oss-20b", "messages": [{"role": "user", "content": "x" * size}], "max_tokens": 16}
    ).encode()


def _assert_openai_error(response: httpx.Response) -> dict[str, object]:
    error = response.json()["error"]
    assert isinstance(error, dict)
    assert set(error) >= {"message", "type", "param", "code"}
    return error


@pytest.mark.row(1)
def test_an_11_mb_body_is_refused_by_the_gateway_as_an_openai_413(api_url: str, region: str) -> None:
    response = _post(api_url, region, _padded_request(11 * MB))
    assert response.status_code == 413
    assert _assert_openai_error(response)["code"] == "request_too_large"


@pytest.mark.row(1)
def test_a_7_mb_body_passes_the_gateway_and_still_gets_a_json_error(api_url: str, region: str) -> None:
    # Above Lambda's 6 MB invoke limit but under API Gateway's 10 MB: the status is the gateway's choice
    # (recorded by the assertion message); the body must still be the OpenAI envelope.
    response = _post(api_url, region, _padded_request(7 * MB))
    assert response.status_code >= 400, response.status_code
    _assert_openai_error(response)


@pytest.mark.row(1)
def test_a_2_mb_body_is_refused_by_the_function_before_any_model_call(api_url: str, region: str) -> None:
    response = _post(api_url, region, _padded_request(2 * MB))
    assert response.status_code == 413
    error = _assert_openai_error(response)
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "request_too_large"


@pytest.mark.row(13)
def test_a_principal_without_execute_api_invoke_is_refused_before_the_function(api_url: str, region: str) -> None:
    # GPTOSS_OTHER_PROFILE names credentials that may NOT invoke the API (e.g. a role with no execute-api grant).
    profile = os.environ.get("GPTOSS_OTHER_PROFILE")
    if not profile:
        pytest.skip("set GPTOSS_OTHER_PROFILE to a profile whose principal may not invoke the API")
    auth = SigV4(region, session=boto3.Session(profile_name=profile))
    response = _post(api_url, region, _padded_request(10), auth=auth)
    assert response.status_code == 403
    _assert_openai_error(response)
