"""Bedrock's job-state events -> the shard waiting for that job goes on at once (thin handler).

EventBridge delivers "Batch Inference Job State Change" events of this pipeline's jobs (the rule matches the
stage's job-name prefix and the terminal statuses). The shard's AwaitJob task stored its task token under
`work/job-tokens/<job name>` (`{"taskToken": ...}`); SendTaskSuccess resumes it, and its GetJob reads the
authoritative status.

Never an error (EventBridge would retry it for nothing): an event with no stored token (a job that is not ours,
or an event that came before the token was stored: the reconciler's status check covers it) and a token no task
waits for any more (a duplicate or late event) are logged and ignored. `creationTime` is never read (it is not
ISO 8601).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field

from batch import executions, storage
from batch.settings import BatchSettings
from shared import pipeline
from shared.observability import MetricUnit, logger, metrics
from shared.settings import load_settings
from shared.tracing import tracer


class JobStateDetail(BaseModel):
    """`detail` of a Batch Inference Job State Change event (creationTime deliberately not read; the shape grows
    new fields, so what is not read is ignored)."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    batch_job_name: str = Field(alias="batchJobName")
    batch_job_arn: str = Field(alias="batchJobArn")
    status: str


class JobStateEvent(EventBridgeModel):
    """The EventBridge event: Powertools' envelope, with this detail."""

    detail: JobStateDetail


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, str]:
    """Resume the shard waiting for the job of this event, if one waits."""
    return {"outcome": resume(JobStateEvent.model_validate(event), load_settings(BatchSettings))}


def resume(event: JobStateEvent, settings: BatchSettings) -> str:
    """`resumed`, `no-token` (not ours, or no shard waits yet) or `not-waiting` (a duplicate or late event)."""
    job = event.detail
    try:
        stored = storage.get_json(settings.BUCKET_NAME, pipeline.job_token_key(job.batch_job_name))
    except ValueError:  # not JSON: not a token AwaitJob stored
        stored = None
    token = stored.get("taskToken") if isinstance(stored, dict) else None
    if not isinstance(token, str) or not token:
        logger.info("event ignored: no shard waits for this job", job_name=job.batch_job_name, status=job.status)
        return "no-token"
    if not executions.resume(token, job.model_dump_json(by_alias=True)):
        logger.info("event ignored: the shard no longer waits", job_name=job.batch_job_name, status=job.status)
        return "not-waiting"
    logger.info("shard resumed", job_name=job.batch_job_name, job_arn=job.batch_job_arn, status=job.status)
    metrics.add_metric(name="ShardsResumedByEvent", unit=MetricUnit.Count, value=1)
    return "resumed"
