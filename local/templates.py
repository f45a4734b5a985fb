"""The synthesized app as the local runner reads it: each stack's template, the chat function and the batch stack."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The chat function's handler: the script the Lambda Web Adapter runs (infra/constructs/chat_api.py gives CDK the same;
# a test checks it).
CHAT_HANDLER = "chat/run.sh"
Template = dict[str, Any]


def synthesize(
    context: Mapping[str, Any] | None = None, *, checks: bool = False, outdir: Path | None = None
) -> dict[str, Template]:
    """Each stack's template by stack name, synthesized as `cdk synth` does (cdk.json's context, then `context`).

    The cloud assembly goes to `outdir` (by default a temporary folder). cdk-nag's checks run only with `checks` (any
    unacknowledged finding then fails the synthesis, as with `cdk synth`): reading templates does not need them.
    """
    # jsii prints a Node.js end-of-life banner on Node 20 unless told not to; it reads this when aws_cdk loads.
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    from infra.app_builder import build_app, cli_context

    with tempfile.TemporaryDirectory(prefix="gpt-oss-synth-") as temporary:
        app = build_app({**cli_context(), **(context or {})}, outdir=str(outdir or temporary))
        return {stack.stack_name: stack.template for stack in app.synth(skip_validation=not checks).stacks}


def load_template(path: Path) -> Template:
    """A template written by `cdk synth` or `python -m local synth` (e.g. cdk.out/GptOssChat-dev.template.json)."""
    template: Template = json.loads(path.read_text())
    return template


def chat_template(templates: Mapping[str, Template]) -> Template:
    """The template of the stack that holds the chat function.

    Raises:
        ValueError: no template, or more than one, holds it.
    """
    holding = [template for template in templates.values() if _chat_functions(template)]
    if len(holding) != 1:
        raise ValueError(f"expected one stack with the chat function ({CHAT_HANDLER}), found {len(holding)}")
    return holding[0]


def batch_template(templates: Mapping[str, Template]) -> Template:
    """The template of the stack that holds the batch pipeline (its state machine).

    Raises:
        ValueError: no template, or more than one, holds a state machine.
    """
    holding = [
        template
        for template in templates.values()
        if any(r["Type"] == "AWS::StepFunctions::StateMachine" for r in template.get("Resources", {}).values())
    ]
    if len(holding) != 1:
        raise ValueError(f"expected one stack with the batch state machine, found {len(holding)}")
    return holding[0]


def stage_of(template: Template) -> str:
    """The stage a template was synthesized for: the `STAGE` its functions are given.

    Raises:
        ValueError: no function in the template names its stage.
    """
    stages = {
        variables["STAGE"]
        for resource in template.get("Resources", {}).values()
        if resource["Type"] == "AWS::Lambda::Function"
        and isinstance(variables := resource["Properties"].get("Environment", {}).get("Variables", {}), dict)
        and isinstance(variables.get("STAGE"), str)
    }
    if len(stages) != 1:
        raise ValueError(f"expected the template's functions to name one STAGE, found {sorted(stages)}")
    return str(stages.pop())


@dataclass(frozen=True)
class ChatFunction:
    """The chat function as a template deploys it."""

    logical_id: str
    handler: str
    # The variables whose values are in the template; `deploy_time` names those CloudFormation fills in.
    environment: Mapping[str, str]
    deploy_time: frozenset[str]
    timeout_seconds: int
    memory_mb: int

    @classmethod
    def from_template(cls, template: Template) -> ChatFunction:
        """Read the chat function from the template of its stack.

        Raises:
            ValueError: the template holds no chat function, or more than one.
        """
        logical_id, properties = _chat_function(template)
        variables: Mapping[str, Any] = properties.get("Environment", {}).get("Variables", {})
        return cls(
            logical_id=logical_id,
            handler=properties["Handler"],
            environment={name: value for name, value in variables.items() if isinstance(value, str)},
            deploy_time=frozenset(name for name, value in variables.items() if not isinstance(value, str)),
            # CloudFormation's defaults for AWS::Lambda::Function.
            timeout_seconds=int(properties.get("Timeout", 3)),
            memory_mb=int(properties.get("MemorySize", 128)),
        )


def chat_table(template: Template, variable: str) -> Mapping[str, Any] | None:
    """The properties of the DynamoDB table whose name the chat function gets in `variable` (None: no such table).

    Raises:
        ValueError: the template holds no chat function, or more than one.
    """
    _, properties = _chat_function(template)
    value = properties.get("Environment", {}).get("Variables", {}).get(variable)
    if not isinstance(value, dict) or set(value) != {"Ref"}:
        return None
    resource = template.get("Resources", {}).get(value["Ref"], {})
    if resource.get("Type") != "AWS::DynamoDB::Table":
        return None
    table: Mapping[str, Any] = resource["Properties"]
    return table


def guardrail_messages(template: Template) -> tuple[str, str] | None:
    """The blocked input and output messages of the guardrail the template creates (None: it creates none)."""
    guardrails = [r["Properties"] for r in template["Resources"].values() if r["Type"] == "AWS::Bedrock::Guardrail"]
    if len(guardrails) != 1:
        return None
    return guardrails[0]["BlockedInputMessaging"], guardrails[0]["BlockedOutputsMessaging"]


def _chat_functions(template: Template) -> list[tuple[str, Mapping[str, Any]]]:
    return [
        (logical_id, resource["Properties"])
        for logical_id, resource in template.get("Resources", {}).items()
        if resource["Type"] == "AWS::Lambda::Function" and resource["Properties"].get("Handler") == CHAT_HANDLER
    ]


def _chat_function(template: Template) -> tuple[str, Mapping[str, Any]]:
    found = _chat_functions(template)
    if len(found) != 1:
        raise ValueError(f"expected one function with handler {CHAT_HANDLER}, found {len(found)}")
    return found[0]
