"""OpenAI's Batch API as its SDK uses it, unchanged, against the whole local system (what `python -m local up` runs).

`files.create` -> `batches.create` -> `batches.retrieve` (polled to `completed`) -> `files.content`, whose lines parse
with the SDK's own types; `batches.cancel` stops a running batch job; a second caller (another API key, locally
another principal) sees none of the first one's files or batches. The batch is a run of the real state machine.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletion

from local import moto_patches
from local.bedrock.batch_jobs import TERMINAL_STATUSES, JobScenario
from local.chat_server import ChatApiOptions
from local.system import RunningSystem, SystemOptions, running_system
from local.templates import Template
from tests.local.system_helpers import Lines

pytestmark = [pytest.mark.enable_socket, pytest.mark.filterwarnings("ignore:No application metrics")]

TRIGGER = "kumquat"
POLL_SECONDS = 0.2
TIMEOUT_SECONDS = 60.0


def request(custom_id: str, question: str, **line: Any) -> dict[str, Any]:
    body = {"model": "gpt-oss-120b", "messages": [{"role": "user", "content": question}], "max_tokens": 200}
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body, **line}


def jsonl(lines: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


@pytest.fixture(scope="module")
def system(templates: dict[str, Template]) -> Iterator[RunningSystem]:
    options = SystemOptions(chat=ChatApiOptions(trigger_words=(TRIGGER,), tokens_per_second=0))
    with running_system(templates, options, report=Lines()) as running:
        yield running


def sdk(system: RunningSystem, api_key: str = "orders-service") -> openai.OpenAI:
    return openai.OpenAI(base_url=system.chat.url, api_key=api_key, max_retries=0)


def create(client: openai.OpenAI, file_id: str) -> openai.types.Batch:
    return client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h")


def wait_for(client: openai.OpenAI, batch_id: str, *statuses: str) -> openai.types.Batch:
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while (batch := client.batches.retrieve(batch_id)).status not in statuses:
        assert time.monotonic() < deadline, f"batch still {batch.status}"
        time.sleep(POLL_SECONDS)
    return batch


def test_an_sdk_batch_runs_to_completed_and_its_output_parses(system: RunningSystem) -> None:
    lines = [
        request("capital", "What is the capital of France?"),
        request("blocked", f"Tell me about the {TRIGGER}."),
        request("squares", "What is 7 squared?"),
        request("embedding", "Embed this.", url="/v1/embeddings"),
    ]
    with sdk(system) as client:
        uploaded = client.files.create(file=("questions.jsonl", jsonl(lines)), purpose="batch")
        batch = create(client, uploaded.id)
        # The run starts with the batch; locally it may be past validating by the time the answer comes.
        assert batch.status in ("validating", "in_progress", "finalizing", "completed")
        done = wait_for(client, batch.id, "completed", "failed")
        assert done.status == "completed", done.errors
        assert done.request_counts is not None
        assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (4, 3, 1)
        assert done.output_file_id and done.error_file_id
        assert client.files.retrieve(done.output_file_id).purpose == "batch_output"

        outputs = [json.loads(line) for line in client.files.content(done.output_file_id).text.splitlines()]
        by_id = {output["custom_id"]: output for output in outputs}
        assert set(by_id) == {"capital", "blocked", "squares"}
        for output in outputs:
            assert output["error"] is None and output["response"]["status_code"] == 200
            completion = ChatCompletion.model_validate(output["response"]["body"])
            assert completion.choices[0].message.content
        capital = ChatCompletion.model_validate(by_id["capital"]["response"]["body"])
        assert "What is the capital of France?" in (capital.choices[0].message.content or "")
        # The pipeline's guardrail applied, as in the drop folder.
        blocked = ChatCompletion.model_validate(by_id["blocked"]["response"]["body"])
        assert blocked.choices[0].finish_reason == "content_filter"

        errors = [json.loads(line) for line in client.files.content(done.error_file_id).text.splitlines()]
        assert [(error["custom_id"], error["response"]) for error in errors] == [("embedding", None)]
        assert "/v1/chat/completions" in errors[0]["error"]["message"]
        assert client.batches.list().data[0].id == batch.id


def test_a_cancel_stops_the_batch_job(system: RunningSystem, monkeypatch: pytest.MonkeyPatch) -> None:
    bedrock = system.pipeline.bedrock
    # A job that runs until it is stopped, on a file large enough for the batch-job path; each reconcile interval
    # takes 2 s here, so the run is far from its lap limit when the cancel comes.
    bedrock.scenario = lambda _request: JobScenario(polls=10**9)
    monkeypatch.setattr(moto_patches, "task_timeout_seconds", 2.0)
    try:
        with sdk(system) as client:
            lines = [request(f"q{n}", f"What is {n} squared?") for n in range(120)]
            uploaded = client.files.create(file=("many.jsonl", jsonl(lines)), purpose="batch")
            batch = create(client, uploaded.id)
            run = "batch-" + batch.id.removeprefix("batch_")
            deadline = time.monotonic() + TIMEOUT_SECONDS
            while not bedrock.for_run(run):
                assert time.monotonic() < deadline, "no job was created"
                time.sleep(POLL_SECONDS)
            assert client.batches.cancel(batch.id).status == "cancelling"
            cancelled = wait_for(client, batch.id, "cancelled")
            assert cancelled.cancelled_at is not None
            assert all(job.status in TERMINAL_STATUSES for job in bedrock.for_run(run))
            assert {job.status for job in bedrock.for_run(run)} == {"Stopped"}
    finally:
        bedrock.scenario = lambda _request: JobScenario()


def test_a_second_caller_sees_nothing_of_the_first(system: RunningSystem) -> None:
    with sdk(system) as first, sdk(system, api_key="billing-service") as second:
        uploaded = first.files.create(file=("mine.jsonl", jsonl([request("a", "Hi?")])), purpose="batch")
        batch = create(first, uploaded.id)
        with pytest.raises(openai.NotFoundError):
            second.files.retrieve(uploaded.id)
        with pytest.raises(openai.NotFoundError):
            second.batches.retrieve(batch.id)
        with pytest.raises(openai.NotFoundError):
            second.batches.cancel(batch.id)
        assert [listed.id for listed in second.batches.list()] == []
        assert wait_for(first, batch.id, "completed").request_counts is not None
