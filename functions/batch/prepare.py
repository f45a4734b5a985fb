"""Prompt file -> batch records in shards (or one on-demand file), id maps and rejections (thin handler).

Two streaming passes with bounded memory: (1) convert the source object (the exact version the run is
about) into `work/<run>/records.jsonl` + `idmap.jsonl`, rejected lines into `rejected/<run>/` (what is kept
per line is only the custom_id digest of an OpenAI batch line, capped: ~29 MB, records.CustomIds); (2) plan
from the record count and sizes, then split those files into shards (or copy them for the on-demand
path). Every key and byte is a function of the source version and the quotas, so a retry rewrites the
same objects.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from batch import converter, storage
from batch.converter import Accepted
from batch.jsonl import encode
from batch.models import Prepared, ShardSpec
from batch.names import client_request_token, job_name
from batch.planner import InfeasiblePlan, Plan, plan
from batch.quotas import load_quotas
from batch.records import Rejection
from batch.settings import BatchSettings
from shared import pipeline
from shared.observability import logger, metrics
from shared.pipeline import RunInput
from shared.settings import load_settings
from shared.tracing import tracer


class SourceMissing(Exception):
    """The prompt file (that version of it) no longer exists."""


class InconsistentWork(Exception):
    """The work files of a run do not match what the first pass counted (a concurrent writer?)."""


@dataclass(slots=True)
class Conversion:
    """What the first pass produced."""

    records: int = 0
    rejected: int = 0
    total_bytes: int = 0
    max_record_bytes: int = 0


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Prepare one run; the result is stored by the state machine at `$.prepared`.

    Raises:
        SourceMissing: the source object version is gone.
        InfeasiblePlan: the records cannot be split into jobs that meet every quota.
    """
    return prepare(RunInput.model_validate(event), load_settings(BatchSettings)).model_dump()


def prepare(run: RunInput, settings: BatchSettings) -> Prepared:
    """Convert, plan and split one run's source file."""
    info = storage.head(run.bucket, run.key, run.versionId)
    if info is None:
        raise SourceMissing(f"the source of run {run.runId} no longer exists")
    if info.size > settings.MAX_SOURCE_BYTES:
        reason = f"the file has {info.size} bytes; at most {settings.MAX_SOURCE_BYTES} are accepted"
        conversion = _reject_file(run, Rejection(line=0, reason=reason))
    else:
        conversion = _convert(run, settings)
    quotas = load_quotas(settings)
    try:
        chosen = plan(
            conversion.records,
            conversion.total_bytes,
            conversion.max_record_bytes,
            quotas,
            max_jobs=settings.MAX_JOBS_PER_RUN,
        )
    except InfeasiblePlan as error:
        logger.error("no feasible plan", run_id=run.runId, records=conversion.records, reason=str(error))
        raise
    shards = _place(run, chosen, settings)
    logger.info(
        "run prepared",
        run_id=run.runId,
        path=chosen.path,
        records=conversion.records,
        rejected=conversion.rejected,
        shards=len(shards),
        reason=chosen.reason,
    )
    return Prepared(
        runId=run.runId,
        bucket=run.bucket,
        sourceKey=run.key,
        sourceVersionId=run.versionId,
        modelId=settings.MODEL_ID,
        path=chosen.path,
        recordCount=conversion.records,
        rejectedCount=conversion.rejected,
        quotaSource=quotas.payload(),
        shards=shards,
    )


def _convert(run: RunInput, settings: BatchSettings) -> Conversion:
    """First pass: stream the source through the converter into the run's work and rejected files."""
    options = converter.Options(
        model_id=settings.MODEL_ID,
        default_max_tokens=settings.DEFAULT_MAX_COMPLETION_TOKENS,
        max_record_bytes=settings.MAX_RECORD_BYTES,
    )
    result = Conversion()
    chunks = storage.iter_chunks(run.bucket, run.key, run.versionId)
    with (
        storage.JsonlWriter(run.bucket, pipeline.all_records_key(run.runId)) as records,
        storage.JsonlWriter(run.bucket, pipeline.all_ids_key(run.runId)) as ids,
        storage.JsonlWriter(run.bucket, pipeline.rejected_key(run.runId), skip_empty=True) as rejected,
    ):
        try:
            for item in converter.convert(run.key, chunks, options):
                if isinstance(item, Accepted):
                    records.write(item.line)
                    ids.write(item.entry_line)
                    result.records += 1
                    result.total_bytes += len(item.line)
                    result.max_record_bytes = max(result.max_record_bytes, len(item.line))
                else:
                    rejected.write(encode(item.rejection.to_json()))
                    result.rejected += 1
        except storage.ObjectMissing as error:
            raise SourceMissing(f"the source of run {run.runId} no longer exists") from error
    return result


def _reject_file(run: RunInput, rejection: Rejection) -> Conversion:
    """The whole file is refused without being read: one rejection, no records."""
    with storage.JsonlWriter(run.bucket, pipeline.rejected_key(run.runId)) as rejected:
        rejected.write(encode(rejection.to_json()))
    return Conversion(rejected=1)


def _place(run: RunInput, chosen: Plan, settings: BatchSettings) -> list[ShardSpec]:
    """Second pass: the on-demand file, or one input file and one id map per shard."""
    if chosen.path == "on_demand":
        storage.copy(run.bucket, pipeline.all_records_key(run.runId), pipeline.on_demand_records_key(run.runId))
        storage.copy(run.bucket, pipeline.all_ids_key(run.runId), pipeline.on_demand_ids_key(run.runId))
        return []
    if chosen.path == "empty":
        return []
    if len(chosen.shard_sizes) == 1:
        storage.copy(run.bucket, pipeline.all_records_key(run.runId), pipeline.shard_records_key(run.runId, 0))
        storage.copy(run.bucket, pipeline.all_ids_key(run.runId), pipeline.shard_ids_key(run.runId, 0))
    else:
        _split(run, chosen)
    return [_spec(run, shard.index, shard.count, settings.JOB_NAME_PREFIX) for shard in chosen.shards()]


def _split(run: RunInput, chosen: Plan) -> None:
    """Cut the run's record and id-map files into the shards' files: whole lines, found by counting newlines."""
    records = _LineBlocks(storage.iter_chunks(run.bucket, pipeline.all_records_key(run.runId)))
    ids = _LineBlocks(storage.iter_chunks(run.bucket, pipeline.all_ids_key(run.runId)))
    for shard in chosen.shards():
        with (
            storage.JsonlWriter(run.bucket, pipeline.shard_records_key(run.runId, shard.index)) as shard_records,
            storage.JsonlWriter(run.bucket, pipeline.shard_ids_key(run.runId, shard.index)) as shard_ids,
        ):
            try:
                _write(shard_records, records.take(shard.count))
                _write(shard_ids, ids.take(shard.count))
            except storage.ObjectMissing as error:
                raise InconsistentWork(f"run {run.runId}: a work file of the first pass is gone") from error
            if shard_records.lines != shard.count or shard_ids.lines != shard.count:
                raise InconsistentWork(f"run {run.runId}: shard {shard.index} is short of records")


def _write(writer: storage.JsonlWriter, blocks: Iterator[tuple[bytes, int]]) -> None:
    # Line by line, so the writer counts what it holds; JSON escapes every CR, so a line ends at its LF only.
    for block, _ in blocks:
        for line in block.splitlines(keepends=True):
            writer.write(line)


class _LineBlocks:
    """The lines of one of the run's own work files (every line ends with a newline), handed out by count in
    blocks of whole lines: splitting copies bytes and counts newlines, it never looks at a line."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._ready = b""  # whole lines read and not handed out yet
        self._rest = b""  # the start of a line whose end is in a later chunk

    def take(self, count: int) -> Iterator[tuple[bytes, int]]:
        """The next `count` lines (fewer when the file ends), as (block, lines in it)."""
        while count > 0 and (block := self._next_block()):
            lines = block.count(b"\n")
            if lines > count:
                cut = _after_newline(block, count)
                block, self._ready, lines = block[:cut], block[cut:], count
            count -= lines
            yield block, lines

    def _next_block(self) -> bytes:
        if self._ready:
            block, self._ready = self._ready, b""
            return block
        for chunk in self._chunks:
            data = self._rest + chunk
            end = data.rfind(b"\n") + 1
            self._rest = data[end:]
            if end:
                return data[:end]
        rest, self._rest = self._rest, b""
        return rest + b"\n" if rest else b""  # a last line without its newline


def _after_newline(block: bytes, count: int) -> int:
    """The offset just after the `count`-th newline of `block` (which holds more than `count`)."""
    position = -1
    for _ in range(count):
        position = block.index(b"\n", position + 1)
    return position + 1


def _spec(run: RunInput, index: int, count: int, prefix: str) -> ShardSpec:
    return ShardSpec(
        index=index,
        jobName=job_name(run.runId, index, prefix),
        clientRequestToken=client_request_token(run.runId, index),
        inputUri=pipeline.s3_uri(run.bucket, pipeline.shard_records_key(run.runId, index)),
        outputUri=pipeline.s3_uri(run.bucket, pipeline.shard_output_prefix(run.runId, index)),
        recordCount=count,
    )
