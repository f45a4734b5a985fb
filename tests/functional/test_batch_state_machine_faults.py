"""Row 25 offline (b): the synthesized state machine when its Lambda invocations fail at the Lambda service.

FIS makes invocations fail on a deployed stage; offline, moto's Lambda API answers the state machine's
invoke with a service error (HTTP 5xx, or 429 throttling) before the function runs, which Step Functions
names `Lambda.<code>`. The definition's Retry must absorb it: the run succeeds as if nothing happened,
with exactly one batch job per shard.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from importlib import import_module
from typing import Any

import pytest
from moto.core.exceptions import JsonRESTError

from batch import storage
from local.harness import OfflinePipeline
from shared.pipeline import RECORDS_FILE, shard_label

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics")

_LAMBDA_SIMPLE = "moto.awslambda_simple.models"


class LambdaServiceError(JsonRESTError):
    """An error of the Lambda service itself (not of the function): what `Lambda.<code>` names in Step Functions."""

    def __init__(self, code: str, status: int) -> None:
        super().__init__(code, f"{code} (injected before the function ran)")
        self.code = status


@pytest.fixture
def faults(pipeline: OfflinePipeline, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, list[tuple[str, int]]]]:
    """Handler (e.g. `batch.prepare.lambda_handler`) -> service errors its next invocations get, in order."""
    handlers = {
        pipeline.resolve.name(logical_id): resource["Properties"]["Handler"]
        for logical_id, resource in pipeline.template["Resources"].items()
        if resource["Type"] == "AWS::Lambda::Function" and "Handler" in resource["Properties"]
    }
    pending: dict[str, list[tuple[str, int]]] = {}
    backend = import_module(_LAMBDA_SIMPLE).LambdaSimpleBackend
    installed = backend.invoke  # the in-process invocation local.moto_patches installed

    def invoke(self: Any, function_name: str, *args: Any) -> bytes:
        queued = pending.get(handlers.get(function_name.rsplit(":", 1)[-1], ""), [])
        if queued:
            code, status = queued.pop(0)
            raise LambdaServiceError(code, status)
        result: bytes = installed(self, function_name, *args)
        return result

    monkeypatch.setattr(backend, "invoke", invoke)
    yield pending
    assert all(not queued for queued in pending.values()), f"faults never reached their function: {pending}"


def _failed_invocations(history: list[dict[str, Any]]) -> Counter[str]:
    return Counter(
        event["lambdaFunctionFailedEventDetails"]["error"]
        for event in history
        if event["type"] == "LambdaFunctionFailed"
    )


@pytest.mark.row(25)
def test_lambda_service_errors_are_retried_and_the_run_creates_one_job_per_shard(
    pipeline: OfflinePipeline, faults: dict[str, list[tuple[str, int]]]
) -> None:
    faults["batch.prepare.lambda_handler"] = [("ServiceException", 500)]
    faults["batch.collect.lambda_handler"] = [("TooManyRequestsException", 429), ("ServiceException", 500)]
    prompts = [json.dumps({"id": f"p{n}", "prompt": f"What is {n} squared?"}) for n in range(45)]

    run = pipeline.run("inbox/faulty.jsonl", "".join(f"{line}\n" for line in prompts))

    assert run.status == "SUCCEEDED", (run.error, run.cause)
    assert _failed_invocations(run.history) == Counter(
        {"Lambda.ServiceException": 2, "Lambda.TooManyRequestsException": 1}
    )
    # Each task was entered once: the retries happened inside it, not by running the path again.
    assert run.states_entered() == ["Begin", "Prepare", "Route", "Shards", "Collect", "Ended", "Done"]
    assert run.summary is not None
    assert run.summary["status"] == "SUCCEEDED"
    assert run.summary["counts"]["ok"] == 45
    shards = [job for job in run.summary["jobs"] if job["jobArn"] is not None]
    assert len(shards) == len(run.jobs) == pipeline.bedrock.create_calls == 3
    assert sorted(job.arn for job in run.jobs) == sorted(job["jobArn"] for job in shards)
    assert len({job.request.client_request_token for job in run.jobs}) == 3


# What a newer Lambda runtime reports for a function killed by its timeout; a class of that name makes the
# offline Lambda report it the same way (the error type is the exception's class name). An Exception, not a
# BaseException like tests/functional/batch's kill: the offline Lambda must turn it into a function error,
# and no code on prepare's path catches Exception.
SandboxTimedout = type("Sandbox.Timedout", (Exception,), {"__doc__": "The function's timeout killed it."})


@pytest.mark.row(25)
def test_a_prepare_killed_by_its_timeout_is_run_again_and_writes_the_keys_of_a_clean_run(
    pipeline: OfflinePipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    second_shard = f"/{shard_label(1)}/{RECORDS_FILE}"
    real_write = storage.JsonlWriter.write
    killed: list[str] = []

    def write_until_killed(self: storage.JsonlWriter, line: bytes) -> None:
        # Killed once, part-way through the second shard's records: the first shard is already written.
        if not killed and self.key.endswith(second_shard) and self.lines == 2:
            killed.append(self.key)
            raise SandboxTimedout
        real_write(self, line)

    monkeypatch.setattr(storage.JsonlWriter, "write", write_until_killed)
    prompts = [json.dumps({"id": f"p{n}", "prompt": f"What is {n} squared?"}) for n in range(45)]

    run = pipeline.run("inbox/killed.jsonl", "".join(f"{line}\n" for line in prompts))

    assert killed, "the kill never happened: the shard key layout changed"
    assert run.status == "SUCCEEDED", (run.error, run.cause)
    assert _failed_invocations(run.history) == Counter({"Sandbox.Timedout": 1})
    assert run.summary is not None
    assert run.summary["counts"]["ok"] == 45
    # The re-run wrote the same three shards: one job each.
    assert len(run.jobs) == pipeline.bedrock.create_calls == 3
