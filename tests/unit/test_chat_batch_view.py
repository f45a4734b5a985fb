"""A batch's status, counts and files, from its record and what its run says (chat/batches.py batch_view), and
who owns it (owner_of); every view validates as the openai SDK's Batch."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import openai
import pytest

from chat.batch_models import BatchRecord
from chat.batch_store import Execution
from chat.batches import START_GRACE_SECONDS, Progress, batch_view, owner_of
from chat.errors import PrincipalRequired

CREATED = 1_800_000_000
STARTED = datetime.fromtimestamp(CREATED + 1, UTC)
STOPPED = datetime.fromtimestamp(CREATED + 600, UTC)
RECORD = BatchRecord(
    id="batch_0123456789abcdef01234567",
    owner="arn:aws:sts::123456789012:assumed-role/orders-service",
    run="batch-0123456789abcdef01234567",
    input_file_id="file-" + "a" * 32,
    input_key="openai/owner/files/file-x.jsonl",
    input_version="v1",
    endpoint="/v1/chat/completions",
    completion_window="24h",
    created_at=CREATED,
    metadata={"team": "search"},
)
NOTHING_YET = Progress()
SUMMARY = {
    "counts": {"accepted": 3, "rejected": 1, "ok": 2, "error": 1, "missing": 0},
    "openaiOutput": "s3://bucket/results/batch-0123456789abcdef01234567/openai-output.jsonl",
    "openaiErrors": "s3://bucket/results/batch-0123456789abcdef01234567/openai-errors.jsonl",
}


def execution(status: str, **fields: Any) -> Execution:
    return Execution(
        status=status,
        started=STARTED,
        stopped=None if status == "RUNNING" else STOPPED,
        error=fields.get("error"),
        cause=fields.get("cause"),
    )


def view(
    run: Execution | None, progress: Progress = NOTHING_YET, *, record: BatchRecord = RECORD, now: float = CREATED + 5
) -> openai.types.Batch:
    batch = batch_view(record, run, progress, now=now)
    return openai.types.Batch.model_validate(batch.model_dump())


def test_a_batch_whose_run_has_not_started_is_validating_then_failed() -> None:
    assert view(None).status == "validating"
    late = view(None, now=CREATED + START_GRACE_SECONDS + 1)
    assert late.status == "failed"
    assert late.errors is not None and late.errors.data
    assert late.errors.data[0].code == "run_not_started"


@pytest.mark.parametrize(
    ("progress", "status"),
    [
        (Progress(), "validating"),
        (Progress(prepared_at=CREATED + 10), "in_progress"),
        (Progress(prepared_at=CREATED + 10, finalizing_at=CREATED + 500), "finalizing"),
    ],
)
def test_a_running_batch_follows_its_runs_objects(progress: Progress, status: str) -> None:
    batch = view(execution("RUNNING"), progress)
    assert batch.status == status
    assert (batch.in_progress_at, batch.finalizing_at) == (progress.prepared_at, progress.finalizing_at)
    assert batch.request_counts is not None and batch.request_counts.total == 0


def test_a_completed_batch_counts_every_line_and_names_its_files() -> None:
    batch = view(execution("SUCCEEDED"), Progress(summary=SUMMARY))
    assert (batch.status, batch.completed_at) == ("completed", int(STOPPED.timestamp()))
    assert batch.request_counts is not None
    # A rejected line is a failed request.
    assert (batch.request_counts.total, batch.request_counts.completed, batch.request_counts.failed) == (4, 2, 2)
    assert batch.output_file_id == "file-batch-0123456789abcdef01234567-output"
    assert batch.error_file_id == "file-batch-0123456789abcdef01234567-errors"
    assert batch.metadata == {"team": "search"}


def test_a_file_that_was_not_written_is_not_named() -> None:
    summary = {**SUMMARY, "openaiErrors": None}
    batch = view(execution("SUCCEEDED"), Progress(summary=summary))
    assert batch.output_file_id is not None and batch.error_file_id is None


def test_a_failed_run_says_why_without_arns() -> None:
    cause = "collect failed: arn:aws:lambda:us-east-1:123456789012:function:collect timed out"
    batch = view(execution("FAILED", error="States.Timeout", cause=cause))
    assert (batch.status, batch.failed_at) == ("failed", int(STOPPED.timestamp()))
    assert batch.errors is not None and batch.errors.data
    (error,) = batch.errors.data
    assert (error.code, error.message) == ("States.Timeout", "collect failed: <arn> timed out")


def test_a_run_that_timed_out_is_expired() -> None:
    batch = view(execution("TIMED_OUT"))
    assert (batch.status, batch.expired_at) == ("expired", int(STOPPED.timestamp()))


def test_a_cancelled_batch_is_cancelling_until_its_jobs_have_ended() -> None:
    cancelled = RECORD.model_copy(update={"cancelling_at": CREATED + 100})
    assert view(execution("RUNNING"), record=cancelled).status == "cancelling"
    ending = view(execution("ABORTED"), Progress(jobs_ending=True), record=cancelled)
    assert (ending.status, ending.cancelled_at, ending.cancelling_at) == ("cancelling", None, CREATED + 100)
    done = view(execution("ABORTED"), record=cancelled)
    assert (done.status, done.cancelled_at) == ("cancelled", int(STOPPED.timestamp()))


@pytest.mark.parametrize(
    ("caller", "principal"),
    [
        (
            "arn:aws:sts::123456789012:assumed-role/orders-service/i-0abc",
            "arn:aws:sts::123456789012:assumed-role/orders-service",
        ),
        ("arn:aws:iam::123456789012:user/alice", "arn:aws:iam::123456789012:user/alice"),
    ],
)
def test_the_owner_is_the_role_not_its_session(caller: str, principal: str) -> None:
    owner = owner_of(caller)
    assert owner.principal == principal
    assert owner_of(caller.replace("i-0abc", "i-0def")).key == owner.key
    assert owner.key != owner_of("arn:aws:sts::123456789012:assumed-role/billing/i-0abc").key


def test_a_request_without_a_principal_owns_nothing() -> None:
    with pytest.raises(PrincipalRequired):
        owner_of(None)
