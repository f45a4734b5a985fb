"""BatchWorkflow: the state machine definition of one run, and the retry, lap and timeout arithmetic behind it.

Begin -> Prepare -> Route: batch     -> Shards (Distributed Map, one child execution per shard:
                                        SubmitJob -> AwaitJob -> GetJob -> JobStatus, 3 states per lap)
                           on_demand -> OnDemand
                           empty     ------------------------------------------------------> Collect -> Ended
Ended: a FAILED summary (no prompt answered) -> SummaryFailed fails the execution, naming the summary; SUCCEEDED
and PARTIAL -> Done. A failure of Prepare, Shards, OnDemand or Collect is caught: CollectFailure writes the
summary anyway, then RunFailed fails the execution. Either way the failure alarms fire. Task payloads carry
URIs, ids and counts only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from aws_cdk import Aws, Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from infra.config import JOB_TAG_RUN, JOB_TAG_SOURCE, BatchConfig

TERMINAL_JOB_STATUSES = ("Completed", "PartiallyCompleted", "Failed", "Stopped", "Expired")
# Polled again, as any status this code does not know yet (bounded by the lap limit).
RUNNING_JOB_STATUSES = ("Submitted", "Validating", "Scheduled", "InProgress", "Stopping")
# Emitted by the poll loop once a job has run for batchExpectedRunHours (alarm in monitoring.py).
OVERDUE_METRIC_NAME = "RunsOverdue"
# Prepare, on-demand and collect (twice, on the failure path), with their retries, prepare's and collect's
# crash re-runs included (7 runs of at most 15 minutes, ≈ 9 minutes of retry waits): time outside the shards.
TASKS_BUDGET = Duration.hours(2)
# More shards than MaxConcurrency run in waves; the state machine timeout covers this many, and prepare
# refuses a file that needs more jobs (MAX_JOBS_PER_RUN). The timeout is a backstop only: every shard ends
# by itself (SubmitFailed, a terminal status, PollLimit or PollFailed).
TIMEOUT_WAVES = 3
# Where AwaitJob stores a shard's task token: functions/shared/pipeline.py job_token_key (job_events reads it).
JOB_TOKENS_PREFIX = "work/job-tokens/"
# The shard's workflow variable counting successful status checks (poll laps), and its reference.
_LAPS = "laps"
_LAPS_PATH = f"${_LAPS}"
# The error of an execution whose summary is FAILED (its cause names the summary).
SUMMARY_FAILED_ERROR = "SummaryFailed"
# A JSON null in a Parameters field (CDK drops None values).
_NULL = "States.StringToJson('null')"
# The shard input's SHA-256 (hex) of the source object's key: the value of each job's `source` tag.
SOURCE_HASH_FIELD = "sourceHash"


@dataclass(frozen=True)
class RetryPolicy:
    """One Retry entry of a task."""

    errors: tuple[str, ...]
    interval_seconds: int
    max_attempts: int
    backoff_rate: float
    max_delay_seconds: int | None = None

    def add_to(self, state: sfn.TaskStateBase | sfn.CustomState) -> None:
        """Add the policy to a task's Retry (full jitter when the delay is capped)."""
        state.add_retry(
            errors=list(self.errors),
            interval=Duration.seconds(self.interval_seconds),
            max_attempts=self.max_attempts,
            backoff_rate=self.backoff_rate,
            max_delay=Duration.seconds(self.max_delay_seconds) if self.max_delay_seconds else None,
            jitter_strategy=sfn.JitterType.FULL if self.max_delay_seconds else None,
        )

    def longest_wait_seconds(self) -> float:
        """The total wait of every retry, without jitter (jitter only shortens it)."""
        waits = (self.interval_seconds * self.backoff_rate**attempt for attempt in range(self.max_attempts))
        cap = self.max_delay_seconds or math.inf
        return sum(min(wait, cap) for wait in waits)


# Transient Lambda service errors (AWS's recommendation, bp-lambda-serviceexception) and Lambda throttling.
LAMBDA_RETRY = RetryPolicy(
    (
        "Lambda.ClientExecutionTimeoutException",
        "Lambda.ServiceException",
        "Lambda.AWSLambdaException",
        "Lambda.SdkClientException",
        "Lambda.TooManyRequestsException",
    ),
    interval_seconds=2,
    max_attempts=6,
    backoff_rate=2.0,
)
# A function killed by its timeout or by running out of memory (`Lambda.Unknown`, or `Sandbox.Timedout` from
# newer runtimes): run once more, only where a re-run rewrites the same keys (prepare, collect). On-demand is
# not re-run: it would pay the model again for every prompt.
CRASH_RETRY = RetryPolicy(("Lambda.Unknown", "Sandbox.Timedout"), interval_seconds=10, max_attempts=1, backoff_rate=2.0)
# The same clientRequestToken on every attempt: a retry never creates a second job.
SUBMIT_RETRIES = (
    RetryPolicy(("Bedrock.ThrottlingException",), 5, 8, 2.0, 120),
    # Too many submitted or in-progress jobs for the model (other runs hold the slots): wait for one to end.
    RetryPolicy(("Bedrock.ServiceQuotaExceededException",), 300, 48, 1.5, 1800),
    RetryPolicy(("Bedrock.InternalServerException",), 10, 5, 2.0, 300),
)
STATUS_RETRIES = (RetryPolicy(("Bedrock.ThrottlingException", "Bedrock.InternalServerException"), 5, 6, 2.0, 120),)
OVERDUE_RETRIES = (RetryPolicy(("States.TaskFailed",), 5, 3, 2.0),)


def shard_time_bound(config: BatchConfig) -> Duration:
    """The longest one shard can take: every submit retry, then every status check up to the lap limit."""
    submit = sum(policy.longest_wait_seconds() for policy in SUBMIT_RETRIES)
    return Duration.seconds(math.ceil(submit + config.poll_lap_limit * config.poll_interval_seconds))


def run_timeout(config: BatchConfig) -> Duration:
    """The state machine timeout: above the job timeout with every margin, for TIMEOUT_WAVES waves of shards."""
    return Duration.seconds(TIMEOUT_WAVES * shard_time_bound(config).to_seconds() + TASKS_BUDGET.to_seconds())


@dataclass(frozen=True)
class JobTarget:
    """What a shard's job is created with, besides the shard itself."""

    role_arn: str  # the Bedrock batch service role
    output_key_arn: str  # the KMS key Bedrock encrypts the output with
    model_arn: str  # the foundation model (IAM scope of Create)
    job_arns: str  # model-invocation-job/* of this account and Region (IAM scope of Create and Get)
    bucket_name: str  # the pipeline bucket (AwaitJob stores the task token under JOB_TOKENS_PREFIX)


class BatchWorkflow(Construct):
    """The states of the run; `definition` is what the state machine runs, `overdue_statement` what its role
    needs beyond what the tasks grant themselves.

    Every job is tagged with its run id (`run`), the SHA-256 of the source key (`source`) and `job_tags`, the
    tags known at synth (the stage and the configured cost tags); the role may tag new jobs with those keys only.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: BatchConfig,
        metrics_namespace: str,
        prepare: lambda_.IFunction,
        on_demand: lambda_.IFunction,
        collect: lambda_.IFunction,
        target: JobTarget,
        job_tags: Mapping[str, str],
    ) -> None:
        super().__init__(scope, construct_id)
        clashing = sorted({JOB_TAG_RUN, JOB_TAG_SOURCE} & set(job_tags))
        if clashing:
            raise ValueError(f"job_tags may not set {clashing}: the workflow tags every job with them")
        self._config = config
        self._job_tags = dict(job_tags)
        self._namespace = metrics_namespace
        self._target = target
        collect_failure = self._collect("CollectFailure", collect, "Record the failure in the summary").next(
            sfn.Fail(
                self,
                "RunFailed",
                comment="The summary is written; the execution fails so that the failure alarms fire",
                error_path="$.error.Error",
                cause_path="$.error.Cause",
            )
        )
        done = self._collect(
            "Collect", collect, "Join results, write results.jsonl and summary.json", output_path="$.result"
        )
        done.add_catch(collect_failure, errors=["States.ALL"], result_path="$.error")
        done.next(
            sfn.Choice(self, "Ended", comment="A FAILED summary fails the execution; SUCCEEDED and PARTIAL succeed")
            .when(
                sfn.Condition.string_equals("$.status", "FAILED"),
                sfn.Fail(
                    self,
                    "SummaryFailed",
                    comment="The summary is written; the execution fails so that the failure alarms fire",
                    error=SUMMARY_FAILED_ERROR,
                    cause_path=sfn.JsonPath.format(
                        "summary FAILED (no prompt answered): {}", sfn.JsonPath.string_at("$.summary")
                    ),
                ),
            )
            .otherwise(sfn.Succeed(self, "Done"))
        )
        prepared = _lambda_task(
            self, "Prepare", prepare, input_path="$.source", result_path="$.prepared", rerun_after_crash=True
        )
        answered = _lambda_task(self, "OnDemand", on_demand, input_path="$.prepared", result_path="$.onDemand")
        shards = self._shards()
        for step in (prepared, answered, shards):
            step.add_catch(collect_failure, errors=["States.ALL"], result_path="$.error")
        route = (
            sfn.Choice(self, "Route", comment="The path prepare chose")
            .when(sfn.Condition.string_equals("$.prepared.path", "batch"), shards.next(done))
            .when(sfn.Condition.string_equals("$.prepared.path", "on_demand"), answered.next(done))
            .when(sfn.Condition.string_equals("$.prepared.path", "empty"), done)
        )
        # Every field collect reads exists from the start (null until a step sets it).
        begin = sfn.Pass(
            self,
            "Begin",
            parameters={
                "source": sfn.JsonPath.entire_payload,
                "prepared.$": _NULL,
                "shardOutcomes.$": _NULL,
                "onDemand.$": _NULL,
                "error.$": _NULL,
            },
        )
        self.definition: sfn.IChainable = begin.next(prepared).next(route)
        # The overdue report is a custom state (see _report_overdue): its statement is added here.
        self.overdue_statement = iam.PolicyStatement(
            sid="ReportOverdueRuns",
            actions=["cloudwatch:PutMetricData"],
            resources=["*"],
            conditions={"StringEquals": {"cloudwatch:namespace": self._namespace}},
        )

    def _collect(
        self, state_id: str, collect: lambda_.IFunction, comment: str, output_path: str | None = None
    ) -> tasks.LambdaInvoke:
        payload = sfn.TaskInput.from_object(
            {
                "source": sfn.JsonPath.object_at("$.source"),
                "prepared": sfn.JsonPath.object_at("$.prepared"),
                "shardOutcomes": sfn.JsonPath.object_at("$.shardOutcomes"),
                "onDemand": sfn.JsonPath.object_at("$.onDemand"),
                "error": sfn.JsonPath.object_at("$.error"),
                "startedAt": sfn.JsonPath.string_at("$$.Execution.StartTime"),
            }
        )
        return _lambda_task(
            self,
            state_id,
            collect,
            payload=payload,
            result_path="$.result",
            output_path=output_path,
            comment=comment,
            rerun_after_crash=True,
        )

    def _shards(self) -> sfn.DistributedMap:
        """One child execution per shard: its own 25,000-event history, however many shards a run has."""
        shards = sfn.DistributedMap(
            self,
            "Shards",
            comment="Submit and watch one batch job per shard; every shard ends with an outcome",
            items_path="$.prepared.shards",
            item_selector={
                "shard": sfn.JsonPath.object_at("$$.Map.Item.Value"),
                "runId": sfn.JsonPath.string_at("$.prepared.runId"),
                SOURCE_HASH_FIELD: sfn.JsonPath.hash(sfn.JsonPath.string_at("$.source.key"), "SHA-256"),
                "modelId": sfn.JsonPath.string_at("$.prepared.modelId"),
                "stateMachine": sfn.JsonPath.string_at("$$.StateMachine.Id"),
            },
            max_concurrency=self._config.quotas.max_concurrent_jobs,
            map_execution_type=sfn.StateMachineType.STANDARD,
            label="Shard",
            result_path="$.shardOutcomes",
        )
        shards.item_processor(self._shard_workflow())
        return shards

    def _shard_workflow(self) -> sfn.IChainable:
        """Submit, then AwaitJob -> GetJob -> JobStatus until a terminal status or the lap limit; always an outcome.

        AwaitJob stores the task token under the job's name and waits for job_events to resume it (Bedrock's
        job-state event, within seconds of the job's end), at most the reconcile interval: then GetJob checks the
        status anyway (events are best-effort). If the token cannot be stored, WaitForJob waits the interval.
        A lap is three state transitions (each one billed): GetJob counts the laps in the workflow variable
        `laps` (SubmitJob sets it to 0) and JobStatus tests the lap limit and the overdue lap beside the status.
        """
        config = self._config
        submit = self._submit_job()
        submit.add_catch(
            _outcome(self, "SubmitFailed", "SubmitFailed", message=("{}: {}", "$.error.Error", "$.error.Cause")),
            errors=["States.ALL"],
            result_path="$.error",
        )
        wait = sfn.Wait(self, "WaitForJob", time=sfn.WaitTime.duration(Duration.seconds(config.poll_interval_seconds)))
        await_job = self._await_job()
        get_job = tasks.CallAwsService(
            self,
            "GetJob",
            service="bedrock",
            action="getModelInvocationJob",
            iam_action="bedrock:GetModelInvocationJob",
            parameters={"JobIdentifier": sfn.JsonPath.string_at("$.job.jobArn")},
            iam_resources=[self._target.job_arns],
            result_path="$.poll",
            # Assigned only when the check succeeds: a retried or failed check is not a lap.
            assign={_LAPS: sfn.JsonPath.math_add(sfn.JsonPath.number_at(_LAPS_PATH), 1)},
        )
        for policy in STATUS_RETRIES:
            policy.add_to(get_job)
        # Resumed by the job's event (Next), or the reconcile interval is over: check the status either way.
        await_job.add_catch(get_job, errors=["States.Timeout"], result_path="$.awaited")
        # The token could not be stored: no event can resume the shard, so wait the interval as a poll does.
        await_job.add_catch(wait, errors=["States.ALL"], result_path="$.awaited")
        wait.next(get_job)
        get_job.add_catch(
            _outcome(
                self,
                "PollFailed",
                "PollFailed",
                job=True,
                message=("status check failed: {}: {}", "$.error.Error", "$.error.Cause"),
            ),
            errors=["States.ALL"],
            result_path="$.error",
        )
        finished = (
            sfn.Choice(self, "HasMessage")
            .when(
                sfn.Condition.is_present("$.poll.Message"),
                _outcome(self, "JobEndedWithMessage", None, job=True, message_path="$.poll.Message"),
            )
            .otherwise(_outcome(self, "JobEnded", None, job=True))
        )
        poll_limit = _outcome(
            self,
            "PollLimitReached",
            "PollLimit",
            job=True,
            message=("job still {} after {} status checks", "$.poll.Status", _LAPS_PATH),
        )
        job_status = (
            sfn.Choice(self, "JobStatus", comment="Stop before the history limit; report a run running late")
            .when(_status_in(TERMINAL_JOB_STATUSES), finished)
            # Running or a status this code does not know yet: keep polling, bounded by the lap limit.
            .when(sfn.Condition.number_greater_than_equals(_LAPS_PATH, config.poll_lap_limit), poll_limit)
            .when(sfn.Condition.number_equals(_LAPS_PATH, config.overdue_lap), self._report_overdue(await_job))
            .otherwise(await_job)
        )
        return submit.next(await_job).next(get_job).next(job_status)

    def _await_job(self) -> sfn.CustomState:
        """S3 PutObject with `.waitForTaskToken`: `{"taskToken": ...}` (a JSON body) under the job's name;
        TimeoutSeconds is the reconcile interval. job_events resumes the task with the event's detail (the status is
        read again by GetJob). A custom state, like ReportOverdue: its grants (PutObject under JOB_TOKENS_PREFIX only,
        the bucket key's GenerateDataKey) are written in batch_pipeline.py with the other grants on the bucket."""
        return sfn.CustomState(
            self,
            "AwaitJob",
            state_json={
                "Type": "Task",
                "Comment": "Store the task token under the job name; wait for the job's state event, at most the "
                "reconcile interval",
                "Resource": f"arn:{Aws.PARTITION}:states:::aws-sdk:s3:putObject.waitForTaskToken",
                "Parameters": {
                    "Bucket": self._target.bucket_name,
                    "Key.$": f"States.Format('{JOB_TOKENS_PREFIX}{{}}', $.shard.jobName)",
                    "Body": {"taskToken.$": "$$.Task.Token"},
                    "ContentType": "application/json",
                },
                "TimeoutSeconds": self._config.poll_interval_seconds,
                "ResultPath": "$.awaited",
            },
        )

    def _submit_job(self) -> tasks.CallAwsService:
        target = self._target
        tags: dict[str, str] = {
            JOB_TAG_RUN: sfn.JsonPath.string_at("$.runId"),
            JOB_TAG_SOURCE: sfn.JsonPath.string_at(f"$.{SOURCE_HASH_FIELD}"),
            **self._job_tags,
        }
        submit = tasks.CallAwsService(
            self,
            "SubmitJob",
            comment="Idempotent by clientRequestToken: a retried call never creates a second job",
            service="bedrock",
            action="createModelInvocationJob",
            iam_action="bedrock:CreateModelInvocationJob",
            parameters={
                "JobName": sfn.JsonPath.string_at("$.shard.jobName"),
                "ClientRequestToken": sfn.JsonPath.string_at("$.shard.clientRequestToken"),
                "RoleArn": target.role_arn,
                "ModelId": sfn.JsonPath.string_at("$.modelId"),
                "InputDataConfig": {
                    "S3InputDataConfig": {"S3Uri": sfn.JsonPath.string_at("$.shard.inputUri"), "S3InputFormat": "JSONL"}
                },
                "OutputDataConfig": {
                    "S3OutputDataConfig": {
                        "S3Uri": sfn.JsonPath.string_at("$.shard.outputUri"),
                        "S3EncryptionKeyId": target.output_key_arn,
                    }
                },
                "TimeoutDurationInHours": self._config.job_timeout_hours,
                "Tags": [{"Key": key, "Value": value} for key, value in tags.items()],
                "ModelInvocationType": "InvokeModel",
            },
            iam_resources=[target.model_arn, target.job_arns],
            additional_iam_statements=[
                iam.PolicyStatement(
                    sid="PassTheBatchRoleToBedrockOnly",
                    actions=["iam:PassRole"],
                    resources=[target.role_arn],
                    conditions={"StringEquals": {"iam:PassedToService": "bedrock.amazonaws.com"}},
                ),
                # Creating a job with tags is also authorised as bedrock:TagResource on the new job: only the keys
                # sent above.
                iam.PolicyStatement(
                    sid="TagNewJobsWithTheirCostTags",
                    actions=["bedrock:TagResource"],
                    resources=[target.job_arns],
                    conditions={"ForAllValues:StringEquals": {"aws:TagKeys": list(tags)}},
                ),
            ],
            result_selector={"jobArn": sfn.JsonPath.string_at("$.JobArn")},
            result_path="$.job",
            assign={_LAPS: 0},
        )
        for policy in SUBMIT_RETRIES:
            policy.add_to(submit)
        return submit

    def _report_overdue(self, then: sfn.State) -> sfn.CustomState:
        """PutMetricData through the SDK integration: a custom state, so that its IAM statement can carry a
        condition (CallAwsService writes its own, unconditioned); a failure never stops the polling."""
        state = sfn.CustomState(
            self,
            "ReportOverdue",
            state_json={
                "Type": "Task",
                "Comment": f"The job has run for {self._config.expected_run_hours} h: raise the overdue alarm",
                "Resource": f"arn:{Aws.PARTITION}:states:::aws-sdk:cloudwatch:putMetricData",
                "Parameters": {
                    "Namespace": self._namespace,
                    "MetricData": [
                        {
                            "MetricName": OVERDUE_METRIC_NAME,
                            "Dimensions": [{"Name": "StateMachine", "Value.$": "$.stateMachine"}],
                            "Value": 1,
                            "Unit": "Count",
                        }
                    ],
                },
                # Not null: keep the (empty) reply apart from the shard's state.
                "ResultPath": "$.overdue",
            },
        )
        for policy in OVERDUE_RETRIES:
            policy.add_to(state)
        state.add_catch(then, errors=["States.ALL"], result_path="$.overdue")
        state.next(then)
        return state


def _lambda_task(
    scope: Construct,
    state_id: str,
    function: lambda_.IFunction,
    *,
    result_path: str,
    payload: sfn.TaskInput | None = None,
    input_path: str | None = None,
    output_path: str | None = None,
    comment: str | None = None,
    rerun_after_crash: bool = False,
) -> tasks.LambdaInvoke:
    """A task whose result is the function's response (small by design: URIs, counts, never prompts)."""
    task = tasks.LambdaInvoke(
        scope,
        state_id,
        lambda_function=function,
        payload=payload,
        input_path=input_path,
        output_path=output_path,
        payload_response_only=True,
        retry_on_service_exceptions=False,
        result_path=result_path,
        comment=comment,
    )
    LAMBDA_RETRY.add_to(task)
    if rerun_after_crash:
        CRASH_RETRY.add_to(task)
    return task


def _outcome(
    scope: Construct,
    state_id: str,
    status: str | None,
    *,
    job: bool = False,
    message: tuple[str, ...] | None = None,
    message_path: str | None = None,
) -> sfn.Pass:
    """A shard's outcome (`ShardOutcome` of functions/batch/models.py): index, job ARN, status, message.

    `status` None: the job's own status. `message`: a States.Format template and its paths.
    """
    fields: dict[str, object] = {"index": sfn.JsonPath.number_at("$.shard.index")}
    if job:
        fields["jobArn"] = sfn.JsonPath.string_at("$.job.jobArn")
    fields["status"] = status if status is not None else sfn.JsonPath.string_at("$.poll.Status")
    if message is not None:
        template, *paths = message
        fields["message"] = sfn.JsonPath.format(template, *(sfn.JsonPath.string_at(path) for path in paths))
    elif message_path is not None:
        fields["message"] = sfn.JsonPath.string_at(message_path)
    return sfn.Pass(scope, state_id, parameters=fields)


def _status_in(statuses: tuple[str, ...]) -> sfn.Condition:
    return sfn.Condition.or_(*(sfn.Condition.string_equals("$.poll.Status", status) for status in statuses))
