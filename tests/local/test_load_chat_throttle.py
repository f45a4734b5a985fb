"""Row 24's offline half: the local API Gateway throttles the stage as the template configures it.

A sustained phase below the stage throttle gets no 429 and no 5xx; a burst of three times that rate gets
429s (never a 5xx), each in the OpenAI error envelope with the gateway's Retry-After. The deployed half
(tests/e2e/test_load_deployed.py) runs the same phases against a stage whose model is a stand-in.

The run uses the synthesized template with a small stage throttle (rate 4/s, burst 10): the thirty requests
of the burst exceed the bucket unless they take more than five seconds to arrive, which even a machine busy
with a parallel test run does not (at 20/s, a burst that took over one and a half seconds to arrive got no 429,
and the test failed on a loaded machine). The template's own values are read in the first test.
Nothing here asserts a time: a slow machine only lowers the offered rate, never raises it.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from infra.config import ChatConfig
from local.apigw import ApiGateway, Throttle, TokenBucket
from local.chat_server import ChatApiOptions, running_chat_api
from local.templates import Template
from tests.local.load import burst, paced, with_stage_throttle

pytestmark = [
    pytest.mark.enable_socket,
    pytest.mark.filterwarnings("ignore:No application metrics"),
]

RATE = 4.0
BURST = 10
SUSTAINED_RPS = RATE / 2
SUSTAINED_REQUESTS = 10


@pytest.mark.row(24)
def test_the_gateway_reads_the_stage_throttle_of_the_template(template: Template) -> None:
    defaults = ChatConfig()
    gateway = ApiGateway.from_template(template)
    expected = Throttle(rate=defaults.throttle_rate_limit, burst=defaults.throttle_burst_limit)
    assert gateway.throttle_of("POST", "/v1/chat/completions") == expected
    assert gateway.throttle_of("GET", "/v1/models") == expected


@pytest.mark.row(24)
def test_a_token_bucket_admits_its_burst_then_its_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(Throttle(rate=2.0, burst=3), clock=lambda: now[0])
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    now[0] = 0.5  # one token back
    assert [bucket.take(), bucket.take()] == [True, False]
    now[0] = 100.0  # never more than the burst
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]


@pytest.mark.row(24)
def test_sustained_load_under_the_throttle_passes_and_a_3x_burst_gets_openai_429s(
    template: Template, record_property: Callable[[str, object], None]
) -> None:
    throttled = with_stage_throttle(template, rate=RATE, burst=BURST)
    burst_requests = 3 * BURST
    with running_chat_api(throttled, ChatApiOptions()) as api:
        url = f"{api.url}/chat/completions"
        limits = httpx.Limits(max_connections=burst_requests, max_keepalive_connections=burst_requests)
        with httpx.Client(timeout=30.0, limits=limits) as client:
            sustained = paced(client, url, rate=SUSTAINED_RPS, requests=SUSTAINED_REQUESTS)
            surge = burst(client, url, requests=burst_requests)

    for phase, samples in (("sustained", sustained), ("burst", surge)):
        for name, value in samples.report().items():
            record_property(f"{phase}_{name}", value)

    assert not sustained.errors and not surge.errors
    assert sustained.server_errors() == surge.server_errors() == 0
    assert dict(sustained.statuses) == {200: SUSTAINED_REQUESTS}
    # Thirty requests at once against a bucket of ten: what the bucket holds gets through, the rest is refused.
    assert set(surge.statuses) == {200, 429}
    for refusal in surge.refusals:
        error = refusal.json()["error"]
        assert set(error) >= {"message", "type", "param", "code"}
        assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limit_exceeded")
        assert refusal.headers["Retry-After"] == "1"
        assert refusal.headers["x-amzn-ErrorType"] == "GatewayError"
