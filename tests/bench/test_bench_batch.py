"""Smoke test of the converter, parser and planner rows (quick sizes): structure and sane values only, never a
time (this machine is shared and noisy)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

from bench import batch
from bench.table import Row

# The handlers run in this process. Their Tracer loads the X-Ray SDK, whose UDP emitter opens a socket when it
# is imported (it sends nothing with tracing off): imported here, at collection, before pytest-socket refuses it.
for _handler in ("batch.prepare", "batch.collect"):
    importlib.import_module(_handler)

RATIO = re.compile(r"^(\d+\.\d+)x$")


def _ratio(row: Row) -> float:
    match = RATIO.match(row.ratio)
    assert match, row
    return float(match.group(1))


def test_quick_rows_compare_each_step_with_a_line_copy_and_report_its_peak_memory() -> None:
    rows = batch.rows(quick=True)

    by_area: dict[str, list[Row]] = {}
    for row in rows:
        by_area.setdefault(row.area, []).append(row)
    assert set(by_area) == {"converter", "parser", "planner"}
    # A rate and a peak per size, and the time 1 GB of prompts takes; the parser's job output joined too.
    assert len(by_area["converter"]) == 2 * len(batch.QUICK_SIZES) + 1
    assert len(by_area["parser"]) == 2 * len(batch.QUICK_SIZES) + 2
    for row in rows:
        if row.measure.startswith("1 GB of prompts"):
            assert row.baseline == "900 s function timeout"
            assert 0 < _ratio(row) < 1
            assert row.met is not None
        elif row.measure.endswith("MB/s (records/s)") or "joined" in row.measure:
            assert "line copy" in row.baseline
            assert 0 < _ratio(row) < 10
            assert row.met is not None
        elif "peak RSS" in row.measure:
            assert 10 < float(row.ours) <= 1024
            assert row.met is not None
    (plan,) = by_area["planner"]
    assert f"{batch.PLAN_PROMPTS:,} prompts (20 shards)" in plan.measure


def test_a_generated_prompt_file_converts_without_a_rejection_and_every_answer_joins(tmp_path: Path) -> None:
    root = tmp_path
    source = root / batch.BUCKET / batch.SOURCE_KEY
    source.parent.mkdir(parents=True)
    lines = batch.write_prompts(source, 200_000)
    prepared = batch.run_prepare(root)
    assert (prepared["recordCount"], prepared["rejectedCount"]) == (lines, 0)
    batch.write_job_outputs(root, prepared)
    collected = batch.run_collect(root, prepared)
    assert collected["counts"]["ok"] == lines
