"""Bedrock in the batch stack's moto account: the batch-job control plane, and Converse / ApplyGuardrail.

`FakeBedrock` is Bedrock of one account and Region as the batch pipeline sees it inside moto:
`CreateModelInvocationJob` / `GetModelInvocationJob` / `ListModelInvocationJobs` / `StopModelInvocationJob` (jobs
idempotent on `clientRequestToken`, going Submitted -> InProgress -> a terminal status over successive status
checks, and on completion writing output in Bedrock's layout and line format, shuffled, to moto's S3), the tags a
job was created with (`ListTagsForResource`), and `Converse` / `ApplyGuardrail`. A job reaching its terminal status
(at a status check, by `finish`, or after its scenario's `runs_for_seconds`) emits Bedrock's "Batch Inference Job
State Change" event to `publish` (the harness puts it on moto's EventBridge) unless `emit_events` is off (a lost
event). Every answer comes from one `Model`: the local runner's (`local.bedrock`), by default its offline model,
unpaced (`offline_model`). A `JobScenario` per job picks the terminal status, failed and unprocessed records;
`create_errors` / `status_errors` fail the next creates / status checks with the Bedrock errors named.

Nothing here knows moto: `local.moto_patches` adds the operations to moto's responses, keeps one `FakeBedrock` per
account and Region on moto's bedrock backend (`fake_bedrock`) and turns a `ModelError` into moto's error.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import random
import re
import threading
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Literal

import boto3

from local.bedrock.backends import build_model
from local.bedrock.model import Model
from local.bedrock.shapes import ModelError

TERMINAL_STATUSES = ("Completed", "PartiallyCompleted", "Failed", "Stopped", "Expired")
# Bedrock's job-state events (EventBridge, default bus): source, detail-type.
EVENT_SOURCE = "aws.bedrock"
JOB_STATE_CHANGE = "Batch Inference Job State Change"
# Statuses whose job wrote output files (Failed and Expired jobs write none).
_WITH_OUTPUT = ("Completed", "PartiallyCompleted", "Stopped")
_JOB_NAME = re.compile(r"[a-zA-Z0-9]{1,63}(-*[a-zA-Z0-9\+\-\.]){0,63}")
_S3_URI = re.compile(r"^s3://(?P<bucket>[^/]+)/(?P<key>.*)$")

JobStatus = Literal["Completed", "PartiallyCompleted", "Failed", "Stopped", "Expired"]


@dataclasses.dataclass(frozen=True)
class JobScenario:
    """How one fake job ends.

    `polls`: status checks that answer InProgress before the terminal status is reached (a larger number
    than the state machine's lap limit keeps a job running forever). `failed_records`: the first N records
    of each input file get an `error` line. `unprocessed_records`: the last N get no line at all (what a
    PartiallyCompleted or Stopped job leaves). Failed and Expired jobs write no output. `runs_for_seconds`:
    the job also ends by itself that long after its creation, as a real job does (None: only status checks, or
    `FakeBedrock.finish`, end it).
    """

    status: JobStatus = "Completed"
    message: str | None = None
    polls: int = 1
    runs_for_seconds: float | None = None
    failed_records: int = 0
    unprocessed_records: int = 0


@dataclasses.dataclass(frozen=True)
class JobRequest:
    """What a CreateModelInvocationJob call asked for (the parts scenarios choose on)."""

    job_name: str
    client_request_token: str | None
    model_id: str
    role_arn: str
    input_uri: str
    output_uri: str
    output_key_id: str | None
    timeout_hours: int
    tags: Mapping[str, str]
    invocation_type: str


@dataclasses.dataclass
class FakeJob:
    """One model invocation job and its progress."""

    job_id: str
    arn: str
    request: JobRequest
    scenario: JobScenario
    submitted: datetime.datetime
    status: str = "Submitted"
    checks: int = 0
    ended: datetime.datetime | None = None
    counts: dict[str, int] = dataclasses.field(default_factory=dict)


def offline_model() -> Model:
    """The local runner's offline model, unpaced, with its word-list guardrail: what answers when no model is given."""
    return build_model("offline", tokens_per_second=None)


class FakeBedrock:
    """Bedrock of one account and Region, offline: batch jobs, Converse and ApplyGuardrail from one `Model`.

    Thread-safe (shards run in parallel). Set `model`, `scenario` and `create_errors` before a run.
    """

    def __init__(self, account_id: str, region: str) -> None:
        self.account_id = account_id
        self.region = region
        self.model: Model = offline_model()
        self.scenario: Callable[[JobRequest], JobScenario] = lambda _request: JobScenario()
        self.create_errors: list[str] = []
        self.status_errors: list[str] = []
        self.create_calls = 0
        self.jobs: dict[str, FakeJob] = {}
        self.converse_requests: list[dict[str, Any]] = []
        # Where a job's terminal state-change event goes (EventBridge's PutEvents entry; None: nowhere), whether
        # it goes at all (False: the event is lost, as best-effort delivery may), and every event emitted.
        self.publish: Callable[[dict[str, Any]], object] | None = None
        self.emit_events = True
        self.events: list[dict[str, Any]] = []
        self._tokens: dict[str, str] = {}
        self._lock = threading.RLock()

    def create(self, params: Mapping[str, Any]) -> str:
        """CreateModelInvocationJob: the job ARN; the same clientRequestToken returns the same job."""
        with self._lock:
            self.create_calls += 1
            if self.create_errors:
                code = self.create_errors.pop(0)
                raise ModelError(code, f"{code} (simulated)")
            request = _job_request(params)
            token = request.client_request_token
            if token is not None and token in self._tokens:
                return self.jobs[self._tokens[token]].arn
            if any(job.request.job_name == request.job_name for job in self.jobs.values()):
                raise ModelError("ConflictException", f"a job named {request.job_name} already exists")
            seed = token or uuid.uuid4().hex
            job_id = hashlib.sha256(f"{self.account_id}/{seed}".encode()).hexdigest()[:12]
            arn = f"arn:aws:bedrock:{self.region}:{self.account_id}:model-invocation-job/{job_id}"
            now = datetime.datetime.now(datetime.UTC)
            job = self.jobs[job_id] = FakeJob(job_id, arn, request, self.scenario(request), now)
            if token is not None:
                self._tokens[token] = job_id
            if job.scenario.runs_for_seconds is not None:
                timer = threading.Timer(job.scenario.runs_for_seconds, self.finish, [arn])
                timer.daemon = True
                timer.start()
            return arn

    def get(self, identifier: str) -> dict[str, Any]:
        """GetModelInvocationJob: each call advances the job one step towards its scenario's end."""
        with self._lock:
            if self.status_errors:
                code = self.status_errors.pop(0)
                raise ModelError(code, f"{code} (simulated)")
            job = self._job(identifier)
            ended = self._advance(job)
            described = _describe(job)
        if ended:
            self._emit(job)
        return described

    def finish(self, identifier: str) -> None:
        """End a job now, with its scenario's terminal status (as when the job ends by itself)."""
        with self._lock:
            job = self._job(identifier)
            job.checks = max(job.checks, job.scenario.polls)
            ended = self._advance(job)
        if ended:
            self._emit(job)

    def list_jobs(self, name_contains: str | None = None) -> dict[str, Any]:
        """ListModelInvocationJobs (one page, newest first): the jobs whose name contains `name_contains`."""
        with self._lock:
            jobs = [job for job in self.jobs.values() if name_contains is None or name_contains in job.request.job_name]
            summaries = [_describe(job) for job in sorted(jobs, key=lambda job: job.submitted, reverse=True)]
        return {"invocationJobSummaries": summaries}

    def stop(self, identifier: str) -> None:
        """StopModelInvocationJob: a job that runs ends Stopped (its records so far answered); an ended one is a
        ValidationException, as Bedrock answers for a job it cannot stop."""
        with self._lock:
            job = self._job(identifier)
            if job.status in TERMINAL_STATUSES:
                raise ModelError("ValidationException", f"job {job.job_id} has ended ({job.status})")
            job.scenario = dataclasses.replace(job.scenario, status="Stopped", polls=0)
            job.checks = 0
            ended = self._advance(job)
        if ended:
            self._emit(job)

    def state_change_event(self, job: FakeJob) -> dict[str, Any]:
        """The PutEvents entry of a job's "Batch Inference Job State Change" event, as Bedrock sends it."""
        detail = {
            "version": "0.0",
            "accountId": self.account_id,
            "batchJobName": job.request.job_name,
            "batchJobArn": job.arn,
            "batchModelId": job.request.model_id,
            "status": job.status,
            "failureMessage": job.scenario.message or "",
            # Not ISO 8601 (as Bedrock writes it): never parsed.
            "creationTime": f"{job.submitted:%b %d, %Y, %I:%M:%S %p}",
        }
        return {
            "Source": EVENT_SOURCE,
            "DetailType": JOB_STATE_CHANGE,
            "Resources": [job.arn],
            "Detail": json.dumps(detail),
        }

    def _emit(self, job: FakeJob) -> None:
        event = self.state_change_event(job)
        with self._lock:
            self.events.append(event)
            publish = self.publish if self.emit_events else None
        if publish is not None:
            publish(event)

    def _job(self, identifier: str) -> FakeJob:
        job = self.jobs.get(identifier.rsplit("/", 1)[-1])
        if job is None:
            raise ModelError("ResourceNotFoundException", f"no model invocation job {identifier}")
        return job

    def tags(self, arn: str) -> dict[str, str] | None:
        """ListTagsForResource of a job: the tags it was created with (None: not one of this fake's jobs)."""
        with self._lock:
            job = next((job for job in self.jobs.values() if job.arn == arn), None)
            return None if job is None else dict(job.request.tags)

    def for_run(self, run_id: str) -> list[FakeJob]:
        """The jobs tagged with a run id (as the state machine tags them)."""
        with self._lock:
            return [job for job in self.jobs.values() if job.request.tags.get("run") == run_id]

    def _advance(self, job: FakeJob) -> bool:
        """One step towards the scenario's end; True when the job has just reached its terminal status."""
        if job.status in TERMINAL_STATUSES:
            return False
        if job.checks < job.scenario.polls:
            job.checks += 1
            job.status = "InProgress"
            return False
        job.status = job.scenario.status
        job.ended = datetime.datetime.now(datetime.UTC)
        if job.status in _WITH_OUTPUT:
            job.counts = _write_output(job, self.model, self.region)
        return True

    def converse(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Converse, answered by the model (every request is recorded in `converse_requests`)."""
        with self._lock:
            self.converse_requests.append(dict(request))
        return self.model.converse(request)

    def apply_guardrail(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """ApplyGuardrail, answered by the model."""
        return self.model.apply_guardrail(request)

    def __repr__(self) -> str:
        return f"FakeBedrock({self.account_id}, {self.region}, jobs={len(self.jobs)})"


def _job_request(params: Mapping[str, Any]) -> JobRequest:
    try:
        job_name = str(params["jobName"])
        inputs = params["inputDataConfig"]["s3InputDataConfig"]
        outputs = params["outputDataConfig"]["s3OutputDataConfig"]
        request = JobRequest(
            job_name=job_name,
            client_request_token=params.get("clientRequestToken"),
            model_id=str(params["modelId"]),
            role_arn=str(params["roleArn"]),
            input_uri=str(inputs["s3Uri"]),
            output_uri=str(outputs["s3Uri"]),
            output_key_id=outputs.get("s3EncryptionKeyId"),
            timeout_hours=int(params.get("timeoutDurationInHours", 24)),
            tags={str(tag["key"]): str(tag["value"]) for tag in params.get("tags", [])},
            invocation_type=str(params.get("modelInvocationType", "InvokeModel")),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise ModelError("ValidationException", f"invalid request: missing or malformed {error}") from None
    if not _JOB_NAME.fullmatch(job_name):
        raise ModelError("ValidationException", f"jobName {job_name!r} does not match the required pattern")
    if not 24 <= request.timeout_hours <= 168:
        raise ModelError("ValidationException", "timeoutDurationInHours must be between 24 and 168")
    if inputs.get("s3InputFormat", "JSONL") != "JSONL" or not _S3_URI.match(request.input_uri):
        raise ModelError("ValidationException", "the input must be JSONL at an s3:// URI")
    return request


def _describe(job: FakeJob) -> dict[str, Any]:
    request = job.request
    described: dict[str, Any] = {
        "jobArn": job.arn,
        "jobName": request.job_name,
        "modelId": request.model_id,
        "roleArn": request.role_arn,
        "status": job.status,
        "submitTime": job.submitted.isoformat(),
        "lastModifiedTime": (job.ended or job.submitted).isoformat(),
        "inputDataConfig": {"s3InputDataConfig": {"s3InputFormat": "JSONL", "s3Uri": request.input_uri}},
        "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": request.output_uri}},
        "timeoutDurationInHours": request.timeout_hours,
        "jobExpirationTime": (job.submitted + datetime.timedelta(hours=request.timeout_hours)).isoformat(),
        "modelInvocationType": request.invocation_type,
    }
    if request.client_request_token is not None:
        described["clientRequestToken"] = request.client_request_token
    if request.output_key_id is not None:
        described["outputDataConfig"]["s3OutputDataConfig"]["s3EncryptionKeyId"] = request.output_key_id
    if job.ended is not None:
        described["endTime"] = job.ended.isoformat()
    if job.status in TERMINAL_STATUSES and job.scenario.message is not None:
        described["message"] = job.scenario.message
    described.update(job.counts)
    return described


def _write_output(job: FakeJob, model: Model, region: str) -> dict[str, int]:
    """Write `<outputUri><jobId>/<input file>.out` (lines shuffled) and `manifest.json.out`; return the counts."""
    s3 = boto3.client("s3", region_name=region)
    source = _S3_URI.match(job.request.input_uri)
    target = _S3_URI.match(job.request.output_uri)
    assert source is not None
    assert target is not None
    bucket, key = source["bucket"], source["key"]
    keys = [key] if not key.endswith("/") else _jsonl_keys(s3, bucket, key)
    prefix = f"{target['key']}{job.job_id}/"
    counts = dict.fromkeys(("total", "processed", "success", "error", "inputTokens", "outputTokens"), 0)
    shuffler = random.Random(job.job_id)  # noqa: S311 - a deterministic shuffle, not a secret
    for input_key in keys:
        body_lines = s3.get_object(Bucket=bucket, Key=input_key)["Body"].iter_lines()
        records = [json.loads(line) for line in body_lines if line.strip()]
        lines = (_output_line(index, record, job, len(records), model, counts) for index, record in enumerate(records))
        written = [line for line in lines if line is not None]
        shuffler.shuffle(written)
        body = "".join(json.dumps(line) + "\n" for line in written)
        s3.put_object(Bucket=target["bucket"], Key=f"{prefix}{input_key.rsplit('/', 1)[-1]}.out", Body=body.encode())
    manifest = {
        "totalRecordCount": counts["total"],
        "processedRecordCount": counts["processed"],
        "successRecordCount": counts["success"],
        "errorRecordCount": counts["error"],
        "inputTokenCount": counts["inputTokens"],
        "outputTokenCount": counts["outputTokens"],
    }
    s3.put_object(Bucket=target["bucket"], Key=f"{prefix}manifest.json.out", Body=json.dumps(manifest).encode())
    return {name: value for name, value in manifest.items() if name.endswith("RecordCount")}


def _jsonl_keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", []) if item["Key"].endswith(".jsonl")]


def _output_line(
    index: int, record: Mapping[str, Any], job: FakeJob, total: int, model: Model, counts: dict[str, int]
) -> dict[str, Any] | None:
    counts["total"] += 1
    if index >= total - job.scenario.unprocessed_records:
        return None
    counts["processed"] += 1
    line: dict[str, Any] = {"recordId": record.get("recordId"), "modelInput": record.get("modelInput")}
    try:
        if index < job.scenario.failed_records:
            raise ModelError("ValidationException", "Malformed input request, please reformat your input.")
        output = model.chat_completion(record.get("modelInput") or {}, model_id=job.request.model_id)
    except ModelError as error:
        counts["error"] += 1
        line["error"] = {"errorCode": error.status, "errorMessage": error.message}
        return line
    counts["success"] += 1
    usage = output.get("usage") or {}
    counts["inputTokens"] += int(usage.get("prompt_tokens", 0))
    counts["outputTokens"] += int(usage.get("completion_tokens", 0))
    line["modelOutput"] = output
    return line
