"""Bedrock output -> results.jsonl + summary.json, on every path of the run (thin handler + orchestration).

Called last on every path, failures included (`error` set, `prepared` null when prepare failed), so it
never fails on missing pieces: absent output files, manifests, id maps or outcomes become `missing`
records and reasons in the summary. Every accepted prompt gets exactly one results line.

Here: which units to join (every shard, the on-demand output, or the whole id map of a failed run), what the
summary says about each, and the summary itself. Elsewhere: the join of a unit's output with its id map, one
unit at a time with bounded memory (join.py); the guardrail over batch answers with APPLY_GUARDRAIL
(guard.py); results.jsonl and OpenAI's batch output and error files, which the summary names when written
(sinks.py); the per-line rules (results.py).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from batch import bedrock, storage
from batch.guard import Guard
from batch.join import harvest
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
from batch.results import OpenAIBatchOutput, ResultError, Tally, missing_reason, reconcile, run_status
from batch.settings import BatchSettings
from batch.sinks import OpenAIFiles, Sink
from shared import pipeline
from shared.observability import MetricUnit, logger, metrics
from shared.settings import load_settings
from shared.tracing import tracer

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
        tallies = [
            (unit, harvest(run.bucket, run.key, unit.ids_key, unit.output_prefix, unit.missing, sink.add))
            for unit in units
        ]
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
