"""ChatApiStack: the chat API, its guardrail and its monitoring."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Stack, Tags
from constructs import Construct

from infra.config import DeploymentConfig
from infra.constructs.chat_api import ChatApi
from infra.constructs.fault_injection import Experiment, FaultInjection
from infra.constructs.guardrail import Guardrail
from infra.constructs.monitoring import Monitoring


class ChatApiStack(Stack):
    """Composes Guardrail + ChatApi + Monitoring and publishes what callers need as outputs."""

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
        if config.chat.model_stand_in or config.fault_injection.enabled:
            self._test_stage_outputs(config)

    def _test_stage_outputs(self, config: DeploymentConfig) -> None:
        """What the deployed load and fault tests (tests/e2e) read: throttle, function, alarms, experiments."""
        function = self.chat_api.function
        values = {
            "ThrottleRateLimit": str(config.chat.throttle_rate_limit),
            "ThrottleBurstLimit": str(config.chat.throttle_burst_limit),
            "ChatFunctionName": function.function_name,
            "ChatFunctionErrorsAlarmName": self.monitoring.alarm("ChatFunctionErrors").alarm_name,
            "ChatApi5xxAlarmName": self.monitoring.alarm("ChatApi5xx").alarm_name,
        }
        if config.fault_injection.enabled:
            timeout_ms = (config.chat.integration_timeout_seconds + 2) * 1000
            faults = FaultInjection(
                self,
                "FaultInjection",
                functions=[function],
                experiments={
                    "ChatInvocationError": Experiment(
                        "aws:lambda:invocation-error",
                        {"invocationPercentage": "100", "preventExecution": "true"},
                        "Every chat invocation fails before the function runs: callers get API Gateway's 502",
                    ),
                    "ChatInvocationDelay": Experiment(
                        "aws:lambda:invocation-add-delay",
                        {"invocationPercentage": "100", "startupDelayMilliseconds": str(timeout_ms)},
                        "Every chat invocation starts after the function's timeout: callers get API Gateway's 504",
                    ),
                },
                # Faults must not spill into Lambda throttling: that stops the experiment.
                stop_alarm=self.monitoring.alarm("ChatFunctionThrottles"),
            )
            values.update({f"Fis{name}TemplateId": template.ref for name, template in faults.templates.items()})
        for name, value in values.items():
            CfnOutput(self, name, value=value, description="For the deployed load and fault tests (tests/e2e)")
