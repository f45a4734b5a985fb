"""Smoke tests of the streaming rows: structure and sane values only, never a time (this machine is shared)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from bench import alternatives, stream

ROOT = Path(__file__).resolve().parents[2]


class _Events:
    """A model whose stream is three events, one of them text; closing it is recorded."""

    def __init__(self) -> None:
        self.closed = False

    def converse(self, request: Mapping[str, Any]) -> dict[str, Any]:
        return {}

    def apply_guardrail(self, request: Mapping[str, Any]) -> dict[str, Any]:
        return {}

    def chat_completion(self, body: Mapping[str, Any], *, model_id: str | None = None) -> dict[str, Any]:
        return {}

    def converse_stream(self, request: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        try:
            yield {"messageStart": {"role": "assistant"}}
            yield {"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "hm"}}}}
            yield {"contentBlockDelta": {"contentBlockIndex": 1, "delta": {"text": "Hello"}}}
            yield {"messageStop": {"stopReason": "end_turn"}}
        finally:
            self.closed = True


def test_the_timed_model_stamps_only_text_events_and_closes_what_it_wraps() -> None:
    events = _Events()
    model = stream.TimedModel(events)

    sent = list(model.converse_stream({"modelId": "m", "messages": []}))

    assert len(sent) == 4
    assert len(model.latest()) == 1
    assert model.requests == [{"modelId": "m", "messages": []}]
    assert events.closed


def test_overheads_are_the_client_minus_the_stand_in() -> None:
    timing = stream.StreamTiming(sent=[1.000, 1.002, 1.004], received=[1.005, 1.008, 1.011])

    assert timing.ttft_overhead_ms == pytest.approx(5.0)
    # Gaps of 3 ms at the client, 2 ms at the stand-in.
    assert timing.per_chunk_overhead_ms == pytest.approx(1.0)


@pytest.mark.enable_socket  # the stand-in, the local API and the chat app's process on loopback ports
@pytest.mark.filterwarnings("ignore:No application metrics")
def test_stream_rows_compare_the_chat_api_with_the_bare_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(alternatives, "litellm_installed", lambda: False)

    ttft, ttft_p99, chunk = stream.rows(quick=True)

    assert {row.area for row in (ttft, ttft_p99, chunk)} == {"stream"}
    assert float(ttft.ours) > 0 and float(ttft.baseline) > 0
    assert float(ttft_p99.ours) >= float(ttft.ours)
    # Targets are reported, not asserted: MISS or ok, either is a bool.
    assert isinstance(ttft.met, bool) and isinstance(chunk.met, bool) and ttft_p99.met is None
    assert re.search(r"5 streams x \d+ text events", ttft.measure)


@pytest.mark.skipif(importlib.util.find_spec("litellm") is None, reason="LiteLLM is in the bench group only")
def test_litellm_streams_beside_the_floor_in_python_m_bench() -> None:
    # A child process: LiteLLM changes logging and global state that the rest of the suite should not inherit.
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "bench.stream"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )

    assert done.returncode == 0, done.stderr[-2000:]
    stream_lines = [line for line in done.stdout.splitlines() if line.startswith("| stream")]
    litellm_lines = [line for line in done.stdout.splitlines() if line.startswith("| alternative")]
    assert len(stream_lines) == 3
    assert len(litellm_lines) == 2 and all("LiteLLM streaming" in line for line in litellm_lines)
