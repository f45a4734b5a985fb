"""The deployed Batch API (/v1/files, /v1/batches) as OpenAI SDK code calls it, signed with SigV4: a small batch (the
on-demand path: minutes, not the hours a batch job takes) runs to completed, and a cancelled one ends cancelled.
Needs both stacks of the stage deployed."""

from __future__ import annotations

import json
import os
import time

import httpx2 as httpx
import openai
import pytest
from openai.types.chat import ChatCompletion

from tests.e2e.sigv4 import SigV4

pytestmark = [pytest.mark.e2e, pytest.mark.enable_socket]

POLL_SECONDS = 15
ENDED = ("completed", "failed", "expired", "cancelled")


def _client(api_url: str, region: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=api_url, api_key="unused", http_client=httpx.Client(auth=SigV4(region)), max_retries=2
    )


def _requests(count: int) -> bytes:
    lines = [
        {
            "custom_id": f"e2e-{n}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"messages": [{"role": "user", "content": f"What is {n} + {n}?"}], "max_tokens": 256},
        }
        for n in range(count)
    ]
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def _batch(client: openai.OpenAI, count: int) -> openai.types.Batch:
    uploaded = client.files.create(file=("e2e.jsonl", _requests(count)), purpose="batch")
    return client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")


def _until(client: openai.OpenAI, batch_id: str, statuses: tuple[str, ...]) -> openai.types.Batch:
    deadline = time.monotonic() + float(os.environ.get("GPTOSS_BATCH_TIMEOUT_SECONDS", "1800"))
    while (batch := client.batches.retrieve(batch_id)).status not in statuses:
        assert time.monotonic() < deadline, f"batch {batch_id} still {batch.status}"
        time.sleep(POLL_SECONDS)
    return batch


def test_a_small_batch_runs_to_completed_and_its_output_parses(api_url: str, region: str) -> None:
    client = _client(api_url, region)
    batch = _until(client, _batch(client, 3).id, ENDED)
    assert batch.status == "completed", batch.errors
    assert batch.output_file_id is not None
    outputs = [json.loads(line) for line in client.files.content(batch.output_file_id).text.splitlines()]
    assert sorted(output["custom_id"] for output in outputs) == ["e2e-0", "e2e-1", "e2e-2"]
    for output in outputs:
        ChatCompletion.model_validate(output["response"]["body"])
    assert batch.id in [listed.id for listed in client.batches.list(limit=100).data]


def test_a_cancelled_batch_ends_cancelled(api_url: str, region: str) -> None:
    client = _client(api_url, region)
    batch = _batch(client, 3)
    assert client.batches.cancel(batch.id).status in ("cancelling", "cancelled")
    assert _until(client, batch.id, ENDED).status == "cancelled"
