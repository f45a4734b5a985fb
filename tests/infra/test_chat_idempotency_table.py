"""The Idempotency-Key table of the chat stack (row 12): encrypted with the stack's key, TTL-bound, scoped grants."""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk.assertions import Template

from infra.config import DeploymentConfig
from infra.constructs.chat_api import CHAT_HANDLER
from infra.constructs.idempotency_table import KEY_ACTIONS, RECORD_ACTIONS
from tests.infra.cfn import as_list, iam_statements, only, resources, role_statements
from tests.infra.synth import Synthesized


def _chat_role(template: dict[str, Any]) -> str:
    [function] = [
        resource
        for resource in resources(template, "AWS::Lambda::Function").values()
        if resource["Properties"]["Handler"] == CHAT_HANDLER
    ]
    role: str = function["Properties"]["Role"]["Fn::GetAtt"][0]
    return role


def _chat_stacks(synthesized_apps: list[Synthesized]) -> list[dict[str, Any]]:
    return [
        template
        for app in synthesized_apps
        for name, template in app.templates.items()
        if name.startswith("GptOssChat-")
    ]


@pytest.mark.row(12)
def test_the_table_is_an_on_demand_ttl_cache_encrypted_with_the_stack_key(
    chat: dict[str, Any], chat_template: Template
) -> None:
    table_id, table = only(chat, "AWS::DynamoDB::Table")
    key_id, _ = only(chat, "AWS::KMS::Key")
    chat_template.has_resource(
        "AWS::DynamoDB::Table",
        {
            "Properties": {
                "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
                "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
                "BillingMode": "PAY_PER_REQUEST",
                "TimeToLiveSpecification": {"AttributeName": "expiration", "Enabled": True},
                "SSESpecification": {
                    "SSEEnabled": True,
                    "SSEType": "KMS",
                    "KMSMasterKeyId": {"Fn::GetAtt": [key_id, "Arn"]},
                },
            },
            # A cache: it goes with the stack.
            "DeletionPolicy": "Delete",
            "UpdateReplacePolicy": "Delete",
        },
    )
    assert "TableName" not in table["Properties"]
    assert "StreamSpecification" not in table["Properties"]
    assert table_id.startswith("ChatApiIdempotencyTable")


@pytest.mark.row(12, 14)
def test_only_the_chat_role_reaches_the_table_and_only_with_powertools_item_calls(
    synthesized_apps: list[Synthesized],
) -> None:
    for app in synthesized_apps:
        for name, template in app.templates.items():
            dynamodb = [s for _, s in iam_statements(template) if any("dynamodb:" in a for a in as_list(s["Action"]))]
            if not name.startswith("GptOssChat-"):
                assert dynamodb == [], name
                continue
            table_id, _ = only(template, "AWS::DynamoDB::Table")
            key_id, _ = only(template, "AWS::KMS::Key")
            statements = role_statements(template, _chat_role(template))
            [records] = [s for s in statements if any(a.startswith("dynamodb:") for a in as_list(s["Action"]))]
            assert sorted(as_list(records["Action"])) == sorted(RECORD_ACTIONS)
            assert records["Resource"] == {"Fn::GetAtt": [table_id, "Arn"]}
            assert "Condition" not in records
            assert dynamodb == [records], name
            # Besides the AWS FIS extension's configuration reads on a test-rig stage (test_fault_injection.py).
            [key_use] = [
                s
                for s in statements
                if any(a.startswith("kms:") for a in as_list(s["Action"]))
                and not s.get("Sid", "").startswith("FisExtension")
            ]
            assert sorted(as_list(key_use["Action"])) == sorted(KEY_ACTIONS)
            assert key_use["Resource"] == {"Fn::GetAtt": [key_id, "Arn"]}
            assert key_use["Condition"] == {
                "StringEquals": {
                    "kms:ViaService": {"Fn::Join": ["", ["dynamodb.", {"Ref": "AWS::Region"}, ".amazonaws.com"]]}
                }
            }


@pytest.mark.row(12)
def test_the_chat_function_is_told_the_table_and_the_record_lifetime(synthesized_apps: list[Synthesized]) -> None:
    for template in _chat_stacks(synthesized_apps):
        table_id, _ = only(template, "AWS::DynamoDB::Table")
        [function] = [
            resource
            for resource in resources(template, "AWS::Lambda::Function").values()
            if resource["Properties"]["Handler"] == CHAT_HANDLER
        ]
        variables = function["Properties"]["Environment"]["Variables"]
        assert variables["IDEMPOTENCY_TABLE_NAME"] == {"Ref": table_id}
        assert variables["IDEMPOTENCY_TTL_SECONDS"] == "3600"


def test_the_record_lifetime_is_one_context_key() -> None:
    assert DeploymentConfig().chat.idempotency_ttl_seconds == 3600
    assert DeploymentConfig.from_context({"chatIdempotencyTtlSeconds": "600"}).chat.idempotency_ttl_seconds == 600
    for out_of_range in ("59", "604801"):
        with pytest.raises(ValueError, match="idempotency_ttl_seconds"):
            DeploymentConfig.from_context({"chatIdempotencyTtlSeconds": out_of_range})
