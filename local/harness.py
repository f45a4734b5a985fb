"""Run the synthesized batch stack offline: its state machine, functions, bucket, rule and queue in moto.

Nothing here re-implements the pipeline. `OfflinePipeline` reads the template `build_app` synthesized,
resolves its intrinsic functions to fake physical ids, and creates what it declares in moto: the buckets
(EventBridge notifications on), the EventBridge rule with its event pattern and SQS target, the queues,
every Lambda function (its `Handler` string imported as Lambda would; the functions' `Environment`s, which
must agree, make the one environment the pipeline sets at its start, so no invocation ever changes `os.environ`
while other threads read it) and the state machine with its `DefinitionString`. Bedrock (batch jobs, Converse,
ApplyGuardrail) is `local.bedrock.batch_jobs`'s, answering from one `Model`. `drop()` puts an object; moto's
S3 -> EventBridge -> SQS delivers the event, and the function the template maps to the queue (the
starter) gets it as Lambda's event source mapping would hand it over. Bedrock's job-state events go to moto's
EventBridge too (`publish`); what a rule with a Lambda target matches is handed to that function, as EventBridge
invokes it.

For the local runner (`python -m local up`), `serving_s3()` puts moto's server in front of the same state
(an S3 endpoint on 127.0.0.1 that `aws s3 cp --endpoint-url` and boto3 talk to), and `triggering()` polls
the queue in the background, as the event source mapping does, so every file dropped there starts a run
by itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Self, cast

import boto3
from moto import mock_aws
from werkzeug.serving import ThreadedWSGIServer

from infra.config import GPT_OSS_120B, guardrail_parameter_names
from local import lambda_runtime, moto_patches
from local.bedrock.batch_jobs import FakeBedrock, FakeJob, JobScenario, offline_model
from local.bedrock.guardrail import LOCAL_GUARDRAIL_ID, LOCAL_GUARDRAIL_VERSION
from local.bedrock.model import Model
from local.environment import applied_environment
from local.services import S3_ENDPOINT_PURPOSE, listening_socket, repeating, serving
from local.templates import batch_template, synthesize
from shared import pipeline

if TYPE_CHECKING:
    from types import TracebackType

    from mypy_boto3_s3 import S3Client
    from mypy_boto3_stepfunctions import SFNClient

ACCOUNT = "123456789012"
# The batch stack's default model: what a shard run on its own is submitted with.
DEFAULT_MODEL_ID = GPT_OSS_120B
REGION = "us-east-1"
MOTO_CONFIG: Any = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}
# What Lambda sets for each function apart; offline the functions share one process (see `_environment`).
_PER_FUNCTION_VARIABLES = frozenset(
    {"AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "POWERTOOLS_SERVICE_NAME"}
)
# Held while a pipeline runs: one at a time, as moto's backends are per process.
_ACTIVE = threading.Lock()
# How often the background trigger polls the queue (Lambda's event source mapping long-polls it).
TRIGGER_INTERVAL_SECONDS = 0.2


def synthesize_batch_stack(context: Mapping[str, Any], outdir: Path) -> dict[str, Any]:
    """Synthesize the app as `cdk synth` would with this context (cdk-nag included); the batch stack's template."""
    return batch_template(synthesize(context, checks=True, outdir=outdir))


@dataclass(frozen=True)
class Drop:
    """One dropped file and what its delivery did."""

    key: str
    version_id: str
    run_id: str | None  # the execution the starter started (None: no run, e.g. outside inbox/)
    deliveries: list[dict[str, Any]]  # what the starter answered, per SQS batch


@dataclass(frozen=True)
class Run:
    """A finished execution and what it wrote."""

    run_id: str
    status: str
    output: dict[str, Any] | None
    error: str | None
    cause: str | None
    history: list[dict[str, Any]]
    summary: dict[str, Any] | None
    results: list[dict[str, Any]]
    rejected: list[dict[str, Any]]
    jobs: list[FakeJob]

    def states_entered(self) -> list[str]:
        """Names of the states the execution entered, in order (Distributed Map children excluded)."""
        return states_entered(self.history)


def states_entered(history: Sequence[Mapping[str, Any]]) -> list[str]:
    """Names of the states an execution history entered, in order."""
    return [
        event[key]["name"]
        for event in history
        for key in event
        if key.endswith("EventDetails") and event["type"].endswith("StateEntered")
    ]


# A backstop against a hung run, not a speed target: a loaded 2-core machine can take tens of seconds
# for a run whose retries and poll laps all execute (without real waiting).
RUN_TIMEOUT_SECONDS = 300.0


class _Resolver:
    """CloudFormation intrinsic functions -> the fake physical ids the harness creates resources under."""

    def __init__(self, template: Mapping[str, Any], ssm: Mapping[str, str]) -> None:
        self.resources: Mapping[str, Any] = template["Resources"]
        self.parameters: Mapping[str, Any] = template.get("Parameters", {})
        self.ssm = ssm

    def __call__(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self(item) for item in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((name, argument),) = value.items()
            function = self._functions().get(name)
            if function is not None:
                return function(argument)
        return {key: self(item) for key, item in value.items()}

    def _functions(self) -> dict[str, Callable[[Any], Any]]:
        return {
            "Ref": self.ref,
            "Fn::GetAtt": lambda argument: self.attribute(*argument),
            "Fn::Join": lambda argument: str(argument[0]).join(str(self(part)) for part in argument[1]),
            "Fn::Select": lambda argument: self(argument[1])[int(argument[0])],
            "Fn::Split": lambda argument: str(self(argument[1])).split(argument[0]),
        }

    def ref(self, logical_id: str) -> str:
        pseudo = {
            "AWS::Partition": "aws",
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT,
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": "offline",
        }
        if logical_id in pseudo:
            return pseudo[logical_id]
        if logical_id in self.parameters:
            return self._parameter(logical_id)
        kind = self.resources[logical_id]["Type"]
        name = self.name(logical_id)
        refs = {
            "AWS::SQS::Queue": f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{name}",
            "AWS::StepFunctions::StateMachine": self.attribute(logical_id, "Arn"),
            "AWS::KMS::Key": _fake_uuid(logical_id),
        }
        return refs.get(kind, name)

    def attribute(self, logical_id: str, attribute: str) -> str:
        kind = self.resources[logical_id]["Type"]
        name = self.name(logical_id)
        arns = {
            "AWS::Lambda::Function": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}",
            "AWS::IAM::Role": f"arn:aws:iam::{ACCOUNT}:role/{name}",
            "AWS::S3::Bucket": f"arn:aws:s3:::{name}",
            "AWS::SQS::Queue": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}",
            "AWS::StepFunctions::StateMachine": f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{name}",
            "AWS::KMS::Key": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{_fake_uuid(logical_id)}",
            "AWS::Events::Rule": f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{name}",
            "AWS::Logs::LogGroup": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{name}:*",
        }
        if attribute == "Arn" and kind in arns:
            return arns[kind]
        if attribute in ("Name", "QueueName"):
            return name
        raise ValueError(f"the harness cannot resolve {logical_id}.{attribute} ({kind})")

    def name(self, logical_id: str) -> str:
        """The physical name of a resource: its logical id (lowercase for buckets), within the name limits."""
        if self.resources[logical_id]["Type"] == "AWS::S3::Bucket":
            return logical_id.lower()[:63]
        return logical_id[:64]

    def _parameter(self, logical_id: str) -> str:
        parameter = self.parameters[logical_id]
        default = str(parameter.get("Default", ""))
        if parameter["Type"].startswith("AWS::SSM::Parameter::Value"):
            if default not in self.ssm:
                raise ValueError(f"no offline value for SSM parameter {default} (pass it in `ssm`)")
            return self.ssm[default]
        return default


def _fake_uuid(seed: str) -> str:
    return str(uuid.UUID(hashlib.sha256(seed.encode()).hexdigest()[:32]))


def _client(service: Literal["s3", "stepfunctions", "sqs", "iam", "events", "lambda", "ssm"]) -> Any:
    """A boto3 client of the offline account."""
    return boto3.client(service, region_name=REGION)


class OfflinePipeline:
    """The synthesized batch stack running in moto. Use as a context manager (it owns the `mock_aws`).

    `model` answers batch records and on-demand Converse calls; `bedrock` is the fake Bedrock (set its
    `scenario` and `create_errors` before dropping files); `ssm` overrides parameter values by name.
    Every function runs with its template environment, the variables Lambda's runtime adds (Region,
    function name, memory) and `environment` (e.g. `AWS_ENDPOINT_URL_BEDROCK_RUNTIME` of a local stand-in).
    """

    def __init__(
        self,
        template: Mapping[str, Any],
        *,
        stage: str,
        model: Model | None = None,
        ssm: Mapping[str, str] | None = None,
        environment: Mapping[str, str] | None = None,
    ) -> None:
        names = guardrail_parameter_names(stage)
        # What the chat stack would publish to SSM: offline, the local runner's guardrail (its models know it).
        defaults = {names.guardrail_id: LOCAL_GUARDRAIL_ID, names.guardrail_version: LOCAL_GUARDRAIL_VERSION}
        self.template = template
        self.model = model or offline_model()
        self.resolve = _Resolver(template, {**defaults, **(ssm or {})})
        self.environment = dict(environment or {})
        # Each function's template variables, by function name (see `_environment`).
        self._environments: dict[str, dict[str, str]] = {}
        # Every SQS message handed to a function (what `deliver(messages)` can hand over again).
        self.delivered: list[Mapping[str, Any]] = []
        # A rule's Lambda targets: the queue standing in for each (moto's EventBridge delivers to queues, not to
        # functions) -> the function; and what each delivered event's function answered.
        self._event_targets: dict[str, str] = {}
        self.event_answers: list[Any] = []
        self._exit = ExitStack()

    def __enter__(self) -> Self:
        if not _ACTIVE.acquire(blocking=False):
            raise RuntimeError("a pipeline is already running in this process (moto's state is per process)")
        self._exit.callback(_ACTIVE.release)
        try:
            moto_patches.install()
            lambda_runtime.fresh_container()
            self._exit.callback(lambda_runtime.fresh_container)
            self._exit.enter_context(mock_aws(config=MOTO_CONFIG))
            self._exit.callback(lambda_runtime.clear_handlers)
            self._create()
            # Once, before any run starts: the functions share this process, so they share one environment,
            # which no invocation changes while other threads (servers, the interpreter) read it.
            self._exit.enter_context(applied_environment(self._environment()))
            self.bedrock.model = self.model
            self.bedrock.publish = self.publish
            # Before the mock ends: a job ending later (its scenario's timer) must not publish to real AWS.
            self._exit.callback(setattr, self.bedrock, "publish", None)
        except BaseException:
            self._exit.close()  # __exit__ is not called when __enter__ fails
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._exit.close()

    @property
    def bedrock(self) -> FakeBedrock:
        """Bedrock offline (batch jobs, Converse): set its `scenario` or `create_errors` before dropping files."""
        return moto_patches.fake_bedrock(ACCOUNT, REGION)

    @property
    def s3(self) -> S3Client:
        """An S3 client of the offline account."""
        return cast("S3Client", _client("s3"))

    @property
    def sfn(self) -> SFNClient:
        """A Step Functions client of the offline account."""
        return cast("SFNClient", _client("stepfunctions"))

    def drop(self, key: str, body: bytes | str) -> Drop:
        """Upload a file and deliver what S3 -> EventBridge -> SQS makes of it to the queue's function."""
        data = body.encode() if isinstance(body, str) else body
        version_id = self.s3.put_object(Bucket=self.bucket, Key=key, Body=data)["VersionId"]
        deliveries = self.deliver()
        return Drop(key=key, version_id=version_id, run_id=self.run_of(key, version_id), deliveries=deliveries)

    def deliver(self, messages: Sequence[Mapping[str, Any]] | None = None) -> list[dict[str, Any]]:
        """Hand queued messages (or these ones, again: SQS delivers at least once) to the mapped function."""
        sqs = _client("sqs")
        answers = []
        for queue_url, function_name in self._event_sources.items():
            if messages is not None:
                answers.append(self._invoke_with(function_name, queue_url, messages))
                continue
            while received := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
                self.delivered.extend(received)
                answer = self._invoke_with(function_name, queue_url, received)
                failed = {failure["itemIdentifier"] for failure in answer.get("batchItemFailures", [])}
                for message in received:
                    if message["MessageId"] not in failed:
                        sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
                answers.append(answer)
        return answers

    def publish(self, entry: Mapping[str, Any]) -> list[Any]:
        """PutEvents on the default bus (as an AWS service emits its events), then hand what the rules matched to
        their Lambda targets, as EventBridge invokes a function (asynchronously: the answer is only recorded)."""
        _client("events").put_events(Entries=[dict(entry)])
        sqs, answers = _client("sqs"), []
        for queue_url, function_name in self._event_targets.items():
            while received := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
                for message in received:
                    response = _client("lambda").invoke(FunctionName=function_name, Payload=message["Body"].encode())
                    answers.append(json.loads(response["Payload"].read() or b"null"))
                    sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        self.event_answers.extend(answers)
        return answers

    @contextmanager
    def serving_s3(self, port: int = 0) -> Iterator[str]:
        """Serve this pipeline's moto state on 127.0.0.1 (S3 above all) for the duration; its URL.

        It is moto's own server application answering from the very backends the in-process mock uses, so
        an object put there is in the bucket, and its S3 -> EventBridge -> SQS event is queued, as with `drop`.
        Use it inside the pipeline's block.

        Raises:
            OSError: the port could not be bound.
        """
        with serving(S3Endpoint(port), "s3-endpoint") as endpoint:
            yield endpoint.url

    @contextmanager
    def triggering(self, *, on_error: Callable[[Exception], None]) -> Iterator[None]:
        """Deliver queued messages in the background for the duration, as the event source mapping does.

        A delivery that fails (the starter raised) is reported to `on_error` and its messages stay queued, to be
        received again once their visibility timeout ends, as with SQS. Once the block ends, the delivery in
        progress (if any) finishes unreported. Use it inside the pipeline's block.
        """
        with repeating(
            self.deliver, interval_seconds=TRIGGER_INTERVAL_SECONDS, name="sqs-event-source", on_error=on_error
        ):
            yield

    def run_of(self, key: str, version_id: str) -> str | None:
        """The execution started for one object version, if any."""
        pages = self.sfn.get_paginator("list_executions").paginate(stateMachineArn=self.state_machine_arn)
        for page in pages:
            for execution in page["executions"]:
                described = self.sfn.describe_execution(executionArn=execution["executionArn"])
                run = json.loads(described.get("input") or "{}")
                if run.get("key") == key and run.get("versionId") == version_id:
                    return execution["name"]
        return None

    def executions(self) -> list[str]:
        """Names of every execution of the state machine."""
        pages = self.sfn.get_paginator("list_executions").paginate(stateMachineArn=self.state_machine_arn)
        return [execution["name"] for page in pages for execution in page["executions"]]

    def wait(self, run_id: str, *, timeout_seconds: float = RUN_TIMEOUT_SECONDS) -> Run:
        """Poll the execution until it ends; its status, output, history, summary and results.

        Raises:
            TimeoutError: the execution is still running after `timeout_seconds`.
        """
        arn = f"{self.state_machine_arn.replace(':stateMachine:', ':execution:')}:{run_id}"
        deadline = time.monotonic() + timeout_seconds
        while (described := self.sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
            if time.monotonic() > deadline:
                raise TimeoutError(f"execution {run_id} still running after {timeout_seconds} s")
            time.sleep(0.02)
        history = [
            dict(event)
            for page in self.sfn.get_paginator("get_execution_history").paginate(executionArn=arn)
            for event in page["events"]
        ]
        summary = self._object(pipeline.summary_key(run_id))
        return Run(
            run_id=run_id,
            status=described["status"],
            output=json.loads(described["output"]) if described.get("output") else None,
            error=described.get("error"),
            cause=described.get("cause"),
            history=history,
            summary=None if summary is None else json.loads(summary),
            results=self._jsonl(pipeline.results_key(run_id)),
            rejected=self._jsonl(pipeline.rejected_key(run_id)),
            jobs=self.bedrock.for_run(run_id),
        )

    def run(self, key: str, body: bytes | str, *, timeout_seconds: float = RUN_TIMEOUT_SECONDS) -> Run:
        """Drop a file and wait for its run.

        Raises:
            LookupError: the drop started no run.
        """
        dropped = self.drop(key, body)
        if dropped.run_id is None:
            raise LookupError(f"dropping {key} started no run: {dropped.deliveries}")
        return self.wait(dropped.run_id, timeout_seconds=timeout_seconds)

    def _create(self) -> None:
        resources: Mapping[str, Any] = self.template["Resources"]
        role = _client("iam").create_role(RoleName="offline-execution", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        by_type: dict[str, list[str]] = {}
        for logical_id, resource in resources.items():
            by_type.setdefault(resource["Type"], []).append(logical_id)
        for logical_id in by_type.get("AWS::S3::Bucket", []):
            self._bucket(logical_id, resources[logical_id]["Properties"])
        for logical_id in by_type.get("AWS::SQS::Queue", []):
            _client("sqs").create_queue(QueueName=self.resolve.name(logical_id))
        for logical_id in by_type.get("AWS::Events::Rule", []):
            self._rule(logical_id, resources[logical_id]["Properties"])
        for logical_id in by_type.get("AWS::Lambda::Function", []):
            self._function(logical_id, resources[logical_id]["Properties"], role)
        (machine,) = by_type["AWS::StepFunctions::StateMachine"]
        self.state_machine_arn = self.sfn.create_state_machine(
            name=self.resolve.name(machine), definition=self.definition(), roleArn=role
        )["stateMachineArn"]
        self._event_sources = {
            self.resolve.ref(resources[mapping]["Properties"]["EventSourceArn"]["Fn::GetAtt"][0]): self.resolve(
                resources[mapping]["Properties"]["FunctionName"]
            )
            for mapping in by_type.get("AWS::Lambda::EventSourceMapping", [])
        }
        self.bucket: str = self.resolve(self.template["Outputs"]["BucketName"]["Value"])
        # What the stack publishes (where the pipeline is, for the chat function's Batch API).
        for logical_id in by_type.get("AWS::SSM::Parameter", []):
            properties = self.resolve(resources[logical_id]["Properties"])
            _client("ssm").put_parameter(Name=properties["Name"], Value=properties["Value"], Type=properties["Type"])

    def definition(self) -> str:
        """The executed definition: the template's DefinitionString, intrinsics and substitutions resolved."""
        (machine,) = [r for r in self.template["Resources"].values() if r["Type"] == "AWS::StepFunctions::StateMachine"]
        text = str(self.resolve(machine["Properties"]["DefinitionString"]))
        for name, value in machine["Properties"].get("DefinitionSubstitutions", {}).items():
            text = text.replace(f"${{{name}}}", str(self.resolve(value)))
        return text

    def run_shard(self, polls: int) -> list[dict[str, Any]]:
        """One shard's workflow (the Distributed Map's item processor) run as an execution of its own, for a job
        that answers InProgress `polls` times, then Completed; its history (moto keeps none of Map children).

        Raises:
            RuntimeError: the shard did not end with its job Completed.
        """
        processor = dict(json.loads(self.definition())["States"]["Shards"]["ItemProcessor"])
        processor.pop("ProcessorConfig")
        sfn = self.sfn
        arn = sfn.create_state_machine(
            name=f"Shard{polls}", definition=json.dumps(processor), roleArn=f"arn:aws:iam::{ACCOUNT}:role/offline"
        )["stateMachineArn"]
        run = f"probe-{polls}"
        key = pipeline.shard_records_key(run, 0)
        prompts = (json.dumps({"id": f"p{n}", "prompt": f"What is {n} squared?"}) + "\n" for n in range(5))
        self.s3.put_object(Bucket=self.bucket, Key=key, Body="".join(prompts).encode())
        self.bedrock.scenario = lambda _request: JobScenario(polls=polls)
        item = {
            "shard": {
                "index": 0,
                "jobName": f"{run}-00000",
                "clientRequestToken": f"probe{polls}",
                "inputUri": f"s3://{self.bucket}/{key}",
                "outputUri": pipeline.s3_uri(self.bucket, pipeline.shard_output_prefix(run, 0)),
                "recordCount": 5,
            },
            "runId": run,
            "sourceHash": hashlib.sha256(f"inbox/{run}.jsonl".encode()).hexdigest(),
            "modelId": DEFAULT_MODEL_ID,
            "stateMachine": arn,
        }
        execution = sfn.start_execution(stateMachineArn=arn, input=json.dumps(item))["executionArn"]
        while (described := sfn.describe_execution(executionArn=execution))["status"] == "RUNNING":
            time.sleep(0.01)
        if described["status"] != "SUCCEEDED" or json.loads(described["output"])["status"] != "Completed":
            raise RuntimeError(f"the probe shard did not complete: {described}")
        return [dict(event) for event in sfn.get_execution_history(executionArn=execution, maxResults=1000)["events"]]

    def _bucket(self, logical_id: str, properties: Mapping[str, Any]) -> None:
        s3, name = self.s3, self.resolve.name(logical_id)
        s3.create_bucket(Bucket=name)
        if properties.get("VersioningConfiguration", {}).get("Status") == "Enabled":
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        notifications = properties.get("NotificationConfiguration", {})
        if notifications.get("EventBridgeConfiguration", {}).get("EventBridgeEnabled"):
            s3.put_bucket_notification_configuration(
                Bucket=name, NotificationConfiguration={"EventBridgeConfiguration": {}}
            )

    def _rule(self, logical_id: str, properties: Mapping[str, Any]) -> None:
        events, name = _client("events"), self.resolve.name(logical_id)
        events.put_rule(Name=name, EventPattern=json.dumps(self.resolve(properties["EventPattern"])))
        targets = []
        for target in properties["Targets"]:
            arn = str(self.resolve(target["Arn"]))
            if arn.startswith(f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:"):
                # moto's EventBridge cannot invoke a function: a queue of the harness stands in (see `publish`).
                queue = _client("sqs").create_queue(QueueName=f"{name}-{target['Id']}"[:80])["QueueUrl"]
                self._event_targets[queue] = arn.rsplit(":", 1)[-1]
                arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue.rsplit('/', 1)[-1]}"
            targets.append({"Id": target["Id"], "Arn": arn})
        events.put_targets(Rule=name, Targets=targets)

    def _function(self, logical_id: str, properties: Mapping[str, Any], role: str) -> None:
        name = self.resolve.name(logical_id)
        environment = {
            key: str(value)
            for key, value in self.resolve(properties.get("Environment", {}).get("Variables", {})).items()
        }
        _client("lambda").create_function(
            FunctionName=name,
            Runtime="python3.12",  # moto only stores it; the handler runs on this interpreter
            Role=role,
            Handler=properties["Handler"],
            Code={"ZipFile": b"offline"},
            Timeout=int(properties.get("Timeout", 3)),
            MemorySize=int(properties.get("MemorySize", 128)),
            Environment={"Variables": environment},
        )
        self._environments[name] = environment
        lambda_runtime.register_handler(name, lambda_runtime.import_handler(properties["Handler"]))

    def _environment(self) -> dict[str, str]:
        """The one environment of the functions offline: every function's variables, Lambda's runtime ones and
        `environment`.

        Variables Lambda sets per function (its name, its memory, the Powertools service named after it) are
        left out: the functions read them from the context object, or once per process at import. Any other
        variable two functions set differently is an error: offline they would read the same one.
        """
        merged: dict[str, str] = {
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        }
        for function, variables in self._environments.items():
            for name, value in variables.items():
                if name in _PER_FUNCTION_VARIABLES:
                    continue
                if merged.setdefault(name, value) != value:
                    raise ValueError(
                        f"{function} sets {name}={value!r}, another function {merged[name]!r}: the functions share "
                        "one environment offline"
                    )
        return {**merged, **self.environment}

    def _invoke_with(self, function_name: str, queue_url: str, messages: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        queue_name = queue_url.rsplit("/", 1)[-1]
        event = {"Records": [_sqs_record(message, queue_name) for message in messages]}
        response = _client("lambda").invoke(FunctionName=function_name, Payload=json.dumps(event).encode())
        answer: dict[str, Any] = json.loads(response["Payload"].read())
        if response.get("FunctionError"):
            raise RuntimeError(f"{function_name} failed: {answer}")
        return answer

    def _object(self, key: str) -> bytes | None:
        try:
            return self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except self.s3.exceptions.NoSuchKey:
            return None

    def _jsonl(self, key: str) -> list[dict[str, Any]]:
        return [json.loads(line) for line in (self._object(key) or b"").splitlines() if line.strip()]


class S3Endpoint(ThreadedWSGIServer):
    """moto's server application on 127.0.0.1: the state of this process's mock over HTTP.

    Requests are routed by their signature (an unsigned one goes to S3), so the endpoint speaks S3 to
    `aws s3 --endpoint-url` and boto3, and also the other services of the mock (SQS, Step Functions...).
    Closing it ends idle keep-alive connections and waits for the requests in flight.
    """

    daemon_threads = False
    block_on_close = True

    def __init__(self, port: int = 0, *, purpose: str = S3_ENDPOINT_PURPOSE) -> None:
        """Listen on 127.0.0.1:`port` (0: a free one).

        Raises:
            PortUnavailable: the port cannot be listened on (named, with `purpose`).
        """
        # Before the server's own __init__, which may close the server (server_close reads them).
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        server = importlib.import_module("moto.server")  # imports Flask: only when serving
        application = server.DomainDispatcherApplication(server.create_backend_app)
        # Bound here, not by werkzeug, which would print to stderr and exit the process on a busy port.
        with listening_socket(port, purpose) as listener:
            # werkzeug serves from a duplicate of the socket's descriptor; this one is closed once it has it.
            super().__init__("127.0.0.1", port, application, handler=server.MotoRequestHandler, fd=listener.fileno())

    @property
    def url(self) -> str:
        """The endpoint URL (`--endpoint-url`, boto3's `endpoint_url`)."""
        return f"http://127.0.0.1:{self.server_address[1]}"

    def process_request(self, request: Any, client_address: Any) -> None:
        """Remember each connection while a thread serves it."""
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        """Forget a connection once its thread is done with it."""
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def server_close(self) -> None:
        """Stop reading from every open connection (an idle keep-alive one ends at once), then join their threads."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by the client
                connection.shutdown(socket.SHUT_RD)
        super().server_close()


def _sqs_record(message: Mapping[str, Any], queue_name: str) -> dict[str, Any]:
    """An SQS message as Lambda's event source mapping hands it to the function."""
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": str(int(time.time() * 1000)),
            "SenderId": "AIDAOFFLINE",
            "ApproximateFirstReceiveTimestamp": str(int(time.time() * 1000)),
        },
        "messageAttributes": {},
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue_name}",
        "awsRegion": REGION,
    }
