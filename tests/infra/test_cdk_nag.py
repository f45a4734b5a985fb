"""cdk-nag (AwsSolutions): no unacknowledged finding, and every acknowledgement is specific and explained."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from aws_cdk import App, Stack, Validations
from aws_cdk import aws_sns as sns
from cdk_nag import AwsSolutionsChecks

from tests.infra.synth import Synthesized

_RULE_ID = re.compile(r"^AwsSolutions-[A-Z]+[0-9]+(\[[^\]]+\])?$")
IAM_FINDING = "AwsSolutions-IAM5[Resource::*]"
CLOUDWATCH_ROLE_FINDING = (
    "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs]"
)
# Every acknowledgement of the app, by construct path: adding one means adding it here, on purpose.
EXPECTED_DEFAULT = {
    ("GptOssChat-dev/ChatApi/ChatFunctionRole", IAM_FINDING),
    ("GptOssChat-dev/ChatApi/Api", "AwsSolutions-COG4"),
    ("GptOssChat-dev/ChatApi/Api/DeploymentStage.dev", "AwsSolutions-APIG3"),
}
EXPECTED_VARIANT = {
    ("GptOssChat-prod/ChatApi/ChatFunctionRole", IAM_FINDING),
    ("GptOssChat-prod/ChatApi/Api", "AwsSolutions-COG4"),
    ("GptOssChat-prod/ChatApi/Api/CloudWatchRole", CLOUDWATCH_ROLE_FINDING),
}


def acknowledgements(app: App) -> list[tuple[str, str, str]]:
    """(construct path, finding id, reason) of every acknowledgement in the construct tree."""
    found = []
    for construct in app.node.find_all():
        for entry in construct.node.metadata:
            if entry.type == Validations.ACKNOWLEDGED_RULES_METADATA_KEY:
                data: dict[str, Any] = entry.data
                for key, reason in data.items():
                    finding = re.sub(r"^annotation::", "", key, flags=re.IGNORECASE)
                    found.append((construct.node.path, finding, reason))
    return found


def test_synth_reports_no_violation(synthesized_apps: list[Synthesized]) -> None:
    for synthesized in synthesized_apps:
        report = json.loads((synthesized.outdir / "validation-report.json").read_text())
        for plugin in report["pluginReports"]:
            assert plugin["conclusion"] == "success", plugin
            assert plugin["violations"] == [], plugin


def test_rules_pass_when_run_directly(synthesized_apps: list[Synthesized]) -> None:
    """The same pack run on the construct tree, independently of the synth-time plugin."""
    for synthesized in synthesized_apps:
        result = AwsSolutionsChecks(verbose=True).validate_scope(synthesized.app)
        assert result.violations == []
        assert result.success


@pytest.mark.parametrize(("which", "expected"), [("default", EXPECTED_DEFAULT), ("variant", EXPECTED_VARIANT)])
def test_acknowledgements_are_specific_and_explained(
    which: str, expected: set[tuple[str, str]], default_app: Synthesized, variant_app: Synthesized
) -> None:
    found = acknowledgements((default_app if which == "default" else variant_app).app)
    assert {(path, finding) for path, finding, _ in found} == expected
    for path, finding, reason in found:
        assert _RULE_ID.match(finding), (path, finding)
        if finding.startswith(("AwsSolutions-IAM4", "AwsSolutions-IAM5")):
            # IAM findings are acknowledged one by one, never the whole rule.
            assert "[" in finding, (path, finding)
        assert len(reason) >= 80, (path, finding, reason)


def test_the_pack_does_find_findings() -> None:
    """Guards the two checks above against a pack that silently checks nothing."""
    stack = Stack(App(), "Unsafe")
    sns.Topic(stack, "PlainTopic")
    result = AwsSolutionsChecks().validate_scope(stack)
    assert not result.success
    assert "AwsSolutions-SNS3" in {violation.rule_name for violation in result.violations}
