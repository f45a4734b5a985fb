"""Bedrock's job-state events resume the waiting shard (issue 15): executed offline through the real state machine.

FakeBedrock emits a "Batch Inference Job State Change" event to moto's EventBridge when a job reaches a terminal
status; the template's rule matches it (source, detail-type, terminal status, the stage's job-name prefix) and
the harness hands it to the rule's Lambda target, the real job_events handler, which sends the task token the
shard's AwaitJob stored. The reconcile interval (AwaitJob's TimeoutSeconds, 3,600 s) lasts
`moto_patches.task_timeout_seconds` of real time offline.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from local import moto_patches
from local.bedrock.batch_jobs import JobScenario
from local.harness import OfflinePipeline
from tests.functional.conftest import OFFLINE_STAGE

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics")

TOKENS_PREFIX = "work/job-tokens/"
# Long enough that a run resumed by its event never reaches the reconciler's status check.
LONG_RECONCILE_SECONDS = 120.0


def prompts(count: int) -> str:
    return "".join(json.dumps({"id": f"p{n}", "prompt": f"What is {n} squared?"}) + "\n" for n in range(count))


@pytest.fixture
def long_reconcile() -> Iterator[None]:
    before = moto_patches.task_timeout_seconds
    moto_patches.task_timeout_seconds = LONG_RECONCILE_SECONDS
    try:
        yield
    finally:
        moto_patches.task_timeout_seconds = before


def _await_token(pipeline: OfflinePipeline, timeout: float = 60.0) -> str:
    """The job name whose task token a shard stored (once the shard waits for its event)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        keys = pipeline.s3.list_objects_v2(Bucket=pipeline.bucket, Prefix=TOKENS_PREFIX).get("Contents", [])
        if keys:
            return str(keys[0]["Key"]).removeprefix(TOKENS_PREFIX)
        time.sleep(0.02)
    raise TimeoutError("no shard stored its task token")


def _event_run(pipeline: OfflinePipeline) -> tuple[str, float]:
    """Drop a one-shard file whose job only ends when told; end it once the shard waits; the run id and the
    seconds from the job's end to the end of the run."""
    pipeline.bedrock.scenario = lambda _request: JobScenario(polls=10_000)  # status checks never end it
    drop = pipeline.drop("inbox/events.jsonl", prompts(6))
    assert drop.run_id is not None
    job_name = _await_token(pipeline)
    (job,) = pipeline.bedrock.jobs.values()
    assert job.request.job_name == job_name
    ended = time.monotonic()
    pipeline.bedrock.finish(job.arn)
    run = pipeline.wait(drop.run_id)
    assert run.status == "SUCCEEDED", (run.error, run.cause)
    assert run.summary is not None and run.summary["counts"]["ok"] == 6
    return drop.run_id, time.monotonic() - ended


def test_the_jobs_event_resumes_its_shard_within_seconds(pipeline: OfflinePipeline, long_reconcile: None) -> None:
    _, seconds = _event_run(pipeline)

    assert seconds < LONG_RECONCILE_SECONDS / 4  # resumed by the event, not by the reconciler
    assert pipeline.event_answers == [{"outcome": "resumed"}]
    (job,) = pipeline.bedrock.jobs.values()
    assert job.request.job_name.startswith(f"{OFFLINE_STAGE}.")
    (event,) = pipeline.bedrock.events
    assert json.loads(event["Detail"])["status"] == "Completed"


def test_a_lost_event_is_reconciled_by_the_status_check(pipeline: OfflinePipeline) -> None:
    pipeline.bedrock.emit_events = False
    moto_patches.task_timeouts.clear()

    run = pipeline.run("inbox/lost.jsonl", prompts(6))

    assert run.status == "SUCCEEDED", (run.error, run.cause)
    assert run.summary is not None and run.summary["counts"]["ok"] == 6
    assert pipeline.event_answers == []
    assert moto_patches.task_timeouts  # the reconcile interval ran out, then GetJob read the status


def test_a_duplicate_event_is_ignored(pipeline: OfflinePipeline, long_reconcile: None) -> None:
    run_id, _ = _event_run(pipeline)
    summary_key = f"results/{run_id}/summary.json"
    before = pipeline.s3.get_object(Bucket=pipeline.bucket, Key=summary_key)["Body"].read()

    (event,) = pipeline.bedrock.events
    assert pipeline.publish(event) == [{"outcome": "not-waiting"}]

    assert pipeline.s3.get_object(Bucket=pipeline.bucket, Key=summary_key)["Body"].read() == before
    assert pipeline.wait(run_id).status == "SUCCEEDED"


def test_events_of_jobs_that_are_not_ours_are_ignored(pipeline: OfflinePipeline) -> None:
    def event(job_name: str) -> dict[str, object]:
        detail = {
            "version": "0.0",
            "accountId": "123456789012",
            "batchJobName": job_name,
            "batchJobArn": "arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/abcdef123456",
            "batchModelId": "openai.gpt-oss-120b-1:0",
            "status": "Completed",
            "failureMessage": "",
            "creationTime": "Aug 28, 2024, 10:47:53 PM",
        }
        return {"Source": "aws.bedrock", "DetailType": "Batch Inference Job State Change", "Detail": json.dumps(detail)}

    # Another stage's or team's job: the rule does not match it (its name lacks this stage's prefix).
    assert pipeline.publish(event("another-team-job-00000")) == []
    assert pipeline.publish(event(f"{OFFLINE_STAGE}x.report-00000")) == []
    # A name with our prefix but no shard waiting for it: read, logged, ignored.
    assert pipeline.publish(event(f"{OFFLINE_STAGE}.unknown-0123456789abcdef01234567-00000")) == [
        {"outcome": "no-token"}
    ]
