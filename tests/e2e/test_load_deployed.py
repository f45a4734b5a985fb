"""Row 24 against a deployed load-test stage: sustained load, a 3x burst, then an optional real-model run.

Deploy a stage with the model stand-in (refused for production stages), so the load measures the gateway,
Lambda and the function without burning the model's tokens-per-minute quota:

    npx --yes aws-cdk@2 deploy GptOssChat-loadtest -c stage=loadtest -c chatModelStandIn=true

Environment: GPTOSS_LOAD_STACK (that chat stack's name, required), GPTOSS_LOAD_RPS (sustained rate; default
half the stage throttle), GPTOSS_LOAD_SECONDS (default 60), GPTOSS_LOAD_BURST_SECONDS (default 10),
GPTOSS_LOAD_P99_MS (p99 target of the sustained phase, default 1500), GPTOSS_REAL_MODEL_API_URL (optional:
a stage with the real model, for a short run that records TPM-driven 429s), GPTOSS_REAL_MODEL_RPS
(default 2), GPTOSS_REAL_MODEL_SECONDS (default 30).

The load generator is plain threads with SigV4 signing (tests/e2e/sigv4.py): a bounded, open-loop schedule
of requests is all this needs, so no locust dependency. The offline half is
tests/local/test_load_chat_throttle.py (the local gateway's token bucket from the same template).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import pytest

from tests.e2e.deployed import env_number, metric_sum, now, paced_load, stack_outputs

pytestmark = [pytest.mark.e2e, pytest.mark.enable_socket]

# Lambda publishes a minute's metrics within a few minutes.
METRIC_LAG_SECONDS = 180


@pytest.mark.row(24)
def test_sustained_load_and_a_3x_burst_against_the_stand_in_stage(
    region: str, record_property: Callable[[str, object], None]
) -> None:
    outputs = stack_outputs("GPTOSS_LOAD_STACK", "a chat stack deployed with chatModelStandIn=true")
    api_url = outputs["ApiUrl"]
    throttle_rate = float(outputs["ThrottleRateLimit"])
    rps = env_number("GPTOSS_LOAD_RPS", throttle_rate / 2)
    seconds = env_number("GPTOSS_LOAD_SECONDS", 60)
    started = now()

    sustained = paced_load(api_url, region, rps=rps, seconds=seconds)
    burst = paced_load(api_url, region, rps=3 * rps, seconds=env_number("GPTOSS_LOAD_BURST_SECONDS", 10))
    ended = now()
    for name, phase in (("sustained", sustained), ("burst", burst)):
        for key, value in phase.report().items():
            record_property(f"{name}_{key}", value)

    for phase in (sustained, burst):
        assert phase.statuses[0] == 0, phase.report()  # no transport error
        assert not [status for status in phase.statuses if status >= 500], phase.report()
        assert set(phase.statuses) <= {200, 429}, phase.report()
        for outcome in phase.outcomes:
            if outcome.status == 429:
                assert outcome.error is not None
                assert outcome.error["code"] == "rate_limit_exceeded"
                assert "retry-after" in {name.lower() for name in outcome.headers}
    # 429s only where the offered rate is above the stage throttle (its bucket starts full and refills faster).
    if rps <= throttle_rate:
        assert sustained.statuses[429] == 0, sustained.report()
    if 3 * rps <= throttle_rate:
        assert burst.statuses[429] == 0, burst.report()
    assert sustained.p99_ms() <= env_number("GPTOSS_LOAD_P99_MS", 1500), sustained.report()

    time.sleep(METRIC_LAG_SECONDS)
    throttles = metric_sum("AWS/Lambda", "Throttles", {"FunctionName": outputs["ChatFunctionName"]}, started, ended)
    record_property("lambda_throttles", throttles)
    assert throttles == 0


@pytest.mark.row(24)
def test_a_short_real_model_run_records_tpm_driven_429s(
    region: str, record_property: Callable[[str, object], None]
) -> None:
    api_url = os.environ.get("GPTOSS_REAL_MODEL_API_URL")
    if not api_url:
        pytest.skip("set GPTOSS_REAL_MODEL_API_URL to a stage that calls the real model (costs tokens)")
    phase = paced_load(
        api_url,
        region,
        rps=env_number("GPTOSS_REAL_MODEL_RPS", 2),
        seconds=env_number("GPTOSS_REAL_MODEL_SECONDS", 30),
    )
    # A measurement, not a verdict: how many requests Bedrock's tokens-per-minute quota turned into 429s.
    for key, value in phase.report().items():
        record_property(f"real_model_{key}", value)
    record_property("real_model_429s", phase.statuses[429])
    assert phase.outcomes
