"""The chat API's alarms (5xx, 429, latency near the deadline, guardrail, function health) and dashboard."""

from __future__ import annotations

from aws_cdk import aws_cloudwatch as cloudwatch
from constructs import Construct

from infra.config import DeploymentConfig
from infra.constructs.chat_api import ChatApi
from infra.constructs.monitoring.common import PERIOD, Alarms, AlarmTopic, Dashboard, custom_metric, service_metric

# Thresholds, per 5-minute period.
API_5XX_THRESHOLD = 5
API_429_THRESHOLD = 10
# p99 latency above this share of the integration timeout: requests are about to hit the deadline.
LATENCY_DEADLINE_SHARE = 0.8
GUARDRAIL_INTERVENTIONS_THRESHOLD = 20
# The function maps every error to a response, so any unhandled error or throttle is worth a look.
FUNCTION_ERRORS_THRESHOLD = 1
FUNCTION_THROTTLES_THRESHOLD = 1
GUARDRAIL_METRIC_NAME = "GuardrailIntervened"


class ChatApiMetrics:
    """The chat API's metrics, shared by its alarms and its dashboard.

    Stage metrics (dimensions ApiName + Stage) are exactly this deployment's traffic; the function's own
    counts (Powertools EMF) carry its service name, and an answer's counts also the `ServiceTier` that served it.
    """

    def __init__(self, chat_api: ChatApi, config: DeploymentConfig) -> None:
        stage, function, service = chat_api.api.deployment_stage, chat_api.function, chat_api.service_name
        self.server_errors = stage.metric_server_error(period=PERIOD, statistic=cloudwatch.Stats.SUM, label="5XX")
        self.client_errors = stage.metric_client_error(period=PERIOD, statistic=cloudwatch.Stats.SUM, label="4XX")
        self.throttled = chat_api.throttled_requests
        self.requests = stage.metric_count(period=PERIOD, statistic=cloudwatch.Stats.SUM, label="Requests")
        self.latency_p99 = stage.metric_latency(period=PERIOD, statistic=cloudwatch.Stats.p(99), label="Latency p99")
        self.integration_latency_p99 = stage.metric_integration_latency(
            period=PERIOD, statistic=cloudwatch.Stats.p(99), label="Integration latency p99"
        )
        self.integration_timeout_ms = chat_api.integration_timeout.to_milliseconds()
        self.deadline_ms = self.integration_timeout_ms * LATENCY_DEADLINE_SHARE
        self.interventions = service_metric(config, service, GUARDRAIL_METRIC_NAME, "Guardrail interventions")
        self.input_tokens = service_metric(config, service, "InputTokens", "Input tokens")
        self.output_tokens = service_metric(config, service, "OutputTokens", "Output tokens")
        # Tiers are priced apart: the tokens of each tier the stage allows (functions/chat/service.py).
        self.tokens_by_tier = [
            custom_metric(config, name, {"service": service, "ServiceTier": tier}, f"{label} ({tier})")
            for tier in config.chat.service_tiers
            for name, label in (("InputTokens", "Input tokens"), ("OutputTokens", "Output tokens"))
        ]
        self.invocations = function.metric_invocations(period=PERIOD)
        self.function_errors = function.metric_errors(period=PERIOD, statistic=cloudwatch.Stats.SUM)
        self.function_throttles = function.metric_throttles(period=PERIOD, statistic=cloudwatch.Stats.SUM)
        self.function_duration_p99 = function.metric_duration(period=PERIOD, statistic=cloudwatch.Stats.p(99))


class ChatApiAlarms(Alarms):
    """5xx, 429s, p99 latency near the integration timeout, guardrail interventions, function errors and throttles."""

    def __init__(self, scope: Construct, construct_id: str, *, metrics: ChatApiMetrics, topic: AlarmTopic) -> None:
        super().__init__(scope, construct_id, topic=topic)
        self.server_errors = self.count(
            "Api5xx", metrics.server_errors, API_5XX_THRESHOLD, "Chat API answered with 5XX (server or model errors)"
        )
        self.throttled = self.count(
            "Api429",
            metrics.throttled,
            API_429_THRESHOLD,
            "Chat API answered with 429 (stage or usage-plan throttle, or Bedrock throttling)",
        )
        self.latency = self.above(
            "ApiLatencyNearDeadline",
            metrics.latency_p99,
            metrics.deadline_ms,
            f"Chat API p99 latency above {LATENCY_DEADLINE_SHARE:.0%} of the integration timeout: answers are "
            "about to time out",
            evaluation_periods=3,
            datapoints_to_alarm=2,
        )
        self.guardrail_interventions = self.count(
            "GuardrailInterventions",
            metrics.interventions,
            GUARDRAIL_INTERVENTIONS_THRESHOLD,
            "Many requests or answers blocked by the guardrail (possible misuse, or a too strict policy)",
        )
        self.function_errors = self.count(
            "FunctionErrors", metrics.function_errors, FUNCTION_ERRORS_THRESHOLD, "Unhandled chat function errors"
        )
        self.function_throttles = self.count(
            "FunctionThrottles",
            metrics.function_throttles,
            FUNCTION_THROTTLES_THRESHOLD,
            "Chat function invocations throttled by Lambda concurrency",
        )


class ChatApiDashboard(Dashboard):
    """Requests, errors and latency; guardrail, function and alarms; tokens, in all and per service tier."""

    def __init__(self, scope: Construct, construct_id: str, *, metrics: ChatApiMetrics, alarms: ChatApiAlarms) -> None:
        super().__init__(scope, construct_id)
        self.add_section(
            "Chat API",
            [
                cloudwatch.GraphWidget(
                    title="Requests and errors",
                    left=[metrics.requests, metrics.client_errors, metrics.server_errors, metrics.throttled],
                    width=12,
                ),
                cloudwatch.GraphWidget(
                    title="Latency (ms)",
                    left=[metrics.latency_p99, metrics.integration_latency_p99],
                    left_annotations=[
                        cloudwatch.HorizontalAnnotation(value=metrics.deadline_ms, label="Alarm threshold"),
                        cloudwatch.HorizontalAnnotation(
                            value=metrics.integration_timeout_ms, label="Integration timeout"
                        ),
                    ],
                    width=12,
                ),
            ],
            [
                cloudwatch.GraphWidget(title="Guardrail interventions", left=[metrics.interventions], width=8),
                cloudwatch.GraphWidget(
                    title="Chat function",
                    left=[metrics.invocations, metrics.function_errors, metrics.function_throttles],
                    right=[metrics.function_duration_p99],
                    width=8,
                ),
                cloudwatch.AlarmStatusWidget(title="Chat API alarms", alarms=alarms.all, width=8),
            ],
            [
                # Bedrock quotas are tokens per minute: this is what capacity is measured in.
                cloudwatch.GraphWidget(title="Tokens", left=[metrics.input_tokens, metrics.output_tokens], width=12),
                cloudwatch.GraphWidget(title="Tokens by service tier", left=metrics.tokens_by_tier, width=12),
            ],
        )
