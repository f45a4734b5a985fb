"""POST /v1/chat/completions skips the Powertools resolver; it must answer exactly as the resolver's route does.

The resolver still serves the same route for the spellings only it matches (a trailing slash), so both paths
can be compared on the same request: same proxy result, same log records, same metrics.
"""

from __future__ import annotations

import io
import json
import re
from typing import Any

import pytest

from chat.handler import lambda_handler
from tests.apigw_bridge import FakeLambdaContext, build_event
from tests.bedrock_fakes import BedrockFake, converse_response

JSON = {"Content-Type": "application/json"}
CHAT = {"model": "gpt-oss-20b", "messages": [{"role": "user", "content": "What is the capital of France?"}]}


def invoke(path: str, body: str, headers: dict[str, str]) -> dict[str, Any]:
    event = build_event("POST", path, headers=headers, body=body, request_id="c6af9ac6-7b61-11e6-9a41-93e8deadbeef")
    result = lambda_handler(event, FakeLambdaContext(remaining_ms=10_000, aws_request_id="fixed"))
    # The only part that may differ between two runs: the second the completion was created in.
    return {**result, "body": re.sub(r'"created":\d+', '"created":0', result["body"])}


def written(output: str) -> list[dict[str, Any]]:
    """Log records and EMF blobs, without what differs between any two invocations (times, the cold start)."""
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    for line in lines:
        for varying in ("timestamp", "location", "cold_start", "elapsed_ms"):
            line.pop(varying, None)
        line.get("_aws", {}).pop("Timestamp", None)
    return [line for line in lines if "ColdStart" not in line]


@pytest.mark.parametrize(
    ("body", "headers", "reply"),
    [
        (json.dumps(CHAT), JSON, converse_response("Paris.", reasoning="It is Paris.")),
        (json.dumps({**CHAT, "include_reasoning": True}), JSON, converse_response("Paris.", reasoning="Paris.")),
        (json.dumps({**CHAT, "stream": True}), JSON, converse_response()),
        (json.dumps(CHAT), JSON, converse_response(stop_reason="guardrail_intervened")),
        (json.dumps({**CHAT, "model": "gpt-4o"}), JSON, None),
        (json.dumps({**CHAT, "n": 2}), JSON, None),
        ("{not json", JSON, None),
        ("", JSON, None),
        ("model=x", {"Content-Type": "text/plain"}, None),
        (json.dumps(CHAT), {**JSON, "Idempotency-Key": ""}, None),
    ],
)
def test_the_direct_route_answers_as_the_resolver_does(
    bedrock: BedrockFake,
    logs: io.StringIO,
    capfd: pytest.CaptureFixture[str],
    body: str,
    headers: dict[str, str],
    reply: dict[str, Any] | None,
) -> None:
    answers, outputs = [], []
    for path in ("/v1/chat/completions", "/v1/chat/completions/"):
        if reply is not None:
            bedrock.reply(reply)
        answers.append(invoke(path, body, headers))
        outputs.append(written(logs.getvalue() + capfd.readouterr().out))
        logs.seek(0)
        logs.truncate()

    direct, resolved = answers
    assert direct == resolved
    assert outputs[0] == outputs[1]
    assert outputs[0]  # something was logged or measured: the comparison is not vacuous
