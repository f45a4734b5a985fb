"""Bounded load against the local chat API on loopback: closed-loop, paced and burst phases, and what they saw.

Shared by the loopback load tests (tests/local/test_load_chat*.py). Every phase sends a fixed number of
requests and stops by itself; the samples keep statuses, latencies and the bodies of non-200 answers.
"""

from __future__ import annotations

import copy
import math
import threading
import time
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

from local.templates import Template

BODY: Mapping[str, Any] = {
    "model": "gpt-oss-20b",
    "messages": [{"role": "user", "content": "What is the capital of France?"}],
    "max_completion_tokens": 256,
}
HEADERS = {"Authorization": "Bearer local"}


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of `values` (not empty)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def with_stage_throttle(template: Template, *, rate: float, burst: int) -> Template:
    """A copy of a chat stack template whose stage throttles every method at `rate` per second, `burst` at once."""
    changed = copy.deepcopy(template)
    stages = [resource for resource in changed["Resources"].values() if resource["Type"] == "AWS::ApiGateway::Stage"]
    assert len(stages) == 1, "expected one API Gateway stage"
    settings = stages[0]["Properties"].setdefault("MethodSettings", [])
    default = [entry for entry in settings if (entry.get("HttpMethod"), entry.get("ResourcePath")) == ("*", "/*")]
    if not default:
        settings.append({"HttpMethod": "*", "ResourcePath": "/*"})
        default = [settings[-1]]
    default[0].update({"ThrottlingRateLimit": rate, "ThrottlingBurstLimit": burst})
    return changed


@dataclass
class Samples:
    """What one phase saw: statuses, latencies (s), transport errors, and every non-200 answer."""

    statuses: Counter[int] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    finish_reasons: Counter[str] = field(default_factory=Counter)
    refusals: list[httpx.Response] = field(default_factory=list)
    wall_seconds: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def send(self, client: httpx.Client, url: str) -> None:
        """Send one chat completion request and record its outcome."""
        started = time.perf_counter()
        try:
            response = client.post(url, json=dict(BODY), headers=HEADERS)
        except httpx.HTTPError as error:
            with self._lock:
                self.errors[type(error).__name__] += 1
            return
        elapsed = time.perf_counter() - started
        choice = response.json()["choices"][0] if response.status_code == 200 else None
        with self._lock:
            self.latencies.append(elapsed)
            self.statuses[response.status_code] += 1
            if choice is not None:
                self.finish_reasons[choice["finish_reason"]] += 1
            else:
                self.refusals.append(response)

    def server_errors(self) -> int:
        """How many answers were 5xx."""
        return sum(count for status, count in self.statuses.items() if status >= 500)

    def report(self) -> dict[str, object]:
        """Throughput and latency of the phase, for `record_property` (measured, never asserted)."""
        done = len(self.latencies)
        return {
            "requests": done + sum(self.errors.values()),
            "wall_seconds": round(self.wall_seconds, 3),
            "throughput_rps": round(done / self.wall_seconds, 1) if self.wall_seconds else None,
            "p50_ms": round(percentile(self.latencies, 0.50) * 1000, 1) if done else None,
            "p99_ms": round(percentile(self.latencies, 0.99) * 1000, 1) if done else None,
            "statuses": dict(self.statuses),
            "transport_errors": dict(self.errors),
        }


def closed_loop(client: httpx.Client, url: str, *, requests: int, concurrency: int) -> Samples:
    """`requests` requests from `concurrency` workers, each sending its next as soon as the last is answered."""
    samples = Samples()
    remaining = iter(range(requests))
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                if next(remaining, None) is None:
                    return
            samples.send(client, url)

    began = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for future in [pool.submit(worker) for _ in range(concurrency)]:
            future.result()
    samples.wall_seconds = time.perf_counter() - began
    return samples


def paced(client: httpx.Client, url: str, *, rate: float, requests: int) -> Samples:
    """`requests` requests one after another, never faster than `rate` per second.

    One sender, so a stalled machine only lowers the offered rate: late requests are never sent in a bunch.
    """
    samples = Samples()
    interval = 1.0 / rate
    began = next_at = time.perf_counter()
    for _ in range(requests):
        delay = next_at - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        sent_at = time.perf_counter()
        samples.send(client, url)
        # At least one interval after the one actually sent, however late it went.
        next_at = max(next_at, sent_at) + interval
    samples.wall_seconds = time.perf_counter() - began
    return samples


def burst(client: httpx.Client, url: str, *, requests: int) -> Samples:
    """`requests` requests released together (one thread each, behind a barrier)."""
    samples = Samples()
    barrier = threading.Barrier(requests)

    def worker() -> None:
        barrier.wait()
        samples.send(client, url)

    began = time.perf_counter()
    with ThreadPoolExecutor(max_workers=requests) as pool:
        for future in [pool.submit(worker) for _ in range(requests)]:
            future.result()
    samples.wall_seconds = time.perf_counter() - began
    return samples
