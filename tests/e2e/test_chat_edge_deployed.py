"""Rows 1 and 13 of the fault suite against a deployed stage: oversized bodies and refused callers.

Their offline halves: tests/functional/test_chat_handler.py (the function's own 413),
tests/infra/test_chat_api_stack.py (gateway responses, AWS_IAM on every method) and
tests/infra/test_chat_api_variants.py (the private stage's resource policy denies other VPC endpoints).
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


@pytest.mark.row(13)
def test_a_private_stage_refuses_a_vpc_endpoint_outside_its_allow_list(region: str) -> None:
    # Run from inside a VPC. GPTOSS_PRIVATE_API_URL: the ApiUrl output of a stage deployed with
    # endpointType=PRIVATE; GPTOSS_OTHER_VPCE_DNS: the DNS name of an execute-api VPC endpoint that is NOT in its
    # vpcEndpointIds (e.g. vpce-0abc-xyz.execute-api.us-east-1.vpce.amazonaws.com). GPTOSS_ALLOWED_VPCE_DNS
    # (optional): one that is, to show the refusal comes from the resource policy, not from the network.
    private_url = os.environ.get("GPTOSS_PRIVATE_API_URL")
    other_endpoint = os.environ.get("GPTOSS_OTHER_VPCE_DNS")
    if not (private_url and other_endpoint):
        pytest.skip("set GPTOSS_PRIVATE_API_URL and GPTOSS_OTHER_VPCE_DNS (a non-allowed execute-api endpoint)")
    url = httpx.URL(private_url)
    api_id = url.host.split(".", 1)[0]
    path = f"{url.path.rstrip('/')}/models"

    def through(endpoint: str) -> httpx.Response:
        with httpx.Client(auth=SigV4(region), timeout=30) as client:
            return client.get(f"https://{endpoint}{path}", headers={"x-apigw-api-id": api_id})

    refused = through(other_endpoint)
    assert refused.status_code == 403
    assert _assert_openai_error(refused)["code"] == "access_denied"
    allowed_endpoint = os.environ.get("GPTOSS_ALLOWED_VPCE_DNS")
    if allowed_endpoint:
        assert through(allowed_endpoint).status_code == 200
