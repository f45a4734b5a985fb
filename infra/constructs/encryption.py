"""The one KMS key of each stack for its log groups, alarm topic and caches (the batch data keeps its own key)."""

from __future__ import annotations

from aws_cdk import Aws, Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

_KEY_ID = "StackKey"


def stack_key(scope: Construct) -> kms.Key:
    """Return the stack's key: rotated yearly, usable by CloudWatch Logs only for this account's log groups.

    It holds no data of its own (logs, alarm notifications and the chat API's TTL-bound Idempotency-Key
    records are transient), so it goes with the stack.
    """
    stack = Stack.of(scope)
    existing = stack.node.try_find_child(_KEY_ID)
    if isinstance(existing, kms.Key):
        return existing
    key = kms.Key(
        stack,
        _KEY_ID,
        description="Encrypts this stack's log groups, alarm topic and Idempotency-Key records",
        enable_key_rotation=True,
        removal_policy=RemovalPolicy.DESTROY,
        pending_window=Duration.days(7),
    )
    region, account, partition = Aws.REGION, Aws.ACCOUNT_ID, Aws.PARTITION
    key.add_to_resource_policy(
        iam.PolicyStatement(
            sid="CloudWatchLogsEncryptsThisAccountsLogGroups",
            principals=[iam.ServicePrincipal(f"logs.{region}.amazonaws.com")],
            actions=[
                "kms:Encrypt",
                "kms:Decrypt",
                "kms:ReEncryptFrom",
                "kms:ReEncryptTo",
                "kms:GenerateDataKey",
                "kms:GenerateDataKeyWithoutPlaintext",
                "kms:DescribeKey",
            ],
            resources=["*"],
            conditions={
                "ArnLike": {
                    "kms:EncryptionContext:aws:logs:arn": f"arn:{partition}:logs:{region}:{account}:log-group:*"
                }
            },
        )
    )
    return key
