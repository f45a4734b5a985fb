"""ChatApiStack: the chat API, its guardrail and its monitoring."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Stack, Tags
from constructs import Construct

from infra.config import DeploymentConfig
from infra.constructs.chat_api import ChatApi
from infra.constructs.guardrail import Guardrail
from infra.constructs.monitoring import Monitoring


class ChatApiStack(Stack):
    """Composes Guardrail + ChatApi + Monitoring and publishes what callers need as outputs."""

    def __init__(self, scope: Construct, construct_id: str, *, config: DeploymentConfig, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        Tags.of(self).add("project", "gpt-oss-bedrock")
        Tags.of(self).add("stage", config.stage)
        self.guardrail = Guardrail(self, "Guardrail", config=config.guardrail)
        # The batch stack reads the guardrail from these parameters (never from an export: see publish()).
        self.guardrail.publish(config.stage)
        self.chat_api = ChatApi(self, "ChatApi", config=config, guardrail=self.guardrail)
        self.monitoring = Monitoring(self, "Monitoring", config=config)
        self.monitoring.add_chat_api(self.chat_api)

        CfnOutput(self, "ApiUrl", value=self.chat_api.url, description="OpenAI base_url (requests are SigV4-signed)")
        CfnOutput(self, "GuardrailId", value=self.guardrail.guardrail_id, description="Guardrail every call carries")
        CfnOutput(self, "GuardrailVersion", value=self.guardrail.guardrail_version, description="Its pinned version")
        CfnOutput(self, "AlarmTopicArn", value=self.monitoring.topic.topic_arn, description="Alarm notifications")
        if self.chat_api.api_key is not None:
            CfnOutput(
                self,
                "ApiKeyId",
                value=self.chat_api.api_key.key_id,
                description="aws apigateway get-api-key --include-value --api-key <id>",
            )
