"""A loopback Bedrock runtime endpoint: Converse and ApplyGuardrail over HTTP, in bedrock-runtime's REST-JSON.

Point boto3 at it with `AWS_ENDPOINT_URL_BEDROCK_RUNTIME`; any credentials do (signatures are not checked).
Errors come as Bedrock sends them: the status, `x-amzn-ErrorType` and a JSON `message`, which botocore
turns into the same `ClientError`s as the real service.
"""

from __future__ import annotations

import json
import re
import sys
import traceback
import uuid
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

from local.bedrock.model import Model
from local.bedrock.shapes import ModelError

# The request URIs of the two operations in botocore's bedrock-runtime service model.
_CONVERSE = re.compile(r"^/model/(?P<modelId>[^/]+)/converse$")
_APPLY_GUARDRAIL = re.compile(r"^/guardrail/(?P<guardrailIdentifier>[^/]+)/version/(?P<guardrailVersion>[^/]+)/apply$")


class BedrockStandIn(ThreadingHTTPServer):
    """bedrock-runtime on 127.0.0.1, answered by a `Model`; one thread per request."""

    # Requests in flight finish before server_close() returns (it joins their threads).
    daemon_threads = False
    block_on_close = True

    def __init__(self, model: Model, *, port: int = 0, log: Callable[[str], None] | None = None) -> None:
        super().__init__(("127.0.0.1", port), _BedrockRequestHandler)
        self.model = model
        self.log = log or _to_stderr

    @property
    def url(self) -> str:
        """The endpoint URL (for AWS_ENDPOINT_URL_BEDROCK_RUNTIME or boto3's endpoint_url)."""
        return f"http://127.0.0.1:{self.server_address[1]}"

    def answer(self, path: str, body: bytes) -> tuple[int, dict[str, str], dict[str, Any]]:
        """Status, headers and JSON body for one POST."""
        operations: tuple[tuple[re.Pattern[str], Callable[[Mapping[str, Any]], dict[str, Any]]], ...] = (
            (_CONVERSE, self.model.converse),
            (_APPLY_GUARDRAIL, self.model.apply_guardrail),
        )
        try:
            for pattern, operation in operations:
                match = pattern.match(path.split("?", 1)[0])
                if match:
                    request = _request(body)
                    request.update({name: unquote(value) for name, value in match.groupdict().items()})
                    return 200, {}, operation(request)
            raise ModelError("UnknownOperationException", f"No operation at POST {path[:200]}.")
        except ModelError as error:
            self.log(f"bedrock stand-in: {error.code} for POST {path[:200]}: {error.message}")
            return error.status, {"x-amzn-ErrorType": error.code}, {"message": error.message}


def _request(body: bytes) -> dict[str, Any]:
    try:
        request = json.loads(body or b"{}")
    except ValueError:
        raise ModelError("ValidationException", "The request body is not valid JSON.") from None
    if not isinstance(request, dict):
        raise ModelError("ValidationException", "The request body must be a JSON object.")
    return request


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class _BedrockRequestHandler(BaseHTTPRequestHandler):
    server: BedrockStandIn
    # A connection that sends nothing is dropped after this long, so shutdown never waits on it for longer.
    timeout = 10

    def do_POST(self) -> None:
        """Answer one bedrock-runtime operation."""
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            status, headers, answer = self.server.answer(self.path, body)
        except Exception:
            # A bug of the stand-in, not of the caller: say so the way Bedrock reports its own failures.
            self.server.log("bedrock stand-in failed:\n" + traceback.format_exc())
            status, headers = 500, {"x-amzn-ErrorType": "InternalServerException"}
            answer = {"message": "The Bedrock stand-in failed; see its log."}
        payload = json.dumps(answer).encode()
        self.send_response(status)
        for name, value in {
            "Content-Type": "application/json",
            "x-amzn-RequestId": str(uuid.uuid4()),
            **headers,
        }.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        """Successful calls are not logged: the chat server's access log already shows each request."""
