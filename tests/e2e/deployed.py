"""Helpers of the deployed-stage tests: stack outputs, signed chat requests, paced load, CloudWatch reads."""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import httpx2 as httpx
import pytest

from tests.e2e.sigv4 import SigV4

CHAT_BODY: Mapping[str, Any] = {
    "model": "gpt-oss-20b",
    "messages": [{"role": "user", "content": "Say hello in one word."}],
    "max_tokens": 256,
}


def stack_outputs(variable: str, purpose: str) -> dict[str, str]:
    """The outputs of the stack named by environment variable `variable` (skips the test when it is unset)."""
    name = os.environ.get(variable)
    if not name:
        pytest.skip(f"set {variable} to the name of {purpose}")
    (stack,) = boto3.client("cloudformation").describe_stacks(StackName=name)["Stacks"]
    return {output["OutputKey"]: output["OutputValue"] for output in stack.get("Outputs", [])}


def env_number(variable: str, default: float) -> float:
    """A number from the environment, or the default."""
    value = os.environ.get(variable)
    return float(value) if value else default


@dataclass
class Outcome:
    """One request's answer: status (0 for a transport error), seconds, parsed error envelope if any."""

    status: int
    seconds: float
    sent_at: float
    error: dict[str, Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


def post_chat(client: httpx.Client, api_url: str, body: Mapping[str, Any] = CHAT_BODY) -> Outcome:
    """One signed chat completion request; never raises (a transport error is status 0)."""
    started = time.monotonic()
    try:
        response = client.post(
            f"{api_url}/chat/completions",
            content=json.dumps(body).encode(),
            headers={"content-type": "application/json"},
        )
    except httpx.HTTPError as error:
        return Outcome(0, time.monotonic() - started, started, {"transport": type(error).__name__})
    seconds = time.monotonic() - started
    envelope = None
    if response.status_code != 200:
        try:
            envelope = response.json().get("error")
        except ValueError:
            envelope = {"unparsed": response.text[:200]}
    return Outcome(response.status_code, seconds, started, envelope, dict(response.headers))


@dataclass
class Phase:
    """What a paced phase offered and got."""

    rps: float
    seconds: float
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def statuses(self) -> Counter[int]:
        """Answers by status (0: transport error)."""
        return Counter(outcome.status for outcome in self.outcomes)

    def p99_ms(self) -> float:
        """The nearest-rank p99 latency of the answered requests, in milliseconds."""
        latencies = sorted(outcome.seconds for outcome in self.outcomes if outcome.status)
        if not latencies:
            return math.inf
        return latencies[max(1, math.ceil(0.99 * len(latencies))) - 1] * 1000

    def report(self) -> dict[str, object]:
        """For record_property: offered rate, statuses and p99."""
        return {"rps": self.rps, "seconds": self.seconds, "statuses": dict(self.statuses), "p99_ms": self.p99_ms()}


def paced_load(api_url: str, region: str, *, rps: float, seconds: float, workers: int = 64) -> Phase:
    """Open-loop load: one signed request every 1/rps seconds for `seconds`, answered by up to `workers` threads.

    Bounded by construction (rps x seconds requests, then it stops); the offered rate never exceeds `rps`:
    a request that could not be sent on time is sent late, never in a catch-up bunch.
    """
    phase = Phase(rps=rps, seconds=seconds)
    lock = threading.Lock()
    count = round(rps * seconds)
    with httpx.Client(auth=SigV4(region), timeout=40, limits=httpx.Limits(max_connections=workers)) as client:

        def one() -> None:
            outcome = post_chat(client, api_url)
            with lock:
                phase.outcomes.append(outcome)

        with ThreadPoolExecutor(max_workers=workers) as pool:
            next_at = time.monotonic()
            for _ in range(count):
                delay = next_at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                sent_at = time.monotonic()
                pool.submit(one)
                next_at = max(next_at, sent_at) + 1 / rps
    return phase


def metric_sum(namespace: str, metric: str, dimensions: Mapping[str, str], start: datetime, end: datetime) -> float:
    """The Sum of a metric over [start, end] (Lambda publishes some metrics only when non-zero: absent is 0)."""
    points = boto3.client("cloudwatch").get_metric_statistics(
        Namespace=namespace,
        MetricName=metric,
        Dimensions=[{"Name": name, "Value": value} for name, value in dimensions.items()],
        StartTime=start - timedelta(minutes=1),
        EndTime=end + timedelta(minutes=1),
        Period=60,
        Statistics=["Sum"],
    )["Datapoints"]
    return float(sum(point["Sum"] for point in points))


def wait_for_alarm(alarm_name: str, state: str, *, timeout_seconds: float) -> str:
    """Poll an alarm until it is in `state` or the time is up; returns the last state seen."""
    cloudwatch = boto3.client("cloudwatch")
    deadline = time.monotonic() + timeout_seconds
    seen = ""
    while time.monotonic() < deadline:
        (alarm,) = cloudwatch.describe_alarms(AlarmNames=[alarm_name])["MetricAlarms"]
        seen = str(alarm["StateValue"])
        if seen == state:
            return seen
        time.sleep(15)
    return seen


def now() -> datetime:
    """The current time, timezone-aware (what CloudWatch and Step Functions return)."""
    return datetime.now(UTC)
