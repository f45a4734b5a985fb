"""The guarded moto patches: what moto (pinned to MOTO_VERSION) lacks or gets wrong for this pipeline.

`install()` applies them once per process, after `check()` has verified that every moto internal they patch or
rely on is still where and what it was; if moto moved anything, it raises `MotoInternalsMoved` naming it instead
of running a half-patched interpreter. This is the one module allowed moto's private attributes
(tests/test_no_private_apis.py), and the only one that touches moto's objects: what the patches hand over to,
`local.bedrock.batch_jobs` (the Bedrock stand-in) and `local.lambda_runtime` (in-process Lambda), knows no moto.
Each patch names the moto behaviour it works around and the upstream issue or PR to watch, so it can be dropped
when moto fixes it:

(a) aws-sdk casing. Step Functions writes SDK parameters in PascalCase (`JobName`) and returns PascalCase
    responses; moto's `StateTaskServiceAwsSdk._normalise_parameters` / `_normalise_response` are no-ops, so only
    services whose botocore names are already PascalCase worked. They now convert through the operation's botocore
    shapes with moto's own `_to_boto_request` / `_from_boto_response`; timestamps become ISO 8601 strings, as Step
    Functions returns them. Upstream: getmoto/moto#10076 (open); PRs getmoto/moto#10094 and #10101 (open) restore
    the two methods.
(b) Error names. AWS calls a Bedrock SDK error `Bedrock.ThrottlingException` and an S3 one `S3.NoSuchKey...`;
    moto's `_SERVICE_ERROR_NAMES` only knows DynamoDB and Step Functions (any other service's errors get the bare
    service name, which no Retry or Catch lists). Upstream: no upstream issue found.
(c) Bedrock. moto's bedrock has no `CreateModelInvocationJob` / `GetModelInvocationJob` /
    `ListModelInvocationJobs` / `StopModelInvocationJob` (the last two: what a Batch API cancel calls), its
    `ListTagsForResource` knows only customization jobs and custom models, and its bedrock-runtime answers
    only InvokeModel (added in getmoto/moto#9866), not `Converse` / `ApplyGuardrail`. The six operations are
    added to moto's responses classes and `ListTagsForResource` answers for the stand-in's jobs, all from
    `local.bedrock.batch_jobs`'s `FakeBedrock`, kept on moto's bedrock backend (`fake_bedrock`) so `mock_aws`
    resets it. (A before-send hook cannot answer Converse under moto: botocore calls every before-send handler,
    and moto's raises NotImplementedError for it.) `check()` reports any operation moto comes to implement.
    Upstream: no upstream issue found (for batch jobs, their tags, Converse or ApplyGuardrail).
(d) Lambda in process. With `{"lambda": {"use_docker": False}}`, moto's `LambdaSimpleBackend.invoke` runs no code:
    it echoes the payload or a queued canned result. It now hands the invocation to `local.lambda_runtime`, which
    runs the Python handler registered for the function's name; a handler exception becomes a function error
    (`x-amz-function-error`), so Retry/Catch see its type as the error name, as with Lambda. Upstream:
    getmoto/moto#9916 (open: an in-process execution mode for `use_docker: False`).
(e) No real waiting. moto's interpreter sleeps through Wait states and retry intervals, as AWS waits them; offline
    they return at once (the requested seconds are recorded in `waits`). A task's `TimeoutSeconds` (the callback
    wait of AwaitJob: the reconcile interval) is waited `task_timeout_seconds` of real time instead (the requested
    seconds are recorded in `task_timeouts`), long enough for an event to arrive when a test wants one. Upstream:
    no upstream issue found (moto behaves as AWS here; the patch is the harness's choice).
(f) Lambda service errors. A task whose Resource is a function ARN calls every error of the Lambda API (throttling,
    a 5xx) `Exception`; AWS names it `Lambda.<code>` (`Lambda.ServiceException`, `Lambda.TooManyRequestsException`),
    which is what the definition's Retry lists. Upstream: no upstream issue found.
(g) Workflow variables in JSONPath states. moto reads every `$variable` reference through JSONata, which it ships
    without an evaluator, so any read failed; a plain reference (`$laps`, `$job.arn`) in a JSONPath state is now
    read from the execution's variable store. JSONata states are left as they were. Upstream: getmoto/moto#10105
    (open: the JSONata evaluator is never wired); PR getmoto/moto#10112 (open) wires a pure-Python one. Once a
    release evaluates JSONata, run tests/functional/test_moto_patches.py without (g) before dropping it.
(h) The event envelope's `account`. moto delivers a rule's event to a target through
    `EventTemplateParser.DEFAULT_EVENT_INPUT_TEMPLATE`, which leaves out `account`, a field of every EventBridge
    event (and one Powertools' `EventBridgeModel` requires, which job_events reads events with); the template gets
    it back. Upstream: no upstream issue found.

Also relied on, not patched: moto's before-send hook (`unmocked` detaches it from one client that must reach the
real endpoint while a mock is active) and the WSGI application moto's server is made of (local/harness.py serves
the mock's S3 over HTTP with it).
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import functools
import inspect
import json
import re
import threading
from collections.abc import Callable, MutableMapping
from importlib import import_module
from importlib.metadata import version
from types import ModuleType
from typing import Any, TypeVar
from urllib.parse import unquote

import botocore.session
from botocore import xform_name
from botocore.client import BaseClient
from botocore.exceptions import ClientError
from botocore.model import OperationModel, ServiceModel

from local import lambda_runtime
from local.bedrock.batch_jobs import FakeBedrock
from local.bedrock.shapes import ModelError

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
_TIMEOUT = "moto.stepfunctions.parser.asl.component.common.timeouts.timeout"
_EVENTS_UTILS = "moto.events.utils"
# (h) moto's default event template, and the same with `account` (whose path its paths map already has).
_EVENT_TEMPLATE = (
    '{"id": "<id>", "time": <time>, "version": "0", "detail-type": "<detail-type>", "source": "<source>", '
    '"region": "<region>", "resources": <resources>, "detail": <detail>}'
)
_EVENT_TEMPLATE_WITH_ACCOUNT = _EVENT_TEMPLATE.replace(
    '"source": "<source>", ', '"source": "<source>", "account": "<account>", '
)

# The error-name prefixes Step Functions uses for the SDK services the pipeline calls.
SERVICE_ERROR_NAMES = {"bedrock": "Bedrock", "s3": "S3", "cloudwatch": "CloudWatch"}


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
    _Target(_TIMEOUT, "TimeoutSeconds._eval_seconds", ("self", "env")),
    _Target(_TIMEOUT, "TimeoutSeconds.is_default_value", ("self",)),
    # (g) variable reads in JSONPath states.
    _Target(_STRING_EXPRESSION, "StringVariableSample._eval_body", ("self", "env"), calls="eval_jsonata_expression("),
    _Target(_STRING_EXPRESSION, "QueryLanguageMode"),
    # (h) the event envelope's account.
    _Target(_EVENTS_UTILS, "EventTemplateParser.DEFAULT_EVENT_INPUT_TEMPLATE", kind=str),
    _Target(_EVENTS_UTILS, "EventTemplateParser.DEFAULT_EVENT_INPUT_PATHS_MAP", kind=dict),
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
    problems.extend(problem for target in _TARGETS if (problem := _check_target(target)))
    for module, class_name, added in _ADDED:
        try:
            response_class = getattr(import_module(module), class_name, None)
        except ImportError:
            continue  # reported by the targets above
        for operation, method in added.items():
            if getattr(response_class, operation, None) not in (None, method):
                problems.append(f"moto now implements {module}.{class_name}.{operation}: drop that extension")
    parser = getattr(import_module(_EVENTS_UTILS), "EventTemplateParser", None)
    template = getattr(parser, "DEFAULT_EVENT_INPUT_TEMPLATE", None)
    if template not in (_EVENT_TEMPLATE, _EVENT_TEMPLATE_WITH_ACCOUNT):
        problems.append(
            f"{_EVENTS_UTILS}: moto's default event template changed (does it carry account now?): {template!r}"
        )
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
    """Apply (a)-(h) once per process.

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
        _patch(import_module(_TIMEOUT).TimeoutSeconds, "_eval_seconds", _task_timeout)
        _patch(import_module(_STRING_EXPRESSION).StringVariableSample, "_eval_body", _variable_sample)
        retrier: Any = import_module(_RETRIER)
        retrier.time = _InstantTime(retrier.time)
        _patch(import_module(_LAMBDA_SIMPLE).LambdaSimpleBackend, "invoke", _invoke)
        _patch(import_module(_LAMBDA_TASK).StateTaskLambda, "_from_error", _lambda_task_error)
        for module, class_name, added in _ADDED:
            for operation, method in added.items():
                setattr(getattr(import_module(module), class_name), operation, method)
        _patch(import_module(_BEDROCK_RESPONSES).BedrockResponse, "list_tags_for_resource", _list_tags_for_resource)
        import_module(_EVENTS_UTILS).EventTemplateParser.DEFAULT_EVENT_INPUT_TEMPLATE = _EVENT_TEMPLATE_WITH_ACCOUNT
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
    if not isinstance(value, dict | list):
        return
    for key, item in list(value.items() if isinstance(value, dict) else enumerate(value)):
        if isinstance(item, datetime.datetime):
            value[key] = item.isoformat()
        else:
            _timestamps_as_text(item)


# --- (c) Bedrock, answered by local.bedrock.batch_jobs ----------------------------------------------


def fake_bedrock(account_id: str, region: str) -> FakeBedrock:
    """The fake Bedrock of an account and Region; kept on moto's bedrock backend, so `mock_aws` resets it."""
    backend = import_module(_BEDROCK_MODELS).bedrock_backends[account_id][region]
    store = backend.__dict__.get("_offline_bedrock")
    if store is None:
        store = FakeBedrock(account_id, region)
        backend.__dict__["_offline_bedrock"] = store
    return store  # type: ignore[no-any-return]


def _answering(call: Callable[[Any, FakeBedrock], dict[str, Any]]) -> Callable[[Any], str]:
    """A method of moto's responses class answered by the account's fake Bedrock: `call`'s result as JSON, its
    ModelError as moto's JSON error with the code and HTTP status Bedrock answers with."""

    def answer(self: Any) -> str:
        try:
            return json.dumps(call(self, fake_bedrock(self.current_account, self.region)))
        except ModelError as error:
            refused: Exception = import_module(_EXCEPTIONS).JsonRESTError(error.code, error.message)
            refused.code = error.status  # type: ignore[attr-defined]
            raise refused from None

    return answer


@_answering
def _create_model_invocation_job(self: Any, bedrock: FakeBedrock) -> dict[str, Any]:
    return {"jobArn": bedrock.create(json.loads(self.body))}


@_answering
def _get_model_invocation_job(self: Any, bedrock: FakeBedrock) -> dict[str, Any]:
    return bedrock.get(unquote(self.uri_match.get("jobIdentifier") or self.path.rsplit("/", 1)[-1]))


@_answering
def _list_model_invocation_jobs(self: Any, bedrock: FakeBedrock) -> dict[str, Any]:
    return bedrock.list_jobs(self.querystring.get("nameContains", [None])[0])


@_answering
def _stop_model_invocation_job(self: Any, bedrock: FakeBedrock) -> dict[str, Any]:
    bedrock.stop(unquote(self.path.rstrip("/").rsplit("/", 2)[-2]))
    return {}


@_answering
def _converse(self: Any, bedrock: FakeBedrock) -> dict[str, Any]:
    return bedrock.converse({**json.loads(self.body), "modelId": unquote(self.uri_match.get("modelId", ""))})


@_answering
def _apply_guardrail(self: Any, bedrock: FakeBedrock) -> dict[str, Any]:
    return bedrock.apply_guardrail(
        {
            **json.loads(self.body),
            "guardrailIdentifier": unquote(self.uri_match.get("guardrailIdentifier", "")),
            "guardrailVersion": unquote(self.uri_match.get("guardrailVersion", "")),
        }
    )


def _list_tags_for_resource(self: Any) -> str:
    tags = fake_bedrock(self.current_account, self.region).tags(str(json.loads(self.body).get("resourceARN")))
    if tags is None:  # moto's own resources
        original: Callable[[Any], str] = getattr(_list_tags_for_resource, "__wrapped_original__")  # noqa: B009
        return original(self)
    return json.dumps({"tags": [{"key": key, "value": value} for key, value in tags.items()]})


# The operations added to moto's responses classes: (module, class, {operation: method}).
_ADDED: tuple[tuple[str, str, dict[str, Callable[[Any], str]]], ...] = (
    (
        _BEDROCK_RESPONSES,
        "BedrockResponse",
        {
            "create_model_invocation_job": _create_model_invocation_job,
            "get_model_invocation_job": _get_model_invocation_job,
            "list_model_invocation_jobs": _list_model_invocation_jobs,
            "stop_model_invocation_job": _stop_model_invocation_job,
        },
    ),
    (_RUNTIME_RESPONSES, "BedrockRuntimeResponse", {"converse": _converse, "apply_guardrail": _apply_guardrail}),
)


# --- (d) Lambda in process, run by local.lambda_runtime ----------------------------------------------


def _invoke(
    self: Any,
    function_name: str,
    qualifier: str | None,
    body: Any,
    headers: Any,
    response_headers: MutableMapping[str, str],
) -> bytes:
    """`LambdaSimpleBackend.invoke`: the function's registered handler, run in process."""
    function = self.get_function(function_name, qualifier)
    invoked = lambda_runtime.invoke(function.function_name, int(function.memory_size), int(function.timeout), body)
    if invoked.function_error is not None:
        response_headers["x-amz-function-error"] = invoked.function_error
    return invoked.payload


# --- (e) no real waiting ------------------------------------------------------------------------

waits: list[float] = []


def _wait_interval(self: Any, env: Any, wait_seconds: int) -> None:
    """A Wait state: record the seconds it asked for, return at once."""
    waits.append(float(wait_seconds))


# Real seconds a task's TimeoutSeconds lasts offline, and the seconds every such timeout asked for.
task_timeout_seconds = 0.05
task_timeouts: list[float] = []


def _task_timeout(self: Any, env: Any) -> float:
    """A task's TimeoutSeconds: `task_timeout_seconds` of real time (moto's default, no timeout, stays)."""
    if self.is_default_value():
        return float(self.timeout_seconds)
    task_timeouts.append(float(self.timeout_seconds))
    return task_timeout_seconds


class _InstantTime:
    """The `time` module as the retrier sees it: `sleep` records the interval and returns at once."""

    def __init__(self, real: ModuleType) -> None:
        self._real = real

    def sleep(self, seconds: float) -> None:
        """Record a retry interval."""
        waits.append(float(seconds))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


# --- (f) Lambda service error names ----------------------------------------------------------------


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


# --- a client the mock leaves alone -------------------------------------------------------------


ClientT = TypeVar("ClientT", bound=BaseClient)


def unmocked(client: ClientT) -> ClientT:
    """The same client, never answered by moto: its requests reach the real endpoint even inside `mock_aws`.

    moto answers every botocore client through one before-send hook that every new session registers;
    this detaches that hook from this client only (its credentials are the ones it was created with).
    """
    client.meta.events.unregister("before-send", import_module(_CORE_MODELS).botocore_stubber)
    return client
