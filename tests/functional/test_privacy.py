"""Prompts and answers never reach logs, metrics or traces, on the chat path and on the batch path.

Every prompt and every model answer (and its reasoning) carries a unique marker; the test captures what
the functions write (the Powertools logger's stream, the process's stdout/stderr at the file-descriptor
level, so EMF metric lines and anything printed from another thread too, and every `logging` record at
INFO, the level the functions run at) and what they hand to the tracer, and asserts the marker is in none
of it, while it is in the HTTP response / results.jsonl, so the check cannot pass vacuously.

What the tracer part proves: tracing is disabled in tests (POWERTOOLS_TRACE_DISABLED), so X-Ray records
nothing; the test swaps the Tracer's provider for a recorder, which sees every subsegment the Powertools
decorators open and every annotation/metadata they attach (they call the provider even when tracing is
disabled), and records direct `tracer.put_annotation`/`put_metadata` calls. It does not prove what the
X-Ray SDK's own botocore patching would record when enabled (it records AWS call metadata, not bodies).
"""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from botocore.awsrequest import AWSPreparedRequest, AWSResponse

from chat.app import app
from local.bedrock import Generation, LocalModel
from local.harness import OfflinePipeline
from shared.tracing import tracer
from tests.apigw_bridge import BridgeResponse, chat_context, invoke_handler
from tests.bedrock_fakes import BedrockFake, converse_response, converse_stream_events, error_response
from tests.functional.conftest import OFFLINE_STAGE

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics")


@dataclass
class _Subsegment:
    calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]]

    def __getattr__(self, name: str) -> Any:
        def record(*args: Any, **kwargs: Any) -> None:
            self.calls.append((name, args, kwargs))

        return record


@dataclass
class RecordingProvider:
    """Stands in for the X-Ray recorder: every subsegment opened and everything attached to one."""

    calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = field(default_factory=list)

    @contextmanager
    def in_subsegment(self, name: str | None = None, **kwargs: Any) -> Iterator[_Subsegment]:
        self.calls.append(("in_subsegment", (name,), kwargs))
        yield _Subsegment(self.calls)

    def __getattr__(self, name: str) -> Any:
        return _Subsegment(self.calls).__getattr__(name)

    def text(self) -> str:
        """Everything recorded, as text (exceptions by their message and arguments)."""
        return "\n".join(f"{name} {args!r} {kwargs!r}" for name, args, kwargs in self.calls)


@pytest.fixture
def traced(monkeypatch: pytest.MonkeyPatch) -> RecordingProvider:
    """The shared Tracer's provider replaced by a recorder; direct put_annotation/put_metadata recorded too."""
    recorder = RecordingProvider()
    monkeypatch.setattr(tracer, "provider", recorder)
    monkeypatch.setattr(tracer, "put_annotation", getattr(recorder, "put_annotation"))  # noqa: B009
    monkeypatch.setattr(tracer, "put_metadata", getattr(recorder, "put_metadata"))  # noqa: B009
    return recorder


@pytest.fixture
def marker() -> str:
    return f"secret-{uuid.uuid4().hex}"


def everything_written(capfd: pytest.CaptureFixture[str], logs: io.StringIO, caplog: pytest.LogCaptureFixture) -> str:
    captured = capfd.readouterr()
    records = "\n".join(f"{record.name} {record.getMessage()} {record.args!r}" for record in caplog.records)
    return "\n".join([captured.out, captured.err, logs.getvalue(), records])


# --- chat --------------------------------------------------------------------------------------------------


def _post(body: Mapping[str, Any] | str) -> BridgeResponse:
    raw = body if isinstance(body, str) else json.dumps(body)
    return invoke_handler(
        app,
        "POST",
        "/v1/chat/completions",
        {"Content-Type": "application/json"},
        raw,
        context=chat_context(remaining_ms=10_000),
    )


def _ask(marker: str, **fields: Any) -> dict[str, Any]:
    return {"model": "gpt-oss-20b", "messages": [{"role": "user", "content": f"Tell me about {marker}."}], **fields}


def test_chat_prompts_and_answers_reach_the_caller_and_nothing_else(
    bedrock: BedrockFake,
    traced: RecordingProvider,
    marker: str,
    capfd: pytest.CaptureFixture[str],
    logs: io.StringIO,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    answered = []
    # A plain answer with reasoning returned to the caller, and the same streamed.
    bedrock.reply(converse_response(f"About {marker}: yes.", reasoning=f"Thinking of {marker}."))
    answered.append(_post(_ask(marker, include_reasoning=True, user=f"user-{marker}")))
    # The stream comes through botocore's event-stream parser (the Stubber answers only whole calls).
    bedrock.stubber.deactivate()
    bedrock.reply_stream(converse_stream_events(f"About {marker}: yes.", reasoning=f"Thinking of {marker}."))
    answered.append(_post(_ask(marker, stream=True, include_reasoning=True)))
    # A guardrail intervention on the answer: 200 with the configured message, the answer withheld.
    bedrock.reply(converse_response(f"About {marker}: no.", stop_reason="guardrail_intervened"))
    intervened = _post(_ask(marker))
    # Rejected before Bedrock: a bad role, a bad field value and a body that is not JSON.
    rejected = [
        _post(_ask(marker, messages=[{"role": "robot", "content": marker}])),
        _post(_ask(marker, temperature=marker)),
        _post(f'{{"messages": "{marker}"'),
    ]
    bedrock.stubber.deactivate()

    # Bedrock failing in ways whose messages can quote the request: validation, a model error.
    def failing(request: AWSPreparedRequest, attempt: int) -> AWSResponse:
        if attempt == 1:
            return error_response(request, 400, "ValidationException", f"Input {marker} is invalid.")
        return error_response(request, 424, "ModelErrorException", f"Model failed on {marker}.")

    bedrock.on_send(failing)
    failed = [_post(_ask(marker)), _post(_ask(marker))]

    for response in answered:
        assert response.status == 200
        assert marker in response.body  # the caller gets its answer: the capture below is not vacuous
    assert intervened.status == 200
    assert [response.status for response in rejected] == [400, 400, 400]
    assert [response.status for response in failed] == [400, 502]
    written = everything_written(capfd, logs, caplog)
    assert '"level"' in written  # the functions did log (metadata), and it was captured
    assert "CloudWatchMetrics" in written  # and their EMF metrics too
    assert marker not in written
    # The chat app opens no X-Ray subsegments (under the web adapter its trace is Lambda's own segment): nothing
    # of the request can reach a trace from it.
    assert traced.calls == []


# --- batch -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EchoGenerator:
    """A model that puts the marker in every answer and every reasoning, and repeats the question."""

    marker: str

    def generate(self, body: Mapping[str, Any], *, model_id: str) -> Generation:
        question = str(body["messages"][-1]["content"])
        return Generation(
            answer=f"Answer ({self.marker}) to: {question}",
            reasoning=f"Reasoning about {self.marker}.",
            input_tokens=10,
            output_tokens=10,
            latency_ms=5,
        )


def test_batch_prompts_and_answers_reach_the_results_and_nothing_else(
    offline_batch_template: dict[str, Any],
    traced: RecordingProvider,
    marker: str,
    capfd: pytest.CaptureFixture[str],
    logs: io.StringIO,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    prompts = [json.dumps({"id": f"p{number}", "prompt": f"{marker} question {number}"}) for number in range(7)]
    bad = [json.dumps({"prompt": marker, "max_completion_tokens": marker}), f"{marker} is not JSON"]
    model = LocalModel(EchoGenerator(marker))
    with OfflinePipeline(offline_batch_template, stage=OFFLINE_STAGE, model=model) as pipeline:
        batch = pipeline.run("inbox/privacy-batch.jsonl", "".join(f"{line}\n" for line in [*prompts, *bad]))
        on_demand = pipeline.run("inbox/privacy-small.jsonl", "".join(f"{line}\n" for line in prompts[:2]))

    for run, path, count in ((batch, "batch", 7), (on_demand, "on_demand", 2)):
        assert run.status == "SUCCEEDED"
        assert run.summary is not None
        assert (run.summary["path"], run.summary["counts"]["ok"]) == (path, count)
        assert all(marker in result["answer"] for result in run.results)  # not vacuous
    assert len(batch.rejected) == 2
    written = everything_written(capfd, logs, caplog)
    assert '"level"' in written
    assert "CloudWatchMetrics" in written
    assert marker not in written
    assert any(name == "in_subsegment" for name, _, _ in traced.calls)
    assert marker not in traced.text()
    # The execution history is what Step Functions keeps (logged at ALL without execution data in the
    # stack): the state inputs and outputs carry keys and counts, never a prompt or an answer.
    for run in (batch, on_demand):
        assert marker not in json.dumps(run.history, default=str)
