"""Streaming: time to first token and per-chunk overhead of the chat API, beside a bare boto3 ConverseStream loop.

Both sides stream the same answer from one loopback Bedrock stand-in (local/bedrock: the offline model at
TOKENS_PER_SECOND, a fast pace), served from this process. The stand-in stamps every text event with
`time.perf_counter()` as it takes it to write to its socket, and each client stamps every content piece as it
gets it, on the same clock:

- ours: the official `openai` SDK, `stream=True`, against the local chat API (`local.chat_server.running_chat_api`
  with the synthesized template): the local API Gateway in this process, the chat app in its own process started
  from the template's handler script as the web adapter runs it, ConverseStream to the stand-in, and the
  server-sent events back the same way. A content piece is a chunk whose `delta.content` is not empty.
- floor: a bare `boto3` `converse_stream` of the same Converse request (checked equal first) to the same
  stand-in, its `contentBlockDelta` text events read as botocore parses them.
- LiteLLM (when the `bench` group is installed): `litellm.completion(..., stream=True)` with its Bedrock
  endpoint at the stand-in, the same request.

Per stream: time-to-first-token overhead = the client's first content piece minus the stand-in's first text
event; per-chunk overhead = the client's mean gap between consecutive content pieces minus the stand-in's mean
gap between its text events. The contenders take turns stream by stream; p50/p99 are over the streams. What the
table calls ours includes the local API Gateway emulation (a Python HTTP hop that shares this process's GIL
with the client and the stand-in), so it is an upper bound on what the function adds; the deployed path has
API Gateway and the web adapter there instead, whose latency is not measured here.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bench.alternatives import LITELLM_MODEL
from bench.chat import MAX_TOKENS, MODEL_ID, QUESTION, SYSTEM, TEMPERATURE, floor_request
from bench.deployed import REGION, chat_api_template
from bench.table import Row
from bench.timing import percentile, ratio

if TYPE_CHECKING:
    from local.bedrock import Model, WordGuardrail

# Output tokens a second of the stand-in: word pieces come about 1-2 ms apart, so a pipeline that needs more
# than that per piece falls behind and shows it in the per-chunk figure.
TOKENS_PER_SECOND = 1000.0
TTFT_TARGET_MS = 10.0
PER_CHUNK_TARGET_MS = 1.0
OURS = "chat API (openai SDK)"
FLOOR = "bare boto3 converse_stream"
LITELLM = "LiteLLM"
# The chat API client's key: locally it names the calling principal (local.chat_server.local_caller).
API_KEY = "local"
# Credentials for loopback only: the stand-in checks no signature.
_LOCAL_KEYS = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}


class TimedModel:
    """A stand-in `Model` whose ConverseStream text events are stamped as the server takes them to send."""

    def __init__(self, model: Model) -> None:
        self.model = model
        # Per stream, in order: the perf_counter() of each text event.
        self.streams: list[list[float]] = []
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def converse(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Converse, as the model answers it."""
        return self.model.converse(request)

    def converse_stream(self, request: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        """The model's ConverseStream events, each text event stamped when the server takes it."""
        events = self.model.converse_stream(request)
        stamps: list[float] = []
        with self._lock:
            self.streams.append(stamps)
            self.requests.append(dict(request))
        return _stamped(events, stamps)

    def apply_guardrail(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """ApplyGuardrail, as the model answers it."""
        return self.model.apply_guardrail(request)

    def chat_completion(self, body: Mapping[str, Any], *, model_id: str | None = None) -> dict[str, Any]:
        """A chat.completion, as the model answers it."""
        return self.model.chat_completion(body, model_id=model_id)

    def latest(self) -> list[float]:
        """The stamps of the stream opened last."""
        with self._lock:
            return list(self.streams[-1])


def _stamped(events: Iterator[dict[str, Any]], stamps: list[float]) -> Iterator[dict[str, Any]]:
    try:
        for event in events:
            if _text_of(event):
                stamps.append(time.perf_counter())
            yield event
    finally:
        # The server closes our iterator when the caller goes away: the generation behind it stops too.
        close = getattr(events, "close", None)
        if callable(close):
            close()


def _text_of(event: Mapping[str, Any]) -> str:
    """The text of a `contentBlockDelta` event (botocore's output shape), else ''."""
    delta = event.get("contentBlockDelta", {}).get("delta", {})
    text = delta.get("text") if isinstance(delta, Mapping) else None
    return text if isinstance(text, str) else ""


@dataclass(frozen=True)
class StreamTiming:
    """One stream, on one clock: when the stand-in sent each text event and when the client got each piece."""

    sent: Sequence[float]
    received: Sequence[float]

    @property
    def ttft_overhead_ms(self) -> float:
        """The client's first content piece minus the stand-in's first text event."""
        return (self.received[0] - self.sent[0]) * 1000

    @property
    def per_chunk_overhead_ms(self) -> float:
        """The client's mean gap between pieces minus the stand-in's mean gap between text events."""
        return (_mean_gap(self.received) - _mean_gap(self.sent)) * 1000


def _mean_gap(stamps: Sequence[float]) -> float:
    return (stamps[-1] - stamps[0]) / (len(stamps) - 1) if len(stamps) > 1 else 0.0


# Streams one answer and returns when the client got each content piece.
Streamer = Callable[[], list[float]]


def openai_streamer(base_url: str) -> Streamer:
    """The official OpenAI SDK streaming the bench request from the chat API at `base_url`."""
    from openai import OpenAI

    if TYPE_CHECKING:
        from openai.types.chat import ChatCompletionMessageParam

    client = OpenAI(base_url=base_url, api_key=API_KEY, max_retries=0, timeout=60)
    messages: list[ChatCompletionMessageParam] = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": QUESTION},
    ]

    def stream() -> list[float]:
        chunks = client.chat.completions.create(
            model=MODEL_ID, messages=messages, max_tokens=MAX_TOKENS, temperature=TEMPERATURE, stream=True
        )
        return [time.perf_counter() for chunk in chunks if chunk.choices and chunk.choices[0].delta.content]

    return stream


def floor_streamer(bedrock_url: str, request: Mapping[str, Any]) -> Streamer:
    """A bare boto3 `converse_stream` of `request` against the stand-in, reading its text events."""
    import boto3

    client = boto3.client(
        "bedrock-runtime",
        endpoint_url=bedrock_url,
        region_name=REGION,
        aws_access_key_id=_LOCAL_KEYS["aws_access_key_id"],
        aws_secret_access_key=_LOCAL_KEYS["aws_secret_access_key"],
    )

    def stream() -> list[float]:
        return [time.perf_counter() for event in client.converse_stream(**request)["stream"] if _text_of(event)]

    return stream


def litellm_streamer(bedrock_url: str, guardrail_config: Mapping[str, Any]) -> Streamer:
    """LiteLLM's Bedrock Converse provider streaming the bench request from the stand-in."""
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    import litellm
    from litellm.llms.custom_httpx.http_handler import HTTPHandler

    litellm.telemetry = False
    # A client of its own: LiteLLM caches the one it creates, and bench.alternatives, later in the same
    # process, needs a new one over its mock transport.
    client = HTTPHandler(timeout=60)

    def stream() -> list[float]:
        chunks = litellm.completion(
            model=LITELLM_MODEL,
            messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}],
            max_tokens=MAX_TOKENS,
            temperature=TEMPERATURE,
            guardrailConfig=dict(guardrail_config),
            aws_region_name=REGION,
            aws_bedrock_runtime_endpoint=bedrock_url,
            stream=True,
            client=client,
            **_LOCAL_KEYS,
        )
        return [time.perf_counter() for chunk in chunks if chunk.choices and chunk.choices[0].delta.content]

    return stream


def floor_stream_request(guardrail: WordGuardrail, *, mode: str, caller: str) -> dict[str, Any]:
    """The ConverseStream request the chat app sends for the bench request, written out for the bare call."""
    return {
        **floor_request(caller),
        "guardrailConfig": {
            "guardrailIdentifier": guardrail.guardrail_id,
            "guardrailVersion": guardrail.guardrail_version,
            "trace": "enabled",
            "streamProcessingMode": mode,
        },
    }


def check_same_request(model: TimedModel, streamers: Mapping[str, Streamer]) -> None:
    """Every side asks the stand-in for the same answer, and gets its text, or the comparison is void.

    Raises:
        RuntimeError: a side sent another Converse request, or got no text.
    """
    requests: dict[str, dict[str, Any]] = {}
    for name, stream in streamers.items():
        if not stream():
            raise RuntimeError(f"{name} streamed no content")
        requests[name] = model.requests[-1]
    ours = requests[OURS]
    for name, request in requests.items():
        if name != LITELLM and request != ours:
            raise RuntimeError(f"{name} asks the stand-in for another stream than the chat API: {request} != {ours}")


def interleaved_streams(
    model: TimedModel, streamers: Mapping[str, Streamer], *, streams: int, warmup: int
) -> dict[str, list[StreamTiming]]:
    """`streams` streams of each side, taking turns stream by stream, after `warmup` untimed ones each."""
    taken: dict[str, list[StreamTiming]] = {name: [] for name in streamers}
    for round_number in range(warmup + streams):
        for name, stream in streamers.items():
            received = stream()
            sent = model.latest()
            if round_number >= warmup:
                taken[name].append(StreamTiming(sent=sent, received=received))
    return taken


def measure(*, streams: int, warmup: int, with_litellm: bool) -> dict[str, list[StreamTiming]]:
    """Stream timings of every side against one paced stand-in, through the chat API served from the template."""
    from bench.cold import quiet_children
    from local.bedrock import BedrockStandIn, build_model
    from local.chat_server import ChatApiOptions, chat_guardrail, local_caller, running_chat_api
    from local.services import serving
    from local.templates import ChatFunction

    template = chat_api_template()
    options = ChatApiOptions()
    guardrail = chat_guardrail(template, options)
    model_ids = ChatFunction.from_template(template).environment["MODEL_IDS"].split(",")
    base = build_model("offline", guardrail=guardrail, model_ids=model_ids, tokens_per_second=TOKENS_PER_SECOND)
    model = TimedModel(base)
    with (
        contextlib.closing(base),
        serving(BedrockStandIn(model), "bench-bedrock-stand-in") as stand_in,
        quiet_children(),
        running_chat_api(template, options, bedrock_url=stand_in.url) as api,
    ):
        # The principal the local gateway admits the chat API's client as (its API key names it).
        caller = local_caller({"Authorization": f"Bearer {API_KEY}"})
        request = floor_stream_request(guardrail, mode=api.settings.GUARDRAIL_STREAM_MODE, caller=caller)
        streamers = {OURS: openai_streamer(api.url), FLOOR: floor_streamer(stand_in.url, request)}
        if with_litellm:
            streamers[LITELLM] = litellm_streamer(stand_in.url, request["guardrailConfig"])
        check_same_request(model, streamers)
        return interleaved_streams(model, streamers, streams=streams, warmup=warmup)


def rows(*, quick: bool) -> list[Row]:
    """TTFT and per-chunk overhead of the chat API beside the bare boto3 stream (and LiteLLM's, if installed)."""
    from bench.alternatives import litellm_installed

    streams, warmup = (5, 2) if quick else (100, 10)
    timings = measure(streams=streams, warmup=warmup, with_litellm=litellm_installed())
    pieces = statistics.median(len(timing.sent) for timing in timings[OURS])
    what = f"{streams} streams x {pieces:.0f} text events at {TOKENS_PER_SECOND:g} tokens/s"
    ttft, ttft_p99, chunk = _overheads(timings[OURS])
    floor_ttft, floor_ttft_p99, floor_chunk = _overheads(timings[FLOOR])
    result = [
        Row("stream", f"TTFT overhead p50 (ms; client's first content chunk minus stand-in's first text event), "
            f"{what}, openai SDK via local chat API vs boto3 converse_stream",
            f"{ttft:.2f}", f"{floor_ttft:.2f}", f"{ratio(ttft, floor_ttft):.2f}x",
            f"<= {TTFT_TARGET_MS:g} ms", ttft <= TTFT_TARGET_MS),
        Row("stream", "TTFT overhead p99 (ms)", f"{ttft_p99:.2f}", f"{floor_ttft_p99:.2f}",
            f"{ratio(ttft_p99, floor_ttft_p99):.2f}x", "-", None),
        Row("stream", "per-chunk overhead p50 (ms; client's mean gap between content chunks minus stand-in's)",
            f"{chunk:.3f}", f"{floor_chunk:.3f}", f"{chunk - floor_chunk:+.3f} ms", f"<= {PER_CHUNK_TARGET_MS:g} ms",
            chunk <= PER_CHUNK_TARGET_MS),
    ]  # fmt: skip
    if LITELLM in timings:
        litellm_ttft, _, litellm_chunk = _overheads(timings[LITELLM])
        result += [
            Row("alternative", "LiteLLM streaming TTFT overhead p50 (ms) vs bare boto3 converse_stream",
                f"{litellm_ttft:.2f}", f"{floor_ttft:.2f}", f"{ratio(litellm_ttft, floor_ttft):.2f}x", "-", None),
            Row("alternative", "LiteLLM streaming per-chunk overhead p50 (ms) vs bare boto3", f"{litellm_chunk:.3f}",
                f"{floor_chunk:.3f}", f"{litellm_chunk - floor_chunk:+.3f} ms", "-", None),
        ]  # fmt: skip
    return result


def _overheads(timings: Sequence[StreamTiming]) -> tuple[float, float, float]:
    """The TTFT overhead's p50 and p99 and the per-chunk overhead's p50, over the streams."""
    ttft = [timing.ttft_overhead_ms for timing in timings]
    chunk = statistics.median(timing.per_chunk_overhead_ms for timing in timings)
    return statistics.median(ttft), percentile(ttft, 99), chunk
