"""Smoke tests of the chat, cold-start and alternative benchmarks, and the proof that the chat app loads offline.

Sizes are tiny and no assertion is about time: this machine is shared, so only structure and sanity
(positive ratios, the same request on both sides, a table) are checked.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from bench import alternatives, chat, cold
from bench.deployed import deployed_chat
from bench.table import Row

ROOT = Path(__file__).resolve().parents[2]
RATIO = re.compile(r"^(\d+\.\d+)x$")


def ratio_of(row: Row) -> float:
    match = RATIO.match(row.ratio)
    assert match, row
    return float(match.group(1))


def test_the_app_imports_and_builds_its_clients_with_sockets_disabled() -> None:
    """A fresh interpreter whose sockets all raise imports chat.app and creates the first request's clients."""
    environment = cold.child_environment(dict(deployed_chat(quick=True).environment))

    assert cold.fresh_start(cold.APP, environment, no_network=True) > 0


def test_chat_rows_compare_the_app_with_the_bare_call() -> None:
    p50, p99, *parts, healthz = chat.rows(quick=True)

    assert {row.area for row in (p50, p99, *parts, healthz)} == {"chat"}
    assert ratio_of(p50) > 0 and ratio_of(p99) > 0
    assert float(p50.ours) > 0 and float(p50.baseline) > 0
    assert isinstance(p50.met, bool) and isinstance(p99.met, bool)
    # The log record, the metrics, the thread hop and the rest: informational, and adding up to the overhead.
    assert len(parts) == 4 and all(part.met is None for part in parts)
    total = sum(float(part.ours) for part in parts)
    assert abs(total - (float(p50.ours) - float(p50.baseline))) < 0.01
    assert "/healthz" in healthz.measure and float(healthz.ours) > 0 and healthz.met is None


def test_the_floor_sends_bedrock_what_the_app_sends() -> None:
    deployed = deployed_chat(quick=True)

    async def check(stand_in: chat.CannedConverse) -> None:
        async with chat.app_client() as client:
            await chat.check_same_request(stand_in, chat.contenders(deployed, client))

    with chat.deployed_function(deployed) as stand_in:
        anyio.run(check, stand_in)

    assert stand_in.last_body is not None


@pytest.mark.enable_socket  # the deployed-shape start: the app and the Bedrock stand-in on loopback ports
def test_cold_rows_measure_both_sides_the_deployed_shape_and_the_asset() -> None:
    start, traced, uncompiled, ready, first_byte, asset = cold.rows(quick=True)

    assert ratio_of(start) > 0 and ratio_of(traced) > 0 and ratio_of(uncompiled) > 0
    assert start.met is not None and traced.met is None and uncompiled.met is None
    # Started as the web adapter starts it: ready first, then the first answer.
    assert "/healthz" in ready.measure and "first byte" in first_byte.measure
    assert 0 < float(ready.ours) <= float(first_byte.ours)
    assert ratio_of(ready) > 0 and ready.met is None and first_byte.met is None
    # A size, not a time: the asset is the same on every machine.
    assert asset.met is True
    assert 0 < int(asset.ours) <= 300


def test_the_deployed_shape_runs_the_templates_handler_script() -> None:
    from infra.constructs.chat_api import CHAT_HANDLER

    assert cold.RUN_SCRIPT == CHAT_HANDLER
    assert (ROOT / "functions" / cold.RUN_SCRIPT).is_file()


def test_without_litellm_the_alternative_row_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(alternatives, "litellm_installed", lambda: False)

    [row] = alternatives.rows(quick=True)

    assert "not installed" in row.ours
    assert row.met is None


@pytest.mark.skipif(importlib.util.find_spec("litellm") is None, reason="LiteLLM is in the bench group only")
def test_python_m_bench_prints_one_table_with_litellm_beside_the_floor() -> None:
    # A child process: LiteLLM changes logging and global state that the rest of the suite should not inherit.
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "bench.alternatives"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )

    assert done.returncode == 0, done.stderr[-2000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("| alternative")]
    assert len(lines) == 3
    assert all(re.search(r"\| \d+\.\d+x +\|", line) for line in lines)
    assert "Measured on" in done.stdout
