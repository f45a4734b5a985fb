"""Extensions of moto (pinned to MOTO_VERSION) that let its Step Functions interpreter run the pipeline offline.

`install()` applies them once per process, after `check()` has verified that every moto internal it patches
is still where and what it was; if moto moved anything, it raises `MotoInternalsMoved` naming it instead of
running a half-patched interpreter. What is patched, and why:

(a) aws-sdk casing: Step Functions writes SDK parameters in PascalCase (`JobName`) and returns PascalCase
    responses; moto's `StateTaskServiceAwsSdk._normalise_parameters` / `_normalise_response` are no-ops,
    so only services whose botocore names are already PascalCase worked (getmoto/moto#10076). They now
    convert through the operation's botocore shapes with moto's own `_to_boto_request` /
    `_from_boto_response`; timestamps become ISO 8601 strings, as Step Functions returns them.
(b) Error names: AWS calls a Bedrock SDK error `Bedrock.ThrottlingException` and an S3 one `S3.NoSuchKey...`;
    moto's `_SERVICE_ERROR_NAMES` only knows DynamoDB and Step Functions.
(c) Bedrock: `CreateModelInvocationJob` / `GetModelInvocationJob` on moto's bedrock responses and
    `Converse` / `ApplyGuardrail` on its bedrock-runtime responses, backed by `FakeBedrock` (kept on moto's
    bedrock backend, so `mock_aws` resets it); moto's `ListTagsForResource` answers for the fake's jobs with
    the tags they were created with (moto's own tagging knows only customization jobs and custom models).
    Jobs are idempotent on `clientRequestToken`, go Submitted -> InProgress -> a terminal status over
    successive status checks, and on completion write output in Bedrock's layout and line format
    (shuffled) to moto's S3. Answers come from one `BedrockModel` (`OfflineModel`, deterministic, by
    default; the local runner plugs in its own); a `JobScenario` per job picks the terminal status, failed
    and unprocessed records; `create_errors` / `status_errors` fail the next creates / status checks with
    the Bedrock errors named.
    (A before-send hook cannot answer Converse under moto: botocore calls every before-send handler, and
    moto's raises NotImplementedError for it.)
(d) Lambda in-process: with `{"lambda": {"use_docker": False}}`, `LambdaSimpleBackend.invoke` calls the
    Python handler registered for the function's name, with the function's environment applied (one
    invocation at a time: the environment is process-wide); an exception becomes a function error
    (`x-amz-function-error`), so Retry/Catch see its type as the error name, as with Lambda.
(e) No real waiting: Wait states and retry intervals return at once (the requested seconds are recorded).
(g) Workflow variables in JSONPath states: moto reads every `$variable` reference through JSONata, which it
    ships without an evaluator (no JVM), so any read failed; a plain reference (`$laps`, `$job.arn`) in a
    JSONPath state is now read from the execution's variable store. JSONata states are left as they were.
(f) Lambda service errors: a task whose Resource is a function ARN calls every error of the Lambda API
    (throttling, a 5xx) `Exception`; AWS names it `Lambda.<code>` (`Lambda.ServiceException`,
    `Lambda.TooManyRequestsException`), which is what the definition's Retry lists.

Also relied on, not patched: moto's before-send hook (`unmocked` detaches it from one client that must reach
the real endpoint while a mock is active) and the WSGI application moto's server is made of (`S3_SERVER_PARTS`:
the local runner serves the mock's state over HTTP with it).
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import functools
import hashlib
import inspect
import json
import random
import re
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from importlib import import_module
from importlib.metadata import version
from types import ModuleType
from typing import Any, Literal, Protocol, TypeVar
from urllib.parse import unquote

import boto3
import botocore.session
from botocore import xform_name
from botocore.client import BaseClient
from botocore.exceptions import ClientError
from botocore.model import OperationModel, ServiceModel

MOTO_VERSION = "5.2.5"

_AWS_SDK = "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_aws_sdk"
_WAIT = "moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function"
_RETRIER = "moto.stepfunctions.parser.asl.component.common.retry.retrier_decl"
_LAMBDA_SIMPLE = "moto.awslambda_simple.models"
_LAMBDA_TASK = "moto.stepfunctions.parser.asl.component.state.exec.state_task.state_task_lambda"
_BEDROCK_RESPONSES = "moto.bedrock.responses"
_RUNTIME_RESPONSES = "moto.bedrockruntime.responses"
_BEDROCK_MODELS = "moto.bedrock.models"
_EXCEPTIONS = "moto.core.exceptions"
_CORE_MODELS = "moto.core.models"
_SERVER = "moto.server"
_STRING_EXPRESSION = "moto.stepfunctions.parser.asl.component.common.string.string_expression"

# The error-name prefixes Step Functions uses for the SDK services the pipeline calls.
SERVICE_ERROR_NAMES = {"bedrock": "Bedrock", "s3": "S3", "cloudwatch": "CloudWatch"}
TERMINAL_STATUSES = ("Completed", "PartiallyCompleted", "Failed", "Stopped", "Expired")
# Statuses whose job wrote output files (Failed and Expired jobs write none).
_WITH_OUTPUT = ("Completed", "PartiallyCompleted", "Stopped")
_REASONING = re.compile(r"^\s*<reasoning>(?P<reasoning>.*?)</reasoning>(?P<answer>.*)$", re.DOTALL)
_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "content_filter": "guardrail_intervened"}
_JOB_NAME = re.compile(r"[a-zA-Z0-9]{1,63}(-*[a-zA-Z0-9\+\-\.]){0,63}")
_S3_URI = re.compile(r"^s3://(?P<bucket>[^/]+)/(?P<key>.*)$")

Handler = Callable[[Any, Any], Any]
JobStatus = Literal["Completed", "PartiallyCompleted", "Failed", "Stopped", "Expired"]


class MotoInternalsMoved(RuntimeError):
    """moto is not the version, or not the shape, these extensions were written against."""


@dataclasses.dataclass(frozen=True)
class _Target:
    """One moto attribute the extensions patch or rely on, and what it must look like."""

    module: str
    path: str  # attribute path inside the module, e.g. "Class.method"
    parameters: tuple[str, ...] | None = None  # a function's parameter names
    kind: type | None = None  # or the type of a value
    calls: str | None = None  # text the function's source must contain (what the patch relies on)


_NORMALISE = ("self", "parameters", "boto_service_name", "service_action_name")
_TARGETS = (
    # (a) casing: the two no-ops replaced, and the moto helpers the replacements call.
    _Target(_AWS_SDK, "StateTaskServiceAwsSdk._normalise_parameters", _NORMALISE),
    _Target(_AWS_SDK, "StateTaskServiceAwsSdk._normalise_response", ("self", "response", *_NORMALISE[2:])),
    _Target(_AWS_SDK, "StateTaskServiceAwsSdk._to_boto_request", ("self", "parameters", "structure_shape")),
    _Target(_AWS_SDK, "StateTaskServiceAwsSdk._from_boto_response", ("self", "response", "structure_shape")),
    _Target(_AWS_SDK, "StateTaskServiceAwsSdk._get_boto_service_name", ("self", "boto_service_name")),
    _Target(_AWS_SDK, "StateTaskServiceAwsSdk._get_boto_service_action", ("self", "service_action_name")),
    # (b) error names.
    _Target(_AWS_SDK, "_SERVICE_ERROR_NAMES", kind=dict),
    _Target(
        _AWS_SDK, "StateTaskServiceAwsSdk._from_error", ("self", "env", "ex"), calls="_normalise_service_error_name("
    ),
    _Target(
        _AWS_SDK,
        "StateTaskServiceAwsSdk._normalise_service_error_name",
        ("service_name",),
        calls="_SERVICE_ERROR_NAMES",
    ),
    # (c) Bedrock jobs: methods added to the responses class, the store kept on the backend.
    _Target(_BEDROCK_RESPONSES, "BedrockResponse", kind=type),
    _Target(_RUNTIME_RESPONSES, "BedrockRuntimeResponse", kind=type),
    _Target(_BEDROCK_MODELS, "bedrock_backends"),
    _Target(_BEDROCK_RESPONSES, "BedrockResponse.list_tags_for_resource", ("self",)),
    _Target(_EXCEPTIONS, "JsonRESTError.__init__", ("self", "error_type", "message", "_", "kwargs")),
    # (d) Lambda in-process.
    _Target(
        _LAMBDA_SIMPLE,
        "LambdaSimpleBackend.invoke",
        ("self", "function_name", "qualifier", "body", "headers", "response_headers"),
    ),
    _Target(_LAMBDA_SIMPLE, "LambdaSimpleBackend.get_function", ("self", "function_name_or_arn", "qualifier")),
    # (f) Lambda service error names.
    _Target(_LAMBDA_TASK, "StateTaskLambda._from_error", ("self", "env", "ex"), calls='error = "Exception"'),
    _Target(_LAMBDA_TASK, "FailureEvent", kind=type),
    _Target(_LAMBDA_TASK, "CustomErrorName", kind=type),
    _Target(_LAMBDA_TASK, "EventDetails"),
    _Target(_LAMBDA_TASK, "LambdaFunctionFailedEventDetails"),
    _Target(_LAMBDA_TASK, "HistoryEventType"),
    # (e) no waiting: the Wait states' one wait, and the retrier's module-level `time.sleep`.
    _Target(_WAIT, "WaitFunction._wait_interval", ("self", "env", "wait_seconds")),
    _Target(_WAIT, "WaitFunction._eval_body", ("self", "env"), calls="self._wait_interval("),
    _Target(_RETRIER, "time"),
    _Target(_RETRIER, "RetrierDecl._eval_body", ("self", "env"), calls="time.sleep("),
    # (g) variable reads in JSONPath states.
    _Target(_STRING_EXPRESSION, "StringVariableSample._eval_body", ("self", "env"), calls="eval_jsonata_expression("),
    _Target(_STRING_EXPRESSION, "QueryLanguageMode"),
    # Relied on: the mock's before-send hook (see `unmocked`) and the parts moto's server is made of.
    _Target(_CORE_MODELS, "botocore_stubber"),
    _Target(_SERVER, "DomainDispatcherApplication.__init__", ("self", "create_app")),
    _Target(_SERVER, "create_backend_app", ("service",)),
    _Target(_SERVER, "MotoRequestHandler", kind=type),
)

_installed = False
_install_lock = threading.Lock()


def check() -> list[str]:
    """What no longer matches the moto internals these extensions patch (empty: all in place)."""
    problems = []
    installed_version = version("moto")
    if installed_version != MOTO_VERSION:
        problems.append(f"moto {installed_version} is installed; the extensions were written for {MOTO_VERSION}")
    for target in _TARGETS:
        problem = _check_target(target)
        if problem:
            problems.append(problem)
    for module, class_name, added in (
        (_BEDROCK_RESPONSES, "BedrockResponse", _ADDED),
        (_RUNTIME_RESPONSES, "BedrockRuntimeResponse", _ADDED_RUNTIME),
    ):
        try:
            response_class = getattr(import_module(module), class_name, None)
        except ImportError:
            continue  # reported by the targets above
        for operation, method in added.items():
            if getattr(response_class, operation, None) not in (None, method):
                problems.append(f"moto now implements {module}.{class_name}.{operation}: drop that extension")
    return problems


def _check_target(target: _Target) -> str | None:
    name = f"{target.module}.{target.path}"
    try:
        value: Any = import_module(target.module)
    except ImportError as error:
        return f"{name}: module missing ({error})"
    for part in target.path.split("."):
        if not hasattr(value, part):
            return f"{name}: attribute missing"
        value = getattr(value, part)
    if target.kind is not None and not isinstance(value, target.kind):
        return f"{name}: a {type(value).__name__}, expected a {target.kind.__name__}"
    if target.parameters is None:
        return None
    original = getattr(value, "__wrapped_original__", value)
    if not callable(original):
        return f"{name}: not callable"
    found = tuple(inspect.signature(original).parameters)
    if found != target.parameters:
        return f"{name}: parameters are {found}, expected {target.parameters}"
    if target.calls is not None and target.calls not in inspect.getsource(original):
        return f"{name}: no longer contains {target.calls!r}"
    return None


def install() -> None:
    """Apply (a)-(g) once per process.

    Raises:
        MotoInternalsMoved: a patched moto attribute is missing or changed (see `check`).
    """
    global _installed
    with _install_lock:
        if _installed:
            return
        problems = check()
        if problems:
            raise MotoInternalsMoved("; ".join(problems))
        aws_sdk = import_module(_AWS_SDK)
        service = aws_sdk.StateTaskServiceAwsSdk
        _patch(service, "_normalise_parameters", _normalise_parameters)
        _patch(service, "_normalise_response", _normalise_response)
        aws_sdk._SERVICE_ERROR_NAMES.update(SERVICE_ERROR_NAMES)
        _patch(import_module(_WAIT).WaitFunction, "_wait_interval", _wait_interval)
        _patch(import_module(_STRING_EXPRESSION).StringVariableSample, "_eval_body", _variable_sample)
        retrier: Any = import_module(_RETRIER)
        retrier.time = _InstantTime(retrier.time)
        _patch(import_module(_LAMBDA_SIMPLE).LambdaSimpleBackend, "invoke", _invoke)
        _patch(import_module(_LAMBDA_TASK).StateTaskLambda, "_from_error", _lambda_task_error)
        for module, class_name, added in (
            (_BEDROCK_RESPONSES, "BedrockResponse", _ADDED),
            (_RUNTIME_RESPONSES, "BedrockRuntimeResponse", _ADDED_RUNTIME),
        ):
            for operation, method in added.items():
                setattr(getattr(import_module(module), class_name), operation, method)
        _patch(import_module(_BEDROCK_RESPONSES).BedrockResponse, "list_tags_for_resource", _list_tags_for_resource)
        _installed = True


def _patch(owner: type, name: str, replacement: Callable[..., Any]) -> None:
    original = getattr(owner, name)
    replacement.__wrapped_original__ = original  # type: ignore[attr-defined]
    setattr(owner, name, replacement)


# --- (a) aws-sdk parameter and response casing ------------------------------------------------------


@functools.cache
def _service_model(service: str) -> ServiceModel:
    return botocore.session.get_session().get_service_model(service)


@functools.cache
def _operation_model(service: str, snake_action: str) -> OperationModel:
    model = _service_model(service)
    names = {xform_name(name): name for name in model.operation_names}
    return model.operation_model(names[snake_action])


def _operation(task: Any, boto_service_name: str | None, service_action_name: str | None) -> OperationModel:
    service = task._get_boto_service_name(boto_service_name=boto_service_name)
    action = task._get_boto_service_action(service_action_name=service_action_name)
    return _operation_model(service, action)


def _normalise_parameters(
    self: Any, parameters: dict[str, Any], boto_service_name: str | None = None, service_action_name: str | None = None
) -> None:
    """PascalCase task parameters -> the operation's botocore member names (in place)."""
    shape = _operation(self, boto_service_name, service_action_name).input_shape
    if shape is not None:
        self._to_boto_request(parameters, shape)


def _normalise_response(
    self: Any, response: Any, boto_service_name: str | None = None, service_action_name: str | None = None
) -> None:
    """botocore response -> PascalCase, streams read, timestamps as ISO 8601 text (in place)."""
    shape = _operation(self, boto_service_name, service_action_name).output_shape
    if shape is not None:
        self._from_boto_response(response, shape)
    _timestamps_as_text(response)


def _timestamps_as_text(value: Any) -> None:
    items: Iterator[tuple[Any, Any]]
    if isinstance(value, dict):
        items = iter(list(value.items()))
    elif isinstance(value, list):
        items = iter(list(enumerate(value)))
    else:
        return
    for key, item in items:
        if isinstance(item, datetime.datetime):
            value[key] = item.isoformat()
        else:
            _timestamps_as_text(item)


# --- (c) Bedrock batch inference ----------------------------------------------------------------


class BedrockModel(Protocol):
    """What answers for Bedrock offline; the local runner's model (local/bedrock) has the same three calls.

    Each raises an exception with `code` (a Bedrock error code, e.g. "ValidationException") and `message`
    (like `ModelFailure`) to fail the way Bedrock would.
    """

    def converse(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """A Converse response for a Converse request (`modelId` included)."""
        ...

    def apply_guardrail(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """An ApplyGuardrail response (`guardrailIdentifier` and `guardrailVersion` included in the request)."""
        ...

    def chat_completion(self, body: Mapping[str, Any], *, model_id: str | None = None) -> dict[str, Any]:
        """The chat.completion InvokeModel (and so a batch output line) gives for an OpenAI chat body."""
        ...


class ModelFailure(Exception):
    """A model call failing as Bedrock reports it: an error code and a message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class OfflineModel:
    """A deterministic stand-in for gpt-oss: it answers with a digest of the request and the last user message.

    Like gpt-oss through InvokeModel, the reasoning comes first in the content, inside <reasoning> tags;
    through Converse it is a reasoningContent block. ApplyGuardrail never intervenes.
    """

    def chat_completion(self, body: Mapping[str, Any], *, model_id: str | None = None) -> dict[str, Any]:
        """An OpenAI chat.completion.

        Raises:
            ModelFailure: the body has no messages.
        """
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise ModelFailure("ValidationException", "messages must be a non-empty array.")
        last = messages[-1]
        prompt = _text(last.get("content")) if isinstance(last, dict) else ""
        digest = hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:8]
        answer = f"Offline answer {digest} to: {prompt[:60]}"
        reasoning = f"The prompt has {len(prompt)} characters; answer briefly."
        prompt_tokens = max(1, len(json.dumps(messages)) // 4)
        completion_tokens = max(1, (len(answer) + len(reasoning)) // 4)
        return {
            "id": f"chatcmpl-{digest}",
            "object": "chat.completion",
            "created": 1_767_225_600,
            "model": model_id or str(body.get("model", "gpt-oss")),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": f"<reasoning>{reasoning}</reasoning>{answer}"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    def converse(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """The chat completion of the request's text, in Converse's response shape."""
        return _converse_reply(self.chat_completion(_chat_body(request), model_id=request.get("modelId")))

    def apply_guardrail(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Nothing is blocked offline."""
        units = dict.fromkeys(("topicPolicyUnits", "contentPolicyUnits", "wordPolicyUnits"), 1)
        return {"usage": units, "action": "NONE", "outputs": [], "assessments": []}


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def _chat_body(converse: Mapping[str, Any]) -> dict[str, Any]:
    """A Converse request as an OpenAI chat body (text only: what the pipeline sends)."""
    messages = [{"role": "system", "content": block.get("text", "")} for block in converse.get("system", [])]
    for message in converse.get("messages", []):
        texts = [_block_text(block) for block in message.get("content", [])]
        messages.append({"role": message["role"], "content": " ".join(text for text in texts if text)})
    body: dict[str, Any] = {"messages": messages}
    if "maxTokens" in converse.get("inferenceConfig", {}):
        body["max_completion_tokens"] = converse["inferenceConfig"]["maxTokens"]
    return body


def _block_text(block: Mapping[str, Any]) -> str:
    if "text" in block:
        return str(block["text"])
    return str(block.get("guardContent", {}).get("text", {}).get("text", ""))


def _converse_reply(completion: Mapping[str, Any]) -> dict[str, Any]:
    """An OpenAI chat.completion as Converse answers for gpt-oss (the reasoning in its own block)."""
    choice = completion["choices"][0]
    text = str(choice["message"].get("content") or "")
    content: list[dict[str, Any]] = []
    match = _REASONING.match(text)
    if match:
        content.append({"reasoningContent": {"reasoningText": {"text": match["reasoning"]}}})
        text = match["answer"]
    content.append({"text": text})
    usage = completion.get("usage", {})
    return {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": _STOP_REASONS.get(str(choice.get("finish_reason")), "end_turn"),
        "usage": {
            "inputTokens": usage.get("prompt_tokens", 0),
            "outputTokens": usage.get("completion_tokens", 0),
            "totalTokens": usage.get("total_tokens", 0),
        },
        "metrics": {"latencyMs": 42},
    }


def _failure(error: Exception) -> tuple[str, str] | None:
    """(code, message) of an exception a model raised the Bedrock way, else None."""
    code, message = getattr(error, "code", None), getattr(error, "message", None)
    if isinstance(code, str) and isinstance(message, str):
        return code, message
    return None


@dataclasses.dataclass(frozen=True)
class JobScenario:
    """How one fake job ends.

    `polls`: status checks that answer InProgress before the terminal status is reached (a larger number
    than the state machine's lap limit keeps a job running forever). `failed_records`: the first N records
    of each input file get an `error` line. `unprocessed_records`: the last N get no line at all (what a
    PartiallyCompleted or Stopped job leaves). Failed and Expired jobs write no output.
    """

    status: JobStatus = "Completed"
    message: str | None = None
    polls: int = 1
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


class BedrockJobError(Exception):
    """An error the fake Bedrock API answers with (code and HTTP status as Bedrock's)."""

    STATUS: Mapping[str, int] = {
        "ThrottlingException": 429,
        "ModelTimeoutException": 408,
        "ServiceQuotaExceededException": 400,
        "ValidationException": 400,
        "ConflictException": 400,
        "ResourceNotFoundException": 404,
        "InternalServerException": 500,
        "AccessDeniedException": 403,
    }

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class FakeBedrock:
    """Bedrock of one account and Region, offline: batch jobs, Converse and ApplyGuardrail from one `BedrockModel`.

    Thread-safe (shards run in parallel). Set `model`, `scenario` and `create_errors` before a run.
    """

    def __init__(self, account_id: str, region: str) -> None:
        self.account_id = account_id
        self.region = region
        self.model: BedrockModel = OfflineModel()
        self.scenario: Callable[[JobRequest], JobScenario] = lambda _request: JobScenario()
        # Error codes the next CreateModelInvocationJob / GetModelInvocationJob calls fail with, in order.
        self.create_errors: list[str] = []
        self.status_errors: list[str] = []
        self.create_calls = 0
        self.jobs: dict[str, FakeJob] = {}
        # Every Converse / ApplyGuardrail request received (what was sent, guardrail configuration included).
        self.converse_requests: list[dict[str, Any]] = []
        self.guardrail_requests: list[dict[str, Any]] = []
        self._tokens: dict[str, str] = {}
        self._lock = threading.RLock()

    def create(self, params: Mapping[str, Any]) -> str:
        """CreateModelInvocationJob: the job ARN; the same clientRequestToken returns the same job."""
        with self._lock:
            self.create_calls += 1
            if self.create_errors:
                code = self.create_errors.pop(0)
                raise BedrockJobError(code, f"{code} (simulated)")
            request = _job_request(params)
            token = request.client_request_token
            if token is not None and token in self._tokens:
                return self.jobs[self._tokens[token]].arn
            if any(job.request.job_name == request.job_name for job in self.jobs.values()):
                raise BedrockJobError("ConflictException", f"a job named {request.job_name} already exists")
            seed = token or uuid.uuid4().hex
            job_id = hashlib.sha256(f"{self.account_id}/{seed}".encode()).hexdigest()[:12]
            arn = f"arn:aws:bedrock:{self.region}:{self.account_id}:model-invocation-job/{job_id}"
            now = datetime.datetime.now(datetime.UTC)
            self.jobs[job_id] = FakeJob(job_id, arn, request, self.scenario(request), now)
            if token is not None:
                self._tokens[token] = job_id
            return arn

    def get(self, identifier: str) -> dict[str, Any]:
        """GetModelInvocationJob: each call advances the job one step towards its scenario's end."""
        with self._lock:
            if self.status_errors:
                code = self.status_errors.pop(0)
                raise BedrockJobError(code, f"{code} (simulated)")
            job = self.jobs.get(identifier.rsplit("/", 1)[-1])
            if job is None:
                raise BedrockJobError("ResourceNotFoundException", f"no model invocation job {identifier}")
            self._advance(job)
            return _describe(job)

    def tags(self, arn: str) -> dict[str, str] | None:
        """ListTagsForResource of a job: the tags it was created with (None: not one of this fake's jobs)."""
        with self._lock:
            job = next((job for job in self.jobs.values() if job.arn == arn), None)
            return None if job is None else dict(job.request.tags)

    def for_run(self, run_id: str) -> list[FakeJob]:
        """The jobs tagged with a run id (as the state machine tags them)."""
        with self._lock:
            return [job for job in self.jobs.values() if job.request.tags.get("run") == run_id]

    def _advance(self, job: FakeJob) -> None:
        if job.status in TERMINAL_STATUSES:
            return
        if job.checks < job.scenario.polls:
            job.checks += 1
            job.status = "InProgress"
            return
        job.status = job.scenario.status
        job.ended = datetime.datetime.now(datetime.UTC)
        if job.status in _WITH_OUTPUT:
            job.counts = _write_output(job, self.model, self.region)

    def converse(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Converse, answered by the model (every request is recorded in `converse_requests`)."""
        with self._lock:
            self.converse_requests.append(dict(request))
        return _model_call(self.model.converse, request)

    def apply_guardrail(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """ApplyGuardrail, answered by the model (every request is recorded in `guardrail_requests`)."""
        with self._lock:
            self.guardrail_requests.append(dict(request))
        return _model_call(self.model.apply_guardrail, request)

    def __repr__(self) -> str:
        return f"FakeBedrock({self.account_id}, {self.region}, jobs={len(self.jobs)})"


def _model_call(call: Callable[[Mapping[str, Any]], dict[str, Any]], request: Mapping[str, Any]) -> dict[str, Any]:
    try:
        return call(request)
    except Exception as error:
        failure = _failure(error)
        if failure is None:
            raise
        raise BedrockJobError(*failure) from None


def fake_bedrock(account_id: str, region: str) -> FakeBedrock:
    """The fake Bedrock of an account and Region; kept on moto's bedrock backend, so `mock_aws` resets it."""
    backend = import_module(_BEDROCK_MODELS).bedrock_backends[account_id][region]
    store = backend.__dict__.get("_offline_bedrock")
    if store is None:
        store = FakeBedrock(account_id, region)
        backend.__dict__["_offline_bedrock"] = store
    return store  # type: ignore[no-any-return]


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
        raise BedrockJobError("ValidationException", f"invalid request: missing or malformed {error}") from None
    if not _JOB_NAME.fullmatch(job_name):
        raise BedrockJobError("ValidationException", f"jobName {job_name!r} does not match the required pattern")
    if not 24 <= request.timeout_hours <= 168:
        raise BedrockJobError("ValidationException", "timeoutDurationInHours must be between 24 and 168")
    if inputs.get("s3InputFormat", "JSONL") != "JSONL" or not _S3_URI.match(request.input_uri):
        raise BedrockJobError("ValidationException", "the input must be JSONL at an s3:// URI")
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
    for name in ("totalRecordCount", "processedRecordCount", "successRecordCount", "errorRecordCount"):
        if name in job.counts:
            described[name] = job.counts[name]
    return described


def _write_output(job: FakeJob, model: BedrockModel, region: str) -> dict[str, int]:
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
    index: int, record: Mapping[str, Any], job: FakeJob, total: int, model: BedrockModel, counts: dict[str, int]
) -> dict[str, Any] | None:
    counts["total"] += 1
    if index >= total - job.scenario.unprocessed_records:
        return None
    counts["processed"] += 1
    line: dict[str, Any] = {"recordId": record.get("recordId"), "modelInput": record.get("modelInput")}
    try:
        if index < job.scenario.failed_records:
            raise ModelFailure("ValidationException", "Malformed input request, please reformat your input.")
        output = model.chat_completion(record.get("modelInput") or {}, model_id=job.request.model_id)
    except Exception as error:
        failure = _failure(error)
        if failure is None:
            raise
        counts["error"] += 1
        status = BedrockJobError.STATUS.get(failure[0], 500)
        line["error"] = {"errorCode": status, "errorMessage": failure[1]}
        return line
    counts["success"] += 1
    usage = output.get("usage") or {}
    counts["inputTokens"] += int(usage.get("prompt_tokens", 0))
    counts["outputTokens"] += int(usage.get("completion_tokens", 0))
    line["modelOutput"] = output
    return line


def _bedrock_error(error: BedrockJobError) -> Exception:
    json_error = import_module(_EXCEPTIONS).JsonRESTError
    answer: Exception = json_error(error.code, error.message)
    answer.code = BedrockJobError.STATUS.get(error.code, 400)  # type: ignore[attr-defined]
    return answer


def _create_model_invocation_job(self: Any) -> str:
    try:
        arn = fake_bedrock(self.current_account, self.region).create(json.loads(self.body))
    except BedrockJobError as error:
        raise _bedrock_error(error) from None
    return json.dumps({"jobArn": arn})


def _get_model_invocation_job(self: Any) -> str:
    identifier = unquote(self.uri_match.get("jobIdentifier") or self.path.rsplit("/", 1)[-1])
    try:
        return json.dumps(fake_bedrock(self.current_account, self.region).get(identifier))
    except BedrockJobError as error:
        raise _bedrock_error(error) from None


def _list_tags_for_resource(self: Any) -> str:
    tags = fake_bedrock(self.current_account, self.region).tags(str(json.loads(self.body).get("resourceARN")))
    if tags is None:  # moto's own resources
        original: Callable[[Any], str] = getattr(_list_tags_for_resource, "__wrapped_original__")  # noqa: B009
        return original(self)
    return json.dumps({"tags": [{"key": key, "value": value} for key, value in tags.items()]})


def _converse(self: Any) -> str:
    request = {**json.loads(self.body), "modelId": unquote(self.uri_match.get("modelId", ""))}
    try:
        return json.dumps(fake_bedrock(self.current_account, self.region).converse(request))
    except BedrockJobError as error:
        raise _bedrock_error(error) from None


def _apply_guardrail(self: Any) -> str:
    request = {
        **json.loads(self.body),
        "guardrailIdentifier": unquote(self.uri_match.get("guardrailIdentifier", "")),
        "guardrailVersion": unquote(self.uri_match.get("guardrailVersion", "")),
    }
    try:
        return json.dumps(fake_bedrock(self.current_account, self.region).apply_guardrail(request))
    except BedrockJobError as error:
        raise _bedrock_error(error) from None


_ADDED: dict[str, Callable[[Any], str]] = {
    "create_model_invocation_job": _create_model_invocation_job,
    "get_model_invocation_job": _get_model_invocation_job,
}
_ADDED_RUNTIME: dict[str, Callable[[Any], str]] = {"converse": _converse, "apply_guardrail": _apply_guardrail}


# --- (d) Lambda handlers in-process -------------------------------------------------------------

_handlers: dict[str, Handler] = {}
# Held for the whole of each invocation: the functions' module caches (settings, clients) are the process's,
# and each invocation starts from empty ones, as a fresh container does.
INVOCATION_LOCK = threading.RLock()


def register_handler(function_name: str, handler: Handler) -> None:
    """Run `handler(event, context)` when the moto Lambda function `function_name` is invoked."""
    _handlers[function_name] = handler


def clear_handlers() -> None:
    """Forget every registered handler."""
    _handlers.clear()


@dataclasses.dataclass
class LambdaContext:
    """The parts of the Lambda context handlers and Powertools read; the time left counts down for real."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    timeout_seconds: int
    aws_request_id: str = dataclasses.field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = "offline"
    _started: float = dataclasses.field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        """What Lambda reports: the timeout minus the time spent so far."""
        return max(0, int((self.timeout_seconds - (time.monotonic() - self._started)) * 1000))


def _invoke(
    self: Any,
    function_name: str,
    qualifier: str | None,
    body: Any,
    headers: Any,
    response_headers: MutableMapping[str, str],
) -> bytes:
    function = self.get_function(function_name, qualifier)
    raw = body.decode() if isinstance(body, bytes) else body
    event = json.loads(raw) if raw else {}
    context = LambdaContext(
        function_name=function.function_name,
        invoked_function_arn=function.function_arn,
        memory_limit_in_mb=int(function.memory_size),
        timeout_seconds=int(function.timeout),
        log_group_name=f"/aws/lambda/{function.function_name}",
    )
    with INVOCATION_LOCK:
        # Looked up under the lock: once `clear_handlers` ran, nothing runs or touches the environment.
        handler = _handlers.get(function.function_name)
        if handler is None:
            response_headers["x-amz-function-error"] = "Unhandled"
            return _error_payload("HandlerNotRegistered", f"no offline handler for {function.function_name}", [])
        # The environment is the pipeline's, set once (local/harness.py `_environment`): never swapped here.
        try:
            result = handler(event, context)
        except Exception as error:
            response_headers["x-amz-function-error"] = "Unhandled"
            return _error_payload(type(error).__name__, str(error), traceback.format_tb(error.__traceback__))
    return json.dumps(result, default=str).encode()


def _error_payload(error_type: str, message: str, stack: list[str]) -> bytes:
    return json.dumps({"errorMessage": message, "errorType": error_type, "stackTrace": stack}).encode()


def _lambda_task_error(self: Any, env: Any, ex: Exception) -> Any:
    """A failed Lambda task's error: `Lambda.<code>` for an error of the Lambda service, as AWS names it."""
    if not isinstance(ex, ClientError):
        return _lambda_task_error.__wrapped_original__(self, env, ex)  # type: ignore[attr-defined]
    task = import_module(_LAMBDA_TASK)
    error = f"Lambda.{ex.response['Error']['Code']}"
    return task.FailureEvent(
        env=env,
        error_name=task.CustomErrorName(error),
        event_type=task.HistoryEventType.LambdaFunctionFailed,
        event_details=task.EventDetails(
            lambdaFunctionFailedEventDetails=task.LambdaFunctionFailedEventDetails(
                error=error, cause=ex.response["Error"]["Message"]
            )
        ),
    )


# --- (g) workflow variables in JSONPath states -----------------------------------------------------

_VARIABLE_REFERENCE = re.compile(r"\$(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<fields>(?:\.[A-Za-z0-9_]+)*)")


def _variable_sample(self: Any, env: Any) -> None:
    """A JSONPath state's `$name` or `$name.field...` from the variable store; anything else as moto does it.

    A variable that was never assigned raises moto's NoSuchVariable, which fails the state as AWS does.
    """
    match = _VARIABLE_REFERENCE.fullmatch(self.expression)
    jsonpath = self.query_language_mode == import_module(_STRING_EXPRESSION).QueryLanguageMode.JSONPath
    if match is None or not jsonpath:
        _variable_sample.__wrapped_original__(self, env)  # type: ignore[attr-defined]
        return
    value = env.variable_store.get(match["name"])
    for field in match["fields"].split(".")[1:]:
        value = value[field]
    env.stack.append(copy.deepcopy(value))


# --- (e) no real waiting ------------------------------------------------------------------------

waits: list[float] = []


def _wait_interval(self: Any, env: Any, wait_seconds: int) -> None:
    """A Wait state: record the seconds it asked for, return at once."""
    waits.append(float(wait_seconds))


class _InstantTime:
    """The `time` module as the retrier sees it: `sleep` records the interval and returns at once."""

    def __init__(self, real: ModuleType) -> None:
        self._real = real

    def sleep(self, seconds: float) -> None:
        """Record a retry interval."""
        waits.append(float(seconds))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


# --- a client the mock leaves alone -------------------------------------------------------------


ClientT = TypeVar("ClientT", bound=BaseClient)


def unmocked(client: ClientT) -> ClientT:
    """The same client, never answered by moto: its requests reach the real endpoint even inside `mock_aws`.

    moto answers every botocore client through one before-send hook that every new session registers;
    this detaches that hook from this client only (its credentials are the ones it was created with).
    """
    client.meta.events.unregister("before-send", import_module(_CORE_MODELS).botocore_stubber)
    return client
