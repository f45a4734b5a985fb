"""A loopback Bedrock runtime endpoint: Converse, ConverseStream and ApplyGuardrail over HTTP, as bedrock-runtime.

Point boto3 at it with `AWS_ENDPOINT_URL_BEDROCK_RUNTIME`; any credentials do (signatures are not checked).
Errors come as Bedrock sends them: the status, `x-amzn-ErrorType` and a JSON `message`, which botocore
turns into the same `ClientError`s as the real service.

ConverseStream answers with a binary event stream (`application/vnd.amazon.eventstream`) in HTTP/1.1 chunked
transfer encoding, one chunk per event, written as the model produces it: botocore hands each event to the
caller as its chunk arrives. A failure before the first event is an HTTP error like Converse's; after it, an
exception event ends the stream. When the caller goes away, the model's iterator is closed (the generation
stops) and the stream is recorded as abandoned: `BedrockStandIn.streams` keeps one `StreamRecord` per stream.
"""

from __future__ import annotations

import contextlib
import json
import re
import select
import socket
import sys
import threading
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import unquote

from local.bedrock.model import Model, close_if_closable
from local.bedrock.shapes import ModelError
from shared.eventstream import CONTENT_TYPE, CONVERSE_STREAM_EXCEPTIONS, converse_stream_message

# The request URIs of the operations in botocore's bedrock-runtime service model.
_CONVERSE = re.compile(r"^/model/(?P<modelId>[^/]+)/converse$")
_CONVERSE_STREAM = re.compile(r"^/model/(?P<modelId>[^/]+)/converse-stream$")
_APPLY_GUARDRAIL = re.compile(r"^/guardrail/(?P<guardrailIdentifier>[^/]+)/version/(?P<guardrailVersion>[^/]+)/apply$")
# What a write raises once the caller has closed its end of the connection (or stopped reading for `timeout`).
_GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError)
_FAILED = "The Bedrock stand-in failed; see its log."

StreamOutcome = Literal["streaming", "completed", "abandoned", "stopped"]


@dataclass
class StreamRecord:
    """One ConverseStream response: the events it sent, and how it ended.

    `completed`: every event was sent (an exception event included); `abandoned`: the caller went away
    before the end, and the generation was stopped; `stopped`: the stand-in shut down mid-stream.
    """

    model_id: str
    events_sent: int = 0
    outcome: StreamOutcome = "streaming"
    ended: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)

    @property
    def abandoned(self) -> bool:
        """Whether the caller went away before the stream's end."""
        return self.outcome == "abandoned"

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the stream to end; whether it has."""
        return self.ended.wait(timeout)

    def end(self, outcome: StreamOutcome) -> None:
        """Record how the stream ended."""
        self.outcome = outcome
        self.ended.set()


class BedrockStandIn(ThreadingHTTPServer):
    """bedrock-runtime on 127.0.0.1, answered by a `Model`; one thread per request."""

    # Requests in flight finish before server_close() returns (it joins their threads).
    daemon_threads = False
    block_on_close = True

    def __init__(self, model: Model, *, log: Callable[[str], None] | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _BedrockRequestHandler)
        self.model = model
        self.log = log or _to_stderr
        self.streams: list[StreamRecord] = []
        self._streams_lock = threading.Lock()
        self.stopping = threading.Event()

    @property
    def url(self) -> str:
        """The endpoint URL (for AWS_ENDPOINT_URL_BEDROCK_RUNTIME or boto3's endpoint_url)."""
        return f"http://127.0.0.1:{self.server_address[1]}"

    def answer(self, path: str, body: bytes) -> dict[str, Any]:
        """The JSON body of a Converse or ApplyGuardrail POST.

        Raises:
            ModelError: there is no operation at the path, or the operation failed.
        """
        route = path.split("?", 1)[0]
        for pattern, operation in ((_CONVERSE, self.model.converse), (_APPLY_GUARDRAIL, self.model.apply_guardrail)):
            match = pattern.match(route)
            if match:
                request = _request(body)
                request.update({name: unquote(value) for name, value in match.groupdict().items()})
                return operation(request)
        raise ModelError("UnknownOperationException", f"No operation at POST {path[:200]}.")

    def server_close(self) -> None:
        """Stop the streams in flight at their next event, then close (joining the request threads)."""
        self.stopping.set()
        super().server_close()

    def open_stream(self, path: str, body: bytes) -> tuple[StreamRecord, Iterator[dict[str, Any]], dict[str, Any]]:
        """Start a ConverseStream POST: its record (kept in `streams`), the model's events and the first of them.

        The first event is taken before any byte is sent, so a failure to start is an HTTP error.

        Raises:
            ModelError: the request failed before the stream could start.
        """
        match = _CONVERSE_STREAM.match(path.split("?", 1)[0])
        if match is None:
            raise ModelError("UnknownOperationException", f"No operation at POST {path[:200]}.")
        request = _request(body)
        request["modelId"] = unquote(match["modelId"])
        events = self.model.converse_stream(request)
        first = next(events, None)
        if first is None:
            raise ModelError("InternalServerException", "The model's stream had no events.")
        record = StreamRecord(request["modelId"])
        with self._streams_lock:
            self.streams.append(record)
        return record, events, first


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
    # A connection that sends nothing is dropped after this long, so shutdown never waits on it for longer;
    # a stream whose caller stops reading for this long is abandoned.
    timeout = 10

    def do_POST(self) -> None:
        """Answer one bedrock-runtime operation."""
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if _CONVERSE_STREAM.match(self.path.split("?", 1)[0]):
            self._converse_stream(body)
            return
        try:
            answer = self.server.answer(self.path, body)
        except Exception as error:
            self._send_error(error)
            return
        self._send_json(200, {}, answer)

    def _send_error(self, error: Exception) -> None:
        """Answer a call that failed before its first byte: a `ModelError` as Bedrock would, anything else as a 500."""
        if isinstance(error, ModelError):
            self.server.log(f"bedrock stand-in: {error.code} for POST {self.path[:200]}: {error.message}")
            self._send_json(error.status, {"x-amzn-ErrorType": error.code}, {"message": error.message})
            return
        # A bug of the stand-in, not of the caller: say so the way Bedrock reports its own failures.
        self.server.log("bedrock stand-in failed:\n" + traceback.format_exc())
        self._send_json(500, {"x-amzn-ErrorType": "InternalServerException"}, {"message": _FAILED})

    def _send_json(self, status: int, headers: Mapping[str, str], answer: Mapping[str, Any]) -> None:
        payload = json.dumps(answer).encode()
        self._send_head(status, {"Content-Type": "application/json", **headers})
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _send_head(self, status: int, headers: Mapping[str, str]) -> None:
        self.send_response(status)
        for name, value in {**headers, "x-amzn-RequestId": str(uuid.uuid4())}.items():
            self.send_header(name, value)

    def _converse_stream(self, body: bytes) -> None:
        try:
            record, events, first = self.server.open_stream(self.path, body)
        except Exception as error:
            self._send_error(error)
            return
        outcome: StreamOutcome = "abandoned"
        try:
            outcome = self._send_events(events, first, record)
        finally:
            # However the stream ends, the generation behind it stops now.
            close_if_closable(events)
            record.end(outcome)

    def _send_events(
        self, events: Iterator[dict[str, Any]], first: dict[str, Any], record: StreamRecord
    ) -> StreamOutcome:
        """Write the events as chunks while they come; how the stream ended."""
        # Chunked transfer encoding needs HTTP/1.1; the connection closes after the stream, like HTTP/1.0's.
        self.protocol_version = "HTTP/1.1"
        self._send_head(200, {"Content-Type": CONTENT_TYPE, "Transfer-Encoding": "chunked", "Connection": "close"})
        event: dict[str, Any] | None = first
        try:
            self.end_headers()
            while event is not None:
                self._write_chunk(converse_stream_message(event))
                record.events_sent += 1
                # Nothing follows an exception event.
                event = None if CONVERSE_STREAM_EXCEPTIONS.intersection(event) else self._next_event(events)
                if event is not None and self.server.stopping.is_set():
                    return "stopped"
                if event is not None and self._caller_gone():
                    return "abandoned"
        except _GONE:
            return "abandoned"
        # Every event was sent: the stream is complete even if the caller leaves before the final empty chunk.
        with contextlib.suppress(*_GONE):
            self._write_chunk(b"")
        return "completed"

    def _next_event(self, events: Iterator[dict[str, Any]]) -> dict[str, Any] | None:
        """The next event (None at the end); a failure of the model becomes an exception event."""
        try:
            return next(events, None)
        except ModelError as error:
            self.server.log(f"bedrock stand-in: the stream failed with {error.code}: {error.message}")
            return error.stream_event()
        except Exception:  # the stream has started: an exception event is the only way to say it
            self.server.log("bedrock stand-in: the stream failed:\n" + traceback.format_exc())
            return {"internalServerException": {"message": _FAILED}}

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _caller_gone(self) -> bool:
        """Whether the caller has closed its end: its socket reads as ended (it sends nothing while it reads)."""
        connection: socket.socket = self.connection
        try:
            readable, _, _ = select.select([connection], [], [], 0)
            return bool(readable) and connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def log_message(self, format: str, *args: Any) -> None:
        """Successful calls are not logged: the chat server's access log already shows each request."""
