"""BatchPipelineStack: the batch pipeline and its monitoring, using the guardrail the chat stack publishes."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Stack, Tags
from constructs import Construct

from infra.config import DeploymentConfig
from infra.constructs.batch_pipeline import INBOX_PREFIX, BatchPipeline
from infra.constructs.guardrail import GuardrailReference
from infra.constructs.monitoring import Monitoring


class BatchPipelineStack(Stack):
    """Composes BatchPipeline + Monitoring; the guardrail comes from the stage's SSM parameters.

    The stack reads the guardrail id and version on every deploy (CloudFormation SSM parameter types), so
    a new guardrail version reaches the batch functions with the next deploy of this stack; deploy it
    after the chat stack that publishes them (`guardrail_publisher` adds that dependency).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeploymentConfig,
        guardrail_publisher: Stack | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        Tags.of(self).add("project", "gpt-oss-bedrock")
        Tags.of(self).add("stage", config.stage)
        if guardrail_publisher is not None:
            self.add_stack_dependency(
                guardrail_publisher, reason="the chat stack publishes the guardrail this stack reads"
            )
        guardrail = GuardrailReference.from_parameters(self, config.stage)
        self.pipeline = BatchPipeline(self, "BatchPipeline", config=config, guardrail=guardrail)
        self.monitoring = Monitoring(self, "Monitoring", config=config)
        self.monitoring.add_batch_pipeline(self.pipeline)

        bucket_name = self.pipeline.bucket.bucket_name
        CfnOutput(self, "BucketName", value=bucket_name, description="The pipeline bucket")
        CfnOutput(
            self,
            "InboxUri",
            value=f"s3://{bucket_name}/{INBOX_PREFIX}",
            description="Drop prompt files here (.jsonl, .json, .csv, .txt); results appear under results/<run>/",
        )
        CfnOutput(
            self,
            "StateMachineArn",
            value=self.pipeline.state_machine.state_machine_arn,
            description="One execution per dropped file version (the execution name is the run id)",
        )
        CfnOutput(self, "AlarmTopicArn", value=self.monitoring.topic.topic_arn, description="Alarm notifications")
