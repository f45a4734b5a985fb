"""Chat per-request cost: the whole handler path beside a bare boto3 Converse call, in one process, interleaved.

Both sides reach the same zero-latency Bedrock stand-in at botocore's `before-send`, so botocore's own
serialization, signing and parsing are on both sides and the difference is what the function adds:
API Gateway event → Powertools decorators → pydantic validation → translation → Converse → response, with
JSON logs and EMF metrics written as deployed (to /dev/null, so no terminal is timed). Tracing is off the
way Powertools turns it off outside Lambda (no X-Ray daemon runs here). Two more contenders, the handler
without its log record and without its metrics, tell what each of those costs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from bench.deployed import REGION, UNSET, DeployedChat, deployed_chat
from bench.table import Row
from bench.timing import Latencies, interleaved, ratio

if TYPE_CHECKING:
    from botocore.awsrequest import AWSPreparedRequest

MODEL_ID = "openai.gpt-oss-120b-1:0"
SYSTEM = "You are a concise assistant for an internal support team. Answer in one short paragraph."
QUESTION = "Our nightly export to S3 failed with AccessDenied after a key rotation. What should we check first?"
MAX_TOKENS = 512
TEMPERATURE = 0.2
# What an OpenAI SDK sends for the request above.
REQUEST_BODY = json.dumps(
    {
        "model": MODEL_ID,
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}],
        "max_tokens": MAX_TOKENS,
        "temperature": TEMPERATURE,
    }
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


class BedrockStandIn:
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


def floor_request(caller: str) -> dict[str, Any]:
    """The Converse request the handler sends for REQUEST_BODY, written out by hand for the bare call."""
    return {
        "modelId": MODEL_ID,
        "messages": [{"role": "user", "content": [{"guardContent": {"text": {"text": QUESTION}}}]}],
        "system": [{"text": SYSTEM}],
        "inferenceConfig": {"maxTokens": MAX_TOKENS, "temperature": TEMPERATURE},
        "guardrailConfig": {"guardrailIdentifier": "gr7benchguard", "guardrailVersion": "1", "trace": "enabled"},
        "requestMetadata": {"caller": caller},
    }


@contextlib.contextmanager
def deployed_function(deployed: DeployedChat) -> Iterator[BedrockStandIn]:
    """The chat function's environment, a fresh boto3 default session answered by the stand-in, output to /dev/null.

    The handler's logger keeps the stream it had at import; it is pointed at /dev/null for the duration, and
    stdout (where EMF metrics are printed) too, so formatting is measured and terminal I/O is not.
    """
    import boto3

    from local.chat_server import function_environment

    stand_in = BedrockStandIn()
    previous_session = boto3.DEFAULT_SESSION
    with (
        function_environment(deployed.environment, unset=UNSET),
        open(os.devnull, "w") as sink,  # noqa: PTH123 - a text stream, as stdout is
    ):
        import chat.handler
        from shared.observability import logger

        boto3.setup_default_session(region_name=REGION)
        assert boto3.DEFAULT_SESSION is not None
        boto3.DEFAULT_SESSION.events.register("before-send.bedrock-runtime.Converse", stand_in)
        handler = logger.registered_handler
        previous_stream = handler.setStream(sink) if hasattr(handler, "setStream") else None
        try:
            with contextlib.redirect_stdout(sink):
                assert chat.handler.lambda_handler is not None
                yield stand_in
        finally:
            if previous_stream is not None and hasattr(handler, "setStream"):
                handler.setStream(previous_stream)
            boto3.DEFAULT_SESSION = previous_session


class _NoMetrics:
    """Stands in for the handler's Metrics to measure what adding the metrics costs."""

    def add_metric(self, **_: Any) -> None:
        """Nothing is recorded."""


def _handler_metrics(metrics: object) -> None:
    """Point the handler module's `metrics` (what its routes add to) at `metrics`."""
    import chat.handler

    vars(chat.handler)["metrics"] = metrics


HANDLER = "handler"
FLOOR = "floor"
# The handler again without one part of its observability, to tell what that part costs.
WITHOUT_LOG = "handler without its log record"
WITHOUT_METRICS = "handler without its metrics"


def contenders(deployed: DeployedChat, stand_in: BedrockStandIn) -> dict[str, Callable[[], Callable[[], object]]]:
    """The handler path, the bare boto3 floor and two ablations, each preparing one request untimed."""
    import boto3

    import chat.handler
    from local.apigw import CALLER_ARN, build_event
    from local.lambda_context import LocalLambdaContext
    from shared.observability import logger, metrics

    function_name = deployed.environment["AWS_LAMBDA_FUNCTION_NAME"]
    client = boto3.client("bedrock-runtime", region_name=REGION)
    request = floor_request(CALLER_ARN)
    # The standard logger under Powertools' (whose setLevel defers to AWS_LAMBDA_LOG_LEVEL in Lambda).
    standard = logging.getLogger(logger.service)
    level = standard.level

    def handler_call(*, log: bool = True, emf: bool = True) -> Callable[[], Callable[[], object]]:
        def prepare() -> Callable[[], object]:
            # State is set for every call: the contenders alternate.
            standard.setLevel(level if log else logging.WARNING)
            _handler_metrics(metrics if emf else _NoMetrics())
            event = build_event("POST", "/v1/chat/completions", headers=HEADERS, body=REQUEST_BODY)
            context = LocalLambdaContext.starting_now(
                function_name, timeout_seconds=deployed.timeout_seconds, memory_mb=deployed.memory_mb
            )
            return lambda: chat.handler.lambda_handler(event, context)

        return prepare

    def floor_call() -> Callable[[], object]:
        return lambda: client.converse(**request)

    return {
        HANDLER: handler_call(),
        FLOOR: floor_call,
        WITHOUT_LOG: handler_call(log=False),
        WITHOUT_METRICS: handler_call(emf=False),
    }


def check_same_request(stand_in: BedrockStandIn, calls: Mapping[str, Callable[[], Callable[[], object]]]) -> None:
    """Both sides send Bedrock the same Converse body and the handler answers 200, or the comparison is void.

    Raises:
        RuntimeError: the handler failed or the two requests differ.
    """
    result = calls[HANDLER]()()
    if not isinstance(result, dict) or result.get("statusCode") != 200:
        raise RuntimeError(f"the chat handler did not answer 200: {str(result)[:500]}")
    handler_body = json.loads(stand_in.last_body or b"{}")
    calls[FLOOR]()()
    floor_body = json.loads(stand_in.last_body or b"{}")
    if handler_body != floor_body:
        raise RuntimeError(f"the floor sends another request than the handler: {handler_body} != {floor_body}")


def measure(*, requests: int, warmup: int, quick: bool) -> dict[str, Latencies]:
    """`requests` calls of each contender, interleaved, after `warmup` of each."""
    from shared.observability import logger, metrics

    deployed = deployed_chat(quick=quick)
    with deployed_function(deployed) as stand_in, warnings.catch_warnings():
        # Powertools warns at every flush without metrics (the ablation): the warning is not the point.
        warnings.filterwarnings("ignore", message="No application metrics to publish")
        standard = logging.getLogger(logger.service)
        level = standard.level
        try:
            calls = contenders(deployed, stand_in)
            check_same_request(stand_in, calls)
            return interleaved(calls, requests=requests, warmup=warmup)
        finally:
            standard.setLevel(level)
            _handler_metrics(metrics)


def rows(*, quick: bool) -> list[Row]:
    """Per-request p50 and p99 of the handler path beside the bare boto3 floor, and what its parts cost."""
    requests, warmup = (200, 50) if quick else (2000, 300)
    timings = measure(requests=requests, warmup=warmup, quick=quick)
    ours, floor = timings[HANDLER], timings[FLOOR]
    p50, p99 = ratio(ours.p50, floor.p50), ratio(ours.p99, floor.p99)
    log = ours.p50 - timings[WITHOUT_LOG].p50
    emf = ours.p50 - timings[WITHOUT_METRICS].p50
    rest = ours.p50 - floor.p50 - log - emf
    what = f"{requests} warm requests, handler vs bare boto3 converse"

    def part(measure: str, cost: float) -> Row:
        return Row("chat", measure, f"{cost:.3f}", f"{floor.p50:.3f}", f"+{ratio(cost, floor.p50):.2f}x", "-", None)

    return [
        Row("chat", f"p50 per request (ms), {what}", f"{ours.p50:.3f}", f"{floor.p50:.3f}", f"{p50:.2f}x",
            "<= 1.25x floor", p50 <= 1.25),
        Row("chat", "p99 per request (ms)", f"{ours.p99:.3f}", f"{floor.p99:.3f}", f"{p99:.2f}x",
            "<= 1.5x floor p99", p99 <= 1.5),
        part("p50 cost of the JSON log record (ms; handler minus handler without it)", log),
        part("p50 cost of the EMF metrics (ms; 4 adds + flush)", emf),
        part("p50 cost of the rest (ms; Powertools decorators, validation, translation, response)", rest),
    ]  # fmt: skip
