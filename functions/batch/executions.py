"""The batch pipeline's only Step Functions call site: start one run's execution, idempotently; resume a task."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions import SFNClient


@cache
def client() -> SFNClient:
    """The container's Step Functions client (AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_SFN honoured)."""
    return boto3.client("stepfunctions", config=Config(retries={"mode": "standard", "max_attempts": 5}))


def start(state_machine_arn: str, name: str, payload: str) -> bool:
    """Start the execution `name`; False when it already exists (a duplicate event: nothing to do).

    A Standard state machine is idempotent by name: the same name never runs twice within the 90 days
    Step Functions keeps closed executions.
    """
    sfn = client()
    try:
        sfn.start_execution(stateMachineArn=state_machine_arn, name=name, input=payload)
    except sfn.exceptions.ExecutionAlreadyExists:
        return False
    return True


def resume(task_token: str, output: str) -> bool:
    """SendTaskSuccess: the waiting task goes on with `output`; False when no task waits for this token any more
    (it timed out, it was resumed already, its execution ended: a late or duplicate event, nothing to do).
    """
    sfn = client()
    try:
        sfn.send_task_success(taskToken=task_token, output=output)
    except (sfn.exceptions.TaskDoesNotExist, sfn.exceptions.TaskTimedOut, sfn.exceptions.InvalidToken):
        return False
    return True
