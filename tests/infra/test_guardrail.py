"""Guardrail updates: a changed guardrail publishes a new version, an unchanged one publishes nothing."""

from __future__ import annotations

from typing import Any

from aws_cdk import App, CfnOutput, CfnWaitConditionHandle, Stack
from aws_cdk.assertions import Template

from infra.config import GuardrailConfig
from infra.constructs.guardrail import Guardrail
from tests.infra.cfn import only, render


def _guardrail_template(config: GuardrailConfig) -> dict[str, Any]:
    stack = Stack(App(), "GuardrailOnly")
    Guardrail(stack, "Guardrail", config=config)
    template = dict(Template.from_stack(stack).to_json())
    return template


def _version(template: dict[str, Any]) -> tuple[str, str]:
    logical_id, version = only(template, "AWS::Bedrock::GuardrailVersion")
    return logical_id, version["Properties"]["Description"]


def test_a_changed_guardrail_replaces_its_version() -> None:
    before = _guardrail_template(GuardrailConfig())
    after = _guardrail_template(GuardrailConfig(blocked_output_message="Blocked by policy."))
    # Same logical id, new description: CloudFormation replaces the version (Description is create-only),
    # i.e. publishes a new number from the updated guardrail; the old number is kept for running callers.
    assert _version(before)[0] == _version(after)[0]
    assert only(after, "AWS::Bedrock::GuardrailVersion")[1]["UpdateReplacePolicy"] == "Retain"
    assert _version(before)[1] != _version(after)[1]
    assert only(before, "AWS::Bedrock::Guardrail")[0] == only(after, "AWS::Bedrock::Guardrail")[0]


def test_an_unchanged_guardrail_keeps_its_version() -> None:
    assert _version(_guardrail_template(GuardrailConfig())) == _version(_guardrail_template(GuardrailConfig()))


def test_an_existing_guardrail_creates_nothing() -> None:
    stack = Stack(App(), "ExistingGuardrail")
    guardrail = Guardrail(stack, "Guardrail", config=GuardrailConfig(existing_id="abc123def456", existing_version="7"))
    CfnWaitConditionHandle(stack, "Anchor")  # a template needs one resource
    CfnOutput(stack, "VersionedArn", value=guardrail.versioned_arn)
    template = dict(Template.from_stack(stack).to_json())
    assert not [r for r in template["Resources"].values() if r["Type"].startswith("AWS::Bedrock::")]
    assert render(template["Outputs"]["VersionedArn"]["Value"]) == (
        "arn:${AWS::Partition}:bedrock:${AWS::Region}:${AWS::AccountId}:guardrail/abc123def456:7"
    )
