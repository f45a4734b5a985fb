"""SQS -> one Step Functions execution per dropped object version (thin handler).

Each SQS message body is an EventBridge "Object Created" event from S3. The execution name is the run id
derived from bucket, key and version id, so a duplicate event never starts a second run
(`ExecutionAlreadyExists` is success) and a re-upload (a new version) does start one. Failed messages
are reported as `batchItemFailures`, so only they come back (and end in the DLQ if they keep failing).

Decisions: keys outside `inbox/`, folder markers (`.../`) and hidden names (`.keep`, any path part
starting with '.') are ignored; a 0-byte file does start a run (its summary then says it held no
prompt, which is more useful than silence); an object deleted before the event arrives is logged and
acknowledged (there is nothing to run).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.parser.models import S3EventNotificationEventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from batch import executions, storage
from batch.names import run_id
from batch.settings import BatchSettings
from shared.observability import MetricUnit, logger, metrics
from shared.pipeline import RunInput, is_prompt_key
from shared.settings import load_settings
from shared.tracing import tracer

OBJECT_CREATED = "Object Created"

processor = BatchProcessor(event_type=EventType.SQS)


class InvalidMessage(ValueError):
    """An SQS message that is not an EventBridge S3 event (it goes back to the queue, then the DLQ)."""


class NotConfigured(RuntimeError):
    """The function's environment lacks a value it needs."""


# The EventBridge event in an SQS message body: Powertools' model of an S3 event delivered by EventBridge
# (`version-id` is absent when the bucket is not versioned; fields it does not know are ignored).
S3Event = S3EventNotificationEventBridgeModel


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Start the runs of a batch of SQS messages; report the ones that failed."""
    return dict(
        process_partial_response(event=event, record_handler=handle_record, processor=processor, context=context)
    )


def handle_record(record: SQSRecord) -> str:
    """Start the run of one message; returns what happened (started / duplicate / ignored / gone).

    Raises:
        InvalidMessage: the body is not an S3 event delivered by EventBridge.
        NotConfigured: STATE_MACHINE_ARN is not set.
    """
    try:
        event = S3Event.model_validate_json(record.body)
    except ValidationError as error:
        raise InvalidMessage(f"message {record.message_id} is not an EventBridge S3 event") from error
    return start_run(event, load_settings(BatchSettings))


def start_run(event: S3Event, settings: BatchSettings) -> str:
    """Start the execution of the object this event is about, unless there is nothing to run."""
    if not settings.STATE_MACHINE_ARN:
        raise NotConfigured("STATE_MACHINE_ARN is not set")
    bucket, version_id = event.detail.bucket.name, event.detail.object.version_id
    if event.detail_type != OBJECT_CREATED:
        logger.info("event ignored", reason="not Object Created", detail_type=event.detail_type)
        return "ignored"
    candidates = [key for key in dict.fromkeys(_key_spellings(event.detail.object.key)) if is_prompt_key(key)]
    if not candidates:
        logger.info("event ignored", reason="not a prompt file under inbox/")
        return "ignored"
    found = next((info for key in candidates if (info := storage.head(bucket, key, version_id))), None)
    if found is None:
        logger.warning("object not found; nothing to run", bucket=bucket, version_id=version_id)
        return "gone"
    version = version_id or found.version_id
    run = run_id(bucket, found.key, version)
    payload = RunInput(bucket=bucket, key=found.key, versionId=version, runId=run).model_dump_json()
    if not executions.start(settings.STATE_MACHINE_ARN, run, payload):
        logger.info("run already started", run_id=run)
        return "duplicate"
    logger.info("run started", run_id=run, size=found.size)
    metrics.add_metric(name="RunsStarted", unit=MetricUnit.Count, value=1)
    return "started"


def _key_spellings(key: str) -> list[str]:
    """The key as given, then URL-decoded: S3 notifications encode keys (space as '+'); whether
    EventBridge does is not documented, so the spelling that exists in the bucket wins."""
    return [key, unquote_plus(key)]
