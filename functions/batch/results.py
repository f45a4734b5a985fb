"""One line of Bedrock batch output -> one result; the run's counts and status (pure).

A result is `ok`, `error` (Bedrock's errorCode / errorMessage, or ours) or `missing` (with the reason). An
output line that is not a JSON object with a string recordId (a truncated last line) is unreadable; unknown
fields are ignored. join.py joins the lines with the id map.

A result is written twice, from the same Result: as a results.jsonl line (`Result.to_json`) and as an
object of OpenAI's batch output format (`OpenAIBatchOutput`), which rejected lines get too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, get_args

from pydantic_core import from_json

from batch.models import JobStatus, RunStatus
from batch.names import request_digest
from batch.records import IdEntry, Rejection
from shared.gpt_oss import FinishReason, split_reasoning

Status = Literal["ok", "error", "missing"]
MAX_MESSAGE_CHARS = 1000
EMPTY_ANSWER_CODE = "TokenLimitBeforeAnswer"
MALFORMED_CODE = "MalformedOutput"
REJECTED_CODE = "invalid_request"
_OPENAI_FINISH_REASONS = frozenset(get_args(FinishReason))


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one record (OpenAI names)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


@dataclass(frozen=True, slots=True)
class ResultError:
    """Why a record has no answer."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class OutputLine:
    """One readable line of a `.jsonl.out` file."""

    record_id: str
    succeeded: bool  # a modelOutput line, as Bedrock counts it (successRecordCount)
    answer: str | None = None
    reasoning: str | None = None
    finish_reason: str | None = None
    usage: Usage | None = None
    error: ResultError | None = None


@dataclass(frozen=True, slots=True)
class Result:
    """One line of results.jsonl."""

    entry: IdEntry
    source_key: str
    status: Status
    answer: str | None = None
    reasoning: str | None = None
    finish_reason: str | None = None
    usage: Usage | None = None
    error: ResultError | None = None

    def to_json(self, *, with_reasoning: bool) -> dict[str, Any]:
        """The results.jsonl object (`reasoning` only when asked for)."""
        line: dict[str, Any] = {
            "id": self.entry.id,
            "recordId": self.entry.recordId,
            "source": {"key": self.source_key, "line": self.entry.line},
            "status": self.status,
            "answer": self.answer,
        }
        if with_reasoning:
            line["reasoning"] = self.reasoning
        line["finish_reason"] = self.finish_reason
        line["usage"] = None if self.usage is None else _usage_json(self.usage)
        line["error"] = None if self.error is None else {"code": self.error.code, "message": self.error.message}
        return line

    def guarded(self, answer: str) -> Result:
        """This result after a guardrail intervention: the guardrail's text replaces the answer, and the
        reasoning (which may hold what the guardrail objected to) is dropped."""
        return replace(self, answer=answer, reasoning=None, finish_reason="content_filter")

    def withheld(self, error: ResultError) -> Result:
        """This result when its answer may not be shown (the guardrail could not be applied)."""
        return replace(self, status="error", answer=None, reasoning=None, error=error)


@dataclass(frozen=True, slots=True)
class OpenAIBatchOutput:
    """The objects of OpenAI's batch output format for one run: a chat.completion for each answer (the output
    file), an error for each other result and each rejected line (the error file).

    Ids are derived from the run and the record (or line), and `created` is given, so a repeated collect
    writes the same bytes.
    """

    run_id: str
    model: str
    created: int
    with_reasoning: bool

    def result(self, result: Result) -> dict[str, Any]:
        """The output object of one result: its chat.completion when it has an answer (status ok), else its error."""
        digest = request_digest(self.run_id, result.entry.recordId)
        if result.status != "ok":
            error = result.error or ResultError("Unknown", "no answer")
            return _openai_error(digest, result.entry.id, error.code, error.message)
        message = {"role": "assistant", "content": result.answer or ""}
        if self.with_reasoning and result.reasoning:
            message["reasoning_content"] = result.reasoning  # the field the chat API uses
        # OpenAI's schema knows no other finish reason (and Bedrock's gpt-oss output uses these).
        finish = result.finish_reason if result.finish_reason in _OPENAI_FINISH_REASONS else "stop"
        body = {
            "id": f"chatcmpl-{digest}",
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": None if result.usage is None else _usage_json(result.usage),
        }
        response = {"status_code": 200, "request_id": f"{self.run_id}/{result.entry.recordId}", "body": body}
        return {"id": f"batch_req_{digest}", "custom_id": result.entry.id, "response": response, "error": None}

    def rejection(self, rejection: Rejection) -> dict[str, Any]:
        """The error object of a rejected line."""
        digest = request_digest(self.run_id, f"line-{rejection.line}")
        return _openai_error(digest, rejection.id, REJECTED_CODE, f"line {rejection.line}: {rejection.reason}")


def _openai_error(digest: str, custom_id: str | None, code: str, message: str) -> dict[str, Any]:
    return {
        "id": f"batch_req_{digest}",
        "custom_id": custom_id,
        "response": None,
        "error": {"code": code, "message": message},
    }


@dataclass(slots=True)
class Tally:
    """What one output file set contained, for counts and the manifest reconciliation."""

    entries: int = 0  # records in the id map joined against
    ok: int = 0
    error: int = 0
    missing: int = 0
    duplicates: int = 0
    unknown: int = 0
    unreadable: int = 0
    success_lines: int = 0
    error_lines: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    seen: set[str] = field(default_factory=set)

    def count(self, result: Result) -> None:
        """Add one result to the status counters and the token totals."""
        if result.status == "ok":
            self.ok += 1
        elif result.status == "error":
            self.error += 1
        else:
            self.missing += 1
        if result.usage is not None:
            self.input_tokens += result.usage.prompt_tokens
            self.output_tokens += result.usage.completion_tokens


def parse_line(data: bytes) -> OutputLine | None:
    """Read one output line; None when it is not a JSON object with a string recordId (e.g. truncated)."""
    try:
        # pydantic-core's parser: json.loads's values, several times faster. Only keys are interned: values
        # (answers, ids) seldom repeat, and looking each one up in the cache costs more than it saves.
        value = from_json(data, cache_strings="keys")
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, dict) or not isinstance(value.get("recordId"), str):
        return None
    record_id: str = value["recordId"]
    output, error = value.get("modelOutput"), value.get("error")
    if isinstance(output, dict):
        return _from_model_output(record_id, output)
    if error is not None:
        return OutputLine(record_id, succeeded=False, error=_bedrock_error(error))
    return OutputLine(record_id, succeeded=False, error=ResultError(MALFORMED_CODE, "neither modelOutput nor error"))


def answered(entry: IdEntry, source_key: str, line: OutputLine) -> Result:
    """The result of an entry that an output line answers (ok, or Bedrock's error)."""
    return Result(
        entry=entry,
        source_key=source_key,
        status="error" if line.error is not None else "ok",
        answer=line.answer,
        reasoning=line.reasoning,
        finish_reason=line.finish_reason,
        usage=line.usage,
        error=line.error,
    )


def missing_reason(status: JobStatus | None, message: str | None, run_error: str | None = None) -> ResultError:
    """Why records of a job have no output line, from how the job (or the run) ended."""
    detail = f": {message}" if message else ""
    reasons: dict[str | None, ResultError] = {
        "Completed": ResultError("NotInOutput", "the job completed without a result for this record"),
        "PartiallyCompleted": ResultError("NotProcessed", "the job ended PartiallyCompleted before this record"),
        "Failed": ResultError("JobFailed", f"the batch job failed{detail}"),
        "Stopped": ResultError("JobStopped", "the batch job was stopped before this record"),
        "Expired": ResultError("JobExpired", "the batch job expired before this record was processed"),
        "SubmitFailed": ResultError("SubmitFailed", f"the batch job could not be created{detail}"),
        "PollLimit": ResultError("PollLimit", "the run stopped waiting for the batch job (poll limit reached)"),
        "PollFailed": ResultError("PollFailed", f"the run could not read the batch job's status{detail}"),
    }
    if status is None:
        why = f": {run_error}" if run_error else ""
        return ResultError("RunFailed", _clip(f"the run failed before this record had a result{why}"))
    return replace(reasons[status], message=_clip(reasons[status].message))


def reconcile(manifest: Mapping[str, Any], record_count: int, tally: Tally) -> list[str]:
    """Where a `manifest.json.out` disagrees with the input and the output lines actually read."""
    ours = {
        "totalRecordCount": record_count,
        "processedRecordCount": tally.success_lines + tally.error_lines,
        "successRecordCount": tally.success_lines,
        "errorRecordCount": tally.error_lines,
    }
    return [
        f"{name} is {manifest[name]}, the output has {count}"
        for name, count in ours.items()
        if isinstance(manifest.get(name), int) and manifest[name] != count
    ]


def run_status(accepted: int, rejected: int, ok: int) -> RunStatus:
    """SUCCEEDED: every prompt answered and none rejected; FAILED: no answer at all; else PARTIAL."""
    if ok == 0:
        return "FAILED"
    return "SUCCEEDED" if ok == accepted and rejected == 0 else "PARTIAL"


def _from_model_output(record_id: str, output: Mapping[str, Any]) -> OutputLine:
    choice = _first_choice(output)
    message = choice.get("message")
    content = _text(message.get("content")) if isinstance(message, dict) else None
    if not isinstance(message, dict) or content is None:
        return OutputLine(record_id, succeeded=True, error=ResultError(MALFORMED_CODE, "no message content"))
    reasoning, answer = split_reasoning(content)
    extra = message.get("reasoning_content")
    if isinstance(extra, str) and extra.strip():
        reasoning = "\n\n".join(part for part in (extra.strip(), reasoning) if part)
    finish = choice.get("finish_reason")
    finish_reason = finish if isinstance(finish, str) else None
    usage = _usage(output.get("usage"))
    if not answer.strip() and finish_reason == "length":
        error = ResultError(
            EMPTY_ANSWER_CODE,
            "max_completion_tokens ran out before the model answered (reasoning spends them): raise it",
        )
        return OutputLine(record_id, True, None, reasoning, finish_reason, usage, error)
    return OutputLine(record_id, True, answer, reasoning, finish_reason, usage)


def _first_choice(output: Mapping[str, Any]) -> Mapping[str, Any]:
    choices = output.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        return choices[0]
    return {}


def _text(content: Any) -> str | None:
    if isinstance(content, str):
        return content
    if isinstance(content, list) and content:
        texts = [part.get("text") if isinstance(part, dict) else None for part in content]
        strings = [text for text in texts if isinstance(text, str)]
        if len(strings) == len(texts):
            return "".join(strings)
    return None


def _usage(value: Any) -> Usage | None:
    if not isinstance(value, dict):
        return None
    return Usage(
        _token_count(value.get("prompt_tokens")),
        _token_count(value.get("completion_tokens")),
        _token_count(value.get("total_tokens")),
    )


def _token_count(number: Any) -> int:
    """A count as Bedrock gave it, or 0 when it is missing, not an integer or negative."""
    return number if isinstance(number, int) and number >= 0 else 0


def _usage_json(usage: Usage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


def _bedrock_error(error: Any) -> ResultError:
    if isinstance(error, dict):
        return ResultError(str(error.get("errorCode", "Unknown")), _clip(str(error.get("errorMessage", ""))))
    return ResultError("Unknown", _clip(str(error)))


def _clip(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 1] + "…"
