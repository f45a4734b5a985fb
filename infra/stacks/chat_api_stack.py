"""ChatApiStack: the chat API, its guardrail and its monitoring."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Stack, Tags
from constructs import Construct

from infra.config import DeploymentConfig
from infra.constructs.chat_api import ChatApi
from infra.constructs.guardrail import Guardrail
from infra.constructs.monitoring.chat_api import ChatApiAlarms, ChatApiDashboard, ChatApiMetrics
from infra.constructs.monitoring.common import AlarmTopic


class ChatApiStack(Stack):
    """Composes Guardrail + ChatApi + its alarms and dashboard, and publishes what callers need as outputs."""

    def __init__(self, scope: Construct, construct_id: str, *, config: DeploymentConfig, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        Tags.of(self).add("project", "gpt-oss-bedrock")
        Tags.of(self).add("stage", config.stage)
        if config.chat.model_stand_in:
            Tags.of(self).add("model-stand-in", "true")
        self.guardrail = Guardrail(self, "Guardrail", config=config.guardrail)
        # The batch stack reads the guardrail from these parameters (never from an export: see publish()).
        self.guardrail.publish(config.stage)
        self.chat_api = ChatApi(self, "ChatApi", config=config, guardrail=self.guardrail)
        self.alarm_topic = AlarmTopic(self, "AlarmTopic", config=config)
        metrics = ChatApiMetrics(self.chat_api, config)
        self.alarms = ChatApiAlarms(self, "ChatApiAlarms", metrics=metrics, topic=self.alarm_topic)
        ChatApiDashboard(self, "ChatApiDashboard", metrics=metrics, alarms=self.alarms)

        CfnOutput(self, "ApiUrl", value=self.chat_api.url, description="OpenAI base_url (requests are SigV4-signed)")
        CfnOutput(self, "GuardrailId", value=self.guardrail.guardrail_id, description="Guardrail every call carries")
        CfnOutput(self, "GuardrailVersion", value=self.guardrail.guardrail_version, description="Its pinned version")
        CfnOutput(self, "AlarmTopicArn", value=self.alarm_topic.topic_arn, description="Alarm notifications")
        if self.chat_api.api_key is not None:
            CfnOutput(
                self,
                "ApiKeyId",
                value=self.chat_api.api_key.key_id,
                description="aws apigateway get-api-key --include-value --api-key <id>",
            )
        if config.chat.model_stand_in:
            self._load_test_outputs(config)

    def _load_test_outputs(self, config: DeploymentConfig) -> None:
        """What the deployed load tests (tests/e2e) read: the stage throttle, the function and alarm names.

        A `faultInjection` stage adds nothing here: the chat function streams its response through the AWS Lambda
        Web Adapter, which the AWS FIS Lambda extension cannot serve, so it carries no extension and this stack
        has no experiment (the pipeline functions keep theirs: infra/stacks/batch_pipeline_stack.py).
        """
        function = self.chat_api.function
        values = {
            "ThrottleRateLimit": str(config.chat.throttle_rate_limit),
            "ThrottleBurstLimit": str(config.chat.throttle_burst_limit),
            "ChatFunctionName": function.function_name,
            "ChatFunctionErrorsAlarmName": self.alarms.function_errors.alarm_name,
            "ChatApi5xxAlarmName": self.alarms.server_errors.alarm_name,
        }
        for name, value in values.items():
            CfnOutput(self, name, value=value, description="For the deployed load tests (tests/e2e)")
