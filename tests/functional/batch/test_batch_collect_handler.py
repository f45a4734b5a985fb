"""Collect: every path and job status ends in results.jsonl + summary.json accounting for every prompt."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from openai.types.chat import ChatCompletion
from pydantic import ValidationError

from batch import collect, on_demand, prepare
from batch.names import record_id, run_id
from batch.settings import BatchSettings
from local.lambda_context import LocalLambdaContext
from tests.functional.batch.harness import (
    BUCKET,
    GUARDRAIL_ID,
    GUARDRAIL_VERSION,
    Aws,
    FakeBedrock,
    converse_body,
    emitted_metrics,
)

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics")

EVENTS = Path(__file__).resolve().parents[2] / "events" / "batch"
STARTED = "2026-11-21T18:43:50.123Z"
JOB_ID = "k3xq9w2m7zp1"
JOB_ARN = f"arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/{JOB_ID}"


def _prepared(aws: Aws, context: LocalLambdaContext, count: int, key: str = "inbox/run.jsonl", extra: str = "") -> Any:
    body = "".join(json.dumps({"prompt": f"prompt {n}", "id": f"p{n}"}) + "\n" for n in range(1, count + 1))
    version = aws.put(key, body + extra)
    event = {"bucket": BUCKET, "key": key, "versionId": version, "runId": run_id(BUCKET, key, version)}
    return prepare.lambda_handler(event, context)


def _source(prepared: dict[str, Any]) -> dict[str, Any]:
    return {
        "bucket": prepared["bucket"],
        "key": prepared["sourceKey"],
        "versionId": prepared["sourceVersionId"],
        "runId": prepared["runId"],
    }


def _success(rid: str, answer: str = "An answer.", finish: str = "stop") -> dict[str, Any]:
    return {
        "recordId": rid,
        "modelInput": {"messages": [{"role": "user", "content": "q"}], "max_completion_tokens": 256},
        "modelOutput": {
            "id": f"chatcmpl-{rid}",
            "object": "chat.completion",
            "created": 1763751000,
            "model": "openai.gpt-oss-120b-1:0",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": f"<reasoning>Reasoning {rid}.</reasoning>{answer}"},
                    "finish_reason": finish,
                }
            ],
            "usage": {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30},
        },
    }


def _write_output(
    aws: Aws, prepared: dict[str, Any], shard: int, lines: list[bytes], manifest: dict[str, Any] | None = None
) -> None:
    prefix = f"bedrock-output/{prepared['runId']}/shard-{shard:05d}/{JOB_ID}/"
    aws.put(prefix + "records.jsonl.out", b"".join(line if line.endswith(b"\n") else line + b"\n" for line in lines))
    if manifest is not None:
        aws.put(prefix + "manifest.json.out", json.dumps(manifest))


def _collect(
    prepared: dict[str, Any] | None,
    context: LocalLambdaContext,
    *,
    outcomes: list[dict[str, Any]] | None = None,
    error: dict[str, str] | None = None,
    on_demand_result: dict[str, Any] | None = None,
    source: dict[str, Any] | None = None,
) -> dict[str, Any]:
    event = {
        "prepared": prepared,
        "shardOutcomes": outcomes,
        "onDemand": on_demand_result,
        "error": error,
        "startedAt": STARTED,
        "source": source or (_source(prepared) if prepared else None),
    }
    result: dict[str, Any] = collect.lambda_handler(event, context)
    return result


def _summary(aws: Aws, run: str) -> dict[str, Any]:
    summary: dict[str, Any] = json.loads(aws.get(f"results/{run}/summary.json"))
    return summary


def _results(aws: Aws, run: str) -> dict[str, dict[str, Any]]:
    lines = aws.jsonl(f"results/{run}/results.jsonl")
    by_id = {line["recordId"]: line for line in lines}
    assert len(by_id) == len(lines), "one line per prompt"
    return by_id


def _completed(index: int = 0, status: str = "Completed", message: str | None = None) -> dict[str, Any]:
    return {"index": index, "jobArn": JOB_ARN, "status": status, "message": message}


def test_a_completed_job_with_real_shaped_output(
    aws: Aws, lambda_context: LocalLambdaContext, capsys: pytest.CaptureFixture[str]
) -> None:
    prepared = _prepared(aws, lambda_context, 5)
    run = prepared["runId"]
    _write_output(
        aws,
        prepared,
        0,
        (EVENTS / "bedrock_output_records.jsonl.out").read_bytes().splitlines(),
        json.loads((EVENTS / "bedrock_output_manifest.json.out").read_text()),
    )
    capsys.readouterr()

    result = _collect(prepared, lambda_context, outcomes=[_completed()])

    counts = {"accepted": 5, "rejected": 0, "ok": 2, "error": 2, "missing": 1, "duplicates": 0, "unknownRecords": 0}
    assert result == {
        "runId": run,
        "status": "PARTIAL",
        "path": "batch",
        "counts": counts,
        "summary": f"s3://{BUCKET}/results/{run}/summary.json",
        "results": f"s3://{BUCKET}/results/{run}/results.jsonl",
    }
    results = _results(aws, run)
    assert results[record_id(3)] == {
        "id": "p3",
        "recordId": record_id(3),
        "source": {"key": "inbox/run.jsonl", "line": 3},
        "status": "ok",
        "answer": "Red leaves drift and fall",
        "reasoning": "The user asks for a haiku about autumn.",
        "finish_reason": "stop",
        "usage": {"prompt_tokens": 21, "completion_tokens": 48, "total_tokens": 69},
        "error": None,
    }
    assert results[record_id(1)]["answer"] == "4"
    assert results[record_id(2)]["status"] == "error"
    assert results[record_id(2)]["error"]["code"] == "400"
    assert results[record_id(2)]["error"]["message"].startswith("Malformed input request")
    assert results[record_id(5)]["status"] == "error"
    assert results[record_id(5)]["error"]["code"] == "TokenLimitBeforeAnswer"
    assert results[record_id(5)]["finish_reason"] == "length"
    assert results[record_id(4)]["status"] == "missing"
    assert results[record_id(4)]["error"]["code"] == "NotInOutput"
    summary = _summary(aws, run)
    assert summary["counts"] == counts
    assert summary["tokens"] == {"input": 64, "output": 326}
    assert summary["jobs"] == [
        {
            "index": 0,
            "jobArn": JOB_ARN,
            "status": "Completed",
            "message": None,
            "recordCount": 5,
            "manifest": json.loads((EVENTS / "bedrock_output_manifest.json.out").read_text()),
            "manifestMismatch": False,
        }
    ]
    assert summary["source"] == {"bucket": BUCKET, "key": "inbox/run.jsonl", "versionId": prepared["sourceVersionId"]}
    assert summary["timings"]["startedAt"] == STARTED
    assert summary["timings"]["finishedAt"].endswith("Z")
    assert summary["quotaSource"] == prepared["quotaSource"]
    assert summary["rejected"] is None
    assert "shard 0: 1 record(s) without a result" in summary["reasons"]
    assert emitted_metrics(capsys.readouterr().out) == {
        "RecordsOk": 2.0,
        "RecordsError": 2.0,
        "RecordsMissing": 1.0,
        "RecordsRejected": 0.0,
        "RunsFailed": 0.0,
    }


def test_every_prompt_answered_and_none_rejected_is_success(aws: Aws, lambda_context: LocalLambdaContext) -> None:
    prepared = _prepared(aws, lambda_context, 4)
    lines = [json.dumps(_success(record_id(n))).encode() for n in (4, 2, 1, 3)]
    _write_output(aws, prepared, 0, lines, {"totalRecordCount": 4, "successRecordCount": 4, "errorRecordCount": 0})
    result = _collect(prepared, lambda_context, outcomes=[_completed()])
    assert result["status"] == "SUCCEEDED"
    assert {line["status"] for line in _results(aws, prepared["runId"]).values()} == {"ok"}
    assert _summary(aws, prepared["runId"])["reasons"] == []


def test_rejected_prompts_make_a_full_success_partial(aws: Aws, lambda_context: LocalLambdaContext) -> None:
    prepared = _prepared(aws, lambda_context, 3, extra='{"prompt": ""}\n')
    _write_output(aws, prepared, 0, [json.dumps(_success(record_id(n))).encode() for n in (1, 2, 3)])
    result = _collect(prepared, lambda_context, outcomes=[_completed()])
    assert (result["status"], result["counts"]["rejected"]) == ("PARTIAL", 1)
    summary = _summary(aws, prepared["runId"])
    assert summary["rejected"] == f"s3://{BUCKET}/rejected/{prepared['runId']}/rejected.jsonl"
    assert "shard 0: no manifest.json.out to reconcile with" in summary["reasons"]


@pytest.mark.parametrize(
    ("status", "message", "answered", "code", "run_status"),
    [
        ("PartiallyCompleted", None, 3, "NotProcessed", "PARTIAL"),
        ("Stopped", None, 2, "JobStopped", "PARTIAL"),
        ("Expired", None, 0, "JobExpired", "FAILED"),
        ("Failed", "Input file is not valid JSONL.", 0, "JobFailed", "FAILED"),
        ("PollLimit", None, 1, "PollLimit", "PARTIAL"),
    ],
)
def test_job_statuses_keep_billed_output_and_name_the_missing(
    aws: Aws,
    lambda_context: LocalLambdaContext,
    status: str,
    message: str | None,
    answered: int,
    code: str,
    run_status: str,
) -> None:
    prepared = _prepared(aws, lambda_context, 5)
    _write_output(aws, prepared, 0, [json.dumps(_success(record_id(n))).encode() for n in range(1, answered + 1)])
    result = _collect(prepared, lambda_context, outcomes=[_completed(status=status, message=message)])
    assert result["status"] == run_status
    assert (result["counts"]["ok"], result["counts"]["missing"]) == (answered, 5 - answered)
    results = _results(aws, prepared["runId"])
    missing = [line for line in results.values() if line["status"] == "missing"]
    assert {line["error"]["code"] for line in missing} == ({code} if missing else set())
    summary = _summary(aws, prepared["runId"])
    assert summary["jobs"][0]["status"] == status
    assert f"shard 0: job {status}" + (f": {message}" if message else "") in summary["reasons"]


def test_a_job_that_could_not_be_created(aws: Aws, lambda_context: LocalLambdaContext) -> None:
    prepared = _prepared(aws, lambda_context, 3)
    outcome = {"index": 0, "jobArn": None, "status": "SubmitFailed", "message": "ServiceQuotaExceededException"}
    result = _collect(prepared, lambda_context, outcomes=[outcome])
    assert (result["status"], result["counts"]["missing"]) == ("FAILED", 3)
    line = _results(aws, prepared["runId"])[record_id(1)]
    assert line["error"] == {
        "code": "SubmitFailed",
        "message": "the batch job could not be created: ServiceQuotaExceededException",
    }
    assert _summary(aws, prepared["runId"])["jobs"][0]["jobArn"] is None


def test_one_shard_failing_does_not_discard_the_others(
    aws: Aws, lambda_context: LocalLambdaContext, capsys: pytest.CaptureFixture[str]
) -> None:
    prepared = _prepared(aws, lambda_context, 10)
    assert [shard["recordCount"] for shard in prepared["shards"]] == [5, 5]
    _write_output(aws, prepared, 0, [json.dumps(_success(record_id(n))).encode() for n in range(1, 6)])
    capsys.readouterr()
    outcomes = [_completed(0), {"index": 1, "jobArn": None, "status": "Failed", "message": "boom"}]
    result = _collect(prepared, lambda_context, outcomes=outcomes)
    assert result["status"] == "PARTIAL"
    assert (result["counts"]["ok"], result["counts"]["missing"]) == (5, 5)
    assert [job["status"] for job in _summary(aws, prepared["runId"])["jobs"]] == ["Completed", "Failed"]
    assert emitted_metrics(capsys.readouterr().out)["RecordsMissing"] == 5.0


def test_a_run_that_failed_around_its_jobs_still_harvests_their_output(
    aws: Aws, lambda_context: LocalLambdaContext
) -> None:
    prepared = _prepared(aws, lambda_context, 4)
    _write_output(aws, prepared, 0, [json.dumps(_success(record_id(n))).encode() for n in (1, 2)])
    error = {"Error": "States.Timeout", "Cause": "The execution timed out."}
    result = _collect(prepared, lambda_context, outcomes=None, error=error)
    assert (result["status"], result["counts"]["ok"], result["counts"]["missing"]) == ("PARTIAL", 2, 2)
    line = _results(aws, prepared["runId"])[record_id(3)]
    assert line["error"] == {
        "code": "RunFailed",
        "message": "the run failed before this record had a result: States.Timeout: The execution timed out.",
    }
    summary = _summary(aws, prepared["runId"])
    assert summary["jobs"][0]["status"] == "Unknown"
    assert "the run failed before it finished: States.Timeout: The execution timed out." in summary["reasons"]


@pytest.mark.row(23)
def test_damaged_output_is_tolerated_and_reported(aws: Aws, lambda_context: LocalLambdaContext) -> None:
    prepared = _prepared(aws, lambda_context, 5)
    lines = [
        json.dumps(_success(record_id(4))).encode(),
        json.dumps({**_success(record_id(2)), "someNewField": {"x": 1}}).encode(),
        json.dumps(_success(record_id(4), answer="Second copy.")).encode(),
        json.dumps(_success("R99999999999")).encode(),
        json.dumps({"recordId": record_id(1), "error": {"errorCode": 500, "errorMessage": "Internal error"}}).encode(),
        json.dumps(_success(record_id(5))).encode()[:60],
    ]
    manifest = {"totalRecordCount": 5, "processedRecordCount": 4, "successRecordCount": 3, "errorRecordCount": 1}
    _write_output(aws, prepared, 0, lines, manifest)
    result = _collect(prepared, lambda_context, outcomes=[_completed()])
    assert result["counts"] == {
        "accepted": 5,
        "rejected": 0,
        "ok": 2,
        "error": 1,
        "missing": 2,
        "duplicates": 1,
        "unknownRecords": 1,
    }
    results = _results(aws, prepared["runId"])
    assert results[record_id(4)]["answer"] == "An answer."
    summary = _summary(aws, prepared["runId"])
    assert summary["jobs"][0]["manifestMismatch"] is True
    assert summary["reasons"] == [
        "shard 0: manifest processedRecordCount is 4, the output has 5",
        "shard 0: manifest successRecordCount is 3, the output has 4",
        "shard 0: 1 unreadable output line(s) skipped",
        "shard 0: 1 duplicate recordId line(s) ignored (the first one counts)",
        "shard 0: 1 output line(s) with a recordId not in the id map ignored",
        "shard 0: 2 record(s) without a result",
        "results in error or missing, by code: NotInOutput x2, 500 x1",
    ]


def test_prepare_failing_before_any_file_ends_failed_with_its_reason(
    aws: Aws, lambda_context: LocalLambdaContext, load_event: Callable[[str], Any], capsys: pytest.CaptureFixture[str]
) -> None:
    event = load_event("batch/collect_input_prepare_failed.json")
    run = event["source"]["runId"]
    capsys.readouterr()
    result = collect.lambda_handler(event, lambda_context)
    assert result["status"] == "FAILED"
    assert result["path"] is None
    assert result["counts"]["accepted"] == 0
    summary = _summary(aws, run)
    assert summary["reasons"] == [
        f"the run failed before its records were prepared: SourceMissing: SourceMissing: the source of run {run} "
        "no longer exists"
    ]
    assert summary["jobs"] == []
    assert summary["quotaSource"] is None
    assert aws.get(f"results/{run}/results.jsonl") == b""
    assert (summary["openaiOutput"], summary["openaiErrors"]) == (None, None)
    assert aws.list_keys(f"results/{run}/openai-") == []
    assert emitted_metrics(capsys.readouterr().out)["RunsFailed"] == 1.0


def test_prepare_failing_after_conversion_reports_every_prompt_missing(
    aws: Aws, lambda_context: LocalLambdaContext, batch_env: Callable[..., BatchSettings]
) -> None:
    batch_env(MAX_FILE_BYTES="450")  # two records of 203 bytes per file at most, three needed per job
    key = "inbox/infeasible.jsonl"
    body = "".join(json.dumps({"prompt": "x" * 90}) + "\n" for _ in range(6)) + "not json\n"
    version = aws.put(key, body)
    source = {"bucket": BUCKET, "key": key, "versionId": version, "runId": run_id(BUCKET, key, version)}
    with pytest.raises(Exception, match="fewer than 3 records per job") as raised:
        prepare.lambda_handler(source, lambda_context)
    error = {"Error": type(raised.value).__name__, "Cause": json.dumps({"errorMessage": str(raised.value)})}
    result = _collect(None, lambda_context, error=error, source=source)
    assert result["counts"] == {
        "accepted": 6,
        "rejected": 1,
        "ok": 0,
        "error": 0,
        "missing": 6,
        "duplicates": 0,
        "unknownRecords": 0,
    }
    assert result["status"] == "FAILED"
    line = _results(aws, source["runId"])[record_id(1)]
    assert line["error"]["code"] == "RunFailed"
    assert "InfeasiblePlan" in line["error"]["message"]
    errors = aws.jsonl(f"results/{source['runId']}/openai-errors.jsonl")
    assert [error["error"]["code"] for error in errors] == ["RunFailed"] * 6 + ["invalid_request"]
    assert errors[-1]["error"]["message"].startswith("line 7: invalid JSON")


@pytest.mark.row(18)
def test_a_file_without_prompts_ends_empty_and_failed(aws: Aws, lambda_context: LocalLambdaContext) -> None:
    prepared = _prepared(aws, lambda_context, 0, extra="\n{oops\n")
    assert prepared["path"] == "empty"
    result = _collect(prepared, lambda_context)
    assert (result["status"], result["path"], result["counts"]["rejected"]) == ("FAILED", "empty", 1)
    summary = _summary(aws, prepared["runId"])
    assert summary["reasons"][:1] == ["no valid prompt in the file"]
    assert summary["jobs"] == []


@pytest.mark.row(19)
def test_the_on_demand_path_end_to_end(
    aws: Aws, lambda_context: LocalLambdaContext, bedrock: FakeBedrock, batch_env: Callable[..., BatchSettings]
) -> None:
    batch_env(APPLY_GUARDRAIL="true")  # on-demand answers were guarded by Converse: no second check
    prepared = _prepared(aws, lambda_context, 2)
    bedrock.stubber.add_response("converse", converse_body("First."))
    bedrock.stubber.add_client_error("converse", service_error_code="ValidationException", http_status_code=400)
    bedrock.stubber.activate()
    on_demand_result = on_demand.lambda_handler(prepared, lambda_context)

    result = _collect(prepared, lambda_context, on_demand_result=on_demand_result)

    assert (result["status"], result["path"]) == ("PARTIAL", "on_demand")
    results = _results(aws, prepared["runId"])
    assert (results[record_id(1)]["answer"], results[record_id(1)]["reasoning"]) == ("First.", "Thinking it over.")
    assert results[record_id(2)]["error"] == {
        "code": "400",
        "message": "ValidationException: Bedrock rejected the request as invalid",
    }
    summary = _summary(aws, prepared["runId"])
    [job] = summary["jobs"]
    assert (job["status"], job["manifestMismatch"], job["recordCount"]) == ("Completed", False, 2)
    assert "ran on demand: 2 record(s), below the batch minimum of 3" in summary["reasons"]


def test_a_failed_on_demand_task_leaves_every_prompt_missing(aws: Aws, lambda_context: LocalLambdaContext) -> None:
    prepared = _prepared(aws, lambda_context, 2)
    error = {"Error": "Lambda.Unknown", "Cause": "The function timed out."}
    result = _collect(prepared, lambda_context, error=error)
    assert (result["status"], result["counts"]["missing"]) == ("FAILED", 2)
    assert _summary(aws, prepared["runId"])["jobs"][0]["status"] == "Failed"


def test_the_guardrail_checks_batch_answers(
    aws: Aws, lambda_context: LocalLambdaContext, bedrock: FakeBedrock, batch_env: Callable[..., BatchSettings]
) -> None:
    batch_env(APPLY_GUARDRAIL="true")
    prepared = _prepared(aws, lambda_context, 3)
    _write_output(aws, prepared, 0, [json.dumps(_success(record_id(n), f"Answer {n}.")).encode() for n in (1, 2, 3)])

    def expected(n: int) -> dict[str, Any]:
        texts = [f"Answer {n}.", f"Reasoning {record_id(n)}."]
        return {
            "guardrailIdentifier": GUARDRAIL_ID,
            "guardrailVersion": GUARDRAIL_VERSION,
            "source": "OUTPUT",
            "content": [{"text": {"text": text}} for text in texts],
        }

    usage = dict.fromkeys(
        (
            "topicPolicyUnits",
            "contentPolicyUnits",
            "wordPolicyUnits",
            "sensitiveInformationPolicyUnits",
            "sensitiveInformationPolicyFreeUnits",
            "contextualGroundingPolicyUnits",
        ),
        1,
    )
    passed = {"usage": usage, "action": "NONE", "outputs": [], "assessments": []}
    bedrock.stubber.add_response("apply_guardrail", passed, expected(1))
    blocked = {"usage": usage, "action": "GUARDRAIL_INTERVENED", "outputs": [{"text": "Sorry, blocked."}]}
    bedrock.stubber.add_response("apply_guardrail", {**blocked, "assessments": []}, expected(2))
    for _ in range(2):  # BEDROCK_MAX_ATTEMPTS
        bedrock.stubber.add_client_error(
            "apply_guardrail", service_error_code="ThrottlingException", http_status_code=429
        )
    bedrock.stubber.activate()

    result = _collect(prepared, lambda_context, outcomes=[_completed()])

    results = _results(aws, prepared["runId"])
    assert (results[record_id(1)]["status"], results[record_id(1)]["answer"]) == ("ok", "Answer 1.")
    assert results[record_id(2)] | {"usage": None} == {
        "id": "p2",
        "recordId": record_id(2),
        "source": {"key": "inbox/run.jsonl", "line": 2},
        "status": "ok",
        "answer": "Sorry, blocked.",
        "reasoning": None,
        "finish_reason": "content_filter",
        "usage": None,
        "error": None,
    }
    assert results[record_id(3)]["status"] == "error"
    assert results[record_id(3)]["answer"] is None
    assert results[record_id(3)]["error"]["code"] == "GuardrailUnavailable"
    assert (result["counts"]["ok"], result["counts"]["error"]) == (2, 1)
    openai = {line["custom_id"]: line for line in aws.jsonl(f"results/{prepared['runId']}/openai-output.jsonl")}
    assert set(openai) == {"p1", "p2"}  # the withheld answer is in the error file
    guarded = openai["p2"]["response"]["body"]["choices"][0]
    assert guarded["finish_reason"] == "content_filter"
    assert guarded["message"] == {"role": "assistant", "content": "Sorry, blocked."}
    [withheld] = aws.jsonl(f"results/{prepared['runId']}/openai-errors.jsonl")
    assert (withheld["custom_id"], withheld["error"]["code"]) == ("p3", "GuardrailUnavailable")


def test_reasoning_is_left_out_unless_asked_for(
    aws: Aws, lambda_context: LocalLambdaContext, batch_env: Callable[..., BatchSettings]
) -> None:
    batch_env(RETURN_REASONING="false")
    prepared = _prepared(aws, lambda_context, 3)
    _write_output(aws, prepared, 0, [json.dumps(_success(record_id(n))).encode() for n in (1, 2, 3)])
    _collect(prepared, lambda_context, outcomes=[_completed()])
    assert all("reasoning" not in line for line in _results(aws, prepared["runId"]).values())
    openai = aws.jsonl(f"results/{prepared['runId']}/openai-output.jsonl")
    assert [set(line["response"]["body"]["choices"][0]["message"]) for line in openai] == [{"role", "content"}] * 3


def test_collect_is_repeatable(aws: Aws, lambda_context: LocalLambdaContext) -> None:
    prepared = _prepared(aws, lambda_context, 4)
    _write_output(aws, prepared, 0, [json.dumps(_success(record_id(n))).encode() for n in (3, 1)])
    first = _collect(prepared, lambda_context, outcomes=[_completed()])
    files = [
        f"results/{prepared['runId']}/{name}"
        for name in ("results.jsonl", "openai-output.jsonl", "openai-errors.jsonl")
    ]
    written = [aws.get(key) for key in files]
    assert _collect(prepared, lambda_context, outcomes=[_completed()]) == first
    assert [aws.get(key) for key in files] == written


def test_collect_needs_to_know_the_run(lambda_context: LocalLambdaContext, aws: Aws) -> None:
    with pytest.raises(ValidationError, match="collect needs"):
        collect.lambda_handler({"prepared": None, "startedAt": STARTED}, lambda_context)
    with pytest.raises(ValidationError, match="status"):
        collect.lambda_handler(
            {
                "source": json.loads((EVENTS / "run_input.json").read_text()),
                "shardOutcomes": [{"index": 0, "status": "Done"}],
            },
            lambda_context,
        )


def test_a_vanished_id_map_is_reported_not_hidden(aws: Aws, lambda_context: LocalLambdaContext) -> None:
    prepared = _prepared(aws, lambda_context, 10)
    _write_output(aws, prepared, 0, [json.dumps(_success(record_id(n))).encode() for n in range(1, 6)])
    _write_output(aws, prepared, 1, [json.dumps(_success(record_id(n))).encode() for n in range(6, 11)])
    aws.s3.delete_object(Bucket=BUCKET, Key=f"work/{prepared['runId']}/idmap/shard-00001.jsonl")
    result = _collect(prepared, lambda_context, outcomes=[_completed(0), _completed(1)])
    assert (result["counts"]["accepted"], result["counts"]["unknownRecords"]) == (5, 5)
    reasons = _summary(aws, prepared["runId"])["reasons"]
    assert "shard 1: the id map lists 0 record(s), prepare planned 5" in reasons


# --- OpenAI's batch output format ---------------------------------------------------------------------------


def _openai_request(custom_id: str, url: str = "/v1/chat/completions") -> str:
    body = {"model": "gpt-oss-120b", "messages": [{"role": "user", "content": f"Question {custom_id}?"}]}
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": url, "body": body}) + "\n"


def test_answers_errors_and_rejections_land_in_openais_output_and_error_files(
    aws: Aws, lambda_context: LocalLambdaContext
) -> None:
    key = "inbox/openai.jsonl"
    lines = [_openai_request(f"req-{n}") for n in range(1, 6)]
    lines += [_openai_request("req-6", url="/v1/embeddings"), _openai_request("req-1")]
    version = aws.put(key, "".join(lines))
    event = {"bucket": BUCKET, "key": key, "versionId": version, "runId": run_id(BUCKET, key, version)}
    prepared = prepare.lambda_handler(event, lambda_context)
    run = prepared["runId"]
    answers = [json.dumps(_success(record_id(n), f"Answer {n}.")).encode() for n in (3, 1, 2)]
    failed = json.dumps({"recordId": record_id(4), "error": {"errorCode": 400, "errorMessage": "Bad input"}}).encode()
    _write_output(aws, prepared, 0, [*answers, failed])  # record 5 has no output line

    result = _collect(prepared, lambda_context, outcomes=[_completed()])

    counts = result["counts"]
    assert (counts["ok"], counts["error"], counts["missing"], counts["rejected"]) == (3, 1, 1, 2)
    output = aws.jsonl(f"results/{run}/openai-output.jsonl")
    assert [line["custom_id"] for line in output] == ["req-3", "req-1", "req-2"]  # output order
    for line in output:
        number = line["custom_id"].removeprefix("req-")
        assert line["error"] is None
        assert line["response"]["status_code"] == 200
        completion = ChatCompletion.model_validate(line["response"]["body"])
        assert completion.model == "openai.gpt-oss-120b-1:0"
        assert completion.created == 1_795_286_630  # when the run started (STARTED)
        assert completion.choices[0].message.content == f"Answer {number}."
        assert line["response"]["body"]["choices"][0]["message"]["reasoning_content"] == (
            f"Reasoning {record_id(int(number))}."
        )
        assert completion.usage is not None
        assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (10, 20)
    errors = aws.jsonl(f"results/{run}/openai-errors.jsonl")
    assert [(line["custom_id"], line["response"], line["error"]["code"]) for line in errors] == [
        ("req-4", None, "400"),
        ("req-5", None, "NotInOutput"),
        ("req-6", None, "invalid_request"),
        ("req-1", None, "invalid_request"),
    ]
    assert errors[2]["error"]["message"] == (
        "line 6: url: only /v1/chat/completions is supported, got '/v1/embeddings'"
    )
    assert errors[3]["error"]["message"] == "line 7: custom_id 'req-1' duplicates line 1"
    ids = [line["id"] for line in output + errors]
    assert len(set(ids)) == len(ids) == 7
    assert all(identifier.startswith("batch_req_") for identifier in ids)
    summary = _summary(aws, run)
    assert summary["openaiOutput"] == f"s3://{BUCKET}/results/{run}/openai-output.jsonl"
    assert summary["openaiErrors"] == f"s3://{BUCKET}/results/{run}/openai-errors.jsonl"


def test_an_openai_file_without_lines_is_not_written(aws: Aws, lambda_context: LocalLambdaContext) -> None:
    answered = _prepared(aws, lambda_context, 3)
    _write_output(aws, answered, 0, [json.dumps(_success(record_id(n))).encode() for n in (1, 2, 3)])
    unanswered = _prepared(aws, lambda_context, 3, key="inbox/unanswered.jsonl")

    _collect(answered, lambda_context, outcomes=[_completed()])
    _collect(unanswered, lambda_context, outcomes=[_completed(status="Failed", message="boom")])

    run = answered["runId"]
    assert aws.list_keys(f"results/{run}/openai-") == [f"results/{run}/openai-output.jsonl"]
    summary = _summary(aws, run)
    assert (summary["openaiOutput"], summary["openaiErrors"]) == (
        f"s3://{BUCKET}/results/{run}/openai-output.jsonl",
        None,
    )
    run = unanswered["runId"]
    assert aws.list_keys(f"results/{run}/openai-") == [f"results/{run}/openai-errors.jsonl"]
    summary = _summary(aws, run)
    assert (summary["openaiOutput"], summary["openaiErrors"]) == (
        None,
        f"s3://{BUCKET}/results/{run}/openai-errors.jsonl",
    )
    assert [line["error"]["code"] for line in aws.jsonl(f"results/{run}/openai-errors.jsonl")] == ["JobFailed"] * 3
