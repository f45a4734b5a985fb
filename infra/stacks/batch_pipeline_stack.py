"""BatchPipelineStack: the batch pipeline and its monitoring, using the guardrail the chat stack publishes."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Stack, Tags
from constructs import Construct

from infra.config import DeploymentConfig
from infra.constructs.batch_api_access import BatchApiAccess
from infra.constructs.batch_pipeline import INBOX_PREFIX, BatchPipeline
from infra.constructs.fault_injection import Experiment, FaultInjection
from infra.constructs.guardrail import GuardrailReference
from infra.constructs.monitoring.batch_pipeline import (
    BatchPipelineAlarms,
    BatchPipelineDashboard,
    BatchPipelineMetrics,
)
from infra.constructs.monitoring.common import AlarmTopic


class BatchPipelineStack(Stack):
    """Composes BatchPipeline + its alarms and dashboard; the guardrail comes from the stage's SSM parameters.

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
        pipeline = self.pipeline
        self.batch_api = BatchApiAccess(
            self,
            "BatchApiAccess",
            stage=config.stage,
            bucket_arn=pipeline.bucket.bucket_arn,
            bucket_name=pipeline.bucket.bucket_name,
            key_arn=pipeline.key.key_arn,
            state_machine_arn=pipeline.state_machine.state_machine_arn,
            state_machine_name=pipeline.state_machine.state_machine_name,
            job_arns=pipeline.job_arns,
        )
        self.alarm_topic = AlarmTopic(self, "AlarmTopic", config=config)
        metrics = BatchPipelineMetrics(self.pipeline, config)
        self.alarms = BatchPipelineAlarms(self, "BatchPipelineAlarms", metrics=metrics, topic=self.alarm_topic)
        BatchPipelineDashboard(self, "BatchPipelineDashboard", metrics=metrics, alarms=self.alarms)

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
        CfnOutput(self, "AlarmTopicArn", value=self.alarm_topic.topic_arn, description="Alarm notifications")
        if config.fault_injection.enabled:
            self._fault_injection()

    def _fault_injection(self) -> None:
        pipeline = self.pipeline
        faults = FaultInjection(
            self,
            "FaultInjection",
            functions=[pipeline.starter, pipeline.prepare, pipeline.on_demand, pipeline.collect, pipeline.job_events],
            experiments={
                "PipelineInvocationError": Experiment(
                    "aws:lambda:invocation-error",
                    {"invocationPercentage": "50", "preventExecution": "true"},
                    "Half the pipeline invocations fail before the function runs: the state machine retries them",
                ),
                "PipelineInvocationDelay": Experiment(
                    "aws:lambda:invocation-add-delay",
                    {"invocationPercentage": "100", "startupDelayMilliseconds": "3000"},
                    "Every pipeline invocation starts 3 s late",
                ),
            },
            # A message lost to the dead-letter queue means the faults got past the pipeline's retries.
            stop_alarm=self.alarms.dead_letters,
        )
        for name, template in faults.templates.items():
            CfnOutput(self, f"Fis{name}TemplateId", value=template.ref, description="AWS FIS experiment template")
        CfnOutput(
            self,
            "BatchRunsFailedAlarmName",
            value=self.alarms.runs_failed.alarm_name,
            description="For the deployed fault test (tests/e2e)",
        )
