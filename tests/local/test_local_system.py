"""The whole system in-process (what `up` runs), driven over real loopback HTTP as a user drives it.

A file uploaded to the local S3 endpoint with boto3's `upload_file` (s3transfer, the code path of
`aws s3 cp`) becomes a run by itself (S3 -> EventBridge -> SQS -> trigger -> starter -> state machine), its
summary.json appears in the bucket, the monitor reports it, and chat and batch answer from one model.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from local.chat_server import ChatApiOptions
from local.system import RunningSystem, SystemOptions, check_backend, local_context, running_system
from local.templates import Template
from tests.local.system_helpers import Lines, closed, s3_client, summary_over_http

pytestmark = [pytest.mark.enable_socket, pytest.mark.filterwarnings("ignore:No application metrics")]

TRIGGER = "kumquat"
SERVING_THREADS = {"s3-endpoint", "sqs-event-source", "run-monitor", "chat-api", "bedrock-stand-in"}


def _environment() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if name != "PYTEST_CURRENT_TEST"}


@pytest.fixture(scope="module")
def lines() -> Lines:
    return Lines()


@pytest.fixture(scope="module")
def system(templates: dict[str, Template], lines: Lines) -> Iterator[RunningSystem]:
    """The system with the offline model; afterwards its threads are gone, its ports closed, the environment back."""
    before = _environment()
    options = SystemOptions(chat=ChatApiOptions(trigger_words=(TRIGGER,)))
    with running_system(templates, options, report=lines) as running:
        yield running
    assert _environment() == before
    assert not {thread.name for thread in threading.enumerate()} & SERVING_THREADS
    assert closed(running.s3_url)
    assert closed(running.chat.url)


def test_a_file_uploaded_to_the_s3_endpoint_runs_by_itself(system: RunningSystem, lines: Lines, tmp_path: Path) -> None:
    prompts = [
        {"id": "a", "prompt": "What is a state machine?"},
        {"id": "b", "prompt": f"Tell me about the {TRIGGER}."},
        {"id": "c", "prompt": "Name a queue."},
    ]
    source = tmp_path / "questions.jsonl"
    source.write_text("".join(json.dumps(prompt) + "\n" for prompt in prompts) + "{not json\n")

    s3_client(system).upload_file(str(source), system.bucket, "inbox/team/questions.jsonl")
    key, summary = summary_over_http(system)

    run_id = key.split("/")[1]
    assert summary["status"] == "PARTIAL"  # one line rejected
    assert summary["path"] == "on_demand"  # 3 prompts: below the minimum of a batch job
    assert (summary["counts"]["accepted"], summary["counts"]["ok"], summary["counts"]["rejected"]) == (3, 3, 1)
    run = system.pipeline.wait(run_id)
    assert run.status == "SUCCEEDED"
    assert run.states_entered() == ["Begin", "Prepare", "Route", "OnDemand", "Collect", "Ended", "Done"]
    # The on-demand path went through the one model, with the chat API's guardrail.
    by_id = {result["id"]: result for result in run.results}
    assert by_id["b"]["finish_reason"] == "content_filter"
    assert by_id["a"]["finish_reason"] == "stop"
    assert "What is a state machine?" in by_id["a"]["answer"]
    # The monitor reported it as it went, once each.
    system.monitor.poll()
    assert len(lines.matching(f"{run_id}: started for s3://{system.bucket}/inbox/team/questions.jsonl")) == 1
    assert len(lines.matching(f"{run_id}: 3 prompt(s) accepted, 1 rejected -> on-demand path")) == 1
    assert len(lines.matching(f"{run_id}: SUCCEEDED, summary PARTIAL, path on_demand: 3 ok")) == 1


def test_chat_answers_from_the_same_model_and_guardrail(system: RunningSystem) -> None:
    body = {"model": "gpt-oss-20b", "messages": [{"role": "user", "content": f"Any {TRIGGER} facts?"}]}
    answer = httpx.post(f"{system.chat.url}/chat/completions", json=body, timeout=10)
    assert answer.status_code == 200
    assert answer.json()["choices"][0]["finish_reason"] == "content_filter"


def test_objects_outside_the_inbox_start_no_run(system: RunningSystem) -> None:
    before = set(system.pipeline.executions())
    s3_client(system).put_object(Bucket=system.bucket, Key="notes/readme.txt", Body=b"not a prompt file")
    time.sleep(1.0)  # five trigger polls
    assert set(system.pipeline.executions()) == before


def test_the_local_synthesis_cannot_read_service_quotas() -> None:
    assert local_context({"stage": "x"}) == {"stage": "x", "batchReadServiceQuotas": "false"}
    with pytest.raises(ValueError, match="no Service Quotas"):
        local_context({"batchReadServiceQuotas": "true"})


def test_the_aws_backend_needs_a_guardrail_before_anything_is_synthesized() -> None:
    with pytest.raises(ValueError, match="--guardrail-id"):
        check_backend(ChatApiOptions(backend="aws"), {})
    check_backend(ChatApiOptions(backend="aws"), {"guardrailId": "abc", "guardrailVersion": "1"})
