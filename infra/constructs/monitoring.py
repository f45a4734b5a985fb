"""Monitoring: one dashboard and one alarm topic per stack; each part of the app adds its alarms and panels."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from infra.config import DeploymentConfig
from infra.constructs.batch_pipeline import COLLECT_ID, BatchPipeline
from infra.constructs.batch_workflow import OVERDUE_METRIC_NAME
from infra.constructs.chat_api import ChatApi
from infra.constructs.encryption import stack_key
from infra.constructs.python_function import metrics_namespace

PERIOD = Duration.minutes(5)
# Chat API thresholds, per 5-minute period.
API_5XX_THRESHOLD = 5
API_429_THRESHOLD = 10
# p99 latency above this share of the integration timeout: requests are about to hit the deadline.
LATENCY_DEADLINE_SHARE = 0.8
GUARDRAIL_INTERVENTIONS_THRESHOLD = 20
# The function maps every error to a response, so any unhandled error or throttle is worth a look.
FUNCTION_ERRORS_THRESHOLD = 1
FUNCTION_THROTTLES_THRESHOLD = 1
GUARDRAIL_METRIC_NAME = "GuardrailIntervened"
# Batch pipeline: share of collected records without an answer (error or missing), per 5-minute period.
RECORD_ERROR_RATE_PERCENT = 10


class Monitoring(Construct):
    """A dashboard and an encrypted, TLS-only SNS topic that every alarm added here notifies.

    Each part of the app has one `add_*` method that creates its alarms and dashboard panels; a part
    living in another stack creates its own `Monitoring` there and calls its method.
    """

    def __init__(self, scope: Construct, construct_id: str, *, config: DeploymentConfig) -> None:
        super().__init__(scope, construct_id)
        self._namespace = metrics_namespace(config)
        # CloudWatch cannot publish to a topic encrypted with the AWS managed SNS key: it needs a key
        # whose policy lets the CloudWatch service use it.
        self.key = stack_key(self)
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchAlarmsPublish",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
            )
        )
        self.topic = sns.Topic(self, "AlarmTopic", display_name="gpt-oss alarms", master_key=self.key, enforce_ssl=True)
        if config.alarm_email is not None:
            self.topic.add_subscription(subscriptions.EmailSubscription(config.alarm_email))
        self.dashboard = cloudwatch.Dashboard(self, "Dashboard", default_interval=Duration.hours(3))
        self.alarms: list[cloudwatch.Alarm] = []

    def add_alarm(self, alarm: cloudwatch.Alarm) -> cloudwatch.Alarm:
        """Notify the topic when the alarm fires and when it recovers."""
        action = cloudwatch_actions.SnsAction(self.topic)
        alarm.add_alarm_action(action)
        alarm.add_ok_action(action)
        self.alarms.append(alarm)
        return alarm

    def alarm(self, construct_id: str) -> cloudwatch.Alarm:
        """One of the alarms added so far, by its construct id (e.g. `ChatFunctionErrors`)."""
        found = self.node.try_find_child(construct_id)
        if not isinstance(found, cloudwatch.Alarm):
            raise KeyError(f"no alarm {construct_id!r}; alarms: {[alarm.node.id for alarm in self.alarms]}")
        return found

    def add_panel(self, title: str, *rows: list[cloudwatch.IWidget]) -> None:
        """Add a titled section of widget rows to the dashboard."""
        self.dashboard.add_widgets(cloudwatch.TextWidget(markdown=f"## {title}", width=24, height=1))
        for row in rows:
            self.dashboard.add_widgets(*row)

    def add_chat_api(self, chat_api: ChatApi) -> None:
        """Alarms and panels of the chat API: 5xx, 429, latency near the deadline, guardrail, function health."""
        # Stage metrics (dimensions ApiName + Stage): exactly this deployment's traffic.
        stage, function = chat_api.api.deployment_stage, chat_api.function
        server_errors = stage.metric_server_error(period=PERIOD, statistic=cloudwatch.Stats.SUM, label="5XX")
        client_errors = stage.metric_client_error(period=PERIOD, statistic=cloudwatch.Stats.SUM, label="4XX")
        requests = stage.metric_count(period=PERIOD, statistic=cloudwatch.Stats.SUM, label="Requests")
        latency_p99 = stage.metric_latency(period=PERIOD, statistic=cloudwatch.Stats.p(99), label="Latency p99")
        integration_p99 = stage.metric_integration_latency(
            period=PERIOD, statistic=cloudwatch.Stats.p(99), label="Integration latency p99"
        )
        interventions = self._service_metric(chat_api.service_name, GUARDRAIL_METRIC_NAME, "Guardrail interventions")
        input_tokens = self._service_metric(chat_api.service_name, "InputTokens", "Input tokens")
        output_tokens = self._service_metric(chat_api.service_name, "OutputTokens", "Output tokens")
        function_errors = function.metric_errors(period=PERIOD, statistic=cloudwatch.Stats.SUM)
        function_throttles = function.metric_throttles(period=PERIOD, statistic=cloudwatch.Stats.SUM)
        deadline_ms = chat_api.integration_timeout.to_milliseconds() * LATENCY_DEADLINE_SHARE

        alarms = [
            self._count_alarm(
                "ChatApi5xx", server_errors, API_5XX_THRESHOLD, "Chat API answered with 5XX (server or model errors)"
            ),
            self._count_alarm(
                "ChatApi429",
                chat_api.throttled_requests,
                API_429_THRESHOLD,
                "Chat API answered with 429 (stage or usage-plan throttle, or Bedrock throttling)",
            ),
            self.add_alarm(
                cloudwatch.Alarm(
                    self,
                    "ChatApiLatencyNearDeadline",
                    metric=latency_p99,
                    threshold=deadline_ms,
                    comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                    evaluation_periods=3,
                    datapoints_to_alarm=2,
                    treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                    alarm_description=f"Chat API p99 latency above {LATENCY_DEADLINE_SHARE:.0%} of the "
                    "integration timeout: answers are about to time out",
                )
            ),
            self._count_alarm(
                "GuardrailInterventions",
                interventions,
                GUARDRAIL_INTERVENTIONS_THRESHOLD,
                "Many requests or answers blocked by the guardrail (possible misuse, or a too strict policy)",
            ),
            self._count_alarm(
                "ChatFunctionErrors", function_errors, FUNCTION_ERRORS_THRESHOLD, "Unhandled chat function errors"
            ),
            self._count_alarm(
                "ChatFunctionThrottles",
                function_throttles,
                FUNCTION_THROTTLES_THRESHOLD,
                "Chat function invocations throttled by Lambda concurrency",
            ),
        ]
        self.add_panel(
            "Chat API",
            [
                cloudwatch.GraphWidget(
                    title="Requests and errors",
                    left=[requests, client_errors, server_errors, chat_api.throttled_requests],
                    width=12,
                ),
                cloudwatch.GraphWidget(
                    title="Latency (ms)",
                    left=[latency_p99, integration_p99],
                    left_annotations=[
                        cloudwatch.HorizontalAnnotation(value=deadline_ms, label="Alarm threshold"),
                        cloudwatch.HorizontalAnnotation(
                            value=chat_api.integration_timeout.to_milliseconds(), label="Integration timeout"
                        ),
                    ],
                    width=12,
                ),
            ],
            [
                cloudwatch.GraphWidget(title="Guardrail interventions", left=[interventions], width=6),
                # Bedrock quotas are tokens per minute: this is what capacity is measured in.
                cloudwatch.GraphWidget(title="Tokens", left=[input_tokens, output_tokens], width=6),
                cloudwatch.GraphWidget(
                    title="Chat function",
                    left=[function.metric_invocations(period=PERIOD), function_errors, function_throttles],
                    right=[function.metric_duration(period=PERIOD, statistic=cloudwatch.Stats.p(99))],
                    width=6,
                ),
                cloudwatch.AlarmStatusWidget(title="Chat API alarms", alarms=alarms, width=6),
            ],
        )

    def add_batch_pipeline(self, pipeline: BatchPipeline) -> None:
        """Alarms and panels of the batch pipeline: failed, timed-out, aborted and overdue runs, the DLQ,
        runs whose summary says FAILED and the share of records without an answer."""
        machine = pipeline.state_machine
        failed = machine.metric_failed(period=PERIOD, statistic=cloudwatch.Stats.SUM, label="Failed")
        timed_out = machine.metric_timed_out(period=PERIOD, statistic=cloudwatch.Stats.SUM, label="Timed out")
        aborted = machine.metric_aborted(period=PERIOD, statistic=cloudwatch.Stats.SUM, label="Aborted")
        started = machine.metric_started(period=PERIOD, statistic=cloudwatch.Stats.SUM, label="Started")
        succeeded = machine.metric_succeeded(period=PERIOD, statistic=cloudwatch.Stats.SUM, label="Succeeded")
        run_time = machine.metric_time(period=PERIOD, statistic=cloudwatch.Stats.MAXIMUM, label="Longest run (ms)")
        dead_letters = pipeline.dead_letter_queue.metric_approximate_number_of_messages_visible(
            period=PERIOD, statistic=cloudwatch.Stats.MAXIMUM, label="Dead letters"
        )
        queue_age = pipeline.queue.metric_approximate_age_of_oldest_message(
            period=PERIOD, statistic=cloudwatch.Stats.MAXIMUM, label="Oldest event (s)"
        )
        # Emitted by the state machine itself when a job has been running for batchExpectedRunHours.
        overdue = cloudwatch.Metric(
            namespace=self._namespace,
            metric_name=OVERDUE_METRIC_NAME,
            dimensions_map={"StateMachine": machine.state_machine_arn},
            statistic=cloudwatch.Stats.SUM,
            period=PERIOD,
            label="Runs overdue",
        )
        ok = self._service_metric(COLLECT_ID, "RecordsOk", "Records ok")
        errors = self._service_metric(COLLECT_ID, "RecordsError", "Records in error")
        missing = self._service_metric(COLLECT_ID, "RecordsMissing", "Records missing")
        rejected = self._service_metric(COLLECT_ID, "RecordsRejected", "Lines rejected")
        runs_failed = self._service_metric(COLLECT_ID, "RunsFailed", "Runs with no answer")
        error_rate = cloudwatch.MathExpression(
            expression="IF(ok + errors + missing > 0, 100 * (errors + missing) / (ok + errors + missing), 0)",
            using_metrics={"ok": ok, "errors": errors, "missing": missing},
            period=PERIOD,
            label="Records without an answer (%)",
        )
        alarms = [
            self._count_alarm("BatchRunsFailed", failed, 1, "Batch runs failed (the summary names the reason)"),
            self._count_alarm(
                "BatchRunsTimedOut", timed_out, 1, "Batch runs hit the state machine timeout: no summary was written"
            ),
            self._count_alarm("BatchRunsAborted", aborted, 1, "Batch runs were stopped by hand"),
            self._count_alarm(
                "BatchDeadLetters",
                dead_letters,
                1,
                "Drop events that could not start a run (or reach the queue): inspect and redrive the DLQ",
            ),
            self._count_alarm(
                "BatchRunsOverdue",
                overdue,
                1,
                "A batch job has been running longer than batchExpectedRunHours (the run keeps waiting)",
            ),
            self._count_alarm(
                "BatchRunsWithoutAnswers",
                runs_failed,
                1,
                "Runs whose summary says FAILED: no prompt was answered (all jobs failed, or nothing valid)",
            ),
            self.add_alarm(
                cloudwatch.Alarm(
                    self,
                    "BatchRecordErrorRate",
                    metric=error_rate,
                    threshold=RECORD_ERROR_RATE_PERCENT,
                    comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                    evaluation_periods=1,
                    treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                    alarm_description=f"More than {RECORD_ERROR_RATE_PERCENT}% of the collected records have "
                    "no answer (Bedrock record errors, or records missing from the job output)",
                )
            ),
        ]
        functions = {
            "Starter": pipeline.starter,
            "Prepare": pipeline.prepare,
            "On demand": pipeline.on_demand,
            "Collect": pipeline.collect,
        }
        self.add_panel(
            "Batch pipeline",
            [
                cloudwatch.GraphWidget(
                    title="Runs", left=[started, succeeded, failed, timed_out, aborted, overdue], width=12
                ),
                cloudwatch.GraphWidget(title="Run time", left=[run_time], width=6),
                cloudwatch.GraphWidget(title="Drop events", left=[dead_letters], right=[queue_age], width=6),
            ],
            [
                cloudwatch.GraphWidget(title="Records", left=[ok, errors, missing, rejected], width=8),
                cloudwatch.GraphWidget(
                    title="Records without an answer (%)",
                    left=[error_rate],
                    left_annotations=[
                        cloudwatch.HorizontalAnnotation(value=RECORD_ERROR_RATE_PERCENT, label="Alarm threshold")
                    ],
                    width=8,
                ),
                cloudwatch.AlarmStatusWidget(title="Batch pipeline alarms", alarms=alarms, width=8),
            ],
            [
                cloudwatch.GraphWidget(
                    title="Function errors",
                    left=[
                        function.metric_errors(period=PERIOD, statistic=cloudwatch.Stats.SUM, label=label)
                        for label, function in functions.items()
                    ],
                    width=12,
                ),
                cloudwatch.GraphWidget(
                    title="Function duration p99 (ms)",
                    left=[
                        function.metric_duration(period=PERIOD, statistic=cloudwatch.Stats.p(99), label=label)
                        for label, function in functions.items()
                    ],
                    width=12,
                ),
            ],
        )

    def _service_metric(self, service: str, metric_name: str, label: str) -> cloudwatch.Metric:
        """A count the function emits through Powertools (EMF): dimension `service` = its service name."""
        return cloudwatch.Metric(
            namespace=self._namespace,
            metric_name=metric_name,
            dimensions_map={"service": service},
            statistic=cloudwatch.Stats.SUM,
            period=PERIOD,
            label=label,
        )

    def _count_alarm(
        self, construct_id: str, metric: cloudwatch.IMetric, threshold: float, description: str
    ) -> cloudwatch.Alarm:
        return self.add_alarm(
            cloudwatch.Alarm(
                self,
                construct_id,
                metric=metric,
                threshold=threshold,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                evaluation_periods=1,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                alarm_description=description,
            )
        )
