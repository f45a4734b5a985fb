"""Security properties asserted on every template of both apps (identity wildcards: test_chat_api_stack.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from tests.infra.cfn import as_list, render, resources
from tests.infra.synth import Synthesized

BEDROCK_SERVICE = {"Service": "bedrock.amazonaws.com"}
# Resource policies (key, bucket, queue, topic, API) may Allow a wildcard action only here, by
# (logical id, action); the key's own account administering it is CDK's default key policy.
ALLOWED_RESOURCE_POLICY_WILDCARDS = {
    # CDK's default key policy: this account (its IAM policies) administers and uses each key.
    ("StackKey8E39E76F", "kms:*"),
    ("BatchPipelineKeyCAEC89B1", "kms:*"),
    ("BatchPipelineQueueKeyC0574822", "kms:*"),
    # CloudWatch alarms publish to the encrypted topic (pinned in test_alarm_topic_is_encrypted_and_tls_only).
    ("StackKey8E39E76F", "kms:GenerateDataKey*"),
    # EventBridge delivers to the encrypted queue (CDK's SqsQueue target grant, source-ARN conditioned).
    ("BatchPipelineQueueKeyC0574822", "kms:GenerateDataKey*"),
    ("BatchPipelineQueueKeyC0574822", "kms:ReEncrypt*"),
}
_RESOURCE_POLICIES = {
    "AWS::KMS::Key": "KeyPolicy",
    "AWS::S3::BucketPolicy": "PolicyDocument",
    "AWS::SQS::QueuePolicy": "PolicyDocument",
    "AWS::SNS::TopicPolicy": "PolicyDocument",
    "AWS::ApiGateway::RestApi": "Policy",
}
_IDENTITY_POLICIES = ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy")


def _templates(synthesized_apps: list[Synthesized]) -> Iterator[tuple[str, dict[str, Any]]]:
    for app in synthesized_apps:
        yield from app.templates.items()


def _bedrock_trusted_roles(template: dict[str, Any]) -> set[str]:
    return {
        logical_id
        for logical_id, role in resources(template, "AWS::IAM::Role").items()
        if any(
            statement.get("Principal") == BEDROCK_SERVICE
            for statement in role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        )
    }


def _role_grants(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(role logical id, statement) for every statement of every identity policy attached to a role."""
    for policy_type in _IDENTITY_POLICIES:
        for resource in resources(template, policy_type).values():
            for role in resource["Properties"].get("Roles", []):
                # A role of another stack (the chat function's, granted the Batch API): its name, as rendered.
                role_id = role["Ref"] if "Ref" in role else json.dumps(role, sort_keys=True)
                for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
                    yield role_id, statement
    for logical_id, role in resources(template, "AWS::IAM::Role").items():
        for policy in role["Properties"].get("Policies", []):
            for statement in policy["PolicyDocument"]["Statement"]:
                yield logical_id, statement


def test_no_role_but_bedrocks_batch_role_can_invoke_a_model_without_the_guardrail(
    synthesized_apps: list[Synthesized],
) -> None:
    invoking = 0
    for stack_name, template in _templates(synthesized_apps):
        batch_roles = _bedrock_trusted_roles(template)
        for role_id, statement in _role_grants(template):
            actions = as_list(statement.get("Action", []))
            if statement["Effect"] != "Allow" or not any(a.startswith("bedrock:InvokeModel") for a in actions):
                continue
            if role_id in batch_roles:
                continue
            invoking += 1
            guardrail = statement.get("Condition", {}).get("StringEquals", {}).get("bedrock:GuardrailIdentifier")
            assert guardrail, (stack_name, role_id, statement)
            # A pinned version of the guardrail (ARN:version), never the guardrail alone.
            assert ":" in render(guardrail), (stack_name, role_id, guardrail)
    # Chat and on-demand batch, in both apps (and the variant's collect when it guards answers).
    assert invoking >= 4


def test_every_bedrock_trusted_role_is_confused_deputy_safe(synthesized_apps: list[Synthesized]) -> None:
    found = 0
    for stack_name, template in _templates(synthesized_apps):
        for logical_id in _bedrock_trusted_roles(template):
            found += 1
            role = resources(template, "AWS::IAM::Role")[logical_id]
            (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
            conditions = trust["Condition"]
            assert conditions["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}, stack_name
            assert render(conditions["ArnLike"]["aws:SourceArn"]).endswith(":model-invocation-job/*"), stack_name
    assert found == len(synthesized_apps)  # the batch service role, once per app


def test_resource_policies_allow_wildcard_actions_only_on_the_list(synthesized_apps: list[Synthesized]) -> None:
    found = set()
    for stack_name, template in _templates(synthesized_apps):
        for resource_type, field in _RESOURCE_POLICIES.items():
            for logical_id, resource in resources(template, resource_type).items():
                document = resource["Properties"].get(field)
                for statement in document["Statement"] if document else []:
                    if statement["Effect"] != "Allow":
                        continue  # denials (s3:* / sqs:* without TLS) only narrow
                    for action in as_list(statement.get("Action", [])):
                        if "*" in action:
                            assert (logical_id, action) in ALLOWED_RESOURCE_POLICY_WILDCARDS, (stack_name, action)
                            found.add((logical_id, action))
    assert found == ALLOWED_RESOURCE_POLICY_WILDCARDS


def test_every_bucket_is_encrypted_versioned_tls_only_and_private(synthesized_apps: list[Synthesized]) -> None:
    buckets = 0
    for stack_name, template in _templates(synthesized_apps):
        policies = {
            policy["Properties"]["Bucket"]["Ref"]: policy["Properties"]["PolicyDocument"]["Statement"]
            for policy in resources(template, "AWS::S3::BucketPolicy").values()
        }
        for logical_id, bucket in resources(template, "AWS::S3::Bucket").items():
            buckets += 1
            properties, where = bucket["Properties"], (stack_name, logical_id)
            (rule,) = properties["BucketEncryption"]["ServerSideEncryptionConfiguration"]
            assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("aws:kms", "AES256"), where
            assert properties["VersioningConfiguration"] == {"Status": "Enabled"}, where
            assert properties["PublicAccessBlockConfiguration"] == dict.fromkeys(
                ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"), True
            ), where
            denials = [s["Condition"] for s in policies[logical_id] if s["Effect"] == "Deny" and "Condition" in s]
            assert {"Bool": {"aws:SecureTransport": "false"}} in denials, where
    # Data and access-log buckets, once per app; the rig's AWS FIS configuration bucket (batch stack only).
    assert buckets == 2 * len(synthesized_apps) + 1


def test_every_log_group_is_encrypted_with_its_stacks_rotated_key(synthesized_apps: list[Synthesized]) -> None:
    groups = 0
    for stack_name, template in _templates(synthesized_apps):
        keys = resources(template, "AWS::KMS::Key")
        for logical_id, group in resources(template, "AWS::Logs::LogGroup").items():
            groups += 1
            key_id = group["Properties"]["KmsKeyId"]["Fn::GetAtt"][0]
            key = keys[key_id]["Properties"]
            assert key["EnableKeyRotation"] is True, (stack_name, logical_id)
            (logs_statement,) = [
                s
                for s in key["KeyPolicy"]["Statement"]
                if render(s.get("Principal", {}).get("Service", "")).startswith("logs.")
            ]
            assert render(logs_statement["Principal"]["Service"]) == "logs.${AWS::Region}.amazonaws.com"
            assert render(logs_statement["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"]) == (
                "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:*"
            ), (stack_name, logical_id)
    assert groups > 0


def test_the_starter_only_consumes_the_queue_and_starts_the_state_machine(synthesized_apps: list[Synthesized]) -> None:
    """Beyond its log group, X-Ray and `inbox/*` reads (test_each_function_touches_only_its_prefixes)."""
    checked = 0
    for stack_name, template in _templates(synthesized_apps):
        starters = [
            logical_id
            for logical_id, function in resources(template, "AWS::Lambda::Function").items()
            if function["Properties"]["Handler"].startswith("batch.starter")
        ]
        if not starters:
            continue
        (starter,) = starters
        role_id = resources(template, "AWS::Lambda::Function")[starter]["Properties"]["Role"]["Fn::GetAtt"][0]
        (queue_id,) = [q for q in resources(template, "AWS::SQS::Queue") if "EventQueue" in q]
        (machine_id,) = resources(template, "AWS::StepFunctions::StateMachine")
        grants = {
            action: statement["Resource"]
            for role, statement in _role_grants(template)
            # The AWS FIS extension's reads on a test-rig stage: tests/infra/test_fault_injection.py.
            if role == role_id and not statement.get("Sid", "").startswith("FisExtension")
            for action in as_list(statement["Action"])
            if not action.startswith(("logs:", "xray:", "s3:"))
        }
        queue_actions = {"ChangeMessageVisibility", "DeleteMessage", "GetQueueAttributes", "GetQueueUrl"}
        assert set(grants) == {f"sqs:{a}" for a in (*queue_actions, "ReceiveMessage")} | {
            "states:StartExecution",
            "kms:Decrypt",
        }, stack_name
        assert grants["sqs:ReceiveMessage"] == {"Fn::GetAtt": [queue_id, "Arn"]}
        assert grants["states:StartExecution"] == {"Ref": machine_id}
        assert grants["kms:Decrypt"]["Fn::GetAtt"][0].startswith("BatchPipelineQueueKey")
        checked += 1
    assert checked == len(synthesized_apps)  # the batch stack of each app
