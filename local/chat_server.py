"""The chat API on 127.0.0.1, served by the real chat function as the synthesized template deploys it.

HTTP request -> API Gateway (routes, body model, throttle, gateway responses: local/apigw.py) -> proxy event ->
the HTTP request the Lambda Web Adapter makes of it (local/web_adapter.py) -> the chat app, started from the
template's handler script in its own process with the template's environment -> its response, streamed back
as it comes. Bedrock is the stand-in (offline or OpenAI-compatible backend) or, with the aws backend, Amazon
Bedrock itself.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import anyio
import boto3
import httpx
import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chat.settings import ChatSettings
from local.apigw import ACCOUNT_ID, ApiGateway, HttpResponse, build_event
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
from local.lambda_context import REGION, LocalLambdaContext
from local.services import CHAT_API_PURPOSE, listening_socket, serving
from local.templates import ChatFunction, Template, chat_table, guardrail_messages
from local.web_adapter import forwarded_headers

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

FUNCTIONS_DIR = Path(__file__).resolve().parents[1] / "functions"
# The adapter's readiness check (the template's AWS_LWA_READINESS_CHECK_PATH) and how long a start may take.
READINESS_PATH = "/healthz"
READINESS_TIMEOUT_SECONDS = 60
# The managed runtime runs the handler script with bash (its shebang); so does the local runner.
BASH = shutil.which("bash") or "/bin/bash"
# Who the function sees as the (IAM-authenticated) caller of every local request.
LOCAL_CALLER_ARN = f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/local-developer/local"
_GUARDRAIL_VARIABLES = frozenset({"GUARDRAIL_ID", "GUARDRAIL_VERSION"})
# The Idempotency-Key table's name: locally, a table of the template's shape in moto's DynamoDB.
_TABLE_VARIABLE = "IDEMPOTENCY_TABLE_NAME"
# The AWS services (botocore's AWS_ENDPOINT_URL_<service id>) the chat function reaches through `aws_url`.
_MOTO_SERVICES = ("DYNAMODB", "SSM", "S3", "SFN", "BEDROCK")
_BEARER = re.compile(r"Bearer\s+(\S+)", re.IGNORECASE)
_ROLE_NAME_UNSAFE = re.compile(r"[^\w+=,.@-]")
# Credentials that could override the stand-in's dummy ones, or name a profile that does not exist here.
_AMBIENT_CREDENTIALS = ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE")
NO_GUARDRAIL = (
    "the aws backend calls Amazon Bedrock with a real guardrail: give its id and version "
    "(--guardrail-id and --guardrail-version, or -c guardrailId=... -c guardrailVersion=...)"
)


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
    aws_url: str  # moto's server: every AWS service the function calls besides Bedrock's runtime
    stand_in: BedrockStandIn | None = None  # the Bedrock stand-in this API started (its streams can be watched)


@contextmanager
def running_chat_api(
    template: Template,
    options: ChatApiOptions,
    *,
    bedrock_url: str | None = None,
    aws_url: str | None = None,
) -> Iterator[RunningChatApi]:
    """Serve the chat API of a synthesized chat stack until the block ends; then stop and join everything.

    `bedrock_url`: a Bedrock runtime endpoint the caller serves; the function calls it, whatever the backend,
    and no stand-in of its own is started. `aws_url`: a moto server of this process (by default one of its own)
    that answers every other AWS call of the function, whatever the backend: the Idempotency-Key table, created
    there from the template, and the Batch API's SSM, S3, Step Functions and Bedrock jobs (the batch pipeline's
    moto state when the caller runs one; without it the Batch API answers 503). Nothing but Bedrock's runtime
    (with the aws backend) ever reaches AWS. The function runs in its own process with the template's
    environment (as the Lambda Web Adapter runs it), behind the local API Gateway on `options.port`.

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
    stand_in: BedrockStandIn | None = None
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
            stand_in = stack.enter_context(serving(BedrockStandIn(model), "bedrock-stand-in"))
            bedrock_url = stand_in.url
        runtime, unset = _runtime_environment(function, bedrock_url)
        if aws_url is None:
            aws_url = stack.enter_context(_moto_endpoint())
        if table is not None:
            _create_table(aws_url, runtime["AWS_REGION"], variables[_TABLE_VARIABLE], table)
            stack.callback(_delete_table, aws_url, runtime["AWS_REGION"], variables[_TABLE_VARIABLE])
        runtime.update({f"AWS_ENDPOINT_URL_{service}": aws_url for service in _MOTO_SERVICES})
        process = FunctionProcess({**variables, **runtime}, unset=unset)
        process.start(function.handler)
        stack.callback(process.stop)
        local_gateway = LocalGateway(function, ApiGateway.from_template(template), process.url)
        server = stack.enter_context(GatewayServer(local_gateway, port=options.port))
        yield RunningChatApi(
            url=server.url,
            bedrock_url=bedrock_url,
            settings=settings,
            guardrail=guardrail,
            aws_url=aws_url,
            stand_in=stand_in,
        )


def local_caller(headers: Mapping[str, str]) -> str:
    """The principal the local gateway admits a request as (deployed, IAM authenticates the SigV4 signer).

    No signature is checked here, so the API key names the caller: `Authorization: Bearer alice` is the role
    `alice`, which is how two local callers are told apart (files and batches belong to their signer); without
    a key, the role `local-developer`.
    """
    authorization = next((value for name, value in headers.items() if name.lower() == "authorization"), "")
    bearer = _BEARER.fullmatch(authorization.strip())
    if bearer is None:
        return LOCAL_CALLER_ARN
    role = _ROLE_NAME_UNSAFE.sub("-", bearer.group(1))[:64]
    return f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/{role}/local"


@contextmanager
def _moto_endpoint() -> Iterator[str]:
    """moto's server on a free loopback port for the duration (its URL): the chat function's AWS besides Bedrock."""
    from local.harness import S3Endpoint  # imports moto's server (Flask)

    with serving(S3Endpoint(purpose="the chat function's AWS endpoint"), "aws-endpoint") as endpoint:
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
        raise ValueError(NO_GUARDRAIL)
    messages = guardrail_messages(template)
    return WordGuardrail(
        guardrail_id=guardrail_id or LOCAL_GUARDRAIL_ID,
        guardrail_version=guardrail_version or LOCAL_GUARDRAIL_VERSION,
        trigger_words=options.trigger_words,
        **({"blocked_input_message": messages[0], "blocked_output_message": messages[1]} if messages else {}),
    )


def _runtime_environment(function: ChatFunction, bedrock_url: str | None) -> tuple[dict[str, str], tuple[str, ...]]:
    """What Lambda's runtime adds to the function's environment here, and what must be unset."""
    region = REGION if bedrock_url else aws_region()
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


def aws_region() -> str:
    """The Region of the user's AWS configuration, which the aws backend calls Bedrock in.

    Raises:
        ValueError: none is configured.
    """
    region = boto3.session.Session().region_name
    if not region:
        raise ValueError("the aws backend needs a Region: set AWS_DEFAULT_REGION (or a region in your AWS profile)")
    return region


class FunctionProcess:
    """The chat function's web app in its own process, as the Lambda Web Adapter runs it: started, then ready."""

    def __init__(self, environment: Mapping[str, str], *, unset: Iterable[str] = ()) -> None:
        with listening_socket(0, "the chat function") as probe:
            self.port: int = probe.getsockname()[1]
        removed = set(unset)
        self._environment = {
            **{name: value for name, value in os.environ.items() if name not in removed},
            **environment,
            "AWS_LWA_PORT": str(self.port),
            "LAMBDA_TASK_ROOT": str(FUNCTIONS_DIR),
            # The function's own `python` is this interpreter (the project's environment).
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Where the app listens."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, handler: str) -> None:
        """Run the function's handler script and wait for its readiness check, as the adapter does.

        Raises:
            RuntimeError: the app exited, or was not ready in time.
        """
        script = FUNCTIONS_DIR / handler
        self._process = subprocess.Popen(  # noqa: S603 - the template's own handler script
            # The function's log lines (its stdout, CloudWatch's in Lambda) go to stderr with the other logs, so
            # stdout carries only what the runner prints for people.
            [BASH, str(script)],
            env=self._environment,
            cwd=FUNCTIONS_DIR,
            stdout=sys.stderr,
        )
        deadline = time.monotonic() + READINESS_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"the chat function's {handler} exited with {self._process.returncode}")
            try:
                if httpx.get(f"{self.url}{READINESS_PATH}", timeout=1).status_code == HTTPStatus.OK:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the chat function was not ready within {READINESS_TIMEOUT_SECONDS} s")

    def stop(self) -> None:
        """Stop the app (as Lambda's shutdown phase does: SIGTERM, then SIGKILL) and wait for it."""
        if self._process is None or self._process.poll() is not None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


# Hop-by-hop headers are the connection's, not the response's: never passed on.
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"})


class LocalGateway:
    """API Gateway in front of the chat function, as an ASGI app: routes, limits, throttle and gateway responses,
    then the request as the adapter forwards it, and the function's response streamed back as it comes."""

    def __init__(
        self,
        function: ChatFunction,
        gateway: ApiGateway,
        upstream_url: str,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.function = function
        self.gateway = gateway
        self._upstream_url = upstream_url
        self._transport = transport

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one HTTP request."""
        if scope["type"] != "http":
            return
        body = await _request_body(receive)
        request_id = str(uuid.uuid4())
        method, path = str(scope["method"]), str(scope["path"])
        route = self.gateway.admit(method, path, body, request_id=request_id)
        if isinstance(route, HttpResponse):
            await _send_whole(send, route)
            return
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        query = scope.get("query_string", b"").decode("latin-1")
        event = build_event(
            method,
            path,
            headers=headers,
            body=body.decode("utf-8", errors="replace") if body else None,
            query=dict(parse_qsl(query)) or None,
            request_id=request_id,
            caller_arn=local_caller(headers),
            resource=route.resource,
            path_parameters=route.path_parameters,
            stage=self.gateway.stage,
        )
        context = LocalLambdaContext.starting_now(
            self.function.logical_id, timeout_seconds=self.function.timeout_seconds, memory_mb=self.function.memory_mb
        )
        request = httpx.Request(
            method,
            # The path as it came, still percent-encoded: decoded, a control character would make no valid URL.
            f"{self._upstream_url}{scope.get('raw_path', path.encode()).decode('latin-1')}"
            + (f"?{query}" if query else ""),
            headers=[(name.encode(), value.encode()) for name, value in forwarded_headers(event, context)],
            content=body,
        )
        status: list[int] = []

        async def noted(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(int(message["status"]))
            await send(message)

        try:
            await self._forward(request, route.timeout_seconds, request_id, receive, noted)
        finally:
            # One access-log line per request, in the common log format (no body, no headers).
            when = time.strftime("%d/%b/%Y %H:%M:%S")
            code = status[0] if status else "-"
            print(f'127.0.0.1 - - [{when}] "{method} {path} HTTP/1.1" {code} -', file=sys.stderr, flush=True)

    async def _forward(
        self, request: httpx.Request, timeout_seconds: float, request_id: str, receive: Receive, send: Send
    ) -> None:
        started = False
        async with (
            # No client timeout: API Gateway's integration timeout (below) is the one that applies.
            httpx.AsyncClient(transport=self._transport, timeout=None) as client,  # noqa: S113
            anyio.create_task_group() as tasks,
        ):

            async def stream() -> None:
                nonlocal started
                with anyio.move_on_after(timeout_seconds):
                    response = await client.send(request, stream=True)
                    try:
                        headers = [
                            (name.encode(), value.encode())
                            for name, value in response.headers.multi_items()
                            if name.lower() not in _HOP_BY_HOP
                        ]
                        await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
                        started = True
                        async for chunk in response.aiter_raw():
                            await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    finally:
                        # Shielded: when the caller went away, this close is what tells the function so.
                        with anyio.CancelScope(shield=True):
                            await response.aclose()
                # The stream ends; had API Gateway given up on the integration before anything was sent, a 504.
                if started:
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                else:
                    timeout = self.gateway.error(
                        "INTEGRATION_TIMEOUT", "Endpoint request timed out", request_id=request_id
                    )
                    await _send_whole(send, timeout)
                tasks.cancel_scope.cancel()

            async def disconnected() -> None:
                # The caller went away: closing our side of the function's response tells the function so.
                while (await receive())["type"] != "http.disconnect":
                    pass
                tasks.cancel_scope.cancel()

            async def guarded() -> None:
                try:
                    await stream()
                except Exception:
                    # The invocation failed (the function crashed or broke off): API Gateway's 502.
                    if not started:
                        failed = self.gateway.error("DEFAULT_5XX", "Internal server error", request_id=request_id)
                        await _send_whole(send, failed)
                    tasks.cancel_scope.cancel()

            tasks.start_soon(guarded)
            tasks.start_soon(disconnected)


async def _request_body(receive: Receive) -> bytes:
    parts = []
    while True:
        message = await receive()
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(parts)


async def _send_whole(send: Send, response: HttpResponse) -> None:
    payload = response.body.encode()
    headers = [(name.encode(), value.encode()) for name, value in response.headers.items()]
    headers.append((b"content-length", str(len(payload)).encode()))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": payload, "more_body": False})


class GatewayServer:
    """uvicorn serving the local gateway on 127.0.0.1, in a background thread."""

    def __init__(self, app: ASGIApp, *, port: int = 0) -> None:
        """Listen on 127.0.0.1:`port` (0: a free one).

        Raises:
            PortUnavailable: the port cannot be listened on (named).
        """
        self._socket = listening_socket(port, CHAT_API_PURPOSE)
        self._server = uvicorn.Server(
            uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False, timeout_graceful_shutdown=5)
        )
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]}, name="chat-api")

    @property
    def url(self) -> str:
        """The base URL OpenAI SDKs take."""
        return f"http://127.0.0.1:{self._socket.getsockname()[1]}/v1"

    def __enter__(self) -> GatewayServer:
        self._thread.start()
        while not self._server.started and self._thread.is_alive():
            time.sleep(0.01)
        return self

    def __exit__(self, *_: object) -> None:
        self._server.should_exit = True
        self._thread.join()
        self._socket.close()
