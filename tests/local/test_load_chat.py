"""A bounded load test of the local chat API on loopback (offline model): a fixed number of requests at a
fixed concurrency, then it stops by itself.

It checks correctness under concurrency (every answer is a 200 chat completion, no 5xx, no transport
error), not speed: this machine is shared and noisy, so throughput and latency are measured and reported
(with the test's `record_property`: `--junit-xml` keeps them) but never asserted. The stage throttle is
raised out of the way here, since this test loads the function, not the gateway; the throttle under
sustained and burst load is tests/local/test_load_chat_throttle.py (row 24's offline half).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import httpx
import pytest

from local.chat_server import ChatApiOptions, running_chat_api
from local.templates import Template
from tests.local.load import closed_loop, percentile, with_stage_throttle

pytestmark = [pytest.mark.enable_socket, pytest.mark.filterwarnings("ignore:No application metrics")]

REQUESTS = 400
CONCURRENCY = 8


def test_the_local_chat_api_answers_every_request_under_concurrent_load(
    template: Template, record_property: Callable[[str, object], None]
) -> None:
    unthrottled = with_stage_throttle(template, rate=1_000_000.0, burst=1_000_000)
    with running_chat_api(unthrottled, ChatApiOptions()) as api:
        limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
        with httpx.Client(timeout=30.0, limits=limits) as client:
            samples = closed_loop(client, f"{api.url}/chat/completions", requests=REQUESTS, concurrency=CONCURRENCY)

    for name, value in {**samples.report(), "concurrency": CONCURRENCY}.items():
        record_property(name, value)

    assert not samples.errors
    assert samples.server_errors() == 0
    assert samples.statuses == Counter({200: REQUESTS})
    assert samples.finish_reasons == Counter({"stop": REQUESTS})


def test_percentile_is_nearest_rank() -> None:
    values = [float(value) for value in range(1, 101)]
    assert (percentile(values, 0.50), percentile(values, 0.99), percentile(values, 1.0)) == (50.0, 99.0, 100.0)
    assert percentile([7.0], 0.99) == 7.0
