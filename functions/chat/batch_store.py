"""The Batch API's only AWS call sites: the pipeline's bucket (S3), its state machine (Step Functions), its jobs
(Bedrock's control plane) and where the batch stack says they are (SSM, through Powertools' parameters).

The batch stack publishes one parameter, `{"bucket": ..., "stateMachineArn": ...}`, and grants this function's
role what it needs on them; without that stack (or before its first deploy) the Batch API answers 503.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.response import StreamingBody
from pydantic import BaseModel, ConfigDict, ValidationError

from chat.errors import BatchPipelineUnavailable

if TYPE_CHECKING:
    from mypy_boto3_bedrock import BedrockClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_stepfunctions import SFNClient

_RETRIES = Config(retries={"mode": "standard", "max_attempts": 3})
# The pipeline's location changes only when its stack is replaced: a few minutes of caching is plenty.
PARAMETER_MAX_AGE_SECONDS = 300
CHUNK_BYTES = 1024 * 1024
# Bedrock job statuses (botocore model `bedrock`, ModelInvocationJobStatus) of a job that still runs and bills:
# what a cancel stops; and of one that has not ended yet (a stopped job passes through Stopping).
RUNNING_JOB_STATUSES = frozenset({"Submitted", "Validating", "Scheduled", "InProgress"})
UNFINISHED_JOB_STATUSES = RUNNING_JOB_STATUSES | {"Stopping"}


class PipelineLocation(BaseModel):
    """The batch stack's parameter: where its bucket and state machine are."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    bucket: str
    stateMachineArn: str

    def execution_arn(self, run: str) -> str:
        """The ARN of the run's execution (Step Functions names executions under the state machine's name)."""
        return f"{self.stateMachineArn.replace(':stateMachine:', ':execution:', 1)}:{run}"


@dataclass(frozen=True)
class StoredObject:
    """What HeadObject says about an object."""

    size: int
    modified: datetime
    version_id: str | None
    metadata: Mapping[str, str]


@dataclass(frozen=True)
class Execution:
    """What DescribeExecution says about a run."""

    status: str
    started: datetime
    stopped: datetime | None
    error: str | None
    cause: str | None


def pipeline(parameter_name: str | None) -> PipelineLocation:
    """Where the pipeline is, from the batch stack's parameter.

    Raises:
        BatchPipelineUnavailable: no parameter name is configured, or the parameter is missing or malformed.
    """
    unavailable = BatchPipelineUnavailable(
        "The Batch API needs this stage's batch pipeline, which is not deployed (or not readable); "
        "deploy the GptOssBatch stack of this stage."
    )
    if not parameter_name:
        raise unavailable
    # Imported here: Powertools' parameters utility loads every provider (DynamoDB's too), which a chat answer's
    # cold start should not pay for.
    from aws_lambda_powertools.utilities import parameters

    try:
        value = parameters.get_parameter(parameter_name, max_age=PARAMETER_MAX_AGE_SECONDS)
        return PipelineLocation.model_validate_json(str(value))
    except (parameters.exceptions.GetParameterError, ValidationError):
        raise unavailable from None


@cache
def _s3() -> S3Client:
    return boto3.client("s3", config=_RETRIES)


@cache
def _sfn() -> SFNClient:
    return boto3.client("stepfunctions", config=_RETRIES)


@cache
def _bedrock() -> BedrockClient:
    return boto3.client("bedrock", config=_RETRIES)


def put_object(bucket: str, key: str, body: bytes, *, metadata: Mapping[str, str], content_type: str) -> None:
    """Store an object."""
    _s3().put_object(Bucket=bucket, Key=key, Body=body, Metadata=dict(metadata), ContentType=content_type)


def put_json(bucket: str, key: str, value: BaseModel) -> None:
    """Store a model as JSON."""
    _s3().put_object(Bucket=bucket, Key=key, Body=value.model_dump_json().encode(), ContentType="application/json")


def head(bucket: str, key: str) -> StoredObject | None:
    """The object's size, time and metadata; None when there is none."""
    try:
        answer = _s3().head_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if _missing(error):
            return None
        raise
    return StoredObject(
        size=answer["ContentLength"],
        modified=answer["LastModified"],
        version_id=answer.get("VersionId"),
        metadata=answer.get("Metadata", {}),
    )


def get_json(bucket: str, key: str) -> Any | None:
    """A JSON object's value; None when there is no such object."""
    body = _body(bucket, key)
    if body is None:
        return None
    with body:
        return json.loads(body.read())


def chunks(bucket: str, key: str) -> Iterator[bytes] | None:
    """The object's bytes, a chunk at a time (nothing larger than a chunk is held); None when there is no such
    object. It is opened here, so a missing one is known before the first chunk (no HEAD beforehand)."""
    body = _body(bucket, key)
    return None if body is None else _chunks_of(body)


def _body(bucket: str, key: str) -> StreamingBody | None:
    """GetObject's body; None when there is no such object."""
    try:
        return _s3().get_object(Bucket=bucket, Key=key)["Body"]
    except ClientError as error:
        if _missing(error):
            return None
        raise


def _chunks_of(body: StreamingBody) -> Iterator[bytes]:
    with body:
        yield from body.iter_chunks(CHUNK_BYTES)


def list_keys(bucket: str, prefix: str, *, start_after: str | None, limit: int) -> tuple[list[str], bool]:
    """Up to `limit` keys under `prefix` in key order after `start_after`; and whether more follow."""
    # StartAfter "" lists from the first key.
    answer = _s3().list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=limit, StartAfter=start_after or "")
    return [item["Key"] for item in answer.get("Contents", [])], bool(answer.get("IsTruncated"))


def start_execution(state_machine_arn: str, name: str, payload: str) -> None:
    """Start the run's execution (its name is the run id: a retry never starts a second one)."""
    sfn = _sfn()
    with contextlib.suppress(sfn.exceptions.ExecutionAlreadyExists):
        sfn.start_execution(stateMachineArn=state_machine_arn, name=name, input=payload)


def describe_execution(execution_arn: str) -> Execution | None:
    """The run's execution; None when it has not started."""
    sfn = _sfn()
    try:
        answer = sfn.describe_execution(executionArn=execution_arn)
    except sfn.exceptions.ExecutionDoesNotExist:
        return None
    return Execution(
        status=answer["status"],
        started=answer["startDate"],
        stopped=answer.get("stopDate"),
        error=answer.get("error"),
        cause=answer.get("cause"),
    )


def stop_execution(execution_arn: str, *, cause: str) -> None:
    """Stop the run's execution (already ended or not started: nothing to do)."""
    sfn = _sfn()
    with contextlib.suppress(sfn.exceptions.ExecutionDoesNotExist):
        sfn.stop_execution(executionArn=execution_arn, error="BatchCancelled", cause=cause)


def unfinished_jobs(name_contains: str) -> dict[str, str]:
    """The Bedrock batch jobs whose name contains `name_contains` and that have not ended: ARN -> status."""
    paginator = _bedrock().get_paginator("list_model_invocation_jobs")
    return {
        job["jobArn"]: job["status"]
        for page in paginator.paginate(nameContains=name_contains)
        for job in page.get("invocationJobSummaries", [])
        if job["status"] in UNFINISHED_JOB_STATUSES
    }


def stop_job(job_arn: str) -> None:
    """Stop one Bedrock batch job (one that ended meanwhile is left alone)."""
    bedrock = _bedrock()
    with contextlib.suppress(bedrock.exceptions.ValidationException, bedrock.exceptions.ConflictException):
        bedrock.stop_model_invocation_job(jobIdentifier=job_arn)


def _missing(error: ClientError) -> bool:
    """Whether S3 answered that the object does not exist (HeadObject says 404 without a code; GetObject NoSuchKey)."""
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return status == 404 or error.response.get("Error", {}).get("Code") == "NoSuchKey"
