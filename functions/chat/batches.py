"""OpenAI's Batch API over the batch pipeline: files in, one state-machine run per batch, OpenAI's output files out.

- A file (`POST /v1/files`, purpose `batch`) is stored under its owner's folder of the pipeline bucket, outside
  `inbox/`, so an upload alone starts nothing.
- A batch (`POST /v1/batches`) is a record beside it and one execution of the pipeline's state machine on that
  file: the very run a drop in `inbox/` starts, with its guardrail, jobs, results and summary. Its run id is
  `batch-<hex>` for the batch `batch_<hex>`, so nothing maps one to the other.
- Its status is read from the run: the execution's status, then which of the run's objects exist.
- The owner is the IAM principal that signed the request (for an assumed role, the role: session names change
  between a service's sessions); every key of a file or batch holds a hash of it, so a caller can only reach
  its own, and another caller's id is simply not found.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote, unquote

from chat import batch_store
from chat.batch_models import (
    Batch,
    BatchError,
    BatchErrors,
    BatchList,
    BatchRecord,
    BatchStatus,
    CreateBatchRequest,
    FileObject,
    RequestCounts,
)
from chat.batch_store import Execution, PipelineLocation
from chat.errors import InvalidRequest, InvalidState, NotFound, PrincipalRequired, redact
from shared import pipeline
from shared.pipeline import RunInput

JSONL_SUFFIX = ".jsonl"
MAX_FILENAME_LENGTH = 255
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
# A batch whose execution has not started this long after its record was written never will (the function
# stopped between the two): it is reported failed rather than validating forever.
START_GRACE_SECONDS = 60
# Batch ids sort newest first: their first 12 hex digits count down from this, in milliseconds.
_NEWEST_FIRST = 0xFFFF_FFFF_FFFF
_UPLOADED_ID = re.compile(r"file-[0-9a-f]{32}")
_RESULT_FILE_ID = re.compile(r"file-batch-([0-9a-f]{24})-(output|errors)")
BATCH_ID_PATTERN = r"^batch_[0-9a-f]{24}$"
_BATCH_ID = re.compile(BATCH_ID_PATTERN)
_ASSUMED_ROLE = re.compile(r"(arn:aws[a-z-]*:sts::\d{12}:assumed-role/[^/]+)/.+")
_METADATA_FILENAME = "filename"


@dataclass(frozen=True)
class Owner:
    """Who the files and batches of a request belong to: the principal, and the hash that keys their objects."""

    principal: str
    key: str


def owner_of(caller: str | None) -> Owner:
    """The owner of a signed request's files and batches.

    Raises:
        PrincipalRequired: the request carries no IAM principal (it was not SigV4-signed).
    """
    if not caller:
        raise PrincipalRequired("Files and batches belong to the IAM principal that signs the request (SigV4).")
    principal = match.group(1) if (match := _ASSUMED_ROLE.fullmatch(caller)) else caller
    return Owner(principal=principal, key=hashlib.sha256(principal.encode()).hexdigest()[:32])


# --- files ------------------------------------------------------------------------------------------------


def upload(where: PipelineLocation, owner: Owner, *, filename: str, purpose: str, data: bytes) -> FileObject:
    """Store an uploaded batch input file (JSONL, OpenAI's batch input lines) for its owner.

    Raises:
        InvalidRequest: the purpose is not `batch`, the file name does not end in .jsonl, or the file is empty.
    """
    if purpose != "batch":
        raise InvalidRequest(
            f"Invalid value for 'purpose': only 'batch' is supported, got {purpose[:40]!r}.", param="purpose"
        )
    if not filename.endswith(JSONL_SUFFIX) or len(filename) > MAX_FILENAME_LENGTH:
        raise InvalidRequest(
            "Invalid value for 'file': a batch input file is a .jsonl file "
            f"(its name up to {MAX_FILENAME_LENGTH} characters).",
            param="file",
        )
    if not data:
        raise InvalidRequest("Invalid value for 'file': the file is empty.", param="file")
    file_id = f"file-{secrets.token_hex(16)}"
    batch_store.put_object(
        where.bucket,
        pipeline.uploaded_file_key(owner.key, file_id),
        data,
        metadata={_METADATA_FILENAME: quote(filename, safe="")},
        content_type="application/jsonl",
    )
    return FileObject(id=file_id, bytes=len(data), created_at=int(time.time()), filename=filename, purpose="batch")


def retrieve_file(where: PipelineLocation, owner: Owner, file_id: str) -> FileObject:
    """One of the owner's files: an upload, or a batch's output or error file.

    Raises:
        NotFound: the owner has no file of this id.
    """
    key, filename, purpose = _file(where, owner, file_id)
    stored = batch_store.head(where.bucket, key)
    if stored is None:
        raise _file_not_found(file_id)
    name = unquote(stored.metadata.get(_METADATA_FILENAME, "")) or filename
    return FileObject(
        id=file_id, bytes=stored.size, created_at=_seconds(stored.modified), filename=name, purpose=purpose
    )


def file_content(where: PipelineLocation, owner: Owner, file_id: str) -> Iterator[bytes]:
    """The bytes of one of the owner's files, a chunk at a time.

    Raises:
        NotFound: the owner has no file of this id (checked before the first chunk).
    """
    key, _, _ = _file(where, owner, file_id)
    chunks = batch_store.chunks(where.bucket, key)
    if chunks is None:
        raise _file_not_found(file_id)
    return chunks


def _file(where: PipelineLocation, owner: Owner, file_id: str) -> tuple[str, str, Any]:
    """The key, default file name and purpose of a file id, once the owner is known to hold it."""
    if _UPLOADED_ID.fullmatch(file_id):
        return pipeline.uploaded_file_key(owner.key, file_id), f"{file_id}{JSONL_SUFFIX}", "batch"
    result = _RESULT_FILE_ID.fullmatch(file_id)
    if result is None:
        raise _file_not_found(file_id)
    digest, kind = result.groups()
    if batch_store.head(where.bucket, pipeline.batch_record_key(owner.key, f"batch_{digest}")) is None:
        raise _file_not_found(file_id)
    run = f"batch-{digest}"
    key = pipeline.openai_output_key(run) if kind == "output" else pipeline.openai_errors_key(run)
    return key, f"batch_{digest}_{kind}{JSONL_SUFFIX}", "batch_output"


def _file_not_found(file_id: str) -> NotFound:
    return NotFound(f"No such File object: {file_id[:100]}", param="file_id")


# --- batches ----------------------------------------------------------------------------------------------


def create(where: PipelineLocation, owner: Owner, request: CreateBatchRequest) -> Batch:
    """Record a batch and start its run on the owner's input file.

    Raises:
        NotFound: the owner has no uploaded file `input_file_id` (naming `input_file_id`).
    """
    input_key = pipeline.uploaded_file_key(owner.key, request.input_file_id)
    stored = batch_store.head(where.bucket, input_key) if _UPLOADED_ID.fullmatch(request.input_file_id) else None
    if stored is None:
        raise NotFound(f"No such File object: {request.input_file_id[:100]}", param="input_file_id")
    now = time.time()
    digest = f"{_NEWEST_FIRST - int(now * 1000):012x}{secrets.token_hex(6)}"
    record = BatchRecord(
        id=f"batch_{digest}",
        owner=owner.principal,
        run=f"batch-{digest}",
        input_file_id=request.input_file_id,
        input_key=input_key,
        input_version=stored.version_id,
        endpoint=request.endpoint,
        completion_window=request.completion_window,
        created_at=int(now),
        metadata=request.metadata,
    )
    # The record first: a run is never started without one, so no run (and no job) is ever out of the owner's
    # sight; a record whose run did not start is reported failed after START_GRACE_SECONDS.
    batch_store.put_json(where.bucket, pipeline.batch_record_key(owner.key, record.id), record)
    run = RunInput(bucket=where.bucket, key=input_key, versionId=stored.version_id, runId=record.run)
    batch_store.start_execution(where.stateMachineArn, record.run, run.model_dump_json())
    return _view(where, record)


def retrieve(where: PipelineLocation, owner: Owner, batch_id: str) -> Batch:
    """One of the owner's batches, as its run stands now.

    Raises:
        NotFound: the owner has no batch of this id.
    """
    return _view(where, _record(where, owner, batch_id))


def listing(where: PipelineLocation, owner: Owner, *, after: str | None, limit: int) -> BatchList:
    """One page of the owner's batches, newest first, after the batch `after`.

    Raises:
        InvalidRequest: `limit` is outside 1..100.
    """
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidRequest(f"Invalid value for 'limit': it must be between 1 and {MAX_PAGE_SIZE}.", param="limit")
    start_after = pipeline.batch_record_key(owner.key, after) if after else None
    keys, more = batch_store.list_keys(
        where.bucket, pipeline.batch_records_prefix(owner.key), start_after=start_after, limit=limit
    )
    batch_ids = [key.rsplit("/", 1)[-1].removesuffix(".json") for key in keys]
    with ThreadPoolExecutor(max_workers=8) as pool:
        batches = list(pool.map(lambda batch_id: retrieve(where, owner, batch_id), batch_ids))
    return BatchList(
        data=batches,
        first_id=batches[0].id if batches else None,
        last_id=batches[-1].id if batches else None,
        has_more=more,
    )


def cancel(where: PipelineLocation, owner: Owner, batch_id: str) -> Batch:
    """Stop the batch's run and every Bedrock job it started; the batch is `cancelling` until they have ended.

    Raises:
        NotFound: the owner has no batch of this id.
        InvalidState: the batch has already ended (completed, failed or expired).
    """
    record = _record(where, owner, batch_id)
    execution = batch_store.describe_execution(where.execution_arn(record.run))
    if execution is not None and execution.status not in ("RUNNING", "ABORTED"):
        raise InvalidState(f"Cannot cancel a batch that has ended ({_view(where, record, execution).status}).")
    if record.cancelling_at is None:
        record = record.model_copy(update={"cancelling_at": int(time.time())})
        batch_store.put_json(where.bucket, pipeline.batch_record_key(owner.key, record.id), record)
    batch_store.stop_execution(where.execution_arn(record.run), cause=f"cancelled through the Batch API ({record.id})")
    return _view(where, record)


def _record(where: PipelineLocation, owner: Owner, batch_id: str) -> BatchRecord:
    value = (
        batch_store.get_json(where.bucket, pipeline.batch_record_key(owner.key, batch_id))
        if _BATCH_ID.fullmatch(batch_id)
        else None
    )
    if value is None:
        raise NotFound(f"No such Batch object: {batch_id[:100]}", param="batch_id")
    return BatchRecord.model_validate(value)


def _view(where: PipelineLocation, record: BatchRecord, execution: Execution | None = None) -> Batch:
    """The batch as its run stands: read what the status needs, then `batch_view`."""
    execution = execution or batch_store.describe_execution(where.execution_arn(record.run))
    progress = Progress()
    if execution is None or execution.status == "RUNNING":
        summary = batch_store.head(where.bucket, pipeline.summary_key(record.run))
        prepared = batch_store.head(where.bucket, pipeline.all_records_key(record.run))
        progress = Progress(
            prepared_at=_seconds(prepared.modified) if prepared else None,
            finalizing_at=_seconds(summary.modified) if summary else None,
        )
    else:
        progress = Progress(summary=batch_store.get_json(where.bucket, pipeline.summary_key(record.run)))
    if record.cancelling_at is not None and (execution is None or execution.status in ("RUNNING", "ABORTED")):
        # Stop every job the run started, also one created as its execution stopped: a retrieval sweeps again.
        jobs = batch_store.unfinished_jobs(record.run.removeprefix("batch-"))
        for job_arn, status in jobs.items():
            if status in batch_store.RUNNING_JOB_STATUSES:
                batch_store.stop_job(job_arn)
        progress = Progress(
            prepared_at=progress.prepared_at,
            finalizing_at=progress.finalizing_at,
            summary=progress.summary,
            jobs_ending=bool(jobs),
        )
    return batch_view(record, execution, progress, now=time.time())


@dataclass(frozen=True)
class Progress:
    """What a run's objects and jobs say beyond its execution's status."""

    prepared_at: int | None = None  # the run's records were written: its jobs are submitted next
    finalizing_at: int | None = None  # its summary was written: the execution is ending
    summary: Any | None = None  # summary.json of a run that ended
    jobs_ending: bool = False  # a cancelled run still has Bedrock jobs that have not ended


def batch_view(record: BatchRecord, execution: Execution | None, progress: Progress, *, now: float) -> Batch:
    """The OpenAI batch object of a record, its run's execution and progress (pure)."""
    status: BatchStatus
    times: dict[str, int | None] = {"cancelling_at": record.cancelling_at}
    errors: BatchErrors | None = None
    if execution is None:
        if now - record.created_at > START_GRACE_SECONDS:
            status = "failed"
            errors = _errors("run_not_started", "The batch's run did not start; create the batch again.")
        else:
            status = "cancelled" if record.cancelling_at else "validating"
    elif execution.status == "RUNNING":
        if record.cancelling_at is not None:
            status = "cancelling"
        elif progress.finalizing_at is not None:
            status = "finalizing"
        elif progress.prepared_at is not None:
            status = "in_progress"
        else:
            status = "validating"
        times |= {"in_progress_at": progress.prepared_at, "finalizing_at": progress.finalizing_at}
    else:
        ended = _seconds(execution.stopped) if execution.stopped else None
        status, moment = _ended(execution.status, jobs_ending=progress.jobs_ending)
        times[moment] = ended if status != "cancelling" else None
        if status == "failed":
            errors = _errors(execution.error or "run_failed", redact(execution.cause or "The batch's run failed."))
    summary = progress.summary if isinstance(progress.summary, dict) else {}
    return Batch(
        id=record.id,
        endpoint=record.endpoint,
        errors=errors,
        input_file_id=record.input_file_id,
        completion_window=record.completion_window,
        status=status,
        output_file_id=f"file-{record.run}-output" if summary.get("openaiOutput") else None,
        error_file_id=f"file-{record.run}-errors" if summary.get("openaiErrors") else None,
        created_at=record.created_at,
        request_counts=_request_counts(summary.get("counts")),
        metadata=record.metadata,
        **times,
    )


def _ended(execution_status: str, *, jobs_ending: bool) -> tuple[BatchStatus, str]:
    """The batch status of an execution that ended, and the timestamp field that says when."""
    if execution_status == "SUCCEEDED":
        return "completed", "completed_at"
    if execution_status == "TIMED_OUT":
        return "expired", "expired_at"
    if execution_status == "ABORTED":
        return ("cancelling" if jobs_ending else "cancelled"), "cancelled_at"
    return "failed", "failed_at"


def _request_counts(counts: Any) -> RequestCounts:
    """OpenAI's counts from the summary's: every line is a request; a rejected line is a failed one."""
    if not isinstance(counts, dict):
        return RequestCounts()
    rejected, ok = int(counts.get("rejected", 0)), int(counts.get("ok", 0))
    accepted = int(counts.get("accepted", 0))
    return RequestCounts(total=accepted + rejected, completed=ok, failed=accepted + rejected - ok)


def _errors(code: str, message: str) -> BatchErrors:
    return BatchErrors(data=[BatchError(code=code, message=message)])


def _seconds(moment: datetime) -> int:
    return int(moment.timestamp())
