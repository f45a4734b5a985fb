"""OpenAI's Batch API shapes (files and batches), and the batch record the chat function keeps per batch.

The response models mirror the `openai` SDK's `FileObject`, `Batch` and its list page (tests validate them with
the SDK's own types); the request model refuses what this service cannot honour, naming the field.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

BatchStatus = Literal[
    "validating", "failed", "in_progress", "finalizing", "completed", "expired", "cancelling", "cancelled"
]
FilePurpose = Literal["batch", "batch_output"]
# OpenAI's limits on batch metadata: 16 pairs, keys up to 64 characters, values up to 512.
MetadataKey = Annotated[str, Field(min_length=1, max_length=64)]
MetadataValue = Annotated[str, Field(max_length=512)]
Metadata = Annotated[dict[MetadataKey, MetadataValue], Field(max_length=16)]
Seconds = int


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CreateBatchRequest(_Strict):
    """POST /v1/batches: the only endpoint is chat completions, the only window 24h (as OpenAI's)."""

    input_file_id: Annotated[str, Field(min_length=1, max_length=100)]
    endpoint: Literal["/v1/chat/completions"]
    completion_window: Literal["24h"]
    metadata: Metadata | None = None


class FileObject(_Strict):
    """A file: an uploaded batch input, or a batch's output or error file."""

    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: Seconds
    filename: str
    purpose: FilePurpose
    status: Literal["processed"] = "processed"
    expires_at: Seconds | None = None
    status_details: str | None = None


class RequestCounts(_Strict):
    """How many requests the batch holds, and how many finished each way (failed includes rejected lines)."""

    total: int = 0
    completed: int = 0
    failed: int = 0


class BatchError(_Strict):
    """Why a batch failed."""

    code: str
    message: str
    param: str | None = None
    line: int | None = None


class BatchErrors(_Strict):
    """The `errors` list of a failed batch."""

    object: Literal["list"] = "list"
    data: list[BatchError]


class Batch(_Strict):
    """A batch: one run of the batch pipeline's state machine over one uploaded file."""

    id: str
    object: Literal["batch"] = "batch"
    endpoint: str
    errors: BatchErrors | None = None
    input_file_id: str
    completion_window: str
    status: BatchStatus
    output_file_id: str | None = None
    error_file_id: str | None = None
    created_at: Seconds
    in_progress_at: Seconds | None = None
    expires_at: Seconds | None = None
    finalizing_at: Seconds | None = None
    completed_at: Seconds | None = None
    failed_at: Seconds | None = None
    expired_at: Seconds | None = None
    cancelling_at: Seconds | None = None
    cancelled_at: Seconds | None = None
    request_counts: RequestCounts = RequestCounts()
    metadata: dict[str, str] | None = None


class BatchList(_Strict):
    """GET /v1/batches: one page, newest first, with the cursor the SDKs page with (`after` = `last_id`)."""

    object: Literal["list"] = "list"
    data: list[Batch]
    first_id: str | None
    last_id: str | None
    has_more: bool


class BatchRecord(_Strict):
    """What the chat function stores per batch (openai/<owner>/batches/<id>.json); the rest is read from the run."""

    id: str
    owner: str
    run: str
    input_file_id: str
    input_key: str
    input_version: str | None
    endpoint: str
    completion_window: str
    created_at: Seconds
    metadata: dict[str, str] | None = None
    cancelling_at: Seconds | None = None
