"""Run a small run's records through Converse, writing Bedrock's batch output format (thin handler).

Runs too small for a batch job go through the same Converse gateway as the chat API, with the same
guardrail, at bounded concurrency (ON_DEMAND_CONCURRENCY threads) and a time budget per record. The
output lands where a batch job's would (`bedrock-output/<run>/on-demand/records.jsonl.out` plus a
`manifest.json.out`), one line per record, success or `error`, so collect reads it with the same parser.
A record that fails (throttled after the gateway's retries, timed out, rejected) becomes an error line;
records left when the function runs out of time become error lines too: the task itself does not fail.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from batch import bedrock, storage
from batch.converse_mapping import batch_error, chat_completion, converse_request
from batch.jsonl import encode
from batch.models import OnDemandResult, Prepared
from batch.records import BatchRecord
from batch.settings import BatchSettings
from shared import pipeline
from shared.converse import ConverseGateway
from shared.errors import BedrockError, BedrockTimeout
from shared.observability import logger, metrics
from shared.settings import load_settings
from shared.tracing import tracer

# Time kept back at the end of the function for writing the output files.
FINISH_MARGIN_SECONDS = 10.0


class NotOnDemand(ValueError):
    """The prepared run did not take the on-demand path."""


class NotConfigured(RuntimeError):
    """The guardrail every on-demand call must carry is not configured."""


@dataclass(frozen=True, slots=True)
class Budget:
    """How long records may run: each one for `per_record` seconds, all of them until `deadline`."""

    deadline: float  # time.monotonic()
    per_record: float

    def for_next_record(self) -> float:
        """The deadline of a record that starts now."""
        return min(time.monotonic() + self.per_record, self.deadline)


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Answer every record of an on-demand run; input is the prepared run, output where the answers are.

    Raises:
        NotOnDemand: the run did not take the on-demand path.
        NotConfigured: GUARDRAIL_ID / GUARDRAIL_VERSION are not set.
    """
    settings = load_settings(BatchSettings)
    remaining = context.get_remaining_time_in_millis() / 1000 - FINISH_MARGIN_SECONDS
    budget = Budget(deadline=time.monotonic() + remaining, per_record=settings.ON_DEMAND_RECORD_TIMEOUT_SECONDS)
    return run(Prepared.model_validate(event), settings, bedrock.gateway(), budget).model_dump()


def run(prepared: Prepared, settings: BatchSettings, converse: ConverseGateway, budget: Budget) -> OnDemandResult:
    """Answer the records and write them in Bedrock's batch output format."""
    if prepared.path != "on_demand":
        raise NotOnDemand(f"run {prepared.runId} took the {prepared.path} path")
    if not (settings.GUARDRAIL_ID and settings.GUARDRAIL_VERSION):
        raise NotConfigured("on-demand calls need GUARDRAIL_ID and GUARDRAIL_VERSION")
    records = list(_records(prepared, settings.MAX_RECORD_BYTES))
    answer = _Answerer(prepared.modelId, settings, converse, budget)
    manifest = {"totalRecordCount": len(records), "processedRecordCount": 0, "successRecordCount": 0}
    manifest |= {"errorRecordCount": 0, "inputTokenCount": 0, "outputTokenCount": 0}
    with (
        ThreadPoolExecutor(max_workers=settings.ON_DEMAND_CONCURRENCY) as pool,
        storage.JsonlWriter(prepared.bucket, pipeline.on_demand_output_key(prepared.runId)) as output,
    ):
        for line in pool.map(answer, records):
            output.write(encode(line))
            _count(manifest, line)
    storage.put_json(prepared.bucket, pipeline.on_demand_manifest_key(prepared.runId), manifest)
    logger.info(
        "on-demand run answered",
        run_id=prepared.runId,
        records=len(records),
        succeeded=manifest["successRecordCount"],
        failed=manifest["errorRecordCount"],
    )
    return OnDemandResult(outputUri=pipeline.s3_uri(prepared.bucket, pipeline.on_demand_output_prefix(prepared.runId)))


def _records(prepared: Prepared, max_line_bytes: int) -> Iterator[BatchRecord]:
    for frame in storage.iter_object_lines(
        prepared.bucket, pipeline.on_demand_records_key(prepared.runId), max_line_bytes
    ):
        if frame.data.strip():
            yield BatchRecord.model_validate(json.loads(frame.data))


class _Answerer:
    """Turns one record into one batch output line (callable from the thread pool)."""

    def __init__(self, model_id: str, settings: BatchSettings, converse: ConverseGateway, budget: Budget) -> None:
        self.model_id = model_id
        self.guardrail = (settings.GUARDRAIL_ID, settings.GUARDRAIL_VERSION)
        self.converse = converse
        self.budget = budget

    def __call__(self, record: BatchRecord) -> dict[str, Any]:
        line: dict[str, Any] = {"recordId": record.recordId, "modelInput": record.modelInput}
        request = converse_request(
            record.modelInput,
            model_id=self.model_id,
            guardrail_id=self.guardrail[0],
            guardrail_version=self.guardrail[1],
        )
        try:
            if time.monotonic() >= self.budget.deadline:
                raise BedrockTimeout("the on-demand task ran out of time before this record", code="NotAttempted")
            reply = self.converse.converse(request, deadline=self.budget.for_next_record())
            line["modelOutput"] = chat_completion(reply, model_id=self.model_id, record_id=record.recordId)
        except BedrockError as error:
            line["error"] = batch_error(error)
        return line


def _count(manifest: dict[str, int], line: dict[str, Any]) -> None:
    manifest["processedRecordCount"] += 1
    if "error" in line:
        manifest["errorRecordCount"] += 1
        return
    manifest["successRecordCount"] += 1
    usage = line["modelOutput"]["usage"]
    manifest["inputTokenCount"] += usage["prompt_tokens"]
    manifest["outputTokenCount"] += usage["completion_tokens"]
