"""bench/orchestration.py: state transitions counted from executed histories, as AWS bills them, and the rows for
event-driven completion: a job's end to its run's summary.json (by the job's
event; bounded by the reconcile interval when the event is lost) and the transitions of the runs that measure it.

One measurement for the module: the bench's own stack, synthesized, and its runs (≈ 15 s in the suite, where
aws_cdk is loaded already; ≈ 25 s alone). Counts are exact; the one time asserted is the event path's, against a
bound it meets several times over offline (0.2-0.3 s on a busy 2-core machine).
"""

from __future__ import annotations

import dataclasses

import pytest

from bench import orchestration
from bench.orchestration import Completion, Orchestration, completion_rows, measure_orchestration, rows_of

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics")


@pytest.fixture(scope="module")
def measured() -> Orchestration:
    """The orchestration bench's measurement, on the stack the bench synthesizes."""
    return measure_orchestration()


def test_a_jobs_event_brings_its_summary_within_a_second_and_a_lost_one_waits_for_the_reconcile_interval(
    measured: Orchestration,
) -> None:
    by_event, lost = measured.by_event, measured.lost

    assert 0 < by_event.seconds < orchestration.TARGET_EVENT_SECONDS
    assert 0 < lost.seconds < orchestration.TARGET_EVENT_SECONDS
    # What AwaitJob asked for: the bench stack's batchPollIntervalSeconds, which the rows' deployed terms take for
    # the default's.
    assert by_event.reconcile_seconds == lost.reconcile_seconds == orchestration.DEPLOYED.poll_interval_seconds
    expected = int(orchestration.BENCH_CONTEXT["batchPollIntervalSeconds"])
    assert lost.reconcile_seconds == expected
    # Each shard waited once either way: the event ended the wait, or the reconciler's check read the end.
    assert by_event.awaits_per_shard == lost.awaits_per_shard == 1
    assert by_event.parent == lost.parent == measured.parent


def test_the_transitions_of_a_lap_and_of_a_shard_are_the_states_they_enter(measured: Orchestration) -> None:
    assert measured.lap_states == ["AwaitJob", "GetJob", "JobStatus"]
    assert measured.per_lap == len(measured.lap_states)
    assert measured.shard_states == ["SubmitJob", "AwaitJob", "GetJob", "JobStatus", "HasMessage", "JobEnded"]
    assert measured.shard_fixed == len(measured.shard_states)  # no retry
    assert measured.parent_states == ["Begin", "Prepare", "Route", "Shards", "Collect", "Ended", "Done"]
    assert measured.parent == len(measured.parent_states)
    assert measured.overdue == 1  # ReportOverdue
    # A run of one shard whose job ends at once: the run, the child the Map starts, the child's own states.
    assert measured.parent + 1 + measured.shard_fixed <= orchestration.TARGET_PER_RUN


def test_retries_are_counted_as_transitions() -> None:
    history = [
        {"type": "TaskStateEntered"},
        {"type": "TaskScheduled"},
        {"type": "TaskFailed"},
        {"type": "TaskScheduled"},
        {"type": "TaskSucceeded"},
        {"type": "TaskStateExited"},
        {"type": "ChoiceStateEntered"},
    ]
    counted = orchestration.count(history)
    assert (counted.entered, counted.retries, counted.transitions) == (2, 1, 3)


def test_the_rows_compute_from_the_measurement(measured: Orchestration) -> None:
    table = rows_of(measured) + completion_rows(measured)

    assert [row.met for row in table] == [True, None, True, None, None, True, None]
    by_event, lost = table[-2:]
    assert float(by_event.ours) < orchestration.TARGET_EVENT_SECONDS
    assert lost.ours == f"<= 3600 + {measured.lost.seconds:.2f}"
    assert lost.ratio == "12x the interval"


def test_per_thousand_prompts_a_24_h_job_makes_23_laps_and_one_ended_by_its_event_none() -> None:
    # The measured parts, as the bench reads them (the rows' arithmetic alone).
    run = Completion(parent=7, parent_states=[], awaits_per_shard=1, reconcile_seconds=3600, seconds=0.2)
    measured = Orchestration(
        parent=7,
        shard_fixed=6,
        per_lap=3,
        overdue=1,
        parent_states=[],
        shard_states=[],
        lap_states=[],
        by_event=run,
        lost=dataclasses.replace(run, seconds=0.1),
    )

    assert measured.one_job(24 * 3600, 3600) == 7 + 1 + 6 + 23 * 3
    assert measured.one_job(24 * 3600, 300) == 7 + 1 + 6 + 287 * 3  # polled every 300 s, before
    # Overdue at the 30th check (30 h): a job still running then is reported once; one ending at 30 h is not.
    assert measured.one_job(31 * 3600, 3600) == 7 + 1 + 6 + 30 * 3 + 1
    assert measured.one_job(30 * 3600, 3600) == 7 + 1 + 6 + 29 * 3
    typical = rows_of(measured)[-1]
    assert (typical.ours, typical.baseline) == ("1.66", "83 per job; 875 (17.50) polled every 300 s before")
    events = completion_rows(measured)[0]
    assert (events.ours, events.baseline) == ("0.28", "14 per job; 1 AwaitJob per shard, 1 when the events are lost")
