"""Row 25 against a deployed fault-injection stage: AWS FIS breaks the pipeline's invocations.

The chat function is not under FIS: it streams its response, and the FIS Lambda extension cannot be used with
response streaming (AWS FIS user guide, "Use the AWS FIS aws:lambda:function actions", Limitations). Its
faults are covered offline (tests/local/test_gateway_faults.py: 502 and 504 in the OpenAI envelope).

Deploy a non-production stage with the FIS extension (published per Region; for arm64:
`aws ssm get-parameter --name /aws/service/fis/lambda-extension/AWS-FIS-extension-arm64/1.x.x`):

    npx --yes aws-cdk@2 deploy --all -c stage=faults -c faultInjection=true -c fisExtensionLayerArn=<arn>

Environment: GPTOSS_FIS_BATCH_STACK (the batch stack's name), GPTOSS_FIS_PROMPTS
(prompts in the dropped file, default 120: at least the batch minimum, so the run submits batch jobs),
GPTOSS_FIS_RUN_TIMEOUT_SECONDS (how long to wait for that run, default 6 h: a batch job takes hours),
GPTOSS_FIS_ALARM_TIMEOUT_SECONDS (default 600). The experiments last 5 minutes (EXPERIMENT_DURATION in
infra/constructs/fault_injection.py) and are stopped when a test ends.

Offline halves: tests/local/test_gateway_faults.py (502 and 504 in the OpenAI envelope),
tests/functional/test_batch_state_machine_faults.py (Lambda service errors retried, one job per shard),
tests/functional/batch/test_batch_prepare_killed.py (a converter killed mid-run, then re-run) and
tests/infra/test_state_machines_bounded.py (timeouts and Lambda retries of every state machine).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta

import boto3
import pytest

from batch.names import job_name, run_id
from tests.e2e.deployed import env_number, now, stack_outputs

pytestmark = [pytest.mark.e2e, pytest.mark.enable_socket]


@contextmanager
def experiment(template_id: str) -> Iterator[str]:
    """Run one FIS experiment for the block (waits until it runs; always stopped at the end)."""
    fis = boto3.client("fis")
    experiment_id = fis.start_experiment(experimentTemplateId=template_id)["experiment"]["id"]
    try:
        deadline = time.monotonic() + 120
        while fis.get_experiment(id=experiment_id)["experiment"]["state"]["status"] != "running":
            assert time.monotonic() < deadline, fis.get_experiment(id=experiment_id)["experiment"]["state"]
            time.sleep(5)
        # The extension polls its configuration: give it time to see the experiment.
        time.sleep(30)
        yield experiment_id
    finally:
        state = fis.get_experiment(id=experiment_id)["experiment"]["state"]["status"]
        if state in ("pending", "initiating", "running"):
            fis.stop_experiment(id=experiment_id)


@pytest.mark.row(25)
def test_a_run_under_failing_invocations_recovers_with_one_job_per_shard_and_nothing_left_open(
    record_property: Callable[[str, object], None],
) -> None:
    outputs = stack_outputs("GPTOSS_FIS_BATCH_STACK", "a batch stack deployed with faultInjection=true")
    bucket, machine = outputs["BucketName"], outputs["StateMachineArn"]
    s3, sfn = boto3.client("s3"), boto3.client("stepfunctions")
    count = int(env_number("GPTOSS_FIS_PROMPTS", 120))
    body = "".join(json.dumps({"id": f"q{n}", "prompt": f"What is {n} plus {n}?"}) + "\n" for n in range(count))
    key = f"inbox/fis-{int(time.time())}.jsonl"
    with experiment(outputs["FisPipelineInvocationErrorTemplateId"]):
        version = s3.put_object(Bucket=bucket, Key=key, Body=body.encode())["VersionId"]
        run = run_id(bucket, key, version)
        execution_arn = f"{machine.replace(':stateMachine:', ':execution:')}:{run}"
        # The starter itself is under fault: SQS redelivers until it starts the run.
        deadline = time.monotonic() + 600
        while True:
            try:
                sfn.describe_execution(executionArn=execution_arn)
                break
            except sfn.exceptions.ExecutionDoesNotExist:
                assert time.monotonic() < deadline, "the run never started"
                time.sleep(15)

    deadline = time.monotonic() + env_number("GPTOSS_FIS_RUN_TIMEOUT_SECONDS", 6 * 3600)
    while (execution := sfn.describe_execution(executionArn=execution_arn))["status"] == "RUNNING":
        assert time.monotonic() < deadline, "the run is still open"
        time.sleep(60)
    record_property("status", execution["status"])
    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    summary = json.loads(s3.get_object(Bucket=bucket, Key=f"results/{run}/summary.json")["Body"].read())
    assert summary["status"] == "SUCCEEDED", summary.get("reasons")
    shards = [job for job in summary["jobs"] if job["jobArn"] is not None]
    assert shards, "the run took no batch path: drop at least the batch minimum of prompts"
    # Exactly one Bedrock job per shard, whatever was retried.
    prefix = job_name(run, 0).rsplit("-", 1)[0]
    bedrock = boto3.client("bedrock")
    jobs = [
        job
        for page in bedrock.get_paginator("list_model_invocation_jobs").paginate(nameContains=prefix)
        for job in page["invocationJobSummaries"]
    ]
    assert sorted(job["jobArn"] for job in jobs) == sorted(job["jobArn"] for job in shards)
    _assert_nothing_open_past_its_timeout(machine)


def _assert_nothing_open_past_its_timeout(machine: str) -> None:
    """Every execution still running started less than the state machine's timeout ago."""
    client = boto3.client("stepfunctions")
    timeout = json.loads(client.describe_state_machine(stateMachineArn=machine)["definition"])["TimeoutSeconds"]
    for page in client.get_paginator("list_executions").paginate(stateMachineArn=machine, statusFilter="RUNNING"):
        for running in page["executions"]:
            assert running["startDate"] + timedelta(seconds=timeout) > now(), running["executionArn"]
