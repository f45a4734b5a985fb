"""On demand: guarded Converse per record, output in Bedrock's batch format, failures as error lines."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from batch import on_demand, prepare
from batch.names import record_id, run_id
from batch.settings import BatchSettings
from local.lambda_context import LocalLambdaContext
from tests.functional.batch.harness import (
    BUCKET,
    GUARDRAIL_ID,
    GUARDRAIL_VERSION,
    MODEL_ID,
    Aws,
    FakeBedrock,
    batch_context,
    converse_body,
)

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics")


def _prepared(aws: Aws, context: LocalLambdaContext, *prompts: dict[str, Any]) -> dict[str, Any]:
    key = "inbox/few.jsonl"
    version = aws.put(key, "".join(json.dumps(prompt) + "\n" for prompt in prompts))
    event = {"bucket": BUCKET, "key": key, "versionId": version, "runId": run_id(BUCKET, key, version)}
    prepared: dict[str, Any] = prepare.lambda_handler(event, context)
    assert prepared["path"] == "on_demand"
    return prepared


def _output(aws: Aws, prepared: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    prefix = f"bedrock-output/{prepared['runId']}/on-demand/"
    lines = aws.jsonl(prefix + "records.jsonl.out")
    manifest = json.loads(aws.get(prefix + "manifest.json.out"))
    return lines, manifest


def test_records_are_answered_through_guarded_converse_in_batch_output_format(
    aws: Aws, bedrock: FakeBedrock, lambda_context: LocalLambdaContext
) -> None:
    prepared = _prepared(
        aws,
        lambda_context,
        {"prompt": "Capital of France?", "system": "Answer in one word.", "temperature": 0.1},
        {"messages": [{"role": "user", "content": "2 + 2?"}], "max_completion_tokens": 64, "reasoning_effort": "low"},
    )
    guardrail = {"guardrailIdentifier": GUARDRAIL_ID, "guardrailVersion": GUARDRAIL_VERSION}
    bedrock.stubber.add_response(
        "converse",
        converse_body("Paris.", reasoning="The capital of France is Paris."),
        {
            "modelId": MODEL_ID,
            "system": [{"text": "Answer in one word."}],
            "messages": [{"role": "user", "content": [{"text": "Capital of France?"}]}],
            "inferenceConfig": {"maxTokens": 256, "temperature": 0.1},
            "guardrailConfig": guardrail,
        },
    )
    bedrock.stubber.add_response(
        "converse",
        converse_body("4", reasoning=None),
        {
            "modelId": MODEL_ID,
            "messages": [{"role": "user", "content": [{"text": "2 + 2?"}]}],
            "inferenceConfig": {"maxTokens": 64},
            "additionalModelRequestFields": {"reasoning_effort": "low"},
            "guardrailConfig": guardrail,
        },
    )
    bedrock.stubber.activate()

    result = on_demand.lambda_handler(prepared, lambda_context)

    assert result == {"outputUri": f"s3://{BUCKET}/bedrock-output/{prepared['runId']}/on-demand/"}
    lines, manifest = _output(aws, prepared)
    assert [line["recordId"] for line in lines] == [record_id(1), record_id(2)]
    first = lines[0]["modelOutput"]
    assert first["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "<reasoning>The capital of France is Paris.</reasoning>Paris."},
            "finish_reason": "stop",
        }
    ]
    assert first["usage"] == {"prompt_tokens": 10, "completion_tokens": 9, "total_tokens": 19}
    assert lines[1]["modelOutput"]["choices"][0]["message"]["content"] == "4"
    assert lines[0]["modelInput"]["messages"][0] == {"role": "system", "content": "Answer in one word."}
    assert manifest == {
        "totalRecordCount": 2,
        "processedRecordCount": 2,
        "successRecordCount": 2,
        "errorRecordCount": 0,
        "inputTokenCount": 20,
        "outputTokenCount": 18,
    }


def test_a_throttled_record_becomes_an_error_line_not_a_crash(
    aws: Aws, bedrock: FakeBedrock, lambda_context: LocalLambdaContext, batch_env: Callable[..., BatchSettings]
) -> None:
    batch_env(ON_DEMAND_CONCURRENCY="2")
    prepared = _prepared(aws, lambda_context, {"prompt": "busy"}, {"prompt": "fine"})

    def respond(body: dict[str, Any], _: int) -> tuple[int, dict[str, Any]]:
        if body["messages"][0]["content"][0]["text"] == "busy":
            return 429, {"__type": "ThrottlingException", "message": "Too many requests, please wait."}
        return 200, converse_body("ok")

    bedrock.answer("Converse", respond)
    on_demand.lambda_handler(prepared, lambda_context)

    lines, manifest = _output(aws, prepared)
    by_id = {line["recordId"]: line for line in lines}
    assert by_id[record_id(1)]["error"] == {
        "errorCode": 429,
        "errorMessage": "ThrottlingException: Bedrock throttled the request",
    }
    assert "modelOutput" not in by_id[record_id(1)]
    assert by_id[record_id(2)]["modelOutput"]["choices"][0]["message"]["content"].endswith("ok")
    # The gateway retried the throttled call once (BEDROCK_MAX_ATTEMPTS), then gave up.
    assert sum(body["messages"][0]["content"][0]["text"] == "busy" for body in bedrock.requests) == 2
    assert (manifest["successRecordCount"], manifest["errorRecordCount"]) == (1, 1)


def test_unusable_model_output_is_an_error_line(
    aws: Aws, bedrock: FakeBedrock, lambda_context: LocalLambdaContext
) -> None:
    prepared = _prepared(aws, lambda_context, {"prompt": "x"})
    bedrock.stubber.add_response("converse", converse_body("??", stop_reason="malformed_model_output"))
    bedrock.stubber.activate()
    on_demand.lambda_handler(prepared, lambda_context)
    [line], _ = _output(aws, prepared)
    assert line["error"]["errorCode"] == 424


def test_records_left_when_time_runs_out_are_error_lines(
    aws: Aws, bedrock: FakeBedrock, lambda_context: LocalLambdaContext
) -> None:
    prepared = _prepared(aws, lambda_context, {"prompt": "a"}, {"prompt": "b"})
    bedrock.stubber.activate()  # nothing queued: any call would fail the test
    on_demand.lambda_handler(prepared, batch_context(remaining_ms=9_000))
    lines, manifest = _output(aws, prepared)
    assert [line["error"]["errorCode"] for line in lines] == [408, 408]
    assert lines[0]["error"]["errorMessage"].startswith("NotAttempted: ")
    assert manifest["errorRecordCount"] == 2


def test_only_on_demand_runs_and_only_with_a_guardrail(
    aws: Aws, bedrock: FakeBedrock, lambda_context: LocalLambdaContext, batch_env: Callable[..., BatchSettings]
) -> None:
    prepared = _prepared(aws, lambda_context, {"prompt": "a"})
    with pytest.raises(on_demand.NotOnDemand):
        on_demand.lambda_handler({**prepared, "path": "empty"}, lambda_context)
    batch_env(GUARDRAIL_VERSION="")
    with pytest.raises(on_demand.NotConfigured):
        on_demand.lambda_handler(prepared, lambda_context)
