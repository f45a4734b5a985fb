"""IdempotencyTable: the chat API's Idempotency-Key records (functions/chat/idempotency.py), a short-lived cache."""

from __future__ import annotations

from aws_cdk import Acknowledgment, RemovalPolicy, Stack, Validations
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.constructs.checkov import skip_checkov
from infra.constructs.encryption import stack_key

# The attribute names of Powertools' DynamoDBPersistenceLayer (its defaults, which the function keeps).
PARTITION_KEY = "id"
TTL_ATTRIBUTE = "expiration"
# Exactly the calls Powertools' idempotency makes: put IN_PROGRESS, read a conflicting record, store the
# answer, delete the record of a failed request.
RECORD_ACTIONS = ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem")
# What DynamoDB does with the table's KMS key on the caller's behalf when items are read and written.
KEY_ACTIONS = ("kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey")
_NO_BACKUP_REASON = (
    "A cache of Idempotency-Key records that expire after chatIdempotencyTtlSeconds (TTL): nothing in it is "
    "worth restoring, a lost record only means a retried request is answered again, and backups would keep "
    "answers beyond their lifetime."
)


class IdempotencyTable(Construct):
    """One record per (caller, Idempotency-Key): in progress, or the finished chat.completion until its TTL.

    Encrypted with the stack's customer-managed key; on demand; deleted with the stack (it is a cache).
    """

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.key = stack_key(self)
        self.table = dynamodb.Table(
            self,
            "Table",
            partition_key=dynamodb.Attribute(name=PARTITION_KEY, type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
            encryption_key=self.key,
            time_to_live_attribute=TTL_ATTRIBUTE,
            removal_policy=RemovalPolicy.DESTROY,
        )
        Validations.of(self.table).acknowledge(Acknowledgment(id="AwsSolutions-DDB3", reason=_NO_BACKUP_REASON))
        skip_checkov(self.table, {"CKV_AWS_28": _NO_BACKUP_REASON})

    def grant_records(self, function: lambda_.Function) -> None:
        """Let `function` read and write records (only the item calls Powertools makes) and use the key via DynamoDB."""
        self.table.grant(function, *RECORD_ACTIONS)
        function.add_to_role_policy(
            iam.PolicyStatement(
                sid="UseStackKeyOnlyThroughDynamoDB",
                actions=list(KEY_ACTIONS),
                resources=[self.key.key_arn],
                conditions={"StringEquals": {"kms:ViaService": f"dynamodb.{Stack.of(self).region}.amazonaws.com"}},
            )
        )
