"""cdk-nag (AwsSolutions): no unacknowledged finding, and every acknowledgement is specific and explained."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from aws_cdk import App, Stack, Validations
from aws_cdk import aws_sns as sns
from cdk_nag import AwsSolutionsChecks

from infra import bytecode
from tests.infra.synth import Synthesized

# A cdk-nag rule id, optionally with its finding in brackets (findings may hold brackets: intrinsic functions
# in ARNs), or a warning of CDK's CloudFormation validator.
_RULE_ID = re.compile(r"^(AwsSolutions-[A-Z]+[0-9]+(\[.+\])?|CloudFormation-Validate::W[0-9]+)$")
IAM_FINDING = "AwsSolutions-IAM5[Resource::*]"
CLOUDWATCH_ROLE_FINDING = (
    "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs]"
)
# Every acknowledgement of the app, by construct path: adding one means adding it here, on purpose.
EXPECTED_DEFAULT = {
    ("GptOssChat-dev/ChatApi/ChatFunctionRole", IAM_FINDING),
    ("GptOssChat-dev/ChatApi/Api", "AwsSolutions-COG4"),
    ("GptOssChat-dev/ChatApi/Api/DeploymentStage.dev", "AwsSolutions-APIG3"),
    ("GptOssChat-dev/Guardrail/Version", "CloudFormation-Validate::W3011"),
    # The Idempotency-Key records: a TTL-bound cache, nothing to restore (reason: idempotency_table.py).
    ("GptOssChat-dev/ChatApi/Idempotency/Table", "AwsSolutions-DDB3"),
}
EXPECTED_VARIANT = {
    ("GptOssChat-prod/ChatApi/ChatFunctionRole", IAM_FINDING),
    ("GptOssChat-prod/ChatApi/Api", "AwsSolutions-COG4"),
    # On the API, above the CloudWatch role RestApi creates (apiGatewayCloudWatchRole).
    ("GptOssChat-prod/ChatApi/Api", CLOUDWATCH_ROLE_FINDING),
    ("GptOssChat-prod/ChatApi/Idempotency/Table", "AwsSolutions-DDB3"),
}
_BUCKET = "<BatchPipelineBucketD437C9D7.Arn>"
_MACHINE = '{"Fn::Select":[6,{"Fn::Split":[":",{"Ref":"BatchPipelineStateMachine14486008"}]}]}'
_EXECUTIONS = f"arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:{_MACHINE}"
# The batch stack's, by construct path under GptOssBatch-<stage>/BatchPipeline/ (reasons: batch_pipeline.py).
BATCH_ACKNOWLEDGEMENTS = {
    # The access-log bucket itself is not logged (it would log into itself).
    ("AccessLogs", "AwsSolutions-S1"),
    # Bedrock reads shard inputs under work/ and writes job output under bedrock-output/ (run ids: run time).
    ("BatchServiceRole", f"AwsSolutions-IAM5[Resource::{_BUCKET}/work/*]"),
    ("BatchServiceRole", f"AwsSolutions-IAM5[Resource::{_BUCKET}/bedrock-output/*]"),
    # Each function: X-Ray (the factory's), and only the prefixes it reads or writes.
    ("StarterFunctionRole", IAM_FINDING),
    ("StarterFunctionRole", f"AwsSolutions-IAM5[Resource::{_BUCKET}/inbox/*]"),
    # The default app reads Service Quotas: the same finding carries that second reason on this role.
    ("PrepareFunctionRole", IAM_FINDING),
    ("PrepareFunctionRole", f"AwsSolutions-IAM5[Resource::{_BUCKET}/inbox/*]"),
    ("PrepareFunctionRole", f"AwsSolutions-IAM5[Resource::{_BUCKET}/openai/*/files/*]"),
    ("PrepareFunctionRole", f"AwsSolutions-IAM5[Resource::{_BUCKET}/work/*]"),
    ("PrepareFunctionRole", f"AwsSolutions-IAM5[Resource::{_BUCKET}/rejected/*]"),
    ("OnDemandFunctionRole", IAM_FINDING),
    ("OnDemandFunctionRole", f"AwsSolutions-IAM5[Resource::{_BUCKET}/work/*]"),
    ("OnDemandFunctionRole", f"AwsSolutions-IAM5[Resource::{_BUCKET}/bedrock-output/*]"),
    ("CollectFunctionRole", IAM_FINDING),
    ("CollectFunctionRole", f"AwsSolutions-IAM5[Resource::{_BUCKET}/work/*]"),
    ("CollectFunctionRole", f"AwsSolutions-IAM5[Resource::{_BUCKET}/bedrock-output/*]"),
    ("CollectFunctionRole", f"AwsSolutions-IAM5[Resource::{_BUCKET}/rejected/*]"),
    ("CollectFunctionRole", f"AwsSolutions-IAM5[Resource::{_BUCKET}/results/*]"),
    # job_events reads the task tokens the state machine stores under work/job-tokens/ (job names: run time).
    ("JobEventsFunctionRole", IAM_FINDING),
    ("JobEventsFunctionRole", f"AwsSolutions-IAM5[Resource::{_BUCKET}/work/job-tokens/*]"),
    # SendTaskSuccess on this state machine and its Distributed Map runs (a shard's token is its child's).
    ("JobEventsFunctionRole", "AwsSolutions-IAM5[Resource::<BatchPipelineStateMachine14486008>/*]"),
    ("StateMachine/Role", f"AwsSolutions-IAM5[Resource::{_BUCKET}/work/job-tokens/*]"),
    # State machine: log delivery, X-Ray and the overdue metric ('*' only); CDK's <function ARN>:* of the
    # three task functions; Bedrock job ARNs; the Distributed Map's child executions (on the state machine, above
    # the policy CDK adds for the map).
    ("StateMachine/Role", IAM_FINDING),
    ("StateMachine/Role", "AwsSolutions-IAM5[Resource::<BatchPipelinePrepareFunction49FA7560.Arn>:*]"),
    ("StateMachine/Role", "AwsSolutions-IAM5[Resource::<BatchPipelineOnDemandFunction2417058D.Arn>:*]"),
    ("StateMachine/Role", "AwsSolutions-IAM5[Resource::<BatchPipelineCollectFunctionA06A8D72.Arn>:*]"),
    (
        "StateMachine/Role",
        "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:bedrock:<AWS::Region>:<AWS::AccountId>:"
        "model-invocation-job/*]",
    ),
    ("StateMachine", f"AwsSolutions-IAM5[Resource::{_EXECUTIONS}:*]"),
    ("StateMachine", f"AwsSolutions-IAM5[Resource::{_EXECUTIONS}/Shard:*]"),
}


# The chat function's role as the batch stack grants it the Batch API (reasons: batch_api_access.py): each
# caller's files and records, the results and progress of batch-<id> runs, their executions, their jobs, and
# ListModelInvocationJobs ('*' only).
BATCH_API_ACKNOWLEDGEMENTS = {
    "AwsSolutions-IAM5[Resource::*]",
    f"AwsSolutions-IAM5[Resource::{_BUCKET}/openai/*]",
    f"AwsSolutions-IAM5[Resource::{_BUCKET}/results/batch-*]",
    f"AwsSolutions-IAM5[Resource::{_BUCKET}/work/batch-*/records.jsonl]",
    "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:"
    "<BatchPipelineStateMachine14486008.Name>:batch-*]",
    "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:bedrock:<AWS::Region>:<AWS::AccountId>:model-invocation-job/*]",
}


def _batch(stage: str) -> set[tuple[str, str]]:
    return {(f"GptOssBatch-{stage}/BatchPipeline/{path}", finding) for path, finding in BATCH_ACKNOWLEDGEMENTS} | {
        (f"GptOssBatch-{stage}/BatchApiAccess/Policy", finding) for finding in BATCH_API_ACKNOWLEDGEMENTS
    }


EXPECTED_DEFAULT |= _batch("dev")
EXPECTED_VARIANT |= _batch("prod")
# The test rig: the default app's, plus AWS FIS in the batch stack (reasons: infra/constructs/fault_injection.py;
# the streaming chat function carries no FIS extension). Every pipeline function reads fault configurations under
# FisConfigs/ of the stack's FIS bucket; the FIS role writes them there and resolves targets with tag:GetResources
# ('*' only); the FIS bucket logs no access.
_FIS_OBJECTS = "AwsSolutions-IAM5[Resource::<FaultInjectionConfig05045809.Arn>/FisConfigs/*]"
EXPECTED_RIG = {
    (path.replace("-dev/", "-loadtest/").replace("DeploymentStage.dev", "DeploymentStage.loadtest"), finding)
    for path, finding in EXPECTED_DEFAULT
} | {
    ("GptOssBatch-loadtest/FaultInjection/Role", IAM_FINDING),
    ("GptOssBatch-loadtest/FaultInjection/Role", _FIS_OBJECTS),
    ("GptOssBatch-loadtest/FaultInjectionConfig", "AwsSolutions-S1"),
    *{
        (f"GptOssBatch-loadtest/BatchPipeline/{function}FunctionRole", _FIS_OBJECTS)
        for function in ("Starter", "Prepare", "OnDemand", "Collect", "JobEvents")
    },
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


# Warnings the synth prints on purpose: a test-rig stage says loudly that its chat function calls no model.
EXPECTED_WARNINGS = {
    "GptOssChat-loadtest/ChatApi/ChatFunction": {"Annotation::gpt-oss:model-stand-in"},
}
# And on a machine without the Lambda runtime's Python, every stack says its functions ship no bytecode
# (tests/infra/test_bytecode.py checks it is there exactly then).
NO_BYTECODE_WARNING = f"Annotation::{bytecode.WARNING_ID}"


def expected_warnings(construct_path: str) -> set[str]:
    """The warnings a construct may carry on this machine."""
    expected = set(EXPECTED_WARNINGS.get(construct_path, set()))
    if "/" not in construct_path and bytecode.lambda_interpreter() is None:
        expected.add(NO_BYTECODE_WARNING)
    return expected


@pytest.mark.row(15)
def test_synth_reports_no_violation(synthesized_apps: list[Synthesized]) -> None:
    for synthesized in synthesized_apps:
        report = json.loads((synthesized.outdir / "validation-report.json").read_text())
        for plugin in report["pluginReports"]:
            assert plugin["conclusion"] == "success", plugin
            for violation in plugin["violations"]:
                assert violation["severity"] == "warning", violation
                for construct in violation["violatingConstructs"]:
                    assert violation["ruleName"] in expected_warnings(construct["constructPath"]), violation


def test_rules_pass_when_run_directly(synthesized_apps: list[Synthesized]) -> None:
    """The same pack run on the construct tree, independently of the synth-time plugin."""
    for synthesized in synthesized_apps:
        result = AwsSolutionsChecks(verbose=True).validate_scope(synthesized.app)
        assert result.violations == []
        assert result.success


@pytest.mark.parametrize(
    ("which", "expected"), [("default", EXPECTED_DEFAULT), ("variant", EXPECTED_VARIANT), ("rig", EXPECTED_RIG)]
)
@pytest.mark.row(15)
def test_acknowledgements_are_specific_and_explained(
    which: str,
    expected: set[tuple[str, str]],
    default_app: Synthesized,
    variant_app: Synthesized,
    rig_app: Synthesized,
) -> None:
    found = acknowledgements({"default": default_app, "variant": variant_app, "rig": rig_app}[which].app)
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
