"""The deployed chat function, as the template describes it: its handler script and environment, in a fresh
process the way the Lambda Web Adapter starts it (then its readiness check), sent one API Gateway request as the
adapter forwards it, with Bedrock at a stand-in endpoint on loopback."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from infra.constructs.chat_api import CHAT_HANDLER
from local.chat_server import FunctionProcess
from local.web_adapter import forwarded_headers
from tests.infra.synth import DEFAULT_STACK, Synthesized

EVENT = Path(__file__).resolve().parents[1] / "events" / "apigw_chat_completion.json"
# Values CloudFormation fills in at deploy time (Ref / Fn::GetAtt): what they become in a real stack.
DEPLOY_TIME_VALUES = {
    "GUARDRAIL_ID": "gr0a1b2c3d4e",
    "GUARDRAIL_VERSION": "1",
    # The event carries no Idempotency-Key, so the function never calls this table.
    "IDEMPOTENCY_TABLE_NAME": "GptOssChat-dev-ChatApiIdempotencyTable-0A1B2C3D4E5F",
}


class _Context:
    """The invocation's context, as the adapter reads it from Lambda."""

    function_name = "ChatFunction"
    function_version = "$LATEST"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:ChatFunction"
    aws_request_id = "3f0e9c1a-7b2d-4c5e-8f6a-9b0c1d2e3f4a"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


class _StandInBedrock(BaseHTTPRequestHandler):
    """Answers Converse like bedrock-runtime does, and remembers what it was asked."""

    requests: list[tuple[str, dict[str, Any]]] = []  # noqa: RUF012 - shared by the server's handler instances

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.requests.append((self.path, body))
        answer = json.dumps(
            {
                "output": {
                    "message": {
                        "role": "assistant",
                        "content": [{"reasoningContent": {"reasoningText": {"text": "Simple."}}}, {"text": "Paris."}],
                    }
                },
                "stopReason": "end_turn",
                "usage": {"inputTokens": 20, "outputTokens": 5, "totalTokens": 25},
                "metrics": {"latencyMs": 120},
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test output quiet."""


@pytest.fixture
def stand_in_bedrock() -> Iterator[str]:
    """A Bedrock runtime stand-in on loopback; yields its URL."""
    _StandInBedrock.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StandInBedrock)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join()


def _chat_function(template: dict[str, Any]) -> dict[str, Any]:
    functions = [
        resource["Properties"]
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::Lambda::Function" and resource["Properties"].get("Handler") == CHAT_HANDLER
    ]
    assert len(functions) == 1
    function: dict[str, Any] = functions[0]
    return function


def _deployed_environment(function: dict[str, Any]) -> dict[str, str]:
    variables: dict[str, Any] = function["Environment"]["Variables"]
    unresolved = {name for name, value in variables.items() if not isinstance(value, str)}
    assert unresolved <= set(DEPLOY_TIME_VALUES), f"unexpected deploy-time values: {unresolved}"
    return {name: DEPLOY_TIME_VALUES.get(name, value) for name, value in variables.items()}


@pytest.mark.enable_socket
def test_handler_from_template_answers_through_a_stand_in_endpoint(
    default_app: Synthesized, stand_in_bedrock: str
) -> None:
    function = _chat_function(default_app.templates[DEFAULT_STACK])
    environment = {
        **_deployed_environment(function),
        "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": stand_in_bedrock,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }

    process = FunctionProcess(environment)
    process.start(function["Handler"])
    try:
        event = json.loads(EVENT.read_text())
        response = httpx.post(
            f"{process.url}{event['path']}",
            headers=[(name.encode(), value.encode()) for name, value in forwarded_headers(event, _Context())],
            content=event["body"].encode(),
            timeout=30,
        )
    finally:
        process.stop()

    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"] == event["requestContext"]["requestId"]
    completion = response.json()
    assert completion["object"] == "chat.completion"
    assert completion["choices"][0]["message"]["content"] == "Paris."
    assert completion["usage"] == {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25}
    [(path, converse)] = _StandInBedrock.requests
    assert path.startswith("/model/openai.gpt-oss-") and path.endswith("/converse")
    assert converse["guardrailConfig"]["guardrailIdentifier"] == DEPLOY_TIME_VALUES["GUARDRAIL_ID"]
    assert converse["guardrailConfig"]["guardrailVersion"] == DEPLOY_TIME_VALUES["GUARDRAIL_VERSION"]
    assert (
        converse["inferenceConfig"]["maxTokens"]
        == json.loads(json.loads(EVENT.read_text())["body"])["max_completion_tokens"]
    )
