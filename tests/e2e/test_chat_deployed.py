"""The deployed chat API, called as an internal service would: the openai SDK, signed with SigV4."""

from __future__ import annotations

import httpx2 as httpx
import openai
import pytest

from tests.e2e.sigv4 import SigV4

pytestmark = [pytest.mark.e2e, pytest.mark.enable_socket]


def _client(api_url: str, region: str, *, signed: bool = True) -> openai.OpenAI:
    http = httpx.Client(auth=SigV4(region)) if signed else httpx.Client()
    return openai.OpenAI(base_url=api_url, api_key="unused", http_client=http, max_retries=0)


def test_completion_through_the_guardrail(api_url: str, region: str) -> None:
    answer = _client(api_url, region).chat.completions.create(
        model="gpt-oss-20b", messages=[{"role": "user", "content": "Say hello in one word."}], max_tokens=512
    )
    assert answer.choices[0].finish_reason in {"stop", "length", "content_filter"}
    assert answer.usage is not None and answer.usage.total_tokens > 0


@pytest.mark.row(13)
def test_unsigned_request_is_refused_by_the_gateway_in_the_openai_envelope(api_url: str, region: str) -> None:
    with pytest.raises(openai.PermissionDeniedError) as refused:
        _client(api_url, region, signed=False).models.list()
    assert refused.value.status_code == 403
