"""The whole system on this machine, from one synthesis of the CDK app and one model: what `up` and `demo` run.

- One model, of the chosen backend (the offline model, an OpenAI-compatible server, or Amazon Bedrock),
  behind one loopback Bedrock runtime stand-in that the chat function and the batch functions both call.
- The batch stack in moto (`local.harness.OfflinePipeline`): the synthesized state machine executed by
  moto's Step Functions interpreter with the functions in-process, moto's fake Bedrock running batch jobs
  whose records the same model answers; its S3 on a loopback endpoint (moto's server, same state), and a
  trigger that polls the queue, so every object put under `inbox/` becomes a run through the template's
  S3 -> EventBridge rule -> SQS -> starter path.
- The chat API (`local.chat_server.running_chat_api`) in front of the real chat app (in its own process, as
  the Lambda Web Adapter runs it).
- A monitor that reports each run as it goes.

The batch functions run in this process, one invocation at a time (one lock, as one execution environment
would), with the one environment the pipeline sets when it starts; no invocation changes it. The chat function
runs in a process of its own with its template environment.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config

from infra.config import guardrail_parameter_names
from local import lambda_runtime, moto_patches
from local.bedrock import AmazonBedrock, BedrockStandIn, LocalModel, WordGuardrail, build_model, pace_words
from local.chat_server import NO_GUARDRAIL, ChatApiOptions, RunningChatApi, aws_region, chat_guardrail, running_chat_api
from local.harness import OfflinePipeline, Run
from local.services import repeating, serving
from local.templates import Template, batch_template, chat_template, stage_of

# What the local synthesis sets on top of cdk.json and -c: moto has no Service Quotas for bedrock, so the
# pipeline plans with the batchQuotas values (the deployed default reads Service Quotas first).
LOCAL_CONTEXT: Mapping[str, str] = {"batchReadServiceQuotas": "false"}
MONITOR_INTERVAL_SECONDS = 0.25

Report = Callable[[str], None]


@dataclass(frozen=True)
class SystemOptions:
    """How to run the system locally: the chat API's options (backend included) and the S3 endpoint's port."""

    chat: ChatApiOptions = field(default_factory=ChatApiOptions)
    s3_port: int = 0


@dataclass(frozen=True)
class RunningSystem:
    """The system being served: the chat API, the S3 endpoint and the bucket, and the pipeline itself."""

    chat: RunningChatApi
    s3_url: str
    bucket: str
    pipeline: OfflinePipeline
    monitor: RunMonitor
    answers: str  # who answers model calls, in words


def local_context(context: Mapping[str, str]) -> dict[str, str]:
    """The synthesis context of the local runner: `context` (from -c) with LOCAL_CONTEXT on top.

    Raises:
        ValueError: `context` sets a LOCAL_CONTEXT key to another value.
    """
    for key, value in LOCAL_CONTEXT.items():
        if context.get(key, value) != value:
            raise ValueError(f"-c {key}={context[key]} cannot run locally: moto has no Service Quotas for bedrock")
    return {**context, **LOCAL_CONTEXT}


def check_backend(options: ChatApiOptions, context: Mapping[str, str]) -> None:
    """Fail before synthesizing when the backend cannot run (the message says what to give).

    Raises:
        ValueError: the aws backend without a guardrail (options or context), a Region or credentials.
    """
    if options.backend != "aws":
        return
    if not (options.guardrail_id or context.get("guardrailId")) or not (
        options.guardrail_version or context.get("guardrailVersion")
    ):
        raise ValueError(NO_GUARDRAIL)
    aws_region()
    if boto3.session.Session().get_credentials() is None:
        raise ValueError("the aws backend needs AWS credentials (environment, profile or SSO), and found none")


@contextmanager
def running_system(
    templates: Mapping[str, Template], options: SystemOptions, *, report: Report
) -> Iterator[RunningSystem]:
    """Run the chat API and the batch pipeline of the synthesized app until the block ends; then stop everything.

    Raises:
        ValueError: the templates and options do not make a runnable system (the message says why).
        OSError: a port could not be bound.
    """
    chat, batch = chat_template(templates), batch_template(templates)
    guardrail = chat_guardrail(chat, options.chat)
    with ExitStack() as stack:
        # The interpreter logs each JSONPath it could not find as an error, even where the definition expects
        # that (an optional field): noise here, and a real failure shows in the run's status and cause.
        interpreter_log = logging.getLogger("moto.stepfunctions.parser")
        stack.callback(interpreter_log.setLevel, interpreter_log.level)
        interpreter_log.setLevel(logging.CRITICAL)
        # Built before the mock starts: with the aws backend, its client holds the real credentials.
        model, answers = _model(options.chat, guardrail)
        stack.callback(model.close)
        bedrock_url = stack.enter_context(serving(BedrockStandIn(model), "bedrock-stand-in")).url
        stage = stage_of(batch)
        parameters = guardrail_parameter_names(stage)
        pipeline = stack.enter_context(
            OfflinePipeline(
                batch,
                stage=stage,
                model=model,
                ssm={
                    parameters.guardrail_id: guardrail.guardrail_id,
                    parameters.guardrail_version: guardrail.guardrail_version,
                },
                environment={
                    "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": bedrock_url,
                    # No X-Ray daemon here; metrics would only be EMF blobs between the logs.
                    "POWERTOOLS_TRACE_DISABLED": "true",
                    "POWERTOOLS_METRICS_DISABLED": "true",
                },
            )
        )
        s3_url = stack.enter_context(pipeline.serving_s3(options.s3_port))
        api = stack.enter_context(
            running_chat_api(
                chat,
                options.chat,
                bedrock_url=bedrock_url,
                # The pipeline's moto server: the Batch API reaches the pipeline there (and the Idempotency-Key table).
                aws_url=s3_url,
            )
        )
        # Stopped in reverse: the monitor, then no function runs any more (before the chat API gives the
        # process its environment back), then the trigger.
        stack.enter_context(
            pipeline.triggering(on_error=lambda error: report(f"[batch] delivery to the starter failed: {error}"))
        )
        stack.callback(_stop_functions, report)
        monitor = RunMonitor(pipeline, report)
        stack.enter_context(monitor.running())
        yield RunningSystem(
            chat=api, s3_url=s3_url, bucket=pipeline.bucket, pipeline=pipeline, monitor=monitor, answers=answers
        )


def _stop_functions(report: Report) -> None:
    """From now on no function runs (an invocation fails at once); wait for the one running, if any."""
    lambda_runtime.clear_handlers()
    if not lambda_runtime.INVOCATION_LOCK.acquire(timeout=1.0):
        report("[batch] waiting for the function invocation in progress to end (Ctrl-C again abandons it)...")
        lambda_runtime.INVOCATION_LOCK.acquire()
    lambda_runtime.INVOCATION_LOCK.release()


def _model(options: ChatApiOptions, guardrail: WordGuardrail) -> tuple[LocalModel | AmazonBedrock, str]:
    """The model every call goes to, and who answers, in words."""
    if options.backend != "aws":
        model = build_model(
            options.backend, openai=options.openai, guardrail=guardrail, tokens_per_second=options.tokens_per_second
        )
        if options.openai is not None:
            return model, f"{options.openai.base_url} (OpenAI-compatible server)"
        return model, f"the offline model (deterministic, no network; streams {pace_words(options.tokens_per_second)})"
    check_backend(options, {"guardrailId": guardrail.guardrail_id, "guardrailVersion": guardrail.guardrail_version})
    session = boto3.session.Session()
    client = session.client(
        "bedrock-runtime",
        config=Config(retries={"mode": "standard", "max_attempts": 3}, read_timeout=300, connect_timeout=10),
    )
    moto_patches.unmocked(client)
    return AmazonBedrock(client), (
        f"Amazon Bedrock in {session.region_name} with your credentials (batch jobs emulated: each record "
        "is one real InvokeModel call)"
    )


@dataclass
class _Progress:
    finished: bool = False
    prepared: bool = False
    jobs: dict[str, str] = field(default_factory=dict)  # job name -> last status reported


class RunMonitor:
    """Reports each run of the pipeline as it goes: started, the path prepare chose, its jobs, how it ended."""

    def __init__(self, pipeline: OfflinePipeline, report: Report) -> None:
        self.pipeline = pipeline
        self.report = report
        self._runs: dict[str, _Progress] = {}
        self._polling = threading.Lock()

    @contextmanager
    def running(self) -> Iterator[None]:
        """Poll in a background thread for the duration of the block (a last poll reports what just ended)."""
        # The monitor only reports: a failed poll never stops the system.
        with repeating(
            self.poll, interval_seconds=MONITOR_INTERVAL_SECONDS, name="run-monitor", on_error=self._report_error
        ):
            yield

    def _report_error(self, error: Exception) -> None:
        self.report(f"[batch] monitor: could not read the runs ({type(error).__name__}: {error})")

    def poll(self) -> None:
        """Report what changed since the last poll (callable from any thread: each change is reported once)."""
        with self._polling:
            self._poll()

    def _poll(self) -> None:
        sfn = self.pipeline.sfn
        pages = sfn.get_paginator("list_executions").paginate(stateMachineArn=self.pipeline.state_machine_arn)
        executions = sorted(
            (execution for page in pages for execution in page["executions"]), key=lambda e: e["startDate"]
        )
        for execution in executions:
            name = execution["name"]
            progress = self._runs.get(name)
            if progress is None:
                progress = self._runs[name] = _Progress()
                source = json.loads(sfn.describe_execution(executionArn=execution["executionArn"]).get("input") or "{}")
                self.report(f"[batch] {name}: started for s3://{self.pipeline.bucket}/{source.get('key', '?')}")
            if not progress.finished:
                self._follow(name, execution["executionArn"], progress)

    def _follow(self, name: str, arn: str, progress: _Progress) -> None:
        status = self.pipeline.sfn.describe_execution(executionArn=arn)["status"]
        if not progress.prepared:
            prepared = self._prepared(arn)
            if prepared is not None:
                progress.prepared = True
                self.report(f"[batch] {name}: {_path_line(prepared)}")
        for job in self.pipeline.bedrock.for_run(name):
            if progress.jobs.get(job.request.job_name) != job.status:
                progress.jobs[job.request.job_name] = job.status
                self.report(f"[batch] {name}: job {job.request.job_name} {job.status}{_job_counts(job.counts)}")
        if status != "RUNNING":
            progress.finished = True
            run = self.pipeline.wait(name, timeout_seconds=0)
            self.report(f"[batch] {name}: {finished_line(run, self.pipeline.bucket)}")

    def _prepared(self, arn: str) -> dict[str, Any] | None:
        pages = self.pipeline.sfn.get_paginator("get_execution_history").paginate(executionArn=arn)
        for page in pages:
            for event in page["events"]:
                details = event.get("stateExitedEventDetails")
                if event["type"] == "TaskStateExited" and details and details["name"] == "Prepare":
                    prepared: dict[str, Any] | None = json.loads(details.get("output") or "{}").get("prepared")
                    return prepared
        return None


def _path_line(prepared: Mapping[str, Any]) -> str:
    counts = f"{prepared['recordCount']} prompt(s) accepted, {prepared['rejectedCount']} rejected"
    path = prepared["path"]
    if path == "batch":
        jobs = len(prepared.get("shards", []))
        return f"{counts} -> batch path, {jobs} batch inference job(s)"
    if path == "on_demand":
        return f"{counts} -> on-demand path (too few for a batch job: Converse, with the guardrail)"
    return f"{counts} -> nothing to run"


def _job_counts(counts: Mapping[str, int]) -> str:
    if "totalRecordCount" not in counts:
        return ""
    return (
        f" ({counts['totalRecordCount']} records: {counts.get('successRecordCount', 0)} ok, "
        f"{counts.get('errorRecordCount', 0)} failed)"
    )


def finished_line(run: Run, bucket: str) -> str:
    """How a run ended, in one line: the execution's status, the summary's, the counts and where to look."""
    if run.summary is None:
        return f"{run.status} without a summary ({run.error}: {run.cause})"
    counts = run.summary["counts"]
    return (
        f"{run.status}, summary {run.summary['status']}, path {run.summary['path']}: {counts['ok']} ok, "
        f"{counts['error']} error, {counts['missing']} missing, {counts['rejected']} rejected "
        f"-> s3://{bucket}/results/{run.run_id}/"
    )


def wait_for_run(pipeline: OfflinePipeline, key: str, version_id: str, *, deadline: float) -> Run:
    """The run a dropped object version started, once it has ended.

    Raises:
        TimeoutError: no run started, or it did not end, before `deadline` (a `time.monotonic()` value).
    """
    while (run_id := pipeline.run_of(key, version_id)) is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no run started for {key} (version {version_id})")
        time.sleep(0.1)
    return pipeline.wait(run_id, timeout_seconds=max(0.0, deadline - time.monotonic()))
