"""The deployed chat function, as the template describes it: its handler string and environment, in a
fresh Python process the way Lambda starts it, with Bedrock at a stand-in endpoint on loopback."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.infra.synth import DEFAULT_STACK, Synthesized

FUNCTIONS_DIR = Path(__file__).resolve().parents[2] / "functions"
EVENT = Path(__file__).resolve().parents[1] / "events" / "apigw_chat_completion.json"
# Values CloudFormation fills in at deploy time (Ref / Fn::GetAtt): what they become in a real stack.
DEPLOY_TIME_VALUES = {
    "GUARDRAIL_ID": "gr0a1b2c3d4e",
    "GUARDRAIL_VERSION": "1",
    # The event carries no Idempotency-Key, so the function never calls this table.
    "IDEMPOTENCY_TABLE_NAME": "GptOssChat-dev-ChatApiIdempotencyTable-0A1B2C3D4E5F",
}

# Lambda imports the handler by its dotted string with the asset root on sys.path; this does the same.
LAMBDA_BOOTSTRAP = """
import importlib, json, sys
sys.path.insert(0, sys.argv[1])
module_name, _, attribute = sys.argv[2].rpartition(".")
handler = getattr(importlib.import_module(module_name), attribute)

class Context:
    function_name = "ChatFunction"
    function_version = "$LATEST"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:ChatFunction"
    aws_request_id = "3f0e9c1a-7b2d-4c5e-8f6a-9b0c1d2e3f4a"
    def get_remaining_time_in_millis(self):
        return 30_000

event = json.loads(open(sys.argv[3]).read())
print("RESULT " + json.dumps(handler(event, Context())))
"""


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
        if resource["Type"] == "AWS::Lambda::Function"
        and resource["Properties"].get("Handler") == "chat.handler.lambda_handler"
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
        "PATH": "/usr/bin:/bin",
    }

    process = subprocess.run(  # noqa: S603 - fixed argv
        [sys.executable, "-c", LAMBDA_BOOTSTRAP, str(FUNCTIONS_DIR), function["Handler"], str(EVENT)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert process.returncode == 0, process.stderr
    result = json.loads(next(line for line in process.stdout.splitlines() if line.startswith("RESULT "))[7:])
    assert result["statusCode"] == 200, result
    completion = json.loads(result["body"])
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
