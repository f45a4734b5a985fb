"""`up` with the openai backend (one OpenAI-compatible server answers the chat API and every batch record),
and one pipeline per process at a time.

A module of its own: test_local_system.py keeps its system running for the whole module.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from local.bedrock import OpenAIServer
from local.chat_server import ChatApiOptions
from local.harness import OfflinePipeline
from local.services import serving
from local.system import SystemOptions, running_system
from local.templates import Template, batch_template
from tests.local.system_helpers import Lines, s3_client, summary_over_http

pytestmark = [pytest.mark.enable_socket, pytest.mark.filterwarnings("ignore:No application metrics")]


class EchoUpstream(ThreadingHTTPServer):
    """An OpenAI-compatible server that echoes the last user message, and counts what it was asked."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _EchoHandler)
        self.models: list[str] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _EchoHandler(BaseHTTPRequestHandler):
    server: EchoUpstream

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server._lock:
            self.server.models.append(body["model"])
        question = body["messages"][-1]["content"]
        payload = json.dumps(
            {
                "object": "chat.completion",
                "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": f"echo: {question}"}}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


def test_the_openai_backend_answers_the_chat_and_every_batch_record(templates: dict[str, Template]) -> None:
    with serving(EchoUpstream(), "fake-openai") as upstream:
        server = OpenAIServer(upstream.url, model="gpt-oss:20b")
        options = SystemOptions(chat=ChatApiOptions(backend="openai", openai=server))
        with running_system(templates, options, report=Lines()) as running:
            chat = httpx.post(
                f"{running.chat.url}/chat/completions",
                json={"model": "gpt-oss-20b", "messages": [{"role": "user", "content": "ping"}]},
                timeout=10,
            )
            prompts = "".join(json.dumps({"id": f"p{n}", "prompt": f"question {n}"}) + "\n" for n in range(100))
            s3_client(running).put_object(Bucket=running.bucket, Key="inbox/hundred.jsonl", Body=prompts.encode())
            _, summary = summary_over_http(running)
            (run_id,) = running.pipeline.executions()
            run = running.pipeline.wait(run_id)
    assert chat.json()["choices"][0]["message"]["content"] == "echo: ping"
    assert summary["path"] == "batch"  # 100 records: the minimum of a job
    assert summary["status"] == "SUCCEEDED"
    assert [job.status for job in run.jobs] == ["Completed"]
    assert sorted(result["answer"] for result in run.results) == sorted(f"echo: question {n}" for n in range(100))
    assert upstream.models == ["gpt-oss:20b"] * 101  # the chat request, then one call per record of the job


def test_one_pipeline_at_a_time_per_process(templates: dict[str, Template]) -> None:
    with running_system(templates, SystemOptions(), report=Lines()), pytest.raises(RuntimeError, match="already"):
        OfflinePipeline(batch_template(templates), stage="dev").__enter__()
    # Free again once the running one ended (the refused one took nothing).
    with OfflinePipeline(batch_template(templates), stage="dev") as pipeline:
        assert pipeline.executions() == []
