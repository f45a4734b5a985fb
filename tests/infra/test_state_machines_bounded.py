"""Row 25 synth (d): no execution stays open past its timeout, and every Lambda task retries Lambda's own errors.

Checked on every state machine of every synthesized app, the states of Distributed Map children included.
ASL gives a Distributed Map's child workflow no TimeoutSeconds of its own: a Map Run ends with its parent
execution, so the children are bounded by the parent's timeout, and no child state may wait unboundedly
(no callback or `.sync` task without a timeout, no Wait with a computed time).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from tests.infra.cfn import render, resources
from tests.infra.synth import Synthesized

# AWS's recommended Retry for Lambda tasks (bp-lambda-serviceexception), and Lambda throttling.
LAMBDA_SERVICE_ERRORS = frozenset(
    {
        "Lambda.ClientExecutionTimeoutException",
        "Lambda.ServiceException",
        "Lambda.AWSLambdaException",
        "Lambda.SdkClientException",
        "Lambda.TooManyRequestsException",
    }
)
_WAITING_SUFFIXES = (".sync", ".sync:2", ".waitForTaskToken")


def _state_machines(apps: list[Synthesized]) -> Iterator[tuple[str, dict[str, Any], set[str]]]:
    """(stack/logical id, definition, logical ids of the stack's Lambda functions) of every state machine."""
    for app in apps:
        for stack, template in app.templates.items():
            functions = set(resources(template, "AWS::Lambda::Function"))
            for logical_id, machine in resources(template, "AWS::StepFunctions::StateMachine").items():
                definition = json.loads(render(machine["Properties"]["DefinitionString"]))
                yield f"{stack}/{logical_id}", definition, functions


def _states(states: Mapping[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every state, with the states of Map and Parallel branches (Distributed Map children included)."""
    for name, state in states.items():
        yield f"{path}{name}", state
        processor = state.get("ItemProcessor") or state.get("Iterator")
        if processor:
            yield from _states(processor["States"], f"{path}{name}/")
        for index, branch in enumerate(state.get("Branches", [])):
            yield from _states(branch["States"], f"{path}{name}[{index}]/")


def _invokes_lambda(state: Mapping[str, Any], functions: set[str]) -> bool:
    resource = str(state.get("Resource", ""))
    if ":states:::lambda:invoke" in resource:
        return True
    # A function ARN as the Resource (CDK's payload-response-only form): rendered as ${<function>.Arn}.
    return any(resource == f"${{{function}.Arn}}" for function in functions)


@pytest.mark.row(25)
def test_every_state_machine_times_out_and_no_state_waits_unboundedly(synthesized_apps: list[Synthesized]) -> None:
    machines = list(_state_machines(synthesized_apps))
    assert machines
    for name, definition, _ in machines:
        assert isinstance(definition.get("TimeoutSeconds"), int), f"{name} has no TimeoutSeconds"
        assert definition["TimeoutSeconds"] > 0
        for state_name, state in _states(definition["States"]):
            where = f"{name}: {state_name}"
            if state["Type"] == "Wait":
                assert "Seconds" in state, f"{where} waits for a computed time"
            if state["Type"] == "Task" and str(state.get("Resource", "")).endswith(_WAITING_SUFFIXES):
                assert "TimeoutSeconds" in state or "HeartbeatSeconds" in state, f"{where} may wait forever"
            if state["Type"] == "Map":
                mode = state.get("ItemProcessor", {}).get("ProcessorConfig", {}).get("Mode")
                # Children of a Distributed Map run as STANDARD executions bounded by their parent's timeout.
                assert mode in (None, "INLINE", "DISTRIBUTED"), where


@pytest.mark.row(25)
def test_every_lambda_task_retries_lambda_service_errors(synthesized_apps: list[Synthesized]) -> None:
    tasks = [
        (f"{name}: {state_name}", state)
        for name, definition, functions in _state_machines(synthesized_apps)
        for state_name, state in _states(definition["States"])
        if state["Type"] == "Task" and _invokes_lambda(state, functions)
    ]
    assert tasks, "no Lambda task found: the scan no longer recognises them"
    for where, state in tasks:
        retried = {error for retry in state.get("Retry", []) for error in retry["ErrorEquals"]}
        assert retried >= LAMBDA_SERVICE_ERRORS, f"{where} retries {sorted(retried)}"
        # A function error (a bug, a bad input) is not retried: it would fail the same way again.
        assert not retried & {"States.ALL", "States.TaskFailed"}, f"{where} retries every error"
