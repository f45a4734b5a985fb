"""The four tasks in the order the state machine runs them, with Bedrock's job API validated by Stubber.

The job step here stands in for the state machine's `aws-sdk:bedrock:createModelInvocationJob` task: it
builds the request from the shard spec exactly as the ASL will, and botocore's Stubber checks it against
the real service model; a fake job then writes output where Bedrock writes it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.stub import Stubber

from batch import collect, prepare, starter
from local.lambda_context import LocalLambdaContext
from tests.functional.batch.harness import ACCOUNT, BUCKET, MODEL_ID, Aws

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics")

_CREATE = botocore.session.get_session().get_service_model("bedrock").operation_model("CreateModelInvocationJob")
_MEMBERS = _CREATE.input_shape.members if _CREATE.input_shape is not None else {}
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/bedrock-batch-service"


def _job_request(shard: dict[str, Any]) -> dict[str, Any]:
    """CreateModelInvocationJob parameters as the state machine builds them from one shard spec."""
    return {
        "jobName": shard["jobName"],
        "roleArn": ROLE_ARN,
        "clientRequestToken": shard["clientRequestToken"],
        "modelId": MODEL_ID,
        "inputDataConfig": {"s3InputDataConfig": {"s3Uri": shard["inputUri"], "s3InputFormat": "JSONL"}},
        "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": shard["outputUri"]}},
        "timeoutDurationInHours": 72,
    }


def _run_job(aws: Aws, shard: dict[str, Any], job_id: str) -> None:
    """What Bedrock does with one job: read the input file, answer every record, write output + manifest."""
    input_key = shard["inputUri"].removeprefix(f"s3://{BUCKET}/")
    output_prefix = shard["outputUri"].removeprefix(f"s3://{BUCKET}/") + f"{job_id}/"
    lines = []
    for record in aws.jsonl(input_key):
        question = record["modelInput"]["messages"][-1]["content"]
        output = {
            "id": "chatcmpl-x",
            "object": "chat.completion",
            "created": 1763751000,
            "model": MODEL_ID,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": f"<reasoning>On {question}.</reasoning>Re: {question}"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
        }
        lines.append(json.dumps({**record, "modelOutput": output}))
    aws.put(output_prefix + "records.jsonl.out", "\n".join(lines) + "\n")
    manifest = {
        "totalRecordCount": len(lines),
        "processedRecordCount": len(lines),
        "successRecordCount": len(lines),
        "errorRecordCount": 0,
        "inputTokenCount": 5 * len(lines),
        "outputTokenCount": 7 * len(lines),
    }
    aws.put(output_prefix + "manifest.json.out", json.dumps(manifest))


def _drop_and_run(
    aws: Aws, lambda_context: LocalLambdaContext, load_event: Callable[[str], Any], key: str, body: bytes | str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Drop a file and run it through starter, prepare, the jobs and collect: (prepared, collect's result)."""
    version = aws.put(key, body)
    event = load_event("batch/sqs_object_created.json")
    message = json.loads(event["Records"][0]["body"])
    message["detail"]["object"].update({"key": key.replace(" ", "+"), "version-id": version})
    event["Records"][0]["body"] = json.dumps(message)

    assert starter.lambda_handler(event, lambda_context) == {"batchItemFailures": []}
    [execution] = aws.executions()
    prepared = prepare.lambda_handler(execution["input"], lambda_context)
    assert prepared["path"] == "batch"

    bedrock = boto3.client("bedrock")
    outcomes = []
    with Stubber(bedrock) as stubber:
        for shard in prepared["shards"]:
            job_id = f"job{shard['index']:09d}"
            request = _job_request(shard)
            for name in ("jobName", "clientRequestToken"):
                assert re.fullmatch(_MEMBERS[name].metadata["pattern"], request[name])
            job_arn = f"arn:aws:bedrock:us-east-1:{ACCOUNT}:model-invocation-job/{job_id}"
            stubber.add_response("create_model_invocation_job", {"jobArn": job_arn}, request)
            created = bedrock.create_model_invocation_job(**request)
            _run_job(aws, shard, job_id)
            outcomes.append({"index": shard["index"], "jobArn": created["jobArn"], "status": "Completed"})
        stubber.assert_no_pending_responses()

    result = collect.lambda_handler(
        {
            "prepared": prepared,
            "shardOutcomes": outcomes,
            "startedAt": "2026-11-21T18:43:50Z",
            "source": execution["input"],
        },
        lambda_context,
    )
    return prepared, result


def test_a_dropped_file_runs_through_batch_jobs_to_a_summary(
    aws: Aws, lambda_context: LocalLambdaContext, load_event: Callable[[str], Any]
) -> None:
    body = "".join(json.dumps({"prompt": f"Ticket {n}", "id": f"T-{n}"}) + "\n" for n in range(1, 11))
    prepared, result = _drop_and_run(aws, lambda_context, load_event, "inbox/support tickets.jsonl", body)

    assert result["status"] == "SUCCEEDED"
    assert result["counts"]["ok"] == result["counts"]["accepted"] == 10
    results = aws.jsonl(f"results/{prepared['runId']}/results.jsonl")
    assert sorted((line["id"], line["answer"]) for line in results) == sorted(
        (f"T-{n}", f"Re: Ticket {n}") for n in range(1, 11)
    )
    summary = json.loads(aws.get(f"results/{prepared['runId']}/summary.json"))
    assert [job["manifestMismatch"] for job in summary["jobs"]] == [False, False]
    assert summary["tokens"] == {"input": 50, "output": 70}


# Issue 13: one line the strict reading refuses (here a lone surrogate escape, the 6 characters \ud800) used
# to fail Prepare with a serialization error, so the run ended FAILED with nothing accepted or rejected.
GOOD = [{"prompt": f"Ticket {n}", "id": f"T-{n}"} for n in range(1, 11)]
LONE_SURROGATE = r'{"prompt": "Ticket \ud800", "id": "T-bad"}'
LINES = [*map(json.dumps, GOOD[:3]), LONE_SURROGATE, *map(json.dumps, GOOD[3:])]  # the bad one is line 4
HOSTILE_FILES = {
    "inbox/tickets.jsonl": "\n".join(LINES) + "\n",
    "inbox/tickets.json": "[\n" + ",\n".join(LINES) + "\n]",
}


@pytest.mark.parametrize("key", list(HOSTILE_FILES))
def test_a_lone_surrogate_line_is_rejected_and_every_other_prompt_answered(
    aws: Aws, lambda_context: LocalLambdaContext, load_event: Callable[[str], Any], key: str
) -> None:
    prepared, result = _drop_and_run(aws, lambda_context, load_event, key, HOSTILE_FILES[key])

    assert result["status"] == "PARTIAL"
    counts = result["counts"]
    assert (counts["accepted"], counts["rejected"], counts["ok"]) == (10, 1, 10)
    results = aws.jsonl(f"results/{prepared['runId']}/results.jsonl")
    assert sorted(line["id"] for line in results) == sorted(prompt["id"] for prompt in GOOD)
    [rejection] = aws.jsonl(f"rejected/{prepared['runId']}/rejected.jsonl")
    assert rejection["line"] == 4
    assert "a lone surrogate escape (\\ud800) is not a character" in rejection["reason"]
