"""A bounded load test of the local chat API on loopback (offline model): a fixed number of requests at a
fixed concurrency, then it stops by itself.

It checks correctness under concurrency (every answer is a 200 chat completion, no 5xx, no transport
error), not speed: this machine is shared and noisy, so throughput and latency are measured and reported
(with the test's `record_property`: `--junit-xml` keeps them) but never asserted. Row 24 of the fault
tests (a load test against a deployed stage) is the deployed counterpart; this is not it.
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from local.chat_server import ChatApiOptions, running_chat_api
from local.templates import Template

pytestmark = [pytest.mark.enable_socket, pytest.mark.filterwarnings("ignore:No application metrics")]

REQUESTS = 400
CONCURRENCY = 8
BODY = {
    "model": "gpt-oss-20b",
    "messages": [{"role": "user", "content": "What is the capital of France?"}],
    "max_completion_tokens": 256,
}


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of `values` (not empty)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def test_the_local_chat_api_answers_every_request_under_concurrent_load(
    template: Template, record_property: Callable[[str, object], None]
) -> None:
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    answers: Counter[str] = Counter()
    lock = threading.Lock()
    remaining = iter(range(REQUESTS))

    with running_chat_api(template, ChatApiOptions()) as api:
        url = f"{api.url}/chat/completions"
        limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
        with httpx.Client(timeout=30.0, limits=limits) as client:

            def worker() -> None:
                while True:
                    with lock:
                        if next(remaining, None) is None:
                            return
                    started = time.perf_counter()
                    try:
                        response = client.post(url, json=BODY, headers={"Authorization": "Bearer local"})
                    except httpx.HTTPError as error:
                        with lock:
                            errors[type(error).__name__] += 1
                        continue
                    elapsed = time.perf_counter() - started
                    choice = response.json()["choices"][0] if response.status_code == 200 else None
                    with lock:
                        latencies.append(elapsed)
                        statuses[response.status_code] += 1
                        if choice is not None:
                            answers[choice["finish_reason"]] += 1

            began = time.perf_counter()
            with ThreadPoolExecutor(max_workers=CONCURRENCY) as pool:
                for future in [pool.submit(worker) for _ in range(CONCURRENCY)]:
                    future.result()
            wall = time.perf_counter() - began

    report = {
        "requests": REQUESTS,
        "concurrency": CONCURRENCY,
        "wall_seconds": round(wall, 3),
        "throughput_rps": round(len(latencies) / wall, 1),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 1) if latencies else None,
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 1) if latencies else None,
        "mean_ms": round(statistics.fmean(latencies) * 1000, 1) if latencies else None,
        "statuses": dict(statuses),
        "transport_errors": dict(errors),
    }
    for name, value in report.items():
        record_property(name, value)

    assert not errors
    assert sum(count for status, count in statuses.items() if status >= 500) == 0
    assert statuses == Counter({200: REQUESTS})
    assert answers == Counter({"stop": REQUESTS})


def test_percentile_is_nearest_rank() -> None:
    values = [float(value) for value in range(1, 101)]
    assert (percentile(values, 0.50), percentile(values, 0.99), percentile(values, 1.0)) == (50.0, 99.0, 100.0)
    assert percentile([7.0], 0.99) == 7.0
