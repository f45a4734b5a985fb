"""The chat API on 127.0.0.1, served by the real chat function as the synthesized template deploys it.

HTTP request -> API Gateway (routes, body model, gateway responses: local/apigw.py) -> proxy event ->
`chat.handler.lambda_handler` with the template's environment -> HTTP response. Bedrock is the stand-in
(offline or OpenAI-compatible backend) or, with the aws backend, Amazon Bedrock itself.

The function runs in this process, the way one Lambda execution environment runs it: one invocation at
a time, with its environment applied before its code is imported (Powertools and the settings loader
read the environment once).
"""

from __future__ import annotations

import importlib
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

import boto3

from chat.settings import ChatSettings
from local.apigw import ACCOUNT_ID, ApiGateway, HttpResponse, build_event, response_from_result
from local.bedrock import (
    DEFAULT_TOKENS_PER_SECOND,
    DEFAULT_TRIGGER_WORDS,
    LOCAL_GUARDRAIL_ID,
    LOCAL_GUARDRAIL_VERSION,
    Backend,
    BedrockStandIn,
    OpenAIServer,
    WordGuardrail,
    build_model,
)
from local.environment import applied_environment
from local.lambda_context import REGION, LocalLambdaContext
from local.services import serving
from local.templates import ChatFunction, Template, chat_table, guardrail_messages

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
# Who the function sees as the (IAM-authenticated) caller of every local request.
LOCAL_CALLER_ARN = f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/local-developer/local"
_GUARDRAIL_VARIABLES = frozenset({"GUARDRAIL_ID", "GUARDRAIL_VERSION"})
# The Idempotency-Key table's name: locally, a table of the template's shape in moto's DynamoDB.
_TABLE_VARIABLE = "IDEMPOTENCY_TABLE_NAME"
# Credentials that could override the stand-in's dummy ones, or name a profile that does not exist here.
_AMBIENT_CREDENTIALS = ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE")


@dataclass(frozen=True)
class ChatApiOptions:
    """How to run the chat API locally."""

    backend: Backend = "offline"
    port: int = 0
    openai: OpenAIServer | None = None
    trigger_words: tuple[str, ...] = DEFAULT_TRIGGER_WORDS
    # The guardrail every call carries; by default the template's existing one, else a local one.
    guardrail_id: str | None = None
    guardrail_version: str | None = None
    # The offline model's streaming pace (ConverseStream) in output tokens a second; None or 0: no pause.
    tokens_per_second: float | None = DEFAULT_TOKENS_PER_SECOND


@dataclass(frozen=True)
class RunningChatApi:
    """A chat API being served: where, with which settings, and where its Bedrock is."""

    url: str  # the base URL for OpenAI SDKs (ends in /v1)
    bedrock_url: str | None  # the stand-in's endpoint; None with the aws backend
    settings: ChatSettings
    guardrail: WordGuardrail
    dynamodb_url: str | None = None  # moto's DynamoDB with the Idempotency-Key table; None: the template has none


@contextmanager
def running_chat_api(
    template: Template,
    options: ChatApiOptions,
    *,
    bedrock_url: str | None = None,
    dynamodb_url: str | None = None,
    invocation_lock: AbstractContextManager[Any] | None = None,
) -> Iterator[RunningChatApi]:
    """Serve the chat API of a synthesized chat stack until the block ends; then stop and join everything.

    `bedrock_url`: a Bedrock runtime endpoint the caller serves; the function calls it, whatever the backend,
    and no stand-in of its own is started. `dynamodb_url`: a moto server of this process for the Idempotency-Key
    table (by default one of its own); the table is created there from the template, never in AWS, whatever
    the backend. `invocation_lock`: held for each invocation, to share one process environment with other
    functions run in this process (by default the chat function's own lock).

    Raises:
        ValueError: the template and the options do not make a runnable function (the message says why).
        OSError: a port could not be bound.
    """
    function = ChatFunction.from_template(template)
    table = chat_table(template, _TABLE_VARIABLE)
    unknown = function.deploy_time - _GUARDRAIL_VARIABLES - ({_TABLE_VARIABLE} if table is not None else set())
    if unknown:
        raise ValueError(f"the chat function's environment has deploy-time values we cannot fill in: {sorted(unknown)}")
    guardrail = chat_guardrail(template, options)
    variables = {
        **function.environment,
        "GUARDRAIL_ID": guardrail.guardrail_id,
        "GUARDRAIL_VERSION": guardrail.guardrail_version,
        # One table per run: moto's state is per process, and a run never replays another run's answers.
        **({_TABLE_VARIABLE: f"local-idempotency-{uuid.uuid4().hex[:12]}"} if table is not None else {}),
    }
    # The function's own contract: fails here, before serving, when infra and runtime disagree.
    settings = ChatSettings.model_validate(variables)
    with ExitStack() as stack:
        if bedrock_url is None and options.backend != "aws":
            model = build_model(
                options.backend,
                openai=options.openai,
                guardrail=guardrail,
                model_ids=settings.MODEL_IDS,
                tokens_per_second=options.tokens_per_second,
            )
            stack.callback(model.close)
            bedrock_url = stack.enter_context(serving(BedrockStandIn(model), "bedrock-stand-in")).url
        runtime, unset = _runtime_environment(function, bedrock_url)
        if table is not None:
            if dynamodb_url is None:
                dynamodb_url = stack.enter_context(_moto_endpoint())
            _create_table(dynamodb_url, runtime["AWS_REGION"], variables[_TABLE_VARIABLE], table)
            stack.callback(_delete_table, dynamodb_url, runtime["AWS_REGION"], variables[_TABLE_VARIABLE])
            runtime["AWS_ENDPOINT_URL_DYNAMODB"] = dynamodb_url
        stack.enter_context(function_environment({**variables, **runtime}, unset=unset))
        handler = load_handler(function.handler)
        server = ChatServer(
            handler,
            function=function,
            gateway=ApiGateway.from_template(template),
            port=options.port,
            invocation_lock=invocation_lock,
        )
        stack.enter_context(serving(server, "chat-api"))
        yield RunningChatApi(
            url=server.url,
            bedrock_url=bedrock_url,
            settings=settings,
            guardrail=guardrail,
            dynamodb_url=dynamodb_url if table is not None else None,
        )


@contextmanager
def _moto_endpoint() -> Iterator[str]:
    """moto's server on a free loopback port for the duration (its URL): DynamoDB for the chat function."""
    from local.harness import S3Endpoint  # imports moto's server (Flask): only when a table needs it

    with serving(S3Endpoint(), "dynamodb-endpoint") as endpoint:
        yield endpoint.url


def _dynamodb(endpoint_url: str, region: str) -> DynamoDBClient:
    # moto checks no signature: any key will do, and real credentials never go anywhere but loopback.
    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id="local",
        aws_secret_access_key="local",  # noqa: S106 (a placeholder moto accepts)
    )


def _create_table(endpoint_url: str, region: str, name: str, properties: Mapping[str, Any]) -> None:
    """Create the template's table (keys, billing, TTL) under `name` at `endpoint_url`."""
    client = _dynamodb(endpoint_url, region)
    client.create_table(
        TableName=name,
        KeySchema=properties["KeySchema"],
        AttributeDefinitions=properties["AttributeDefinitions"],
        BillingMode=properties.get("BillingMode", "PAY_PER_REQUEST"),
    )
    ttl = properties.get("TimeToLiveSpecification")
    if ttl:
        client.update_time_to_live(TableName=name, TimeToLiveSpecification=ttl)


def _delete_table(endpoint_url: str, region: str, name: str) -> None:
    _dynamodb(endpoint_url, region).delete_table(TableName=name)


def chat_guardrail(template: Template, options: ChatApiOptions) -> WordGuardrail:
    """The guardrail every chat call carries: the options' or the template's existing one, else a local one.

    Raises:
        ValueError: the aws backend without a guardrail id and version, or no chat function in the template.
    """
    function = ChatFunction.from_template(template)
    guardrail_id = options.guardrail_id or function.environment.get("GUARDRAIL_ID")
    guardrail_version = options.guardrail_version or function.environment.get("GUARDRAIL_VERSION")
    if options.backend == "aws" and not (guardrail_id and guardrail_version):
        raise ValueError(
            "the aws backend calls Amazon Bedrock with a real guardrail: give its id and version "
            "(--guardrail-id and --guardrail-version, or -c guardrailId=... -c guardrailVersion=...)"
        )
    messages = guardrail_messages(template)
    return WordGuardrail(
        guardrail_id=guardrail_id or LOCAL_GUARDRAIL_ID,
        guardrail_version=guardrail_version or LOCAL_GUARDRAIL_VERSION,
        trigger_words=options.trigger_words,
        **({"blocked_input_message": messages[0], "blocked_output_message": messages[1]} if messages else {}),
    )


def _runtime_environment(function: ChatFunction, bedrock_url: str | None) -> tuple[dict[str, str], tuple[str, ...]]:
    """What Lambda's runtime adds to the function's environment here, and what must be unset."""
    region = REGION if bedrock_url else _aws_region()
    variables = {
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_LAMBDA_FUNCTION_NAME": function.logical_id,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_mb),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        # No X-Ray daemon runs here, and metrics would only be EMF blobs on stdout between the logs
        # (Powertools still prints the one cold-start metric).
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_DISABLED": "true",
    }
    if bedrock_url is None:
        # Real Bedrock: the user's own credentials, profile and endpoint settings stay as they are.
        return variables, ()
    variables["AWS_ENDPOINT_URL_BEDROCK_RUNTIME"] = bedrock_url
    # The stand-in checks no signature, but botocore signs every request: any key will do.
    variables.update(dict.fromkeys(("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"), "local"))
    return variables, _AMBIENT_CREDENTIALS


def _aws_region() -> str:
    region = boto3.session.Session().region_name
    if not region:
        raise ValueError("the aws backend needs a Region: set AWS_DEFAULT_REGION (or a region in your AWS profile)")
    return region


@contextmanager
def function_environment(variables: Mapping[str, str], *, unset: Iterable[str] = ()) -> Iterator[None]:
    """`os.environ` as the function sees it, for the duration; restored afterwards.

    The chat function's caches of what it read from the environment are cleared on entry and on exit,
    as if a new execution environment started.
    """
    with applied_environment(variables, unset=unset):
        reset_function_caches()
        try:
            yield
        finally:
            reset_function_caches()


def reset_function_caches() -> None:
    """Forget the settings, gateway, idempotency store and clients the chat function built from the environment."""
    import chat.handler
    import chat.idempotency
    import shared.converse
    import shared.settings

    shared.settings.load_settings.cache_clear()
    chat.handler.converse_gateway.cache_clear()
    shared.converse.runtime_client.cache_clear()
    chat.idempotency.persistence_store.cache_clear()


def load_handler(dotted: str) -> Handler:
    """Import a handler by its dotted string, as the Lambda runtime does (`module.function`)."""
    module_name, _, attribute = dotted.rpartition(".")
    handler: Handler = getattr(importlib.import_module(module_name), attribute)
    return handler


class ChatServer(ThreadingHTTPServer):
    """The chat API's HTTP front: API Gateway's behaviour, then the function, one invocation at a time."""

    # server_close() waits for requests in flight (they end within the function's timeout).
    daemon_threads = False
    block_on_close = True
    # API Gateway takes every connection a burst opens and answers the excess with 429s; socketserver's
    # default backlog of 5 would reset them instead.
    request_queue_size = 128

    def __init__(
        self,
        handler: Handler,
        *,
        function: ChatFunction,
        gateway: ApiGateway,
        port: int = 0,
        invocation_lock: AbstractContextManager[Any] | None = None,
    ) -> None:
        super().__init__(("127.0.0.1", port), _ChatRequestHandler)
        self.function = function
        self.gateway = gateway
        self._handler = handler
        # Powertools' resolver and logger keep per-invocation state in module globals, like one Lambda
        # execution environment: so invocations take turns.
        self._invocation = invocation_lock or threading.Lock()

    @property
    def url(self) -> str:
        """The base URL OpenAI SDKs take."""
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def respond(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> HttpResponse:
        """The HTTP response to one request (`target` is the request line's path and query)."""
        request_id = str(uuid.uuid4())
        split = urlsplit(target)
        path = unquote(split.path)
        route = self.gateway.admit(method, path, body, request_id=request_id)
        if isinstance(route, HttpResponse):
            return route
        event = build_event(
            method,
            path,
            headers=headers,
            body=body.decode("utf-8", errors="replace") if body else None,
            query=dict(parse_qsl(split.query)) or None,
            request_id=request_id,
            caller_arn=LOCAL_CALLER_ARN,
            resource=route.resource,
            path_parameters=route.path_parameters,
            stage=self.gateway.stage,
        )
        with self._invocation:
            context = LocalLambdaContext.starting_now(
                self.function.logical_id,
                timeout_seconds=self.function.timeout_seconds,
                memory_mb=self.function.memory_mb,
            )
            started = time.monotonic()
            try:
                result = self._handler(event, context)
            except Exception:
                # An unhandled error is a failed invocation: API Gateway answers 502 "Internal server error".
                print(f"chat function failed (request {request_id}):\n{traceback.format_exc()}", file=sys.stderr)
                return self.gateway.error("DEFAULT_5XX", "Internal server error", request_id=request_id)
        if time.monotonic() - started > route.timeout_seconds:
            # API Gateway would have given up on the integration already and answered this instead.
            return self.gateway.error("INTEGRATION_TIMEOUT", "Endpoint request timed out", request_id=request_id)
        try:
            return response_from_result(result)
        except (KeyError, TypeError, ValueError):
            return self.gateway.error("DEFAULT_5XX", "Internal server error", request_id=request_id)


class _ChatRequestHandler(BaseHTTPRequestHandler):
    server: ChatServer
    # A connection that sends nothing is dropped after this long, so shutdown never waits on it for longer.
    timeout = 10

    def _serve(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.send_error(400, "Invalid Content-Length")
            return
        body = self.rfile.read(length) if length > 0 else b""
        response = self.server.respond(self.command, self.path, dict(self.headers.items()), body)
        payload = response.body.encode()
        self.send_response(response.status)
        for name, value in response.headers.items():
            if name.lower() not in ("content-length", "connection"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve
