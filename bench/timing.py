"""Side-by-side timing: interleaved calls so that the machine's noise falls on every contender alike, and the
fresh interpreters that time a step by themselves."""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Latencies:
    """One contender's per-call times, in milliseconds."""

    samples: Sequence[float]

    @property
    def p50(self) -> float:
        """The median."""
        return statistics.median(self.samples)

    @property
    def p99(self) -> float:
        """The 99th percentile (nearest rank)."""
        return percentile(self.samples, 99)


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile of `samples` by nearest rank."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


# Prepares one call untimed (a new event, a new context) and returns the call to time.
Contender = Callable[[], Callable[[], object]]


def interleaved(contenders: Mapping[str, Contender], *, requests: int, warmup: int = 200) -> dict[str, Latencies]:
    """Time `requests` calls of each contender, one call each in turn (ABAB...), after `warmup` untimed calls each.

    One call at a time: a burst of machine noise then falls on every contender alike, and no contender runs from
    caches the others never get (in blocks of 50, the bare boto3 call ran ≈ 5 % faster than beside other work,
    which is how a Lambda function calls it).
    """
    for prepare in contenders.values():
        for _ in range(warmup):
            prepare()()
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    clock = time.perf_counter_ns
    for _ in range(requests):
        for name, prepare in contenders.items():
            taken = samples[name]
            call = prepare()
            started = clock()
            call()
            taken.append((clock() - started) / 1e6)
    return {name: Latencies(taken) for name, taken in samples.items()}


def ratio(ours: float, baseline: float) -> float:
    """ours / baseline (infinite when the baseline is zero)."""
    return ours / baseline if baseline else math.inf


# The async form: prepares one request untimed and returns the coroutine function to time.
AsyncContender = Callable[[], Callable[[], Awaitable[object]]]


async def interleaved_async(
    contenders: Mapping[str, AsyncContender], *, requests: int, warmup: int = 200
) -> dict[str, Latencies]:
    """`interleaved` inside one running event loop: each contender's call is awaited and timed in the loop.

    One call each in turn (ABCABC...), after `warmup` untimed calls each; the loop and anything the contenders
    hold open (a client, a thread pool) live for the whole run, so only the per-request cost is timed.
    """
    for prepare in contenders.values():
        for _ in range(warmup):
            await prepare()()
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    clock = time.perf_counter_ns
    for _ in range(requests):
        for name, prepare in contenders.items():
            call = prepare()
            started = clock()
            await call()
            samples[name].append((clock() - started) / 1e6)
    return {name: Latencies(taken) for name, taken in samples.items()}


def child_report(*args: str, env: Mapping[str, str] | None = None) -> Any:
    """Run `python <args>` in a fresh interpreter; the JSON of the last line it printed.

    Raises:
        RuntimeError: the child failed (the end of its stderr is in the message).
    """
    completed = subprocess.run(  # noqa: S603 - our own interpreter running our own code
        [sys.executable, *args], capture_output=True, check=False, text=True, env=env
    )
    if completed.returncode != 0:
        raise RuntimeError(f"python {' '.join(args)[:200]} failed:\n{completed.stderr[-4000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])
