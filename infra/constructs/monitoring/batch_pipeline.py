"""The batch pipeline's alarms (failed, timed-out, aborted and overdue runs, the DLQ, runs without an answer, the
share of records without an answer) and dashboard."""

from __future__ import annotations

from aws_cdk import aws_cloudwatch as cloudwatch
from constructs import Construct

from infra.config import DeploymentConfig
from infra.constructs.batch_pipeline import COLLECT_ID, BatchPipeline
from infra.constructs.batch_workflow import OVERDUE_METRIC_NAME
from infra.constructs.monitoring.common import PERIOD, Alarms, AlarmTopic, Dashboard, custom_metric, service_metric

# Share of collected records without an answer (error or missing), per 5-minute period.
RECORD_ERROR_RATE_PERCENT = 10


class BatchPipelineMetrics:
    """The batch pipeline's metrics, shared by its alarms and its dashboard."""

    def __init__(self, pipeline: BatchPipeline, config: DeploymentConfig) -> None:
        machine = pipeline.state_machine
        self.failed = machine.metric_failed(period=PERIOD, statistic=cloudwatch.Stats.SUM, label="Failed")
        self.timed_out = machine.metric_timed_out(period=PERIOD, statistic=cloudwatch.Stats.SUM, label="Timed out")
        self.aborted = machine.metric_aborted(period=PERIOD, statistic=cloudwatch.Stats.SUM, label="Aborted")
        self.started = machine.metric_started(period=PERIOD, statistic=cloudwatch.Stats.SUM, label="Started")
        self.succeeded = machine.metric_succeeded(period=PERIOD, statistic=cloudwatch.Stats.SUM, label="Succeeded")
        self.run_time = machine.metric_time(period=PERIOD, statistic=cloudwatch.Stats.MAXIMUM, label="Longest run (ms)")
        self.dead_letters = pipeline.dead_letter_queue.metric_approximate_number_of_messages_visible(
            period=PERIOD, statistic=cloudwatch.Stats.MAXIMUM, label="Dead letters"
        )
        self.queue_age = pipeline.queue.metric_approximate_age_of_oldest_message(
            period=PERIOD, statistic=cloudwatch.Stats.MAXIMUM, label="Oldest event (s)"
        )
        # Emitted by the state machine itself when a job has been running for batchExpectedRunHours.
        self.overdue = custom_metric(
            config, OVERDUE_METRIC_NAME, {"StateMachine": machine.state_machine_arn}, "Runs overdue"
        )
        self.records_ok = service_metric(config, COLLECT_ID, "RecordsOk", "Records ok")
        self.records_error = service_metric(config, COLLECT_ID, "RecordsError", "Records in error")
        self.records_missing = service_metric(config, COLLECT_ID, "RecordsMissing", "Records missing")
        self.lines_rejected = service_metric(config, COLLECT_ID, "RecordsRejected", "Lines rejected")
        self.runs_without_answers = service_metric(config, COLLECT_ID, "RunsFailed", "Runs with no answer")
        self.record_error_rate = cloudwatch.MathExpression(
            expression="IF(ok + errors + missing > 0, 100 * (errors + missing) / (ok + errors + missing), 0)",
            using_metrics={"ok": self.records_ok, "errors": self.records_error, "missing": self.records_missing},
            period=PERIOD,
            label="Records without an answer (%)",
        )
        functions = {
            "Starter": pipeline.starter,
            "Prepare": pipeline.prepare,
            "On demand": pipeline.on_demand,
            "Collect": pipeline.collect,
            "Job events": pipeline.job_events,
        }
        self.function_errors = [
            function.metric_errors(period=PERIOD, statistic=cloudwatch.Stats.SUM, label=label)
            for label, function in functions.items()
        ]
        self.function_durations_p99 = [
            function.metric_duration(period=PERIOD, statistic=cloudwatch.Stats.p(99), label=label)
            for label, function in functions.items()
        ]


class BatchPipelineAlarms(Alarms):
    """Failed, timed-out, aborted and overdue runs, dead letters, runs without an answer, the record error rate."""

    def __init__(
        self, scope: Construct, construct_id: str, *, metrics: BatchPipelineMetrics, topic: AlarmTopic
    ) -> None:
        super().__init__(scope, construct_id, topic=topic)
        self.runs_failed = self.count(
            "RunsFailed", metrics.failed, 1, "Batch runs failed (the summary names the reason)"
        )
        self.runs_timed_out = self.count(
            "RunsTimedOut", metrics.timed_out, 1, "Batch runs hit the state machine timeout: no summary was written"
        )
        # A Batch API cancel stops its run's execution too (the one way to be sure no shard submits another job),
        # so this also tells the operators of each cancelled batch; CloudWatch cannot tell the two apart.
        self.runs_aborted = self.count(
            "RunsAborted",
            metrics.aborted,
            1,
            "Batch runs were stopped: by hand, or by a Batch API cancel (execution batch-<id>, cause names the batch)",
        )
        self.dead_letters = self.count(
            "DeadLetters",
            metrics.dead_letters,
            1,
            "Drop events that could not start a run (or reach the queue): inspect and redrive the DLQ",
        )
        self.runs_overdue = self.count(
            "RunsOverdue",
            metrics.overdue,
            1,
            "A batch job has been running longer than batchExpectedRunHours (the run keeps waiting)",
        )
        self.runs_without_answers = self.count(
            "RunsWithoutAnswers",
            metrics.runs_without_answers,
            1,
            "Runs whose summary says FAILED: no prompt was answered (all jobs failed, or nothing valid)",
        )
        self.record_error_rate = self.above(
            "RecordErrorRate",
            metrics.record_error_rate,
            RECORD_ERROR_RATE_PERCENT,
            f"More than {RECORD_ERROR_RATE_PERCENT}% of the collected records have no answer (Bedrock record "
            "errors, or records missing from the job output)",
        )


class BatchPipelineDashboard(Dashboard):
    """Runs, run time and drop events; records and their error rate, with the alarms; each function's health."""

    def __init__(
        self, scope: Construct, construct_id: str, *, metrics: BatchPipelineMetrics, alarms: BatchPipelineAlarms
    ) -> None:
        super().__init__(scope, construct_id)
        runs = [metrics.started, metrics.succeeded, metrics.failed, metrics.timed_out, metrics.aborted]
        records = [metrics.records_ok, metrics.records_error, metrics.records_missing, metrics.lines_rejected]
        self.add_section(
            "Batch pipeline",
            [
                cloudwatch.GraphWidget(title="Runs", left=[*runs, metrics.overdue], width=12),
                cloudwatch.GraphWidget(title="Run time", left=[metrics.run_time], width=6),
                cloudwatch.GraphWidget(
                    title="Drop events", left=[metrics.dead_letters], right=[metrics.queue_age], width=6
                ),
            ],
            [
                cloudwatch.GraphWidget(title="Records", left=records, width=8),
                cloudwatch.GraphWidget(
                    title="Records without an answer (%)",
                    left=[metrics.record_error_rate],
                    left_annotations=[
                        cloudwatch.HorizontalAnnotation(value=RECORD_ERROR_RATE_PERCENT, label="Alarm threshold")
                    ],
                    width=8,
                ),
                cloudwatch.AlarmStatusWidget(title="Batch pipeline alarms", alarms=alarms.all, width=8),
            ],
            [
                cloudwatch.GraphWidget(title="Function errors", left=metrics.function_errors, width=12),
                cloudwatch.GraphWidget(
                    title="Function duration p99 (ms)", left=metrics.function_durations_p99, width=12
                ),
            ],
        )
