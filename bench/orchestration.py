"""Orchestration rows: state transitions per run, per shard and per reconcile lap, counted from executed histories;
and how long a run's summary.json comes after its jobs end, by the job's event and when the event is lost.

The state machine `cdk synth` makes is executed offline (local.harness: moto's interpreter with the real
handlers in-process and Bedrock faked at its wire shapes). Each shard waits for its job in AwaitJob (a task
token stored for job_events, resumed by Bedrock's job-state event); when the reconcile interval
(`batchPollIntervalSeconds`, AwaitJob's TimeoutSeconds) runs out first, GetJob checks the status itself: that
is a lap (AwaitJob GetJob JobStatus). Two runs of SHARDS shards are executed: one whose jobs end on their own
while their shards wait, resumed by their events, and one whose events are lost, each job's end read by the
first status check (the reconciler's). The parent's history is a run's. moto runs a Distributed Map's children
inline and keeps no history of them, so each shard's transitions come from the item processor executed as an
execution of its own (`OfflinePipeline.run_shard`) for a job still running at 0, FEW_LAPS and MANY_LAPS status
checks: the fixed, per-lap and overdue parts fall out exactly. A shard resumed by its event enters the same
states as the 0-lap probe (one AwaitJob, then GetJob): each run counts its shards' AwaitJob entries, the versions
of their task-token objects (the bucket is versioned; each entry stores the token once) to show it.

Counting rule (what AWS bills for Standard workflows: "a state transition each time a step of your workflow
is executed, including retries"; a Distributed Map also bills one transition per child execution it
starts): transitions = StateEntered events + task retries (task attempts beyond the first of each state
entered) + 1 per child execution.

Times: from a job's terminal status (`FakeJob.ended`) to the moment `results/<run>/summary.json` is first seen
(polled every SUMMARY_POLL_SECONDS), for the run's last job. Offline, the reconcile interval lasts
`moto_patches.task_timeout_seconds` of real time, so the lost-event figure is reported as it is deployed: the
interval AwaitJob asked for (configured) plus the time from the reconciler's status check to summary.json
(measured).
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from unittest import mock

from bench.table import Row
from bench.timing import child_report
from infra.config import BatchConfig
from local.contexts import small_run_context

if TYPE_CHECKING:
    from local.harness import OfflinePipeline, Run

# Small quotas so that a few dozen prompts make several shards; hourly checks: a lap limit of 30 and the
# overdue report at the second check (inside FEW_LAPS, so the probes measure it once).
BENCH_CONTEXT = small_run_context("bench")
SHARDS = 3
FEW_LAPS = 3
MANY_LAPS = 7
TARGET_PER_RUN = 25
TARGET_PER_LAP = 3
# Offline, from a job's end to its run's summary.json by the event (deployed, EventBridge's delivery and
# job_events' start come on top).
TARGET_EVENT_SECONDS = 1.0
# A deployed run, for the per-1,000-prompts figures: the defaults a deployment gets (50,000 records per job, the
# reconcile interval of 3,600 s, overdue after 30 h) and a job of 24 h (Bedrock's batch jobs commonly take hours).
DEPLOYED = BatchConfig()
PROMPTS_PER_SHARD = DEPLOYED.quotas.max_records_per_job
JOB_SECONDS = 24 * 3600
# Before issue 15 a shard polled its job every 300 s (a job's results waited up to one interval).
PREVIOUS_POLL_SECONDS = 300
# The event run: each job is ended once its shard waits in AwaitJob (its task token is stored), never before: an
# event that comes first finds no token, as deployed, and only the reconciler would resume that shard. The interval
# lasts EVENT_RUN_RECONCILE_SECONDS of real time, so that only the event can resume a shard in time (a missing
# resumption fails the measurement, it does not slow it down unnoticed).
EVENT_RUN_RECONCILE_SECONDS = 30.0
# Status checks that never end a job (the bench ends it).
NEVER = 10_000
SUMMARY_POLL_SECONDS = 0.02
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
class Completion:
    """One executed run of SHARDS shards: its parent's transitions, how its shards waited, when its summary came."""

    parent: int
    parent_states: list[str]
    awaits_per_shard: float  # AwaitJob entries per shard
    reconcile_seconds: float  # the TimeoutSeconds AwaitJob asked for (deployed: batchPollIntervalSeconds)
    seconds: float  # from the run's last job's terminal status to summary.json, measured offline


@dataclass(frozen=True)
class Orchestration:
    """The measured parts: a run's own (parent) transitions, a shard's fixed part, one reconcile lap, the overdue
    report, and the two completion runs (`by_event`: resumed by the jobs' events; `lost`: events lost)."""

    parent: int
    shard_fixed: int  # a shard whose first status check reads its job's end: 0 laps
    per_lap: int
    overdue: int  # the overdue report, once, in a shard still running at batchExpectedRunHours
    parent_states: list[str]
    shard_states: list[str]
    lap_states: list[str]
    by_event: Completion
    lost: Completion

    def run(self, shards: int, laps: int) -> int:
        """Transitions of a run of `shards` shards whose jobs each outlast `laps` reconcile intervals."""
        return self.parent + shards * (1 + self.shard_fixed + laps * self.per_lap)

    def one_job(self, job_seconds: int, interval_seconds: int) -> int:
        """Transitions of a run of one shard whose job takes `job_seconds`, deployed with DEPLOYED's options but
        this reconcile (or poll) interval: the interval runs out while the job runs, a lap each time, then the job's
        event (or, lost, the next check) reads its end; the overdue report once if a lap reaches the overdue lap."""
        laps = math.ceil(job_seconds / interval_seconds) - 1
        config = DEPLOYED.model_copy(update={"poll_interval_seconds": interval_seconds})
        return self.run(1, laps) + (self.overdue if laps >= config.overdue_lap else 0)


def _prompts(number: int) -> str:
    return "".join(json.dumps({"id": f"p{n}", "prompt": f"What is {n} squared?"}) + "\n" for n in range(number))


def measure_orchestration() -> Orchestration:
    """The batch stack synthesized with BENCH_CONTEXT, executed: the two completion runs, and one shard at 0,
    FEW_LAPS and MANY_LAPS status checks; the counts."""
    from infra.app_builder import cli_context
    from local.harness import OfflinePipeline, states_entered, synthesize_batch_stack

    with tempfile.TemporaryDirectory(prefix="bench-cdk-") as outdir:
        template = synthesize_batch_stack({**cli_context(), **BENCH_CONTEXT}, Path(outdir))
    with OfflinePipeline(template, stage=BENCH_CONTEXT["stage"]) as pipeline:
        by_event, lost = measure_completion(pipeline)
        zero, few, many = (pipeline.run_shard(polls) for polls in (0, FEW_LAPS, MANY_LAPS))
    # A status check is a GetJob entry; every check but the one that reads the job's end closes a lap.
    zero_names, few_names, many_names = states_entered(zero), states_entered(few), states_entered(many)
    if zero_names.count("GetJob") != 1:
        raise RuntimeError(f"the 0-lap probe checked its job more than once: {zero_names}")
    per_lap, remainder = divmod(
        count(many).transitions - count(few).transitions, many_names.count("GetJob") - few_names.count("GetJob")
    )
    if remainder:
        raise RuntimeError("reconcile laps differ in their transitions")
    shard_fixed = count(zero).transitions
    lap_start = few_names.index("AwaitJob")
    return Orchestration(
        parent=by_event.parent,
        shard_fixed=shard_fixed,
        per_lap=per_lap,
        overdue=count(few).transitions - shard_fixed - FEW_LAPS * per_lap,
        parent_states=by_event.parent_states,
        shard_states=zero_names,
        lap_states=few_names[lap_start : lap_start + per_lap],
        by_event=by_event,
        lost=lost,
    )


def measure_completion(pipeline: OfflinePipeline) -> tuple[Completion, Completion]:
    """Two runs of SHARDS shards on a running pipeline: jobs that end while their shards wait, resumed by their
    events; then the same with every event lost, each job's end read by the reconciler's status check."""
    from local import moto_patches
    from local.bedrock.batch_jobs import JobScenario

    answers = len(pipeline.event_answers)
    with mock.patch.object(moto_patches, "task_timeout_seconds", EVENT_RUN_RECONCILE_SECONDS):
        pipeline.bedrock.scenario = lambda _request: JobScenario(polls=NEVER)
        by_event = _completion(pipeline, "inbox/bench-event.jsonl", end_waiting_jobs=True)
    resumed = pipeline.event_answers[answers:]
    if resumed != [{"outcome": "resumed"}] * SHARDS:
        raise RuntimeError(f"the jobs' events did not resume every shard: {resumed}")
    with mock.patch.object(pipeline.bedrock, "emit_events", False):
        pipeline.bedrock.scenario = lambda _request: JobScenario(polls=0)
        lost = _completion(pipeline, "inbox/bench-lost.jsonl")
    if len(pipeline.event_answers) != answers + SHARDS:
        raise RuntimeError("a lost event reached job_events")
    return by_event, lost


def _completion(pipeline: OfflinePipeline, key: str, *, end_waiting_jobs: bool = False) -> Completion:
    """Drop SHARDS shards' worth of prompts; the run's counts and the time from its last job's end to summary.json.
    With `end_waiting_jobs`, each job is ended (its event emitted) as soon as its shard waits for it.

    Raises:
        RuntimeError: the run did not succeed with SHARDS jobs.
    """
    from local import moto_patches
    from shared.pipeline import summary_key

    timeouts = len(moto_patches.task_timeouts)
    dropped = pipeline.drop(key, _prompts(SHARDS * 15))
    if dropped.run_id is None:
        raise RuntimeError(f"dropping {key} started no run: {dropped.deliveries}")
    if end_waiting_jobs:
        _end_jobs_once_awaited(pipeline, dropped.run_id)
    summary_at = _first_seen(pipeline, summary_key(dropped.run_id))
    run = pipeline.wait(dropped.run_id)
    if run.status != "SUCCEEDED" or len(run.jobs) != SHARDS:
        raise RuntimeError(f"the bench run did not succeed with {SHARDS} jobs: {run.status} {run.error}")
    # Only AwaitJob has a TimeoutSeconds; moto evaluates it more than once per entry, so the values are read here,
    # and the entries are counted from the token objects.
    asked = set(moto_patches.task_timeouts[timeouts:])
    if len(asked) != 1:
        raise RuntimeError(f"expected one reconcile interval, AwaitJob asked for {sorted(asked)} s")
    awaits = sum(_token_versions(pipeline, job.request.job_name) for job in run.jobs)
    return Completion(
        parent=count(run.history).transitions,
        parent_states=run.states_entered(),
        awaits_per_shard=awaits / SHARDS,
        reconcile_seconds=asked.pop(),
        seconds=summary_at - _last_end(run),
    )


def _end_jobs_once_awaited(pipeline: OfflinePipeline, run_id: str) -> None:
    """End each of the run's SHARDS jobs as soon as its shard has stored its task token (it waits in AwaitJob).

    Raises:
        TimeoutError: not every job was awaited within the harness's run timeout.
    """
    from local.harness import RUN_TIMEOUT_SECONDS

    ended: set[str] = set()
    deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
    while len(ended) < SHARDS:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(ended)} of {SHARDS} jobs of {run_id} were awaited")
        for job in pipeline.bedrock.for_run(run_id):
            if job.arn not in ended and _token_versions(pipeline, job.request.job_name):
                pipeline.bedrock.finish(job.arn)
                ended.add(job.arn)
        time.sleep(SUMMARY_POLL_SECONDS)


def _token_versions(pipeline: OfflinePipeline, job_name: str) -> int:
    """How many times a shard stored its task token for this job: its AwaitJob entries."""
    from shared.pipeline import job_token_key

    key = job_token_key(job_name)
    versions = pipeline.s3.list_object_versions(Bucket=pipeline.bucket, Prefix=key).get("Versions", [])
    return sum(1 for version in versions if version["Key"] == key)


def _first_seen(pipeline: OfflinePipeline, key: str) -> float:
    """The wall-clock time (time.time()) at which `key` was first seen in the pipeline's bucket."""
    from local.harness import RUN_TIMEOUT_SECONDS

    s3, deadline = pipeline.s3, time.monotonic() + RUN_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        try:
            s3.head_object(Bucket=pipeline.bucket, Key=key)
            return time.time()
        except s3.exceptions.ClientError:
            time.sleep(SUMMARY_POLL_SECONDS)
    raise TimeoutError(f"{key} not written after {RUN_TIMEOUT_SECONDS} s")


def _last_end(run: Run) -> float:
    ends = [job.ended for job in run.jobs]
    if None in ends:
        raise RuntimeError("a job of the run has not ended")
    return max(end.timestamp() for end in ends if end is not None)


def measure_in_child() -> Orchestration:
    """measure_orchestration in a fresh interpreter: moto's process-wide state and the handlers' logs stay there."""
    measured = child_report("-m", "bench.orchestration")
    by_event, lost = (Completion(**measured.pop(name)) for name in ("by_event", "lost"))
    return Orchestration(**measured, by_event=by_event, lost=lost)


def rows(*, quick: bool) -> list[Row]:
    """Transitions per run, per shard, per reconcile lap and per 1,000 prompts; a job's end to its run's summary."""
    measured = measure_in_child()
    return rows_of(measured) + completion_rows(measured)


def rows_of(measured: Orchestration) -> list[Row]:
    """The transition rows of one measurement: per run, per extra shard, per lap, per 1,000 prompts of a 24 h job."""
    one_shard = measured.parent + 1 + measured.shard_fixed
    interval = DEPLOYED.poll_interval_seconds
    typical = measured.one_job(JOB_SECONDS, interval)
    previous = measured.one_job(JOB_SECONDS, PREVIOUS_POLL_SECONDS)
    return [
        Row(
            "orchestration",
            "transitions per run, fixed (run + 1 shard, 0 laps: its job ends in the first reconcile interval)",
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
            f"1 child start + {measured.shard_fixed} ({' '.join(measured.shard_states)})",
            str(1 + measured.shard_fixed),
            "-",
            None,
        ),
        Row(
            "orchestration",
            "transitions per reconcile lap (the interval runs out before the job's event)",
            str(measured.per_lap),
            " ".join(measured.lap_states),
            str(measured.per_lap),
            f"<= {TARGET_PER_LAP}",
            measured.per_lap <= TARGET_PER_LAP,
        ),
        Row(
            "orchestration",
            f"transitions per 1,000 prompts ({PROMPTS_PER_SHARD:,}/job, a {JOB_SECONDS // 3600} h job, reconciled "
            f"every {interval} s)",
            _per_thousand(typical),
            f"{typical} per job; {previous} ({_per_thousand(previous)}) polled every {PREVIOUS_POLL_SECONDS} s before",
            _per_thousand(typical),
            "-",
            None,
        ),
    ]


def completion_rows(measured: Orchestration) -> list[Row]:
    """Transitions of jobs ended by their events vs lost events, and a job's end to summary.json either way."""
    by_event, lost = measured.by_event, measured.lost
    per_job = measured.run(1, 0)
    interval, collect = f"{lost.reconcile_seconds:.0f}", f"{lost.seconds:.2f}"
    return [
        Row(
            "orchestration",
            f"transitions per 1,000 prompts ({PROMPTS_PER_SHARD:,}/job), jobs ended by their events in the first "
            "interval (0 laps)",
            _per_thousand(per_job),
            f"{per_job} per job; {by_event.awaits_per_shard:g} AwaitJob per shard, "
            f"{lost.awaits_per_shard:g} when the events are lost",
            _per_thousand(per_job),
            "-",
            None,
        ),
        Row(
            "completion",
            f"job's end -> summary.json, resumed by the job's event (s; offline, {SHARDS} shards, last job)",
            f"{by_event.seconds:.2f}",
            f"<= {interval} + {collect} when the event is lost",
            f"{by_event.seconds:.2f} s",
            f"<= {TARGET_EVENT_SECONDS:g} s",
            by_event.seconds <= TARGET_EVENT_SECONDS,
        ),
        Row(
            "completion",
            "job's end -> summary.json, event lost (s; the reconcile interval asked for + measured status check "
            "to summary)",
            f"<= {interval} + {collect}",
            f"<= {PREVIOUS_POLL_SECONDS} + {collect} polled every {PREVIOUS_POLL_SECONDS} s (before)",
            f"{lost.reconcile_seconds / PREVIOUS_POLL_SECONDS:.0f}x the interval",
            "-",
            None,
        ),
    ]


def _per_thousand(transitions_per_job: int) -> str:
    return f"{transitions_per_job * 1000 / PROMPTS_PER_SHARD:.2f}"


if __name__ == "__main__":
    print(json.dumps(asdict(measure_orchestration())))
