"""The state machine's task payloads (the contract with infra/constructs/batch_pipeline.py) and the
shapes of the result files users read. Task payloads forbid unknown fields: a typo in the state machine
fails loudly instead of being ignored. Field names are the wire names (camelCase, as in the ASL).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.pipeline import RunInput

Path = Literal["batch", "on_demand", "empty"]
JobStatus = Literal[
    "Completed", "PartiallyCompleted", "Failed", "Stopped", "Expired", "SubmitFailed", "PollLimit", "PollFailed"
]
RunStatus = Literal["SUCCEEDED", "PARTIAL", "FAILED"]
Count = Annotated[int, Field(ge=0)]


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ShardSpec(_Payload):
    """Everything CreateModelInvocationJob needs for one shard (the state machine adds role, model, timeout)."""

    index: Count
    jobName: str
    clientRequestToken: str
    inputUri: str
    outputUri: str
    recordCount: Annotated[int, Field(ge=1)]


class Prepared(_Payload):
    """What prepare found and decided; the state machine keeps it at `$.prepared`. Never holds prompt text."""

    runId: str
    bucket: str
    sourceKey: str
    sourceVersionId: str | None
    modelId: str
    path: Path
    recordCount: Count
    rejectedCount: Count
    quotaSource: dict[str, Any]
    shards: list[ShardSpec]


class OnDemandResult(_Payload):
    """What the on-demand task returns: where its Bedrock-shaped output is."""

    outputUri: str


class ShardOutcome(_Payload):
    """How one shard's job ended, as the state machine saw it."""

    index: Count
    jobArn: str | None = None
    status: JobStatus
    message: str | None = None


class TaskError(_Payload):
    """A Step Functions error caught by a Catch (`ResultPath` of the error)."""

    Error: str
    Cause: str | None = None


class CollectInput(_Payload):
    """The collect task's input. `prepared` is null when prepare itself failed; `source` (the execution
    input) is always passed so that even then the summary lands next to the run's other objects."""

    prepared: Prepared | None = None
    shardOutcomes: list[ShardOutcome] | None = None
    onDemand: OnDemandResult | None = None
    error: TaskError | None = None
    startedAt: str | None = None
    source: RunInput | None = None

    @model_validator(mode="after")
    def _knows_the_run(self) -> CollectInput:
        if self.prepared is None and self.source is None:
            raise ValueError("collect needs `prepared` or `source` (the execution input)")
        return self


class Counts(_Payload):
    """Every accepted prompt is exactly one of ok, error, missing: accepted == ok + error + missing."""

    accepted: Count = 0
    rejected: Count = 0
    ok: Count = 0
    error: Count = 0
    missing: Count = 0
    duplicates: Count = 0
    unknownRecords: Count = 0


class Tokens(_Payload):
    """Tokens of the records that have a result (reasoning counts as output)."""

    input: Count = 0
    output: Count = 0


class JobReport(_Payload):
    """One shard's job (or the on-demand run) in the summary."""

    index: Count
    jobArn: str | None
    status: str
    message: str | None
    recordCount: Count
    manifest: dict[str, Any] | None
    manifestMismatch: bool


class SourceRef(_Payload):
    """The prompt file of the run."""

    bucket: str
    key: str
    versionId: str | None


class Timings(_Payload):
    """When the execution started (from the state machine) and when collect finished."""

    startedAt: str | None
    finishedAt: str


class Summary(_Payload):
    """`results/<run>/summary.json`."""

    runId: str
    status: RunStatus
    path: Path | None
    modelId: str
    source: SourceRef
    counts: Counts
    tokens: Tokens
    jobs: list[JobReport]
    quotaSource: dict[str, Any] | None
    timings: Timings
    reasons: list[str]
    results: str
    rejected: str | None
    # OpenAI's batch output and error files (s3 URIs), None when the file has no line and was not written.
    openaiOutput: str | None
    openaiErrors: str | None


class CollectResult(_Payload):
    """What collect returns to the state machine: small whatever the run's size."""

    runId: str
    status: RunStatus
    path: Path | None
    counts: Counts
    summary: str
    results: str
