"""BatchApiAccess: what the chat function's Batch API (`/v1/files`, `/v1/batches`) may do with this pipeline.

The batch stack owns the bucket, the state machine and the jobs, so it owns these grants too: it reads the chat
function's role from the parameter the chat stack publishes, attaches one policy to it, and publishes where the
pipeline is for the function to read. Nothing crosses the stacks as a CloudFormation export.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, ArnFormat, Stack, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from infra.config import batch_api_parameter_name, chat_role_parameter_name
from infra.constructs.batch_pipeline import BATCH_API_PREFIX, RESULTS_PREFIX, WORK_PREFIX
from infra.constructs.nag import wildcard_resource

# What the Batch API reads of its runs (run ids `batch-<hex>`; functions/shared/pipeline.py spells the same keys):
# their results, and the first file a run's preparation writes (its progress).
BATCH_RUN_EXECUTIONS = "batch-*"
BATCH_RUN_RESULTS = f"{RESULTS_PREFIX}{BATCH_RUN_EXECUTIONS}"
BATCH_RUN_RECORDS = f"{WORK_PREFIX}{BATCH_RUN_EXECUTIONS}/records.jsonl"


class BatchApiAccess(Construct):
    """The chat function's role may store files and batch records, start and stop this pipeline's runs, read
    their results and stop their Bedrock jobs; the pipeline's location is published for it."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        stage: str,
        bucket_arn: str,
        bucket_name: str,
        key_arn: str,
        state_machine_arn: str,
        state_machine_name: str,
        job_arns: str,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.parameter = ssm.StringParameter(
            self,
            "PipelineParameter",
            parameter_name=batch_api_parameter_name(stage),
            string_value=stack.to_json_string({"bucket": bucket_name, "stateMachineArn": state_machine_arn}),
            description=f"Where the batch pipeline of stage {stage} is, for the chat function's Batch API",
        )
        role_arn = ssm.StringParameter.value_for_string_parameter(self, chat_role_parameter_name(stage))
        role = iam.Role.from_role_arn(self, "ChatFunctionRole", role_arn, mutable=True)
        objects = [f"{bucket_arn}/{BATCH_API_PREFIX}*"]
        runs = [f"{bucket_arn}/{BATCH_RUN_RESULTS}", f"{bucket_arn}/{BATCH_RUN_RECORDS}"]
        executions = stack.format_arn(
            service="states",
            resource="execution",
            resource_name=f"{state_machine_name}:{BATCH_RUN_EXECUTIONS}",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        jobs = job_arns
        self.policy = iam.Policy(
            self,
            "Policy",
            roles=[role],
            statements=[
                iam.PolicyStatement(sid="FilesAndBatches", actions=["s3:GetObject", "s3:PutObject"], resources=objects),
                iam.PolicyStatement(
                    sid="ListBatches",
                    actions=["s3:ListBucket"],
                    resources=[bucket_arn],
                    conditions={"StringLike": {"s3:prefix": [f"{BATCH_API_PREFIX}*"]}},
                ),
                iam.PolicyStatement(sid="RunProgressAndResults", actions=["s3:GetObject"], resources=runs),
                iam.PolicyStatement(
                    sid="BucketKey", actions=["kms:Decrypt", "kms:GenerateDataKey"], resources=[key_arn]
                ),
                iam.PolicyStatement(sid="StartRuns", actions=["states:StartExecution"], resources=[state_machine_arn]),
                iam.PolicyStatement(
                    sid="FollowAndCancelRuns",
                    actions=["states:DescribeExecution", "states:StopExecution"],
                    resources=[executions],
                ),
                # ListModelInvocationJobs takes no resource (service authorization reference); the function lists
                # only the jobs whose name holds its run's id, and stops only those.
                iam.PolicyStatement(sid="FindRunJobs", actions=["bedrock:ListModelInvocationJobs"], resources=["*"]),
                iam.PolicyStatement(sid="StopRunJobs", actions=["bedrock:StopModelInvocationJob"], resources=[jobs]),
            ],
        )
        reasons = {
            objects[0]: "Each caller's files and batch records live under openai/<owner hash>/, created at run time",
            runs[0]: "A batch's results are read under results/batch-<id>/ (ids are created at run time)",
            runs[1]: "A batch's progress is the existence of work/batch-<id>/records.jsonl (ids created at run time)",
            executions: "A batch's execution is named batch-<id>, created at run time, under this state machine only",
            jobs: "A cancelled batch's jobs are found at run time by their name (they hold the run's id)",
            "*": "ListModelInvocationJobs supports no resource-level permission (service authorization reference); "
            "the function lists the jobs whose name holds its batch's run id",
        }
        for resource, reason in reasons.items():
            Validations.of(self.policy).acknowledge(
                Acknowledgment(id=wildcard_resource(self, resource), reason=f"{reason}.")
            )
