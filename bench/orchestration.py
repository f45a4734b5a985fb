"""Orchestration rows: state transitions per run, per shard and per poll lap, counted from executed histories.

The state machine `cdk synth` makes is executed offline (local.harness: moto's interpreter with the real
handlers in-process and Bedrock faked at its wire shapes). The parent's history is a run's; each shard's
child execution is run as an execution of the Distributed Map's item processor (moto runs the children
inline and keeps no history of them), once with a job still running at FEW_LAPS status checks and once at
MANY_LAPS (a lap is one status check: a GetJob entry), so the per-lap and fixed parts fall out exactly.

Counting rule (what AWS bills for Standard workflows: "a state transition each time a step of your workflow
is executed, including retries"; a Distributed Map also bills one transition per child execution it
starts): transitions = StateEntered events + task retries (task attempts beyond the first of each state
entered) + 1 per child execution.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.table import Row
from local.contexts import small_run_context

# Small quotas so that a few dozen prompts make several shards; hourly checks: a lap limit of 30 and the
# overdue report at the second check (both inside FEW_LAPS, so the report is in every shard's fixed part).
BENCH_CONTEXT = small_run_context("bench")
SHARDS = 3
FEW_LAPS = 3
MANY_LAPS = 7
TARGET_PER_RUN = 25
TARGET_PER_LAP = 3
# A deployed run, for the per-1,000-prompts figure: 50,000 records per job (the default quota), a job of 24 h
# (Bedrock's batch jobs commonly take hours) reconciled every 3,600 s (batchPollIntervalSeconds), or resumed by
# its event at the end (then fewer laps: this counts the lost-event bound).
PROMPTS_PER_SHARD = 50_000
TYPICAL_LAPS = 24 * 3600 // 3600
_TASK_ATTEMPTS = ("TaskScheduled", "LambdaFunctionScheduled")


@dataclass(frozen=True)
class Count:
    """Transitions of one execution history, by the counting rule of the module docstring."""

    entered: int
    retries: int

    @property
    def transitions(self) -> int:
        """What AWS bills for the execution itself (child starts are counted by the parent's Map)."""
        return self.entered + self.retries


def count(history: Sequence[Mapping[str, Any]]) -> Count:
    """Count one execution history."""
    entered = sum(1 for event in history if event["type"].endswith("StateEntered"))
    task_entries = sum(1 for event in history if event["type"] == "TaskStateEntered")
    attempts = sum(1 for event in history if event["type"] in _TASK_ATTEMPTS)
    return Count(entered=entered, retries=max(0, attempts - task_entries))


@dataclass(frozen=True)
class Orchestration:
    """The measured parts: a run's own (parent) transitions, a shard's fixed part and one poll lap."""

    parent: int
    shard_fixed: int
    per_lap: int
    parent_states: list[str]
    lap_states: list[str]

    def run(self, shards: int, laps: int) -> int:
        """Transitions of a run of `shards` shards whose jobs each take `laps` status checks."""
        return self.parent + shards * (1 + self.shard_fixed + laps * self.per_lap)


def _prompts(number: int) -> str:
    return "".join(json.dumps({"id": f"p{n}", "prompt": f"What is {n} squared?"}) + "\n" for n in range(number))


def measure_orchestration(
    template: Mapping[str, Any] | None = None, *, stage: str = BENCH_CONTEXT["stage"]
) -> Orchestration:
    """Execute a run of SHARDS shards, and one shard at FEW_LAPS and MANY_LAPS status checks; the counts.

    `template`: the batch stack synthesized with small quotas (default: synthesized here with BENCH_CONTEXT).
    """
    from local.bedrock.batch_jobs import JobScenario
    from local.harness import OfflinePipeline, states_entered, synthesize_batch_stack

    if template is None:
        from infra.app_builder import cli_context

        with tempfile.TemporaryDirectory(prefix="bench-cdk-") as outdir:
            template = synthesize_batch_stack({**cli_context(), **BENCH_CONTEXT}, Path(outdir))
    with OfflinePipeline(template, stage=stage) as pipeline:
        pipeline.bedrock.scenario = lambda _request: JobScenario(polls=FEW_LAPS)
        run = pipeline.run("inbox/bench.jsonl", _prompts(SHARDS * 15))
        if run.status != "SUCCEEDED" or len(run.jobs) != SHARDS:
            raise RuntimeError(f"the bench run did not succeed with {SHARDS} jobs: {run.status} {run.error}")
        parent = count(run.history)
        few, many = pipeline.run_shard(FEW_LAPS), pipeline.run_shard(MANY_LAPS)
    # A lap is one status check: the laps of a history are its GetJob entries.
    few_names, many_names = states_entered(few), states_entered(many)
    few_laps, many_laps = few_names.count("GetJob"), many_names.count("GetJob")
    per_lap, remainder = divmod(count(many).transitions - count(few).transitions, many_laps - few_laps)
    if remainder:
        raise RuntimeError("poll laps differ in their transitions")
    lap_start = few_names.index("AwaitJob")
    return Orchestration(
        parent=parent.transitions,
        shard_fixed=count(few).transitions - few_laps * per_lap,
        per_lap=per_lap,
        parent_states=run.states_entered(),
        lap_states=few_names[lap_start : lap_start + per_lap],
    )


def measure_in_child() -> Orchestration:
    """measure_orchestration in a fresh interpreter: moto's process-wide state and the handlers' logs stay there."""
    completed = subprocess.run(
        [sys.executable, "-m", "bench.orchestration"], capture_output=True, check=False, text=True
    )
    if completed.returncode != 0:
        raise RuntimeError(f"the orchestration bench failed:\n{completed.stderr[-4000:]}")
    return Orchestration(**json.loads(completed.stdout.strip().splitlines()[-1]))


def rows(*, quick: bool) -> list[Row]:
    """Transitions per run (fixed), per shard, per poll lap, and per 1,000 prompts of a deployed run."""
    return rows_of(measure_in_child())


def rows_of(measured: Orchestration) -> list[Row]:
    """The table rows of one measurement."""
    one_shard = measured.parent + 1 + measured.shard_fixed
    per_thousand = measured.run(1, TYPICAL_LAPS) * 1000 / PROMPTS_PER_SHARD
    return [
        Row(
            "orchestration",
            "transitions per run, fixed (run + 1 shard, 0 laps)",
            str(one_shard),
            f"run {measured.parent} ({' '.join(measured.parent_states)}) + shard {1 + measured.shard_fixed}",
            str(one_shard),
            f"<= {TARGET_PER_RUN}",
            one_shard <= TARGET_PER_RUN,
        ),
        Row(
            "orchestration",
            "transitions per extra shard (0 laps)",
            str(1 + measured.shard_fixed),
            f"1 child start + {measured.shard_fixed} in the child",
            str(1 + measured.shard_fixed),
            "-",
            None,
        ),
        Row(
            "orchestration",
            "transitions per poll lap",
            str(measured.per_lap),
            " ".join(measured.lap_states),
            str(measured.per_lap),
            f"<= {TARGET_PER_LAP}",
            measured.per_lap <= TARGET_PER_LAP,
        ),
        Row(
            "orchestration",
            f"transitions per 1,000 prompts ({PROMPTS_PER_SHARD:,}/job, {TYPICAL_LAPS} laps)",
            f"{per_thousand:.1f}",
            f"{measured.run(1, TYPICAL_LAPS)} per job",
            f"{per_thousand:.1f}",
            "-",
            None,
        ),
    ]


if __name__ == "__main__":
    print(json.dumps(asdict(measure_orchestration())))
