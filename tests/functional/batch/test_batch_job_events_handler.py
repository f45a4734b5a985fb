"""job_events: a job-state event resumes the task whose token is stored under the job's name, and is otherwise
ignored, never an error (moto's S3 and Step Functions; the state machine's side is in
tests/functional/test_batch_job_events.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from botocore.stub import Stubber

from batch import executions, job_events
from batch.settings import BatchSettings
from local.lambda_context import LocalLambdaContext
from shared import pipeline
from tests.functional.batch.harness import BUCKET, Aws

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics")

JOB_NAME = "dev.report-0123456789abcdef01234567-00000"


def state_change(job_name: str = JOB_NAME, **detail: Any) -> dict[str, Any]:
    """An EventBridge event as Bedrock sends it (creationTime not ISO 8601, fields this code does not read)."""
    return {
        "version": "0",
        "id": "0d5b8b2e-0000-0000-0000-000000000000",
        "detail-type": "Batch Inference Job State Change",
        "source": "aws.bedrock",
        "account": "123456789012",
        "time": "2026-12-06T23:00:00Z",
        "region": "us-east-1",
        "resources": ["arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/abcdef123456"],
        "detail": {
            "version": "0.0",
            "accountId": "123456789012",
            "batchJobName": job_name,
            "batchJobArn": "arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/abcdef123456",
            "batchModelId": "openai.gpt-oss-120b-1:0",
            "status": "Completed",
            "failureMessage": "",
            "creationTime": "Aug 28, 2024, 10:47:53 PM",
            **detail,
        },
    }


@pytest.fixture
def settings(batch_env: Callable[..., BatchSettings]) -> BatchSettings:
    return batch_env(BUCKET_NAME=BUCKET)


def test_the_stored_token_is_sent_with_the_events_detail(
    aws: Aws, settings: BatchSettings, lambda_context: LocalLambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    aws.s3.put_object(Bucket=BUCKET, Key=pipeline.job_token_key(JOB_NAME), Body=b'{"taskToken": "token-1"}')
    sent: list[tuple[str, str]] = []

    def resume(token: str, output: str) -> bool:
        sent.append((token, output))
        return True

    monkeypatch.setattr(executions, "resume", resume)

    assert job_events.lambda_handler(state_change(), lambda_context) == {"outcome": "resumed"}

    ((token, output),) = sent
    assert token == "token-1"
    assert json.loads(output) == {
        "batchJobName": JOB_NAME,
        "batchJobArn": "arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/abcdef123456",
        "status": "Completed",
    }


def test_an_event_without_a_stored_token_is_ignored(
    aws: Aws, settings: BatchSettings, lambda_context: LocalLambdaContext
) -> None:
    # Not one of ours, or it came before the shard stored its token (the reconciler's status check covers it).
    assert job_events.lambda_handler(state_change("dev.not-ours-00000"), lambda_context) == {"outcome": "no-token"}


@pytest.mark.parametrize("body", [b"not json", b'{"other": 1}', b'{"taskToken": ""}'])
def test_an_unreadable_token_is_ignored(
    aws: Aws, settings: BatchSettings, lambda_context: LocalLambdaContext, body: bytes
) -> None:
    aws.s3.put_object(Bucket=BUCKET, Key=pipeline.job_token_key(JOB_NAME), Body=body)
    assert job_events.lambda_handler(state_change(), lambda_context) == {"outcome": "no-token"}


@pytest.mark.parametrize("code", ["InvalidToken", "TaskDoesNotExist", "TaskTimedOut"])
def test_a_token_no_task_waits_for_is_ignored(
    aws: Aws, settings: BatchSettings, lambda_context: LocalLambdaContext, code: str
) -> None:
    # A duplicate or late event: Step Functions answers with one of these (botocore's modelled errors).
    aws.s3.put_object(Bucket=BUCKET, Key=pipeline.job_token_key(JOB_NAME), Body=b'{"taskToken": "gone"}')
    with Stubber(executions.client()) as stubber:
        stubber.add_client_error("send_task_success", service_error_code=code, http_status_code=400)
        assert job_events.lambda_handler(state_change(), lambda_context) == {"outcome": "not-waiting"}
        stubber.assert_no_pending_responses()


def test_creation_time_is_never_parsed() -> None:
    event = job_events.JobStateEvent.model_validate(state_change(creationTime="not a date at all"))
    assert event.detail.status == "Completed"
    assert "creationTime" not in event.detail.model_dump(by_alias=True)
