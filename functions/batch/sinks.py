"""Where a run's results go: results.jsonl, and OpenAI's batch output file and error file.

Every result is written to results.jsonl and to one of the OpenAI files (results.OpenAIBatchOutput: an answer to
`openai-output.jsonl`, an error or a missing result to `openai-errors.jsonl`, where the run's rejected lines,
streamed from rejected/, go too). Either OpenAI file is written only when it has a line. With a guard, answers
go through it in chunks before they are written (guard.py).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from batch import storage
from batch.guard import Guard
from batch.join import MAX_OUTPUT_LINE_BYTES
from batch.jsonl import encode
from batch.records import Rejection
from batch.results import OpenAIBatchOutput, Result, Tally
from shared import pipeline

# Answers guarded per batch of concurrent ApplyGuardrail calls.
GUARD_CHUNK = 64


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
