"""What the batch functions' tests share besides fixtures: constants, moto helpers, a fake Bedrock runtime."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.awsrequest import AWSPreparedRequest
from botocore.stub import Stubber

from local.lambda_context import LocalLambdaContext
from shared.converse import ConverseGateway
from shared.model_stand_in import wire_response

if TYPE_CHECKING:
    from mypy_boto3_bedrock_runtime import BedrockRuntimeClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_stepfunctions import SFNClient

BUCKET = "gpt-oss-batch-drop"
ACCOUNT = "123456789012"
STATE_MACHINE_NAME = "BatchPipeline"
STATE_MACHINE_ARN = f"arn:aws:states:us-east-1:{ACCOUNT}:stateMachine:{STATE_MACHINE_NAME}"
MODEL_ID = "openai.gpt-oss-120b-1:0"
GUARDRAIL_ID = "gr7abc123xyz"
GUARDRAIL_VERSION = "2"

# Small quotas so that a handful of prompts exercises every path: < 3 records on demand, else batch with
# at most 6 records per job.
BATCH_ENVIRONMENT = {
    "MODEL_ID": MODEL_ID,
    "STATE_MACHINE_ARN": STATE_MACHINE_ARN,
    "GUARDRAIL_ID": GUARDRAIL_ID,
    "GUARDRAIL_VERSION": GUARDRAIL_VERSION,
    "DEFAULT_MAX_COMPLETION_TOKENS": "256",
    "MIN_RECORDS_PER_JOB": "3",
    "MAX_RECORDS_PER_JOB": "6",
    "MAX_RECORDS_PER_FILE": "6",
    "MAX_FILE_BYTES": "1000000",
    "MAX_JOB_BYTES": "5000000",
    "MAX_RECORD_BYTES": "4096",
    "READ_SERVICE_QUOTAS": "false",
    "ON_DEMAND_CONCURRENCY": "1",
    "BEDROCK_MAX_ATTEMPTS": "2",
    "RETURN_REASONING": "true",
    "APPLY_GUARDRAIL": "false",
}


def batch_context(remaining_ms: int = 600_000) -> LocalLambdaContext:
    """A batch function's context with a fixed budget."""
    return LocalLambdaContext.fixed("batch-function", remaining_ms=remaining_ms)


@dataclass
class Aws:
    """moto's S3 bucket and state machine, with helpers the tests read and write through."""

    s3: S3Client
    sfn: SFNClient
    bucket: str = BUCKET

    def put(self, key: str, body: bytes | str) -> str:
        """Upload a file; returns its version id."""
        data = body.encode() if isinstance(body, str) else body
        return self.s3.put_object(Bucket=self.bucket, Key=key, Body=data)["VersionId"]

    def get(self, key: str) -> bytes:
        """An object's bytes."""
        return self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def jsonl(self, key: str) -> list[dict[str, Any]]:
        """An object's JSON lines."""
        return [json.loads(line) for line in self.get(key).splitlines() if line.strip()]

    def list_keys(self, prefix: str = "") -> list[str]:
        """Every key under a prefix."""
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]

    def snapshot(self, prefix: str) -> dict[str, bytes]:
        """Every object under a prefix, by key."""
        return {key: self.get(key) for key in self.list_keys(prefix)}

    def executions(self) -> list[dict[str, Any]]:
        """The state machine's executions with their parsed input."""
        found = self.sfn.list_executions(stateMachineArn=STATE_MACHINE_ARN)["executions"]
        described = [self.sfn.describe_execution(executionArn=item["executionArn"]) for item in found]
        return [{"name": item["name"], "input": json.loads(item["input"])} for item in described]


Responder = Callable[[dict[str, Any], int], tuple[int, dict[str, Any]]]


@dataclass
class FakeBedrock:
    """A real bedrock-runtime client (one attempt per call, as the gateway's) answered offline.

    `stubber` (activate it after queueing) answers in queue order and validates each request against
    the service model; `answer` installs a responder called with the parsed request body where the HTTP
    request would leave, so botocore's real error parsing and the gateway's own retries run.
    """

    client: BedrockRuntimeClient
    stubber: Stubber
    requests: list[dict[str, Any]] = field(default_factory=list)

    def gateway(self) -> ConverseGateway:
        """A gateway that uses this client, with near-zero backoff."""
        return ConverseGateway(max_attempts=2, backoff_base=0.001, backoff_cap=0.002, clients=lambda _: self.client)

    def answer(self, operation: str, responder: Responder) -> None:
        """Answer every `operation` request with `responder(body, attempt)` -> (status, body)."""
        attempts = {"count": 0}

        def send(request: AWSPreparedRequest, **_: Any) -> Any:
            attempts["count"] += 1
            raw = request.body if isinstance(request.body, bytes | str) else b"{}"
            body = json.loads(raw or b"{}")
            self.requests.append(body)
            status, payload = responder(body, attempts["count"])
            headers = (
                {"x-amzn-ErrorType": f"{payload['__type']}:http://internal.amazon.com/coral/com.amazon.bedrock/"}
                if status >= 400
                else {}
            )
            return wire_response(request.url, status, json.dumps(payload).encode(), headers)

        self.client.meta.events.register(f"before-send.bedrock-runtime.{operation}", send)


def converse_body(
    text: str, *, reasoning: str | None = "Thinking it over.", stop_reason: str = "end_turn", tokens: int = 9
) -> dict[str, Any]:
    """A Converse response body of gpt-oss."""
    content: list[dict[str, Any]] = [{"reasoningContent": {"reasoningText": {"text": reasoning}}}] if reasoning else []
    content.append({"text": text})
    return {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop_reason,
        "usage": {"inputTokens": 10, "outputTokens": tokens, "totalTokens": 10 + tokens},
        "metrics": {"latencyMs": 120},
    }


def emitted_metrics(output: str) -> dict[str, float]:
    """The metric values of the EMF blobs Powertools printed."""
    found: dict[str, float] = {}
    for line in output.splitlines():
        try:
            blob = json.loads(line)
        except ValueError:
            continue
        if isinstance(blob, dict) and "_aws" in blob:
            for metric in blob["_aws"]["CloudWatchMetrics"][0]["Metrics"]:
                value = blob[metric["Name"]]
                found[metric["Name"]] = float(sum(value) if isinstance(value, list) else value)
    return found
