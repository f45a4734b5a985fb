"""Chat per-request cost: the chat app answering POST /v1/chat/completions beside a bare boto3 Converse call.

The app (`chat.app:app`, the ASGI app uvicorn serves under the Lambda Web Adapter) gets each request the way
the adapter sends it: an API Gateway proxy event's method, path, headers and body, plus the adapter's
`x-amzn-request-context` and `x-amzn-lambda-context` headers (local/web_adapter.py `forwarded_headers`). It
runs in process behind an `httpx.AsyncClient` over `httpx.ASGITransport`, in one event loop (`anyio.run`,
asyncio, as uvicorn runs here without uvloop) that lives for the whole run, with one client: each request is
built untimed, and `await client.send(request)` is timed until the whole response is read. So the figure is
the app's own per-request work (routing, the edge, validation, translation, the worker-thread hop of
`run_in_threadpool`, Converse, the response, the JSON log record and the EMF metrics), plus httpx's in-process
transport in place of uvicorn's HTTP parsing (the GET /healthz row bounds what routing and transport cost).

The floor is a bare `client.converse(...)` called directly in the same loop, one call each in turn with the
app. Both reach the same zero-latency Bedrock stand-in at botocore's `before-send`, so botocore's own
serialization, signing and parsing are on both sides (the request bodies are checked equal first). Three
ablations in the same interleaving tell where the overhead goes: the app without its log record, without its
metrics (`chat.service.metrics` swapped for a no-op), and the floor run through `anyio.to_thread.run_sync`
(the thread hop the app pays to keep blocking boto3 off the event loop). Logs and EMF go to /dev/null, as
deployed minus the terminal; tracing is off the way Powertools turns it off outside Lambda.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import warnings
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from bench.deployed import REGION, UNSET, DeployedChat, deployed_chat
from bench.table import Row
from bench.timing import AsyncContender, Latencies, interleaved_async, ratio

if TYPE_CHECKING:
    import httpx
    from botocore.awsrequest import AWSPreparedRequest

PATH = "/v1/chat/completions"
MODEL_ID = "openai.gpt-oss-120b-1:0"
SYSTEM = "You are a concise assistant for an internal support team. Answer in one short paragraph."
QUESTION = "Our nightly export to S3 failed with AccessDenied after a key rotation. What should we check first?"
MAX_TOKENS = 512
TEMPERATURE = 0.2
MESSAGES = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}]
# What an OpenAI SDK sends for the request above.
REQUEST_BODY = json.dumps(
    {"model": MODEL_ID, "messages": MESSAGES, "max_tokens": MAX_TOKENS, "temperature": TEMPERATURE}
)
HEADERS = {
    "Accept": "application/json",
    "Content-Type": "application/json",
    "Host": "abc123defg.execute-api.us-east-1.amazonaws.com",
    "User-Agent": "OpenAI/Python 3.54.0",
    "X-Amz-Date": "20261123T101500Z",
    "X-Amz-Security-Token": "IQoJb3JpZ2luX2VjEXAMPLETOKEN",
    "X-Amzn-Trace-Id": "Root=1-6741aa2c-3b8e4f0a1c2d3e4f5a6b7c8d",
    "X-Forwarded-For": "10.0.12.34",
    "X-Forwarded-Port": "443",
    "X-Forwarded-Proto": "https",
}
_GUARDRAIL_METRICS = {
    "guardrailProcessingLatency": 143,
    "usage": {
        "topicPolicyUnits": 1,
        "contentPolicyUnits": 1,
        "wordPolicyUnits": 1,
        "sensitiveInformationPolicyUnits": 1,
        "sensitiveInformationPolicyFreeUnits": 0,
        "contextualGroundingPolicyUnits": 0,
    },
    "guardrailCoverage": {"textCharacters": {"guarded": 98, "total": 98}},
}
# A Converse answer of gpt-oss with the guardrail's trace on (nothing intervened), as Bedrock sends it.
CONVERSE_RESPONSE = json.dumps(
    {
        "output": {
            "message": {
                "role": "assistant",
                "content": [
                    {
                        "reasoningContent": {
                            "reasoningText": {
                                "text": "The export broke right after a key rotation, so the role's KMS permissions "
                                "on the new key are the likely cause."
                            }
                        }
                    },
                    {
                        "text": "Check that the export role may use the new KMS key (kms:GenerateDataKey and "
                        "kms:Decrypt in the key policy or an IAM grant), then that the bucket policy still "
                        "names that role."
                    },
                ],
            }
        },
        "stopReason": "end_turn",
        "usage": {"inputTokens": 112, "outputTokens": 61, "totalTokens": 173},
        "metrics": {"latencyMs": 812},
        "trace": {
            "guardrail": {
                "inputAssessment": {"gr7benchguard": {"invocationMetrics": _GUARDRAIL_METRICS}},
                "outputAssessments": {"gr7benchguard": [{"invocationMetrics": _GUARDRAIL_METRICS}]},
            }
        },
    }
).encode()


class CannedConverse:
    """Answers every Converse call at `before-send` with CONVERSE_RESPONSE: no socket, no latency."""

    def __init__(self) -> None:
        self.last_body: bytes | None = None

    # Typed Any: botocore's stubs declare event handlers as returning None, but a before-send handler
    # that returns a response is how botocore lets one replace the HTTP round trip.
    def __call__(self, request: AWSPreparedRequest, **_: Any) -> Any:
        """botocore's before-send hook: a response returned here replaces the HTTP round trip."""
        from shared.model_stand_in import wire_response

        body = request.body
        self.last_body = body if isinstance(body, bytes) else str(body or "").encode()
        return wire_response(
            request.url, 200, CONVERSE_RESPONSE, {"x-amzn-RequestId": "5f8a3c2e-9d41-4b7a-8e6f-0a1b2c3d4e5f"}
        )


def adapter_headers(deployed: DeployedChat) -> list[tuple[bytes, bytes]]:
    """The headers of the bench's POST as the web adapter forwards it to the app, in a Lambda context starting now."""
    from local.apigw import build_event
    from local.lambda_context import LocalLambdaContext
    from local.web_adapter import forwarded_headers

    event = build_event("POST", PATH, headers=HEADERS, body=REQUEST_BODY)
    context = LocalLambdaContext.starting_now(
        deployed.environment["AWS_LAMBDA_FUNCTION_NAME"],
        timeout_seconds=deployed.timeout_seconds,
        memory_mb=deployed.memory_mb,
    )
    return [(name.encode(), value.encode()) for name, value in forwarded_headers(event, context)]


def floor_request(caller: str) -> dict[str, Any]:
    """The Converse request the app sends for REQUEST_BODY, written out by hand for the bare call."""
    return {
        "modelId": MODEL_ID,
        "messages": [{"role": "user", "content": [{"guardContent": {"text": {"text": QUESTION}}}]}],
        "system": [{"text": SYSTEM}],
        "inferenceConfig": {"maxTokens": MAX_TOKENS, "temperature": TEMPERATURE},
        "guardrailConfig": {"guardrailIdentifier": "gr7benchguard", "guardrailVersion": "1", "trace": "enabled"},
        "requestMetadata": {"caller": caller},
    }


@contextlib.contextmanager
def deployed_function(deployed: DeployedChat) -> Iterator[CannedConverse]:
    """The chat function's environment, a fresh boto3 default session answered by the stand-in, output to /dev/null.

    The settings, gateway and client caches are cleared on the way in and out, so the app reads this
    environment and creates its client from this session. The Powertools logger keeps the stream it had at
    import; it is pointed at /dev/null for the duration, and stdout (where EMF metrics are printed) too, so
    formatting is measured and terminal I/O is not.
    """
    import boto3

    from local.environment import applied_environment
    from local.lambda_runtime import fresh_container

    stand_in = CannedConverse()
    previous_session = boto3.DEFAULT_SESSION
    with (
        applied_environment(deployed.environment, unset=UNSET),
        open(os.devnull, "w") as sink,  # noqa: PTH123 - a text stream, as stdout is
    ):
        import chat.app
        from shared.observability import logger

        fresh_container()
        boto3.setup_default_session(region_name=REGION)
        assert boto3.DEFAULT_SESSION is not None
        boto3.DEFAULT_SESSION.events.register("before-send.bedrock-runtime.Converse", stand_in)
        handler = logger.registered_handler
        previous_stream = handler.setStream(sink) if hasattr(handler, "setStream") else None
        try:
            with contextlib.redirect_stdout(sink):
                assert chat.app.app is not None
                yield stand_in
        finally:
            if previous_stream is not None and hasattr(handler, "setStream"):
                handler.setStream(previous_stream)
            boto3.DEFAULT_SESSION = previous_session
            fresh_container()


class _NoMetrics:
    """Stands in for the service's Metrics to measure what adding the metrics costs."""

    service = "ChatFunction"

    def add_metric(self, **_: Any) -> None:
        """Nothing is recorded (so the app's middleware has nothing to flush either)."""

    def add_dimensions(self, **_: str) -> None:
        """Nor is the per-tier dimension set."""


def _service_metrics(metrics: object) -> None:
    """Point chat.service's `metrics` (what a completion adds to) at `metrics`."""
    import chat.service

    vars(chat.service)["metrics"] = metrics


APP = "app"
FLOOR = "floor"
# The app again without one part of its observability, and the floor behind the app's thread hop.
WITHOUT_LOG = "app without its log record"
WITHOUT_METRICS = "app without its metrics"
FLOOR_IN_THREAD = "floor in a worker thread"
# The smallest request the app answers (no body, no Bedrock): routing, middleware and the in-process transport.
HEALTHZ = "GET /healthz"


def contenders(deployed: DeployedChat, client: httpx.AsyncClient) -> dict[str, AsyncContender]:
    """The app, the bare boto3 floor and the ablations, each preparing one request untimed.

    `client` sends to the app (an AsyncClient over its ASGITransport); the floor's boto3 client is created
    here, from the default session of `deployed_function`.
    """
    import anyio.to_thread
    import boto3

    from local.apigw import CALLER_ARN
    from shared.observability import logger, metrics

    floor_client = boto3.client("bedrock-runtime", region_name=REGION)
    request = floor_request(CALLER_ARN)
    # The standard logger under Powertools' (whose setLevel defers to AWS_LAMBDA_LOG_LEVEL in Lambda).
    standard = logging.getLogger(logger.service)
    level = standard.level

    def app_call(*, log: bool = True, emf: bool = True) -> AsyncContender:
        def prepare() -> Callable[[], Awaitable[httpx.Response]]:
            # State is set for every call: the contenders alternate.
            standard.setLevel(level if log else logging.WARNING)
            _service_metrics(metrics if emf else _NoMetrics())
            sent = client.build_request("POST", PATH, headers=adapter_headers(deployed), content=REQUEST_BODY.encode())
            return lambda: client.send(sent)

        return prepare

    async def floor() -> object:
        return floor_client.converse(**request)

    async def floor_in_thread() -> object:
        return await anyio.to_thread.run_sync(lambda: floor_client.converse(**request))

    def healthz() -> Callable[[], Awaitable[httpx.Response]]:
        sent = client.build_request("GET", "/healthz")
        return lambda: client.send(sent)

    return {
        APP: app_call(),
        FLOOR: lambda: floor,
        WITHOUT_LOG: app_call(log=False),
        WITHOUT_METRICS: app_call(emf=False),
        FLOOR_IN_THREAD: lambda: floor_in_thread,
        HEALTHZ: healthz,
    }


async def check_same_request(stand_in: CannedConverse, calls: Mapping[str, AsyncContender]) -> None:
    """Both sides send Bedrock the same Converse body and the app and its ablations answer 200, or it is void.

    Raises:
        RuntimeError: the app failed or the two requests differ.
    """
    import httpx

    # The ablations too: one that fails would time the error path instead.
    for name in (WITHOUT_LOG, WITHOUT_METRICS, APP):
        response = await calls[name]()()
        assert isinstance(response, httpx.Response)
        if response.status_code != 200 or "chat.completion" not in response.text:
            raise RuntimeError(f"{name} did not answer 200: {response.status_code} {response.text[:500]}")
    app_body = json.loads(stand_in.last_body or b"{}")
    await calls[FLOOR]()()
    floor_body = json.loads(stand_in.last_body or b"{}")
    if app_body != floor_body:
        raise RuntimeError(f"the floor sends another request than the app: {app_body} != {floor_body}")


def app_client() -> httpx.AsyncClient:
    """A client whose requests the chat app answers in this event loop (httpx's ASGI transport, no socket)."""
    import httpx

    import chat.app

    return httpx.AsyncClient(transport=httpx.ASGITransport(app=chat.app.app), base_url="http://127.0.0.1:8080")


def measure(*, requests: int, warmup: int, quick: bool) -> dict[str, Latencies]:
    """`requests` calls of each contender, interleaved in one event loop, after `warmup` of each."""
    import anyio

    from shared.observability import logger, metrics

    deployed = deployed_chat(quick=quick)

    async def run(stand_in: CannedConverse) -> dict[str, Latencies]:
        async with app_client() as client:
            calls = contenders(deployed, client)
            await check_same_request(stand_in, calls)
            return await interleaved_async(calls, requests=requests, warmup=warmup)

    with deployed_function(deployed) as stand_in, warnings.catch_warnings():
        # Powertools warns at a flush without metrics (the ablation): the warning is not the point.
        warnings.filterwarnings("ignore", message="No application metrics to publish")
        standard = logging.getLogger(logger.service)
        level = standard.level
        try:
            return anyio.run(run, stand_in)
        finally:
            standard.setLevel(level)
            _service_metrics(metrics)


def rows(*, quick: bool) -> list[Row]:
    """Per-request p50 and p99 of the app beside the bare boto3 floor, and what its parts cost."""
    requests, warmup = (200, 50) if quick else (2000, 300)
    timings = measure(requests=requests, warmup=warmup, quick=quick)
    ours, floor = timings[APP], timings[FLOOR]
    p50, p99 = ratio(ours.p50, floor.p50), ratio(ours.p99, floor.p99)
    log = ours.p50 - timings[WITHOUT_LOG].p50
    emf = ours.p50 - timings[WITHOUT_METRICS].p50
    hop = timings[FLOOR_IN_THREAD].p50 - floor.p50
    rest = ours.p50 - floor.p50 - log - emf - hop
    healthz = timings[HEALTHZ].p50
    what = f"{requests} warm requests, app (as the web adapter sends them) vs bare boto3 converse"

    def part(measure: str, cost: float) -> Row:
        return Row("chat", measure, f"{cost:.3f}", f"{floor.p50:.3f}", f"+{ratio(cost, floor.p50):.2f}x", "-", None)

    return [
        Row("chat", f"p50 per request (ms), {what}", f"{ours.p50:.3f}", f"{floor.p50:.3f}", f"{p50:.2f}x",
            "<= 1.25x floor", p50 <= 1.25),
        Row("chat", "p99 per request (ms)", f"{ours.p99:.3f}", f"{floor.p99:.3f}", f"{p99:.2f}x",
            "<= 1.5x floor p99", p99 <= 1.5),
        part("p50 cost of the JSON log record (ms; app minus app without it)", log),
        part("p50 cost of the EMF metrics (ms; 4 adds, the tier dimension set, the flush)", emf),
        part("p50 cost of the worker-thread hop (ms; floor via anyio.to_thread minus floor)", hop),
        part("p50 cost of the rest (ms; routing, edge, validation, translation, response, transport)", rest),
        part("p50 of GET /healthz through the same client (ms; routing, middleware, in-process transport)",
             healthz),
    ]  # fmt: skip
