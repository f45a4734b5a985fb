"""bench/orchestration.py on the offline stack: state transitions counted from executed histories, as AWS bills
them. Counts are deterministic, so these are exact assertions (no timing)."""

from __future__ import annotations

from typing import Any

import pytest

from bench.orchestration import TARGET_PER_LAP, TARGET_PER_RUN, count, measure_orchestration, rows_of
from tests.functional.conftest import OFFLINE_STAGE

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics")


def test_a_poll_lap_is_three_billed_transitions_and_the_rest_of_a_run_at_most_25(
    offline_batch_template: dict[str, Any],
) -> None:
    measured = measure_orchestration(offline_batch_template, stage=OFFLINE_STAGE)

    assert measured.lap_states == ["AwaitJob", "GetJob", "JobStatus"]
    assert measured.per_lap == 3 <= TARGET_PER_LAP
    assert measured.parent_states == ["Begin", "Prepare", "Route", "Shards", "Collect", "Ended", "Done"]
    assert measured.parent == 7  # no retry happened
    # A run of one shard whose job ends at once: the run, the child the Map starts, the child's own states.
    assert measured.parent + 1 + measured.shard_fixed <= TARGET_PER_RUN
    assert measured.run(shards=3, laps=10) == 7 + 3 * (1 + measured.shard_fixed + 30)
    run_row, _, lap_row, per_thousand = rows_of(measured)
    assert (run_row.met, lap_row.met, per_thousand.met) == (True, True, None)


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
    counted = count(history)
    assert (counted.entered, counted.retries, counted.transitions) == (2, 1, 3)
