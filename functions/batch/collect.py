"""Bedrock output -> results.jsonl + summary.json, on every path of the run (thin handler + its steps).

Called last on every path, failures included (`error` set, `prepared` null when prepare failed), so it
never fails on missing pieces: absent output files, manifests, id maps or outcomes become `missing`
records and reasons in the summary. Memory is bounded per shard (its id map and the set of recordIds
already answered); results are streamed out. Every accepted prompt gets exactly one results line.

The same results are written in OpenAI's batch output format (results.OpenAIBatchOutput): each answer to
`openai-output.jsonl`, each error or missing result and each rejected line (streamed from rejected/) to
`openai-errors.jsonl`. Either file is written only when it has a line; the summary names those written.

With APPLY_GUARDRAIL, batch answers (which Bedrock does not guard) go through ApplyGuardrail (source
OUTPUT) before they are written: an intervention keeps status ok with finish_reason content_filter and
the guardrail's text as the answer; an answer that could not be checked is withheld (status error).
On-demand answers already went through Converse with the guardrail and are not checked twice.
"""

from __future__ import annotations

import json
import time
from array import array
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import chain
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic_core import from_json

from batch import bedrock, storage
from batch.jsonl import encode
from batch.models import (
    CollectInput,
    CollectResult,
    Counts,
    JobReport,
    Path,
    ShardOutcome,
    ShardSpec,
    SourceRef,
    Summary,
    Timings,
    Tokens,
)
from batch.names import RECORD_ID_PATTERN, record_id
from batch.records import IdEntry, Rejection
from batch.results import (
    OpenAIBatchOutput,
    Result,
    ResultError,
    Tally,
    join,
    leftovers,
    missing_reason,
    reconcile,
    run_status,
)
from batch.settings import BatchSettings
from shared import pipeline
from shared.converse import ConverseGateway
from shared.errors import BedrockError
from shared.observability import MetricUnit, logger, metrics
from shared.settings import load_settings
from shared.tracing import tracer

# Output lines carry the prompt and the whole answer (reasoning included): allow far more than a record.
MAX_OUTPUT_LINE_BYTES = 32 * 1024 * 1024
GUARD_CHUNK = 64
GUARD_CALL_SECONDS = 30.0
FINISH_MARGIN_SECONDS = 15.0
_MAX_ERROR_TEXT = 500


@dataclass(frozen=True, slots=True)
class Run:
    """The run being collected."""

    run_id: str
    bucket: str
    key: str
    version_id: str | None
    model_id: str
    path: Path | None


@dataclass(frozen=True, slots=True)
class Unit:
    """One id map joined with one output folder: a shard's job, the on-demand run, or a failed run."""

    label: str
    index: int
    job_arn: str | None
    status: str
    message: str | None
    record_count: int
    ids_key: str
    output_prefix: str | None
    missing: ResultError
    report: bool  # listed in the summary's jobs
    expects_manifest: bool


class Guard:
    """ApplyGuardrail (source OUTPUT) over batch answers, concurrently, within the function's time."""

    def __init__(self, settings: BatchSettings, converse: ConverseGateway, deadline: float) -> None:
        self.guardrail = (settings.GUARDRAIL_ID, settings.GUARDRAIL_VERSION)
        self.concurrency = settings.ON_DEMAND_CONCURRENCY
        self.with_reasoning = settings.RETURN_REASONING
        self.converse = converse
        self.deadline = deadline
        self.interventions = 0

    def check(self, results: list[Result]) -> list[Result]:
        """The results as they may be shown."""
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(self._one, results))

    def _one(self, result: Result) -> Result:
        if not all(self.guardrail):
            return result.withheld(ResultError("GuardrailNotConfigured", "APPLY_GUARDRAIL is set without a guardrail"))
        if time.monotonic() + 1 >= self.deadline:
            return result.withheld(ResultError("GuardrailNotApplied", "no time was left to apply the guardrail"))
        texts = [result.answer or ""]
        if self.with_reasoning and result.reasoning:
            texts.append(result.reasoning)
        try:
            verdict = self.converse.apply_guardrail(
                guardrail_id=self.guardrail[0],
                guardrail_version=self.guardrail[1],
                source="OUTPUT",
                texts=texts,
                deadline=min(time.monotonic() + GUARD_CALL_SECONDS, self.deadline),
            )
        except BedrockError as error:
            return result.withheld(
                ResultError("GuardrailUnavailable", f"the guardrail could not be applied ({error.code})")
            )
        if not verdict.intervened:
            return result
        self.interventions += 1
        return result.guarded(verdict.outputs[0].text if verdict.outputs else "")


@dataclass(frozen=True, slots=True)
class OpenAIFiles:
    """The run's OpenAI batch output file and error file, being written."""

    form: OpenAIBatchOutput
    output: storage.JsonlWriter
    errors: storage.JsonlWriter

    def add(self, result: Result) -> None:
        """Write one result to the file it belongs in."""
        (self.output if result.status == "ok" else self.errors).write(encode(self.form.result(result)))

    def add_rejections(self, bucket: str, run_id: str) -> int:
        """Stream the run's rejected lines into the error file; how many there were."""
        count = 0
        for frame in storage.iter_object_lines(bucket, pipeline.rejected_key(run_id), MAX_OUTPUT_LINE_BYTES):
            if frame.data.strip():
                self.errors.write(encode(self.form.rejection(Rejection.model_validate_json(frame.data))))
                count += 1
        return count

    def uris(self) -> tuple[str | None, str | None]:
        """The s3 URIs of the output and error files, None for a file without lines (not written)."""
        output, errors = self.output, self.errors
        return (
            pipeline.s3_uri(output.bucket, output.key) if output.lines else None,
            pipeline.s3_uri(errors.bucket, errors.key) if errors.lines else None,
        )


class Sink:
    """Writes results (guarded in chunks when a guard is set) and counts them into their unit's tally."""

    def __init__(
        self, writer: storage.JsonlWriter, openai: OpenAIFiles, *, with_reasoning: bool, guard: Guard | None
    ) -> None:
        self.writer = writer
        self.openai = openai
        self.with_reasoning = with_reasoning
        self.guard = guard
        self.pending: list[tuple[Result, Tally]] = []
        self.error_codes: Counter[str] = Counter()

    def add(self, result: Result, tally: Tally) -> None:
        """Write one result (possibly after the guardrail has seen it)."""
        if self.guard is not None and result.status == "ok" and result.answer:
            self.pending.append((result, tally))
            if len(self.pending) >= GUARD_CHUNK:
                self.flush()
        else:
            self._emit(result, tally)

    def flush(self) -> None:
        """Guard and write what is pending."""
        if self.guard is None or not self.pending:
            return
        checked = self.guard.check([result for result, _ in self.pending])
        for (_, tally), result in zip(self.pending, checked, strict=True):
            self._emit(result, tally)
        self.pending.clear()

    def _emit(self, result: Result, tally: Tally) -> None:
        tally.count(result)
        if result.error is not None:
            self.error_codes[result.error.code] += 1
        self.writer.write(encode(result.to_json(with_reasoning=self.with_reasoning)))
        self.openai.add(result)


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Write the run's results and summary; returns the summary's status and counts."""
    settings = load_settings(BatchSettings)
    deadline = time.monotonic() + context.get_remaining_time_in_millis() / 1000 - FINISH_MARGIN_SECONDS
    guard = Guard(settings, bedrock.gateway(), deadline) if settings.APPLY_GUARDRAIL else None
    return collect(CollectInput.model_validate(event), settings, guard).model_dump()


def collect(request: CollectInput, settings: BatchSettings, guard: Guard | None) -> CollectResult:
    """Account for every accepted prompt; write results.jsonl, the OpenAI batch output files and summary.json."""
    run = _run(request, settings)
    units = _units(request, run)
    reasons = _run_reasons(request)
    counts = {"ok": 0, "error": 0, "missing": 0, "duplicates": 0, "unknownRecords": 0}
    tokens = Tokens()
    jobs: list[JobReport] = []
    form = OpenAIBatchOutput(run.run_id, run.model_id, _created(request), settings.RETURN_REASONING)
    with (
        storage.JsonlWriter(run.bucket, pipeline.results_key(run.run_id)) as writer,
        storage.JsonlWriter(run.bucket, pipeline.openai_output_key(run.run_id), skip_empty=True) as output,
        storage.JsonlWriter(run.bucket, pipeline.openai_errors_key(run.run_id), skip_empty=True) as errors,
    ):
        openai = OpenAIFiles(form, output, errors)
        sink = Sink(
            writer, openai, with_reasoning=settings.RETURN_REASONING, guard=guard if run.path == "batch" else None
        )
        tallies = [(unit, _harvest(run, unit, sink)) for unit in units]
        sink.flush()
        rejected_lines = openai.add_rejections(run.bucket, run.run_id)
    for unit, (tally, manifest) in tallies:
        report, notes = _account(unit, tally, manifest)
        jobs.extend([report] if report else [])
        reasons.extend(notes)
        for name, value in _tally_counts(tally).items():
            counts[name] += value
        tokens = Tokens(input=tokens.input + tally.input_tokens, output=tokens.output + tally.output_tokens)
    rejected = request.prepared.rejectedCount if request.prepared else rejected_lines
    totals = Counts(accepted=counts["ok"] + counts["error"] + counts["missing"], rejected=rejected, **counts)
    reasons.extend(_count_reasons(totals, request, run, sink.error_codes))
    summary = _summary(request, run, totals, tokens, jobs, reasons, openai.uris())
    storage.put_json(run.bucket, pipeline.summary_key(run.run_id), summary.model_dump())
    _publish(run, summary, guard)
    return CollectResult(
        runId=run.run_id,
        status=summary.status,
        path=run.path,
        counts=totals,
        summary=pipeline.s3_uri(run.bucket, pipeline.summary_key(run.run_id)),
        results=summary.results,
    )


def _run(request: CollectInput, settings: BatchSettings) -> Run:
    if request.prepared is not None:
        prepared = request.prepared
        return Run(
            prepared.runId,
            prepared.bucket,
            prepared.sourceKey,
            prepared.sourceVersionId,
            prepared.modelId,
            prepared.path,
        )
    source = request.source
    if source is None:  # CollectInput already refuses this
        raise ValueError("collect needs `prepared` or `source`")
    return Run(source.runId, source.bucket, source.key, source.versionId, settings.MODEL_ID, None)


def _units(request: CollectInput, run: Run) -> list[Unit]:
    """What to join: every shard, the on-demand output, or (prepare failed) the whole id map if any."""
    prepared = request.prepared
    if prepared is None:
        return [_failed_run_unit(request, run)]
    if prepared.path == "on_demand":
        return [_on_demand_unit(request, run, prepared.recordCount)]
    if prepared.path == "batch":
        outcomes = {outcome.index: outcome for outcome in request.shardOutcomes or []}
        return [_shard_unit(request, run, shard, outcomes.get(shard.index)) for shard in prepared.shards]
    return []


def _failed_run_unit(request: CollectInput, run: Run) -> Unit:
    failure = _error_text(request)
    return Unit(
        label="run",
        index=0,
        job_arn=None,
        status="NotRun",
        message=failure,
        record_count=0,
        ids_key=pipeline.all_ids_key(run.run_id),
        output_prefix=None,
        missing=missing_reason(None, None, failure),
        report=False,
        expects_manifest=False,
    )


def _on_demand_unit(request: CollectInput, run: Run, record_count: int) -> Unit:
    done = request.onDemand is not None
    failure = None if done else _error_text(request)
    return Unit(
        label="on-demand",
        index=0,
        job_arn=None,
        status="Completed" if done else "Failed",
        message=failure,
        record_count=record_count,
        ids_key=pipeline.on_demand_ids_key(run.run_id),
        output_prefix=pipeline.on_demand_output_prefix(run.run_id),
        missing=missing_reason("Completed", None) if done else missing_reason(None, None, failure),
        report=True,
        expects_manifest=done,
    )


def _shard_unit(request: CollectInput, run: Run, shard: ShardSpec, outcome: ShardOutcome | None) -> Unit:
    """A shard's unit; without an outcome (the run failed around it) every job folder of the shard is read."""
    prefix = pipeline.shard_output_prefix(run.run_id, shard.index)
    status: str = "Unknown"
    arn: str | None = None
    message: str | None = _error_text(request) or "no outcome was reported for this shard"
    missing = missing_reason(None, None, message)
    if outcome is not None:
        status, arn, message = outcome.status, outcome.jobArn, outcome.message
        missing = missing_reason(outcome.status, outcome.message)
        prefix += f"{pipeline.job_id(arn)}/" if arn else ""
    return Unit(
        label=f"shard {shard.index}",
        index=shard.index,
        job_arn=arn,
        status=status,
        message=message,
        record_count=shard.recordCount,
        ids_key=pipeline.shard_ids_key(run.run_id, shard.index),
        output_prefix=prefix,
        missing=missing,
        report=True,
        expects_manifest=status in ("Completed", "PartiallyCompleted"),
    )


def _harvest(run: Run, unit: Unit, sink: Sink) -> tuple[Tally, dict[str, Any] | None]:
    """Join one unit's output with its id map; every entry of the map goes to the sink once."""
    entries = _entries(run.bucket, unit.ids_key)
    keys = list(storage.list_keys(run.bucket, unit.output_prefix)) if unit.output_prefix else []
    outputs = sorted(key for key in keys if key.endswith(pipeline.OUTPUT_SUFFIX))
    manifests = [key for key in keys if key.endswith(pipeline.MANIFEST_FILE)]
    manifest = storage.get_json(run.bucket, manifests[0]) if len(manifests) == 1 else None
    frames = chain.from_iterable(storage.iter_object_lines(run.bucket, key, MAX_OUTPUT_LINE_BYTES) for key in outputs)
    tally = Tally(entries=len(entries))
    found = join(entries, frames, source_key=run.key, tally=tally)
    for result in chain(found, leftovers(entries, source_key=run.key, missing=unit.missing, tally=tally)):
        sink.add(result, tally)
    tally.seen.clear()  # memory stays per shard: only the counts outlive the join
    return tally, manifest if isinstance(manifest, dict) else None


def _entries(bucket: str, key: str) -> IdMap:
    entries = IdMap()
    for frame in storage.iter_object_lines(bucket, key, MAX_OUTPUT_LINE_BYTES):
        if frame.data.strip():
            entries.add_fields(*_entry_fields(frame.data))
    return entries


class IdMap(Mapping[str, IdEntry]):
    """One shard's id map, validated as it is read and held compactly: what bounds collect's memory is the
    largest shard (up to 50,000 entries), so an entry costs about 20 bytes here, not the ~650 of an IdEntry.

    prepare writes the map in source order with recordIds made from the line (`R` + 11 digits), so an entry is
    its line in an array, found again by bisection, and its caller id in one UTF-8 buffer. An entry that does
    not fit that scheme (a hand-made or damaged map) is kept as it is, apart.
    """

    def __init__(self) -> None:
        self._lines = array("q")
        self._ends = array("q")  # where each caller id ends in _ids
        self._ids = bytearray()
        self._others: dict[str, IdEntry] = {}

    def add(self, entry: IdEntry) -> None:
        """Keep an entry (the first one of a recordId wins)."""
        self.add_fields(entry.recordId, entry.id, entry.line)

    def add_fields(self, record_id: str, identifier: str, line: int) -> None:
        """Keep an entry given by its fields (the first one of a recordId wins)."""
        # A recordId made from a line past the last one kept cannot be among the lines already (each of those
        # is made from its own line), so only the few kept apart need looking at.
        if (
            (not self._lines or line > self._lines[-1])
            and record_id not in self._others
            and _made_from_line(record_id, line)
        ):
            self._lines.append(line)
            self._ids += identifier.encode("utf-8", "surrogatepass")
            self._ends.append(len(self._ids))
        elif record_id not in self:
            self._others[record_id] = IdEntry.model_construct(recordId=record_id, id=identifier, line=line)

    def __getitem__(self, key: str) -> IdEntry:
        entry = self._find(key)
        if entry is None:
            raise KeyError(key)
        return entry

    def get(self, key: str, default: Any = None) -> Any:
        """The entry of a recordId, or `default` (Mapping.get, without raising and catching KeyError per line)."""
        entry = self._find(key)
        return default if entry is None else entry

    def __contains__(self, key: object) -> bool:
        return (isinstance(key, str) and self._position(key) is not None) or key in self._others

    def __iter__(self) -> Iterator[str]:
        yield from (record_id(line) for line in self._lines)
        yield from self._others

    def __len__(self) -> int:
        return len(self._lines) + len(self._others)

    def _find(self, key: str) -> IdEntry | None:
        position = self._position(key)
        if position is None:
            return self._others.get(key)
        start = self._ends[position - 1] if position else 0
        identifier = self._ids[start : self._ends[position]].decode("utf-8", "surrogatepass")
        # Validated, not model_construct: the same entry from values of the right types, in native code (once
        # per output line, it is a third cheaper than model_construct's Python loop).
        return IdEntry(recordId=key, id=identifier, line=self._lines[position])

    def _position(self, key: str) -> int | None:
        if not RECORD_ID_PATTERN.fullmatch(key):
            return None
        line = int(key[1:])
        position = bisect_left(self._lines, line)
        return position if position < len(self._lines) and self._lines[position] == line else None


def _made_from_line(key: str, line: int) -> bool:
    try:
        return key == record_id(line)
    except ValueError:  # a line no source file has
        return False


def _entry_fields(data: bytes) -> tuple[str, str, int]:
    """One id-map line's recordId, id and line; the lines prepare wrote skip pydantic's validation, anything
    else goes through it (and fails the run, as a broken id map must)."""
    try:
        value = from_json(data, cache_strings="keys")  # ids are unique: interning them would only cost
    except ValueError:
        value = None
    if (
        type(value) is dict
        and len(value) == 3  # recordId, id and line, and nothing else
        and type(value.get("recordId")) is str
        and type(value.get("id")) is str
        and type(value.get("line")) is int
    ):
        return value["recordId"], value["id"], value["line"]
    entry = IdEntry.model_validate_json(data)
    return entry.recordId, entry.id, entry.line


def _account(unit: Unit, tally: Tally, manifest: dict[str, Any] | None) -> tuple[JobReport | None, list[str]]:
    """The unit's line in the summary's jobs (if it is a job) and what the summary should say about it."""
    differences = reconcile(manifest, unit.record_count, tally) if manifest is not None else []
    reasons = []
    if unit.report and unit.status != "Completed":
        reasons.append(f"{unit.label}: job {unit.status}" + (f": {unit.message}" if unit.message else ""))
    if unit.report and tally.entries != unit.record_count:
        reasons.append(f"{unit.label}: the id map lists {tally.entries} record(s), prepare planned {unit.record_count}")
    if unit.expects_manifest and manifest is None:
        reasons.append(f"{unit.label}: no manifest.json.out to reconcile with")
    reasons.extend(f"{unit.label}: manifest {difference}" for difference in differences)
    reasons.extend(_tally_reasons(unit.label, tally))
    if not unit.report:
        return None, reasons
    report = JobReport(
        index=unit.index,
        jobArn=unit.job_arn,
        status=unit.status,
        message=unit.message,
        recordCount=unit.record_count,
        manifest=manifest,
        manifestMismatch=bool(differences),
    )
    return report, reasons


def _tally_reasons(label: str, tally: Tally) -> list[str]:
    notes = [
        (tally.unreadable, "unreadable output line(s) skipped"),
        (tally.duplicates, "duplicate recordId line(s) ignored (the first one counts)"),
        (tally.unknown, "output line(s) with a recordId not in the id map ignored"),
        (tally.missing, "record(s) without a result"),
    ]
    return [f"{label}: {count} {text}" for count, text in notes if count]


def _tally_counts(tally: Tally) -> dict[str, int]:
    return {
        "ok": tally.ok,
        "error": tally.error,
        "missing": tally.missing,
        "duplicates": tally.duplicates,
        "unknownRecords": tally.unknown,
    }


def _run_reasons(request: CollectInput) -> list[str]:
    if request.error is None:
        return []
    stage = "before its records were prepared" if request.prepared is None else "before it finished"
    return [f"the run failed {stage}: {_error_text(request)}"]


def _count_reasons(totals: Counts, request: CollectInput, run: Run, error_codes: Counter[str]) -> list[str]:
    reasons = []
    if run.path == "empty" or (request.prepared is not None and totals.accepted == 0):
        reasons.append("no valid prompt in the file")
    if run.path == "on_demand" and request.prepared is not None:
        minimum = request.prepared.quotaSource.get("minRecordsPerJob", {}).get("value")
        reasons.append(f"ran on demand: {totals.accepted} record(s), below the batch minimum of {minimum}")
    if totals.rejected:
        reasons.append(f"{totals.rejected} prompt(s) rejected: see {pipeline.rejected_key(run.run_id)}")
    if error_codes:
        listed = ", ".join(f"{code} x{count}" for code, count in error_codes.most_common(5))
        reasons.append(f"results in error or missing, by code: {listed}")
    return list(dict.fromkeys(reasons))


def _created(request: CollectInput) -> int:
    """The `created` of the run's chat.completions: when the execution started (the same on a repeated collect),
    or now when that is not known."""
    try:
        return int(datetime.fromisoformat(request.startedAt or "").timestamp())
    except ValueError:
        return int(time.time())


def _error_text(request: CollectInput) -> str | None:
    """`Error: Cause`, where a Lambda failure's JSON cause is reduced to its type and message."""
    if request.error is None:
        return None
    cause = request.error.Cause or ""
    try:
        parsed = json.loads(cause)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and "errorMessage" in parsed:
        cause = f"{parsed.get('errorType', '')}: {parsed['errorMessage']}".lstrip(": ")
    text = f"{request.error.Error}: {cause}" if cause else request.error.Error
    return text if len(text) <= _MAX_ERROR_TEXT else text[: _MAX_ERROR_TEXT - 1] + "…"


def _summary(
    request: CollectInput,
    run: Run,
    totals: Counts,
    tokens: Tokens,
    jobs: list[JobReport],
    reasons: list[str],
    openai_uris: tuple[str | None, str | None],
) -> Summary:
    finished = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return Summary(
        runId=run.run_id,
        status=run_status(totals.accepted, totals.rejected, totals.ok),
        path=run.path,
        modelId=run.model_id,
        source=SourceRef(bucket=run.bucket, key=run.key, versionId=run.version_id),
        counts=totals,
        tokens=tokens,
        jobs=jobs,
        quotaSource=request.prepared.quotaSource if request.prepared else None,
        timings=Timings(startedAt=request.startedAt, finishedAt=finished),
        reasons=reasons,
        results=pipeline.s3_uri(run.bucket, pipeline.results_key(run.run_id)),
        rejected=pipeline.s3_uri(run.bucket, pipeline.rejected_key(run.run_id)) if totals.rejected else None,
        openaiOutput=openai_uris[0],
        openaiErrors=openai_uris[1],
    )


def _publish(run: Run, summary: Summary, guard: Guard | None) -> None:
    counts = summary.counts
    for name, value in (
        ("RecordsOk", counts.ok),
        ("RecordsError", counts.error),
        ("RecordsMissing", counts.missing),
        ("RecordsRejected", counts.rejected),
        ("RunsFailed", int(summary.status == "FAILED")),
    ):
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    logger.info(
        "run collected",
        run_id=run.run_id,
        status=summary.status,
        path=run.path,
        accepted=counts.accepted,
        ok=counts.ok,
        error=counts.error,
        missing=counts.missing,
        rejected=counts.rejected,
        guardrail_interventions=guard.interventions if guard else None,
    )
